//! Golden tests of the Bedrock Converse → Chat translation over every recorded Converse
//! answer and stream (`fixtures/bedrock/`): what a Chat client reads must be what Bedrock
//! said, in the standard chunk shape, at any split of the binary stream.
#![expect(clippy::expect_used, reason = "test helpers fail loudly")]

use bytes::Bytes;
use jusinfer_sse::eventstream::Decoder as FrameDecoder;
use jusinfer_testkit::fixtures;
use jusinfer_translate::bedrock::stream::{BedrockToChat, Options};
use jusinfer_translate::bedrock::{frame_event, response, usage};
use jusinfer_translate::StreamTranslator;
use jusinfer_wire::bedrock::{ConverseResponse, TokenUsage};
use serde_json::{json, Value};

const STREAMS: &[&str] = &[
    "bedrock_converse_stream_text",
    "bedrock_converse_stream_text_then_tool_use",
    "bedrock_converse_stream_parallel_tool_use.turn1",
    "bedrock_converse_stream_parallel_tool_use.turn2",
    "bedrock_converse_stream_reasoning",
    "bedrock_converse_stream_redacted_reasoning",
    "bedrock_converse_stream_cache_read",
    "bedrock_converse_stream_cache_write",
    "bedrock_converse_stream_content_filtered",
];

fn opts(include_usage: bool) -> Options {
    Options {
        include_usage,
        created: 1,
        model: "bedrock/m".to_owned(),
        id: "req-1".to_owned(),
        price: None,
        json_mode: None,
    }
}

/// The chunks a client receives for `pieces` of a binary stream.
fn run(pieces: &[&[u8]], include_usage: bool) -> Result<(Vec<u8>, BedrockToChat), String> {
    let mut frames = FrameDecoder::new();
    let mut m = BedrockToChat::new(opts(include_usage));
    let mut out: Vec<Bytes> = Vec::new();
    for p in pieces {
        frames.push(p);
        while let Some(f) = frames.next_frame().map_err(|e| e.to_string())? {
            m.push(&frame_event(f)?, &mut out).map_err(|e| e.message)?;
        }
    }
    frames.finish().map_err(|e| e.to_string())?;
    m.finish(&mut out).map_err(|e| e.message)?;
    Ok((out.concat(), m))
}

fn chunks(bytes: &[u8]) -> Vec<Value> {
    let mut d = jusinfer_sse::Decoder::new();
    d.push(bytes);
    let mut out = Vec::new();
    while let Some(ev) = d.next_event().expect("sse") {
        if &ev.data[..] != b"[DONE]" {
            out.push(serde_json::from_slice(&ev.data).expect("json chunk"));
        }
    }
    out
}

/// What the recording says, from botocore's decoding (`.events.json`).
struct Recorded {
    text: String,
    reasoning: String,
    signature: String,
    redacted: Vec<String>,
    /// (id, name, input) per tool block, input fragments joined.
    tools: Vec<(String, String, String)>,
    stop: String,
    usage: Option<TokenUsage>,
}

fn recorded(stem: &str) -> Recorded {
    let events: Vec<Value> = serde_json::from_slice(
        &fixtures::read(&format!("bedrock/{stem}.events.json")).expect("events"),
    )
    .expect("json");
    let mut r = Recorded {
        text: String::new(),
        reasoning: String::new(),
        signature: String::new(),
        redacted: Vec::new(),
        tools: Vec::new(),
        stop: String::new(),
        usage: None,
    };
    for e in &events {
        let p = &e["payload"];
        match e["headers"][":event-type"].as_str().expect("type") {
            "contentBlockStart" => {
                let t = &p["start"]["toolUse"];
                r.tools.push((
                    t["toolUseId"].as_str().expect("id").to_owned(),
                    t["name"].as_str().expect("name").to_owned(),
                    String::new(),
                ));
            }
            "contentBlockDelta" => {
                let d = &p["delta"];
                if let Some(t) = d["text"].as_str() {
                    r.text.push_str(t);
                }
                if let Some(i) = d["toolUse"]["input"].as_str() {
                    r.tools.last_mut().expect("a started tool").2.push_str(i);
                }
                let rc = &d["reasoningContent"];
                if let Some(t) = rc["text"].as_str() {
                    r.reasoning.push_str(t);
                }
                if let Some(s) = rc["signature"].as_str() {
                    r.signature.push_str(s);
                }
                if let Some(x) = rc["redactedContent"].as_str() {
                    r.redacted.push(x.to_owned());
                }
            }
            "messageStop" => r.stop = p["stopReason"].as_str().expect("reason").to_owned(),
            "metadata" => {
                r.usage = Some(serde_json::from_value(p["usage"].clone()).expect("usage"));
            }
            _ => {}
        }
    }
    r
}

#[test]
fn every_recorded_stream_reaches_chat_clients_whole() {
    for stem in STREAMS {
        let raw = fixtures::read(&format!("bedrock/{stem}.eventstream")).expect("fixture");
        let want = recorded(stem);
        let (out, m) = run(&[&raw], true).expect("translates");
        assert!(out.ends_with(b"data: [DONE]\n\n"), "{stem}");
        let cs = chunks(&out);
        assert_eq!(cs[0]["choices"][0]["delta"]["role"], "assistant", "{stem}");
        let mut text = String::new();
        let mut reasoning = String::new();
        let mut finishes = Vec::new();
        let mut calls: Vec<(String, String, String)> = Vec::new();
        let mut thinking: Vec<Value> = Vec::new();
        for c in &cs {
            assert_eq!(c["object"], "chat.completion.chunk", "{stem}");
            assert_eq!(c["id"], "chatcmpl-req-1", "{stem}");
            for ch in c["choices"].as_array().expect("choices") {
                let d = &ch["delta"];
                assert!(d.is_object(), "{stem}: {c}");
                text.push_str(d["content"].as_str().unwrap_or_default());
                reasoning.push_str(d["reasoning_content"].as_str().unwrap_or_default());
                if let Some(f) = ch["finish_reason"].as_str() {
                    finishes.push(f.to_owned());
                }
                for tc in d["tool_calls"].as_array().into_iter().flatten() {
                    let i = tc["index"].as_u64().expect("index") as usize;
                    if i == calls.len() {
                        assert_eq!(tc["type"], "function", "{stem}: first fragment {tc}");
                        calls.push((
                            tc["id"].as_str().expect("id").to_owned(),
                            tc["function"]["name"].as_str().expect("name").to_owned(),
                            String::new(),
                        ));
                    } else {
                        assert!(tc.get("id").is_none() && tc["function"].get("name").is_none());
                    }
                    calls[i]
                        .2
                        .push_str(tc["function"]["arguments"].as_str().expect("args"));
                }
                thinking.extend(
                    d["thinking_blocks"]
                        .as_array()
                        .into_iter()
                        .flatten()
                        .cloned(),
                );
            }
        }
        assert_eq!(text, want.text, "{stem}");
        assert_eq!(reasoning, want.reasoning, "{stem}");
        // Ids, names and arguments as sent (a call sent without input: `{}`).
        let want_tools: Vec<(String, String, String)> = want
            .tools
            .iter()
            .map(|(i, n, a)| {
                (
                    i.clone(),
                    n.clone(),
                    if a.is_empty() { "{}".into() } else { a.clone() },
                )
            })
            .collect();
        assert_eq!(calls, want_tools, "{stem}");
        for (_, _, args) in &calls {
            let v: Value = serde_json::from_str(args).expect("arguments are JSON");
            assert!(v.is_object(), "{stem}");
        }
        let expected_finish = match want.stop.as_str() {
            "tool_use" => "tool_calls",
            "max_tokens" => "length",
            "content_filtered" => "content_filter",
            _ => "stop",
        };
        assert_eq!(finishes, [expected_finish], "{stem}");
        if !want.signature.is_empty() {
            let t = thinking
                .iter()
                .find(|t| t["type"] == "thinking")
                .expect("thinking block");
            assert_eq!(
                t["signature"],
                want.signature.as_str(),
                "{stem}: signature kept"
            );
            assert_eq!(t["thinking"], want.reasoning.as_str(), "{stem}");
        }
        let redacted: Vec<&str> = thinking
            .iter()
            .filter(|t| t["type"] == "redacted_thinking")
            .map(|t| t["data"].as_str().expect("data"))
            .collect();
        assert_eq!(
            redacted, want.redacted,
            "{stem}: redacted reasoning byte for byte"
        );
        // The usage chunk: Bedrock's counts, the prompt with its cache reads and writes.
        let u = want.usage.expect("recorded usage");
        let last = cs.last().expect("usage chunk");
        assert_eq!(last["choices"], json!([]), "{stem}");
        assert_eq!(
            last["usage"]["prompt_tokens"].as_u64(),
            Some(u.input_tokens + u.cache_read() + u.cache_write()),
            "{stem}"
        );
        assert_eq!(
            last["usage"]["completion_tokens"].as_u64(),
            Some(u.output_tokens)
        );
        assert_eq!(
            last["usage"]["prompt_tokens_details"]["cached_tokens"].as_u64(),
            Some(u.cache_read())
        );
        assert_eq!(
            m.usage().map(|x| x.prompt_tokens),
            last["usage"]["prompt_tokens"].as_u64()
        );
        // Without include_usage: the same, less the usage chunk.
        let (plain, _) = run(&[&raw], false).expect("translates");
        assert_eq!(chunks(&plain).len() + 1, cs.len(), "{stem}");
    }
}

#[test]
fn every_split_of_the_binary_stream_gives_the_same_chunks() {
    for stem in [
        "bedrock_converse_stream_text_then_tool_use",
        "bedrock_converse_stream_reasoning",
    ] {
        let raw = fixtures::read(&format!("bedrock/{stem}.eventstream")).expect("fixture");
        let whole = run(&[&raw], true).expect("ok").0;
        for cut in 1..raw.len() {
            let split = run(&[&raw[..cut], &raw[cut..]], true).expect("ok").0;
            assert_eq!(split, whole, "{stem} split at {cut}");
        }
    }
}

#[test]
fn the_recorded_cache_usage_counts_reads_and_writes_in_the_prompt() {
    let u: TokenUsage = serde_json::from_value(json!({
        "inputTokens": 12, "outputTokens": 185, "totalTokens": 1225,
        "cacheReadInputTokenCount": 1028, "cacheWriteInputTokens": 0
    }))
    .expect("usage");
    let c = usage(&u);
    assert_eq!((c.prompt_tokens, c.completion_tokens), (1040, 185));
    assert_eq!(c.prompt_tokens_details.map(|d| d.cached_tokens), Some(1028));
}

fn converse(rel: &str, turn: usize) -> ConverseResponse {
    let v = fixtures::json(&format!("bedrock/{rel}")).expect("fixture");
    let ex = if v.is_array() { &v[turn] } else { &v };
    let body = &ex["response"]["body"];
    match body {
        Value::String(s) => serde_json::from_str(s).expect("converse JSON"),
        other => serde_json::from_value(other.clone()).expect("converse JSON"),
    }
}

#[test]
fn recorded_converse_answers_become_chat_completions() {
    // Text, with Nova's usage.
    let c = response::to_chat(
        &converse("bedrock_converse_nonstream_text.exchange.json", 0),
        "aws/nova",
        "abc-123",
        7,
        None,
    );
    let v = serde_json::to_value(&c).expect("json");
    assert_eq!(v["id"], "chatcmpl-abc-123");
    assert_eq!(v["model"], "aws/nova");
    assert!(v["choices"][0]["message"]["content"]
        .as_str()
        .is_some_and(|t| t.contains("4242")));
    assert_eq!(v["choices"][0]["finish_reason"], "stop");
    assert!(v["usage"]["total_tokens"].as_u64() > Some(0));

    // Parallel tool use: Bedrock's ids, names and inputs as JSON strings.
    let resp = converse(
        "bedrock_converse_nonstream_parallel_tool_use_roundtrip.exchange.json",
        0,
    );
    let c = serde_json::to_value(response::to_chat(&resp, "m", "x", 0, None)).expect("json");
    let calls = c["choices"][0]["message"]["tool_calls"]
        .as_array()
        .expect("calls");
    let recorded: Vec<&jusinfer_wire::bedrock::ToolUse> = resp
        .output
        .message
        .as_ref()
        .expect("message")
        .content
        .iter()
        .filter_map(|b| b.tool_use.as_ref())
        .collect();
    assert_eq!(calls.len(), recorded.len());
    assert!(calls.len() >= 2);
    for (got, want) in calls.iter().zip(&recorded) {
        assert_eq!(got["id"], want.tool_use_id.as_str());
        assert_eq!(got["function"]["name"], want.name.as_str());
        let args: Value = serde_json::from_str(got["function"]["arguments"].as_str().expect("s"))
            .expect("JSON arguments");
        assert_eq!(args, want.input);
    }
    assert_eq!(c["choices"][0]["finish_reason"], "tool_calls");

    // Reasoning with its signature, kept for the next turn.
    let c = serde_json::to_value(response::to_chat(
        &converse(
            "bedrock_converse_nonstream_reasoning_tool_use_roundtrip.exchange.json",
            0,
        ),
        "m",
        "x",
        0,
        None,
    ))
    .expect("json");
    let m = &c["choices"][0]["message"];
    assert!(m["reasoning_content"]
        .as_str()
        .is_some_and(|t| t.starts_with("The user is asking")));
    assert!(m["thinking_blocks"][0]["signature"]
        .as_str()
        .is_some_and(|s| s.starts_with("ErcBCkgIBhAB") && s.ends_with("kGAI=")));
    assert_eq!(m["tool_calls"][0]["function"]["arguments"], "{}");

    // Finish reasons and cache usage.
    for (rel, finish) in [
        (
            "bedrock_converse_nonstream_finish_max_tokens.exchange.json",
            "length",
        ),
        (
            "bedrock_converse_nonstream_content_filtered.exchange.json",
            "content_filter",
        ),
    ] {
        let c = serde_json::to_value(response::to_chat(&converse(rel, 0), "m", "x", 0, None))
            .expect("json");
        assert_eq!(c["choices"][0]["finish_reason"], finish, "{rel}");
    }
    let c = serde_json::to_value(response::to_chat(
        &converse("bedrock_converse_nonstream_cache_usage.exchange.json", 1),
        "m",
        "x",
        0,
        None,
    ))
    .expect("json");
    assert!(c["usage"]["prompt_tokens_details"]["cached_tokens"].as_u64() > Some(0));
}

/// Frames written as Bedrock writes them, for the cases no recording has.
fn frame(message_type: &str, kind: &str, payload: &str) -> Vec<u8> {
    use aws_smithy_eventstream::frame::write_message_to;
    use aws_smithy_types::event_stream::{Header, HeaderValue, Message};
    let type_header = if message_type == "exception" {
        ":exception-type"
    } else {
        ":event-type"
    };
    let m = Message::new(Bytes::from(payload.to_owned()))
        .add_header(Header::new(
            ":message-type",
            HeaderValue::String(message_type.to_owned().into()),
        ))
        .add_header(Header::new(
            type_header,
            HeaderValue::String(kind.to_owned().into()),
        ));
    let mut out = Vec::new();
    write_message_to(&m, &mut out).expect("encodes");
    out
}

#[test]
fn an_exception_mid_stream_ends_it_with_an_error_frame() {
    let mut bytes = frame("event", "messageStart", r#"{"role":"assistant"}"#);
    bytes.extend(frame(
        "event",
        "contentBlockDelta",
        r#"{"contentBlockIndex":0,"delta":{"text":"Hel"}}"#,
    ));
    bytes.extend(frame(
        "exception",
        "throttlingException",
        r#"{"message":"Too many requests, please wait before trying again."}"#,
    ));
    let (out, m) = run(&[&bytes], false).expect("ends cleanly");
    assert!(m.failed() && m.is_complete());
    let cs = chunks(&out);
    let last = cs.last().expect("error frame");
    assert_eq!(last["error"]["code"], "throttlingException");
    assert_eq!(last["error"]["type"], "server_error");
    assert!(last["error"]["message"]
        .as_str()
        .is_some_and(|t| t.contains("Too many requests")));
    assert!(
        !out.ends_with(b"data: [DONE]\n\n"),
        "no success marker after a failure"
    );
}

#[test]
fn a_stream_cut_before_message_stop_is_an_error() {
    let raw = fixtures::read("bedrock/bedrock_converse_stream_text.eventstream").expect("fixture");
    let mut frames = FrameDecoder::new();
    frames.push(&raw);
    let mut all = Vec::new();
    while let Some(f) = frames.next_frame().expect("frames") {
        all.push(f);
    }
    // Everything up to (not including) messageStop.
    let stop = all
        .iter()
        .position(|f| f.kind == jusinfer_sse::eventstream::FrameKind::Event("messageStop".into()))
        .expect("messageStop");
    let mut m = BedrockToChat::new(opts(true));
    let mut out = Vec::new();
    for f in all.into_iter().take(stop) {
        m.push(&frame_event(f).expect("frame"), &mut out)
            .expect("push");
    }
    let e = m.finish(&mut out).expect_err("cut");
    assert!(e.message.contains("messageStop"), "{}", e.message);
}

#[test]
fn an_upstream_opening_blocks_without_end_is_refused_not_held() {
    let mut bytes = frame("event", "messageStart", r#"{"role":"assistant"}"#);
    // Tool blocks 0..=256 opened, none stopped: the 257th is one too many.
    for i in 0..=256 {
        bytes.extend(frame(
            "event",
            "contentBlockStart",
            &format!(
                r#"{{"contentBlockIndex":{i},"start":{{"toolUse":{{"toolUseId":"t{i}","name":"now"}}}}}}"#
            ),
        ));
    }
    let e = run(&[&bytes], false).expect_err("too many open blocks");
    assert!(e.contains("more than 256 content blocks"), "{e}");
    // Opened and stopped one at a time, as many are fine.
    let mut bytes = frame("event", "messageStart", r#"{"role":"assistant"}"#);
    for i in 0..300 {
        bytes.extend(frame(
            "event",
            "contentBlockStart",
            &format!(
                r#"{{"contentBlockIndex":{i},"start":{{"toolUse":{{"toolUseId":"t{i}","name":"now"}}}}}}"#
            ),
        ));
        bytes.extend(frame(
            "event",
            "contentBlockStop",
            &format!(r#"{{"contentBlockIndex":{i}}}"#),
        ));
    }
    bytes.extend(frame(
        "event",
        "messageStop",
        r#"{"stopReason":"tool_use"}"#,
    ));
    let (out, _) = run(&[&bytes], false).expect("closed blocks are not held");
    let calls = chunks(&out)
        .iter()
        .filter(|c| c["choices"][0]["delta"]["tool_calls"][0]["id"].is_string())
        .count();
    assert_eq!(calls, 300);
}

#[test]
fn a_reasoning_block_past_the_held_bound_is_refused() {
    let mut bytes = frame("event", "messageStart", r#"{"role":"assistant"}"#);
    // 17 deltas of 512 KiB (a frame holds at most 1 MiB): past 8 MiB at the 17th.
    let piece = "x".repeat(512 << 10);
    for _ in 0..17 {
        bytes.extend(frame(
            "event",
            "contentBlockDelta",
            &format!(
                r#"{{"contentBlockIndex":0,"delta":{{"reasoningContent":{{"text":"{piece}"}}}}}}"#
            ),
        ));
    }
    let e = run(&[&bytes], false).expect_err("reasoning held past 8 MiB");
    assert!(e.contains("reasoning block is too large"), "{e}");
}

#[test]
fn a_call_streamed_without_input_has_empty_object_arguments() {
    let mut bytes = frame("event", "messageStart", r#"{"role":"assistant"}"#);
    bytes.extend(frame(
        "event",
        "contentBlockStart",
        r#"{"contentBlockIndex":0,"start":{"toolUse":{"toolUseId":"tooluse_a","name":"now"}}}"#,
    ));
    bytes.extend(frame(
        "event",
        "contentBlockDelta",
        r#"{"contentBlockIndex":0,"delta":{"toolUse":{"input":""}}}"#,
    ));
    bytes.extend(frame(
        "event",
        "contentBlockStop",
        r#"{"contentBlockIndex":0}"#,
    ));
    bytes.extend(frame(
        "event",
        "messageStop",
        r#"{"stopReason":"tool_use"}"#,
    ));
    let (out, _) = run(&[&bytes], false).expect("translates");
    let args: String = chunks(&out)
        .iter()
        .flat_map(|c| c["choices"][0]["delta"]["tool_calls"].as_array().cloned())
        .flatten()
        .map(|tc| {
            tc["function"]["arguments"]
                .as_str()
                .unwrap_or_default()
                .to_owned()
        })
        .collect();
    assert_eq!(args, "{}");
    assert!(
        out.ends_with(b"data: [DONE]\n\n"),
        "metadata never came: still done"
    );
}

mod request {
    use super::*;
    use jusinfer_translate::bedrock::request::{chat_to_converse, Options};
    use jusinfer_wire::chat::ChatRequest;

    fn recorded_request(rel: &str, turn: usize) -> Value {
        let v = fixtures::json(&format!("bedrock/{rel}")).expect("fixture");
        let ex = if v.is_array() { &v[turn] } else { &v };
        ex.get("request")
            .map_or_else(|| ex.clone(), |r| r["body"].clone())
    }

    /// What a client may write either way: an empty `system` / `inferenceConfig` /
    /// `stopSequences`, and a tool result's optional `status`.
    fn normalized(mut v: Value) -> Value {
        let o = v.as_object_mut().expect("object");
        if o.get("system").is_some_and(|s| s == &json!([])) {
            o.remove("system");
        }
        if let Some(ic) = o.get_mut("inferenceConfig").and_then(Value::as_object_mut) {
            if ic.get("stopSequences").is_some_and(|s| s == &json!([])) {
                ic.remove("stopSequences");
            }
        }
        if o.get("inferenceConfig").is_some_and(|s| s == &json!({})) {
            o.remove("inferenceConfig");
        }
        for m in o["messages"].as_array_mut().expect("messages") {
            for b in m["content"].as_array_mut().expect("content") {
                if let Some(tr) = b.get_mut("toolResult").and_then(Value::as_object_mut) {
                    tr.remove("status");
                }
            }
        }
        v
    }

    fn translate(chat: Value, model: &str) -> Value {
        let req: ChatRequest = serde_json::from_value(chat).expect("chat request");
        let t = chat_to_converse(
            &req,
            &Options {
                model,
                present_fields: &[],
            },
        )
        .expect("translates");
        assert!(t.dropped.is_empty(), "{:?}", t.dropped);
        converse_json(&t)
    }

    const SECRET_PARAMS: &str = r#"{"properties": {"password": {"title": "Password", "type": "string"}}, "required": ["password"], "additionalProperties": false, "type": "object"}"#;

    #[test]
    fn a_parallel_tool_round_trip_is_the_recorded_converse_body() {
        let params: Value = serde_json::from_str(SECRET_PARAMS).expect("json");
        let chat = json!({
            "model": "aws/amazon.nova-micro-v1:0",
            "max_tokens": 4096,
            "messages": [
                {"role": "system", "content": "Use parallel tool calling."},
                {"role": "user", "content": "Please retrieve the secrets associated with each of these passwords: mellon,radiance"},
                {"role": "assistant", "content": "<thinking> I need to retrieve secrets associated with the passwords \"mellon\" and \"radiance\". To do this, I will need to call the `secret_retrieval_tool` twice, once for each password. I will provide the password argument for each call.</thinking>\n",
                 "tool_calls": [
                    {"id": "tooluse_nz0CoSg6TyuVDvWTCaatSw", "type": "function", "function": {"name": "secret_retrieval_tool", "arguments": "{\"password\": \"mellon\"}"}},
                    {"id": "tooluse_KBNwKhm1RwK4iTLuHbyOtg", "type": "function", "function": {"name": "secret_retrieval_tool", "arguments": "{\"password\": \"radiance\"}"}}]},
                {"role": "tool", "tool_call_id": "tooluse_nz0CoSg6TyuVDvWTCaatSw", "content": "Welcome to Moria!"},
                {"role": "tool", "tool_call_id": "tooluse_KBNwKhm1RwK4iTLuHbyOtg", "content": "Life before Death"}
            ],
            "tools": [{"type": "function", "function": {"name": "secret_retrieval_tool", "description": "A tool that requires a password to retrieve a secret.", "parameters": params}}]
        });
        assert_eq!(
            normalized(translate(chat, "amazon.nova-micro-v1:0")),
            normalized(recorded_request(
                "bedrock_converse_nonstream_parallel_tool_use_roundtrip.exchange.json",
                1
            ))
        );
    }

    #[test]
    fn reasoning_goes_back_with_its_signature() {
        let recorded = recorded_request(
            "bedrock_converse_nonstream_reasoning_tool_use_roundtrip.exchange.json",
            1,
        );
        let rt = &recorded["messages"][1]["content"][0]["reasoningContent"]["reasoningText"];
        let chat = json!({
            "model": "aws/x",
            "thinking": {"type": "enabled", "budget_tokens": 1024},
            "messages": [
                {"role": "user", "content": "What is the largest city in the user country?"},
                {"role": "assistant", "content": "I'll need to check what country you're from to answer that question.",
                 "thinking_blocks": [{"type": "thinking", "thinking": rt["text"], "signature": rt["signature"]}],
                 "tool_calls": [{"id": "tooluse_W9DaUFg4Tj2cRPpndqxWSg", "type": "function", "function": {"name": "get_user_country", "arguments": "{}"}}]},
                {"role": "tool", "tool_call_id": "tooluse_W9DaUFg4Tj2cRPpndqxWSg", "content": "Mexico"}
            ],
            "tools": [{"type": "function", "function": {"name": "get_user_country", "parameters": {"additionalProperties": false, "properties": {}, "type": "object"}}}]
        });
        assert_eq!(
            normalized(translate(
                chat,
                "us.anthropic.claude-3-7-sonnet-20250219-v1:0"
            )),
            normalized(recorded)
        );
    }

    #[test]
    fn tool_choice_and_a_cache_point_as_recorded() {
        let any = recorded_request(
            "bedrock_converse_nonstream_tool_choice_any.exchange.json",
            0,
        );
        let tools: Vec<Value> = any["toolConfig"]["tools"]
            .as_array()
            .expect("tools")
            .iter()
            .map(|t| {
                let s = &t["toolSpec"];
                json!({"type": "function", "function": {"name": s["name"], "description": s["description"], "parameters": s["inputSchema"]["json"]}})
            })
            .collect();
        let chat = json!({
            "model": "m", "tool_choice": "required", "tools": tools,
            "messages": [
                {"role": "system", "content": "You are a helpful chatbot."},
                {"role": "user", "content": "What was the temperature in London 1st January 2022?"}
            ]
        });
        assert_eq!(
            normalized(translate(chat, "us.amazon.nova-micro-v1:0")),
            normalized(any)
        );

        let named = recorded_request(
            "bedrock_converse_nonstream_content_filtered.exchange.json",
            0,
        );
        let s = &named["toolConfig"]["tools"][0]["toolSpec"];
        let chat = json!({
            "model": "m", "max_tokens": 4096,
            "tool_choice": {"type": "function", "function": {"name": s["name"]}},
            "tools": [{"type": "function", "function": {"name": s["name"], "description": s["description"], "parameters": s["inputSchema"]["json"]}}],
            "messages": [
                {"role": "system", "content": named["system"][0]["text"]},
                {"role": "user", "content": named["messages"][0]["content"][0]["text"]}
            ]
        });
        assert_eq!(
            normalized(translate(chat, "amazon.nova-micro-v1:0")),
            normalized(named)
        );

        let cached = recorded_request("bedrock_converse_stream_cache_write.request.json", 0);
        let chat = json!({
            "model": "m", "temperature": 0.7, "top_p": 0.9, "max_tokens": 1000,
            "messages": [
                {"role": "system", "content": [{"type": "text", "text": cached["system"][0]["text"], "cache_control": {"type": "ephemeral"}}]},
                {"role": "user", "content": "What is a service"}
            ]
        });
        assert_eq!(
            normalized(translate(chat, "anthropic.claude")),
            normalized(cached)
        );
    }

    #[test]
    fn tool_history_without_tools_goes_as_text_and_roles_alternate() {
        let chat = json!({
            "model": "m", "tool_choice": "none",
            "tools": [{"type": "function", "function": {"name": "f", "parameters": {"type": "object"}}}],
            "messages": [
                {"role": "user", "content": "a"},
                {"role": "user", "content": [{"type": "text", "text": "b"}, {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0KGgo="}}]},
                {"role": "assistant", "tool_calls": [{"id": "call_1", "type": "function", "function": {"name": "f", "arguments": "{\"x\":1}"}}]},
                {"role": "tool", "tool_call_id": "call_1", "content": "42"}
            ]
        });
        let body = translate(chat, "amazon.nova-pro-v1:0");
        assert!(body.get("toolConfig").is_none());
        let m = body["messages"].as_array().expect("messages");
        let roles: Vec<&str> = m
            .iter()
            .map(|m| m["role"].as_str().expect("role"))
            .collect();
        assert_eq!(roles, ["user", "assistant", "user"]);
        assert_eq!(
            m[0]["content"][2]["image"],
            json!({"format": "png", "source": {"bytes": "iVBORw0KGgo="}})
        );
        assert_eq!(m[1]["content"][0]["text"], "[called tool f with {\"x\":1}]");
        assert_eq!(m[2]["content"][0]["text"], "[f returned: 42]");
        // A URL image cannot be sent: a 400 naming the part.
        let req: ChatRequest = serde_json::from_value(json!({"model": "m", "messages": [
            {"role": "user", "content": [{"type": "image_url", "image_url": {"url": "https://x/y.png"}}]}]}))
        .expect("chat");
        let e = chat_to_converse(&req, &Options::default()).expect_err("refused");
        assert_eq!(e.param.as_deref(), Some("messages[0].content[0].image_url"));
    }

    #[test]
    fn claude_thinking_follows_claudes_rules_and_other_models_drop_it() {
        let chat = json!({
            "model": "m", "max_tokens": 1000, "temperature": 1.5, "top_p": 0.9,
            "reasoning_effort": "high", "tool_choice": "required",
            "tools": [{"type": "function", "function": {"name": "f", "parameters": {"type": "object"}}}],
            "messages": [{"role": "user", "content": "hi"}]
        });
        let req: ChatRequest = serde_json::from_value(chat.clone()).expect("chat");
        let t = chat_to_converse(
            &req,
            &Options {
                model: "us.anthropic.claude-sonnet-4-5-20250929-v1:0",
                present_fields: &[],
            },
        )
        .expect("translates");
        let b = &converse_json(&t);
        assert_eq!(
            b["additionalModelRequestFields"]["thinking"]["budget_tokens"],
            24576
        );
        assert_eq!(
            b["inferenceConfig"]["maxTokens"], 25576,
            "the budget comes on top"
        );
        assert!(b["inferenceConfig"].get("temperature").is_none());
        assert!(b["inferenceConfig"].get("topP").is_none());
        assert_eq!(b["toolConfig"]["toolChoice"], json!({"auto": {}}));
        for d in ["temperature", "top_p", "tool_choice"] {
            assert!(t.dropped.iter().any(|x| x == d), "{d}: {:?}", t.dropped);
        }
        // Nova: no thinking field; temperature passes as sent.
        let t = chat_to_converse(
            &req,
            &Options {
                model: "amazon.nova-pro-v1:0",
                present_fields: &[],
            },
        )
        .expect("translates");
        assert!(converse_json(&t)
            .get("additionalModelRequestFields")
            .is_none());
        assert_eq!(converse_json(&t)["inferenceConfig"]["maxTokens"], 1000);
        assert_eq!(
            converse_json(&t)["toolConfig"]["toolChoice"],
            json!({"any": {}})
        );
        assert!(t.dropped.iter().any(|x| x == "reasoning_effort"));
    }

    #[test]
    fn call_arguments_and_json_results_go_as_the_client_wrote_them() {
        let chat = |args: &str| {
            json!({
                "model": "m",
                "tools": [{"type": "function", "function": {"name": "f"}}],
                "messages": [
                    {"role": "user", "content": "a"},
                    {"role": "assistant", "tool_calls": [
                        {"id": "c1", "type": "function", "function": {"name": "f", "arguments": args}},
                        {"id": "c2", "type": "function", "function": {"name": "f", "arguments": ""}}]},
                    {"role": "tool", "tool_call_id": "c1", "content": " {\"t\": [1, 2.50]} "},
                    {"role": "tool", "tool_call_id": "c2", "content": [
                        {"type": "text", "text": "{\"a\":"}, {"type": "text", "text": " true}"}]},
                    {"role": "tool", "tool_call_id": "c1", "content": "[1, 2]"},
                    {"role": "tool", "tool_call_id": "c1", "content": "{oops"}
                ]
            })
        };
        let req: ChatRequest = serde_json::from_value(chat(" { \"x\" : 1 } ")).expect("chat");
        let t = chat_to_converse(&req, &Options::default()).expect("translates");
        let wire = String::from_utf8(serde_json::to_vec(&t.body).expect("json")).expect("utf-8");
        // The arguments as written (no re-encoding), `""` as `{}`; a tool spec without
        // parameters takes an empty object schema.
        assert!(wire.contains(r#""input":{ "x" : 1 }"#), "{wire}");
        let b = converse_json(&t);
        let m = &b["messages"];
        assert_eq!(m[1]["content"][1]["toolUse"]["input"], json!({}));
        assert_eq!(
            b["toolConfig"]["tools"][0]["toolSpec"]["inputSchema"]["json"],
            json!({"type": "object", "properties": {}})
        );
        // Results: an object (one string or parts joined) as `json`, anything else as text.
        let results: Vec<&Value> = m[2]["content"]
            .as_array()
            .expect("content")
            .iter()
            .map(|b| &b["toolResult"]["content"][0])
            .collect();
        assert_eq!(
            results,
            [
                &json!({"json": {"t": [1, 2.5]}}),
                &json!({"json": {"a": true}}),
                &json!({"text": "[1, 2]"}),
                &json!({"text": "{oops"}),
            ]
        );
        // Arguments that are not an object are refused, naming the call.
        for bad in ["[1]", "{oops", "3"] {
            let req: ChatRequest = serde_json::from_value(chat(bad)).expect("chat");
            let e = chat_to_converse(&req, &Options::default()).expect_err(bad);
            assert_eq!(
                e.param.as_deref(),
                Some("messages[1].tool_calls[0].function.arguments")
            );
        }
    }

    #[test]
    fn history_with_tool_calls_but_no_function_tools_goes_as_text() {
        let req: ChatRequest = serde_json::from_value(json!({
            "model": "m",
            "tools": [{"type": "web_search"}],
            "messages": [
                {"role": "user", "content": "a"},
                {"role": "assistant", "tool_calls": [{"id": "c1", "type": "function", "function": {"name": "f", "arguments": "{}"}}]},
                {"role": "tool", "tool_call_id": "c1", "content": "ok"}
            ]
        }))
        .expect("chat");
        let t = chat_to_converse(&req, &Options::default()).expect("translates");
        assert!(converse_json(&t).get("toolConfig").is_none());
        assert_eq!(
            converse_json(&t)["messages"][1]["content"][0]["text"],
            "[called tool f with {}]"
        );
        assert!(t.dropped.iter().any(|d| d.starts_with("tools[0]")));
    }
}

// ---- InvokeModelWithResponseStream (Claude's own Messages events in `chunk` frames) ----

const INVOKE_STREAM: &str = "bedrock_invoke_with_response_stream_anthropic";

/// The Anthropic events botocore read from the recorded invoke stream, as SSE.
fn invoke_events_as_sse() -> Vec<u8> {
    use base64::Engine as _;
    let events: Value =
        fixtures::json(&format!("bedrock/{INVOKE_STREAM}.events.json")).expect("fixture");
    let mut sse = Vec::new();
    for e in events.as_array().expect("array") {
        assert_eq!(e["headers"][":event-type"], "chunk");
        let data = base64::engine::general_purpose::STANDARD
            .decode(e["payload"]["bytes"].as_str().expect("bytes"))
            .expect("base64");
        let v: Value = serde_json::from_slice(&data).expect("json");
        sse.extend(jusinfer_sse::encode_bytes(v["type"].as_str(), &data));
    }
    sse
}

/// `pieces` of an invoke stream through `m`.
fn run_with<M: StreamTranslator>(pieces: &[&[u8]], m: &mut M) -> Result<Vec<u8>, String> {
    let mut frames = FrameDecoder::new();
    let mut out: Vec<Bytes> = Vec::new();
    for p in pieces {
        frames.push(p);
        while let Some(f) = frames.next_frame().map_err(|e| e.to_string())? {
            m.push(&frame_event(f)?, &mut out).map_err(|e| e.message)?;
        }
    }
    frames.finish().map_err(|e| e.to_string())?;
    m.finish(&mut out).map_err(|e| e.message)?;
    Ok(out.concat())
}

#[test]
fn an_invoke_stream_reaches_a_messages_client_as_the_events_bedrock_carried() {
    use jusinfer_translate::messages::stream::MessagesPassthrough;
    let raw = fixtures::read(&format!("bedrock/{INVOKE_STREAM}.eventstream")).expect("fixture");
    let want = invoke_events_as_sse();
    for split in 0..=raw.len() {
        let mut m = MessagesPassthrough::new();
        let got = run_with(&[&raw[..split], &raw[split..]], &mut m).expect("decodes");
        assert_eq!(
            String::from_utf8_lossy(&got),
            String::from_utf8_lossy(&want),
            "split at {split}"
        );
        assert!(m.is_complete() && !m.failed());
        let u = m.usage().expect("usage");
        assert_eq!((u.prompt_tokens, u.completion_tokens), (17, 15));
    }
}

#[test]
fn an_invoke_stream_reaches_a_chat_client_translated() {
    use jusinfer_translate::anthropic::stream::{AnthropicToChat, Options};
    let raw = fixtures::read(&format!("bedrock/{INVOKE_STREAM}.eventstream")).expect("fixture");
    let mut m = AnthropicToChat::new(Options {
        include_usage: true,
        created: 1,
        json_mode: None,
        price: None,
    });
    let out = run_with(&[&raw], &mut m).expect("decodes");
    let cs = chunks(&out);
    let text: String = cs
        .iter()
        .filter_map(|c| c["choices"][0]["delta"]["content"].as_str())
        .collect();
    assert!(text.contains("4242"), "{text}");
    assert_eq!(cs.last().expect("usage")["usage"]["completion_tokens"], 15);
}

#[test]
fn an_exception_in_an_invoke_stream_is_an_anthropic_error_event() {
    use base64::Engine as _;
    use jusinfer_translate::messages::stream::MessagesPassthrough;
    let start = r#"{"type":"message_start","message":{"id":"msg_bdrk_1","type":"message","role":"assistant","model":"claude","content":[],"stop_reason":null,"stop_sequence":null,"usage":{"input_tokens":5,"output_tokens":1}}}"#;
    let b64 = base64::engine::general_purpose::STANDARD.encode(start);
    let mut bytes = frame(
        "event",
        "chunk",
        &format!(r#"{{"bytes":"{b64}","p":"abc"}}"#),
    );
    bytes.extend(frame(
        "exception",
        "modelStreamErrorException",
        r#"{"message":"The model stopped."}"#,
    ));
    let mut m = MessagesPassthrough::new();
    let out = run_with(&[&bytes], &mut m).expect("ends cleanly");
    assert!(m.failed() && m.is_complete());
    let text = String::from_utf8(out).expect("utf-8");
    let (first, last) = text.split_once("\n\n").expect("two events");
    assert_eq!(first, format!("event: message_start\ndata: {start}"));
    let data = last
        .strip_prefix("event: error\ndata: ")
        .and_then(|l| l.strip_suffix("\n\n"))
        .expect("an SSE error event");
    let e: Value = serde_json::from_str(data).expect("json");
    assert_eq!(e["type"], "error");
    assert_eq!(e["error"]["type"], "api_error");
    assert_eq!(
        e["error"]["message"],
        "modelStreamErrorException: The model stopped."
    );
    // Throttling reads as Anthropic's rate limit.
    let mut m = MessagesPassthrough::new();
    let t = frame(
        "exception",
        "throttlingException",
        r#"{"message":"slow down"}"#,
    );
    let out = run_with(&[&t], &mut m).expect("ends cleanly");
    assert!(String::from_utf8_lossy(&out).contains(r#""type":"rate_limit_error""#));
}

#[test]
fn a_chunk_that_is_not_base64_breaks_the_stream() {
    use jusinfer_translate::messages::stream::MessagesPassthrough;
    let bytes = frame("event", "chunk", r#"{"bytes":"%%%"}"#);
    let mut m = MessagesPassthrough::new();
    let e = run_with(&[&bytes], &mut m).expect_err("broken");
    assert!(e.contains("base64"), "{e}");
}

// ---- JSON mode (a forced tool, as for Anthropic) ----

fn chat_req(v: Value) -> jusinfer_wire::chat::ChatRequest {
    serde_json::from_value(v).expect("chat request")
}

#[test]
fn json_mode_is_a_forced_tool_and_its_input_is_the_answer() {
    use jusinfer_translate::bedrock::request::{chat_to_converse, Options as ReqOptions};
    let schema = json!({"type": "object", "properties": {"answer": {"type": "string"}}, "required": ["answer"]});
    let req = chat_req(
        json!({"model": "m", "messages": [{"role": "user", "content": "Say hello."}],
        "response_format": {"type": "json_schema", "json_schema": {"name": "greeting", "schema": schema}}}),
    );
    let t = chat_to_converse(
        &req,
        &ReqOptions {
            model: "amazon.nova-pro-v1:0",
            present_fields: &[],
        },
    )
    .expect("translates");
    assert_eq!(
        converse_json(&t)["toolConfig"],
        json!({"tools": [{"toolSpec": {"name": "greeting", "description": "Respond with a JSON value matching this schema.",
            "inputSchema": {"json": schema}}}], "toolChoice": {"tool": {"name": "greeting"}}})
    );
    assert!(t.dropped.is_empty(), "{:?}", t.dropped);
    let mode = t.json_mode.clone().expect("json mode");

    // Whole: the tool's input is the content, and the answer is a stop.
    let resp: ConverseResponse = serde_json::from_value(json!({
        "output": {"message": {"role": "assistant", "content": [
            {"toolUse": {"toolUseId": "tooluse_1", "name": "greeting", "input": {"answer": "hello"}}}]}},
        "stopReason": "tool_use", "usage": {"inputTokens": 5, "outputTokens": 3, "totalTokens": 8}}))
    .expect("converse");
    let c = serde_json::to_value(response::to_chat(&resp, "m", "x", 0, Some(&mode))).expect("json");
    assert_eq!(
        c["choices"][0]["message"]["content"],
        r#"{"answer":"hello"}"#
    );
    assert!(c["choices"][0]["message"].get("tool_calls").is_none());
    assert_eq!(c["choices"][0]["finish_reason"], "stop");

    // Streamed: the input fragments are the content, as they come.
    let mut bytes = frame("event", "messageStart", r#"{"role":"assistant"}"#);
    bytes.extend(frame("event", "contentBlockStart",
        r#"{"contentBlockIndex":0,"start":{"toolUse":{"toolUseId":"tooluse_1","name":"greeting"}}}"#));
    for frag in ["", r#"{"answer""#, r#": "hello"}"#] {
        let d = json!({"contentBlockIndex": 0, "delta": {"toolUse": {"input": frag}}});
        bytes.extend(frame("event", "contentBlockDelta", &d.to_string()));
    }
    bytes.extend(frame(
        "event",
        "contentBlockStop",
        r#"{"contentBlockIndex":0}"#,
    ));
    bytes.extend(frame(
        "event",
        "messageStop",
        r#"{"stopReason":"tool_use"}"#,
    ));
    let mut o = opts(false);
    o.json_mode = Some(mode);
    let mut m = BedrockToChat::new(o);
    let out = run_with(&[&bytes], &mut m).expect("stream");
    let cs = chunks(&out);
    let text: String = cs
        .iter()
        .filter_map(|c| c["choices"][0]["delta"]["content"].as_str())
        .collect();
    assert_eq!(text, r#"{"answer": "hello"}"#);
    assert!(cs
        .iter()
        .all(|c| c["choices"][0]["delta"].get("tool_calls").is_none()));
    assert_eq!(
        cs.last().expect("finish")["choices"][0]["finish_reason"],
        "stop"
    );
}

#[test]
fn a_json_mode_schema_that_is_not_an_object_is_wrapped_and_unwrapped() {
    use jusinfer_translate::bedrock::request::{chat_to_converse, Options as ReqOptions};
    let req = chat_req(
        json!({"model": "m", "messages": [{"role": "user", "content": "List."}],
        "tools": [{"type": "function", "function": {"name": "lookup", "parameters": {"type": "object"}}}],
        "response_format": {"type": "json_schema", "json_schema": {"name": "list", "schema": {"type": "array"}}}}),
    );
    let t = chat_to_converse(
        &req,
        &ReqOptions {
            model: "m",
            present_fields: &[],
        },
    )
    .expect("translates");
    // Beside the client's tools: any tool, the client's or JSON mode's.
    assert_eq!(
        converse_json(&t)["toolConfig"]["toolChoice"],
        json!({"any": {}})
    );
    assert_eq!(
        converse_json(&t)["toolConfig"]["tools"][1]["toolSpec"]["inputSchema"]["json"]
            ["properties"]["value"],
        json!({"type": "array"})
    );
    let mode = t.json_mode.expect("json mode");
    assert!(mode.wrapped);
    let mut bytes = frame("event", "messageStart", r#"{"role":"assistant"}"#);
    bytes.extend(frame(
        "event",
        "contentBlockStart",
        r#"{"contentBlockIndex":0,"start":{"toolUse":{"toolUseId":"t","name":"list"}}}"#,
    ));
    bytes.extend(frame(
        "event",
        "contentBlockDelta",
        r#"{"contentBlockIndex":0,"delta":{"toolUse":{"input":"{\"value\": [1, 2]}"}}}"#,
    ));
    bytes.extend(frame(
        "event",
        "contentBlockStop",
        r#"{"contentBlockIndex":0}"#,
    ));
    bytes.extend(frame(
        "event",
        "messageStop",
        r#"{"stopReason":"tool_use"}"#,
    ));
    let mut o = opts(false);
    o.json_mode = Some(mode);
    let mut m = BedrockToChat::new(o);
    let cs = chunks(&run_with(&[&bytes], &mut m).expect("stream"));
    let text: String = cs
        .iter()
        .filter_map(|c| c["choices"][0]["delta"]["content"].as_str())
        .collect();
    assert_eq!(text, "[1,2]");
}

/// A translated Converse request as JSON.
fn converse_json(t: &jusinfer_translate::bedrock::request::Translated<'_>) -> Value {
    serde_json::to_value(&t.body).expect("json")
}
