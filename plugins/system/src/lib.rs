//! System info collector: hostname, OS, kernel, architecture, uptime and boot time (sysinfo, uname; under a host root its `/etc` and `/proc`).

use std::path::{Path, PathBuf};

use sysinfo::System;
use vitals_plugin_api::prelude::*;
use vitals_plugin_api::sections::SystemInfo;

/// The `[collectors.system.config]` table (no options yet).
#[derive(Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {}

/// Reads the static facts once and the uptime on every collect.
pub struct SystemCollector {
    info: SystemInfo,
    /// Under a host root: the host's file system, read for its name, OS and uptime.
    root: Option<PathBuf>,
}

/// The value of `key` in os-release(5) text, unquoted.
pub fn os_release_value(text: &str, key: &str) -> Option<String> {
    text.lines().find_map(|line| {
        let value = line.trim().strip_prefix(key)?.strip_prefix('=')?.trim();
        let unquoted = value
            .strip_prefix('"')
            .and_then(|v| v.strip_suffix('"'))
            .or_else(|| value.strip_prefix('\'').and_then(|v| v.strip_suffix('\'')))
            .unwrap_or(value);
        Some(unquoted.replace("\\\"", "\"").replace("\\\\", "\\"))
    })
}

/// The first field of `/proc/uptime`, in whole seconds.
fn read_uptime(root: &Path) -> Option<u64> {
    let text = std::fs::read_to_string(root.join("proc/uptime")).ok()?;
    let seconds: f64 = text.split_whitespace().next()?.parse().ok()?;
    Some(seconds as u64)
}

/// The host name set on the machine under `root` (its `/etc/hostname`).
fn read_hostname(root: &Path) -> Option<String> {
    let text = std::fs::read_to_string(root.join("etc/hostname")).ok()?;
    let name = text.lines().next()?.trim();
    (!name.is_empty()).then(|| name.to_owned())
}

/// The OS facts of the machine under `root`, spelled as sysinfo spells this machine's:
/// `NAME`, `VERSION_ID` and "Linux (NAME VERSION_ID)".
fn read_os(root: &Path, info: &mut SystemInfo) {
    let text = std::fs::read_to_string(root.join("etc/os-release"))
        .or_else(|_| std::fs::read_to_string(root.join("usr/lib/os-release")))
        .unwrap_or_default();
    let name = os_release_value(&text, "NAME");
    let version = os_release_value(&text, "VERSION_ID");
    info.os_long_name = match (&name, &version) {
        (n, Some(v)) => format!("Linux ({} {v})", n.as_deref().unwrap_or("unknown")),
        (Some(n), None) => format!("Linux ({n})"),
        (None, None) => "Linux".to_owned(),
    };
    info.os_name = or_unknown(name);
    info.os_version = or_unknown(version);
}

fn or_unknown(value: Option<String>) -> String {
    value.unwrap_or_else(|| "unknown".to_owned())
}

impl Collector for SystemCollector {
    const NAME: &'static str = "system";
    const DESCRIPTION: &'static str = "Hostname, OS and kernel version, uptime and boot time";
    type Config = Config;
    type Section = SystemInfo;

    fn new(_config: Config) -> Result<Self, Error> {
        Ok(Self {
            info: SystemInfo {
                hostname: or_unknown(System::host_name()),
                os_name: or_unknown(System::name()),
                os_version: or_unknown(System::os_version()),
                os_long_name: or_unknown(System::long_os_version()),
                kernel_version: or_unknown(System::kernel_version()),
                architecture: System::cpu_arch(),
                uptime_seconds: 0,
                boot_time_unix_seconds: System::boot_time(),
            },
            root: None,
        })
    }

    /// Under a host root: the host's `/etc/hostname`, `/etc/os-release` and `/proc/uptime`
    /// (the kernel and architecture are the container's own, which are the host's).
    fn create(config: Config, init: &InitParams) -> Result<Self, Error> {
        let mut collector = Self::new(config)?;
        if let Some(root) = &init.host_root {
            read_os(root, &mut collector.info);
            collector.root = Some(root.clone());
        }
        Ok(collector)
    }

    fn collect(&mut self) -> Result<SystemInfo, Error> {
        // The host name can change at run time; the rest is fixed until reboot.
        if let Some(root) = &self.root {
            if let Some(name) = read_hostname(root) {
                self.info.hostname = name;
            }
            if let Some(up) = read_uptime(root) {
                self.info.uptime_seconds = up;
            }
            return Ok(self.info.clone());
        }
        if let Some(name) = System::host_name() {
            self.info.hostname = name;
        }
        self.info.uptime_seconds = System::uptime();
        Ok(self.info.clone())
    }
}

export_collector!(SystemCollector);

#[cfg(test)]
mod tests {
    use super::*;

    /// Guards the os-release reader: quoted, single-quoted and bare values, escapes, and a
    /// key that is only a prefix of another (`NAME` is not `PRETTY_NAME`).
    #[test]
    fn reads_os_release_values() {
        let text = "PRETTY_NAME=\"Debian GNU/Linux 12 (bookworm)\"\nNAME=\"Debian GNU/Linux\"\nVERSION_ID='12'\nID=debian\nQUOTED=\"a \\\"b\\\"\"\n";
        assert_eq!(
            os_release_value(text, "NAME").as_deref(),
            Some("Debian GNU/Linux")
        );
        assert_eq!(os_release_value(text, "VERSION_ID").as_deref(), Some("12"));
        assert_eq!(os_release_value(text, "ID").as_deref(), Some("debian"));
        assert_eq!(os_release_value(text, "QUOTED").as_deref(), Some("a \"b\""));
        assert_eq!(os_release_value(text, "VERSION"), None);
    }

    /// Guards the host-root path: name, OS and uptime are the root's, not this machine's.
    #[test]
    fn reads_the_machine_under_a_host_root() {
        let root = tempfile::tempdir().expect("tempdir");
        std::fs::create_dir_all(root.path().join("etc")).expect("mkdir");
        std::fs::create_dir_all(root.path().join("proc")).expect("mkdir");
        std::fs::write(root.path().join("etc/hostname"), "far-away-host\n").expect("write");
        std::fs::write(
            root.path().join("etc/os-release"),
            "NAME=\"Fixture OS\"\nVERSION_ID=\"7.1\"\n",
        )
        .expect("write");
        std::fs::write(root.path().join("proc/uptime"), "12345.67 100.0\n").expect("write");
        let mut init = InitParams::new("system", serde_json::json!({}));
        init.host_root = Some(root.path().to_owned());
        let mut c = SystemCollector::create(Config::default(), &init).expect("create");
        let s = c.collect().expect("collect");
        assert_eq!(s.hostname, "far-away-host");
        assert_eq!(
            (s.os_name.as_str(), s.os_version.as_str()),
            ("Fixture OS", "7.1")
        );
        assert_eq!(s.os_long_name, "Linux (Fixture OS 7.1)");
        assert_eq!(s.uptime_seconds, 12345);
    }

    /// Guards the plugin contract and that uptime and boot time agree with the clock.
    #[test]
    fn honours_the_plugin_contract() {
        let report = vitals_plugin_api::testing::assert_contract::<SystemCollector>();
        let s: SystemInfo =
            serde_json::from_value(report.last_section().expect("a section").clone())
                .expect("SystemInfo");
        assert!(!s.hostname.is_empty());
        assert!(s.uptime_seconds > 0);
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .expect("clock")
            .as_secs();
        let drift = (s.boot_time_unix_seconds + s.uptime_seconds).abs_diff(now);
        assert!(drift <= 5, "boot time + uptime is {drift} s off the clock");
    }
}

#[cfg(test)]
mod proptests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        /// Guards that no text or key panics the os-release reader.
        #[test]
        fn arbitrary_text_never_panics(text in "\\PC{0,300}", key in "\\PC{0,10}") {
            let _ = os_release_value(&text, &key);
        }

        /// Guards the round trip: each key's value, unquoted, double-quoted with `\"` and
        /// `\\` escapes, or single-quoted, among the file's other lines.
        #[test]
        fn os_release_round_trips(
            entries in prop::collection::btree_map("[A-Z][A-Z_]{0,15}", ("[a-zA-Z0-9 .()/\"\\\\-]{0,30}", 0usize..3), 1..10),
        ) {
            let mut text = "# os-release(5)\n\n".to_owned();
            for (key, (value, quoting)) in &entries {
                match quoting {
                    0 if !value.contains([' ', '"', '\\']) && !value.is_empty() => text += &format!("{key}={value}\n"),
                    1 if !value.contains(['"', '\\']) => text += &format!("{key}='{value}'\n"),
                    _ => text += &format!("{key}=\"{}\"\n", value.replace('\\', "\\\\").replace('"', "\\\"")),
                }
            }
            for (key, (value, _)) in &entries {
                prop_assert_eq!(os_release_value(&text, key), Some(value.clone()), "{}", text);
            }
        }
    }
}
