//! [`super`] over the recorded fixtures: a stream read frame by frame says what the body it
//! collects to says, capture on or off, however the bytes are split.

use serde_json::{json, Value};

use super::{names, of_body, of_value, Answer, Dialect, Sniffer};
use crate::replay::tests::{files, read};

const CAPTURE: Option<usize> = Some(64 * 1024);

fn streams(d: Dialect) -> Vec<String> {
    let lists: &[(&str, &str)] = match d {
        Dialect::Chat => &[
            ("openai-chat", "chat_stream"),
            ("azure", "azure_chat_stream"),
            ("azure", "azure_v1_chat_stream"),
        ],
        Dialect::Messages => &[
            ("anthropic", "anthropic_stream"),
            ("vertex", "vertex_anthropic_stream"),
        ],
        Dialect::Responses => &[("responses", "responses_stream")],
        Dialect::Gemini => &[
            ("gemini", "gemini_stream"),
            ("vertex", "vertex_gemini_stream"),
        ],
    };
    lists
        .iter()
        .flat_map(|(dir, prefix)| files(dir, prefix, ".sse"))
        .collect()
}

/// `stream` fed in pieces of `step` bytes.
fn sniff(d: Dialect, stream: &[u8], step: usize, capture: Option<usize>) -> Answer {
    let mut s = Sniffer::new(d, capture);
    for piece in stream.chunks(step) {
        s.frame(piece);
    }
    s.answer()
}

const ALL: [Dialect; 4] = [
    Dialect::Chat,
    Dialect::Messages,
    Dialect::Responses,
    Dialect::Gemini,
];

#[test]
fn every_recorded_stream_says_what_its_body_says() {
    for d in ALL {
        let mut compared = 0;
        for rel in streams(d) {
            let bytes = read(&rel);
            let Some(body) = d.collect(&bytes) else {
                continue; // an error stream: nothing to compare with
            };
            compared += 1;
            let whole = of_value(d, &body, CAPTURE);
            assert!(whole.id.is_some(), "{rel}: an id");
            assert!(!whole.finish_reasons.is_empty(), "{rel}: a finish reason");
            for step in [bytes.len(), 7, 1] {
                let got = sniff(d, &bytes, step, CAPTURE);
                assert_eq!(got, whole, "{rel}, pieces of {step}");
                let bare = sniff(d, &bytes, step, None);
                assert_eq!(bare.id, whole.id, "{rel}");
                assert_eq!(bare.finish_reasons, whole.finish_reasons, "{rel}");
                assert_eq!((bare.output, bare.output_truncated), (None, false), "{rel}");
            }
        }
        assert!(compared >= 2, "{d:?}: {compared} streams compared");
    }
}

#[test]
fn bodies_read_in_each_dialect() {
    // A recorded body: two parallel calls, their arguments as objects.
    let rec = of_body(
        Dialect::Chat,
        &read("openai-chat/chat_nonstream_parallel_tool_calls.json"),
        CAPTURE,
    );
    assert_eq!(
        rec.id.as_deref(),
        Some("chatcmpl-ABfvyvfNWKcl7Ohqos4UFrmMs1v4C")
    );
    assert_eq!(rec.finish_reasons, ["tool_calls"]);
    let out: Value = serde_json::from_str(rec.output.as_deref().expect("captured")).expect("json");
    let parts = out[0]["parts"].as_array().expect("parts");
    assert_eq!(parts.len(), 2);
    assert_eq!(parts[0]["name"], "GetWeatherArgs");
    assert_eq!(parts[0]["arguments"]["city"], "Edinburgh");
    assert_eq!(parts[1]["arguments"]["ticker"], "AAPL");
    let body = json!({
        "id": "chatcmpl-1",
        "choices": [
            {"index": 0, "finish_reason": "tool_calls", "message": {"role": "assistant", "content": null,
             "tool_calls": [{"id": "call_1", "type": "function", "function": {"name": "get", "arguments": "{\"city\":\"Paris\"}"}}]}},
            {"index": 1, "finish_reason": "length", "message": {"role": "assistant", "content": "Hello"}}
        ]
    });
    let a = of_value(Dialect::Chat, &body, CAPTURE);
    assert_eq!(a.id.as_deref(), Some("chatcmpl-1"));
    assert_eq!(a.finish_reasons, ["tool_calls", "length"]);
    let out: Value = serde_json::from_str(a.output.as_deref().expect("captured")).expect("json");
    assert_eq!(
        out,
        json!([
            {"role": "assistant", "finish_reason": "tool_calls",
             "parts": [{"type": "tool_call", "id": "call_1", "name": "get", "arguments": {"city": "Paris"}}]},
            {"role": "assistant", "finish_reason": "length", "parts": [{"type": "text", "content": "Hello"}]}
        ])
    );

    let messages = json!({"id": "msg_1", "stop_reason": "end_turn",
        "content": [{"type": "text", "text": "Hi"}, {"type": "tool_use", "id": "tu_1", "name": "f", "input": {"a": 1}}]});
    let a = of_value(Dialect::Messages, &messages, None);
    assert_eq!(
        (a.id.as_deref(), a.finish_reasons.as_slice()),
        (Some("msg_1"), &["end_turn".to_owned()][..])
    );
    assert_eq!(a.output, None);

    let responses = json!({"id": "resp_1", "status": "incomplete",
        "incomplete_details": {"reason": "max_output_tokens"}, "output": []});
    assert_eq!(
        of_value(Dialect::Responses, &responses, None).finish_reasons,
        ["max_output_tokens"]
    );
    let done = json!({"id": "resp_2", "status": "completed", "output": []});
    assert_eq!(
        of_value(Dialect::Responses, &done, None).finish_reasons,
        ["completed"]
    );

    let gemini = json!({"responseId": "r1", "candidates": [{"finishReason": "STOP", "content": {"parts": [{"text": "a"}]}}]});
    let a = of_value(Dialect::Gemini, &gemini, None);
    assert_eq!(
        (a.id.as_deref(), a.finish_reasons.as_slice()),
        (Some("r1"), &["STOP".to_owned()][..])
    );

    // Not JSON, or not an object: nothing, no panic.
    for d in ALL {
        assert_eq!(of_body(d, b"\xff{", CAPTURE).id, None);
        assert_eq!(of_body(d, b"[1,2]", None), Answer::default());
    }
}

#[test]
fn capture_is_bounded_on_a_character_boundary() {
    let body = json!({"id": "c", "choices": [{"index": 0, "finish_reason": "stop",
        "message": {"content": "héllo wörld, and much more text"}}]});
    let a = of_value(Dialect::Chat, &body, Some(2));
    assert!(a.output_truncated);
    let out: Value = serde_json::from_str(a.output.as_deref().expect("captured")).expect("json");
    // "h" and then "é" (two bytes) does not fit in what is left.
    assert_eq!(out[0]["parts"][0]["content"], "h");
    let a = of_value(Dialect::Chat, &body, CAPTURE);
    assert!(!a.output_truncated);

    // A stream's text is bounded the same way, across chunks.
    let stream = read("openai-chat/chat_stream_text_with_usage.sse");
    let a = sniff(Dialect::Chat, &stream, 11, Some(5));
    assert!(a.output_truncated);
    let out: Value = serde_json::from_str(a.output.as_deref().expect("captured")).expect("json");
    assert!(out[0]["parts"][0]["content"].as_str().expect("text").len() <= 5);
    assert_eq!(a.finish_reasons, ["stop"]);
}

#[test]
fn ids_and_reasons_are_bounded_whatever_the_upstream_sends() {
    let long = "é".repeat(1000);
    let body = json!({"id": long, "choices": [{"index": 0, "finish_reason": long}]});
    let a = of_value(Dialect::Chat, &body, None);
    assert_eq!(a.id.as_deref(), Some("é".repeat(128).as_str()));
    assert_eq!(a.finish_reasons, ["é".repeat(32)]);
    // Choices past the bound are not read at all.
    let many: Vec<Value> = (0..100)
        .map(|i| json!({"index": i, "finish_reason": "stop"}))
        .collect();
    let a = of_value(Dialect::Chat, &json!({"id": "c", "choices": many}), None);
    assert_eq!(a.finish_reasons.len(), 16);
}

#[test]
fn a_finish_reason_is_named_only_with_a_string() {
    assert!(names(br#"{"finish_reason":"stop"}"#, b"\"finish_reason\""));
    assert!(names(
        br#"{"finish_reason" : "stop"}"#,
        b"\"finish_reason\""
    ));
    assert!(!names(br#"{"finish_reason":null}"#, b"\"finish_reason\""));
    // Quoted inside a string value it is escaped, so it is not the member.
    assert!(!names(
        br#"{"content":"\"finish_reason\":\"x\""}"#,
        b"\"finish_reason\""
    ));
    assert!(!names(br#"{"finish_reason""#, b"\"finish_reason\""));
}

#[test]
fn garbage_and_cut_streams_never_panic() {
    for d in ALL {
        for input in [
            &b"data: {\n\n"[..],
            b"\xff\xfe",
            b"event: message_start\ndata: []\n\n",
            b"data: [DONE]\n\n",
        ] {
            let a = sniff(d, input, 3, CAPTURE);
            assert_eq!((a.id, a.finish_reasons), (None, vec![]));
        }
        for rel in streams(d) {
            let bytes = read(&rel);
            let cut = &bytes[..bytes.len() / 2];
            let _ = sniff(d, cut, 5, CAPTURE);
        }
    }
}

fn output(a: &Answer) -> Value {
    serde_json::from_str(a.output.as_deref().expect("captured")).expect("json")
}

fn frames(events: &[(&str, Value)]) -> Vec<u8> {
    events
        .iter()
        .flat_map(|(name, v)| format!("event: {name}\ndata: {v}\n\n").into_bytes())
        .collect()
}

#[test]
fn messages_arguments_go_to_the_block_that_started_them() {
    // Two tool_use blocks whose deltas interleave (as the gateway's own Chat → Messages
    // encoder may send them), an unknown block type's deltas, and a call with no input.
    let stream = frames(&[
        (
            "message_start",
            json!({"type": "message_start", "message": {"id": "msg_1"}}),
        ),
        (
            "content_block_start",
            json!({"type": "content_block_start", "index": 0,
            "content_block": {"type": "tool_use", "id": "a", "name": "fa", "input": {}}}),
        ),
        (
            "content_block_start",
            json!({"type": "content_block_start", "index": 1,
            "content_block": {"type": "tool_use", "id": "b", "name": "fb", "input": {}}}),
        ),
        (
            "content_block_delta",
            json!({"type": "content_block_delta", "index": 1,
            "delta": {"type": "input_json_delta", "partial_json": "{\"y\":"}}),
        ),
        (
            "content_block_delta",
            json!({"type": "content_block_delta", "index": 0,
            "delta": {"type": "input_json_delta", "partial_json": "{\"x\":1}"}}),
        ),
        (
            "content_block_delta",
            json!({"type": "content_block_delta", "index": 1,
            "delta": {"type": "input_json_delta", "partial_json": "2}"}}),
        ),
        (
            "content_block_start",
            json!({"type": "content_block_start", "index": 2,
            "content_block": {"type": "mcp_tool_use", "id": "m", "name": "mcp", "input": {}}}),
        ),
        (
            "content_block_delta",
            json!({"type": "content_block_delta", "index": 2,
            "delta": {"type": "input_json_delta", "partial_json": "{\"z\":3}"}}),
        ),
        (
            "content_block_start",
            json!({"type": "content_block_start", "index": 3,
            "content_block": {"type": "tool_use", "id": "c", "name": "fc", "input": {}}}),
        ),
        (
            "message_delta",
            json!({"type": "message_delta", "delta": {"stop_reason": "tool_use"}}),
        ),
    ]);
    let a = sniff(Dialect::Messages, &stream, 5, CAPTURE);
    assert_eq!(a.finish_reasons, ["tool_use"]);
    let calls = output(&a)[0]["parts"].clone();
    assert_eq!(
        calls,
        json!([
            {"type": "tool_call", "id": "a", "name": "fa", "arguments": {"x": 1}},
            {"type": "tool_call", "id": "b", "name": "fb", "arguments": {"y": 2}},
            {"type": "tool_call", "id": "c", "name": "fc", "arguments": {}}
        ])
    );
    // The same call with no input, as a body, reads the same.
    let body = json!({"id": "msg_1", "stop_reason": "tool_use",
        "content": [{"type": "tool_use", "id": "c", "name": "fc", "input": {}}]});
    assert_eq!(
        output(&of_value(Dialect::Messages, &body, CAPTURE))[0]["parts"][0]["arguments"],
        json!({})
    );
}

#[test]
fn calls_are_bounded_in_number_and_in_budget() {
    // Calls with nothing in them still cost: 100 empty calls do not fit in 1 KiB.
    let calls: Vec<Value> = (0..100)
        .map(|_| json!({"id": "", "type": "function", "function": {"name": "", "arguments": ""}}))
        .collect();
    let body = json!({"id": "c", "choices": [{"index": 0, "finish_reason": "tool_calls",
        "message": {"tool_calls": calls}}]});
    let a = of_value(Dialect::Chat, &body, Some(1024));
    assert!(a.output_truncated);
    assert!(output(&a)[0]["parts"].as_array().expect("parts").len() <= 1024 / 64);
    // Never more than 64 calls a choice, whatever the budget.
    let a = of_value(Dialect::Chat, &body, Some(1 << 20));
    assert_eq!(output(&a)[0]["parts"].as_array().expect("parts").len(), 64);
}

#[test]
fn the_budget_counts_json_escapes() {
    // 100 control characters escape to 600 bytes: 64 of budget keeps 10 of them.
    let text = "\u{1}".repeat(100);
    let body = json!({"id": "c", "choices": [{"index": 0, "finish_reason": "stop", "message": {"content": text}}]});
    let a = of_value(Dialect::Chat, &body, Some(64));
    assert!(a.output_truncated);
    assert_eq!(
        output(&a)[0]["parts"][0]["content"]
            .as_str()
            .expect("text")
            .len(),
        10
    );
    assert!(a.output.as_deref().expect("out").len() < 64 + 100);
}

#[test]
fn gemini_thoughts_are_not_the_answer() {
    let body = json!({"responseId": "r", "candidates": [{"finishReason": "STOP", "content": {"parts": [
        {"text": "let me think", "thought": true}, {"text": "Hello"}]}}]});
    let a = of_value(Dialect::Gemini, &body, CAPTURE);
    assert_eq!(
        output(&a)[0]["parts"],
        json!([{"type": "text", "content": "Hello"}])
    );
}
