//! `POST /v1/embeddings`: passed through to OpenAI-shaped upstreams; the `echo` provider
//! answers with deterministic vectors.

use axum::body::Bytes;
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use jusinfer_wire::embeddings::{EmbeddingCreateParams as EmbeddingsRequest, Input};
use serde_json::{json, Value};

use crate::error::GatewayError;
use crate::pipeline::{read, Attempt, ClientDialect, Parsed};
use crate::proxy;
use crate::routing::Deployment;
use crate::upstream::execute::{execute, Outbound, Plan};
use crate::upstream::{echo, http, openai, Endpoint, Speaks};

pub(crate) struct Embeddings;

impl ClientDialect for Embeddings {
    const ENDPOINT: &'static str = "/v1/embeddings";
    type Request = EmbeddingsRequest;

    fn parse(raw: &Bytes, _: &HeaderMap) -> Result<Parsed<EmbeddingsRequest>, GatewayError> {
        let req: EmbeddingsRequest = read::parse_json(raw)?;
        Ok(Parsed {
            model: req.model.clone(),
            stream: false,
            extra_prompt_bytes: 0,
            max_output: Some(0),
            req,
        })
    }

    async fn attempt(
        a: &Attempt<'_, EmbeddingsRequest>,
        d: Deployment,
    ) -> Result<Response, GatewayError> {
        match d.speaks() {
            Speaks::Chat => {
                let price = crate::pipeline::admit::price_of(a.state, &d);
                let plan = Plan {
                    d: &d,
                    endpoint: Endpoint::Embeddings,
                    body: Outbound::Bytes(openai::edit_body(a.raw, &d.upstream_model, false)?),
                    stream: false,
                    forward: &[],
                    tap: None,
                    keep: None,
                    dropped: Vec::new(),
                };
                let p = &*d.provider;
                let no_stream = || jusinfer_translate::pipe::Relay::default();
                execute(plan, no_stream, |bytes| async move {
                    openai::whole(p, bytes, price)
                })
                .await
            }
            Speaks::Local => {
                let inputs: Vec<String> = match &a.p.req.input {
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
            Speaks::Messages | Speaks::Gemini => Err(proxy::unsupported(
                d.provider.kind(),
                d.provider.name(),
                "embeddings",
            )),
        }
    }

    fn render(e: GatewayError) -> Response {
        e.into_response()
    }
}
