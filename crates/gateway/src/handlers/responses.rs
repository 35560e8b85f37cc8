//! The OpenAI Responses API, stateful, served by every provider: POST /v1/responses,
//! GET / DELETE /v1/responses/{id}, GET /v1/responses/{id}/input_items.
//!
//! State lives in the store (SQLite or PostgreSQL), so every instance sharing the database
//! reads every stored Response. A Response belongs to the key that created it: another
//! key reading, deleting or continuing it gets 404, as for an id that never existed.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use axum::body::{Body, Bytes};
use axum::extract::{Query, State};
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use jusinfer_translate::responses::{request, response};
use serde_json::{json, Map, Value};

use crate::auth::{authenticate, Caller};
use crate::error::GatewayError;
use crate::providers::responses::{self as provider, Keeper, Origin};
use crate::proxy;
use crate::routing::Deployment;
use crate::state::{AppState, RequestId};

/// The most turns a conversation is rebuilt from (`previous_response_id` links followed).
const MAX_TURNS: i32 = 10_000;

/// What the client sent, checked, with its conversation rebuilt.
struct Prepared {
    req: Map<String, Value>,
    raw: Bytes,
    model: String,
    stream: bool,
    conversation: Vec<Value>,
    origins: Vec<Origin>,
    continues: bool,
    /// Stored size of the earlier turns (the limit stage's prompt estimate counts them).
    history_bytes: usize,
    envelope: Map<String, Value>,
    keeper: Option<Arc<Keeper>>,
    deployments: Vec<Deployment>,
    created: u64,
}

fn owner(caller: &Caller) -> String {
    caller
        .key
        .as_ref()
        .map(|k| k.id.clone())
        .unwrap_or_default()
}

/// A fresh `resp_…` id.
fn response_id() -> String {
    use rand::Rng;
    let mut rng = rand::thread_rng();
    let hex: String = (0..48)
        .map(|_| char::from_digit(rng.gen_range(0..16), 16).unwrap_or('0'))
        .collect();
    format!("resp_{hex}")
}

fn not_found(id: &str) -> GatewayError {
    GatewayError::not_found(format!("Response with id '{id}' not found."))
}

fn store_error(e: crate::store::StoreError) -> GatewayError {
    GatewayError::unavailable(format!("The response store is unavailable: {e}"), 1000)
        .code("store_unavailable")
}

/// Every item of a stored conversation, oldest first, with where it came from: each
/// earlier turn's input and output, then the last turn's input (and its output when
/// `with_last_output`).
fn flatten(turns: &[crate::store::Turn], with_last_output: bool) -> (Vec<Value>, Vec<Origin>) {
    let mut items = Vec::new();
    let mut origins = Vec::new();
    for (i, t) in turns.iter().enumerate() {
        if let Some(input) = t.input.as_array() {
            items.extend(input.iter().cloned());
            origins.resize(items.len(), Origin::Client);
        }
        if i + 1 < turns.len() || with_last_output {
            if let Some(output) = t.response["output"].as_array() {
                items.extend(output.iter().cloned());
                let origin = match &t.served_by {
                    Some(p) => Origin::Upstream(p.clone()),
                    None => Origin::Gateway,
                };
                origins.resize(items.len(), origin);
            }
        }
    }
    (items, origins)
}

/// Replaces each `item_reference` in `input` by the item it names, from `owner`'s stored
/// Responses (the Vercel AI SDK, and other clients with `store` on, send earlier turns'
/// items this way). Unknown ids, and other keys' items, are a 404 as OpenAI gives it.
/// Returns where each resolved item came from, by its index in `input` (empty when there
/// was no reference), and the resolved items' size in bytes (they count as prompt, and are
/// bounded like a body: at most `max_body_bytes`).
async fn resolve_references(
    state: &AppState,
    owner: &str,
    req: &mut Map<String, Value>,
) -> Result<(Vec<(usize, Origin)>, usize), GatewayError> {
    let Some(Value::Array(input)) = req.get_mut("input") else {
        return Ok((Vec::new(), 0));
    };
    let is_ref = |v: &Value| v.get("type").and_then(Value::as_str) == Some("item_reference");
    let mut ids = Vec::new();
    for (i, v) in input.iter().enumerate().filter(|(_, v)| is_ref(v)) {
        match v.get("id").and_then(Value::as_str) {
            Some(id) => ids.push(id.to_owned()),
            None => {
                return Err(GatewayError::bad_request(
                    "Missing required parameter: 'input[].id' (an item_reference needs the id of an item).",
                )
                .param(format!("input[{i}].id"))
                .code("missing_required_parameter"))
            }
        }
    }
    if ids.is_empty() {
        return Ok((Vec::new(), 0));
    }
    if ids.len() > crate::store::MAX_ITEM_LOOKUPS {
        return Err(GatewayError::bad_request(format!(
            "Too many item references ({}): at most {} in one request.",
            ids.len(),
            crate::store::MAX_ITEM_LOOKUPS
        ))
        .param("input"));
    }
    let limit = state.config.max_body_bytes;
    let too_large = || {
        GatewayError::bad_request(format!(
            "The referenced items come to more than {limit} bytes, the most one request may hold."
        ))
        .param("input")
    };
    let found = state
        .store
        .response_items(owner, &ids, limit.saturating_mul(4))
        .await
        .map_err(store_error)?
        .ok_or_else(too_large)?;
    let mut origins = Vec::new();
    let mut bytes = 0;
    for (i, v) in input.iter_mut().enumerate().filter(|(_, v)| is_ref(v)) {
        let id = v.get("id").and_then(Value::as_str).unwrap_or_default();
        match found.get(id) {
            Some((item, by)) => {
                // An output item keeps its maker (a pass-through upstream's ids mean
                // something to it alone); an earlier input item is the client's own.
                let origin = match by {
                    Some(Some(p)) => Origin::Upstream(p.clone()),
                    Some(None) => Origin::Gateway,
                    None => Origin::Client,
                };
                bytes += item.to_string().len();
                if bytes > limit {
                    return Err(too_large());
                }
                *v = item.clone();
                origins.push((i, origin));
            }
            None => {
                return Err(
                    GatewayError::not_found(format!("Item with id '{id}' not found."))
                        .param("input"),
                )
            }
        }
    }
    Ok((origins, bytes))
}

async fn prepare(state: &AppState, caller: &Caller, body: Body) -> Result<Prepared, GatewayError> {
    let raw = super::read_body(
        body,
        state.config.max_body_bytes,
        state.config.server.body_read_timeout,
    )
    .await?;
    let mut req: Map<String, Value> = super::parse_json(&raw)?;
    let owner = owner(caller);
    let (resolved, resolved_bytes) = resolve_references(state, &owner, &mut req).await?;
    let model = req
        .get("model")
        .and_then(Value::as_str)
        .filter(|m| !m.trim().is_empty())
        .ok_or_else(|| {
            GatewayError::bad_request("Missing required parameter: 'model'.")
                .param("model")
                .code("missing_required_parameter")
        })?
        .to_owned();
    let flag = |k: &str, default: bool| -> Result<bool, GatewayError> {
        match req.get(k) {
            None | Some(Value::Null) => Ok(default),
            Some(Value::Bool(b)) => Ok(*b),
            Some(_) => Err(
                GatewayError::bad_request(format!("'{k}' must be a boolean."))
                    .param(k)
                    .code("invalid_type"),
            ),
        }
    };
    let stream = flag("stream", false)?;
    let store = flag("store", true)?;
    caller.check_model(&model)?;
    let id = response_id();
    let mut n = 0usize;
    let items = request::input_items(&req, |prefix| {
        n += 1;
        provider::input_item_id(prefix, &id, n)
    })
    .map_err(|e| {
        GatewayError::bad_request(e.message)
            .param(e.param)
            .code("invalid_value")
    })?;
    let previous = match req.get("previous_response_id") {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) => Some(s.clone()),
        Some(_) => {
            return Err(
                GatewayError::bad_request("'previous_response_id' must be a string.")
                    .param("previous_response_id")
                    .code("invalid_type"),
            )
        }
    };
    let mut history_bytes = resolved_bytes;
    let (mut conversation, mut origins) = match &previous {
        Some(p) => {
            let c = state
                .store
                .conversation(p, &owner, MAX_TURNS)
                .await
                .map_err(store_error)?
                .ok_or_else(|| {
                    GatewayError::not_found(format!("Previous response with id '{p}' not found."))
                        .param("previous_response_id")
                        .code("previous_response_not_found")
                })?;
            if let Some(gone) = c.missing {
                // Going on without an earlier turn would send the model half a conversation.
                return Err(GatewayError::not_found(format!(
                    "Response '{gone}', an earlier turn of the conversation '{p}' continues, was deleted."
                ))
                .param("previous_response_id")
                .code("previous_response_not_found"));
            }
            history_bytes += c.turns.iter().map(|t| t.bytes).sum::<usize>();
            flatten(&c.turns, true)
        }
        None => (Vec::new(), Vec::new()),
    };
    if items.is_empty() && conversation.is_empty() {
        return Err(
            GatewayError::bad_request("Missing required parameter: 'input'.")
                .param("input")
                .code("missing_required_parameter"),
        );
    }
    let first = conversation.len();
    conversation.extend(items.iter().cloned());
    origins.resize(conversation.len(), Origin::Client);
    for (i, origin) in &resolved {
        if let Some(o) = origins.get_mut(first + i) {
            *o = origin.clone();
        }
    }
    let deployments = state.router.resolve(&model)?;
    let created = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let envelope = response::envelope(
        &req,
        &response::Meta {
            id,
            created_at: created,
            model: model.clone(),
        },
    );
    let keeper = store.then(|| {
        Arc::new(Keeper {
            writer: state.responses.clone(),
            owner,
            previous_id: previous.clone(),
            model: model.clone(),
            input_items: Value::Array(items),
        })
    });
    Ok(Prepared {
        req,
        raw,
        model,
        stream,
        conversation,
        origins,
        // Resolved references are not in the client's bytes: the body is rebuilt.
        continues: previous.is_some() || !resolved.is_empty(),
        history_bytes,
        envelope,
        keeper,
        deployments,
        created,
    })
}

pub async fn create(
    State(state): State<AppState>,
    Extension(rid): Extension<RequestId>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let started = Instant::now();
    let caller = match authenticate(&state, &headers).await {
        Ok(c) => c,
        Err(e) => return e.into_response(),
    };
    let mut row = super::usage_row(&rid, &caller, "/v1/responses");
    let slot = match super::key_slot(&state, &caller) {
        Ok(s) => s,
        Err(e) => {
            return super::record_rejected(&state, row, e, started, GatewayError::into_response);
        }
    };
    let p = match prepare(&state, &caller, body).await {
        Ok(p) => p,
        Err(e) => {
            return super::record_rejected(&state, row, e, started, GatewayError::into_response);
        }
    };
    row.model.clone_from(&p.model);
    row.stream = p.stream;
    if state.config.log_bodies {
        tracing::info!(request_id = %rid.0, body = %String::from_utf8_lossy(&p.raw[..p.raw.len().min(64 * 1024)]), "request body");
    }
    let adm = match super::admit_and_tap(
        &state,
        &caller,
        slot,
        row,
        started,
        super::Demand {
            prompt_bytes: p.raw.len() + p.history_bytes,
            max_output: p.req.get("max_output_tokens").and_then(Value::as_u64),
        },
        &p.deployments,
    )
    .await
    {
        Ok(a) => a,
        Err(refused) => return refused,
    };
    let ctx = Ctx {
        state: &state,
        p: &p,
        tap: &adm.tap,
        request_id: &rid.0,
    };
    let outcome = proxy::run(&p.deployments, |d| attempt(d, &ctx)).await;
    super::finish(outcome, adm)
}

/// What every attempt of one request shares.
struct Ctx<'a> {
    state: &'a AppState,
    p: &'a Prepared,
    tap: &'a crate::ledger::Tap,
    request_id: &'a str,
}

async fn attempt(d: Deployment, ctx: &Ctx<'_>) -> Result<Response, GatewayError> {
    let p = ctx.p;
    provider::attempt(provider::Call {
        provider: &d.provider,
        auto_cache: d.auto_cache,
        timeouts: d.timeouts,
        health: Some(&d.health),
        req: &p.req,
        raw: &p.raw,
        conversation: &p.conversation,
        origins: &p.origins,
        continues: p.continues,
        stream: p.stream,
        upstream_model: &d.upstream_model,
        envelope: &p.envelope,
        price: super::price_of(ctx.state, &d),
        tap: ctx.tap,
        keeper: p.keeper.as_ref(),
        request_id: ctx.request_id,
        created: p.created,
    })
    .await
}

/// GET /v1/responses/{id}
pub async fn retrieve(
    State(state): State<AppState>,
    super::ApiPath(id): super::ApiPath<String>,
    headers: HeaderMap,
) -> Response {
    let mut key = None;
    let result = async {
        let caller = authenticate(&state, &headers).await?;
        key = super::key_id(&caller);
        let r = state
            .store
            .response(&id, &owner(&caller))
            .await
            .map_err(store_error)?
            .ok_or_else(|| not_found(&id))?;
        Ok::<_, GatewayError>(Json(r).into_response())
    }
    .await;
    super::logged(
        result.unwrap_or_else(IntoResponse::into_response),
        key,
        String::new(),
    )
}

/// DELETE /v1/responses/{id}
pub async fn delete(
    State(state): State<AppState>,
    super::ApiPath(id): super::ApiPath<String>,
    headers: HeaderMap,
) -> Response {
    let mut key = None;
    let result = async {
        let caller = authenticate(&state, &headers).await?;
        key = super::key_id(&caller);
        if !state
            .store
            .delete_response(&id, &owner(&caller))
            .await
            .map_err(store_error)?
        {
            return Err(not_found(&id));
        }
        Ok::<_, GatewayError>(
            Json(json!({"id": id, "object": "response", "deleted": true})).into_response(),
        )
    }
    .await;
    super::logged(
        result.unwrap_or_else(IntoResponse::into_response),
        key,
        String::new(),
    )
}

/// The page of `items` (oldest first) a list request asks for: `order` (`desc`, the
/// default, or `asc`), `after` (an item id: the page starts past it), `limit` (1–100,
/// default 20).
fn page(mut items: Vec<Value>, q: &HashMap<String, String>) -> Result<Value, GatewayError> {
    let limit = match q.get("limit") {
        None => 20,
        Some(l) => l
            .parse::<usize>()
            .ok()
            .filter(|n| (1..=100).contains(n))
            .ok_or_else(|| {
                GatewayError::bad_request("'limit' must be an integer between 1 and 100.")
                    .param("limit")
                    .code("invalid_value")
            })?,
    };
    match q.get("order").map(String::as_str) {
        None | Some("desc") => items.reverse(),
        Some("asc") => {}
        Some(_) => {
            return Err(
                GatewayError::bad_request("'order' must be 'asc' or 'desc'.")
                    .param("order")
                    .code("invalid_value"),
            )
        }
    }
    let start = match q.get("after") {
        None => 0,
        Some(after) => {
            items
                .iter()
                .position(|i| i["id"].as_str() == Some(after))
                .ok_or_else(|| {
                    GatewayError::bad_request(format!("No input item with id '{after}'."))
                        .param("after")
                        .code("invalid_value")
                })?
                + 1
        }
    };
    let rest = items.get(start..).unwrap_or_default();
    let data: Vec<Value> = rest.iter().take(limit).cloned().collect();
    let first = data.first().map(|i| i["id"].clone()).unwrap_or(Value::Null);
    let last = data.last().map(|i| i["id"].clone()).unwrap_or(Value::Null);
    Ok(json!({
        "object": "list",
        "data": data,
        "first_id": first,
        "last_id": last,
        "has_more": rest.len() > limit,
    }))
}

/// GET /v1/responses/{id}/input_items: every item the model was given for the response
/// (earlier turns' inputs and outputs included), paginated.
pub async fn input_items(
    State(state): State<AppState>,
    super::ApiPath(id): super::ApiPath<String>,
    Query(q): Query<HashMap<String, String>>,
    headers: HeaderMap,
) -> Response {
    let mut key = None;
    let result = async {
        let caller = authenticate(&state, &headers).await?;
        key = super::key_id(&caller);
        let c = state
            .store
            .conversation(&id, &owner(&caller), MAX_TURNS)
            .await
            .map_err(store_error)?
            .ok_or_else(|| not_found(&id))?;
        let page = page(flatten(&c.turns, false).0, &q)?;
        Ok::<_, GatewayError>(Json(page).into_response())
    }
    .await;
    super::logged(
        result.unwrap_or_else(IntoResponse::into_response),
        key,
        String::new(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn items(n: usize) -> Vec<Value> {
        (0..n).map(|i| json!({"id": format!("i{i}")})).collect()
    }

    fn ids(v: &Value) -> Vec<String> {
        v["data"]
            .as_array()
            .expect("data")
            .iter()
            .map(|i| i["id"].as_str().expect("id").to_owned())
            .collect()
    }

    fn q(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).into(), (*v).into()))
            .collect()
    }

    #[test]
    fn pages_walk_every_item_once() {
        let first = page(items(5), &q(&[("limit", "2")])).expect("page");
        assert_eq!(ids(&first), ["i4", "i3"]);
        assert_eq!(first["has_more"], true);
        let second = page(items(5), &q(&[("limit", "2"), ("after", "i3")])).expect("page");
        assert_eq!(ids(&second), ["i2", "i1"]);
        let third = page(items(5), &q(&[("limit", "2"), ("after", "i1")])).expect("page");
        assert_eq!(ids(&third), ["i0"]);
        assert_eq!(third["has_more"], false);
        let asc = page(items(3), &q(&[("order", "asc")])).expect("page");
        assert_eq!(ids(&asc), ["i0", "i1", "i2"]);
        assert_eq!(asc["first_id"], "i0");
        assert_eq!(asc["last_id"], "i2");
        assert!(page(items(3), &q(&[("limit", "0")])).is_err());
        assert!(page(items(3), &q(&[("order", "up")])).is_err());
        assert!(page(items(3), &q(&[("after", "nope")])).is_err());
    }
}
