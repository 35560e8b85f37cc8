//! The state every handler shares, and what the edge attaches to each request.

use std::sync::Arc;

use dashmap::DashMap;

use crate::config::{AuthMode, Config};
use crate::health::HealthBook;
use crate::keys::KeyChecker;
use crate::ledger::Ledger;
use crate::lifecycle::{Gate, Lifecycle};
use crate::limits::redis::RedisLimits;
use crate::limits::Limits;
use crate::reload::{Live, LiveCell, Overrides, Reloader};
use crate::store::Store;

/// Everything a handler needs; cheap to clone.
#[derive(Clone)]
pub struct AppState {
    /// The loaded configuration and the router built from it, swapped whole by a reload
    /// (`reload.rs`). Read it once per use: `state.live.load()`.
    pub(crate) live: LiveCell,
    pub(crate) reloader: Arc<Reloader>,
    pub(crate) store: Store,
    /// `None` when `auth = "none"`.
    pub(crate) keys: Option<KeyChecker>,
    pub(crate) ledger: Ledger,
    /// Stored Responses (`/v1/responses`), group-committed.
    pub(crate) responses: crate::store::ResponseWriter,
    pub(crate) limits: Limits,
    /// The exact response cache (`cache/`).
    pub(crate) cache: crate::cache::Cache,
    /// Set with `redis`: shared limits and key-change announcements.
    pub(crate) redis: Option<RedisLimits>,
    pub(crate) health: HealthBook,
    pub(crate) life: Lifecycle,
    /// Requests in flight (health, readiness and metrics excepted).
    pub(crate) in_flight: Gate,
    /// Requests in flight per key id.
    pub(crate) per_key: Arc<DashMap<String, Gate>>,
    /// Failed portal sign-ins per client address.
    pub(crate) sign_ins: Arc<crate::conns::Attempts>,
}

impl AppState {
    /// Builds the state, connecting to Redis when `redis` is set. `overrides`: what the
    /// command line set over the file, applied again on every reload.
    pub async fn new(config: Config, store: Store, overrides: Overrides) -> Result<Self, String> {
        let health = HealthBook::new(config.breaker);
        let keys = (config.auth == AuthMode::Keys).then(|| KeyChecker::new(store.clone()));
        let mut redis_client = None;
        let redis = match &config.redis {
            Some(url) => {
                let (r, client) = RedisLimits::connect(url).await?;
                redis_client = Some(client.clone());
                if let Some(k) = &keys {
                    let k = k.clone();
                    crate::limits::redis::watch_key_changes(client, move |hash| k.evict(hash));
                }
                Some(r)
            }
            None => None,
        };
        let limits = Limits::new(store.clone(), redis.clone());
        let spill = spill_path(&config.database);
        let retention = config.retention;
        let cache_backend = config.cache.backend;
        let live = Live::build(config, None, &health, Vec::new())?;
        let (ledger, _writer) = Ledger::start(store.clone(), spill, Arc::clone(&live.prices));
        let responses = crate::store::ResponseWriter::start(store.clone());
        crate::retention::start(store.clone(), retention);
        let m = crate::metrics::get();
        m.config_loaded_at
            .set(i64::try_from(live.loaded.loaded_at).unwrap_or(i64::MAX));
        for result in ["applied", "refused"] {
            m.config_reloads.with_label_values(&[result]);
        }
        let live: LiveCell = Arc::new(arc_swap::ArcSwap::from_pointee(live));
        let cache =
            crate::cache::Cache::start(cache_backend, store.clone(), redis_client, live.clone())
                .await?;
        Ok(Self {
            live,
            cache,
            reloader: Arc::new(Reloader::new(overrides)),
            responses,
            store,
            keys,
            ledger,
            limits,
            redis,
            health,
            life: Lifecycle::default(),
            in_flight: Gate::default(),
            per_key: Arc::new(DashMap::new()),
            sign_ins: Arc::new(crate::conns::Attempts::new(
                crate::portal::SIGN_IN_ATTEMPTS,
                crate::portal::SIGN_IN_WINDOW,
            )),
        })
    }
}

impl AppState {
    /// Starts what reloads the config: `SIGHUP`, and the file watcher under
    /// `watch_config`. Call once, from inside the runtime.
    pub fn reload_on_signals(&self) {
        crate::reload::on_sighup(self.clone());
        if self.live.load().config.watch_config {
            crate::reload::watch(self.clone());
        }
    }

    /// Forgets the key everywhere: this instance's cache, and every other instance's
    /// through Redis (the admin API and the portal both change keys).
    pub async fn announce_key_change(&self, k: &crate::store::KeyRecord) {
        if let Some(checker) = &self.keys {
            checker.evict(&k.hash);
        }
        if let Some(r) = &self.redis {
            r.publish_key_change(&k.hash).await;
        }
    }
}

/// Where ledger rows go while the database is unavailable: beside an SQLite file, else in
/// the working directory.
fn spill_path(database: &str) -> std::path::PathBuf {
    let file = database
        .strip_prefix("sqlite://")
        .or_else(|| database.strip_prefix("sqlite:"));
    match file.map(|f| f.split('?').next().unwrap_or(f)) {
        Some(f) if !f.is_empty() && !f.contains(":memory:") => {
            format!("{f}.usage-spill.jsonl").into()
        }
        _ => "jusinfer-usage-spill.jsonl".into(),
    }
}

/// The request id: the client's `x-request-id` when it sent a sane one; and, under
/// `ledger_sync`, the commit its usage rows are acknowledged through.
#[derive(Clone, Debug)]
pub(crate) struct RequestId(pub String, pub Option<crate::usage::Commit>);

/// What the handler tells the request log (the middleware has no key or model).
#[derive(Clone, Debug, Default)]
pub(crate) struct LogMeta {
    pub key_id: Option<String>,
    pub model: String,
}
