//! Rendering a run: the aligned table, JSON, JUnit XML, and the raw bytes of every case.

use std::fmt::Write as _;
use std::path::Path;

use serde_json::json;

use crate::{CaseResult, Target, Verdict};

/// Counts of (pass, warn, fail).
pub fn counts(results: &[CaseResult]) -> (usize, usize, usize) {
    let n = |v| results.iter().filter(|r| r.verdict == v).count();
    (n(Verdict::Pass), n(Verdict::Warn), n(Verdict::Fail))
}

/// The table: one aligned row per case, verdicts colored when `color`.
pub fn table(target: &Target, results: &[CaseResult], color: bool) -> String {
    let width = results
        .iter()
        .map(|r| r.name.len())
        .max()
        .unwrap_or(4)
        .max(4);
    let mut out = String::new();
    let _ = writeln!(
        out,
        "jusinfer check · {} · {} · {}",
        target.dialect.as_str(),
        target.base_url,
        target.model
    );
    let _ = writeln!(out);
    let _ = writeln!(out, "{:<width$}  RESULT  {:>6}  EVIDENCE", "CASE", "MS");
    for r in results {
        let v = r.verdict.as_str();
        let shown = if color {
            let code = match r.verdict {
                Verdict::Pass => "32",
                Verdict::Warn => "33",
                Verdict::Fail => "31;1",
            };
            format!("\x1b[{code}m{v}\x1b[0m")
        } else {
            v.to_owned()
        };
        let _ = writeln!(
            out,
            "{:<width$}  {shown}    {:>6}  {}",
            r.name,
            r.elapsed.as_millis(),
            r.evidence
        );
    }
    let (p, w, f) = counts(results);
    let _ = writeln!(out);
    let plural =
        |n: usize, one: &str, many: &str| format!("{n} {}", if n == 1 { one } else { many });
    let _ = writeln!(
        out,
        "{} passed, {}, {} failed",
        p,
        plural(w, "warning", "warnings"),
        f
    );
    out
}

/// Machine output.
pub fn json(target: &Target, results: &[CaseResult]) -> serde_json::Value {
    let (p, w, f) = counts(results);
    json!({
        "target": {"base_url": target.base_url, "model": target.model, "dialect": target.dialect.as_str()},
        "summary": {"pass": p, "warn": w, "fail": f},
        "cases": results.iter().map(|r| json!({
            "name": r.name,
            "verdict": r.verdict,
            "evidence": r.evidence,
            "ms": r.elapsed.as_millis() as u64,
        })).collect::<Vec<_>>(),
    })
}

fn xml_escape(s: &str) -> String {
    s.chars()
        .filter(|c| !c.is_control() || *c == '\n' || *c == '\t')
        .map(|c| match c {
            '&' => "&amp;".to_owned(),
            '<' => "&lt;".to_owned(),
            '>' => "&gt;".to_owned(),
            '"' => "&quot;".to_owned(),
            '\'' => "&apos;".to_owned(),
            c => c.to_string(),
        })
        .collect()
}

/// JUnit XML: one testcase per case; FAIL is a `<failure>`, WARN is kept in `<system-out>`.
pub fn junit(target: &Target, results: &[CaseResult]) -> String {
    let (_, _, f) = counts(results);
    let total: f64 = results.iter().map(|r| r.elapsed.as_secs_f64()).sum();
    let suite = format!(
        "jusinfer check {} {}",
        target.dialect.as_str(),
        target.model
    );
    let mut out = String::from("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n");
    let _ = writeln!(
        out,
        "<testsuites><testsuite name=\"{}\" tests=\"{}\" failures=\"{f}\" errors=\"0\" time=\"{total:.3}\">",
        xml_escape(&suite),
        results.len()
    );
    for r in results {
        let _ = write!(
            out,
            "<testcase classname=\"{}\" name=\"{}\" time=\"{:.3}\">",
            xml_escape(&suite),
            xml_escape(r.name),
            r.elapsed.as_secs_f64()
        );
        match r.verdict {
            Verdict::Fail => {
                let _ = write!(
                    out,
                    "<failure message=\"{}\">{}</failure>",
                    xml_escape(&r.evidence),
                    xml_escape(&r.evidence)
                );
            }
            Verdict::Warn => {
                let _ = write!(
                    out,
                    "<system-out>WARN: {}</system-out>",
                    xml_escape(&r.evidence)
                );
            }
            Verdict::Pass => {}
        }
        let _ = writeln!(out, "</testcase>");
    }
    out.push_str("</testsuite></testsuites>\n");
    out
}

/// Writes every exchange of every case under `dir`: `NN-case-K.request` and
/// `NN-case-K.response` (raw bytes; keys redacted).
pub fn save(dir: &Path, results: &[CaseResult]) -> std::io::Result<()> {
    std::fs::create_dir_all(dir)?;
    for (i, r) in results.iter().enumerate() {
        let slug: String = r
            .name
            .chars()
            .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
            .collect();
        for (k, ex) in r.exchanges.iter().enumerate() {
            let base = format!("{:02}-{slug}-{}", i + 1, k + 1);
            std::fs::write(dir.join(format!("{base}.request")), &ex.request)?;
            let mut resp = ex.response.clone();
            if let Some(e) = &ex.error {
                resp.extend_from_slice(format!("\n[jusinfer check: {e}]\n").as_bytes());
            }
            std::fs::write(dir.join(format!("{base}.response")), resp)?;
        }
    }
    Ok(())
}
