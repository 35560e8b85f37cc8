//! The recorded-fixture helpers the dialect tests share, and the tests every dialect must
//! pass alike: garbage, the other dialects' streams, bodies of the wrong shape.

use bytes::Bytes;
use jusinfer_sse::Decoder;
use jusinfer_testkit::fixtures;
use serde_json::{json, Value};

use super::Dialect;

mod chat;
mod gemini;
mod messages;
mod responses;

const ALL: [Dialect; 4] = [
    Dialect::Chat,
    Dialect::Messages,
    Dialect::Responses,
    Dialect::Gemini,
];

/// One fixture's bytes.
pub(crate) fn read(rel: &str) -> Vec<u8> {
    fixtures::read(rel).expect("fixture").to_vec()
}

/// The fixtures under `dir` whose names start with `prefix` and end with `suffix`, sorted.
pub(crate) fn files(dir: &str, prefix: &str, suffix: &str) -> Vec<String> {
    let mut out: Vec<String> = std::fs::read_dir(fixtures::root().join(dir))
        .expect("fixture folder")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with(prefix) && n.ends_with(suffix))
        .map(|n| format!("{dir}/{n}"))
        .collect();
    out.sort();
    assert!(!out.is_empty(), "no fixtures {dir}/{prefix}*{suffix}");
    out
}

/// The successful response bodies a fixture holds: an exchange's (or a list of
/// exchanges') 200 bodies, a `{"responses": [...]}` list, or the file itself.
pub(super) fn bodies(rel: &str) -> Vec<Value> {
    let v = fixtures::json(rel).expect("json fixture");
    let all = match v {
        Value::Array(a) => a,
        Value::Object(ref o) if o.contains_key("responses") => {
            return o["responses"].as_array().expect("responses").clone();
        }
        v => vec![v],
    };
    all.into_iter()
        .filter_map(|e| match e.get("response") {
            None => Some(e),
            Some(r) if r["status"] != json!(200) => None,
            Some(r) => match &r["body"] {
                Value::String(s) => serde_json::from_str(s).ok(),
                Value::Null => None,
                b => Some(b.clone()),
            },
        })
        .collect()
}

/// A stream's frames joined.
/// Every stream in `rels` collects, and its replay collects back to the same body.
pub(super) fn assert_streams_round_trip(
    rels: &[String],
    collect: fn(&[u8]) -> Option<Value>,
    replay: impl Fn(&Value) -> Option<Vec<Bytes>>,
) {
    for rel in rels {
        let b = collect(&read(rel)).unwrap_or_else(|| panic!("{rel} collects"));
        let again = collect(&join(&replay(&b).expect("replays")));
        assert_eq!(again.as_ref(), Some(&b), "{rel}");
    }
}

pub(super) fn join(frames: &[Bytes]) -> Vec<u8> {
    frames.concat()
}

/// Where each frame of `stream` ends.
fn frame_ends(stream: &[u8]) -> Vec<usize> {
    let mut dec = Decoder::new();
    dec.push(stream);
    let mut ends = Vec::new();
    let mut at = 0;
    while let Some(ev) = dec.next_event().expect("decodes") {
        at += ev.raw.len();
        ends.push(at);
    }
    ends
}

/// Cuts `stream` before its last frame (its terminal event) at every frame boundary and
/// at many points inside frames: `collect` must say `None` to each.
pub(super) fn assert_cuts_fail(stream: &[u8], collect: fn(&[u8]) -> Option<Value>) {
    let ends = frame_ends(stream);
    let last_start = ends.iter().rev().nth(1).copied().unwrap_or(0);
    let inside = (0..last_start).step_by(37);
    for cut in ends
        .iter()
        .copied()
        .filter(|e| *e <= last_start)
        .chain(inside)
    {
        assert_eq!(collect(&stream[..cut]), None, "cut at {cut}");
    }
}

/// `stream` with `frame` put in before its last frame.
pub(super) fn splice_before_last(stream: &[u8], frame: &str) -> Vec<u8> {
    let ends = frame_ends(stream);
    let at = ends.iter().rev().nth(1).copied().expect("two frames");
    [&stream[..at], frame.as_bytes(), &stream[at..]].concat()
}

#[test]
fn garbage_is_none_and_never_panics() {
    let mut seed = 0x2545_f491_4f6c_dd1d_u64;
    let mut noise = Vec::new();
    for _ in 0..4096 {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        noise.push(seed.to_le_bytes()[0]);
    }
    let cases: [&[u8]; 9] = [
        b"",
        b"\n\n\n",
        b"data: {\n\n",
        b"data: [DONE]\n\n",
        b"data: {}\n\n",
        b"data: []\n\n",
        b"event: message_stop\ndata: {\"type\":\"message_stop\"}\n\n",
        b"data: \xff\xfe\n\n",
        &noise,
    ];
    for d in ALL {
        for c in cases {
            assert_eq!(d.collect(c), None, "{d:?} {c:?}");
        }
    }
}

#[test]
fn mangled_streams_never_panic() {
    let streams = [
        "openai-chat/chat_stream_tool_call_roundtrip.turn1.sse",
        "anthropic/anthropic_stream_tool_use_roundtrip.turn1.sse",
        "responses/responses_stream_function_call.sse",
        "gemini/gemini_stream_parallel_function_calls_roundtrip.turn1.sse",
    ];
    for rel in streams {
        let s = read(rel);
        for at in (0..s.len()).step_by(11) {
            for byte in [b'"', b'{', b'\n', b'0', 0xff] {
                let mut m = s.clone();
                m[at] = byte;
                for d in ALL {
                    let _ = d.collect(&m);
                }
            }
        }
    }
}

#[test]
fn another_dialects_stream_is_none() {
    let streams = [
        (Dialect::Chat, "openai-chat/chat_stream_text_with_usage.sse"),
        (Dialect::Messages, "anthropic/anthropic_stream_thinking.sse"),
        (Dialect::Responses, "responses/responses_stream_text.sse"),
        (Dialect::Gemini, "gemini/gemini_stream_text.sse"),
    ];
    for (own, rel) in streams {
        let s = read(rel);
        assert!(own.collect(&s).is_some(), "{rel}");
        for d in ALL.into_iter().filter(|d| *d != own) {
            assert_eq!(d.collect(&s), None, "{d:?} over {rel}");
        }
    }
}

#[test]
fn bodies_of_the_wrong_shape_do_not_replay() {
    for d in ALL {
        for body in [json!(null), json!([]), json!("x"), json!({})] {
            assert_eq!(d.replay(&body, true), None, "{d:?} {body}");
        }
    }
    assert_eq!(super::chat::replay(&json!({"choices": [1]}), false), None);
    assert_eq!(super::messages::replay(&json!({"content": [1]})), None);
    assert_eq!(super::responses::replay(&json!({"output": [1]})), None);
}
