//! The attempt stage: try the route's deployments in order until one answers. An error
//! that another attempt could mend (connect failure, timeout before the first byte, 408,
//! 429, 5xx, 529) moves on; any other reaches the client. Nothing is retried once a byte
//! has gone to the client: providers hand back a response only after the upstream's first
//! event arrived intact.

use std::time::Duration;

use axum::response::Response;

use crate::config::ProviderKind;
use crate::error::GatewayError;
use crate::routing::Deployment;

/// What the attempt loop ended with.
pub struct Outcome {
    pub result: Result<Response, GatewayError>,
    /// The provider that produced `result` (the last one tried), and its model name.
    pub provider: Option<String>,
    pub upstream_model: Option<String>,
    pub attempts: u32,
}

/// Base of the exponential backoff between retries of one deployment.
const BACKOFF_BASE: Duration = Duration::from_millis(100);
/// Longest wait between two attempts, whatever Retry-After says.
const BACKOFF_CAP: Duration = Duration::from_secs(5);

/// Runs `attempt` over `deployments` (each retried up to its provider's `retries`).
pub async fn run<F, Fut>(deployments: &[Deployment], mut attempt: F) -> Outcome
where
    F: FnMut(Deployment) -> Fut,
    Fut: std::future::Future<Output = Result<Response, GatewayError>>,
{
    let mut attempts = 0;
    let mut last: Option<(GatewayError, Deployment)> = None;
    for d in deployments {
        let tries = d.provider.config.retries + 1;
        for n in 0..tries {
            if n > 0 {
                let backoff = backoff(n, last.as_ref().and_then(|(e, _)| e.retry_after_ms));
                tokio::time::sleep(backoff).await;
            }
            attempts += 1;
            match attempt(d.clone()).await {
                Ok(resp) => {
                    return Outcome {
                        result: Ok(resp),
                        provider: Some(d.provider.name().to_owned()),
                        upstream_model: Some(d.upstream_model.clone()),
                        attempts,
                    };
                }
                Err(e) if e.retryable => {
                    tracing::info!(provider = %d.provider.name(), error = %e, "attempt failed; trying again");
                    last = Some((e, d.clone()));
                }
                Err(e) => {
                    return Outcome {
                        result: Err(e),
                        provider: Some(d.provider.name().to_owned()),
                        upstream_model: Some(d.upstream_model.clone()),
                        attempts,
                    }
                }
            }
        }
    }
    match last {
        Some((e, d)) => Outcome {
            result: Err(e),
            provider: Some(d.provider.name().to_owned()),
            upstream_model: Some(d.upstream_model),
            attempts,
        },
        None => Outcome {
            result: Err(GatewayError::internal("the route has no deployments")),
            provider: None,
            upstream_model: None,
            attempts,
        },
    }
}

fn backoff(n: u32, retry_after_ms: Option<u64>) -> Duration {
    if let Some(ms) = retry_after_ms {
        return Duration::from_millis(ms).min(BACKOFF_CAP);
    }
    let exp = BACKOFF_BASE.saturating_mul(1 << n.min(6));
    // Full jitter keeps many clients from retrying in step.
    let jitter = rand::random::<f64>();
    exp.mul_f64(0.5 + jitter / 2.0).min(BACKOFF_CAP)
}

/// The error for a deployment whose kind cannot serve this endpoint.
pub fn unsupported(kind: ProviderKind, provider: &str, what: &str) -> GatewayError {
    GatewayError::upstream(format!(
        "provider `{provider}` (kind {}) cannot serve {what} in this build",
        kind.as_str()
    ))
    .code("unsupported_provider")
    .retryable(true)
}
