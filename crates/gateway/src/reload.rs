//! The configuration a request runs on, and replacing it without a restart: `SIGHUP`,
//! `POST /admin/config/reload`, and (opt-in, `watch_config = true`) the file changing.
//!
//! A [`Live`] snapshot (the resolved config and the router built from it) sits behind one
//! `ArcSwap`. A request resolves its deployments once, and each deployment holds its
//! provider by `Arc`, so a request finishes on the providers, timeouts and route it started
//! with; the next request sees the new snapshot. A reload builds the whole snapshot off the
//! request path and swaps it in one store; providers whose settings did not change are
//! carried over as the same `Arc` (their connection pools, token caches and signers kept).
//!
//! A file that does not parse or resolve is refused with `config check`'s `file:line`
//! message, logged and counted (`jusinfer_config_reloads_total{result="refused"}`); the
//! running config stays. Settings read once at start (`listen`, `database`, …) keep their
//! running values; a change to one is reported as needing a restart, never silently dropped.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use arc_swap::ArcSwap;
use serde::Serialize;

use crate::config::{self, Config};
use crate::health::HealthBook;
use crate::pricing::Prices;
use crate::routing::Router;
use crate::upstream::Provider;

/// Longest a reload may take to read and resolve the file.
const RELOAD_TIMEOUT: Duration = Duration::from_secs(30);
/// How often `watch_config` looks at the file.
const WATCH_EVERY: Duration = Duration::from_secs(1);

/// One loaded configuration: what a request reads, built once per load.
pub(crate) struct Live {
    pub config: Config,
    pub router: Router,
    pub prices: Arc<Prices>,
    pub loaded: Loaded,
}

/// What `/readyz` and `GET /admin/config` say of the loaded configuration.
#[derive(Clone, Debug, Serialize)]
pub(crate) struct Loaded {
    /// SHA-256 of the file's bytes (of nothing when the built-in defaults run).
    pub hash: String,
    /// Seconds since the Unix epoch.
    pub loaded_at: u64,
    /// Settings changed in the file that take effect only after a restart.
    pub restart_required: Vec<&'static str>,
}

/// What the command line set over the file; applied again to every reload.
#[derive(Clone, Debug, Default)]
pub struct Overrides {
    pub listen: Option<String>,
    pub database: Option<String>,
}

impl Overrides {
    pub fn apply(&self, c: &mut Config) {
        if let Some(l) = &self.listen {
            c.listen.clone_from(l);
        }
        if let Some(d) = &self.database {
            c.database.clone_from(d);
        }
    }
}

/// Serializes reloads and remembers the last outcome.
pub(crate) struct Reloader {
    overrides: Overrides,
    /// Held for a whole reload: two triggers at once load one after the other.
    serial: tokio::sync::Mutex<()>,
    last_error: Mutex<Option<String>>,
}

impl Reloader {
    pub(crate) fn new(overrides: Overrides) -> Self {
        Self {
            overrides,
            serial: tokio::sync::Mutex::new(()),
            last_error: Mutex::new(None),
        }
    }

    pub(crate) fn last_error(&self) -> Option<String> {
        self.last_error
            .lock()
            .map(|e| e.clone())
            .unwrap_or_default()
    }

    fn set_last_error(&self, e: Option<String>) {
        if let Ok(mut l) = self.last_error.lock() {
            *l = e;
        }
    }
}

impl Live {
    /// Builds a snapshot; `previous`'s providers are reused where their settings are equal.
    pub(crate) fn build(
        config: Config,
        previous: Option<&Live>,
        health: &HealthBook,
        restart_required: Vec<&'static str>,
    ) -> Result<Self, String> {
        let providers = config
            .providers
            .iter()
            .map(|p| {
                let kept = previous.and_then(|old| {
                    old.router
                        .providers()
                        .iter()
                        .find(|o| o.config == *p)
                        .cloned()
                });
                match kept {
                    Some(k) => Ok(k),
                    None => Provider::new(p.clone()).map(Arc::new),
                }
            })
            .collect::<Result<Vec<_>, _>>()?;
        let prices = Arc::new(config.providers.iter().fold(
            Prices::new(&config.prices),
            |prices, p| match &p.azure {
                Some(a) => prices.with_deployments(&p.name, &a.deployments),
                None => prices,
            },
        ));
        let router = Router::new(&config, providers, Arc::clone(&prices), health.clone());
        let loaded = Loaded {
            hash: config.digest.clone(),
            loaded_at: SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0, |d| d.as_secs()),
            restart_required,
        };
        Ok(Self {
            config,
            router,
            prices,
            loaded,
        })
    }
}

/// The settings read once at start, by their names in the file, with whether two configs
/// differ in each.
fn restart_only(a: &Config, b: &Config) -> Vec<&'static str> {
    let (s, t) = (&a.server, &b.server);
    [
        ("listen", a.listen != b.listen),
        ("database", a.database != b.database),
        ("redis", a.redis != b.redis),
        ("auth", a.auth != b.auth),
        ("max_header_bytes", s.max_header_bytes != t.max_header_bytes),
        ("max_headers", s.max_headers != t.max_headers),
        (
            "header_read_timeout",
            s.header_read_timeout != t.header_read_timeout,
        ),
        ("idle_timeout", s.idle_timeout != t.idle_timeout),
        ("max_connections", s.max_connections != t.max_connections),
        (
            "http2_max_concurrent_streams",
            s.http2_max_concurrent_streams != t.http2_max_concurrent_streams,
        ),
        ("circuit_breaker", a.breaker != b.breaker),
        ("retention", a.retention != b.retention),
        ("watch_config", a.watch_config != b.watch_config),
        ("tracing", a.tracing != b.tracing),
        ("cache.backend", a.cache.backend != b.cache.backend),
    ]
    .into_iter()
    .filter_map(|(name, differs)| differs.then_some(name))
    .collect()
}

/// Gives `new` the running values of every setting read once at start.
fn keep_restart_only(running: &Config, new: &mut Config) {
    new.listen.clone_from(&running.listen);
    new.database.clone_from(&running.database);
    new.redis.clone_from(&running.redis);
    new.auth = running.auth;
    let (s, t) = (&running.server, &mut new.server);
    t.max_header_bytes = s.max_header_bytes;
    t.max_headers = s.max_headers;
    t.header_read_timeout = s.header_read_timeout;
    t.idle_timeout = s.idle_timeout;
    t.max_connections = s.max_connections;
    t.http2_max_concurrent_streams = s.http2_max_concurrent_streams;
    new.breaker = running.breaker;
    new.retention = running.retention;
    new.watch_config = running.watch_config;
    new.tracing.clone_from(&running.tracing);
    new.cache.backend = running.cache.backend;
}

/// Loads the file again and swaps the result in; `trigger` names what asked (logs).
/// On refusal the running config stays and the error (`file:line: …`) is returned.
pub(crate) async fn reload(
    state: &crate::state::AppState,
    trigger: &'static str,
) -> Result<Loaded, String> {
    let r = &state.reloader;
    let _one_at_a_time = r.serial.lock().await;
    let running = state.live.load_full();
    let source = running.config.source.clone();
    let overrides = r.overrides.clone();
    let health = state.health.clone();
    let previous = Arc::clone(&running);
    let build = tokio::task::spawn_blocking(move || {
        let mut new = config::load(source.as_deref()).map_err(|e| e.message)?;
        overrides.apply(&mut new);
        let pending = restart_only(&previous.config, &new);
        keep_restart_only(&previous.config, &mut new);
        let warnings = std::mem::take(&mut new.warnings);
        Live::build(new, Some(&previous), &health, pending).map(|l| (l, warnings))
    });
    // A file on a mount that hangs must not hold reloads up for ever.
    let built = match tokio::time::timeout(RELOAD_TIMEOUT, build).await {
        Ok(joined) => joined.unwrap_or_else(|e| Err(format!("the reload task failed: {e}"))),
        Err(_) => Err(format!(
            "reading and resolving the config took over {} s; the running config stays",
            RELOAD_TIMEOUT.as_secs()
        )),
    };
    let m = crate::metrics::get();
    match built {
        Ok((live, warnings)) => {
            for w in &warnings {
                tracing::warn!("{w}");
            }
            let loaded = live.loaded.clone();
            let kept = live
                .router
                .providers()
                .iter()
                .filter(|p| running.router.providers().iter().any(|o| Arc::ptr_eq(o, p)))
                .count();
            let c = &live.config;
            let configured: std::collections::HashSet<(&str, &str)> = c
                .models
                .iter()
                .flat_map(|a| a.route.iter().map(|(p, m)| (p.as_str(), m.as_str())))
                .chain(
                    c.providers
                        .iter()
                        .flat_map(|p| p.models.iter().map(move |m| (p.name.as_str(), m.as_str()))),
                )
                .collect();
            state
                .health
                .retain_pinned(|p, m| configured.contains(&(p, m)));
            let prices = Arc::clone(&live.prices);
            state.live.store(Arc::new(live));
            state.ledger.set_prices(prices);
            r.set_last_error(None);
            m.config_loaded_at
                .set(i64::try_from(loaded.loaded_at).unwrap_or(i64::MAX));
            m.config_restart_required
                .set(i64::try_from(loaded.restart_required.len()).unwrap_or(i64::MAX));
            tracing::info!(
                trigger,
                hash = %short(&loaded.hash),
                providers_kept = kept,
                "config reloaded"
            );
            for name in &loaded.restart_required {
                tracing::warn!(
                    setting = name,
                    "config reload: `{name}` changed in the file; it takes effect after a restart"
                );
            }
            m.config_reloads.with_label_values(&["applied"]).inc();
            Ok(loaded)
        }
        Err(e) => {
            tracing::error!(
                trigger,
                error = %e,
                "config reload refused; the running config stays"
            );
            r.set_last_error(Some(e.clone()));
            m.config_reloads.with_label_values(&["refused"]).inc();
            Err(e)
        }
    }
}

/// The first 12 hex digits: enough to tell loads apart in a log line.
fn short(hash: &str) -> &str {
    hash.get(..12).unwrap_or(hash)
}

/// Reloads on every `SIGHUP` for the life of the process (Unix).
pub(crate) fn on_sighup(state: crate::state::AppState) {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        let mut hup = match signal(SignalKind::hangup()) {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!(error = %e, "cannot listen for SIGHUP: reload by the admin API only");
                return;
            }
        };
        tokio::spawn(async move {
            while hup.recv().await.is_some() {
                let _ = reload(&state, "SIGHUP").await;
            }
        });
    }
    #[cfg(not(unix))]
    let _ = state;
}

/// `watch_config = true`: looks at the file every second and reloads when its bytes
/// differ from the loaded ones, once its size and modification time have held still for
/// one look (an editor's half-written file is not loaded). Polling rather than inotify:
/// it sees a Kubernetes ConfigMap's symlink swap and files on network mounts alike.
pub(crate) fn watch(state: crate::state::AppState) {
    let Some(path) = state.live.load().config.source.clone() else {
        return;
    };
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(WATCH_EVERY);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut seen = stamp(&path).await;
        // Unsettled at first: an edit made while the gateway was starting is loaded too.
        let mut settled = false;
        loop {
            tick.tick().await;
            let now = stamp(&path).await;
            if now != seen {
                seen = now;
                settled = false;
                continue;
            }
            if settled {
                continue;
            }
            settled = true;
            if seen.is_none_or(|(len, _)| len > config::MAX_CONFIG_BYTES) {
                continue;
            }
            let Ok(bytes) = tokio::fs::read(&path).await else {
                continue;
            };
            if config::digest(&bytes) != state.live.load().loaded.hash {
                let _ = reload(&state, "file changed").await;
            }
        }
    });
}

/// The file's size and modification time (following symlinks), `None` when unreadable.
async fn stamp(path: &PathBuf) -> Option<(u64, SystemTime)> {
    let m = tokio::fs::metadata(path).await.ok()?;
    Some((m.len(), m.modified().ok()?))
}

/// The snapshot store shared by the state.
pub(crate) type LiveCell = Arc<ArcSwap<Live>>;

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Config {
        config::parse(text, None, &|_| None).expect("valid config")
    }

    #[test]
    fn settings_read_at_start_are_reported_and_keep_their_running_values() {
        let running = parse("listen = \"127.0.0.1:1\"\nidle_timeout = 5\nmax_body_bytes = 10\n");
        let mut new = parse(
            "listen = \"127.0.0.1:2\"\nidle_timeout = 6\nmax_body_bytes = 20\n\
             [circuit_breaker]\nfailures = 9\n",
        );
        assert_eq!(
            restart_only(&running, &new),
            ["listen", "idle_timeout", "circuit_breaker"]
        );
        keep_restart_only(&running, &mut new);
        assert_eq!(new.listen, "127.0.0.1:1");
        assert_eq!(new.server.idle_timeout, Duration::from_secs(5));
        assert_eq!(new.breaker, running.breaker);
        // What is read per request takes the new value.
        assert_eq!(new.max_body_bytes, 20);
        assert!(restart_only(&running, &new).is_empty());
    }

    #[test]
    fn unchanged_providers_are_carried_over_and_changed_ones_rebuilt() {
        let text = |retries: u32| {
            format!(
                "[providers.a]\nkind = \"openai-compatible\"\nbase_url = \"http://127.0.0.1:9/v1\"\n\
                 [providers.b]\nkind = \"openai-compatible\"\nbase_url = \"http://127.0.0.1:9/v1\"\n\
                 retries = {retries}\n"
            )
        };
        let health = HealthBook::new(crate::config::Breaker::default());
        let first = Live::build(parse(&text(1)), None, &health, Vec::new()).expect("built");
        let second =
            Live::build(parse(&text(2)), Some(&first), &health, Vec::new()).expect("built");
        let (p1, p2) = (first.router.providers(), second.router.providers());
        assert!(Arc::ptr_eq(&p1[0], &p2[0]), "a: unchanged, kept");
        assert!(!Arc::ptr_eq(&p1[1], &p2[1]), "b: changed, rebuilt");
        assert_eq!(p2[1].config.retries, 2);
    }
}
