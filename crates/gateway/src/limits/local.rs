//! The in-process limiter ([`Local`]): every key's windows and budget state in this
//! process, used without Redis and while Redis does not answer.

use std::sync::{Arc, Mutex};

use dashmap::DashMap;

use super::rules::{crosses_budget, tpm_hold, Ask, Decision, RateHeaders, Refusal, Settle, Window};
use super::MAX_TOKENS;

/// One-second buckets counted: 61, so that whatever the request's position within its
/// second, it is counted for at least a full 60 s (never more than the limit in any 60 s).
const BUCKETS: usize = 61;
/// A key's spend is loaded from the ledger again after this long (so costs settled by
/// other instances, or lost, cannot skew it for long).
const SPEND_RELOAD_MS: u64 = 300_000;

/// The in-process limiter state of every key.
#[derive(Default)]
pub(super) struct Local {
    pub(super) keys: DashMap<String, Arc<Mutex<KeyState>>>,
}

/// A sliding one-minute window of one-second buckets: what was counted in the last 60
/// whole seconds. Constant memory whatever the limit (a log of a million requests per
/// minute would not be).
#[derive(Clone, Copy)]
pub(super) struct Buckets([(u64, i64); BUCKETS]);

impl Default for Buckets {
    fn default() -> Self {
        Self([(0, 0); BUCKETS])
    }
}

impl Buckets {
    /// The count in the window at second `now_s`, and the oldest second still counted.
    pub(super) fn used(&self, now_s: u64) -> (u64, Option<u64>) {
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

    pub(super) fn add(&mut self, now_s: u64, n: i64) {
        let slot = &mut self.0[(now_s % BUCKETS as u64) as usize];
        if slot.0 != now_s {
            *slot = (now_s, 0);
        }
        slot.1 = slot.1.saturating_add(n);
    }

    /// Whether second `s`'s bucket is still in the window at `now_s`.
    pub(super) fn holds(&self, s: u64, now_s: u64) -> bool {
        self.0[(s % BUCKETS as u64) as usize].0 == s && s + (BUCKETS as u64) > now_s
    }

    /// Milliseconds until the oldest counted second leaves the window.
    pub(super) fn reset_ms(oldest: Option<u64>, now_ms: u64) -> u64 {
        oldest.map_or(0, |s| ((s + BUCKETS as u64) * 1000).saturating_sub(now_ms))
    }
}

#[derive(Default)]
pub(super) struct KeyState {
    pub(super) requests: Buckets,
    pub(super) tokens: Buckets,
    /// Spend per the ledger when loaded, plus every settled cost since.
    pub(super) spent: Option<f64>,
    /// When `spent` was loaded (ms): it is loaded again after [`SPEND_RELOAD_MS`].
    pub(super) spent_at: u64,
    /// Where `spent` counts from ([`Ask::budget_since`]): a new period (or a changed
    /// one) loads it again.
    pub(super) spent_since: i64,
    /// Costs held by admitted, unsettled requests.
    pub(super) held: f64,
    /// The latest second seen: a wall clock that steps back does not reopen the window.
    pub(super) last_s: u64,
}

impl Local {
    /// Admits or refuses `ask` at `now_ms`, committing it when admitted. `spent` is the
    /// ledger's spend for the key, used the first time the key is seen.
    pub(super) fn admit(&self, ask: &Ask, now_ms: u64, spent: Option<f64>) -> Decision {
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
    pub(super) fn settle(&self, s: &Settle, now_ms: u64) {
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
    pub(super) fn spend_state(&self, key_id: &str, since: i64, now_ms: u64) -> SpendState {
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
pub(super) enum SpendState {
    Unknown,
    Stale,
    Fresh,
}
