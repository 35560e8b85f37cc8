//! The Gemini-shaped side of the simulator: `POST /v1beta/models/{model}:{method}`,
//! replaying the recorded Gemini traffic in `shared/fixtures/gemini` (and `vertex/` for
//! the blocked prompt). Streams are `?alt=sse` with the recordings' CRLF framing.
//!
//! Scenarios (the model in the path, `;key=value` faults as for Chat): `text`, `parallel`
//! (two calls, the first with a thought signature, and the turn after them), `thinking-sig`
//! (a thinking model's call whose `thoughtSignature` must come back on the next turn, as
//! gemini-3 demands: a turn without it is a 400), `thoughts` (thought summaries), `length`,
//! `safety`, `cache` (cached-content usage), `blocked` (`promptFeedback.blockReason`),
//! `err400-key`, `err404`, `err429` (with `RetryInfo`), `fast` (benchmarks).

use std::time::Duration;

use axum::body::Body;
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use serde_json::{json, Value};

use crate::fixtures;
use crate::scenario::Scenario;
use crate::server::{record, SimState};

fn json_response(status: u16, body: &Value) -> Response {
    Response::builder()
        .status(status)
        .header("content-type", "application/json; charset=UTF-8")
        .body(Body::from(body.to_string()))
        .unwrap_or_else(|_| StatusCode::INTERNAL_SERVER_ERROR.into_response())
}

/// Google's error body.
fn error(status: u16, code: &str, message: &str) -> Response {
    json_response(
        status,
        &json!({"error": {"code": status, "message": message, "status": code}}),
    )
}

/// Turn `n` of a recorded exchange (the last when there are fewer): status and body.
fn exchange(rel: &str, n: usize) -> anyhow::Result<(u16, Value)> {
    let v = fixtures::json(rel)?;
    let turn = match &v {
        Value::Array(a) => a.get(n).or(a.last()).cloned().unwrap_or(Value::Null),
        other => other.clone(),
    };
    // Some recordings are the error body alone.
    if turn.get("response").is_none() {
        let status = turn["error"]["code"].as_u64().unwrap_or(500) as u16;
        return Ok((status, turn));
    }
    let status = turn["response"]["status"].as_u64().unwrap_or(200) as u16;
    let body = match &turn["response"]["body"] {
        Value::String(s) => serde_json::from_str(s).unwrap_or_else(|_| Value::String(s.clone())),
        other => other.clone(),
    };
    Ok((status, body))
}

/// Whether the request answers calls (the turn after them).
fn answers_calls(req: &Value) -> bool {
    req["contents"].as_array().is_some_and(|c| {
        c.iter().any(|t| {
            t["parts"]
                .as_array()
                .is_some_and(|p| p.iter().any(|p| p.get("functionResponse").is_some()))
        })
    })
}

/// gemini-3's rule: a model turn's first `functionCall` part must carry the signature it
/// was sent with.
fn missing_signature(req: &Value) -> bool {
    req["contents"].as_array().is_some_and(|c| {
        c.iter().filter(|t| t["role"] == "model").any(|t| {
            t["parts"]
                .as_array()
                .and_then(|p| p.iter().find(|p| p.get("functionCall").is_some()))
                .is_some_and(|p| !p["thoughtSignature"].is_string())
        })
    })
}

const FAST: &str = r#"{"candidates": [{"content": {"parts": [{"text": "Hello from the simulator."}],"role": "model"},"finishReason": "STOP","index": 0}],"usageMetadata": {"promptTokenCount": 9,"candidatesTokenCount": 5,"totalTokenCount": 14},"modelVersion": "fast","responseId": "simfast"}"#;

pub async fn models(
    State(state): State<SimState>,
    Path(target): Path<String>,
    RawQuery(query): RawQuery,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    if headers.get("x-goog-api-key").is_none() {
        let path = uri.path_and_query().map_or(uri.path(), |p| p.as_str());
        record(&state, path, &headers, &Value::Null);
        return error(403, "PERMISSION_DENIED", "sim: no x-goog-api-key");
    }
    answer(&state, &target, query.as_deref(), &uri, &headers, &body).await
}

/// A `generateContent` request to model `target` (`{model}:{method}`), authenticated by
/// the caller (an API key, or Vertex's bearer token).
pub(crate) async fn answer(
    state: &SimState,
    target: &str,
    query: Option<&str>,
    uri: &Uri,
    headers: &HeaderMap,
    body: &[u8],
) -> Response {
    let state = state.clone();
    let Some((model, method)) = target.rsplit_once(':') else {
        return error(404, "NOT_FOUND", "sim: expected models/{model}:{method}");
    };
    let req: Value = match serde_json::from_slice(body) {
        Ok(v) => v,
        Err(e) => return error(400, "INVALID_ARGUMENT", &format!("sim: bad json: {e}")),
    };
    // As it came, percent-encoding and all.
    let path = uri.path_and_query().map_or(uri.path(), |p| p.as_str());
    record(&state, path, headers, &req);
    if method == "batchEmbedContents" {
        return embed(&req);
    }
    if method == "predict" {
        return predict(model, &req);
    }
    if method == "countTokens" {
        return count(&req, uri.path().starts_with("/v1/projects/"));
    }
    let stream = method == "streamGenerateContent";
    if stream && query != Some("alt=sse") {
        return error(
            400,
            "INVALID_ARGUMENT",
            "sim: streams are asked for with ?alt=sse",
        );
    }
    if !stream && method != "generateContent" {
        return error(404, "NOT_FOUND", &format!("sim: no method {method}"));
    }
    if headers.get("x-goog-api-key").and_then(|v| v.to_str().ok()) == Some(crate::probe::BAD_KEY) {
        // What Google answers a key it does not know (recorded).
        return match exchange("gemini/gemini_400_api_key_invalid.exchange.json", 0) {
            Ok((status, body)) => json_response(status, &body),
            Err(e) => error(500, "INTERNAL", &format!("sim: {e:#}")),
        };
    }
    if req["contents"].as_array().is_some_and(Vec::is_empty) {
        return error(
            400,
            "INVALID_ARGUMENT",
            "* GenerateContentRequest.contents: contents is not specified",
        );
    }
    let mut sc = Scenario::parse(model);
    if sc.name == "probe" {
        // The recorded exchange that fits what the conformance probe asks.
        let has_tools = req["tools"].as_array().is_some_and(|t| !t.is_empty());
        let max = req["generationConfig"]["maxOutputTokens"].as_u64();
        let json_mode = req["generationConfig"]["responseMimeType"] == "application/json";
        sc.name = if has_tools {
            "parallel"
        } else if json_mode {
            "probe-json"
        } else if max.is_some_and(|m| m <= 16) {
            "length"
        } else {
            "text"
        }
        .to_owned();
    }
    if sc.delay_ms > 0 {
        tokio::time::sleep(Duration::from_millis(sc.delay_ms)).await;
    }
    if let Some(st) = sc.status {
        let code = match st {
            429 => "RESOURCE_EXHAUSTED",
            503 => "UNAVAILABLE",
            404 => "NOT_FOUND",
            _ => "INTERNAL",
        };
        return error(st, code, &format!("simulated upstream status {st}"));
    }
    if sc.name == "thinking-sig" && missing_signature(&req) {
        return error(
            400,
            "INVALID_ARGUMENT",
            "Function call is missing a thought_signature in functionCall parts.",
        );
    }
    let second = usize::from(answers_calls(&req));
    let whole = match sc.name.as_str() {
        "text" => exchange("gemini/gemini_nonstream_text.exchange.json", 0),
        "parallel" => exchange(
            "gemini/gemini_nonstream_parallel_function_calls_roundtrip.exchange.json",
            second,
        ),
        "thinking" => exchange(
            "gemini/gemini_nonstream_thinking_thought_signature_roundtrip.exchange.json",
            0,
        ),
        "length" => exchange("gemini/gemini_nonstream_finish_max_tokens.exchange.json", 0),
        "safety" => exchange("gemini/gemini_nonstream_finish_safety.exchange.json", 0),
        "cache" => exchange(
            "gemini/gemini_nonstream_usage_cached_content_tokens.exchange.json",
            0,
        ),
        "blocked" => exchange(
            "vertex/vertex_gemini_prompt_blocked_promptfeedback.exchange.json",
            0,
        ),
        "err400-key" => exchange("gemini/gemini_400_api_key_invalid.exchange.json", 0),
        "err404" => exchange("gemini/gemini_404_model_not_found.exchange.json", 0),
        "err429" => exchange("gemini/gemini_429_resource_exhausted_retryinfo.json", 0),
        "fast" => Ok((200, serde_json::from_str(FAST).unwrap_or_default())),
        // JSON asked for (`responseMimeType`): a value of the schema, as Gemini answers.
        "probe-json" => {
            let config = &req["generationConfig"];
            let schema = config
                .get("responseJsonSchema")
                .or_else(|| config.get("responseSchema"))
                .cloned()
                .unwrap_or(json!({"type": "object"}));
            let mut fast: Value = serde_json::from_str(FAST).unwrap_or_default();
            fast["candidates"][0]["content"]["parts"][0]["text"] =
                json!(crate::anthropic::sample(&schema).to_string());
            Ok((200, fast))
        }
        _ => Ok((404, json!({}))),
    };
    let (status, body) = match whole {
        Ok(x) => x,
        Err(e) => return error(500, "INTERNAL", &format!("sim: {e:#}")),
    };
    if status != 200 && body.get("error").is_some() {
        return json_response(status, &body);
    }
    if !stream {
        return if status == 200 {
            json_response(200, &body)
        } else {
            error(
                404,
                "NOT_FOUND",
                &format!("sim has no scenario {:?}", sc.name),
            )
        };
    }
    let rel = match (sc.name.as_str(), second) {
        ("text", _) => "gemini/gemini_stream_text.sse",
        ("parallel", 0) => "gemini/gemini_stream_parallel_function_calls_roundtrip.turn1.sse",
        ("parallel", _) => "gemini/gemini_stream_parallel_function_calls_roundtrip.turn2.sse",
        ("thinking-sig", 0) => "gemini/gemini_stream_function_call_thought_signature.turn1.sse",
        ("thinking-sig", _) => "gemini/gemini_stream_function_call_thought_signature.turn2.sse",
        ("thoughts", _) => "gemini/gemini_stream_thinking_thought_summaries.sse",
        ("length", _) => "gemini/gemini_stream_finish_max_tokens.sse",
        _ => {
            return error(
                404,
                "NOT_FOUND",
                &format!("sim has no stream {:?}", sc.name),
            )
        }
    };
    let frames = match crate::anthropic::frames_of(rel) {
        Ok(f) => f,
        Err(e) => return error(500, "INTERNAL", &format!("sim: {e:#}")),
    };
    crate::pace::stream_response(frames, &crate::pace::StreamPlan::of(&sc), &state)
}

/// `batchEmbedContents`: the recorded vector for each request (cut to its
/// `outputDimensionality`), or the recorded 404 for the model `err404`.
/// Vertex's `:predict` for embedding models: the recorded vector (cut to
/// `outputDimensionality`) per instance, with a token count. Like Vertex, a
/// `gemini-embedding-*` model takes one instance per request.
fn predict(model: &str, req: &Value) -> Response {
    let instances = req["instances"].as_array().cloned().unwrap_or_default();
    if instances.is_empty() {
        return error(400, "INVALID_ARGUMENT", "sim: no instances");
    }
    if model.starts_with("gemini-embedding") && instances.len() > 1 {
        return error(
            400,
            "INVALID_ARGUMENT",
            "Unable to submit request because the model supports up to 1 instances per request.",
        );
    }
    let recorded = match exchange("vertex/vertex_predict_embeddings.exchange.json", 0) {
        Ok((_, body)) => body,
        Err(e) => return error(500, "INTERNAL", &format!("sim: {e:#}")),
    };
    let values = recorded["predictions"][0]["embeddings"]["values"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    let n = req["parameters"]["outputDimensionality"]
        .as_u64()
        .map_or(values.len(), |n| n as usize);
    let predictions: Vec<Value> = instances
        .iter()
        .map(|i| {
            let words = i["content"]
                .as_str()
                .map_or(0, |c| c.split_whitespace().count());
            json!({"embeddings": {"statistics": {"token_count": words + 2, "truncated": false},
                "values": values.iter().take(n).collect::<Vec<_>>()}})
        })
        .collect();
    json_response(
        200,
        &json!({"predictions": predictions, "metadata": {"billableCharacterCount": 12}}),
    )
}

fn embed(req: &Value) -> Response {
    let (status, recorded) = match exchange("gemini/gemini_batch_embed_contents.exchange.json", 0) {
        Ok(x) => x,
        Err(e) => return error(500, "INTERNAL", &format!("sim: {e:#}")),
    };
    let requests = req["requests"].as_array().cloned().unwrap_or_default();
    if status != 200 || requests.is_empty() {
        return error(400, "INVALID_ARGUMENT", "sim: no requests");
    }
    if requests
        .iter()
        .any(|r| r["model"].as_str().is_some_and(|m| m.ends_with("/err404")))
    {
        return match exchange("gemini/gemini_batch_embed_contents_404.exchange.json", 0) {
            Ok((st, body)) => json_response(st, &body),
            Err(e) => error(500, "INTERNAL", &format!("sim: {e:#}")),
        };
    }
    let values = recorded["embeddings"][0]["values"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    let embeddings: Vec<Value> = requests
        .iter()
        .map(|r| {
            let n = r["outputDimensionality"]
                .as_u64()
                .map_or(values.len(), |n| n as usize);
            json!({"values": values.iter().take(n).collect::<Vec<_>>()})
        })
        .collect();
    json_response(200, &json!({"embeddings": embeddings}))
}

/// `countTokens`: AI Studio's body wraps the request (`generateContentRequest`), Vertex's
/// does not. The count is the words of every text in it (system and tool declarations
/// included), so a test can tell what was counted.
fn count(req: &Value, vertex: bool) -> Response {
    let inner = match (vertex, req.get("generateContentRequest")) {
        (false, Some(g))
            if g["model"]
                .as_str()
                .is_some_and(|m| m.starts_with("models/")) =>
        {
            g
        }
        (true, None) if req.get("contents").is_some() => req,
        // AI Studio also takes the contents alone (as recorded from the SDK).
        (false, None)
            if req.get("contents").is_some() && req.as_object().is_some_and(|o| o.len() == 1) =>
        {
            req
        }
        _ => {
            return error(
                400,
                "INVALID_ARGUMENT",
                "sim: not a countTokens body for this API",
            )
        }
    };
    fn words(v: &Value) -> usize {
        match v {
            Value::Object(o) => o
                .iter()
                .map(|(k, x)| match (k.as_str(), x) {
                    ("text" | "description", Value::String(s)) => s.split_whitespace().count(),
                    _ => words(x),
                })
                .sum(),
            Value::Array(a) => a.iter().map(words).sum(),
            _ => 0,
        }
    }
    let n = words(&inner["contents"]) + words(&inner["systemInstruction"]) + words(&inner["tools"]);
    json_response(
        200,
        &json!({"totalTokens": n, "promptTokensDetails": [{"modality": "TEXT", "tokenCount": n}]}),
    )
}
