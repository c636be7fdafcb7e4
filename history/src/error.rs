//! What opening, writing and querying the store can answer instead of data.

use std::fmt;
use std::path::PathBuf;

/// Why a store could not be opened at all (an unusable disk is not one of them: writing pauses).
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    /// A retention or option value is out of range.
    #[error("invalid history setting: {0}")]
    Invalid(String),
    /// Another process has the store open.
    #[error("history store {} is in use by another process", path.display())]
    Locked {
        /// The store file.
        path: PathBuf,
    },
    /// The store is corrupt and could not be moved aside.
    #[error("history store {} is corrupt ({reason}) and could not be moved aside: {source}", path.display())]
    MoveAside {
        /// The store file.
        path: PathBuf,
        /// What was wrong with it.
        reason: String,
        /// Why the rename failed.
        source: std::io::Error,
    },
}

/// A corrupt or truncated store that was renamed aside so that a fresh one could start.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CorruptStore {
    /// Where the damaged file is now.
    pub moved_to: PathBuf,
    /// What was wrong with it.
    pub reason: String,
}

impl fmt::Display for CorruptStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "history store was corrupt ({}); moved aside to {} and a fresh store started",
            self.reason,
            self.moved_to.display()
        )
    }
}

/// Why buffered samples are not on disk yet; writing resumes by itself once the cause is gone.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum WriteError {
    /// The store file cannot be written (disk full, read-only, gone).
    #[error("history writing paused: {} cannot be written ({reason}); samples are kept in memory", path.display())]
    Unavailable {
        /// The store file.
        path: PathBuf,
        /// The engine's or operating system's words.
        reason: String,
    },
}

/// Why a query has no answer.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum QueryError {
    /// The range and step ask for more points per series than a request may.
    #[error("the range and step ask for {requested} points per series; the limit is {limit}")]
    TooManyPoints {
        /// Points per series the request asked for.
        requested: u64,
        /// The most a request may ask for.
        limit: u64,
    },
    /// The selector matches more series than a request may answer.
    #[error("the selector matches {matched} series or more; the limit is {limit}")]
    TooManySeries {
        /// Series matched (counting stops past the limit).
        matched: usize,
        /// The most a request may answer.
        limit: usize,
    },
    /// `to` is not after `from`, or the step is not positive.
    #[error("invalid range: {0}")]
    InvalidRange(&'static str),
    /// The label glob does not parse.
    #[error("invalid label pattern: {0}")]
    InvalidPattern(String),
    /// The store cannot be read.
    #[error("history store cannot be read: {0}")]
    Unavailable(String),
}
