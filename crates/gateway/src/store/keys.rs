//! API keys as stored, and their spend from the hourly rollup.

use sqlx::Row;

use super::{now, Db, Store, StoreError};
use crate::calendar::BudgetPeriod;

pub(super) const KEY_COLUMNS: &str = "id, name, prefix, hash, admin, created_at, expires_at, revoked_at, budget_usd, rpm, tpm, models, metadata, budget_period, cache";

/// A key as stored (never the key itself: its SHA-256 and a display prefix).
#[derive(Debug, Clone, Default, serde::Serialize)]
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
    /// The exact response cache for this key's requests: `Some(true)` on (its aliases'
    /// settings, or every request of a model without any), `Some(false)` never, `None`:
    /// as its aliases say.
    pub cache: Option<bool>,
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
    pub cache: Option<Option<bool>>,
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

impl Store {
    pub async fn insert_key(&self, k: &KeyRecord) -> Result<(), StoreError> {
        with_pool!(self, |pool, DB| {
            sqlx::query(&format!(
                "INSERT INTO keys ({KEY_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15)"
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
            .bind(k.cache)
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
        if let Some(v) = patch.cache {
            k.cache = v;
        }
        with_pool!(self, |pool, DB| {
            sqlx::query("UPDATE keys SET name = $1, budget_usd = $2, rpm = $3, tpm = $4, models = $5, expires_at = $6, metadata = $7, budget_period = $8, cache = $9 WHERE id = $10")
                .bind(&k.name)
                .bind(k.budget_usd)
                .bind(k.rpm)
                .bind(k.tpm)
                .bind(serde_json::to_string(&k.models).unwrap_or_else(|_| "[]".to_owned()))
                .bind(k.expires_at)
                .bind(k.metadata.to_string())
                .bind(k.budget_period.map(BudgetPeriod::as_str))
                .bind(k.cache)
                .bind(&k.id)
                .execute(pool)
                .await?;
            Ok::<(), StoreError>(())
        })?;
        Ok(Some(k))
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
}
