//! `jusinfer`: the command line. Glue only: every subcommand calls into `jusinfer_gateway`.
#![expect(
    clippy::print_stdout,
    reason = "the command line writes its results to standard output"
)]

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};
use jusinfer_gateway::calendar::BudgetPeriod;
use jusinfer_gateway::config::{self, Config};
use jusinfer_gateway::keys::{self, NewKey};
use jusinfer_gateway::store::{GroupBy, Store, UsageQuery};
use jusinfer_gateway::AppState;

// glibc malloc showed up at ~8% of the proxy path's CPU; mimalloc is markedly cheaper for
// the many small, short-lived allocations of request handling. Built with `no_thp`: left to
// itself mimalloc asks for transparent huge pages on its arenas, and on a host in THP
// "madvise" mode (Debian's default) every touched 2 MiB region then costs 2 MiB of RSS —
// +10 MB idle and +24 KB per open stream (71 → 47 KB) in BENCHMARKS.md's measurement.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(
    name = "jusinfer",
    version,
    about = "Self-hosted, OpenAI-compatible LLM router"
)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
    /// Log format: `json` (one object per line) or `text`. Default: text on a terminal,
    /// json otherwise.
    #[arg(long, global = true, env = "JUSINFER_LOG_FORMAT")]
    log_format: Option<LogFormat>,
}

#[derive(Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum LogFormat {
    Json,
    Text,
}

#[derive(Args, Clone)]
struct Common {
    /// Config file (else $JUSINFER_CONFIG, else ./jusinfer.toml, else built-in defaults).
    #[arg(long, global = true)]
    config: Option<PathBuf>,
    /// Database URL, overriding the config (e.g. sqlite://jusinfer.db).
    #[arg(long, global = true)]
    database: Option<String>,
}

#[derive(Subcommand)]
enum Cmd {
    /// Run the gateway.
    Serve {
        #[command(flatten)]
        common: Common,
        /// Address to listen on, overriding the config (e.g. 127.0.0.1:4000).
        #[arg(long)]
        listen: Option<String>,
    },
    /// Mint, list and revoke API keys.
    Keys {
        #[command(subcommand)]
        cmd: KeysCmd,
    },
    /// Requests, tokens and cost from the usage ledger.
    Usage {
        #[command(flatten)]
        common: Common,
        /// Only this key (its id).
        #[arg(long)]
        key: Option<String>,
        /// Window, e.g. 24h, 7d, 30m.
        #[arg(long, default_value = "24h")]
        since: String,
        /// Group by model, key or provider.
        #[arg(long, value_enum, default_value = "model")]
        by: By,
        #[arg(long)]
        json: bool,
    },
    /// List the models this config can route.
    Models {
        #[command(flatten)]
        common: Common,
        #[arg(long)]
        json: bool,
    },
    /// Validate the configuration.
    Config {
        #[command(subcommand)]
        cmd: ConfigCmd,
    },
    /// Probe an endpoint's OpenAI (or Anthropic) compatibility: PASS / WARN / FAIL per
    /// case; exit 1 on any FAIL.
    Check(CheckArgs),
}

#[derive(Args)]
struct CheckArgs {
    /// OpenAI dialect: the base URL clients use (e.g. http://127.0.0.1:4000/v1);
    /// Anthropic and Gemini: the host (e.g. http://127.0.0.1:4000).
    #[arg(long, env = "JUSINFER_CHECK_BASE_URL")]
    base_url: String,
    #[arg(long, env = "JUSINFER_CHECK_API_KEY", hide_env_values = true)]
    api_key: String,
    #[arg(long)]
    model: String,
    #[arg(long, value_enum, default_value = "openai")]
    dialect: DialectArg,
    /// Seconds per request.
    #[arg(long, default_value_t = 60.0)]
    timeout: f64,
    /// Print the results as JSON instead of the table.
    #[arg(long)]
    json: bool,
    /// Also write JUnit XML here.
    #[arg(long)]
    junit: Option<PathBuf>,
    /// Keep the raw request and response bytes of every case here.
    #[arg(long)]
    save_dir: Option<PathBuf>,
}

#[derive(Clone, Copy, clap::ValueEnum)]
enum DialectArg {
    Openai,
    Anthropic,
    Gemini,
}

#[derive(Clone, Copy, clap::ValueEnum)]
enum By {
    Model,
    Key,
    Provider,
}

#[derive(Subcommand)]
enum KeysCmd {
    /// Mint a key; it is printed once, as the last line of standard output.
    Create {
        #[command(flatten)]
        common: Common,
        #[arg(long)]
        name: String,
        #[arg(long)]
        admin: bool,
        #[arg(long)]
        budget_usd: Option<f64>,
        /// When the budget starts again (00:00 UTC): daily, weekly (Mondays) or monthly;
        /// without it, the budget is for the key's lifetime.
        #[arg(long, value_parser = parse_period)]
        budget_period: Option<BudgetPeriod>,
        #[arg(long)]
        rpm: Option<i64>,
        #[arg(long)]
        tpm: Option<i64>,
        /// Allowed model patterns, comma separated (`*` matches any run).
        #[arg(long, value_delimiter = ',')]
        models: Vec<String>,
        /// Lifetime, e.g. 30d, 12h.
        #[arg(long)]
        expires_in: Option<String>,
        /// Free-form JSON object kept with the key, e.g. '{"team":"search"}'.
        #[arg(long)]
        metadata: Option<String>,
        /// The exact response cache for the key's requests: on or off (default: as the
        /// models' settings say).
        #[arg(long, value_parser = parse_on_off)]
        cache: Option<bool>,
        #[arg(long)]
        json: bool,
    },
    /// List keys (never the keys themselves).
    List {
        #[command(flatten)]
        common: Common,
        #[arg(long)]
        json: bool,
    },
    /// Revoke a key by id or display prefix.
    Revoke {
        #[command(flatten)]
        common: Common,
        id_or_prefix: String,
    },
}

#[derive(Subcommand)]
enum ConfigCmd {
    /// Validate the config and print the resolved providers and routes.
    Check {
        #[command(flatten)]
        common: Common,
    },
}

/// A failure with its exit code: 1 for the work, 2 for usage or config.
struct Failure {
    code: u8,
    message: String,
}

fn work(e: impl std::fmt::Display) -> Failure {
    Failure {
        code: 1,
        message: e.to_string(),
    }
}

fn usage(e: impl std::fmt::Display) -> Failure {
    Failure {
        code: 2,
        message: e.to_string(),
    }
}

fn load_config(common: &Common) -> Result<Config, Failure> {
    let path = config::locate(common.config.as_deref());
    let mut cfg = config::load(path.as_deref()).map_err(usage)?;
    if let Some(db) = &common.database {
        cfg.database = db.clone();
    }
    Ok(cfg)
}

async fn open_store(cfg: &Config) -> Result<Store, Failure> {
    Store::open(&cfg.database).await.map_err(work)
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let tty = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let filter = tracing_subscriber::EnvFilter::try_from_env("JUSINFER_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let format = cli.log_format.unwrap_or(if tty {
        LogFormat::Text
    } else {
        LogFormat::Json
    });
    // The trace SDK logs every failed export; `telemetry` says so at most once a minute.
    let quiet =
        tracing_subscriber::filter::filter_fn(|m| m.name() != "BatchSpanProcessor.ExportError");
    use tracing_subscriber::layer::SubscriberExt as _;
    use tracing_subscriber::util::SubscriberInitExt as _;
    let logs = tracing_subscriber::registry().with(filter).with(quiet);
    let out = tracing_subscriber::fmt::layer().with_writer(std::io::stderr);
    match format {
        LogFormat::Json => logs
            .with(out.json().flatten_event(true).with_current_span(false))
            .init(),
        LogFormat::Text => logs.with(out.with_ansi(tty)).init(),
    }
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the runtime: {e}");
            return ExitCode::from(1);
        }
    };
    match rt.block_on(run(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(f) => {
            eprintln!("error: {}", f.message);
            ExitCode::from(f.code)
        }
    }
}

async fn run(cli: Cli) -> Result<(), Failure> {
    match cli.cmd {
        Cmd::Serve { common, listen } => serve(&common, listen).await,
        Cmd::Keys { cmd } => keys_cmd(cmd).await,
        Cmd::Models { common, json } => models(&common, json),
        Cmd::Usage {
            common,
            key,
            since,
            by,
            json,
        } => usage_cmd(&common, key, &since, by, json).await,
        Cmd::Config {
            cmd: ConfigCmd::Check { common },
        } => config_check(&common),
        Cmd::Check(args) => check(args).await,
    }
}

async fn check(a: CheckArgs) -> Result<(), Failure> {
    use jusinfer_check::{report, Dialect, Target};
    use std::io::{IsTerminal, Write};
    if !(a.timeout.is_finite() && a.timeout > 0.0) {
        return Err(usage("--timeout must be a positive number of seconds"));
    }
    let target = Target {
        base_url: a.base_url.trim_end_matches('/').to_owned(),
        api_key: a.api_key,
        model: a.model,
        dialect: match a.dialect {
            DialectArg::Openai => Dialect::Openai,
            DialectArg::Anthropic => Dialect::Anthropic,
            DialectArg::Gemini => Dialect::Gemini,
        },
        timeout: std::time::Duration::from_secs_f64(a.timeout),
    };
    let progress_tty = std::io::stderr().is_terminal();
    let results = jusinfer_check::run(&target, |done, total, next| {
        if !progress_tty {
            return;
        }
        let mut err = std::io::stderr();
        match next {
            Some(name) => {
                let _ = write!(err, "\r\x1b[2K[{}/{total}] {name}…", done + 1);
            }
            None => {
                let _ = write!(err, "\r\x1b[2K");
            }
        }
        let _ = err.flush();
    })
    .await;
    let mut out = std::io::stdout();
    let text = if a.json {
        format!("{:#}\n", report::json(&target, &results))
    } else {
        report::table(&target, &results, out.is_terminal())
    };
    out.write_all(text.as_bytes()).map_err(work)?;
    if let Some(path) = &a.junit {
        std::fs::write(path, report::junit(&target, &results))
            .map_err(|e| work(format!("--junit {}: {e}", path.display())))?;
    }
    if let Some(dir) = &a.save_dir {
        report::save(dir, &results)
            .map_err(|e| work(format!("--save-dir {}: {e}", dir.display())))?;
    }
    let (_, _, failed) = report::counts(&results);
    if failed > 0 {
        return Err(Failure {
            code: 1,
            message: format!("{failed} case(s) failed"),
        });
    }
    Ok(())
}

async fn serve(common: &Common, listen: Option<String>) -> Result<(), Failure> {
    let mut cfg = load_config(common)?;
    let overrides = jusinfer_gateway::Overrides {
        listen,
        database: common.database.clone(),
    };
    overrides.apply(&mut cfg);
    for w in &cfg.warnings {
        tracing::warn!("{w}");
    }
    let store = open_store(&cfg).await?;
    if cfg.auth == config::AuthMode::Keys && store.count_keys().await.map_err(work)? == 0 {
        let minted = keys::mint(
            &store,
            NewKey {
                name: "admin".to_owned(),
                admin: true,
                ..NewKey::default()
            },
        )
        .await
        .map_err(work)?;
        println!("Minted the first admin key (shown once, store it now):");
        println!("{}", minted.key);
    }
    let listener = tokio::net::TcpListener::bind(&cfg.listen)
        .await
        .map_err(|e| work(format!("cannot listen on {}: {e}", cfg.listen)))?;
    let addr = listener.local_addr().map_err(work)?;
    let tracing_cfg = cfg.tracing.clone();
    // The exporter's HTTP client blocks: built off the async threads.
    let traces =
        tokio::task::spawn_blocking(move || jusinfer_gateway::telemetry::init(&tracing_cfg))
            .await
            .map_err(work)?
            .map_err(work)?;
    if traces {
        tracing::info!("OpenTelemetry traces: exporting over OTLP/HTTP");
    }
    let state = AppState::new(cfg, store, overrides).await.map_err(work)?;
    state.reload_on_signals();
    tracing::info!("jusinfer listening on http://{addr}");
    let served = jusinfer_gateway::serve(listener, state).await.map_err(work);
    jusinfer_gateway::telemetry::shutdown().await;
    served
}

fn parse_period(s: &str) -> Result<BudgetPeriod, String> {
    s.parse()
}

fn parse_on_off(s: &str) -> Result<bool, String> {
    match s {
        "on" => Ok(true),
        "off" => Ok(false),
        _ => Err(format!("expected on or off, not {s}")),
    }
}

/// `day`, `week`, `month`: the SPEND / BUDGET column's `5.00/day`.
fn short_period(p: BudgetPeriod) -> &'static str {
    match p {
        BudgetPeriod::Daily => "day",
        BudgetPeriod::Weekly => "week",
        BudgetPeriod::Monthly => "month",
    }
}

async fn keys_cmd(cmd: KeysCmd) -> Result<(), Failure> {
    match cmd {
        KeysCmd::Create {
            common,
            name,
            admin,
            budget_usd,
            budget_period,
            rpm,
            tpm,
            models,
            expires_in,
            metadata,
            cache,
            json,
        } => {
            keys::validate_limits(budget_usd, rpm, tpm)
                .map_err(|(field, msg)| usage(format!("--{}: {msg}", field.replace('_', "-"))))?;
            let metadata = match metadata {
                Some(m) => match serde_json::from_str::<serde_json::Value>(&m) {
                    Ok(v) if v.is_object() => v,
                    _ => return Err(usage(format!("--metadata {m:?}: expected a JSON object"))),
                },
                None => serde_json::json!({}),
            };
            let expires_in = match expires_in {
                Some(s) => Some(keys::parse_duration(&s).ok_or_else(|| {
                    usage(format!(
                        "--expires-in {s:?}: expected a number with s, m, h, d or w, e.g. 30d"
                    ))
                })?),
                None => None,
            };
            let cfg = load_config(&common)?;
            let store = open_store(&cfg).await?;
            let new = NewKey {
                name,
                admin,
                budget_usd,
                budget_period,
                rpm,
                tpm,
                models: models.into_iter().filter(|m| !m.is_empty()).collect(),
                expires_in,
                metadata,
                cache,
            };
            let minted = keys::mint(&store, new).await.map_err(work)?;
            if json {
                let out = serde_json::json!({"id": minted.record.id, "key": minted.key, "prefix": minted.record.prefix,
                    "name": minted.record.name, "admin": minted.record.admin});
                println!("{out}");
            } else {
                println!(
                    "Created key {} ({}). It is shown once:",
                    minted.record.id, minted.record.name
                );
                println!("{}", minted.key);
            }
            Ok(())
        }
        KeysCmd::List { common, json } => {
            let cfg = load_config(&common)?;
            let store = open_store(&cfg).await?;
            let keys = store.list_keys().await.map_err(work)?;
            let stats = store.key_stats(None).await.map_err(work)?;
            let now_ms = jusinfer_gateway::store::now().saturating_mul(1000);
            if json {
                let out: Vec<serde_json::Value> = keys
                    .iter()
                    .map(|k| {
                        let mut v = serde_json::to_value(k).unwrap_or_default();
                        if let Some(o) = v.as_object_mut() {
                            let s = stats.get(&k.id).cloned().unwrap_or_default();
                            o.insert("spend_usd".into(), s.spend_usd.into());
                            o.insert(
                                "budget_spent_usd".into(),
                                s.spend_in(k.budget_period).into(),
                            );
                            o.insert(
                                "budget_resets_at".into(),
                                k.budget_period.map(|p| p.span(now_ms).end_ms / 1000).into(),
                            );
                        }
                        v
                    })
                    .collect();
                println!("{}", serde_json::to_string(&out).map_err(work)?);
                return Ok(());
            }
            println!(
                "{:<22} {:<14} {:<20} {:<6} {:<8} {:>8} {:>9} {:>21}",
                "ID", "PREFIX", "NAME", "ADMIN", "STATUS", "RPM", "TPM", "SPEND / BUDGET (USD)"
            );
            for k in keys {
                let status = k.status();
                let dash = |v: Option<i64>| v.map_or_else(|| "-".to_owned(), |v| v.to_string());
                let spend = stats
                    .get(&k.id)
                    .map_or(0.0, |s| s.spend_in(k.budget_period));
                let budget = match (k.budget_usd, k.budget_period) {
                    (None, _) => "-".to_owned(),
                    (Some(b), None) => format!("{b:.2}"),
                    (Some(b), Some(p)) => format!("{b:.2}/{}", short_period(p)),
                };
                println!(
                    "{:<22} {:<14} {:<20} {:<6} {:<8} {:>8} {:>9} {:>21}",
                    k.id,
                    k.prefix,
                    k.name,
                    k.admin,
                    status,
                    dash(k.rpm),
                    dash(k.tpm),
                    format!("{spend:.4} / {budget}")
                );
            }
            Ok(())
        }
        KeysCmd::Revoke {
            common,
            id_or_prefix,
        } => {
            let cfg = load_config(&common)?;
            let store = open_store(&cfg).await?;
            let k = store.revoke_key(&id_or_prefix).await.map_err(work)?;
            // Running instances drop their cached copy now (else within the cache TTL).
            keys::announce_change(&cfg, &k.hash).await;
            println!("Revoked key {} ({}, {}).", k.id, k.prefix, k.name);
            Ok(())
        }
    }
}

async fn usage_cmd(
    common: &Common,
    key: Option<String>,
    since: &str,
    by: By,
    json: bool,
) -> Result<(), Failure> {
    let window = keys::parse_duration(since).ok_or_else(|| {
        usage(format!(
            "--since {since:?}: expected a number with s, m, h, d or w, e.g. 24h"
        ))
    })?;
    let cfg = load_config(common)?;
    let store = open_store(&cfg).await?;
    let now_ms = jusinfer_gateway::store::now().saturating_mul(1000);
    let since_ms = now_ms.saturating_sub(i64::try_from(window.as_millis()).unwrap_or(i64::MAX));
    let by = match by {
        By::Model => GroupBy::Model,
        By::Key => GroupBy::Key,
        By::Provider => GroupBy::Provider,
    };
    let rows = store
        .usage_summary(&UsageQuery {
            since_ms,
            key,
            model: None,
            by,
        })
        .await
        .map_err(work)?;
    if json {
        println!("{}", serde_json::to_string(&rows).map_err(work)?);
        return Ok(());
    }
    println!(
        "{:<40} {:>9} {:>7} {:>12} {:>12} {:>10} {:>12} {:>10} {:>12}",
        "GROUP",
        "REQUESTS",
        "ERRORS",
        "PROMPT",
        "COMPLETION",
        "CACHED",
        "COST (USD)",
        "HITS",
        "SAVED (USD)"
    );
    for r in rows {
        let cost = match (r.cost_usd, r.unpriced) {
            (Some(c), 0) => format!("{c:.6}"),
            (Some(c), _) => format!("{c:.6}+?"),
            (None, _) => "?".to_owned(),
        };
        println!(
            "{:<40} {:>9} {:>7} {:>12} {:>12} {:>10} {:>12} {:>10} {:>12.6}",
            r.group,
            r.requests,
            r.errors,
            r.prompt_tokens,
            r.completion_tokens,
            r.cached_tokens,
            cost,
            r.cache_hits,
            r.saved_usd
        );
    }
    Ok(())
}

fn models(common: &Common, json: bool) -> Result<(), Failure> {
    let cfg = load_config(common)?;
    let prices = jusinfer_gateway::pricing::Prices::new(&cfg.prices);
    let price_of = |target: &str| {
        let (provider, model) = target.split_once('/').unwrap_or(("", target));
        prices.get(provider, model)
    };
    let table = route_table(&cfg);
    if json {
        let v: Vec<_> = table
            .iter()
            .map(|(name, route)| {
                let price = route.first().and_then(|t| price_of(t));
                serde_json::json!({"id": name, "route": route, "price_per_mtok": price})
            })
            .collect();
        println!("{}", serde_json::Value::Array(v));
    } else {
        println!("{:<40} {:>14}  ROUTE", "MODEL", "IN/OUT $/MTOK");
        for (name, route) in table {
            let price = route
                .first()
                .and_then(|t| price_of(t))
                .map_or_else(|| "?".to_owned(), |p| format!("{}/{}", p.input, p.output));
            println!("{name:<40} {price:>14}  {}", route.join(", "));
        }
        println!(
            "(prices: bundled catalog of {}, overridden by [prices])",
            prices.catalog_date
        );
    }
    Ok(())
}

/// Every routable name and where it goes.
fn route_table(cfg: &Config) -> Vec<(String, Vec<String>)> {
    let mut out = Vec::new();
    for m in &cfg.models {
        out.push((
            m.name.clone(),
            m.route.iter().map(|(p, m)| format!("{p}/{m}")).collect(),
        ));
    }
    for p in &cfg.providers {
        for m in &p.models {
            out.push((m.clone(), vec![format!("{}/{m}", p.name)]));
        }
    }
    out
}

fn config_check(common: &Common) -> Result<(), Failure> {
    let cfg = load_config(common)?;
    let source = cfg.source.as_ref().map_or_else(
        || "built-in defaults".to_owned(),
        |p| p.display().to_string(),
    );
    println!("config: {source} is valid");
    println!(
        "listen: {}   database: {}   redis: {}   auth: {:?}",
        cfg.listen,
        jusinfer_gateway::store::redact(&cfg.database),
        cfg.redis
            .as_deref()
            .map_or_else(|| "-".to_owned(), jusinfer_gateway::store::redact),
        cfg.auth
    );
    println!("providers:");
    for p in &cfg.providers {
        let url = if p.base_url.is_empty() {
            "(built in)".to_owned()
        } else {
            jusinfer_gateway::store::redact(&p.base_url)
        };
        let key = if p.api_key.is_some() {
            "key set"
        } else {
            "no key"
        };
        println!("  {:<16} {:<18} {url}  ({key})", p.name, p.kind.as_str());
    }
    println!("routes:");
    for (name, route) in route_table(&cfg) {
        let how = cfg
            .models
            .iter()
            .find(|m| m.name == name)
            .map_or_else(String::new, |m| match m.strategy {
                config::Strategy::Fallback => "  (fallback)".to_owned(),
                config::Strategy::Weighted => format!("  (weighted {:?})", m.weights),
                config::Strategy::LeastLatency => "  (least-latency)".to_owned(),
                config::Strategy::LowestCost => "  (lowest-cost)".to_owned(),
            });
        println!("  {name:<30} -> {}{how}", route.join(" | "));
    }
    let b = cfg.breaker;
    let srv = cfg.server;
    println!(
        "circuit breaker: {} failures in {:.0}s open for {:.0}s;  drain {:.0}s;  max concurrent {} (per key {})",
        b.failures,
        b.window.as_secs_f64(),
        b.cooldown.as_secs_f64(),
        srv.drain_timeout.as_secs_f64(),
        srv.max_concurrent_requests,
        srv.max_concurrent_per_key
            .map_or_else(|| "unlimited".to_owned(), |n| n.to_string())
    );
    for w in &cfg.warnings {
        println!("warning: {w}");
    }
    Ok(())
}
