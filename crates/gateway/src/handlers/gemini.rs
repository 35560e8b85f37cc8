//! The Gemini API's routes (`/v1beta/models/…`, and `/v1/models/…` for `POST`): the
//! methods named after the model in the path go to their handler — `generateContent` and
//! `streamGenerateContent` to the pipeline's `Gemini` dialect, `embedContent` and
//! `batchEmbedContents` to `GeminiEmbed`, `countTokens` here (asked of a Gemini or
//! Anthropic deployment of the route, the request translated for Anthropic; else
//! estimated); `GET` lists the models in Google's shape. A `?key=` in the query
//! authenticates as `x-goog-api-key` does.

use axum::body::{Body, Bytes};
use axum::extract::{Query, State};
use axum::http::{HeaderMap, HeaderValue};
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use jusinfer_translate::anthropic::request as anthropic_request;
use jusinfer_translate::generate::request as generate_request;
use jusinfer_wire::chat::ChatRequest;
use jusinfer_wire::gemini::GenerateContentRequest;
use serde_json::{json, Map, Value};

use crate::auth::{authenticate_any, Caller};
use crate::error::GatewayError;
use crate::pipeline::dialects::gemini::{EmbedTarget, Gemini, GeminiEmbed, Target};
use crate::pipeline::run;
use crate::routing::Deployment;
use crate::state::{AppState, RequestId};
use crate::upstream::Speaks;

/// The query Google's clients send: the key, and `alt=sse` for streams.
#[derive(serde::Deserialize, Default)]
pub(crate) struct GoogleQuery {
    #[serde(default)]
    key: Option<String>,
    #[serde(default)]
    alt: Option<String>,
}

/// `?key=` as the `x-goog-api-key` header, unless a header names a key already.
fn key_from_query(headers: &mut HeaderMap, q: &GoogleQuery) {
    let named = ["authorization", "x-goog-api-key", "x-api-key"]
        .iter()
        .any(|h| headers.contains_key(*h));
    if let (false, Some(k)) = (named, &q.key) {
        if let Ok(v) = HeaderValue::from_str(k) {
            headers.insert("x-goog-api-key", v);
        }
    }
}

/// `POST /v1beta/models/{model}:{method}`.
pub(crate) async fn post(
    State(state): State<AppState>,
    Extension(rid): Extension<RequestId>,
    Query(q): Query<GoogleQuery>,
    mut headers: HeaderMap,
    super::ApiPath(target): super::ApiPath<String>,
    body: Body,
) -> Response {
    key_from_query(&mut headers, &q);
    let Some((model, method)) = target.rsplit_once(':') else {
        return GatewayError::not_found(format!(
            "`models/{target}` names no method: use `models/{{model}}:generateContent`."
        ))
        .into_gemini_response();
    };
    let model = model.to_owned();
    match method {
        "generateContent" => {
            run::<Gemini>(
                state,
                rid,
                headers,
                body,
                Target {
                    model,
                    stream: false,
                },
            )
            .await
        }
        "streamGenerateContent" => {
            if q.alt.as_deref() != Some("sse") {
                return GatewayError::bad_request(
                    "streamGenerateContent is served as server-sent events: add `?alt=sse`.",
                )
                .param("alt")
                .into_gemini_response();
            }
            run::<Gemini>(
                state,
                rid,
                headers,
                body,
                Target {
                    model,
                    stream: true,
                },
            )
            .await
        }
        "embedContent" | "batchEmbedContents" => {
            let batch = method == "batchEmbedContents";
            run::<GeminiEmbed>(state, rid, headers, body, EmbedTarget { model, batch }).await
        }
        "countTokens" => count_tokens(state, headers, body, model).await,
        _ => GatewayError::not_found(format!(
            "`{method}` is not a method this gateway serves: use generateContent, \
             streamGenerateContent, countTokens, embedContent or batchEmbedContents."
        ))
        .into_gemini_response(),
    }
}

/// A model in Google's shape.
fn model_entry(name: &str, owner: &str) -> Value {
    json!({
        "name": format!("models/{name}"),
        "baseModelId": name,
        "version": "",
        "displayName": name,
        "description": format!("{name}, served by {owner} through jusinfer"),
        "supportedGenerationMethods": ["generateContent", "streamGenerateContent",
            "countTokens", "embedContent", "batchEmbedContents"],
    })
}

async fn caller(
    state: &AppState,
    headers: &mut HeaderMap,
    q: &GoogleQuery,
) -> Result<Caller, GatewayError> {
    key_from_query(headers, q);
    authenticate_any(state, headers).await
}

/// `GET /v1beta/models`: the models the caller may use.
pub(crate) async fn list(
    State(state): State<AppState>,
    Query(q): Query<GoogleQuery>,
    mut headers: HeaderMap,
) -> Response {
    let caller = match caller(&state, &mut headers, &q).await {
        Ok(c) => c,
        Err(e) => return e.into_gemini_response(),
    };
    let models: Vec<Value> = state
        .live
        .load()
        .router
        .model_names()
        .iter()
        .filter(|(n, _)| caller.check_model(n).is_ok())
        .map(|(n, o)| model_entry(n, o))
        .collect();
    let resp = Json(json!({ "models": models })).into_response();
    super::logged(resp, super::key_id(&caller), String::new())
}

/// `GET /v1beta/models/{model}`.
pub(crate) async fn get(
    State(state): State<AppState>,
    Query(q): Query<GoogleQuery>,
    mut headers: HeaderMap,
    super::ApiPath(name): super::ApiPath<String>,
) -> Response {
    let caller = match caller(&state, &mut headers, &q).await {
        Ok(c) => c,
        Err(e) => return e.into_gemini_response(),
    };
    let found = caller
        .check_model(&name)
        .and_then(|()| state.live.load().router.resolve(&name));
    let resp = match found {
        Ok(d) => {
            let owner = d.first().map_or("jusinfer", |d| d.provider.name());
            Json(model_entry(&name, owner)).into_response()
        }
        Err(e) => e.into_gemini_response(),
    };
    super::logged(resp, super::key_id(&caller), name)
}

/// The request a `countTokens` body counts: `generateContentRequest`, or the fields at the
/// top level.
fn counted(body: &Map<String, Value>) -> Result<GenerateContentRequest, GatewayError> {
    let inner = match body.get("generateContentRequest") {
        Some(Value::Object(o)) => o.clone(),
        _ => body.clone(),
    };
    serde_json::from_value(Value::Object(inner)).map_err(|e| {
        GatewayError::bad_request(format!("The request cannot be counted: {e}"))
            .code("invalid_value")
    })
}

/// A `countTokens` body for the Gemini deployment `d`: AI Studio takes a
/// `generateContentRequest` naming the model (or the contents alone), Vertex the fields at
/// the top level.
fn gemini_count_body(body: Map<String, Value>, d: &Deployment) -> Bytes {
    let vertex = d.provider.config.vertex.is_some();
    let out = match body.get("generateContentRequest") {
        Some(Value::Object(inner)) => {
            let mut inner = inner.clone();
            if vertex {
                inner.remove("model");
                Value::Object(inner)
            } else {
                let m = &d.upstream_model;
                let m = m.strip_prefix("models/").unwrap_or(m);
                inner.insert("model".into(), json!(format!("models/{m}")));
                json!({ "generateContentRequest": inner })
            }
        }
        _ => Value::Object(body),
    };
    Bytes::from(out.to_string())
}

/// A Gemini request as Anthropic's `count_tokens` body (through Chat), for `d`.
fn anthropic_count_body(
    req: &GenerateContentRequest,
    d: &Deployment,
) -> Result<Bytes, GatewayError> {
    let bad = |message: String, param: Option<String>| {
        let e = GatewayError::bad_request(message).code("invalid_value");
        match param {
            Some(p) => e.param(p),
            None => e,
        }
    };
    let chat = generate_request::gemini_to_chat(req, &d.upstream_model, false, false)
        .map_err(|e| bad(e.message, Some(e.param)))?;
    let chat: ChatRequest = serde_json::from_value(chat.body)
        .map_err(|e| bad(format!("The request cannot be counted: {e}"), None))?;
    let opts = anthropic_request::Options {
        upstream_model: &d.upstream_model,
        default_max_tokens: 1,
        present_fields: &[],
    };
    let t =
        anthropic_request::chat_to_messages(&chat, &opts).map_err(|e| bad(e.message, e.param))?;
    let mut m = match serde_json::to_value(&t.request) {
        Ok(Value::Object(m)) => m,
        _ => {
            return Err(GatewayError::internal(
                "a Messages request did not serialize",
            ))
        }
    };
    // What count_tokens takes.
    m.retain(|k, _| {
        matches!(
            k.as_str(),
            "model" | "messages" | "system" | "tools" | "tool_choice" | "thinking"
        )
    });
    crate::upstream::anthropic::body_for(&d.provider, Bytes::from(Value::Object(m).to_string()))
}

/// The texts a Gemini request sends the model (what a tokenizer estimate counts): every
/// string of its contents, system instruction and tools but inline data and MIME types.
fn prompt_text(req: &Map<String, Value>) -> String {
    use super::messages::{texts_of, Take};
    let req = match req.get("generateContentRequest") {
        Some(Value::Object(o)) => o,
        _ => req,
    };
    let fields = [
        "systemInstruction",
        "system_instruction",
        "contents",
        "tools",
    ];
    texts_of(req, &fields, |k| match k {
        "inlineData" | "inline_data" | "mimeType" | "mime_type" | "role" | "thoughtSignature"
        | "thought_signature" => Take::Skip,
        _ => Take::Texts,
    })
}

/// `POST /v1beta/models/{model}:countTokens`: `{"totalTokens": n}`.
async fn count_tokens(state: AppState, headers: HeaderMap, body: Body, model: String) -> Response {
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
        let req: Map<String, Value> = super::parse_json(&raw)?;
        caller.check_model(&model)?;
        let deployments = state.live.load().router.resolve(&model)?;
        if let Some(d) = deployments.iter().find(|d| super::messages::counts(d)) {
            let gemini = d.speaks() == Speaks::Gemini;
            let body = if gemini {
                gemini_count_body(req, d)
            } else {
                anthropic_count_body(&counted(&req)?, d)?
            };
            // Anthropic's `{"input_tokens": n}` → Google's shape.
            let reshape = (!gemini).then_some(("input_tokens", "totalTokens"));
            return super::messages::ask_count(d, body, &[], reshape).await;
        }
        counted(&req)?;
        let (n, how) = super::messages::estimate_tokens(prompt_text(&req)).await?;
        let mut resp = Json(json!({ "totalTokens": n })).into_response();
        resp.headers_mut()
            .insert("x-jusinfer-token-count", HeaderValue::from_static(how));
        Ok::<_, GatewayError>(resp)
    }
    .await;
    let resp = match result {
        Ok(r) => r,
        Err(e) => e.into_gemini_response(),
    };
    super::logged(resp, key, model)
}
