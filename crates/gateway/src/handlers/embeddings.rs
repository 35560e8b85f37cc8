//! POST /v1/embeddings: passed through to `openai` and `openai-compatible` providers; the
//! `echo` provider answers with deterministic vectors.

use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use axum::Extension;
use serde::Deserialize;
use serde_json::{json, Value};

use crate::auth::authenticate;
use crate::config::ProviderKind;
use crate::error::GatewayError;
use crate::providers::{echo, http, openai, Endpoint};
use crate::proxy;
use crate::routing::Deployment;
use crate::state::{AppState, RequestId};

#[derive(Debug, Deserialize)]
pub struct EmbeddingsRequest {
    pub model: String,
    pub input: Input,
}

#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub enum Input {
    One(String),
    Many(Vec<String>),
    Tokens(Vec<u32>),
    ManyTokens(Vec<Vec<u32>>),
}

pub async fn embeddings(
    State(state): State<AppState>,
    Extension(rid): Extension<RequestId>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let started = std::time::Instant::now();
    let caller = match authenticate(&state, &headers).await {
        Ok(c) => c,
        Err(e) => return e.into_response(),
    };
    let mut row = super::usage_row(&rid, &caller, "/v1/embeddings");
    let mut slot = None;
    let prepared = async {
        slot = super::key_slot(&state, &caller)?;
        let raw = super::read_body(
            body,
            state.config.max_body_bytes,
            state.config.server.body_read_timeout,
        )
        .await?;
        let req: EmbeddingsRequest = super::parse_json(&raw)?;
        row.model.clone_from(&req.model);
        caller.check_model(&req.model)?;
        let deployments = state.router.resolve(&req.model)?;
        Ok::<_, GatewayError>((req, raw, deployments))
    };
    match prepared.await {
        Ok((req, raw, deployments)) => {
            let admitted = super::admit_and_tap(
                &state,
                &caller,
                slot,
                row,
                started,
                super::Demand {
                    prompt_bytes: raw.len(),
                    max_output: Some(0),
                },
                &deployments,
            );
            let adm = match admitted.await {
                Ok(t) => t,
                Err(refused) => return refused,
            };
            let outcome =
                proxy::run(&deployments, |d| attempt(d, &req, &raw, &rid.0, &state)).await;
            super::finish(outcome, adm)
        }
        Err(e) => super::record_rejected(&state, row, e, started, GatewayError::into_response),
    }
}

async fn attempt(
    d: Deployment,
    req: &EmbeddingsRequest,
    raw: &Bytes,
    request_id: &str,
    state: &AppState,
) -> Result<Response, GatewayError> {
    match d.provider.kind() {
        ProviderKind::Openai | ProviderKind::OpenaiCompatible => {
            let body = openai::edit_body(raw, &d.upstream_model, false)?;
            openai::send(openai::Call {
                provider: &d.provider,
                timeouts: d.timeouts,
                health: Some(&d.health),
                endpoint: Endpoint::Embeddings,
                body,
                stream: false,
                include_usage: false,
                request_id,
                tap: None,
                price: super::price_of(state, &d),
            })
            .await
        }
        ProviderKind::Echo => {
            let inputs: Vec<String> = match &req.input {
                Input::One(s) => vec![s.clone()],
                Input::Many(v) => v.clone(),
                Input::Tokens(t) => vec![format!("{t:?}")],
                Input::ManyTokens(t) => t.iter().map(|x| format!("{x:?}")).collect(),
            };
            let (vecs, tokens) = echo::embeddings(&inputs);
            let data: Vec<Value> = vecs
                .into_iter()
                .enumerate()
                .map(|(i, v)| json!({"object": "embedding", "index": i, "embedding": v}))
                .collect();
            let body = json!({"object": "list", "data": data, "model": "echo",
                "usage": {"prompt_tokens": tokens, "total_tokens": tokens}});
            let mut resp = http::json_response(Bytes::from(body.to_string()));
            resp.extensions_mut()
                .insert(crate::usage::UsageExt(jusinfer_wire::chat::Usage {
                    prompt_tokens: tokens,
                    total_tokens: tokens,
                    ..Default::default()
                }));
            Ok(resp)
        }
        ProviderKind::Anthropic => Err(proxy::unsupported(
            d.provider.kind(),
            d.provider.name(),
            "embeddings",
        )),
    }
}
