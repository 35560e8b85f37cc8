//! Anthropic upstreams behind the OpenAI surface: the Chat request is translated to a
//! Messages request (`jusinfer_translate::anthropic::request`), the answer back to a
//! `chat.completion` or a chunk stream. Fields with no faithful translation are named in
//! `x-jusinfer-dropped-params`.

use axum::http::{HeaderValue, StatusCode};
use axum::response::Response;
use bytes::Bytes;
use jusinfer_translate::anthropic::{request, response, stream};
use jusinfer_translate::pricing::{self, Price};
use jusinfer_wire::anthropic::{ErrorEnvelope, MessagesResponse};
use jusinfer_wire::chat::{ChatRequest, Cost};

use super::http::{self, Clock};
use super::{Endpoint, Provider};
use crate::error::{GatewayError, Origin};
use crate::ledger::Tap;
use crate::usage::UsageExt;

/// The API version the translation is written against.
pub const ANTHROPIC_VERSION: &str = "2023-06-01";

pub struct Call<'a> {
    pub provider: &'a Provider,
    /// The deployment's timeouts.
    pub timeouts: crate::config::Timeouts,
    /// The deployment's health: a stream that fails after its start counts against it.
    pub health: Option<&'a std::sync::Arc<crate::health::Health>>,
    pub req: &'a ChatRequest,
    pub raw: &'a Bytes,
    pub upstream_model: &'a str,
    pub price: Option<Price>,
    pub created: u64,
    pub tap: &'a Tap,
    /// Add prompt-cache breakpoints (the deployment's `auto_cache`).
    pub auto_cache: bool,
}

/// Prompts shorter than this (estimated) get no automatic breakpoints: Anthropic caches
/// nothing under 1,024 tokens.
pub const AUTO_CACHE_MIN_TOKENS: usize = 1024;

/// The top-level keys of the client's JSON (to name the ones dropped).
fn present_fields(raw: &[u8]) -> Vec<String> {
    serde_json::from_slice::<indexmap::IndexMap<String, serde::de::IgnoredAny>>(raw)
        .map(|m| m.into_keys().collect())
        .unwrap_or_default()
}

pub async fn chat(call: Call<'_>) -> Result<Response, GatewayError> {
    let p = call.provider;
    let present = present_fields(call.raw);
    let t = request::chat_to_messages(
        call.req,
        &request::Options {
            upstream_model: call.upstream_model,
            default_max_tokens: p.config.max_tokens_for(call.upstream_model),
            present_fields: &present,
        },
    )
    .map_err(|e| {
        let err = GatewayError::bad_request(e.message).code("unsupported_value");
        match e.param {
            Some(param) => err.param(param),
            None => err,
        }
    })?;
    let mut t = t;
    if call.auto_cache {
        jusinfer_translate::anthropic::cache::add_breakpoints(
            &mut t.request,
            AUTO_CACHE_MIN_TOKENS,
        );
    }
    let body = serde_json::to_vec(&t.request).map_err(|e| GatewayError::internal(e.to_string()))?;
    let clock = Clock::start(call.timeouts);
    let answer = http::exchange(
        p,
        http::Exchange {
            endpoint: Endpoint::ChatCompletions,
            body: Bytes::from(body),
            stream: call.req.is_stream(),
            forward: &[],
        },
        &clock,
    )
    .await?;
    let mut resp = if call.req.is_stream() {
        let machine = stream::AnthropicToChat::new(stream::Options {
            include_usage: call.req.wants_stream_usage(),
            created: call.created,
            json_mode: t.json_mode.clone(),
            price: call.price,
        });
        http::stream(p, answer.resp, machine, &clock, Some(call.tap), call.health).await?
    } else {
        let bytes = http::read_body(p, answer.resp, clock.deadline).await?;
        let msg: MessagesResponse = serde_json::from_slice(&bytes).map_err(|e| {
            GatewayError::upstream(format!(
                "provider `{}` sent a response that is not a valid Messages response ({e})",
                p.name()
            ))
            .fault(crate::error::Fault::Malformed)
            .retryable(true)
        })?;
        let mut completion = response::messages_to_chat(&msg, call.created, t.json_mode.as_ref());
        completion.usage.cost = match &call.price {
            Some(price) => Cost::Usd(pricing::cost(price, &completion.usage)),
            None => Cost::Unknown,
        };
        let out =
            serde_json::to_vec(&completion).map_err(|e| GatewayError::internal(e.to_string()))?;
        let mut resp = http::json_response(Bytes::from(out));
        resp.extensions_mut().insert(UsageExt(completion.usage));
        resp
    };
    if !t.dropped.is_empty() {
        if let Ok(v) = HeaderValue::from_str(&t.dropped.join(", ")) {
            resp.headers_mut().insert("x-jusinfer-dropped-params", v);
        }
    }
    Ok(resp)
}

/// Maps an Anthropic error answer (§4, MAPPING.md §7): the client's mistakes keep their
/// status; the gateway's credentials failing is a 502; 429, 5xx and 529 may be retried.
pub fn map_status(p: &Provider, status: StatusCode, body: &[u8]) -> GatewayError {
    let parsed: Option<ErrorEnvelope> = serde_json::from_slice(body).ok();
    let (kind, message) = match parsed {
        Some(env) => (env.error.kind, env.error.message),
        None => (
            String::new(),
            String::from_utf8_lossy(&body[..body.len().min(200)])
                .trim()
                .to_owned(),
        ),
    };
    let name = p.name();
    let s = status.as_u16();
    let upstream = |mut e: GatewayError| {
        e.origin = Origin::Upstream;
        e
    };
    match (s, kind.as_str()) {
        (401 | 403, _) | (_, "authentication_error" | "permission_error") => {
            GatewayError::upstream(format!(
                "provider `{name}` rejected the gateway's credentials ({s} {kind}): {message}"
            ))
            .code("upstream_auth_error")
        }
        (429, _) | (_, "rate_limit_error") => {
            let mut e = upstream(
                GatewayError::bad_request(message)
                    .code("rate_limit_exceeded")
                    .retryable(true),
            );
            e.status = StatusCode::TOO_MANY_REQUESTS;
            e.kind = "rate_limit_exceeded";
            e
        }
        (529, _) | (_, "overloaded_error") => {
            let mut e =
                GatewayError::upstream(format!("provider `{name}` is overloaded: {message}"))
                    .code("overloaded")
                    .retryable(true);
            e.status = StatusCode::SERVICE_UNAVAILABLE;
            e.kind = "server_error";
            e
        }
        (404, _) | (_, "not_found_error") => {
            let mut e = upstream(GatewayError::not_found(message).code("model_not_found"));
            e.status = StatusCode::NOT_FOUND;
            e
        }
        (413, _) | (_, "request_too_large") => {
            let mut e = upstream(GatewayError::bad_request(message).code("request_too_large"));
            e.status = StatusCode::PAYLOAD_TOO_LARGE;
            e
        }
        (408, _) => GatewayError::timeout(format!("provider `{name}` timed out (408): {message}")),
        (400..=499, _) => {
            let mut e = upstream(GatewayError::bad_request(message).code("invalid_request_error"));
            e.status = status;
            e
        }
        _ => GatewayError::upstream(format!("provider `{name}` returned {s} {kind}: {message}"))
            .retryable(matches!(s, 500 | 502 | 503 | 504 | 529)),
    }
}
