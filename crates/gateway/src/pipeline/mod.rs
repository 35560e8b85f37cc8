//! The request path of every generation endpoint, top to bottom: [`run`] is the one place
//! the stage order is written. An inbound API is a [`ClientDialect`] (its parsing, its
//! attempt on one deployment, its error shape); everything else is shared.
//!
//! authenticate → key slot → read → parse → route → prepare → admit → cache → attempt →
//! record
//!
//! The usage row is owned by a [`record::Record`] from the moment the caller is known:
//! every exit after that (a refusal, an error, the client leaving, a success) writes it
//! exactly once.

pub(crate) mod admit;
pub(crate) mod dialects;
pub(crate) mod read;
pub(crate) mod record;

use std::future::Future;
use std::time::Instant;

use axum::body::{Body, Bytes};
use axum::http::HeaderMap;
use axum::response::Response;

use crate::auth::{authenticate, authenticate_any, Caller};
use crate::cache::Plan;
use crate::error::GatewayError;
use crate::ledger::Tap;
use crate::routing::Deployment;
use crate::state::{AppState, RequestId};
use admit::Demand;
use record::Record;

/// The most of a request body logged when `log_bodies` is on.
const LOGGED_BODY_BYTES: usize = 64 * 1024;

/// One inbound API. [`run`] does everything else.
pub(crate) trait ClientDialect: Sized + Send + Sync + 'static {
    /// The endpoint, as usage rows and metrics name it.
    const ENDPOINT: &'static str;
    /// Whether a vendor's key header authenticates too, besides Bearer: `x-api-key`
    /// (Anthropic's SDKs) and `x-goog-api-key` (Google's).
    const ANY_AUTH: bool = false;
    /// The checked request, and what every attempt of it shares.
    type Request: Send + Sync;
    /// What the URL says of the request (the Gemini API names the model and whether it
    /// streams in the path); `()` for dialects whose body says it all.
    type Target: Send;

    /// Parses and checks the body: the request and the model it names.
    fn parse(
        raw: &Bytes,
        headers: &HeaderMap,
        target: Self::Target,
    ) -> Result<Parsed<Self::Request>, GatewayError>;

    /// Checks the request makes sense beyond its types (after its model is known, so a
    /// refused request's usage row names it).
    fn check(_p: &Parsed<Self::Request>) -> Result<(), GatewayError> {
        Ok(())
    }

    /// What needs the state or the store once the caller may use the model (Responses
    /// rebuilds its conversation here). Runs before the limit stage.
    fn prepare(
        _state: &AppState,
        _caller: &Caller,
        _p: &mut Parsed<Self::Request>,
    ) -> impl Future<Output = Result<(), GatewayError>> + Send {
        std::future::ready(Ok(()))
    }

    /// One attempt on one deployment: the dialect's request, sent as that deployment's
    /// upstream kind speaks, and its answer in the dialect's shape.
    fn attempt(
        a: &Attempt<'_, Self::Request>,
        d: Deployment,
    ) -> impl Future<Output = Result<Response, GatewayError>> + Send;

    /// An error in the dialect's shape (rendered once, here).
    fn render(e: GatewayError) -> Response;

    /// How the exact response cache keeps and replays this dialect's answers (`None`:
    /// never cached).
    const CACHE: Option<&'static crate::cache::Codec> = None;
    /// The dialect the answer is read in for traces (its id, finish reasons and, under
    /// content capture, its output); `None`: not read.
    const DIALECT: Option<jusinfer_translate::answer::Dialect> = None;
    /// Request headers that change the answer (they are part of the cache key).
    const ANSWER_HEADERS: &'static [&'static str] = &[];

    /// A cached answer about to be replayed (Responses keeps it as a new stored Response
    /// when the request has `store` on).
    fn replayed(
        _p: &Parsed<Self::Request>,
        _body: &mut serde_json::Value,
    ) -> impl Future<Output = ()> + Send {
        std::future::ready(())
    }

    /// The final event of a stream ended by the gateway (the drain deadline).
    fn error_frame(e: &GatewayError) -> Bytes {
        e.stream_frame()
    }
}

/// A parsed request and what the shared stages read of it.
pub(crate) struct Parsed<T> {
    pub model: String,
    pub stream: bool,
    /// Bytes of prompt beyond the body (Responses' stored history): the limit stage
    /// estimates the prompt from both.
    pub extra_prompt_bytes: usize,
    /// The output maximum the request sets (`Some(0)`: it produces none).
    pub max_output: Option<u64>,
    pub req: T,
}

/// What one attempt gets: the request and everything its attempts share.
pub(crate) struct Attempt<'a, T> {
    pub raw: &'a Bytes,
    pub p: &'a Parsed<T>,
    pub request_id: &'a str,
    pub tap: &'a Tap,
    /// When the request came (Unix seconds): `created` of what the gateway builds.
    pub created: u64,
}

/// The stage order, once. A handler is
/// `pipeline::run::<D>(state, rid, headers, body, target)`.
pub(crate) async fn run<D: ClientDialect>(
    state: AppState,
    rid: RequestId,
    headers: HeaderMap,
    body: Body,
    target: D::Target,
) -> Response {
    let started = Instant::now();
    let trace = crate::telemetry::start_request(&headers, D::ENDPOINT, &rid.0);
    let auth = if D::ANY_AUTH {
        authenticate_any(&state, &headers).await
    } else {
        authenticate(&state, &headers).await
    };
    let caller = match auth {
        Ok(c) => c,
        // Nobody to charge: an unauthenticated request gets no usage row.
        Err(e) => {
            crate::telemetry::end_unrecorded(trace.as_ref(), e.status.as_u16(), e.kind);
            return D::render(e);
        }
    };
    let mut record = Record::new(&state, &rid, &caller, D::ENDPOINT, started);
    record.traced(trace.clone(), D::DIALECT);
    let slot = match admit::key_slot(&state, &caller) {
        Ok(s) => s,
        Err(e) => return record.refuse::<D>(e, None),
    };
    let (max_body, body_time) = {
        let live = state.live.load();
        (
            live.config.max_body_bytes,
            live.config.server.body_read_timeout,
        )
    };
    let raw = match read::read_body(body, max_body, body_time).await {
        Ok(r) => r,
        Err(e) => return record.refuse::<D>(e, None),
    };
    let mut p = match D::parse(&raw, &headers, target) {
        Ok(p) => p,
        Err(e) => return record.refuse::<D>(e, None),
    };
    record.named(&p.model, p.stream);
    if let Some(cx) = &trace {
        crate::telemetry::request_parsed(cx, D::ENDPOINT, &p.model, p.stream, &raw);
    }
    let route = D::check(&p)
        .and_then(|()| caller.check_model(&p.model))
        .and_then(|()| state.live.load().router.resolve(&p.model));
    let deployments = match route {
        Ok(d) => d,
        Err(e) => return record.refuse::<D>(e, None),
    };
    if let Err(e) = D::prepare(&state, &caller, &mut p).await {
        return record.refuse::<D>(e, None);
    }
    if state.live.load().config.log_bodies {
        tracing::info!(request_id = %rid.0, body = %String::from_utf8_lossy(&raw[..raw.len().min(LOGGED_BODY_BYTES)]), "request body");
    }
    let cache_plan = match D::CACHE {
        Some(_) => {
            let live = state.live.load();
            crate::cache::plan(
                &live.config.cache,
                live.router.cache_policy(&p.model),
                &caller,
                (&headers, D::ANSWER_HEADERS),
                (D::ENDPOINT, &p.model, &deployments),
                &raw,
            )
        }
        None => Plan::Off,
    };
    let demand = Demand {
        prompt_bytes: raw.len().saturating_add(p.extra_prompt_bytes),
        max_output: p.max_output,
    };
    let admitted = match admit::admit(&state, &caller, demand, &deployments).await {
        Ok(a) => a,
        Err((e, limits)) => return record.refuse::<D>(e, Some(&limits)),
    };
    let (tap, limits) = record.into_tap(admitted);
    let mut stage = record::CacheStage::new(&state, &cache_plan);
    if let (Plan::Use(l), Some(codec)) = (&cache_plan, D::CACHE) {
        if l.read {
            if let Some(hit) = state.cache.get(l).await {
                let saved = hit.entry.cost_usd;
                if let Some(outcome) = record::replay::<D>(hit, &p, l, codec).await {
                    stage.hit(saved);
                    return record::finish::<D>(outcome, tap, limits, slot, stage);
                }
            }
        }
        stage.fill = Some(state.cache.fill(l, codec, p.stream));
    }
    let a = Attempt {
        raw: &raw,
        p: &p,
        request_id: &rid.0,
        tap: &tap,
        created: crate::store::now().try_into().unwrap_or(0),
    };
    let outcome = crate::proxy::run(&deployments, trace.as_ref(), D::ENDPOINT, |d| {
        D::attempt(&a, d)
    })
    .await;
    record::finish::<D>(outcome, tap, limits, slot, stage)
}

#[cfg(test)]
mod tests;
