//! One attempt on one deployment, whatever the dialects: a client dialect plans it (what
//! to send, how to read the answer), [`execute`] runs it — send, then the stream through
//! its machine or the whole body through its reader, then the dropped-params header. It is
//! the only code that talks to an upstream on behalf of a generation request.

use std::future::Future;

use axum::http::{HeaderValue, StatusCode};
use axum::response::Response;
use bytes::Bytes;
use jusinfer_translate::pricing::{self, Price};
use jusinfer_translate::StreamTranslator;
use jusinfer_wire::chat::{Cost, Usage};
use serde::Deserialize as _;
use serde_json::{Map, Value};

use super::echo::{self, Echo};
use super::http::{self, Clock, Keep};
use super::{Endpoint, Provider};
use crate::error::{Fault, GatewayError};
use crate::ledger::Tap;
use crate::routing::Deployment;
use crate::usage::UsageExt;

/// What one attempt sends, and where.
pub(crate) struct Plan<'a> {
    pub d: &'a Deployment,
    pub endpoint: Endpoint,
    pub body: Outbound,
    pub stream: bool,
    /// Headers from the client that an upstream speaking its dialect gets.
    pub forward: &'a [(&'static str, String)],
    /// Where a stream reports its usage when it ends.
    pub tap: Option<&'a Tap>,
    /// Where a stream's finished result goes (a stored Response).
    pub keep: Option<Keep>,
    /// The client's fields with no faithful translation (`x-jusinfer-dropped-params`).
    pub dropped: Vec<String>,
}

impl<'a> Plan<'a> {
    /// A plan for a whole answer (no stream): nothing forwarded, tapped, kept or dropped.
    pub(crate) fn whole(d: &'a Deployment, endpoint: Endpoint, body: Bytes) -> Self {
        Plan {
            d,
            endpoint,
            body: Outbound::Bytes(body),
            stream: false,
            forward: &[],
            tap: None,
            keep: None,
            dropped: Vec::new(),
        }
    }
}

/// The body of an attempt.
pub(crate) enum Outbound {
    /// Bytes as they go (the client's, spliced; or a translation's).
    Bytes(Bytes),
    /// A Chat body the gateway built from another dialect. A `reasoning_effort` it carries
    /// (from the client's effort setting) is refused by models that do not reason (OpenAI:
    /// 400 on that param); then it is sent once more without it, and `effort` (the
    /// client's field) joins the dropped.
    Chat { body: Value, effort: &'static str },
    /// The built-in `echo`: answered here, without an exchange; its Chat frames (or its
    /// completion) stand for the upstream's answer.
    Echo(Box<Echo>),
}

/// Runs `plan`: a stream goes to the client through `machine()` (upstream events in, the
/// client's frames out), a whole body through `whole` (the upstream's bytes in, the
/// client's response out, its usage as [`UsageExt`]).
pub(crate) async fn execute<M, W, F>(
    plan: Plan<'_>,
    machine: impl FnOnce() -> M,
    whole: W,
) -> Result<Response, GatewayError>
where
    M: StreamTranslator + 'static,
    W: FnOnce(Bytes) -> F,
    F: Future<Output = Result<Response, GatewayError>>,
{
    let Plan {
        d,
        endpoint,
        body,
        stream,
        forward,
        tap,
        keep,
        mut dropped,
    } = plan;
    let p = &*d.provider;
    let mut resp = match body {
        Outbound::Echo(e) => {
            let capped = e.capped();
            let mut resp = if stream {
                let usage = e.usage();
                let mut resp = http::sse_response(echo::translated(e.frames(), machine(), keep));
                resp.extensions_mut().insert(UsageExt(usage));
                resp
            } else {
                whole(e.complete()).await?
            };
            echo::mark(&mut resp, capped);
            resp
        }
        body => {
            // One clock for the attempt: a resend without `reasoning_effort` does not
            // extend its deadline.
            let clock = Clock::start(d.timeouts);
            let to = (endpoint, d.upstream_model.as_str());
            let answer = send(p, body, to, stream, forward, &clock, &mut dropped).await?;
            if stream {
                let h = Some(&d.health);
                http::stream(p, answer.resp, machine(), &clock, tap, h, keep).await?
            } else {
                whole(http::read_body(p, answer.resp, clock.deadline).await?).await?
            }
        }
    };
    if !dropped.is_empty() {
        if let Ok(v) = HeaderValue::from_str(&dropped.join(", ")) {
            resp.headers_mut().insert("x-jusinfer-dropped-params", v);
        }
    }
    Ok(resp)
}

async fn send(
    p: &Provider,
    body: Outbound,
    (endpoint, model): (Endpoint, &str),
    stream: bool,
    forward: &[(&'static str, String)],
    clock: &Clock,
    dropped: &mut Vec<String>,
) -> Result<http::Answer, GatewayError> {
    let exchange = |body| http::Exchange {
        endpoint,
        model,
        body,
        stream,
        forward,
    };
    let (mut body, effort) = match body {
        Outbound::Bytes(b) => return http::exchange(p, exchange(b), clock).await,
        Outbound::Chat { body, effort } => (body, effort),
        Outbound::Echo(_) => return Err(GatewayError::internal("echo has no exchange")),
    };
    loop {
        let bytes = serde_json::to_vec(&body).map_err(|e| GatewayError::internal(e.to_string()))?;
        match http::exchange(p, exchange(Bytes::from(bytes)), clock).await {
            Err(e) if refuses_effort(&e) && body.get("reasoning_effort").is_some() => {
                if let Some(o) = body.as_object_mut() {
                    o.remove("reasoning_effort");
                }
                dropped.push(effort.to_owned());
            }
            other => return other,
        }
    }
}

/// Whole requests of one client request that an upstream takes in parts (embeddings in
/// batches): `bodies` to `d`'s `endpoint` under one clock, at most `concurrency` at once;
/// the answers' bytes in order, or the first failure.
pub(crate) async fn fan_out(
    d: &Deployment,
    endpoint: Endpoint,
    bodies: Vec<Bytes>,
    concurrency: usize,
) -> Result<Vec<Bytes>, GatewayError> {
    use futures_util::{StreamExt as _, TryStreamExt as _};
    let p = &*d.provider;
    let clock = Clock::start(d.timeouts);
    let clock = &clock;
    futures_util::stream::iter(bodies)
        .map(|body| async move {
            let exchange = http::Exchange {
                endpoint,
                model: &d.upstream_model,
                body,
                stream: false,
                forward: &[],
            };
            let answer = http::exchange(p, exchange, clock).await?;
            http::read_body(p, answer.resp, clock.deadline).await
        })
        .buffered(concurrency)
        .try_collect()
        .await
}

/// The upstream refused `reasoning_effort`.
fn refuses_effort(e: &GatewayError) -> bool {
    e.status == StatusCode::BAD_REQUEST
        && (e.param.as_deref() == Some("reasoning_effort")
            || e.message.contains("reasoning_effort"))
}

/// The upstream's answer was not what its kind sends: retryable, the next deployment may
/// do better.
pub(crate) fn malformed(p: &Provider, what: &str) -> GatewayError {
    GatewayError::upstream(format!("provider `{}` sent {what}", p.name()))
        .fault(Fault::Malformed)
        .retryable(true)
}

/// A whole answer as a JSON object.
pub(crate) fn json_object(p: &Provider, bytes: &[u8]) -> Result<Map<String, Value>, GatewayError> {
    // UTF-8 first: serde skips the fields it ignores without checking their bytes.
    let text = std::str::from_utf8(bytes).map_err(|e| {
        malformed(
            p,
            &format!(
                "a response that is not valid UTF-8 (invalid byte at offset {})",
                e.valid_up_to()
            ),
        )
    })?;
    serde_json::from_str(text)
        .map_err(|e| malformed(p, &format!("a response that is not valid JSON ({e})")))
}

/// `u` with its cost at `price` (unknown without one).
pub(crate) fn priced(mut u: Usage, price: Option<Price>) -> Usage {
    u.cost = price.map_or(Cost::Unknown, |p| Cost::Usd(pricing::cost(&p, &u)));
    u
}

/// The priced usage of a `chat.completion` held as JSON.
pub(crate) fn completion_usage(c: &Map<String, Value>, price: Option<Price>) -> Option<Usage> {
    let u = Usage::deserialize(c.get("usage")?).ok()?;
    Some(priced(u, price))
}
