//! Checks shared by the stream targets.

/// Every event a client would decode from `out` is UTF-8 and holds JSON or `[DONE]` (a
/// multi-line `data` field is one value: SSE joins its lines).
pub fn check_events(out: &[bytes::Bytes]) {
    let mut d = jusinfer_sse::Decoder::new();
    for f in out {
        assert!(std::str::from_utf8(f).is_ok(), "frames are UTF-8");
        d.push(f);
    }
    let mut events = Vec::new();
    while let Some(ev) = d.next_event().expect("the output is valid SSE") {
        events.push(ev);
    }
    events.extend(d.finish().expect("the output ends cleanly"));
    for ev in events {
        assert!(
            &ev.data[..] == b"[DONE]"
                || serde_json::from_slice::<serde_json::Value>(&ev.data).is_ok(),
            "event is not JSON: {:?}",
            String::from_utf8_lossy(&ev.data)
        );
    }
}

/// Feeds `data` through `machine` as an upstream would: every decodable event, then the
/// end of the stream; returns the frames a client would receive.
pub fn drive<T: jusinfer_translate::StreamTranslator>(
    machine: &mut T,
    data: &[u8],
) -> Vec<bytes::Bytes> {
    let mut d = jusinfer_sse::Decoder::with_limit(1 << 16);
    d.push(data);
    let mut out = Vec::new();
    loop {
        match d.next_event() {
            Ok(Some(ev)) => {
                if machine.push(&ev, &mut out).is_err() || machine.is_complete() {
                    break;
                }
            }
            Ok(None) => {
                let _ = machine.finish(&mut out);
                break;
            }
            Err(_) => break,
        }
    }
    out
}
