//! Anthropic upstreams: the API version spoken and how their errors read. Requests reach
//! them natively from `/v1/messages`, and through the Chat leg (`leg.rs`) from every other
//! dialect.

use axum::http::StatusCode;
use bytes::Bytes;
use jusinfer_wire::anthropic::ErrorEnvelope;

use super::status;
use super::Provider;
use crate::error::GatewayError;

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
        None => (String::new(), status::body_head(body)),
    };
    let name = p.name();
    let s = status.as_u16();
    match (s, kind.as_str()) {
        (401 | 403, _) | (_, "authentication_error" | "permission_error") => {
            status::credentials_refused(name, &format!("{s} {kind}"), &message)
        }
        (429, _) | (_, "rate_limit_error") => status::rate_limited(message),
        (529, _) | (_, "overloaded_error") => status::unavailable(name, "overloaded", &message),
        (404, _) | (_, "not_found_error") => status::model_not_found(message),
        (413, _) | (_, "request_too_large") => {
            status::client_error(StatusCode::PAYLOAD_TOO_LARGE, "request_too_large", message)
        }
        (408, _) => GatewayError::timeout(format!("provider `{name}` timed out (408): {message}")),
        (400..=499, _) => status::client_error(status, "invalid_request_error", message),
        _ => GatewayError::upstream(format!("provider `{name}` returned {s} {kind}: {message}"))
            .retryable(matches!(s, 500 | 502 | 503 | 504 | 529)),
    }
}
