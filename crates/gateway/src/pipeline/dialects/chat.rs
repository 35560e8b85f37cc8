//! `POST /v1/chat/completions`: OpenAI's Chat Completions, the gateway's pivot dialect.

use axum::body::Bytes;
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use jusinfer_wire::chat::{ChatRequest, Role};

use crate::error::GatewayError;
use crate::pipeline::{read, Attempt, ClientDialect, Parsed};
use crate::routing::Deployment;
use crate::upstream::{anthropic, echo, openai, Endpoint, Speaks};

pub(crate) struct Chat;

impl ClientDialect for Chat {
    const ENDPOINT: &'static str = "/v1/chat/completions";
    type Request = ChatRequest;

    fn parse(raw: &Bytes, _: &HeaderMap) -> Result<Parsed<ChatRequest>, GatewayError> {
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
        match d.provider.speaks() {
            Speaks::Local => Ok(echo::chat_response(
                echo::Echo::new(req, a.request_id, a.created),
                req.is_stream(),
            )),
            Speaks::Chat => {
                let stream = req.is_stream();
                let body = openai::edit_body(a.raw, &d.upstream_model, stream)?;
                openai::send(openai::Call {
                    provider: &d.provider,
                    timeouts: d.timeouts,
                    health: Some(&d.health),
                    endpoint: Endpoint::ChatCompletions,
                    body,
                    stream,
                    include_usage: req.wants_stream_usage(),
                    request_id: a.request_id,
                    tap: Some(a.tap),
                    price: crate::pipeline::admit::price_of(a.state, &d),
                })
                .await
            }
            Speaks::Messages => {
                anthropic::chat(anthropic::Call {
                    provider: &d.provider,
                    timeouts: d.timeouts,
                    health: Some(&d.health),
                    req,
                    raw: a.raw,
                    upstream_model: &d.upstream_model,
                    price: crate::pipeline::admit::price_of(a.state, &d),
                    created: a.created,
                    tap: a.tap,
                    auto_cache: d.auto_cache,
                })
                .await
            }
        }
    }

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
