//! An entry's body: whether an answer may be kept, the usage it reports, and the answer a
//! hit gives.

use axum::body::Body;
use axum::http::HeaderValue;
use axum::response::Response;
use serde_json::Value;

use super::Codec;
use jusinfer_wire::chat::{CompletionTokensDetails, PromptTokensDetails, Usage};

/// A body that is a finished success in its dialect (not an error object, not a
/// Response that failed or stopped short).
pub(super) fn complete(body: &Value) -> bool {
    body.is_object()
        && body.get("error").is_none_or(Value::is_null)
        && body
            .get("status")
            .and_then(Value::as_str)
            .is_none_or(|s| s == "completed")
}

/// The usage a body reports, in OpenAI terms, whichever dialect it is.
pub(crate) fn usage_of(body: &Value) -> Usage {
    let n = |v: &Value| v.as_u64().unwrap_or(0);
    let mut u = Usage::default();
    if let Some(g) = body.get("usageMetadata") {
        u.prompt_tokens = n(&g["promptTokenCount"]);
        u.completion_tokens = n(&g["candidatesTokenCount"]) + n(&g["thoughtsTokenCount"]);
        set_details(
            &mut u,
            n(&g["cachedContentTokenCount"]),
            n(&g["thoughtsTokenCount"]),
        );
    } else if let Some(x) = body.get("usage") {
        if x.get("prompt_tokens").is_some() {
            u.prompt_tokens = n(&x["prompt_tokens"]);
            u.completion_tokens = n(&x["completion_tokens"]);
            set_details(
                &mut u,
                n(&x["prompt_tokens_details"]["cached_tokens"]),
                n(&x["completion_tokens_details"]["reasoning_tokens"]),
            );
        } else if x.get("input_tokens_details").is_some()
            || x.get("output_tokens_details").is_some()
        {
            u.prompt_tokens = n(&x["input_tokens"]);
            u.completion_tokens = n(&x["output_tokens"]);
            set_details(
                &mut u,
                n(&x["input_tokens_details"]["cached_tokens"]),
                n(&x["output_tokens_details"]["reasoning_tokens"]),
            );
        } else {
            // Anthropic: input_tokens excludes the cached part.
            let read = n(&x["cache_read_input_tokens"]);
            u.prompt_tokens = n(&x["input_tokens"]) + read + n(&x["cache_creation_input_tokens"]);
            u.completion_tokens = n(&x["output_tokens"]);
            set_details(&mut u, read, 0);
        }
    }
    u.total_tokens = u.prompt_tokens + u.completion_tokens;
    u
}

fn set_details(u: &mut Usage, cached: u64, reasoning: u64) {
    if cached > 0 {
        u.prompt_tokens_details = Some(PromptTokensDetails {
            cached_tokens: cached,
            ..Default::default()
        });
    }
    if reasoning > 0 {
        u.completion_tokens_details = Some(CompletionTokensDetails {
            reasoning_tokens: reasoning,
            ..Default::default()
        });
    }
}

/// A hit costs nothing: the body's `usage.cost`, if it says one, becomes 0.
pub(crate) fn no_cost(body: &mut Value) {
    if let Some(c) = body
        .get_mut("usage")
        .and_then(|u| u.as_object_mut())
        .and_then(|u| u.get_mut("cost"))
    {
        *c = Value::from(0.0);
    }
}

/// A hit is a new answer: a fresh id in `key` (`prefix` and 24 random characters), and
/// a Chat body's `created` is now.
pub(crate) fn fresh_id(body: &mut Value, (key, prefix): (&str, &str)) {
    use rand::distributions::{Alphanumeric, DistString};
    let Some(m) = body.as_object_mut() else {
        return;
    };
    if m.contains_key(key) {
        let id = Alphanumeric.sample_string(&mut rand::thread_rng(), 24);
        m.insert(key.to_owned(), Value::String(format!("{prefix}{id}")));
    }
    if m.get("created").is_some_and(Value::is_u64) {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        m.insert("created".to_owned(), Value::from(now));
    }
}

/// The answer a hit gives: the body, or a stream made from it; `None` when the entry
/// cannot be replayed (a miss then).
pub(crate) fn replay(
    codec: &Codec,
    body: &Value,
    stream: bool,
    include_usage: bool,
    age_secs: u64,
) -> Option<Response> {
    let mut resp = if stream {
        let frames = (codec.replay)(body, include_usage)?;
        let s = futures_util::stream::iter(frames.into_iter().map(Ok::<_, std::io::Error>));
        let mut r = Response::new(Body::from_stream(s));
        let h = r.headers_mut();
        h.insert(
            "content-type",
            HeaderValue::from_static("text/event-stream"),
        );
        h.insert("cache-control", HeaderValue::from_static("no-cache"));
        r
    } else {
        let bytes = serde_json::to_vec(body).ok()?;
        crate::upstream::http::json_response(bytes.into())
    };
    resp.headers_mut()
        .insert("age", HeaderValue::from(age_secs));
    Some(resp)
}
