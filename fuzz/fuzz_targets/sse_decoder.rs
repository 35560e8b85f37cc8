//! The SSE decoder on arbitrary bytes: never panics, and the events do not depend on how
//! the bytes were split across reads (the first byte picks the split points). The same
//! bytes as a client-bound stream and as a whole answer of each dialect, read for traces
//! (`translate::answer`): never a panic, the same answer however split, captured output
//! that is JSON and within its bound.
#![no_main]

use jusinfer_sse::{Decoder, Event};
use libfuzzer_sys::fuzz_target;

fn decode(chunks: &[&[u8]]) -> Result<Vec<Event>, String> {
    let mut d = Decoder::with_limit(1 << 16);
    let mut out = Vec::new();
    for c in chunks {
        d.push(c);
        while let Some(ev) = d.next_event().map_err(|e| e.to_string())? {
            out.push(ev);
        }
    }
    out.extend(d.finish().map_err(|e| e.to_string())?);
    Ok(out)
}

fuzz_target!(|data: &[u8]| {
    let Some((&step, body)) = data.split_first() else {
        return;
    };
    let whole = decode(&[body]);
    let step = usize::from(step.max(1));
    let pieces: Vec<&[u8]> = body.chunks(step).collect();
    let split = decode(&pieces);
    match (&whole, &split) {
        (Ok(a), Ok(b)) => {
            let a: Vec<(&Option<String>, &[u8])> =
                a.iter().map(|e| (&e.event, &e.data[..])).collect();
            let b: Vec<(&Option<String>, &[u8])> =
                b.iter().map(|e| (&e.event, &e.data[..])).collect();
            assert_eq!(a, b, "events differ when split every {step} bytes");
        }
        // An oversized event is an error however it arrives.
        (Err(_), Err(_)) => {}
        _ => panic!("split every {step} bytes changed the verdict: {whole:?} vs {split:?}"),
    }
    use jusinfer_translate::answer::{of_body, Dialect, Sniffer};
    for d in [Dialect::Chat, Dialect::Messages, Dialect::Responses, Dialect::Gemini] {
        let read = |pieces: &[&[u8]]| {
            let mut s = Sniffer::new(d, Some(64));
            pieces.iter().for_each(|p| s.frame(p));
            s.answer()
        };
        let a = read(&[body]);
        assert_eq!(a, read(&pieces), "{d:?}: the answer changed when split every {step} bytes");
        for out in [a.output, of_body(d, body, Some(64)).output].into_iter().flatten() {
            let v: serde_json::Value = serde_json::from_str(&out).expect("output is JSON");
            assert!(v.is_array());
            // 64 bytes of text and arguments, and at most 16 choices' fixed members.
            assert!(out.len() <= 64 + 16 * 400, "{} bytes of output", out.len());
        }
    }
});
