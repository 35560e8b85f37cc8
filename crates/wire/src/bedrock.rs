//! Amazon Bedrock Converse: the request the gateway writes (borrowed from the client's
//! request where it can be: written once, never read back) and the answers it reads
//! (`converse` and the `converse-stream` event payloads), as the recordings in
//! `fixtures/bedrock/` show them. Every stream payload also carries a random padding field
//! `p`, never read.

use std::borrow::Cow;

use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use serde_json::Value;

// ---- the request the gateway writes ----

/// A `converse` / `converse-stream` body.
#[derive(Debug, Clone, Default, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ConverseRequest<'a> {
    pub messages: Vec<RequestMessage<'a>>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub system: Vec<RequestBlock<'a>>,
    #[serde(skip_serializing_if = "InferenceConfig::is_empty")]
    pub inference_config: InferenceConfig<'a>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tool_config: Option<ToolConfig<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub additional_model_request_fields: Option<AdditionalFields>,
}

/// One turn: `user` or `assistant`.
#[derive(Debug, Clone, Serialize)]
pub struct RequestMessage<'a> {
    pub role: &'static str,
    pub content: Vec<RequestBlock<'a>>,
}

/// One content block, written as an object with exactly one key (`{"text": …}`).
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub enum RequestBlock<'a> {
    Text(Cow<'a, str>),
    Image(Image<'a>),
    ToolUse(ToolUseBlock<'a>),
    ToolResult(ToolResultBlock<'a>),
    ReasoningContent(ReasoningBlock<'a>),
    CachePoint(CachePoint),
}

/// An image's bytes (base64) and format (`png`, `jpeg`, `gif`, `webp`).
#[derive(Debug, Clone, Serialize)]
pub struct Image<'a> {
    pub format: &'static str,
    pub source: ImageSource<'a>,
}

#[derive(Debug, Clone, Serialize)]
pub struct ImageSource<'a> {
    pub bytes: &'a str,
}

/// A call the assistant made; `input` is the call's arguments (a JSON object) as given.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ToolUseBlock<'a> {
    pub tool_use_id: &'a str,
    pub name: &'a str,
    pub input: Cow<'a, RawValue>,
}

/// A call's result.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ToolResultBlock<'a> {
    pub tool_use_id: &'a str,
    pub content: Vec<ToolResultContent<'a>>,
}

/// A result's content: a JSON object as `json`, anything else as `text`.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub enum ToolResultContent<'a> {
    Json(Cow<'a, RawValue>),
    Text(Cow<'a, str>),
}

/// Reasoning sent back: its text and signature, or the redacted bytes.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub enum ReasoningBlock<'a> {
    ReasoningText {
        text: &'a str,
        #[serde(skip_serializing_if = "Option::is_none")]
        signature: Option<&'a str>,
    },
    RedactedContent(&'a str),
}

/// `{"type": "default"}`: cache the prompt up to here.
#[derive(Debug, Clone, Serialize)]
pub struct CachePoint {
    #[serde(rename = "type")]
    pub kind: &'static str,
}

/// `inferenceConfig`.
#[derive(Debug, Clone, Default, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct InferenceConfig<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_tokens: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub temperature: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub top_p: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stop_sequences: Option<Vec<&'a str>>,
}

impl InferenceConfig<'_> {
    pub fn is_empty(&self) -> bool {
        self.max_tokens.is_none()
            && self.temperature.is_none()
            && self.top_p.is_none()
            && self.stop_sequences.is_none()
    }
}

/// `toolConfig`.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ToolConfig<'a> {
    pub tools: Vec<Tool<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tool_choice: Option<ToolChoice<'a>>,
}

/// `{"toolSpec": …}`.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Tool<'a> {
    pub tool_spec: ToolSpec<'a>,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ToolSpec<'a> {
    pub name: Cow<'a, str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub description: Option<&'a str>,
    pub input_schema: InputSchema<'a>,
}

/// `{"json": <JSON Schema>}`.
#[derive(Debug, Clone, Serialize)]
pub struct InputSchema<'a> {
    pub json: Cow<'a, Value>,
}

/// `toolChoice`: `{"auto": {}}`, `{"any": {}}` or `{"tool": {"name": …}}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub enum ToolChoice<'a> {
    Auto {},
    Any {},
    Tool { name: Cow<'a, str> },
}

/// `additionalModelRequestFields` (Claude's thinking, the only one written).
#[derive(Debug, Clone, Serialize)]
pub struct AdditionalFields {
    pub thinking: Thinking,
}

#[derive(Debug, Clone, Serialize)]
pub struct Thinking {
    #[serde(rename = "type")]
    pub kind: &'static str,
    pub budget_tokens: u64,
}

// ---- the answers the gateway reads ----

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
