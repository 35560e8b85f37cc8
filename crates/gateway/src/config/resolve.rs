//! From the file's raw shape to a checked [`Config`]: every value validated, defaults
//! applied, mistakes reported with the file and line. One function per section.

use std::path::Path;
use std::time::Duration;

use indexmap::IndexMap;

use super::*;

/// Where the configuration came from, to name the file and line of a mistake.
struct Source<'a> {
    shown: String,
    text: &'a str,
}

impl Source<'_> {
    fn line(&self, needle: &str) -> usize {
        self.text.find(needle).map_or(0, |o| line_of(self.text, o))
    }
}

pub(super) fn resolve(
    raw: RawConfig,
    path: Option<&Path>,
    source: &str,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Config, ConfigError> {
    let src = Source {
        shown: path.map_or_else(|| "<config>".to_owned(), |p| p.display().to_string()),
        text: source,
    };
    let mut warnings = Vec::new();
    let breaker = breaker(&raw.circuit_breaker)?;
    let server = server_limits(&raw)?;
    let retention = retention(&raw)?;
    let tracing = tracing(&raw.tracing, &src)?;
    let cache = cache(&raw.cache, raw.redis.is_some(), &src)?;
    let raw_providers = with_implicit_providers(raw.providers, env);
    let providers = providers(raw_providers, &src, &mut warnings, env)?;
    let models = models(raw.models, &providers, &src, &mut warnings, &cache)?;
    Ok(Config {
        retention,
        source: path.map(Path::to_path_buf),
        listen: raw.listen.unwrap_or_else(|| DEFAULT_LISTEN.to_owned()),
        database: raw.database.unwrap_or_else(|| DEFAULT_DATABASE.to_owned()),
        redis: raw.redis,
        auth: raw.auth.unwrap_or(AuthMode::Keys),
        max_body_bytes: raw.max_body_bytes.unwrap_or(DEFAULT_MAX_BODY_BYTES),
        providers,
        models,
        prices: raw.prices,
        breaker,
        server,
        log_bodies: raw.log_bodies.unwrap_or(false),
        ledger_sync: raw.ledger_sync.unwrap_or(false),
        watch_config: raw.watch_config.unwrap_or(false),
        tracing,
        cache,
        digest: digest(b""),
        warnings,
    })
}

/// A provider as the file would declare it, with nothing but its kind, URL, key and models.
fn implicit(
    kind: ProviderKind,
    base_url: Option<String>,
    api_key: Option<String>,
    models: Vec<String>,
) -> RawProvider {
    RawProvider {
        kind,
        base_url,
        api_key,
        models,
        headers: IndexMap::new(),
        timeouts: RawTimeouts::default(),
        retries: None,
        default_max_tokens: None,
        max_tokens: IndexMap::new(),
        responses: false,
        auto_cache: false,
        project: None,
        location: None,
        credentials_file: None,
        api_version: None,
        deployments: IndexMap::new(),
        auth: None,
        tenant_id: None,
        client_id: None,
        client_secret: None,
        region: None,
        access_key_id: None,
        secret_access_key: None,
        session_token: None,
        aws_profile: None,
    }
}

/// The file's providers; with none, those the environment's API keys name; and `echo`
/// unless the file has one.
fn with_implicit_providers(
    mut raw_providers: IndexMap<String, RawProvider>,
    env: &dyn Fn(&str) -> Option<String>,
) -> IndexMap<String, RawProvider> {
    if raw_providers.is_empty() {
        for (var, name, kind, url) in ENV_PROVIDERS {
            if let Some(key) = env(var).filter(|k| !k.is_empty()) {
                let p = implicit(*kind, Some((*url).to_owned()), Some(key), Vec::new());
                raw_providers.insert((*name).to_owned(), p);
            }
        }
        // Azure needs its resource's endpoint beside the key (the names Azure's own SDKs
        // read); `OPENAI_API_VERSION` picks the deployments route, as in those SDKs.
        if let (Some(key), Some(endpoint)) = (
            env("AZURE_OPENAI_API_KEY").filter(|k| !k.is_empty()),
            env("AZURE_OPENAI_ENDPOINT").filter(|k| !k.is_empty()),
        ) {
            let mut p = implicit(ProviderKind::Azure, Some(endpoint), Some(key), Vec::new());
            p.api_version = env("OPENAI_API_VERSION").filter(|v| !v.is_empty());
            raw_providers.insert("azure".to_owned(), p);
        }
        // A Bedrock API key (the variable AWS's SDKs read) and a region.
        if let Some(key) = env("AWS_BEARER_TOKEN_BEDROCK").filter(|k| !k.is_empty()) {
            let mut p = implicit(ProviderKind::Bedrock, None, Some(key), Vec::new());
            p.region = env("AWS_REGION")
                .or_else(|| env("AWS_DEFAULT_REGION"))
                .filter(|r| !r.is_empty());
            if p.region.is_some() {
                raw_providers.insert("bedrock".to_owned(), p);
            }
        }
    }
    if !raw_providers.values().any(|p| p.kind == ProviderKind::Echo)
        && !raw_providers.contains_key("echo")
    {
        let echo = implicit(ProviderKind::Echo, None, None, vec!["echo".to_owned()]);
        raw_providers.insert("echo".to_owned(), echo);
    }
    raw_providers
}

fn providers(
    raw_providers: IndexMap<String, RawProvider>,
    src: &Source<'_>,
    warnings: &mut Vec<String>,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Vec<ProviderConfig>, ConfigError> {
    let shown = &src.shown;
    let mut providers = Vec::new();
    for (name, p) in raw_providers {
        if name.is_empty() || name.contains('/') {
            return Err(ConfigError::new(format!(
                "{shown}:{}: provider name {name:?} must be non-empty and contain no `/`",
                src.line(&format!("[providers.{name}]"))
            )));
        }
        let vertex = match p.kind {
            ProviderKind::Vertex => Some(vertex_config(&name, &p, src)?),
            _ => None,
        };
        let azure = match p.kind {
            ProviderKind::Azure => Some(azure_config(&name, &p, src, env)?),
            _ => None,
        };
        let bedrock = match p.kind {
            ProviderKind::Bedrock => Some(bedrock_config(&name, &p, src, env)?),
            _ => None,
        };
        // Settings of one kind only: named when set on another.
        let (aws, az) = (
            (ProviderKind::Bedrock, "an Amazon Bedrock"),
            (ProviderKind::Azure, "an Azure OpenAI"),
        );
        for (field, set, (owner, label)) in [
            ("region", p.region.is_some(), aws),
            ("access_key_id", p.access_key_id.is_some(), aws),
            ("secret_access_key", p.secret_access_key.is_some(), aws),
            ("session_token", p.session_token.is_some(), aws),
            ("api_version", p.api_version.is_some(), az),
            ("deployments", !p.deployments.is_empty(), az),
            ("auth", p.auth.is_some(), az),
            ("tenant_id", p.tenant_id.is_some(), az),
            ("client_id", p.client_id.is_some(), az),
            ("client_secret", p.client_secret.is_some(), az),
        ] {
            if set && p.kind != owner {
                return Err(ConfigError::new(format!(
                    "{shown}:{}: providers.{name}.{field} is {label} setting (kind {} has none)",
                    src.line(field),
                    p.kind.as_str()
                )));
            }
        }
        let base_url = match (p.base_url.as_deref(), default_base_url(p.kind), p.kind) {
            // Azure's endpoint as its portal shows it, with or without the API path.
            (Some(u), _, ProviderKind::Azure) => {
                let u = u.trim_end_matches('/');
                let u = u.strip_suffix("/openai/v1").unwrap_or(u);
                u.strip_suffix("/openai").unwrap_or(u).to_owned()
            }
            (Some(u), _, _) => u.trim_end_matches('/').to_owned(),
            (None, Some(d), _) => d.to_owned(),
            (None, None, ProviderKind::Echo) => String::new(),
            (None, None, ProviderKind::Vertex) => match vertex.as_ref().map(|v| v.location.as_str()) {
                Some("global") | None => "https://aiplatform.googleapis.com/v1".to_owned(),
                Some(region) => format!("https://{region}-aiplatform.googleapis.com/v1"),
            },
            (None, None, ProviderKind::Bedrock) => format!(
                "https://bedrock-runtime.{}.amazonaws.com",
                bedrock.as_ref().map_or("us-east-1", |b| b.region.as_str())
            ),
            (None, None, ProviderKind::Azure) => {
                return Err(ConfigError::new(format!(
                    "{shown}:{}: providers.{name} (kind azure) needs base_url, the resource's endpoint, e.g. \"https://my-resource.openai.azure.com\"",
                    src.line(&format!("[providers.{name}]")),
                )))
            }
            (None, None, _) => {
                return Err(ConfigError::new(format!(
                    "{shown}:{}: providers.{name} (kind {}) needs base_url, e.g. \"http://127.0.0.1:8000/v1\"",
                    src.line(&format!("[providers.{name}]")),
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
                src.line(&base_url)
            )));
        }
        if p.responses
            && !matches!(
                p.kind,
                ProviderKind::Openai | ProviderKind::OpenaiCompatible | ProviderKind::Azure
            )
        {
            return Err(ConfigError::new(format!(
                "{shown}:{}: providers.{name}.responses = true needs kind openai, openai-compatible or azure (kind {} has no Responses API; requests are translated)",
                src.line(&format!("[providers.{name}]")),
                p.kind.as_str()
            )));
        }
        let api_key = p.api_key.filter(|k| !k.is_empty());
        let entra = azure.as_ref().is_some_and(|a| a.entra.is_some());
        if api_key.is_some() && entra {
            return Err(ConfigError::new(format!(
                "{shown}:{}: providers.{name} has both api_key and auth = \"entra\": choose one",
                src.line("auth")
            )));
        }
        if api_key.is_none()
            && !entra
            && matches!(p.kind, ProviderKind::Openai | ProviderKind::Azure)
        {
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
            retries: p.retries.unwrap_or(DEFAULT_RETRIES),
            default_max_tokens: p.default_max_tokens.unwrap_or(DEFAULT_MAX_TOKENS),
            max_tokens: p.max_tokens,
            responses: p.responses,
            auto_cache: p.auto_cache,
            vertex,
            azure,
            bedrock,
        });
    }
    Ok(providers)
}

/// A Vertex provider's project (required), location and credentials file.
fn vertex_config(
    name: &str,
    p: &RawProvider,
    src: &Source<'_>,
) -> Result<VertexConfig, ConfigError> {
    let shown = &src.shown;
    let line = src.line(&format!("[providers.{name}]"));
    let plain = |s: &str| {
        !s.is_empty()
            && s.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    };
    let project = p.project.clone().filter(|s| plain(s)).ok_or_else(|| {
        ConfigError::new(format!(
            "{shown}:{line}: providers.{name} (kind vertex) needs project = \"<Google Cloud project id>\""
        ))
    })?;
    let location = p.location.clone().unwrap_or_else(|| "global".to_owned());
    if !plain(&location) {
        return Err(ConfigError::new(format!(
            "{shown}:{line}: providers.{name}.location = {location:?}: expected a region such as \"us-east5\", or \"global\""
        )));
    }
    Ok(VertexConfig {
        project,
        location,
        credentials_file: p.credentials_file.clone(),
    })
}

/// A Bedrock provider's region and credentials: a Bedrock API key (`api_key`), else AWS
/// keys for SigV4 from its settings, else AWS's standard credential chain (environment,
/// `aws_profile` or `AWS_PROFILE`, SSO, web identity, ECS, instance metadata) at run time.
fn bedrock_config(
    name: &str,
    p: &RawProvider,
    src: &Source<'_>,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<BedrockConfig, ConfigError> {
    let shown = &src.shown;
    let line = src.line(&format!("[providers.{name}]"));
    let region = p
        .region
        .clone()
        .or_else(|| env("AWS_REGION"))
        .or_else(|| env("AWS_DEFAULT_REGION"))
        .filter(|r| !r.is_empty())
        .ok_or_else(|| {
            ConfigError::new(format!(
                "{shown}:{line}: providers.{name} (kind bedrock) needs region = \"us-east-1\" (or AWS_REGION)"
            ))
        })?;
    if !region
        .bytes()
        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        || region.len() > 32
    {
        return Err(ConfigError::new(format!(
            "{shown}:{}: providers.{name}.region = {region:?}: expected a region such as \"us-east-1\"",
            src.line("region")
        )));
    }
    let configured =
        p.access_key_id.is_some() || p.secret_access_key.is_some() || p.session_token.is_some();
    let has_key = p.api_key.as_deref().is_some_and(|k| !k.is_empty());
    let profile = p.aws_profile.clone().filter(|p| !p.is_empty());
    if [has_key, configured, profile.is_some()]
        .iter()
        .filter(|x| **x)
        .count()
        > 1
    {
        return Err(ConfigError::new(format!(
            "{shown}:{line}: providers.{name} has more than one of api_key, AWS keys and aws_profile: choose one"
        )));
    }
    // Configured keys are used as a set, never with the environment's session token.
    let nonempty = |v: &Option<String>| v.clone().filter(|v| !v.is_empty());
    let keys = if configured {
        match (nonempty(&p.access_key_id), nonempty(&p.secret_access_key)) {
            (Some(access_key_id), Some(secret_access_key)) => Some(AwsKeys {
                access_key_id,
                secret_access_key,
                session_token: nonempty(&p.session_token),
            }),
            _ => {
                return Err(ConfigError::new(format!(
                    "{shown}:{line}: providers.{name} (kind bedrock) needs credentials: both access_key_id and secret_access_key (or neither, for AWS's standard credential chain)"
                )))
            }
        }
    } else {
        None
    };
    Ok(BedrockConfig {
        region,
        keys,
        profile,
    })
}

/// An Azure provider's route (`api_version`), deployments and authentication.
fn azure_config(
    name: &str,
    p: &RawProvider,
    src: &Source<'_>,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<AzureConfig, ConfigError> {
    let shown = &src.shown;
    let entra = match p.auth.as_deref() {
        None | Some("api-key") => None,
        Some("entra") => Some(entra_config(name, p, src, env)?),
        Some(other) => {
            return Err(ConfigError::new(format!(
                "{shown}:{}: providers.{name}.auth = {other:?}: expected \"api-key\" or \"entra\"",
                src.line("auth")
            )))
        }
    };
    // Versions are dates with an optional `-preview` (`2024-10-21`, `2025-03-01-preview`):
    // anything else would not be a query value Azure knows.
    let version_ok = |v: &str| {
        !v.is_empty() && v.len() <= 32 && v.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
    };
    if let Some(v) = p.api_version.as_deref().filter(|v| !version_ok(v)) {
        return Err(ConfigError::new(format!(
            "{shown}:{}: providers.{name}.api_version = {v:?}: expected a version such as \"2024-10-21\"",
            src.line("api_version")
        )));
    }
    for (model, deployment) in &p.deployments {
        // A deployment name goes into the URL path as one segment.
        let ok = !deployment.is_empty()
            && deployment.len() <= 64
            && deployment
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'));
        if !ok {
            return Err(ConfigError::new(format!(
                "{shown}:{}: providers.{name}.deployments.{model:?} = {deployment:?}: a deployment name has letters, digits, `-`, `_` and `.` only",
                src.line(deployment)
            )));
        }
    }
    Ok(AzureConfig {
        api_version: p.api_version.clone(),
        deployments: p.deployments.clone(),
        entra,
    })
}

/// Which Microsoft Entra credential an `auth = "entra"` provider uses, from its settings
/// or the variables Azure's own SDKs read: a client secret (service principal), else a
/// federated token file (AKS workload identity), else the managed identity of the host.
fn entra_config(
    name: &str,
    p: &RawProvider,
    src: &Source<'_>,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<EntraAuth, ConfigError> {
    let shown = &src.shown;
    // The identity comes all from the config or all from the environment: a configured
    // managed identity's client id never meets a secret from the environment.
    let configured = p.tenant_id.is_some() || p.client_id.is_some() || p.client_secret.is_some();
    let pick = |set: &Option<String>, var: &str| {
        if configured { set.clone() } else { env(var) }.filter(|v| !v.is_empty())
    };
    let tenant_id = pick(&p.tenant_id, "AZURE_TENANT_ID");
    let client_id = pick(&p.client_id, "AZURE_CLIENT_ID");
    if let Some(secret) = pick(&p.client_secret, "AZURE_CLIENT_SECRET") {
        let (Some(tenant_id), Some(client_id)) = (tenant_id, client_id) else {
            return Err(ConfigError::new(format!(
                "{shown}:{}: providers.{name}: a client secret needs tenant_id and client_id (or AZURE_TENANT_ID and AZURE_CLIENT_ID)",
                src.line("auth")
            )));
        };
        return Ok(EntraAuth::ClientSecret {
            tenant_id,
            client_id,
            secret,
        });
    }
    if let Some(token_file) = env("AZURE_FEDERATED_TOKEN_FILE").filter(|v| !v.is_empty()) {
        return Ok(EntraAuth::Workload {
            tenant_id,
            client_id,
            token_file,
        });
    }
    Ok(EntraAuth::ManagedIdentity { client_id })
}

fn models(
    raw_models: Vec<RawModel>,
    providers: &[ProviderConfig],
    src: &Source<'_>,
    warnings: &mut Vec<String>,
    cache: &CacheSettings,
) -> Result<Vec<ModelAlias>, ConfigError> {
    let shown = &src.shown;
    let mut models = Vec::new();
    for (i, m) in raw_models.into_iter().enumerate() {
        if m.route.is_empty() {
            return Err(ConfigError::new(format!(
                "{shown}:{}: models[{i}] ({}) has an empty route: list at least one \"provider/model\"",
                src.line(&format!("\"{}\"", m.name)),
                m.name
            )));
        }
        let mut route = Vec::new();
        for entry in &m.route {
            let line = src.line(&format!("\"{entry}\""));
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
                src.line(&format!("\"{}\"", m.name)),
                m.name
            )));
        }
        let strategy = m.strategy.unwrap_or(Strategy::Fallback);
        let line = src.line(&format!("\"{}\"", m.name));
        let weights = if m.weights.is_empty() {
            if strategy == Strategy::Weighted {
                warnings.push(format!(
                    "models.{}: strategy weighted without weights: every route entry weighs 1",
                    m.name
                ));
            }
            vec![1.0; route.len()]
        } else if m.weights.len() != route.len() {
            return Err(ConfigError::new(format!(
                "{shown}:{line}: models[{i}] ({}) has {} weights for {} route entries: give one weight per entry",
                m.name,
                m.weights.len(),
                route.len()
            )));
        } else if m.weights.iter().any(|w| !w.is_finite() || *w < 0.0)
            || m.weights.iter().all(|w| *w == 0.0)
        {
            return Err(ConfigError::new(format!(
                "{shown}:{line}: models[{i}] ({}) weights must be finite, at least 0, and not all 0",
                m.name
            )));
        } else {
            m.weights
        };
        let base = format!("models[{i}].timeouts");
        for (what, v) in [
            ("first_byte", m.timeouts.first_byte),
            ("idle", m.timeouts.idle),
            ("total", m.timeouts.total),
        ] {
            seconds(v, Duration::ZERO, &format!("{base}.{what}"))?;
        }
        let cache = if m.cache {
            Some(CachePolicy {
                ttl: seconds(m.cache_ttl, cache.ttl, &format!("models[{i}].cache_ttl"))?,
                when: m.cache_when.unwrap_or(CacheWhen::Always),
                shared: m.cache_shared.unwrap_or(false),
            })
        } else if m.cache_ttl.is_some() || m.cache_when.is_some() || m.cache_shared.is_some() {
            return Err(ConfigError::new(format!(
                "{shown}:{}: models[{i}] ({}) sets cache_ttl, cache_when or cache_shared without cache = true",
                src.line("cache_"),
                m.name
            )));
        } else {
            None
        };
        models.push(ModelAlias {
            name: m.name,
            route,
            strategy,
            weights,
            timeouts: m.timeouts,
            auto_cache: m.auto_cache,
            cache,
        });
    }
    Ok(models)
}

fn breaker(raw: &RawBreaker) -> Result<Breaker, ConfigError> {
    let b = Breaker::default();
    Ok(Breaker {
        failures: u32::try_from(count(
            raw.failures.map(|n| n as usize),
            b.failures as usize,
            "circuit_breaker.failures",
        )?)
        .unwrap_or(u32::MAX),
        window: seconds(raw.window, b.window, "circuit_breaker.window")?,
        cooldown: seconds(raw.cooldown, b.cooldown, "circuit_breaker.cooldown")?,
    })
}

fn server_limits(raw: &RawConfig) -> Result<ServerLimits, ConfigError> {
    let d = ServerLimits::default();
    Ok(ServerLimits {
        drain_timeout: seconds(raw.drain_timeout, d.drain_timeout, "drain_timeout")?,
        max_concurrent_requests: count(
            raw.max_concurrent_requests,
            d.max_concurrent_requests,
            "max_concurrent_requests",
        )?,
        max_concurrent_per_key: raw
            .max_concurrent_per_key
            .map(|n| count(Some(n), n, "max_concurrent_per_key"))
            .transpose()?,
        // hyper needs room for at least one read buffer of 8 KiB.
        max_header_bytes: count(raw.max_header_bytes, d.max_header_bytes, "max_header_bytes")?
            .max(8192),
        max_headers: count(raw.max_headers, d.max_headers, "max_headers")?,
        header_read_timeout: seconds(
            raw.header_read_timeout,
            d.header_read_timeout,
            "header_read_timeout",
        )?,
        body_read_timeout: seconds(
            raw.body_read_timeout,
            d.body_read_timeout,
            "body_read_timeout",
        )?,
        idle_timeout: seconds(raw.idle_timeout, d.idle_timeout, "idle_timeout")?,
        max_connections: raw
            .max_connections
            .map(|n| count(Some(n), n, "max_connections"))
            .transpose()?,
        http2_max_concurrent_streams: raw
            .http2_max_concurrent_streams
            .map(|n| count(Some(n as usize), n as usize, "http2_max_concurrent_streams"))
            .transpose()?
            .map_or(d.http2_max_concurrent_streams, |n| {
                u32::try_from(n).unwrap_or(u32::MAX)
            }),
        hold_output_tokens: raw.hold_output_tokens.unwrap_or(d.hold_output_tokens),
    })
}

fn retention(raw: &RawConfig) -> Result<crate::retention::Retention, ConfigError> {
    let days =
        |v: Option<f64>, default: f64, path: &str| -> Result<Option<Duration>, ConfigError> {
            match v.unwrap_or(default) {
                0.0 => Ok(None),
                d if d.is_finite() && d > 0.0 && d <= 36_500.0 => {
                    Ok(Some(Duration::from_secs_f64(d * 86_400.0)))
                }
                d => Err(ConfigError::new(format!(
                    "{path} = {d}: expected a number of days from 0 (keep for ever) to 36500"
                ))),
            }
        };
    Ok(crate::retention::Retention {
        responses: days(raw.responses_ttl_days, 30.0, "responses_ttl_days")?,
        ledger: days(raw.ledger_retention_days, 90.0, "ledger_retention_days")?,
        every: seconds(
            raw.retention_sweep_every,
            Duration::from_secs(600),
            "retention_sweep_every",
        )?,
    })
}

/// `[tracing]`: the endpoint must be an http(s) URL.
fn tracing(
    raw: &super::raw::RawTracing,
    src: &Source<'_>,
) -> Result<crate::telemetry::TracingConfig, ConfigError> {
    if let Some(url) = &raw.otlp_endpoint {
        if !(url.starts_with("http://") || url.starts_with("https://")) {
            return Err(ConfigError::new(format!(
                "{}:{}: tracing.otlp_endpoint: expected an http:// or https:// URL (OTLP over HTTP)",
                src.shown,
                src.line("otlp_endpoint")
            )));
        }
    }
    Ok(crate::telemetry::TracingConfig {
        otlp_endpoint: raw.otlp_endpoint.clone(),
        capture_content: raw.capture_content.unwrap_or(false),
    })
}

/// The most one cached answer may be: entries are read whole into memory.
const MAX_CACHE_ENTRY_BYTES: usize = 64 * 1024 * 1024;

/// `[cache]`: the backend (Redis only with a `redis` URL) and its bounds.
fn cache(raw: &RawCache, redis: bool, src: &Source<'_>) -> Result<CacheSettings, ConfigError> {
    let backend = raw.backend.unwrap_or(if redis {
        CacheBackend::Redis
    } else {
        CacheBackend::Store
    });
    if backend == CacheBackend::Redis && !redis {
        return Err(ConfigError::new(format!(
            "{}:{}: cache.backend = \"redis\" needs the top-level redis URL",
            src.shown,
            src.line("backend")
        )));
    }
    let max_entry_bytes = count(raw.max_entry_bytes, 1024 * 1024, "cache.max_entry_bytes")?;
    if max_entry_bytes > MAX_CACHE_ENTRY_BYTES {
        return Err(ConfigError::new(format!(
            "cache.max_entry_bytes = {max_entry_bytes}: at most {MAX_CACHE_ENTRY_BYTES}"
        )));
    }
    Ok(CacheSettings {
        backend,
        ttl: seconds(raw.ttl, Duration::from_secs(3600), "cache.ttl")?,
        max_entries: count(raw.max_entries, 10_000, "cache.max_entries")?,
        max_bytes: count(raw.max_bytes, 256 * 1024 * 1024, "cache.max_bytes")?,
        max_entry_bytes,
    })
}
