//! Micro-benchmarks of one request's path on the gateway's side, the parts that do not
//! wait on the network: the key lookup (cached, as on every request but a key's first),
//! the Chat request parsed, the body edited for the upstream, the answer's usage peeked
//! and its cost spliced in, and the usage row's id and metrics.
//!
//! `cargo bench -p jusinfer-gateway --bench hot_path` times each case (the median of 15
//! batches, ns per operation). Run any other way (`cargo test --benches`, as CI does),
//! each case runs once and its output is checked: a smoke test, nothing timed.
#![expect(clippy::expect_used, reason = "a bench fails loudly")]
#![expect(clippy::print_stdout, reason = "a bench reports on stdout")]

use std::hint::black_box;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use jusinfer_gateway::bench::{
    cost_spliced, edit_body, hash_key, observe, parse_json, row_id, KeyChecker, UsageRecord,
};
use jusinfer_gateway::keys::{mint, NewKey};
use jusinfer_gateway::store::Store;
use jusinfer_testkit::fixtures;
use jusinfer_translate::pricing::Price;
use jusinfer_wire::chat::ChatRequest;

struct Case {
    name: &'static str,
    run: Box<dyn FnMut() -> usize>,
}

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
    let (r1, r2, r3) = (request.clone(), request.clone(), request);
    let rt = Arc::clone(rt);
    vec![
        Case {
            name: "auth: key hashed (SHA-256, hex)",
            run: Box::new({
                let key = key.clone();
                move || hash_key(black_box(&key)).len()
            }),
        },
        Case {
            name: "auth: key checked (cached record)",
            run: Box::new(move || {
                let rec = rt
                    .block_on(checker.check(black_box(&key)))
                    .expect("a valid key");
                rec.id.len()
            }),
        },
        Case {
            name: "read: Chat request parsed (typed)",
            run: Box::new(move || {
                let req: ChatRequest = parse_json(black_box(&r1)).expect("a chat request");
                req.messages.len()
            }),
        },
        Case {
            name: "body: model rewritten for the upstream",
            run: Box::new(move || {
                edit_body(black_box(&r2), "gpt-4o-mini", false).map_or(0, |b| b.len())
            }),
        },
        Case {
            name: "body: stream request, include_usage added",
            run: Box::new(move || {
                edit_body(black_box(&r3), "gpt-4o-mini", true).map_or(0, |b| b.len())
            }),
        },
        Case {
            name: "answer: usage peeked, cost spliced (pass-through)",
            run: Box::new(move || {
                let (body, usage) =
                    cost_spliced(black_box(answer.clone()), Some(price)).expect("an answer");
                assert!(usage.is_some(), "the recorded answer has usage");
                body.len()
            }),
        },
        Case {
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
    // `cargo bench` passes `--bench`; anything else is the smoke run.
    let timed = std::env::args().any(|a| a == "--bench");
    let filter = std::env::args()
        .skip(1)
        .find(|a| !a.starts_with("--"))
        .unwrap_or_default();
    let rt = Arc::new(
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime"),
    );
    let dir = std::env::temp_dir().join(format!("jusinfer-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    for mut case in cases(&rt, &dir)
        .into_iter()
        .filter(|c| c.name.contains(&filter))
    {
        let out = (case.run)();
        assert!(out > 0, "{}: no output", case.name);
        if !timed {
            println!("{}: ok", case.name);
            continue;
        }
        // Calls per batch so that one batch takes ~20 ms.
        let start = Instant::now();
        let mut calls = 0u32;
        while start.elapsed() < Duration::from_millis(20) {
            black_box((case.run)());
            calls += 1;
        }
        let mut per_op: Vec<f64> = (0..15)
            .map(|_| {
                let t = Instant::now();
                for _ in 0..calls {
                    black_box((case.run)());
                }
                t.elapsed().as_nanos() as f64 / f64::from(calls)
            })
            .collect();
        per_op.sort_by(f64::total_cmp);
        println!(
            "{:<52} {:>9.0} ns/op  ({calls} calls per batch)",
            case.name, per_op[7]
        );
    }
    let _ = std::fs::remove_dir_all(&dir);
}
