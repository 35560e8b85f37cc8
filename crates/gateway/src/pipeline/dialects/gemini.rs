//! `POST /v1beta/models/{model}:generateContent` and `:streamGenerateContent`: Google's
//! Gemini API, as the `google-genai` SDKs send it (`x-goog-api-key`, `?key=` or Bearer;
//! the model and whether it streams in the path), served by every provider: a Gemini
//! upstream (AI Studio, Vertex's Gemini models) gets the client's bytes and its answer
//! passes through byte for byte, usage read on the way; every other deployment gets the
//! request translated to Chat and through the Chat leg, and the answer translated back
//! (`translate::generate`). Errors are in Google's shape.

use axum::body::Bytes;
use axum::http::HeaderMap;
use axum::response::Response;
use jusinfer_translate::generate::{embed, request, response, stream};
use jusinfer_wire::gemini::{GenerateContentRequest, GenerateContentResponse};

use crate::error::GatewayError;
use crate::pipeline::{read, Attempt, ClientDialect, Parsed};
use crate::routing::Deployment;
use crate::upstream::execute::{execute, malformed, priced, Outbound, Plan};
use crate::upstream::leg::id_seed;
use crate::upstream::{echo, http, Endpoint, Speaks};
use crate::usage::UsageExt;

pub(crate) struct Gemini;

/// What the path names: the model (as routed: an alias, `provider/model`, …) and whether
/// the client asked for `streamGenerateContent`.
pub(crate) struct Target {
    pub model: String,
    pub stream: bool,
}

/// A checked Gemini request.
pub(crate) struct GeminiRequest {
    pub req: GenerateContentRequest,
    /// The client asked for thought parts (`thinkingConfig.includeThoughts`).
    pub thoughts: bool,
}

impl ClientDialect for Gemini {
    const ENDPOINT: &'static str = "/v1beta/models/{model}:generateContent";
    const ANY_AUTH: bool = true;
    type Request = GeminiRequest;
    type Target = Target;

    fn parse(
        raw: &Bytes,
        _: &HeaderMap,
        target: Target,
    ) -> Result<Parsed<GeminiRequest>, GatewayError> {
        let req: GenerateContentRequest = read::parse_json(raw)?;
        if req.contents.is_empty() {
            return Err(
                GatewayError::bad_request("contents: at least one content is required.")
                    .param("contents"),
            );
        }
        let g = req.generation_config.as_ref();
        let thoughts = g
            .and_then(|g| g.thinking_config.as_ref())
            .and_then(|t| t.include_thoughts)
            .unwrap_or(false);
        let n = g.and_then(|g| g.candidate_count).unwrap_or(1).max(1);
        Ok(Parsed {
            model: target.model,
            stream: target.stream,
            extra_prompt_bytes: 0,
            max_output: g
                .and_then(|g| g.max_output_tokens)
                .map(|m| u64::from(m).saturating_mul(u64::from(n))),
            req: GeminiRequest { req, thoughts },
        })
    }

    async fn attempt(
        a: &Attempt<'_, GeminiRequest>,
        d: Deployment,
    ) -> Result<Response, GatewayError> {
        let g = &a.p.req;
        let p = &*d.provider;
        let price = d.price;
        if d.speaks() == Speaks::Gemini {
            // Natively: the client's bytes (the model is in the URL), the answer's bytes
            // as they come, usage read on the way.
            let plan = Plan {
                d: &d,
                endpoint: Endpoint::ChatCompletions,
                body: Outbound::Bytes(a.raw.clone()),
                stream: a.p.stream,
                forward: &[],
                tap: Some(a.tap),
                keep: None,
                dropped: Vec::new(),
            };
            return execute(plan, stream::GeminiPassthrough::new, |bytes| async move {
                let r: GenerateContentResponse = serde_json::from_slice(&bytes).map_err(|e| {
                    malformed(
                        p,
                        &format!("a response that is not a Gemini response ({e})"),
                    )
                })?;
                let mut resp = http::json_response(bytes);
                if let Some(u) = &r.usage_metadata {
                    let usage = priced(jusinfer_translate::gemini::usage(u), price);
                    resp.extensions_mut().insert(UsageExt(usage));
                }
                Ok(resp)
            })
            .await;
        }
        let t = request::gemini_to_chat(
            &g.req,
            &d.upstream_model,
            a.p.stream,
            p.upstream.newest_chat,
        )
        .map_err(|e| {
            GatewayError::bad_request(e.message)
                .param(e.param)
                .code("invalid_value")
        })?;
        let seed = id_seed(a.request_id);
        let outer = || {
            stream::ChatToGemini::new(stream::Options {
                id: seed.clone(),
                model: a.p.model.clone(),
                thoughts: g.thoughts,
            })
        };
        let render = |c: &_| response::chat_to_gemini(c, &a.p.model, g.thoughts);
        let effort = "generationConfig.thinkingConfig";
        super::through_chat(a, &d, (t.body, t.dropped), effort, &seed, outer, render).await
    }

    const DIALECT: Option<jusinfer_translate::answer::Dialect> =
        Some(jusinfer_translate::answer::Dialect::Gemini);
    const CACHE: Option<&'static crate::cache::Codec> = Some(&crate::cache::Codec {
        collect: jusinfer_translate::replay::gemini::collect,
        replay: |b, _| jusinfer_translate::replay::gemini::replay(b),
        fresh_id: Some(("responseId", "")),
    });
    fn render(e: GatewayError) -> Response {
        e.into_gemini_response()
    }

    fn error_frame(e: &GatewayError) -> Bytes {
        stream::frame(&e.gemini_body())
    }
}

/// `POST /v1beta/models/{model}:embedContent` and `:batchEmbedContents`: a Gemini
/// upstream gets the requests (as a batch, each naming the upstream's model) and its
/// vectors come back as they are; an OpenAI-shaped upstream gets the texts as one
/// embeddings request; `echo` answers with its deterministic vectors.
pub(crate) struct GeminiEmbed;

/// What the path names: the model, and whether the client asked for a batch.
pub(crate) struct EmbedTarget {
    pub model: String,
    pub batch: bool,
}

pub(crate) struct EmbedRequest {
    pub reqs: Vec<embed::EmbedContentParams>,
    pub batch: bool,
}

impl ClientDialect for GeminiEmbed {
    const ENDPOINT: &'static str = "/v1beta/models/{model}:batchEmbedContents";
    const ANY_AUTH: bool = true;
    type Request = EmbedRequest;
    type Target = EmbedTarget;

    fn parse(
        raw: &Bytes,
        _: &HeaderMap,
        target: EmbedTarget,
    ) -> Result<Parsed<EmbedRequest>, GatewayError> {
        let reqs = if target.batch {
            let b: embed::BatchEmbedParams = read::parse_json(raw)?;
            if b.requests.is_empty() {
                return Err(GatewayError::bad_request(
                    "requests: at least one request is required.",
                )
                .param("requests"));
            }
            b.requests
        } else {
            vec![read::parse_json::<embed::EmbedContentParams>(raw)?]
        };
        Ok(Parsed {
            model: target.model,
            stream: false,
            extra_prompt_bytes: 0,
            max_output: Some(0),
            req: EmbedRequest {
                reqs,
                batch: target.batch,
            },
        })
    }

    async fn attempt(
        a: &Attempt<'_, EmbedRequest>,
        d: Deployment,
    ) -> Result<Response, GatewayError> {
        let r = &a.p.req;
        let at = if r.batch { "requests" } else { "request" };
        let bad = |e: embed::Error| {
            GatewayError::bad_request(e.message)
                .param(e.param)
                .code("unsupported_value")
        };
        let p = &*d.provider;
        let price = d.price;
        let no_stream = || jusinfer_translate::pipe::Relay::default();
        match d.speaks() {
            Speaks::Gemini if p.config.vertex.is_some() => {
                // Vertex: `:predict`, which counts the tokens.
                let texts = embed::texts(&r.reqs, at).map_err(bad)?;
                let dims = r.reqs.iter().find_map(|q| q.output_dimensionality);
                let task = r.reqs.iter().find_map(|q| {
                    q.rest
                        .get("taskType")
                        .or_else(|| q.rest.get("task_type"))
                        .and_then(|t| t.as_str())
                });
                let (vectors, tokens) =
                    crate::upstream::vertex::embed(&d, &texts, dims, task).await?;
                Ok(embedded(vectors, r.batch, tokens, price))
            }
            Speaks::Gemini => {
                let texts = embed::texts(&r.reqs, at).unwrap_or_default();
                let batch = embed::batch_for(&r.reqs, &d.upstream_model);
                let vectors = crate::upstream::gemini::embed(&d, &batch.requests).await?;
                // Gemini reports no token count: estimated from the texts' size.
                let tokens =
                    crate::limits::estimate_prompt_tokens(texts.iter().map(String::len).sum());
                Ok(embedded(vectors, r.batch, tokens, price))
            }
            Speaks::Chat => {
                let texts = embed::texts(&r.reqs, at).map_err(bad)?;
                let mut body = serde_json::json!({"model": d.upstream_model, "input": texts});
                if let Some(n) = r.reqs.iter().find_map(|q| q.output_dimensionality) {
                    body["dimensions"] = n.into();
                }
                let plan = Plan::whole(&d, Endpoint::Embeddings, Bytes::from(body.to_string()));
                execute(plan, no_stream, |bytes| async move {
                    #[derive(serde::Deserialize)]
                    struct Item {
                        embedding: Vec<f64>,
                    }
                    #[derive(serde::Deserialize)]
                    struct List {
                        data: Vec<Item>,
                        #[serde(default)]
                        usage: Option<jusinfer_wire::chat::Usage>,
                    }
                    let list: List = serde_json::from_slice(&bytes).map_err(|e| {
                        malformed(
                            p,
                            &format!("a response that is not an embeddings list ({e})"),
                        )
                    })?;
                    let tokens = list.usage.map_or(0, |u| u.prompt_tokens);
                    let vectors = list.data.into_iter().map(|i| i.embedding).collect();
                    Ok(embedded(vectors, r.batch, tokens, price))
                })
                .await
            }
            Speaks::Local => {
                let texts = embed::texts(&r.reqs, at).map_err(bad)?;
                let (vectors, tokens) = echo::embeddings(&texts);
                Ok(embedded(vectors, r.batch, tokens, None))
            }
            Speaks::Messages | Speaks::Converse => {
                Err(crate::proxy::unsupported(p.kind(), p.name(), "embeddings"))
            }
        }
    }

    fn render(e: GatewayError) -> Response {
        e.into_gemini_response()
    }
}

/// The client's embeddings answer, its usage attached.
fn embedded(
    vectors: Vec<Vec<f64>>,
    batch: bool,
    tokens: u64,
    price: Option<jusinfer_translate::pricing::Price>,
) -> Response {
    let body = embed::answer(vectors, batch);
    let mut resp = http::json_response(Bytes::from(body.to_string()));
    let usage = jusinfer_wire::chat::Usage {
        prompt_tokens: tokens,
        total_tokens: tokens,
        ..Default::default()
    };
    resp.extensions_mut().insert(UsageExt(priced(usage, price)));
    resp
}
