//! The Amazon Bedrock side of the simulator: `POST /model/{modelId}/converse` and
//! `/converse-stream`, replaying the recorded Bedrock traffic (`fixtures/bedrock/`): JSON
//! answers verbatim, streams as the recorded binary event streams, errors with their
//! `x-amzn-ErrorType`. Like Bedrock it wants credentials (a bearer Bedrock API key, or a
//! SigV4 `authorization` the tests re-sign with botocore) and records each request with
//! its path exactly as sent and its body's bytes (`x-sim-raw-body`, base64).
//!
//! InvokeModel (`/invoke`, `/invoke-with-response-stream`) answers Claude bodies as
//! Bedrock wants them (`anthropic_version: bedrock-2023-05-31`, no `model` or `stream`,
//! else a 400 like Bedrock's) with the recorded Claude answers (the tool round trip when
//! the body has tools); `/count-tokens` takes `input.invokeModel` or `input.converse`.
//!
//! `fast` is the benchmarks' fixed answer.
//!
//! `skewed` answers as a Bedrock whose clock is an hour ahead: a signature more than five
//! minutes from its time is refused (403 `InvalidSignatureException`, its `Date` header
//! showing its time), as Bedrock refuses it.
//!
//! Embedding models (`amazon.titan-embed-text-*`, `cohere.embed-*`) take their bodies as
//! AWS documents them (no recording has them) and answer deterministic unit vectors
//! (Titan: 1024 floats, or `dimensions`; Cohere: 1024) with Titan's token count.
//!
//! AWS's credential sources, for the gateway's standard chain: the ECS container endpoint
//! (`/_aws/ecs`, `AWS_CONTAINER_CREDENTIALS_FULL_URI`), EC2 instance metadata (IMDSv2 under
//! `/latest/`, `AWS_EC2_METADATA_SERVICE_ENDPOINT`) and STS `AssumeRoleWithWebIdentity`
//! (`/_aws/sts`, `AWS_ENDPOINT_URL_STS`): temporary keys `ASIA…` with the session token
//! `SIMSESSIONTOKEN-<source>`, expiring in an hour (`?expires_in=` seconds on the ECS URI).
//!
//! The `probe` model answers what `jusinfer check` asks through a Bedrock route with the
//! recorded Converse answers fitted to the probe's tool (its name, a value of its schema),
//! streams framed from the same answer.
//!
//! Converse models (the id's last dotted part): `nova-text` (any other id too), `nova-tools` (the parallel tool round trip: the
//! second turn once the request carries tool results), `nova-length`, `nova-filter`,
//! `claude-reasoning` (reasoning with tool use, two turns), `claude-redacted`,
//! `claude-cache`, `claude-text-tool` (also `text-tool`, for a non-Claude id); `invalid` (400), `expired` (403), `throttle` (429).

use axum::body::Body;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, Uri};
use axum::response::Response;
use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use bytes::Bytes;
use serde_json::Value;

use crate::fixtures;
use crate::server::{record, SimState};

fn error(status: u16, kind: &str, message: &str) -> Response {
    Response::builder()
        .status(status)
        .header("content-type", "application/json")
        .header(
            "x-amzn-ErrorType",
            format!("{kind}:http://internal.amazon.com/coral/com.amazon.bedrock/"),
        )
        .header("x-amzn-RequestId", "sim-request-id")
        .body(Body::from(
            serde_json::json!({ "message": message }).to_string(),
        ))
        .unwrap_or_default()
}

/// A recorded exchange's answer: status, content type, Amazon's headers, body.
fn recorded(file: &str, turn: usize) -> Response {
    let fx = match fixtures::json(&format!("bedrock/{file}")) {
        Ok(v) => v,
        Err(e) => return error(500, "InternalServerException", &format!("sim: {e:#}")),
    };
    let ex = if fx.is_array() { &fx[turn] } else { &fx };
    let r = &ex["response"];
    let body = match &r["body"] {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    };
    let mut b = Response::builder()
        .status(r["status"].as_u64().unwrap_or(500) as u16)
        .header("content-type", "application/json")
        .header("x-amzn-RequestId", "sim-request-id");
    for (k, v) in r["headers"].as_object().into_iter().flatten() {
        if k.eq_ignore_ascii_case("x-amzn-errortype") {
            if let Some(v) = v.as_str() {
                b = b.header("x-amzn-ErrorType", v);
            }
        }
    }
    b.body(Body::from(body)).unwrap_or_default()
}

fn stream(stem: &str) -> Response {
    match fixtures::read(&format!("bedrock/{stem}.eventstream")) {
        Ok(bytes) => Response::builder()
            .status(200)
            .header("content-type", "application/vnd.amazon.eventstream")
            .header("x-amzn-RequestId", "sim-request-id")
            .body(Body::from(bytes))
            .unwrap_or_default(),
        Err(e) => error(500, "InternalServerException", &format!("sim: {e:#}")),
    }
}

/// `POST /model/{modelId}/{op}`.
pub async fn model(
    State(state): State<SimState>,
    Path((model, op)): Path<(String, String)>,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let req: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    if !state.quiet {
        // The exact bytes too (base64, as a pseudo-header): a SigV4 signature covers them.
        let mut seen = headers.clone();
        if let Ok(v) = HeaderValue::from_str(&STANDARD.encode(&body)) {
            seen.insert("x-sim-raw-body", v);
        }
        record(&state, uri.path(), &seen, &req);
    }
    let auth = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    // SigV4 (the tests re-sign the recorded request with botocore to check it).
    let sigv4 = auth.starts_with("AWS4-HMAC-SHA256 Credential=")
        && headers.contains_key("x-amz-date")
        && auth.contains(", SignedHeaders=")
        && auth.contains(", Signature=");
    let bearer = if sigv4 {
        Some("sigv4")
    } else {
        auth.strip_prefix("Bearer ")
    };
    match bearer {
        None => {
            return error(
                403,
                "AccessDeniedException",
                "Authorization header requires 'Credential' parameter.",
            )
        }
        Some(k) if k.is_empty() || k == crate::probe::BAD_KEY => {
            return error(
                403,
                "UnrecognizedClientException",
                "The security token included in the request is invalid.",
            )
        }
        Some(_) => {}
    }
    let scenario = model.rsplit('.').next().unwrap_or(&model);
    match (scenario, op.as_str()) {
        ("invalid", "count-tokens") => {
            return recorded("bedrock_count_tokens_400.exchange.json", 0)
        }
        ("invalid", _) => return recorded("bedrock_400_validation_invalid_model.exchange.json", 0),
        ("expired", _) => return recorded("bedrock_403_expired_token.exchange.json", 0),
        ("throttle", _) => return recorded("bedrock_429_throttling.exchange.json", 0),
        _ => {}
    }
    let stream_op = match op.as_str() {
        "converse" => false,
        "converse-stream" => true,
        "invoke" if model.contains("titan-embed") || model.contains("cohere.embed") => {
            return embed(&model, &req)
        }
        "invoke" | "invoke-with-response-stream" => return invoke(&req, op == "invoke"),
        "count-tokens" => return count_tokens(&req),
        _ => return error(404, "UnknownOperationException", "unknown operation"),
    };
    if req.get("messages").and_then(Value::as_array).is_none() {
        return error(400, "ValidationException", "messages: required");
    }
    // The second turn of a tool round trip: the last user message carries results.
    let answered = req["messages"]
        .as_array()
        .and_then(|m| m.last())
        .and_then(|m| m["content"].as_array())
        .is_some_and(|c| c.iter().any(|b| b.get("toolResult").is_some()));
    let turn = usize::from(answered);
    if scenario == "probe" {
        return probe(&req, answered, stream_op);
    }
    if scenario == "fast" && !stream_op {
        // The benchmarks' fixed answer (the same text and usage as the other kinds').
        return Response::builder()
            .status(200)
            .header("content-type", "application/json")
            .header("x-amzn-RequestId", "sim-request-id")
            .body(Body::from(FAST))
            .unwrap_or_default();
    }
    if scenario == "skewed" {
        if let Some(refused) = skewed(&headers) {
            return refused;
        }
    }
    // The scenario is the id's last dotted part: `us.anthropic.claude-reasoning` is
    // `claude-reasoning` (a Claude id, as the gateway's thinking translation wants).
    match (scenario, stream_op) {
        ("nova-tools", false) => recorded(
            "bedrock_converse_nonstream_parallel_tool_use_roundtrip.exchange.json",
            turn,
        ),
        ("nova-tools", true) if answered => {
            stream("bedrock_converse_stream_parallel_tool_use.turn2")
        }
        ("nova-tools", true) => stream("bedrock_converse_stream_parallel_tool_use.turn1"),
        ("nova-length", _) => recorded(
            "bedrock_converse_nonstream_finish_max_tokens.exchange.json",
            0,
        ),
        ("nova-filter", false) => recorded(
            "bedrock_converse_nonstream_content_filtered.exchange.json",
            0,
        ),
        ("nova-filter", true) => stream("bedrock_converse_stream_content_filtered"),
        ("claude-reasoning", false) => recorded(
            "bedrock_converse_nonstream_reasoning_tool_use_roundtrip.exchange.json",
            turn,
        ),
        ("claude-reasoning", true) => stream("bedrock_converse_stream_reasoning"),
        ("claude-redacted", _) => stream("bedrock_converse_stream_redacted_reasoning"),
        ("claude-cache", false) => {
            recorded("bedrock_converse_nonstream_cache_usage.exchange.json", 1)
        }
        ("claude-cache", true) => stream("bedrock_converse_stream_cache_read"),
        ("claude-text-tool" | "text-tool", _) => {
            stream("bedrock_converse_stream_text_then_tool_use")
        }
        (_, false) => recorded("bedrock_converse_nonstream_text.exchange.json", 0),
        (_, true) => stream("bedrock_converse_stream_text"),
    }
}

/// InvokeModel with a Claude body: checked as Bedrock checks it, answered with the
/// recorded Claude answers.
fn invoke(req: &Value, whole: bool) -> Response {
    let Some(body) = req.as_object() else {
        return error(400, "ValidationException", "Malformed input request");
    };
    for key in ["model", "stream"] {
        if body.contains_key(key) {
            return error(
                400,
                "ValidationException",
                &format!("Malformed input request: #: extraneous key [{key}] is not permitted, please reformat your input and try again."),
            );
        }
    }
    if body.get("anthropic_version").and_then(Value::as_str) != Some("bedrock-2023-05-31") {
        return error(
            400,
            "ValidationException",
            "Malformed input request: #: required key [anthropic_version] not found, please reformat your input and try again.",
        );
    }
    if body.get("max_tokens").and_then(Value::as_u64).is_none()
        || body.get("messages").and_then(Value::as_array).is_none()
    {
        return error(
            400,
            "ValidationException",
            "Malformed input request: #: required key [max_tokens] not found",
        );
    }
    if !whole {
        return stream("bedrock_invoke_with_response_stream_anthropic");
    }
    if body.contains_key("tools") {
        let answered = body["messages"]
            .as_array()
            .and_then(|m| m.last())
            .and_then(|m| m["content"].as_array())
            .is_some_and(|c| c.iter().any(|b| b["type"] == "tool_result"));
        return recorded(
            "bedrock_invoke_anthropic_tool_use_roundtrip.exchange.json",
            usize::from(answered),
        );
    }
    recorded("bedrock_invoke_anthropic_messages.exchange.json", 0)
}

/// CountTokens: `input` holds exactly one of `invokeModel` (its `body` a base64 InvokeModel
/// body) or `converse`.
fn count_tokens(req: &Value) -> Response {
    let input = req.get("input").and_then(Value::as_object);
    let ok = match input {
        Some(i) if i.len() == 1 => match (i.get("invokeModel"), i.get("converse")) {
            (Some(inv), None) => inv["body"]
                .as_str()
                .and_then(|b| STANDARD.decode(b).ok())
                .and_then(|b| serde_json::from_slice::<Value>(&b).ok())
                .is_some_and(|b| {
                    b["anthropic_version"] == "bedrock-2023-05-31" && b["messages"].is_array()
                }),
            (None, Some(c)) => c["messages"].is_array(),
            _ => false,
        },
        _ => false,
    };
    if !ok {
        return error(
            400,
            "ValidationException",
            "The provided request is not valid for CountTokens.",
        );
    }
    recorded("bedrock_count_tokens.exchange.json", 0)
}

/// A recorded exchange's answer body, as JSON.
fn recorded_body(file: &str, turn: usize) -> anyhow::Result<Value> {
    let fx = fixtures::json(&format!("bedrock/{file}"))?;
    let ex = if fx.is_array() { &fx[turn] } else { &fx };
    Ok(match &ex["response"]["body"] {
        Value::String(s) => serde_json::from_str(s)?,
        other => other.clone(),
    })
}

/// The `probe` scenario: see the module docs.
fn probe(req: &Value, answered: bool, stream: bool) -> Response {
    let tools = req["toolConfig"]["tools"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    let forced = req["toolConfig"]["toolChoice"]["tool"]["name"].as_str();
    let schema_of = |name: Option<&str>| {
        tools
            .iter()
            .find(|t| name.is_none_or(|n| t["toolSpec"]["name"] == n))
            .map(|t| t["toolSpec"]["inputSchema"]["json"].clone())
            .unwrap_or_else(|| serde_json::json!({"type": "object"}))
    };
    let max = req["inferenceConfig"]["maxTokens"].as_u64();
    let answer = if let Some(name) = forced {
        // A forced tool (JSON mode): a value of its schema.
        Ok(serde_json::json!({
            "output": {"message": {"role": "assistant", "content": [{"toolUse": {
                "toolUseId": "tooluse_probe_1", "name": name,
                "input": crate::anthropic::sample(&schema_of(Some(name)))}}]}},
            "stopReason": "tool_use",
            "usage": {"inputTokens": 60, "outputTokens": 12, "totalTokens": 72},
            "metrics": {"latencyMs": 5}
        }))
    } else if answered {
        recorded_body(
            "bedrock_converse_nonstream_parallel_tool_use_roundtrip.exchange.json",
            1,
        )
    } else if !tools.is_empty() {
        // The recorded parallel calls, made to the probe's tool with a value of its schema.
        recorded_body(
            "bedrock_converse_nonstream_parallel_tool_use_roundtrip.exchange.json",
            0,
        )
        .map(|mut v| {
            let name = tools[0]["toolSpec"]["name"].clone();
            let input = crate::anthropic::sample(&schema_of(None));
            for b in v["output"]["message"]["content"]
                .as_array_mut()
                .into_iter()
                .flatten()
            {
                if let Some(u) = b.get_mut("toolUse") {
                    u["name"] = name.clone();
                    u["input"] = input.clone();
                }
            }
            v
        })
    } else if max.is_some_and(|m| m <= 16) {
        recorded_body(
            "bedrock_converse_nonstream_finish_max_tokens.exchange.json",
            0,
        )
    } else {
        recorded_body("bedrock_converse_nonstream_text.exchange.json", 0)
    };
    let answer = match answer {
        Ok(a) => a,
        Err(e) => return error(500, "InternalServerException", &format!("sim: {e:#}")),
    };
    let b = Response::builder()
        .status(200)
        .header("x-amzn-RequestId", "sim-request-id");
    if !stream {
        return b
            .header("content-type", "application/json")
            .body(Body::from(answer.to_string()))
            .unwrap_or_default();
    }
    b.header("content-type", "application/vnd.amazon.eventstream")
        .body(Body::from(stream_of(&answer)))
        .unwrap_or_default()
}

/// The `fast` scenario's Converse answer.
const FAST: &str = r#"{"output":{"message":{"role":"assistant","content":[{"text":"Hello from the simulator."}]}},"stopReason":"end_turn","usage":{"inputTokens":9,"outputTokens":5,"totalTokens":14},"metrics":{"latencyMs":1}}"#;

/// A Converse answer as the ConverseStream Bedrock would send for it: `messageStart`,
/// each block (a tool use opened by `contentBlockStart`, its input in one fragment, as
/// Nova sends it), `messageStop`, `metadata`.
fn stream_of(answer: &Value) -> Vec<u8> {
    use serde_json::json;
    let msg = &answer["output"]["message"];
    let mut events = vec![("messageStart", json!({"role": msg["role"]}))];
    for (i, b) in msg["content"].as_array().into_iter().flatten().enumerate() {
        if let Some(t) = b.get("text") {
            events.push((
                "contentBlockDelta",
                json!({"contentBlockIndex": i, "delta": {"text": t}}),
            ));
        } else if let Some(u) = b.get("toolUse") {
            events.push((
                "contentBlockStart",
                json!({"contentBlockIndex": i, "start": {"toolUse": {
                    "toolUseId": u["toolUseId"], "name": u["name"]}}}),
            ));
            events.push((
                "contentBlockDelta",
                json!({"contentBlockIndex": i, "delta": {"toolUse": {"input": u["input"].to_string()}}}),
            ));
        }
        events.push(("contentBlockStop", json!({"contentBlockIndex": i})));
    }
    events.push(("messageStop", json!({"stopReason": answer["stopReason"]})));
    events.push((
        "metadata",
        json!({"usage": answer["usage"], "metrics": answer["metrics"]}),
    ));
    let mut out = Vec::new();
    for (kind, payload) in events {
        use aws_smithy_types::event_stream::{Header, HeaderValue as H, Message};
        let m = Message::new(Bytes::from(payload.to_string()))
            .add_header(Header::new(":message-type", H::String("event".into())))
            .add_header(Header::new(":event-type", H::String(kind.into())))
            .add_header(Header::new(
                ":content-type",
                H::String("application/json".into()),
            ));
        // Writing to a Vec cannot fail.
        let _ = aws_smithy_eventstream::frame::write_message_to(&m, &mut out);
    }
    out
}

/// The secret key of the temporary keys the credential endpoints hand out.
pub const SIM_AWS_SECRET: &str = "simSecretAccessKeyFromTheCredentialChain0";

/// A Bedrock an hour ahead of this clock: see the module docs. `None`: the signature's
/// time is within five minutes of its time.
fn skewed(headers: &HeaderMap) -> Option<Response> {
    use aws_smithy_types::date_time::{DateTime, Format};
    let server = DateTime::from(std::time::SystemTime::now()).secs() + 3600;
    // `x-amz-date` is `20240101T000000Z`.
    let sent = headers
        .get("x-amz-date")
        .and_then(|v| v.to_str().ok())
        .filter(|d| d.len() == 16)
        .and_then(|d| {
            let iso = format!(
                "{}-{}-{}T{}:{}:{}Z",
                &d[0..4],
                &d[4..6],
                &d[6..8],
                &d[9..11],
                &d[11..13],
                &d[13..15]
            );
            DateTime::from_str(&iso, Format::DateTime).ok()
        })
        .map_or(0, |t| t.secs());
    if (server - sent).abs() <= 300 {
        return None;
    }
    let date = DateTime::from_secs(server)
        .fmt(Format::HttpDate)
        .unwrap_or_default();
    let mut r = error(
        403,
        "InvalidSignatureException",
        "Signature expired: the request's date is now earlier than the server's time minus 5 minutes.",
    );
    if let Ok(v) = HeaderValue::from_str(&date) {
        r.headers_mut().insert("date", v);
    }
    Some(r)
}

/// Temporary keys from `source`, expiring in `secs`, as AWS's credential endpoints name
/// their fields.
fn temporary_keys(source: &str, secs: i64) -> Value {
    use aws_smithy_types::date_time::{DateTime, Format};
    let now = DateTime::from(std::time::SystemTime::now()).secs();
    let iso = |t: i64| {
        DateTime::from_secs(t)
            .fmt(Format::DateTime)
            .unwrap_or_default()
    };
    serde_json::json!({
        "Code": "Success",
        "Type": "AWS-HMAC",
        "AccessKeyId": format!("ASIASIM{}", source.to_uppercase()),
        "SecretAccessKey": SIM_AWS_SECRET,
        "Token": format!("SIMSESSIONTOKEN-{source}"),
        "Expiration": iso(now + secs),
        "LastUpdated": iso(now),
    })
}

fn json_ok(v: &Value) -> Response {
    Response::builder()
        .status(200)
        .header("content-type", "application/json")
        .body(Body::from(v.to_string()))
        .unwrap_or_default()
}

/// `GET /_aws/ecs`: the ECS container credentials endpoint.
pub async fn container_credentials(
    State(state): State<SimState>,
    Query(q): Query<std::collections::HashMap<String, String>>,
    uri: Uri,
    headers: HeaderMap,
) -> Response {
    record(&state, uri.path(), &headers, &Value::Null);
    let secs = q
        .get("expires_in")
        .and_then(|s| s.parse().ok())
        .unwrap_or(3600);
    json_ok(&temporary_keys("ecs", secs))
}

const IMDS_TOKEN: &str = "sim-imds-token";

/// `PUT /latest/api/token`: an IMDSv2 session token.
pub async fn imds_token(State(state): State<SimState>, uri: Uri, headers: HeaderMap) -> Response {
    record(&state, uri.path(), &headers, &Value::Null);
    if !headers.contains_key("x-aws-ec2-metadata-token-ttl-seconds") {
        return Response::builder()
            .status(400)
            .body(Body::empty())
            .unwrap_or_default();
    }
    Response::builder()
        .status(200)
        .header("x-aws-ec2-metadata-token-ttl-seconds", "21600")
        .body(Body::from(IMDS_TOKEN))
        .unwrap_or_default()
}

fn imds_refused(headers: &HeaderMap) -> Option<Response> {
    (headers
        .get("x-aws-ec2-metadata-token")
        .and_then(|v| v.to_str().ok())
        != Some(IMDS_TOKEN))
    .then(|| {
        Response::builder()
            .status(401)
            .body(Body::empty())
            .unwrap_or_default()
    })
}

/// `GET /latest/meta-data/iam/security-credentials/`: the instance's role.
pub async fn imds_role(State(state): State<SimState>, uri: Uri, headers: HeaderMap) -> Response {
    record(&state, uri.path(), &headers, &Value::Null);
    if let Some(r) = imds_refused(&headers) {
        return r;
    }
    Response::builder()
        .status(200)
        .body(Body::from("jusinfer-sim-role"))
        .unwrap_or_default()
}

/// `GET /latest/meta-data/iam/security-credentials/{role}`: the role's keys.
pub async fn imds_credentials(
    State(state): State<SimState>,
    Path(role): Path<String>,
    uri: Uri,
    headers: HeaderMap,
) -> Response {
    record(&state, uri.path(), &headers, &Value::Null);
    if let Some(r) = imds_refused(&headers) {
        return r;
    }
    if role != "jusinfer-sim-role" {
        return Response::builder()
            .status(404)
            .body(Body::empty())
            .unwrap_or_default();
    }
    json_ok(&temporary_keys("imds", 3600))
}

/// `POST /_aws/sts`: STS `AssumeRoleWithWebIdentity` (a form body; the answer in STS's
/// XML).
pub async fn sts(
    State(state): State<SimState>,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let form = String::from_utf8_lossy(&body).into_owned();
    record(&state, uri.path(), &headers, &Value::from(form.clone()));
    let field = |name: &str| {
        form.split('&')
            .find_map(|kv| kv.strip_prefix(&format!("{name}=")))
            .map(str::to_owned)
    };
    if field("Action").as_deref() != Some("AssumeRoleWithWebIdentity")
        || field("WebIdentityToken").is_none_or(|t| t.is_empty())
        || field("RoleArn").is_none()
    {
        return Response::builder()
            .status(400)
            .header("content-type", "text/xml")
            .body(Body::from("<ErrorResponse><Error><Type>Sender</Type><Code>InvalidParameterValue</Code><Message>sim: AssumeRoleWithWebIdentity only</Message></Error></ErrorResponse>"))
            .unwrap_or_default();
    }
    let k = temporary_keys("sts", 3600);
    let s = |key: &str| k[key].as_str().unwrap_or_default().to_owned();
    let xml = format!(
        "<AssumeRoleWithWebIdentityResponse xmlns=\"https://sts.amazonaws.com/doc/2011-06-15/\"><AssumeRoleWithWebIdentityResult><Credentials><AccessKeyId>{}</AccessKeyId><SecretAccessKey>{}</SecretAccessKey><SessionToken>{}</SessionToken><Expiration>{}</Expiration></Credentials><SubjectFromWebIdentityToken>system:serviceaccount:default:jusinfer</SubjectFromWebIdentityToken><AssumedRoleUser><Arn>arn:aws:sts::123456789012:assumed-role/jusinfer/sim</Arn><AssumedRoleId>AROASIM:sim</AssumedRoleId></AssumedRoleUser></AssumeRoleWithWebIdentityResult><ResponseMetadata><RequestId>sim-request-id</RequestId></ResponseMetadata></AssumeRoleWithWebIdentityResponse>",
        s("AccessKeyId"),
        s("SecretAccessKey"),
        s("Token"),
        s("Expiration"),
    );
    Response::builder()
        .status(200)
        .header("content-type", "text/xml")
        .body(Body::from(xml))
        .unwrap_or_default()
}

/// A deterministic unit vector for `text`.
fn unit_vector(text: &str, dims: usize) -> Vec<f64> {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in text.bytes() {
        h = (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3);
    }
    let raw: Vec<f64> = (0..dims)
        .map(|i| {
            h = h
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(i as u64 | 1);
            ((h >> 11) as f64 / (1u64 << 53) as f64) - 0.5
        })
        .collect();
    let norm = raw
        .iter()
        .map(|x| x * x)
        .sum::<f64>()
        .sqrt()
        .max(f64::MIN_POSITIVE);
    raw.into_iter().map(|x| x / norm).collect()
}

/// InvokeModel on an embedding model: see the module docs.
fn embed(model: &str, req: &Value) -> Response {
    let bad = |m: &str| {
        error(
            400,
            "ValidationException",
            &format!("Malformed input request: {m}"),
        )
    };
    let Some(body) = req.as_object() else {
        return bad("expected a JSON object");
    };
    if model.contains("titan-embed") {
        let allowed = ["inputText", "dimensions", "normalize", "embeddingTypes"];
        if let Some(k) = body.keys().find(|k| !allowed.contains(&k.as_str())) {
            return bad(&format!("#: extraneous key [{k}] is not permitted"));
        }
        let Some(text) = body.get("inputText").and_then(Value::as_str) else {
            return bad("#: required key [inputText] not found");
        };
        let dims = match body.get("dimensions").map(Value::as_u64) {
            None => 1024,
            Some(Some(d @ (256 | 512 | 1024))) => d as usize,
            Some(_) => return bad("#/dimensions: 256, 512 or 1024"),
        };
        let tokens = text.split_whitespace().count().max(1);
        return json_ok(&serde_json::json!({
            "embedding": unit_vector(text, dims),
            "inputTextTokenCount": tokens,
        }));
    }
    let Some(texts) = body.get("texts").and_then(Value::as_array) else {
        return bad("#: required key [texts] not found");
    };
    if texts.len() > 96 || body.get("input_type").and_then(Value::as_str).is_none() {
        return bad("#: texts (at most 96) and input_type are required");
    }
    let vectors: Vec<Vec<f64>> = texts
        .iter()
        .map(|t| unit_vector(t.as_str().unwrap_or_default(), 1024))
        .collect();
    json_ok(&serde_json::json!({
        "id": "sim-embed",
        "texts": texts,
        "embeddings": vectors,
        "response_type": "embeddings_floats",
    }))
}
