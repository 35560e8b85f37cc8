//! Turns a recorded non-streaming `chat.completion` into the stream an upstream of a given
//! style would have sent for it.

use bytes::Bytes;
use serde_json::{json, Value};

/// How an upstream streams tool calls.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Style {
    /// OpenAI's own shape: id and name first, arguments in small fragments.
    Standard,
    /// Every call sent whole in one chunk just before the finish chunk.
    Whole,
    /// Fragments without `index`, calls told apart by their ids.
    NoIndex,
    /// Name, id and type repeated on every fragment.
    RepeatNames,
    /// Every parallel call at index 0, told apart by id (as some compatible servers do).
    SameIndex,
    /// No ids at all, `arguments` sent as a JSON object, finish_reason `stop`.
    Sloppy,
}

impl Style {
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "standard" => Self::Standard,
            "whole" => Self::Whole,
            "noindex" => Self::NoIndex,
            "repeat" => Self::RepeatNames,
            "sameindex" => Self::SameIndex,
            "sloppy" => Self::Sloppy,
            _ => return None,
        })
    }
}

fn frame(v: &Value) -> Bytes {
    jusinfer_sse::encode_bytes(None, v.to_string().as_bytes())
}

/// The frames of the stream, `data: [DONE]` included; usage only when `include_usage`.
pub fn streamify(completion: &Value, style: Style, include_usage: bool) -> Vec<Bytes> {
    let meta = |choices: Value| {
        json!({
            "id": completion["id"], "object": "chat.completion.chunk",
            "created": completion["created"], "model": completion["model"],
            "system_fingerprint": completion.get("system_fingerprint").cloned().unwrap_or(Value::Null),
            "choices": choices,
        })
    };
    let msg = &completion["choices"][0]["message"];
    let mut finish = completion["choices"][0]["finish_reason"].clone();
    let mut out = vec![frame(&meta(json!([{
        "index": 0, "delta": {"role": "assistant", "content": if msg["content"].is_string() { json!("") } else { Value::Null }},
        "logprobs": null, "finish_reason": null
    }])))];
    if let Some(text) = msg["content"].as_str() {
        for word in text.split_inclusive(' ') {
            out.push(frame(&meta(json!([{"index": 0, "delta": {"content": word}, "logprobs": null, "finish_reason": null}]))));
        }
    }
    let calls = msg["tool_calls"].as_array().cloned().unwrap_or_default();
    let delta_chunk = |tc: Value| {
        meta(
            json!([{"index": 0, "delta": {"tool_calls": [tc]}, "logprobs": null, "finish_reason": null}]),
        )
    };
    match style {
        Style::Whole => {
            let whole: Vec<Value> = calls
                .iter()
                .enumerate()
                .map(|(i, c)| json!({"index": i, "id": c["id"], "type": "function", "function": c["function"]}))
                .collect();
            if !whole.is_empty() {
                out.push(frame(&meta(json!([{"index": 0, "delta": {"tool_calls": whole}, "logprobs": null, "finish_reason": null}]))));
            }
        }
        _ => {
            for (i, c) in calls.iter().enumerate() {
                let name = &c["function"]["name"];
                let args = c["function"]["arguments"].as_str().unwrap_or_default();
                let pieces = split_args(args);
                let index = if style == Style::SameIndex { 0 } else { i };
                let mut first = json!({"index": index, "id": c["id"], "type": "function", "function": {"name": name, "arguments": ""}});
                match style {
                    Style::NoIndex => {
                        if let Some(o) = first.as_object_mut() {
                            o.remove("index");
                        }
                    }
                    Style::Sloppy => {
                        if let Some(o) = first.as_object_mut() {
                            o.remove("id");
                            o.remove("type");
                        }
                        // Whole arguments as an object, in the first fragment.
                        first["function"]["arguments"] =
                            serde_json::from_str(args).unwrap_or(Value::Null);
                        out.push(frame(&delta_chunk(first)));
                        continue;
                    }
                    _ => {}
                }
                out.push(frame(&delta_chunk(first)));
                for p in pieces {
                    let frag = match style {
                        Style::Standard => json!({"index": index, "function": {"arguments": p}}),
                        Style::NoIndex => json!({"id": c["id"], "function": {"arguments": p}}),
                        Style::RepeatNames => {
                            json!({"index": index, "id": c["id"], "type": "function", "function": {"name": name, "arguments": p}})
                        }
                        Style::SameIndex => {
                            json!({"index": 0, "id": c["id"], "function": {"arguments": p}})
                        }
                        Style::Whole | Style::Sloppy => continue,
                    };
                    out.push(frame(&delta_chunk(frag)));
                }
            }
        }
    }
    if style == Style::Sloppy && finish == "tool_calls" {
        finish = json!("stop");
    }
    out.push(frame(&meta(
        json!([{"index": 0, "delta": {}, "logprobs": null, "finish_reason": finish}]),
    )));
    if include_usage {
        let mut u = meta(json!([]));
        u["usage"] = completion["usage"].clone();
        out.push(frame(&u));
    }
    out.push(Bytes::from_static(b"data: [DONE]\n\n"));
    out
}

/// Splits argument text into uneven fragments, as models emit them.
fn split_args(args: &str) -> Vec<String> {
    let chars: Vec<char> = args.chars().collect();
    let mut out = Vec::new();
    let mut i = 0;
    let mut step = 1;
    while i < chars.len() {
        let end = (i + step).min(chars.len());
        out.push(chars[i..end].iter().collect());
        i = end;
        step = step % 5 + 2;
    }
    out
}
