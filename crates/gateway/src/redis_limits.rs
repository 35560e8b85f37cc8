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

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use dashmap::DashMap;
use redis::aio::ConnectionManager;
use tokio::sync::mpsc;

use crate::limits::{now_ms, Ask, Decision, RateHeaders, Refusal, Settle, Window};
use crate::redis_conn::{new_manager, supervise, Shared};
use crate::store::Store;

/// The channel on which key changes are announced (message: the key's hash, or `*`).
pub const KEYS_CHANNEL: &str = "jinf:keys";
/// A hold whose request has not settled after this long is forgotten.
pub const HOLD_TTL_MS: u64 = 15 * 60 * 1000;
/// How long Redis keeps a key's spend before it is loaded from the ledger again.
pub const SPEND_TTL_S: u64 = 300;
/// Settles waiting for the settle task.
const SETTLE_QUEUE: usize = 65_536;
/// Settles sent in one pipeline.
const SETTLE_BATCH: usize = 512;
/// How long the settle task gathers messages before sending them.
const SETTLE_LINGER: Duration = Duration::from_millis(2);
/// After a failed admission, how long admissions skip Redis.
pub(crate) const REDIS_DOWN_MS: u64 = 1_000;
/// How long a lease may be used at most (it also ends with Redis's second).
const LEASE_TTL: Duration = Duration::from_secs(1);

/// Shared by the scripts. `advance` moves the window of `KEYS[1]` to second `sec`: buckets
/// that left the window are subtracted from the running sums `rs` (requests) and `ts`
/// (tokens) and deleted, and `lo` becomes the oldest second still counted (61 of them, so
/// a request counts for at least a full 60 s; amortized O(1): each bucket leaves once). It returns `lo` and the second to count in (never below `lo`,
/// even if Redis's clock stepped back). `release` gives back up to `amount` of hold `id`.
const HELPERS: &str = r"
local function advance(win, sec)
  local lo = tonumber(redis.call('HGET', win, 'lo') or '-1')
  if lo < 0 or sec - lo >= 120 then
    redis.call('DEL', win)
    redis.call('HSET', win, 'lo', sec, 'rs', 0, 'ts', 0)
    redis.call('EXPIRE', win, 125)
    return sec, sec
  end
  if sec < lo then return lo, lo end
  local rs_d, ts_d = 0, 0
  while lo <= sec - 61 do
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
  return lo, sec
end
local function release(id, amount)
  if amount <= 0 then return end
  local a = redis.call('HGET', KEYS[3], id)
  if not a then return end
  a = tonumber(a)
  if amount >= a - 1e-12 then
    amount = a
    redis.call('HDEL', KEYS[3], id)
    redis.call('ZREM', KEYS[4], id)
  else
    redis.call('HINCRBYFLOAT', KEYS[3], id, -amount)
  end
  if redis.call('HLEN', KEYS[3]) == 0 then
    redis.call('SET', KEYS[5], '0')
  else
    redis.call('INCRBYFLOAT', KEYS[5], -amount)
  end
end
";

/// KEYS: window, spend, holds, holdtimes, held, spend freshness.
/// ARGV: rpm, tpm, budget (-1: none), token estimate, cost estimate, hold id, hold TTL ms,
/// `1` when a lease may be granted, the part of the token estimate that must fit
/// (`limits::tpm_hold`).
/// Returns {code, requests used, requests reset ms, tokens used, tokens reset ms, spent,
/// leased requests (held, when refused for budget), leased tokens, leased cost, second, ms
/// within the second, reload the spend, tokens counted}; code 0 admitted, 1 RPM, 2 TPM, 3 budget, -1 spend
/// not loaded.
const ADMIT: &str = r"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local rpm = tonumber(ARGV[1])
local tpm = tonumber(ARGV[2])
local budget = tonumber(ARGV[3])
local est = tonumber(ARGV[4])
local cost = tonumber(ARGV[5])
local id = ARGV[6]
local spent, held = 0, 0
local refresh = 0
if budget >= 0 then
  local s = redis.call('GET', KEYS[2])
  if not s then return {-1} end
  spent = tonumber(s)
  -- Past its freshness the spend is reloaded from the ledger by one caller (told so by
  -- the last reply field) while everyone goes on with the current value.
  if redis.call('SET', KEYS[6], '1', 'NX', 'EX', 30) then refresh = 1 end
  local stale = redis.call('ZRANGEBYSCORE', KEYS[4], '-inf', now - tonumber(ARGV[7]), 'LIMIT', 0, 100)
  for _, m in ipairs(stale) do
    release(m, math.huge)
    redis.call('ZREM', KEYS[4], m)
  end
  held = tonumber(redis.call('GET', KEYS[5]) or '0')
  -- limits::crosses_budget: the holds in flight and this one must fit what is left.
  if spent + held >= budget or (held > 0 and spent + held + cost > budget) then
    return {3, 0, 0, 0, 0, tostring(spent), string.format('%.17g', held), 0, '0', 0, 0, refresh}
  end
end
local sec = math.floor(now / 1000)
local lo = sec
local req_used, tok_used = 0, 0
if rpm > 0 or tpm > 0 then
  lo, sec = advance(KEYS[1], sec)
  local v = redis.call('HMGET', KEYS[1], 'rs', 'ts')
  req_used = tonumber(v[1] or '0')
  tok_used = tonumber(v[2] or '0')
end
local function reset(used)
  if used <= 0 then return 0 end
  return math.max(0, (lo + 61) * 1000 - now)
end
if rpm > 0 and req_used >= rpm then
  return {1, req_used, reset(req_used), tok_used, reset(tok_used), tostring(spent), 0, 0, '0', 0, 0, refresh}
end
local est_min = tonumber(ARGV[9])
if tpm > 0 and tok_used + est > tpm and tok_used + est_min <= tpm then
  -- limits::tpm_hold: no maximum of its own, it holds what is left of the window.
  est = math.max(est_min, tpm - tok_used)
end
if tpm > 0 and tok_used + est > tpm then
  return {2, req_used, reset(req_used), tok_used, reset(tok_used), tostring(spent), 0, 0, '0', 0, 0, refresh}
end
local lr, lt, lc = 0, 0, 0
if ARGV[8] == '1' then
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
if rpm > 0 or tpm > 0 then redis.call('EXPIRE', KEYS[1], 125) end
if budget >= 0 and cost + lc > 0 then
  redis.call('HINCRBYFLOAT', KEYS[3], id, cost + lc)
  redis.call('ZADD', KEYS[4], now, id)
  redis.call('INCRBYFLOAT', KEYS[5], cost + lc)
end
return {0, req_used, reset(req_used), tok_used, reset(tok_used), tostring(spent), lr, lt,
  string.format('%.17g', lc), sec, now % 1000, refresh, est}
";

/// Settles requests and gives back leases (one script, so a batch either finds it loaded
/// or fails whole, never half applied). KEYS: as ADMIT.
/// ARGV[1] = `s` (settle): token corrections up and down (summed over requests), the
/// second they were counted in, real cost, hold id, cost held, tpm flag, budget flag.
/// ARGV[1] = `c` is a settle too (a cancelled admission: everything released).
/// ARGV[1] = `r` (return a lease): its second, unused requests, unused tokens, hold id,
/// unused cost.
const FINISH: &str = r"
if ARGV[1] == 's' then
  if ARGV[8] == '1' then
    local up = tonumber(ARGV[2])
    local down = tonumber(ARGV[3])
    local asec = tonumber(ARGV[4])
    local lo = tonumber(redis.call('HGET', KEYS[1], 'lo') or '-1')
    if lo >= 0 and (up > 0 or down > 0) then
      if asec >= lo and redis.call('HEXISTS', KEYS[1], 't' .. asec) == 1 then
        -- The correction goes where the estimate was counted, and leaves with it.
        redis.call('HINCRBY', KEYS[1], 't' .. asec, up - down)
        redis.call('HINCRBY', KEYS[1], 'ts', up - down)
      elseif up > 0 then
        -- The estimate already left the window: only the excess still counts.
        local t = redis.call('TIME')
        local _, sec = advance(KEYS[1], tonumber(t[1]))
        redis.call('HINCRBY', KEYS[1], 't' .. sec, up)
        redis.call('HINCRBY', KEYS[1], 'ts', up)
      end
    end
  end
  if ARGV[9] == '1' then
    release(ARGV[6], tonumber(ARGV[7]))
    local cost = tonumber(ARGV[5])
    if cost > 0 and redis.call('EXISTS', KEYS[2]) == 1 then
      redis.call('INCRBYFLOAT', KEYS[2], ARGV[5])
    end
  end
  return 0
end
local lo = tonumber(redis.call('HGET', KEYS[1], 'lo') or '-1')
local sec = tonumber(ARGV[2])
if lo >= 0 and sec >= lo then
  local r = tonumber(ARGV[3])
  local t = tonumber(ARGV[4])
  if r > 0 and redis.call('HEXISTS', KEYS[1], 'r' .. sec) == 1 then
    redis.call('HINCRBY', KEYS[1], 'r' .. sec, -r)
    redis.call('HINCRBY', KEYS[1], 'rs', -r)
  end
  if t > 0 and redis.call('HEXISTS', KEYS[1], 't' .. sec) == 1 then
    redis.call('HINCRBY', KEYS[1], 't' .. sec, -t)
    redis.call('HINCRBY', KEYS[1], 'ts', -t)
  end
end
release(ARGV[5], tonumber(ARGV[6]))
return 0
";

/// What the settle task sends.
enum Msg {
    Settle(Settle),
    Return(LeaseReturn),
    /// Acknowledged once everything queued before it is sent to Redis (shutdown).
    Flush(tokio::sync::oneshot::Sender<()>),
}

/// The unused part of a lease, given back.
struct LeaseReturn {
    key_id: String,
    sec: u64,
    requests: u64,
    tokens: u64,
    hold_id: String,
    cost: f64,
}

/// Room reserved in Redis for this instance's next requests of one key (see ADMIT).
struct Lease {
    /// Its hold's id, shared by the requests it admits.
    id: String,
    /// The budget period it was counted in ([`Ask::budget_since`]).
    since: i64,
    /// Redis's second at the grant (where the reservation was counted).
    sec: u64,
    expires: Instant,
    /// Left to use; tokens and cost are only meaningful when the key has that limit.
    requests: u64,
    tokens: u64,
    cost: f64,
    /// The headers at the grant, with the whole lease counted as used.
    headers: RateHeaders,
    granted_at: Instant,
}

impl Lease {
    fn covers(&self, ask: &Ask) -> bool {
        Instant::now() < self.expires
            && (ask.rpm.is_none() || self.requests >= 1)
            && (ask.tpm.is_none() || self.tokens >= ask.tokens)
            && (ask.budget_usd.is_none()
                || (self.cost >= ask.cost && self.since == ask.budget_since()))
    }

    fn take(&mut self, ask: &Ask) -> Admitted {
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
                remaining: w.remaining.saturating_add(unused).min(w.limit),
                reset_ms: w.reset_ms.saturating_sub(elapsed),
            })
        };
        Admitted {
            decision: Decision {
                refused: None,
                headers: RateHeaders {
                    requests: adjust(self.headers.requests, requests),
                    tokens: adjust(self.headers.tokens, tokens),
                },
                tokens: ask.tokens,
            },
            hold_id: self.id.clone(),
            sec: self.sec,
        }
    }

    fn give_back(self, key_id: &str) -> LeaseReturn {
        LeaseReturn {
            key_id: key_id.to_owned(),
            sec: self.sec,
            requests: self.requests,
            tokens: self.tokens,
            hold_id: self.id,
            cost: self.cost,
        }
    }
}

/// Redis's answer to one admission.
pub struct Admitted {
    pub decision: Decision,
    /// The hold that carries the request's estimated cost (its own, or its lease's).
    pub hold_id: String,
    /// Redis's second in which the request (or its lease) was counted.
    pub sec: u64,
}

type Leases = DashMap<String, Mutex<Option<Lease>>>;

/// The Redis side of [`crate::limits::Limits`].
#[derive(Clone)]
pub struct RedisLimits {
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
    pub async fn connect(url: &str) -> Result<(Self, redis::Client), String> {
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
        ));
        Ok((this, client))
    }

    /// Admits `ask` from this instance's lease of the key, when it has one that covers the
    /// request (no await, no Redis).
    pub fn admit_from_lease(&self, ask: &Ask) -> Option<Admitted> {
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
    pub async fn admit(
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
    pub fn cancel(&self, key_id: &str, hold_id: &str) {
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

    pub fn settle(&self, s: Settle) {
        self.send(Msg::Settle(s));
    }

    /// At shutdown: gives back every lease's unused part and waits (at most `within`)
    /// until every settle and return queued so far has reached Redis, so the other
    /// instances do not carry this one's holds until they expire.
    pub async fn flush(&self, within: Duration) {
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
    pub fn is_up(&self) -> bool {
        now_ms() >= self.down_until_ms.load(Ordering::Relaxed)
    }

    /// Redis failed an admission: until the supervisor sees it answer again (and at least
    /// for the next second), limits are decided in process (no request waits on a Redis
    /// that does not answer). Logged at most every 10 s.
    pub fn mark_down(&self, e: &dyn std::fmt::Display) {
        self.down_until_ms
            .store(now_ms() + REDIS_DOWN_MS, Ordering::Relaxed);
        if self.down_log.ready() {
            tracing::warn!(error = %e, "redis unavailable: limits are per instance until it answers");
        }
    }

    /// Tells every instance that a key changed (`*`: all keys).
    pub async fn publish_key_change(&self, hash: &str) {
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

/// Gives back expired leases every few hundred milliseconds (until the limits are dropped).
async fn sweep(leases: std::sync::Weak<Leases>, tx: mpsc::Sender<Msg>) {
    let mut idle_rounds = 0u32;
    loop {
        tokio::time::sleep(Duration::from_millis(250)).await;
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
        // Every few seconds, forget keys that have no lease.
        idle_rounds += 1;
        if idle_rounds >= 16 {
            idle_rounds = 0;
            leases.retain(|_, v| v.get_mut().map(|s| s.is_some()).unwrap_or(false));
        }
    }
}

async fn settler(shared: Shared, mut rx: mpsc::Receiver<Msg>) {
    let script = redis::Script::new(&format!("{HELPERS}{FINISH}"));
    let mut batch = Vec::with_capacity(SETTLE_BATCH);
    let mut rest = Vec::new();
    let mut flushed = Vec::new();
    // The script is loaded once, and again after Redis forgot it (restart, SCRIPT FLUSH).
    let mut loaded = false;
    while rx.recv_many(&mut batch, SETTLE_BATCH).await > 0 {
        let mut conn = shared.get();
        // Gather a little longer: fewer, larger pipelines.
        if batch.len() < SETTLE_BATCH {
            tokio::time::sleep(SETTLE_LINGER).await;
            while batch.len() < SETTLE_BATCH {
                match rx.try_recv() {
                    Ok(m) => batch.push(m),
                    Err(_) => break,
                }
            }
        }
        let mut pipe = redis::pipe();
        // Requests admitted from one lease share its hold and its second: their settles
        // are summed (corrections up and down apart), one call per lease per batch.
        let mut merged: HashMap<(String, String, u64, bool, bool, i64), Merged> = HashMap::new();
        for m in batch.drain(..) {
            match m {
                Msg::Settle(s) => {
                    let (used, held) = (s.tokens_used, s.tokens_held);
                    let m = merged
                        .entry((
                            s.key_id.clone(),
                            s.hold_id.clone(),
                            s.admitted_s,
                            s.tpm,
                            s.budget,
                            s.budget_since,
                        ))
                        .or_insert_with(|| Merged {
                            up: 0,
                            down: 0,
                            cost: 0.0,
                            cost_held: 0.0,
                        });
                    m.up = m.up.saturating_add(used.saturating_sub(held));
                    m.down = m.down.saturating_add(held.saturating_sub(used));
                    m.cost += s.cost;
                    m.cost_held += s.cost_held;
                }
                Msg::Flush(ack) => flushed.push(ack),
                m => rest.push(m),
            }
        }
        for ((key_id, hold_id, asec, tpm, budget, since), m) in merged {
            pipe.cmd("EVALSHA").arg(script.get_hash()).arg(6);
            for key in &keys(&key_id, since) {
                pipe.arg(key);
            }
            pipe.arg("s")
                .arg(m.up)
                .arg(m.down)
                .arg(asec)
                .arg(m.cost)
                .arg(&hold_id)
                .arg(m.cost_held)
                .arg(if tpm { "1" } else { "0" })
                .arg(if budget { "1" } else { "0" })
                .ignore();
        }
        for m in rest.drain(..) {
            if let Msg::Return(r) = m {
                pipe.cmd("EVALSHA").arg(script.get_hash()).arg(6);
                // A lease's return touches its window and holds, never a spend.
                for key in &keys(&r.key_id, i64::MIN) {
                    pipe.arg(key);
                }
                pipe.arg("r")
                    .arg(r.sec)
                    .arg(r.requests)
                    .arg(r.tokens)
                    .arg(&r.hold_id)
                    .arg(r.cost)
                    .ignore();
            }
        }
        // A batch is sent only with the script loaded: every call in it finds the script,
        // or (Redis forgot it meanwhile) none does and the batch is sent again whole.
        for _ in 0..2 {
            if !loaded {
                match script.prepare_invoke().load_async(&mut conn).await {
                    Ok(_) => loaded = true,
                    Err(e) => {
                        tracing::warn!(error = %e, "redis settle failed; holds expire on their own");
                        break;
                    }
                }
            }
            match pipe.query_async::<()>(&mut conn).await {
                Ok(()) => break,
                Err(e) if e.kind() == redis::ErrorKind::NoScriptError => loaded = false,
                Err(e) => {
                    tracing::warn!(error = %e, "redis settle failed; holds expire on their own");
                    break;
                }
            }
        }
        for ack in flushed.drain(..) {
            let _ = ack.send(());
        }
    }
}

/// Settles of one hold and second, summed.
struct Merged {
    up: u64,
    down: u64,
    cost: f64,
    cost_held: f64,
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
