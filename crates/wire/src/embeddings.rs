//! OpenAI's embeddings API: the request a client sends (`POST /v1/embeddings`). The
//! fields the gateway reads are typed; every other one is kept in `rest` (an
//! OpenAI-shaped upstream gets the client's bytes anyway).

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// `POST /v1/embeddings` (the SDKs' `EmbeddingCreateParams`).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct EmbeddingCreateParams {
    pub model: String,
    pub input: Input,
    /// `"float"` or `"base64"`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub encoding_format: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dimensions: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    /// Every other field, as sent.
    #[serde(flatten)]
    pub rest: Map<String, Value>,
}

/// `input`: text, texts, or token arrays.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(untagged)]
pub enum Input {
    One(String),
    Many(Vec<String>),
    Tokens(Vec<u32>),
    ManyTokens(Vec<Vec<u32>>),
}
