//! A response body that holds what must live as long as the response (concurrency slots)
//! and can be cut off at the shutdown deadline: a stream cut off ends with an error event in
//! its dialect instead of a silent close.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use axum::body::Body;
use axum::response::Response;
use bytes::Bytes;
use http_body::{Frame, SizeHint};

type Cutoff = Pin<Box<dyn Future<Output = ()> + Send>>;

pub(crate) struct Guarded {
    inner: Body,
    /// Dropped with the body: when the last byte went out, or the client left.
    _slots: Vec<Box<dyn Send>>,
    cutoff: Option<(Cutoff, Bytes)>,
    ended: bool,
}

/// A frame that ends its stream (`data: [DONE]`, Anthropic's `message_stop`): after it, a
/// cut-off ends the body without another event.
fn is_final(frame: &[u8]) -> bool {
    let f = frame.trim_ascii_end();
    f.ends_with(b"data: [DONE]") || jusinfer_translate::scan::contains(f, b"\"message_stop\"")
}

impl http_body::Body for Guarded {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, axum::Error>>> {
        let this = &mut *self;
        if this.ended {
            return Poll::Ready(None);
        }
        if let Some((cut, _)) = this.cutoff.as_mut() {
            if cut.as_mut().poll(cx).is_ready() {
                let frame = this.cutoff.take().map(|(_, f)| f);
                this.ended = true;
                // Drops the upstream side now (its usage row is written as it goes).
                this.inner = Body::empty();
                return Poll::Ready(frame.map(|f| Ok(Frame::data(f))));
            }
        }
        let polled = Pin::new(&mut this.inner).poll_frame(cx);
        if let Poll::Ready(Some(Ok(f))) = &polled {
            if this.cutoff.is_some() && f.data_ref().is_some_and(|d| is_final(d)) {
                this.cutoff = None;
            }
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.ended || (self.cutoff.is_none() && self.inner.is_end_stream())
    }

    fn size_hint(&self) -> SizeHint {
        if self.cutoff.is_some() {
            SizeHint::default()
        } else {
            self.inner.size_hint()
        }
    }
}

/// Makes `slot` live as long as `resp`'s body.
pub(crate) fn hold(resp: Response, slot: Box<dyn Send>) -> Response {
    wrap(resp, vec![slot], None)
}

/// Wraps `resp`'s body: `slots` live as long as it, and when `cutoff` resolves the body
/// ends with `frame`.
pub(crate) fn wrap(
    resp: Response,
    slots: Vec<Box<dyn Send>>,
    cutoff: Option<(Cutoff, Bytes)>,
) -> Response {
    resp.map(|inner| {
        Body::new(Guarded {
            inner,
            _slots: slots,
            cutoff,
            ended: false,
        })
    })
}

/// A body that sends nothing until `first` has resolved (the request's usage rows are
/// committed, `ledger_sync`), then `inner` as it is.
struct After {
    first: Option<Cutoff>,
    inner: Body,
}

impl http_body::Body for After {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, axum::Error>>> {
        let this = &mut *self;
        if let Some(f) = this.first.as_mut() {
            if f.as_mut().poll(cx).is_pending() {
                return Poll::Pending;
            }
            this.first = None;
        }
        Pin::new(&mut this.inner).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.first.is_none() && self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// Holds `resp`'s body back until `first` resolves.
pub(crate) fn after(resp: Response, first: Pin<Box<dyn Future<Output = ()> + Send>>) -> Response {
    resp.map(|inner| {
        Body::new(After {
            first: Some(first),
            inner,
        })
    })
}
