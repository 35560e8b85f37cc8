//! Micro-benchmarks of one request's path on the gateway's side, the parts that do not
//! wait on the network: the key lookup (cached, as on every request but a key's first),
//! the Chat request parsed, the body edited for the upstream, the answer's usage peeked
//! and its cost spliced in, and the usage row's id and metrics.
//!
//! `cargo bench -p jusinfer-gateway --bench hot_path` times each case; `cargo test
//! --benches` (CI) runs each once as a smoke test (the harness: `jusinfer_testkit::bench`).
#![expect(clippy::expect_used, reason = "a bench fails loudly")]

use std::hint::black_box;
use std::sync::Arc;

use bytes::Bytes;
use jusinfer_gateway::bench::{
    cost_spliced, edit_body, hash_key, observe, parse_json, row_id, KeyChecker, UsageRecord,
};
use jusinfer_gateway::keys::{mint, NewKey};
use jusinfer_gateway::store::Store;
use jusinfer_testkit::bench::{self, Case};
use jusinfer_testkit::fixtures;
use jusinfer_translate::pricing::Price;
use jusinfer_wire::chat::ChatRequest;

fn cases(rt: &Arc<tokio::runtime::Runtime>, dir: &std::path::Path) -> Vec<Case> {
    let store = rt
        .block_on(Store::open(&format!(
            "sqlite://{}",
            dir.join("bench.db").display()
        )))
        .expect("store");
    let key = rt
        .block_on(mint(
            &store,
            NewKey {
                name: "bench".to_owned(),
                ..NewKey::default()
            },
        ))
        .expect("mint")
        .key;
    let checker = KeyChecker::new(store);
    let request: Bytes =
        fixtures::read("openai-chat/chat_stream_tool_call_roundtrip.turn1.request.json")
            .expect("fixture");
    let answer = fixtures::read("openai-chat/chat_nonstream_text.json").expect("fixture");
    let price = Price {
        input: 2.5e-6,
        output: 1e-5,
        cache_read: None,
        cache_write: None,
    };
    let row = UsageRecord {
        endpoint: "/v1/chat/completions".to_owned(),
        model: "mock/fast".to_owned(),
        provider: Some("mock".to_owned()),
        upstream_model: Some("fast".to_owned()),
        status: 200,
        prompt_tokens: 9,
        completion_tokens: 5,
        cost_usd: Some(7.25e-5),
        latency_ms: 3,
        routed: true,
        ..UsageRecord::default()
    };
    // As a client sends it to the gateway: an alias for a model, and (for the stream
    // case) no `stream_options`, so the edit has both members to write.
    let mut v: serde_json::Value = serde_json::from_slice(&request).expect("json");
    v["model"] = "mock/fast".into();
    if let Some(o) = v.as_object_mut() {
        o.remove("stream_options");
    }
    let aliased = Bytes::from(serde_json::to_vec(&v).expect("json"));
    let edited = edit_body(&aliased, "fast", true).expect("edited");
    let edited: serde_json::Value = serde_json::from_slice(&edited).expect("json");
    assert_eq!(
        edited["model"], "fast",
        "the edit writes the upstream's model"
    );
    assert_eq!(
        edited["stream_options"]["include_usage"], true,
        "and asks for usage"
    );
    let (r1, r2, r3) = (request, aliased.clone(), aliased);
    let rt = Arc::clone(rt);
    vec![
        Case {
            ops: 1,
            name: "auth: key hashed (SHA-256, hex)",
            run: Box::new({
                let key = key.clone();
                move || hash_key(black_box(&key)).len()
            }),
        },
        Case {
            ops: 1,
            name: "auth: key checked (cached record)",
            run: Box::new(move || {
                let rec = rt
                    .block_on(checker.check(black_box(&key)))
                    .expect("a valid key");
                rec.id.len()
            }),
        },
        Case {
            ops: 1,
            name: "read: Chat request parsed (typed)",
            run: Box::new(move || {
                let req: ChatRequest = parse_json(black_box(&r1)).expect("a chat request");
                req.messages.len()
            }),
        },
        Case {
            ops: 1,
            name: "body: model rewritten for the upstream",
            run: Box::new(move || edit_body(black_box(&r2), "fast", false).map_or(0, |b| b.len())),
        },
        Case {
            ops: 1,
            name: "body: stream request, include_usage added",
            run: Box::new(move || edit_body(black_box(&r3), "fast", true).map_or(0, |b| b.len())),
        },
        Case {
            ops: 1,
            name: "answer: usage peeked, cost spliced (pass-through)",
            run: Box::new(move || {
                let (body, usage) =
                    cost_spliced(black_box(answer.clone()), Some(price)).expect("an answer");
                assert!(usage.is_some(), "the recorded answer has usage");
                body.len()
            }),
        },
        Case {
            ops: 1,
            name: "usage row: id and metrics",
            run: Box::new(move || {
                let mut r = row.clone();
                r.row_id = row_id();
                observe(black_box(&r));
                r.row_id.len()
            }),
        },
    ]
}

fn main() {
    let rt = Arc::new(
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime"),
    );
    let dir = std::env::temp_dir().join(format!("jusinfer-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    bench::run(cases(&rt, &dir));
    let _ = std::fs::remove_dir_all(&dir);
}
