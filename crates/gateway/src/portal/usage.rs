//! The usage page's numbers from rollup cells: per-bucket totals, breakdowns by model and
//! by key, the model list and the period's totals, all from one query's rows. Pure.

use std::collections::{BTreeMap, HashMap};

use crate::store::{Cell, UsageSummary};

/// What the usage page shows, summed from cells.
#[derive(Debug, Default)]
pub(super) struct Usage {
    /// Bucket start → that bucket's sum (model filter applied).
    pub buckets: BTreeMap<i64, UsageSummary>,
    /// Busiest first (model filter applied).
    pub by_model: Vec<UsageSummary>,
    /// Key id (`-` for none) → sum, busiest first (model filter applied).
    pub by_key: Vec<UsageSummary>,
    /// Every model with requests in the period, busiest first (whatever the model filter).
    pub models: Vec<String>,
    pub totals: UsageSummary,
}

fn empty(group: &str) -> UsageSummary {
    UsageSummary {
        group: group.to_owned(),
        ..UsageSummary::default()
    }
}

fn add(s: &mut UsageSummary, c: &Cell) {
    s.requests += c.requests;
    s.errors += c.errors;
    s.prompt_tokens += c.prompt_tokens;
    s.completion_tokens += c.completion_tokens;
    s.cached_tokens += c.cached_tokens;
    s.unpriced += c.unpriced;
    s.cache_hits += c.cache_hits;
    s.saved_usd += c.saved_usd;
    // `None` until some request of the group had a price (as `jusinfer usage` shows it).
    if c.priced > 0 {
        s.cost_usd = Some(s.cost_usd.unwrap_or(0.0) + c.cost_usd);
    }
}

fn ranked(map: HashMap<String, UsageSummary>) -> Vec<UsageSummary> {
    let mut v: Vec<UsageSummary> = map.into_values().collect();
    v.sort_by(|a, b| {
        b.requests
            .cmp(&a.requests)
            .then_with(|| a.group.cmp(&b.group))
    });
    v
}

pub(super) fn summarize(cells: &[Cell], model: Option<&str>) -> Usage {
    let mut out = Usage {
        totals: empty(""),
        ..Usage::default()
    };
    let mut models: HashMap<&str, i64> = HashMap::new();
    let mut by_model: HashMap<String, UsageSummary> = HashMap::new();
    let mut by_key: HashMap<String, UsageSummary> = HashMap::new();
    for c in cells {
        *models.entry(&c.model).or_default() += c.requests;
        if model.is_some_and(|m| m != c.model) {
            continue;
        }
        add(&mut out.totals, c);
        add(out.buckets.entry(c.hour_ms).or_insert_with(|| empty("")), c);
        add(
            by_model
                .entry(c.model.clone())
                .or_insert_with(|| empty(&c.model)),
            c,
        );
        let key = if c.key_id.is_empty() { "-" } else { &c.key_id };
        add(
            by_key.entry(key.to_owned()).or_insert_with(|| empty(key)),
            c,
        );
    }
    let mut models: Vec<(&str, i64)> = models.into_iter().collect();
    models.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(b.0)));
    out.models = models.into_iter().map(|(m, _)| m.to_owned()).collect();
    out.by_model = ranked(by_model);
    out.by_key = ranked(by_key);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cell(hour: i64, key: &str, model: &str, requests: i64, cost: Option<f64>) -> Cell {
        Cell {
            hour_ms: hour,
            key_id: key.to_owned(),
            model: model.to_owned(),
            requests,
            errors: 1,
            prompt_tokens: 10 * requests,
            completion_tokens: requests,
            cost_usd: cost.unwrap_or(0.0),
            priced: i64::from(cost.is_some()) * requests,
            unpriced: i64::from(cost.is_none()) * requests,
            ..Cell::default()
        }
    }

    #[test]
    fn sums_per_bucket_model_and_key() {
        let cells = [
            cell(0, "k1", "a", 3, Some(0.5)),
            cell(0, "k2", "b", 1, None),
            cell(3_600_000, "k1", "a", 2, Some(0.25)),
            cell(3_600_000, "", "b", 5, None),
        ];
        let u = summarize(&cells, None);
        assert_eq!(u.totals.requests, 11);
        assert_eq!(u.totals.errors, 4);
        assert_eq!(u.totals.cost_usd, Some(0.75));
        assert_eq!(u.totals.unpriced, 6);
        assert_eq!(u.buckets.len(), 2);
        assert_eq!(u.buckets[&3_600_000].requests, 7);
        assert_eq!(u.models, ["b", "a"]);
        let groups: Vec<(&str, i64)> = u
            .by_key
            .iter()
            .map(|s| (s.group.as_str(), s.requests))
            .collect();
        assert_eq!(groups, [("-", 5), ("k1", 5), ("k2", 1)]);
        // A model no request had a price for has no cost (not $0).
        let b = u
            .by_model
            .iter()
            .find(|s| s.group == "b")
            .map(|s| s.cost_usd);
        assert_eq!(b, Some(None));
    }

    #[test]
    fn model_filter_keeps_the_model_list_whole() {
        let cells = [
            cell(0, "k1", "a", 3, Some(0.5)),
            cell(0, "k1", "b", 1, None),
        ];
        let u = summarize(&cells, Some("a"));
        assert_eq!(u.totals.requests, 3);
        assert_eq!(u.by_model.len(), 1);
        assert_eq!(u.models, ["a", "b"]);
        let none = summarize(&cells, Some("zzz"));
        assert_eq!(none.totals.requests, 0);
        assert!(none.buckets.is_empty() && none.by_key.is_empty());
    }
}
