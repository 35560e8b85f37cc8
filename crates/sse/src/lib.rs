//! Incremental Server-Sent Events decoder and encoder.
//!
//! The decoder takes bytes split anywhere (mid-line, mid-`\r\n`, mid-UTF-8) and yields one
//! [`Event`] per dispatched SSE event, carrying both the parsed fields and the exact raw bytes
//! of the frame, so a caller that does not need to change an event can forward it untouched.
//! It follows the WHATWG event-stream rules: `\n`, `\r\n` and `\r` end lines, a leading space
//! after the colon is stripped, several `data:` lines join with `\n`, comment lines (`:`) are
//! skipped, and a blank line dispatches.
//!
//! [`eventstream`] does the same for AWS's binary event stream (Bedrock's streams).
//!
//! This crate does no I/O and knows nothing about any LLM dialect.

pub mod eventstream;

use bytes::{Bytes, BytesMut};

/// Largest event the decoder accepts before reporting [`ErrorKind::EventTooLarge`].
pub const DEFAULT_MAX_EVENT_BYTES: usize = 16 * 1024 * 1024;

/// One dispatched SSE event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    /// The `event:` field, when the frame had one.
    pub event: Option<String>,
    /// The joined `data:` lines.
    pub data: Bytes,
    /// The frame exactly as it arrived, blank line included.
    pub raw: Bytes,
}

/// Why a stream could not be decoded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Error {
    kind: ErrorKind,
}

/// The kinds of decoding failure.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum ErrorKind {
    /// The stream ended in the middle of a line.
    Truncated,
    /// One event grew past the decoder's size limit.
    EventTooLarge,
}

impl Error {
    /// What went wrong.
    pub fn kind(&self) -> ErrorKind {
        self.kind
    }
}

impl std::fmt::Display for Error {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.kind {
            ErrorKind::Truncated => f.write_str("event stream ended in the middle of an event"),
            ErrorKind::EventTooLarge => {
                f.write_str("event stream sent an event over the size limit")
            }
        }
    }
}

impl std::error::Error for Error {}

/// Incremental decoder: [`Decoder::push`] bytes, then drain [`Decoder::next_event`].
#[derive(Debug)]
pub struct Decoder {
    buf: BytesMut,
    /// Bytes of `buf` already split into lines for the current frame.
    scanned: usize,
    /// The stream has ended: a `\r` at the end of the buffer is a whole line end.
    eof: bool,
    event: Option<String>,
    data: Vec<u8>,
    has_data: bool,
    max_event_bytes: usize,
}

impl Default for Decoder {
    fn default() -> Self {
        Self::new()
    }
}

impl Decoder {
    /// A decoder with the default size limit.
    pub fn new() -> Self {
        Self::with_limit(DEFAULT_MAX_EVENT_BYTES)
    }

    /// A decoder that rejects events larger than `max_event_bytes`.
    pub fn with_limit(max_event_bytes: usize) -> Self {
        Self {
            buf: BytesMut::new(),
            scanned: 0,
            eof: false,
            event: None,
            data: Vec::new(),
            has_data: false,
            max_event_bytes,
        }
    }

    /// Appends bytes received from the stream.
    pub fn push(&mut self, chunk: &[u8]) {
        self.buf.extend_from_slice(chunk);
    }

    /// The next complete event, if one has arrived.
    pub fn next_event(&mut self) -> Result<Option<Event>, Error> {
        loop {
            let rest = &self.buf[self.scanned..];
            let Some(pos) = memchr::memchr2(b'\n', b'\r', rest) else {
                if self.buf.len() > self.max_event_bytes {
                    return Err(Error {
                        kind: ErrorKind::EventTooLarge,
                    });
                }
                return Ok(None);
            };
            let line_start = self.scanned;
            let line_end = line_start + pos;
            let mut next = line_end + 1;
            if rest[pos] == b'\r' {
                match self.buf.get(next) {
                    Some(b'\n') => next += 1,
                    Some(_) => {}
                    // A `\n` may follow in the next chunk: wait for it, so a frame's raw
                    // bytes do not depend on where the stream was split.
                    None if !self.eof => return Ok(None),
                    None => {}
                }
            }
            self.scanned = next;
            if line_end == line_start {
                // Blank line: dispatch.
                let raw = self.buf.split_to(next).freeze();
                self.scanned = 0;
                if let Some(ev) = self.take_event(raw) {
                    return Ok(Some(ev));
                }
                continue;
            }
            let line = self.buf[line_start..line_end].to_vec();
            self.field(&line);
            if self.data.len() > self.max_event_bytes {
                return Err(Error {
                    kind: ErrorKind::EventTooLarge,
                });
            }
        }
    }

    /// Ends the stream: the events still held (a last event whose final blank line the peer
    /// omitted included), or [`ErrorKind::Truncated`] if it stopped in the middle of a line.
    pub fn finish(&mut self) -> Result<Vec<Event>, Error> {
        self.eof = true;
        let mut out = Vec::new();
        while let Some(ev) = self.next_event()? {
            out.push(ev);
        }
        if self.scanned < self.buf.len() {
            return Err(Error {
                kind: ErrorKind::Truncated,
            });
        }
        let raw = self.buf.split().freeze();
        self.scanned = 0;
        out.extend(self.take_event(raw));
        Ok(out)
    }

    fn take_event(&mut self, raw: Bytes) -> Option<Event> {
        let event = self.event.take();
        if !self.has_data {
            self.data.clear();
            return None;
        }
        self.has_data = false;
        let data = Bytes::from(std::mem::take(&mut self.data));
        Some(Event { event, data, raw })
    }

    fn field(&mut self, line: &[u8]) {
        if line[0] == b':' {
            return;
        }
        let (name, value) = match memchr::memchr(b':', line) {
            Some(i) => {
                let v = &line[i + 1..];
                (&line[..i], v.strip_prefix(b" ").unwrap_or(v))
            }
            None => (line, &b""[..]),
        };
        match name {
            b"data" => {
                if self.has_data {
                    self.data.push(b'\n');
                }
                self.data.extend_from_slice(value);
                self.has_data = true;
            }
            b"event" => self.event = Some(String::from_utf8_lossy(value).into_owned()),
            _ => {}
        }
    }
}

/// Writes one event in canonical form: optional `event:` line, one `data:` line per line of
/// `data`, and the blank line.
pub fn encode(event: Option<&str>, data: &[u8], out: &mut BytesMut) {
    if let Some(name) = event {
        out.extend_from_slice(b"event: ");
        out.extend_from_slice(name.as_bytes());
        out.extend_from_slice(b"\n");
    }
    for line in data.split(|b| *b == b'\n') {
        out.extend_from_slice(b"data: ");
        out.extend_from_slice(line);
        out.extend_from_slice(b"\n");
    }
    out.extend_from_slice(b"\n");
}

/// [`encode`] into a fresh buffer.
pub fn encode_bytes(event: Option<&str>, data: &[u8]) -> Bytes {
    let mut out = BytesMut::with_capacity(data.len() + 16);
    encode(event, data, &mut out);
    out.freeze()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decode_all(parts: &[&[u8]]) -> Result<Vec<Event>, Error> {
        let mut d = Decoder::new();
        let mut out = Vec::new();
        for p in parts {
            d.push(p);
            while let Some(e) = d.next_event()? {
                out.push(e);
            }
        }
        out.extend(d.finish()?);
        Ok(out)
    }

    fn fixtures() -> Vec<(String, Vec<u8>)> {
        let root =
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/fixtures");
        let mut out = Vec::new();
        for dir in ["openai-chat", "anthropic", "responses", "errors"] {
            let Ok(rd) = std::fs::read_dir(root.join(dir)) else {
                continue;
            };
            for entry in rd.flatten() {
                let p = entry.path();
                if p.extension().is_some_and(|e| e == "sse") {
                    if let Ok(bytes) = std::fs::read(&p) {
                        out.push((p.display().to_string(), bytes));
                    }
                }
            }
        }
        out
    }

    #[test]
    fn every_fixture_split_at_every_byte_decodes_the_same() {
        let fx = fixtures();
        assert!(
            fx.len() >= 8,
            "expected the shared SSE fixtures, found {}",
            fx.len()
        );
        for (name, bytes) in fx {
            let whole = decode_all(&[&bytes]).unwrap_or_else(|e| panic!("{name}: {e}"));
            assert!(!whole.is_empty(), "{name}: no events");
            let raw_total: usize = whole.iter().map(|e| e.raw.len()).sum();
            assert!(raw_total <= bytes.len(), "{name}: raw frames exceed input");
            for cut in 1..bytes.len() {
                let split = decode_all(&[&bytes[..cut], &bytes[cut..]])
                    .unwrap_or_else(|e| panic!("{name} @{cut}: {e}"));
                assert_eq!(split, whole, "{name}: split at {cut} differs");
            }
        }
    }

    #[test]
    fn byte_by_byte_equals_whole() {
        for (name, bytes) in fixtures() {
            let whole = decode_all(&[&bytes]).expect("whole");
            let parts: Vec<&[u8]> = bytes.chunks(1).collect();
            assert_eq!(decode_all(&parts).expect("bytes"), whole, "{name}");
        }
    }

    #[test]
    fn line_endings_and_fields() {
        let evs = decode_all(&[
            b"event: a\r\ndata: 1\r\ndata:2\r\n\r\n: comment\n\ndata: x\rdata: y\r\r",
        ])
        .expect("ok");
        assert_eq!(evs.len(), 2);
        assert_eq!(evs[0].event.as_deref(), Some("a"));
        assert_eq!(&evs[0].data[..], b"1\n2");
        assert_eq!(&evs[1].data[..], b"x\ny");
        assert_eq!(evs[1].event, None);
    }

    #[test]
    fn cr_split_from_lf_is_one_line_end() {
        let evs = decode_all(&[b"data: a\r", b"\n\r", b"\ndata: b\n\n"]).expect("ok");
        assert_eq!(evs.len(), 2);
        assert_eq!(&evs[0].raw[..], b"data: a\r\n\r\n");
    }

    #[test]
    fn missing_final_blank_line_still_dispatches() {
        let evs = decode_all(&[b"data: 1\n\ndata: [DONE]\n"]).expect("ok");
        assert_eq!(evs.len(), 2);
        assert_eq!(&evs[1].data[..], b"[DONE]");
    }

    #[test]
    fn truncated_mid_line_is_an_error() {
        let err = decode_all(&[b"data: {\"a\":"]).expect_err("truncated");
        assert_eq!(err.kind(), ErrorKind::Truncated);
    }

    #[test]
    fn oversized_event_is_rejected() {
        let mut d = Decoder::with_limit(8);
        d.push(b"data: 0123456789");
        assert_eq!(
            d.next_event().expect_err("too big").kind(),
            ErrorKind::EventTooLarge
        );
    }

    #[test]
    fn encode_round_trips() {
        let raw = encode_bytes(Some("ping"), b"{\"a\":1}\nsecond");
        let evs = decode_all(&[&raw]).expect("ok");
        assert_eq!(evs[0].event.as_deref(), Some("ping"));
        assert_eq!(&evs[0].data[..], b"{\"a\":1}\nsecond");
        assert_eq!(evs[0].raw, raw);
    }
}
