//! Limits shared by every instance through Redis (see [`crate::limits`] for the rules).
//!
//! Admission is one Lua script (atomic in Redis: no read-modify-write race between
//! instances), with Redis's own clock, so instances whose clocks differ still agree. When a
//! key's limits are large, the script also grants a *lease*: 1/64 of what is left (at most
//! 256 requests), counted in Redis at once and then used by this instance without a round
//! trip until the end of Redis's current second, after which the unused part is given
//! back. Limits stay exact (nothing is admitted that Redis did not count, and a lease is
//! used only within the second it was counted in); a key near its limit gets no lease, so
//! small limits are decided request by request. Settling goes through a channel to one
//! task that sends the settles of many requests in one pipeline. Keys per API key `K`:
//!
//! - `jinf:{K}:win` — hash of one-second buckets (`r<second>` → requests, `t<second>` →
//!   tokens) with running sums `rs`, `ts` and the oldest counted second `lo`: the RPM and
//!   TPM windows, each admission amortized O(1);
//! - `jinf:{K}:spend` — the key's spend in USD, loaded from the ledger, and reloaded in the
//!   background when `jinf:{K}:spendfresh` has expired (every [`SPEND_TTL_S`] seconds), so
//!   a lost settle cannot skew it for long — and a database outage does not stop the key.
//!   A key with a budget period has one per period, `jinf:{K}:spend:<start ms>` (and
//!   `spendfresh:<start ms>`), which expires an hour after its period ends: a new period
//!   starts from the ledger's spend since its start, and a request settles its cost into the
//!   period it was admitted in;
//! - `jinf:{K}:hold` — hash hold id → USD still held, `jinf:{K}:holdt` — sorted set
//!   hold id → admission ms, and `jinf:{K}:heldsum` — the sum. A hold is one request's
//!   estimated cost, or a lease's: each request admitted from the lease releases its own
//!   estimate when it settles, and the lease's unused part is released when it ends. Holds
//!   older than [`HOLD_TTL_MS`] (an instance that died mid-request) are dropped.
//!
//! Key changes (revoke, update) are published on [`KEYS_CHANNEL`], so every instance drops
//! its cached copy at once.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use dashmap::DashMap;
use redis::aio::ConnectionManager;
use tokio::sync::mpsc;

mod lease;
mod settler;
#[cfg(test)]
mod tests;

use lease::{sweep, Lease, LeaseReturn, Leases, LEASE_TTL};
use settler::{settler, Msg, SETTLE_QUEUE};

use crate::limits::{now_ms, Ask, Decision, RateHeaders, Refusal, Settle, Window};
use crate::redis_conn::{new_manager, supervise, Shared};
use crate::store::Store;

/// The channel on which key changes are announced (message: the key's hash, or `*`).
pub(crate) const KEYS_CHANNEL: &str = "jinf:keys";
/// A hold whose request has not settled after this long is forgotten.
pub(crate) const HOLD_TTL_MS: u64 = 15 * 60 * 1000;
/// How long Redis keeps a key's spend before it is loaded from the ledger again.
pub(crate) const SPEND_TTL_S: u64 = 300;
/// After a failed admission, how long admissions skip Redis.
pub(crate) const REDIS_DOWN_MS: u64 = 1_000;

/// Shared by the scripts. `advance` moves the window of `KEYS[1]` to second `sec`: buckets
/// that left the window are subtracted from the running sums `rs` (requests) and `ts`
/// (tokens) and deleted, and `lo` becomes the oldest second still counted (61 of them, so
/// a request counts for at least a full 60 s; amortized O(1): each bucket leaves once). It returns `lo` and the second to count in (never below `lo`,
/// even if Redis's clock stepped back). `release` gives back up to `amount` of hold `id`.
const HELPERS: &str = include_str!("helpers.lua");

/// KEYS: window, spend, holds, holdtimes, held, spend freshness.
/// ARGV: rpm, tpm, budget (-1: none), token estimate, cost estimate, hold id, hold TTL ms,
/// `1` when a lease may be granted, the part of the token estimate that must fit
/// (`limits::tpm_hold`).
/// Returns {code, requests used, requests reset ms, tokens used, tokens reset ms, spent,
/// leased requests (held, when refused for budget), leased tokens, leased cost, second, ms
/// within the second, reload the spend, tokens counted}; code 0 admitted, 1 RPM, 2 TPM, 3 budget, -1 spend
/// not loaded.
const ADMIT: &str = include_str!("admit.lua");

/// Settles requests and gives back leases (one script, so a batch either finds it loaded
/// or fails whole, never half applied). KEYS: as ADMIT.
/// ARGV[1] = `s` (settle): token corrections up and down (summed over requests), the
/// second they were counted in, real cost, hold id, cost held, tpm flag, budget flag.
/// ARGV[1] = `c` is a settle too (a cancelled admission: everything released).
/// ARGV[1] = `r` (return a lease): its second, unused requests, unused tokens, hold id,
/// unused cost.
const FINISH: &str = include_str!("finish.lua");

/// Redis's answer to one admission.
pub(crate) struct Admitted {
    pub decision: Decision,
    /// The hold that carries the request's estimated cost (its own, or its lease's).
    pub hold_id: String,
    /// Redis's second in which the request (or its lease) was counted.
    pub sec: u64,
}

/// The Redis side of [`crate::limits::Limits`].
#[derive(Clone)]
pub(crate) struct RedisLimits {
    conn: Shared,
    admit: Arc<redis::Script>,
    tx: mpsc::Sender<Msg>,
    leases: Arc<Leases>,
    /// Until when (ms) admissions skip Redis after a failure.
    down_until_ms: Arc<AtomicU64>,
    down_log: Arc<LogThrottle>,
    full_log: Arc<LogThrottle>,
}

/// Lets a warning through at most every 10 s (a Redis outage at full load would otherwise
/// log once per request).
#[derive(Default)]
struct LogThrottle(AtomicU64);

impl LogThrottle {
    fn ready(&self) -> bool {
        let now = now_ms();
        let last = self.0.load(Ordering::Relaxed);
        now.saturating_sub(last) > 10_000
            && self
                .0
                .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
    }
}

/// The Redis keys of API key `id` whose budget counts from `since` ([`Ask::budget_since`]).
fn keys(id: &str, since: i64) -> [String; 6] {
    let (spend, fresh) = if since == i64::MIN {
        (
            format!("jinf:{{{id}}}:spend"),
            format!("jinf:{{{id}}}:spendfresh"),
        )
    } else {
        (
            format!("jinf:{{{id}}}:spend:{since}"),
            format!("jinf:{{{id}}}:spendfresh:{since}"),
        )
    };
    [
        format!("jinf:{{{id}}}:win"),
        spend,
        format!("jinf:{{{id}}}:hold"),
        format!("jinf:{{{id}}}:holdt"),
        format!("jinf:{{{id}}}:heldsum"),
        fresh,
    ]
}

/// How long a period's spend stays in Redis: until an hour after the period ends (late
/// settles still find it), `None` for a lifetime budget.
fn spend_ttl_ms(ask: &Ask) -> Option<u64> {
    let end = ask.budget_span?.end_ms;
    let left = end.saturating_sub(i64::try_from(now_ms()).unwrap_or(i64::MAX));
    Some(u64::try_from(left).unwrap_or(0).saturating_add(3_600_000))
}

impl RedisLimits {
    /// Connects to `url` and starts the settle task and the lease sweeper.
    pub(crate) async fn connect(url: &str) -> Result<(Self, redis::Client), String> {
        let shown = crate::store::redact(url);
        let client = redis::Client::open(url).map_err(|e| format!("redis {shown}: {e}"))?;
        let conn = Shared::new(
            new_manager(&client)
                .await
                .map_err(|e| format!("redis {shown}: {e}"))?,
        );
        let (tx, rx) = mpsc::channel(SETTLE_QUEUE);
        tokio::spawn(settler(conn.clone(), rx));
        let this = Self {
            conn,
            admit: Arc::new(redis::Script::new(&format!("{HELPERS}{ADMIT}"))),
            tx,
            leases: Arc::new(DashMap::new()),
            down_until_ms: Arc::new(AtomicU64::new(0)),
            down_log: Arc::default(),
            full_log: Arc::default(),
        };
        tokio::spawn(sweep(Arc::downgrade(&this.leases), this.tx.clone()));
        tokio::spawn(supervise(
            Arc::downgrade(&this.down_until_ms),
            this.conn.clone(),
            client.clone(),
            "limits",
        ));
        Ok((this, client))
    }

    /// Admits `ask` from this instance's lease of the key, when it has one that covers the
    /// request (no await, no Redis).
    pub(crate) fn admit_from_lease(&self, ask: &Ask) -> Option<Admitted> {
        let entry = self.leases.get(&ask.key_id)?;
        let mut slot = entry.lock().ok()?;
        match slot.as_mut() {
            Some(l) if l.covers(ask) => Some(l.take(ask)),
            Some(_) => {
                if let Some(old) = slot.take() {
                    self.send(Msg::Return(old.give_back(&ask.key_id)));
                }
                None
            }
            None => None,
        }
    }

    /// Admits `ask` in Redis (granting this instance a lease when the limits are large);
    /// `hold_id` names the hold it takes.
    pub(crate) async fn admit(
        &self,
        ask: &Ask,
        hold_id: &str,
        store: &Store,
    ) -> Result<Admitted, redis::RedisError> {
        let k = keys(&ask.key_id, ask.budget_since());
        let mut conn = self.conn.get();
        let hold_id = hold_id.to_owned();
        for _ in 0..2 {
            let sent_at = Instant::now();
            let mut inv = self.admit.prepare_invoke();
            for key in &k {
                inv.key(key);
            }
            inv.arg(ask.rpm.unwrap_or(0))
                .arg(ask.tpm.unwrap_or(0))
                .arg(ask.budget_usd.map_or(-1.0, |b| b.max(0.0)))
                .arg(ask.tokens)
                .arg(ask.cost)
                .arg(&hold_id)
                .arg(HOLD_TTL_MS)
                .arg("1")
                .arg(ask.tokens_min);
            let reply: Vec<redis::Value> = inv.invoke_async(&mut conn).await?;
            let int = |i: usize| match reply.get(i) {
                Some(redis::Value::Int(n)) => u64::try_from(*n).unwrap_or(0),
                _ => 0,
            };
            let float = |i: usize| match reply.get(i) {
                Some(redis::Value::BulkString(b)) => std::str::from_utf8(b)
                    .ok()
                    .and_then(|s| s.parse::<f64>().ok())
                    .unwrap_or(0.0),
                _ => 0.0,
            };
            let code = match reply.first() {
                Some(redis::Value::Int(n)) => *n,
                _ => 0,
            };
            if code == -1 {
                // The key's spend is not in Redis yet: load it from the ledger.
                let spent = store
                    .spend(&ask.key_id, ask.budget_since())
                    .await
                    .map_err(|e| {
                        redis::RedisError::from((
                            redis::ErrorKind::IoError,
                            "budget lookup failed",
                            e.to_string(),
                        ))
                    })?;
                set_spend(&mut conn, &k, spent, "NX", spend_ttl_ms(ask)).await?;
                continue;
            }
            if int(11) == 1 {
                self.refresh_spend(ask, store);
            }
            let spent = float(5);
            let (req_used, req_reset, tok_used, tok_reset) = (int(1), int(2), int(3), int(4));
            let refused = match code {
                1 => Some(Refusal::Requests {
                    retry_after_ms: req_reset.max(1),
                }),
                2 => Some(Refusal::Tokens {
                    retry_after_ms: tok_reset.max(1000),
                    asked: ask.tokens_min,
                }),
                3 => Some(Refusal::Budget {
                    spent,
                    held: float(6),
                    budget: ask.budget_usd.unwrap_or(0.0),
                    asked: ask.cost,
                }),
                _ => None,
            };
            let headers = if code == 3 {
                RateHeaders::default()
            } else {
                RateHeaders {
                    requests: ask.rpm.map(|rpm| Window {
                        limit: rpm,
                        remaining: rpm.saturating_sub(req_used),
                        reset_ms: req_reset,
                    }),
                    tokens: ask.tpm.map(|tpm| Window {
                        limit: tpm,
                        remaining: tpm.saturating_sub(tok_used),
                        reset_ms: tok_reset,
                    }),
                }
            };
            let (lr, lt, lc, sec, ms_in_sec) = (int(6), int(7), float(8), int(9), int(10));
            if refused.is_none() && (lr > 0 || lt > 0 || lc > 0.0) {
                // Used only within the Redis second it was counted in (so its requests
                // leave the window when it says they do).
                let left = Duration::from_millis(1000u64.saturating_sub(ms_in_sec));
                let lease = Lease {
                    id: hold_id.clone(),
                    since: ask.budget_since(),
                    sec,
                    expires: sent_at + left.min(LEASE_TTL),
                    requests: lr,
                    tokens: lt,
                    cost: lc,
                    headers: headers.clone(),
                    granted_at: Instant::now(),
                };
                let entry = self
                    .leases
                    .entry(ask.key_id.clone())
                    .or_insert_with(|| Mutex::new(None));
                let old = entry.lock().ok().and_then(|mut slot| slot.replace(lease));
                drop(entry);
                if let Some(old) = old {
                    self.send(Msg::Return(old.give_back(&ask.key_id)));
                }
            }
            let tokens = match reply.get(12) {
                Some(redis::Value::Int(n)) => u64::try_from(*n).unwrap_or(ask.tokens),
                _ => ask.tokens,
            };
            return Ok(Admitted {
                decision: Decision {
                    refused,
                    headers,
                    tokens,
                },
                hold_id,
                sec,
            });
        }
        Err(redis::RedisError::from((
            redis::ErrorKind::ResponseError,
            "spend was not loaded",
        )))
    }

    /// Reloads the key's spend from the ledger in the background (the admission goes on
    /// with the value Redis has; a store that does not answer leaves it as it is).
    fn refresh_spend(&self, ask: &Ask, store: &Store) {
        let since = ask.budget_since();
        let (k, mut conn, store, key_id, ttl) = (
            keys(&ask.key_id, since),
            self.conn.get(),
            store.clone(),
            ask.key_id.clone(),
            spend_ttl_ms(ask),
        );
        tokio::spawn(async move {
            match store.spend(&key_id, since).await {
                Ok(spent) => {
                    if let Err(e) = set_spend(&mut conn, &k, spent, "XX", ttl).await {
                        tracing::debug!(error = %e, "spend refresh failed");
                    }
                }
                Err(e) => {
                    tracing::warn!(error = %e, "spend refresh failed; the key keeps the spend Redis has")
                }
            }
        });
    }

    /// Releases what an admission whose answer was lost (a timeout) may have taken.
    pub(crate) fn cancel(&self, key_id: &str, hold_id: &str) {
        self.send(Msg::Return(LeaseReturn {
            key_id: key_id.to_owned(),
            sec: 0,
            requests: 0,
            tokens: 0,
            hold_id: hold_id.to_owned(),
            cost: f64::MAX,
        }));
    }

    fn send(&self, m: Msg) {
        if self.tx.try_send(m).is_err() && self.full_log.ready() {
            tracing::warn!("redis settle queue is full: usage is not being settled in Redis");
        }
    }

    pub(crate) fn settle(&self, s: Settle) {
        self.send(Msg::Settle(s));
    }

    /// At shutdown: gives back every lease's unused part and waits (at most `within`)
    /// until every settle and return queued so far has reached Redis, so the other
    /// instances do not carry this one's holds until they expire.
    pub(crate) async fn flush(&self, within: Duration) {
        for entry in self.leases.iter() {
            if let Ok(mut slot) = entry.value().lock() {
                if let Some(l) = slot.take() {
                    self.send(Msg::Return(l.give_back(entry.key())));
                }
            }
        }
        let (ack, done) = tokio::sync::oneshot::channel();
        let sent = tokio::time::timeout(within, self.tx.send(Msg::Flush(ack))).await;
        if !matches!(sent, Ok(Ok(()))) || tokio::time::timeout(within, done).await.is_err() {
            tracing::warn!(
                "redis settles not all sent at shutdown; their holds expire on their own"
            );
        }
    }

    /// Whether admissions should ask Redis (not within a second of a failure).
    pub(crate) fn is_up(&self) -> bool {
        now_ms() >= self.down_until_ms.load(Ordering::Relaxed)
    }

    /// Redis failed an admission: until the supervisor sees it answer again (and at least
    /// for the next second), limits are decided in process (no request waits on a Redis
    /// that does not answer). Logged at most every 10 s.
    pub(crate) fn mark_down(&self, e: &dyn std::fmt::Display) {
        self.down_until_ms
            .store(now_ms() + REDIS_DOWN_MS, Ordering::Relaxed);
        if self.down_log.ready() {
            tracing::warn!(error = %e, "redis unavailable: limits are per instance until it answers");
        }
    }

    /// Tells every instance that a key changed (`*`: all keys).
    pub(crate) async fn publish_key_change(&self, hash: &str) {
        let mut conn = self.conn.get();
        let r: Result<i64, _> = redis::cmd("PUBLISH")
            .arg(KEYS_CHANNEL)
            .arg(hash)
            .query_async(&mut conn)
            .await;
        if let Err(e) = r {
            tracing::warn!(error = %e, "could not announce a key change; other instances see it within the key cache TTL");
        }
    }
}

/// Announces a key change from outside a running instance (the CLI's `keys revoke`): one
/// connection, one `PUBLISH`.
pub(crate) async fn announce_key_change(url: &str, hash: &str) -> Result<(), String> {
    let shown = crate::store::redact(url);
    let client = redis::Client::open(url).map_err(|e| format!("redis {shown}: {e}"))?;
    let mut conn = tokio::time::timeout(
        Duration::from_secs(5),
        client.get_multiplexed_async_connection(),
    )
    .await
    .map_err(|_| format!("redis {shown}: no answer within 5 s"))?
    .map_err(|e| format!("redis {shown}: {e}"))?;
    redis::cmd("PUBLISH")
        .arg(KEYS_CHANNEL)
        .arg(hash)
        .query_async::<i64>(&mut conn)
        .await
        .map(drop)
        .map_err(|e| format!("redis {shown}: {e}"))
}

/// Stores a key's spend as loaded from the ledger (`NX`: only if absent; `XX`: only if
/// present; expiring after `ttl_ms` when given) and marks it fresh for [`SPEND_TTL_S`].
async fn set_spend(
    conn: &mut ConnectionManager,
    k: &[String; 6],
    spent: f64,
    mode: &str,
    ttl_ms: Option<u64>,
) -> Result<(), redis::RedisError> {
    let mut pipe = redis::pipe();
    let set = pipe.cmd("SET").arg(&k[1]).arg(spent).arg(mode);
    if let Some(ms) = ttl_ms {
        set.arg("PX").arg(ms.max(1));
    }
    set.ignore();
    pipe.cmd("SET")
        .arg(&k[5])
        .arg(1)
        .arg("EX")
        .arg(SPEND_TTL_S)
        .ignore()
        .query_async(conn)
        .await
}

/// Listens for key changes and calls `evict` with each (reconnecting until the process
/// ends).
pub(crate) fn watch_key_changes(client: redis::Client, evict: impl Fn(&str) + Send + 'static) {
    tokio::spawn(async move {
        use futures_util::StreamExt;
        loop {
            match client.get_async_pubsub().await {
                Ok(mut ps) => {
                    if ps.subscribe(KEYS_CHANNEL).await.is_ok() {
                        // Changes missed while disconnected: forget every cached key.
                        evict("*");
                        let mut msgs = ps.on_message();
                        while let Some(m) = msgs.next().await {
                            if let Ok(hash) = m.get_payload::<String>() {
                                evict(&hash);
                            }
                        }
                    }
                }
                Err(e) => tracing::debug!(error = %e, "redis key-change subscription failed"),
            }
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
    });
}
