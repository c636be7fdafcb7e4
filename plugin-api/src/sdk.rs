//! The safe SDK: the `Collector` trait, its error type, and the FFI glue `export_collector!` uses.

use std::any::Any;
use std::fmt;
use std::panic::{catch_unwind, AssertUnwindSafe};

use abi_stable::std_types::{RBox, RErr, ROk, RResult, RStr, RString};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::abi::{CollectorBox, CollectorObject, CollectorObject_TO, HostLog, PluginError};

/// The version of this crate, which is the plugin API version a plugin is built against.
pub const API_VERSION: &str = env!("CARGO_PKG_VERSION");

/// A collector written against the safe SDK.
///
/// Implement it, then call [`export_collector!`](crate::export_collector) once in the crate.
pub trait Collector: Sized + Send + 'static {
    /// The collector's name: the default section key and the name in logs.
    const NAME: &'static str;
    /// One line that says what the collector reports.
    const DESCRIPTION: &'static str = "";
    /// The plugin-specific config table; `{}` must parse (use `#[serde(default)]`) and unknown
    /// keys must be refused (`#[serde(deny_unknown_fields)]`).
    type Config: DeserializeOwned;
    /// The section this collector reports.
    type Section: Serialize;

    /// Builds the collector from its config table.
    ///
    /// # Errors
    /// [`Error::InvalidConfig`] for a config it cannot use, [`Error::Unavailable`] when its
    /// source is absent on this machine.
    fn new(config: Self::Config) -> Result<Self, Error>;

    /// Builds the collector from its config table and the host's start-up parameters; the
    /// host calls this one. The default ignores the parameters and calls [`Collector::new`];
    /// a collector that reads the machine through files overrides it to honour
    /// [`InitParams::host_root`] (see [`InitParams::host_path`]).
    ///
    /// # Errors
    /// As [`Collector::new`].
    fn create(config: Self::Config, init: &InitParams) -> Result<Self, Error> {
        let _ = init;
        Self::new(config)
    }

    /// Gathers one section.
    ///
    /// # Errors
    /// [`Error::Unavailable`] when the source is absent, [`Error::Failed`] otherwise.
    fn collect(&mut self) -> Result<Self::Section, Error>;

    /// The numeric series the host keeps history for.
    fn series() -> Vec<Series> {
        Vec::new()
    }
}

/// What a collector returns when it cannot do its work.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Error {
    /// The configuration cannot be used.
    InvalidConfig(String),
    /// The source is absent on this machine: a normal state, not a failure.
    Unavailable(String),
    /// The collection failed.
    Failed(String),
}

impl Error {
    /// An [`Error::Unavailable`] with this reason.
    pub fn unavailable(reason: impl fmt::Display) -> Self {
        Self::Unavailable(reason.to_string())
    }

    /// An [`Error::Failed`] with this message.
    pub fn failed(message: impl fmt::Display) -> Self {
        Self::Failed(message.to_string())
    }

    /// An [`Error::InvalidConfig`] with this message.
    pub fn invalid_config(message: impl fmt::Display) -> Self {
        Self::InvalidConfig(message.to_string())
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::InvalidConfig(m) => write!(f, "invalid config: {m}"),
            Self::Unavailable(m) => write!(f, "unavailable: {m}"),
            Self::Failed(m) => write!(f, "{m}"),
        }
    }
}

impl<E: std::error::Error> From<E> for Error {
    fn from(e: E) -> Self {
        Self::Failed(e.to_string())
    }
}

impl From<Error> for PluginError {
    fn from(e: Error) -> Self {
        match e {
            Error::InvalidConfig(m) => PluginError::InvalidConfig(m.into()),
            Error::Unavailable(m) => PluginError::Unavailable(m.into()),
            Error::Failed(m) => PluginError::CollectFailed(m.into()),
        }
    }
}

/// Something that happened, reported in a section's top-level `events` array (a container
/// died, a device reported an error). The host stores each event once in its durable history,
/// under the source `collector:NAME`: a plugin may keep repeating recent events in every
/// section (a bounded list), since the host skips those it has stored already.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SectionEvent {
    /// When it happened, in Unix milliseconds.
    pub time_unix_ms: i64,
    /// A short machine-readable word, e.g. `died`, `oom_killed`, `restarted`.
    pub kind: String,
    /// What happened, for people.
    pub text: String,
}

/// The top-level field of a section that holds its [`SectionEvent`]s.
pub const EVENTS_FIELD: &str = "events";

/// The deepest nesting of arrays and objects a section may have (the section itself is level
/// 1). The SDK stops encoding a deeper section with an error instead of recursing on (a
/// section nested thousands of levels deep overflows a thread's stack), and the host refuses
/// a deeper section from any plugin or program.
pub const MAX_SECTION_DEPTH: usize = 64;

/// The longest section the host takes, in bytes of JSON; a longer one is refused.
pub const MAX_SECTION_BYTES: usize = 16 << 20;

/// A compact JSON formatter that fails past [`MAX_SECTION_DEPTH`] levels, before the
/// serialiser recurses any deeper.
#[derive(Debug, Default)]
struct DepthLimit {
    depth: usize,
}

impl DepthLimit {
    fn enter<W: ?Sized + std::io::Write>(&mut self, w: &mut W, open: &[u8]) -> std::io::Result<()> {
        self.depth += 1;
        if self.depth > MAX_SECTION_DEPTH {
            return Err(std::io::Error::other(format!(
                "the section is nested deeper than {MAX_SECTION_DEPTH} levels (MAX_SECTION_DEPTH)"
            )));
        }
        w.write_all(open)
    }

    fn leave<W: ?Sized + std::io::Write>(
        &mut self,
        w: &mut W,
        close: &[u8],
    ) -> std::io::Result<()> {
        self.depth = self.depth.saturating_sub(1);
        w.write_all(close)
    }
}

impl serde_json::ser::Formatter for DepthLimit {
    fn begin_array<W: ?Sized + std::io::Write>(&mut self, w: &mut W) -> std::io::Result<()> {
        self.enter(w, b"[")
    }

    fn end_array<W: ?Sized + std::io::Write>(&mut self, w: &mut W) -> std::io::Result<()> {
        self.leave(w, b"]")
    }

    fn begin_object<W: ?Sized + std::io::Write>(&mut self, w: &mut W) -> std::io::Result<()> {
        self.enter(w, b"{")
    }

    fn end_object<W: ?Sized + std::io::Write>(&mut self, w: &mut W) -> std::io::Result<()> {
        self.leave(w, b"}")
    }
}

/// Encodes a section as compact JSON, refusing one nested deeper than [`MAX_SECTION_DEPTH`].
///
/// # Errors
/// The section is nested too deep, or cannot be encoded as JSON.
pub fn encode_section<S: Serialize + ?Sized>(section: &S) -> Result<String, String> {
    let mut out = Vec::with_capacity(256);
    let mut ser = serde_json::Serializer::with_formatter(&mut out, DepthLimit::default());
    section.serialize(&mut ser).map_err(|e| e.to_string())?;
    // serde_json writes UTF-8 only.
    String::from_utf8(out).map_err(|e| e.to_string())
}

/// A numeric series inside a section that the host keeps a history of.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Series {
    /// The series name, e.g. `usage_percent`.
    pub name: String,
    /// A JSON pointer to the value; a `*` segment walks every element of an array.
    pub pointer: String,
    /// The unit of the value, e.g. `percent`, `bytes`, `celsius`, `watts`.
    pub unit: String,
    /// For `*` pointers: the field of each array element that labels it (default: the index).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub label: Option<String>,
}

impl Series {
    /// A series at `pointer` with this name and unit.
    pub fn new(name: &str, pointer: &str, unit: &str) -> Self {
        Self {
            name: name.to_owned(),
            pointer: pointer.to_owned(),
            unit: unit.to_owned(),
            label: None,
        }
    }

    /// The same series, labelled per array element by `field`.
    pub fn labelled_by(mut self, field: &str) -> Self {
        self.label = Some(field.to_owned());
        self
    }
}

/// The description a plugin gives of itself (the JSON behind [`PluginModule::describe`](crate::abi::PluginModule)).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PluginInfo {
    /// The collector name.
    pub name: String,
    /// The plugin crate's own version.
    pub version: String,
    /// The `vitals-plugin-api` version it was built against.
    pub api_version: String,
    /// One line that says what it reports.
    #[serde(default)]
    pub description: String,
    /// The series the host keeps a history of.
    #[serde(default)]
    pub series: Vec<Series>,
}

/// The start-up parameters the host passes to `create` (as JSON).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct InitParams {
    /// The host's plugin API version.
    pub api_version: String,
    /// The collector's name in the host's config.
    pub collector: String,
    /// The plugin-specific config table.
    #[serde(default = "empty_object")]
    pub config: serde_json::Value,
    /// The most verbose level the host will print (one of [`crate::abi::log_level`]).
    #[serde(default = "default_log_level")]
    pub log_level: crate::abi::LogLevel,
    /// Where the monitored machine's root file system is mounted when vitals watches it from
    /// a container (`-v /:/host:ro` gives `/host`): a collector reads `/proc`, `/sys`, `/etc`
    /// and the machine's mounts under it. Absent: the collector's own view, `/`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host_root: Option<std::path::PathBuf>,
}

fn empty_object() -> serde_json::Value {
    serde_json::Value::Object(serde_json::Map::new())
}

fn default_log_level() -> crate::abi::LogLevel {
    crate::abi::log_level::INFO
}

impl InitParams {
    /// Parameters for collector `collector` with this config table.
    pub fn new(collector: &str, config: serde_json::Value) -> Self {
        Self {
            api_version: API_VERSION.to_owned(),
            collector: collector.to_owned(),
            config,
            log_level: default_log_level(),
            host_root: None,
        }
    }

    /// `path` (absolute, as seen on the monitored machine) under [`InitParams::host_root`],
    /// or `path` itself without a host root: `/proc` becomes `/host/proc`.
    pub fn host_path(&self, path: impl AsRef<std::path::Path>) -> std::path::PathBuf {
        let path = path.as_ref();
        match &self.host_root {
            Some(root) => root.join(path.strip_prefix("/").unwrap_or(path)),
            None => path.to_owned(),
        }
    }
}

fn panic_message(payload: &(dyn Any + Send)) -> String {
    if let Some(s) = payload.downcast_ref::<&str>() {
        (*s).to_owned()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "panic with a non-string payload".to_owned()
    }
}

/// Runs `f`, turning a panic into [`PluginError::Panicked`].
fn guarded<T>(f: impl FnOnce() -> Result<T, PluginError>) -> RResult<T, PluginError> {
    match catch_unwind(AssertUnwindSafe(f)) {
        Ok(Ok(v)) => ROk(v),
        Ok(Err(e)) => RErr(e),
        Err(payload) => RErr(PluginError::Panicked(panic_message(&*payload).into())),
    }
}

/// The description of `C`, as `describe` returns it.
pub fn info<C: Collector>(plugin_version: &str) -> PluginInfo {
    PluginInfo {
        name: C::NAME.to_owned(),
        version: plugin_version.to_owned(),
        api_version: API_VERSION.to_owned(),
        description: C::DESCRIPTION.to_owned(),
        series: C::series(),
    }
}

struct Adapter<C: Collector> {
    inner: C,
}

impl<C: Collector> CollectorObject for Adapter<C> {
    fn collect(&mut self) -> RResult<RString, PluginError> {
        guarded(|| {
            let section = self.inner.collect().map_err(PluginError::from)?;
            encode_section(&section).map(RString::from).map_err(|e| {
                PluginError::CollectFailed(format!("cannot encode section: {e}").into())
            })
        })
    }

    fn call(&mut self, method: RStr<'_>, _payload: RStr<'_>) -> RResult<RString, PluginError> {
        RErr(PluginError::CollectFailed(
            format!("unknown method `{}`", method.as_str()).into(),
        ))
    }
}

#[doc(hidden)]
pub fn __describe<C: Collector>(plugin_version: &str) -> RString {
    match catch_unwind(|| serde_json::to_string(&info::<C>(plugin_version))) {
        Ok(Ok(s)) => s.into(),
        _ => RString::from("{}"),
    }
}

#[doc(hidden)]
pub fn __create<C: Collector>(init: RStr<'_>, log: HostLog) -> RResult<CollectorBox, PluginError> {
    guarded(|| {
        let mut params: InitParams = serde_json::from_str(init.as_str()).map_err(|e| {
            PluginError::InvalidConfig(format!("cannot read start-up parameters: {e}").into())
        })?;
        crate::log_bridge::install(log.log, C::NAME, params.log_level);
        let config: C::Config = serde_json::from_value(std::mem::take(&mut params.config))
            .map_err(|e| PluginError::InvalidConfig(e.to_string().into()))?;
        let inner = C::create(config, &params).map_err(PluginError::from)?;
        Ok(CollectorObject_TO::from_value(
            Adapter { inner },
            abi_stable::sabi_trait::TD_Opaque,
        ))
    })
}

#[doc(hidden)]
pub extern "C" fn __extension(
    method: RStr<'_>,
    _payload: RStr<'_>,
) -> RResult<RString, PluginError> {
    RErr(PluginError::CollectFailed(
        format!("unknown extension `{}`", method.as_str()).into(),
    ))
}

/// Keeps `RBox` reachable for the macro's expansion.
#[doc(hidden)]
pub type __RBox<T> = RBox<T>;

/// Exports a [`Collector`] as a vitals plugin library: the root module and every FFI detail.
///
/// Call it once, at the crate root of a `cdylib` crate.
#[macro_export]
macro_rules! export_collector {
    ($collector:ty) => {
        #[doc(hidden)]
        pub mod __vitals_plugin_export {
            use super::*;
            use abi_stable::prefix_type::PrefixTypeTrait as _;
            use abi_stable::std_types::{RResult, RStr, RString};
            use $crate::__private::abi_stable;

            extern "C" fn describe() -> RString {
                $crate::sdk::__describe::<$collector>(env!("CARGO_PKG_VERSION"))
            }

            extern "C" fn create(
                init: RStr<'_>,
                log: $crate::abi::HostLog,
            ) -> RResult<$crate::abi::CollectorBox, $crate::abi::PluginError> {
                $crate::sdk::__create::<$collector>(init, log)
            }

            /// The root module of this plugin library.
            pub fn root_module() -> $crate::abi::PluginModuleRef {
                $crate::abi::PluginModule {
                    describe,
                    create,
                    extension: $crate::sdk::__extension,
                }
                .leak_into_prefix()
            }

            extern "C" fn erased_root_module() -> abi_stable::library::RootModuleResult {
                abi_stable::library::__call_root_module_loader(root_module)
            }

            /// The library header abi_stable looks up when the host loads this library.
            #[export_name = "_1as_0lib_1header_0root_bmodule_bloader"]
            pub static LIB_HEADER: abi_stable::library::LibHeader = unsafe {
                abi_stable::library::LibHeader::from_constructor::<$crate::abi::PluginModuleRef>(
                    erased_root_module,
                    abi_stable::library::CheckTypeLayout::Yes,
                )
            };
        }
    };
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Guards the start-up parameters' compatibility: a host that sends no `host_root` (an
    /// older one) is read as "no host root", and none is sent when there is none.
    #[test]
    fn host_root_is_optional_on_the_wire() {
        let old = r#"{"api_version":"1.0.0","collector":"cpu","config":{}}"#;
        let params: InitParams = serde_json::from_str(old).expect("old parameters");
        assert_eq!(params.host_root, None);
        let text = serde_json::to_string(&InitParams::new("cpu", empty_object())).expect("json");
        assert!(!text.contains("host_root"), "{text}");
    }

    /// Guards the section depth bound: a section at the bound encodes as `serde_json` would,
    /// one level past it is an error naming the bound, and thousands of levels stop at the
    /// bound without recursing into the rest (no stack overflow on a small thread).
    #[test]
    fn sections_deeper_than_the_bound_are_refused() {
        struct Nest(usize);
        impl Serialize for Nest {
            fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                use serde::ser::SerializeMap;
                if self.0 == 0 {
                    return s.serialize_u64(0);
                }
                let mut m = s.serialize_map(Some(1))?;
                m.serialize_entry("a", &Nest(self.0 - 1))?;
                m.end()
            }
        }
        let at_bound = encode_section(&Nest(MAX_SECTION_DEPTH)).expect("at the bound");
        assert_eq!(
            at_bound,
            serde_json::to_string(&Nest(MAX_SECTION_DEPTH)).expect("json")
        );
        let past = encode_section(&Nest(MAX_SECTION_DEPTH + 1)).expect_err("one past the bound");
        assert!(past.contains("nested deeper than 64 levels"), "{past}");
        let deep = std::thread::Builder::new()
            .stack_size(256 << 10)
            .spawn(|| encode_section(&Nest(100_000)))
            .expect("thread")
            .join()
            .expect("no stack overflow");
        assert!(deep.is_err());
    }

    /// Guards `host_path`: absolute machine paths go under the host root, unchanged without one.
    #[test]
    fn host_path_prefixes_the_host_root() {
        let mut params = InitParams::new("disk", empty_object());
        assert_eq!(params.host_path("/proc"), std::path::Path::new("/proc"));
        params.host_root = Some("/host".into());
        assert_eq!(
            params.host_path("/proc"),
            std::path::Path::new("/host/proc")
        );
        assert_eq!(
            params.host_path("/etc/os-release"),
            std::path::Path::new("/host/etc/os-release")
        );
        assert_eq!(params.host_path("sys"), std::path::Path::new("/host/sys"));
    }
}
