//! Anthropic's stream grammar for a recorded Messages response.

use bytes::Bytes;
use serde_json::{json, Value};

fn event(name: &str, data: &Value) -> Bytes {
    jusinfer_sse::encode_bytes(Some(name), data.to_string().as_bytes())
}

/// The stream Anthropic would have sent for `m`, in its event grammar.
pub fn streamify(m: &Value, chunks: Option<usize>) -> Vec<Bytes> {
    let mut start = m.clone();
    start["content"] = json!([]);
    start["stop_reason"] = Value::Null;
    let output_tokens = m["usage"]["output_tokens"].clone();
    start["usage"]["output_tokens"] = json!(1);
    let mut out = vec![event(
        "message_start",
        &json!({"type": "message_start", "message": start}),
    )];
    out.push(event("ping", &json!({"type": "ping"})));
    for (i, b) in m["content"].as_array().into_iter().flatten().enumerate() {
        let delta = |d: Value| {
            event(
                "content_block_delta",
                &json!({"type": "content_block_delta", "index": i, "delta": d}),
            )
        };
        match b["type"].as_str() {
            Some("text") => {
                out.push(event("content_block_start", &json!({"type": "content_block_start", "index": i, "content_block": {"type": "text", "text": ""}})));
                let text = b["text"].as_str().unwrap_or_default();
                match chunks {
                    Some(n) => {
                        for k in 0..n {
                            out.push(delta(
                                json!({"type": "text_delta", "text": format!("tok{k} ")}),
                            ));
                        }
                    }
                    None => {
                        for w in text.split_inclusive(' ') {
                            out.push(delta(json!({"type": "text_delta", "text": w})));
                        }
                    }
                }
            }
            Some("tool_use") => {
                out.push(event("content_block_start", &json!({"type": "content_block_start", "index": i,
                    "content_block": {"type": "tool_use", "id": b["id"], "name": b["name"], "input": {}}})));
                out.push(delta(
                    json!({"type": "input_json_delta", "partial_json": ""}),
                ));
                let s = b["input"].to_string();
                let chars: Vec<char> = s.chars().collect();
                for piece in chars.chunks(5) {
                    out.push(delta(json!({"type": "input_json_delta", "partial_json": piece.iter().collect::<String>()})));
                }
            }
            Some("thinking") => {
                out.push(event(
                    "content_block_start",
                    &json!({"type": "content_block_start", "index": i,
                    "content_block": {"type": "thinking", "thinking": "", "signature": ""}}),
                ));
                for w in b["thinking"]
                    .as_str()
                    .unwrap_or_default()
                    .split_inclusive(' ')
                {
                    out.push(delta(json!({"type": "thinking_delta", "thinking": w})));
                }
                out.push(delta(
                    json!({"type": "signature_delta", "signature": b["signature"]}),
                ));
            }
            _ => continue,
        }
        out.push(event(
            "content_block_stop",
            &json!({"type": "content_block_stop", "index": i}),
        ));
    }
    out.push(event(
        "message_delta",
        &json!({"type": "message_delta",
        "delta": {"stop_reason": m["stop_reason"], "stop_sequence": m["stop_sequence"]},
        "usage": {"output_tokens": output_tokens}}),
    ));
    out.push(event("message_stop", &json!({"type": "message_stop"})));
    out
}
