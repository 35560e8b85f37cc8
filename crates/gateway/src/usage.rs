//! The usage row and what carries it: the nouns the ledger, limits, metrics, store and
//! the request path share (a leaf: it imports none of them).

use std::sync::{Arc, Mutex};
use std::time::Duration;

use jusinfer_wire::chat::{Cost, Usage};
use tokio::sync::oneshot;

/// How long a response waits for its row to be committed (`ledger_sync`) before it goes
/// on regardless (a store and a disk that both fail must not hold clients for ever).
pub(crate) const COMMIT_WAIT: Duration = Duration::from_secs(10);

/// A request's rows being committed (`ledger_sync`): each row recorded with it leaves an
/// acknowledgement to wait for. Cheap to clone; not part of the row's value.
#[derive(Clone, Default)]
pub struct Commit(Arc<Mutex<Vec<oneshot::Receiver<()>>>>);

impl Commit {
    pub(crate) fn push(&self, ack: oneshot::Receiver<()>) {
        if let Ok(mut v) = self.0.lock() {
            v.push(ack);
        }
    }

    /// Waits until every row recorded with this commit so far is in the store or the
    /// spill file (at once when there is none; at most [`COMMIT_WAIT`]). A row the ledger
    /// dropped (a full queue) does not hold the response.
    pub async fn wait(&self) {
        let acks = match self.0.lock() {
            Ok(mut v) => std::mem::take(&mut *v),
            Err(_) => return,
        };
        if acks.is_empty() {
            return;
        }
        let until = tokio::time::Instant::now() + COMMIT_WAIT;
        for ack in acks {
            if tokio::time::timeout_at(until, ack).await.is_err() {
                tracing::warn!(
                    "usage ledger: a row was not committed within the wait; the response goes on"
                );
                return;
            }
        }
    }
}

impl std::fmt::Debug for Commit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Commit")
    }
}

impl PartialEq for Commit {
    /// Rows compare by their columns alone.
    fn eq(&self, _: &Self) -> bool {
        true
    }
}

/// One row of the ledger (§6).
#[derive(Debug, Clone, Default, serde::Serialize, serde::Deserialize, PartialEq)]
pub struct UsageRecord {
    /// Unique per row (set by [`Ledger::record`]): a batch retried after an unacknowledged
    /// commit, or a spill file replayed twice, cannot store the row twice.
    #[serde(default)]
    pub row_id: String,
    /// Unix milliseconds.
    pub ts_ms: i64,
    pub request_id: String,
    pub key_id: Option<String>,
    pub endpoint: String,
    pub model: String,
    pub provider: Option<String>,
    pub upstream_model: Option<String>,
    pub status: u16,
    pub prompt_tokens: u64,
    pub completion_tokens: u64,
    pub cached_tokens: u64,
    pub reasoning_tokens: u64,
    pub cost_usd: Option<f64>,
    pub latency_ms: u64,
    pub ttft_ms: Option<u64>,
    pub attempts: u32,
    pub stream: bool,
    pub error_type: Option<String>,
    /// The exact response cache: `hit` (answered from it, cost 0) or `miss` (asked it,
    /// then the upstream); `None`: not cached.
    #[serde(default)]
    pub cache: Option<String>,
    /// What a hit would have cost from the upstream.
    #[serde(default)]
    pub saved_usd: Option<f64>,
    /// The model resolved to a route (for metric labels: unresolved names are the
    /// client's free text). Not stored.
    #[serde(skip)]
    pub routed: bool,
    /// Set under `ledger_sync`: the writer acknowledges the row through it. Not stored.
    #[serde(skip)]
    pub commit: Option<Commit>,
    /// The answering deployment's price in the catalog the request was routed with: what
    /// prices a row that came without a cost (a reload may have changed the catalog since).
    /// Not stored.
    #[serde(skip)]
    pub price: Option<jusinfer_translate::pricing::Price>,
    /// The request's span (`telemetry`, tracing on): ended when the row is recorded.
    #[serde(skip)]
    pub trace: Option<crate::telemetry::Span>,
}

impl UsageRecord {
    /// Fills the token columns (and the cost, when `usage` carries one).
    pub fn set_usage(&mut self, u: &Usage) {
        self.prompt_tokens = u.prompt_tokens;
        self.completion_tokens = u.completion_tokens;
        self.cached_tokens = u
            .prompt_tokens_details
            .as_ref()
            .map_or(0, |d| d.cached_tokens);
        self.reasoning_tokens = u
            .completion_tokens_details
            .as_ref()
            .map_or(0, |d| d.reasoning_tokens);
        if let Cost::Usd(c) = u.cost {
            self.cost_usd = Some(c);
        }
    }

    /// The token columns as OpenAI usage (no cost): the inverse of [`Self::set_usage`].
    pub fn usage(&self) -> Usage {
        Usage {
            prompt_tokens: self.prompt_tokens,
            completion_tokens: self.completion_tokens,
            total_tokens: self.prompt_tokens.saturating_add(self.completion_tokens),
            prompt_tokens_details: (self.cached_tokens > 0).then(|| {
                jusinfer_wire::chat::PromptTokensDetails {
                    cached_tokens: self.cached_tokens,
                    ..Default::default()
                }
            }),
            completion_tokens_details: (self.reasoning_tokens > 0).then(|| {
                jusinfer_wire::chat::CompletionTokensDetails {
                    reasoning_tokens: self.reasoning_tokens,
                    ..Default::default()
                }
            }),
            cost: Cost::Absent,
        }
    }
}

/// The usage a non-streaming response carried, left in its extensions for the record stage.
#[derive(Clone, Debug)]
pub(crate) struct UsageExt(pub Usage);

/// A whole answer as the client gets it, left in the response's extensions for the record
/// stage to put on the trace (tracing on only): its bytes, or what was read of it already.
#[derive(Clone, Debug)]
pub(crate) enum AnswerExt {
    Body(bytes::Bytes),
    Read(Box<jusinfer_translate::answer::Answer>),
}

/// An id unique across instances and restarts: a random prefix per process and a counter.
pub(crate) fn unique_id() -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    use std::sync::OnceLock;
    static PREFIX: OnceLock<String> = OnceLock::new();
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let prefix = PREFIX.get_or_init(|| {
        use rand::distributions::{Alphanumeric, DistString};
        Alphanumeric.sample_string(&mut rand::rngs::OsRng, 12)
    });
    format!("{prefix}-{}", NEXT.fetch_add(1, Ordering::Relaxed))
}
