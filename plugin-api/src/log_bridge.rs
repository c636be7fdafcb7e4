//! Forwards a plugin's `log` records to the host's logger through the ABI callback.

use std::sync::OnceLock;

use abi_stable::std_types::RStr;
use log::{Level, LevelFilter, Log, Metadata, Record};

use crate::abi::LogFn;

struct HostLogger {
    log: LogFn,
    plugin: &'static str,
}

impl Log for HostLogger {
    fn enabled(&self, metadata: &Metadata<'_>) -> bool {
        metadata.level() <= log::max_level()
    }

    fn log(&self, record: &Record<'_>) {
        if !self.enabled(record.metadata()) {
            return;
        }
        let message = record.args().to_string();
        (self.log)(
            level_to_u8(record.level()),
            RStr::from_str(self.plugin),
            RStr::from_str(&message),
        );
    }

    fn flush(&self) {}
}

/// The ABI number of a `log` level (1 = error … 5 = trace).
pub fn level_to_u8(level: Level) -> u8 {
    match level {
        Level::Error => 1,
        Level::Warn => 2,
        Level::Info => 3,
        Level::Debug => 4,
        Level::Trace => 5,
    }
}

fn filter_from_u8(level: u8) -> LevelFilter {
    match level {
        0 => LevelFilter::Off,
        1 => LevelFilter::Error,
        2 => LevelFilter::Warn,
        3 => LevelFilter::Info,
        4 => LevelFilter::Debug,
        _ => LevelFilter::Trace,
    }
}

static INSTALLED: OnceLock<()> = OnceLock::new();

/// Routes this library's `log` macros to the host, once per loaded library.
pub(crate) fn install(log: LogFn, plugin: &'static str, level: u8) {
    INSTALLED.get_or_init(|| {
        // In-process tests link the plugin as an rlib, where a logger may already be set:
        // then the existing one keeps the records.
        if log::set_boxed_logger(Box::new(HostLogger { log, plugin })).is_ok() {
            log::set_max_level(filter_from_u8(level));
        }
    });
}
