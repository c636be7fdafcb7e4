//! Request metrics of the API itself: counts, status classes, bytes and latency per route.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::{Duration, SystemTime};

use hdrhistogram::Histogram;
use serde::Serialize;

/// The label a request is counted under: its route's, or `unmatched`.
pub fn route_label(method: &str, path: &str) -> &'static str {
    super::routes::find(method, path).map_or("unmatched", |r| r.label)
}

struct RouteStats {
    count: u64,
    classes: [u64; 5],
    statuses: BTreeMap<u16, u64>,
    bytes_sent: u64,
    latency_us: Histogram<u64>,
}

impl RouteStats {
    fn new() -> Self {
        Self {
            count: 0,
            classes: [0; 5],
            statuses: BTreeMap::new(),
            bytes_sent: 0,
            // 1 µs .. 1 hour, 2 significant figures.
            latency_us: Histogram::new_with_bounds(1, 3_600_000_000, 2)
                .unwrap_or_else(|_| Histogram::new(2).unwrap_or_else(|_| unreachable!())),
        }
    }
}

struct Inner {
    since: SystemTime,
    routes: BTreeMap<&'static str, RouteStats>,
}

/// Counters since start or the last reset.
pub struct RequestMetrics {
    inner: Mutex<Inner>,
}

/// Latency figures of one route, in milliseconds.
#[derive(Debug, Serialize)]
pub struct Latency {
    /// Median.
    pub p50: f64,
    /// 90th percentile.
    pub p90: f64,
    /// 99th percentile.
    pub p99: f64,
    /// Slowest.
    pub max: f64,
    /// Mean.
    pub mean: f64,
}

/// The figures of one route.
#[derive(Debug, Serialize)]
pub struct RouteReport {
    /// Requests answered.
    pub count: u64,
    /// Responses per status class (`2xx`, `4xx`, …).
    pub status_classes: BTreeMap<String, u64>,
    /// Responses per status code.
    pub statuses: BTreeMap<u16, u64>,
    /// Body bytes sent (streams excluded).
    pub bytes_sent: u64,
    /// Time to the response head.
    pub latency_ms: Latency,
}

/// The request metrics document.
#[derive(Debug, Serialize)]
pub struct Report {
    /// When counting started (start or last reset), RFC 3339.
    pub since: String,
    /// Seconds since then.
    pub window_seconds: f64,
    /// Requests answered, all routes.
    pub total: u64,
    /// Per route, keyed `METHOD template`.
    pub routes: BTreeMap<&'static str, RouteReport>,
}

impl Default for RequestMetrics {
    fn default() -> Self {
        Self {
            inner: Mutex::new(Inner {
                since: SystemTime::now(),
                routes: BTreeMap::new(),
            }),
        }
    }
}

impl RequestMetrics {
    /// Counts one answered request.
    pub fn record(&self, route: &'static str, status: u16, bytes: u64, latency: Duration) {
        let mut inner = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        let r = inner.routes.entry(route).or_insert_with(RouteStats::new);
        r.count += 1;
        let class = usize::from(status / 100).clamp(1, 5) - 1;
        r.classes[class] += 1;
        *r.statuses.entry(status).or_default() += 1;
        r.bytes_sent += bytes;
        let us = (latency.as_micros() as u64).clamp(1, 3_600_000_000);
        let _ = r.latency_us.record(us);
    }

    /// Forgets every count and starts a new window.
    pub fn reset(&self) {
        let mut inner = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        inner.routes.clear();
        inner.since = SystemTime::now();
    }

    /// The figures so far.
    pub fn report(&self) -> Report {
        let inner = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        let ms = |us: u64| us as f64 / 1000.0;
        let routes: BTreeMap<&'static str, RouteReport> = inner
            .routes
            .iter()
            .map(|(k, r)| {
                let h = &r.latency_us;
                (
                    *k,
                    RouteReport {
                        count: r.count,
                        status_classes: r
                            .classes
                            .iter()
                            .enumerate()
                            .filter(|(_, n)| **n > 0)
                            .map(|(i, n)| (format!("{}xx", i + 1), *n))
                            .collect(),
                        statuses: r.statuses.clone(),
                        bytes_sent: r.bytes_sent,
                        latency_ms: Latency {
                            p50: ms(h.value_at_quantile(0.5)),
                            p90: ms(h.value_at_quantile(0.9)),
                            p99: ms(h.value_at_quantile(0.99)),
                            max: ms(h.max()),
                            mean: h.mean() / 1000.0,
                        },
                    },
                )
            })
            .collect();
        Report {
            since: crate::store::rfc3339(inner.since),
            window_seconds: inner.since.elapsed().map_or(0.0, |d| d.as_secs_f64()),
            total: routes.values().map(|r| r.count).sum(),
            routes,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Guards route labelling: templates match, anything else is bounded to `unmatched`.
    #[test]
    fn labels_are_templates() {
        assert_eq!(
            route_label("GET", "/admin/monitor/system"),
            "GET /admin/monitor/system"
        );
        assert_eq!(
            route_label("PUT", "/admin/monitor/collectors/cpu"),
            "PUT /admin/monitor/collectors/{name}"
        );
        assert_eq!(route_label("DELETE", "/admin/monitor/system"), "unmatched");
        assert_eq!(route_label("GET", "/admin/monitor/nope/x"), "unmatched");
        assert_eq!(
            super::super::routes::allowed_methods("/admin/monitor/collectors/cpu"),
            vec!["GET", "PUT"]
        );
    }

    /// Guards counting and reset.
    #[test]
    fn counts_and_resets() {
        let m = RequestMetrics::default();
        m.record(
            "GET /admin/monitor/system",
            200,
            100,
            Duration::from_micros(300),
        );
        m.record(
            "GET /admin/monitor/system",
            404,
            10,
            Duration::from_millis(2),
        );
        let r = m.report();
        let s = &r.routes["GET /admin/monitor/system"];
        assert_eq!((s.count, s.bytes_sent), (2, 110));
        assert_eq!(s.status_classes["2xx"], 1);
        assert_eq!(s.status_classes["4xx"], 1);
        assert!(s.latency_ms.max >= 1.9, "{:?}", s.latency_ms);
        m.reset();
        assert_eq!(m.report().total, 0);
    }
}
