//! `POST /v1/messages/count_tokens` (`POST /v1/messages` itself is the pipeline's
//! `Messages` dialect): asked of the first deployment of the route whose kind counts
//! tokens (Anthropic), else estimated with a tokenizer.

use std::sync::OnceLock;

use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue};
use axum::response::{IntoResponse, Response};
use serde_json::{json, Map, Value};

use crate::auth::authenticate_any;
use crate::error::GatewayError;
use crate::pipeline::dialects::messages::forwarded;
use crate::state::AppState;
use crate::upstream::{http, Endpoint};

/// Largest prompt text tokenized for `count_tokens`.
const MAX_TOKENIZED_BYTES: usize = 1 << 20;

fn tokenizer() -> Option<&'static tiktoken_rs::CoreBPE> {
    static BPE: OnceLock<Option<tiktoken_rs::CoreBPE>> = OnceLock::new();
    BPE.get_or_init(|| tiktoken_rs::o200k_base().ok()).as_ref()
}

/// Every text a Messages request sends to the model: system, message text and tool
/// calls/results, tool definitions.
fn prompt_text(req: &Map<String, Value>) -> String {
    fn walk(v: &Value, out: &mut String) {
        match v {
            Value::String(s) => {
                out.push_str(s);
                out.push('\n');
            }
            Value::Array(a) => a.iter().for_each(|x| walk(x, out)),
            Value::Object(o) => {
                for (k, x) in o {
                    match k.as_str() {
                        "text" | "thinking" | "content" | "system" => walk(x, out),
                        "input" | "input_schema" => {
                            out.push_str(&x.to_string());
                            out.push('\n');
                        }
                        "name" | "description" => walk(x, out),
                        _ => {}
                    }
                }
            }
            _ => {}
        }
    }
    let mut out = String::new();
    for k in ["system", "messages", "tools"] {
        if let Some(v) = req.get(k) {
            walk(v, &mut out);
        }
    }
    out
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
        let raw = super::read_body(
            body,
            state.config.max_body_bytes,
            state.config.server.body_read_timeout,
        )
        .await?;
        let mut req: Map<String, Value> = super::parse_json(&raw)?;
        let model = req
            .get("model")
            .and_then(Value::as_str)
            .filter(|m| !m.trim().is_empty())
            .ok_or_else(|| GatewayError::bad_request("model: Field required.").param("model"))?
            .to_owned();
        caller.check_model(&model)?;
        let deployments = state.router.resolve(&model)?;
        if let Some(d) = deployments
            .iter()
            .find(|d| d.provider.url(Endpoint::CountTokens).is_some())
        {
            req.insert("model".into(), json!(d.upstream_model));
            let body = Bytes::from(Value::Object(req).to_string());
            let clock = http::Clock::start(d.timeouts);
            let forward = forwarded(&headers);
            let answer = http::exchange(
                &d.provider,
                http::Exchange {
                    endpoint: Endpoint::CountTokens,
                    model: &d.upstream_model,
                    body,
                    stream: false,
                    forward: &forward,
                },
                &clock,
            )
            .await?;
            let bytes = http::read_body(&d.provider, answer.resp, clock.deadline).await?;
            let mut resp = http::json_response(bytes);
            resp.headers_mut().insert(
                "x-jusinfer-token-count",
                HeaderValue::from_static("upstream"),
            );
            return Ok(resp);
        }
        let text = prompt_text(&req);
        // Tokenizing is CPU work: off the async workers, and only up to a size where it is
        // worth it (past it, bytes / 4 is as good an estimate).
        let (n, how) = if text.len() <= MAX_TOKENIZED_BYTES {
            tokio::task::spawn_blocking(move || match tokenizer() {
                Some(bpe) => (
                    bpe.encode_ordinary(&text).len(),
                    "estimated; tokenizer=o200k_base",
                ),
                None => (text.len().div_ceil(4), "estimated; bytes/4"),
            })
            .await
            .map_err(|e| GatewayError::internal(e.to_string()))?
        } else {
            (text.len().div_ceil(4), "estimated; bytes/4")
        };
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
