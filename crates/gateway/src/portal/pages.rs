//! The portal's pages as HTML (maud escapes every value it is given). Pure: what to show
//! in, markup out; the handlers in `mod.rs` gather the data.

use maud::{html, Markup, DOCTYPE};

use super::fmt;
use crate::store::{KeyRecord, KeyStats, UsageRow, UsageSummary};

/// Which page the navigation marks as current.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(super) enum Nav {
    Keys,
    Usage,
    Models,
    None,
}

/// The signed-in caller, for the page frame.
pub(super) struct Ctx<'a> {
    pub me: &'a KeyRecord,
    pub csrf: &'a str,
    pub nav: Nav,
}

const ASSET_VERSION: &str = env!("CARGO_PKG_VERSION");

pub(super) fn layout(title: &str, ctx: Option<&Ctx<'_>>, body: Markup) -> Markup {
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                meta name="referrer" content="same-origin";
                title { (title) " · jusinfer" }
                link rel="icon" href=(format!("/developer/static/favicon.svg?v={ASSET_VERSION}")) type="image/svg+xml";
                link rel="stylesheet" href=(format!("/developer/static/portal.css?v={ASSET_VERSION}"));
                script src=(format!("/developer/static/portal.js?v={ASSET_VERSION}")) defer {}
            }
            body {
                a.skip href="#main" { "Skip to content" }
                header.top {
                    a.brand href="/developer" { "jusinfer" span.dim { " developer" } }
                    @if let Some(c) = ctx {
                        nav aria-label="Portal" {
                            ul {
                                (nav_item("/developer/keys", "Keys", c.nav == Nav::Keys))
                                (nav_item("/developer/usage", "Usage", c.nav == Nav::Usage))
                                (nav_item("/developer/models", "Models", c.nav == Nav::Models))
                            }
                        }
                        div.who {
                            span #signed-in-as {
                                (c.me.name)
                                @if c.me.admin { " " span.badge.admin { "admin" } }
                            }
                            form method="post" action="/developer/logout" {
                                input type="hidden" name="csrf" value=(c.csrf);
                                button.link type="submit" { "Sign out" }
                            }
                        }
                    }
                }
                main #main tabindex="-1" {
                    h1 { (title) }
                    (body)
                }
            }
        }
    }
}

fn nav_item(href: &str, label: &str, current: bool) -> Markup {
    html! {
        li { a href=(href) aria-current=[current.then_some("page")] { (label) } }
    }
}

/// The sign-in page.
pub(super) fn login(
    csrf: &str,
    error: Option<&str>,
    notice: Option<&str>,
    enabled: bool,
) -> Markup {
    let body = html! {
        @if let Some(n) = notice { p.notice role="status" { (n) } }
        @if !enabled {
            p.error role="alert" {
                "The portal signs in with API keys, and this gateway runs with "
                code { "auth = \"none\"" } ". Set " code { "auth = \"keys\"" } " to use it."
            }
        } @else {
            form.card.narrow method="post" action="/developer/login" {
                input type="hidden" name="csrf" value=(csrf);
                @if let Some(e) = error { p.error #login-error role="alert" { (e) } }
                label for="key" { "API key" }
                input #key type="password" name="key" required autocomplete="off"
                    spellcheck="false" placeholder="jinf_…" aria-describedby="key-help"
                    aria-invalid=[error.map(|_| "true")] autofocus;
                p.help #key-help {
                    "An admin key sees and manages every key; any other key sees its own usage. "
                    "The key is exchanged for a session cookie and is not kept in the browser."
                }
                button type="submit" { "Sign in" }
            }
        }
    };
    layout("Sign in", None, body)
}

/// A page that only says something (an error, a refusal).
pub(super) fn message(title: &str, ctx: Option<&Ctx<'_>>, text: &str) -> Markup {
    layout(
        title,
        ctx,
        html! {
            p.error role="alert" { (text) }
            p { a href="/developer" { "Back to the portal" } }
        },
    )
}

/// What the mint form holds (kept when it is sent back with an error).
#[derive(Debug, Default, Clone, serde::Deserialize)]
pub(super) struct MintValues {
    #[serde(default)]
    pub name: String,
    #[serde(default)]
    pub budget_usd: String,
    /// `""` (lifetime), `daily`, `weekly` or `monthly`.
    #[serde(default)]
    pub budget_period: String,
    #[serde(default)]
    pub rpm: String,
    #[serde(default)]
    pub tpm: String,
    #[serde(default)]
    pub models: String,
    #[serde(default)]
    pub expires: String,
    #[serde(default)]
    pub admin: Option<String>,
    /// The exact response cache: `""` (as the models say), `on` or `off`.
    #[serde(default)]
    pub cache: String,
}

pub(super) const EXPIRY_CHOICES: &[(&str, &str)] = &[
    ("", "Never"),
    ("1d", "1 day"),
    ("7d", "7 days"),
    ("30d", "30 days"),
    ("90d", "90 days"),
    ("365d", "1 year"),
];

/// What the keys page shows besides the table.
#[derive(Default)]
pub(super) struct KeysExtra<'a> {
    /// A key just minted: `(secret, record)`.
    pub minted: Option<(&'a str, &'a KeyRecord)>,
    pub flash: Option<String>,
    /// `(field, message)` of a refused mint.
    pub error: Option<(&'a str, String)>,
    pub form: MintValues,
    /// The mint form's one-time token (the same form never mints twice).
    pub nonce: String,
    /// The search and page of the keys table.
    pub listing: Listing,
}

/// Which page of which keys the table shows.
#[derive(Debug, Clone, Default)]
pub(super) struct Listing {
    /// Searched for in names, prefixes and ids.
    pub q: String,
    /// 1-based.
    pub page: u32,
    pub pages: u32,
    /// Keys matching in all.
    pub total: i64,
}

impl Listing {
    pub(super) fn first() -> Self {
        Self {
            page: 1,
            ..Self::default()
        }
    }

    fn href(&self, page: u32) -> String {
        let q: String = serde_urlencoded::to_string([("q", self.q.as_str())]).unwrap_or_default();
        format!("/developer/keys?{q}&page={page}")
    }
}

/// A time in the tables: readable, and machine-readable for assistive tools.
fn when(ms: i64) -> Markup {
    html! { time datetime=(fmt::iso(ms)) { (fmt::datetime(ms)) } }
}

fn limits(k: &KeyRecord) -> Markup {
    let mut parts: Vec<String> = Vec::new();
    if let Some(r) = k.rpm {
        parts.push(format!("{} RPM", fmt::count(r)));
    }
    if let Some(t) = k.tpm {
        parts.push(format!("{} TPM", fmt::count(t)));
    }
    if !k.models.is_empty() {
        parts.push(format!("models: {}", k.models.join(", ")));
    }
    if let Some(e) = k.expires_at {
        parts.push(format!("expires {}", fmt::datetime(e.saturating_mul(1000))));
    }
    if let Some(c) = k.cache {
        parts.push(format!("response cache {}", if c { "on" } else { "off" }));
    }
    html! {
        @if parts.is_empty() { span.dim { "none" } }
        @else { @for (i, p) in parts.iter().enumerate() { @if i > 0 { br; } (p) } }
    }
}

fn spend(k: &KeyRecord, s: &KeyStats) -> Markup {
    let period = k.budget_period;
    let spent = s.spend_in(period);
    let now_ms = crate::store::now().saturating_mul(1000);
    html! {
        @match k.budget_usd {
            Some(b) => {
                (fmt::usd(spent)) " of " (fmt::usd(b))
                @if let Some(p) = period {
                    " " (p.this())
                }
                br;
                meter min="0" max=(b.max(f64::MIN_POSITIVE)) value=(spent.min(b))
                    low=(b * 0.8) high=(b * 0.95) optimum="0"
                    aria-label=(format!("{} of the budget spent", pct(spent, b))) {}
                @if let Some(p) = period {
                    br;
                    span.dim.resets {
                        "resets " (fmt::datetime(p.span(now_ms).end_ms)) " UTC · "
                        (fmt::usd(s.spend_usd)) " in all"
                    }
                }
            }
            None => { (fmt::usd(s.spend_usd)) " " span.dim { "(no budget)" } }
        }
    }
}

fn pct(spent: f64, budget: f64) -> String {
    if budget <= 0.0 {
        return "100%".to_owned();
    }
    format!("{:.0}%", (spent / budget * 100.0).min(999.0))
}

pub(super) fn keys(ctx: &Ctx<'_>, rows: &[(KeyRecord, KeyStats)], extra: &KeysExtra<'_>) -> Markup {
    let admin = ctx.me.admin;
    let body = html! {
        @if let Some(f) = &extra.flash { p.notice #flash role="status" { (f) } }
        @if let Some((secret, rec)) = extra.minted {
            section.card.minted aria-labelledby="minted-title" {
                h2 #minted-title { "Key “" (rec.name) "” minted" }
                p.warning role="alert" {
                    strong { "Copy this key now. " }
                    "It is shown only this once: the gateway keeps only its hash and cannot show it again. "
                    "Treat it like a password."
                }
                div.copyrow {
                    label.visually-hidden for="new-key" { "The new key" }
                    input #new-key type="text" readonly value=(secret) spellcheck="false" autocomplete="off";
                    button type="button" data-copy="new-key" { "Copy" }
                }
                p.help #copy-status role="status" aria-live="polite" {}
            }
        }
        section aria-labelledby="keys-title" {
            h2 #keys-title { @if admin { "All keys" } @else { "Your key" } }
            @if admin {
                form.search role="search" method="get" action="/developer/keys" {
                    label for="key-search" { "Search keys" }
                    input #key-search type="search" name="q" value=(extra.listing.q) maxlength="200"
                        placeholder="name, prefix or id";
                    button type="submit" { "Search" }
                }
                p.help #keys-count role="status" {
                    (extra.listing.total) " key" @if extra.listing.total != 1 { "s" }
                    @if !extra.listing.q.is_empty() { " matching “" (extra.listing.q) "”" }
                    @if extra.listing.pages > 1 { " · page " (extra.listing.page) " of " (extra.listing.pages) }
                }
            }
            div.scroll {
                table #keys {
                    caption.visually-hidden { "API keys" }
                    thead { tr {
                        th scope="col" { "Name" } th scope="col" { "Prefix" } th scope="col" { "Created" }
                        th scope="col" { "Last used" } th scope="col" { "Limits" }
                        th scope="col" { "Spend / budget" } th scope="col" { "Status" }
                        @if admin { th scope="col" { span.visually-hidden { "Actions" } } }
                    } }
                    tbody {
                        @for (k, s) in rows {
                            tr data-key-id=(k.id) {
                                th scope="row" {
                                    (k.name)
                                    @if k.admin { " " span.badge.admin { "admin" } }
                                    @if k.id == ctx.me.id { " " span.badge { "you" } }
                                }
                                td { code { (k.prefix) "…" } }
                                td { (when(k.created_at.saturating_mul(1000))) }
                                td { @match s.last_used_ms { Some(t) => (when(t)), None => span.dim { "never" } } }
                                td { (limits(k)) }
                                td { (spend(k, s)) }
                                td { span class=(format!("status {}", k.status())) { (k.status()) } }
                                @if admin {
                                    td {
                                        @if k.revoked_at.is_none() {
                                            a.button.danger href=(format!("/developer/keys/{}/revoke", k.id))
                                                aria-label=(format!("Revoke {}", k.name)) { "Revoke" }
                                        }
                                    }
                                }
                            }
                        }
                    }
                }
            }
            @if admin && extra.listing.pages > 1 {
                nav.pager aria-label="Key pages" {
                    @if extra.listing.page > 1 {
                        a rel="prev" href=(extra.listing.href(extra.listing.page - 1)) { "← Previous" }
                    }
                    @if extra.listing.page < extra.listing.pages {
                        a rel="next" href=(extra.listing.href(extra.listing.page + 1)) { "Next →" }
                    }
                }
            }
            @if !admin {
                p.help { "Only an admin key can mint or revoke keys." }
            }
        }
        @if admin { (mint_form(ctx.csrf, extra)) }
    };
    layout("Keys", Some(ctx), body)
}

fn mint_form(csrf: &str, extra: &KeysExtra<'_>) -> Markup {
    let f = &extra.form;
    let err = |field: &str| {
        extra
            .error
            .as_ref()
            .filter(|(n, _)| *n == field)
            .map(|(_, m)| m.as_str())
    };
    let invalid = |field: &str| err(field).map(|_| "true");
    html! {
        section.card aria-labelledby="mint-title" {
            h2 #mint-title { "Mint a key" }
            form #mint method="post" action="/developer/keys" novalidate {
                input type="hidden" name="csrf" value=(csrf);
                input type="hidden" name="nonce" value=(extra.nonce);
                @if let Some((_, m)) = &extra.error { p.error #mint-error role="alert" { (m) } }
                div.grid {
                    div {
                        label for="name" { "Name" }
                        input #name name="name" required maxlength="200" value=(f.name) aria-invalid=[invalid("name")];
                    }
                    div {
                        label for="budget_usd" { "Budget (USD)" }
                        input #budget_usd name="budget_usd" inputmode="decimal" value=(f.budget_usd)
                            placeholder="no budget" aria-invalid=[invalid("budget_usd")];
                    }
                    div {
                        label for="budget_period" { "Budget period" }
                        select #budget_period name="budget_period" aria-invalid=[invalid("budget_period")]
                            aria-describedby="budget_period-help" {
                            @for (v, label) in [("", "lifetime"), ("daily", "daily"), ("weekly", "weekly (from Monday)"), ("monthly", "monthly")] {
                                option value=(v) selected[f.budget_period == v] { (label) }
                            }
                        }
                        p.help #budget_period-help { "Starts again at 00:00 UTC." }
                    }
                    div {
                        label for="rpm" { "Requests per minute" }
                        input #rpm name="rpm" inputmode="numeric" value=(f.rpm) placeholder="no limit" aria-invalid=[invalid("rpm")];
                    }
                    div {
                        label for="tpm" { "Tokens per minute" }
                        input #tpm name="tpm" inputmode="numeric" value=(f.tpm) placeholder="no limit" aria-invalid=[invalid("tpm")];
                    }
                    div {
                        label for="models" { "Allowed models" }
                        input #models name="models" value=(f.models) placeholder="all" aria-describedby="models-help";
                        p.help #models-help { "Comma-separated; " code { "*" } " matches anything, e.g. " code { "gpt-4o*, claude-*" } "." }
                    }
                    div {
                        label for="expires" { "Expires" }
                        select #expires name="expires" aria-invalid=[invalid("expires")] {
                            @for (v, l) in EXPIRY_CHOICES {
                                option value=(v) selected[f.expires == *v] { (l) }
                            }
                        }
                    }
                    div {
                        label for="cache" { "Response cache" }
                        select #cache name="cache" aria-invalid=[invalid("cache")] aria-describedby="cache-help" {
                            @for (v, l) in [("", "as the models say"), ("on", "on"), ("off", "off")] {
                                option value=(v) selected[f.cache == v] { (l) }
                            }
                        }
                        p.help #cache-help { "Repeated requests answered from the cache, at no cost." }
                    }
                }
                div.check {
                    input #admin type="checkbox" name="admin" value="on" checked[f.admin.is_some()];
                    label for="admin" { "Admin key (can mint and revoke keys, sees all usage)" }
                }
                button type="submit" { "Mint key" }
            }
        }
    }
}

pub(super) fn revoke_confirm(ctx: &Ctx<'_>, k: &KeyRecord) -> Markup {
    let body = html! {
        section.card.narrow {
            p.warning role="alert" {
                "Revoke the key " strong { "“" (k.name) "”" } " (" code { (k.prefix) "…" } ")? "
                "Every request with it will be refused at once, on every instance. This cannot be undone."
                @if k.id == ctx.me.id { " This is the key you are signed in with: you will be signed out." }
            }
            form method="post" action=(format!("/developer/keys/{}/revoke", k.id)) {
                input type="hidden" name="csrf" value=(ctx.csrf);
                div.actions {
                    button.danger #confirm-revoke type="submit" { "Revoke key" }
                    a.button href="/developer/keys" { "Cancel" }
                }
            }
        }
    };
    layout("Revoke key", Some(ctx), body)
}

/// The usage page's filter and what it found.
pub(super) struct UsageView<'a> {
    pub range: &'a str,
    pub bucket: &'a str,
    /// The key filter (`None`: every key, admins only).
    pub key: Option<&'a str>,
    pub model: Option<&'a str>,
    /// `(id, name)` a filter may pick; empty for a normal key.
    pub key_choices: Vec<(String, String)>,
    pub model_choices: Vec<String>,
    pub charts: Vec<Markup>,
    pub totals: UsageSummary,
    pub by_model: Vec<UsageSummary>,
    /// `(name, row)`; `None` for a normal key.
    pub by_key: Option<Vec<(String, UsageSummary)>>,
    pub recent: Vec<UsageRow>,
    /// Key id → name, for the recent table.
    pub key_name: &'a dyn Fn(&str) -> String,
    pub csv_href: String,
    pub note: Option<String>,
}

pub(super) const RANGES: &[(&str, &str)] = &[
    ("24h", "Last 24 hours"),
    ("7d", "Last 7 days"),
    ("30d", "Last 30 days"),
    ("90d", "Last 90 days"),
];

fn summary_table(id: &str, caption: &str, first: &str, rows: &[(String, &UsageSummary)]) -> Markup {
    html! {
        div.scroll {
            table id=(id) {
                caption { (caption) }
                thead { tr {
                    th scope="col" { (first) } th scope="col" { "Requests" } th scope="col" { "Errors" }
                    th scope="col" { "Prompt tokens" } th scope="col" { "Completion tokens" } th scope="col" { "Cost" }
                } }
                tbody {
                    @if rows.is_empty() { tr { td colspan="6" { span.dim { "No requests in this period." } } } }
                    @for (name, r) in rows {
                        tr {
                            th scope="row" { (name) }
                            td.num { (fmt::count(r.requests)) }
                            td.num { (fmt::count(r.errors)) }
                            td.num { (fmt::count(r.prompt_tokens)) }
                            td.num { (fmt::count(r.completion_tokens)) }
                            td.num {
                                (fmt::usd(r.cost_usd.unwrap_or(0.0)))
                                @if r.unpriced > 0 { " " span.dim title="requests with no known price" { "(+" (r.unpriced) " unpriced)" } }
                            }
                        }
                    }
                }
            }
        }
    }
}

pub(super) fn usage(ctx: &Ctx<'_>, v: &UsageView<'_>) -> Markup {
    let admin = ctx.me.admin;
    let t = &v.totals;
    let by_model: Vec<(String, &UsageSummary)> =
        v.by_model.iter().map(|r| (r.group.clone(), r)).collect();
    let body = html! {
        form.filters #filters method="get" action="/developer/usage" {
            div {
                label for="range" { "Period" }
                select #range name="range" {
                    @for (val, l) in RANGES { option value=(val) selected[v.range == *val] { (l) } }
                }
            }
            div {
                label for="bucket" { "Bucket" }
                select #bucket name="bucket" {
                    option value="hour" selected[v.bucket == "hour"] { "Hour" }
                    option value="day" selected[v.bucket == "day"] { "Day" }
                }
            }
            @if admin {
                div {
                    label for="key-filter" { "Key" }
                    select #key-filter name="key" {
                        option value="" selected[v.key.is_none()] { "All keys" }
                        @for (id, name) in &v.key_choices {
                            option value=(id) selected[v.key == Some(id.as_str())] { (name) " (" (id) ")" }
                        }
                    }
                }
            }
            div {
                label for="model-filter" { "Model" }
                select #model-filter name="model" {
                    option value="" selected[v.model.is_none()] { "All models" }
                    @for m in &v.model_choices { option value=(m) selected[v.model == Some(m.as_str())] { (m) } }
                }
            }
            div.actions {
                button type="submit" { "Apply" }
                a.button #csv href=(v.csv_href) download { "Export CSV" }
            }
        }
        @if let Some(n) = &v.note { p.notice role="status" { (n) } }
        ul.totals #totals aria-label="Totals for the period" {
            li { span.big #total-requests { (fmt::count(t.requests)) } " requests" }
            li { span.big #total-errors { (fmt::count(t.errors)) } " errors" }
            li { span.big #total-tokens { (fmt::count(t.prompt_tokens + t.completion_tokens)) } " tokens" }
            li { span.big #total-cost { (fmt::usd(t.cost_usd.unwrap_or(0.0))) } " cost" }
            @if t.cache_hits > 0 {
                li { span.big #total-cache-hits { (fmt::count(t.cache_hits)) } " cache hits, "
                    span #total-saved { (fmt::usd(t.saved_usd)) } " saved" }
            }
        }
        div.charts { @for c in &v.charts { (c) } }
        section aria-labelledby="breakdown-title" {
            h2 #breakdown-title { "Breakdown" }
            (summary_table("by-model", "By model", "Model", &by_model))
            @if let Some(rows) = &v.by_key {
                @let rows: Vec<(String, &UsageSummary)> = rows.iter().map(|(n, r)| (n.clone(), r)).collect();
                (summary_table("by-key", "By key", "Key", &rows))
            }
        }
        section aria-labelledby="recent-title" {
            h2 #recent-title { "Recent requests" }
            div.scroll {
                table #recent {
                    caption.visually-hidden { "The most recent requests, newest first" }
                    thead { tr {
                        th scope="col" { "Time (UTC)" }
                        @if admin { th scope="col" { "Key" } }
                        th scope="col" { "Model" } th scope="col" { "Provider" } th scope="col" { "Status" }
                        th scope="col" { "Tokens in / out" } th scope="col" { "Cost" }
                        th scope="col" { "Latency" } th scope="col" { "TTFT" }
                    } }
                    tbody {
                        @if v.recent.is_empty() { tr { td colspan="9" { span.dim { "No requests in this period." } } } }
                        @for r in &v.recent {
                            tr data-request-id=(r.request_id) {
                                td { (when(r.ts_ms)) }
                                @if admin { td { (r.key_id.as_deref().map_or_else(|| "-".to_owned(), |k| (v.key_name)(k))) } }
                                td {
                                    (r.model)
                                    @if let Some(u) = r.upstream_model.as_deref().filter(|u| *u != r.model) {
                                        br; span.dim { "→ " (u) }
                                    }
                                }
                                td {
                                    @if r.cache.as_deref() == Some("hit") { "cache" }
                                    @else { (r.provider.as_deref().unwrap_or("-")) }
                                }
                                td {
                                    span class=(if r.status >= 400 || r.error_type.is_some() { "status revoked" } else { "status active" }) { (r.status) }
                                    @if let Some(e) = &r.error_type { br; span.dim { (e) } }
                                    @if r.stream { br; span.dim { "stream" } }
                                }
                                td.num { (fmt::count(r.prompt_tokens)) " / " (fmt::count(r.completion_tokens)) }
                                td.num {
                                    @match r.cost_usd {
                                        Some(c) => (fmt::usd(c)),
                                        None if r.prompt_tokens + r.completion_tokens == 0 => span.dim { "-" },
                                        None => span.dim { "unpriced" },
                                    }
                                }
                                td.num { (fmt::count(r.latency_ms)) " ms" }
                                td.num { @match r.ttft_ms { Some(ms) => { (fmt::count(ms)) " ms" }, None => span.dim { "-" } } }
                            }
                        }
                    }
                }
            }
        }
    };
    layout("Usage", Some(ctx), body)
}

/// One deployment on the models page.
pub(super) struct DeploymentView {
    pub target: String,
    /// USD per million input and output tokens.
    pub price: Option<(f64, f64)>,
    pub circuit: crate::health::Circuit,
    pub error_rate: f64,
    pub latency_ms: Option<f64>,
    pub successes: u64,
    pub failures: u64,
}

pub(super) struct ModelView {
    pub model: String,
    /// `None`: a provider's own model.
    pub strategy: Option<String>,
    pub deployments: Vec<DeploymentView>,
}

pub(super) fn models(ctx: &Ctx<'_>, models: &[ModelView], open: &[(String, String)]) -> Markup {
    let body = html! {
        p.help { "Every model name this key can send, the deployments a request tries in order, their prices and how they have been answering on this instance." }
        div.scroll {
            table #models {
                caption.visually-hidden { "Routable models" }
                thead { tr {
                    th scope="col" { "Model" } th scope="col" { "Strategy" } th scope="col" { "Deployment" }
                    th scope="col" { "Price in / out (per 1M tokens)" } th scope="col" { "Circuit" }
                    th scope="col" { "Error rate" } th scope="col" { "Latency" } th scope="col" { "Requests ok / failed" }
                } }
                @if models.is_empty() { tbody { tr { td colspan="8" { span.dim { "No routable models for this key." } } } } }
                // One row group per model, so its header cell covers only its deployments.
                @for m in models {
                    tbody {
                        @for (i, d) in m.deployments.iter().enumerate() {
                            tr data-model=(m.model) {
                                @if i == 0 {
                                    th scope="rowgroup" rowspan=(m.deployments.len()) { (m.model) }
                                    td rowspan=(m.deployments.len()) {
                                        @match &m.strategy { Some(s) => (s), None => span.dim { "direct" } }
                                    }
                                }
                                td { code { (d.target) } }
                                td.num { @match d.price { Some((i, o)) => { (fmt::usd(i)) " / " (fmt::usd(o)) }, None => span.dim { "unknown" } } }
                                td { span class=(format!("circuit {}", d.circuit.as_str())) { (d.circuit.as_str().replace('_', " ")) } }
                                td.num { (format!("{:.1}%", d.error_rate * 100.0)) }
                                td.num { @match d.latency_ms { Some(l) => { (format!("{l:.0}")) " ms" }, None => span.dim { "-" } } }
                                td.num { (d.successes) " / " (d.failures) }
                            }
                        }
                    }
                }
            }
        }
        @if !open.is_empty() {
            h2 { "Any model of a provider" }
            p.help { "These providers also take any model name they serve, written " code { "provider/model" } "." }
            ul #open-providers { @for (name, kind) in open { li { code { (name) "/…" } " (" (kind) ")" } } }
        }
    };
    layout("Models", Some(ctx), body)
}
