//! The exact response cache: a repeated request answered from an earlier answer.
//!
//! - **Which requests**: an alias with `cache = true` (its `cache_when`), or any model for
//!   a key whose `cache` is on; a key with `cache` off never. The client can step around
//!   it (`Cache-Control: no-store`, `x-jusinfer-cache: off`), refresh it (`no-cache`) or
//!   bound an entry's age (`max-age`). See [`plan`].
//! - **The key** ([`cache_key`]): SHA-256 over the endpoint, the scope (the key id, or `*`
//!   for an alias with `cache_shared`), the model, the route's deployments and the body
//!   normalized (object keys sorted; `stream`, `stream_options`, `user`, `metadata` and
//!   `store` left out). A tenant never reads another's answers unless the alias shares.
//! - **What is kept**: the dialect's non-streaming body, whichever way the answer came
//!   (a stream is collected back into one: `jusinfer_translate::replay`), with its usage
//!   and what it cost. Only complete successes; never one over `max_entry_bytes`.
//! - **Replay**: the body, or a stream synthesized from it in the dialect's own shape.
//! - **Where**: the store's `response_cache` table or Redis (`backend`), bounded in entries
//!   and bytes by evicting the oldest; a read is bounded by [`READ_TIMEOUT`] (a slow store
//!   is a miss), and writes go through one task behind a bounded queue (full: dropped).
//!   On the embedded SQLite store, entries read or written lately are also kept in process
//!   (the [`Front`], at most [`FRONT_MAX_BYTES`]): a hit then awaits nothing. Redis and
//!   PostgreSQL are shared by instances, so they are read every time.
//!   The cache-off path reads no store and allocates nothing.

mod entry;
mod fill;
mod redis;

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use axum::body::Bytes;
use axum::http::HeaderMap;
use serde_json::Value;
use sha2::{Digest, Sha256};
use tokio::sync::mpsc;

use crate::auth::Caller;
use crate::config::{CacheBackend, CachePolicy, CacheSettings, CacheWhen};
use crate::reload::LiveCell;
use crate::routing::Deployment;
use crate::store::Store;
use jusinfer_wire::chat::Usage;

use entry::complete;
pub(crate) use entry::{fresh_id, no_cost, replay, usage_of};
pub(crate) use fill::{tee, Fill};

/// The longest a lookup may hold a request: past it the request goes upstream.
pub(crate) const READ_TIMEOUT: Duration = Duration::from_millis(250);
/// Answers waiting for the writer before new ones are dropped.
const QUEUE: usize = 1024;
/// The most bytes of answers held for the cache at once, over all requests (copied as
/// they are sent, or queued for the writer); past it an answer is not cached.
const BUFFER_BUDGET: usize = 256 * 1024 * 1024;
/// The most the in-process front holds, in bytes of entries.
pub(crate) const FRONT_MAX_BYTES: usize = 64 * 1024 * 1024;
/// How often the writer trims the store to its bounds at least (and whenever it may be
/// over them).
const TRIM_EVERY: Duration = Duration::from_secs(1);
/// Body fields that do not change the answer.
const IGNORED: &[&str] = &["stream", "stream_options", "user", "metadata", "store"];

/// How a client dialect's answers are kept and replayed.
pub(crate) struct Codec {
    /// A complete stream (as sent to the client) → the non-streaming body.
    pub collect: fn(&[u8]) -> Option<Value>,
    /// The body → a stream's frames (`true`: the client asked for usage in the stream).
    pub replay: fn(&Value, bool) -> Option<Vec<Bytes>>,
    /// The member holding the answer's id and the prefix of a fresh one: a hit is a new
    /// answer and gets its own id (`None`: the dialect has none, or renews it itself).
    pub fresh_id: Option<(&'static str, &'static str)>,
}

/// What the cache stage decided for one request.
pub(crate) enum Plan {
    /// No cache applies to this alias or key: nothing is said.
    Off,
    /// A cache applies, but not to this request (`x-jusinfer-cache: bypass`).
    Bypass,
    Use(Lookup),
}

/// An entry to read (unless `read` is off) and to fill on a miss.
pub(crate) struct Lookup {
    pub key: String,
    scope: String,
    model: String,
    ttl: Duration,
    /// `Cache-Control: no-cache`: answered upstream, then stored.
    pub read: bool,
    /// `Cache-Control: max-age`: an older entry is a miss.
    max_age: Option<u64>,
    /// Chat streams: the client asked for the usage chunk.
    pub include_usage: bool,
}

/// One kept answer.
#[derive(Clone, serde::Serialize, serde::Deserialize)]
pub(crate) struct Entry {
    pub created_ms: i64,
    pub expires_ms: i64,
    pub provider: Option<String>,
    pub upstream_model: Option<String>,
    pub usage: Usage,
    /// What the answer cost upstream.
    pub cost_usd: Option<f64>,
    pub body: Value,
    /// Its stored size in bytes (the front's weight).
    #[serde(skip)]
    pub weight: usize,
}

/// A hit: the entry and its age.
pub(crate) struct Hit {
    pub entry: Entry,
    pub age_secs: u64,
}

enum Backend {
    Store(Store),
    Redis(redis::RedisCache),
}

/// Entries of the SQLite store read or written lately, by key, weighed in bytes.
type Front = moka::sync::Cache<String, Arc<Entry>>;

/// The cache: its backend, its front and its writer's queue. A clone is one `Arc`
/// (the state, and so the cache, is cloned per request).
#[derive(Clone)]
pub(crate) struct Cache(Arc<Inner>);

struct Inner {
    backend: Backend,
    front: Option<Front>,
    tx: mpsc::Sender<Fill>,
    /// Bumped by every purge: an answer begun before a purge is not stored after it.
    generation: AtomicU64,
    /// Held while an answer is checked and written, and while a purge runs.
    writing: tokio::sync::Mutex<()>,
    /// Bytes of answers held for the cache (copied as they are sent, or queued), at
    /// most [`BUFFER_BUDGET`].
    buffered: AtomicUsize,
}

impl Cache {
    /// The cache on `backend` (Redis: its own connection from `redis`); its writer reads
    /// the bounds from `live` at each write (a reload changes them).
    pub(crate) async fn start(
        backend: CacheBackend,
        store: Store,
        redis: Option<::redis::Client>,
        live: LiveCell,
    ) -> Result<Self, String> {
        let front = (backend == CacheBackend::Store && store.is_sqlite()).then(|| {
            let bytes = live.load().config.cache.max_bytes.min(FRONT_MAX_BYTES);
            moka::sync::Cache::builder()
                .max_capacity(u64::try_from(bytes).unwrap_or(u64::MAX))
                .weigher(|k: &String, e: &Arc<Entry>| {
                    u32::try_from(k.len() + e.weight).unwrap_or(u32::MAX)
                })
                .build()
        });
        let backend = match (backend, redis) {
            (CacheBackend::Redis, Some(c)) => Backend::Redis(redis::RedisCache::connect(c).await?),
            _ => Backend::Store(store),
        };
        let (tx, rx) = mpsc::channel(QUEUE);
        let inner = Arc::new(Inner {
            backend,
            front,
            tx,
            generation: AtomicU64::new(0),
            writing: tokio::sync::Mutex::new(()),
            buffered: AtomicUsize::new(0),
        });
        tokio::spawn(fill::writer(Arc::clone(&inner), rx, live));
        Ok(Self(inner))
    }

    /// The entry for `l`, unless it is missing, expired, older than the client accepts, or
    /// the backend is slow or failing (a miss, logged).
    pub(crate) async fn get(&self, l: &Lookup) -> Option<Hit> {
        let now = now_ms();
        let inner = &*self.0;
        if let Some(front) = &inner.front {
            if let Some(e) = front.get(&l.key) {
                if e.expires_ms > now {
                    return hit(Entry::clone(&e), now, l.max_age);
                }
                front.invalidate(&l.key);
            }
        }
        let generation = inner.generation.load(Ordering::Acquire);
        let read = async {
            match &inner.backend {
                Backend::Store(s) => s.cache_get(&l.key, now).await.map_err(|e| e.to_string()),
                Backend::Redis(r) => r.get(&l.scope, &l.model, &l.key).await,
            }
        };
        let text = match tokio::time::timeout(READ_TIMEOUT, read).await {
            Ok(Ok(Some(t))) => t,
            Ok(Ok(None)) => return None,
            Ok(Err(e)) => {
                tracing::warn!(error = %e, "response cache read failed: answered upstream");
                return None;
            }
            Err(_) => {
                tracing::warn!("response cache read timed out: answered upstream");
                return None;
            }
        };
        let mut entry: Entry = serde_json::from_str(&text).ok()?;
        entry.weight = text.len();
        if let Some(front) = &inner.front {
            front.insert(l.key.clone(), Arc::new(entry.clone()));
            if inner.generation.load(Ordering::Acquire) != generation {
                // A purge ran meanwhile: what was read may be gone from the store.
                front.invalidate(&l.key);
            }
        }
        hit(entry, now, l.max_age)
    }

    /// An answer to fill `l`'s entry with, once it has been sent whole.
    pub(crate) fn fill(&self, l: &Lookup, codec: &'static Codec, stream: bool) -> Fill {
        Fill {
            cache_key: l.key.clone(),
            scope: l.scope.clone(),
            model: l.model.clone(),
            ttl: l.ttl,
            codec,
            stream,
            provider: None,
            upstream_model: None,
            price: None,
            bytes: Vec::new(),
            tap: None,
            seen: None,
            generation: self.0.generation.load(Ordering::Acquire),
            held: 0,
            inner: Arc::clone(&self.0),
        }
    }

    /// Deletes the entries of a key and/or a model (all with neither); how many went.
    /// Answers begun before it are not stored after it (on this instance).
    pub(crate) async fn purge(
        &self,
        key_id: Option<&str>,
        model: Option<&str>,
    ) -> Result<u64, String> {
        let inner = &*self.0;
        let _writing = inner.writing.lock().await;
        inner.generation.fetch_add(1, Ordering::AcqRel);
        if let Some(front) = &inner.front {
            // It only mirrors the store: emptied whole, it refills from the store.
            front.invalidate_all();
        }
        match &inner.backend {
            Backend::Store(s) => s
                .cache_purge(key_id, model)
                .await
                .map_err(|e| e.to_string()),
            Backend::Redis(r) => r.purge(key_id, model).await,
        }
    }

    /// Entries and bytes held now.
    pub(crate) async fn size(&self) -> Result<(i64, i64), String> {
        match &self.0.backend {
            Backend::Store(s) => s.cache_size().await.map_err(|e| e.to_string()),
            Backend::Redis(r) => r.size().await,
        }
    }

    pub(crate) fn backend_name(&self) -> &'static str {
        match &self.0.backend {
            Backend::Store(_) => "store",
            Backend::Redis(_) => "redis",
        }
    }
}

/// `entry` as a hit, unless it is older than the client accepts (`max-age`).
fn hit(entry: Entry, now: i64, max_age: Option<u64>) -> Option<Hit> {
    let age_secs = u64::try_from(now.saturating_sub(entry.created_ms) / 1000).unwrap_or(0);
    if max_age.is_some_and(|m| age_secs > m) {
        return None;
    }
    Some(Hit { entry, age_secs })
}

/// Decides whether and how the cache serves this request. `Off` costs two lookups.
pub(crate) fn plan(
    settings: &CacheSettings,
    alias: Option<&CachePolicy>,
    caller: &Caller,
    (headers, answer_headers): (&HeaderMap, &[&str]),
    target: (&str, &str, &[Deployment]),
    raw: &[u8],
) -> Plan {
    let key = caller.key.as_deref();
    let policy = match (key.and_then(|k| k.cache), alias) {
        (Some(false), _) | (None, None) => return Plan::Off,
        (_, Some(p)) => *p,
        (Some(true), None) => settings.key_policy(),
    };
    let mut read = true;
    let mut max_age = None;
    for d in header_list(headers, "cache-control") {
        match d.split_once('=') {
            None if d.eq_ignore_ascii_case("no-store") => return Plan::Bypass,
            None if d.eq_ignore_ascii_case("no-cache") => read = false,
            Some((k, v)) if k.trim().eq_ignore_ascii_case("max-age") => {
                max_age = v.trim().trim_matches('"').parse::<u64>().ok();
            }
            _ => {}
        }
    }
    let asked = headers
        .get("x-jusinfer-cache")
        .and_then(|v| v.to_str().ok())
        .map(|v| v.trim().to_ascii_lowercase());
    match asked.as_deref() {
        Some("off" | "bypass" | "no") => return Plan::Bypass,
        Some("on" | "yes") => {}
        _ if policy.when == CacheWhen::Header => return Plan::Bypass,
        _ => {}
    }
    let Ok(body) = serde_json::from_slice::<Value>(raw) else {
        return Plan::Bypass;
    };
    if policy.when == CacheWhen::Deterministic && temperature(&body) != Some(0.0) {
        return Plan::Bypass;
    }
    let include_usage = body["stream_options"]["include_usage"].as_bool() == Some(true);
    let scope = if policy.shared {
        "*".to_owned()
    } else {
        key.map(|k| k.id.clone()).unwrap_or_default()
    };
    let (endpoint, model, deployments) = target;
    Plan::Use(Lookup {
        key: cache_key(
            (endpoint, &scope, model),
            deployments,
            (headers, answer_headers),
            &body,
        ),
        scope,
        model: model.to_owned(),
        ttl: policy.ttl,
        read,
        max_age,
        include_usage,
    })
}

/// The comma-separated directives of every `name` header.
fn header_list<'a>(headers: &'a HeaderMap, name: &str) -> impl Iterator<Item = &'a str> {
    headers
        .get_all(name)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(str::trim)
}

/// The sampling temperature, where each dialect keeps it.
fn temperature(body: &Value) -> Option<f64> {
    body.get("temperature")
        .or_else(|| body.get("generationConfig")?.get("temperature"))
        .and_then(Value::as_f64)
}

/// The entry's key: everything that changes the answer, hashed.
fn cache_key(
    (endpoint, scope, model): (&str, &str, &str),
    deployments: &[Deployment],
    (headers, answer_headers): (&HeaderMap, &[&str]),
    body: &Value,
) -> String {
    let mut h = Sha256::new();
    for part in ["jusinfer-cache-1", endpoint, scope, model] {
        h.update(part.len().to_le_bytes());
        h.update(part.as_bytes());
    }
    for name in answer_headers {
        for v in headers.get_all(*name) {
            h.update(name.len().to_le_bytes());
            h.update(name.as_bytes());
            h.update(v.len().to_le_bytes());
            h.update(v.as_bytes());
        }
    }
    // The route as a set: the strategy's order for this request does not matter.
    let mut route: Vec<(&str, &str)> = deployments
        .iter()
        .map(|d| (d.provider.name(), d.upstream_model.as_str()))
        .collect();
    route.sort_unstable();
    for (p, m) in route {
        for part in [p, m] {
            h.update(part.len().to_le_bytes());
            h.update(part.as_bytes());
        }
    }
    canonical(&mut h, body, IGNORED);
    crate::keys::hex(&h.finalize())
}

/// Feeds `v` with object keys sorted and no whitespace, leaving out the top-level fields
/// in `skip` (bounded: the body is already bounded, and serde_json's parser bounds its
/// nesting).
fn canonical(h: &mut Sha256, v: &Value, skip: &[&str]) {
    match v {
        Value::Object(o) => {
            let mut keys: Vec<&String> = o.keys().filter(|k| !skip.contains(&k.as_str())).collect();
            keys.sort_unstable();
            h.update(b"{");
            for k in keys {
                h.update(k.len().to_le_bytes());
                h.update(k.as_bytes());
                canonical(h, &o[k.as_str()], &[]);
            }
            h.update(b"}");
        }
        Value::Array(a) => {
            h.update(b"[");
            for x in a {
                canonical(h, x, &[]);
            }
            h.update(b"]");
        }
        Value::String(s) => {
            h.update(b"s");
            h.update(s.len().to_le_bytes());
            h.update(s.as_bytes());
        }
        Value::Number(n) => {
            h.update(b"n");
            h.update(n.to_string().as_bytes());
            h.update(b";");
        }
        Value::Bool(b) => h.update(if *b { b"t" } else { b"f" }),
        Value::Null => h.update(b"z"),
    }
}

pub(crate) fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

#[cfg(test)]
mod tests;
