//! Chat Completions ↔ Amazon Bedrock Converse, as `shared/fixtures/MAPPING.md` §8 sets
//! out: [`request`] turns a Chat request into a `converse` body, [`response`] a
//! `converse` answer into a `chat.completion`, [`stream`] the `converse-stream` events
//! (decoded by `jusinfer_sse::eventstream`, handed over with [`frame_event`]) into Chat
//! chunks.
//!
//! Bedrock's `toolUseId` is the Chat call id both ways (`[a-zA-Z0-9_-]{1,64}`, which
//! OpenAI's `call_…` ids fit). Reasoning comes back as `reasoning_content` and, with its
//! signature (or as redacted bytes), in `thinking_blocks`, so a client that returns the
//! assistant message returns them byte for byte.

pub mod embed;
pub mod request;
pub mod response;
pub mod stream;

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use bytes::Bytes;
use jusinfer_sse::eventstream::{Frame, FrameKind};
use jusinfer_sse::Event;
use jusinfer_wire::bedrock::{ExceptionPayload, TokenUsage};
use jusinfer_wire::chat::{CompletionTokensDetails, Cost, PromptTokensDetails, Usage};

/// The `event` name a mid-stream exception or error frame is handed over with: the
/// exception's type follows (`exception:throttlingException`). No Bedrock event is so
/// named.
pub const EXCEPTION_PREFIX: &str = "exception:";

/// One event-stream frame as a stream machine takes it (`raw`: the same event as SSE).
///
/// - Converse events: the `:event-type` as the event name, the JSON payload as its data.
/// - InvokeModelWithResponseStream `chunk`s: the Anthropic event their `bytes` carry
///   (base64), named by its `type`: the Anthropic machines read it as they read Anthropic's
///   own SSE, and a same-dialect client gets `raw` byte for byte.
/// - Exceptions and errors: named [`EXCEPTION_PREFIX`]`<type>`, with Anthropic's `error`
///   event as data and raw, so every machine reads them (the Converse machine by name,
///   the Anthropic ones as the `error` event they know).
pub fn frame_event(f: Frame) -> Result<Event, String> {
    let (event, data, raw_name) = match f.kind {
        FrameKind::Event(t) if t == "chunk" => {
            let chunk: Chunk = serde_json::from_slice(&f.payload)
                .map_err(|e| format!("a chunk that is not {{\"bytes\": …}} ({e})"))?;
            let data = Bytes::from(
                STANDARD
                    .decode(chunk.bytes.as_bytes())
                    .map_err(|e| format!("a chunk whose bytes are not base64 ({e})"))?,
            );
            let kind: Typed = serde_json::from_slice(&data)
                .map_err(|e| format!("a chunk that is not an Anthropic event ({e})"))?;
            (kind.kind.clone(), data, kind.kind)
        }
        FrameKind::Event(t) => {
            return Ok(Event {
                event: Some(t),
                data: f.payload,
                raw: Bytes::new(),
            })
        }
        FrameKind::Exception(t) => {
            let message = serde_json::from_slice::<ExceptionPayload>(&f.payload)
                .map(|p| p.message)
                .unwrap_or_default();
            exception(&t, &message)
        }
        FrameKind::Error { code, message } => exception(&code, &message),
    };
    let raw = jusinfer_sse::encode_bytes(Some(&raw_name), &data);
    Ok(Event {
        event: Some(event),
        data,
        raw,
    })
}

/// An AWS exception as Anthropic's `error` event: the event name (with the exception's
/// type), its data, and the SSE event name.
fn exception(kind: &str, message: &str) -> (String, Bytes, String) {
    let anthropic = match kind {
        "throttlingException" => "rate_limit_error",
        "serviceUnavailableException" => "overloaded_error",
        "validationException" => "invalid_request_error",
        "accessDeniedException" => "permission_error",
        _ => "api_error",
    };
    let data = serde_json::json!({"type": "error", "error": {
        "type": anthropic,
        "message": format!("{kind}: {message}"),
    }});
    (
        format!("{EXCEPTION_PREFIX}{kind}"),
        Bytes::from(data.to_string()),
        "error".to_owned(),
    )
}

/// The message of an exception event made by [`frame_event`].
pub fn exception_message(ev: &Event) -> String {
    #[derive(serde::Deserialize)]
    struct Inner {
        #[serde(default)]
        message: String,
    }
    #[derive(serde::Deserialize)]
    struct Outer {
        error: Inner,
    }
    serde_json::from_slice::<Outer>(&ev.data)
        .map(|o| o.error.message)
        .unwrap_or_default()
}

#[derive(serde::Deserialize)]
struct Chunk {
    bytes: String,
}

#[derive(serde::Deserialize)]
struct Typed {
    #[serde(rename = "type")]
    kind: String,
}

/// Bedrock's `stopReason` → Chat's `finish_reason`.
pub fn finish_reason(reason: &str, has_calls: bool) -> &'static str {
    match reason {
        "tool_use" => "tool_calls",
        "max_tokens" | "model_context_window_exceeded" => "length",
        "content_filtered" | "guardrail_intervened" => "content_filter",
        _ if has_calls => "tool_calls",
        // `end_turn`, `stop_sequence`, and whatever comes next.
        _ => "stop",
    }
}

/// Bedrock usage → Chat usage: the prompt counts the cache reads and writes too (Bedrock's
/// `inputTokens` excludes them, MAPPING §8.5).
pub fn usage(u: &TokenUsage) -> Usage {
    let read = u.cache_read();
    let write = u.cache_write();
    let prompt = u.input_tokens.saturating_add(read).saturating_add(write);
    Usage {
        prompt_tokens: prompt,
        completion_tokens: u.output_tokens,
        total_tokens: prompt.saturating_add(u.output_tokens),
        prompt_tokens_details: Some(PromptTokensDetails {
            cached_tokens: read,
            audio_tokens: 0,
            cache_write_tokens: write,
        }),
        completion_tokens_details: Some(CompletionTokensDetails::default()),
        cost: Cost::Absent,
    }
}
