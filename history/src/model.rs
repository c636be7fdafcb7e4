//! The store's vocabulary: series keys, selectors, tiers, retention, points and events.

use std::time::Duration;

/// Milliseconds since the Unix epoch, as the caller's wall clock gave them.
pub type Millis = i64;

/// Longest collector, series name or label, in bytes; a longer one is refused.
pub const MAX_KEY_PART_BYTES: usize = 256;
/// Longest event source or kind, in bytes (cut at a character boundary).
pub const MAX_EVENT_TAG_BYTES: usize = 64;
/// Longest event text, in bytes (cut at a character boundary).
pub const MAX_EVENT_TEXT_BYTES: usize = 1024;
/// Most points one query answers per series.
pub const MAX_POINTS_PER_SERIES: u64 = 2_000;
/// Most series one query answers.
pub const MAX_SERIES_PER_QUERY: usize = 256;
/// Most events one `events` call answers.
pub const MAX_EVENTS_PER_QUERY: usize = 10_000;

/// One series: the collector that reports it, its name, and for per-item series the item's label.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SeriesKey {
    /// The collector (section) name, e.g. `cpu`.
    pub collector: String,
    /// The series name the plugin declared, e.g. `usage`.
    pub name: String,
    /// The item's label for per-item series (a GPU index, a container name).
    pub label: Option<String>,
}

impl SeriesKey {
    /// A key from its parts.
    pub fn new(collector: &str, name: &str, label: Option<&str>) -> Self {
        Self {
            collector: collector.to_owned(),
            name: name.to_owned(),
            label: label.map(str::to_owned),
        }
    }

    /// The key as stored: a flag for the label, then the parts NUL-separated. `None` if a part
    /// is too long or holds a NUL.
    pub(crate) fn encode(&self) -> Option<Vec<u8>> {
        let parts = [
            Some(self.collector.as_str()),
            Some(self.name.as_str()),
            self.label.as_deref(),
        ];
        if parts
            .iter()
            .flatten()
            .any(|p| p.len() > MAX_KEY_PART_BYTES || p.contains('\0'))
        {
            return None;
        }
        let mut out = vec![u8::from(self.label.is_some())];
        out.extend_from_slice(self.collector.as_bytes());
        out.push(0);
        out.extend_from_slice(self.name.as_bytes());
        if let Some(label) = &self.label {
            out.push(0);
            out.extend_from_slice(label.as_bytes());
        }
        Some(out)
    }

    /// Reads what [`SeriesKey::encode`] wrote.
    pub(crate) fn decode(bytes: &[u8]) -> Option<Self> {
        let (&flag, rest) = bytes.split_first()?;
        let text = std::str::from_utf8(rest).ok()?;
        let mut parts = text.split('\0');
        let collector = parts.next()?.to_owned();
        let name = parts.next()?.to_owned();
        let label = match flag {
            0 => None,
            1 => Some(parts.next()?.to_owned()),
            _ => return None,
        };
        parts.next().is_none().then_some(Self {
            collector,
            name,
            label,
        })
    }
}

/// Which series a query wants: one collector's series of one name, with a label glob.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Selector {
    /// The collector name, exactly.
    pub collector: String,
    /// The series name, exactly.
    pub name: String,
    /// A glob over labels (`*`, `?`, `[..]`); `None` takes every label and the unlabelled series.
    pub label: Option<String>,
}

/// The resolutions the store keeps, finest first.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Tier {
    /// Every sample at the collector's interval.
    Raw,
    /// One aggregate row per series per minute.
    Minute,
    /// One aggregate row per series per hour.
    Hour,
}

impl Tier {
    /// Every tier, finest first.
    pub const ALL: [Tier; 3] = [Tier::Raw, Tier::Minute, Tier::Hour];

    /// The width of one aggregate row (raw: none).
    pub fn bucket_millis(self) -> Millis {
        match self {
            Tier::Raw => 0,
            Tier::Minute => 60_000,
            Tier::Hour => 3_600_000,
        }
    }

    pub(crate) fn code(self) -> u8 {
        match self {
            Tier::Raw => 0,
            Tier::Minute => 1,
            Tier::Hour => 2,
        }
    }

    pub(crate) fn from_code(code: u8) -> Option<Self> {
        Self::ALL.into_iter().find(|t| t.code() == code)
    }

    /// The next coarser tier.
    pub(crate) fn coarser(self) -> Option<Self> {
        match self {
            Tier::Raw => Some(Tier::Minute),
            Tier::Minute => Some(Tier::Hour),
            Tier::Hour => None,
        }
    }
}

/// How long each tier keeps its data, and the store's total size.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Retention {
    /// Raw samples are kept at least this long (default 24 h).
    pub raw: Duration,
    /// One-minute aggregates are kept at least this long (default 30 days).
    pub minute: Duration,
    /// One-hour aggregates are kept at least this long (default 365 days).
    pub hour: Duration,
    /// The most bytes the store may use on disk (default 256 MiB); the oldest data of the finest
    /// tier that already has a coarser copy goes first.
    pub budget_bytes: u64,
}

impl Default for Retention {
    fn default() -> Self {
        Self {
            raw: Duration::from_secs(24 * 3600),
            minute: Duration::from_secs(30 * 24 * 3600),
            hour: Duration::from_secs(365 * 24 * 3600),
            budget_bytes: 256 * 1024 * 1024,
        }
    }
}

impl Retention {
    pub(crate) fn of(&self, tier: Tier) -> Millis {
        let d = match tier {
            Tier::Raw => self.raw,
            Tier::Minute => self.minute,
            Tier::Hour => self.hour,
        };
        Millis::try_from(d.as_millis()).unwrap_or(Millis::MAX)
    }
}

/// How the store writes: flush cadence and the in-memory bounds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Options {
    /// Buffered samples are written this often (default 10 s); a kill loses at most this much.
    pub flush_interval: Duration,
    /// Most samples held in memory while the disk refuses writes (default 500,000, about 6 MB);
    /// past it the oldest are dropped and counted.
    pub max_pending_samples: usize,
    /// Journal rows are sealed into per-series segments once they hold this many samples
    /// (default 250,000)…
    pub seal_samples: usize,
    /// …or span this much time (default 15 min).
    pub seal_span: Duration,
    /// Most events held in memory while the disk refuses writes (default 10,000).
    pub max_pending_events: usize,
    /// Most events kept on disk (default 100,000); the oldest go first.
    pub max_events: u64,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            flush_interval: Duration::from_secs(10),
            max_pending_samples: 500_000,
            seal_samples: 250_000,
            seal_span: Duration::from_secs(15 * 60),
            max_pending_events: 10_000,
            max_events: 100_000,
        }
    }
}

/// One step of a query answer: the samples whose time falls in `[ts, ts + step)`, summarised.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Point {
    /// The step's start, milliseconds since the Unix epoch.
    pub ts: Millis,
    /// The smallest sample.
    pub min: f64,
    /// The mean of the samples.
    pub avg: f64,
    /// The largest sample.
    pub max: f64,
    /// The sample with the latest timestamp.
    pub last: f64,
    /// How many raw samples the step covers.
    pub count: u64,
}

/// A query's answer for one series.
#[derive(Clone, Debug, PartialEq)]
pub struct SeriesPoints {
    /// The series.
    pub key: SeriesKey,
    /// The coarsest tier the points were read from.
    pub tier: Tier,
    /// One point per step that has samples, oldest first.
    pub points: Vec<Point>,
}

/// A timestamped event kept with the series (a collector failing, a container dying).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Event {
    /// Milliseconds since the Unix epoch.
    pub ts: Millis,
    /// Where it comes from: a collector name, `host`, `config`.
    pub source: String,
    /// What happened, e.g. `failed`, `recovered`, `die`, `oom`.
    pub kind: String,
    /// A human-readable description.
    pub text: String,
}

/// Cuts `s` to at most `max` bytes at a character boundary.
pub(crate) fn cut(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Guards the stored key format and its bounds.
    #[test]
    fn keys_round_trip_and_refuse_bad_parts() {
        for key in [
            SeriesKey::new("cpu", "usage", None),
            SeriesKey::new("docker", "cpu", Some("web-1")),
            SeriesKey::new("gpu", "util", Some("")),
        ] {
            assert_eq!(SeriesKey::decode(&key.encode().unwrap()), Some(key));
        }
        assert!(SeriesKey::new("a\0b", "x", None).encode().is_none());
        assert!(SeriesKey::new("a", &"x".repeat(257), None)
            .encode()
            .is_none());
        assert!(SeriesKey::decode(&[7, b'a', 0, b'b']).is_none());
        assert_eq!(cut("héllo", 2), "h");
    }
}
