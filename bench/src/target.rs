//! Every performance target as one value: the limits a verdict checks, which also render the table's target and value text.

use std::fmt;

/// The unit of a measured value; it decides how the value is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unit {
    /// CPU-seconds per minute of wall time.
    CpuSecondsPerMinute,
    /// Megabytes (10^6 bytes).
    Megabytes,
    /// Milliseconds.
    Milliseconds,
    /// Requests per second.
    RequestsPerSecond,
    /// Percent of one core.
    PercentOfCore,
    /// A multiple of `ps`'s time for the same work.
    TimesPs,
    /// A number of things, written before the limit's name (`0 errors`).
    Count,
}

impl Unit {
    /// The unit's text after a number (empty for a count).
    fn suffix(self) -> &'static str {
        match self {
            Unit::CpuSecondsPerMinute => " CPU-s/min",
            Unit::Megabytes => " MB",
            Unit::Milliseconds => " ms",
            Unit::RequestsPerSecond => " req/s",
            Unit::PercentOfCore => " % of one core",
            Unit::TimesPs => " x ps's time",
            Unit::Count => "",
        }
    }

    /// Decimals of a measured value in this unit (about the resolution it is measured with).
    fn decimals(self) -> usize {
        match self {
            Unit::CpuSecondsPerMinute | Unit::Milliseconds => 3,
            Unit::TimesPs => 2,
            Unit::Megabytes | Unit::PercentOfCore => 1,
            Unit::RequestsPerSecond | Unit::Count => 0,
        }
    }
}

/// How a value must compare with a limit's bound.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cmp {
    /// At most the bound.
    AtMost,
    /// At least the bound.
    AtLeast,
    /// Strictly below the bound.
    Below,
}

impl Cmp {
    fn sign(self) -> &'static str {
        match self {
            Cmp::AtMost => "≤",
            Cmp::AtLeast => "≥",
            Cmp::Below => "<",
        }
    }

    fn holds(self, value: f64, bound: f64) -> bool {
        match self {
            Cmp::AtMost => value <= bound,
            Cmp::AtLeast => value >= bound,
            Cmp::Below => value < bound,
        }
    }
}

/// One bound on one measured value, e.g. `p99 ≤ 2 ms`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Limit {
    /// What the value is (`p99`, `errors`), or empty when the figure has one value.
    pub name: &'static str,
    /// How the value compares with the bound.
    pub cmp: Cmp,
    /// The bound, in `unit`.
    pub bound: f64,
    /// The unit of the bound and of the value.
    pub unit: Unit,
}

impl Limit {
    /// `name ≤ bound unit`.
    pub const fn at_most(name: &'static str, bound: f64, unit: Unit) -> Limit {
        Limit {
            name,
            cmp: Cmp::AtMost,
            bound,
            unit,
        }
    }

    /// `name ≥ bound unit`.
    pub const fn at_least(name: &'static str, bound: f64, unit: Unit) -> Limit {
        Limit {
            name,
            cmp: Cmp::AtLeast,
            bound,
            unit,
        }
    }

    /// `name < bound unit`.
    pub const fn below(name: &'static str, bound: f64, unit: Unit) -> Limit {
        Limit {
            name,
            cmp: Cmp::Below,
            bound,
            unit,
        }
    }

    /// None of `name` (`0 errors`): a count that must stay at zero.
    pub const fn none(name: &'static str) -> Limit {
        Limit::at_most(name, 0.0, Unit::Count)
    }

    /// A measured value in this limit's unit, e.g. `p99 0.142 ms` or `3 errors`.
    fn show(&self, value: f64) -> String {
        let number = number(value, self.unit.decimals());
        match (self.unit, self.name) {
            (Unit::Count, name) => format!("{number} {name}"),
            (unit, "") => format!("{number}{}", unit.suffix()),
            (unit, name) => format!("{name} {number}{}", unit.suffix()),
        }
    }
}

impl fmt::Display for Limit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let bound = number(self.bound, shortest_decimals(self.bound));
        match (self.unit, self.cmp, self.name) {
            (Unit::Count, Cmp::AtMost, name) if self.bound == 0.0 => write!(f, "0 {name}"),
            (Unit::Count, cmp, name) => write!(f, "{name} {} {bound}", cmp.sign()),
            (unit, cmp, "") => write!(f, "{} {bound}{}", cmp.sign(), unit.suffix()),
            (unit, cmp, name) => write!(f, "{name} {} {bound}{}", cmp.sign(), unit.suffix()),
        }
    }
}

/// A figure's target: every limit its values must meet, in the order the values are given.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Target(pub &'static [Limit]);

/// How measured values compare with a target.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Judgement {
    /// Every value within its limit.
    Met,
    /// At least one value outside its limit.
    Missed,
    /// A value is missing or not a number, so nothing can be said.
    NoValue(String),
}

impl Target {
    /// Judges `values`, one per limit in order. A value outside its limit is a miss whatever
    /// the others are; otherwise a missing or non-finite value leaves the figure unjudged.
    pub fn judge(&self, values: &[f64]) -> Judgement {
        let pairs = || self.0.iter().zip(values);
        if pairs().any(|(l, v)| v.is_finite() && !l.cmp.holds(*v, l.bound)) {
            return Judgement::Missed;
        }
        if values.len() != self.0.len() {
            return Judgement::NoValue(format!(
                "{} values for {} limits",
                values.len(),
                self.0.len()
            ));
        }
        if let Some((l, v)) = pairs().find(|(_, v)| !v.is_finite()) {
            let what = if l.name.is_empty() {
                "the value"
            } else {
                l.name
            };
            return Judgement::NoValue(format!("{what} came out as {v}"));
        }
        Judgement::Met
    }

    /// The measured values written in the limits' units, e.g. `median 0.081 ms, p99 0.142 ms`.
    pub fn show(&self, values: &[f64]) -> String {
        if values.is_empty() {
            return "-".to_owned();
        }
        self.0
            .iter()
            .zip(values)
            .map(|(l, v)| l.show(*v))
            .collect::<Vec<_>>()
            .join(", ")
    }
}

impl fmt::Display for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, l) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str(", ")?;
            }
            write!(f, "{l}")?;
        }
        Ok(())
    }
}

/// The fewest decimals (up to 6) that write `x` exactly enough to read it back.
fn shortest_decimals(x: f64) -> usize {
    (0..6)
        .find(|d| {
            let scale = 10f64.powi(*d as i32);
            ((x * scale).round() / scale - x).abs() < 1e-9
        })
        .unwrap_or(6)
}

/// `x` with `decimals` decimals and thousands separators (`20,000`, `0.150`, `NaN`).
fn number(x: f64, decimals: usize) -> String {
    if !x.is_finite() {
        return x.to_string();
    }
    let text = format!("{:.*}", decimals, x.abs());
    let (int, frac) = text.split_once('.').map_or((text.as_str(), ""), |p| p);
    let mut grouped = String::new();
    for (i, c) in int.chars().enumerate() {
        if i > 0 && (int.len() - i) % 3 == 0 {
            grouped.push(',');
        }
        grouped.push(c);
    }
    let sign = if x < 0.0 && text.chars().any(|c| c.is_ascii_digit() && c != '0') {
        "-"
    } else {
        ""
    };
    if frac.is_empty() {
        format!("{sign}{grouped}")
    } else {
        format!("{sign}{grouped}.{frac}")
    }
}

/// Idle CPU with every collector at 1 s.
pub const IDLE_1S: Target = Target(&[Limit::at_most("", 0.2, Unit::CpuSecondsPerMinute)]);
/// Idle CPU with every collector at 5 s.
pub const IDLE_5S: Target = Target(&[Limit::at_most("", 0.04, Unit::CpuSecondsPerMinute)]);
/// Idle CPU with 50 idle containers, every collector at 1 s.
pub const IDLE_CONTAINERS: Target = Target(&[Limit::at_most("", 0.4, Unit::CpuSecondsPerMinute)]);
/// The Docker daemons' extra CPU caused by vitals with 50 containers.
pub const DOCKERD_EXTRA: Target = Target(&[Limit::at_most("", 0.1, Unit::CpuSecondsPerMinute)]);
/// Extra CPU for writing the durable history, every collector at 5 s (the default config).
pub const HISTORY_EXTRA_5S: Target = Target(&[Limit::at_most("", 0.02, Unit::CpuSecondsPerMinute)]);
/// Extra resident memory for the durable history, every collector at 5 s.
pub const HISTORY_EXTRA_RSS: Target = Target(&[Limit::at_most("", 4.0, Unit::Megabytes)]);
/// Extra CPU for writing the durable history, every collector at 1 s with 50 idle containers.
pub const HISTORY_EXTRA_1S_CONTAINERS: Target =
    Target(&[Limit::at_most("", 0.05, Unit::CpuSecondsPerMinute)]);
/// The durable history's file after 30 days (default config, 100 containers): at most half
/// the default 256 MiB budget (134.2 MB), which leaves room to spare.
pub const HISTORY_DISK_30D: Target = Target(&[Limit::at_most("", 134.2, Unit::Megabytes)]);
/// 24 h of one stored series at a 1-minute step.
pub const HISTORY_QUERY_DAY: Target = Target(&[
    Limit::below("median", 20.0, Unit::Milliseconds),
    Limit::none("errors"),
]);
/// The dashboard's 30-day view: every chart's request and the events, together.
pub const HISTORY_QUERY_30D: Target = Target(&[
    Limit::below("median", 300.0, Unit::Milliseconds),
    Limit::none("errors"),
]);
/// Points the dashboard gets per chart line, whatever the range.
pub const HISTORY_POINTS: Target =
    Target(&[Limit::at_most("points per chart line", 1000.0, Unit::Count)]);
/// Resident memory with every plugin loaded.
pub const RSS: Target = Target(&[Limit::at_most("", 15.0, Unit::Megabytes)]);
/// Latency of the full snapshot on one connection.
pub const LATENCY: Target = Target(&[
    Limit::at_most("median", 0.3, Unit::Milliseconds),
    Limit::at_most("p99", 2.0, Unit::Milliseconds),
    Limit::none("errors"),
]);
/// Throughput of the full snapshot at 100 connections.
pub const THROUGHPUT: Target = Target(&[
    Limit::at_least("", 20_000.0, Unit::RequestsPerSecond),
    Limit::none("errors"),
]);
/// vitals' extra CPU while the event stream has its clients.
pub const SSE_CPU: Target = Target(&[Limit::at_most("", 3.0, Unit::PercentOfCore)]);
/// Every stream client saw every update.
pub const SSE_EVERY_UPDATE: Target = Target(&[
    Limit::none("streams not opened"),
    Limit::none("missed updates"),
    Limit::none("clients behind the final snapshot"),
    Limit::none("stream errors"),
]);
/// Health probes while plugins fail.
pub const HEALTH_UNDER_FAULTS: Target = Target(&[
    Limit::none("failed probes"),
    Limit::at_most("p99", 2.0, Unit::Milliseconds),
]);
/// The docker collector's cost per collect with 100 containers.
pub const DOCKER_100: Target = Target(&[
    Limit::at_most("wall", 50.0, Unit::Milliseconds),
    Limit::at_most("CPU", 5.0, Unit::Milliseconds),
]);
/// The process collector's time against `ps` with 5,000 processes.
pub const PROCESSES_5000: Target = Target(&[Limit::below("", 0.5, Unit::TimesPs)]);

#[cfg(test)]
mod tests {
    use super::*;

    /// Guards the target text: it is written from the bound and unit the verdict checks.
    #[test]
    fn targets_render_from_their_limits() {
        assert_eq!(IDLE_1S.to_string(), "≤ 0.2 CPU-s/min");
        assert_eq!(IDLE_5S.to_string(), "≤ 0.04 CPU-s/min");
        assert_eq!(RSS.to_string(), "≤ 15 MB");
        assert_eq!(THROUGHPUT.to_string(), "≥ 20,000 req/s, 0 errors");
        assert_eq!(LATENCY.to_string(), "median ≤ 0.3 ms, p99 ≤ 2 ms, 0 errors");
        assert_eq!(PROCESSES_5000.to_string(), "< 0.5 x ps's time");
        assert_eq!(SSE_CPU.to_string(), "≤ 3 % of one core");
    }

    /// Guards the value text: each value in its limit's unit and order.
    #[test]
    fn values_render_in_the_limits_units() {
        assert_eq!(IDLE_1S.show(&[0.15]), "0.150 CPU-s/min");
        assert_eq!(
            LATENCY.show(&[0.0814, 0.142, 0.0]),
            "median 0.081 ms, p99 0.142 ms, 0 errors"
        );
        assert_eq!(THROUGHPUT.show(&[63_095.4, 2.0]), "63,095 req/s, 2 errors");
        assert_eq!(DOCKERD_EXTRA.show(&[-0.114]), "-0.114 CPU-s/min");
        assert_eq!(RSS.show(&[]), "-");
    }

    /// Guards the comparison at and past each bound, and that the verdict uses the same bound the text shows.
    #[test]
    fn judging_uses_the_rendered_bound() {
        assert_eq!(IDLE_1S.judge(&[0.2]), Judgement::Met);
        assert_eq!(IDLE_1S.judge(&[0.201]), Judgement::Missed);
        assert_eq!(THROUGHPUT.judge(&[20_000.0, 0.0]), Judgement::Met);
        assert_eq!(THROUGHPUT.judge(&[19_999.0, 0.0]), Judgement::Missed);
        assert_eq!(THROUGHPUT.judge(&[30_000.0, 1.0]), Judgement::Missed);
        assert_eq!(PROCESSES_5000.judge(&[0.5]), Judgement::Missed);
        assert_eq!(PROCESSES_5000.judge(&[0.49]), Judgement::Met);
        for t in [
            IDLE_1S,
            IDLE_5S,
            IDLE_CONTAINERS,
            DOCKERD_EXTRA,
            RSS,
            SSE_CPU,
        ] {
            let l = t.0[0];
            let bound: f64 = t
                .to_string()
                .split_whitespace()
                .nth(1)
                .expect("bound")
                .replace(',', "")
                .parse()
                .expect("number");
            assert_eq!(bound, l.bound, "{t}");
        }
    }

    /// Guards missing values: a NaN or absent value is no verdict, but a miss elsewhere still counts.
    #[test]
    fn missing_values_are_not_judged() {
        assert!(matches!(
            LATENCY.judge(&[f64::NAN, f64::NAN, 0.0]),
            Judgement::NoValue(why) if why.contains("median")
        ));
        assert_eq!(LATENCY.judge(&[f64::NAN, f64::NAN, 5.0]), Judgement::Missed);
        assert!(matches!(RSS.judge(&[]), Judgement::NoValue(_)));
    }
}
