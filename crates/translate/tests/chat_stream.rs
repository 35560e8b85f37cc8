//! Golden and property tests of the Chat stream normalizer over the recorded fixtures.
#![expect(clippy::expect_used, reason = "test helpers fail loudly")]

use bytes::Bytes;
use jusinfer_sse::Decoder;
use jusinfer_testkit::fixtures;
use jusinfer_testkit::streamify::{streamify, Style};
use jusinfer_translate::chat_stream::{ChatStreamNormalizer, Options};
use serde_json::{json, Value};

fn opts(include_usage: bool) -> Options {
    Options {
        include_usage,
        id_seed: "seed".to_owned(),
        cost: None,
    }
}

/// Feeds `input` in the given pieces; returns the bytes the client would receive.
fn run(pieces: &[&[u8]], include_usage: bool) -> Result<(Vec<u8>, ChatStreamNormalizer), String> {
    let mut d = Decoder::new();
    let mut n = ChatStreamNormalizer::new(opts(include_usage));
    let mut out: Vec<Bytes> = Vec::new();
    for p in pieces {
        d.push(p);
        while let Some(ev) = d.next_event().map_err(|e| e.to_string())? {
            n.push(&ev, &mut out).map_err(|e| e.to_string())?;
        }
    }
    for ev in d.finish().map_err(|e| e.to_string())? {
        n.push(&ev, &mut out).map_err(|e| e.to_string())?;
    }
    n.finish(&mut out).map_err(|e| e.to_string())?;
    Ok((out.concat(), n))
}

fn events(bytes: &[u8]) -> Vec<Value> {
    let mut d = Decoder::new();
    d.push(bytes);
    let mut out = Vec::new();
    while let Some(ev) = d.next_event().expect("valid sse") {
        if &ev.data[..] != b"[DONE]" {
            out.push(serde_json::from_slice(&ev.data).expect("json chunk"));
        }
    }
    out
}

/// Accumulates like the official SDKs: string fields of a tool call concatenate.
fn accumulate(chunks: &[Value]) -> (String, Vec<Value>, Vec<String>) {
    let mut content = String::new();
    let mut calls: Vec<Value> = Vec::new();
    let mut finishes = Vec::new();
    for c in chunks {
        for ch in c["choices"].as_array().into_iter().flatten() {
            if let Some(t) = ch["delta"]["content"].as_str() {
                content.push_str(t);
            }
            if let Some(f) = ch["finish_reason"].as_str() {
                finishes.push(f.to_owned());
            }
            for tc in ch["delta"]["tool_calls"].as_array().into_iter().flatten() {
                let i = tc["index"].as_u64().expect("every fragment has an index") as usize;
                while calls.len() <= i {
                    calls.push(
                        json!({"id": "", "type": "", "function": {"name": "", "arguments": ""}}),
                    );
                }
                let acc = &mut calls[i];
                for (path, src) in [("id", &tc["id"]), ("type", &tc["type"])] {
                    if let Some(s) = src.as_str() {
                        let cur = acc[path].as_str().unwrap_or_default().to_owned();
                        acc[path] = json!(if path == "type" {
                            s.to_owned()
                        } else {
                            cur + s
                        });
                    }
                }
                for key in ["name", "arguments"] {
                    if let Some(s) = tc["function"][key].as_str() {
                        let cur = acc["function"][key].as_str().unwrap_or_default().to_owned();
                        acc["function"][key] = json!(cur + s);
                    }
                }
            }
        }
    }
    (content, calls, finishes)
}

/// The standard fragment shape of §4.
fn assert_standard_shape(chunks: &[Value]) {
    let mut seen = std::collections::HashSet::new();
    for c in chunks {
        for ch in c["choices"].as_array().into_iter().flatten() {
            for tc in ch["delta"]["tool_calls"].as_array().into_iter().flatten() {
                let i = tc["index"].as_u64().expect("index");
                if seen.insert(i) {
                    assert!(
                        tc["id"].as_str().is_some_and(|s| !s.is_empty()),
                        "first fragment has id: {tc}"
                    );
                    assert_eq!(tc["type"], "function", "first fragment has type: {tc}");
                    assert!(
                        tc["function"]["name"]
                            .as_str()
                            .is_some_and(|s| !s.is_empty()),
                        "name: {tc}"
                    );
                    assert!(
                        tc["function"]["arguments"].is_string(),
                        "arguments string: {tc}"
                    );
                } else {
                    let keys: Vec<&String> = tc.as_object().expect("object").keys().collect();
                    assert_eq!(
                        keys,
                        ["index", "function"],
                        "later fragment carries index + arguments only: {tc}"
                    );
                    let fkeys: Vec<&String> =
                        tc["function"].as_object().expect("object").keys().collect();
                    assert_eq!(fkeys, ["arguments"], "later fragment: {tc}");
                }
            }
        }
    }
}

#[test]
fn recorded_streams_pass_through_byte_for_byte() {
    for rel in [
        "openai-chat/chat_stream_tool_call_roundtrip.turn1.sse",
        "openai-chat/chat_stream_tool_call_roundtrip.turn2.sse",
        "openai-chat/chat_stream_text_with_usage.sse",
    ] {
        let raw = fixtures::read(rel).expect("fixture");
        let (out, n) = run(&[&raw], true).expect("normalizes");
        assert_eq!(
            String::from_utf8_lossy(&out),
            String::from_utf8_lossy(&raw),
            "{rel}"
        );
        assert!(
            n.usage().is_some_and(|u| u.total_tokens > 0),
            "{rel}: usage read"
        );
    }
}

#[test]
fn usage_chunk_dropped_when_client_did_not_ask() {
    let raw =
        fixtures::read("openai-chat/chat_stream_tool_call_roundtrip.turn1.sse").expect("fixture");
    let (out, n) = run(&[&raw], false).expect("normalizes");
    let chunks = events(&out);
    assert!(
        chunks
            .iter()
            .all(|c| c.get("usage").is_none_or(Value::is_null)),
        "no usage reaches the client"
    );
    assert_eq!(
        n.usage().map(|u| u.total_tokens),
        Some(68),
        "but the gateway still read it"
    );
    assert!(out.ends_with(b"data: [DONE]\n\n"));
    // Everything else is untouched.
    let with = events(&run(&[&raw], true).expect("ok").0);
    assert_eq!(chunks.len() + 1, with.len());
}

#[test]
fn every_split_gives_the_same_output() {
    let raw =
        fixtures::read("openai-chat/chat_stream_tool_call_roundtrip.turn1.sse").expect("fixture");
    let whole = run(&[&raw], false).expect("ok").0;
    for cut in 1..raw.len() {
        let split = run(&[&raw[..cut], &raw[cut..]], false).expect("ok").0;
        assert_eq!(split, whole, "split at {cut}");
    }
}

#[test]
fn every_upstream_style_rebuilds_the_recorded_parallel_calls() {
    let completion =
        fixtures::json("openai-chat/chat_nonstream_parallel_tool_calls.json").expect("fixture");
    let expected = completion["choices"][0]["message"]["tool_calls"]
        .as_array()
        .expect("calls")
        .clone();
    for style in [
        Style::Standard,
        Style::Whole,
        Style::NoIndex,
        Style::RepeatNames,
        Style::SameIndex,
        Style::Sloppy,
    ] {
        let frames = streamify(&completion, style, true);
        let input: Vec<u8> = frames.concat();
        for cut in [input.len() / 3, input.len() / 2] {
            let (out, n) = run(&[&input[..cut], &input[cut..]], false).expect("normalizes");
            let chunks = events(&out);
            assert_standard_shape(&chunks);
            let (_, calls, finishes) = accumulate(&chunks);
            assert_eq!(finishes, ["tool_calls"], "{style:?}: one finish_reason");
            assert_eq!(calls.len(), expected.len(), "{style:?}: {calls:?}");
            for (got, want) in calls.iter().zip(&expected) {
                assert_eq!(
                    got["function"]["name"], want["function"]["name"],
                    "{style:?}"
                );
                let ga: Value =
                    serde_json::from_str(got["function"]["arguments"].as_str().expect("s"))
                        .expect("valid JSON args");
                let wa: Value =
                    serde_json::from_str(want["function"]["arguments"].as_str().expect("s"))
                        .expect("json");
                assert_eq!(ga, wa, "{style:?}");
                if style == Style::Sloppy {
                    assert!(
                        got["id"].as_str().is_some_and(|s| s.starts_with("call_")),
                        "{style:?}: id made up"
                    );
                } else {
                    assert_eq!(got["id"], want["id"], "{style:?}");
                    assert_eq!(
                        got["function"]["arguments"], want["function"]["arguments"],
                        "{style:?}: exact text"
                    );
                }
            }
            assert!(n.usage().is_some(), "{style:?}");
            assert!(chunks
                .iter()
                .all(|c| c.get("usage").is_none_or(Value::is_null)));
        }
    }
}

#[test]
fn role_is_added_and_missing_done_is_supplied() {
    let input = b"data: {\"id\":\"x\",\"object\":\"chat.completion.chunk\",\"created\":1,\"model\":\"m\",\"choices\":[{\"index\":0,\"delta\":{\"content\":\"hi\"},\"finish_reason\":null}]}\n\ndata: {\"id\":\"x\",\"object\":\"chat.completion.chunk\",\"created\":1,\"model\":\"m\",\"choices\":[{\"index\":0,\"delta\":{},\"finish_reason\":\"stop\"}]}\n\n";
    let (out, _) = run(&[input], false).expect("ok");
    let chunks = events(&out);
    assert_eq!(chunks[0]["choices"][0]["delta"]["role"], "assistant");
    assert_eq!(chunks[0]["choices"][0]["delta"]["content"], "hi");
    assert!(out.ends_with(b"data: [DONE]\n\n"));
}

#[test]
fn duplicate_finish_reasons_collapse_to_one() {
    let c = |f: &str| {
        format!("data: {{\"id\":\"x\",\"choices\":[{{\"index\":0,\"delta\":{{}},\"finish_reason\":{f}}}]}}\n\n")
    };
    let input = format!(
        "{}{}{}data: [DONE]\n\n",
        c("null").replace("{}", "{\"role\":\"assistant\"}"),
        c("\"stop\""),
        c("\"stop\"")
    );
    let (out, _) = run(&[input.as_bytes()], false).expect("ok");
    let (_, _, finishes) = accumulate(&events(&out));
    assert_eq!(finishes, ["stop"]);
}

#[test]
fn stream_cut_before_finish_is_an_error() {
    let raw = fixtures::read("openai-chat/chat_stream_text_with_usage.sse").expect("fixture");
    let cut = raw.len() / 2;
    let at_boundary = raw[..cut].iter().rposition(|b| *b == b'\n').unwrap_or(0) + 1;
    let err = run(&[&raw[..at_boundary]], false).err().unwrap_or_default();
    assert!(
        err.contains("before it finished") || err.contains("middle"),
        "{err}"
    );
}

#[test]
fn upstream_error_event_is_passed_on_and_ends_the_stream() {
    let input = b"data: {\"id\":\"x\",\"choices\":[{\"index\":0,\"delta\":{\"role\":\"assistant\",\"content\":\"a\"},\"finish_reason\":null}]}\n\ndata: {\"error\":{\"message\":\"boom\",\"type\":\"server_error\"}}\n\n";
    let (out, n) = run(&[input], false).expect("ok");
    assert!(n.is_complete());
    let chunks = events(&out);
    assert_eq!(chunks.last().expect("some")["error"]["message"], "boom");
}

#[test]
fn regression_final_chunk_usage_is_kept_when_it_also_carries_choices() {
    // Some compatible servers put usage on the finish chunk instead of a separate one.
    let input = b"data: {\"id\":\"x\",\"choices\":[{\"index\":0,\"delta\":{\"role\":\"assistant\",\"content\":\"a\"},\"finish_reason\":null}]}\n\ndata: {\"id\":\"x\",\"choices\":[{\"index\":0,\"delta\":{},\"finish_reason\":\"stop\"}],\"usage\":{\"prompt_tokens\":5,\"completion_tokens\":1,\"total_tokens\":6,\"prompt_tokens_details\":{\"cached_tokens\":4}}}\n\ndata: [DONE]\n\n";
    let (out, n) = run(&[input], true).expect("ok");
    let chunks = events(&out);
    let last = chunks.last().expect("chunks");
    assert_eq!(last["usage"]["prompt_tokens_details"]["cached_tokens"], 4);
    assert_eq!(last["choices"][0]["finish_reason"], "stop");
    assert_eq!(n.usage().map(|u| u.total_tokens), Some(6));
    // Not asked for: the choices stay, the usage goes, and the gateway still read it.
    let (out, n) = run(&[input], false).expect("ok");
    let chunks = events(&out);
    assert!(chunks.iter().all(|c| c.get("usage").is_none()));
    assert_eq!(
        chunks.last().expect("chunks")["choices"][0]["finish_reason"],
        "stop"
    );
    assert_eq!(n.usage().map(|u| u.prompt_tokens), Some(5));
}

#[test]
fn usage_cost_is_added_to_the_usage_chunk_when_asked() {
    use jusinfer_translate::chat_stream::CostRule;
    use jusinfer_translate::pricing::Price;
    let raw =
        fixtures::read("openai-chat/chat_stream_tool_call_roundtrip.turn1.sse").expect("fixture");
    let price = Price {
        input: 0.15,
        output: 0.6,
        cache_read: Some(0.075),
        cache_write: None,
    };
    for (rule, want) in [
        (
            CostRule { price: Some(price) },
            json!((53.0 * 0.15 + 15.0 * 0.6) / 1e6),
        ),
        (CostRule { price: None }, Value::Null),
    ] {
        let mut d = Decoder::new();
        d.push(&raw);
        let mut n = ChatStreamNormalizer::new(Options {
            include_usage: true,
            id_seed: "s".into(),
            cost: Some(rule),
        });
        let mut out = Vec::new();
        while let Some(ev) = d.next_event().expect("sse") {
            n.push(&ev, &mut out).expect("push");
        }
        let chunks = events(&out.concat());
        let usage = &chunks.last().expect("usage chunk")["usage"];
        match (&usage["cost"], &want) {
            (Value::Number(got), Value::Number(w)) => {
                assert!((got.as_f64().unwrap_or(0.0) - w.as_f64().unwrap_or(1.0)).abs() < 1e-12)
            }
            (got, w) => assert_eq!(got, w),
        }
        assert!(usage.as_object().expect("object").contains_key("cost"));
        assert_eq!(
            usage["prompt_tokens"], 53,
            "the rest of the usage is the upstream's"
        );
    }
}

#[test]
fn regression_invalid_utf8_in_a_passed_through_event_is_an_error() {
    // Found by the `chat_stream` fuzz target: serde skips ignored strings without checking
    // their UTF-8, so a pass-through event with a broken byte reached the client.
    let raw = fixtures::read("openai-chat/chat_stream_text_with_usage.sse").expect("fixture");
    let mut bad = raw.to_vec();
    // A content event past the first (the first is rebuilt, so parsed in full).
    let at = bad
        .windows(6)
        .enumerate()
        .filter(|(_, w)| *w == b"\"id\":\"")
        .nth(2)
        .expect("a third event")
        .0
        + 8;
    bad[at] = 0xe3;
    let err = run(&[&bad], true).err().unwrap_or_default();
    assert!(err.contains("not valid UTF-8"), "{err}");
}

#[test]
fn regression_a_non_utf8_comment_line_is_not_passed_on() {
    // Found by the `chat_stream` fuzz target: the raw frame of an unchanged event also holds
    // its comment and unknown-field lines, which nothing decoded.
    let raw = fixtures::read("openai-chat/chat_stream_text_with_usage.sse").expect("fixture");
    let mut bad = Vec::new();
    for (i, ev) in raw.split_inclusive(|b| *b == b'\n').enumerate() {
        if i == 4 {
            bad.extend_from_slice(b": keep-alive \xff\xfe\n");
        }
        bad.extend_from_slice(ev);
    }
    let (out, _) = run(&[&bad], true).expect("a valid stream");
    assert!(std::str::from_utf8(&out).is_ok());
    let clean = run(&[&raw], true).expect("valid").0;
    assert_eq!(
        events(&out),
        events(&clean),
        "the same events, minus the bad line"
    );
}

#[test]
fn regression_a_form_feed_after_the_json_is_not_passed_on() {
    // Found by the `chat_stream` fuzz target: ASCII whitespace that is not JSON whitespace
    // was trimmed before the check, and the raw frame (form feed included) went out.
    let raw = fixtures::read("openai-chat/chat_stream_text_with_usage.sse").expect("fixture");
    let text = String::from_utf8(raw.to_vec()).expect("utf8");
    let at = text.match_indices("}\n\n").nth(2).expect("a third event").0 + 1;
    let bad = format!("{}\u{c}{}", &text[..at], &text[at..]);
    match run(&[bad.as_bytes()], true) {
        Ok((out, _)) => assert!(!out.contains(&0x0c), "no form feed reaches the client"),
        Err(e) => assert!(e.contains("not valid JSON"), "{e}"),
    }
}

/// Azure's recorded streams: the choice-less `prompt_filter_results` chunk never reaches a
/// client, every choice has a `delta`, `content_filter_results` / `obfuscation` /
/// `latency_checkpoint` pass through as unknown fields (SPEC §4), text, tool calls, finish
/// reasons and usage come out whole, at every split of the input.
#[test]
fn recorded_azure_streams_reach_clients_in_the_standard_shape() {
    for rel in [
        "azure/azure_chat_stream_text.sse",
        "azure/azure_chat_stream_chunk_without_delta.sse",
        "azure/azure_chat_stream_finish_length.sse",
        "azure/azure_chat_stream_parallel_tool_calls.sse",
        "azure/azure_chat_stream_usage_latency_checkpoint.sse",
        "azure/azure_v1_chat_stream_include_usage.sse",
    ] {
        let raw = fixtures::read(rel).expect("fixture");
        let recorded = events(&raw);
        let (out, n) = run(&[&raw], true).expect("normalizes");
        let chunks = events(&out);
        assert!(out.ends_with(b"data: [DONE]\n\n"), "{rel}");
        assert!(
            recorded[0].get("prompt_filter_results").is_some(),
            "{rel}: recorded with the prompt filter chunk"
        );
        for c in &chunks {
            assert!(c.get("prompt_filter_results").is_none(), "{rel}: {c}");
            let choices = c["choices"].as_array().expect("choices");
            assert!(
                !choices.is_empty() || c["usage"].is_object(),
                "{rel}: a chunk with nothing to read: {c}"
            );
            for ch in choices {
                assert!(ch["delta"].is_object(), "{rel}: no delta: {ch}");
            }
        }
        assert_eq!(
            chunks[0]["choices"][0]["delta"]["role"], "assistant",
            "{rel}"
        );
        // What the recording says, accumulated the same way.
        let (want_text, want_calls, want_finish) = accumulate(&recorded);
        let (text, calls, finishes) = accumulate(&chunks);
        assert_eq!(text, want_text, "{rel}");
        assert_eq!(finishes, want_finish, "{rel}");
        assert_eq!(finishes.len(), 1, "{rel}");
        assert_eq!(calls, want_calls, "{rel}");
        for ch in chunks
            .iter()
            .flat_map(|c| c["choices"].as_array().into_iter().flatten())
        {
            for tc in ch["delta"]["tool_calls"].as_array().into_iter().flatten() {
                assert!(tc["index"].is_u64(), "{rel}: {tc}");
            }
        }
        // Unknown fields of a same-dialect upstream are passed back.
        assert!(
            chunks.iter().any(|c| c["obfuscation"].is_string()
                || c["choices"][0]["content_filter_results"].is_object()),
            "{rel}"
        );
        if raw.windows(9).any(|w| w == b"\"usage\":{") {
            let usage = n.usage().expect("usage read");
            assert!(usage.total_tokens > 0, "{rel}");
            assert!(
                chunks
                    .iter()
                    .any(|c| c["usage"]["total_tokens"].as_u64() == Some(usage.total_tokens)),
                "{rel}: usage chunk kept"
            );
        }
        if rel.contains("latency") {
            assert!(
                chunks.iter().any(|c| c["latency_checkpoint"].is_object()),
                "{rel}"
            );
        }
        if rel.contains("without_delta") {
            for cut in 1..raw.len() {
                let split = run(&[&raw[..cut], &raw[cut..]], true).expect("ok").0;
                assert_eq!(split, out, "{rel}: split at {cut}");
            }
        }
    }
}

/// A filter report that arrives as a choice with neither `delta` nor anything else (Azure's
/// asynchronous filter, docs) gets an empty `delta` and keeps its report; a bare one is
/// dropped.
#[test]
fn a_choice_without_delta_mid_stream_is_normalized() {
    let input = concat!(
        "data: {\"id\":\"c\",\"choices\":[{\"index\":0,\"delta\":{\"role\":\"assistant\",\"content\":\"Hi\"},\"finish_reason\":null}]}\n\n",
        "data: {\"id\":\"c\",\"choices\":[{\"index\":0,\"content_filter_results\":{\"hate\":{\"filtered\":false,\"severity\":\"safe\"}},\"finish_reason\":null}]}\n\n",
        "data: {\"id\":\"c\",\"choices\":[{\"index\":0,\"finish_reason\":null}]}\n\n",
        "data: {\"id\":\"c\",\"choices\":[{\"index\":0,\"delta\":{\"content\":\"!\"},\"finish_reason\":null}]}\n\n",
        "data: {\"id\":\"c\",\"choices\":[{\"index\":0,\"finish_reason\":\"stop\"}]}\n\n",
        "data: [DONE]\n\n",
    );
    let (out, _) = run(&[input.as_bytes()], true).expect("normalizes");
    let chunks = events(&out);
    assert_eq!(chunks.len(), 4, "{}", String::from_utf8_lossy(&out));
    for c in &chunks {
        assert!(c["choices"][0]["delta"].is_object(), "{c}");
    }
    assert_eq!(
        chunks[1]["choices"][0]["content_filter_results"]["hate"]["severity"],
        "safe"
    );
    assert_eq!(accumulate(&chunks).0, "Hi!");
    assert_eq!(chunks[3]["choices"][0]["finish_reason"], "stop");
}
