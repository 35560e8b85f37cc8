//! The Chat → Anthropic Messages stream pipeline (normalizer, then translator) on arbitrary
//! upstream bytes: never panics, and every event it emits is UTF-8 JSON.
#![no_main]

use jusinfer_translate::chat_stream::{self, ChatStreamNormalizer};
use jusinfer_translate::messages::stream::{ChatToMessages, Options};
use jusinfer_translate::pipe::Pipe;
use libfuzzer_sys::fuzz_target;

#[path = "common.rs"]
mod common;

fuzz_target!(|data: &[u8]| {
    // As the gateway serves /v1/messages from an OpenAI-shaped upstream.
    let mut m = Pipe::new(
        ChatStreamNormalizer::new(chat_stream::Options {
            include_usage: true,
            id_seed: "fuzz".to_owned(),
            cost: None,
        }),
        ChatToMessages::new(Options {
            id: "msg_fuzz".to_owned(),
            model: "m".to_owned(),
            input_tokens_estimate: 1,
        }),
    );
    let out = common::drive(&mut m, data);
    common::check_events(&out);
});
