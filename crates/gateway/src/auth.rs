//! The authenticate stage: which key (if any) is calling.

use std::sync::Arc;

use axum::http::HeaderMap;

use crate::error::GatewayError;
use crate::keys::model_allowed;
use crate::state::AppState;
use crate::store::KeyRecord;

/// The caller: a checked key, or nobody when `auth = "none"`.
#[derive(Clone)]
pub(crate) struct Caller {
    pub key: Option<Arc<KeyRecord>>,
}

impl Caller {
    /// 403 unless the key may use `model`.
    pub(crate) fn check_model(&self, model: &str) -> Result<(), GatewayError> {
        match &self.key {
            Some(k) if !model_allowed(&k.models, model) => Err(GatewayError::forbidden(format!(
                "This API key may not use the model `{model}` (allowed: {}).",
                k.models.join(", ")
            ))
            .param("model")),
            _ => Ok(()),
        }
    }
}

/// The key sent as `Authorization: Bearer ...` (or `x-api-key` / `x-goog-api-key`, when
/// `allow_x_api_key`).
fn presented(headers: &HeaderMap, allow_x_api_key: bool) -> Option<&str> {
    if let Some(v) = headers.get("authorization").and_then(|v| v.to_str().ok()) {
        let v = v.trim();
        let token = v
            .strip_prefix("Bearer ")
            .or_else(|| v.strip_prefix("bearer "))
            .unwrap_or(v);
        return Some(token.trim());
    }
    if allow_x_api_key {
        return ["x-api-key", "x-goog-api-key"]
            .into_iter()
            .find_map(|h| headers.get(h).and_then(|v| v.to_str().ok()).map(str::trim));
    }
    None
}

pub(crate) async fn authenticate(
    state: &AppState,
    headers: &HeaderMap,
) -> Result<Caller, GatewayError> {
    authenticate_with(state, headers, false).await
}

/// `/v1/messages` and the Gemini API: Anthropic's SDKs send the key as `x-api-key`,
/// Google's as `x-goog-api-key`; Bearer works too.
pub(crate) async fn authenticate_any(
    state: &AppState,
    headers: &HeaderMap,
) -> Result<Caller, GatewayError> {
    authenticate_with(state, headers, true).await
}

async fn authenticate_with(
    state: &AppState,
    headers: &HeaderMap,
    allow_x_api_key: bool,
) -> Result<Caller, GatewayError> {
    let Some(checker) = &state.keys else {
        return Ok(Caller { key: None });
    };
    let Some(key) = presented(headers, allow_x_api_key).filter(|k| !k.is_empty()) else {
        return Err(GatewayError::missing_key());
    };
    let rec = checker.check(key).await?;
    Ok(Caller { key: Some(rec) })
}

/// Admin-only endpoints.
pub(crate) async fn authenticate_admin(
    state: &AppState,
    headers: &HeaderMap,
) -> Result<Caller, GatewayError> {
    let caller = authenticate(state, headers).await?;
    match &caller.key {
        Some(k) if k.admin => Ok(caller),
        Some(_) => {
            Err(GatewayError::forbidden("This endpoint needs an admin key.").code("admin_required"))
        }
        // `auth = "none"`: nobody can prove to be an admin.
        None => Err(GatewayError::forbidden(
            "The admin API needs `auth = \"keys\"` in the config.",
        )
        .code("admin_required")),
    }
}
