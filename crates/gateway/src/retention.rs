//! Data that would otherwise only grow: stored Responses expire after `responses_ttl_days`
//! (OpenAI keeps them 30 days), and ledger rows after `ledger_retention_days`, after which
//! only the hourly rollup (`usage_hourly`: the portal's charts, key spend) remains.
//!
//! One background task sweeps every `retention_sweep_every`: each pass deletes at most
//! [`BATCH`] rows of one kind (one short statement over an index), a pass follows a pass
//! after a pause until nothing is left or [`MAX_PASSES`] ran, so the store is never held
//! for long and the request path never waits on it.

use std::time::Duration;

use crate::store::Store;

/// Rows one statement deletes at most.
pub(crate) const BATCH: i64 = 5_000;
/// Passes per kind per sweep (the rest waits for the next sweep).
const MAX_PASSES: usize = 40;
/// Pause between passes.
const PAUSE: Duration = Duration::from_millis(50);

/// What to keep, and how often to look.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Retention {
    /// `None`: kept for ever.
    pub responses: Option<Duration>,
    pub ledger: Option<Duration>,
    pub every: Duration,
}

/// Starts the sweeper (nothing when both are kept for ever).
pub(crate) fn start(store: Store, r: Retention) {
    if r.responses.is_none() && r.ledger.is_none() {
        return;
    }
    tokio::spawn(async move {
        loop {
            tokio::time::sleep(r.every).await;
            sweep(&store, r).await;
        }
    });
}

fn ago_ms(d: Duration) -> i64 {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |n| n.as_millis());
    i64::try_from(now.saturating_sub(d.as_millis())).unwrap_or(0)
}

/// One sweep: expired Responses, then expired ledger rows; how many of each.
pub(crate) async fn sweep(store: &Store, r: Retention) -> (u64, u64) {
    let mut gone = (0, 0);
    if let Some(ttl) = r.responses {
        let before = ago_ms(ttl) / 1000;
        gone.0 = passes(|| store.sweep_responses(before, BATCH), "stored responses").await;
    }
    if let Some(keep) = r.ledger {
        let before = ago_ms(keep);
        gone.1 = passes(|| store.sweep_usage(before, BATCH), "ledger rows").await;
    }
    gone
}

async fn passes<F, Fut>(mut pass: F, what: &str) -> u64
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<u64, crate::store::StoreError>>,
{
    let mut total = 0;
    for _ in 0..MAX_PASSES {
        match pass().await {
            Ok(n) => {
                total += n;
                if n < u64::try_from(BATCH).unwrap_or(u64::MAX) {
                    break;
                }
            }
            Err(e) => {
                tracing::warn!(error = %e, what, "retention sweep failed; tried again later");
                break;
            }
        }
        tokio::time::sleep(PAUSE).await;
    }
    if total > 0 {
        tracing::info!(rows = total, what, "retention: expired rows deleted");
    }
    total
}
