//! Micro-benchmarks of the translation hot path, over the recorded fixtures: each stream
//! machine per upstream event (what every streamed chunk costs), and each request
//! translation (what every translated request costs once).
//!
//! `cargo bench -p jusinfer-translate --bench hot` times each case; `cargo test --benches` (CI) runs
//! each once as a smoke test (the harness: `jusinfer_testkit::bench`).
#![expect(clippy::expect_used, reason = "a bench fails loudly")]

use std::hint::black_box;

use bytes::Bytes;
use jusinfer_sse::eventstream::Decoder as FrameDecoder;
use jusinfer_sse::{Decoder, Event};
use jusinfer_testkit::bench::{self, Case};
use jusinfer_testkit::fixtures;
use jusinfer_translate::{anthropic, bedrock, chat_stream, gemini, StreamTranslator};
use jusinfer_wire::chat::ChatRequest;

/// A recorded SSE stream's events.
fn sse(rel: &str) -> Vec<Event> {
    let mut d = Decoder::new();
    d.push(&fixtures::read(rel).expect("fixture"));
    let mut evs = Vec::new();
    while let Some(ev) = d.next_event().expect("sse") {
        evs.push(ev);
    }
    evs.extend(d.finish().expect("sse"));
    evs
}

/// A recorded Bedrock event stream's events.
fn eventstream(rel: &str) -> Vec<Event> {
    let mut frames = FrameDecoder::new();
    frames.push(&fixtures::read(rel).expect("fixture"));
    let mut evs = Vec::new();
    while let Some(f) = frames.next_frame().expect("frames") {
        evs.push(bedrock::frame_event(f).expect("event"));
    }
    evs
}

/// One whole stream through a fresh machine; the bytes a client would get.
fn drive(mut m: impl StreamTranslator, events: &[Event], out: &mut Vec<Bytes>) -> usize {
    out.clear();
    for ev in events {
        m.push(ev, out).expect("push");
    }
    m.finish(out).expect("finish");
    out.iter().map(Bytes::len).sum()
}

fn stream_case(
    name: &'static str,
    events: Vec<Event>,
    machine: impl Fn() -> Box<dyn StreamTranslator> + 'static,
) -> Case {
    let mut out = Vec::new();
    Case {
        name,
        ops: events.len(),
        run: Box::new(move || drive(machine(), &events, &mut out)),
    }
}

fn cases() -> Vec<Case> {
    let req: ChatRequest = serde_json::from_slice(
        &fixtures::read("openai-chat/chat_stream_tool_call_roundtrip.turn1.request.json")
            .expect("fixture"),
    )
    .expect("a chat request");
    let (r1, r2, r3) = (req.clone(), req.clone(), req);
    // Whole answers as the upstream sends them.
    let messages_answer =
        fixtures::read("anthropic/anthropic_nonstream_text.json").expect("fixture");
    let converse_answer: String = serde_json::from_value(
        fixtures::json("bedrock/bedrock_converse_nonstream_text.exchange.json").expect("fixture")
            ["response"]["body"]
            .clone(),
    )
    .expect("a recorded body");
    vec![
        Case {
            name: "answer: Anthropic Messages → Chat",
            ops: 1,
            run: Box::new(move || {
                let m: jusinfer_wire::anthropic::MessagesResponse =
                    serde_json::from_slice(black_box(&messages_answer)).expect("messages");
                let c = anthropic::response::messages_to_chat(&m, 0, None);
                serde_json::to_vec(&c).expect("json").len()
            }),
        },
        Case {
            name: "answer: Bedrock Converse → Chat",
            ops: 1,
            run: Box::new(move || {
                let r: jusinfer_wire::bedrock::ConverseResponse =
                    serde_json::from_str(black_box(&converse_answer)).expect("converse");
                let c = bedrock::response::to_chat(&r, "m", "bench", 0, None);
                serde_json::to_vec(&c).expect("json").len()
            }),
        },
        stream_case(
            "stream: chat pass-through normalizer, per event",
            sse("openai-chat/chat_stream_text_with_usage.sse"),
            || {
                Box::new(chat_stream::ChatStreamNormalizer::new(
                    chat_stream::Options {
                        include_usage: true,
                        id_seed: "bench".to_owned(),
                        cost: None,
                    },
                ))
            },
        ),
        stream_case(
            "stream: Anthropic → Chat, per event",
            sse("anthropic/anthropic_stream_thinking.sse"),
            || Box::new(anthropic::stream::AnthropicToChat::new(Default::default())),
        ),
        stream_case(
            "stream: Gemini → Chat, per event",
            sse("gemini/gemini_stream_thinking_thought_summaries.sse"),
            || Box::new(gemini::stream::GeminiToChat::new(Default::default())),
        ),
        stream_case(
            "stream: Bedrock ConverseStream → Chat, per event",
            eventstream("bedrock/bedrock_converse_stream_text_then_tool_use.eventstream"),
            || Box::new(bedrock::stream::BedrockToChat::new(Default::default())),
        ),
        Case {
            name: "request: Chat → Anthropic Messages",
            ops: 1,
            run: Box::new(move || {
                let t = anthropic::request::chat_to_messages(
                    black_box(&r1),
                    &anthropic::request::Options {
                        upstream_model: "claude-sonnet-4-5",
                        default_max_tokens: 4096,
                        present_fields: &[],
                    },
                )
                .expect("translates");
                serde_json::to_vec(&t.request).expect("json").len()
            }),
        },
        Case {
            name: "request: Chat → Gemini",
            ops: 1,
            run: Box::new(move || {
                let t = gemini::request::chat_to_gemini(black_box(&r2), &Default::default())
                    .expect("translates");
                serde_json::to_vec(&t.request).expect("json").len()
            }),
        },
        Case {
            name: "request: Chat → Bedrock Converse",
            ops: 1,
            run: Box::new(move || {
                let t = bedrock::request::chat_to_converse(
                    black_box(&r3),
                    &bedrock::request::Options {
                        model: "us.amazon.nova-pro-v1:0",
                        present_fields: &[],
                    },
                )
                .expect("translates");
                serde_json::to_vec(&t.body).expect("json").len()
            }),
        },
    ]
}

fn main() {
    bench::run(cases());
}
