//! GET /v1/models and GET /v1/models/{id}.

use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::{json, Value};

use crate::auth::authenticate;
use crate::error::GatewayError;
use crate::state::AppState;

fn entry(id: &str, owner: &str) -> Value {
    json!({"id": id, "object": "model", "created": 0, "owned_by": owner})
}

pub(crate) async fn list(State(state): State<AppState>, headers: HeaderMap) -> Response {
    let caller = match authenticate(&state, &headers).await {
        Ok(c) => c,
        Err(e) => return e.into_response(),
    };
    let data: Vec<Value> = state
        .live
        .load()
        .router
        .model_names()
        .iter()
        .filter(|(n, _)| caller.check_model(n).is_ok())
        .map(|(n, o)| entry(n, o))
        .collect();
    let resp = Json(json!({"object": "list", "data": data})).into_response();
    super::logged(resp, super::key_id(&caller), String::new())
}

pub(crate) async fn get(
    State(state): State<AppState>,
    headers: HeaderMap,
    super::ApiPath(id): super::ApiPath<String>,
) -> Response {
    let caller = match authenticate(&state, &headers).await {
        Ok(c) => c,
        Err(e) => return e.into_response(),
    };
    let found = state
        .live
        .load()
        .router
        .model_names()
        .into_iter()
        .find(|(n, _)| *n == id);
    let resp = match found {
        Some((n, o)) if caller.check_model(&n).is_ok() => Json(entry(&n, &o)).into_response(),
        _ => match state.live.load().router.resolve(&id) {
            // A `provider/model` that routes but is in no static list.
            Ok(d) if caller.check_model(&id).is_ok() => {
                let owner = d.first().map_or("jusinfer", |d| d.provider.name());
                Json(entry(&id, owner)).into_response()
            }
            Ok(_) => GatewayError::model_not_found(&id, &[]).into_response(),
            Err(e) => e.into_response(),
        },
    };
    super::logged(resp, super::key_id(&caller), id)
}
