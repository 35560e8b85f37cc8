//! The config file as written (TOML, `deny_unknown_fields`); [`super::resolve`] checks it
//! and turns it into a [`super::Config`].

use indexmap::IndexMap;
use serde::Deserialize;

use super::{AuthMode, ProviderKind, Strategy};

/// The file as written.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawConfig {
    pub listen: Option<String>,
    pub database: Option<String>,
    pub redis: Option<String>,
    pub auth: Option<AuthMode>,
    pub max_body_bytes: Option<usize>,
    #[serde(default)]
    pub providers: IndexMap<String, RawProvider>,
    #[serde(default)]
    pub models: Vec<RawModel>,
    #[serde(default)]
    pub prices: IndexMap<String, RawPrice>,
    /// Seconds in-flight requests get to finish after SIGTERM.
    pub drain_timeout: Option<f64>,
    /// Requests in flight at once, over all keys; past it: 503.
    pub max_concurrent_requests: Option<usize>,
    /// Requests in flight at once per key; past it: 503.
    pub max_concurrent_per_key: Option<usize>,
    /// Largest request head (request line + headers) in bytes.
    pub max_header_bytes: Option<usize>,
    /// Most header fields in one request.
    pub max_headers: Option<usize>,
    /// Seconds a client gets to send its whole request head.
    pub header_read_timeout: Option<f64>,
    /// Seconds a client gets to send its whole request body.
    pub body_read_timeout: Option<f64>,
    /// Seconds a keep-alive connection with nothing in flight stays open.
    pub idle_timeout: Option<f64>,
    /// Client connections open at once (default: half the open-files limit).
    pub max_connections: Option<usize>,
    /// Concurrent streams on one HTTP/2 connection.
    pub http2_max_concurrent_streams: Option<u32>,
    /// Output tokens held against budgets and TPM for a request that sets no maximum.
    pub hold_output_tokens: Option<u32>,
    /// Days a stored Response is kept (0: for ever).
    pub responses_ttl_days: Option<f64>,
    /// Days a ledger row is kept; the hourly rollup stays (0: for ever).
    pub ledger_retention_days: Option<f64>,
    /// Seconds between retention sweeps.
    pub retention_sweep_every: Option<f64>,
    /// Commit each request's usage row before its response's last byte.
    pub ledger_sync: Option<bool>,
    /// Log request bodies (prompts): off unless the operator turns it on.
    pub log_bodies: Option<bool>,
    /// Reload when the file changes (besides `SIGHUP` and the admin API).
    pub watch_config: Option<bool>,
    #[serde(default)]
    pub circuit_breaker: RawBreaker,
    #[serde(default)]
    pub tracing: RawTracing,
    #[serde(default)]
    pub cache: RawCache,
}

/// `[cache]`: where the exact response cache keeps its entries and how many (which
/// requests are cached is each alias's and each key's choice).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawCache {
    /// `store` (the database: one file by default) or `redis` (the `redis` URL; every
    /// instance shares it). Default: `redis` when `redis` is set.
    pub backend: Option<super::CacheBackend>,
    /// Seconds an entry lives unless its alias says otherwise.
    pub ttl: Option<f64>,
    /// Entries kept at most; the oldest go first.
    pub max_entries: Option<usize>,
    /// Bytes of answers kept at most, over all entries.
    pub max_bytes: Option<usize>,
    /// Largest answer kept, in bytes; larger ones are not cached.
    pub max_entry_bytes: Option<usize>,
}

/// OpenTelemetry traces (`crate::telemetry`); the `OTEL_*` variables apply too.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawTracing {
    /// The collector's OTLP/HTTP base URL, e.g. `http://127.0.0.1:4318`.
    pub otlp_endpoint: Option<String>,
    /// Record prompts on the request span.
    pub capture_content: Option<bool>,
}

/// The circuit breaker of every deployment.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawBreaker {
    /// Consecutive failures within `window` seconds that open the circuit.
    pub failures: Option<u32>,
    pub window: Option<f64>,
    /// Seconds an open circuit skips its deployment before one probe is let through.
    pub cooldown: Option<f64>,
}

#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawProvider {
    pub kind: ProviderKind,
    pub base_url: Option<String>,
    pub api_key: Option<String>,
    #[serde(default)]
    pub models: Vec<String>,
    #[serde(default)]
    pub headers: IndexMap<String, String>,
    #[serde(default)]
    pub timeouts: RawTimeouts,
    pub retries: Option<u32>,
    /// Anthropic: `max_tokens` when the client sent none.
    pub default_max_tokens: Option<u32>,
    /// Anthropic: per-model `max_tokens` defaults, over `default_max_tokens`.
    #[serde(default)]
    pub max_tokens: IndexMap<String, u32>,
    /// OpenAI-shaped providers that serve `/responses` themselves: `/v1/responses`
    /// requests are passed through instead of translated to Chat Completions.
    #[serde(default)]
    pub responses: bool,
    /// Anthropic: add prompt-cache breakpoints to requests that carry none of their own
    /// (Chat and Responses clients). See `translate::anthropic::cache`.
    #[serde(default)]
    pub auto_cache: bool,
    /// Vertex AI: the Google Cloud project.
    pub project: Option<String>,
    /// Vertex AI: the region (`us-east5`, `europe-west4`, …) or `global` (the default).
    pub location: Option<String>,
    /// Vertex AI: a service-account key file; without one, application-default
    /// credentials (`GOOGLE_APPLICATION_CREDENTIALS`, gcloud's, or the metadata server).
    pub credentials_file: Option<String>,
    /// Azure OpenAI: the `api-version` of the deployments route; omitted, the
    /// `/openai/v1` route (which takes none).
    pub api_version: Option<String>,
    /// Azure OpenAI: model name → deployment name (default: the same name).
    #[serde(default)]
    pub deployments: IndexMap<String, String>,
    /// Azure OpenAI: `"api-key"` (the default) or `"entra"` (Microsoft Entra tokens).
    pub auth: Option<String>,
    /// Azure OpenAI with Entra: the tenant (default `AZURE_TENANT_ID`).
    pub tenant_id: Option<String>,
    /// Azure OpenAI with Entra: the application's, or a user-assigned managed identity's,
    /// client id (default `AZURE_CLIENT_ID`).
    pub client_id: Option<String>,
    /// Azure OpenAI with Entra: a client secret (default `AZURE_CLIENT_SECRET`).
    pub client_secret: Option<String>,
    /// Amazon Bedrock: the AWS region (default `AWS_REGION`, `AWS_DEFAULT_REGION`).
    pub region: Option<String>,
    /// Amazon Bedrock, SigV4: an access key (without one, AWS's standard credential chain:
    /// `AWS_ACCESS_KEY_ID`…, profiles, SSO, web identity, ECS, instance metadata).
    pub access_key_id: Option<String>,
    /// Amazon Bedrock, SigV4: its secret.
    pub secret_access_key: Option<String>,
    /// Amazon Bedrock, SigV4: a session token for temporary keys.
    pub session_token: Option<String>,
    /// Amazon Bedrock, SigV4 from AWS's standard credential chain: the shared config
    /// profile to read (default `AWS_PROFILE`, then `default`).
    pub aws_profile: Option<String>,
}

impl std::fmt::Debug for RawProvider {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never a key, secret, token or header value: the rest of the file says enough.
        f.debug_struct("RawProvider")
            .field("kind", &self.kind)
            .field("base_url", &self.base_url)
            .field("models", &self.models)
            .field("headers", &self.headers.keys().collect::<Vec<_>>())
            .field("region", &self.region)
            .field("access_key_id", &self.access_key_id)
            .finish_non_exhaustive()
    }
}

/// Seconds; fractions allowed.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawTimeouts {
    pub connect: Option<f64>,
    pub first_byte: Option<f64>,
    pub idle: Option<f64>,
    pub total: Option<f64>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawModel {
    pub name: String,
    pub route: Vec<String>,
    pub strategy: Option<Strategy>,
    #[serde(default)]
    pub weights: Vec<f64>,
    /// Overrides the providers' timeouts for this alias (connect stays per provider: it
    /// belongs to the provider's connection pool).
    #[serde(default)]
    pub timeouts: RawModelTimeouts,
    /// Automatic prompt-cache breakpoints on this alias's Anthropic deployments.
    #[serde(default)]
    pub auto_cache: bool,
    /// The exact response cache answers repeated requests of this alias.
    #[serde(default)]
    pub cache: bool,
    /// Seconds its entries live (default: `[cache] ttl`).
    pub cache_ttl: Option<f64>,
    /// Which of its requests are cached (default: `always`).
    pub cache_when: Option<super::CacheWhen>,
    /// Keys share its entries (default: each key reads only its own).
    pub cache_shared: Option<bool>,
}

/// Seconds; fractions allowed.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawModelTimeouts {
    pub first_byte: Option<f64>,
    pub idle: Option<f64>,
    pub total: Option<f64>,
}

#[derive(Debug, Clone, Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct RawPrice {
    pub input: f64,
    pub output: f64,
    /// Cache reads.
    pub cached_input: Option<f64>,
    pub cache_write: Option<f64>,
}
