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

    fn usage(prompt: u64, cached: u64, written: u64, completion: u64) -> Usage {
        Usage {
            prompt_tokens: prompt,
            completion_tokens: completion,
            total_tokens: prompt + completion,
            prompt_tokens_details: Some(PromptTokensDetails {
                cached_tokens: cached,
                audio_tokens: 0,
                cache_write_tokens: written,
            }),
            ..Usage::default()
        }
    }

    #[test]
    fn cost_table() {
        let sonnet = Price {
            input: 3.0,
            output: 15.0,
            cache_read: Some(0.3),
            cache_write: Some(3.75),
        };
        let gpt = Price {
            input: 2.5,
            output: 10.0,
            cache_read: Some(1.25),
            cache_write: None,
        };
        let flat = Price {
            input: 0.9,
            output: 0.9,
            cache_read: None,
            cache_write: None,
        };
        // (price, prompt, cached, cache-written, completion, USD)
        let rows: &[(&Price, u64, u64, u64, u64, f64)] = &[
            (&sonnet, 0, 0, 0, 0, 0.0),
            (&sonnet, 1_000_000, 0, 0, 0, 3.0),
            (&sonnet, 0, 0, 0, 1_000_000, 15.0),
            (&sonnet, 1_000_000, 1_000_000, 0, 0, 0.3),
            (&sonnet, 1_000_000, 0, 1_000_000, 0, 3.75),
            (
                &sonnet,
                2_000,
                1_000,
                500,
                100,
                (500.0 * 3.0 + 1_000.0 * 0.3 + 500.0 * 3.75 + 100.0 * 15.0) / 1e6,
            ),
            (
                &gpt,
                1_000,
                800,
                0,
                50,
                (200.0 * 2.5 + 800.0 * 1.25 + 50.0 * 10.0) / 1e6,
            ),
            // No cache-write price: written tokens cost the input price.
            (&gpt, 1_000, 0, 1_000, 0, 1_000.0 * 2.5 / 1e6),
            // No cache prices at all: every prompt token at the input price.
            (
                &flat,
                1_000,
                600,
                300,
                10,
                (1_000.0 * 0.9 + 10.0 * 0.9) / 1e6,
            ),
            // Details larger than the prompt (a provider's rounding): never negative.
            (&sonnet, 10, 20, 0, 0, 20.0 * 0.3 / 1e6),
        ];
        for (i, &(p, prompt, cached, written, completion, want)) in rows.iter().enumerate() {
            let got = cost(p, &usage(prompt, cached, written, completion));
            assert!((got - want).abs() < 1e-9, "row {i}: {got} vs {want}");
            assert!(got >= 0.0, "row {i}");
        }
    }

    #[test]
    fn cost_properties() {
        // A deterministic walk over many usages (no RNG crate needed).
        let p = Price {
            input: 3.0,
            output: 15.0,
            cache_read: Some(0.3),
            cache_write: Some(3.75),
        };
        let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
        let mut next = |m: u64| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x % m
        };
        for _ in 0..10_000 {
            let prompt = next(200_000);
            let cached = next(prompt + 1);
            let written = next(prompt - cached + 1);
            let completion = next(50_000);
            let c = cost(&p, &usage(prompt, cached, written, completion));
            // Reads are cheaper and writes dearer than fresh input; output adds linearly.
            let fresh_only = cost(&p, &usage(prompt, 0, 0, completion));
            assert!(c >= 0.0);
            if written == 0 {
                assert!(c <= fresh_only + 1e-9);
            }
            if cached == 0 {
                assert!(c + 1e-9 >= fresh_only);
            }
            let more = cost(&p, &usage(prompt, cached, written, completion + 1000));
            assert!((more - c - 1000.0 * 15.0 / 1e6).abs() < 2e-9);
            // Bounded by every token at the dearest rate.
            assert!(c <= (prompt as f64 * 3.75 + completion as f64 * 15.0) / 1e6 + 1e-9);
        }
    }
}
