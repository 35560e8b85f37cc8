//! The Chat → Responses stream pipeline (normalizer, then translator) on arbitrary
//! upstream bytes: never panics; every event is UTF-8 JSON named by its `type`, numbered
//! from 0 without gaps (the final error frame after a broken stream included), and no
//! content event names an output item before it was added or after it was done.
#![no_main]

use jusinfer_translate::chat_stream::{ChatStreamNormalizer, Options as NormOptions};
use jusinfer_translate::pipe::Pipe;
use jusinfer_translate::responses::response::{envelope, Meta};
use jusinfer_translate::responses::stream::{ChatToResponses, Options};
use jusinfer_translate::StreamTranslator;
use libfuzzer_sys::fuzz_target;

#[path = "common.rs"]
mod common;

fuzz_target!(|data: &[u8]| {
    let req = jusinfer_wire::responses::ResponseCreateParams {
        model: "m".into(),
        ..Default::default()
    };
    let meta = Meta {
        id: "resp_fuzz".to_owned(),
        created_at: 1,
        model: "m".to_owned(),
    };
    let mut m = Pipe::new(
        ChatStreamNormalizer::new(NormOptions {
            include_usage: true,
            id_seed: "fuzz".to_owned(),
            cost: None,
        }),
        ChatToResponses::new(Options {
            envelope: envelope(&req, &meta),
            cost: None,
        }),
    );
    let mut out = common::drive(&mut m, data);
    if !m.is_complete() && !out.is_empty() {
        // What the gateway sends when the upstream breaks after the stream started.
        out.extend(m.error_frame("server_error", 502, "broken"));
    }
    common::check_events(&out);
    let mut d = jusinfer_sse::Decoder::new();
    d.push(&out.concat());
    let mut n = 0u64;
    let mut added = std::collections::BTreeSet::new();
    let mut done = std::collections::BTreeSet::new();
    while let Ok(Some(ev)) = d.next_event() {
        let v: serde_json::Value = serde_json::from_slice(&ev.data).expect("json");
        assert_eq!(v["type"].as_str(), ev.event.as_deref(), "event name = type");
        assert_eq!(v["sequence_number"].as_u64(), Some(n), "numbered without gaps");
        n += 1;
        if let Some(i) = v["output_index"].as_u64() {
            match v["type"].as_str().unwrap_or("") {
                "response.output_item.added" => assert!(added.insert(i)),
                "response.output_item.done" => assert!(added.contains(&i) && done.insert(i)),
                t => assert!(added.contains(&i), "{t} before its item"),
            }
        }
    }
});
