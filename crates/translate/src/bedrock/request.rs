//! A Chat Completions request → a Bedrock `converse` request (MAPPING.md §8.2–8.3).
//!
//! `system` / `developer` messages → `system` blocks; `user` text and `data:` images →
//! `text` / `image` blocks (Bedrock takes image bytes, not URLs); `assistant` → its
//! reasoning (`thinking_blocks`, signature or redacted bytes byte for byte), text, then a
//! `toolUse` block per call with the call id as `toolUseId`; `tool` messages →
//! `toolResult` blocks of a `user` message; consecutive messages of one role merged
//! (Bedrock rejects two in a row). A part's `cache_control` → a `cachePoint` after it.
//! `max_tokens`, `temperature`, `top_p`, `stop` → `inferenceConfig`; tools →
//! `toolConfig.tools[].toolSpec` with the JSON Schema as `inputSchema.json`; `tool_choice`
//! → `auto` / `any` / `tool`. With `tool_choice: "none"` (or no tools) Bedrock takes no
//! `toolConfig` but then refuses tool blocks in the history, so those are written as text
//! (choice).
//! `reasoning_effort` or the `thinking` extension → `additionalModelRequestFields.thinking`
//! on Claude models. The body is built as JSON (written once, never read back); what
//! Converse cannot express is dropped and named.

use std::collections::HashMap;

use jusinfer_wire::chat::{
    ChatMessage, ChatRequest, ContentPart, ImageUrl, MessageContent, Role, ToolChoice,
    CHAT_REQUEST_FIELDS,
};
use serde_json::{json, Map, Value};

pub use crate::anthropic::request::Error;
pub use crate::anthropic::JsonMode;
// A call's `arguments` as the object Converse wants (`""` is `{}`), and a refusal naming
// its field: as for Gemini.
use crate::gemini::request::{arguments, bad};

/// A translated request.
#[derive(Debug, Clone, PartialEq)]
pub struct Translated {
    /// The `converse` / `converse-stream` body.
    pub body: Value,
    /// Request fields with no faithful translation (`x-jusinfer-dropped-params`).
    pub dropped: Vec<String>,
    /// JSON mode, asked for with `response_format` and emulated with a forced tool (as
    /// for Anthropic): its input comes back as the content.
    pub json_mode: Option<JsonMode>,
}

/// What the caller knows that the request does not say.
#[derive(Debug, Clone, Default)]
pub struct Options<'a> {
    /// The Bedrock model id (thinking is a Claude setting).
    pub model: &'a str,
    /// The top-level keys present in the client's JSON, to name those that were dropped.
    pub present_fields: &'a [String],
}

/// Fields Converse has no equivalent for: dropped when set (and named).
const UNFAITHFUL: &[&str] = &[
    "logit_bias",
    "logprobs",
    "top_logprobs",
    "metadata",
    "user",
    "seed",
    "presence_penalty",
    "frequency_penalty",
];

/// `reasoning_effort` → Claude's thinking budget (tokens; at least 1,024); other values
/// (`none`, …) ask for none.
fn effort_budget(effort: &str) -> Option<u64> {
    match effort {
        "minimal" | "low" => Some(1024),
        "medium" => Some(8192),
        "high" => Some(24576),
        _ => None,
    }
}

/// Translates `req`.
pub fn chat_to_converse(req: &ChatRequest, opts: &Options<'_>) -> Result<Translated, Error> {
    let mut dropped = Vec::new();
    let mut specs = Vec::new();
    for (i, t) in req.tools.iter().flatten().enumerate() {
        match (&t.kind[..], &t.function) {
            ("function", Some(f)) => specs.push(spec(
                &f.name,
                f.description.as_deref(),
                f.parameters.as_ref(),
            )),
            _ => dropped.push(format!("tools[{i}] ({})", t.kind)),
        }
    }
    for f in req.functions.iter().flatten() {
        specs.push(spec(
            &f.name,
            f.description.as_deref(),
            f.parameters.as_ref(),
        ));
    }
    // Without a `toolConfig`, Bedrock refuses tool blocks in the history: they go as text.
    let tools_off = specs.is_empty()
        || matches!(&req.tool_choice, Some(ToolChoice::Mode(m)) if m == "none")
        || matches!(&req.function_call, Some(Value::String(s)) if s == "none");
    let mut system: Vec<Value> = Vec::new();
    let mut messages: Vec<(&'static str, Vec<Value>)> = Vec::new();
    // Call id → function name, for results written as text.
    let mut names: HashMap<&str, &str> = HashMap::new();
    for (i, m) in req.messages.iter().enumerate() {
        let at = format!("messages[{i}]");
        match m.role {
            Role::System | Role::Developer => {
                for b in blocks(m, &at)? {
                    if b.get("image").is_some() {
                        return Err(bad(at, "system messages take text only"));
                    }
                    system.push(b);
                }
            }
            Role::User => push(&mut messages, "user", blocks(m, &at)?),
            Role::Assistant => {
                let mut content = reasoning(m);
                let text = m.text();
                if !text.is_empty() {
                    content.push(json!({ "text": text }));
                }
                for (j, c) in m.tool_calls.iter().flatten().enumerate() {
                    names.insert(c.id.as_str(), c.function.name.as_str());
                    let input = arguments(&c.function.arguments).ok_or_else(|| {
                        bad(
                            format!("{at}.tool_calls[{j}].function.arguments"),
                            "the arguments of a tool call must be a JSON object",
                        )
                    })?;
                    content.push(if tools_off {
                        json!({ "text": format!("[called tool {} with {input}]", c.function.name) })
                    } else {
                        json!({"toolUse": {
                            "toolUseId": c.id, "name": c.function.name, "input": input
                        }})
                    });
                }
                push(&mut messages, "assistant", content);
            }
            Role::Tool => {
                let call = m.tool_call_id.as_deref().unwrap_or_default();
                if call.is_empty() {
                    return Err(bad(
                        format!("{at}.tool_call_id"),
                        "a tool message must name the call it answers",
                    ));
                }
                let text = m.text();
                let block = if tools_off {
                    let name = names.get(call).copied().unwrap_or("a tool");
                    json!({ "text": format!("[{name} returned: {text}]") })
                } else {
                    // A JSON object result goes as `json`, anything else as text.
                    let content = match serde_json::from_str::<Value>(&text) {
                        Ok(v @ Value::Object(_)) => json!([{ "json": v }]),
                        _ => json!([{ "text": text }]),
                    };
                    json!({"toolResult": {"toolUseId": call, "content": content}})
                };
                push(&mut messages, "user", vec![block]);
            }
            Role::Function => {
                return Err(bad(
                    format!("{at}.role"),
                    "the legacy `function` role is not supported for this provider; use `tool`",
                ))
            }
        }
    }
    if messages.is_empty() {
        return Err(bad(
            "messages",
            "at least one user or assistant message is required",
        ));
    }
    if messages.first().is_some_and(|(r, _)| *r == "assistant") {
        // Converse wants the conversation to open with the user.
        messages.insert(0, ("user", vec![json!({ "text": "." })]));
        dropped.push("messages[0] (a leading assistant message needs a user turn first)".into());
    }
    let mut body = Map::new();
    body.insert(
        "messages".into(),
        Value::Array(
            messages
                .into_iter()
                .map(|(role, content)| json!({ "role": role, "content": content }))
                .collect(),
        ),
    );
    if !system.is_empty() {
        body.insert("system".into(), Value::Array(system));
    }
    // Claude's thinking (the `thinking` extension wins over `reasoning_effort`, as for
    // Anthropic); other models have no such field.
    let claude = opts.model.contains("anthropic.");
    let budget = match (&req.thinking, &req.reasoning_effort) {
        (Some(t), _) if t["type"] == "enabled" => t["budget_tokens"].as_u64(),
        (Some(_), _) => None,
        (None, Some(e)) => effort_budget(e),
        (None, None) => None,
    };
    let thinking = budget.filter(|_| claude);
    if budget.is_some() && !claude {
        dropped.push(if req.thinking.is_some() {
            "thinking".to_owned()
        } else {
            "reasoning_effort".to_owned()
        });
    }
    let mut inference = Map::new();
    let mut max_tokens = req.max_output_tokens().map(u64::from);
    if let (Some(b), Some(n)) = (thinking, max_tokens) {
        if n <= b {
            // Claude requires budget_tokens < max_tokens: the budget comes on top.
            max_tokens = Some(n.saturating_add(b));
        }
    }
    if let Some(n) = max_tokens {
        inference.insert("maxTokens".into(), json!(n));
    }
    let (mut temperature, mut top_p) = (req.temperature, req.top_p);
    if claude {
        temperature = temperature.map(|t| t.clamp(0.0, 1.0));
    }
    if thinking.is_some() {
        // Claude takes neither a custom temperature nor top_p with thinking on.
        if temperature.take().is_some() {
            dropped.push("temperature".to_owned());
        }
        if top_p.take().is_some() {
            dropped.push("top_p".to_owned());
        }
    }
    if let Some(t) = temperature {
        inference.insert("temperature".into(), json!(t));
    }
    if let Some(p) = top_p {
        inference.insert("topP".into(), json!(p));
    }
    if let Some(s) = &req.stop {
        inference.insert("stopSequences".into(), json!(s.as_vec()));
    }
    if !inference.is_empty() {
        body.insert("inferenceConfig".into(), Value::Object(inference));
    }
    if tools_off {
        specs.clear();
    }
    let json_mode = json_tool(req).map(|(spec, mode)| {
        specs.push(spec);
        mode
    });
    if !specs.is_empty() {
        let mut config = Map::new();
        let client_tools = specs.len() > usize::from(json_mode.is_some());
        config.insert("tools".into(), Value::Array(specs));
        let mut choice = match (&req.tool_choice, &req.function_call) {
            _ if tools_off => None,
            (Some(tc), _) => tool_choice(tc)?,
            (None, Some(Value::Object(o))) => o
                .get("name")
                .and_then(Value::as_str)
                .map(|n| json!({"tool": {"name": n}})),
            _ => None,
        };
        if let Some(m) = &json_mode {
            // JSON mode alone: its tool, forced; beside the client's tools: some tool.
            if !client_tools {
                choice = Some(json!({"tool": {"name": m.tool_name}}));
            } else if choice.is_none() {
                choice = Some(json!({"any": {}}));
            }
        }
        if thinking.is_some() && choice.as_ref().is_some_and(|c| c.get("auto").is_none()) {
            // Claude refuses forced tools with thinking on: the model chooses.
            choice = Some(json!({"auto": {}}));
            dropped.push("tool_choice".to_owned());
        }
        if let Some(c) = choice {
            config.insert("toolChoice".into(), c);
        }
        body.insert("toolConfig".into(), Value::Object(config));
    }
    if req.parallel_tool_calls == Some(false) {
        dropped.push("parallel_tool_calls".to_owned());
    }
    if let Some(b) = thinking {
        body.insert(
            "additionalModelRequestFields".into(),
            json!({"thinking": {"type": "enabled", "budget_tokens": b}}),
        );
    }
    if req.n.is_some_and(|n| n > 1) {
        return Err(bad(
            "n",
            "this provider answers one choice per request (n = 1)",
        ));
    }
    for k in opts.present_fields {
        if UNFAITHFUL.contains(&k.as_str()) || !CHAT_REQUEST_FIELDS.contains(&k.as_str()) {
            dropped.push(k.clone());
        }
    }
    Ok(Translated {
        body: Value::Object(body),
        dropped,
        json_mode,
    })
}

/// JSON mode's tool: the requested schema as its input schema (under `value` when it is not
/// an object: tool inputs are objects), named by the schema.
fn json_tool(req: &ChatRequest) -> Option<(Value, JsonMode)> {
    let (schema, mode) = crate::anthropic::json_mode_tool(req.response_format.as_ref()?)?;
    let spec = spec(
        &mode.tool_name,
        Some(crate::anthropic::JSON_MODE_DESCRIPTION),
        Some(&schema),
    );
    Some((spec, mode))
}

fn spec(name: &str, description: Option<&str>, parameters: Option<&Value>) -> Value {
    let schema = parameters
        .cloned()
        .unwrap_or_else(|| json!({"type": "object", "properties": {}}));
    let mut s = json!({"name": name, "inputSchema": {"json": schema}});
    if let Some(d) = description.filter(|d| !d.is_empty()) {
        s["description"] = json!(d);
    }
    json!({ "toolSpec": s })
}

fn tool_choice(tc: &ToolChoice) -> Result<Option<Value>, Error> {
    Ok(match tc {
        ToolChoice::Mode(m) => match m.as_str() {
            "auto" => Some(json!({"auto": {}})),
            "required" => Some(json!({"any": {}})),
            "none" => None,
            _ => {
                return Err(bad(
                    "tool_choice",
                    "tool_choice must be `none`, `auto`, `required` or name a function",
                ))
            }
        },
        ToolChoice::Object(o) => {
            let name =
                o.function.as_ref().map(|f| f.name.clone()).ok_or_else(|| {
                    bad("tool_choice.function", "tool_choice must name a function")
                })?;
            Some(json!({"tool": {"name": name}}))
        }
    })
}

/// An assistant message's reasoning, first, as Bedrock returned it.
fn reasoning(m: &ChatMessage) -> Vec<Value> {
    let mut out = Vec::new();
    for b in m.thinking_blocks.iter().flatten() {
        match b.kind.as_str() {
            "thinking" => {
                let mut t = json!({ "text": b.thinking.clone().unwrap_or_default() });
                if let Some(s) = &b.signature {
                    t["signature"] = json!(s);
                }
                out.push(json!({"reasoningContent": {"reasoningText": t}}));
            }
            "redacted_thinking" => {
                if let Some(d) = &b.data {
                    out.push(json!({"reasoningContent": {"redactedContent": d}}));
                }
            }
            _ => {}
        }
    }
    out
}

/// Appends `content` as a `role` message, merged into the last one when it has that role.
fn push(messages: &mut Vec<(&'static str, Vec<Value>)>, role: &'static str, content: Vec<Value>) {
    if content.is_empty() {
        return;
    }
    match messages.last_mut() {
        Some((r, last)) if *r == role => last.extend(content),
        _ => messages.push((role, content)),
    }
}

/// A message's content as Converse blocks (a `cachePoint` after each part marked with
/// `cache_control`).
fn blocks(m: &ChatMessage, at: &str) -> Result<Vec<Value>, Error> {
    match &m.content {
        None => Ok(Vec::new()),
        Some(MessageContent::Text(s)) if s.is_empty() => Ok(Vec::new()),
        Some(MessageContent::Text(s)) => Ok(vec![json!({ "text": s })]),
        Some(MessageContent::Parts(parts)) => {
            let mut out = Vec::new();
            for (k, p) in parts.iter().enumerate() {
                if let Some(b) = part(p, &format!("{at}.content[{k}]"))? {
                    out.push(b);
                }
                if p.cache_control.is_some() {
                    out.push(json!({"cachePoint": {"type": "default"}}));
                }
            }
            Ok(out)
        }
    }
}

fn part(p: &ContentPart, at: &str) -> Result<Option<Value>, Error> {
    match p.kind.as_str() {
        "text" => Ok(p
            .text
            .as_ref()
            .filter(|t| !t.is_empty())
            .map(|t| json!({ "text": t }))),
        "image_url" => {
            let url = match &p.image_url {
                Some(ImageUrl::Object { url, .. } | ImageUrl::Url(url)) => url,
                None => {
                    return Err(bad(
                        format!("{at}.image_url"),
                        "an image part needs `image_url`",
                    ))
                }
            };
            image(url).map(Some).ok_or_else(|| {
                bad(
                    format!("{at}.image_url"),
                    "this provider takes images as base64 `data:` URLs (png, jpeg, gif or webp)",
                )
            })
        }
        other => Err(bad(
            format!("{at}.type"),
            format!("content parts of type `{other}` are not supported for this provider"),
        )),
    }
}

/// A `data:image/…;base64,…` URL as an image block.
fn image(url: &str) -> Option<Value> {
    let (meta, data) = url.strip_prefix("data:")?.split_once(',')?;
    let mime = meta.strip_suffix(";base64")?;
    let format = match mime {
        "image/png" => "png",
        "image/jpeg" | "image/jpg" => "jpeg",
        "image/gif" => "gif",
        "image/webp" => "webp",
        _ => return None,
    };
    Some(json!({"image": {"format": format, "source": {"bytes": data}}}))
}
