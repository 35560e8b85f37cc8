//! The OpenAI stream normalizer on arbitrary upstream bytes: never panics, and every frame
//! it emits is an SSE `data:` line holding JSON or `[DONE]`.
#![no_main]

use jusinfer_sse::Decoder;
use jusinfer_translate::chat_stream::{ChatStreamNormalizer, CostRule, Options};
use libfuzzer_sys::fuzz_target;

/// Every event the client would decode from `out` holds JSON or `[DONE]` (a multi-line
/// `data` field is one value: SSE joins its lines).
fn check_frames(out: &[bytes::Bytes]) {
    let mut d = Decoder::new();
    for f in out {
        assert!(std::str::from_utf8(f).is_ok(), "frames are UTF-8");
        d.push(f);
    }
    let mut events = Vec::new();
    while let Some(ev) = d.next_event().expect("the output is valid SSE") {
        events.push(ev);
    }
    events.extend(d.finish().expect("the output ends cleanly"));
    for ev in events {
        assert!(
            &ev.data[..] == b"[DONE]"
                || serde_json::from_slice::<serde_json::Value>(&ev.data).is_ok(),
            "event is not JSON: {:?}",
            String::from_utf8_lossy(&ev.data)
        );
    }
}

fuzz_target!(|data: &[u8]| {
    let include_usage = data.first().is_some_and(|b| b & 1 == 1);
    let mut m = ChatStreamNormalizer::new(Options {
        include_usage,
        id_seed: "fuzz".to_owned(),
        cost: Some(CostRule { price: None }),
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
    check_frames(&out);
    let _ = m.usage();
});
