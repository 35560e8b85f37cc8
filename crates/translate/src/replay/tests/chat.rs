//! [`crate::replay::chat`] over the recorded Chat Completions fixtures.

use serde_json::{json, Value};

use super::{
    assert_cuts_fail, assert_streams_round_trip, bodies, files, join, read, splice_before_last,
};
use crate::replay::chat::{collect, replay};

fn streams() -> Vec<String> {
    let mut all = files("openai-chat", "chat_stream", ".sse");
    all.extend(files("azure", "azure_chat_stream", ".sse"));
    all.extend(files("azure", "azure_v1_chat_stream", ".sse"));
    all
}

fn stored() -> Vec<Value> {
    let mut rels = files("openai-chat", "chat_nonstream", ".json");
    rels.extend(files("openai-chat", "chat_usage", ".json"));
    rels.extend(files("azure", "azure_chat_nonstream", ".json"));
    rels.iter().flat_map(|r| bodies(r)).collect()
}

/// `body` as a stream gives it back: an empty `annotations` is not streamed, a missing
/// `logprobs` is `null`.
fn streamable(mut body: Value) -> Value {
    for c in body["choices"].as_array_mut().expect("choices") {
        let c = c.as_object_mut().expect("choice");
        c.entry("logprobs").or_insert(Value::Null);
        let msg = c["message"].as_object_mut().expect("message");
        if msg.get("annotations") == Some(&json!([])) {
            msg.remove("annotations");
        }
    }
    body
}

#[test]
fn collects_text_and_usage() {
    let b = collect(&read("openai-chat/chat_stream_text_with_usage.sse")).expect("complete");
    assert_eq!(b["id"], "chatcmpl-ABfw031mOJeYCSHe4yI2ZjOA6kMJL");
    assert_eq!(b["object"], "chat.completion");
    assert_eq!(b["created"], 1727346168);
    assert_eq!(b["system_fingerprint"], "fp_5050236cbd");
    let msg = &b["choices"][0]["message"];
    assert_eq!(
        msg["content"],
        "I'm unable to provide real-time weather updates. To get the current weather in \
         San Francisco, I recommend checking a reliable weather website or a weather app."
    );
    assert_eq!(
        (&msg["role"], &msg["refusal"]),
        (&json!("assistant"), &Value::Null)
    );
    assert_eq!(b["choices"][0]["finish_reason"], "stop");
    assert_eq!(b["choices"][0]["logprobs"], Value::Null);
    assert_eq!(
        b["usage"],
        json!({"prompt_tokens": 14, "completion_tokens": 30, "total_tokens": 44,
               "completion_tokens_details": {"reasoning_tokens": 0}})
    );
}

#[test]
fn collects_tool_calls() {
    let b = collect(&read(
        "openai-chat/chat_stream_tool_call_roundtrip.turn1.sse",
    ))
    .expect("complete");
    let c = &b["choices"][0];
    assert_eq!(c["message"]["content"], Value::Null);
    assert_eq!(
        c["message"]["tool_calls"],
        json!([{"id": "call_ZR5UUuTt3pf61kjwAJIYdVMj", "type": "function",
                "function": {"name": "get_capital", "arguments": "{\"country\":\"UK\"}"}}])
    );
    assert_eq!(c["finish_reason"], "tool_calls");
    assert_eq!(b["service_tier"], "default");
    assert_eq!(
        (
            &b["usage"]["prompt_tokens"],
            &b["usage"]["completion_tokens"]
        ),
        (&json!(53), &json!(15))
    );
    let b = collect(&read("azure/azure_chat_stream_parallel_tool_calls.sse")).expect("ok");
    let calls = &b["choices"][0]["message"]["tool_calls"];
    assert_eq!(
        calls[0]["function"]["arguments"],
        "{\"password\": \"mellon\"}"
    );
    assert_eq!(
        calls[1]["function"]["arguments"],
        "{\"password\": \"radiance\"}"
    );
    assert_eq!(calls[1]["id"], "call_7KowxRhncpXrPLQpuAMemn0y");
    assert_eq!(b["id"], "chatcmpl-CYljzUB4y7AtiG4HHfbBBqLKpCxBx");
    assert!(b["prompt_filter_results"].is_array());
}

#[test]
fn every_recorded_stream_collects_and_round_trips() {
    assert_streams_round_trip(&streams(), collect, |b| replay(b, true));
    let b = collect(&read("azure/azure_v1_chat_stream_include_usage.sse")).expect("ok");
    assert_eq!(b["choices"][0]["message"]["content"], "4242");
    assert_eq!(b["usage"]["total_tokens"], 27);
    assert_eq!(b["id"], "chatcmpl-D2TazvwcOFuGdLjrtBVM6DpKm1VA8");
}

#[test]
fn every_stored_body_round_trips() {
    let all = stored();
    assert!(all.len() >= 8);
    for body in all {
        let frames = replay(&body, true).expect("replays");
        assert_eq!(collect(&join(&frames)), Some(streamable(body)));
    }
}

#[test]
fn replay_has_openais_shape() {
    let body = &bodies("openai-chat/chat_nonstream_parallel_tool_calls.json")[0];
    for include_usage in [true, false] {
        let frames = replay(body, include_usage).expect("replays");
        assert_eq!(
            frames.last().map(|f| &f[..]),
            Some(&b"data: [DONE]\n\n"[..])
        );
        let chunks: Vec<Value> = frames[..frames.len() - 1]
            .iter()
            .map(|f| {
                assert!(f.starts_with(b"data: {") && f.ends_with(b"}\n\n"));
                serde_json::from_slice(&f[6..]).expect("json")
            })
            .collect();
        let first = &chunks[0]["choices"][0];
        assert_eq!(
            first["delta"],
            json!({"role": "assistant", "content": null, "refusal": null})
        );
        assert!(chunks
            .iter()
            .all(|c| c["object"] == "chat.completion.chunk"));
        assert!(chunks.iter().all(|c| c["id"] == body["id"]));
        let (last, rest) = chunks.split_last().expect("chunks");
        if include_usage {
            assert_eq!(last["choices"], json!([]));
            assert_eq!(last["usage"], body["usage"]);
            assert!(rest.iter().all(|c| c["usage"] == Value::Null
                && c.as_object().is_some_and(|o| o.contains_key("usage"))));
        } else {
            assert!(chunks.iter().all(|c| c.get("usage").is_none()));
            assert_eq!(last["choices"][0]["finish_reason"], "tool_calls");
        }
        let call = &chunks[1]["choices"][0]["delta"]["tool_calls"][0];
        assert_eq!(
            (&call["index"], &call["type"]),
            (&json!(0), &json!("function"))
        );
    }
    let text = &bodies("openai-chat/chat_nonstream_text.json")[0];
    let frames = replay(text, false).expect("replays");
    let first: Value = serde_json::from_slice(&frames[0][6..]).expect("json");
    assert_eq!(
        first["choices"][0]["delta"],
        json!({"role": "assistant", "content": "", "refusal": null})
    );
}

#[test]
fn incomplete_or_failed_streams_are_none() {
    for rel in streams() {
        assert_cuts_fail(&read(&rel), collect);
    }
    let s = read("openai-chat/chat_stream_text_with_usage.sse");
    let err = "data: {\"error\":{\"message\":\"boom\",\"type\":\"server_error\"}}\n\n";
    assert_eq!(collect(&splice_before_last(&s, err)), None);
    let no_finish = "data: {\"id\":\"x\",\"choices\":[{\"index\":0,\"delta\":{\"content\":\"hi\"}}]}\n\ndata: [DONE]\n\n";
    assert_eq!(collect(no_finish.as_bytes()), None);
    assert_eq!(
        collect(&splice_before_last(&s, "data: {\"choices\":\n\n")),
        None
    );
}
