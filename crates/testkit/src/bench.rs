//! The micro-benchmarks' harness (`crates/*/benches`, `harness = false`, no extra crates).
//! `cargo bench` passes `--bench`: each case is timed, the median of 15 batches of ~20 ms,
//! in ns per operation. Run any other way (`cargo test --benches`, as CI does), each case
//! runs once and must produce output: a smoke test, nothing timed. A first argument that is
//! not a flag keeps the cases whose name contains it.

use std::hint::black_box;
use std::time::{Duration, Instant};

/// One benchmark.
pub struct Case {
    pub name: &'static str,
    /// Operations one call stands for (the events of a stream; 1 otherwise).
    pub ops: usize,
    /// One call; returns what it produced (bytes, items), which must not be 0.
    pub run: Box<dyn FnMut() -> usize>,
}

/// Runs (or smoke-runs) `cases` as the process's arguments say.
#[expect(clippy::print_stdout, reason = "a bench reports on stdout")]
pub fn run(cases: Vec<Case>) {
    let timed = std::env::args().any(|a| a == "--bench");
    let filter = std::env::args()
        .skip(1)
        .find(|a| !a.starts_with("--"))
        .unwrap_or_default();
    for mut case in cases.into_iter().filter(|c| c.name.contains(&filter)) {
        let out = (case.run)();
        assert!(out > 0, "{}: no output", case.name);
        if !timed {
            println!("{}: ok ({out} out)", case.name);
            continue;
        }
        // Calls per batch so that one batch takes ~20 ms.
        let start = Instant::now();
        let mut calls = 0u32;
        while start.elapsed() < Duration::from_millis(20) {
            black_box((case.run)());
            calls += 1;
        }
        let mut per_op: Vec<f64> = (0..15)
            .map(|_| {
                let t = Instant::now();
                for _ in 0..calls {
                    black_box((case.run)());
                }
                t.elapsed().as_nanos() as f64 / f64::from(calls) / case.ops as f64
            })
            .collect();
        per_op.sort_by(f64::total_cmp);
        println!(
            "{:<52} {:>9.0} ns/op  ({} ops per call, {calls} calls per batch)",
            case.name, per_op[7], case.ops
        );
    }
}
