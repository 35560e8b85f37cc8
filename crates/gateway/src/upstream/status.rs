//! The errors an upstream's answer maps to, whatever its kind: each kind's `map_status`
//! reads its own error body and picks one of these.

use axum::http::StatusCode;

use crate::error::{GatewayError, Origin};

/// The start of an error body that is not the kind's JSON, as the error's message.
pub(crate) fn body_head(body: &[u8]) -> String {
    String::from_utf8_lossy(&body[..body.len().min(200)])
        .trim()
        .to_owned()
}

fn from_upstream(mut e: GatewayError, status: StatusCode) -> GatewayError {
    e.origin = Origin::Upstream;
    e.status = status;
    e
}

/// The provider refused the gateway's own credentials: not the client's fault (a 502).
pub(crate) fn credentials_refused(provider: &str, what: &str, message: &str) -> GatewayError {
    GatewayError::upstream(format!(
        "provider `{provider}` rejected the gateway's credentials ({what}): {message}"
    ))
    .code("upstream_auth_error")
}

/// 429, retryable (another deployment may have room).
pub(crate) fn rate_limited(message: String) -> GatewayError {
    let mut e = from_upstream(
        GatewayError::bad_request(message)
            .code("rate_limit_exceeded")
            .retryable(true),
        StatusCode::TOO_MANY_REQUESTS,
    );
    e.kind = "rate_limit_exceeded";
    e
}

/// 503, retryable.
pub(crate) fn unavailable(provider: &str, why: &str, message: &str) -> GatewayError {
    let mut e = GatewayError::upstream(format!("provider `{provider}` is {why}: {message}"))
        .code("overloaded")
        .retryable(true);
    e.status = StatusCode::SERVICE_UNAVAILABLE;
    e.kind = "server_error";
    e
}

/// 404: the model is not there.
pub(crate) fn model_not_found(message: String) -> GatewayError {
    from_upstream(
        GatewayError::not_found(message).code("model_not_found"),
        StatusCode::NOT_FOUND,
    )
}

/// The client's mistake, with the upstream's status and `code`.
pub(crate) fn client_error(
    status: StatusCode,
    code: &'static str,
    message: String,
) -> GatewayError {
    from_upstream(GatewayError::bad_request(message).code(code), status)
}
