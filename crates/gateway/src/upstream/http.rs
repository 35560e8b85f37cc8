//! What every HTTP upstream shares: sending with the `first_byte` timeout, reading a body
//! under the `total` deadline, and driving a stream translator over an SSE body with the
//! `idle` and `total` timeouts. Dialect-specific code lives in `openai.rs` / `anthropic.rs`.

use std::collections::VecDeque;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::http::{HeaderValue, StatusCode};
use axum::response::Response;
use bytes::{Bytes, BytesMut};
use futures_util::{Stream, StreamExt};
use jusinfer_sse::{eventstream, Decoder, Event};
use jusinfer_translate::StreamTranslator;
use tokio::time::Instant;

use super::{Endpoint, Provider};
use crate::config::Timeouts;
use crate::error::{Fault, GatewayError};
use crate::health::Health;
use crate::ledger::{StreamTap, Tap};

/// Quiet time on a stream after which a keep-alive event is sent (dialects that have one;
/// at most half the idle timeout, so a client sees one before the stream times out).
const KEEPALIVE_EVERY: Duration = Duration::from_secs(10);

/// Largest non-streaming upstream body read.
const MAX_UPSTREAM_BODY: usize = 64 * 1024 * 1024;

/// The clock of one upstream exchange.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Clock {
    pub started: Instant,
    pub deadline: Instant,
    pub first_byte: Duration,
    pub idle: Duration,
}

impl Clock {
    /// Starts the clock of one attempt under `t` (the deployment's timeouts).
    pub(crate) fn start(t: Timeouts) -> Self {
        let started = Instant::now();
        Self {
            started,
            deadline: started + t.total,
            first_byte: t.first_byte.min(t.total),
            idle: t.idle,
        }
    }
}

/// How long the upstream asks to wait, in milliseconds: `retry-after-ms` (OpenAI), else
/// `retry-after` as seconds (fractions allowed) or as an HTTP date.
pub(crate) fn retry_after_ms(h: &http::HeaderMap) -> Option<u64> {
    let get = |name: &str| h.get(name).and_then(|v| v.to_str().ok()).map(str::trim);
    if let Some(ms) = get("retry-after-ms").and_then(|v| v.parse::<f64>().ok()) {
        if ms.is_finite() && ms >= 0.0 {
            return Some(ms.min(1e12) as u64);
        }
    }
    let v = get("retry-after")?;
    if let Ok(s) = v.parse::<f64>() {
        return (s.is_finite() && s >= 0.0).then(|| (s.min(1e9) * 1000.0) as u64);
    }
    let at = httpdate::parse_http_date(v).ok()?;
    Some(
        at.duration_since(std::time::SystemTime::now())
            .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX)),
    )
}

/// hyper's pooled client over rustls (the Web PKI roots, HTTP/2 where ALPN offers it).
pub(crate) type Direct = hyper_util::client::legacy::Client<
    hyper_rustls::HttpsConnector<hyper_util::client::legacy::connect::HttpConnector>,
    reqwest::Body,
>;

/// An upstream answer's body, whichever client fetched it.
pub(crate) type UpBody = http_body_util::combinators::UnsyncBoxBody<Bytes, BoxError>;
type BoxError = Box<dyn std::error::Error + Send + Sync>;

const USER_AGENT: &str = concat!("jusinfer/", env!("CARGO_PKG_VERSION"));

/// Whether the environment names a proxy (`HTTPS_PROXY` and the like): reqwest honours
/// those, hyper's client does not, so a provider then sends through reqwest.
pub(crate) fn proxy_in_env() -> bool {
    ["HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY"].iter().any(|v| {
        [v.to_string(), v.to_ascii_lowercase()]
            .iter()
            .any(|name| std::env::var_os(name).is_some_and(|x| !x.is_empty()))
    })
}

/// TCP keep-alive probes on upstream connections (reqwest's defaults): a long, quiet stream
/// through a NAT or load balancer that dropped it is noticed.
const TCP_KEEPALIVE: Duration = Duration::from_secs(15);

/// A provider's [`Direct`] client: the same connect timeout, `TCP_NODELAY`, TCP keep-alive
/// and idle-pool time as its reqwest client.
pub(crate) fn direct_client(connect_timeout: Duration) -> Direct {
    let mut tcp = hyper_util::client::legacy::connect::HttpConnector::new();
    tcp.enforce_http(false);
    tcp.set_nodelay(true);
    tcp.set_connect_timeout(Some(connect_timeout));
    tcp.set_keepalive(Some(TCP_KEEPALIVE));
    tcp.set_keepalive_interval(Some(TCP_KEEPALIVE));
    tcp.set_keepalive_retries(Some(3));
    let tls = hyper_rustls::HttpsConnectorBuilder::new()
        .with_webpki_roots()
        .https_or_http()
        .enable_all_versions()
        .wrap_connector(tcp);
    hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        .pool_idle_timeout(Duration::from_secs(90))
        .pool_timer(hyper_util::rt::TokioTimer::new())
        .timer(hyper_util::rt::TokioTimer::new())
        .build(tls)
}

/// The upstream's answer head and the parts of it the callers look at.
pub(crate) struct Answer {
    pub resp: http::Response<UpBody>,
    /// Milliseconds.
    pub retry_after: Option<u64>,
    pub content_type: String,
}

/// Sends `req`; a timeout before the response head is a retryable 504.
async fn send(p: &Provider, req: reqwest::Request, clock: &Clock) -> Result<Answer, GatewayError> {
    let sent = async {
        match &p.direct {
            Some(direct) => {
                let mut req = http::Request::try_from(req).map_err(|e| {
                    GatewayError::internal(format!(
                        "provider `{}`: the request could not be built: {e}",
                        p.name()
                    ))
                })?;
                req.headers_mut()
                    .entry(http::header::USER_AGENT)
                    .or_insert(HeaderValue::from_static(USER_AGENT));
                let resp = direct.request(req).await.map_err(|e| {
                    let timeout = e.is_connect() && caused_by_timeout(&e);
                    send_error(p, &e, e.is_connect(), timeout)
                })?;
                Ok(resp.map(|b| {
                    http_body_util::BodyExt::boxed_unsync(http_body_util::BodyExt::map_err(
                        b,
                        BoxError::from,
                    ))
                }))
            }
            None => {
                let resp = p
                    .client
                    .execute(req)
                    .await
                    .map_err(|e| send_error(p, &e, e.is_connect(), e.is_timeout()))?;
                Ok(http::Response::<reqwest::Body>::from(resp).map(|b| {
                    http_body_util::BodyExt::boxed_unsync(http_body_util::BodyExt::map_err(
                        b,
                        BoxError::from,
                    ))
                }))
            }
        }
    };
    let resp = match tokio::time::timeout(clock.first_byte, sent).await {
        Err(_) => {
            return Err(GatewayError::timeout(format!(
                "provider `{}` did not answer within {}",
                p.name(),
                secs(clock.first_byte)
            )))
        }
        Ok(r) => r?,
    };
    let retry_after = retry_after_ms(resp.headers());
    let content_type = resp
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_ascii_lowercase();
    Ok(Answer {
        resp,
        retry_after,
        content_type,
    })
}

/// One upstream request: what the dialect decides. How it is addressed, authenticated and
/// how its errors read come from the provider's kind ([`super::UpstreamKind`]).
pub(crate) struct Exchange<'a> {
    pub endpoint: Endpoint,
    /// The upstream model (in the URL for kinds that put it there).
    pub model: &'a str,
    pub body: Bytes,
    pub stream: bool,
    /// Headers passed on from the client (Anthropic's version and beta flags); they win
    /// over the kind's fixed headers of the same name.
    pub forward: &'a [(&'static str, String)],
}

/// Builds, authenticates and sends `ex`; a non-2xx answer or a wrong content type is an
/// error, so the caller only ever sees a successful answer of the expected kind.
pub(crate) async fn exchange(
    p: &Provider,
    ex: Exchange<'_>,
    clock: &Clock,
) -> Result<Answer, GatewayError> {
    let kind = p.upstream;
    let build = |url: reqwest::Url| {
        let mut req = p
            .client
            .post(url)
            .header("content-type", "application/json")
            .body(ex.body.clone());
        for (k, v) in kind.fixed_headers {
            if !ex.forward.iter().any(|(f, _)| f.eq_ignore_ascii_case(k)) {
                req = req.header(*k, *v);
            }
        }
        for (k, v) in ex.forward {
            req = req.header(*k, v.as_str());
        }
        // Every answer is JSON unless streamed (InvokeModel reads `accept` as the model's
        // answer type).
        req = req.header(
            "accept",
            if ex.stream {
                kind.stream_accept
            } else {
                "application/json"
            },
        );
        for (k, v) in &p.config.headers {
            req = req.header(k.as_str(), v.as_str());
        }
        // The attempt's span as the upstream's parent (tracing on).
        let mut trace = http::HeaderMap::new();
        crate::telemetry::inject(&mut trace);
        if !trace.is_empty() {
            req = req.headers(trace);
        }
        req.build().map_err(|e| {
            GatewayError::internal(format!(
                "provider `{}`: the request could not be built: {e}",
                p.name()
            ))
        })
    };
    let mut req = build((kind.url)(p, ex.endpoint, ex.model, ex.stream)?)?;
    // A signer may see why a request was refused (its clock skewed from the server's):
    // the request is built and signed once more.
    let mut again = match &p.credentials {
        super::Credentials::Signer(s) => Some(s),
        _ => None,
    };
    // The session token a signer put on the request (temporary keys fetched at run time,
    // which the provider's fixed secrets cannot list), scrubbed from errors too.
    let mut token = None;
    let answer = loop {
        // Last: a signer signs the request as it will be sent (a token fetch counts against
        // the attempt's deadline).
        tokio::time::timeout_at(clock.deadline, p.credentials.apply(&mut req))
            .await
            .map_err(|_| {
                GatewayError::timeout(format!(
                    "provider `{}`: no credentials before the deadline",
                    p.name()
                ))
            })??;
        if matches!(p.credentials, super::Credentials::Signer(_)) {
            token = req.headers().get("x-amz-security-token").cloned();
        }
        let answer = send(p, req, clock).await?;
        let status = answer.resp.status();
        match again.take() {
            Some(signer)
                if !status.is_success() && signer.observe(status, answer.resp.headers()) =>
            {
                req = build((kind.url)(p, ex.endpoint, ex.model, ex.stream)?)?;
            }
            _ => break answer,
        }
    };
    let status = answer.resp.status();
    if !status.is_success() {
        let body = read_body(p, answer.resp, clock.deadline)
            .await
            .unwrap_or_default();
        let mut e = (kind.map_status)(p, status, &body);
        // Never relay (or log) a secret an upstream quotes back.
        let mut secrets = p.secrets();
        secrets.extend(token.as_ref().and_then(|t| t.to_str().ok()));
        e.message = crate::error::scrub(&e.message, &secrets);
        // The header wins; else what the body said (Google's `RetryInfo`).
        e.retry_after_ms = answer.retry_after.or(e.retry_after_ms);
        e.fault = if status == StatusCode::TOO_MANY_REQUESTS {
            Fault::RateLimited
        } else {
            Fault::Status
        };
        return Err(e);
    }
    expect_content_type(p, &answer, ex.stream)?;
    Ok(answer)
}

/// 502 (retryable) unless the answer has the expected content type.
fn expect_content_type(p: &Provider, a: &Answer, stream: bool) -> Result<(), GatewayError> {
    // AWS's event stream only from the kind that asked for it (Bedrock).
    let expected = p.upstream.stream_accept;
    let ok = if stream {
        a.content_type.starts_with(expected)
    } else {
        a.content_type.contains("json")
    };
    if ok {
        return Ok(());
    }
    let (what, expected) = if stream {
        ("a streaming request", expected)
    } else {
        ("a request", "application/json")
    };
    let ct = if a.content_type.is_empty() {
        "(none)"
    } else {
        a.content_type.as_str()
    };
    Err(GatewayError::upstream(format!(
        "provider `{}` answered {what} with content-type `{ct}`, expected {expected}",
        p.name()
    ))
    .fault(Fault::Malformed)
    .retryable(true))
}

pub(crate) fn secs(d: Duration) -> String {
    format!("{:.1}s", d.as_secs_f64())
}

/// Whether an I/O timeout is among the error's causes (a connect timeout).
fn caused_by_timeout(e: &(dyn std::error::Error + 'static)) -> bool {
    let mut src = Some(e);
    while let Some(s) = src {
        if s.downcast_ref::<std::io::Error>()
            .is_some_and(|io| io.kind() == std::io::ErrorKind::TimedOut)
        {
            return true;
        }
        src = s.source();
    }
    false
}

fn send_error(
    p: &Provider,
    e: &(dyn std::error::Error + 'static),
    connect: bool,
    timeout: bool,
) -> GatewayError {
    if timeout {
        return GatewayError::timeout(format!("provider `{}` timed out connecting", p.name()));
    }
    let what = if connect {
        "cannot connect to"
    } else {
        "request failed for"
    };
    // The source chain says why (refused, DNS, TLS) without including the URL's secrets
    // (reqwest's own message quotes the URL: a Gemini key rides in it).
    let mut cause = String::new();
    let mut src = e.source();
    while let Some(s) = src {
        cause = s.to_string();
        src = s.source();
    }
    GatewayError::upstream(format!("{what} provider `{}`: {cause}", p.name()))
        .fault(if connect {
            Fault::Connect
        } else {
            Fault::Disconnect
        })
        .retryable(true)
}

/// Reads a whole body under the exchange's deadline.
pub(crate) async fn read_body(
    p: &Provider,
    resp: http::Response<UpBody>,
    deadline: Instant,
) -> Result<Bytes, GatewayError> {
    let mut stream = http_body_util::BodyDataStream::new(resp.into_body());
    let mut buf = BytesMut::new();
    loop {
        let next = tokio::time::timeout_at(deadline, stream.next())
            .await
            .map_err(|_| {
                GatewayError::timeout(format!(
                    "provider `{}` did not finish its response in time",
                    p.name()
                ))
            })?;
        match next {
            None => return Ok(buf.freeze()),
            Some(Err(e)) => {
                return Err(GatewayError::upstream(format!(
                    "provider `{}` broke off its response: {e}",
                    p.name()
                ))
                .fault(Fault::Disconnect)
                .retryable(true))
            }
            Some(Ok(chunk)) => {
                if buf.len() + chunk.len() > MAX_UPSTREAM_BODY {
                    return Err(GatewayError::upstream(format!(
                        "provider `{}` sent a response over {MAX_UPSTREAM_BODY} bytes",
                        p.name()
                    )));
                }
                buf.extend_from_slice(&chunk);
            }
        }
    }
}

/// A JSON response with the given body (kept for the record stage too when tracing is on:
/// [`crate::usage::AnswerExt`]).
pub(crate) fn json_response(body: Bytes) -> Response {
    let kept = crate::telemetry::enabled().then(|| crate::usage::AnswerExt::Body(body.clone()));
    let mut resp = Response::new(Body::from(body));
    if let Some(k) = kept {
        resp.extensions_mut().insert(k);
    }
    resp.headers_mut()
        .insert("content-type", HeaderValue::from_static("application/json"));
    resp
}

/// The response head for a stream.
pub(crate) fn sse_response(body: Body) -> Response {
    let mut resp = Response::new(body);
    let h = resp.headers_mut();
    h.insert(
        "content-type",
        HeaderValue::from_static("text/event-stream; charset=utf-8"),
    );
    h.insert("cache-control", HeaderValue::from_static("no-cache"));
    h.insert("x-accel-buffering", HeaderValue::from_static("no"));
    resp
}

/// Where a stream's finished result goes ([`StreamTranslator::take_result`]): awaited
/// before the frames that end the stream are sent, so a client that has the last event
/// can already use what was kept (a stored Response for `previous_response_id`).
pub(crate) type Keep = Box<
    dyn FnOnce(serde_json::Value) -> Pin<Box<dyn std::future::Future<Output = ()> + Send>> + Send,
>;

/// Streams `resp` through `machine` to the client. Waits for the first frame before
/// committing to a 200, so an upstream that fails at once still gets a real status (and
/// the next deployment); after that, a failure is the stream's final error frame.
/// The machine's result is handed to `keep` when the stream ends.
pub(crate) async fn stream<T: StreamTranslator + 'static>(
    p: &Provider,
    resp: http::Response<UpBody>,
    machine: T,
    clock: &Clock,
    tap: Option<&Tap>,
    health: Option<&Arc<Health>>,
    keep: Option<Keep>,
) -> Result<Response, GatewayError> {
    let resp_is_eventstream = resp
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|ct| ct.to_ascii_lowercase().starts_with(EVENTSTREAM));
    let mut s = UpstreamStream {
        keep,
        sniffer: tap.and_then(Tap::sniffer),
        commit: tap.and_then(Tap::commit),
        tap: None,
        health: health.cloned(),
        body: Box::pin(http_body_util::BodyDataStream::new(resp.into_body())),
        decoder: if resp_is_eventstream {
            Framing::Aws(eventstream::Decoder::new())
        } else {
            Framing::Sse(Decoder::new())
        },
        machine,
        pending: VecDeque::new(),
        idle: clock.idle,
        idle_from: Instant::now(),
        deadline: clock.deadline,
        done: false,
        provider: p.name().to_owned(),
    };
    let first_deadline = (clock.started + clock.first_byte).min(clock.deadline);
    while s.pending.is_empty() && !s.done {
        match tokio::time::timeout_at(first_deadline, s.fill()).await {
            Err(_) => {
                return Err(GatewayError::timeout(format!(
                    "provider `{}` sent no event within {}",
                    p.name(),
                    secs(clock.first_byte)
                )))
            }
            Ok(Err(e)) => return Err(e.retryable(true)),
            Ok(Ok(())) => {}
        }
    }
    if s.done && s.machine.failed() {
        // Nothing has reached the client: an upstream that answers 200 and then only an
        // error event is a failed attempt, and the next deployment may be tried.
        return Err(GatewayError::upstream(format!(
            "provider `{}` answered with an error event instead of a stream",
            p.name()
        ))
        .fault(Fault::Status)
        .retryable(true));
    }
    // From here on the client has the stream: its end (or the client's leaving) is recorded.
    s.tap = tap.map(Tap::attach_stream);
    if s.done {
        s.ended();
    }
    let body = futures_util::stream::unfold(s, |mut s| async move {
        loop {
            if s.done {
                if let Some(keep) = s.keep.take() {
                    if let Some(result) = s.machine.take_result() {
                        keep(result).await;
                    }
                }
                // `ledger_sync`: the row written at the end is committed before the frames
                // that end the stream.
                if let Some(c) = s.commit.take() {
                    c.wait().await;
                }
            }
            if let Some(frame) = s.take_pending() {
                return Some((Ok::<Bytes, std::convert::Infallible>(frame), s));
            }
            if s.done {
                return None;
            }
            let filled = match s.machine.keepalive_frame() {
                // A client dialect with keep-alive events gets one per quiet interval.
                Some(ping) => {
                    match tokio::time::timeout(KEEPALIVE_EVERY.min(s.idle / 2), s.fill()).await {
                        Ok(r) => r,
                        Err(_) => {
                            s.pending.push_back(ping);
                            continue;
                        }
                    }
                }
                None => s.fill().await,
            };
            match filled {
                Err(e) => {
                    tracing::warn!(provider = %s.provider, error = %e, "upstream stream failed after start");
                    crate::metrics::get().upstream_error(&s.provider, e.fault);
                    if let Some(h) = &s.health {
                        h.stream_failed();
                    }
                    s.done = true;
                    let frame = s
                        .machine
                        .error_frame(e.kind, e.status.as_u16(), &e.message)
                        .unwrap_or_else(|| e.stream_frame());
                    s.pending.push_back(frame);
                    s.record_end(Some(e.kind));
                }
                Ok(()) if s.done => s.ended(),
                Ok(()) => {}
            }
        }
    });
    Ok(sse_response(Body::from_stream(body)))
}

/// AWS's binary event stream (Bedrock's streams).
const EVENTSTREAM: &str = "application/vnd.amazon.eventstream";

/// How an upstream's stream is framed: SSE, or AWS's event stream (its frames handed to
/// the machine as events, `jusinfer_translate::bedrock::frame_event`).
enum Framing {
    Sse(Decoder),
    Aws(eventstream::Decoder),
}

impl Framing {
    fn push(&mut self, bytes: &[u8]) {
        match self {
            Framing::Sse(d) => d.push(bytes),
            Framing::Aws(d) => d.push(bytes),
        }
    }

    fn next_event(&mut self) -> Result<Option<Event>, String> {
        match self {
            Framing::Sse(d) => d.next_event().map_err(|e| e.to_string()),
            Framing::Aws(d) => match d.next_frame().map_err(|e| e.to_string())? {
                Some(f) => jusinfer_translate::bedrock::frame_event(f).map(Some),
                None => Ok(None),
            },
        }
    }

    fn finish(&mut self) -> Result<Vec<Event>, String> {
        match self {
            Framing::Sse(d) => d.finish().map_err(|e| e.to_string()),
            Framing::Aws(d) => d.finish().map(|()| Vec::new()).map_err(|e| e.to_string()),
        }
    }
}

/// An upstream SSE body on its way through a stream translator.
struct UpstreamStream<T: StreamTranslator> {
    keep: Option<Keep>,
    /// Tracing on: reads the answer's id and finish reasons off the frames sent.
    sniffer: Option<jusinfer_translate::answer::Sniffer>,
    /// The request's usage commit (`ledger_sync`).
    commit: Option<crate::usage::Commit>,
    /// The stream's half of the usage row; `None` until the client has the stream.
    tap: Option<StreamTap>,
    health: Option<Arc<Health>>,
    body: Pin<Box<dyn Stream<Item = Result<Bytes, BoxError>> + Send>>,
    decoder: Framing,
    machine: T,
    pending: VecDeque<Bytes>,
    idle: Duration,
    /// When the last upstream bytes came (the idle timeout counts from here, so pings
    /// sent in between do not extend it).
    idle_from: Instant,
    deadline: Instant,
    done: bool,
    provider: String,
}

impl<T: StreamTranslator> Drop for UpstreamStream<T> {
    fn drop(&mut self) {
        // Dropped before its end: the client went away. Record what was seen so far:
        // the upstream's usage when it came, else about one token per content event (the
        // tap adds the prompt estimate).
        if let Some(mut t) = self.tap.take() {
            if let Some(sn) = self.sniffer.take() {
                t.answered(&sn.answer());
            }
            let mut usage = self.machine.usage().unwrap_or_default();
            usage.completion_tokens = usage.completion_tokens.max(self.machine.deltas_seen());
            usage.total_tokens = usage.prompt_tokens.saturating_add(usage.completion_tokens);
            t.finish(Some(&usage), Some("client_disconnected"));
        }
    }
}

impl<T: StreamTranslator> UpstreamStream<T> {
    /// The upstream's stream reached its end: a success, or its own error event.
    fn ended(&mut self) {
        let failed = self.machine.failed();
        self.record_end(failed.then_some("upstream_error"));
        if let Some(h) = &self.health {
            if failed {
                h.stream_failed();
            } else {
                h.stream_completed();
            }
        }
    }

    fn record_end(&mut self, error: Option<&str>) {
        if let Some(mut t) = self.tap.take() {
            if let Some(sn) = self.sniffer.take() {
                t.answered(&sn.answer());
            }
            t.finish(self.machine.usage().as_ref(), error);
        }
    }

    /// All frames ready so far, as one write.
    fn take_pending(&mut self) -> Option<Bytes> {
        match self.pending.len() {
            0 => None,
            1 => self.pending.pop_front(),
            _ => {
                let mut b = BytesMut::with_capacity(self.pending.iter().map(Bytes::len).sum());
                for f in self.pending.drain(..) {
                    b.extend_from_slice(&f);
                }
                Some(b.freeze())
            }
        }
    }

    /// Reads one upstream chunk and queues what it completes.
    async fn fill(&mut self) -> Result<(), GatewayError> {
        let until = (self.idle_from + self.idle).min(self.deadline);
        let next = tokio::time::timeout_at(until, self.body.next())
            .await
            .map_err(|_| {
                if Instant::now() >= self.deadline {
                    GatewayError::timeout(format!(
                        "provider `{}` stream exceeded the total timeout",
                        self.provider
                    ))
                } else {
                    GatewayError::timeout(format!(
                        "provider `{}` sent nothing for {} (idle timeout)",
                        self.provider,
                        secs(self.idle)
                    ))
                }
            })?;
        let mut out = Vec::new();
        match next {
            Some(Ok(chunk)) => {
                self.idle_from = Instant::now();
                self.decoder.push(&chunk);
                loop {
                    let ev = self.decoder.next_event().map_err(|e| self.broken(&e))?;
                    let Some(ev) = ev else { break };
                    self.machine
                        .push(&ev, &mut out)
                        .map_err(|e| self.broken(&e.message))?;
                    if self.machine.is_complete() {
                        self.done = true;
                        break;
                    }
                }
            }
            Some(Err(e)) => {
                return Err(GatewayError::upstream(format!(
                    "provider `{}` broke off the stream: {e}",
                    self.provider
                ))
                .fault(Fault::Disconnect))
            }
            None => {
                let rest = self.decoder.finish().map_err(|e| self.broken(&e))?;
                for ev in &rest {
                    self.machine
                        .push(ev, &mut out)
                        .map_err(|e| self.broken(&e.message))?;
                }
                self.machine
                    .finish(&mut out)
                    .map_err(|e| self.broken(&e.message))?;
                self.done = true;
            }
        }
        if let Some(sn) = self.sniffer.as_mut() {
            for f in &out {
                sn.frame(f);
            }
        }
        self.pending.extend(out);
        Ok(())
    }

    fn broken(&self, what: &str) -> GatewayError {
        GatewayError::upstream(format!(
            "provider `{}` sent a broken stream: {what}",
            self.provider
        ))
        .fault(Fault::Malformed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A wrapper error, as hyper-util's `ConnectError` wraps the I/O error.
    #[derive(Debug)]
    struct Wrapped(std::io::Error);

    impl std::fmt::Display for Wrapped {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("tcp connect error")
        }
    }

    impl std::error::Error for Wrapped {
        fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
            Some(&self.0)
        }
    }

    #[test]
    fn a_connect_timeout_is_found_among_the_causes() {
        let timed_out = Wrapped(std::io::Error::new(
            std::io::ErrorKind::TimedOut,
            "connect timeout",
        ));
        let refused = Wrapped(std::io::Error::new(
            std::io::ErrorKind::ConnectionRefused,
            "Connection refused",
        ));
        assert!(caused_by_timeout(&timed_out));
        assert!(!caused_by_timeout(&refused));
    }

    #[tokio::test]
    async fn the_direct_client_says_why_it_could_not_connect() {
        // A port nothing listens on: refused at once, a retryable connect fault.
        let port = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
            l.local_addr().expect("addr").port()
        };
        let client = direct_client(Duration::from_secs(5));
        let req = http::Request::post(format!("http://127.0.0.1:{port}/v1/chat/completions"))
            .body(reqwest::Body::from("{}"))
            .expect("request");
        let err = client.request(req).await.expect_err("nothing listens");
        assert!(err.is_connect());
        assert!(!caused_by_timeout(&err));
    }
}
