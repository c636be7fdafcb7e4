//! Loads plugin libraries one by one (abi_stable header + layout and version check) and describes them.

use std::path::{Path, PathBuf};

use abi_stable::library::{lib_header_from_path, LibHeader, LibraryError, RootModule};
use abi_stable::type_layout::{TLData, TypeLayout};
use abi_stable::StableAbi;
use vitals_plugin_api::abi::minimal;
use vitals_plugin_api::{PluginInfo, PluginModuleRef, API_VERSION};

/// A plugin library that passed every check.
#[derive(Clone)]
pub struct LoadedPlugin {
    /// Where it was loaded from.
    pub path: PathBuf,
    /// Its root module.
    pub module: PluginModuleRef,
    /// What it says of itself.
    pub info: PluginInfo,
}

impl std::fmt::Debug for LoadedPlugin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LoadedPlugin")
            .field("path", &self.path)
            .field("info", &self.info)
            .finish()
    }
}

/// Why a library could not be used as a plugin.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// No file at the path.
    #[error("plugin library not found: {0}")]
    NotFound(PathBuf),
    /// The dynamic loader refused the file.
    #[error("cannot open {path} as a shared library: {reason}")]
    Open {
        /// The library path.
        path: PathBuf,
        /// The loader's message.
        reason: String,
    },
    /// A shared library without a vitals root module.
    #[error("{0} is not a vitals plugin: it exports no plugin root module")]
    NotAPlugin(PathBuf),
    /// Built against another major version of the plugin API.
    #[error(
        "{path} was built against vitals-plugin-api {plugin}, but this host speaks {host}: \
         the major versions must match"
    )]
    IncompatibleVersion {
        /// The library path.
        path: PathBuf,
        /// The plugin's API version.
        plugin: String,
        /// The host's API version.
        host: String,
    },
    /// The layout of the root module does not match.
    #[error("{path} has an incompatible plugin ABI layout: {reason}")]
    IncompatibleLayout {
        /// The library path.
        path: PathBuf,
        /// What abi_stable found.
        reason: String,
    },
    /// Any other refusal by abi_stable.
    #[error("{path} cannot be loaded as a vitals plugin: {reason}")]
    Other {
        /// The library path.
        path: PathBuf,
        /// What abi_stable said.
        reason: String,
    },
    /// `describe` returned something that is not plugin info.
    #[error("{path}: the plugin's description is not valid: {reason}")]
    BadDescription {
        /// The library path.
        path: PathBuf,
        /// The parse error.
        reason: String,
    },
}

/// Loads one plugin library on its own (never through abi_stable's per-type module cache).
///
/// The library stays loaded for the life of the process.
///
/// # Errors
/// A [`LoadError`] that says what is wrong with the file.
pub fn load(path: &Path) -> Result<LoadedPlugin, LoadError> {
    if !path.exists() {
        return Err(LoadError::NotFound(path.to_owned()));
    }
    let header = lib_header_from_path(path).map_err(|e| map_error(path, e))?;
    let module = match header.init_root_module::<PluginModuleRef>() {
        Ok(m) => m,
        // abi_stable refuses a root module with fewer fields than ours: a plugin from before an
        // optional field was added. Check its required prefix alone.
        Err(e @ LibraryError::AbiInstability(_)) => {
            older_layout(header).ok_or_else(|| map_error(path, e))?
        }
        Err(e) => return Err(map_error(path, e)),
    };
    let text = (module.describe())();
    let info: PluginInfo =
        serde_json::from_str(text.as_str()).map_err(|e| LoadError::BadDescription {
            path: path.to_owned(),
            reason: e.to_string(),
        })?;
    Ok(LoadedPlugin {
        path: path.to_owned(),
        module,
        info,
    })
}

/// How many fields a root-module layout (`PrefixRef<PluginModule>`) gives `PluginModule`.
fn root_fields(layout: &'static TypeLayout) -> Option<usize> {
    let module = layout.phantom_fields().iter().next()?.layout();
    match module.data() {
        TLData::PrefixType(p) => Some(p.fields.len()),
        _ => None,
    }
}

/// The root module of a plugin whose layout is an older prefix of ours; `None` otherwise.
fn older_layout(header: &'static LibHeader) -> Option<PluginModuleRef> {
    let theirs = root_fields(header.layout()?)?;
    let ours = root_fields(<PluginModuleRef as StableAbi>::LAYOUT)?;
    if theirs >= ours {
        return None;
    }
    header.ensure_layout::<minimal::PluginModuleRef>().ok()?;
    // SAFETY: the fields up to `create` were checked above; later fields are read through
    // accessors that consult the plugin's own field count (None when absent).
    unsafe { header.unchecked_layout::<PluginModuleRef>() }.ok()
}

fn map_error(path: &Path, e: LibraryError) -> LoadError {
    let path = path.to_owned();
    match e {
        LibraryError::OpenError { err, .. } => LoadError::Open {
            path,
            reason: err.to_string(),
        },
        LibraryError::GetSymbolError { .. } => LoadError::NotAPlugin(path),
        LibraryError::IncompatibleVersionNumber {
            expected_version,
            actual_version,
            ..
        } => LoadError::IncompatibleVersion {
            path,
            plugin: actual_version.to_string(),
            host: expected_version.to_string(),
        },
        LibraryError::AbiInstability(err) => LoadError::IncompatibleLayout {
            path,
            reason: summarise(&err.to_string()),
        },
        other => LoadError::Other {
            path,
            reason: summarise(&other.to_string()),
        },
    }
}

/// abi_stable's layout reports run to hundreds of lines; keep the head.
fn summarise(report: &str) -> String {
    const LIMIT: usize = 600;
    let one_line = report.split_whitespace().collect::<Vec<_>>().join(" ");
    if one_line.len() <= LIMIT {
        one_line
    } else {
        let cut = (0..=LIMIT)
            .rev()
            .find(|i| one_line.is_char_boundary(*i))
            .unwrap_or(0);
        format!("{} …", &one_line[..cut])
    }
}

/// The plugin API version this host was built with.
pub fn host_api_version() -> &'static str {
    API_VERSION
}

/// The abi_stable name of the root module type, for messages.
pub fn root_module_name() -> &'static str {
    PluginModuleRef::NAME
}
