//! `POST /v1/messages/count_tokens` (`POST /v1/messages` itself is the pipeline's
//! `Messages` dialect): asked of the first deployment of the route whose kind counts
//! tokens (Anthropic; Gemini and Vertex's Gemini models, the request translated), else
//! estimated with a tokenizer.

use std::sync::OnceLock;

use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue};
use axum::response::{IntoResponse, Response};
use serde_json::{json, Map, Value};

use crate::auth::authenticate_any;
use crate::error::GatewayError;
use crate::pipeline::dialects::messages::forwarded;
use crate::routing::Deployment;
use crate::state::AppState;
use crate::upstream::{http, Endpoint, Speaks};
use jusinfer_translate::gemini::request as gemini_request;
use jusinfer_translate::messages::request as messages_request;
use jusinfer_wire::anthropic::MessageCreateParams;
use jusinfer_wire::chat::ChatRequest;

/// Largest prompt text tokenized for `count_tokens`.
const MAX_TOKENIZED_BYTES: usize = 1 << 20;

fn tokenizer() -> Option<&'static tiktoken_rs::CoreBPE> {
    static BPE: OnceLock<Option<tiktoken_rs::CoreBPE>> = OnceLock::new();
    BPE.get_or_init(|| tiktoken_rs::o200k_base().ok()).as_ref()
}

/// What a prompt-text walk does with an object's field.
pub(crate) enum Take {
    /// Its strings, nested ones included.
    Texts,
    /// The value as JSON (tool inputs and schemas count as the model reads them).
    Json,
    Skip,
}

/// The strings of `fields` of `req` (each walked by `take`), one per line: what a
/// tokenizer estimate counts.
pub(crate) fn texts_of(
    req: &Map<String, Value>,
    fields: &[&str],
    take: fn(&str) -> Take,
) -> String {
    fn walk(v: &Value, out: &mut String, take: fn(&str) -> Take) {
        match v {
            Value::String(s) => {
                out.push_str(s);
                out.push('\n');
            }
            Value::Array(a) => a.iter().for_each(|x| walk(x, out, take)),
            Value::Object(o) => {
                for (k, x) in o {
                    match take(k) {
                        Take::Texts => walk(x, out, take),
                        Take::Json => {
                            out.push_str(&x.to_string());
                            out.push('\n');
                        }
                        Take::Skip => {}
                    }
                }
            }
            _ => {}
        }
    }
    let mut out = String::new();
    for k in fields {
        if let Some(v) = req.get(*k) {
            walk(v, &mut out, take);
        }
    }
    out
}

/// Every text a Messages request sends to the model: system, message text and tool
/// calls/results, tool definitions.
fn prompt_text(req: &Map<String, Value>) -> String {
    texts_of(req, &["system", "messages", "tools"], |k| match k {
        "text" | "thinking" | "content" | "system" | "name" | "description" => Take::Texts,
        "input" | "input_schema" => Take::Json,
        _ => Take::Skip,
    })
}

/// A Messages request as Gemini's `countTokens` body: translated (through Chat) to the
/// request it would send, so system text and tools count too. AI Studio takes it as
/// `generateContentRequest` (with the model); Vertex takes its fields at the top level.
fn gemini_count_body(
    req: &Map<String, Value>,
    model: &str,
    wrapped: bool,
) -> Result<Bytes, GatewayError> {
    let bad = |message: String, param: Option<String>| {
        let e = GatewayError::bad_request(message).code("invalid_value");
        match param {
            Some(p) => e.param(p),
            None => e,
        }
    };
    let mut m = req.clone();
    // count_tokens takes no max_tokens; the translation wants one.
    m.entry("max_tokens").or_insert(json!(1));
    let params: MessageCreateParams = serde_json::from_value(Value::Object(m))
        .map_err(|e| bad(format!("The request cannot be counted: {e}"), None))?;
    let chat = messages_request::messages_to_chat(&params, model, false)
        .map_err(|e| bad(e.message, Some(e.param)))?;
    let chat: ChatRequest = serde_json::from_value(chat.body)
        .map_err(|e| bad(format!("The request cannot be counted: {e}"), None))?;
    let g = gemini_request::chat_to_gemini(&chat, &gemini_request::Options::default())
        .map_err(|e| bad(e.message, e.param))?;
    let mut inner =
        serde_json::to_value(&g.request).map_err(|e| GatewayError::internal(e.to_string()))?;
    // Settings the count does not take.
    if let Some(o) = inner.as_object_mut() {
        o.remove("generationConfig");
    }
    if !wrapped {
        return Ok(Bytes::from(inner.to_string()));
    }
    inner["model"] = json!(format!(
        "models/{}",
        model.strip_prefix("models/").unwrap_or(model)
    ));
    Ok(Bytes::from(
        json!({"generateContentRequest": inner}).to_string(),
    ))
}

/// The tokens of `text`, estimated, and how (for `x-jusinfer-token-count`). Tokenizing is
/// CPU work: off the async workers, and only up to a size where it is worth it (past it,
/// bytes / 4 is as good an estimate).
pub(crate) async fn estimate_tokens(text: String) -> Result<(usize, &'static str), GatewayError> {
    if text.len() > MAX_TOKENIZED_BYTES {
        return Ok((text.len().div_ceil(4), "estimated; bytes/4"));
    }
    tokio::task::spawn_blocking(move || match tokenizer() {
        Some(bpe) => (
            bpe.encode_ordinary(&text).len(),
            "estimated; tokenizer=o200k_base",
        ),
        None => (text.len().div_ceil(4), "estimated; bytes/4"),
    })
    .await
    .map_err(|e| GatewayError::internal(e.to_string()))
}

/// Whether `d` can count tokens itself: Anthropic (with a count endpoint), Gemini,
/// Claude on Bedrock.
pub(crate) fn counts(d: &Deployment) -> bool {
    match d.speaks() {
        Speaks::Messages => d.provider.url(Endpoint::CountTokens).is_some(),
        Speaks::Gemini => true,
        Speaks::Converse => d.native_messages().is_some(),
        Speaks::Chat | Speaks::Local => false,
    }
}

/// Asks `d` to count `body`; `reshape`: the count's field in the upstream's answer and in
/// the client's (`None`: the same API, the answer as it is).
pub(crate) async fn ask_count(
    d: &Deployment,
    body: Bytes,
    forward: &[(&'static str, String)],
    reshape: Option<(&str, &str)>,
) -> Result<Response, GatewayError> {
    let clock = http::Clock::start(d.timeouts);
    let answer = http::exchange(
        &d.provider,
        http::Exchange {
            endpoint: Endpoint::CountTokens,
            model: &d.upstream_model,
            body,
            stream: false,
            forward,
        },
        &clock,
    )
    .await?;
    let mut bytes = http::read_body(&d.provider, answer.resp, clock.deadline).await?;
    if let Some((from, to)) = reshape {
        let n = serde_json::from_slice::<Value>(&bytes)
            .ok()
            .and_then(|v| v[from].as_u64())
            .ok_or_else(|| {
                GatewayError::upstream(format!(
                    "provider `{}` answered a token count without {from}",
                    d.provider.name()
                ))
            })?;
        bytes = Bytes::from(json!({ to: n }).to_string());
    }
    let mut resp = http::json_response(bytes);
    resp.headers_mut().insert(
        "x-jusinfer-token-count",
        HeaderValue::from_static("upstream"),
    );
    Ok(resp)
}

pub(crate) async fn count_tokens(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let mut key = None;
    let result = async {
        let caller = authenticate_any(&state, &headers).await?;
        key = super::key_id(&caller);
        let (max_body, body_time) = {
            let live = state.live.load();
            (
                live.config.max_body_bytes,
                live.config.server.body_read_timeout,
            )
        };
        let raw = super::read_body(body, max_body, body_time).await?;
        let mut req: Map<String, Value> = super::parse_json(&raw)?;
        let model = req
            .get("model")
            .and_then(Value::as_str)
            .filter(|m| !m.trim().is_empty())
            .ok_or_else(|| GatewayError::bad_request("model: Field required.").param("model"))?
            .to_owned();
        caller.check_model(&model)?;
        let deployments = state.live.load().router.resolve(&model)?;
        if let Some(d) = deployments.iter().find(|d| counts(d)) {
            let forward = forwarded(&headers);
            let (body, forward, reshape) = match d.speaks() {
                Speaks::Gemini => {
                    // Vertex (a provider with a project) takes the fields unwrapped.
                    let wrapped = d.provider.config.vertex.is_none();
                    let body = gemini_count_body(&req, &d.upstream_model, wrapped)?;
                    // Gemini's `{"totalTokens": n}` → Anthropic's shape.
                    (body, &forward[..], Some(("totalTokens", "input_tokens")))
                }
                Speaks::Converse => {
                    // Claude on Bedrock: the flags go in the body.
                    let body = crate::upstream::bedrock::count_body(&raw, &forward)?;
                    (body, &[][..], Some(("inputTokens", "input_tokens")))
                }
                _ => {
                    req.insert("model".into(), json!(d.upstream_model));
                    let body = Bytes::from(Value::Object(req).to_string());
                    (body, &forward[..], None)
                }
            };
            return ask_count(d, body, forward, reshape).await;
        }
        let (n, how) = estimate_tokens(prompt_text(&req)).await?;
        let mut resp = axum::Json(json!({"input_tokens": n})).into_response();
        resp.headers_mut()
            .insert("x-jusinfer-token-count", HeaderValue::from_static(how));
        Ok::<_, GatewayError>(resp)
    }
    .await;
    let resp = match result {
        Ok(r) => r,
        Err(e) => e.into_anthropic_response(),
    };
    super::logged(resp, key, String::new())
}
