//! Incremental decoder of AWS's binary event stream (`application/vnd.amazon.eventstream`),
//! the framing of Bedrock's `ConverseStream` and `InvokeModelWithResponseStream` answers.
//!
//! Each frame is `total length (u32) | headers length (u32) | prelude CRC32 | headers |
//! payload | message CRC32`, big-endian. The frames themselves are read by AWS's own
//! `aws-smithy-eventstream` (both CRCs checked); this decoder adds what a proxy needs on
//! top: bytes pushed split anywhere, a bound on the frame size checked as soon as the
//! prelude is in (so a corrupt or hostile length never makes it buffer more), and the
//! headers every Bedrock frame carries (`:message-type`, `:event-type`, `:exception-type`,
//! `:error-code`, `:error-message`) read into a [`Frame`].

use aws_smithy_eventstream::frame::read_message_from;
use aws_smithy_types::event_stream::{HeaderValue, Message};
use bytes::{Buf, Bytes, BytesMut};

/// Largest frame accepted (Bedrock's are a few KiB; AWS allows 16 MiB).
pub const DEFAULT_MAX_FRAME_BYTES: usize = 1024 * 1024;

/// Prelude (12 bytes) and message CRC (4): the smallest frame.
const MIN_FRAME: usize = 16;
const PRELUDE: usize = 12;

/// What kind of frame it is (`:message-type`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FrameKind {
    /// `event`: `:event-type` names it (`messageStart`, `contentBlockDelta`, `chunk`, …).
    Event(String),
    /// `exception`: a modeled error mid-stream (`throttlingException`, …), its payload a
    /// JSON `{"message": …}`.
    Exception(String),
    /// `error`: an unmodeled error, `:error-code` and `:error-message` in the headers.
    Error { code: String, message: String },
}

/// One decoded frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frame {
    pub kind: FrameKind,
    /// `:content-type`, when present.
    pub content_type: Option<String>,
    pub payload: Bytes,
}

/// Why the bytes are not an event stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Error {
    pub message: String,
}

impl std::fmt::Display for Error {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for Error {}

fn error(message: impl Into<String>) -> Error {
    Error {
        message: message.into(),
    }
}

/// Push bytes as they arrive, take frames out.
#[derive(Debug)]
pub struct Decoder {
    buf: BytesMut,
    max_frame: usize,
    /// An error ends the stream: nothing after it is trusted.
    failed: bool,
}

impl Default for Decoder {
    fn default() -> Self {
        Self::new()
    }
}

impl Decoder {
    pub fn new() -> Self {
        Self::with_max_frame(DEFAULT_MAX_FRAME_BYTES)
    }

    pub fn with_max_frame(max_frame: usize) -> Self {
        Self {
            buf: BytesMut::new(),
            max_frame,
            failed: false,
        }
    }

    pub fn push(&mut self, bytes: &[u8]) {
        self.buf.extend_from_slice(bytes);
    }

    /// The next complete frame, `Ok(None)` until more bytes arrive.
    pub fn next_frame(&mut self) -> Result<Option<Frame>, Error> {
        if self.failed {
            return Err(error("the event stream is already broken"));
        }
        self.next_inner().inspect_err(|_| self.failed = true)
    }

    fn next_inner(&mut self) -> Result<Option<Frame>, Error> {
        if self.buf.len() < PRELUDE {
            return Ok(None);
        }
        let mut prelude = &self.buf[..PRELUDE];
        let total = prelude.get_u32() as usize;
        let headers = prelude.get_u32() as usize;
        let crc = prelude.get_u32();
        // Checked here, before waiting for `total` bytes that a corrupt length would name.
        if crc32(&self.buf[..8]) != crc {
            return Err(error(
                "an event-stream frame whose prelude checksum does not match",
            ));
        }
        if total < MIN_FRAME || headers > total - MIN_FRAME {
            return Err(error(format!(
                "an event-stream frame of impossible length ({total} bytes, {headers} of headers)"
            )));
        }
        if total > self.max_frame {
            return Err(error(format!(
                "an event-stream frame of {total} bytes (at most {} accepted)",
                self.max_frame
            )));
        }
        if self.buf.len() < total {
            return Ok(None);
        }
        let bytes = self.buf.split_to(total).freeze();
        let message = read_message_from(bytes)
            .map_err(|e| error(format!("a malformed event-stream frame ({e})")))?;
        frame(&message).map(Some)
    }

    /// The upstream closed: an error if a frame was cut off.
    pub fn finish(&self) -> Result<(), Error> {
        if self.failed || self.buf.is_empty() {
            Ok(())
        } else {
            Err(error(format!(
                "the event stream ended inside a frame ({} bytes left)",
                self.buf.len()
            )))
        }
    }
}

fn header<'a>(m: &'a Message, name: &str) -> Result<Option<&'a str>, Error> {
    match m.headers().iter().find(|h| h.name().as_str() == name) {
        None => Ok(None),
        Some(h) => match h.value() {
            HeaderValue::String(s) => Ok(Some(s.as_str())),
            _ => Err(error(format!("event-stream header {name} is not a string"))),
        },
    }
}

fn frame(m: &Message) -> Result<Frame, Error> {
    let named = |name: &str| -> Result<String, Error> {
        header(m, name)?
            .map(str::to_owned)
            .ok_or_else(|| error(format!("an event-stream frame without {name}")))
    };
    let kind = match header(m, ":message-type")? {
        Some("event") => FrameKind::Event(named(":event-type")?),
        Some("exception") => FrameKind::Exception(named(":exception-type")?),
        Some("error") => FrameKind::Error {
            code: named(":error-code")?,
            message: header(m, ":error-message")?.unwrap_or_default().to_owned(),
        },
        Some(other) => {
            return Err(error(format!(
                "an event-stream frame of unknown :message-type {other:?}"
            )))
        }
        None => return Err(error("an event-stream frame without :message-type")),
    };
    Ok(Frame {
        kind,
        content_type: header(m, ":content-type")?.map(str::to_owned),
        payload: m.payload().clone(),
    })
}

/// CRC-32 (IEEE), the event stream's checksum.
fn crc32(bytes: &[u8]) -> u32 {
    let mut h = crc32fast::Hasher::new();
    h.update(bytes);
    h.finalize()
}

#[cfg(test)]
mod tests {
    use super::*;
    use aws_smithy_eventstream::frame::write_message_to;
    use aws_smithy_types::event_stream::Header;

    fn encode(headers: &[(&str, &str)], payload: &'static [u8]) -> Vec<u8> {
        let mut m = Message::new(Bytes::from_static(payload));
        for (k, v) in headers {
            m = m.add_header(Header::new(
                (*k).to_owned(),
                HeaderValue::String((*v).to_owned().into()),
            ));
        }
        let mut out = Vec::new();
        write_message_to(&m, &mut out).expect("encodes");
        out
    }

    #[test]
    fn exceptions_and_errors_are_frames_too() {
        let mut d = Decoder::new();
        d.push(&encode(
            &[
                (":message-type", "exception"),
                (":exception-type", "throttlingException"),
                (":content-type", "application/json"),
            ],
            br#"{"message":"slow down"}"#,
        ));
        d.push(&encode(
            &[
                (":message-type", "error"),
                (":error-code", "InternalFailure"),
                (":error-message", "oops"),
            ],
            b"",
        ));
        let f = d.next_frame().expect("ok").expect("frame");
        assert_eq!(f.kind, FrameKind::Exception("throttlingException".into()));
        assert_eq!(&f.payload[..], br#"{"message":"slow down"}"#);
        let f = d.next_frame().expect("ok").expect("frame");
        assert_eq!(
            f.kind,
            FrameKind::Error {
                code: "InternalFailure".into(),
                message: "oops".into()
            }
        );
        assert_eq!(d.next_frame(), Ok(None));
        assert_eq!(d.finish(), Ok(()));
    }

    #[test]
    fn a_flipped_bit_anywhere_is_an_error_never_a_frame() {
        let good = encode(
            &[(":message-type", "event"), (":event-type", "messageStop")],
            br#"{"stopReason":"end_turn"}"#,
        );
        for i in 0..good.len() {
            for bit in [0x01u8, 0x80] {
                let mut bad = good.clone();
                bad[i] ^= bit;
                let mut d = Decoder::new();
                d.push(&bad);
                let got = d.next_frame();
                // A length made larger waits for bytes that never come: finish() says so.
                assert!(
                    got.is_err() || (got == Ok(None) && d.finish().is_err()),
                    "byte {i} bit {bit:#x}: {got:?}"
                );
            }
        }
    }

    #[test]
    fn a_frame_over_the_bound_is_refused_from_its_prelude() {
        let big = encode(
            &[(":message-type", "event"), (":event-type", "x")],
            &[0; 64],
        );
        let mut d = Decoder::with_max_frame(64);
        d.push(&big[..PRELUDE]);
        let e = d.next_frame().expect_err("too large");
        assert!(e.message.contains("at most 64"), "{e}");
        assert!(d.next_frame().is_err(), "stays broken");
    }

    #[test]
    fn a_cut_frame_is_reported_at_the_end() {
        let f = encode(&[(":message-type", "event"), (":event-type", "x")], b"{}");
        let mut d = Decoder::new();
        d.push(&f[..f.len() - 1]);
        assert_eq!(d.next_frame(), Ok(None));
        assert!(d.finish().is_err());
    }
}
