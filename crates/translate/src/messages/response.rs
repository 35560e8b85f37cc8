//! A `chat.completion` → an Anthropic Messages response.
//!
//! Content blocks in Anthropic's order: `thinking` (from `reasoning_content`), `text`, then
//! one `tool_use` per tool call with its arguments parsed into `input` (an empty string
//! becomes `{}`; arguments that are not a JSON object are kept under `_raw`, since
//! `input` must be an object). `stop_reason` from `finish_reason` (a turn with tool calls is
//! `tool_use`); usage split the Anthropic way (`input_tokens` excludes cache reads and
//! writes).

use serde_json::{json, Map, Value};

use super::stream::stop_reason;

/// Tool-call arguments (a JSON string) as an Anthropic `input` object.
pub fn tool_input(arguments: &str) -> Value {
    if arguments.trim().is_empty() {
        return json!({});
    }
    match serde_json::from_str::<Value>(arguments) {
        Ok(Value::Object(o)) => Value::Object(o),
        _ => json!({"_raw": arguments}),
    }
}

/// Chat `usage` → Anthropic `usage`.
pub fn usage(u: Option<&Value>) -> Value {
    let get = |path: &[&str]| -> u64 {
        let mut v = u;
        for p in path {
            v = v.and_then(|x| x.get(*p));
        }
        v.and_then(Value::as_u64).unwrap_or(0)
    };
    let prompt = get(&["prompt_tokens"]);
    let cached = get(&["prompt_tokens_details", "cached_tokens"]);
    let written = get(&["prompt_tokens_details", "cache_write_tokens"]);
    json!({
        "input_tokens": prompt.saturating_sub(cached).saturating_sub(written),
        "cache_creation_input_tokens": written,
        "cache_read_input_tokens": cached,
        "output_tokens": get(&["completion_tokens"]),
    })
}

/// Translates `completion` (a parsed `chat.completion`) for a client that asked for
/// `model`; `id` is the `msg_…` id to give it.
pub fn chat_to_messages(completion: &Map<String, Value>, model: &str, id: &str) -> Value {
    let choice = completion
        .get("choices")
        .and_then(Value::as_array)
        .and_then(|c| c.first());
    let message = choice.and_then(|c| c.get("message"));
    let mut content = Vec::new();
    if let Some(r) = message
        .and_then(|m| m.get("reasoning_content").or_else(|| m.get("reasoning")))
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
    {
        content.push(json!({"type": "thinking", "thinking": r, "signature": ""}));
    }
    if let Some(t) = message
        .and_then(|m| m.get("content"))
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
    {
        content.push(json!({"type": "text", "text": t}));
    }
    let refusal = message
        .and_then(|m| m.get("refusal"))
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty());
    if let Some(r) = refusal {
        content.push(json!({"type": "text", "text": r}));
    }
    let calls = message
        .and_then(|m| m.get("tool_calls"))
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or_default();
    for (i, call) in calls.iter().enumerate() {
        let f = call.get("function");
        let id = call
            .get("id")
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty())
            .map_or_else(|| format!("toolu_{id}_{i}"), super::stream::tool_id);
        content.push(json!({
            "type": "tool_use",
            "id": id,
            "name": f.and_then(|f| f.get("name")).and_then(Value::as_str).unwrap_or(""),
            "input": tool_input(f.and_then(|f| f.get("arguments")).and_then(Value::as_str).unwrap_or("")),
        }));
    }
    let finish = choice
        .and_then(|c| c.get("finish_reason"))
        .and_then(Value::as_str);
    json!({
        "id": id,
        "type": "message",
        "role": "assistant",
        "model": model,
        "content": content,
        "stop_reason": if refusal.is_some() { "refusal" } else { stop_reason(finish, !calls.is_empty()) },
        "stop_sequence": null,
        "usage": usage(completion.get("usage")),
    })
}
