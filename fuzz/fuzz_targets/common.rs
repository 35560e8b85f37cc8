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
