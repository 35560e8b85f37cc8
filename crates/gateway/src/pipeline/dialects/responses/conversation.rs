//! The conversation of a Responses request: `item_reference`s resolved and earlier turns
//! read from the store ([`prepare`]), each item's origin kept, and the conversation as a
//! pass-through upstream gets it ([`passthrough_body`]).

use std::sync::Arc;

use axum::body::Bytes;
use jusinfer_translate::responses::{request, response};
use jusinfer_wire::responses::ResponseCreateParams;
use serde_json::Value;

use super::keep::Keeper;
use super::ResponsesRequest;
use crate::auth::Caller;
use crate::error::GatewayError;
use crate::handlers::responses::{flatten, owner, store_error, MAX_TURNS};
use crate::pipeline::Parsed;
use crate::state::AppState;
use crate::upstream::openai;

/// Where an item of a rebuilt conversation came from: what decides whether its `id`
/// means anything to a pass-through upstream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Origin {
    /// The client sent it (its `id` is the client's, or one the gateway minted).
    Client,
    /// Output of a turn the gateway translated (ids minted by the gateway).
    Gateway,
    /// Output of a turn this provider's own Responses API made (its ids).
    Upstream(String),
}

/// The id the gateway gives input item `n` of the request that creates `response_id`.
pub(crate) fn input_item_id(prefix: &str, response_id: &str, n: usize) -> String {
    response::item_id(prefix, &response_id.replacen("resp_", "in", 1), n)
}

/// Whether `id` is one [`input_item_id`] minted (`in` + hex cannot be an OpenAI id).
pub(crate) fn is_minted_input_id(id: &str) -> bool {
    id.split_once('_').is_some_and(|(_, rest)| {
        rest.strip_prefix("in")
            .is_some_and(|h| h.len() >= 50 && h.bytes().all(|b| b.is_ascii_hexdigit()))
    })
}

/// Rebuilds the conversation: references resolved, earlier turns read, this turn's items
/// checked; the Response's envelope and its keeper made.
pub(super) async fn prepare(
    state: &AppState,
    caller: &Caller,
    p: &mut Parsed<ResponsesRequest>,
) -> Result<(), GatewayError> {
    let r = &mut p.req;
    let owner = owner(caller);
    let (resolved, resolved_bytes) = resolve_references(state, &owner, &mut r.req).await?;
    let id = response_id();
    let mut n = 0usize;
    let items = request::input_items(&r.req, |prefix| {
        n += 1;
        input_item_id(prefix, &id, n)
    })
    .map_err(|e| {
        GatewayError::bad_request(e.message)
            .param(e.param)
            .code("invalid_value")
    })?;
    let mut history_bytes = resolved_bytes;
    let (mut conversation, mut origins) = match &r.previous {
        Some(prev) => {
            let c = state
                .store
                .conversation(prev, &owner, MAX_TURNS)
                .await
                .map_err(store_error)?
                .ok_or_else(|| {
                    GatewayError::not_found(format!(
                        "Previous response with id '{prev}' not found."
                    ))
                    .param("previous_response_id")
                    .code("previous_response_not_found")
                })?;
            if let Some(gone) = c.missing {
                // Going on without an earlier turn would send the model half a conversation.
                return Err(GatewayError::not_found(format!(
                    "Response '{gone}', an earlier turn of the conversation '{prev}' continues, was deleted."
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
    let created = u64::try_from(crate::store::now()).unwrap_or(0);
    r.envelope = response::envelope(
        &r.req,
        &response::Meta {
            id,
            created_at: created,
            model: p.model.clone(),
        },
    );
    r.keeper = r.store.then(|| {
        Arc::new(Keeper {
            writer: state.responses.clone(),
            owner,
            previous_id: r.previous.clone(),
            model: p.model.clone(),
            input_items: Value::Array(items),
        })
    });
    r.continues = r.previous.is_some() || !resolved.is_empty();
    r.conversation = conversation;
    r.origins = origins;
    r.created = created;
    p.extra_prompt_bytes = history_bytes;
    Ok(())
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

/// Replaces each `item_reference` in `input` by the item it names, from `owner`'s stored
/// Responses (the Vercel AI SDK, and other clients with `store` on, send earlier turns'
/// items this way). Unknown ids, and other keys' items, are a 404 as OpenAI gives it.
/// Returns where each resolved item came from, by its index in `input` (empty when there
/// was no reference), and the resolved items' size in bytes (they count as prompt, and are
/// bounded like a body: at most `max_body_bytes`).
async fn resolve_references(
    state: &AppState,
    owner: &str,
    req: &mut ResponseCreateParams,
) -> Result<(Vec<(usize, Origin)>, usize), GatewayError> {
    let Some(Value::Array(input)) = &mut req.input else {
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
    let limit = state.live.load().config.max_body_bytes;
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

/// The body for an upstream that speaks Responses: the client's bytes with `model`
/// spliced, or, for a continued conversation, the request with the whole conversation as
/// `input` (the gateway holds the state; the upstream may not have it). Items this
/// upstream made keep their ids (OpenAI pairs a reasoning item with the item after it by
/// id); ids the gateway minted are dropped, and so are reasoning items made elsewhere.
pub(super) fn passthrough_body(
    r: &ResponsesRequest,
    raw: &Bytes,
    upstream_model: &str,
    here: &str,
) -> Result<Bytes, GatewayError> {
    if !r.continues {
        return openai::edit_body(raw, upstream_model, false);
    }
    let mut req = r.req.clone();
    req.previous_response_id = None;
    upstream_model.clone_into(&mut req.model);
    let input: Vec<Value> = r
        .conversation
        .iter()
        .zip(r.origins.iter().chain(std::iter::repeat(&Origin::Client)))
        .filter_map(|(item, origin)| {
            let mut item = item.clone();
            let strip = match origin {
                Origin::Upstream(p) if p == here => false,
                Origin::Client => item["id"].as_str().is_some_and(is_minted_input_id),
                Origin::Upstream(_) | Origin::Gateway => {
                    if item["type"] == "reasoning" {
                        return None;
                    }
                    true
                }
            };
            if strip {
                if let Some(o) = item.as_object_mut() {
                    o.remove("id");
                }
            }
            Some(item)
        })
        .collect();
    req.input = Some(Value::Array(input));
    serde_json::to_vec(&req)
        .map(Bytes::from)
        .map_err(|e| GatewayError::internal(e.to_string()))
}
