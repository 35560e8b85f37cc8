//! Streams ↔ stored bodies, for an exact response cache.
//!
//! The cache keeps a response as the client dialect's **non-streaming JSON body**. Each
//! dialect module has two pure functions:
//!
//! - `collect(stream)`: the complete SSE byte stream exactly as the gateway sent it to the
//!   client → the equivalent non-streaming body. `None` unless the stream is complete and
//!   successful: its terminal event arrived (Chat `data: [DONE]`, Messages `message_stop`,
//!   Responses `response.completed`, Gemini a `finishReason` on every candidate), no error
//!   event came, and every event parsed. Any input is safe (truncated, garbage): the work
//!   is one pass over the events, and nothing panics.
//! - `replay(body)`: a stored body → the frames of a stream in the dialect's real streaming
//!   shape (each `Bytes` one complete SSE frame, framed as the gateway's own encoders frame
//!   them), which the official SDKs accumulate back to the same content. `None` when the
//!   body is not of the expected shape.
//!
//! `collect(replay(body))` gives `body` back for the fields a body of that dialect has:
//! content, tool calls, stop reasons, usage, ids (see each module for the exceptions).
//! [`Dialect`] picks the module at run time.

pub mod chat;
pub mod gemini;
pub mod messages;
pub mod responses;

#[cfg(test)]
pub(crate) mod tests;

use bytes::Bytes;
use jusinfer_sse::{Decoder, Event};
use serde_json::{Map, Value};

/// The client dialect of a cached response.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Dialect {
    /// OpenAI Chat Completions ([`chat`]).
    Chat,
    /// Anthropic Messages ([`messages`]).
    Messages,
    /// OpenAI Responses ([`responses`]).
    Responses,
    /// Google Gemini `streamGenerateContent?alt=sse` ([`gemini`]).
    Gemini,
}

impl Dialect {
    /// The non-streaming body a complete, successful stream adds up to.
    pub fn collect(self, stream: &[u8]) -> Option<Value> {
        match self {
            Self::Chat => chat::collect(stream),
            Self::Messages => messages::collect(stream),
            Self::Responses => responses::collect(stream),
            Self::Gemini => gemini::collect(stream),
        }
    }

    /// The stream frames for a stored body; `include_usage` matters to Chat only (the
    /// client's `stream_options.include_usage`).
    pub fn replay(self, body: &Value, include_usage: bool) -> Option<Vec<Bytes>> {
        match self {
            Self::Chat => chat::replay(body, include_usage),
            Self::Messages => messages::replay(body),
            Self::Responses => responses::replay(body),
            Self::Gemini => gemini::replay(body),
        }
    }
}

/// Every event of a whole SSE stream; `None` when the bytes do not decode (cut inside a
/// line, an event over the decoder's size limit).
fn events(stream: &[u8]) -> Option<Vec<Event>> {
    let mut dec = Decoder::new();
    dec.push(stream);
    let mut out = Vec::new();
    while let Some(ev) = dec.next_event().ok()? {
        out.push(ev);
    }
    out.extend(dec.finish().ok()?);
    Some(out)
}

/// An event's data as a JSON object.
fn object(data: &[u8]) -> Option<Map<String, Value>> {
    match serde_json::from_slice(data).ok()? {
        Value::Object(m) => Some(m),
        _ => None,
    }
}

/// One SSE frame: an optional `event:` line and the JSON on one `data:` line.
fn frame(event: Option<&str>, v: &Value) -> Bytes {
    // Serializing a `Value` cannot fail; compact JSON has no line breaks.
    jusinfer_sse::encode_bytes(event, &serde_json::to_vec(v).unwrap_or_default())
}

/// Appends `s` to the string at `key` (creating it; a non-string there is replaced).
fn append(m: &mut Map<String, Value>, key: &str, s: &str) {
    match m.get_mut(key) {
        Some(Value::String(t)) => t.push_str(s),
        _ => {
            m.insert(key.to_owned(), Value::String(s.to_owned()));
        }
    }
}

/// `m` with `key` set to `v`, in place when present (key order kept), else appended.
fn with(mut m: Map<String, Value>, key: &str, v: Value) -> Map<String, Value> {
    m.insert(key.to_owned(), v);
    m
}
