//! OpenTelemetry traces (OTLP over HTTP/protobuf), off unless an endpoint is configured:
//! `OTEL_EXPORTER_OTLP_ENDPOINT` / `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT` (with the other
//! standard `OTEL_*` variables), or `[tracing] otlp_endpoint` in the config file.
//!
//! One SERVER span per generation request and one CLIENT child per upstream attempt, named
//! and attributed by the OpenTelemetry GenAI semantic conventions. The client's W3C
//! `traceparent` / `tracestate` is the request span's parent; each attempt sends its own
//! span's `traceparent` upstream. The answering attempt's span lasts until its answer
//! ends (a stream's last event), and both spans carry the answer's id and finish reasons as
//! the client got them (`jusinfer_translate::answer`). Spans leave through the SDK's batch
//! processor: a bounded queue drained by its own thread, so a slow or dead collector drops
//! spans, never slows a request; failed exports are counted in `/metrics` and logged (at
//! most once a minute). Off, every hook is one `OnceLock` read.

use std::sync::OnceLock;
use std::time::Duration;

use http::HeaderMap;
use jusinfer_translate::answer::{Answer, Dialect, Sniffer};
use opentelemetry::propagation::TextMapPropagator;
use opentelemetry::trace::{SpanKind, Status, TraceContextExt, Tracer as _};
use opentelemetry::{Array, Context, KeyValue, StringValue, Value};
use opentelemetry_http::{HeaderExtractor, HeaderInjector};
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::{SdkTracer, SdkTracerProvider};

use crate::config::ProviderKind;
use crate::routing::Deployment;
use crate::upstream::schema_sample::prefix as head;
use crate::usage::UsageRecord;

/// What the config file says of tracing (the environment's `OTEL_*` variables apply too).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct TracingConfig {
    /// The collector's OTLP/HTTP base URL (`http://collector:4318`); else the environment's.
    pub otlp_endpoint: Option<String>,
    /// Record prompts and completions (`gen_ai.input.messages`, `gen_ai.output.messages`)
    /// on the request span: off by default.
    pub capture_content: bool,
}

/// A request's spans, as its usage row carries them; not part of the row's value (equal
/// to any other).
#[derive(Clone, Debug)]
pub struct Span {
    pub(crate) request: Context,
    /// The answering attempt's span: ended with the request's.
    pub(crate) attempt: Option<Context>,
    /// The client's dialect, to read the answer in.
    pub(crate) dialect: Option<Dialect>,
    /// What the answer said, for the attempt's span when it ends (a stream may end before
    /// the attempt's span reaches the row).
    answer: Vec<KeyValue>,
}

impl Span {
    pub(crate) fn new(request: Context, dialect: Option<Dialect>) -> Self {
        Self {
            request,
            attempt: None,
            dialect,
            answer: Vec::new(),
        }
    }
}

impl PartialEq for Span {
    fn eq(&self, _: &Self) -> bool {
        true
    }
}

struct Traces {
    provider: SdkTracerProvider,
    tracer: SdkTracer,
    capture_content: bool,
}

static TRACES: OnceLock<Traces> = OnceLock::new();

/// Longest the exit waits for the last spans to leave.
const SHUTDOWN_WAIT: Duration = Duration::from_secs(5);

fn env_set(name: &str) -> bool {
    std::env::var_os(name).is_some_and(|v| !v.is_empty())
}

/// Starts the exporter when an endpoint is configured; `Ok(false)`: tracing stays off.
/// Call from a thread that may block (the exporter's HTTP client is a blocking one,
/// driven by the batch processor's own thread).
pub fn init(cfg: &TracingConfig) -> Result<bool, String> {
    let disabled = std::env::var("OTEL_SDK_DISABLED").is_ok_and(|v| v.eq_ignore_ascii_case("true"))
        || std::env::var("OTEL_TRACES_EXPORTER").is_ok_and(|v| v.eq_ignore_ascii_case("none"));
    let from_env =
        env_set("OTEL_EXPORTER_OTLP_ENDPOINT") || env_set("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT");
    if disabled || (cfg.otlp_endpoint.is_none() && !from_env) {
        return Ok(false);
    }
    // The traces' own variable first, then the general one.
    let protocol = [
        "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL",
        "OTEL_EXPORTER_OTLP_PROTOCOL",
    ]
    .into_iter()
    .find_map(|var| {
        let v = std::env::var(var).ok()?;
        let v = v.trim().to_ascii_lowercase();
        (!v.is_empty()).then_some((var, v))
    });
    match protocol {
        None => {}
        Some((_, p)) if p == "http/protobuf" => {}
        // OTLP/HTTP receivers read protobuf as well as JSON.
        Some((var, p)) if p == "http/json" => tracing::warn!(
            "{var}={p}: this build exports traces as OTLP/HTTP protobuf, which OTLP/HTTP \
             receivers read too"
        ),
        // Sending OTLP/HTTP to a gRPC receiver would fail on every export.
        Some((var, p)) => {
            return Err(format!(
                "{var}={p}: this build exports traces as OTLP over HTTP/protobuf only \
                 (`http/protobuf`, usually port 4318), not gRPC"
            ))
        }
    }
    use opentelemetry_otlp::WithExportConfig;
    let mut builder = opentelemetry_otlp::SpanExporter::builder().with_http();
    if let Some(base) = &cfg.otlp_endpoint {
        // The file's base URL, as the environment's would be: the traces path appended.
        builder = builder.with_endpoint(format!("{}/v1/traces", base.trim_end_matches('/')));
    }
    let exporter = builder
        .build()
        .map_err(|e| format!("cannot start the OTLP trace exporter: {e}"))?;
    let exporter = Counted(exporter);
    let mut resource = opentelemetry_sdk::Resource::builder();
    if !env_set("OTEL_SERVICE_NAME") {
        resource = resource.with_service_name("jusinfer");
    }
    let provider = SdkTracerProvider::builder()
        .with_batch_exporter(exporter)
        .with_resource(resource.build())
        .build();
    let tracer = opentelemetry::trace::TracerProvider::tracer(&provider, "jusinfer");
    let _ = TRACES.set(Traces {
        provider,
        tracer,
        capture_content: cfg.capture_content,
    });
    Ok(true)
}

/// Sends what is queued and stops the exporter (at exit; bounded).
pub async fn shutdown() {
    if TRACES.get().is_none() {
        return;
    }
    let done = tokio::task::spawn_blocking(|| {
        if let Some(t) = TRACES.get() {
            let _ = t.provider.shutdown_with_timeout(SHUTDOWN_WAIT);
        }
    });
    let _ = tokio::time::timeout(SHUTDOWN_WAIT + Duration::from_secs(1), done).await;
}

/// The operation name of an endpoint (GenAI conventions).
fn operation(endpoint: &str) -> &'static str {
    if endpoint.contains("embed") || endpoint.contains("Embed") {
        "embeddings"
    } else if endpoint.starts_with("/v1beta") {
        "generate_content"
    } else {
        "chat"
    }
}

/// `gen_ai.provider.name` of a provider kind.
fn provider_name(kind: ProviderKind) -> &'static str {
    match kind {
        ProviderKind::Openai => "openai",
        ProviderKind::Anthropic => "anthropic",
        ProviderKind::Gemini => "gcp.gemini",
        ProviderKind::Vertex => "gcp.vertex_ai",
        ProviderKind::Azure => "azure.ai.openai",
        ProviderKind::Bedrock => "aws.bedrock",
        ProviderKind::OpenaiCompatible | ProviderKind::Echo => kind.as_str(),
    }
}

/// Tracing is on: the answer's bytes are worth keeping for [`answered`].
pub(crate) fn enabled() -> bool {
    TRACES.get().is_some()
}

/// The most of the answer kept under content capture (`None`: capture off).
fn capture() -> Option<usize> {
    TRACES
        .get()
        .and_then(|t| t.capture_content.then_some(CAPTURED_BYTES))
}

/// A reader of the stream the client gets, for [`answered`].
pub(crate) fn sniffer(span: &Span) -> Option<Sniffer> {
    TRACES.get()?;
    Some(Sniffer::new(span.dialect?, capture()))
}

/// The answer of a whole body the client got.
pub(crate) fn answer_of(span: &Span, body: &[u8]) -> Option<Answer> {
    TRACES.get()?;
    Some(jusinfer_translate::answer::of_body(
        span.dialect?,
        body,
        capture(),
    ))
}

/// The answer of a whole body already parsed (a cache entry), read in `dialect`.
pub(crate) fn answer_of_value(
    dialect: Option<Dialect>,
    body: &serde_json::Value,
) -> Option<Answer> {
    TRACES.get()?;
    Some(jusinfer_translate::answer::of_value(
        dialect?,
        body,
        capture(),
    ))
}

/// What the answer said, on the request's span and (when it ends) the answering
/// attempt's.
pub(crate) fn answered(span: &mut Span, a: &Answer) {
    if TRACES.get().is_none() {
        return;
    }
    // Ids and reasons come bounded (`translate::answer`).
    let mut attrs = Vec::with_capacity(4);
    if let Some(id) = &a.id {
        attrs.push(KeyValue::new("gen_ai.response.id", id.clone()));
    }
    if !a.finish_reasons.is_empty() {
        let reasons: Vec<StringValue> = a
            .finish_reasons
            .iter()
            .map(|r| StringValue::from(r.clone()))
            .collect();
        attrs.push(KeyValue::new(
            "gen_ai.response.finish_reasons",
            Value::Array(Array::String(reasons)),
        ));
    }
    span.answer.clone_from(&attrs);
    if let Some(out) = &a.output {
        attrs.push(KeyValue::new("gen_ai.output.messages", out.clone()));
        if a.output_truncated {
            attrs.push(KeyValue::new("jusinfer.output_truncated", true));
        }
    }
    span.request.span().set_attributes(attrs);
}

/// Starts the request's span (SERVER), the client's `traceparent` its parent; `None` when
/// tracing is off.
pub(crate) fn start_request(
    headers: &HeaderMap,
    endpoint: &'static str,
    request_id: &str,
) -> Option<Context> {
    let t = TRACES.get()?;
    let parent = TraceContextPropagator::new().extract(&HeaderExtractor(headers));
    let span = t
        .tracer
        .span_builder(operation(endpoint))
        .with_kind(SpanKind::Server)
        .with_attributes([
            KeyValue::new("gen_ai.operation.name", operation(endpoint)),
            KeyValue::new("http.request.method", "POST"),
            KeyValue::new("http.route", endpoint),
            KeyValue::new("jusinfer.request_id", request_id.to_owned()),
        ])
        .start_with_context(&t.tracer, &parent);
    Some(parent.with_span(span))
}

/// What the request span learns once the body is parsed.
pub(crate) fn request_parsed(cx: &Context, endpoint: &str, model: &str, stream: bool, body: &[u8]) {
    let Some(t) = TRACES.get() else { return };
    let span = cx.span();
    // The client's text, bounded as the router bounds it (a longer name is refused there).
    let model = head(model, crate::routing::MAX_MODEL_NAME);
    span.update_name(format!("{} {model}", operation(endpoint)));
    span.set_attribute(KeyValue::new("gen_ai.request.model", model.to_owned()));
    span.set_attribute(KeyValue::new("jusinfer.stream", stream));
    let Ok(k) = serde_json::from_slice::<Knobs<'_>>(body) else {
        return;
    };
    let g = k.generation_config.unwrap_or_default();
    let max = k
        .max_completion_tokens
        .or(k.max_tokens)
        .or(k.max_output_tokens)
        .or(g.max_output_tokens);
    if let Some(m) = max.and_then(|m| i64::try_from(m).ok()) {
        span.set_attribute(KeyValue::new("gen_ai.request.max_tokens", m));
    }
    if let Some(x) = k.temperature.or(g.temperature) {
        span.set_attribute(KeyValue::new("gen_ai.request.temperature", x));
    }
    if let Some(x) = k.top_p.or(g.top_p) {
        span.set_attribute(KeyValue::new("gen_ai.request.top_p", x));
    }
    if t.capture_content {
        // The dialect's messages as the client wrote them (Chat and Messages `messages`,
        // Responses `input`, Gemini `contents`), up to `CAPTURED_BYTES`.
        if let Some(m) = k.messages.or(k.input).or(k.contents) {
            let text = m.get();
            let kept = head(text, CAPTURED_BYTES);
            span.set_attribute(KeyValue::new("gen_ai.input.messages", kept.to_owned()));
            if kept.len() < text.len() {
                span.set_attribute(KeyValue::new("jusinfer.input_truncated", true));
            }
        }
    }
}

/// Most bytes of a prompt, and of a completion's text and arguments, captured
/// (`capture_content`).
const CAPTURED_BYTES: usize = 64 * 1024;

/// The request settings the GenAI conventions name, wherever each dialect keeps them.
#[derive(serde::Deserialize)]
struct Knobs<'a> {
    temperature: Option<f64>,
    top_p: Option<f64>,
    max_tokens: Option<u64>,
    max_completion_tokens: Option<u64>,
    max_output_tokens: Option<u64>,
    #[serde(rename = "generationConfig")]
    generation_config: Option<GenerationKnobs>,
    #[serde(borrow)]
    messages: Option<&'a serde_json::value::RawValue>,
    #[serde(borrow)]
    input: Option<&'a serde_json::value::RawValue>,
    #[serde(borrow)]
    contents: Option<&'a serde_json::value::RawValue>,
}

/// The Gemini API's `generationConfig`.
#[derive(serde::Deserialize, Default)]
#[serde(rename_all = "camelCase")]
struct GenerationKnobs {
    temperature: Option<f64>,
    top_p: Option<f64>,
    max_output_tokens: Option<u64>,
}

/// Starts one upstream attempt's span (CLIENT), a child of the request's.
pub(crate) fn start_attempt(
    parent: &Context,
    endpoint: &str,
    d: &Deployment,
    attempt: u32,
) -> Context {
    let Some(t) = TRACES.get() else {
        return parent.clone();
    };
    let op = operation(endpoint);
    let (host, port) = server_of(&d.provider.config.base_url);
    let mut attrs = vec![
        KeyValue::new("gen_ai.operation.name", op),
        KeyValue::new(
            "gen_ai.provider.name",
            provider_name(d.provider.config.kind),
        ),
        KeyValue::new("gen_ai.request.model", d.upstream_model.clone()),
        KeyValue::new("jusinfer.provider", d.provider.name().to_owned()),
        KeyValue::new("jusinfer.attempt", i64::from(attempt)),
        KeyValue::new("server.address", host),
    ];
    if let Some(p) = port {
        attrs.push(KeyValue::new("server.port", i64::from(p)));
    }
    let span = t
        .tracer
        .span_builder(format!("{op} {}", d.upstream_model))
        .with_kind(SpanKind::Client)
        .with_attributes(attrs)
        .start_with_context(&t.tracer, parent);
    parent.with_span(span)
}

/// Ends an attempt's span: `error` is the failure's `error.type`.
pub(crate) fn end_attempt(cx: &Context, error: Option<&'static str>) {
    if TRACES.get().is_none() {
        return;
    }
    let span = cx.span();
    if let Some(e) = error {
        span.set_attribute(KeyValue::new("error.type", e));
        span.set_status(Status::error(e));
    }
    span.end();
}

/// Ends the answering attempt's span, then the request's, with what the usage row says.
pub(crate) fn end_request(r: &UsageRecord) {
    let Some(spans) = &r.trace else { return };
    if TRACES.get().is_none() {
        return;
    }
    let usage = [
        KeyValue::new("gen_ai.usage.input_tokens", to_i64(r.prompt_tokens)),
        KeyValue::new("gen_ai.usage.output_tokens", to_i64(r.completion_tokens)),
    ];
    if let Some(cx) = &spans.attempt {
        let span = cx.span();
        span.set_attributes(spans.answer.iter().cloned());
        span.set_attributes(usage.iter().cloned());
        if r.cached_tokens > 0 {
            span.set_attribute(KeyValue::new(
                "gen_ai.usage.cache_read.input_tokens",
                to_i64(r.cached_tokens),
            ));
        }
        if let Some(m) = &r.upstream_model {
            span.set_attribute(KeyValue::new("gen_ai.response.model", m.clone()));
        }
        broken_stream(&span, r);
        span.end();
    }
    let span = spans.request.span();
    let mut attrs = vec![
        KeyValue::new("http.response.status_code", i64::from(r.status)),
        KeyValue::new("jusinfer.attempts", i64::from(r.attempts)),
    ];
    attrs.extend(usage);
    if let Some(k) = &r.key_id {
        attrs.push(KeyValue::new("jusinfer.key_id", k.clone()));
    }
    if let Some(p) = &r.provider {
        attrs.push(KeyValue::new("jusinfer.provider", p.clone()));
    }
    if let Some(m) = &r.upstream_model {
        attrs.push(KeyValue::new("gen_ai.response.model", m.clone()));
    }
    if let Some(c) = r.cost_usd {
        attrs.push(KeyValue::new("jusinfer.cost_usd", c));
    }
    if let Some(c) = &r.cache {
        attrs.push(KeyValue::new("jusinfer.cache", c.clone()));
        if let Some(s) = r.saved_usd {
            attrs.push(KeyValue::new("jusinfer.cache.saved_usd", s));
        }
    }
    if r.cached_tokens > 0 {
        attrs.push(KeyValue::new(
            "gen_ai.usage.cache_read.input_tokens",
            to_i64(r.cached_tokens),
        ));
    }
    broken_stream(&span, r);
    if r.status >= 400 {
        let e = r.error_type.clone().unwrap_or_else(|| r.status.to_string());
        attrs.push(KeyValue::new("error.type", e.clone()));
        if r.status >= 500 || r.status == 499 {
            span.set_status(Status::error(e));
        }
    }
    span.set_attributes(attrs);
    span.end();
}

/// A stream that broke, or that the client left, after it began (status 200): its
/// `error.type`; an error status unless the client left.
fn broken_stream(span: &opentelemetry::trace::SpanRef<'_>, r: &UsageRecord) {
    let Some(e) = r.error_type.as_ref().filter(|_| r.status < 400) else {
        return;
    };
    span.set_attribute(KeyValue::new("error.type", e.clone()));
    if e != "client_disconnected" {
        span.set_status(Status::error(e.clone()));
    }
}

/// Ends the span of a request refused before it had a usage row (authentication).
pub(crate) fn end_unrecorded(cx: Option<&Context>, status: u16, kind: &'static str) {
    let Some(cx) = cx else { return };
    let span = cx.span();
    span.set_attributes([
        KeyValue::new("http.response.status_code", i64::from(status)),
        KeyValue::new("error.type", kind),
    ]);
    if status >= 500 {
        span.set_status(Status::error(kind));
    }
    span.end();
}

fn to_i64(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

/// `server.address` and `server.port` of a base URL.
fn server_of(base_url: &str) -> (String, Option<u16>) {
    match base_url.parse::<http::Uri>() {
        Ok(u) => (
            u.host().unwrap_or_default().to_owned(),
            u.port_u16().or(match u.scheme_str() {
                Some("https") => Some(443),
                Some("http") => Some(80),
                _ => None,
            }),
        ),
        Err(_) => (String::new(), None),
    }
}

/// Writes the current context's `traceparent` (and `tracestate`) into an upstream request.
pub(crate) fn inject(headers: &mut HeaderMap) {
    if TRACES.get().is_none() {
        return;
    }
    let cx = Context::current();
    if cx.span().span_context().is_valid() {
        TraceContextPropagator::new().inject_context(&cx, &mut HeaderInjector(headers));
    }
}

/// An export error safe to log: URLs in it (the endpoint, with any userinfo or secret
/// query values) redacted, key-shaped tokens scrubbed, at most 500 bytes.
fn shown(error: &str) -> String {
    let mut out = String::with_capacity(error.len());
    let mut rest = error;
    while let Some(at) = rest.find("://") {
        let start = rest[..at]
            .rfind(|c: char| !c.is_ascii_alphanumeric())
            .map_or(0, |i| i + 1);
        let end = rest[at..]
            .find(|c: char| c.is_whitespace() || matches!(c, '"' | '\'' | ')' | ',' | '}' | '>'))
            .map_or(rest.len(), |i| at + i);
        out.push_str(&rest[..start]);
        out.push_str(&crate::store::redact(&rest[start..end]));
        rest = &rest[end..];
    }
    out.push_str(rest);
    let out = crate::error::scrub(&out, &[]);
    head(&out, 500).to_owned()
}

/// The exporter, its results counted (`jusinfer_trace_spans_exported_total`) and its
/// failures logged at most once a minute: a collector that is down is not silent.
#[derive(Debug)]
struct Counted<E>(E);

/// When a failed export was last logged (seconds since the Unix epoch).
static LAST_FAILURE_LOG: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

impl<E: opentelemetry_sdk::trace::SpanExporter> opentelemetry_sdk::trace::SpanExporter
    for Counted<E>
{
    async fn export(
        &self,
        batch: Vec<opentelemetry_sdk::trace::SpanData>,
    ) -> opentelemetry_sdk::error::OTelSdkResult {
        use std::sync::atomic::Ordering;
        let n = batch.len() as u64;
        let r = self.0.export(batch).await;
        let result = if r.is_ok() { "ok" } else { "failed" };
        crate::metrics::get()
            .trace_spans
            .with_label_values(&[result])
            .inc_by(n);
        if let Err(e) = &r {
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_secs());
            let last = LAST_FAILURE_LOG.load(Ordering::Relaxed);
            if now >= last.saturating_add(60)
                && LAST_FAILURE_LOG
                    .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
                    .is_ok()
            {
                let error = shown(&e.to_string());
                tracing::warn!(spans = n, %error, "traces: the OTLP collector refused or missed an export (spans dropped; logged at most once a minute, counted in jusinfer_trace_spans_exported_total)");
            }
        }
        r
    }

    fn shutdown_with_timeout(
        &mut self,
        timeout: Duration,
    ) -> opentelemetry_sdk::error::OTelSdkResult {
        self.0.shutdown_with_timeout(timeout)
    }

    fn force_flush(&mut self) -> opentelemetry_sdk::error::OTelSdkResult {
        self.0.force_flush()
    }

    fn set_resource(&mut self, resource: &opentelemetry_sdk::Resource) {
        self.0.set_resource(resource);
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn an_export_error_is_logged_without_its_secrets() {
        let e = "Operation failed: reqwest::Error { kind: Status(401), url: \"https://ops:s3cret-pass@collector.example:4318/v1/traces?api-key=abcdef123456&x=1\" } sk-abcdefghijklmnopqrstuvwx";
        let shown = super::shown(e);
        assert!(
            !shown.contains("s3cret-pass") && !shown.contains("abcdef123456"),
            "{shown}"
        );
        assert!(!shown.contains("sk-abcdefghijklmnopqrstuvwx"), "{shown}");
        assert!(
            shown.contains("collector.example:4318/v1/traces") && shown.contains("Status(401)")
        );
        assert!(super::shown(&"x".repeat(5000)).len() <= 500);
    }
}
