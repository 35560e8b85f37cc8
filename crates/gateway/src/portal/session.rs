//! Portal sessions: the cookie, the CSRF token, and the same-origin check.
//!
//! - Signing in exchanges the key for a random session token in an `HttpOnly`,
//!   `SameSite=Strict` cookie scoped to `/developer`; the key itself is never stored in
//!   the browser or put in a URL. The database keeps only the token's SHA-256.
//! - Every state change is a POST that must carry the session's CSRF token (compared in
//!   constant time) and, when the browser says where it came from, come from this origin.
//! - The sign-in form has no session yet: its token is a double-submit cookie.

use axum::http::{HeaderMap, HeaderValue};
use rand::distributions::{Alphanumeric, DistString};
use rand::rngs::OsRng;
use subtle::ConstantTimeEq;

pub(super) const SESSION_COOKIE: &str = "jinf_session";
pub(super) const LOGIN_COOKIE: &str = "jinf_login";
/// How long a session lasts (absolute, from sign-in).
pub(super) const SESSION_TTL_SECS: i64 = 8 * 3600;
/// How long a sign-in form stays valid.
pub(super) const LOGIN_TTL_SECS: i64 = 3600;

/// A fresh random token (238 bits).
pub(super) fn token() -> String {
    Alphanumeric.sample_string(&mut OsRng, 40)
}

/// The value of cookie `name`, if the request sent it.
pub(super) fn cookie<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all("cookie")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|kv| kv.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v.trim())
        .filter(|v| !v.is_empty())
}

/// Whether the request came over TLS (directly or, per `X-Forwarded-Proto`, through a
/// proxy): only then can the cookie be `Secure`.
fn over_tls(headers: &HeaderMap) -> bool {
    headers
        .get("x-forwarded-proto")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.trim().eq_ignore_ascii_case("https"))
}

/// A `Set-Cookie` value: `value` for `max_age` seconds (0: delete it).
pub(super) fn set_cookie(
    headers: &HeaderMap,
    name: &str,
    value: &str,
    max_age: i64,
) -> HeaderValue {
    let secure = if over_tls(headers) { "; Secure" } else { "" };
    let v = format!(
        "{name}={value}; Path=/developer; Max-Age={max_age}; HttpOnly; SameSite=Strict{secure}"
    );
    HeaderValue::from_str(&v).unwrap_or_else(|_| HeaderValue::from_static(""))
}

/// Constant-time equality of two tokens.
pub(super) fn same_token(a: &str, b: &str) -> bool {
    a.len() == b.len() && bool::from(a.as_bytes().ct_eq(b.as_bytes()))
}

/// Whether a state-changing request may be from another site. Browsers send
/// `Sec-Fetch-Site` and `Origin` on POSTs; when they do, both must say "this origin".
/// (The CSRF token is the main defence; this one also stops a page that somehow holds a
/// token.) This origin's host is the `Host` header or, behind a proxy that rewrites it,
/// `X-Forwarded-Host`; with neither (HTTP/2 without `Host`), only `Sec-Fetch-Site` and the
/// token decide.
pub(super) fn cross_site(headers: &HeaderMap) -> bool {
    let text = |n: &str| headers.get(n).and_then(|v| v.to_str().ok());
    if let Some(site) = text("sec-fetch-site") {
        if !matches!(site, "same-origin" | "none") {
            return true;
        }
    }
    let Some(origin) = text("origin") else {
        return false;
    };
    let Some(origin_host) = origin
        .strip_prefix("http://")
        .or_else(|| origin.strip_prefix("https://"))
    else {
        // `null` (an opaque origin: a sandboxed frame, a data: URL) or anything odd.
        return true;
    };
    let forwarded = text("x-forwarded-host")
        .and_then(|v| v.split(',').next())
        .map(str::trim);
    let hosts: Vec<&str> = [text("host"), forwarded].into_iter().flatten().collect();
    !hosts.is_empty() && !hosts.iter().any(|h| h.eq_ignore_ascii_case(origin_host))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(*k, HeaderValue::from_static(v));
        }
        h
    }

    #[test]
    fn cookies_are_read_by_exact_name() {
        let h = headers(&[
            ("cookie", "a=1; jinf_session_x=2"),
            ("cookie", "jinf_session=abc; b=3"),
        ]);
        assert_eq!(cookie(&h, "jinf_session"), Some("abc"));
        assert_eq!(cookie(&h, "b"), Some("3"));
        assert_eq!(cookie(&h, "c"), None);
        assert_eq!(
            cookie(&headers(&[("cookie", "jinf_session=")]), "jinf_session"),
            None
        );
    }

    #[test]
    fn cookie_flags() {
        let plain = set_cookie(&HeaderMap::new(), SESSION_COOKIE, "t", 60);
        assert_eq!(
            plain,
            "jinf_session=t; Path=/developer; Max-Age=60; HttpOnly; SameSite=Strict"
        );
        let tls = set_cookie(
            &headers(&[("x-forwarded-proto", "https")]),
            SESSION_COOKIE,
            "t",
            0,
        );
        assert!(tls.to_str().is_ok_and(|v| v.ends_with("; Secure")));
    }

    #[test]
    fn cross_site_requests_are_told_apart() {
        let host = ("host", "127.0.0.1:8080");
        assert!(!cross_site(&headers(&[host])));
        assert!(!cross_site(&headers(&[
            host,
            ("origin", "http://127.0.0.1:8080")
        ])));
        assert!(!cross_site(&headers(&[
            host,
            ("sec-fetch-site", "same-origin")
        ])));
        assert!(cross_site(&headers(&[
            host,
            ("origin", "http://evil.example")
        ])));
        assert!(cross_site(&headers(&[host, ("origin", "null")])));
        assert!(cross_site(&headers(&[
            host,
            ("sec-fetch-site", "cross-site")
        ])));
        assert!(cross_site(&headers(&[
            host,
            ("sec-fetch-site", "same-site")
        ])));
    }

    #[test]
    fn tokens() {
        let (a, b) = (token(), token());
        assert_eq!(a.len(), 40);
        assert_ne!(a, b);
        assert!(same_token(&a, &a.clone()));
        assert!(!same_token(&a, &b));
        assert!(!same_token(&a, &a[..39]));
    }
}
