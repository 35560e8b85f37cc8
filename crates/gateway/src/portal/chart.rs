//! Stacked bar charts as inline SVG, drawn on the server: no script, no library, readable
//! by a screen reader (a title, a one-line summary, and the numbers as a table beside it).
//! Pure: data in, markup out.

use maud::{html, Markup};

/// One stacked layer of a chart.
pub(super) struct Series<'a> {
    pub name: &'a str,
    /// A CSS class that colours it (`s1`, `s2`).
    pub class: &'a str,
    /// One value per bucket.
    pub values: Vec<f64>,
}

pub(super) struct Chart<'a> {
    /// The element id (tests and links find the chart by it).
    pub id: &'a str,
    pub title: &'a str,
    /// One label per bucket.
    pub labels: Vec<String>,
    pub series: Vec<Series<'a>>,
    /// Writes a value (tooltips, the table).
    pub format: fn(f64) -> String,
    /// Writes an axis tick (shorter).
    pub axis: fn(f64) -> String,
    /// The smallest gridline step (1 for counts: no "0.25 requests").
    pub min_step: f64,
}

// A small canvas, so that its text stays legible when the chart is scaled to a third of
// a laptop screen or a phone's width.
const W: f64 = 400.0;
const H: f64 = 170.0;
const LEFT: f64 = 56.0;
const BOTTOM: f64 = 20.0;
const TOP: f64 = 8.0;

/// A coordinate to a tenth of a pixel (shorter markup).
fn r(v: f64) -> f64 {
    (v * 10.0).round() / 10.0
}

/// The smallest "round" number (1, 2 or 5 times a power of ten) at or above `v`.
fn nice_ceiling(v: f64) -> f64 {
    if v <= 0.0 || !v.is_finite() {
        return 1.0;
    }
    let p = 10f64.powf(v.log10().floor());
    [1.0, 2.0, 5.0, 10.0]
        .iter()
        .map(|m| m * p)
        .find(|c| *c >= v * (1.0 - 1e-9))
        .unwrap_or(10.0 * p)
}

impl Chart<'_> {
    fn total(&self, i: usize) -> f64 {
        self.series
            .iter()
            .map(|s| s.values.get(i).copied().unwrap_or(0.0))
            .sum()
    }

    /// Bucket `i`'s layers bottom up: class, top and height, each at least a pixel high.
    fn stack(&self, i: usize, plot_h: f64, max: f64) -> Vec<(&str, f64, f64)> {
        let mut base = 0.0;
        let mut out = Vec::new();
        for s in &self.series {
            let v = s.values.get(i).copied().unwrap_or(0.0);
            if v > 0.0 {
                let h = plot_h * v / max;
                out.push((
                    s.class,
                    r(TOP + plot_h - plot_h * base / max - h),
                    r(h.max(1.0)),
                ));
            }
            base += v;
        }
        out
    }

    /// The chart: an SVG with one `<g class="bar">` per bucket (its total in `data-total`,
    /// its numbers in a `<title>` tooltip), and the non-empty buckets as a table.
    pub(super) fn render(&self) -> Markup {
        let n = self.labels.len();
        let totals: Vec<f64> = (0..n).map(|i| self.total(i)).collect();
        let sum: f64 = totals.iter().sum();
        // Four gridlines a round step apart: 0, 1, 2, 3, 4 or 0, 50, 100, 150, 200.
        let step =
            nice_ceiling(totals.iter().copied().fold(0.0, f64::max) / 4.0).max(self.min_step);
        let max = step * 4.0;
        let plot_w = W - LEFT - 8.0;
        let plot_h = H - TOP - BOTTOM;
        let slot = if n == 0 { plot_w } else { plot_w / n as f64 };
        let bar_w = r((slot * 0.8).max(1.0));
        // About six labels along the axis whatever the number of buckets.
        let every = n.div_ceil(6).max(1);
        let peak = totals
            .iter()
            .enumerate()
            .max_by(|a, b| a.1.total_cmp(b.1))
            .filter(|(_, v)| **v > 0.0);
        let summary = match peak {
            Some((i, v)) => format!(
                "{} in all over {n} buckets; the most, {}, at {}.",
                (self.format)(sum),
                (self.format)(*v),
                self.labels[i]
            ),
            None => "Nothing in this period.".to_owned(),
        };
        let title_id = format!("{}-title", self.id);
        let desc_id = format!("{}-desc", self.id);
        html! {
            figure.chart {
                figcaption #(title_id) { (self.title) }
                svg #(self.id) role="img" aria-labelledby=(title_id) aria-describedby=(desc_id)
                    viewBox=(format!("0 0 {W} {H}")) data-sum=(sum) data-buckets=(n) {
                    desc #(desc_id) { (summary) }
                    @for k in 0..=4 {
                        @let v = step * f64::from(k);
                        @let y = r(TOP + plot_h - plot_h * f64::from(k) / 4.0);
                        line.grid x1=(LEFT) x2=(W - 8.0) y1=(y) y2=(y) {}
                        text.tick x=(LEFT - 6.0) y=(y + 4.0) text-anchor="end" { ((self.axis)(v)) }
                    }
                    @for i in 0..n {
                        @let x = r(LEFT + slot * i as f64 + (slot - bar_w) / 2.0);
                        g.bar data-total=(totals[i]) data-label=(self.labels[i]) {
                            title {
                                (self.labels[i]) ": "
                                @for (j, s) in self.series.iter().enumerate() {
                                    @if j > 0 { ", " }
                                    (s.name) " " ((self.format)(s.values.get(i).copied().unwrap_or(0.0)))
                                }
                            }
                            @for (class, y, h) in self.stack(i, plot_h, max) {
                                rect class=(class) x=(x) y=(y) width=(bar_w) height=(h) {}
                            }
                        }
                        @if i % every == 0 {
                            text.tick x=(r(x + bar_w / 2.0)) y=(H - 6.0) text-anchor="middle" { (self.labels[i]) }
                        }
                    }
                }
                ul.legend aria-hidden="true" {
                    @for s in &self.series {
                        li { span class=(format!("swatch {}", s.class)) {} (s.name) }
                    }
                }
                details {
                    summary { "Numbers" }
                    div.scroll {
                        table {
                            caption.visually-hidden { (self.title) }
                            thead { tr {
                                th scope="col" { "Bucket" }
                                @for s in &self.series { th scope="col" { (s.name) } }
                            } }
                            tbody {
                                @for i in (0..n).filter(|i| totals[*i] > 0.0) {
                                    tr {
                                        th scope="row" { (self.labels[i]) }
                                        @for s in &self.series {
                                            td { ((self.format)(s.values.get(i).copied().unwrap_or(0.0))) }
                                        }
                                    }
                                }
                            }
                        }
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chart(values: Vec<f64>, errors: Vec<f64>) -> String {
        Chart {
            id: "c",
            title: "Requests <by hour>",
            labels: (0..values.len()).map(|i| format!("{i:02}:00")).collect(),
            series: vec![
                Series {
                    name: "ok",
                    class: "s1",
                    values,
                },
                Series {
                    name: "errors",
                    class: "s2",
                    values: errors,
                },
            ],
            format: |v| format!("{v}"),
            axis: |v| format!("{v}"),
            min_step: 1.0,
        }
        .render()
        .into_string()
    }

    #[test]
    fn bars_carry_their_totals_and_stack() {
        let svg = chart(vec![0.0, 3.0, 1.0], vec![0.0, 1.0, 0.0]);
        assert!(svg.contains(r#"data-sum="5""#), "{svg}");
        assert!(
            svg.contains(r#"data-total="4" data-label="01:00""#),
            "{svg}"
        );
        assert_eq!(svg.matches("<g class=\"bar\"").count(), 3);
        // Two layers in the second bar, one in the third, none in the first.
        assert_eq!(svg.matches("<rect class=\"s1\"").count(), 2);
        assert_eq!(svg.matches("<rect class=\"s2\"").count(), 1);
        // SVG elements are closed (an unclosed `<rect>` would swallow the next ones).
        assert_eq!(svg.matches("<rect").count(), svg.matches("</rect>").count());
        assert!(svg.contains("the most, 4, at 01:00."));
        // Gridlines at 0, 1, 2, 3, 4.
        for t in ["0", "1", "2", "3", "4"] {
            assert!(
                svg.contains(&format!("text-anchor=\"end\">{t}</text>")),
                "{svg}"
            );
        }
        // One request: still whole-number gridlines.
        let one = chart(vec![1.0], vec![0.0]);
        assert!(
            one.contains("text-anchor=\"end\">1</text>") && !one.contains(">0.25<"),
            "{one}"
        );
        // The title is escaped.
        assert!(svg.contains("Requests &lt;by hour&gt;"));
        // The table lists only buckets with something in them.
        assert_eq!(svg.matches("<th scope=\"row\">").count(), 2);
    }

    #[test]
    fn empty_chart_says_so() {
        let svg = chart(vec![0.0; 4], vec![0.0; 4]);
        assert!(svg.contains("Nothing in this period."));
        assert!(!svg.contains("<rect"));
    }

    #[test]
    fn axis_tops_are_round() {
        assert_eq!(nice_ceiling(0.0), 1.0);
        assert_eq!(nice_ceiling(3.0), 5.0);
        assert_eq!(nice_ceiling(5.0), 5.0);
        assert_eq!(nice_ceiling(7.2), 10.0);
        assert_eq!(nice_ceiling(0.0031), 0.005);
        assert_eq!(nice_ceiling(1200.0), 2000.0);
    }
}
