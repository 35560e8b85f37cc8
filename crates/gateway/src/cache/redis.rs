//! The cache on Redis (`[cache] backend = "redis"`): every instance reads the same
//! entries. An entry is a string key with its TTL; an index (a sorted set by expiry, and a
//! hash of sizes with a running byte total) bounds the entries and bytes: each write
//! drops what expired, then the entries closest to expiry until both bounds hold. Each
//! write is one Lua script, so instances writing together keep the index exact.

use ::redis::Script;

use crate::limits::redis::RedisLimits;
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

/// KEYS: index, sizes, bytes. ARGV: prefix, scope tag or '', model tag or ''.
const PURGE: &str = r"
local n = 0
for _, m in ipairs(redis.call('ZRANGE', KEYS[1], 0, -1)) do
  local scope, model = string.match(m, '^([^:]*):([^:]*):')
  if (ARGV[2] == '' or scope == ARGV[2]) and (ARGV[3] == '' or model == ARGV[3]) then
    drop(m)
    n = n + 1
  end
end
return n
";

pub(super) struct RedisCache {
    limits: RedisLimits,
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
    pub(super) fn new(limits: RedisLimits) -> Self {
        Self {
            limits,
            put: Script::new(&format!("{DROP}{PUT}")),
            purge: Script::new(&format!("{DROP}{PURGE}")),
        }
    }

    fn check_up(&self) -> Result<(), String> {
        if self.limits.is_up() {
            Ok(())
        } else {
            Err("redis is marked down".to_owned())
        }
    }

    fn failed(&self, e: &::redis::RedisError) -> String {
        self.limits.mark_down(e);
        format!("redis: {e}")
    }

    pub(super) async fn get(
        &self,
        scope: &str,
        model: &str,
        key: &str,
    ) -> Result<Option<String>, String> {
        self.check_up()?;
        let mut c = self.limits.conn();
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
        let mut c = self.limits.conn();
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
        let mut c = self.limits.conn();
        self.purge
            .key(INDEX)
            .key(SIZES)
            .key(BYTES)
            .arg(PREFIX)
            .arg(key_id.map(tag).unwrap_or_default())
            .arg(model.map(tag).unwrap_or_default())
            .invoke_async::<u64>(&mut c)
            .await
            .map_err(|e| format!("redis: {e}"))
    }

    pub(super) async fn size(&self) -> Result<(i64, i64), String> {
        let mut c = self.limits.conn();
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
