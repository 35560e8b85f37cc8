//! [`crate::replay::messages`] over the recorded Anthropic Messages fixtures.

use serde_json::{json, Value};

use super::{
    assert_cuts_fail, assert_streams_round_trip, bodies, files, join, read, splice_before_last,
};
use crate::replay::messages::{collect, replay};

fn streams() -> Vec<String> {
    let mut all = files("anthropic", "anthropic_stream", ".sse");
    all.extend(files("vertex", "vertex_anthropic_stream", ".sse"));
    all
}

#[test]
fn collects_tool_use() {
    let b = collect(&read(
        "anthropic/anthropic_stream_tool_use_roundtrip.turn1.sse",
    ))
    .expect("complete");
    assert_eq!(
        b["content"],
        json!([{"type": "tool_use", "id": "toolu_018acGYLtfR52q9yDbWaEdQZ",
                "name": "get_weather",
                "input": {"location": "San Francisco, CA", "units": "f"},
                "caller": {"type": "direct"}}])
    );
    assert_eq!(
        (&b["stop_reason"], &b["stop_sequence"]),
        (&json!("tool_use"), &Value::Null)
    );
    let u = &b["usage"];
    assert_eq!(
        (&u["input_tokens"], &u["output_tokens"]),
        (&json!(656), &json!(74))
    );
    assert_eq!(u["cache_creation"]["ephemeral_5m_input_tokens"], 0);
    assert_eq!(u["service_tier"], "standard");
    assert_eq!(b["id"], "msg_01AusY9WEbCaj3N7Tv5J4YjH");
}

#[test]
fn collects_thinking_and_text() {
    let b = collect(&read("anthropic/anthropic_stream_thinking.sse")).expect("complete");
    let think = &b["content"][0];
    assert_eq!(think["type"], "thinking");
    assert_eq!(
        think["thinking"],
        "This is a straightforward question about pedestrian safety. I should provide \
         clear, helpful advice about how to safely cross a street. This is basic safety \
         information that could help prevent accidents."
    );
    assert!(think["signature"]
        .as_str()
        .expect("sig")
        .starts_with("EvMCCkYICxgCKkCHP2c"));
    let text = b["content"][1]["text"].as_str().expect("text");
    assert!(text.starts_with("Here are the basic steps for safely crossing the street:"));
    assert_eq!(text.chars().count(), 1021);
    assert_eq!(b["usage"]["output_tokens"], 282);
    assert_eq!(b["stop_reason"], "end_turn");
}

#[test]
fn every_recorded_stream_collects_and_round_trips() {
    assert_streams_round_trip(&streams(), collect, replay);
}

#[test]
fn every_stored_body_round_trips() {
    let mut rels = files("anthropic", "anthropic_nonstream", ".json");
    rels.extend(files("vertex", "vertex_anthropic_rawpredict", ".json"));
    let all: Vec<Value> = rels.iter().flat_map(|r| bodies(r)).collect();
    assert!(all.len() >= 8);
    for body in all {
        let frames = replay(&body).expect("replays");
        assert_eq!(collect(&join(&frames)), Some(body));
    }
}

#[test]
fn replay_has_anthropics_shape() {
    let body =
        &bodies("anthropic/anthropic_nonstream_thinking_tool_use_roundtrip.exchange.json")[0];
    let frames = replay(body).expect("replays");
    let events: Vec<(String, Value)> = frames
        .iter()
        .map(|f| {
            let s = std::str::from_utf8(f).expect("utf-8");
            let (head, data) = s.split_once('\n').expect("two lines");
            assert!(
                data.starts_with("data: {") && data.ends_with("}\n\n"),
                "{s}"
            );
            let name = head.strip_prefix("event: ").expect("event line").to_owned();
            let v: Value = serde_json::from_str(&data[6..]).expect("json");
            assert_eq!(v["type"], name.as_str());
            (name, v)
        })
        .collect();
    let names: Vec<&str> = events.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(names.first(), Some(&"message_start"));
    assert_eq!(&names[names.len() - 2..], ["message_delta", "message_stop"]);
    let start = &events[0].1["message"];
    assert_eq!(start["content"], json!([]));
    assert_eq!(start["stop_reason"], Value::Null);
    assert_eq!(start["usage"]["output_tokens"], 1);
    assert_eq!(
        start["usage"]["input_tokens"],
        body["usage"]["input_tokens"]
    );
    let blocks: Vec<&Value> = events
        .iter()
        .filter(|(n, _)| n == "content_block_start")
        .map(|(_, v)| &v["content_block"])
        .collect();
    assert_eq!(
        blocks[0],
        &json!({"type": "thinking", "thinking": "", "signature": ""})
    );
    let tool = blocks
        .iter()
        .find(|b| b["type"] == "tool_use")
        .expect("tool_use");
    assert_eq!(tool["input"], json!({}));
    let delta = &events[names.len() - 2].1;
    assert_eq!(delta["delta"]["stop_reason"], body["stop_reason"]);
    assert_eq!(
        delta["usage"]["output_tokens"],
        body["usage"]["output_tokens"]
    );
}

#[test]
fn incomplete_or_failed_streams_are_none() {
    for rel in streams() {
        assert_cuts_fail(&read(&rel), collect);
    }
    assert_eq!(
        collect(&read("errors/anthropic_overloaded_error_event.sse")),
        None
    );
    let s = read("anthropic/anthropic_stream_tool_use_roundtrip.turn1.sse");
    let err = "event: error\ndata: {\"type\":\"error\",\"error\":{\"type\":\"overloaded_error\",\"message\":\"Overloaded\"}}\n\n";
    assert_eq!(collect(&splice_before_last(&s, err)), None);
    let odd = "event: content_block_delta\ndata: {\"type\":\"content_block_delta\",\"index\":0,\"delta\":{\"type\":\"new_delta\"}}\n\n";
    assert_eq!(collect(&splice_before_last(&s, odd)), None);
    let bad_json = "event: content_block_delta\ndata: {\"type\":\"content_block_delta\",\"index\":0,\"delta\":{\"type\":\"input_json_delta\",\"partial_json\":\"{\"}}\n\n";
    let text = read("anthropic/anthropic_stream_tool_use_roundtrip.turn1.sse");
    let stop = b"event: content_block_stop";
    let at = text
        .windows(stop.len())
        .position(|w| w == stop)
        .expect("stop");
    let cut = [&text[..at], bad_json.as_bytes(), &text[at..]].concat();
    assert_eq!(collect(&cut), None);
}
