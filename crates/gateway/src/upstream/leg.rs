//! The Chat leg: how a Chat Completions request the gateway holds — the client's own, or
//! one translated from Responses or Messages — reaches a deployment of any kind, and how
//! its answer comes back as Chat. An upstream kind that does not speak Chat adds one arm
//! here (its request translation, its stream machine, its whole-answer reader), and every
//! client dialect reaches it with no code of its own.

use std::borrow::Cow;

use bytes::Bytes;
use jusinfer_translate::anthropic::{self, JsonMode};
use jusinfer_translate::bedrock;
use jusinfer_translate::chat_stream::{ChatStreamNormalizer, CostRule};
use jusinfer_translate::gemini;
use jusinfer_translate::pipe::Relay;
use jusinfer_translate::StreamTranslator;
use jusinfer_wire::anthropic::MessagesResponse;
use jusinfer_wire::bedrock::ConverseResponse;
use jusinfer_wire::chat::{ChatCompletion, ChatRequest};
use jusinfer_wire::gemini::GenerateContentResponse;
use serde::Deserialize as _;
use serde_json::{Map, Value};

use super::echo::Echo;
use super::execute::{json_object, malformed, Outbound, Plan};
use super::http::Keep;
use super::{openai, Endpoint, Provider, Speaks};
use crate::error::GatewayError;
use crate::ledger::Tap;
use crate::routing::Deployment;

/// Prompts shorter than this (estimated) get no automatic breakpoints: Anthropic caches
/// nothing under 1,024 tokens.
pub(crate) const AUTO_CACHE_MIN_TOKENS: usize = 1024;

/// The Chat request a leg starts from.
pub(crate) enum ChatIn<'a> {
    /// The client's own, parsed, and its bytes.
    Client {
        req: &'a ChatRequest,
        raw: &'a Bytes,
    },
    /// Translated from another dialect.
    Translated(Value),
}

/// A Chat request planned for one deployment: what to send, and how to read the answer.
pub(crate) struct Leg {
    pub body: Outbound,
    pub endpoint: Endpoint,
    pub back: Back,
    /// The request's fields this kind cannot carry.
    pub dropped: Vec<String>,
}

/// How an upstream's answer becomes Chat.
pub(crate) enum Back {
    /// OpenAI-shaped: the stream normalized, the body as it is.
    Chat,
    /// Anthropic's Messages, translated back (JSON mode's forced tool undone).
    Messages { json_mode: Option<JsonMode> },
    /// Gemini's `generateContent`, translated back (`model`: the one asked for, until
    /// Gemini names its version).
    Gemini { model: String },
    /// Bedrock's Converse, translated back (Converse names neither the model nor the
    /// answer: `model` is the one asked for, `id` the request's).
    Converse {
        model: String,
        id: String,
        json_mode: Option<JsonMode>,
    },
    /// The built-in `echo`: Chat already.
    Local,
}

/// What the Chat stream a leg produces should carry.
pub(crate) struct ChatOut {
    pub include_usage: bool,
    /// `usage.cost` in the usage chunk (None: none added; a later machine prices).
    pub cost: Option<CostRule>,
    /// Seeds the ids the gateway mints.
    pub id_seed: String,
    pub created: u64,
}

impl Leg {
    /// Plans `chat` for `d`. `effort` is the client's name for `reasoning_effort` (named
    /// dropped when a model refuses it).
    pub(crate) fn new(
        d: &Deployment,
        chat: ChatIn<'_>,
        effort: &'static str,
        request_id: &str,
        created: u64,
    ) -> Result<Self, GatewayError> {
        let leg = |body, back, dropped| Leg {
            body,
            endpoint: Endpoint::ChatCompletions,
            back,
            dropped,
        };
        Ok(match d.speaks() {
            Speaks::Chat => {
                // Call ids minted for Gemini carry its thought signatures: they mean
                // nothing here and make ids too long for some (a route falling back from
                // Gemini to OpenAI mid-conversation).
                let body = match chat {
                    ChatIn::Client { req, raw } if carries_signatures(req) => {
                        let mut v: Value = serde_json::from_slice(raw)
                            .map_err(|e| GatewayError::internal(e.to_string()))?;
                        gemini::strip_signatures(&mut v);
                        let raw = Bytes::from(
                            serde_json::to_vec(&v)
                                .map_err(|e| GatewayError::internal(e.to_string()))?,
                        );
                        Outbound::Bytes(openai::edit_body(
                            &raw,
                            &d.upstream_model,
                            req.is_stream(),
                        )?)
                    }
                    ChatIn::Client { req, raw } => {
                        Outbound::Bytes(openai::edit_body(raw, &d.upstream_model, req.is_stream())?)
                    }
                    ChatIn::Translated(mut body) => {
                        gemini::strip_signatures(&mut body);
                        Outbound::Chat { body, effort }
                    }
                };
                leg(body, Back::Chat, Vec::new())
            }
            Speaks::Messages => {
                let (req, present) = typed(&chat)?;
                let mut t = anthropic::request::chat_to_messages(
                    &req,
                    &anthropic::request::Options {
                        upstream_model: &d.upstream_model,
                        default_max_tokens: d.provider.config.max_tokens_for(&d.upstream_model),
                        present_fields: &present,
                    },
                )
                .map_err(untranslatable)?;
                if d.auto_cache {
                    anthropic::cache::add_breakpoints(&mut t.request, AUTO_CACHE_MIN_TOKENS);
                }
                let body = serde_json::to_vec(&t.request)
                    .map_err(|e| GatewayError::internal(e.to_string()))?;
                let body = super::anthropic::body_for(&d.provider, Bytes::from(body))?;
                let back = Back::Messages {
                    json_mode: t.json_mode,
                };
                leg(Outbound::Bytes(body), back, t.dropped)
            }
            Speaks::Gemini => {
                let (req, present) = typed(&chat)?;
                let t = gemini::request::chat_to_gemini(
                    &req,
                    &gemini::request::Options {
                        present_fields: &present,
                    },
                )
                .map_err(untranslatable)?;
                let body = serde_json::to_vec(&t.request)
                    .map_err(|e| GatewayError::internal(e.to_string()))?;
                let back = Back::Gemini {
                    model: d.upstream_model.clone(),
                };
                leg(Outbound::Bytes(Bytes::from(body)), back, t.dropped)
            }
            Speaks::Converse => {
                let (req, present) = typed(&chat)?;
                let t = bedrock::request::chat_to_converse(
                    &req,
                    &bedrock::request::Options {
                        model: &d.upstream_model,
                        present_fields: &present,
                    },
                )
                .map_err(untranslatable)?;
                let body = serde_json::to_vec(&t.body)
                    .map_err(|e| GatewayError::internal(e.to_string()))?;
                let back = Back::Converse {
                    model: d.upstream_model.clone(),
                    id: id_seed(request_id),
                    json_mode: t.json_mode,
                };
                leg(Outbound::Bytes(Bytes::from(body)), back, t.dropped)
            }
            Speaks::Local => {
                let (req, _) = typed(&chat)?;
                let echo = Echo::new(&req, request_id, created);
                leg(Outbound::Echo(Box::new(echo)), Back::Local, Vec::new())
            }
        })
    }
}

impl Leg {
    /// The attempt: the leg's body to its endpoint, `dropped` (the client dialect's own)
    /// followed by the leg's; and how to read the answer.
    pub(crate) fn plan<'a>(
        self,
        d: &'a Deployment,
        stream: bool,
        tap: &'a Tap,
        keep: Option<Keep>,
        mut dropped: Vec<String>,
    ) -> (Plan<'a>, Back) {
        dropped.extend(self.dropped);
        let plan = Plan {
            d,
            endpoint: self.endpoint,
            body: self.body,
            stream,
            forward: &[],
            tap: Some(tap),
            keep,
            dropped,
        };
        (plan, self.back)
    }
}

/// Whether a call id of `req` carries a Gemini thought signature (read from the typed
/// messages: no scan of the body).
fn carries_signatures(req: &ChatRequest) -> bool {
    let sep = gemini::SIGNATURE_SEP;
    req.messages.iter().any(|m| {
        m.tool_call_id.as_deref().is_some_and(|id| id.contains(sep))
            || m.tool_calls.iter().flatten().any(|c| c.id.contains(sep))
    })
}

/// Seeds the ids the gateway mints for a request (from its request id).
pub(crate) fn id_seed(request_id: &str) -> String {
    request_id
        .chars()
        .filter(char::is_ascii_alphanumeric)
        .take(24)
        .collect()
}

/// The typed request and the top-level fields the client's JSON has (to name the ones
/// dropped).
fn typed<'a>(chat: &'a ChatIn<'_>) -> Result<(Cow<'a, ChatRequest>, Vec<String>), GatewayError> {
    match chat {
        ChatIn::Client { req, raw } => {
            let present =
                serde_json::from_slice::<indexmap::IndexMap<String, serde::de::IgnoredAny>>(raw)
                    .map(|m| m.into_keys().collect())
                    .unwrap_or_default();
            Ok((Cow::Borrowed(*req), present))
        }
        ChatIn::Translated(v) => {
            let req = ChatRequest::deserialize(v).map_err(|e| {
                GatewayError::bad_request(format!("The request cannot be translated: {e}"))
            })?;
            let present = v
                .as_object()
                .map(|o| o.keys().cloned().collect())
                .unwrap_or_default();
            Ok((Cow::Owned(req), present))
        }
    }
}

impl Back {
    /// The stream machine: the upstream's events in, Chat frames out.
    pub(crate) fn machine(&self, out: ChatOut) -> Box<dyn StreamTranslator> {
        match self {
            Back::Chat => Box::new(ChatStreamNormalizer::new(
                jusinfer_translate::chat_stream::Options {
                    include_usage: out.include_usage,
                    id_seed: out.id_seed,
                    cost: out.cost,
                },
            )),
            Back::Messages { json_mode } => Box::new(anthropic::stream::AnthropicToChat::new(
                anthropic::stream::Options {
                    include_usage: out.include_usage,
                    created: out.created,
                    json_mode: json_mode.clone(),
                    price: out.cost.and_then(|c| c.price),
                },
            )),
            Back::Gemini { model } => {
                Box::new(gemini::stream::GeminiToChat::new(gemini::stream::Options {
                    include_usage: out.include_usage,
                    created: out.created,
                    model: model.clone(),
                    id_seed: out.id_seed,
                    price: out.cost.and_then(|c| c.price),
                }))
            }
            Back::Converse {
                model,
                id,
                json_mode,
            } => Box::new(bedrock::stream::BedrockToChat::new(
                bedrock::stream::Options {
                    include_usage: out.include_usage,
                    created: out.created,
                    model: model.clone(),
                    id: id.clone(),
                    price: out.cost.and_then(|c| c.price),
                    json_mode: json_mode.clone(),
                },
            )),
            Back::Local => Box::new(Relay::default()),
        }
    }

    /// A whole answer as a `chat.completion` (JSON).
    pub(crate) fn completion(
        &self,
        p: &Provider,
        bytes: &[u8],
        created: u64,
    ) -> Result<Map<String, Value>, GatewayError> {
        match self.translated(p, bytes, created)? {
            Some(c) => as_map(&c),
            None => json_object(p, bytes),
        }
    }

    /// A whole answer of another dialect as a typed `chat.completion`; `None` when the
    /// upstream answered in Chat already (its JSON is the completion).
    pub(crate) fn translated(
        &self,
        p: &Provider,
        bytes: &[u8],
        created: u64,
    ) -> Result<Option<ChatCompletion>, GatewayError> {
        Ok(Some(match self {
            Back::Chat | Back::Local => return Ok(None),
            Back::Messages { json_mode } => {
                let msg: MessagesResponse = serde_json::from_slice(bytes).map_err(|e| {
                    malformed(
                        p,
                        &format!("a response that is not a Messages response ({e})"),
                    )
                })?;
                anthropic::response::messages_to_chat(&msg, created, json_mode.as_ref())
            }
            Back::Gemini { model } => {
                let resp: GenerateContentResponse = serde_json::from_slice(bytes).map_err(|e| {
                    malformed(
                        p,
                        &format!("a response that is not a Gemini response ({e})"),
                    )
                })?;
                gemini::response::to_chat(&resp, model, created, "gemini").map_err(|b| {
                    let mut e = GatewayError::bad_request(b.describe())
                        .param("messages")
                        .code("content_filter");
                    e.origin = crate::error::Origin::Upstream;
                    e
                })?
            }
            Back::Converse {
                model,
                id,
                json_mode,
            } => {
                let resp: ConverseResponse = serde_json::from_slice(bytes).map_err(|e| {
                    malformed(
                        p,
                        &format!("a response that is not a Converse response ({e})"),
                    )
                })?;
                bedrock::response::to_chat(&resp, model, id, created, json_mode.as_ref())
            }
        }))
    }
}

/// A request the kind's translation refuses: the client's 400, naming the field.
fn untranslatable(e: anthropic::request::Error) -> GatewayError {
    let err = GatewayError::bad_request(e.message).code("unsupported_value");
    match e.param {
        Some(param) => err.param(param),
        None => err,
    }
}

fn as_map(c: &ChatCompletion) -> Result<Map<String, Value>, GatewayError> {
    match serde_json::to_value(c) {
        Ok(Value::Object(m)) => Ok(m),
        _ => Err(GatewayError::internal("chat completion did not serialize")),
    }
}
