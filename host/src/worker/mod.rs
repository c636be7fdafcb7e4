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
