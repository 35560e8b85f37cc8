//! Model resolution (§5): a `[[models]]` alias → its route; `provider/model` → that
//! provider; a model in a provider's static list → that provider; else 404 with close names.

use std::sync::Arc;

use crate::config::{Config, ModelAlias};
use crate::error::GatewayError;
use crate::providers::Provider;

/// One place a request can be sent: a provider and the model name it knows.
#[derive(Clone)]
pub struct Deployment {
    pub provider: Arc<Provider>,
    pub upstream_model: String,
}

/// Resolves model names against the configuration.
pub struct Router {
    providers: Vec<Arc<Provider>>,
    aliases: Vec<ModelAlias>,
}

impl Router {
    pub fn new(config: &Config, providers: Vec<Arc<Provider>>) -> Self {
        Self {
            providers,
            aliases: config.models.clone(),
        }
    }

    fn provider(&self, name: &str) -> Option<&Arc<Provider>> {
        self.providers.iter().find(|p| p.config.name == name)
    }

    /// The ordered deployments for `model`.
    pub fn resolve(&self, model: &str) -> Result<Vec<Deployment>, GatewayError> {
        if let Some(alias) = self.aliases.iter().find(|a| a.name == model) {
            return Ok(alias
                .route
                .iter()
                .filter_map(|(p, m)| {
                    self.provider(p).map(|p| Deployment {
                        provider: Arc::clone(p),
                        upstream_model: m.clone(),
                    })
                })
                .collect());
        }
        if let Some((prov, m)) = model.split_once('/') {
            if let Some(p) = self.provider(prov) {
                if !m.is_empty() {
                    return Ok(vec![Deployment {
                        provider: Arc::clone(p),
                        upstream_model: m.to_owned(),
                    }]);
                }
            }
        }
        if let Some(p) = self
            .providers
            .iter()
            .find(|p| p.config.models.iter().any(|m| m == model))
        {
            return Ok(vec![Deployment {
                provider: Arc::clone(p),
                upstream_model: model.to_owned(),
            }]);
        }
        Err(GatewayError::model_not_found(
            model,
            &self.close_names(model),
        ))
    }

    /// Every name a client can send: aliases, static models and their `provider/model`.
    pub fn model_names(&self) -> Vec<(String, String)> {
        let mut out: Vec<(String, String)> = Vec::new();
        for a in &self.aliases {
            out.push((a.name.clone(), "jusinfer".to_owned()));
        }
        for p in &self.providers {
            for m in &p.config.models {
                if !out.iter().any(|(n, _)| n == m) {
                    out.push((m.clone(), p.config.name.clone()));
                }
                out.push((format!("{}/{}", p.config.name, m), p.config.name.clone()));
            }
        }
        out
    }

    fn close_names(&self, model: &str) -> Vec<String> {
        let mut scored: Vec<(f64, String)> = self
            .model_names()
            .into_iter()
            .map(|(n, _)| {
                (
                    strsim::jaro_winkler(&n.to_lowercase(), &model.to_lowercase()),
                    n,
                )
            })
            .filter(|(s, _)| *s > 0.75)
            .collect();
        scored.sort_by(|a, b| b.0.total_cmp(&a.0));
        scored.into_iter().take(3).map(|(_, n)| n).collect()
    }
}
