//! The one cost function: USD for a usage at a price.

use jusinfer_wire::chat::Usage;

/// USD per million tokens.
#[derive(Debug, Clone, Copy, PartialEq, serde::Deserialize, serde::Serialize)]
pub struct Price {
    pub input: f64,
    pub output: f64,
    /// Cache reads; the input price when the provider has no discount.
    #[serde(default)]
    pub cache_read: Option<f64>,
    /// Cache writes; the input price when the provider charges no premium.
    #[serde(default)]
    pub cache_write: Option<f64>,
}

/// The cost of `u` at `p`. `prompt_tokens` includes cached reads and cache writes, which
/// are priced at their own rates.
pub fn cost(p: &Price, u: &Usage) -> f64 {
    let details = u.prompt_tokens_details.clone().unwrap_or_default();
    let read = details.cached_tokens;
    let write = details.cache_write_tokens;
    let fresh = u.prompt_tokens.saturating_sub(read + write);
    let usd = fresh as f64 * p.input
        + read as f64 * p.cache_read.unwrap_or(p.input)
        + write as f64 * p.cache_write.unwrap_or(p.input)
        + u.completion_tokens as f64 * p.output;
    // Round to a nano-dollar so sums stay readable.
    (usd / 1_000_000.0 * 1e9).round() / 1e9
}

#[cfg(test)]
mod tests {
    use super::*;
    use jusinfer_wire::chat::PromptTokensDetails;

    #[test]
    fn cache_reads_and_writes_have_their_own_rates() {
        let p = Price {
            input: 3.0,
            output: 15.0,
            cache_read: Some(0.3),
            cache_write: Some(3.75),
        };
        let u = Usage {
            prompt_tokens: 1532,
            completion_tokens: 33,
            total_tokens: 1565,
            prompt_tokens_details: Some(PromptTokensDetails {
                cached_tokens: 1111,
                audio_tokens: 0,
                cache_write_tokens: 418,
            }),
            ..Usage::default()
        };
        let want = (3.0 * 3.0 + 1111.0 * 0.3 + 418.0 * 3.75 + 33.0 * 15.0) / 1e6;
        assert!(
            (cost(&p, &u) - want).abs() < 1e-9,
            "{} vs {want}",
            cost(&p, &u)
        );
    }
}
