//! Persistent state behind one type: keys, the usage ledger and (later) stored responses,
//! on SQLite (the embedded default, created and migrated on first open) or PostgreSQL
//! (many instances sharing one database), chosen by the `database` URL.
//!
//! Both backends run the same SQL text (`$N` placeholders, which SQLite also accepts); only
//! the DDL differs. Invariant: nothing on the request path awaits the store except a
//! key-cache miss and the first budget check of a key.

use std::str::FromStr;
use std::time::Duration;

use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::{PgPool, Row, SqlitePool};

use crate::calendar::BudgetPeriod;
use crate::usage::UsageRecord;
pub use portal::{Cell, PortalSession, UsageFilter, UsageRow, HOUR_MS};

/// What `jusinfer usage` asks for.
#[derive(Debug, Clone)]
pub struct UsageQuery {
    pub since_ms: i64,
    pub key: Option<String>,
    /// Only this requested model.
    pub model: Option<String>,
    pub by: GroupBy,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GroupBy {
    Model,
    Key,
    Provider,
}

/// One line of a usage summary.
#[derive(Debug, Clone, Default, serde::Serialize)]
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

/// A key's budget may start again every day, week or month (`calendar::BudgetPeriod`);
/// NULL: a lifetime budget.
const BUDGET_PERIOD: &str = "ALTER TABLE keys ADD COLUMN budget_period TEXT";

/// Which stored Response holds each item, per owner: `item_reference` input items are
/// resolved through it. Rows go with their Response (deleted and swept together).
const RESPONSE_ITEMS: &str = "CREATE TABLE response_items (
        owner        TEXT NOT NULL,
        id           TEXT NOT NULL,
        response_id  TEXT NOT NULL,
        PRIMARY KEY (owner, id)
    );
    CREATE INDEX response_items_response ON response_items (response_id)";

/// Retention sweeps find expired stored Responses by age.
const RETENTION_INDEX: &str = "CREATE INDEX responses_created ON responses (created_at)";

/// Migrations from 5 on are one text for both backends (`DOUBLE PRECISION` is a REAL to
/// SQLite).
const PORTAL_SESSIONS: &str = "CREATE TABLE portal_sessions (
        id_hash         TEXT PRIMARY KEY,
        key_id          TEXT NOT NULL,
        csrf            TEXT NOT NULL,
        mint_nonce      TEXT,
        session_created BIGINT NOT NULL,
        session_expires BIGINT NOT NULL
    );
    CREATE INDEX portal_sessions_key ON portal_sessions (key_id)";

/// Hourly sums of the ledger per key and model (the portal's charts, key spend), built from
/// the rows already stored.
const USAGE_HOURLY: &str = "CREATE TABLE usage_hourly (
        hour_ms           BIGINT NOT NULL,
        key_id            TEXT NOT NULL,
        model             TEXT NOT NULL,
        requests          BIGINT NOT NULL,
        errors            BIGINT NOT NULL,
        prompt_tokens     BIGINT NOT NULL,
        completion_tokens BIGINT NOT NULL,
        cached_tokens     BIGINT NOT NULL,
        cost_usd          DOUBLE PRECISION NOT NULL,
        priced            BIGINT NOT NULL,
        unpriced          BIGINT NOT NULL,
        last_ms           BIGINT NOT NULL,
        PRIMARY KEY (hour_ms, key_id, model)
    );
    CREATE INDEX usage_hourly_key ON usage_hourly (key_id, hour_ms);
    INSERT INTO usage_hourly
        SELECT (ts_ms / 3600000) * 3600000, COALESCE(key_id, ''), model, COUNT(*),
        SUM(CASE WHEN status >= 400 OR error_type IS NOT NULL THEN 1 ELSE 0 END),
        SUM(prompt_tokens), SUM(completion_tokens), SUM(cached_tokens), COALESCE(SUM(cost_usd), 0),
        SUM(CASE WHEN cost_usd IS NULL THEN 0 ELSE 1 END),
        SUM(CASE WHEN cost_usd IS NULL AND prompt_tokens + completion_tokens > 0 THEN 1 ELSE 0 END),
        MAX(ts_ms)
        FROM usage GROUP BY (ts_ms / 3600000) * 3600000, COALESCE(key_id, ''), model";

/// SQLite schema migrations, applied in order once each.
const SQLITE_MIGRATIONS: &[(i64, &str)] = &[
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
    (
        3,
        "ALTER TABLE usage ADD COLUMN row_id TEXT;
    CREATE UNIQUE INDEX usage_row_id ON usage (row_id)",
    ),
    (
        4,
        "CREATE TABLE responses (
        id           TEXT PRIMARY KEY,
        owner        TEXT NOT NULL,
        created_at   BIGINT NOT NULL,
        previous_id  TEXT,
        model        TEXT NOT NULL,
        served_by    TEXT,
        input_items  TEXT NOT NULL,
        response     TEXT NOT NULL
    );
    CREATE INDEX responses_owner ON responses (owner, created_at)",
    ),
    (5, PORTAL_SESSIONS),
    (6, USAGE_HOURLY),
    (7, RETENTION_INDEX),
    (8, BUDGET_PERIOD),
    (9, RESPONSE_ITEMS),
];

/// PostgreSQL schema migrations: the same tables and columns as SQLite's.
const POSTGRES_MIGRATIONS: &[(i64, &str)] = &[
    (
        1,
        "CREATE TABLE keys (
        id          TEXT PRIMARY KEY,
        name        TEXT NOT NULL,
        prefix      TEXT NOT NULL,
        hash        TEXT NOT NULL UNIQUE,
        admin       BOOLEAN NOT NULL DEFAULT FALSE,
        created_at  BIGINT NOT NULL,
        expires_at  BIGINT,
        revoked_at  BIGINT,
        budget_usd  DOUBLE PRECISION,
        rpm         BIGINT,
        tpm         BIGINT,
        models      TEXT NOT NULL DEFAULT '[]',
        metadata    TEXT NOT NULL DEFAULT '{}'
    )",
    ),
    (
        2,
        "CREATE TABLE usage (
        ts_ms             BIGINT NOT NULL,
        request_id        TEXT NOT NULL,
        key_id            TEXT,
        endpoint          TEXT NOT NULL,
        model             TEXT NOT NULL,
        provider          TEXT,
        upstream_model    TEXT,
        status            BIGINT NOT NULL,
        prompt_tokens     BIGINT NOT NULL,
        completion_tokens BIGINT NOT NULL,
        cached_tokens     BIGINT NOT NULL,
        reasoning_tokens  BIGINT NOT NULL,
        cost_usd          DOUBLE PRECISION,
        latency_ms        BIGINT NOT NULL,
        ttft_ms           BIGINT,
        attempts          BIGINT NOT NULL,
        stream            BOOLEAN NOT NULL,
        error_type        TEXT
    );
    CREATE INDEX usage_ts ON usage (ts_ms);
    CREATE INDEX usage_key_ts ON usage (key_id, ts_ms)",
    ),
    (
        3,
        "ALTER TABLE usage ADD COLUMN row_id TEXT;
    CREATE UNIQUE INDEX usage_row_id ON usage (row_id)",
    ),
    (
        4,
        "CREATE TABLE responses (
        id           TEXT PRIMARY KEY,
        owner        TEXT NOT NULL,
        created_at   BIGINT NOT NULL,
        previous_id  TEXT,
        model        TEXT NOT NULL,
        served_by    TEXT,
        input_items  TEXT NOT NULL,
        response     TEXT NOT NULL
    );
    CREATE INDEX responses_owner ON responses (owner, created_at)",
    ),
    (5, PORTAL_SESSIONS),
    (6, USAGE_HOURLY),
    (7, RETENTION_INDEX),
    (8, BUDGET_PERIOD),
    (9, RESPONSE_ITEMS),
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
    /// When the budget starts again; `None`: it is for the key's lifetime.
    pub budget_period: Option<BudgetPeriod>,
    pub rpm: Option<i64>,
    pub tpm: Option<i64>,
    pub models: Vec<String>,
    pub metadata: serde_json::Value,
}

/// A change to a key's settings: each `Some` replaces the field (`Some(None)` clears it).
#[derive(Debug, Clone, Default)]
pub struct KeyPatch {
    pub name: Option<String>,
    pub budget_usd: Option<Option<f64>>,
    pub budget_period: Option<Option<BudgetPeriod>>,
    pub rpm: Option<Option<i64>>,
    pub tpm: Option<Option<i64>>,
    pub models: Option<Vec<String>>,
    pub expires_at: Option<Option<i64>>,
    pub metadata: Option<serde_json::Value>,
}

/// What the ledger says about one key.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct KeyStats {
    /// Over the key's lifetime (what the ledger's hourly rollup holds).
    pub spend_usd: f64,
    /// Since the start of the current day, week and month (UTC).
    #[serde(skip)]
    pub spend_period: [f64; 3],
    pub requests: i64,
    /// Unix milliseconds of the last request, if any.
    pub last_used_ms: Option<i64>,
}

impl KeyStats {
    /// Spend in the current `period`, or over the lifetime.
    pub fn spend_in(&self, period: Option<BudgetPeriod>) -> f64 {
        match period {
            None => self.spend_usd,
            Some(p) => self.spend_period[p as usize],
        }
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
                #[allow(dead_code)]
                type $DB = sqlx::Sqlite;
                $body
            }
            Db::Postgres($pool) => {
                #[allow(dead_code)]
                type $DB = sqlx::Postgres;
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
        })
    }};
}

// After the macros above: the portal's queries use them.
mod portal;
mod redact;
mod responses;

pub use redact::redact;
pub use responses::{Conversation, ResponseWriter, StoredResponse, Turn, MAX_ITEM_LOOKUPS};

const KEY_COLUMNS: &str = "id, name, prefix, hash, admin, created_at, expires_at, revoked_at, budget_usd, rpm, tpm, models, metadata, budget_period";

#[derive(Clone)]
pub struct Store {
    db: Db,
}

impl Store {
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

    async fn migrate(&self) -> Result<(), StoreError> {
        let migrations = match self.db {
            Db::Sqlite(_) => SQLITE_MIGRATIONS,
            Db::Postgres(_) => POSTGRES_MIGRATIONS,
        };
        let postgres = matches!(self.db, Db::Postgres(_));
        with_pool!(self, |pool, DB| {
            // Instances starting together migrate one at a time (PostgreSQL: an advisory
            // lock held by each migration transaction).
            const LOCK: &str = "SELECT pg_advisory_xact_lock(7316001)";
            let mut tx = pool.begin().await?;
            if postgres {
                sqlx::query(LOCK).execute(&mut *tx).await?;
            }
            sqlx::query("CREATE TABLE IF NOT EXISTS schema_migrations (version BIGINT PRIMARY KEY, applied_at BIGINT NOT NULL)")
                .execute(&mut *tx)
                .await?;
            tx.commit().await?;
            for (version, sql) in migrations {
                let mut tx = pool.begin().await?;
                if postgres {
                    sqlx::query(LOCK).execute(&mut *tx).await?;
                }
                let done: Option<i64> =
                    sqlx::query_scalar("SELECT version FROM schema_migrations WHERE version = $1")
                        .bind(version)
                        .fetch_optional(&mut *tx)
                        .await?;
                if done.is_none() {
                    sqlx::raw_sql(sql).execute(&mut *tx).await?;
                    sqlx::query(
                        "INSERT INTO schema_migrations (version, applied_at) VALUES ($1, $2)",
                    )
                    .bind(version)
                    .bind(now())
                    .execute(&mut *tx)
                    .await?;
                }
                tx.commit().await?;
            }
            Ok(())
        })
    }

    /// Whether the database answers (for `/readyz`).
    pub async fn ping(&self) -> Result<(), StoreError> {
        with_pool!(self, |pool, DB| {
            sqlx::query("SELECT 1").execute(pool).await?;
            Ok(())
        })
    }

    pub async fn insert_key(&self, k: &KeyRecord) -> Result<(), StoreError> {
        with_pool!(self, |pool, DB| {
            sqlx::query(&format!(
                "INSERT INTO keys ({KEY_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14)"
            ))
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
            .bind(k.budget_period.map(BudgetPeriod::as_str))
            .execute(pool)
            .await?;
            Ok(())
        })
    }

    pub async fn key_by_hash(&self, hash: &str) -> Result<Option<KeyRecord>, StoreError> {
        with_pool!(self, |pool, DB| {
            let row = sqlx::query(&format!("SELECT {KEY_COLUMNS} FROM keys WHERE hash = $1"))
                .bind(hash)
                .fetch_optional(pool)
                .await?;
            match row {
                Some(r) => Ok(Some(key_from_row!(&r)?)),
                None => Ok(None),
            }
        })
    }

    pub async fn key_by_id(&self, id: &str) -> Result<Option<KeyRecord>, StoreError> {
        with_pool!(self, |pool, DB| {
            let row = sqlx::query(&format!("SELECT {KEY_COLUMNS} FROM keys WHERE id = $1"))
                .bind(id)
                .fetch_optional(pool)
                .await?;
            match row {
                Some(r) => Ok(Some(key_from_row!(&r)?)),
                None => Ok(None),
            }
        })
    }

    pub async fn list_keys(&self) -> Result<Vec<KeyRecord>, StoreError> {
        with_pool!(self, |pool, DB| {
            let rows = sqlx::query(&format!(
                "SELECT {KEY_COLUMNS} FROM keys ORDER BY created_at, id"
            ))
            .fetch_all(pool)
            .await?;
            rows.iter().map(|r| key_from_row!(r)).collect()
        })
    }

    /// One page of the keys whose name, prefix or id contains `q` (any case), newest first,
    /// and how many match in all.
    pub async fn search_keys(
        &self,
        q: &str,
        limit: i64,
        offset: i64,
    ) -> Result<(Vec<KeyRecord>, i64), StoreError> {
        let escaped: String = q
            .to_lowercase()
            .chars()
            .flat_map(|c| match c {
                '%' | '_' | '\\' => vec!['\\', c],
                c => vec![c],
            })
            .collect();
        let pattern = format!("%{escaped}%");
        let cond = "LOWER(name) LIKE $1 ESCAPE '\\' OR LOWER(prefix) LIKE $1 ESCAPE '\\' OR LOWER(id) LIKE $1 ESCAPE '\\'";
        with_pool!(self, |pool, DB| {
            let total: i64 = sqlx::query_scalar(&format!("SELECT COUNT(*) FROM keys WHERE {cond}"))
                .bind(&pattern)
                .fetch_one(pool)
                .await?;
            let rows = sqlx::query(&format!(
                "SELECT {KEY_COLUMNS} FROM keys WHERE {cond} ORDER BY created_at DESC, id LIMIT $2 OFFSET $3"
            ))
            .bind(&pattern)
            .bind(limit)
            .bind(offset)
            .fetch_all(pool)
            .await?;
            let keys = rows
                .iter()
                .map(|r| key_from_row!(r))
                .collect::<Result<Vec<_>, StoreError>>()?;
            Ok((keys, total))
        })
    }

    pub async fn count_keys(&self) -> Result<i64, StoreError> {
        with_pool!(self, |pool, DB| {
            Ok(sqlx::query_scalar("SELECT COUNT(*) FROM keys")
                .fetch_one(pool)
                .await?)
        })
    }

    /// Finds the one live key whose id or display prefix is `id_or_prefix`.
    pub async fn find_key(&self, id_or_prefix: &str) -> Result<KeyRecord, StoreError> {
        // A partial display prefix must say more than `jinf_`; compared case-sensitively.
        let partial = id_or_prefix.len() >= 8;
        let keys: Vec<KeyRecord> = with_pool!(self, |pool, DB| {
            let rows = sqlx::query(&format!("SELECT {KEY_COLUMNS} FROM keys WHERE (id = $1 OR prefix = $1 OR ($2 AND substr(prefix, 1, CAST($3 AS INTEGER)) = $1)) AND revoked_at IS NULL"))
                .bind(id_or_prefix)
                .bind(partial)
                .bind(i64::try_from(id_or_prefix.len()).unwrap_or(0))
                .fetch_all(pool)
                .await?;
            rows.iter()
                .map(|r| key_from_row!(r))
                .collect::<Result<Vec<_>, _>>()
        })?;
        let exact: Vec<&KeyRecord> = keys
            .iter()
            .filter(|k| k.id == id_or_prefix || k.prefix == id_or_prefix)
            .collect();
        match (exact.as_slice(), keys.as_slice()) {
            ([one], _) => Ok((*one).clone()),
            ([], [one]) => Ok(one.clone()),
            ([], []) => Err(StoreError(format!(
                "no live key matches {id_or_prefix:?}; see `jusinfer keys list`"
            ))),
            _ => Err(StoreError(format!(
                "{id_or_prefix:?} matches {} keys; give the full id from `jusinfer keys list`",
                keys.len()
            ))),
        }
    }

    /// Revokes the key whose id or display prefix is `id_or_prefix`; errors unless exactly
    /// one live key matches.
    pub async fn revoke_key(&self, id_or_prefix: &str) -> Result<KeyRecord, StoreError> {
        let target = self.find_key(id_or_prefix).await?;
        let at = now();
        with_pool!(self, |pool, DB| {
            sqlx::query("UPDATE keys SET revoked_at = $1 WHERE id = $2 AND revoked_at IS NULL")
                .bind(at)
                .bind(&target.id)
                .execute(pool)
                .await?;
            Ok::<(), StoreError>(())
        })?;
        Ok(KeyRecord {
            revoked_at: Some(at),
            ..target
        })
    }

    /// Applies `patch` to key `id`; the updated record, or `None` when there is no such key.
    pub async fn update_key(
        &self,
        id: &str,
        patch: &KeyPatch,
    ) -> Result<Option<KeyRecord>, StoreError> {
        let Some(mut k) = self.key_by_id(id).await? else {
            return Ok(None);
        };
        if let Some(v) = &patch.name {
            k.name.clone_from(v);
        }
        if let Some(v) = patch.budget_usd {
            k.budget_usd = v;
        }
        if let Some(v) = patch.budget_period {
            k.budget_period = v;
        }
        if let Some(v) = patch.rpm {
            k.rpm = v;
        }
        if let Some(v) = patch.tpm {
            k.tpm = v;
        }
        if let Some(v) = &patch.models {
            k.models.clone_from(v);
        }
        if let Some(v) = patch.expires_at {
            k.expires_at = v;
        }
        if let Some(v) = &patch.metadata {
            k.metadata = v.clone();
        }
        with_pool!(self, |pool, DB| {
            sqlx::query("UPDATE keys SET name = $1, budget_usd = $2, rpm = $3, tpm = $4, models = $5, expires_at = $6, metadata = $7, budget_period = $8 WHERE id = $9")
                .bind(&k.name)
                .bind(k.budget_usd)
                .bind(k.rpm)
                .bind(k.tpm)
                .bind(serde_json::to_string(&k.models).unwrap_or_else(|_| "[]".to_owned()))
                .bind(k.expires_at)
                .bind(k.metadata.to_string())
                .bind(k.budget_period.map(BudgetPeriod::as_str))
                .bind(&k.id)
                .execute(pool)
                .await?;
            Ok::<(), StoreError>(())
        })?;
        Ok(Some(k))
    }

    /// Appends ledger rows in one transaction, many rows per statement (one statement per
    /// row made SQLite the gateway's largest cost at 20k req/s). Rows already stored (same
    /// `row_id`: a retried batch whose commit was in fact applied, a spill file replayed
    /// twice) are skipped, so each request has exactly one row.
    pub async fn insert_usage(&self, rows: &[UsageRecord]) -> Result<(), StoreError> {
        /// 19 columns × 400 rows stays under SQLite's bound-variable limit.
        const ROWS_PER_STATEMENT: usize = 400;
        with_pool!(self, |pool, DB| {
            let mut tx = pool.begin().await?;
            for chunk in rows.chunks(ROWS_PER_STATEMENT) {
                let mut q = sqlx::QueryBuilder::<DB>::new(
                    "INSERT INTO usage (row_id, ts_ms, request_id, key_id, endpoint, model, provider, upstream_model, status,
                     prompt_tokens, completion_tokens, cached_tokens, reasoning_tokens, cost_usd, latency_ms, ttft_ms,
                     attempts, stream, error_type) ",
                );
                let int = |v: u64| i64::try_from(v).unwrap_or(i64::MAX);
                q.push_values(chunk, |mut b, r| {
                    b.push_bind(&r.row_id)
                        .push_bind(r.ts_ms)
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
                q.push(" ON CONFLICT (row_id) DO NOTHING RETURNING row_id");
                let stored: Vec<String> =
                    q.build_query_scalar::<String>().fetch_all(&mut *tx).await?;
                // Only the rows just stored count towards the hourly rollup (a row
                // skipped as already stored was counted when it was).
                let stored: std::collections::HashSet<&str> =
                    stored.iter().map(String::as_str).collect();
                let cells =
                    portal::rollup(chunk.iter().filter(|r| stored.contains(r.row_id.as_str())));
                for part in cells.chunks(ROWS_PER_STATEMENT) {
                    let mut q = sqlx::QueryBuilder::<DB>::new(
                        "INSERT INTO usage_hourly (hour_ms, key_id, model, requests, errors, prompt_tokens,
                         completion_tokens, cached_tokens, cost_usd, priced, unpriced, last_ms) ",
                    );
                    q.push_values(part, |mut b, c| {
                        b.push_bind(c.hour_ms)
                            .push_bind(&c.key_id)
                            .push_bind(&c.model)
                            .push_bind(c.requests)
                            .push_bind(c.errors)
                            .push_bind(c.prompt_tokens)
                            .push_bind(c.completion_tokens)
                            .push_bind(c.cached_tokens)
                            .push_bind(c.cost_usd)
                            .push_bind(c.priced)
                            .push_bind(c.unpriced)
                            .push_bind(c.last_ms);
                    });
                    q.push(
                        " ON CONFLICT (hour_ms, key_id, model) DO UPDATE SET
                         requests = usage_hourly.requests + excluded.requests,
                         errors = usage_hourly.errors + excluded.errors,
                         prompt_tokens = usage_hourly.prompt_tokens + excluded.prompt_tokens,
                         completion_tokens = usage_hourly.completion_tokens + excluded.completion_tokens,
                         cached_tokens = usage_hourly.cached_tokens + excluded.cached_tokens,
                         cost_usd = usage_hourly.cost_usd + excluded.cost_usd,
                         priced = usage_hourly.priced + excluded.priced,
                         unpriced = usage_hourly.unpriced + excluded.unpriced,
                         last_ms = CASE WHEN excluded.last_ms > usage_hourly.last_ms
                                   THEN excluded.last_ms ELSE usage_hourly.last_ms END",
                    );
                    q.build().execute(&mut *tx).await?;
                }
            }
            tx.commit().await?;
            Ok(())
        })
    }

    /// Requests, tokens and cost since `since_ms`, grouped by `by`.
    pub async fn usage_summary(&self, q: &UsageQuery) -> Result<Vec<UsageSummary>, StoreError> {
        let col = match q.by {
            GroupBy::Model => "model",
            GroupBy::Key => "COALESCE(key_id, '-')",
            GroupBy::Provider => "COALESCE(provider, '-')",
        };
        let sql = format!(
            "SELECT {col} AS grp, COUNT(*) AS requests,
             CAST(SUM(CASE WHEN status >= 400 OR error_type IS NOT NULL THEN 1 ELSE 0 END) AS BIGINT) AS errors,
             CAST(SUM(prompt_tokens) AS BIGINT) AS prompt_tokens, CAST(SUM(completion_tokens) AS BIGINT) AS completion_tokens,
             CAST(SUM(cached_tokens) AS BIGINT) AS cached_tokens, SUM(cost_usd) AS cost_usd,
             CAST(SUM(CASE WHEN cost_usd IS NULL AND prompt_tokens + completion_tokens > 0 THEN 1 ELSE 0 END) AS BIGINT) AS unpriced
             FROM usage WHERE ts_ms >= $1 AND ($2 IS NULL OR key_id = $2) AND ($3 IS NULL OR model = $3) GROUP BY {col} ORDER BY requests DESC, grp"
        );
        with_pool!(self, |pool, DB| {
            let rows = sqlx::query(&sql)
                .bind(q.since_ms)
                .bind(&q.key)
                .bind(&q.model)
                .fetch_all(pool)
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
        })
    }

    /// Spend, request count and last use of every key that has ledger rows (from the
    /// hourly rollup, which the ledger keeps in the same transaction as its rows).
    pub async fn key_stats(
        &self,
        key: Option<&str>,
    ) -> Result<std::collections::HashMap<String, KeyStats>, StoreError> {
        // Spend in the current day, week and month beside the lifetime's, in one pass.
        const COLUMNS: &str = "key_id, SUM(cost_usd) AS spend, CAST(SUM(requests) AS BIGINT) AS requests, MAX(last_ms) AS last,
            SUM(CASE WHEN hour_ms >= $1 THEN cost_usd ELSE 0.0 END) AS spend_d,
            SUM(CASE WHEN hour_ms >= $2 THEN cost_usd ELSE 0.0 END) AS spend_w,
            SUM(CASE WHEN hour_ms >= $3 THEN cost_usd ELSE 0.0 END) AS spend_m";
        // Two statements rather than `$4 IS NULL OR ...`, which no index serves.
        let sql = match key {
            Some(_) => {
                format!("SELECT {COLUMNS} FROM usage_hourly WHERE key_id = $4 GROUP BY key_id")
            }
            None => {
                format!("SELECT {COLUMNS} FROM usage_hourly WHERE key_id <> '' GROUP BY key_id")
            }
        };
        let now_ms = now().saturating_mul(1000);
        let starts = BudgetPeriod::ALL.map(|p| p.span(now_ms).start_ms);
        with_pool!(self, |pool, DB| {
            let mut q = sqlx::query(&sql)
                .bind(starts[0])
                .bind(starts[1])
                .bind(starts[2]);
            if let Some(k) = key {
                q = q.bind(k);
            }
            let rows = q.fetch_all(pool).await?;
            rows.iter()
                .map(|r| {
                    Ok((
                        r.try_get::<String, _>("key_id")?,
                        KeyStats {
                            spend_usd: r.try_get("spend")?,
                            spend_period: [
                                r.try_get("spend_d")?,
                                r.try_get("spend_w")?,
                                r.try_get("spend_m")?,
                            ],
                            requests: r.try_get("requests")?,
                            last_used_ms: r.try_get("last")?,
                        },
                    ))
                })
                .collect()
        })
    }

    /// What key `id` has spent since `since_ms` (hour-aligned; `i64::MIN`: ever), per the
    /// ledger's hourly rollup.
    pub async fn spend(&self, id: &str, since_ms: i64) -> Result<f64, StoreError> {
        with_pool!(self, |pool, DB| {
            let v: Option<f64> = sqlx::query_scalar(
                "SELECT SUM(cost_usd) FROM usage_hourly WHERE key_id = $1 AND hour_ms >= $2",
            )
            .bind(id)
            .bind(since_ms)
            .fetch_one(pool)
            .await?;
            Ok(v.unwrap_or(0.0))
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

    /// Deletes about `limit` (at most `limit` plus rows sharing one timestamp) ledger rows
    /// older than `before_ms`, oldest first; how many. The hourly rollup keeps their sums.
    pub async fn sweep_usage(&self, before_ms: i64, limit: i64) -> Result<u64, StoreError> {
        with_pool!(self, |pool, DB| {
            let bound: Option<i64> = sqlx::query_scalar(
                "SELECT ts_ms FROM usage WHERE ts_ms < $1 ORDER BY ts_ms LIMIT 1 OFFSET $2",
            )
            .bind(before_ms)
            .bind(limit)
            .fetch_optional(pool)
            .await?;
            let (sql, until) = match bound {
                None => ("DELETE FROM usage WHERE ts_ms < $1", before_ms),
                Some(b) => ("DELETE FROM usage WHERE ts_ms <= $1", b),
            };
            let r = sqlx::query(sql).bind(until).execute(pool).await?;
            Ok(r.rows_affected())
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
