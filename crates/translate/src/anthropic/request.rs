//! Chat Completions request → Anthropic Messages request.

use jusinfer_wire::anthropic::{
    Block, Content, ImageSource, Message, MessagesRequest, Metadata, Role as ARole, System, Tool,
    ToolChoice, ToolResultContent,
};
use jusinfer_wire::chat::{
    ChatMessage, ChatRequest, ContentPart, ImageUrl, MessageContent, Role,
    ToolChoice as CToolChoice, CHAT_REQUEST_FIELDS,
};
use serde_json::{json, Value};

use super::JsonMode;

/// What the caller knows that the request does not say.
#[derive(Debug, Clone)]
pub struct Options<'a> {
    pub upstream_model: &'a str,
    /// `max_tokens` when the client sent none (Anthropic requires one).
    pub default_max_tokens: u32,
    /// The top-level keys present in the client's JSON, to name those that were dropped.
    pub present_fields: &'a [String],
}

/// A translated request.
#[derive(Debug, Clone, PartialEq)]
pub struct Translated {
    pub request: MessagesRequest,
    /// Request fields with no faithful translation, dropped (for `x-jusinfer-dropped-params`).
    pub dropped: Vec<String>,
    pub json_mode: Option<JsonMode>,
}

/// A request that cannot be translated: a 400 with `param`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Error {
    pub message: String,
    pub param: Option<String>,
}

/// Budgets for `reasoning_effort`.
fn effort_budget(effort: &str) -> Option<u32> {
    match effort {
        "minimal" | "low" => Some(1024),
        "medium" => Some(2048),
        "high" => Some(4096),
        _ => None,
    }
}

/// Fields Anthropic has no equivalent for: dropped when set (and named).
const UNFAITHFUL: &[&str] = &[
    "logit_bias",
    "presence_penalty",
    "frequency_penalty",
    "logprobs",
    "top_logprobs",
    "seed",
    "metadata",
];

pub fn chat_to_messages(req: &ChatRequest, opts: &Options<'_>) -> Result<Translated, Error> {
    let mut dropped: Vec<String> = Vec::new();
    for f in opts.present_fields {
        if !CHAT_REQUEST_FIELDS.contains(&f.as_str()) || UNFAITHFUL.contains(&f.as_str()) {
            dropped.push(f.clone());
        }
    }
    if req.n.is_some_and(|n| n > 1) {
        return Err(Error {
            message:
                "'n' greater than 1 is not supported by Anthropic models; send separate requests."
                    .to_owned(),
            param: Some("n".to_owned()),
        });
    }
    let (system, messages) = convert_messages(&req.messages, &mut dropped)?;

    // Tools: function tools (and the legacy `functions`) become Anthropic tools.
    let mut tools: Vec<Tool> = Vec::new();
    for (i, t) in req.tools.iter().flatten().enumerate() {
        match (&t.kind[..], &t.function) {
            ("function", Some(f)) => tools.push(tool(
                &f.name,
                f.description.as_deref(),
                f.parameters.as_ref(),
            )),
            _ => dropped.push(format!("tools[{i}]")),
        }
    }
    for f in req.functions.iter().flatten() {
        tools.push(tool(
            &f.name,
            f.description.as_deref(),
            f.parameters.as_ref(),
        ));
    }
    let no_parallel = req.parallel_tool_calls == Some(false);
    let mut tool_choice = match &req.tool_choice {
        None => req.function_call.as_ref().and_then(legacy_function_choice),
        Some(CToolChoice::Mode(m)) => match m.as_str() {
            "none" => Some(ToolChoice::None),
            "auto" => Some(ToolChoice::Auto { disable_parallel_tool_use: None }),
            "required" => Some(ToolChoice::Any { disable_parallel_tool_use: None }),
            other => {
                return Err(Error {
                    message: format!("Invalid value for 'tool_choice': {other:?}."),
                    param: Some("tool_choice".to_owned()),
                })
            }
        },
        Some(CToolChoice::Object(o)) => match (o.kind.as_str(), &o.function, &o.allowed_tools) {
            ("function", Some(f), _) => Some(ToolChoice::Tool { name: f.name.clone(), disable_parallel_tool_use: None }),
            ("allowed_tools", _, Some(allowed)) => {
                let names: Vec<&str> = allowed["tools"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter_map(|t| t["function"]["name"].as_str().or_else(|| t["name"].as_str()))
                    .collect();
                tools.retain(|t| names.contains(&t.name.as_str()));
                if allowed["mode"] == "required" {
                    Some(ToolChoice::Any { disable_parallel_tool_use: None })
                } else {
                    Some(ToolChoice::Auto { disable_parallel_tool_use: None })
                }
            }
            _ => {
                return Err(Error {
                    message: "Invalid value for 'tool_choice': expected a mode or {\"type\":\"function\",\"function\":{\"name\":...}}.".to_owned(),
                    param: Some("tool_choice".to_owned()),
                })
            }
        },
    };

    // JSON mode: a forced tool whose input schema is the requested schema.
    let mut json_mode = None;
    if let Some((input_schema, mode)) = req.response_format.as_ref().and_then(super::json_mode_tool)
    {
        let name = mode.tool_name.clone();
        let client_tools = !tools.is_empty();
        tools.push(Tool {
            name: name.clone(),
            description: Some(super::JSON_MODE_DESCRIPTION.to_owned()),
            input_schema,
            cache_control: None,
        });
        if !client_tools {
            tool_choice = Some(ToolChoice::Tool {
                name: name.clone(),
                disable_parallel_tool_use: None,
            });
        } else if tool_choice.is_none() {
            tool_choice = Some(ToolChoice::Any {
                disable_parallel_tool_use: None,
            });
        }
        json_mode = Some(mode);
    }

    // parallel_tool_calls=false: disable_parallel_tool_use on auto/any/tool. Anthropic's
    // schema has no such flag next to `none`, so there it is left out.
    if no_parallel && !tools.is_empty() {
        tool_choice = Some(match tool_choice {
            None | Some(ToolChoice::Auto { .. }) => ToolChoice::Auto {
                disable_parallel_tool_use: Some(true),
            },
            Some(ToolChoice::Any { .. }) => ToolChoice::Any {
                disable_parallel_tool_use: Some(true),
            },
            Some(ToolChoice::Tool { name, .. }) => ToolChoice::Tool {
                name,
                disable_parallel_tool_use: Some(true),
            },
            Some(ToolChoice::None) => ToolChoice::None,
        });
    }
    if tools.is_empty() && !matches!(tool_choice, Some(ToolChoice::None)) {
        tool_choice = None;
    }

    let mut max_tokens = req.max_output_tokens().unwrap_or(opts.default_max_tokens);
    let thinking = match (
        &req.thinking,
        req.reasoning_effort.as_deref().and_then(effort_budget),
    ) {
        (Some(t), _) => Some(t.clone()),
        (None, Some(budget)) => Some(json!({"type": "enabled", "budget_tokens": budget})),
        (None, None) => None,
    };
    let thinking_on = thinking.as_ref().is_some_and(|t| t["type"] == "enabled");
    if let Some(budget) = thinking.as_ref().and_then(|t| t["budget_tokens"].as_u64()) {
        let budget = u32::try_from(budget).unwrap_or(u32::MAX);
        if max_tokens <= budget {
            // Anthropic requires budget_tokens < max_tokens: the budget comes on top.
            max_tokens = max_tokens.saturating_add(budget);
        }
    }
    let (mut temperature, mut top_p) = (req.temperature.map(|t| t.clamp(0.0, 1.0)), req.top_p);
    if thinking_on {
        // Anthropic accepts neither a custom temperature nor top_p with thinking on.
        if temperature.take().is_some() {
            dropped.push("temperature".to_owned());
        }
        if top_p.take().is_some() {
            dropped.push("top_p".to_owned());
        }
        if matches!(
            tool_choice,
            Some(ToolChoice::Any { .. } | ToolChoice::Tool { .. })
        ) {
            // Forced tools are rejected with thinking on; let the model choose.
            tool_choice = Some(ToolChoice::Auto {
                disable_parallel_tool_use: no_parallel.then_some(true),
            });
        }
    }
    dropped.sort();
    dropped.dedup();
    Ok(Translated {
        request: MessagesRequest {
            model: opts.upstream_model.to_owned(),
            max_tokens,
            messages,
            system,
            stop_sequences: req
                .stop
                .as_ref()
                .map(|s| s.as_vec().into_iter().map(str::to_owned).collect()),
            temperature,
            top_p,
            top_k: None,
            stream: req.is_stream().then_some(true),
            tools: (!tools.is_empty()).then_some(tools),
            tool_choice,
            metadata: req.user.as_ref().map(|u| Metadata {
                user_id: Some(u.clone()),
            }),
            thinking,
        },
        dropped,
        json_mode,
    })
}

fn legacy_function_choice(v: &Value) -> Option<ToolChoice> {
    match v {
        Value::String(s) if s == "none" => Some(ToolChoice::None),
        Value::String(s) if s == "auto" => Some(ToolChoice::Auto {
            disable_parallel_tool_use: None,
        }),
        Value::Object(o) => o
            .get("name")
            .and_then(Value::as_str)
            .map(|n| ToolChoice::Tool {
                name: n.to_owned(),
                disable_parallel_tool_use: None,
            }),
        _ => None,
    }
}

/// A tool name Anthropic accepts: `[a-zA-Z0-9_-]{1,64}`.
pub(crate) fn tool_name(name: &str) -> String {
    let cleaned: String = name
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || *c == '_' || *c == '-')
        .take(64)
        .collect();
    if cleaned.is_empty() {
        "json_response".to_owned()
    } else {
        cleaned
    }
}

fn tool(name: &str, description: Option<&str>, parameters: Option<&Value>) -> Tool {
    Tool {
        name: name.to_owned(),
        description: description.map(str::to_owned),
        input_schema: parameters
            .cloned()
            .unwrap_or_else(|| json!({"type": "object", "properties": {}})),
        cache_control: None,
    }
}

/// The id used for a legacy `function_call` and its `function` result.
fn legacy_call_id(name: &str) -> String {
    format!("call_fn_{name}")
}

/// System/developer messages → `system`; the rest → alternating Anthropic turns.
fn convert_messages(
    msgs: &[ChatMessage],
    dropped: &mut Vec<String>,
) -> Result<(Option<System>, Vec<Message>), Error> {
    let mut system: Vec<Block> = Vec::new();
    let mut turns: Vec<Message> = Vec::new();
    for (i, m) in msgs.iter().enumerate() {
        match m.role {
            Role::System | Role::Developer => system.extend(text_blocks(m.content.as_ref())),
            Role::User => {
                let blocks = user_blocks(m.content.as_ref(), i, dropped);
                push(&mut turns, ARole::User, blocks);
            }
            Role::Assistant => {
                let mut blocks = Vec::new();
                for tb in m.thinking_blocks.iter().flatten() {
                    match tb.kind.as_str() {
                        "thinking" => blocks.push(Block::Thinking {
                            thinking: tb.thinking.clone().unwrap_or_default(),
                            signature: tb.signature.clone().unwrap_or_default(),
                        }),
                        "redacted_thinking" => blocks.push(Block::RedactedThinking {
                            data: tb.data.clone().unwrap_or_default(),
                        }),
                        _ => {}
                    }
                }
                blocks.extend(text_blocks(m.content.as_ref()));
                for (j, tc) in m.tool_calls.iter().flatten().enumerate() {
                    blocks.push(Block::ToolUse {
                        id: tc.id.clone(),
                        name: tc.function.name.clone(),
                        input: arguments(
                            &tc.function.arguments,
                            &format!("messages[{i}].tool_calls[{j}].function.arguments"),
                        )?,
                        cache_control: None,
                    });
                }
                if let Some(fc) = &m.function_call {
                    blocks.push(Block::ToolUse {
                        id: legacy_call_id(&fc.name),
                        name: fc.name.clone(),
                        input: arguments(
                            &fc.arguments,
                            &format!("messages[{i}].function_call.arguments"),
                        )?,
                        cache_control: None,
                    });
                }
                push(&mut turns, ARole::Assistant, blocks);
            }
            Role::Tool | Role::Function => {
                let id = match m.role {
                    Role::Tool => m.tool_call_id.clone().unwrap_or_default(),
                    _ => legacy_call_id(m.name.as_deref().unwrap_or_default()),
                };
                let content = match &m.content {
                    Some(MessageContent::Parts(parts)) => ToolResultContent::Blocks(
                        parts
                            .iter()
                            .filter_map(|p| part_block(p, i, dropped))
                            .collect(),
                    ),
                    Some(MessageContent::Text(s)) => ToolResultContent::Text(s.clone()),
                    None => ToolResultContent::Text(String::new()),
                };
                let block = Block::ToolResult {
                    tool_use_id: id,
                    content,
                    is_error: None,
                    cache_control: None,
                };
                // Tool results lead their user turn, before any text of the user's own.
                match turns.last_mut() {
                    Some(Message {
                        role: ARole::User,
                        content: Content::Blocks(b),
                    }) => {
                        let at = b
                            .iter()
                            .take_while(|x| matches!(x, Block::ToolResult { .. }))
                            .count();
                        b.insert(at, block);
                    }
                    _ => turns.push(Message {
                        role: ARole::User,
                        content: Content::Blocks(vec![block]),
                    }),
                }
            }
        }
    }
    let system = if system.is_empty() {
        None
    } else if system.iter().any(|b| {
        matches!(
            b,
            Block::Text {
                cache_control: Some(_),
                ..
            }
        )
    }) {
        Some(System::Blocks(system))
    } else {
        let joined: Vec<String> = system
            .into_iter()
            .filter_map(|b| match b {
                Block::Text { text, .. } => Some(text),
                _ => None,
            })
            .collect();
        Some(System::Text(joined.join("\n\n")))
    };
    Ok((system, turns))
}

/// Appends blocks as a turn, merging with the previous turn of the same role.
fn push(turns: &mut Vec<Message>, role: ARole, blocks: Vec<Block>) {
    if blocks.is_empty() {
        return;
    }
    if let Some(Message {
        role: last,
        content: Content::Blocks(b),
    }) = turns.last_mut()
    {
        if *last == role {
            b.extend(blocks);
            return;
        }
    }
    turns.push(Message {
        role,
        content: Content::Blocks(blocks),
    });
}

fn arguments(args: &str, param: &str) -> Result<Value, Error> {
    if args.trim().is_empty() {
        return Ok(json!({}));
    }
    match serde_json::from_str::<Value>(args) {
        Ok(v @ Value::Object(_)) => Ok(v),
        _ => Err(Error {
            message: format!("'{param}' must be a JSON object to be sent to an Anthropic model."),
            param: Some(param.to_owned()),
        }),
    }
}

/// Non-empty text blocks of a system or assistant message (cache_control kept per part).
fn text_blocks(content: Option<&MessageContent>) -> Vec<Block> {
    match content {
        None => Vec::new(),
        Some(MessageContent::Text(s)) if s.is_empty() => Vec::new(),
        Some(MessageContent::Text(s)) => vec![Block::Text {
            text: s.clone(),
            cache_control: None,
        }],
        Some(MessageContent::Parts(parts)) => parts
            .iter()
            .filter_map(|p| {
                let text = p.text.clone().filter(|t| !t.is_empty())?;
                Some(Block::Text {
                    text,
                    cache_control: p.cache_control.clone(),
                })
            })
            .collect(),
    }
}

fn user_blocks(
    content: Option<&MessageContent>,
    i: usize,
    dropped: &mut Vec<String>,
) -> Vec<Block> {
    match content {
        None => Vec::new(),
        Some(MessageContent::Text(s)) => vec![Block::Text {
            text: s.clone(),
            cache_control: None,
        }],
        Some(MessageContent::Parts(parts)) => parts
            .iter()
            .filter_map(|p| part_block(p, i, dropped))
            .collect(),
    }
}

fn part_block(p: &ContentPart, i: usize, dropped: &mut Vec<String>) -> Option<Block> {
    match p.kind.as_str() {
        "text" | "input_text" => {
            let text = p.text.clone().filter(|t| !t.is_empty())?;
            Some(Block::Text {
                text,
                cache_control: p.cache_control.clone(),
            })
        }
        "image_url" => {
            let url = match p.image_url.as_ref()? {
                ImageUrl::Object { url, .. } | ImageUrl::Url(url) => url,
            };
            Some(Block::Image {
                source: image_source(url),
                cache_control: p.cache_control.clone(),
            })
        }
        other => {
            dropped.push(format!("messages[{i}].content[type={other}]"));
            None
        }
    }
}

/// `data:<media>;base64,<data>` → base64 source; anything else → URL source.
fn image_source(url: &str) -> ImageSource {
    if let Some(rest) = url.strip_prefix("data:") {
        if let Some((meta, data)) = rest.split_once(',') {
            if let Some(media) = meta.strip_suffix(";base64") {
                return ImageSource::Base64 {
                    media_type: media.to_owned(),
                    data: data.to_owned(),
                };
            }
        }
    }
    ImageSource::Url {
        url: url.to_owned(),
    }
}
