//! Docker collector: the daemon's version and container counts, and every container's state, ports, uptime and resource use (Engine API via bollard; cgroup files when the daemon is local).

pub mod cgroup;
pub mod engine;
pub mod procfs;

use std::collections::{BTreeSet, HashMap, HashSet};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bollard::models::{ContainerInspectResponse, ContainerSummary};
use bollard::query_parameters::{
    EventsOptionsBuilder, ListContainersOptionsBuilder, StatsOptionsBuilder,
};
use bollard::Docker;
use futures_util::{stream, StreamExt};
use vitals_plugin_api::prelude::*;
use vitals_plugin_api::sections::{percent, ContainerState, ContainerStats, DockerStats};

use crate::cgroup::{Budget, Files, Layout};
use crate::engine::{bounded, ApiSample, Endpoint, RequestError};

/// Inspect requests in flight at once.
const CONCURRENT_INSPECTS: usize = 32;
/// Stats requests in flight at once. The daemon answers every pending stats request, one-shot
/// or not, at its next collection tick (once a second), so they must all wait for the same one.
const CONCURRENT_STATS: usize = 256;

/// How long a container list is reused while the daemon's event stream reports no change;
/// it refreshes the list's status text ("Up 5 minutes").
pub const LIST_EVERY: Duration = Duration::from_secs(10);

/// The container events that change what the list says (the rest, `exec_*` from health
/// checks among them, do not).
const LIST_EVENTS: [&str; 14] = [
    "create",
    "start",
    "restart",
    "stop",
    "die",
    "kill",
    "oom",
    "destroy",
    "pause",
    "unpause",
    "rename",
    "update",
    "health_status",
    "remove",
];

/// Where container CPU, memory and I/O figures come from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum StatsSource {
    /// The containers' cgroup files when the daemon is local and they are readable, the
    /// daemon's one-shot stats otherwise (per container).
    #[default]
    Auto,
    /// Always the daemon's one-shot stats (one request per running container and collect).
    Api,
}

/// The `[collectors.docker.config]` table.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// The daemon's address: `unix:///path`, a socket path, `tcp://HOST:PORT` or
    /// `http://HOST:PORT` (no TLS). Default: `$DOCKER_HOST`, else `unix:///var/run/docker.sock`.
    pub host: Option<String>,
    /// The bound on each request to the daemon, e.g. `"2s"`. A collect makes at most three
    /// rounds of requests (list, inspect, stats), so keep the collector's deadline above 3x this.
    #[serde(with = "humantime_serde")]
    pub timeout: Duration,
    /// List stopped containers (exited, created, dead) as well as running and paused ones.
    /// They are counted either way.
    pub include_stopped: bool,
    /// `"auto"` (cgroup files where readable, the stats API otherwise) or `"api"`.
    pub stats_source: StatsSource,
    /// The cgroup file system's root (test-only; default `/sys/fs/cgroup`).
    pub cgroup_root: PathBuf,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            host: None,
            timeout: Duration::from_secs(2),
            include_stopped: true,
            stats_source: StatsSource::Auto,
            cgroup_root: PathBuf::from("/sys/fs/cgroup"),
        }
    }
}

impl Config {
    /// The daemon's address: the config's, `DOCKER_HOST`'s, or the default socket.
    ///
    /// # Errors
    /// [`Error::InvalidConfig`] for an address or timeout that cannot be used.
    pub fn validate(&self) -> Result<Endpoint, Error> {
        if self.timeout.is_zero() || self.timeout > Duration::from_secs(60) {
            return Err(Error::invalid_config(format!(
                "`timeout` must be between 1ms and 60s, not {:?}",
                self.timeout
            )));
        }
        let (host, from) = match &self.host {
            Some(h) => (h.clone(), "`host`"),
            None => match std::env::var("DOCKER_HOST") {
                Ok(h) if !h.trim().is_empty() => (h, "DOCKER_HOST"),
                _ => (engine::DEFAULT_HOST.to_owned(), "the default"),
            },
        };
        Endpoint::parse(&host).map_err(|e| Error::invalid_config(format!("{from}: {e}")))
    }
}

/// The daemon once it has answered: a client speaking its API version.
struct Connected {
    docker: Docker,
    server_version: String,
    api_version: String,
    /// The daemon's container events, watched so the list is read only after a change.
    events: Events,
}

/// A task on the collector's runtime that reads the daemon's container events and raises a
/// flag on each; it runs while a collect drives the runtime, and the socket keeps what the
/// daemon sends in between.
struct Events {
    changed: Arc<AtomicBool>,
    alive: Arc<AtomicBool>,
    task: tokio::task::JoinHandle<()>,
}

impl Events {
    fn watch(docker: &Docker) -> Self {
        let changed = Arc::new(AtomicBool::new(true));
        let alive = Arc::new(AtomicBool::new(true));
        let filters = HashMap::from([("type", vec!["container"]), ("event", LIST_EVENTS.to_vec())]);
        let mut stream = docker.events(Some(EventsOptionsBuilder::new().filters(&filters).build()));
        let task = tokio::spawn({
            let (changed, alive) = (changed.clone(), alive.clone());
            async move {
                while let Some(event) = stream.next().await {
                    changed.store(true, Ordering::Relaxed);
                    if let Err(e) = event {
                        log::debug!("the daemon's event stream failed: {e}");
                        break;
                    }
                }
                alive.store(false, Ordering::Relaxed);
            }
        });
        Self {
            changed,
            alive,
            task,
        }
    }

    /// True when the list must be read again: an event came, or the stream is gone.
    fn take_changed(&self) -> bool {
        self.changed.swap(false, Ordering::Relaxed) || !self.alive.load(Ordering::Relaxed)
    }
}

impl Drop for Events {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// What `inspect` said about a container, kept until its state changes.
#[derive(Debug, Clone, Default)]
struct Inspected {
    pid: Option<u32>,
    started_at: Option<i64>,
    restart_count: u64,
}

/// A container seen before: its inspect answer, cgroup folders and last CPU sample.
struct Tracked {
    /// What must stay the same for `info` to stay valid (see `cache_key`).
    key: String,
    info: Inspected,
    /// The container's cgroup and network files, when it runs and they are readable.
    files: Option<Files>,
    /// (container CPU ns, system CPU ns) of the previous collect.
    prev_cpu: Option<(u64, u64)>,
}

/// Resource figures of one running container from either source.
struct Usage {
    source: &'static str,
    cpu_ns: u64,
    system_ns: u64,
    online_cpus: u32,
    memory_used_bytes: Option<u64>,
    memory_limit_bytes: Option<u64>,
    network: Option<(u64, u64)>,
    block: (Option<u64>, Option<u64>),
    pids: Option<u64>,
}

/// Everything but the runtime, so a collect can borrow it while the runtime drives it.
struct State {
    endpoint: Endpoint,
    timeout: Duration,
    include_stopped: bool,
    layout: Option<Layout>,
    machine_memory_bytes: u64,
    client: Option<Connected>,
    containers: HashMap<String, Tracked>,
    was_unreachable: bool,
    /// Open files the containers' kept-open cgroup files may use.
    budget: Budget,
    /// Scratch space for reading those files.
    scratch: Vec<u8>,
    /// The last container list and when it was read; reused while no event says it changed.
    list: Option<(Vec<ContainerSummary>, Instant)>,
}

/// The collector: its own single-threaded tokio runtime and what it remembers between collects.
pub struct DockerCollector {
    runtime: tokio::runtime::Runtime,
    state: State,
}

impl Collector for DockerCollector {
    const NAME: &'static str = "docker";
    const DESCRIPTION: &'static str =
        "Docker daemon and containers: state, health, ports, uptime, CPU, memory, network and block I/O";
    type Config = Config;
    type Section = DockerStats;

    fn new(config: Config) -> Result<Self, Error> {
        let endpoint = config.validate()?;
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_io()
            .enable_time()
            .build()
            .map_err(|e| Error::failed(format!("cannot start the collector's runtime: {e}")))?;
        // Cgroup files describe this machine's containers only when the daemon runs here.
        let layout = (config.stats_source == StatsSource::Auto && endpoint.is_local())
            .then(|| Layout::detect(&config.cgroup_root))
            .flatten();
        Ok(Self {
            runtime,
            state: State {
                endpoint,
                timeout: config.timeout,
                include_stopped: config.include_stopped,
                layout,
                machine_memory_bytes: procfs::read_mem_total(),
                client: None,
                containers: HashMap::new(),
                was_unreachable: false,
                budget: Budget::from_rlimit(),
                scratch: Vec::with_capacity(8192),
                list: None,
            },
        })
    }

    fn collect(&mut self) -> Result<DockerStats, Error> {
        let result = self.runtime.block_on(self.state.collect());
        match &result {
            Ok(_) if self.state.was_unreachable => {
                self.state.was_unreachable = false;
                log::info!("the Docker daemon at {} answers again", self.state.endpoint);
            }
            Err(Error::Unavailable(reason)) if !self.state.was_unreachable => {
                self.state.was_unreachable = true;
                log::debug!("{reason}");
            }
            _ => {}
        }
        result
    }

    fn series() -> Vec<Series> {
        vec![
            Series::new("containers_running", "/containers_running", "count"),
            Series::new(
                "cpu_usage_percent",
                "/containers/*/cpu_usage_percent",
                "percent",
            )
            .labelled_by("name"),
            Series::new(
                "memory_used_bytes",
                "/containers/*/memory_used_bytes",
                "bytes",
            )
            .labelled_by("name"),
        ]
    }
}

fn now_unix() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

/// The key under which an inspect answer stays valid. A running container read through its
/// cgroup is re-inspected when its init process is gone (checked separately), so its state
/// suffices; anything else also keys on the status text, whose "N minutes ago" part resets
/// on every start, stop and restart.
fn cache_key(state: &ContainerState, status_text: &str, watched_by_pid: bool) -> String {
    if watched_by_pid {
        state.as_str().to_owned()
    } else {
        format!("{state}\n{status_text}")
    }
}

/// True while process `pid` exists (signal 0 checks without sending anything).
fn process_exists(pid: u32) -> bool {
    let Ok(pid) = libc::pid_t::try_from(pid) else {
        return false;
    };
    // SAFETY: signal 0 performs only the existence and permission checks.
    let rc = unsafe { libc::kill(pid, 0) };
    rc == 0 || std::io::Error::last_os_error().raw_os_error() == Some(libc::EPERM)
}

fn inspected(resp: &ContainerInspectResponse) -> Inspected {
    let state = resp.state.as_ref();
    Inspected {
        pid: state
            .and_then(|s| s.pid)
            .and_then(|p| u32::try_from(p).ok())
            .filter(|p| *p > 0),
        started_at: state
            .and_then(|s| s.started_at.as_deref())
            .and_then(engine::parse_timestamp),
        restart_count: resp
            .restart_count
            .and_then(|c| u64::try_from(c).ok())
            .unwrap_or(0),
    }
}

fn unavailable_or_failed(e: RequestError) -> Error {
    match e {
        RequestError::Unreachable(reason) => Error::unavailable(reason),
        other => Error::failed(other),
    }
}

impl State {
    async fn connect(&mut self) -> Result<(), RequestError> {
        if self.client.is_some() {
            return Ok(());
        }
        let (endpoint, timeout) = (&self.endpoint, self.timeout);
        let docker = endpoint
            .client(timeout)
            .map_err(|e| engine::classify(endpoint, "connecting", e))?;
        let docker = bounded(
            endpoint,
            timeout,
            "negotiating the API version",
            docker.negotiate_version(),
        )
        .await?;
        let version = bounded(endpoint, timeout, "reading the version", docker.version()).await?;
        self.client = Some(Connected {
            api_version: docker.client_version().to_string(),
            server_version: version.version.unwrap_or_default(),
            events: Events::watch(&docker),
            docker,
        });
        self.list = None;
        Ok(())
    }

    async fn collect(&mut self) -> Result<DockerStats, Error> {
        let result = self.try_collect().await;
        if let Err(e) = &result {
            // A daemon that went away or misbehaves may come back as another version.
            if !matches!(e, RequestError::Gone) {
                self.client = None;
            }
        }
        result.map_err(unavailable_or_failed)
    }

    async fn try_collect(&mut self) -> Result<DockerStats, RequestError> {
        self.connect().await?;
        let Some(client) = self.client.as_ref() else {
            return Err(RequestError::Unreachable("not connected".to_owned()));
        };
        let (endpoint, timeout) = (&self.endpoint, self.timeout);
        let docker = &client.docker;
        // Let the event watcher read what the daemon sent since the previous collect.
        tokio::time::sleep(Duration::from_millis(1)).await;
        let changed = client.events.take_changed();
        let list = match self.list.take() {
            Some((list, at)) if !changed && at.elapsed() < LIST_EVERY => (list, at),
            _ => {
                let at = Instant::now();
                let list = bounded(
                    endpoint,
                    timeout,
                    "listing containers",
                    docker.list_containers(Some(
                        ListContainersOptionsBuilder::default().all(true).build(),
                    )),
                )
                .await?;
                (list, at)
            }
        };
        let (list, listed_at) = list;

        // The list's state of each container, by position; a missing state is the empty spelling.
        let states: Vec<ContainerState> = list
            .iter()
            .map(|c| {
                c.state.map_or_else(
                    || ContainerState::Other(String::new()),
                    |s| s.as_ref().into(),
                )
            })
            .collect();
        let (mut running, mut paused, mut stopped) = (0u32, 0u32, 0u32);
        let mut to_inspect = Vec::new();
        let mut listed = HashSet::new();
        for (c, state) in list.iter().zip(&states) {
            let Some(id) = c.id.as_deref() else { continue };
            match state {
                ContainerState::Running => running += 1,
                ContainerState::Paused => paused += 1,
                _ => stopped += 1,
            }
            listed.insert(id);
            let status = c.status.as_deref().unwrap_or("");
            let fresh = self.containers.get(id).is_some_and(|t| {
                if *state == ContainerState::Running && t.files.is_some() {
                    t.key == cache_key(state, status, true)
                        && t.info.pid.is_some_and(process_exists)
                } else {
                    t.key == cache_key(state, status, false)
                }
            });
            if !fresh {
                to_inspect.push((id, state, status));
            }
        }
        self.containers.retain(|id, _| listed.contains(id.as_str()));

        let answers: Vec<_> = stream::iter(to_inspect)
            .map(|(id, state, status)| async move {
                let answer = bounded(
                    endpoint,
                    timeout,
                    "inspecting a container",
                    docker.inspect_container(id, None),
                )
                .await;
                (id, state, status, answer)
            })
            .buffer_unordered(CONCURRENT_INSPECTS)
            .collect()
            .await;
        let mut vanished = HashSet::new();
        for (id, state, status, answer) in answers {
            match answer {
                Ok(resp) => {
                    let info = inspected(&resp);
                    let running = resp.state.as_ref().and_then(|s| s.running) == Some(true);
                    let host_network = resp
                        .host_config
                        .as_ref()
                        .and_then(|h| h.network_mode.as_deref())
                        == Some("host");
                    let files = match (&self.layout, info.pid) {
                        (Some(layout), Some(pid)) if running => {
                            std::fs::read_to_string(format!("/proc/{pid}/cgroup"))
                                .ok()
                                .and_then(|text| layout.container_paths(&text, id))
                                .map(|paths| {
                                    let net_dev = format!("/proc/{pid}/net/dev");
                                    paths.files((!host_network).then(|| PathBuf::from(net_dev)))
                                })
                        }
                        _ => None,
                    };
                    let prev_cpu = self.containers.get(id).and_then(|t| t.prev_cpu);
                    self.containers.insert(
                        id.to_owned(),
                        Tracked {
                            key: cache_key(state, status, files.is_some()),
                            info,
                            files,
                            prev_cpu,
                        },
                    );
                }
                Err(RequestError::Gone) => {
                    vanished.insert(id.to_owned());
                }
                Err(e) => return Err(e),
            }
        }

        let system = procfs::read_system_cpu();
        let mut usage: HashMap<String, Usage> = HashMap::new();
        let mut for_api = Vec::new();
        for (c, state) in list.iter().zip(&states) {
            let Some(id) = c.id.as_deref() else { continue };
            if vanished.contains(id) || *state != ContainerState::Running {
                continue;
            }
            let Some(tracked) = self.containers.get_mut(id) else {
                continue;
            };
            match (tracked.files.as_mut(), system, &self.layout) {
                (Some(files), Some(system), Some(layout)) => {
                    match files.read(&mut self.scratch, &self.budget) {
                        Ok(sample) => {
                            let machine = self.machine_memory_bytes;
                            let limit = sample.memory_limit_bytes.unwrap_or(machine).min(machine);
                            usage.insert(
                                id.to_owned(),
                                Usage {
                                    source: layout.name(),
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
                                },
                            );
                        }
                        // It stopped or was removed since the list: skipped this time.
                        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                            vanished.insert(id.to_owned());
                        }
                        Err(e) => {
                            log::debug!(
                                "cgroup files of {id} unreadable ({e}); using the stats API"
                            );
                            tracked.files = None;
                            for_api.push(id.to_owned());
                        }
                    }
                }
                _ => for_api.push(id.to_owned()),
            }
        }

        let stats_options = StatsOptionsBuilder::default()
            .stream(false)
            .one_shot(true)
            .build();
        let answers: Vec<_> = stream::iter(for_api)
            .map(|id| {
                let options = stats_options.clone();
                async move {
                    let mut stats = docker.stats(&id, Some(options));
                    let answer = bounded(endpoint, timeout, "reading container stats", async {
                        stats.next().await.transpose()
                    })
                    .await;
                    (id, answer)
                }
            })
            .buffer_unordered(CONCURRENT_STATS)
            .collect()
            .await;
        for (id, answer) in answers {
            match answer {
                Ok(Some(stats)) => {
                    let s: ApiSample = engine::api_sample(&stats);
                    usage.insert(
                        id,
                        Usage {
                            source: "api",
                            cpu_ns: s.cpu_ns,
                            system_ns: s.system_ns,
                            online_cpus: s.online_cpus,
                            memory_used_bytes: s.memory_used_bytes,
                            memory_limit_bytes: s.memory_limit_bytes,
                            network: s.network_rx_bytes.zip(s.network_tx_bytes),
                            block: (s.block_read_bytes, s.block_write_bytes),
                            pids: s.pids,
                        },
                    );
                }
                Ok(None) | Err(RequestError::Gone) => {
                    vanished.insert(id);
                }
                Err(e) => return Err(e),
            }
        }

        let now = now_unix();
        let mut sources = BTreeSet::new();
        let mut containers = Vec::new();
        for (c, state) in list.iter().zip(states) {
            let Some(id) = c.id.as_deref() else { continue };
            let is_up = state.is_up();
            if vanished.contains(id) || (!self.include_stopped && !is_up) {
                continue;
            }
            let Some(tracked) = self.containers.get_mut(id) else {
                continue;
            };
            let u = usage.remove(id);
            let cpu_usage_percent = u.as_ref().and_then(|u| {
                let prev = tracked.prev_cpu.replace((u.cpu_ns, u.system_ns));
                prev.and_then(|(pc, ps)| {
                    engine::cpu_percent(pc, ps, u.cpu_ns, u.system_ns, u.online_cpus)
                })
            });
            if u.is_none() {
                tracked.prev_cpu = None;
            }
            if let Some(u) = &u {
                sources.insert(u.source);
            }
            containers.push(container_stats(
                c,
                id,
                state,
                &tracked.info,
                u.as_ref(),
                cpu_usage_percent,
                is_up,
                now,
            ));
        }
        containers.sort_by(|a, b| a.name.cmp(&b.name));

        let stats_source = if sources.is_empty() {
            self.layout.as_ref().map_or("api", Layout::name).to_owned()
        } else {
            sources.into_iter().collect::<Vec<_>>().join("+")
        };
        let stats = DockerStats {
            reachable: true,
            server_version: client.server_version.clone(),
            api_version: client.api_version.clone(),
            stats_source,
            containers_running: running,
            containers_paused: paused,
            containers_stopped: stopped,
            containers_total: running + paused + stopped,
            containers,
        };
        if vanished.is_empty() {
            self.list = Some((list, listed_at));
        }
        Ok(stats)
    }
}

#[allow(clippy::too_many_arguments)] // one call site; the pieces come from three sources
fn container_stats(
    c: &ContainerSummary,
    id: &str,
    status: ContainerState,
    info: &Inspected,
    usage: Option<&Usage>,
    cpu_usage_percent: Option<f64>,
    is_up: bool,
    now: i64,
) -> ContainerStats {
    let status_text = c.status.clone().unwrap_or_default();
    let health = c
        .health
        .as_ref()
        .and_then(|h| h.status)
        .map(|s| s.to_string())
        .filter(|s| !s.is_empty() && s != "none")
        .or_else(|| engine::parse_health(&status_text).map(str::to_owned));
    let memory_used_bytes = usage.and_then(|u| u.memory_used_bytes);
    let memory_limit_bytes = usage.and_then(|u| u.memory_limit_bytes);
    ContainerStats {
        id: id.to_owned(),
        name: engine::container_name(c),
        image: c.image.clone().unwrap_or_default(),
        status,
        status_text,
        health,
        cpu_usage_percent,
        memory_used_bytes,
        memory_limit_bytes,
        memory_used_percent: memory_used_bytes
            .zip(memory_limit_bytes)
            .map(|(u, l)| percent(u, l)),
        pids: usage.and_then(|u| u.pids),
        ports: engine::format_ports(c.ports.as_deref().unwrap_or_default()),
        uptime_seconds: info
            .started_at
            .filter(|_| is_up)
            .map(|s| u64::try_from(now - s).unwrap_or(0)),
        started_at_unix_seconds: info.started_at,
        created_unix_seconds: c.created.unwrap_or(0),
        network_rx_bytes: usage.and_then(|u| u.network).map(|n| n.0),
        network_tx_bytes: usage.and_then(|u| u.network).map(|n| n.1),
        block_read_bytes: usage.and_then(|u| u.block.0),
        block_write_bytes: usage.and_then(|u| u.block.1),
        restart_count: info.restart_count,
    }
}

export_collector!(DockerCollector);

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use vitals_plugin_api::testing::{assert_contract, check_contract};
    use vitals_plugin_api::PluginError;

    /// Guards the plugin contract with the default config, whether or not a daemon runs here.
    #[test]
    fn honours_the_plugin_contract() {
        let report = assert_contract::<DockerCollector>();
        assert_eq!(report.info.name, "docker");
    }

    /// Guards the no-daemon path: a missing socket is "unavailable" naming the socket, on
    /// every collect, never a failure or a panic.
    #[test]
    fn a_missing_socket_is_unavailable_with_the_reason() {
        let dir = tempfile::tempdir().expect("tempdir");
        let socket = dir.path().join("no-docker.sock");
        let report = check_contract::<DockerCollector>(
            json!({ "host": format!("unix://{}", socket.display()), "timeout": "500ms" }),
        )
        .expect("contract holds");
        assert_eq!(report.collects.len(), 2);
        for c in &report.collects {
            match c {
                Err(PluginError::Unavailable(reason)) => {
                    assert!(reason.contains("no-docker.sock"), "{reason}");
                    assert!(reason.contains("does not exist"), "{reason}");
                }
                other => panic!("expected unavailable, got {other:?}"),
            }
        }
    }

    /// Guards "connection refused": a socket file nobody listens on is unavailable, not failed.
    #[test]
    fn a_dead_socket_is_unavailable() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("dead.sock");
        drop(std::os::unix::net::UnixListener::bind(&path).expect("bind"));
        let mut c = DockerCollector::new(Config {
            host: Some(path.display().to_string()),
            ..Config::default()
        })
        .expect("created");
        match c.collect() {
            Err(Error::Unavailable(reason)) => assert!(reason.contains("refused"), "{reason}"),
            other => panic!("expected unavailable, got {other:?}"),
        }
    }

    /// Guards the request bound: a daemon that accepts but never answers fails within the
    /// timeout, naming what it waited for.
    #[test]
    fn a_silent_daemon_times_out() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("silent.sock");
        let listener = std::os::unix::net::UnixListener::bind(&path).expect("bind");
        let keep = std::thread::spawn(move || {
            let conn = listener.accept();
            std::thread::sleep(Duration::from_secs(3));
            drop(conn);
        });
        let mut c = DockerCollector::new(Config {
            host: Some(path.display().to_string()),
            timeout: Duration::from_millis(300),
            ..Config::default()
        })
        .expect("created");
        match c.collect() {
            Err(Error::Failed(message)) => {
                assert!(message.contains("did not answer"), "{message}");
                assert!(message.contains("300ms"), "{message}");
            }
            other => panic!("expected a timeout failure, got {other:?}"),
        }
        keep.join().expect("listener thread");
    }

    /// Guards config validation: bad addresses, schemes and timeouts are refused by name.
    #[test]
    fn refuses_bad_configs() {
        let bad = |v: serde_json::Value| {
            let config: Config = serde_json::from_value(v).expect("parses");
            match DockerCollector::new(config) {
                Err(Error::InvalidConfig(m)) => m,
                Err(other) => panic!("expected invalid config, got {other:?}"),
                Ok(_) => panic!("accepted"),
            }
        };
        assert!(bad(json!({ "host": "ssh://me@box" })).contains("`host`"));
        assert!(bad(json!({ "timeout": "0s" })).contains("timeout"));
        assert!(bad(json!({ "timeout": "5m" })).contains("timeout"));
        let unknown =
            serde_json::from_value::<Config>(json!({ "sokket": "/x" })).expect_err("unknown key");
        assert!(unknown.to_string().contains("sokket"), "{unknown}");
        let source = serde_json::from_value::<Config>(json!({ "stats_source": "magic" }))
            .expect_err("bad source");
        assert!(source.to_string().contains("magic"), "{source}");
    }

    /// Guards the inspect cache key: a restart changes the status text, a cgroup-watched
    /// running container keys on its state alone.
    #[test]
    fn cache_keys_follow_restarts() {
        let exited = ContainerState::Exited;
        let a = cache_key(&exited, "Exited (1) 2 hours ago", false);
        let b = cache_key(&exited, "Exited (1) 1 second ago", false);
        assert_ne!(a, b);
        let running = ContainerState::Running;
        assert_eq!(
            cache_key(&running, "Up 1 second", true),
            cache_key(&running, "Up 2 hours", true)
        );
    }
}
