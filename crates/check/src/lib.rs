//! The conformance probe (SPEC §10): sends the requests where "OpenAI-compatible" (or
//! Anthropic- or Gemini-compatible) endpoints break and judges each answer. A protocol violation is a
//! FAIL; what depends on the model (did it call the tool? is the JSON what was asked?) is
//! at most a WARN. Every case keeps the raw bytes it sent and received.
//!
//! Used by `jusinfer check` and by the gateway's own tests.

mod anthropic;
mod gemini;
mod openai;
pub mod report;
pub mod sse;

use std::future::Future;
use std::pin::Pin;
use std::time::{Duration, Instant};

use serde_json::Value;

/// Which API the endpoint claims to speak.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dialect {
    /// OpenAI Chat Completions (`POST {base}/chat/completions`).
    Openai,
    /// Anthropic Messages (`POST {base}/v1/messages`).
    Anthropic,
    /// Google's Gemini API (`POST {base}/v1beta/models/{model}:generateContent`).
    Gemini,
}

impl Dialect {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Openai => "openai",
            Self::Anthropic => "anthropic",
            Self::Gemini => "gemini",
        }
    }
}

/// What to probe.
#[derive(Debug, Clone)]
pub struct Target {
    /// OpenAI: the base URL clients are given (`http://host/v1`); Anthropic and Gemini:
    /// the host (`http://host`), as their SDKs take it.
    pub base_url: String,
    pub api_key: String,
    pub model: String,
    pub dialect: Dialect,
    /// Per case, all its requests included.
    pub timeout: Duration,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, serde::Serialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum Verdict {
    Pass,
    Warn,
    Fail,
}

impl Verdict {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pass => "PASS",
            Self::Warn => "WARN",
            Self::Fail => "FAIL",
        }
    }
}

/// One HTTP exchange of a case, as bytes.
#[derive(Debug, Clone, Default)]
pub struct Exchange {
    /// Request line, headers (the key redacted) and body.
    pub request: Vec<u8>,
    /// Status line, headers and body as received (empty when nothing came).
    pub response: Vec<u8>,
    pub status: u16,
    pub content_type: String,
    pub body: Vec<u8>,
    /// Why nothing (or not all) came: connect error, timeout.
    pub error: Option<String>,
}

impl Exchange {
    /// The body as JSON.
    pub fn json(&self) -> Option<Value> {
        serde_json::from_slice(&self.body).ok()
    }

    /// A short piece of the body for evidence.
    pub fn snippet(&self) -> String {
        let s = String::from_utf8_lossy(&self.body);
        let s: String = s.chars().take(120).collect();
        s.replace('\n', "\\n")
    }
}

/// A case's result.
#[derive(Debug, Clone)]
pub struct CaseResult {
    pub name: &'static str,
    pub verdict: Verdict,
    /// One line: what was seen.
    pub evidence: String,
    pub elapsed: Duration,
    pub exchanges: Vec<Exchange>,
}

/// What a case found: failures, warnings, and the line to show when all is well.
#[derive(Debug, Default)]
pub(crate) struct Findings {
    fails: Vec<String>,
    warns: Vec<String>,
    ok: String,
    pub exchanges: Vec<Exchange>,
}

impl Findings {
    pub(crate) fn fail(&mut self, why: impl Into<String>) {
        self.fails.push(why.into());
    }
    pub(crate) fn warn(&mut self, why: impl Into<String>) {
        self.warns.push(why.into());
    }
    pub(crate) fn ok(&mut self, what: impl Into<String>) {
        self.ok = what.into();
    }
    fn into_result(self, name: &'static str, elapsed: Duration) -> CaseResult {
        let (verdict, evidence) = if let Some(f) = self.fails.first() {
            (Verdict::Fail, f.clone())
        } else if let Some(w) = self.warns.first() {
            (Verdict::Warn, w.clone())
        } else {
            (Verdict::Pass, self.ok)
        };
        CaseResult {
            name,
            verdict,
            evidence,
            elapsed,
            exchanges: self.exchanges,
        }
    }
}

/// Shared by the cases of one run.
pub(crate) struct Ctx {
    pub target: Target,
    client: reqwest::Client,
}

/// A key no endpoint should accept.
pub(crate) const BAD_KEY: &str = "sk-jusinfer-check-invalid-key-0000000000";
/// A model no endpoint should serve.
pub(crate) const NO_MODEL: &str = "jusinfer-check-no-such-model";

impl Ctx {
    /// POSTs `body` to `path` (under the base URL) with `key`; reads the whole answer.
    /// Transport failures are in [`Exchange::error`], never a panic or a hang.
    pub(crate) async fn post(&self, path: &str, body: &Value, key: &str) -> Exchange {
        let url = format!("{}{path}", self.target.base_url.trim_end_matches('/'));
        let bytes = body.to_string().into_bytes();
        let mut headers: Vec<(&str, String)> = vec![("content-type", "application/json".into())];
        match self.target.dialect {
            Dialect::Openai => headers.push(("authorization", format!("Bearer {key}"))),
            Dialect::Anthropic => {
                headers.push(("x-api-key", key.to_owned()));
                headers.push(("anthropic-version", "2023-06-01".into()));
            }
            Dialect::Gemini => headers.push(("x-goog-api-key", key.to_owned())),
        }
        let mut ex = Exchange::default();
        let mut req = format!("POST {url} HTTP/1.1\r\n");
        for (k, v) in &headers {
            let shown = if matches!(*k, "authorization" | "x-api-key" | "x-goog-api-key") {
                "[redacted]"
            } else {
                v.as_str()
            };
            req.push_str(&format!("{k}: {shown}\r\n"));
        }
        req.push_str("\r\n");
        ex.request = [req.into_bytes(), bytes.clone()].concat();
        let mut rb = self.client.post(&url).body(bytes);
        for (k, v) in &headers {
            rb = rb.header(*k, v);
        }
        let resp = match rb.send().await {
            Ok(r) => r,
            Err(e) => {
                ex.error = Some(describe(&e));
                return ex;
            }
        };
        ex.status = resp.status().as_u16();
        ex.content_type = resp
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_owned();
        let mut head = format!("HTTP/1.1 {}\r\n", resp.status());
        for (k, v) in resp.headers() {
            head.push_str(&format!("{k}: {}\r\n", v.to_str().unwrap_or("?")));
        }
        head.push_str("\r\n");
        match resp.bytes().await {
            Ok(b) => ex.body = b.to_vec(),
            Err(e) => ex.error = Some(describe(&e)),
        }
        ex.response = [head.into_bytes(), ex.body.clone()].concat();
        ex
    }

    pub(crate) fn key(&self) -> &str {
        &self.target.api_key
    }

    pub(crate) fn model(&self) -> &str {
        &self.target.model
    }
}

fn describe(e: &reqwest::Error) -> String {
    if e.is_timeout() {
        "timed out".into()
    } else if e.is_connect() {
        format!("cannot connect: {e}")
    } else {
        format!("transport error: {e}")
    }
}

type CaseFuture<'a> = Pin<Box<dyn Future<Output = Findings> + Send + 'a>>;
pub(crate) type CaseFn = for<'a> fn(&'a Ctx) -> CaseFuture<'a>;

/// The case list for a dialect: (name, case).
fn cases(d: Dialect) -> &'static [(&'static str, CaseFn)] {
    match d {
        Dialect::Openai => openai::CASES,
        Dialect::Anthropic => anthropic::CASES,
        Dialect::Gemini => gemini::CASES,
    }
}

/// The case names a run of `d` has, in order.
pub fn case_names(d: Dialect) -> Vec<&'static str> {
    cases(d).iter().map(|(n, _)| *n).collect()
}

/// Runs every case of the target's dialect in order; `progress(done, total, next name)`
/// is called before each case and once at the end (next = `None`).
pub async fn run(
    target: &Target,
    mut progress: impl FnMut(usize, usize, Option<&str>),
) -> Vec<CaseResult> {
    let client = match reqwest::Client::builder()
        .timeout(target.timeout)
        .connect_timeout(target.timeout.min(Duration::from_secs(10)))
        .build()
    {
        Ok(c) => c,
        Err(_) => reqwest::Client::new(),
    };
    let ctx = Ctx {
        target: target.clone(),
        client,
    };
    let list = cases(target.dialect);
    let mut out = Vec::with_capacity(list.len());
    for (i, (name, case)) in list.iter().enumerate() {
        progress(i, list.len(), Some(name));
        let started = Instant::now();
        // The whole case under one deadline, on top of each request's own.
        let f = match tokio::time::timeout(target.timeout * 3, case(&ctx)).await {
            Ok(f) => f,
            Err(_) => {
                let mut f = Findings::default();
                f.fail(format!(
                    "no answer within {}s",
                    (target.timeout * 3).as_secs()
                ));
                f
            }
        };
        out.push(f.into_result(name, started.elapsed()));
    }
    progress(list.len(), list.len(), None);
    out
}

/// Fails the case when the exchange did not complete or its status is not `want`;
/// `true` when it may go on.
pub(crate) fn expect_status(f: &mut Findings, ex: &Exchange, want: u16) -> bool {
    if let Some(e) = &ex.error {
        f.fail(format!("request failed: {e}"));
        return false;
    }
    if ex.status != want {
        f.fail(format!(
            "status {} (expected {want}): {}",
            ex.status,
            ex.snippet()
        ));
        return false;
    }
    true
}

/// A 200 stream's events, its framing judged (FAILs into `f`: the status, the content
/// type, every line an SSE field); `None` when there is nothing to read.
pub(crate) fn stream_events(f: &mut Findings, ex: &Exchange) -> Option<sse::Parsed> {
    if !expect_status(f, ex, 200) {
        return None;
    }
    if !ex.content_type.starts_with("text/event-stream") {
        f.fail(format!(
            "content-type is {:?} (expected text/event-stream)",
            ex.content_type
        ));
    }
    let p = sse::parse(&ex.body);
    if let Some(problem) = p.problems.first() {
        f.fail(problem.clone());
    }
    Some(p)
}

/// Whether `v` holds a non-negative integer at each of `keys`.
pub(crate) fn integers(v: &Value, keys: &[&str]) -> Result<(), String> {
    for k in keys {
        if !v[*k].is_u64() {
            return Err(format!("usage.{k} is {} (expected an integer)", v[*k]));
        }
    }
    Ok(())
}
