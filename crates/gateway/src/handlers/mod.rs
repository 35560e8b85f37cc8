//! Thin handlers, one per endpoint, and the read-and-validate stage they share.

pub mod admin;
pub mod chat;
pub mod embeddings;
pub mod health;
pub mod messages;
pub mod models;
pub mod responses;

use axum::body::Body;
use axum::http::HeaderValue;
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use serde::de::DeserializeOwned;

use crate::auth::Caller;
use crate::error::GatewayError;
use crate::ledger::Tap;
use crate::lifecycle::Slot;
use crate::limits::{estimate_prompt_tokens, Ask, Hold, RateHeaders};
use crate::proxy::Outcome;
use crate::routing::Deployment;
use crate::state::{AppState, LogMeta};
use crate::usage::UsageExt;
use crate::usage::UsageRecord;

/// Reads the body, refusing more than `limit` bytes with 413 and a body still arriving
/// after `timeout` with 408 (a slow sender must not hold a place forever).
pub async fn read_body(
    body: Body,
    limit: usize,
    timeout: std::time::Duration,
) -> Result<Bytes, GatewayError> {
    let read = tokio::time::timeout(timeout, axum::body::to_bytes(body, limit))
        .await
        .map_err(|_| {
            let mut e = GatewayError::bad_request(format!(
                "The request body did not arrive within {:.0} s.",
                timeout.as_secs_f64()
            ))
            .code("request_timeout");
            e.status = axum::http::StatusCode::REQUEST_TIMEOUT;
            e
        })?;
    read.map_err(|e| {
        let mut src: Option<&(dyn std::error::Error + 'static)> = Some(&e);
        while let Some(s) = src {
            if s.is::<http_body_util::LengthLimitError>() {
                return GatewayError::too_large(limit);
            }
            src = s.source();
        }
        GatewayError::bad_request(format!("could not read the request body: {e}"))
    })
}

/// Parses a JSON request body into `T`, turning every failure into a 400 whose `param`
/// names the offending field.
pub fn parse_json<T: DeserializeOwned>(body: &[u8]) -> Result<T, GatewayError> {
    if let Err(e) = std::str::from_utf8(body) {
        return Err(GatewayError::bad_request(format!(
            "The request body is not valid UTF-8 (invalid byte at offset {}).",
            e.valid_up_to()
        ))
        .code("invalid_utf8"));
    }
    if body.iter().all(u8::is_ascii_whitespace) {
        return Err(
            GatewayError::bad_request("The request body is empty: send a JSON object.")
                .code("invalid_json"),
        );
    }
    if body.iter().find(|b| !b.is_ascii_whitespace()) != Some(&b'{') {
        // serde would read a top-level array as a struct's fields in order.
        return Err(
            GatewayError::bad_request("The request body must be a JSON object.")
                .code("invalid_json"),
        );
    }
    let mut de = serde_json::Deserializer::from_slice(body);
    let value = serde_path_to_error::deserialize::<_, T>(&mut de).map_err(|e| {
        let inner = e.inner();
        if inner.is_syntax() || inner.is_eof() {
            return GatewayError::bad_request(format!(
                "We could not parse the JSON body of your request ({inner}). The body must be valid JSON."
            ))
            .code("invalid_json");
        }
        let path = e.path().to_string();
        let msg = inner.to_string();
        let param = if let Some(field) = msg.strip_prefix("missing field `").and_then(|r| r.split('`').next()) {
            if path == "." { field.to_owned() } else { format!("{path}.{field}") }
        } else {
            path.clone()
        };
        if param == "." {
            return GatewayError::bad_request(format!("The request body must be a JSON object ({msg})."))
                .code("invalid_json");
        }
        let msg = friendly(msg.split(" at line ").next().unwrap_or(&msg));
        GatewayError::bad_request(format!("Invalid value for '{param}': {msg}."))
            .param(param)
            .code(if msg.starts_with("missing field") { "missing_required_parameter" } else { "invalid_type" })
    })?;
    // Trailing garbage after the object is malformed JSON too.
    de.end().map_err(|e| {
        GatewayError::bad_request(format!(
            "We could not parse the JSON body of your request ({e})."
        ))
        .code("invalid_json")
    })?;
    Ok(value)
}

/// A path parameter whose rejection (bad percent-encoding, invalid UTF-8) is a 400 in the
/// API's error shape rather than axum's plain text.
pub struct ApiPath<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned + Send> axum::extract::FromRequestParts<S> for ApiPath<T> {
    type Rejection = Response;

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        state: &S,
    ) -> Result<Self, Response> {
        match axum::extract::Path::<T>::from_request_parts(parts, state).await {
            Ok(axum::extract::Path(v)) => Ok(Self(v)),
            Err(e) => Err(GatewayError::bad_request(format!(
                "The request path is invalid: {}",
                e.body_text()
            ))
            .code("invalid_path")
            .into_response()),
        }
    }
}

/// A request that passed its key's limits.
pub struct Admitted {
    pub headers: RateHeaders,
    pub hold: Option<Hold>,
    /// Prompt tokens estimated from the body.
    pub prompt_estimate: u64,
}

/// What a request may use, as its limits see it before it is sent.
#[derive(Debug, Clone, Copy)]
pub struct Demand {
    /// Bytes the prompt takes (the body, and stored history for Responses).
    pub prompt_bytes: usize,
    /// The output cap the request sets (`max_tokens` and its kin); `Some(0)` for
    /// requests that produce no output tokens (embeddings).
    pub max_output: Option<u64>,
}

/// Output tokens a request may produce at worst on `deployments`: its own maximum, else
/// what the gateway itself sends as the maximum (Anthropic's `max_tokens` default), else
/// the configured `hold_output_tokens`.
fn output_hold(state: &AppState, demand: Demand, deployments: &[Deployment]) -> u64 {
    if let Some(max) = demand.max_output {
        return max.min(crate::limits::MAX_TOKENS);
    }
    let cap = u64::from(state.config.server.hold_output_tokens);
    deployments
        .iter()
        .map(|d| match d.provider.kind() {
            crate::config::ProviderKind::Anthropic => {
                u64::from(d.provider.config.max_tokens_for(&d.upstream_model))
            }
            _ => cap,
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
pub async fn admit(
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
            .filter_map(|d| state.prices.get(d.provider.name(), &d.upstream_model))
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

/// A request let through the limit stage.
pub struct Admission {
    /// The record stage's tap (the usage row moved into it).
    pub tap: Tap,
    pub limits: RateHeaders,
    /// The key's place under `max_concurrent_per_key`, held until the response ends.
    pub slot: Option<Slot>,
}

/// The caller's place under `max_concurrent_per_key`, taken before its body is read.
pub fn key_slot(state: &AppState, caller: &Caller) -> Result<Option<Slot>, GatewayError> {
    let (Some(max), Some(k)) = (state.config.server.max_concurrent_per_key, &caller.key) else {
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

/// The limit stage, then the record stage's tap for the request; `slot` (from
/// [`key_slot`]) is held until the response ends. `Err` is the refusal to send, already
/// recorded.
pub async fn admit_and_tap(
    state: &AppState,
    caller: &Caller,
    slot: Option<Slot>,
    mut row: UsageRecord,
    started: std::time::Instant,
    demand: Demand,
    deployments: &[Deployment],
) -> Result<Admission, Response> {
    row.routed = true;
    match admit(state, caller, demand, deployments).await {
        Ok(a) => Ok(Admission {
            tap: Tap::new(
                state.ledger.clone(),
                row,
                started,
                a.hold,
                a.prompt_estimate,
            ),
            limits: a.headers,
            slot,
        }),
        Err((e, headers)) => Err(refuse(state, row, e, &headers, started)),
    }
}

/// A refusal before any provider was tried: recorded, answered with the limit headers.
pub fn refuse(
    state: &AppState,
    row: UsageRecord,
    e: GatewayError,
    headers: &RateHeaders,
    started: std::time::Instant,
) -> Response {
    let mut resp = record_rejected(state, row, e, started, GatewayError::into_response);
    headers.apply(resp.headers_mut());
    resp
}

/// Sets the attempt and limit headers on whatever the attempt loop produced, and hands
/// the handler's half of the usage row to `tap` (the record stage: success, error and
/// streams alike).
pub fn finish(outcome: Outcome, adm: Admission) -> Response {
    let Admission { tap, limits, slot } = adm;
    let (mut resp, error_type) = match outcome.result {
        Ok(r) => (r, None),
        Err(e) => {
            tracing::warn!(status = e.status.as_u16(), error = %e, "request failed");
            let kind = e.kind;
            (e.into_response(), Some(kind))
        }
    };
    let usage = resp.extensions_mut().remove::<UsageExt>();
    let status = resp.status().as_u16();
    let mut meta = LogMeta::default();
    tap.finish_handler(|r| {
        meta.key_id.clone_from(&r.key_id);
        meta.model.clone_from(&r.model);
        r.provider.clone_from(&outcome.provider);
        r.upstream_model.clone_from(&outcome.upstream_model);
        r.attempts = outcome.attempts;
        r.status = status;
        r.error_type = error_type.map(str::to_owned);
        if let Some(UsageExt(u)) = &usage {
            r.set_usage(u);
        }
    });
    let h = resp.headers_mut();
    if let Some(p) = outcome
        .provider
        .and_then(|p| HeaderValue::from_str(&p).ok())
    {
        h.insert("x-jusinfer-provider", p);
    }
    h.insert("x-jusinfer-attempts", HeaderValue::from(outcome.attempts));
    limits.apply(h);
    resp.extensions_mut().insert(meta);
    match slot {
        Some(s) => crate::body::hold(resp, Box::new(s)),
        None => resp,
    }
}

/// The request-level columns of a usage row.
pub fn usage_row(rid: &crate::state::RequestId, caller: &Caller, endpoint: &str) -> UsageRecord {
    UsageRecord {
        ts_ms: std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX)),
        request_id: rid.0.clone(),
        key_id: caller.key.as_ref().map(|k| k.id.clone()),
        endpoint: endpoint.to_owned(),
        commit: rid.1.clone(),
        ..UsageRecord::default()
    }
}

/// Records a request that failed before reaching any provider.
pub fn record_rejected(
    state: &AppState,
    mut row: UsageRecord,
    e: GatewayError,
    started: std::time::Instant,
    render: fn(GatewayError) -> Response,
) -> Response {
    row.status = e.status.as_u16();
    row.error_type = Some(e.kind.to_owned());
    row.latency_ms = started.elapsed().as_millis() as u64;
    let (key_id, model) = (row.key_id.clone(), row.model.clone());
    state.ledger.record(row);
    logged(render(e), key_id, model)
}

/// Names the caller's key (and the model) in the request's log line.
pub(crate) fn logged(mut resp: Response, key_id: Option<String>, model: String) -> Response {
    resp.extensions_mut().insert(LogMeta { key_id, model });
    resp
}

/// The caller's key id, for [`logged`].
pub(crate) fn key_id(caller: &Caller) -> Option<String> {
    caller.key.as_ref().map(|k| k.id.clone())
}

/// serde's messages for untagged enums name Rust types; say what the API expects instead.
fn friendly(msg: &str) -> String {
    const EXPECTED: &[(&str, &str)] = &[
        (
            "MessageContent",
            "expected a string or an array of content parts",
        ),
        (
            "ToolChoice",
            "expected \"none\", \"auto\", \"required\" or an object naming a function",
        ),
        ("Stop", "expected a string or an array of strings"),
        ("ImageUrl", "expected an object with `url`"),
        (
            "Input",
            "expected a string, an array of strings, or token arrays",
        ),
    ];
    if let Some(rest) = msg.strip_prefix("data did not match any variant of untagged enum ") {
        if let Some((_, e)) = EXPECTED.iter().find(|(name, _)| rest.trim() == *name) {
            return (*e).to_owned();
        }
        return "has the wrong type".to_owned();
    }
    msg.to_owned()
}

/// The price of a deployment's model: the built-in `echo` is free (`usage.cost` 0, not
/// unknown, in every dialect); others from the price table, if known.
pub(crate) fn price_of(
    state: &AppState,
    d: &Deployment,
) -> Option<jusinfer_translate::pricing::Price> {
    if d.provider.kind() == crate::config::ProviderKind::Echo {
        return Some(jusinfer_translate::pricing::Price {
            input: 0.0,
            output: 0.0,
            cache_read: None,
            cache_write: None,
        });
    }
    state.prices.get(d.provider.name(), &d.upstream_model)
}
