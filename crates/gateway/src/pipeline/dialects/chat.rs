//! `POST /v1/chat/completions`: OpenAI's Chat Completions, the gateway's pivot dialect.

use axum::body::Bytes;
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use jusinfer_translate::chat_stream::CostRule;
use jusinfer_wire::chat::{ChatRequest, Role};

use crate::error::GatewayError;
use crate::pipeline::{read, Attempt, ClientDialect, Parsed};
use crate::routing::Deployment;
use crate::upstream::execute::{execute, priced};
use crate::upstream::leg::{id_seed, ChatIn, ChatOut, Leg};
use crate::upstream::{echo, http, openai, Speaks};
use crate::usage::UsageExt;

pub(crate) struct Chat;

impl ClientDialect for Chat {
    const ENDPOINT: &'static str = "/v1/chat/completions";
    type Request = ChatRequest;
    type Target = ();

    fn parse(raw: &Bytes, _: &HeaderMap, (): ()) -> Result<Parsed<ChatRequest>, GatewayError> {
        let req: ChatRequest = read::parse_json(raw)?;
        Ok(Parsed {
            model: req.model.clone(),
            stream: req.is_stream(),
            extra_prompt_bytes: 0,
            max_output: req
                .max_output_tokens()
                .map(|m| u64::from(m).saturating_mul(u64::from(req.n.unwrap_or(1).max(1)))),
            req,
        })
    }

    fn check(p: &Parsed<ChatRequest>) -> Result<(), GatewayError> {
        validate(&p.req)
    }

    async fn attempt(
        a: &Attempt<'_, ChatRequest>,
        d: Deployment,
    ) -> Result<Response, GatewayError> {
        let req = &a.p.req;
        let p = &*d.provider;
        if d.speaks() == Speaks::Local {
            // Echo's frames are Chat already.
            let echo = echo::Echo::new(req, a.request_id, a.created);
            return Ok(echo::chat_response(echo, req.is_stream()));
        }
        let price = d.price;
        let chat = ChatIn::Client { req, raw: a.raw };
        let leg = Leg::new(&d, chat, "reasoning_effort", a.request_id, a.created)?;
        let (plan, back) = leg.plan(&d, req.is_stream(), a.tap, None, Vec::new());
        let machine = || {
            back.machine(ChatOut {
                include_usage: req.wants_stream_usage(),
                cost: Some(CostRule { price }),
                id_seed: id_seed(a.request_id),
                created: a.created,
            })
        };
        let back = &back;
        execute(plan, machine, |bytes| async move {
            // Same dialect (the only `None`): the upstream's bytes, the cost spliced in.
            let Some(mut c) = back.translated(p, &bytes, a.created)? else {
                return openai::whole(p, bytes, price);
            };
            // Translated: the typed completion serialized once, its usage priced.
            c.usage = priced(std::mem::take(&mut c.usage), price);
            let body = serde_json::to_vec(&c).map_err(|e| GatewayError::internal(e.to_string()))?;
            let mut resp = http::json_response(Bytes::from(body));
            resp.extensions_mut().insert(UsageExt(c.usage));
            Ok(resp)
        })
        .await
    }

    const DIALECT: Option<jusinfer_translate::answer::Dialect> =
        Some(jusinfer_translate::answer::Dialect::Chat);
    const CACHE: Option<&'static crate::cache::Codec> = Some(&crate::cache::Codec {
        collect: jusinfer_translate::replay::chat::collect,
        replay: jusinfer_translate::replay::chat::replay,
        fresh_id: Some(("id", "chatcmpl-")),
    });
    fn render(e: GatewayError) -> Response {
        e.into_response()
    }
}

/// Checks the request makes sense beyond its types.
pub fn validate(req: &ChatRequest) -> Result<(), GatewayError> {
    if req.model.trim().is_empty() {
        return Err(GatewayError::bad_request("'model' must name a model.")
            .param("model")
            .code("invalid_value"));
    }
    if req.messages.is_empty() {
        return Err(
            GatewayError::bad_request("'messages' must contain at least one message.")
                .param("messages")
                .code("empty_array"),
        );
    }
    for (i, m) in req.messages.iter().enumerate() {
        match m.role {
            Role::Tool if m.tool_call_id.as_deref().is_none_or(str::is_empty) => {
                return Err(GatewayError::bad_request(format!(
                    "messages[{i}] has role 'tool' but no 'tool_call_id'."
                ))
                .param(format!("messages[{i}].tool_call_id"))
                .code("missing_required_parameter"))
            }
            Role::System | Role::Developer | Role::User | Role::Tool if m.content.is_none() => {
                return Err(
                    GatewayError::bad_request(format!("messages[{i}] needs 'content'."))
                        .param(format!("messages[{i}].content"))
                        .code("missing_required_parameter"),
                )
            }
            Role::Assistant
                if m.content.is_none() && m.tool_calls.is_none() && m.function_call.is_none() =>
            {
                return Err(GatewayError::bad_request(format!(
                    "messages[{i}] (assistant) needs 'content' or 'tool_calls'."
                ))
                .param(format!("messages[{i}].content"))
                .code("missing_required_parameter"))
            }
            _ => {}
        }
    }
    if let Some(n) = req.n {
        if n == 0 || n > 128 {
            return Err(GatewayError::bad_request("'n' must be between 1 and 128.")
                .param("n")
                .code("invalid_value"));
        }
    }
    Ok(())
}
