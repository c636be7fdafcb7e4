//! A container's CPU, memory, block I/O and process counts read straight from its cgroup files
//! (v1 and v2), which costs far less than asking the daemon for stats.

use std::io;
use std::path::{Path, PathBuf};

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
        paths.read().ok().map(|_| paths)
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
}

fn bad_data(file: &Path) -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidData,
        format!("unexpected contents in {}", file.display()),
    )
}

fn read(file: PathBuf) -> io::Result<(String, PathBuf)> {
    std::fs::read_to_string(&file).map(|t| (t, file))
}

fn read_number(file: PathBuf) -> io::Result<Option<u64>> {
    let (text, file) = read(file)?;
    match text.trim() {
        "max" => Ok(None),
        t => t.parse().map(Some).map_err(|_| bad_data(&file)),
    }
}

impl Paths {
    /// Reads the container's files.
    ///
    /// # Errors
    /// The I/O error of a required file (CPU or memory); `NotFound` when the container is gone.
    pub fn read(&self) -> io::Result<Sample> {
        match self {
            Paths::V2(dir) => {
                let (cpu, cpu_file) = read(dir.join("cpu.stat"))?;
                let usec = parse_key(&cpu, "usage_usec").ok_or_else(|| bad_data(&cpu_file))?;
                let (stat, _) = read(dir.join("memory.stat"))?;
                let (block_read_bytes, block_write_bytes) = read(dir.join("io.stat"))
                    .map(|(t, _)| parse_io_stat(&t))
                    .map_or((None, None), |(r, w)| (Some(r), Some(w)));
                Ok(Sample {
                    cpu_ns: usec.saturating_mul(1000),
                    memory_usage_bytes: read_number(dir.join("memory.current"))?.unwrap_or(0),
                    memory_inactive_file_bytes: parse_key(&stat, "inactive_file").unwrap_or(0),
                    memory_limit_bytes: read_number(dir.join("memory.max"))?,
                    block_read_bytes,
                    block_write_bytes,
                    pids: read_number(dir.join("pids.current")).ok().flatten(),
                })
            }
            Paths::V1 {
                cpuacct,
                memory,
                blkio,
                pids,
            } => {
                let cpu_ns = read_number(cpuacct.join("cpuacct.usage"))?.unwrap_or(0);
                let (stat, _) = read(memory.join("memory.stat"))?;
                let usage = read_number(memory.join("memory.usage_in_bytes"))?.unwrap_or(0);
                // The effective limit, parents included; "unlimited" is a huge page-aligned number.
                let limit = parse_key(&stat, "hierarchical_memory_limit")
                    .filter(|l| *l < i64::MAX as u64 / 2);
                let blk = blkio.as_ref().and_then(|d| {
                    read(d.join("blkio.throttle.io_service_bytes_recursive"))
                        .or_else(|_| read(d.join("blkio.bfq.io_service_bytes_recursive")))
                        .ok()
                        .map(|(t, _)| parse_blkio(&t))
                });
                Ok(Sample {
                    cpu_ns,
                    memory_usage_bytes: usage,
                    memory_inactive_file_bytes: parse_key(&stat, "total_inactive_file")
                        .unwrap_or(0),
                    memory_limit_bytes: limit,
                    block_read_bytes: blk.map(|b| b.0),
                    block_write_bytes: blk.map(|b| b.1),
                    pids: pids
                        .as_ref()
                        .and_then(|d| read_number(d.join("pids.current")).ok().flatten()),
                })
            }
        }
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
        let s = paths.read().expect("sample");
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
        let s = paths.read().expect("sample");
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

    /// Guards the "neither hierarchy" case and a vanished container folder.
    #[test]
    fn missing_trees_are_none_or_not_found() {
        assert_eq!(Layout::detect(&fixtures().join("none")), None);
        let gone = Paths::V2(fixtures().join("cgroup_v2/gone"));
        assert_eq!(
            gone.read().expect_err("gone").kind(),
            io::ErrorKind::NotFound
        );
    }
}
