//! The handlers outside the generation pipeline (`crate::pipeline`): the admin API,
//! health, models, the stored Responses, `count_tokens`; and the entry points that hand
//! each generation endpoint to `pipeline::run`.

pub(crate) mod admin;
pub(crate) mod gemini;
pub(crate) mod health;
pub(crate) mod messages;
pub(crate) mod models;
pub(crate) mod responses;

use axum::body::Body;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::Response;
use axum::Extension;

use crate::auth::Caller;
pub(crate) use crate::pipeline::read::{parse_json, read_body, ApiPath};
use crate::pipeline::{dialects, run};
use crate::state::{AppState, LogMeta, RequestId};

/// POST /v1/chat/completions
pub(crate) async fn chat_completions(
    State(state): State<AppState>,
    Extension(rid): Extension<RequestId>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    run::<dialects::Chat>(state, rid, headers, body, ()).await
}

/// POST /v1/embeddings
pub(crate) async fn embeddings(
    State(state): State<AppState>,
    Extension(rid): Extension<RequestId>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    run::<dialects::Embeddings>(state, rid, headers, body, ()).await
}

/// POST /v1/messages
pub(crate) async fn messages(
    State(state): State<AppState>,
    Extension(rid): Extension<RequestId>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    run::<dialects::Messages>(state, rid, headers, body, ()).await
}

/// POST /v1/responses
pub(crate) async fn responses(
    State(state): State<AppState>,
    Extension(rid): Extension<RequestId>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    run::<dialects::Responses>(state, rid, headers, body, ()).await
}

/// Names the caller's key (and the model) in the request's log line.
pub(crate) fn logged(mut resp: Response, key_id: Option<String>, model: String) -> Response {
    resp.extensions_mut().insert(LogMeta { key_id, model });
    resp
}

/// The caller's key id, for [`logged`].
pub(crate) fn key_id(caller: &Caller) -> Option<String> {
    caller.key.as_ref().map(|k| k.id.clone())
}
