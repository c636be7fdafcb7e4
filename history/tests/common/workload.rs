//! A synthetic but realistic vitals workload: 100 containers of 10 series plus host series.

use vitals_history::SeriesKey;

/// What kind of signal a series carries, which decides how well it compresses.
#[derive(Clone, Copy)]
enum Kind {
    /// A CPU percentage computed from counter deltas: full-precision noise.
    Percent,
    /// Bytes in use: a random walk in whole pages.
    Bytes,
    /// A rate from counter deltas over the interval, often zero.
    Rate,
    /// A count that rarely changes (pids, restarts).
    Count,
    /// Seconds since start: a straight line.
    Uptime,
}

/// The series and their current values; `next` advances every value by one interval.
pub struct Workload {
    pub samples: Vec<(SeriesKey, f64)>,
    kinds: Vec<Kind>,
    rng: u64,
    interval: f64,
}

impl Workload {
    /// `containers` containers with the first `per_container` of 10 series each (the docker
    /// collector declares two: CPU percent and memory bytes) plus `host` host series, sampled
    /// every `interval` seconds.
    pub fn with(
        containers: usize,
        per_container: usize,
        host: usize,
        interval: f64,
        seed: u64,
    ) -> Self {
        let mut samples = Vec::new();
        let mut kinds = Vec::new();
        let container_series = [
            ("cpu_percent", Kind::Percent),
            ("memory_used_bytes", Kind::Bytes),
            ("memory_percent", Kind::Percent),
            ("net_rx_bytes_per_second", Kind::Rate),
            ("net_tx_bytes_per_second", Kind::Rate),
            ("block_read_bytes_per_second", Kind::Rate),
            ("block_write_bytes_per_second", Kind::Rate),
            ("pids", Kind::Count),
            ("restarts", Kind::Count),
            ("uptime_seconds", Kind::Uptime),
        ];
        for c in 0..containers {
            for (name, kind) in container_series.into_iter().take(per_container) {
                samples.push((
                    SeriesKey::new("docker", name, Some(&format!("c{seed}-{c}"))),
                    0.0,
                ));
                kinds.push(kind);
            }
        }
        for h in 0..host {
            let (name, kind) = match h % 4 {
                0 | 1 => ("core_usage_percent", Kind::Percent),
                2 => ("rate", Kind::Rate),
                _ => ("used_bytes", Kind::Bytes),
            };
            samples.push((SeriesKey::new("host", name, Some(&h.to_string())), 0.0));
            kinds.push(kind);
        }
        let mut w = Self {
            samples,
            kinds,
            rng: seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1,
            interval,
        };
        for i in 0..w.samples.len() {
            w.samples[i].1 = match w.kinds[i] {
                Kind::Bytes => (w.rand() * 2e9 / 4096.0).floor() * 4096.0,
                Kind::Count => (w.rand() * 40.0).floor(),
                _ => 0.0,
            };
        }
        w
    }

    fn rand(&mut self) -> f64 {
        self.rng ^= self.rng << 13;
        self.rng ^= self.rng >> 7;
        self.rng ^= self.rng << 17;
        (self.rng >> 11) as f64 / (1u64 << 53) as f64
    }

    /// Advances every series by one interval.
    pub fn next(&mut self) -> &[(SeriesKey, f64)] {
        for i in 0..self.samples.len() {
            let r = self.rand();
            let v = &mut self.samples[i].1;
            match self.kinds[i] {
                Kind::Percent => {
                    let used_ns = (r * 0.3 * self.interval * 1e9).floor();
                    *v = used_ns / (self.interval * 1e9 * 4.0) * 100.0;
                }
                Kind::Bytes => {
                    if r < 0.3 {
                        *v = (*v + ((r * 200.0).floor() - 30.0) * 4096.0).max(0.0);
                    }
                }
                Kind::Rate => {
                    *v = if r < 0.6 {
                        0.0
                    } else {
                        (r * 1e6).floor() / self.interval
                    };
                }
                Kind::Count => {
                    if r < 0.001 {
                        *v += 1.0;
                    }
                }
                Kind::Uptime => *v += self.interval,
            }
        }
        &self.samples
    }
}
