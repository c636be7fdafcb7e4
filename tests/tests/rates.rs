//! End to end: per-second rates against known transfers (bytes written to a fresh loop-device file system, bytes sent over a veth pair the test makes) and the IPv6 addresses of that veth.

use std::io::Write;
use std::net::UdpSocket;
use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::Value;
use vitals_e2e::block::BlockMount;
use vitals_e2e::Host;

/// Runs `ip` with `args`; the error text when it fails.
fn ip(args: &[&str]) -> Result<String, String> {
    let out = Command::new("ip")
        .args(args)
        .output()
        .map_err(|e| format!("cannot run `ip` (iproute2): {e}"))?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(format!(
            "`ip {}` failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

/// A veth pair: `outer` in this network namespace, its peer in a namespace of its own, each
/// with a private address; traffic between them never leaves the machine. Removed on drop.
struct Veth {
    /// The end in this namespace, which the host's network collector sees.
    outer: String,
    namespace: String,
    /// The outer end's IPv4 address.
    outer_v4: String,
    /// The peer's IPv4 address.
    peer_v4: String,
    /// The outer end's unique-local IPv6 address with its prefix.
    outer_v6: String,
}

impl Veth {
    /// Makes the pair; `tag` keeps two tests of one run apart. Err says why it cannot be made.
    fn make(tag: u8) -> Result<Veth, String> {
        let pid = std::process::id();
        // A /30 in the benchmarking range 198.18.0.0/15 (RFC 2544), never routed anywhere.
        let (a, b) = ((pid % 250) as u8, tag.wrapping_mul(4));
        let veth = Veth {
            outer: format!("vt{}{tag}o", pid % 100_000),
            namespace: format!("vitals-e2e-{pid}-{tag}"),
            outer_v4: format!("198.18.{a}.{}", b + 1),
            peer_v4: format!("198.18.{a}.{}", b + 2),
            outer_v6: format!("fd76:6974:616c:{a:x}{tag:02x}::1/64"),
        };
        let peer = format!("vt{}{tag}p", pid % 100_000);
        ip(&["netns", "add", &veth.namespace])?;
        // From here on the drop cleans up, even when a step below fails.
        ip(&[
            "link",
            "add",
            &veth.outer,
            "type",
            "veth",
            "peer",
            "name",
            &peer,
            "netns",
            &veth.namespace,
        ])?;
        ip(&[
            "addr",
            "add",
            &format!("{}/30", veth.outer_v4),
            "dev",
            &veth.outer,
        ])?;
        ip(&[
            "-6",
            "addr",
            "add",
            &veth.outer_v6,
            "dev",
            &veth.outer,
            "nodad",
        ])?;
        ip(&["link", "set", &veth.outer, "up"])?;
        let ns = veth.namespace.clone();
        ip(&[
            "-n",
            &ns,
            "addr",
            "add",
            &format!("{}/30", veth.peer_v4),
            "dev",
            &peer,
        ])?;
        ip(&["-n", &ns, "link", "set", &peer, "up"])?;
        ip(&["-n", &ns, "link", "set", "lo", "up"])?;
        Ok(veth)
    }

    /// Makes the pair, or records a skip (a failure under CI) and gives `None`.
    fn make_or_skip(tag: u8) -> Option<Veth> {
        match Veth::make(tag) {
            Ok(v) => Some(v),
            Err(why) => {
                vitals_e2e::skip(&format!(
                    "cannot make a veth pair in a network namespace (root and iproute2 are needed): {why}"
                ));
                None
            }
        }
    }
}

impl Drop for Veth {
    fn drop(&mut self) {
        // Deleting one end deletes both; the namespace goes with its last interface.
        let _ = ip(&["link", "del", &self.outer]);
        let _ = ip(&["netns", "del", &self.namespace]);
    }
}

/// The points `[unix_ms, value]` of the series `name` labelled `label` in the history of `collector`.
fn series(host: &Host, collector: &str, name: &str, label: &str) -> Vec<(u64, f64)> {
    let h = host.get_ok(&format!("/admin/monitor/history?collector={collector}"));
    h[collector]
        .as_array()
        .into_iter()
        .flatten()
        .find(|s| s["name"] == name && s["label"] == label)
        .and_then(|s| s["points"].as_array())
        .into_iter()
        .flatten()
        .filter_map(|p| Some((p[0].as_u64()?, p[1].as_f64()?)))
        .collect()
}

/// The bytes a per-second rate series adds up to after `since` (Unix ms): each point's rate
/// covers the time since the point before it.
fn bytes_after(points: &[(u64, f64)], since: u64) -> f64 {
    points
        .windows(2)
        .filter(|w| w[0].0 >= since)
        .map(|w| w[1].1 * (w[1].0 - w[0].0) as f64 / 1000.0)
        .sum()
}

/// Waits until the series has at least `n` points after `since`; returns them all.
fn points_after(host: &Host, what: (&str, &str, &str), since: u64, n: usize) -> Vec<(u64, f64)> {
    let start = Instant::now();
    loop {
        let points = series(host, what.0, what.1, what.2);
        if points.iter().filter(|p| p.0 > since).count() >= n {
            return points;
        }
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "fewer than {n} points of {what:?} after {since} within 60 s: {points:?}\nhost log:\n{}",
            host.log()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// The time stamp of the newest point of a series, waiting for the series to have one.
fn newest_point(host: &Host, what: (&str, &str, &str)) -> u64 {
    points_after(host, what, 0, 1)
        .last()
        .map(|p| p.0)
        .expect("a point")
}

/// Guards the network rates against a known transfer: 8 MiB of UDP sent from the outer end
/// of a veth pair to its peer (in a namespace the test made) adds up, over the collects of
/// `tx_bytes_per_second`, to the bytes that went out on the wire.
///
/// Tolerance: the sum of rate × interval over the history equals the counter's change
/// except where the plugin's clock and the history's time stamps differ (the stamp is taken
/// when the host records the collect, a few ms after the plugin's own clock, more when a
/// loaded machine delays that thread), plus a few hundred bytes of ARP and IPv6 neighbour
/// discovery. Measured: ratio 1.000-1.001 over three runs. -20 % / +25 % leaves room for
/// 100 ms of skew on the one or two 500 ms collects that carry the transfer, while a rate off
/// by a unit (bits, per-interval instead of per-second: ×8, ×0.5) or read from the wrong
/// counter (rx for tx, another interface: ~0) misses by far.
#[test]
fn the_network_rate_adds_up_to_the_bytes_sent_over_a_veth() {
    let Some(veth) = Veth::make_or_skip(1) else {
        return;
    };
    let host = Host::start(&format!(
        "[collectors.network]\ninterval = \"500ms\"\n\n[collectors.network.config]\ninclude_interfaces = [{:?}]\n",
        veth.outer
    ));
    let what = ("network", "tx_bytes_per_second", veth.outer.as_str());
    let since = newest_point(&host, what);

    let socket = UdpSocket::bind((veth.outer_v4.as_str(), 0)).expect("bind the outer end");
    let payload = [0x5au8; 1400];
    let datagrams = (8 << 20) / payload.len();
    for i in 0..datagrams {
        socket
            .send_to(&payload, (veth.peer_v4.as_str(), 9))
            .expect("send");
        // Paced so the peer's backlog never overflows (a drop is not counted as sent).
        if i % 32 == 31 {
            std::thread::sleep(Duration::from_millis(1));
        }
    }
    // Each datagram on the wire: payload, UDP and IPv4 headers, Ethernet header.
    let sent = (datagrams * (payload.len() + 8 + 20 + 14)) as f64;
    let sent_at = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_millis() as u64;
    let points = points_after(&host, what, sent_at, 3);
    let counted = bytes_after(&points, since);
    let ratio = counted / sent;
    eprintln!(
        "network: tx rates add up to {counted:.0} bytes for {sent:.0} sent (ratio {ratio:.3})"
    );
    assert!(
        (0.8..=1.25).contains(&ratio),
        "tx rates add up to {counted:.0} bytes for {sent:.0} sent (ratio {ratio:.3}); points: {points:?}\n`ip -s link`: {}",
        ip(&["-s", "link", "show", "dev", &veth.outer]).unwrap_or_default()
    );
    let peak = points.iter().map(|p| p.1).fold(0.0, f64::max);
    assert!(peak > 0.0, "{points:?}");
}

/// Guards IPv6 in the network section: the veth's unique-local address and its link-local
/// one are listed with their prefix lengths, exactly as iproute2 lists them.
#[test]
fn ipv6_addresses_are_listed_with_their_prefixes() {
    let Some(veth) = Veth::make_or_skip(2) else {
        return;
    };
    let host = Host::start(&format!(
        "[collectors.network]\ninterval = \"300ms\"\n\n[collectors.network.config]\ninclude_interfaces = [{:?}]\n",
        veth.outer
    ));
    let want = || -> Vec<String> {
        let text = ip(&["-j", "-6", "addr", "show", "dev", &veth.outer]).expect("ip addr");
        let json: Value = serde_json::from_str(&text).expect("ip -j");
        let mut v: Vec<String> = json[0]["addr_info"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|a| a["family"] == "inet6")
            .map(|a| {
                format!(
                    "{}/{}",
                    a["local"].as_str().unwrap_or_default(),
                    a["prefixlen"]
                )
            })
            .collect();
        v.sort();
        v
    };
    let got = |s: &Value| -> Option<Vec<String>> {
        let iface = s["sections"]["network"]["interfaces"]
            .as_array()?
            .iter()
            .find(|i| i["name"] == veth.outer.as_str())?;
        let mut v: Vec<String> = iface["ipv6"]
            .as_array()?
            .iter()
            .filter_map(|a| a.as_str().map(str::to_owned))
            .collect();
        v.sort();
        Some(v)
    };
    // The link-local address appears once the link is up; wait until both are there.
    let snap = host.wait_for(
        "the veth with its unique-local and link-local IPv6 addresses",
        Duration::from_secs(30),
        |s| {
            got(s).is_some_and(|v| {
                v.contains(&veth.outer_v6)
                    && v.iter().any(|a| a.starts_with("fe80:"))
                    && v == want()
            })
        },
    );
    let listed = got(&snap).expect("listed");
    assert!(listed.contains(&veth.outer_v6), "{listed:?}");
    assert!(
        listed
            .iter()
            .any(|a| a.starts_with("fe80:") && a.ends_with("/64")),
        "{listed:?}"
    );
    let iface = snap["sections"]["network"]["interfaces"]
        .as_array()
        .and_then(|l| l.iter().find(|i| i["name"] == veth.outer.as_str()))
        .expect("interface");
    assert_eq!(
        iface["ipv4"],
        serde_json::json!([format!("{}/30", veth.outer_v4)]),
        "{iface}"
    );
}

/// The loop device's written sectors (from `/sys/block/<dev>/stat`), to see it go quiet.
fn sectors_written(device: &str) -> u64 {
    let name = device.trim_start_matches("/dev/");
    std::fs::read_to_string(format!("/sys/block/{name}/stat"))
        .ok()
        .and_then(|s| s.split_whitespace().nth(6).and_then(|v| v.parse().ok()))
        .unwrap_or(0)
}

/// Guards the disk rates against a known transfer: 24 MiB written and fsynced to a fresh ext4
/// file system on a loop device (nothing else writes there) add up, over the collects of
/// `write_bytes_per_second`, to what was written.
///
/// Tolerance: the sum of rate × interval is the device's counter change (see the network
/// test for the clock skew); ext4 adds its journal and metadata writes for the new file, a few
/// hundred KB. Measured: ratio 0.999-1.000 over three runs. -20 % / +30 % covers both, and
/// still catches a wrong unit (sectors for bytes: ~0.002) or a wrong counter (reads, another
/// device).
#[test]
fn the_disk_write_rate_adds_up_to_the_bytes_written() {
    let mount = match BlockMount::make() {
        Ok(m) => m,
        Err(why) => {
            vitals_e2e::skip(&format!(
                "cannot make a loop-device file system to write a known amount to: {why}"
            ));
            return;
        }
    };
    // The kernel initialises a fresh ext4's inode tables and journal in the background:
    // wait until the device has been quiet for two seconds (a liveness bound of 60 s).
    let start = Instant::now();
    let (mut last, mut quiet_since) = (sectors_written(&mount.device), Instant::now());
    while quiet_since.elapsed() < Duration::from_secs(2) {
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "{} kept writing for 60 s after mkfs",
            mount.device
        );
        std::thread::sleep(Duration::from_millis(200));
        let now = sectors_written(&mount.device);
        if now != last {
            (last, quiet_since) = (now, Instant::now());
        }
    }
    let point = mount.mount_point.display().to_string();
    let host = Host::start(&format!(
        "[collectors.disk]\ninterval = \"500ms\"\n\n[collectors.disk.config]\ninclude_mount_points = [{point:?}]\n"
    ));
    let what = ("disk", "write_bytes_per_second", point.as_str());
    let since = newest_point(&host, what);

    let size: usize = 24 << 20;
    let mut file = std::fs::File::create(mount.mount_point.join("known")).expect("create");
    let block = vec![0xa5u8; 1 << 20];
    for _ in 0..size / block.len() {
        file.write_all(&block).expect("write");
    }
    file.sync_all().expect("fsync");
    drop(file);
    let written_at = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_millis() as u64;
    let points = points_after(&host, what, written_at, 3);
    let counted = bytes_after(&points, since);
    let ratio = counted / size as f64;
    eprintln!(
        "disk: write rates add up to {counted:.0} bytes for {size} written (ratio {ratio:.3})"
    );
    assert!(
        (0.8..=1.3).contains(&ratio),
        "write rates of {point} add up to {counted:.0} bytes for {size} written (ratio {ratio:.3}); points: {points:?}"
    );
    let snap = host.get_ok("/admin/monitor/system");
    let disk = snap["sections"]["disk"]["disks"]
        .as_array()
        .and_then(|l| l.iter().find(|d| d["mount_point"] == point.as_str()))
        .cloned()
        .unwrap_or(Value::Null);
    assert_eq!(disk["device"], mount.device.as_str(), "{disk}");
}
