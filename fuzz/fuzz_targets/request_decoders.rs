//! The request decoders on arbitrary bodies: the gateway's JSON reader for chat and
//! embeddings requests, request validation, the byte-splicing body editor and the
//! Chat → Messages and Responses → Chat translations. Any input is a value or a 400,
//! never a panic; an edited body is still valid JSON; a translated Responses request is a
//! Chat request the gateway's own reader accepts.
#![no_main]

use bytes::Bytes;
use jusinfer_gateway::fuzzing::{
    edit_body, parse_json, validate_chat, EmbeddingCreateParams, MessageCreateParams,
    ResponseCreateParams,
};
use jusinfer_translate::anthropic::request::{chat_to_messages, Options};
use jusinfer_wire::chat::ChatRequest;
use libfuzzer_sys::fuzz_target;

fn responses(data: &[u8]) {
    use jusinfer_translate::responses::request::{input_items, to_chat, Options};
    let Ok(req) = parse_json::<ResponseCreateParams>(data) else {
        return;
    };
    let Ok(items) = input_items(&req, |p| format!("{p}_1")) else {
        return;
    };
    for item in &items {
        assert!(item["id"].is_string(), "every stored item has an id");
    }
    if let Ok(t) = to_chat(&req, &items, Options { upstream_model: "m", openai: false, thinking: true }) {
        let body = serde_json::to_vec(&t.body).expect("serializes");
        let chat = parse_json::<ChatRequest>(&body).expect("a translated request is a Chat request");
        assert_eq!(chat.model, "m");
    }
}

fuzz_target!(|data: &[u8]| {
    responses(data);
    let _ = parse_json::<EmbeddingCreateParams>(data);
    if let Ok(m) = parse_json::<MessageCreateParams>(data) {
        let _ = jusinfer_translate::messages::request::messages_to_chat(&m, "u", false);
    }
    let Ok(req) = parse_json::<ChatRequest>(data) else {
        return;
    };
    if validate_chat(&req).is_err() {
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
