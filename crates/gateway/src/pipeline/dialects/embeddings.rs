//! `POST /v1/embeddings`: passed through to OpenAI-shaped upstreams; translated for Gemini
//! and Vertex (`batchEmbedContents`, `:predict`) and Bedrock (Titan and Cohere through
//! InvokeModel); the `echo` provider answers with deterministic vectors.

use axum::body::Bytes;
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use jusinfer_wire::embeddings::{EmbeddingCreateParams as EmbeddingsRequest, Input};
use serde_json::{json, Value};

use crate::error::GatewayError;
use crate::pipeline::{read, Attempt, ClientDialect, Parsed};
use crate::proxy;
use crate::routing::Deployment;
use crate::upstream::execute::{execute, Plan};
use crate::upstream::{echo, http, openai, Endpoint, Speaks};

pub(crate) struct Embeddings;

impl ClientDialect for Embeddings {
    const ENDPOINT: &'static str = "/v1/embeddings";
    type Request = EmbeddingsRequest;
    type Target = ();

    fn parse(
        raw: &Bytes,
        _: &HeaderMap,
        (): (),
    ) -> Result<Parsed<EmbeddingsRequest>, GatewayError> {
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
                let price = d.price;
                let body = openai::edit_body(a.raw, &d.upstream_model, false)?;
                let plan = Plan::whole(&d, Endpoint::Embeddings, body);
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
            Speaks::Gemini => gemini(a, &d).await,
            Speaks::Converse => {
                let inputs = texts(&a.p.req)?;
                let price = d.price;
                let r = &a.p.req;
                let (vectors, tokens) =
                    crate::upstream::bedrock::embed(&d, &inputs, r.dimensions).await?;
                let base64 = r.encoding_format.as_deref() == Some("base64");
                Ok(listed(vectors, base64, &d.upstream_model, tokens, price))
            }
            Speaks::Messages => Err(proxy::unsupported(
                d.provider.kind(),
                d.provider.name(),
                "embeddings",
            )),
        }
    }

    /// Embeddings never stream: the body is kept and replayed as it is.
    const CACHE: Option<&'static crate::cache::Codec> = Some(&crate::cache::Codec {
        collect: |_| None,
        replay: |_, _| None,
        fresh_id: None,
    });
    fn render(e: GatewayError) -> Response {
        e.into_response()
    }
}

/// `batchEmbedContents` (AI Studio; Vertex: `:predict`): one request per input, the
/// vectors back in OpenAI's list (as base64 floats when the client asked; the OpenAI SDKs
/// do by default).
async fn gemini(
    a: &Attempt<'_, EmbeddingsRequest>,
    d: &Deployment,
) -> Result<Response, GatewayError> {
    let r = &a.p.req;
    let inputs = texts(r)?;
    let price = d.price;
    let base64 = r.encoding_format.as_deref() == Some("base64");
    if d.provider.config.vertex.is_some() {
        // Vertex: `:predict`, which counts the tokens.
        let (vectors, tokens) =
            crate::upstream::vertex::embed(d, &inputs, r.dimensions, None).await?;
        return Ok(listed(vectors, base64, &d.upstream_model, tokens, price));
    }
    let reqs = jusinfer_translate::gemini::embed::request(&inputs, &d.upstream_model, r.dimensions);
    let vectors = crate::upstream::gemini::embed(d, &reqs.requests).await?;
    // AI Studio reports no token count: the prompt is estimated from the inputs' size.
    let tokens = crate::limits::estimate_prompt_tokens(inputs.iter().map(String::len).sum());
    Ok(listed(vectors, base64, &d.upstream_model, tokens, price))
}

/// The texts to embed (providers that take text, not token ids).
fn texts(r: &EmbeddingsRequest) -> Result<Vec<String>, GatewayError> {
    match &r.input {
        Input::One(s) => Ok(vec![s.clone()]),
        Input::Many(v) => Ok(v.clone()),
        Input::Tokens(_) | Input::ManyTokens(_) => Err(GatewayError::bad_request(
            "This provider embeds text: send `input` as a string or an array of strings.",
        )
        .param("input")
        .code("unsupported_value")),
    }
}

/// OpenAI's embeddings list (the vectors as base64 floats when `base64`), its usage
/// attached.
fn listed(
    vectors: Vec<Vec<f64>>,
    base64: bool,
    model: &str,
    tokens: u64,
    price: Option<jusinfer_translate::pricing::Price>,
) -> Response {
    let data: Vec<Value> = vectors
        .into_iter()
        .enumerate()
        .map(|(i, v)| {
            let embedding = if base64 {
                json!(as_base64(&v))
            } else {
                json!(v)
            };
            json!({"object": "embedding", "index": i, "embedding": embedding})
        })
        .collect();
    let usage = jusinfer_wire::chat::Usage {
        prompt_tokens: tokens,
        total_tokens: tokens,
        ..Default::default()
    };
    let body = json!({"object": "list", "data": data, "model": model,
        "usage": {"prompt_tokens": tokens, "total_tokens": tokens}});
    let mut resp = http::json_response(Bytes::from(body.to_string()));
    resp.extensions_mut()
        .insert(crate::usage::UsageExt(crate::upstream::execute::priced(
            usage, price,
        )));
    resp
}

/// Little-endian `f32`s, base64: OpenAI's `encoding_format: "base64"`.
fn as_base64(values: &[f64]) -> String {
    use base64::Engine as _;
    let bytes: Vec<u8> = values
        .iter()
        .flat_map(|v| (*v as f32).to_le_bytes())
        .collect();
    base64::engine::general_purpose::STANDARD.encode(bytes)
}
