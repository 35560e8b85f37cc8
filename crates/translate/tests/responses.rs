//! Golden tests of serving the Responses API from Chat (and Anthropic) upstreams, over the
//! recorded fixtures: the event names and order of OpenAI's own recorded Responses streams
//! out of recorded Chat and Anthropic streams; requests; non-streaming responses.
#![expect(
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "test helpers fail loudly"
)]

use bytes::Bytes;
use jusinfer_sse::Decoder;
use jusinfer_testkit::fixtures;
use jusinfer_testkit::streamify::{streamify, Style};
use jusinfer_translate::anthropic::stream::{AnthropicToChat, Options as AnthropicOptions};
use jusinfer_translate::chat_stream::{ChatStreamNormalizer, Options as NormOptions};
use jusinfer_translate::pipe::Pipe;
use jusinfer_translate::responses::request::{input_items, to_chat, Options};
use jusinfer_translate::responses::response::{envelope, from_chat, output_text, Meta};
use jusinfer_translate::responses::stream::{ChatToResponses, Options as StreamOptions};
use jusinfer_translate::StreamTranslator;
use jusinfer_wire::responses::ResponseCreateParams;
use serde_json::{json, Map, Value};

/// A typed request (with a model when the case names none).
fn params(mut v: Value) -> ResponseCreateParams {
    if let Some(o) = v.as_object_mut() {
        o.entry("model").or_insert(json!("m"));
    }
    serde_json::from_value(v).expect("a Responses request")
}

fn obj(v: Value) -> Map<String, Value> {
    match v {
        Value::Object(m) => m,
        _ => panic!("not an object"),
    }
}

fn meta() -> Meta {
    Meta {
        id: "resp_test".into(),
        created_at: 1_700_000_000,
        model: "gpt-4.1".into(),
    }
}

fn machine(req: &Value) -> ChatToResponses {
    ChatToResponses::new(StreamOptions {
        envelope: envelope(&params(req.clone()), &meta()),
        cost: None,
    })
}

fn normalizer() -> ChatStreamNormalizer {
    ChatStreamNormalizer::new(NormOptions {
        include_usage: true,
        id_seed: "test".into(),
        cost: None,
    })
}

/// Feeds `raw` through `m` cut into `step`-byte pieces; returns the decoded events and
/// the machine's stored result.
fn run<T: StreamTranslator>(mut m: T, raw: &[u8], step: usize) -> (Vec<Value>, Option<Value>) {
    let mut d = Decoder::new();
    let mut out: Vec<Bytes> = Vec::new();
    for piece in raw.chunks(step.max(1)) {
        d.push(piece);
        while let Some(ev) = d.next_event().expect("sse") {
            m.push(&ev, &mut out).expect("push");
        }
    }
    for ev in d.finish().expect("sse") {
        m.push(&ev, &mut out).expect("push");
    }
    m.finish(&mut out).expect("finish");
    let result = m.take_result();
    (decode(&out.concat()), result)
}

fn decode(raw: &[u8]) -> Vec<Value> {
    let mut d = Decoder::new();
    d.push(raw);
    let mut events = Vec::new();
    while let Some(ev) = d.next_event().expect("sse") {
        let data: Value = serde_json::from_slice(&ev.data).expect("json");
        assert_eq!(
            data["type"].as_str(),
            ev.event.as_deref(),
            "event name = data.type"
        );
        events.push(data);
    }
    events
}

/// Event names with runs of the same delta collapsed (a recorded stream has as many
/// deltas as its tokens; the order is what must match).
fn shape(events: &[Value]) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for e in events {
        let t = e["type"].as_str().unwrap_or("").to_owned();
        if t.ends_with(".delta") && out.last() == Some(&t) {
            continue;
        }
        out.push(t);
    }
    out
}

fn recorded(rel: &str) -> Vec<Value> {
    decode(&fixtures::read(rel).expect("fixture"))
}

/// Checks what every Responses stream must hold: numbers from 0 without gaps, one
/// lifecycle id, every added item done, deltas only to an added item.
fn check_grammar(events: &[Value]) {
    let mut added = std::collections::BTreeSet::new();
    let mut done = std::collections::BTreeSet::new();
    for (n, e) in events.iter().enumerate() {
        assert_eq!(e["sequence_number"].as_u64(), Some(n as u64), "{e}");
        let t = e["type"].as_str().unwrap_or("");
        if let Some(i) = e["output_index"].as_u64() {
            match t {
                "response.output_item.added" => assert!(added.insert(i), "added twice"),
                "response.output_item.done" => assert!(done.insert(i), "done twice"),
                _ => assert!(
                    added.contains(&i) && !done.contains(&i),
                    "{t} outside its item"
                ),
            }
        }
    }
    assert_eq!(added, done, "every item is closed");
    let last = events.last().expect("events");
    let id = &events[0]["response"]["id"];
    assert_eq!(&last["response"]["id"], id);
}

#[test]
fn text_stream_has_the_recorded_event_order() {
    let raw = fixtures::read("openai-chat/chat_stream_text_with_usage.sse").expect("fixture");
    let req = json!({"model": "gpt-4.1", "input": "Hello", "stream": true});
    for step in [1, 7, raw.len()] {
        let (events, result) = run(Pipe::new(normalizer(), machine(&req)), &raw, step);
        check_grammar(&events);
        let want = shape(&recorded("responses/responses_stream_text.sse"));
        assert_eq!(shape(&events), want, "step {step}");
        let result = result.expect("result");
        assert_eq!(result["status"], "completed");
        let text = output_text(&result);
        let deltas: String = events
            .iter()
            .filter(|e| e["type"] == "response.output_text.delta")
            .filter_map(|e| e["delta"].as_str())
            .collect();
        assert_eq!(text, deltas);
        assert!(!text.is_empty());
        assert_eq!(events.last().expect("last")["response"], result);
        // usage in Responses terms, from the recorded usage chunk
        assert!(result["usage"]["input_tokens"].as_u64().expect("input") > 0);
        assert!(result["usage"]["output_tokens_details"]["reasoning_tokens"].is_u64());
    }
}

#[test]
fn tool_call_stream_has_the_recorded_event_order() {
    let raw =
        fixtures::read("openai-chat/chat_stream_tool_call_roundtrip.turn1.sse").expect("fixture");
    let req = json!({"model": "gpt-4.1", "input": "capital?", "stream": true,
                     "tools": [{"type": "function", "name": "get_capital", "parameters": {}}]});
    let (events, result) = run(Pipe::new(normalizer(), machine(&req)), &raw, 5);
    check_grammar(&events);
    let want = shape(&recorded("responses/responses_stream_function_call.sse"));
    assert_eq!(shape(&events), want);
    let result = result.expect("result");
    let call = &result["output"][0];
    assert_eq!(call["type"], "function_call");
    assert!(call["call_id"]
        .as_str()
        .expect("call_id")
        .starts_with("call_"));
    let args: Value =
        serde_json::from_str(call["arguments"].as_str().expect("args")).expect("json");
    assert!(args.is_object());
    let done = events
        .iter()
        .find(|e| e["type"] == "response.function_call_arguments.done")
        .expect("done");
    assert_eq!(done["arguments"], call["arguments"]);
}

#[test]
fn parallel_calls_in_every_upstream_style_become_one_item_each() {
    let v = fixtures::json("openai-chat/chat_nonstream_parallel_tool_calls.json").expect("fixture");
    let parsed =
        |s: &Value| -> Value { serde_json::from_str(s.as_str().expect("args")).expect("json") };
    let want: Vec<(String, Value)> = v["choices"][0]["message"]["tool_calls"]
        .as_array()
        .expect("calls")
        .iter()
        .map(|c| {
            (
                c["function"]["name"].as_str().expect("name").to_owned(),
                parsed(&c["function"]["arguments"]),
            )
        })
        .collect();
    let req = json!({"model": "m", "input": "x", "stream": true});
    for style in [
        Style::Standard,
        Style::NoIndex,
        Style::SameIndex,
        Style::Whole,
        Style::RepeatNames,
        Style::Sloppy,
    ] {
        let frames = streamify(&v, style, true);
        let (events, result) = run(Pipe::new(normalizer(), machine(&req)), &frames.concat(), 3);
        check_grammar(&events);
        let got: Vec<(String, Value)> = result.expect("result")["output"]
            .as_array()
            .expect("output")
            .iter()
            .filter(|i| i["type"] == "function_call")
            .map(|i| {
                (
                    i["name"].as_str().expect("name").to_owned(),
                    parsed(&i["arguments"]),
                )
            })
            .collect();
        assert_eq!(got, want, "{style:?}");
    }
}

#[test]
fn length_stop_is_an_incomplete_response() {
    let v = fixtures::json("openai-chat/chat_nonstream_finish_length.json").expect("fixture");
    let frames = streamify(&v, Style::Standard, true);
    let req = json!({"model": "m", "input": "x", "stream": true, "max_output_tokens": 16});
    let (events, result) = run(Pipe::new(normalizer(), machine(&req)), &frames.concat(), 64);
    check_grammar(&events);
    let want = shape(&recorded(
        "responses/responses_stream_incomplete_max_output_tokens.sse",
    ));
    assert_eq!(shape(&events), want);
    let result = result.expect("result");
    assert_eq!(result["status"], "incomplete");
    assert_eq!(result["incomplete_details"]["reason"], "max_output_tokens");
    assert_eq!(result["output"][0]["status"], "incomplete");
    assert_eq!(result["max_output_tokens"], 16);
}

#[test]
fn anthropic_tool_stream_through_chat_to_responses() {
    let raw =
        fixtures::read("anthropic/anthropic_stream_tool_use_roundtrip.turn1.sse").expect("fixture");
    let req = json!({"model": "claude", "input": "x", "stream": true});
    let first = AnthropicToChat::new(AnthropicOptions {
        include_usage: true,
        created: 1,
        json_mode: None,
        price: None,
    });
    let (events, result) = run(Pipe::new(first, machine(&req)), &raw, 11);
    check_grammar(&events);
    let result = result.expect("result");
    let kinds: Vec<&str> = result["output"]
        .as_array()
        .expect("output")
        .iter()
        .filter_map(|i| i["type"].as_str())
        .collect();
    assert!(kinds.contains(&"function_call"), "{kinds:?}");
    let call = result["output"]
        .as_array()
        .expect("output")
        .iter()
        .find(|i| i["type"] == "function_call")
        .expect("call");
    assert!(call["call_id"].as_str().expect("id").starts_with("toolu_"));
    let args: Value =
        serde_json::from_str(call["arguments"].as_str().expect("args")).expect("json");
    assert!(args.is_object());
    assert!(result["usage"]["output_tokens"].as_u64().expect("usage") > 0);
}

#[test]
fn thinking_becomes_a_reasoning_item() {
    let raw = fixtures::read("anthropic/anthropic_stream_thinking.sse").expect("fixture");
    let req = json!({"model": "claude", "input": "x", "stream": true});
    let first = AnthropicToChat::new(AnthropicOptions {
        include_usage: true,
        created: 1,
        json_mode: None,
        price: None,
    });
    let (events, result) = run(Pipe::new(first, machine(&req)), &raw, 64);
    check_grammar(&events);
    let result = result.expect("result");
    assert_eq!(result["output"][0]["type"], "reasoning");
    assert!(!result["output"][0]["content"][0]["text"]
        .as_str()
        .expect("text")
        .is_empty());
    assert_eq!(result["output"][1]["type"], "message");
}

#[test]
fn an_upstream_error_event_fails_the_response() {
    let raw = b"data: {\"id\":\"c\",\"choices\":[{\"index\":0,\"delta\":{\"role\":\"assistant\",\"content\":\"Hi\"},\"finish_reason\":null}]}\n\ndata: {\"error\":{\"message\":\"boom\",\"type\":\"server_error\"}}\n\n";
    let req = json!({"model": "m", "input": "x", "stream": true});
    let (events, result) = run(Pipe::new(normalizer(), machine(&req)), raw, 1000);
    let names = shape(&events);
    assert_eq!(
        &names[names.len() - 2..],
        &["error".to_owned(), "response.failed".to_owned()]
    );
    let n: Vec<u64> = events
        .iter()
        .filter_map(|e| e["sequence_number"].as_u64())
        .collect();
    assert_eq!(n, (0..events.len() as u64).collect::<Vec<_>>());
    assert_eq!(events.last().expect("last")["response"]["status"], "failed");
    assert!(result.is_none() || result.is_some_and(|r| r["status"] == "failed"));
}

#[test]
fn a_cut_stream_is_an_error_then_failed_frame() {
    let raw = b"data: {\"id\":\"c\",\"choices\":[{\"index\":0,\"delta\":{\"role\":\"assistant\",\"content\":\"Hi\"},\"finish_reason\":null}]}\n\n";
    let req = json!({"model": "m", "input": "x", "stream": true});
    let mut m = Pipe::new(normalizer(), machine(&req));
    let mut d = Decoder::new();
    d.push(raw);
    let mut out = Vec::new();
    while let Some(ev) = d.next_event().expect("sse") {
        m.push(&ev, &mut out).expect("push");
    }
    assert!(m.finish(&mut out).is_err());
    let frame = m
        .error_frame("timeout", 504, "stalled")
        .expect("responses has its own error frame");
    out.push(frame);
    let events = decode(&out.concat());
    let n: Vec<u64> = events
        .iter()
        .filter_map(|e| e["sequence_number"].as_u64())
        .collect();
    assert_eq!(n, (0..events.len() as u64).collect::<Vec<_>>());
    let last = events.last().expect("last");
    assert_eq!(last["type"], "response.failed");
    assert_eq!(last["response"]["output"][0]["content"][0]["text"], "Hi");
}

#[test]
fn recorded_function_call_round_trip_request_becomes_chat() {
    let ex = fixtures::json("responses/responses_nonstream_function_call_roundtrip.exchange.json")
        .expect("fixture");
    let req = params(ex[1]["request"]["body"].clone());
    let mut n = 0;
    let items = input_items(&req, |p| {
        n += 1;
        format!("{p}_{n}")
    })
    .expect("items");
    assert_eq!(items.len(), 3);
    assert_eq!(items[0]["content"][0]["type"], "input_text");
    let t = to_chat(
        &req,
        &items,
        Options {
            upstream_model: "up",
            openai: true,
            thinking: false,
        },
    )
    .expect("chat");
    let msgs = t.body["messages"].as_array().expect("messages");
    assert_eq!(msgs.len(), 3);
    assert_eq!(
        msgs[0],
        json!({"role": "user", "content": "What is the capital of PotatoLand?"})
    );
    assert_eq!(msgs[1]["role"], "assistant");
    assert_eq!(
        msgs[1]["tool_calls"][0]["id"],
        "call_YfwRsW8sUxDKipwyhWTzOXCA"
    );
    assert_eq!(
        msgs[1]["tool_calls"][0]["function"]["arguments"],
        "{\"country\":\"PotatoLand\"}"
    );
    assert_eq!(
        msgs[2],
        json!({"role": "tool", "tool_call_id": "call_YfwRsW8sUxDKipwyhWTzOXCA", "content": "Potato City"})
    );
    assert_eq!(t.body["tools"][0]["function"]["name"], "get_capital");
    assert_eq!(t.body["tool_choice"], "auto");
    assert_eq!(t.body["model"], "up");
    assert!(t.dropped.is_empty(), "{:?}", t.dropped);
}

#[test]
fn settings_translate_or_are_named() {
    let req = params(json!({
        "model": "m", "input": "hi", "instructions": "Be brief.",
        "text": {"format": {"type": "json_schema", "name": "answer", "strict": true,
                            "schema": {"type": "object", "properties": {"a": {"type": "string"}}}}},
        "max_output_tokens": 50, "temperature": 0.2, "top_p": 0.9,
        "reasoning": {"effort": "low", "summary": "auto"},
        "tools": [{"type": "web_search_preview"}, {"type": "function", "name": "f"}],
        "tool_choice": {"type": "function", "name": "f"}, "parallel_tool_calls": false,
        "truncation": "auto", "metadata": {"a": "b"}, "store": true, "stream": true,
        "include": ["reasoning.encrypted_content", "file_search_call.results"],
    }));
    let items = input_items(&req, |p| format!("{p}_1")).expect("items");
    let t = to_chat(
        &req,
        &items,
        Options {
            upstream_model: "x",
            openai: false,
            thinking: false,
        },
    )
    .expect("chat");
    let b = &t.body;
    assert_eq!(
        b["messages"][0],
        json!({"role": "system", "content": "Be brief."})
    );
    assert_eq!(b["response_format"]["type"], "json_schema");
    assert_eq!(b["response_format"]["json_schema"]["name"], "answer");
    assert_eq!(b["response_format"]["json_schema"]["strict"], true);
    assert_eq!(b["max_tokens"], 50);
    assert_eq!(b["reasoning_effort"], "low");
    assert_eq!(b["tools"].as_array().expect("tools").len(), 1);
    assert_eq!(
        b["tool_choice"],
        json!({"type": "function", "function": {"name": "f"}})
    );
    assert_eq!(b["parallel_tool_calls"], false);
    assert_eq!(b["stream_options"]["include_usage"], true);
    assert!(b.get("metadata").is_none() && b.get("store").is_none());
    assert_eq!(
        t.dropped,
        vec![
            "tools[0] (web_search_preview)",
            "include (file_search_call.results)",
            "truncation"
        ]
    );
    let t = to_chat(
        &req,
        &items,
        Options {
            upstream_model: "x",
            openai: true,
            thinking: false,
        },
    )
    .expect("chat");
    assert_eq!(t.body["max_completion_tokens"], 50);
}

#[test]
fn bad_input_names_its_param() {
    let cases = [
        (json!({"input": 5}), "input"),
        (
            json!({"input": [{"type": "function_call", "name": "f"}]}),
            "input[0].call_id",
        ),
        (
            json!({"input": [{"role": "robot", "content": "x"}]}),
            "input[0].role",
        ),
        (
            json!({"input": [{"type": "web_search_call"}]}),
            "input[0].type",
        ),
        (
            json!({"input": [{"type": "function_call_output", "call_id": "c"}]}),
            "input[0].output",
        ),
    ];
    for (req, param) in cases {
        let e = input_items(&params(req), |p| p.to_owned()).expect_err("bad");
        assert_eq!(e.param, param);
    }
    // Found by fuzzing: a mistyped setting was copied into the Chat request as it came.
    // The typed request refuses it now, before any translation.
    for req in [
        json!({"model": "m", "input": "x", "user": 0.1}),
        json!({"model": "m", "input": "x", "temperature": "hot"}),
        json!({"model": "m", "input": "x", "reasoning": {"effort": 3}}),
    ] {
        assert!(serde_json::from_value::<ResponseCreateParams>(req).is_err());
    }
    for (req, param) in [
        (
            json!({"input": "x", "max_output_tokens": 0}),
            "max_output_tokens",
        ),
        (
            json!({"input": "x", "max_output_tokens": 1u64 << 40}),
            "max_output_tokens",
        ),
        (
            json!({"input": [{"role": "user", "content": [{"type": "input_text", "text": 5},
                                                       {"type": "input_image", "image_url": "u"}]}]}),
            "input[0].content[0].text",
        ),
    ] {
        let req = params(req);
        let items = input_items(&req, |p| p.to_owned()).expect("items");
        let e = to_chat(
            &req,
            &items,
            Options {
                upstream_model: "x",
                openai: false,
                thinking: false,
            },
        )
        .expect_err("bad");
        assert_eq!(e.param, param);
    }
    let req = params(json!({"input": "x", "text": {"format": {"type": "yaml"}}}));
    let items = input_items(&req, |p| p.to_owned()).expect("items");
    let e = to_chat(
        &req,
        &items,
        Options {
            upstream_model: "x",
            openai: false,
            thinking: false,
        },
    )
    .expect_err("bad");
    assert_eq!(e.param, "text.format.type");
}

#[test]
fn nonstream_completion_becomes_a_response() {
    let v = fixtures::json("openai-chat/chat_nonstream_parallel_tool_calls.json").expect("fixture");
    let req = params(json!({"model": "gpt-4.1", "input": "x"}));
    let r = from_chat(v.as_object().expect("object"), envelope(&req, &meta()));
    assert_eq!(r["status"], "completed");
    assert_eq!(r["object"], "response");
    let calls: Vec<&Value> = r["output"]
        .as_array()
        .expect("output")
        .iter()
        .filter(|i| i["type"] == "function_call")
        .collect();
    assert_eq!(
        calls.len(),
        v["choices"][0]["message"]["tool_calls"]
            .as_array()
            .expect("calls")
            .len()
    );
    assert_eq!(
        calls[0]["call_id"],
        v["choices"][0]["message"]["tool_calls"][0]["id"]
    );
    assert_eq!(r["usage"]["input_tokens"], v["usage"]["prompt_tokens"]);
    let ids: std::collections::BTreeSet<&str> = r["output"]
        .as_array()
        .expect("output")
        .iter()
        .filter_map(|i| i["id"].as_str())
        .collect();
    assert_eq!(
        ids.len(),
        r["output"].as_array().expect("output").len(),
        "unique ids"
    );

    let v = fixtures::json("openai-chat/chat_nonstream_finish_length.json").expect("fixture");
    let r = from_chat(v.as_object().expect("object"), envelope(&req, &meta()));
    assert_eq!(r["status"], "incomplete");
    assert_eq!(r["incomplete_details"]["reason"], "max_output_tokens");

    let v = fixtures::json("openai-chat/chat_usage_prompt_cache.responses.json").expect("fixture");
    let r = from_chat(
        v["responses"][1].as_object().expect("object"),
        envelope(&req, &meta()),
    );
    assert_eq!(r["usage"]["input_tokens_details"]["cached_tokens"], 4012);
}

#[test]
fn thinking_signatures_survive_a_turn_through_responses() {
    let raw = fixtures::read("anthropic/anthropic_stream_thinking.sse").expect("fixture");
    let signature = decode_signature(&raw);
    let req = json!({"model": "claude", "input": "x", "stream": true});
    let first = AnthropicToChat::new(AnthropicOptions {
        include_usage: true,
        created: 1,
        json_mode: None,
        price: None,
    });
    let (_, result) = run(Pipe::new(first, machine(&req)), &raw, 64);
    let result = result.expect("result");
    let reasoning = &result["output"][0];
    assert_eq!(reasoning["type"], "reasoning");
    let blocks =
        jusinfer_translate::responses::response::thinking_blocks(reasoning).expect("blocks");
    assert_eq!(blocks[0]["type"], "thinking");
    assert_eq!(blocks[0]["signature"], signature);
    // The next turn: the earlier output (reasoning, message) then a new question. The
    // assistant message carries the blocks back for an Anthropic upstream, and only then.
    let mut conversation = vec![
        json!({"type": "message", "role": "user", "content": [{"type": "input_text", "text": "x"}]}),
    ];
    conversation.extend(result["output"].as_array().expect("output").iter().cloned());
    conversation.push(json!({"type": "message", "role": "user", "content": [{"type": "input_text", "text": "more"}]}));
    let req = params(json!({"model": "claude", "input": "more"}));
    let t = to_chat(
        &req,
        &conversation,
        Options {
            upstream_model: "c",
            openai: false,
            thinking: true,
        },
    )
    .expect("chat");
    let assistant = &t.body["messages"][1];
    assert_eq!(assistant["role"], "assistant");
    assert_eq!(assistant["thinking_blocks"][0]["signature"], signature);
    let t = to_chat(
        &req,
        &conversation,
        Options {
            upstream_model: "c",
            openai: false,
            thinking: false,
        },
    )
    .expect("chat");
    assert!(t.body["messages"][1].get("thinking_blocks").is_none());
}

/// The signature of the recorded stream's thinking block.
fn decode_signature(raw: &[u8]) -> String {
    let mut d = Decoder::new();
    d.push(raw);
    let mut sig = String::new();
    while let Some(ev) = d.next_event().expect("sse") {
        let v: Value = serde_json::from_slice(&ev.data).expect("json");
        if v["delta"]["type"] == "signature_delta" {
            sig.push_str(v["delta"]["signature"].as_str().expect("signature"));
        }
    }
    assert!(!sig.is_empty());
    sig
}

#[test]
fn interleaved_parallel_call_fragments_reach_their_done_events() {
    let chunk = |delta: Value| {
        format!(
            "data: {}\n\n",
            json!({"id": "c", "object": "chat.completion.chunk", "choices": [{"index": 0, "delta": delta, "finish_reason": null}]})
        )
    };
    let mut raw = String::new();
    raw += &chunk(
        json!({"role": "assistant", "tool_calls": [{"index": 0, "id": "call_a", "type": "function", "function": {"name": "f", "arguments": ""}}]}),
    );
    raw += &chunk(
        json!({"tool_calls": [{"index": 1, "id": "call_b", "type": "function", "function": {"name": "g", "arguments": "{\"b\":"}}]}),
    );
    raw += &chunk(json!({"tool_calls": [{"index": 0, "function": {"arguments": "{\"a\":1}"}}]}));
    raw += &chunk(json!({"tool_calls": [{"index": 1, "function": {"arguments": "2}"}}]}));
    raw += "data: {\"id\":\"c\",\"choices\":[{\"index\":0,\"delta\":{},\"finish_reason\":\"tool_calls\"}]}\n\ndata: [DONE]\n\n";
    let req = json!({"model": "m", "input": "x", "stream": true});
    let (events, result) = run(Pipe::new(normalizer(), machine(&req)), raw.as_bytes(), 9);
    check_grammar(&events);
    let done: Vec<&Value> = events
        .iter()
        .filter(|e| e["type"] == "response.output_item.done")
        .map(|e| &e["item"])
        .collect();
    assert_eq!(done.len(), 2);
    assert_eq!(done[0]["arguments"], "{\"a\":1}");
    assert_eq!(done[1]["arguments"], "{\"b\":2}");
    let result = result.expect("result");
    assert_eq!(result["output"][0]["arguments"], "{\"a\":1}");
    assert_eq!(result["output"][1]["call_id"], "call_b");
}

/// A Chat stream that reasons, then answers.
const REASONING_STREAM: &str = concat!(
    "data: {\"id\":\"c\",\"object\":\"chat.completion.chunk\",\"created\":1,\"model\":\"m\",\"choices\":[{\"index\":0,\"delta\":{\"role\":\"assistant\",\"reasoning_content\":\"Think\"},\"finish_reason\":null}]}\n\n",
    "data: {\"id\":\"c\",\"object\":\"chat.completion.chunk\",\"created\":1,\"model\":\"m\",\"choices\":[{\"index\":0,\"delta\":{\"reasoning_content\":\"ing.\"},\"finish_reason\":null}]}\n\n",
    "data: {\"id\":\"c\",\"object\":\"chat.completion.chunk\",\"created\":1,\"model\":\"m\",\"choices\":[{\"index\":0,\"delta\":{\"content\":\"Hi!\"},\"finish_reason\":null}]}\n\n",
    "data: {\"id\":\"c\",\"object\":\"chat.completion.chunk\",\"created\":1,\"model\":\"m\",\"choices\":[{\"index\":0,\"delta\":{},\"finish_reason\":\"stop\"}]}\n\n",
    "data: {\"id\":\"c\",\"object\":\"chat.completion.chunk\",\"created\":1,\"model\":\"m\",\"choices\":[],\"usage\":{\"prompt_tokens\":5,\"completion_tokens\":4,\"total_tokens\":9}}\n\n",
    "data: [DONE]\n\n",
);

#[test]
fn regression_reasoning_text_is_a_content_part_opened_and_closed() {
    // The Node SDK's stream accumulator threw `missing content at index 0` on
    // `reasoning_text.delta` with no `content_part.added` before it.
    let req = json!({"model": "m", "input": "hi", "stream": true});
    let (events, result) = run(machine(&req), REASONING_STREAM.as_bytes(), 13);
    check_grammar(&events);
    let reasoning: Vec<String> = shape(&events)
        .into_iter()
        .take_while(|t| t != "response.output_item.done")
        .skip(2)
        .collect();
    assert_eq!(
        reasoning,
        [
            "response.output_item.added",
            "response.content_part.added",
            "response.reasoning_text.delta",
            "response.reasoning_text.done",
            "response.content_part.done",
        ]
    );
    let added = events
        .iter()
        .find(|e| e["type"] == "response.content_part.added")
        .expect("added");
    assert_eq!(added["part"], json!({"type": "reasoning_text", "text": ""}));
    let done = events
        .iter()
        .find(|e| e["type"] == "response.content_part.done")
        .expect("done");
    assert_eq!(
        done["part"],
        json!({"type": "reasoning_text", "text": "Thinking."})
    );
    let result = result.expect("result");
    assert_eq!(
        result["output"][0]["content"],
        json!([{"type": "reasoning_text", "text": "Thinking."}])
    );
}

#[test]
fn reasoning_is_served_as_a_summary_when_one_is_asked_for() {
    let req = json!({"model": "m", "input": "hi", "stream": true,
                     "reasoning": {"effort": "high", "summary": "detailed"}});
    let (events, result) = run(machine(&req), REASONING_STREAM.as_bytes(), 29);
    check_grammar(&events);
    // The reasoning item's events as OpenAI's own recorded stream has them.
    let item = |events: &[Value]| -> Vec<String> {
        let s = shape(events);
        let start = s
            .iter()
            .position(|t| t == "response.output_item.added")
            .expect("added");
        let end = s
            .iter()
            .position(|t| t == "response.output_item.done")
            .expect("done");
        s[start..=end].to_vec()
    };
    let recorded: Vec<Value> =
        fixtures::read("responses/responses_stream_reasoning_multistep.jsonl")
            .expect("fixture")
            .split(|b| *b == b'\n')
            .filter(|l| !l.is_empty())
            .map(|l| serde_json::from_slice(l).expect("json"))
            .collect();
    assert_eq!(item(&events), item(&recorded));
    let deltas: String = events
        .iter()
        .filter(|e| e["type"] == "response.reasoning_summary_text.delta")
        .map(|e| {
            assert_eq!(e["summary_index"], 0);
            e["delta"].as_str().expect("delta")
        })
        .collect();
    assert_eq!(deltas, "Thinking.");
    let result = result.expect("result");
    assert_eq!(
        result["output"][0]["summary"],
        json!([{"type": "summary_text", "text": "Thinking."}])
    );
    let whole = from_chat(
        &obj(json!({"choices": [{"index": 0, "finish_reason": "stop",
            "message": {"role": "assistant", "content": "Hi!", "reasoning_content": "Thinking."}}]})),
        envelope(&params(req.clone()), &meta()),
    );
    assert_eq!(whole["output"][0]["summary"][0]["text"], "Thinking.");
}

#[test]
fn regression_the_response_object_has_every_field_openai_sends() {
    let recorded: Value = serde_json::from_slice(
        &fixtures::read("responses/responses_nonstream_text.json").expect("fixture"),
    )
    .expect("json");
    let req = json!({"model": "m", "input": "hi", "stream": true,
                     "tools": [{"type": "function", "name": "f", "parameters": {"type": "object"}}]});
    let (events, result) = run(machine(&req), REASONING_STREAM.as_bytes(), 64);
    let result = result.expect("result");
    let mut want: Vec<&str> = recorded
        .as_object()
        .expect("obj")
        .keys()
        .map(String::as_str)
        .collect();
    want.extend(["completed_at", "presence_penalty", "frequency_penalty"]);
    for snapshot in [&events[0]["response"], &events[1]["response"], &result] {
        for k in &want {
            assert!(snapshot.get(*k).is_some(), "{k} missing");
        }
    }
    assert!(events[0]["response"]["completed_at"].is_null());
    assert!(result["completed_at"].as_u64().expect("completed_at") >= 1_700_000_000);
    assert_eq!(result["tools"][0]["strict"], true);
    assert!(result["tools"][0]["description"].is_null());
    assert_eq!(result["text"]["verbosity"], "medium");
}

#[test]
fn regression_codex_additional_tools_and_namespaces_become_chat_tools() {
    // Codex 0.171's default model declares its tools in an `additional_tools` input item,
    // grouped in namespaces; it used to be a 400.
    let f = |name: &str| {
        json!({"type": "function", "name": name, "strict": false,
        "parameters": {"type": "object", "properties": {}}})
    };
    let req = params(json!({
        "model": "m",
        "tools": [{"type": "namespace", "name": "top", "tools": [f("read")]}, {"type": "web_search"}],
        "input": [
            {"type": "additional_tools", "role": "developer", "tools": [
                {"type": "namespace", "name": "functions", "tools": [
                    {"type": "custom", "name": "exec", "format": {"type": "grammar"}}, f("wait")]},
                {"type": "namespace", "name": "clock", "tools": [f("sleep"), f("read")]}]},
            {"role": "developer", "content": "be careful"},
            {"role": "user", "content": "hi"}
        ],
        "reasoning": {"effort": "low", "context": "all_turns"},
        "parallel_tool_calls": false
    }));
    let items = input_items(&req, |p| format!("{p}_1")).expect("items");
    assert_eq!(items[0]["type"], "additional_tools");
    let t = to_chat(
        &req,
        &items,
        Options {
            upstream_model: "x",
            openai: false,
            thinking: false,
        },
    )
    .expect("chat");
    let names: Vec<&str> = t.body["tools"]
        .as_array()
        .expect("tools")
        .iter()
        .map(|t| t["function"]["name"].as_str().expect("name"))
        .collect();
    assert_eq!(names, ["read", "wait", "sleep"]);
    assert_eq!(t.body["parallel_tool_calls"], false);
    let roles: Vec<&str> = t.body["messages"]
        .as_array()
        .expect("messages")
        .iter()
        .map(|m| m["role"].as_str().expect("role"))
        .collect();
    assert_eq!(roles, ["system", "user"]);
    let mut dropped = t.dropped.clone();
    dropped.sort();
    assert_eq!(
        dropped,
        [
            "input[0].tools[0].tools[0] (custom)",
            "input[0].tools[1].tools[1] (duplicate name read)",
            "tools[1] (web_search)"
        ]
    );
}
