//! The Anthropic → OpenAI stream translator on arbitrary upstream bytes: never panics, and
//! every frame it emits is a `data:` line holding JSON or `[DONE]`.
#![no_main]

use jusinfer_translate::anthropic::stream::{AnthropicToChat, Options};
use libfuzzer_sys::fuzz_target;

#[path = "common.rs"]
mod common;

fuzz_target!(|data: &[u8]| {
    let mut m = AnthropicToChat::new(Options {
        include_usage: data.first().is_some_and(|b| b & 1 == 1),
        created: 0,
        json_mode: None,
        price: None,
    });
    let out = common::drive(&mut m, data);
    common::check_events(&out);
});
