//! A Responses request → a Chat Completions request.
//!
//! [`input_items`] turns `input` (a string, or items) into the items a stored response
//! keeps: messages with typed content parts, `function_call`, `function_call_output` and
//! `reasoning` items, each with an `id`. [`to_chat`] turns the whole conversation (earlier
//! turns rebuilt from `previous_response_id`, then this turn's items) into Chat messages:
//! `instructions` first as a system message; message items by role (`input_text` /
//! `output_text` → text, `input_image` → `image_url`); consecutive `function_call` items
//! → one assistant message with `tool_calls` (`call_id` → `id`); `function_call_output` →
//! a `tool` message; reasoning items are the model's own earlier output and are not sent
//! back. Function tools get Chat's `function` wrapper, `tool_choice` maps one to one, `text.format` becomes `response_format`,
//! `max_output_tokens` becomes `max_completion_tokens` (OpenAI) or `max_tokens`,
//! `reasoning.effort` becomes `reasoning_effort`. What Chat cannot express (hosted tools,
//! `truncation: auto`, `include` other than `reasoning.encrypted_content`, file inputs, …)
//! is dropped and named.

use std::collections::HashSet;

use jusinfer_wire::responses::ResponseCreateParams;
use serde_json::{json, Map, Value};

pub use crate::messages::request::{Error, Translated};

fn bad(param: impl Into<String>, message: impl Into<String>) -> Error {
    Error {
        message: message.into(),
        param: param.into(),
    }
}

/// Fields of the request that are the gateway's business, or have no Chat counterpart
/// worth naming (they change nothing the model sees).
const KEPT_BY_GATEWAY: &[&str] = &[
    "model",
    "input",
    "instructions",
    "tools",
    "tool_choice",
    "parallel_tool_calls",
    "text",
    "temperature",
    "top_p",
    "max_output_tokens",
    "reasoning",
    "metadata",
    "store",
    "previous_response_id",
    "stream",
    "stream_options",
    "user",
    "service_tier",
    "safety_identifier",
    "prompt_cache_key",
    "seed",
    "include",
    "truncation",
];

/// Content parts of a message item in their typed form (`input_text` for the user's side,
/// `output_text` for the assistant's).
fn typed_content(role: &str, content: &Value, at: &str) -> Result<Value, Error> {
    match content {
        Value::String(s) => {
            let kind = if role == "assistant" {
                "output_text"
            } else {
                "input_text"
            };
            Ok(if kind == "output_text" {
                json!([{"type": kind, "text": s, "annotations": []}])
            } else {
                json!([{"type": kind, "text": s}])
            })
        }
        Value::Array(parts) => Ok(Value::Array(parts.clone())),
        _ => Err(bad(
            format!("{at}.content"),
            "content must be a string or an array of content parts",
        )),
    }
}

/// `input` as stored items, each with an `id` (`make_id(prefix)` mints them).
pub fn input_items(
    req: &ResponseCreateParams,
    mut make_id: impl FnMut(&str) -> String,
) -> Result<Vec<Value>, Error> {
    let items = match &req.input {
        None | Some(Value::Null) => return Ok(Vec::new()),
        Some(Value::String(s)) => {
            return Ok(vec![json!({
                "id": make_id("msg"), "type": "message", "role": "user", "status": "completed",
                "content": [{"type": "input_text", "text": s}],
            })])
        }
        Some(Value::Array(a)) => a,
        Some(_) => {
            return Err(bad(
                "input",
                "input must be a string or an array of input items",
            ))
        }
    };
    let mut out = Vec::with_capacity(items.len());
    for (i, item) in items.iter().enumerate() {
        let at = format!("input[{i}]");
        let Some(obj) = item.as_object() else {
            return Err(bad(at, "each input item must be an object"));
        };
        let kind = obj
            .get("type")
            .and_then(Value::as_str)
            .unwrap_or(if obj.contains_key("role") {
                "message"
            } else {
                ""
            });
        let mut o = obj.clone();
        match kind {
            "message" => {
                let role = obj.get("role").and_then(Value::as_str).ok_or_else(|| {
                    bad(format!("{at}.role"), "a message item needs a `role`")
                })?;
                if !matches!(role, "user" | "assistant" | "system" | "developer") {
                    return Err(bad(
                        format!("{at}.role"),
                        format!("unknown role {role:?}: expected user, assistant, system or developer"),
                    ));
                }
                let content = obj.get("content").ok_or_else(|| {
                    bad(format!("{at}.content"), "a message item needs `content`")
                })?;
                o.insert("type".into(), json!("message"));
                o.insert("content".into(), typed_content(role, content, &at)?);
                o.entry("status").or_insert(json!("completed"));
                if !o.get("id").is_some_and(Value::is_string) {
                    o.insert("id".into(), json!(make_id("msg")));
                }
            }
            "function_call" => {
                for f in ["call_id", "name"] {
                    if !obj.get(f).is_some_and(Value::is_string) {
                        return Err(bad(
                            format!("{at}.{f}"),
                            format!("a function_call item needs `{f}`"),
                        ));
                    }
                }
                if !o.get("arguments").is_some_and(Value::is_string) {
                    o.insert("arguments".into(), json!(""));
                }
                if !o.get("status").is_some_and(Value::is_string) {
                    o.insert("status".into(), json!("completed"));
                }
                if !o.get("id").is_some_and(Value::is_string) {
                    o.insert("id".into(), json!(make_id("fc")));
                }
            }
            "function_call_output" => {
                if !obj.get("call_id").is_some_and(Value::is_string) {
                    return Err(bad(
                        format!("{at}.call_id"),
                        "a function_call_output item needs `call_id`",
                    ));
                }
                if !obj.contains_key("output") {
                    return Err(bad(
                        format!("{at}.output"),
                        "a function_call_output item needs `output`",
                    ));
                }
                if !o.get("status").is_some_and(Value::is_string) {
                    o.insert("status".into(), json!("completed"));
                }
                if !o.get("id").is_some_and(Value::is_string) {
                    o.insert("id".into(), json!(make_id("fco")));
                }
            }
            "reasoning" => {
                if !o.get("id").is_some_and(Value::is_string) {
                    o.insert("id".into(), json!(make_id("rs")));
                }
            }
            // Tools declared mid-conversation (Codex): they join the request's tools.
            "additional_tools" => {
                if !obj.get("tools").is_some_and(Value::is_array) {
                    return Err(bad(
                        format!("{at}.tools"),
                        "an additional_tools item needs `tools` (an array)",
                    ));
                }
                if !o.get("id").is_some_and(Value::is_string) {
                    o.insert("id".into(), json!(make_id("at")));
                }
            }
            "item_reference" => {
                return Err(bad(
                    at,
                    "item_reference items are not supported: send the item itself, or use previous_response_id",
                ))
            }
            other => {
                return Err(bad(
                    format!("{at}.type"),
                    format!("input items of type {other:?} cannot be served: expected message, function_call, function_call_output, reasoning, additional_tools or item_reference"),
                ))
            }
        }
        out.push(Value::Object(o));
    }
    Ok(out)
}

/// Text of a content part list (parts of other types skipped), joined by newlines.
fn joined_text(parts: &[Value]) -> String {
    parts
        .iter()
        .filter_map(|p| {
            p.get("text")
                .or_else(|| p.get("refusal"))
                .and_then(Value::as_str)
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// What the caller knows that the request does not say.
#[derive(Debug, Clone, Copy)]
pub struct Options<'a> {
    pub upstream_model: &'a str,
    /// The upstream is OpenAI's own API: `max_completion_tokens` (its newer models refuse
    /// `max_tokens`).
    pub openai: bool,
    /// The Chat request goes on to Anthropic: reasoning items that carry thinking blocks
    /// send them back as the next assistant message's `thinking_blocks` (Anthropic needs
    /// its signed blocks before a turn's `tool_use`).
    pub thinking: bool,
}

/// Chat content for a user / system message: a string when it is all text, else parts.
fn user_content(parts: &[Value], at: &str, dropped: &mut Vec<String>) -> Result<Value, Error> {
    let all_text = parts.iter().all(|p| {
        matches!(
            p.get("type").and_then(Value::as_str),
            Some("input_text" | "output_text" | "text")
        )
    });
    if all_text {
        return Ok(json!(joined_text(parts)));
    }
    let mut out = Vec::with_capacity(parts.len());
    for (j, p) in parts.iter().enumerate() {
        match p.get("type").and_then(Value::as_str) {
            Some("input_text" | "output_text" | "text") => {
                let text = p.get("text").and_then(Value::as_str).ok_or_else(|| {
                    bad(
                        format!("{at}.content[{j}].text"),
                        "a text part needs a string `text`",
                    )
                })?;
                out.push(json!({"type": "text", "text": text}));
            }
            Some("input_image") => {
                let Some(url) = p.get("image_url").and_then(Value::as_str) else {
                    dropped.push(format!("{at}.content[{j}].file_id"));
                    continue;
                };
                let mut image = json!({"url": url});
                if let Some(d) = p.get("detail").filter(|d| d.is_string()) {
                    image["detail"] = d.clone();
                }
                out.push(json!({"type": "image_url", "image_url": image}));
            }
            Some(other) => dropped.push(format!("{at}.content[{j}] ({other})")),
            None => {
                return Err(bad(
                    format!("{at}.content[{j}].type"),
                    "each content part needs a `type`",
                ))
            }
        }
    }
    Ok(Value::Array(out))
}

/// The conversation as Chat messages. `items` are stored-form items (see [`input_items`]).
fn messages(
    instructions: Option<&str>,
    items: &[Value],
    thinking: bool,
    dropped: &mut Vec<String>,
) -> Result<Vec<Value>, Error> {
    let mut out: Vec<Value> = Vec::with_capacity(items.len() + 1);
    // Thinking blocks waiting for the assistant message they belong to.
    let mut pending: Vec<Value> = Vec::new();
    let attach = |m: &mut Value, pending: &mut Vec<Value>| {
        if pending.is_empty() {
            return;
        }
        match m.get_mut("thinking_blocks").and_then(Value::as_array_mut) {
            Some(blocks) => blocks.append(pending),
            None => m["thinking_blocks"] = Value::Array(std::mem::take(pending)),
        }
    };
    if let Some(s) = instructions.filter(|s| !s.is_empty()) {
        out.push(json!({"role": "system", "content": s}));
    }
    for (i, item) in items.iter().enumerate() {
        let at = format!("input[{i}]");
        match item
            .get("type")
            .and_then(Value::as_str)
            .unwrap_or("message")
        {
            "message" => {
                let role = item.get("role").and_then(Value::as_str).unwrap_or("user");
                let parts = item
                    .get("content")
                    .and_then(Value::as_array)
                    .map_or(&[][..], Vec::as_slice);
                match role {
                    "assistant" => {
                        let mut m = json!({"role": "assistant", "content": joined_text(parts)});
                        attach(&mut m, &mut pending);
                        out.push(m);
                    }
                    "system" | "developer" => {
                        out.push(json!({"role": "system", "content": joined_text(parts)}));
                    }
                    _ => out.push(
                        json!({"role": "user", "content": user_content(parts, &at, dropped)?}),
                    ),
                }
            }
            "function_call" => {
                let call = json!({
                    "id": item.get("call_id").cloned().unwrap_or(json!("")),
                    "type": "function",
                    "function": {
                        "name": item.get("name").cloned().unwrap_or(json!("")),
                        "arguments": item.get("arguments").cloned().unwrap_or(json!("")),
                    },
                });
                // Calls made in one turn travel in one assistant message (with the turn's
                // text, when the turn had any).
                let joins = out
                    .last()
                    .is_some_and(|m| m.get("role").and_then(Value::as_str) == Some("assistant"));
                match out.last_mut().filter(|_| joins) {
                    Some(m) => {
                        attach(m, &mut pending);
                        match m.get_mut("tool_calls").and_then(Value::as_array_mut) {
                            Some(calls) => calls.push(call),
                            None => {
                                m["tool_calls"] = json!([call]);
                            }
                        }
                    }
                    None => {
                        let mut m =
                            json!({"role": "assistant", "content": null, "tool_calls": [call]});
                        attach(&mut m, &mut pending);
                        out.push(m);
                    }
                }
            }
            "function_call_output" => {
                let content = match item.get("output") {
                    Some(Value::String(s)) => json!(s),
                    Some(Value::Array(parts)) => {
                        for (j, p) in parts.iter().enumerate() {
                            let kind = p["type"].as_str().unwrap_or("?");
                            if !matches!(kind, "input_text" | "output_text" | "text") {
                                dropped.push(format!("{at}.output[{j}] ({kind})"));
                            }
                        }
                        json!(joined_text(parts))
                    }
                    Some(other) => json!(other.to_string()),
                    None => json!(""),
                };
                out.push(json!({
                    "role": "tool",
                    "tool_call_id": item.get("call_id").cloned().unwrap_or(json!("")),
                    "content": content,
                }));
            }
            // The model's own earlier reasoning: Chat has no way to send it back, but
            // Anthropic's signed thinking blocks go back with the turn they came with.
            "reasoning" => {
                if thinking {
                    if let Some(blocks) = super::response::thinking_blocks(item) {
                        pending.extend(blocks);
                    }
                }
            }
            // Its tools were added to the request's (see `to_chat`).
            "additional_tools" => {}
            other => dropped.push(format!("{at} ({other})")),
        }
    }
    Ok(out)
}

fn tools(req: &ResponseCreateParams, dropped: &mut Vec<String>) -> Result<Vec<Value>, Error> {
    let Some(list) = &req.tools else {
        return Ok(Vec::new());
    };
    let mut out = Vec::with_capacity(list.len());
    chat_tools(list, "tools", &mut out, &mut HashSet::new(), dropped)?;
    Ok(out)
}

/// Responses tools at `at` → Chat function tools, appended to `out`. A `namespace` tool
/// (Codex groups its tools so) contributes its function tools under their own names; a
/// name already taken keeps its first definition. Other kinds (hosted tools, `custom`
/// free-form tools) are dropped and named.
fn chat_tools(
    list: &[Value],
    at: &str,
    out: &mut Vec<Value>,
    names: &mut HashSet<String>,
    dropped: &mut Vec<String>,
) -> Result<(), Error> {
    for (i, t) in list.iter().enumerate() {
        match t.get("type").and_then(Value::as_str) {
            Some("function") => {
                let name = t.get("name").and_then(Value::as_str).ok_or_else(|| {
                    bad(format!("{at}[{i}].name"), "a function tool needs a `name`")
                })?;
                if !names.insert(name.to_owned()) {
                    dropped.push(format!("{at}[{i}] (duplicate name {name})"));
                    continue;
                }
                let mut f = Map::new();
                f.insert("name".into(), json!(name));
                if let Some(d) = t.get("description").filter(|d| d.is_string()) {
                    f.insert("description".into(), d.clone());
                }
                f.insert(
                    "parameters".into(),
                    t.get("parameters")
                        .filter(|p| p.is_object())
                        .cloned()
                        .unwrap_or_else(|| json!({"type": "object", "properties": {}})),
                );
                if let Some(s) = t.get("strict").filter(|s| s.is_boolean()) {
                    f.insert("strict".into(), s.clone());
                }
                out.push(json!({"type": "function", "function": f}));
            }
            Some("namespace") => {
                let inner = t.get("tools").and_then(Value::as_array).ok_or_else(|| {
                    bad(format!("{at}[{i}].tools"), "a namespace tool needs `tools`")
                })?;
                chat_tools(inner, &format!("{at}[{i}].tools"), out, names, dropped)?;
            }
            Some(other) => dropped.push(format!("{at}[{i}] ({other})")),
            None => return Err(bad(format!("{at}[{i}].type"), "each tool needs a `type`")),
        }
    }
    Ok(())
}

fn tool_choice(v: &Value, dropped: &mut Vec<String>) -> Result<Option<Value>, Error> {
    match v {
        Value::String(s) if matches!(s.as_str(), "auto" | "none" | "required") => {
            Ok(Some(v.clone()))
        }
        Value::Object(o) if o.get("type").and_then(Value::as_str) == Some("function") => {
            let name = o.get("name").and_then(Value::as_str).ok_or_else(|| {
                bad(
                    "tool_choice.name",
                    "tool_choice of type function needs `name`",
                )
            })?;
            Ok(Some(
                json!({"type": "function", "function": {"name": name}}),
            ))
        }
        Value::Null => Ok(None),
        Value::Object(o) => {
            let kind = o.get("type").and_then(Value::as_str).unwrap_or("?");
            dropped.push(format!("tool_choice ({kind})"));
            Ok(None)
        }
        _ => Err(bad(
            "tool_choice",
            "tool_choice must be auto, none, required or {\"type\":\"function\",\"name\":…}",
        )),
    }
}

fn response_format(
    text: &Map<String, Value>,
    dropped: &mut Vec<String>,
) -> Result<Option<Value>, Error> {
    if text.get("verbosity").is_some_and(|v| !v.is_null()) {
        dropped.push("text.verbosity".into());
    }
    let Some(format) = text.get("format").filter(|f| !f.is_null()) else {
        return Ok(None);
    };
    match format.get("type").and_then(Value::as_str) {
        Some("text") => Ok(None),
        Some("json_object") => Ok(Some(json!({"type": "json_object"}))),
        Some("json_schema") => {
            let name = format
                .get("name")
                .and_then(Value::as_str)
                .ok_or_else(|| bad("text.format.name", "a json_schema format needs `name`"))?;
            let schema = format
                .get("schema")
                .filter(|s| s.is_object())
                .ok_or_else(|| bad("text.format.schema", "a json_schema format needs `schema`"))?;
            let mut js = Map::new();
            js.insert("name".into(), json!(name));
            if let Some(d) = format.get("description").filter(|d| d.is_string()) {
                js.insert("description".into(), d.clone());
            }
            js.insert("schema".into(), schema.clone());
            if let Some(s) = format.get("strict").filter(|s| s.is_boolean()) {
                js.insert("strict".into(), s.clone());
            }
            Ok(Some(json!({"type": "json_schema", "json_schema": js})))
        }
        _ => Err(bad(
            "text.format.type",
            "text.format.type must be text, json_object or json_schema",
        )),
    }
}

/// The Chat request for a Responses request. `conversation` holds the earlier turns'
/// items (from `previous_response_id`) followed by this request's [`input_items`].
pub fn to_chat(
    req: &ResponseCreateParams,
    conversation: &[Value],
    opts: Options<'_>,
) -> Result<Translated, Error> {
    let mut dropped = Vec::new();
    let instructions = match &req.instructions {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) => Some(s.as_str()),
        Some(_) => return Err(bad("instructions", "instructions must be a string")),
    };
    let msgs = messages(instructions, conversation, opts.thinking, &mut dropped)?;
    if msgs.is_empty() {
        return Err(bad("input", "input must hold at least one item"));
    }
    let mut body = Map::new();
    body.insert("model".into(), json!(opts.upstream_model));
    body.insert("messages".into(), Value::Array(msgs));
    let mut tools = tools(req, &mut dropped)?;
    // Tools declared in the conversation (Codex's `additional_tools` items).
    let mut names: HashSet<String> = tools
        .iter()
        .filter_map(|t| t["function"]["name"].as_str().map(str::to_owned))
        .collect();
    for (k, item) in conversation.iter().enumerate() {
        if item.get("type").and_then(Value::as_str) == Some("additional_tools") {
            if let Some(list) = item.get("tools").and_then(Value::as_array) {
                let at = format!("input[{k}].tools");
                chat_tools(list, &at, &mut tools, &mut names, &mut dropped)?;
            }
        }
    }
    let has_tools = !tools.is_empty();
    if has_tools {
        body.insert("tools".into(), Value::Array(tools));
        if let Some(tc) = &req.tool_choice {
            if let Some(tc) = tool_choice(tc, &mut dropped)? {
                body.insert("tool_choice".into(), tc);
            }
        }
        if let Some(p) = req.parallel_tool_calls {
            body.insert("parallel_tool_calls".into(), json!(p));
        }
    }
    if let Some(text) = &req.text {
        if let Some(rf) = response_format(text, &mut dropped)? {
            body.insert("response_format".into(), rf);
        }
    }
    let scalars = [
        ("temperature", req.temperature.clone().map(Value::Number)),
        ("top_p", req.top_p.clone().map(Value::Number)),
        ("seed", req.seed.map(|s| json!(s))),
        ("user", req.user.clone().map(Value::String)),
        ("service_tier", req.service_tier.clone().map(Value::String)),
        (
            "safety_identifier",
            req.safety_identifier
                .clone()
                .filter(|_| opts.openai)
                .map(Value::String),
        ),
        (
            "prompt_cache_key",
            req.prompt_cache_key
                .clone()
                .filter(|_| opts.openai)
                .map(Value::String),
        ),
    ];
    for (k, v) in scalars {
        if let Some(v) = v {
            body.insert(k.into(), v);
        }
    }
    if let Some(n) = req.max_output_tokens {
        if n == 0 || n > u64::from(u32::MAX) {
            return Err(bad(
                "max_output_tokens",
                "max_output_tokens must be a positive integer",
            ));
        }
        let k = if opts.openai {
            "max_completion_tokens"
        } else {
            "max_tokens"
        };
        body.insert(k.into(), json!(n));
    }
    if let Some(e) = req.reasoning.as_ref().and_then(|r| r.effort.as_ref()) {
        body.insert("reasoning_effort".into(), json!(e));
        // `summary` is honoured by the response side: reasoning text is served as the
        // summary (see `response::wants_summary`).
    }
    // `reasoning.encrypted_content` is honoured (signed thinking travels in it); other
    // inclusions are not.
    for v in req.include.iter().flatten() {
        if v != "reasoning.encrypted_content" {
            dropped.push(format!("include ({v})"));
        }
    }
    if req.truncation.as_deref() == Some("auto") {
        dropped.push("truncation".into());
    }
    if req.stream == Some(true) {
        body.insert("stream".into(), json!(true));
        body.insert("stream_options".into(), json!({"include_usage": true}));
    }
    // Every field the gateway does not model is named (the typed ones are all carried or
    // are the gateway's business).
    for (k, v) in &req.rest {
        if !KEPT_BY_GATEWAY.contains(&k.as_str()) && !v.is_null() {
            dropped.push(k.clone());
        }
    }
    Ok(Translated {
        body: Value::Object(body),
        dropped,
    })
}
