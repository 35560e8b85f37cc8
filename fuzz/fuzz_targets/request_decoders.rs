//! The request decoders on arbitrary bodies: the gateway's JSON reader for chat and
//! embeddings requests, request validation, the byte-splicing body editor and the
//! Chat → Messages translation. Any input is a value or a 400, never a panic; an edited
//! body is still valid JSON.
#![no_main]

use bytes::Bytes;
use jusinfer_gateway::handlers::{chat, embeddings::EmbeddingsRequest, parse_json};
use jusinfer_gateway::providers::openai::edit_body;
use jusinfer_translate::anthropic::request::{chat_to_messages, Options};
use jusinfer_wire::chat::ChatRequest;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = parse_json::<EmbeddingsRequest>(data);
    let Ok(req) = parse_json::<ChatRequest>(data) else {
        return;
    };
    if chat::validate(&req).is_err() {
        return;
    }
    let raw = Bytes::copy_from_slice(data);
    for stream in [false, true] {
        if let Ok(edited) = edit_body(&raw, "upstream-model", stream) {
            let v: serde_json::Value =
                serde_json::from_slice(&edited).expect("an edited body is valid JSON");
            assert_eq!(v["model"], "upstream-model");
        }
    }
    let _ = chat_to_messages(
        &req,
        &Options {
            upstream_model: "claude",
            default_max_tokens: 1024,
            present_fields: &[],
        },
    );
});
