//! A `chat.completion` → a Gemini `GenerateContentResponse`.
//!
//! One candidate per choice: thought parts first (from `thinking_blocks` with their
//! signatures, else `reasoning_content`; only when the client asked for thoughts), then the
//! text, then one `functionCall` part per tool call (arguments parsed into `args`, the
//! call's id kept as `id`). `finishReason` from `finish_reason` (tool calls are `STOP`, as
//! Gemini says); `usageMetadata` split Gemini's way (thoughts apart from the candidates,
//! the prompt including its cached tokens).

use serde_json::{json, Map, Value};

/// Chat `finish_reason` → Gemini `finishReason`.
pub fn finish_reason(finish: Option<&str>) -> &'static str {
    match finish {
        Some("length") => "MAX_TOKENS",
        Some("content_filter") => "SAFETY",
        _ => "STOP",
    }
}

/// Chat `usage` → `usageMetadata`.
pub fn usage_metadata(u: &Value) -> Value {
    let get = |path: &[&str]| -> u64 {
        let mut v = Some(u);
        for p in path {
            v = v.and_then(|x| x.get(*p));
        }
        v.and_then(Value::as_u64).unwrap_or(0)
    };
    let prompt = get(&["prompt_tokens"]);
    let completion = get(&["completion_tokens"]);
    let thoughts = get(&["completion_tokens_details", "reasoning_tokens"]).min(completion);
    let cached = get(&["prompt_tokens_details", "cached_tokens"]);
    let mut m = Map::new();
    m.insert("promptTokenCount".into(), json!(prompt));
    m.insert("candidatesTokenCount".into(), json!(completion - thoughts));
    m.insert("totalTokenCount".into(), json!(prompt + completion));
    if cached > 0 {
        m.insert("cachedContentTokenCount".into(), json!(cached));
    }
    if thoughts > 0 {
        m.insert("thoughtsTokenCount".into(), json!(thoughts));
    }
    Value::Object(m)
}

/// Tool-call arguments (a JSON string) as Gemini `args` (an object; what is not one is
/// kept under `_raw`).
pub fn args(arguments: &str) -> Value {
    crate::messages::response::tool_input(arguments)
}

/// Translates `completion` for a client that asked for `model`; `thoughts`: it asked for
/// thought parts (`includeThoughts`).
pub fn chat_to_gemini(completion: &Map<String, Value>, model: &str, thoughts: bool) -> Value {
    let mut candidates = Vec::new();
    for choice in completion
        .get("choices")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        let m = &choice["message"];
        let mut parts = Vec::new();
        if thoughts {
            match m.get("thinking_blocks").and_then(Value::as_array) {
                Some(blocks) if !blocks.is_empty() => {
                    for b in blocks.iter().filter(|b| b["type"] == "thinking") {
                        let mut p = json!({"text": b["thinking"].as_str().unwrap_or(""),
                            "thought": true});
                        if let Some(s) = b["signature"].as_str().filter(|s| !s.is_empty()) {
                            p["thoughtSignature"] = json!(s);
                        }
                        parts.push(p);
                    }
                }
                _ => {
                    if let Some(r) = m
                        .get("reasoning_content")
                        .and_then(Value::as_str)
                        .filter(|s| !s.is_empty())
                    {
                        parts.push(json!({"text": r, "thought": true}));
                    }
                }
            }
        }
        if let Some(t) = m
            .get("content")
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty())
        {
            parts.push(json!({"text": t}));
        }
        for c in m
            .get("tool_calls")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            let f = &c["function"];
            let mut call = json!({"name": f["name"].as_str().unwrap_or(""),
                "args": args(f["arguments"].as_str().unwrap_or(""))});
            if let Some(id) = c["id"].as_str().filter(|s| !s.is_empty()) {
                call["id"] = json!(id);
            }
            parts.push(json!({"functionCall": call}));
        }
        candidates.push(json!({
            "content": {"parts": parts, "role": "model"},
            "finishReason": finish_reason(choice["finish_reason"].as_str()),
            "index": choice["index"].as_u64().unwrap_or(0),
        }));
    }
    let mut out = Map::new();
    out.insert("candidates".into(), Value::Array(candidates));
    if let Some(u) = completion.get("usage").filter(|u| u.is_object()) {
        out.insert("usageMetadata".into(), usage_metadata(u));
    }
    out.insert("modelVersion".into(), json!(model));
    if let Some(id) = completion.get("id").and_then(Value::as_str) {
        out.insert("responseId".into(), json!(id));
    }
    Value::Object(out)
}
