//! Providers: where requests go. Kinds are data ([`ProviderKind`]) plus the code that
//! speaks to each: `openai` (OpenAI and every OpenAI-compatible host) and `echo` (the
//! built-in test provider, §9).

pub mod anthropic;
pub mod echo;
pub mod http;
pub mod messages;
pub mod openai;
pub mod responses;
pub mod schema_sample;

use crate::config::{ProviderConfig, ProviderKind};

/// A configured provider with its HTTP client (connection pool) and endpoint URLs, built
/// once at start so the request path parses no URL.
pub struct Provider {
    pub config: ProviderConfig,
    pub client: reqwest::Client,
    pub chat_url: Option<reqwest::Url>,
    pub embeddings_url: Option<reqwest::Url>,
    /// Anthropic only: `/v1/messages/count_tokens`.
    pub count_tokens_url: Option<reqwest::Url>,
    /// OpenAI-shaped providers with `responses = true`: `/responses`.
    pub responses_url: Option<reqwest::Url>,
}

/// The upstream endpoints the gateway calls.
#[derive(Debug, Clone, Copy)]
pub enum Endpoint {
    /// Chat Completions, or Messages for an `anthropic` provider.
    ChatCompletions,
    Embeddings,
    CountTokens,
    Responses,
}

impl Provider {
    pub fn new(config: ProviderConfig) -> Result<Self, String> {
        let client = reqwest::Client::builder()
            .connect_timeout(config.timeouts.connect)
            .pool_idle_timeout(std::time::Duration::from_secs(90))
            .tcp_nodelay(true)
            .user_agent(concat!("jusinfer/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| format!("provider {}: cannot build an HTTP client: {e}", config.name))?;
        let url = |path: &str| -> Result<Option<reqwest::Url>, String> {
            if config.base_url.is_empty() {
                return Ok(None);
            }
            reqwest::Url::parse(&format!("{}{path}", config.base_url))
                .map(Some)
                .map_err(|e| {
                    format!(
                        "provider {}: base_url {:?}: {e}",
                        config.name,
                        crate::store::redact(&config.base_url)
                    )
                })
        };
        let (chat_url, embeddings_url, count_tokens_url) = match config.kind {
            // Anthropic's base URL is the host; tolerate one that already ends in /v1.
            ProviderKind::Anthropic if config.base_url.ends_with("/v1") => {
                (url("/messages")?, None, url("/messages/count_tokens")?)
            }
            ProviderKind::Anthropic => (
                url("/v1/messages")?,
                None,
                url("/v1/messages/count_tokens")?,
            ),
            _ => (url("/chat/completions")?, url("/embeddings")?, None),
        };
        let responses_url = if config.responses {
            url("/responses")?
        } else {
            None
        };
        Ok(Self {
            config,
            client,
            chat_url,
            embeddings_url,
            count_tokens_url,
            responses_url,
        })
    }

    pub fn url(&self, e: Endpoint) -> Option<&reqwest::Url> {
        match e {
            Endpoint::ChatCompletions => self.chat_url.as_ref(),
            Endpoint::Embeddings => self.embeddings_url.as_ref(),
            Endpoint::CountTokens => self.count_tokens_url.as_ref(),
            Endpoint::Responses => self.responses_url.as_ref(),
        }
    }

    /// The values this provider sends that must never be shown: its key and configured
    /// header values.
    pub fn secrets(&self) -> Vec<&str> {
        let mut v: Vec<&str> = self
            .config
            .headers
            .iter()
            .map(|(_, value)| value.as_str())
            .collect();
        v.extend(self.config.api_key.as_deref());
        v
    }

    pub fn name(&self) -> &str {
        &self.config.name
    }

    pub fn kind(&self) -> ProviderKind {
        self.config.kind
    }
}
