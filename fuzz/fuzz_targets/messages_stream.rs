//! The Chat → Anthropic Messages stream pipeline (normalizer, then translator) on arbitrary
//! upstream bytes: never panics, and every event it emits is UTF-8 JSON.
#![no_main]

use jusinfer_translate::messages::stream::{NormalizedToMessages, Options};
use libfuzzer_sys::fuzz_target;

#[path = "common.rs"]
mod common;

fuzz_target!(|data: &[u8]| {
    let mut m = NormalizedToMessages::new(Options {
        id: "msg_fuzz".to_owned(),
        model: "m".to_owned(),
        input_tokens_estimate: 1,
    });
    let out = common::drive(&mut m, data);
    common::check_events(&out);
});
