//! The server's life cycle: the accept loop (hyper, with header limits and a header read
//! timeout against slow-loris clients), concurrency slots, and shutdown.
//!
//! Shutdown: SIGTERM (or Ctrl-C) stops accepting (idle keep-alive connections close, so a
//! load balancer moves on); in-flight requests and streams run on until `drain_timeout`. Past it, every stream still open ends with an
//! error event and every request still waiting gets a 503, then the connections close.
//! The usage ledger is flushed last, and the process exits 0.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::service::TowerToHyperService;
use tokio::sync::watch;

use crate::app::app;
use crate::conns::{drive, Admit, Conns, Reap, Tracked};
use crate::lifecycle::fired;
use crate::state::AppState;

/// How long accepting waits for evicted connections to close at the connection cap.
const EVICTION_WAIT: Duration = Duration::from_secs(1);
/// HTTP/2 streams reset by the client before they were served, per connection.
const HTTP2_MAX_PENDING_RESETS: usize = 20;
/// HTTP/2 streams the gateway reset for protocol errors, per connection.
const HTTP2_MAX_LOCAL_RESETS: usize = 256;

/// How long the ledger gets to write its last rows at shutdown.
pub(crate) const LEDGER_FLUSH_DEADLINE: Duration = Duration::from_secs(15);
/// How long the Responses writer and the Redis settler get to finish at shutdown.
const BACKGROUND_FLUSH_DEADLINE: Duration = Duration::from_secs(5);
/// After the drain deadline, how long cut-off streams get to write their last event.
const CUTOFF_GRACE: Duration = Duration::from_secs(2);

/// Serves until SIGTERM or Ctrl-C, then drains (see the module docs).
pub async fn serve(listener: tokio::net::TcpListener, state: AppState) -> std::io::Result<()> {
    serve_until(listener, state, shutdown_signal()).await
}

/// [`serve`] with the shutdown trigger given (tests).
pub(crate) async fn serve_until(
    listener: tokio::net::TcpListener,
    state: AppState,
    signal: impl Future<Output = ()>,
) -> std::io::Result<()> {
    let limits = state.live.load().config.server;
    let live = Arc::clone(&state.live);
    let store = state.store.clone();
    let ledger = state.ledger.clone();
    let responses = state.responses.clone();
    let redis = state.redis.clone();
    let life = state.life.clone();
    let nofile = crate::conns::raise_nofile_limit();
    let max_connections = limits
        .max_connections
        .unwrap_or_else(|| crate::conns::default_max_connections(nofile));
    tracing::info!(max_connections, "connection cap");
    let service = TowerToHyperService::new(app(state));
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout)
        .max_buf_size(limits.max_header_bytes)
        .max_headers(limits.max_headers);
    builder
        .http2()
        .timer(TokioTimer::new())
        .max_header_list_size(u32::try_from(limits.max_header_bytes).unwrap_or(u32::MAX))
        .max_concurrent_streams(limits.http2_max_concurrent_streams)
        // Rapid reset (CVE-2023-44487): streams the client resets before they are served,
        // and streams the gateway had to reset, are bounded; past either the connection
        // gets GOAWAY.
        .max_pending_accept_reset_streams(HTTP2_MAX_PENDING_RESETS)
        .max_local_error_reset_streams(HTTP2_MAX_LOCAL_RESETS);
    let conns = Arc::new(Conns::default());
    let reap = Reap {
        head: limits.header_read_timeout,
        idle: limits.idle_timeout,
    };
    let (stop_tx, _) = watch::channel(false);
    let mut signal = std::pin::pin!(signal);
    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((tcp, peer)) => {
                    let mut admitted = conns.admit(max_connections);
                    if matches!(admitted, Admit::Wait) {
                        // Idle connections are closing to make room: accepting pauses
                        // (the backlog waits) until they have.
                        conns.room(max_connections, EVICTION_WAIT).await;
                        admitted = conns.admit(max_connections);
                    }
                    let Admit::Serve(conn_state, registered) = admitted else {
                        // Every connection is busy: this one is closed at once.
                        drop(tcp);
                        continue;
                    };
                    // Small SSE frames must leave at once: without TCP_NODELAY, Nagle's
                    // algorithm holds them until the client's delayed ACK (~40 ms).
                    let _ = tcp.set_nodelay(true);
                    let io = TokioIo::new(Tracked::new(tcp, Arc::clone(&conn_state)));
                    let svc = service.clone();
                    let counted = Arc::clone(&conn_state);
                    let per_conn = hyper::service::service_fn(move |mut req: hyper::Request<hyper::body::Incoming>| {
                        req.extensions_mut().insert(crate::conns::Peer(peer.ip()));
                        // The request counts as in flight on its connection until its
                        // response body is done (or dropped).
                        let guard = counted.begin();
                        let fut = hyper::service::Service::call(&svc, req);
                        async move {
                            let resp = fut.await?;
                            Ok::<_, std::convert::Infallible>(crate::body::hold(resp, Box::new(guard)))
                        }
                    });
                    let conn = builder.serve_connection(io, per_conn).into_owned();
                    let kill = fired(&life.kill);
                    let stop = fired(&stop_tx);
                    tokio::spawn(async move {
                        let _registered = registered;
                        let close = |c: std::pin::Pin<&mut _>| {
                            hyper_util::server::conn::auto::Connection::graceful_shutdown(c);
                        };
                        // Dropping the connection drops its streams: their usage rows
                        // are written before the ledger's last flush.
                        if let Some(Err(e)) = drive(conn, close, conn_state, reap, stop, kill).await {
                            tracing::debug!(error = %e, "connection ended with an error");
                        }
                    });
                }
                Err(e) => {
                    // Out of file descriptors and the like: pause rather than spin.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            },
            () = &mut signal => break,
        }
    }
    drop(listener);
    // The drain deadline is read now: a reload may have changed it.
    let drain_timeout = live.load().config.server.drain_timeout;
    tracing::info!(
        deadline_s = drain_timeout.as_secs_f64(),
        "shutting down: no new connections; draining in-flight requests"
    );
    stop_tx.send_replace(true);
    let drained = conns.all_closed();
    let mut drained = std::pin::pin!(drained);
    tokio::select! {
        () = &mut drained => tracing::info!("drained"),
        () = tokio::time::sleep(drain_timeout) => {
            tracing::warn!("drain deadline reached: ending the remaining requests with an error");
            life.cut_off();
            if tokio::time::timeout(CUTOFF_GRACE, &mut drained).await.is_err() {
                tracing::warn!("connections still open after the cut-off (clients not reading): closing them");
                life.kill.send_replace(true);
                // Let the dropped connections' tasks run their drops (usage rows, holds).
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
    // The background writers are drained before the store closes: stored Responses, the
    // holds and leases in Redis, then every usage row (to the store or the spill file).
    responses.flush(BACKGROUND_FLUSH_DEADLINE).await;
    if let Some(r) = &redis {
        r.flush(BACKGROUND_FLUSH_DEADLINE).await;
    }
    ledger.flush(LEDGER_FLUSH_DEADLINE).await;
    store.close().await;
    Ok(())
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
