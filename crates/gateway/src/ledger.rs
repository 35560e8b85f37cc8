//! The usage ledger: one row per request, written off the request path.
//!
//! The record stage hands a [`UsageRecord`] to [`Ledger::record`], which never waits: it
//! puts the row into a bounded channel (a full channel drops the row and says so in the
//! log). One background task drains the channel in batches (after at most [`LINGER`]) into
//! the store; a batch the store does not take is appended to a spill file at once and
//! fsync'd, and the spill file is replayed as soon as the store takes rows again (and at
//! the next start). So a SIGKILL loses at most the rows of the last [`LINGER`] and the batch
//! being written; a store outage loses nothing. [`Ledger::flush`] (called on shutdown)
//! writes everything still held, or spills it.
//!
//! With `ledger_sync` on, a row carries its request's [`Commit`]: the writer acknowledges
//! it once it is in the store or in the fsync'd spill file, without lingering, and the
//! response's last bytes wait for that (the edge for whole bodies, the stream loop before a
//! stream's final frames), so a SIGKILL cannot lose the row of a response a client has
//! whole.
//!
//! Streams are recorded through a [`Tap`]: the handler's half (provider, attempts, status)
//! and the stream's half (usage, time to first token, how it ended) meet in the tap, and
//! whichever comes second writes the row — also when the client disconnects mid-stream.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::{mpsc, oneshot};

use crate::limits::Hold;
use crate::pricing::Prices;
use crate::store::Store;
use crate::usage::{unique_id, Commit, UsageRecord};
use jusinfer_wire::chat::Usage;

/// Rows waiting for the writer before `record` starts dropping them.
pub(crate) const LEDGER_CHANNEL_CAPACITY: usize = 65_536;
/// Rows written in one transaction.
pub(crate) const BATCH_ROWS: usize = 1_000;
/// Rows kept in memory while neither the store nor the spill file takes them.
const MAX_HELD_ROWS: usize = 50_000;
/// How long the writer gathers rows before writing a batch (fewer, larger transactions).
const LINGER: Duration = Duration::from_millis(100);
/// Pause between write attempts while the store is down.
const RETRY_EVERY: Duration = Duration::from_millis(500);
/// How long a write may take while the store is known to be down (a probe).
const PROBE_TIMEOUT: Duration = Duration::from_millis(300);
enum Msg {
    /// A row, and where to acknowledge it once committed (`ledger_sync`).
    Row(Box<UsageRecord>, Option<oneshot::Sender<()>>),
    Flush(oneshot::Sender<()>),
}

/// The sending side, cheap to clone.
#[derive(Clone)]
pub(crate) struct Ledger {
    tx: mpsc::Sender<Msg>,
    /// Swapped by a config reload (`Ledger::set_prices`).
    prices: Arc<arc_swap::ArcSwap<Prices>>,
}

impl Ledger {
    /// Starts the writer (replaying a spill file left by an earlier run first).
    pub(crate) fn start(
        store: Store,
        spill: PathBuf,
        prices: Arc<Prices>,
    ) -> (Self, tokio::task::JoinHandle<()>) {
        let (tx, rx) = mpsc::channel(LEDGER_CHANNEL_CAPACITY);
        let handle = tokio::spawn(writer(store, spill, rx));
        let prices = Arc::new(arc_swap::ArcSwap::new(prices));
        (Self { tx, prices }, handle)
    }

    /// Prices rows written from now on with `prices` (a config reload).
    pub(crate) fn set_prices(&self, prices: Arc<Prices>) {
        self.prices.store(prices);
    }

    /// Queues a row; never waits. Prices the row when it has tokens but no cost yet. A row
    /// with a [`Commit`] leaves an acknowledgement in it.
    pub(crate) fn record(&self, mut r: UsageRecord) {
        self.price(&mut r);
        crate::metrics::get().observe(&r);
        crate::telemetry::end_request(&r);
        r.trace = None;
        if r.row_id.is_empty() {
            r.row_id = unique_id();
        }
        let ack = r.commit.take().map(|c| {
            let (tx, rx) = oneshot::channel();
            c.push(rx);
            tx
        });
        if self.tx.try_send(Msg::Row(Box::new(r), ack)).is_err() {
            tracing::warn!("usage ledger queue is full: a usage row was dropped");
        }
    }

    /// Sets the row's cost from the catalog when it has tokens but no cost yet.
    pub(crate) fn price(&self, r: &mut UsageRecord) {
        if r.cost_usd.is_none() && r.prompt_tokens.saturating_add(r.completion_tokens) > 0 {
            if let (Some(p), Some(m)) = (r.provider.as_deref(), r.upstream_model.as_deref()) {
                let price = r.price.or_else(|| self.prices.load().get(p, m));
                r.cost_usd =
                    price.map(|price| jusinfer_translate::pricing::cost(&price, &r.usage()));
            }
        }
    }

    /// Writes (or spills) every row queued so far.
    pub(crate) async fn flush(&self, within: Duration) {
        let (ack, done) = oneshot::channel();
        if self.tx.send(Msg::Flush(ack)).await.is_ok() {
            let _ = tokio::time::timeout(within, done).await;
        }
    }
}

async fn writer(store: Store, spill: PathBuf, mut rx: mpsc::Receiver<Msg>) {
    let mut w = Writer {
        store,
        spill_pending: tokio::fs::metadata(&spill).await.is_ok(),
        spill,
        held: Vec::new(),
        acks: Vec::new(),
        down_until: None,
    };
    w.replay().await;
    loop {
        // Rows on disk are replayed once the store answers again, also without traffic.
        let msg = if w.held.is_empty() && !w.spill_pending {
            rx.recv().await
        } else {
            match tokio::time::timeout(RETRY_EVERY, rx.recv()).await {
                Ok(m) => m,
                Err(_) => {
                    w.write(false).await;
                    continue;
                }
            }
        };
        match msg {
            None => {
                w.write(true).await;
                return;
            }
            Some(Msg::Row(r, ack)) => {
                // Gather what arrives within LINGER, up to a batch, then write once. A row
                // someone waits for (`ledger_sync`) does not linger: the batch takes what is
                // queued already (rows arriving meanwhile make the next batch).
                let mut until = tokio::time::Instant::now() + LINGER;
                w.push(*r, ack, &mut until);
                let mut flush_ack = None;
                while w.held.len() < BATCH_ROWS {
                    match tokio::time::timeout_at(until, rx.recv()).await {
                        Ok(Some(Msg::Row(r, ack))) => w.push(*r, ack, &mut until),
                        Ok(Some(Msg::Flush(ack))) => {
                            flush_ack = Some(ack);
                            break;
                        }
                        Ok(None) | Err(_) => break,
                    }
                }
                w.write(flush_ack.is_some()).await;
                if let Some(ack) = flush_ack {
                    let _ = ack.send(());
                }
            }
            Some(Msg::Flush(ack)) => {
                w.write(true).await;
                let _ = ack.send(());
            }
        }
    }
}

/// The writer task's state.
struct Writer {
    store: Store,
    spill: PathBuf,
    /// Rows not yet on disk or in the store (only while the spill file cannot be written).
    held: Vec<UsageRecord>,
    /// Acknowledgements of held rows, one slot per row (`held[i]` ↔ `acks[i]`), sent once
    /// they are committed.
    acks: Vec<Option<oneshot::Sender<()>>>,
    /// The spill file has rows to replay.
    spill_pending: bool,
    /// After a failed write the store is left alone until then: rows go to disk at once.
    down_until: Option<tokio::time::Instant>,
}

impl Writer {
    fn push(
        &mut self,
        r: UsageRecord,
        ack: Option<oneshot::Sender<()>>,
        until: &mut tokio::time::Instant,
    ) {
        self.held.push(r);
        if ack.is_some() {
            *until = (*until).min(tokio::time::Instant::now());
        }
        self.acks.push(ack);
    }

    /// The held rows are committed (store or spill file): tell whoever waits.
    fn committed(&mut self) {
        self.held.clear();
        for a in self.acks.drain(..).flatten() {
            let _ = a.send(());
        }
    }

    /// Writes the held rows to the store, or else to the spill file at once (fsync'd), so a
    /// crash while the store is down loses nothing that reached the writer. Replays the
    /// spill file once the store takes rows again.
    async fn write(&mut self, final_flush: bool) {
        let now = tokio::time::Instant::now();
        let store_down = self.down_until.is_some_and(|t| now < t) && !final_flush;
        if !store_down {
            if !self.held.is_empty() {
                // While the store is known to be down, a retry is a short probe: a store
                // that hangs must not keep rows waiting in memory (a crash would lose them).
                let insert = self.store.insert_usage(&self.held);
                let result = if self.down_until.is_some() {
                    tokio::time::timeout(PROBE_TIMEOUT, insert)
                        .await
                        .unwrap_or_else(|_| {
                            Err(crate::store::StoreError::timed_out("ledger probe"))
                        })
                } else {
                    insert.await
                };
                match result {
                    Ok(()) => {
                        self.committed();
                        self.down_until = None;
                    }
                    Err(e) => {
                        tracing::warn!(rows = self.held.len(), error = %e, "usage ledger: store unavailable, spilling rows to disk");
                        // From the failure on (an attempt can take the pool's whole
                        // acquire timeout): rows go straight to disk meanwhile.
                        self.down_until = Some(tokio::time::Instant::now() + RETRY_EVERY);
                    }
                }
            }
            // Also without new rows: a retry that is due replays the file (a probe first).
            if self.held.is_empty() && self.spill_pending {
                self.replay().await;
            }
        }
        if self.held.is_empty() {
            return;
        }
        match spill_rows(&self.spill, &self.held).await {
            Ok(()) => {
                self.committed();
                self.spill_pending = true;
            }
            Err(e) => {
                tracing::error!(error = %e, rows = self.held.len(), "usage ledger: cannot spill rows");
                if self.held.len() > MAX_HELD_ROWS {
                    let dropped = self.held.len() - MAX_HELD_ROWS;
                    self.held.drain(..dropped);
                    // Their waiters see the row go (a closed channel), not a commit.
                    self.acks.drain(..dropped.min(self.acks.len()));
                    tracing::error!(
                        rows = dropped,
                        "usage ledger: store and disk both failing, rows dropped"
                    );
                }
            }
        }
    }

    /// Inserts the spill file's rows in batches (constant memory) and removes it when all
    /// are in; a failure keeps it (rows already inserted are skipped next time by row id).
    async fn replay(&mut self) {
        use tokio::io::AsyncBufReadExt;
        let Ok(f) = tokio::fs::File::open(&self.spill).await else {
            self.spill_pending = false;
            return;
        };
        let mut lines = tokio::io::BufReader::new(f).lines();
        let mut batch = Vec::with_capacity(BATCH_ROWS);
        let mut total = 0usize;
        loop {
            let line = match lines.next_line().await {
                Ok(l) => l,
                Err(e) => {
                    tracing::warn!(error = %e, "usage ledger: spill file unreadable; kept");
                    return;
                }
            };
            let end = line.is_none();
            if let Some(mut r) = line.and_then(|l| serde_json::from_str::<UsageRecord>(&l).ok()) {
                // Rows spilled before rows had ids get one (else they would collide).
                if r.row_id.is_empty() {
                    r.row_id = unique_id();
                }
                batch.push(r);
            }
            if batch.len() >= BATCH_ROWS || (end && !batch.is_empty()) {
                let insert = self.store.insert_usage(&batch);
                let result = if self.down_until.is_some() {
                    tokio::time::timeout(PROBE_TIMEOUT, insert)
                        .await
                        .unwrap_or_else(|_| Err(crate::store::StoreError::timed_out("replay")))
                } else {
                    insert.await
                };
                if let Err(e) = result {
                    tracing::warn!(error = %e, "usage ledger: spilled rows kept for later");
                    self.down_until = Some(tokio::time::Instant::now() + RETRY_EVERY);
                    return;
                }
                self.down_until = None;
                total += batch.len();
                batch.clear();
            }
            if end {
                break;
            }
        }
        let _ = tokio::fs::remove_file(&self.spill).await;
        self.spill_pending = false;
        tracing::info!(rows = total, "usage ledger: replayed spilled rows");
    }
}

async fn spill_rows(path: &PathBuf, rows: &[UsageRecord]) -> std::io::Result<()> {
    use tokio::io::AsyncWriteExt;
    let mut text = String::new();
    for r in rows {
        if let Ok(line) = serde_json::to_string(r) {
            text.push_str(&line);
            text.push('\n');
        }
    }
    let mut f = tokio::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .await?;
    f.write_all(text.as_bytes()).await?;
    f.sync_data().await?;
    tracing::warn!(rows = rows.len(), path = %path.display(), "usage ledger: rows spilled to disk");
    Ok(())
}

/// Where the handler's and the stream's halves of one request's row meet, with the
/// request's [`Hold`] on its key's limits (settled with the real usage when the row is
/// written). A tap dropped before its row was written (the client left while the request
/// waited on the upstream) still writes it, as status 499.
#[derive(Clone)]
pub(crate) struct Tap {
    inner: Arc<Mutex<TapState>>,
    started: Instant,
}

struct TapState {
    record: UsageRecord,
    handler_done: bool,
    stream_done: bool,
    streaming: bool,
    written: bool,
    ledger: Ledger,
    hold: Option<Hold>,
    started: Instant,
    /// The request's prompt estimate, for a stream the client left before its usage came.
    prompt_estimate: u64,
}

impl TapState {
    fn write(&mut self) {
        if self.written {
            return;
        }
        self.written = true;
        let mut r = self.record.clone();
        if r.latency_ms == 0 {
            r.latency_ms = self.started.elapsed().as_millis() as u64;
        }
        self.ledger.price(&mut r);
        if let Some(h) = self.hold.take() {
            let tokens = r.prompt_tokens.saturating_add(r.completion_tokens);
            if r.cache.as_deref() == Some("hit") {
                // Answered from the cache: no upstream tokens, no cost (RPM counted it).
                h.settle(0, 0.0);
            } else if tokens > 0 || r.status >= 400 {
                h.settle(tokens, r.cost_usd.unwrap_or(0.0));
            }
            // A success without usage (an upstream that reports none) keeps its token
            // estimate: dropping the hold settles it so.
        }
        self.ledger.record(r);
    }
}

impl Drop for TapState {
    fn drop(&mut self) {
        if !self.written {
            if !self.handler_done {
                self.record.status = 499;
                self.record.error_type = Some("client_disconnected".to_owned());
            }
            self.write();
        }
    }
}

impl Tap {
    pub(crate) fn new(
        ledger: Ledger,
        record: UsageRecord,
        started: Instant,
        hold: Option<Hold>,
        prompt_estimate: u64,
    ) -> Self {
        Self {
            inner: Arc::new(Mutex::new(TapState {
                record,
                handler_done: false,
                stream_done: false,
                streaming: false,
                written: false,
                ledger,
                hold,
                started,
                prompt_estimate,
            })),
            started,
        }
    }

    /// The usage the row holds so far, in OpenAI terms.
    pub(crate) fn usage(&self) -> Usage {
        self.inner
            .lock()
            .map(|s| s.record.usage())
            .unwrap_or_default()
    }

    /// The request's [`Commit`] (`ledger_sync`), to wait for once the row is written.
    pub(crate) fn commit(&self) -> Option<Commit> {
        self.inner.lock().ok().and_then(|s| s.record.commit.clone())
    }

    /// Tracing on: a reader of the stream the client gets (the row's span says the dialect).
    pub(crate) fn sniffer(&self) -> Option<jusinfer_translate::answer::Sniffer> {
        if !crate::telemetry::enabled() {
            return None;
        }
        let s = self.inner.lock().ok()?;
        crate::telemetry::sniffer(s.record.trace.as_ref()?)
    }

    /// A stream has been handed to the client: the row waits for its end.
    pub(crate) fn attach_stream(&self) -> StreamTap {
        let ttft = self.started.elapsed().as_millis() as u64;
        if let Ok(mut s) = self.inner.lock() {
            s.streaming = true;
            s.record.ttft_ms = Some(ttft);
        }
        StreamTap {
            tap: Some(self.clone()),
        }
    }

    /// The handler's half: what the attempt loop ended with.
    pub(crate) fn finish_handler(&self, fill: impl FnOnce(&mut UsageRecord)) {
        if let Ok(mut s) = self.inner.lock() {
            fill(&mut s.record);
            s.handler_done = true;
            if !s.streaming || s.stream_done {
                s.write();
            }
        }
    }

    fn finish_stream(&self, usage: Option<&Usage>, error: Option<&str>) {
        let latency = self.started.elapsed().as_millis() as u64;
        if let Ok(mut s) = self.inner.lock() {
            if let Some(u) = usage {
                s.record.set_usage(u);
                if error == Some("client_disconnected") && s.record.prompt_tokens == 0 {
                    s.record.prompt_tokens = s.prompt_estimate;
                }
            }
            if let Some(e) = error {
                s.record.error_type = Some(e.to_owned());
            }
            s.record.latency_ms = latency;
            s.stream_done = true;
            if s.handler_done {
                s.write();
            }
        }
    }
}

/// The stream's half of a [`Tap`]; dropping it unfinished (the client went away) still
/// records the row, with the usage seen so far.
pub(crate) struct StreamTap {
    tap: Option<Tap>,
}

impl StreamTap {
    /// What the stream's answer said, on the request's spans.
    pub(crate) fn answered(&self, a: &jusinfer_translate::answer::Answer) {
        let Some(t) = &self.tap else { return };
        if let Ok(mut s) = t.inner.lock() {
            if let Some(span) = s.record.trace.as_mut() {
                crate::telemetry::answered(span, a);
            }
        }
    }

    pub(crate) fn finish(&mut self, usage: Option<&Usage>, error: Option<&str>) {
        if let Some(t) = self.tap.take() {
            t.finish_stream(usage, error);
        }
    }
}

impl Drop for StreamTap {
    fn drop(&mut self) {
        if let Some(t) = self.tap.take() {
            t.finish_stream(None, Some("client_disconnected"));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(i: usize) -> UsageRecord {
        UsageRecord {
            request_id: format!("req_{i}"),
            endpoint: "/v1/chat/completions".into(),
            model: "m".into(),
            status: 200,
            ..UsageRecord::default()
        }
    }

    #[tokio::test]
    async fn rows_survive_a_store_outage_through_the_spill_file() {
        let dir = std::env::temp_dir().join(format!("jinf-ledger-{}", std::process::id()));
        let _ = std::fs::create_dir_all(&dir);
        let db = dir.join("l.db");
        let spill = dir.join("l.db.usage-spill.jsonl");
        let _ = std::fs::remove_file(&db);
        let _ = std::fs::remove_file(&spill);
        let url = format!("sqlite://{}", db.display());
        let store = Store::open(&url).await.expect("open");
        let prices = Arc::new(Prices::default());
        // The store "goes away": its table is gone, so every write fails.
        store
            .execute_for_tests("ALTER TABLE usage RENAME TO usage_away")
            .await
            .expect("rename");
        let (ledger, _w) = Ledger::start(store.clone(), spill.clone(), Arc::clone(&prices));
        for i in 0..5 {
            ledger.record(row(i));
        }
        ledger.flush(Duration::from_secs(5)).await;
        let spilled =
            std::fs::read_to_string(&spill).expect("spill file written at the final flush");
        assert_eq!(spilled.lines().count(), 5);
        // The store comes back; the next start replays the file and removes it.
        store
            .execute_for_tests("ALTER TABLE usage_away RENAME TO usage")
            .await
            .expect("rename back");
        let (ledger2, _w2) = Ledger::start(store.clone(), spill.clone(), prices);
        ledger2.flush(Duration::from_secs(5)).await;
        assert!(!spill.exists(), "replayed and removed");
        let n = store.count_usage_for_tests().await.expect("count");
        assert_eq!(n, 5);
    }
}
