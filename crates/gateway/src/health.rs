//! What the gateway knows of each deployment's health: its circuit breaker, a moving
//! average of its latency (time to the first token for streams), and recent error rate.
//!
//! The breaker: `failures` consecutive failures within `window` open the circuit; an open
//! circuit is skipped for `cooldown`, then exactly one request (the half-open probe) is let
//! through: its success closes the circuit, its failure opens it for another cool-down. A
//! probe that ends without a verdict (the client left, or the request was the client's
//! fault) hands the probe to the next request at once.
//!
//! The closed state — the common case — costs one atomic load per request; the small lock
//! is taken only to record a failure or to move an open circuit on.

use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, AtomicU8, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use dashmap::DashMap;

use crate::config::Breaker;

const CLOSED: u8 = 0;
const OPEN: u8 = 1;
const HALF_OPEN: u8 = 2;

/// Weight of a new sample in the moving averages.
const ALPHA: f64 = 0.2;

/// The circuit's state, for `/admin/providers` and `/metrics`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum Circuit {
    Closed,
    Open,
    HalfOpen,
}

impl Circuit {
    /// The `jusinfer_circuit_state` gauge value.
    pub(crate) fn gauge(self) -> i64 {
        match self {
            Self::Closed => 0,
            Self::Open => 1,
            Self::HalfOpen => 2,
        }
    }

    /// As the API and the portal's CSS classes name it.
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Self::Closed => "closed",
            Self::Open => "open",
            Self::HalfOpen => "half_open",
        }
    }
}

#[derive(Debug)]
struct BreakerState {
    /// Consecutive failures counted since `window_start`.
    failures: u32,
    window_start: Instant,
    /// While open: when a probe may go.
    open_until: Instant,
    opened_times: u64,
}

/// One deployment's health.
#[derive(Debug)]
pub(crate) struct Health {
    pub provider: String,
    pub model: String,
    settings: Breaker,
    state: AtomicU8,
    /// Mirrors `BreakerState::failures`, so a success with no run to end takes no lock.
    run: AtomicU32,
    breaker: Mutex<BreakerState>,
    /// Moving average of the latency in microseconds as f64 bits; 0 = no sample yet.
    latency_us: AtomicU64,
    /// Moving average of "this attempt failed" (0..1) as f64 bits.
    error_rate: AtomicU64,
    pub successes: AtomicU64,
    pub failures: AtomicU64,
    /// Attempts let through, whatever came of them.
    tried: AtomicU64,
    /// A `provider/model` name not (yet) kept in its book: kept there on its first success
    /// (a name the client made up never takes a place).
    adopt: Option<std::sync::Weak<Book>>,
    /// A configured deployment: never evicted from its book.
    pinned: AtomicBool,
    /// When it was last handed out (ms since the book's start), for eviction.
    last_used: AtomicU64,
}

/// Leave to try a deployment; report how it went with [`Permit::success`] or
/// [`Permit::failure`]. Dropped without a report, it has no verdict.
pub(crate) struct Permit {
    health: Arc<Health>,
    probe: bool,
    done: bool,
}

impl Permit {
    #[cfg(test)]
    pub(crate) fn is_probe(&self) -> bool {
        self.probe
    }

    /// The deployment answered; `latency` is how long until its first token. `complete`:
    /// the answer is whole (a stream reports its end later, through
    /// [`Health::stream_completed`] or [`Health::stream_failed`]).
    pub(crate) fn success(mut self, latency: Duration, complete: bool) {
        self.done = true;
        self.health.on_success(latency, self.probe, complete);
        if let Some(book) = self
            .health
            .adopt
            .as_ref()
            .and_then(std::sync::Weak::upgrade)
        {
            book.keep(&self.health);
        }
    }

    /// The deployment failed in a way that counts against it.
    pub(crate) fn failure(mut self) {
        self.done = true;
        self.health.on_failure(self.probe);
    }

    /// The attempt says nothing of the deployment's health (the client's own error).
    pub(crate) fn neutral(self) {}
}

impl Drop for Permit {
    fn drop(&mut self) {
        if self.probe && !self.done {
            self.health.release_probe();
        }
    }
}

fn load_f64(a: &AtomicU64) -> f64 {
    f64::from_bits(a.load(Ordering::Relaxed))
}

fn blend(a: &AtomicU64, sample: f64) {
    // A lost update under a race only drops one sample from an average.
    let old = load_f64(a);
    let new = if old == 0.0 {
        sample
    } else {
        old + ALPHA * (sample - old)
    };
    a.store(new.to_bits(), Ordering::Relaxed);
}

impl Health {
    pub(crate) fn new(provider: &str, model: &str, settings: Breaker) -> Self {
        let now = Instant::now();
        Self {
            provider: provider.to_owned(),
            model: model.to_owned(),
            settings,
            state: AtomicU8::new(CLOSED),
            run: AtomicU32::new(0),
            breaker: Mutex::new(BreakerState {
                failures: 0,
                window_start: now,
                open_until: now,
                opened_times: 0,
            }),
            latency_us: AtomicU64::new(0),
            error_rate: AtomicU64::new(0),
            successes: AtomicU64::new(0),
            failures: AtomicU64::new(0),
            tried: AtomicU64::new(0),
            adopt: None,
            pinned: AtomicBool::new(false),
            last_used: AtomicU64::new(0),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BreakerState> {
        // A poisoned breaker still holds consistent numbers: every update is a plain store.
        self.breaker
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    pub(crate) fn circuit(&self) -> Circuit {
        match self.state.load(Ordering::Acquire) {
            CLOSED => Circuit::Closed,
            OPEN => Circuit::Open,
            _ => Circuit::HalfOpen,
        }
    }

    /// Leave to send a request, or `None` while the circuit is open (or its one probe is
    /// in flight).
    pub(crate) fn try_acquire(self: &Arc<Self>) -> Option<Permit> {
        self.tried.fetch_add(1, Ordering::Relaxed);
        if self.state.load(Ordering::Acquire) == CLOSED {
            return Some(Permit {
                health: Arc::clone(self),
                probe: false,
                done: false,
            });
        }
        let b = self.lock();
        match self.state.load(Ordering::Acquire) {
            CLOSED => Some(false),
            OPEN if Instant::now() >= b.open_until => {
                self.state.store(HALF_OPEN, Ordering::Release);
                tracing::info!(provider = %self.provider, model = %self.model, "circuit half-open: probing");
                Some(true)
            }
            _ => None,
        }
        .map(|probe| Permit {
            health: Arc::clone(self),
            probe,
            done: false,
        })
    }

    /// How long until an open circuit lets a probe through; while a probe is in flight, a
    /// tenth of the cool-down (at least a second): its verdict is not in yet.
    pub(crate) fn retry_in(&self) -> Duration {
        match self.state.load(Ordering::Acquire) {
            CLOSED => Duration::ZERO,
            HALF_OPEN => (self.settings.cooldown / 10).max(Duration::from_secs(1)),
            _ => self
                .lock()
                .open_until
                .saturating_duration_since(Instant::now()),
        }
    }

    /// A stream that had started failed later: counts against the deployment like a failed
    /// attempt.
    pub(crate) fn stream_failed(&self) {
        self.on_failure(false);
    }

    /// The order key of `least-latency`: never tried first (each gets measured), then by
    /// the moving average, then those tried but never successful (they only fail).
    pub(crate) fn latency_rank(&self) -> u128 {
        match self.latency() {
            Some(l) => l.as_micros().max(1),
            None if self.tried.load(Ordering::Relaxed) == 0 => 0,
            None => u128::MAX,
        }
    }

    fn on_success(&self, latency: Duration, probe: bool, complete: bool) {
        self.successes.fetch_add(1, Ordering::Relaxed);
        blend(&self.latency_us, latency.as_secs_f64() * 1e6);
        if complete {
            self.completed();
        }
        if probe {
            let _b = self.lock();
            self.state.store(CLOSED, Ordering::Release);
            tracing::info!(provider = %self.provider, model = %self.model, "circuit closed: probe succeeded");
        }
    }

    /// A whole answer: ends the run of consecutive failures.
    fn completed(&self) {
        blend_rate(&self.error_rate, 0.0);
        if self.run.load(Ordering::Relaxed) == 0 {
            return;
        }
        let mut b = self.lock();
        b.failures = 0;
        self.run.store(0, Ordering::Relaxed);
    }

    /// A stream that started ended cleanly.
    pub(crate) fn stream_completed(&self) {
        self.completed();
    }

    fn on_failure(&self, probe: bool) {
        self.failures.fetch_add(1, Ordering::Relaxed);
        blend_rate(&self.error_rate, 1.0);
        let now = Instant::now();
        let mut b = self.lock();
        if probe {
            b.open_until = now + self.settings.cooldown;
            b.opened_times += 1;
            self.state.store(OPEN, Ordering::Release);
            tracing::warn!(provider = %self.provider, model = %self.model, cooldown_s = self.settings.cooldown.as_secs_f64(), "circuit open again: probe failed");
            return;
        }
        if self.state.load(Ordering::Acquire) != CLOSED {
            return;
        }
        if now.duration_since(b.window_start) > self.settings.window || b.failures == 0 {
            b.window_start = now;
            b.failures = 0;
        }
        b.failures += 1;
        self.run.store(b.failures, Ordering::Relaxed);
        if b.failures >= self.settings.failures {
            b.open_until = now + self.settings.cooldown;
            b.opened_times += 1;
            b.failures = 0;
            self.run.store(0, Ordering::Relaxed);
            self.state.store(OPEN, Ordering::Release);
            tracing::warn!(provider = %self.provider, model = %self.model, failures = self.settings.failures, cooldown_s = self.settings.cooldown.as_secs_f64(), "circuit open: deployment skipped for the cool-down");
        }
    }

    fn release_probe(&self) {
        let mut b = self.lock();
        if self.state.load(Ordering::Acquire) == HALF_OPEN {
            // No verdict: the next request probes at once.
            b.open_until = Instant::now();
            self.state.store(OPEN, Ordering::Release);
        }
    }

    /// The moving average latency, when there is one.
    pub(crate) fn latency(&self) -> Option<Duration> {
        let us = load_f64(&self.latency_us);
        (us > 0.0).then(|| Duration::from_secs_f64(us / 1e6))
    }

    /// A snapshot for `/admin/providers` and the portal.
    pub(crate) fn view(&self) -> HealthView {
        let (failures, opened_times, retry_in) = {
            let b = self.lock();
            (
                b.failures,
                b.opened_times,
                b.open_until.saturating_duration_since(Instant::now()),
            )
        };
        let circuit = self.circuit();
        HealthView {
            provider: self.provider.clone(),
            model: self.model.clone(),
            circuit,
            consecutive_failures: failures,
            times_opened: opened_times,
            probe_in_s: (circuit == Circuit::Open).then_some(retry_in.as_secs_f64()),
            latency_ms: self
                .latency()
                .map(|d| (d.as_secs_f64() * 1e4).round() / 10.0),
            error_rate: (load_f64(&self.error_rate) * 1e4).round() / 1e4,
            successes: self.successes.load(Ordering::Relaxed),
            failures: self.failures.load(Ordering::Relaxed),
        }
    }
}

/// One deployment's health, as `/admin/providers` shows it.
#[derive(Debug, Clone, serde::Serialize)]
pub(crate) struct HealthView {
    pub provider: String,
    pub model: String,
    pub circuit: Circuit,
    pub consecutive_failures: u32,
    pub times_opened: u64,
    /// Seconds until an open circuit lets a probe through.
    pub probe_in_s: Option<f64>,
    /// The moving average, when there is one.
    pub latency_ms: Option<f64>,
    pub error_rate: f64,
    pub successes: u64,
    pub failures: u64,
}

/// Error rates start at 0 (a first sample of 0 is a real sample, unlike latency).
fn blend_rate(a: &AtomicU64, sample: f64) {
    let old = load_f64(a);
    a.store((old + ALPHA * (sample - old)).to_bits(), Ordering::Relaxed);
}

/// Deployments remembered at most. Configured deployments are always kept; a
/// `provider/model` name (the client's free text) is kept only once it has answered, and
/// past the bound the least recently used of those makes room.
const MAX_TRACKED: usize = 4096;

type Name = (String, String);

/// The records of a [`HealthBook`].
pub(crate) struct Book {
    settings: Breaker,
    map: DashMap<Name, Arc<Health>>,
    epoch: Instant,
}

impl Book {
    fn now_ms(&self) -> u64 {
        u64::try_from(self.epoch.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    /// Keeps `h` (a name that just answered), evicting the least recently used unpinned
    /// record when full.
    fn keep(&self, h: &Arc<Health>) {
        let name = (h.provider.clone(), h.model.clone());
        if self.map.contains_key(&name) {
            return;
        }
        if self.map.len() >= MAX_TRACKED {
            let oldest = self
                .map
                .iter()
                .filter(|e| !e.value().pinned.load(Ordering::Relaxed))
                .min_by_key(|e| e.value().last_used.load(Ordering::Relaxed))
                .map(|e| e.key().clone());
            match oldest {
                Some(k) => {
                    self.map.remove(&k);
                }
                None => return,
            }
        }
        self.map.entry(name).or_insert_with(|| Arc::clone(h));
    }
}

/// Every deployment's health.
#[derive(Clone)]
pub(crate) struct HealthBook {
    book: Arc<Book>,
}

impl HealthBook {
    pub(crate) fn new(settings: Breaker) -> Self {
        Self {
            book: Arc::new(Book {
                settings,
                map: DashMap::new(),
                epoch: Instant::now(),
            }),
        }
    }

    /// Registers a configured deployment: kept for good.
    pub(crate) fn pin(&self, provider: &str, model: &str) -> Arc<Health> {
        let b = &self.book;
        let h = Arc::clone(
            &b.map
                .entry((provider.to_owned(), model.to_owned()))
                .or_insert_with(|| Arc::new(Health::new(provider, model, b.settings))),
        );
        // A name used directly before a reload configured it is kept for good from now on.
        h.pinned.store(true, Ordering::Relaxed);
        h
    }

    /// The health of `provider`'s `model`: its record, or (a name not kept yet) a new one
    /// that is kept once it answers.
    pub(crate) fn get(&self, provider: &str, model: &str) -> Arc<Health> {
        let b = &self.book;
        if let Some(h) = b.map.get(&(provider.to_owned(), model.to_owned())) {
            h.last_used.store(b.now_ms(), Ordering::Relaxed);
            return Arc::clone(&h);
        }
        let mut h = Health::new(provider, model, b.settings);
        h.adopt = Some(Arc::downgrade(b));
        h.last_used = AtomicU64::new(b.now_ms());
        Arc::new(h)
    }

    /// Drops the records pinned for deployments the loaded config no longer names (a
    /// reload); requests in flight keep theirs by `Arc`. Records of names still configured
    /// keep their circuits and averages.
    pub(crate) fn retain_pinned(&self, configured: impl Fn(&str, &str) -> bool) {
        self.book
            .map
            .retain(|(p, m), h| !h.pinned.load(Ordering::Relaxed) || configured(p, m));
    }

    /// Every deployment kept, sorted by provider and model.
    pub(crate) fn all(&self) -> Vec<Arc<Health>> {
        let mut v: Vec<Arc<Health>> = self
            .book
            .map
            .iter()
            .map(|e| Arc::clone(e.value()))
            .collect();
        v.sort_by(|a, b| (&a.provider, &a.model).cmp(&(&b.provider, &b.model)));
        v
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn made_up_names_take_no_place_and_answered_ones_are_evicted_lru() {
        let book = HealthBook::new(Breaker {
            failures: 3,
            window: Duration::from_secs(60),
            cooldown: Duration::from_secs(1),
        });
        book.pin("p", "configured");
        for i in 0..10_000 {
            let h = book.get("p", &format!("junk-{i}"));
            h.try_acquire().expect("closed").failure();
        }
        assert_eq!(
            book.all().len(),
            1,
            "failures of unknown names keep nothing"
        );
        for i in 0..(MAX_TRACKED + 10) {
            let h = book.get("p", &format!("real-{i}"));
            h.try_acquire()
                .expect("closed")
                .success(Duration::from_millis(1), true);
        }
        let all = book.all();
        assert_eq!(all.len(), MAX_TRACKED);
        assert!(all.iter().any(|h| h.model == "configured"), "pinned stays");
        // A kept name keeps its circuit memory.
        let h = book.get("p", &format!("real-{}", MAX_TRACKED + 9));
        assert!(Arc::ptr_eq(
            &h,
            &book.get("p", &format!("real-{}", MAX_TRACKED + 9))
        ));
    }

    fn health(failures: u32, cooldown_ms: u64) -> Arc<Health> {
        Arc::new(Health::new(
            "p",
            "m",
            Breaker {
                failures,
                window: Duration::from_secs(60),
                cooldown: Duration::from_millis(cooldown_ms),
            },
        ))
    }

    fn fail(h: &Arc<Health>) {
        h.try_acquire().expect("closed").failure();
    }

    #[test]
    fn opens_after_k_consecutive_failures_then_probes_once() {
        let h = health(3, 50);
        fail(&h);
        fail(&h);
        h.try_acquire()
            .expect("closed")
            .success(Duration::from_millis(5), true);
        fail(&h);
        fail(&h);
        assert_eq!(h.circuit(), Circuit::Closed, "a success ends the run");
        fail(&h);
        assert_eq!(h.circuit(), Circuit::Open);
        assert!(h.try_acquire().is_none(), "skipped while cooling down");
        std::thread::sleep(Duration::from_millis(60));
        let probe = h.try_acquire().expect("the probe");
        assert!(probe.is_probe());
        assert!(h.try_acquire().is_none(), "one probe at a time");
        probe.failure();
        assert_eq!(h.circuit(), Circuit::Open, "a failed probe opens again");
        std::thread::sleep(Duration::from_millis(60));
        h.try_acquire()
            .expect("probe")
            .success(Duration::from_millis(1), true);
        assert_eq!(h.circuit(), Circuit::Closed);
        assert!(h.try_acquire().is_some_and(|p| !p.is_probe()));
    }

    #[test]
    fn a_stream_that_starts_then_fails_does_not_end_the_run() {
        let h = health(2, 10);
        for _ in 0..2 {
            h.try_acquire()
                .expect("closed")
                .success(Duration::from_millis(1), false);
            h.stream_failed();
        }
        assert_eq!(h.circuit(), Circuit::Open);
    }

    #[test]
    fn least_latency_rank_puts_never_successful_deployments_last() {
        let h = health(5, 10);
        assert_eq!(h.latency_rank(), 0, "untried first");
        h.try_acquire().expect("closed").neutral();
        assert_eq!(h.latency_rank(), u128::MAX, "tried, never answered: last");
        h.try_acquire()
            .expect("closed")
            .success(Duration::from_millis(3), true);
        assert_eq!(h.latency_rank(), 3000);
    }

    #[test]
    fn a_probe_without_verdict_hands_over_at_once() {
        let h = health(1, 10);
        fail(&h);
        std::thread::sleep(Duration::from_millis(15));
        let probe = h.try_acquire().expect("probe");
        drop(probe);
        assert!(h.try_acquire().is_some_and(|p| p.is_probe()));
    }

    #[test]
    fn latency_is_a_moving_average() {
        let h = health(5, 10);
        assert!(h.latency().is_none());
        h.try_acquire()
            .expect("closed")
            .success(Duration::from_millis(100), true);
        h.try_acquire()
            .expect("closed")
            .success(Duration::from_millis(200), true);
        let ms = h.latency().expect("sampled").as_secs_f64() * 1e3;
        assert!((ms - 120.0).abs() < 0.01, "{ms}");
    }
}
