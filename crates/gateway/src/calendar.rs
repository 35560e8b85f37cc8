//! UTC calendar arithmetic (pure): civil dates from day counts and back, and the budget
//! periods keys can have.
//!
//! A budget period starts at 00:00 UTC: every day, every Monday (ISO weeks), or on the
//! first of every month. Period starts fall on hour boundaries, so a period's spend is a
//! sum over the ledger's hourly rollup (`usage_hourly`) with no partial hour.

use std::fmt;
use std::str::FromStr;

const DAY_MS: i64 = 86_400_000;

/// `(year, month, day)` of a count of days since 1970-01-01 (proleptic Gregorian; Howard
/// Hinnant's `civil_from_days`).
pub fn civil(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (yoe + era * 400 + i64::from(m <= 2), m, d)
}

/// Days since 1970-01-01 of a civil date (Hinnant's `days_from_civil`; `m` in 1..=12).
pub fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y.rem_euclid(400);
    let m = i64::from(m);
    let mp = if m > 2 { m - 3 } else { m + 9 };
    let doy = (153 * mp + 2) / 5 + i64::from(d) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// Date and time parts of Unix milliseconds, UTC.
pub fn parts(ms: i64) -> (i64, u32, u32, i64, i64, i64) {
    let secs = ms.div_euclid(1000);
    let (y, mo, d) = civil(secs.div_euclid(86_400));
    let t = secs.rem_euclid(86_400);
    (y, mo, d, t / 3600, t / 60 % 60, t % 60)
}

/// `2026-11-26 10:44:05` (UTC).
pub fn datetime(ms: i64) -> String {
    let (y, mo, d, h, mi, s) = parts(ms);
    format!("{y:04}-{mo:02}-{d:02} {h:02}:{mi:02}:{s:02}")
}

/// How often a key's budget starts again.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum BudgetPeriod {
    Daily = 0,
    Weekly = 1,
    Monthly = 2,
}

/// One period: `[start_ms, end_ms)`, Unix milliseconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Span {
    pub start_ms: i64,
    pub end_ms: i64,
}

impl BudgetPeriod {
    pub const ALL: [BudgetPeriod; 3] = [Self::Daily, Self::Weekly, Self::Monthly];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Daily => "daily",
            Self::Weekly => "weekly",
            Self::Monthly => "monthly",
        }
    }

    /// How people say "this period": `today`, `this week`, `this month`.
    pub fn this(self) -> &'static str {
        match self {
            Self::Daily => "today",
            Self::Weekly => "this week",
            Self::Monthly => "this month",
        }
    }

    /// The period that contains `ms`.
    pub fn span(self, ms: i64) -> Span {
        let day = ms.div_euclid(DAY_MS);
        let (start, end) = match self {
            Self::Daily => (day, day + 1),
            Self::Weekly => {
                // 1970-01-01 was a Thursday: Monday is 3 days before it.
                let monday = day - (day + 3).rem_euclid(7);
                (monday, monday + 7)
            }
            Self::Monthly => {
                let (y, m, _) = civil(day);
                let (ny, nm) = if m == 12 { (y + 1, 1) } else { (y, m + 1) };
                (days_from_civil(y, m, 1), days_from_civil(ny, nm, 1))
            }
        };
        Span {
            start_ms: start.saturating_mul(DAY_MS),
            end_ms: end.saturating_mul(DAY_MS),
        }
    }
}

impl fmt::Display for BudgetPeriod {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for BudgetPeriod {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim().to_ascii_lowercase().as_str() {
            "daily" | "day" => Ok(Self::Daily),
            "weekly" | "week" => Ok(Self::Weekly),
            "monthly" | "month" => Ok(Self::Monthly),
            _ => Err(format!(
                "{s:?} is not a budget period: expected daily, weekly or monthly"
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(y: i64, m: u32, d: u32, h: i64) -> i64 {
        days_from_civil(y, m, d) * DAY_MS + h * 3_600_000
    }

    #[test]
    fn civil_round_trips() {
        for days in (-800_000..800_000).step_by(997) {
            let (y, m, d) = civil(days);
            assert_eq!(days_from_civil(y, m, d), days, "{y}-{m}-{d}");
        }
        assert_eq!(days_from_civil(1970, 1, 1), 0);
        assert_eq!(days_from_civil(2000, 3, 1), 11_017);
        assert_eq!(civil(days_from_civil(2024, 2, 29)), (2024, 2, 29));
    }

    #[test]
    fn days_start_at_midnight_utc() {
        let s = BudgetPeriod::Daily.span(ms(2026, 12, 4, 22) + 1234);
        assert_eq!(s.start_ms, ms(2026, 12, 4, 0));
        assert_eq!(s.end_ms, ms(2026, 12, 5, 0));
        // The first millisecond of a day is in that day, the last one in the one before.
        assert_eq!(
            BudgetPeriod::Daily.span(ms(2026, 12, 5, 0)).start_ms,
            ms(2026, 12, 5, 0)
        );
        assert_eq!(
            BudgetPeriod::Daily.span(ms(2026, 12, 5, 0) - 1).start_ms,
            ms(2026, 12, 4, 0)
        );
        // Before 1970 too.
        assert_eq!(BudgetPeriod::Daily.span(-1).start_ms, -DAY_MS);
    }

    #[test]
    fn weeks_start_on_monday() {
        // 2026-12-04 is a Friday; its week began on Monday 2026-11-30.
        let s = BudgetPeriod::Weekly.span(ms(2026, 12, 4, 12));
        assert_eq!(s.start_ms, ms(2026, 11, 30, 0));
        assert_eq!(s.end_ms, ms(2026, 12, 7, 0));
        // A Sunday night is still the week before; Monday 00:00 starts the next.
        assert_eq!(
            BudgetPeriod::Weekly.span(ms(2026, 12, 6, 23)).start_ms,
            ms(2026, 11, 30, 0)
        );
        assert_eq!(
            BudgetPeriod::Weekly.span(ms(2026, 12, 7, 0)).start_ms,
            ms(2026, 12, 7, 0)
        );
        // 1970-01-01, a Thursday.
        assert_eq!(BudgetPeriod::Weekly.span(0).start_ms, ms(1969, 12, 29, 0));
    }

    #[test]
    fn months_start_on_the_first() {
        let s = BudgetPeriod::Monthly.span(ms(2026, 12, 31, 23));
        assert_eq!(s.start_ms, ms(2026, 12, 1, 0));
        assert_eq!(s.end_ms, ms(2027, 1, 1, 0));
        let feb = BudgetPeriod::Monthly.span(ms(2028, 2, 29, 5));
        assert_eq!(feb.start_ms, ms(2028, 2, 1, 0));
        assert_eq!(feb.end_ms, ms(2028, 3, 1, 0));
        assert_eq!(
            BudgetPeriod::Monthly.span(ms(2027, 2, 15, 0)).end_ms,
            ms(2027, 3, 1, 0)
        );
    }

    #[test]
    fn periods_start_on_hour_boundaries() {
        for p in BudgetPeriod::ALL {
            for t in [0, 1_764_153_845_000, 1_800_000_000_123, -5_000_000_000] {
                let s = p.span(t);
                assert!(s.start_ms <= t && t < s.end_ms, "{p} {t}");
                assert_eq!(s.start_ms % 3_600_000, 0);
            }
        }
    }

    #[test]
    fn parses_names() {
        assert_eq!("daily".parse(), Ok(BudgetPeriod::Daily));
        assert_eq!(" Weekly ".parse(), Ok(BudgetPeriod::Weekly));
        assert_eq!("month".parse(), Ok(BudgetPeriod::Monthly));
        assert!("yearly".parse::<BudgetPeriod>().is_err());
        assert_eq!(
            serde_json::to_string(&BudgetPeriod::Monthly)
                .ok()
                .as_deref(),
            Some("\"monthly\"")
        );
    }
}
