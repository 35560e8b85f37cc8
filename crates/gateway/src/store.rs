//! Persistent state behind one type: keys today, the usage ledger and stored responses
//! later. SQLite is the embedded default, created and migrated on first open.
//!
//! Invariant: nothing on the request path awaits the store except a key-cache miss.

use std::str::FromStr;
use std::time::Duration;

use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions};
use sqlx::{Row, SqlitePool};

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
const MIGRATIONS: &[(i64, &str)] = &[(
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
)];

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
                sqlx::query(sql).execute(&mut *tx).await?;
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
