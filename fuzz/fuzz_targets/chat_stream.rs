//! The OpenAI stream normalizer on arbitrary upstream bytes: never panics, and every frame
//! it emits is an SSE `data:` line holding JSON or `[DONE]`.
#![no_main]

use jusinfer_translate::chat_stream::{ChatStreamNormalizer, CostRule, Options};
use libfuzzer_sys::fuzz_target;

#[path = "common.rs"]
mod common;

fuzz_target!(|data: &[u8]| {
    let include_usage = data.first().is_some_and(|b| b & 1 == 1);
    let mut m = ChatStreamNormalizer::new(Options {
        include_usage,
        id_seed: "fuzz".to_owned(),
        cost: Some(CostRule { price: None }),
    });
    let out = common::drive(&mut m, data);
    common::check_events(&out);
    let _ = m.usage();
});
