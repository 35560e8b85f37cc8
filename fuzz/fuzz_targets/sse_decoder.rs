//! The SSE decoder on arbitrary bytes: never panics, and the events do not depend on how
//! the bytes were split across reads (the first byte picks the split points).
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
});
