//! The HTTP surface: the path → handler table and the edge middleware every request
//! passes (request id, global concurrency cap, shutdown cut-off, the request's log line).

use std::time::Instant;

use axum::extract::{MatchedPath, Request, State};
use axum::http::HeaderValue;
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use rand::distributions::{Alphanumeric, DistString};

use crate::error::GatewayError;
use crate::handlers;
use crate::state::{AppState, LogMeta, RequestId};

/// The HTTP surface.
pub(crate) fn app(state: AppState) -> axum::Router {
    axum::Router::new()
        .route("/v1/chat/completions", post(handlers::chat_completions))
        .route("/v1/embeddings", post(handlers::embeddings))
        .route("/v1/messages", post(handlers::messages))
        .route(
            "/v1/messages/count_tokens",
            post(handlers::messages::count_tokens),
        )
        .route("/v1/responses", post(handlers::responses))
        .route(
            "/v1/responses/{id}",
            get(handlers::responses::retrieve).delete(handlers::responses::delete),
        )
        .route(
            "/v1/responses/{id}/input_items",
            get(handlers::responses::input_items),
        )
        .route("/v1/models", get(handlers::models::list))
        // `POST`: the Gemini API's `v1` (`models/{model}:generateContent`, …).
        .route(
            "/v1/models/{*id}",
            get(handlers::models::get).post(handlers::gemini::post),
        )
        .route("/v1beta/models", get(handlers::gemini::list))
        .route(
            "/v1beta/models/{*id}",
            get(handlers::gemini::get).post(handlers::gemini::post),
        )
        .route(
            "/admin/keys",
            post(handlers::admin::create).get(handlers::admin::list),
        )
        .route(
            "/admin/keys/{id}",
            get(handlers::admin::get)
                .patch(handlers::admin::update)
                .delete(handlers::admin::revoke),
        )
        .route("/admin/keys/{id}/revoke", post(handlers::admin::revoke))
        .route("/admin/usage", get(handlers::admin::usage))
        .route("/admin/providers", get(handlers::admin::providers))
        .route("/admin/config", get(handlers::admin::config))
        .route("/admin/config/reload", post(handlers::admin::reload))
        .route(
            "/admin/cache",
            get(handlers::admin::cache).delete(handlers::admin::purge_cache),
        )
        // Claude Code's reachability check (`HEAD /api/hello`) before its first call.
        .route("/api/hello", get(handlers::health::hello))
        // Clients probe the base URL itself (`HEAD /`) to see the gateway is there.
        .route("/", get(handlers::health::hello))
        .route("/healthz", get(handlers::health::healthz))
        .route("/readyz", get(handlers::health::readyz))
        .route("/metrics", get(handlers::health::metrics))
        .merge(crate::portal::routes())
        .fallback(not_found)
        .layer(middleware::from_fn_with_state(state.clone(), request_meta))
        .with_state(state)
}

async fn not_found(req: Request) -> Response {
    use axum::response::IntoResponse;
    crate::error::GatewayError::not_found(format!(
        "No route for {} {}.",
        req.method(),
        req.uri().path()
    ))
    .into_response()
}

fn new_request_id() -> String {
    format!(
        "req_{}",
        Alphanumeric.sample_string(&mut rand::thread_rng(), 24)
    )
}

/// The one log line of a request, written when it is dropped: with the response for a
/// plain answer, at the stream's end (or the client's leaving) for a stream.
struct RequestLog {
    id: String,
    method: axum::http::Method,
    path: String,
    status: u16,
    provider: String,
    attempts: String,
    meta: LogMeta,
    started: Instant,
}

impl Drop for RequestLog {
    fn drop(&mut self) {
        tracing::info!(
            request_id = %self.id,
            method = %self.method,
            path = %self.path,
            status = self.status,
            key_id = self.meta.key_id.as_deref().unwrap_or(""),
            model = %self.meta.model,
            provider = %self.provider,
            attempts = %self.attempts,
            latency_ms = self.started.elapsed().as_millis() as u64,
            "request"
        );
    }
}

/// Paths that stay served when the gateway is at capacity: a load balancer must still see
/// health, and an operator must still see metrics.
fn exempt(path: &str) -> bool {
    matches!(path, "/healthz" | "/readyz" | "/metrics")
}

/// Gives every request an id, a place under the global concurrency cap, and every response
/// `x-request-id` and the attempt headers; ends what runs past the shutdown deadline; logs
/// one line per request (never bodies or keys).
async fn request_meta(State(state): State<AppState>, mut req: Request, next: Next) -> Response {
    let started = Instant::now();
    let id = req
        .headers()
        .get("x-request-id")
        .and_then(|v| v.to_str().ok())
        .filter(|v| !v.is_empty() && v.len() <= 128 && v.bytes().all(|b| b.is_ascii_graphic()))
        .map_or_else(new_request_id, str::to_owned);
    let method = req.method().clone();
    let path = req.uri().path().to_owned();
    let route = req.extensions().get::<MatchedPath>().cloned();
    let slot = if exempt(&path) {
        None
    } else {
        match state.in_flight.try_take(
            state.live.load().config.server.max_concurrent_requests,
            true,
        ) {
            Some(s) => Some(s),
            None => {
                crate::metrics::get()
                    .overload
                    .with_label_values(&["global"])
                    .inc();
                let mut resp = GatewayError::unavailable(
                    "The gateway is at its limit of concurrent requests; retry shortly.",
                    1000,
                )
                .code("overloaded")
                .into_response();
                finish_headers(&mut resp, &id);
                return resp;
            }
        }
    };
    let commit = state
        .live
        .load()
        .config
        .ledger_sync
        .then(crate::usage::Commit::default);
    req.extensions_mut()
        .insert(RequestId(id.clone(), commit.clone()));
    let mut resp = tokio::select! {
        r = next.run(req) => r,
        () = state.life.cutoff() => GatewayError::unavailable(
            "The gateway is shutting down and ended this request at its drain deadline.",
            1000,
        )
        .code("server_shutting_down")
        .into_response(),
    };
    finish_headers(&mut resp, &id);
    if let Some(c) = commit {
        // Rows written by now (a whole body, a refusal, an in-process stream) are
        // committed before the body's first byte; an upstream stream waits for its own row
        // before its final frames.
        resp = crate::body::after(resp, Box::pin(async move { c.wait().await }));
    }
    crate::metrics::get()
        .http
        .with_label_values(&[
            route.as_ref().map_or("unmatched", MatchedPath::as_str),
            resp.status().as_str(),
        ])
        .inc();
    let h = resp.headers();
    let text = |name: &str| {
        h.get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_owned()
    };
    let log = RequestLog {
        provider: text("x-jusinfer-provider"),
        attempts: text("x-jusinfer-attempts"),
        id,
        method,
        status: resp.status().as_u16(),
        meta: resp
            .extensions_mut()
            .remove::<LogMeta>()
            .unwrap_or_default(),
        started,
        path,
    };
    let streaming = resp
        .headers()
        .get("content-type")
        .is_some_and(|v| v.as_bytes().starts_with(b"text/event-stream"));
    if !streaming {
        return resp;
    }
    // The dialect's own final event (the pipeline leaves it); OpenAI's error event else.
    let frame = match resp
        .extensions_mut()
        .remove::<crate::pipeline::record::CutoffFrame>()
    {
        Some(f) => f.0,
        None => GatewayError::unavailable(crate::pipeline::record::CUTOFF_MESSAGE, 1000)
            .code("server_shutting_down")
            .stream_frame(),
    };
    let mut slots: Vec<Box<dyn Send>> = vec![Box::new(log)];
    if let Some(s) = slot {
        slots.push(Box::new(s));
    }
    crate::body::wrap(resp, slots, Some((Box::pin(state.life.cutoff()), frame)))
}

fn finish_headers(resp: &mut Response, id: &str) {
    let h = resp.headers_mut();
    if let Ok(v) = HeaderValue::from_str(id) {
        h.insert("x-request-id", v);
    }
    if !h.contains_key("x-jusinfer-provider") {
        h.insert("x-jusinfer-provider", HeaderValue::from_static("none"));
    }
    if !h.contains_key("x-jusinfer-attempts") {
        h.insert("x-jusinfer-attempts", HeaderValue::from_static("0"));
    }
}
