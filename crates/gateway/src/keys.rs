//! API keys: minting, hashing, and checking a presented key.
//!
//! A key is `jinf_` + 40 base62 characters from the OS random source. Only its SHA-256 is
//! stored, with a display prefix. Checking hashes the presented key, finds the record by
//! hash (cached briefly in memory) and compares the hashes in constant time.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use dashmap::DashMap;
use rand::distributions::{Alphanumeric, DistString};
use rand::rngs::OsRng;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::error::GatewayError;
use crate::store::{now, KeyRecord, Store, StoreError};

pub const KEY_PREFIX: &str = "jinf_";
const KEY_RANDOM_LEN: usize = 40;
const DISPLAY_PREFIX_LEN: usize = 12;
/// How long a looked-up key is trusted before the store is asked again (so a revoke made by
/// another instance takes effect within this time; with `redis` set, changes are announced
/// and take effect at once).
pub const KEY_CACHE_TTL: Duration = Duration::from_secs(2);
/// While the store does not answer, a cached key this young is still honoured (the
/// gateway keeps serving through a brief database outage).
pub const KEY_CACHE_STALE_OK: Duration = Duration::from_secs(600);
/// Entries kept before the cache is cleared wholesale.
const KEY_CACHE_MAX: usize = 100_000;

/// What `keys create` takes.
#[derive(Debug, Clone, Default)]
pub struct NewKey {
    pub name: String,
    pub admin: bool,
    pub budget_usd: Option<f64>,
    pub budget_period: Option<crate::calendar::BudgetPeriod>,
    pub rpm: Option<i64>,
    pub tpm: Option<i64>,
    pub models: Vec<String>,
    pub expires_in: Option<Duration>,
    pub metadata: serde_json::Value,
    /// The exact response cache for the key's requests (`None`: as its aliases say).
    pub cache: Option<bool>,
}

/// A freshly minted key: the secret (shown once) and its record.
#[derive(Debug, Clone)]
pub struct Minted {
    pub key: String,
    pub record: KeyRecord,
}

/// The key's SHA-256 in lowercase hex: what the store keeps and looks keys up by.
pub fn hash_key(key: &str) -> String {
    hex_sha256(key.as_bytes())
}

/// SHA-256 in lowercase hex.
pub(crate) fn hex_sha256(bytes: &[u8]) -> String {
    hex(&Sha256::digest(bytes))
}

/// Bytes in lowercase hex.
pub(crate) fn hex(bytes: &[u8]) -> String {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        s.push(char::from(HEX[usize::from(b >> 4)]));
        s.push(char::from(HEX[usize::from(b & 0xf)]));
    }
    s
}

/// Mints and stores a key.
pub async fn mint(store: &Store, new: NewKey) -> Result<Minted, StoreError> {
    let key = format!(
        "{KEY_PREFIX}{}",
        Alphanumeric.sample_string(&mut OsRng, KEY_RANDOM_LEN)
    );
    // Time-ordered ids (milliseconds in fixed-width base 36, then random), so keys list in
    // the order they were minted on every backend.
    let id = format!(
        "key_{}{}",
        base36_ms(),
        Alphanumeric
            .sample_string(&mut OsRng, 8)
            .to_ascii_lowercase()
    );
    let created = now();
    let record = KeyRecord {
        id,
        name: new.name,
        prefix: key[..DISPLAY_PREFIX_LEN].to_owned(),
        hash: hash_key(&key),
        admin: new.admin,
        created_at: created,
        expires_at: new
            .expires_in
            .map(|d| created.saturating_add(i64::try_from(d.as_secs()).unwrap_or(i64::MAX))),
        revoked_at: None,
        budget_usd: new.budget_usd,
        budget_period: new.budget_period,
        rpm: new.rpm,
        tpm: new.tpm,
        models: new.models,
        metadata: new.metadata,
        cache: new.cache,
    };
    store.insert_key(&record).await?;
    Ok(Minted { key, record })
}

fn base36_ms() -> String {
    let mut ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis());
    let mut digits = [b'0'; 9];
    for d in digits.iter_mut().rev() {
        *d = b"0123456789abcdefghijklmnopqrstuvwxyz"[(ms % 36) as usize];
        ms /= 36;
    }
    String::from_utf8_lossy(&digits).into_owned()
}

/// The largest RPM or TPM a key may have (beyond it a limit means nothing, and Redis's
/// integer counters stay far from overflow).
pub const MAX_LIMIT: i64 = 1 << 40;

/// Checks a key's limits: `Err((field, message))` for the first bad one.
pub fn validate_limits(
    budget_usd: Option<f64>,
    rpm: Option<i64>,
    tpm: Option<i64>,
) -> Result<(), (&'static str, String)> {
    if budget_usd.is_some_and(|b| !b.is_finite() || b < 0.0) {
        return Err((
            "budget_usd",
            "'budget_usd' must be a number of dollars >= 0.".to_owned(),
        ));
    }
    for (name, v) in [("rpm", rpm), ("tpm", tpm)] {
        if v.is_some_and(|v| !(1..=MAX_LIMIT).contains(&v)) {
            return Err((name, format!("'{name}' must be between 1 and {MAX_LIMIT}.")));
        }
    }
    Ok(())
}

/// Parses `30d`, `12h`, `45m`, `90s` (or plain seconds).
pub fn parse_duration(s: &str) -> Option<Duration> {
    let s = s.trim();
    let (num, unit) = s.split_at(s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len()));
    let n: u64 = num.parse().ok()?;
    let mult = match unit {
        "" | "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86_400,
        "w" => 604_800,
        _ => return None,
    };
    Some(Duration::from_secs(n.checked_mul(mult)?))
}

/// Whether `model` matches one of the key's allowed patterns (`*` matches any run).
pub fn model_allowed(patterns: &[String], model: &str) -> bool {
    patterns.is_empty() || patterns.iter().any(|p| glob(p, model))
}

fn glob(pattern: &str, s: &str) -> bool {
    let Some((head, rest)) = pattern.split_once('*') else {
        return pattern == s;
    };
    let Some(mut tail) = s.strip_prefix(head) else {
        return false;
    };
    let parts: Vec<&str> = rest.split('*').collect();
    for (i, part) in parts.iter().enumerate() {
        if i == parts.len() - 1 {
            return tail.ends_with(part);
        }
        match tail.find(part) {
            Some(at) => tail = &tail[at + part.len()..],
            None => return false,
        }
    }
    true
}

/// Checks presented keys against the store, through a short-lived cache.
#[derive(Clone)]
pub struct KeyChecker {
    store: Store,
    cache: Arc<DashMap<String, Cached>>,
    /// Bumped by every eviction: a lookup that raced an eviction is not cached (it may have
    /// read the key from before the change).
    generation: Arc<AtomicU64>,
}

#[derive(Clone)]
struct Cached {
    record: Arc<KeyRecord>,
    fetched: Instant,
    /// The last time the store was asked (and failed), while serving this stale entry.
    tried: Instant,
}

/// While the store is down, how often a stale key is looked up again.
const STALE_RETRY: Duration = Duration::from_secs(1);

impl KeyChecker {
    pub fn new(store: Store) -> Self {
        Self {
            store,
            cache: Arc::new(DashMap::new()),
            generation: Arc::new(AtomicU64::new(0)),
        }
    }

    /// The live key record for `presented`, or the 401 to send.
    pub async fn check(&self, presented: &str) -> Result<Arc<KeyRecord>, GatewayError> {
        if !presented.starts_with(KEY_PREFIX)
            || presented.len() != KEY_PREFIX.len() + KEY_RANDOM_LEN
        {
            return Err(bad_key(presented));
        }
        let hash = hash_key(presented);
        let cached = self.cache.get(&hash).map(|e| e.value().clone());
        if let Some(c) = &cached {
            let age = c.fetched.elapsed();
            if age < KEY_CACHE_TTL || (age < KEY_CACHE_STALE_OK && c.tried.elapsed() < STALE_RETRY)
            {
                return self.live(Arc::clone(&c.record), &hash, presented);
            }
            // One request refreshes an expired entry; the others meanwhile use the cached
            // record (no stampede on the store each time a busy key's entry expires).
            if let Some(mut e) = self.cache.get_mut(&hash) {
                if e.tried.elapsed() < STALE_RETRY && age < KEY_CACHE_STALE_OK {
                    let r = Arc::clone(&e.record);
                    drop(e);
                    return self.live(r, &hash, presented);
                }
                e.tried = Instant::now();
            }
        }
        let generation = self.generation.load(Ordering::Acquire);
        let found = match self.store.key_by_hash(&hash).await {
            Ok(found) => found,
            Err(e) => match cached {
                // Still cached (not evicted by a change meanwhile) and not too old.
                Some(c)
                    if c.fetched.elapsed() < KEY_CACHE_STALE_OK
                        && self.cache.contains_key(&hash)
                        && self.generation.load(Ordering::Acquire) == generation =>
                {
                    tracing::warn!(error = %e, "key lookup failed; using the cached key");
                    if let Some(mut entry) = self.cache.get_mut(&hash) {
                        entry.tried = Instant::now();
                    }
                    return self.live(c.record, &hash, presented);
                }
                _ => {
                    tracing::warn!(error = %e, "key lookup failed");
                    // The key may well be valid: the client should come back shortly.
                    return Err(GatewayError::unavailable(
                        "The gateway cannot check this key right now (its database is unavailable); retry shortly.",
                        2000,
                    ));
                }
            },
        };
        let Some(rec) = found else {
            self.cache.remove(&hash);
            return Err(bad_key(presented));
        };
        let rec = Arc::new(rec);
        if self.cache.len() >= KEY_CACHE_MAX {
            self.cache.clear();
        }
        let now = Instant::now();
        self.cache.insert(
            hash.clone(),
            Cached {
                record: Arc::clone(&rec),
                fetched: now,
                tried: now,
            },
        );
        // An eviction since the lookup began may have been about this very record: drop
        // what was just cached (it may predate the change).
        if self.generation.load(Ordering::Acquire) != generation {
            self.cache
                .remove_if(&hash, |_, c| Arc::ptr_eq(&c.record, &rec));
        }
        self.live(rec, &hash, presented)
    }

    /// Forgets the cached key with this hash (`*`: every key), after a change.
    pub fn evict(&self, hash: &str) {
        self.generation.fetch_add(1, Ordering::AcqRel);
        if hash == "*" {
            self.cache.clear();
        } else {
            self.cache.remove(hash);
        }
    }

    fn live(
        &self,
        record: Arc<KeyRecord>,
        hash: &str,
        presented: &str,
    ) -> Result<Arc<KeyRecord>, GatewayError> {
        // The lookup was by hash; compare again in constant time so that no path through
        // this function depends on how much of a guessed key was right.
        if !bool::from(record.hash.as_bytes().ct_eq(hash.as_bytes())) {
            return Err(bad_key(presented));
        }
        if record.revoked_at.is_some() {
            return Err(GatewayError::invalid_key("This API key has been revoked."));
        }
        if record.expires_at.is_some_and(|t| t <= now()) {
            return Err(GatewayError::invalid_key("This API key has expired."));
        }
        Ok(record)
    }
}

fn bad_key(presented: &str) -> GatewayError {
    // Like OpenAI, show only the key's ends, so a pasted key is recognisable but not leaked.
    let shown: String = if presented.len() > 12 {
        let head: String = presented.chars().take(8).collect();
        let tail: String = presented
            .chars()
            .rev()
            .take(4)
            .collect::<Vec<_>>()
            .into_iter()
            .rev()
            .collect();
        format!("{head}****{tail}")
    } else {
        "****".to_owned()
    };
    GatewayError::invalid_key(format!(
        "Incorrect API key provided: {shown}. Mint one with `jusinfer keys create`."
    ))
}

/// Tells running instances that a key changed (revoked, updated) so they drop their cached
/// copy now rather than within [`KEY_CACHE_TTL`]: through Redis when the deployment has one
/// (instances without Redis see it within the TTL anyway).
pub async fn announce_change(cfg: &crate::config::Config, hash: &str) {
    if let Some(url) = &cfg.redis {
        if let Err(e) = crate::limits::redis::announce_key_change(url, hash).await {
            tracing::warn!("{e}: instances see the change within {KEY_CACHE_TTL:?}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn globbing() {
        assert!(model_allowed(&[], "anything"));
        let p = vec![
            "gpt-*".to_owned(),
            "echo".to_owned(),
            "*/claude-*-4*".to_owned(),
        ];
        assert!(model_allowed(&p, "gpt-4o"));
        assert!(model_allowed(&p, "echo"));
        assert!(model_allowed(&p, "anthropic/claude-sonnet-4-5"));
        assert!(!model_allowed(&p, "echo2"));
        assert!(!model_allowed(&p, "o3"));
    }

    #[test]
    fn durations() {
        assert_eq!(
            parse_duration("30d"),
            Some(Duration::from_secs(30 * 86_400))
        );
        assert_eq!(parse_duration("90"), Some(Duration::from_secs(90)));
        assert_eq!(parse_duration("3x"), None);
    }

    #[test]
    fn hash_is_sha256_hex() {
        assert_eq!(
            hash_key("abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }
}
