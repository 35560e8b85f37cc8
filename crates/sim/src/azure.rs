//! The Azure OpenAI side of the simulator: the deployments route
//! (`POST /openai/deployments/{deployment}/{chat/completions|embeddings}?api-version=…`)
//! and the v1 route (`POST /openai/v1/...`, Responses included: no version, the deployment
//! in the body's `model`).
//!
//! Like Azure, it wants an `api-key` header (or a bearer on v1) and a dated `api-version` on
//! the deployments route (else Azure's 404). Deployments named `azure-<case>` replay the
//! recorded Azure traffic verbatim (`azure-text`, `azure-tools`, `azure-length`,
//! `azure-nodelta`, `azure-latency`, `azure-usage`, `azure-reasoning`, `azure-filter`,
//! `azure-unknown`); any other name is an ordinary simulator scenario, its streams opened
//! with Azure's choice-less `prompt_filter_results` chunk.

use axum::body::Body;
use axum::extract::{Path, Query, RawQuery, State};
use axum::http::{HeaderMap, Uri};
use axum::response::Response;
use bytes::Bytes;
use futures_util::StreamExt;
use serde_json::{json, Value};

use crate::fixtures;
use crate::server::{json_response, record, SimState};

/// The first chunk of every Azure stream, as recorded.
const PROMPT_FILTER_CHUNK: &str = r#"data: {"choices":[],"created":0,"id":"","model":"","object":"","prompt_filter_results":[{"prompt_index":0,"content_filter_results":{"hate":{"filtered":false,"severity":"safe"},"jailbreak":{"filtered":false,"detected":false},"self_harm":{"filtered":false,"severity":"safe"},"sexual":{"filtered":false,"severity":"safe"},"violence":{"filtered":false,"severity":"safe"}}}]}

"#;

fn azure_error(status: u16, code: &str, message: &str) -> Response {
    json_response(
        status,
        Bytes::from(json!({"error": {"code": code, "message": message}}).to_string()),
    )
}

/// An `api-key`, an Entra token the simulator issued (`/_azure/msi`), or on v1 any other
/// bearer (the OpenAI SDK sends the key so); else Azure's 401.
fn authorized(state: &SimState, headers: &HeaderMap, v1: bool) -> bool {
    let key = headers.get("api-key").and_then(|v| v.to_str().ok());
    let bearer = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    if let Some(token) = bearer.filter(|b| b.starts_with(ENTRA_TOKEN_PREFIX)) {
        return key.is_none() && state.tokens.lock().is_ok_and(|t| t.contains(token));
    }
    let presented = key.or(if v1 { bearer } else { None });
    presented.is_some_and(|k| !k.is_empty() && k != crate::probe::BAD_KEY)
}

const ENTRA_TOKEN_PREFIX: &str = "sim-entra-";
/// The `IDENTITY_HEADER` secret of the simulated App Service managed identity.
pub const IDENTITY_HEADER: &str = "sim-identity-header-secret";

/// `GET /_azure/msi?api-version=2019-08-01&resource=…`: an App Service managed identity
/// endpoint (`IDENTITY_ENDPOINT`), as Azure documents it: the `x-identity-header` secret,
/// the resource without `/.default`, an answer with `expires_on` in Unix seconds as a string.
pub async fn msi_token(
    State(state): State<SimState>,
    Query(q): Query<std::collections::HashMap<String, String>>,
    uri: Uri,
    headers: HeaderMap,
) -> Response {
    state
        .token_requests
        .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    record(&state, &path_of(&uri), &headers, &Value::Null);
    if headers
        .get("x-identity-header")
        .and_then(|v| v.to_str().ok())
        != Some(IDENTITY_HEADER)
    {
        return json_response(
            401,
            Bytes::from(json!({"statusCode": 401, "message": "Unauthorized request"}).to_string()),
        );
    }
    let param = |name: &str| q.get(name).cloned();
    let resource = param("resource").unwrap_or_default();
    if param("api-version").as_deref() != Some("2019-08-01")
        || resource != "https://cognitiveservices.azure.com"
    {
        return json_response(
            400,
            Bytes::from(
                json!({"statusCode": 400, "message": "bad api-version or resource"}).to_string(),
            ),
        );
    }
    let n = state
        .token_requests
        .load(std::sync::atomic::Ordering::Relaxed);
    let token = format!("{ENTRA_TOKEN_PREFIX}{n}");
    if let Ok(mut t) = state.tokens.lock() {
        t.insert(token.clone());
    }
    let expires = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
        + 3600;
    json_response(
        200,
        Bytes::from(
            json!({"access_token": token, "expires_on": expires.to_string(), "resource": resource,
                   "token_type": "Bearer", "client_id": param("client_id").unwrap_or_default()})
            .to_string(),
        ),
    )
}

fn unauthorized() -> Response {
    azure_error(
        401,
        "401",
        "Access denied due to invalid subscription key or wrong API endpoint. Make sure to provide a valid key for an active subscription and use a correct regional API endpoint for your resource.",
    )
}

/// A dated version such as `2024-10-21` or `2025-03-01-preview`.
fn dated(version: &str) -> bool {
    let b = version.as_bytes();
    b.len() >= 10
        && b[..10].iter().enumerate().all(|(i, c)| {
            if i == 4 || i == 7 {
                *c == b'-'
            } else {
                c.is_ascii_digit()
            }
        })
        && (b.len() == 10 || &version[10..] == "-preview")
}

fn api_version(query: Option<&str>) -> Option<String> {
    query?
        .split('&')
        .find_map(|kv| kv.strip_prefix("api-version="))
        .map(str::to_owned)
}

fn path_of(uri: &Uri) -> String {
    uri.path_and_query()
        .map_or(uri.path(), |p| p.as_str())
        .to_owned()
}

/// `POST /openai/deployments/{deployment}/{op}`.
pub async fn deployments(
    State(state): State<SimState>,
    Path((deployment, op)): Path<(String, String)>,
    RawQuery(query): RawQuery,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let req: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    record(&state, &path_of(&uri), &headers, &req);
    if !authorized(&state, &headers, false) {
        return unauthorized();
    }
    if !api_version(query.as_deref()).is_some_and(|v| dated(&v)) {
        return azure_error(404, "404", "Resource not found");
    }
    answer(state, &op, &deployment, req, headers).await
}

/// `POST /openai/v1/{op}`.
pub async fn v1(
    State(state): State<SimState>,
    Path(op): Path<String>,
    RawQuery(query): RawQuery,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let req: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    record(&state, &path_of(&uri), &headers, &req);
    if !authorized(&state, &headers, true) {
        return unauthorized();
    }
    // The v1 route takes no dated version (`preview` at most).
    if api_version(query.as_deref()).is_some_and(|v| v != "preview") {
        return azure_error(400, "BadRequest", "API version not supported");
    }
    let deployment = req["model"].as_str().unwrap_or_default().to_owned();
    answer(state, &op, &deployment, req, headers).await
}

async fn answer(
    state: SimState,
    op: &str,
    deployment: &str,
    mut req: Value,
    headers: HeaderMap,
) -> Response {
    let stream = req["stream"].as_bool().unwrap_or(false);
    if let Some(case) = deployment.strip_prefix("azure-") {
        return replay(case, op, stream, &req);
    }
    // An ordinary scenario, without recording it twice.
    let quiet = SimState {
        quiet: true,
        ..state
    };
    req["model"] = json!(deployment);
    let body = Bytes::from(req.to_string());
    let axum_state = State(quiet);
    match op {
        "chat/completions" => {
            let resp = crate::server::chat(axum_state, headers, body).await;
            if stream && resp.status().is_success() {
                return with_prompt_filter_chunk(resp);
            }
            resp
        }
        "embeddings" => crate::server::embeddings(axum_state, headers, body).await,
        "responses" => crate::server::responses(axum_state, headers, body).await,
        _ => azure_error(404, "404", "Resource not found"),
    }
}

/// Azure's streams open with a chunk that has no choices.
fn with_prompt_filter_chunk(resp: Response) -> Response {
    let (parts, body) = resp.into_parts();
    let first = futures_util::stream::once(async {
        Ok::<Bytes, axum::Error>(Bytes::from_static(PROMPT_FILTER_CHUNK.as_bytes()))
    });
    let rest = body.into_data_stream();
    Response::from_parts(parts, Body::from_stream(first.chain(rest)))
}

fn sse(file: &str) -> Response {
    match fixtures::read(&format!("azure/{file}")) {
        Ok(b) => Response::builder()
            .status(200)
            .header("content-type", "text/event-stream; charset=utf-8")
            .body(Body::from(b))
            .unwrap_or_else(|_| json_response(500, Bytes::new())),
        Err(e) => azure_error(500, "sim", &format!("{e:#}")),
    }
}

/// The recorded answer of `exchange` (or its `turn`th exchange).
fn recorded(file: &str, turn: usize) -> Response {
    let fx = match fixtures::json(&format!("azure/{file}")) {
        Ok(v) => v,
        Err(e) => return azure_error(500, "sim", &format!("{e:#}")),
    };
    let ex = if fx.is_array() { &fx[turn] } else { &fx };
    let status = ex["response"]["status"].as_u64().unwrap_or(500) as u16;
    let body = match &ex["response"]["body"] {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    };
    json_response(status, Bytes::from(body))
}

fn replay(case: &str, op: &str, stream: bool, req: &Value) -> Response {
    let after_tool = req["messages"]
        .as_array()
        .and_then(|m| m.last())
        .is_some_and(|m| m["role"] == "tool");
    match (case, op, stream) {
        ("text", "chat/completions", false) => {
            recorded("azure_chat_nonstream_text.exchange.json", 0)
        }
        ("text", "chat/completions", true) => sse("azure_chat_stream_text.sse"),
        ("tools", "chat/completions", _) if after_tool => recorded(
            "azure_chat_nonstream_parallel_tool_calls_roundtrip.exchange.json",
            1,
        ),
        ("tools", "chat/completions", false) => recorded(
            "azure_chat_nonstream_parallel_tool_calls_roundtrip.exchange.json",
            0,
        ),
        ("tools", "chat/completions", true) => sse("azure_chat_stream_parallel_tool_calls.sse"),
        ("length", "chat/completions", false) => {
            recorded("azure_chat_nonstream_finish_length.exchange.json", 0)
        }
        ("length", "chat/completions", true) => sse("azure_chat_stream_finish_length.sse"),
        ("nodelta", "chat/completions", true) => sse("azure_chat_stream_chunk_without_delta.sse"),
        ("latency", "chat/completions", true) => {
            sse("azure_chat_stream_usage_latency_checkpoint.sse")
        }
        ("usage", "chat/completions", true) => sse("azure_v1_chat_stream_include_usage.sse"),
        ("reasoning", "chat/completions", false) => {
            recorded("azure_chat_nonstream_reasoning_model.exchange.json", 0)
        }
        ("filter", "chat/completions", false) => {
            recorded("azure_400_content_filter_prompt.exchange.json", 0)
        }
        ("filter", "chat/completions", true) => {
            recorded("azure_stream_400_content_filter_prompt.exchange.json", 0)
        }
        ("filter", "responses", _) => {
            recorded("azure_responses_400_content_filter.exchange.json", 0)
        }
        ("unknown", _, _) => recorded("azure_v1_400_unknown_model.exchange.json", 0),
        _ => azure_error(
            404,
            "DeploymentNotFound",
            "The API deployment for this resource does not exist.",
        ),
    }
}
