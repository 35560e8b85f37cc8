//! Limits shared by every instance through Redis (see [`crate::limits`] for the rules).
//!
//! Admission is one Lua script (atomic in Redis: no read-modify-write race between
//! instances), with Redis's own clock, so instances whose clocks differ still agree. When a
//! key's limits are large, the script also grants a *lease*: 1/64 of what is left (at most
//! 256 requests), counted in Redis at once and then used by this instance without a round
//! trip, for up to a second, after which the unused part is given back. Limits stay exact
//! (nothing is admitted that Redis did not count); a key near its limit gets no lease, so
//! small limits are decided request by request. Settling goes through a channel to one
//! task that sends the settles of many requests in one pipeline. Keys per API key `K`:
//!
//! - `jinf:{K}:win` — hash of one-second buckets (`r<second>` → requests, `t<second>` →
//!   tokens) with running sums `rs`, `ts` and the oldest counted second `lo`: the RPM and
//!   TPM windows, each admission amortized O(1);
//! - `jinf:{K}:spend` — the key's spend in USD, loaded from the ledger on first use;
//! - `jinf:{K}:holds` — sorted set (by admission ms) of the holds of requests in flight,
//!   each `id|cost`, and `jinf:{K}:held` their sum; holds older than [`HOLD_TTL_MS`] (an
//!   instance that died mid-request) are dropped.
//!
//! Key changes (revoke, update) are published on [`KEYS_CHANNEL`], so every instance drops
//! its cached copy at once.

use std::collections::hash_map::Entry;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use dashmap::DashMap;

use redis::aio::ConnectionManager;
use tokio::sync::mpsc;

use crate::limits::{now_ms, Ask, Decision, RateHeaders, Refusal, Settle, Window};
use crate::store::Store;

/// The channel on which key changes are announced (message: the key's hash, or `*`).
pub const KEYS_CHANNEL: &str = "jinf:keys";
/// A hold whose request has not settled after this long is forgotten.
pub const HOLD_TTL_MS: u64 = 15 * 60 * 1000;
/// Settles waiting for the settle task.
const SETTLE_QUEUE: usize = 65_536;
/// Settles sent in one pipeline.
const SETTLE_BATCH: usize = 512;

/// Moves the window of `KEYS[1]` to second `sec`: buckets that left the window are
/// subtracted from the running sums `rs` (requests) and `ts` (tokens) and deleted, and `lo`
/// becomes the oldest second still counted. Amortized O(1): each bucket leaves once.
const ADVANCE: &str = r"
local function advance(win, sec)
  local lo = tonumber(redis.call('HGET', win, 'lo') or '-1')
  if lo < 0 or sec - lo >= 120 then
    redis.call('DEL', win)
    redis.call('HSET', win, 'lo', sec, 'rs', 0, 'ts', 0)
    return sec
  end
  local rs_d, ts_d = 0, 0
  while lo <= sec - 60 do
    local v = redis.call('HMGET', win, 'r' .. lo, 't' .. lo)
    if v[1] then rs_d = rs_d + tonumber(v[1]) end
    if v[2] then ts_d = ts_d + tonumber(v[2]) end
    redis.call('HDEL', win, 'r' .. lo, 't' .. lo)
    lo = lo + 1
  end
  while lo < sec do
    local v = redis.call('HMGET', win, 'r' .. lo, 't' .. lo)
    if v[1] or v[2] then break end
    lo = lo + 1
  end
  redis.call('HSET', win, 'lo', lo)
  if rs_d ~= 0 then redis.call('HINCRBY', win, 'rs', -rs_d) end
  if ts_d ~= 0 then redis.call('HINCRBY', win, 'ts', -ts_d) end
  return lo
end
";

/// KEYS: window hash, spend, holds (sorted set by admission ms), held sum.
/// ARGV: rpm, tpm, budget (-1: none), token estimate, cost to hold, hold member, hold TTL
/// ms, lease id (empty: no lease).
const ADMIT: &str = r"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local rpm = tonumber(ARGV[1])
local tpm = tonumber(ARGV[2])
local budget = tonumber(ARGV[3])
local est = tonumber(ARGV[4])
local cost = tonumber(ARGV[5])
local member = ARGV[6]
local spent = 0
local held = 0
if budget >= 0 then
  local s = redis.call('GET', KEYS[2])
  if not s then return {-1} end
  spent = tonumber(s)
  local stale = redis.call('ZRANGEBYSCORE', KEYS[3], '-inf', now - tonumber(ARGV[7]), 'LIMIT', 0, 100)
  for _, m in ipairs(stale) do
    redis.call('ZREM', KEYS[3], m)
    redis.call('INCRBYFLOAT', KEYS[4], -tonumber(string.match(m, '|(.+)$')))
  end
  held = tonumber(redis.call('GET', KEYS[4]) or '0')
  if spent + held >= budget then return {3, 0, 0, 0, 0, tostring(spent)} end
end
local sec = math.floor(now / 1000)
local req_used, tok_used, lo = 0, 0, sec
if rpm > 0 or tpm > 0 then
  lo = advance(KEYS[1], sec)
  local v = redis.call('HMGET', KEYS[1], 'rs', 'ts')
  req_used = tonumber(v[1] or '0')
  tok_used = tonumber(v[2] or '0')
end
local function reset(used)
  if used <= 0 then return 0 end
  return (lo + 60) * 1000 - now
end
if rpm > 0 and req_used >= rpm then
  return {1, req_used, reset(req_used), tok_used, reset(tok_used), tostring(spent)}
end
if tpm > 0 and tok_used + est > tpm then
  return {2, req_used, reset(req_used), tok_used, reset(tok_used), tostring(spent)}
end
-- A lease: room for more requests, reserved now and used by this instance without asking
-- again, when the limits are large enough that 1/64 of what is left is worth it.
local lr, lt, lc = 0, 0, 0
if ARGV[8] ~= '' then
  if rpm > 0 then lr = math.min(256, math.floor((rpm - req_used) / 64)) end
  if tpm > 0 then lt = math.floor((tpm - tok_used - est) / 64) end
  if budget >= 0 then lc = (budget - spent - held) / 64 - cost end
  if (rpm > 0 and lr < 1) or (tpm > 0 and lt < est) or (budget >= 0 and lc < cost) then
    lr, lt, lc = 0, 0, 0
  end
  if lt < 0 then lt = 0 end
  if lc < 0 then lc = 0 end
end
if rpm > 0 then
  redis.call('HINCRBY', KEYS[1], 'r' .. sec, 1 + lr)
  redis.call('HINCRBY', KEYS[1], 'rs', 1 + lr)
  req_used = req_used + 1 + lr
end
if tpm > 0 then
  redis.call('HINCRBY', KEYS[1], 't' .. sec, est + lt)
  redis.call('HINCRBY', KEYS[1], 'ts', est + lt)
  tok_used = tok_used + est + lt
end
if rpm > 0 or tpm > 0 then redis.call('EXPIRE', KEYS[1], 120) end
if budget >= 0 and cost > 0 then
  redis.call('ZADD', KEYS[3], now, member)
  redis.call('INCRBYFLOAT', KEYS[4], cost)
end
if lc > 0 then
  redis.call('ZADD', KEYS[3], now, ARGV[8] .. '|' .. lc)
  redis.call('INCRBYFLOAT', KEYS[4], lc)
end
return {0, req_used, reset(req_used), tok_used, reset(tok_used), tostring(spent), lr, lt, tostring(lc), sec}
";

/// Gives back what a lease did not use. KEYS: as ADMIT. ARGV: the lease's second, unused
/// requests, unused tokens, the lease's hold member.
const RETURN: &str = r"
local lo = tonumber(redis.call('HGET', KEYS[1], 'lo') or '-1')
local sec = tonumber(ARGV[1])
if lo >= 0 and sec >= lo then
  local r = tonumber(ARGV[2])
  local t = tonumber(ARGV[3])
  if r > 0 then
    redis.call('HINCRBY', KEYS[1], 'r' .. sec, -r)
    redis.call('HINCRBY', KEYS[1], 'rs', -r)
  end
  if t > 0 then
    redis.call('HINCRBY', KEYS[1], 't' .. sec, -t)
    redis.call('HINCRBY', KEYS[1], 'ts', -t)
  end
end
if ARGV[4] ~= '' and redis.call('ZREM', KEYS[3], ARGV[4]) == 1 then
  redis.call('INCRBYFLOAT', KEYS[4], -tonumber(string.match(ARGV[4], '|(.+)$')))
end
return 0
";

/// KEYS: as ADMIT. ARGV: token delta, cost, hold member, tpm flag, budget flag.
const SETTLE: &str = r"
local t = redis.call('TIME')
local sec = tonumber(t[1])
local delta = tonumber(ARGV[1])
if delta ~= 0 and ARGV[4] == '1' and redis.call('HEXISTS', KEYS[1], 'lo') == 1 then
  redis.call('HINCRBY', KEYS[1], 't' .. sec, delta)
  redis.call('HINCRBY', KEYS[1], 'ts', delta)
end
if ARGV[5] == '1' then
  if redis.call('ZREM', KEYS[3], ARGV[3]) == 1 then
    redis.call('INCRBYFLOAT', KEYS[4], -tonumber(string.match(ARGV[3], '|(.+)$')))
  end
  local cost = tonumber(ARGV[2])
  if cost > 0 and redis.call('EXISTS', KEYS[2]) == 1 then
    redis.call('INCRBYFLOAT', KEYS[2], ARGV[2])
  end
end
return 0
";

/// The member naming a hold in the holds set: its id and the cost it holds.
fn hold_member(hold_id: &str, cost: f64) -> String {
    format!("{hold_id}|{cost}")
}

/// What the settle task sends.
enum Msg {
    Settle(Settle),
    Return(LeaseReturn),
}

/// The unused part of a lease, given back.
struct LeaseReturn {
    key_id: String,
    sec: u64,
    requests: u64,
    tokens: u64,
    member: String,
}

/// Room reserved in Redis for this instance's next requests of one key (see ADMIT).
struct Lease {
    id: String,
    /// Redis's second at the grant (where the reservation was counted).
    sec: u64,
    expires: Instant,
    /// Left to use; tokens and cost are only meaningful when the key has that limit.
    requests: u64,
    tokens: u64,
    cost: f64,
    /// The reserved cost (released when the lease ends).
    cost_reserved: f64,
    /// The headers at the grant, with the whole lease counted as used.
    headers: RateHeaders,
    granted_at: Instant,
}

impl Lease {
    fn covers(&self, ask: &Ask) -> bool {
        Instant::now() < self.expires
            && (ask.rpm.is_none() || self.requests >= 1)
            && (ask.tpm.is_none() || self.tokens >= ask.tokens)
            && (ask.budget_usd.is_none() || self.cost >= ask.cost)
    }

    fn take(&mut self, ask: &Ask) -> Decision {
        if ask.rpm.is_some() {
            self.requests -= 1;
        }
        if ask.tpm.is_some() {
            self.tokens -= ask.tokens;
        }
        if ask.budget_usd.is_some() {
            self.cost -= ask.cost;
        }
        let elapsed = u64::try_from(self.granted_at.elapsed().as_millis()).unwrap_or(u64::MAX);
        let (requests, tokens) = (self.requests, self.tokens);
        let adjust = |w: Option<Window>, unused: u64| {
            w.map(|w| Window {
                limit: w.limit,
                remaining: (w.remaining + unused).min(w.limit),
                reset_ms: w.reset_ms.saturating_sub(elapsed),
            })
        };
        Decision {
            refused: None,
            headers: RateHeaders {
                requests: adjust(self.headers.requests, requests),
                tokens: adjust(self.headers.tokens, tokens),
            },
        }
    }

    fn give_back(self, key_id: &str) -> LeaseReturn {
        LeaseReturn {
            key_id: key_id.to_owned(),
            sec: self.sec,
            requests: self.requests,
            tokens: self.tokens,
            member: if self.cost_reserved > 0.0 {
                hold_member(&self.id, self.cost_reserved)
            } else {
                String::new()
            },
        }
    }
}

/// How long a lease may be used before what is left of it is given back.
const LEASE_TTL: Duration = Duration::from_secs(1);

/// The Redis side of [`crate::limits::Limits`].
#[derive(Clone)]
pub struct RedisLimits {
    conn: ConnectionManager,
    admit: Arc<redis::Script>,
    tx: mpsc::Sender<Msg>,
    leases: Arc<DashMap<String, Mutex<Option<Lease>>>>,
    last_warn_ms: Arc<AtomicU64>,
}

fn keys(id: &str) -> [String; 4] {
    [
        format!("jinf:{{{id}}}:win"),
        format!("jinf:{{{id}}}:spend"),
        format!("jinf:{{{id}}}:holds"),
        format!("jinf:{{{id}}}:held"),
    ]
}

impl RedisLimits {
    /// Connects to `url` and starts the settle task and the lease sweeper.
    pub async fn connect(url: &str) -> Result<(Self, redis::Client), String> {
        let client = redis::Client::open(url).map_err(|e| format!("redis {url:?}: {e}"))?;
        let cfg = redis::aio::ConnectionManagerConfig::new()
            .set_connection_timeout(Duration::from_secs(2))
            .set_response_timeout(Duration::from_secs(2))
            .set_number_of_retries(2);
        let conn = ConnectionManager::new_with_config(client.clone(), cfg)
            .await
            .map_err(|e| format!("redis {url:?}: {e}"))?;
        let (tx, rx) = mpsc::channel(SETTLE_QUEUE);
        tokio::spawn(settler(conn.clone(), rx));
        let this = Self {
            conn,
            admit: Arc::new(redis::Script::new(&format!("{ADVANCE}{ADMIT}"))),
            tx,
            leases: Arc::new(DashMap::new()),
            last_warn_ms: Arc::new(AtomicU64::new(0)),
        };
        tokio::spawn(sweep(Arc::downgrade(&this.leases), this.tx.clone()));
        Ok((this, client))
    }

    /// Admits `ask` from this instance's lease of the key when it covers the request,
    /// else in Redis. With the decision comes the id of the request's own hold in Redis;
    /// none when a lease admitted it (the lease holds its cost).
    pub async fn admit(
        &self,
        ask: &Ask,
        store: &Store,
    ) -> Result<(Decision, Option<String>), redis::RedisError> {
        if let Some(entry) = self.leases.get(&ask.key_id) {
            if let Ok(mut slot) = entry.lock() {
                match slot.as_mut() {
                    Some(l) if l.covers(ask) => return Ok((l.take(ask), None)),
                    Some(_) => {
                        if let Some(old) = slot.take() {
                            self.send(Msg::Return(old.give_back(&ask.key_id)));
                        }
                    }
                    None => {}
                }
            }
        }
        let k = keys(&ask.key_id);
        let mut conn = self.conn.clone();
        let lease_id = crate::ledger::unique_id();
        let hold_id = crate::ledger::unique_id();
        for _ in 0..2 {
            let mut inv = self.admit.prepare_invoke();
            for key in &k {
                inv.key(key);
            }
            inv.arg(ask.rpm.unwrap_or(0))
                .arg(ask.tpm.unwrap_or(0))
                .arg(ask.budget_usd.map_or(-1.0, |b| b.max(0.0)))
                .arg(ask.tokens)
                .arg(ask.cost)
                .arg(hold_member(&hold_id, ask.cost))
                .arg(HOLD_TTL_MS)
                .arg(&lease_id);
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
                // The key's spend is not in Redis yet: load it from the ledger once.
                let spent = store.spend(&ask.key_id).await.map_err(|e| {
                    redis::RedisError::from((
                        redis::ErrorKind::IoError,
                        "budget lookup failed",
                        e.to_string(),
                    ))
                })?;
                let _: () = redis::cmd("SET")
                    .arg(&k[1])
                    .arg(spent)
                    .arg("NX")
                    .query_async(&mut conn)
                    .await?;
                continue;
            }
            let spent = float(5);
            let (req_used, req_reset, tok_used, tok_reset) = (int(1), int(2), int(3), int(4));
            let refused = match code {
                1 => Some(Refusal::Requests {
                    retry_after_ms: req_reset.max(1),
                }),
                2 => Some(Refusal::Tokens {
                    retry_after_ms: tok_reset.max(1000),
                    asked: ask.tokens,
                }),
                3 => Some(Refusal::Budget {
                    spent,
                    budget: ask.budget_usd.unwrap_or(0.0),
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
            let (lr, lt, lc) = (int(6), int(7), float(8));
            if refused.is_none() && (lr > 0 || lt > 0 || lc > 0.0) {
                let lease = Lease {
                    id: lease_id,
                    sec: int(9),
                    expires: Instant::now() + LEASE_TTL,
                    requests: lr,
                    tokens: lt,
                    cost: lc,
                    cost_reserved: lc,
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
            return Ok((Decision { refused, headers }, Some(hold_id)));
        }
        Err(redis::RedisError::from((
            redis::ErrorKind::ResponseError,
            "spend was not loaded",
        )))
    }

    fn send(&self, m: Msg) {
        if self.tx.try_send(m).is_err() {
            tracing::warn!("redis settle queue is full: a request's usage was not settled");
        }
    }

    pub fn settle(&self, s: Settle) {
        self.send(Msg::Settle(s));
    }

    /// Logs (at most every 10 s) that Redis failed and limits are local for now.
    pub fn warn_fallback(&self, e: &redis::RedisError) {
        let now = now_ms();
        let last = self.last_warn_ms.load(Ordering::Relaxed);
        if now.saturating_sub(last) > 10_000
            && self
                .last_warn_ms
                .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
        {
            tracing::warn!(error = %e, "redis unavailable: limits are per instance until it answers");
        }
    }

    /// Tells every instance that a key changed (`*`: all keys).
    pub async fn publish_key_change(&self, hash: &str) {
        let mut conn = self.conn.clone();
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

/// Gives back expired leases every [`LEASE_TTL`] (until the limits are dropped).
async fn sweep(
    leases: std::sync::Weak<DashMap<String, Mutex<Option<Lease>>>>,
    tx: mpsc::Sender<Msg>,
) {
    loop {
        tokio::time::sleep(LEASE_TTL).await;
        let Some(leases) = leases.upgrade() else {
            return;
        };
        let now = Instant::now();
        for entry in leases.iter() {
            if let Ok(mut slot) = entry.value().lock() {
                if slot.as_ref().is_some_and(|l| l.expires <= now) {
                    if let Some(l) = slot.take() {
                        let _ = tx.try_send(Msg::Return(l.give_back(entry.key())));
                    }
                }
            }
        }
        // Keys with no lease for a whole sweep are forgotten.
        leases.retain(|_, v| v.get_mut().map(|s| s.is_some()).unwrap_or(false));
    }
}

async fn settler(mut conn: ConnectionManager, mut rx: mpsc::Receiver<Msg>) {
    let settle = redis::Script::new(SETTLE);
    let give_back = redis::Script::new(RETURN);
    let mut batch = Vec::with_capacity(SETTLE_BATCH);
    let mut rest = Vec::new();
    while rx.recv_many(&mut batch, SETTLE_BATCH).await > 0 {
        // Load the scripts once per batch (EVALSHA below needs them cached in Redis).
        for script in [&settle, &give_back] {
            let loaded: Result<String, _> = script.prepare_invoke().load_async(&mut conn).await;
            if let Err(e) = loaded {
                tracing::warn!(error = %e, "redis settle failed; holds expire on their own");
            }
        }
        let mut pipe = redis::pipe();
        // Requests admitted from a lease hold nothing of their own: their token corrections
        // and costs are summed per key, one script call per key per batch.
        let mut merged: HashMap<(String, bool, bool), Settle> = HashMap::new();
        for m in batch.drain(..) {
            match m {
                Msg::Settle(s) if s.cost_held == 0.0 => {
                    match merged.entry((s.key_id.clone(), s.tpm, s.budget)) {
                        Entry::Occupied(mut x) => {
                            let x = x.get_mut();
                            x.tokens_held += s.tokens_held;
                            x.tokens_used += s.tokens_used;
                            x.cost += s.cost;
                        }
                        Entry::Vacant(v) => {
                            v.insert(s);
                        }
                    }
                }
                m => rest.push(m),
            }
        }
        for m in merged.into_values().map(Msg::Settle).chain(rest.drain(..)) {
            match m {
                Msg::Settle(s) => {
                    let k = keys(&s.key_id);
                    let delta = i64::try_from(s.tokens_used).unwrap_or(i64::MAX)
                        - i64::try_from(s.tokens_held).unwrap_or(i64::MAX);
                    pipe.cmd("EVALSHA")
                        .arg(settle.get_hash())
                        .arg(4)
                        .arg(&k[0])
                        .arg(&k[1])
                        .arg(&k[2])
                        .arg(&k[3])
                        .arg(delta)
                        .arg(s.cost)
                        .arg(hold_member(&s.hold_id, s.cost_held))
                        .arg(if s.tpm { "1" } else { "0" })
                        .arg(if s.budget { "1" } else { "0" })
                        .ignore();
                }
                Msg::Return(r) => {
                    let k = keys(&r.key_id);
                    pipe.cmd("EVALSHA")
                        .arg(give_back.get_hash())
                        .arg(4)
                        .arg(&k[0])
                        .arg(&k[1])
                        .arg(&k[2])
                        .arg(&k[3])
                        .arg(r.sec)
                        .arg(r.requests)
                        .arg(r.tokens)
                        .arg(&r.member)
                        .ignore();
                }
            }
        }
        let r: Result<(), _> = pipe.query_async(&mut conn).await;
        if let Err(e) = r {
            tracing::warn!(error = %e, "redis settle failed; holds expire on their own");
        }
    }
}

/// Listens for key changes and calls `evict` with each (reconnecting until the process
/// ends).
pub fn watch_key_changes(client: redis::Client, evict: impl Fn(&str) + Send + 'static) {
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
