//! The Anthropic Messages cases.

use serde_json::{json, Value};

use crate::{expect_status, integers, CaseFn, Ctx, Exchange, Findings, BAD_KEY, NO_MODEL};

const PATH: &str = "/v1/messages";

pub(crate) const CASES: &[(&str, CaseFn)] = &[
    ("messages", |c| Box::pin(message(c))),
    ("stream", |c| Box::pin(stream(c))),
    ("stream tool use", |c| Box::pin(stream_tool(c))),
    ("tool use", |c| Box::pin(tool(c))),
    ("tool result", |c| Box::pin(tool_result(c))),
    ("max_tokens", |c| Box::pin(max_tokens(c))),
    ("unknown field", |c| Box::pin(unknown_field(c))),
    ("bad key", |c| Box::pin(bad_key(c))),
    ("bad request", |c| Box::pin(bad_request(c))),
    ("unknown model", |c| Box::pin(unknown_model(c))),
];

fn user(text: &str) -> Value {
    json!([{"role": "user", "content": text}])
}

fn weather_tool() -> Value {
    json!([{"name": "get_weather", "description": "Get the current weather in a city",
            "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}])
}

const TOKYO: &str = "What is the weather in Tokyo?";

async fn send(c: &Ctx, body: Value, f: &mut Findings) -> Exchange {
    let ex = c.post(PATH, &body, c.key()).await;
    f.exchanges.push(ex.clone());
    ex
}

fn message_body(f: &mut Findings, ex: &Exchange) -> Option<Value> {
    if !expect_status(f, ex, 200) {
        return None;
    }
    let Some(v) = ex.json() else {
        f.fail(format!("the body is not JSON: {}", ex.snippet()));
        return None;
    };
    if v["type"] != "message" || v["role"] != "assistant" {
        f.fail(format!(
            "type/role are {}/{} (expected message/assistant)",
            v["type"], v["role"]
        ));
    }
    if !v["content"].is_array() {
        f.fail("content is not an array of blocks");
        return None;
    }
    if !v["stop_reason"].is_string() {
        f.fail(format!("stop_reason is {}", v["stop_reason"]));
    }
    if let Err(e) = integers(&v["usage"], &["input_tokens", "output_tokens"]) {
        f.fail(e);
    }
    Some(v)
}

async fn message(c: &Ctx) -> Findings {
    let mut f = Findings::default();
    let ex = send(c, json!({"model": c.model(), "max_tokens": 256, "messages": user("Say hello in five words.")}), &mut f).await;
    let Some(v) = message_body(&mut f, &ex) else {
        return f;
    };
    let text: String = v["content"]
        .as_array()
        .map_or(&[][..], Vec::as_slice)
        .iter()
        .filter_map(|b| b["text"].as_str())
        .collect();
    if text.is_empty() {
        f.warn("no text block");
    }
    f.ok(format!(
        "{} chars, stop_reason {}",
        text.len(),
        v["stop_reason"]
    ));
    f
}

/// A streamed message read by Anthropic's event grammar.
#[derive(Default)]
struct Streamed {
    events: usize,
    text: String,
    /// tool_use blocks: (id, name, partial_json joined).
    tools: Vec<(String, String, String)>,
    stop_reason: Option<String>,
}

fn read_stream(f: &mut Findings, ex: &Exchange) -> Option<Streamed> {
    let p = crate::stream_events(f, ex)?;
    let mut s = Streamed::default();
    // index → (kind, open)
    let mut blocks: Vec<(String, bool)> = Vec::new();
    let mut started = false;
    let mut stopped = false;
    for ev in &p.events {
        let v: Value = match serde_json::from_str(&ev.data) {
            Ok(v) => v,
            Err(e) => {
                f.fail(format!("an event is not JSON ({e})"));
                continue;
            }
        };
        s.events += 1;
        let kind = v["type"].as_str().unwrap_or("").to_owned();
        if ev.name.as_deref().is_some_and(|n| n != kind) {
            f.fail(format!("event name {:?} but data.type {kind:?}", ev.name));
        }
        if stopped {
            f.fail(format!("{kind} after message_stop"));
        }
        match kind.as_str() {
            "message_start" => {
                if started {
                    f.fail("a second message_start");
                }
                started = true;
            }
            _ if !started && kind != "ping" => f.fail(format!("{kind} before message_start")),
            "content_block_start" => {
                let i = v["index"].as_u64().unwrap_or(u64::MAX);
                if i != blocks.len() as u64 {
                    f.fail(format!(
                        "content_block_start index {i} (expected {})",
                        blocks.len()
                    ));
                }
                if blocks.iter().any(|(_, open)| *open) {
                    f.fail("a block started while another is open");
                }
                let b = &v["content_block"];
                let bk = b["type"].as_str().unwrap_or("").to_owned();
                if bk == "tool_use" {
                    s.tools.push((
                        b["id"].as_str().unwrap_or("").into(),
                        b["name"].as_str().unwrap_or("").into(),
                        String::new(),
                    ));
                }
                blocks.push((bk, true));
            }
            "content_block_delta" => {
                let i = v["index"].as_u64().unwrap_or(u64::MAX) as usize;
                match blocks.get(i) {
                    Some((_, true)) => {}
                    _ => f.fail(format!(
                        "content_block_delta for block {i}, which is not open"
                    )),
                }
                let d = &v["delta"];
                match d["type"].as_str() {
                    Some("text_delta") => s.text.push_str(d["text"].as_str().unwrap_or("")),
                    Some("input_json_delta") => {
                        if let Some(t) = s.tools.last_mut() {
                            t.2.push_str(d["partial_json"].as_str().unwrap_or(""));
                        }
                    }
                    _ => {}
                }
            }
            "content_block_stop" => {
                let i = v["index"].as_u64().unwrap_or(u64::MAX) as usize;
                match blocks.get_mut(i) {
                    Some((_, open @ true)) => *open = false,
                    _ => f.fail(format!(
                        "content_block_stop for block {i}, which is not open"
                    )),
                }
            }
            "message_delta" => {
                if blocks.iter().any(|(_, open)| *open) {
                    f.fail("message_delta while a block is open");
                }
                s.stop_reason = v["delta"]["stop_reason"].as_str().map(str::to_owned);
            }
            "message_stop" => stopped = true,
            "ping" => {}
            "error" => f.fail(format!("the stream carried an error: {}", v["error"])),
            other => f.warn(format!("unknown event {other:?}")),
        }
    }
    if !started {
        f.fail("no message_start");
    }
    if s.stop_reason.is_none() {
        f.fail("no message_delta with a stop_reason");
    }
    if !stopped {
        f.fail("the stream did not end with message_stop");
    }
    Some(s)
}

async fn stream(c: &Ctx) -> Findings {
    let mut f = Findings::default();
    let ex = send(c, json!({"model": c.model(), "max_tokens": 256, "stream": true, "messages": user("Say hello in five words.")}), &mut f).await;
    let Some(s) = read_stream(&mut f, &ex) else {
        return f;
    };
    if s.text.is_empty() {
        f.warn("the stream carried no text");
    }
    f.ok(format!(
        "{} events, stop_reason {}",
        s.events,
        s.stop_reason.unwrap_or_default()
    ));
    f
}

fn judge_input(f: &mut Findings, name: &str, json_text: &str) {
    match serde_json::from_str::<Value>(if json_text.is_empty() {
        "{}"
    } else {
        json_text
    }) {
        Ok(Value::Object(o)) => {
            if !o.contains_key("city") {
                f.warn(format!("{name} input has no \"city\": {json_text}"));
            }
        }
        Ok(other) => f.fail(format!("{name} input is not an object: {other}")),
        Err(e) => f.fail(format!(
            "{name} input_json_delta fragments do not join into JSON ({e}): {json_text:?}"
        )),
    }
}

async fn stream_tool(c: &Ctx) -> Findings {
    let mut f = Findings::default();
    let ex = send(c, json!({"model": c.model(), "max_tokens": 512, "stream": true, "tools": weather_tool(), "messages": user(TOKYO)}), &mut f).await;
    let Some(s) = read_stream(&mut f, &ex) else {
        return f;
    };
    if s.tools.is_empty() {
        f.warn("the model answered without using the tool");
        return f;
    }
    for (id, name, input) in &s.tools {
        if id.is_empty() || name.is_empty() {
            f.fail("a tool_use block without id or name");
        }
        judge_input(&mut f, name, input);
    }
    if s.stop_reason.as_deref() != Some("tool_use") {
        f.warn(format!(
            "stop_reason {:?} after tool_use (expected tool_use)",
            s.stop_reason
        ));
    }
    f.ok(format!(
        "{}({}) rebuilt from input_json_delta",
        s.tools[0].1, s.tools[0].2
    ));
    f
}

async fn tool(c: &Ctx) -> Findings {
    let mut f = Findings::default();
    let ex = send(c, json!({"model": c.model(), "max_tokens": 512, "tools": weather_tool(), "messages": user(TOKYO)}), &mut f).await;
    let Some(v) = message_body(&mut f, &ex) else {
        return f;
    };
    let uses: Vec<&Value> = v["content"]
        .as_array()
        .map_or(&[][..], Vec::as_slice)
        .iter()
        .filter(|b| b["type"] == "tool_use")
        .collect();
    let Some(u) = uses.first() else {
        f.warn("the model answered without using the tool");
        return f;
    };
    if !u["input"].is_object() {
        f.fail(format!("tool_use input is not an object: {}", u["input"]));
    } else if u["input"].get("city").is_none() {
        f.warn(format!("tool_use input has no \"city\": {}", u["input"]));
    }
    f.ok(format!(
        "{}({})",
        u["name"].as_str().unwrap_or("?"),
        u["input"]
    ));
    f
}

async fn tool_result(c: &Ctx) -> Findings {
    let mut f = Findings::default();
    let messages = json!([
        {"role": "user", "content": TOKYO},
        {"role": "assistant", "content": [{"type": "tool_use", "id": "toolu_jusinfer_check_1", "name": "get_weather", "input": {"city": "Tokyo"}}]},
        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "toolu_jusinfer_check_1", "content": "18°C, clear"}]},
    ]);
    let ex = send(c, json!({"model": c.model(), "max_tokens": 256, "tools": weather_tool(), "messages": messages}), &mut f).await;
    if message_body(&mut f, &ex).is_some() {
        f.ok("the tool result was accepted and answered");
    }
    f
}

async fn max_tokens(c: &Ctx) -> Findings {
    let mut f = Findings::default();
    let ex = send(c, json!({"model": c.model(), "max_tokens": 5, "messages": user("Write a long story about a lighthouse keeper.")}), &mut f).await;
    let Some(v) = message_body(&mut f, &ex) else {
        return f;
    };
    let used = v["usage"]["output_tokens"].as_u64().unwrap_or(0);
    match v["stop_reason"].as_str() {
        Some("max_tokens") => f.ok("stop_reason max_tokens"),
        other if used > 5 => f.fail(format!(
            "max_tokens 5 ignored: stop_reason {other:?}, {used} output tokens"
        )),
        other => f.warn(format!("stop_reason {other:?} (expected max_tokens)")),
    }
    f
}

async fn unknown_field(c: &Ctx) -> Findings {
    let mut f = Findings::default();
    let ex = send(c, json!({"model": c.model(), "max_tokens": 64, "messages": user("Say hello."), "x_jusinfer_check": true}), &mut f).await;
    if message_body(&mut f, &ex).is_some() {
        f.ok("an unknown field was tolerated");
    }
    f
}

/// Anthropic's error envelope `{"type":"error","error":{"type","message"}}` with `kind`.
fn error_shape(f: &mut Findings, ex: &Exchange, kind: &str) {
    let Some(v) = ex.json() else {
        f.fail(format!("the error body is not JSON: {}", ex.snippet()));
        return;
    };
    if v["type"] != "error" || !v["error"]["message"].is_string() {
        f.fail(format!(
            "the error is not in Anthropic's shape: {}",
            ex.snippet()
        ));
        return;
    }
    if v["error"]["type"] != kind {
        f.fail(format!(
            "error.type {} (expected {kind:?})",
            v["error"]["type"]
        ));
        return;
    }
    f.ok(format!("{} {kind}", ex.status));
}

async fn bad_key(c: &Ctx) -> Findings {
    let mut f = Findings::default();
    let ex = c
        .post(
            PATH,
            &json!({"model": c.model(), "max_tokens": 16, "messages": user("Say hello.")}),
            BAD_KEY,
        )
        .await;
    f.exchanges.push(ex.clone());
    if expect_status(&mut f, &ex, 401) {
        error_shape(&mut f, &ex, "authentication_error");
    }
    f
}

async fn bad_request(c: &Ctx) -> Findings {
    let mut f = Findings::default();
    // max_tokens is required.
    let ex = send(
        c,
        json!({"model": c.model(), "messages": user("Say hello.")}),
        &mut f,
    )
    .await;
    if expect_status(&mut f, &ex, 400) {
        error_shape(&mut f, &ex, "invalid_request_error");
    }
    f
}

async fn unknown_model(c: &Ctx) -> Findings {
    let mut f = Findings::default();
    let ex = send(
        c,
        json!({"model": NO_MODEL, "max_tokens": 16, "messages": user("Say hello.")}),
        &mut f,
    )
    .await;
    if expect_status(&mut f, &ex, 404) {
        error_shape(&mut f, &ex, "not_found_error");
    }
    f
}
