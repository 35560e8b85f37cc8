//! Golden tests of Chat ⇄ Anthropic translation over the recorded traffic in
//! ../shared/fixtures, plus the cases that broke other gateways, each named for it.
#![expect(clippy::expect_used, reason = "test helpers fail loudly")]

use bytes::Bytes;
use jusinfer_sse::Decoder;
use jusinfer_testkit::anthropic::streamify;
use jusinfer_testkit::fixtures;
use jusinfer_translate::anthropic::request::{chat_to_messages, Options};
use jusinfer_translate::anthropic::response::messages_to_chat;
use jusinfer_translate::anthropic::stream::{self, AnthropicToChat};
use jusinfer_translate::pricing::Price;
use jusinfer_wire::anthropic::MessagesResponse;
use jusinfer_wire::chat::ChatRequest;
use serde_json::{json, Value};

fn chat(v: Value) -> ChatRequest {
    serde_json::from_value(v).expect("valid chat request")
}

fn translate(v: Value, model: &str, default_max: u32) -> (Value, Vec<String>) {
    let fields: Vec<String> = v.as_object().expect("object").keys().cloned().collect();
    let t = chat_to_messages(
        &chat(v),
        &Options {
            upstream_model: model,
            default_max_tokens: default_max,
            present_fields: &fields,
        },
    )
    .expect("translates");
    (serde_json::to_value(&t.request).expect("json"), t.dropped)
}

/// Recorded requests differ from ours only in spelling: string content vs one text block,
/// `stream: false` vs absent, `is_error: false` vs absent, response-only `caller` fields.
fn norm(mut v: Value) -> Value {
    if let Some(o) = v.as_object_mut() {
        if o.get("stream") == Some(&json!(false)) {
            o.remove("stream");
        }
    }
    for m in v["messages"].as_array_mut().into_iter().flatten() {
        if let Some(s) = m["content"].as_str().map(str::to_owned) {
            m["content"] = json!([{"type": "text", "text": s}]);
        }
        for b in m["content"].as_array_mut().into_iter().flatten() {
            if let Some(o) = b.as_object_mut() {
                o.remove("caller");
                if o.get("is_error") == Some(&json!(false)) {
                    o.remove("is_error");
                }
            }
        }
    }
    v
}

fn matrix(case: &str, turn: usize) -> Value {
    let m = fixtures::json("cross-api/tool_choice_matrix.json").expect("fixture");
    m["cases"][case][turn]["request"]["body"].clone()
}

#[test]
fn tool_choice_matrix_auto_both_turns_match_the_recorded_anthropic_requests() {
    for turn in [0, 1] {
        let mut openai = matrix("auto/openai", turn);
        let anthropic = matrix("auto/anthropic", turn);
        // The two recordings are separate runs: give the replayed call the Anthropic id.
        if turn == 1 {
            let id = anthropic["messages"][1]["content"][0]["id"].clone();
            openai["messages"][1]["tool_calls"][0]["id"] = id.clone();
            openai["messages"][2]["tool_call_id"] = id;
        }
        openai["model"] = json!("claude-sonnet-4-5");
        let (got, dropped) = translate(openai, "claude-sonnet-4-5", 4096);
        assert_eq!(norm(got), norm(anthropic), "turn {turn}");
        assert!(dropped.is_empty(), "{dropped:?}");
    }
}

#[test]
fn tool_choice_matrix_none_and_required() {
    for (mode, case) in [
        ("none", "none/anthropic"),
        ("required", "required/anthropic"),
    ] {
        let want = matrix(case, 0);
        let (got, _) = translate(
            json!({"model": "m", "messages": [{"role": "user", "content": "hi"}], "tool_choice": mode,
                   "tools": [{"type": "function", "function": {"name": "get_weather", "parameters": {"type": "object"}}}]}),
            "claude-sonnet-4-5",
            4096,
        );
        assert_eq!(got["tool_choice"], want["tool_choice"], "{mode}");
    }
}

#[test]
fn tool_round_trip_matches_the_recorded_sdk_request() {
    let ex = fixtures::json("anthropic/anthropic_nonstream_tool_use_roundtrip.exchange.json")
        .expect("fixture");
    let want = ex[1]["request"]["body"].clone();
    let call = &want["messages"][1]["content"][0];
    let result = &want["messages"][2]["content"][0];
    let tool = &want["tools"][0];
    let openai = json!({
        "model": "claude-haiku-4-5", "max_tokens": 1024,
        "messages": [
            {"role": "user", "content": "What's the weather in SF in Celsius?"},
            {"role": "assistant", "content": null, "tool_calls": [{"id": call["id"], "type": "function",
                "function": {"name": "get_weather", "arguments": call["input"].to_string()}}]},
            {"role": "tool", "tool_call_id": result["tool_use_id"], "content": result["content"]},
        ],
        "tools": [{"type": "function", "function": {"name": "get_weather", "description": "", "parameters": tool["input_schema"]}}],
    });
    let (got, _) = translate(openai, "claude-haiku-4-5", 4096);
    assert_eq!(norm(got), norm(want));
}

#[test]
fn regression_thinking_blocks_and_signatures_come_back_intact() {
    let ex =
        fixtures::json("anthropic/anthropic_nonstream_thinking_tool_use_roundtrip.exchange.json")
            .expect("fixture");
    // Turn 1's response, as the OpenAI surface shows it ...
    let resp: MessagesResponse =
        serde_json::from_value(ex[0]["response"]["body"].clone()).expect("message");
    let shown = serde_json::to_value(messages_to_chat(&resp, 0, None)).expect("json");
    let msg = &shown["choices"][0]["message"];
    assert_eq!(shown["choices"][0]["finish_reason"], "tool_calls");
    assert!(msg["reasoning_content"]
        .as_str()
        .expect("reasoning")
        .starts_with("The user is asking"));
    assert_eq!(msg["thinking_blocks"][0]["signature"], resp_signature(&ex));
    // ... sent back by the client with the tool result gives exactly turn 2's request.
    let want = ex[1]["request"]["body"].clone();
    let tool_result = &want["messages"][2]["content"][0];
    let openai = json!({
        "model": "claude-sonnet-4-0", "max_tokens": 4096, "tool_choice": "auto",
        "thinking": {"type": "enabled", "budget_tokens": 3000},
        "messages": [
            {"role": "user", "content": [{"type": "text", "text": "What is the largest city in the user country?"}]},
            msg.clone(),
            {"role": "tool", "tool_call_id": tool_result["tool_use_id"], "content": tool_result["content"]},
        ],
        "tools": [{"type": "function", "function": {"name": "get_user_country", "description": "",
            "parameters": {"additionalProperties": false, "properties": {}, "type": "object"}}}],
    });
    let (got, _) = translate(openai, "claude-sonnet-4-0", 4096);
    assert_eq!(norm(got), norm(want));
}

fn resp_signature(ex: &Value) -> Value {
    ex[0]["response"]["body"]["content"][0]["signature"].clone()
}

#[test]
fn regression_multipart_system_keeps_each_part_and_its_cache_control() {
    let want = fixtures::json("anthropic/anthropic_stream_cache_read_max_tokens.request.json")
        .expect("fixture");
    let openai = json!({
        "model": "claude-sonnet-4-20250514", "max_tokens": 100, "temperature": 0.1, "stream": true,
        "messages": [
            {"role": "system", "content": [{"type": "text", "text": want["system"][0]["text"], "cache_control": {"type": "ephemeral"}}]},
            {"role": "user", "content": "What is a system"},
        ],
    });
    let (got, _) = translate(openai, "claude-sonnet-4-20250514", 4096);
    assert_eq!(norm(got), norm(want));
    // Two parts stay two blocks, each with its own marker.
    let (got, _) = translate(
        json!({"model": "m", "messages": [
            {"role": "system", "content": [{"type": "text", "text": "a", "cache_control": {"type": "ephemeral"}}, {"type": "text", "text": "b"}]},
            {"role": "developer", "content": "c"},
            {"role": "user", "content": "q"}]}),
        "m",
        10,
    );
    assert_eq!(
        got["system"],
        json!([
        {"type": "text", "text": "a", "cache_control": {"type": "ephemeral"}},
        {"type": "text", "text": "b"}, {"type": "text", "text": "c"}])
    );
    let (plain, _) = translate(
        json!({"model": "m", "messages": [{"role": "system", "content": "a"}, {"role": "system", "content": "b"}, {"role": "user", "content": "q"}]}),
        "m",
        10,
    );
    assert_eq!(plain["system"], "a\n\nb");
}

#[test]
fn regression_tool_choice_none_with_parallel_false_is_valid_for_anthropic() {
    let (got, _) = translate(
        json!({"model": "m", "messages": [{"role": "user", "content": "q"}], "tool_choice": "none", "parallel_tool_calls": false,
               "tools": [{"type": "function", "function": {"name": "f"}}]}),
        "m",
        10,
    );
    assert_eq!(
        got["tool_choice"],
        json!({"type": "none"}),
        "no disable_parallel_tool_use next to none"
    );
    let (got, _) = translate(
        json!({"model": "m", "messages": [{"role": "user", "content": "q"}], "parallel_tool_calls": false,
               "tools": [{"type": "function", "function": {"name": "f"}}]}),
        "m",
        10,
    );
    assert_eq!(
        got["tool_choice"],
        json!({"type": "auto", "disable_parallel_tool_use": true})
    );
    let (got, _) = translate(
        json!({"model": "m", "messages": [{"role": "user", "content": "q"}], "tool_choice": {"type": "function", "function": {"name": "f"}},
               "tools": [{"type": "function", "function": {"name": "f"}}]}),
        "m",
        10,
    );
    assert_eq!(got["tool_choice"], json!({"type": "tool", "name": "f"}));
}

#[test]
fn roles_merge_images_convert_and_unfaithful_fields_are_named() {
    let (got, dropped) = translate(
        json!({"model": "m", "seed": 1, "logit_bias": {"1": 2}, "presence_penalty": 0.5, "x_custom": true, "user": "u1",
               "stop": "END", "temperature": 1.7, "max_completion_tokens": 77,
               "messages": [
                   {"role": "user", "content": "a"},
                   {"role": "user", "content": [{"type": "image_url", "image_url": {"url": "data:image/png;base64,AAAA"}},
                                                 {"type": "image_url", "image_url": {"url": "https://x/y.png"}}]},
                   {"role": "assistant", "content": "b", "tool_calls": [
                       {"id": "c1", "type": "function", "function": {"name": "f", "arguments": ""}},
                       {"id": "c2", "type": "function", "function": {"name": "g", "arguments": "{\"k\":1}"}}]},
                   {"role": "tool", "tool_call_id": "c1", "content": "r1"},
                   {"role": "tool", "tool_call_id": "c2", "content": "r2"},
                   {"role": "user", "content": "next"}]}),
        "m",
        10,
    );
    assert_eq!(
        dropped,
        ["logit_bias", "presence_penalty", "seed", "x_custom"]
    );
    assert_eq!(got["max_tokens"], 77);
    assert_eq!(got["temperature"], 1.0, "Anthropic's range is 0..1");
    assert_eq!(got["stop_sequences"], json!(["END"]));
    assert_eq!(got["metadata"], json!({"user_id": "u1"}));
    let m = got["messages"].as_array().expect("messages");
    assert_eq!(m.len(), 3, "user turns merge: {m:?}");
    assert_eq!(
        m[0]["content"][1]["source"],
        json!({"type": "base64", "media_type": "image/png", "data": "AAAA"})
    );
    assert_eq!(
        m[0]["content"][2]["source"],
        json!({"type": "url", "url": "https://x/y.png"})
    );
    assert_eq!(
        m[1]["content"][1]["input"],
        json!({}),
        "empty arguments become {{}}"
    );
    assert_eq!(m[1]["content"][2]["input"], json!({"k": 1}));
    let results: Vec<&Value> = m[2]["content"].as_array().expect("blocks").iter().collect();
    assert_eq!(results[0]["tool_use_id"], "c1");
    assert_eq!(results[1]["tool_use_id"], "c2");
    assert_eq!(
        results[2]["text"], "next",
        "tool results lead their user turn"
    );
}

#[test]
fn n_above_one_is_a_400_on_n() {
    let err = chat_to_messages(
        &chat(json!({"model": "m", "n": 2, "messages": [{"role": "user", "content": "q"}]})),
        &Options {
            upstream_model: "m",
            default_max_tokens: 10,
            present_fields: &[],
        },
    )
    .expect_err("rejected");
    assert_eq!(err.param.as_deref(), Some("n"));
}

#[test]
fn json_mode_is_a_forced_tool() {
    let (got, _) = translate(
        json!({"model": "m", "messages": [{"role": "user", "content": "q"}],
               "response_format": {"type": "json_schema", "json_schema": {"name": "answer", "schema": {"type": "object", "properties": {"a": {"type": "string"}}}}}}),
        "m",
        10,
    );
    assert_eq!(
        got["tool_choice"],
        json!({"type": "tool", "name": "answer"})
    );
    assert_eq!(
        got["tools"][0]["input_schema"]["properties"]["a"]["type"],
        "string"
    );
    let (got, _) = translate(
        json!({"model": "m", "messages": [{"role": "user", "content": "q"}],
               "response_format": {"type": "json_schema", "json_schema": {"name": "ids", "schema": {"type": "array", "items": {"type": "integer"}}}}}),
        "m",
        10,
    );
    assert_eq!(
        got["tools"][0]["input_schema"]["required"],
        json!(["value"]),
        "non-object schemas are wrapped"
    );
}

// ---- responses ----

#[test]
fn regression_prompt_tokens_include_cache_reads_and_writes() {
    let resp: MessagesResponse = serde_json::from_value(
        fixtures::json("anthropic/anthropic_nonstream_text.json").expect("f"),
    )
    .expect("m");
    let c = serde_json::to_value(messages_to_chat(&resp, 7, None)).expect("json");
    assert_eq!(c["choices"][0]["message"]["content"], resp_text(&resp));
    assert_eq!(c["choices"][0]["finish_reason"], "stop");
    assert_eq!(c["object"], "chat.completion");
    let ex = fixtures::json("anthropic/anthropic_nonstream_cache_usage.exchange.json").expect("f");
    let resp: MessagesResponse =
        serde_json::from_value(ex[1]["response"]["body"].clone()).expect("m");
    let c = serde_json::to_value(messages_to_chat(&resp, 7, None)).expect("json");
    let u = &c["usage"];
    // regression: prompt_tokens includes cache reads and writes; total = prompt + completion.
    assert_eq!(u["prompt_tokens"], 3 + 1111 + 418);
    assert_eq!(u["prompt_tokens_details"]["cached_tokens"], 1111);
    assert_eq!(u["prompt_tokens_details"]["cache_write_tokens"], 418);
    assert_eq!(u["total_tokens"], 1532 + 33);
}

fn resp_text(r: &MessagesResponse) -> String {
    r.content
        .iter()
        .filter_map(|b| match b {
            jusinfer_wire::anthropic::Block::Text { text, .. } => Some(text.clone()),
            _ => None,
        })
        .collect()
}

// ---- streams ----

fn run_stream(pieces: &[&[u8]], opts: stream::Options) -> Vec<u8> {
    let mut d = Decoder::new();
    let mut t = AnthropicToChat::new(opts);
    let mut out: Vec<Bytes> = Vec::new();
    for p in pieces {
        d.push(p);
        while let Some(ev) = d.next_event().expect("sse") {
            t.push(&ev, &mut out).expect("push");
        }
    }
    for ev in d.finish().expect("sse") {
        t.push(&ev, &mut out).expect("push");
    }
    t.finish(&mut out).expect("finished");
    out.concat()
}

fn chunks(bytes: &[u8]) -> Vec<Value> {
    let mut d = Decoder::new();
    d.push(bytes);
    let mut out = Vec::new();
    while let Some(ev) = d.next_event().expect("sse") {
        if &ev.data[..] != b"[DONE]" {
            out.push(serde_json::from_slice(&ev.data).expect("json"));
        }
    }
    out
}

struct Acc {
    content: String,
    reasoning: String,
    calls: Vec<(String, String, String)>,
    finishes: Vec<String>,
    usage: Option<Value>,
    thinking_blocks: Vec<Value>,
}

fn accumulate(cs: &[Value]) -> Acc {
    let mut a = Acc {
        content: String::new(),
        reasoning: String::new(),
        calls: vec![],
        finishes: vec![],
        usage: None,
        thinking_blocks: vec![],
    };
    for c in cs {
        if c["usage"].is_object() {
            a.usage = Some(c["usage"].clone());
        }
        for ch in c["choices"].as_array().into_iter().flatten() {
            let d = &ch["delta"];
            a.content
                .push_str(d["content"].as_str().unwrap_or_default());
            a.reasoning
                .push_str(d["reasoning_content"].as_str().unwrap_or_default());
            a.thinking_blocks
                .extend(d["thinking_blocks"].as_array().cloned().unwrap_or_default());
            if let Some(f) = ch["finish_reason"].as_str() {
                a.finishes.push(f.to_owned());
            }
            for tc in d["tool_calls"].as_array().into_iter().flatten() {
                let i = tc["index"]
                    .as_i64()
                    .expect("regression: every tool-call delta has an index");
                assert!(i >= 0);
                let i = i as usize;
                if i == a.calls.len() {
                    assert!(
                        tc["id"].is_string() && tc["function"]["name"].is_string(),
                        "first fragment has id and name: {tc}"
                    );
                    a.calls.push((
                        tc["id"].as_str().unwrap_or_default().into(),
                        tc["function"]["name"].as_str().unwrap_or_default().into(),
                        String::new(),
                    ));
                }
                a.calls[i]
                    .2
                    .push_str(tc["function"]["arguments"].as_str().unwrap_or_default());
            }
        }
    }
    a
}

#[test]
fn recorded_streams_split_at_every_byte_give_the_same_chunks() {
    for rel in [
        "anthropic/anthropic_stream_tool_use_roundtrip.turn1.sse",
        "anthropic/anthropic_stream_tool_use_roundtrip.turn2.sse",
        "anthropic/anthropic_stream_thinking.sse",
        "anthropic/anthropic_stream_cache_read_max_tokens.sse",
    ] {
        let raw = fixtures::read(rel).expect("fixture");
        let opts = || stream::Options {
            include_usage: true,
            created: 1,
            json_mode: None,
            price: None,
        };
        let whole = run_stream(&[&raw], opts());
        for cut in 1..raw.len() {
            assert_eq!(
                run_stream(&[&raw[..cut], &raw[cut..]], opts()),
                whole,
                "{rel} @{cut}"
            );
        }
        assert!(whole.ends_with(b"data: [DONE]\n\n"), "{rel}");
    }
}

#[test]
fn recorded_tool_stream_becomes_one_standard_tool_call() {
    let raw =
        fixtures::read("anthropic/anthropic_stream_tool_use_roundtrip.turn1.sse").expect("fixture");
    let out = run_stream(
        &[&raw],
        stream::Options {
            include_usage: false,
            created: 1,
            json_mode: None,
            price: None,
        },
    );
    let cs = chunks(&out);
    assert_eq!(cs[0]["choices"][0]["delta"]["role"], "assistant");
    let a = accumulate(&cs);
    assert_eq!(a.finishes, ["tool_calls"]);
    assert_eq!(a.calls.len(), 1);
    assert_eq!(
        (a.calls[0].0.as_str(), a.calls[0].1.as_str()),
        ("toolu_018acGYLtfR52q9yDbWaEdQZ", "get_weather")
    );
    let args: Value = serde_json::from_str(&a.calls[0].2).expect("arguments are complete JSON");
    assert_eq!(args, json!({"location": "San Francisco, CA", "units": "f"}));
    assert!(a.usage.is_none(), "no usage chunk unless asked");
}

#[test]
fn regression_text_then_tool_use_ends_with_tool_calls_and_every_call() {
    let ex = fixtures::json("anthropic/anthropic_nonstream_tool_use_roundtrip.exchange.json")
        .expect("f");
    let mut m = ex[0]["response"]["body"].clone();
    let tool = m["content"][0].clone();
    let mut second = tool.clone();
    second["id"] = json!("toolu_second");
    m["content"] = json!([{"type": "text", "text": "Let me check."}, tool, second]);
    let frames = streamify(&m, None).concat();
    let out = run_stream(
        &[&frames],
        stream::Options {
            include_usage: true,
            created: 1,
            json_mode: None,
            price: None,
        },
    );
    let a = accumulate(&chunks(&out));
    assert_eq!(a.content, "Let me check.");
    assert_eq!(a.finishes, ["tool_calls"]);
    assert_eq!(
        a.calls.iter().map(|c| c.0.as_str()).collect::<Vec<_>>(),
        ["toolu_013DU6hV4C1M8dJ32ybQFAFi", "toolu_second"]
    );
    for c in &a.calls {
        assert_eq!(
            serde_json::from_str::<Value>(&c.2).expect("json"),
            json!({"location": "SF", "units": "c"})
        );
    }
}

#[test]
fn thinking_stream_surfaces_reasoning_and_signature() {
    let raw = fixtures::read("anthropic/anthropic_stream_thinking.sse").expect("fixture");
    let out = run_stream(
        &[&raw],
        stream::Options {
            include_usage: true,
            created: 1,
            json_mode: None,
            price: None,
        },
    );
    let a = accumulate(&chunks(&out));
    assert!(
        a.reasoning
            .starts_with("This is a straightforward question about pedestrian safety"),
        "{}",
        a.reasoning
    );
    assert_eq!(a.thinking_blocks.len(), 1);
    assert_eq!(a.thinking_blocks[0]["thinking"], a.reasoning.as_str());
    assert!(a.thinking_blocks[0]["signature"]
        .as_str()
        .is_some_and(|s| s.len() > 20));
    assert!(a.content.ends_with("when crossing streets."));
    assert_eq!(a.finishes, ["stop"]);
    assert_eq!(a.usage.expect("usage")["completion_tokens"], 282);
}

#[test]
fn regression_cached_tokens_survive_into_stream_usage_and_cost() {
    let raw =
        fixtures::read("anthropic/anthropic_stream_cache_read_max_tokens.sse").expect("fixture");
    let price = Price {
        input: 3.0,
        output: 15.0,
        cache_read: Some(0.3),
        cache_write: Some(3.75),
    };
    let out = run_stream(
        &[&raw],
        stream::Options {
            include_usage: true,
            created: 1,
            json_mode: None,
            price: Some(price),
        },
    );
    let cs = chunks(&out);
    let a = accumulate(&cs);
    assert_eq!(a.finishes, ["length"]);
    let u = a.usage.expect("usage chunk");
    assert_eq!(u["prompt_tokens"], 11 + 1031);
    assert_eq!(u["prompt_tokens_details"]["cached_tokens"], 1031);
    assert_eq!(u["completion_tokens"], 100);
    let want = (11.0 * 3.0 + 1031.0 * 0.3 + 100.0 * 15.0) / 1e6;
    assert!((u["cost"].as_f64().expect("cost") - want).abs() < 1e-9);
    assert_eq!(cs.last().expect("last")["choices"], json!([]));
}

#[test]
fn overloaded_error_event_ends_the_stream_with_an_error_frame() {
    let mut frames = fixtures::read("anthropic/anthropic_stream_tool_use_roundtrip.turn2.sse")
        .expect("f")
        .to_vec();
    frames.truncate(
        frames
            .windows(20)
            .position(|w| w == b"event: content_block")
            .unwrap_or(frames.len()),
    );
    frames.extend_from_slice(
        &fixtures::read("errors/anthropic_overloaded_error_event.sse").expect("f"),
    );
    let out = run_stream(&[&frames], stream::Options::default());
    let cs = chunks(&out);
    let last = cs.last().expect("frames");
    assert_eq!(last["error"]["code"], "overloaded_error");
    assert_eq!(last["error"]["type"], "server_error");
}

#[test]
fn ping_and_unknown_events_are_dropped() {
    let input = b"event: message_start\ndata: {\"type\":\"message_start\",\"message\":{\"id\":\"m\",\"model\":\"c\",\"content\":[],\"usage\":{\"input_tokens\":1,\"output_tokens\":1}}}\n\nevent: ping\ndata: {\"type\":\"ping\"}\n\nevent: brand_new\ndata: {\"type\":\"brand_new\",\"x\":1}\n\nevent: message_delta\ndata: {\"type\":\"message_delta\",\"delta\":{\"stop_reason\":\"end_turn\"},\"usage\":{\"output_tokens\":2}}\n\nevent: message_stop\ndata: {\"type\":\"message_stop\"}\n\n";
    let out = run_stream(&[input], stream::Options::default());
    let cs = chunks(&out);
    assert_eq!(cs.len(), 2, "role chunk and finish chunk only: {cs:?}");
}

#[test]
fn stream_cut_before_message_stop_is_an_error() {
    let raw = fixtures::read("anthropic/anthropic_stream_thinking.sse").expect("fixture");
    let mut d = Decoder::new();
    let mut t = AnthropicToChat::new(stream::Options::default());
    let mut out = Vec::new();
    d.push(&raw[..raw.len() / 2]);
    while let Some(ev) = d.next_event().expect("sse") {
        t.push(&ev, &mut out).expect("push");
    }
    assert!(t.finish(&mut out).is_err());
}

#[test]
fn regression_every_tool_call_delta_has_an_index_and_the_first_has_id_and_name() {
    let ex =
        fixtures::json("anthropic/anthropic_nonstream_thinking_tool_use_roundtrip.exchange.json")
            .expect("f");
    let m = ex[0]["response"]["body"].clone();
    let frames = streamify(&m, None).concat();
    let out = run_stream(&[&frames], stream::Options::default());
    let mut seen = std::collections::HashSet::new();
    let mut n = 0;
    for c in chunks(&out) {
        for tc in c["choices"][0]["delta"]["tool_calls"]
            .as_array()
            .into_iter()
            .flatten()
        {
            n += 1;
            let i = tc["index"].as_i64().expect("index on every delta");
            assert!(i >= 0);
            if seen.insert(i) {
                assert!(tc["id"].as_str().is_some_and(|s| !s.is_empty()), "{tc}");
                assert!(
                    tc["function"]["name"]
                        .as_str()
                        .is_some_and(|s| !s.is_empty()),
                    "{tc}"
                );
                assert_eq!(tc["type"], "function");
            } else {
                assert!(
                    tc.get("id").is_none() && tc["function"].get("name").is_none(),
                    "{tc}"
                );
            }
        }
    }
    assert!(n >= 2, "the tool call streamed in fragments");
}
