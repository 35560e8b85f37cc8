//! Chat Completions stream → Anthropic Messages stream events, one chunk at a time.
//!
//! Events written, in Anthropic's grammar: one `message_start` (with the input-token
//! estimate the caller passes, since OpenAI reports usage only at the end); per block a
//! `content_block_start`, its deltas (`thinking_delta` from `reasoning_content`, `text_delta`
//! from `content`, `input_json_delta` from each tool call's argument fragments) and a
//! `content_block_stop`, blocks numbered from 0 in the order they open, one open at a
//! time; when the upstream ends, `message_delta` (stop reason, and usage with input, cache
//! read and output tokens) and `message_stop`. A turn that called a tool ends with
//! `tool_use` even if the upstream said `stop`. An upstream error event, or a stream that
//! ends before its finish, becomes `event: error` with Anthropic's error shape.
//!
//! The input is expected in OpenAI's standard shape (tool-call fragments keyed by `index`,
//! id and name first): the gateway runs upstream bytes through
//! [`crate::chat_stream::ChatStreamNormalizer`] before this machine.

use bytes::Bytes;
use jusinfer_sse::Event;
use serde_json::{json, Map, Value};

use crate::chat_stream::StreamError;

/// What the caller knows that the chunks do not say.
#[derive(Debug, Clone, Default)]
pub struct Options {
    /// `msg_…` id of the message.
    pub id: String,
    /// The model name the client asked for.
    pub model: String,
    /// Input tokens estimated from the request, for `message_start`.
    pub input_tokens_estimate: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Open {
    None,
    Thinking,
    Text,
    /// The OpenAI `tool_calls[].index` of the open tool block.
    Tool(u64),
}

/// State machine over one Chat Completions stream. See the module docs.
#[derive(Debug)]
pub struct ChatToMessages {
    opts: Options,
    started: bool,
    open: Open,
    next_index: u64,
    /// OpenAI tool-call index → Anthropic block index, in order of appearance.
    tools: Vec<(u64, u64)>,
    finish: Option<String>,
    usage: Option<Value>,
    done: bool,
    failed: bool,
    refused: bool,
    deltas: u64,
}

/// Anthropic's keep-alive event.
pub const PING: &[u8] = b"event: ping\ndata: {\"type\": \"ping\"}\n\n";

fn frame(kind: &str, data: &Value) -> Bytes {
    jusinfer_sse::encode_bytes(Some(kind), data.to_string().as_bytes())
}

/// A tool-call id in Anthropic's form: `toolu_` + the upstream's id, which
/// [`crate::messages::request`] strips again when the id comes back (some upstreams,
/// Mistral's among them, accept only ids of their own format).
pub fn tool_id(openai_id: &str) -> String {
    format!("toolu_{openai_id}")
}

/// OpenAI `finish_reason` → Anthropic `stop_reason`.
pub fn stop_reason(finish: Option<&str>, called_tools: bool) -> &'static str {
    match finish {
        Some("length") => "max_tokens",
        Some("tool_calls" | "function_call") => "tool_use",
        Some("content_filter") => "refusal",
        _ if called_tools => "tool_use",
        _ => "end_turn",
    }
}

/// Anthropic's error `type` for an OpenAI error `type` / HTTP status.
pub fn error_type(openai_type: &str, status: u16) -> &'static str {
    match (openai_type, status) {
        (_, 401) | ("authentication_error", _) => "authentication_error",
        (_, 403) | ("permission_error", _) => "permission_error",
        (_, 404) | ("not_found_error", _) => "not_found_error",
        (_, 413) => "request_too_large",
        (_, 429) | ("rate_limit_exceeded" | "insufficient_quota" | "requests" | "tokens", _) => {
            "rate_limit_error"
        }
        (_, 503 | 529) | ("overloaded_error", _) => "overloaded_error",
        (_, 400..=499) | ("invalid_request_error", _) => "invalid_request_error",
        _ => "api_error",
    }
}

/// The Anthropic `event: error` frame.
pub fn error_frame(kind: &str, message: &str) -> Bytes {
    frame(
        "error",
        &json!({"type": "error", "error": {"type": kind, "message": message}}),
    )
}

impl ChatToMessages {
    pub fn new(opts: Options) -> Self {
        Self {
            opts,
            started: false,
            open: Open::None,
            next_index: 0,
            tools: Vec::new(),
            finish: None,
            usage: None,
            done: false,
            failed: false,
            refused: false,
            deltas: 0,
        }
    }

    pub fn is_complete(&self) -> bool {
        self.done
    }

    /// The upstream's error event ended the stream.
    pub fn failed(&self) -> bool {
        self.failed
    }

    /// Content events seen (about one token each).
    pub fn deltas_seen(&self) -> u64 {
        self.deltas
    }

    /// The upstream's usage chunk, when it came.
    pub fn usage(&self) -> Option<&Value> {
        self.usage.as_ref()
    }

    fn start(&mut self, out: &mut Vec<Bytes>) {
        if self.started {
            return;
        }
        self.started = true;
        out.push(frame(
            "message_start",
            &json!({"type": "message_start", "message": {
                "id": self.opts.id, "type": "message", "role": "assistant",
                "model": self.opts.model, "content": [], "stop_reason": null,
                "stop_sequence": null,
                "usage": {"input_tokens": self.opts.input_tokens_estimate,
                          "cache_creation_input_tokens": 0, "cache_read_input_tokens": 0,
                          "output_tokens": 0},
            }}),
        ));
    }

    fn close(&mut self, out: &mut Vec<Bytes>) {
        if self.open == Open::None {
            return;
        }
        self.open = Open::None;
        out.push(frame(
            "content_block_stop",
            &json!({"type": "content_block_stop", "index": self.next_index - 1}),
        ));
    }

    /// Opens a block of `kind` described by `block` unless it is the open one.
    fn open(&mut self, kind: Open, block: Value, out: &mut Vec<Bytes>) -> u64 {
        if self.open != kind || kind == Open::None {
            self.close(out);
            self.open = kind;
            self.next_index += 1;
            out.push(frame(
                "content_block_start",
                &json!({"type": "content_block_start", "index": self.next_index - 1,
                        "content_block": block}),
            ));
        }
        self.next_index - 1
    }

    fn delta(&mut self, index: u64, delta: Value, out: &mut Vec<Bytes>) {
        self.deltas += 1;
        out.push(frame(
            "content_block_delta",
            &json!({"type": "content_block_delta", "index": index, "delta": delta}),
        ));
    }

    /// Feeds one upstream event; appends the frames to send.
    pub fn push(&mut self, ev: &Event, out: &mut Vec<Bytes>) -> Result<(), StreamError> {
        if self.done {
            return Ok(());
        }
        let data = ev.data.trim_ascii();
        if data.is_empty() {
            return Ok(());
        }
        if data == b"[DONE]" {
            self.end(out);
            return Ok(());
        }
        let chunk: Map<String, Value> = serde_json::from_slice(data).map_err(|e| StreamError {
            message: format!("upstream sent an event that is not valid JSON ({e})"),
        })?;
        if let Some(err) = chunk
            .get("error")
            .filter(|_| !chunk.contains_key("choices"))
        {
            let kind = err
                .get("type")
                .and_then(Value::as_str)
                .unwrap_or("api_error");
            let message = err
                .get("message")
                .and_then(Value::as_str)
                .unwrap_or("the upstream failed");
            self.start(out);
            out.push(error_frame(error_type(kind, 0), message));
            self.done = true;
            self.failed = true;
            return Ok(());
        }
        self.start(out);
        if let Some(u) = chunk.get("usage").filter(|u| u.is_object()) {
            self.usage = Some(u.clone());
        }
        let Some(choice) = chunk
            .get("choices")
            .and_then(Value::as_array)
            .and_then(|c| {
                c.iter()
                    .find(|c| c.get("index").and_then(Value::as_u64).unwrap_or(0) == 0)
            })
        else {
            return Ok(());
        };
        if let Some(delta) = choice.get("delta") {
            self.push_delta(delta, out);
        }
        if let Some(f) = choice.get("finish_reason").and_then(Value::as_str) {
            self.finish = Some(f.to_owned());
        }
        Ok(())
    }

    fn push_delta(&mut self, delta: &Value, out: &mut Vec<Bytes>) {
        let reasoning = delta
            .get("reasoning_content")
            .or_else(|| delta.get("reasoning"))
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty());
        if let Some(r) = reasoning {
            let i = self.open(
                Open::Thinking,
                json!({"type": "thinking", "thinking": "", "signature": ""}),
                out,
            );
            self.delta(i, json!({"type": "thinking_delta", "thinking": r}), out);
        }
        for key in ["content", "refusal"] {
            if let Some(text) = delta
                .get(key)
                .and_then(Value::as_str)
                .filter(|s| !s.is_empty())
            {
                self.refused |= key == "refusal";
                let i = self.open(Open::Text, json!({"type": "text", "text": ""}), out);
                self.delta(i, json!({"type": "text_delta", "text": text}), out);
            }
        }
        let Some(calls) = delta.get("tool_calls").and_then(Value::as_array) else {
            return;
        };
        for (pos, call) in calls.iter().enumerate() {
            let oi = call
                .get("index")
                .and_then(Value::as_u64)
                .unwrap_or(pos as u64);
            let f = call.get("function");
            let args = f
                .and_then(|f| f.get("arguments"))
                .and_then(Value::as_str)
                .unwrap_or("");
            let index = match self.tools.iter().find(|(o, _)| *o == oi) {
                Some((_, i)) => *i,
                None => {
                    let id = call
                        .get("id")
                        .and_then(Value::as_str)
                        .filter(|s| !s.is_empty())
                        .map_or_else(|| format!("toolu_{}_{oi}", self.opts.id), tool_id);
                    let name = f
                        .and_then(|f| f.get("name"))
                        .and_then(Value::as_str)
                        .unwrap_or("");
                    let i = self.open(
                        Open::Tool(oi),
                        json!({"type": "tool_use", "id": id, "name": name, "input": {}}),
                        out,
                    );
                    self.tools.push((oi, i));
                    i
                }
            };
            if !args.is_empty() {
                self.delta(
                    index,
                    json!({"type": "input_json_delta", "partial_json": args}),
                    out,
                );
            }
        }
    }

    fn end(&mut self, out: &mut Vec<Bytes>) {
        self.start(out);
        self.close(out);
        let u = self.usage.as_ref();
        let mut usage = super::response::usage(u);
        if u.is_none() {
            usage["input_tokens"] = json!(self.opts.input_tokens_estimate);
            usage["output_tokens"] = json!(self.deltas);
        }
        let stop = if self.refused {
            "refusal"
        } else {
            stop_reason(self.finish.as_deref(), !self.tools.is_empty())
        };
        out.push(frame(
            "message_delta",
            &json!({"type": "message_delta",
                    "delta": {"stop_reason": stop, "stop_sequence": null},
                    "usage": usage}),
        ));
        out.push(frame("message_stop", &json!({"type": "message_stop"})));
        self.done = true;
    }

    /// The upstream closed the connection: the frames still owed, or why the stream is broken.
    pub fn finish(&mut self, out: &mut Vec<Bytes>) -> Result<(), StreamError> {
        if self.done {
            return Ok(());
        }
        if self.finish.is_some() {
            // Some compatible servers end without `[DONE]` after the finish (and usage).
            self.end(out);
            return Ok(());
        }
        Err(StreamError {
            message: "upstream stream ended before it finished".to_owned(),
        })
    }
}

/// An Anthropic upstream serving `/v1/messages`: every event leaves as the upstream's bytes;
/// the usage (`message_start`, then `message_delta`'s cumulative counts) is read on the way.
#[derive(Debug, Default)]
pub struct MessagesPassthrough {
    usage: jusinfer_wire::anthropic::Usage,
    seen_usage: bool,
    done: bool,
    failed: bool,
    deltas: u64,
}

impl MessagesPassthrough {
    pub fn new() -> Self {
        Self::default()
    }

    fn merge(&mut self, u: &jusinfer_wire::anthropic::Usage) {
        self.seen_usage = true;
        let m = &mut self.usage;
        m.input_tokens = u.input_tokens.or(m.input_tokens);
        m.output_tokens = u.output_tokens.or(m.output_tokens);
        m.cache_read_input_tokens = u.cache_read_input_tokens.or(m.cache_read_input_tokens);
        m.cache_creation_input_tokens = u
            .cache_creation_input_tokens
            .or(m.cache_creation_input_tokens);
    }
}

impl crate::StreamTranslator for MessagesPassthrough {
    fn push(&mut self, ev: &Event, out: &mut Vec<Bytes>) -> Result<(), StreamError> {
        use jusinfer_wire::anthropic::StreamEvent;
        if self.done {
            return Ok(());
        }
        let text = std::str::from_utf8(&ev.data).map_err(|_| StreamError {
            message: "upstream sent an event that is not valid UTF-8".to_owned(),
        })?;
        let parsed: StreamEvent = serde_json::from_str(text).map_err(|e| StreamError {
            message: format!("upstream sent an event that is not a valid Messages event ({e})"),
        })?;
        match parsed {
            StreamEvent::MessageStart { message } => self.merge(&message.usage),
            StreamEvent::MessageDelta { usage, .. } => self.merge(&usage),
            StreamEvent::ContentBlockDelta { .. } => self.deltas += 1,
            StreamEvent::MessageStop => self.done = true,
            StreamEvent::Error { .. } => {
                self.done = true;
                self.failed = true;
            }
            _ => {}
        }
        if std::str::from_utf8(&ev.raw).is_ok() {
            out.push(ev.raw.clone());
        } else {
            out.push(jusinfer_sse::encode_bytes(
                ev.event.as_deref(),
                text.as_bytes(),
            ));
        }
        Ok(())
    }

    fn finish(&mut self, _out: &mut Vec<Bytes>) -> Result<(), StreamError> {
        if self.done {
            return Ok(());
        }
        Err(StreamError {
            message: "upstream stream ended before message_stop".to_owned(),
        })
    }

    fn is_complete(&self) -> bool {
        self.done
    }

    fn usage(&self) -> Option<jusinfer_wire::chat::Usage> {
        self.seen_usage
            .then(|| crate::anthropic::usage(&self.usage))
    }

    fn deltas_seen(&self) -> u64 {
        self.deltas
    }

    fn failed(&self) -> bool {
        self.failed
    }

    fn error_frame(&self, kind: &str, status: u16, message: &str) -> Option<Bytes> {
        Some(error_frame(error_type(kind, status), message))
    }

    fn keepalive_frame(&self) -> Option<Bytes> {
        Some(Bytes::from_static(PING))
    }
}

impl crate::StreamTranslator for ChatToMessages {
    fn push(&mut self, ev: &Event, out: &mut Vec<Bytes>) -> Result<(), StreamError> {
        ChatToMessages::push(self, ev, out)
    }
    fn finish(&mut self, out: &mut Vec<Bytes>) -> Result<(), StreamError> {
        ChatToMessages::finish(self, out)
    }
    fn is_complete(&self) -> bool {
        self.done
    }
    fn usage(&self) -> Option<jusinfer_wire::chat::Usage> {
        self.usage
            .as_ref()
            .and_then(|u| serde_json::from_value(u.clone()).ok())
    }
    fn deltas_seen(&self) -> u64 {
        self.deltas
    }
    fn failed(&self) -> bool {
        self.failed
    }
    fn error_frame(&self, kind: &str, status: u16, message: &str) -> Option<Bytes> {
        Some(error_frame(error_type(kind, status), message))
    }
    fn keepalive_frame(&self) -> Option<Bytes> {
        Some(Bytes::from_static(PING))
    }
}
