//! The rules every limiter applies, local or shared: what a request asks ([`Ask`]), the
//! verdict ([`Decision`]) with its rate-limit headers, and the arithmetic of the token
//! window and the budget.

use axum::http::{HeaderMap, HeaderValue};

use crate::calendar::Span;
use crate::error::GatewayError;

/// What one request asks of its key's limits.
#[derive(Debug, Clone)]
pub(crate) struct Ask {
    pub key_id: String,
    pub rpm: Option<u64>,
    pub tpm: Option<u64>,
    pub budget_usd: Option<f64>,
    /// The budget's current period (`None`: the key's lifetime). Spend counts from its
    /// start; a request's cost counts in the period it was admitted in.
    pub budget_span: Option<Span>,
    /// Tokens to hold against TPM: the prompt estimate plus the output the request may
    /// produce.
    pub tokens: u64,
    /// The part of `tokens` that must fit the window: all of it for a request that sets
    /// its own output maximum; the prompt alone for one that sets none, which then holds
    /// what is left of the window up to `tokens` ([`tpm_hold`]).
    pub tokens_min: u64,
    /// Cost to hold against the budget until the real cost is known.
    pub cost: f64,
}

impl Ask {
    pub(crate) fn is_limited(&self) -> bool {
        self.rpm.is_some() || self.tpm.is_some() || self.budget_usd.is_some()
    }

    /// Where the budget's spend counts from (Unix ms; `i64::MIN` for a lifetime budget).
    pub(crate) fn budget_since(&self) -> i64 {
        self.budget_span.map_or(i64::MIN, |s| s.start_ms)
    }
}

/// One limit's state as OpenAI's `x-ratelimit-*` headers report it.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub(crate) struct Window {
    pub limit: u64,
    pub remaining: u64,
    /// Milliseconds until `remaining` grows again.
    pub reset_ms: u64,
}

/// The headers of an admitted or refused request.
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct RateHeaders {
    pub requests: Option<Window>,
    pub tokens: Option<Window>,
}

impl RateHeaders {
    pub(crate) fn apply(&self, h: &mut HeaderMap) {
        for (name, w) in [("requests", self.requests), ("tokens", self.tokens)] {
            let Some(w) = w else { continue };
            h.insert(header_name("limit", name), HeaderValue::from(w.limit));
            h.insert(
                header_name("remaining", name),
                HeaderValue::from(w.remaining),
            );
            if let Ok(v) = HeaderValue::from_str(&format_reset(w.reset_ms)) {
                h.insert(header_name("reset", name), v);
            }
        }
    }
}

fn header_name(what: &str, of: &str) -> &'static str {
    match (what, of) {
        ("limit", "requests") => "x-ratelimit-limit-requests",
        ("remaining", "requests") => "x-ratelimit-remaining-requests",
        ("reset", "requests") => "x-ratelimit-reset-requests",
        ("limit", _) => "x-ratelimit-limit-tokens",
        ("remaining", _) => "x-ratelimit-remaining-tokens",
        _ => "x-ratelimit-reset-tokens",
    }
}

/// OpenAI's duration format: `120ms`, `8.64s`, `6m0s`.
pub(super) fn format_reset(ms: u64) -> String {
    if ms < 1000 {
        return format!("{ms}ms");
    }
    let secs = ms / 1000;
    let frac = ms % 1000;
    let sec_part = |s: u64| {
        if frac == 0 {
            format!("{s}s")
        } else {
            let f = format!("{frac:03}");
            format!("{s}.{}s", f.trim_end_matches('0'))
        }
    };
    if secs < 60 {
        sec_part(secs)
    } else {
        format!("{}m{}", secs / 60, sec_part(secs % 60))
    }
}

/// Why a request was refused.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Refusal {
    Requests {
        retry_after_ms: u64,
    },
    Tokens {
        retry_after_ms: u64,
        asked: u64,
    },
    Budget {
        spent: f64,
        held: f64,
        budget: f64,
        /// The refused request's own hold.
        asked: f64,
    },
}

/// What admission decided.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Decision {
    pub refused: Option<Refusal>,
    pub headers: RateHeaders,
    /// Tokens counted against TPM when admitted (see [`tpm_hold`]).
    pub tokens: u64,
}

impl Decision {
    /// The 429 to send for a refusal.
    pub(crate) fn error(&self, ask: &Ask) -> Option<GatewayError> {
        let e = match self.refused.as_ref()? {
            Refusal::Requests { retry_after_ms } => GatewayError::rate_limited(
                "requests",
                format!(
                    "Rate limit reached for key {} on requests per minute (RPM): Limit {}. Please try again in {}.",
                    ask.key_id,
                    ask.rpm.unwrap_or(0),
                    format_reset(*retry_after_ms)
                ),
                *retry_after_ms,
            ),
            Refusal::Tokens { retry_after_ms, asked } => GatewayError::rate_limited(
                "tokens",
                format!(
                    "Rate limit reached for key {} on tokens per minute (TPM): Limit {}, Requested {asked}. Please try again in {}.",
                    ask.key_id,
                    ask.tpm.unwrap_or(0),
                    format_reset(*retry_after_ms)
                ),
                *retry_after_ms,
            ),
            Refusal::Budget {
                spent,
                held,
                budget,
                asked,
            } => {
                let in_flight = if *held > 0.0 {
                    format!(
                        " (and ${held:.6} is held by its requests in flight; this request may cost up to ${asked:.6})"
                    )
                } else {
                    String::new()
                };
                let (which, resets) = match ask.budget_span {
                    Some(s) => (
                        "period's ",
                        format!(
                            " The budget starts again at {} UTC.",
                            crate::calendar::datetime(s.end_ms)
                        ),
                    ),
                    None => ("", String::new()),
                };
                GatewayError::insufficient_quota(format!(
                    "Key {} has spent ${spent:.6} of its {which}${budget:.6} budget{in_flight}.{resets} Raise the budget with `PATCH /admin/keys/{}`.",
                    ask.key_id, ask.key_id
                ))
            }
        };
        Some(e)
    }
}

/// The tokens a request counts against TPM with `used` in the window, or `None` when it
/// does not fit: `tokens` when it fits whole, else (a request with no maximum of its own)
/// what is left of the window, at least `tokens_min`.
pub(super) fn tpm_hold(used: u64, tpm: u64, tokens: u64, tokens_min: u64) -> Option<u64> {
    let left = tpm.saturating_sub(used);
    if used.saturating_add(tokens_min) > tpm {
        return None;
    }
    Some(tokens.min(left).max(tokens_min))
}

/// Whether a request holding `cost` would cross `budget` given what is spent and held
/// (the same rule as the Redis script's): nothing is left, or other requests are in
/// flight (more than rounding) and this one's worst case would not fit beside them.
pub(super) fn crosses_budget(spent: f64, held: f64, cost: f64, budget: f64) -> bool {
    spent + held >= budget || (held > 1e-9 && spent + held + cost > budget)
}

/// What settling a hold applies.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Settle {
    pub key_id: String,
    pub tpm: bool,
    pub budget: bool,
    pub tokens_held: u64,
    pub tokens_used: u64,
    pub cost_held: f64,
    pub cost: f64,
    /// Names the hold in Redis (the request's own, or its lease's).
    pub hold_id: String,
    /// The second the token estimate was counted in: the correction goes there.
    pub admitted_s: u64,
    /// The budget period the request was admitted in ([`Ask::budget_since`]): its cost
    /// counts there.
    pub budget_since: i64,
}
