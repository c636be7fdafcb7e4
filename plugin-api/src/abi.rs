//! The stable ABI between the host and a collector library: root module, collector object, error.
//!
//! Everything here is frozen for the 1.x series. What may grow (plugin description, start-up
//! parameters, section contents) crosses the boundary as versioned JSON in `RString`s, so the
//! layout below never has to change. New optional capabilities go through the two generic
//! extension points: [`PluginModule::extension`] and [`CollectorObject::call`].

use std::fmt;

use abi_stable::{
    declare_root_module_statics,
    library::RootModule,
    package_version_strings, sabi_trait,
    sabi_types::VersionStrings,
    std_types::{RBox, RResult, RStr, RString},
    StableAbi,
};

/// Log levels as they cross the ABI: one of the constants in [`log_level`].
pub type LogLevel = u8;

/// The named values of [`LogLevel`] and the one conversion between them and the `log` crate's levels.
pub mod log_level {
    use super::LogLevel;

    /// Nothing is logged (only as a filter).
    pub const OFF: LogLevel = 0;
    /// Errors.
    pub const ERROR: LogLevel = 1;
    /// Warnings.
    pub const WARN: LogLevel = 2;
    /// Information.
    pub const INFO: LogLevel = 3;
    /// Debugging detail.
    pub const DEBUG: LogLevel = 4;
    /// Everything; any larger number means the same.
    pub const TRACE: LogLevel = 5;

    /// The ABI number of a record's level.
    pub fn from_level(level: log::Level) -> LogLevel {
        from_filter(level.to_level_filter())
    }

    /// The level of a record that crossed the ABI; `None` for [`OFF`].
    pub fn to_level(level: LogLevel) -> Option<log::Level> {
        to_filter(level).to_level()
    }

    /// The ABI number of a filter: the most verbose level that passes it.
    pub fn from_filter(filter: log::LevelFilter) -> LogLevel {
        match filter {
            log::LevelFilter::Off => OFF,
            log::LevelFilter::Error => ERROR,
            log::LevelFilter::Warn => WARN,
            log::LevelFilter::Info => INFO,
            log::LevelFilter::Debug => DEBUG,
            log::LevelFilter::Trace => TRACE,
        }
    }

    /// The filter an ABI number stands for.
    pub fn to_filter(level: LogLevel) -> log::LevelFilter {
        match level {
            OFF => log::LevelFilter::Off,
            ERROR => log::LevelFilter::Error,
            WARN => log::LevelFilter::Warn,
            INFO => log::LevelFilter::Info,
            DEBUG => log::LevelFilter::Debug,
            _ => log::LevelFilter::Trace,
        }
    }
}

/// The host's logging callback: level, plugin name, message.
pub type LogFn = extern "C" fn(level: LogLevel, plugin: RStr<'_>, message: RStr<'_>);

/// The host's logger, as passed to [`PluginModule::create`].
#[repr(C)]
#[derive(StableAbi, Clone, Copy)]
pub struct HostLog {
    /// Called once per log record of the plugin.
    pub log: extern "C" fn(level: LogLevel, plugin: RStr<'_>, message: RStr<'_>),
}

/// What a plugin reports when something goes wrong, in a form that crosses the ABI.
#[repr(u8)]
#[derive(StableAbi, Debug, Clone, PartialEq, Eq)]
pub enum PluginError {
    /// The collector's configuration table was refused.
    InvalidConfig(RString),
    /// The source is absent on this machine (no GPU, no daemon): a normal state.
    Unavailable(RString),
    /// A collection was attempted and failed.
    CollectFailed(RString),
    /// The plugin panicked; the SDK caught it at the boundary.
    Panicked(RString),
}

impl PluginError {
    /// The message carried by any variant.
    pub fn message(&self) -> &str {
        match self {
            Self::InvalidConfig(m)
            | Self::Unavailable(m)
            | Self::CollectFailed(m)
            | Self::Panicked(m) => m.as_str(),
        }
    }

    /// A short machine-readable name of the variant ([`ErrorKind::as_str`]).
    pub fn kind(&self) -> &'static str {
        self.error_kind().as_str()
    }

    /// The variant, without its message.
    pub fn error_kind(&self) -> ErrorKind {
        match self {
            Self::InvalidConfig(_) => ErrorKind::InvalidConfig,
            Self::Unavailable(_) => ErrorKind::Unavailable,
            Self::CollectFailed(_) => ErrorKind::CollectFailed,
            Self::Panicked(_) => ErrorKind::Panicked,
        }
    }

    /// The error of `kind` with `message`: the inverse of [`PluginError::error_kind`] and
    /// [`PluginError::message`].
    pub fn new(kind: ErrorKind, message: impl Into<RString>) -> Self {
        let m = message.into();
        match kind {
            ErrorKind::InvalidConfig => Self::InvalidConfig(m),
            ErrorKind::Unavailable => Self::Unavailable(m),
            ErrorKind::CollectFailed => Self::CollectFailed(m),
            ErrorKind::Panicked => Self::Panicked(m),
        }
    }
}

/// The variants of [`PluginError`] without their message, as they are named in JSON (the
/// process-isolation protocol, the API).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorKind {
    /// [`PluginError::InvalidConfig`].
    InvalidConfig,
    /// [`PluginError::Unavailable`].
    Unavailable,
    /// [`PluginError::CollectFailed`].
    CollectFailed,
    /// [`PluginError::Panicked`].
    Panicked,
}

impl ErrorKind {
    /// The name, as serde spells it.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::InvalidConfig => "invalid_config",
            Self::Unavailable => "unavailable",
            Self::CollectFailed => "collect_failed",
            Self::Panicked => "panicked",
        }
    }
}

impl fmt::Display for PluginError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::InvalidConfig(m) => write!(f, "invalid config: {m}"),
            Self::Unavailable(m) => write!(f, "unavailable: {m}"),
            Self::CollectFailed(m) => write!(f, "collect failed: {m}"),
            Self::Panicked(m) => write!(f, "plugin panicked: {m}"),
        }
    }
}

impl std::error::Error for PluginError {}

/// One running collector instance, as a stable-ABI trait object.
#[sabi_trait]
pub trait CollectorObject: Send {
    /// Gathers one section and returns it as JSON.
    fn collect(&mut self) -> RResult<RString, PluginError>;

    /// Generic extension point: a named method with a JSON payload, answered with JSON.
    /// Unknown methods answer `CollectFailed("unknown method …")`.
    #[sabi(last_prefix_field)]
    fn call(&mut self, method: RStr<'_>, payload: RStr<'_>) -> RResult<RString, PluginError>;
}

/// A boxed collector object owned by the host.
pub type CollectorBox = CollectorObject_TO<'static, RBox<()>>;

/// The root module every vitals plugin library exports.
#[repr(C)]
#[derive(StableAbi)]
#[sabi(kind(Prefix(prefix_ref = PluginModuleRef)))]
pub struct PluginModule {
    /// Describes the plugin as JSON ([`crate::PluginInfo`]).
    pub describe: extern "C" fn() -> RString,

    /// Creates a collector from the start-up JSON ([`crate::InitParams`]) and the host's logger.
    ///
    /// The fields up to this one are required; every later field is optional, so a plugin
    /// built before it was added still loads and the host sees `None` for it.
    #[sabi(last_prefix_field)]
    pub create: extern "C" fn(init: RStr<'_>, log: HostLog) -> RResult<CollectorBox, PluginError>,

    /// Generic extension point at library level: a named method with a JSON payload.
    pub extension:
        extern "C" fn(method: RStr<'_>, payload: RStr<'_>) -> RResult<RString, PluginError>,
}

impl RootModule for PluginModuleRef {
    declare_root_module_statics! {PluginModuleRef}
    const BASE_NAME: &'static str = "vitals_plugin";
    const NAME: &'static str = "vitals plugin";
    const VERSION_STRINGS: VersionStrings = package_version_strings!();
}

/// The root module as plugins from before any optional field lay it out: the required prefix only.
pub mod minimal {
    use super::*;

    /// The required fields of [`super::PluginModule`], under the same name.
    #[repr(C)]
    #[derive(StableAbi)]
    #[sabi(kind(Prefix(prefix_ref = PluginModuleRef)))]
    pub struct PluginModule {
        /// See [`super::PluginModule::describe`].
        pub describe: extern "C" fn() -> RString,
        /// See [`super::PluginModule::create`].
        #[sabi(last_prefix_field)]
        pub create:
            extern "C" fn(init: RStr<'_>, log: HostLog) -> RResult<CollectorBox, PluginError>,
    }

    impl RootModule for PluginModuleRef {
        declare_root_module_statics! {PluginModuleRef}
        const BASE_NAME: &'static str = "vitals_plugin";
        const NAME: &'static str = "vitals plugin";
        const VERSION_STRINGS: VersionStrings = package_version_strings!();
    }
}

/// The exported symbol name that holds a library's header (abi_stable's mangling).
pub const ROOT_MODULE_SYMBOL: &str = "_1as_0lib_1header_0root_bmodule_bloader";

#[cfg(test)]
mod tests {
    use super::*;

    /// Guards the hand-written export name used by `export_collector!`.
    #[test]
    fn root_module_symbol_matches_abi_stable() {
        assert_eq!(
            ROOT_MODULE_SYMBOL,
            abi_stable::library::ROOT_MODULE_LOADER_NAME
        );
    }

    /// Guards the human-readable rendering of every error kind.
    #[test]
    fn errors_display_their_kind() {
        let e = PluginError::Unavailable("no GPU".into());
        assert_eq!(e.to_string(), "unavailable: no GPU");
        assert_eq!(e.kind(), "unavailable");
        assert_eq!(PluginError::Panicked("x".into()).message(), "x");
    }

    /// Guards the kind mapping the process-isolation protocol relies on: every variant survives
    /// kind + message -> JSON -> kind + message, spelled as `kind()` says.
    #[test]
    fn error_kinds_round_trip() {
        for e in [
            PluginError::InvalidConfig("a".into()),
            PluginError::Unavailable("b".into()),
            PluginError::CollectFailed("c".into()),
            PluginError::Panicked("d".into()),
        ] {
            let json = serde_json::to_string(&e.error_kind()).expect("json");
            assert_eq!(json, format!("\"{}\"", e.kind()));
            let kind: ErrorKind = serde_json::from_str(&json).expect("kind");
            assert_eq!(PluginError::new(kind, e.message()), e);
        }
    }

    /// Guards the log level numbers: each named level maps to the `log` level of its name and back.
    #[test]
    fn log_levels_round_trip() {
        use log::Level;
        for (n, l) in [
            (log_level::ERROR, Level::Error),
            (log_level::WARN, Level::Warn),
            (log_level::INFO, Level::Info),
            (log_level::DEBUG, Level::Debug),
            (log_level::TRACE, Level::Trace),
        ] {
            assert_eq!(log_level::from_level(l), n);
            assert_eq!(log_level::to_level(n), Some(l));
        }
        assert_eq!(log_level::to_level(log_level::OFF), None);
        assert_eq!(log_level::to_level(200), Some(Level::Trace));
        assert_eq!(
            log_level::from_filter(log::LevelFilter::Off),
            log_level::OFF
        );
    }
}
