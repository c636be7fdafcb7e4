//! The one table the bench prints: figure, how it was measured, value, target, verdict.

use std::fmt::Write as _;

use crate::target::Target;
use crate::verdict::{Reading, Verdict};

/// One line of the table.
#[derive(Debug, Clone)]
pub struct Row {
    /// What is measured.
    pub figure: String,
    /// How.
    pub how: String,
    /// The measured value with its unit.
    pub value: String,
    /// The target with its unit.
    pub target: String,
    /// Whether the value meets the target.
    pub verdict: Verdict,
}

impl Row {
    /// A figure judged against `target`: value, target text and verdict all come from the
    /// reading and the target's limits.
    pub fn judged(
        figure: impl Into<String>,
        how: impl Into<String>,
        target: &Target,
        reading: &Reading,
    ) -> Row {
        Row {
            figure: figure.into(),
            how: how.into(),
            value: target.show(&reading.values),
            target: target.to_string(),
            verdict: reading.verdict(target),
        }
    }

    /// A figure without a target, for information.
    pub fn info(figure: impl Into<String>, how: impl Into<String>, value: String) -> Row {
        Row {
            figure: figure.into(),
            how: how.into(),
            value,
            target: "(none)".to_owned(),
            verdict: Verdict::Info,
        }
    }

    /// A figure whose measurement failed because vitals did not do its part: a miss.
    pub fn failed(
        figure: impl Into<String>,
        how: impl Into<String>,
        target: &Target,
        error: &str,
    ) -> Row {
        Row {
            figure: figure.into(),
            how: how.into(),
            value: format!("failed: {error}"),
            target: target.to_string(),
            verdict: Verdict::Missed,
        }
    }

    /// A figure that was not measured, and why.
    pub fn not_measured(figure: impl Into<String>, target: &Target, why: &str) -> Row {
        Row::judged(figure, "-", target, &Reading::nothing(why))
    }
}

fn cell(s: &str) -> String {
    s.replace('|', "\\|").replace('\n', " ")
}

/// Renders rows as a Markdown table (it pastes into docs/benchmarks.md as is).
pub fn render(headers: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = headers.iter().map(|h| h.chars().count()).collect();
    for r in rows {
        for (w, c) in widths.iter_mut().zip(r) {
            *w = (*w).max(cell(c).chars().count());
        }
    }
    let mut out = String::new();
    let line = |cells: Vec<String>, out: &mut String| {
        out.push('|');
        for (c, w) in cells.iter().zip(&widths) {
            let _ = write!(out, " {c:<w$} |");
        }
        out.push('\n');
    };
    line(headers.iter().map(|h| (*h).to_owned()).collect(), &mut out);
    line(widths.iter().map(|w| "-".repeat(*w)).collect(), &mut out);
    for r in rows {
        line(r.iter().map(|c| cell(c)).collect(), &mut out);
    }
    out
}

/// Renders the figures table.
pub fn render_rows(rows: &[Row]) -> String {
    let cells: Vec<Vec<String>> = rows
        .iter()
        .map(|r| {
            vec![
                r.figure.clone(),
                r.how.clone(),
                r.value.clone(),
                r.target.clone(),
                r.verdict.text(),
            ]
        })
        .collect();
    render(
        &["figure", "how measured", "value", "target", "verdict"],
        &cells,
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::target::{Limit, Unit};

    /// Guards the table shape: aligned columns, escaped pipes, verdict words.
    #[test]
    fn renders_an_aligned_markdown_table() {
        const T: Target = Target(&[Limit::at_most("", 2.0, Unit::Milliseconds)]);
        let t = T;
        let rows = vec![
            Row::judged("a|b", "how", &t, &Reading::of(vec![1.0])),
            Row::judged("longer figure", "x", &t, &Reading::of(vec![3.0])),
            Row::not_measured("c", &t, "no daemon"),
        ];
        let text = render_rows(&rows);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 5);
        assert!(lines
            .iter()
            .all(|l| l.chars().count() == lines[0].chars().count()));
        assert!(text.contains("a\\|b"));
        assert!(text.contains("| 1.000 ms "), "{text}");
        assert!(text.contains("| ≤ 2 ms "), "{text}");
        assert!(text.contains("MISSED"));
        assert!(text.contains("not measured: no daemon"));
    }
}
