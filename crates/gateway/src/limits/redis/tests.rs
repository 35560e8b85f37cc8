//! The Redis limiter against a real `redis-server` (started on a free loopback port): the
//! Lua scripts as Redis runs them, two instances sharing one key's limits.

use std::process::{Child, Command, Stdio};
use std::time::Duration;

use super::RedisLimits;
use crate::limits::{Ask, Refusal, Settle};
use crate::store::Store;

/// A throwaway Redis, stopped when dropped.
struct Server {
    child: Child,
    url: String,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A fresh Redis, or `None` where `redis-server` is not installed (outside CI; in CI, whose
/// test script installs it, its absence fails the test).
async fn redis() -> Option<Server> {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port();
    let child = Command::new("redis-server")
        .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
        .args(["--save", "", "--appendonly", "no"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn();
    let child = match child {
        Ok(c) => c,
        Err(e) if std::env::var_os("CI").is_none() => {
            eprintln!("skipped: redis-server cannot be started ({e})");
            return None;
        }
        Err(e) => panic!("redis-server cannot be started: {e}"),
    };
    let server = Server {
        child,
        url: format!("redis://127.0.0.1:{port}"),
    };
    for _ in 0..100 {
        if tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .is_ok()
        {
            return Some(server);
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("redis-server did not start listening on {port}");
}

async fn store() -> (Store, std::path::PathBuf) {
    let dir = std::env::temp_dir().join(format!(
        "jinf-redis-limits-{}-{}",
        std::process::id(),
        crate::usage::unique_id()
    ));
    std::fs::create_dir_all(&dir).expect("dir");
    let store = Store::open(&format!("sqlite://{}", dir.join("l.db").display()))
        .await
        .expect("store");
    (store, dir)
}

fn ask(key: &str, rpm: Option<u64>, budget: Option<f64>, cost: f64) -> Ask {
    Ask {
        key_id: key.to_owned(),
        rpm,
        tpm: None,
        budget_usd: budget,
        budget_span: None,
        tokens: 10,
        tokens_min: 10,
        cost,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_instances_share_one_request_window() {
    let Some(srv) = redis().await else { return };
    let (store, dir) = store().await;
    let (a, _) = RedisLimits::connect(&srv.url).await.expect("a");
    let (b, _) = RedisLimits::connect(&srv.url).await.expect("b");
    let q = ask("rpm-key", Some(3), None, 0.0);
    for (i, l) in [&a, &b, &a].into_iter().enumerate() {
        let got = l.admit(&q, &format!("h{i}"), &store).await.expect("redis");
        assert_eq!(
            got.decision.refused, None,
            "request {i} is within 3 per minute"
        );
    }
    let fourth = b.admit(&q, "h3", &store).await.expect("redis");
    match fourth.decision.refused {
        Some(Refusal::Requests { retry_after_ms }) => {
            assert!((1..=61_000).contains(&retry_after_ms), "{retry_after_ms}");
        }
        other => panic!("the fourth request in a minute must be refused for RPM: {other:?}"),
    }
    let w = fourth.decision.headers.requests.expect("requests window");
    assert_eq!((w.limit, w.remaining), (3, 0));
    let _ = std::fs::remove_dir_all(dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_budget_hold_lasts_until_its_request_settles() {
    let Some(srv) = redis().await else { return };
    let (store, dir) = store().await;
    let (a, _) = RedisLimits::connect(&srv.url).await.expect("a");
    let (b, _) = RedisLimits::connect(&srv.url).await.expect("b");
    let q = ask("budget-key", None, Some(1.0), 0.4);
    let first = a.admit(&q, "h1", &store).await.expect("redis");
    assert_eq!(first.decision.refused, None);
    let second = b.admit(&q, "h2", &store).await.expect("redis");
    assert_eq!(second.decision.refused, None);
    // 0.8 is held: a third 0.4 could overspend the budget.
    match a
        .admit(&q, "h3", &store)
        .await
        .expect("redis")
        .decision
        .refused
    {
        Some(Refusal::Budget { held, asked, .. }) => {
            assert!((held - 0.8).abs() < 1e-9, "held {held}");
            assert!((asked - 0.4).abs() < 1e-9, "asked {asked}");
        }
        other => panic!("a third hold must be refused: {other:?}"),
    }
    // The first request cost 0.1: its hold is released, its cost spent.
    a.settle(Settle {
        key_id: q.key_id.clone(),
        tpm: false,
        budget: true,
        tokens_held: q.tokens,
        tokens_used: 5,
        cost_held: 0.4,
        cost: 0.1,
        hold_id: first.hold_id.clone(),
        admitted_s: first.sec,
        budget_since: q.budget_since(),
    });
    a.flush(Duration::from_secs(5)).await;
    let third = b.admit(&q, "h4", &store).await.expect("redis");
    assert_eq!(
        third.decision.refused, None,
        "0.1 spent + 0.8 held fits 1.0"
    );
    let _ = std::fs::remove_dir_all(dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn leases_never_admit_more_than_the_limit() {
    let Some(srv) = redis().await else { return };
    let (store, dir) = store().await;
    let (a, _) = RedisLimits::connect(&srv.url).await.expect("a");
    let (b, _) = RedisLimits::connect(&srv.url).await.expect("b");
    let q = ask("lease-key", Some(1_000), None, 0.0);
    let (mut admitted, mut from_lease) = (0u32, 0u32);
    for i in 0..1_200 {
        let l = if i % 2 == 0 { &a } else { &b };
        let d = match l.admit_from_lease(&q) {
            Some(got) => {
                from_lease += 1;
                got.decision
            }
            None => {
                l.admit(&q, &format!("h{i}"), &store)
                    .await
                    .expect("redis")
                    .decision
            }
        };
        if d.refused.is_none() {
            admitted += 1;
        }
    }
    assert!(
        admitted <= 1_000,
        "{admitted} admitted against an RPM of 1000"
    );
    assert!(from_lease > 0, "a large limit is served from leases");
    let _ = std::fs::remove_dir_all(dir);
}
