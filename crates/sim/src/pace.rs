//! Pacing a stream: frames sent `gap_ms` apart, with the cut and the stall faults, and a
//! reader that goes away logged at once.

use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use bytes::Bytes;

use crate::server::SimState;

/// How `stream_response` paces its frames.
pub(crate) struct StreamPlan {
    pub gap_ms: u64,
    pub disconnect_after: Option<usize>,
    pub stall_after: Option<usize>,
    /// For the cancellation log and progress counts.
    pub model: String,
}

impl StreamPlan {
    /// The pacing faults `sc` names, logged under its scenario name.
    pub(crate) fn of(sc: &crate::scenario::Scenario) -> Self {
        StreamPlan {
            gap_ms: sc.gap_ms,
            disconnect_after: sc.disconnect_after,
            stall_after: sc.stall_after,
            model: sc.name.clone(),
        }
    }
}

/// Sends `frames` as an SSE body, `gap_ms` apart, cutting the connection after
/// `disconnect_after` frames, or falling silent after `stall_after`, when set. A reader that
/// goes away is logged at once (the sender watches the channel close).
pub(crate) fn stream_response(
    mut frames: Vec<Bytes>,
    plan: &StreamPlan,
    state: &SimState,
) -> Response {
    let cancelled = Arc::clone(&state.streams_cancelled);
    if let Some(n) = plan.disconnect_after {
        frames.truncate(n);
    }
    let stall = plan.stall_after.is_some_and(|n| {
        frames.truncate(n);
        true
    });
    let disconnect = plan.disconnect_after.is_some();
    let gap = Duration::from_millis(plan.gap_ms);
    let (tx, rx) = tokio::sync::mpsc::channel::<Result<Bytes, std::io::Error>>(8);
    let state = state.clone();
    let model = plan.model.clone();
    tokio::spawn(async move {
        let gone = |state: &SimState| {
            cancelled.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            state.cancelled(&model);
        };
        for (i, f) in frames.into_iter().enumerate() {
            if i > 0 && !gap.is_zero() {
                tokio::select! {
                    () = tokio::time::sleep(gap) => {}
                    () = tx.closed() => return gone(&state),
                }
            }
            if tx.send(Ok(f)).await.is_err() {
                return gone(&state);
            }
            if let Ok(mut m) = state.frames_sent.lock() {
                *m.entry(model.clone()).or_insert(0) += 1;
            }
        }
        if stall {
            tokio::select! {
                () = tokio::time::sleep(Duration::from_secs(600)) => {}
                () = tx.closed() => gone(&state),
            }
            return;
        }
        if disconnect {
            // Let the frames already written reach the peer before the connection is cut.
            tokio::time::sleep(Duration::from_millis(100)).await;
            let _ = tx
                .send(Err(std::io::Error::other("simulated disconnect")))
                .await;
        }
    });
    let body =
        futures_util::stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|x| (x, rx)) });
    Response::builder()
        .status(200)
        .header("content-type", "text/event-stream; charset=utf-8")
        .body(Body::from_stream(body))
        .unwrap_or_else(|_| StatusCode::INTERNAL_SERVER_ERROR.into_response())
}
