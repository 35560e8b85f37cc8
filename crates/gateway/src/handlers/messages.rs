//! POST /v1/messages and /v1/messages/count_tokens: the Anthropic Messages API, as
//! Anthropic's SDKs and Claude Code send it (`x-api-key` or Bearer; `anthropic-version` and
//! `anthropic-beta` passed on to Anthropic upstreams), served by any provider. Errors on
//! these endpoints are in Anthropic's shape.

use std::sync::OnceLock;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue};
use axum::response::{IntoResponse, Response};
use axum::Extension;
use serde_json::{json, Map, Value};

use crate::auth::{authenticate_any, Caller};
use crate::config::ProviderKind;
use crate::error::GatewayError;
use crate::providers::{http, messages, Endpoint};
use crate::proxy;
use crate::routing::Deployment;
use crate::state::{AppState, RequestId};

/// What the client sent, checked.
struct Prepared {
    req: Map<String, Value>,
    raw: Bytes,
    model: String,
    stream: bool,
    deployments: Vec<Deployment>,
}

fn forwarded(headers: &HeaderMap) -> Vec<(&'static str, String)> {
    ["anthropic-version", "anthropic-beta"]
        .into_iter()
        .filter_map(|k| {
            headers
                .get(k)
                .and_then(|v| v.to_str().ok())
                .map(|v| (k, v.to_owned()))
        })
        .collect()
}

async fn prepare(state: &AppState, caller: &Caller, body: Body) -> Result<Prepared, GatewayError> {
    let raw = super::read_body(
        body,
        state.config.max_body_bytes,
        state.config.server.body_read_timeout,
    )
    .await?;
    let req: Map<String, Value> = super::parse_json(&raw)?;
    let model = req
        .get("model")
        .and_then(Value::as_str)
        .filter(|m| !m.trim().is_empty())
        .ok_or_else(|| {
            GatewayError::bad_request("model: Field required (a model name string).").param("model")
        })?
        .to_owned();
    if !req.get("max_tokens").is_some_and(Value::is_u64) {
        return Err(
            GatewayError::bad_request("max_tokens: Field required (a positive integer).")
                .param("max_tokens"),
        );
    }
    if req
        .get("messages")
        .and_then(Value::as_array)
        .is_none_or(Vec::is_empty)
    {
        return Err(
            GatewayError::bad_request("messages: at least one message is required.")
                .param("messages"),
        );
    }
    let stream = req.get("stream").and_then(Value::as_bool).unwrap_or(false);
    caller.check_model(&model)?;
    let deployments = state.router.resolve(&model)?;
    Ok(Prepared {
        req,
        raw,
        model,
        stream,
        deployments,
    })
}

/// Rewrites an OpenAI-shaped error response into Anthropic's shape (status and headers
/// kept).
async fn anthropic_errors(resp: Response) -> Response {
    if resp.status().as_u16() < 400 {
        return resp;
    }
    let (parts, body) = resp.into_parts();
    let bytes = axum::body::to_bytes(body, 1 << 20)
        .await
        .unwrap_or_default();
    let v: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
    let kind = v["error"]["type"].as_str().unwrap_or("api_error");
    let message = v["error"]["message"].as_str().unwrap_or("request failed");
    let kind = jusinfer_translate::messages::stream::error_type(kind, parts.status.as_u16());
    let out = json!({"type": "error", "error": {"type": kind, "message": message}});
    let mut parts = parts;
    if kind == "overloaded_error" {
        // Anthropic's status for it; its SDKs retry on it.
        parts.status = axum::http::StatusCode::from_u16(529).unwrap_or(parts.status);
    }
    Response::from_parts(parts, Body::from(out.to_string()))
}

/// A fresh `msg_…` id (never from the client's request id: ids made from it would repeat
/// across a client's requests).
fn message_id() -> String {
    use rand::distributions::{Alphanumeric, DistString};
    format!(
        "msg_{}",
        Alphanumeric.sample_string(&mut rand::thread_rng(), 24)
    )
}

pub async fn messages(
    State(state): State<AppState>,
    Extension(rid): Extension<RequestId>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let started = Instant::now();
    let caller = match authenticate_any(&state, &headers).await {
        Ok(c) => c,
        Err(e) => return e.into_anthropic_response(),
    };
    let mut row = super::usage_row(&rid, &caller, "/v1/messages");
    let slot = match super::key_slot(&state, &caller) {
        Ok(s) => s,
        Err(e) => {
            return super::record_rejected(
                &state,
                row,
                e,
                started,
                GatewayError::into_anthropic_response,
            );
        }
    };
    let p = match prepare(&state, &caller, body).await {
        Ok(p) => p,
        Err(e) => {
            return super::record_rejected(
                &state,
                row,
                e,
                started,
                GatewayError::into_anthropic_response,
            );
        }
    };
    row.model.clone_from(&p.model);
    row.stream = p.stream;
    if state.config.log_bodies {
        tracing::info!(request_id = %rid.0, body = %String::from_utf8_lossy(&p.raw[..p.raw.len().min(64 * 1024)]), "request body");
    }
    let adm = match super::admit_and_tap(
        &state,
        &caller,
        slot,
        row,
        started,
        super::Demand {
            prompt_bytes: p.raw.len(),
            max_output: p.req.get("max_tokens").and_then(Value::as_u64),
        },
        &p.deployments,
    )
    .await
    {
        Ok(a) => a,
        Err(refused) => return anthropic_errors(refused).await,
    };
    let forward = forwarded(&headers);
    let id = message_id();
    let estimate = crate::limits::estimate_prompt_tokens(p.raw.len());
    let created = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let ctx = Ctx {
        state: &state,
        p: &p,
        forward: &forward,
        id: &id,
        tap: &adm.tap,
        estimate,
        request_id: &rid.0,
        created,
    };
    let outcome = proxy::run(&p.deployments, |d| attempt(d, &ctx)).await;
    anthropic_errors(super::finish(outcome, adm)).await
}

/// What every attempt of one request shares.
struct Ctx<'a> {
    state: &'a AppState,
    p: &'a Prepared,
    forward: &'a [(&'static str, String)],
    id: &'a str,
    tap: &'a crate::ledger::Tap,
    estimate: u64,
    request_id: &'a str,
    created: u64,
}

async fn attempt(d: Deployment, ctx: &Ctx<'_>) -> Result<Response, GatewayError> {
    let call = messages::Call {
        provider: &d.provider,
        timeouts: d.timeouts,
        health: Some(&d.health),
        raw: &ctx.p.raw,
        req: &ctx.p.req,
        stream: ctx.p.stream,
        upstream_model: &d.upstream_model,
        client_model: &ctx.p.model,
        forward: ctx.forward,
        id: ctx.id,
        price: super::price_of(ctx.state, &d),
        tap: ctx.tap,
        input_estimate: ctx.estimate,
    };
    match d.provider.kind() {
        ProviderKind::Anthropic => messages::anthropic(call).await,
        ProviderKind::Openai | ProviderKind::OpenaiCompatible => messages::openai(call).await,
        ProviderKind::Echo => messages::echo(&call, ctx.request_id, ctx.created),
    }
}

/// Largest prompt text tokenized for `count_tokens`.
const MAX_TOKENIZED_BYTES: usize = 1 << 20;

fn tokenizer() -> Option<&'static tiktoken_rs::CoreBPE> {
    static BPE: OnceLock<Option<tiktoken_rs::CoreBPE>> = OnceLock::new();
    BPE.get_or_init(|| tiktoken_rs::o200k_base().ok()).as_ref()
}

/// Every text a Messages request sends to the model: system, message text and tool
/// calls/results, tool definitions.
fn prompt_text(req: &Map<String, Value>) -> String {
    fn walk(v: &Value, out: &mut String) {
        match v {
            Value::String(s) => {
                out.push_str(s);
                out.push('\n');
            }
            Value::Array(a) => a.iter().for_each(|x| walk(x, out)),
            Value::Object(o) => {
                for (k, x) in o {
                    match k.as_str() {
                        "text" | "thinking" | "content" | "system" => walk(x, out),
                        "input" | "input_schema" => {
                            out.push_str(&x.to_string());
                            out.push('\n');
                        }
                        "name" | "description" => walk(x, out),
                        _ => {}
                    }
                }
            }
            _ => {}
        }
    }
    let mut out = String::new();
    for k in ["system", "messages", "tools"] {
        if let Some(v) = req.get(k) {
            walk(v, &mut out);
        }
    }
    out
}

pub async fn count_tokens(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let mut key = None;
    let result = async {
        let caller = authenticate_any(&state, &headers).await?;
        key = super::key_id(&caller);
        let raw = super::read_body(
            body,
            state.config.max_body_bytes,
            state.config.server.body_read_timeout,
        )
        .await?;
        let mut req: Map<String, Value> = super::parse_json(&raw)?;
        let model = req
            .get("model")
            .and_then(Value::as_str)
            .filter(|m| !m.trim().is_empty())
            .ok_or_else(|| GatewayError::bad_request("model: Field required.").param("model"))?
            .to_owned();
        caller.check_model(&model)?;
        let deployments = state.router.resolve(&model)?;
        if let Some(d) = deployments
            .iter()
            .find(|d| d.provider.kind() == ProviderKind::Anthropic)
        {
            req.insert("model".into(), json!(d.upstream_model));
            let body = Bytes::from(Value::Object(req).to_string());
            let clock = http::Clock::start(d.timeouts);
            let forward = forwarded(&headers);
            let has_version = forward.iter().any(|(k, _)| *k == "anthropic-version");
            let answer = http::exchange(
                &d.provider,
                http::Exchange {
                    endpoint: Endpoint::CountTokens,
                    body,
                    stream: false,
                    auth: http::Auth::XApiKey,
                    headers: if has_version {
                        &[]
                    } else {
                        &[(
                            "anthropic-version",
                            crate::providers::anthropic::ANTHROPIC_VERSION,
                        )]
                    },
                    forward: &forward,
                    map_status: crate::providers::anthropic::map_status,
                },
                &clock,
            )
            .await?;
            let bytes = http::read_body(&d.provider, answer.resp, clock.deadline).await?;
            let mut resp = http::json_response(bytes);
            resp.headers_mut().insert(
                "x-jusinfer-token-count",
                HeaderValue::from_static("upstream"),
            );
            return Ok(resp);
        }
        let text = prompt_text(&req);
        // Tokenizing is CPU work: off the async workers, and only up to a size where it is
        // worth it (past it, bytes / 4 is as good an estimate).
        let (n, how) = if text.len() <= MAX_TOKENIZED_BYTES {
            tokio::task::spawn_blocking(move || match tokenizer() {
                Some(bpe) => (
                    bpe.encode_ordinary(&text).len(),
                    "estimated; tokenizer=o200k_base",
                ),
                None => (text.len().div_ceil(4), "estimated; bytes/4"),
            })
            .await
            .map_err(|e| GatewayError::internal(e.to_string()))?
        } else {
            (text.len().div_ceil(4), "estimated; bytes/4")
        };
        let mut resp = axum::Json(json!({"input_tokens": n})).into_response();
        resp.headers_mut()
            .insert("x-jusinfer-token-count", HeaderValue::from_static(how));
        Ok::<_, GatewayError>(resp)
    }
    .await;
    let resp = match result {
        Ok(r) => r,
        Err(e) => e.into_anthropic_response(),
    };
    super::logged(resp, key, String::new())
}
