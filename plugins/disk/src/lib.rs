//! Disk collector: mounted file systems from `/proc/self/mountinfo`, space from statvfs, I/O rates from `/proc/diskstats`.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender, TryRecvError};
use std::time::{Duration, Instant};

use glob::Pattern;
use vitals_plugin_api::prelude::*;
use vitals_plugin_api::sections::{percent, DiskInfo, DiskStats, StalledMount};

/// File system types that hold no storage of their own (kernel views, memory, images, layers).
pub const PSEUDO_FS_TYPES: &[&str] = &[
    "autofs",
    "binfmt_misc",
    "bpf",
    "cgroup",
    "cgroup2",
    "configfs",
    "debugfs",
    "devpts",
    "devtmpfs",
    "efivarfs",
    "fuse.gvfsd-fuse",
    "fuse.lxcfs",
    "fuse.portal",
    "fuse.snapfuse",
    "fusectl",
    "hugetlbfs",
    "mqueue",
    "nsfs",
    "overlay",
    "proc",
    "pstore",
    "ramfs",
    "rpc_pipefs",
    "securityfs",
    "selinuxfs",
    "squashfs",
    "sysfs",
    "tmpfs",
    "tracefs",
];

/// Mount point prefixes of snap packages (each snap is a squashfs image mounted there).
const SNAP_PREFIXES: &[&str] = &["/snap/", "/var/lib/snapd/"];

/// The kernel counts `/proc/diskstats` sectors in 512-byte units whatever the device's sector size.
const DISKSTATS_SECTOR_BYTES: u64 = 512;

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

/// One line of `/proc/self/mountinfo`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mount {
    /// The device's major number (0 for file systems without a block device).
    pub major: u32,
    /// The device's minor number.
    pub minor: u32,
    /// The folder of the file system that is mounted (`/` for the whole file system).
    pub root: String,
    /// Where it is mounted.
    pub mount_point: String,
    /// The file system type, with the subtype for FUSE (`fuse.sshfs`).
    pub fs_type: String,
    /// The mount source, e.g. `/dev/sda1`.
    pub source: String,
    /// True when mounted read-only.
    pub read_only: bool,
}

/// Undoes the octal escapes (`\040` for a space) the kernel writes in mount table fields.
pub fn unescape_mount_field(field: &str) -> String {
    let bytes = field.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'\\' && i + 3 < bytes.len() {
            let digits = &bytes[i + 1..i + 4];
            if digits.iter().all(|b| (b'0'..=b'7').contains(b)) {
                let value = digits
                    .iter()
                    .fold(0u32, |acc, b| acc * 8 + u32::from(b - b'0'));
                if let Ok(b) = u8::try_from(value) {
                    out.push(b);
                    i += 4;
                    continue;
                }
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Parses `/proc/self/mountinfo`; malformed lines are skipped.
pub fn parse_mountinfo(text: &str) -> Vec<Mount> {
    text.lines().filter_map(parse_mountinfo_line).collect()
}

fn parse_mountinfo_line(line: &str) -> Option<Mount> {
    // id parent major:minor root mount_point options [optional fields…] - fstype source super_options
    let (before, after) = line.split_once(" - ")?;
    let fields: Vec<&str> = before.split_ascii_whitespace().collect();
    if fields.len() < 6 {
        return None;
    }
    let (major, minor) = fields[2].split_once(':')?;
    let mut rest = after.split_ascii_whitespace();
    let fs_type = rest.next()?;
    let source = rest.next().unwrap_or("none");
    Some(Mount {
        major: major.parse().ok()?,
        minor: minor.parse().ok()?,
        root: unescape_mount_field(fields[3]),
        mount_point: unescape_mount_field(fields[4]),
        fs_type: unescape_mount_field(fs_type),
        source: unescape_mount_field(source),
        read_only: fields[5].split(',').any(|o| o == "ro"),
    })
}

/// I/O counters of one block device from `/proc/diskstats`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DiskIo {
    /// The device's major number.
    pub major: u32,
    /// The device's minor number.
    pub minor: u32,
    /// The kernel's device name, e.g. `sda1`.
    pub name: String,
    /// Bytes read since boot.
    pub read_bytes: u64,
    /// Bytes written since boot.
    pub written_bytes: u64,
}

/// Parses `/proc/diskstats`; malformed lines are skipped.
pub fn parse_diskstats(text: &str) -> Vec<DiskIo> {
    text.lines()
        .filter_map(|line| {
            let f: Vec<&str> = line.split_ascii_whitespace().collect();
            // major minor name reads merged sectors_read ms writes merged sectors_written …
            if f.len() < 10 {
                return None;
            }
            Some(DiskIo {
                major: f[0].parse().ok()?,
                minor: f[1].parse().ok()?,
                name: f[2].to_owned(),
                read_bytes: f[5]
                    .parse::<u64>()
                    .ok()?
                    .saturating_mul(DISKSTATS_SECTOR_BYTES),
                written_bytes: f[9]
                    .parse::<u64>()
                    .ok()?
                    .saturating_mul(DISKSTATS_SECTOR_BYTES),
            })
        })
        .collect()
}

/// Which mounts are reported: the built-in pseudo file system filter plus the operator's patterns.
#[derive(Debug, Clone, Default)]
pub struct MountFilter {
    include_fs_types: Vec<Pattern>,
    exclude_fs_types: Vec<Pattern>,
    include_mount_points: Vec<Pattern>,
    exclude_mount_points: Vec<Pattern>,
}

fn patterns(key: &str, list: &[String]) -> Result<Vec<Pattern>, Error> {
    list.iter()
        .map(|p| {
            Pattern::new(p)
                .map_err(|e| Error::invalid_config(format!("`{key}`: bad pattern `{p}`: {e}")))
        })
        .collect()
}

impl MountFilter {
    /// The filter for a config; a malformed pattern is an invalid config naming it.
    ///
    /// # Errors
    /// [`Error::InvalidConfig`] naming the key and the bad pattern.
    pub fn from_config(config: &Config) -> Result<Self, Error> {
        Ok(Self {
            include_fs_types: patterns("include_fs_types", &config.include_fs_types)?,
            exclude_fs_types: patterns("exclude_fs_types", &config.exclude_fs_types)?,
            include_mount_points: patterns("include_mount_points", &config.include_mount_points)?,
            exclude_mount_points: patterns("exclude_mount_points", &config.exclude_mount_points)?,
        })
    }

    /// True when the mount is reported: not a pseudo file system or snap image unless
    /// included by pattern, and not excluded by pattern.
    pub fn keeps(&self, mount: &Mount) -> bool {
        let matches =
            |list: &[Pattern], value: &str| list.iter().any(|p: &Pattern| p.matches(value));
        if matches(&self.exclude_fs_types, &mount.fs_type)
            || matches(&self.exclude_mount_points, &mount.mount_point)
        {
            return false;
        }
        let built_in_drop = PSEUDO_FS_TYPES.contains(&mount.fs_type.as_str())
            || SNAP_PREFIXES
                .iter()
                .any(|p| mount.mount_point.starts_with(p));
        !built_in_drop
            || matches(&self.include_fs_types, &mount.fs_type)
            || matches(&self.include_mount_points, &mount.mount_point)
    }
}

/// The mounts to report: filtered, one per device. For a device mounted several times the
/// mount that shows the whole file system (root `/`) is kept, else the first in mount order;
/// the other mount points are returned beside it.
pub fn select_mounts(mounts: &[Mount], filter: &MountFilter) -> Vec<(Mount, Vec<String>)> {
    let mut out: Vec<(Mount, Vec<String>)> = Vec::new();
    let mut by_device: HashMap<(u32, u32), usize> = HashMap::new();
    for mount in mounts.iter().filter(|m| filter.keeps(m)) {
        match by_device.get(&(mount.major, mount.minor)) {
            Some(&i) => {
                let (kept, others) = &mut out[i];
                if kept.root != "/" && mount.root == "/" {
                    let previous = std::mem::replace(kept, mount.clone());
                    others.insert(0, previous.mount_point);
                } else {
                    others.push(mount.mount_point.clone());
                }
            }
            None => {
                by_device.insert((mount.major, mount.minor), out.len());
                out.push((mount.clone(), Vec::new()));
            }
        }
    }
    out
}

/// Space figures of one file system.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Space {
    /// Size of the file system.
    pub total_bytes: u64,
    /// Free space including the root reserve.
    pub free_bytes: u64,
    /// Free space an unprivileged user can use.
    pub available_bytes: u64,
}

/// How the space of one mount point is read (statvfs; replaced in tests by one that hangs).
pub type StatFn = fn(&Path) -> Result<Space, String>;

/// Reads a mount's space with statvfs(3).
pub fn statvfs_space(path: &Path) -> Result<Space, String> {
    let s = nix::sys::statvfs::statvfs(path).map_err(|e| e.to_string())?;
    let unit = s.fragment_size() as u64;
    Ok(Space {
        total_bytes: (s.blocks() as u64).saturating_mul(unit),
        free_bytes: (s.blocks_free() as u64).saturating_mul(unit),
        available_bytes: (s.blocks_available() as u64).saturating_mul(unit),
    })
}

/// Collects after which the mount table is read again even when no change was signalled.
pub const REFRESH_EVERY: u64 = 60;

/// An open `mountinfo`: the kernel marks it with POLLPRI when the mount table changes.
struct MountWatch {
    file: std::fs::File,
}

impl MountWatch {
    fn open(path: &Path) -> Option<Self> {
        std::fs::File::open(path).ok().map(|file| Self { file })
    }

    /// True when the mount table changed since the last call (or poll fails).
    fn changed(&self) -> bool {
        let mut fd = libc::pollfd {
            fd: std::os::fd::AsRawFd::as_raw_fd(&self.file),
            events: libc::POLLPRI,
            revents: 0,
        };
        // SAFETY: one valid pollfd, no wait.
        let n = unsafe { libc::poll(&mut fd, 1, 0) };
        n < 0 || fd.revents & (libc::POLLPRI | libc::POLLERR) != 0
    }
}

/// Idle space-query threads kept for the next collect, at most.
const IDLE_WORKERS: usize = 32;

/// One space query: the mount point and where its answer goes.
type Job = (PathBuf, Sender<Result<Space, String>>);

/// A thread that answers space queries one at a time. A thread whose query hangs is not
/// given another until it answers; the others go on.
struct Worker {
    jobs: Sender<Job>,
}

impl Worker {
    fn spawn(stat: StatFn) -> std::io::Result<Self> {
        let (jobs, queue) = mpsc::channel::<Job>();
        std::thread::Builder::new()
            .name("vitals-disk-statfs".into())
            .spawn(move || {
                for (path, reply) in queue {
                    let _ = reply.send(stat(&path));
                }
            })?;
        Ok(Self { jobs })
    }
}

/// A space query that has not answered yet.
struct Pending {
    reply: Receiver<Result<Space, String>>,
    worker: Worker,
    since: Instant,
    device: String,
    fs_type: String,
}

/// Reports mounted file systems; keeps the previous I/O counters for rates and the queries
/// that have not answered.
pub struct DiskCollector {
    filter: MountFilter,
    timeout: Duration,
    proc_root: PathBuf,
    stat: StatFn,
    previous_io: HashMap<(u32, u32), (u64, u64)>,
    previous_at: Option<Instant>,
    /// Keyed by mount point: a mount in here gets no new query until the old one answers.
    pending: HashMap<String, Pending>,
    /// Threads waiting for a query, reused from one collect to the next.
    idle: Vec<Worker>,
    /// Signals mount table changes; the selected mounts are cached in between.
    watch: Option<MountWatch>,
    mounts: Option<Vec<(Mount, Vec<String>)>>,
    mounts_age: u64,
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
            timeout: config.statfs_timeout,
            proc_root: config.proc_root,
            stat,
            previous_io: HashMap::new(),
            previous_at: None,
            pending: HashMap::new(),
            idle: Vec::new(),
            watch: None,
            mounts: None,
            mounts_age: 0,
        })
    }

    /// The mounts to report: read from `mountinfo` on a signalled change, on the first
    /// collect, or every [`REFRESH_EVERY`] collects; cached in between.
    fn mounts(&mut self) -> Result<Vec<(Mount, Vec<String>)>, Error> {
        let path = self.proc_root.join("self/mountinfo");
        if self.watch.is_none() {
            // Opened before the read, so a change during the read is signalled next time.
            self.watch = MountWatch::open(&path);
            self.mounts = None;
        }
        self.mounts_age += 1;
        let changed = self.watch.as_ref().is_none_or(MountWatch::changed);
        match &self.mounts {
            Some(m) if !changed && self.mounts_age < REFRESH_EVERY => Ok(m.clone()),
            _ => {
                let text = std::fs::read_to_string(&path).map_err(|e| {
                    self.watch = None;
                    Error::unavailable(format!("cannot read {}: {e}", path.display()))
                })?;
                let mounts = select_mounts(&parse_mountinfo(&text), &self.filter);
                self.mounts = Some(mounts.clone());
                self.mounts_age = 0;
                Ok(mounts)
            }
        }
    }

    /// Sends `path` to an idle worker (or a new one); None when no thread can be started.
    fn ask(&mut self, path: PathBuf) -> Option<(Receiver<Result<Space, String>>, Worker)> {
        let (tx, rx) = mpsc::channel();
        let mut job = (path, tx);
        loop {
            let worker = match self.idle.pop() {
                Some(w) => w,
                None => match Worker::spawn(self.stat) {
                    Ok(w) => w,
                    Err(e) => {
                        log::warn!("cannot query {}: {e}", job.0.display());
                        return None;
                    }
                },
            };
            match worker.jobs.send(job) {
                Ok(()) => return Some((rx, worker)),
                // Its thread is gone: try another.
                Err(mpsc::SendError(back)) => job = back,
            }
        }
    }

    /// Keeps a worker whose query answered for the next collect.
    fn release(&mut self, worker: Worker) {
        if self.idle.len() < IDLE_WORKERS {
            self.idle.push(worker);
        }
    }

    /// Queries the space of every mount at once, each on a thread of its own (threads are
    /// kept between collects), and waits for all of them until one shared deadline; a mount
    /// that misses it is left pending with its thread.
    fn query_space(
        &mut self,
        mounts: &[(Mount, Vec<String>)],
    ) -> (HashMap<String, Space>, Vec<StalledMount>) {
        let mut stalled = Vec::new();
        let mut asked = Vec::new();
        for (mount, _) in mounts {
            if let Some(p) = self.pending.get(&mount.mount_point) {
                match p.reply.try_recv() {
                    Err(TryRecvError::Empty) => {
                        stalled.push(StalledMount {
                            device: p.device.clone(),
                            mount_point: mount.mount_point.clone(),
                            fs_type: p.fs_type.clone(),
                            waiting_seconds: p.since.elapsed().as_secs_f64(),
                        });
                        continue;
                    }
                    // It answered at last (or its thread is gone): ask afresh below.
                    answer => {
                        log::info!("{} answers again", mount.mount_point);
                        if let Some(p) = self.pending.remove(&mount.mount_point) {
                            if answer.is_ok() {
                                self.release(p.worker);
                            }
                        }
                    }
                }
            }
            if let Some((rx, worker)) = self.ask(PathBuf::from(&mount.mount_point)) {
                asked.push((mount, rx, worker));
            }
        }
        let deadline = Instant::now() + self.timeout;
        let mut spaces = HashMap::new();
        for (mount, rx, worker) in asked {
            match rx.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
                Ok(Ok(space)) => {
                    self.release(worker);
                    spaces.insert(mount.mount_point.clone(), space);
                }
                Ok(Err(e)) => {
                    self.release(worker);
                    log::debug!("statvfs {}: {e}", mount.mount_point);
                }
                Err(RecvTimeoutError::Disconnected) => {
                    log::warn!(
                        "the space query of {} ended without an answer",
                        mount.mount_point
                    )
                }
                Err(RecvTimeoutError::Timeout) => {
                    log::warn!(
                        "{} ({}) did not answer within {:?}; skipped until it does",
                        mount.mount_point,
                        mount.fs_type,
                        self.timeout
                    );
                    stalled.push(StalledMount {
                        device: mount.source.clone(),
                        mount_point: mount.mount_point.clone(),
                        fs_type: mount.fs_type.clone(),
                        waiting_seconds: self.timeout.as_secs_f64(),
                    });
                    self.pending.insert(
                        mount.mount_point.clone(),
                        Pending {
                            reply: rx,
                            worker,
                            since: deadline - self.timeout,
                            device: mount.source.clone(),
                            fs_type: mount.fs_type.clone(),
                        },
                    );
                }
            }
        }
        (spaces, stalled)
    }

    fn read_io(&self) -> HashMap<(u32, u32), DiskIo> {
        // Without diskstats (some containers) the rates are simply absent.
        std::fs::read_to_string(self.proc_root.join("diskstats"))
            .map(|t| parse_diskstats(&t))
            .unwrap_or_default()
            .into_iter()
            .map(|d| ((d.major, d.minor), d))
            .collect()
    }
}

/// The kernel name of a device path (`/dev/mapper/root` -> `dm-0`), following symlinks.
fn kernel_device_name(source: &str) -> Option<String> {
    if !source.starts_with("/dev/") {
        return None;
    }
    let real = std::fs::canonicalize(source).ok()?;
    real.file_name().map(|n| n.to_string_lossy().into_owned())
}

fn rate(now: u64, before: u64, seconds: f64) -> Option<f64> {
    (now >= before && seconds > 0.0).then(|| (now - before) as f64 / seconds)
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

    fn collect(&mut self) -> Result<DiskStats, Error> {
        let mounts = self.mounts()?;
        let (spaces, not_responding) = self.query_space(&mounts);

        let io = self.read_io();
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
            disks.push(DiskInfo {
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
            });
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

export_collector!(DiskCollector);

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
    use std::sync::{Condvar, Mutex};

    const FIXTURE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/proc");

    fn fixture_mounts() -> Vec<Mount> {
        parse_mountinfo(
            &std::fs::read_to_string(format!("{FIXTURE}/self/mountinfo")).expect("fixture"),
        )
    }

    fn kept(config: &Config) -> Vec<(String, Vec<String>)> {
        let filter = MountFilter::from_config(config).expect("filter");
        select_mounts(&fixture_mounts(), &filter)
            .into_iter()
            .map(|(m, others)| (m.mount_point, others))
            .collect()
    }

    fn points(config: &Config) -> Vec<String> {
        kept(config).into_iter().map(|(p, _)| p).collect()
    }

    /// Every mount is 1 TiB with a quarter used; 100 GiB of the free space is reserved for root.
    fn fake_space(_: &Path) -> Result<Space, String> {
        Ok(Space {
            total_bytes: 1 << 40,
            free_bytes: 3 << 38,
            available_bytes: (3 << 38) - (100 << 30),
        })
    }

    fn fixture_config(proc_root: &Path) -> Config {
        Config {
            proc_root: proc_root.to_path_buf(),
            ..Config::default()
        }
    }

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

    /// Guards the mountinfo parser: fields, octal escapes, read-only flag, malformed lines skipped.
    #[test]
    fn parses_mountinfo_fixture() {
        let mounts = fixture_mounts();
        assert_eq!(mounts.len(), 19, "two malformed lines skipped");
        let root = mounts.iter().find(|m| m.mount_point == "/").expect("root");
        assert_eq!(
            root,
            &Mount {
                major: 8,
                minor: 2,
                root: "/".into(),
                mount_point: "/".into(),
                fs_type: "ext4".into(),
                source: "/dev/sda2".into(),
                read_only: false,
            }
        );
        let spaced = mounts
            .iter()
            .find(|m| m.mount_point == "/mnt/my disk")
            .expect("escaped space decoded");
        assert!(spaced.read_only);
        assert_eq!(unescape_mount_field(r"a\011b\134c\0"), "a\tb\\c\\0");
        assert_eq!(unescape_mount_field("é\\04"), "é\\04", "short escape kept");
        assert!(parse_mountinfo("").is_empty());
        assert!(parse_mountinfo("1 2 3 - x").is_empty());
    }

    /// Guards the built-in filter: squashfs, tmpfs, overlay, snap and kernel views are left
    /// out; a device mounted twice is listed once, at its whole-file-system mount point.
    #[test]
    fn filters_pseudo_file_systems_and_merges_double_mounts() {
        assert_eq!(
            kept(&Config::default()),
            vec![
                ("/".to_owned(), vec![]),
                ("/boot/efi".to_owned(), vec![]),
                ("/data".to_owned(), vec!["/srv/web".to_owned()]),
                ("/mnt/my disk".to_owned(), vec!["/mnt/backup".to_owned()]),
                ("/mnt/nfs".to_owned(), vec![]),
                ("/home".to_owned(), vec![]),
            ]
        );
    }

    /// Guards the operator's patterns: include re-admits a pseudo type or mount point,
    /// exclude drops, and exclusion wins.
    #[test]
    fn include_and_exclude_patterns_apply() {
        let with_tmpfs = points(&Config {
            include_fs_types: vec!["tmpfs".into()],
            ..Config::default()
        });
        assert!(with_tmpfs.contains(&"/run".to_owned()), "{with_tmpfs:?}");
        assert!(
            with_tmpfs.contains(&"/dev/shm".to_owned()),
            "{with_tmpfs:?}"
        );

        let shm_only = points(&Config {
            include_mount_points: vec!["/dev/shm".into()],
            ..Config::default()
        });
        assert!(shm_only.contains(&"/dev/shm".to_owned()), "{shm_only:?}");
        assert!(!shm_only.contains(&"/run".to_owned()), "{shm_only:?}");

        let no_mnt = points(&Config {
            exclude_mount_points: vec!["/mnt/*".into()],
            exclude_fs_types: vec!["vfat".into()],
            ..Config::default()
        });
        assert_eq!(no_mnt, vec!["/", "/data", "/home"]);

        let excluded_wins = points(&Config {
            include_fs_types: vec!["tmpfs".into()],
            exclude_mount_points: vec!["/run".into()],
            ..Config::default()
        });
        assert!(!excluded_wins.contains(&"/run".to_owned()));

        // An excluded first mount does not hide the device's other mount point.
        let backup_only = kept(&Config {
            exclude_mount_points: vec!["/mnt/my disk".into()],
            ..Config::default()
        });
        assert!(backup_only.contains(&("/mnt/backup".to_owned(), vec![])));
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

    /// Guards the diskstats parser: 512-byte sectors, old short lines, garbage skipped.
    #[test]
    fn parses_diskstats_fixture() {
        let io = parse_diskstats(
            &std::fs::read_to_string(format!("{FIXTURE}/diskstats")).expect("fixture"),
        );
        assert_eq!(io.len(), 7);
        let sda2 = io.iter().find(|d| d.name == "sda2").expect("sda2");
        assert_eq!((sda2.major, sda2.minor), (8, 2));
        assert_eq!(sda2.read_bytes, 397_000 * 512);
        assert_eq!(sda2.written_bytes, 79_900 * 512);
        let sdc1 = io.iter().find(|d| d.name == "sdc1").expect("short line");
        assert_eq!(sdc1.read_bytes, 1000 * 512);
    }

    /// Guards a collect from a fixture proc tree: space figures, df-style percent, and
    /// read/write rates from counter deltas between two collects.
    #[test]
    fn collects_space_and_rates_from_a_proc_tree() {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::create_dir_all(dir.path().join("self")).expect("mkdir");
        std::fs::copy(
            format!("{FIXTURE}/self/mountinfo"),
            dir.path().join("self/mountinfo"),
        )
        .expect("copy");
        let stats = std::fs::read_to_string(format!("{FIXTURE}/diskstats")).expect("fixture");
        std::fs::write(dir.path().join("diskstats"), &stats).expect("write");

        let mut c = DiskCollector::with_stat(fixture_config(dir.path()), fake_space).expect("new");
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
        assert_eq!(c.idle.len(), 6, "threads kept between collects");
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

    /// Runs `cmd` as root (directly, or through `sudo -n`); false when neither can.
    fn as_root(cmd: &[&str]) -> bool {
        // SAFETY: geteuid has no preconditions.
        let root = unsafe { libc::geteuid() } == 0;
        let mut c = if root {
            std::process::Command::new(cmd[0])
        } else {
            let mut c = std::process::Command::new("sudo");
            c.args(["-n", cmd[0]]);
            c
        };
        c.args(&cmd[1..]).output().is_ok_and(|o| o.status.success())
    }

    /// Guards the mount-table watch: quiet while nothing is mounted, signalled by a mount
    /// and by its unmount, each time once.
    #[test]
    fn a_mount_and_an_unmount_are_signalled() {
        let dir = tempfile::tempdir().expect("tempdir");
        let point = dir.path().to_string_lossy().into_owned();
        let watch = MountWatch::open(Path::new("/proc/self/mountinfo")).expect("open");
        if !as_root(&[
            "mount",
            "-t",
            "tmpfs",
            "-o",
            "size=1m",
            "vitals-test",
            &point,
        ]) {
            assert!(
                std::env::var("CI").as_deref() != Ok("true"),
                "CI=true but tmpfs cannot be mounted (needs root or passwordless sudo)"
            );
            eprintln!("\n!!!!!!!! SKIPPED a_mount_and_an_unmount_are_signalled: cannot mount (not root, no passwordless sudo)\n");
            return;
        }
        let mounted = watch.changed();
        let quiet = watch.changed();
        let unmounted = as_root(&["umount", &point]) && watch.changed();
        assert!(mounted, "the mount was not signalled");
        assert!(!quiet, "signalled twice for one mount");
        assert!(unmounted, "the unmount was not signalled");
    }

    static HANG: AtomicBool = AtomicBool::new(true);
    static HANG_CALLS: AtomicUsize = AtomicUsize::new(0);
    static RELEASE: (Mutex<()>, Condvar) = (Mutex::new(()), Condvar::new());

    /// Like a dead NFS server: the query of `/mnt/nfs` blocks while `HANG` is set.
    fn hanging_space(path: &Path) -> Result<Space, String> {
        if path == Path::new("/mnt/nfs") {
            HANG_CALLS.fetch_add(1, Ordering::SeqCst);
            let (lock, cv) = &RELEASE;
            let mut guard = lock.lock().map_err(|e| e.to_string())?;
            while HANG.load(Ordering::SeqCst) {
                guard = cv.wait(guard).map_err(|e| e.to_string())?;
            }
        }
        fake_space(path)
    }

    /// Guards the bounded space query: a hanging mount does not hang the collect, is
    /// reported as not responding, is not asked again while stuck, and is back once it answers.
    #[test]
    fn a_hanging_mount_is_skipped_until_it_answers() {
        let mut c = DiskCollector::with_stat(
            Config {
                statfs_timeout: Duration::from_millis(200),
                ..fixture_config(Path::new(FIXTURE))
            },
            hanging_space,
        )
        .expect("new");
        let first = c.collect().expect("collect");
        assert_eq!(first.disks.len(), 5, "every other mount is still reported");
        assert_eq!(first.not_responding.len(), 1);
        assert_eq!(first.not_responding[0].mount_point, "/mnt/nfs");
        assert_eq!(first.not_responding[0].device, "fileserver:/export/home");

        let second = c.collect().expect("collect");
        assert_eq!(second.not_responding.len(), 1);
        assert_eq!(
            HANG_CALLS.load(Ordering::SeqCst),
            1,
            "not asked again while stuck"
        );
        assert_eq!(c.idle.len(), 5, "the stuck thread is given no other query");

        HANG.store(false, Ordering::SeqCst);
        RELEASE.1.notify_all();
        let start = Instant::now();
        loop {
            let s = c.collect().expect("collect");
            if s.disks.iter().any(|d| d.mount_point == "/mnt/nfs") {
                assert!(s.not_responding.is_empty());
                break;
            }
            assert!(start.elapsed() < Duration::from_secs(20), "never came back");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Guards the proc root: a missing mount table is "unavailable", not a panic.
    #[test]
    fn a_missing_mount_table_is_unavailable() {
        let mut c =
            DiskCollector::new(fixture_config(Path::new("/nonexistent/proc"))).expect("new");
        let err = c.collect().expect_err("error");
        assert!(
            matches!(&err, Error::Unavailable(m) if m.contains("/nonexistent/proc/self/mountinfo")),
            "{err}"
        );
    }
}
