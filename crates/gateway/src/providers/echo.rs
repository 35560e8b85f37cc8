//! The built-in `echo` provider (§9): answers with the last user message, streamed word by
//! word when asked; honours `max_tokens` (words count as tokens) and `stop`; returns a tool
//! call whose arguments satisfy the tool's JSON schema when `tool_choice` is `required` or
//! names a function; returns JSON in JSON mode; reports usage. It is a documented test
//! provider: it is reached only by the model name `echo` (or an alias that routes to it).

use bytes::{Bytes, BytesMut};
use jusinfer_wire::chat::{
    AssistantMessage, ChatChunk, ChatCompletion, ChatRequest, Choice, ChunkChoice, Cost, Delta,
    FunctionCall, FunctionDelta, Role, ToolCall, ToolCallDelta, ToolChoice, Usage,
};
use serde_json::{json, Map, Value};

/// What the echo provider decided to say.
struct Answer {
    text: Option<String>,
    call: Option<(String, String)>,
    finish: &'static str,
    prompt_tokens: u64,
    completion_tokens: u64,
}

fn count_tokens(s: &str) -> u64 {
    s.split_whitespace().count() as u64
}

fn answer(req: &ChatRequest) -> Answer {
    let prompt_tokens: u64 = req
        .messages
        .iter()
        .map(|m| count_tokens(&m.text()) + 3)
        .sum::<u64>()
        + 3;
    let last_user = req
        .messages
        .iter()
        .rev()
        .find(|m| m.role == Role::User)
        .map(|m| m.text())
        .unwrap_or_default();
    if let Some((name, schema)) = forced_tool(req) {
        let args = sample(&schema, &schema, &last_user, 0).to_string();
        let completion_tokens = count_tokens(&args).max(1);
        return Answer {
            text: None,
            call: Some((name, args)),
            finish: "tool_calls",
            prompt_tokens,
            completion_tokens,
        };
    }
    let mut finish = "stop";
    let mut text = last_user;
    if let Some(rf) = &req.response_format {
        match rf.kind.as_str() {
            "json_object" => text = json!({ "echo": text }).to_string(),
            "json_schema" => {
                let schema = rf
                    .json_schema
                    .as_ref()
                    .and_then(|s| s.schema.clone())
                    .unwrap_or(json!({"type":"object"}));
                text = sample(&schema, &schema, &text, 0).to_string();
            }
            _ => {}
        }
    }
    if let Some(stop) = &req.stop {
        if let Some(cut) = stop
            .as_vec()
            .iter()
            .filter(|s| !s.is_empty())
            .filter_map(|s| text.find(s))
            .min()
        {
            text.truncate(cut);
        }
    }
    if let Some(max) = req.max_output_tokens() {
        let words: Vec<&str> = text
            .split_inclusive(char::is_whitespace)
            .filter(|w| !w.trim().is_empty())
            .collect();
        if words.len() as u64 > u64::from(max) {
            text = words[..max as usize].concat().trim_end().to_owned();
            finish = "length";
        }
    }
    let completion_tokens = count_tokens(&text);
    Answer {
        text: Some(text),
        call: None,
        finish,
        prompt_tokens,
        completion_tokens,
    }
}

/// The tool the request forces, with its parameter schema.
fn forced_tool(req: &ChatRequest) -> Option<(String, Value)> {
    let tools = req.tools.as_deref().unwrap_or_default();
    let named = match req.tool_choice.as_ref()? {
        ToolChoice::Mode(m) if m == "required" => None,
        ToolChoice::Mode(_) => return None,
        ToolChoice::Object(o) => Some(o.function.as_ref()?.name.clone()),
    };
    let f = tools
        .iter()
        .filter_map(|t| t.function.as_ref())
        .find(|f| named.as_ref().is_none_or(|n| &f.name == n))?;
    Some((
        f.name.clone(),
        f.parameters
            .clone()
            .unwrap_or(json!({"type": "object", "properties": {}})),
    ))
}

/// A value that satisfies `schema` (the common JSON Schema keywords), with `text` for strings.
pub fn sample(schema: &Value, root: &Value, text: &str, depth: usize) -> Value {
    if depth > 16 {
        return Value::Null;
    }
    let Some(obj) = schema.as_object() else {
        return json!({});
    };
    if let Some(r) = obj.get("$ref").and_then(Value::as_str) {
        let target = r
            .strip_prefix('#')
            .map(|ptr| root.pointer(ptr))
            .unwrap_or(None);
        return target.map_or(Value::Null, |t| sample(t, root, text, depth + 1));
    }
    if let Some(c) = obj.get("const") {
        return c.clone();
    }
    if let Some(first) = obj
        .get("enum")
        .and_then(Value::as_array)
        .and_then(|e| e.first())
    {
        return first.clone();
    }
    for key in ["anyOf", "oneOf"] {
        if let Some(first) = obj
            .get(key)
            .and_then(Value::as_array)
            .and_then(|a| a.first())
        {
            return sample(first, root, text, depth + 1);
        }
    }
    if let Some(all) = obj.get("allOf").and_then(Value::as_array) {
        let mut merged = Map::new();
        for s in all {
            if let Value::Object(o) = sample(s, root, text, depth + 1) {
                merged.extend(o);
            }
        }
        return Value::Object(merged);
    }
    let ty = match obj.get("type") {
        Some(Value::String(t)) => t.as_str(),
        Some(Value::Array(ts)) => ts
            .iter()
            .filter_map(Value::as_str)
            .find(|t| *t != "null")
            .unwrap_or("null"),
        _ if obj.contains_key("properties") => "object",
        _ => "string",
    };
    match ty {
        "object" => {
            let mut out = Map::new();
            if let Some(props) = obj.get("properties").and_then(Value::as_object) {
                for (k, s) in props {
                    out.insert(k.clone(), sample(s, root, text, depth + 1));
                }
            }
            Value::Object(out)
        }
        "array" => {
            let min = obj
                .get("minItems")
                .and_then(Value::as_u64)
                .unwrap_or(1)
                .max(1);
            let max = obj.get("maxItems").and_then(Value::as_u64).unwrap_or(min);
            let n = min.min(max);
            let item = obj.get("items").cloned().unwrap_or(json!({}));
            Value::Array(
                (0..n)
                    .map(|_| sample(&item, root, text, depth + 1))
                    .collect(),
            )
        }
        "integer" | "number" => {
            let lo = obj.get("minimum").and_then(Value::as_f64).or_else(|| {
                obj.get("exclusiveMinimum")
                    .and_then(Value::as_f64)
                    .map(|m| m + 1.0)
            });
            let hi = obj.get("maximum").and_then(Value::as_f64);
            let v = lo.unwrap_or(0.0).min(hi.unwrap_or(f64::MAX));
            if ty == "integer" {
                json!(v.ceil() as i64)
            } else {
                json!(v)
            }
        }
        "boolean" => json!(true),
        "null" => Value::Null,
        _ => {
            let s = match obj.get("format").and_then(Value::as_str) {
                Some("date") => "2025-01-01".to_owned(),
                Some("date-time") => "2025-01-01T00:00:00Z".to_owned(),
                Some("email") => "echo@example.com".to_owned(),
                Some("uri") | Some("url") => "https://example.com/".to_owned(),
                Some("uuid") => "00000000-0000-4000-8000-000000000000".to_owned(),
                _ => {
                    if text.is_empty() {
                        "echo".to_owned()
                    } else {
                        text.to_owned()
                    }
                }
            };
            let min = obj.get("minLength").and_then(Value::as_u64).unwrap_or(0) as usize;
            let max = obj
                .get("maxLength")
                .and_then(Value::as_u64)
                .map(|m| m as usize);
            let mut s: String = match max {
                Some(m) => s.chars().take(m).collect(),
                None => s,
            };
            while s.chars().count() < min {
                s.push('x');
            }
            Value::String(s)
        }
    }
}

fn usage(a: &Answer) -> Usage {
    Usage {
        prompt_tokens: a.prompt_tokens,
        completion_tokens: a.completion_tokens,
        total_tokens: a.prompt_tokens + a.completion_tokens,
        prompt_tokens_details: Some(Default::default()),
        completion_tokens_details: Some(Default::default()),
        // The echo provider is free: a real price, not an unknown one.
        cost: Cost::Usd(0.0),
    }
}

fn call_id(request_id: &str, choice: u32) -> String {
    let tail: String = request_id
        .chars()
        .filter(char::is_ascii_alphanumeric)
        .take(24)
        .collect();
    format!("call_{tail}{choice}")
}

/// A non-streaming completion, and its usage.
pub fn complete(req: &ChatRequest, request_id: &str, created: u64) -> (Bytes, Usage) {
    let a = answer(req);
    let n = req.n.unwrap_or(1).max(1);
    let choices = (0..n)
        .map(|i| Choice {
            index: i,
            message: AssistantMessage {
                role: "assistant",
                content: a.text.clone(),
                refusal: None,
                annotations: Vec::new(),
                reasoning_content: None,
                thinking_blocks: None,
                tool_calls: a.call.as_ref().map(|(name, args)| {
                    vec![ToolCall {
                        id: call_id(request_id, i),
                        kind: "function".to_owned(),
                        function: FunctionCall {
                            name: name.clone(),
                            arguments: args.clone(),
                        },
                    }]
                }),
            },
            logprobs: None,
            finish_reason: a.finish,
        })
        .collect();
    let mut u = usage(&a);
    u.completion_tokens *= u64::from(n);
    u.total_tokens = u.prompt_tokens + u.completion_tokens;
    let body = ChatCompletion {
        id: format!("chatcmpl-{request_id}"),
        object: "chat.completion",
        created,
        model: "echo".to_owned(),
        choices,
        usage: u,
        service_tier: None,
        system_fingerprint: None,
    };
    let usage = body.usage.clone();
    (
        Bytes::from(serde_json::to_vec(&body).unwrap_or_default()),
        usage,
    )
}

/// The whole stream, one chunk per word, `[DONE]` included, and its usage.
pub fn stream(req: &ChatRequest, request_id: &str, created: u64) -> (Bytes, Usage) {
    let a = answer(req);
    let n = req.n.unwrap_or(1).max(1);
    let mut out = BytesMut::new();
    let chunk = |choices: Vec<ChunkChoice>, usage: Option<Usage>| ChatChunk {
        id: format!("chatcmpl-{request_id}"),
        object: "chat.completion.chunk",
        created,
        model: "echo".to_owned(),
        service_tier: None,
        system_fingerprint: None,
        choices,
        usage: usage.map(Some),
    };
    let mut emit = |c: ChatChunk| {
        let json = serde_json::to_vec(&c).unwrap_or_default();
        jusinfer_sse::encode(None, &json, &mut out);
    };
    let delta_choice = |i: u32, delta: Delta, finish: Option<&'static str>| ChunkChoice {
        index: i,
        delta,
        logprobs: None,
        finish_reason: finish,
    };
    for i in 0..n {
        emit(chunk(
            vec![delta_choice(
                i,
                Delta {
                    role: Some("assistant"),
                    content: Some(String::new()),
                    ..Delta::default()
                },
                None,
            )],
            None,
        ));
        if let Some(text) = &a.text {
            for word in text.split_inclusive(' ') {
                emit(chunk(
                    vec![delta_choice(
                        i,
                        Delta {
                            content: Some(word.to_owned()),
                            ..Delta::default()
                        },
                        None,
                    )],
                    None,
                ));
            }
        }
        if let Some((name, args)) = &a.call {
            let first = ToolCallDelta {
                index: 0,
                id: Some(call_id(request_id, i)),
                kind: Some("function"),
                function: FunctionDelta {
                    name: Some(name.clone()),
                    arguments: String::new(),
                },
            };
            emit(chunk(
                vec![delta_choice(
                    i,
                    Delta {
                        tool_calls: Some(vec![first]),
                        ..Delta::default()
                    },
                    None,
                )],
                None,
            ));
            let chars: Vec<char> = args.chars().collect();
            for piece in chars.chunks(8) {
                let frag = ToolCallDelta {
                    index: 0,
                    id: None,
                    kind: None,
                    function: FunctionDelta {
                        name: None,
                        arguments: piece.iter().collect(),
                    },
                };
                emit(chunk(
                    vec![delta_choice(
                        i,
                        Delta {
                            tool_calls: Some(vec![frag]),
                            ..Delta::default()
                        },
                        None,
                    )],
                    None,
                ));
            }
        }
        emit(chunk(
            vec![delta_choice(i, Delta::default(), Some(a.finish))],
            None,
        ));
    }
    if req.wants_stream_usage() {
        let mut u = usage(&a);
        u.completion_tokens *= u64::from(n);
        u.total_tokens = u.prompt_tokens + u.completion_tokens;
        emit(chunk(Vec::new(), Some(u)));
    }
    out.extend_from_slice(b"data: [DONE]\n\n");
    let mut u = usage(&a);
    u.completion_tokens *= u64::from(n);
    u.total_tokens = u.prompt_tokens + u.completion_tokens;
    (out.freeze(), u)
}

/// Deterministic embeddings: 16 dimensions derived from the input's bytes, unit length.
/// Runs an answer echo made whole (`stream`'s bytes) through a client-dialect stream
/// machine, as the stream loop would; the machine is kept for its result.
pub fn translate_whole<T: jusinfer_translate::StreamTranslator>(
    machine: &mut T,
    bytes: &[u8],
) -> Result<bytes::Bytes, crate::error::GatewayError> {
    let bad = |e: jusinfer_translate::StreamError| crate::error::GatewayError::internal(e.message);
    let mut d = jusinfer_sse::Decoder::new();
    d.push(bytes);
    let mut out = Vec::new();
    while let Ok(Some(ev)) = d.next_event() {
        machine.push(&ev, &mut out).map_err(bad)?;
    }
    for ev in d.finish().unwrap_or_default() {
        machine.push(&ev, &mut out).map_err(bad)?;
    }
    machine.finish(&mut out).map_err(bad)?;
    Ok(out.concat().into())
}

pub fn embeddings(inputs: &[String]) -> (Vec<Vec<f64>>, u64) {
    let mut tokens = 0;
    let vecs = inputs
        .iter()
        .map(|s| {
            tokens += count_tokens(s).max(1);
            let mut v = [0f64; 16];
            for (i, b) in s.bytes().enumerate() {
                v[(i + usize::from(b)) % 16] += f64::from(b) / 255.0;
            }
            let norm = v.iter().map(|x| x * x).sum::<f64>().sqrt();
            v.iter()
                .map(|x| if norm > 0.0 { x / norm } else { 0.0 })
                .collect()
        })
        .collect();
    (vecs, tokens)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(v: Value) -> ChatRequest {
        serde_json::from_value(v).expect("valid request")
    }

    #[test]
    fn echoes_last_user_message_with_max_tokens_and_stop() {
        let r = req(
            json!({"model":"echo","messages":[{"role":"user","content":"one two three four"}],"max_tokens":2}),
        );
        let v: Value = serde_json::from_slice(&complete(&r, "r1", 0).0).expect("json");
        assert_eq!(v["choices"][0]["message"]["content"], "one two");
        assert_eq!(v["choices"][0]["finish_reason"], "length");
        assert_eq!(v["usage"]["completion_tokens"], 2);
        let r = req(
            json!({"model":"echo","messages":[{"role":"user","content":"alpha beta STOP gamma"}],"stop":["STOP"]}),
        );
        let v: Value = serde_json::from_slice(&complete(&r, "r1", 0).0).expect("json");
        assert_eq!(v["choices"][0]["message"]["content"], "alpha beta ");
        assert_eq!(v["choices"][0]["finish_reason"], "stop");
    }

    #[test]
    fn forced_tool_arguments_fit_the_schema() {
        let r = req(
            json!({"model":"echo","messages":[{"role":"user","content":"hi"}],
            "tools":[{"type":"function","function":{"name":"f","parameters":{"type":"object","properties":{
                "city":{"type":"string"},"n":{"type":"integer","minimum":3},"unit":{"enum":["c","f"]},
                "tags":{"type":"array","items":{"type":"string"}}},"required":["city"]}}}],
            "tool_choice":"required"}),
        );
        let v: Value = serde_json::from_slice(&complete(&r, "r1", 0).0).expect("json");
        let call = &v["choices"][0]["message"]["tool_calls"][0];
        assert_eq!(call["function"]["name"], "f");
        let args: Value =
            serde_json::from_str(call["function"]["arguments"].as_str().expect("string"))
                .expect("args json");
        assert_eq!(args, json!({"city":"hi","n":3,"unit":"c","tags":["hi"]}));
        assert_eq!(v["choices"][0]["finish_reason"], "tool_calls");
    }

    #[test]
    fn json_mode_returns_json() {
        let r = req(
            json!({"model":"echo","messages":[{"role":"user","content":"x"}],"response_format":{"type":"json_object"}}),
        );
        let v: Value = serde_json::from_slice(&complete(&r, "r1", 0).0).expect("json");
        let content: Value =
            serde_json::from_str(v["choices"][0]["message"]["content"].as_str().expect("s"))
                .expect("parses");
        assert_eq!(content, json!({"echo":"x"}));
    }
}
