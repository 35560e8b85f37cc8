//! Golden tests of serving the Messages API from Chat upstreams, over the recorded fixtures:
//! the Anthropic event grammar out of recorded (and derived) OpenAI streams, responses and
//! requests.
#![expect(
    clippy::expect_used,
    clippy::panic,
    reason = "test helpers fail loudly"
)]

use bytes::Bytes;
use jusinfer_sse::Decoder;
use jusinfer_testkit::fixtures;
use jusinfer_testkit::streamify::{streamify, Style};
use jusinfer_translate::messages::request::messages_to_chat;
use jusinfer_translate::messages::response::chat_to_messages;
use jusinfer_translate::messages::stream::{ChatToMessages, Options};
use jusinfer_wire::anthropic::MessageCreateParams;
use serde_json::{json, Map, Value};

fn opts() -> Options {
    Options {
        id: "msg_test".to_owned(),
        model: "claude-sonnet-4-5".to_owned(),
        input_tokens_estimate: 7,
    }
}

/// Feeds `pieces`; returns the Anthropic events (type, data) the client would decode.
fn run(pieces: &[&[u8]]) -> Result<Vec<(String, Value)>, String> {
    let mut d = Decoder::new();
    let mut m = ChatToMessages::new(opts());
    let mut out: Vec<Bytes> = Vec::new();
    for p in pieces {
        d.push(p);
        while let Some(ev) = d.next_event().map_err(|e| e.to_string())? {
            m.push(&ev, &mut out).map_err(|e| e.message)?;
        }
    }
    for ev in d.finish().map_err(|e| e.to_string())? {
        m.push(&ev, &mut out).map_err(|e| e.message)?;
    }
    m.finish(&mut out).map_err(|e| e.message)?;
    let mut d = Decoder::new();
    d.push(&out.concat());
    let mut events = Vec::new();
    while let Some(ev) = d.next_event().map_err(|e| e.to_string())? {
        let data: Value = serde_json::from_slice(&ev.data).map_err(|e| e.to_string())?;
        let kind = ev.event.clone().unwrap_or_default();
        assert_eq!(
            data["type"].as_str(),
            Some(kind.as_str()),
            "event name = data.type"
        );
        events.push((kind, data));
    }
    Ok(events)
}

/// The gateway's pipeline for an OpenAI-shaped upstream: the stream normalizer first
/// (ids, indexes and argument fragments made standard), then the translation.
fn run_normalized(raw: &[u8]) -> Result<Vec<(String, Value)>, String> {
    use jusinfer_translate::chat_stream::{ChatStreamNormalizer, Options as NOpts};
    let mut d = Decoder::new();
    let mut n = ChatStreamNormalizer::new(NOpts {
        include_usage: true,
        id_seed: "seed".to_owned(),
        cost: None,
    });
    let mut out: Vec<Bytes> = Vec::new();
    d.push(raw);
    while let Some(ev) = d.next_event().map_err(|e| e.to_string())? {
        n.push(&ev, &mut out).map_err(|e| e.message)?;
    }
    n.finish(&mut out).map_err(|e| e.message)?;
    run(&[&out.concat()])
}

/// Checks Anthropic's grammar and returns the rebuilt message (as the SDK accumulates it).
fn assemble(events: &[(String, Value)]) -> Value {
    assert_eq!(events.first().map(|e| e.0.as_str()), Some("message_start"));
    assert_eq!(events.iter().filter(|e| e.0 == "message_start").count(), 1);
    assert_eq!(events.last().map(|e| e.0.as_str()), Some("message_stop"));
    let mut msg = events[0].1["message"].clone();
    let mut open: Option<u64> = None;
    let mut partial: Vec<String> = Vec::new();
    for (kind, e) in &events[1..] {
        match kind.as_str() {
            "content_block_start" => {
                assert!(open.is_none(), "blocks never overlap: {e}");
                let i = e["index"].as_u64().expect("index");
                assert_eq!(
                    i as usize,
                    msg["content"].as_array().expect("content").len(),
                    "indexes count up"
                );
                msg["content"]
                    .as_array_mut()
                    .expect("content")
                    .push(e["content_block"].clone());
                partial.push(String::new());
                open = Some(i);
            }
            "content_block_delta" => {
                let i = e["index"].as_u64().expect("index");
                assert_eq!(open, Some(i), "a delta goes to the open block");
                let b = &mut msg["content"][i as usize];
                let d = &e["delta"];
                match d["type"].as_str() {
                    Some("text_delta") => {
                        let t = format!(
                            "{}{}",
                            b["text"].as_str().unwrap_or(""),
                            d["text"].as_str().expect("text")
                        );
                        b["text"] = json!(t);
                    }
                    Some("thinking_delta") => {
                        let t = format!(
                            "{}{}",
                            b["thinking"].as_str().unwrap_or(""),
                            d["thinking"].as_str().expect("t")
                        );
                        b["thinking"] = json!(t);
                    }
                    Some("input_json_delta") => {
                        partial[i as usize].push_str(d["partial_json"].as_str().expect("pj"))
                    }
                    other => panic!("unexpected delta {other:?}"),
                }
            }
            "content_block_stop" => {
                let i = e["index"].as_u64().expect("index");
                assert_eq!(open, Some(i));
                open = None;
                let b = &mut msg["content"][i as usize];
                if b["type"] == "tool_use" && !partial[i as usize].is_empty() {
                    b["input"] =
                        serde_json::from_str(&partial[i as usize]).expect("tool input is JSON");
                }
            }
            "message_delta" => {
                assert!(open.is_none(), "every block is closed before message_delta");
                msg["stop_reason"] = e["delta"]["stop_reason"].clone();
                msg["usage"] = e["usage"].clone();
            }
            "message_stop" | "ping" => {}
            other => panic!("unexpected event {other}"),
        }
    }
    msg
}

#[test]
fn recorded_text_stream_becomes_one_text_block() {
    let raw = fixtures::read("openai-chat/chat_stream_text_with_usage.sse").expect("fixture");
    let events = run(&[&raw]).expect("translates");
    let msg = assemble(&events);
    assert_eq!(msg["content"].as_array().expect("content").len(), 1);
    assert_eq!(msg["content"][0]["type"], "text");
    assert!(!msg["content"][0]["text"].as_str().expect("text").is_empty());
    assert_eq!(msg["stop_reason"], "end_turn");
    assert_eq!(
        events[0].1["message"]["usage"]["input_tokens"], 7,
        "the estimate at the start"
    );
    let u = &msg["usage"];
    assert!(
        u["input_tokens"].as_u64().expect("in") > 0
            && u["output_tokens"].as_u64().expect("out") > 0
    );
}

#[test]
fn every_split_gives_the_same_events() {
    let raw =
        fixtures::read("openai-chat/chat_stream_tool_call_roundtrip.turn1.sse").expect("fixture");
    let whole = run(&[&raw]).expect("whole");
    for at in 0..raw.len() {
        assert_eq!(
            run(&[&raw[..at], &raw[at..]]).expect("split"),
            whole,
            "split at {at}"
        );
    }
}

#[test]
fn recorded_tool_stream_rebuilds_the_call_from_input_json_deltas() {
    let raw =
        fixtures::read("openai-chat/chat_stream_tool_call_roundtrip.turn1.sse").expect("fixture");
    let events = run(&[&raw]).expect("translates");
    assert!(
        events
            .iter()
            .any(|e| e.1["delta"]["type"] == "input_json_delta"),
        "fragments, never dropped"
    );
    let msg = assemble(&events);
    let tool = msg["content"]
        .as_array()
        .expect("content")
        .iter()
        .find(|b| b["type"] == "tool_use")
        .expect("tool_use");
    assert_eq!(
        tool["id"], "toolu_call_ZR5UUuTt3pf61kjwAJIYdVMj",
        "ids in Anthropic's form"
    );
    assert_eq!(tool["name"], "get_capital");
    assert_eq!(tool["input"], json!({"country": "UK"}));
    assert_eq!(msg["stop_reason"], "tool_use");
}

#[test]
fn regression_text_then_parallel_tool_calls_end_with_tool_use_and_one_block_per_call() {
    let v: Value = serde_json::from_slice(
        &fixtures::read("openai-chat/chat_nonstream_parallel_tool_calls.json").expect("fixture"),
    )
    .expect("json");
    let want: Vec<(String, Value)> = v["choices"][0]["message"]["tool_calls"]
        .as_array()
        .expect("calls")
        .iter()
        .map(|c| {
            (
                c["function"]["name"].as_str().expect("name").to_owned(),
                serde_json::from_str(c["function"]["arguments"].as_str().expect("args"))
                    .expect("json args"),
            )
        })
        .collect();
    for style in [
        Style::Standard,
        Style::Whole,
        Style::NoIndex,
        Style::RepeatNames,
        Style::SameIndex,
        Style::Sloppy,
    ] {
        let mut v = v.clone();
        // Text first, then the calls, as many models do; the upstream says `stop`.
        v["choices"][0]["message"]["content"] = json!("Let me look that up.");
        v["choices"][0]["finish_reason"] = json!("stop");
        let frames = streamify(&v, style, true);
        let raw: Vec<u8> = frames.concat();
        let msg = assemble(&run_normalized(&raw).expect("translates"));
        let content = msg["content"].as_array().expect("content");
        assert_eq!(content[0]["type"], "text", "{style:?}");
        assert_eq!(content[0]["text"], "Let me look that up.");
        let got: Vec<(String, Value)> = content[1..]
            .iter()
            .map(|b| {
                assert_eq!(b["type"], "tool_use");
                (
                    b["name"].as_str().expect("name").to_owned(),
                    b["input"].clone(),
                )
            })
            .collect();
        assert_eq!(
            got, want,
            "{style:?}: one block per call, inputs as recorded"
        );
        assert_eq!(msg["stop_reason"], "tool_use", "{style:?}: not end_turn");
    }
}

#[test]
fn reasoning_content_becomes_a_thinking_block_before_the_text() {
    let chunk = |delta: Value, finish: Value| {
        format!(
            "data: {}\n\n",
            json!({"id": "c", "object": "chat.completion.chunk", "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]})
        )
    };
    let raw = [
        chunk(json!({"role": "assistant", "reasoning_content": "Think"}), Value::Null),
        chunk(json!({"reasoning_content": "ing."}), Value::Null),
        chunk(json!({"content": "Answer."}), Value::Null),
        chunk(json!({}), json!("length")),
        "data: {\"id\":\"c\",\"choices\":[],\"usage\":{\"prompt_tokens\":100,\"completion_tokens\":9,\"prompt_tokens_details\":{\"cached_tokens\":60}}}\n\n".to_owned(),
        "data: [DONE]\n\n".to_owned(),
    ]
    .concat();
    let msg = assemble(&run(&[raw.as_bytes()]).expect("translates"));
    assert_eq!(
        msg["content"][0],
        json!({"type": "thinking", "thinking": "Thinking.", "signature": ""})
    );
    assert_eq!(msg["content"][1]["text"], "Answer.");
    assert_eq!(msg["stop_reason"], "max_tokens");
    assert_eq!(
        msg["usage"],
        json!({"input_tokens": 40, "cache_creation_input_tokens": 0, "cache_read_input_tokens": 60, "output_tokens": 9}),
        "input excludes cache reads"
    );
}

#[test]
fn an_upstream_error_ends_the_stream_with_an_error_event() {
    let raw = fixtures::read("openai-chat/chat_stream_text_with_usage.sse").expect("fixture");
    let cut = raw.windows(2).position(|w| w == b"\n\n").expect("an event") + 2;
    let mut bad = raw[..cut].to_vec();
    bad.extend_from_slice(
        b"data: {\"error\":{\"message\":\"overloaded\",\"type\":\"server_error\"}}\n\n",
    );
    let events = run(&[&bad]).expect("translates");
    let last = events.last().expect("events");
    assert_eq!(last.0, "error");
    assert_eq!(last.1["error"]["type"], "api_error");
    assert_eq!(events.iter().filter(|e| e.0 == "message_start").count(), 1);
    assert!(
        run(&[&raw[..cut]]).is_err(),
        "a stream cut before its finish is an error"
    );
}

#[test]
fn nonstreaming_parallel_calls_and_cached_usage() {
    let v: Map<String, Value> = serde_json::from_slice(
        &fixtures::read("openai-chat/chat_nonstream_parallel_tool_calls.json").expect("fixture"),
    )
    .expect("json");
    let m = chat_to_messages(&v, "claude-x", "msg_1");
    assert_eq!(
        (m["id"].as_str(), m["type"].as_str(), m["model"].as_str()),
        (Some("msg_1"), Some("message"), Some("claude-x"))
    );
    let calls = v["choices"][0]["message"]["tool_calls"]
        .as_array()
        .expect("calls");
    let blocks: Vec<&Value> = m["content"]
        .as_array()
        .expect("content")
        .iter()
        .filter(|b| b["type"] == "tool_use")
        .collect();
    assert_eq!(blocks.len(), calls.len());
    for (b, c) in blocks.iter().zip(calls) {
        assert_eq!(b["id"], format!("toolu_{}", c["id"].as_str().expect("id")));
        let args: Value =
            serde_json::from_str(c["function"]["arguments"].as_str().expect("args")).expect("json");
        assert_eq!(b["input"], args);
    }
    assert_eq!(m["stop_reason"], "tool_use");
    let cache =
        fixtures::json("openai-chat/chat_usage_prompt_cache.responses.json").expect("fixture");
    let second: Map<String, Value> =
        serde_json::from_value(cache["responses"][1].clone()).expect("obj");
    let m = chat_to_messages(&second, "m", "msg_2");
    let u = &m["usage"];
    assert_eq!(u["cache_read_input_tokens"], 4012);
    assert_eq!(
        u["input_tokens"].as_u64().expect("in") + 4012,
        second["usage"]["prompt_tokens"].as_u64().expect("p")
    );
}

#[test]
fn recorded_anthropic_request_becomes_a_chat_request() {
    let req: MessageCreateParams = serde_json::from_slice(
        &fixtures::read("anthropic/anthropic_stream_tool_use_roundtrip.turn2.request.json")
            .expect("fixture"),
    )
    .expect("json");
    let t = messages_to_chat(&req, "gpt-4o-mini", false).expect("translates");
    let b = &t.body;
    assert_eq!(b["model"], "gpt-4o-mini");
    assert_eq!(b["stream_options"], json!({"include_usage": true}));
    let msgs = b["messages"].as_array().expect("messages");
    assert_eq!(
        msgs[0],
        json!({"role": "user", "content": "What is the weather in SF?"})
    );
    assert_eq!(msgs[1]["role"], "assistant");
    let call = &msgs[1]["tool_calls"][0];
    assert_eq!(
        call["id"], "018acGYLtfR52q9yDbWaEdQZ",
        "toolu_ is ours: stripped going back"
    );
    assert_eq!(
        serde_json::from_str::<Value>(call["function"]["arguments"].as_str().expect("args"))
            .expect("json"),
        json!({"location": "San Francisco, CA", "units": "f"})
    );
    assert_eq!(msgs[2]["role"], "tool");
    assert_eq!(msgs[2]["tool_call_id"], "018acGYLtfR52q9yDbWaEdQZ");
    assert_eq!(b["tools"][0]["function"]["name"], "get_weather");
    assert_eq!(
        b["tools"][0]["function"]["parameters"],
        req.tools.as_ref().expect("tools")[0]["input_schema"]
    );
}

#[test]
fn claude_code_shaped_request_round_trips_without_loss() {
    let req: MessageCreateParams = serde_json::from_value(json!({
        "model": "claude-sonnet-4-5", "max_tokens": 32000, "stream": true,
        "system": [{"type": "text", "text": "You are Claude Code."},
                   {"type": "text", "text": "Be brief.", "cache_control": {"type": "ephemeral"}}],
        "tools": (0..20).map(|i| json!({"name": format!("tool{i}"), "description": "d", "input_schema": {"type": "object", "properties": {"x": {"type": "string"}}}})).collect::<Vec<_>>(),
        "tool_choice": {"type": "auto", "disable_parallel_tool_use": true},
        "metadata": {"user_id": "u-1"},
        "messages": [
            {"role": "user", "content": [{"type": "text", "text": "run it", "cache_control": {"type": "ephemeral"}}]},
            {"role": "assistant", "content": [{"type": "text", "text": "Running."},
                {"type": "tool_use", "id": "toolu_1", "name": "tool3", "input": {"x": "ls"}}]},
            {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "toolu_1", "is_error": true,
                "content": [{"type": "text", "text": "permission denied"}]},
                {"type": "text", "text": "try again"}]}
        ]
    }))
    .expect("obj");
    let t = messages_to_chat(&req, "gpt-4.1", true).expect("translates");
    let b = &t.body;
    assert_eq!(
        b["messages"][0],
        json!({"role": "system", "content": "You are Claude Code.\nBe brief."})
    );
    assert_eq!(b["tools"].as_array().expect("tools").len(), 20);
    assert_eq!(b["tool_choice"], "auto");
    assert_eq!(b["parallel_tool_calls"], false);
    assert_eq!(b["user"], "u-1");
    assert_eq!(
        b["max_completion_tokens"], 32000,
        "OpenAI's own API: the newer field"
    );
    let msgs = b["messages"].as_array().expect("messages");
    assert_eq!(msgs[2]["content"], "Running.");
    assert_eq!(msgs[2]["tool_calls"][0]["function"]["name"], "tool3");
    assert_eq!(
        msgs[3],
        json!({"role": "tool", "tool_call_id": "1", "content": "Error: permission denied"})
    );
    assert_eq!(
        msgs[4],
        json!({"role": "user", "content": "try again"}),
        "tool results first, then the text"
    );
    assert_eq!(
        t.dropped,
        vec![
            "system[].cache_control",
            "messages[].content[].cache_control"
        ]
    );
}

#[test]
fn bad_requests_name_their_param() {
    for (body, param) in [
        (
            json!({"model": "m", "max_tokens": 5, "messages": []}),
            "messages",
        ),
        (
            json!({"model": "m", "messages": [{"role": "user", "content": "x"}]}),
            "max_tokens",
        ),
        (
            json!({"model": "m", "max_tokens": 5, "messages": [{"role": "tool", "content": "x"}]}),
            "messages[0].role",
        ),
        (
            json!({"model": "m", "max_tokens": 5, "messages": [{"role": "user", "content": "x"}],
                   "output_config": {"format": {"type": "json_object"}}}),
            "output_config.format.type",
        ),
        (
            json!({"model": "m", "max_tokens": 5, "messages": [{"role": "user", "content": "x"}],
                   "output_config": {"effort": "extreme"}}),
            "output_config.effort",
        ),
        (
            json!({"model": "m", "max_tokens": 5, "messages": [{"role": "user", "content": 5}]}),
            "messages[0].content",
        ),
        (
            json!({"model": "m", "max_tokens": 5, "messages": [{"role": "user", "content": "x"}], "tool_choice": {"type": "maybe"}}),
            "tool_choice.type",
        ),
    ] {
        let req: MessageCreateParams = serde_json::from_value(body).expect("obj");
        assert_eq!(
            messages_to_chat(&req, "u", false).expect_err("bad").param,
            param
        );
    }
}

#[test]
fn regression_a_system_entry_mid_conversation_stays_at_its_position() {
    // Claude Code 2.1 sends these inside `messages`; they used to be a 400.
    let req: MessageCreateParams = serde_json::from_value(json!({
        "model": "m", "max_tokens": 100,
        "system": "top",
        "messages": [
            {"role": "user", "content": "hi"},
            {"role": "assistant", "content": "hello"},
            {"role": "system", "content": [{"type": "text", "text": "reminder one"},
                                           {"type": "text", "text": "reminder two"}]},
            {"role": "user", "content": "go on"},
            {"role": "system", "content": "plain string"}
        ]
    }))
    .expect("obj");
    let t = messages_to_chat(&req, "u", false).expect("translates");
    let roles: Vec<_> = t.body["messages"]
        .as_array()
        .expect("messages")
        .iter()
        .map(|m| m["role"].as_str().expect("role").to_owned())
        .collect();
    assert_eq!(
        roles,
        ["system", "user", "assistant", "system", "user", "system"]
    );
    assert_eq!(
        t.body["messages"][3]["content"],
        "reminder one\nreminder two"
    );
    assert_eq!(t.body["messages"][5]["content"], "plain string");
    assert!(t.dropped.is_empty(), "{:?}", t.dropped);
}

#[test]
fn regression_structured_output_and_effort_carry_over_and_the_rest_is_named() {
    let schema = json!({"type": "object", "properties": {"name": {"type": "string"}},
                        "required": ["name"], "additionalProperties": false});
    for key in ["output_config", "output_format"] {
        let mut req: Map<String, Value> = serde_json::from_value(json!({
            "model": "m", "max_tokens": 100,
            "messages": [{"role": "user", "content": "hi"}],
            "top_k": 5,
            "context_management": {"edits": []},
            "thinking": {"type": "enabled", "budget_tokens": 2048},
            "some_future_field": true,
            "metadata": {"user_id": "u", "other": 1},
            "service_tier": null
        }))
        .expect("obj");
        let format = json!({"type": "json_schema", "schema": schema});
        if key == "output_config" {
            req.insert(
                key.into(),
                json!({"format": format, "effort": "max", "task_budget": 5}),
            );
        } else {
            req.insert(key.into(), format);
        }
        let req: MessageCreateParams = serde_json::from_value(Value::Object(req)).expect("typed");
        let t = messages_to_chat(&req, "u", false).expect("translates");
        assert_eq!(
            t.body["response_format"],
            json!({"type": "json_schema",
                   "json_schema": {"name": "output", "schema": schema, "strict": true}})
        );
        let mut want = vec![
            "context_management",
            "metadata.other",
            "some_future_field",
            "thinking",
            "top_k",
        ];
        if key == "output_config" {
            assert_eq!(t.body["reasoning_effort"], "high");
            want.push("output_config.task_budget");
        } else {
            assert!(t.body.get("reasoning_effort").is_none());
        }
        let mut got = t.dropped.clone();
        got.sort();
        want.sort();
        assert_eq!(got, want);
    }
}

#[test]
fn a_system_entry_between_tool_calls_and_their_results_goes_after_the_results() {
    let req: MessageCreateParams = serde_json::from_value(json!({
        "model": "m", "max_tokens": 100,
        "messages": [
            {"role": "user", "content": "hi"},
            {"role": "assistant", "content": [{"type": "tool_use", "id": "toolu_a", "name": "f", "input": {}}]},
            {"role": "system", "content": "reminder"},
            {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "toolu_a", "content": "ok"},
                                         {"type": "text", "text": "and?"}]}
        ]
    }))
    .expect("obj");
    let t = messages_to_chat(&req, "u", false).expect("translates");
    let roles: Vec<_> = t.body["messages"]
        .as_array()
        .expect("messages")
        .iter()
        .map(|m| m["role"].as_str().expect("role").to_owned())
        .collect();
    assert_eq!(roles, ["user", "assistant", "tool", "system", "user"]);
}
