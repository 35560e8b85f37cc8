//! Amazon Bedrock Converse: the answers the gateway reads (`converse` and the
//! `converse-stream` event payloads), as the recordings in `fixtures/bedrock/` show them.
//! Every stream payload also carries a random padding field `p`, never read.

use serde::Deserialize;
use serde_json::Value;

/// A `converse` answer.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ConverseResponse {
    #[serde(default)]
    pub output: Output,
    #[serde(default)]
    pub stop_reason: String,
    #[serde(default)]
    pub usage: Option<TokenUsage>,
}

#[derive(Debug, Clone, Default, Deserialize)]
pub struct Output {
    #[serde(default)]
    pub message: Option<Message>,
}

#[derive(Debug, Clone, Default, Deserialize)]
pub struct Message {
    #[serde(default)]
    pub role: String,
    #[serde(default)]
    pub content: Vec<ContentBlock>,
}

/// One content block: exactly one of its fields is set.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ContentBlock {
    #[serde(default)]
    pub text: Option<String>,
    #[serde(default)]
    pub tool_use: Option<ToolUse>,
    #[serde(default)]
    pub reasoning_content: Option<ReasoningContent>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ToolUse {
    pub tool_use_id: String,
    pub name: String,
    #[serde(default)]
    pub input: Value,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ReasoningContent {
    #[serde(default)]
    pub reasoning_text: Option<ReasoningText>,
    /// Encrypted reasoning, base64: sent back byte for byte.
    #[serde(default)]
    pub redacted_content: Option<String>,
}

#[derive(Debug, Clone, Default, Deserialize)]
pub struct ReasoningText {
    #[serde(default)]
    pub text: String,
    #[serde(default)]
    pub signature: Option<String>,
}

/// Token counts. `inputTokens` excludes the cache reads and writes (as Anthropic's); the
/// `…Count` spellings are older names Bedrock still sends beside the others (both at once,
/// so they are read apart: serde's `alias` would call them a duplicate).
#[derive(Debug, Clone, Copy, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TokenUsage {
    #[serde(default)]
    pub input_tokens: u64,
    #[serde(default)]
    pub output_tokens: u64,
    #[serde(default)]
    pub total_tokens: u64,
    #[serde(default)]
    pub cache_read_input_tokens: Option<u64>,
    #[serde(default)]
    pub cache_read_input_token_count: Option<u64>,
    #[serde(default)]
    pub cache_write_input_tokens: Option<u64>,
    #[serde(default)]
    pub cache_write_input_token_count: Option<u64>,
}

impl TokenUsage {
    /// Tokens read from the prompt cache (either spelling).
    pub fn cache_read(&self) -> u64 {
        self.cache_read_input_tokens
            .or(self.cache_read_input_token_count)
            .unwrap_or(0)
    }

    /// Tokens written to the prompt cache (either spelling).
    pub fn cache_write(&self) -> u64 {
        self.cache_write_input_tokens
            .or(self.cache_write_input_token_count)
            .unwrap_or(0)
    }
}

/// `messageStart`.
#[derive(Debug, Clone, Deserialize)]
pub struct MessageStart {
    #[serde(default)]
    pub role: String,
}

/// `contentBlockStart` (Bedrock sends it for tool use only).
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ContentBlockStart {
    pub content_block_index: u32,
    #[serde(default)]
    pub start: BlockStart,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct BlockStart {
    #[serde(default)]
    pub tool_use: Option<ToolUseStart>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ToolUseStart {
    pub tool_use_id: String,
    pub name: String,
}

/// `contentBlockDelta`.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ContentBlockDelta {
    pub content_block_index: u32,
    #[serde(default)]
    pub delta: BlockDelta,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct BlockDelta {
    #[serde(default)]
    pub text: Option<String>,
    /// `{"input": "<a JSON fragment>"}`.
    #[serde(default)]
    pub tool_use: Option<ToolUseDelta>,
    #[serde(default)]
    pub reasoning_content: Option<ReasoningDelta>,
}

#[derive(Debug, Clone, Default, Deserialize)]
pub struct ToolUseDelta {
    #[serde(default)]
    pub input: String,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ReasoningDelta {
    #[serde(default)]
    pub text: Option<String>,
    #[serde(default)]
    pub signature: Option<String>,
    #[serde(default)]
    pub redacted_content: Option<String>,
}

/// `contentBlockStop`.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ContentBlockStop {
    pub content_block_index: u32,
}

/// `messageStop`.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct MessageStop {
    #[serde(default)]
    pub stop_reason: String,
}

/// `metadata`: the last event, after `messageStop`.
#[derive(Debug, Clone, Deserialize)]
pub struct Metadata {
    #[serde(default)]
    pub usage: Option<TokenUsage>,
}

/// A modeled exception's payload (`:message-type: exception`).
#[derive(Debug, Clone, Default, Deserialize)]
pub struct ExceptionPayload {
    #[serde(default, alias = "Message")]
    pub message: String,
}
