//! Amazon Bedrock upstreams, through Converse: `POST /model/{modelId}/converse` and
//! `/converse-stream` on the region's `bedrock-runtime` host. The model id is one path
//! segment (`:` as sent, `/` of an inference-profile ARN percent-encoded); the answer is
//! translated back by `jusinfer_translate::bedrock`, streams framed in AWS's binary event
//! stream (`http::stream` reads the framing from the content type). Requests carry a
//! Bedrock API key as a bearer token, or are signed with SigV4 ([`SigV4`]).
//!
//! Errors are `{"message": …}` with the error's name in `x-amzn-ErrorType`; the status
//! says enough to map them (MAPPING.md §8.7): 400 `ValidationException`, 403
//! `AccessDenied` / `ExpiredToken` / `UnrecognizedClient` (the gateway's credentials),
//! 404 `ResourceNotFound`, 408 `ModelTimeout`, 424 `ModelError` (retryable), 429
//! `Throttling`, 503 `ServiceUnavailable`.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::SystemTime;

use aws_sigv4::http_request::{sign, SignableBody, SignableRequest, SigningSettings};
use aws_sigv4::sign::v4;
use aws_smithy_runtime_api::client::identity::Identity;
use axum::http::{HeaderName, HeaderValue, StatusCode};

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

/// A Bedrock API key as a bearer token, else SigV4 with the provider's AWS keys.
pub(crate) fn credentials(c: &ProviderConfig) -> Result<Credentials, String> {
    match c
        .bedrock
        .as_ref()
        .and_then(|b| b.keys.as_ref().map(|k| (b, k)))
    {
        None => Credentials::header(c, "authorization", |k| format!("Bearer {k}")),
        Some((b, keys)) => Ok(Credentials::Signer(Arc::new(SigV4 {
            region: b.region.clone(),
            identity: aws_credential_types::Credentials::new(
                keys.access_key_id.clone(),
                keys.secret_access_key.clone(),
                keys.session_token.clone(),
                None,
                "jusinfer-config",
            )
            .into(),
            secrets: [Some(&keys.secret_access_key), keys.session_token.as_ref()]
                .into_iter()
                .flatten()
                .cloned()
                .collect(),
        }))),
    }
}

/// AWS Signature Version 4 over the whole request as it will be sent (method, the encoded
/// path and query, every header it carries, the body's SHA-256), by AWS's `aws-sigv4`:
/// `x-amz-date`, `x-amz-security-token` (temporary keys) and `authorization` added.
struct SigV4 {
    region: String,
    identity: Identity,
    secrets: Vec<String>,
}

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
            let params = v4::SigningParams::builder()
                .identity(&self.identity)
                .region(&self.region)
                .name("bedrock")
                .time(SystemTime::now())
                .settings(SigningSettings::default())
                .build()
                .map_err(|e| failed(e.to_string()))?
                .into();
            let body = req
                .body()
                .and_then(reqwest::Body::as_bytes)
                .unwrap_or_default();
            let headers: Vec<(&str, &str)> = req
                .headers()
                .iter()
                .filter_map(|(k, v)| v.to_str().ok().map(|v| (k.as_str(), v)))
                .collect();
            let signable = SignableRequest::new(
                req.method().as_str(),
                req.url().as_str(),
                headers.into_iter(),
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
