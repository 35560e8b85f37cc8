//! The gateway's life cycle and its counted places: the drain deadline's signals, and
//! the gates that cap requests in flight (globally and per key).

use std::future::Future;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use tokio::sync::watch;

/// The signals of the drain deadline, shared by every request and connection: `cutoff`
/// asks what still runs to end with an error; `kill` (a grace period later) drops the
/// connections that could not even take that (a client that stopped reading).
#[derive(Clone)]
pub(crate) struct Lifecycle {
    cutoff: Arc<watch::Sender<bool>>,
    pub(crate) kill: Arc<watch::Sender<bool>>,
}

impl Default for Lifecycle {
    fn default() -> Self {
        Self {
            cutoff: Arc::new(watch::channel(false).0),
            kill: Arc::new(watch::channel(false).0),
        }
    }
}

pub(crate) fn fired(tx: &watch::Sender<bool>) -> impl Future<Output = ()> + Send + 'static {
    let mut rx = tx.subscribe();
    async move {
        if rx.wait_for(|v| *v).await.is_err() {
            // The sender lives as long as the state: never fired then.
            std::future::pending::<()>().await;
        }
    }
}

impl Lifecycle {
    /// Ends what is still running (the drain deadline passed).
    pub(crate) fn cut_off(&self) {
        self.cutoff.send_replace(true);
    }

    /// Resolves at the cut-off.
    pub(crate) fn cutoff(&self) -> impl Future<Output = ()> + Send + 'static {
        fired(&self.cutoff)
    }
}

/// A count of requests in flight with a cap.
#[derive(Clone, Default)]
pub(crate) struct Gate(Arc<AtomicUsize>);

/// One place in a [`Gate`]; given back when dropped.
pub(crate) struct Slot {
    count: Arc<AtomicUsize>,
    gauge: bool,
}

impl Gate {
    /// A slot, unless `max` are taken. `gauge`: the slot moves the in-flight gauge.
    pub(crate) fn try_take(&self, max: usize, gauge: bool) -> Option<Slot> {
        if self.0.fetch_add(1, Ordering::AcqRel) >= max {
            self.0.fetch_sub(1, Ordering::AcqRel);
            return None;
        }
        if gauge {
            crate::metrics::get().in_flight.inc();
        }
        Some(Slot {
            count: Arc::clone(&self.0),
            gauge,
        })
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.count.fetch_sub(1, Ordering::AcqRel);
        if self.gauge {
            crate::metrics::get().in_flight.dec();
        }
    }
}
