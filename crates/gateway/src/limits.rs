//! Per-key limits: requests per minute, tokens per minute and the spend budget.
//!
//! Admission happens once per request, after routing and before the first attempt: it
//! checks the three rules together and, when all pass, commits them together — the
//! request joins the key's one-minute request log, its prompt estimate is added to the
//! key's token window, and its estimated cost is *held* against the budget. The returned
//! [`Hold`] is settled when the request's usage row is written: the token estimate is
//! replaced by the real total and the held cost by the real cost.
//!
//! - RPM and TPM are sliding windows of one-second buckets: a request counts from its
//!   second until 61 s later, so at most `rpm` requests (`tpm` tokens) are admitted in any
//!   60 s; constant memory per key.
//! - Budget: a request holds its worst-case cost (prompt plus its maximum output, see
//!   `handlers::admit`) and is admitted while `spent + held + its hold <= budget`; a key's
//!   only request in flight is admitted while `spent < budget`. So the requests in flight
//!   can never together cost more than what is left, and a budget is overshot by at most
//!   one request's cost (plus what a request without an output maximum produces beyond
//!   `hold_output_tokens`).
//!
//! Without `redis` the state lives in this process ([`Local`]); with it, in Redis, updated
//! by atomic Lua scripts ([`crate::redis_limits`]) so every instance shares it. A Redis
//! that does not answer falls back to the local state (logged), never to refusing traffic.

use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

use axum::http::{HeaderMap, HeaderValue};
use dashmap::DashMap;

use crate::calendar::Span;
use crate::error::GatewayError;
use crate::redis_limits::RedisLimits;
use crate::store::Store;

/// One-second buckets counted: 61, so that whatever the request's position within its
/// second, it is counted for at least a full 60 s (never more than the limit in any 60 s).
const BUCKETS: usize = 61;
/// A key's spend is loaded from the ledger again after this long (so costs settled by
/// other instances, or lost, cannot skew it for long).
const SPEND_RELOAD_MS: u64 = 300_000;
/// How long a request waits for Redis to admit it before the local limits decide (and
/// Redis is left alone for a moment, see [`RedisLimits::mark_down`]).
const REDIS_ADMIT_TIMEOUT: std::time::Duration = std::time::Duration::from_millis(500);
/// How long a request refused by holds in flight waits before it asks once more (see
/// [`Limits::admit`]): the Redis settler's linger plus a round trip, with margin.
const SETTLE_GRACE: std::time::Duration = std::time::Duration::from_millis(50);
/// Token counts beyond this are an upstream's bug, not usage.
pub const MAX_TOKENS: u64 = 1 << 40;

/// What one request asks of its key's limits.
#[derive(Debug, Clone)]
pub struct Ask {
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
    pub fn is_limited(&self) -> bool {
        self.rpm.is_some() || self.tpm.is_some() || self.budget_usd.is_some()
    }

    /// Where the budget's spend counts from (Unix ms; `i64::MIN` for a lifetime budget).
    pub fn budget_since(&self) -> i64 {
        self.budget_span.map_or(i64::MIN, |s| s.start_ms)
    }
}

/// One limit's state as OpenAI's `x-ratelimit-*` headers report it.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Window {
    pub limit: u64,
    pub remaining: u64,
    /// Milliseconds until `remaining` grows again.
    pub reset_ms: u64,
}

/// The headers of an admitted or refused request.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RateHeaders {
    pub requests: Option<Window>,
    pub tokens: Option<Window>,
}

impl RateHeaders {
    pub fn apply(&self, h: &mut HeaderMap) {
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
pub fn format_reset(ms: u64) -> String {
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
pub enum Refusal {
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
pub struct Decision {
    pub refused: Option<Refusal>,
    pub headers: RateHeaders,
    /// Tokens counted against TPM when admitted (see [`tpm_hold`]).
    pub tokens: u64,
}

impl Decision {
    /// The 429 to send for a refusal.
    pub fn error(&self, ask: &Ask) -> Option<GatewayError> {
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
pub fn tpm_hold(used: u64, tpm: u64, tokens: u64, tokens_min: u64) -> Option<u64> {
    let left = tpm.saturating_sub(used);
    if used.saturating_add(tokens_min) > tpm {
        return None;
    }
    Some(tokens.min(left).max(tokens_min))
}

/// Whether a request holding `cost` would cross `budget` given what is spent and held
/// (the same rule as the Redis script's): nothing is left, or other requests are in
/// flight (more than rounding) and this one's worst case would not fit beside them.
pub fn crosses_budget(spent: f64, held: f64, cost: f64, budget: f64) -> bool {
    spent + held >= budget || (held > 1e-9 && spent + held + cost > budget)
}

/// The in-process limiter state of every key.
#[derive(Default)]
pub struct Local {
    keys: DashMap<String, Arc<Mutex<KeyState>>>,
}

/// A sliding one-minute window of one-second buckets: what was counted in the last 60
/// whole seconds. Constant memory whatever the limit (a log of a million requests per
/// minute would not be).
#[derive(Clone, Copy)]
struct Buckets([(u64, i64); BUCKETS]);

impl Default for Buckets {
    fn default() -> Self {
        Self([(0, 0); BUCKETS])
    }
}

impl Buckets {
    /// The count in the window at second `now_s`, and the oldest second still counted.
    fn used(&self, now_s: u64) -> (u64, Option<u64>) {
        let mut used: i64 = 0;
        let mut oldest = None;
        for &(s, n) in &self.0 {
            if n != 0 && s + (BUCKETS as u64) > now_s && s <= now_s {
                used += n;
                oldest = Some(oldest.map_or(s, |o: u64| o.min(s)));
            }
        }
        (u64::try_from(used).unwrap_or(0), oldest)
    }

    fn add(&mut self, now_s: u64, n: i64) {
        let slot = &mut self.0[(now_s % BUCKETS as u64) as usize];
        if slot.0 != now_s {
            *slot = (now_s, 0);
        }
        slot.1 = slot.1.saturating_add(n);
    }

    /// Whether second `s`'s bucket is still in the window at `now_s`.
    fn holds(&self, s: u64, now_s: u64) -> bool {
        self.0[(s % BUCKETS as u64) as usize].0 == s && s + (BUCKETS as u64) > now_s
    }

    /// Milliseconds until the oldest counted second leaves the window.
    fn reset_ms(oldest: Option<u64>, now_ms: u64) -> u64 {
        oldest.map_or(0, |s| ((s + BUCKETS as u64) * 1000).saturating_sub(now_ms))
    }
}

#[derive(Default)]
struct KeyState {
    requests: Buckets,
    tokens: Buckets,
    /// Spend per the ledger when loaded, plus every settled cost since.
    spent: Option<f64>,
    /// When `spent` was loaded (ms): it is loaded again after [`SPEND_RELOAD_MS`].
    spent_at: u64,
    /// Where `spent` counts from ([`Ask::budget_since`]): a new period (or a changed
    /// one) loads it again.
    spent_since: i64,
    /// Costs held by admitted, unsettled requests.
    held: f64,
    /// The latest second seen: a wall clock that steps back does not reopen the window.
    last_s: u64,
}

impl Local {
    /// Admits or refuses `ask` at `now_ms`, committing it when admitted. `spent` is the
    /// ledger's spend for the key, used the first time the key is seen.
    pub fn admit(&self, ask: &Ask, now_ms: u64, spent: Option<f64>) -> Decision {
        let entry = match self.keys.get(&ask.key_id) {
            Some(e) => Arc::clone(e.value()),
            None => Arc::clone(self.keys.entry(ask.key_id.clone()).or_default().value()),
        };
        let Ok(mut st) = entry.lock() else {
            return Decision {
                refused: None,
                headers: RateHeaders::default(),
                tokens: ask.tokens,
            };
        };
        if let Some(v) = spent {
            st.spent = Some(v);
            st.spent_at = now_ms;
            st.spent_since = ask.budget_since();
        }
        let now_s = (now_ms / 1000).max(st.last_s);
        st.last_s = now_s;
        let now_ms = now_ms.max(now_s * 1000);
        let (req_used, req_oldest) = st.requests.used(now_s);
        let (tok_used, tok_oldest) = st.tokens.used(now_s);
        let mut refused = None;
        if let Some(budget) = ask.budget_usd {
            let spent = st.spent.unwrap_or(0.0);
            if crosses_budget(spent, st.held, ask.cost, budget) {
                refused = Some(Refusal::Budget {
                    spent,
                    held: st.held,
                    budget,
                    asked: ask.cost,
                });
            }
        }
        if refused.is_none() && ask.rpm.is_some_and(|rpm| req_used >= rpm) {
            refused = Some(Refusal::Requests {
                retry_after_ms: Buckets::reset_ms(req_oldest, now_ms).max(1),
            });
        }
        let mut counted = ask.tokens;
        if refused.is_none() {
            if let Some(tpm) = ask.tpm {
                match tpm_hold(tok_used, tpm, ask.tokens, ask.tokens_min) {
                    Some(n) => counted = n,
                    None => {
                        refused = Some(Refusal::Tokens {
                            retry_after_ms: Buckets::reset_ms(tok_oldest, now_ms).max(1000),
                            asked: ask.tokens_min,
                        })
                    }
                }
            }
        }
        if refused.is_none() {
            if ask.rpm.is_some() {
                st.requests.add(now_s, 1);
            }
            if ask.tpm.is_some() {
                st.tokens
                    .add(now_s, i64::try_from(counted).unwrap_or(i64::MAX));
            }
            if ask.budget_usd.is_some() {
                st.held += ask.cost;
            }
        }
        let (req_used, req_oldest) = st.requests.used(now_s);
        let (tok_used, tok_oldest) = st.tokens.used(now_s);
        let headers = RateHeaders {
            requests: ask.rpm.map(|rpm| Window {
                limit: rpm,
                remaining: rpm.saturating_sub(req_used),
                reset_ms: Buckets::reset_ms(req_oldest, now_ms),
            }),
            tokens: ask.tpm.map(|tpm| Window {
                limit: tpm,
                remaining: tpm.saturating_sub(tok_used),
                reset_ms: Buckets::reset_ms(tok_oldest, now_ms),
            }),
        };
        Decision {
            refused,
            headers,
            tokens: counted,
        }
    }

    /// Replaces a request's estimates by what it really used.
    pub fn settle(&self, s: &Settle, now_ms: u64) {
        let Some(entry) = self.keys.get(&s.key_id).map(|e| Arc::clone(e.value())) else {
            return;
        };
        let Ok(mut st) = entry.lock() else { return };
        if s.tpm {
            let used = i64::try_from(s.tokens_used.min(MAX_TOKENS)).unwrap_or(0);
            let held = i64::try_from(s.tokens_held.min(MAX_TOKENS)).unwrap_or(0);
            let delta = used - held;
            let now_s = now_ms / 1000;
            if delta != 0 {
                // The correction goes where the estimate was counted (and leaves the window
                // with it); once that second has left, only an excess still counts.
                if st.tokens.holds(s.admitted_s, now_s) {
                    st.tokens.add(s.admitted_s, delta);
                } else if delta > 0 {
                    st.tokens.add(now_s, delta);
                }
            }
        }
        if s.budget {
            st.held = (st.held - s.cost_held).max(0.0);
            // A cost counts in the period its request was admitted in: one admitted before
            // a reset does not count after it.
            if st.spent_since == s.budget_since {
                if let Some(spent) = st.spent.as_mut() {
                    *spent += s.cost;
                }
            }
        }
    }

    /// Whether the key's spend since `since` is known, and loaded recently enough.
    fn spend_state(&self, key_id: &str, since: i64, now_ms: u64) -> SpendState {
        self.keys
            .get(key_id)
            .and_then(|e| {
                e.value().lock().ok().map(|s| match s.spent {
                    None => SpendState::Unknown,
                    Some(_) if s.spent_since != since => SpendState::Unknown,
                    Some(_) if now_ms.saturating_sub(s.spent_at) < SPEND_RELOAD_MS => {
                        SpendState::Fresh
                    }
                    Some(_) => SpendState::Stale,
                })
            })
            .unwrap_or(SpendState::Unknown)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum SpendState {
    Unknown,
    Stale,
    Fresh,
}

/// What settling a hold applies.
#[derive(Debug, Clone, PartialEq)]
pub struct Settle {
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

/// Limits for every key, local or shared.
#[derive(Clone)]
pub struct Limits {
    local: Arc<Local>,
    redis: Option<RedisLimits>,
    store: Store,
}

impl Limits {
    pub fn new(store: Store, redis: Option<RedisLimits>) -> Self {
        Self {
            local: Arc::new(Local::default()),
            redis,
            store,
        }
    }

    /// Admits or refuses `ask`; an admitted request gets a [`Hold`] to settle.
    ///
    /// A request refused only because of the holds in flight (the spend alone is under
    /// the budget) is asked again once, [`SETTLE_GRACE`] later: a hold is settled in
    /// Redis a moment after its response has gone out (the settler batches), so a client
    /// that sends its next request as soon as it has the answer, to this instance or
    /// another, would otherwise be refused by the hold of its own finished request.
    pub async fn admit(&self, ask: &Ask) -> Result<(Decision, Option<Hold>), GatewayError> {
        let first = self.admit_once(ask).await?;
        match &first.0.refused {
            Some(Refusal::Budget {
                spent,
                held,
                budget,
                ..
            }) if self.redis.is_some() && *held > 0.0 && spent < budget => {
                tokio::time::sleep(SETTLE_GRACE).await;
                self.admit_once(ask).await
            }
            _ => Ok(first),
        }
    }

    async fn admit_once(&self, ask: &Ask) -> Result<(Decision, Option<Hold>), GatewayError> {
        if !ask.is_limited() {
            return Ok((
                Decision {
                    refused: None,
                    headers: RateHeaders::default(),
                    tokens: ask.tokens,
                },
                None,
            ));
        }
        if let Some(r) = &self.redis {
            if let Some(a) = r.admit_from_lease(ask) {
                let hold = self.hold(ask, a.decision.tokens, true, a.hold_id, a.sec);
                return Ok((a.decision, Some(hold)));
            }
            if r.is_up() {
                match tokio::time::timeout(REDIS_ADMIT_TIMEOUT, self.admit_in_redis(r, ask)).await {
                    Ok(Ok(d)) => return Ok(d),
                    Ok(Err(e)) => r.mark_down(&e),
                    Err(_) => r.mark_down(&"no answer within the admission timeout"),
                }
            }
        }
        let now = now_ms();
        let spent = match self.local.spend_state(&ask.key_id, ask.budget_since(), now) {
            SpendState::Fresh => None,
            _ if ask.budget_usd.is_none() => None,
            state => match self.store.spend(&ask.key_id, ask.budget_since()).await {
                Ok(v) => Some(v),
                // A store that does not answer: go on with the spend known so far.
                Err(e) if state == SpendState::Stale => {
                    tracing::warn!(error = %e, "spend reload failed; using the last known spend");
                    None
                }
                Err(e) => {
                    return Err(GatewayError::internal(format!("budget lookup failed: {e}"))
                        .retryable(true))
                }
            },
        };
        let decision = self.local.admit(ask, now, spent);
        let hold = decision
            .refused
            .is_none()
            .then(|| self.hold(ask, decision.tokens, false, String::new(), now / 1000));
        Ok((decision, hold))
    }

    /// The Redis round trip, in its own task: a client that leaves meanwhile does not
    /// strand what the script counted. The task builds the request's `Hold` armed to
    /// release everything (as if the request used nothing); the receiver arms it for real.
    /// Dropped anywhere on the way, it releases. An answer lost to a timeout is cancelled.
    async fn admit_in_redis(
        &self,
        r: &RedisLimits,
        ask: &Ask,
    ) -> Result<(Decision, Option<Hold>), redis::RedisError> {
        let (tx, rx) = tokio::sync::oneshot::channel();
        let (r2, ask2, me) = (r.clone(), ask.clone(), self.clone());
        tokio::spawn(async move {
            let hold_id = crate::usage::unique_id();
            let result = match r2.admit(&ask2, &hold_id, &me.store).await {
                Ok(a) => {
                    let hold = a.decision.refused.is_none().then(|| {
                        let mut h = me.hold(&ask2, a.decision.tokens, true, a.hold_id, a.sec);
                        if let Some(s) = h.settle.as_mut() {
                            s.tokens_used = 0;
                        }
                        h
                    });
                    Ok((a.decision, hold))
                }
                Err(e) => {
                    if e.is_timeout() || e.is_io_error() || e.is_connection_dropped() {
                        r2.cancel(&ask2.key_id, &hold_id);
                    }
                    Err(e)
                }
            };
            let _ = tx.send(result);
        });
        let (decision, hold) = rx.await.unwrap_or_else(|_| {
            Err(redis::RedisError::from((
                redis::ErrorKind::IoError,
                "admission task ended",
            )))
        })?;
        let hold = hold.map(|mut h| {
            if let Some(s) = h.settle.as_mut() {
                s.tokens_used = s.tokens_held;
            }
            h
        });
        Ok((decision, hold))
    }

    fn hold(&self, ask: &Ask, tokens: u64, shared: bool, hold_id: String, admitted_s: u64) -> Hold {
        Hold {
            limits: self.clone(),
            shared,
            settle: Some(Settle {
                key_id: ask.key_id.clone(),
                tpm: ask.tpm.is_some(),
                budget: ask.budget_usd.is_some(),
                tokens_held: tokens,
                tokens_used: tokens,
                cost_held: ask.cost,
                cost: 0.0,
                hold_id,
                admitted_s,
                budget_since: ask.budget_since(),
            }),
        }
    }

    fn settle(&self, s: Settle, shared: bool) {
        match (&self.redis, shared) {
            (Some(r), true) => r.settle(s),
            _ => self.local.settle(&s, now_ms()),
        }
    }
}

/// An admitted request's claim on its key's limits, settled once with the real usage (or,
/// when dropped unsettled, with the estimates and no cost).
pub struct Hold {
    limits: Limits,
    shared: bool,
    settle: Option<Settle>,
}

impl Hold {
    pub fn settle(mut self, tokens_used: u64, cost: f64) {
        if let Some(mut s) = self.settle.take() {
            s.tokens_used = tokens_used.min(MAX_TOKENS);
            s.cost = if cost.is_finite() { cost.max(0.0) } else { 0.0 };
            self.limits.settle(s, self.shared);
        }
    }
}

impl Drop for Hold {
    fn drop(&mut self) {
        if let Some(s) = self.settle.take() {
            self.limits.settle(s, self.shared);
        }
    }
}

pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// Prompt tokens of a request body, estimated before it is sent: about four bytes of JSON
/// per token (the settle step replaces it by the provider's count).
pub fn estimate_prompt_tokens(body_len: usize) -> u64 {
    (body_len as u64).div_ceil(4)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ask(rpm: Option<u64>, tpm: Option<u64>, budget: Option<f64>, tokens: u64) -> Ask {
        Ask {
            key_id: "k".into(),
            rpm,
            tpm,
            budget_usd: budget,
            budget_span: None,
            tokens,
            tokens_min: tokens,
            cost: 0.0,
        }
    }

    fn settle(
        tokens_held: u64,
        tokens_used: u64,
        cost_held: f64,
        cost: f64,
        admitted_s: u64,
    ) -> Settle {
        Settle {
            key_id: "k".into(),
            tpm: true,
            budget: true,
            tokens_held,
            tokens_used,
            cost_held,
            cost,
            hold_id: "h".into(),
            admitted_s,
            budget_since: i64::MIN,
        }
    }

    #[test]
    fn rpm_is_a_sliding_window() {
        let l = Local::default();
        let a = ask(Some(3), None, None, 0);
        for (i, t) in [500u64, 10_000, 20_000].into_iter().enumerate() {
            let d = l.admit(&a, t, None);
            assert_eq!(d.refused, None);
            let w = d.headers.requests.expect("header");
            assert_eq!(w.remaining, 2 - i as u64);
            // The first request's second (0) leaves the window at 61 s.
            assert_eq!(w.reset_ms, 61_000 - t);
        }
        let d = l.admit(&a, 60_999, None);
        assert_eq!(d.refused, Some(Refusal::Requests { retry_after_ms: 1 }));
        // Second 0 has left the window: one slot frees.
        assert_eq!(l.admit(&a, 61_000, None).refused, None);
        assert!(l.admit(&a, 61_001, None).refused.is_some());
        // A key idle for longer than the window starts afresh.
        let d = l.admit(&a, 200_000, None);
        assert_eq!(d.headers.requests.map(|w| w.remaining), Some(2));
    }

    #[test]
    fn tpm_counts_the_estimate_then_settles() {
        let l = Local::default();
        let a = ask(None, Some(100), None, 60);
        assert_eq!(l.admit(&a, 1_000, None).refused, None);
        // 60 held: another 60 would pass 100.
        let d = l.admit(&a, 2_000, None);
        assert!(matches!(d.refused, Some(Refusal::Tokens { asked: 60, .. })));
        // The first request really used 20 tokens: 80 left.
        l.settle(&settle(60, 20, 0.0, 0.0, 1), 3_000);
        let d = l.admit(&a, 3_500, None);
        assert_eq!(d.refused, None);
        assert_eq!(d.headers.tokens.map(|w| w.remaining), Some(20));
        // Sixty-one seconds after the first bucket it has left the window.
        let d = l.admit(&ask(None, Some(100), None, 30), 62_000, None);
        assert_eq!(d.refused, None);
    }

    #[test]
    fn a_correction_leaves_the_window_with_its_estimate() {
        let l = Local::default();
        let a = ask(None, Some(100), None, 100);
        assert_eq!(l.admit(&a, 0, None).refused, None);
        // It failed: settled at 0 tokens, 30 s later.
        l.settle(&settle(100, 0, 0.0, 0.0, 0), 30_000);
        assert_eq!(l.admit(&a, 30_500, None).refused, None);
        // At 61 s the first second leaves: one 100-token request is counted (at 30 s), so a
        // second one is refused — the correction did not outlive its estimate.
        assert!(l.admit(&a, 61_500, None).refused.is_some());
        // A correction for a second that already left adds only an excess.
        l.settle(&settle(100, 0, 0.0, 0.0, 0), 62_000);
        assert!(l.admit(&a, 62_500, None).refused.is_some());
    }

    #[test]
    fn a_clock_stepping_back_does_not_reopen_the_window() {
        let l = Local::default();
        let a = ask(Some(1), None, None, 0);
        assert_eq!(l.admit(&a, 100_000, None).refused, None);
        assert!(l.admit(&a, 40_000, None).refused.is_some());
    }

    #[test]
    fn budget_counts_spend_and_holds() {
        let l = Local::default();
        let mut a = ask(None, None, Some(1.0), 0);
        a.cost = 0.4;
        assert_eq!(l.admit(&a, 0, Some(0.1)).refused, None); // 0.1 spent + 0.4 held
        assert_eq!(l.admit(&a, 0, None).refused, None); // 0.1 + 0.8 held: fits
                                                        // A third would hold 1.2 beside 0.1 spent: it does not fit.
        assert_eq!(
            l.admit(&a, 0, None).refused,
            Some(Refusal::Budget {
                spent: 0.1,
                held: 0.8,
                budget: 1.0,
                asked: 0.4,
            })
        );
        // Two finish having cost less than held: 0.2 spent, nothing held.
        l.settle(&settle(0, 0, 0.4, 0.05, 0), 0);
        l.settle(&settle(0, 0, 0.4, 0.05, 0), 0);
        assert_eq!(l.admit(&a, 0, None).refused, None); // 0.2 + 0.4
        assert_eq!(l.admit(&a, 0, None).refused, None); // 0.2 + 0.8
        assert!(l.admit(&a, 0, None).refused.is_some());
    }

    #[test]
    fn tpm_holds_the_output_maximum_or_what_is_left() {
        // With a maximum of its own: whole or not at all.
        assert_eq!(tpm_hold(0, 2000, 1010, 1010), Some(1010));
        assert_eq!(tpm_hold(1010, 2000, 1010, 1010), None);
        // Without: the prompt must fit; it holds the rest of the window up to its worst case.
        assert_eq!(tpm_hold(0, 2000, 10 + 4096, 10), Some(2000));
        assert_eq!(tpm_hold(1500, 2000, 10 + 4096, 10), Some(500));
        assert_eq!(tpm_hold(1995, 2000, 10 + 4096, 10), None);
        assert_eq!(tpm_hold(0, 100_000, 10 + 4096, 10), Some(4106));
        let l = Local::default();
        let mut a = ask(None, Some(2000), None, 4106);
        a.tokens_min = 10;
        let d = l.admit(&a, 0, None);
        assert_eq!((d.refused.is_none(), d.tokens), (true, 2000));
        assert!(
            l.admit(&a, 0, None).refused.is_some(),
            "nothing left beside it"
        );
    }

    #[test]
    fn a_new_budget_period_counts_from_its_start() {
        use crate::calendar::BudgetPeriod;
        let l = Local::default();
        let day_ms = 86_400_000u64;
        let t = 20_000 * day_ms + 3_600_000;
        let mut a = ask(None, None, Some(1.0), 0);
        a.budget_span = Some(BudgetPeriod::Daily.span(t as i64));
        a.cost = 0.1;
        // The day's spend is loaded, and it has reached the budget.
        assert_eq!(l.spend_state("k", a.budget_since(), t), SpendState::Unknown);
        assert!(l.admit(&a, t, Some(1.0)).refused.is_some());
        assert_eq!(
            l.spend_state("k", a.budget_since(), t + 1),
            SpendState::Fresh
        );
        // A request admitted late in the day settles after midnight.
        let mut late = a.clone();
        late.budget_span = Some(BudgetPeriod::Daily.span((t - 3_600_000 + day_ms - 10) as i64));
        assert_eq!(late.budget_span, a.budget_span);
        // The next day: the spend must be loaded for the new period.
        let next = t + day_ms;
        let mut b = a.clone();
        b.budget_span = Some(BudgetPeriod::Daily.span(next as i64));
        assert_eq!(
            l.spend_state("k", b.budget_since(), next),
            SpendState::Unknown
        );
        assert!(l.admit(&b, next, Some(0.0)).refused.is_none());
        let mut old = settle(0, 0, 0.0, 0.9, next / 1000);
        old.budget_since = late.budget_since();
        l.settle(&old, next);
        let mut new = settle(0, 0, 0.1, 0.2, next / 1000);
        new.budget_since = b.budget_since();
        l.settle(&new, next);
        // Only the new day's cost counts: 0.2 spent, 0.8 left.
        b.cost = 0.7;
        assert_eq!(l.admit(&b, next, None).refused, None);
        let spent = l
            .keys
            .get("k")
            .and_then(|e| e.value().lock().ok().and_then(|s| s.spent));
        assert_eq!(spent, Some(0.2));
    }

    #[test]
    fn a_lone_request_is_admitted_while_budget_is_left() {
        let l = Local::default();
        let mut a = ask(None, None, Some(1.0), 0);
        a.cost = 5.0; // worst case beyond the whole budget
        assert_eq!(l.admit(&a, 0, Some(0.9)).refused, None);
        // Nothing else gets in beside it.
        a.cost = 0.01;
        assert!(l.admit(&a, 0, None).refused.is_some());
        // Once spent reaches the budget nothing is admitted.
        l.settle(&settle(0, 0, 5.0, 0.2, 0), 0);
        assert!(l.admit(&a, 0, None).refused.is_some());
    }

    #[test]
    fn reset_format_matches_openai() {
        assert_eq!(format_reset(120), "120ms");
        assert_eq!(format_reset(8_640), "8.64s");
        assert_eq!(format_reset(1_000), "1s");
        assert_eq!(format_reset(360_000), "6m0s");
        assert_eq!(format_reset(61_500), "1m1.5s");
    }
}
