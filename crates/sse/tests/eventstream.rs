//! The event-stream decoder over every recorded Bedrock stream: the frames it reads are the
//! ones `botocore.eventstream` read from the same bytes (`*.events.json`, PROVENANCE.md),
//! whole, split at every byte, and fed one byte at a time.
#![expect(clippy::expect_used, reason = "test helpers fail loudly")]

use std::path::PathBuf;

use jusinfer_sse::eventstream::{Decoder, Frame, FrameKind};
use serde_json::Value;

fn fixtures() -> PathBuf {
    std::env::var_os("JUSINFER_FIXTURES").map_or_else(
        || PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../../shared/fixtures"),
        PathBuf::from,
    )
}

fn recordings() -> Vec<(String, Vec<u8>, Vec<Value>)> {
    let dir = fixtures().join("bedrock");
    let mut out = Vec::new();
    for entry in std::fs::read_dir(&dir).expect("bedrock fixtures") {
        let path = entry.expect("entry").path();
        let name = path
            .file_name()
            .expect("name")
            .to_string_lossy()
            .into_owned();
        let Some(stem) = name.strip_suffix(".eventstream") else {
            continue;
        };
        let bytes = std::fs::read(&path).expect("read");
        let events: Vec<Value> = serde_json::from_slice(
            &std::fs::read(dir.join(format!("{stem}.events.json"))).expect("events.json"),
        )
        .expect("json");
        out.push((name, bytes, events));
    }
    out.sort_by(|a, b| a.0.cmp(&b.0));
    assert!(out.len() >= 10, "every recorded stream: {}", out.len());
    out
}

fn decode(pieces: &[&[u8]]) -> Vec<Frame> {
    let mut d = Decoder::new();
    let mut frames = Vec::new();
    for p in pieces {
        d.push(p);
        while let Some(f) = d.next_frame().expect("valid frames") {
            frames.push(f);
        }
    }
    d.finish().expect("ends on a frame boundary");
    frames
}

#[test]
fn every_recorded_stream_decodes_to_what_botocore_read() {
    for (name, bytes, events) in recordings() {
        let frames = decode(&[&bytes]);
        assert_eq!(frames.len(), events.len(), "{name}");
        for (f, want) in frames.iter().zip(&events) {
            let h = &want["headers"];
            assert_eq!(h[":message-type"], "event", "{name}");
            assert_eq!(
                f.kind,
                FrameKind::Event(h[":event-type"].as_str().expect("type").to_owned()),
                "{name}"
            );
            assert_eq!(
                f.content_type.as_deref(),
                h[":content-type"].as_str(),
                "{name}"
            );
            let payload: Value = serde_json::from_slice(&f.payload).expect("JSON payload");
            assert_eq!(payload, want["payload"], "{name}");
        }
    }
}

#[test]
fn every_split_gives_the_same_frames() {
    for (name, bytes, _) in recordings() {
        let whole = decode(&[&bytes]);
        for cut in 1..bytes.len() {
            assert_eq!(
                decode(&[&bytes[..cut], &bytes[cut..]]),
                whole,
                "{name} at {cut}"
            );
        }
        let singles: Vec<&[u8]> = bytes.chunks(1).collect();
        assert_eq!(decode(&singles), whole, "{name} byte by byte");
    }
}

#[test]
fn a_recorded_stream_cut_short_is_an_error_at_the_end() {
    for (name, bytes, _) in recordings() {
        let mut d = Decoder::new();
        d.push(&bytes[..bytes.len() - 3]);
        while d.next_frame().expect("valid so far").is_some() {}
        assert!(d.finish().is_err(), "{name}");
    }
}
