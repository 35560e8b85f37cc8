//! OpenAI's Responses API: the request a client sends (`POST /v1/responses`).
//!
//! The fields the gateway reads are typed; every other field is kept in `rest` as the
//! client sent it (an upstream that speaks Responses gets it, a translation names it
//! dropped). Input items stay JSON: `translate::responses` checks them one by one, with
//! the API's own wording and the item's index in each error.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Number, Value};

/// `POST /v1/responses` (the SDKs' `ResponseCreateParams`).
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct ResponseCreateParams {
    pub model: String,
    /// A string, or an array of input items.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub input: Option<Value>,
    /// A string (the API's object echoes other shapes; a translation refuses them).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub instructions: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stream: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stream_options: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub store: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub previous_response_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_output_tokens: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tools: Option<Vec<Value>>,
    /// `"none" | "auto" | "required"` or an object naming a tool.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tool_choice: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parallel_tool_calls: Option<bool>,
    /// `format` and `verbosity`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub text: Option<Map<String, Value>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reasoning: Option<Reasoning>,
    /// Numbers as sent (an integer stays one when echoed or forwarded).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub temperature: Option<Number>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub top_p: Option<Number>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seed: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service_tier: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub safety_identifier: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prompt_cache_key: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metadata: Option<Map<String, Value>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub include: Option<Vec<String>>,
    /// `"auto" | "disabled"`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub truncation: Option<String>,
    /// Every other field, as sent.
    #[serde(flatten)]
    pub rest: Map<String, Value>,
}

/// `reasoning`.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct Reasoning {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub effort: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub summary: Option<String>,
    #[serde(flatten)]
    pub rest: Map<String, Value>,
}
