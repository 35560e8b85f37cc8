//! The inbound APIs, one [`super::ClientDialect`] each, and what the dialects that are not
//! Chat share: [`through_chat`], their attempt on a deployment that does not speak them.

pub(crate) mod chat;
pub(crate) mod embeddings;
pub(crate) mod gemini;
pub(crate) mod messages;
pub(crate) mod responses;

pub(crate) use chat::Chat;
pub(crate) use embeddings::Embeddings;
pub(crate) use messages::Messages;
pub(crate) use responses::Responses;

use axum::body::Bytes;
use axum::response::Response;
use jusinfer_translate::pipe::Pipe;
use jusinfer_translate::StreamTranslator;
use serde_json::{Map, Value};

use super::Attempt;
use crate::error::GatewayError;
use crate::routing::Deployment;
use crate::upstream::execute::{completion_usage, execute};
use crate::upstream::http;
use crate::upstream::leg::{ChatIn, ChatOut, Leg};
use crate::usage::UsageExt;

/// A client request translated to Chat (`body`, `dropped`), what every dialect but Chat
/// does with a deployment that does not speak it: through the Chat leg to `d`, the stream
/// through the leg's machine then `outer()` (Chat chunks in, the dialect's frames out),
/// the whole answer from the `chat.completion` through `render`. `effort`: the client's
/// name for what became `reasoning_effort`; `seed` seeds the ids the leg mints.
pub(crate) async fn through_chat<T, M>(
    a: &Attempt<'_, T>,
    d: &Deployment,
    (body, dropped): (Value, Vec<String>),
    effort: &'static str,
    seed: &str,
    outer: impl Fn() -> M,
    render: impl FnOnce(&Map<String, Value>) -> Value,
) -> Result<Response, GatewayError>
where
    M: StreamTranslator + 'static,
{
    let p = &*d.provider;
    let price = d.price;
    let leg = Leg::new(d, ChatIn::Translated(body), effort, a.request_id, a.created)?;
    let (plan, back) = leg.plan(d, a.p.stream, a.tap, None, dropped);
    let machine = || {
        let to_chat = back.machine(ChatOut {
            include_usage: true,
            cost: None,
            id_seed: seed.to_owned(),
            created: a.created,
        });
        Pipe::new(to_chat, outer())
    };
    let back = &back;
    execute(plan, machine, |bytes| async move {
        let completion = back.completion(p, &bytes, a.created)?;
        let body = render(&completion);
        let mut resp = http::json_response(Bytes::from(body.to_string()));
        if let Some(u) = completion_usage(&completion, price) {
            resp.extensions_mut().insert(UsageExt(u));
        }
        Ok(resp)
    })
    .await
}
