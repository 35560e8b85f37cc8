//! Azure OpenAI upstreams: OpenAI's models behind an Azure resource. They speak Chat
//! Completions (and embeddings, and Responses where configured) with three differences the
//! kind absorbs:
//!
//! - the URL: with `api_version`, the deployments route
//!   (`/openai/deployments/{deployment}/chat/completions?api-version=…`, `/embeddings`;
//!   Responses at `/openai/responses?api-version=…`); without, the `/openai/v1/...` route,
//!   which takes no version. Either way the body's `model` is the deployment's name (routing
//!   maps model names to deployments, `ProviderConfig::deployment_of`);
//! - credentials: the `api-key` header (both routes accept it);
//! - content filtering: streams open with a chunk that has no choices, only
//!   `prompt_filter_results` (the Chat stream normalizer drops chunks with nothing a client
//!   reads), choices carry `content_filter_results` (passed through to Chat clients like any
//!   field the gateway does not know, SPEC §4), and a filtered prompt is a 400 whose
//!   `innererror` says which categories tripped ([`map_status`] names them in the message
//!   every inbound dialect shows).

use std::borrow::Cow;

use axum::http::StatusCode;

use super::kind::{endpoint_url, Credentials};
use super::{Endpoint, Provider};
use crate::config::ProviderConfig;
use crate::error::GatewayError;

/// Paths joined once at start: every endpoint of the v1 route, and Responses of the
/// deployments route (its model is in the body). Deployment paths are built per request.
pub(crate) fn path(c: &ProviderConfig, e: Endpoint) -> Option<Cow<'static, str>> {
    let version = c.azure.as_ref().and_then(|a| a.api_version.as_deref());
    match (e, version) {
        (Endpoint::ChatCompletions, None) => Some(Cow::Borrowed("/openai/v1/chat/completions")),
        (Endpoint::Embeddings, None) => Some(Cow::Borrowed("/openai/v1/embeddings")),
        (Endpoint::Responses, None) if c.responses => Some(Cow::Borrowed("/openai/v1/responses")),
        (Endpoint::Responses, Some(v)) if c.responses => {
            Some(Cow::Owned(format!("/openai/responses?api-version={v}")))
        }
        _ => None,
    }
}

/// The URL of one request: the deployment's on the deployments route, else the one built
/// at start.
pub(crate) fn url(
    p: &Provider,
    e: Endpoint,
    deployment: &str,
    stream: bool,
) -> Result<reqwest::Url, GatewayError> {
    let version = p
        .config
        .azure
        .as_ref()
        .and_then(|a| a.api_version.as_deref());
    let tail: &[&str] = match (e, version) {
        (Endpoint::ChatCompletions, Some(_)) => &["chat", "completions"],
        (Endpoint::Embeddings, Some(_)) => &["embeddings"],
        (Endpoint::CountTokens, _) => {
            return Err(crate::proxy::unsupported(
                p.kind(),
                p.name(),
                "token counts",
            ))
        }
        _ => return endpoint_url(p, e, deployment, stream),
    };
    let mut segments = vec!["openai", "deployments", deployment];
    segments.extend_from_slice(tail);
    let query = version.map(|v| format!("api-version={v}"));
    p.url_with(&segments, query.as_deref())
}

/// The `api-key` header.
pub(crate) fn credentials(c: &ProviderConfig) -> Result<Credentials, String> {
    Credentials::header(c, "api-key", str::to_owned)
}

/// Azure's errors are OpenAI's envelope with `status` and `innererror`: mapped as OpenAI's,
/// with the categories a content filter tripped named in the message (the one detail of
/// `innererror` a client needs to know what to change).
pub(crate) fn map_status(p: &Provider, status: StatusCode, body: &[u8]) -> GatewayError {
    let mut e = super::openai::map_status(p, status, body);
    match e.code.as_deref() {
        Some("content_filter") => {
            if let Some(tripped) = filtered_categories(body) {
                e.message = format!("{} (filtered: {tripped})", e.message.trim_end());
            }
        }
        // A deployment the resource does not have: a 404 on the deployments route, a 400
        // `unknown_model` on v1 (as recorded). Either way the model is not there.
        Some("DeploymentNotFound" | "unknown_model") => {
            e.status = StatusCode::NOT_FOUND;
            e.code = Some("model_not_found".to_owned());
            e.message = format!("provider `{}`: {}", p.name(), e.message.trim_end());
        }
        _ => {}
    }
    e
}

/// `self_harm (medium), violence (high)` from `error.innererror.content_filter_result`
/// (or `content_filter_results`), `None` when nothing is marked filtered.
fn filtered_categories(body: &[u8]) -> Option<String> {
    let v: serde_json::Value = serde_json::from_slice(body).ok()?;
    let inner = &v["error"]["innererror"];
    let result = inner
        .get("content_filter_result")
        .or_else(|| inner.get("content_filter_results"))?
        .as_object()?;
    let tripped: Vec<String> = result
        .iter()
        .filter(|(_, r)| r["filtered"].as_bool() == Some(true))
        .map(|(name, r)| match r["severity"].as_str() {
            Some(sev) => format!("{name} ({sev})"),
            None => name.clone(),
        })
        .take(16)
        .collect();
    (!tripped.is_empty()).then(|| tripped.join(", "))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_recorded_prompt_filter_names_its_category() {
        let fx =
            jusinfer_testkit::fixtures::json("azure/azure_400_content_filter_prompt.exchange.json")
                .expect("fixture");
        let body = fx["response"]["body"].as_str().expect("body");
        assert_eq!(
            filtered_categories(body.as_bytes()).as_deref(),
            Some("self_harm (medium)")
        );
        let responses = jusinfer_testkit::fixtures::json(
            "azure/azure_responses_400_content_filter.exchange.json",
        )
        .expect("fixture");
        let body = responses["response"]["body"].as_str().unwrap_or_default();
        assert_eq!(filtered_categories(body.as_bytes()), None);
    }
}
