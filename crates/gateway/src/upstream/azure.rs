//! Azure OpenAI upstreams: OpenAI's models behind an Azure resource. They speak Chat
//! Completions (and embeddings, and Responses where configured) with three differences the
//! kind absorbs:
//!
//! - the URL: with `api_version`, the deployments route
//!   (`/openai/deployments/{deployment}/chat/completions?api-version=…`, `/embeddings`);
//!   without, the `/openai/v1/...` route, which takes no version. Responses always goes to
//!   `/openai/v1/responses`. Either way the body's `model` is the deployment's name (routing
//!   maps model names to deployments, `ProviderConfig::deployment_of`);
//! - credentials: the `api-key` header (both routes accept it), or a Microsoft Entra
//!   bearer token (`auth = "entra"`: client secret, workload identity or managed identity,
//!   through `azure_identity`);
//! - content filtering: streams open with a chunk that has no choices, only
//!   `prompt_filter_results` (the Chat stream normalizer drops chunks with nothing a client
//!   reads), choices carry `content_filter_results` (passed through to Chat clients like any
//!   field the gateway does not know, SPEC §4), and a filtered prompt is a 400 whose
//!   `innererror` says which categories tripped ([`map_status`] names them in the message
//!   every inbound dialect shows).

use std::borrow::Cow;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use axum::http::{HeaderValue, StatusCode};
use azure_core::credentials::TokenCredential;
use azure_core::http::headers::Headers;
use azure_core::http::{
    AsyncRawResponse, Body, ClientOptions, HttpClient, Method, Request, Transport,
};
use azure_identity::{
    ClientAssertionCredentialOptions, ClientSecretCredential, ClientSecretCredentialOptions,
    ManagedIdentityCredential, ManagedIdentityCredentialOptions, UserAssignedId,
    WorkloadIdentityCredential, WorkloadIdentityCredentialOptions,
};
use futures_util::StreamExt;

use super::kind::{endpoint_url, Credentials, Signer};
use super::{Endpoint, Provider};
use crate::config::{EntraAuth, ProviderConfig};
use crate::error::GatewayError;

/// Paths joined once at start: every endpoint of the v1 route, and Responses (always on
/// v1, its model in the body). Deployment paths are built per request.
pub(crate) fn path(c: &ProviderConfig, e: Endpoint) -> Option<Cow<'static, str>> {
    let version = c.azure.as_ref().and_then(|a| a.api_version.as_deref());
    match (e, version) {
        (Endpoint::ChatCompletions, None) => Some(Cow::Borrowed("/openai/v1/chat/completions")),
        (Endpoint::Embeddings, None) => Some(Cow::Borrowed("/openai/v1/embeddings")),
        // Responses always on v1: the dated route serves it only from `2025-03-01-preview`
        // (docs), older than most configured versions; v1 takes the same key.
        (Endpoint::Responses, _) if c.responses => Some(Cow::Borrowed("/openai/v1/responses")),
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

/// The `api-key` header, or with `auth = "entra"` a Microsoft Entra token on every request.
pub(crate) fn credentials(c: &ProviderConfig) -> Result<Credentials, String> {
    match c.azure.as_ref().and_then(|a| a.entra.as_ref()) {
        None => Credentials::header(c, "api-key", str::to_owned),
        Some(auth) => Ok(Credentials::Signer(Arc::new(EntraToken::new(c, auth)?))),
    }
}

const MAX_TOKEN_ANSWER: usize = 64 * 1024;

/// The audience of Azure OpenAI's tokens.
const ENTRA_SCOPE: &str = "https://cognitiveservices.azure.com/.default";

/// Microsoft Entra access tokens from `azure_identity`, which caches each until shortly
/// before it expires and then fetches the next; the fetch goes through our own HTTP client
/// ([`EntraHttp`]).
struct EntraToken {
    provider: String,
    credential: Arc<dyn TokenCredential>,
    secret: Option<String>,
}

impl EntraToken {
    fn new(c: &ProviderConfig, auth: &EntraAuth) -> Result<Self, String> {
        let http = reqwest::Client::builder()
            .connect_timeout(c.timeouts.connect)
            .timeout(std::time::Duration::from_secs(30))
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|e| format!("provider {}: cannot build an HTTP client: {e}", c.name))?;
        let client_options = || ClientOptions {
            transport: Some(Transport::new(Arc::new(EntraHttp(http.clone())))),
            ..ClientOptions::default()
        };
        let failed = |e: azure_core::Error| format!("provider {}: Entra credential: {e}", c.name);
        let (credential, secret): (Arc<dyn TokenCredential>, _) = match auth {
            EntraAuth::ClientSecret {
                tenant_id,
                client_id,
                secret,
            } => (
                ClientSecretCredential::new(
                    tenant_id,
                    client_id.clone(),
                    secret.clone().into(),
                    Some(ClientSecretCredentialOptions {
                        client_options: client_options(),
                    }),
                )
                .map_err(failed)?,
                Some(secret.clone()),
            ),
            EntraAuth::Workload {
                tenant_id,
                client_id,
                token_file,
            } => (
                WorkloadIdentityCredential::new(Some(WorkloadIdentityCredentialOptions {
                    credential_options: ClientAssertionCredentialOptions {
                        client_options: client_options(),
                    },
                    client_id: client_id.clone(),
                    tenant_id: tenant_id.clone(),
                    token_file_path: Some(token_file.into()),
                }))
                .map_err(failed)?,
                None,
            ),
            EntraAuth::ManagedIdentity { client_id } => (
                ManagedIdentityCredential::new(Some(ManagedIdentityCredentialOptions {
                    user_assigned_id: client_id.clone().map(UserAssignedId::ClientId),
                    client_options: client_options(),
                }))
                .map_err(failed)?,
                None,
            ),
        };
        Ok(Self {
            provider: c.name.clone(),
            credential,
            secret,
        })
    }
}

impl Signer for EntraToken {
    fn sign<'a>(
        &'a self,
        req: &'a mut reqwest::Request,
    ) -> Pin<Box<dyn Future<Output = Result<(), GatewayError>> + Send + 'a>> {
        Box::pin(async move {
            let token = self
                .credential
                .get_token(&[ENTRA_SCOPE], None)
                .await
                .map_err(|e| {
                    // azure_identity's messages name the credential and Entra's answer,
                    // never a secret or a token.
                    GatewayError::upstream(format!(
                        "provider `{}`: no Microsoft Entra token: {e}",
                        self.provider
                    ))
                    .code("upstream_auth_error")
                })?;
            let mut v = HeaderValue::from_str(&format!("Bearer {}", token.token.secret()))
                .map_err(|_| GatewayError::upstream("an access token a header cannot carry"))?;
            v.set_sensitive(true);
            req.headers_mut().insert("authorization", v);
            Ok(())
        })
    }

    fn secrets(&self) -> Vec<String> {
        self.secret.iter().cloned().collect()
    }
}

/// `azure_identity`'s HTTP over the gateway's reqwest (one TLS stack, our timeouts).
#[derive(Debug)]
struct EntraHttp(reqwest::Client);

#[async_trait::async_trait]
impl HttpClient for EntraHttp {
    async fn execute_request(&self, request: &Request) -> azure_core::Result<AsyncRawResponse> {
        use azure_core::error::{Error, ErrorKind};
        let method = match request.method() {
            Method::Get => reqwest::Method::GET,
            Method::Post => reqwest::Method::POST,
            Method::Put => reqwest::Method::PUT,
            Method::Patch => reqwest::Method::PATCH,
            Method::Delete => reqwest::Method::DELETE,
            Method::Head => reqwest::Method::HEAD,
            other => {
                return Err(Error::with_message(
                    ErrorKind::Other,
                    format!("method {other:?} is not used for tokens"),
                ))
            }
        };
        let mut req = self.0.request(method, request.url().as_str());
        for (name, value) in request.headers().iter() {
            req = req.header(name.as_str(), value.as_str());
        }
        let Body::Bytes(body) = request.body() else {
            return Err(Error::with_message(
                ErrorKind::Other,
                "streamed request bodies are not sent",
            ));
        };
        let rsp = req.body(body.clone()).send().await.map_err(|e| {
            let kind = if e.is_connect() {
                ErrorKind::Connection
            } else {
                ErrorKind::Io
            };
            Error::with_error(kind, e, "token request failed")
        })?;
        let status = rsp.status().as_u16();
        let mut headers = Headers::new();
        for (k, v) in rsp.headers() {
            if let Ok(v) = v.to_str() {
                headers.insert(k.as_str().to_owned(), v.to_owned());
            }
        }
        // Token answers are small: read whole, at most 64 KiB (the client's 30 s bound the
        // time).
        let mut body = rsp.bytes_stream();
        let mut buf = bytes::BytesMut::new();
        while let Some(chunk) = body.next().await {
            let chunk = chunk.map_err(|e| Error::with_error(ErrorKind::Io, e, "token answer"))?;
            if buf.len() + chunk.len() > MAX_TOKEN_ANSWER {
                return Err(Error::with_message(
                    ErrorKind::Io,
                    "a token answer over 64 KiB",
                ));
            }
            buf.extend_from_slice(&chunk);
        }
        let bytes = buf.freeze();
        let stream = futures_util::stream::once(async move { Ok(bytes) });
        Ok(AsyncRawResponse::new(
            status.into(),
            headers,
            Box::pin(stream),
        ))
    }
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
            return super::status::model_not_found(format!(
                "provider `{}`: {}",
                p.name(),
                e.message.trim_end()
            ));
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

    fn provider(extra: &str, vars: &[(&str, &str)]) -> ProviderConfig {
        let text = format!(
            "[providers.az]\nkind = \"azure\"\nbase_url = \"https://r.openai.azure.com\"\n{extra}"
        );
        let c = crate::config::parse(&text, None, &|k| {
            vars.iter()
                .find(|(n, _)| *n == k)
                .map(|(_, v)| (*v).to_owned())
        })
        .expect("valid");
        c.providers
            .into_iter()
            .find(|p| p.name == "az")
            .expect("az")
    }

    #[test]
    fn each_credential_is_built_without_network_and_its_secret_is_scrubbed() {
        let c = provider("api_key = \"k\"\n", &[]);
        assert!(matches!(credentials(&c), Ok(Credentials::Header(..))));
        let c = provider(
            "auth = \"entra\"\ntenant_id = \"72f988bf-86f1-41af-91ab-2d7cd011db47\"\nclient_id = \"c\"\nclient_secret = \"s3cret\"\n",
            &[],
        );
        let Ok(Credentials::Signer(s)) = credentials(&c) else {
            panic!("a signer");
        };
        assert_eq!(s.secrets(), ["s3cret"]);
        // Workload identity reads its (Kubernetes-projected) token file at start.
        let file = std::env::temp_dir().join(format!("jusinfer-wi-{}", std::process::id()));
        std::fs::write(&file, "header.payload.signature").expect("temp file");
        let path = file.display().to_string();
        let c = provider(
            "auth = \"entra\"\n",
            &[
                ("AZURE_FEDERATED_TOKEN_FILE", path.as_str()),
                ("AZURE_TENANT_ID", "72f988bf-86f1-41af-91ab-2d7cd011db47"),
                ("AZURE_CLIENT_ID", "c"),
            ],
        );
        assert!(matches!(credentials(&c), Ok(Credentials::Signer(_))));
        let _ = std::fs::remove_file(&file);
        // A tenant id that cannot be one is refused at start.
        let c = provider(
            "auth = \"entra\"\ntenant_id = \"bad/tenant\"\nclient_id = \"c\"\nclient_secret = \"s\"\n",
            &[],
        );
        let Err(e) = credentials(&c) else {
            panic!("refused");
        };
        assert!(e.contains("provider az: Entra credential"), "{e}");
        assert!(!e.contains("\"s\""), "{e}");
    }

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
