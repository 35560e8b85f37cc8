//! OpenAI embeddings ↔ the embedding models on Bedrock, through InvokeModel (their own
//! bodies; no recording holds them, so this follows AWS's model-parameter docs):
//!
//! - Amazon Titan Text Embeddings (`amazon.titan-embed-text-v1`, `-v2:0`): one text per
//!   call, `{"inputText", "dimensions"? (v2: 256, 512 or 1024)}` → `{"embedding",
//!   "inputTextTokenCount"}`.
//! - Cohere Embed (`cohere.embed-english-v3`, `-multilingual-v3`, `cohere.embed-v4:0`): up
//!   to [`COHERE_BATCH`] texts a call, `{"texts", "input_type": "search_document",
//!   "output_dimension"? (v4)}` → `{"embeddings": [[…]]}` (or `{"float": [[…]]}` by type).

use serde::Deserialize;
use serde_json::{json, Value};

/// Texts one Cohere call takes (docs).
pub const COHERE_BATCH: usize = 96;

/// The embedding model families on Bedrock.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Family {
    /// Titan Text Embeddings; `v2` takes `dimensions`.
    Titan { v2: bool },
    /// Cohere Embed; `v4` takes `output_dimension`.
    Cohere { v4: bool },
}

impl Family {
    /// The family of a Bedrock model id (a cross-region or ARN form too), if it embeds.
    pub fn of(model: &str) -> Option<Self> {
        if model.contains("amazon.titan-embed-text") {
            Some(Self::Titan {
                v2: model.contains("text-v2"),
            })
        } else if model.contains("cohere.embed") {
            Some(Self::Cohere {
                v4: model.contains("embed-v4"),
            })
        } else {
            None
        }
    }
}

/// Why a request cannot be embedded as asked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refused(pub String);

/// The InvokeModel bodies for `inputs`, in order.
pub fn requests(
    family: Family,
    inputs: &[String],
    dimensions: Option<u32>,
) -> Result<Vec<Value>, Refused> {
    match family {
        Family::Titan { v2 } => {
            if let Some(d) = dimensions {
                if !v2 || ![256, 512, 1024].contains(&d) {
                    return Err(Refused(format!(
                        "dimensions = {d}: this model embeds in {}",
                        if v2 { "256, 512 or 1024" } else { "1536 only" }
                    )));
                }
            }
            Ok(inputs
                .iter()
                .map(|t| match dimensions {
                    Some(d) => json!({"inputText": t, "dimensions": d}),
                    None => json!({"inputText": t}),
                })
                .collect())
        }
        Family::Cohere { v4 } => {
            if dimensions.is_some() && !v4 {
                return Err(Refused(
                    "dimensions: this model embeds in one size only".to_owned(),
                ));
            }
            Ok(inputs
                .chunks(COHERE_BATCH)
                .map(|texts| {
                    let mut b = json!({"texts": texts, "input_type": "search_document"});
                    if let Some(d) = dimensions {
                        b["output_dimension"] = json!(d);
                    }
                    b
                })
                .collect())
        }
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct TitanAnswer {
    embedding: Vec<f64>,
    #[serde(default)]
    input_text_token_count: Option<u64>,
}

#[derive(Deserialize)]
struct CohereAnswer {
    embeddings: CohereEmbeddings,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum CohereEmbeddings {
    Floats(Vec<Vec<f64>>),
    ByType { float: Vec<Vec<f64>> },
}

/// The vectors of one answer, and the tokens it counted (Titan counts; Cohere's count is in
/// a header only).
pub fn answer(family: Family, body: &[u8]) -> Result<(Vec<Vec<f64>>, Option<u64>), String> {
    match family {
        Family::Titan { .. } => {
            let a: TitanAnswer = serde_json::from_slice(body)
                .map_err(|e| format!("not a Titan embeddings answer ({e})"))?;
            Ok((vec![a.embedding], a.input_text_token_count))
        }
        Family::Cohere { .. } => {
            let a: CohereAnswer = serde_json::from_slice(body)
                .map_err(|e| format!("not a Cohere embeddings answer ({e})"))?;
            let v = match a.embeddings {
                CohereEmbeddings::Floats(v) | CohereEmbeddings::ByType { float: v } => v,
            };
            Ok((v, None))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn families_and_bodies_follow_the_docs() {
        assert_eq!(
            Family::of("amazon.titan-embed-text-v2:0"),
            Some(Family::Titan { v2: true })
        );
        assert_eq!(
            Family::of("us.cohere.embed-v4:0"),
            Some(Family::Cohere { v4: true })
        );
        assert_eq!(Family::of("amazon.nova-pro-v1:0"), None);
        let inputs = vec!["a".to_owned(), "b".to_owned()];
        let t = requests(Family::Titan { v2: true }, &inputs, Some(256)).expect("titan");
        assert_eq!(
            t,
            vec![
                json!({"inputText": "a", "dimensions": 256}),
                json!({"inputText": "b", "dimensions": 256})
            ]
        );
        assert!(requests(Family::Titan { v2: true }, &inputs, Some(300)).is_err());
        assert!(requests(Family::Titan { v2: false }, &inputs, Some(256)).is_err());
        let many: Vec<String> = (0..100).map(|i| i.to_string()).collect();
        let c = requests(Family::Cohere { v4: false }, &many, None).expect("cohere");
        assert_eq!(c.len(), 2);
        assert_eq!(c[0]["texts"].as_array().map(Vec::len), Some(96));
        assert_eq!(c[0]["input_type"], "search_document");
        assert!(requests(Family::Cohere { v4: false }, &inputs, Some(256)).is_err());
    }

    #[test]
    fn answers_of_both_shapes_are_read() {
        let (v, n) = answer(
            Family::Titan { v2: true },
            br#"{"embedding":[0.5,-0.25],"inputTextTokenCount":3,"embeddingsByType":{"float":[0.5,-0.25]}}"#,
        )
        .expect("titan");
        assert_eq!((v, n), (vec![vec![0.5, -0.25]], Some(3)));
        let (v, _) = answer(
            Family::Cohere { v4: false },
            br#"{"id":"x","texts":["a","b"],"embeddings":[[1.0],[2.0]],"response_type":"embeddings_floats"}"#,
        )
        .expect("cohere");
        assert_eq!(v, vec![vec![1.0], vec![2.0]]);
        let (v, _) = answer(
            Family::Cohere { v4: true },
            br#"{"id":"x","embeddings":{"float":[[1.0]]},"response_type":"embeddings_by_type"}"#,
        )
        .expect("by type");
        assert_eq!(v, vec![vec![1.0]]);
        assert!(answer(Family::Titan { v2: true }, b"{}").is_err());
    }
}
