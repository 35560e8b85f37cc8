//! The Gemini → OpenAI stream translator on arbitrary upstream bytes, and the Chat →
//! Gemini request translation on arbitrary bodies: never a panic; every frame emitted is a
//! `data:` line holding JSON or `[DONE]`; a translated request serializes and reads back as
//! a Gemini request.
#![no_main]

use jusinfer_translate::gemini::request::{chat_to_gemini, Options as RequestOptions};
use jusinfer_translate::gemini::stream::{GeminiToChat, Options};
use jusinfer_wire::chat::ChatRequest;
use jusinfer_wire::gemini::GenerateContentRequest;
use libfuzzer_sys::fuzz_target;

#[path = "common.rs"]
mod common;

fuzz_target!(|data: &[u8]| {
    let mut m = GeminiToChat::new(Options {
        include_usage: data.first().is_some_and(|b| b & 1 == 1),
        created: 0,
        model: "m".into(),
        id_seed: "seed".into(),
        price: None,
    });
    let out = common::drive(&mut m, data);
    common::check_events(&out);
    if let Ok(req) = serde_json::from_slice::<ChatRequest>(data) {
        if let Ok(t) = chat_to_gemini(&req, &RequestOptions::default()) {
            let body = serde_json::to_vec(&t.request).expect("serializes");
            let back: GenerateContentRequest =
                serde_json::from_slice(&body).expect("a translated request is a Gemini request");
            assert_eq!(back, t.request);
        }
    }
});
