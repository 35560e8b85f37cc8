//! Providers: where requests go. Kinds are data ([`ProviderKind`]) plus the code that
//! speaks to each: `openai` (OpenAI and every OpenAI-compatible host) and `echo` (the
//! built-in test provider, §9).

pub mod echo;
pub mod openai;

use crate::config::{ProviderConfig, ProviderKind};

/// A configured provider with its HTTP client (connection pool), built once at start.
pub struct Provider {
    pub config: ProviderConfig,
    pub client: reqwest::Client,
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
        Ok(Self { config, client })
    }

    pub fn name(&self) -> &str {
        &self.config.name
    }

    pub fn kind(&self) -> ProviderKind {
        self.config.kind
    }
}
