//! `POST /v1/responses`: OpenAI's Responses API, stateful, served by every provider. The
//! conversation (`previous_response_id`, `item_reference`s) is rebuilt from the store in
//! `prepare`; the finished Response is stored by the [`Keeper`] before the client gets its
//! last event. The `GET` and `DELETE` endpoints are in `handlers::responses`.

use std::sync::Arc;

use axum::body::Bytes;
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use jusinfer_translate::responses::{request, response};
use serde_json::{Map, Value};

use crate::auth::Caller;
use crate::error::GatewayError;
use crate::handlers::responses::{flatten, owner, store_error, MAX_TURNS};
use crate::pipeline::{read, Attempt, ClientDialect, Parsed};
use crate::routing::Deployment;
use crate::state::AppState;
use crate::upstream::responses::{self as provider, Keeper, Origin};

pub(crate) struct Responses;

/// A Responses request, with its conversation rebuilt (in `prepare`).
pub(crate) struct ResponsesRequest {
    req: Map<String, Value>,
    store: bool,
    previous: Option<String>,
    conversation: Vec<Value>,
    origins: Vec<Origin>,
    /// The conversation is not the client's bytes (it continues a stored one, or had
    /// references resolved): the body is rebuilt.
    continues: bool,
    envelope: Map<String, Value>,
    keeper: Option<Arc<Keeper>>,
    created: u64,
}

impl ClientDialect for Responses {
    const ENDPOINT: &'static str = "/v1/responses";
    type Request = ResponsesRequest;

    fn parse(raw: &Bytes, _: &HeaderMap) -> Result<Parsed<ResponsesRequest>, GatewayError> {
        let req: Map<String, Value> = read::parse_json(raw)?;
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
        Ok(Parsed {
            model,
            stream,
            extra_prompt_bytes: 0,
            max_output: req.get("max_output_tokens").and_then(Value::as_u64),
            req: ResponsesRequest {
                req,
                store,
                previous,
                conversation: Vec::new(),
                origins: Vec::new(),
                continues: false,
                envelope: Map::new(),
                keeper: None,
                created: 0,
            },
        })
    }

    async fn prepare(
        state: &AppState,
        caller: &Caller,
        p: &mut Parsed<ResponsesRequest>,
    ) -> Result<(), GatewayError> {
        prepare(state, caller, p).await
    }

    async fn attempt(
        a: &Attempt<'_, ResponsesRequest>,
        d: Deployment,
    ) -> Result<Response, GatewayError> {
        let r = &a.p.req;
        provider::attempt(provider::Call {
            provider: &d.provider,
            auto_cache: d.auto_cache,
            timeouts: d.timeouts,
            health: Some(&d.health),
            req: &r.req,
            raw: a.raw,
            conversation: &r.conversation,
            origins: &r.origins,
            continues: r.continues,
            stream: a.p.stream,
            upstream_model: &d.upstream_model,
            envelope: &r.envelope,
            price: crate::pipeline::admit::price_of(a.state, &d),
            tap: a.tap,
            keeper: r.keeper.as_ref(),
            request_id: a.request_id,
            created: r.created,
        })
        .await
    }

    fn render(e: GatewayError) -> Response {
        e.into_response()
    }
}

/// Rebuilds the conversation: references resolved, earlier turns read, this turn's items
/// checked; the Response's envelope and its keeper made.
async fn prepare(
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
        provider::input_item_id(prefix, &id, n)
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
