//! Persistent state behind one type: keys, the usage ledger and (later) stored responses,
//! on SQLite (the embedded default, created and migrated on first open) or PostgreSQL
//! (many instances sharing one database), chosen by the `database` URL.
//!
//! Both backends run the same SQL text (`$N` placeholders, which SQLite also accepts); only
//! the DDL differs. Invariant: nothing on the request path awaits the store except a
//! key-cache miss, the first budget check of a key and a response-cache lookup (bounded).

use std::str::FromStr;
use std::time::Duration;

use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::{PgPool, SqlitePool};

pub use portal::{Cell, PortalSession, UsageFilter, UsageRow, HOUR_MS};

/// A store failure.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{0}")]
pub struct StoreError(String);

impl StoreError {
    /// The store did not answer in time.
    pub fn timed_out(what: &str) -> Self {
        Self(format!("database did not answer in time ({what})"))
    }
}

impl From<sqlx::Error> for StoreError {
    fn from(e: sqlx::Error) -> Self {
        Self(format!("database error: {e}"))
    }
}

#[derive(Clone)]
enum Db {
    Sqlite(SqlitePool),
    Postgres(PgPool),
}

/// Runs `$body` with `$pool` bound to the concrete pool and `$DB` to its database type.
macro_rules! with_pool {
    ($self:expr, |$pool:ident, $DB:ident| $body:expr) => {
        match &$self.db {
            Db::Sqlite($pool) => {
                type $DB = sqlx::Sqlite;
                // Used, so that bodies that never name it need no lint exception.
                let _: std::marker::PhantomData<$DB> = std::marker::PhantomData;
                $body
            }
            Db::Postgres($pool) => {
                type $DB = sqlx::Postgres;
                // Used, so that bodies that never name it need no lint exception.
                let _: std::marker::PhantomData<$DB> = std::marker::PhantomData;
                $body
            }
        }
    };
}

/// A `KeyRecord` from a row of either backend.
macro_rules! key_from_row {
    ($r:expr) => {{
        let r = $r;
        let models: String = r.try_get("models")?;
        let metadata: String = r.try_get("metadata")?;
        Ok::<KeyRecord, StoreError>(KeyRecord {
            id: r.try_get("id")?,
            name: r.try_get("name")?,
            prefix: r.try_get("prefix")?,
            hash: r.try_get("hash")?,
            admin: r.try_get("admin")?,
            created_at: r.try_get("created_at")?,
            expires_at: r.try_get("expires_at")?,
            revoked_at: r.try_get("revoked_at")?,
            budget_usd: r.try_get("budget_usd")?,
            budget_period: r
                .try_get::<Option<String>, _>("budget_period")?
                .and_then(|p| p.parse().ok()),
            rpm: r.try_get("rpm")?,
            tpm: r.try_get("tpm")?,
            models: serde_json::from_str(&models).unwrap_or_default(),
            metadata: serde_json::from_str(&metadata).unwrap_or(serde_json::Value::Null),
            cache: r.try_get("cache")?,
        })
    }};
}

// After the macros above: the portal's queries use them.
mod cache;
mod keys;
mod ledger;
mod portal;
mod redact;
mod responses;
mod schema;

pub use cache::CacheRow;
pub use redact::redact;
pub use responses::{Conversation, ResponseWriter, StoredResponse, Turn, MAX_ITEM_LOOKUPS};

use keys::KEY_COLUMNS;
pub use keys::{KeyPatch, KeyRecord, KeyStats};
pub use ledger::{GroupBy, UsageQuery, UsageSummary};

#[derive(Clone)]
pub struct Store {
    db: Db,
}

impl Store {
    /// Whether this is the embedded SQLite database (one process's own file).
    pub fn is_sqlite(&self) -> bool {
        matches!(self.db, Db::Sqlite(_))
    }

    /// Opens (creating if needed) and migrates the database at `url`: `sqlite://FILE` or
    /// `postgres://USER@HOST/DB`.
    pub async fn open(url: &str) -> Result<Self, StoreError> {
        let db = if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            let opts = PgConnectOptions::from_str(url)
                .map_err(|e| StoreError(format!("database {}: {e}", redact(url))))?;
            let pool = PgPoolOptions::new()
                .max_connections(16)
                // A database that is down must fail a ledger write or key lookup quickly
                // (the ledger holds and retries; lookups fall back to the cache).
                .acquire_timeout(Duration::from_secs(2))
                .connect_with(opts)
                .await
                .map_err(|e| StoreError(format!("database {}: {e}", redact(url))))?;
            Db::Postgres(pool)
        } else if url.starts_with("sqlite:") {
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
            Db::Sqlite(pool)
        } else {
            return Err(StoreError(format!(
                "database {:?}: expected sqlite://FILE or postgres://USER@HOST/DB",
                redact(url)
            )));
        };
        let store = Self { db };
        store.migrate().await?;
        Ok(store)
    }

    /// Whether the database answers (for `/readyz`).
    pub async fn ping(&self) -> Result<(), StoreError> {
        with_pool!(self, |pool, DB| {
            sqlx::query("SELECT 1").execute(pool).await?;
            Ok(())
        })
    }

    #[cfg(test)]
    pub(crate) async fn count_usage_for_tests(&self) -> Result<i64, StoreError> {
        with_pool!(self, |pool, DB| {
            Ok(sqlx::query_scalar("SELECT COUNT(*) FROM usage")
                .fetch_one(pool)
                .await?)
        })
    }

    #[cfg(test)]
    pub(crate) async fn count_for_tests(&self, sql: &str) -> Result<i64, StoreError> {
        with_pool!(self, |pool, DB| {
            Ok(sqlx::query_scalar(sql).fetch_one(pool).await?)
        })
    }

    #[cfg(test)]
    pub(crate) async fn execute_for_tests(&self, sql: &str) -> Result<(), StoreError> {
        with_pool!(self, |pool, DB| {
            sqlx::raw_sql(sql).execute(pool).await?;
            Ok(())
        })
    }

    pub async fn close(&self) {
        with_pool!(self, |pool, DB| pool.close().await);
    }
}

/// Unix seconds.
pub fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}

#[cfg(test)]
mod tests {
    #[test]
    fn passwords_are_redacted() {
        assert_eq!(
            super::redact("postgres://u:secret@h:5432/db"),
            "postgres://u:****@h:5432/db"
        );
        assert_eq!(super::redact("sqlite://x.db"), "sqlite://x.db");
        assert_eq!(
            super::redact("redis://:hunter2@cache:6379/0"),
            "redis://:****@cache:6379/0"
        );
        assert_eq!(
            super::redact("postgres://u@h/db?sslmode=require&password=hunter2"),
            // A bare userinfo may be a token: hidden too.
            "postgres://****@h/db?sslmode=require&password=****"
        );
    }
}
