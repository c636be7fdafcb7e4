//! The `disk` section: mounted file systems with their space and I/O rates (from the disk collector).

use serde::{Deserialize, Serialize};

/// The `disk` section.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DiskStats {
    /// One entry per device, in mount order; a device mounted at several points is listed once.
    pub disks: Vec<DiskInfo>,
    /// Mounts whose space query did not answer in time (a dead network mount); skipped until they answer.
    #[serde(default)]
    pub not_responding: Vec<StalledMount>,
}

/// One mounted file system.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DiskInfo {
    /// The mount source, e.g. `/dev/sda1` or `server:/export`.
    pub device: String,
    /// The first mount point of the device.
    pub mount_point: String,
    /// Further mount points of the same device (bind mounts, double mounts), in mount order.
    #[serde(default)]
    pub other_mount_points: Vec<String>,
    /// The file system type, e.g. `ext4`.
    pub fs_type: String,
    /// True when mounted read-only.
    pub read_only: bool,
    /// Size of the file system.
    pub total_bytes: u64,
    /// Space in use (total minus free, as `df` counts it).
    pub used_bytes: u64,
    /// Space an unprivileged user can still write (excludes the root reserve).
    pub free_bytes: u64,
    /// `used_bytes` as a share of `used_bytes + free_bytes`, as `df` shows it.
    pub used_percent: f64,
    /// Bytes read from the device per second since the previous collect (None on the first
    /// collect or when the kernel keeps no I/O counters for the device).
    pub read_bytes_per_second: Option<f64>,
    /// Bytes written to the device per second since the previous collect.
    pub write_bytes_per_second: Option<f64>,
    /// Bytes read from the device since boot, when the kernel counts them.
    pub read_bytes_total: Option<u64>,
    /// Bytes written to the device since boot, when the kernel counts them.
    pub written_bytes_total: Option<u64>,
}

/// A mount whose space query has not answered.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StalledMount {
    /// The mount source.
    pub device: String,
    /// The mount point.
    pub mount_point: String,
    /// The file system type.
    pub fs_type: String,
    /// Seconds since the query was started and is still waiting.
    pub waiting_seconds: f64,
}
