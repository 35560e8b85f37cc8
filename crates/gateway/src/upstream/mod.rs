//! Providers: where requests go. Kinds are data ([`ProviderKind`]) plus the code that
//! speaks to each: `openai` (OpenAI and every OpenAI-compatible host) and `echo` (the
//! built-in test provider, §9).

pub(crate) mod anthropic;
pub(crate) mod aws;
pub(crate) mod azure;
pub(crate) mod bedrock;
pub(crate) mod echo;
pub(crate) mod execute;
pub(crate) mod gemini;
pub(crate) mod http;
pub(crate) mod leg;
pub(crate) mod openai;
pub(crate) mod schema_sample;
pub(crate) mod status;
pub(crate) mod vertex;

pub(crate) mod kind;

pub(crate) use kind::{Credentials, Endpoint, Speaks, UpstreamKind};

use crate::config::{ProviderConfig, ProviderKind};
use crate::error::GatewayError;

/// A configured provider with its HTTP client (connection pool), endpoint URLs and
/// credentials, built once at start so the request path parses no URL and builds no
/// header.
pub(crate) struct Provider {
    pub config: ProviderConfig,
    /// Builds every upstream request, sends it where a proxy is configured, and carries
    /// the credential fetchers' HTTP (AWS, Entra).
    pub client: reqwest::Client,
    /// Sends every upstream request when no proxy is configured: hyper's pooled client
    /// directly, without reqwest's layers (~25 µs per request, BENCHMARKS.md).
    pub direct: Option<http::Direct>,
    /// What its kind is, as data.
    pub upstream: &'static UpstreamKind,
    pub credentials: Credentials,
    /// By [`Endpoint`]: generation, embeddings, count_tokens, responses, native Messages.
    urls: [Option<reqwest::Url>; 5],
    /// `base_url` parsed once, for kinds that put the model in the path ([`Self::url_with`]).
    base: Result<reqwest::Url, String>,
    /// Values never shown: the key, configured header values, a signer's secrets.
    secrets: Vec<String>,
}

fn slot(e: Endpoint) -> usize {
    match e {
        Endpoint::ChatCompletions => 0,
        Endpoint::Embeddings => 1,
        Endpoint::CountTokens => 2,
        Endpoint::Responses => 3,
        Endpoint::NativeMessages => 4,
    }
}

impl Provider {
    pub(crate) fn new(config: ProviderConfig) -> Result<Self, String> {
        let client = reqwest::Client::builder()
            .connect_timeout(config.timeouts.connect)
            .pool_idle_timeout(std::time::Duration::from_secs(90))
            .tcp_nodelay(true)
            .user_agent(concat!("jusinfer/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| format!("provider {}: cannot build an HTTP client: {e}", config.name))?;
        let direct = (!http::proxy_in_env()).then(|| http::direct_client(config.timeouts.connect));
        let upstream = UpstreamKind::of(config.kind);
        let mut urls: [Option<reqwest::Url>; 5] = Default::default();
        if !config.base_url.is_empty() {
            for e in [
                Endpoint::ChatCompletions,
                Endpoint::Embeddings,
                Endpoint::CountTokens,
                Endpoint::Responses,
                Endpoint::NativeMessages,
            ] {
                let Some(path) = (upstream.path)(&config, e) else {
                    continue;
                };
                let url =
                    reqwest::Url::parse(&format!("{}{path}", config.base_url)).map_err(|err| {
                        format!(
                            "provider {}: base_url {:?}: {err}",
                            config.name,
                            crate::store::redact(&config.base_url)
                        )
                    })?;
                urls[slot(e)] = Some(url);
            }
        }
        let credentials = (upstream.credentials)(&config)?;
        let mut secrets: Vec<String> = config.headers.iter().map(|(_, v)| v.clone()).collect();
        secrets.extend(config.api_key.clone());
        if let Credentials::Signer(s) = &credentials {
            secrets.extend(s.secrets());
        }
        secrets.retain(|s| !s.is_empty());
        let base = reqwest::Url::parse(&config.base_url).map_err(|e| e.to_string());
        Ok(Self {
            config,
            client,
            direct,
            upstream,
            credentials,
            urls,
            base,
            secrets,
        })
    }

    pub(crate) fn url(&self, e: Endpoint) -> Option<&reqwest::Url> {
        self.urls[slot(e)].as_ref()
    }

    /// The values this provider sends that must never be shown: its key, configured
    /// header values and its signer's secrets.
    pub(crate) fn secrets(&self) -> Vec<&str> {
        self.secrets.iter().map(String::as_str).collect()
    }

    pub(crate) fn name(&self) -> &str {
        &self.config.name
    }

    pub(crate) fn kind(&self) -> ProviderKind {
        self.upstream.kind
    }

    /// The dialect this provider speaks natively (for `model`, where its models differ).
    pub(crate) fn speaks(&self, model: &str) -> Speaks {
        match self.upstream.speaks_for {
            Some(f) => f(model),
            None => self.upstream.speaks,
        }
    }
}

impl Provider {
    /// `base_url` with `segments` appended, each percent-encoded where it must be (a
    /// model name cannot change the path), and `query`: for kinds that name the model in
    /// the path (Gemini, Vertex).
    pub(crate) fn url_with(
        &self,
        segments: &[&str],
        query: Option<&str>,
    ) -> Result<reqwest::Url, GatewayError> {
        let bad_base = |err: &str| {
            GatewayError::internal(format!(
                "provider `{}`: base_url {:?}: {err}",
                self.name(),
                crate::store::redact(&self.config.base_url)
            ))
        };
        let mut url = self.base.clone().map_err(|e| bad_base(&e))?;
        url.path_segments_mut()
            .map_err(|()| bad_base("not a base URL"))?
            .pop_if_empty()
            .extend(segments);
        url.set_query(query);
        Ok(url)
    }
}
