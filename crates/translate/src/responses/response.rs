//! Response objects: the envelope every event of one response shares, the usage in
//! Responses terms, and a `chat.completion` → a Response.

use jusinfer_wire::responses::ResponseCreateParams;
use serde_json::{json, Map, Value};

/// The id of output item `n` of response `response_id`, with `prefix` (`msg`, `fc`, `rs`).
/// Derived from the response's id, so unique wherever it is.
pub fn item_id(prefix: &str, response_id: &str, n: usize) -> String {
    format!(
        "{prefix}_{}{n:02x}",
        response_id.strip_prefix("resp_").unwrap_or(response_id)
    )
}

/// What identifies a response beyond the request.
#[derive(Debug, Clone, Default)]
pub struct Meta {
    /// `resp_…`.
    pub id: String,
    pub created_at: u64,
    /// The model name the client asked for.
    pub model: String,
}

/// `v`, or `default` when absent or null.
fn or(v: Option<Value>, default: Value) -> Value {
    v.filter(|v| !v.is_null()).unwrap_or(default)
}

/// The Response object before any output: `status: in_progress`, the request's settings
/// echoed with OpenAI's defaults for those it left out.
pub fn envelope(req: &ResponseCreateParams, meta: &Meta) -> Map<String, Value> {
    let rest = |k: &str| req.rest.get(k).cloned();
    let string = |s: &Option<String>| s.clone().map(Value::String);
    let number = |n: &Option<serde_json::Number>| n.clone().map(Value::Number);
    let reasoning = req.reasoning.as_ref();
    let format = req
        .text
        .as_ref()
        .and_then(|t| t.get("format"))
        .filter(|f| !f.is_null())
        .cloned()
        .unwrap_or_else(|| json!({"type": "text"}));
    let verbosity = req
        .text
        .as_ref()
        .and_then(|t| t.get("verbosity"))
        .filter(|v| v.is_string())
        .cloned()
        .unwrap_or_else(|| json!("medium"));
    // Function tools as OpenAI echoes them: `strict` (true unless the client said) and
    // `description` always present.
    let tools = match &req.tools {
        Some(tools) => Value::Array(
            tools
                .iter()
                .map(|t| {
                    let mut t = t.clone();
                    let function = t.get("type").and_then(Value::as_str) == Some("function");
                    if let Some(o) = t.as_object_mut().filter(|_| function) {
                        o.entry("description").or_insert(Value::Null);
                        if !o.get("strict").is_some_and(Value::is_boolean) {
                            o.insert("strict".into(), json!(true));
                        }
                    }
                    t
                })
                .collect(),
        ),
        None => json!([]),
    };
    // Every field OpenAI's current API sends, in its order: strict clients (zod schemas,
    // generated types, the Open Responses suite) reject an object that lacks one.
    let v = json!({
        "id": meta.id,
        "object": "response",
        "created_at": meta.created_at,
        "status": "in_progress",
        "background": false,
        "completed_at": null,
        "error": null,
        "frequency_penalty": or(rest("frequency_penalty"), json!(0.0)),
        "incomplete_details": null,
        "instructions": or(req.instructions.clone(), Value::Null),
        "max_output_tokens": or(req.max_output_tokens.map(|n| json!(n)), Value::Null),
        "max_tool_calls": or(rest("max_tool_calls"), Value::Null),
        "model": meta.model,
        "output": [],
        "parallel_tool_calls": or(req.parallel_tool_calls.map(Value::Bool), json!(true)),
        "presence_penalty": or(rest("presence_penalty"), json!(0.0)),
        "previous_response_id": or(string(&req.previous_response_id), Value::Null),
        "prompt_cache_key": or(string(&req.prompt_cache_key), Value::Null),
        "prompt_cache_retention": or(rest("prompt_cache_retention"), Value::Null),
        "reasoning": {"effort": reasoning.and_then(|r| r.effort.clone()), "summary": reasoning.and_then(|r| r.summary.clone())},
        "safety_identifier": or(string(&req.safety_identifier), Value::Null),
        "service_tier": or(string(&req.service_tier), json!("default")),
        "store": or(req.store.map(Value::Bool), json!(true)),
        "temperature": or(number(&req.temperature), json!(1.0)),
        "text": {"format": format, "verbosity": verbosity},
        "tool_choice": or(req.tool_choice.clone(), json!("auto")),
        "tools": tools,
        "top_logprobs": or(rest("top_logprobs"), json!(0)),
        "top_p": or(number(&req.top_p), json!(1.0)),
        "truncation": or(string(&req.truncation), json!("disabled")),
        "usage": null,
        "user": or(string(&req.user), Value::Null),
        "metadata": or(req.metadata.clone().map(Value::Object), json!({})),
    });
    match v {
        Value::Object(m) => m,
        _ => Map::new(),
    }
}

/// Chat usage → Responses usage (`cost` kept when present: the gateway's extension).
pub fn usage(chat: &Value) -> Value {
    let n = |v: &Value| v.as_u64().unwrap_or(0);
    let input = n(&chat["prompt_tokens"]);
    let output = n(&chat["completion_tokens"]);
    let mut u = json!({
        "input_tokens": input,
        "input_tokens_details": {
            "cached_tokens": n(&chat["prompt_tokens_details"]["cached_tokens"]),
            "cache_write_tokens": n(&chat["prompt_tokens_details"]["cache_write_tokens"]),
        },
        "output_tokens": output,
        "output_tokens_details": {"reasoning_tokens": n(&chat["completion_tokens_details"]["reasoning_tokens"])},
        "total_tokens": chat["total_tokens"].as_u64().unwrap_or(input + output),
    });
    if let Some(c) = chat.get("cost") {
        u["cost"] = c.clone();
    }
    u
}

/// `status` and `incomplete_details` for a Chat `finish_reason`.
pub fn status(finish: Option<&str>) -> (&'static str, Value) {
    match finish {
        Some("length") => ("incomplete", json!({"reason": "max_output_tokens"})),
        Some("content_filter") => ("incomplete", json!({"reason": "content_filter"})),
        _ => ("completed", Value::Null),
    }
}

/// Marks an `encrypted_content` that holds Anthropic thinking blocks (with their
/// signatures, or redacted data) as the gateway wrote them: sent back as `thinking_blocks`
/// when the conversation goes on, so Anthropic gets its blocks unchanged.
pub const THINKING_PREFIX: &str = "jusinfer.thinking.v1:";

/// Whether the client asked for reasoning summaries (`reasoning.summary`): Codex and the
/// AI SDK show only summaries, so the reasoning text is served as one.
pub fn wants_summary(envelope: &Map<String, Value>) -> bool {
    envelope
        .get("reasoning")
        .and_then(|r| r.get("summary"))
        .is_some_and(Value::is_string)
}

/// Sets `status`, and `completed_at` (now) when it is `completed`.
pub fn set_status(envelope: &mut Map<String, Value>, status: &str) {
    envelope.insert("status".into(), json!(status));
    if status == "completed" {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        envelope.insert("completed_at".into(), json!(now));
    }
}

/// A reasoning output item holding raw reasoning text (open models' `reasoning_content`,
/// Anthropic thinking) and, when the upstream signed it, the thinking blocks. `summary`:
/// the text is the item's summary (the client asked for one) rather than its content.
pub fn reasoning_item(id: &str, text: &str, blocks: &[Value], summary: bool) -> Value {
    let mut item = json!({"id": id, "type": "reasoning", "summary": []});
    if !text.is_empty() {
        if summary {
            item["summary"] = json!([{"type": "summary_text", "text": text}]);
        } else {
            item["content"] = json!([{"type": "reasoning_text", "text": text}]);
        }
    }
    if !blocks.is_empty() {
        item["encrypted_content"] = json!(format!(
            "{THINKING_PREFIX}{}",
            Value::Array(blocks.to_vec())
        ));
    }
    item
}

/// The thinking blocks a reasoning item carries ([`THINKING_PREFIX`]), if any.
pub fn thinking_blocks(item: &Value) -> Option<Vec<Value>> {
    let s = item["encrypted_content"]
        .as_str()?
        .strip_prefix(THINKING_PREFIX)?;
    serde_json::from_str::<Vec<Value>>(s).ok()
}

/// A message output item; `parts` are `output_text` / `refusal` parts.
pub fn message_item(id: &str, status: &str, parts: Vec<Value>) -> Value {
    json!({"id": id, "type": "message", "status": status, "content": parts, "role": "assistant"})
}

pub fn text_part(text: &str) -> Value {
    json!({"type": "output_text", "annotations": [], "logprobs": [], "text": text})
}

pub fn refusal_part(text: &str) -> Value {
    json!({"type": "refusal", "refusal": text})
}

pub fn call_item(id: &str, status: &str, call_id: &str, name: &str, arguments: &str) -> Value {
    json!({"id": id, "type": "function_call", "status": status, "arguments": arguments,
           "call_id": call_id, "name": name})
}

/// A `chat.completion` → the Response: output items in order reasoning, message, calls.
pub fn from_chat(completion: &Map<String, Value>, mut envelope: Map<String, Value>) -> Value {
    let id = envelope
        .get("id")
        .and_then(Value::as_str)
        .unwrap_or("resp_")
        .to_owned();
    let choice = completion
        .get("choices")
        .and_then(Value::as_array)
        .and_then(|c| c.first())
        .cloned()
        .unwrap_or(Value::Null);
    let msg = &choice["message"];
    let finish = choice["finish_reason"].as_str();
    let (status, incomplete) = status(finish);
    let mut output = Vec::new();
    let reasoning = msg
        .get("reasoning_content")
        .or_else(|| msg.get("reasoning"))
        .and_then(Value::as_str)
        .unwrap_or("");
    let blocks = msg["thinking_blocks"]
        .as_array()
        .map_or(&[][..], Vec::as_slice);
    if !reasoning.is_empty() || !blocks.is_empty() {
        output.push(reasoning_item(
            &item_id("rs", &id, output.len()),
            reasoning,
            blocks,
            wants_summary(&envelope),
        ));
    }
    let mut parts = Vec::new();
    if let Some(t) = msg["content"].as_str().filter(|s| !s.is_empty()) {
        parts.push(text_part(t));
    }
    if let Some(r) = msg["refusal"].as_str().filter(|s| !s.is_empty()) {
        parts.push(refusal_part(r));
    }
    if !parts.is_empty() {
        output.push(message_item(
            &item_id("msg", &id, output.len()),
            status,
            parts,
        ));
    }
    for call in msg["tool_calls"].as_array().map_or(&[][..], Vec::as_slice) {
        let f = &call["function"];
        output.push(call_item(
            &item_id("fc", &id, output.len()),
            "completed",
            call["id"].as_str().unwrap_or(""),
            f["name"].as_str().unwrap_or(""),
            f["arguments"].as_str().unwrap_or(""),
        ));
    }
    set_status(&mut envelope, status);
    envelope.insert("incomplete_details".into(), incomplete);
    envelope.insert("output".into(), Value::Array(output));
    if let Some(u) = completion.get("usage").filter(|u| u.is_object()) {
        envelope.insert("usage".into(), usage(u));
    }
    Value::Object(envelope)
}

/// The `output_text` of a Response: every `output_text` part of its message items, in
/// order (what the SDKs' `output_text` property computes).
pub fn output_text(response: &Value) -> String {
    let mut s = String::new();
    for item in response["output"].as_array().map_or(&[][..], Vec::as_slice) {
        if item["type"] == "message" {
            for p in item["content"].as_array().map_or(&[][..], Vec::as_slice) {
                if p["type"] == "output_text" {
                    s.push_str(p["text"].as_str().unwrap_or(""));
                }
            }
        }
    }
    s
}
