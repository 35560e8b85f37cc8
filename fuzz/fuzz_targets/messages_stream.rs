//! The Chat → Anthropic Messages stream pipeline (normalizer, then translator) on arbitrary
//! upstream bytes: never panics, and every event it emits is UTF-8 JSON.
#![no_main]

use jusinfer_sse::Decoder;
use jusinfer_translate::messages::stream::{NormalizedToMessages, Options};
use jusinfer_translate::StreamTranslator;
use libfuzzer_sys::fuzz_target;

#[path = "common.rs"]
mod common;

fuzz_target!(|data: &[u8]| {
    let mut m = NormalizedToMessages::new(Options {
        id: "msg_fuzz".to_owned(),
        model: "m".to_owned(),
        input_tokens_estimate: 1,
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
