//! The admin API (admin keys only): `/admin/keys` create, list, get, update, revoke;
//! `/admin/usage`; `/admin/providers`; `/admin/config` and `/admin/config/reload`.

use std::time::{Instant, SystemTime, UNIX_EPOCH};

use axum::body::Body;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Deserializer};
use serde_json::{json, Value};

use crate::auth::authenticate_admin;
use crate::calendar::BudgetPeriod;
use crate::error::GatewayError;
use crate::keys::{self, NewKey};
use crate::state::AppState;
use crate::store::{now, GroupBy, KeyPatch, KeyRecord, KeyStats, UsageQuery};

/// `Some(None)` for an explicit `null`, `None` for a missing field.
fn nullable<'de, T: Deserialize<'de>, D: Deserializer<'de>>(
    d: D,
) -> Result<Option<Option<T>>, D::Error> {
    Option::<T>::deserialize(d).map(Some)
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct CreateKey {
    name: String,
    #[serde(default)]
    admin: bool,
    budget_usd: Option<f64>,
    /// `daily`, `weekly` or `monthly` (starting at 00:00 UTC); absent: lifetime.
    budget_period: Option<BudgetPeriod>,
    rpm: Option<i64>,
    tpm: Option<i64>,
    #[serde(default)]
    models: Vec<String>,
    /// Lifetime, e.g. `30d`.
    expires_in: Option<String>,
    /// Unix seconds.
    expires_at: Option<i64>,
    #[serde(default)]
    metadata: Option<Value>,
    /// The exact response cache for the key's requests (absent: as its aliases say).
    cache: Option<bool>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct UpdateKey {
    name: Option<String>,
    #[serde(default, deserialize_with = "nullable")]
    budget_usd: Option<Option<f64>>,
    #[serde(default, deserialize_with = "nullable")]
    budget_period: Option<Option<BudgetPeriod>>,
    #[serde(default, deserialize_with = "nullable")]
    rpm: Option<Option<i64>>,
    #[serde(default, deserialize_with = "nullable")]
    tpm: Option<Option<i64>>,
    models: Option<Vec<String>>,
    #[serde(default, deserialize_with = "nullable")]
    expires_at: Option<Option<i64>>,
    metadata: Option<Value>,
    #[serde(default, deserialize_with = "nullable")]
    cache: Option<Option<bool>>,
}

fn check_limits(
    budget: Option<f64>,
    rpm: Option<i64>,
    tpm: Option<i64>,
    metadata: Option<&Value>,
) -> Result<(), GatewayError> {
    keys::validate_limits(budget, rpm, tpm).map_err(|(field, msg)| {
        GatewayError::bad_request(msg)
            .param(field)
            .code("invalid_value")
    })?;
    if metadata.is_some_and(|m| !m.is_object()) {
        return Err(
            GatewayError::bad_request("'metadata' must be a JSON object.")
                .param("metadata")
                .code("invalid_type"),
        );
    }
    Ok(())
}

/// A key as the admin API shows it: its settings, status and what it has spent (in all,
/// and against its budget in the current period, with when that period ends).
pub(crate) fn view(k: &KeyRecord, stats: Option<&KeyStats>) -> Value {
    let status = k.status();
    let mut v = serde_json::to_value(k).unwrap_or(Value::Null);
    if let Some(o) = v.as_object_mut() {
        o.insert("object".into(), json!("api_key"));
        o.insert("status".into(), json!(status));
        let s = stats.cloned().unwrap_or_default();
        o.insert("spend_usd".into(), json!(s.spend_usd));
        o.insert(
            "budget_spent_usd".into(),
            json!(s.spend_in(k.budget_period)),
        );
        o.insert(
            "budget_resets_at".into(),
            json!(k
                .budget_period
                .map(|p| p.span(now().saturating_mul(1000)).end_ms / 1000)),
        );
        o.insert("requests".into(), json!(s.requests));
        o.insert(
            "last_used_at".into(),
            json!(s.last_used_ms.map(|ms| ms / 1000)),
        );
    }
    v
}

fn store_error(e: impl std::fmt::Display) -> GatewayError {
    GatewayError::internal(format!("store error: {e}")).retryable(true)
}

fn result(r: Result<Response, GatewayError>) -> Response {
    r.unwrap_or_else(IntoResponse::into_response)
}

pub(crate) async fn create(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    result(
        async {
            authenticate_admin(&state, &headers).await?;
            let body_time = state.live.load().config.server.body_read_timeout;
            let raw = super::read_body(body, 1 << 20, body_time).await?;
            let req: CreateKey = super::parse_json(&raw)?;
            if req.name.trim().is_empty() {
                return Err(GatewayError::bad_request("'name' must not be empty.")
                    .param("name")
                    .code("invalid_value"));
            }
            check_limits(req.budget_usd, req.rpm, req.tpm, req.metadata.as_ref())?;
            let expires_in = match (&req.expires_in, req.expires_at) {
                (Some(s), _) => Some(keys::parse_duration(s).ok_or_else(|| {
                    GatewayError::bad_request(
                        "'expires_in' must be a number with s, m, h, d or w, e.g. 30d.",
                    )
                    .param("expires_in")
                    .code("invalid_value")
                })?),
                (None, Some(at)) => Some(std::time::Duration::from_secs(
                    u64::try_from(at.saturating_sub(now())).unwrap_or(0),
                )),
                (None, None) => None,
            };
            let minted = keys::mint(
                &state.store,
                NewKey {
                    name: req.name,
                    admin: req.admin,
                    budget_usd: req.budget_usd,
                    budget_period: req.budget_period,
                    rpm: req.rpm,
                    tpm: req.tpm,
                    models: req.models,
                    expires_in,
                    metadata: req.metadata.unwrap_or_else(|| json!({})),
                    cache: req.cache,
                },
            )
            .await
            .map_err(store_error)?;
            let mut v = view(&minted.record, None);
            if let Some(o) = v.as_object_mut() {
                o.insert("key".into(), json!(minted.key));
            }
            Ok((StatusCode::CREATED, axum::Json(v)).into_response())
        }
        .await,
    )
}

pub(crate) async fn list(State(state): State<AppState>, headers: HeaderMap) -> Response {
    result(
        async {
            authenticate_admin(&state, &headers).await?;
            let keys = state.store.list_keys().await.map_err(store_error)?;
            let stats = state.store.key_stats(None).await.map_err(store_error)?;
            let data: Vec<Value> = keys.iter().map(|k| view(k, stats.get(&k.id))).collect();
            Ok(axum::Json(json!({"object": "list", "data": data})).into_response())
        }
        .await,
    )
}

async fn one(state: &AppState, id: &str) -> Result<KeyRecord, GatewayError> {
    state
        .store
        .key_by_id(id)
        .await
        .map_err(store_error)?
        .ok_or_else(|| GatewayError::not_found(format!("No key with id `{id}`.")))
}

/// The key's view with what the ledger says it spent.
async fn with_stats(state: &AppState, k: &KeyRecord) -> Result<Response, GatewayError> {
    let stats = state
        .store
        .key_stats(Some(&k.id))
        .await
        .map_err(store_error)?;
    Ok(axum::Json(view(k, stats.get(&k.id))).into_response())
}

pub(crate) async fn get(
    State(state): State<AppState>,
    super::ApiPath(id): super::ApiPath<String>,
    headers: HeaderMap,
) -> Response {
    result(
        async {
            authenticate_admin(&state, &headers).await?;
            let k = one(&state, &id).await?;
            with_stats(&state, &k).await
        }
        .await,
    )
}

pub(crate) async fn update(
    State(state): State<AppState>,
    super::ApiPath(id): super::ApiPath<String>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    result(
        async {
            authenticate_admin(&state, &headers).await?;
            let body_time = state.live.load().config.server.body_read_timeout;
            let raw = super::read_body(body, 1 << 20, body_time).await?;
            let req: UpdateKey = super::parse_json(&raw)?;
            if req.name.as_deref().is_some_and(|n| n.trim().is_empty()) {
                return Err(GatewayError::bad_request("'name' must not be empty.")
                    .param("name")
                    .code("invalid_value"));
            }
            check_limits(
                req.budget_usd.flatten(),
                req.rpm.flatten(),
                req.tpm.flatten(),
                req.metadata.as_ref(),
            )?;
            let patch = KeyPatch {
                name: req.name,
                budget_usd: req.budget_usd,
                budget_period: req.budget_period,
                rpm: req.rpm,
                tpm: req.tpm,
                models: req.models,
                expires_at: req.expires_at,
                metadata: req.metadata,
                cache: req.cache,
            };
            let k = state
                .store
                .update_key(&id, &patch)
                .await
                .map_err(store_error)?
                .ok_or_else(|| GatewayError::not_found(format!("No key with id `{id}`.")))?;
            state.announce_key_change(&k).await;
            with_stats(&state, &k).await
        }
        .await,
    )
}

pub(crate) async fn revoke(
    State(state): State<AppState>,
    super::ApiPath(id): super::ApiPath<String>,
    headers: HeaderMap,
) -> Response {
    result(
        async {
            authenticate_admin(&state, &headers).await?;
            let k = one(&state, &id).await?;
            let k = if k.revoked_at.is_some() {
                k
            } else {
                state.store.revoke_key(&k.id).await.map_err(store_error)?
            };
            state.announce_key_change(&k).await;
            Ok(axum::Json(view(&k, None)).into_response())
        }
        .await,
    )
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct UsageParams {
    /// Window, e.g. `24h` (default), `7d`.
    since: Option<String>,
    /// `model` (default), `key` or `provider`.
    by: Option<String>,
    key: Option<String>,
    /// Only this requested model.
    model: Option<String>,
}

pub(crate) async fn usage(
    State(state): State<AppState>,
    headers: HeaderMap,
    params: Result<Query<UsageParams>, axum::extract::rejection::QueryRejection>,
) -> Response {
    let started = Instant::now();
    result(
        async {
            authenticate_admin(&state, &headers).await?;
            let Query(p) = params.map_err(|e| GatewayError::bad_request(e.body_text()))?;
            let since = p.since.as_deref().unwrap_or("24h");
            let window = keys::parse_duration(since).ok_or_else(|| {
                GatewayError::bad_request(
                    "'since' must be a number with s, m, h, d or w, e.g. 24h.",
                )
                .param("since")
                .code("invalid_value")
            })?;
            let by = match p.by.as_deref().unwrap_or("model") {
                "model" => GroupBy::Model,
                "key" => GroupBy::Key,
                "provider" => GroupBy::Provider,
                other => {
                    return Err(GatewayError::bad_request(format!(
                        "'by' must be model, key or provider, not {other:?}."
                    ))
                    .param("by")
                    .code("invalid_value"))
                }
            };
            let now_ms = SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX));
            let since_ms =
                now_ms.saturating_sub(i64::try_from(window.as_millis()).unwrap_or(i64::MAX));
            let rows = state
                .store
                .usage_summary(&UsageQuery {
                    since_ms,
                    key: p.key,
                    model: p.model,
                    by,
                })
                .await
                .map_err(store_error)?;
            tracing::debug!(ms = started.elapsed().as_millis() as u64, "usage summary");
            Ok(axum::Json(json!({
                "object": "list",
                "since": since_ms / 1000,
                "by": p.by.as_deref().unwrap_or("model"),
                "data": rows,
            }))
            .into_response())
        }
        .await,
    )
}

/// `GET /admin/providers`: every provider with its settings (never its key) and each
/// deployment's health, and every alias with its strategy and route.
pub(crate) async fn providers(State(state): State<AppState>, headers: HeaderMap) -> Response {
    result(
        async {
            authenticate_admin(&state, &headers).await?;
            let health = state.health.all();
            // One snapshot for the whole answer.
            let live = state.live.load_full();
            let providers: Vec<Value> = live
                .config
                .providers
                .iter()
                .map(|p| {
                    let t = p.timeouts;
                    json!({
                        "name": p.name,
                        "kind": p.kind.as_str(),
                        "retries": p.retries,
                        "timeouts": {
                            "connect": t.connect.as_secs_f64(),
                            "first_byte": t.first_byte.as_secs_f64(),
                            "idle": t.idle.as_secs_f64(),
                            "total": t.total.as_secs_f64(),
                        },
                        "deployments": health
                            .iter()
                            .filter(|h| h.provider == p.name)
                            .map(|h| h.view())
                            .collect::<Vec<_>>(),
                    })
                })
                .collect();
            let routes = live.router.routes();
            let b = live.config.breaker;
            Ok(axum::Json(json!({
                "object": "list",
                "circuit_breaker": {
                    "failures": b.failures,
                    "window": b.window.as_secs_f64(),
                    "cooldown": b.cooldown.as_secs_f64(),
                },
                "data": providers,
                "routes": routes,
            }))
            .into_response())
        }
        .await,
    )
}

/// The loaded configuration's identity, and the last reload's outcome.
fn config_view(state: &AppState) -> Value {
    let live = state.live.load();
    json!({
        "object": "config",
        "source": live.config.source.as_ref().map(|p| p.display().to_string()),
        "hash": live.loaded.hash,
        "loaded_at": live.loaded.loaded_at,
        "restart_required": live.loaded.restart_required,
        "watch_config": live.config.watch_config,
        "last_reload_error": state.reloader.last_error(),
    })
}

/// `GET /admin/config`.
pub(crate) async fn config(State(state): State<AppState>, headers: HeaderMap) -> Response {
    result(
        async {
            authenticate_admin(&state, &headers).await?;
            Ok(axum::Json(config_view(&state)).into_response())
        }
        .await,
    )
}

/// `POST /admin/config/reload`: loads the file again; 200 with the new identity, or 422
/// with `config check`'s message while the running config stays.
pub(crate) async fn reload(State(state): State<AppState>, headers: HeaderMap) -> Response {
    result(
        async {
            authenticate_admin(&state, &headers).await?;
            Ok(match crate::reload::reload(&state, "admin API").await {
                Ok(_) => axum::Json(config_view(&state)).into_response(),
                Err(e) => (
                    StatusCode::UNPROCESSABLE_ENTITY,
                    axum::Json(json!({"error": {
                        "message": e,
                        "type": "invalid_request_error",
                        "code": "invalid_config",
                    }})),
                )
                    .into_response(),
            })
        }
        .await,
    )
}

/// Which entries `DELETE /admin/cache` removes (neither: all).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct PurgeParams {
    key_id: Option<String>,
    model: Option<String>,
}

/// `GET /admin/cache`: the exact response cache's backend, bounds and what it holds.
pub(crate) async fn cache(State(state): State<AppState>, headers: HeaderMap) -> Response {
    result(
        async {
            authenticate_admin(&state, &headers).await?;
            let (entries, bytes) = state.cache.size().await.map_err(store_error)?;
            let s = state.live.load().config.cache;
            Ok(axum::Json(json!({
                "object": "cache",
                "backend": state.cache.backend_name(),
                "entries": entries,
                "bytes": bytes,
                "ttl_seconds": s.ttl.as_secs_f64(),
                "max_entries": s.max_entries,
                "max_bytes": s.max_bytes,
                "max_entry_bytes": s.max_entry_bytes,
            }))
            .into_response())
        }
        .await,
    )
}

/// `DELETE /admin/cache[?key_id=…][&model=…]`: removes those entries (all without a
/// filter); says how many went.
pub(crate) async fn purge_cache(
    State(state): State<AppState>,
    headers: HeaderMap,
    params: Result<Query<PurgeParams>, axum::extract::rejection::QueryRejection>,
) -> Response {
    result(
        async {
            authenticate_admin(&state, &headers).await?;
            let Query(p) = params.map_err(|e| GatewayError::bad_request(e.body_text()))?;
            let n = state
                .cache
                .purge(p.key_id.as_deref(), p.model.as_deref())
                .await
                .map_err(store_error)?;
            tracing::info!(
                purged = n,
                key_id = p.key_id.as_deref().unwrap_or("*"),
                model = p.model.as_deref().unwrap_or("*"),
                "response cache purged"
            );
            Ok(axum::Json(json!({"object": "cache.purge", "purged": n})).into_response())
        }
        .await,
    )
}
