//! The admit stage: the key's place under `max_concurrent_per_key`, then its RPM, TPM and
//! budget ([`crate::limits`]), each request holding its worst case until it ends.

use crate::auth::Caller;
use crate::error::GatewayError;
use crate::lifecycle::Slot;
use crate::limits::{estimate_prompt_tokens, Ask, Hold, RateHeaders};
use crate::routing::Deployment;
use crate::state::AppState;

/// A request that passed its key's limits.
pub(crate) struct Admitted {
    pub headers: RateHeaders,
    pub hold: Option<Hold>,
    /// Prompt tokens estimated from the body.
    pub prompt_estimate: u64,
}

/// What a request may use, as its limits see it before it is sent.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Demand {
    /// Bytes the prompt takes (the body, and stored history for Responses).
    pub prompt_bytes: usize,
    /// The output cap the request sets (`max_tokens` and its kin); `Some(0)` for
    /// requests that produce no output tokens (embeddings).
    pub max_output: Option<u64>,
}

/// Output tokens a request may produce at worst on `deployments`: its own maximum, else
/// what the gateway itself sends as the maximum (the kind's default: Anthropic's
/// `max_tokens`), else
/// the configured `hold_output_tokens`.
fn output_hold(state: &AppState, demand: Demand, deployments: &[Deployment]) -> u64 {
    if let Some(max) = demand.max_output {
        return max.min(crate::limits::MAX_TOKENS);
    }
    let cap = u64::from(state.live.load().config.server.hold_output_tokens);
    deployments
        .iter()
        .map(|d| {
            let kind = d.provider.upstream;
            (kind.default_max_output)(&d.provider.config, &d.upstream_model).map_or(cap, u64::from)
        })
        .max()
        .unwrap_or(cap)
}

/// The limit stage: RPM, TPM and budget of the caller's key (nothing to do without a key
/// or limits). A request holds its worst case until it ends: its prompt estimate plus the
/// output it may produce ([`output_hold`]) against TPM, and that many tokens at the
/// dearest price of its deployments against the budget. It is refused when the holds of
/// the requests in flight would cross the budget (except a key's only request, admitted
/// while any budget is left), so a budget is overshot by at most one request's cost. The
/// hold is settled to the real tokens and cost when the request ends.
pub(crate) async fn admit(
    state: &AppState,
    caller: &Caller,
    demand: Demand,
    deployments: &[Deployment],
) -> Result<Admitted, (GatewayError, RateHeaders)> {
    let prompt = estimate_prompt_tokens(demand.prompt_bytes);
    let Some(k) = caller
        .key
        .as_ref()
        .filter(|k| k.rpm.is_some() || k.tpm.is_some() || k.budget_usd.is_some())
    else {
        return Ok(Admitted {
            headers: RateHeaders::default(),
            hold: None,
            prompt_estimate: prompt,
        });
    };
    let output = output_hold(state, demand, deployments);
    let tokens = prompt.saturating_add(output);
    // A request with an output maximum of its own must fit the TPM window whole, unless
    // that maximum alone exceeds the limit (Claude Code asks for 32,000): then, like a
    // request with none, its prompt must fit and it holds what is left of the window.
    let fits_whole = k
        .tpm
        .is_none_or(|t| i64::try_from(tokens).is_ok_and(|n| n <= t));
    let tokens_min = if demand.max_output.is_some() && fits_whole {
        tokens
    } else {
        prompt
    };
    let cost = if k.budget_usd.is_some() {
        deployments
            .iter()
            .filter_map(|d| d.price)
            .map(|p| (prompt as f64 * p.input + output as f64 * p.output) / 1_000_000.0)
            .fold(0.0, f64::max)
    } else {
        0.0
    };
    let ask = Ask {
        key_id: k.id.clone(),
        rpm: k
            .rpm
            .and_then(|v| u64::try_from(v.min(crate::keys::MAX_LIMIT)).ok()),
        tpm: k
            .tpm
            .and_then(|v| u64::try_from(v.min(crate::keys::MAX_LIMIT)).ok()),
        budget_usd: k.budget_usd,
        budget_span: k
            .budget_usd
            .and(k.budget_period)
            .map(|p| p.span(i64::try_from(crate::limits::now_ms()).unwrap_or(i64::MAX))),
        tokens,
        tokens_min,
        cost,
    };
    let (decision, hold) = state
        .limits
        .admit(&ask)
        .await
        .map_err(|e| (e, RateHeaders::default()))?;
    match decision.error(&ask) {
        Some(e) => Err((e, decision.headers)),
        None => Ok(Admitted {
            headers: decision.headers,
            hold,
            prompt_estimate: prompt,
        }),
    }
}

/// The caller's place under `max_concurrent_per_key`, taken before its body is read.
pub(crate) fn key_slot(state: &AppState, caller: &Caller) -> Result<Option<Slot>, GatewayError> {
    let (Some(max), Some(k)) = (
        state.live.load().config.server.max_concurrent_per_key,
        &caller.key,
    ) else {
        return Ok(None);
    };
    let gate = state.per_key.entry(k.id.clone()).or_default().clone();
    gate.try_take(max, false).map(Some).ok_or_else(|| {
        crate::metrics::get()
            .overload
            .with_label_values(&["key"])
            .inc();
        GatewayError::unavailable(
            format!("This key already has {max} requests in flight (max_concurrent_per_key); retry when one ends."),
            1000,
        )
        .code("concurrency_limit_exceeded")
    })
}
