//! The exact response cache's table (`crate::cache`): one row per entry, read by key,
//! written by the cache's writer task, bounded in rows and bytes by evicting the oldest.

use sqlx::Row;

use super::{Db, Store, StoreError};

/// One entry as the table holds it.
pub struct CacheRow<'a> {
    pub key: &'a str,
    /// The key id it belongs to, or `*` (shared by an alias's keys).
    pub scope: &'a str,
    pub model: &'a str,
    pub created_at: i64,
    pub expires_at: i64,
    pub entry: &'a str,
}

/// Rows evicted per statement while the table is over a bound.
const EVICT_CHUNK: i64 = 64;

impl Store {
    /// The entry under `key` unless it expired by `now_ms`.
    pub async fn cache_get(&self, key: &str, now_ms: i64) -> Result<Option<String>, StoreError> {
        with_pool!(self, |pool, DB| {
            let v: Option<String> = sqlx::query_scalar(
                "SELECT entry FROM response_cache WHERE key = $1 AND expires_at > $2",
            )
            .bind(key)
            .bind(now_ms)
            .fetch_optional(pool)
            .await?;
            Ok(v)
        })
    }

    /// Writes `row`, replacing an entry under its key.
    pub async fn cache_put(&self, row: &CacheRow<'_>) -> Result<(), StoreError> {
        let bytes = i64::try_from(row.entry.len()).unwrap_or(i64::MAX);
        with_pool!(self, |pool, DB| {
            sqlx::query(
                "INSERT INTO response_cache (key, scope, model, created_at, expires_at, bytes, entry)
                 VALUES ($1, $2, $3, $4, $5, $6, $7)
                 ON CONFLICT (key) DO UPDATE SET scope = excluded.scope, model = excluded.model,
                 created_at = excluded.created_at, expires_at = excluded.expires_at,
                 bytes = excluded.bytes, entry = excluded.entry",
            )
            .bind(row.key)
            .bind(row.scope)
            .bind(row.model)
            .bind(row.created_at)
            .bind(row.expires_at)
            .bind(bytes)
            .bind(row.entry)
            .execute(pool)
            .await?;
            Ok(())
        })
    }

    /// Drops the entries expired by `now_ms`; then, when more than `max_rows` rows or
    /// `max_bytes` bytes are left, the oldest until 90% of each is (so that a full table
    /// is not trimmed again at the next write). The rows and bytes left.
    pub async fn cache_trim(
        &self,
        now_ms: i64,
        max_rows: i64,
        max_bytes: i64,
    ) -> Result<(i64, i64), StoreError> {
        with_pool!(self, |pool, DB| {
            sqlx::query("DELETE FROM response_cache WHERE expires_at <= $1")
                .bind(now_ms)
                .execute(pool)
                .await?;
            // Each round removes at least one row, so this ends.
            let mut over = false;
            loop {
                let r = sqlx::query(
                    "SELECT COUNT(*) AS n, CAST(COALESCE(SUM(bytes), 0) AS BIGINT) AS b FROM response_cache",
                )
                .fetch_one(pool)
                .await?;
                let n: i64 = r.try_get("n")?;
                let b: i64 = r.try_get::<Option<i64>, _>("b")?.unwrap_or(0);
                over |= n > max_rows || b > max_bytes;
                let (keep_rows, keep_bytes) = if over {
                    (max_rows - max_rows / 10, max_bytes - max_bytes / 10)
                } else {
                    (max_rows, max_bytes)
                };
                if n <= keep_rows && b <= keep_bytes {
                    return Ok((n, b));
                }
                let evict = if n > keep_rows {
                    (n - keep_rows).max(1)
                } else {
                    EVICT_CHUNK.min(n)
                };
                sqlx::query(
                    "DELETE FROM response_cache WHERE key IN
                     (SELECT key FROM response_cache ORDER BY created_at LIMIT $1)",
                )
                .bind(evict)
                .execute(pool)
                .await?;
            }
        })
    }

    /// Deletes the entries of `scope` (a key id) and/or `model` (all when both are
    /// `None`); how many went.
    pub async fn cache_purge(
        &self,
        scope: Option<&str>,
        model: Option<&str>,
    ) -> Result<u64, StoreError> {
        with_pool!(self, |pool, DB| {
            let r = sqlx::query(
                "DELETE FROM response_cache WHERE (CAST($1 AS TEXT) IS NULL OR scope = $1)
                 AND (CAST($2 AS TEXT) IS NULL OR model = $2)",
            )
            .bind(scope)
            .bind(model)
            .execute(pool)
            .await?;
            Ok(r.rows_affected())
        })
    }

    /// Entries and their bytes, expired ones included until the next write sweeps them.
    pub async fn cache_size(&self) -> Result<(i64, i64), StoreError> {
        with_pool!(self, |pool, DB| {
            let r = sqlx::query(
                "SELECT COUNT(*) AS n, CAST(COALESCE(SUM(bytes), 0) AS BIGINT) AS b FROM response_cache",
            )
            .fetch_one(pool)
            .await?;
            Ok((
                r.try_get("n")?,
                r.try_get::<Option<i64>, _>("b")?.unwrap_or(0),
            ))
        })
    }
}
