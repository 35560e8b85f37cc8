//! Anthropic upstreams: the API version spoken and how their errors read. Requests reach
//! them natively from `/v1/messages`, and through the Chat leg (`leg.rs`) from every other
//! dialect.

use axum::http::StatusCode;
use bytes::Bytes;
use jusinfer_wire::anthropic::ErrorEnvelope;

use super::Provider;
use crate::error::{GatewayError, Origin};

/// The API version the translation is written against.
pub(crate) const ANTHROPIC_VERSION: &str = "2023-06-01";

/// A Messages body as `p` takes it: as it is, or (Vertex) with `anthropic_version` in
/// place of `model`.
pub(crate) fn body_for(p: &Provider, body: Bytes) -> Result<Bytes, GatewayError> {
    match p.upstream.anthropic_version_in_body {
        Some(_) => super::vertex::anthropic_body(&body),
        None => Ok(body),
    }
}

/// Maps an Anthropic error answer (§4, MAPPING.md §7): the client's mistakes keep their
/// status; the gateway's credentials failing is a 502; 429, 5xx and 529 may be retried.
pub(crate) fn map_status(p: &Provider, status: StatusCode, body: &[u8]) -> GatewayError {
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
