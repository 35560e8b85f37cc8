//! Anthropic Messages stream → Chat Completions chunks, one event at a time.
//!
//! Events written, in OpenAI's order: a first chunk with `role: "assistant"`; `content`,
//! `reasoning_content` and `tool_calls` deltas as the upstream's deltas arrive (each
//! `tool_use` block becomes a call with its own index, whose first fragment carries id, type
//! and name, then `input_json_delta` text as argument fragments); a `thinking_blocks` delta
//! with the whole block and its signature when a thinking block ends; one chunk with the
//! `finish_reason`; the usage chunk (`choices: []`) when the client asked; `data: [DONE]`.
//! An upstream `error` event becomes a final `data: {"error":...}` frame. `ping` and event
//! types this code does not know are dropped.

use bytes::Bytes;
use jusinfer_sse::Event;
use jusinfer_wire::anthropic::{Block, BlockDelta, StreamEvent, Usage};
use jusinfer_wire::chat::{
    ChatChunk, Delta, FunctionDelta, ThinkingBlock, ToolCallDelta, Usage as ChatUsage,
};
use serde_json::Value;

use super::response::json_mode_content;
use super::{finish_reason, usage, JsonMode};
use crate::chat_stream::StreamError;

/// How the client asked for the stream.
#[derive(Debug, Clone, Default)]
pub struct Options {
    pub include_usage: bool,
    /// The caller's clock, for `created`.
    pub created: u64,
    pub json_mode: Option<JsonMode>,
    /// The model's price, for `usage.cost` (`null` when unknown).
    pub price: Option<crate::pricing::Price>,
}

#[derive(Debug)]
enum BlockState {
    Text,
    Tool {
        index: u32,
    },
    /// JSON mode's forced tool: its input is the message content.
    Json {
        buf: String,
    },
    Thinking {
        index: u32,
        text: String,
        signature: String,
    },
    Other,
}

/// State machine over one Anthropic stream. See the module docs.
#[derive(Debug)]
pub struct AnthropicToChat {
    failed: bool,
    opts: Options,
    id: String,
    model: String,
    started: bool,
    blocks: Vec<(usize, BlockState)>,
    next_tool: u32,
    next_thinking: u32,
    usage: Usage,
    /// Content deltas received (about one token each): the completion estimate of a stream
    /// the client left before its usage arrived.
    deltas: u64,
    stop_reason: Option<String>,
    done: bool,
}

const DONE_FRAME: &[u8] = b"data: [DONE]\n\n";

impl AnthropicToChat {
    pub fn new(opts: Options) -> Self {
        Self {
            failed: false,
            opts,
            id: String::new(),
            model: String::new(),
            started: false,
            blocks: Vec::new(),
            next_tool: 0,
            next_thinking: 0,
            usage: Usage::default(),
            deltas: 0,
            stop_reason: None,
            done: false,
        }
    }

    /// The usage reported so far, in OpenAI terms.
    pub fn usage(&self) -> ChatUsage {
        usage(&self.usage)
    }

    /// Content deltas received so far.
    pub fn deltas_seen(&self) -> u64 {
        self.deltas
    }

    pub fn is_complete(&self) -> bool {
        self.done
    }

    /// The upstream's error event ended the stream.
    pub fn failed(&self) -> bool {
        self.failed
    }

    fn chunk(&self, delta: Delta, finish: Option<&'static str>) -> ChatChunk {
        ChatChunk {
            service_tier: Some("default"),
            ..ChatChunk::single(
                format!("chatcmpl-{}", self.id),
                self.opts.created,
                self.model.clone(),
                delta,
                finish,
                self.opts.include_usage,
            )
        }
    }

    fn emit(out: &mut Vec<Bytes>, chunk: &ChatChunk) {
        out.push(crate::chat_stream::frame(chunk));
    }

    fn delta(&self, out: &mut Vec<Bytes>, delta: Delta) {
        Self::emit(out, &self.chunk(delta, None));
    }

    fn block(&mut self, index: usize) -> Option<&mut BlockState> {
        self.blocks
            .iter_mut()
            .find(|(i, _)| *i == index)
            .map(|(_, s)| s)
    }

    /// Feeds one upstream event; appends the frames to send to `out`.
    pub fn push(&mut self, ev: &Event, out: &mut Vec<Bytes>) -> Result<(), StreamError> {
        if self.done {
            return Ok(());
        }
        let parsed: StreamEvent = serde_json::from_slice(&ev.data).map_err(|e| StreamError {
            message: format!("upstream sent an event that is not a valid Anthropic event ({e})"),
        })?;
        match parsed {
            StreamEvent::MessageStart { message } => {
                self.id = message.id;
                self.model = message.model;
                self.usage.merge(&message.usage);
                self.ensure_started(out);
            }
            StreamEvent::ContentBlockStart {
                index,
                content_block,
            } => {
                self.ensure_started(out);
                let state = match content_block {
                    Block::Text { text, .. } => {
                        if !text.is_empty() {
                            self.delta(
                                out,
                                Delta {
                                    content: Some(text),
                                    ..Delta::default()
                                },
                            );
                        }
                        BlockState::Text
                    }
                    Block::ToolUse { name, .. }
                        if self
                            .opts
                            .json_mode
                            .as_ref()
                            .is_some_and(|m| m.tool_name == name) =>
                    {
                        BlockState::Json { buf: String::new() }
                    }
                    Block::ToolUse { id, name, .. } => {
                        let ix = self.next_tool;
                        self.next_tool += 1;
                        let first = ToolCallDelta {
                            index: ix,
                            id: Some(id),
                            kind: Some("function"),
                            function: FunctionDelta {
                                name: Some(name),
                                arguments: String::new(),
                            },
                        };
                        self.delta(
                            out,
                            Delta {
                                tool_calls: Some(vec![first]),
                                ..Delta::default()
                            },
                        );
                        BlockState::Tool { index: ix }
                    }
                    Block::Thinking {
                        thinking,
                        signature,
                    } => {
                        let ix = self.next_thinking;
                        self.next_thinking += 1;
                        if !thinking.is_empty() {
                            self.delta(
                                out,
                                Delta {
                                    reasoning_content: Some(thinking.clone()),
                                    ..Delta::default()
                                },
                            );
                        }
                        BlockState::Thinking {
                            index: ix,
                            text: thinking,
                            signature,
                        }
                    }
                    Block::RedactedThinking { data } => {
                        let ix = self.next_thinking;
                        self.next_thinking += 1;
                        let tb = ThinkingBlock {
                            kind: "redacted_thinking".to_owned(),
                            thinking: None,
                            signature: None,
                            data: Some(data),
                            index: Some(ix),
                        };
                        self.delta(
                            out,
                            Delta {
                                thinking_blocks: Some(vec![tb]),
                                ..Delta::default()
                            },
                        );
                        BlockState::Other
                    }
                    _ => BlockState::Other,
                };
                self.blocks.push((index, state));
            }
            StreamEvent::ContentBlockDelta { index, delta } => {
                self.deltas += 1;
                let json_mode = self.opts.json_mode.clone();
                let Some(state) = self.block(index) else {
                    return Err(StreamError {
                        message: format!("upstream sent a delta for unknown block {index}"),
                    });
                };
                let out_delta = match (state, delta) {
                    (BlockState::Text, BlockDelta::TextDelta { text }) if !text.is_empty() => {
                        Some(Delta {
                            content: Some(text),
                            ..Delta::default()
                        })
                    }
                    (BlockState::Tool { index }, BlockDelta::InputJsonDelta { partial_json })
                        if !partial_json.is_empty() =>
                    {
                        let frag = ToolCallDelta {
                            index: *index,
                            id: None,
                            kind: None,
                            function: FunctionDelta {
                                name: None,
                                arguments: partial_json,
                            },
                        };
                        Some(Delta {
                            tool_calls: Some(vec![frag]),
                            ..Delta::default()
                        })
                    }
                    (BlockState::Json { buf }, BlockDelta::InputJsonDelta { partial_json }) => {
                        if json_mode.as_ref().is_some_and(|m| !m.wrapped)
                            && !partial_json.is_empty()
                        {
                            // The tool input is the requested object itself: stream it as content.
                            Some(Delta {
                                content: Some(partial_json),
                                ..Delta::default()
                            })
                        } else {
                            buf.push_str(&partial_json);
                            None
                        }
                    }
                    (BlockState::Thinking { text, .. }, BlockDelta::ThinkingDelta { thinking })
                        if !thinking.is_empty() =>
                    {
                        text.push_str(&thinking);
                        Some(Delta {
                            reasoning_content: Some(thinking),
                            ..Delta::default()
                        })
                    }
                    (
                        BlockState::Thinking { signature, .. },
                        BlockDelta::SignatureDelta { signature: s },
                    ) => {
                        signature.push_str(&s);
                        None
                    }
                    _ => None,
                };
                if let Some(d) = out_delta {
                    self.delta(out, d);
                }
            }
            StreamEvent::ContentBlockStop { index } => {
                let json_mode = self.opts.json_mode.clone();
                let pos = self.blocks.iter().position(|(i, _)| *i == index);
                if let Some(pos) = pos {
                    let (_, state) = self.blocks.remove(pos);
                    match state {
                        BlockState::Thinking {
                            index,
                            text,
                            signature,
                        } => {
                            let tb = ThinkingBlock {
                                kind: "thinking".to_owned(),
                                thinking: Some(text),
                                signature: Some(signature),
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
                        BlockState::Json { buf }
                            if json_mode.as_ref().is_some_and(|m| m.wrapped) =>
                        {
                            let input: Value = serde_json::from_str(&buf).unwrap_or(Value::Null);
                            if let Some(m) = &json_mode {
                                let content = json_mode_content(&input, m);
                                self.delta(
                                    out,
                                    Delta {
                                        content: Some(content),
                                        ..Delta::default()
                                    },
                                );
                            }
                        }
                        _ => {}
                    }
                }
            }
            StreamEvent::MessageDelta { delta, usage } => {
                self.usage.merge(&usage);
                if delta.stop_reason.is_some() {
                    self.stop_reason = delta.stop_reason;
                }
            }
            StreamEvent::MessageStop => {
                self.ensure_started(out);
                let json_only = self.opts.json_mode.is_some() && self.next_tool == 0;
                let mut finish = finish_reason(self.stop_reason.as_deref(), json_only);
                if finish == "tool_calls" && self.next_tool == 0 {
                    finish = "stop";
                }
                Self::emit(out, &self.chunk(Delta::default(), Some(finish)));
                if self.opts.include_usage {
                    let mut c = self.chunk(Delta::default(), None);
                    c.choices.clear();
                    let mut u = self.usage();
                    u.cost = match &self.opts.price {
                        Some(p) => jusinfer_wire::chat::Cost::Usd(crate::pricing::cost(p, &u)),
                        None => jusinfer_wire::chat::Cost::Unknown,
                    };
                    c.usage = Some(Some(u));
                    Self::emit(out, &c);
                }
                out.push(Bytes::from_static(DONE_FRAME));
                self.done = true;
            }
            StreamEvent::Error { error } => {
                self.failed = true;
                let body = serde_json::json!({"error": {
                    "message": format!("upstream error: {}", error.message),
                    "type": if error.kind == "overloaded_error" || error.kind == "api_error" { "server_error" } else { "upstream_error" },
                    "param": null,
                    "code": error.kind,
                }});
                out.push(jusinfer_sse::encode_bytes(
                    None,
                    body.to_string().as_bytes(),
                ));
                self.done = true;
            }
            StreamEvent::Ping | StreamEvent::Unknown(_) => {}
        }
        Ok(())
    }

    /// The upstream closed the connection.
    pub fn finish(&mut self, _out: &mut Vec<Bytes>) -> Result<(), StreamError> {
        if self.done {
            return Ok(());
        }
        Err(StreamError {
            message: "upstream closed the stream before message_stop".to_owned(),
        })
    }

    fn ensure_started(&mut self, out: &mut Vec<Bytes>) {
        if !self.started {
            self.started = true;
            self.delta(
                out,
                Delta {
                    role: Some("assistant"),
                    content: Some(String::new()),
                    refusal: Some(None),
                    ..Delta::default()
                },
            );
        }
    }
}
