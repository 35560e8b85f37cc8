//! OpenAI and OpenAI-compatible upstreams: what a client of the same dialect needs to be
//! passed through — its body spliced ([`edit_body`]), the answer's bytes kept but for the
//! cost ([`whole`]) — and how their errors read ([`map_status`]).

use axum::http::StatusCode;
use axum::response::Response;
use bytes::Bytes;
use jusinfer_translate::pricing::{self, Price};
use jusinfer_wire::chat::Usage;
use serde_json::value::RawValue;

use super::execute::malformed;
use super::{http, Provider};
use crate::error::GatewayError;
use crate::usage::UsageExt;

/// Rewrites the client's JSON for the upstream: `model` becomes the upstream's name and,
/// for streams, `stream_options.include_usage` is set (the gateway bills from it). The edit
/// is a splice: every other byte of the client's body is forwarded exactly as it came, and
/// an unchanged body is not copied at all.
pub fn edit_body(raw: &Bytes, upstream_model: &str, stream: bool) -> Result<Bytes, GatewayError> {
    /// The two top-level values the gateway may change, borrowed from the body so their
    /// positions are known.
    #[derive(serde::Deserialize)]
    struct Edited<'a> {
        #[serde(borrow, default, deserialize_with = "present")]
        model: Option<&'a RawValue>,
        #[serde(borrow, default, deserialize_with = "present")]
        stream_options: Option<&'a RawValue>,
    }
    /// `Some` for any value present, `null` included (plain `Option` would read null as None
    /// and a second member of the same name would be inserted).
    fn present<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<&'de RawValue>, D::Error> {
        <&RawValue as serde::Deserialize>::deserialize(d).map(Some)
    }
    let bad = |e: serde_json::Error| {
        GatewayError::bad_request(format!(
            "We could not parse the JSON body of your request: {e}"
        ))
    };
    let edited: Edited<'_> = serde_json::from_slice(raw).map_err(bad)?;
    let span = |v: &RawValue| {
        let start = v.get().as_ptr() as usize - raw.as_ptr() as usize;
        start..start + v.get().len()
    };
    // (range to replace, replacement), in body order.
    let mut splices: Vec<(std::ops::Range<usize>, String)> = Vec::with_capacity(2);
    let same_model = edited.model.is_some_and(|m| {
        serde_json::from_str::<&str>(m.get()).is_ok_and(|m| m == upstream_model)
            || serde_json::from_str::<String>(m.get()).is_ok_and(|m| m == upstream_model)
    });
    let model_json =
        serde_json::to_string(upstream_model).map_err(|e| GatewayError::internal(e.to_string()))?;
    match edited.model {
        Some(m) if !same_model => splices.push((span(m), model_json)),
        Some(_) => {}
        None => splices.push((
            insertion_point(raw)..insertion_point(raw),
            format!("\"model\":{model_json},"),
        )),
    }
    if stream {
        let current = edited.stream_options.filter(|v| v.get() != "null");
        let mut opts: serde_json::Map<String, serde_json::Value> = match current {
            Some(v) => serde_json::from_str(v.get()).map_err(|_| {
                GatewayError::bad_request("'stream_options' must be an object.")
                    .param("stream_options")
                    .code("invalid_type")
            })?,
            None => serde_json::Map::new(),
        };
        if opts
            .get("include_usage")
            .and_then(serde_json::Value::as_bool)
            != Some(true)
        {
            opts.insert("include_usage".to_owned(), serde_json::Value::Bool(true));
            let json =
                serde_json::to_string(&opts).map_err(|e| GatewayError::internal(e.to_string()))?;
            match edited.stream_options {
                Some(v) => splices.push((span(v), json)),
                None => {
                    let at = insertion_point(raw);
                    splices.push((at..at, format!("\"stream_options\":{json},")));
                }
            }
        }
    }
    if splices.is_empty() {
        return Ok(raw.clone());
    }
    splices.sort_by_key(|(r, _)| r.start);
    let mut out = Vec::with_capacity(raw.len() + 64);
    let mut at = 0;
    for (range, text) in splices {
        out.extend_from_slice(&raw[at..range.start]);
        out.extend_from_slice(text.as_bytes());
        at = range.end;
    }
    out.extend_from_slice(&raw[at..]);
    Ok(Bytes::from(out))
}

/// Just after the body's opening `{`, where a new member can go (followed by a comma, so
/// the object must not be empty: a request always has members).
fn insertion_point(raw: &[u8]) -> usize {
    raw.iter().position(|b| *b == b'{').map_or(0, |p| p + 1)
}

/// A whole Chat (or embeddings) answer of an OpenAI-shaped upstream, for a client of the
/// same dialect: the bytes go on untouched but for `"cost":…` spliced into the usage
/// object (§4's extension); the whole body is validated and its usage read in one pass.
pub(crate) fn whole(
    p: &Provider,
    body: Bytes,
    price: Option<Price>,
) -> Result<Response, GatewayError> {
    let (body, usage) = cost_spliced(body, price).map_err(|e| malformed(p, &e))?;
    let mut resp = http::json_response(body);
    if let Some(u) = usage {
        resp.extensions_mut().insert(UsageExt(u));
    }
    Ok(resp)
}

/// [`whole`]'s work: `body` checked (UTF-8, JSON) and, when it carries a usage object, the
/// usage read and `"cost"` spliced into it. The error says what the body is not.
pub fn cost_spliced(body: Bytes, price: Option<Price>) -> Result<(Bytes, Option<Usage>), String> {
    #[derive(serde::Deserialize)]
    struct Peek<'a> {
        #[serde(borrow, default)]
        usage: Option<&'a RawValue>,
    }
    // UTF-8 first: serde skips the fields it ignores without checking their bytes.
    let text = std::str::from_utf8(&body).map_err(|e| {
        format!(
            "a response that is not valid UTF-8 (invalid byte at offset {})",
            e.valid_up_to()
        )
    })?;
    let peek: Peek<'_> = serde_json::from_str(text)
        .map_err(|e| format!("a response that is not valid JSON ({e})"))?;
    let Some(raw_usage) = peek.usage else {
        return Ok((body, None));
    };
    let Ok(mut u) = serde_json::from_str::<Usage>(raw_usage.get()) else {
        return Ok((body, None));
    };
    u.cost = price.map(|pr| pricing::cost(&pr, &u)).into();
    let (start, len) = (
        raw_usage.get().as_ptr() as usize - body.as_ptr() as usize,
        raw_usage.get().len(),
    );
    let cost: Option<f64> = u.cost.into();
    Ok((splice_cost(&body, start, len, cost), Some(u)))
}

/// Inserts `"cost":<usd or null>` as the last member of the usage object found at
/// `body[start..start + len]` (unless it already has one).
fn splice_cost(body: &Bytes, start: usize, len: usize, cost: Option<f64>) -> Bytes {
    let obj = &body[start..start + len];
    let Some(close) = obj.iter().rposition(|b| *b == b'}') else {
        return body.clone();
    };
    if jusinfer_translate::scan::contains(obj, b"\"cost\"") {
        return body.clone();
    }
    let empty = obj[1..close].iter().all(u8::is_ascii_whitespace);
    let value = cost.map_or_else(
        || "null".to_owned(),
        |c| serde_json::Value::from(c).to_string(),
    );
    let member = format!("{}\"cost\":{value}", if empty { "" } else { "," });
    let at = start + close;
    let mut out = Vec::with_capacity(body.len() + member.len());
    out.extend_from_slice(&body[..at]);
    out.extend_from_slice(member.as_bytes());
    out.extend_from_slice(&body[at..]);
    Bytes::from(out)
}

/// Maps an upstream error status (§5): 400/404/422 keep their status and the upstream's
/// error; 401/403 are the gateway's credentials, not the client's, so they become 502;
/// 408, 429, 5xx and 529 may be retried elsewhere.
pub(crate) fn map_status(p: &Provider, status: StatusCode, body: &[u8]) -> GatewayError {
    #[derive(serde::Deserialize)]
    struct Env {
        error: Option<serde_json::Value>,
        message: Option<String>,
        detail: Option<serde_json::Value>,
    }
    let parsed: Option<Env> = serde_json::from_slice(body).ok();
    let (mut message, mut kind, mut param, mut code) = (None, None, None, None);
    if let Some(env) = parsed {
        match env.error {
            Some(serde_json::Value::Object(o)) => {
                message = o.get("message").and_then(|m| m.as_str()).map(str::to_owned);
                kind = o.get("type").and_then(|m| m.as_str()).map(str::to_owned);
                param = o.get("param").and_then(|m| m.as_str()).map(str::to_owned);
                code = o.get("code").and_then(|c| {
                    c.as_str()
                        .map(str::to_owned)
                        .or_else(|| c.as_i64().map(|n| n.to_string()))
                });
            }
            Some(serde_json::Value::String(s)) => message = Some(s),
            _ => {}
        }
        message = message
            .or(env.message)
            .or_else(|| env.detail.map(|d| d.to_string()));
    }
    let message = message.unwrap_or_else(|| {
        let text = super::status::body_head(body);
        if text.is_empty() {
            format!("HTTP {}", status.as_u16())
        } else {
            text
        }
    });
    let name = p.name();
    let s = status.as_u16();
    match s {
        401 | 403 => GatewayError::upstream(format!(
            "provider `{name}` rejected the gateway's credentials ({s}): {message}"
        ))
        .code("upstream_auth_error"),
        408 => GatewayError::timeout(format!("provider `{name}` timed out (408): {message}")),
        429 => {
            let mut e = GatewayError::bad_request(message).retryable(true);
            e.status = StatusCode::TOO_MANY_REQUESTS;
            e.kind = if kind.as_deref() == Some("insufficient_quota") {
                "insufficient_quota"
            } else {
                "rate_limit_exceeded"
            };
            e.code = Some(code.unwrap_or_else(|| "rate_limit_exceeded".to_owned()));
            e.origin = crate::error::Origin::Upstream;
            e
        }
        400..=499 => {
            let mut e = GatewayError::bad_request(message);
            e.status = status;
            e.param = param;
            e.code = code;
            e.kind = match kind.as_deref() {
                Some("not_found_error") => "not_found_error",
                Some("invalid_request_error") | None | Some(_) => "invalid_request_error",
            };
            e.origin = crate::error::Origin::Upstream;
            e
        }
        _ => GatewayError::upstream(format!("provider `{name}` returned {s}: {message}"))
            .retryable(matches!(s, 500 | 502 | 503 | 504 | 529)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn edit(body: &str, model: &str, stream: bool) -> String {
        let out = edit_body(&Bytes::from(body.to_owned()), model, stream).expect("edits");
        String::from_utf8(out.to_vec()).expect("utf8")
    }

    #[test]
    fn cost_is_spliced_into_the_usage_object() {
        let body = Bytes::from_static(br#"{"id":"x","usage":{"prompt_tokens":1} ,"z":1}"#);
        let start = body
            .iter()
            .position(|b| *b == b'{')
            .map(|_| 18)
            .unwrap_or(0);
        let out = splice_cost(&body, start, 19, Some(0.5));
        assert_eq!(
            &out[..],
            br#"{"id":"x","usage":{"prompt_tokens":1,"cost":0.5} ,"z":1}"#
        );
        let out = splice_cost(&body, start, 19, None);
        assert_eq!(
            &out[..],
            br#"{"id":"x","usage":{"prompt_tokens":1,"cost":null} ,"z":1}"#
        );
        let empty = Bytes::from_static(br#"{"usage":{ }}"#);
        assert_eq!(
            &splice_cost(&empty, 9, 3, None)[..],
            br#"{"usage":{ "cost":null}}"#
        );
    }

    #[test]
    fn unchanged_body_keeps_its_bytes() {
        let body = "{ \"model\" : \"m\",\n \"x\": 1.50 }";
        assert_eq!(edit(body, "m", false), body);
    }

    #[test]
    fn model_and_stream_options_are_spliced() {
        assert_eq!(
            edit(r#"{"model":"a/b","n":1.50}"#, "b", false),
            r#"{"model":"b","n":1.50}"#
        );
        assert_eq!(
            edit(r#"{"model":"a","stream":true}"#, "a", true),
            r#"{"stream_options":{"include_usage":true},"model":"a","stream":true}"#
        );
        assert_eq!(
            edit(
                r#"{"stream_options":{"include_obfuscation":false},"model":"x","stream":true}"#,
                "y",
                true
            ),
            r#"{"stream_options":{"include_obfuscation":false,"include_usage":true},"model":"y","stream":true}"#
        );
        assert_eq!(
            edit(
                r#"{"model":"x","stream_options":null,"stream":true}"#,
                "x",
                true
            ),
            r#"{"model":"x","stream_options":{"include_usage":true},"stream":true}"#
        );
        let escaped = edit(r#"{"model":"sim\/text","stream":false}"#, "sim/text", false);
        assert_eq!(escaped, r#"{"model":"sim\/text","stream":false}"#);
    }
}
