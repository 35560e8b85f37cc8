//! An Anthropic Messages request → a Chat Completions request.
//!
//! `system` (a string or text blocks) becomes one system message; each user turn's
//! `tool_result` blocks become `tool` messages (first, in order), the rest of the turn a
//! user message (text and image parts); an assistant turn's text becomes `content` and its
//! `tool_use` blocks `tool_calls` (input serialized as the arguments string). Tools become
//! function tools; `tool_choice` auto/any/tool/none become auto/required/named/none and
//! `disable_parallel_tool_use` becomes `parallel_tool_calls: false`; `stop_sequences` →
//! `stop`, `metadata.user_id` → `user`; streams ask for the usage chunk. A `system` entry
//! inside `messages` (Claude Code sends them) becomes a system message at its position.
//! `output_config.format` (or the older `output_format`) JSON schema → `response_format`,
//! `output_config.effort` → `reasoning_effort`. What has no Chat equivalent (`top_k`,
//! thinking blocks and settings, server tools, `cache_control`, block types this code does
//! not know, any top-level field not carried) is dropped and named in
//! [`Translated::dropped`].

use jusinfer_wire::anthropic::MessageCreateParams;
use serde_json::{json, Map, Value};

/// A translated request.
#[derive(Debug, Clone, PartialEq)]
pub struct Translated {
    pub body: Value,
    /// What was dropped, as request paths (for `x-jusinfer-dropped-params`).
    pub dropped: Vec<String>,
}

/// A request that cannot be translated: a 400 naming `param`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Error {
    pub message: String,
    pub param: String,
}

fn bad(param: impl Into<String>, message: impl Into<String>) -> Error {
    Error {
        message: message.into(),
        param: param.into(),
    }
}

fn text_of(blocks: &[Value]) -> String {
    blocks
        .iter()
        .filter(|b| b.get("type").and_then(Value::as_str) == Some("text"))
        .filter_map(|b| b.get("text").and_then(Value::as_str))
        .collect::<Vec<_>>()
        .join("\n")
}

fn image_part(b: &Value, at: &str) -> Result<Value, Error> {
    let src = b
        .get("source")
        .ok_or_else(|| bad(format!("{at}.source"), "an image block needs `source`"))?;
    let url = match src.get("type").and_then(Value::as_str) {
        Some("base64") => format!(
            "data:{};base64,{}",
            src.get("media_type")
                .and_then(Value::as_str)
                .unwrap_or("image/png"),
            src.get("data").and_then(Value::as_str).unwrap_or("")
        ),
        Some("url") => src
            .get("url")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_owned(),
        _ => {
            return Err(bad(
                format!("{at}.source.type"),
                "image sources must be `base64` or `url`",
            ))
        }
    };
    Ok(json!({"type": "image_url", "image_url": {"url": url}}))
}

/// The blocks of a message's `content` (a string is one text block).
fn blocks(content: &Value, at: &str) -> Result<Vec<Value>, Error> {
    match content {
        Value::String(s) => Ok(vec![json!({"type": "text", "text": s})]),
        Value::Array(a) => Ok(a.clone()),
        _ => Err(bad(
            at,
            "`content` must be a string or an array of content blocks",
        )),
    }
}

/// A `toolu_…` id as the upstream first wrote it (see
/// [`crate::messages::stream::tool_id`]).
fn upstream_tool_id(id: &str) -> &str {
    id.strip_prefix("toolu_")
        .filter(|s| !s.is_empty())
        .unwrap_or(id)
}

/// Dropped-item names with their indexes generalized (`messages[3].content[1]` →
/// `messages[].content[]`), deduplicated: the header stays short whatever the history.
pub(crate) fn generalize(dropped: Vec<String>) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for d in dropped {
        let mut g = String::with_capacity(d.len());
        let mut in_index = false;
        for c in d.chars() {
            match c {
                '[' => {
                    in_index = true;
                    g.push('[');
                }
                ']' => {
                    in_index = false;
                    g.push(']');
                }
                c if in_index && c.is_ascii_digit() => {}
                c => g.push(c),
            }
        }
        if !out.contains(&g) {
            out.push(g);
        }
    }
    out
}

/// Translates `req` (the client's JSON object) for `upstream_model`. `max_completion_tokens`:
/// the upstream wants OpenAI's newer name for the output limit (OpenAI's own API, whose
/// reasoning models refuse `max_tokens`).
pub fn messages_to_chat(
    req: &MessageCreateParams,
    upstream_model: &str,
    max_completion_tokens: bool,
) -> Result<Translated, Error> {
    let mut dropped = Vec::new();
    let mut out = Map::new();
    out.insert("model".into(), json!(upstream_model));
    let mut messages = Vec::new();
    match &req.system {
        None | Some(Value::Null) => {}
        Some(Value::String(s)) => messages.push(json!({"role": "system", "content": s})),
        Some(Value::Array(a)) => {
            if a.iter().any(|b| b.get("cache_control").is_some()) {
                dropped.push("system[].cache_control".to_owned());
            }
            messages.push(json!({"role": "system", "content": text_of(a)}));
        }
        Some(_) => return Err(bad("system", "`system` must be a string or text blocks")),
    }
    let turns = &req.messages;
    if turns.is_empty() {
        return Err(bad(
            "messages",
            "`messages` must contain at least one message",
        ));
    }
    let mut deferred: Vec<Value> = Vec::new();
    for (i, m) in turns.iter().enumerate() {
        let at = format!("messages[{i}]");
        let role = m.get("role").and_then(Value::as_str);
        let content = m
            .get("content")
            .ok_or_else(|| bad(format!("{at}.content"), "a message needs `content`"))?;
        let bs = blocks(content, &format!("{at}.content"))?;
        match role {
            Some("user") => {
                let start = messages.len();
                user_turn(&bs, &at, &mut messages, &mut dropped)?;
                // Held system entries go after this turn's tool results: Chat wants the
                // results right after the calls.
                let at_results_end = start
                    + messages[start..]
                        .iter()
                        .take_while(|m| m["role"] == "tool")
                        .count();
                messages.splice(at_results_end..at_results_end, deferred.drain(..));
            }
            Some("assistant") => {
                messages.append(&mut deferred);
                assistant_turn(&bs, &at, &mut messages, &mut dropped)?;
            }
            // A system entry mid-conversation (Claude Code sends them): a system message
            // at the same position, or after the tool results when it sits between tool
            // calls and their results.
            Some("system") => {
                let after_calls = messages
                    .last()
                    .is_some_and(|m| m.get("tool_calls").is_some());
                if after_calls || !deferred.is_empty() {
                    system_turn(&bs, &at, &mut deferred, &mut dropped);
                } else {
                    system_turn(&bs, &at, &mut messages, &mut dropped);
                }
            }
            _ => {
                return Err(bad(
                    format!("{at}.role"),
                    "`role` must be `user`, `assistant` or `system`",
                ))
            }
        }
    }
    messages.append(&mut deferred);
    out.insert("messages".into(), Value::Array(messages));
    let max_tokens = req
        .max_tokens
        .ok_or_else(|| bad("max_tokens", "`max_tokens` is required: a positive integer"))?;
    let field = if max_completion_tokens {
        "max_completion_tokens"
    } else {
        "max_tokens"
    };
    out.insert(field.into(), json!(max_tokens));
    for (k, v) in [("temperature", &req.temperature), ("top_p", &req.top_p)] {
        if let Some(v) = v {
            out.insert(k.into(), Value::Number(v.clone()));
        }
    }
    if let Some(s) = &req.stop_sequences {
        out.insert("stop".into(), json!(s));
    }
    if let Some(u) = req
        .metadata
        .as_ref()
        .and_then(|m| m.get("user_id"))
        .and_then(Value::as_str)
    {
        out.insert("user".into(), json!(u));
    }
    if req.stream == Some(true) {
        out.insert("stream".into(), json!(true));
        out.insert("stream_options".into(), json!({"include_usage": true}));
    }
    let tools = tools(req.tools.as_deref(), &mut dropped)?;
    let has_tools = !tools.is_empty();
    if has_tools {
        out.insert("tools".into(), Value::Array(tools));
    }
    if let Some(tc) = req.tool_choice.as_ref().filter(|v| !v.is_null()) {
        let kind = tc.get("type").and_then(Value::as_str);
        let choice = match kind {
            Some("auto") => json!("auto"),
            Some("any") => json!("required"),
            Some("none") => json!("none"),
            Some("tool") => {
                let name = tc.get("name").and_then(Value::as_str).ok_or_else(|| {
                    bad(
                        "tool_choice.name",
                        "`tool_choice` of type `tool` needs `name`",
                    )
                })?;
                json!({"type": "function", "function": {"name": name}})
            }
            _ => {
                return Err(bad(
                    "tool_choice.type",
                    "`tool_choice.type` must be `auto`, `any`, `tool` or `none`",
                ))
            }
        };
        if has_tools {
            out.insert("tool_choice".into(), choice);
        } else if matches!(kind, Some("any" | "tool")) {
            // Its tools were all dropped (server tools): say so rather than go silent.
            dropped.push("tool_choice".to_owned());
        }
        if has_tools && tc.get("disable_parallel_tool_use").and_then(Value::as_bool) == Some(true) {
            out.insert("parallel_tool_calls".into(), json!(false));
        }
    }
    // Structured output: `output_config.format` (and the older beta `output_format`).
    let config = req.output_config.as_ref();
    let format = config
        .and_then(|c| c.get("format"))
        .or(req.output_format.as_ref())
        .filter(|f| !f.is_null());
    if let Some(f) = format {
        out.insert("response_format".into(), response_format(f)?);
    }
    if let Some(e) = config
        .and_then(|c| c.get("effort"))
        .filter(|e| !e.is_null())
    {
        let effort = match e.as_str() {
            Some(e @ ("low" | "medium" | "high")) => e,
            // Chat's highest level.
            Some("max") => "high",
            _ => {
                return Err(bad(
                    "output_config.effort",
                    "`output_config.effort` must be `low`, `medium`, `high` or `max`",
                ))
            }
        };
        out.insert("reasoning_effort".into(), json!(effort));
    }
    if let Some(c) = config {
        for k in c.keys() {
            if !matches!(k.as_str(), "format" | "effort") && !c[k].is_null() {
                dropped.push(format!("output_config.{k}"));
            }
        }
    }
    if let Some(m) = &req.metadata {
        for k in m.keys() {
            if k != "user_id" && !m[k].is_null() {
                dropped.push(format!("metadata.{k}"));
            }
        }
    }
    // Every other top-level field is named, whatever it is (`top_k`, `thinking`,
    // `context_management`, fields newer than this code…): never dropped silently.
    for (k, v) in &req.rest {
        if !CARRIED.contains(&k.as_str()) && !v.is_null() {
            dropped.push(k.clone());
        }
    }
    Ok(Translated {
        body: Value::Object(out),
        dropped: generalize(dropped),
    })
}

/// The top-level request fields this translation carries over (all or in part; the parts
/// it cannot carry are named where they are read).
const CARRIED: &[&str] = &[
    "model",
    "messages",
    "system",
    "max_tokens",
    "temperature",
    "top_p",
    "stop_sequences",
    "metadata",
    "stream",
    "tools",
    "tool_choice",
    "output_config",
    "output_format",
];

/// An Anthropic output format (`{"type": "json_schema", "schema": …}`) → Chat's
/// `response_format`. Anthropic's format has no name; Chat requires one.
fn response_format(f: &Value) -> Result<Value, Error> {
    match f.get("type").and_then(Value::as_str) {
        Some("json_schema") => {
            let schema = f.get("schema").filter(|s| s.is_object()).ok_or_else(|| {
                bad(
                    "output_config.format.schema",
                    "a `json_schema` output format needs `schema` (an object)",
                )
            })?;
            let name = f.get("name").and_then(Value::as_str).unwrap_or("output");
            Ok(json!({"type": "json_schema",
                "json_schema": {"name": name, "schema": schema, "strict": true}}))
        }
        _ => Err(bad(
            "output_config.format.type",
            "`output_config.format.type` must be `json_schema`",
        )),
    }
}

/// A mid-conversation system entry: its text (a string or text blocks) as a system message.
fn system_turn(bs: &[Value], at: &str, messages: &mut Vec<Value>, dropped: &mut Vec<String>) {
    for (j, b) in bs.iter().enumerate() {
        let bat = format!("{at}.content[{j}]");
        if b.get("cache_control").is_some() {
            dropped.push(format!("{bat}.cache_control"));
        }
        if b.get("type").and_then(Value::as_str) != Some("text") {
            let kind = b.get("type").and_then(Value::as_str).unwrap_or("untyped");
            dropped.push(format!("{bat} ({kind})"));
        }
    }
    messages.push(json!({"role": "system", "content": text_of(bs)}));
}

fn user_turn(
    bs: &[Value],
    at: &str,
    messages: &mut Vec<Value>,
    dropped: &mut Vec<String>,
) -> Result<(), Error> {
    let mut parts = Vec::new();
    for (j, b) in bs.iter().enumerate() {
        let bat = format!("{at}.content[{j}]");
        if b.get("cache_control").is_some() {
            dropped.push(format!("{bat}.cache_control"));
        }
        match b.get("type").and_then(Value::as_str) {
            Some("text") => parts.push(json!({"type": "text",
                "text": b.get("text").and_then(Value::as_str).unwrap_or("")})),
            Some("image") => parts.push(image_part(b, &bat)?),
            Some("tool_result") => {
                let id = b
                    .get("tool_use_id")
                    .and_then(Value::as_str)
                    .ok_or_else(|| {
                        bad(
                            format!("{bat}.tool_use_id"),
                            "a tool_result needs `tool_use_id`",
                        )
                    })?;
                let mut text = match b.get("content") {
                    None | Some(Value::Null) => String::new(),
                    Some(Value::String(s)) => s.clone(),
                    Some(Value::Array(a)) => {
                        if a.iter()
                            .any(|x| x.get("type").and_then(Value::as_str) != Some("text"))
                        {
                            dropped.push(format!("{bat}.content (non-text parts)"));
                        }
                        text_of(a)
                    }
                    Some(_) => {
                        return Err(bad(
                            format!("{bat}.content"),
                            "tool_result content must be a string or blocks",
                        ))
                    }
                };
                if b.get("is_error").and_then(Value::as_bool) == Some(true) {
                    text = format!("Error: {text}");
                }
                messages.push(
                    json!({"role": "tool", "tool_call_id": upstream_tool_id(id), "content": text}),
                );
            }
            other => dropped.push(format!("{bat} ({})", other.unwrap_or("untyped"))),
        }
    }
    if !parts.is_empty() {
        let all_text = parts.iter().all(|p| p["type"] == "text");
        let content = if all_text {
            json!(parts
                .iter()
                .filter_map(|p| p["text"].as_str())
                .collect::<Vec<_>>()
                .join("\n"))
        } else {
            Value::Array(parts)
        };
        messages.push(json!({"role": "user", "content": content}));
    }
    Ok(())
}

fn assistant_turn(
    bs: &[Value],
    at: &str,
    messages: &mut Vec<Value>,
    dropped: &mut Vec<String>,
) -> Result<(), Error> {
    let mut text = Vec::new();
    let mut calls = Vec::new();
    for (j, b) in bs.iter().enumerate() {
        let bat = format!("{at}.content[{j}]");
        match b.get("type").and_then(Value::as_str) {
            Some("text") => text.push(
                b.get("text")
                    .and_then(Value::as_str)
                    .unwrap_or("")
                    .to_owned(),
            ),
            Some("tool_use") => {
                let id = b.get("id").and_then(Value::as_str).unwrap_or_default();
                let name = b
                    .get("name")
                    .and_then(Value::as_str)
                    .ok_or_else(|| bad(format!("{bat}.name"), "a tool_use block needs `name`"))?;
                let input = b.get("input").cloned().unwrap_or_else(|| json!({}));
                calls.push(json!({"id": upstream_tool_id(id), "type": "function",
                    "function": {"name": name, "arguments": input.to_string()}}));
            }
            other => dropped.push(format!("{bat} ({})", other.unwrap_or("untyped"))),
        }
    }
    let mut m = json!({"role": "assistant", "content": if text.is_empty() { Value::Null } else { json!(text.join("")) }});
    if !calls.is_empty() {
        m["tool_calls"] = Value::Array(calls);
    }
    if m["content"].is_null() && m.get("tool_calls").is_none() {
        m["content"] = json!("");
    }
    messages.push(m);
    Ok(())
}

fn tools(list: Option<&[Value]>, dropped: &mut Vec<String>) -> Result<Vec<Value>, Error> {
    let Some(list) = list else {
        return Ok(Vec::new());
    };
    let mut out = Vec::new();
    for (i, t) in list.iter().enumerate() {
        let kind = t.get("type").and_then(Value::as_str);
        if !matches!(kind, None | Some("custom")) {
            // Server tools (web search, bash, computer use...) run at Anthropic only.
            dropped.push(format!("tools[{i}] ({})", kind.unwrap_or("")));
            continue;
        }
        if t.get("cache_control").is_some() {
            dropped.push(format!("tools[{i}].cache_control"));
        }
        let name = t
            .get("name")
            .and_then(Value::as_str)
            .ok_or_else(|| bad(format!("tools[{i}].name"), "a tool needs `name`"))?;
        let mut f = json!({"name": name,
            "parameters": t.get("input_schema").cloned().unwrap_or_else(|| json!({"type": "object"}))});
        if let Some(d) = t.get("description").and_then(Value::as_str) {
            f["description"] = json!(d);
        }
        out.push(json!({"type": "function", "function": f}));
    }
    Ok(out)
}
