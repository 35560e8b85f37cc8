//! `POST /v1/messages`: Anthropic's Messages API, as Anthropic's SDKs and Claude Code send
//! it (`x-api-key` or Bearer; `anthropic-version` and `anthropic-beta` passed on to
//! upstreams that speak Messages), served by every provider: an `anthropic` upstream gets
//! the client's bytes (only `model` spliced) and its answer passes through byte for byte
//! (so do Claude on Vertex and on Bedrock, in the body their APIs want);
//! every other deployment gets the request translated to Chat and through the Chat leg,
//! and the answer translated back (`translate::messages`). Errors are in Anthropic's shape.

use axum::body::Bytes;
use axum::http::HeaderMap;
use axum::response::Response;
use jusinfer_translate::messages::{request, response, stream};
use jusinfer_wire::anthropic::{MessageCreateParams, MessagesResponse};

use crate::error::GatewayError;
use crate::pipeline::{read, Attempt, ClientDialect, Parsed};
use crate::routing::Deployment;
use crate::upstream::execute::{execute, malformed, priced, Outbound, Plan};
use crate::upstream::{anthropic, bedrock, http, openai, Endpoint};
use crate::usage::UsageExt;

pub(crate) struct Messages;

/// A checked Messages request and what its attempts share.
pub(crate) struct MessagesRequest {
    pub req: MessageCreateParams,
    /// `anthropic-version` / `anthropic-beta` as the client sent them.
    pub forward: Vec<(&'static str, String)>,
    /// `msg_…`, for answers the gateway builds.
    pub id: String,
}

impl ClientDialect for Messages {
    const ENDPOINT: &'static str = "/v1/messages";
    const ANY_AUTH: bool = true;
    type Request = MessagesRequest;
    type Target = ();

    fn parse(
        raw: &Bytes,
        headers: &HeaderMap,
        (): (),
    ) -> Result<Parsed<MessagesRequest>, GatewayError> {
        let req: MessageCreateParams = read::parse_json(raw)?;
        let model = read::model_named(&req.model, || {
            GatewayError::bad_request("model: Field required (a model name string).").param("model")
        })?;
        if req.max_tokens.is_none() {
            return Err(GatewayError::bad_request(
                "max_tokens: Field required (a positive integer).",
            )
            .param("max_tokens"));
        }
        if req.messages.is_empty() {
            return Err(
                GatewayError::bad_request("messages: at least one message is required.")
                    .param("messages"),
            );
        }
        Ok(Parsed {
            stream: req.stream.unwrap_or(false),
            max_output: req.max_tokens,
            extra_prompt_bytes: 0,
            model,
            req: MessagesRequest {
                req,
                forward: forwarded(headers),
                id: message_id(),
            },
        })
    }

    async fn attempt(
        a: &Attempt<'_, MessagesRequest>,
        d: Deployment,
    ) -> Result<Response, GatewayError> {
        let m = &a.p.req;
        let p = &*d.provider;
        let price = d.price;
        if let Some(endpoint) = d.native_messages() {
            // Natively: the client's bytes (only `model` spliced), the answer's bytes as
            // they come, usage read on the way.
            let body = openai::edit_body(a.raw, &d.upstream_model, false)?;
            let (body, forward) = if endpoint == Endpoint::NativeMessages {
                // Claude on Bedrock: the flags go in the body.
                (bedrock::invoke_body(&body, &m.forward)?, &[][..])
            } else {
                (anthropic::body_for(p, body)?, &m.forward[..])
            };
            let plan = Plan {
                d: &d,
                endpoint,
                body: Outbound::Bytes(body),
                stream: a.p.stream,
                forward,
                tap: Some(a.tap),
                keep: None,
                dropped: Vec::new(),
            };
            return execute(plan, stream::MessagesPassthrough::new, |bytes| async move {
                let text = std::str::from_utf8(&bytes)
                    .map_err(|_| malformed(p, "a response that is not UTF-8"))?;
                let msg: MessagesResponse = serde_json::from_str(text).map_err(|e| {
                    malformed(
                        p,
                        &format!("a response that is not a Messages response ({e})"),
                    )
                })?;
                let usage = priced(jusinfer_translate::anthropic::usage(&msg.usage), price);
                let mut resp = http::json_response(bytes);
                resp.extensions_mut().insert(UsageExt(usage));
                Ok(resp)
            })
            .await;
        }
        let t = request::messages_to_chat(&m.req, &d.upstream_model, p.upstream.newest_chat)
            .map_err(|e| {
                GatewayError::bad_request(e.message)
                    .param(e.param)
                    .code("invalid_value")
            })?;
        let outer = || {
            stream::ChatToMessages::new(stream::Options {
                id: m.id.clone(),
                model: a.p.model.clone(),
                input_tokens_estimate: crate::limits::estimate_prompt_tokens(a.raw.len()),
            })
        };
        let render = |c: &_| response::chat_to_messages(c, &a.p.model, &m.id);
        let seed = m.id.trim_start_matches("msg_");
        let effort = "output_config.effort";
        super::through_chat(a, &d, (t.body, t.dropped), effort, seed, outer, render).await
    }

    /// Forwarded upstream: betas (a longer context, more output) change the answer.
    const ANSWER_HEADERS: &'static [&'static str] = &["anthropic-version", "anthropic-beta"];
    const DIALECT: Option<jusinfer_translate::answer::Dialect> =
        Some(jusinfer_translate::answer::Dialect::Messages);
    const CACHE: Option<&'static crate::cache::Codec> = Some(&crate::cache::Codec {
        collect: jusinfer_translate::replay::messages::collect,
        replay: |b, _| jusinfer_translate::replay::messages::replay(b),
        fresh_id: Some(("id", "msg_")),
    });
    fn render(e: GatewayError) -> Response {
        e.into_anthropic_response()
    }

    fn error_frame(e: &GatewayError) -> Bytes {
        jusinfer_sse::encode_bytes(Some("error"), &e.anthropic_body())
    }
}

/// The client's Anthropic headers that upstreams speaking Messages get.
pub(crate) fn forwarded(headers: &HeaderMap) -> Vec<(&'static str, String)> {
    ["anthropic-version", "anthropic-beta"]
        .into_iter()
        .filter_map(|k| {
            headers
                .get(k)
                .and_then(|v| v.to_str().ok())
                .map(|v| (k, v.to_owned()))
        })
        .collect()
}

/// A fresh `msg_…` id (never from the client's request id: ids made from it would repeat
/// across a client's requests).
fn message_id() -> String {
    use rand::distributions::{Alphanumeric, DistString};
    format!(
        "msg_{}",
        Alphanumeric.sample_string(&mut rand::thread_rng(), 24)
    )
}
