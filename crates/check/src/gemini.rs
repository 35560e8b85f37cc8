//! The Gemini API cases (`{base}/v1beta/models/{model}:…`, the key in `x-goog-api-key`),
//! judged by what Google's SDKs parse: every chunk of a stream a whole
//! `GenerateContentResponse` (no `[DONE]`), a call a whole `functionCall` with an object of
//! `args`, `finishReason` on the last chunk with the cumulative `usageMetadata`, errors in
//! Google's envelope.

use serde_json::{json, Value};

use crate::{expect_status, CaseFn, Ctx, Exchange, Findings, BAD_KEY, NO_MODEL};

pub(crate) const CASES: &[(&str, CaseFn)] = &[
    ("generateContent", |c| Box::pin(generate(c))),
    ("stream", |c| Box::pin(stream(c))),
    ("stream function call", |c| Box::pin(stream_call(c))),
    ("function call", |c| Box::pin(call(c))),
    ("function response", |c| Box::pin(function_response(c))),
    ("maxOutputTokens", |c| Box::pin(max_tokens(c))),
    ("countTokens", |c| Box::pin(count(c))),
    ("bad key", |c| Box::pin(bad_key(c))),
    ("bad request", |c| Box::pin(bad_request(c))),
    ("unknown model", |c| Box::pin(unknown_model(c))),
];

fn path(model: &str, method: &str) -> String {
    let sse = if method == "streamGenerateContent" {
        "?alt=sse"
    } else {
        ""
    };
    format!("/v1beta/models/{model}:{method}{sse}")
}

fn user(text: &str) -> Value {
    json!([{"role": "user", "parts": [{"text": text}]}])
}

fn weather_tool() -> Value {
    json!([{"functionDeclarations": [{"name": "get_weather", "description": "Get the current weather in a city",
        "parameters": {"type": "OBJECT", "properties": {"city": {"type": "STRING"}}, "required": ["city"]}}]}])
}

const TOKYO: &str = "What is the weather in Tokyo?";

async fn send(c: &Ctx, method: &str, body: Value, f: &mut Findings) -> Exchange {
    let ex = c.post(&path(c.model(), method), &body, c.key()).await;
    f.exchanges.push(ex.clone());
    ex
}

/// The parts of the first candidate.
fn parts(v: &Value) -> &[Value] {
    v["candidates"][0]["content"]["parts"]
        .as_array()
        .map_or(&[][..], Vec::as_slice)
}

/// Fails on what a `GenerateContentResponse` must have: candidates, a `finishReason`,
/// integer token counts.
fn response_body(f: &mut Findings, ex: &Exchange) -> Option<Value> {
    if !expect_status(f, ex, 200) {
        return None;
    }
    let Some(v) = ex.json() else {
        f.fail(format!("the body is not JSON: {}", ex.snippet()));
        return None;
    };
    if !v["candidates"].is_array() {
        f.fail(format!("no candidates: {}", ex.snippet()));
        return None;
    }
    if !v["candidates"][0]["finishReason"].is_string() {
        f.fail(format!(
            "finishReason is {}",
            v["candidates"][0]["finishReason"]
        ));
    }
    usage(f, &v["usageMetadata"]);
    check_calls(f, parts(&v));
    Some(v)
}

fn usage(f: &mut Findings, u: &Value) {
    for k in ["promptTokenCount", "totalTokenCount"] {
        if !u[k].is_u64() {
            f.fail(format!(
                "usageMetadata.{k} is {} (expected an integer)",
                u[k]
            ));
        }
    }
}

/// Every `functionCall` has a name and an object of `args`.
fn check_calls(f: &mut Findings, parts: &[Value]) {
    for p in parts.iter().filter_map(|p| p.get("functionCall")) {
        if p["name"].as_str().is_none_or(str::is_empty) {
            f.fail(format!("a functionCall without a name: {p}"));
        }
        if !(p["args"].is_object() || p["args"].is_null()) {
            f.fail(format!(
                "functionCall args are not an object: {}",
                p["args"]
            ));
        }
    }
}

async fn generate(c: &Ctx) -> Findings {
    let mut f = Findings::default();
    let body = json!({"contents": user("Say hello in five words."),
                      "generationConfig": {"maxOutputTokens": 256}});
    let ex = send(c, "generateContent", body, &mut f).await;
    let Some(v) = response_body(&mut f, &ex) else {
        return f;
    };
    let text: String = parts(&v)
        .iter()
        .filter(|p| p["thought"] != true)
        .filter_map(|p| p["text"].as_str())
        .collect();
    if text.is_empty() {
        f.warn("no text part");
    }
    f.ok(format!(
        "{} chars, finishReason {}",
        text.len(),
        v["candidates"][0]["finishReason"]
    ));
    f
}

/// A stream read as Google's SDKs read it.
#[derive(Default)]
struct Streamed {
    events: usize,
    text: String,
    calls: Vec<Value>,
    finish: Option<String>,
}

fn read_stream(f: &mut Findings, ex: &Exchange) -> Option<Streamed> {
    let p = crate::stream_events(f, ex)?;
    if p.done {
        f.fail("data: [DONE] in a Gemini stream (the SDKs parse every event as JSON)");
    }
    let mut s = Streamed::default();
    let mut last_usage = Value::Null;
    for ev in &p.events {
        if ev.data.trim() == "[DONE]" {
            continue;
        }
        let v: Value = match serde_json::from_str(&ev.data) {
            Ok(v) => v,
            Err(e) => {
                f.fail(format!("an event is not JSON ({e})"));
                continue;
            }
        };
        s.events += 1;
        if v.get("error").is_some() {
            f.fail(format!("the stream carried an error: {}", v["error"]));
            continue;
        }
        if s.finish.is_some() {
            f.fail("a chunk after the one with finishReason");
        }
        for p in parts(&v) {
            if let Some(t) = p["text"].as_str().filter(|_| p["thought"] != true) {
                s.text.push_str(t);
            }
            if let Some(call) = p.get("functionCall") {
                s.calls.push(call.clone());
            }
        }
        check_calls(f, parts(&v));
        if let Some(r) = v["candidates"][0]["finishReason"].as_str() {
            s.finish = Some(r.to_owned());
        }
        if !v["usageMetadata"].is_null() {
            last_usage = v["usageMetadata"].clone();
        }
    }
    if s.finish.is_none() {
        f.fail("no chunk with a finishReason");
    }
    usage(f, &last_usage);
    Some(s)
}

async fn stream(c: &Ctx) -> Findings {
    let mut f = Findings::default();
    let body = json!({"contents": user("Say hello in five words.")});
    let ex = send(c, "streamGenerateContent", body, &mut f).await;
    let Some(s) = read_stream(&mut f, &ex) else {
        return f;
    };
    if s.text.is_empty() {
        f.warn("the stream carried no text");
    }
    f.ok(format!(
        "{} chunks, finishReason {}",
        s.events,
        s.finish.unwrap_or_default()
    ));
    f
}

fn judge_args(f: &mut Findings, call: &Value) {
    if call["args"].get("city").is_none() {
        f.warn(format!(
            "{} args have no \"city\": {}",
            call["name"], call["args"]
        ));
    }
}

async fn stream_call(c: &Ctx) -> Findings {
    let mut f = Findings::default();
    let body = json!({"contents": user(TOKYO), "tools": weather_tool()});
    let ex = send(c, "streamGenerateContent", body, &mut f).await;
    let Some(s) = read_stream(&mut f, &ex) else {
        return f;
    };
    let Some(first) = s.calls.first() else {
        f.warn("the model answered without calling the function");
        return f;
    };
    judge_args(&mut f, first);
    if s.finish.as_deref() != Some("STOP") {
        f.warn(format!(
            "finishReason {:?} after a call (Gemini says STOP)",
            s.finish
        ));
    }
    f.ok(format!(
        "{}({}) whole in one part",
        first["name"], first["args"]
    ));
    f
}

async fn call(c: &Ctx) -> Findings {
    let mut f = Findings::default();
    let body = json!({"contents": user(TOKYO), "tools": weather_tool()});
    let ex = send(c, "generateContent", body, &mut f).await;
    let Some(v) = response_body(&mut f, &ex) else {
        return f;
    };
    let Some(call) = parts(&v).iter().find_map(|p| p.get("functionCall")) else {
        f.warn("the model answered without calling the function");
        return f;
    };
    judge_args(&mut f, call);
    f.ok(format!("{}({})", call["name"], call["args"]));
    f
}

async fn function_response(c: &Ctx) -> Findings {
    let mut f = Findings::default();
    // As Google's SDKs send it: no call ids, the answer found by name.
    let contents = json!([
        {"role": "user", "parts": [{"text": TOKYO}]},
        {"role": "model", "parts": [{"functionCall": {"name": "get_weather", "args": {"city": "Tokyo"}}}]},
        {"role": "user", "parts": [{"functionResponse": {"name": "get_weather", "response": {"result": "18°C, clear"}}}]},
    ]);
    let body = json!({"contents": contents, "tools": weather_tool()});
    let ex = send(c, "generateContent", body, &mut f).await;
    if response_body(&mut f, &ex).is_some() {
        f.ok("the function response was accepted and answered");
    }
    f
}

async fn max_tokens(c: &Ctx) -> Findings {
    let mut f = Findings::default();
    let body = json!({"contents": user("Write a long story about a lighthouse keeper."),
                      "generationConfig": {"maxOutputTokens": 5}});
    let ex = send(c, "generateContent", body, &mut f).await;
    let Some(v) = response_body(&mut f, &ex) else {
        return f;
    };
    let used = v["usageMetadata"]["candidatesTokenCount"]
        .as_u64()
        .unwrap_or(0);
    match v["candidates"][0]["finishReason"].as_str() {
        Some("MAX_TOKENS") => f.ok("finishReason MAX_TOKENS"),
        other if used > 5 => f.fail(format!(
            "maxOutputTokens 5 ignored: finishReason {other:?}, {used} candidate tokens"
        )),
        other => f.warn(format!("finishReason {other:?} (expected MAX_TOKENS)")),
    }
    f
}

async fn count(c: &Ctx) -> Findings {
    let mut f = Findings::default();
    let body = json!({"contents": user("The quick brown fox jumps over the lazy dog.")});
    let ex = send(c, "countTokens", body, &mut f).await;
    if !expect_status(&mut f, &ex, 200) {
        return f;
    }
    match ex.json().and_then(|v| v["totalTokens"].as_u64()) {
        Some(n) if n > 0 => f.ok(format!("totalTokens {n}")),
        _ => f.fail(format!("no totalTokens: {}", ex.snippet())),
    }
    f
}

/// Google's error envelope `{"error": {"code", "message", "status"}}`, `code` the HTTP
/// status, `status` one of `want`.
fn error_shape(f: &mut Findings, ex: &Exchange, want: &[&str]) {
    let Some(v) = ex.json() else {
        f.fail(format!("the error body is not JSON: {}", ex.snippet()));
        return;
    };
    let e = &v["error"];
    if !e["message"].is_string() || !e["status"].is_string() {
        f.fail(format!(
            "the error is not in Google's shape: {}",
            ex.snippet()
        ));
        return;
    }
    if e["code"].as_u64() != Some(u64::from(ex.status)) {
        f.fail(format!("error.code {} but status {}", e["code"], ex.status));
        return;
    }
    let status = e["status"].as_str().unwrap_or("");
    if !want.contains(&status) {
        f.fail(format!(
            "error.status {status:?} (expected one of {want:?})"
        ));
        return;
    }
    f.ok(format!("{} {status}", ex.status));
}

async fn bad_key(c: &Ctx) -> Findings {
    let mut f = Findings::default();
    let body = json!({"contents": user("Say hello.")});
    let ex = c
        .post(&path(c.model(), "generateContent"), &body, BAD_KEY)
        .await;
    f.exchanges.push(ex.clone());
    // Google answers a key it does not know with 400 API_KEY_INVALID; gateways with 401.
    if !matches!(ex.status, 400 | 401 | 403) {
        expect_status(&mut f, &ex, 401);
        return f;
    }
    error_shape(
        &mut f,
        &ex,
        &["INVALID_ARGUMENT", "UNAUTHENTICATED", "PERMISSION_DENIED"],
    );
    f
}

async fn bad_request(c: &Ctx) -> Findings {
    let mut f = Findings::default();
    let ex = send(c, "generateContent", json!({"contents": []}), &mut f).await;
    if expect_status(&mut f, &ex, 400) {
        error_shape(&mut f, &ex, &["INVALID_ARGUMENT"]);
    }
    f
}

async fn unknown_model(c: &Ctx) -> Findings {
    let mut f = Findings::default();
    let body = json!({"contents": user("Say hello.")});
    let ex = c
        .post(&path(NO_MODEL, "generateContent"), &body, c.key())
        .await;
    f.exchanges.push(ex.clone());
    if expect_status(&mut f, &ex, 404) {
        error_shape(&mut f, &ex, &["NOT_FOUND"]);
    }
    f
}
