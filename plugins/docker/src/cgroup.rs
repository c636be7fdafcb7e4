//! A container's CPU, memory, block I/O and process counts read straight from its cgroup files
//! (v1 and v2) and `/proc/PID/net/dev`, which costs far less than asking the daemon for stats.

use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::procfs::{only_loopback, parse_net_dev};

/// Which cgroup hierarchy the machine uses, found once under the cgroup root.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Layout {
    /// The unified hierarchy (`cgroup.controllers` at the root).
    V2 {
        /// The cgroup2 mount, e.g. `/sys/fs/cgroup`.
        root: PathBuf,
    },
    /// One mount per controller (`/sys/fs/cgroup/memory`, `/sys/fs/cgroup/cpuacct`, …).
    V1 {
        /// The `cpuacct` controller's mount.
        cpuacct: PathBuf,
        /// The `memory` controller's mount.
        memory: PathBuf,
        /// The `blkio` controller's mount, when mounted.
        blkio: Option<PathBuf>,
        /// The `pids` controller's mount, when mounted.
        pids: Option<PathBuf>,
    },
}

impl Layout {
    /// Finds the layout under `root` (normally `/sys/fs/cgroup`); `None` when neither a
    /// unified hierarchy nor the v1 `cpuacct` and `memory` controllers are there.
    pub fn detect(root: &Path) -> Option<Layout> {
        if root.join("cgroup.controllers").is_file() {
            return Some(Layout::V2 {
                root: root.to_path_buf(),
            });
        }
        let dir = |names: &[&str]| {
            names
                .iter()
                .map(|n| root.join(n))
                .find(|p| p.join("cgroup.procs").is_file())
        };
        Some(Layout::V1 {
            cpuacct: dir(&["cpuacct", "cpu,cpuacct", "cpuacct,cpu"])?,
            memory: dir(&["memory"])?,
            blkio: dir(&["blkio"]),
            pids: dir(&["pids"]),
        })
    }

    /// A short name for the section's `stats_source`.
    pub fn name(&self) -> &'static str {
        match self {
            Layout::V2 { .. } => "cgroup v2",
            Layout::V1 { .. } => "cgroup v1",
        }
    }

    /// The cgroup folders of the process whose `/proc/PID/cgroup` is `proc_cgroup`, when they
    /// belong to container `id` and can be read.
    pub fn container_paths(&self, proc_cgroup: &str, id: &str) -> Option<Paths> {
        let entries = parse_proc_cgroup(proc_cgroup);
        let path_of = |controller: &str| {
            entries
                .iter()
                .find(|(controllers, _)| controllers.contains(&controller))
                .map(|(_, path)| *path)
        };
        // The id in the path guards against a recycled pid or a daemon on another machine.
        let own = |p: &str| p.contains(id);
        let join = |mount: &Path, p: &str| mount.join(p.trim_start_matches('/'));
        let paths = match self {
            Layout::V2 { root } => {
                let p = path_of("").filter(|p| own(p))?;
                Paths::V2(join(root, p))
            }
            Layout::V1 {
                cpuacct,
                memory,
                blkio,
                pids,
            } => Paths::V1 {
                cpuacct: join(cpuacct, path_of("cpuacct").filter(|p| own(p))?),
                memory: join(memory, path_of("memory").filter(|p| own(p))?),
                blkio: blkio
                    .as_ref()
                    .zip(path_of("blkio"))
                    .map(|(m, p)| join(m, p)),
                pids: pids.as_ref().zip(path_of("pids")).map(|(m, p)| join(m, p)),
            },
        };
        // Readable now, or the stats API serves this container instead.
        paths
            .files(None)
            .read(&mut Vec::new(), &Budget::new(0))
            .ok()
            .map(|_| paths)
    }
}

/// One container's cgroup folders.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Paths {
    /// The container's folder in the unified hierarchy.
    V2(PathBuf),
    /// The container's folder in each v1 controller.
    V1 {
        /// Under `cpuacct`.
        cpuacct: PathBuf,
        /// Under `memory`.
        memory: PathBuf,
        /// Under `blkio`.
        blkio: Option<PathBuf>,
        /// Under `pids`.
        pids: Option<PathBuf>,
    },
}

/// What a container's cgroup files say at one moment.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Sample {
    /// CPU time used since the container started, in nanoseconds.
    pub cpu_ns: u64,
    /// Memory charged to the container (page cache included).
    pub memory_usage_bytes: u64,
    /// The inactive file-backed page cache inside that usage.
    pub memory_inactive_file_bytes: u64,
    /// The memory limit; `None` when unlimited.
    pub memory_limit_bytes: Option<u64>,
    /// Bytes read from block devices.
    pub block_read_bytes: Option<u64>,
    /// Bytes written to block devices.
    pub block_write_bytes: Option<u64>,
    /// Tasks (processes and threads) in the container.
    pub pids: Option<u64>,
    /// (received, sent) bytes of the container's network interfaces, when asked for.
    pub network: Option<(u64, u64)>,
}

/// How many files the collector may keep open between collects, shared by all containers.
#[derive(Debug, Clone)]
pub struct Budget(Arc<AtomicUsize>);

/// One file's share of a [`Budget`], given back when the file is closed.
#[derive(Debug)]
struct Permit(Arc<AtomicUsize>);

impl Drop for Permit {
    fn drop(&mut self) {
        self.0.fetch_add(1, Ordering::Relaxed);
    }
}

impl Budget {
    /// A budget of `files` open files.
    pub fn new(files: usize) -> Self {
        Self(Arc::new(AtomicUsize::new(files)))
    }

    /// A quarter of the process's soft open-file limit, at most 4096: the host and the
    /// other collectors keep the rest.
    pub fn from_rlimit() -> Self {
        let mut limit = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        // SAFETY: `limit` is a valid, writable rlimit for the duration of the call.
        let ok = unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) } == 0;
        let soft = if ok { limit.rlim_cur } else { 1024 };
        Self::new((soft / 4).min(4096) as usize)
    }

    /// Files that may still be kept open.
    pub fn available(&self) -> usize {
        self.0.load(Ordering::Relaxed)
    }

    fn take(&self) -> Option<Permit> {
        self.0
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| n.checked_sub(1))
            .ok()
            .map(|_| Permit(self.0.clone()))
    }
}

/// A file read from its start on every collect. It stays open while the budget allows, so
/// the path walk, open and close (most of the cost of a small cgroup file) are paid once;
/// cgroup and `/proc` files regenerate their contents on a read at offset 0.
#[derive(Debug)]
pub struct Reread {
    path: PathBuf,
    open: Option<(File, Permit)>,
    single_record: bool,
}

impl Reread {
    /// The file at `path` (a `/proc` seq_file of short lines), not opened yet.
    pub fn new(path: PathBuf) -> Self {
        Self {
            path,
            open: None,
            single_record: false,
        }
    }

    /// A cgroup file at `path`: the kernel writes the whole of it as one record, so a read
    /// shorter than asked for has reached the end and the closing empty read is skipped.
    pub fn cgroup(path: PathBuf) -> Self {
        Self {
            single_record: true,
            ..Self::new(path)
        }
    }

    /// Reads the whole file into `buf` and returns it as text.
    ///
    /// # Errors
    /// `NotFound` when the file, its cgroup or its process is gone; other I/O errors as they come.
    pub fn read<'b>(&mut self, buf: &'b mut Vec<u8>, budget: &Budget) -> io::Result<&'b str> {
        buf.clear();
        let single = self.single_record;
        let result = match &self.open {
            Some((file, _)) => read_all_at(file, buf, single),
            None => File::open(&self.path).and_then(|file| {
                read_all_at(&file, buf, single)?;
                if let Some(permit) = budget.take() {
                    self.open = Some((file, permit));
                }
                Ok(())
            }),
        };
        if let Err(e) = result {
            self.open = None;
            // A removed cgroup answers ENODEV, a finished process ESRCH.
            return Err(match e.raw_os_error() {
                Some(libc::ENODEV) | Some(libc::ESRCH) => io::ErrorKind::NotFound.into(),
                _ => e,
            });
        }
        std::str::from_utf8(buf).map_err(|_| bad_data(&self.path))
    }

    /// True while the file is held open.
    pub fn is_open(&self) -> bool {
        self.open.is_some()
    }

    fn number(&mut self, buf: &mut Vec<u8>, budget: &Budget) -> io::Result<Option<u64>> {
        let text = self.read(buf, budget)?;
        match text.trim() {
            "max" => Ok(None),
            t => t.parse().map(Some).map_err(|_| bad_data(&self.path)),
        }
    }
}

fn read_all_at(file: &File, buf: &mut Vec<u8>, single_record: bool) -> io::Result<()> {
    let mut chunk = [0u8; 4096];
    let mut offset = 0u64;
    loop {
        match file.read_at(&mut chunk, offset)? {
            0 => return Ok(()),
            n => {
                buf.extend_from_slice(&chunk[..n]);
                offset += n as u64;
                // A cgroup file is one record: a short read is the end. Other files here are
                // seq_files of short lines (net/dev), which fill the reader's buffer line by
                // line, so a read that left a kilobyte unused is the end too.
                if (single_record && n < chunk.len()) || n + 1024 < chunk.len() {
                    return Ok(());
                }
            }
        }
    }
}

fn bad_data(file: &Path) -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidData,
        format!("unexpected contents in {}", file.display()),
    )
}

/// One container's files, ready to be read on every collect.
#[derive(Debug)]
pub struct Files {
    v2: bool,
    /// When `memory.stat` was last read, and what it said (inactive file cache, and on v1 the
    /// effective limit): the costliest file to format, and one that changes slowly.
    memory_stat_cache: Option<(Instant, u64, Option<u64>)>,
    /// The last sample whose every file was read, and when: what a container that used no
    /// CPU since then still shows for memory, block I/O and tasks.
    idle_cache: Option<(Instant, Sample)>,
    /// True when the last `net/dev` read listed `lo` alone (a container without a network).
    net_loopback_only: bool,
    /// Reads in a row that found the CPU counter where the previous read left it.
    idle_reads: u8,
    /// While the container rests: the collects left before its next read, and the sample
    /// of its last read, shown until then.
    rest: Option<(u32, Sample)>,
    cpu: Reread,
    memory_stat: Reread,
    memory_usage: Reread,
    memory_max: Option<Reread>,
    io: Option<Reread>,
    pids: Option<Reread>,
    net_dev: Option<Reread>,
}

/// How often `memory.stat` is read at most. CPU is read every collect; memory usage, limit,
/// block I/O and tasks every collect unless the container used no CPU since the previous one
/// (then every [`IDLE_WHOLE_EVERY`]); network every collect too, but as the rest for a
/// container with `lo` alone, whose traffic needs its CPU.
pub const MEMORY_STAT_EVERY: Duration = Duration::from_secs(5);

/// How long a container that used no CPU keeps the memory, limit, block I/O and task figures
/// of its last whole read. Without CPU its processes allocate nothing, start nothing and
/// issue no I/O: only the kernel's reclaim and writeback move them, and slowly.
pub const IDLE_WHOLE_EVERY: Duration = Duration::from_secs(15);

/// Reads in a row without CPU use after which a container rests (see [`Files::read_or_rest`]).
pub const IDLE_READS: u8 = 3;

impl Paths {
    /// The files to read for this container; `net_dev` is its init process's
    /// `/proc/PID/net/dev` (`None` in host network mode).
    pub fn files(&self, net_dev: Option<PathBuf>) -> Files {
        let net_dev = net_dev.map(Reread::new);
        let cg = Reread::cgroup;
        match self {
            Paths::V2(dir) => Files {
                v2: true,
                memory_stat_cache: None,
                idle_cache: None,
                net_loopback_only: false,
                idle_reads: 0,
                rest: None,
                cpu: cg(dir.join("cpu.stat")),
                memory_stat: cg(dir.join("memory.stat")),
                memory_usage: cg(dir.join("memory.current")),
                memory_max: Some(cg(dir.join("memory.max"))),
                io: Some(cg(dir.join("io.stat"))),
                pids: Some(cg(dir.join("pids.current"))),
                net_dev,
            },
            Paths::V1 {
                cpuacct,
                memory,
                blkio,
                pids,
            } => Files {
                v2: false,
                memory_stat_cache: None,
                idle_cache: None,
                net_loopback_only: false,
                idle_reads: 0,
                rest: None,
                cpu: cg(cpuacct.join("cpuacct.usage")),
                memory_stat: cg(memory.join("memory.stat")),
                memory_usage: cg(memory.join("memory.usage_in_bytes")),
                memory_max: None,
                // The throttle counters see every I/O whatever the scheduler; bfq's only its own.
                io: blkio.as_ref().map(|d| {
                    let throttle = d.join("blkio.throttle.io_service_bytes_recursive");
                    cg(if throttle.exists() {
                        throttle
                    } else {
                        d.join("blkio.bfq.io_service_bytes_recursive")
                    })
                }),
                pids: pids.as_ref().map(|d| cg(d.join("pids.current"))),
                net_dev,
            },
        }
    }
}

impl Files {
    /// The inactive file cache and (cgroup v1) the effective memory limit from `memory.stat`,
    /// read at most every [`MEMORY_STAT_EVERY`].
    fn memory_stat(
        &mut self,
        buf: &mut Vec<u8>,
        budget: &Budget,
    ) -> io::Result<(u64, Option<u64>)> {
        if let Some((at, inactive, limit)) = self.memory_stat_cache {
            if at.elapsed() < MEMORY_STAT_EVERY {
                return Ok((inactive, limit));
            }
        }
        let stat = self.memory_stat.read(buf, budget)?;
        let (inactive, limit) = if self.v2 {
            (parse_key(stat, "inactive_file").unwrap_or(0), None)
        } else {
            (
                parse_key(stat, "total_inactive_file").unwrap_or(0),
                // The effective limit, parents included; "unlimited" is a huge page-aligned number.
                parse_key(stat, "hierarchical_memory_limit").filter(|l| *l < i64::MAX as u64 / 2),
            )
        };
        self.memory_stat_cache = Some((Instant::now(), inactive, limit));
        Ok((inactive, limit))
    }

    /// Reads the container's files, using `buf` as scratch space.
    ///
    /// # Errors
    /// The I/O error of a required file (CPU or memory); `NotFound` when the container is gone.
    pub fn read(&mut self, buf: &mut Vec<u8>, budget: &Budget) -> io::Result<Sample> {
        let cpu_ns = if self.v2 {
            parse_key(self.cpu.read(buf, budget)?, "usage_usec")
                .ok_or_else(|| bad_data(&self.cpu.path))?
                .saturating_mul(1000)
        } else {
            self.cpu.number(buf, budget)?.unwrap_or(0)
        };
        let unchanged = self
            .idle_cache
            .is_some_and(|(_, last)| last.cpu_ns == cpu_ns);
        self.idle_reads = if unchanged {
            self.idle_reads.saturating_add(1)
        } else {
            0
        };
        let mut sample = Sample {
            cpu_ns,
            ..Sample::default()
        };
        let idle = self
            .idle_cache
            .filter(|(at, last)| last.cpu_ns == sample.cpu_ns && at.elapsed() < IDLE_WHOLE_EVERY);
        if let Some((_, last)) = idle {
            sample = last;
            // Loopback traffic needs the container's own CPU; any other interface can receive
            // without it.
            if !self.net_loopback_only {
                sample.network = self.network(buf, budget);
            }
        } else {
            self.read_the_rest(&mut sample, buf, budget)?;
            sample.network = self.network(buf, budget);
            self.idle_cache = Some((Instant::now(), sample));
        }
        Ok(sample)
    }

    /// [`Self::read`], unless the container rests: one found without CPU use on
    /// [`IDLE_READS`] reads in a row is read every `every` collects (1: every collect), and
    /// the collects between give its last read again, with `true`. The first read that finds
    /// CPU used ends the rest.
    ///
    /// # Errors
    /// As [`Self::read`].
    pub fn read_or_rest(
        &mut self,
        buf: &mut Vec<u8>,
        budget: &Budget,
        every: u32,
    ) -> io::Result<(Sample, bool)> {
        if let Some((left, last)) = self.rest.as_mut().filter(|(left, _)| *left > 0) {
            *left -= 1;
            return Ok((*last, true));
        }
        self.rest = None;
        let sample = self.read(buf, budget)?;
        if every > 1 && self.idle_reads >= IDLE_READS {
            self.rest = Some((every - 1, sample));
        }
        Ok((sample, false))
    }

    /// (received, sent) bytes of the container's interfaces but `lo`; notes whether `lo` was
    /// all it had.
    fn network(&mut self, buf: &mut Vec<u8>, budget: &Budget) -> Option<(u64, u64)> {
        let text = self.net_dev.as_mut()?.read(buf, budget).ok()?;
        self.net_loopback_only = only_loopback(text);
        parse_net_dev(text)
    }

    /// Reads every file but the CPU and network ones into `sample`.
    fn read_the_rest(
        &mut self,
        sample: &mut Sample,
        buf: &mut Vec<u8>,
        budget: &Budget,
    ) -> io::Result<()> {
        if self.v2 {
            let (inactive, _) = self.memory_stat(buf, budget)?;
            sample.memory_inactive_file_bytes = inactive;
            if let Some(max) = &mut self.memory_max {
                sample.memory_limit_bytes = max.number(buf, budget)?;
            }
            if let Some(Ok(text)) = self.io.as_mut().map(|f| f.read(buf, budget)) {
                let (r, w) = parse_io_stat(text);
                (sample.block_read_bytes, sample.block_write_bytes) = (Some(r), Some(w));
            }
        } else {
            (sample.memory_inactive_file_bytes, sample.memory_limit_bytes) =
                self.memory_stat(buf, budget)?;
            if let Some(Ok(text)) = self.io.as_mut().map(|f| f.read(buf, budget)) {
                let (r, w) = parse_blkio(text);
                (sample.block_read_bytes, sample.block_write_bytes) = (Some(r), Some(w));
            }
        }
        sample.memory_usage_bytes = self.memory_usage.number(buf, budget)?.unwrap_or(0);
        sample.pids = self
            .pids
            .as_mut()
            .and_then(|f| f.number(buf, budget).ok().flatten());
        Ok(())
    }

    /// Files of this container held open now.
    pub fn open_files(&self) -> usize {
        [&self.cpu, &self.memory_stat, &self.memory_usage]
            .into_iter()
            .chain(self.memory_max.iter())
            .chain(self.io.iter())
            .chain(self.pids.iter())
            .chain(self.net_dev.iter())
            .filter(|f| f.is_open())
            .count()
    }
}

/// Parses `/proc/PID/cgroup` lines `ID:controller,controller:/path` (`ID::/path` for v2).
pub fn parse_proc_cgroup(text: &str) -> Vec<(Vec<&str>, &str)> {
    text.lines()
        .filter_map(|line| {
            let mut parts = line.splitn(3, ':');
            let _id = parts.next()?;
            let controllers = parts.next()?;
            let path = parts.next()?;
            let controllers = if controllers.is_empty() {
                vec![""]
            } else {
                controllers.split(',').collect()
            };
            Some((controllers, path))
        })
        .collect()
}

/// The value of `key` in a flat-keyed cgroup file (`memory.stat`, `cpu.stat`: `key value` lines).
pub fn parse_key(text: &str, key: &str) -> Option<u64> {
    text.lines().find_map(|line| {
        let (k, v) = line.split_once(' ')?;
        (k == key).then(|| v.trim().parse().ok()).flatten()
    })
}

/// Sums v1 `blkio.*io_service_bytes_recursive` lines (`MAJ:MIN Op bytes`) into (read, write).
pub fn parse_blkio(text: &str) -> (u64, u64) {
    let mut read = 0u64;
    let mut write = 0u64;
    for line in text.lines() {
        let mut fields = line.split_whitespace();
        let (Some(_device), Some(op), Some(value)) = (fields.next(), fields.next(), fields.next())
        else {
            continue;
        };
        let Ok(value) = value.parse::<u64>() else {
            continue;
        };
        match op {
            "Read" => read = read.saturating_add(value),
            "Write" => write = write.saturating_add(value),
            _ => {}
        }
    }
    (read, write)
}

/// Sums v2 `io.stat` lines (`MAJ:MIN rbytes=N wbytes=N …`) into (read, write).
pub fn parse_io_stat(text: &str) -> (u64, u64) {
    let mut read = 0u64;
    let mut write = 0u64;
    for field in text.split_whitespace() {
        if let Some((key, value)) = field.split_once('=') {
            let value = value.parse::<u64>().unwrap_or(0);
            match key {
                "rbytes" => read = read.saturating_add(value),
                "wbytes" => write = write.saturating_add(value),
                _ => {}
            }
        }
    }
    (read, write)
}

#[cfg(test)]
mod tests {
    use super::*;

    const ID: &str = "aad6355ca86a91811339dc5a07caf542bdeade5af9081e59d9124de0ebef00df";

    fn fixtures() -> PathBuf {
        PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures"))
    }

    fn fixture(name: &str) -> String {
        let path = fixtures().join(name);
        std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
    }

    /// Guards `/proc/PID/cgroup` parsing for v1 controller lists and the v2 empty controller.
    #[test]
    fn parses_proc_cgroup() {
        let text = fixture("proc_cgroup_v1");
        let entries = parse_proc_cgroup(&text);
        assert!(entries.contains(&(vec!["cpuacct"], &*format!("/docker/{ID}"))));
        assert!(entries.contains(&(vec![""], &*format!("/docker/{ID}"))));
        let v2 = parse_proc_cgroup("0::/system.slice/docker-abc.scope\n");
        assert_eq!(v2, vec![(vec![""], "/system.slice/docker-abc.scope")]);
        assert!(parse_proc_cgroup("nonsense\n").is_empty());
    }

    /// Guards flat-keyed files: exact key match, not a prefix.
    #[test]
    fn parses_keyed_files() {
        let stat = fixture("cgroup_v1/memory/docker/container/memory.stat");
        assert_eq!(parse_key(&stat, "total_inactive_file"), Some(8192));
        assert_eq!(parse_key(&stat, "inactive_file"), Some(4096));
        assert_eq!(parse_key(&stat, "no_such_key"), None);
    }

    /// Guards block I/O sums over devices for both cgroup versions.
    #[test]
    fn parses_block_io() {
        let v1 =
            "8:0 Read 4096\n8:0 Write 100\n8:16 Read 4\n8:16 Write 1\n8:0 Sync 7\nTotal 4201\n";
        assert_eq!(parse_blkio(v1), (4100, 101));
        assert_eq!(parse_blkio("Total 0\n"), (0, 0));
        let v2 = "8:0 rbytes=1000 wbytes=20 rios=1 wios=2 dbytes=0 dios=0\n8:16 rbytes=5 wbytes=5 rios=1 wios=1 dbytes=0 dios=0\n";
        assert_eq!(parse_io_stat(v2), (1005, 25));
    }

    fn v1_layout() -> Layout {
        Layout::detect(&fixtures().join("cgroup_v1")).expect("v1 layout")
    }

    /// Guards v1 reading from a fixture tree: CPU, memory minus cache inputs, limit, I/O, pids.
    #[test]
    fn reads_a_v1_container() {
        let layout = v1_layout();
        assert_eq!(layout.name(), "cgroup v1");
        let proc = fixture("proc_cgroup_v1").replace(ID, "container");
        let paths = layout
            .container_paths(&proc, "container")
            .expect("paths found");
        let budget = Budget::new(100);
        let mut files = paths.files(Some(fixtures().join("net_dev")));
        let s = files.read(&mut Vec::new(), &budget).expect("sample");
        assert_eq!(files.open_files(), 6, "every file kept open");
        assert_eq!(budget.available(), 94);
        assert_eq!(s.network, Some((1246, 686)));
        assert_eq!(s.cpu_ns, 5_980_728_308);
        assert_eq!(s.memory_usage_bytes, 1_048_576);
        assert_eq!(s.memory_inactive_file_bytes, 8192);
        assert_eq!(s.memory_limit_bytes, Some(67_108_864));
        assert_eq!(
            (s.block_read_bytes, s.block_write_bytes),
            (Some(4100), Some(101))
        );
        assert_eq!(s.pids, Some(3));
    }

    /// Guards the ownership check: a cgroup path without the container id is not used.
    #[test]
    fn refuses_paths_of_another_container() {
        let proc = fixture("proc_cgroup_v1").replace(ID, "container");
        assert_eq!(v1_layout().container_paths(&proc, "someoneelse"), None);
        assert_eq!(v1_layout().container_paths("garbage", "container"), None);
    }

    /// Guards v2 reading from a fixture tree, including `max` as no limit.
    #[test]
    fn reads_a_v2_container() {
        let layout = Layout::detect(&fixtures().join("cgroup_v2")).expect("v2 layout");
        assert_eq!(layout.name(), "cgroup v2");
        let paths = layout
            .container_paths("0::/system.slice/docker-container.scope\n", "container")
            .expect("paths found");
        let s = paths
            .files(None)
            .read(&mut Vec::new(), &Budget::new(0))
            .expect("sample");
        assert_eq!(s.network, None);
        assert_eq!(s.cpu_ns, 1_234_567_000);
        assert_eq!(s.memory_usage_bytes, 2_097_152);
        assert_eq!(s.memory_inactive_file_bytes, 65_536);
        assert_eq!(s.memory_limit_bytes, None);
        assert_eq!(
            (s.block_read_bytes, s.block_write_bytes),
            (Some(1005), Some(25))
        );
        assert_eq!(s.pids, Some(2));
    }

    /// Guards the `memory.stat` pace: usage is read every time, the inactive file cache
    /// only once `MEMORY_STAT_EVERY` has passed.
    #[test]
    fn memory_stat_is_read_at_most_every_five_seconds() {
        let dir = v2_container_copy();
        let mut files = Paths::V2(dir.path().to_path_buf()).files(None);
        let (mut buf, budget) = (Vec::new(), Budget::new(0));
        let first = files.read(&mut buf, &budget).expect("sample");
        assert_eq!(first.memory_inactive_file_bytes, 65_536);
        let stat = std::fs::read_to_string(dir.path().join("memory.stat")).expect("stat");
        let changed = stat.replace("inactive_file 65536", "inactive_file 4096");
        assert_ne!(stat, changed);
        std::fs::write(dir.path().join("memory.stat"), changed).expect("write");
        std::fs::write(dir.path().join("memory.current"), "3145728\n").expect("write");
        use_cpu(dir.path(), 1_234_568);
        let second = files.read(&mut buf, &budget).expect("sample");
        assert_eq!(second.memory_usage_bytes, 3_145_728, "usage every time");
        assert_eq!(
            second.memory_inactive_file_bytes, 65_536,
            "memory.stat paced"
        );
        if let Some((at, _, _)) = files.memory_stat_cache.as_mut() {
            *at -= MEMORY_STAT_EVERY;
        }
        use_cpu(dir.path(), 1_234_569);
        let third = files.read(&mut buf, &budget).expect("sample");
        assert_eq!(third.memory_inactive_file_bytes, 4096);
    }

    /// A writable copy of the v2 fixture container's cgroup files.
    fn v2_container_copy() -> tempfile::TempDir {
        let dir = tempfile::tempdir().expect("tempdir");
        let from = fixtures().join("cgroup_v2/system.slice/docker-container.scope");
        for f in std::fs::read_dir(&from).expect("fixture") {
            let f = f.expect("entry");
            std::fs::copy(f.path(), dir.path().join(f.file_name())).expect("copy");
        }
        dir
    }

    /// Writes a v2 `cpu.stat` under `dir` that says `usec` of CPU used.
    fn use_cpu(dir: &Path, usec: u64) {
        std::fs::write(
            dir.join("cpu.stat"),
            format!("usage_usec {usec}\nuser_usec {usec}\nsystem_usec 0\n"),
        )
        .expect("write");
    }

    /// Guards resting: after three reads without CPU use a container is read every
    /// `every` collects, the ones between giving its last read; the first read that finds
    /// CPU used ends it; `every = 1` never rests.
    #[test]
    fn an_idle_container_rests_until_it_uses_cpu() {
        let dir = v2_container_copy();
        let (mut buf, budget) = (Vec::new(), Budget::new(0));
        let mut files = Paths::V2(dir.path().to_path_buf()).files(None);
        let mut never = Paths::V2(dir.path().to_path_buf()).files(None);
        let mut rested = Vec::new();
        for i in 0..12u64 {
            if i == 9 {
                use_cpu(dir.path(), 2_000_000);
            }
            let (s, resting) = files.read_or_rest(&mut buf, &budget, 4).expect("sample");
            rested.push(resting);
            let (_, r) = never.read_or_rest(&mut buf, &budget, 1).expect("sample");
            assert!(!r, "every = 1 never rests");
            if i < 9 {
                assert_eq!(s.cpu_ns, 1_234_567_000);
            }
        }
        // Reads 0-3 (three unchanged after the first), rests 4-6, read 7 (still idle: rests
        // again), rest 8; the read at 9 would find CPU used but comes at 11.
        assert_eq!(
            rested,
            [false, false, false, false, true, true, true, false, true, true, true, false]
        );
        let (s, resting) = files.read_or_rest(&mut buf, &budget, 4).expect("sample");
        assert!(!resting, "CPU used: read again at once");
        assert_eq!(s.cpu_ns, 2_000_000_000);
    }

    /// Guards the idle pace: a container that used no CPU since the last full read keeps
    /// its memory, block I/O and tasks until it uses CPU or `IDLE_WHOLE_EVERY` passes;
    /// CPU and network are read every time.
    #[test]
    fn an_idle_container_is_read_whole_every_fifteen_seconds() {
        let dir = v2_container_copy();
        let net = dir.path().join("net_dev");
        std::fs::copy(fixtures().join("net_dev"), &net).expect("copy");
        let mut files = Paths::V2(dir.path().to_path_buf()).files(Some(net.clone()));
        let (mut buf, budget) = (Vec::new(), Budget::new(0));
        let first = files.read(&mut buf, &budget).expect("sample");
        assert_eq!((first.memory_usage_bytes, first.pids), (2_097_152, Some(2)));
        let set = |name: &str, text: &str| {
            std::fs::write(dir.path().join(name), text).expect("write");
        };
        set("memory.current", "3145728\n");
        set("pids.current", "7\n");
        set(
            "io.stat",
            "8:0 rbytes=9000 wbytes=90 rios=1 wios=2 dbytes=0 dios=0\n",
        );
        let netdev = std::fs::read_to_string(&net).expect("net_dev");
        std::fs::write(&net, netdev.replace("1046", "2046")).expect("write");
        let idle = files.read(&mut buf, &budget).expect("sample");
        assert_eq!(idle.network, Some((2246, 686)), "network every time");
        assert_eq!(
            (idle.memory_usage_bytes, idle.pids, idle.block_read_bytes),
            (2_097_152, Some(2), Some(1005)),
            "an idle container's figures kept"
        );
        use_cpu(dir.path(), 1_234_568);
        let busy = files.read(&mut buf, &budget).expect("sample");
        assert_eq!(busy.cpu_ns, 1_234_568_000);
        assert_eq!(
            (busy.memory_usage_bytes, busy.pids, busy.block_read_bytes),
            (3_145_728, Some(7), Some(9000)),
            "read whole once it used CPU"
        );
        set("pids.current", "8\n");
        assert_eq!(files.read(&mut buf, &budget).expect("sample").pids, Some(7));
        if let Some((at, _)) = files.idle_cache.as_mut() {
            *at -= MEMORY_STAT_EVERY;
        }
        let kept = files.read(&mut buf, &budget).expect("sample");
        assert_eq!(kept.pids, Some(7), "kept past MEMORY_STAT_EVERY while idle");
        if let Some((at, _)) = files.idle_cache.as_mut() {
            *at -= IDLE_WHOLE_EVERY;
        }
        let aged = files.read(&mut buf, &budget).expect("sample");
        assert_eq!(aged.pids, Some(8), "read whole every IDLE_WHOLE_EVERY");

        // A container with `lo` alone (`--network none`): while idle its table is not read.
        let lo_only: String = netdev
            .lines()
            .filter(|l| !l.contains(':') || l.trim_start().starts_with("lo:"))
            .map(|l| format!("{l}\n"))
            .collect();
        std::fs::write(&net, &lo_only).expect("write");
        use_cpu(dir.path(), 1_234_569);
        let whole = files.read(&mut buf, &budget).expect("sample");
        assert_eq!(whole.network, Some((0, 0)));
        std::fs::write(&net, netdev.replace("1046", "3046")).expect("write");
        let still = files.read(&mut buf, &budget).expect("sample");
        assert_eq!(still.network, Some((0, 0)), "not read while idle");
        use_cpu(dir.path(), 1_234_570);
        let woke = files.read(&mut buf, &budget).expect("sample");
        assert_eq!(woke.network, Some((3246, 686)), "read once it used CPU");
        std::fs::write(&net, netdev.replace("1046", "4046")).expect("write");
        let idle_again = files.read(&mut buf, &budget).expect("sample");
        assert_eq!(
            idle_again.network,
            Some((4246, 686)),
            "another interface: read every time"
        );
    }

    /// Guards the "neither hierarchy" case and a vanished container folder.
    #[test]
    fn missing_trees_are_none_or_not_found() {
        assert_eq!(Layout::detect(&fixtures().join("none")), None);
        let gone = Paths::V2(fixtures().join("cgroup_v2/gone"));
        assert_eq!(
            gone.files(None)
                .read(&mut Vec::new(), &Budget::new(9))
                .expect_err("gone")
                .kind(),
            io::ErrorKind::NotFound
        );
    }

    /// Guards kept-open files: they are re-read from the start and see new contents, only
    /// as many stay open as the budget allows, and closing gives the allowance back.
    #[test]
    fn kept_open_files_are_reread_within_the_budget() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (a, b) = (dir.path().join("a"), dir.path().join("b"));
        std::fs::write(&a, "1\n").expect("write");
        std::fs::write(&b, "2\n").expect("write");
        let budget = Budget::new(1);
        let mut buf = Vec::new();
        let mut first = Reread::new(a.clone());
        let mut second = Reread::new(b);
        assert_eq!(first.number(&mut buf, &budget).expect("a"), Some(1));
        assert_eq!(second.number(&mut buf, &budget).expect("b"), Some(2));
        assert!(first.is_open() && !second.is_open());
        assert_eq!(budget.available(), 0);
        std::fs::write(&a, "12345\n").expect("rewrite");
        assert_eq!(
            first.number(&mut buf, &budget).expect("a again"),
            Some(12345)
        );
        drop(first);
        assert_eq!(budget.available(), 1);
        let big = "x".repeat(10_000);
        std::fs::write(&a, &big).expect("write big");
        let mut whole = Reread::cgroup(a);
        assert_eq!(
            whole.read(&mut buf, &budget).expect("big"),
            big,
            "longer than one read"
        );
        assert!(Budget::from_rlimit().available() > 0);
    }
}

#[cfg(test)]
mod proptests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        /// Guards that no text panics the cgroup file parsers.
        #[test]
        fn arbitrary_text_never_panics(text in "\\PC{0,400}", key in "[a-z_]{1,12}") {
            let _ = parse_proc_cgroup(&text);
            let _ = parse_key(&text, &key);
            let _ = parse_blkio(&text);
            let _ = parse_io_stat(&text);
        }

        /// Guards the `/proc/PID/cgroup` round trip: v1 controller lists and the v2 empty one,
        /// with paths that hold colons.
        #[test]
        fn proc_cgroup_round_trips(lines in prop::collection::vec(
            (0u32..20, prop::collection::vec("[a-z_=]{1,10}", 0..4), "/[a-zA-Z0-9/:._-]{0,40}"), 0..12)
        ) {
            let text: String = lines
                .iter()
                .map(|(id, controllers, path)| format!("{id}:{}:{path}\n", controllers.join(",")))
                .collect();
            let want: Vec<(Vec<&str>, &str)> = lines
                .iter()
                .map(|(_, controllers, path)| {
                    let c = if controllers.is_empty() {
                        vec![""]
                    } else {
                        controllers.iter().map(String::as_str).collect()
                    };
                    (c, path.as_str())
                })
                .collect();
            prop_assert_eq!(parse_proc_cgroup(&text), want);
        }

        /// Guards the flat-keyed file round trip (`memory.stat`, `cpu.stat`): each key's own
        /// value, never another key's that it prefixes.
        #[test]
        fn keyed_file_round_trips(entries in prop::collection::btree_map("[a-z_]{1,20}", any::<u64>(), 1..20)) {
            let text: String = entries.iter().map(|(k, v)| format!("{k} {v}\n")).collect();
            for (k, v) in &entries {
                prop_assert_eq!(parse_key(&text, k), Some(*v));
            }
            prop_assert_eq!(parse_key(&text, "no such key"), None);
        }

        /// Guards the v1 `blkio` round trip: Read and Write summed over devices (saturating),
        /// other operations and the Total line left out.
        #[test]
        fn blkio_round_trips(devices in prop::collection::vec(
            (0u32..300, 0u32..300, any::<u64>(), any::<u64>(), any::<u64>()), 0..8)
        ) {
            let (mut read, mut write) = (0u64, 0u64);
            let mut text = String::new();
            for (major, minor, r, w, sync) in &devices {
                text.push_str(&format!(
                    "{major}:{minor} Read {r}\n{major}:{minor} Write {w}\n{major}:{minor} Sync {sync}\n{major}:{minor} Total {}\n",
                    r.wrapping_add(*w)
                ));
                (read, write) = (read.saturating_add(*r), write.saturating_add(*w));
            }
            text.push_str("Total 12345\n");
            prop_assert_eq!(parse_blkio(&text), (read, write));
        }

        /// Guards the v2 `io.stat` round trip: rbytes and wbytes summed over devices.
        #[test]
        fn io_stat_round_trips(devices in prop::collection::vec(
            (0u32..300, 0u32..300, any::<u64>(), any::<u64>(), any::<u32>()), 0..8)
        ) {
            let (mut read, mut write) = (0u64, 0u64);
            let mut text = String::new();
            for (major, minor, r, w, ios) in &devices {
                text.push_str(&format!(
                    "{major}:{minor} rbytes={r} wbytes={w} rios={ios} wios={ios} dbytes=0 dios=0\n"
                ));
                (read, write) = (read.saturating_add(*r), write.saturating_add(*w));
            }
            prop_assert_eq!(parse_io_stat(&text), (read, write));
        }
    }
}
