//! The developer portal at `/developer` (SPEC §8): sign in with a key; keys (list, mint,
//! revoke), usage (charts, breakdowns, recent requests, CSV) and models (routes, prices,
//! health). Server-rendered HTML with its CSS, a few lines of script (the copy button) and
//! an icon embedded in the binary; every page works without the script.
//!
//! Roles: an admin key sees every key and all usage, mints and revokes. Any other key sees
//! only itself: its own row, its own usage (asking for another key's is a 403) and the
//! models it may call; it mints nothing.

mod chart;
mod fmt;
mod pages;
mod session;
mod usage;

use std::collections::HashMap;

use axum::extract::{Path, Query, State};
use axum::http::header::{CACHE_CONTROL, CONTENT_DISPOSITION, CONTENT_TYPE, SET_COOKIE};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::Form;
use maud::Markup;
use serde::Deserialize;

use crate::app::AppState;
use crate::keys::{self, NewKey};
use crate::store::{now, KeyRecord, KeyStats, PortalSession, UsageFilter, UsageSummary};
use chart::{Chart, Series};
use pages::{Ctx, KeysExtra, MintValues, Nav};
use session::{LOGIN_COOKIE, SESSION_COOKIE};

/// The portal's routes (the gateway's middleware wraps them like every other route).
pub fn routes() -> axum::Router<AppState> {
    axum::Router::new()
        .route("/developer", get(index))
        .route("/developer/", get(|| async { Redirect::to("/developer") }))
        .route("/developer/login", post(login))
        .route("/developer/logout", post(logout))
        .route("/developer/keys", get(keys_page).post(mint))
        .route("/developer/keys/{id}/revoke", get(revoke_page).post(revoke))
        .route("/developer/usage", get(usage_page))
        .route("/developer/usage.csv", get(usage_csv))
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
pub struct Refusal(Box<Response>);

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

async fn login(
    State(state): State<AppState>,
    headers: HeaderMap,
    form: Result<Form<LoginForm>, axum::extract::rejection::FormRejection>,
) -> Response {
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
            return login_form(
                &state,
                &headers,
                StatusCode::UNAUTHORIZED,
                Some("That key is not valid: mistyped, revoked or expired."),
                None,
            )
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

/// The keys the caller may see, with what each has spent.
async fn visible_keys(
    state: &AppState,
    me: &KeyRecord,
) -> Result<Vec<(KeyRecord, KeyStats)>, Refusal> {
    let (keys, stats) = if me.admin {
        let keys = state.store.list_keys().await.map_err(unavailable)?;
        let stats = state.store.key_stats(None).await.map_err(unavailable)?;
        (keys, stats)
    } else {
        let stats = state
            .store
            .key_stats(Some(&me.id))
            .await
            .map_err(unavailable)?;
        (vec![me.clone()], stats)
    };
    Ok(keys
        .into_iter()
        .map(|k| {
            let s = stats.get(&k.id).cloned().unwrap_or_default();
            (k, s)
        })
        .collect())
}

#[derive(Deserialize)]
struct KeysParams {
    revoked: Option<String>,
}

async fn keys_page(
    State(state): State<AppState>,
    headers: HeaderMap,
    Query(p): Query<KeysParams>,
) -> Page {
    let s = require(&state, &headers).await?;
    let rows = visible_keys(&state, &s.key).await?;
    let flash = p.revoked.and_then(|id| {
        rows.iter()
            .find(|(k, _)| k.id == id && k.revoked_at.is_some())
            .map(|(k, _)| {
                format!(
                    "Revoked “{}” ({}…). The API refuses it from now on.",
                    k.name, k.prefix
                )
            })
    });
    let extra = KeysExtra {
        flash,
        nonce: session::token(),
        ..KeysExtra::default()
    };
    Ok(html(
        StatusCode::OK,
        pages::keys(&ctx(&s, Nav::Keys), &rows, &extra),
    ))
}

#[derive(Deserialize)]
struct MintForm {
    #[serde(default)]
    csrf: String,
    /// The form's one-time token; without one (a script), every POST mints.
    #[serde(default)]
    nonce: String,
    #[serde(flatten)]
    values: MintValues,
}

/// The new key's settings from the form, or the field and message to show.
fn parse_mint(v: &MintValues) -> Result<NewKey, (&'static str, String)> {
    let name = v.name.trim();
    if name.is_empty() {
        return Err(("name", "Give the key a name.".to_owned()));
    }
    if name.chars().count() > 200 {
        return Err(("name", "The name is longer than 200 characters.".to_owned()));
    }
    fn opt<T: std::str::FromStr>(
        field: &'static str,
        s: &str,
        what: &str,
    ) -> Result<Option<T>, (&'static str, String)> {
        let s = s.trim();
        if s.is_empty() {
            return Ok(None);
        }
        s.parse()
            .map(Some)
            .map_err(|_| (field, format!("{what} must be a number, not “{s}”.")))
    }
    let budget_usd: Option<f64> = opt(
        "budget_usd",
        v.budget_usd.trim_start_matches('$'),
        "The budget",
    )?;
    let rpm: Option<i64> = opt("rpm", &v.rpm.replace(['_', ','], ""), "Requests per minute")?;
    let tpm: Option<i64> = opt("tpm", &v.tpm.replace(['_', ','], ""), "Tokens per minute")?;
    keys::validate_limits(budget_usd, rpm, tpm).map_err(|(field, _)| {
        let msg = match field {
            "budget_usd" => "The budget must be a number of dollars, 0 or more.".to_owned(),
            _ => format!(
                "{} must be between 1 and {}.",
                if field == "rpm" {
                    "Requests per minute"
                } else {
                    "Tokens per minute"
                },
                keys::MAX_LIMIT
            ),
        };
        (field, msg)
    })?;
    let expires_in = match v.expires.trim() {
        "" => None,
        e if pages::EXPIRY_CHOICES.iter().any(|(c, _)| *c == e) => Some(
            keys::parse_duration(e)
                .ok_or(("expires", "Pick an expiry from the list.".to_owned()))?,
        ),
        _ => return Err(("expires", "Pick an expiry from the list.".to_owned())),
    };
    let models: Vec<String> = v
        .models
        .split([',', ' ', '\n'])
        .map(str::trim)
        .filter(|m| !m.is_empty())
        .map(str::to_owned)
        .collect();
    Ok(NewKey {
        name: name.to_owned(),
        admin: v.admin.is_some(),
        budget_usd,
        rpm,
        tpm,
        models,
        expires_in,
        metadata: serde_json::json!({"minted_by": "portal"}),
    })
}

async fn mint(
    State(state): State<AppState>,
    headers: HeaderMap,
    form: Result<Form<MintForm>, axum::extract::rejection::FormRejection>,
) -> Page {
    let s = require(&state, &headers).await?;
    let Ok(Form(f)) = form else {
        return Ok(html(
            StatusCode::BAD_REQUEST,
            pages::message(
                "Bad form",
                Some(&ctx(&s, Nav::Keys)),
                "The mint form was malformed.",
            ),
        ));
    };
    check_form(&s, &headers, &f.csrf)?;
    if !s.key.admin {
        return Err(forbidden(Some(&s), "Only an admin key can mint keys."));
    }
    let (minted, error) = match parse_mint(&f.values) {
        Ok(new) => {
            // A reload of the page that showed the key (or a double click) sends the
            // same form again: it must not mint a second key.
            let fresh = f.nonce.is_empty()
                || state
                    .store
                    .claim_mint_nonce(&s.id_hash, &f.nonce)
                    .await
                    .map_err(unavailable)?;
            if !fresh {
                let rows = visible_keys(&state, &s.key).await?;
                let extra = KeysExtra {
                    flash: Some(
                        "This form was already sent, and its key was shown then, once. If it was not copied, revoke it and mint another."
                            .to_owned(),
                    ),
                    nonce: session::token(),
                    ..KeysExtra::default()
                };
                return Ok(html(
                    StatusCode::CONFLICT,
                    pages::keys(&ctx(&s, Nav::Keys), &rows, &extra),
                ));
            }
            match keys::mint(&state.store, new).await {
                Ok(m) => (Some(m), None),
                Err(e) => return Err(unavailable(e)),
            }
        }
        Err(e) => (None, Some(e)),
    };
    let rows = visible_keys(&state, &s.key).await?;
    if let Some(m) = &minted {
        tracing::info!(key_id = %m.record.id, by = %s.key.id, "portal: key minted");
    }
    let status = if error.is_some() {
        StatusCode::BAD_REQUEST
    } else {
        StatusCode::CREATED
    };
    let extra = KeysExtra {
        minted: minted.as_ref().map(|m| (m.key.as_str(), &m.record)),
        flash: None,
        form: if error.is_some() {
            f.values
        } else {
            MintValues::default()
        },
        error,
        nonce: session::token(),
    };
    Ok(html(
        status,
        pages::keys(&ctx(&s, Nav::Keys), &rows, &extra),
    ))
}

/// The key an admin names in a revoke URL.
async fn target(state: &AppState, s: &PortalSession, id: &str) -> Result<KeyRecord, Refusal> {
    if !s.key.admin {
        return Err(forbidden(Some(s), "Only an admin key can revoke keys."));
    }
    match state.store.key_by_id(id).await {
        Ok(Some(k)) => Ok(k),
        Ok(None) => Err(Refusal::from(html(
            StatusCode::NOT_FOUND,
            pages::message(
                "No such key",
                Some(&ctx(s, Nav::Keys)),
                "There is no key with that id.",
            ),
        ))),
        Err(e) => Err(unavailable(e)),
    }
}

async fn revoke_page(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Page {
    let s = require(&state, &headers).await?;
    Ok(match target(&state, &s, &id).await? {
        k if k.revoked_at.is_some() => Redirect::to("/developer/keys").into_response(),
        k => html(
            StatusCode::OK,
            pages::revoke_confirm(&ctx(&s, Nav::Keys), &k),
        ),
    })
}

async fn revoke(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(id): Path<String>,
    form: Result<Form<CsrfForm>, axum::extract::rejection::FormRejection>,
) -> Page {
    let s = require(&state, &headers).await?;
    let csrf = form.map(|Form(f)| f.csrf).unwrap_or_default();
    check_form(&s, &headers, &csrf)?;
    let k = target(&state, &s, &id).await?;
    let k = if k.revoked_at.is_some() {
        k
    } else {
        match state.store.revoke_key(&k.id).await {
            Ok(k) => k,
            Err(e) => return Err(unavailable(e)),
        }
    };
    crate::handlers::admin::announce(&state, &k).await;
    if let Err(e) = state.store.delete_sessions_of(&k.id).await {
        tracing::warn!(error = %e, "portal: could not end the revoked key's sessions");
    }
    tracing::info!(key_id = %k.id, by = %s.key.id, "portal: key revoked");
    Ok(Redirect::to(&format!("/developer/keys?revoked={}", k.id)).into_response())
}

/// The usage page's query.
#[derive(Deserialize, Default)]
struct UsageParams {
    range: Option<String>,
    bucket: Option<String>,
    key: Option<String>,
    model: Option<String>,
}

/// A usage query made safe: a known range and bucket, and a key filter the caller may use.
struct UsageScope {
    range: &'static str,
    bucket: &'static str,
    bucket_ms: i64,
    filter: UsageFilter,
    note: Option<String>,
    now_ms: i64,
}

const HOUR_MS: i64 = 3_600_000;
const DAY_MS: i64 = 86_400_000;

fn scope(s: &PortalSession, p: &UsageParams) -> Result<UsageScope, Refusal> {
    let (range, range_ms) = match p.range.as_deref().unwrap_or("24h") {
        "7d" => ("7d", 7 * DAY_MS),
        "30d" => ("30d", 30 * DAY_MS),
        "90d" => ("90d", 90 * DAY_MS),
        _ => ("24h", DAY_MS),
    };
    let mut note = None;
    let (bucket, bucket_ms) = match (p.bucket.as_deref(), range) {
        (Some("hour"), "24h" | "7d") | (None, "24h") => ("hour", HOUR_MS),
        (Some("hour"), _) => {
            note = Some(
                "Hourly buckets go back 7 days at most; this period is shown by day.".to_owned(),
            );
            ("day", DAY_MS)
        }
        _ => ("day", DAY_MS),
    };
    let key = p.key.clone().filter(|k| !k.is_empty());
    let key = if s.key.admin {
        key
    } else {
        match key {
            Some(k) if k != s.key.id => {
                return Err(forbidden(Some(s), "A key can see only its own usage."));
            }
            _ => Some(s.key.id.clone()),
        }
    };
    let now_ms = now().saturating_mul(1000);
    // The period starts on its first bucket's boundary, so that the charts, the totals,
    // the tables and the CSV all count the same requests.
    let since_ms = (now_ms - range_ms).div_euclid(bucket_ms) * bucket_ms;
    Ok(UsageScope {
        range,
        bucket,
        bucket_ms,
        filter: UsageFilter {
            since_ms,
            key,
            model: p.model.clone().filter(|m| !m.is_empty()),
        },
        note,
        now_ms,
    })
}

fn query_string(sc: &UsageScope) -> String {
    let mut pairs = vec![("range", sc.range), ("bucket", sc.bucket)];
    if let Some(k) = &sc.filter.key {
        pairs.push(("key", k));
    }
    if let Some(m) = &sc.filter.model {
        pairs.push(("model", m));
    }
    serde_urlencoded::to_string(pairs).unwrap_or_default()
}

async fn usage_page(
    State(state): State<AppState>,
    headers: HeaderMap,
    Query(p): Query<UsageParams>,
) -> Page {
    let s = require(&state, &headers).await?;
    let sc = scope(&s, &p)?;
    Ok(html(StatusCode::OK, usage_view(&state, &s, &sc).await?))
}

async fn usage_view(
    state: &AppState,
    s: &PortalSession,
    sc: &UsageScope,
) -> Result<Markup, Refusal> {
    let store = &state.store;
    let f = &sc.filter;
    // One query over the hourly rollup gives the charts, totals, breakdowns and the model
    // list; only the recent requests come from the ledger itself.
    let cells = store
        .usage_cells(f, sc.bucket_ms)
        .await
        .map_err(unavailable)?;
    let u = usage::summarize(&cells, f.model.as_deref());
    let all_keys = if s.key.admin {
        store.list_keys().await.map_err(unavailable)?
    } else {
        vec![s.key.clone()]
    };
    let names: HashMap<&str, &str> = all_keys
        .iter()
        .map(|k| (k.id.as_str(), k.name.as_str()))
        .collect();
    let by_key = s.key.admin.then(|| {
        u.by_key
            .iter()
            .map(|r| {
                let name = names
                    .get(r.group.as_str())
                    .map_or_else(|| r.group.clone(), |n| format!("{n} ({})", r.group));
                (name, r.clone())
            })
            .collect()
    });
    let mut model_choices = u.models.clone();
    // A filter on a model with no rows in the period stays visible (and kept on Apply).
    if let Some(m) = &f.model {
        if !model_choices.contains(m) {
            model_choices.insert(0, m.clone());
        }
    }
    let recent = store.usage_rows(f, 50).await.map_err(unavailable)?;
    let charts = charts(sc, &u.buckets);
    let key_name = |id: &str| {
        names
            .get(id)
            .map_or_else(|| id.to_owned(), |n| (*n).to_owned())
    };
    let view = pages::UsageView {
        range: sc.range,
        bucket: sc.bucket,
        key: f.key.as_deref().filter(|_| s.key.admin),
        model: f.model.as_deref(),
        key_choices: if s.key.admin {
            all_keys
                .iter()
                .map(|k| (k.id.clone(), k.name.clone()))
                .collect()
        } else {
            Vec::new()
        },
        model_choices,
        charts,
        totals: u.totals.clone(),
        by_model: u.by_model.clone(),
        by_key,
        recent,
        key_name: &key_name,
        csv_href: format!("/developer/usage.csv?{}", query_string(sc)),
        note: sc.note.clone(),
    };
    Ok(pages::usage(&ctx(s, Nav::Usage), &view))
}

/// The three charts over every bucket of the period (empty ones included).
fn charts(sc: &UsageScope, buckets: &std::collections::BTreeMap<i64, UsageSummary>) -> Vec<Markup> {
    let first = sc.filter.since_ms;
    let last = sc.now_ms.div_euclid(sc.bucket_ms) * sc.bucket_ms;
    let starts: Vec<i64> = (0..)
        .map(|i| first + i * sc.bucket_ms)
        .take_while(|t| *t <= last)
        .collect();
    let col = |f: fn(&UsageSummary) -> f64| -> Vec<f64> {
        starts
            .iter()
            .map(|t| buckets.get(t).map_or(0.0, f))
            .collect()
    };
    let hourly = sc.bucket == "hour";
    let labels: Vec<String> = starts
        .iter()
        .map(|t| fmt::bucket_label(*t, hourly, sc.range != "24h"))
        .collect();
    let per = if hourly { "hour" } else { "day" };
    let count = |v: f64| fmt::short(v);
    vec![
        Chart {
            id: "chart-requests",
            title: &format!("Requests per {per} (UTC)"),
            labels: labels.clone(),
            series: vec![
                Series {
                    name: "succeeded",
                    class: "s1",
                    values: col(|b| (b.requests - b.errors) as f64),
                },
                Series {
                    name: "failed",
                    class: "s3",
                    values: col(|b| b.errors as f64),
                },
            ],
            format: count,
            axis: count,
            min_step: 1.0,
        }
        .render(),
        Chart {
            id: "chart-tokens",
            title: &format!("Tokens per {per}"),
            labels: labels.clone(),
            series: vec![
                Series {
                    name: "prompt",
                    class: "s1",
                    values: col(|b| b.prompt_tokens as f64),
                },
                Series {
                    name: "completion",
                    class: "s2",
                    values: col(|b| b.completion_tokens as f64),
                },
            ],
            format: count,
            axis: count,
            min_step: 1.0,
        }
        .render(),
        Chart {
            id: "chart-cost",
            title: &format!("Cost per {per} (USD)"),
            labels,
            series: vec![Series {
                name: "cost",
                class: "s2",
                values: col(|b| b.cost_usd.unwrap_or(0.0)),
            }],
            format: fmt::usd,
            axis: fmt::usd_axis,
            min_step: 0.0,
        }
        .render(),
    ]
}

/// Rows a CSV export holds at most.
const CSV_MAX_ROWS: i64 = 100_000;

async fn usage_csv(
    State(state): State<AppState>,
    headers: HeaderMap,
    Query(p): Query<UsageParams>,
) -> Page {
    let s = require(&state, &headers).await?;
    let sc = scope(&s, &p)?;
    let rows = match state.store.usage_rows(&sc.filter, CSV_MAX_ROWS).await {
        Ok(r) => r,
        Err(e) => return Err(unavailable(e)),
    };
    let names: HashMap<String, String> = if s.key.admin {
        match state.store.list_keys().await {
            Ok(k) => k.into_iter().map(|k| (k.id, k.name)).collect(),
            Err(e) => return Err(unavailable(e)),
        }
    } else {
        HashMap::from([(s.key.id.clone(), s.key.name.clone())])
    };
    let mut w = csv::Writer::from_writer(Vec::with_capacity(rows.len() * 200 + 256));
    let header = [
        "time",
        "request_id",
        "key_id",
        "key_name",
        "endpoint",
        "model",
        "provider",
        "upstream_model",
        "status",
        "prompt_tokens",
        "completion_tokens",
        "cached_tokens",
        "reasoning_tokens",
        "cost_usd",
        "latency_ms",
        "ttft_ms",
        "attempts",
        "stream",
        "error_type",
    ];
    let mut ok = w.write_record(header).is_ok();
    for r in rows.iter().rev() {
        let opt = |v: Option<i64>| v.map(|v| v.to_string()).unwrap_or_default();
        let key_id = r.key_id.clone().unwrap_or_default();
        let key_name = names.get(&key_id).cloned().unwrap_or_default();
        ok &= w
            .write_record([
                fmt::iso(r.ts_ms),
                fmt::csv_cell(&r.request_id).into_owned(),
                fmt::csv_cell(&key_id).into_owned(),
                fmt::csv_cell(&key_name).into_owned(),
                fmt::csv_cell(&r.endpoint).into_owned(),
                fmt::csv_cell(&r.model).into_owned(),
                fmt::csv_cell(r.provider.as_deref().unwrap_or("")).into_owned(),
                fmt::csv_cell(r.upstream_model.as_deref().unwrap_or("")).into_owned(),
                r.status.to_string(),
                r.prompt_tokens.to_string(),
                r.completion_tokens.to_string(),
                r.cached_tokens.to_string(),
                r.reasoning_tokens.to_string(),
                r.cost_usd.map(|c| format!("{c}")).unwrap_or_default(),
                r.latency_ms.to_string(),
                opt(r.ttft_ms),
                r.attempts.to_string(),
                r.stream.to_string(),
                fmt::csv_cell(r.error_type.as_deref().unwrap_or("")).into_owned(),
            ])
            .is_ok();
    }
    let body = match w.into_inner() {
        Ok(b) if ok => b,
        _ => return Err(unavailable("CSV encoding failed")),
    };
    let mut resp = (
        StatusCode::OK,
        [
            (CONTENT_TYPE, "text/csv; charset=utf-8".to_owned()),
            (
                CONTENT_DISPOSITION,
                format!("attachment; filename=\"jusinfer-usage-{}.csv\"", sc.range),
            ),
        ],
        body,
    )
        .into_response();
    if i64::try_from(rows.len()).unwrap_or(i64::MAX) >= CSV_MAX_ROWS {
        resp.headers_mut()
            .insert("x-jusinfer-truncated", HeaderValue::from_static("true"));
    }
    Ok(resp)
}

async fn models_page(State(state): State<AppState>, headers: HeaderMap) -> Page {
    let s = require(&state, &headers).await?;
    let models: Vec<pages::ModelView> = state
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
                        price: state
                            .prices
                            .get(d.provider.name(), &d.upstream_model)
                            .map(|p| (p.input, p.output)),
                        circuit: h["circuit"].as_str().unwrap_or("closed").to_owned(),
                        error_rate: h["error_rate"].as_f64().unwrap_or(0.0),
                        latency_ms: h["latency_ms"].as_f64(),
                        successes: h["successes"].as_u64().unwrap_or(0),
                        failures: h["failures"].as_u64().unwrap_or(0),
                    }
                })
                .collect(),
        })
        .collect();
    let open: Vec<(String, String)> = state
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

#[cfg(test)]
mod tests {
    use super::*;

    fn values(pairs: &[(&str, &str)]) -> MintValues {
        let mut v = MintValues::default();
        for (k, val) in pairs {
            let val = (*val).to_owned();
            match *k {
                "name" => v.name = val,
                "budget_usd" => v.budget_usd = val,
                "rpm" => v.rpm = val,
                "tpm" => v.tpm = val,
                "models" => v.models = val,
                "expires" => v.expires = val,
                "admin" => v.admin = Some(val),
                _ => {}
            }
        }
        v
    }

    #[test]
    fn mint_form_is_parsed_and_checked() {
        let k = parse_mint(&values(&[
            ("name", " ci "),
            ("budget_usd", "$5.50"),
            ("rpm", "1,000"),
            ("tpm", ""),
            ("models", "gpt-4o*, claude-*\necho"),
            ("expires", "30d"),
        ]))
        .map_err(|e| e.1)
        .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(k.name, "ci");
        assert_eq!(k.budget_usd, Some(5.5));
        assert_eq!(k.rpm, Some(1000));
        assert_eq!(k.tpm, None);
        assert_eq!(k.models, ["gpt-4o*", "claude-*", "echo"]);
        assert_eq!(k.expires_in.map(|d| d.as_secs()), Some(30 * 86_400));
        assert!(!k.admin);
        for (pairs, field) in [
            (vec![("name", "  ")], "name"),
            (vec![("name", "a"), ("budget_usd", "lots")], "budget_usd"),
            (vec![("name", "a"), ("budget_usd", "-1")], "budget_usd"),
            (vec![("name", "a"), ("rpm", "0")], "rpm"),
            (vec![("name", "a"), ("tpm", "1.5")], "tpm"),
            (vec![("name", "a"), ("expires", "5y")], "expires"),
        ] {
            assert_eq!(parse_mint(&values(&pairs)).err().map(|e| e.0), Some(field));
        }
    }
}
