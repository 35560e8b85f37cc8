//! Leases: room reserved in Redis for this instance's next requests of one key, used
//! without a round trip within Redis's second, the unused part given back by [`sweep`].

use std::sync::Mutex;
use std::time::{Duration, Instant};

use dashmap::DashMap;
use tokio::sync::mpsc;

use super::settler::Msg;
use super::Admitted;
use crate::limits::{Ask, Decision, RateHeaders, Window};

/// How long a lease may be used at most (it also ends with Redis's second).
pub(super) const LEASE_TTL: Duration = Duration::from_secs(1);

/// The unused part of a lease, given back.
pub(super) struct LeaseReturn {
    pub(super) key_id: String,
    pub(super) sec: u64,
    pub(super) requests: u64,
    pub(super) tokens: u64,
    pub(super) hold_id: String,
    pub(super) cost: f64,
}

/// Room reserved in Redis for this instance's next requests of one key (see ADMIT).
pub(super) struct Lease {
    /// Its hold's id, shared by the requests it admits.
    pub(super) id: String,
    /// The budget period it was counted in ([`Ask::budget_since`]).
    pub(super) since: i64,
    /// Redis's second at the grant (where the reservation was counted).
    pub(super) sec: u64,
    pub(super) expires: Instant,
    /// Left to use; tokens and cost are only meaningful when the key has that limit.
    pub(super) requests: u64,
    pub(super) tokens: u64,
    pub(super) cost: f64,
    /// The headers at the grant, with the whole lease counted as used.
    pub(super) headers: RateHeaders,
    pub(super) granted_at: Instant,
}

impl Lease {
    pub(super) fn covers(&self, ask: &Ask) -> bool {
        Instant::now() < self.expires
            && (ask.rpm.is_none() || self.requests >= 1)
            && (ask.tpm.is_none() || self.tokens >= ask.tokens)
            && (ask.budget_usd.is_none()
                || (self.cost >= ask.cost && self.since == ask.budget_since()))
    }

    pub(super) fn take(&mut self, ask: &Ask) -> Admitted {
        if ask.rpm.is_some() {
            self.requests -= 1;
        }
        if ask.tpm.is_some() {
            self.tokens -= ask.tokens;
        }
        if ask.budget_usd.is_some() {
            self.cost -= ask.cost;
        }
        let elapsed = u64::try_from(self.granted_at.elapsed().as_millis()).unwrap_or(u64::MAX);
        let (requests, tokens) = (self.requests, self.tokens);
        let adjust = |w: Option<Window>, unused: u64| {
            w.map(|w| Window {
                limit: w.limit,
                remaining: w.remaining.saturating_add(unused).min(w.limit),
                reset_ms: w.reset_ms.saturating_sub(elapsed),
            })
        };
        Admitted {
            decision: Decision {
                refused: None,
                headers: RateHeaders {
                    requests: adjust(self.headers.requests, requests),
                    tokens: adjust(self.headers.tokens, tokens),
                },
                tokens: ask.tokens,
            },
            hold_id: self.id.clone(),
            sec: self.sec,
        }
    }

    pub(super) fn give_back(self, key_id: &str) -> LeaseReturn {
        LeaseReturn {
            key_id: key_id.to_owned(),
            sec: self.sec,
            requests: self.requests,
            tokens: self.tokens,
            hold_id: self.id,
            cost: self.cost,
        }
    }
}

pub(super) type Leases = DashMap<String, Mutex<Option<Lease>>>;

/// Gives back expired leases every few hundred milliseconds (until the limits are dropped).
pub(super) async fn sweep(leases: std::sync::Weak<Leases>, tx: mpsc::Sender<Msg>) {
    let mut idle_rounds = 0u32;
    loop {
        tokio::time::sleep(Duration::from_millis(250)).await;
        let Some(leases) = leases.upgrade() else {
            return;
        };
        let now = Instant::now();
        for entry in leases.iter() {
            if let Ok(mut slot) = entry.value().lock() {
                if slot.as_ref().is_some_and(|l| l.expires <= now) {
                    if let Some(l) = slot.take() {
                        let _ = tx.try_send(Msg::Return(l.give_back(entry.key())));
                    }
                }
            }
        }
        // Every few seconds, forget keys that have no lease.
        idle_rounds += 1;
        if idle_rounds >= 16 {
            idle_rounds = 0;
            leases.retain(|_, v| v.get_mut().map(|s| s.is_some()).unwrap_or(false));
        }
    }
}
