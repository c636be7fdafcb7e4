//! The vitals plugin API: the stable ABI between host and collector libraries, and the safe SDK.
//!
//! A complete collector plugin (in a crate with `crate-type = ["cdylib"]`):
//!
//! ```
//! use vitals_plugin_api::prelude::*;
//!
//! /// Reports how many files a folder holds.
//! pub struct FileCount {
//!     folder: std::path::PathBuf,
//! }
//!
//! /// The `[collectors.files.config]` table.
//! #[derive(Deserialize)]
//! #[serde(default, deny_unknown_fields)]
//! pub struct Config {
//!     /// The folder to count.
//!     folder: String,
//! }
//!
//! impl Default for Config {
//!     fn default() -> Self {
//!         Self { folder: "/tmp".into() }
//!     }
//! }
//!
//! /// The `files` section.
//! #[derive(Serialize)]
//! pub struct Section {
//!     /// Entries in the folder.
//!     count: u64,
//! }
//!
//! impl Collector for FileCount {
//!     const NAME: &'static str = "files";
//!     type Config = Config;
//!     type Section = Section;
//!
//!     fn new(config: Config) -> Result<Self, Error> {
//!         Ok(Self { folder: config.folder.into() })
//!     }
//!
//!     fn collect(&mut self) -> Result<Section, Error> {
//!         let count = std::fs::read_dir(&self.folder)?.count() as u64;
//!         log::debug!("{} entries", count);
//!         Ok(Section { count })
//!     }
//! }
//!
//! export_collector!(FileCount);
//! # fn main() {
//! #     vitals_plugin_api::testing::assert_contract::<FileCount>();
//! # }
//! ```
//!
//! Point the host's config at the built library and the section appears in the snapshot:
//!
//! ```toml
//! [collectors.files]
//! library = "target/release/libmy_plugin.so"
//! interval = "10s"
//! config = { folder = "/var/spool" }
//! ```
//!
//! What crosses the boundary is defined in [`abi`] and frozen for the 1.x series; the
//! sections of the built-in collectors are in [`sections`].

#![warn(missing_docs)]

#[allow(non_local_definitions)] // abi_stable's `sabi_trait` expansion
pub mod abi;
mod log_bridge;
pub mod sdk;
pub mod sections;
pub mod testing;

pub use abi::{PluginError, PluginModule, PluginModuleRef};
pub use sdk::{
    encode_section, Collector, Error, InitParams, PluginInfo, SectionEvent, Series, API_VERSION,
    EVENTS_FIELD, MAX_SECTION_BYTES, MAX_SECTION_DEPTH,
};

/// Re-exports the `export_collector!` expansion needs.
#[doc(hidden)]
pub mod __private {
    pub use abi_stable;
}

/// Everything a plugin author needs in one import.
pub mod prelude {
    pub use crate::export_collector;
    pub use crate::sdk::{Collector, Error, InitParams, SectionEvent, Series};
    pub use log;
    pub use serde::{Deserialize, Serialize};
}
