//! The Amazon Bedrock side of the simulator: `POST /model/{modelId}/converse` and
//! `/converse-stream`, replaying the recorded Bedrock traffic (`fixtures/bedrock/`): JSON
//! answers verbatim, streams as the recorded binary event streams, errors with their
//! `x-amzn-ErrorType`. Like Bedrock it wants credentials (a bearer Bedrock API key, or a
//! SigV4 `authorization` the tests re-sign with botocore) and records each request with
//! its path exactly as sent and its body's bytes (`x-sim-raw-body`, base64).
//!
//! Models (the id's last dotted part): `nova-text` (any other id too), `nova-tools` (the parallel tool round trip: the
//! second turn once the request carries tool results), `nova-length`, `nova-filter`,
//! `claude-reasoning` (reasoning with tool use, two turns), `claude-redacted`,
//! `claude-cache`, `claude-text-tool`; `invalid` (400), `expired` (403), `throttle` (429).

use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, Uri};
use axum::response::Response;
use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use bytes::Bytes;
use serde_json::Value;

use crate::fixtures;
use crate::server::{record, SimState};

fn error(status: u16, kind: &str, message: &str) -> Response {
    Response::builder()
        .status(status)
        .header("content-type", "application/json")
        .header(
            "x-amzn-ErrorType",
            format!("{kind}:http://internal.amazon.com/coral/com.amazon.bedrock/"),
        )
        .header("x-amzn-RequestId", "sim-request-id")
        .body(Body::from(
            serde_json::json!({ "message": message }).to_string(),
        ))
        .unwrap_or_default()
}

/// A recorded exchange's answer: status, content type, Amazon's headers, body.
fn recorded(file: &str, turn: usize) -> Response {
    let fx = match fixtures::json(&format!("bedrock/{file}")) {
        Ok(v) => v,
        Err(e) => return error(500, "InternalServerException", &format!("sim: {e:#}")),
    };
    let ex = if fx.is_array() { &fx[turn] } else { &fx };
    let r = &ex["response"];
    let body = match &r["body"] {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    };
    let mut b = Response::builder()
        .status(r["status"].as_u64().unwrap_or(500) as u16)
        .header("content-type", "application/json")
        .header("x-amzn-RequestId", "sim-request-id");
    for (k, v) in r["headers"].as_object().into_iter().flatten() {
        if k.eq_ignore_ascii_case("x-amzn-errortype") {
            if let Some(v) = v.as_str() {
                b = b.header("x-amzn-ErrorType", v);
            }
        }
    }
    b.body(Body::from(body)).unwrap_or_default()
}

fn stream(stem: &str) -> Response {
    match fixtures::read(&format!("bedrock/{stem}.eventstream")) {
        Ok(bytes) => Response::builder()
            .status(200)
            .header("content-type", "application/vnd.amazon.eventstream")
            .header("x-amzn-RequestId", "sim-request-id")
            .body(Body::from(bytes))
            .unwrap_or_default(),
        Err(e) => error(500, "InternalServerException", &format!("sim: {e:#}")),
    }
}

/// `POST /model/{modelId}/{op}`.
pub async fn model(
    State(state): State<SimState>,
    Path((model, op)): Path<(String, String)>,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let req: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    // The exact bytes too (base64, as a pseudo-header): a SigV4 signature covers them.
    let mut seen = headers.clone();
    if let Ok(v) = HeaderValue::from_str(&STANDARD.encode(&body)) {
        seen.insert("x-sim-raw-body", v);
    }
    record(&state, uri.path(), &seen, &req);
    let auth = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    // SigV4 (the tests re-sign the recorded request with botocore to check it).
    let sigv4 = auth.starts_with("AWS4-HMAC-SHA256 Credential=")
        && headers.contains_key("x-amz-date")
        && auth.contains(", SignedHeaders=")
        && auth.contains(", Signature=");
    let bearer = if sigv4 {
        Some("sigv4")
    } else {
        auth.strip_prefix("Bearer ")
    };
    match bearer {
        None => {
            return error(
                403,
                "AccessDeniedException",
                "Authorization header requires 'Credential' parameter.",
            )
        }
        Some(k) if k.is_empty() || k == crate::probe::BAD_KEY => {
            return error(
                403,
                "UnrecognizedClientException",
                "The security token included in the request is invalid.",
            )
        }
        Some(_) => {}
    }
    if req.get("messages").and_then(Value::as_array).is_none() {
        return error(400, "ValidationException", "messages: required");
    }
    let stream_op = match op.as_str() {
        "converse" => false,
        "converse-stream" => true,
        _ => return error(404, "UnknownOperationException", "unknown operation"),
    };
    // The second turn of a tool round trip: the last user message carries results.
    let answered = req["messages"]
        .as_array()
        .and_then(|m| m.last())
        .and_then(|m| m["content"].as_array())
        .is_some_and(|c| c.iter().any(|b| b.get("toolResult").is_some()));
    let turn = usize::from(answered);
    // The scenario is the id's last dotted part: `us.anthropic.claude-reasoning` is
    // `claude-reasoning` (a Claude id, as the gateway's thinking translation wants).
    let scenario = model.rsplit('.').next().unwrap_or(&model);
    match (scenario, stream_op) {
        ("invalid", _) => recorded("bedrock_400_validation_invalid_model.exchange.json", 0),
        ("expired", _) => recorded("bedrock_403_expired_token.exchange.json", 0),
        ("throttle", _) => recorded("bedrock_429_throttling.exchange.json", 0),
        ("nova-tools", false) => recorded(
            "bedrock_converse_nonstream_parallel_tool_use_roundtrip.exchange.json",
            turn,
        ),
        ("nova-tools", true) if answered => {
            stream("bedrock_converse_stream_parallel_tool_use.turn2")
        }
        ("nova-tools", true) => stream("bedrock_converse_stream_parallel_tool_use.turn1"),
        ("nova-length", _) => recorded(
            "bedrock_converse_nonstream_finish_max_tokens.exchange.json",
            0,
        ),
        ("nova-filter", false) => recorded(
            "bedrock_converse_nonstream_content_filtered.exchange.json",
            0,
        ),
        ("nova-filter", true) => stream("bedrock_converse_stream_content_filtered"),
        ("claude-reasoning", false) => recorded(
            "bedrock_converse_nonstream_reasoning_tool_use_roundtrip.exchange.json",
            turn,
        ),
        ("claude-reasoning", true) => stream("bedrock_converse_stream_reasoning"),
        ("claude-redacted", _) => stream("bedrock_converse_stream_redacted_reasoning"),
        ("claude-cache", false) => {
            recorded("bedrock_converse_nonstream_cache_usage.exchange.json", 1)
        }
        ("claude-cache", true) => stream("bedrock_converse_stream_cache_read"),
        ("claude-text-tool", _) => stream("bedrock_converse_stream_text_then_tool_use"),
        (_, false) => recorded("bedrock_converse_nonstream_text.exchange.json", 0),
        (_, true) => stream("bedrock_converse_stream_text"),
    }
}
