//! `POST /v1/responses`: OpenAI's Responses API, stateful, served by every provider. The
//! conversation (`previous_response_id`, `item_reference`s) is rebuilt from the store in
//! `prepare` (`conversation.rs`); the finished Response is stored by the [`Keeper`]
//! (`keep.rs`) before the client gets its last event. An OpenAI-shaped provider with
//! `responses = true` gets the request natively and its answer passes through byte for
//! byte; every other deployment gets it translated to Chat and through the Chat leg, and
//! the answer translated back, streams incrementally. The `GET` and `DELETE` endpoints are
//! in `handlers::responses`.

mod conversation;
mod keep;

use std::sync::Arc;

use axum::body::Bytes;
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use jusinfer_translate::chat_stream::CostRule;
use jusinfer_translate::pipe::Pipe;
use jusinfer_translate::responses::{request, response, stream};
use jusinfer_wire::responses::ResponseCreateParams;
use serde_json::{json, Map, Value};

pub(crate) use conversation::Origin;
pub(crate) use keep::Keeper;

use crate::auth::Caller;
use crate::error::GatewayError;
use crate::pipeline::{read, Attempt, ClientDialect, Parsed};
use crate::routing::Deployment;
use crate::state::AppState;
use crate::upstream::execute::{self, completion_usage, execute, malformed, Outbound, Plan};
use crate::upstream::leg::{id_seed, ChatIn, ChatOut, Leg};
use crate::upstream::{http, Endpoint, Speaks};
use crate::usage::UsageExt;

pub(crate) struct Responses;

/// A Responses request, with its conversation rebuilt (in `prepare`).
pub(crate) struct ResponsesRequest {
    req: ResponseCreateParams,
    store: bool,
    previous: Option<String>,
    conversation: Vec<Value>,
    origins: Vec<Origin>,
    /// The conversation is not the client's bytes (it continues a stored one, or had
    /// references resolved): the body is rebuilt.
    continues: bool,
    envelope: Map<String, Value>,
    keeper: Option<Arc<Keeper>>,
    created: u64,
}

impl ClientDialect for Responses {
    const ENDPOINT: &'static str = "/v1/responses";
    type Request = ResponsesRequest;
    type Target = ();

    fn parse(raw: &Bytes, _: &HeaderMap, (): ()) -> Result<Parsed<ResponsesRequest>, GatewayError> {
        let req: ResponseCreateParams = read::parse_json(raw)?;
        let model = read::model_named(&req.model, || {
            GatewayError::bad_request("Missing required parameter: 'model'.")
                .param("model")
                .code("missing_required_parameter")
        })?;
        Ok(Parsed {
            model,
            stream: req.stream.unwrap_or(false),
            extra_prompt_bytes: 0,
            max_output: req.max_output_tokens,
            req: ResponsesRequest {
                store: req.store.unwrap_or(true),
                previous: req.previous_response_id.clone(),
                req,
                conversation: Vec::new(),
                origins: Vec::new(),
                continues: false,
                envelope: Map::new(),
                keeper: None,
                created: 0,
            },
        })
    }

    async fn prepare(
        state: &AppState,
        caller: &Caller,
        p: &mut Parsed<ResponsesRequest>,
    ) -> Result<(), GatewayError> {
        conversation::prepare(state, caller, p).await
    }

    async fn attempt(
        a: &Attempt<'_, ResponsesRequest>,
        d: Deployment,
    ) -> Result<Response, GatewayError> {
        let r = &a.p.req;
        let p = &*d.provider;
        let price = d.price;
        if d.speaks() == Speaks::Chat && p.url(Endpoint::Responses).is_some() {
            // Natively: the client's request (a continued conversation rebuilt), the
            // answer's bytes as they come.
            let body = conversation::passthrough_body(r, a.raw, &d.upstream_model, p.name())?;
            let plan = Plan {
                d: &d,
                endpoint: Endpoint::Responses,
                body: Outbound::Bytes(body),
                stream: a.p.stream,
                forward: &[],
                tap: Some(a.tap),
                keep: r.keeper.as_ref().map(|k| k.keep(Some(p.name()))),
                dropped: Vec::new(),
            };
            return execute(
                plan,
                stream::ResponsesPassthrough::new,
                |bytes| async move {
                    let v = execute::json_object(p, &bytes)?;
                    if v.get("object").and_then(Value::as_str) != Some("response") {
                        return Err(malformed(p, "a body that is not a Response"));
                    }
                    let v = Value::Object(v);
                    if let Some(k) = &r.keeper {
                        k.save(&v, Some(p.name())).await;
                    }
                    let mut resp = http::json_response(bytes);
                    if let Some(u) = stream::chat_usage(&v["usage"]) {
                        resp.extensions_mut()
                            .insert(UsageExt(execute::priced(u, price)));
                    }
                    Ok(resp)
                },
            )
            .await;
        }
        let t = request::to_chat(
            &r.req,
            &r.conversation,
            request::Options {
                upstream_model: &d.upstream_model,
                openai: p.upstream.newest_chat,
                thinking: d.speaks() == Speaks::Messages,
            },
        )
        .map_err(|e| {
            GatewayError::bad_request(e.message)
                .param(e.param)
                .code("invalid_value")
        })?;
        let chat = ChatIn::Translated(t.body);
        let leg = Leg::new(&d, chat, "reasoning.effort", a.request_id, r.created)?;
        let keep = r.keeper.as_ref().map(|k| k.keep(None));
        let (plan, back) = leg.plan(&d, a.p.stream, a.tap, keep, t.dropped);
        let machine = || {
            let to_chat = back.machine(ChatOut {
                include_usage: true,
                cost: None,
                id_seed: id_seed(a.request_id),
                created: r.created,
            });
            let to_responses = stream::ChatToResponses::new(stream::Options {
                envelope: r.envelope.clone(),
                cost: Some(CostRule { price }),
            });
            Pipe::new(to_chat, to_responses)
        };
        let back = &back;
        execute(plan, machine, |bytes| async move {
            let completion = back.completion(p, &bytes, r.created)?;
            from_completion(&completion, r, price).await
        })
        .await
    }

    fn render(e: GatewayError) -> Response {
        e.into_response()
    }

    const DIALECT: Option<jusinfer_translate::answer::Dialect> =
        Some(jusinfer_translate::answer::Dialect::Responses);
    const CACHE: Option<&'static crate::cache::Codec> = Some(&crate::cache::Codec {
        collect: jusinfer_translate::replay::responses::collect,
        replay: |b, _| jusinfer_translate::replay::responses::replay(b),
        fresh_id: None,
    });

    /// A replayed Response is this request's own: its envelope (id, time, and the fields
    /// it echoes: `user`, `metadata`, `store`, …) around the kept answer (output, usage,
    /// status), and kept (with this turn's input) when `store` is on, so it can be fetched
    /// and continued like any other.
    async fn replayed(p: &Parsed<ResponsesRequest>, body: &mut Value) {
        let r = &p.req;
        if r.envelope.is_empty() {
            return;
        }
        let mut v = r.envelope.clone();
        if let Some(kept) = body.as_object_mut() {
            for k in ["status", "error", "incomplete_details", "output", "usage"] {
                if let Some(x) = kept.remove(k) {
                    v.insert(k.to_owned(), x);
                }
            }
            if kept.get("completed_at").is_some_and(|c| !c.is_null()) {
                v.insert("completed_at".to_owned(), json!(crate::store::now()));
            }
        }
        *body = Value::Object(v);
        if let Some(k) = &r.keeper {
            k.save(body, None).await;
        }
    }
}

/// A `chat.completion` (as JSON) → the client's Response, kept, usage for the ledger.
async fn from_completion(
    completion: &Map<String, Value>,
    r: &ResponsesRequest,
    price: Option<jusinfer_translate::pricing::Price>,
) -> Result<Response, GatewayError> {
    let mut v = response::from_chat(completion, r.envelope.clone());
    let usage = completion_usage(completion, price);
    if let Some(u) = &usage {
        let cost: Option<f64> = u.cost.into();
        v["usage"]["cost"] = cost.map_or(Value::Null, |c| json!(c));
    }
    if let Some(k) = &r.keeper {
        k.save(&v, None).await;
    }
    let body = serde_json::to_vec(&v).map_err(|e| GatewayError::internal(e.to_string()))?;
    let mut resp = http::json_response(Bytes::from(body));
    if let Some(u) = usage {
        resp.extensions_mut().insert(UsageExt(u));
    }
    Ok(resp)
}
