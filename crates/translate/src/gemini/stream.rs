//! Gemini `streamGenerateContent?alt=sse` → Chat Completions chunks, one event at a time
//! (MAPPING.md §8.6).
//!
//! Each event is a whole `GenerateContentResponse` holding only the new parts: a first
//! chunk with `role: "assistant"`; text parts as `content` deltas, thought parts as
//! `reasoning_content`; each `functionCall` (Gemini sends it whole) as one `tool_calls`
//! delta with id, name and the complete arguments; when a candidate carries its
//! `finishReason`, the finish chunk, the usage chunk (the last `usageMetadata`: it is
//! cumulative) when the client asked, and `data: [DONE]`. The stream has no end marker of
//! its own: closing before a `finishReason` is an error. An `{"error": …}` event ends the
//! stream with an error frame.

use bytes::Bytes;
use jusinfer_sse::Event;
use jusinfer_wire::chat::{
    ChatChunk, Cost, Delta, FunctionDelta, ToolCallDelta, Usage as ChatUsage,
};
use jusinfer_wire::gemini::{ErrorEnvelope, GenerateContentResponse, UsageMetadata};

use super::{call_id, finish_reason, usage};
use crate::chat_stream::StreamError;

/// How the client asked for the stream.
#[derive(Debug, Clone, Default)]
pub struct Options {
    pub include_usage: bool,
    /// The caller's clock, for `created`.
    pub created: u64,
    /// The model the client asked for (until Gemini names its version).
    pub model: String,
    /// Seeds the chunk id and the call ids minted (Gemini's `responseId` wins).
    pub id_seed: String,
    /// The model's price, for `usage.cost` (`null` when unknown).
    pub price: Option<crate::pricing::Price>,
}

/// State machine over one Gemini stream. See the module docs.
#[derive(Debug)]
pub struct GeminiToChat {
    opts: Options,
    id: String,
    started: bool,
    calls: usize,
    usage: Option<UsageMetadata>,
    deltas: u64,
    done: bool,
    failed: bool,
}

const DONE_FRAME: &[u8] = b"data: [DONE]\n\n";

impl GeminiToChat {
    pub fn new(opts: Options) -> Self {
        let id: String = opts
            .id_seed
            .chars()
            .filter(char::is_ascii_alphanumeric)
            .take(24)
            .collect();
        Self {
            opts,
            id,
            started: false,
            calls: 0,
            usage: None,
            deltas: 0,
            done: false,
            failed: false,
        }
    }

    fn chunk(&self, delta: Delta, finish: Option<&'static str>) -> ChatChunk {
        ChatChunk::single(
            format!("chatcmpl-{}", self.id),
            self.opts.created,
            self.opts.model.clone(),
            delta,
            finish,
            self.opts.include_usage,
        )
    }

    fn emit(out: &mut Vec<Bytes>, chunk: &ChatChunk) {
        out.push(crate::chat_stream::frame(chunk));
    }

    fn delta(&mut self, out: &mut Vec<Bytes>, delta: Delta) {
        if !self.started {
            self.started = true;
            let role = Delta {
                role: Some("assistant"),
                content: Some(String::new()),
                ..Delta::default()
            };
            Self::emit(out, &self.chunk(role, None));
        }
        Self::emit(out, &self.chunk(delta, None));
    }

    fn end(&mut self, out: &mut Vec<Bytes>, finish: &'static str) {
        if !self.started {
            self.delta(out, Delta::default());
            out.pop();
        }
        Self::emit(out, &self.chunk(Delta::default(), Some(finish)));
        if self.opts.include_usage {
            let mut c = self.chunk(Delta::default(), None);
            c.choices.clear();
            let mut u = self.usage_so_far();
            u.cost = match &self.opts.price {
                Some(p) => Cost::Usd(crate::pricing::cost(p, &u)),
                None => Cost::Unknown,
            };
            c.usage = Some(Some(u));
            Self::emit(out, &c);
        }
        out.push(Bytes::from_static(DONE_FRAME));
        self.done = true;
    }

    fn usage_so_far(&self) -> ChatUsage {
        self.usage.as_ref().map(usage).unwrap_or_default()
    }
}

impl crate::StreamTranslator for GeminiToChat {
    fn push(&mut self, ev: &Event, out: &mut Vec<Bytes>) -> Result<(), StreamError> {
        if self.done {
            return Ok(());
        }
        // Google writes its error bodies pretty-printed: `{` then whitespace then "error".
        let head = ev.data.iter().skip(1).find(|b| !b.is_ascii_whitespace());
        if ev.data.first() == Some(&b'{') && head == Some(&b'"') && is_error(&ev.data) {
            if let Ok(e) = serde_json::from_slice::<ErrorEnvelope>(&ev.data) {
                self.failed = true;
                self.done = true;
                let server = e.error.code >= 500 || e.error.status == "UNAVAILABLE";
                let body = serde_json::json!({"error": {
                    "message": format!("upstream error: {}", e.error.message),
                    "type": if server { "server_error" } else { "upstream_error" },
                    "param": null,
                    "code": e.error.status,
                }});
                out.push(jusinfer_sse::encode_bytes(
                    None,
                    body.to_string().as_bytes(),
                ));
                return Ok(());
            }
        }
        let chunk: GenerateContentResponse =
            serde_json::from_slice(&ev.data).map_err(|e| StreamError {
                message: format!("upstream sent an event that is not a Gemini response ({e})"),
            })?;
        if let Some(v) = &chunk.model_version {
            v.clone_into(&mut self.opts.model);
        }
        if let Some(rid) = &chunk.response_id {
            if !self.started {
                self.id = rid
                    .chars()
                    .filter(char::is_ascii_alphanumeric)
                    .take(24)
                    .collect();
            }
        }
        if chunk.usage_metadata.is_some() {
            self.usage = chunk.usage_metadata.clone();
        }
        let Some(candidate) = chunk.candidates.first() else {
            // A prompt blocked before generation (`promptFeedback.blockReason`).
            if chunk
                .prompt_feedback
                .is_some_and(|f| f.block_reason.is_some())
            {
                self.end(out, "content_filter");
            }
            return Ok(());
        };
        for p in candidate.content.iter().flat_map(|c| &c.parts) {
            if let Some(fc) = &p.function_call {
                self.deltas += 1;
                let n = self.calls;
                self.calls += 1;
                let call = ToolCallDelta {
                    index: u32::try_from(n).unwrap_or(u32::MAX),
                    id: Some(call_id(
                        fc.id.as_deref(),
                        &self.id,
                        n,
                        p.thought_signature.as_deref(),
                    )),
                    kind: Some("function"),
                    function: FunctionDelta {
                        name: Some(fc.name.clone()),
                        arguments: fc.args.to_string(),
                    },
                };
                self.delta(
                    out,
                    Delta {
                        tool_calls: Some(vec![call]),
                        ..Delta::default()
                    },
                );
            } else if let Some(t) = p.text.as_ref().filter(|t| !t.is_empty()) {
                self.deltas += 1;
                let d = if p.thought == Some(true) {
                    Delta {
                        reasoning_content: Some(t.clone()),
                        ..Delta::default()
                    }
                } else {
                    Delta {
                        content: Some(t.clone()),
                        ..Delta::default()
                    }
                };
                self.delta(out, d);
            }
        }
        if let Some(reason) = candidate.finish_reason.as_deref() {
            let finish = finish_reason(Some(reason), self.calls > 0);
            self.end(out, finish);
        }
        Ok(())
    }

    fn finish(&mut self, _out: &mut Vec<Bytes>) -> Result<(), StreamError> {
        if self.done {
            return Ok(());
        }
        Err(StreamError {
            message: "upstream closed the stream before its finishReason".to_owned(),
        })
    }

    fn is_complete(&self) -> bool {
        self.done
    }

    fn usage(&self) -> Option<ChatUsage> {
        self.usage.as_ref().map(usage)
    }

    fn deltas_seen(&self) -> u64 {
        self.deltas
    }

    fn failed(&self) -> bool {
        self.failed
    }
}

/// Whether a chunk is Google's error object (`{"error": …}`), however it is spaced.
fn is_error(data: &[u8]) -> bool {
    let rest = data[1..].trim_ascii_start();
    rest.starts_with(b"\"error\"")
}
