//! Pure conversions and stream state machines between the dialects jusinfer speaks.
//!
//! Nothing here does I/O, reads a clock or spawns: every stream type is a state machine
//! with `push(event) -> frames out` and `finish() -> frames out`, fed by the caller's SSE
//! decoder. That keeps each translation testable byte for byte against recorded traffic.

pub mod answer;
pub mod anthropic;
pub mod bedrock;
pub mod chat_stream;
pub mod gemini;
pub mod generate;
pub mod messages;
pub mod pipe;
pub mod pricing;
pub mod replay;
pub mod responses;
pub mod scan;

use bytes::Bytes;
use jusinfer_sse::Event;

pub use chat_stream::StreamError;

/// A stream state machine: events in, client frames out. Implemented by the pass-through
/// normalizer and by every cross-dialect stream translator, so the async loop that drives
/// them is written once.
pub trait StreamTranslator: Send {
    /// Feeds one upstream event; appends the frames to send.
    fn push(&mut self, ev: &Event, out: &mut Vec<Bytes>) -> Result<(), StreamError>;
    /// The upstream closed the connection: the frames still owed, or why the stream is broken.
    fn finish(&mut self, out: &mut Vec<Bytes>) -> Result<(), StreamError>;
    /// The stream reached its end; later upstream bytes are ignored.
    fn is_complete(&self) -> bool;
    /// The usage the upstream reported so far, in OpenAI terms.
    fn usage(&self) -> Option<jusinfer_wire::chat::Usage>;
    /// Content events received so far (about one token each).
    fn deltas_seen(&self) -> u64;
    /// The final frame for a failure after the stream started, in the client's dialect;
    /// `None`: OpenAI's `data: {"error":…}` (the caller renders it). `kind` is the OpenAI
    /// error type, `status` the HTTP status the error would have had.
    fn error_frame(&self, _kind: &str, _status: u16, _message: &str) -> Option<Bytes> {
        None
    }
    /// The stream ended with the upstream's error event (complete, but not a success).
    fn failed(&self) -> bool {
        false
    }
    /// A frame to send when the upstream is quiet for a while (Anthropic's `ping`); `None`:
    /// the dialect has none.
    fn keepalive_frame(&self) -> Option<Bytes> {
        None
    }
    /// The finished result the stream built, for the caller to keep (a stored Response),
    /// once it has ended; taken once. `None`: the dialect keeps nothing.
    fn take_result(&mut self) -> Option<serde_json::Value> {
        None
    }
}

impl StreamTranslator for chat_stream::ChatStreamNormalizer {
    fn push(&mut self, ev: &Event, out: &mut Vec<Bytes>) -> Result<(), StreamError> {
        chat_stream::ChatStreamNormalizer::push(self, ev, out)
    }
    fn finish(&mut self, out: &mut Vec<Bytes>) -> Result<(), StreamError> {
        chat_stream::ChatStreamNormalizer::finish(self, out)
    }
    fn is_complete(&self) -> bool {
        chat_stream::ChatStreamNormalizer::is_complete(self)
    }
    fn usage(&self) -> Option<jusinfer_wire::chat::Usage> {
        chat_stream::ChatStreamNormalizer::usage(self).cloned()
    }
    fn deltas_seen(&self) -> u64 {
        chat_stream::ChatStreamNormalizer::deltas_seen(self)
    }
    fn failed(&self) -> bool {
        chat_stream::ChatStreamNormalizer::failed(self)
    }
}

impl StreamTranslator for anthropic::stream::AnthropicToChat {
    fn push(&mut self, ev: &Event, out: &mut Vec<Bytes>) -> Result<(), StreamError> {
        anthropic::stream::AnthropicToChat::push(self, ev, out)
    }
    fn finish(&mut self, out: &mut Vec<Bytes>) -> Result<(), StreamError> {
        anthropic::stream::AnthropicToChat::finish(self, out)
    }
    fn is_complete(&self) -> bool {
        anthropic::stream::AnthropicToChat::is_complete(self)
    }
    fn usage(&self) -> Option<jusinfer_wire::chat::Usage> {
        Some(anthropic::stream::AnthropicToChat::usage(self))
    }
    fn deltas_seen(&self) -> u64 {
        anthropic::stream::AnthropicToChat::deltas_seen(self)
    }
    fn failed(&self) -> bool {
        anthropic::stream::AnthropicToChat::failed(self)
    }
}

/// A boxed machine is a machine: a leg chosen at run time (the upstream kind's) can head a
/// [`pipe::Pipe`].
impl<T: StreamTranslator + ?Sized> StreamTranslator for Box<T> {
    fn push(&mut self, ev: &Event, out: &mut Vec<Bytes>) -> Result<(), StreamError> {
        (**self).push(ev, out)
    }
    fn finish(&mut self, out: &mut Vec<Bytes>) -> Result<(), StreamError> {
        (**self).finish(out)
    }
    fn is_complete(&self) -> bool {
        (**self).is_complete()
    }
    fn usage(&self) -> Option<jusinfer_wire::chat::Usage> {
        (**self).usage()
    }
    fn deltas_seen(&self) -> u64 {
        (**self).deltas_seen()
    }
    fn error_frame(&self, kind: &str, status: u16, message: &str) -> Option<Bytes> {
        (**self).error_frame(kind, status, message)
    }
    fn failed(&self) -> bool {
        (**self).failed()
    }
    fn keepalive_frame(&self) -> Option<Bytes> {
        (**self).keepalive_frame()
    }
    fn take_result(&mut self) -> Option<serde_json::Value> {
        (**self).take_result()
    }
}
