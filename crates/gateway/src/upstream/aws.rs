//! AWS credentials for SigV4 (Bedrock) from AWS's standard chain, by AWS's own
//! `aws-config`: environment variables, the shared config and credentials files (a named
//! profile, SSO, `credential_process`, assumed roles), web identity (EKS service accounts),
//! the ECS container endpoint and EC2 instance metadata. Its HTTP calls (STS, SSO, IMDS,
//! ECS) go through the provider's reqwest client ([`ReqwestHttp`]): no second HTTP stack
//! or TLS library.
//!
//! Credentials are cached and fetched again [`REFRESH_BEFORE`] their expiry, one fetch at a
//! time; while a refresh fails, credentials that have not yet expired are still used, and a
//! failed fetch is not tried again for [`RETRY_AFTER_FAILURE`].
//! They never reach a log (`aws-credential-types` redacts them in `Debug`).

use std::sync::RwLock;
use std::time::{Duration, Instant, SystemTime};

use aws_credential_types::provider::{ProvideCredentials, SharedCredentialsProvider};
use aws_smithy_runtime_api::client::http::{
    HttpClient, HttpConnector, HttpConnectorFuture, HttpConnectorSettings, SharedHttpConnector,
};
use aws_smithy_runtime_api::client::identity::Identity;
use aws_smithy_runtime_api::client::orchestrator::{HttpRequest, HttpResponse};
use aws_smithy_runtime_api::client::result::ConnectorError;
use aws_smithy_runtime_api::client::runtime_components::RuntimeComponents;
use aws_smithy_types::body::SdkBody;
use tokio::sync::{Mutex, OnceCell};

use crate::error::GatewayError;

/// How long before their expiry cached credentials are fetched again (AWS's SDKs use a
/// similar window).
pub(crate) const REFRESH_BEFORE: Duration = Duration::from_secs(5 * 60);

/// The most a credential endpoint's answer may be.
const MAX_ANSWER: usize = 1 << 20;

/// AWS's credential chain for one provider, loaded on first use.
pub(crate) struct Chain {
    provider: String,
    region: String,
    profile: Option<String>,
    client: reqwest::Client,
    source: OnceCell<Option<SharedCredentialsProvider>>,
    /// The last credentials and when they expire (`None`: long-term keys).
    cached: RwLock<Option<(Identity, Option<SystemTime>)>>,
    /// One fetch at a time; the last one's failure, if it failed (no fetch again for
    /// [`RETRY_AFTER_FAILURE`]: requests get that failure, or keys not yet expired).
    refresh: Mutex<Option<(Instant, GatewayError)>>,
}

/// How long a failed fetch is not tried again.
const RETRY_AFTER_FAILURE: Duration = Duration::from_secs(15);

impl Chain {
    pub(crate) fn new(
        provider: &str,
        region: &str,
        profile: Option<String>,
        client: reqwest::Client,
    ) -> Self {
        Self {
            provider: provider.to_owned(),
            region: region.to_owned(),
            profile,
            client,
            source: OnceCell::new(),
            cached: RwLock::new(None),
            refresh: Mutex::new(None),
        }
    }

    /// Cached credentials still good for [`REFRESH_BEFORE`] (or `fresh = false`: not yet
    /// expired).
    fn cached(&self, now: SystemTime, fresh: bool) -> Option<Identity> {
        let guard = self.cached.read().ok()?;
        let (id, expiry) = guard.as_ref()?;
        let margin = if fresh {
            REFRESH_BEFORE
        } else {
            Duration::ZERO
        };
        match expiry {
            Some(e) if *e <= now + margin => None,
            _ => Some(id.clone()),
        }
    }

    /// Credentials to sign with now.
    pub(crate) async fn identity(&self) -> Result<Identity, GatewayError> {
        if let Some(id) = self.cached(SystemTime::now(), true) {
            return Ok(id);
        }
        let mut failed = self.refresh.lock().await;
        // Another request may have fetched them while this one waited.
        if let Some(id) = self.cached(SystemTime::now(), true) {
            return Ok(id);
        }
        let result = match failed.as_ref() {
            // Failed a moment ago: not tried again yet.
            Some((at, e)) if at.elapsed() < RETRY_AFTER_FAILURE => Err(e.clone()),
            _ => self.fetch().await,
        };
        match result {
            Ok(id) => {
                *failed = None;
                Ok(id)
            }
            Err(e) => {
                if failed
                    .as_ref()
                    .is_none_or(|(at, _)| at.elapsed() >= RETRY_AFTER_FAILURE)
                {
                    *failed = Some((Instant::now(), e.clone()));
                }
                // A failed refresh: credentials not yet expired still sign.
                self.cached(SystemTime::now(), false).ok_or(e)
            }
        }
    }

    async fn fetch(&self) -> Result<Identity, GatewayError> {
        let source = self
            .source
            .get_or_init(|| async {
                let mut loader = aws_config::defaults(aws_config::BehaviorVersion::latest())
                    .region(aws_config::Region::new(self.region.clone()))
                    .http_client(ReqwestHttp(self.client.clone()))
                    .sleep_impl(aws_smithy_async::rt::sleep::TokioSleep::new());
                if let Some(p) = &self.profile {
                    loader = loader.profile_name(p);
                }
                loader.load().await.credentials_provider()
            })
            .await;
        let Some(source) = source else {
            return Err(GatewayError::upstream(format!(
                "provider `{}`: AWS's credential chain could not be set up",
                self.provider
            ))
            .code("upstream_auth_error"));
        };
        let creds = source.provide_credentials().await.map_err(|e| {
            // The chain's detail (which may quote a `credential_process`'s output) goes to
            // the log, not to clients.
            tracing::warn!(
                provider = %self.provider,
                error = %aws_smithy_types::error::display::DisplayErrorContext(&e),
                "no AWS credentials from the standard chain"
            );
            GatewayError::upstream(format!(
                "provider `{}`: no AWS credentials from the standard chain (see the gateway's log)",
                self.provider
            ))
            .code("upstream_auth_error")
        })?;
        let expiry = creds.expiry();
        if expiry.is_some_and(|e| e <= SystemTime::now()) {
            return Err(GatewayError::upstream(format!(
                "provider `{}`: the AWS credentials found have expired",
                self.provider
            ))
            .code("upstream_auth_error"));
        }
        let id: Identity = creds.into();
        if let Ok(mut c) = self.cached.write() {
            *c = Some((id.clone(), expiry));
        }
        tracing::debug!(provider = %self.provider, expires = ?expiry, "AWS credentials fetched");
        Ok(id)
    }
}

/// `aws-config`'s HTTP (STS, SSO, IMDS, ECS) through a reqwest client.
#[derive(Debug, Clone)]
struct ReqwestHttp(reqwest::Client);

#[derive(Debug)]
struct ReqwestConnector {
    client: reqwest::Client,
    timeout: Option<Duration>,
}

impl HttpClient for ReqwestHttp {
    fn http_connector(
        &self,
        settings: &HttpConnectorSettings,
        _components: &RuntimeComponents,
    ) -> SharedHttpConnector {
        // IMDS asks for a short connect timeout (it is tried last, and off EC2 nothing
        // answers): the whole exchange gets connect + read.
        let timeout = match (settings.connect_timeout(), settings.read_timeout()) {
            (None, None) => None,
            (c, r) => Some(c.unwrap_or_default() + r.unwrap_or(Duration::from_secs(10))),
        };
        SharedHttpConnector::new(ReqwestConnector {
            client: self.0.clone(),
            timeout,
        })
    }
}

impl HttpConnector for ReqwestConnector {
    fn call(&self, request: HttpRequest) -> HttpConnectorFuture {
        let client = self.client.clone();
        let timeout = self.timeout;
        HttpConnectorFuture::new(async move {
            let bad = |e: String| ConnectorError::other(e.into(), None);
            let method = reqwest::Method::from_bytes(request.method().as_bytes())
                .map_err(|e| bad(e.to_string()))?;
            let mut req = client.request(method, request.uri());
            for (k, v) in request.headers() {
                req = req.header(k, v);
            }
            let body = request
                .body()
                .bytes()
                .map(<[u8]>::to_vec)
                .unwrap_or_default();
            req = req.body(body);
            if let Some(t) = timeout {
                req = req.timeout(t);
            }
            let resp = req.send().await.map_err(|e| {
                if e.is_timeout() {
                    ConnectorError::timeout(e.into())
                } else {
                    ConnectorError::io(e.into())
                }
            })?;
            let status = resp.status().as_u16();
            let headers: Vec<(String, String)> = resp
                .headers()
                .iter()
                .filter_map(|(k, v)| v.to_str().ok().map(|v| (k.to_string(), v.to_owned())))
                .collect();
            let mut resp = resp;
            let mut body = Vec::new();
            while let Some(chunk) = resp
                .chunk()
                .await
                .map_err(|e| ConnectorError::io(e.into()))?
            {
                if body.len() + chunk.len() > MAX_ANSWER {
                    return Err(bad("a credential answer over 1 MiB".to_owned()));
                }
                body.extend_from_slice(&chunk);
            }
            let bytes = bytes::Bytes::from(body);
            let status = status.try_into().map_err(|e| bad(format!("{e}")))?;
            let mut out = HttpResponse::new(status, SdkBody::from(bytes));
            for (k, v) in headers {
                out.headers_mut().append(k, v);
            }
            Ok(out)
        })
    }
}
