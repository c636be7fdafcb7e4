//! The `network` section: network interfaces with addresses, state, totals and rates (from the network collector).

use serde::{Deserialize, Serialize};

/// The `network` section.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NetworkStats {
    /// One entry per reported interface, sorted by name.
    pub interfaces: Vec<InterfaceInfo>,
}

/// One network interface.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct InterfaceInfo {
    /// The interface name, e.g. `eth0`.
    pub name: String,
    /// The hardware address, e.g. `02:fc:00:00:00:01`, when the interface has one.
    pub mac_address: Option<String>,
    /// IPv4 addresses with prefix length, e.g. `192.0.2.2/24`.
    pub ipv4: Vec<String>,
    /// IPv6 addresses with prefix length, e.g. `fd00::2/64`.
    pub ipv6: Vec<String>,
    /// The kernel's operational state: `up`, `down`, `dormant`, `lowerlayerdown`, `unknown`, …
    pub operstate: String,
    /// True when the operational state is `up`.
    pub up: bool,
    /// Maximum transmission unit, when known.
    pub mtu_bytes: Option<u32>,
    /// Negotiated link speed, when the driver reports one.
    pub speed_bits_per_second: Option<u64>,
    /// Bytes received since the counters started.
    pub rx_bytes_total: u64,
    /// Bytes sent since the counters started.
    pub tx_bytes_total: u64,
    /// Packets received since the counters started.
    pub rx_packets_total: u64,
    /// Packets sent since the counters started.
    pub tx_packets_total: u64,
    /// Receive errors since the counters started.
    pub rx_errors_total: u64,
    /// Transmit errors since the counters started.
    pub tx_errors_total: u64,
    /// Received packets dropped since the counters started.
    pub rx_dropped_total: u64,
    /// Outgoing packets dropped since the counters started.
    pub tx_dropped_total: u64,
    /// Bytes received per second since the previous collect (None on the first collect or
    /// after a counter reset).
    pub rx_bytes_per_second: Option<f64>,
    /// Bytes sent per second since the previous collect.
    pub tx_bytes_per_second: Option<f64>,
    /// Packets received per second since the previous collect.
    pub rx_packets_per_second: Option<f64>,
    /// Packets sent per second since the previous collect.
    pub tx_packets_per_second: Option<f64>,
}
