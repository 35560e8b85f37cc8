//! Two stream machines in a row: the first one's frames (Chat SSE) are decoded again and
//! fed to the second. Used to serve one dialect from another through Chat Completions
//! (an Anthropic upstream behind `/v1/responses`: Anthropic → Chat → Responses).

use bytes::Bytes;
use jusinfer_sse::{Decoder, Event};

use crate::chat_stream::StreamError;
use crate::StreamTranslator;

#[derive(Debug)]
pub struct Pipe<A, B> {
    first: A,
    second: B,
    decoder: Decoder,
    frames: Vec<Bytes>,
}

impl<A: StreamTranslator, B: StreamTranslator> Pipe<A, B> {
    pub fn new(first: A, second: B) -> Self {
        Self {
            first,
            second,
            decoder: Decoder::new(),
            frames: Vec::new(),
        }
    }

    fn relay(&mut self, out: &mut Vec<Bytes>) -> Result<(), StreamError> {
        for f in self.frames.drain(..) {
            self.decoder.push(&f);
        }
        while let Some(ev) = self.decoder.next_event().map_err(|e| StreamError {
            message: e.to_string(),
        })? {
            self.second.push(&ev, out)?;
        }
        Ok(())
    }
}

impl<A: StreamTranslator, B: StreamTranslator> StreamTranslator for Pipe<A, B> {
    fn push(&mut self, ev: &Event, out: &mut Vec<Bytes>) -> Result<(), StreamError> {
        self.first.push(ev, &mut self.frames)?;
        self.relay(out)
    }

    fn finish(&mut self, out: &mut Vec<Bytes>) -> Result<(), StreamError> {
        self.first.finish(&mut self.frames)?;
        self.relay(out)?;
        self.second.finish(out)
    }

    fn is_complete(&self) -> bool {
        self.second.is_complete()
    }

    /// The first machine's: it reads the upstream's own numbers.
    fn usage(&self) -> Option<jusinfer_wire::chat::Usage> {
        self.first.usage().or_else(|| self.second.usage())
    }

    fn deltas_seen(&self) -> u64 {
        self.second.deltas_seen()
    }

    fn failed(&self) -> bool {
        self.first.failed() || self.second.failed()
    }

    fn error_frame(&self, kind: &str, status: u16, message: &str) -> Option<Bytes> {
        self.second.error_frame(kind, status, message)
    }

    fn keepalive_frame(&self) -> Option<Bytes> {
        self.second.keepalive_frame()
    }

    fn take_result(&mut self) -> Option<serde_json::Value> {
        self.second.take_result()
    }
}

/// Chat frames that are already the gateway's own (the built-in `echo`'s), passed on as
/// they came: the head of a [`Pipe`] whose first leg has nothing to translate.
#[derive(Debug, Default)]
pub struct Relay {
    done: bool,
}

impl StreamTranslator for Relay {
    fn push(&mut self, ev: &Event, out: &mut Vec<Bytes>) -> Result<(), StreamError> {
        if !self.done {
            self.done = ev.data.as_ref() == b"[DONE]";
            out.push(ev.raw.clone());
        }
        Ok(())
    }

    fn finish(&mut self, _out: &mut Vec<Bytes>) -> Result<(), StreamError> {
        Ok(())
    }

    fn is_complete(&self) -> bool {
        self.done
    }

    /// None: the next machine reads the usage chunk.
    fn usage(&self) -> Option<jusinfer_wire::chat::Usage> {
        None
    }

    fn deltas_seen(&self) -> u64 {
        0
    }
}
