//! Chat Completions stream → Responses stream events, one chunk at a time.
//!
//! Events written, in the order OpenAI's own streams have (every one with its
//! `sequence_number`, counting from 0): `response.created` and `response.in_progress` at
//! the first chunk; per output item `response.output_item.added`, then
//! - reasoning (`reasoning_content`): `response.content_part.added` (a `reasoning_text`
//!   part), `response.reasoning_text.delta` … `.done`, `response.content_part.done`; or,
//!   when the client asked for `reasoning.summary`, the same text as summary part 0:
//!   `response.reasoning_summary_part.added`, `response.reasoning_summary_text.delta` …
//!   `.done`, `response.reasoning_summary_part.done`;
//! - message: `response.content_part.added`, `response.output_text.delta` … `.done` (or
//!   `response.refusal.delta` … `.done`), `response.content_part.done`;
//! - function call (each `tool_calls[i]`): `response.function_call_arguments.delta` …
//!   `.done`;
//!
//! then `response.output_item.done`, items numbered from 0 in the order they open, one
//! open at a time. At `[DONE]`: `response.completed`, or `response.incomplete` when the
//! upstream stopped for length or content filter, carrying the whole Response (output
//! and usage). An upstream error event, or a stream cut before its finish, becomes `error`
//! then `response.failed`.
//!
//! The input is expected in OpenAI's standard shape: the gateway runs upstream bytes
//! through [`crate::chat_stream::ChatStreamNormalizer`] (or a translator to Chat) first.

use bytes::Bytes;
use jusinfer_sse::Event;
use serde_json::{json, Map, Value};

use super::response::{
    call_item, item_id, message_item, reasoning_item, refusal_part, set_status, status, text_part,
    usage, wants_summary,
};
use crate::chat_stream::{CostRule, StreamError};

/// What the caller knows that the chunks do not say.
#[derive(Debug, Clone, Default)]
pub struct Options {
    /// The Response before output ([`super::response::envelope`]).
    pub envelope: Map<String, Value>,
    /// Put `usage.cost` (the gateway's extension) into the final Response.
    pub cost: Option<CostRule>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Reasoning,
    Message,
    /// The Chat `tool_calls[].index`.
    Call(u64),
}

#[derive(Debug)]
struct Item {
    kind: Kind,
    id: String,
    /// Message parts: (`output_text` | `refusal`, text).
    parts: Vec<(&'static str, String)>,
    /// Reasoning text, or a call's arguments.
    text: String,
    /// Reasoning: the upstream's signed thinking blocks.
    blocks: Vec<Value>,
    call_id: String,
    name: String,
    closed: bool,
}

/// State machine over one Chat Completions stream. See the module docs.
#[derive(Debug)]
pub struct ChatToResponses {
    opts: Options,
    seq: u64,
    started: bool,
    items: Vec<Item>,
    /// Index into `items` of the open item.
    open: Option<usize>,
    finish: Option<String>,
    usage: Option<Value>,
    done: bool,
    failed: bool,
    deltas: u64,
    result: Option<Value>,
    /// Reasoning is served as a summary (`reasoning.summary` asked for).
    summary: bool,
}

fn frame(data: Map<String, Value>) -> Bytes {
    let kind = data
        .get("type")
        .and_then(Value::as_str)
        .unwrap_or("error")
        .to_owned();
    jusinfer_sse::encode_bytes(Some(&kind), Value::Object(data).to_string().as_bytes())
}

/// The `code` of a failed Response for an OpenAI error type.
fn failure_code(kind: &str) -> &'static str {
    match kind {
        "rate_limit_exceeded" | "rate_limit_error" | "insufficient_quota" => "rate_limit_exceeded",
        "invalid_request_error" => "invalid_prompt",
        _ => "server_error",
    }
}

impl ChatToResponses {
    pub fn new(opts: Options) -> Self {
        Self {
            summary: wants_summary(&opts.envelope),
            opts,
            seq: 0,
            started: false,
            items: Vec::new(),
            open: None,
            finish: None,
            usage: None,
            done: false,
            failed: false,
            deltas: 0,
            result: None,
        }
    }

    pub fn is_complete(&self) -> bool {
        self.done
    }

    pub fn failed(&self) -> bool {
        self.failed
    }

    pub fn deltas_seen(&self) -> u64 {
        self.deltas
    }

    /// The upstream's usage chunk (Chat terms), when it came.
    pub fn usage(&self) -> Option<&Value> {
        self.usage.as_ref()
    }

    /// The final Response, once the stream has ended (taken once).
    pub fn take_result(&mut self) -> Option<Value> {
        self.result.take()
    }

    fn event(&mut self, kind: &str, fields: Value) -> Map<String, Value> {
        let mut m = Map::new();
        m.insert("type".into(), json!(kind));
        m.insert("sequence_number".into(), json!(self.seq));
        self.seq += 1;
        if let Value::Object(f) = fields {
            m.extend(f);
        }
        m
    }

    fn emit(&mut self, kind: &str, fields: Value, out: &mut Vec<Bytes>) {
        let ev = self.event(kind, fields);
        out.push(frame(ev));
    }

    fn response(&self, status: &str) -> Map<String, Value> {
        let mut r = self.opts.envelope.clone();
        r.insert("status".into(), json!(status));
        r
    }

    fn start(&mut self, out: &mut Vec<Bytes>) {
        if self.started {
            return;
        }
        self.started = true;
        let r = Value::Object(self.response("in_progress"));
        self.emit("response.created", json!({"response": r}), out);
        self.emit("response.in_progress", json!({"response": r}), out);
    }

    /// The item as it stands (`status` for messages and calls).
    fn item_value(&self, i: usize, status: &str) -> Value {
        let Some(it) = self.items.get(i) else {
            return Value::Null;
        };
        match it.kind {
            Kind::Reasoning => reasoning_item(&it.id, &it.text, &it.blocks, self.summary),
            Kind::Message => message_item(
                &it.id,
                status,
                it.parts
                    .iter()
                    .map(|(k, t)| match *k {
                        "refusal" => refusal_part(t),
                        _ => text_part(t),
                    })
                    .collect(),
            ),
            Kind::Call(_) => call_item(&it.id, status, &it.call_id, &it.name, &it.text),
        }
    }

    fn close_part(&mut self, i: usize, out: &mut Vec<Bytes>) {
        let Some(it) = self.items.get(i) else { return };
        let Some((kind, text)) = it.parts.last() else {
            return;
        };
        let (id, ci, kind, text) = (it.id.clone(), it.parts.len() - 1, *kind, text.clone());
        let part = if kind == "refusal" {
            self.emit(
                "response.refusal.done",
                json!({"item_id": id, "output_index": i, "content_index": ci, "refusal": text}),
                out,
            );
            refusal_part(&text)
        } else {
            self.emit(
                "response.output_text.done",
                json!({"item_id": id, "output_index": i, "content_index": ci, "text": text, "logprobs": []}),
                out,
            );
            text_part(&text)
        };
        self.emit(
            "response.content_part.done",
            json!({"item_id": id, "output_index": i, "content_index": ci, "part": part}),
            out,
        );
    }

    /// Closes every item still open, in output order.
    fn close_all(&mut self, out: &mut Vec<Bytes>) {
        self.open = None;
        for i in 0..self.items.len() {
            if !self.items[i].closed {
                self.close_item(i, out);
            }
        }
    }

    fn close_item(&mut self, i: usize, out: &mut Vec<Bytes>) {
        let Some(it) = self.items.get(i) else { return };
        let (kind, id, text) = (it.kind, it.id.clone(), it.text.clone());
        let status = if kind == Kind::Message && status(self.finish.as_deref()).0 == "incomplete" {
            "incomplete"
        } else {
            "completed"
        };
        match kind {
            Kind::Reasoning if text.is_empty() => {}
            Kind::Reasoning if self.summary => {
                self.emit(
                    "response.reasoning_summary_text.done",
                    json!({"item_id": id, "output_index": i, "summary_index": 0, "text": text}),
                    out,
                );
                self.emit(
                    "response.reasoning_summary_part.done",
                    json!({"item_id": id, "output_index": i, "summary_index": 0,
                           "part": {"type": "summary_text", "text": text}}),
                    out,
                );
            }
            Kind::Reasoning => {
                self.emit(
                    "response.reasoning_text.done",
                    json!({"item_id": id, "output_index": i, "content_index": 0, "text": text}),
                    out,
                );
                self.emit(
                    "response.content_part.done",
                    json!({"item_id": id, "output_index": i, "content_index": 0,
                           "part": {"type": "reasoning_text", "text": text}}),
                    out,
                );
            }
            Kind::Message => self.close_part(i, out),
            Kind::Call(_) => {
                let name = self
                    .items
                    .get(i)
                    .map(|it| it.name.clone())
                    .unwrap_or_default();
                self.emit(
                    "response.function_call_arguments.done",
                    json!({"item_id": id, "output_index": i, "name": name, "arguments": text}),
                    out,
                );
            }
        }
        let item = self.item_value(i, status);
        if let Some(it) = self.items.get_mut(i) {
            it.closed = true;
        }
        self.emit(
            "response.output_item.done",
            json!({"output_index": i, "item": item}),
            out,
        );
    }

    /// Opens a new item of `kind` (closing the open ones) unless `kind` is the open one.
    /// Function calls stay open beside each other until another kind of item opens or the
    /// stream ends: Chat upstreams may interleave the fragments of parallel calls, and a
    /// call's `.done` events must carry its whole arguments.
    fn open(&mut self, kind: Kind, call_id: &str, name: &str, out: &mut Vec<Bytes>) -> usize {
        if let Some(i) = self
            .open
            .filter(|i| self.items.get(*i).is_some_and(|it| it.kind == kind))
        {
            return i;
        }
        let beside_calls = matches!(kind, Kind::Call(_))
            && self
                .open
                .and_then(|i| self.items.get(i))
                .is_some_and(|it| matches!(it.kind, Kind::Call(_)));
        if !beside_calls {
            self.close_all(out);
        }
        let i = self.items.len();
        let envelope_id = self
            .opts
            .envelope
            .get("id")
            .and_then(Value::as_str)
            .unwrap_or("resp_");
        let prefix = match kind {
            Kind::Reasoning => "rs",
            Kind::Message => "msg",
            Kind::Call(_) => "fc",
        };
        self.items.push(Item {
            kind,
            id: item_id(prefix, envelope_id, i),
            parts: Vec::new(),
            text: String::new(),
            blocks: Vec::new(),
            call_id: call_id.to_owned(),
            name: name.to_owned(),
            closed: false,
        });
        self.open = Some(i);
        let added = match kind {
            Kind::Reasoning => {
                json!({"id": self.items[i].id, "type": "reasoning", "summary": [], "content": []})
            }
            _ => self.item_value(i, "in_progress"),
        };
        self.emit(
            "response.output_item.added",
            json!({"output_index": i, "item": added}),
            out,
        );
        i
    }

    fn message_delta(&mut self, part: &'static str, text: &str, out: &mut Vec<Bytes>) {
        let i = self.open(Kind::Message, "", "", out);
        let needs_part = self.items[i].parts.last().is_none_or(|(k, _)| *k != part);
        if needs_part {
            if !self.items[i].parts.is_empty() {
                self.close_part(i, out);
            }
            self.items[i].parts.push((part, String::new()));
            let ci = self.items[i].parts.len() - 1;
            let p = if part == "refusal" {
                refusal_part("")
            } else {
                text_part("")
            };
            let id = self.items[i].id.clone();
            self.emit(
                "response.content_part.added",
                json!({"item_id": id, "output_index": i, "content_index": ci, "part": p}),
                out,
            );
        }
        let it = &mut self.items[i];
        let ci = it.parts.len() - 1;
        if let Some((_, t)) = it.parts.last_mut() {
            t.push_str(text);
        }
        let id = it.id.clone();
        self.deltas += 1;
        if part == "refusal" {
            self.emit(
                "response.refusal.delta",
                json!({"item_id": id, "output_index": i, "content_index": ci, "delta": text}),
                out,
            );
        } else {
            self.emit(
                "response.output_text.delta",
                json!({"item_id": id, "output_index": i, "content_index": ci, "delta": text, "logprobs": []}),
                out,
            );
        }
    }

    fn push_delta(&mut self, delta: &Value, out: &mut Vec<Bytes>) {
        let reasoning = delta
            .get("reasoning_content")
            .or_else(|| delta.get("reasoning"))
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty());
        if let Some(r) = reasoning {
            let i = self.open(Kind::Reasoning, "", "", out);
            let id = self.items[i].id.clone();
            // The part opens with its first text (an item may hold only signed blocks).
            if self.items[i].text.is_empty() {
                if self.summary {
                    self.emit(
                        "response.reasoning_summary_part.added",
                        json!({"item_id": id, "output_index": i, "summary_index": 0,
                               "part": {"type": "summary_text", "text": ""}}),
                        out,
                    );
                } else {
                    self.emit(
                        "response.content_part.added",
                        json!({"item_id": id, "output_index": i, "content_index": 0,
                               "part": {"type": "reasoning_text", "text": ""}}),
                        out,
                    );
                }
            }
            self.items[i].text.push_str(r);
            self.deltas += 1;
            if self.summary {
                self.emit(
                    "response.reasoning_summary_text.delta",
                    json!({"item_id": id, "output_index": i, "summary_index": 0, "delta": r}),
                    out,
                );
            } else {
                self.emit(
                    "response.reasoning_text.delta",
                    json!({"item_id": id, "output_index": i, "content_index": 0, "delta": r}),
                    out,
                );
            }
        }
        // A finished thinking block with its signature (Anthropic upstreams): kept in the
        // reasoning item, so the next turn can send it back.
        for b in delta["thinking_blocks"]
            .as_array()
            .map_or(&[][..], Vec::as_slice)
        {
            let i = self.open(Kind::Reasoning, "", "", out);
            let mut b = b.clone();
            if let Some(o) = b.as_object_mut() {
                o.remove("index");
            }
            self.items[i].blocks.push(b);
        }
        if let Some(t) = delta["content"].as_str().filter(|s| !s.is_empty()) {
            self.message_delta("output_text", t, out);
        }
        if let Some(t) = delta["refusal"].as_str().filter(|s| !s.is_empty()) {
            self.message_delta("refusal", t, out);
        }
        for (pos, call) in delta["tool_calls"]
            .as_array()
            .map_or(&[][..], Vec::as_slice)
            .iter()
            .enumerate()
        {
            let ci = call["index"].as_u64().unwrap_or(pos as u64);
            let args = call["function"]["arguments"].as_str().unwrap_or("");
            let known = self.items.iter().position(|it| it.kind == Kind::Call(ci));
            let i = match known {
                Some(i) => i,
                None => {
                    let call_id = call["id"].as_str().unwrap_or("").to_owned();
                    let call_id = if call_id.is_empty() {
                        item_id(
                            "call",
                            self.opts.envelope["id"].as_str().unwrap_or(""),
                            self.items.len(),
                        )
                    } else {
                        call_id
                    };
                    let name = call["function"]["name"].as_str().unwrap_or("").to_owned();
                    self.open(Kind::Call(ci), &call_id, &name, out)
                }
            };
            if !args.is_empty() {
                self.items[i].text.push_str(args);
                let id = self.items[i].id.clone();
                self.deltas += 1;
                self.emit(
                    "response.function_call_arguments.delta",
                    json!({"item_id": id, "output_index": i, "delta": args}),
                    out,
                );
            }
        }
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
            let kind = err["type"].as_str().unwrap_or("server_error");
            let message = err["message"].as_str().unwrap_or("the upstream failed");
            self.start(out);
            out.extend(self.failure(kind, message));
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
            .and_then(|c| c.iter().find(|c| c["index"].as_u64().unwrap_or(0) == 0))
        else {
            return Ok(());
        };
        if let Some(delta) = choice.get("delta") {
            self.push_delta(delta, out);
        }
        if let Some(f) = choice["finish_reason"].as_str() {
            self.finish = Some(f.to_owned());
        }
        Ok(())
    }

    /// The Response's output as it stands: closed items final, an open one as far as it got.
    fn output(&self, status: &str) -> Vec<Value> {
        (0..self.items.len())
            .map(|i| {
                let closed = self.items[i].closed;
                let s = if closed { "completed" } else { status };
                let s = if closed
                    && self.items[i].kind == Kind::Message
                    && super::response::status(self.finish.as_deref()).0 == "incomplete"
                {
                    "incomplete"
                } else {
                    s
                };
                self.item_value(i, s)
            })
            .collect()
    }

    fn final_usage(&self) -> Value {
        let Some(u) = &self.usage else {
            return Value::Null;
        };
        let mut out = usage(u);
        if let Some(rule) = &self.opts.cost {
            let cost = rule.price.as_ref().and_then(|p| {
                serde_json::from_value::<jusinfer_wire::chat::Usage>(u.clone())
                    .ok()
                    .map(|cu| crate::pricing::cost(p, &cu))
            });
            out["cost"] = cost.map_or(Value::Null, |c| json!(c));
        }
        out
    }

    fn end(&mut self, out: &mut Vec<Bytes>) {
        self.start(out);
        self.close_all(out);
        let (st, incomplete) = status(self.finish.as_deref());
        let mut r = self.response(st);
        set_status(&mut r, st);
        r.insert("incomplete_details".into(), incomplete);
        r.insert("output".into(), Value::Array(self.output("completed")));
        r.insert("usage".into(), self.final_usage());
        let r = Value::Object(r);
        let kind = if st == "incomplete" {
            "response.incomplete"
        } else {
            "response.completed"
        };
        self.emit(kind, json!({"response": r}), out);
        self.result = Some(r);
        self.done = true;
    }

    /// `error` then `response.failed`, numbered after the events sent so far.
    fn failure(&self, kind: &str, message: &str) -> Vec<Bytes> {
        let code = failure_code(kind);
        let mut error = Map::new();
        error.insert("type".into(), json!("error"));
        error.insert("sequence_number".into(), json!(self.seq));
        error.insert("code".into(), json!(code));
        error.insert("message".into(), json!(message));
        error.insert("param".into(), Value::Null);
        let mut r = self.response("failed");
        r.insert("error".into(), json!({"code": code, "message": message}));
        r.insert("output".into(), Value::Array(self.output("incomplete")));
        r.insert("usage".into(), self.final_usage());
        let mut failed = Map::new();
        failed.insert("type".into(), json!("response.failed"));
        failed.insert("sequence_number".into(), json!(self.seq + 1));
        failed.insert("response".into(), Value::Object(r));
        vec![frame(error), frame(failed)]
    }

    /// The final frames for a failure after the stream started (see
    /// [`crate::StreamTranslator::error_frame`]).
    pub fn error_frame(&self, kind: &str, message: &str) -> Bytes {
        self.failure(kind, message).concat().into()
    }

    /// The upstream closed the connection: the frames still owed, or why the stream is broken.
    pub fn finish(&mut self, out: &mut Vec<Bytes>) -> Result<(), StreamError> {
        if self.done {
            return Ok(());
        }
        if self.finish.is_some() {
            self.end(out);
            return Ok(());
        }
        Err(StreamError {
            message: "upstream stream ended before it finished".to_owned(),
        })
    }
}

/// An OpenAI upstream that serves the Responses API itself: every event leaves as the
/// upstream's bytes; the terminal event's Response (for the store) and usage are read on
/// the way.
#[derive(Debug, Default)]
pub struct ResponsesPassthrough {
    usage: Option<jusinfer_wire::chat::Usage>,
    result: Option<Value>,
    done: bool,
    failed: bool,
    deltas: u64,
    /// The upstream's last `sequence_number`.
    last_seq: Option<u64>,
    /// The Response as the upstream's last lifecycle event had it (for `response.failed`).
    envelope: Option<Value>,
}

impl ResponsesPassthrough {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn take_result(&mut self) -> Option<Value> {
        self.result.take()
    }
}

/// Responses usage → Chat usage (for the ledger).
pub fn chat_usage(u: &Value) -> Option<jusinfer_wire::chat::Usage> {
    let n = |v: &Value| v.as_u64().unwrap_or(0);
    let input = n(&u["input_tokens"]);
    let output = n(&u["output_tokens"]);
    serde_json::from_value(json!({
        "prompt_tokens": input,
        "completion_tokens": output,
        "total_tokens": u["total_tokens"].as_u64().unwrap_or(input + output),
        "prompt_tokens_details": {"cached_tokens": n(&u["input_tokens_details"]["cached_tokens"])},
        "completion_tokens_details": {"reasoning_tokens": n(&u["output_tokens_details"]["reasoning_tokens"])},
    }))
    .ok()
}

impl crate::StreamTranslator for ResponsesPassthrough {
    fn push(&mut self, ev: &Event, out: &mut Vec<Bytes>) -> Result<(), StreamError> {
        if self.done {
            return Ok(());
        }
        let data = ev.data.trim_ascii();
        if data.is_empty() {
            out.push(ev.raw.clone());
            return Ok(());
        }
        let v: Value = serde_json::from_slice(data).map_err(|e| StreamError {
            message: format!("upstream sent an event that is not valid JSON ({e})"),
        })?;
        let kind = v["type"].as_str().unwrap_or("");
        if let Some(n) = v["sequence_number"].as_u64() {
            self.last_seq = Some(n);
        }
        if kind.ends_with(".delta") {
            self.deltas += 1;
        }
        if matches!(kind, "response.created" | "response.in_progress") {
            self.envelope = Some(v["response"].clone());
        }
        if matches!(
            kind,
            "response.completed" | "response.incomplete" | "response.failed"
        ) {
            self.usage = chat_usage(&v["response"]["usage"]);
            self.failed = kind == "response.failed";
            self.result = Some(v["response"].clone());
            self.done = true;
        }
        out.push(ev.raw.clone());
        Ok(())
    }

    fn finish(&mut self, _out: &mut Vec<Bytes>) -> Result<(), StreamError> {
        if self.done {
            return Ok(());
        }
        Err(StreamError {
            message: "upstream stream ended before it finished".to_owned(),
        })
    }

    fn is_complete(&self) -> bool {
        self.done
    }

    fn usage(&self) -> Option<jusinfer_wire::chat::Usage> {
        self.usage.clone()
    }

    fn deltas_seen(&self) -> u64 {
        self.deltas
    }

    fn failed(&self) -> bool {
        self.failed
    }

    fn error_frame(&self, kind: &str, _status: u16, message: &str) -> Option<Bytes> {
        let code = failure_code(kind);
        let next = self.last_seq.map(|n| n + 1);
        let mut ev = json!({"type": "error", "code": code, "message": message, "param": null});
        if let Some(n) = next {
            ev["sequence_number"] = json!(n);
        }
        let mut frame =
            jusinfer_sse::encode_bytes(Some("error"), ev.to_string().as_bytes()).to_vec();
        // Then the terminal event the SDKs wait for, on the upstream's own Response.
        if let Some(mut r) = self.envelope.clone() {
            r["status"] = json!("failed");
            r["error"] = json!({"code": code, "message": message});
            let mut failed = json!({"type": "response.failed", "response": r});
            if let Some(n) = next {
                failed["sequence_number"] = json!(n + 1);
            }
            frame.extend_from_slice(&jusinfer_sse::encode_bytes(
                Some("response.failed"),
                failed.to_string().as_bytes(),
            ));
        }
        Some(Bytes::from(frame))
    }

    fn take_result(&mut self) -> Option<Value> {
        self.result.take()
    }
}

impl crate::StreamTranslator for ChatToResponses {
    fn push(&mut self, ev: &Event, out: &mut Vec<Bytes>) -> Result<(), StreamError> {
        ChatToResponses::push(self, ev, out)
    }
    fn finish(&mut self, out: &mut Vec<Bytes>) -> Result<(), StreamError> {
        ChatToResponses::finish(self, out)
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
    fn error_frame(&self, kind: &str, _status: u16, message: &str) -> Option<Bytes> {
        Some(ChatToResponses::error_frame(self, kind, message))
    }
    fn take_result(&mut self) -> Option<Value> {
        ChatToResponses::take_result(self)
    }
}
