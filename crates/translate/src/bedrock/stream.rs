//! Bedrock `converse-stream` events → Chat Completions chunks, one event at a time
//! (MAPPING.md §8.6).
//!
//! `messageStart` is the role chunk; text deltas are `content`; a `contentBlockStart` with
//! `toolUse` opens a call (its Chat index counts tool blocks only) whose `input` fragments
//! are the `arguments` fragments; reasoning text streams as `reasoning_content`, and when
//! its block stops, the whole block with its signature (or redacted bytes) goes out in
//! `thinking_blocks`; `messageStop` is the finish chunk; `metadata` (after it) carries the
//! usage: the usage chunk when the client asked, then `data: [DONE]`. An exception frame
//! ends the stream with an error frame; a stream closed before `messageStop` is an error.

use bytes::Bytes;
use jusinfer_sse::Event;
use jusinfer_wire::bedrock::{
    ContentBlockDelta, ContentBlockStart, ContentBlockStop, MessageStop, Metadata, TokenUsage,
};
use jusinfer_wire::chat::{
    ChatChunk, Cost, Delta, FunctionDelta, ThinkingBlock, ToolCallDelta, Usage as ChatUsage,
};
use serde::de::DeserializeOwned;

use super::{finish_reason, usage, EXCEPTION_PREFIX};
use crate::chat_stream::StreamError;

/// How the client asked for the stream.
#[derive(Debug, Clone, Default)]
pub struct Options {
    pub include_usage: bool,
    /// The caller's clock, for `created`.
    pub created: u64,
    /// The model the client asked for (Converse names none).
    pub model: String,
    /// The chunk id (the caller's for the request).
    pub id: String,
    /// The model's price, for `usage.cost` (`null` when unknown).
    pub price: Option<crate::pricing::Price>,
    /// JSON mode's forced tool, whose input streams as the content.
    pub json_mode: Option<crate::anthropic::JsonMode>,
}

#[derive(Debug)]
enum Block {
    /// `args`: whether any input fragment was sent (none: `{}` goes out at the stop).
    Tool { index: u32, args: bool },
    /// JSON mode's tool: its input fragments are the content as they come, or (a wrapped
    /// schema) gathered and unwrapped at the block's stop, within [`MAX_JSON_BYTES`].
    Json { wrapped: bool, input: String },
    Reasoning {
        index: u32,
        text: String,
        signature: String,
    },
}

/// State machine over one ConverseStream. See the module docs.
#[derive(Debug)]
pub struct BedrockToChat {
    opts: Options,
    started: bool,
    /// Open blocks by `contentBlockIndex`.
    blocks: Vec<(u32, Block)>,
    next_tool: u32,
    next_thinking: u32,
    finish: Option<&'static str>,
    usage: Option<TokenUsage>,
    deltas: u64,
    done: bool,
    failed: bool,
}

const DONE_FRAME: &[u8] = b"data: [DONE]\n\n";

/// The most of a wrapped JSON-mode answer, or of one reasoning block's text and
/// signature, held back until its block ends.
const MAX_JSON_BYTES: usize = 8 << 20;

/// The most content blocks open at once (models open a handful; an upstream opening
/// more is refused rather than held, and block lookups stay short).
const MAX_OPEN_BLOCKS: usize = 256;

fn too_many_blocks() -> StreamError {
    StreamError {
        message: format!("upstream opened more than {MAX_OPEN_BLOCKS} content blocks at once"),
    }
}

fn parse<T: DeserializeOwned>(ev: &Event, name: &str) -> Result<T, StreamError> {
    serde_json::from_slice(&ev.data).map_err(|e| StreamError {
        message: format!("upstream sent a {name} event that is not Converse's ({e})"),
    })
}

impl BedrockToChat {
    pub fn new(mut opts: Options) -> Self {
        opts.id = opts
            .id
            .chars()
            .filter(|c| c.is_ascii_alphanumeric() || *c == '-')
            .take(48)
            .collect();
        Self {
            opts,
            started: false,
            blocks: Vec::new(),
            next_tool: 0,
            next_thinking: 0,
            finish: None,
            usage: None,
            deltas: 0,
            done: false,
            failed: false,
        }
    }

    fn chunk(&self, delta: Delta, finish: Option<&'static str>) -> ChatChunk {
        ChatChunk::single(
            format!("chatcmpl-{}", self.opts.id),
            self.opts.created,
            self.opts.model.clone(),
            delta,
            finish,
            self.opts.include_usage,
        )
    }

    fn start(&mut self, out: &mut Vec<Bytes>) {
        if !self.started {
            self.started = true;
            let role = Delta {
                role: Some("assistant"),
                content: Some(String::new()),
                ..Delta::default()
            };
            out.push(crate::chat_stream::frame(&self.chunk(role, None)));
        }
    }

    fn delta(&mut self, out: &mut Vec<Bytes>, delta: Delta) {
        self.start(out);
        out.push(crate::chat_stream::frame(&self.chunk(delta, None)));
    }

    fn block(&mut self, index: u32) -> Option<&mut Block> {
        self.blocks
            .iter_mut()
            .find(|(i, _)| *i == index)
            .map(|(_, b)| b)
    }

    /// The usage chunk (when asked) and `[DONE]`.
    fn end(&mut self, out: &mut Vec<Bytes>) {
        if self.opts.include_usage {
            let mut c = self.chunk(Delta::default(), None);
            c.choices.clear();
            let mut u = self.usage.as_ref().map(usage).unwrap_or_default();
            u.cost = match &self.opts.price {
                Some(p) => Cost::Usd(crate::pricing::cost(p, &u)),
                None => Cost::Unknown,
            };
            c.usage = Some(Some(u));
            out.push(crate::chat_stream::frame(&c));
        }
        out.push(Bytes::from_static(DONE_FRAME));
        self.done = true;
    }

    fn exception(&mut self, kind: &str, ev: &Event, out: &mut Vec<Bytes>) {
        // `kind: message`, as `frame_event` wrote it.
        let message = super::exception_message(ev);
        // Throttling and service faults are the upstream's trouble, not the request's.
        let server = matches!(
            kind,
            "throttlingException"
                | "serviceUnavailableException"
                | "internalServerException"
                | "modelStreamErrorException"
        ) || !kind.ends_with("Exception");
        let body = serde_json::json!({"error": {
            "message": format!("upstream error: {message}"),
            "type": if server { "server_error" } else { "upstream_error" },
            "param": null,
            "code": kind,
        }});
        out.push(jusinfer_sse::encode_bytes(
            None,
            body.to_string().as_bytes(),
        ));
        self.failed = true;
        self.done = true;
    }
}

impl crate::StreamTranslator for BedrockToChat {
    fn push(&mut self, ev: &Event, out: &mut Vec<Bytes>) -> Result<(), StreamError> {
        if self.done {
            return Ok(());
        }
        let name = ev.event.as_deref().unwrap_or_default();
        if let Some(kind) = name.strip_prefix(EXCEPTION_PREFIX) {
            self.exception(kind, ev, out);
            return Ok(());
        }
        match name {
            "messageStart" => self.start(out),
            "contentBlockStart" => {
                let s: ContentBlockStart = parse(ev, name)?;
                let json = self.opts.json_mode.as_ref().filter(|m| {
                    s.start
                        .tool_use
                        .as_ref()
                        .is_some_and(|t| t.name == m.tool_name)
                });
                if self.blocks.len() >= MAX_OPEN_BLOCKS {
                    return Err(too_many_blocks());
                }
                if let Some(m) = json {
                    let wrapped = m.wrapped;
                    self.blocks.push((
                        s.content_block_index,
                        Block::Json {
                            wrapped,
                            input: String::new(),
                        },
                    ));
                } else if let Some(t) = s.start.tool_use {
                    self.deltas += 1;
                    let index = self.next_tool;
                    self.next_tool += 1;
                    self.blocks
                        .push((s.content_block_index, Block::Tool { index, args: false }));
                    let call = ToolCallDelta {
                        index,
                        id: Some(t.tool_use_id),
                        kind: Some("function"),
                        function: FunctionDelta {
                            name: Some(t.name),
                            arguments: String::new(),
                        },
                    };
                    self.delta(
                        out,
                        Delta {
                            tool_calls: Some(vec![call]),
                            ..Delta::default()
                        },
                    );
                }
            }
            "contentBlockDelta" => {
                let d: ContentBlockDelta = parse(ev, name)?;
                let at = d.content_block_index;
                self.deltas += 1;
                if let Some(t) = d.delta.text.filter(|t| !t.is_empty()) {
                    self.delta(
                        out,
                        Delta {
                            content: Some(t),
                            ..Delta::default()
                        },
                    );
                } else if let Some(u) = d.delta.tool_use {
                    if let Some(Block::Json { wrapped, input }) = self.block(at) {
                        if u.input.is_empty() {
                        } else if !*wrapped {
                            self.delta(
                                out,
                                Delta {
                                    content: Some(u.input),
                                    ..Delta::default()
                                },
                            );
                        } else if input.len() + u.input.len() > MAX_JSON_BYTES {
                            return Err(StreamError {
                                message: "upstream's JSON answer is too large".to_owned(),
                            });
                        } else {
                            input.push_str(&u.input);
                        }
                        return Ok(());
                    }
                    let Some(Block::Tool { index, args }) = self.block(at) else {
                        return Err(StreamError {
                            message: format!(
                                "upstream sent tool input for block {at}, which started no tool use"
                            ),
                        });
                    };
                    let index = *index;
                    if !u.input.is_empty() {
                        *args = true;
                        let frag = ToolCallDelta {
                            index,
                            id: None,
                            kind: None,
                            function: FunctionDelta {
                                name: None,
                                arguments: u.input,
                            },
                        };
                        self.delta(
                            out,
                            Delta {
                                tool_calls: Some(vec![frag]),
                                ..Delta::default()
                            },
                        );
                    }
                } else if let Some(r) = d.delta.reasoning_content {
                    if let Some(data) = r.redacted_content {
                        let index = self.next_thinking;
                        self.next_thinking += 1;
                        let tb = ThinkingBlock {
                            kind: "redacted_thinking".to_owned(),
                            thinking: None,
                            signature: None,
                            data: Some(data),
                            index: Some(index),
                        };
                        self.delta(
                            out,
                            Delta {
                                thinking_blocks: Some(vec![tb]),
                                ..Delta::default()
                            },
                        );
                        return Ok(());
                    }
                    if self.block(at).is_none() {
                        if self.blocks.len() >= MAX_OPEN_BLOCKS {
                            return Err(too_many_blocks());
                        }
                        let index = self.next_thinking;
                        self.next_thinking += 1;
                        self.blocks.push((
                            at,
                            Block::Reasoning {
                                index,
                                text: String::new(),
                                signature: String::new(),
                            },
                        ));
                    }
                    let Some(Block::Reasoning {
                        text, signature, ..
                    }) = self.block(at)
                    else {
                        return Err(StreamError {
                            message: format!("upstream sent reasoning into tool block {at}"),
                        });
                    };
                    let adds = r.signature.as_ref().map_or(0, String::len)
                        + r.text.as_ref().map_or(0, String::len);
                    if text.len() + signature.len() + adds > MAX_JSON_BYTES {
                        return Err(StreamError {
                            message: "upstream's reasoning block is too large".to_owned(),
                        });
                    }
                    if let Some(s) = &r.signature {
                        signature.push_str(s);
                    }
                    if let Some(t) = r.text.filter(|t| !t.is_empty()) {
                        text.push_str(&t);
                        self.delta(
                            out,
                            Delta {
                                reasoning_content: Some(t),
                                ..Delta::default()
                            },
                        );
                    }
                }
            }
            "contentBlockStop" => {
                let s: ContentBlockStop = parse(ev, name)?;
                let pos = self
                    .blocks
                    .iter()
                    .position(|(i, _)| *i == s.content_block_index);
                if let Some(pos) = pos {
                    let (_, block) = self.blocks.remove(pos);
                    if let Block::Json {
                        wrapped: true,
                        input,
                    } = &block
                    {
                        let v = serde_json::from_str(input).map_err(|e| StreamError {
                            message: format!("upstream's JSON answer does not parse ({e})"),
                        })?;
                        let m = crate::anthropic::JsonMode {
                            tool_name: String::new(),
                            wrapped: true,
                        };
                        let content = crate::anthropic::response::json_mode_content(&v, &m);
                        self.delta(
                            out,
                            Delta {
                                content: Some(content),
                                ..Delta::default()
                            },
                        );
                    } else if let Block::Tool { index, args: false } = block {
                        // A call without input: Chat clients parse `arguments` as JSON.
                        let frag = ToolCallDelta {
                            index,
                            id: None,
                            kind: None,
                            function: FunctionDelta {
                                name: None,
                                arguments: "{}".to_owned(),
                            },
                        };
                        self.delta(
                            out,
                            Delta {
                                tool_calls: Some(vec![frag]),
                                ..Delta::default()
                            },
                        );
                    } else if let Block::Reasoning {
                        index,
                        text,
                        signature,
                    } = block
                    {
                        let tb = ThinkingBlock {
                            kind: "thinking".to_owned(),
                            thinking: Some(text),
                            signature: (!signature.is_empty()).then_some(signature),
                            data: None,
                            index: Some(index),
                        };
                        self.delta(
                            out,
                            Delta {
                                thinking_blocks: Some(vec![tb]),
                                ..Delta::default()
                            },
                        );
                    }
                }
            }
            "messageStop" => {
                let s: MessageStop = parse(ev, name)?;
                let mut finish = finish_reason(&s.stop_reason, self.next_tool > 0);
                if self.opts.json_mode.is_some() && self.next_tool == 0 && finish == "tool_calls" {
                    // Only JSON mode's tool was called: an answer, not a call.
                    finish = "stop";
                }
                self.start(out);
                self.finish = Some(finish);
                out.push(crate::chat_stream::frame(
                    &self.chunk(Delta::default(), Some(finish)),
                ));
            }
            "metadata" => {
                let m: Metadata = parse(ev, name)?;
                self.usage = m.usage.or(self.usage);
                if self.finish.is_some() {
                    self.end(out);
                }
            }
            // Events newer than this translation carry nothing a Chat client reads.
            _ => {}
        }
        Ok(())
    }

    fn finish(&mut self, out: &mut Vec<Bytes>) -> Result<(), StreamError> {
        if self.done {
            return Ok(());
        }
        if self.finish.is_some() {
            // `messageStop` came, `metadata` did not: the answer is whole, its usage unknown.
            self.end(out);
            return Ok(());
        }
        Err(StreamError {
            message: "upstream closed the stream before its messageStop".to_owned(),
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
