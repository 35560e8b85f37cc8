//! Golden tests of the Gemini API inbound (`translate::generate`): the requests recorded
//! from Google's SDKs and pydantic-ai (../shared/fixtures/gemini) as a client sends them to
//! the gateway, turned into Chat; Chat answers and recorded Chat streams turned into
//! Gemini's; a Gemini stream relayed byte for byte.
#![expect(clippy::expect_used, reason = "test helpers fail loudly")]

use bytes::Bytes;
use jusinfer_sse::Decoder;
use jusinfer_testkit::fixtures;
use jusinfer_translate::generate::request::{gemini_to_chat, json_schema};
use jusinfer_translate::generate::response::chat_to_gemini;
use jusinfer_translate::generate::stream::{self, ChatToGemini, GeminiPassthrough};
use jusinfer_translate::StreamTranslator;
use jusinfer_wire::gemini::GenerateContentRequest;
use serde_json::{json, Value};

fn request(v: &Value) -> GenerateContentRequest {
    serde_json::from_value(v.clone()).expect("a Gemini request")
}

/// Turn `n`'s request body of a recorded exchange.
fn recorded_request(rel: &str, n: usize) -> Value {
    let v = fixtures::json(&format!("gemini/{rel}")).expect("fixture");
    match &v {
        Value::Array(a) => a[n]["request"]["body"].clone(),
        other if other.get("request").is_some() => other["request"]["body"].clone(),
        other => other.clone(),
    }
}

fn translate(v: &Value) -> (Value, Vec<String>) {
    let t = gemini_to_chat(&request(v), "up", false, false).expect("translates");
    (t.body, t.dropped)
}

/// Feeds `bytes` split at `at` (and at every byte when `at` is 0) through `t`; the output.
fn feed(t: &mut dyn StreamTranslator, pieces: &[&[u8]]) -> Vec<u8> {
    let mut d = Decoder::new();
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

fn events(bytes: &[u8]) -> Vec<Value> {
    let mut d = Decoder::new();
    d.push(bytes);
    d.finish()
        .expect("sse")
        .iter()
        .filter(|e| &e.data[..] != b"[DONE]")
        .map(|e| serde_json::from_slice(&e.data).expect("json"))
        .collect()
}

#[test]
fn recorded_parallel_round_trip_turn_becomes_chat_with_ids_matched_in_order() {
    // The SDK's second turn: two calls without ids, two answers in the same order.
    let req = recorded_request(
        "gemini_nonstream_parallel_function_calls_roundtrip.exchange.json",
        1,
    );
    let (chat, dropped) = translate(&req);
    let m = chat["messages"].as_array().expect("messages");
    assert_eq!(
        m[0],
        json!({"role": "system", "content": "Use parallel tool calling."})
    );
    assert_eq!(m[1]["role"], "user");
    let calls = m[2]["tool_calls"].as_array().expect("calls");
    assert_eq!(m[2]["content"], Value::Null);
    let args: Vec<Value> = calls
        .iter()
        .map(|c| serde_json::from_str(c["function"]["arguments"].as_str().expect("s")).expect("j"))
        .collect();
    let recorded: Vec<Value> = req["contents"][1]["parts"]
        .as_array()
        .expect("parts")
        .iter()
        .map(|p| p["functionCall"]["args"].clone())
        .collect();
    assert_eq!(args, recorded);
    assert_eq!(calls[0]["id"], "call_1_0");
    assert_eq!(calls[1]["id"], "call_1_1");
    assert_eq!(
        [&m[3]["tool_call_id"], &m[4]["tool_call_id"]],
        [&calls[0]["id"], &calls[1]["id"]]
    );
    assert_eq!(m[3]["role"], "tool");
    // The OpenAPI schema, as JSON Schema.
    let params = &chat["tools"][0]["function"]["parameters"];
    assert_eq!(params["type"], "object");
    assert_eq!(params["properties"]["password"]["type"], "string");
    assert_eq!(params["required"], json!(["password"]));
    assert!(dropped.is_empty(), "{dropped:?}");
}

#[test]
fn recorded_snake_case_request_with_client_ids_and_a_signature() {
    // pydantic-ai writes `parameters_json_schema` and sends its own ids.
    let req = recorded_request(
        "gemini_stream_function_call_thought_signature.turn2.request.json",
        0,
    );
    let (chat, dropped) = translate(&req);
    let m = chat["messages"].as_array().expect("messages");
    let id = req["contents"][1]["parts"][0]["functionCall"]["id"].clone();
    assert_eq!(m[1]["tool_calls"][0]["id"], id);
    assert_eq!(m[2]["tool_call_id"], id);
    assert_eq!(m[2]["content"], r#"{"return_value":"Mexico"}"#);
    assert_eq!(
        chat["tools"][0]["function"]["parameters"],
        req["tools"][0]["functionDeclarations"][0]["parameters_json_schema"]
    );
    // A signature on a call is Gemini's: nothing for other upstreams; `responseModalities`
    // TEXT is what they answer anyway.
    assert!(m[1].get("thinking_blocks").is_none());
    assert!(dropped.is_empty(), "{dropped:?}");
}

#[test]
fn recorded_thinking_budget_becomes_an_effort() {
    let req = recorded_request("gemini_stream_thinking_thought_summaries.request.json", 0);
    assert_eq!(
        req["generationConfig"]["thinkingConfig"]["thinking_budget"],
        6400
    );
    let (chat, _) = translate(&req);
    assert_eq!(chat["reasoning_effort"], "medium");
    for (budget, effort) in [
        (0, Value::Null),
        (-1, json!("medium")),
        (512, json!("low")),
        (20000, json!("high")),
    ] {
        let (c, _) = translate(&json!({"contents": [{"parts": [{"text": "x"}]}],
            "generationConfig": {"thinkingConfig": {"thinkingBudget": budget}}}));
        assert_eq!(
            c.get("reasoning_effort").cloned().unwrap_or(Value::Null),
            effort,
            "{budget}"
        );
    }
}

#[test]
fn settings_map_and_what_has_no_place_is_named() {
    let req = json!({
        "contents": [{"role": "user", "parts": [{"text": "hi"},
            {"inlineData": {"mimeType": "image/png", "data": "AAAA"}},
            {"inlineData": {"mimeType": "audio/wav", "data": "BBBB"}}]}],
        "tools": [{"functionDeclarations": [{"name": "f", "parameters": {"type": "OBJECT"}},
                                            {"name": "g"}]},
                  {"googleSearch": {}}],
        "toolConfig": {"functionCallingConfig": {"mode": "ANY", "allowedFunctionNames": ["g"]}},
        "generationConfig": {"maxOutputTokens": 64, "temperature": 0.5, "topP": 0.9, "topK": 40,
            "stopSequences": ["END"], "seed": 7, "responseMimeType": "application/json",
            "responseSchema": {"type": "OBJECT", "properties": {"a": {"type": "STRING", "nullable": true}}}},
        "safetySettings": [{"category": "HARM_CATEGORY_HARASSMENT", "threshold": "BLOCK_NONE"}],
        "cachedContent": "cachedContents/abc"
    });
    let t = gemini_to_chat(&request(&req), "up", true, true).expect("translates");
    let c = &t.body;
    assert_eq!(c["max_completion_tokens"], 64);
    assert_eq!(
        (c["temperature"].clone(), c["top_p"].clone()),
        (json!(0.5), json!(0.9))
    );
    assert_eq!(
        (c["stop"].clone(), c["seed"].clone()),
        (json!(["END"]), json!(7))
    );
    assert_eq!(
        c["tool_choice"],
        json!({"type": "function", "function": {"name": "g"}})
    );
    assert_eq!(
        c["tools"][1]["function"]["parameters"],
        json!({"type": "object", "properties": {}})
    );
    assert_eq!(
        c["response_format"]["json_schema"]["schema"],
        json!({"type": "object", "properties": {"a": {"type": ["string", "null"]}}})
    );
    assert_eq!(c["stream_options"], json!({"include_usage": true}));
    let content = c["messages"][0]["content"].as_array().expect("parts");
    assert_eq!(content[1]["image_url"]["url"], "data:image/png;base64,AAAA");
    assert_eq!(content.len(), 2);
    assert_eq!(
        t.dropped,
        [
            "contents[].parts[].inlineData",
            "tools[].googleSearch",
            "generationConfig.topK",
            "safetySettings",
            "cachedContent"
        ]
    );
}

#[test]
fn a_function_response_for_no_call_and_a_bad_mode_are_refused_naming_the_field() {
    let lone = json!({"contents": [{"role": "user", "parts": [
        {"functionResponse": {"name": "f", "response": {"x": 1}}}]}]});
    let e = gemini_to_chat(&request(&lone), "up", false, false).expect_err("refused");
    assert_eq!(e.param, "contents[0].parts[0].functionResponse");
    let bad = json!({"contents": [{"parts": [{"text": "x"}]}],
        "tools": [{"functionDeclarations": [{"name": "f"}]}],
        "toolConfig": {"functionCallingConfig": {"mode": "SOMETIMES"}}});
    let e = gemini_to_chat(&request(&bad), "up", false, false).expect_err("refused");
    assert_eq!(e.param, "toolConfig.functionCallingConfig.mode");
}

#[test]
fn openapi_schema_converts_to_json_schema() {
    let s = json!({"type": "ARRAY", "minItems": "1", "items": {"anyOf": [{"type": "INTEGER"},
        {"type": "OBJECT", "propertyOrdering": ["b"], "properties": {"b": {"type": "BOOLEAN"}}}]}});
    assert_eq!(
        json_schema(&s),
        json!({"type": "array", "minItems": 1, "items": {"anyOf": [{"type": "integer"},
            {"type": "object", "properties": {"b": {"type": "boolean"}}}]}})
    );
}

#[test]
fn a_chat_completion_becomes_a_gemini_response() {
    let c = fixtures::json("openai-chat/chat_nonstream_parallel_tool_calls.json").expect("fixture");
    let g = chat_to_gemini(c.as_object().expect("object"), "asked", false);
    let calls = c["choices"][0]["message"]["tool_calls"]
        .as_array()
        .expect("calls");
    let parts = g["candidates"][0]["content"]["parts"]
        .as_array()
        .expect("parts");
    assert_eq!(parts.len(), calls.len());
    for (p, call) in parts.iter().zip(calls) {
        assert_eq!(p["functionCall"]["name"], call["function"]["name"]);
        assert_eq!(p["functionCall"]["id"], call["id"]);
        let args: Value =
            serde_json::from_str(call["function"]["arguments"].as_str().expect("s")).expect("j");
        assert_eq!(p["functionCall"]["args"], args);
    }
    assert_eq!(g["candidates"][0]["finishReason"], "STOP");
    assert_eq!(g["candidates"][0]["content"]["role"], "model");
    let u = &c["usage"];
    assert_eq!(g["usageMetadata"]["promptTokenCount"], u["prompt_tokens"]);
    assert_eq!(g["usageMetadata"]["totalTokenCount"], u["total_tokens"]);
    assert_eq!(
        (g["modelVersion"].clone(), g["responseId"].clone()),
        (json!("asked"), c["id"].clone())
    );
    // Reasoning, length, thoughts counted apart.
    let c = json!({"id": "x", "choices": [{"index": 0, "finish_reason": "length",
        "message": {"role": "assistant", "content": "hi", "reasoning_content": "hmm"}}],
        "usage": {"prompt_tokens": 10, "completion_tokens": 30, "total_tokens": 40,
                  "completion_tokens_details": {"reasoning_tokens": 20},
                  "prompt_tokens_details": {"cached_tokens": 4}}});
    let g = chat_to_gemini(c.as_object().expect("object"), "m", true);
    assert_eq!(
        g["candidates"][0]["content"]["parts"],
        json!([{"text": "hmm", "thought": true}, {"text": "hi"}])
    );
    assert_eq!(g["candidates"][0]["finishReason"], "MAX_TOKENS");
    assert_eq!(
        g["usageMetadata"],
        json!({"promptTokenCount": 10, "candidatesTokenCount": 10, "thoughtsTokenCount": 20,
               "cachedContentTokenCount": 4, "totalTokenCount": 40})
    );
    let g = chat_to_gemini(c.as_object().expect("object"), "m", false);
    assert_eq!(
        g["candidates"][0]["content"]["parts"],
        json!([{"text": "hi"}])
    );
}

fn chat_stream(rel: &str, pieces: usize) -> Vec<Value> {
    let sse = fixtures::read(rel).expect("fixture");
    let mut t = ChatToGemini::new(stream::Options {
        id: "rid".into(),
        model: "asked".into(),
        thoughts: true,
    });
    let out = if pieces == 0 {
        let split: Vec<&[u8]> = sse.chunks(1).collect();
        feed(&mut t, &split)
    } else {
        feed(&mut t, &[&sse])
    };
    assert!(t.is_complete() && !t.failed());
    let ev = events(&out);
    assert!(out.ends_with(b"\r\n\r\n"));
    ev
}

#[test]
fn recorded_chat_text_stream_becomes_gemini_chunks_split_anywhere() {
    let whole = chat_stream("openai-chat/chat_stream_text_with_usage.sse", 1);
    assert_eq!(
        whole,
        chat_stream("openai-chat/chat_stream_text_with_usage.sse", 0)
    );
    let sse = fixtures::read("openai-chat/chat_stream_text_with_usage.sse").expect("fixture");
    let recorded: String = events(&sse)
        .iter()
        .filter_map(|e| {
            e["choices"][0]["delta"]["content"]
                .as_str()
                .map(str::to_owned)
        })
        .collect();
    let text: String = whole
        .iter()
        .flat_map(|e| {
            e["candidates"][0]["content"]["parts"]
                .as_array()
                .cloned()
                .unwrap_or_default()
        })
        .filter_map(|p| p["text"].as_str().map(str::to_owned))
        .collect();
    assert_eq!(text, recorded);
    let last = whole.last().expect("chunks");
    assert_eq!(last["candidates"][0]["finishReason"], "STOP");
    assert!(last["usageMetadata"]["totalTokenCount"]
        .as_u64()
        .is_some_and(|n| n > 0));
    assert!(whole[..whole.len() - 1]
        .iter()
        .all(|e| e.get("usageMetadata").is_none()));
    assert!(whole
        .iter()
        .all(|e| e["responseId"] == "rid" && e["modelVersion"] == "asked"));
}

#[test]
fn recorded_streamed_call_arrives_whole_in_the_last_chunk() {
    let ev = chat_stream("openai-chat/chat_stream_tool_call_roundtrip.turn1.sse", 0);
    assert_eq!(ev.len(), 1, "{ev:?}");
    let sse = fixtures::read("openai-chat/chat_stream_tool_call_roundtrip.turn1.sse").expect("f");
    let args: String = events(&sse)
        .iter()
        .filter_map(|e| {
            e["choices"][0]["delta"]["tool_calls"][0]["function"]["arguments"]
                .as_str()
                .map(str::to_owned)
        })
        .collect();
    let call = &ev[0]["candidates"][0]["content"]["parts"][0]["functionCall"];
    assert_eq!(call["name"], "get_capital");
    assert_eq!(
        call["args"],
        serde_json::from_str::<Value>(&args).expect("json")
    );
    assert_eq!(call["id"], "call_ZR5UUuTt3pf61kjwAJIYdVMj");
    assert_eq!(ev[0]["candidates"][0]["finishReason"], "STOP");
    assert_eq!(ev[0]["usageMetadata"]["promptTokenCount"], 53);
}

#[test]
fn an_error_event_or_a_cut_stream_ends_in_googles_error_shape() {
    let mut t = ChatToGemini::new(stream::Options::default());
    let mut d = Decoder::new();
    d.push(
        b"data: {\"error\": {\"message\": \"slow down\", \"type\": \"rate_limit_exceeded\"}}\n\n",
    );
    let mut out = Vec::new();
    for ev in d.finish().expect("sse") {
        t.push(&ev, &mut out).expect("push");
    }
    assert!(t.failed());
    assert_eq!(
        events(&out.concat()),
        [json!({"error": {"code": 429, "message": "slow down", "status": "RESOURCE_EXHAUSTED"}})]
    );
    let mut t = ChatToGemini::new(stream::Options::default());
    assert!(t.finish(&mut Vec::new()).is_err(), "no finish, no success");
}

#[test]
fn a_gemini_stream_passes_through_byte_for_byte_with_its_last_usage() {
    for rel in [
        "gemini/gemini_stream_text.sse",
        "gemini/gemini_stream_parallel_function_calls_roundtrip.turn1.sse",
    ] {
        let sse = fixtures::read(rel).expect("fixture");
        let mut t = GeminiPassthrough::new();
        let split: Vec<&[u8]> = sse.chunks(1).collect();
        let out = feed(&mut t, &split);
        assert_eq!(out, &sse[..], "{rel}");
        let last = events(&sse).pop().expect("events");
        let u = t.usage().expect("usage");
        assert_eq!(
            u.total_tokens,
            last["usageMetadata"]["totalTokenCount"]
                .as_u64()
                .expect("n")
        );
        assert!(t.is_complete());
    }
    // Cut before its finishReason: an error.
    let sse = fixtures::read("gemini/gemini_stream_text.sse").expect("fixture");
    let first = sse
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("an event")
        + 4;
    let mut t = GeminiPassthrough::new();
    let mut d = Decoder::new();
    d.push(&sse[..first]);
    let mut out = Vec::new();
    while let Some(ev) = d.next_event().expect("sse") {
        t.push(&ev, &mut out).expect("push");
    }
    assert!(t.finish(&mut out).is_err());
}

#[test]
fn every_recorded_generate_content_request_translates() {
    // Every request body a Google SDK or pydantic-ai was recorded sending to
    // `generateContent` (AI Studio and Vertex), each turn: what clients send the gateway.
    let mut seen = 0;
    for dir in ["gemini", "vertex"] {
        let mut names: Vec<String> = std::fs::read_dir(fixtures::root().join(dir))
            .expect("fixtures")
            .filter_map(|e| e.ok()?.file_name().into_string().ok())
            .filter(|n| n.contains("gemini") && n.ends_with(".json"))
            .collect();
        names.sort();
        for name in names {
            let v = fixtures::json(&format!("{dir}/{name}")).expect("fixture");
            let turns = match &v {
                Value::Array(a) => a.clone(),
                other => vec![other.clone()],
            };
            for t in turns {
                let (url, body) = match t.get("request") {
                    Some(r) => (
                        r["url"].as_str().unwrap_or("").to_owned(),
                        r["body"].clone(),
                    ),
                    None if name.ends_with(".request.json") => ("GenerateContent".to_owned(), t),
                    None => continue,
                };
                if !url.contains("GenerateContent") && !url.contains("generateContent") {
                    continue;
                }
                let t = gemini_to_chat(&request(&body), "up", false, false)
                    .unwrap_or_else(|e| panic!("{name}: {e:?}"));
                let chat: jusinfer_wire::chat::ChatRequest =
                    serde_json::from_value(t.body.clone()).expect("a Chat request");
                let turns = body["contents"].as_array().map_or(0, Vec::len);
                assert!(chat.messages.len() >= turns.min(1), "{name}");
                seen += 1;
            }
        }
    }
    assert_eq!(seen, 28, "the recorded requests this reads");
}
