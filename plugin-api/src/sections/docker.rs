//! The `docker` section: the daemon's state and every container's status and resource use.

use std::fmt;

use serde::{Deserialize, Serialize};

/// The `docker` section.
///
/// It exists only while the daemon answers; without a daemon the collector's state is
/// `unavailable` with the reason instead.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DockerStats {
    /// Whether the daemon answered this collect (always true in a fresh section; a stale
    /// section kept from before the daemon went away still says true, its status says why).
    pub reachable: bool,
    /// The daemon's version, e.g. `20.10.24+dfsg1`.
    pub server_version: String,
    /// The Engine API version spoken with the daemon, e.g. `1.41`.
    pub api_version: String,
    /// Where the resource figures came from: `cgroup v1`, `cgroup v2`, `api` or a mix
    /// (`api+cgroup v1`) when some containers' cgroup files could not be read.
    pub stats_source: String,
    /// Containers in the `running` state.
    pub containers_running: u32,
    /// Containers in the `paused` state.
    pub containers_paused: u32,
    /// Every other container (exited, created, dead, restarting, removing).
    pub containers_stopped: u32,
    /// Every container the daemon knows, whether listed below or not.
    pub containers_total: u32,
    /// The containers, by name; stopped ones only when the config includes them.
    pub containers: Vec<ContainerStats>,
    /// Recent container lifecycle events (started, stopped, died with its exit code, OOM
    /// killed, restarted, unhealthy), oldest first, at most [`MAX_CONTAINER_EVENTS`]; the host
    /// stores each once.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub events: Vec<crate::sdk::SectionEvent>,
}

/// The most container events a docker section repeats.
pub const MAX_CONTAINER_EVENTS: usize = 64;

/// One container.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ContainerStats {
    /// The full container id (64 hex digits).
    pub id: String,
    /// The container name, without the leading `/`.
    pub name: String,
    /// The image as the container was created from it, e.g. `nginx:1.25`.
    pub image: String,
    /// The state: `running`, `exited`, `created`, `paused`, `restarting`, `removing` or `dead`
    /// (a newer daemon's word as sent).
    pub status: ContainerState,
    /// The daemon's human-readable status, e.g. `Up 3 minutes (healthy)`.
    pub status_text: String,
    /// The health check's verdict (`starting`, `healthy`, `unhealthy`), when one is defined.
    pub health: Option<String>,
    /// CPU use since the previous collect, as `docker stats` computes it (100 = one full CPU);
    /// absent on the first sight of a running container and for stopped ones.
    pub cpu_usage_percent: Option<f64>,
    /// Memory in use, without the inactive page cache (as `docker stats`); running containers only.
    pub memory_used_bytes: Option<u64>,
    /// The memory limit (the host's RAM when the container has none).
    pub memory_limit_bytes: Option<u64>,
    /// `memory_used_bytes` as a share of `memory_limit_bytes`.
    pub memory_used_percent: Option<f64>,
    /// Processes and threads in the container, when known.
    pub pids: Option<u64>,
    /// Published and exposed ports, e.g. `127.0.0.1:8080->80/tcp` or `443/tcp`.
    pub ports: Vec<String>,
    /// Seconds since the container started; running and paused containers only.
    pub uptime_seconds: Option<u64>,
    /// When the container was last started, as seconds since the Unix epoch.
    pub started_at_unix_seconds: Option<i64>,
    /// When the container was created, as seconds since the Unix epoch.
    pub created_unix_seconds: i64,
    /// Bytes received over the container's network interfaces (absent in host network mode).
    pub network_rx_bytes: Option<u64>,
    /// Bytes sent over the container's network interfaces (absent in host network mode).
    pub network_tx_bytes: Option<u64>,
    /// Bytes read from block devices.
    pub block_read_bytes: Option<u64>,
    /// Bytes written to block devices.
    pub block_write_bytes: Option<u64>,
    /// How many times the daemon restarted the container under its restart policy.
    pub restart_count: u64,
}

/// A container's state, spelled as the Docker daemon spells it.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ContainerState {
    /// Created, never started.
    Created,
    /// Its processes run.
    Running,
    /// Its processes are frozen.
    Paused,
    /// The daemon is restarting it under its restart policy.
    Restarting,
    /// Being removed.
    Removing,
    /// Its main process ended.
    Exited,
    /// Partly removed; the daemon could not finish.
    Dead,
    /// A spelling none of the above has (a newer daemon's, or none at all), kept as sent.
    #[serde(untagged)]
    Other(String),
}

impl ContainerState {
    /// The daemon's spelling.
    pub fn as_str(&self) -> &str {
        match self {
            Self::Created => "created",
            Self::Running => "running",
            Self::Paused => "paused",
            Self::Restarting => "restarting",
            Self::Removing => "removing",
            Self::Exited => "exited",
            Self::Dead => "dead",
            Self::Other(s) => s,
        }
    }

    /// True while the container has processes: running or paused.
    pub fn is_up(&self) -> bool {
        matches!(self, Self::Running | Self::Paused)
    }
}

impl From<&str> for ContainerState {
    /// The variant of a daemon spelling; [`ContainerState::Other`] only for one no variant has.
    fn from(s: &str) -> Self {
        match s {
            "created" => Self::Created,
            "running" => Self::Running,
            "paused" => Self::Paused,
            "restarting" => Self::Restarting,
            "removing" => Self::Removing,
            "exited" => Self::Exited,
            "dead" => Self::Dead,
            other => Self::Other(other.to_owned()),
        }
    }
}

impl fmt::Display for ContainerState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const KNOWN: [&str; 7] = [
        "created",
        "running",
        "paused",
        "restarting",
        "removing",
        "exited",
        "dead",
    ];

    /// Guards the wire spelling: every known state serialises as the daemon spells it, parses
    /// back to a named variant (never `Other`), and `From<&str>` agrees with serde.
    #[test]
    fn known_states_keep_the_daemon_spelling() {
        for s in KNOWN {
            let state = ContainerState::from(s);
            assert!(!matches!(state, ContainerState::Other(_)), "{s}");
            assert_eq!(state.as_str(), s);
            let json = serde_json::to_string(&state).expect("serialise");
            assert_eq!(json, format!("\"{s}\""));
            let back: ContainerState = serde_json::from_str(&json).expect("parse");
            assert_eq!(back, state);
        }
        assert!(ContainerState::Running.is_up() && ContainerState::Paused.is_up());
        assert!(!ContainerState::Exited.is_up());
    }

    /// Guards a newer daemon's spelling (and the empty one): kept as sent through a parse
    /// and a serialisation, counted as not up.
    #[test]
    fn an_unknown_state_is_kept_as_sent() {
        for s in ["stopping", "", "Running"] {
            let json = format!("\"{s}\"");
            let state: ContainerState = serde_json::from_str(&json).expect("parse");
            assert_eq!(state, ContainerState::Other(s.to_owned()));
            assert_eq!(ContainerState::from(s), state);
            assert_eq!(serde_json::to_string(&state).expect("serialise"), json);
            assert_eq!(state.to_string(), s);
            assert!(!state.is_up());
        }
    }
}
