//! The Chat Completions stream normalizer for same-dialect (pass-through) streams.
//!
//! Frames that need no change are forwarded as the upstream's exact bytes. A frame is
//! rewritten only when it must be, to give every client the stream OpenAI itself sends:
//!
//! - streamed tool calls take the standard fragment shape: the first fragment of each call
//!   carries `index`, `id`, `type: "function"`, `function.name` and `function.arguments`;
//!   later fragments carry `index` and argument text only. Upstreams that omit `index`,
//!   reuse one index for parallel calls, repeat the name or id on every fragment, send a
//!   call whole, send `arguments` as an object, or send no id at all are mapped onto it;
//! - the first delta of each choice has `role: "assistant"`;
//! - each choice has exactly one non-null `finish_reason`; `stop` after tool calls becomes
//!   `tool_calls`;
//! - the usage the gateway always asks for is read (see [`ChatStreamNormalizer::usage`]) and
//!   removed when the client did not ask for it;
//! - a stream that ends after its finish chunk without `data: [DONE]` gets one; a stream that
//!   ends before any finish chunk is an error.
//!
//! Events written: `data: <chat.completion.chunk>` frames, `data: {"error":...}` frames
//! passed through from the upstream, and `data: [DONE]`.

use bytes::Bytes;
use jusinfer_sse::Event;
use jusinfer_wire::chat::Usage;
use serde_json::{Map, Value};

use crate::scan;

/// How the client asked for the stream.
#[derive(Debug, Clone, Default)]
pub struct Options {
    /// The client sent `stream_options.include_usage: true`.
    pub include_usage: bool,
    /// Seed for tool-call ids the gateway has to invent (the request id does).
    pub id_seed: String,
    /// Add `usage.cost` (§4 extension) to the usage the client receives: the price when
    /// known, `null` when not. Off, the usage chunk keeps the upstream's bytes.
    pub cost: Option<CostRule>,
}

/// How `usage.cost` is computed for a stream.
#[derive(Debug, Clone, Copy, Default)]
pub struct CostRule {
    pub price: Option<crate::pricing::Price>,
}

/// Why a stream cannot be passed on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StreamError {
    pub message: String,
}

impl std::fmt::Display for StreamError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for StreamError {}

#[derive(Debug, Default)]
struct Call {
    upstream_index: Option<u64>,
    id: Option<String>,
    name: Option<String>,
    /// The first fragment (with id and name) has gone out.
    emitted: bool,
    /// The upstream sent no id before the first fragment had to go out: the gateway made one.
    synthetic_id: bool,
    held_args: String,
}

#[derive(Debug, Default)]
struct ChoiceState {
    index: u64,
    role_sent: bool,
    finished: bool,
    calls: Vec<Call>,
}

/// State machine over one upstream Chat Completions stream. See the module docs.
#[derive(Debug)]
pub struct ChatStreamNormalizer {
    opts: Options,
    choices: Vec<ChoiceState>,
    usage: Option<Usage>,
    done: bool,
    errored: bool,
    /// Events received (about one token each): the completion estimate of a stream the
    /// client left before its usage arrived.
    events: u64,
    /// `id`, `created`, `model` of the last chunk, for chunks the gateway writes itself.
    last_meta: Map<String, Value>,
}

const DONE_FRAME: &[u8] = b"data: [DONE]\n\n";

impl ChatStreamNormalizer {
    pub fn new(opts: Options) -> Self {
        Self {
            opts,
            choices: Vec::new(),
            usage: None,
            done: false,
            errored: false,
            events: 0,
            last_meta: Map::new(),
        }
    }

    /// The last usage the upstream reported, if any.
    pub fn usage(&self) -> Option<&Usage> {
        self.usage.as_ref()
    }

    /// Events received so far.
    pub fn deltas_seen(&self) -> u64 {
        self.events
    }

    /// The upstream's error event ended the stream.
    pub fn failed(&self) -> bool {
        self.errored
    }

    /// Whether the stream reached its end (`[DONE]` or an upstream error event).
    pub fn is_complete(&self) -> bool {
        self.done || self.errored
    }

    /// Feeds one upstream event; appends the frames to send to `out`.
    pub fn push(&mut self, ev: &Event, out: &mut Vec<Bytes>) -> Result<(), StreamError> {
        if self.done || self.errored {
            return Ok(());
        }
        let data = trim(&ev.data);
        if data == b"[DONE]" {
            self.flush_all(out);
            self.done = true;
            out.push(Bytes::from_static(DONE_FRAME));
            return Ok(());
        }
        if data.is_empty() {
            return Ok(());
        }
        self.events += 1;
        if self.can_pass_untouched(data) {
            // Even untouched events must be JSON: a client must never receive a broken one.
            // (UTF-8 first: serde skips over ignored strings without checking them.)
            let text = std::str::from_utf8(data).map_err(|e| StreamError {
                message: format!(
                    "upstream sent an event that is not valid UTF-8 (invalid byte at offset {})",
                    e.valid_up_to()
                ),
            })?;
            serde_json::from_str::<serde::de::IgnoredAny>(text).map_err(|e| StreamError {
                message: format!("upstream sent an event that is not valid JSON ({e})"),
            })?;
            out.push(untouched(ev, data));
            return Ok(());
        }
        let mut chunk: Map<String, Value> =
            serde_json::from_slice(data).map_err(|e| StreamError {
                message: format!("upstream sent an event that is not valid JSON ({e})"),
            })?;
        if chunk.contains_key("error") && !chunk.contains_key("choices") {
            self.errored = true;
            out.push(untouched(ev, data));
            return Ok(());
        }
        for key in ["id", "created", "model", "system_fingerprint"] {
            if let Some(v) = chunk.get(key) {
                self.last_meta.insert(key.to_owned(), v.clone());
            }
        }
        let mut changed = false;
        let mut drop_chunk = false;
        if let Some(u) = chunk.get("usage").filter(|u| !u.is_null()) {
            let mut usage: Option<Usage> = serde_json::from_value(u.clone()).ok();
            if !self.opts.include_usage {
                chunk.remove("usage");
                changed = true;
            } else if let (Some(rule), Some(parsed)) = (self.opts.cost, usage.as_mut()) {
                let cost = rule.price.map(|p| crate::pricing::cost(&p, parsed));
                parsed.cost = cost.into();
                if let Some(Value::Object(obj)) = chunk.get_mut("usage") {
                    obj.insert("cost".to_owned(), cost.map_or(Value::Null, Value::from));
                    changed = true;
                }
            }
            self.usage = usage;
        }
        if let Some(Value::Array(choices)) = chunk.get_mut("choices") {
            let before = choices.len();
            let mut kept = Vec::with_capacity(before);
            for (pos, mut choice) in std::mem::take(choices).into_iter().enumerate() {
                if self.normalize_choice(&mut choice, pos as u64, &mut changed) {
                    kept.push(choice);
                } else {
                    changed = true;
                }
            }
            drop_chunk = kept.is_empty() && before > 0 && !chunk.contains_key("usage");
            if let Some(Value::Array(choices)) = chunk.get_mut("choices") {
                *choices = kept;
            }
        } else if !chunk.contains_key("usage") {
            // Neither choices nor usage: nothing a client could use.
            return Ok(());
        }
        if chunk
            .get("choices")
            .is_some_and(|c| c.as_array().is_some_and(Vec::is_empty))
            && !chunk.contains_key("usage")
        {
            // A usage-only chunk whose usage was removed.
            return Ok(());
        }
        if drop_chunk {
            return Ok(());
        }
        if changed {
            out.push(encode(&chunk));
        } else {
            out.push(untouched(ev, data));
        }
        Ok(())
    }

    /// The upstream closed the connection: the frames still owed to the client.
    pub fn finish(&mut self, out: &mut Vec<Bytes>) -> Result<(), StreamError> {
        if self.done || self.errored {
            return Ok(());
        }
        if self.choices.is_empty() || !self.choices.iter().all(|c| c.finished) {
            return Err(StreamError {
                message: "upstream closed the stream before it finished (no finish_reason)"
                    .to_owned(),
            });
        }
        self.flush_all(out);
        self.done = true;
        out.push(Bytes::from_static(DONE_FRAME));
        Ok(())
    }

    fn can_pass_untouched(&self, data: &[u8]) -> bool {
        // The first chunk of each choice may need a role; after that, frames with a delta
        // and without tool calls, usage or a finish reason are forwarded as they came
        // (Azure sends choices without `delta`: those get an empty one).
        !self.choices.is_empty()
            && self
                .choices
                .iter()
                .all(|c| c.role_sent && c.calls.is_empty())
            && scan::contains(data, b"\"delta\"")
            && !scan::contains(data, b"\"tool_calls\"")
            && scan::key_is_null_or_absent(data, b"\"usage\"")
            && scan::key_is_null_or_absent(data, b"\"finish_reason\"")
            && !scan::contains(data, b"\"error\"")
    }

    fn state(&mut self, index: u64) -> &mut ChoiceState {
        let pos = match self.choices.iter().position(|c| c.index == index) {
            Some(p) => p,
            None => {
                self.choices.push(ChoiceState {
                    index,
                    ..ChoiceState::default()
                });
                self.choices.len() - 1
            }
        };
        &mut self.choices[pos]
    }

    /// Returns false when the choice carries nothing and should be dropped.
    fn normalize_choice(&mut self, choice: &mut Value, pos: u64, changed: &mut bool) -> bool {
        let Some(obj) = choice.as_object_mut() else {
            return false;
        };
        let index = obj.get("index").and_then(Value::as_u64).unwrap_or(pos);
        if !obj.contains_key("index") {
            obj.insert("index".to_owned(), Value::from(index));
            *changed = true;
        }
        let seed = self.opts.id_seed.clone();
        let state = self.state(index);
        if !obj.get("delta").is_some_and(Value::is_object) {
            obj.insert("delta".to_owned(), Value::Object(Map::new()));
            *changed = true;
        }
        let finish = obj
            .get("finish_reason")
            .and_then(Value::as_str)
            .map(str::to_owned);
        let Some(Value::Object(delta)) = obj.get_mut("delta") else {
            return false;
        };
        if !state.role_sent {
            state.role_sent = true;
            if !delta.contains_key("role") {
                delta.insert("role".to_owned(), Value::from("assistant"));
                *changed = true;
            }
        }
        // Legacy single function_call deltas are a call with index 0.
        let mut fragments = Vec::new();
        let original_calls = delta.remove("tool_calls");
        if let Some(Value::Array(calls)) = &original_calls {
            for f in calls {
                state.fragment(f, &seed, &mut fragments);
            }
        }
        if state.finished {
            // Anything after this choice's finish_reason is dropped.
            *changed = true;
            return false;
        }
        if let Some(reason) = finish {
            state.flush(&seed, &mut fragments);
            state.finished = true;
            if reason == "stop" && !state.calls.is_empty() {
                obj.insert("finish_reason".to_owned(), Value::from("tool_calls"));
                *changed = true;
            }
        }
        let Some(Value::Object(delta)) = obj.get_mut("delta") else {
            return false;
        };
        // An upstream already in the standard shape keeps its bytes: only a real change to
        // the fragments forces this chunk to be re-encoded.
        let fragments = (!fragments.is_empty()).then_some(Value::Array(fragments));
        if fragments != original_calls {
            *changed = true;
        }
        if let Some(f) = fragments {
            delta.insert("tool_calls".to_owned(), f);
        }
        let empty_delta = delta
            .iter()
            .all(|(k, v)| v.is_null() || (k == "content" && v.as_str() == Some("")));
        let has_finish = obj.get("finish_reason").is_some_and(|f| !f.is_null());
        let has_logprobs = obj.get("logprobs").is_some_and(|l| !l.is_null());
        // Azure's asynchronous filter reports arrive as choices with nothing else: kept,
        // like any field of a same-dialect upstream (SPEC §4).
        let has_filter_report = obj
            .get("content_filter_results")
            .and_then(Value::as_object)
            .is_some_and(|o| !o.is_empty());
        !(empty_delta && !has_finish && !has_logprobs && !has_filter_report)
    }

    fn flush_all(&mut self, out: &mut Vec<Bytes>) {
        let seed = self.opts.id_seed.clone();
        let mut chunk_choices = Vec::new();
        for st in &mut self.choices {
            let mut fragments = Vec::new();
            st.flush(&seed, &mut fragments);
            if !fragments.is_empty() {
                let mut delta = Map::new();
                delta.insert("tool_calls".to_owned(), Value::Array(fragments));
                let mut c = Map::new();
                c.insert("index".to_owned(), Value::from(st.index));
                c.insert("delta".to_owned(), Value::Object(delta));
                c.insert("finish_reason".to_owned(), Value::Null);
                chunk_choices.push(Value::Object(c));
            }
        }
        if !chunk_choices.is_empty() {
            let mut chunk = self.last_meta.clone();
            chunk.insert("object".to_owned(), Value::from("chat.completion.chunk"));
            chunk.insert("choices".to_owned(), Value::Array(chunk_choices));
            out.push(encode(&chunk));
        }
    }
}

impl ChoiceState {
    /// Maps one upstream tool-call fragment onto a call; appends normalized fragments.
    fn fragment(&mut self, f: &Value, seed: &str, out: &mut Vec<Value>) {
        let up_index = f.get("index").and_then(Value::as_u64);
        let id = f
            .get("id")
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty());
        let func = f.get("function");
        let name = func
            .and_then(|x| x.get("name"))
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty());
        let args = match func.and_then(|x| x.get("arguments")) {
            Some(Value::String(s)) => s.clone(),
            Some(Value::Null) | None => String::new(),
            Some(other) => other.to_string(),
        };
        let by_id = id.and_then(|id| self.calls.iter().position(|c| c.id.as_deref() == Some(id)));
        let found = by_id.or_else(|| {
            let last = match up_index {
                Some(ix) => self
                    .calls
                    .iter()
                    .rposition(|c| c.upstream_index == Some(ix)),
                None if id.is_none() => self.calls.len().checked_sub(1),
                None => None,
            }?;
            // A fragment with a new id and a name starts a new call, even at a reused index
            // (parallel calls all sent at index 0); without a name, or when the call so far had
            // no real id, it continues the call (ids sent apart from the name, or in pieces).
            let c = &self.calls[last];
            let continues = id.is_none() || name.is_none() || c.id.is_none() || c.synthetic_id;
            continues.then_some(last)
        });
        let pos = match found {
            Some(p) => p,
            None => {
                self.calls.push(Call {
                    upstream_index: up_index,
                    ..Call::default()
                });
                self.calls.len() - 1
            }
        };
        let call = &mut self.calls[pos];
        if call.id.is_none() {
            call.id = id.map(str::to_owned);
        }
        if call.name.is_none() {
            call.name = name.map(str::to_owned);
        }
        if call.emitted {
            if !args.is_empty() {
                out.push(args_fragment(pos, args));
            }
            return;
        }
        call.held_args.push_str(&args);
        if call.name.is_some() {
            out.push(first_fragment(pos, call, seed));
        }
    }

    /// Emits every call still held back (the name never came), so no arguments are lost.
    fn flush(&mut self, seed: &str, out: &mut Vec<Value>) {
        for (pos, call) in self.calls.iter_mut().enumerate() {
            if !call.emitted {
                out.push(first_fragment(pos, call, seed));
            }
        }
    }
}

fn first_fragment(pos: usize, call: &mut Call, seed: &str) -> Value {
    call.emitted = true;
    if call.id.is_none() {
        call.synthetic_id = true;
    }
    let id = call
        .id
        .get_or_insert_with(|| format!("call_{seed}_{pos}"))
        .clone();
    let mut function = Map::new();
    function.insert(
        "name".to_owned(),
        Value::from(call.name.clone().unwrap_or_default()),
    );
    function.insert(
        "arguments".to_owned(),
        Value::from(std::mem::take(&mut call.held_args)),
    );
    let mut m = Map::new();
    m.insert("index".to_owned(), Value::from(pos));
    m.insert("id".to_owned(), Value::from(id));
    m.insert("type".to_owned(), Value::from("function"));
    m.insert("function".to_owned(), Value::Object(function));
    Value::Object(m)
}

fn args_fragment(pos: usize, args: String) -> Value {
    let mut function = Map::new();
    function.insert("arguments".to_owned(), Value::from(args));
    let mut m = Map::new();
    m.insert("index".to_owned(), Value::from(pos));
    m.insert("function".to_owned(), Value::Object(function));
    Value::Object(m)
}

/// The upstream's own bytes for an event left unchanged — unless a line other than `data`
/// (a comment, an unknown field) is not UTF-8: then the event is rebuilt from its data, so
/// a client never receives a frame it cannot decode.
fn untouched(ev: &Event, data: &[u8]) -> Bytes {
    if std::str::from_utf8(&ev.raw).is_ok() {
        ev.raw.clone()
    } else {
        jusinfer_sse::encode_bytes(ev.event.as_deref(), data)
    }
}

fn encode(chunk: &Map<String, Value>) -> Bytes {
    // Serializing a map of JSON values cannot fail.
    let json = serde_json::to_vec(chunk).unwrap_or_default();
    jusinfer_sse::encode_bytes(None, &json)
}

/// Trims JSON's whitespace only (space, tab, LF, CR): a form feed around an event's JSON
/// must fail the event, not be passed on to a client whose parser rejects it.
fn trim(b: &[u8]) -> &[u8] {
    let ws = |c: &u8| matches!(c, b' ' | b'\t' | b'\n' | b'\r');
    let start = b.iter().position(|c| !ws(c)).unwrap_or(b.len());
    let end = b.iter().rposition(|c| !ws(c)).map_or(start, |e| e + 1);
    &b[start..end]
}

/// `data: <chunk JSON>` — one Chat chunk as an SSE frame.
pub fn frame(chunk: &jusinfer_wire::chat::ChatChunk) -> Bytes {
    let json = serde_json::to_vec(chunk).unwrap_or_default();
    jusinfer_sse::encode_bytes(None, &json)
}
