//! `POST /v1/messages`: Anthropic's Messages API, as Anthropic's SDKs and Claude Code send
//! it (`x-api-key` or Bearer; `anthropic-version` and `anthropic-beta` passed on to
//! upstreams that speak Messages), served by every provider. Errors are in Anthropic's
//! shape.

use axum::body::Bytes;
use axum::http::HeaderMap;
use axum::response::Response;
use serde_json::{Map, Value};

use crate::error::GatewayError;
use crate::pipeline::{read, Attempt, ClientDialect, Parsed};
use crate::routing::Deployment;
use crate::upstream::{messages, Speaks};

pub(crate) struct Messages;

/// A checked Messages request and what its attempts share.
pub(crate) struct MessagesRequest {
    pub req: Map<String, Value>,
    /// `anthropic-version` / `anthropic-beta` as the client sent them.
    pub forward: Vec<(&'static str, String)>,
    /// `msg_…`, for answers the gateway builds.
    pub id: String,
}

impl ClientDialect for Messages {
    const ENDPOINT: &'static str = "/v1/messages";
    const ANY_AUTH: bool = true;
    type Request = MessagesRequest;

    fn parse(raw: &Bytes, headers: &HeaderMap) -> Result<Parsed<MessagesRequest>, GatewayError> {
        let req: Map<String, Value> = read::parse_json(raw)?;
        let model = req
            .get("model")
            .and_then(Value::as_str)
            .filter(|m| !m.trim().is_empty())
            .ok_or_else(|| {
                GatewayError::bad_request("model: Field required (a model name string).")
                    .param("model")
            })?
            .to_owned();
        if !req.get("max_tokens").is_some_and(Value::is_u64) {
            return Err(GatewayError::bad_request(
                "max_tokens: Field required (a positive integer).",
            )
            .param("max_tokens"));
        }
        if req
            .get("messages")
            .and_then(Value::as_array)
            .is_none_or(Vec::is_empty)
        {
            return Err(
                GatewayError::bad_request("messages: at least one message is required.")
                    .param("messages"),
            );
        }
        Ok(Parsed {
            stream: req.get("stream").and_then(Value::as_bool).unwrap_or(false),
            max_output: req.get("max_tokens").and_then(Value::as_u64),
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
        let call = messages::Call {
            provider: &d.provider,
            timeouts: d.timeouts,
            health: Some(&d.health),
            raw: a.raw,
            req: &m.req,
            stream: a.p.stream,
            upstream_model: &d.upstream_model,
            client_model: &a.p.model,
            forward: &m.forward,
            id: &m.id,
            price: crate::pipeline::admit::price_of(a.state, &d),
            tap: a.tap,
            input_estimate: crate::limits::estimate_prompt_tokens(a.raw.len()),
        };
        match d.provider.speaks() {
            Speaks::Messages => messages::anthropic(call).await,
            Speaks::Chat => messages::openai(call).await,
            Speaks::Local => messages::echo(&call, a.request_id, a.created),
        }
    }

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
