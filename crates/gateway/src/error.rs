//! `GatewayError`: the one error type at the HTTP edge. It knows its status, where it came
//! from and whether another deployment may be tried, and renders itself in the client's
//! dialect: an OpenAI error body, or a final stream event once a stream has started.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use jusinfer_wire::error::{ErrorBody, ErrorEnvelope};

/// Who caused the failure.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Origin {
    Client,
    Upstream,
    Internal,
}

/// What went wrong upstream, for metrics and the circuit breaker.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Fault {
    #[default]
    None,
    /// The connection could not be made.
    Connect,
    /// No answer (or no next chunk) in time.
    Timeout,
    /// The upstream answered 429.
    RateLimited,
    /// The upstream answered another error status.
    Status,
    /// Wrong content type, invalid JSON, broken SSE.
    Malformed,
    /// The upstream broke off its answer.
    Disconnect,
    /// The deployment's kind cannot serve the endpoint (not a health problem).
    Unsupported,
}

impl Fault {
    /// The `kind` label of `jusinfer_upstream_errors_total`.
    pub fn label(self) -> &'static str {
        match self {
            Self::None => "other",
            Self::Connect => "connect",
            Self::Timeout => "timeout",
            Self::RateLimited => "rate_limited",
            Self::Status => "status",
            Self::Malformed => "malformed",
            Self::Disconnect => "disconnect",
            Self::Unsupported => "unsupported",
        }
    }
}

#[derive(Debug, Clone)]
pub struct GatewayError {
    pub status: StatusCode,
    /// OpenAI `error.type`.
    pub kind: &'static str,
    pub message: String,
    pub param: Option<String>,
    pub code: Option<String>,
    pub origin: Origin,
    /// Another attempt (same or next deployment) may succeed.
    pub retryable: bool,
    /// Milliseconds, from an upstream `Retry-After` or the gateway's own 429s; sent as
    /// `retry-after` (seconds, rounded up) and `retry-after-ms` (the OpenAI SDKs read it
    /// first).
    pub retry_after_ms: Option<u64>,
    /// Set on upstream failures.
    pub fault: Fault,
}

/// Prefixes of the usual API key formats (OpenAI, Anthropic, jusinfer, AWS, Google,
/// GitHub, Slack, Groq, …): a token starting with one, long enough, is taken for a key.
const KEY_PREFIXES: &[&str] = &[
    "sk-", "sk_", "rk-", "pk-", "jinf_", "AKIA", "ASIA", "AIza", "ghp_", "gho_", "xoxb-", "xoxp-",
    "gsk_", "hf_", "key-", "ya29.",
];
/// Shortest token taken for a key.
const KEY_MIN_LEN: usize = 20;
const REDACTED: &str = "[redacted]";

/// `text` with every secret in `secrets` (8 bytes or longer) and every key-shaped token
/// replaced by `[redacted]`: upstream error text can quote the provider key it was sent.
pub(crate) fn scrub(text: &str, secrets: &[&str]) -> String {
    let mut out = text.to_owned();
    for s in secrets.iter().filter(|s| s.len() >= 8) {
        if out.contains(*s) {
            out = out.replace(*s, REDACTED);
        }
    }
    let is_tok = |c: char| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.');
    let mut result = String::with_capacity(out.len());
    let mut rest = out.as_str();
    while let Some(start) = rest.find(is_tok) {
        result.push_str(&rest[..start]);
        let tail = &rest[start..];
        let end = tail.find(|c: char| !is_tok(c)).unwrap_or(tail.len());
        let tok = &tail[..end];
        // A sentence's full stop is not part of the key.
        let core = tok.trim_end_matches('.');
        if core.len() >= KEY_MIN_LEN && KEY_PREFIXES.iter().any(|p| core.starts_with(p)) {
            result.push_str(REDACTED);
            result.push_str(&tok[core.len()..]);
        } else {
            result.push_str(tok);
        }
        rest = &tail[end..];
    }
    result.push_str(rest);
    result
}

impl GatewayError {
    fn new(status: StatusCode, kind: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            kind,
            message: message.into(),
            param: None,
            code: None,
            origin: Origin::Client,
            retryable: false,
            retry_after_ms: None,
            fault: Fault::None,
        }
    }

    pub fn param(mut self, p: impl Into<String>) -> Self {
        self.param = Some(p.into());
        self
    }

    pub fn code(mut self, c: impl Into<String>) -> Self {
        self.code = Some(c.into());
        self
    }

    /// 400 invalid_request_error.
    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "invalid_request_error", message)
    }

    /// 401 with OpenAI's `invalid_api_key` code.
    pub fn invalid_key(message: impl Into<String>) -> Self {
        Self::new(StatusCode::UNAUTHORIZED, "invalid_request_error", message)
            .code("invalid_api_key")
    }

    /// 401 when no key was sent at all (OpenAI sends no code then).
    pub fn missing_key() -> Self {
        Self::new(
            StatusCode::UNAUTHORIZED,
            "invalid_request_error",
            "You didn't provide an API key. Send it as `Authorization: Bearer jinf_...`.",
        )
    }

    pub fn forbidden(message: impl Into<String>) -> Self {
        Self::new(StatusCode::FORBIDDEN, "permission_error", message).code("model_not_allowed")
    }

    pub fn model_not_found(model: &str, close: &[String]) -> Self {
        let hint = if close.is_empty() {
            String::new()
        } else {
            format!(" Did you mean: {}?", close.join(", "))
        };
        Self::new(
            StatusCode::NOT_FOUND,
            "invalid_request_error",
            format!("The model `{model}` does not exist or is not routable by this gateway.{hint}"),
        )
        .param("model")
        .code("model_not_found")
    }

    /// 429 `rate_limit_exceeded`: a key's RPM or TPM is spent for now. `kind` is
    /// `requests` or `tokens`, as OpenAI's `error.type` says which limit was hit.
    pub fn rate_limited(
        kind: &'static str,
        message: impl Into<String>,
        retry_after_ms: u64,
    ) -> Self {
        let mut e =
            Self::new(StatusCode::TOO_MANY_REQUESTS, kind, message).code("rate_limit_exceeded");
        e.retry_after_ms = Some(retry_after_ms);
        e
    }

    /// 429 `insufficient_quota`: a key's spend reached its budget.
    pub fn insufficient_quota(message: impl Into<String>) -> Self {
        Self::new(StatusCode::TOO_MANY_REQUESTS, "insufficient_quota", message)
            .code("insufficient_quota")
    }

    pub fn too_large(limit: usize) -> Self {
        Self::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "invalid_request_error",
            format!("The request body is larger than the {limit}-byte limit."),
        )
        .code("request_too_large")
    }

    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, "invalid_request_error", message).code("not_found")
    }

    /// 502: the upstream failed or sent something that cannot be passed on.
    pub fn upstream(message: impl Into<String>) -> Self {
        let mut e =
            Self::new(StatusCode::BAD_GATEWAY, "upstream_error", message).code("upstream_error");
        e.origin = Origin::Upstream;
        e
    }

    /// 504: the upstream did not answer in time.
    pub fn timeout(message: impl Into<String>) -> Self {
        let mut e = Self::new(StatusCode::GATEWAY_TIMEOUT, "timeout", message).code("timeout");
        e.origin = Origin::Upstream;
        e.retryable = true;
        e.fault = Fault::Timeout;
        e
    }

    pub fn internal(message: impl Into<String>) -> Self {
        let mut e = Self::new(StatusCode::INTERNAL_SERVER_ERROR, "server_error", message);
        e.origin = Origin::Internal;
        e
    }

    /// 503: the gateway is at capacity, draining, or has no deployment to try.
    pub fn unavailable(message: impl Into<String>, retry_after_ms: u64) -> Self {
        let mut e = Self::new(StatusCode::SERVICE_UNAVAILABLE, "server_error", message)
            .code("service_unavailable");
        e.origin = Origin::Internal;
        e.retry_after_ms = Some(retry_after_ms);
        e
    }

    pub fn fault(mut self, f: Fault) -> Self {
        self.fault = f;
        self
    }

    pub fn retryable(mut self, r: bool) -> Self {
        self.retryable = r;
        self
    }

    fn envelope(&self) -> ErrorEnvelope {
        ErrorEnvelope {
            error: ErrorBody {
                message: self.message.clone(),
                kind: self.kind.to_owned(),
                param: self.param.clone(),
                code: self.code.clone(),
            },
        }
    }

    /// The OpenAI JSON body.
    pub fn body(&self) -> Bytes {
        Bytes::from(serde_json::to_vec(&self.envelope()).unwrap_or_default())
    }

    /// The error in Anthropic's shape (`/v1/messages`): `{"type":"error","error":{…}}`.
    pub fn anthropic_body(&self) -> Bytes {
        let kind =
            jusinfer_translate::messages::stream::error_type(self.kind, self.status.as_u16());
        Bytes::from(
            serde_json::json!({"type": "error", "error": {"type": kind, "message": self.message}})
                .to_string(),
        )
    }

    /// The response for `/v1/messages` clients: Anthropic's body and status (529 for an
    /// overloaded upstream), with the same retry headers.
    pub fn into_anthropic_response(self) -> Response {
        let body = self.anthropic_body();
        let overloaded =
            jusinfer_translate::messages::stream::error_type(self.kind, self.status.as_u16())
                == "overloaded_error";
        let mut resp = self.into_response();
        *resp.body_mut() = axum::body::Body::from(body);
        if overloaded {
            *resp.status_mut() =
                StatusCode::from_u16(529).unwrap_or(StatusCode::SERVICE_UNAVAILABLE);
        }
        resp
    }

    /// The error in Google's shape (the Gemini API): `{"error":{"code","message","status"}}`,
    /// `status` the `google.rpc.Code` name of the HTTP status.
    pub fn gemini_body(&self) -> serde_json::Value {
        jusinfer_translate::generate::stream::error_body(self.status.as_u16(), &self.message)
    }

    /// The response for Gemini API clients: Google's body, the same status and retry
    /// headers.
    pub fn into_gemini_response(self) -> Response {
        let body = self.gemini_body().to_string();
        let mut resp = self.into_response();
        *resp.body_mut() = axum::body::Body::from(body);
        resp
    }

    /// The final `data: {"error":...}` event of a stream that has already started.
    pub fn stream_frame(&self) -> Bytes {
        jusinfer_sse::encode_bytes(None, &self.body())
    }
}

impl std::fmt::Display for GatewayError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} {}: {}",
            self.status.as_u16(),
            self.kind,
            self.message
        )
    }
}

impl IntoResponse for GatewayError {
    fn into_response(self) -> Response {
        let mut resp = (
            self.status,
            [("content-type", "application/json")],
            self.body(),
        )
            .into_response();
        if let Some(ms) = self.retry_after_ms {
            let h = resp.headers_mut();
            h.insert(
                "retry-after",
                axum::http::HeaderValue::from(ms.div_ceil(1000)),
            );
            h.insert("retry-after-ms", axum::http::HeaderValue::from(ms));
        }
        resp
    }
}

#[cfg(test)]
mod tests {
    use super::scrub;

    #[test]
    fn secrets_and_key_shaped_tokens_are_scrubbed() {
        let msg = "Incorrect API key provided: sk-sim-provider-key-0123456789. You can find your API key at https://platform.example/account.";
        assert_eq!(
            scrub(msg, &[]),
            "Incorrect API key provided: [redacted]. You can find your API key at https://platform.example/account."
        );
        assert_eq!(
            scrub(
                "bad key 'hunter2-custom-secret' given",
                &["hunter2-custom-secret"]
            ),
            "bad key '[redacted]' given"
        );
        assert_eq!(
            scrub("x-api-key sk-ant-api03-abcdefghijklmnopqrstuvwxyz", &[]),
            "x-api-key [redacted]"
        );
        // Short or ordinary tokens stay.
        assert_eq!(
            scrub("model gpt-4o-mini not found (sk-1)", &["short"]),
            "model gpt-4o-mini not found (sk-1)"
        );
        assert_eq!(
            scrub("ünïcödé AKIAIOSFODNN7EXAMPLEXX ok", &[]),
            "ünïcödé [redacted] ok"
        );
    }
}
