//! Scenarios: what the upstream model string asks the simulator to do (`sim/<name>` with
//! faults such as status codes, gaps, cuts and stalls).

use bytes::Bytes;

use crate::streamify::Style;

/// The scenario and faults named by the upstream model string.
#[derive(Debug, Default)]
pub struct Scenario {
    pub name: String,
    pub status: Option<u16>,
    pub delay_ms: u64,
    pub gap_ms: u64,
    pub chunks: usize,
    pub style: Option<Style>,
    /// Send this many good frames, then a broken event.
    pub broken_sse: Option<usize>,
    pub truncate_json: bool,
    pub disconnect_after: Option<usize>,
    pub content_type: Option<String>,
    pub retry_after: Option<String>,
    /// Statuses for this model string's 1st, 2nd, … request (the last repeats); 200 is
    /// the normal answer.
    pub seq: Vec<u16>,
    /// Send this many frames, then hold the stream open without a word.
    pub stall_after: Option<usize>,
    /// `fast` streams: bytes of content per chunk.
    pub chunk_bytes: usize,
    /// Header `retry-after-ms`.
    pub retry_after_ms: Option<String>,
    /// Write every byte of the stream on its own.
    pub trickle: bool,
    /// Put an invalid UTF-8 byte into the answer's `id`.
    pub bad_utf8: bool,
    /// Answer a stream with 200 and nothing but an error event.
    pub error_event: bool,
    /// Answer 400 unless the request holds exactly this many messages (the conversation
    /// a stateful client expects the gateway to have rebuilt).
    pub expect_messages: Option<usize>,
    /// `probe`: how to break the answer ([`crate::probe`]).
    pub fault: String,
    /// `agent`: the tool to call (default: the request's first function tool).
    pub tool: Option<String>,
    /// A model that does not reason: `reasoning_effort` is a 400 as OpenAI gives it (the
    /// recorded unsupported-parameter error, naming that param).
    pub no_effort: bool,
}

/// Replaces the byte after the first `"id":"` with 0xff (not UTF-8 anywhere).
pub(crate) fn corrupt(b: &Bytes) -> Bytes {
    let mut v = b.to_vec();
    if let Some(at) = v.windows(6).position(|w| w == b"\"id\":\"") {
        if let Some(x) = v.get_mut(at + 6) {
            *x = 0xff;
        }
    }
    Bytes::from(v)
}

impl Scenario {
    pub fn parse(model: &str) -> Self {
        let mut parts = model.split(';');
        let mut s = Scenario {
            name: parts.next().unwrap_or_default().to_owned(),
            chunks: 20,
            ..Default::default()
        };
        for p in parts {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            match k {
                "status" => s.status = v.parse().ok(),
                "delay_ms" => s.delay_ms = v.parse().unwrap_or(0),
                "gap_ms" => s.gap_ms = v.parse().unwrap_or(0),
                "chunks" => s.chunks = v.parse().unwrap_or(20),
                "style" => s.style = Style::parse(v),
                "broken_sse" => s.broken_sse = Some(v.parse().unwrap_or(3)),
                "truncate_json" => s.truncate_json = true,
                "disconnect_after" => s.disconnect_after = v.parse().ok(),
                "content_type" => s.content_type = Some(v.to_owned()),
                "retry_after" => s.retry_after = Some(v.to_owned()),
                "retry_after_ms" => s.retry_after_ms = Some(v.to_owned()),
                "seq" => s.seq = v.split(',').filter_map(|x| x.parse().ok()).collect(),
                "stall_after" => s.stall_after = v.parse().ok(),
                "chunk_bytes" => s.chunk_bytes = v.parse().unwrap_or(0),
                "trickle" => s.trickle = true,
                "bad_utf8" => s.bad_utf8 = true,
                "error_event" => s.error_event = true,
                "expect_messages" => s.expect_messages = v.parse().ok(),
                "fault" => s.fault = v.to_owned(),
                "no_effort" => s.no_effort = true,
                "tool" => s.tool = Some(v.to_owned()),
                _ => {}
            }
        }
        s
    }
}
