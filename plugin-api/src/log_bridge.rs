//! Forwards a plugin's `log` records to the host's logger through the ABI callback.

use std::sync::OnceLock;

use abi_stable::std_types::RStr;
use log::{Log, Metadata, Record};

use crate::abi::{log_level, LogFn, LogLevel};

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
            log_level::from_level(record.level()),
            RStr::from_str(self.plugin),
            RStr::from_str(&message),
        );
    }

    fn flush(&self) {}
}

static INSTALLED: OnceLock<()> = OnceLock::new();

/// Routes this library's `log` macros to the host, once per loaded library.
pub(crate) fn install(log: LogFn, plugin: &'static str, level: LogLevel) {
    INSTALLED.get_or_init(|| {
        // In-process tests link the plugin as an rlib, where a logger may already be set:
        // then the existing one keeps the records.
        if log::set_boxed_logger(Box::new(HostLogger { log, plugin })).is_ok() {
            log::set_max_level(log_level::to_filter(level));
        }
    });
}
