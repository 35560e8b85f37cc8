//! The Anthropic → OpenAI stream translator on arbitrary upstream bytes: never panics, and
//! every frame it emits is a `data:` line holding JSON or `[DONE]`.
#![no_main]

use jusinfer_sse::Decoder;
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
    let mut d = Decoder::with_limit(1 << 16);
    d.push(data);
    let mut out = Vec::new();
    loop {
        match d.next_event() {
            Ok(Some(ev)) => {
                if m.push(&ev, &mut out).is_err() || m.is_complete() {
                    break;
                }
            }
            Ok(None) => {
                let _ = m.finish(&mut out);
                break;
            }
            Err(_) => break,
        }
    }
    common::check_events(&out);
});
