//! The Vertex AI side of the simulator: Google's OAuth2 token endpoint for service
//! accounts (`POST /token`, the JWT-bearer grant, its RS256 signature checked with the
//! test service account's public key from `$JUSINFER_SIM_SA_PUBLIC_KEY`), and
//! `POST /v1/projects/{p}/locations/{l}/publishers/{google|anthropic}/models/{model}:{method}`
//! answering only bearers of a token it issued. Google publisher models are the Gemini
//! scenarios; Anthropic publisher models (`claude-<scenario>`) the Anthropic ones, with the
//! body Vertex wants (no `model`, `anthropic_version: vertex-2023-10-16`).

use std::sync::atomic::Ordering;

use axum::extract::{Form, Path, RawQuery, State};
use axum::http::{HeaderMap, Uri};
use axum::response::{IntoResponse, Response};
use axum::Json;
use bytes::Bytes;
use serde::Deserialize;
use serde_json::{json, Value};

use crate::server::{record, SimState};

#[derive(Deserialize)]
pub struct TokenRequest {
    grant_type: String,
    assertion: String,
}

#[derive(Deserialize)]
struct Claims {
    iss: String,
    scope: String,
    aud: String,
    exp: i64,
    iat: i64,
}

fn oauth_error(status: u16, error: &str, description: &str) -> Response {
    let body = json!({"error": error, "error_description": description});
    (
        axum::http::StatusCode::from_u16(status).unwrap_or(axum::http::StatusCode::BAD_REQUEST),
        Json(body),
    )
        .into_response()
}

pub async fn token(State(state): State<SimState>, Form(req): Form<TokenRequest>) -> Response {
    state.token_requests.fetch_add(1, Ordering::Relaxed);
    if req.grant_type != "urn:ietf:params:oauth:grant-type:jwt-bearer" {
        return oauth_error(400, "unsupported_grant_type", "sim: jwt-bearer only");
    }
    let Some(pem) =
        std::env::var_os("JUSINFER_SIM_SA_PUBLIC_KEY").and_then(|p| std::fs::read(p).ok())
    else {
        return oauth_error(500, "server_error", "sim: no service-account public key");
    };
    let key = match jsonwebtoken::DecodingKey::from_rsa_pem(&pem) {
        Ok(k) => k,
        Err(e) => return oauth_error(500, "server_error", &format!("sim: key: {e}")),
    };
    // The RS256 signature over `header.payload` as sent. Google accepts segments with
    // base64 padding (gcp_auth sends them so); the JWT crate's decoder does not, so the
    // signature is checked on the bytes as they came and the claims read unpadded.
    let Some((message, signature)) = req.assertion.rsplit_once('.') else {
        return oauth_error(400, "invalid_grant", "sim: not a JWT");
    };
    let signature: String = signature.chars().filter(|c| *c != '=').collect();
    let alg = jsonwebtoken::Algorithm::RS256;
    if !jsonwebtoken::crypto::verify(&signature, message.as_bytes(), &key, alg).unwrap_or(false) {
        return oauth_error(400, "invalid_grant", "Invalid JWT Signature.");
    }
    let mut v = jsonwebtoken::Validation::new(alg);
    v.validate_aud = false;
    v.insecure_disable_signature_validation();
    let unpadded: String = req.assertion.chars().filter(|c| *c != '=').collect();
    let claims = match jsonwebtoken::decode::<Claims>(&unpadded, &key, &v) {
        Ok(t) => t.claims,
        Err(e) => return oauth_error(400, "invalid_grant", &format!("sim: claims: {e}")),
    };
    if !claims.aud.ends_with("/token")
        || !claims
            .scope
            .split(' ')
            .any(|s| s == "https://www.googleapis.com/auth/cloud-platform")
        || claims.iss.is_empty()
        || claims.exp - claims.iat > 3600
    {
        return oauth_error(400, "invalid_grant", "sim: unexpected claims");
    }
    let n = state.token_requests.load(Ordering::Relaxed);
    let token = format!("ya29.sim-{n}");
    if let Ok(mut t) = state.tokens.lock() {
        t.insert(token.clone());
    }
    Json(json!({"access_token": token, "expires_in": 3599, "token_type": "Bearer"})).into_response()
}

/// Google's 401 for a missing or unknown bearer.
fn unauthenticated() -> Response {
    let body = json!({"error": {"code": 401, "message": "Request had invalid authentication credentials. Expected OAuth 2 access token.", "status": "UNAUTHENTICATED"}});
    (axum::http::StatusCode::UNAUTHORIZED, Json(body)).into_response()
}

pub async fn models(
    State(state): State<SimState>,
    Path((project, location, publisher, target)): Path<(String, String, String, String)>,
    RawQuery(query): RawQuery,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let bearer = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    let known = bearer.is_some_and(|b| state.tokens.lock().is_ok_and(|t| t.contains(b)));
    let path = uri
        .path_and_query()
        .map_or(uri.path(), |p| p.as_str())
        .to_owned();
    if !known || project.is_empty() || location.is_empty() {
        record(&state, &path, &headers, &Value::Null);
        return unauthenticated();
    }
    match publisher.as_str() {
        "google" => {
            crate::gemini::answer(&state, &target, query.as_deref(), &uri, &headers, &body).await
        }
        "anthropic" => {
            let mut req: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
            record(&state, &path, &headers, &req);
            let Some((model, _method)) = target.rsplit_once(':') else {
                return unauthenticated();
            };
            if req.get("model").is_some() || req["anthropic_version"] != "vertex-2023-10-16" {
                let body = json!({"type": "error", "error": {"type": "invalid_request_error",
                    "message": "sim: Vertex wants anthropic_version vertex-2023-10-16 and no model"}});
                return (axum::http::StatusCode::BAD_REQUEST, Json(body)).into_response();
            }
            let scenario = model.strip_prefix("claude-").unwrap_or(model);
            req["model"] = json!(scenario);
            crate::anthropic::answer(state, headers, req).await
        }
        _ => unauthenticated(),
    }
}
