//! What the developer portal reads and writes: its sessions, usage over time, ledger rows.
//!
//! Sessions are rows, not signed cookies, so that every instance on one database honours
//! them, signing out or revoking the key ends them at once, and no server secret has to be
//! shared. Only the SHA-256 of a session token is stored.

use sqlx::Row;

use super::{now, Db, KeyRecord, Store, StoreError, KEY_COLUMNS};

impl KeyRecord {
    /// `active`, `revoked` or `expired`.
    pub fn status(&self) -> &'static str {
        if self.revoked_at.is_some() {
            "revoked"
        } else if self.expires_at.is_some_and(|t| t <= now()) {
            "expired"
        } else {
            "active"
        }
    }
}

/// A signed-in portal session with its key as it is now.
#[derive(Debug, Clone)]
pub struct PortalSession {
    pub key: KeyRecord,
    /// The token every form of this session carries.
    pub csrf: String,
    /// Unix seconds.
    pub expires_at: i64,
}

/// Which ledger rows a portal view covers.
#[derive(Debug, Clone, Default)]
pub struct UsageFilter {
    pub since_ms: i64,
    pub key: Option<String>,
    pub model: Option<String>,
}

/// One time bucket of usage.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize)]
pub struct Bucket {
    /// Unix milliseconds of the bucket's start.
    pub start_ms: i64,
    pub requests: i64,
    pub errors: i64,
    pub prompt_tokens: i64,
    pub completion_tokens: i64,
    pub cost_usd: f64,
}

/// One ledger row as the portal shows it.
#[derive(Debug, Clone, serde::Serialize)]
pub struct UsageRow {
    pub ts_ms: i64,
    pub request_id: String,
    pub key_id: Option<String>,
    pub endpoint: String,
    pub model: String,
    pub provider: Option<String>,
    pub upstream_model: Option<String>,
    pub status: i64,
    pub prompt_tokens: i64,
    pub completion_tokens: i64,
    pub cached_tokens: i64,
    pub reasoning_tokens: i64,
    pub cost_usd: Option<f64>,
    pub latency_ms: i64,
    pub ttft_ms: Option<i64>,
    pub attempts: i64,
    pub stream: bool,
    pub error_type: Option<String>,
}

const FILTER: &str = "ts_ms >= $1 AND ($2 IS NULL OR key_id = $2) AND ($3 IS NULL OR model = $3)";

impl Store {
    /// Stores a session (by the hash of its token).
    pub async fn insert_session(
        &self,
        id_hash: &str,
        key_id: &str,
        csrf: &str,
        expires_at: i64,
    ) -> Result<(), StoreError> {
        let at = now();
        with_pool!(self, |pool, DB| {
            // Expired sessions go whenever a new one starts.
            sqlx::query("DELETE FROM portal_sessions WHERE session_expires <= $1")
                .bind(at)
                .execute(pool)
                .await?;
            sqlx::query("INSERT INTO portal_sessions (id_hash, key_id, csrf, session_created, session_expires) VALUES ($1, $2, $3, $4, $5)")
                .bind(id_hash)
                .bind(key_id)
                .bind(csrf)
                .bind(at)
                .bind(expires_at)
                .execute(pool)
                .await?;
            Ok(())
        })
    }

    /// The unexpired session whose token hashes to `id_hash`, with its key.
    pub async fn session(&self, id_hash: &str) -> Result<Option<PortalSession>, StoreError> {
        with_pool!(self, |pool, DB| {
            let row = sqlx::query(&format!(
                "SELECT {KEY_COLUMNS}, csrf, session_expires FROM portal_sessions JOIN keys ON keys.id = portal_sessions.key_id WHERE id_hash = $1 AND session_expires > $2"
            ))
            .bind(id_hash)
            .bind(now())
            .fetch_optional(pool)
            .await?;
            match row {
                Some(r) => Ok(Some(PortalSession {
                    key: key_from_row!(&r)?,
                    csrf: r.try_get("csrf")?,
                    expires_at: r.try_get("session_expires")?,
                })),
                None => Ok(None),
            }
        })
    }

    pub async fn delete_session(&self, id_hash: &str) -> Result<(), StoreError> {
        with_pool!(self, |pool, DB| {
            sqlx::query("DELETE FROM portal_sessions WHERE id_hash = $1")
                .bind(id_hash)
                .execute(pool)
                .await?;
            Ok(())
        })
    }

    /// Ends every session signed in with key `key_id` (it was revoked).
    pub async fn delete_sessions_of(&self, key_id: &str) -> Result<(), StoreError> {
        with_pool!(self, |pool, DB| {
            sqlx::query("DELETE FROM portal_sessions WHERE key_id = $1")
                .bind(key_id)
                .execute(pool)
                .await?;
            Ok(())
        })
    }

    /// Usage in buckets of `bucket_ms` (aligned to the Unix epoch, so days are UTC days);
    /// only buckets that have rows.
    pub async fn usage_series(
        &self,
        f: &UsageFilter,
        bucket_ms: i64,
    ) -> Result<Vec<Bucket>, StoreError> {
        let sql = format!(
            "SELECT (ts_ms / $4) * $4 AS bucket, COUNT(*) AS requests,
             CAST(SUM(CASE WHEN status >= 400 OR error_type IS NOT NULL THEN 1 ELSE 0 END) AS BIGINT) AS errors,
             CAST(SUM(prompt_tokens) AS BIGINT) AS prompt_tokens,
             CAST(SUM(completion_tokens) AS BIGINT) AS completion_tokens,
             COALESCE(SUM(cost_usd), 0.0) AS cost
             FROM usage WHERE {FILTER} GROUP BY bucket ORDER BY bucket"
        );
        with_pool!(self, |pool, DB| {
            let rows = sqlx::query(&sql)
                .bind(f.since_ms)
                .bind(&f.key)
                .bind(&f.model)
                .bind(bucket_ms.max(1))
                .fetch_all(pool)
                .await?;
            rows.iter()
                .map(|r| {
                    Ok(Bucket {
                        start_ms: r.try_get("bucket")?,
                        requests: r.try_get("requests")?,
                        errors: r.try_get("errors")?,
                        prompt_tokens: r.try_get("prompt_tokens")?,
                        completion_tokens: r.try_get("completion_tokens")?,
                        cost_usd: r.try_get("cost")?,
                    })
                })
                .collect()
        })
    }

    /// Ledger rows, newest first, at most `limit`.
    pub async fn usage_rows(
        &self,
        f: &UsageFilter,
        limit: i64,
    ) -> Result<Vec<UsageRow>, StoreError> {
        let sql = format!(
            "SELECT ts_ms, request_id, key_id, endpoint, model, provider, upstream_model, status,
             prompt_tokens, completion_tokens, cached_tokens, reasoning_tokens, cost_usd,
             latency_ms, ttft_ms, attempts, stream, error_type
             FROM usage WHERE {FILTER} ORDER BY ts_ms DESC, request_id LIMIT $4"
        );
        with_pool!(self, |pool, DB| {
            let rows = sqlx::query(&sql)
                .bind(f.since_ms)
                .bind(&f.key)
                .bind(&f.model)
                .bind(limit)
                .fetch_all(pool)
                .await?;
            rows.iter()
                .map(|r| {
                    Ok(UsageRow {
                        ts_ms: r.try_get("ts_ms")?,
                        request_id: r.try_get("request_id")?,
                        key_id: r.try_get("key_id")?,
                        endpoint: r.try_get("endpoint")?,
                        model: r.try_get("model")?,
                        provider: r.try_get("provider")?,
                        upstream_model: r.try_get("upstream_model")?,
                        status: r.try_get("status")?,
                        prompt_tokens: r.try_get("prompt_tokens")?,
                        completion_tokens: r.try_get("completion_tokens")?,
                        cached_tokens: r.try_get("cached_tokens")?,
                        reasoning_tokens: r.try_get("reasoning_tokens")?,
                        cost_usd: r.try_get("cost_usd")?,
                        latency_ms: r.try_get("latency_ms")?,
                        ttft_ms: r.try_get("ttft_ms")?,
                        attempts: r.try_get("attempts")?,
                        stream: r.try_get("stream")?,
                        error_type: r.try_get("error_type")?,
                    })
                })
                .collect()
        })
    }

    /// The requested model names in the window (for the portal's filter), most used first.
    pub async fn usage_models(&self, f: &UsageFilter) -> Result<Vec<String>, StoreError> {
        let sql = format!(
            "SELECT model FROM usage WHERE {FILTER} GROUP BY model ORDER BY COUNT(*) DESC, model LIMIT 200"
        );
        with_pool!(self, |pool, DB| {
            let rows = sqlx::query(&sql)
                .bind(f.since_ms)
                .bind(&f.key)
                .bind(None::<String>)
                .fetch_all(pool)
                .await?;
            rows.iter().map(|r| Ok(r.try_get("model")?)).collect()
        })
    }
}
