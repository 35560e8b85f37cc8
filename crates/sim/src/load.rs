//! `jusinfer-load`: the streaming and constant-rate load generator behind bench/run.sh.
#![expect(clippy::print_stdout, reason = "results go to standard output as JSON")]
//!
//! - `stream`: C connections loop for D seconds over streaming requests, recording the time
//!   to the first body chunk and the gaps between chunks.
//! - `rate`: open-loop non-streaming requests at a fixed rate, recording latency.
//! - `hold`: opens N streams at once and keeps them open (for memory measurements).
//!
//! Results print as one JSON object on standard output.

use std::time::{Duration, Instant};

use clap::{Parser, ValueEnum};
use futures_util::StreamExt;
use serde_json::json;

#[derive(Clone, Copy, ValueEnum)]
enum Mode {
    Stream,
    Rate,
    Hold,
}

#[derive(Parser)]
struct Args {
    #[arg(value_enum)]
    mode: Mode,
    /// Full URL of the chat completions endpoint.
    #[arg(long)]
    url: String,
    #[arg(long, default_value = "fast")]
    model: String,
    #[arg(long)]
    key: Option<String>,
    #[arg(long, default_value_t = 32)]
    connections: usize,
    #[arg(long, default_value_t = 10.0)]
    duration: f64,
    /// Requests per second (rate mode).
    #[arg(long, default_value_t = 1000.0)]
    rate: f64,
}

/// One chat completions POST with the bench's headers.
async fn send(
    c: &reqwest::Client,
    url: &str,
    auth: &str,
    body: String,
) -> reqwest::Result<reqwest::Response> {
    c.post(url)
        .header("authorization", auth)
        .header("content-type", "application/json")
        .body(body)
        .send()
        .await
}

/// Requests the rate mode lets wait at once.
const MAX_IN_FLIGHT: usize = 256;

fn pct(sorted: &[u64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i] as f64 / 1000.0
}

/// A stream asks for its usage, as a client that bills does: the upstream then sends the
/// same frames direct and through the gateway (which asks for usage anyway, to meter it),
/// so the gaps compare like for like.
fn body(model: &str, stream: bool) -> String {
    let mut b = json!({"model": model, "stream": stream, "messages": [{"role": "user", "content": "Say hello."}]});
    if stream {
        b["stream_options"] = json!({"include_usage": true});
    }
    b.to_string()
}

fn client(conns: usize) -> anyhow::Result<reqwest::Client> {
    Ok(reqwest::Client::builder()
        .pool_max_idle_per_host(conns)
        .tcp_nodelay(true)
        .build()?)
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let a = Args::parse();
    let c = client(a.connections)?;
    let auth = a
        .key
        .clone()
        .map(|k| format!("Bearer {k}"))
        .unwrap_or_default();
    match a.mode {
        Mode::Stream => {
            let until = Instant::now() + Duration::from_secs_f64(a.duration);
            let mut tasks = Vec::new();
            for _ in 0..a.connections {
                let (c, url, auth, b) =
                    (c.clone(), a.url.clone(), auth.clone(), body(&a.model, true));
                tasks.push(tokio::spawn(async move {
                    let (mut ttft, mut gaps, mut done, mut errors) =
                        (Vec::new(), Vec::new(), 0u64, 0u64);
                    while Instant::now() < until {
                        let t0 = Instant::now();
                        let r = send(&c, &url, &auth, b.clone()).await;
                        let Ok(r) = r else {
                            errors += 1;
                            continue;
                        };
                        if !r.status().is_success() {
                            errors += 1;
                            continue;
                        }
                        let mut s = r.bytes_stream();
                        let mut last: Option<Instant> = None;
                        let mut ok = true;
                        while let Some(chunk) = s.next().await {
                            if chunk.is_err() {
                                ok = false;
                                break;
                            }
                            let now = Instant::now();
                            match last {
                                None => ttft.push(now.duration_since(t0).as_micros() as u64),
                                Some(l) => gaps.push(now.duration_since(l).as_micros() as u64),
                            }
                            last = Some(now);
                        }
                        if ok {
                            done += 1
                        } else {
                            errors += 1
                        }
                    }
                    (ttft, gaps, done, errors)
                }));
            }
            let (mut ttft, mut gaps, mut done, mut errors) = (Vec::new(), Vec::new(), 0, 0);
            for t in tasks {
                let (a1, b1, d, e) = t.await?;
                ttft.extend(a1);
                gaps.extend(b1);
                done += d;
                errors += e;
            }
            ttft.sort_unstable();
            gaps.sort_unstable();
            println!(
                "{}",
                json!({
                    "mode": "stream", "connections": a.connections, "requests": done, "errors": errors,
                    "rps": done as f64 / a.duration,
                    "ttft_ms": {"p50": pct(&ttft, 0.5), "p99": pct(&ttft, 0.99)},
                    "gap_ms": {"p50": pct(&gaps, 0.5), "p99": pct(&gaps, 0.99), "n": gaps.len()},
                })
            );
        }
        Mode::Rate => {
            let total = (a.rate * a.duration) as usize;
            let interval = Duration::from_secs_f64(1.0 / a.rate);
            let start = tokio::time::Instant::now();
            let mut tasks = Vec::with_capacity(total);
            // Open loop, but bounded: a request that finds MAX_IN_FLIGHT already waiting is
            // counted as missed rather than piling up connections without limit.
            let in_flight = std::sync::Arc::new(tokio::sync::Semaphore::new(MAX_IN_FLIGHT));
            let mut missed = 0u64;
            for i in 0..total {
                tokio::time::sleep_until(start + interval * i as u32).await;
                let Ok(permit) = std::sync::Arc::clone(&in_flight).try_acquire_owned() else {
                    missed += 1;
                    continue;
                };
                let (c, url, auth, b) = (
                    c.clone(),
                    a.url.clone(),
                    auth.clone(),
                    body(&a.model, false),
                );
                tasks.push(tokio::spawn(async move {
                    let _permit = permit;
                    let t0 = Instant::now();
                    let r = send(&c, &url, &auth, b).await;
                    match r {
                        Ok(r) if r.status().is_success() => r
                            .bytes()
                            .await
                            .ok()
                            .map(|_| t0.elapsed().as_micros() as u64),
                        _ => None,
                    }
                }));
            }
            let mut lat = Vec::new();
            let mut errors = missed;
            for t in tasks {
                match t.await? {
                    Some(l) => lat.push(l),
                    None => errors += 1,
                }
            }
            let elapsed = start.elapsed().as_secs_f64();
            lat.sort_unstable();
            println!(
                "{}",
                json!({
                    "mode": "rate", "target_rps": a.rate, "achieved_rps": lat.len() as f64 / elapsed, "errors": errors,
                    "latency_ms": {"p50": pct(&lat, 0.5), "p99": pct(&lat, 0.99), "max": pct(&lat, 1.0)},
                })
            );
        }
        Mode::Hold => {
            let (tx, mut rx) = tokio::sync::mpsc::channel::<bool>(a.connections);
            let hold = Duration::from_secs_f64(a.duration);
            for _ in 0..a.connections {
                let (c, url, auth, b, tx) = (
                    c.clone(),
                    a.url.clone(),
                    auth.clone(),
                    body(&a.model, true),
                    tx.clone(),
                );
                tokio::spawn(async move {
                    let r = send(&c, &url, &auth, b).await;
                    let Ok(r) = r else {
                        let _ = tx.send(false).await;
                        return;
                    };
                    let mut s = r.bytes_stream();
                    let first = s.next().await.is_some_and(|c| c.is_ok());
                    let _ = tx.send(first).await;
                    let until = Instant::now() + hold;
                    while Instant::now() < until {
                        if s.next().await.is_none() {
                            break;
                        }
                    }
                });
            }
            drop(tx);
            let (mut open, mut failed) = (0, 0);
            while let Some(ok) = rx.recv().await {
                if ok {
                    open += 1
                } else {
                    failed += 1
                }
                if open + failed == a.connections {
                    break;
                }
            }
            eprintln!("holding {open} open streams");
            println!(
                "{}",
                json!({"mode": "hold", "open": open, "failed": failed})
            );
            tokio::time::sleep(hold).await;
        }
    }
    Ok(())
}
