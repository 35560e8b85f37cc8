//! What the developer portal reads and writes: its sessions, usage over time, ledger rows.
//!
//! Sessions are rows, not signed cookies, so that every instance on one database honours
//! them, signing out or revoking the key ends them at once, and no server secret has to be
//! shared. Only the SHA-256 of a session token is stored.

use std::collections::HashMap;

use sqlx::Row;

use super::{now, Db, KeyRecord, Store, StoreError, KEY_COLUMNS};
use crate::usage::UsageRecord;

/// A signed-in portal session with its key as it is now.
#[derive(Debug, Clone)]
pub struct PortalSession {
    /// The SHA-256 of the session's token (its row's id).
    pub id_hash: String,
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

/// Usage of one key and model in one time bucket: a row of the hourly rollup, or such
/// rows summed over a longer bucket.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Cell {
    /// Unix milliseconds of the bucket's start.
    pub hour_ms: i64,
    /// `""` for requests without a key (`auth = "none"`).
    pub key_id: String,
    pub model: String,
    pub requests: i64,
    pub errors: i64,
    pub prompt_tokens: i64,
    pub completion_tokens: i64,
    pub cached_tokens: i64,
    pub cost_usd: f64,
    /// Requests with a known price.
    pub priced: i64,
    /// Requests with tokens but no known price.
    pub unpriced: i64,
    pub last_ms: i64,
    /// Requests the exact cache answered, and what they would have cost.
    pub cache_hits: i64,
    pub saved_usd: f64,
}

/// The rollup's bucket.
pub const HOUR_MS: i64 = 3_600_000;

/// Ledger rows summed per hour, key and model, for the `usage_hourly` rollup. Pure.
pub(super) fn rollup<'a>(rows: impl Iterator<Item = &'a UsageRecord>) -> Vec<Cell> {
    let mut cells: HashMap<(i64, &str, &str), Cell> = HashMap::new();
    let int = |v: u64| i64::try_from(v).unwrap_or(i64::MAX);
    for r in rows {
        let hour = r.ts_ms.div_euclid(HOUR_MS) * HOUR_MS;
        let key = r.key_id.as_deref().unwrap_or("");
        let c = cells.entry((hour, key, &r.model)).or_insert_with(|| Cell {
            hour_ms: hour,
            key_id: key.to_owned(),
            model: r.model.clone(),
            last_ms: r.ts_ms,
            ..Cell::default()
        });
        c.requests += 1;
        c.errors += i64::from(r.status >= 400 || r.error_type.is_some());
        c.prompt_tokens = c.prompt_tokens.saturating_add(int(r.prompt_tokens));
        c.completion_tokens = c.completion_tokens.saturating_add(int(r.completion_tokens));
        c.cached_tokens = c.cached_tokens.saturating_add(int(r.cached_tokens));
        match r.cost_usd {
            Some(cost) => {
                c.cost_usd += cost;
                c.priced += 1;
            }
            None => c.unpriced += i64::from(r.prompt_tokens + r.completion_tokens > 0),
        }
        c.last_ms = c.last_ms.max(r.ts_ms);
        if r.cache.as_deref() == Some("hit") {
            c.cache_hits += 1;
            c.saved_usd += r.saved_usd.unwrap_or(0.0);
        }
    }
    cells.into_values().collect()
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
    /// `hit`, `miss` or `bypass` where the exact cache applied, and what a hit saved.
    pub cache: Option<String>,
    pub saved_usd: Option<f64>,
    /// The row's id (`''` for rows from before ids): the export's cursor with `ts_ms`.
    pub row_id: String,
}

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
                    id_hash: id_hash.to_owned(),
                    key: key_from_row!(&r)?,
                    csrf: r.try_get("csrf")?,
                    expires_at: r.try_get("session_expires")?,
                })),
                None => Ok(None),
            }
        })
    }

    /// Claims a mint form's one-time `nonce` for the session: false when this session
    /// already sent it (a reload of the page that showed the key, a double click), so the
    /// same form never mints twice.
    pub async fn claim_mint_nonce(&self, id_hash: &str, nonce: &str) -> Result<bool, StoreError> {
        with_pool!(self, |pool, DB| {
            let done = sqlx::query(
                "UPDATE portal_sessions SET mint_nonce = $1 WHERE id_hash = $2 AND (mint_nonce IS NULL OR mint_nonce <> $1)",
            )
            .bind(nonce)
            .bind(id_hash)
            .execute(pool)
            .await?;
            Ok(done.rows_affected() == 1)
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

    /// The rollup since `f.since_ms` (which should fall on an hour), for `f.key` if set,
    /// summed into buckets of `bucket_ms` (a multiple of an hour, aligned to the Unix epoch:
    /// days are UTC days), one cell per bucket, key and model. `f.model` is not applied:
    /// the portal needs every model's cells for its model list.
    pub async fn usage_cells(
        &self,
        f: &UsageFilter,
        bucket_ms: i64,
    ) -> Result<Vec<Cell>, StoreError> {
        let key_filter = if f.key.is_some() {
            "AND key_id = $3"
        } else {
            ""
        };
        let sql = format!(
            "SELECT (hour_ms / $2) * $2 AS bucket, key_id, model, CAST(SUM(requests) AS BIGINT) AS requests,
             CAST(SUM(errors) AS BIGINT) AS errors, CAST(SUM(prompt_tokens) AS BIGINT) AS prompt_tokens,
             CAST(SUM(completion_tokens) AS BIGINT) AS completion_tokens,
             CAST(SUM(cached_tokens) AS BIGINT) AS cached_tokens, SUM(cost_usd) AS cost_usd,
             CAST(SUM(priced) AS BIGINT) AS priced, CAST(SUM(unpriced) AS BIGINT) AS unpriced,
             MAX(last_ms) AS last_ms, CAST(SUM(cache_hits) AS BIGINT) AS cache_hits,
             SUM(saved_usd) AS saved_usd
             FROM usage_hourly WHERE hour_ms >= $1 {key_filter}
             GROUP BY (hour_ms / $2) * $2, key_id, model"
        );
        with_pool!(self, |pool, DB| {
            let mut q = sqlx::query(&sql)
                .bind(f.since_ms)
                .bind(bucket_ms.max(HOUR_MS));
            if let Some(k) = &f.key {
                q = q.bind(k);
            }
            let rows = q.fetch_all(pool).await?;
            rows.iter()
                .map(|r| {
                    Ok(Cell {
                        hour_ms: r.try_get("bucket")?,
                        key_id: r.try_get("key_id")?,
                        model: r.try_get("model")?,
                        requests: r.try_get("requests")?,
                        errors: r.try_get("errors")?,
                        prompt_tokens: r.try_get("prompt_tokens")?,
                        completion_tokens: r.try_get("completion_tokens")?,
                        cached_tokens: r.try_get("cached_tokens")?,
                        cost_usd: r.try_get("cost_usd")?,
                        priced: r.try_get("priced")?,
                        unpriced: r.try_get("unpriced")?,
                        last_ms: r.try_get("last_ms")?,
                        cache_hits: r.try_get("cache_hits")?,
                        saved_usd: r.try_get("saved_usd")?,
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
        self.usage_query(f, None, limit).await
    }

    /// The oldest `limit` ledger rows matching `f` after the cursor `after` (`ts_ms`,
    /// `row_id` of the last row read), oldest first: an export reads the ledger in pages.
    pub async fn usage_rows_after(
        &self,
        f: &UsageFilter,
        after: Option<&(i64, String)>,
        limit: i64,
    ) -> Result<Vec<UsageRow>, StoreError> {
        self.usage_query(f, Some(after), limit).await
    }

    /// Newest first (`page` `None`), or oldest first after a cursor.
    async fn usage_query(
        &self,
        f: &UsageFilter,
        page: Option<Option<&(i64, String)>>,
        limit: i64,
    ) -> Result<Vec<UsageRow>, StoreError> {
        // Only the filters that are set, so that an index serves the query
        // (`$2 IS NULL OR key_id = $2` defeats the planner).
        let mut cond = String::from("ts_ms >= $1");
        let mut n = 1;
        for (col, set) in [("key_id", f.key.is_some()), ("model", f.model.is_some())] {
            if set {
                n += 1;
                cond.push_str(&format!(" AND {col} = ${n}"));
            }
        }
        let cursor = page.flatten();
        if cursor.is_some() {
            cond.push_str(&format!(
                " AND (ts_ms > ${} OR (ts_ms = ${} AND COALESCE(row_id, '') > ${}))",
                n + 1,
                n + 1,
                n + 2
            ));
            n += 2;
        }
        let order = if page.is_some() {
            "ts_ms, COALESCE(row_id, '')"
        } else {
            "ts_ms DESC, request_id"
        };
        let sql = format!(
            "SELECT ts_ms, request_id, key_id, endpoint, model, provider, upstream_model, status,
             prompt_tokens, completion_tokens, cached_tokens, reasoning_tokens, cost_usd,
             latency_ms, ttft_ms, attempts, stream, error_type, cache, saved_usd, COALESCE(row_id, '') AS rid
             FROM usage WHERE {cond} ORDER BY {order} LIMIT ${}",
            n + 1
        );
        with_pool!(self, |pool, DB| {
            let mut q = sqlx::query(&sql).bind(f.since_ms);
            if let Some(k) = &f.key {
                q = q.bind(k);
            }
            if let Some(m) = &f.model {
                q = q.bind(m);
            }
            if let Some((ts, rid)) = cursor {
                q = q.bind(*ts).bind(rid.as_str());
            }
            let rows = q.bind(limit).fetch_all(pool).await?;
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
                        cache: r.try_get("cache")?,
                        saved_usd: r.try_get("saved_usd")?,
                        row_id: r.try_get("rid")?,
                    })
                })
                .collect()
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(id: &str, ts_ms: i64, key: &str, model: &str, cost: Option<f64>) -> UsageRecord {
        UsageRecord {
            row_id: id.to_owned(),
            ts_ms,
            request_id: format!("req_{id}"),
            key_id: Some(key.to_owned()),
            endpoint: "/v1/chat/completions".into(),
            model: model.into(),
            status: if cost.is_some() { 200 } else { 502 },
            prompt_tokens: 10,
            completion_tokens: 5,
            cost_usd: cost,
            ..UsageRecord::default()
        }
    }

    #[tokio::test]
    async fn the_rollup_follows_the_ledger_and_is_backfilled() {
        let dir = std::env::temp_dir().join(format!("jinf-rollup-{}", std::process::id()));
        let _ = std::fs::create_dir_all(&dir);
        let db = dir.join("r.db");
        let _ = std::fs::remove_file(&db);
        let url = format!("sqlite://{}", db.display());
        let store = Store::open(&url).await.expect("open");
        let hour = 1_764_151_200_000;
        let rows = [
            row("a", hour + 5, "k1", "m", Some(0.5)),
            row("b", hour + 9, "k1", "m", None),
            row("c", hour + HOUR_MS, "k1", "m", Some(0.25)),
            row("d", hour + 7, "k2", "n", Some(1.0)),
        ];
        store.insert_usage(&rows).await.expect("insert");
        // A batch retried after its commit was applied adds nothing.
        store.insert_usage(&rows[..2]).await.expect("insert again");
        let check = |cells: Vec<Cell>| {
            let k1: Vec<&Cell> = cells.iter().filter(|c| c.key_id == "k1").collect();
            assert_eq!(k1.len(), 2, "{cells:?}");
            let first = k1.iter().find(|c| c.hour_ms == hour).expect("first hour");
            assert_eq!(
                (first.requests, first.errors, first.priced, first.unpriced),
                (2, 1, 1, 1)
            );
            assert_eq!(first.cost_usd, 0.5);
            assert_eq!(first.last_ms, hour + 9);
            assert_eq!(cells.iter().map(|c| c.requests).sum::<i64>(), 4);
        };
        let all = UsageFilter {
            since_ms: hour,
            ..UsageFilter::default()
        };
        check(store.usage_cells(&all, HOUR_MS).await.expect("cells"));
        let stats = store.key_stats(None).await.expect("stats");
        assert_eq!(stats["k1"].requests, 3);
        assert_eq!(stats["k1"].spend_usd, 0.75);
        assert_eq!(stats["k1"].last_used_ms, Some(hour + HOUR_MS));
        assert_eq!(store.spend("k2", i64::MIN).await.expect("spend"), 1.0);
        // Day buckets sum the hours; a key filter narrows.
        let day = store
            .usage_cells(
                &UsageFilter {
                    key: Some("k1".into()),
                    ..all.clone()
                },
                24 * HOUR_MS,
            )
            .await
            .expect("day");
        assert_eq!(day.len(), 1);
        assert_eq!(day[0].requests, 3);

        // A database from before the rollup (and the response cache, which adds to it):
        // migration 6 builds it from the ledger.
        store
            .execute_for_tests(
                "DROP TABLE usage_hourly; DROP TABLE response_cache;
                 ALTER TABLE usage DROP COLUMN cache; ALTER TABLE usage DROP COLUMN saved_usd;
                 ALTER TABLE keys DROP COLUMN cache;
                 DELETE FROM schema_migrations WHERE version IN (6, 10)",
            )
            .await
            .expect("undo");
        store.close().await;
        let store = Store::open(&url).await.expect("reopen");
        check(store.usage_cells(&all, HOUR_MS).await.expect("cells"));
        assert_eq!(store.spend("k1", i64::MIN).await.expect("spend"), 0.75);
        store.close().await;
        let _ = std::fs::remove_dir_all(&dir);
    }
}
