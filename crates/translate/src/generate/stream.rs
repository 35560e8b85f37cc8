//! Chat Completions stream → a Gemini `streamGenerateContent?alt=sse` stream, one chunk at
//! a time; and [`GeminiPassthrough`], a Gemini upstream's stream relayed as it is.
//!
//! Gemini's grammar (MAPPING.md §8.6): `data: <GenerateContentResponse>` events framed by
//! CRLF CRLF, each holding only the new parts, no end marker. Text deltas become text
//! parts, reasoning deltas thought parts (only when the client asked for thoughts, a
//! thinking block's signature on a part of its own), as they come. A `functionCall` is
//! whole in Gemini: a call's argument fragments are gathered (at most
//! [`MAX_CALL_BYTES`] in all) and the calls sent in the last chunk, with the
//! `finishReason` and the `usageMetadata` (the Chat usage chunk comes after the finish
//! chunk, so the last Gemini chunk is written at `[DONE]`). An upstream error event, or a
//! stream that ends before its finish, becomes `data: {"error": …}` in Google's shape.

use bytes::Bytes;
use jusinfer_sse::Event;
use jusinfer_wire::gemini::UsageMetadata;
use serde::Deserialize;
use serde_json::{json, Map, Value};

use super::response::{args, finish_reason, usage_metadata};
use crate::chat_stream::StreamError;

/// The most bytes of tool-call arguments one stream gathers.
pub const MAX_CALL_BYTES: usize = 8 * 1024 * 1024;

/// What the caller knows that the chunks do not say.
#[derive(Debug, Clone, Default)]
pub struct Options {
    /// `responseId`.
    pub id: String,
    /// The model name the client asked for (`modelVersion`).
    pub model: String,
    /// The client asked for thought parts (`includeThoughts`).
    pub thoughts: bool,
}

#[derive(Debug)]
struct Call {
    choice: u64,
    index: u64,
    id: String,
    name: String,
    args: String,
}

/// State machine over one Chat Completions stream. See the module docs.
#[derive(Debug)]
pub struct ChatToGemini {
    opts: Options,
    calls: Vec<Call>,
    call_bytes: usize,
    /// By choice index, in order of arrival.
    finish: Vec<(u64, &'static str)>,
    usage: Option<Value>,
    deltas: u64,
    done: bool,
    failed: bool,
}

/// One Gemini event: `data: {json}` and CRLF CRLF, as Google frames them.
pub fn frame(v: &Value) -> Bytes {
    // Serializing a `Value` cannot fail.
    frame_bytes(&serde_json::to_vec(v).unwrap_or_default())
}

/// An event holding `data` as it is.
fn frame_bytes(data: &[u8]) -> Bytes {
    let mut b = Vec::with_capacity(data.len() + 10);
    b.extend_from_slice(b"data: ");
    b.extend_from_slice(data);
    b.extend_from_slice(b"\r\n\r\n");
    Bytes::from(b)
}

/// The `google.rpc.Code` name of an HTTP status, as Google's errors carry it.
pub fn status_name(http: u16) -> &'static str {
    match http {
        400 | 413 => "INVALID_ARGUMENT",
        401 => "UNAUTHENTICATED",
        403 => "PERMISSION_DENIED",
        404 => "NOT_FOUND",
        409 => "ABORTED",
        402 | 429 => "RESOURCE_EXHAUSTED",
        499 => "CANCELLED",
        501 => "UNIMPLEMENTED",
        503 | 529 => "UNAVAILABLE",
        504 | 408 => "DEADLINE_EXCEEDED",
        _ => "INTERNAL",
    }
}

/// `{"error": {"code", "message", "status"}}`, Google's error body.
pub fn error_body(http: u16, message: &str) -> Value {
    json!({"error": {"code": http, "message": message, "status": status_name(http)}})
}

/// The HTTP status an OpenAI error `type` stands for, when a stream's error event names
/// only its type.
fn status_of(kind: &str, status: u16) -> u16 {
    if status != 0 {
        return status;
    }
    match kind {
        "invalid_request_error" => 400,
        "authentication_error" => 401,
        "permission_error" => 403,
        "not_found_error" => 404,
        "rate_limit_exceeded" | "rate_limit_error" | "insufficient_quota" => 429,
        "overloaded_error" | "service_unavailable" => 503,
        "timeout" => 504,
        _ => 500,
    }
}

impl ChatToGemini {
    pub fn new(opts: Options) -> Self {
        Self {
            opts,
            calls: Vec::new(),
            call_bytes: 0,
            finish: Vec::new(),
            usage: None,
            deltas: 0,
            done: false,
            failed: false,
        }
    }

    fn chunk(&self, candidates: Vec<Value>, usage: Option<Value>) -> Value {
        let mut m = Map::new();
        m.insert("candidates".into(), Value::Array(candidates));
        if let Some(u) = usage {
            m.insert("usageMetadata".into(), u);
        }
        m.insert("modelVersion".into(), json!(self.opts.model));
        m.insert("responseId".into(), json!(self.opts.id));
        Value::Object(m)
    }

    /// Feeds one Chat event; appends the frames to send.
    fn feed(&mut self, ev: &Event, out: &mut Vec<Bytes>) -> Result<(), StreamError> {
        if self.done {
            return Ok(());
        }
        let data = ev.data.trim_ascii();
        if data.is_empty() {
            return Ok(());
        }
        if data == b"[DONE]" {
            return self.end(out);
        }
        let chunk: Map<String, Value> = serde_json::from_slice(data).map_err(|e| StreamError {
            message: format!("upstream sent an event that is not valid JSON ({e})"),
        })?;
        if let Some(err) = chunk
            .get("error")
            .filter(|_| !chunk.contains_key("choices"))
        {
            let kind = err.get("type").and_then(Value::as_str).unwrap_or("");
            let message = err
                .get("message")
                .and_then(Value::as_str)
                .unwrap_or("the upstream failed");
            out.push(frame(&error_body(status_of(kind, 0), message)));
            self.done = true;
            self.failed = true;
            return Ok(());
        }
        if let Some(u) = chunk.get("usage").filter(|u| u.is_object()) {
            self.usage = Some(u.clone());
        }
        let mut candidates = Vec::new();
        for c in chunk
            .get("choices")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            let index = c["index"].as_u64().unwrap_or(0);
            let d = &c["delta"];
            let mut parts = Vec::new();
            if self.opts.thoughts {
                if let Some(r) = d["reasoning_content"].as_str().filter(|s| !s.is_empty()) {
                    parts.push(json!({"text": r, "thought": true}));
                }
                for b in d["thinking_blocks"].as_array().into_iter().flatten() {
                    if let Some(s) = b["signature"].as_str().filter(|s| !s.is_empty()) {
                        parts.push(json!({"text": "", "thought": true, "thoughtSignature": s}));
                    }
                }
            }
            if let Some(t) = d["content"].as_str().filter(|s| !s.is_empty()) {
                parts.push(json!({"text": t}));
            }
            for t in d["tool_calls"].as_array().into_iter().flatten() {
                self.call_fragment(index, t)?;
            }
            if let Some(f) = c["finish_reason"].as_str() {
                self.finish.push((index, finish_reason(Some(f))));
            }
            if !parts.is_empty() {
                self.deltas += parts.len() as u64;
                candidates.push(json!({"content": {"parts": parts, "role": "model"},
                    "index": index}));
            }
        }
        if !candidates.is_empty() {
            out.push(frame(&self.chunk(candidates, None)));
        }
        Ok(())
    }

    fn call_fragment(&mut self, choice: u64, t: &Value) -> Result<(), StreamError> {
        let index = t["index"].as_u64().unwrap_or(0);
        let f = &t["function"];
        let frag = f["arguments"].as_str().unwrap_or("");
        self.call_bytes += frag.len();
        if self.call_bytes > MAX_CALL_BYTES {
            return Err(StreamError {
                message: format!("tool-call arguments over {MAX_CALL_BYTES} bytes"),
            });
        }
        let at = self
            .calls
            .iter()
            .position(|c| c.choice == choice && c.index == index);
        let call = match at {
            Some(i) => &mut self.calls[i],
            None => {
                self.deltas += 1;
                self.calls.push(Call {
                    choice,
                    index,
                    id: String::new(),
                    name: String::new(),
                    args: String::new(),
                });
                let last = self.calls.len() - 1;
                &mut self.calls[last]
            }
        };
        if let Some(id) = t["id"].as_str() {
            call.id = id.to_owned();
        }
        if let Some(n) = f["name"].as_str() {
            call.name.push_str(n);
        }
        call.args.push_str(frag);
        Ok(())
    }

    /// The last chunk: the calls, the finish reasons and the usage.
    fn end(&mut self, out: &mut Vec<Bytes>) -> Result<(), StreamError> {
        if self.finish.is_empty() {
            return Err(StreamError {
                message: "upstream stream ended before its finish".to_owned(),
            });
        }
        let mut candidates = Vec::new();
        for (choice, reason) in &self.finish {
            let parts: Vec<Value> = self
                .calls
                .iter()
                .filter(|c| c.choice == *choice)
                .map(|c| {
                    let mut call = json!({"name": c.name, "args": args(&c.args)});
                    if !c.id.is_empty() {
                        call["id"] = json!(c.id);
                    }
                    json!({"functionCall": call})
                })
                .collect();
            let mut cand = json!({"finishReason": reason, "index": choice});
            if !parts.is_empty() {
                cand["content"] = json!({"parts": parts, "role": "model"});
            }
            candidates.push(cand);
        }
        let usage = self.usage.as_ref().map(usage_metadata);
        out.push(frame(&self.chunk(candidates, usage)));
        self.done = true;
        Ok(())
    }
}

impl crate::StreamTranslator for ChatToGemini {
    fn push(&mut self, ev: &Event, out: &mut Vec<Bytes>) -> Result<(), StreamError> {
        self.feed(ev, out)
    }
    /// The upstream closed: the last chunk if the finish came, else an error.
    fn finish(&mut self, out: &mut Vec<Bytes>) -> Result<(), StreamError> {
        if self.done {
            return Ok(());
        }
        self.end(out)
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
        Some(frame(&error_body(status_of(kind, status), message)))
    }
}

/// `ev` was written `data: <data>` and its line ends, as Google writes every event: its
/// bytes can go on as they came.
fn one_data_line(ev: &Event) -> bool {
    ev.raw.strip_prefix(b"data: ").is_some_and(|rest| {
        rest.starts_with(&ev.data)
            && !ev.data.contains(&b'\n')
            && rest[ev.data.len()..]
                .iter()
                .all(|b| matches!(b, b'\r' | b'\n'))
    })
}

/// What the pass-through reads of a Gemini chunk: the rest is skipped, not built.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Peek {
    #[serde(default)]
    candidates: Vec<PeekCandidate>,
    #[serde(default)]
    usage_metadata: Option<UsageMetadata>,
    #[serde(default)]
    prompt_feedback: Option<PeekFeedback>,
    #[serde(default)]
    error: Option<serde::de::IgnoredAny>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct PeekCandidate {
    #[serde(default)]
    finish_reason: Option<String>,
    #[serde(default)]
    content: Option<serde::de::IgnoredAny>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct PeekFeedback {
    #[serde(default)]
    block_reason: Option<String>,
}

/// A Gemini upstream serving the Gemini API: every event leaves as the upstream's bytes;
/// the usage (cumulative in every chunk: the last wins) and the end (a `finishReason`, a
/// blocked prompt, or an error event) are read on the way.
#[derive(Debug, Default)]
pub struct GeminiPassthrough {
    usage: Option<UsageMetadata>,
    done: bool,
    failed: bool,
    deltas: u64,
}

impl GeminiPassthrough {
    pub fn new() -> Self {
        Self::default()
    }
}

impl crate::StreamTranslator for GeminiPassthrough {
    fn push(&mut self, ev: &Event, out: &mut Vec<Bytes>) -> Result<(), StreamError> {
        if self.done {
            return Ok(());
        }
        // UTF-8 first: serde skips the fields it ignores without checking their bytes.
        let text = std::str::from_utf8(&ev.data).map_err(|_| StreamError {
            message: "upstream sent an event that is not valid UTF-8".to_owned(),
        })?;
        let peek: Peek = serde_json::from_str(text).map_err(|e| StreamError {
            message: format!("upstream sent an event that is not a Gemini chunk ({e})"),
        })?;
        if peek.error.is_some() {
            self.done = true;
            self.failed = true;
        }
        if peek.usage_metadata.is_some() {
            self.usage = peek.usage_metadata;
        }
        for c in &peek.candidates {
            if c.content.is_some() {
                self.deltas += 1;
            }
            if c.finish_reason.is_some() {
                self.done = true;
            }
        }
        if peek.prompt_feedback.and_then(|f| f.block_reason).is_some() {
            self.done = true;
        }
        out.push(if one_data_line(ev) {
            ev.raw.clone()
        } else {
            // Anything beyond the data (comments, other fields, bytes that are not UTF-8)
            // is not the client's to read: the event again, its data alone.
            jusinfer_sse::encode_bytes(None, text.as_bytes())
        });
        Ok(())
    }

    fn finish(&mut self, _out: &mut Vec<Bytes>) -> Result<(), StreamError> {
        if self.done {
            return Ok(());
        }
        Err(StreamError {
            message: "upstream stream ended before its finishReason".to_owned(),
        })
    }

    fn is_complete(&self) -> bool {
        self.done
    }

    fn usage(&self) -> Option<jusinfer_wire::chat::Usage> {
        self.usage.as_ref().map(crate::gemini::usage)
    }

    fn deltas_seen(&self) -> u64 {
        self.deltas
    }

    fn failed(&self) -> bool {
        self.failed
    }

    fn error_frame(&self, kind: &str, status: u16, message: &str) -> Option<Bytes> {
        Some(frame(&error_body(status_of(kind, status), message)))
    }
}
