//! The settle task: settles and lease returns from every request, sent to Redis in
//! pipelines of up to [`SETTLE_BATCH`] (one `FINISH` script call each), flushed at
//! shutdown.

use std::collections::HashMap;
use std::time::Duration;

use tokio::sync::mpsc;

use super::lease::LeaseReturn;
use super::{keys, FINISH, HELPERS};
use crate::limits::Settle;
use crate::redis_conn::Shared;

/// Settles waiting for the settle task.
pub(super) const SETTLE_QUEUE: usize = 65_536;
/// Settles sent in one pipeline.
const SETTLE_BATCH: usize = 512;
/// How long the settle task gathers messages before sending them.
const SETTLE_LINGER: Duration = Duration::from_millis(2);

/// What the settle task sends.
pub(super) enum Msg {
    Settle(Settle),
    Return(LeaseReturn),
    /// Acknowledged once everything queued before it is sent to Redis (shutdown).
    Flush(tokio::sync::oneshot::Sender<()>),
}

pub(super) async fn settler(shared: Shared, mut rx: mpsc::Receiver<Msg>) {
    let script = redis::Script::new(&format!("{HELPERS}{FINISH}"));
    let mut batch = Vec::with_capacity(SETTLE_BATCH);
    let mut rest = Vec::new();
    let mut flushed = Vec::new();
    // The script is loaded once, and again after Redis forgot it (restart, SCRIPT FLUSH).
    let mut loaded = false;
    while rx.recv_many(&mut batch, SETTLE_BATCH).await > 0 {
        let mut conn = shared.get();
        // Gather a little longer: fewer, larger pipelines.
        if batch.len() < SETTLE_BATCH {
            tokio::time::sleep(SETTLE_LINGER).await;
            while batch.len() < SETTLE_BATCH {
                match rx.try_recv() {
                    Ok(m) => batch.push(m),
                    Err(_) => break,
                }
            }
        }
        let mut pipe = redis::pipe();
        // Requests admitted from one lease share its hold and its second: their settles
        // are summed (corrections up and down apart), one call per lease per batch.
        let mut merged: HashMap<(String, String, u64, bool, bool, i64), Merged> = HashMap::new();
        for m in batch.drain(..) {
            match m {
                Msg::Settle(s) => {
                    let (used, held) = (s.tokens_used, s.tokens_held);
                    let m = merged
                        .entry((
                            s.key_id.clone(),
                            s.hold_id.clone(),
                            s.admitted_s,
                            s.tpm,
                            s.budget,
                            s.budget_since,
                        ))
                        .or_insert_with(|| Merged {
                            up: 0,
                            down: 0,
                            cost: 0.0,
                            cost_held: 0.0,
                        });
                    m.up = m.up.saturating_add(used.saturating_sub(held));
                    m.down = m.down.saturating_add(held.saturating_sub(used));
                    m.cost += s.cost;
                    m.cost_held += s.cost_held;
                }
                Msg::Flush(ack) => flushed.push(ack),
                m => rest.push(m),
            }
        }
        for ((key_id, hold_id, asec, tpm, budget, since), m) in merged {
            pipe.cmd("EVALSHA").arg(script.get_hash()).arg(6);
            for key in &keys(&key_id, since) {
                pipe.arg(key);
            }
            pipe.arg("s")
                .arg(m.up)
                .arg(m.down)
                .arg(asec)
                .arg(m.cost)
                .arg(&hold_id)
                .arg(m.cost_held)
                .arg(if tpm { "1" } else { "0" })
                .arg(if budget { "1" } else { "0" })
                .ignore();
        }
        for m in rest.drain(..) {
            if let Msg::Return(r) = m {
                pipe.cmd("EVALSHA").arg(script.get_hash()).arg(6);
                // A lease's return touches its window and holds, never a spend.
                for key in &keys(&r.key_id, i64::MIN) {
                    pipe.arg(key);
                }
                pipe.arg("r")
                    .arg(r.sec)
                    .arg(r.requests)
                    .arg(r.tokens)
                    .arg(&r.hold_id)
                    .arg(r.cost)
                    .ignore();
            }
        }
        // A batch is sent only with the script loaded: every call in it finds the script,
        // or (Redis forgot it meanwhile) none does and the batch is sent again whole.
        for _ in 0..2 {
            if !loaded {
                match script.prepare_invoke().load_async(&mut conn).await {
                    Ok(_) => loaded = true,
                    Err(e) => {
                        tracing::warn!(error = %e, "redis settle failed; holds expire on their own");
                        break;
                    }
                }
            }
            match pipe.query_async::<()>(&mut conn).await {
                Ok(()) => break,
                Err(e) if e.kind() == redis::ErrorKind::NoScriptError => loaded = false,
                Err(e) => {
                    tracing::warn!(error = %e, "redis settle failed; holds expire on their own");
                    break;
                }
            }
        }
        for ack in flushed.drain(..) {
            let _ = ack.send(());
        }
    }
}

/// Settles of one hold and second, summed.
struct Merged {
    up: u64,
    down: u64,
    cost: f64,
    cost_held: f64,
}
