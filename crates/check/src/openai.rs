//! The OpenAI Chat Completions cases.

use std::collections::BTreeMap;

use serde_json::{json, Value};

use crate::{expect_status, integers, CaseFn, Ctx, Exchange, Findings, BAD_KEY, NO_MODEL};

const PATH: &str = "/chat/completions";

pub(crate) const CASES: &[(&str, CaseFn)] = &[
    ("chat", |c| Box::pin(chat(c))),
    ("stream", |c| Box::pin(stream(c))),
    ("stream usage", |c| Box::pin(stream_usage(c))),
    ("stream tool call", |c| Box::pin(stream_tool(c))),
    ("tool call", |c| Box::pin(tool(c))),
    ("parallel tool calls", |c| Box::pin(parallel(c))),
    ("tool result", |c| Box::pin(tool_result(c))),
    ("json mode", |c| Box::pin(json_mode(c))),
    ("json schema", |c| Box::pin(json_schema(c))),
    ("max_tokens", |c| Box::pin(max_tokens(c))),
    ("unknown field", |c| Box::pin(unknown_field(c))),
    ("seed, temperature", |c| Box::pin(seed(c))),
    ("bad key", |c| Box::pin(bad_key(c))),
    ("bad request", |c| Box::pin(bad_request(c))),
    ("unknown model", |c| Box::pin(unknown_model(c))),
];

fn user(text: &str) -> Value {
    json!([{"role": "user", "content": text}])
}

fn weather_tool() -> Value {
    json!([{"type": "function", "function": {
        "name": "get_weather", "description": "Get the current weather in a city",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}}])
}

const TOKYO: &str = "What is the weather in Tokyo?";
const TWO_CITIES: &str = "What is the weather in Tokyo and in Paris? Call the tool once per city.";

async fn send(c: &Ctx, body: Value, f: &mut Findings) -> Exchange {
    let ex = c.post(PATH, &body, c.key()).await;
    f.exchanges.push(ex.clone());
    ex
}

/// A 200 `chat.completion`, checked; `None` after a failure.
fn completion(f: &mut Findings, ex: &Exchange) -> Option<Value> {
    if !expect_status(f, ex, 200) {
        return None;
    }
    let Some(v) = ex.json() else {
        f.fail(format!("the body is not JSON: {}", ex.snippet()));
        return None;
    };
    if v["object"] != "chat.completion" {
        f.fail(format!(
            "object is {} (expected \"chat.completion\")",
            v["object"]
        ));
    }
    if !v["choices"][0].is_object() {
        f.fail("choices[0] is missing");
        return None;
    }
    Some(v)
}

async fn chat(c: &Ctx) -> Findings {
    let mut f = Findings::default();
    let ex = send(
        c,
        json!({"model": c.model(), "messages": user("Say hello in five words.")}),
        &mut f,
    )
    .await;
    let Some(v) = completion(&mut f, &ex) else {
        return f;
    };
    let msg = &v["choices"][0]["message"];
    if msg["role"] != "assistant" {
        f.fail(format!("message.role is {}", msg["role"]));
    }
    let Some(text) = msg["content"].as_str() else {
        f.fail(format!(
            "message.content is {} (expected a string)",
            msg["content"]
        ));
        return f;
    };
    if !v["choices"][0]["finish_reason"].is_string() {
        f.fail("finish_reason is missing");
    }
    if v["usage"].is_null() {
        f.fail("usage is missing");
    } else if let Err(e) = integers(
        &v["usage"],
        &["prompt_tokens", "completion_tokens", "total_tokens"],
    ) {
        f.fail(e);
    }
    if text.is_empty() {
        f.warn("message.content is empty");
    }
    f.ok(format!(
        "{} chars, usage {}",
        text.len(),
        v["usage"]["total_tokens"]
    ));
    f
}

/// A streamed answer, read the way the SDKs read it.
#[derive(Default)]
struct Streamed {
    chunks: Vec<Value>,
    text: String,
    /// Tool calls by index: (id, name, arguments).
    calls: BTreeMap<u64, (String, String, String)>,
    finishes: BTreeMap<u64, Vec<String>>,
    usage: Option<Value>,
}

/// Checks the stream's framing and chunk shape (FAILs into `f`), and accumulates it.
fn read_stream(f: &mut Findings, ex: &Exchange) -> Option<Streamed> {
    let p = crate::stream_events(f, ex)?;
    let mut s = Streamed::default();
    let mut first_delta = true;
    for ev in &p.events {
        if ev.data.trim() == "[DONE]" {
            continue;
        }
        let v: Value = match serde_json::from_str(&ev.data) {
            Ok(v) => v,
            Err(e) => {
                f.fail(format!(
                    "a data line is not JSON ({e}): {:?}",
                    ev.data.chars().take(60).collect::<String>()
                ));
                continue;
            }
        };
        if v.get("error").is_some() && v.get("choices").is_none() {
            f.fail(format!("the stream carried an error: {}", v["error"]));
            continue;
        }
        if v["object"] != "chat.completion.chunk" {
            f.fail(format!(
                "chunk object is {} (expected \"chat.completion.chunk\")",
                v["object"]
            ));
        }
        if let Some(u) = v.get("usage").filter(|u| u.is_object()) {
            s.usage = Some(u.clone());
        }
        for choice in v["choices"].as_array().map_or(&[][..], Vec::as_slice) {
            let i = choice["index"].as_u64().unwrap_or(0);
            let d = &choice["delta"];
            if first_delta {
                first_delta = false;
                if d["role"] != "assistant" {
                    f.fail(format!("the first delta has no role \"assistant\": {d}"));
                }
            }
            if let Some(t) = d["content"].as_str() {
                s.text.push_str(t);
            }
            for (pos, tc) in d["tool_calls"]
                .as_array()
                .map_or(&[][..], Vec::as_slice)
                .iter()
                .enumerate()
            {
                let Some(idx) = tc["index"].as_u64() else {
                    f.fail(format!("tool-call delta #{pos} has no index: {tc}"));
                    continue;
                };
                let fresh = !s.calls.contains_key(&idx);
                let e = s.calls.entry(idx).or_default();
                if fresh {
                    let id = tc["id"].as_str().unwrap_or("");
                    let name = tc["function"]["name"].as_str().unwrap_or("");
                    if id.is_empty() || name.is_empty() {
                        f.fail(format!(
                            "the first fragment of tool call {idx} lacks id or name: {tc}"
                        ));
                    }
                    e.0 = id.to_owned();
                    e.1 = name.to_owned();
                }
                if let Some(a) = tc["function"]["arguments"].as_str() {
                    e.2.push_str(a);
                } else if !tc["function"]["arguments"].is_null() {
                    f.fail(format!(
                        "tool call {idx} arguments are not a string: {}",
                        tc["function"]["arguments"]
                    ));
                }
            }
            if let Some(r) = choice["finish_reason"].as_str() {
                s.finishes.entry(i).or_default().push(r.to_owned());
            }
        }
        s.chunks.push(v);
    }
    if s.chunks.is_empty() {
        f.fail("the stream held no chunk");
    }
    match s.finishes.get(&0).map(Vec::len) {
        None | Some(0) => f.fail("no finish_reason in the stream"),
        Some(1) => {}
        Some(n) => f.fail(format!("finish_reason sent {n} times for choice 0")),
    }
    if !p.done {
        f.fail("the stream did not end with data: [DONE]");
    }
    if p.after_done {
        f.fail("bytes after data: [DONE]");
    }
    Some(s)
}

async fn stream(c: &Ctx) -> Findings {
    let mut f = Findings::default();
    let ex = send(
        c,
        json!({"model": c.model(), "messages": user("Say hello in five words."), "stream": true}),
        &mut f,
    )
    .await;
    let Some(s) = read_stream(&mut f, &ex) else {
        return f;
    };
    if s.text.is_empty() {
        f.warn("the stream carried no content");
    }
    f.ok(format!(
        "{} chunks, one finish_reason, [DONE]",
        s.chunks.len()
    ));
    f
}

async fn stream_usage(c: &Ctx) -> Findings {
    let mut f = Findings::default();
    let ex = send(
        c,
        json!({"model": c.model(), "messages": user("Say hello."), "stream": true,
                            "stream_options": {"include_usage": true}}),
        &mut f,
    )
    .await;
    let Some(s) = read_stream(&mut f, &ex) else {
        return f;
    };
    match &s.usage {
        None => f.fail("no usage chunk although stream_options.include_usage was true"),
        Some(u) => {
            if let Err(e) = integers(u, &["prompt_tokens", "completion_tokens", "total_tokens"]) {
                f.fail(e);
            }
            let last = s.chunks.last().cloned().unwrap_or_default();
            if last["usage"].is_null() || !last["choices"].as_array().is_some_and(Vec::is_empty) {
                f.warn("usage is not in the last chunk with empty choices");
            }
            f.ok(format!("usage chunk: total_tokens {}", u["total_tokens"]));
        }
    }
    f
}

/// Judges tool-call arguments: FAIL when not JSON, WARN without a `city`.
fn judge_args(f: &mut Findings, name: &str, args: &str) {
    match serde_json::from_str::<Value>(args) {
        Ok(Value::Object(o)) => {
            if !o.contains_key("city") {
                f.warn(format!("{name} arguments have no \"city\": {args}"));
            }
        }
        Ok(other) => f.fail(format!("{name} arguments are not a JSON object: {other}")),
        Err(e) => f.fail(format!(
            "{name} arguments are not valid JSON ({e}): {args:?}"
        )),
    }
}

async fn stream_tool(c: &Ctx) -> Findings {
    let mut f = Findings::default();
    let ex = send(c, json!({"model": c.model(), "messages": user(TOKYO), "tools": weather_tool(), "stream": true}), &mut f).await;
    let Some(s) = read_stream(&mut f, &ex) else {
        return f;
    };
    if s.calls.is_empty() {
        f.warn("the model answered without calling the tool");
        return f;
    }
    for (id, name, args) in s.calls.values() {
        judge_args(&mut f, name, args);
        let _ = id;
    }
    if s.finishes
        .get(&0)
        .and_then(|v| v.first())
        .map(String::as_str)
        != Some("tool_calls")
    {
        f.warn(format!(
            "finish_reason is {:?} after a tool call (expected tool_calls)",
            s.finishes.get(&0)
        ));
    }
    let (_, name, args) = s.calls.values().next().cloned().unwrap_or_default();
    f.ok(format!("{name}({args}) rebuilt from the deltas"));
    f
}

async fn tool(c: &Ctx) -> Findings {
    let mut f = Findings::default();
    let ex = send(
        c,
        json!({"model": c.model(), "messages": user(TOKYO), "tools": weather_tool()}),
        &mut f,
    )
    .await;
    let Some(v) = completion(&mut f, &ex) else {
        return f;
    };
    let calls = v["choices"][0]["message"]["tool_calls"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    if calls.is_empty() {
        f.warn("the model answered without calling the tool");
        return f;
    }
    for tc in &calls {
        if tc["id"].as_str().is_none_or(str::is_empty) || tc["type"] != "function" {
            f.fail(format!("tool call without id or type function: {tc}"));
        }
        let Some(args) = tc["function"]["arguments"].as_str() else {
            f.fail(format!(
                "arguments are not a string: {}",
                tc["function"]["arguments"]
            ));
            continue;
        };
        judge_args(&mut f, tc["function"]["name"].as_str().unwrap_or("?"), args);
    }
    f.ok(format!(
        "{}({})",
        calls[0]["function"]["name"].as_str().unwrap_or("?"),
        calls[0]["function"]["arguments"].as_str().unwrap_or("")
    ));
    f
}

async fn parallel(c: &Ctx) -> Findings {
    let mut f = Findings::default();
    let ex = send(c, json!({"model": c.model(), "messages": user(TWO_CITIES), "tools": weather_tool(), "stream": true}), &mut f).await;
    let Some(s) = read_stream(&mut f, &ex) else {
        return f;
    };
    let ids: std::collections::BTreeSet<&str> =
        s.calls.values().map(|(id, _, _)| id.as_str()).collect();
    if ids.len() < s.calls.len() {
        f.fail("two parallel tool calls share an id");
    }
    for (_, name, args) in s.calls.values() {
        match serde_json::from_str::<Value>(args) {
            Ok(_) => {}
            Err(e) => f.fail(format!(
                "{name} arguments are not valid JSON ({e}): {args:?}"
            )),
        }
    }
    if s.calls.len() < 2 {
        f.warn(format!("{} tool call(s) for two cities", s.calls.len()));
    }
    f.ok(format!(
        "{} calls with distinct indexes and ids",
        s.calls.len()
    ));
    f
}

async fn tool_result(c: &Ctx) -> Findings {
    let mut f = Findings::default();
    let messages = json!([
        {"role": "user", "content": TOKYO},
        {"role": "assistant", "content": null, "tool_calls": [{"id": "call_jusinfer_check_1", "type": "function",
            "function": {"name": "get_weather", "arguments": "{\"city\":\"Tokyo\"}"}}]},
        {"role": "tool", "tool_call_id": "call_jusinfer_check_1", "content": "{\"temperature_c\": 18, \"sky\": \"clear\"}"},
    ]);
    let ex = send(
        c,
        json!({"model": c.model(), "messages": messages, "tools": weather_tool()}),
        &mut f,
    )
    .await;
    let Some(v) = completion(&mut f, &ex) else {
        return f;
    };
    let msg = &v["choices"][0]["message"];
    if !msg["content"].is_string() && !msg["tool_calls"].is_array() {
        f.fail(format!("no content after the tool result: {msg}"));
    }
    f.ok("the tool result was accepted and answered");
    f
}

async fn json_mode(c: &Ctx) -> Findings {
    let mut f = Findings::default();
    let ex = send(
        c,
        json!({"model": c.model(), "response_format": {"type": "json_object"},
        "messages": user("Reply with a JSON object with one key, \"answer\", saying hello.")}),
        &mut f,
    )
    .await;
    let Some(v) = completion(&mut f, &ex) else {
        return f;
    };
    let content = v["choices"][0]["message"]["content"].as_str().unwrap_or("");
    match serde_json::from_str::<Value>(content) {
        Ok(Value::Object(_)) => f.ok(format!(
            "content parses: {}",
            content.chars().take(60).collect::<String>()
        )),
        Ok(other) => f.fail(format!("JSON mode content is not an object: {other}")),
        Err(e) => f.fail(format!(
            "JSON mode content does not parse ({e}): {content:?}"
        )),
    }
    f
}

async fn json_schema(c: &Ctx) -> Findings {
    let mut f = Findings::default();
    let format = json!({"type": "json_schema", "json_schema": {"name": "greeting", "strict": true, "schema": {
        "type": "object", "properties": {"answer": {"type": "string"}}, "required": ["answer"],
        "additionalProperties": false}}});
    let ex = send(
        c,
        json!({"model": c.model(), "response_format": format, "messages": user("Say hello.")}),
        &mut f,
    )
    .await;
    let Some(v) = completion(&mut f, &ex) else {
        return f;
    };
    let content = v["choices"][0]["message"]["content"].as_str().unwrap_or("");
    match serde_json::from_str::<Value>(content) {
        Ok(Value::Object(o)) => {
            if !o.contains_key("answer") {
                f.warn(format!("the object does not follow the schema: {content}"));
            }
            f.ok(format!(
                "content parses: {}",
                content.chars().take(60).collect::<String>()
            ));
        }
        Ok(other) => f.fail(format!("json_schema content is not an object: {other}")),
        Err(e) => f.fail(format!(
            "json_schema content does not parse ({e}): {content:?}"
        )),
    }
    f
}

async fn max_tokens(c: &Ctx) -> Findings {
    let mut f = Findings::default();
    let ex = send(
        c,
        json!({"model": c.model(), "max_tokens": 5,
        "messages": user("Write a long story about a lighthouse keeper.")}),
        &mut f,
    )
    .await;
    let Some(v) = completion(&mut f, &ex) else {
        return f;
    };
    let finish = v["choices"][0]["finish_reason"].as_str().unwrap_or("");
    let used = v["usage"]["completion_tokens"].as_u64();
    if finish == "length" {
        f.ok("finish_reason length");
    } else if used.is_some_and(|n| n > 5) {
        f.fail(format!(
            "max_tokens 5 ignored: finish_reason {finish:?}, {} completion tokens",
            used.unwrap_or(0)
        ));
    } else {
        f.warn(format!("finish_reason {finish:?} (expected length)"));
    }
    f
}

async fn unknown_field(c: &Ctx) -> Findings {
    let mut f = Findings::default();
    let ex = send(
        c,
        json!({"model": c.model(), "messages": user("Say hello."),
        "x_jusinfer_check": {"unknown": true}}),
        &mut f,
    )
    .await;
    if completion(&mut f, &ex).is_some() {
        f.ok("an unknown field was tolerated");
    }
    f
}

async fn seed(c: &Ctx) -> Findings {
    let mut f = Findings::default();
    let ex = send(
        c,
        json!({"model": c.model(), "messages": user("Say hello."), "seed": 7, "temperature": 0.2}),
        &mut f,
    )
    .await;
    if completion(&mut f, &ex).is_some() {
        f.ok("seed and temperature accepted");
    }
    f
}

/// Checks OpenAI's error envelope `{"error": {"message", "type", …}}`.
fn error_shape(f: &mut Findings, ex: &Exchange) -> Option<Value> {
    let Some(v) = ex.json() else {
        f.fail(format!("the error body is not JSON: {}", ex.snippet()));
        return None;
    };
    let e = &v["error"];
    if !e.is_object() || !e["message"].is_string() || !e["type"].is_string() {
        f.fail(format!(
            "the error is not in OpenAI's shape {{\"error\":{{\"message\",\"type\",…}}}}: {}",
            ex.snippet()
        ));
        return None;
    }
    Some(e.clone())
}

async fn bad_key(c: &Ctx) -> Findings {
    let mut f = Findings::default();
    let ex = c
        .post(
            PATH,
            &json!({"model": c.model(), "messages": user("Say hello.")}),
            BAD_KEY,
        )
        .await;
    f.exchanges.push(ex.clone());
    if expect_status(&mut f, &ex, 401) {
        if let Some(e) = error_shape(&mut f, &ex) {
            f.ok(format!("401 {}", e["type"]));
        }
    }
    f
}

async fn bad_request(c: &Ctx) -> Findings {
    let mut f = Findings::default();
    let ex = send(c, json!({"model": c.model(), "messages": "hello"}), &mut f).await;
    if expect_status(&mut f, &ex, 400) {
        if let Some(e) = error_shape(&mut f, &ex) {
            match e.get("param") {
                None => f.fail(format!("error.param is missing: {e}")),
                Some(Value::Null) => f.warn("error.param is null (expected \"messages\")"),
                Some(p) => f.ok(format!("400 {} param {p}", e["type"])),
            }
        }
    }
    f
}

async fn unknown_model(c: &Ctx) -> Findings {
    let mut f = Findings::default();
    let ex = send(
        c,
        json!({"model": NO_MODEL, "messages": user("Say hello.")}),
        &mut f,
    )
    .await;
    if expect_status(&mut f, &ex, 404) {
        if let Some(e) = error_shape(&mut f, &ex) {
            f.ok(format!("404 {}", e["type"]));
        }
    }
    f
}
