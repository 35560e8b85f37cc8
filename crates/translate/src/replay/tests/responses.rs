//! [`crate::replay::responses`] over the recorded Responses fixtures.

use serde_json::{json, Value};

use super::{assert_cuts_fail, bodies, files, join, read, splice_before_last};
use crate::replay::responses::{collect, replay};

/// The recorded streams: the `.sse` files and the multi-turn `.jsonl` (one event a
/// line), each turn framed as OpenAI frames it.
fn streams() -> Vec<(String, Vec<u8>)> {
    let mut all: Vec<(String, Vec<u8>)> = ["text", "function_call"]
        .iter()
        .map(|n| format!("responses/responses_stream_{n}.sse"))
        .map(|rel| (rel.clone(), read(&rel)))
        .collect();
    let rel = "responses/responses_stream_reasoning_multistep.jsonl";
    for line in String::from_utf8(read(rel)).expect("utf-8").lines() {
        let v: Value = serde_json::from_str(line).expect("json");
        let kind = v["type"].as_str().expect("type");
        if kind == "response.created" {
            all.push((format!("{rel} #{}", all.len()), Vec::new()));
        }
        let frame = format!("event: {kind}\ndata: {line}\n\n");
        all.last_mut().expect("a turn").1.extend(frame.as_bytes());
    }
    all
}

/// The event types of a stream, each run of deltas as one.
fn kinds(stream: &[u8]) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for ev in crate::replay::events(stream).expect("decodes") {
        let v: Value = serde_json::from_slice(&ev.data).expect("json");
        let kind = v["type"].as_str().expect("type").to_owned();
        assert_eq!(ev.event.as_deref(), Some(kind.as_str()));
        if !(kind.ends_with(".delta") && out.last() == Some(&kind)) {
            out.push(kind);
        }
    }
    out
}

#[test]
fn collects_the_completed_response() {
    let b = collect(&read("responses/responses_stream_text.sse")).expect("complete");
    assert_eq!(
        b["output"][0]["content"][0]["text"],
        "Hello! 🌍 How can I help you today?"
    );
    assert_eq!(b["status"], "completed");
    assert_eq!(
        b["usage"],
        json!({"input_tokens": 303, "input_tokens_details": {"cached_tokens": 0},
               "output_tokens": 13, "output_tokens_details": {"reasoning_tokens": 0},
               "total_tokens": 316})
    );
    let b = collect(&read("responses/responses_stream_function_call.sse")).expect("ok");
    assert_eq!(
        b["output"][0]["arguments"],
        "{\"location\":\"Boston, MA\",\"unit\":\"celsius\"}"
    );
    assert_eq!(b["usage"]["total_tokens"], 98);
}

#[test]
fn every_recorded_stream_collects_round_trips_and_matches_openais_events() {
    let all = streams();
    assert_eq!(all.len(), 6);
    for (rel, s) in all {
        let b = collect(&s).unwrap_or_else(|| panic!("{rel} collects"));
        let frames = replay(&b).expect("replays");
        assert_eq!(collect(&join(&frames)).as_ref(), Some(&b), "{rel}");
        assert_eq!(kinds(&join(&frames)), kinds(&s), "{rel}");
    }
}

#[test]
fn every_stored_body_round_trips() {
    let rels = files("responses", "responses_nonstream", ".json");
    let all: Vec<Value> = rels.iter().flat_map(|r| bodies(r)).collect();
    assert_eq!(all.len(), 5);
    for body in all {
        let frames = replay(&body).expect("replays");
        assert_eq!(collect(&join(&frames)), Some(body));
    }
}

#[test]
fn replay_numbers_every_event() {
    let rel = "responses/responses_nonstream_text_and_function_call.exchange.json";
    let body = &bodies(rel)[0];
    let frames = replay(body).expect("replays");
    let events = crate::replay::events(&join(&frames)).expect("decodes");
    assert_eq!(events.len(), frames.len());
    for (n, ev) in events.iter().enumerate() {
        let v: Value = serde_json::from_slice(&ev.data).expect("json");
        assert_eq!(v["sequence_number"], n, "{v}");
    }
    let created: Value = serde_json::from_slice(&events[0].data).expect("json");
    let r = &created["response"];
    assert_eq!(
        (&r["status"], &r["output"], &r["usage"]),
        (&json!("in_progress"), &json!([]), &Value::Null)
    );
    let added: Vec<Value> = events
        .iter()
        .map(|e| serde_json::from_slice::<Value>(&e.data).expect("json"))
        .filter(|v| v["type"] == "response.output_item.added")
        .collect();
    let types: Vec<&Value> = added.iter().map(|v| &v["item"]["type"]).collect();
    assert_eq!(
        types,
        [
            &json!("reasoning"),
            &json!("message"),
            &json!("function_call")
        ]
    );
    assert_eq!(added[1]["item"]["content"], json!([]));
    assert_eq!(added[1]["item"]["status"], "in_progress");
    assert_eq!(added[2]["item"]["arguments"], "");
}

#[test]
fn unfinished_or_failed_streams_are_none() {
    for (_, s) in streams() {
        assert_cuts_fail(&s, collect);
    }
    let s = read("responses/responses_stream_incomplete_max_output_tokens.sse");
    assert_eq!(collect(&s), None);
    let text = read("responses/responses_stream_text.sse");
    let err =
        "event: error\ndata: {\"type\":\"error\",\"code\":\"server_error\",\"message\":\"x\"}\n\n";
    assert_eq!(collect(&splice_before_last(&text, err)), None);
    let failed = "event: response.failed\ndata: {\"type\":\"response.failed\",\"response\":{}}\n\n";
    assert_eq!(collect(&splice_before_last(&text, failed)), None);
}
