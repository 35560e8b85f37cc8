//! Anthropic Messages response → `chat.completion`.

use jusinfer_wire::anthropic::{Block, MessagesResponse};
use jusinfer_wire::chat::{
    AssistantMessage, ChatCompletion, Choice, FunctionCall, ThinkingBlock, ToolCall,
};
use serde_json::Value;

use super::{finish_reason, usage, JsonMode, WRAPPED_KEY};

/// The JSON text that JSON mode returns as content, from the forced tool's input.
pub fn json_mode_content(input: &Value, mode: &JsonMode) -> String {
    let v = if mode.wrapped {
        input.get(WRAPPED_KEY).unwrap_or(&Value::Null)
    } else {
        input
    };
    v.to_string()
}

/// `created` is the caller's clock (this module reads none).
pub fn messages_to_chat(
    resp: &MessagesResponse,
    created: u64,
    json_mode: Option<&JsonMode>,
) -> ChatCompletion {
    let mut text = String::new();
    let mut has_text = false;
    let mut calls = Vec::new();
    let mut reasoning = String::new();
    let mut thinking_blocks = Vec::new();
    for b in &resp.content {
        match b {
            Block::Text { text: t, .. } => {
                text.push_str(t);
                has_text = true;
            }
            Block::ToolUse { name, input, .. }
                if json_mode.is_some_and(|m| &m.tool_name == name) =>
            {
                if let Some(m) = json_mode {
                    text.push_str(&json_mode_content(input, m));
                    has_text = true;
                }
            }
            Block::ToolUse {
                id, name, input, ..
            } => calls.push(ToolCall {
                id: id.clone(),
                kind: "function".to_owned(),
                function: FunctionCall {
                    name: name.clone(),
                    arguments: input.to_string(),
                },
            }),
            Block::Thinking {
                thinking,
                signature,
            } => {
                reasoning.push_str(thinking);
                thinking_blocks.push(ThinkingBlock {
                    kind: "thinking".to_owned(),
                    thinking: Some(thinking.clone()),
                    signature: Some(signature.clone()),
                    data: None,
                    index: None,
                });
            }
            Block::RedactedThinking { data } => thinking_blocks.push(ThinkingBlock {
                kind: "redacted_thinking".to_owned(),
                thinking: None,
                signature: None,
                data: Some(data.clone()),
                index: None,
            }),
            // Tool results, images and blocks newer than this code carry nothing the
            // OpenAI message can hold: dropped.
            Block::ToolResult { .. } | Block::Image { .. } | Block::Unknown(_) => {}
        }
    }
    let in_json_mode = json_mode.is_some() && calls.is_empty();
    let mut finish = finish_reason(resp.stop_reason.as_deref(), in_json_mode);
    if finish == "tool_calls" && calls.is_empty() {
        finish = "stop";
    }
    ChatCompletion {
        id: format!("chatcmpl-{}", resp.id),
        object: "chat.completion",
        created,
        model: resp.model.clone(),
        choices: vec![Choice {
            index: 0,
            message: AssistantMessage {
                role: "assistant",
                content: (has_text || calls.is_empty()).then_some(text),
                refusal: None,
                annotations: Vec::new(),
                tool_calls: (!calls.is_empty()).then_some(calls),
                reasoning_content: (!reasoning.is_empty()).then_some(reasoning),
                thinking_blocks: (!thinking_blocks.is_empty()).then_some(thinking_blocks),
            },
            logprobs: None,
            finish_reason: finish,
        }],
        usage: usage(&resp.usage),
        service_tier: Some("default".to_owned()),
        system_fingerprint: None,
    }
}
