//! OpenAI Chat Completions: `chat.completion.chunk` stream ↔ `chat.completion` body.
//!
//! [`collect`] merges the chunks (up to `data: [DONE]`, which must come): `id`, `created`,
//! `model`, `service_tier`, `system_fingerprint` (and Azure's `prompt_filter_results`)
//! from the chunks, the last meaningful value winning (Azure's first chunk has `id: ""`,
//! `created: 0`); choices by `index`: `role`, `content` (`null` when only tool calls came),
//! `refusal`, `reasoning_content` / `reasoning` and `annotations` when sent, `tool_calls`
//! merged by their `index`, the last `finish_reason` (every choice needs one), `logprobs`
//! arrays concatenated, Azure's `content_filter_results`; `usage` from the usage chunk. A
//! data frame with an `error` → `None`.
//!
//! [`replay`] writes what OpenAI sends: per choice a role chunk (`content: ""` — `null`
//! for a `null` content — and `refusal: null`), reasoning, content (with the logprobs and
//! annotations), refusal, one chunk per tool call, a finish chunk with an empty delta;
//! with `include_usage` every chunk has `"usage": null` and a last `choices: []` chunk
//! carries the usage; then `data: [DONE]`. An empty `annotations: []` does not survive the
//! round trip (streams only send non-empty ones).

use std::collections::BTreeMap;

use bytes::Bytes;
use serde_json::{json, Map, Value};

use super::{append, events, frame, object, with};

/// Top-level fields a chunk carries over to the body, in OpenAI's body order.
const META: [&str; 6] = [
    "id",
    "created",
    "model",
    "service_tier",
    "system_fingerprint",
    "prompt_filter_results",
];

const DONE: &[u8] = b"data: [DONE]\n\n";

#[derive(Debug, Default)]
struct Call {
    id: Option<Value>,
    kind: Option<Value>,
    name: String,
    args: String,
}

#[derive(Debug, Default)]
struct Choice {
    role: Option<Value>,
    content: Option<String>,
    /// `Some` once a delta had the `refusal` key.
    refusal: Option<Option<String>>,
    reasoning: Map<String, Value>,
    annotations: Option<Vec<Value>>,
    calls: BTreeMap<u64, Call>,
    finish: Option<Value>,
    logprobs: Option<Map<String, Value>>,
    filter: Option<Value>,
}

/// Not a placeholder: not `null`, `""` or `0`.
fn meaningful(v: &Value) -> bool {
    !(v.is_null() || v.as_str() == Some("") || v.as_u64() == Some(0))
}

impl Choice {
    fn push(&mut self, c: &Map<String, Value>) {
        if let Some(d) = c.get("delta").and_then(Value::as_object) {
            self.delta(d);
        }
        if let Some(f) = c.get("finish_reason").filter(|f| !f.is_null()) {
            self.finish = Some(f.clone());
        }
        if let Some(lp) = c.get("logprobs").and_then(Value::as_object) {
            let acc = self.logprobs.get_or_insert_with(Map::new);
            for (k, v) in lp {
                match (acc.get_mut(k), v) {
                    (Some(Value::Array(a)), Value::Array(b)) => a.extend(b.iter().cloned()),
                    (Some(_), Value::Null) => {}
                    _ => {
                        acc.insert(k.clone(), v.clone());
                    }
                }
            }
        }
        if let Some(f) = c.get("content_filter_results") {
            if self.filter.is_none() || f.as_object().is_some_and(|o| !o.is_empty()) {
                self.filter = Some(f.clone());
            }
        }
    }

    fn delta(&mut self, d: &Map<String, Value>) {
        if let Some(r) = d.get("role").filter(|r| !r.is_null()) {
            self.role = Some(r.clone());
        }
        if let Some(s) = d.get("content").and_then(Value::as_str) {
            self.content.get_or_insert_with(String::new).push_str(s);
        }
        if let Some(r) = d.get("refusal") {
            let acc = self.refusal.get_or_insert(None);
            if let Some(s) = r.as_str() {
                acc.get_or_insert_with(String::new).push_str(s);
            }
        }
        for key in ["reasoning_content", "reasoning"] {
            if let Some(s) = d.get(key).and_then(Value::as_str) {
                append(&mut self.reasoning, key, s);
            }
        }
        if let Some(a) = d.get("annotations").and_then(Value::as_array) {
            self.annotations
                .get_or_insert_with(Vec::new)
                .extend(a.iter().cloned());
        }
        for tc in d
            .get("tool_calls")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            let call = self
                .calls
                .entry(tc.get("index").and_then(Value::as_u64).unwrap_or(0))
                .or_default();
            if let Some(id) = tc.get("id").filter(|v| meaningful(v)) {
                call.id = Some(id.clone());
            }
            if let Some(t) = tc.get("type").filter(|v| meaningful(v)) {
                call.kind = Some(t.clone());
            }
            let f = tc.get("function");
            if let Some(n) = f.and_then(|f| f.get("name")).and_then(Value::as_str) {
                if !n.is_empty() {
                    n.clone_into(&mut call.name);
                }
            }
            if let Some(a) = f.and_then(|f| f.get("arguments")).and_then(Value::as_str) {
                call.args.push_str(a);
            }
        }
    }

    fn into_body(self, index: u64) -> Value {
        let mut msg = Map::new();
        msg.insert(
            "role".into(),
            self.role.unwrap_or_else(|| json!("assistant")),
        );
        let content = match self.content {
            Some(s) if !s.is_empty() || self.calls.is_empty() => Value::String(s),
            _ => Value::Null,
        };
        msg.insert("content".into(), content);
        msg.extend(self.reasoning);
        if !self.calls.is_empty() {
            let calls = self.calls.into_values().map(|c| {
                json!({
                    "id": c.id.unwrap_or_else(|| json!("")),
                    "type": c.kind.unwrap_or_else(|| json!("function")),
                    "function": {"name": c.name, "arguments": c.args},
                })
            });
            msg.insert("tool_calls".into(), calls.collect());
        }
        if let Some(r) = self.refusal {
            msg.insert("refusal".into(), r.map_or(Value::Null, Value::String));
        }
        if let Some(a) = self.annotations {
            msg.insert("annotations".into(), Value::Array(a));
        }
        let mut c = Map::new();
        c.insert("index".into(), json!(index));
        c.insert("message".into(), Value::Object(msg));
        c.insert(
            "logprobs".into(),
            self.logprobs.map_or(Value::Null, Value::Object),
        );
        c.insert("finish_reason".into(), self.finish.unwrap_or(Value::Null));
        if let Some(f) = self.filter {
            c.insert("content_filter_results".into(), f);
        }
        Value::Object(c)
    }
}

/// The `chat.completion` body of a complete, successful Chat stream; see the module docs.
pub fn collect(stream: &[u8]) -> Option<Value> {
    let mut meta = Map::new();
    let mut choices: BTreeMap<u64, Choice> = BTreeMap::new();
    let mut usage = None;
    let mut done = false;
    for ev in events(stream)? {
        if ev.data.trim_ascii() == b"[DONE]" {
            done = true;
            break;
        }
        let chunk = object(&ev.data)?;
        if chunk.contains_key("error") {
            return None;
        }
        for key in META {
            if let Some(v) = chunk.get(key) {
                if meaningful(v) || !meta.contains_key(key) {
                    meta.insert(key.into(), v.clone());
                }
            }
        }
        if let Some(u) = chunk.get("usage").filter(|u| !u.is_null()) {
            usage = Some(u.clone());
        }
        let list = chunk.get("choices").and_then(Value::as_array);
        for c in list.into_iter().flatten().filter_map(Value::as_object) {
            let i = c.get("index").and_then(Value::as_u64).unwrap_or(0);
            choices.entry(i).or_default().push(c);
        }
    }
    if !done || choices.is_empty() || choices.values().any(|c| c.finish.is_none()) {
        return None;
    }
    let mut body = Map::new();
    body.insert("id".into(), meta.remove("id").unwrap_or_else(|| json!("")));
    body.insert("object".into(), json!("chat.completion"));
    for key in ["created", "model"] {
        body.insert(key.into(), meta.remove(key).unwrap_or(Value::Null));
    }
    let choices = choices.into_iter().map(|(i, c)| c.into_body(i));
    body.insert("choices".into(), choices.collect());
    body.insert("usage".into(), usage.unwrap_or(Value::Null));
    body.extend(meta);
    Some(Value::Object(body))
}

/// A `chat.completion.chunk` stream for a stored `chat.completion` body; see the module docs.
pub fn replay(body: &Value, include_usage: bool) -> Option<Vec<Bytes>> {
    let b = body.as_object()?;
    let mut head = Map::new();
    head.insert("id".into(), b.get("id").cloned().unwrap_or(json!("")));
    head.insert("object".into(), json!("chat.completion.chunk"));
    for key in ["created", "model", "service_tier", "system_fingerprint"] {
        if let Some(v) = b.get(key) {
            head.insert(key.into(), v.clone());
        }
    }
    head.insert("choices".into(), json!([]));
    if include_usage {
        head.insert("usage".into(), Value::Null);
    }
    let mut out = Vec::new();
    for (i, choice) in b.get("choices")?.as_array()?.iter().enumerate() {
        for c in choice_chunks(i, choice)? {
            let mut chunk = with(head.clone(), "choices", json!([c]));
            if let Some(pf) = b.get("prompt_filter_results").filter(|_| out.is_empty()) {
                // Azure's prompt filter results ride on the first chunk.
                chunk.insert("prompt_filter_results".into(), pf.clone());
            }
            out.push(frame(None, &Value::Object(chunk)));
        }
    }
    if let Some(u) = b.get("usage").filter(|u| include_usage && !u.is_null()) {
        out.push(frame(None, &Value::Object(with(head, "usage", u.clone()))));
    }
    out.push(Bytes::from_static(DONE));
    Some(out)
}

/// The `choices[0]` of each chunk one stored choice streams as.
fn choice_chunks(i: usize, choice: &Value) -> Option<Vec<Value>> {
    let msg = choice.get("message")?.as_object()?;
    let text = msg.get("content").and_then(Value::as_str);
    let mut logprobs = choice.get("logprobs").filter(|l| !l.is_null());
    let mut role = Map::new();
    let r = msg.get("role").cloned().unwrap_or(json!("assistant"));
    role.insert("role".into(), r);
    role.insert("content".into(), json!(text.map(|_| "")));
    if msg.contains_key("refusal") {
        role.insert("refusal".into(), Value::Null);
    }
    let mut deltas = vec![(Value::Object(role), None)];
    let reasoning: Map<String, Value> = ["reasoning_content", "reasoning"]
        .into_iter()
        .filter_map(|k| Some((k.to_owned(), msg.get(k).filter(|v| v.is_string())?.clone())))
        .collect();
    if !reasoning.is_empty() {
        deltas.push((Value::Object(reasoning), None));
    }
    let notes = msg
        .get("annotations")
        .filter(|a| a.as_array().is_some_and(|a| !a.is_empty()));
    if text.is_some_and(|t| !t.is_empty()) || notes.is_some() {
        let mut d = Map::new();
        d.insert("content".into(), json!(text.unwrap_or("")));
        if let Some(a) = notes {
            d.insert("annotations".into(), a.clone());
        }
        deltas.push((Value::Object(d), logprobs.take()));
    }
    if let Some(r) = msg.get("refusal").filter(|r| r.is_string()) {
        deltas.push((json!({"refusal": r}), None));
    }
    let calls = msg.get("tool_calls").and_then(Value::as_array);
    for (n, tc) in calls.into_iter().flatten().enumerate() {
        let f = tc.get("function");
        let field = |k: &str| f.and_then(|f| f.get(k)).cloned().unwrap_or(json!(""));
        let call = json!({
            "index": n,
            "id": tc.get("id"),
            "type": tc.get("type").cloned().unwrap_or(json!("function")),
            "function": {"name": field("name"), "arguments": field("arguments")},
        });
        deltas.push((json!({"tool_calls": [call]}), None));
    }
    let index = choice.get("index").cloned().unwrap_or(json!(i));
    let mut chunks: Vec<Value> = deltas
        .into_iter()
        .map(|(d, lp)| json!({"index": index, "delta": d, "logprobs": lp, "finish_reason": null}))
        .collect();
    let mut last = Map::new();
    last.insert("index".into(), index);
    last.insert("delta".into(), json!({}));
    last.insert("logprobs".into(), json!(logprobs));
    last.insert("finish_reason".into(), json!(choice.get("finish_reason")));
    if let Some(f) = choice.get("content_filter_results") {
        last.insert("content_filter_results".into(), f.clone());
    }
    chunks.push(Value::Object(last));
    Some(chunks)
}
