//! The record stage: the usage row of one request, owned by a [`Record`] until the request
//! is admitted, then by its [`Tap`] (where the handler's and the stream's halves meet).
//! Either way the row is written exactly once, whatever the exit.

use std::time::Instant;

use axum::http::HeaderValue;
use axum::response::Response;

use super::admit::Admitted;
use super::ClientDialect;
use crate::auth::Caller;
use crate::error::GatewayError;
use crate::ledger::{Ledger, Tap};
use crate::lifecycle::Slot;
use crate::limits::RateHeaders;
use crate::proxy::Outcome;
use crate::state::{AppState, LogMeta, RequestId};
use crate::usage::{AnswerExt, UsageExt, UsageRecord};

/// A request's usage row before admission. Dropped unwritten (the client left while the
/// body was read or the store asked), it writes the row as 499.
pub(crate) struct Record {
    ledger: Ledger,
    row: Option<UsageRecord>,
    started: Instant,
}

impl Record {
    pub(crate) fn new(
        state: &AppState,
        rid: &RequestId,
        caller: &Caller,
        endpoint: &str,
        started: Instant,
    ) -> Self {
        Self {
            ledger: state.ledger.clone(),
            row: Some(usage_row(rid, caller, endpoint)),
            started,
        }
    }

    /// The request's span (tracing on): ended with the row; the answer is read in
    /// `dialect`.
    pub(crate) fn traced(
        &mut self,
        cx: Option<opentelemetry::Context>,
        dialect: Option<jusinfer_translate::answer::Dialect>,
    ) {
        if let Some(r) = self.row.as_mut() {
            r.trace = cx.map(|cx| crate::telemetry::Span::new(cx, dialect));
        }
    }

    /// The model and mode the request named (known once it is parsed).
    pub(crate) fn named(&mut self, model: &str, stream: bool) {
        if let Some(r) = self.row.as_mut() {
            r.model = model.to_owned();
            r.stream = stream;
        }
    }

    /// A refusal before any provider was tried: recorded, rendered in `D`'s shape (with
    /// the limit headers when the limit stage refused).
    pub(crate) fn refuse<D: ClientDialect>(
        mut self,
        e: GatewayError,
        limits: Option<&RateHeaders>,
    ) -> Response {
        let Some(mut row) = self.row.take() else {
            return D::render(e);
        };
        row.status = e.status.as_u16();
        row.error_type = Some(e.kind.to_owned());
        row.latency_ms = self.started.elapsed().as_millis() as u64;
        let meta = LogMeta {
            key_id: row.key_id.clone(),
            model: row.model.clone(),
        };
        self.ledger.record(row);
        let mut resp = D::render(e);
        if let Some(h) = limits {
            h.apply(resp.headers_mut());
        }
        resp.extensions_mut().insert(meta);
        resp
    }

    /// Admitted: the row moves into the request's tap, with its hold on the key's limits.
    pub(crate) fn into_tap(mut self, a: Admitted) -> (Tap, RateHeaders) {
        let mut row = self.row.take().unwrap_or_default();
        row.routed = true;
        let tap = Tap::new(
            self.ledger.clone(),
            row,
            self.started,
            a.hold,
            a.prompt_estimate,
        );
        (tap, a.headers)
    }
}

impl Drop for Record {
    fn drop(&mut self) {
        if let Some(mut row) = self.row.take() {
            row.status = 499;
            row.error_type = Some("client_disconnected".to_owned());
            row.latency_ms = self.started.elapsed().as_millis() as u64;
            self.ledger.record(row);
        }
    }
}

/// The request-level columns of a usage row.
fn usage_row(rid: &RequestId, caller: &Caller, endpoint: &str) -> UsageRecord {
    UsageRecord {
        ts_ms: std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX)),
        request_id: rid.0.clone(),
        key_id: caller.key.as_ref().map(|k| k.id.clone()),
        endpoint: endpoint.to_owned(),
        commit: rid.1.clone(),
        ..UsageRecord::default()
    }
}

/// The final event a stream cut off by the gateway gets, for the edge to send.
#[derive(Clone)]
pub(crate) struct CutoffFrame(pub bytes::Bytes);

/// What the cache stage says of a request: its `x-jusinfer-cache` answer and usage
/// column, and, on a miss, the entry a success fills.
pub(crate) struct CacheStage {
    mark: Option<&'static str>,
    saved_usd: Option<f64>,
    pub fill: Option<crate::cache::Fill>,
    /// The most of a miss's answer kept (only when the cache applies).
    max_entry_bytes: usize,
}

impl CacheStage {
    pub(crate) fn new(state: &AppState, plan: &crate::cache::Plan) -> Self {
        use crate::cache::Plan;
        Self {
            mark: match plan {
                Plan::Off => None,
                Plan::Bypass => Some("bypass"),
                Plan::Use(_) => Some("miss"),
            },
            saved_usd: None,
            fill: None,
            max_entry_bytes: match plan {
                Plan::Use(_) => state.live.load().config.cache.max_entry_bytes,
                Plan::Off | Plan::Bypass => 0,
            },
        }
    }

    /// Answered from the cache: the row says so, and what the answer cost the first time.
    pub(crate) fn hit(&mut self, saved_usd: Option<f64>) {
        self.mark = Some("hit");
        self.saved_usd = saved_usd;
        self.fill = None;
    }
}

/// A hit as the attempt loop's outcome: the entry replayed in `D`'s shape (a stream if the
/// client asked for one), its usage at no cost. `None`: the entry cannot be replayed.
pub(crate) async fn replay<D: ClientDialect>(
    hit: crate::cache::Hit,
    p: &super::Parsed<D::Request>,
    l: &crate::cache::Lookup,
    codec: &crate::cache::Codec,
) -> Option<Outcome> {
    let crate::cache::Hit {
        mut entry,
        age_secs,
    } = hit;
    crate::cache::no_cost(&mut entry.body);
    if let Some(id) = codec.fresh_id {
        crate::cache::fresh_id(&mut entry.body, id);
    }
    D::replayed(p, &mut entry.body).await;
    let mut resp = crate::cache::replay(codec, &entry.body, p.stream, l.include_usage, age_secs)?;
    if p.stream {
        // A whole answer's is read from its body; a replayed stream's, from the entry.
        if let Some(a) = crate::telemetry::answer_of_value(D::DIALECT, &entry.body) {
            resp.extensions_mut().insert(AnswerExt::Read(Box::new(a)));
        }
    }
    let mut usage = entry.usage;
    usage.cost = jusinfer_wire::chat::Cost::Usd(0.0);
    resp.extensions_mut().insert(UsageExt(usage));
    Some(Outcome {
        result: Ok(resp),
        provider: None,
        upstream_model: entry.upstream_model,
        price: None,
        attempts: 0,
        attempt_span: None,
    })
}

/// Sets the attempt and limit headers on whatever the attempt loop produced (an error
/// rendered in `D`'s shape), and hands the handler's half of the usage row to `tap`.
/// `slot` is held until the response ends. A success the cache stage wants kept is teed
/// into the cache.
pub(crate) fn finish<D: ClientDialect>(
    outcome: Outcome,
    tap: Tap,
    limits: RateHeaders,
    slot: Option<Slot>,
    mut cache: CacheStage,
) -> Response {
    let (mut resp, error_type) = match outcome.result {
        Ok(r) => (r, None),
        Err(e) => {
            tracing::warn!(status = e.status.as_u16(), error = %e, "request failed");
            let kind = e.kind;
            (D::render(e), Some(kind))
        }
    };
    let usage = resp.extensions_mut().remove::<UsageExt>();
    let status = resp.status().as_u16();
    let answer = resp
        .extensions_mut()
        .remove::<AnswerExt>()
        .filter(|_| status == 200);
    if let Some(f) = cache.fill.as_mut() {
        f.provider.clone_from(&outcome.provider);
        f.upstream_model.clone_from(&outcome.upstream_model);
        f.price = outcome.price;
        f.tap = Some(tap.clone());
    }
    let mut meta = LogMeta::default();
    tap.finish_handler(|r| {
        meta.key_id.clone_from(&r.key_id);
        meta.model.clone_from(&r.model);
        r.provider.clone_from(&outcome.provider);
        r.upstream_model.clone_from(&outcome.upstream_model);
        r.price = outcome.price;
        r.attempts = outcome.attempts;
        r.status = status;
        r.error_type = error_type.map(str::to_owned);
        if let Some(UsageExt(u)) = &usage {
            r.set_usage(u);
        }
        r.cache = cache.mark.map(str::to_owned);
        r.saved_usd = cache.saved_usd;
        if let Some(t) = r.trace.as_mut() {
            t.attempt = outcome.attempt_span;
            let read = match answer {
                Some(AnswerExt::Body(b)) => crate::telemetry::answer_of(t, &b),
                Some(AnswerExt::Read(a)) => Some(*a),
                None => None,
            };
            if let Some(a) = read {
                crate::telemetry::answered(t, &a);
            }
        }
    });
    let h = resp.headers_mut();
    if let Some(p) = outcome
        .provider
        .and_then(|p| HeaderValue::from_str(&p).ok())
    {
        h.insert("x-jusinfer-provider", p);
    }
    h.insert("x-jusinfer-attempts", HeaderValue::from(outcome.attempts));
    if let Some(m) = cache.mark {
        h.insert("x-jusinfer-cache", HeaderValue::from_static(m));
    }
    limits.apply(h);
    resp.extensions_mut().insert(meta);
    let streaming = resp
        .headers()
        .get("content-type")
        .is_some_and(|v| v.as_bytes().starts_with(b"text/event-stream"));
    if streaming {
        resp.extensions_mut().insert(CutoffFrame(D::error_frame(
            &GatewayError::unavailable(CUTOFF_MESSAGE, 1000).code("server_shutting_down"),
        )));
    }
    if let Some(f) = cache.fill.take().filter(|_| status == 200) {
        resp = crate::cache::tee(resp, f, cache.max_entry_bytes);
    }
    match slot {
        Some(s) => crate::body::hold(resp, Box::new(s)),
        None => resp,
    }
}

/// What a stream cut off at the drain deadline is told.
pub(crate) const CUTOFF_MESSAGE: &str =
    "The gateway is shutting down and ended this stream at its drain deadline.";
