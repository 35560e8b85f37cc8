//! `/v1/messages` (Anthropic's dialect from the client) to each provider kind: an
//! `anthropic` upstream gets the client's bytes (only `model` spliced) and its answer passes
//! through byte for byte, usage read on the way; an OpenAI-shaped upstream gets the request
//! translated to Chat Completions and its answer translated back (`translate::messages`);
//! `echo` answers through the same translation.

use std::sync::Arc;

use bytes::Bytes;
use jusinfer_translate::messages::{request, response, stream};
use jusinfer_translate::pricing::{self, Price};
use jusinfer_wire::anthropic::MessagesResponse;
use jusinfer_wire::chat::{ChatRequest, Cost, Usage};
use serde_json::{Map, Value};

use super::http::{self, Clock};
use super::{echo, openai, Endpoint, Provider};
use crate::config::Timeouts;
use crate::error::{Fault, GatewayError};
use crate::health::Health;
use crate::ledger::Tap;
use crate::usage::UsageExt;

/// One attempt of a `/v1/messages` request.
pub struct Call<'a> {
    pub provider: &'a Provider,
    pub timeouts: Timeouts,
    pub health: Option<&'a Arc<Health>>,
    /// The client's body, and parsed.
    pub raw: &'a Bytes,
    pub req: &'a Map<String, Value>,
    pub stream: bool,
    pub upstream_model: &'a str,
    /// The model the client named (Anthropic responses echo it).
    pub client_model: &'a str,
    /// `anthropic-version` / `anthropic-beta` as the client sent them.
    pub forward: &'a [(&'static str, String)],
    /// `msg_…`.
    pub id: &'a str,
    pub price: Option<Price>,
    pub tap: &'a Tap,
    pub input_estimate: u64,
}

fn malformed(p: &Provider, what: &str) -> GatewayError {
    GatewayError::upstream(format!("provider `{}` sent {what}", p.name()))
        .fault(Fault::Malformed)
        .retryable(true)
}

fn priced(mut u: Usage, price: Option<Price>) -> Usage {
    u.cost = price.map_or(Cost::Unknown, |p| Cost::Usd(pricing::cost(&p, &u)));
    u
}

/// An `anthropic` upstream: pass-through.
pub async fn anthropic(call: Call<'_>) -> Result<axum::response::Response, GatewayError> {
    let p = call.provider;
    let body = openai::edit_body(call.raw, call.upstream_model, false)?;
    let clock = Clock::start(call.timeouts);
    let answer = http::exchange(
        p,
        http::Exchange {
            endpoint: Endpoint::ChatCompletions,
            body,
            stream: call.stream,
            forward: call.forward,
        },
        &clock,
    )
    .await?;
    if call.stream {
        return http::stream(
            p,
            answer.resp,
            stream::MessagesPassthrough::new(),
            &clock,
            Some(call.tap),
            call.health,
        )
        .await;
    }
    let bytes = http::read_body(p, answer.resp, clock.deadline).await?;
    let text =
        std::str::from_utf8(&bytes).map_err(|_| malformed(p, "a response that is not UTF-8"))?;
    let msg: MessagesResponse = serde_json::from_str(text).map_err(|e| {
        malformed(
            p,
            &format!("a response that is not a Messages response ({e})"),
        )
    })?;
    let usage = priced(jusinfer_translate::anthropic::usage(&msg.usage), call.price);
    let mut resp = http::json_response(bytes);
    resp.extensions_mut().insert(UsageExt(usage));
    Ok(resp)
}

fn translate_request(call: &Call<'_>) -> Result<request::Translated, GatewayError> {
    let newer = call.provider.upstream.newest_chat;
    request::messages_to_chat(call.req, call.upstream_model, newer).map_err(|e| {
        GatewayError::bad_request(e.message)
            .param(e.param)
            .code("invalid_value")
    })
}

fn dropped_header(resp: &mut axum::response::Response, dropped: &[String]) {
    if dropped.is_empty() {
        return;
    }
    if let Ok(v) = axum::http::HeaderValue::from_str(&dropped.join(", ")) {
        resp.headers_mut().insert("x-jusinfer-dropped-params", v);
    }
}

fn stream_options(call: &Call<'_>) -> stream::Options {
    stream::Options {
        id: call.id.to_owned(),
        model: call.client_model.to_owned(),
        input_tokens_estimate: call.input_estimate,
    }
}

/// An OpenAI-shaped upstream: translated both ways.
pub async fn openai(call: Call<'_>) -> Result<axum::response::Response, GatewayError> {
    let p = call.provider;
    let mut t = translate_request(&call)?;
    let (answer, clock) = openai::exchange_translated(
        p,
        &mut t.body,
        call.stream,
        call.timeouts,
        &mut t.dropped,
        "output_config.effort",
    )
    .await?;
    let mut resp = if call.stream {
        let machine = stream::NormalizedToMessages::new(stream_options(&call));
        http::stream(p, answer.resp, machine, &clock, Some(call.tap), call.health).await?
    } else {
        let bytes = http::read_body(p, answer.resp, clock.deadline).await?;
        let text = std::str::from_utf8(&bytes)
            .map_err(|_| malformed(p, "a response that is not UTF-8"))?;
        let completion: Map<String, Value> = serde_json::from_str(text)
            .map_err(|e| malformed(p, &format!("a response that is not valid JSON ({e})")))?;
        from_completion(&completion, &call)
    };
    dropped_header(&mut resp, &t.dropped);
    Ok(resp)
}

/// A `chat.completion` as the client's Messages response, its usage left for the ledger.
fn from_completion(completion: &Map<String, Value>, call: &Call<'_>) -> axum::response::Response {
    let msg = response::chat_to_messages(completion, call.client_model, call.id);
    let mut resp = http::json_response(Bytes::from(msg.to_string()));
    if let Some(u) = completion
        .get("usage")
        .and_then(|u| serde_json::from_value::<Usage>(u.clone()).ok())
    {
        resp.extensions_mut()
            .insert(UsageExt(priced(u, call.price)));
    }
    resp
}

/// The built-in `echo` provider, through the same translation.
pub fn echo(
    call: &Call<'_>,
    request_id: &str,
    created: u64,
) -> Result<axum::response::Response, GatewayError> {
    let t = translate_request(call)?;
    let req: ChatRequest = serde_json::from_value(t.body).map_err(|e| {
        GatewayError::bad_request(format!("The request cannot be served by echo: {e}"))
    })?;
    let e = echo::Echo::new(&req, request_id, created);
    let mut resp = if call.stream {
        let usage = e.usage();
        let capped = e.capped();
        let machine = stream::ChatToMessages::new(stream_options(call));
        let mut resp = http::sse_response(echo::translated(e.frames(), machine, None));
        echo::mark(&mut resp, capped);
        resp.extensions_mut().insert(UsageExt(usage));
        resp
    } else {
        let completion: Map<String, Value> = serde_json::from_slice(&e.complete())
            .map_err(|e| GatewayError::internal(e.to_string()))?;
        let mut resp = from_completion(&completion, call);
        echo::mark(&mut resp, e.capped());
        resp
    };
    dropped_header(&mut resp, &t.dropped);
    Ok(resp)
}
