//! End to end: the built host with the built network plugin, compared with iproute2's view of this machine.

use std::process::Command;
use std::time::Duration;

use serde_json::Value;
use vitals_e2e::Host;

fn ip_json(args: &[&str]) -> Value {
    let out = Command::new("ip")
        .arg("-j")
        .args(args)
        .output()
        .expect("ip (iproute2; scripts/test-deps.d installs it)");
    assert!(out.status.success(), "ip {args:?} failed");
    serde_json::from_slice(&out.stdout).expect("ip -j gives JSON")
}

/// The interface that holds the IPv4 default route, when there is one.
fn default_route_interface() -> Option<String> {
    ip_json(&["route", "show", "default"])
        .as_array()?
        .iter()
        .find_map(|r| r["dev"].as_str().map(str::to_owned))
}

/// Guards the network section on this machine: the default-route interface is listed with
/// the IPv4 addresses, MAC, MTU and state iproute2 reports, loopback is not, and rates follow.
#[test]
fn the_default_route_interface_is_listed_with_its_ipv4_and_mac() {
    let Some(dev) = default_route_interface() else {
        vitals_e2e::skip(
            "this machine has no IPv4 default route, so there is no interface to compare",
        );
        return;
    };
    let link = ip_json(&["addr", "show", "dev", &dev]);
    let link = &link[0];
    let want_v4: Vec<String> = link["addr_info"]
        .as_array()
        .expect("addr_info")
        .iter()
        .filter(|a| a["family"] == "inet")
        .map(|a| {
            format!(
                "{}/{}",
                a["local"].as_str().unwrap_or_default(),
                a["prefixlen"]
            )
        })
        .collect();
    assert!(
        !want_v4.is_empty(),
        "{dev} holds the default route but has no IPv4: {link}"
    );

    // The default-route interface may be a bridge or veth the default filter leaves out.
    let host = Host::start(&format!(
        "[collectors.network]\ninterval = \"300ms\"\n[collectors.network.config]\ninclude_interfaces = [{dev:?}]\n"
    ));
    let find = |s: &Value| -> Option<Value> {
        s["sections"]["network"]["interfaces"]
            .as_array()?
            .iter()
            .find(|i| i["name"] == dev.as_str())
            .cloned()
    };
    let snap = host.wait_for(
        "the default-route interface with rates",
        Duration::from_secs(20),
        |s| find(s).is_some_and(|i| i["rx_bytes_per_second"].is_number()),
    );
    let iface = find(&snap).expect("interface");
    let got_v4: Vec<String> = iface["ipv4"]
        .as_array()
        .expect("ipv4")
        .iter()
        .map(|a| a.as_str().unwrap_or_default().to_owned())
        .collect();
    assert_eq!(got_v4, want_v4, "{iface}");
    assert_eq!(iface["mac_address"], link["address"], "{iface}");
    assert_eq!(iface["mtu_bytes"], link["mtu"], "{iface}");
    let operstate = link["operstate"]
        .as_str()
        .unwrap_or_default()
        .to_ascii_lowercase();
    assert_eq!(iface["operstate"], operstate.as_str(), "{iface}");
    assert_eq!(
        iface["up"], true,
        "the default route's interface carries traffic: {iface}"
    );
    assert!(iface["rx_bytes_total"].as_u64().expect("rx") > 0, "{iface}");

    let names: Vec<&str> = snap["sections"]["network"]["interfaces"]
        .as_array()
        .expect("interfaces")
        .iter()
        .filter_map(|i| i["name"].as_str())
        .collect();
    assert!(!names.contains(&"lo"), "{names:?}");
    assert!(
        names
            .iter()
            .all(|n| *n == dev || !(n.starts_with("veth") || n.starts_with("docker"))),
        "{names:?}"
    );
    assert_eq!(snap["collectors"]["network"]["state"], "ok");
}
