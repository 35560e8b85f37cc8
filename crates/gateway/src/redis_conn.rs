//! The one Redis connection the limits share, and its supervisor: redis-rs's
//! `ConnectionManager` can stay broken after a failed reconnect (redis-rs #1556), so while
//! Redis is marked down a task probes it and swaps in a new connection once one answers.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use redis::aio::ConnectionManager;

use crate::limits::now_ms;
use crate::limits::redis::REDIS_DOWN_MS;

/// The connection every Redis call uses, replaced by [`supervise`] when it stops
/// answering (redis-rs's `ConnectionManager` can stay broken after a failed reconnect).
#[derive(Clone)]
pub(crate) struct Shared(Arc<std::sync::RwLock<ConnectionManager>>);

impl Shared {
    pub(crate) fn new(c: ConnectionManager) -> Self {
        Self(Arc::new(std::sync::RwLock::new(c)))
    }

    pub(crate) fn get(&self) -> ConnectionManager {
        match self.0.read() {
            Ok(c) => c.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    pub(crate) fn replace(&self, c: ConnectionManager) {
        match self.0.write() {
            Ok(mut slot) => *slot = c,
            Err(poisoned) => *poisoned.into_inner() = c,
        }
    }
}

pub(crate) async fn new_manager(
    client: &redis::Client,
) -> Result<ConnectionManager, redis::RedisError> {
    let cfg = redis::aio::ConnectionManagerConfig::new()
        .set_connection_timeout(Duration::from_secs(2))
        .set_response_timeout(Duration::from_secs(2))
        .set_number_of_retries(2);
    ConnectionManager::new_with_config(client.clone(), cfg).await
}

/// How often the supervisor looks at a Redis that failed recently.
const SUPERVISE_EVERY: Duration = Duration::from_millis(500);
/// A probe's time limit.
const PROBE_TIMEOUT: Duration = Duration::from_millis(500);

/// While Redis is marked down (an admission failed), probes the shared connection with a
/// PING; when that fails, opens a new connection and, once one answers, swaps it in and
/// lets admissions use Redis again at once. So shared limits come back within about a
/// second of Redis, and no request waits on a dead connection meanwhile.
pub(crate) async fn supervise(
    down_until: std::sync::Weak<AtomicU64>,
    conn: Shared,
    client: redis::Client,
    what: &'static str,
) {
    loop {
        tokio::time::sleep(SUPERVISE_EVERY).await;
        let Some(down) = down_until.upgrade() else {
            return; // the limits were dropped
        };
        if down.load(Ordering::Relaxed) == 0 {
            continue;
        }
        let mut c = conn.get();
        let ping = tokio::time::timeout(
            PROBE_TIMEOUT,
            redis::cmd("PING").query_async::<String>(&mut c),
        )
        .await;
        if matches!(ping, Ok(Ok(_))) {
            down.store(0, Ordering::Relaxed);
            tracing::info!(what, "redis answers again");
            continue;
        }
        if let Ok(Ok(fresh)) = tokio::time::timeout(PROBE_TIMEOUT, new_manager(&client)).await {
            conn.replace(fresh);
            down.store(0, Ordering::Relaxed);
            tracing::info!(what, "redis answers again");
        } else {
            // Still down: admissions keep deciding in process without trying it.
            down.store(now_ms() + REDIS_DOWN_MS, Ordering::Relaxed);
        }
    }
}
