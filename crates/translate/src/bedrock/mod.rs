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

pub mod request;
pub mod response;
pub mod stream;

use bytes::Bytes;
use jusinfer_sse::eventstream::{Frame, FrameKind};
use jusinfer_sse::Event;
use jusinfer_wire::bedrock::TokenUsage;
use jusinfer_wire::chat::{CompletionTokensDetails, Cost, PromptTokensDetails, Usage};

/// The `event` name a mid-stream exception or error frame is handed over with: the
/// exception's type follows (`exception:throttlingException`). No Bedrock event is so
/// named.
pub const EXCEPTION_PREFIX: &str = "exception:";

/// One event-stream frame as the stream machine takes it: the `:event-type` as the event
/// name and the JSON payload as its data; exceptions and errors as
/// [`EXCEPTION_PREFIX`]`<type>` with `{"message": …}`.
pub fn frame_event(f: Frame) -> Event {
    let (event, data) = match f.kind {
        FrameKind::Event(t) => (t, f.payload),
        FrameKind::Exception(t) => (format!("{EXCEPTION_PREFIX}{t}"), f.payload),
        FrameKind::Error { code, message } => (
            format!("{EXCEPTION_PREFIX}{code}"),
            Bytes::from(serde_json::json!({ "message": message }).to_string()),
        ),
    };
    Event {
        event: Some(event),
        data,
        raw: Bytes::new(),
    }
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
