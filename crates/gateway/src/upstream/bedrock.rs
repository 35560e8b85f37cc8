//! Amazon Bedrock upstreams, through Converse: `POST /model/{modelId}/converse` and
//! `/converse-stream` on the region's `bedrock-runtime` host. The model id is one path
//! segment (`:` as sent, `/` of an inference-profile ARN percent-encoded); the answer is
//! translated back by `jusinfer_translate::bedrock`, streams framed in AWS's binary event
//! stream (`http::stream` reads the framing from the content type). Requests carry a
//! Bedrock API key as a bearer token, or are signed with SigV4 ([`SigV4`]).
//!
//! Claude also speaks Anthropic's own Messages on Bedrock (`/invoke`,
//! `/invoke-with-response-stream`: the body without `model` and `stream`, with
//! `anthropic_version: bedrock-2023-05-31` and the `anthropic-beta` flags as
//! `anthropic_beta`; stream chunks carry Anthropic's events). A Messages client's request
//! to Claude goes that way ([`invoke_body`]), so it keeps every Messages feature; other
//! dialects reach Claude through Converse. Token counts (`/count-tokens`) take the same
//! Messages body ([`count_body`]).
//!
//! Errors are `{"message": …}` with the error's name in `x-amzn-ErrorType`; the status
//! says enough to map them (MAPPING.md §8.7): 400 `ValidationException`, 403
//! `AccessDenied` / `ExpiredToken` / `UnrecognizedClient` (the gateway's credentials),
//! 404 `ResourceNotFound`, 408 `ModelTimeout`, 424 `ModelError` (retryable), 429
//! `Throttling`, 503 `ServiceUnavailable`.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use aws_sigv4::http_request::{sign, SignableBody, SignableRequest, SigningSettings};
use aws_sigv4::sign::v4;
use aws_smithy_runtime_api::client::identity::Identity;
use axum::http::{HeaderName, HeaderValue, StatusCode};

use jusinfer_translate::bedrock::embed;

use super::kind::{Credentials, Signer};
use super::{Endpoint, Provider};
use crate::config::ProviderConfig;
use crate::error::GatewayError;

/// The URL of one request.
pub(crate) fn url(
    p: &Provider,
    e: Endpoint,
    model: &str,
    stream: bool,
) -> Result<reqwest::Url, GatewayError> {
    let op = match (e, stream) {
        (Endpoint::ChatCompletions, false) => "converse",
        (Endpoint::ChatCompletions, true) => "converse-stream",
        (Endpoint::NativeMessages, false) => "invoke",
        (Endpoint::NativeMessages, true) => "invoke-with-response-stream",
        // CountTokens takes a foundation model, not a cross-region inference profile.
        (Endpoint::CountTokens, _) if is_claude(model) => {
            return p.url_with(&["model", foundation_model(model), "count-tokens"], None)
        }
        (Endpoint::Embeddings, _) if embed::Family::of(model).is_some() => "invoke",
        (Endpoint::Embeddings, _) => {
            return Err(crate::proxy::unsupported(p.kind(), p.name(), "embeddings"))
        }
        (Endpoint::CountTokens, _) => {
            return Err(crate::proxy::unsupported(
                p.kind(),
                p.name(),
                "token counts",
            ))
        }
        (Endpoint::Responses, _) => {
            return Err(crate::proxy::unsupported(
                p.kind(),
                p.name(),
                "the Responses API",
            ))
        }
    };
    p.url_with(&["model", model, op], None)
}

/// Calls in flight at once for one request's embeddings.
const EMBED_CONCURRENCY: usize = 4;

/// Embeds `inputs` with the Titan or Cohere model of `d` (InvokeModel, one text a call for
/// Titan, batches for Cohere, at most [`EMBED_CONCURRENCY`] at once): the vectors in order
/// and the prompt's tokens (Titan counts them; otherwise estimated from the size).
pub(crate) async fn embed(
    d: &crate::routing::Deployment,
    inputs: &[String],
    dimensions: Option<u32>,
) -> Result<(Vec<Vec<f64>>, u64), GatewayError> {
    let p = &*d.provider;
    let family = embed::Family::of(&d.upstream_model).ok_or_else(|| {
        GatewayError::bad_request(format!(
            "`{}` does not embed: Bedrock embeds with Amazon Titan Text Embeddings and Cohere Embed.",
            d.upstream_model
        ))
        .param("model")
        .code("unsupported_value")
    })?;
    super::vertex::check_embed_inputs(inputs.len())?;
    let bodies = embed::requests(family, inputs, dimensions)
        .map_err(|e| {
            GatewayError::bad_request(e.0)
                .param("dimensions")
                .code("unsupported_value")
        })?
        .iter()
        .map(|b| serde_json::to_vec(b).map(bytes::Bytes::from))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| GatewayError::internal(e.to_string()))?;
    let answers =
        super::execute::fan_out(d, Endpoint::Embeddings, bodies, EMBED_CONCURRENCY).await?;
    let mut vectors = Vec::with_capacity(inputs.len());
    let mut counted: Option<u64> = Some(0);
    for a in &answers {
        let (v, n) = embed::answer(family, a).map_err(|e| super::execute::malformed(p, &e))?;
        vectors.extend(v);
        counted = counted.zip(n).map(|(x, y)| x.saturating_add(y));
    }
    if vectors.len() != inputs.len() {
        return Err(super::execute::malformed(
            p,
            "a different number of embeddings than inputs",
        ));
    }
    let tokens = counted.unwrap_or_else(|| {
        crate::limits::estimate_prompt_tokens(inputs.iter().map(String::len).sum())
    });
    Ok((vectors, tokens))
}

/// The `anthropic_version` InvokeModel wants in a Claude body.
pub(crate) const ANTHROPIC_VERSION: &str = "bedrock-2023-05-31";

/// Whether `model` is Claude (a foundation model id, a cross-region inference profile
/// `us.anthropic.…`, or an ARN naming one): the models that take Messages bodies.
pub(crate) fn is_claude(model: &str) -> bool {
    model.contains("anthropic.")
}

/// The foundation model an id names: `us.anthropic.claude-…` (a cross-region inference
/// profile, or an ARN ending in one) is `anthropic.claude-…`.
pub(crate) fn foundation_model(model: &str) -> &str {
    let id = match model.strip_prefix("arn:") {
        Some(arn) => arn.rsplit('/').next().unwrap_or(model),
        None => model,
    };
    match id.split_once('.') {
        Some((region, rest))
            if ["us", "eu", "apac", "global", "us-gov", "jp", "au", "ca"].contains(&region) =>
        {
            rest
        }
        _ => id,
    }
}

/// A Messages body as InvokeModel takes it for Claude, as Anthropic's Bedrock SDK builds
/// it: no `model` or `stream` (the path says both), `anthropic_version` set, and the
/// client's `anthropic-beta` flags as `anthropic_beta` (Bedrock reads them there). The
/// client's own `anthropic_version` / `anthropic_beta` win.
pub(crate) fn invoke_body(
    body: &[u8],
    forward: &[(&'static str, String)],
) -> Result<bytes::Bytes, GatewayError> {
    let mut m: serde_json::Map<String, serde_json::Value> = serde_json::from_slice(body)
        .map_err(|e| GatewayError::internal(format!("a Messages body that is not JSON: {e}")))?;
    m.remove("model");
    m.remove("stream");
    m.entry("anthropic_version")
        .or_insert_with(|| ANTHROPIC_VERSION.into());
    if let Some((_, betas)) = forward.iter().find(|(k, _)| *k == "anthropic-beta") {
        let betas: Vec<&str> = betas
            .split(',')
            .map(str::trim)
            .filter(|b| !b.is_empty())
            .collect();
        if !betas.is_empty() {
            m.entry("anthropic_beta").or_insert_with(|| betas.into());
        }
    }
    serde_json::to_vec(&m)
        .map(bytes::Bytes::from)
        .map_err(|e| GatewayError::internal(e.to_string()))
}

/// A Messages `count_tokens` body as Bedrock's CountTokens takes it: the InvokeModel body
/// the request would send (`max_tokens` added: Claude's body needs one, the count does
/// not use it), base64 in `input.invokeModel.body`.
pub(crate) fn count_body(
    body: &[u8],
    forward: &[(&'static str, String)],
) -> Result<bytes::Bytes, GatewayError> {
    use base64::Engine as _;
    let mut m: serde_json::Map<String, serde_json::Value> = serde_json::from_slice(body)
        .map_err(|e| GatewayError::bad_request(format!("The request is not JSON: {e}")))?;
    m.entry("max_tokens").or_insert_with(|| 1.into());
    let inner = serde_json::to_vec(&m).map_err(|e| GatewayError::internal(e.to_string()))?;
    let inner = invoke_body(&inner, forward)?;
    let b64 = base64::engine::general_purpose::STANDARD.encode(&inner);
    Ok(bytes::Bytes::from(
        serde_json::json!({"input": {"invokeModel": {"body": b64}}}).to_string(),
    ))
}

/// A Bedrock API key as a bearer token, else SigV4 with the provider's AWS keys, else
/// SigV4 with AWS's standard credential chain ([`super::aws::Chain`]).
pub(crate) fn credentials(c: &ProviderConfig) -> Result<Credentials, String> {
    let Some(b) = c.bedrock.as_ref().filter(|_| c.api_key.is_none()) else {
        return Credentials::header(c, "authorization", |k| format!("Bearer {k}"));
    };
    let (keys, secrets) = match &b.keys {
        Some(keys) => (
            Keys::Static(
                aws_credential_types::Credentials::new(
                    keys.access_key_id.clone(),
                    keys.secret_access_key.clone(),
                    keys.session_token.clone(),
                    None,
                    "jusinfer-config",
                )
                .into(),
            ),
            [Some(&keys.secret_access_key), keys.session_token.as_ref()]
                .into_iter()
                .flatten()
                .cloned()
                .collect(),
        ),
        None => {
            let client = reqwest::Client::builder()
                .connect_timeout(c.timeouts.connect)
                .user_agent(concat!("jusinfer/", env!("CARGO_PKG_VERSION")))
                .build()
                .map_err(|e| format!("provider {}: cannot build an HTTP client: {e}", c.name))?;
            let chain = super::aws::Chain::new(&c.name, &b.region, b.profile.clone(), client);
            (Keys::Chain(Box::new(chain)), Vec::new())
        }
    };
    Ok(Credentials::Signer(Arc::new(SigV4 {
        region: b.region.clone(),
        keys,
        secrets,
        skew: AtomicI64::new(0),
    })))
}

/// Where a signer's keys come from.
enum Keys {
    /// Configured: the same on every request.
    Static(Identity),
    /// AWS's standard chain, cached and refreshed.
    Chain(Box<super::aws::Chain>),
}

/// AWS Signature Version 4 over the whole request as it will be sent (method, the encoded
/// path and query, every header it carries, the body's SHA-256), by AWS's `aws-sigv4`:
/// `x-amz-date`, `x-amz-security-token` (temporary keys) and `authorization` added. The
/// signing time is the local clock corrected by the skew Bedrock's `Date` showed when it
/// refused a signature as expired or not yet current ([`Signer::observe`]).
struct SigV4 {
    region: String,
    keys: Keys,
    secrets: Vec<String>,
    /// Server time − local time, in seconds (0 until a refusal shows otherwise).
    skew: AtomicI64,
}

/// Skews smaller than this are left alone (SigV4 tolerates five minutes).
const SKEW_TOLERATED: i64 = 60;

/// Skews larger than this are not believed.
const SKEW_BELIEVED: i64 = 24 * 3600;

impl Signer for SigV4 {
    fn sign<'a>(
        &'a self,
        req: &'a mut reqwest::Request,
    ) -> Pin<Box<dyn Future<Output = Result<(), GatewayError>> + Send + 'a>> {
        Box::pin(async move {
            let failed = |what: String| GatewayError::internal(format!("SigV4 signing: {what}"));
            if req.url().host_str().is_none() {
                return Err(failed("the URL has no host".to_owned()));
            }
            let identity = match &self.keys {
                Keys::Static(id) => id.clone(),
                Keys::Chain(chain) => chain.identity().await?,
            };
            let skew = self.skew.load(Ordering::Relaxed);
            let now = SystemTime::now();
            let by = Duration::from_secs(skew.unsigned_abs());
            let time = if skew >= 0 {
                now.checked_add(by)
            } else {
                now.checked_sub(by)
            }
            .unwrap_or(now);
            let params = v4::SigningParams::builder()
                .identity(&identity)
                .region(&self.region)
                .name("bedrock")
                .time(time)
                .settings(SigningSettings::default())
                .build()
                .map_err(|e| failed(e.to_string()))?
                .into();
            let body = req
                .body()
                .and_then(reqwest::Body::as_bytes)
                .unwrap_or_default();
            let headers = req
                .headers()
                .iter()
                .filter_map(|(k, v)| v.to_str().ok().map(|v| (k.as_str(), v)));
            let signable = SignableRequest::new(
                req.method().as_str(),
                req.url().as_str(),
                headers,
                SignableBody::Bytes(body),
            )
            .map_err(|e| failed(e.to_string()))?;
            let (instructions, _) = sign(signable, &params)
                .map_err(|e| failed(e.to_string()))?
                .into_parts();
            let (add, _) = instructions.into_parts();
            for h in add {
                let name = HeaderName::from_bytes(h.name().as_bytes())
                    .map_err(|e| failed(e.to_string()))?;
                let mut value =
                    HeaderValue::from_str(h.value()).map_err(|e| failed(e.to_string()))?;
                value.set_sensitive(h.sensitive());
                req.headers_mut().insert(name, value);
            }
            Ok(())
        })
    }

    fn secrets(&self) -> Vec<String> {
        self.secrets.clone()
    }

    fn observe(&self, status: StatusCode, headers: &reqwest::header::HeaderMap) -> bool {
        // A signature refused for its time comes back 403 with the server's `Date`.
        if status != StatusCode::FORBIDDEN {
            return false;
        }
        let Some(server) = headers
            .get("date")
            .and_then(|v| v.to_str().ok())
            .and_then(|d| {
                aws_smithy_types::DateTime::from_str(
                    d,
                    aws_smithy_types::date_time::Format::HttpDate,
                )
                .ok()
            })
        else {
            return false;
        };
        let local = aws_smithy_types::DateTime::from(SystemTime::now());
        let skew = server.secs().saturating_sub(local.secs());
        let known = self.skew.load(Ordering::Relaxed);
        // A `Date` a day or more away is not a clock's drift: never signed with.
        if skew.abs() > SKEW_BELIEVED || (skew - known).abs() < SKEW_TOLERATED {
            return false;
        }
        tracing::warn!(
            skew_secs = skew,
            "the clock differs from AWS's: signing with AWS's time"
        );
        self.skew.store(skew, Ordering::Relaxed);
        true
    }
}

#[derive(serde::Deserialize)]
struct ErrorBody {
    #[serde(default, alias = "Message")]
    message: String,
}

/// A Bedrock error answer as the client's error.
pub(crate) fn map_status(p: &Provider, status: StatusCode, body: &[u8]) -> GatewayError {
    let message = serde_json::from_slice::<ErrorBody>(body)
        .ok()
        .map(|b| b.message)
        .filter(|m| !m.is_empty())
        .unwrap_or_else(|| super::status::body_head(body));
    let name = p.name();
    let s = status.as_u16();
    match s {
        401 | 403 => super::status::credentials_refused(name, &s.to_string(), &message),
        404 => super::status::model_not_found(format!("provider `{name}`: {message}")),
        408 => GatewayError::timeout(format!("provider `{name}` timed out ({s}): {message}")),
        // `ModelErrorException`: the model failed, not the request.
        424 => GatewayError::upstream(format!("provider `{name}`'s model failed ({s}): {message}"))
            .retryable(true),
        429 => super::status::rate_limited(message),
        400..=499 => super::status::client_error(status, "invalid_request_error", message),
        _ => GatewayError::upstream(format!("provider `{name}` returned {s}: {message}"))
            .retryable(matches!(s, 500 | 502 | 503 | 504)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn provider() -> Provider {
        let text = "[providers.aws]\nkind = \"bedrock\"\nregion = \"eu-west-3\"\napi_key = \"k\"\n";
        let c = crate::config::parse(text, None, &|_| None).expect("valid");
        let p = c
            .providers
            .into_iter()
            .find(|p| p.name == "aws")
            .expect("aws");
        Provider::new(p).expect("provider")
    }

    #[test]
    fn token_counts_name_the_foundation_model() {
        let p = provider();
        for id in [
            "us.anthropic.claude-sonnet-4-5-20250929-v1:0",
            "global.anthropic.claude-sonnet-4-5-20250929-v1:0",
            "arn:aws:bedrock:eu-west-3:123456789012:inference-profile/eu.anthropic.claude-sonnet-4-5-20250929-v1:0",
            "anthropic.claude-sonnet-4-5-20250929-v1:0",
        ] {
            let u = url(&p, Endpoint::CountTokens, id, false).expect("url");
            assert_eq!(
                u.path(),
                "/model/anthropic.claude-sonnet-4-5-20250929-v1:0/count-tokens",
                "{id}"
            );
        }
    }

    #[test]
    fn a_date_no_clock_could_drift_to_is_not_believed() {
        let signer = SigV4 {
            region: "us-east-1".to_owned(),
            keys: Keys::Static(
                aws_credential_types::Credentials::new("A", "s", None, None, "t").into(),
            ),
            secrets: Vec::new(),
            skew: AtomicI64::new(0),
        };
        let mut h = reqwest::header::HeaderMap::new();
        h.insert(
            "date",
            HeaderValue::from_static("Fri, 31 Dec 9999 23:59:59 GMT"),
        );
        assert!(!signer.observe(StatusCode::FORBIDDEN, &h));
        assert_eq!(signer.skew.load(Ordering::Relaxed), 0);
        let ahead = aws_smithy_types::DateTime::from_secs(
            aws_smithy_types::DateTime::from(SystemTime::now()).secs() + 3600,
        )
        .fmt(aws_smithy_types::date_time::Format::HttpDate)
        .expect("date");
        h.insert("date", HeaderValue::from_str(&ahead).expect("header"));
        assert!(
            !signer.observe(StatusCode::BAD_REQUEST, &h),
            "only refusals"
        );
        assert!(signer.observe(StatusCode::FORBIDDEN, &h));
        assert!((signer.skew.load(Ordering::Relaxed) - 3600).abs() <= 2);
        assert!(!signer.observe(StatusCode::FORBIDDEN, &h), "learned once");
    }

    #[test]
    fn a_model_id_is_one_path_segment_on_the_regional_host() {
        let p = provider();
        let u = url(&p, Endpoint::ChatCompletions, "amazon.nova-pro-v1:0", false).expect("url");
        assert_eq!(
            u.as_str(),
            "https://bedrock-runtime.eu-west-3.amazonaws.com/model/amazon.nova-pro-v1:0/converse"
        );
        let arn = "arn:aws:bedrock:eu-west-3:123456789012:inference-profile/eu.anthropic.claude-3-7-sonnet-20250219-v1:0";
        let u = url(&p, Endpoint::ChatCompletions, arn, true).expect("url");
        assert!(
            u.path().starts_with(
                "/model/arn:aws:bedrock:eu-west-3:123456789012:inference-profile%2Feu."
            ) && u.path().ends_with("/converse-stream"),
            "{u}"
        );
        // A model name cannot climb out of its segment.
        let u = url(&p, Endpoint::ChatCompletions, "../../x", false).expect("url");
        assert!(u.path().starts_with("/model/..%2F..%2Fx/"), "{u}");
        assert!(url(&p, Endpoint::Embeddings, "m", false).is_err());
    }
}
