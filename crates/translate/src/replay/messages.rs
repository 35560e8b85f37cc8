//! Anthropic Messages: `event: X` / `data: {…}` stream ↔ `message` body.
//!
//! [`collect`] takes `message_start.message` as the base and builds its `content` from the
//! blocks, by `index`: `content_block_start` gives the block, `text_delta` appends `text`,
//! `thinking_delta` `thinking`, `signature_delta` `signature`, `citations_delta` pushes onto
//! `citations`, `input_json_delta` fragments are joined and parsed into `input` at the end
//! (no fragment: the start's `input`; an empty join: `{}`); every block needs its
//! `content_block_stop`. `message_delta` sets `stop_reason`, `stop_sequence` (whatever its
//! `delta` holds) and lays its `usage` fields over the start's; `message_stop` ends it. An
//! `error` event, an unknown delta type or a fragment join that is not JSON → `None`.
//!
//! [`replay`] writes what the API sends: `message_start` (the message with `content: []`,
//! `stop_reason`/`stop_sequence` null, the whole usage with a provisional `output_tokens`
//! of at most 1), per block `content_block_start` (text/thinking emptied, tool input `{}`,
//! other blocks whole), one delta of each kind the block needs (citations, text, thinking
//! then signature, the serialized input), `content_block_stop`; `message_delta` with the
//! stop fields and the counted usage fields; `message_stop`.

use std::collections::BTreeMap;

use bytes::Bytes;
use serde_json::{json, Map, Value};

use super::{append, events, frame, object, with};

/// Usage fields `message_delta` repeats, as the API does (the rest stay `message_start`'s).
const DELTA_USAGE: [&str; 5] = [
    "input_tokens",
    "cache_creation_input_tokens",
    "cache_read_input_tokens",
    "output_tokens",
    "server_tool_use",
];

/// Block types whose `input` streams as `input_json_delta`.
fn is_tool(kind: Option<&str>) -> bool {
    matches!(kind, Some("tool_use" | "server_tool_use" | "mcp_tool_use"))
}

#[derive(Debug)]
struct Block {
    block: Map<String, Value>,
    json: Option<String>,
    stopped: bool,
}

impl Block {
    fn delta(&mut self, d: &Map<String, Value>) -> Option<()> {
        let field = |k: &str| d.get(k).and_then(Value::as_str);
        match d.get("type").and_then(Value::as_str)? {
            "text_delta" => append(&mut self.block, "text", field("text")?),
            "thinking_delta" => append(&mut self.block, "thinking", field("thinking")?),
            "signature_delta" => append(&mut self.block, "signature", field("signature")?),
            "input_json_delta" => self
                .json
                .get_or_insert_with(String::new)
                .push_str(field("partial_json")?),
            "citations_delta" => {
                let c = d.get("citation")?.clone();
                match self.block.get_mut("citations") {
                    Some(Value::Array(a)) => a.push(c),
                    _ => {
                        self.block.insert("citations".into(), json!([c]));
                    }
                }
            }
            _ => return None,
        }
        Some(())
    }

    fn finish(mut self) -> Option<Value> {
        if !self.stopped {
            return None;
        }
        if let Some(j) = self.json {
            let input = match j.trim() {
                "" => json!({}),
                j => serde_json::from_str(j).ok()?,
            };
            self.block.insert("input".into(), input);
        }
        Some(Value::Object(self.block))
    }
}

/// The `message` body of a complete, successful Messages stream; see the module docs.
pub fn collect(stream: &[u8]) -> Option<Value> {
    let mut msg: Option<Map<String, Value>> = None;
    let mut blocks: BTreeMap<u64, Block> = BTreeMap::new();
    let mut done = false;
    for ev in events(stream)? {
        if ev.event.as_deref() == Some("error") {
            return None;
        }
        let v = object(&ev.data)?;
        let index = || v.get("index").and_then(Value::as_u64);
        match v.get("type").and_then(Value::as_str)? {
            "message_start" => msg = Some(v.get("message")?.as_object()?.clone()),
            "content_block_start" => {
                msg.as_ref()?;
                let block = v.get("content_block")?.as_object()?.clone();
                let b = Block {
                    block,
                    json: None,
                    stopped: false,
                };
                blocks.insert(index()?, b);
            }
            "content_block_delta" => {
                let d = v.get("delta")?.as_object()?;
                blocks.get_mut(&index()?)?.delta(d)?;
            }
            "content_block_stop" => blocks.get_mut(&index()?)?.stopped = true,
            "message_delta" => {
                let m = msg.as_mut()?;
                let d = v.get("delta").and_then(Value::as_object);
                m.extend(d.into_iter().flatten().map(|(k, v)| (k.clone(), v.clone())));
                if let Some(u) = v.get("usage").and_then(Value::as_object) {
                    let Value::Object(acc) = m.entry("usage").or_insert_with(|| json!({})) else {
                        return None;
                    };
                    for (k, v) in u {
                        if !v.is_null() || !acc.contains_key(k) {
                            acc.insert(k.clone(), v.clone());
                        }
                    }
                }
            }
            "message_stop" => {
                done = true;
                break;
            }
            "error" => return None,
            _ => {}
        }
    }
    let msg = msg.filter(|_| done)?;
    let content: Option<Vec<Value>> = blocks.into_values().map(Block::finish).collect();
    Some(Value::Object(with(msg, "content", Value::Array(content?))))
}

/// A Messages stream for a stored `message` body; see the module docs.
pub fn replay(body: &Value) -> Option<Vec<Bytes>> {
    let b = body.as_object()?;
    let content = b.get("content")?.as_array()?;
    let usage = b.get("usage").and_then(Value::as_object);
    let mut start = with(b.clone(), "content", json!([]));
    for key in ["stop_reason", "stop_sequence", "stop_details"] {
        if key != "stop_details" || start.contains_key(key) {
            start.insert(key.into(), Value::Null);
        }
    }
    if let Some(u) = usage {
        let mut u = u.clone();
        if let Some(n) = u.get("output_tokens").and_then(Value::as_u64) {
            u.insert("output_tokens".into(), json!(n.min(1)));
        }
        start.insert("usage".into(), Value::Object(u));
    }
    let mut out = vec![ev(
        "message_start",
        json!({"type": "message_start", "message": start}),
    )];
    for (i, block) in content.iter().enumerate() {
        let block = block.as_object()?;
        let text = |k: &str| block.get(k).and_then(Value::as_str).unwrap_or("");
        let kind = block.get("type").and_then(Value::as_str);
        let mut first = block.clone();
        let mut deltas = Vec::new();
        match kind {
            Some("text") => {
                first.insert("text".into(), json!(""));
                if let Some(Value::Array(cites)) = block.get("citations") {
                    first.insert("citations".into(), json!([]));
                    deltas.extend(
                        cites
                            .iter()
                            .map(|c| json!({"type": "citations_delta", "citation": c})),
                    );
                }
                if !text("text").is_empty() {
                    deltas.push(json!({"type": "text_delta", "text": text("text")}));
                }
            }
            Some("thinking") => {
                first.insert("thinking".into(), json!(""));
                first.insert("signature".into(), json!(""));
                if !text("thinking").is_empty() {
                    let t = text("thinking");
                    deltas.push(json!({"type": "thinking_delta", "thinking": t}));
                }
                if !text("signature").is_empty() {
                    let s = text("signature");
                    deltas.push(json!({"type": "signature_delta", "signature": s}));
                }
            }
            k if is_tool(k) => {
                let input = block.get("input").cloned().unwrap_or_else(|| json!({}));
                first.insert("input".into(), json!({}));
                let partial = match &input {
                    Value::Object(m) if m.is_empty() => String::new(),
                    v => v.to_string(),
                };
                deltas.push(json!({"type": "input_json_delta", "partial_json": partial}));
            }
            _ => {}
        }
        out.push(ev(
            "content_block_start",
            json!({"type": "content_block_start", "index": i, "content_block": first}),
        ));
        for d in deltas {
            out.push(ev(
                "content_block_delta",
                json!({"type": "content_block_delta", "index": i, "delta": d}),
            ));
        }
        out.push(ev(
            "content_block_stop",
            json!({"type": "content_block_stop", "index": i}),
        ));
    }
    let mut delta = Map::new();
    for key in ["stop_reason", "stop_sequence", "stop_details"] {
        if key != "stop_details" || b.contains_key(key) {
            delta.insert(key.into(), b.get(key).cloned().unwrap_or(Value::Null));
        }
    }
    let counted: Map<String, Value> = DELTA_USAGE
        .iter()
        .filter_map(|k| Some(((*k).to_owned(), usage?.get(*k)?.clone())))
        .collect();
    out.push(ev(
        "message_delta",
        json!({"type": "message_delta", "delta": delta, "usage": counted}),
    ));
    out.push(ev("message_stop", json!({"type": "message_stop"})));
    Some(out)
}

fn ev(kind: &str, data: Value) -> Bytes {
    frame(Some(kind), &data)
}
