//! POST /v1/chat/completions.

use std::time::{Instant, SystemTime, UNIX_EPOCH};

use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use axum::Extension;
use jusinfer_wire::chat::{ChatRequest, Role};

use crate::auth::{authenticate, Caller};
use crate::config::ProviderKind;
use crate::error::GatewayError;
use crate::ledger::Tap;
use crate::providers::{anthropic, echo, openai, Endpoint};
use crate::proxy;
use crate::routing::Deployment;
use crate::state::{AppState, RequestId};
use crate::usage::UsageRecord;

pub async fn chat_completions(
    State(state): State<AppState>,
    Extension(rid): Extension<RequestId>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let started = Instant::now();
    let caller = match authenticate(&state, &headers).await {
        Ok(c) => c,
        // Nobody to charge: an unauthenticated request gets no usage row.
        Err(e) => return e.into_response(),
    };
    let mut row = super::usage_row(&rid, &caller, "/v1/chat/completions");
    let slot = match super::key_slot(&state, &caller) {
        Ok(s) => s,
        Err(e) => {
            return super::record_rejected(&state, row, e, started, GatewayError::into_response);
        }
    };
    let (req, raw, deployments) = match prepare(&state, &caller, body, &mut row).await {
        Ok(p) => p,
        Err(e) => {
            return super::record_rejected(&state, row, e, started, GatewayError::into_response);
        }
    };
    if state.config.log_bodies {
        tracing::info!(request_id = %rid.0, body = %String::from_utf8_lossy(&raw[..raw.len().min(LOGGED_BODY_BYTES)]), "request body");
    }
    let demand = super::Demand {
        prompt_bytes: raw.len(),
        max_output: req
            .max_output_tokens()
            .map(|m| u64::from(m).saturating_mul(u64::from(req.n.unwrap_or(1).max(1)))),
    };
    let adm = match super::admit_and_tap(&state, &caller, slot, row, started, demand, &deployments)
        .await
    {
        Ok(t) => t,
        Err(refused) => return refused,
    };
    let ctx = Ctx {
        req: &req,
        raw: &raw,
        request_id: &rid.0,
        state: &state,
        tap: &adm.tap,
    };
    let outcome = proxy::run(&deployments, |d| attempt(d, &ctx)).await;
    super::finish(outcome, adm)
}

/// The most of a request body logged when `log_bodies` is on.
const LOGGED_BODY_BYTES: usize = 64 * 1024;

/// Read, validate, check the model is allowed, route.
async fn prepare(
    state: &AppState,
    caller: &Caller,
    body: Body,
    row: &mut UsageRecord,
) -> Result<(ChatRequest, Bytes, Vec<Deployment>), GatewayError> {
    let raw = super::read_body(
        body,
        state.config.max_body_bytes,
        state.config.server.body_read_timeout,
    )
    .await?;
    let req: ChatRequest = super::parse_json(&raw)?;
    row.model.clone_from(&req.model);
    row.stream = req.is_stream();
    validate(&req)?;
    caller.check_model(&req.model)?;
    let deployments = state.router.resolve(&req.model)?;
    Ok((req, raw, deployments))
}

/// Checks the request makes sense beyond its types.
pub fn validate(req: &ChatRequest) -> Result<(), GatewayError> {
    if req.model.trim().is_empty() {
        return Err(GatewayError::bad_request("'model' must name a model.")
            .param("model")
            .code("invalid_value"));
    }
    if req.messages.is_empty() {
        return Err(
            GatewayError::bad_request("'messages' must contain at least one message.")
                .param("messages")
                .code("empty_array"),
        );
    }
    for (i, m) in req.messages.iter().enumerate() {
        match m.role {
            Role::Tool if m.tool_call_id.as_deref().is_none_or(str::is_empty) => {
                return Err(GatewayError::bad_request(format!(
                    "messages[{i}] has role 'tool' but no 'tool_call_id'."
                ))
                .param(format!("messages[{i}].tool_call_id"))
                .code("missing_required_parameter"))
            }
            Role::System | Role::Developer | Role::User | Role::Tool if m.content.is_none() => {
                return Err(
                    GatewayError::bad_request(format!("messages[{i}] needs 'content'."))
                        .param(format!("messages[{i}].content"))
                        .code("missing_required_parameter"),
                )
            }
            Role::Assistant
                if m.content.is_none() && m.tool_calls.is_none() && m.function_call.is_none() =>
            {
                return Err(GatewayError::bad_request(format!(
                    "messages[{i}] (assistant) needs 'content' or 'tool_calls'."
                ))
                .param(format!("messages[{i}].content"))
                .code("missing_required_parameter"))
            }
            _ => {}
        }
    }
    if let Some(n) = req.n {
        if n == 0 || n > 128 {
            return Err(GatewayError::bad_request("'n' must be between 1 and 128.")
                .param("n")
                .code("invalid_value"));
        }
    }
    Ok(())
}

/// What every attempt of one request shares.
struct Ctx<'a> {
    req: &'a ChatRequest,
    raw: &'a Bytes,
    request_id: &'a str,
    state: &'a AppState,
    tap: &'a Tap,
}

fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

async fn attempt(d: Deployment, ctx: &Ctx<'_>) -> Result<Response, GatewayError> {
    let req = ctx.req;
    match d.provider.kind() {
        ProviderKind::Echo => Ok(echo_response(req, ctx.request_id)),
        ProviderKind::Openai | ProviderKind::OpenaiCompatible => {
            let stream = req.is_stream();
            let body = openai::edit_body(ctx.raw, &d.upstream_model, stream)?;
            openai::send(openai::Call {
                provider: &d.provider,
                timeouts: d.timeouts,
                health: Some(&d.health),
                endpoint: Endpoint::ChatCompletions,
                body,
                stream,
                include_usage: req.wants_stream_usage(),
                request_id: ctx.request_id,
                tap: Some(ctx.tap),
                price: super::price_of(ctx.state, &d),
            })
            .await
        }
        ProviderKind::Anthropic => {
            anthropic::chat(anthropic::Call {
                provider: &d.provider,
                timeouts: d.timeouts,
                health: Some(&d.health),
                req,
                raw: ctx.raw,
                upstream_model: &d.upstream_model,
                price: super::price_of(ctx.state, &d),
                created: now_secs(),
                tap: ctx.tap,
                auto_cache: d.auto_cache,
            })
            .await
        }
    }
}

fn echo_response(req: &ChatRequest, request_id: &str) -> Response {
    echo::chat_response(
        echo::Echo::new(req, request_id, now_secs()),
        req.is_stream(),
    )
}
