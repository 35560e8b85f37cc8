//! The developer portal at `/developer` (SPEC §8): sign in with a key; keys (list, mint,
//! revoke), usage (charts, breakdowns, recent requests, CSV) and models (routes, prices,
//! health). Server-rendered HTML with its CSS, a few lines of script (the copy button) and
//! an icon embedded in the binary; every page works without the script.
//!
//! Roles: an admin key sees every key and all usage, mints and revokes. Any other key sees
//! only itself: its own row, its own usage (asking for another key's is a 403) and the
//! models it may call; it mints nothing.
//!
//! Here: routes, security headers, sessions (sign in and out), the models page and the
//! assets. `keys_pages` and `usage_pages` hold those pages' handlers; `pages`, `chart`,
//! `usage`, `fmt` and `session` are pure.

mod chart;
mod fmt;
mod keys_pages;
mod pages;
mod session;
mod usage;
mod usage_pages;

use axum::extract::{Path, State};
use axum::http::header::{CACHE_CONTROL, CONTENT_TYPE, SET_COOKIE};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::Form;
use maud::Markup;
use serde::Deserialize;

use crate::keys;
use crate::state::AppState;
use crate::store::{now, PortalSession};
use pages::{Ctx, Nav};
use session::{LOGIN_COOKIE, SESSION_COOKIE};

/// The portal's routes (the gateway's middleware wraps them like every other route).
pub(crate) fn routes() -> axum::Router<AppState> {
    axum::Router::new()
        .route("/developer", get(index))
        .route("/developer/", get(|| async { Redirect::to("/developer") }))
        .route("/developer/login", post(login))
        .route("/developer/logout", post(logout))
        .route(
            "/developer/keys",
            get(keys_pages::keys_page).post(keys_pages::mint),
        )
        .route(
            "/developer/keys/{id}/revoke",
            get(keys_pages::revoke_page).post(keys_pages::revoke),
        )
        .route("/developer/usage", get(usage_pages::usage_page))
        .route("/developer/usage.csv", get(usage_pages::usage_csv))
        .route("/developer/models", get(models_page))
        .route("/developer/static/{file}", get(asset))
        .layer(axum::middleware::map_response(security_headers))
}

/// Pages are never cached or framed and run only their own script and style.
async fn security_headers(mut resp: Response) -> Response {
    let h = resp.headers_mut();
    let set = |h: &mut HeaderMap, k: &'static str, v: &'static str| {
        if !h.contains_key(k) {
            h.insert(k, HeaderValue::from_static(v));
        }
    };
    set(
        h,
        "content-security-policy",
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
    );
    set(h, "x-frame-options", "DENY");
    set(h, "x-content-type-options", "nosniff");
    // Not `no-referrer`: with it, browsers send `Origin: null` on form posts.
    set(h, "referrer-policy", "same-origin");
    set(h, "cache-control", "no-store");
    resp
}

/// A page sent instead of the one asked for: sign in first, not allowed, no such key, the
/// database down. Boxed: a `Response` is large, and this travels through every `?`.
pub(crate) struct Refusal(Box<Response>);

impl IntoResponse for Refusal {
    fn into_response(self) -> Response {
        *self.0
    }
}

impl From<Response> for Refusal {
    fn from(r: Response) -> Self {
        Self(Box::new(r))
    }
}

type Page = Result<Response, Refusal>;

fn html(status: StatusCode, m: Markup) -> Response {
    (
        status,
        [(CONTENT_TYPE, "text/html; charset=utf-8")],
        m.into_string(),
    )
        .into_response()
}

fn unavailable(e: impl std::fmt::Display) -> Refusal {
    tracing::error!(error = %e, "portal: store error");
    html(
        StatusCode::SERVICE_UNAVAILABLE,
        pages::message(
            "Unavailable",
            None,
            "The gateway's database did not answer. Try again shortly.",
        ),
    )
    .into()
}

/// A signed-in session, or `None`; a store failure is the page to send.
async fn signed_in(
    state: &AppState,
    headers: &HeaderMap,
) -> Result<Option<PortalSession>, Refusal> {
    let Some(token) = session::cookie(headers, SESSION_COOKIE) else {
        return Ok(None);
    };
    let hash = keys::hash_key(token);
    match state.store.session(&hash).await {
        Ok(Some(s)) if s.key.status() == "active" => Ok(Some(s)),
        Ok(Some(_)) => {
            // The key was revoked or expired since: so is the session.
            if let Err(e) = state.store.delete_session(&hash).await {
                tracing::warn!(error = %e, "portal: could not delete a dead session");
            }
            Ok(None)
        }
        Ok(None) => Ok(None),
        Err(e) => Err(unavailable(e)),
    }
}

/// The session, or the answer to send instead (sign in again, or the store's failure).
async fn require(state: &AppState, headers: &HeaderMap) -> Result<PortalSession, Refusal> {
    signed_in(state, headers)
        .await?
        .ok_or_else(|| Redirect::to("/developer").into_response().into())
}

/// A state change must come from this origin with this session's CSRF token.
fn check_form(s: &PortalSession, headers: &HeaderMap, csrf: &str) -> Result<(), Refusal> {
    if session::cross_site(headers) || !session::same_token(csrf, &s.csrf) {
        return Err(forbidden(
            Some(s),
            "This form was not sent from this portal page (missing or stale CSRF token). Reload the page and try again.",
        ));
    }
    Ok(())
}

fn forbidden(s: Option<&PortalSession>, text: &str) -> Refusal {
    let page = match s {
        Some(s) => pages::message(
            "Not allowed",
            Some(&Ctx {
                me: &s.key,
                csrf: &s.csrf,
                nav: Nav::None,
            }),
            text,
        ),
        None => pages::message("Not allowed", None, text),
    };
    html(StatusCode::FORBIDDEN, page).into()
}

fn ctx(s: &PortalSession, nav: Nav) -> Ctx<'_> {
    Ctx {
        me: &s.key,
        csrf: &s.csrf,
        nav,
    }
}

/// The sign-in form with a fresh double-submit token.
fn login_form(
    state: &AppState,
    headers: &HeaderMap,
    status: StatusCode,
    error: Option<&str>,
    notice: Option<&str>,
) -> Response {
    let token = session::token();
    let mut resp = html(
        status,
        pages::login(&token, error, notice, state.keys.is_some()),
    );
    resp.headers_mut().append(
        SET_COOKIE,
        session::set_cookie(headers, LOGIN_COOKIE, &token, session::LOGIN_TTL_SECS),
    );
    resp
}

async fn index(State(state): State<AppState>, headers: HeaderMap) -> Response {
    match signed_in(&state, &headers).await {
        Ok(Some(_)) => Redirect::to("/developer/keys").into_response(),
        Ok(None) => login_form(&state, &headers, StatusCode::OK, None, None),
        Err(r) => r.into_response(),
    }
}

#[derive(Deserialize)]
struct LoginForm {
    #[serde(default)]
    key: String,
    #[serde(default)]
    csrf: String,
}

/// Failed sign-ins allowed per client address in [`SIGN_IN_WINDOW`] (per instance).
pub(crate) const SIGN_IN_ATTEMPTS: u32 = 10;
pub(crate) const SIGN_IN_WINDOW: std::time::Duration = std::time::Duration::from_secs(15 * 60);

async fn login(
    State(state): State<AppState>,
    peer: Option<axum::Extension<crate::conns::Peer>>,
    headers: HeaderMap,
    form: Result<Form<LoginForm>, axum::extract::rejection::FormRejection>,
) -> Response {
    let ip = peer.map(|axum::Extension(p)| p.0);
    if let Some(wait) = ip.and_then(|ip| state.sign_ins.blocked(ip)) {
        let mut resp = login_form(
            &state,
            &headers,
            StatusCode::TOO_MANY_REQUESTS,
            Some("Too many failed sign-ins from this address. Wait a while and try again."),
            None,
        );
        resp.headers_mut().insert(
            "retry-after",
            axum::http::HeaderValue::from(wait.as_secs().max(1)),
        );
        return resp;
    }
    let Ok(Form(f)) = form else {
        return login_form(
            &state,
            &headers,
            StatusCode::BAD_REQUEST,
            Some("The sign-in form was malformed."),
            None,
        );
    };
    let expected = session::cookie(&headers, LOGIN_COOKIE).unwrap_or("");
    if session::cross_site(&headers)
        || expected.is_empty()
        || !session::same_token(&f.csrf, expected)
    {
        return login_form(
            &state,
            &headers,
            StatusCode::FORBIDDEN,
            Some("The sign-in form had expired or came from elsewhere. Try again."),
            None,
        );
    }
    let Some(checker) = &state.keys else {
        return login_form(&state, &headers, StatusCode::FORBIDDEN, None, None);
    };
    let key = match checker.check(f.key.trim()).await {
        Ok(k) => k,
        Err(e) if e.status == StatusCode::UNAUTHORIZED => {
            if let Some(ip) = ip {
                state.sign_ins.failed(ip);
            }
            return login_form(
                &state,
                &headers,
                StatusCode::UNAUTHORIZED,
                Some("That key is not valid: mistyped, revoked or expired."),
                None,
            );
        }
        Err(e) => return unavailable(&e.message).into_response(),
    };
    // A session this browser had before ends (no two live sessions per cookie jar).
    if let Some(old) = session::cookie(&headers, SESSION_COOKIE) {
        if let Err(e) = state.store.delete_session(&keys::hash_key(old)).await {
            return unavailable(e).into_response();
        }
    }
    let token = session::token();
    let csrf = session::token();
    let expires = now().saturating_add(session::SESSION_TTL_SECS);
    if let Err(e) = state
        .store
        .insert_session(&keys::hash_key(&token), &key.id, &csrf, expires)
        .await
    {
        return unavailable(e).into_response();
    }
    if let Some(ip) = ip {
        state.sign_ins.succeeded(ip);
    }
    tracing::info!(key_id = %key.id, "portal: signed in");
    let mut resp = Redirect::to("/developer/keys").into_response();
    let h = resp.headers_mut();
    h.append(
        SET_COOKIE,
        session::set_cookie(&headers, SESSION_COOKIE, &token, session::SESSION_TTL_SECS),
    );
    h.append(
        SET_COOKIE,
        session::set_cookie(&headers, LOGIN_COOKIE, "", 0),
    );
    resp
}

#[derive(Deserialize)]
struct CsrfForm {
    #[serde(default)]
    csrf: String,
}

async fn logout(
    State(state): State<AppState>,
    headers: HeaderMap,
    form: Result<Form<CsrfForm>, axum::extract::rejection::FormRejection>,
) -> Page {
    let s = require(&state, &headers).await?;
    let csrf = form.map(|Form(f)| f.csrf).unwrap_or_default();
    check_form(&s, &headers, &csrf)?;
    if let Some(token) = session::cookie(&headers, SESSION_COOKIE) {
        if let Err(e) = state.store.delete_session(&keys::hash_key(token)).await {
            return Err(unavailable(e));
        }
    }
    let mut resp = login_form(&state, &headers, StatusCode::OK, None, Some("Signed out."));
    resp.headers_mut().append(
        SET_COOKIE,
        session::set_cookie(&headers, SESSION_COOKIE, "", 0),
    );
    Ok(resp)
}

async fn models_page(State(state): State<AppState>, headers: HeaderMap) -> Page {
    let s = require(&state, &headers).await?;
    // One snapshot for the whole page.
    let live = state.live.load_full();
    let models: Vec<pages::ModelView> = live
        .router
        .catalog()
        .into_iter()
        .filter(|e| {
            // A provider's own model is also callable as `provider/model`.
            keys::model_allowed(&s.key.models, &e.model)
                || e.strategy.is_none()
                    && e.deployments.iter().any(|d| {
                        keys::model_allowed(
                            &s.key.models,
                            &format!("{}/{}", d.provider.name(), d.upstream_model),
                        )
                    })
        })
        .map(|e| pages::ModelView {
            model: e.model,
            strategy: e.strategy.and_then(|st| {
                serde_json::to_value(st)
                    .ok()
                    .and_then(|v| v.as_str().map(str::to_owned))
            }),
            deployments: e
                .deployments
                .iter()
                .map(|d| {
                    let h = d.health.view();
                    pages::DeploymentView {
                        target: format!("{}/{}", d.provider.name(), d.upstream_model),
                        price: d.price.map(|p| (p.input, p.output)),
                        circuit: h.circuit,
                        error_rate: h.error_rate,
                        latency_ms: h.latency_ms,
                        successes: h.successes,
                        failures: h.failures,
                    }
                })
                .collect(),
        })
        .collect();
    let open: Vec<(String, String)> = live
        .config
        .providers
        .iter()
        .filter(|p| keys::model_allowed(&s.key.models, &format!("{}/any-model", p.name)))
        .map(|p| (p.name.clone(), p.kind.as_str().to_owned()))
        .collect();
    Ok(html(
        StatusCode::OK,
        pages::models(&ctx(&s, Nav::Models), &models, &open),
    ))
}

const CSS: &str = include_str!("assets/portal.css");
const JS: &str = include_str!("assets/portal.js");
const ICON: &str = include_str!("assets/favicon.svg");

async fn asset(Path(file): Path<String>) -> Response {
    let (body, ty) = match file.as_str() {
        "portal.css" => (CSS, "text/css; charset=utf-8"),
        "portal.js" => (JS, "text/javascript; charset=utf-8"),
        "favicon.svg" => (ICON, "image/svg+xml"),
        _ => return StatusCode::NOT_FOUND.into_response(),
    };
    (
        [(CONTENT_TYPE, ty), (CACHE_CONTROL, "public, max-age=86400")],
        body,
    )
        .into_response()
}
