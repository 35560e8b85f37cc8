//! Limits shared by every instance through Redis (see [`crate::limits`] for the rules).
//!
//! Admission is one Lua script per request (atomic in Redis: no read-modify-write race
//! between instances), with Redis's own clock, so instances whose clocks differ still agree.
//! Settling goes through a channel to one task that sends the settles of many requests in
//! one pipeline. Keys per API key `K`:
//!
//! - `jinf:{K}:req` — sorted set of the admitted requests of the last minute (RPM log);
//! - `jinf:{K}:tok` — hash second → tokens (TPM window);
//! - `jinf:{K}:spend` — the key's spend in USD, loaded from the ledger on first use;
//! - `jinf:{K}:held` — hash hold id → `cost|admitted_ms` of the requests in flight; holds
//!   older than [`HOLD_TTL_MS`] (an instance that died mid-request) are dropped.
//!
//! Key changes (revoke, update) are published on [`KEYS_CHANNEL`], so every instance drops
//! its cached copy at once.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

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

const ADMIT: &str = r"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local rpm = tonumber(ARGV[1])
local tpm = tonumber(ARGV[2])
local budget = tonumber(ARGV[3])
local est = tonumber(ARGV[4])
local cost = tonumber(ARGV[5])
local hold = ARGV[6]
local window = 60000
local spent = 0
if budget >= 0 then
  local s = redis.call('GET', KEYS[3])
  if not s then return {-1} end
  spent = tonumber(s)
  local held = 0
  local holds = redis.call('HGETALL', KEYS[4])
  for i = 1, #holds, 2 do
    local c, at = string.match(holds[i + 1], '([^|]+)|(.+)')
    if tonumber(at) + tonumber(ARGV[7]) < now then
      redis.call('HDEL', KEYS[4], holds[i])
    else
      held = held + tonumber(c)
    end
  end
  if spent + held >= budget then return {3, 0, 0, 0, 0, tostring(spent)} end
end
local req_count = 0
local req_reset = 0
if rpm > 0 then
  redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - window)
  req_count = redis.call('ZCARD', KEYS[1])
  if req_count > 0 then
    local oldest = tonumber(redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')[2])
    req_reset = oldest + window - now
  end
  if req_count >= rpm then return {1, req_count, req_reset, 0, 0, tostring(spent)} end
end
local sec = math.floor(now / 1000)
local tok_used = 0
local tok_oldest = -1
if tpm > 0 then
  local buckets = redis.call('HGETALL', KEYS[2])
  for i = 1, #buckets, 2 do
    local s = tonumber(buckets[i])
    if s <= sec - 60 then
      redis.call('HDEL', KEYS[2], buckets[i])
    else
      tok_used = tok_used + tonumber(buckets[i + 1])
      if tok_oldest < 0 or s < tok_oldest then tok_oldest = s end
    end
  end
  local tok_reset = 0
  if tok_oldest >= 0 then tok_reset = (tok_oldest + 60) * 1000 - now end
  if tok_used + est > tpm then return {2, req_count, req_reset, tok_used, tok_reset, tostring(spent)} end
end
if rpm > 0 then
  redis.call('ZADD', KEYS[1], now, hold)
  redis.call('PEXPIRE', KEYS[1], window + 1000)
  req_count = req_count + 1
  if req_count == 1 then req_reset = window end
end
if tpm > 0 then
  redis.call('HINCRBY', KEYS[2], sec, est)
  redis.call('EXPIRE', KEYS[2], 62)
  tok_used = tok_used + est
  if tok_oldest < 0 then tok_oldest = sec end
end
if budget >= 0 and cost > 0 then
  redis.call('HSET', KEYS[4], hold, tostring(cost) .. '|' .. now)
end
local tok_reset = 0
if tok_oldest >= 0 then tok_reset = (tok_oldest + 60) * 1000 - now end
return {0, req_count, req_reset, tok_used, tok_reset, tostring(spent)}
";

const SETTLE: &str = r"
local t = redis.call('TIME')
local sec = tonumber(t[1])
local delta = tonumber(ARGV[1])
if delta ~= 0 and ARGV[4] == '1' then
  redis.call('HINCRBY', KEYS[1], sec, delta)
  redis.call('EXPIRE', KEYS[1], 62)
end
if ARGV[5] == '1' then
  redis.call('HDEL', KEYS[3], ARGV[3])
  local cost = tonumber(ARGV[2])
  if cost > 0 and redis.call('EXISTS', KEYS[2]) == 1 then
    redis.call('INCRBYFLOAT', KEYS[2], ARGV[2])
  end
end
return 0
";

/// The Redis side of [`crate::limits::Limits`].
#[derive(Clone)]
pub struct RedisLimits {
    conn: ConnectionManager,
    admit: Arc<redis::Script>,
    settle_tx: mpsc::Sender<Settle>,
    last_warn_ms: Arc<AtomicU64>,
}

fn keys(id: &str) -> [String; 4] {
    [
        format!("jinf:{{{id}}}:req"),
        format!("jinf:{{{id}}}:tok"),
        format!("jinf:{{{id}}}:spend"),
        format!("jinf:{{{id}}}:held"),
    ]
}

impl RedisLimits {
    /// Connects to `url` and starts the settle task.
    pub async fn connect(url: &str) -> Result<(Self, redis::Client), String> {
        let client = redis::Client::open(url).map_err(|e| format!("redis {url:?}: {e}"))?;
        let cfg = redis::aio::ConnectionManagerConfig::new()
            .set_connection_timeout(Duration::from_secs(2))
            .set_response_timeout(Duration::from_secs(2))
            .set_number_of_retries(2);
        let conn = ConnectionManager::new_with_config(client.clone(), cfg)
            .await
            .map_err(|e| format!("redis {url:?}: {e}"))?;
        let (settle_tx, rx) = mpsc::channel(SETTLE_QUEUE);
        tokio::spawn(settler(conn.clone(), rx));
        Ok((
            Self {
                conn,
                admit: Arc::new(redis::Script::new(ADMIT)),
                settle_tx,
                last_warn_ms: Arc::new(AtomicU64::new(0)),
            },
            client,
        ))
    }

    pub async fn admit(
        &self,
        ask: &Ask,
        hold_id: &str,
        store: &Store,
    ) -> Result<Decision, redis::RedisError> {
        let k = keys(&ask.key_id);
        let mut conn = self.conn.clone();
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
                .arg(hold_id)
                .arg(HOLD_TTL_MS);
            let reply: Vec<redis::Value> = inv.invoke_async(&mut conn).await?;
            let int = |i: usize| match reply.get(i) {
                Some(redis::Value::Int(n)) => u64::try_from(*n).unwrap_or(0),
                _ => 0,
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
                    .arg(&k[2])
                    .arg(spent)
                    .arg("NX")
                    .query_async(&mut conn)
                    .await?;
                continue;
            }
            let spent = match reply.get(5) {
                Some(redis::Value::BulkString(b)) => std::str::from_utf8(b)
                    .ok()
                    .and_then(|s| s.parse::<f64>().ok())
                    .unwrap_or(0.0),
                _ => 0.0,
            };
            let (req_count, req_reset, tok_used, tok_reset) = (int(1), int(2), int(3), int(4));
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
                        remaining: rpm.saturating_sub(req_count),
                        reset_ms: req_reset,
                    }),
                    tokens: ask.tpm.filter(|_| code != 1).map(|tpm| Window {
                        limit: tpm,
                        remaining: tpm.saturating_sub(tok_used),
                        reset_ms: tok_reset,
                    }),
                }
            };
            return Ok(Decision { refused, headers });
        }
        Err(redis::RedisError::from((
            redis::ErrorKind::ResponseError,
            "spend was not loaded",
        )))
    }

    pub fn settle(&self, s: Settle) {
        if self.settle_tx.try_send(s).is_err() {
            tracing::warn!("redis settle queue is full: a request's usage was not settled");
        }
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

async fn settler(mut conn: ConnectionManager, mut rx: mpsc::Receiver<Settle>) {
    let script = redis::Script::new(SETTLE);
    let mut batch = Vec::with_capacity(SETTLE_BATCH);
    while rx.recv_many(&mut batch, SETTLE_BATCH).await > 0 {
        // Load the script once per batch (EVALSHA below needs it cached in Redis).
        let loaded: Result<String, _> = script.prepare_invoke().load_async(&mut conn).await;
        if let Err(e) = loaded {
            tracing::warn!(error = %e, rows = batch.len(), "redis settle failed; holds expire on their own");
            batch.clear();
            continue;
        }
        let mut pipe = redis::pipe();
        for s in batch.drain(..) {
            let k = keys(&s.key_id);
            let delta = i64::try_from(s.tokens_used).unwrap_or(i64::MAX)
                - i64::try_from(s.tokens_held).unwrap_or(i64::MAX);
            pipe.cmd("EVALSHA")
                .arg(script.get_hash())
                .arg(3)
                .arg(&k[1])
                .arg(&k[2])
                .arg(&k[3])
                .arg(delta)
                .arg(s.cost)
                .arg(&s.hold_id)
                .arg(if s.tpm { "1" } else { "0" })
                .arg(if s.budget { "1" } else { "0" })
                .ignore();
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
