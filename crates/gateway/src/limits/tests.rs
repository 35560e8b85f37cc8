//! The local limiter and the rules.

use super::local::Local;
use super::rules::{format_reset, tpm_hold};
use super::*;

fn ask(rpm: Option<u64>, tpm: Option<u64>, budget: Option<f64>, tokens: u64) -> Ask {
    Ask {
        key_id: "k".into(),
        rpm,
        tpm,
        budget_usd: budget,
        budget_span: None,
        tokens,
        tokens_min: tokens,
        cost: 0.0,
    }
}

fn settle(
    tokens_held: u64,
    tokens_used: u64,
    cost_held: f64,
    cost: f64,
    admitted_s: u64,
) -> Settle {
    Settle {
        key_id: "k".into(),
        tpm: true,
        budget: true,
        tokens_held,
        tokens_used,
        cost_held,
        cost,
        hold_id: "h".into(),
        admitted_s,
        budget_since: i64::MIN,
    }
}

#[test]
fn rpm_is_a_sliding_window() {
    let l = Local::default();
    let a = ask(Some(3), None, None, 0);
    for (i, t) in [500u64, 10_000, 20_000].into_iter().enumerate() {
        let d = l.admit(&a, t, None);
        assert_eq!(d.refused, None);
        let w = d.headers.requests.expect("header");
        assert_eq!(w.remaining, 2 - i as u64);
        // The first request's second (0) leaves the window at 61 s.
        assert_eq!(w.reset_ms, 61_000 - t);
    }
    let d = l.admit(&a, 60_999, None);
    assert_eq!(d.refused, Some(Refusal::Requests { retry_after_ms: 1 }));
    // Second 0 has left the window: one slot frees.
    assert_eq!(l.admit(&a, 61_000, None).refused, None);
    assert!(l.admit(&a, 61_001, None).refused.is_some());
    // A key idle for longer than the window starts afresh.
    let d = l.admit(&a, 200_000, None);
    assert_eq!(d.headers.requests.map(|w| w.remaining), Some(2));
}

#[test]
fn tpm_counts_the_estimate_then_settles() {
    let l = Local::default();
    let a = ask(None, Some(100), None, 60);
    assert_eq!(l.admit(&a, 1_000, None).refused, None);
    // 60 held: another 60 would pass 100.
    let d = l.admit(&a, 2_000, None);
    assert!(matches!(d.refused, Some(Refusal::Tokens { asked: 60, .. })));
    // The first request really used 20 tokens: 80 left.
    l.settle(&settle(60, 20, 0.0, 0.0, 1), 3_000);
    let d = l.admit(&a, 3_500, None);
    assert_eq!(d.refused, None);
    assert_eq!(d.headers.tokens.map(|w| w.remaining), Some(20));
    // Sixty-one seconds after the first bucket it has left the window.
    let d = l.admit(&ask(None, Some(100), None, 30), 62_000, None);
    assert_eq!(d.refused, None);
}

#[test]
fn a_correction_leaves_the_window_with_its_estimate() {
    let l = Local::default();
    let a = ask(None, Some(100), None, 100);
    assert_eq!(l.admit(&a, 0, None).refused, None);
    // It failed: settled at 0 tokens, 30 s later.
    l.settle(&settle(100, 0, 0.0, 0.0, 0), 30_000);
    assert_eq!(l.admit(&a, 30_500, None).refused, None);
    // At 61 s the first second leaves: one 100-token request is counted (at 30 s), so a
    // second one is refused — the correction did not outlive its estimate.
    assert!(l.admit(&a, 61_500, None).refused.is_some());
    // A correction for a second that already left adds only an excess.
    l.settle(&settle(100, 0, 0.0, 0.0, 0), 62_000);
    assert!(l.admit(&a, 62_500, None).refused.is_some());
}

#[test]
fn a_clock_stepping_back_does_not_reopen_the_window() {
    let l = Local::default();
    let a = ask(Some(1), None, None, 0);
    assert_eq!(l.admit(&a, 100_000, None).refused, None);
    assert!(l.admit(&a, 40_000, None).refused.is_some());
}

#[test]
fn budget_counts_spend_and_holds() {
    let l = Local::default();
    let mut a = ask(None, None, Some(1.0), 0);
    a.cost = 0.4;
    assert_eq!(l.admit(&a, 0, Some(0.1)).refused, None); // 0.1 spent + 0.4 held
    assert_eq!(l.admit(&a, 0, None).refused, None); // 0.1 + 0.8 held: fits
                                                    // A third would hold 1.2 beside 0.1 spent: it does not fit.
    assert_eq!(
        l.admit(&a, 0, None).refused,
        Some(Refusal::Budget {
            spent: 0.1,
            held: 0.8,
            budget: 1.0,
            asked: 0.4,
        })
    );
    // Two finish having cost less than held: 0.2 spent, nothing held.
    l.settle(&settle(0, 0, 0.4, 0.05, 0), 0);
    l.settle(&settle(0, 0, 0.4, 0.05, 0), 0);
    assert_eq!(l.admit(&a, 0, None).refused, None); // 0.2 + 0.4
    assert_eq!(l.admit(&a, 0, None).refused, None); // 0.2 + 0.8
    assert!(l.admit(&a, 0, None).refused.is_some());
}

#[test]
fn tpm_holds_the_output_maximum_or_what_is_left() {
    // With a maximum of its own: whole or not at all.
    assert_eq!(tpm_hold(0, 2000, 1010, 1010), Some(1010));
    assert_eq!(tpm_hold(1010, 2000, 1010, 1010), None);
    // Without: the prompt must fit; it holds the rest of the window up to its worst case.
    assert_eq!(tpm_hold(0, 2000, 10 + 4096, 10), Some(2000));
    assert_eq!(tpm_hold(1500, 2000, 10 + 4096, 10), Some(500));
    assert_eq!(tpm_hold(1995, 2000, 10 + 4096, 10), None);
    assert_eq!(tpm_hold(0, 100_000, 10 + 4096, 10), Some(4106));
    let l = Local::default();
    let mut a = ask(None, Some(2000), None, 4106);
    a.tokens_min = 10;
    let d = l.admit(&a, 0, None);
    assert_eq!((d.refused.is_none(), d.tokens), (true, 2000));
    assert!(
        l.admit(&a, 0, None).refused.is_some(),
        "nothing left beside it"
    );
}

#[test]
fn a_new_budget_period_counts_from_its_start() {
    use crate::calendar::BudgetPeriod;
    let l = Local::default();
    let day_ms = 86_400_000u64;
    let t = 20_000 * day_ms + 3_600_000;
    let mut a = ask(None, None, Some(1.0), 0);
    a.budget_span = Some(BudgetPeriod::Daily.span(t as i64));
    a.cost = 0.1;
    // The day's spend is loaded, and it has reached the budget.
    assert_eq!(l.spend_state("k", a.budget_since(), t), SpendState::Unknown);
    assert!(l.admit(&a, t, Some(1.0)).refused.is_some());
    assert_eq!(
        l.spend_state("k", a.budget_since(), t + 1),
        SpendState::Fresh
    );
    // A request admitted late in the day settles after midnight.
    let mut late = a.clone();
    late.budget_span = Some(BudgetPeriod::Daily.span((t - 3_600_000 + day_ms - 10) as i64));
    assert_eq!(late.budget_span, a.budget_span);
    // The next day: the spend must be loaded for the new period.
    let next = t + day_ms;
    let mut b = a.clone();
    b.budget_span = Some(BudgetPeriod::Daily.span(next as i64));
    assert_eq!(
        l.spend_state("k", b.budget_since(), next),
        SpendState::Unknown
    );
    assert!(l.admit(&b, next, Some(0.0)).refused.is_none());
    let mut old = settle(0, 0, 0.0, 0.9, next / 1000);
    old.budget_since = late.budget_since();
    l.settle(&old, next);
    let mut new = settle(0, 0, 0.1, 0.2, next / 1000);
    new.budget_since = b.budget_since();
    l.settle(&new, next);
    // Only the new day's cost counts: 0.2 spent, 0.8 left.
    b.cost = 0.7;
    assert_eq!(l.admit(&b, next, None).refused, None);
    let spent = l
        .keys
        .get("k")
        .and_then(|e| e.value().lock().ok().and_then(|s| s.spent));
    assert_eq!(spent, Some(0.2));
}

#[test]
fn a_lone_request_is_admitted_while_budget_is_left() {
    let l = Local::default();
    let mut a = ask(None, None, Some(1.0), 0);
    a.cost = 5.0; // worst case beyond the whole budget
    assert_eq!(l.admit(&a, 0, Some(0.9)).refused, None);
    // Nothing else gets in beside it.
    a.cost = 0.01;
    assert!(l.admit(&a, 0, None).refused.is_some());
    // Once spent reaches the budget nothing is admitted.
    l.settle(&settle(0, 0, 5.0, 0.2, 0), 0);
    assert!(l.admit(&a, 0, None).refused.is_some());
}

#[test]
fn reset_format_matches_openai() {
    assert_eq!(format_reset(120), "120ms");
    assert_eq!(format_reset(8_640), "8.64s");
    assert_eq!(format_reset(1_000), "1s");
    assert_eq!(format_reset(360_000), "6m0s");
    assert_eq!(format_reset(61_500), "1m1.5s");
}
