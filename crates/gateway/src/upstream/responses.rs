//! `/v1/responses` (OpenAI's Responses dialect from the client) to each provider kind:
//! an OpenAI-shaped provider with `responses = true` gets the client's request (only
//! `model` spliced; a conversation rebuilt from the store when it names
//! `previous_response_id`) and its answer passes through byte for byte; every other
//! provider gets the request translated to Chat Completions (`translate::responses`) —
//! and from there to Anthropic's Messages for an `anthropic` upstream — and the answer
//! translated back, streams incrementally. The finished Response is handed to a
//! [`Keeper`] (the store) before the client gets its last event.

use std::sync::Arc;
use std::time::Duration;

use axum::response::Response;
use bytes::Bytes;
use jusinfer_translate::chat_stream::{ChatStreamNormalizer, CostRule, Options as NormOptions};
use jusinfer_translate::pipe::Pipe;
use jusinfer_translate::pricing::{self, Price};
use jusinfer_translate::responses::{request, response, stream};
use jusinfer_wire::anthropic::MessagesResponse;
use jusinfer_wire::chat::{ChatRequest, Cost, Usage};
use serde_json::{json, Map, Value};

use super::http::{self, Clock};
use super::{echo, openai, Endpoint, Provider, Speaks};
use crate::config::Timeouts;
use crate::error::{Fault, GatewayError};
use crate::health::Health;
use crate::ledger::Tap;
use crate::store::{ResponseWriter, StoredResponse};
use crate::usage::UsageExt;

/// How long keeping a Response may hold up the end of its answer.
const KEEP_TIMEOUT: Duration = Duration::from_secs(5);

/// Where an item of a rebuilt conversation came from: what decides whether its `id`
/// means anything to a pass-through upstream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Origin {
    /// The client sent it (its `id` is the client's, or one the gateway minted).
    Client,
    /// Output of a turn the gateway translated (ids minted by the gateway).
    Gateway,
    /// Output of a turn this provider's own Responses API made (its ids).
    Upstream(String),
}

/// The id the gateway gives input item `n` of the request that creates `response_id`.
pub fn input_item_id(prefix: &str, response_id: &str, n: usize) -> String {
    response::item_id(prefix, &response_id.replacen("resp_", "in", 1), n)
}

/// Whether `id` is one [`input_item_id`] minted (`in` + hex cannot be an OpenAI id).
pub fn is_minted_input_id(id: &str) -> bool {
    id.split_once('_').is_some_and(|(_, rest)| {
        rest.strip_prefix("in")
            .is_some_and(|h| h.len() >= 50 && h.bytes().all(|b| b.is_ascii_hexdigit()))
    })
}

/// Stores finished Responses of one request (`store` not false).
pub struct Keeper {
    pub writer: ResponseWriter,
    pub owner: String,
    pub previous_id: Option<String>,
    pub model: String,
    /// This turn's input items.
    pub input_items: Value,
}

impl Keeper {
    /// Stores `r` (its own `id`: the gateway's, or the pass-through upstream
    /// `served_by`'s). A store that fails or hangs costs the client nothing but the stored
    /// copy: logged.
    pub async fn save(&self, r: &Value, served_by: Option<&str>) {
        let mut response = r.clone();
        if self.previous_id.is_some() && response["previous_response_id"].is_null() {
            // A pass-through upstream got the conversation, not the id.
            response["previous_response_id"] = json!(self.previous_id);
        }
        let row = StoredResponse {
            id: r["id"].as_str().unwrap_or_default().to_owned(),
            owner: self.owner.clone(),
            created_at: r["created_at"].as_i64().unwrap_or_else(crate::store::now),
            previous_id: self.previous_id.clone(),
            model: self.model.clone(),
            served_by: served_by.map(str::to_owned),
            input_items: self.input_items.clone(),
            response,
        };
        if row.id.is_empty() {
            tracing::warn!("a Response without an id was not stored");
            return;
        }
        let id = row.id.clone();
        match tokio::time::timeout(KEEP_TIMEOUT, self.writer.write(row)).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => tracing::warn!(response_id = %id, error = %e, "response not stored"),
            Err(_) => {
                tracing::warn!(response_id = %id, "response not stored: the database did not answer in time")
            }
        }
    }

    pub(crate) fn keep(self: &Arc<Self>, served_by: Option<&str>) -> http::Keep {
        let me = Arc::clone(self);
        let served_by = served_by.map(str::to_owned);
        Box::new(move |v| Box::pin(async move { me.save(&v, served_by.as_deref()).await }))
    }
}

/// One attempt of a `/v1/responses` request.
pub struct Call<'a> {
    pub provider: &'a Provider,
    /// Add prompt-cache breakpoints on an Anthropic upstream (the deployment's `auto_cache`).
    pub auto_cache: bool,
    pub timeouts: Timeouts,
    pub health: Option<&'a Arc<Health>>,
    /// The client's request, parsed and as sent.
    pub req: &'a Map<String, Value>,
    pub raw: &'a Bytes,
    /// Earlier turns' items (from `previous_response_id`) then this turn's.
    pub conversation: &'a [Value],
    /// Where each item of `conversation` came from.
    pub origins: &'a [Origin],
    /// The request named `previous_response_id`.
    pub continues: bool,
    pub stream: bool,
    pub upstream_model: &'a str,
    /// The Response before output (id, created_at, the client's model and settings).
    pub envelope: &'a Map<String, Value>,
    pub price: Option<Price>,
    pub tap: &'a Tap,
    pub keeper: Option<&'a Arc<Keeper>>,
    pub request_id: &'a str,
    pub created: u64,
}

fn malformed(p: &Provider, what: &str) -> GatewayError {
    GatewayError::upstream(format!("provider `{}` sent {what}", p.name()))
        .fault(Fault::Malformed)
        .retryable(true)
}

fn dropped_header(resp: &mut Response, dropped: &[String]) {
    if dropped.is_empty() {
        return;
    }
    if let Ok(v) = axum::http::HeaderValue::from_str(&dropped.join(", ")) {
        resp.headers_mut().insert("x-jusinfer-dropped-params", v);
    }
}

pub async fn attempt(call: Call<'_>) -> Result<Response, GatewayError> {
    match call.provider.speaks() {
        // A provider whose kind has a Responses endpoint, and that serves it (`responses`).
        Speaks::Chat if call.provider.url(Endpoint::Responses).is_some() => passthrough(call).await,
        Speaks::Chat => chat_upstream(call).await,
        Speaks::Messages => anthropic(call).await,
        Speaks::Local => echo(&call).await,
    }
}

/// The body for an upstream that speaks Responses: the client's bytes with `model`
/// spliced, or, for a continued conversation, the request with the whole conversation as
/// `input` (the gateway holds the state; the upstream may not have it). Items this
/// upstream made keep their ids (OpenAI pairs a reasoning item with the item after it by
/// id); ids the gateway minted are dropped, and so are reasoning items made elsewhere.
fn passthrough_body(call: &Call<'_>) -> Result<Bytes, GatewayError> {
    if !call.continues {
        return openai::edit_body(call.raw, call.upstream_model, false);
    }
    let mut req = call.req.clone();
    req.remove("previous_response_id");
    req.insert("model".into(), json!(call.upstream_model));
    let here = call.provider.name();
    let input: Vec<Value> = call
        .conversation
        .iter()
        .zip(
            call.origins
                .iter()
                .chain(std::iter::repeat(&Origin::Client)),
        )
        .filter_map(|(item, origin)| {
            let mut item = item.clone();
            let strip = match origin {
                Origin::Upstream(p) if p == here => false,
                Origin::Client => item["id"].as_str().is_some_and(is_minted_input_id),
                Origin::Upstream(_) | Origin::Gateway => {
                    if item["type"] == "reasoning" {
                        return None;
                    }
                    true
                }
            };
            if strip {
                if let Some(o) = item.as_object_mut() {
                    o.remove("id");
                }
            }
            Some(item)
        })
        .collect();
    req.insert("input".into(), Value::Array(input));
    serde_json::to_vec(&req)
        .map(Bytes::from)
        .map_err(|e| GatewayError::internal(e.to_string()))
}

async fn passthrough(call: Call<'_>) -> Result<Response, GatewayError> {
    let p = call.provider;
    let body = passthrough_body(&call)?;
    let clock = Clock::start(call.timeouts);
    let answer = http::exchange(
        p,
        http::Exchange {
            endpoint: Endpoint::Responses,
            body,
            stream: call.stream,
            forward: &[],
        },
        &clock,
    )
    .await?;
    if call.stream {
        return http::stream_keeping(
            p,
            answer.resp,
            stream::ResponsesPassthrough::new(),
            &clock,
            Some(call.tap),
            call.health,
            call.keeper.map(|k| k.keep(Some(p.name()))),
        )
        .await;
    }
    let bytes = http::read_body(p, answer.resp, clock.deadline).await?;
    let text =
        std::str::from_utf8(&bytes).map_err(|_| malformed(p, "a response that is not UTF-8"))?;
    let v: Value = serde_json::from_str(text)
        .map_err(|e| malformed(p, &format!("a response that is not valid JSON ({e})")))?;
    if v["object"] != "response" {
        return Err(malformed(p, "a body that is not a Response"));
    }
    if let Some(k) = call.keeper {
        k.save(&v, Some(p.name())).await;
    }
    let mut resp = http::json_response(bytes);
    if let Some(mut u) = stream::chat_usage(&v["usage"]) {
        u.cost = call
            .price
            .map_or(Cost::Unknown, |pr| Cost::Usd(pricing::cost(&pr, &u)));
        resp.extensions_mut().insert(UsageExt(u));
    }
    Ok(resp)
}

fn translate(call: &Call<'_>) -> Result<request::Translated, GatewayError> {
    request::to_chat(
        call.req,
        call.conversation,
        request::Options {
            upstream_model: call.upstream_model,
            openai: call.provider.upstream.newest_chat,
            thinking: call.provider.speaks() == Speaks::Messages,
        },
    )
    .map_err(|e| {
        GatewayError::bad_request(e.message)
            .param(e.param)
            .code("invalid_value")
    })
}

fn responses_machine(call: &Call<'_>) -> stream::ChatToResponses {
    stream::ChatToResponses::new(stream::Options {
        envelope: call.envelope.clone(),
        cost: Some(CostRule { price: call.price }),
    })
}

/// A `chat.completion` (as JSON) → the client's Response, kept, usage for the ledger.
async fn from_completion(
    completion: &Map<String, Value>,
    call: &Call<'_>,
) -> Result<Response, GatewayError> {
    let mut r = response::from_chat(completion, call.envelope.clone());
    let usage = completion
        .get("usage")
        .and_then(|u| serde_json::from_value::<Usage>(u.clone()).ok())
        .map(|mut u| {
            u.cost = call
                .price
                .map_or(Cost::Unknown, |pr| Cost::Usd(pricing::cost(&pr, &u)));
            u
        });
    if let Some(u) = &usage {
        let cost: Option<f64> = u.cost.into();
        r["usage"]["cost"] = cost.map_or(Value::Null, |c| json!(c));
    }
    if let Some(k) = call.keeper {
        k.save(&r, None).await;
    }
    let body = serde_json::to_vec(&r).map_err(|e| GatewayError::internal(e.to_string()))?;
    let mut resp = http::json_response(Bytes::from(body));
    if let Some(u) = usage {
        resp.extensions_mut().insert(UsageExt(u));
    }
    Ok(resp)
}

/// An OpenAI-shaped upstream without the Responses API: through Chat Completions.
async fn chat_upstream(call: Call<'_>) -> Result<Response, GatewayError> {
    let p = call.provider;
    let mut t = translate(&call)?;
    let (answer, clock) = openai::exchange_translated(
        p,
        &mut t.body,
        call.stream,
        call.timeouts,
        &mut t.dropped,
        "reasoning.effort",
    )
    .await?;
    let mut resp = if call.stream {
        let machine = Pipe::new(
            ChatStreamNormalizer::new(NormOptions {
                include_usage: true,
                id_seed: call
                    .request_id
                    .chars()
                    .filter(char::is_ascii_alphanumeric)
                    .take(24)
                    .collect(),
                cost: None,
            }),
            responses_machine(&call),
        );
        http::stream_keeping(
            p,
            answer.resp,
            machine,
            &clock,
            Some(call.tap),
            call.health,
            call.keeper.map(|k| k.keep(None)),
        )
        .await?
    } else {
        let bytes = http::read_body(p, answer.resp, clock.deadline).await?;
        let text = std::str::from_utf8(&bytes)
            .map_err(|_| malformed(p, "a response that is not UTF-8"))?;
        let completion: Map<String, Value> = serde_json::from_str(text)
            .map_err(|e| malformed(p, &format!("a response that is not valid JSON ({e})")))?;
        from_completion(&completion, &call).await?
    };
    dropped_header(&mut resp, &t.dropped);
    Ok(resp)
}

/// The translated Chat request as the typed request the Anthropic and echo paths take.
fn chat_request(t: &request::Translated) -> Result<ChatRequest, GatewayError> {
    serde_json::from_value(t.body.clone())
        .map_err(|e| GatewayError::bad_request(format!("The request cannot be translated: {e}")))
}

/// An Anthropic upstream: Responses → Chat → Messages, and back.
async fn anthropic(call: Call<'_>) -> Result<Response, GatewayError> {
    use jusinfer_translate::anthropic::{
        request as a_request, response as a_response, stream as a_stream,
    };
    let p = call.provider;
    let t = translate(&call)?;
    let chat = chat_request(&t)?;
    let present: Vec<String> = t
        .body
        .as_object()
        .map(|o| o.keys().cloned().collect())
        .unwrap_or_default();
    let a = a_request::chat_to_messages(
        &chat,
        &a_request::Options {
            upstream_model: call.upstream_model,
            default_max_tokens: p.config.max_tokens_for(call.upstream_model),
            present_fields: &present,
        },
    )
    .map_err(|e| {
        let err = GatewayError::bad_request(e.message).code("unsupported_value");
        match e.param {
            Some(param) => err.param(param),
            None => err,
        }
    })?;
    let mut a = a;
    if call.auto_cache {
        jusinfer_translate::anthropic::cache::add_breakpoints(
            &mut a.request,
            super::anthropic::AUTO_CACHE_MIN_TOKENS,
        );
    }
    let body = serde_json::to_vec(&a.request).map_err(|e| GatewayError::internal(e.to_string()))?;
    let clock = Clock::start(call.timeouts);
    let answer = http::exchange(
        p,
        http::Exchange {
            endpoint: Endpoint::ChatCompletions,
            body: Bytes::from(body),
            stream: call.stream,
            forward: &[],
        },
        &clock,
    )
    .await?;
    let mut resp = if call.stream {
        let machine = Pipe::new(
            a_stream::AnthropicToChat::new(a_stream::Options {
                include_usage: true,
                created: call.created,
                json_mode: a.json_mode.clone(),
                price: None,
            }),
            responses_machine(&call),
        );
        http::stream_keeping(
            p,
            answer.resp,
            machine,
            &clock,
            Some(call.tap),
            call.health,
            call.keeper.map(|k| k.keep(None)),
        )
        .await?
    } else {
        let bytes = http::read_body(p, answer.resp, clock.deadline).await?;
        let msg: MessagesResponse = serde_json::from_slice(&bytes).map_err(|e| {
            malformed(
                p,
                &format!("a response that is not a Messages response ({e})"),
            )
        })?;
        let completion = a_response::messages_to_chat(&msg, call.created, a.json_mode.as_ref());
        let completion = match serde_json::to_value(&completion) {
            Ok(Value::Object(m)) => m,
            _ => return Err(GatewayError::internal("chat completion did not serialize")),
        };
        from_completion(&completion, &call).await?
    };
    let mut dropped = t.dropped;
    dropped.extend(a.dropped);
    dropped_header(&mut resp, &dropped);
    Ok(resp)
}

/// The built-in `echo` provider, through the same translation.
async fn echo(call: &Call<'_>) -> Result<Response, GatewayError> {
    let t = translate(call)?;
    let chat = chat_request(&t)?;
    let e = echo::Echo::new(&chat, call.request_id, call.created);
    let mut resp = if call.stream {
        let usage = e.usage();
        let capped = e.capped();
        let machine = responses_machine(call);
        let keep = call.keeper.map(|k| k.keep(None));
        let mut resp = http::sse_response(echo::translated(e.frames(), machine, keep));
        echo::mark(&mut resp, capped);
        resp.extensions_mut().insert(UsageExt(usage));
        resp
    } else {
        let completion: Map<String, Value> = serde_json::from_slice(&e.complete())
            .map_err(|e| GatewayError::internal(e.to_string()))?;
        let mut resp = from_completion(&completion, call).await?;
        echo::mark(&mut resp, e.capped());
        resp
    };
    dropped_header(&mut resp, &t.dropped);
    Ok(resp)
}
