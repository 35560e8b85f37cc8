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
use crate::pricing::Prices;
use crate::routing;
use crate::store::Store;
use crate::upstream::Provider;

/// Everything a handler needs; cheap to clone.
#[derive(Clone)]
pub struct AppState {
    pub(crate) config: Arc<Config>,
    pub(crate) router: Arc<routing::Router>,
    pub(crate) store: Store,
    /// `None` when `auth = "none"`.
    pub(crate) keys: Option<KeyChecker>,
    pub(crate) prices: Arc<Prices>,
    pub(crate) ledger: Ledger,
    /// Stored Responses (`/v1/responses`), group-committed.
    pub(crate) responses: crate::store::ResponseWriter,
    pub(crate) limits: Limits,
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
    /// Builds the state, connecting to Redis when `redis` is set.
    pub async fn new(config: Config, store: Store) -> Result<Self, String> {
        let providers = config
            .providers
            .iter()
            .cloned()
            .map(|p| Provider::new(p).map(Arc::new))
            .collect::<Result<Vec<_>, _>>()?;
        let prices = Arc::new(config.providers.iter().fold(
            Prices::new(&config.prices),
            |prices, p| match &p.azure {
                Some(a) => prices.with_deployments(&p.name, &a.deployments),
                None => prices,
            },
        ));
        let health = HealthBook::new(config.breaker);
        let router = routing::Router::new(&config, providers, &prices, health.clone());
        let keys = (config.auth == AuthMode::Keys).then(|| KeyChecker::new(store.clone()));
        let redis = match &config.redis {
            Some(url) => {
                let (r, client) = RedisLimits::connect(url).await?;
                if let Some(k) = &keys {
                    let k = k.clone();
                    crate::limits::redis::watch_key_changes(client, move |hash| k.evict(hash));
                }
                Some(r)
            }
            None => None,
        };
        let limits = Limits::new(store.clone(), redis.clone());
        let (ledger, _writer) = Ledger::start(
            store.clone(),
            spill_path(&config.database),
            Arc::clone(&prices),
        );
        let responses = crate::store::ResponseWriter::start(store.clone());
        crate::retention::start(store.clone(), config.retention);
        Ok(Self {
            config: Arc::new(config),
            router: Arc::new(router),
            responses,
            store,
            keys,
            prices,
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
