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
    Echo,
}

impl ProviderKind {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Openai => "openai",
            Self::Anthropic => "anthropic",
            Self::OpenaiCompatible => "openai-compatible",
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
}

#[derive(Debug, Clone, Deserialize)]
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

/// The longest timeout a config may set: one week.
pub const MAX_TIMEOUT_SECS: f64 = 7.0 * 86_400.0;

/// Timeouts of one provider, named by the interval they bound.
#[derive(Debug, Clone, Copy)]
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
#[derive(Debug, Clone)]
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
}

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
    /// Things worth telling the operator that do not stop the start.
    pub warnings: Vec<String>,
}

/// Providers detected from the environment when no config names any: (env var, name, kind,
/// base URL).
const ENV_PROVIDERS: &[(&str, &str, ProviderKind, &str)] = &[
    (
        "OPENAI_API_KEY",
        "openai",
        ProviderKind::Openai,
        "https://api.openai.com/v1",
    ),
    (
        "ANTHROPIC_API_KEY",
        "anthropic",
        ProviderKind::Anthropic,
        "https://api.anthropic.com",
    ),
    (
        "TOGETHER_API_KEY",
        "together",
        ProviderKind::OpenaiCompatible,
        "https://api.together.xyz/v1",
    ),
    (
        "FIREWORKS_API_KEY",
        "fireworks",
        ProviderKind::OpenaiCompatible,
        "https://api.fireworks.ai/inference/v1",
    ),
    (
        "GROQ_API_KEY",
        "groq",
        ProviderKind::OpenaiCompatible,
        "https://api.groq.com/openai/v1",
    ),
    (
        "DEEPSEEK_API_KEY",
        "deepseek",
        ProviderKind::OpenaiCompatible,
        "https://api.deepseek.com/v1",
    ),
    (
        "MISTRAL_API_KEY",
        "mistral",
        ProviderKind::OpenaiCompatible,
        "https://api.mistral.ai/v1",
    ),
    (
        "OPENROUTER_API_KEY",
        "openrouter",
        ProviderKind::OpenaiCompatible,
        "https://openrouter.ai/api/v1",
    ),
];

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
    let text = std::fs::read_to_string(path).map_err(|e| {
        ConfigError::new(format!(
            "{}: cannot read the config file: {e}",
            path.display()
        ))
    })?;
    parse(&text, Some(path), &|k| std::env::var(k).ok())
}

/// Parses config text; `env` looks variables up (injected for tests).
pub fn parse(
    text: &str,
    path: Option<&Path>,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Config, ConfigError> {
    let shown = path.map_or_else(|| "<config>".to_owned(), |p| p.display().to_string());
    let expanded = expand_env(text, env)
        .map_err(|(line, msg)| ConfigError::new(format!("{shown}:{line}: {msg}")))?;
    let raw: RawConfig = toml::from_str(&expanded).map_err(|e| {
        let line = e.span().map(|s| line_of(&expanded, s.start)).unwrap_or(0);
        let msg = e.message().trim().to_owned();
        ConfigError::new(format!("{shown}:{line}: {msg}"))
    })?;
    resolve(raw, path, &expanded, env)
}

fn line_of(text: &str, offset: usize) -> usize {
    text[..offset.min(text.len())].matches('\n').count() + 1
}

/// Expands `${VAR}` and `${VAR:-default}`; `$$` is a literal `$`.
fn expand_env(text: &str, env: &dyn Fn(&str) -> Option<String>) -> Result<String, (usize, String)> {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(i) = rest.find('$') {
        out.push_str(&rest[..i]);
        let after = &rest[i + 1..];
        if let Some(stripped) = after.strip_prefix('$') {
            out.push('$');
            rest = stripped;
            continue;
        }
        let Some(body) = after.strip_prefix('{') else {
            out.push('$');
            rest = after;
            continue;
        };
        let line = line_of(text, text.len() - rest.len() + i);
        let Some(end) = body.find('}') else {
            return Err((
                line,
                "unclosed `${` in the config: write `${VAR}` or `${VAR:-default}`".to_owned(),
            ));
        };
        let spec = &body[..end];
        let (name, default) = match spec.split_once(":-") {
            Some((n, d)) => (n, Some(d)),
            None => (spec, None),
        };
        if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
            return Err((
                line,
                format!("`${{{spec}}}` is not a variable name: expected letters, digits and `_`"),
            ));
        }
        match (env(name).filter(|v| !v.is_empty()), default) {
            (Some(v), _) => out.push_str(&v),
            (None, Some(d)) => out.push_str(d),
            (None, None) => {}
        }
        rest = &body[end + 1..];
    }
    out.push_str(rest);
    Ok(out)
}

fn default_base_url(kind: ProviderKind) -> Option<&'static str> {
    match kind {
        ProviderKind::Openai => Some("https://api.openai.com/v1"),
        ProviderKind::Anthropic => Some("https://api.anthropic.com"),
        ProviderKind::OpenaiCompatible | ProviderKind::Echo => None,
    }
}

fn secs(
    v: Option<f64>,
    default: Duration,
    what: &str,
    provider: &str,
) -> Result<Duration, ConfigError> {
    match v {
        None => Ok(default),
        // Bounded so that deadlines computed from them can never overflow a clock.
        Some(s) if s.is_finite() && s > 0.0 && s <= MAX_TIMEOUT_SECS => Ok(Duration::from_secs_f64(s)),
        Some(s) => Err(ConfigError::new(format!(
            "providers.{provider}.timeouts.{what} = {s}: expected a number of seconds above 0 and at most {MAX_TIMEOUT_SECS}"
        ))),
    }
}

/// Finds the line of the first occurrence of `needle` in the source, for error messages.
fn locate_line(source: &str, needle: &str) -> usize {
    source.find(needle).map_or(0, |o| line_of(source, o))
}

fn resolve(
    raw: RawConfig,
    path: Option<&Path>,
    source: &str,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Config, ConfigError> {
    let shown = path.map_or_else(|| "<config>".to_owned(), |p| p.display().to_string());
    let mut warnings = Vec::new();
    let mut providers = Vec::new();
    let mut raw_providers = raw.providers;
    if raw_providers.is_empty() {
        for (var, name, kind, url) in ENV_PROVIDERS {
            if let Some(key) = env(var).filter(|k| !k.is_empty()) {
                raw_providers.insert(
                    (*name).to_owned(),
                    RawProvider {
                        kind: *kind,
                        base_url: Some((*url).to_owned()),
                        api_key: Some(key),
                        models: Vec::new(),
                        headers: IndexMap::new(),
                        timeouts: RawTimeouts::default(),
                        retries: None,
                        default_max_tokens: None,
                        max_tokens: IndexMap::new(),
                    },
                );
            }
        }
    }
    if !raw_providers.values().any(|p| p.kind == ProviderKind::Echo)
        && !raw_providers.contains_key("echo")
    {
        raw_providers.insert(
            "echo".to_owned(),
            RawProvider {
                kind: ProviderKind::Echo,
                base_url: None,
                api_key: None,
                models: vec!["echo".to_owned()],
                headers: IndexMap::new(),
                timeouts: RawTimeouts::default(),
                retries: None,
                default_max_tokens: None,
                max_tokens: IndexMap::new(),
            },
        );
    }
    for (name, p) in raw_providers {
        if name.is_empty() || name.contains('/') {
            return Err(ConfigError::new(format!(
                "{shown}:{}: provider name {name:?} must be non-empty and contain no `/`",
                locate_line(source, &format!("[providers.{name}]"))
            )));
        }
        let base_url = match (p.base_url.as_deref(), default_base_url(p.kind), p.kind) {
            (Some(u), _, _) => u.trim_end_matches('/').to_owned(),
            (None, Some(d), _) => d.to_owned(),
            (None, None, ProviderKind::Echo) => String::new(),
            (None, None, _) => {
                return Err(ConfigError::new(format!(
                    "{shown}:{}: providers.{name} (kind {}) needs base_url, e.g. \"http://127.0.0.1:8000/v1\"",
                    locate_line(source, &format!("[providers.{name}]")),
                    p.kind.as_str()
                )))
            }
        };
        if !(base_url.is_empty()
            || base_url.starts_with("http://")
            || base_url.starts_with("https://"))
        {
            return Err(ConfigError::new(format!(
                "{shown}:{}: providers.{name}.base_url = {base_url:?}: expected an http:// or https:// URL",
                locate_line(source, &base_url)
            )));
        }
        let api_key = p.api_key.filter(|k| !k.is_empty());
        if api_key.is_none() && p.kind == ProviderKind::Openai {
            warnings.push(format!(
                "providers.{name} has no api_key: its requests will be sent without credentials"
            ));
        }
        let d = Timeouts::default();
        let timeouts = Timeouts {
            connect: secs(p.timeouts.connect, d.connect, "connect", &name)?,
            first_byte: secs(p.timeouts.first_byte, d.first_byte, "first_byte", &name)?,
            idle: secs(p.timeouts.idle, d.idle, "idle", &name)?,
            total: secs(p.timeouts.total, d.total, "total", &name)?,
        };
        providers.push(ProviderConfig {
            name,
            kind: p.kind,
            base_url,
            api_key,
            models: p.models,
            headers: p.headers.into_iter().collect(),
            timeouts,
            retries: p.retries.unwrap_or(0),
            default_max_tokens: p.default_max_tokens.unwrap_or(DEFAULT_MAX_TOKENS),
            max_tokens: p.max_tokens,
        });
    }
    let mut models = Vec::new();
    for (i, m) in raw.models.into_iter().enumerate() {
        if m.route.is_empty() {
            return Err(ConfigError::new(format!(
                "{shown}:{}: models[{i}] ({}) has an empty route: list at least one \"provider/model\"",
                locate_line(source, &format!("\"{}\"", m.name)),
                m.name
            )));
        }
        let mut route = Vec::new();
        for entry in &m.route {
            let line = locate_line(source, &format!("\"{entry}\""));
            let Some((prov, model)) = entry.split_once('/') else {
                return Err(ConfigError::new(format!(
                    "{shown}:{line}: models[{i}].route entry {entry:?}: expected \"provider/model\""
                )));
            };
            if !providers.iter().any(|p| p.name == prov) {
                let known: Vec<&str> = providers.iter().map(|p| p.name.as_str()).collect();
                return Err(ConfigError::new(format!(
                    "{shown}:{line}: models[{i}].route entry {entry:?} names unknown provider {prov:?}; expected one of: {}",
                    known.join(", ")
                )));
            }
            route.push((prov.to_owned(), model.to_owned()));
        }
        if models.iter().any(|a: &ModelAlias| a.name == m.name) {
            return Err(ConfigError::new(format!(
                "{shown}:{}: model alias {:?} is defined twice",
                locate_line(source, &format!("\"{}\"", m.name)),
                m.name
            )));
        }
        let strategy = m.strategy.unwrap_or(Strategy::Fallback);
        if strategy != Strategy::Fallback {
            warnings.push(format!(
                "models.{}: strategy {:?} is not implemented yet; routing in fallback order",
                m.name, strategy
            ));
        }
        models.push(ModelAlias {
            name: m.name,
            route,
            strategy,
        });
    }
    Ok(Config {
        source: path.map(Path::to_path_buf),
        listen: raw.listen.unwrap_or_else(|| DEFAULT_LISTEN.to_owned()),
        database: raw.database.unwrap_or_else(|| DEFAULT_DATABASE.to_owned()),
        redis: raw.redis,
        auth: raw.auth.unwrap_or(AuthMode::Keys),
        max_body_bytes: raw.max_body_bytes.unwrap_or(DEFAULT_MAX_BODY_BYTES),
        providers,
        models,
        prices: raw.prices,
        warnings,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(k: &str) -> Option<String> {
        match k {
            "SIM_KEY" => Some("sk-test".to_owned()),
            _ => None,
        }
    }

    fn p(text: &str) -> Result<Config, ConfigError> {
        parse(text, Some(Path::new("j.toml")), &env)
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
}
