//! Network collector: interface counters from `/proc/net/dev`, addresses from getifaddrs(3), state, MTU and speed from `/sys/class/net`.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::time::Instant;

use glob::Pattern;
use nix::net::if_::InterfaceFlags;
use vitals_plugin_api::prelude::*;
use vitals_plugin_api::sections::{InterfaceInfo, NetworkStats};

/// Interfaces left out by default: loopback and the virtual links of containers, bridges and VMs.
pub const DEFAULT_EXCLUDED: &[&str] = &[
    "lo", "docker*", "veth*", "br-*", "virbr*", "vnet*", "ifb*", "cali*", "flannel*", "cni*",
];

/// The `[collectors.network.config]` table.
#[derive(Debug, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// Interface name patterns (glob) to report even though the default list leaves them out, e.g. `["docker0"]`.
    pub include_interfaces: Vec<String>,
    /// Interface name patterns (glob) to leave out besides the default list, e.g. `["wg*"]`. Exclusion wins over inclusion.
    pub exclude_interfaces: Vec<String>,
    /// Root of the proc tree to read `net/dev` from (test-only; default `/proc`).
    pub proc_root: PathBuf,
    /// Root of the sysfs tree to read `class/net` from (test-only; default `/sys`).
    pub sys_root: PathBuf,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            include_interfaces: Vec::new(),
            exclude_interfaces: Vec::new(),
            proc_root: PathBuf::from("/proc"),
            sys_root: PathBuf::from("/sys"),
        }
    }
}

/// The counters of one interface from `/proc/net/dev`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Counters {
    /// Bytes received.
    pub rx_bytes: u64,
    /// Packets received.
    pub rx_packets: u64,
    /// Receive errors.
    pub rx_errors: u64,
    /// Received packets dropped.
    pub rx_dropped: u64,
    /// Bytes sent.
    pub tx_bytes: u64,
    /// Packets sent.
    pub tx_packets: u64,
    /// Transmit errors.
    pub tx_errors: u64,
    /// Outgoing packets dropped.
    pub tx_dropped: u64,
}

/// Parses `/proc/net/dev` into counters per interface name; headers and malformed lines are skipped.
pub fn parse_net_dev(text: &str) -> BTreeMap<String, Counters> {
    text.lines()
        .filter_map(|line| {
            // A long counter can touch the colon: `eth0:123 …`.
            let (name, rest) = line.split_once(':')?;
            let f: Vec<u64> = rest
                .split_ascii_whitespace()
                .map(str::parse)
                .collect::<Result<_, _>>()
                .ok()?;
            if f.len() < 16 {
                return None;
            }
            let counters = Counters {
                rx_bytes: f[0],
                rx_packets: f[1],
                rx_errors: f[2],
                rx_dropped: f[3],
                tx_bytes: f[8],
                tx_packets: f[9],
                tx_errors: f[10],
                tx_dropped: f[11],
            };
            Some((name.trim().to_owned(), counters))
        })
        .collect()
}

/// Which interfaces are reported: the default exclusions plus the operator's patterns.
#[derive(Debug, Clone)]
pub struct InterfaceFilter {
    default_excluded: Vec<Pattern>,
    include: Vec<Pattern>,
    exclude: Vec<Pattern>,
}

fn patterns<'a>(key: &str, list: impl IntoIterator<Item = &'a str>) -> Result<Vec<Pattern>, Error> {
    list.into_iter()
        .map(|p| {
            Pattern::new(p)
                .map_err(|e| Error::invalid_config(format!("`{key}`: bad pattern `{p}`: {e}")))
        })
        .collect()
}

impl InterfaceFilter {
    /// The filter for a config.
    ///
    /// # Errors
    /// [`Error::InvalidConfig`] naming the key and the malformed pattern.
    pub fn from_config(config: &Config) -> Result<Self, Error> {
        Ok(Self {
            default_excluded: patterns("default", DEFAULT_EXCLUDED.iter().copied())?,
            include: patterns(
                "include_interfaces",
                config.include_interfaces.iter().map(String::as_str),
            )?,
            exclude: patterns(
                "exclude_interfaces",
                config.exclude_interfaces.iter().map(String::as_str),
            )?,
        })
    }

    /// True when the interface is reported.
    pub fn keeps(&self, name: &str) -> bool {
        let matches = |list: &[Pattern]| list.iter().any(|p| p.matches(name));
        if matches(&self.exclude) {
            return false;
        }
        !matches(&self.default_excluded) || matches(&self.include)
    }
}

/// What getifaddrs(3) says about one interface.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Addresses {
    /// IPv4 addresses with prefix length.
    pub ipv4: Vec<String>,
    /// IPv6 addresses with prefix length.
    pub ipv6: Vec<String>,
    /// The 6-byte hardware address, when the link has one.
    pub mac: Option<String>,
    /// The interface is administratively up and has a carrier.
    pub up_and_running: bool,
}

/// Formats a MAC address; an all-zero address is no address.
pub fn format_mac(bytes: [u8; 6]) -> Option<String> {
    (bytes != [0; 6]).then(|| {
        bytes
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect::<Vec<_>>()
            .join(":")
    })
}

/// Reads the addresses of every interface with one getifaddrs(3) call.
///
/// # Errors
/// The OS error of getifaddrs.
pub fn read_addresses() -> Result<HashMap<String, Addresses>, Error> {
    let mut out: HashMap<String, Addresses> = HashMap::new();
    for ifa in nix::ifaddrs::getifaddrs().map_err(|e| Error::failed(format!("getifaddrs: {e}")))? {
        let entry = out.entry(ifa.interface_name.clone()).or_default();
        entry.up_and_running = ifa
            .flags
            .contains(InterfaceFlags::IFF_UP | InterfaceFlags::IFF_RUNNING);
        let Some(address) = ifa.address.as_ref() else {
            continue;
        };
        if let Some(v4) = address.as_sockaddr_in() {
            let prefix = ifa
                .netmask
                .as_ref()
                .and_then(|m| m.as_sockaddr_in())
                .map(|m| u32::from(m.ip()).count_ones())
                .unwrap_or(32);
            entry.ipv4.push(format!("{}/{prefix}", v4.ip()));
        } else if let Some(v6) = address.as_sockaddr_in6() {
            let prefix = ifa
                .netmask
                .as_ref()
                .and_then(|m| m.as_sockaddr_in6())
                .map(|m| u128::from(m.ip()).count_ones())
                .unwrap_or(128);
            entry.ipv6.push(format!("{}/{prefix}", v6.ip()));
        } else if let Some(link) = address.as_link_addr() {
            if link.halen() == 6 {
                entry.mac = link.addr().and_then(format_mac);
            }
        }
    }
    Ok(out)
}

/// Reads one trimmed sysfs attribute; None when absent or unreadable (e.g. `speed` of a down link).
fn read_attr(dir: &Path, name: &str) -> Option<String> {
    std::fs::read_to_string(dir.join(name))
        .ok()
        .map(|s| s.trim().to_owned())
}

/// Parses a sysfs `speed` value (Mbit/s; -1 or 0 when unknown) into bits per second.
pub fn parse_speed_mbps(text: &str) -> Option<u64> {
    text.trim()
        .parse::<i64>()
        .ok()
        .filter(|m| *m > 0)
        // A value too large for bits per second in 64 bits is no speed a link has.
        .and_then(|m| (m as u64).checked_mul(1_000_000))
}

/// Per-second rate of a counter; None when the counter went backwards (interface re-created).
fn rate(now: u64, before: u64, seconds: f64) -> Option<f64> {
    (now >= before && seconds > 0.0).then(|| (now - before) as f64 / seconds)
}

/// Collects after which addresses, state, MTU and speed are read again even when no change
/// was announced.
pub const REFRESH_EVERY: u64 = 60;

/// A netlink socket subscribed to the kernel's link and address announcements: reading it
/// tells whether an interface's addresses, state, MTU or speed may have changed.
struct ChangeWatch {
    fd: OwnedFd,
}

impl ChangeWatch {
    fn open() -> Option<Self> {
        // SAFETY: plain socket(2); the descriptor is owned right after.
        let raw = unsafe {
            libc::socket(
                libc::AF_NETLINK,
                libc::SOCK_RAW | libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC,
                libc::NETLINK_ROUTE,
            )
        };
        if raw < 0 {
            return None;
        }
        // SAFETY: `raw` is a descriptor this function just opened and nobody else owns.
        let fd = unsafe { OwnedFd::from_raw_fd(raw) };
        // SAFETY: an all-zero sockaddr_nl is valid.
        let mut addr: libc::sockaddr_nl = unsafe { std::mem::zeroed() };
        addr.nl_family = libc::AF_NETLINK as libc::sa_family_t;
        addr.nl_groups =
            (libc::RTMGRP_LINK | libc::RTMGRP_IPV4_IFADDR | libc::RTMGRP_IPV6_IFADDR) as u32;
        // SAFETY: `addr` is a valid sockaddr_nl of the size passed.
        let rc = unsafe {
            libc::bind(
                fd.as_raw_fd(),
                (&raw const addr).cast::<libc::sockaddr>(),
                std::mem::size_of::<libc::sockaddr_nl>() as libc::socklen_t,
            )
        };
        (rc == 0).then_some(Self { fd })
    }

    /// True when a change of one of the interfaces `watched` (by index) was announced since
    /// the last call, or announcements were lost. Announcements about other interfaces
    /// (container veths come and go, bridges re-announce) are read and dropped.
    fn changed(&self, watched: &HashSet<u32>) -> bool {
        let mut buf = [0u8; 16384];
        let mut any = false;
        loop {
            // SAFETY: `buf` is valid for writes of its length.
            let n = unsafe {
                libc::recv(
                    self.fd.as_raw_fd(),
                    buf.as_mut_ptr().cast(),
                    buf.len(),
                    libc::MSG_DONTWAIT,
                )
            };
            if n > 0 {
                any |= announces_one_of(&buf[..n as usize], watched);
                continue;
            }
            if n == 0 {
                return any;
            }
            match std::io::Error::last_os_error().raw_os_error() {
                Some(libc::EAGAIN) => return any,
                Some(libc::EINTR) => {}
                // ENOBUFS: the socket overflowed and announcements were dropped.
                _ => return true,
            }
        }
    }
}

/// Whether the netlink messages in `datagram` (link or address announcements) name one of
/// the interface indexes in `watched`. Both `ifinfomsg` and `ifaddrmsg` carry the index as
/// a 32-bit field 4 bytes into the payload, after the 16-byte message header.
pub fn announces_one_of(datagram: &[u8], watched: &HashSet<u32>) -> bool {
    const HEADER: usize = 16;
    let mut rest = datagram;
    while rest.len() >= HEADER {
        let len = u32::from_ne_bytes([rest[0], rest[1], rest[2], rest[3]]) as usize;
        if len < HEADER || len > rest.len() {
            return true; // malformed: assume a change rather than miss one
        }
        let kind = u16::from_ne_bytes([rest[4], rest[5]]);
        let payload = &rest[HEADER..len];
        let is_announcement = matches!(
            kind,
            libc::RTM_NEWLINK | libc::RTM_DELLINK | libc::RTM_NEWADDR | libc::RTM_DELADDR
        );
        if is_announcement && payload.len() >= 8 {
            let index = u32::from_ne_bytes([payload[4], payload[5], payload[6], payload[7]]);
            if watched.contains(&index) {
                return true;
            }
        }
        // Messages are aligned to 4 bytes.
        let next = (len + 3) & !3;
        rest = rest.get(next..).unwrap_or_default();
    }
    false
}

/// What changes only with an announcement: read on a change, cached in between.
#[derive(Debug, Clone, Default)]
struct Slow {
    addresses: Addresses,
    operstate: String,
    mac: Option<String>,
    mtu: Option<u32>,
    speed: Option<u64>,
}

/// Reports the interfaces; keeps the previous counters for rates.
pub struct NetworkCollector {
    filter: InterfaceFilter,
    watch: Option<ChangeWatch>,
    /// The cached slow fields by interface, and the collect they were read at.
    slow: HashMap<String, Slow>,
    slow_age: u64,
    /// The kernel indexes of the reported interfaces, whose announcements matter.
    indexes: HashSet<u32>,
    proc_root: PathBuf,
    sys_root: PathBuf,
    previous: HashMap<String, Counters>,
    previous_at: Option<Instant>,
}

impl Collector for NetworkCollector {
    const NAME: &'static str = "network";
    const DESCRIPTION: &'static str =
        "Network interfaces: addresses, MAC, state, MTU, speed, traffic totals and rates";
    type Config = Config;
    type Section = NetworkStats;

    /// Under a host root: its `proc` and `sys` (the host's interfaces need `--network=host`,
    /// which also gives getifaddrs(3) the host's addresses).
    fn create(mut config: Config, init: &InitParams) -> Result<Self, Error> {
        config.proc_root = init.host_path(&config.proc_root);
        config.sys_root = init.host_path(&config.sys_root);
        Self::new(config)
    }

    fn new(config: Config) -> Result<Self, Error> {
        Ok(Self {
            filter: InterfaceFilter::from_config(&config)?,
            proc_root: config.proc_root,
            sys_root: config.sys_root,
            previous: HashMap::new(),
            previous_at: None,
            watch: ChangeWatch::open(),
            slow: HashMap::new(),
            slow_age: u64::MAX,
            indexes: HashSet::new(),
        })
    }

    fn collect(&mut self) -> Result<NetworkStats, Error> {
        let path = self.proc_root.join("net/dev");
        let text = std::fs::read_to_string(&path)
            .map_err(|e| Error::unavailable(format!("cannot read {}: {e}", path.display())))?;
        let now = Instant::now();
        let counters = parse_net_dev(&text);
        let seconds = self
            .previous_at
            .map(|t| now.duration_since(t).as_secs_f64())
            .unwrap_or(0.0);
        let kept: Vec<&String> = counters.keys().filter(|n| self.filter.keeps(n)).collect();
        // Addresses, state, MTU and speed: read again on an announced change, a new or gone
        // interface, without a watch, or every REFRESH_EVERY collects.
        let announced = self.watch.as_ref().is_none_or(|w| w.changed(&self.indexes));
        let same_set =
            kept.len() == self.slow.len() && kept.iter().all(|n| self.slow.contains_key(*n));
        self.slow_age = self.slow_age.saturating_add(1);
        if announced || !same_set || self.slow_age >= REFRESH_EVERY {
            let mut addresses = read_addresses()?;
            self.slow = kept
                .iter()
                .map(|name| {
                    let dir = self.sys_root.join("class/net").join(name);
                    let addresses = addresses.remove(*name).unwrap_or_default();
                    let slow = Slow {
                        operstate: read_attr(&dir, "operstate")
                            .unwrap_or_else(|| "unknown".to_owned()),
                        mac: addresses
                            .mac
                            .clone()
                            .or_else(|| read_attr(&dir, "address").and_then(|a| parse_mac(&a))),
                        mtu: read_attr(&dir, "mtu").and_then(|m| m.parse().ok()),
                        speed: read_attr(&dir, "speed").and_then(|s| parse_speed_mbps(&s)),
                        addresses,
                    };
                    ((*name).clone(), slow)
                })
                .collect();
            self.indexes = kept
                .iter()
                .filter_map(|n| nix::net::if_::if_nametoindex(n.as_str()).ok())
                .collect();
            self.slow_age = 0;
        }

        let mut interfaces = Vec::new();
        let mut current = HashMap::new();
        for (name, c) in counters.iter().filter(|(n, _)| self.filter.keeps(n)) {
            let slow = self.slow.get(name).cloned().unwrap_or_default();
            let (addr, operstate) = (slow.addresses, slow.operstate);
            // Drivers that do not report a state (tun, some virtual NICs) say `unknown`;
            // the interface flags tell whether it carries traffic.
            let up = operstate == "up" || (operstate == "unknown" && addr.up_and_running);
            let mac = slow.mac;
            let before = self.previous.get(name.as_str());
            let r = |now: u64, pick: fn(&Counters) -> u64| {
                before.and_then(|b| rate(now, pick(b), seconds))
            };
            interfaces.push(InterfaceInfo {
                name: name.clone(),
                mac_address: mac,
                ipv4: addr.ipv4,
                ipv6: addr.ipv6,
                operstate,
                up,
                mtu_bytes: slow.mtu,
                speed_bits_per_second: slow.speed,
                rx_bytes_total: c.rx_bytes,
                tx_bytes_total: c.tx_bytes,
                rx_packets_total: c.rx_packets,
                tx_packets_total: c.tx_packets,
                rx_errors_total: c.rx_errors,
                tx_errors_total: c.tx_errors,
                rx_dropped_total: c.rx_dropped,
                tx_dropped_total: c.tx_dropped,
                rx_bytes_per_second: r(c.rx_bytes, |b| b.rx_bytes),
                tx_bytes_per_second: r(c.tx_bytes, |b| b.tx_bytes),
                rx_packets_per_second: r(c.rx_packets, |b| b.rx_packets),
                tx_packets_per_second: r(c.tx_packets, |b| b.tx_packets),
            });
            current.insert(name.clone(), *c);
        }
        self.previous = current;
        self.previous_at = Some(now);
        Ok(NetworkStats { interfaces })
    }

    fn series() -> Vec<Series> {
        vec![
            Series::new(
                "rx_bytes_per_second",
                "/interfaces/*/rx_bytes_per_second",
                "bytes_per_second",
            )
            .labelled_by("name"),
            Series::new(
                "tx_bytes_per_second",
                "/interfaces/*/tx_bytes_per_second",
                "bytes_per_second",
            )
            .labelled_by("name"),
        ]
    }
}

/// Parses a sysfs `address` (`52:54:00:12:34:56`); None for an all-zero or non-Ethernet address.
pub fn parse_mac(text: &str) -> Option<String> {
    let parts: Vec<u8> = text
        .trim()
        .split(':')
        .map(|p| u8::from_str_radix(p, 16))
        .collect::<Result<_, _>>()
        .ok()?;
    format_mac(parts.try_into().ok()?)
}

export_collector!(NetworkCollector);

#[cfg(test)]
mod tests {
    use super::*;

    const FIXTURE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures");

    fn names(config: &Config, candidates: &[&str]) -> Vec<String> {
        let filter = InterfaceFilter::from_config(config).expect("filter");
        candidates
            .iter()
            .filter(|n| filter.keeps(n))
            .map(|n| (*n).to_owned())
            .collect()
    }

    const ALL: &[&str] = &[
        "lo",
        "enp3s0",
        "wlp2s0",
        "docker0",
        "veth1a2b3c",
        "br-0f1e2d3c4b5a",
        "virbr0",
        "bond0",
        "wg0",
    ];

    /// A proc and sys tree copied from the fixtures, so a test can change counters between collects.
    fn fixture_tree() -> (tempfile::TempDir, Config) {
        let dir = tempfile::tempdir().expect("tempdir");
        let proc_net = dir.path().join("proc/net");
        std::fs::create_dir_all(&proc_net).expect("mkdir");
        std::fs::copy(format!("{FIXTURE}/proc/net/dev"), proc_net.join("dev")).expect("copy");
        let config = Config {
            proc_root: dir.path().join("proc"),
            sys_root: PathBuf::from(format!("{FIXTURE}/sys")),
            ..Config::default()
        };
        (dir, config)
    }

    /// Guards the plugin contract: default config, unknown keys refused, collect never panics.
    #[test]
    fn honours_the_plugin_contract() {
        let report = vitals_plugin_api::testing::assert_contract::<NetworkCollector>();
        let section: NetworkStats =
            serde_json::from_value(report.last_section().expect("a section").clone())
                .expect("NetworkStats");
        assert!(section.interfaces.iter().all(|i| i.name != "lo"));
    }

    /// Guards the /proc/net/dev parser: every counter in place, a name touching its first
    /// counter, headers and malformed lines skipped.
    #[test]
    fn parses_net_dev_fixture() {
        let text = std::fs::read_to_string(format!("{FIXTURE}/proc/net/dev")).expect("fixture");
        let parsed = parse_net_dev(&text);
        assert_eq!(parsed.len(), 8, "{parsed:?}");
        assert_eq!(
            parsed["enp3s0"],
            Counters {
                rx_bytes: 7_295_927_412,
                rx_packets: 5_969_123,
                rx_errors: 2,
                rx_dropped: 17,
                tx_bytes: 245_524_987,
                tx_packets: 2_149_001,
                tx_errors: 1,
                tx_dropped: 4,
            }
        );
        assert_eq!(parsed["bond0"].rx_bytes, 99_999_999_999_999);
        assert!(parse_net_dev("").is_empty());
        assert!(parse_net_dev("eth0: 1 2 x 4 5 6 7 8 9 10 11 12 13 14 15 16").is_empty());
    }

    /// Guards the default filter: loopback, docker, veth, br-, virbr are left out; physical
    /// and bonded links stay.
    #[test]
    fn default_filter_keeps_physical_interfaces() {
        assert_eq!(
            names(&Config::default(), ALL),
            vec!["enp3s0", "wlp2s0", "bond0", "wg0"]
        );
    }

    /// Guards the operator's patterns: include re-admits, exclude drops, exclusion wins.
    #[test]
    fn include_and_exclude_patterns_apply() {
        let config = Config {
            include_interfaces: vec!["docker0".into(), "veth*".into()],
            exclude_interfaces: vec!["wg*".into(), "veth*".into()],
            ..Config::default()
        };
        assert_eq!(
            names(&config, ALL),
            vec!["enp3s0", "wlp2s0", "docker0", "bond0"]
        );
        let err = NetworkCollector::new(Config {
            include_interfaces: vec!["eth[".into()],
            ..Config::default()
        })
        .err()
        .expect("refused");
        assert!(
            matches!(&err, Error::InvalidConfig(m) if m.contains("include_interfaces") && m.contains("eth[")),
            "{err}"
        );
    }

    /// Guards the small parsers: MAC text, speed in Mbit/s.
    #[test]
    fn parses_mac_and_speed() {
        assert_eq!(
            parse_mac("52:54:00:12:34:56\n").as_deref(),
            Some("52:54:00:12:34:56")
        );
        assert_eq!(parse_mac("00:00:00:00:00:00"), None);
        assert_eq!(parse_mac("80:00:02:08:fe:80:00:00"), None, "not Ethernet");
        assert_eq!(parse_mac("zz:54:00:12:34:56"), None);
        assert_eq!(parse_speed_mbps("1000\n"), Some(1_000_000_000));
        assert_eq!(parse_speed_mbps("-1"), None);
        assert_eq!(parse_speed_mbps("0"), None);
        assert_eq!(parse_speed_mbps(""), None);
    }

    /// Guards the speed parser against a value whose bits per second overflow 64 bits (a
    /// panic found by the property tests).
    #[test]
    fn an_overflowing_speed_is_no_speed() {
        assert_eq!(parse_speed_mbps("20000000000000"), None);
        assert_eq!(parse_speed_mbps("9223372036854775807"), None);
        assert_eq!(
            parse_speed_mbps("18446744073709"),
            Some(18_446_744_073_709_000_000)
        );
    }

    /// Guards the host-root path: `proc` and `sys` are read under the root.
    #[test]
    fn reads_interfaces_under_a_host_root() {
        let root = tempfile::tempdir().expect("tempdir");
        let proc_net = root.path().join("proc/net");
        std::fs::create_dir_all(&proc_net).expect("mkdir");
        std::fs::copy(format!("{FIXTURE}/proc/net/dev"), proc_net.join("dev")).expect("copy");
        std::os::unix::fs::symlink(format!("{FIXTURE}/sys"), root.path().join("sys"))
            .expect("link sys");
        let mut init = InitParams::new("network", serde_json::json!({}));
        init.host_root = Some(root.path().to_owned());
        let mut c = NetworkCollector::create(Config::default(), &init).expect("create");
        let s = c.collect().expect("collect");
        let names: Vec<&str> = s.interfaces.iter().map(|i| i.name.as_str()).collect();
        assert_eq!(names, vec!["bond0", "enp3s0", "wlp2s0"]);
        assert_eq!(s.interfaces[1].mtu_bytes, Some(1500));
    }

    /// Guards a collect from fixture trees: sysfs state, MTU, speed and MAC, totals, and
    /// rates from deltas (none after a counter reset).
    #[test]
    fn collects_interfaces_and_rates_from_fixture_trees() {
        let (dir, config) = fixture_tree();
        let mut c = NetworkCollector::new(config).expect("new");
        let first = c.collect().expect("collect");
        let names: Vec<&str> = first.interfaces.iter().map(|i| i.name.as_str()).collect();
        assert_eq!(names, vec!["bond0", "enp3s0", "wlp2s0"]);
        let enp = &first.interfaces[1];
        assert_eq!(enp.operstate, "up");
        assert!(enp.up);
        assert_eq!(enp.mtu_bytes, Some(1500));
        assert_eq!(enp.speed_bits_per_second, Some(1_000_000_000));
        assert_eq!(enp.mac_address.as_deref(), Some("52:54:00:12:34:56"));
        assert_eq!(enp.rx_bytes_total, 7_295_927_412);
        assert_eq!(enp.tx_dropped_total, 4);
        assert_eq!(
            enp.rx_bytes_per_second, None,
            "no rate on the first collect"
        );
        let wl = &first.interfaces[2];
        assert_eq!((wl.operstate.as_str(), wl.up), ("dormant", false));
        assert_eq!(wl.speed_bits_per_second, None, "speed -1 is unknown");
        let bond = &first.interfaces[0];
        assert_eq!(bond.mac_address, None, "all-zero MAC");
        assert_eq!(bond.speed_bits_per_second, None, "no speed file");
        assert_eq!(bond.mtu_bytes, Some(9000));

        let dev = dir.path().join("proc/net/dev");
        let text = std::fs::read_to_string(&dev).expect("read");
        let grown = text
            .replace("7295927412 5969123", "7295937412 5969143")
            .replace("245524987  2149001", "245529987  2149011")
            .replace("bond0:99999999999999", "bond0:5");
        std::fs::write(&dev, grown).expect("write");
        std::thread::sleep(std::time::Duration::from_millis(20));
        let second = c.collect().expect("collect");
        let enp = &second.interfaces[1];
        let rx = enp.rx_bytes_per_second.expect("rx rate");
        let tx = enp.tx_bytes_per_second.expect("tx rate");
        assert!((rx / tx - 2.0).abs() < 1e-9, "{rx} / {tx}");
        let rx_p = enp.rx_packets_per_second.expect("rx packets rate");
        let tx_p = enp.tx_packets_per_second.expect("tx packets rate");
        assert!((rx_p / tx_p - 2.0).abs() < 1e-9, "{rx_p} / {tx_p}");
        assert_eq!(enp.rx_errors_total, 2);
        let bond = &second.interfaces[0];
        assert_eq!(
            bond.rx_bytes_per_second, None,
            "counter reset gives no rate"
        );
        assert_eq!(bond.tx_bytes_per_second, Some(0.0));
    }

    /// Guards the cache of the slow fields: an interface that appears in `/proc/net/dev`
    /// is read at once, and a change nobody announced is read within REFRESH_EVERY collects.
    #[test]
    fn slow_fields_are_read_again_on_a_new_interface_and_by_age() {
        let (dir, mut config) = fixture_tree();
        let sys = dir.path().join("sys/class/net");
        for name in ["bond0", "enp3s0", "wlp2s0"] {
            let from = Path::new(FIXTURE).join("sys/class/net").join(name);
            std::fs::create_dir_all(sys.join(name)).expect("mkdir");
            for f in std::fs::read_dir(&from).expect("fixture") {
                let f = f.expect("entry");
                std::fs::copy(f.path(), sys.join(name).join(f.file_name())).expect("copy");
            }
        }
        config.sys_root = dir.path().join("sys");
        let mut c = NetworkCollector::new(config).expect("new");
        let mtu = |s: &NetworkStats, n: &str| {
            s.interfaces
                .iter()
                .find(|i| i.name == n)
                .and_then(|i| i.mtu_bytes)
        };
        assert_eq!(mtu(&c.collect().expect("collect"), "enp3s0"), Some(1500));

        // Unannounced (a file tree sends no netlink message): read again by age.
        std::fs::write(sys.join("enp3s0/mtu"), "9000\n").expect("write");
        c.slow_age = REFRESH_EVERY - 1;
        assert_eq!(mtu(&c.collect().expect("collect"), "enp3s0"), Some(9000));

        // A new interface: everything is read again at once.
        std::fs::write(sys.join("enp3s0/mtu"), "4000\n").expect("write");
        let dev = dir.path().join("proc/net/dev");
        let text = std::fs::read_to_string(&dev).expect("read");
        let line = text
            .lines()
            .find(|l| l.contains("enp3s0:"))
            .expect("enp3s0 line");
        std::fs::write(
            &dev,
            format!("{text}{}\n", line.replace("enp3s0:", "enp9s0:")),
        )
        .expect("write");
        let s = c.collect().expect("collect");
        assert_eq!(mtu(&s, "enp3s0"), Some(4000));
        assert!(s.interfaces.iter().any(|i| i.name == "enp9s0"), "{s:?}");
    }

    /// Guards the announcement filter: a link message about a watched index counts, one
    /// about another interface does not, and a malformed datagram counts as a change.
    #[test]
    fn announcements_of_other_interfaces_are_dropped() {
        let message = |kind: u16, index: u32| {
            let mut m = Vec::new();
            m.extend_from_slice(&32u32.to_ne_bytes());
            m.extend_from_slice(&kind.to_ne_bytes());
            m.extend_from_slice(&[0u8; 10]);
            m.extend_from_slice(&[0u8; 4]);
            m.extend_from_slice(&index.to_ne_bytes());
            m.extend_from_slice(&[0u8; 8]);
            m
        };
        let watched: HashSet<u32> = [2].into();
        assert!(announces_one_of(&message(libc::RTM_NEWLINK, 2), &watched));
        assert!(announces_one_of(&message(libc::RTM_NEWADDR, 2), &watched));
        assert!(!announces_one_of(&message(libc::RTM_NEWLINK, 57), &watched));
        let mut two = message(libc::RTM_NEWLINK, 57);
        two.extend(message(libc::RTM_DELADDR, 2));
        assert!(announces_one_of(&two, &watched));
        let mut short = message(libc::RTM_NEWLINK, 57);
        short[0] = 200; // longer than the datagram
        assert!(announces_one_of(&short, &watched));
    }

    /// Guards getifaddrs on this machine: loopback has 127.0.0.1/8 and no MAC.
    #[test]
    fn reads_loopback_addresses() {
        let all = read_addresses().expect("getifaddrs");
        let lo = all.get("lo").expect("lo");
        assert!(lo.ipv4.contains(&"127.0.0.1/8".to_owned()), "{lo:?}");
        assert_eq!(lo.mac, None);
    }

    /// Guards the proc root: a missing /proc/net/dev is "unavailable", not a panic.
    #[test]
    fn a_missing_net_dev_is_unavailable() {
        let mut c = NetworkCollector::new(Config {
            proc_root: PathBuf::from("/nonexistent"),
            ..Config::default()
        })
        .expect("new");
        let err = c.collect().expect_err("error");
        assert!(
            matches!(&err, Error::Unavailable(m) if m.contains("/nonexistent/net/dev")),
            "{err}"
        );
    }
}

#[cfg(test)]
mod proptests {
    use super::*;
    use proptest::prelude::*;

    /// One `/proc/net/dev` line as the kernel formats it (`dev_seq_printf_stats`).
    fn kernel_line(name: &str, f: &[u64; 16]) -> String {
        format!(
            "{name:>6}:{:8} {:7} {:4} {:4} {:4} {:5} {:10} {:9} {:8} {:7} {:4} {:4} {:4} {:5} {:7} {:10}",
            f[0], f[1], f[2], f[3], f[4], f[5], f[6], f[7], f[8], f[9], f[10], f[11], f[12], f[13], f[14], f[15]
        )
    }

    proptest! {
        /// Guards that no text panics the /proc/net/dev parser.
        #[test]
        fn arbitrary_text_never_panics(text in "\\PC{0,400}") {
            let _ = parse_net_dev(&text);
        }

        /// Guards that lines of a name and any count of numbers never panic, and only lines
        /// with all 16 counters are kept.
        #[test]
        fn any_counter_count_never_panics(
            name in "[a-z0-9]{1,8}",
            counters in prop::collection::vec("[0-9]{1,21}|-1|x", 0..20),
        ) {
            let parsed = parse_net_dev(&format!("{name}: {}", counters.join(" ")));
            prop_assert!(parsed.is_empty() || counters.len() >= 16);
        }

        /// Guards the round trip: generated interfaces, printed as the kernel prints them
        /// under its two header lines (a long counter touching the colon included), parse
        /// back to their counters.
        #[test]
        fn kernel_formatted_table_round_trips(
            interfaces in prop::collection::btree_map("[a-z][a-z0-9._-]{0,14}", any::<[u64; 16]>(), 0..8),
        ) {
            let mut text = "Inter-|   Receive                                                |  Transmit\n \
                face |bytes    packets errs drop fifo frame compressed multicast|bytes    packets errs drop fifo colls carrier compressed\n".to_owned();
            for (name, f) in &interfaces {
                text.push_str(&kernel_line(name, f));
                text.push('\n');
            }
            let parsed = parse_net_dev(&text);
            let want: BTreeMap<String, Counters> = interfaces
                .iter()
                .map(|(name, f)| {
                    let c = Counters {
                        rx_bytes: f[0],
                        rx_packets: f[1],
                        rx_errors: f[2],
                        rx_dropped: f[3],
                        tx_bytes: f[8],
                        tx_packets: f[9],
                        tx_errors: f[10],
                        tx_dropped: f[11],
                    };
                    (name.clone(), c)
                })
                .collect();
            prop_assert_eq!(parsed, want, "{}", text);
        }

        /// Guards the sysfs speed parser: no text panics it, and a positive Mbit/s value
        /// comes back in bits per second.
        #[test]
        fn speed_never_panics_and_round_trips(text in "\\PC{0,24}|-?[0-9]{1,20}", mbps in 1u64..=400_000) {
            if let Some(bps) = parse_speed_mbps(&text) {
                prop_assert!(bps >= 1_000_000);
            }
            prop_assert_eq!(parse_speed_mbps(&format!("{mbps}\n")), Some(mbps * 1_000_000));
        }

        /// Guards the sysfs MAC parser: no text panics it, and six generated bytes round-trip.
        #[test]
        fn mac_never_panics_and_round_trips(text in "\\PC{0,30}|([0-9a-fA-F]{1,3}:){0,8}[0-9a-f]{0,2}", bytes in any::<[u8; 6]>()) {
            let _ = parse_mac(&text);
            let printed = bytes.iter().map(|b| format!("{b:02x}")).collect::<Vec<_>>().join(":");
            let want = (bytes != [0; 6]).then(|| printed.clone());
            prop_assert_eq!(parse_mac(&format!("{printed}\n")), want);
        }

        /// Guards the netlink reader: any datagram (declared lengths that lie included) is
        /// read without a panic.
        #[test]
        fn any_netlink_datagram_never_panics(
            datagram in prop::collection::vec(any::<u8>(), 0..256),
            watched in prop::collection::hash_set(any::<u32>(), 0..4),
        ) {
            let _ = announces_one_of(&datagram, &watched);
        }
    }
}
