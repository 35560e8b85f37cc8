//! OpenAI Responses: `event: <type>` / `data: {…}` stream ↔ `response` body.
//!
//! [`collect`] returns the `response` of `response.completed`, the terminal event; should
//! its `output` be empty while `response.output_item.done` events came, those items fill
//! it. `response.failed`, `response.incomplete` or `error` → `None`.
//!
//! [`replay`] writes what the API sends, every event with its `sequence_number` from 0:
//! `response.created` and `response.in_progress` (the response `in_progress`, no output, no
//! usage); per output item `response.output_item.added` (the item emptied, `in_progress`),
//! then for a message each content part's `response.content_part.added`,
//! `response.output_text.delta` (the whole text), its annotations, `.done`,
//! `response.content_part.done` (`response.refusal.*` for a refusal part); for a function
//! call `response.function_call_arguments.delta` / `.done`; for reasoning each summary
//! part's `response.reasoning_summary_part.added`, `response.reasoning_summary_text.delta`
//! / `.done`, `response.reasoning_summary_part.done`, and each `reasoning_text` part the
//! same way as text; `response.output_item.done` with the whole item. Last
//! `response.completed` with the body as stored.

use std::collections::BTreeMap;

use bytes::Bytes;
use serde_json::{json, Map, Value};

use super::{events, frame, object, with};

/// The `response` of a complete, successful Responses stream; see the module docs.
pub fn collect(stream: &[u8]) -> Option<Value> {
    let mut items = BTreeMap::new();
    for ev in events(stream)? {
        if ev.event.as_deref() == Some("error") {
            return None;
        }
        let v = object(&ev.data)?;
        match v.get("type").and_then(Value::as_str)? {
            "response.completed" => {
                let r = v.get("response")?.as_object()?.clone();
                let empty = r
                    .get("output")
                    .and_then(Value::as_array)
                    .is_none_or(Vec::is_empty);
                if empty && !items.is_empty() {
                    let output = items.into_values().collect();
                    return Some(Value::Object(with(r, "output", output)));
                }
                return Some(Value::Object(r));
            }
            "response.output_item.done" => {
                let i = v.get("output_index").and_then(Value::as_u64)?;
                items.insert(i, v.get("item")?.clone());
            }
            "response.failed" | "response.incomplete" | "error" => return None,
            _ => {}
        }
    }
    None
}

/// The frames written so far and the next `sequence_number`.
#[derive(Debug, Default)]
struct Out {
    seq: u64,
    frames: Vec<Bytes>,
}

impl Out {
    fn emit(&mut self, kind: &str, fields: Value) {
        let mut m = Map::new();
        m.insert("type".into(), json!(kind));
        m.insert("sequence_number".into(), json!(self.seq));
        if let Value::Object(f) = fields {
            m.extend(f);
        }
        self.seq += 1;
        self.frames.push(frame(Some(kind), &Value::Object(m)));
    }

    /// One streamed text part (`output_text`, `refusal`, `reasoning_text`, `summary_text`):
    /// its part opens, the whole text as one delta (and the annotations), `.done`, the part
    /// closes. `at`: the events' `item_id`, `output_index` and `content_index` (or
    /// `summary_index`). `None`: another kind of part.
    fn text_part(&mut self, at: &Value, part: &Value) -> Option<()> {
        let kind = part.get("type").and_then(Value::as_str)?;
        let (field, prefix, parts) = match kind {
            "output_text" => ("text", "response.output_text", CONTENT_PART),
            "refusal" => ("refusal", "response.refusal", CONTENT_PART),
            "reasoning_text" => ("text", "response.reasoning_text", CONTENT_PART),
            "summary_text" => ("text", "response.reasoning_summary_text", SUMMARY_PART),
            _ => return None,
        };
        let text = part.get(field).and_then(Value::as_str)?;
        let mut empty = json!({"type": kind, field: ""});
        let logprobs = part.get("logprobs").filter(|_| kind == "output_text");
        if kind == "output_text" {
            let mut e = with(part.as_object()?.clone(), "text", json!(""));
            for k in ["annotations", "logprobs"] {
                if e.contains_key(k) {
                    e.insert(k.into(), json!([]));
                }
            }
            empty = Value::Object(e);
        }
        let mut delta = json!({"delta": text});
        let mut done = json!({ field: text });
        if let (Some(lp), Value::Object(d), Value::Object(e)) = (logprobs, &mut delta, &mut done) {
            d.insert("logprobs".into(), lp.clone());
            e.insert("logprobs".into(), lp.clone());
        }
        self.emit(parts.0, merged(at, json!({"part": empty})));
        self.emit(&format!("{prefix}.delta"), merged(at, delta));
        let notes = part.get("annotations").and_then(Value::as_array);
        for (n, a) in notes.into_iter().flatten().enumerate() {
            let note = json!({"annotation_index": n, "annotation": a});
            self.emit("response.output_text.annotation.added", merged(at, note));
        }
        self.emit(&format!("{prefix}.done"), merged(at, done));
        self.emit(parts.1, merged(at, json!({"part": part})));
        Some(())
    }
}

const CONTENT_PART: (&str, &str) = ("response.content_part.added", "response.content_part.done");
const SUMMARY_PART: (&str, &str) = (
    "response.reasoning_summary_part.added",
    "response.reasoning_summary_part.done",
);

/// A Responses stream for a stored `response` body; see the module docs.
pub fn replay(body: &Value) -> Option<Vec<Bytes>> {
    let b = body.as_object()?;
    let output = b.get("output")?.as_array()?;
    let mut pending = with(b.clone(), "status", json!("in_progress"));
    pending.insert("output".into(), json!([]));
    pending.insert("usage".into(), Value::Null);
    if pending.contains_key("completed_at") {
        pending.insert("completed_at".into(), Value::Null);
    }
    let pending = Value::Object(pending);
    let mut out = Out::default();
    out.emit("response.created", json!({"response": pending}));
    out.emit("response.in_progress", json!({"response": pending}));
    for (i, item) in output.iter().enumerate() {
        replay_item(&mut out, i, item.as_object()?);
    }
    out.emit("response.completed", json!({"response": body}));
    Some(out.frames)
}

/// One output item's events, `output_item.added` to `output_item.done`.
fn replay_item(out: &mut Out, i: usize, it: &Map<String, Value>) {
    let id = it.get("id").cloned().unwrap_or(Value::Null);
    let kind = it.get("type").and_then(Value::as_str).unwrap_or("");
    let mut added = it.clone();
    if added.contains_key("status") {
        added.insert("status".into(), json!("in_progress"));
    }
    match kind {
        "message" => added.insert("content".into(), json!([])),
        "function_call" => added.insert("arguments".into(), json!("")),
        "reasoning" => added.insert("summary".into(), json!([])),
        _ => None,
    };
    if kind == "reasoning" && added.contains_key("content") {
        added.insert("content".into(), json!([]));
    }
    out.emit(
        "response.output_item.added",
        json!({"output_index": i, "item": added}),
    );
    let list = |k: &str| it.get(k).and_then(Value::as_array).into_iter().flatten();
    match kind {
        "message" | "reasoning" => {
            let content = list("content")
                .enumerate()
                .map(|(n, p)| ("content_index", n, p));
            let summary = list("summary")
                .enumerate()
                .map(|(n, p)| ("summary_index", n, p));
            for (key, n, part) in content.chain(summary) {
                let at = json!({"item_id": id, "output_index": i, key: n});
                if out.text_part(&at, part).is_none() {
                    // A part of another kind opens and closes whole.
                    let pair = if key == "content_index" {
                        CONTENT_PART
                    } else {
                        SUMMARY_PART
                    };
                    out.emit(pair.0, merged(&at, json!({"part": part})));
                    out.emit(pair.1, merged(&at, json!({"part": part})));
                }
            }
        }
        "function_call" => {
            let args = it.get("arguments").and_then(Value::as_str).unwrap_or("");
            let at = json!({"item_id": id, "output_index": i});
            out.emit(
                "response.function_call_arguments.delta",
                merged(&at, json!({"delta": args})),
            );
            out.emit(
                "response.function_call_arguments.done",
                merged(&at, json!({"arguments": args})),
            );
        }
        _ => {}
    }
    out.emit(
        "response.output_item.done",
        json!({"output_index": i, "item": it}),
    );
}

fn merged(at: &Value, extra: Value) -> Value {
    let mut m = at.as_object().cloned().unwrap_or_default();
    if let Value::Object(e) = extra {
        m.extend(e);
    }
    Value::Object(m)
}
