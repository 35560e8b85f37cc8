//! Gemini upstreams (AI Studio): where each request goes (the model is in the path) and
//! how their errors read. Requests reach them through the Chat leg (`leg.rs`) from every
//! client dialect.

use axum::http::StatusCode;
use bytes::Bytes;
use jusinfer_wire::gemini::ErrorEnvelope;

use super::status;
use super::{Endpoint, Provider};
use crate::error::GatewayError;

/// `{base_url}/models/{model}:{method}`, and `?alt=sse` for a stream. A model may be
/// written `models/…` as Google's SDKs name it. The model is one path segment, percent-
/// encoded where it must be: no model name can change the path or the query.
pub(crate) fn url(
    p: &Provider,
    e: Endpoint,
    model: &str,
    stream: bool,
) -> Result<reqwest::Url, GatewayError> {
    let model = model.strip_prefix("models/").unwrap_or(model);
    let method = match (e, stream) {
        (Endpoint::ChatCompletions, false) => "generateContent",
        (Endpoint::ChatCompletions, true) => "streamGenerateContent",
        (Endpoint::CountTokens, _) => "countTokens",
        (Endpoint::Embeddings, _) => "batchEmbedContents",
        (Endpoint::Responses | Endpoint::NativeMessages, _) => {
            return Err(GatewayError::internal(
                "a Gemini provider has no such endpoint",
            ))
        }
    };
    let sse = stream && e == Endpoint::ChatCompletions;
    p.url_with(
        &["models", &format!("{model}:{method}")],
        sse.then_some("alt=sse"),
    )
}

/// `RetryInfo.retryDelay` (`"34.4s"`) in milliseconds.
fn retry_delay_ms(env: &ErrorEnvelope) -> Option<u64> {
    env.error.details.iter().find_map(|d| {
        let delay = d.get("retryDelay")?.as_str()?.strip_suffix('s')?;
        let secs: f64 = delay.parse().ok()?;
        (secs.is_finite() && secs >= 0.0).then(|| (secs * 1000.0).round() as u64)
    })
}

/// `ErrorInfo.reason`.
fn reason(env: &ErrorEnvelope) -> Option<&str> {
    env.error
        .details
        .iter()
        .find_map(|d| d.get("reason").and_then(|r| r.as_str()))
}

/// Maps a Google error answer (MAPPING.md §8.7): the gateway's key refused is a 502 (the
/// client's key is not at fault); quota is a retryable 429 with the `RetryInfo` delay;
/// `UNAVAILABLE`, `INTERNAL` and other 5xx may be retried; the client's mistakes keep their
/// status.
pub(crate) fn map_status(p: &Provider, status: StatusCode, body: &[u8]) -> GatewayError {
    let parsed: Option<ErrorEnvelope> = serde_json::from_slice(body).ok();
    let (code, message) = match &parsed {
        Some(env) => (env.error.status.clone(), env.error.message.clone()),
        None => (String::new(), status::body_head(body)),
    };
    let name = p.name();
    let s = status.as_u16();
    let key_refused = parsed
        .as_ref()
        .and_then(reason)
        .is_some_and(|r| r == "API_KEY_INVALID" || r == "API_KEY_SERVICE_BLOCKED");
    match (s, code.as_str()) {
        _ if key_refused => status::credentials_refused(name, &format!("{s} {code}"), &message),
        (401 | 403, _) | (_, "UNAUTHENTICATED" | "PERMISSION_DENIED") => {
            status::credentials_refused(name, &format!("{s} {code}"), &message)
        }
        (429, _) | (_, "RESOURCE_EXHAUSTED") => {
            let mut e = status::rate_limited(message);
            e.retry_after_ms = parsed.as_ref().and_then(retry_delay_ms);
            e
        }
        (404, _) | (_, "NOT_FOUND") => status::model_not_found(message),
        (503, _) | (_, "UNAVAILABLE") => status::unavailable(name, "unavailable", &message),
        (408 | 504, _) | (_, "DEADLINE_EXCEEDED") => {
            GatewayError::timeout(format!("provider `{name}` timed out ({s}): {message}"))
        }
        (400..=499, _) => status::client_error(status, "invalid_request_error", message),
        _ => GatewayError::upstream(format!("provider `{name}` returned {s} {code}: {message}"))
            .retryable(matches!(s, 500 | 502 | 503 | 504)),
    }
}

/// Requests one `batchEmbedContents` call takes (docs: at most 100).
const EMBED_BATCH: usize = 100;

/// Calls in flight at once for one request's embeddings.
const EMBED_CONCURRENCY: usize = 4;

/// Embeds `requests` (each one `EmbedContentRequest`, naming the model) with the AI
/// Studio model of `d`: `batchEmbedContents` in batches of [`EMBED_BATCH`], at most
/// [`EMBED_CONCURRENCY`] at once, the vectors in order.
pub(crate) async fn embed<T: serde::Serialize + Sync>(
    d: &crate::routing::Deployment,
    requests: &[T],
) -> Result<Vec<Vec<f64>>, GatewayError> {
    use jusinfer_translate::gemini::embed::BatchEmbedResponse;
    super::vertex::check_embed_inputs(requests.len())?;
    let p = &*d.provider;
    let bodies = requests
        .chunks(EMBED_BATCH)
        .map(|chunk| serde_json::to_vec(&serde_json::json!({ "requests": chunk })).map(Bytes::from))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| GatewayError::internal(e.to_string()))?;
    let answers =
        super::execute::fan_out(d, Endpoint::Embeddings, bodies, EMBED_CONCURRENCY).await?;
    let mut vectors = Vec::with_capacity(requests.len());
    for (bytes, chunk) in answers.iter().zip(requests.chunks(EMBED_BATCH)) {
        let got: BatchEmbedResponse = serde_json::from_slice(bytes).map_err(|e| {
            super::execute::malformed(
                p,
                &format!("a response that is not a batchEmbedContents answer ({e})"),
            )
        })?;
        if got.embeddings.len() != chunk.len() {
            return Err(super::execute::malformed(
                p,
                "a different number of embeddings than inputs",
            ));
        }
        vectors.extend(got.embeddings.into_iter().map(|e| e.values));
    }
    Ok(vectors)
}
