//! Workers run a collector's calls: on a thread of the host's own, in a child process, or by running a program.
//!
//! Every kind takes a [`Job`] and answer an [`Outcome`] within a deadline; the scheduler
//! supervises them through [`Worker`] alone and never sees which kind it holds.

pub mod child;
pub mod exec;
pub mod nagios;
pub mod perfdata;
pub mod thread;

use std::time::{Duration, Instant};

use abi_stable::std_types::{RResult, RStr};
use vitals_plugin_api::abi::{log_level, CollectorBox, HostLog, LogLevel, PluginError};
use vitals_plugin_api::PluginModuleRef;

pub use child::ChildWorker;
pub use exec::ExecWorker;
pub use thread::ThreadWorker;

/// Work sent to a collector's worker.
#[derive(Debug, Clone)]
pub enum Job {
    /// Create the collector from start-up JSON.
    Create(String),
    /// Collect one section.
    Collect,
}

/// A worker's answer: the section JSON (`None` for `Create`) or the plugin's error, and the time taken.
pub type Reply = (Result<Option<String>, PluginError>, Duration);

/// How a call to a worker ended.
#[derive(Debug)]
pub enum Outcome {
    /// The worker answered.
    Done(Reply),
    /// The deadline passed first.
    TimedOut,
    /// The worker is gone: the thread ended or the child died (with a description).
    Gone(String),
}

/// One collector's worker, of either kind.
pub enum Worker {
    /// A thread in the host's process.
    Thread(ThreadWorker),
    /// A child `vitals collector-child` process.
    Child(Box<ChildWorker>),
    /// A program of any kind (`command`), run per collect or kept running.
    Exec(Box<ExecWorker>),
}

impl Worker {
    /// Sends `job` and waits at most `deadline` for the answer.
    pub async fn call(&mut self, job: Job, deadline: Duration) -> Outcome {
        match self {
            Self::Thread(t) => t.call(job, deadline).await,
            Self::Child(c) => c.call(job, deadline).await,
            Self::Exec(e) => e.call(job, deadline).await,
        }
    }

    /// True while an earlier call that overran its deadline has still not returned (a thread
    /// worker only: a child that overruns is killed at once).
    pub fn stuck(&mut self) -> bool {
        match self {
            Self::Thread(t) => t.stuck(),
            Self::Child(_) | Self::Exec(_) => false,
        }
    }

    /// True for a child process, whose overrun or death means a restart.
    pub fn is_child(&self) -> bool {
        match self {
            Self::Child(_) => true,
            Self::Exec(e) => e.is_daemon(),
            Self::Thread(_) => false,
        }
    }

    /// The collector's full series list, when its program declared new series in its last answer.
    pub fn take_series(&mut self) -> Option<Vec<vitals_plugin_api::Series>> {
        match self {
            Self::Exec(e) => e.take_series(),
            _ => None,
        }
    }

    /// Ends the worker: kills and reaps a child; a thread ends when its sender is dropped.
    pub async fn stop(&mut self) {
        match self {
            Self::Child(c) => c.kill().await,
            Self::Exec(e) => e.kill().await,
            Self::Thread(_) => {}
        }
    }
}

/// Forwards a plugin's log record to the host's log.
pub extern "C" fn host_log(level: LogLevel, plugin: RStr<'_>, message: RStr<'_>) {
    let (plugin, message) = (plugin.as_str(), message.as_str());
    match log_level::to_level(level) {
        Some(log::Level::Error) => tracing::error!(target: "vitals::plugin", plugin, "{message}"),
        Some(log::Level::Warn) => tracing::warn!(target: "vitals::plugin", plugin, "{message}"),
        Some(log::Level::Info) => tracing::info!(target: "vitals::plugin", plugin, "{message}"),
        Some(log::Level::Debug) => tracing::debug!(target: "vitals::plugin", plugin, "{message}"),
        Some(log::Level::Trace) | None => {
            tracing::trace!(target: "vitals::plugin", plugin, "{message}")
        }
    }
}

/// The log level the host passes to plugins: the most verbose one the active filter lets through.
pub fn plugin_log_level() -> LogLevel {
    use tracing::level_filters::LevelFilter;
    let filter = match LevelFilter::current() {
        LevelFilter::OFF => log::LevelFilter::Off,
        LevelFilter::ERROR => log::LevelFilter::Error,
        LevelFilter::WARN => log::LevelFilter::Warn,
        LevelFilter::INFO => log::LevelFilter::Info,
        LevelFilter::DEBUG => log::LevelFilter::Debug,
        _ => log::LevelFilter::Trace,
    };
    log_level::from_filter(filter)
}

/// Takes a section a plugin or program sent, within the bounds every section has: at most
/// [`MAX_SECTION_BYTES`](vitals_plugin_api::MAX_SECTION_BYTES) of valid JSON nested at most
/// [`MAX_SECTION_DEPTH`](vitals_plugin_api::MAX_SECTION_DEPTH) levels deep. Nothing here
/// recurses, so no nesting can overflow the stack.
///
/// # Errors
/// Why the section was refused, naming the bound it passed.
pub fn take_section(json: String) -> Result<Box<serde_json::value::RawValue>, String> {
    use vitals_plugin_api::{MAX_SECTION_BYTES, MAX_SECTION_DEPTH};
    if json.len() > MAX_SECTION_BYTES {
        return Err(format!(
            "the section is {} bytes, over the bound of {MAX_SECTION_BYTES} bytes (MAX_SECTION_BYTES)",
            json.len()
        ));
    }
    // Validating a raw value walks the text without recursion.
    let raw = serde_json::value::RawValue::from_string(json)
        .map_err(|e| format!("the plugin returned invalid JSON: {e}"))?;
    if nested_deeper_than(raw.get().as_bytes(), MAX_SECTION_DEPTH) {
        return Err(format!(
            "the section is nested deeper than {MAX_SECTION_DEPTH} levels (MAX_SECTION_DEPTH)"
        ));
    }
    Ok(raw)
}

/// True when valid JSON `text` nests arrays and objects more than `max` levels deep.
fn nested_deeper_than(text: &[u8], max: usize) -> bool {
    let mut depth = 0usize;
    let mut rest = text;
    while let Some(i) = rest
        .iter()
        .position(|b| matches!(b, b'"' | b'[' | b'{' | b']' | b'}'))
    {
        match rest[i] {
            b'"' => {
                // Skip the string: to the next quote not escaped by a backslash.
                let mut j = i + 1;
                while j < rest.len() && rest[j] != b'"' {
                    j += if rest[j] == b'\\' { 2 } else { 1 };
                }
                rest = rest.get(j + 1..).unwrap_or_default();
                continue;
            }
            b'[' | b'{' => {
                depth += 1;
                if depth > max {
                    return true;
                }
            }
            _ => depth = depth.saturating_sub(1),
        }
        rest = &rest[i + 1..];
    }
    false
}

/// Runs one job against a collector object, as both worker kinds do.
pub fn run_job(
    module: PluginModuleRef,
    log: HostLog,
    collector: &mut Option<CollectorBox>,
    job: Job,
) -> Reply {
    let started = Instant::now();
    let result = match job {
        Job::Create(init) => {
            *collector = None;
            match (module.create())(RStr::from_str(&init), log) {
                RResult::ROk(c) => {
                    *collector = Some(c);
                    Ok(None)
                }
                RResult::RErr(e) => Err(e),
            }
        }
        Job::Collect => match collector.as_mut() {
            Some(c) => match c.collect() {
                RResult::ROk(json) => Ok(Some(json.into_string())),
                RResult::RErr(e) => Err(e),
            },
            None => Err(PluginError::CollectFailed(
                "the collector was not created".into(),
            )),
        },
    };
    (result, started.elapsed())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn nested(levels: usize) -> String {
        format!("{}0{}", "[".repeat(levels), "]".repeat(levels))
    }

    /// Guards the depth scan: brackets inside strings (escaped quotes too) do not count,
    /// sibling containers do not add up, and one level past the bound is seen.
    #[test]
    fn depth_is_counted_outside_strings() {
        let max = vitals_plugin_api::MAX_SECTION_DEPTH;
        assert!(take_section(nested(max)).is_ok());
        let err = take_section(nested(max + 1)).expect_err("one past the bound");
        assert!(err.contains("nested deeper than 64 levels"), "{err}");
        let strings = format!(
            r#"{{"a":"{}","b":"x\"[[[","c":[[1],[2],{{}}]}}"#,
            "[".repeat(500)
        );
        assert!(!nested_deeper_than(strings.as_bytes(), 3));
        assert!(nested_deeper_than(strings.as_bytes(), 2));
        // A million levels: refused without recursion.
        assert!(take_section(nested(1_000_000)).is_err());
    }

    /// Guards the size bound and the JSON check.
    #[test]
    fn sections_over_the_size_bound_or_not_json_are_refused() {
        let big = format!(
            r#"{{"a":"{}"}}"#,
            "x".repeat(vitals_plugin_api::MAX_SECTION_BYTES)
        );
        let err = take_section(big).expect_err("too big");
        assert!(err.contains("MAX_SECTION_BYTES"), "{err}");
        assert!(take_section("{".to_owned())
            .expect_err("not JSON")
            .contains("invalid JSON"));
    }
}
