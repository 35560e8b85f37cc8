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
//!   `pipeline::admit`) and is admitted while `spent + held + its hold <= budget`; a key's
//!   only request in flight is admitted while `spent < budget`. So the requests in flight
//!   can never together cost more than what is left, and a budget is overshot by at most
//!   one request's cost (plus what a request without an output maximum produces beyond
//!   `hold_output_tokens`).
//!
//! Without `redis` the state lives in this process ([`Local`]); with it, in Redis, updated
//! by atomic Lua scripts ([`redis`]) so every instance shares it. A Redis
//! that does not answer falls back to the local state (logged), never to refusing traffic.

mod local;
pub(crate) mod redis;
mod rules;
#[cfg(test)]
mod tests;

use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use crate::error::GatewayError;
use crate::store::Store;
use local::{Local, SpendState};
use redis::RedisLimits;
pub(crate) use rules::{Ask, Decision, RateHeaders, Refusal, Settle, Window};

/// How long a request waits for Redis to admit it before the local limits decide (and
/// Redis is left alone for a moment, see [`RedisLimits::mark_down`]).
const REDIS_ADMIT_TIMEOUT: std::time::Duration = std::time::Duration::from_millis(500);
/// How long a request refused by holds in flight waits before it asks once more (see
/// [`Limits::admit`]): the Redis settler's linger plus a round trip, with margin.
const SETTLE_GRACE: std::time::Duration = std::time::Duration::from_millis(50);
/// Token counts beyond this are an upstream's bug, not usage.
pub(crate) const MAX_TOKENS: u64 = 1 << 40;

/// Limits for every key, local or shared.
#[derive(Clone)]
pub(crate) struct Limits {
    local: Arc<Local>,
    redis: Option<RedisLimits>,
    store: Store,
}

impl Limits {
    pub(crate) fn new(store: Store, redis: Option<RedisLimits>) -> Self {
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
    pub(crate) async fn admit(&self, ask: &Ask) -> Result<(Decision, Option<Hold>), GatewayError> {
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
    ) -> Result<(Decision, Option<Hold>), ::redis::RedisError> {
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
            Err(::redis::RedisError::from((
                ::redis::ErrorKind::IoError,
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
pub(crate) struct Hold {
    limits: Limits,
    shared: bool,
    settle: Option<Settle>,
}

impl Hold {
    pub(crate) fn settle(mut self, tokens_used: u64, cost: f64) {
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

pub(crate) fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// Prompt tokens of a request body, estimated before it is sent: about four bytes of JSON
/// per token (the settle step replaces it by the provider's count).
pub(crate) fn estimate_prompt_tokens(body_len: usize) -> u64 {
    (body_len as u64).div_ceil(4)
}
