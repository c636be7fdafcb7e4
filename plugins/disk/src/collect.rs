//! The disk collector: each collect takes the selected mounts, their space and the block
//! devices' counters, and joins them into one row per mounted file system.

use std::collections::HashMap;
use std::time::Instant;

use vitals_plugin_api::prelude::*;
use vitals_plugin_api::sections::{percent, DiskInfo, DiskStats};

use crate::diskstats::{kernel_device_name, rate, read_diskstats, DiskIo};
use crate::filter::MountFilter;
use crate::mountinfo::MountTable;
use crate::space::{statvfs_space, Space, SpaceQueries, StatFn};
use crate::{Config, Mount};

/// Reports mounted file systems; keeps the previous I/O counters for rates and the queries
/// that have not answered.
pub struct DiskCollector {
    filter: MountFilter,
    proc_root: std::path::PathBuf,
    previous_io: HashMap<(u32, u32), (u64, u64)>,
    previous_at: Option<Instant>,
    space: SpaceQueries,
    table: MountTable,
}

impl DiskCollector {
    /// A collector that reads space with `stat` instead of statvfs (for tests).
    ///
    /// # Errors
    /// [`Error::InvalidConfig`] for a malformed pattern or a zero timeout.
    pub fn with_stat(config: Config, stat: StatFn) -> Result<Self, Error> {
        if config.statfs_timeout.is_zero() {
            return Err(Error::invalid_config("`statfs_timeout` must be above zero"));
        }
        Ok(Self {
            filter: MountFilter::from_config(&config)?,
            table: MountTable::new(&config.proc_root),
            proc_root: config.proc_root,
            previous_io: HashMap::new(),
            previous_at: None,
            space: SpaceQueries::new(stat, config.statfs_timeout),
        })
    }

    /// Space-query threads kept for the next collect.
    #[cfg(test)]
    pub(crate) fn space_threads_idle(&self) -> usize {
        self.space.idle_threads()
    }

    /// One row: the mount, its space, and its counters with rates against the previous
    /// collect (`seconds` ago); records the counters for the next one in `current_io`.
    fn row(
        &self,
        (mount, others): (Mount, Vec<String>),
        space: &Space,
        counters: Option<&DiskIo>,
        seconds: f64,
        current_io: &mut HashMap<(u32, u32), (u64, u64)>,
    ) -> DiskInfo {
        let (mut read_rate, mut write_rate) = (None, None);
        if let Some(c) = counters {
            let key = (c.major, c.minor);
            if let Some(&(r, w)) = self.previous_io.get(&key) {
                read_rate = rate(c.read_bytes, r, seconds);
                write_rate = rate(c.written_bytes, w, seconds);
            }
            current_io.insert(key, (c.read_bytes, c.written_bytes));
        }
        let used = space.total_bytes.saturating_sub(space.free_bytes);
        DiskInfo {
            device: mount.source,
            mount_point: mount.mount_point,
            other_mount_points: others,
            fs_type: mount.fs_type,
            read_only: mount.read_only,
            total_bytes: space.total_bytes,
            used_bytes: used,
            free_bytes: space.available_bytes,
            used_percent: percent(used, used.saturating_add(space.available_bytes)),
            read_bytes_per_second: read_rate,
            write_bytes_per_second: write_rate,
            read_bytes_total: counters.map(|c| c.read_bytes),
            written_bytes_total: counters.map(|c| c.written_bytes),
        }
    }
}

impl Collector for DiskCollector {
    const NAME: &'static str = "disk";
    const DESCRIPTION: &'static str =
        "Mounted file systems: device, mount point, type, space and read/write rates";
    type Config = Config;
    type Section = DiskStats;

    fn new(config: Config) -> Result<Self, Error> {
        Self::with_stat(config, statvfs_space)
    }

    /// Under a host root: the host's mounts (pid 1's table under its `proc`), each queried
    /// through the root, and the host's `diskstats`.
    fn create(mut config: Config, init: &InitParams) -> Result<Self, Error> {
        let Some(root) = &init.host_root else {
            return Self::new(config);
        };
        config.proc_root = init.host_path(&config.proc_root);
        let mut collector = Self::new(config)?;
        collector.table = MountTable::of_process(&collector.proc_root, "1");
        collector.space.set_root(root);
        Ok(collector)
    }

    fn collect(&mut self) -> Result<DiskStats, Error> {
        let mounts = self.table.mounts(&self.filter)?;
        let (spaces, not_responding) = self.space.query(&mounts);

        let io = read_diskstats(&self.proc_root);
        let now = Instant::now();
        let seconds = self
            .previous_at
            .map(|t| now.duration_since(t).as_secs_f64())
            .unwrap_or(0.0);
        let by_name: HashMap<&str, &DiskIo> = io.values().map(|d| (d.name.as_str(), d)).collect();

        let mut disks = Vec::new();
        let mut current_io = HashMap::new();
        for (mount, others) in mounts {
            let Some(space) = spaces.get(&mount.mount_point) else {
                continue;
            };
            // df leaves out file systems of size 0 (kernel views that slipped the type filter).
            if space.total_bytes == 0 {
                continue;
            }
            let counters = io.get(&(mount.major, mount.minor)).or_else(|| {
                kernel_device_name(&mount.source).and_then(|n| by_name.get(n.as_str()).copied())
            });
            disks.push(self.row((mount, others), space, counters, seconds, &mut current_io));
        }
        self.previous_io = current_io;
        self.previous_at = Some(now);
        Ok(DiskStats {
            disks,
            not_responding,
        })
    }

    fn series() -> Vec<Series> {
        vec![
            Series::new("used_percent", "/disks/*/used_percent", "percent")
                .labelled_by("mount_point"),
            Series::new(
                "read_bytes_per_second",
                "/disks/*/read_bytes_per_second",
                "bytes_per_second",
            )
            .labelled_by("mount_point"),
            Series::new(
                "write_bytes_per_second",
                "/disks/*/write_bytes_per_second",
                "bytes_per_second",
            )
            .labelled_by("mount_point"),
        ]
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fixtures::{self, fake_space};
    use crate::PSEUDO_FS_TYPES;
    use std::path::Path;
    use std::time::Duration;

    /// Guards the plugin contract: default config, unknown keys refused, collect never panics.
    #[test]
    fn honours_the_plugin_contract() {
        let report = vitals_plugin_api::testing::assert_contract::<DiskCollector>();
        let section: DiskStats =
            serde_json::from_value(report.last_section().expect("a section").clone())
                .expect("DiskStats");
        for d in &section.disks {
            assert!(d.used_bytes <= d.total_bytes, "{d:?}");
            assert!((0.0..=100.0).contains(&d.used_percent), "{d:?}");
            assert!(!PSEUDO_FS_TYPES.contains(&d.fs_type.as_str()), "{d:?}");
        }
    }

    /// Guards the host-root path: the mounts are pid 1's under the root's `proc`, and each is
    /// queried through the root (statvfs of the root itself for `/`).
    #[test]
    fn reads_the_hosts_mounts_under_a_host_root() {
        let root = tempfile::tempdir().expect("tempdir");
        std::fs::create_dir_all(root.path().join("proc/1")).expect("mkdir");
        std::fs::write(
            root.path().join("proc/1/mountinfo"),
            "21 1 259:2 / / rw,relatime shared:1 - ext4 /dev/hostdisk rw\n\
             22 21 259:3 / /no/such/mount rw shared:2 - ext4 /dev/gone rw\n",
        )
        .expect("write");
        std::fs::write(root.path().join("proc/diskstats"), "").expect("write");
        let mut init = InitParams::new("disk", serde_json::json!({}));
        init.host_root = Some(root.path().to_owned());
        let mut c = DiskCollector::create(Config::default(), &init).expect("create");
        let s = c.collect().expect("collect");
        let expected = statvfs_space(root.path()).expect("statvfs of the root");
        assert_eq!(s.disks.len(), 1, "{:?}", s.disks);
        let d = &s.disks[0];
        assert_eq!(
            (d.device.as_str(), d.mount_point.as_str()),
            ("/dev/hostdisk", "/")
        );
        assert_eq!(d.total_bytes, expected.total_bytes);
    }

    /// Guards config validation: a malformed pattern and a zero timeout are refused by name.
    #[test]
    fn bad_patterns_are_invalid_config() {
        let err = DiskCollector::new(Config {
            exclude_mount_points: vec!["/mnt/[".into()],
            ..Config::default()
        })
        .err()
        .expect("refused");
        assert!(
            matches!(&err, Error::InvalidConfig(m) if m.contains("exclude_mount_points") && m.contains("/mnt/[")),
            "{err}"
        );
        let err = DiskCollector::new(Config {
            statfs_timeout: Duration::ZERO,
            ..Config::default()
        })
        .err()
        .expect("refused");
        assert!(err.to_string().contains("statfs_timeout"), "{err}");
        let parsed: Result<Config, _> =
            serde_json::from_value(serde_json::json!({ "statfs_timeout": "soon" }));
        assert!(parsed.is_err());
    }

    /// Guards a collect from a fixture proc tree: space figures, df-style percent, and
    /// read/write rates from counter deltas between two collects.
    #[test]
    fn collects_space_and_rates_from_a_proc_tree() {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::create_dir_all(dir.path().join("self")).expect("mkdir");
        std::fs::copy(
            format!("{}/self/mountinfo", fixtures::PROC),
            dir.path().join("self/mountinfo"),
        )
        .expect("copy");
        let stats =
            std::fs::read_to_string(format!("{}/diskstats", fixtures::PROC)).expect("fixture");
        std::fs::write(dir.path().join("diskstats"), &stats).expect("write");

        let mut c =
            DiskCollector::with_stat(fixtures::config(dir.path()), fake_space).expect("new");
        let first = c.collect().expect("collect");
        assert_eq!(first.disks.len(), 6);
        assert!(first.not_responding.is_empty());
        let root = &first.disks[0];
        assert_eq!(
            (root.device.as_str(), root.fs_type.as_str()),
            ("/dev/sda2", "ext4")
        );
        assert_eq!(root.total_bytes, 1 << 40);
        assert_eq!(root.used_bytes, 1 << 38);
        assert_eq!(root.free_bytes, (3 << 38) - (100 << 30));
        let expected = (1u64 << 38) as f64 * 100.0 / ((1u64 << 38) + root.free_bytes) as f64;
        assert!((root.used_percent - expected).abs() < 1e-9);
        assert_eq!(root.read_bytes_total, Some(397_000 * 512));
        assert_eq!(
            root.read_bytes_per_second, None,
            "no rate on the first collect"
        );
        let nfs = first
            .disks
            .iter()
            .find(|d| d.fs_type == "nfs4")
            .expect("nfs");
        assert_eq!(nfs.read_bytes_total, None, "no block device, no counters");

        // sda2 reads 2,000 more sectors and writes 500 more.
        let grown = stats.replace(
            "8800 100 397000 4900 2990 200 79900",
            "8800 100 399000 4900 2990 200 80400",
        );
        assert_ne!(grown, stats);
        std::fs::write(dir.path().join("diskstats"), grown).expect("write");
        std::thread::sleep(Duration::from_millis(20));
        let second = c.collect().expect("collect");
        // The query threads of the first collect answered the second: one per mount, no more.
        assert_eq!(c.space_threads_idle(), 6, "threads kept between collects");
        let root = &second.disks[0];
        let read = root.read_bytes_per_second.expect("read rate");
        let write = root.write_bytes_per_second.expect("write rate");
        assert!(read > 0.0 && write > 0.0);
        assert!((read / write - 4.0).abs() < 1e-9, "{read} / {write}");
        let data = second
            .disks
            .iter()
            .find(|d| d.mount_point == "/data")
            .expect("/data");
        assert_eq!(data.read_bytes_per_second, Some(0.0));
    }

    /// Guards the size rule: a mount whose size is 0 is left out, as `df` does.
    #[test]
    fn a_file_system_of_size_zero_is_left_out() {
        fn zero_for_data(path: &Path) -> Result<Space, String> {
            if path == Path::new("/data") {
                return Ok(Space {
                    total_bytes: 0,
                    free_bytes: 0,
                    available_bytes: 0,
                });
            }
            fake_space(path)
        }
        let mut c =
            DiskCollector::with_stat(fixtures::config(Path::new(fixtures::PROC)), zero_for_data)
                .expect("new");
        let s = c.collect().expect("collect");
        assert_eq!(s.disks.len(), 5);
        assert!(s.disks.iter().all(|d| d.mount_point != "/data"));
    }

    /// Guards the proc root: a missing mount table is "unavailable", not a panic.
    #[test]
    fn a_missing_mount_table_is_unavailable() {
        let mut c =
            DiskCollector::new(fixtures::config(Path::new("/nonexistent/proc"))).expect("new");
        let err = c.collect().expect_err("error");
        assert!(
            matches!(&err, Error::Unavailable(m) if m.contains("/nonexistent/proc/self/mountinfo")),
            "{err}"
        );
    }
}
