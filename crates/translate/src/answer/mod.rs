//! What an answer says of itself, read from the client's side, for traces: its id, why
//! each choice stopped, and (content capture on) what it said, in the OpenTelemetry GenAI
//! conventions' output-message shape.
//!
//! [`of_body`] reads a whole answer; a [`Sniffer`] reads a stream frame by frame as it
//! goes to the client, keeping only those few things (never the stream). Without content
//! capture, a Chat or Gemini chunk is parsed only when it is the first or names a finish
//! reason, and a Messages or Responses event only when it is one of the few that carry
//! the id or the stop. A Responses stream's output is read from its final event (which
//! holds the whole Response). Captured output is bounded by its size as JSON, each tool
//! call counted with a fixed overhead. Any input is safe: what does not parse is skipped.

#[cfg(test)]
mod tests;

use jusinfer_sse::Decoder;
use serde_json::{json, Value};

pub use crate::replay::Dialect;

/// What an answer says of itself.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Answer {
    /// The id the client got (`id`, Gemini's `responseId`).
    pub id: Option<String>,
    /// Why each choice (candidate) stopped, in the dialect's own words, by index.
    pub finish_reasons: Vec<String>,
    /// Content capture: `gen_ai.output.messages` as JSON, at most the capture's bytes of
    /// text and arguments.
    pub output: Option<String>,
    /// Content capture: the output went past the bound and was cut.
    pub output_truncated: bool,
}

/// Most choices (candidates) an answer is read for; later ones are ignored.
const MAX_CHOICES: usize = 16;
/// Most tool calls kept per choice under content capture.
const MAX_CALLS: usize = 64;
/// Most bytes of an id and of a finish reason kept (whatever the upstream sends).
const MAX_ID: usize = 256;
const MAX_REASON: usize = 64;

/// The first `max` bytes of `s`, cut on a character boundary.
fn head(s: &str, max: usize) -> &str {
    let mut n = s.len().min(max);
    while !s.is_char_boundary(n) {
        n -= 1;
    }
    &s[..n]
}

/// One choice's output as it adds up.
#[derive(Debug, Default, Clone)]
struct Choice {
    text: String,
    calls: Vec<Call>,
    finish: Option<String>,
}

#[derive(Debug, Default, Clone)]
struct Call {
    id: String,
    name: String,
    arguments: String,
    /// Gemini's and Messages' arguments arrive as an object, not text.
    object: Option<Value>,
}

/// What one tool call costs of the capture's budget beyond its text: the output's fixed
/// members, so calls with nothing in them still add up to the bound.
const CALL_COST: usize = 64;

/// Reads the answer as it goes by.
#[derive(Debug)]
struct Reading {
    id: Option<String>,
    choices: Vec<Choice>,
    /// Content capture: bytes of output (as JSON escapes them) still to keep (`None`:
    /// capture off).
    budget: Option<usize>,
    truncated: bool,
    /// Where a streamed call's fragments go: (choice, the dialect's own key for the call:
    /// Chat's `tool_calls[].index`, Messages' content block index) → its place among the
    /// choice's calls.
    slots: std::collections::HashMap<(u64, u64), usize>,
}

impl Reading {
    fn new(capture: Option<usize>) -> Self {
        Self {
            id: None,
            choices: Vec::new(),
            budget: capture,
            truncated: false,
            slots: std::collections::HashMap::new(),
        }
    }

    fn capturing(&self) -> bool {
        self.budget.is_some()
    }

    fn choice(&mut self, index: u64) -> Option<&mut Choice> {
        let i = usize::try_from(index).ok().filter(|i| *i < MAX_CHOICES)?;
        if self.choices.len() <= i {
            self.choices.resize_with(i + 1, Choice::default);
        }
        self.choices.get_mut(i)
    }

    fn set_id(&mut self, id: Option<&str>) {
        if self.id.is_none() {
            self.id = id
                .filter(|s| !s.is_empty())
                .map(|s| head(s, MAX_ID).to_owned());
        }
    }

    fn finish(&mut self, index: u64, reason: Option<&str>) {
        if let (Some(r), Some(c)) = (reason, self.choice(index)) {
            c.finish = Some(head(r, MAX_REASON).to_owned());
        }
    }

    /// Appends text to choice `index`, within the capture's budget.
    fn text(&mut self, index: u64, s: &str) {
        if !self.capturing() || self.choice(index).is_none() {
            return;
        }
        let Some(kept) = self.spend(s) else { return };
        if let Some(c) = self.choice(index) {
            c.text.push_str(kept);
        }
    }

    /// Starts a tool call on choice `index`: its place among the choice's calls, `None`
    /// when it is not kept (capture off, a bound reached).
    fn call(&mut self, index: u64, id: &str, name: &str, object: Option<&Value>) -> Option<usize> {
        if !self.capturing() || self.choice(index)?.calls.len() >= MAX_CALLS {
            return None;
        }
        let object = object.map(|o| (o.clone(), o.to_string().len()));
        let cost = CALL_COST + escaped(id) + escaped(name) + object.as_ref().map_or(0, |o| o.1);
        self.spend_bytes(cost)?;
        let c = self.choice(index)?;
        c.calls.push(Call {
            id: id.to_owned(),
            name: name.to_owned(),
            arguments: String::new(),
            object: object.map(|o| o.0),
        });
        Some(c.calls.len() - 1)
    }

    /// A streamed call's fragments, keyed by the dialect, go to the call at `at`.
    fn slot(&mut self, index: u64, key: u64, at: Option<usize>) {
        if let Some(at) = at {
            if self.slots.len() < MAX_CHOICES * MAX_CALLS {
                self.slots.insert((index, key), at);
            }
        }
    }

    fn slot_of(&self, index: u64, key: u64) -> Option<usize> {
        self.slots.get(&(index, key)).copied()
    }

    /// Appends argument text to the call at `at` of choice `index`.
    fn arguments(&mut self, index: u64, at: usize, s: &str) {
        let exists = self.choice(index).is_some_and(|c| at < c.calls.len());
        if !exists {
            return;
        }
        let Some(kept) = self.spend(s) else { return };
        if let Some(call) = self.choice(index).and_then(|c| c.calls.get_mut(at)) {
            call.arguments.push_str(kept);
        }
    }

    /// The part of `s` the budget still allows, counted as JSON escapes it (cut on a
    /// character boundary).
    fn spend<'s>(&mut self, s: &'s str) -> Option<&'s str> {
        let left = self.budget?;
        let mut cost = 0;
        let mut n = s.len();
        for (at, ch) in s.char_indices() {
            let c = escaped_char(ch);
            if cost + c > left {
                n = at;
                self.truncated = true;
                break;
            }
            cost += c;
        }
        self.budget = Some(left - cost);
        (n > 0).then(|| &s[..n])
    }

    fn spend_bytes(&mut self, n: usize) -> Option<()> {
        let left = self.budget?;
        if n > left {
            self.truncated = true;
            self.budget = Some(0);
            return None;
        }
        self.budget = Some(left - n);
        Some(())
    }

    fn answer(self) -> Answer {
        let output = self.capturing().then(|| {
            let messages: Vec<Value> = self.choices.iter().map(message).collect();
            Value::Array(messages).to_string()
        });
        Answer {
            id: self.id,
            finish_reasons: self
                .choices
                .iter()
                .filter_map(|c| c.finish.clone())
                .collect(),
            output,
            output_truncated: self.truncated,
        }
    }
}

/// Bytes `ch` takes in a JSON string.
fn escaped_char(ch: char) -> usize {
    match ch {
        '"' | '\\' | '\n' | '\r' | '\t' | '\u{8}' | '\u{c}' => 2,
        c if u32::from(c) < 0x20 => 6,
        c => c.len_utf8(),
    }
}

/// Bytes `s` takes in a JSON string.
fn escaped(s: &str) -> usize {
    s.chars().map(escaped_char).sum()
}

/// One choice as a GenAI output message.
fn message(c: &Choice) -> Value {
    let mut parts = Vec::new();
    if !c.text.is_empty() {
        parts.push(json!({"type": "text", "content": c.text}));
    }
    for call in &c.calls {
        // Streamed text when any came (Chat's and Responses' arguments, Messages'
        // `input_json_delta`s), else the object the call started with.
        let arguments = if call.arguments.is_empty() {
            call.object.clone().unwrap_or(Value::String(String::new()))
        } else {
            serde_json::from_str(&call.arguments)
                .unwrap_or_else(|_| Value::String(call.arguments.clone()))
        };
        parts.push(
            json!({"type": "tool_call", "id": call.id, "name": call.name, "arguments": arguments}),
        );
    }
    json!({"role": "assistant", "parts": parts, "finish_reason": c.finish.as_deref().unwrap_or("")})
}

/// A whole answer of `dialect` (its non-streaming body); `capture`: the most bytes of
/// output to keep, `None` for none.
pub fn of_body(dialect: Dialect, body: &[u8], capture: Option<usize>) -> Answer {
    match serde_json::from_slice::<Value>(body) {
        Ok(v) => of_value(dialect, &v, capture),
        Err(_) => Answer::default(),
    }
}

/// [`of_body`] over a body already parsed.
pub fn of_value(dialect: Dialect, v: &Value, capture: Option<usize>) -> Answer {
    let mut r = Reading::new(capture);
    read_body(dialect, v, &mut r);
    r.answer()
}

fn str_at<'v>(v: &'v Value, key: &str) -> Option<&'v str> {
    v.get(key).and_then(Value::as_str)
}

fn array_at<'v>(v: &'v Value, key: &str) -> &'v [Value] {
    v.get(key)
        .and_then(Value::as_array)
        .map_or(&[], Vec::as_slice)
}

fn index_of(v: &Value, fallback: usize) -> u64 {
    v.get("index")
        .and_then(Value::as_u64)
        .unwrap_or(fallback as u64)
}

fn read_body(dialect: Dialect, v: &Value, r: &mut Reading) {
    match dialect {
        Dialect::Chat => {
            r.set_id(str_at(v, "id"));
            for (n, c) in array_at(v, "choices").iter().enumerate() {
                let i = index_of(c, n);
                r.finish(i, str_at(c, "finish_reason"));
                let Some(m) = c.get("message") else { continue };
                if let Some(t) = str_at(m, "content") {
                    r.text(i, t);
                }
                for call in array_at(m, "tool_calls") {
                    let f = call.get("function").unwrap_or(&Value::Null);
                    let id = str_at(call, "id").unwrap_or("");
                    if let Some(at) = r.call(i, id, str_at(f, "name").unwrap_or(""), None) {
                        r.arguments(i, at, str_at(f, "arguments").unwrap_or(""));
                    }
                }
            }
        }
        Dialect::Messages => {
            r.set_id(str_at(v, "id"));
            r.finish(0, str_at(v, "stop_reason"));
            for block in array_at(v, "content") {
                match str_at(block, "type") {
                    Some("text") => r.text(0, str_at(block, "text").unwrap_or("")),
                    Some("tool_use" | "server_tool_use") => {
                        let id = str_at(block, "id").unwrap_or("");
                        r.call(
                            0,
                            id,
                            str_at(block, "name").unwrap_or(""),
                            block.get("input"),
                        );
                    }
                    _ => {}
                }
            }
        }
        Dialect::Responses => {
            r.set_id(str_at(v, "id"));
            let reason = v
                .get("incomplete_details")
                .and_then(|d| str_at(d, "reason"))
                .or_else(|| str_at(v, "status"));
            r.finish(0, reason);
            for item in array_at(v, "output") {
                match str_at(item, "type") {
                    Some("message") => {
                        for part in array_at(item, "content") {
                            let text = str_at(part, "text").or_else(|| str_at(part, "refusal"));
                            r.text(0, text.unwrap_or(""));
                        }
                    }
                    Some("function_call") => {
                        let id = str_at(item, "call_id").unwrap_or("");
                        if let Some(at) = r.call(0, id, str_at(item, "name").unwrap_or(""), None) {
                            r.arguments(0, at, str_at(item, "arguments").unwrap_or(""));
                        }
                    }
                    _ => {}
                }
            }
        }
        Dialect::Gemini => {
            r.set_id(str_at(v, "responseId"));
            for (n, c) in array_at(v, "candidates").iter().enumerate() {
                let i = index_of(c, n);
                r.finish(i, str_at(c, "finishReason"));
                let parts = c.get("content").map_or(&[][..], |c| array_at(c, "parts"));
                for p in parts {
                    // Thoughts are not the answer (as Messages' thinking blocks are not).
                    if p.get("thought").and_then(Value::as_bool) == Some(true) {
                        continue;
                    }
                    if let Some(t) = str_at(p, "text") {
                        r.text(i, t);
                    } else if let Some(f) = p.get("functionCall") {
                        let id = str_at(f, "id").unwrap_or("");
                        r.call(i, id, str_at(f, "name").unwrap_or(""), f.get("args"));
                    }
                }
            }
        }
    }
}

/// Reads a stream of `dialect` as it goes to the client: [`Sniffer::frame`] each frame
/// sent, [`Sniffer::answer`] at the end (or whenever the stream stops).
#[derive(Debug)]
pub struct Sniffer {
    dialect: Dialect,
    decoder: Decoder,
    reading: Reading,
}

impl Sniffer {
    /// `capture`: the most bytes of output to keep, `None` for none.
    pub fn new(dialect: Dialect, capture: Option<usize>) -> Self {
        Self {
            dialect,
            decoder: Decoder::new(),
            reading: Reading::new(capture),
        }
    }

    /// One or more complete frames, as sent.
    pub fn frame(&mut self, bytes: &[u8]) {
        self.decoder.push(bytes);
        while let Ok(Some(ev)) = self.decoder.next_event() {
            self.event(ev.event.as_deref(), &ev.data);
        }
    }

    /// What the frames so far said.
    pub fn answer(self) -> Answer {
        self.reading.answer()
    }

    fn event(&mut self, name: Option<&str>, data: &[u8]) {
        let r = &mut self.reading;
        match self.dialect {
            Dialect::Chat => {
                if data == b"[DONE]"
                    || !(r.capturing() || r.id.is_none() || names(data, b"\"finish_reason\""))
                {
                    return;
                }
                if let Ok(v) = serde_json::from_slice::<Value>(data) {
                    chat_chunk(&v, r);
                }
            }
            Dialect::Gemini => {
                if !(r.capturing() || r.id.is_none() || names(data, b"\"finishReason\"")) {
                    return;
                }
                if let Ok(v) = serde_json::from_slice::<Value>(data) {
                    // A chunk reads as a body does; its text and calls add up.
                    read_body(Dialect::Gemini, &v, r);
                }
            }
            Dialect::Messages => {
                const WANTED: [&str; 2] = ["message_start", "message_delta"];
                if name.is_some_and(|n| !r.capturing() && !WANTED.contains(&n)) {
                    return;
                }
                if let Ok(v) = serde_json::from_slice::<Value>(data) {
                    messages_event(&v, r);
                }
            }
            Dialect::Responses => {
                const WANTED: [&str; 4] = [
                    "response.created",
                    "response.completed",
                    "response.incomplete",
                    "response.failed",
                ];
                if name.is_some_and(|n| !WANTED.contains(&n)) {
                    return;
                }
                let Ok(v) = serde_json::from_slice::<Value>(data) else {
                    return;
                };
                let Some(resp) = v.get("response") else {
                    return;
                };
                match str_at(&v, "type") {
                    Some("response.created") => r.set_id(str_at(resp, "id")),
                    Some(_) if str_at(resp, "status").is_some_and(|s| s != "in_progress") => {
                        // The final event carries the whole Response: read as a body.
                        let capture = r.budget;
                        let mut whole = Reading::new(capture);
                        whole.id = r.id.take();
                        read_body(Dialect::Responses, resp, &mut whole);
                        *r = whole;
                    }
                    _ => {}
                }
            }
        }
    }
}

/// `data` has `key` followed by a string value (`"finish_reason": "stop"`, not `null`).
fn names(data: &[u8], key: &[u8]) -> bool {
    memchr::memmem::find_iter(data, key).any(|at| {
        let rest = &data[at + key.len()..];
        rest.iter()
            .find(|b| !matches!(b, b' ' | b'\t' | b'\r' | b'\n' | b':'))
            .is_some_and(|b| *b == b'"')
    })
}

fn chat_chunk(v: &Value, r: &mut Reading) {
    r.set_id(str_at(v, "id"));
    for (n, c) in array_at(v, "choices").iter().enumerate() {
        let i = index_of(c, n);
        r.finish(i, str_at(c, "finish_reason"));
        if !r.capturing() {
            continue;
        }
        let Some(d) = c.get("delta") else { continue };
        if let Some(t) = str_at(d, "content") {
            r.text(i, t);
        }
        for call in array_at(d, "tool_calls") {
            let f = call.get("function").unwrap_or(&Value::Null);
            let key = call.get("index").and_then(Value::as_u64).unwrap_or(0);
            if let Some(id) = str_at(call, "id") {
                let at = r.call(i, id, str_at(f, "name").unwrap_or(""), None);
                r.slot(i, key, at);
            }
            if let Some(at) = r.slot_of(i, key) {
                r.arguments(i, at, str_at(f, "arguments").unwrap_or(""));
            }
        }
    }
}

/// A Messages event's content block index.
fn block_index(v: &Value) -> u64 {
    v.get("index").and_then(Value::as_u64).unwrap_or(0)
}

fn messages_event(v: &Value, r: &mut Reading) {
    match str_at(v, "type") {
        Some("message_start") => {
            if let Some(m) = v.get("message") {
                r.set_id(str_at(m, "id"));
            }
        }
        Some("message_delta") => {
            let reason = v.get("delta").and_then(|d| str_at(d, "stop_reason"));
            r.finish(0, reason);
        }
        Some("content_block_start") => {
            let b = v.get("content_block").unwrap_or(&Value::Null);
            match str_at(b, "type") {
                Some("text") => r.text(0, str_at(b, "text").unwrap_or("")),
                Some("tool_use" | "server_tool_use") => {
                    let id = str_at(b, "id").unwrap_or("");
                    let at = r.call(0, id, str_at(b, "name").unwrap_or(""), b.get("input"));
                    r.slot(0, block_index(v), at);
                }
                _ => {}
            }
        }
        Some("content_block_delta") => {
            let d = v.get("delta").unwrap_or(&Value::Null);
            match str_at(d, "type") {
                Some("text_delta") => r.text(0, str_at(d, "text").unwrap_or("")),
                // To the call its block started, whichever block came last.
                Some("input_json_delta") => {
                    if let Some(at) = r.slot_of(0, block_index(v)) {
                        r.arguments(0, at, str_at(d, "partial_json").unwrap_or(""));
                    }
                }
                _ => {}
            }
        }
        _ => {}
    }
}
