//! The Gemini API's `embedContent` / `batchEmbedContents` inbound: the requests read, the
//! texts they embed, the body for a Gemini upstream (each request's `model` the
//! upstream's), and the answer in the client's shape.

use jusinfer_wire::gemini::Content;
use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};

pub use crate::gemini::embed::{BatchEmbedResponse, Embedding};
pub use crate::messages::request::Error;

/// One `embedContent` request (alone, or one of a batch's `requests`).
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct EmbedContentParams {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model: Option<String>,
    #[serde(default)]
    pub content: Content,
    #[serde(
        default,
        alias = "output_dimensionality",
        skip_serializing_if = "Option::is_none"
    )]
    pub output_dimensionality: Option<u32>,
    /// `taskType`, `title`, …: kept for a Gemini upstream.
    #[serde(flatten)]
    pub rest: Map<String, Value>,
}

/// `batchEmbedContents`.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct BatchEmbedParams {
    #[serde(default)]
    pub requests: Vec<EmbedContentParams>,
}

/// The text each request embeds (its text parts, joined); a part that is not text is
/// refused (the other providers embed text).
pub fn texts(reqs: &[EmbedContentParams], at: &str) -> Result<Vec<String>, Error> {
    reqs.iter()
        .enumerate()
        .map(|(i, r)| {
            let mut s = String::new();
            for (j, p) in r.content.parts.iter().enumerate() {
                match &p.text {
                    Some(t) => s.push_str(t),
                    None => {
                        return Err(Error {
                            message: "only text parts can be embedded by this model".into(),
                            param: format!("{at}[{i}].content.parts[{j}]"),
                        })
                    }
                }
            }
            Ok(s)
        })
        .collect()
}

/// The `batchEmbedContents` body for a Gemini upstream serving `model`.
pub fn batch_for(reqs: &[EmbedContentParams], model: &str) -> BatchEmbedParams {
    let name = format!("models/{}", model.strip_prefix("models/").unwrap_or(model));
    BatchEmbedParams {
        requests: reqs
            .iter()
            .map(|r| EmbedContentParams {
                model: Some(name.clone()),
                ..r.clone()
            })
            .collect(),
    }
}

/// The client's answer: `{"embeddings": [...]}` for a batch, `{"embedding": …}` for one.
pub fn answer(vectors: Vec<Vec<f64>>, batch: bool) -> Value {
    let mut list: Vec<Value> = vectors.into_iter().map(|v| json!({"values": v})).collect();
    if batch {
        json!({"embeddings": list})
    } else {
        json!({"embedding": list.pop().unwrap_or_else(|| json!({"values": []}))})
    }
}
