//! The AWS event-stream decoder (Bedrock's streams) on arbitrary bytes: never panics, never
//! buffers past its frame bound, and the frames do not depend on how the bytes were split
//! across reads (the first byte picks the split). The same input is also framed properly
//! (pieces between 0xFF bytes as event payloads, written by AWS's own encoder), and those
//! frames must come back exactly, however split, and must fail if a byte is flipped.
#![no_main]

use aws_smithy_eventstream::frame::write_message_to;
use aws_smithy_types::event_stream::{Header, HeaderValue, Message};
use bytes::Bytes;
use jusinfer_sse::eventstream::{Decoder, Frame, FrameKind};
use libfuzzer_sys::fuzz_target;

// Above -max_len (64 KiB) plus headers: every properly framed input fits.
const MAX: usize = 1 << 17;

fn decode(chunks: &[&[u8]]) -> (Vec<Frame>, bool) {
    let mut d = Decoder::with_max_frame(MAX);
    let mut out = Vec::new();
    for c in chunks {
        d.push(c);
        loop {
            match d.next_frame() {
                Ok(Some(f)) => out.push(f),
                Ok(None) => break,
                Err(_) => return (out, true),
            }
        }
    }
    let failed = d.finish().is_err();
    (out, failed)
}

fn split(bytes: &[u8], step: usize) -> Vec<&[u8]> {
    bytes.chunks(step.max(1)).collect()
}

fuzz_target!(|data: &[u8]| {
    let Some((&step, body)) = data.split_first() else {
        return;
    };
    let step = usize::from(step);
    let whole = decode(&[body]);
    assert_eq!(whole, decode(&split(body, step)), "split every {step}");
    for f in &whole.0 {
        assert!(f.payload.len() <= MAX);
    }

    // Proper frames around the input's pieces.
    let payloads: Vec<&[u8]> = body.split(|b| *b == 0xFF).take(64).collect();
    let mut framed = Vec::new();
    for p in &payloads {
        let m = Message::new(Bytes::copy_from_slice(p))
            .add_header(Header::new(":message-type", HeaderValue::String("event".into())))
            .add_header(Header::new(
                ":event-type",
                HeaderValue::String("contentBlockDelta".into()),
            ));
        write_message_to(&m, &mut framed).expect("encodes");
    }
    let (frames, failed) = decode(&split(&framed, step));
    assert!(!failed);
    let got: Vec<&[u8]> = frames.iter().map(|f| &f.payload[..]).collect();
    assert_eq!(got, payloads);
    assert!(frames
        .iter()
        .all(|f| f.kind == FrameKind::Event("contentBlockDelta".into())));
    if !framed.is_empty() {
        let at = (step * 7919) % framed.len();
        framed[at] ^= 0x20;
        let (frames, failed) = decode(&[&framed]);
        assert!(failed, "a flipped byte at {at} went unnoticed");
        assert!(frames.len() < payloads.len());
    }
});
