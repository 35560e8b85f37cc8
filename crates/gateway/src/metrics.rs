//! Prometheus metrics (`GET /metrics`, text format 0.0.4).
//!
//! One process-wide set, like the Prometheus clients' default registry: the request path
//! touches it through [`get`] without plumbing. Request counters, latency, time to first
//! token, tokens and cost are all observed from the usage row ([`Metrics::observe`],
//! called by the ledger), so a metric and the ledger can never disagree on what a request
//! was. Label values are bounded: a model name the router did not resolve is `-`.

use std::sync::OnceLock;

use prometheus::{
    CounterVec, Encoder, HistogramOpts, HistogramVec, IntCounterVec, IntGauge, IntGaugeVec, Opts,
    Registry, TextEncoder,
};

use crate::error::Fault;
use crate::health::HealthBook;
use crate::usage::UsageRecord;

/// Seconds; from a cached answer to a long generation.
const LATENCY_BUCKETS: &[f64] = &[
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0,
];

/// Distinct `model` label values kept; later new names are counted as `other`.
const MAX_MODEL_LABELS: usize = 1000;

pub(crate) struct Metrics {
    registry: Registry,
    /// The model label values in use (see [`MAX_MODEL_LABELS`]).
    models: dashmap::DashMap<String, ()>,
    pub requests: IntCounterVec,
    pub latency: HistogramVec,
    pub ttft: HistogramVec,
    pub tokens: IntCounterVec,
    pub cost: CounterVec,
    pub upstream_errors: IntCounterVec,
    pub retries: IntCounterVec,
    pub circuit_skips: IntCounterVec,
    pub circuit_state: IntGaugeVec,
    pub in_flight: IntGauge,
    pub http: IntCounterVec,
    pub overload: IntCounterVec,
    /// Client connections open now.
    pub connections: IntGauge,
    /// Client connections closed or refused by the gateway, by why (`idle`, `head_timeout`,
    /// `evicted`, `refused`).
    pub connections_closed: IntCounterVec,
    /// Config reloads by result (`applied`, `refused`).
    pub config_reloads: IntCounterVec,
    /// Requests the exact cache was asked about, by `hit` / `miss` / `bypass`.
    pub cache_requests: IntCounterVec,
    /// What cache hits would have cost upstream.
    pub cache_saved: CounterVec,
    /// Answers offered to the cache, by what became of them (`stored`, `uncacheable`,
    /// `too_large`, `dropped`, `failed`).
    pub cache_writes: IntCounterVec,
    /// Spans handed to the OTLP collector, by the export's result (`ok`, `failed`).
    pub trace_spans: IntCounterVec,
    /// When the running config was loaded (Unix seconds).
    pub config_loaded_at: IntGauge,
    /// Settings changed in the file that wait for a restart.
    pub config_restart_required: IntGauge,
    /// One render at a time: the circuit gauges are reset and refilled per render.
    render: std::sync::Mutex<()>,
}

static METRICS: OnceLock<Metrics> = OnceLock::new();

/// The process's metrics.
pub(crate) fn get() -> &'static Metrics {
    METRICS.get_or_init(Metrics::new)
}

fn counter(r: &Registry, name: &str, help: &str, labels: &[&str]) -> IntCounterVec {
    let c = IntCounterVec::new(Opts::new(name, help), labels)
        .unwrap_or_else(|e| unreachable_metric(name, &e));
    let _ = r.register(Box::new(c.clone()));
    c
}

fn histogram(r: &Registry, name: &str, help: &str, labels: &[&str]) -> HistogramVec {
    let h = HistogramVec::new(
        HistogramOpts::new(name, help).buckets(LATENCY_BUCKETS.to_vec()),
        labels,
    )
    .unwrap_or_else(|e| unreachable_metric(name, &e));
    let _ = r.register(Box::new(h.clone()));
    h
}

/// Metric definitions are constants: an invalid one is a bug caught by the unit test.
#[expect(
    clippy::panic,
    reason = "a constant metric definition that is invalid is a bug"
)]
fn unreachable_metric(name: &str, e: &prometheus::Error) -> ! {
    panic!("metric {name} is invalid: {e}")
}

impl Metrics {
    fn new() -> Self {
        let r = Registry::new();
        let cost = CounterVec::new(
            Opts::new(
                "jusinfer_cost_usd_total",
                "Cost of completed requests in USD (catalog prices)",
            ),
            &["model", "provider"],
        )
        .unwrap_or_else(|e| unreachable_metric("cost", &e));
        let _ = r.register(Box::new(cost.clone()));
        let circuit_state = IntGaugeVec::new(
            Opts::new(
                "jusinfer_circuit_state",
                "Circuit breaker state per deployment: 0 closed, 1 open, 2 half-open",
            ),
            &["provider", "model"],
        )
        .unwrap_or_else(|e| unreachable_metric("circuit", &e));
        let _ = r.register(Box::new(circuit_state.clone()));
        let in_flight = IntGauge::new(
            "jusinfer_in_flight_requests",
            "Requests being served, streams included",
        )
        .unwrap_or_else(|e| unreachable_metric("in_flight", &e));
        let _ = r.register(Box::new(in_flight.clone()));
        let connections = IntGauge::new("jusinfer_open_connections", "Client connections open")
            .unwrap_or_else(|e| unreachable_metric("connections", &e));
        let _ = r.register(Box::new(connections.clone()));
        let config_loaded_at = IntGauge::new(
            "jusinfer_config_loaded_timestamp_seconds",
            "When the running configuration was loaded, in Unix seconds",
        )
        .unwrap_or_else(|e| unreachable_metric("config_loaded_at", &e));
        let _ = r.register(Box::new(config_loaded_at.clone()));
        let config_restart_required = IntGauge::new(
            "jusinfer_config_restart_required",
            "Settings changed in the config file that take effect only after a restart",
        )
        .unwrap_or_else(|e| unreachable_metric("config_restart_required", &e));
        let _ = r.register(Box::new(config_restart_required.clone()));
        let cache_saved = CounterVec::new(
            Opts::new(
                "jusinfer_cache_saved_usd_total",
                "What requests answered by the exact response cache would have cost upstream, in USD",
            ),
            &["model"],
        )
        .unwrap_or_else(|e| unreachable_metric("cache_saved", &e));
        let _ = r.register(Box::new(cache_saved.clone()));
        Self {
            cache_requests: counter(
                &r,
                "jusinfer_cache_requests_total",
                "Requests the exact response cache applied to, by result: hit, miss, bypass",
                &["result"],
            ),
            cache_saved,
            cache_writes: counter(
                &r,
                "jusinfer_cache_writes_total",
                "Answers offered to the exact response cache, by outcome",
                &["result"],
            ),
            trace_spans: counter(
                &r,
                "jusinfer_trace_spans_exported_total",
                "Spans sent to the OTLP collector, by the export's result: ok, failed",
                &["result"],
            ),
            config_reloads: counter(
                &r,
                "jusinfer_config_reloads_total",
                "Configuration reloads by result: applied, refused",
                &["result"],
            ),
            config_loaded_at,
            config_restart_required,
            render: std::sync::Mutex::new(()),
            connections,
            connections_closed: counter(
                &r,
                "jusinfer_connections_closed_total",
                "Client connections the gateway closed or refused, by reason",
                &["reason"],
            ),
            requests: counter(
                &r,
                "jusinfer_requests_total",
                "API requests by endpoint, requested model, provider and status",
                &["endpoint", "model", "provider", "status"],
            ),
            latency: histogram(
                &r,
                "jusinfer_request_duration_seconds",
                "Whole request latency (streams: until the last byte)",
                &["endpoint", "model", "provider"],
            ),
            ttft: histogram(
                &r,
                "jusinfer_time_to_first_token_seconds",
                "Time to the first token of streamed responses",
                &["model", "provider"],
            ),
            tokens: counter(
                &r,
                "jusinfer_tokens_total",
                "Tokens by kind: prompt, completion, cached, reasoning",
                &["model", "provider", "kind"],
            ),
            cost,
            upstream_errors: counter(
                &r,
                "jusinfer_upstream_errors_total",
                "Failed upstream attempts by provider and kind",
                &["provider", "kind"],
            ),
            retries: counter(
                &r,
                "jusinfer_retries_total",
                "Attempts after a request's first, by the provider they went to",
                &["provider"],
            ),
            circuit_skips: counter(
                &r,
                "jusinfer_circuit_skips_total",
                "Deployments skipped because their circuit was open",
                &["provider", "model"],
            ),
            circuit_state,
            in_flight,
            http: counter(
                &r,
                "jusinfer_http_requests_total",
                "Every HTTP request by route and status",
                &["route", "status"],
            ),
            overload: counter(
                &r,
                "jusinfer_overload_rejections_total",
                "Requests refused with 503 by a concurrency cap",
                &["scope"],
            ),
            registry: r,
            models: dashmap::DashMap::new(),
        }
    }

    /// `model` as a label value: `-` when the router did not resolve it, `other` once
    /// [`MAX_MODEL_LABELS`] names are in use (`provider/model` is the client's free text).
    fn model_label<'a>(&self, row: &'a UsageRecord) -> &'a str {
        if !row.routed {
            return "-";
        }
        if self.models.contains_key(&row.model) {
            return &row.model;
        }
        if self.models.len() < MAX_MODEL_LABELS {
            self.models.insert(row.model.clone(), ());
            return &row.model;
        }
        "other"
    }

    /// Counts one finished API request from its usage row.
    pub(crate) fn observe(&self, row: &UsageRecord) {
        let model = self.model_label(row);
        let provider = row.provider.as_deref().unwrap_or("none");
        let status = status_label(row.status);
        self.requests
            .with_label_values(&[row.endpoint.as_str(), model, provider, status])
            .inc();
        self.latency
            .with_label_values(&[row.endpoint.as_str(), model, provider])
            .observe(row.latency_ms as f64 / 1e3);
        if let Some(t) = row.ttft_ms {
            self.ttft
                .with_label_values(&[model, provider])
                .observe(t as f64 / 1e3);
        }
        for (kind, n) in [
            ("prompt", row.prompt_tokens),
            ("completion", row.completion_tokens),
            ("cached", row.cached_tokens),
            ("reasoning", row.reasoning_tokens),
        ] {
            if n > 0 {
                self.tokens
                    .with_label_values(&[model, provider, kind])
                    .inc_by(n);
            }
        }
        if let Some(c) = row.cost_usd.filter(|c| c.is_finite() && *c > 0.0) {
            self.cost.with_label_values(&[model, provider]).inc_by(c);
        }
        if let Some(result) = row.cache.as_deref() {
            self.cache_requests.with_label_values(&[result]).inc();
            if let Some(s) = row.saved_usd.filter(|c| c.is_finite() && *c > 0.0) {
                self.cache_saved.with_label_values(&[model]).inc_by(s);
            }
        }
    }

    pub(crate) fn upstream_error(&self, provider: &str, fault: Fault) {
        self.upstream_errors
            .with_label_values(&[provider, fault.label()])
            .inc();
    }

    /// The text exposition, with the circuit gauges read from `health` now.
    pub(crate) fn render(&self, health: &HealthBook) -> Vec<u8> {
        // Only the deployments tracked now (a reload may have dropped some). A poisoned
        // lock guards nothing inconsistent: the gauges are refilled below.
        let _one = self
            .render
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        self.circuit_state.reset();
        for h in health.all() {
            self.circuit_state
                .with_label_values(&[h.provider.as_str(), h.model.as_str()])
                .set(h.circuit().gauge());
        }
        let mut out = Vec::with_capacity(16 * 1024);
        if let Err(e) = TextEncoder::new().encode(&self.registry.gather(), &mut out) {
            tracing::warn!(error = %e, "cannot encode metrics");
        }
        out
    }
}

/// Static strings for the statuses the gateway sends (no allocation per request).
fn status_label(s: u16) -> &'static str {
    match s {
        200 => "200",
        201 => "201",
        400 => "400",
        401 => "401",
        403 => "403",
        404 => "404",
        408 => "408",
        413 => "413",
        422 => "422",
        429 => "429",
        499 => "499",
        500 => "500",
        502 => "502",
        503 => "503",
        504 => "504",
        529 => "529",
        s if s < 300 => "2xx",
        s if s < 500 => "4xx",
        _ => "5xx",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_metric_is_valid_and_rendered() {
        let m = get();
        let row = UsageRecord {
            endpoint: "/v1/chat/completions".into(),
            model: "m".into(),
            routed: true,
            provider: Some("p".into()),
            status: 200,
            prompt_tokens: 3,
            cost_usd: Some(0.5),
            ttft_ms: Some(12),
            ..UsageRecord::default()
        };
        m.observe(&row);
        m.upstream_error("p", Fault::Timeout);
        let text = String::from_utf8(m.render(&HealthBook::new(Default::default()))).expect("utf8");
        assert!(text.contains(r#"jusinfer_requests_total{endpoint="/v1/chat/completions",model="m",provider="p",status="200"} 1"#), "{text}");
        assert!(
            text.contains(r#"jusinfer_upstream_errors_total{kind="timeout",provider="p"} 1"#),
            "{text}"
        );
        assert!(text.contains("jusinfer_time_to_first_token_seconds_bucket"));
        assert!(text.contains(r#"jusinfer_cost_usd_total{model="m",provider="p"} 0.5"#));
    }
}
