//! Disk collector: mounted file systems from `/proc/self/mountinfo`, space from statvfs, I/O rates from `/proc/diskstats`.

mod collect;
pub mod diskstats;
pub mod filter;
pub mod mountinfo;
pub mod space;

use std::path::PathBuf;
use std::time::Duration;

use vitals_plugin_api::prelude::*;

pub use collect::DiskCollector;
pub use diskstats::{parse_diskstats, DiskIo};
pub use filter::{select_mounts, MountFilter, PSEUDO_FS_TYPES};
pub use mountinfo::{parse_mountinfo, unescape_mount_field, Mount, REFRESH_EVERY};
pub use space::{statvfs_space, Space, StatFn};

/// The `[collectors.disk.config]` table.
#[derive(Debug, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// File system type patterns (glob) to report even though they are pseudo file systems, e.g. `["tmpfs"]`.
    pub include_fs_types: Vec<String>,
    /// File system type patterns (glob) to leave out, e.g. `["nfs*"]`. Exclusion wins over inclusion.
    pub exclude_fs_types: Vec<String>,
    /// Mount point patterns (glob) to report even though their type is a pseudo file system, e.g. `["/dev/shm"]`.
    pub include_mount_points: Vec<String>,
    /// Mount point patterns (glob) to leave out, e.g. `["/mnt/backup*"]`. Exclusion wins over inclusion.
    pub exclude_mount_points: Vec<String>,
    /// How long one mount's space query may take before the mount is reported as not responding.
    #[serde(with = "humantime_serde")]
    pub statfs_timeout: Duration,
    /// Root of the proc tree to read `self/mountinfo` and `diskstats` from (test-only; default `/proc`).
    pub proc_root: PathBuf,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            include_fs_types: Vec::new(),
            exclude_fs_types: Vec::new(),
            include_mount_points: Vec::new(),
            exclude_mount_points: Vec::new(),
            statfs_timeout: Duration::from_secs(1),
            proc_root: PathBuf::from("/proc"),
        }
    }
}

export_collector!(DiskCollector);

/// Paths and helpers the module tests share.
#[cfg(test)]
pub(crate) mod fixtures {
    use std::path::Path;

    use crate::{parse_mountinfo, Config, Mount, Space};

    /// A proc tree with a `self/mountinfo` and a `diskstats`.
    pub const PROC: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/proc");

    /// The fixture's mount table, parsed.
    pub fn mounts() -> Vec<Mount> {
        parse_mountinfo(
            &std::fs::read_to_string(format!("{PROC}/self/mountinfo")).expect("fixture"),
        )
    }

    /// Every mount is 1 TiB with a quarter used; 100 GiB of the free space is reserved for root.
    pub fn fake_space(_: &Path) -> Result<Space, String> {
        Ok(Space {
            total_bytes: 1 << 40,
            free_bytes: 3 << 38,
            available_bytes: (3 << 38) - (100 << 30),
        })
    }

    /// The default config reading from `proc_root`.
    pub fn config(proc_root: &Path) -> Config {
        Config {
            proc_root: proc_root.to_path_buf(),
            ..Config::default()
        }
    }
}
