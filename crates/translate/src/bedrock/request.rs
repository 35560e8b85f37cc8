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
//! on Claude models. The body is typed and borrows from the client's request (texts, tool
//! schemas, call arguments as the client wrote them): serialized once, never read back.
//! What Converse cannot express is dropped and named.

use std::borrow::Cow;
use std::collections::HashMap;

use jusinfer_wire::bedrock::{
    AdditionalFields, CachePoint, ConverseRequest, Image, ImageSource, InferenceConfig,
    InputSchema, ReasoningBlock, RequestBlock, RequestMessage, Thinking, Tool,
    ToolChoice as Choice, ToolConfig, ToolResultBlock, ToolResultContent, ToolSpec, ToolUseBlock,
};
use jusinfer_wire::chat::{
    ChatMessage, ChatRequest, ContentPart, ImageUrl, MessageContent, Role, ToolChoice,
    CHAT_REQUEST_FIELDS,
};
use serde_json::value::RawValue;
use serde_json::{json, Value};

pub use crate::anthropic::request::Error;
pub use crate::anthropic::JsonMode;
// A refusal naming its field: as for Gemini.
use crate::gemini::request::bad;

/// A translated request.
#[derive(Debug, Clone)]
pub struct Translated<'a> {
    /// The `converse` / `converse-stream` body.
    pub body: ConverseRequest<'a>,
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
pub fn chat_to_converse<'a>(
    req: &'a ChatRequest,
    opts: &Options<'_>,
) -> Result<Translated<'a>, Error> {
    let mut dropped = Vec::new();
    let mut specs = Vec::new();
    for (i, t) in req.tools.iter().flatten().enumerate() {
        match (&t.kind[..], &t.function) {
            ("function", Some(f)) => specs.push(spec(
                Cow::Borrowed(&f.name),
                f.description.as_deref(),
                f.parameters.as_ref().map(Cow::Borrowed),
            )),
            _ => dropped.push(format!("tools[{i}] ({})", t.kind)),
        }
    }
    for f in req.functions.iter().flatten() {
        specs.push(spec(
            Cow::Borrowed(&f.name),
            f.description.as_deref(),
            f.parameters.as_ref().map(Cow::Borrowed),
        ));
    }
    // Without a `toolConfig`, Bedrock refuses tool blocks in the history: they go as text.
    let tools_off = specs.is_empty()
        || matches!(&req.tool_choice, Some(ToolChoice::Mode(m)) if m == "none")
        || matches!(&req.function_call, Some(Value::String(s)) if s == "none");
    let mut system = Vec::new();
    let mut messages: Vec<RequestMessage<'a>> = Vec::with_capacity(req.messages.len());
    // Call id → function name, for results written as text.
    let mut names: HashMap<&str, &str> = HashMap::new();
    for (i, m) in req.messages.iter().enumerate() {
        match m.role {
            Role::System | Role::Developer => {
                for b in blocks(m, i)? {
                    if matches!(b, RequestBlock::Image(_)) {
                        return Err(bad(
                            format!("messages[{i}]"),
                            "system messages take text only",
                        ));
                    }
                    system.push(b);
                }
            }
            Role::User => push(&mut messages, "user", blocks(m, i)?),
            Role::Assistant => {
                let mut content = reasoning(m);
                let text = text(m);
                if !text.is_empty() {
                    content.push(RequestBlock::Text(text));
                }
                for (j, c) in m.tool_calls.iter().flatten().enumerate() {
                    let input = arguments(&c.function.arguments).ok_or_else(|| {
                        bad(
                            format!("messages[{i}].tool_calls[{j}].function.arguments"),
                            "the arguments of a tool call must be a JSON object",
                        )
                    })?;
                    content.push(if tools_off {
                        names.insert(c.id.as_str(), c.function.name.as_str());
                        // The arguments compacted, as a JSON value prints.
                        let args = serde_json::from_str::<Value>(input.get())
                            .map_or_else(|_| input.get().to_owned(), |v| v.to_string());
                        RequestBlock::Text(Cow::Owned(format!(
                            "[called tool {} with {args}]",
                            c.function.name
                        )))
                    } else {
                        RequestBlock::ToolUse(ToolUseBlock {
                            tool_use_id: &c.id,
                            name: &c.function.name,
                            input,
                        })
                    });
                }
                push(&mut messages, "assistant", content);
            }
            Role::Tool => {
                let call = m.tool_call_id.as_deref().unwrap_or_default();
                if call.is_empty() {
                    return Err(bad(
                        format!("messages[{i}].tool_call_id"),
                        "a tool message must name the call it answers",
                    ));
                }
                let text = text(m);
                let block = if tools_off {
                    let name = names.get(call).copied().unwrap_or("a tool");
                    RequestBlock::Text(Cow::Owned(format!("[{name} returned: {text}]")))
                } else {
                    // A JSON object result goes as `json`, anything else as text.
                    let content = match object(text) {
                        Ok(v) => ToolResultContent::Json(v),
                        Err(text) => ToolResultContent::Text(text),
                    };
                    RequestBlock::ToolResult(ToolResultBlock {
                        tool_use_id: call,
                        content: vec![content],
                    })
                };
                push(&mut messages, "user", vec![block]);
            }
            Role::Function => {
                return Err(bad(
                    format!("messages[{i}].role"),
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
    if messages.first().is_some_and(|m| m.role == "assistant") {
        // Converse wants the conversation to open with the user.
        messages.insert(
            0,
            RequestMessage {
                role: "user",
                content: vec![RequestBlock::Text(Cow::Borrowed("."))],
            },
        );
        dropped.push("messages[0] (a leading assistant message needs a user turn first)".into());
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
    let mut max_tokens = req.max_output_tokens().map(u64::from);
    if let (Some(b), Some(n)) = (thinking, max_tokens) {
        if n <= b {
            // Claude requires budget_tokens < max_tokens: the budget comes on top.
            max_tokens = Some(n.saturating_add(b));
        }
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
    let inference_config = InferenceConfig {
        max_tokens,
        temperature,
        top_p,
        stop_sequences: req.stop.as_ref().map(|s| s.as_vec()),
    };
    if tools_off {
        specs.clear();
    }
    let json_mode = json_tool(req).map(|(spec, mode)| {
        specs.push(spec);
        mode
    });
    let mut tool_config = None;
    if !specs.is_empty() {
        let client_tools = specs.len() > usize::from(json_mode.is_some());
        let mut choice = match (&req.tool_choice, &req.function_call) {
            _ if tools_off => None,
            (Some(tc), _) => tool_choice(tc)?,
            (None, Some(Value::Object(o))) => {
                o.get("name").and_then(Value::as_str).map(|n| Choice::Tool {
                    name: Cow::Borrowed(n),
                })
            }
            _ => None,
        };
        if let Some(m) = &json_mode {
            // JSON mode alone: its tool, forced; beside the client's tools: some tool.
            if !client_tools {
                choice = Some(Choice::Tool {
                    name: Cow::Owned(m.tool_name.clone()),
                });
            } else if choice.is_none() {
                choice = Some(Choice::Any {});
            }
        }
        if thinking.is_some() && choice.as_ref().is_some_and(|c| *c != Choice::Auto {}) {
            // Claude refuses forced tools with thinking on: the model chooses.
            choice = Some(Choice::Auto {});
            dropped.push("tool_choice".to_owned());
        }
        tool_config = Some(ToolConfig {
            tools: specs,
            tool_choice: choice,
        });
    }
    if req.parallel_tool_calls == Some(false) {
        dropped.push("parallel_tool_calls".to_owned());
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
        body: ConverseRequest {
            messages,
            system,
            inference_config,
            tool_config,
            additional_model_request_fields: thinking.map(|b| AdditionalFields {
                thinking: Thinking {
                    kind: "enabled",
                    budget_tokens: b,
                },
            }),
        },
        dropped,
        json_mode,
    })
}

/// A call's `arguments` as the object Converse wants, as the client wrote it (`""` is
/// `{}`); `None` when they are not a JSON object.
fn arguments(s: &str) -> Option<Cow<'_, RawValue>> {
    if s.trim().is_empty() {
        return RawValue::from_string("{}".to_owned()).ok().map(Cow::Owned);
    }
    let raw: &RawValue = serde_json::from_str(s).ok()?;
    raw.get().starts_with('{').then_some(Cow::Borrowed(raw))
}

/// `text` as a JSON object (as written), or back as text when it is not one.
fn object(text: Cow<'_, str>) -> Result<Cow<'_, RawValue>, Cow<'_, str>> {
    if !text.trim_start().starts_with('{') {
        return Err(text);
    }
    match text {
        Cow::Borrowed(s) => match serde_json::from_str::<&RawValue>(s) {
            Ok(raw) => Ok(Cow::Borrowed(raw)),
            Err(_) => Err(Cow::Borrowed(s)),
        },
        Cow::Owned(s) => match serde_json::from_str::<&RawValue>(&s) {
            Ok(raw) => Ok(Cow::Owned(raw.to_owned())),
            Err(_) => Err(Cow::Owned(s)),
        },
    }
}

/// A message's text: borrowed when it is one string (or one text part).
fn text(m: &ChatMessage) -> Cow<'_, str> {
    match &m.content {
        None => Cow::Borrowed(""),
        Some(MessageContent::Text(s)) => Cow::Borrowed(s),
        Some(MessageContent::Parts(parts)) => {
            let mut texts = parts.iter().filter_map(|p| p.text.as_deref());
            match (texts.next(), texts.next()) {
                (None, _) => Cow::Borrowed(""),
                (Some(t), None) => Cow::Borrowed(t),
                (Some(_), Some(_)) => Cow::Owned(m.text()),
            }
        }
    }
}

/// JSON mode's tool: the requested schema as its input schema (under `value` when it is not
/// an object: tool inputs are objects), named by the schema.
fn json_tool(req: &ChatRequest) -> Option<(Tool<'static>, JsonMode)> {
    let (schema, mode) = crate::anthropic::json_mode_tool(req.response_format.as_ref()?)?;
    let spec = spec(
        Cow::Owned(mode.tool_name.clone()),
        Some(crate::anthropic::JSON_MODE_DESCRIPTION),
        Some(Cow::Owned(schema)),
    );
    Some((spec, mode))
}

fn spec<'a>(
    name: Cow<'a, str>,
    description: Option<&'a str>,
    parameters: Option<Cow<'a, Value>>,
) -> Tool<'a> {
    let json =
        parameters.unwrap_or_else(|| Cow::Owned(json!({"type": "object", "properties": {}})));
    Tool {
        tool_spec: ToolSpec {
            name,
            description: description.filter(|d| !d.is_empty()),
            input_schema: InputSchema { json },
        },
    }
}

fn tool_choice(tc: &ToolChoice) -> Result<Option<Choice<'_>>, Error> {
    Ok(match tc {
        ToolChoice::Mode(m) => match m.as_str() {
            "auto" => Some(Choice::Auto {}),
            "required" => Some(Choice::Any {}),
            "none" => None,
            _ => {
                return Err(bad(
                    "tool_choice",
                    "tool_choice must be `none`, `auto`, `required` or name a function",
                ))
            }
        },
        ToolChoice::Object(o) => {
            let name = o
                .function
                .as_ref()
                .map(|f| f.name.as_str())
                .ok_or_else(|| bad("tool_choice.function", "tool_choice must name a function"))?;
            Some(Choice::Tool {
                name: Cow::Borrowed(name),
            })
        }
    })
}

/// An assistant message's reasoning, first, as Bedrock returned it.
fn reasoning(m: &ChatMessage) -> Vec<RequestBlock<'_>> {
    let mut out = Vec::new();
    for b in m.thinking_blocks.iter().flatten() {
        match b.kind.as_str() {
            "thinking" => out.push(RequestBlock::ReasoningContent(
                ReasoningBlock::ReasoningText {
                    text: b.thinking.as_deref().unwrap_or_default(),
                    signature: b.signature.as_deref(),
                },
            )),
            "redacted_thinking" => {
                if let Some(d) = &b.data {
                    out.push(RequestBlock::ReasoningContent(
                        ReasoningBlock::RedactedContent(d),
                    ));
                }
            }
            _ => {}
        }
    }
    out
}

/// Appends `content` as a `role` message, merged into the last one when it has that role.
fn push<'a>(
    messages: &mut Vec<RequestMessage<'a>>,
    role: &'static str,
    content: Vec<RequestBlock<'a>>,
) {
    if content.is_empty() {
        return;
    }
    match messages.last_mut() {
        Some(last) if last.role == role => last.content.extend(content),
        _ => messages.push(RequestMessage { role, content }),
    }
}

/// Message `i`'s content as Converse blocks (a `cachePoint` after each part marked with
/// `cache_control`).
fn blocks(m: &ChatMessage, i: usize) -> Result<Vec<RequestBlock<'_>>, Error> {
    match &m.content {
        None => Ok(Vec::new()),
        Some(MessageContent::Text(s)) if s.is_empty() => Ok(Vec::new()),
        Some(MessageContent::Text(s)) => Ok(vec![RequestBlock::Text(Cow::Borrowed(s))]),
        Some(MessageContent::Parts(parts)) => {
            let mut out = Vec::with_capacity(parts.len());
            for (k, p) in parts.iter().enumerate() {
                let at = || format!("messages[{i}].content[{k}]");
                if let Some(b) = part(p, at)? {
                    out.push(b);
                }
                if p.cache_control.is_some() {
                    out.push(RequestBlock::CachePoint(CachePoint { kind: "default" }));
                }
            }
            Ok(out)
        }
    }
}

/// One part as a block; `at` names it in a refusal.
fn part(p: &ContentPart, at: impl Fn() -> String) -> Result<Option<RequestBlock<'_>>, Error> {
    match p.kind.as_str() {
        "text" => Ok(p
            .text
            .as_deref()
            .filter(|t| !t.is_empty())
            .map(|t| RequestBlock::Text(Cow::Borrowed(t)))),
        "image_url" => {
            let url = match &p.image_url {
                Some(ImageUrl::Object { url, .. } | ImageUrl::Url(url)) => url,
                None => {
                    return Err(bad(
                        format!("{}.image_url", at()),
                        "an image part needs `image_url`",
                    ))
                }
            };
            image(url).map(Some).ok_or_else(|| {
                bad(
                    format!("{}.image_url", at()),
                    "this provider takes images as base64 `data:` URLs (png, jpeg, gif or webp)",
                )
            })
        }
        other => Err(bad(
            format!("{}.type", at()),
            format!("content parts of type `{other}` are not supported for this provider"),
        )),
    }
}

/// A `data:image/…;base64,…` URL as an image block.
fn image(url: &str) -> Option<RequestBlock<'_>> {
    let (meta, data) = url.strip_prefix("data:")?.split_once(',')?;
    let mime = meta.strip_suffix(";base64")?;
    let format = match mime {
        "image/png" => "png",
        "image/jpeg" | "image/jpg" => "jpeg",
        "image/gif" => "gif",
        "image/webp" => "webp",
        _ => return None,
    };
    Some(RequestBlock::Image(Image {
        format,
        source: ImageSource { bytes: data },
    }))
}
