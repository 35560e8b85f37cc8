//! Google Gemini: `streamGenerateContent?alt=sse` chunks ↔ `GenerateContentResponse` body.
//!
//! Every chunk is a whole `GenerateContentResponse` holding only the new parts. [`collect`]
//! merges them: candidates by `index` (their position when absent), their parts appended
//! in order with adjacent plain text parts joined (thought parts only with thought parts;
//! a `thoughtSignature` stays on the part that took its text; an empty text part after
//! another part dropped; `functionCall` and other parts kept whole); every other candidate
//! field (`finishReason`, `safetyRatings`, `citationMetadata`, …) and every top-level field
//! (`usageMetadata`, `modelVersion`, `responseId`, …) from the last chunk that has it.
//! There is no end event: the stream is complete when every candidate has a
//! `finishReason`. A chunk with an `error` → `None`.
//!
//! [`replay`] sends the body as one chunk, `data: <body>` and CRLF CRLF, as Google frames
//! events ([`crate::generate::stream::frame`]).

use std::collections::BTreeMap;

use bytes::Bytes;
use serde_json::{Map, Value};

use super::{append, events, object};

#[derive(Debug, Default)]
struct Candidate {
    /// The fields in first-seen order; `content` is built at the end.
    fields: Map<String, Value>,
    /// `content` without its `parts`, when any chunk had a `content`.
    content: Option<Map<String, Value>>,
    parts: Option<Vec<Value>>,
}

/// A part made of text alone (and the thought flag and signature).
fn plain_text(p: &Map<String, Value>) -> bool {
    p.get("text").is_some_and(Value::is_string)
        && p.keys()
            .all(|k| matches!(k.as_str(), "text" | "thought" | "thoughtSignature"))
}

fn thought(p: &Map<String, Value>) -> bool {
    p.get("thought").and_then(Value::as_bool) == Some(true)
}

/// Appends `part`, joining it to the last part when both are plain text of one kind and do
/// not both carry a signature.
fn push_part(parts: &mut Vec<Value>, part: &Value) {
    if let (Some(p), Some(Value::Object(last))) = (part.as_object(), parts.last_mut()) {
        let sig = p.get("thoughtSignature");
        if plain_text(p)
            && plain_text(last)
            && thought(p) == thought(last)
            && !(sig.is_some() && last.contains_key("thoughtSignature"))
        {
            append(
                last,
                "text",
                p.get("text").and_then(Value::as_str).unwrap_or(""),
            );
            if let Some(s) = sig {
                last.insert("thoughtSignature".into(), s.clone());
            }
            return;
        }
        let empty = p.get("text").and_then(Value::as_str) == Some("") && p.len() == 1;
        if empty {
            return;
        }
    }
    parts.push(part.clone());
}

impl Candidate {
    fn push(&mut self, c: &Map<String, Value>) {
        for (k, v) in c {
            let Some(content) = v.as_object().filter(|_| k == "content") else {
                self.fields.insert(k.clone(), v.clone());
                continue;
            };
            self.fields.entry("content").or_insert(Value::Null);
            let acc = self.content.get_or_insert_with(Map::new);
            for (ck, cv) in content {
                let Some(list) = cv.as_array().filter(|_| ck == "parts") else {
                    acc.insert(ck.clone(), cv.clone());
                    continue;
                };
                acc.entry("parts").or_insert(Value::Null);
                let parts = self.parts.get_or_insert_with(Vec::new);
                for p in list {
                    push_part(parts, p);
                }
            }
        }
    }

    fn into_body(mut self) -> Value {
        if let Some(mut content) = self.content {
            if let Some(parts) = self.parts {
                content.insert("parts".into(), Value::Array(parts));
            }
            self.fields.insert("content".into(), Value::Object(content));
        }
        Value::Object(self.fields)
    }
}

/// The `GenerateContentResponse` of a complete, successful Gemini stream; see the module
/// docs.
pub fn collect(stream: &[u8]) -> Option<Value> {
    let mut body = Map::new();
    let mut candidates: BTreeMap<u64, Candidate> = BTreeMap::new();
    for ev in events(stream)? {
        let chunk = object(&ev.data)?;
        if chunk.contains_key("error") {
            return None;
        }
        for (k, v) in chunk {
            let Some(list) = v.as_array().filter(|_| k == "candidates") else {
                body.insert(k, v);
                continue;
            };
            body.entry("candidates").or_insert(Value::Null);
            for (pos, c) in list.iter().enumerate() {
                let c = c.as_object()?;
                let i = c.get("index").and_then(Value::as_u64).unwrap_or(pos as u64);
                candidates.entry(i).or_default().push(c);
            }
        }
    }
    let finished = |c: &Candidate| c.fields.get("finishReason").is_some_and(Value::is_string);
    if candidates.is_empty() || !candidates.values().all(finished) {
        return None;
    }
    let list = candidates.into_values().map(Candidate::into_body).collect();
    body.insert("candidates".into(), Value::Array(list));
    Some(Value::Object(body))
}

/// A Gemini stream for a stored `GenerateContentResponse`: the body as one chunk.
pub fn replay(body: &Value) -> Option<Vec<Bytes>> {
    body.get("candidates")?.as_array()?;
    Some(vec![crate::generate::stream::frame(body)])
}
