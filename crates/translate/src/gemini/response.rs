//! A Gemini `generateContent` answer → a `chat.completion` (MAPPING.md §8.3–8.5).

use jusinfer_wire::chat::{AssistantMessage, ChatCompletion, Choice, FunctionCall, ToolCall};
use jusinfer_wire::gemini::GenerateContentResponse;

use super::{call_id, finish_reason, usage};

/// A prompt Gemini refused before generating (`promptFeedback.blockReason`, no
/// candidates): the client's error, not an empty answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Blocked {
    pub reason: String,
    pub message: Option<String>,
}

impl Blocked {
    /// Why, in a sentence for the client.
    pub fn describe(&self) -> String {
        match &self.message {
            Some(m) => format!(
                "The prompt was blocked by the provider ({}): {m}",
                self.reason
            ),
            None => format!("The prompt was blocked by the provider ({}).", self.reason),
        }
    }
}

/// `resp` as Chat. `model` names the model when Gemini's `modelVersion` is absent;
/// `created` is the caller's clock; call ids are minted from `id_seed` where Gemini sent
/// none.
pub fn to_chat(
    resp: &GenerateContentResponse,
    model: &str,
    created: u64,
    id_seed: &str,
) -> Result<ChatCompletion, Blocked> {
    if resp.candidates.is_empty() {
        if let Some(reason) = resp
            .prompt_feedback
            .as_ref()
            .and_then(|f| f.block_reason.clone())
        {
            return Err(Blocked {
                reason,
                message: resp
                    .prompt_feedback
                    .as_ref()
                    .and_then(|f| f.block_reason_message.clone()),
            });
        }
    }
    let seed = resp.response_id.as_deref().unwrap_or(id_seed);
    let seed: String = seed
        .chars()
        .filter(char::is_ascii_alphanumeric)
        .take(24)
        .collect();
    let candidate = resp.candidates.first();
    let mut text = String::new();
    let mut has_text = false;
    let mut reasoning = String::new();
    let mut calls = Vec::new();
    for p in candidate
        .and_then(|c| c.content.as_ref())
        .map(|c| c.parts.as_slice())
        .unwrap_or_default()
    {
        if let Some(fc) = &p.function_call {
            calls.push(ToolCall {
                id: call_id(
                    fc.id.as_deref(),
                    &seed,
                    calls.len(),
                    p.thought_signature.as_deref(),
                ),
                kind: "function".to_owned(),
                function: FunctionCall {
                    name: fc.name.clone(),
                    arguments: fc.args.to_string(),
                },
            });
        } else if let Some(t) = &p.text {
            if p.thought == Some(true) {
                reasoning.push_str(t);
            } else {
                text.push_str(t);
                has_text = true;
            }
        }
    }
    let finish = finish_reason(
        candidate.and_then(|c| c.finish_reason.as_deref()),
        !calls.is_empty(),
    );
    Ok(ChatCompletion {
        id: format!("chatcmpl-{seed}"),
        object: "chat.completion",
        created,
        model: resp
            .model_version
            .clone()
            .unwrap_or_else(|| model.to_owned()),
        choices: vec![Choice {
            index: 0,
            message: AssistantMessage {
                role: "assistant",
                content: (has_text || calls.is_empty()).then_some(text),
                refusal: None,
                annotations: Vec::new(),
                tool_calls: (!calls.is_empty()).then_some(calls),
                reasoning_content: (!reasoning.is_empty()).then_some(reasoning),
                thinking_blocks: None,
            },
            logprobs: None,
            finish_reason: if resp.candidates.is_empty() {
                "content_filter"
            } else {
                finish
            },
        }],
        usage: resp.usage_metadata.as_ref().map(usage).unwrap_or_default(),
        service_tier: None,
        system_fingerprint: None,
    })
}
