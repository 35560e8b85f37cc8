//! The cache on Redis (`[cache] backend = "redis"`): every instance reads the same
//! entries. An entry is a string key with its TTL; an index (a sorted set by expiry, and a
//! hash of sizes with a running byte total) bounds the entries and bytes: each write
//! drops what expired, then the entries closest to expiry until both bounds hold. Each
//! write is one Lua script, so instances writing together keep the index exact; a purge
//! goes through the index in batches, so Redis is never held long.
//!
//! The cache has its own connection (large answers never queue in front of the limits'
//! scripts) and its own down marker: a cache error never takes the limits off Redis.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use ::redis::Script;

use crate::limits::now_ms as now_u64;
use crate::limits::redis::REDIS_DOWN_MS;
use crate::redis_conn::Shared;
use crate::store::CacheRow;

const PREFIX: &str = "jusinfer:cache:";
const INDEX: &str = "jusinfer:cache-index";
const SIZES: &str = "jusinfer:cache-sizes";
const BYTES: &str = "jusinfer:cache-bytes";

/// Drops one member from the index and its entry.
const DROP: &str = r"
local function drop(m)
  local sz = tonumber(redis.call('HGET', KEYS[2], m) or '0') or 0
  redis.call('HDEL', KEYS[2], m)
  redis.call('ZREM', KEYS[1], m)
  redis.call('DEL', ARGV[1] .. m)
  redis.call('DECRBY', KEYS[3], sz)
end
";

/// KEYS: index, sizes, bytes. ARGV: prefix, member, value, ttl ms, now ms, max entries,
/// max bytes.
const PUT: &str = r"
local now = tonumber(ARGV[5])
for _, m in ipairs(redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now, 'LIMIT', 0, 1000)) do drop(m) end
if redis.call('ZSCORE', KEYS[1], ARGV[2]) then drop(ARGV[2]) end
local size = string.len(ARGV[3])
redis.call('SET', ARGV[1] .. ARGV[2], ARGV[3], 'PX', ARGV[4])
redis.call('ZADD', KEYS[1], now + tonumber(ARGV[4]), ARGV[2])
redis.call('HSET', KEYS[2], ARGV[2], size)
local total = redis.call('INCRBY', KEYS[3], size)
local max_n, max_b = tonumber(ARGV[6]), tonumber(ARGV[7])
while redis.call('ZCARD', KEYS[1]) > max_n or total > max_b do
  local first = redis.call('ZRANGE', KEYS[1], 0, 0)[1]
  if not first then break end
  drop(first)
  total = tonumber(redis.call('GET', KEYS[3]) or '0') or 0
end
return 1
";

/// One batch of a purge. KEYS: index, sizes, bytes. ARGV: prefix, scope tag or '', model
/// tag or '', the rank to start at, the batch size. Returns {purged, next rank or -1}.
const PURGE: &str = r"
local start, size = tonumber(ARGV[4]), tonumber(ARGV[5])
local batch = redis.call('ZRANGE', KEYS[1], start, start + size - 1)
local n = 0
for _, m in ipairs(batch) do
  local scope, model = string.match(m, '^([^:]*):([^:]*):')
  if (ARGV[2] == '' or scope == ARGV[2]) and (ARGV[3] == '' or model == ARGV[3]) then
    drop(m)
    n = n + 1
  end
end
if #batch < size then return {n, -1} end
return {n, start + #batch - n}
";

/// Index entries one purge batch looks at.
const PURGE_BATCH: i64 = 500;

pub(super) struct RedisCache {
    conn: Shared,
    /// Until when (ms) lookups skip Redis after a connection failure.
    down_until_ms: Arc<AtomicU64>,
    put: Script,
    purge: Script,
}

/// A short, fixed-width tag of a scope or model in an entry's member name.
fn tag(s: &str) -> String {
    crate::keys::hex_sha256(s.as_bytes())[..16].to_owned()
}

fn member(scope: &str, model: &str, key: &str) -> String {
    format!("{}:{}:{key}", tag(scope), tag(model))
}

impl RedisCache {
    /// Opens the cache's own connection, supervised as the limits' is.
    pub(super) async fn connect(client: ::redis::Client) -> Result<Self, String> {
        let conn = Shared::new(
            crate::redis_conn::new_manager(&client)
                .await
                .map_err(|e| format!("redis (response cache): {e}"))?,
        );
        let down_until_ms = Arc::new(AtomicU64::new(0));
        tokio::spawn(crate::redis_conn::supervise(
            Arc::downgrade(&down_until_ms),
            conn.clone(),
            client,
            "response cache",
        ));
        Ok(Self {
            conn,
            down_until_ms,
            put: Script::new(&format!("{DROP}{PUT}")),
            purge: Script::new(&format!("{DROP}{PURGE}")),
        })
    }

    fn check_up(&self) -> Result<(), String> {
        if now_u64() >= self.down_until_ms.load(Ordering::Relaxed) {
            Ok(())
        } else {
            Err("redis is marked down".to_owned())
        }
    }

    /// A failed call: a connection that failed marks Redis down for the cache (the
    /// supervisor probes it back); an error Redis answered (out of memory, a script
    /// error) does not.
    fn failed(&self, e: &::redis::RedisError) -> String {
        if e.is_io_error()
            || e.is_connection_dropped()
            || e.is_timeout()
            || e.is_connection_refusal()
        {
            self.down_until_ms
                .store(now_u64() + REDIS_DOWN_MS, Ordering::Relaxed);
        }
        format!("redis: {e}")
    }

    pub(super) async fn get(
        &self,
        scope: &str,
        model: &str,
        key: &str,
    ) -> Result<Option<String>, String> {
        self.check_up()?;
        let mut c = self.conn.get();
        ::redis::cmd("GET")
            .arg(format!("{PREFIX}{}", member(scope, model, key)))
            .query_async(&mut c)
            .await
            .map_err(|e| self.failed(&e))
    }

    pub(super) async fn put(
        &self,
        row: &CacheRow<'_>,
        ttl_ms: i64,
        max_entries: i64,
        max_bytes: i64,
    ) -> Result<(), String> {
        self.check_up()?;
        let mut c = self.conn.get();
        self.put
            .key(INDEX)
            .key(SIZES)
            .key(BYTES)
            .arg(PREFIX)
            .arg(member(row.scope, row.model, row.key))
            .arg(row.entry)
            .arg(ttl_ms.max(1))
            .arg(super::now_ms())
            .arg(max_entries)
            .arg(max_bytes)
            .invoke_async::<i64>(&mut c)
            .await
            .map(|_| ())
            .map_err(|e| self.failed(&e))
    }

    pub(super) async fn purge(
        &self,
        key_id: Option<&str>,
        model: Option<&str>,
    ) -> Result<u64, String> {
        let mut c = self.conn.get();
        let (scope, model) = (
            key_id.map(tag).unwrap_or_default(),
            model.map(tag).unwrap_or_default(),
        );
        let (mut purged, mut start) = (0u64, 0i64);
        while start >= 0 {
            let (n, next): (u64, i64) = self
                .purge
                .key(INDEX)
                .key(SIZES)
                .key(BYTES)
                .arg(PREFIX)
                .arg(&scope)
                .arg(&model)
                .arg(start)
                .arg(PURGE_BATCH)
                .invoke_async(&mut c)
                .await
                .map_err(|e| format!("redis: {e}"))?;
            purged += n;
            start = next;
        }
        Ok(purged)
    }

    pub(super) async fn size(&self) -> Result<(i64, i64), String> {
        let mut c = self.conn.get();
        let n: i64 = ::redis::cmd("ZCARD")
            .arg(INDEX)
            .query_async(&mut c)
            .await
            .map_err(|e| format!("redis: {e}"))?;
        let b: Option<i64> = ::redis::cmd("GET")
            .arg(BYTES)
            .query_async(&mut c)
            .await
            .map_err(|e| format!("redis: {e}"))?;
        Ok((n, b.unwrap_or(0)))
    }
}
