//! The sample step: each running container's CPU, memory, network, block I/O and task
//! figures, from its cgroup files where they are readable and the daemon's one-shot stats
//! otherwise.

use bollard::models::ContainerStatsResponse;
use bollard::query_parameters::StatsOptionsBuilder;
use futures_util::{stream, StreamExt};
use hashbrown::{HashMap, HashSet};
use vitals_plugin_api::sections::ContainerState;

use crate::cgroup::{Budget, Layout, Sample};
use crate::engine::{self, ApiSample, Daemon, RequestError};
use crate::inspect::Tracked;
use crate::list::Entry;
use crate::procfs::{self, SystemCpu};

/// Stats requests in flight at once. The daemon answers every pending stats request, one-shot
/// or not, at its next collection tick (once a second), so they must all wait for the same one.
const CONCURRENT_STATS: usize = 256;

/// Resource figures of one running container from either source.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Usage {
    /// `cgroup v1`, `cgroup v2` or `api`.
    pub source: &'static str,
    /// Container CPU time, nanoseconds.
    pub cpu_ns: u64,
    /// System CPU time at the same moment, nanoseconds.
    pub system_ns: u64,
    /// Online CPUs.
    pub online_cpus: u32,
    /// Memory in use without the inactive file cache.
    pub memory_used_bytes: Option<u64>,
    /// The memory limit, at most the machine's RAM.
    pub memory_limit_bytes: Option<u64>,
    /// (received, sent) network bytes.
    pub network: Option<(u64, u64)>,
    /// (read, written) block bytes.
    pub block: (Option<u64>, Option<u64>),
    /// Tasks.
    pub pids: Option<u64>,
    /// True for a container at rest: the figures of its last read, no CPU used since.
    pub resting: bool,
}

impl Usage {
    /// Figures from a cgroup sample read at `system` time, the limit capped at the machine's RAM.
    pub(crate) fn from_cgroup(
        sample: &Sample,
        source: &'static str,
        system: SystemCpu,
        machine_memory_bytes: u64,
    ) -> Self {
        let machine = machine_memory_bytes;
        let limit = sample.memory_limit_bytes.unwrap_or(machine).min(machine);
        Self {
            source,
            cpu_ns: sample.cpu_ns,
            system_ns: system.total_ns,
            online_cpus: system.online_cpus,
            memory_used_bytes: Some(engine::without_cache(
                sample.memory_usage_bytes,
                sample.memory_inactive_file_bytes,
            )),
            memory_limit_bytes: Some(limit),
            network: sample.network,
            block: (sample.block_read_bytes, sample.block_write_bytes),
            pids: sample.pids,
            resting: false,
        }
    }

    /// Figures from the daemon's one-shot stats.
    pub(crate) fn from_api(s: &ApiSample) -> Self {
        Self {
            source: "api",
            cpu_ns: s.cpu_ns,
            system_ns: s.system_ns,
            online_cpus: s.online_cpus,
            memory_used_bytes: s.memory_used_bytes,
            memory_limit_bytes: s.memory_limit_bytes,
            network: s.network_rx_bytes.zip(s.network_tx_bytes),
            block: (s.block_read_bytes, s.block_write_bytes),
            pids: s.pids,
            resting: false,
        }
    }
}

/// True when a cgroup read failed because the container's cgroup is gone: its path no longer
/// exists, or a file kept open belongs to a cgroup the kernel removed (`ENODEV`).
fn gone(err: &std::io::Error) -> bool {
    err.kind() == std::io::ErrorKind::NotFound || err.raw_os_error() == Some(libc::ENODEV)
}

/// Reads running containers' cgroup files: the hierarchy, the open-file budget and scratch
/// space, kept between collects.
pub(crate) struct CgroupReader {
    /// The machine's cgroup hierarchy; `None` when the stats API serves every container.
    pub layout: Option<Layout>,
    /// The machine's RAM, which caps an unlimited container's limit.
    pub machine_memory_bytes: u64,
    /// Open files the containers' kept-open cgroup files may use.
    pub budget: Budget,
    /// Scratch space for reading those files.
    pub scratch: Vec<u8>,
    /// A container idle on [`crate::cgroup::IDLE_READS`] reads in a row is read every this
    /// many collects (1: every collect).
    pub idle_every: u32,
    /// Collects sampled so far: the stamp each listed container gets in [`Tracked::listed`].
    pub collects: u64,
}

impl CgroupReader {
    /// A reader for `layout`, with the process's file budget.
    pub(crate) fn new(layout: Option<Layout>) -> Self {
        Self {
            layout,
            machine_memory_bytes: procfs::read_mem_total(),
            budget: Budget::from_rlimit(),
            scratch: Vec::with_capacity(8192),
            idle_every: 1,
            collects: 0,
        }
    }

    /// Stamps each tracked container of `entries` not in `vanished` with this collect and its
    /// list position, and gives the running ones their figures from their cgroup files (in
    /// [`Tracked::usage`]); returns the running containers the stats API must serve instead
    /// (the ids borrowed from the list). A container whose files are gone joins `vanished`;
    /// one whose files fail otherwise is handed to the stats API from now on.
    pub(crate) fn sample<'a>(
        &mut self,
        entries: &[Entry<'a>],
        tracked: &mut HashMap<String, Tracked>,
        vanished: &mut HashSet<String>,
    ) -> Vec<&'a str> {
        let system = procfs::read_system_cpu();
        self.sample_at(system, entries, tracked, vanished)
    }

    /// [`Self::sample`] with the system CPU time read.
    fn sample_at<'a>(
        &mut self,
        system: Option<SystemCpu>,
        entries: &[Entry<'a>],
        tracked: &mut HashMap<String, Tracked>,
        vanished: &mut HashSet<String>,
    ) -> Vec<&'a str> {
        self.collects += 1;
        let mut for_api = Vec::new();
        for (i, e) in entries.iter().enumerate() {
            if vanished.contains(e.id) {
                continue;
            }
            // The one lookup of this container in the collect: the rows find it by its stamp.
            let Some(t) = tracked.get_mut(e.id) else {
                continue;
            };
            t.listed = Some((self.collects, i));
            t.usage = None;
            if e.state != ContainerState::Running {
                continue;
            }
            let (Some(files), Some(system), Some(layout)) =
                (t.files.as_mut(), system, &self.layout)
            else {
                for_api.push(e.id);
                continue;
            };
            match files.read_or_rest(&mut self.scratch, &self.budget, self.idle_every) {
                Ok((sample, resting)) => {
                    let mut u = Usage::from_cgroup(
                        &sample,
                        layout.name(),
                        system,
                        self.machine_memory_bytes,
                    );
                    u.resting = resting;
                    t.usage = Some(u);
                }
                // It stopped, restarted or was removed since the list: skipped this time (a
                // kept file of a removed cgroup reads ENODEV), and the list is read again.
                Err(err) if gone(&err) => {
                    vanished.insert(e.id.to_owned());
                }
                Err(err) => {
                    log::debug!(
                        "cgroup files of {} unreadable ({err}); using the stats API",
                        e.id
                    );
                    t.files = None;
                    for_api.push(e.id);
                }
            }
        }
        for_api
    }
}

/// The daemon's one-shot stats answers, by the container id asked about.
pub(crate) type StatsAnswers<'a> = Vec<(
    &'a str,
    Result<Option<ContainerStatsResponse>, RequestError>,
)>;

/// Asks the daemon for one-shot stats of `ids`, all at once (see [`CONCURRENT_STATS`]).
pub(crate) async fn stats_all<'a>(daemon: &Daemon<'_>, ids: Vec<&'a str>) -> StatsAnswers<'a> {
    let options = StatsOptionsBuilder::default()
        .stream(false)
        .one_shot(true)
        .build();
    stream::iter(ids)
        .map(|id| {
            let options = options.clone();
            async move {
                let mut stats = daemon.docker.stats(id, Some(options));
                let answer = daemon
                    .request("reading container stats", async {
                        stats.next().await.transpose()
                    })
                    .await;
                (id, answer)
            }
        })
        .buffer_unordered(CONCURRENT_STATS)
        .collect()
        .await
}

/// Gives each answered container its figures (in [`Tracked::usage`], as the cgroup files
/// do); a container without an answer joins `vanished`.
///
/// # Errors
/// The first failed request other than "no such container".
pub(crate) fn record_stats(
    answers: StatsAnswers<'_>,
    tracked: &mut HashMap<String, Tracked>,
    vanished: &mut HashSet<String>,
) -> Result<(), RequestError> {
    for (id, answer) in answers {
        match answer {
            Ok(Some(stats)) => {
                if let Some(t) = tracked.get_mut(id) {
                    t.usage = Some(Usage::from_api(&engine::api_sample(&stats)));
                }
            }
            Ok(None) | Err(RequestError::Gone) => {
                vanished.insert(id.to_owned());
            }
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// Guards what counts as a container gone between the list and the read: a missing path,
    /// and a kept file of a removed cgroup (`ENODEV`); anything else is not.
    #[test]
    fn a_removed_cgroup_means_the_container_is_gone() {
        use std::io::{Error, ErrorKind};
        assert!(gone(&Error::from(ErrorKind::NotFound)));
        assert!(gone(&Error::from_raw_os_error(libc::ENODEV)));
        assert!(!gone(&Error::from(ErrorKind::PermissionDenied)));
        assert!(!gone(&Error::from_raw_os_error(libc::EIO)));
    }
    use crate::inspect::Inspected;
    use crate::list::{self, entries};
    use std::path::PathBuf;

    fn fixtures() -> PathBuf {
        PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures"))
    }

    const SYSTEM: SystemCpu = SystemCpu {
        total_ns: 51_371 * 10_000_000,
        online_cpus: 2,
    };

    /// A v1 reader over the fixture hierarchy, and the fixture container's files.
    fn v1() -> (CgroupReader, crate::cgroup::Files) {
        let layout = Layout::detect(&fixtures().join("cgroup_v1")).expect("v1 layout");
        let proc = std::fs::read_to_string(fixtures().join("proc_cgroup_v1")).expect("fixture");
        let id = "aad6355ca86a91811339dc5a07caf542bdeade5af9081e59d9124de0ebef00df";
        let paths = layout
            .container_paths(&proc.replace(id, "container"), "container")
            .expect("paths");
        let files = paths.files(Some(fixtures().join("net_dev")));
        let reader = CgroupReader {
            layout: Some(layout),
            machine_memory_bytes: 32 << 20,
            budget: Budget::new(100),
            scratch: Vec::new(),
            idle_every: 1,
            collects: 0,
        };
        (reader, files)
    }

    fn tracked(files: Option<crate::cgroup::Files>) -> Tracked {
        Tracked {
            key: String::new(),
            info: Inspected::default(),
            files,
            prev_cpu: None,
            listed: None,
            usage: None,
        }
    }

    /// Guards the cgroup path: a running container with readable files is sampled from them
    /// (memory without cache, limit capped at the machine's RAM), one without files goes to
    /// the stats API, stopped and paused ones are not sampled, a gone tree is vanished.
    #[test]
    fn samples_running_containers_from_their_cgroup_files() {
        let list = list::tests::fixture();
        let entries = entries(&list);
        let (mut reader, files) = v1();
        let mut t = HashMap::new();
        t.insert(entries[0].id.to_owned(), tracked(Some(files)));
        t.insert(entries[4].id.to_owned(), tracked(None));
        for e in &entries[1..4] {
            t.insert(e.id.to_owned(), tracked(None));
        }
        let mut vanished = HashSet::new();
        let for_api = reader.sample_at(Some(SYSTEM), &entries, &mut t, &mut vanished);
        assert_eq!(for_api, vec![entries[4].id]);
        let sampled: Vec<&str> = entries
            .iter()
            .filter(|e| t.get(e.id).is_some_and(|t| t.usage.is_some()))
            .map(|e| e.id)
            .collect();
        assert_eq!(sampled, vec![entries[0].id]);
        for (i, e) in entries[..5].iter().enumerate() {
            assert_eq!(t[e.id].listed, Some((1, i)), "every tracked one is stamped");
        }
        let u = t[entries[0].id].usage.as_ref().expect("sampled");
        assert_eq!(u.source, "cgroup v1");
        assert_eq!(
            (u.cpu_ns, u.system_ns, u.online_cpus),
            (5_980_728_308, SYSTEM.total_ns, 2)
        );
        assert_eq!(u.memory_used_bytes, Some(1_048_576 - 8192));
        assert_eq!(
            u.memory_limit_bytes,
            Some(32 << 20),
            "capped at the machine's RAM"
        );
        assert_eq!(u.network, Some((1246, 686)));
        assert_eq!(u.block, (Some(4100), Some(101)));
        assert_eq!(u.pids, Some(3));
        assert!(vanished.is_empty());

        let gone = crate::cgroup::Paths::V2(fixtures().join("cgroup_v2/gone")).files(None);
        t.insert(entries[0].id.to_owned(), tracked(Some(gone)));
        reader.sample_at(Some(SYSTEM), &entries, &mut t, &mut vanished);
        assert!(t.values().all(|t| t.usage.is_none()));
        assert!(vanished.contains(entries[0].id), "a gone tree is vanished");
    }

    /// Guards the API path: one-shot stats become figures with source `api`; no answer and
    /// "no such container" are vanished; another error fails the step.
    #[test]
    fn records_one_shot_stats() {
        let text =
            std::fs::read_to_string(fixtures().join("stats_one_shot.json")).expect("fixture");
        let stats: ContainerStatsResponse = serde_json::from_str(&text).expect("stats json");
        let mut usage: HashMap<String, Tracked> = ["a", "b", "c", "d"]
            .into_iter()
            .map(|id| (id.to_owned(), tracked(None)))
            .collect();
        let mut vanished = HashSet::new();
        let answers = vec![
            ("a", Ok(Some(stats))),
            ("b", Ok(None)),
            ("c", Err(RequestError::Gone)),
        ];
        record_stats(answers, &mut usage, &mut vanished).expect("recorded");
        let u = usage["a"].usage.as_ref().expect("figures");
        assert_eq!(u.source, "api");
        assert_eq!(u.cpu_ns, 5_980_728_308);
        assert_eq!(u.memory_used_bytes, Some(548_864 - 4096));
        assert_eq!(u.network, Some((1046, 0)));
        assert_eq!(vanished, HashSet::from(["b".to_owned(), "c".to_owned()]));
        let failed = vec![("d", Err(RequestError::Unreachable("x".into())))];
        assert!(record_stats(failed, &mut usage, &mut vanished).is_err());
    }
}
