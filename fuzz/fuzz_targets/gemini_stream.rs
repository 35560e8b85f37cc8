//! Both directions of Gemini on arbitrary bytes. Upstream: the Gemini → OpenAI stream
//! translator, the Chat → Gemini request translation. Inbound (the Gemini API): the Chat →
//! Gemini stream machine behind the normalizer, the Gemini pass-through, the Gemini →
//! Chat request translation. Never a panic; every frame emitted is a `data:` line holding
//! JSON or `[DONE]`; a translated request reads back as the other dialect's request.
#![no_main]

use jusinfer_translate::gemini::request::{chat_to_gemini, Options as RequestOptions};
use jusinfer_translate::chat_stream::{self, ChatStreamNormalizer};
use jusinfer_translate::gemini::stream::{GeminiToChat, Options};
use jusinfer_translate::generate;
use jusinfer_translate::pipe::Pipe;
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
    // The Gemini API inbound.
    let mut m = Pipe::new(
        ChatStreamNormalizer::new(chat_stream::Options {
            include_usage: true,
            id_seed: "fuzz".to_owned(),
            cost: None,
        }),
        generate::stream::ChatToGemini::new(generate::stream::Options {
            id: "r".into(),
            model: "m".into(),
            thoughts: data.first().is_some_and(|b| b & 2 == 2),
        }),
    );
    common::check_events(&common::drive(&mut m, data));
    let mut m = generate::stream::GeminiPassthrough::new();
    common::check_events(&common::drive(&mut m, data));
    if let Ok(req) = serde_json::from_slice::<GenerateContentRequest>(data) {
        if let Ok(t) = generate::request::gemini_to_chat(&req, "u", true, false) {
            let body = serde_json::to_vec(&t.body).expect("serializes");
            let chat: ChatRequest =
                serde_json::from_slice(&body).expect("a translated request is a Chat request");
            assert_eq!(chat.model, "u");
        }
    }
});
