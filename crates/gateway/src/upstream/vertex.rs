//! Vertex AI upstreams: Google's Gemini models and Anthropic's Claude models in a Google
//! Cloud project, with Google's OAuth2 access tokens. A model whose name starts with
//! `claude` is an Anthropic publisher model: it speaks Messages (`:rawPredict`,
//! `:streamRawPredict`; the body names no model and carries `anthropic_version`); every
//! other model speaks Gemini (`:generateContent`, `:streamGenerateContent?alt=sse`).
//!
//! Embeddings go to `:predict` ([`embed`]).
//!
//! Tokens come from `gcp_auth` (a service-account key file, or application-default
//! credentials: `GOOGLE_APPLICATION_CREDENTIALS`, gcloud's user credentials, the metadata
//! server on Google Cloud); it caches each token and fetches a fresh one before expiry.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use axum::http::{HeaderValue, StatusCode};
use bytes::Bytes;
use serde_json::{Map, Value};
use tokio::sync::OnceCell;

use super::execute::{fan_out, malformed};
use super::kind::{Credentials, Signer, Speaks};
use super::{Endpoint, Provider};
use crate::config::ProviderConfig;
use crate::error::GatewayError;
use crate::routing::Deployment;

/// The body field Vertex wants on Anthropic models instead of the `anthropic-version`
/// header.
pub(crate) const ANTHROPIC_VERSION: &str = "vertex-2023-10-16";

/// The scope of Vertex AI calls.
const SCOPE: &str = "https://www.googleapis.com/auth/cloud-platform";

/// Which publisher's dialect `model` speaks.
pub(crate) fn speaks_for(model: &str) -> Speaks {
    if model.starts_with("claude") {
        Speaks::Messages
    } else {
        Speaks::Gemini
    }
}

/// `{base}/projects/{project}/locations/{location}/publishers/{google|anthropic}/models/
/// {model}:{method}`, the model one percent-encoded path segment.
pub(crate) fn url(
    p: &Provider,
    e: Endpoint,
    model: &str,
    stream: bool,
) -> Result<reqwest::Url, GatewayError> {
    let Some(v) = p.config.vertex.as_ref() else {
        return Err(GatewayError::internal(
            "a vertex provider without its project",
        ));
    };
    let anthropic = speaks_for(model) == Speaks::Messages;
    let method = match (e, stream, anthropic) {
        (Endpoint::ChatCompletions, false, false) => "generateContent",
        (Endpoint::ChatCompletions, true, false) => "streamGenerateContent",
        (Endpoint::ChatCompletions, false, true) => "rawPredict",
        (Endpoint::ChatCompletions, true, true) => "streamRawPredict",
        (Endpoint::CountTokens, _, false) => "countTokens",
        (Endpoint::Embeddings, _, false) => "predict",
        _ => {
            let what = match e {
                Endpoint::Embeddings => "embeddings",
                Endpoint::CountTokens => "token counts",
                _ => "this endpoint",
            };
            return Err(crate::proxy::unsupported(p.kind(), p.name(), what));
        }
    };
    let publisher = if anthropic { "anthropic" } else { "google" };
    let last = format!("{model}:{method}");
    let segments = [
        "projects",
        &v.project,
        "locations",
        &v.location,
        "publishers",
        publisher,
        "models",
        &last,
    ];
    let sse = stream && !anthropic;
    p.url_with(&segments, sse.then_some("alt=sse"))
}

/// Instances one `:predict` call takes: `gemini-embedding-*` models one (docs), the
/// `text-embedding-*` models up to 250 (docs).
fn instances_per_call(model: &str) -> usize {
    if model.starts_with("gemini-embedding") {
        1
    } else {
        250
    }
}

/// Calls in flight at once for one request's embeddings.
const EMBED_CONCURRENCY: usize = 8;

/// The most inputs one request embeds (OpenAI's own cap): one client request never turns
/// into more upstream calls than this.
pub(crate) const MAX_EMBED_INPUTS: usize = 2048;

/// 400 `too_many_inputs` past [`MAX_EMBED_INPUTS`] (every embedding kind checks first).
pub(crate) fn check_embed_inputs(n: usize) -> Result<(), GatewayError> {
    if n > MAX_EMBED_INPUTS {
        return Err(GatewayError::bad_request(format!(
            "At most {MAX_EMBED_INPUTS} inputs can be embedded in one request; this one has {n}."
        ))
        .param("input")
        .code("too_many_inputs"));
    }
    Ok(())
}

/// Embeds `texts` with the Vertex model of `d` (`:predict`, as many calls as the model
/// needs, at most [`EMBED_CONCURRENCY`] at once, the vectors in order): the vectors and
/// the tokens Vertex counted. `task`: the `task_type` of every instance.
pub(crate) async fn embed(
    d: &Deployment,
    texts: &[String],
    dimensions: Option<u32>,
    task: Option<&str>,
) -> Result<(Vec<Vec<f64>>, u64), GatewayError> {
    #[derive(serde::Deserialize)]
    struct Predictions {
        #[serde(default)]
        predictions: Vec<Prediction>,
    }
    #[derive(serde::Deserialize)]
    struct Prediction {
        embeddings: Embedded,
    }
    #[derive(serde::Deserialize)]
    struct Embedded {
        #[serde(default)]
        values: Vec<f64>,
        #[serde(default)]
        statistics: Option<Statistics>,
    }
    #[derive(serde::Deserialize)]
    struct Statistics {
        #[serde(default)]
        token_count: f64,
    }
    check_embed_inputs(texts.len())?;
    let p = &*d.provider;
    let per_call = instances_per_call(&d.upstream_model);
    let bodies = texts
        .chunks(per_call)
        .map(|chunk| {
            let instances: Vec<Value> = chunk
                .iter()
                .map(|t| match task {
                    Some(k) => serde_json::json!({"content": t, "task_type": k}),
                    None => serde_json::json!({ "content": t }),
                })
                .collect();
            let mut body = serde_json::json!({ "instances": instances });
            if let Some(n) = dimensions {
                body["parameters"] = serde_json::json!({ "outputDimensionality": n });
            }
            Bytes::from(body.to_string())
        })
        .collect();
    let answers = fan_out(d, Endpoint::Embeddings, bodies, EMBED_CONCURRENCY).await?;
    let mut vectors = Vec::with_capacity(texts.len());
    let mut tokens = 0.0;
    for (bytes, chunk) in answers.iter().zip(texts.chunks(per_call)) {
        let got: Predictions = serde_json::from_slice(bytes)
            .map_err(|e| malformed(p, &format!("a response that is not a predict answer ({e})")))?;
        if got.predictions.len() != chunk.len() {
            return Err(malformed(p, "a different number of embeddings than inputs"));
        }
        for pr in got.predictions {
            tokens += pr.embeddings.statistics.map_or(0.0, |s| s.token_count);
            vectors.push(pr.embeddings.values);
        }
    }
    Ok((vectors, tokens as u64))
}

/// A Messages body as Vertex takes it: no `model`, `anthropic_version` set.
pub(crate) fn anthropic_body(body: &[u8]) -> Result<Bytes, GatewayError> {
    let mut m: Map<String, Value> = serde_json::from_slice(body)
        .map_err(|e| GatewayError::internal(format!("a Messages body that is not JSON: {e}")))?;
    m.remove("model");
    m.insert("anthropic_version".into(), Value::from(ANTHROPIC_VERSION));
    serde_json::to_vec(&m)
        .map(Bytes::from)
        .map_err(|e| GatewayError::internal(e.to_string()))
}

/// Google's OAuth2 access tokens, on every request.
struct GoogleToken {
    provider: String,
    credentials_file: Option<String>,
    source: OnceCell<Arc<dyn gcp_auth::TokenProvider>>,
}

impl GoogleToken {
    async fn source(&self) -> Result<&Arc<dyn gcp_auth::TokenProvider>, GatewayError> {
        self.source
            .get_or_try_init(|| async {
                match &self.credentials_file {
                    Some(path) => gcp_auth::CustomServiceAccount::from_file(path)
                        .map(|a| Arc::new(a) as Arc<dyn gcp_auth::TokenProvider>),
                    None => gcp_auth::provider().await,
                }
            })
            .await
            .map_err(|e| self.failed(&e))
    }

    fn failed(&self, e: &gcp_auth::Error) -> GatewayError {
        // gcp_auth's messages name files and causes, never a key or a token.
        GatewayError::upstream(format!(
            "provider `{}`: no Google Cloud access token: {e}",
            self.provider
        ))
        .code("upstream_auth_error")
    }
}

impl Signer for GoogleToken {
    fn sign<'a>(
        &'a self,
        req: &'a mut reqwest::Request,
    ) -> Pin<Box<dyn Future<Output = Result<(), GatewayError>> + Send + 'a>> {
        Box::pin(async move {
            let source = self.source().await?;
            let token = source.token(&[SCOPE]).await.map_err(|e| self.failed(&e))?;
            let mut v = HeaderValue::from_str(&format!("Bearer {}", token.as_str()))
                .map_err(|_| GatewayError::upstream("an access token a header cannot carry"))?;
            v.set_sensitive(true);
            req.headers_mut().insert("authorization", v);
            Ok(())
        })
    }

    fn secrets(&self) -> Vec<String> {
        // Tokens change hourly and are never quoted back by Google; the key file stays
        // on disk.
        Vec::new()
    }
}

/// The provider's token source (read on first use, so a missing file is a clear error on
/// the first request rather than at start only).
pub(crate) fn credentials(c: &ProviderConfig) -> Result<Credentials, String> {
    let file = c.vertex.as_ref().and_then(|v| v.credentials_file.clone());
    if let Some(f) = &file {
        if !std::path::Path::new(f).is_file() {
            return Err(format!(
                "provider {}: credentials_file {f:?} is not a readable file",
                c.name
            ));
        }
    }
    Ok(Credentials::Signer(Arc::new(GoogleToken {
        provider: c.name.clone(),
        credentials_file: file,
        source: OnceCell::new(),
    })))
}

/// Vertex's errors: Google's envelope (auth, quota, Gemini models), or Anthropic's from
/// its models.
pub(crate) fn map_status(p: &Provider, status: StatusCode, body: &[u8]) -> GatewayError {
    let google = serde_json::from_slice::<jusinfer_wire::gemini::ErrorEnvelope>(body)
        .is_ok_and(|e| !e.error.status.is_empty() || e.error.code != 0);
    if google {
        super::gemini::map_status(p, status, body)
    } else {
        super::anthropic::map_status(p, status, body)
    }
}

/// Anthropic models need `max_tokens`; Gemini models do not.
pub(crate) fn default_max_output(c: &ProviderConfig, model: &str) -> Option<u32> {
    (speaks_for(model) == Speaks::Messages).then(|| c.max_tokens_for(model))
}
