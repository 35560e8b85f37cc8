//! How the portal writes times, money and counts. Pure.

pub(super) use crate::calendar::datetime;
use crate::calendar::parts;

/// `2026-11-26T10:44:05.123Z`, for CSV and `<time datetime>`.
pub(super) fn iso(ms: i64) -> String {
    let (y, mo, d, h, mi, s) = parts(ms);
    format!(
        "{y:04}-{mo:02}-{d:02}T{h:02}:{mi:02}:{s:02}.{:03}Z",
        ms.rem_euclid(1000)
    )
}

/// A bucket's label: `10:00` for hours within a day, `11-26 10:00` for hours over
/// several days, `11-26` for days.
pub(super) fn bucket_label(ms: i64, hourly: bool, dated: bool) -> String {
    let (_, mo, d, h, mi, _) = parts(ms);
    match (hourly, dated) {
        (true, false) => format!("{h:02}:{mi:02}"),
        (true, true) => format!("{mo:02}-{d:02} {h:02}:{mi:02}"),
        (false, _) => format!("{mo:02}-{d:02}"),
    }
}

/// US dollars with as many digits as small amounts need: `$12.35`, `$0.0042`, `$0`.
pub(super) fn usd(v: f64) -> String {
    if v == 0.0 {
        "$0".to_owned()
    } else if v.abs() >= 1.0 {
        format!("${v:.2}")
    } else if v.abs() >= 0.01 {
        format!("${v:.4}")
    } else {
        format!("${v:.6}")
    }
}

/// [`usd`] without trailing zeros, for chart axes: `$0.0005`, `$1.5`.
pub(super) fn usd_axis(v: f64) -> String {
    let s = usd(v);
    if s.contains('.') {
        s.trim_end_matches('0').trim_end_matches('.').to_owned()
    } else {
        s
    }
}

/// `1,234,567`.
pub(super) fn count(v: i64) -> String {
    let digits = v.unsigned_abs().to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3 + 1);
    if v < 0 {
        out.push('-');
    }
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// A short count for chart axes: `950`, `1.2k`, `3.4M`.
pub(super) fn short(v: f64) -> String {
    let a = v.abs();
    if a >= 1e6 {
        format!("{:.1}M", v / 1e6)
    } else if a >= 1e3 {
        format!("{:.1}k", v / 1e3)
    } else if a.fract() == 0.0 {
        format!("{v:.0}")
    } else {
        format!("{v:.2}")
    }
}

/// A CSV cell that a spreadsheet will not run as a formula (OWASP's CSV injection advice):
/// a cell whose first character, after any leading whitespace or control characters, is
/// `=`, `+`, `-`, `@`, `|` or `%` (or their fullwidth forms, which some spreadsheets
/// normalize), or that starts with a tab or carriage return, gets a leading `'`. Model names
/// and key names are client text.
pub(super) fn csv_cell(s: &str) -> std::borrow::Cow<'_, str> {
    let lead = s.chars().find(|c| !c.is_whitespace() && !c.is_control());
    let formula = matches!(
        lead,
        Some('=' | '+' | '-' | '@' | '|' | '%' | '＝' | '＋' | '－' | '＠' | '｜' | '％')
    );
    if formula || s.starts_with(['\t', '\r']) {
        format!("'{s}").into()
    } else {
        s.into()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates() {
        assert_eq!(datetime(0), "1970-01-01 00:00:00");
        assert_eq!(datetime(1_764_153_845_000), "2025-11-26 10:44:05");
        assert_eq!(iso(951_782_400_123), "2000-02-29T00:00:00.123Z");
        assert_eq!(datetime(4_107_542_399_000), "2100-02-28 23:59:59");
        assert_eq!(datetime(-1000), "1969-12-31 23:59:59");
        assert_eq!(bucket_label(1_764_151_200_000, true, false), "10:00");
        assert_eq!(bucket_label(1_764_151_200_000, true, true), "11-26 10:00");
        assert_eq!(bucket_label(1_764_115_200_000, false, false), "11-26");
    }

    #[test]
    fn numbers() {
        assert_eq!(usd(0.0), "$0");
        assert_eq!(usd(12.345), "$12.35");
        assert_eq!(usd(0.0421), "$0.0421");
        assert_eq!(usd(0.000_012_5), "$0.000013");
        assert_eq!(usd_axis(0.0005), "$0.0005");
        assert_eq!(usd_axis(1.5), "$1.5");
        assert_eq!(usd_axis(0.0), "$0");
        assert_eq!(count(0), "0");
        assert_eq!(count(999), "999");
        assert_eq!(count(1000), "1,000");
        assert_eq!(count(-1_234_567), "-1,234,567");
        assert_eq!(short(950.0), "950");
        assert_eq!(short(1250.0), "1.2k");
        assert_eq!(short(0.25), "0.25");
    }

    #[test]
    fn csv_cells_are_not_formulas() {
        assert_eq!(csv_cell("=HYPERLINK(\"x\")"), "'=HYPERLINK(\"x\")");
        assert_eq!(csv_cell("-1"), "'-1");
        assert_eq!(csv_cell("gpt-4o"), "gpt-4o");
        for evil in [
            " =1+1",
            "\n=1+1",
            "＝1+1",
            "|calc",
            "\u{a0}@SUM(A1)",
            "\t1",
            "％x",
        ] {
            assert!(csv_cell(evil).starts_with('\''), "{evil:?}");
        }
        assert_eq!(csv_cell(""), "");
    }
}
