//! The OpenAI Responses API's stored objects: GET / DELETE /v1/responses/{id}, GET
//! /v1/responses/{id}/input_items (`POST /v1/responses` is the pipeline's `Responses`
//! dialect).
//!
//! State lives in the store (SQLite or PostgreSQL), so every instance sharing the database
//! reads every stored Response. A Response belongs to the key that created it: another
//! key reading, deleting or continuing it gets 404, as for an id that never existed.

use std::collections::HashMap;

use axum::extract::{Query, State};
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::{json, Value};

use crate::auth::{authenticate, Caller};
use crate::error::GatewayError;
use crate::pipeline::dialects::responses::Origin;
use crate::state::AppState;

/// The most turns a conversation is rebuilt from (`previous_response_id` links followed).
pub(crate) const MAX_TURNS: i32 = 10_000;

pub(crate) fn owner(caller: &Caller) -> String {
    caller
        .key
        .as_ref()
        .map(|k| k.id.clone())
        .unwrap_or_default()
}

fn not_found(id: &str) -> GatewayError {
    GatewayError::not_found(format!("Response with id '{id}' not found."))
}

pub(crate) fn store_error(e: crate::store::StoreError) -> GatewayError {
    GatewayError::unavailable(format!("The response store is unavailable: {e}"), 1000)
        .code("store_unavailable")
}

/// Every item of a stored conversation, oldest first, with where it came from: each
/// earlier turn's input and output, then the last turn's input (and its output when
/// `with_last_output`).
pub(crate) fn flatten(
    turns: &[crate::store::Turn],
    with_last_output: bool,
) -> (Vec<Value>, Vec<Origin>) {
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

/// GET /v1/responses/{id}
pub(crate) async fn retrieve(
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
pub(crate) async fn delete(
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
pub(crate) async fn input_items(
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
