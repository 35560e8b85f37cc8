//! The Anthropic-shaped side of the simulator: `POST /v1/messages`, replaying the recorded
//! Anthropic traffic in `shared/fixtures/anthropic` (and `errors/`), turning recorded
//! non-streaming messages into streams where no stream was recorded.
//!
//! Scenarios (the upstream model name, `;key=value` faults as for Chat):
//! `text`, `weather` (tool round trip, recorded streams), `thinking` (recorded thinking
//! stream), `thinking-tool` (thinking + text + tool_use, and the turn after it), `cache`
//! (prompt-cache usage), `cache-max` (recorded stream cut by max_tokens), `parallel` (two
//! recorded tool_use blocks in one turn), `forced-tool` (answers the forced tool with input
//! fitting its schema), `overloaded` (stream that fails with an `error` event), `err401`,
//! `err429`, `fast` (benchmarks), `agent-cache` (answers "Done." with usage computed the way
//! Anthropic's prompt cache would: see [`cache_usage`]).

use std::time::Duration;

use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use serde_json::{json, Value};

use crate::fixtures;
use crate::scenario::Scenario;
use crate::server::{record, SimState};
pub use jusinfer_testkit::anthropic::streamify;

/// Whether the request carries tool results (the second turn of a round trip).
fn is_second_turn(req: &Value) -> bool {
    req["messages"].as_array().is_some_and(|m| {
        m.iter().any(|msg| {
            msg["content"]
                .as_array()
                .is_some_and(|c| c.iter().any(|b| b["type"] == "tool_result"))
        })
    })
}

fn exchange_response(rel: &str, second: bool) -> anyhow::Result<(u16, Value)> {
    let v = fixtures::json(rel)?;
    let turn = match &v {
        Value::Array(a) => a
            .get(usize::from(second))
            .or(a.first())
            .cloned()
            .unwrap_or(Value::Null),
        other => other.clone(),
    };
    let status = turn["response"]["status"].as_u64().unwrap_or(200) as u16;
    let body = match &turn["response"]["body"] {
        // Some recordings keep the body as the raw text.
        Value::String(s) => serde_json::from_str(s).unwrap_or_else(|_| Value::String(s.clone())),
        other => other.clone(),
    };
    Ok((status, body))
}

/// A value fitting `schema` (enough of JSON Schema for the tests' schemas).
pub(crate) fn sample(schema: &Value) -> Value {
    if let Some(e) = schema["enum"].as_array().and_then(|e| e.first()) {
        return e.clone();
    }
    match schema["type"].as_str().unwrap_or("object") {
        "object" => {
            let mut o = serde_json::Map::new();
            for (k, s) in schema["properties"].as_object().into_iter().flatten() {
                o.insert(k.clone(), sample(s));
            }
            Value::Object(o)
        }
        "array" => json!([sample(&schema["items"])]),
        "integer" => json!(schema["minimum"].as_i64().unwrap_or(42)),
        "number" => json!(schema["minimum"].as_f64().unwrap_or(4.5)),
        "boolean" => json!(true),
        "null" => Value::Null,
        _ => json!("sim"),
    }
}

/// Tokens of `bytes` of request JSON: the recorded cache exchange
/// (`anthropic_nonstream_cache_usage`) has 1,114 input tokens in 5,637 bytes.
fn tokens_of(bytes: usize) -> u64 {
    (bytes as u64 * 1114).div_ceil(5637)
}

/// Anthropic's smallest cacheable prefix (Sonnet, Opus).
const MIN_CACHEABLE: u64 = 1024;

/// Usage for `req` as Anthropic's prompt cache computes it, updating `cache`: the prompt is
/// the blocks tools → system → messages; a block with `cache_control` is a breakpoint;
/// at each one the longest prefix written before (looking back up to 20 blocks) is read;
/// the prefix up to the last breakpoint is written (what was not read); the rest is
/// plain input. Prefixes under [`MIN_CACHEABLE`] tokens are never cached. Prefixes are
/// identified by a running hash of the blocks without their `cache_control`.
fn cache_usage(req: &Value, cache: &mut std::collections::HashSet<u64>) -> Value {
    use std::hash::{Hash, Hasher};
    let mut blocks: Vec<Value> = Vec::new();
    blocks.extend(req["tools"].as_array().cloned().unwrap_or_default());
    match &req["system"] {
        Value::String(s) => blocks.push(json!({"type": "text", "text": s})),
        Value::Array(a) => blocks.extend(a.iter().cloned()),
        _ => {}
    }
    for m in req["messages"].as_array().into_iter().flatten() {
        match &m["content"] {
            Value::String(s) => blocks.push(json!({"role": m["role"], "type": "text", "text": s})),
            Value::Array(a) => {
                for b in a {
                    let mut b = b.clone();
                    if let Some(o) = b.as_object_mut() {
                        o.insert("role".into(), m["role"].clone());
                    }
                    blocks.push(b);
                }
            }
            _ => {}
        }
    }
    // Running (hash, tokens) after each block, and where the breakpoints are.
    let mut h = std::collections::hash_map::DefaultHasher::new();
    req["model"].to_string().hash(&mut h);
    let mut prefix = Vec::with_capacity(blocks.len());
    let mut breakpoints = Vec::new();
    let mut tokens = 0;
    for (i, b) in blocks.iter().enumerate() {
        let mut b = b.clone();
        if let Some(o) = b.as_object_mut() {
            if o.remove("cache_control").is_some() {
                breakpoints.push(i);
            }
        }
        let text = b.to_string();
        text.hash(&mut h);
        tokens += tokens_of(text.len());
        prefix.push((h.finish(), tokens));
    }
    let total = tokens;
    let mut read = 0;
    for &bp in &breakpoints {
        for j in (bp.saturating_sub(19)..=bp).rev() {
            let (hash, t) = prefix[j];
            if cache.contains(&hash) {
                read = read.max(t);
                break;
            }
        }
    }
    let mut written = 0;
    if let Some(&last) = breakpoints.last() {
        let (_, t) = prefix[last];
        if t >= MIN_CACHEABLE && t > read {
            written = t - read;
        }
    }
    for &bp in &breakpoints {
        let (hash, t) = prefix[bp];
        if t >= MIN_CACHEABLE {
            cache.insert(hash);
        }
    }
    json!({
        "input_tokens": total - read - written,
        "cache_creation_input_tokens": written,
        "cache_read_input_tokens": read,
        "output_tokens": 2,
    })
}

/// The non-streaming message for a scenario.
fn message(sc: &Scenario, req: &Value) -> anyhow::Result<Option<(u16, Value)>> {
    let second = is_second_turn(req);
    Ok(Some(match sc.name.as_str() {
        "text" => (
            200,
            fixtures::json("anthropic/anthropic_nonstream_text.json")?,
        ),
        "weather" => exchange_response(
            "anthropic/anthropic_nonstream_tool_use_roundtrip.exchange.json",
            second,
        )?,
        "thinking-tool" => exchange_response(
            "anthropic/anthropic_nonstream_thinking_tool_use_roundtrip.exchange.json",
            second,
        )?,
        "cache" => exchange_response(
            "anthropic/anthropic_nonstream_cache_usage.exchange.json",
            true,
        )?,
        "err401" => exchange_response(
            "errors/anthropic_401_authentication_error.exchange.json",
            false,
        )?,
        "err429" => exchange_response("errors/anthropic_429_rate_limit.exchange.json", false)?,
        "parallel" => {
            let (_, weather) = exchange_response(
                "anthropic/anthropic_nonstream_tool_use_roundtrip.exchange.json",
                false,
            )?;
            let (_, country) = exchange_response(
                "anthropic/anthropic_nonstream_thinking_tool_use_roundtrip.exchange.json",
                false,
            )?;
            let mut content = vec![json!({"type": "text", "text": "I'll look up both."})];
            content.extend(weather["content"].as_array().cloned().unwrap_or_default());
            content.extend(
                country["content"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter(|b| b["type"] == "tool_use")
                    .cloned(),
            );
            let mut m = weather.clone();
            m["content"] = Value::Array(content);
            (200, m)
        }
        "forced-tool" => {
            let name = req["tool_choice"]["name"]
                .as_str()
                .unwrap_or_default()
                .to_owned();
            let schema = req["tools"]
                .as_array()
                .into_iter()
                .flatten()
                .find(|t| t["name"] == name.as_str())
                .map(|t| t["input_schema"].clone())
                .unwrap_or(json!({"type": "object"}));
            (
                200,
                json!({
                    "id": "msg_sim_forced", "type": "message", "role": "assistant", "model": req["model"],
                    "content": [{"type": "tool_use", "id": "toolu_sim_forced", "name": name, "input": sample(&schema)}],
                    "stop_reason": "tool_use", "stop_sequence": null,
                    "usage": {"input_tokens": 20, "cache_creation_input_tokens": 0, "cache_read_input_tokens": 0, "output_tokens": 12}
                }),
            )
        }
        "fast" => (200, serde_json::from_str(FAST_MESSAGE)?),
        // The recorded text, cut where a small `max_tokens` would cut it.
        "probe-max" => {
            let mut m = fixtures::json("anthropic/anthropic_nonstream_text.json")?;
            let max = req["max_tokens"].as_u64().unwrap_or(5);
            let text = m["content"][0]["text"].as_str().unwrap_or("").to_owned();
            let cut: Vec<&str> = text.split(' ').take(max as usize).collect();
            m["content"][0]["text"] = json!(cut.join(" "));
            m["stop_reason"] = json!("max_tokens");
            m["usage"]["output_tokens"] = json!(max);
            (200, m)
        }
        _ => return Ok(None),
    }))
}

/// A recorded stream's frames, or `None` when the scenario has none recorded.
fn recorded_stream(sc: &Scenario, req: &Value) -> anyhow::Result<Option<Vec<Bytes>>> {
    let rel = match sc.name.as_str() {
        "weather" if is_second_turn(req) => {
            "anthropic/anthropic_stream_tool_use_roundtrip.turn2.sse"
        }
        "weather" => "anthropic/anthropic_stream_tool_use_roundtrip.turn1.sse",
        "thinking" => "anthropic/anthropic_stream_thinking.sse",
        "cache-max" => "anthropic/anthropic_stream_cache_read_max_tokens.sse",
        "overloaded" => {
            let mut frames = frames_of("anthropic/anthropic_stream_tool_use_roundtrip.turn2.sse")?;
            frames.truncate(4);
            frames.extend(frames_of("errors/anthropic_overloaded_error_event.sse")?);
            return Ok(Some(frames));
        }
        _ => return Ok(None),
    };
    Ok(Some(frames_of(rel)?))
}

/// A recorded stream's frames, byte for byte (CRLF framing kept).
pub(crate) fn frames_of(rel: &str) -> anyhow::Result<Vec<Bytes>> {
    let raw = fixtures::read(rel)?;
    let mut d = jusinfer_sse::Decoder::new();
    d.push(&raw);
    let mut out = Vec::new();
    while let Some(ev) = d.next_event()? {
        out.push(ev.raw);
    }
    out.extend(d.finish()?.into_iter().map(|e| e.raw));
    Ok(out)
}

/// The benchmark answer, also served as precomputed bytes (as the Chat `fast` one is).
const FAST_MESSAGE: &str = r#"{"id":"msg_fast","type":"message","role":"assistant","model":"fast","content":[{"type":"text","text":"Hello from the simulator."}],"stop_reason":"end_turn","stop_sequence":null,"usage":{"input_tokens":9,"cache_creation_input_tokens":0,"cache_read_input_tokens":0,"output_tokens":5}}"#;

fn error_body(status: u16, message: &str) -> Value {
    let kind = match status {
        400 => "invalid_request_error",
        401 => "authentication_error",
        403 => "permission_error",
        404 => "not_found_error",
        413 => "request_too_large",
        429 => "rate_limit_error",
        529 => "overloaded_error",
        _ => "api_error",
    };
    json!({"type": "error", "error": {"type": kind, "message": message}})
}

fn json_response(status: u16, body: &Value) -> Response {
    Response::builder()
        .status(status)
        .header("content-type", "application/json")
        .body(Body::from(body.to_string()))
        .unwrap_or_else(|_| StatusCode::INTERNAL_SERVER_ERROR.into_response())
}

pub async fn messages(State(state): State<SimState>, headers: HeaderMap, body: Bytes) -> Response {
    let req: Value = match serde_json::from_slice(&body) {
        Ok(v) => v,
        Err(e) => return json_response(400, &error_body(400, &format!("sim: bad json: {e}"))),
    };
    record(&state, "/v1/messages", &headers, &req);
    answer(state, headers, req).await
}

/// The answer to a Messages request (already recorded): the scenario its `model` names.
pub(crate) async fn answer(state: SimState, headers: HeaderMap, req: Value) -> Response {
    let mut sc = Scenario::parse(req["model"].as_str().unwrap_or_default());
    if headers.get("x-api-key").and_then(|v| v.to_str().ok()) == Some(crate::probe::BAD_KEY) {
        return match exchange_response(
            "errors/anthropic_401_authentication_error.exchange.json",
            false,
        ) {
            Ok((status, body)) => json_response(status, &body),
            Err(e) => json_response(500, &error_body(500, &format!("sim: {e:#}"))),
        };
    }
    if !req["max_tokens"].is_u64() {
        return json_response(400, &error_body(400, "max_tokens: Field required"));
    }
    if sc.name == "probe" {
        // The recorded exchange that fits what the conformance probe asks.
        let has_tools = req["tools"].as_array().is_some_and(|t| !t.is_empty());
        sc.name = if req["tool_choice"]["type"] == "tool" {
            "forced-tool"
        } else if has_tools {
            "weather"
        } else if req["max_tokens"].as_u64().is_some_and(|m| m <= 16) {
            "probe-max"
        } else {
            "text"
        }
        .to_owned();
    }
    if sc.delay_ms > 0 {
        tokio::time::sleep(Duration::from_millis(sc.delay_ms)).await;
    }
    if let Some(st) = sc.status {
        return json_response(
            st,
            &error_body(st, &format!("simulated upstream status {st}")),
        );
    }
    let stream = req["stream"].as_bool().unwrap_or(false);
    if sc.name == "fast" && !stream {
        return Response::builder()
            .status(200)
            .header("content-type", "application/json")
            .body(Body::from(FAST_MESSAGE))
            .unwrap_or_else(|_| StatusCode::INTERNAL_SERVER_ERROR.into_response());
    }
    if sc.name == "agent-cache" {
        let usage = match state.prompt_cache.lock() {
            Ok(mut cache) => cache_usage(&req, &mut cache),
            Err(_) => return json_response(500, &error_body(500, "sim: cache lock")),
        };
        let m = json!({"id": "msg_sim_cache", "type": "message", "role": "assistant",
            "model": req["model"], "content": [{"type": "text", "text": "Done."}],
            "stop_reason": "end_turn", "stop_sequence": null, "usage": usage});
        return if stream {
            crate::pace::stream_response(
                streamify(&m, None),
                &crate::pace::StreamPlan::of(&sc),
                &state,
            )
        } else {
            json_response(200, &m)
        };
    }
    let found = match message(&sc, &req) {
        Ok(m) => m,
        Err(e) => return json_response(500, &error_body(500, &format!("sim: {e:#}"))),
    };
    if let Some((status, body)) = &found {
        if *status != 200 {
            let mut resp = json_response(*status, body);
            if *status == 429 {
                resp.headers_mut().insert(
                    "x-should-retry",
                    axum::http::HeaderValue::from_static("true"),
                );
            }
            return resp;
        }
    }
    if !stream {
        return match found {
            Some((status, body)) => json_response(status, &body),
            None => json_response(
                404,
                &error_body(404, &format!("sim has no scenario {:?}", sc.name)),
            ),
        };
    }
    let frames = match recorded_stream(&sc, &req) {
        Ok(Some(f)) => f,
        Ok(None) => match &found {
            Some((_, m)) => streamify(m, (sc.name == "fast").then_some(sc.chunks)),
            None => {
                return json_response(
                    404,
                    &error_body(404, &format!("sim has no scenario {:?}", sc.name)),
                )
            }
        },
        Err(e) => return json_response(500, &error_body(500, &format!("sim: {e:#}"))),
    };
    crate::pace::stream_response(frames, &crate::pace::StreamPlan::of(&sc), &state)
}
