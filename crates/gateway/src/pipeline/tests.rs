//! The pipeline per dialect, through the whole router (`app(state).oneshot(req)`) against
//! the in-process `echo` provider: the stage order, each dialect's shape of success and of
//! errors, and the edge's headers.

use axum::body::Body;
use axum::http::{Request, StatusCode};
use serde_json::{json, Value};
use tower::ServiceExt;

use crate::state::AppState;
use crate::store::Store;

async fn state(extra: &str) -> (AppState, std::path::PathBuf) {
    let dir = std::env::temp_dir().join(format!(
        "jinf-pipeline-{}-{}",
        std::process::id(),
        crate::usage::unique_id()
    ));
    std::fs::create_dir_all(&dir).expect("dir");
    let db = dir.join("p.db");
    let cfg = crate::config::parse(&format!("auth = \"none\"\n{extra}"), None, &|_| None)
        .expect("config");
    let store = Store::open(&format!("sqlite://{}", db.display()))
        .await
        .expect("store");
    (
        AppState::new(cfg, store, crate::Overrides::default())
            .await
            .expect("state"),
        dir,
    )
}

struct Answer {
    status: StatusCode,
    headers: axum::http::HeaderMap,
    body: bytes::Bytes,
}

impl Answer {
    fn json(&self) -> Value {
        serde_json::from_slice(&self.body).expect("a JSON body")
    }
}

async fn send(state: &AppState, method: &str, path: &str, body: Option<Value>) -> Answer {
    let req = Request::builder()
        .method(method)
        .uri(path)
        .header("content-type", "application/json")
        .body(body.map_or_else(Body::empty, |b| Body::from(b.to_string())))
        .expect("request");
    let resp = crate::app::app(state.clone())
        .oneshot(req)
        .await
        .expect("infallible");
    let (parts, body) = resp.into_parts();
    let body = axum::body::to_bytes(body, 1 << 24).await.expect("body");
    Answer {
        status: parts.status,
        headers: parts.headers,
        body,
    }
}

fn hi() -> Value {
    json!([{"role": "user", "content": "hi"}])
}

#[tokio::test]
async fn chat_whole_and_streamed() {
    let (s, _d) = state("").await;
    let a = send(
        &s,
        "POST",
        "/v1/chat/completions",
        Some(json!({"model": "echo", "messages": hi()})),
    )
    .await;
    assert_eq!(a.status, StatusCode::OK);
    assert_eq!(a.headers["x-jusinfer-provider"], "echo");
    assert_eq!(a.headers["x-jusinfer-attempts"], "1");
    assert!(a.headers.contains_key("x-request-id"));
    let v = a.json();
    assert_eq!(v["object"], "chat.completion");
    assert_eq!(v["usage"]["cost"], 0.0);

    let a = send(
        &s,
        "POST",
        "/v1/chat/completions",
        Some(json!({"model": "echo", "messages": hi(), "stream": true})),
    )
    .await;
    assert_eq!(a.status, StatusCode::OK);
    assert!(a.headers["content-type"]
        .to_str()
        .expect("ascii")
        .starts_with("text/event-stream"));
    let text = String::from_utf8(a.body.to_vec()).expect("utf8");
    assert!(text.trim_end().ends_with("data: [DONE]"), "{text}");
}

#[tokio::test]
async fn chat_errors_are_openai_shaped_and_name_the_field() {
    let (s, _d) = state("").await;
    let a = send(
        &s,
        "POST",
        "/v1/chat/completions",
        Some(json!({"model": "echo", "messages": []})),
    )
    .await;
    assert_eq!(a.status, StatusCode::BAD_REQUEST);
    assert_eq!(a.json()["error"]["param"], "messages");
    assert_eq!(a.headers["x-jusinfer-attempts"], "0");
    let a = send(
        &s,
        "POST",
        "/v1/chat/completions",
        Some(json!({"model": "no-such-model", "messages": hi()})),
    )
    .await;
    assert_eq!(a.status, StatusCode::NOT_FOUND);
    assert!(a.json()["error"]["message"].is_string());
}

#[tokio::test]
async fn messages_answers_and_errs_in_anthropic_shape() {
    let (s, _d) = state("").await;
    let a = send(
        &s,
        "POST",
        "/v1/messages",
        Some(json!({"model": "echo", "max_tokens": 64, "messages": hi()})),
    )
    .await;
    assert_eq!(a.status, StatusCode::OK);
    let v = a.json();
    assert_eq!(v["type"], "message");
    assert!(v["id"].as_str().expect("id").starts_with("msg_"));
    let a = send(
        &s,
        "POST",
        "/v1/messages",
        Some(json!({"model": "echo", "messages": hi()})),
    )
    .await;
    assert_eq!(a.status, StatusCode::BAD_REQUEST);
    let v = a.json();
    assert_eq!(v["type"], "error");
    assert_eq!(v["error"]["type"], "invalid_request_error");
    let a = send(
        &s,
        "POST",
        "/v1/messages",
        Some(json!({"model": "nope", "max_tokens": 8, "messages": hi()})),
    )
    .await;
    assert_eq!(a.status, StatusCode::NOT_FOUND);
    assert_eq!(a.json()["error"]["type"], "not_found_error");
}

#[tokio::test]
async fn responses_are_stored_and_continued() {
    let (s, _d) = state("").await;
    let a = send(
        &s,
        "POST",
        "/v1/responses",
        Some(json!({"model": "echo", "input": "hi"})),
    )
    .await;
    assert_eq!(a.status, StatusCode::OK);
    let v = a.json();
    assert_eq!(v["object"], "response");
    let id = v["id"].as_str().expect("id").to_owned();
    let got = send(&s, "GET", &format!("/v1/responses/{id}"), None).await;
    assert_eq!(got.status, StatusCode::OK);
    assert_eq!(got.json()["id"], id.as_str());
    let next = send(
        &s,
        "POST",
        "/v1/responses",
        Some(json!({"model": "echo", "input": "again", "previous_response_id": id})),
    )
    .await;
    assert_eq!(next.status, StatusCode::OK);
    assert_eq!(next.json()["previous_response_id"], id.as_str());
    let missing = send(
        &s,
        "POST",
        "/v1/responses",
        Some(json!({"model": "echo", "input": "x", "previous_response_id": "resp_nope"})),
    )
    .await;
    assert_eq!(missing.status, StatusCode::NOT_FOUND);
    assert_eq!(
        missing.json()["error"]["code"],
        "previous_response_not_found"
    );
}

#[tokio::test]
async fn embeddings_from_echo() {
    let (s, _d) = state("").await;
    let a = send(
        &s,
        "POST",
        "/v1/embeddings",
        Some(json!({"model": "echo", "input": ["a", "b"]})),
    )
    .await;
    assert_eq!(a.status, StatusCode::OK);
    let v = a.json();
    assert_eq!(v["data"].as_array().map(Vec::len), Some(2));
    assert_eq!(v["usage"]["prompt_tokens"], v["usage"]["total_tokens"]);
}

#[tokio::test]
async fn every_exit_records_exactly_one_row() {
    let (s, _d) = state("").await;
    // A success, a parse error, a validation error, an unknown model.
    let bodies = [
        json!({"model": "echo", "messages": hi()}),
        json!({"model": "echo", "messages": "not a list"}),
        json!({"model": "echo", "messages": []}),
        json!({"model": "nope", "messages": hi()}),
    ];
    for b in bodies {
        send(&s, "POST", "/v1/chat/completions", Some(b)).await;
    }
    s.ledger.flush(std::time::Duration::from_secs(5)).await;
    let rows = s
        .store
        .count_for_tests("SELECT COUNT(*) FROM usage")
        .await
        .expect("count");
    assert_eq!(rows, 4);
    let named = s
        .store
        .count_for_tests("SELECT COUNT(*) FROM usage WHERE model = 'echo' AND status = 400")
        .await
        .expect("count");
    // The validation error names its model (it was parsed); the parse error could not.
    assert_eq!(named, 1);
}
