//! The keys page: the table, minting (the key shown once) and revoking (with a
//! confirmation page). Minting and revoking are for admin keys only.

use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Redirect};
use axum::Form;
use serde::Deserialize;

use super::pages::{self, KeysExtra, Listing, MintValues, Nav};
use super::{
    check_form, ctx, forbidden, html, require, session, unavailable, CsrfForm, Page, Refusal,
};
use crate::keys::{self, NewKey};
use crate::state::AppState;
use crate::store::{KeyRecord, KeyStats, PortalSession};

/// Keys on one page of the keys table.
pub(super) const KEYS_PER_PAGE: i64 = 50;

/// The keys the caller may see (an admin: one page of those matching `listing.q`), with
/// what each has spent; `listing` gets the totals.
async fn visible_keys(
    state: &AppState,
    me: &KeyRecord,
    listing: &mut Listing,
) -> Result<Vec<(KeyRecord, KeyStats)>, Refusal> {
    let keys = if me.admin {
        let page = i64::from(listing.page.max(1));
        let (keys, total) = state
            .store
            .search_keys(&listing.q, KEYS_PER_PAGE, (page - 1) * KEYS_PER_PAGE)
            .await
            .map_err(unavailable)?;
        listing.total = total;
        listing.pages = u32::try_from((total + KEYS_PER_PAGE - 1) / KEYS_PER_PAGE)
            .unwrap_or(u32::MAX)
            .max(1);
        keys
    } else {
        listing.total = 1;
        listing.pages = 1;
        vec![me.clone()]
    };
    // Each key's stats from the rollup (indexed by key): a page's worth of small queries.
    let mut rows = Vec::with_capacity(keys.len());
    for k in keys {
        let st = state
            .store
            .key_stats(Some(&k.id))
            .await
            .map_err(unavailable)?
            .remove(&k.id)
            .unwrap_or_default();
        rows.push((k, st));
    }
    Ok(rows)
}

#[derive(Deserialize)]
pub(super) struct KeysParams {
    revoked: Option<String>,
    #[serde(default)]
    q: String,
    page: Option<u32>,
}

pub(super) async fn keys_page(
    State(state): State<AppState>,
    headers: HeaderMap,
    Query(p): Query<KeysParams>,
) -> Page {
    let s = require(&state, &headers).await?;
    let mut listing = Listing {
        q: p.q.chars().take(200).collect::<String>().trim().to_owned(),
        page: p.page.unwrap_or(1).max(1),
        ..Listing::default()
    };
    let rows = visible_keys(&state, &s.key, &mut listing).await?;
    let revoked = match p.revoked {
        Some(id) if s.key.admin => state.store.key_by_id(&id).await.map_err(unavailable)?,
        _ => None,
    };
    let flash = revoked.filter(|k| k.revoked_at.is_some()).map(|k| {
        format!(
            "Revoked “{}” ({}…). The API refuses it from now on.",
            k.name, k.prefix
        )
    });
    let extra = KeysExtra {
        flash,
        nonce: session::token(),
        listing,
        ..KeysExtra::default()
    };
    Ok(html(
        StatusCode::OK,
        pages::keys(&ctx(&s, Nav::Keys), &rows, &extra),
    ))
}

#[derive(Deserialize)]
pub(super) struct MintForm {
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
    let budget_period = match v.budget_period.trim() {
        "" => None,
        p => Some(p.parse().map_err(|_| {
            (
                "budget_period",
                "Pick a budget period from the list.".to_owned(),
            )
        })?),
    };
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
    let cache = match v.cache.trim() {
        "" => None,
        "on" => Some(true),
        "off" => Some(false),
        _ => {
            return Err((
                "cache",
                "Pick a response cache setting from the list.".to_owned(),
            ))
        }
    };
    Ok(NewKey {
        cache,
        name: name.to_owned(),
        admin: v.admin.is_some(),
        budget_usd,
        budget_period,
        rpm,
        tpm,
        models,
        expires_in,
        metadata: serde_json::json!({"minted_by": "portal"}),
    })
}

pub(super) async fn mint(
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
                let mut listing = Listing::first();
                let rows = visible_keys(&state, &s.key, &mut listing).await?;
                let extra = KeysExtra {
                    listing,
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
    let mut listing = Listing::first();
    let rows = visible_keys(&state, &s.key, &mut listing).await?;
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
        listing,
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

pub(super) async fn revoke_page(
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

pub(super) async fn revoke(
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
    state.announce_key_change(&k).await;
    if let Err(e) = state.store.delete_sessions_of(&k.id).await {
        tracing::warn!(error = %e, "portal: could not end the revoked key's sessions");
    }
    tracing::info!(key_id = %k.id, by = %s.key.id, "portal: key revoked");
    Ok(Redirect::to(&format!("/developer/keys?revoked={}", k.id)).into_response())
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
                "budget_period" => v.budget_period = val,
                "rpm" => v.rpm = val,
                "tpm" => v.tpm = val,
                "models" => v.models = val,
                "expires" => v.expires = val,
                "admin" => v.admin = Some(val),
                "cache" => v.cache = val,
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
            ("budget_period", "weekly"),
        ]))
        .map_err(|e| e.1)
        .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(k.name, "ci");
        assert_eq!(k.budget_usd, Some(5.5));
        assert_eq!(k.budget_period, Some(crate::calendar::BudgetPeriod::Weekly));
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
            (
                vec![("name", "a"), ("budget_period", "yearly")],
                "budget_period",
            ),
        ] {
            assert_eq!(parse_mint(&values(&pairs)).err().map(|e| e.0), Some(field));
        }
    }
}
