//! The schema of both backends, as numbered migrations applied once each at open (one
//! instance at a time). Both run the same DML; only this DDL differs.

use super::{now, Db, Store, StoreError};

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

/// The exact response cache's entries (`crate::cache`), and what the ledger says of hits:
/// `usage.cache` (`hit` / `miss`), the cost a hit saved, the same summed per hour; a key's
/// own cache setting (NULL: its aliases decide).
const RESPONSE_CACHE: &str = "CREATE TABLE response_cache (
        key         TEXT PRIMARY KEY,
        scope       TEXT NOT NULL,
        model       TEXT NOT NULL,
        created_at  BIGINT NOT NULL,
        expires_at  BIGINT NOT NULL,
        bytes       BIGINT NOT NULL,
        entry       TEXT NOT NULL
    );
    CREATE INDEX response_cache_created ON response_cache (created_at);
    CREATE INDEX response_cache_expires ON response_cache (expires_at);
    ALTER TABLE usage ADD COLUMN cache TEXT;
    ALTER TABLE usage ADD COLUMN saved_usd DOUBLE PRECISION;
    ALTER TABLE usage_hourly ADD COLUMN cache_hits BIGINT NOT NULL DEFAULT 0;
    ALTER TABLE usage_hourly ADD COLUMN saved_usd DOUBLE PRECISION NOT NULL DEFAULT 0;
    ALTER TABLE keys ADD COLUMN cache BOOLEAN";

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
    (10, RESPONSE_CACHE),
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
    (10, RESPONSE_CACHE),
];

impl Store {
    pub(super) async fn migrate(&self) -> Result<(), StoreError> {
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
}
