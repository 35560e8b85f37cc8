//! OpenAI Chat Completions ⇄ Anthropic Messages.
//!
//! - [`request`]: a Chat request → a Messages request (plus the fields that had no faithful
//!   translation, and the JSON-mode tool when one was added).
//! - [`response`]: a Messages response → a `chat.completion`.
//! - [`stream`]: Messages stream events → `chat.completion.chunk` frames, incrementally.

pub mod cache;
pub mod request;
pub mod response;
pub mod stream;

/// JSON mode emulated with a forced tool: the tool's name, and whether the requested schema
/// was wrapped as `{"value": schema}` because Anthropic tool inputs must be objects.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JsonMode {
    pub tool_name: String,
    pub wrapped: bool,
}

/// The key a wrapped (non-object) JSON-mode schema is placed under.
pub const WRAPPED_KEY: &str = "value";

/// JSON mode's forced tool for `response_format` (`json_object` / `json_schema`): its
/// input schema (the requested one, under [`WRAPPED_KEY`] when not an object: tool inputs
/// are objects) and how its input reads back. `None` for any other format. Shared by the
/// Messages and Converse translations.
pub fn json_mode_tool(
    rf: &jusinfer_wire::chat::ResponseFormat,
) -> Option<(serde_json::Value, JsonMode)> {
    use serde_json::{json, Value};
    let (schema, tool_name) = match rf.kind.as_str() {
        "json_object" => (json!({"type": "object"}), "json_response".to_owned()),
        "json_schema" => {
            let js = rf.json_schema.as_ref();
            let schema = js
                .and_then(|s| s.schema.clone())
                .unwrap_or(json!({"type": "object"}));
            let name = js.map_or_else(
                || "json_response".to_owned(),
                |s| request::tool_name(&s.name),
            );
            (schema, name)
        }
        _ => return None,
    };
    let wrapped = schema.get("type").and_then(Value::as_str) != Some("object");
    let schema = if wrapped {
        json!({"type": "object", "properties": {WRAPPED_KEY: schema}, "required": [WRAPPED_KEY]})
    } else {
        schema
    };
    Some((schema, JsonMode { tool_name, wrapped }))
}

/// The JSON-mode tool's description.
pub const JSON_MODE_DESCRIPTION: &str = "Respond with a JSON value matching this schema.";

/// Anthropic `stop_reason` → OpenAI `finish_reason` (§4).
pub fn finish_reason(stop_reason: Option<&str>, json_mode: bool) -> &'static str {
    match stop_reason {
        Some("max_tokens" | "model_context_window_exceeded") => "length",
        Some("tool_use") if json_mode => "stop",
        Some("tool_use") => "tool_calls",
        Some("refusal") => "content_filter",
        _ => "stop",
    }
}

/// Anthropic usage → OpenAI usage: prompt tokens count input, cache reads and cache writes.
pub fn usage(u: &jusinfer_wire::anthropic::Usage) -> jusinfer_wire::chat::Usage {
    use jusinfer_wire::chat::{CompletionTokensDetails, PromptTokensDetails, Usage};
    let read = u.cache_read_input_tokens.unwrap_or(0);
    let write = u.cache_creation_input_tokens.unwrap_or(0);
    let prompt = u.input_tokens.unwrap_or(0) + read + write;
    let completion = u.output_tokens.unwrap_or(0);
    Usage {
        prompt_tokens: prompt,
        completion_tokens: completion,
        total_tokens: prompt + completion,
        prompt_tokens_details: Some(PromptTokensDetails {
            cached_tokens: read,
            audio_tokens: 0,
            cache_write_tokens: write,
        }),
        completion_tokens_details: Some(CompletionTokensDetails::default()),
        cost: jusinfer_wire::chat::Cost::Absent,
    }
}
