//! The usage page (charts, totals, breakdowns, recent requests) and its CSV export, both
//! scoped to what the caller may see.

use std::collections::HashMap;

use axum::extract::{Query, State};
use axum::http::header::{CONTENT_DISPOSITION, CONTENT_TYPE};
use axum::http::{HeaderMap, StatusCode};
use axum::response::IntoResponse;
use maud::Markup;
use serde::Deserialize;

use super::chart::{Chart, Series};
use super::pages::{self, Nav};
use super::{ctx, fmt, forbidden, html, require, unavailable, usage, Page, Refusal};
use crate::state::AppState;
use crate::store::{now, PortalSession, UsageFilter, UsageSummary, HOUR_MS};

/// The usage page's query.
#[derive(Deserialize, Default)]
pub(super) struct UsageParams {
    range: Option<String>,
    bucket: Option<String>,
    key: Option<String>,
    model: Option<String>,
}

/// A usage query made safe: a known range and bucket, and a key filter the caller may use.
struct UsageScope {
    range: &'static str,
    bucket: &'static str,
    bucket_ms: i64,
    filter: UsageFilter,
    note: Option<String>,
    now_ms: i64,
}

const DAY_MS: i64 = 24 * HOUR_MS;

fn scope(s: &PortalSession, p: &UsageParams) -> Result<UsageScope, Refusal> {
    let (range, range_ms) = match p.range.as_deref().unwrap_or("24h") {
        "7d" => ("7d", 7 * DAY_MS),
        "30d" => ("30d", 30 * DAY_MS),
        "90d" => ("90d", 90 * DAY_MS),
        _ => ("24h", DAY_MS),
    };
    let mut note = None;
    let (bucket, bucket_ms) = match (p.bucket.as_deref(), range) {
        (Some("hour"), "24h" | "7d") | (None, "24h") => ("hour", HOUR_MS),
        (Some("hour"), _) => {
            note = Some(
                "Hourly buckets go back 7 days at most; this period is shown by day.".to_owned(),
            );
            ("day", DAY_MS)
        }
        _ => ("day", DAY_MS),
    };
    let key = p.key.clone().filter(|k| !k.is_empty());
    let key = if s.key.admin {
        key
    } else {
        match key {
            Some(k) if k != s.key.id => {
                return Err(forbidden(Some(s), "A key can see only its own usage."));
            }
            _ => Some(s.key.id.clone()),
        }
    };
    let now_ms = now().saturating_mul(1000);
    // The period starts on its first bucket's boundary, so that the charts, the totals,
    // the tables and the CSV all count the same requests.
    let since_ms = (now_ms - range_ms).div_euclid(bucket_ms) * bucket_ms;
    Ok(UsageScope {
        range,
        bucket,
        bucket_ms,
        filter: UsageFilter {
            since_ms,
            key,
            model: p.model.clone().filter(|m| !m.is_empty()),
        },
        note,
        now_ms,
    })
}

fn query_string(sc: &UsageScope) -> String {
    let mut pairs = vec![("range", sc.range), ("bucket", sc.bucket)];
    if let Some(k) = &sc.filter.key {
        pairs.push(("key", k));
    }
    if let Some(m) = &sc.filter.model {
        pairs.push(("model", m));
    }
    serde_urlencoded::to_string(pairs).unwrap_or_default()
}

pub(super) async fn usage_page(
    State(state): State<AppState>,
    headers: HeaderMap,
    Query(p): Query<UsageParams>,
) -> Page {
    let s = require(&state, &headers).await?;
    let sc = scope(&s, &p)?;
    Ok(html(StatusCode::OK, usage_view(&state, &s, &sc).await?))
}

async fn usage_view(
    state: &AppState,
    s: &PortalSession,
    sc: &UsageScope,
) -> Result<Markup, Refusal> {
    let store = &state.store;
    let f = &sc.filter;
    // One query over the hourly rollup gives the charts, totals, breakdowns and the model
    // list; only the recent requests come from the ledger itself.
    let cells = store
        .usage_cells(f, sc.bucket_ms)
        .await
        .map_err(unavailable)?;
    let u = usage::summarize(&cells, f.model.as_deref());
    let all_keys = if s.key.admin {
        store.list_keys().await.map_err(unavailable)?
    } else {
        vec![s.key.clone()]
    };
    let names: HashMap<&str, &str> = all_keys
        .iter()
        .map(|k| (k.id.as_str(), k.name.as_str()))
        .collect();
    let by_key = s.key.admin.then(|| {
        u.by_key
            .iter()
            .map(|r| {
                let name = names
                    .get(r.group.as_str())
                    .map_or_else(|| r.group.clone(), |n| format!("{n} ({})", r.group));
                (name, r.clone())
            })
            .collect()
    });
    let mut model_choices = u.models;
    // A filter on a model with no rows in the period stays visible (and kept on Apply).
    if let Some(m) = &f.model {
        if !model_choices.contains(m) {
            model_choices.insert(0, m.clone());
        }
    }
    let recent = store.usage_rows(f, 50).await.map_err(unavailable)?;
    let charts = charts(sc, &u.buckets);
    let key_name = |id: &str| {
        names
            .get(id)
            .map_or_else(|| id.to_owned(), |n| (*n).to_owned())
    };
    let view = pages::UsageView {
        range: sc.range,
        bucket: sc.bucket,
        key: f.key.as_deref().filter(|_| s.key.admin),
        model: f.model.as_deref(),
        key_choices: if s.key.admin {
            all_keys
                .iter()
                .map(|k| (k.id.clone(), k.name.clone()))
                .collect()
        } else {
            Vec::new()
        },
        model_choices,
        charts,
        totals: u.totals,
        by_model: u.by_model,
        by_key,
        recent,
        key_name: &key_name,
        csv_href: format!("/developer/usage.csv?{}", query_string(sc)),
        note: sc.note.clone(),
    };
    Ok(pages::usage(&ctx(s, Nav::Usage), &view))
}

/// The three charts over every bucket of the period (empty ones included).
fn charts(sc: &UsageScope, buckets: &std::collections::BTreeMap<i64, UsageSummary>) -> Vec<Markup> {
    let first = sc.filter.since_ms;
    let last = sc.now_ms.div_euclid(sc.bucket_ms) * sc.bucket_ms;
    let starts: Vec<i64> = (0..)
        .map(|i| first + i * sc.bucket_ms)
        .take_while(|t| *t <= last)
        .collect();
    let col = |f: fn(&UsageSummary) -> f64| -> Vec<f64> {
        starts
            .iter()
            .map(|t| buckets.get(t).map_or(0.0, f))
            .collect()
    };
    let hourly = sc.bucket == "hour";
    let labels: Vec<String> = starts
        .iter()
        .map(|t| fmt::bucket_label(*t, hourly, sc.range != "24h"))
        .collect();
    let per = if hourly { "hour" } else { "day" };
    let count = |v: f64| fmt::short(v);
    vec![
        Chart {
            id: "chart-requests",
            title: &format!("Requests per {per} (UTC)"),
            labels: labels.clone(),
            series: vec![
                Series {
                    name: "succeeded",
                    class: "s1",
                    values: col(|b| (b.requests - b.errors) as f64),
                },
                Series {
                    name: "failed",
                    class: "s3",
                    values: col(|b| b.errors as f64),
                },
            ],
            format: count,
            axis: count,
            min_step: 1.0,
        }
        .render(),
        Chart {
            id: "chart-tokens",
            title: &format!("Tokens per {per}"),
            labels: labels.clone(),
            series: vec![
                Series {
                    name: "prompt",
                    class: "s1",
                    values: col(|b| b.prompt_tokens as f64),
                },
                Series {
                    name: "completion",
                    class: "s2",
                    values: col(|b| b.completion_tokens as f64),
                },
            ],
            format: count,
            axis: count,
            min_step: 1.0,
        }
        .render(),
        Chart {
            id: "chart-cost",
            title: &format!("Cost per {per} (USD)"),
            labels,
            series: vec![Series {
                name: "cost",
                class: "s2",
                values: col(|b| b.cost_usd.unwrap_or(0.0)),
            }],
            format: fmt::usd,
            axis: fmt::usd_axis,
            min_step: 0.0,
        }
        .render(),
    ]
}

/// Ledger rows a CSV export reads per query: the export streams page after page, so its
/// memory is one page whatever the period.
const CSV_PAGE: i64 = 2_000;

const CSV_HEADER: [&str; 21] = [
    "time",
    "request_id",
    "key_id",
    "key_name",
    "endpoint",
    "model",
    "provider",
    "upstream_model",
    "status",
    "prompt_tokens",
    "completion_tokens",
    "cached_tokens",
    "reasoning_tokens",
    "cost_usd",
    "latency_ms",
    "ttft_ms",
    "attempts",
    "stream",
    "error_type",
    "cache",
    "saved_usd",
];

pub(super) async fn usage_csv(
    State(state): State<AppState>,
    headers: HeaderMap,
    Query(p): Query<UsageParams>,
) -> Page {
    let s = require(&state, &headers).await?;
    let sc = scope(&s, &p)?;
    let names: HashMap<String, String> = if s.key.admin {
        match state.store.list_keys().await {
            Ok(k) => k.into_iter().map(|k| (k.id, k.name)).collect(),
            Err(e) => return Err(unavailable(e)),
        }
    } else {
        HashMap::from([(s.key.id.clone(), s.key.name.clone())])
    };
    // The first page is read before answering, so a store that is down is still a 503.
    let first = match state
        .store
        .usage_rows_after(&sc.filter, None, CSV_PAGE)
        .await
    {
        Ok(r) => r,
        Err(e) => return Err(unavailable(e)),
    };
    let export = Export {
        store: state.store.clone(),
        filter: sc.filter.clone(),
        names,
        pending: Some(first),
        cursor: None,
        header: true,
    };
    let body = futures_util::stream::unfold(export, |mut x| async move {
        let rows = match x.pending.take() {
            Some(r) => r,
            None => {
                let cursor = x.cursor.clone()?;
                match x
                    .store
                    .usage_rows_after(&x.filter, Some(&cursor), CSV_PAGE)
                    .await
                {
                    Ok(r) => r,
                    Err(e) => {
                        // The status is sent: the export ends short, and says so in the log.
                        tracing::warn!(error = %e, "portal: CSV export cut short");
                        return None;
                    }
                }
            }
        };
        let full = i64::try_from(rows.len()).unwrap_or(i64::MAX) >= CSV_PAGE;
        x.cursor = rows
            .last()
            .filter(|_| full)
            .map(|r| (r.ts_ms, r.row_id.clone()));
        let bytes = x.write(&rows);
        if bytes.is_empty() && x.cursor.is_none() {
            return None;
        }
        Some((Ok::<_, std::convert::Infallible>(bytes), x))
    });
    Ok((
        StatusCode::OK,
        [
            (CONTENT_TYPE, "text/csv; charset=utf-8".to_owned()),
            (
                CONTENT_DISPOSITION,
                format!("attachment; filename=\"jusinfer-usage-{}.csv\"", sc.range),
            ),
        ],
        axum::body::Body::from_stream(body),
    )
        .into_response())
}

/// A CSV export on its way: the page read ahead, and where the next one starts.
struct Export {
    store: crate::store::Store,
    filter: crate::store::UsageFilter,
    names: HashMap<String, String>,
    pending: Option<Vec<crate::store::UsageRow>>,
    /// After the last row sent; `None` once a short page ended the export.
    cursor: Option<(i64, String)>,
    header: bool,
}

impl Export {
    /// `rows` as CSV lines (the header first, once); every text cell guarded.
    fn write(&mut self, rows: &[crate::store::UsageRow]) -> bytes::Bytes {
        let mut w = csv::Writer::from_writer(Vec::with_capacity(rows.len() * 200 + 256));
        if std::mem::take(&mut self.header) {
            let _ = w.write_record(CSV_HEADER);
        }
        for r in rows {
            let opt = |v: Option<i64>| v.map(|v| v.to_string()).unwrap_or_default();
            let key_id = r.key_id.clone().unwrap_or_default();
            let key_name = self.names.get(&key_id).cloned().unwrap_or_default();
            let _ = w.write_record([
                fmt::iso(r.ts_ms),
                fmt::csv_cell(&r.request_id).into_owned(),
                fmt::csv_cell(&key_id).into_owned(),
                fmt::csv_cell(&key_name).into_owned(),
                fmt::csv_cell(&r.endpoint).into_owned(),
                fmt::csv_cell(&r.model).into_owned(),
                fmt::csv_cell(r.provider.as_deref().unwrap_or("")).into_owned(),
                fmt::csv_cell(r.upstream_model.as_deref().unwrap_or("")).into_owned(),
                r.status.to_string(),
                r.prompt_tokens.to_string(),
                r.completion_tokens.to_string(),
                r.cached_tokens.to_string(),
                r.reasoning_tokens.to_string(),
                r.cost_usd.map(|c| format!("{c}")).unwrap_or_default(),
                r.latency_ms.to_string(),
                opt(r.ttft_ms),
                r.attempts.to_string(),
                r.stream.to_string(),
                fmt::csv_cell(r.error_type.as_deref().unwrap_or("")).into_owned(),
                r.cache.clone().unwrap_or_default(),
                r.saved_usd.map(|c| format!("{c}")).unwrap_or_default(),
            ]);
        }
        w.into_inner().map(bytes::Bytes::from).unwrap_or_default()
    }
}
