//! Golden tests of Chat ⇄ Gemini translation over the recorded traffic in
//! ../shared/fixtures/gemini (MAPPING.md §8).
#![expect(clippy::expect_used, reason = "test helpers fail loudly")]

use bytes::Bytes;
use jusinfer_sse::Decoder;
use jusinfer_testkit::fixtures;
use jusinfer_translate::gemini::request::{chat_to_gemini, Options};
use jusinfer_translate::gemini::response::to_chat;
use jusinfer_translate::gemini::split_call_id;
use jusinfer_translate::gemini::stream::{self, GeminiToChat};
use jusinfer_translate::StreamTranslator;
use jusinfer_wire::chat::ChatRequest;
use jusinfer_wire::gemini::GenerateContentResponse;
use serde_json::{json, Value};

/// Turn `n` of a recorded exchange: (request body, response body).
fn exchange(rel: &str, n: usize) -> (Value, Value) {
    let v = fixtures::json(&format!("gemini/{rel}")).expect("fixture");
    let turn = match &v {
        Value::Array(a) => a[n].clone(),
        other => other.clone(),
    };
    let body = match &turn["response"]["body"] {
        Value::String(s) => serde_json::from_str(s).expect("json body"),
        other => other.clone(),
    };
    (turn["request"]["body"].clone(), body)
}

fn response(v: &Value) -> GenerateContentResponse {
    serde_json::from_value(v.clone()).expect("a Gemini response")
}

fn chat(v: Value) -> ChatRequest {
    serde_json::from_value(v).expect("valid chat request")
}

fn translate(v: Value) -> (Value, Vec<String>) {
    let fields: Vec<String> = v.as_object().expect("object").keys().cloned().collect();
    let t = chat_to_gemini(
        &chat(v),
        &Options {
            present_fields: &fields,
        },
    )
    .expect("translates");
    (serde_json::to_value(&t.request).expect("json"), t.dropped)
}

/// Feeds `pieces` through a decoder and the machine; the Chat chunks out (no `[DONE]`)
/// and whether `[DONE]` came last.
fn run(pieces: &[&[u8]], opts: stream::Options) -> (Vec<Value>, bool) {
    let mut d = Decoder::new();
    let mut t = GeminiToChat::new(opts);
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
    let all = out.concat();
    let mut d = Decoder::new();
    d.push(&all);
    let mut chunks = Vec::new();
    let mut done = false;
    while let Some(ev) = d.next_event().expect("sse") {
        if &ev.data[..] == b"[DONE]" {
            done = true;
        } else {
            assert!(!done, "nothing after [DONE]");
            chunks.push(serde_json::from_slice(&ev.data).expect("json"));
        }
    }
    (chunks, done)
}

fn opts() -> stream::Options {
    stream::Options {
        include_usage: true,
        created: 7,
        model: "gemini-2.5-flash".into(),
        id_seed: "seed".into(),
        price: None,
    }
}

fn content(chunks: &[Value], field: &str) -> String {
    chunks
        .iter()
        .filter_map(|c| c["choices"][0]["delta"][field].as_str())
        .collect()
}

/// The recorded chunks' text parts, joined (thoughts or answer).
fn recorded_text(sse: &[u8], thought: bool) -> String {
    let mut d = Decoder::new();
    d.push(sse);
    let mut s = String::new();
    for ev in d.finish().expect("sse") {
        let v: Value = serde_json::from_slice(&ev.data).expect("json");
        for p in v["candidates"][0]["content"]["parts"]
            .as_array()
            .into_iter()
            .flatten()
        {
            if p["thought"].as_bool().unwrap_or(false) == thought {
                s.push_str(p["text"].as_str().unwrap_or_default());
            }
        }
    }
    s
}

#[test]
fn recorded_text_answer_becomes_a_chat_completion_with_thoughts_counted() {
    let (_, body) = exchange("gemini_nonstream_text.exchange.json", 0);
    let c =
        serde_json::to_value(to_chat(&response(&body), "m", 7, "x").expect("ok")).expect("json");
    assert_eq!(
        c["choices"][0]["message"]["content"],
        body["candidates"][0]["content"]["parts"][0]["text"]
    );
    assert_eq!(c["choices"][0]["finish_reason"], "stop");
    assert_eq!(c["model"], "gemini-2.5-flash");
    // 13 + (77 + 25 thoughts) = 115 (MAPPING.md §8.5).
    assert_eq!(c["usage"]["prompt_tokens"], 13);
    assert_eq!(c["usage"]["completion_tokens"], 102);
    assert_eq!(c["usage"]["total_tokens"], 115);
    assert_eq!(
        c["usage"]["completion_tokens_details"]["reasoning_tokens"],
        25
    );
}

#[test]
fn recorded_finish_reasons_map_to_chat() {
    let (_, body) = exchange("gemini_nonstream_finish_max_tokens.exchange.json", 0);
    let c = to_chat(&response(&body), "m", 0, "x").expect("ok");
    assert_eq!(c.choices[0].finish_reason, "length");
    let (_, body) = exchange("gemini_nonstream_finish_safety.exchange.json", 0);
    let c = to_chat(&response(&body), "m", 0, "x").expect("ok");
    assert_eq!(c.choices[0].finish_reason, "content_filter");
    assert_eq!(c.choices[0].message.content.as_deref(), Some(""));
    // No candidatesTokenCount on a SAFETY answer: 0.
    assert_eq!(c.usage.completion_tokens, 0);
}

#[test]
fn recorded_cached_content_tokens_are_cached_prompt_tokens() {
    let (_, body) = exchange(
        "gemini_nonstream_usage_cached_content_tokens.exchange.json",
        0,
    );
    let c = to_chat(&response(&body), "m", 0, "x").expect("ok");
    let u = &body["usageMetadata"];
    assert_eq!(
        c.usage.prompt_tokens,
        u["promptTokenCount"].as_u64().expect("n")
    );
    assert_eq!(
        c.usage
            .prompt_tokens_details
            .expect("details")
            .cached_tokens,
        u["cachedContentTokenCount"].as_u64().expect("n")
    );
}

#[test]
fn a_blocked_prompt_is_an_error_not_an_empty_answer() {
    let body = json!({"promptFeedback": {"blockReason": "PROHIBITED_CONTENT"},
                      "usageMetadata": {"promptTokenCount": 5, "totalTokenCount": 5}});
    let e = to_chat(&response(&body), "m", 0, "x").expect_err("blocked");
    assert_eq!(e.reason, "PROHIBITED_CONTENT");
    assert!(e.describe().contains("PROHIBITED_CONTENT"));
}

#[test]
fn recorded_parallel_calls_round_trip_with_the_thought_signature_byte_exact() {
    let (req1, body) = exchange(
        "gemini_nonstream_parallel_function_calls_roundtrip.exchange.json",
        0,
    );
    let c =
        serde_json::to_value(to_chat(&response(&body), "m", 0, "x").expect("ok")).expect("json");
    assert_eq!(c["choices"][0]["finish_reason"], "tool_calls");
    let calls = c["choices"][0]["message"]["tool_calls"]
        .as_array()
        .expect("calls")
        .clone();
    assert_eq!(calls.len(), 2);
    let parts = &body["candidates"][0]["content"]["parts"];
    for (k, call) in calls.iter().enumerate() {
        assert_eq!(call["function"]["name"], parts[k]["functionCall"]["name"]);
        let args: Value =
            serde_json::from_str(call["function"]["arguments"].as_str().expect("s")).expect("json");
        assert_eq!(args, parts[k]["functionCall"]["args"]);
        let id = call["id"].as_str().expect("id");
        assert!(
            id.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-'),
            "{id}"
        );
    }
    // The client sends the conversation back as Chat: the recorded turn 2, in Gemini terms.
    let (req2, _) = exchange(
        "gemini_nonstream_parallel_function_calls_roundtrip.exchange.json",
        1,
    );
    let mut messages = vec![
        json!({"role": "system", "content": req1["systemInstruction"]["parts"][0]["text"]}),
        json!({"role": "user", "content": req1["contents"][0]["parts"][0]["text"]}),
        json!({"role": "assistant", "content": null, "tool_calls": calls}),
    ];
    let results = &req2["contents"][2]["parts"];
    for (k, call) in calls.iter().enumerate() {
        messages.push(json!({"role": "tool", "tool_call_id": call["id"],
            "content": results[k]["functionResponse"]["response"].to_string()}));
    }
    let tools = json!([{"type": "function", "function": {"name": "secret_retrieval_tool",
        "description": "d", "parameters": {"type": "object", "properties": {"password": {"type": "string"}}}}}]);
    let (got, dropped) = translate(json!({"model": "m", "messages": messages, "tools": tools}));
    assert!(dropped.is_empty(), "{dropped:?}");
    assert_eq!(
        got["systemInstruction"]["parts"],
        req1["systemInstruction"]["parts"]
    );
    let contents = got["contents"].as_array().expect("contents");
    assert_eq!(contents.len(), 3, "user, model, user (the results merged)");
    assert_eq!(contents[1]["role"], "model");
    for (k, part) in contents[1]["parts"]
        .as_array()
        .expect("parts")
        .iter()
        .enumerate()
    {
        assert_eq!(
            part["functionCall"]["name"],
            parts[k]["functionCall"]["name"]
        );
        assert_eq!(
            part["functionCall"]["args"],
            parts[k]["functionCall"]["args"]
        );
        // Byte for byte what Gemini sent, on the same part (absent where it sent none).
        assert_eq!(
            part.get("thoughtSignature"),
            parts[k].get("thoughtSignature")
        );
    }
    for (k, part) in contents[2]["parts"]
        .as_array()
        .expect("parts")
        .iter()
        .enumerate()
    {
        assert_eq!(
            part["functionResponse"]["name"],
            results[k]["functionResponse"]["name"]
        );
        assert_eq!(
            part["functionResponse"]["response"],
            results[k]["functionResponse"]["response"]
        );
        let (base, _) = split_call_id(calls[k]["id"].as_str().expect("id"));
        assert_eq!(part["functionResponse"]["id"], base);
    }
    assert_eq!(
        got["tools"][0]["functionDeclarations"][0]["parametersJsonSchema"]["properties"]
            ["password"]["type"],
        "string"
    );
}

#[test]
fn tool_choice_maps_to_function_calling_modes() {
    let tools = json!([{"type": "function", "function": {"name": "f", "parameters": {"type": "object"}}},
                       {"type": "function", "function": {"name": "g"}}]);
    for (choice, mode, names) in [
        (json!("auto"), "AUTO", None),
        (json!("required"), "ANY", None),
        (json!("none"), "NONE", None),
        (
            json!({"type": "function", "function": {"name": "g"}}),
            "ANY",
            Some(json!(["g"])),
        ),
    ] {
        let (got, _) = translate(
            json!({"model": "m", "messages": [{"role": "user", "content": "x"}],
            "tools": tools, "tool_choice": choice}),
        );
        let cfg = &got["toolConfig"]["functionCallingConfig"];
        assert_eq!(cfg["mode"], mode);
        assert_eq!(cfg.get("allowedFunctionNames").cloned(), names);
    }
    // The legacy `functions` / `function_call` too.
    let (got, dropped) = translate(
        json!({"model": "m", "messages": [{"role": "user", "content": "x"}],
        "functions": [{"name": "f", "parameters": {"type": "object"}}], "function_call": {"name": "f"}}),
    );
    assert_eq!(got["tools"][0]["functionDeclarations"][0]["name"], "f");
    assert_eq!(
        got["toolConfig"]["functionCallingConfig"],
        json!({"mode": "ANY", "allowedFunctionNames": ["f"]})
    );
    assert!(dropped.is_empty(), "{dropped:?}");
}

#[test]
fn signatures_leave_call_ids_for_other_upstreams() {
    let id = jusinfer_translate::gemini::call_id(None, "s", 0, Some("ab+/cd=="));
    let mut chat = json!({"messages": [
        {"role": "assistant", "content": null, "tool_calls": [{"id": id, "type": "function",
            "function": {"name": "f", "arguments": "{}"}}, {"id": "call_x", "type": "function",
            "function": {"name": "g", "arguments": "{}"}}]},
        {"role": "tool", "tool_call_id": id, "content": "1"},
        {"role": "tool", "tool_call_id": "call_x", "content": "2"}]});
    assert!(jusinfer_translate::gemini::strip_signatures(&mut chat));
    let m = &chat["messages"];
    assert_eq!(
        (&m[0]["tool_calls"][0]["id"], &m[1]["tool_call_id"]),
        (&json!("call_s0"), &json!("call_s0"))
    );
    assert_eq!(m[2]["tool_call_id"], "call_x");
    assert!(!jusinfer_translate::gemini::strip_signatures(&mut chat));
}

#[test]
fn settings_map_to_generation_config_and_the_rest_is_named() {
    let (got, dropped) = translate(json!({
        "model": "m", "messages": [{"role": "developer", "content": "be brief"},
                                   {"role": "user", "content": [{"type": "text", "text": "a"},
                                       {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0KGgo="}},
                                       {"type": "image_url", "image_url": {"url": "https://x.test/cat.webp?s=1"}}]},
                                   {"role": "user", "content": "b"}],
        "max_completion_tokens": 100, "temperature": 0.2, "top_p": 0.9, "stop": "END", "seed": 3,
        "reasoning_effort": "low", "logit_bias": {"1": 2}, "user": "u",
        "response_format": {"type": "json_schema", "json_schema": {"name": "o", "schema": {"type": "object"}}},
    }));
    let g = &got["generationConfig"];
    assert_eq!(g["maxOutputTokens"], 100);
    assert_eq!(g["temperature"], 0.2);
    assert_eq!(g["stopSequences"], json!(["END"]));
    assert_eq!(g["seed"], 3);
    assert_eq!(
        g["thinkingConfig"],
        json!({"thinkingBudget": 1024, "includeThoughts": true})
    );
    assert_eq!(g["responseMimeType"], "application/json");
    assert_eq!(g["responseJsonSchema"], json!({"type": "object"}));
    assert_eq!(
        got["systemInstruction"],
        json!({"parts": [{"text": "be brief"}]})
    );
    // Two user messages in a row: one turn.
    assert_eq!(got["contents"].as_array().expect("c").len(), 1);
    let parts = &got["contents"][0]["parts"];
    assert_eq!(
        parts[1]["inlineData"],
        json!({"mimeType": "image/png", "data": "iVBORw0KGgo="})
    );
    assert_eq!(
        parts[2]["fileData"],
        json!({"mimeType": "image/webp", "fileUri": "https://x.test/cat.webp?s=1"})
    );
    assert_eq!(parts[3]["text"], "b");
    assert_eq!(dropped, vec!["logit_bias", "user"]);
}

#[test]
fn a_tool_result_for_no_call_and_bad_arguments_are_400s_naming_the_field() {
    let fields = vec![];
    let e = chat_to_gemini(
        &chat(
            json!({"model": "m", "messages": [{"role": "user", "content": "x"},
            {"role": "tool", "tool_call_id": "nope", "content": "r"}]}),
        ),
        &Options {
            present_fields: &fields,
        },
    )
    .expect_err("bad");
    assert_eq!(e.param.as_deref(), Some("messages[1].tool_call_id"));
    let e = chat_to_gemini(
        &chat(
            json!({"model": "m", "messages": [{"role": "user", "content": "x"},
            {"role": "assistant", "tool_calls": [{"id": "c", "type": "function",
                "function": {"name": "f", "arguments": "[1]"}}]}]}),
        ),
        &Options {
            present_fields: &fields,
        },
    )
    .expect_err("bad");
    assert_eq!(
        e.param.as_deref(),
        Some("messages[1].tool_calls[0].function.arguments")
    );
}

#[test]
fn recorded_text_stream_becomes_chat_chunks_split_anywhere() {
    let sse = fixtures::read("gemini/gemini_stream_text.sse").expect("fixture");
    let want = recorded_text(&sse, false);
    let whole = run(&[&sse], opts());
    // Every split point gives the same chunks.
    for at in 0..sse.len() {
        assert_eq!(
            run(&[&sse[..at], &sse[at..]], opts()),
            whole,
            "split at {at}"
        );
    }
    let (chunks, done) = whole;
    assert!(done);
    assert_eq!(chunks[0]["choices"][0]["delta"]["role"], "assistant");
    assert_eq!(content(&chunks, "content"), want);
    let finish: Vec<_> = chunks
        .iter()
        .filter_map(|c| c["choices"][0]["finish_reason"].as_str())
        .collect();
    assert_eq!(finish, vec!["stop"]);
    // The usage chunk is the last one, from the last (cumulative) usageMetadata.
    let last = chunks.last().expect("usage");
    assert_eq!(last["choices"], json!([]));
    let mut d = Decoder::new();
    d.push(&sse);
    let events = d.finish().expect("sse");
    let final_usage: Value =
        serde_json::from_slice(&events.last().expect("ev").data).expect("json");
    assert_eq!(
        last["usage"]["total_tokens"],
        final_usage["usageMetadata"]["totalTokenCount"]
    );
    assert_eq!(chunks[1]["model"], final_usage["modelVersion"]);
}

#[test]
fn recorded_thought_summaries_stream_as_reasoning_content() {
    let sse =
        fixtures::read("gemini/gemini_stream_thinking_thought_summaries.sse").expect("fixture");
    let (chunks, done) = run(&[&sse], opts());
    assert!(done);
    let thoughts = recorded_text(&sse, true);
    assert!(!thoughts.is_empty());
    assert_eq!(content(&chunks, "reasoning_content"), thoughts);
    assert_eq!(content(&chunks, "content"), recorded_text(&sse, false));
}

#[test]
fn recorded_streamed_parallel_calls_come_whole_with_finish_tool_calls() {
    let sse = fixtures::read("gemini/gemini_stream_parallel_function_calls_roundtrip.turn1.sse")
        .expect("fixture");
    let (chunks, done) = run(&[&sse], opts());
    assert!(done);
    let calls: Vec<&Value> = chunks
        .iter()
        .flat_map(|c| {
            c["choices"][0]["delta"]["tool_calls"]
                .as_array()
                .into_iter()
                .flatten()
        })
        .collect();
    assert!(calls.len() >= 2, "{calls:?}");
    for (k, c) in calls.iter().enumerate() {
        assert_eq!(c["index"], k);
        assert!(c["id"].is_string() && c["function"]["name"].is_string());
        let args: Value =
            serde_json::from_str(c["function"]["arguments"].as_str().expect("s")).expect("json");
        assert!(args.is_object());
    }
    let finish: Vec<_> = chunks
        .iter()
        .filter_map(|c| c["choices"][0]["finish_reason"].as_str())
        .collect();
    assert_eq!(finish, vec!["tool_calls"]);
}

#[test]
fn recorded_max_tokens_stream_finishes_with_length() {
    let sse = fixtures::read("gemini/gemini_stream_finish_max_tokens.sse").expect("fixture");
    let (chunks, _) = run(&[&sse], opts());
    let finish: Vec<_> = chunks
        .iter()
        .filter_map(|c| c["choices"][0]["finish_reason"].as_str())
        .collect();
    assert_eq!(finish, vec!["length"]);
}

#[test]
fn a_stream_cut_before_its_finish_reason_is_an_error() {
    let sse = fixtures::read("gemini/gemini_stream_text.sse").expect("fixture");
    let mut d = Decoder::new();
    d.push(&sse);
    let events = d.finish().expect("sse");
    let mut t = GeminiToChat::new(opts());
    let mut out = Vec::new();
    t.push(&events[0], &mut out).expect("push");
    assert!(t.finish(&mut out).is_err());
    assert!(!t.is_complete());
}

#[test]
fn an_error_event_ends_the_stream_with_an_error_frame() {
    let mut t = GeminiToChat::new(opts());
    let mut out = Vec::new();
    let ev = jusinfer_sse::Event {
        event: None,
        data: Bytes::from_static(
            br#"{"error": {"code": 503, "message": "overloaded", "status": "UNAVAILABLE"}}"#,
        ),
        raw: Bytes::new(),
    };
    t.push(&ev, &mut out).expect("push");
    assert!(t.is_complete() && t.failed());
    let frame = String::from_utf8(out.concat()).expect("utf8");
    assert!(
        frame.contains("server_error") && frame.contains("overloaded"),
        "{frame}"
    );
    // As Google writes it: pretty-printed, over several `data:` lines.
    let mut d = Decoder::new();
    d.push(b"data: {\r\ndata:   \"error\": {\"code\": 429, \"message\": \"quota\", \"status\": \"RESOURCE_EXHAUSTED\"}\r\ndata: }\r\n\r\n");
    let ev = d.next_event().expect("sse").expect("an event");
    let mut t = GeminiToChat::new(opts());
    let mut out = Vec::new();
    t.push(&ev, &mut out).expect("push");
    assert!(t.failed(), "a spaced error object is an error");
}
