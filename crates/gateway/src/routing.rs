//! Model resolution (§5): a `[[models]]` alias → its route; `provider/model` → that
//! provider; a model in a provider's static list → that provider; else 404 with close names.
//!
//! An alias's strategy orders its route for each request: `fallback` keeps the configured
//! order, `weighted` draws the order at random by weight (without replacement, so every
//! deployment stays a fallback), `least-latency` sorts by each deployment's moving average
//! latency (deployments with no sample yet first, so each is measured), `lowest-cost` by
//! the price catalog (unknown prices last; fixed at start). The attempt stage then walks
//! the order, skipping open circuits.

use std::sync::Arc;

use crate::config::{Config, ModelAlias, Strategy, Timeouts};
use crate::error::GatewayError;
use crate::health::{Health, HealthBook};
use crate::pricing::Prices;
use crate::upstream::Provider;
use jusinfer_translate::pricing::Price;

/// Longest model name accepted (names reach metric labels and logs).
pub(crate) const MAX_MODEL_NAME: usize = 256;

/// One place a request can be sent: a provider and the model name it knows.
#[derive(Clone)]
pub(crate) struct Deployment {
    pub provider: Arc<Provider>,
    /// The name the upstream knows: the model's, or its Azure deployment's (priced as the
    /// model, see `Prices::with_deployments`).
    pub upstream_model: String,
    pub health: Arc<Health>,
    /// The provider's timeouts with the alias's overrides applied.
    pub timeouts: Timeouts,
    /// Automatic prompt-cache breakpoints (Anthropic; the provider's or the alias's).
    pub auto_cache: bool,
    /// Its price in the catalog loaded with the route (a request is priced by the config
    /// it was routed on, whatever a reload does meanwhile); the built-in `echo` is free.
    pub price: Option<Price>,
}

fn price_for(prices: &Prices, p: &Provider, upstream_model: &str) -> Option<Price> {
    if p.speaks(upstream_model) == crate::upstream::Speaks::Local {
        return Some(Price {
            input: 0.0,
            output: 0.0,
            cache_read: None,
            cache_write: None,
        });
    }
    prices.get(p.name(), upstream_model)
}

impl Deployment {
    /// The dialect this deployment speaks natively.
    pub(crate) fn speaks(&self) -> crate::upstream::Speaks {
        self.provider.speaks(&self.upstream_model)
    }

    /// Where this deployment takes a Messages request as it is (`None`: only translated):
    /// its generation endpoint when it speaks Messages, else the kind's
    /// [`Endpoint::NativeMessages`] for the models that have one (Claude on Bedrock).
    pub(crate) fn native_messages(&self) -> Option<crate::upstream::Endpoint> {
        use crate::upstream::{Endpoint, Speaks};
        if self.speaks() == Speaks::Messages {
            return Some(Endpoint::ChatCompletions);
        }
        self.provider
            .upstream
            .native_messages
            .is_some_and(|f| f(&self.upstream_model))
            .then_some(Endpoint::NativeMessages)
    }
}

/// An alias as `/admin/providers` shows it.
#[derive(serde::Serialize)]
pub(crate) struct RouteView {
    pub model: String,
    pub strategy: Strategy,
    /// `provider/model`, in configured order (lowest-cost: cheapest first).
    pub route: Vec<String>,
    pub weights: Vec<f64>,
}

/// A routable model as the portal lists it.
pub(crate) struct CatalogEntry {
    pub model: String,
    /// `None`: a provider's static model, served by that provider alone.
    pub strategy: Option<Strategy>,
    pub deployments: Vec<Deployment>,
}

/// An alias with its deployments built once.
struct Route {
    name: String,
    strategy: Strategy,
    deployments: Vec<Deployment>,
    weights: Vec<f64>,
}

/// Resolves model names against the configuration.
pub(crate) struct Router {
    providers: Vec<Arc<Provider>>,
    aliases: Vec<ModelAlias>,
    routes: Vec<Route>,
    health: HealthBook,
    prices: Arc<Prices>,
}

impl Router {
    pub(crate) fn new(
        config: &Config,
        providers: Vec<Arc<Provider>>,
        prices: Arc<Prices>,
        health: HealthBook,
    ) -> Self {
        let find = |name: &str| providers.iter().find(|p| p.config.name == name).cloned();
        let mut routes = Vec::new();
        for alias in &config.models {
            let mut entries: Vec<(Deployment, f64, f64)> = Vec::new();
            for ((p, m), w) in alias.route.iter().zip(&alias.weights) {
                let Some(provider) = find(p) else { continue };
                let cost = prices
                    .get(p, m)
                    .map_or(f64::INFINITY, |pr| pr.input + pr.output);
                let upstream_model = provider.config.deployment_of(m).to_owned();
                entries.push((
                    Deployment {
                        timeouts: alias.timeouts_over(provider.config.timeouts),
                        auto_cache: alias.auto_cache || provider.config.auto_cache,
                        health: health.pin(p, m),
                        price: price_for(&prices, &provider, &upstream_model),
                        upstream_model,
                        provider,
                    },
                    *w,
                    cost,
                ));
            }
            if alias.strategy == Strategy::LowestCost {
                // Stable: equal prices keep the configured order.
                entries.sort_by(|a, b| a.2.total_cmp(&b.2));
            }
            routes.push(Route {
                name: alias.name.clone(),
                strategy: alias.strategy,
                weights: entries.iter().map(|e| e.1).collect(),
                deployments: entries.into_iter().map(|e| e.0).collect(),
            });
        }
        // Static models are known deployments: tracked from the start.
        for p in &providers {
            for m in &p.config.models {
                health.pin(p.name(), m);
            }
        }
        Self {
            providers,
            aliases: config.models.clone(),
            routes,
            health,
            prices,
        }
    }

    /// The exact cache's policy of the alias `model` names, if it has one.
    pub(crate) fn cache_policy(&self, model: &str) -> Option<&crate::config::CachePolicy> {
        self.aliases
            .iter()
            .find(|a| a.name == model)
            .and_then(|a| a.cache.as_ref())
    }

    fn provider(&self, name: &str) -> Option<&Arc<Provider>> {
        self.providers.iter().find(|p| p.config.name == name)
    }

    fn direct(&self, p: &Arc<Provider>, model: &str) -> Deployment {
        let upstream_model = p.config.deployment_of(model);
        Deployment {
            provider: Arc::clone(p),
            price: price_for(&self.prices, p, upstream_model),
            upstream_model: upstream_model.to_owned(),
            health: self.health.get(p.name(), model),
            timeouts: p.config.timeouts,
            auto_cache: p.config.auto_cache,
        }
    }

    /// The deployments for `model`, in the order this request tries them.
    pub(crate) fn resolve(&self, model: &str) -> Result<Vec<Deployment>, GatewayError> {
        if model.len() > MAX_MODEL_NAME {
            return Err(GatewayError::bad_request(format!(
                "'model' is {} bytes long; at most {MAX_MODEL_NAME} are accepted.",
                model.len()
            ))
            .param("model")
            .code("invalid_value"));
        }
        if let Some(route) = self.routes.iter().find(|r| r.name == model) {
            return Ok(order(route));
        }
        if let Some((prov, m)) = model.split_once('/') {
            if let Some(p) = self.provider(prov) {
                if !m.is_empty() {
                    return Ok(vec![self.direct(p, m)]);
                }
            }
        }
        if let Some(p) = self
            .providers
            .iter()
            .find(|p| p.config.models.iter().any(|m| m == model))
        {
            return Ok(vec![self.direct(p, model)]);
        }
        Err(GatewayError::model_not_found(
            model,
            &self.close_names(model),
        ))
    }

    /// The providers, in configured order.
    pub(crate) fn providers(&self) -> &[Arc<Provider>] {
        &self.providers
    }

    /// The aliases with their strategies and deployments, for `/admin/providers`.
    pub(crate) fn routes(&self) -> Vec<RouteView> {
        self.routes
            .iter()
            .map(|r| RouteView {
                model: r.name.clone(),
                strategy: r.strategy,
                route: r
                    .deployments
                    .iter()
                    .map(|d| format!("{}/{}", d.provider.name(), d.upstream_model))
                    .collect(),
                weights: r.weights.clone(),
            })
            .collect()
    }

    /// Every routable model once, in the order a request would try its deployments
    /// (weighted and least-latency routes: as configured): aliases, then each provider's
    /// static models not shadowed by an alias or an earlier provider. For the portal.
    pub(crate) fn catalog(&self) -> Vec<CatalogEntry> {
        let mut out: Vec<CatalogEntry> = self
            .routes
            .iter()
            .map(|r| CatalogEntry {
                model: r.name.clone(),
                strategy: Some(r.strategy),
                deployments: r.deployments.clone(),
            })
            .collect();
        for p in &self.providers {
            for m in &p.config.models {
                if !out.iter().any(|e| &e.model == m) {
                    out.push(CatalogEntry {
                        model: m.clone(),
                        strategy: None,
                        deployments: vec![self.direct(p, m)],
                    });
                }
            }
        }
        out
    }

    /// Every name a client can send: aliases, static models and their `provider/model`.
    pub(crate) fn model_names(&self) -> Vec<(String, String)> {
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

/// This request's order of `route`'s deployments.
fn order(route: &Route) -> Vec<Deployment> {
    match route.strategy {
        Strategy::Fallback | Strategy::LowestCost => route.deployments.clone(),
        Strategy::Weighted => weighted_order(&route.weights, rand::random::<f64>)
            .into_iter()
            .filter_map(|i| route.deployments.get(i).cloned())
            .collect(),
        Strategy::LeastLatency => {
            let mut v = route.deployments.clone();
            // Untried first (each gets measured), then fastest first; stable on ties.
            v.sort_by_key(|d| d.health.latency_rank());
            v
        }
    }
}

/// Indexes of `weights` in a random order where each next pick is drawn by weight from
/// those left (zero weights come last, in configured order). `rand01` yields [0, 1).
fn weighted_order(weights: &[f64], mut rand01: impl FnMut() -> f64) -> Vec<usize> {
    let mut left: Vec<usize> = (0..weights.len()).filter(|i| weights[*i] > 0.0).collect();
    let mut out = Vec::with_capacity(weights.len());
    while !left.is_empty() {
        let total: f64 = left.iter().map(|i| weights[*i]).sum();
        let mut x = rand01() * total;
        let mut pick = left.len() - 1;
        for (k, i) in left.iter().enumerate() {
            if x < weights[*i] {
                pick = k;
                break;
            }
            x -= weights[*i];
        }
        out.push(left.remove(pick));
    }
    out.extend((0..weights.len()).filter(|i| weights[*i] <= 0.0));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn weighted_order_follows_the_weights() {
        let weights = [1.0, 3.0, 0.0];
        let mut firsts = [0u32; 3];
        let mut seed = 0x2545_f491_4f6c_dd1d_u64;
        let mut rand01 = || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            (seed >> 11) as f64 / (1u64 << 53) as f64
        };
        for _ in 0..10_000 {
            let o = weighted_order(&weights, &mut rand01);
            assert_eq!(o.len(), 3, "every deployment stays in the order");
            assert_eq!(o[2], 2, "zero weight comes last");
            firsts[o[0]] += 1;
        }
        let share = f64::from(firsts[1]) / 10_000.0;
        assert!((share - 0.75).abs() < 0.02, "{share}");
        assert_eq!(firsts[2], 0);
    }

    #[test]
    fn weighted_order_survives_extreme_draws() {
        assert_eq!(weighted_order(&[1.0, 1.0], || 0.999_999_999), vec![1, 0]);
        assert_eq!(weighted_order(&[1.0, 1.0], || 0.0), vec![0, 1]);
        assert!(weighted_order(&[], || 0.5).is_empty());
    }
}
