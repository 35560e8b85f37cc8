//! The attempt stage: try the route's deployments in order until one answers. An error
//! that another attempt could mend (connect failure, timeout before the first byte, 408,
//! 429, 5xx, 529) moves on; any other reaches the client. Nothing is retried once a byte
//! has gone to the client: providers hand back a response only after the upstream's first
//! event arrived intact.

use std::time::{Duration, Instant};

use axum::response::Response;

use crate::config::ProviderKind;
use crate::error::{Fault, GatewayError};
use crate::metrics;
use crate::routing::Deployment;

/// What the attempt loop ended with.
pub(crate) struct Outcome {
    pub result: Result<Response, GatewayError>,
    /// The provider that produced `result` (the last one tried), and its model name.
    pub provider: Option<String>,
    pub upstream_model: Option<String>,
    /// That deployment's price (the catalog it was routed with).
    pub price: Option<jusinfer_translate::pricing::Price>,
    pub attempts: u32,
    /// Tracing on: the answering attempt's span, ended with the request's (when its
    /// answer has ended).
    pub attempt_span: Option<opentelemetry::Context>,
}

/// Base of the exponential backoff between retries of one deployment.
const BACKOFF_BASE: Duration = Duration::from_millis(100);
/// Longest wait between two attempts of one deployment. An upstream that asks for a longer
/// wait (Retry-After) is left for the next deployment instead.
pub(crate) const BACKOFF_CAP: Duration = Duration::from_secs(5);

/// Runs `attempt` over `deployments` in order: each is tried up to its provider's
/// `retries` + 1 times while its failures are retryable, then the next. A deployment whose
/// circuit is open is skipped; a connect failure, or a Retry-After beyond
/// [`BACKOFF_CAP`], moves on at once.
pub(crate) async fn run<F, Fut>(
    deployments: &[Deployment],
    trace: Option<&opentelemetry::Context>,
    endpoint: &str,
    mut attempt: F,
) -> Outcome
where
    F: FnMut(Deployment) -> Fut,
    Fut: std::future::Future<Output = Result<Response, GatewayError>>,
{
    let m = metrics::get();
    let mut attempts = 0;
    let mut last: Option<(GatewayError, Deployment)> = None;
    let mut skipped: Option<Duration> = None;
    for d in deployments {
        let tries = d.provider.config.retries.saturating_add(1);
        let mut wait: Option<Duration> = None;
        for n in 0..tries {
            // Wait first: a half-open probe must not be held through a backoff.
            if let Some(w) = wait.take() {
                tokio::time::sleep(w).await;
            }
            let Some(permit) = d.health.try_acquire() else {
                m.circuit_skips
                    .with_label_values(&[d.provider.name(), d.upstream_model.as_str()])
                    .inc();
                let r = d.health.retry_in();
                skipped = Some(skipped.map_or(r, |s| s.min(r)));
                break;
            };
            attempts += 1;
            if attempts > 1 {
                m.retries.with_label_values(&[d.provider.name()]).inc();
            }
            let t0 = Instant::now();
            let (result, attempt_span) = match trace {
                // Tracing on: the attempt runs in its own span's context (the upstream
                // request carries it as `traceparent`). A failed one ends here; the
                // answering one, with the request.
                Some(parent) => {
                    use opentelemetry::context::FutureExt as _;
                    let cx = crate::telemetry::start_attempt(parent, endpoint, d, attempts);
                    let r = attempt(d.clone()).with_context(cx.clone()).await;
                    match &r {
                        Ok(_) => (r, Some(cx)),
                        Err(e) => {
                            crate::telemetry::end_attempt(&cx, Some(e.fault.label()));
                            (r, None)
                        }
                    }
                }
                None => (attempt(d.clone()).await, None),
            };
            match result {
                Ok(resp) => {
                    let stream = resp
                        .headers()
                        .get("content-type")
                        .is_some_and(|v| v.as_bytes().starts_with(b"text/event-stream"));
                    permit.success(t0.elapsed(), !stream);
                    return Outcome {
                        result: Ok(resp),
                        provider: Some(d.provider.name().to_owned()),
                        upstream_model: Some(d.upstream_model.clone()),
                        price: d.price,
                        attempts,
                        attempt_span,
                    };
                }
                Err(e) if e.fault == Fault::Unsupported => {
                    // The deployment cannot serve this endpoint: says nothing of its health.
                    permit.neutral();
                    last = Some((e, d.clone()));
                    break;
                }
                Err(e) if e.retryable => {
                    permit.failure();
                    m.upstream_error(d.provider.name(), e.fault);
                    tracing::info!(provider = %d.provider.name(), model = %d.upstream_model, error = %e, "attempt failed");
                    let next = backoff(n + 1, e.retry_after_ms);
                    // A refused connection or a malformed answer would likely repeat at
                    // once (and the latter may already be billed): the next deployment.
                    let move_on =
                        matches!(e.fault, Fault::Connect | Fault::Malformed) || next.is_none();
                    last = Some((e, d.clone()));
                    if move_on {
                        break;
                    }
                    wait = next;
                }
                Err(e) => {
                    // The request's own fault (or credentials): nothing to say of health.
                    permit.neutral();
                    return Outcome {
                        result: Err(e),
                        provider: Some(d.provider.name().to_owned()),
                        upstream_model: Some(d.upstream_model.clone()),
                        price: d.price,
                        attempts,
                        attempt_span: None,
                    };
                }
            }
        }
    }
    match (last, skipped) {
        (Some((e, d)), _) => Outcome {
            result: Err(e),
            provider: Some(d.provider.name().to_owned()),
            price: d.price,
            upstream_model: Some(d.upstream_model),
            attempts,
            attempt_span: None,
        },
        (None, Some(retry_in)) => Outcome {
            result: Err(GatewayError::unavailable(
                format!(
                    "Every deployment of this model is cooling down after repeated failures (circuit open); the next probe is in {:.1}s.",
                    retry_in.as_secs_f64()
                ),
                u64::try_from(retry_in.as_millis()).unwrap_or(u64::MAX).max(1),
            )
            .code("circuit_open")),
            provider: None,
            upstream_model: None,
            price: None,
            attempts,
            attempt_span: None,
        },
        (None, None) => Outcome {
            result: Err(GatewayError::internal("the route has no deployments")),
            provider: None,
            upstream_model: None,
            price: None,
            attempts,
            attempt_span: None,
        },
    }
}

/// The wait before the `n`th retry (from 1) of the same deployment: the upstream's
/// Retry-After when it sent one (`None` past [`BACKOFF_CAP`]: better the next deployment),
/// else exponential backoff from [`BACKOFF_BASE`] with jitter.
fn backoff(n: u32, retry_after_ms: Option<u64>) -> Option<Duration> {
    if let Some(ms) = retry_after_ms {
        let d = Duration::from_millis(ms);
        return (d <= BACKOFF_CAP).then_some(d);
    }
    let exp = BACKOFF_BASE.saturating_mul(1 << n.saturating_sub(1).min(6));
    // Jitter keeps many clients from retrying in step.
    let jitter = rand::random::<f64>();
    Some(exp.mul_f64(0.5 + jitter / 2.0).min(BACKOFF_CAP))
}
/// The error for a deployment whose kind cannot serve this endpoint.
pub(crate) fn unsupported(kind: ProviderKind, provider: &str, what: &str) -> GatewayError {
    GatewayError::upstream(format!(
        "provider `{provider}` (kind {}) cannot serve {what} in this build",
        kind.as_str()
    ))
    .code("unsupported_provider")
    .fault(Fault::Unsupported)
    .retryable(true)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_honours_retry_after_up_to_the_cap() {
        assert_eq!(backoff(1, Some(1500)), Some(Duration::from_millis(1500)));
        assert_eq!(backoff(1, Some(0)), Some(Duration::ZERO));
        assert_eq!(
            backoff(1, Some(60_000)),
            None,
            "past the cap: next deployment"
        );
        for n in 1..20 {
            let d = backoff(n, None).expect("always a wait");
            assert!(d <= BACKOFF_CAP);
            assert!(d >= BACKOFF_BASE / 2);
        }
    }
}
