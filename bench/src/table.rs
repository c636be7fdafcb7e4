//! The one table the bench prints: figure, how it was measured, value, target, verdict.

use std::fmt::Write as _;

/// How a figure compares with its target.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Within the target.
    Met,
    /// Outside the target.
    Missed,
    /// No target: a figure for information.
    Info,
    /// Not measured, with the reason.
    Skipped(String),
}

impl Verdict {
    /// `Met` when `ok`, else `Missed`.
    pub fn from_bool(ok: bool) -> Verdict {
        if ok {
            Verdict::Met
        } else {
            Verdict::Missed
        }
    }

    fn text(&self) -> String {
        match self {
            Verdict::Met => "met".to_owned(),
            Verdict::Missed => "MISSED".to_owned(),
            Verdict::Info => "-".to_owned(),
            Verdict::Skipped(why) => format!("skipped: {why}"),
        }
    }
}

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
    /// A row.
    pub fn new(
        figure: impl Into<String>,
        how: impl Into<String>,
        value: impl Into<String>,
        target: impl Into<String>,
        verdict: Verdict,
    ) -> Row {
        Row {
            figure: figure.into(),
            how: how.into(),
            value: value.into(),
            target: target.into(),
            verdict,
        }
    }

    /// A row for a figure that was not measured.
    pub fn skipped(figure: impl Into<String>, target: impl Into<String>, why: &str) -> Row {
        Row::new(figure, "-", "-", target, Verdict::Skipped(why.to_owned()))
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

    /// Guards the table shape: aligned columns, escaped pipes, verdict words.
    #[test]
    fn renders_an_aligned_markdown_table() {
        let rows = vec![
            Row::new("a|b", "how", "1 ms", "<= 2 ms", Verdict::Met),
            Row::new("longer figure", "x", "3", "<= 2", Verdict::Missed),
            Row::skipped("c", "t", "no daemon"),
        ];
        let text = render_rows(&rows);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 5);
        assert!(lines
            .iter()
            .all(|l| l.chars().count() == lines[0].chars().count()));
        assert!(text.contains("a\\|b"));
        assert!(text.contains("MISSED"));
        assert!(text.contains("skipped: no daemon"));
    }
}
