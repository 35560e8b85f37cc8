//! The probe against the simulator: a faithful replay of the recorded real traffic passes
//! every protocol case (WARNs allowed: they are about the model), and each broken
//! simulator is reported as exactly its expected FAILs.
#![expect(clippy::expect_used, reason = "test helpers fail loudly")]

use std::collections::BTreeSet;
use std::time::Duration;

use jusinfer_check::{run, CaseResult, Dialect, Target, Verdict};

async fn sim() -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        let _ = axum::serve(listener, jusinfer_sim::server::app(Default::default())).await;
    });
    format!("http://{addr}")
}

async fn probe(base: &str, model: &str, dialect: Dialect) -> Vec<CaseResult> {
    let target = Target {
        base_url: base.to_owned(),
        api_key: "sk-sim-probe".to_owned(),
        model: model.to_owned(),
        dialect,
        timeout: Duration::from_secs(10),
    };
    run(&target, |_, _, _| {}).await
}

fn failed(results: &[CaseResult]) -> BTreeSet<&'static str> {
    results
        .iter()
        .filter(|r| r.verdict == Verdict::Fail)
        .map(|r| r.name)
        .collect()
}

fn show(results: &[CaseResult]) -> String {
    results
        .iter()
        .map(|r| format!("{} {} {}", r.name, r.verdict.as_str(), r.evidence))
        .collect::<Vec<_>>()
        .join("\n")
}

const STREAMS: &[&str] = &[
    "stream",
    "stream usage",
    "stream tool call",
    "parallel tool calls",
];

#[tokio::test]
async fn recorded_openai_traffic_passes_and_each_fault_is_its_fail() {
    let base = sim().await;
    let v1 = format!("{base}/v1");
    let faithful = probe(&v1, "probe", Dialect::Openai).await;
    assert!(failed(&faithful).is_empty(), "{}", show(&faithful));
    assert_eq!(
        faithful.len(),
        jusinfer_check::case_names(Dialect::Openai).len()
    );
    // The recorded tool call asks for a country, not a city: the model's business, a WARN.
    let warned: Vec<&str> = faithful
        .iter()
        .filter(|r| r.verdict == Verdict::Warn)
        .map(|r| r.name)
        .collect();
    assert!(warned.contains(&"stream tool call"), "{}", show(&faithful));

    let cases: &[(&str, &[&str])] = &[
        (
            "whole_noindex",
            &["stream tool call", "parallel tool calls"],
        ),
        ("bad_args", &["stream tool call", "parallel tool calls"]),
        ("no_done", STREAMS),
        ("double_finish", STREAMS),
        ("no_usage", &["chat", "stream usage"]),
        ("bad_errors", &["bad key", "bad request"]),
        ("json_ct", STREAMS),
        ("split_line", STREAMS),
    ];
    for (fault, want) in cases {
        let r = probe(&v1, &format!("probe;fault={fault}"), Dialect::Openai).await;
        let want: BTreeSet<&str> = want.iter().copied().collect();
        assert_eq!(failed(&r), want, "fault {fault}:\n{}", show(&r));
    }
}

#[tokio::test]
async fn recorded_anthropic_traffic_passes() {
    let base = sim().await;
    let r = probe(&base, "probe", Dialect::Anthropic).await;
    assert!(failed(&r).is_empty(), "{}", show(&r));
    assert!(r.iter().all(|c| !c.exchanges.is_empty()));
}

#[tokio::test]
async fn recorded_gemini_traffic_passes() {
    let base = sim().await;
    let r = probe(&base, "probe", Dialect::Gemini).await;
    assert!(failed(&r).is_empty(), "{}", show(&r));
    assert_eq!(r.len(), jusinfer_check::case_names(Dialect::Gemini).len());
    // The recorded calls ask for a password, not a city: the model's business, a WARN.
    let warned: BTreeSet<&str> = r
        .iter()
        .filter(|c| c.verdict == Verdict::Warn)
        .map(|c| c.name)
        .collect();
    assert_eq!(
        warned,
        ["function call", "stream function call"]
            .into_iter()
            .collect(),
        "{}",
        show(&r)
    );
    // Google's bad-key answer (400 API_KEY_INVALID) is accepted as Google's shape.
    let bad = r.iter().find(|c| c.name == "bad key").expect("the case");
    assert!(
        bad.evidence.contains("400 INVALID_ARGUMENT"),
        "{}",
        bad.evidence
    );
}

#[tokio::test]
async fn a_dead_endpoint_fails_every_case_without_hanging() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("addr").port();
    drop(listener);
    let r = probe(&format!("http://127.0.0.1:{port}/v1"), "m", Dialect::Openai).await;
    assert_eq!(failed(&r).len(), r.len());
    assert!(
        r[0].evidence.contains("cannot connect"),
        "{}",
        r[0].evidence
    );
}

#[tokio::test]
async fn a_silent_endpoint_times_out() {
    // Accepts connections and never answers.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((s, _)) = listener.accept().await {
            held.push(s);
        }
    });
    let target = Target {
        base_url: format!("http://{addr}/v1"),
        api_key: "k".into(),
        model: "m".into(),
        dialect: Dialect::Openai,
        timeout: Duration::from_millis(200),
    };
    let started = std::time::Instant::now();
    let r = run(&target, |_, _, _| {}).await;
    assert_eq!(failed(&r).len(), r.len());
    assert!(r[0].evidence.contains("timed out"), "{}", r[0].evidence);
    assert!(started.elapsed() < Duration::from_secs(30));
}
