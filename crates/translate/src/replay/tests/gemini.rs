//! [`crate::replay::gemini`] over the recorded Gemini fixtures.

use serde_json::{json, Value};

use super::{
    assert_cuts_fail, assert_streams_round_trip, bodies, files, join, read, splice_before_last,
};
use crate::replay::gemini::{collect, replay};

fn streams() -> Vec<String> {
    let mut all = files("gemini", "gemini_stream", ".sse");
    all.extend(files("vertex", "vertex_gemini_stream", ".sse"));
    all
}

#[test]
fn collects_text_and_usage() {
    let b = collect(&read("gemini/gemini_stream_text.sse")).expect("complete");
    let c = &b["candidates"][0];
    assert_eq!(
        c["content"],
        json!({"parts": [{"text": "The capital of France is Paris.\n"}], "role": "model"})
    );
    assert_eq!(c["finishReason"], "STOP");
    let u = &b["usageMetadata"];
    assert_eq!(
        (
            &u["promptTokenCount"],
            &u["candidatesTokenCount"],
            &u["totalTokenCount"]
        ),
        (&json!(13), &json!(8), &json!(21))
    );
    assert_eq!(b["responseId"], "w1peaMz6INOvnvgPgYfPiQY");
    assert_eq!(b["modelVersion"], "gemini-2.0-flash-exp");
}

#[test]
fn merges_thoughts_apart_and_keeps_calls_whole() {
    let b = collect(&read("gemini/gemini_stream_thinking_thought_summaries.sse")).expect("ok");
    let parts = b["candidates"][0]["content"]["parts"]
        .as_array()
        .expect("parts");
    assert_eq!(parts.len(), 2);
    assert_eq!(parts[0]["thought"], true);
    let thought = parts[0]["text"].as_str().expect("text");
    assert!(thought.starts_with("**Analyzing Prime Substrings**"));
    assert!(thought.contains("**Revising Prime Substrings**"));
    assert_eq!(parts[1], json!({"text": "3"}));
    assert_eq!(b["usageMetadata"]["thoughtsTokenCount"], 1947);

    let rel = "gemini/gemini_stream_function_call_thought_signature.turn1.sse";
    let parts = &collect(&read(rel)).expect("ok")["candidates"][0]["content"]["parts"];
    assert_eq!(parts.as_array().map(Vec::len), Some(1));
    assert_eq!(
        parts[0]["functionCall"],
        json!({"name": "get_country", "args": {}})
    );
    assert!(parts[0]["thoughtSignature"]
        .as_str()
        .is_some_and(|s| s.starts_with("EpwI")));
    let rel = "gemini/gemini_stream_parallel_function_calls_roundtrip.turn1.sse";
    let parts = &collect(&read(rel)).expect("ok")["candidates"][0]["content"]["parts"];
    assert_eq!(
        parts[1]["functionCall"]["args"],
        json!({"password": "radiance"})
    );
}

#[test]
fn every_recorded_stream_collects_and_round_trips() {
    assert_streams_round_trip(&streams(), collect, replay);
}

#[test]
fn every_stored_body_round_trips_as_one_crlf_framed_chunk() {
    let mut rels = files("gemini", "gemini_nonstream", ".json");
    rels.extend(files("vertex", "vertex_gemini_nonstream", ".json"));
    rels.extend(files("vertex", "vertex_gemini_f", ".json"));
    let all: Vec<Value> = rels.iter().flat_map(|r| bodies(r)).collect();
    assert!(all.len() >= 12);
    for body in all {
        let frames = replay(&body).expect("replays");
        assert_eq!(frames.len(), 1);
        assert!(frames[0].starts_with(b"data: {") && frames[0].ends_with(b"}\r\n\r\n"));
        assert_eq!(collect(&frames[0]), Some(body));
    }
}

#[test]
fn unfinished_or_failed_streams_are_none() {
    for rel in streams() {
        assert_cuts_fail(&read(&rel), collect);
    }
    let s = read("gemini/gemini_stream_text.sse");
    let err = "data: {\"error\": {\"code\": 503, \"message\": \"overloaded\", \"status\": \"UNAVAILABLE\"}}\r\n\r\n";
    assert_eq!(collect(&splice_before_last(&s, err)), None);
    let no_finish =
        "data: {\"candidates\": [{\"content\": {\"parts\": [{\"text\": \"hi\"}]}}]}\r\n\r\n";
    assert_eq!(collect(no_finish.as_bytes()), None);
    let blocked = "data: {\"promptFeedback\": {\"blockReason\": \"SAFETY\"}}\r\n\r\n";
    assert_eq!(collect(blocked.as_bytes()), None);
    assert_eq!(replay(&json!({"candidates": {}})), None);
    assert_eq!(
        collect(&join(&replay(&json!({"candidates": []})).expect("shape"))),
        None
    );
}
