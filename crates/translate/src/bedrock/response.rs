//! A `converse` answer → a `chat.completion` (MAPPING.md §8.3–8.5).

use jusinfer_wire::bedrock::ConverseResponse;
use jusinfer_wire::chat::{
    AssistantMessage, ChatCompletion, Choice, FunctionCall, ThinkingBlock, ToolCall,
};

use super::{finish_reason, usage};
use crate::anthropic::response::json_mode_content;
use crate::anthropic::JsonMode;

/// `resp` as Chat. Converse names neither the model nor the answer: `model` is the one
/// asked for, `id` the caller's for the request, `created` the caller's clock. In JSON
/// mode the forced tool's input is the content.
pub fn to_chat(
    resp: &ConverseResponse,
    model: &str,
    id: &str,
    created: u64,
    json_mode: Option<&JsonMode>,
) -> ChatCompletion {
    let mut text = String::new();
    let mut has_text = false;
    let mut reasoning = String::new();
    let mut thinking = Vec::new();
    let mut calls = Vec::new();
    let blocks = resp.output.message.as_ref().map(|m| m.content.as_slice());
    for b in blocks.unwrap_or_default() {
        if let Some(t) = &b.text {
            text.push_str(t);
            has_text = true;
        } else if let Some((u, m)) = b
            .tool_use
            .as_ref()
            .and_then(|u| json_mode.filter(|m| m.tool_name == u.name).map(|m| (u, m)))
        {
            text.push_str(&json_mode_content(&u.input, m));
            has_text = true;
        } else if let Some(u) = &b.tool_use {
            calls.push(ToolCall {
                id: u.tool_use_id.clone(),
                kind: "function".to_owned(),
                function: FunctionCall {
                    name: u.name.clone(),
                    arguments: u.input.to_string(),
                },
            });
        } else if let Some(r) = &b.reasoning_content {
            let index = Some(u32::try_from(thinking.len()).unwrap_or(u32::MAX));
            if let Some(rt) = &r.reasoning_text {
                reasoning.push_str(&rt.text);
                thinking.push(ThinkingBlock {
                    kind: "thinking".to_owned(),
                    thinking: Some(rt.text.clone()),
                    signature: rt.signature.clone(),
                    data: None,
                    index,
                });
            } else if let Some(data) = &r.redacted_content {
                thinking.push(ThinkingBlock {
                    kind: "redacted_thinking".to_owned(),
                    thinking: None,
                    signature: None,
                    data: Some(data.clone()),
                    index,
                });
            }
        }
    }
    let mut finish = finish_reason(&resp.stop_reason, !calls.is_empty());
    if json_mode.is_some() && calls.is_empty() && finish == "tool_calls" {
        // Only JSON mode's tool was called: an answer, not a call.
        finish = "stop";
    }
    let id: String = id
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || *c == '-')
        .take(48)
        .collect();
    ChatCompletion {
        id: format!("chatcmpl-{id}"),
        object: "chat.completion",
        created,
        model: model.to_owned(),
        choices: vec![Choice {
            index: 0,
            message: AssistantMessage {
                role: "assistant",
                content: (has_text || calls.is_empty()).then_some(text),
                refusal: None,
                annotations: Vec::new(),
                tool_calls: (!calls.is_empty()).then_some(calls),
                reasoning_content: (!reasoning.is_empty()).then_some(reasoning),
                thinking_blocks: (!thinking.is_empty()).then_some(thinking),
            },
            logprobs: None,
            finish_reason: finish,
        }],
        usage: resp.usage.as_ref().map(usage).unwrap_or_default(),
        service_tier: None,
        system_fingerprint: None,
    }
}
