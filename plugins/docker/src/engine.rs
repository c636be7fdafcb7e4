//! Talking to the Docker Engine API through bollard: where the daemon is, what a failed request
//! means, and turning its list, inspect and stats answers into section fields.

use std::collections::HashMap;
use std::fmt;
use std::time::Duration;

use bollard::errors::Error as BollardError;
use bollard::models::{ContainerStatsResponse, ContainerSummary, PortSummary};
use bollard::Docker;

/// Where the daemon listens.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Endpoint {
    /// A Unix socket path.
    Unix(String),
    /// A plain-HTTP address, `tcp://host:port` or `http://host:port`.
    Tcp(String),
}

impl fmt::Display for Endpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Endpoint::Unix(path) => write!(f, "unix://{path}"),
            Endpoint::Tcp(addr) => write!(f, "{addr}"),
        }
    }
}

/// The daemon address used when neither the config nor `DOCKER_HOST` names one.
pub const DEFAULT_HOST: &str = "unix:///var/run/docker.sock";

impl Endpoint {
    /// Parses `unix:///path`, a bare `/path`, `tcp://host:port` or `http://host:port`.
    ///
    /// # Errors
    /// A sentence naming the address and the schemes that are understood.
    pub fn parse(host: &str) -> Result<Endpoint, String> {
        let host = host.trim();
        if let Some(path) = host.strip_prefix("unix://") {
            if path.is_empty() {
                return Err(format!("`{host}` names no socket path"));
            }
            Ok(Endpoint::Unix(path.to_owned()))
        } else if host.starts_with('/') {
            Ok(Endpoint::Unix(host.to_owned()))
        } else if host.starts_with("tcp://") || host.starts_with("http://") {
            Ok(Endpoint::Tcp(host.to_owned()))
        } else {
            Err(format!(
                "`{host}` is not a daemon address this collector speaks: use unix:///path/to/docker.sock, \
                 /path/to/docker.sock, tcp://HOST:PORT or http://HOST:PORT (no TLS)"
            ))
        }
    }

    /// A bollard client for this address (no request is made yet).
    ///
    /// # Errors
    /// bollard's error for an address it refuses.
    pub fn client(&self, timeout: Duration) -> Result<Docker, BollardError> {
        // bollard's own per-request timeout counts whole seconds; ours (tokio) is exact and
        // must fire first, so bollard's is a second longer.
        let secs = timeout.as_secs_f64().ceil() as u64 + 1;
        match self {
            Endpoint::Unix(path) => {
                Docker::connect_with_unix(path, secs, bollard::API_DEFAULT_VERSION)
            }
            Endpoint::Tcp(addr) => {
                Docker::connect_with_http(addr, secs, bollard::API_DEFAULT_VERSION)
            }
        }
    }

    /// True when the daemon runs on this machine, so its containers' cgroup files are ours to read.
    pub fn is_local(&self) -> bool {
        matches!(self, Endpoint::Unix(_))
    }
}

/// Why a request to the daemon did not give an answer.
#[derive(Debug, thiserror::Error)]
pub enum RequestError {
    /// No daemon there: no socket, connection refused, or no permission on the socket.
    #[error("{0}")]
    Unreachable(String),
    /// The daemon did not answer in time.
    #[error("the Docker daemon at {endpoint} did not answer {what} within {timeout:?}")]
    TimedOut {
        /// The daemon's address.
        endpoint: String,
        /// The request.
        what: &'static str,
        /// The configured bound.
        timeout: Duration,
    },
    /// The container is gone (removed between the list and this request).
    #[error("no such container")]
    Gone,
    /// Any other error the daemon or the transport returned.
    #[error("{what}: {source}")]
    Other {
        /// The request.
        what: &'static str,
        /// What bollard reported.
        source: BollardError,
    },
}

/// Classifies a bollard error of `what` against `endpoint`.
pub fn classify(endpoint: &Endpoint, what: &'static str, e: BollardError) -> RequestError {
    if let BollardError::DockerResponseServerError { status_code, .. } = &e {
        if *status_code == 404 {
            return RequestError::Gone;
        }
    }
    if let BollardError::SocketNotFoundError(_) = &e {
        return RequestError::Unreachable(format!("no Docker daemon: {endpoint} does not exist"));
    }
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(&e);
    while let Some(err) = source {
        if let Some(io) = err.downcast_ref::<std::io::Error>() {
            use std::io::ErrorKind::*;
            let reason = match io.kind() {
                NotFound => format!("no Docker daemon: {endpoint} does not exist"),
                ConnectionRefused => format!("no Docker daemon: connection to {endpoint} refused"),
                PermissionDenied => format!(
                    "permission denied on {endpoint} (the user running vitals needs access, \
                     e.g. membership of the `docker` group)"
                ),
                AddrNotAvailable | HostUnreachable | NetworkUnreachable | ConnectionReset => {
                    format!("no Docker daemon at {endpoint}: {io}")
                }
                _ => {
                    source = err.source();
                    continue;
                }
            };
            return RequestError::Unreachable(reason);
        }
        source = err.source();
    }
    RequestError::Other { what, source: e }
}

/// Runs one request with the configured bound, classifying its failure.
pub async fn bounded<T>(
    endpoint: &Endpoint,
    timeout: Duration,
    what: &'static str,
    request: impl std::future::Future<Output = Result<T, BollardError>>,
) -> Result<T, RequestError> {
    match tokio::time::timeout(timeout, request).await {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(e)) => Err(classify(endpoint, what, e)),
        Err(_) => Err(RequestError::TimedOut {
            endpoint: endpoint.to_string(),
            what,
            timeout,
        }),
    }
}

/// One connected daemon and the bound on each request to it: what the list, inspect and
/// stats steps of a collect talk to.
#[derive(Clone, Copy)]
pub struct Daemon<'a> {
    /// The client.
    pub docker: &'a Docker,
    /// Its address, for error messages.
    pub endpoint: &'a Endpoint,
    /// The bound on each request.
    pub timeout: Duration,
}

impl Daemon<'_> {
    /// Runs one request with the configured bound, classifying its failure.
    ///
    /// # Errors
    /// The classified failure, or [`RequestError::TimedOut`].
    pub async fn request<T>(
        &self,
        what: &'static str,
        request: impl std::future::Future<Output = Result<T, BollardError>>,
    ) -> Result<T, RequestError> {
        bounded(self.endpoint, self.timeout, what, request).await
    }
}

/// The container's name without the leading `/` (the first of its names).
pub fn container_name(summary: &ContainerSummary) -> String {
    summary
        .names
        .as_ref()
        .and_then(|n| n.first())
        .map(|n| n.trim_start_matches('/').to_owned())
        .unwrap_or_default()
}

/// One port the way `docker ps` prints it: `127.0.0.1:8080->80/tcp`, `[::]:8080->80/tcp`, `80/tcp`.
pub fn format_port(port: &PortSummary) -> String {
    let proto = port.typ.map(|t| t.to_string()).unwrap_or_default();
    let proto = if proto.is_empty() {
        "tcp".into()
    } else {
        proto
    };
    match (port.public_port, port.ip.as_deref()) {
        (Some(public), Some(ip)) if !ip.is_empty() => {
            let ip = if ip.contains(':') {
                format!("[{ip}]")
            } else {
                ip.to_owned()
            };
            format!("{ip}:{public}->{}/{proto}", port.private_port)
        }
        (Some(public), _) => format!("{public}->{}/{proto}", port.private_port),
        (None, _) => format!("{}/{proto}", port.private_port),
    }
}

/// Every port of a container, formatted, sorted and without repeats.
pub fn format_ports(ports: &[PortSummary]) -> Vec<String> {
    let mut out: Vec<String> = ports.iter().map(format_port).collect();
    out.sort();
    out.dedup();
    out
}

/// The health verdict inside a `docker ps` status text: `Up 2 minutes (healthy)` -> `healthy`.
pub fn parse_health(status_text: &str) -> Option<&'static str> {
    if status_text.contains("(healthy)") {
        Some("healthy")
    } else if status_text.contains("(unhealthy)") {
        Some("unhealthy")
    } else if status_text.contains("(health: starting)") {
        Some("starting")
    } else {
        None
    }
}

/// Parses the daemon's RFC 3339 timestamps (`2024-05-01T10:00:00.123456789Z`) into Unix
/// seconds; `None` for the zero time of a container that never started.
pub fn parse_timestamp(text: &str) -> Option<i64> {
    let t = humantime::parse_rfc3339_weak(text).ok()?;
    let secs = t.duration_since(std::time::UNIX_EPOCH).ok()?.as_secs();
    i64::try_from(secs).ok().filter(|s| *s > 0)
}

/// What one-shot stats from the daemon say, in the terms of a cgroup sample.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ApiSample {
    /// Container CPU time, nanoseconds.
    pub cpu_ns: u64,
    /// The daemon's system CPU time, nanoseconds.
    pub system_ns: u64,
    /// Online CPUs as the daemon counts them.
    pub online_cpus: u32,
    /// Memory in use without the inactive page cache.
    pub memory_used_bytes: Option<u64>,
    /// The memory limit the daemon reports (already capped at the host's RAM).
    pub memory_limit_bytes: Option<u64>,
    /// Network bytes received, summed over the container's networks.
    pub network_rx_bytes: Option<u64>,
    /// Network bytes sent.
    pub network_tx_bytes: Option<u64>,
    /// Block bytes read.
    pub block_read_bytes: Option<u64>,
    /// Block bytes written.
    pub block_write_bytes: Option<u64>,
    /// Tasks in the container.
    pub pids: Option<u64>,
}

/// Memory use the way the `docker stats` client computes it: usage minus inactive file cache
/// (`total_inactive_file` on cgroup v1, `inactive_file` on v2), when smaller than usage.
pub fn memory_without_cache(usage: u64, stats: &HashMap<String, u64>) -> u64 {
    let cache = stats
        .get("total_inactive_file")
        .or_else(|| stats.get("inactive_file"))
        .copied()
        .unwrap_or(0);
    without_cache(usage, cache)
}

/// `usage` minus `cache`, or `usage` when the cache is not smaller (as the `docker stats` client).
pub fn without_cache(usage: u64, cache: u64) -> u64 {
    if cache < usage {
        usage - cache
    } else {
        usage
    }
}

/// Converts a one-shot stats answer.
pub fn api_sample(stats: &ContainerStatsResponse) -> ApiSample {
    let cpu = stats.cpu_stats.as_ref();
    let mem = stats.memory_stats.as_ref();
    let networks = stats.networks.as_ref();
    let blkio = stats
        .blkio_stats
        .as_ref()
        .and_then(|b| b.io_service_bytes_recursive.as_ref());
    let online_cpus = cpu.and_then(|c| c.online_cpus).unwrap_or(0);
    let online_cpus = if online_cpus > 0 {
        online_cpus
    } else {
        cpu.and_then(|c| c.cpu_usage.as_ref())
            .and_then(|u| u.percpu_usage.as_ref())
            .map_or(1, |p| p.len().max(1) as u32)
    };
    let sum_blkio = |op: &str| {
        blkio.map(|entries| {
            entries
                .iter()
                .filter(|e| e.op.as_deref().is_some_and(|o| o.eq_ignore_ascii_case(op)))
                .filter_map(|e| e.value)
                .sum::<u64>()
        })
    };
    ApiSample {
        cpu_ns: cpu
            .and_then(|c| c.cpu_usage.as_ref())
            .and_then(|u| u.total_usage)
            .unwrap_or(0),
        system_ns: cpu.and_then(|c| c.system_cpu_usage).unwrap_or(0),
        online_cpus,
        memory_used_bytes: mem.and_then(|m| {
            let usage = m.usage?;
            Some(memory_without_cache(
                usage,
                m.stats.as_ref().unwrap_or(&HashMap::new()),
            ))
        }),
        memory_limit_bytes: mem.and_then(|m| m.limit).filter(|l| *l > 0),
        network_rx_bytes: networks.map(|n| n.values().filter_map(|v| v.rx_bytes).sum()),
        network_tx_bytes: networks.map(|n| n.values().filter_map(|v| v.tx_bytes).sum()),
        block_read_bytes: sum_blkio("read"),
        block_write_bytes: sum_blkio("write"),
        pids: stats.pids_stats.as_ref().and_then(|p| p.current),
    }
}

/// CPU use between two samples as `docker stats` computes it:
/// container CPU delta / system CPU delta x online CPUs x 100.
pub fn cpu_percent(
    prev_container_ns: u64,
    prev_system_ns: u64,
    container_ns: u64,
    system_ns: u64,
    online_cpus: u32,
) -> Option<f64> {
    let container = container_ns.checked_sub(prev_container_ns)?;
    let system = system_ns.checked_sub(prev_system_ns)?;
    (system > 0).then(|| container as f64 / system as f64 * f64::from(online_cpus) * 100.0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use bollard::models::PortSummaryTypeEnum;

    /// Guards the address forms the config and `DOCKER_HOST` may use, and the refusal text.
    #[test]
    fn parses_daemon_addresses() {
        assert_eq!(
            Endpoint::parse("unix:///run/docker.sock"),
            Ok(Endpoint::Unix("/run/docker.sock".into()))
        );
        assert_eq!(
            Endpoint::parse("/tmp/d.sock"),
            Ok(Endpoint::Unix("/tmp/d.sock".into()))
        );
        assert_eq!(
            Endpoint::parse("tcp://10.0.0.1:2375"),
            Ok(Endpoint::Tcp("tcp://10.0.0.1:2375".into()))
        );
        let err = Endpoint::parse("ssh://me@box").expect_err("refused");
        assert!(
            err.contains("ssh://me@box") && err.contains("unix://"),
            "{err}"
        );
        assert!(Endpoint::parse("unix://").is_err());
        assert!(Endpoint::Unix("/x".into()).is_local());
        assert!(!Endpoint::Tcp("tcp://h:1".into()).is_local());
    }

    fn port(ip: Option<&str>, private: u16, public: Option<u16>) -> PortSummary {
        PortSummary {
            ip: ip.map(str::to_owned),
            private_port: private,
            public_port: public,
            typ: Some(PortSummaryTypeEnum::TCP),
        }
    }

    /// Guards the `docker ps` port notation, IPv6 brackets and de-duplication.
    #[test]
    fn formats_ports_like_docker_ps() {
        assert_eq!(
            format_port(&port(Some("127.0.0.1"), 80, Some(8080))),
            "127.0.0.1:8080->80/tcp"
        );
        assert_eq!(
            format_port(&port(Some("::"), 80, Some(8080))),
            "[::]:8080->80/tcp"
        );
        assert_eq!(format_port(&port(None, 443, None)), "443/tcp");
        let udp = PortSummary {
            typ: Some(PortSummaryTypeEnum::UDP),
            ..port(Some("0.0.0.0"), 53, Some(5353))
        };
        assert_eq!(format_port(&udp), "0.0.0.0:5353->53/udp");
        let twice = [
            port(None, 443, None),
            port(None, 443, None),
            port(None, 80, None),
        ];
        assert_eq!(format_ports(&twice), vec!["443/tcp", "80/tcp"]);
    }

    /// Guards health parsing from the daemon's status text.
    #[test]
    fn parses_health_from_status_text() {
        assert_eq!(parse_health("Up 2 minutes (healthy)"), Some("healthy"));
        assert_eq!(parse_health("Up 2 minutes (unhealthy)"), Some("unhealthy"));
        assert_eq!(
            parse_health("Up 1 second (health: starting)"),
            Some("starting")
        );
        assert_eq!(parse_health("Up 2 minutes"), None);
        assert_eq!(parse_health("Exited (0) 3 hours ago"), None);
    }

    /// Guards timestamps: nanosecond fractions, and the zero time of a never-started container.
    #[test]
    fn parses_daemon_timestamps() {
        assert_eq!(
            parse_timestamp("2024-05-01T10:00:00.123456789Z"),
            Some(1_714_557_600)
        );
        assert_eq!(parse_timestamp("0001-01-01T00:00:00Z"), None);
        assert_eq!(parse_timestamp("yesterday"), None);
    }

    /// Guards the `docker stats` CPU formula and its refusal of counters that went backwards.
    #[test]
    fn computes_cpu_percent_like_docker() {
        // Half a CPU-second over a second of a two-CPU machine (2 s of system time): 50 %.
        let p = cpu_percent(1_000, 10_000, 500_001_000, 2_000_010_000, 2).expect("percent");
        assert!((p - 50.0).abs() < 1e-9, "{p}");
        assert_eq!(cpu_percent(10, 10, 5, 20, 2), None, "container restarted");
        assert_eq!(
            cpu_percent(10, 10, 20, 10, 2),
            None,
            "no system time passed"
        );
    }

    /// Guards memory without cache: v1 key first, v2 key, and no underflow.
    #[test]
    fn subtracts_inactive_file_cache() {
        let v1 = HashMap::from([("total_inactive_file".to_owned(), 100)]);
        let v2 = HashMap::from([("inactive_file".to_owned(), 30)]);
        assert_eq!(memory_without_cache(1000, &v1), 900);
        assert_eq!(memory_without_cache(1000, &v2), 970);
        assert_eq!(memory_without_cache(10, &v1), 10);
        assert_eq!(memory_without_cache(10, &HashMap::new()), 10);
    }

    /// Guards the conversion of a one-shot stats answer as the daemon sends it (cgroup v1).
    #[test]
    fn converts_one_shot_stats() {
        let text = std::fs::read_to_string(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/fixtures/stats_one_shot.json"
        ))
        .expect("fixture");
        let stats: ContainerStatsResponse = serde_json::from_str(&text).expect("stats json");
        let s = api_sample(&stats);
        assert_eq!(s.cpu_ns, 5_980_728_308);
        assert_eq!(s.system_ns, 28_810_000_000);
        assert_eq!(s.online_cpus, 2);
        assert_eq!(s.memory_used_bytes, Some(548_864 - 4096));
        assert_eq!(s.memory_limit_bytes, Some(25_275_887_616));
        assert_eq!(
            (s.network_rx_bytes, s.network_tx_bytes),
            (Some(1046), Some(0))
        );
        assert_eq!(
            (s.block_read_bytes, s.block_write_bytes),
            (Some(8192), Some(0))
        );
        assert_eq!(s.pids, Some(1));
    }
}

#[cfg(test)]
mod proptests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        /// Guards that no configured address, status text or timestamp panics its parser.
        #[test]
        fn arbitrary_text_never_panics(text in "\\PC{0,200}") {
            let _ = Endpoint::parse(&text);
            let _ = parse_health(&text);
            let _ = parse_timestamp(&text);
        }

        /// Guards the address round trip: a parsed address prints back as it was given.
        #[test]
        fn addresses_round_trip(
            address in "unix:///[a-z/._-]{1,30}|tcp://[a-z0-9.-]{1,20}:[0-9]{1,5}|http://[a-z0-9.-]{1,20}:[0-9]{1,5}",
        ) {
            let endpoint = Endpoint::parse(&address).map_err(TestCaseError::fail)?;
            prop_assert_eq!(endpoint.to_string(), address);
        }

        /// Guards the timestamp round trip: the daemon's RFC 3339 form (nanoseconds, `Z`)
        /// gives back its Unix seconds.
        #[test]
        fn timestamps_round_trip(secs in 1u64..253_402_300_799, nanos in 0u32..1_000_000_000) {
            let time = std::time::UNIX_EPOCH + Duration::new(secs, nanos);
            let text = humantime::format_rfc3339_nanos(time).to_string();
            prop_assert_eq!(parse_timestamp(&text), Some(secs as i64), "{}", text);
        }
    }
}
