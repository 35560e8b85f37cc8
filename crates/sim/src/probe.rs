//! The `probe` scenario: answers whatever the conformance probe (`jusinfer check`) asks
//! with the recorded real traffic that fits the request (text, a tool call, the answer
//! after a tool result, parallel calls, a length stop, JSON), and the named `fault=` that
//! breaks it the way real "compatible" providers break:
//!
//! | fault | what it does |
//! |---|---|
//! | `whole_noindex` | tool calls sent whole in one final chunk, without `index` |
//! | `bad_args` | tool-call argument fragments that do not join into JSON |
//! | `no_done` | no `data: [DONE]` |
//! | `double_finish` | the finish chunk sent twice |
//! | `no_usage` | no `usage` (body) and no usage chunk (stream) |
//! | `bad_errors` | 401 and 400 answered as plain text, not OpenAI's error shape |
//! | `json_ct` | streams sent as `content-type: application/json` |
//! | `split_line` | every `data:` line broken in two |

use bytes::Bytes;
use serde_json::{json, Value};

/// The key the probe uses to test authentication.
pub const BAD_KEY: &str = "sk-jusinfer-check-invalid-key-0000000000";

/// The Chat scenario that answers `req`.
pub fn plan(req: &Value) -> &'static str {
    let msgs = req["messages"].as_array().map_or(&[][..], Vec::as_slice);
    let last = msgs.last().cloned().unwrap_or(Value::Null);
    let has_tools = req["tools"].as_array().is_some_and(|t| !t.is_empty());
    let text = last["content"].as_str().unwrap_or("");
    let max = req["max_tokens"]
        .as_u64()
        .or_else(|| req["max_completion_tokens"].as_u64());
    let rf = req["response_format"]["type"].as_str().unwrap_or("text");
    if rf == "json_object" || rf == "json_schema" {
        "json"
    } else if last["role"] == "tool" {
        "answer"
    } else if has_tools && text.contains(" and ") {
        "parallel"
    } else if has_tools {
        "capital"
    } else if max.is_some_and(|m| m <= 16) {
        "length"
    } else {
        "text"
    }
}

/// The data JSON of an SSE frame, when it has one.
fn data(frame: &Bytes) -> Option<Value> {
    let s = std::str::from_utf8(frame).ok()?;
    let d = s.trim().strip_prefix("data:")?.trim();
    serde_json::from_str(d).ok()
}

fn frame(v: &Value) -> Bytes {
    Bytes::from(format!("data: {v}\n\n"))
}

/// Breaks a stream's frames by `fault`.
pub fn break_stream(fault: &str, mut frames: Vec<Bytes>) -> Vec<Bytes> {
    match fault {
        "no_done" => frames.retain(|f| !f.starts_with(b"data: [DONE]")),
        "no_usage" => frames.retain(|f| {
            data(f).is_none_or(|v| {
                !(v["usage"].is_object() && v["choices"].as_array().is_some_and(Vec::is_empty))
            })
        }),
        "double_finish" => {
            if let Some(i) = frames
                .iter()
                .position(|f| data(f).is_some_and(|v| v["choices"][0]["finish_reason"].is_string()))
            {
                let dup = frames[i].clone();
                frames.insert(i + 1, dup);
            }
        }
        "bad_args" => {
            let last = frames.iter().rposition(|f| {
                data(f).is_some_and(|v| {
                    v["choices"][0]["delta"]["tool_calls"][0]["function"]["arguments"]
                        .as_str()
                        .is_some_and(|a| !a.is_empty())
                })
            });
            if let Some(i) = last {
                if let Some(mut v) = data(&frames[i]) {
                    let a = v
                        .pointer_mut("/choices/0/delta/tool_calls/0/function/arguments")
                        .and_then(|a| a.as_str().map(str::to_owned));
                    if let Some(mut s) = a {
                        s.pop();
                        if let Some(slot) =
                            v.pointer_mut("/choices/0/delta/tool_calls/0/function/arguments")
                        {
                            *slot = json!(s);
                        }
                        frames[i] = frame(&v);
                    }
                }
            }
        }
        "whole_noindex" => {
            // Collect every call whole, drop the fragments, send all before the finish.
            let mut calls: Vec<Value> = Vec::new();
            let mut out = Vec::with_capacity(frames.len());
            let mut finish_at = None;
            for f in frames {
                let Some(mut v) = data(&f) else {
                    out.push(f);
                    continue;
                };
                let Some(d) = v
                    .get_mut("choices")
                    .and_then(|c| c.get_mut(0))
                    .and_then(|c| c.get_mut("delta"))
                else {
                    out.push(f);
                    continue;
                };
                if let Some(tcs) = d.get("tool_calls").and_then(Value::as_array).cloned() {
                    for tc in tcs {
                        let i = tc["index"].as_u64().unwrap_or(0) as usize;
                        if calls.len() <= i {
                            calls.resize(
                                i + 1,
                                json!({"type": "function", "function": {"arguments": ""}}),
                            );
                        }
                        let c = &mut calls[i];
                        if let Some(id) = tc["id"].as_str() {
                            c["id"] = json!(id);
                        }
                        if let Some(n) = tc["function"]["name"].as_str() {
                            c["function"]["name"] = json!(n);
                        }
                        let a = format!(
                            "{}{}",
                            c["function"]["arguments"].as_str().unwrap_or(""),
                            tc["function"]["arguments"].as_str().unwrap_or("")
                        );
                        c["function"]["arguments"] = json!(a);
                    }
                    if let Some(o) = d.as_object_mut() {
                        o.remove("tool_calls");
                    }
                    let empty = d
                        .as_object()
                        .is_some_and(|o| o.is_empty() || o.keys().all(|k| k == "role"));
                    if empty && !d.get("role").is_some_and(Value::is_string) {
                        continue;
                    }
                    out.push(frame(&v));
                    continue;
                }
                if finish_at.is_none() && v["choices"][0]["finish_reason"].is_string() {
                    finish_at = Some(out.len());
                }
                out.push(f);
            }
            if let (Some(at), false) = (finish_at, calls.is_empty()) {
                let whole = json!({"id": "chatcmpl-whole", "object": "chat.completion.chunk", "created": 1,
                    "model": "probe", "choices": [{"index": 0, "delta": {"tool_calls": calls}, "finish_reason": null}]});
                out.insert(at, frame(&whole));
            }
            return out;
        }
        "split_line" => {
            return frames
                .into_iter()
                .map(|f| {
                    let s = String::from_utf8_lossy(&f).into_owned();
                    match s.strip_prefix("data: {") {
                        Some(rest) if rest.len() > 8 => {
                            let cut = rest
                                .char_indices()
                                .map(|(i, _)| i)
                                .find(|i| *i >= rest.len() / 2)
                                .unwrap_or(0);
                            Bytes::from(format!("data: {{{}\n{}", &rest[..cut], &rest[cut..]))
                        }
                        _ => f,
                    }
                })
                .collect();
        }
        _ => {}
    }
    frames
}

/// Breaks a non-streaming body by `fault`.
pub fn break_body(fault: &str, body: Bytes) -> Bytes {
    if fault != "no_usage" {
        return body;
    }
    match serde_json::from_slice::<Value>(&body) {
        Ok(mut v) => {
            if let Some(o) = v.as_object_mut() {
                o.remove("usage");
            }
            Bytes::from(v.to_string())
        }
        Err(_) => body,
    }
}
