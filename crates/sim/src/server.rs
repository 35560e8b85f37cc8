//! The simulator's HTTP surface.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use bytes::Bytes;
use serde_json::{json, Value};

use crate::canned::{nonstream_body, stream_frames};
use crate::fixtures;
use crate::pace::{stream_response, StreamPlan};
use crate::scenario::{corrupt, Scenario};
use crate::streamify::{streamify, Style};

/// Requests kept for `GET /_sim/requests`.
const MAX_RECORDED: usize = 1000;

/// One request as the simulator received it.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Recorded {
    pub path: String,
    pub headers: serde_json::Map<String, Value>,
    pub body: Value,
}

/// Shared simulator state.
#[derive(Clone, Default)]
pub struct SimState {
    pub recorded: Arc<Mutex<Vec<Recorded>>>,
    /// Don't record (benchmarks).
    pub quiet: bool,
    /// Streams whose reader (the gateway) went away before the last frame.
    pub streams_cancelled: Arc<std::sync::atomic::AtomicU64>,
    /// Requests (streams or not) whose caller went away before the answer ended: the
    /// model string and the Unix time in milliseconds the simulator saw it.
    pub cancellations: Arc<Mutex<Vec<(String, f64)>>>,
    /// Frames handed to the connection so far, per model string.
    pub frames_sent: Arc<Mutex<std::collections::HashMap<String, u64>>>,
    /// Requests seen per model string (for `seq=`).
    pub seen: Arc<Mutex<std::collections::HashMap<String, usize>>>,
    /// The Anthropic scenario `agent-cache`: prompt prefixes written to the cache.
    pub prompt_cache: Arc<Mutex<std::collections::HashSet<u64>>>,
    /// Vertex: access tokens issued by `/token`, and how many were asked for.
    pub tokens: Arc<Mutex<std::collections::HashSet<String>>>,
    pub token_requests: Arc<std::sync::atomic::AtomicU64>,
}

fn unix_ms() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64() * 1e3)
}

impl SimState {
    pub(crate) fn cancelled(&self, model: &str) {
        if let Ok(mut c) = self.cancellations.lock() {
            c.push((model.to_owned(), unix_ms()));
        }
    }

    /// How many requests for `model` came before this one.
    fn nth(&self, model: &str) -> usize {
        self.seen.lock().map_or(0, |mut m| {
            let n = m.entry(model.to_owned()).or_insert(0);
            *n += 1;
            *n - 1
        })
    }
}

/// Records a request abandoned by its caller (dropped before `done`).
struct Watch {
    state: SimState,
    model: String,
    done: bool,
}

impl Drop for Watch {
    fn drop(&mut self) {
        if !self.done {
            self.state.cancelled(&self.model);
        }
    }
}

/// The simulator's router.
pub fn app(state: SimState) -> Router {
    Router::new()
        .route("/v1/chat/completions", post(chat))
        .route("/v1/embeddings", post(embeddings))
        .route("/v1/responses", post(responses))
        .route("/v1/messages", post(crate::anthropic::messages))
        .route("/v1/messages/count_tokens", post(count_tokens))
        .route("/v1/models", get(models))
        .route("/v1beta/models/{*target}", post(crate::gemini::models))
        .route("/token", post(crate::vertex::token))
        .route(
            "/v1/projects/{project}/locations/{location}/publishers/{publisher}/models/{*target}",
            post(crate::vertex::models),
        )
        .route(
            "/openai/deployments/{deployment}/{*op}",
            post(crate::azure::deployments),
        )
        .route("/openai/v1/{*op}", post(crate::azure::v1))
        .route("/_azure/msi", get(crate::azure::msi_token))
        .route("/model/{model}/{op}", post(crate::bedrock::model))
        .route("/_aws/ecs", get(crate::bedrock::container_credentials))
        .route("/_aws/sts", post(crate::bedrock::sts))
        .route("/_aws/sts/", post(crate::bedrock::sts))
        .route(
            "/latest/api/token",
            axum::routing::put(crate::bedrock::imds_token),
        )
        .route(
            "/latest/meta-data/iam/security-credentials/",
            get(crate::bedrock::imds_role),
        )
        .route(
            "/latest/meta-data/iam/security-credentials/{role}",
            get(crate::bedrock::imds_credentials),
        )
        .route("/_sim/requests", get(recorded).delete(clear))
        .route("/_sim/stats", get(stats))
        .with_state(state)
}

pub(crate) fn record(state: &SimState, path: &str, headers: &HeaderMap, body: &Value) {
    if state.quiet {
        return;
    }
    let mut h = serde_json::Map::new();
    for (k, v) in headers {
        h.insert(
            k.as_str().to_owned(),
            Value::from(v.to_str().unwrap_or("<binary>")),
        );
    }
    if let Ok(mut r) = state.recorded.lock() {
        if r.len() >= MAX_RECORDED {
            r.remove(0);
        }
        r.push(Recorded {
            path: path.to_owned(),
            headers: h,
            body: body.clone(),
        });
    }
}

async fn recorded(State(state): State<SimState>) -> Json<Value> {
    let list = state.recorded.lock().map(|r| r.clone()).unwrap_or_default();
    Json(json!(list))
}

async fn stats(State(state): State<SimState>) -> Json<Value> {
    let cancelled = state
        .streams_cancelled
        .load(std::sync::atomic::Ordering::Relaxed);
    let cancellations: Vec<Value> = state
        .cancellations
        .lock()
        .map(|c| {
            c.iter()
                .map(|(m, at)| json!({"model": m, "at_ms": at}))
                .collect()
        })
        .unwrap_or_default();
    let frames = state
        .frames_sent
        .lock()
        .map(|f| json!(*f))
        .unwrap_or_default();
    let tokens = state
        .token_requests
        .load(std::sync::atomic::Ordering::Relaxed);
    Json(
        json!({"streams_cancelled": cancelled, "cancellations": cancellations, "frames_sent": frames, "token_requests": tokens}),
    )
}

async fn clear(State(state): State<SimState>) -> StatusCode {
    if let Ok(mut r) = state.recorded.lock() {
        r.clear();
    }
    StatusCode::NO_CONTENT
}

/// Anthropic's token counter: a fixed answer (the tests check it is passed through).
async fn count_tokens(
    State(state): State<SimState>,
    headers: HeaderMap,
    body: Bytes,
) -> Json<Value> {
    let req: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    record(&state, "/v1/messages/count_tokens", &headers, &req);
    Json(json!({"input_tokens": 4242}))
}

async fn models() -> Json<Value> {
    let names = [
        "text",
        "capital",
        "answer",
        "parallel",
        "length",
        "cache",
        "fast",
        "err400",
        "err401",
        "err429",
        "err401key",
    ];
    let data: Vec<Value> = names
        .iter()
        .map(|n| json!({"id": n, "object": "model", "created": 0, "owned_by": "sim"}))
        .collect();
    Json(json!({"object": "list", "data": data}))
}

pub(crate) fn error_body(status: u16, message: &str) -> Bytes {
    let kind = if status >= 500 {
        "server_error"
    } else {
        "invalid_request_error"
    };
    Bytes::from(
        json!({"error": {"message": message, "type": kind, "param": null, "code": null}})
            .to_string(),
    )
}

pub(crate) fn json_response(status: u16, body: Bytes) -> Response {
    Response::builder()
        .status(status)
        .header("content-type", "application/json")
        .body(Body::from(body))
        .unwrap_or_else(|_| StatusCode::INTERNAL_SERVER_ERROR.into_response())
}

pub(crate) async fn embeddings(
    State(state): State<SimState>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let req: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    record(&state, "/v1/embeddings", &headers, &req);
    let sc = Scenario::parse(req["model"].as_str().unwrap_or_default());
    if let Some(st) = sc.status {
        return json_response(st, error_body(st, "simulated failure"));
    }
    let inputs: Vec<String> = match &req["input"] {
        Value::String(s) => vec![s.clone()],
        Value::Array(a) => a.iter().map(|v| v.to_string()).collect(),
        _ => vec![],
    };
    let data: Vec<Value> = inputs
        .iter()
        .enumerate()
        .map(|(i, s)| {
            let v: Vec<f64> = (0..8)
                .map(|k| ((s.len() + k * 7) % 13) as f64 / 13.0)
                .collect();
            json!({"object": "embedding", "index": i, "embedding": v})
        })
        .collect();
    let tokens: usize = inputs
        .iter()
        .map(|s| s.split_whitespace().count().max(1))
        .sum();
    let out = json!({"object": "list", "data": data, "model": req["model"], "usage": {"prompt_tokens": tokens, "total_tokens": tokens}});
    json_response(200, Bytes::from(out.to_string()))
}

pub(crate) async fn chat(
    State(state): State<SimState>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let req: Value = match serde_json::from_slice(&body) {
        Ok(v) => v,
        Err(e) => return json_response(400, error_body(400, &format!("sim: bad json: {e}"))),
    };
    record(&state, "/v1/chat/completions", &headers, &req);
    let model = req["model"].as_str().unwrap_or_default().to_owned();
    let sc = Scenario::parse(&model);
    let mut watch = Watch {
        state: state.clone(),
        model: model.clone(),
        done: false,
    };
    if sc.delay_ms > 0 {
        tokio::time::sleep(Duration::from_millis(sc.delay_ms)).await;
    }
    watch.done = true;
    let bad_errors = sc.fault == "bad_errors";
    let plain = |status: u16, text: &'static str| {
        Response::builder()
            .status(status)
            .header("content-type", "text/plain")
            .body(Body::from(text))
            .unwrap_or_else(|_| StatusCode::INTERNAL_SERVER_ERROR.into_response())
    };
    let bearer = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    if bearer == format!("Bearer {}", crate::probe::BAD_KEY) {
        if bad_errors {
            return plain(401, "Unauthorized");
        }
        return json_response(
            401,
            fixtures::read("errors/openai_401_invalid_api_key.json").unwrap_or_default(),
        );
    }
    if !req["messages"].is_array() {
        if bad_errors {
            return plain(400, "bad request");
        }
        return json_response(
            400,
            Bytes::from(
                json!({"error": {"message": "Invalid type for 'messages': expected an array of objects.",
                                 "type": "invalid_request_error", "param": "messages", "code": "invalid_type"}})
                .to_string(),
            ),
        );
    }
    let sc = if sc.name == "probe" {
        let stream = req["stream"].as_bool().unwrap_or(false);
        let name = match crate::probe::plan(&req) {
            // The recorded single-call and answer turns are streams; their non-streaming
            // counterparts are the recorded parallel calls and the recorded text.
            "capital" if !stream => "parallel",
            "answer" if !stream => "text",
            n => n,
        };
        Scenario {
            name: name.to_owned(),
            ..sc
        }
    } else {
        sc
    };
    if sc.no_effort && req.get("reasoning_effort").is_some() {
        let mut body: Value = fixtures::read("errors/openai_400_unsupported_parameter.json")
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
            .unwrap_or_else(|| json!({"error": {"type": "invalid_request_error"}}));
        body["error"]["param"] = json!("reasoning_effort");
        body["error"]["message"] =
            json!("Unsupported parameter: 'reasoning_effort' is not supported with this model.");
        return json_response(400, Bytes::from(body.to_string()));
    }
    if let Some(n) = sc.expect_messages {
        let got = req["messages"].as_array().map_or(0, Vec::len);
        if got != n {
            return json_response(
                400,
                error_body(400, &format!("sim: expected {n} messages, got {got}")),
            );
        }
    }
    let status = if sc.seq.is_empty() {
        sc.status
    } else {
        let n = state.nth(&model).min(sc.seq.len() - 1);
        sc.seq.get(n).copied().filter(|s| *s != 200)
    };
    if let Some(st) = status {
        let mut resp = json_response(
            st,
            error_body(st, &format!("simulated upstream status {st}")),
        );
        if let Some(ra) = sc.retry_after.as_deref().and_then(|v| v.parse().ok()) {
            resp.headers_mut().insert("retry-after", ra);
        }
        if let Some(ra) = sc.retry_after_ms.as_deref().and_then(|v| v.parse().ok()) {
            resp.headers_mut().insert("retry-after-ms", ra);
        }
        return resp;
    }
    if let Some(ct) = &sc.content_type {
        return Response::builder()
            .status(200)
            .header("content-type", ct.as_str())
            .body(Body::from("<html>not an API</html>"))
            .unwrap_or_else(|_| StatusCode::INTERNAL_SERVER_ERROR.into_response());
    }
    if sc.name == "err401key" {
        // A compatible host that quotes the key it was sent back in its 401 (the recorded
        // OpenAI error's shape, with the presented key in place of OpenAI's mask).
        let key = bearer.strip_prefix("Bearer ").unwrap_or(bearer);
        let body = json!({"error": {"message": format!("Incorrect API key provided: {key}. You can find your API key at https://platform.openai.com/account/api-keys."),
            "type": "invalid_request_error", "param": null, "code": "invalid_api_key"}});
        return json_response(401, Bytes::from(body.to_string()));
    }
    let stream = req["stream"].as_bool().unwrap_or(false);
    if sc.name == "json" {
        return json_answer(&req, stream, &sc, &state);
    }
    if sc.name == "agent" {
        return agent_answer(&req, stream, &sc, &state);
    }
    if !stream {
        return match nonstream_body(&sc.name) {
            Ok(Some((status, body))) => {
                let body = crate::probe::break_body(&sc.fault, body);
                let body = if sc.truncate_json {
                    body.slice(..body.len() / 2)
                } else if sc.bad_utf8 {
                    corrupt(&body)
                } else {
                    body
                };
                json_response(status, body)
            }
            Ok(None) => json_response(
                404,
                error_body(404, &format!("sim has no scenario {:?}", sc.name)),
            ),
            Err(e) => json_response(500, error_body(500, &format!("sim: {e:#}"))),
        };
    }
    let include_usage = req["stream_options"]["include_usage"]
        .as_bool()
        .unwrap_or(false);
    let last_is_tool = req["messages"]
        .as_array()
        .and_then(|m| m.last())
        .is_some_and(|m| m["role"] == "tool");
    let sc = if sc.name == "roundtrip" {
        // The recorded tool-call exchange: the call, then (given its result) the answer.
        Scenario {
            name: if last_is_tool { "answer" } else { "capital" }.to_owned(),
            ..sc
        }
    } else {
        sc
    };
    let mut frames = match stream_frames(&sc, include_usage) {
        Ok(Some(f)) => f,
        Ok(None) => match nonstream_body(&sc.name) {
            Ok(Some((status, body))) => return json_response(status, body),
            _ => {
                return json_response(
                    404,
                    error_body(404, &format!("sim has no scenario {:?}", sc.name)),
                )
            }
        },
        Err(e) => return json_response(500, error_body(500, &format!("sim: {e:#}"))),
    };
    if let Some(n) = sc.broken_sse {
        frames.truncate(n);
        frames.push(Bytes::from_static(
            b"data: {\"id\":\"chatcmpl-broken\",\"choices\":[{\"index\":0,\"del\n\n",
        ));
    }
    if sc.bad_utf8 {
        frames = frames.iter().map(corrupt).collect();
    }
    if sc.error_event {
        frames = vec![Bytes::from_static(
            b"data: {\"error\":{\"message\":\"The server had an error while processing your request.\",\"type\":\"server_error\",\"param\":null,\"code\":null}}\n\n",
        )];
    }
    if sc.trickle {
        frames = frames
            .iter()
            .flat_map(|f| (0..f.len()).map(move |i| f.slice(i..=i)))
            .collect();
    }
    frames = crate::probe::break_stream(&sc.fault, frames);
    if sc.fault == "json_ct" {
        let mut resp = stream_response(
            frames,
            &StreamPlan {
                gap_ms: sc.gap_ms,
                disconnect_after: sc.disconnect_after,
                stall_after: sc.stall_after,
                model,
            },
            &state,
        );
        resp.headers_mut().insert(
            "content-type",
            axum::http::HeaderValue::from_static("application/json"),
        );
        return resp;
    }
    stream_response(
        frames,
        &StreamPlan {
            gap_ms: sc.gap_ms,
            disconnect_after: sc.disconnect_after,
            stall_after: sc.stall_after,
            model,
        },
        &state,
    )
}

/// The `agent` scenario, a coding agent's loop in two turns: until the conversation holds
/// a tool result, call the tool (`tool=`, else the first function tool) with arguments
/// fitting its schema; after it, answer "done: " and the start of the last result.
fn agent_answer(req: &Value, stream: bool, sc: &Scenario, state: &SimState) -> Response {
    let messages = req["messages"].as_array().map_or(&[][..], Vec::as_slice);
    let result = messages
        .iter()
        .rev()
        .find(|m| m["role"] == "tool")
        .map(|m| match &m["content"] {
            Value::String(s) => s.clone(),
            other => other.to_string(),
        });
    let tools = req["tools"].as_array().map_or(&[][..], Vec::as_slice);
    let tool = tools.iter().find(|t| match &sc.tool {
        Some(name) => t["function"]["name"] == name.as_str(),
        None => t["type"] == "function",
    });
    let message = match (result, tool) {
        (Some(r), _) => {
            let head: String = r.chars().take(60).collect();
            json!({"role": "assistant", "content": format!("done: {head}")})
        }
        (None, Some(t)) => {
            let args = crate::anthropic::sample(&t["function"]["parameters"]).to_string();
            json!({"role": "assistant", "content": null, "tool_calls": [{"id": "call_sim_agent_1",
                "type": "function", "function": {"name": t["function"]["name"], "arguments": args}}]})
        }
        (None, None) => {
            return json_response(400, error_body(400, "sim: the agent scenario needs a tool"))
        }
    };
    let finish = if message.get("tool_calls").is_some() {
        "tool_calls"
    } else {
        "stop"
    };
    let completion = json!({
        "id": "chatcmpl-agent", "object": "chat.completion", "created": 1727346142, "model": "agent",
        "choices": [{"index": 0, "message": message, "logprobs": null, "finish_reason": finish}],
        "usage": {"prompt_tokens": 40, "completion_tokens": 10, "total_tokens": 50},
    });
    if !stream {
        return json_response(200, Bytes::from(completion.to_string()));
    }
    let include_usage = req["stream_options"]["include_usage"]
        .as_bool()
        .unwrap_or(false);
    stream_response(
        streamify(&completion, Style::Standard, include_usage),
        &StreamPlan {
            gap_ms: sc.gap_ms,
            disconnect_after: sc.disconnect_after,
            stall_after: sc.stall_after,
            model: sc.name.clone(),
        },
        state,
    )
}

/// `json`: a completion whose content fits the request's `response_format` json_schema, or
/// a JSON object for `json_object` (400 when the request has neither: the gateway must
/// have translated the client's format).
fn json_answer(req: &Value, stream: bool, sc: &Scenario, state: &SimState) -> Response {
    let rf = &req["response_format"];
    let content = if rf["type"] == "json_object" {
        json!({"answer": "Hello!"}).to_string()
    } else if rf["type"] != "json_schema" || !rf["json_schema"]["schema"].is_object() {
        return json_response(
            400,
            error_body(
                400,
                "sim: the json scenario needs response_format json_schema",
            ),
        );
    } else {
        crate::anthropic::sample(&rf["json_schema"]["schema"]).to_string()
    };
    let completion = json!({
        "id": "chatcmpl-json", "object": "chat.completion", "created": 1727346142, "model": "json",
        "choices": [{"index": 0, "message": {"role": "assistant", "content": content, "refusal": null},
                     "logprobs": null, "finish_reason": "stop"}],
        "usage": {"prompt_tokens": 30, "completion_tokens": 12, "total_tokens": 42},
    });
    if !stream {
        return json_response(
            200,
            crate::probe::break_body(&sc.fault, Bytes::from(completion.to_string())),
        );
    }
    let include_usage = req["stream_options"]["include_usage"]
        .as_bool()
        .unwrap_or(false);
    stream_response(
        crate::probe::break_stream(
            &sc.fault,
            streamify(&completion, Style::Standard, include_usage),
        ),
        &StreamPlan {
            gap_ms: sc.gap_ms,
            disconnect_after: sc.disconnect_after,
            stall_after: sc.stall_after,
            model: sc.name.clone(),
        },
        state,
    )
}

/// The `k`th of the recorded multi-step reasoning streams (one JSON payload per line; a
/// stream starts at each `response.created`), as SSE frames.
fn reasoning_step(k: usize) -> anyhow::Result<Vec<Bytes>> {
    let raw = fixtures::read("responses/responses_stream_reasoning_multistep.jsonl")?;
    let mut streams: Vec<Vec<Bytes>> = Vec::new();
    for line in raw.split(|b| *b == b'\n').filter(|l| !l.is_empty()) {
        let v: Value = serde_json::from_slice(line)?;
        let kind = v["type"].as_str().unwrap_or_default().to_owned();
        if kind == "response.created" || streams.is_empty() {
            streams.push(Vec::new());
        }
        if let Some(s) = streams.last_mut() {
            s.push(jusinfer_sse::encode_bytes(Some(&kind), line));
        }
    }
    let last = streams.len().saturating_sub(1);
    Ok(streams.into_iter().nth(k.min(last)).unwrap_or_default())
}

/// POST /v1/responses: OpenAI's Responses API, replaying recorded Responses traffic
/// (`text`, `function` (the call; given its output, the answer), `incomplete`,
/// `reasoning` (a reasoning model's steps: the next one per `function_call_output` sent)).
pub(crate) async fn responses(
    State(state): State<SimState>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let req: Value = match serde_json::from_slice(&body) {
        Ok(v) => v,
        Err(e) => return json_response(400, error_body(400, &format!("sim: bad json: {e}"))),
    };
    record(&state, "/v1/responses", &headers, &req);
    let model = req["model"].as_str().unwrap_or_default().to_owned();
    let sc = Scenario::parse(&model);
    if let Some(st) = sc.status {
        return json_response(
            st,
            error_body(st, &format!("simulated upstream status {st}")),
        );
    }
    let outputs = req["input"].as_array().map_or(0, |items| {
        items
            .iter()
            .filter(|i| i["type"] == "function_call_output")
            .count()
    });
    let answered = outputs > 0;
    let stream = req["stream"].as_bool().unwrap_or(false);
    let result = (|| -> anyhow::Result<Option<Response>> {
        if stream {
            let rel = match sc.name.as_str() {
                "reasoning" => {
                    return Ok(Some(stream_response(
                        reasoning_step(outputs)?,
                        &StreamPlan {
                            gap_ms: sc.gap_ms,
                            disconnect_after: sc.disconnect_after,
                            stall_after: sc.stall_after,
                            model: model.clone(),
                        },
                        &state,
                    )))
                }
                "text" => "responses/responses_stream_text.sse",
                "function" => "responses/responses_stream_function_call.sse",
                "incomplete" => "responses/responses_stream_incomplete_max_output_tokens.sse",
                _ => return Ok(None),
            };
            let raw = fixtures::read(rel)?;
            let mut d = jusinfer_sse::Decoder::new();
            d.push(&raw);
            let mut frames = Vec::new();
            while let Some(ev) = d.next_event()? {
                frames.push(ev.raw);
            }
            frames.extend(d.finish()?.into_iter().map(|ev| ev.raw));
            return Ok(Some(stream_response(
                frames,
                &StreamPlan {
                    gap_ms: sc.gap_ms,
                    disconnect_after: sc.disconnect_after,
                    stall_after: sc.stall_after,
                    model: model.clone(),
                },
                &state,
            )));
        }
        let body = match sc.name.as_str() {
            "text" => fixtures::read("responses/responses_nonstream_text.json")?,
            "function" => {
                let ex = fixtures::json(
                    "responses/responses_nonstream_function_call_roundtrip.exchange.json",
                )?;
                Bytes::from(ex[usize::from(answered)]["response"]["body"].to_string())
            }
            _ => return Ok(None),
        };
        Ok(Some(json_response(200, body)))
    })();
    match result {
        Ok(Some(r)) => r,
        Ok(None) => json_response(
            404,
            error_body(404, &format!("sim has no Responses scenario {:?}", sc.name)),
        ),
        Err(e) => json_response(500, error_body(500, &format!("sim: {e:#}"))),
    }
}
