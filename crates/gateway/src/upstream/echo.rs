//! The built-in `echo` provider (§9): answers with the last user message, streamed word by
//! word when asked; honours `max_tokens` (words count as tokens) and `stop`; returns a tool
//! call whose arguments satisfy the tool's JSON schema when `tool_choice` is `required` or
//! names a function; returns JSON in JSON mode; reports usage. It is a documented test
//! provider: it is reached only by the model name `echo` (or an alias that routes to it).
//!
//! Any key can reach it, so everything it makes is bounded (README, "Limits and
//! guarantees"): the answer's text per choice ([`MAX_TEXT_BYTES`], and [`MAX_TOTAL_BYTES`]
//! over all `n` choices), and a schema sample's size and work (`schema_sample`'s caps).
//! A capped answer says so in
//! `x-jusinfer-echo-capped`. Streams are generated lazily ([`Frames`]): a batch of frames
//! each time the client is ready for more, nothing once it has left.

use std::convert::Infallible;

use axum::body::Body;
use axum::http::HeaderValue;
use axum::response::Response;
use bytes::{Bytes, BytesMut};
use jusinfer_translate::StreamTranslator;
use jusinfer_wire::chat::{
    AssistantMessage, ChatChunk, ChatCompletion, ChatRequest, Choice, ChunkChoice, Cost, Delta,
    FunctionCall, FunctionDelta, Role, ToolCall, ToolCallDelta, ToolChoice, Usage,
};
use serde_json::{json, Value};

use super::http::Keep;
use super::schema_sample::{self, prefix};

/// Most bytes of answer text per choice.
pub(crate) const MAX_TEXT_BYTES: usize = 32 * 1024;
/// Most bytes of answer text over all choices (`n` × text).
pub(crate) const MAX_TOTAL_BYTES: usize = 1024 * 1024;
/// A stream batch: frames are generated until a batch holds this many bytes.
const BATCH_BYTES: usize = 16 * 1024;
/// Text frames of one word each, over the whole stream; later frames carry up to
/// [`LATE_FRAME_TEXT`] bytes, so a long answer's framing costs a few times its text at most.
const WORD_FRAMES: u32 = 4096;
const LATE_FRAME_TEXT: usize = 1024;
/// The header naming what was capped.
pub(crate) const CAPPED_HEADER: &str = "x-jusinfer-echo-capped";

/// What the echo provider decided to say.
struct Answer {
    text: Option<String>,
    call: Option<(String, String)>,
    finish: &'static str,
    prompt_tokens: u64,
    completion_tokens: u64,
    /// What was cut to fit the caps (`text`, `schema`), if anything.
    capped: Option<&'static str>,
}

fn count_tokens(s: &str) -> u64 {
    s.split_whitespace().count() as u64
}

/// Tool definitions count too (an agent's tools are most of its prompt): a token per four
/// bytes of their JSON, the usual estimate for schema text.
fn tool_tokens(req: &ChatRequest) -> u64 {
    req.tools
        .as_deref()
        .unwrap_or_default()
        .iter()
        .filter_map(|t| t.function.as_ref())
        .map(|f| {
            let bytes = f.name.len()
                + f.description.as_ref().map_or(0, String::len)
                + f.parameters
                    .as_ref()
                    .and_then(|p| serde_json::to_vec(p).ok())
                    .map_or(0, |b| b.len());
            bytes.div_ceil(4) as u64 + 3
        })
        .sum()
}

fn answer(req: &ChatRequest) -> Answer {
    let prompt_tokens: u64 = req
        .messages
        .iter()
        .map(|m| count_tokens(&m.text()) + 3)
        .sum::<u64>()
        + tool_tokens(req)
        + 3;
    let last_user = req
        .messages
        .iter()
        .rev()
        .find(|m| m.role == Role::User)
        .map(|m| m.text())
        .unwrap_or_default();
    if let Some((name, schema)) = forced_tool(req) {
        let (args, capped) = schema_sample::sample(&schema, &last_user);
        let args = args.to_string();
        let completion_tokens = count_tokens(&args).max(1);
        return Answer {
            text: None,
            call: Some((name, args)),
            finish: "tool_calls",
            prompt_tokens,
            completion_tokens,
            capped: capped.then_some("schema"),
        };
    }
    let mut finish = "stop";
    let mut capped = None;
    let n = req.n.unwrap_or(1).clamp(1, 128) as usize;
    let per_choice = MAX_TEXT_BYTES.min(MAX_TOTAL_BYTES / n);
    let mut text = last_user;
    let mut json_answer = false;
    if let Some(rf) = &req.response_format {
        match rf.kind.as_str() {
            "json_object" => {
                json_answer = true;
                if text.len() > per_choice {
                    capped = Some("text");
                }
                text = json!({ "echo": prefix(&text, per_choice) }).to_string();
            }
            "json_schema" => {
                let schema = rf
                    .json_schema
                    .as_ref()
                    .and_then(|s| s.schema.clone())
                    .unwrap_or(json!({"type":"object"}));
                json_answer = true;
                let (value, cut) = schema_sample::sample(&schema, &text);
                text = value.to_string();
                if cut {
                    capped = Some("schema");
                }
            }
            _ => {}
        }
    }
    if text.len() > per_choice && !json_answer {
        // JSON answers are kept whole (their parts have their own caps); plain text is cut.
        text.truncate(prefix(&text, per_choice).len());
        finish = "length";
        capped = Some("text");
    }
    if let Some(stop) = &req.stop {
        if let Some(cut) = stop
            .as_vec()
            .iter()
            .filter(|s| !s.is_empty())
            .filter_map(|s| text.find(s))
            .min()
        {
            text.truncate(cut);
            finish = "stop";
        }
    }
    if let Some(max) = req.max_output_tokens() {
        let words: Vec<&str> = text
            .split_inclusive(char::is_whitespace)
            .filter(|w| !w.trim().is_empty())
            .collect();
        if words.len() as u64 > u64::from(max) {
            text = words[..max as usize].concat().trim_end().to_owned();
            finish = "length";
        }
    }
    let completion_tokens = count_tokens(&text);
    Answer {
        text: Some(text),
        call: None,
        finish,
        prompt_tokens,
        completion_tokens,
        capped,
    }
}

/// The tool the request forces, with its parameter schema.
fn forced_tool(req: &ChatRequest) -> Option<(String, Value)> {
    let tools = req.tools.as_deref().unwrap_or_default();
    let named = match req.tool_choice.as_ref()? {
        ToolChoice::Mode(m) if m == "required" => None,
        ToolChoice::Mode(_) => return None,
        ToolChoice::Object(o) => Some(o.function.as_ref()?.name.clone()),
    };
    let f = tools
        .iter()
        .filter_map(|t| t.function.as_ref())
        .find(|f| named.as_ref().is_none_or(|n| &f.name == n))?;
    Some((
        f.name.clone(),
        f.parameters
            .clone()
            .unwrap_or(json!({"type": "object", "properties": {}})),
    ))
}

fn usage(a: &Answer, n: u32) -> Usage {
    let completion_tokens = a.completion_tokens.saturating_mul(u64::from(n));
    Usage {
        prompt_tokens: a.prompt_tokens,
        completion_tokens,
        total_tokens: a.prompt_tokens.saturating_add(completion_tokens),
        prompt_tokens_details: Some(Default::default()),
        completion_tokens_details: Some(Default::default()),
        // The echo provider is free: a real price, not an unknown one.
        cost: Cost::Usd(0.0),
    }
}

fn call_id(request_id: &str, choice: u32) -> String {
    let tail: String = request_id
        .chars()
        .filter(char::is_ascii_alphanumeric)
        .take(24)
        .collect();
    format!("call_{tail}{choice}")
}

/// One echo answer, decided (bounded work) and ready to be written whole or streamed.
pub(crate) struct Echo {
    a: Answer,
    n: u32,
    include_usage: bool,
    request_id: String,
    created: u64,
}

impl Echo {
    pub(crate) fn new(req: &ChatRequest, request_id: &str, created: u64) -> Self {
        Self {
            a: answer(req),
            n: req.n.unwrap_or(1).clamp(1, 128),
            include_usage: req.wants_stream_usage(),
            request_id: request_id.to_owned(),
            created,
        }
    }

    /// The usage of the whole answer (all choices).
    pub(crate) fn usage(&self) -> Usage {
        usage(&self.a, self.n)
    }

    /// What was cut to fit the caps, if anything (see [`mark`]).
    pub(crate) fn capped(&self) -> Option<&'static str> {
        self.a.capped
    }

    /// The non-streaming completion.
    pub(crate) fn complete(&self) -> Bytes {
        let a = &self.a;
        let choices = (0..self.n)
            .map(|i| Choice {
                index: i,
                message: AssistantMessage {
                    role: "assistant",
                    content: a.text.clone(),
                    refusal: None,
                    annotations: Vec::new(),
                    reasoning_content: None,
                    thinking_blocks: None,
                    tool_calls: a.call.as_ref().map(|(name, args)| {
                        vec![ToolCall {
                            id: call_id(&self.request_id, i),
                            kind: "function".to_owned(),
                            function: FunctionCall {
                                name: name.clone(),
                                arguments: args.clone(),
                            },
                        }]
                    }),
                },
                logprobs: None,
                finish_reason: a.finish,
            })
            .collect();
        let body = ChatCompletion {
            id: format!("chatcmpl-{}", self.request_id),
            object: "chat.completion",
            created: self.created,
            model: "echo".to_owned(),
            choices,
            usage: self.usage(),
            service_tier: None,
            system_fingerprint: None,
        };
        Bytes::from(serde_json::to_vec(&body).unwrap_or_default())
    }

    /// The stream, one chunk per word, generated as it is read.
    pub(crate) fn frames(self) -> Frames {
        Frames {
            echo: self,
            choice: 0,
            step: Step::Role,
            pos: 0,
            text_frames: 0,
        }
    }
}

/// Where [`Frames`] is in the answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Step {
    Role,
    Text,
    ToolHead,
    ToolArgs,
    Finish,
    Usage,
    Done,
    Ended,
}

/// An echo stream in Chat Completions frames (`[DONE]` included): each `next` makes one
/// batch of about [`BATCH_BYTES`], so memory stays constant whatever the answer's length
/// and nothing is made that the client does not read.
pub(crate) struct Frames {
    echo: Echo,
    choice: u32,
    step: Step,
    /// Byte offset into the text or the tool arguments.
    pos: usize,
    /// Text frames sent so far.
    text_frames: u32,
}

impl Frames {
    fn chunk(&self, choices: Vec<ChunkChoice>, usage: Option<Usage>, out: &mut BytesMut) {
        let c = ChatChunk {
            id: format!("chatcmpl-{}", self.echo.request_id),
            object: "chat.completion.chunk",
            created: self.echo.created,
            model: "echo".to_owned(),
            service_tier: None,
            system_fingerprint: None,
            choices,
            usage: usage.map(Some),
        };
        let json = serde_json::to_vec(&c).unwrap_or_default();
        jusinfer_sse::encode(None, &json, out);
    }

    fn delta(&self, delta: Delta, finish: Option<&'static str>, out: &mut BytesMut) {
        let choice = ChunkChoice {
            index: self.choice,
            delta,
            logprobs: None,
            finish_reason: finish,
        };
        self.chunk(vec![choice], None, out);
    }

    /// Writes the next frame; false once the stream has ended.
    fn step(&mut self, out: &mut BytesMut) -> bool {
        let a = &self.echo.a;
        match self.step {
            Step::Role => {
                self.delta(
                    Delta {
                        role: Some("assistant"),
                        content: Some(String::new()),
                        ..Delta::default()
                    },
                    None,
                    out,
                );
                self.pos = 0;
                self.step = if a.text.is_some() {
                    Step::Text
                } else if a.call.is_some() {
                    Step::ToolHead
                } else {
                    Step::Finish
                };
            }
            Step::Text => {
                let text = a.text.as_deref().unwrap_or_default();
                let rest = &text[self.pos.min(text.len())..];
                if rest.is_empty() {
                    self.step = if a.call.is_some() {
                        Step::ToolHead
                    } else {
                        Step::Finish
                    };
                    return true;
                }
                let word = if self.text_frames < WORD_FRAMES {
                    rest.find(' ').map_or(rest, |i| &rest[..=i])
                } else {
                    let cut = prefix(rest, LATE_FRAME_TEXT);
                    match cut.rfind(' ') {
                        Some(i) if cut.len() < rest.len() => &cut[..=i],
                        _ => cut,
                    }
                };
                self.text_frames += 1;
                self.pos += word.len();
                let content = Some(word.to_owned());
                self.delta(
                    Delta {
                        content,
                        ..Delta::default()
                    },
                    None,
                    out,
                );
            }
            Step::ToolHead => {
                let name = a.call.as_ref().map(|(n, _)| n.clone());
                let first = ToolCallDelta {
                    index: 0,
                    id: Some(call_id(&self.echo.request_id, self.choice)),
                    kind: Some("function"),
                    function: FunctionDelta {
                        name,
                        arguments: String::new(),
                    },
                };
                self.delta(
                    Delta {
                        tool_calls: Some(vec![first]),
                        ..Delta::default()
                    },
                    None,
                    out,
                );
                self.pos = 0;
                self.step = Step::ToolArgs;
            }
            Step::ToolArgs => {
                let args = a.call.as_ref().map_or("", |(_, args)| args.as_str());
                let rest = &args[self.pos.min(args.len())..];
                if rest.is_empty() {
                    self.step = Step::Finish;
                    return true;
                }
                // Eight characters a fragment.
                let end = rest.char_indices().nth(8).map_or(rest.len(), |(i, _)| i);
                self.pos += end;
                let frag = ToolCallDelta {
                    index: 0,
                    id: None,
                    kind: None,
                    function: FunctionDelta {
                        name: None,
                        arguments: rest[..end].to_owned(),
                    },
                };
                self.delta(
                    Delta {
                        tool_calls: Some(vec![frag]),
                        ..Delta::default()
                    },
                    None,
                    out,
                );
            }
            Step::Finish => {
                self.delta(Delta::default(), Some(a.finish), out);
                self.choice += 1;
                self.step = if self.choice < self.echo.n {
                    Step::Role
                } else if self.echo.include_usage {
                    Step::Usage
                } else {
                    Step::Done
                };
            }
            Step::Usage => {
                self.chunk(Vec::new(), Some(self.echo.usage()), out);
                self.step = Step::Done;
            }
            Step::Done => {
                out.extend_from_slice(b"data: [DONE]\n\n");
                self.step = Step::Ended;
            }
            Step::Ended => return false,
        }
        true
    }
}

impl Iterator for Frames {
    type Item = Bytes;

    fn next(&mut self) -> Option<Bytes> {
        let mut out = BytesMut::with_capacity(BATCH_BYTES + 512);
        while out.len() < BATCH_BYTES && self.step(&mut out) {}
        (!out.is_empty()).then(|| out.freeze())
    }
}

/// A Chat Completions response for `echo`: JSON, or a stream made as it is read.
pub(crate) fn chat_response(e: Echo, stream: bool) -> Response {
    let usage = e.usage();
    let capped = e.a.capped;
    let mut resp = if stream {
        let body = futures_util::stream::iter(e.frames().map(Ok::<_, Infallible>));
        super::http::sse_response(Body::from_stream(body))
    } else {
        super::http::json_response(e.complete())
    };
    mark(&mut resp, capped);
    resp.extensions_mut().insert(crate::usage::UsageExt(usage));
    resp
}

/// Says in [`CAPPED_HEADER`] what of the answer was cut to fit the caps.
pub(crate) fn mark(resp: &mut Response, capped: Option<&'static str>) {
    if let Some(what) = capped {
        resp.headers_mut()
            .insert(CAPPED_HEADER, HeaderValue::from_static(what));
    }
}

/// An echo stream through a client-dialect stream machine, lazily as the client reads;
/// `keep` gets the machine's result before the frames that end the stream are sent.
pub(crate) fn translated<T: StreamTranslator + 'static>(
    frames: Frames,
    machine: T,
    keep: Option<Keep>,
) -> Body {
    struct St<T> {
        frames: Frames,
        machine: T,
        decoder: jusinfer_sse::Decoder,
        keep: Option<Keep>,
        ended: bool,
    }
    let st = St {
        frames,
        machine,
        decoder: jusinfer_sse::Decoder::new(),
        keep,
        ended: false,
    };
    let body = futures_util::stream::unfold(st, |mut st| async move {
        loop {
            if st.ended {
                return None;
            }
            let mut out = Vec::new();
            let pushed = match st.frames.next() {
                Some(batch) => {
                    st.decoder.push(&batch);
                    let mut r = Ok(());
                    while let Ok(Some(ev)) = st.decoder.next_event() {
                        r = st.machine.push(&ev, &mut out);
                        if r.is_err() {
                            break;
                        }
                    }
                    r
                }
                None => {
                    st.ended = true;
                    let rest = st.decoder.finish().unwrap_or_default();
                    rest.iter()
                        .try_for_each(|ev| st.machine.push(ev, &mut out))
                        .and_then(|()| st.machine.finish(&mut out))
                }
            };
            if let Err(e) = pushed {
                st.ended = true;
                tracing::error!(error = %e.message, "echo stream could not be translated");
                out.extend(st.machine.error_frame("server_error", 500, &e.message));
            }
            if st.ended {
                if let Some(keep) = st.keep.take() {
                    if let Some(result) = st.machine.take_result() {
                        keep(result).await;
                    }
                }
            }
            if !out.is_empty() {
                return Some((Ok::<Bytes, Infallible>(Bytes::from(out.concat())), st));
            }
        }
    });
    Body::from_stream(body)
}

/// Deterministic embeddings: 16 dimensions derived from the input's bytes, unit length.
pub(crate) fn embeddings(inputs: &[String]) -> (Vec<Vec<f64>>, u64) {
    let mut tokens = 0;
    let vecs = inputs
        .iter()
        .map(|s| {
            tokens += count_tokens(s).max(1);
            let mut v = [0f64; 16];
            for (i, b) in s.bytes().enumerate() {
                v[(i + usize::from(b)) % 16] += f64::from(b) / 255.0;
            }
            let norm = v.iter().map(|x| x * x).sum::<f64>().sqrt();
            v.iter()
                .map(|x| if norm > 0.0 { x / norm } else { 0.0 })
                .collect()
        })
        .collect();
    (vecs, tokens)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(v: Value) -> ChatRequest {
        serde_json::from_value(v).expect("valid request")
    }

    #[test]
    fn echoes_last_user_message_with_max_tokens_and_stop() {
        let r = req(
            json!({"model":"echo","messages":[{"role":"user","content":"one two three four"}],"max_tokens":2}),
        );
        let v: Value = serde_json::from_slice(&Echo::new(&r, "r1", 0).complete()).expect("json");
        assert_eq!(v["choices"][0]["message"]["content"], "one two");
        assert_eq!(v["choices"][0]["finish_reason"], "length");
        assert_eq!(v["usage"]["completion_tokens"], 2);
        let r = req(
            json!({"model":"echo","messages":[{"role":"user","content":"alpha beta STOP gamma"}],"stop":["STOP"]}),
        );
        let v: Value = serde_json::from_slice(&Echo::new(&r, "r1", 0).complete()).expect("json");
        assert_eq!(v["choices"][0]["message"]["content"], "alpha beta ");
        assert_eq!(v["choices"][0]["finish_reason"], "stop");
    }

    #[test]
    fn regression_tool_definitions_count_as_prompt_tokens() {
        let bare = json!({"model":"echo","messages":[{"role":"user","content":"hi"}]});
        let mut with_tools = bare.clone();
        with_tools["tools"] = json!((0..20)
            .map(|i| json!({"type":"function","function":{
            "name": format!("tool_{i}"), "description": "x".repeat(400),
            "parameters": {"type":"object","properties":{"path":{"type":"string"}}}}}))
            .collect::<Vec<_>>());
        let tokens = |v: Value| {
            let v: Value =
                serde_json::from_slice(&Echo::new(&req(v), "r1", 0).complete()).expect("json");
            v["usage"]["prompt_tokens"].as_u64().expect("tokens")
        };
        let (a, b) = (tokens(bare), tokens(with_tools));
        // 20 tools of ~500 bytes each: ~2,500 tokens more.
        assert!(b - a > 2000 && b - a < 3500, "{a} → {b}");
    }

    #[test]
    fn forced_tool_arguments_fit_the_schema() {
        let r = req(
            json!({"model":"echo","messages":[{"role":"user","content":"hi"}],
            "tools":[{"type":"function","function":{"name":"f","parameters":{"type":"object","properties":{
                "city":{"type":"string"},"n":{"type":"integer","minimum":3},"unit":{"enum":["c","f"]},
                "tags":{"type":"array","items":{"type":"string"}}},"required":["city"]}}}],
            "tool_choice":"required"}),
        );
        let v: Value = serde_json::from_slice(&Echo::new(&r, "r1", 0).complete()).expect("json");
        let call = &v["choices"][0]["message"]["tool_calls"][0];
        assert_eq!(call["function"]["name"], "f");
        let args: Value =
            serde_json::from_str(call["function"]["arguments"].as_str().expect("string"))
                .expect("args json");
        assert_eq!(args, json!({"city":"hi","n":3,"unit":"c","tags":["hi"]}));
        assert_eq!(v["choices"][0]["finish_reason"], "tool_calls");
    }

    #[test]
    fn json_mode_returns_json() {
        let r = req(
            json!({"model":"echo","messages":[{"role":"user","content":"x"}],"response_format":{"type":"json_object"}}),
        );
        let v: Value = serde_json::from_slice(&Echo::new(&r, "r1", 0).complete()).expect("json");
        let content: Value =
            serde_json::from_str(v["choices"][0]["message"]["content"].as_str().expect("s"))
                .expect("parses");
        assert_eq!(content, json!({"echo":"x"}));
    }

    fn forced(schema: Value) -> ChatRequest {
        req(
            json!({"model":"echo","messages":[{"role":"user","content":"hi"}],
            "tools":[{"type":"function","function":{"name":"f","parameters":schema}}],
            "tool_choice":"required"}),
        )
    }

    fn args_of(body: &Bytes) -> String {
        let v: Value = serde_json::from_slice(body).expect("json");
        v["choices"][0]["message"]["tool_calls"][0]["function"]["arguments"]
            .as_str()
            .expect("arguments")
            .to_owned()
    }

    #[test]
    fn a_huge_min_length_is_capped_not_padded_for_minutes() {
        let e = Echo::new(
            &forced(
                json!({"type":"object","properties":{"s":{"type":"string","minLength":3_000_000u64}}}),
            ),
            "r1",
            0,
        );
        assert_eq!(e.capped(), Some("schema"));
        let args = args_of(&e.complete());
        assert!(
            args.len() <= schema_sample::MAX_SAMPLE_BYTES + 64,
            "{}",
            args.len()
        );
        assert!(
            args.len() > schema_sample::MAX_SAMPLE_BYTES / 2,
            "padded as far as the cap allows"
        );
        // Below the cap the schema is met exactly.
        let e = Echo::new(
            &forced(json!({"type":"object","properties":{"s":{"type":"string","minLength":5000}}})),
            "r1",
            0,
        );
        assert_eq!(e.capped(), None);
        let v: Value = serde_json::from_str(&args_of(&e.complete())).expect("json");
        assert_eq!(v["s"].as_str().expect("s").chars().count(), 5000);
    }

    #[test]
    fn a_billion_min_items_is_capped() {
        for schema in [
            json!({"type":"object","properties":{"a":{"type":"array","minItems":1_000_000_000u64,"items":{"type":"integer"}}}}),
            // Nested arrays multiply: the node budget stops them.
            json!({"type":"object","properties":{"a":{"type":"array","minItems":1000,"items":
                {"type":"array","minItems":1000,"items":{"type":"array","minItems":1000}}}}}),
        ] {
            let e = Echo::new(&forced(schema), "r1", 0);
            assert_eq!(e.capped(), Some("schema"));
            assert!(args_of(&e.complete()).len() <= schema_sample::MAX_SAMPLE_BYTES + 64);
        }
        let e = Echo::new(
            &forced(
                json!({"type":"object","properties":{"a":{"type":"array","minItems":3,"items":{"type":"integer"}}}}),
            ),
            "r1",
            0,
        );
        assert_eq!(e.capped(), None);
        assert_eq!(args_of(&e.complete()), r#"{"a":[0,0,0]}"#);
    }

    #[test]
    fn recursive_refs_stay_within_the_node_budget() {
        let schema = json!({"type":"object","properties":{
            "l":{"$ref":"#"},"r":{"$ref":"#"},"v":{"type":"string"}}});
        let e = Echo::new(&forced(schema), "r1", 0);
        assert!(args_of(&e.complete()).len() <= schema_sample::MAX_SAMPLE_BYTES + 64);
    }

    #[test]
    fn many_choices_of_a_long_prompt_stream_lazily_within_the_caps() {
        let prompt = "word ".repeat(400_000); // 2 MB
        let r = req(json!({"model":"echo","n":128,"stream":true,
            "stream_options":{"include_usage":true},
            "messages":[{"role":"user","content":prompt}]}));
        let e = Echo::new(&r, "r1", 0);
        assert_eq!(e.capped(), Some("text"));
        let mut frames = e.frames();
        let first = frames.next().expect("a first batch");
        assert!(first.len() < BATCH_BYTES + 1024, "one batch at a time");
        let mut total = first.len();
        let mut last = first;
        for b in frames {
            assert!(b.len() < BATCH_BYTES + 1024);
            total += b.len();
            last = b;
        }
        assert!(last.ends_with(b"data: [DONE]\n\n"));
        // 1 MiB of text over all choices: the framing costs a few times that at most.
        assert!(total < 4 * MAX_TOTAL_BYTES, "{total}");
    }

    #[test]
    fn the_stream_says_what_the_completion_says() {
        let r = req(
            json!({"model":"echo","n":2,"stream":true,"stream_options":{"include_usage":true},
            "messages":[{"role":"user","content":"one two three"}]}),
        );
        let bytes: Vec<u8> = Echo::new(&r, "r1", 0).frames().flatten().collect();
        let text = String::from_utf8(bytes).expect("utf8");
        let mut content = [String::new(), String::new()];
        let mut usage = Value::Null;
        for line in text.lines().filter_map(|l| l.strip_prefix("data: ")) {
            if line == "[DONE]" {
                continue;
            }
            let v: Value = serde_json::from_str(line).expect("chunk");
            if let Some(c) = v["choices"][0]["delta"]["content"].as_str() {
                content[v["choices"][0]["index"].as_u64().expect("index") as usize].push_str(c);
            }
            if !v["usage"].is_null() {
                usage = v["usage"].clone();
            }
        }
        assert_eq!(
            content,
            ["one two three".to_owned(), "one two three".to_owned()]
        );
        assert_eq!(usage["completion_tokens"], 6);
        assert!(text.ends_with("data: [DONE]\n\n"));
    }
}
