//! Application state, the router, and the server's life cycle.

use std::future::IntoFuture;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::extract::Request;
use axum::http::HeaderValue;
use axum::middleware::{self, Next};
use axum::response::Response;
use axum::routing::{get, post};
use rand::distributions::{Alphanumeric, DistString};

use crate::config::{AuthMode, Config};
use crate::handlers;
use crate::keys::KeyChecker;
use crate::ledger::Ledger;
use crate::limits::Limits;
use crate::pricing::Prices;
use crate::providers::Provider;
use crate::redis_limits::RedisLimits;
use crate::routing;
use crate::store::Store;

/// Everything a handler needs; cheap to clone.
#[derive(Clone)]
pub struct AppState {
    pub config: Arc<Config>,
    pub router: Arc<routing::Router>,
    pub store: Store,
    /// `None` when `auth = "none"`.
    pub keys: Option<KeyChecker>,
    pub prices: Arc<Prices>,
    pub ledger: Ledger,
    pub limits: Limits,
    /// Set with `redis`: shared limits and key-change announcements.
    pub redis: Option<RedisLimits>,
}

impl AppState {
    /// Builds the state, connecting to Redis when `redis` is set.
    pub async fn new(config: Config, store: Store) -> Result<Self, String> {
        let providers = config
            .providers
            .iter()
            .cloned()
            .map(|p| Provider::new(p).map(Arc::new))
            .collect::<Result<Vec<_>, _>>()?;
        let router = routing::Router::new(&config, providers);
        let keys = (config.auth == AuthMode::Keys).then(|| KeyChecker::new(store.clone()));
        let redis = match &config.redis {
            Some(url) => {
                let (r, client) = RedisLimits::connect(url).await?;
                if let Some(k) = &keys {
                    let k = k.clone();
                    crate::redis_limits::watch_key_changes(client, move |hash| k.evict(hash));
                }
                Some(r)
            }
            None => None,
        };
        let limits = Limits::new(store.clone(), redis.clone());
        let prices = Arc::new(Prices::new(&config.prices));
        let (ledger, _writer) = Ledger::start(
            store.clone(),
            spill_path(&config.database),
            Arc::clone(&prices),
        );
        Ok(Self {
            config: Arc::new(config),
            router: Arc::new(router),
            store,
            keys,
            prices,
            ledger,
            limits,
            redis,
        })
    }
}

/// Where ledger rows go while the database is unavailable: beside an SQLite file, else in
/// the working directory.
fn spill_path(database: &str) -> std::path::PathBuf {
    let file = database
        .strip_prefix("sqlite://")
        .or_else(|| database.strip_prefix("sqlite:"));
    match file.map(|f| f.split('?').next().unwrap_or(f)) {
        Some(f) if !f.is_empty() && !f.contains(":memory:") => {
            format!("{f}.usage-spill.jsonl").into()
        }
        _ => "jusinfer-usage-spill.jsonl".into(),
    }
}

/// The request id: the client's `x-request-id` when it sent a sane one.
#[derive(Clone, Debug)]
pub struct RequestId(pub String);

/// The HTTP surface.
pub fn app(state: AppState) -> axum::Router {
    axum::Router::new()
        .route(
            "/v1/chat/completions",
            post(handlers::chat::chat_completions),
        )
        .route("/v1/embeddings", post(handlers::embeddings::embeddings))
        .route("/v1/models", get(handlers::models::list))
        .route("/v1/models/{*id}", get(handlers::models::get))
        .route(
            "/admin/keys",
            post(handlers::admin::create).get(handlers::admin::list),
        )
        .route(
            "/admin/keys/{id}",
            get(handlers::admin::get)
                .patch(handlers::admin::update)
                .delete(handlers::admin::revoke),
        )
        .route("/admin/keys/{id}/revoke", post(handlers::admin::revoke))
        .route("/admin/usage", get(handlers::admin::usage))
        .route("/healthz", get(handlers::health::healthz))
        .route("/readyz", get(handlers::health::readyz))
        .fallback(not_found)
        .layer(middleware::from_fn(request_meta))
        .with_state(state)
}

async fn not_found(req: Request) -> Response {
    use axum::response::IntoResponse;
    crate::error::GatewayError::not_found(format!(
        "No route for {} {}.",
        req.method(),
        req.uri().path()
    ))
    .into_response()
}

fn new_request_id() -> String {
    format!(
        "req_{}",
        Alphanumeric.sample_string(&mut rand::thread_rng(), 24)
    )
}

/// Gives every request an id, and every response `x-request-id` and the attempt headers;
/// logs one line per request (never bodies or keys).
async fn request_meta(mut req: Request, next: Next) -> Response {
    let started = Instant::now();
    let id = req
        .headers()
        .get("x-request-id")
        .and_then(|v| v.to_str().ok())
        .filter(|v| !v.is_empty() && v.len() <= 128 && v.bytes().all(|b| b.is_ascii_graphic()))
        .map_or_else(new_request_id, str::to_owned);
    let method = req.method().clone();
    let path = req.uri().path().to_owned();
    req.extensions_mut().insert(RequestId(id.clone()));
    let mut resp = next.run(req).await;
    let h = resp.headers_mut();
    if let Ok(v) = HeaderValue::from_str(&id) {
        h.insert("x-request-id", v);
    }
    if !h.contains_key("x-jusinfer-provider") {
        h.insert("x-jusinfer-provider", HeaderValue::from_static("none"));
    }
    if !h.contains_key("x-jusinfer-attempts") {
        h.insert("x-jusinfer-attempts", HeaderValue::from_static("0"));
    }
    tracing::info!(
        request_id = %id,
        %method,
        path = %path,
        status = resp.status().as_u16(),
        provider = resp.headers().get("x-jusinfer-provider").and_then(|v| v.to_str().ok()).unwrap_or(""),
        attempts = resp.headers().get("x-jusinfer-attempts").and_then(|v| v.to_str().ok()).unwrap_or(""),
        ms = started.elapsed().as_millis() as u64,
        "request"
    );
    resp
}

/// How long the ledger gets to write its last rows at shutdown.
pub const LEDGER_FLUSH_DEADLINE: Duration = Duration::from_secs(15);

/// How long in-flight requests get to finish after SIGTERM.
pub const DRAIN_DEADLINE: Duration = Duration::from_secs(30);

/// Serves until SIGTERM or Ctrl-C, then drains in-flight requests up to [`DRAIN_DEADLINE`].
pub async fn serve(listener: tokio::net::TcpListener, state: AppState) -> std::io::Result<()> {
    let store = state.store.clone();
    let ledger = state.ledger.clone();
    let (tx, rx) = tokio::sync::watch::channel(false);
    // Small SSE frames must leave at once: without TCP_NODELAY, Nagle's algorithm holds them
    // until the client's delayed ACK (~40 ms), bunching a stream's chunks.
    let listener = axum::serve::ListenerExt::tap_io(listener, |tcp: &mut tokio::net::TcpStream| {
        let _ = tcp.set_nodelay(true);
    });
    let server = axum::serve(listener, app(state)).with_graceful_shutdown(async move {
        shutdown_signal().await;
        tracing::info!("shutting down: draining in-flight requests");
        let _ = tx.send(true);
    });
    let mut rx2 = rx.clone();
    let result = tokio::select! {
        r = server.into_future() => r,
        _ = async move {
            let _ = rx2.wait_for(|v| *v).await;
            tokio::time::sleep(DRAIN_DEADLINE).await;
        } => {
            tracing::warn!("drain deadline reached; closing remaining connections");
            Ok(())
        }
    };
    drop(rx);
    // Every usage row of the requests served goes to the store (or the spill file) first.
    ledger.flush(LEDGER_FLUSH_DEADLINE).await;
    store.close().await;
    result
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = term => {},
    }
}
