//! A Chat Completions request → a Gemini `generateContent` request (MAPPING.md §8.2–8.3).
//!
//! `system` / `developer` messages → `systemInstruction`; `assistant` → `model` turns
//! (text, then a `functionCall` part per tool call, its `thoughtSignature` restored from
//! the call id); `tool` messages → `functionResponse` parts of a `user` turn, named by the
//! call they answer; consecutive turns of one role merged (Gemini wants them alternating).
//! Images: `data:` URLs → `inlineData`, other URLs → `fileData`. Tools →
//! `functionDeclarations` with the JSON Schema as `parametersJsonSchema`; `tool_choice` →
//! `functionCallingConfig` (`AUTO`, `ANY`, `NONE`, `ANY` + `allowedFunctionNames`);
//! `response_format` → `responseMimeType` (+ `responseJsonSchema`); `reasoning_effort` or
//! the `thinking` extension → `thinkingConfig` with thoughts included. What Gemini cannot
//! express is dropped and named.

use std::collections::HashMap;

use jusinfer_wire::chat::{
    ChatMessage, ChatRequest, ContentPart, ImageUrl, MessageContent, Role, ToolChoice,
    CHAT_REQUEST_FIELDS,
};
use jusinfer_wire::gemini::{
    Blob, Content, FileData, FunctionCall, FunctionCallingConfig, FunctionDeclaration,
    FunctionResponse, GenerateContentRequest, GenerationConfig, Part, ThinkingConfig, Tool,
    ToolConfig,
};
use serde_json::{json, Value};

use super::split_call_id;
pub use crate::anthropic::request::Error;

/// A translated request.
#[derive(Debug, Clone, PartialEq)]
pub struct Translated {
    pub request: GenerateContentRequest,
    /// Request fields with no faithful translation (`x-jusinfer-dropped-params`).
    pub dropped: Vec<String>,
}

/// What the caller knows that the request does not say.
#[derive(Debug, Clone, Default)]
pub struct Options<'a> {
    /// The top-level keys present in the client's JSON, to name those that were dropped.
    pub present_fields: &'a [String],
}

/// Fields Gemini has no equivalent for: dropped when set (and named).
const UNFAITHFUL: &[&str] = &["logit_bias", "logprobs", "top_logprobs", "metadata", "user"];

/// `reasoning_effort` → a thinking budget (tokens). The 2.5 models take 0–24,576
/// (Flash) or 128–32,768 (Pro) (docs).
fn effort_budget(effort: &str) -> Option<u32> {
    match effort {
        "minimal" => Some(128),
        "low" => Some(1024),
        "medium" => Some(8192),
        "high" => Some(24576),
        _ => None,
    }
}

pub(crate) fn bad(param: impl Into<String>, message: impl Into<String>) -> Error {
    Error {
        message: message.into(),
        param: Some(param.into()),
    }
}

/// Translates `req`.
pub fn chat_to_gemini(req: &ChatRequest, opts: &Options<'_>) -> Result<Translated, Error> {
    let mut dropped = Vec::new();
    let mut system: Vec<Part> = Vec::new();
    let mut contents: Vec<Content> = Vec::new();
    // Call id → function name, for the results that answer them.
    let mut names: HashMap<&str, &str> = HashMap::new();
    for (i, m) in req.messages.iter().enumerate() {
        let at = format!("messages[{i}]");
        match m.role {
            Role::System | Role::Developer => {
                let text = m.text();
                if !text.is_empty() {
                    system.push(text_part(text));
                }
            }
            Role::User => push(&mut contents, "user", user_parts(m, &at)?),
            Role::Assistant => {
                let mut parts = Vec::new();
                let text = m.text();
                if !text.is_empty() {
                    parts.push(text_part(text));
                }
                for (j, c) in m.tool_calls.iter().flatten().enumerate() {
                    names.insert(c.id.as_str(), c.function.name.as_str());
                    let args = arguments(&c.function.arguments).ok_or_else(|| {
                        bad(
                            format!("{at}.tool_calls[{j}].function.arguments"),
                            "the arguments of a tool call must be a JSON object",
                        )
                    })?;
                    let (id, signature) = split_call_id(&c.id);
                    parts.push(Part {
                        function_call: Some(FunctionCall {
                            id: Some(id.to_owned()),
                            name: c.function.name.clone(),
                            args,
                        }),
                        thought_signature: signature,
                        ..Part::default()
                    });
                }
                if m.thinking_blocks.is_some() {
                    dropped.push(format!("{at}.thinking_blocks"));
                }
                if !parts.is_empty() {
                    push(&mut contents, "model", parts);
                }
            }
            Role::Tool => {
                let call = m.tool_call_id.as_deref().unwrap_or_default();
                let name = names.get(call).copied().ok_or_else(|| {
                    bad(
                        format!("{at}.tool_call_id"),
                        "a tool message must answer a tool call of an earlier assistant message",
                    )
                })?;
                let text = m.text();
                let response = match serde_json::from_str::<Value>(&text) {
                    Ok(v @ Value::Object(_)) => v,
                    _ => json!({ "result": text }),
                };
                let part = Part {
                    function_response: Some(FunctionResponse {
                        id: Some(split_call_id(call).0.to_owned()),
                        name: name.to_owned(),
                        response,
                    }),
                    ..Part::default()
                };
                push(&mut contents, "user", vec![part]);
            }
            Role::Function => {
                return Err(bad(
                    format!("{at}.role"),
                    "the legacy `function` role is not supported for this provider; use `tool`",
                ))
            }
        }
    }
    if contents.is_empty() {
        return Err(bad(
            "messages",
            "at least one user or assistant message is required",
        ));
    }
    let mut tools = Vec::new();
    for (i, t) in req.tools.iter().flatten().enumerate() {
        match (&t.kind[..], &t.function) {
            ("function", Some(f)) => tools.push(FunctionDeclaration {
                name: f.name.clone(),
                description: f.description.clone(),
                parameters_json_schema: f.parameters.clone(),
                parameters: None,
            }),
            _ => dropped.push(format!("tools[{i}] ({})", t.kind)),
        }
    }
    // The legacy `functions` / `function_call`, as the newer tools.
    for f in req.functions.iter().flatten() {
        tools.push(FunctionDeclaration {
            name: f.name.clone(),
            description: f.description.clone(),
            parameters_json_schema: f.parameters.clone(),
            parameters: None,
        });
    }
    let has_tools = !tools.is_empty();
    let tool_config = match (&req.tool_choice, &req.function_call, has_tools) {
        (Some(tc), _, true) => Some(function_calling(tc)?),
        (None, Some(fc), true) => Some(legacy_function_calling(fc)?),
        _ => None,
    };
    if req.parallel_tool_calls == Some(false) {
        dropped.push("parallel_tool_calls".to_owned());
    }
    let mut g = GenerationConfig {
        max_output_tokens: req.max_output_tokens(),
        temperature: req.temperature,
        top_p: req.top_p,
        stop_sequences: req
            .stop
            .as_ref()
            .map(|s| s.as_vec().into_iter().map(str::to_owned).collect()),
        seed: req.seed,
        presence_penalty: req.presence_penalty,
        frequency_penalty: req.frequency_penalty,
        ..GenerationConfig::default()
    };
    if let Some(rf) = &req.response_format {
        match rf.kind.as_str() {
            "json_object" => g.response_mime_type = Some("application/json".into()),
            "json_schema" => {
                g.response_mime_type = Some("application/json".into());
                g.response_json_schema = rf.json_schema.as_ref().and_then(|s| s.schema.clone());
            }
            _ => {}
        }
    }
    let budget = match (&req.reasoning_effort, &req.thinking) {
        (Some(e), _) => Some(effort_budget(e).ok_or_else(|| {
            bad(
                "reasoning_effort",
                "reasoning_effort must be `minimal`, `low`, `medium` or `high`",
            )
        })?),
        (None, Some(t)) if t["type"] == "enabled" => t["budget_tokens"]
            .as_u64()
            .and_then(|b| u32::try_from(b).ok()),
        _ => None,
    };
    if let Some(b) = budget {
        g.thinking_config = Some(ThinkingConfig {
            thinking_budget: Some(i64::from(b)),
            include_thoughts: Some(true),
            thinking_level: None,
        });
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
    let generation_config = (g != GenerationConfig::default()).then_some(g);
    Ok(Translated {
        request: GenerateContentRequest {
            contents,
            system_instruction: (!system.is_empty()).then(|| Content {
                role: None,
                parts: system,
            }),
            tools: has_tools.then(|| {
                vec![Tool {
                    function_declarations: tools,
                    rest: Default::default(),
                }]
            }),
            tool_config,
            generation_config,
            rest: Default::default(),
        },
        dropped,
    })
}

fn text_part(text: String) -> Part {
    Part {
        text: Some(text),
        ..Part::default()
    }
}

/// Appends `parts` as a `role` turn, merged into the last turn when it has that role.
fn push(contents: &mut Vec<Content>, role: &str, parts: Vec<Part>) {
    if parts.is_empty() {
        return;
    }
    match contents.last_mut() {
        Some(last) if last.role.as_deref() == Some(role) => last.parts.extend(parts),
        _ => contents.push(Content {
            role: Some(role.to_owned()),
            parts,
        }),
    }
}

/// A call's `arguments` (a JSON string) as the object Gemini wants; `""` is `{}`.
pub(crate) fn arguments(s: &str) -> Option<Value> {
    if s.trim().is_empty() {
        return Some(json!({}));
    }
    serde_json::from_str::<Value>(s)
        .ok()
        .filter(Value::is_object)
}

fn user_parts(m: &ChatMessage, at: &str) -> Result<Vec<Part>, Error> {
    match &m.content {
        None => Ok(Vec::new()),
        Some(MessageContent::Text(s)) => Ok(vec![text_part(s.clone())]),
        Some(MessageContent::Parts(parts)) => parts
            .iter()
            .enumerate()
            .filter_map(|(k, p)| part(p, &format!("{at}.content[{k}]")).transpose())
            .collect(),
    }
}

fn part(p: &ContentPart, at: &str) -> Result<Option<Part>, Error> {
    match p.kind.as_str() {
        "text" => Ok(p.text.clone().map(text_part)),
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
            Ok(Some(image(url)))
        }
        other => Err(bad(
            format!("{at}.type"),
            format!("content parts of type `{other}` are not supported for this provider"),
        )),
    }
}

/// A `data:` URL inline, any other URL by reference.
fn image(url: &str) -> Part {
    if let Some(rest) = url.strip_prefix("data:") {
        if let Some((meta, data)) = rest.split_once(',') {
            if let Some(mime) = meta.strip_suffix(";base64") {
                return Part {
                    inline_data: Some(Blob {
                        mime_type: mime.to_owned(),
                        data: data.to_owned(),
                    }),
                    ..Part::default()
                };
            }
        }
    }
    let ext = url
        .split(['?', '#'])
        .next()
        .and_then(|p| p.rsplit('.').next())
        .map(str::to_ascii_lowercase);
    let mime = match ext.as_deref() {
        Some("png") => "image/png",
        Some("webp") => "image/webp",
        Some("gif") => "image/gif",
        Some("heic") => "image/heic",
        Some("pdf") => "application/pdf",
        _ => "image/jpeg",
    };
    Part {
        file_data: Some(FileData {
            mime_type: Some(mime.to_owned()),
            file_uri: url.to_owned(),
        }),
        ..Part::default()
    }
}

/// The legacy `function_call`: `"none"`, `"auto"` or `{"name": …}`.
fn legacy_function_calling(fc: &Value) -> Result<ToolConfig, Error> {
    let (mode, names) = match fc {
        Value::String(s) if s == "none" => ("NONE", None),
        Value::String(s) if s == "auto" => ("AUTO", None),
        Value::Object(o) => match o.get("name").and_then(Value::as_str) {
            Some(n) => ("ANY", Some(vec![n.to_owned()])),
            None => {
                return Err(bad(
                    "function_call.name",
                    "function_call must name a function",
                ))
            }
        },
        _ => {
            return Err(bad(
                "function_call",
                "function_call must be `none`, `auto` or name a function",
            ))
        }
    };
    Ok(ToolConfig {
        function_calling_config: FunctionCallingConfig {
            mode: mode.to_owned(),
            allowed_function_names: names,
        },
    })
}

fn function_calling(tc: &ToolChoice) -> Result<ToolConfig, Error> {
    let (mode, names) = match tc {
        ToolChoice::Mode(m) => match m.as_str() {
            "auto" => ("AUTO", None),
            "required" => ("ANY", None),
            "none" => ("NONE", None),
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
            ("ANY", Some(vec![name]))
        }
    };
    Ok(ToolConfig {
        function_calling_config: FunctionCallingConfig {
            mode: mode.to_owned(),
            allowed_function_names: names,
        },
    })
}
