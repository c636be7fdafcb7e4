//! Docker collector: the daemon's version and container counts, and every container's state, ports, uptime and resource use (Engine API via bollard; cgroup files when the daemon is local).

mod assemble;
pub mod cgroup;
pub mod engine;
mod events;
mod inspect;
mod list;
pub mod procfs;
mod sample;

use std::path::PathBuf;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bollard::Docker;
use hashbrown::HashMap;
use vitals_plugin_api::prelude::*;
use vitals_plugin_api::sections::DockerStats;

use crate::cgroup::Layout;
use crate::engine::{bounded, Daemon, Endpoint, RequestError};
use crate::events::Events;
use crate::inspect::Tracked;
use crate::sample::CgroupReader;

pub use crate::list::LIST_EVERY;

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
    /// A running container found without CPU use on 3 reads in a row is read every this many
    /// collects, showing its last read between (1 to 60; 1: every collect).
    pub idle_every: u32,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            host: None,
            timeout: Duration::from_secs(2),
            include_stopped: true,
            stats_source: StatsSource::Auto,
            cgroup_root: PathBuf::from("/sys/fs/cgroup"),
            idle_every: 4,
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
        if !(1..=60).contains(&self.idle_every) {
            return Err(Error::invalid_config(format!(
                "`idle_every` must be from 1 to 60, not {}",
                self.idle_every
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

/// Everything but the runtime, so a collect can borrow it while the runtime drives it.
struct State {
    endpoint: Endpoint,
    timeout: Duration,
    include_stopped: bool,
    client: Option<Connected>,
    containers: HashMap<String, Tracked>,
    was_unreachable: bool,
    /// Reads running containers' cgroup files.
    cgroups: CgroupReader,
    /// The last container list and when it was read; reused while no event says it changed.
    list: Option<list::Listed>,
    /// True when the last collect found every entry of the kept list fresh, read every running
    /// one from its cgroup files and lost none: while that list is reused, the next collect
    /// has nothing to check against the tracked containers.
    settled: bool,
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
                client: None,
                containers: HashMap::new(),
                was_unreachable: false,
                cgroups: CgroupReader {
                    idle_every: config.idle_every,
                    ..CgroupReader::new(layout)
                },
                list: None,
                settled: false,
            },
        })
    }

    /// Under a host root: the host's cgroup tree and, unless `host` or `DOCKER_HOST` names the
    /// daemon, the host's socket under the root (`/host/run/docker.sock`; `/var/run` is
    /// usually an absolute link to `/run`, which would leave the root), else the default
    /// socket, where one can be mounted in.
    fn create(mut config: Config, init: &InitParams) -> Result<Self, Error> {
        if init.host_root.is_some() {
            config.cgroup_root = init.host_path(&config.cgroup_root);
            let docker_host = std::env::var("DOCKER_HOST").unwrap_or_default();
            if config.host.is_none() && docker_host.trim().is_empty() {
                config.host = ["/run/docker.sock", "/var/run/docker.sock"]
                    .iter()
                    .map(|s| init.host_path(s))
                    .find(|s| s.exists())
                    .map(|s| format!("unix://{}", s.display()));
            }
        }
        Self::new(config)
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

    /// One collect: list, inspect what changed, sample the running, assemble the section.
    async fn try_collect(&mut self) -> Result<DockerStats, RequestError> {
        self.connect().await?;
        let Some(client) = self.client.as_ref() else {
            return Err(RequestError::Unreachable("not connected".to_owned()));
        };
        let daemon = Daemon {
            docker: &client.docker,
            endpoint: &self.endpoint,
            timeout: self.timeout,
        };
        // Let the event watcher read what the daemon sent since the previous collect.
        tokio::time::sleep(Duration::from_millis(1)).await;
        let changed = client.events.take_changed();
        let kept_at = self.list.as_ref().map(|(_, at)| *at);
        let (list, listed_at) = list::read(&daemon, self.list.take(), changed).await?;
        let relisted = kept_at != Some(listed_at);
        let entries = list::entries(&list);
        let counts = list::count(&entries);

        let settled = std::mem::take(&mut self.settled) && !relisted;
        let stale = if settled {
            Vec::new()
        } else {
            inspect::stale(&entries, &mut self.containers, relisted)
        };
        let all_fresh = stale.is_empty();
        let answers = inspect::inspect_all(&daemon, stale).await;
        let layout = self.cgroups.layout.as_ref();
        let mut vanished = inspect::record(answers, &mut self.containers, layout)?;

        let for_api = self
            .cgroups
            .sample(&entries, &mut self.containers, &mut vanished);
        let all_cgroup = for_api.is_empty();
        let answers = sample::stats_all(&daemon, for_api).await;
        sample::record_stats(answers, &mut self.containers, &mut vanished)?;

        let (containers, sources) = assemble::rows(
            &entries,
            &vanished,
            self.include_stopped,
            &mut self.containers,
            self.cgroups.collects,
            now_unix(),
        );
        let fallback = self.cgroups.layout.as_ref().map_or("api", Layout::name);
        let stats = DockerStats {
            reachable: true,
            server_version: client.server_version.clone(),
            api_version: client.api_version.clone(),
            stats_source: assemble::stats_source(sources, fallback),
            containers_running: counts.running,
            containers_paused: counts.paused,
            containers_stopped: counts.stopped,
            containers_total: counts.running + counts.paused + counts.stopped,
            containers,
            events: client.events.recent(),
        };
        if vanished.is_empty() {
            self.list = Some((list, listed_at));
            self.settled = all_fresh && all_cgroup;
        }
        Ok(stats)
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

    /// Guards config validation: bad addresses, schemes, timeouts and rest paces are refused by
    /// name.
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
        assert!(bad(json!({ "idle_every": 0 })).contains("idle_every"));
        assert!(bad(json!({ "idle_every": 61 })).contains("idle_every"));
        let unknown =
            serde_json::from_value::<Config>(json!({ "sokket": "/x" })).expect_err("unknown key");
        assert!(unknown.to_string().contains("sokket"), "{unknown}");
        let source = serde_json::from_value::<Config>(json!({ "stats_source": "magic" }))
            .expect_err("bad source");
        assert!(source.to_string().contains("magic"), "{source}");
    }
}
