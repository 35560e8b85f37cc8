//! Client connections: each one's activity, its requests in flight, and the reaper that
//! closes it when idle, so no client, with or without a key, can hold sockets forever.
//!
//! - A connection that has not sent a whole request within `header_read_timeout` of its
//!   last byte (from accept on: also one that never sends a byte) is closed.
//! - A keep-alive connection with nothing in flight is closed after `idle_timeout`
//!   (HTTP/2: a GOAWAY first).
//! - At `max_connections`, a new connection makes room by closing the longest-idle
//!   connection that has nothing in flight; only when every connection is busy is the new
//!   one refused. So a flood of idle sockets never locks out a health check.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::sync::{watch, Notify};
use tokio::time::Instant;

/// After a graceful close is asked, how long a connection with nothing in flight gets to
/// go before it is dropped.
const CLOSE_GRACE: Duration = Duration::from_secs(5);
/// Connections accepted past `max_connections` while evicted ones close: a fraction of
/// the cap (the cap leaves half the open-files limit to everything else).
fn evicting_slack(max: usize) -> usize {
    max / 4 + 16
}

/// One client connection as the reaper sees it.
pub(crate) struct Conn {
    id: u64,
    /// Milliseconds since the registry's epoch of the last byte read or request ended.
    last_active: AtomicU64,
    in_flight: AtomicUsize,
    /// A request has been seen (the idle limit applies from then on, not the head limit).
    served: AtomicBool,
    /// Asked to make room: no longer counted against the cap, nor picked again.
    evicted: AtomicBool,
    evict: Notify,
    epoch: Instant,
}

impl Conn {
    fn touch(&self) {
        let ms = u64::try_from(self.epoch.elapsed().as_millis()).unwrap_or(u64::MAX);
        self.last_active.store(ms, Ordering::Relaxed);
    }

    fn idle_since(&self) -> Instant {
        self.epoch + Duration::from_millis(self.last_active.load(Ordering::Relaxed))
    }

    /// Counts a request in flight until the returned guard drops (with its response body).
    pub(crate) fn begin(self: &Arc<Self>) -> InFlight {
        self.in_flight.fetch_add(1, Ordering::AcqRel);
        self.served.store(true, Ordering::Relaxed);
        InFlight(Arc::clone(self))
    }
}

/// One request in flight on a connection.
pub(crate) struct InFlight(Arc<Conn>);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.touch();
        self.0.in_flight.fetch_sub(1, Ordering::AcqRel);
    }
}

/// Every open client connection.
pub(crate) struct Conns {
    epoch: Instant,
    next_id: AtomicU64,
    open: Mutex<Vec<Arc<Conn>>>,
    count: watch::Sender<usize>,
}

impl Default for Conns {
    fn default() -> Self {
        Self {
            epoch: Instant::now(),
            next_id: AtomicU64::new(0),
            open: Mutex::new(Vec::new()),
            count: watch::channel(0).0,
        }
    }
}

/// What accepting a connection decided.
pub(crate) enum Admit {
    /// Serve it; the entry leaves the registry when the guard drops.
    Serve(Arc<Conn>, Registered),
    /// Every connection is busy and the cap is reached.
    Refuse,
    /// Idle connections were asked to make room and have not closed yet: wait
    /// ([`Conns::room`]) and ask again.
    Wait,
}

/// A connection's place in the registry.
pub(crate) struct Registered {
    conns: Arc<Conns>,
    id: u64,
}

impl Drop for Registered {
    fn drop(&mut self) {
        if let Ok(mut open) = self.conns.open.lock() {
            if let Some(i) = open.iter().position(|c| c.id == self.id) {
                open.swap_remove(i);
            }
        }
        self.conns.count.send_modify(|n| *n = n.saturating_sub(1));
        crate::metrics::get().connections.dec();
    }
}

impl Conns {
    /// Registers a new connection, making room at `max` by evicting the longest-idle one.
    pub(crate) fn admit(self: &Arc<Self>, max: usize) -> Admit {
        let Ok(mut open) = self.open.lock() else {
            return Admit::Refuse;
        };
        // Only at the cap is the list scanned (a flood's cost, not every accept's).
        if open.len() >= max {
            let slack = evicting_slack(max);
            let leaving = open
                .iter()
                .filter(|c| c.evicted.load(Ordering::Relaxed))
                .count();
            if open.len() - leaving >= max {
                let victim = open
                    .iter()
                    .filter(|c| {
                        c.in_flight.load(Ordering::Acquire) == 0
                            && !c.evicted.load(Ordering::Relaxed)
                    })
                    .min_by_key(|c| c.last_active.load(Ordering::Relaxed));
                let Some(v) = victim else {
                    closed("refused");
                    return Admit::Refuse;
                };
                if open.len() >= max + slack {
                    return Admit::Wait;
                }
                v.evicted.store(true, Ordering::Relaxed);
                v.evict.notify_one();
                closed("evicted");
            } else if open.len() >= max + slack {
                return Admit::Wait;
            }
        }
        let c = Arc::new(Conn {
            id: self.next_id.fetch_add(1, Ordering::Relaxed),
            last_active: AtomicU64::new(0),
            in_flight: AtomicUsize::new(0),
            served: AtomicBool::new(false),
            evicted: AtomicBool::new(false),
            evict: Notify::new(),
            epoch: self.epoch,
        });
        c.touch();
        open.push(Arc::clone(&c));
        drop(open);
        self.count.send_modify(|n| *n += 1);
        crate::metrics::get().connections.inc();
        Admit::Serve(
            Arc::clone(&c),
            Registered {
                conns: Arc::clone(self),
                id: c.id,
            },
        )
    }

    #[cfg(test)]
    pub(crate) fn count(&self) -> usize {
        *self.count.borrow()
    }

    /// Resolves when there is room again at `max` (evicted connections closed), or after
    /// `wait`.
    pub(crate) async fn room(&self, max: usize, wait: Duration) {
        let ceiling = max + evicting_slack(max);
        let mut rx = self.count.subscribe();
        let _ = tokio::time::timeout(wait, rx.wait_for(|c| *c < ceiling)).await;
    }

    /// Resolves when no connection is open.
    pub(crate) async fn all_closed(&self) {
        let mut rx = self.count.subscribe();
        let _ = rx.wait_for(|n| *n == 0).await;
    }
}

fn closed(reason: &str) {
    crate::metrics::get()
        .connections_closed
        .with_label_values(&[reason])
        .inc();
}

/// The limits the reaper applies.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Reap {
    /// Before the first request (and between its bytes).
    pub head: Duration,
    /// Between requests.
    pub idle: Duration,
}

/// Drives `conn` to its end, asking it to close (`close`: hyper's graceful shutdown) when
/// idle, evicted, or at `shutdown`; dropped outright at `kill`, or when it has not closed
/// [`CLOSE_GRACE`] after being asked with nothing in flight.
pub(crate) async fn drive<C: Future>(
    conn: C,
    close: impl Fn(Pin<&mut C>),
    c: Arc<Conn>,
    reap: Reap,
    shutdown: impl Future<Output = ()>,
    kill: impl Future<Output = ()>,
) -> Option<C::Output> {
    let mut conn = std::pin::pin!(conn);
    let mut shutdown = std::pin::pin!(shutdown);
    let mut kill = std::pin::pin!(kill);
    let mut closing: Option<Instant> = None;
    loop {
        let limit = if c.served.load(Ordering::Relaxed) {
            reap.idle
        } else {
            reap.head
        };
        let busy = c.in_flight.load(Ordering::Acquire) > 0;
        let wake = match closing {
            Some(at) => at,
            None => c.idle_since() + limit,
        };
        tokio::select! {
            out = conn.as_mut() => return Some(out),
            () = &mut kill => return None,
            () = tokio::time::sleep_until(wake) => {
                if busy || c.in_flight.load(Ordering::Acquire) > 0 {
                    // A request's own timeouts bound it; look again a period later.
                    if closing.is_some() {
                        closing = Some(Instant::now() + limit);
                    } else {
                        c.touch();
                    }
                    continue;
                }
                if closing.is_some() {
                    return None;
                }
                if c.idle_since() + limit > Instant::now() {
                    continue; // bytes arrived meanwhile
                }
                closed(if c.served.load(Ordering::Relaxed) { "idle" } else { "head_timeout" });
                close(conn.as_mut());
                closing = Some(Instant::now() + CLOSE_GRACE);
            }
            () = c.evict.notified(), if closing.is_none() => {
                close(conn.as_mut());
                closing = Some(Instant::now() + CLOSE_GRACE);
            }
            () = &mut shutdown, if closing.is_none() => {
                close(conn.as_mut());
                // The server's drain deadline decides from here (kill).
                closing = Some(Instant::now() + Duration::from_secs(u64::from(u32::MAX)));
            }
        }
    }
}

/// A socket that marks its connection active on every byte read.
pub(crate) struct Tracked<T> {
    inner: T,
    conn: Arc<Conn>,
}

impl<T> Tracked<T> {
    pub(crate) fn new(inner: T, conn: Arc<Conn>) -> Self {
        Self { inner, conn }
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for Tracked<T> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let r = Pin::new(&mut self.inner).poll_read(cx, buf);
        if matches!(r, Poll::Ready(Ok(()))) && buf.filled().len() > before {
            self.conn.touch();
        }
        r
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for Tracked<T> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}

/// The client address of a request's connection (in its extensions).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Peer(pub std::net::IpAddr);

/// Failed attempts counted per client address in fixed windows (the portal's sign-in):
/// bounded in memory, one short lock per failure or check.
pub(crate) struct Attempts {
    max: u32,
    window: Duration,
    seen: Mutex<std::collections::HashMap<std::net::IpAddr, (u32, Instant)>>,
}

/// Addresses tracked at most; past it, expired windows are dropped (else all of them).
const MAX_ADDRESSES: usize = 65_536;

impl Attempts {
    pub(crate) fn new(max: u32, window: Duration) -> Self {
        Self {
            max,
            window,
            seen: Mutex::new(std::collections::HashMap::new()),
        }
    }

    /// How long `ip` must wait, when it has used up its attempts.
    pub(crate) fn blocked(&self, ip: std::net::IpAddr) -> Option<Duration> {
        let seen = self.seen.lock().ok()?;
        let (n, since) = seen.get(&ip)?;
        let left = self.window.checked_sub(since.elapsed())?;
        (*n >= self.max).then_some(left)
    }

    /// Counts a failed attempt from `ip`.
    pub(crate) fn failed(&self, ip: std::net::IpAddr) {
        let Ok(mut seen) = self.seen.lock() else {
            return;
        };
        if seen.len() >= MAX_ADDRESSES {
            let window = self.window;
            seen.retain(|_, (_, since)| since.elapsed() < window);
            if seen.len() >= MAX_ADDRESSES {
                seen.clear();
            }
        }
        let e = seen.entry(ip).or_insert((0, Instant::now()));
        if e.1.elapsed() >= self.window {
            *e = (0, Instant::now());
        }
        e.0 = e.0.saturating_add(1);
    }

    /// A success clears the address's count.
    pub(crate) fn succeeded(&self, ip: std::net::IpAddr) {
        if let Ok(mut seen) = self.seen.lock() {
            seen.remove(&ip);
        }
    }
}

/// Raises the soft limit of open files to the hard limit; the limit in force.
pub(crate) fn raise_nofile_limit() -> Option<u64> {
    let before = rlimit::getrlimit(rlimit::Resource::NOFILE)
        .ok()
        .map(|(s, _)| s);
    match rlimit::increase_nofile_limit(u64::MAX) {
        Ok(now) => {
            if before.is_some_and(|b| b < now) {
                tracing::info!(
                    from = before.unwrap_or(0),
                    to = now,
                    "raised the open-files limit (RLIMIT_NOFILE) to its hard limit"
                );
            }
            Some(now)
        }
        Err(e) => {
            tracing::warn!(error = %e, "could not raise the open-files limit");
            before
        }
    }
}

/// `max_connections` when the config sets none: half the open-files limit after a
/// reserve (the other half is for upstream connections, the database and Redis).
pub(crate) fn default_max_connections(nofile: Option<u64>) -> usize {
    let n = nofile.unwrap_or(1024).min(4 * 1024 * 1024);
    usize::try_from(n.saturating_sub(128) / 2)
        .unwrap_or(usize::MAX)
        .max(64)
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Idle {
        closed: Arc<AtomicBool>,
    }

    impl Future for Idle {
        type Output = ();
        fn poll(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<()> {
            if self.closed.load(Ordering::Relaxed) {
                Poll::Ready(())
            } else {
                Poll::Pending
            }
        }
    }

    fn close(i: Pin<&mut Idle>) {
        i.closed.store(true, Ordering::Relaxed);
    }

    fn reap() -> Reap {
        Reap {
            head: Duration::from_secs(10),
            idle: Duration::from_secs(60),
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_silent_connection_is_closed_after_the_head_timeout() {
        let conns = Arc::new(Conns::default());
        let Admit::Serve(c, _reg) = conns.admit(10) else {
            panic!("admitted")
        };
        let closed = Arc::new(AtomicBool::new(false));
        let start = Instant::now();
        let conn = Idle {
            closed: Arc::clone(&closed),
        };
        drive(
            conn,
            close,
            c,
            reap(),
            std::future::pending(),
            std::future::pending(),
        )
        .await;
        assert!(closed.load(Ordering::Relaxed));
        assert_eq!(start.elapsed().as_secs(), 10);
    }

    #[tokio::test(start_paused = true)]
    async fn a_busy_connection_is_left_alone_and_reaped_once_idle() {
        let conns = Arc::new(Conns::default());
        let Admit::Serve(c, _reg) = conns.admit(10) else {
            panic!("admitted")
        };
        let closed = Arc::new(AtomicBool::new(false));
        let guard = c.begin();
        let start = Instant::now();
        let t = tokio::spawn(drive(
            Idle {
                closed: Arc::clone(&closed),
            },
            close,
            Arc::clone(&c),
            reap(),
            std::future::pending(),
            std::future::pending(),
        ));
        tokio::time::sleep(Duration::from_secs(300)).await;
        assert!(!closed.load(Ordering::Relaxed), "in flight for 300 s: kept");
        drop(guard);
        t.await.expect("joined");
        assert!(closed.load(Ordering::Relaxed));
        // Reaped one idle period after the request ended (give or take a period of checks).
        let secs = start.elapsed().as_secs();
        assert!((360..=420).contains(&secs), "{secs}");
    }

    #[test]
    fn at_the_cap_the_longest_idle_connection_makes_room() {
        let conns = Arc::new(Conns::default());
        let mut held = Vec::new();
        for _ in 0..3 {
            match conns.admit(3) {
                Admit::Serve(c, r) => held.push((c, r)),
                Admit::Refuse | Admit::Wait => panic!("under the cap"),
            }
        }
        let _busy = [held[0].0.begin(), held[1].0.begin(), held[2].0.begin()];
        assert!(matches!(conns.admit(3), Admit::Refuse), "all busy: refused");
        drop(_busy);
        assert!(
            matches!(conns.admit(3), Admit::Serve(..)),
            "idle ones make room"
        );
        assert_eq!(
            conns.count(),
            3,
            "the refused one never counted; the new one did"
        );
    }
}
