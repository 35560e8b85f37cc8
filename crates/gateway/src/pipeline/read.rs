//! The read stage: the body under its size and time limits, then JSON into the dialect's
//! request type with errors that name the offending field.

use axum::body::Body;
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use serde::de::DeserializeOwned;

use crate::error::GatewayError;

/// Reads the body, refusing more than `limit` bytes with 413 and a body still arriving
/// after `timeout` with 408 (a slow sender must not hold a place forever).
pub(crate) async fn read_body(
    body: Body,
    limit: usize,
    timeout: std::time::Duration,
) -> Result<Bytes, GatewayError> {
    let read = tokio::time::timeout(timeout, axum::body::to_bytes(body, limit))
        .await
        .map_err(|_| {
            let mut e = GatewayError::bad_request(format!(
                "The request body did not arrive within {:.0} s.",
                timeout.as_secs_f64()
            ))
            .code("request_timeout");
            e.status = axum::http::StatusCode::REQUEST_TIMEOUT;
            e
        })?;
    read.map_err(|e| {
        let mut src: Option<&(dyn std::error::Error + 'static)> = Some(&e);
        while let Some(s) = src {
            if s.is::<http_body_util::LengthLimitError>() {
                return GatewayError::too_large(limit);
            }
            src = s.source();
        }
        GatewayError::bad_request(format!("could not read the request body: {e}"))
    })
}

/// Parses a JSON request body into `T`, turning every failure into a 400 whose `param`
/// names the offending field.
pub fn parse_json<T: DeserializeOwned>(body: &[u8]) -> Result<T, GatewayError> {
    if let Err(e) = std::str::from_utf8(body) {
        return Err(GatewayError::bad_request(format!(
            "The request body is not valid UTF-8 (invalid byte at offset {}).",
            e.valid_up_to()
        ))
        .code("invalid_utf8"));
    }
    if body.iter().all(u8::is_ascii_whitespace) {
        return Err(
            GatewayError::bad_request("The request body is empty: send a JSON object.")
                .code("invalid_json"),
        );
    }
    if body.iter().find(|b| !b.is_ascii_whitespace()) != Some(&b'{') {
        // serde would read a top-level array as a struct's fields in order.
        return Err(
            GatewayError::bad_request("The request body must be a JSON object.")
                .code("invalid_json"),
        );
    }
    // A body that parses needs no path: the tracking deserializer runs only to explain
    // a refusal (the same bytes, so the same error).
    if let Ok(value) = serde_json::from_slice::<T>(body) {
        return Ok(value);
    }
    let mut de = serde_json::Deserializer::from_slice(body);
    let value = serde_path_to_error::deserialize::<_, T>(&mut de).map_err(|e| {
        let inner = e.inner();
        if inner.is_syntax() || inner.is_eof() {
            return GatewayError::bad_request(format!(
                "We could not parse the JSON body of your request ({inner}). The body must be valid JSON."
            ))
            .code("invalid_json");
        }
        let path = e.path().to_string();
        let msg = inner.to_string();
        let param = if let Some(field) = msg.strip_prefix("missing field `").and_then(|r| r.split('`').next()) {
            if path == "." { field.to_owned() } else { format!("{path}.{field}") }
        } else {
            path.clone()
        };
        if param == "." {
            return GatewayError::bad_request(format!("The request body must be a JSON object ({msg})."))
                .code("invalid_json");
        }
        let msg = friendly(msg.split(" at line ").next().unwrap_or(&msg));
        GatewayError::bad_request(format!("Invalid value for '{param}': {msg}."))
            .param(param)
            .code(if msg.starts_with("missing field") { "missing_required_parameter" } else { "invalid_type" })
    })?;
    // Trailing garbage after the object is malformed JSON too.
    de.end().map_err(|e| {
        GatewayError::bad_request(format!(
            "We could not parse the JSON body of your request ({e})."
        ))
        .code("invalid_json")
    })?;
    Ok(value)
}

/// The request's model name, refused with `missing` when empty or blank (serde has
/// already refused it absent or not a string, naming the field).
pub(crate) fn model_named(
    model: &str,
    missing: impl FnOnce() -> GatewayError,
) -> Result<String, GatewayError> {
    if model.trim().is_empty() {
        return Err(missing());
    }
    Ok(model.to_owned())
}

/// A path parameter whose rejection (bad percent-encoding, invalid UTF-8) is a 400 in the
/// API's error shape rather than axum's plain text.
pub(crate) struct ApiPath<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned + Send> axum::extract::FromRequestParts<S> for ApiPath<T> {
    type Rejection = Response;

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        state: &S,
    ) -> Result<Self, Response> {
        match axum::extract::Path::<T>::from_request_parts(parts, state).await {
            Ok(axum::extract::Path(v)) => Ok(Self(v)),
            Err(e) => Err(GatewayError::bad_request(format!(
                "The request path is invalid: {}",
                e.body_text()
            ))
            .code("invalid_path")
            .into_response()),
        }
    }
}

/// serde's messages for untagged enums name Rust types; say what the API expects instead.
fn friendly(msg: &str) -> String {
    const EXPECTED: &[(&str, &str)] = &[
        (
            "MessageContent",
            "expected a string or an array of content parts",
        ),
        (
            "ToolChoice",
            "expected \"none\", \"auto\", \"required\" or an object naming a function",
        ),
        ("Stop", "expected a string or an array of strings"),
        ("ImageUrl", "expected an object with `url`"),
        (
            "Input",
            "expected a string, an array of strings, or token arrays",
        ),
    ];
    if let Some(rest) = msg.strip_prefix("data did not match any variant of untagged enum ") {
        if let Some((_, e)) = EXPECTED.iter().find(|(name, _)| rest.trim() == *name) {
            return (*e).to_owned();
        }
        return "has the wrong type".to_owned();
    }
    msg.to_owned()
}
