//! A Gemini API request (`generateContent`) → a Chat Completions request.
//!
//! `systemInstruction` becomes one system message; `user` turns user messages (text,
//! images and PDFs as data URLs, `fileData` as URLs), their `functionResponse` parts `tool`
//! messages first, in order; `model` turns assistant messages (text as `content`, thought
//! parts with a signature as `thinking_blocks` for Anthropic, `functionCall` parts as
//! `tool_calls` with the args serialized). Gemini's calls often have no id: one is minted
//! per call (`call_{turn}_{n}`), and each `functionResponse` takes the id of the call it
//! answers — its own `id` when it names one of the turn's calls, else the first call of its
//! name not yet answered. Function declarations become function tools (`parameters` in
//! Google's OpenAPI subset converted to JSON Schema); `functionCallingConfig` AUTO / ANY /
//! NONE becomes auto / required (a named tool when one name is allowed, only the allowed
//! tools when several are) / none. `generationConfig` maps field for field; the thinking
//! budget becomes a `reasoning_effort` (0: none asked; -1, dynamic: medium; up to 1,024:
//! low; up to 8,192: medium; more: high), `thinkingLevel` the effort of that name. What has
//! no Chat equivalent (`topK`, `safetySettings`, `cachedContent`, other tools, part kinds
//! this code does not know, any unknown field) is dropped and named in
//! [`Translated::dropped`].

use jusinfer_wire::gemini::{Content, GenerateContentRequest, GenerationConfig, Part};
use serde_json::{json, Map, Value};

pub use crate::messages::request::{Error, Translated};

fn bad(param: impl Into<String>, message: impl Into<String>) -> Error {
    Error {
        message: message.into(),
        param: param.into(),
    }
}

/// A call of the last model turn, waiting for its answer.
struct Pending {
    id: String,
    name: String,
    answered: bool,
}

/// Translates `req` for `model`; `stream` asks for a stream with its usage chunk;
/// `max_completion_tokens`: the upstream wants OpenAI's newer name for the output limit.
pub fn gemini_to_chat(
    req: &GenerateContentRequest,
    model: &str,
    stream: bool,
    max_completion_tokens: bool,
) -> Result<Translated, Error> {
    let mut dropped = Vec::new();
    let mut messages = Vec::new();
    if let Some(sys) = &req.system_instruction {
        let text = texts(&sys.parts, "systemInstruction", &mut dropped);
        if !text.is_empty() {
            messages.push(json!({"role": "system", "content": text}));
        }
    }
    let mut pending: Vec<Pending> = Vec::new();
    for (i, turn) in req.contents.iter().enumerate() {
        let at = format!("contents[{i}]");
        match turn.role.as_deref().unwrap_or("user") {
            "model" => messages.push(model_turn(turn, i, &at, &mut pending, &mut dropped)?),
            "user" | "function" => {
                user_turn(turn, &at, &mut pending, &mut messages, &mut dropped)?;
            }
            _ => {
                return Err(bad(
                    format!("{at}.role"),
                    "`role` must be `user` or `model`",
                ))
            }
        }
    }
    if !messages.iter().any(|m| m["role"] != "system") {
        return Err(bad("contents", "at least one content is required"));
    }
    let mut out = Map::new();
    out.insert("model".into(), json!(model));
    out.insert("messages".into(), Value::Array(messages));
    let names = tools(req, &mut out, &mut dropped)?;
    tool_config(req, &names, &mut out, &mut dropped)?;
    if let Some(g) = &req.generation_config {
        generation(g, max_completion_tokens, &mut out, &mut dropped)?;
    }
    if stream {
        out.insert("stream".into(), json!(true));
        out.insert("stream_options".into(), json!({"include_usage": true}));
    }
    for (k, v) in &req.rest {
        if !v.is_null() {
            dropped.push(k.clone());
        }
    }
    Ok(Translated {
        body: Value::Object(out),
        dropped: crate::messages::request::generalize(dropped),
    })
}

/// The text of `parts` (system instructions), joined; other parts named dropped.
fn texts(parts: &[Part], at: &str, dropped: &mut Vec<String>) -> String {
    let mut out = Vec::new();
    for (j, p) in parts.iter().enumerate() {
        match &p.text {
            Some(t) if p.thought != Some(true) => out.push(t.as_str()),
            _ => dropped.push(format!("{at}.parts[{j}]")),
        }
    }
    out.join("\n")
}

fn model_turn(
    turn: &Content,
    i: usize,
    at: &str,
    pending: &mut Vec<Pending>,
    dropped: &mut Vec<String>,
) -> Result<Value, Error> {
    pending.clear();
    let mut text = String::new();
    let mut calls = Vec::new();
    let mut thinking = Vec::new();
    let mut thought = String::new();
    for (j, p) in turn.parts.iter().enumerate() {
        if let Some(fc) = &p.function_call {
            let id = match fc.id.as_deref().filter(|s| !s.is_empty()) {
                Some(id) => id.to_owned(),
                None => format!("call_{i}_{}", calls.len()),
            };
            let args = match &fc.args {
                Value::Null => "{}".to_owned(),
                a => a.to_string(),
            };
            calls.push(json!({"id": id, "type": "function",
                "function": {"name": fc.name, "arguments": args}}));
            pending.push(Pending {
                id,
                name: fc.name.clone(),
                answered: false,
            });
        } else if p.thought == Some(true) {
            // Thought text up to a signature is one thinking block of an upstream that
            // needs it back (Anthropic's, as [`super::stream`] writes it: the text in
            // parts, the signature on a part of its own; the SDKs send it back URL-safe,
            // Anthropic wants its own alphabet); a bare summary is only read.
            thought.push_str(p.text.as_deref().unwrap_or(""));
            if let Some(sig) = &p.thought_signature {
                thinking.push(json!({"type": "thinking",
                    "thinking": std::mem::take(&mut thought),
                    "signature": crate::gemini::standard_base64(sig)}));
            }
        } else if let Some(t) = &p.text {
            text.push_str(t);
        } else {
            dropped.push(format!("{at}.parts[{j}]"));
        }
    }
    let mut m = Map::new();
    m.insert("role".into(), json!("assistant"));
    m.insert(
        "content".into(),
        if text.is_empty() && !calls.is_empty() {
            Value::Null
        } else {
            json!(text)
        },
    );
    if !calls.is_empty() {
        m.insert("tool_calls".into(), Value::Array(calls));
    }
    if !thinking.is_empty() {
        m.insert("thinking_blocks".into(), Value::Array(thinking));
    }
    Ok(Value::Object(m))
}

fn user_turn(
    turn: &Content,
    at: &str,
    pending: &mut [Pending],
    messages: &mut Vec<Value>,
    dropped: &mut Vec<String>,
) -> Result<(), Error> {
    let mut content = Vec::new();
    for (j, p) in turn.parts.iter().enumerate() {
        let at = format!("{at}.parts[{j}]");
        if let Some(fr) = &p.function_response {
            let slot = fr
                .id
                .as_deref()
                .and_then(|id| pending.iter().position(|c| c.id == id && !c.answered))
                .or_else(|| {
                    pending
                        .iter()
                        .position(|c| c.name == fr.name && !c.answered)
                })
                .ok_or_else(|| {
                    bad(
                        format!("{at}.functionResponse"),
                        format!(
                            "this functionResponse (`{}`) answers no functionCall of the turn before it",
                            fr.name
                        ),
                    )
                })?;
            pending[slot].answered = true;
            let body = match &fr.response {
                Value::String(s) => s.clone(),
                v => v.to_string(),
            };
            messages.push(json!({"role": "tool", "tool_call_id": pending[slot].id,
                "content": body}));
        } else if p.thought == Some(true) {
            dropped.push(at);
        } else if let Some(t) = &p.text {
            content.push(json!({"type": "text", "text": t}));
        } else if let Some(b) = &p.inline_data {
            let url = format!("data:{};base64,{}", b.mime_type, b.data);
            if b.mime_type.starts_with("image/") {
                content.push(json!({"type": "image_url", "image_url": {"url": url}}));
            } else if b.mime_type == "application/pdf" {
                content.push(json!({"type": "file",
                    "file": {"file_data": url, "filename": "document.pdf"}}));
            } else {
                dropped.push(format!("{at}.inlineData"));
            }
        } else if let Some(f) = &p.file_data {
            let image = f
                .mime_type
                .as_deref()
                .is_none_or(|m| m.starts_with("image/"));
            if image {
                content.push(json!({"type": "image_url", "image_url": {"url": f.file_uri}}));
            } else {
                dropped.push(format!("{at}.fileData"));
            }
        } else {
            dropped.push(at);
        }
    }
    if !content.is_empty() {
        let only_text = content.len() == 1 && content[0]["type"] == "text";
        let c = if only_text {
            content[0]["text"].clone()
        } else {
            Value::Array(content)
        };
        messages.push(json!({"role": "user", "content": c}));
    }
    Ok(())
}

/// Function declarations → Chat tools; the names declared.
fn tools(
    req: &GenerateContentRequest,
    out: &mut Map<String, Value>,
    dropped: &mut Vec<String>,
) -> Result<Vec<String>, Error> {
    let mut tools = Vec::new();
    let mut names = Vec::new();
    for (i, t) in req.tools.iter().flatten().enumerate() {
        for (j, f) in t.function_declarations.iter().enumerate() {
            let parameters = match (&f.parameters_json_schema, &f.parameters) {
                (Some(s), _) => s.clone(),
                (None, Some(s)) => json_schema(s),
                (None, None) => json!({"type": "object", "properties": {}}),
            };
            if f.name.is_empty() {
                return Err(bad(
                    format!("tools[{i}].functionDeclarations[{j}].name"),
                    "a function declaration needs a `name`",
                ));
            }
            let mut func = Map::new();
            func.insert("name".into(), json!(f.name));
            if let Some(d) = f.description.as_ref().filter(|d| !d.is_empty()) {
                func.insert("description".into(), json!(d));
            }
            func.insert("parameters".into(), parameters);
            tools.push(json!({"type": "function", "function": func}));
            names.push(f.name.clone());
        }
        for (k, v) in &t.rest {
            if !v.is_null() {
                dropped.push(format!("tools[{i}].{k}"));
            }
        }
    }
    if !tools.is_empty() {
        out.insert("tools".into(), Value::Array(tools));
    }
    Ok(names)
}

fn tool_config(
    req: &GenerateContentRequest,
    names: &[String],
    out: &mut Map<String, Value>,
    dropped: &mut Vec<String>,
) -> Result<(), Error> {
    let Some(tc) = &req.tool_config else {
        return Ok(());
    };
    let fc = &tc.function_calling_config;
    let allowed = fc.allowed_function_names.as_deref().unwrap_or_default();
    let choice = match fc.mode.as_str() {
        "" | "MODE_UNSPECIFIED" | "AUTO" => json!("auto"),
        "VALIDATED" => {
            dropped.push("toolConfig.functionCallingConfig.mode".into());
            json!("auto")
        }
        "NONE" => json!("none"),
        "ANY" => match allowed {
            [] => json!("required"),
            [one] => json!({"type": "function", "function": {"name": one}}),
            several => {
                // ANY among some: only those tools are offered, and one must be called.
                if let Some(Value::Array(tools)) = out.get_mut("tools") {
                    tools.retain(|t| {
                        t["function"]["name"]
                            .as_str()
                            .is_some_and(|n| several.iter().any(|a| a == n))
                    });
                }
                json!("required")
            }
        },
        _ => {
            return Err(bad(
                "toolConfig.functionCallingConfig.mode",
                "`mode` must be `AUTO`, `ANY`, `NONE` or `VALIDATED`",
            ))
        }
    };
    if let Some(unknown) = allowed.iter().find(|a| !names.contains(a)) {
        return Err(bad(
            "toolConfig.functionCallingConfig.allowedFunctionNames",
            format!("`{unknown}` is not a declared function"),
        ));
    }
    if !names.is_empty() {
        out.insert("tool_choice".into(), choice);
    }
    Ok(())
}

fn generation(
    g: &GenerationConfig,
    max_completion_tokens: bool,
    out: &mut Map<String, Value>,
    dropped: &mut Vec<String>,
) -> Result<(), Error> {
    let mut put = |k: &str, v: Value| {
        out.insert(k.into(), v);
    };
    if let Some(v) = g.max_output_tokens {
        let field = if max_completion_tokens {
            "max_completion_tokens"
        } else {
            "max_tokens"
        };
        put(field, json!(v));
    }
    if let Some(v) = g.temperature {
        put("temperature", json!(v));
    }
    if let Some(v) = g.top_p {
        put("top_p", json!(v));
    }
    if let Some(v) = &g.stop_sequences {
        put("stop", json!(v));
    }
    if let Some(v) = g.seed {
        put("seed", json!(v));
    }
    if let Some(v) = g.presence_penalty {
        put("presence_penalty", json!(v));
    }
    if let Some(v) = g.frequency_penalty {
        put("frequency_penalty", json!(v));
    }
    if let Some(n) = g.candidate_count.filter(|n| *n > 1) {
        put("n", json!(n));
    }
    if g.top_k.is_some() {
        dropped.push("generationConfig.topK".into());
    }
    let schema = match (&g.response_json_schema, &g.response_schema) {
        (Some(s), _) => Some(s.clone()),
        (None, Some(s)) => Some(json_schema(s)),
        (None, None) => None,
    };
    match (g.response_mime_type.as_deref(), schema) {
        (Some("application/json"), Some(schema)) => put(
            "response_format",
            json!({"type": "json_schema",
                "json_schema": {"name": "response", "schema": schema}}),
        ),
        (Some("application/json"), None) => put("response_format", json!({"type": "json_object"})),
        (None | Some("text/plain"), None) => {}
        (_, _) => dropped.push("generationConfig.responseMimeType".into()),
    }
    if let Some(t) = &g.thinking_config {
        let effort = match (t.thinking_level.as_deref(), t.thinking_budget) {
            (Some(l @ ("minimal" | "low" | "medium" | "high")), _) => Some(l),
            (Some(l), _) => {
                return Err(bad(
                    "generationConfig.thinkingConfig.thinkingLevel",
                    format!("thinkingLevel `{l}`: use `low` or `high`"),
                ))
            }
            (None, Some(0) | None) => None,
            (None, Some(b)) if b < 0 => Some("medium"),
            (None, Some(b)) if b <= 1024 => Some("low"),
            (None, Some(b)) if b <= 8192 => Some("medium"),
            (None, Some(_)) => Some("high"),
        };
        if let Some(e) = effort {
            put("reasoning_effort", json!(e));
        }
    }
    for (k, v) in &g.rest {
        if !v.is_null() && k != "responseModalities" && k != "response_modalities" {
            dropped.push(format!("generationConfig.{k}"));
        }
    }
    Ok(())
}

/// Google's `Schema` (the OpenAPI 3.0 subset: upper-case `type`, `nullable`) → JSON Schema.
/// Keys it does not know are kept as they are; `propertyOrdering` (an ordering hint) goes.
pub fn json_schema(s: &Value) -> Value {
    let Value::Object(o) = s else {
        return s.clone();
    };
    let mut out = Map::new();
    let nullable = o.get("nullable").and_then(Value::as_bool) == Some(true);
    for (k, v) in o {
        match k.as_str() {
            "type" => {
                let t = v
                    .as_str()
                    .map_or_else(|| v.clone(), |t| json!(t.to_ascii_lowercase()));
                let t = if nullable { json!([t, "null"]) } else { t };
                out.insert("type".into(), t);
            }
            "nullable" | "propertyOrdering" | "property_ordering" => {}
            "properties" => {
                let props = v
                    .as_object()
                    .map(|p| p.iter().map(|(n, s)| (n.clone(), json_schema(s))).collect())
                    .unwrap_or_default();
                out.insert(k.clone(), Value::Object(props));
            }
            "items" => {
                out.insert(k.clone(), json_schema(v));
            }
            "anyOf" | "any_of" => {
                let list = v
                    .as_array()
                    .map(|a| a.iter().map(json_schema).collect())
                    .unwrap_or_default();
                out.insert("anyOf".into(), Value::Array(list));
            }
            "minItems" | "maxItems" | "minLength" | "maxLength" | "minProperties"
            | "maxProperties" => {
                // The API writes these int64 fields as strings.
                let n = v
                    .as_str()
                    .and_then(|s| s.parse::<u64>().ok())
                    .map_or_else(|| v.clone(), |n| json!(n));
                out.insert(k.clone(), n);
            }
            _ => {
                out.insert(k.clone(), v.clone());
            }
        }
    }
    Value::Object(out)
}
