//! Chat Completions ↔ Gemini `generateContent` (AI Studio and Vertex AI), as
//! `shared/fixtures/MAPPING.md` §8 sets out: [`request`] turns a Chat request into a
//! Gemini one, [`response`] a whole answer into a `chat.completion`, [`stream`] the
//! `streamGenerateContent?alt=sse` chunks into Chat chunks.
//!
//! Gemini has no call ids (AI Studio) and wants each call's `thoughtSignature` back on the
//! same part of the next request; Chat has no field for it. So a call's Chat id is minted
//! ([`call_id`]) and carries the signature after [`SIGNATURE_SEP`], re-encoded URL-safe so
//! the id stays `[A-Za-z0-9_-]` (other providers accept it); [`split_call_id`] restores the
//! exact bytes when the client sends the id back.

pub mod embed;
pub mod request;
pub mod response;
pub mod stream;

use jusinfer_wire::chat::{CompletionTokensDetails, PromptTokensDetails, Usage};
use jusinfer_wire::gemini::UsageMetadata;

/// Between a call's id and the thought signature it carries.
pub const SIGNATURE_SEP: &str = "__thought__";

/// The Chat id of a call: Gemini's own `id` when it sent one (Vertex), else minted from
/// `seed` and the call's position; with the part's `thoughtSignature` appended.
pub fn call_id(own: Option<&str>, seed: &str, n: usize, signature: Option<&str>) -> String {
    let mut id = match own.filter(|s| !s.is_empty()) {
        Some(s) => s.to_owned(),
        None => format!("call_{seed}{n}"),
    };
    if let Some(sig) = signature.filter(|s| !s.is_empty()) {
        id.push_str(SIGNATURE_SEP);
        id.extend(sig.chars().filter(|c| *c != '=').map(|c| match c {
            '+' => '-',
            '/' => '_',
            c => c,
        }));
    }
    id
}

/// A Chat call id → the id to send Gemini and the thought signature it carried (in the
/// standard base64 alphabet with its padding, byte for byte what Gemini sent).
pub fn split_call_id(id: &str) -> (&str, Option<String>) {
    let Some((base, sig)) = id.split_once(SIGNATURE_SEP) else {
        return (id, None);
    };
    (base, Some(standard_base64(sig)))
}

/// Drops the thought signatures from a Chat request's call ids (`tool_calls[].id`,
/// `tool_call_id`) for an upstream that is not Gemini: it has no use for them, and some
/// cap an id's length (OpenAI: 40). The ids stay paired (each keeps its own base). Whether
/// anything changed.
pub fn strip_signatures(chat: &mut serde_json::Value) -> bool {
    fn strip(id: &mut serde_json::Value) -> bool {
        let Some(s) = id.as_str() else {
            return false;
        };
        let (base, sig) = split_call_id(s);
        if sig.is_none() {
            return false;
        }
        *id = serde_json::Value::String(base.to_owned());
        true
    }
    let mut changed = false;
    let Some(messages) = chat.get_mut("messages").and_then(|m| m.as_array_mut()) else {
        return false;
    };
    for m in messages {
        if let Some(id) = m.get_mut("tool_call_id") {
            changed |= strip(id);
        }
        if let Some(calls) = m.get_mut("tool_calls").and_then(|c| c.as_array_mut()) {
            for c in calls {
                if let Some(id) = c.get_mut("id") {
                    changed |= strip(id);
                }
            }
        }
    }
    changed
}

/// Base64 in the standard alphabet with its padding, whichever alphabet `s` is in (Google's
/// SDKs send bytes fields back URL-safe): the same bytes, written as the APIs that sent
/// them wrote them.
pub fn standard_base64(s: &str) -> String {
    let mut out: String = s
        .chars()
        .map(|c| match c {
            '-' => '+',
            '_' => '/',
            c => c,
        })
        .collect();
    while !out.len().is_multiple_of(4) {
        out.push('=');
    }
    out
}

/// Gemini's `finishReason` → Chat's. Gemini says `STOP` after function calls too.
pub fn finish_reason(reason: Option<&str>, has_calls: bool) -> &'static str {
    match reason {
        Some("MAX_TOKENS") => "length",
        Some(
            "SAFETY" | "RECITATION" | "BLOCKLIST" | "PROHIBITED_CONTENT" | "SPII" | "IMAGE_SAFETY"
            | "MODEL_ARMOR" | "LANGUAGE",
        ) => "content_filter",
        _ if has_calls => "tool_calls",
        // `STOP`, and `MALFORMED_FUNCTION_CALL`, `OTHER`, … (MAPPING §8.4: stop).
        _ => "stop",
    }
}

/// `usageMetadata` → Chat usage: the prompt includes the cached tokens (and tool-use
/// prompt tokens), the completion includes the thoughts.
pub fn usage(u: &UsageMetadata) -> Usage {
    let prompt = u.prompt_token_count + u.tool_use_prompt_token_count;
    let completion = u.candidates_token_count + u.thoughts_token_count;
    Usage {
        prompt_tokens: prompt,
        completion_tokens: completion,
        total_tokens: if u.total_token_count > 0 {
            u.total_token_count
        } else {
            prompt + completion
        },
        prompt_tokens_details: (u.cached_content_token_count > 0).then(|| PromptTokensDetails {
            cached_tokens: u.cached_content_token_count,
            ..PromptTokensDetails::default()
        }),
        completion_tokens_details: (u.thoughts_token_count > 0).then(|| CompletionTokensDetails {
            reasoning_tokens: u.thoughts_token_count,
            ..CompletionTokensDetails::default()
        }),
        ..Usage::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_signature_survives_the_trip_through_a_call_id_byte_for_byte() {
        // Gemini's signatures are padded standard base64.
        for sig in ["CtICAdHt+m9B/yF=", "EpwICpkI", "a+/b+w==", "CtI/"] {
            let id = call_id(None, "abc", 0, Some(sig));
            assert!(id
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-'));
            let (base, back) = split_call_id(&id);
            assert_eq!(base, "call_abc0");
            assert_eq!(back.as_deref(), Some(sig));
        }
        assert_eq!(split_call_id("call_1"), ("call_1", None));
        assert_eq!(call_id(Some("vcyiitct"), "x", 3, None), "vcyiitct");
    }
}
