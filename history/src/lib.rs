//! Durable, tiered history of series and events in one embedded SQLite file.
//!
//! ```no_run
//! use vitals_history::{History, Retention, SeriesKey, Selector};
//!
//! let mut history = History::open("/var/lib/vitals/history.sqlite", Retention::default())?;
//! let usage = SeriesKey::new("cpu", "usage", None);
//! history.record(1_700_000_000_000, &[(usage, 12.5)]).ok(); // a full disk pauses, never panics
//! history.record_event(1_700_000_000_000, "cpu", "recovered", "collector is back").ok();
//! let selector = Selector { collector: "cpu".into(), name: "usage".into(), label: None };
//! let day = history.query(&selector, 1_699_913_600_000, 1_700_000_000_000, 60_000)?;
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

#[doc(hidden)]
pub mod codec;
mod engine;
mod error;
mod maintain;
mod model;
mod read;
mod store;

pub use error::{CorruptStore, OpenError, QueryError, WriteError};
pub use model::{
    Event, Millis, Options, Point, Retention, Selector, SeriesKey, SeriesPoints, Tier,
    MAX_EVENTS_PER_QUERY, MAX_EVENT_TAG_BYTES, MAX_EVENT_TEXT_BYTES, MAX_KEY_PART_BYTES,
    MAX_POINTS_PER_SERIES, MAX_SERIES_PER_QUERY,
};
pub use store::{History, Status};
