//! OpenAI embeddings ↔ Gemini `batchEmbedContents` (one request per input, in order).

use jusinfer_wire::gemini::{Content, Part};
use serde::{Deserialize, Serialize};

/// `POST …/models/{model}:batchEmbedContents`.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct BatchEmbedRequest {
    pub requests: Vec<EmbedRequest>,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct EmbedRequest {
    /// `models/{model}`, as the API repeats it per request.
    pub model: String,
    pub content: Content,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub output_dimensionality: Option<u32>,
}

#[derive(Debug, Clone, Deserialize, PartialEq)]
pub struct BatchEmbedResponse {
    #[serde(default)]
    pub embeddings: Vec<Embedding>,
}

#[derive(Debug, Clone, Deserialize, PartialEq)]
pub struct Embedding {
    #[serde(default)]
    pub values: Vec<f64>,
}

/// The request for `inputs` (OpenAI's `dimensions` → `outputDimensionality`).
pub fn request(inputs: &[String], model: &str, dimensions: Option<u32>) -> BatchEmbedRequest {
    let model = format!("models/{}", model.strip_prefix("models/").unwrap_or(model));
    BatchEmbedRequest {
        requests: inputs
            .iter()
            .map(|text| EmbedRequest {
                model: model.clone(),
                content: Content {
                    role: None,
                    parts: vec![Part {
                        text: Some(text.clone()),
                        ..Part::default()
                    }],
                },
                output_dimensionality: dimensions,
            })
            .collect(),
    }
}
