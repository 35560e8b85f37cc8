//! Configuration in two steps: [`RawConfig`] is the TOML file as written (validated by serde
//! with `deny_unknown_fields`, no I/O), [`Config`] the resolved runtime form: providers with
//! their defaults filled in, routes checked against the providers that exist.

use std::path::{Path, PathBuf};
use std::time::Duration;

use indexmap::IndexMap;
use serde::Deserialize;

/// Where the built-in defaults listen.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:4000";
/// The embedded default store.
pub const DEFAULT_DATABASE: &str = "sqlite://jusinfer.db";
/// Largest config file read.
pub const MAX_CONFIG_BYTES: u64 = 16 * 1024 * 1024;
/// Largest request body accepted, unless the config says otherwise.
pub const DEFAULT_MAX_BODY_BYTES: usize = 32 * 1024 * 1024;

/// A configuration problem, phrased for the person who has to mend it.
#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub struct ConfigError {
    pub message: String,
}

impl ConfigError {
    fn new(message: impl Into<String>) -> Self {
        Self {
            message: message.into(),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum AuthMode {
    Keys,
    None,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum ProviderKind {
    Openai,
    Anthropic,
    OpenaiCompatible,
    /// Google's Gemini API (AI Studio), natively.
    Gemini,
    /// Google Cloud's Vertex AI: Gemini and Anthropic publisher models.
    Vertex,
    /// Azure OpenAI: OpenAI's models in an Azure resource, by deployment.
    Azure,
    /// Amazon Bedrock: its models through Converse.
    Bedrock,
    Echo,
}

impl ProviderKind {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Openai => "openai",
            Self::Anthropic => "anthropic",
            Self::OpenaiCompatible => "openai-compatible",
            Self::Gemini => "gemini",
            Self::Vertex => "vertex",
            Self::Azure => "azure",
            Self::Bedrock => "bedrock",
            Self::Echo => "echo",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Strategy {
    Fallback,
    Weighted,
    LeastLatency,
    LowestCost,
}

mod env;
mod raw;
mod resolve;
use env::{expand_env, ENV_PROVIDERS};
pub use raw::*;
use resolve::resolve;

/// The longest timeout a config may set: one week.
pub const MAX_TIMEOUT_SECS: f64 = 7.0 * 86_400.0;

/// Timeouts of one provider, named by the interval they bound.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Timeouts {
    /// TCP + TLS connect.
    pub connect: Duration,
    /// From sending the request to the response head (and, for streams, the first event).
    pub first_byte: Duration,
    /// Longest silence between two body chunks.
    pub idle: Duration,
    /// The whole exchange, body included.
    pub total: Duration,
}

impl Default for Timeouts {
    fn default() -> Self {
        Self {
            connect: Duration::from_secs(10),
            first_byte: Duration::from_secs(120),
            idle: Duration::from_secs(120),
            total: Duration::from_secs(600),
        }
    }
}

/// One resolved provider.
#[derive(Clone, PartialEq)]
pub struct ProviderConfig {
    pub name: String,
    pub kind: ProviderKind,
    /// Without a trailing slash.
    pub base_url: String,
    pub api_key: Option<String>,
    pub models: Vec<String>,
    pub headers: Vec<(String, String)>,
    pub timeouts: Timeouts,
    pub retries: u32,
    pub default_max_tokens: u32,
    pub max_tokens: IndexMap<String, u32>,
    /// Serves `/responses` itself (pass-through).
    pub responses: bool,
    /// Anthropic: automatic prompt-cache breakpoints.
    pub auto_cache: bool,
    /// Vertex AI: where its models are (`None` for other kinds).
    pub vertex: Option<VertexConfig>,
    /// Azure OpenAI: its API version and deployments (`None` for other kinds).
    pub azure: Option<AzureConfig>,
    /// Amazon Bedrock: its region (`None` for other kinds).
    pub bedrock: Option<BedrockConfig>,
}

/// An Amazon Bedrock provider's region and, without a Bedrock API key, its AWS keys
/// (`None`: AWS's standard credential chain, from `profile` when named).
#[derive(Debug, Clone, PartialEq)]
pub struct BedrockConfig {
    pub region: String,
    pub keys: Option<AwsKeys>,
    pub profile: Option<String>,
}

/// AWS access keys for SigV4.
#[derive(Clone, PartialEq)]
pub struct AwsKeys {
    pub access_key_id: String,
    pub secret_access_key: String,
    pub session_token: Option<String>,
}

impl std::fmt::Debug for AwsKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the secret or the token.
        f.debug_struct("AwsKeys")
            .field("access_key_id", &self.access_key_id)
            .finish_non_exhaustive()
    }
}

impl std::fmt::Debug for ProviderConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the key or header values (they carry credentials too): names only.
        let headers: Vec<&str> = self.headers.iter().map(|(k, _)| k.as_str()).collect();
        f.debug_struct("ProviderConfig")
            .field("name", &self.name)
            .field("kind", &self.kind)
            .field("base_url", &self.base_url)
            .field("api_key", &self.api_key.as_ref().map(|_| "<redacted>"))
            .field("models", &self.models)
            .field("headers", &headers)
            .field("timeouts", &self.timeouts)
            .field("retries", &self.retries)
            .field("vertex", &self.vertex)
            .field("azure", &self.azure)
            .field("bedrock", &self.bedrock)
            .finish_non_exhaustive()
    }
}

impl ProviderConfig {
    /// The name `model` is called by upstream: an Azure deployment's, else the model's own.
    pub fn deployment_of<'a>(&'a self, model: &'a str) -> &'a str {
        self.azure
            .as_ref()
            .and_then(|a| a.deployments.get(model))
            .map_or(model, String::as_str)
    }
}

/// An Azure OpenAI provider's route, deployments and authentication.
#[derive(Debug, Clone, PartialEq)]
pub struct AzureConfig {
    /// `api-version` of the deployments route; `None`: the `/openai/v1` route.
    pub api_version: Option<String>,
    /// Model name → deployment name (a model not listed is its own deployment).
    pub deployments: IndexMap<String, String>,
    /// Microsoft Entra tokens instead of the `api-key` (`auth = "entra"`).
    pub entra: Option<EntraAuth>,
}

/// The Microsoft Entra credential of an Azure provider.
#[derive(Clone, PartialEq)]
pub enum EntraAuth {
    /// A service principal's client secret.
    ClientSecret {
        tenant_id: String,
        client_id: String,
        secret: String,
    },
    /// A federated token file (AKS workload identity); ids default to the environment's.
    Workload {
        tenant_id: Option<String>,
        client_id: Option<String>,
        token_file: String,
    },
    /// The host's managed identity: system-assigned, or user-assigned by client id.
    ManagedIdentity { client_id: Option<String> },
}

impl std::fmt::Debug for EntraAuth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the secret.
        f.write_str(match self {
            Self::ClientSecret { .. } => "ClientSecret",
            Self::Workload { .. } => "Workload",
            Self::ManagedIdentity { .. } => "ManagedIdentity",
        })
    }
}

/// A Vertex AI provider's project, location and credentials.
#[derive(Debug, Clone, PartialEq)]
pub struct VertexConfig {
    pub project: String,
    pub location: String,
    /// A service-account key file; `None`: application-default credentials.
    pub credentials_file: Option<String>,
}

/// Retries of one deployment (after its first try) before the route moves on.
pub const DEFAULT_RETRIES: u32 = 1;

/// `max_tokens` for Anthropic requests that set none.
pub const DEFAULT_MAX_TOKENS: u32 = 4096;

impl ProviderConfig {
    /// The `max_tokens` default for `model`.
    pub fn max_tokens_for(&self, model: &str) -> u32 {
        self.max_tokens
            .get(model)
            .copied()
            .unwrap_or(self.default_max_tokens)
    }
}

/// One `[[models]]` alias.
#[derive(Debug, Clone)]
pub struct ModelAlias {
    pub name: String,
    /// `(provider, upstream model)` in route order.
    pub route: Vec<(String, String)>,
    pub strategy: Strategy,
    /// One weight per route entry (all 1 unless `weights` says otherwise).
    pub weights: Vec<f64>,
    pub timeouts: RawModelTimeouts,
    /// Automatic prompt-cache breakpoints on its Anthropic deployments.
    pub auto_cache: bool,
    /// Its exact response cache (`None`: off unless the key turns it on).
    pub cache: Option<CachePolicy>,
}

/// Which requests of an alias (or a key) the exact response cache answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum CacheWhen {
    /// Every request.
    Always,
    /// Requests with `temperature` 0.
    Deterministic,
    /// Requests that ask with `x-jusinfer-cache: on`.
    Header,
}

/// How an alias (or a key) caches.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct CachePolicy {
    pub ttl: Duration,
    pub when: CacheWhen,
    /// Every key reads the alias's entries (else each key its own).
    pub shared: bool,
}

/// Where the exact cache keeps entries.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum CacheBackend {
    Store,
    Redis,
}

/// `[cache]`, resolved.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct CacheSettings {
    pub backend: CacheBackend,
    pub ttl: Duration,
    pub max_entries: usize,
    pub max_bytes: usize,
    pub max_entry_bytes: usize,
}

impl CacheSettings {
    /// The policy of a key that turns the cache on for a model with none of its own.
    pub fn key_policy(&self) -> CachePolicy {
        CachePolicy {
            ttl: self.ttl,
            when: CacheWhen::Always,
            shared: false,
        }
    }
}

/// The circuit breaker's settings.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Breaker {
    pub failures: u32,
    pub window: Duration,
    pub cooldown: Duration,
}

impl Default for Breaker {
    fn default() -> Self {
        Self {
            failures: 5,
            window: Duration::from_secs(60),
            cooldown: Duration::from_secs(30),
        }
    }
}

/// How the server protects itself.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ServerLimits {
    pub drain_timeout: Duration,
    pub max_concurrent_requests: usize,
    pub max_concurrent_per_key: Option<usize>,
    pub max_header_bytes: usize,
    pub max_headers: usize,
    pub header_read_timeout: Duration,
    pub body_read_timeout: Duration,
    pub idle_timeout: Duration,
    /// `None`: derived from the open-files limit at start.
    pub max_connections: Option<usize>,
    pub http2_max_concurrent_streams: u32,
    pub hold_output_tokens: u32,
}

impl Default for ServerLimits {
    fn default() -> Self {
        Self {
            drain_timeout: Duration::from_secs(30),
            max_concurrent_requests: 10_000,
            max_concurrent_per_key: None,
            max_header_bytes: 64 * 1024,
            max_headers: 100,
            header_read_timeout: Duration::from_secs(30),
            body_read_timeout: Duration::from_secs(120),
            idle_timeout: Duration::from_secs(60),
            max_connections: None,
            http2_max_concurrent_streams: 128,
            hold_output_tokens: 4096,
        }
    }
}

/// The resolved runtime configuration.
#[derive(Debug, Clone)]
pub struct Config {
    /// The file it came from, if any.
    pub source: Option<PathBuf>,
    pub listen: String,
    pub database: String,
    pub redis: Option<String>,
    pub auth: AuthMode,
    pub max_body_bytes: usize,
    pub providers: Vec<ProviderConfig>,
    pub models: Vec<ModelAlias>,
    pub prices: IndexMap<String, RawPrice>,
    pub breaker: Breaker,
    pub server: ServerLimits,
    pub retention: crate::retention::Retention,
    pub log_bodies: bool,
    /// Commit each request's usage row (store or spill file) before the response's last
    /// byte ([`crate::usage::Commit`]).
    pub ledger_sync: bool,
    /// Reload when the file changes (`crate::reload::watch`).
    pub watch_config: bool,
    /// OpenTelemetry traces (`[tracing]`).
    pub tracing: crate::telemetry::TracingConfig,
    /// The exact response cache's store (`[cache]`).
    pub cache: CacheSettings,
    /// SHA-256 of the file's bytes, lowercase hex ([`digest`]); what a reload compares.
    pub digest: String,
    /// Things worth telling the operator that do not stop the start.
    pub warnings: Vec<String>,
}

/// Which file to read: `--config`, else `$JUSINFER_CONFIG`, else `./jusinfer.toml` if present.
pub fn locate(explicit: Option<&Path>) -> Option<PathBuf> {
    if let Some(p) = explicit {
        return Some(p.to_path_buf());
    }
    if let Some(p) = std::env::var_os("JUSINFER_CONFIG").filter(|p| !p.is_empty()) {
        return Some(PathBuf::from(p));
    }
    let local = PathBuf::from("jusinfer.toml");
    local.exists().then_some(local)
}

/// Reads and resolves the configuration (built-in defaults when `path` is `None`).
pub fn load(path: Option<&Path>) -> Result<Config, ConfigError> {
    let Some(path) = path else {
        return resolve(RawConfig::default(), None, "", &|k| std::env::var(k).ok());
    };
    let big = std::fs::metadata(path).is_ok_and(|m| m.len() > MAX_CONFIG_BYTES);
    if big {
        return Err(ConfigError::new(format!(
            "{}: the config file is larger than {MAX_CONFIG_BYTES} bytes",
            path.display()
        )));
    }
    let text = std::fs::read_to_string(path).map_err(|e| {
        ConfigError::new(format!(
            "{}: cannot read the config file: {e}",
            path.display()
        ))
    })?;
    parse(&text, Some(path), &|k| std::env::var(k).ok())
}

/// SHA-256 of a config file's bytes in lowercase hex: the loaded config's identity
/// (`/readyz`, `GET /admin/config`).
pub fn digest(bytes: &[u8]) -> String {
    crate::keys::hex_sha256(bytes)
}

/// Parses config text; `env` looks variables up (injected for tests).
pub fn parse(
    text: &str,
    path: Option<&Path>,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Config, ConfigError> {
    let shown = path.map_or_else(|| "<config>".to_owned(), |p| p.display().to_string());
    let mut used = Vec::new();
    let expanded = expand_env(text, env, &mut used)
        .map_err(|(line, msg)| ConfigError::new(format!("{shown}:{line}: {msg}")))?;
    // A message may quote a value as expanded: never the environment's secrets (the
    // message reaches logs and the admin API on a reload).
    let secrets: Vec<&str> = used.iter().map(String::as_str).collect();
    let hide = |e: ConfigError| ConfigError::new(crate::error::scrub(&e.message, &secrets));
    let raw: RawConfig = toml::from_str(&expanded)
        .map_err(|e| {
            let line = e.span().map(|s| line_of(&expanded, s.start)).unwrap_or(0);
            let msg = e.message().trim().to_owned();
            ConfigError::new(format!("{shown}:{line}: {msg}"))
        })
        .map_err(hide)?;
    let mut c = resolve(raw, path, &expanded, env).map_err(hide)?;
    c.digest = digest(text.as_bytes());
    Ok(c)
}

fn line_of(text: &str, offset: usize) -> usize {
    text[..offset.min(text.len())].matches('\n').count() + 1
}

fn default_base_url(kind: ProviderKind) -> Option<&'static str> {
    match kind {
        ProviderKind::Openai => Some("https://api.openai.com/v1"),
        ProviderKind::Anthropic => Some("https://api.anthropic.com"),
        ProviderKind::Gemini => Some("https://generativelanguage.googleapis.com/v1beta"),
        // Vertex's host follows its location (`resolve`).
        // Azure's host is the operator's resource.
        ProviderKind::OpenaiCompatible
        | ProviderKind::Vertex
        | ProviderKind::Azure
        | ProviderKind::Bedrock
        | ProviderKind::Echo => None,
    }
}

fn secs(
    v: Option<f64>,
    default: Duration,
    what: &str,
    provider: &str,
) -> Result<Duration, ConfigError> {
    seconds(v, default, &format!("providers.{provider}.timeouts.{what}"))
}

/// A positive number of seconds (at most [`MAX_TIMEOUT_SECS`]) named `path` in messages.
fn seconds(v: Option<f64>, default: Duration, path: &str) -> Result<Duration, ConfigError> {
    match v {
        None => Ok(default),
        // Bounded so that deadlines computed from them can never overflow a clock.
        Some(s) if s.is_finite() && s > 0.0 && s <= MAX_TIMEOUT_SECS => {
            Ok(Duration::from_secs_f64(s))
        }
        Some(s) => Err(ConfigError::new(format!(
            "{path} = {s}: expected a number of seconds above 0 and at most {MAX_TIMEOUT_SECS}"
        ))),
    }
}

/// A count of at least 1 named `path` in messages.
fn count(v: Option<usize>, default: usize, path: &str) -> Result<usize, ConfigError> {
    match v {
        None => Ok(default),
        Some(n) if n >= 1 => Ok(n),
        Some(n) => Err(ConfigError::new(format!(
            "{path} = {n}: expected at least 1"
        ))),
    }
}

impl ModelAlias {
    /// `base` with this alias's overrides applied.
    pub fn timeouts_over(&self, base: Timeouts) -> Timeouts {
        let t = &self.timeouts;
        let pick = |v: Option<f64>, d: Duration| v.map_or(d, Duration::from_secs_f64);
        Timeouts {
            connect: base.connect,
            first_byte: pick(t.first_byte, base.first_byte),
            idle: pick(t.idle, base.idle),
            total: pick(t.total, base.total),
        }
    }
}

/// Finds the line of the first occurrence of `needle` in the source, for error messages.
#[cfg(test)]
mod tests {
    use super::*;

    fn env(k: &str) -> Option<String> {
        match k {
            "SIM_KEY" => Some("sk-test".to_owned()),
            "BAD_URL" => Some("ftp://user:hunter2-secret@host".to_owned()),
            "A_SECRET" => Some("not-a-number-secret".to_owned()),
            _ => None,
        }
    }

    fn p(text: &str) -> Result<Config, ConfigError> {
        parse(text, Some(Path::new("j.toml")), &env)
    }

    #[test]
    fn debug_output_never_shows_keys_or_header_values() {
        let text = r#"
[providers.a]
kind = "openai-compatible"
base_url = "http://127.0.0.1:9/v1"
api_key = "sk-very-secret-1"
headers = { "x-portkey-api-key" = "hdr-secret-2" }
models = ["m1"]

[providers.b]
kind = "bedrock"
region = "us-east-1"
access_key_id = "AKIDEXAMPLE"
secret_access_key = "aws-secret-3"
session_token = "aws-token-4"
"#;
        let c = p(text).expect("valid");
        let raw: RawConfig = toml::from_str(text).expect("raw");
        let shown = format!("{:?} {:?}", c.providers, raw.providers);
        for secret in [
            "sk-very-secret-1",
            "hdr-secret-2",
            "aws-secret-3",
            "aws-token-4",
        ] {
            assert!(!shown.contains(secret), "{secret} in {shown}");
        }
        // What identifies them still shows.
        assert!(shown.contains("x-portkey-api-key") && shown.contains("AKIDEXAMPLE"));
    }

    #[test]
    fn expands_env_and_defaults() {
        let c = p(r#"
[providers.local]
kind = "openai-compatible"
base_url = "${SIM_URL:-http://127.0.0.1:9/v1/}"
api_key = "${SIM_KEY}"
models = ["m1"]
"#)
        .expect("valid");
        let local = c
            .providers
            .iter()
            .find(|p| p.name == "local")
            .expect("local");
        assert_eq!(local.base_url, "http://127.0.0.1:9/v1");
        assert_eq!(local.api_key.as_deref(), Some("sk-test"));
        assert!(
            c.providers.iter().any(|p| p.kind == ProviderKind::Echo),
            "echo always present"
        );
        assert_eq!(c.listen, DEFAULT_LISTEN);
    }

    #[test]
    fn errors_never_quote_what_the_environment_gave() {
        let e = p("[providers.x]\nkind = \"openai\"\nbase_url = \"${BAD_URL}\"\n")
            .expect_err("bad URL");
        assert!(e.message.starts_with("j.toml:3:"), "{}", e.message);
        assert!(!e.message.contains("hunter2"), "{}", e.message);
        let e = p("[providers.x]\nkind = \"openai\"\nretries = \"${A_SECRET}\"\n")
            .expect_err("bad type");
        assert!(e.message.starts_with("j.toml:3:"), "{}", e.message);
        assert!(!e.message.contains("not-a-number-secret"), "{}", e.message);
        assert!(e.message.contains("[redacted]"), "{}", e.message);
    }

    #[test]
    fn unknown_key_names_file_and_line() {
        let e = p("listen = \"127.0.0.1:1\"\n\n[providers.x]\nkind = \"openai\"\nbase_ur = \"http://a\"\n").expect_err("bad");
        assert!(e.message.starts_with("j.toml:5:"), "{}", e.message);
        assert!(e.message.contains("base_ur"), "{}", e.message);
    }

    #[test]
    fn unknown_kind_lists_expected() {
        let e = p("[providers.x]\nkind = \"opena\"\n").expect_err("bad");
        assert!(e.message.starts_with("j.toml:2:"), "{}", e.message);
        assert!(e.message.contains("openai-compatible"), "{}", e.message);
    }

    #[test]
    fn unknown_provider_in_route() {
        let e = p("[[models]]\nname = \"smart\"\nroute = [\"nope/gpt\"]\n").expect_err("bad");
        assert!(e.message.starts_with("j.toml:3:"), "{}", e.message);
        assert!(
            e.message.contains("unknown provider \"nope\""),
            "{}",
            e.message
        );
    }

    #[test]
    fn absurd_timeouts_are_rejected_not_a_panic() {
        for v in ["1e30", "0", "-1", "inf"] {
            let text = format!("[providers.x]\nkind = \"openai\"\ntimeouts = {{ total = {v} }}\n");
            let e = p(&text).expect_err(v);
            assert!(e.message.contains("timeouts.total"), "{v}: {}", e.message);
        }
    }

    #[test]
    fn env_detection_without_providers() {
        let c = parse("", None, &|k| (k == "GROQ_API_KEY").then(|| "g".to_owned())).expect("ok");
        let groq = c
            .providers
            .iter()
            .find(|p| p.name == "groq")
            .expect("groq detected");
        assert_eq!(groq.kind, ProviderKind::OpenaiCompatible);
        assert!(groq.base_url.starts_with("https://"));
    }

    #[test]
    fn azure_from_the_environment_and_from_config() {
        let vars = |k: &str| match k {
            "AZURE_OPENAI_API_KEY" => Some("az-key".to_owned()),
            "AZURE_OPENAI_ENDPOINT" => Some("https://r.openai.azure.com/".to_owned()),
            "OPENAI_API_VERSION" => Some("2024-10-21".to_owned()),
            _ => None,
        };
        let c = parse("", None, &vars).expect("ok");
        let az = c
            .providers
            .iter()
            .find(|p| p.name == "azure")
            .expect("azure detected");
        assert_eq!(az.kind, ProviderKind::Azure);
        assert_eq!(az.base_url, "https://r.openai.azure.com");
        let cfg = az.azure.as_ref().expect("azure settings");
        assert_eq!(cfg.api_version.as_deref(), Some("2024-10-21"));
        // Without the endpoint there is nothing to reach.
        let c = parse("", None, &|k| {
            (k == "AZURE_OPENAI_API_KEY").then(|| "az-key".to_owned())
        })
        .expect("ok");
        assert!(c.providers.iter().all(|p| p.kind != ProviderKind::Azure));

        let c = p(r#"
[providers.az]
kind = "azure"
base_url = "https://r.openai.azure.com/openai/v1/"
api_key = "${SIM_KEY}"
deployments = { "gpt-4o" = "prod-4o" }
"#)
        .expect("valid");
        let az = c.providers.iter().find(|p| p.name == "az").expect("az");
        assert_eq!(
            az.base_url, "https://r.openai.azure.com",
            "API path stripped"
        );
        assert_eq!(az.deployment_of("gpt-4o"), "prod-4o");
        assert_eq!(az.deployment_of("gpt-4.1"), "gpt-4.1");
        assert_eq!(
            az.azure.as_ref().and_then(|a| a.api_version.as_deref()),
            None
        );
    }

    #[test]
    fn aws_keys_come_all_from_the_config_or_all_from_the_chain() {
        let vars = |k: &str| match k {
            "AWS_ACCESS_KEY_ID" => Some("ENVKEY".to_owned()),
            "AWS_SECRET_ACCESS_KEY" => Some("envsecret".to_owned()),
            "AWS_SESSION_TOKEN" => Some("envtoken".to_owned()),
            _ => None,
        };
        let keys = |text: &str| {
            let c = parse(text, None, &vars).expect("valid");
            let p = c.providers.iter().find(|p| p.name == "b").expect("b");
            p.bedrock.as_ref().and_then(|b| b.keys.clone())
        };
        let base = "[providers.b]\nkind = \"bedrock\"\nregion = \"us-east-1\"\n";
        // None configured: AWS's chain reads the environment (and the rest) at run time.
        assert!(keys(base).is_none());
        let k = keys(&format!(
            "{base}access_key_id = \"CFGKEY\"\nsecret_access_key = \"cfgsecret\"\n"
        ))
        .expect("from the config");
        assert_eq!(
            (k.access_key_id.as_str(), k.session_token.as_deref()),
            ("CFGKEY", None),
            "never the environment's session token"
        );
        assert!(!format!("{k:?}").contains("cfgsecret"));
        assert!(keys(&format!("{base}api_key = \"k\"\n")).is_none());
    }

    #[test]
    fn entra_credentials_follow_azure_sdk_variables() {
        let text = "[providers.az]\nkind = \"azure\"\nbase_url = \"https://r.openai.azure.com\"\nauth = \"entra\"\n";
        let entra = |vars: &[(&str, &str)]| {
            let vars: Vec<(String, String)> = vars
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect();
            let c = parse(text, None, &|k| {
                vars.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone())
            })
            .expect("valid");
            let az = c.providers.iter().find(|p| p.name == "az").expect("az");
            az.azure
                .as_ref()
                .and_then(|a| a.entra.clone())
                .expect("entra")
        };
        assert!(matches!(
            entra(&[]),
            EntraAuth::ManagedIdentity { client_id: None }
        ));
        assert!(matches!(
            entra(&[("AZURE_CLIENT_ID", "uami")]),
            EntraAuth::ManagedIdentity { client_id: Some(ref id) } if id == "uami"
        ));
        assert!(matches!(
            entra(&[("AZURE_FEDERATED_TOKEN_FILE", "/var/run/token"), ("AZURE_TENANT_ID", "t")]),
            EntraAuth::Workload { ref token_file, tenant_id: Some(_), .. } if token_file == "/var/run/token"
        ));
        let secret = entra(&[
            ("AZURE_CLIENT_SECRET", "s3cret"),
            ("AZURE_TENANT_ID", "t"),
            ("AZURE_CLIENT_ID", "c"),
            ("AZURE_FEDERATED_TOKEN_FILE", "/var/run/token"),
        ]);
        assert!(matches!(secret, EntraAuth::ClientSecret { ref secret, .. } if secret == "s3cret"));
        assert!(
            !format!("{secret:?}").contains("s3cret"),
            "never in debug output"
        );
    }

    #[test]
    fn strategies_weights_and_model_timeouts() {
        let c = p(r#"
drain_timeout = 5
max_concurrent_per_key = 8
[circuit_breaker]
failures = 2
cooldown = 0.5
[providers.a]
kind = "openai-compatible"
base_url = "http://127.0.0.1:9/v1"
timeouts = { first_byte = 9, idle = 8 }
[[models]]
name = "w"
strategy = "weighted"
route = ["a/x", "a/y"]
weights = [3, 1]
timeouts = { idle = 2 }
"#)
        .expect("valid");
        let w = &c.models[0];
        assert_eq!(w.strategy, Strategy::Weighted);
        assert_eq!(w.weights, vec![3.0, 1.0]);
        let base = c
            .providers
            .iter()
            .find(|p| p.name == "a")
            .expect("a")
            .timeouts;
        let t = w.timeouts_over(base);
        assert_eq!((t.first_byte.as_secs(), t.idle.as_secs()), (9, 2));
        assert_eq!(c.breaker.failures, 2);
        assert_eq!(c.breaker.cooldown, Duration::from_millis(500));
        assert_eq!(c.server.drain_timeout, Duration::from_secs(5));
        assert_eq!(c.server.max_concurrent_per_key, Some(8));
        assert!(c.warnings.is_empty(), "{:?}", c.warnings);
    }

    #[test]
    fn bad_routing_settings_are_rejected() {
        let base = "[providers.a]\nkind = \"openai\"\n[[models]]\nname = \"m\"\nroute = [\"a/x\", \"a/y\"]\n";
        for (extra, needle) in [
            ("weights = [1]\n", "2 route entries"),
            ("weights = [0, 0]\n", "not all 0"),
            ("weights = [1, -1]\n", "at least 0"),
            ("timeouts = { connect = 1 }\n", "unknown field `connect`"),
            ("timeouts = { idle = 0 }\n", "models[0].timeouts.idle"),
            ("strategy = \"fastest\"\n", "least-latency"),
        ] {
            let e = p(&format!("{base}{extra}")).expect_err(extra);
            assert!(e.message.contains(needle), "{extra}: {}", e.message);
        }
        for (top, needle) in [
            ("drain_timeout = 0\n", "drain_timeout"),
            ("max_concurrent_requests = 0\n", "max_concurrent_requests"),
            (
                "[circuit_breaker]\nfailures = 0\n",
                "circuit_breaker.failures",
            ),
        ] {
            let e = p(top).expect_err(top);
            assert!(e.message.contains(needle), "{top}: {}", e.message);
        }
    }
}
