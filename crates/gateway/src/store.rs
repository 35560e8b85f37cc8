//! Persistent state behind one type: keys today, the usage ledger and stored responses
//! later. SQLite is the embedded default, created and migrated on first open.
//!
//! Invariant: nothing on the request path awaits the store except a key-cache miss.

use std::str::FromStr;
use std::time::Duration;

use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::{Row, SqlitePool};

use crate::ledger::UsageRecord;

/// What `jusinfer usage` asks for.
#[derive(Debug, Clone)]
pub struct UsageQuery {
    pub since_ms: i64,
    pub key: Option<String>,
    pub by: GroupBy,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GroupBy {
    Model,
    Key,
    Provider,
}

/// One line of a usage summary.
#[derive(Debug, Clone, serde::Serialize)]
pub struct UsageSummary {
    pub group: String,
    pub requests: i64,
    pub errors: i64,
    pub prompt_tokens: i64,
    pub completion_tokens: i64,
    pub cached_tokens: i64,
    /// `None` when no row of the group had a known price.
    pub cost_usd: Option<f64>,
    /// Rows with tokens but no known price.
    pub unpriced: i64,
}

/// A store failure.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct StoreError(String);

impl From<sqlx::Error> for StoreError {
    fn from(e: sqlx::Error) -> Self {
        Self(format!("database error: {e}"))
    }
}

/// Schema migrations, applied in order once each.
const MIGRATIONS: &[(i64, &str)] = &[
    (
        1,
        "CREATE TABLE keys (
        id          TEXT PRIMARY KEY,
        name        TEXT NOT NULL,
        prefix      TEXT NOT NULL,
        hash        TEXT NOT NULL UNIQUE,
        admin       INTEGER NOT NULL DEFAULT 0,
        created_at  INTEGER NOT NULL,
        expires_at  INTEGER,
        revoked_at  INTEGER,
        budget_usd  REAL,
        rpm         INTEGER,
        tpm         INTEGER,
        models      TEXT NOT NULL DEFAULT '[]',
        metadata    TEXT NOT NULL DEFAULT '{}'
    )",
    ),
    (
        2,
        "CREATE TABLE usage (
        ts_ms             INTEGER NOT NULL,
        request_id        TEXT NOT NULL,
        key_id            TEXT,
        endpoint          TEXT NOT NULL,
        model             TEXT NOT NULL,
        provider          TEXT,
        upstream_model    TEXT,
        status            INTEGER NOT NULL,
        prompt_tokens     INTEGER NOT NULL,
        completion_tokens INTEGER NOT NULL,
        cached_tokens     INTEGER NOT NULL,
        reasoning_tokens  INTEGER NOT NULL,
        cost_usd          REAL,
        latency_ms        INTEGER NOT NULL,
        ttft_ms           INTEGER,
        attempts          INTEGER NOT NULL,
        stream            INTEGER NOT NULL,
        error_type        TEXT
    );
    CREATE INDEX usage_ts ON usage (ts_ms);
    CREATE INDEX usage_key_ts ON usage (key_id, ts_ms)",
    ),
];

/// A key as stored (never the key itself: its SHA-256 and a display prefix).
#[derive(Debug, Clone, serde::Serialize)]
pub struct KeyRecord {
    pub id: String,
    pub name: String,
    pub prefix: String,
    #[serde(skip)]
    pub hash: String,
    pub admin: bool,
    pub created_at: i64,
    pub expires_at: Option<i64>,
    pub revoked_at: Option<i64>,
    pub budget_usd: Option<f64>,
    pub rpm: Option<i64>,
    pub tpm: Option<i64>,
    pub models: Vec<String>,
    pub metadata: serde_json::Value,
}

#[derive(Clone)]
pub struct Store {
    pool: SqlitePool,
}

impl Store {
    /// Opens (creating if needed) and migrates the database at `url`.
    pub async fn open(url: &str) -> Result<Self, StoreError> {
        if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            return Err(StoreError(format!(
                "database {url:?}: PostgreSQL is not supported by this build yet; use sqlite://FILE"
            )));
        }
        if !url.starts_with("sqlite:") {
            return Err(StoreError(format!(
                "database {url:?}: expected sqlite://FILE"
            )));
        }
        let opts = SqliteConnectOptions::from_str(url)
            .map_err(|e| StoreError(format!("database {url:?}: {e}")))?
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            // WAL + NORMAL: no fsync per commit (the ledger commits often); the database
            // stays consistent, at worst the last commits before a power cut are lost.
            .synchronous(SqliteSynchronous::Normal)
            .busy_timeout(Duration::from_secs(5));
        let pool = SqlitePoolOptions::new()
            .max_connections(4)
            .connect_with(opts)
            .await
            .map_err(|e| StoreError(format!("database {url:?}: {e}")))?;
        let store = Self { pool };
        store.migrate().await?;
        Ok(store)
    }

    async fn migrate(&self) -> Result<(), StoreError> {
        sqlx::query("CREATE TABLE IF NOT EXISTS schema_migrations (version INTEGER PRIMARY KEY, applied_at INTEGER NOT NULL)")
            .execute(&self.pool)
            .await?;
        for (version, sql) in MIGRATIONS {
            let mut tx = self.pool.begin().await?;
            let done: Option<i64> =
                sqlx::query_scalar("SELECT version FROM schema_migrations WHERE version = ?")
                    .bind(version)
                    .fetch_optional(&mut *tx)
                    .await?;
            if done.is_none() {
                sqlx::raw_sql(sql).execute(&mut *tx).await?;
                sqlx::query("INSERT INTO schema_migrations (version, applied_at) VALUES (?, ?)")
                    .bind(version)
                    .bind(now())
                    .execute(&mut *tx)
                    .await?;
            }
            tx.commit().await?;
        }
        Ok(())
    }

    pub async fn insert_key(&self, k: &KeyRecord) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO keys (id, name, prefix, hash, admin, created_at, expires_at, revoked_at, budget_usd, rpm, tpm, models, metadata)
             VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        )
        .bind(&k.id)
        .bind(&k.name)
        .bind(&k.prefix)
        .bind(&k.hash)
        .bind(k.admin)
        .bind(k.created_at)
        .bind(k.expires_at)
        .bind(k.revoked_at)
        .bind(k.budget_usd)
        .bind(k.rpm)
        .bind(k.tpm)
        .bind(serde_json::to_string(&k.models).unwrap_or_else(|_| "[]".to_owned()))
        .bind(k.metadata.to_string())
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    pub async fn key_by_hash(&self, hash: &str) -> Result<Option<KeyRecord>, StoreError> {
        let row = sqlx::query("SELECT * FROM keys WHERE hash = ?")
            .bind(hash)
            .fetch_optional(&self.pool)
            .await?;
        row.map(|r| row_to_key(&r)).transpose()
    }

    pub async fn list_keys(&self) -> Result<Vec<KeyRecord>, StoreError> {
        let rows = sqlx::query("SELECT * FROM keys ORDER BY created_at, rowid")
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(row_to_key).collect()
    }

    pub async fn count_keys(&self) -> Result<i64, StoreError> {
        Ok(sqlx::query_scalar("SELECT COUNT(*) FROM keys")
            .fetch_one(&self.pool)
            .await?)
    }

    /// Revokes the key whose id or display prefix is `id_or_prefix`; errors unless exactly
    /// one live key matches.
    pub async fn revoke_key(&self, id_or_prefix: &str) -> Result<KeyRecord, StoreError> {
        let rows = sqlx::query("SELECT * FROM keys WHERE (id = ? OR prefix = ? OR prefix LIKE ?) AND revoked_at IS NULL")
            .bind(id_or_prefix)
            .bind(id_or_prefix)
            .bind(format!("{}%", id_or_prefix.replace(['%', '_'], "")))
            .fetch_all(&self.pool)
            .await?;
        let keys: Vec<KeyRecord> = rows.iter().map(row_to_key).collect::<Result<_, _>>()?;
        let exact: Vec<&KeyRecord> = keys
            .iter()
            .filter(|k| k.id == id_or_prefix || k.prefix == id_or_prefix)
            .collect();
        let target = match (exact.as_slice(), keys.as_slice()) {
            ([one], _) => (*one).clone(),
            ([], [one]) => one.clone(),
            ([], []) => {
                return Err(StoreError(format!(
                    "no live key matches {id_or_prefix:?}; see `jusinfer keys list`"
                )))
            }
            _ => {
                return Err(StoreError(format!(
                    "{id_or_prefix:?} matches {} keys; give the full id from `jusinfer keys list`",
                    keys.len()
                )))
            }
        };
        sqlx::query("UPDATE keys SET revoked_at = ? WHERE id = ?")
            .bind(now())
            .bind(&target.id)
            .execute(&self.pool)
            .await?;
        Ok(KeyRecord {
            revoked_at: Some(now()),
            ..target
        })
    }

    /// Appends ledger rows in one transaction, many rows per statement (one statement per
    /// row made SQLite the gateway's largest cost at 20k req/s).
    pub async fn insert_usage(&self, rows: &[UsageRecord]) -> Result<(), StoreError> {
        /// 18 columns × 400 rows stays under SQLite's bound-variable limit.
        const ROWS_PER_STATEMENT: usize = 400;
        let mut tx = self.pool.begin().await?;
        for chunk in rows.chunks(ROWS_PER_STATEMENT) {
            let mut q = sqlx::QueryBuilder::<sqlx::Sqlite>::new(
                "INSERT INTO usage (ts_ms, request_id, key_id, endpoint, model, provider, upstream_model, status,
                 prompt_tokens, completion_tokens, cached_tokens, reasoning_tokens, cost_usd, latency_ms, ttft_ms,
                 attempts, stream, error_type) ",
            );
            let int = |v: u64| i64::try_from(v).unwrap_or(i64::MAX);
            q.push_values(chunk, |mut b, r| {
                b.push_bind(r.ts_ms)
                    .push_bind(&r.request_id)
                    .push_bind(&r.key_id)
                    .push_bind(&r.endpoint)
                    .push_bind(&r.model)
                    .push_bind(&r.provider)
                    .push_bind(&r.upstream_model)
                    .push_bind(i64::from(r.status))
                    .push_bind(int(r.prompt_tokens))
                    .push_bind(int(r.completion_tokens))
                    .push_bind(int(r.cached_tokens))
                    .push_bind(int(r.reasoning_tokens))
                    .push_bind(r.cost_usd)
                    .push_bind(int(r.latency_ms))
                    .push_bind(r.ttft_ms.map(int))
                    .push_bind(i64::from(r.attempts))
                    .push_bind(r.stream)
                    .push_bind(&r.error_type);
            });
            q.build().execute(&mut *tx).await?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// Requests, tokens and cost since `since_ms`, grouped by `by`.
    pub async fn usage_summary(&self, q: &UsageQuery) -> Result<Vec<UsageSummary>, StoreError> {
        let col = match q.by {
            GroupBy::Model => "model",
            GroupBy::Key => "COALESCE(key_id, '-')",
            GroupBy::Provider => "COALESCE(provider, '-')",
        };
        let sql = format!(
            "SELECT {col} AS grp, COUNT(*) AS requests, SUM(CASE WHEN status >= 400 OR error_type IS NOT NULL THEN 1 ELSE 0 END) AS errors,
             SUM(prompt_tokens) AS prompt_tokens, SUM(completion_tokens) AS completion_tokens, SUM(cached_tokens) AS cached_tokens,
             SUM(cost_usd) AS cost_usd, SUM(CASE WHEN cost_usd IS NULL AND prompt_tokens + completion_tokens > 0 THEN 1 ELSE 0 END) AS unpriced
             FROM usage WHERE ts_ms >= ? AND (? IS NULL OR key_id = ?) GROUP BY grp ORDER BY requests DESC, grp"
        );
        let rows = sqlx::query(&sql)
            .bind(q.since_ms)
            .bind(&q.key)
            .bind(&q.key)
            .fetch_all(&self.pool)
            .await?;
        rows.iter()
            .map(|r| {
                Ok(UsageSummary {
                    group: r.try_get("grp")?,
                    requests: r.try_get("requests")?,
                    errors: r.try_get("errors")?,
                    prompt_tokens: r.try_get("prompt_tokens")?,
                    completion_tokens: r.try_get("completion_tokens")?,
                    cached_tokens: r.try_get("cached_tokens")?,
                    cost_usd: r.try_get("cost_usd")?,
                    unpriced: r.try_get("unpriced")?,
                })
            })
            .collect()
    }

    #[cfg(test)]
    pub(crate) async fn execute_for_tests(&self, sql: &str) -> Result<(), StoreError> {
        sqlx::raw_sql(sql).execute(&self.pool).await?;
        Ok(())
    }

    #[cfg(test)]
    pub(crate) async fn count_usage_for_tests(&self) -> Result<i64, StoreError> {
        Ok(sqlx::query_scalar("SELECT COUNT(*) FROM usage")
            .fetch_one(&self.pool)
            .await?)
    }

    pub async fn close(&self) {
        self.pool.close().await;
    }
}

fn row_to_key(r: &sqlx::sqlite::SqliteRow) -> Result<KeyRecord, StoreError> {
    let models: String = r.try_get("models")?;
    let metadata: String = r.try_get("metadata")?;
    Ok(KeyRecord {
        id: r.try_get("id")?,
        name: r.try_get("name")?,
        prefix: r.try_get("prefix")?,
        hash: r.try_get("hash")?,
        admin: r.try_get("admin")?,
        created_at: r.try_get("created_at")?,
        expires_at: r.try_get("expires_at")?,
        revoked_at: r.try_get("revoked_at")?,
        budget_usd: r.try_get("budget_usd")?,
        rpm: r.try_get("rpm")?,
        tpm: r.try_get("tpm")?,
        models: serde_json::from_str(&models).unwrap_or_default(),
        metadata: serde_json::from_str(&metadata).unwrap_or(serde_json::Value::Null),
    })
}

/// Unix seconds.
pub fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}
