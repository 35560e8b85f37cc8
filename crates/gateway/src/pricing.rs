//! The price catalog: the bundled data file (`prices.toml`, with its date) under the
//! config's `[prices]` overrides. The cost formula itself is `jusinfer_translate::pricing`.

use std::collections::HashMap;

use indexmap::IndexMap;
use jusinfer_translate::pricing::Price;

use crate::config::RawPrice;

const BUNDLED: &str = include_str!("prices.toml");

#[derive(serde::Deserialize)]
struct Catalog {
    date: String,
    #[serde(default)]
    sources: Vec<String>,
    models: HashMap<String, Price>,
}

/// Prices by model, overrides first.
#[derive(Debug, Clone, Default)]
pub struct Prices {
    /// `provider/model` or `model` → price, from the config.
    overrides: HashMap<String, Price>,
    bundled: HashMap<String, Price>,
    /// Provider → its deployment names → the model each serves (Azure): a deployment is
    /// priced as its model.
    deployments: HashMap<String, HashMap<String, String>>,
    pub catalog_date: String,
    pub catalog_sources: Vec<String>,
}

impl Prices {
    pub fn new(overrides: &IndexMap<String, RawPrice>) -> Self {
        let catalog: Catalog = toml::from_str(BUNDLED).unwrap_or(Catalog {
            date: String::new(),
            sources: Vec::new(),
            models: HashMap::new(),
        });
        Self {
            overrides: overrides
                .iter()
                .map(|(k, p)| {
                    (
                        k.clone(),
                        Price {
                            input: p.input,
                            output: p.output,
                            cache_read: p.cached_input,
                            cache_write: p.cache_write,
                        },
                    )
                })
                .collect(),
            bundled: catalog.models,
            deployments: HashMap::new(),
            catalog_date: catalog.date,
            catalog_sources: catalog.sources,
        }
    }

    /// Prices `provider`'s deployments as the models they serve (`deployments`: model →
    /// deployment, as configured).
    pub fn with_deployments<'a>(
        mut self,
        provider: &str,
        deployments: impl IntoIterator<Item = (&'a String, &'a String)>,
    ) -> Self {
        let map: HashMap<String, String> = deployments
            .into_iter()
            .map(|(model, dep)| (dep.clone(), model.clone()))
            .collect();
        if !map.is_empty() {
            self.deployments.insert(provider.to_owned(), map);
        }
        self
    }

    /// The price of `model` (or of the deployment so named) as served by `provider`, if
    /// known.
    pub fn get(&self, provider: &str, model: &str) -> Option<Price> {
        let model = self
            .deployments
            .get(provider)
            .and_then(|d| d.get(model))
            .map_or(model, String::as_str);
        if !self.overrides.is_empty() {
            let key = format!("{provider}/{model}");
            if let Some(p) = self
                .overrides
                .get(&key)
                .or_else(|| self.overrides.get(model))
            {
                return Some(*p);
            }
        }
        let undated = strip_date(model);
        self.bundled
            .get(model)
            .or_else(|| self.bundled.get(undated))
            .or_else(|| {
                // A Bedrock id: its foundation model's entry, Claude's under its own name.
                let base = bedrock_base(model)?;
                self.bundled.get(base).or_else(|| {
                    let claude = base.strip_prefix("anthropic.")?;
                    let claude = strip_bedrock_version(claude);
                    self.bundled
                        .get(claude)
                        .or_else(|| self.bundled.get(strip_date(claude)))
                })
            })
            .copied()
    }
}

/// The foundation model a Bedrock id names: `us.anthropic.claude-…-v1:0` and an
/// inference-profile ARN ending `/eu.amazon.nova-pro-v1:0` name `anthropic.claude-…-v1:0`
/// and `amazon.nova-pro-v1:0`. `None` for ids that are not Bedrock's.
fn bedrock_base(model: &str) -> Option<&str> {
    let id = crate::upstream::bedrock::foundation_model(model);
    const VENDORS: &[&str] = &[
        "anthropic.",
        "amazon.",
        "meta.",
        "mistral.",
        "cohere.",
        "ai21.",
        "deepseek.",
        "openai.",
        "qwen.",
        "writer.",
    ];
    VENDORS.iter().any(|v| id.starts_with(v)).then_some(id)
}

/// `claude-sonnet-4-5-20250929-v1:0` → `claude-sonnet-4-5-20250929`.
fn strip_bedrock_version(id: &str) -> &str {
    let Some((head, tail)) = id.rsplit_once("-v") else {
        return id;
    };
    let is_version = !tail.is_empty()
        && tail
            .split(':')
            .all(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()));
    if is_version {
        head
    } else {
        id
    }
}

/// `claude-sonnet-4-5-20250929` → `claude-sonnet-4-5`; `gpt-4o-2024-08-06` → `gpt-4o`.
fn strip_date(model: &str) -> &str {
    let b = model.as_bytes();
    let digits = |s: &[u8]| s.iter().all(u8::is_ascii_digit);
    if b.len() > 9 && b[b.len() - 9] == b'-' && digits(&b[b.len() - 8..]) {
        return &model[..model.len() - 9];
    }
    if b.len() > 11 && b[b.len() - 11] == b'-' && b[b.len() - 6] == b'-' && b[b.len() - 3] == b'-' {
        let (y, m, d) = (
            &b[b.len() - 10..b.len() - 6],
            &b[b.len() - 5..b.len() - 3],
            &b[b.len() - 2..],
        );
        if digits(y) && digits(m) && digits(d) {
            return &model[..model.len() - 11];
        }
    }
    model
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bundled_catalog_parses_and_dated_names_fall_back() {
        let p = Prices::new(&IndexMap::new());
        assert!(!p.catalog_date.is_empty());
        assert!(
            p.catalog_sources.len() >= 7,
            "every provider's source is named"
        );
        for model in [
            "gpt-4o",
            "claude-sonnet-4-5",
            "meta-llama/Llama-3.3-70B-Instruct-Turbo",
            "accounts/fireworks/models/llama-v3p3-70b-instruct",
            "llama-3.3-70b-versatile",
            "deepseek-chat",
            "mistral-large-latest",
        ] {
            assert!(p.get("any", model).is_some(), "{model} is in the catalog");
        }
        assert!(p.bundled.len() > 20);
        assert_eq!(
            p.get("anthropic", "claude-sonnet-4-5-20250929")
                .map(|x| x.input),
            Some(3.0)
        );
        assert_eq!(
            p.get("openai", "gpt-4o-2024-08-06").map(|x| x.output),
            Some(10.0)
        );
        assert_eq!(p.get("openai", "no-such-model"), None);
    }

    #[test]
    fn bedrock_ids_are_priced_as_the_models_they_name() {
        let p = Prices::new(&IndexMap::new());
        let sonnet = p.get("anthropic", "claude-sonnet-4-5").expect("sonnet");
        for id in [
            "anthropic.claude-sonnet-4-5-20250929-v1:0",
            "us.anthropic.claude-sonnet-4-5-20250929-v1:0",
            "global.anthropic.claude-sonnet-4-5-20250929-v1:0",
            "arn:aws:bedrock:eu-west-1:123456789012:inference-profile/eu.anthropic.claude-sonnet-4-5-20250929-v1:0",
        ] {
            assert_eq!(p.get("aws", id), Some(sonnet), "{id}");
        }
        // Cache writes and reads priced apart.
        assert_eq!(
            (sonnet.cache_read, sonnet.cache_write),
            (Some(0.3), Some(3.75))
        );
        let nova = p.get("aws", "us.amazon.nova-pro-v1:0").expect("nova pro");
        assert_eq!(
            (nova.input, nova.output, nova.cache_read),
            (0.8, 3.2, Some(0.2))
        );
        assert!(p.get("aws", "amazon.titan-embed-text-v2:0").is_some());
        assert_eq!(p.get("aws", "us.anthropic.claude-unknown-v1:0"), None);
        assert_eq!(p.get("aws", "us.example"), None);
        assert_eq!(
            strip_bedrock_version("claude-3-haiku-20240307-v1:0"),
            "claude-3-haiku-20240307"
        );
        assert_eq!(strip_bedrock_version("claude-vx"), "claude-vx");
    }

    #[test]
    fn a_deployment_is_priced_as_its_model() {
        let deps: IndexMap<String, String> = [("gpt-4o".to_owned(), "prod-4o".to_owned())]
            .into_iter()
            .collect();
        let p = Prices::new(&IndexMap::new()).with_deployments("az", &deps);
        assert_eq!(p.get("az", "prod-4o"), p.get("openai", "gpt-4o"));
        assert!(p.get("az", "prod-4o").is_some());
        assert!(p.get("other", "prod-4o").is_none());
    }

    #[test]
    fn config_overrides_win() {
        let mut o = IndexMap::new();
        o.insert(
            "local/qwen3-8b".to_owned(),
            RawPrice {
                input: 0.05,
                output: 0.1,
                cached_input: None,
                cache_write: None,
            },
        );
        let p = Prices::new(&o);
        assert_eq!(p.get("local", "qwen3-8b").map(|x| x.output), Some(0.1));
        assert_eq!(p.get("other", "qwen3-8b"), None);
    }
}
