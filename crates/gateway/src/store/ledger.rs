//! The usage ledger: rows appended in batches, summaries for `jusinfer usage`, and the
//! retention sweep.

use sqlx::Row;

use super::{portal, Db, Store, StoreError};
use crate::usage::UsageRecord;

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
    /// Requests the exact cache answered, and what they would have cost upstream.
    pub cache_hits: i64,
    pub saved_usd: f64,
}

impl Store {
    /// Appends ledger rows in one transaction, many rows per statement (one statement per
    /// row made SQLite the gateway's largest cost at 20k req/s). Rows already stored (same
    /// `row_id`: a retried batch whose commit was in fact applied, a spill file replayed
    /// twice) are skipped, so each request has exactly one row.
    pub async fn insert_usage(&self, rows: &[UsageRecord]) -> Result<(), StoreError> {
        /// 21 columns × 400 rows stays under SQLite's bound-variable limit.
        const ROWS_PER_STATEMENT: usize = 400;
        with_pool!(self, |pool, DB| {
            let mut tx = pool.begin().await?;
            for chunk in rows.chunks(ROWS_PER_STATEMENT) {
                let mut q = sqlx::QueryBuilder::<DB>::new(
                    "INSERT INTO usage (row_id, ts_ms, request_id, key_id, endpoint, model, provider, upstream_model, status,
                     prompt_tokens, completion_tokens, cached_tokens, reasoning_tokens, cost_usd, latency_ms, ttft_ms,
                     attempts, stream, error_type, cache, saved_usd) ",
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
                        .push_bind(&r.error_type)
                        .push_bind(&r.cache)
                        .push_bind(r.saved_usd);
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
                         completion_tokens, cached_tokens, cost_usd, priced, unpriced, last_ms, cache_hits, saved_usd) ",
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
                            .push_bind(c.last_ms)
                            .push_bind(c.cache_hits)
                            .push_bind(c.saved_usd);
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
                         cache_hits = usage_hourly.cache_hits + excluded.cache_hits,
                         saved_usd = usage_hourly.saved_usd + excluded.saved_usd,
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
             CAST(SUM(CASE WHEN cost_usd IS NULL AND prompt_tokens + completion_tokens > 0 THEN 1 ELSE 0 END) AS BIGINT) AS unpriced,
             CAST(SUM(CASE WHEN cache = 'hit' THEN 1 ELSE 0 END) AS BIGINT) AS cache_hits,
             COALESCE(SUM(saved_usd), 0.0) AS saved_usd
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
                        cache_hits: r.try_get("cache_hits")?,
                        saved_usd: r.try_get("saved_usd")?,
                    })
                })
                .collect()
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
}
