//! The `/metrics` figure: a Prometheus scrape served from the exposition kept for the store's version.

use std::time::Duration;

use crate::host::Vitals;
use crate::table::Row;
use crate::target::{Limit, Target, Unit};
use crate::verdict::Reading;
use crate::{load, Windows};

/// Latency of a `/metrics` scrape served from the exposition kept for the store's version.
pub const METRICS_CACHED: Target = Target(&[
    Limit::at_most("median", 2.0, Unit::Milliseconds),
    Limit::none("errors"),
]);

/// `GET /metrics` back to back on one connection against `vitals` (every collector at 1 s):
/// between two collects every scrape is served from the kept text, so the median is the
/// cached scrape; the p99 and max include the scrapes that rendered after a collect.
pub async fn cached_metrics_row(vitals: &Vitals, windows: Windows) -> Row {
    let run = windows.load.max(Duration::from_secs(5));
    eprintln!("/metrics latency: 1 connection, {} s", run.as_secs());
    let tally = load::run(&vitals.target("/metrics"), 1, run, None).await;
    Row::judged(
        "GET /metrics latency (served from the exposition kept per store version)",
        format!(
            "1 keep-alive connection back to back for {} s, every collector at 1 s; {} scrapes, {:.1} kB each, {} errors{}; p99 {:.2} ms and max {:.2} ms include the scrapes that rendered after a collect",
            run.as_secs(),
            tally.answered(),
            tally.mean_body_bytes() / 1e3,
            tally.errors(),
            tally.error_note(),
            tally.quantile_ms(0.99),
            tally.max_ms()
        ),
        &METRICS_CACHED,
        &Reading::of(vec![tally.quantile_ms(0.5), tally.errors() as f64]),
    )
}
