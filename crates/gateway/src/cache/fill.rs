//! A miss's answer on its way into the cache: copied as it is sent ([`tee`]), then made
//! into an entry and written by the cache's one writer task ([`writer`]).

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::response::Response;
use serde_json::Value;
use tokio::sync::mpsc;

use super::{complete, now_ms, usage_of, Backend, Codec, Entry, Inner, BUFFER_BUDGET, TRIM_EVERY};
use crate::reload::LiveCell;
use crate::store::CacheRow;
use jusinfer_translate::pricing::Price;
use jusinfer_wire::chat::Usage;

/// What a miss needs to fill its entry once the answer has been sent whole. Its bytes
/// count against [`BUFFER_BUDGET`] until it is dropped.
pub(crate) struct Fill {
    pub(super) cache_key: String,
    pub(super) scope: String,
    pub(super) model: String,
    pub(super) ttl: Duration,
    pub(super) codec: &'static Codec,
    pub(super) stream: bool,
    pub provider: Option<String>,
    pub upstream_model: Option<String>,
    pub price: Option<Price>,
    /// The answer's bytes as the client got them.
    pub(super) bytes: Vec<u8>,
    /// The request's ledger tap, read once the answer has ended: a Chat stream the client
    /// asked without usage carries none, but the row has it.
    pub tap: Option<crate::ledger::Tap>,
    pub(super) seen: Option<Usage>,
    /// The purge generation when the request was looked up.
    pub(super) generation: u64,
    /// Bytes of the budget this fill holds.
    pub(super) held: usize,
    pub(super) inner: Arc<Inner>,
}

impl Fill {
    /// Takes `n` more bytes from the budget; `false` when it has not got them.
    fn reserve(&mut self, n: usize) -> bool {
        let before = self.inner.buffered.fetch_add(n, Ordering::AcqRel);
        if before.saturating_add(n) > BUFFER_BUDGET {
            self.inner.buffered.fetch_sub(n, Ordering::AcqRel);
            return false;
        }
        self.held += n;
        true
    }
}

impl Drop for Fill {
    fn drop(&mut self) {
        self.inner.buffered.fetch_sub(self.held, Ordering::AcqRel);
    }
}

/// Wraps a successful answer's body: its bytes are copied (up to the entry bound: a
/// stream's frames take more room than the body they add up to; and while the budget
/// for all answers lasts) and, once the body has ended whole, handed to the writer. A
/// body dropped early (the client left) fills nothing.
pub(crate) fn tee(resp: Response, fill: Fill, max_entry_bytes: usize) -> Response {
    let limit = if fill.stream {
        max_entry_bytes.saturating_mul(4)
    } else {
        max_entry_bytes
    };
    let tx = fill.inner.tx.clone();
    resp.map(|inner| {
        Body::new(Tee {
            inner,
            fill: Some(fill),
            limit,
            tx,
        })
    })
}

struct Tee {
    inner: Body,
    fill: Option<Fill>,
    limit: usize,
    tx: mpsc::Sender<Fill>,
}

impl Tee {
    /// The body ended whole: its bytes go to the writer.
    fn ended(&mut self) {
        if let Some(mut f) = self.fill.take() {
            f.seen = f.tap.take().map(|t| t.usage());
            if self.tx.try_send(f).is_err() {
                crate::metrics::get()
                    .cache_writes
                    .with_label_values(&["dropped"])
                    .inc();
            }
        }
    }
}

impl http_body::Body for Tee {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<http_body::Frame<Bytes>, axum::Error>>> {
        use std::task::Poll;
        let this = &mut *self;
        let polled = std::pin::Pin::new(&mut this.inner).poll_frame(cx);
        match &polled {
            Poll::Ready(Some(Ok(frame))) => {
                if let (Some(f), Some(data)) = (this.fill.as_mut(), frame.data_ref()) {
                    let fits = f.bytes.len().saturating_add(data.len()) <= this.limit;
                    if fits && f.reserve(data.len()) {
                        f.bytes.extend_from_slice(data);
                    } else {
                        this.fill = None;
                        crate::metrics::get()
                            .cache_writes
                            .with_label_values(&["too_large"])
                            .inc();
                    }
                }
            }
            Poll::Ready(Some(Err(_))) => this.fill = None,
            Poll::Ready(None) => this.ended(),
            Poll::Pending => {}
        }
        // A body that knows it has ended (a whole one) is not polled again.
        if this.fill.is_some() && this.inner.is_end_stream() {
            this.ended();
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}

/// Turns filled answers into entries and writes them, one at a time, trimming the store
/// to its bounds every [`TRIM_EVERY`] and whenever it may be over them. Collecting a
/// stream, pricing and serializing run on a blocking thread, off the runtime's workers.
pub(super) async fn writer(inner: Arc<Inner>, mut rx: mpsc::Receiver<Fill>, live: LiveCell) {
    let m = crate::metrics::get();
    // What the store holds, as of the last trim plus what was written since (an upper
    // bound: a write may replace an entry).
    let (mut rows, mut bytes) = (0i64, 0i64);
    let mut trimmed = tokio::time::Instant::now();
    while let Some(f) = rx.recv().await {
        let settings = live.load().config.cache;
        let ttl_ms = i64::try_from(f.ttl.as_millis()).unwrap_or(i64::MAX);
        let made = tokio::task::spawn_blocking(move || {
            let entry = entry_of(&f, ttl_ms);
            let text = entry.as_ref().and_then(|e| serde_json::to_string(e).ok());
            (f, entry, text)
        })
        .await;
        let Ok((f, Some(mut entry), Some(text))) = made else {
            m.cache_writes.with_label_values(&["uncacheable"]).inc();
            continue;
        };
        if text.len() > settings.max_entry_bytes {
            m.cache_writes.with_label_values(&["too_large"]).inc();
            continue;
        }
        entry.weight = text.len();
        let row = CacheRow {
            key: &f.cache_key,
            scope: &f.scope,
            model: &f.model,
            created_at: entry.created_ms,
            expires_at: entry.expires_ms,
            entry: &text,
        };
        let max_rows = i64::try_from(settings.max_entries).unwrap_or(i64::MAX);
        let max_bytes = i64::try_from(settings.max_bytes).unwrap_or(i64::MAX);
        let _writing = inner.writing.lock().await;
        if inner.generation.load(Ordering::Acquire) != f.generation {
            m.cache_writes.with_label_values(&["purged"]).inc();
            continue;
        }
        if let Some(front) = &inner.front {
            front.insert(f.cache_key.clone(), Arc::new(entry));
        }
        rows += 1;
        bytes = bytes.saturating_add(i64::try_from(text.len()).unwrap_or(i64::MAX));
        let trim = rows > max_rows || bytes > max_bytes || trimmed.elapsed() >= TRIM_EVERY;
        let put = async {
            match &inner.backend {
                Backend::Store(s) => {
                    s.cache_put(&row).await.map_err(|e| e.to_string())?;
                    if trim {
                        return s
                            .cache_trim(now_ms(), max_rows, max_bytes)
                            .await
                            .map(Some)
                            .map_err(|e| e.to_string());
                    }
                    Ok(None)
                }
                Backend::Redis(r) => r
                    .put(&row, ttl_ms, max_rows, max_bytes)
                    .await
                    .map(|()| None),
            }
        };
        match tokio::time::timeout(Duration::from_secs(10), put).await {
            Ok(Ok(left)) => {
                m.cache_writes.with_label_values(&["stored"]).inc();
                if let Some((n, b)) = left {
                    (rows, bytes) = (n, b);
                    trimmed = tokio::time::Instant::now();
                }
            }
            Ok(Err(e)) => {
                m.cache_writes.with_label_values(&["failed"]).inc();
                tracing::warn!(error = %e, "response cache write failed");
            }
            Err(_) => {
                m.cache_writes.with_label_values(&["failed"]).inc();
                tracing::warn!("response cache write timed out");
            }
        }
    }
}

/// The entry a complete answer makes, priced as the deployment that gave it.
fn entry_of(f: &Fill, ttl_ms: i64) -> Option<Entry> {
    let mut body = if f.stream {
        (f.codec.collect)(&f.bytes)?
    } else {
        serde_json::from_slice::<Value>(&f.bytes).ok()?
    };
    if !complete(&body) {
        return None;
    }
    if body.get("choices").is_some() && body.get("usage").is_none_or(Value::is_null) {
        // A Chat stream without its usage chunk: the usage the ledger saw.
        if let Some(u) = f.seen.as_ref().filter(|u| u.total_tokens > 0) {
            body["usage"] = serde_json::to_value(u).ok()?;
        }
    }
    let usage = usage_of(&body);
    let cost_usd = f
        .price
        .map(|p| jusinfer_translate::pricing::cost(&p, &usage));
    let created_ms = now_ms();
    Some(Entry {
        weight: 0,
        created_ms,
        expires_ms: created_ms.saturating_add(ttl_ms),
        provider: f.provider.clone(),
        upstream_model: f.upstream_model.clone(),
        usage,
        cost_usd,
        body,
    })
}
