//! Liveness and readiness.

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::json;

use crate::state::AppState;

/// `/` and `/api/hello`: what clients probe before their first call (Claude Code sends
/// `HEAD /api/hello`); 200 with the portal's address.
pub(crate) async fn hello() -> Response {
    Json(json!({"service": "jusinfer", "portal": "/developer"})).into_response()
}

pub(crate) async fn healthz() -> Response {
    Json(json!({"status": "ok"})).into_response()
}

/// Ready while the store answers; with the loaded config's hash and load time.
pub(crate) async fn readyz(State(state): State<AppState>) -> Response {
    let config = {
        let live = state.live.load();
        json!({"hash": live.loaded.hash, "loaded_at": live.loaded.loaded_at})
    };
    match state.store.ping().await {
        Ok(()) => Json(json!({"status": "ready", "config": config})).into_response(),
        Err(e) => (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(json!({"status": "unavailable", "error": e.to_string(), "config": config})),
        )
            .into_response(),
    }
}

/// `GET /metrics`: the Prometheus text format.
pub(crate) async fn metrics(State(state): State<AppState>) -> Response {
    (
        [("content-type", "text/plain; version=0.0.4; charset=utf-8")],
        crate::metrics::get().render(&state.health),
    )
        .into_response()
}
