//! What a new config changes, collector by collector: a pure diff of the config in force and the new one.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;

use crate::config::{CollectorConfig, Config, Isolation};
use crate::scheduler::Timing;

/// What makes a running collector's worker obsolete when it changes.
#[derive(Debug, Clone, PartialEq)]
pub struct Fingerprint {
    /// The library found for the collector, or why none was.
    pub library: Result<PathBuf, String>,
    /// The plugin's own table, as JSON.
    pub config: serde_json::Value,
    /// In-process or in a child.
    pub isolation: Isolation,
    /// The child's address-space limit.
    pub memory_limit: Option<u64>,
    /// For a collector with a `command`: the program and how it is run.
    pub exec: Option<Box<crate::worker::exec::ExecSpec>>,
}

/// The settings of `[server]` and `[history]`, which take effect only after a restart.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RestartOnly {
    /// `[server]`.
    Server,
    /// `[history]`.
    History,
}

impl RestartOnly {
    /// The table's name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Server => "server",
            Self::History => "history",
        }
    }
}

/// One step of applying a new config.
#[derive(Debug, Clone, PartialEq)]
pub enum Change {
    /// The collector left the config: stop its worker, if any, and forget it.
    Remove(String),
    /// The collector is disabled: stop its worker, if any, and show it as disabled.
    Disable {
        /// The collector.
        name: String,
        /// Its (unused) timing, shown in its status.
        timing: Timing,
    },
    /// Start the collector's worker, stopping an old one first: it is new, newly enabled,
    /// its worker is not running, or its plugin, library, table, isolation or limit changed.
    Start {
        /// The collector.
        name: String,
        /// What its worker is started with.
        fingerprint: Fingerprint,
    },
    /// Change interval and deadline of a running worker in place.
    Retime {
        /// The collector.
        name: String,
        /// The new timing.
        timing: Timing,
    },
    /// A table that takes effect only after a restart changed.
    NeedsRestart(RestartOnly),
}

/// A collector's timing from its config.
pub fn timing(c: &CollectorConfig) -> Timing {
    Timing {
        interval: c.interval,
        deadline: c.effective_deadline(),
    }
}

/// The changes that take the host from `old` to `new`.
///
/// `running` holds the fingerprint of each collector whose worker runs now; `fingerprint`
/// computes one for a collector of `new` (it resolves the library, which reads the file
/// system, so the caller supplies it). `first` is true for the config the host starts with,
/// whose server and history settings are not changes.
pub fn plan(
    old: &Config,
    new: &Config,
    first: bool,
    running: &BTreeMap<String, Fingerprint>,
    fingerprint: impl Fn(&str, &CollectorConfig) -> Fingerprint,
) -> Vec<Change> {
    let mut changes = Vec::new();
    if !first && old.server != new.server {
        changes.push(Change::NeedsRestart(RestartOnly::Server));
    }
    if !first && old.history != new.history {
        changes.push(Change::NeedsRestart(RestartOnly::History));
    }
    let names: BTreeSet<&String> = old.collectors.keys().chain(new.collectors.keys()).collect();
    for name in names {
        let change = match new.collectors.get(name) {
            None => Change::Remove(name.clone()),
            Some(c) if !c.enabled => Change::Disable {
                name: name.clone(),
                timing: timing(c),
            },
            Some(c) => {
                let fp = fingerprint(name, c);
                if running.get(name) != Some(&fp) {
                    Change::Start {
                        name: name.clone(),
                        fingerprint: fp,
                    }
                } else if old.collectors.get(name).map(timing) != Some(timing(c)) {
                    Change::Retime {
                        name: name.clone(),
                        timing: timing(c),
                    }
                } else {
                    continue;
                }
            }
        };
        changes.push(change);
    }
    changes
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn config(text: &str) -> Config {
        crate::config::parse(
            text,
            std::path::Path::new("test.toml"),
            std::path::Path::new("."),
        )
        .expect("valid config")
    }

    fn fp(name: &str, c: &CollectorConfig) -> Fingerprint {
        Fingerprint {
            library: Ok(PathBuf::from(format!("lib{name}.so"))),
            config: crate::table_to_json(&c.config),
            isolation: c.isolation,
            memory_limit: c.memory_limit.map(|m| m.0),
            exec: None,
        }
    }

    fn running(c: &Config) -> BTreeMap<String, Fingerprint> {
        c.collectors
            .iter()
            .filter(|(_, c)| c.enabled)
            .map(|(n, c)| (n.clone(), fp(n, c)))
            .collect()
    }

    const BASE: &str = r#"
[collectors.cpu]
interval = "5s"
[collectors.memory]
interval = "5s"
"#;

    /// Guards the start-up plan: every enabled collector starts, nothing else happens.
    #[test]
    fn first_config_starts_every_enabled_collector() {
        let new = config(BASE);
        let changes = plan(&config(""), &new, true, &BTreeMap::new(), fp);
        let started: Vec<_> = changes
            .iter()
            .map(|c| match c {
                Change::Start { name, .. } => name.as_str(),
                other => panic!("unexpected {other:?}"),
            })
            .collect();
        assert_eq!(started, ["cpu", "memory"]);
    }

    /// Guards "the others keep running": the same config plans nothing.
    #[test]
    fn same_config_changes_nothing() {
        let c = config(BASE);
        assert_eq!(plan(&c, &c, false, &running(&c), fp), []);
    }

    /// Guards the in-place retime: an interval change touches that collector alone and keeps its worker.
    #[test]
    fn interval_change_retimes_in_place() {
        let old = config(BASE);
        let new = config(&BASE.replacen("interval = \"5s\"", "interval = \"2s\"", 1));
        let changes = plan(&old, &new, false, &running(&old), fp);
        assert_eq!(
            changes,
            [Change::Retime {
                name: "cpu".into(),
                timing: Timing {
                    interval: Duration::from_secs(2),
                    deadline: Duration::from_secs(2)
                }
            }]
        );
    }

    /// Guards restarts: a changed plugin table or isolation restarts the worker.
    #[test]
    fn table_or_isolation_change_restarts_the_worker() {
        let old = config(BASE);
        let new = config(&format!(
            "{BASE}\n[collectors.cpu.config]\ntemperatures = false\n"
        ));
        let changes = plan(&old, &new, false, &running(&old), fp);
        assert!(matches!(&changes[..], [Change::Start { name, .. }] if name == "cpu"));
        let new = config(&BASE.replacen(
            "[collectors.memory]\n",
            "[collectors.memory]\nisolation = \"process\"\n",
            1,
        ));
        let changes = plan(&old, &new, false, &running(&old), fp);
        assert!(matches!(&changes[..], [Change::Start { name, .. }] if name == "memory"));
    }

    /// Guards disable, removal, and the retry of a collector whose worker is not running.
    #[test]
    fn disable_remove_and_retry() {
        let old = config(BASE);
        let new = config("[collectors.cpu]\nenabled = false\n");
        let changes = plan(&old, &new, false, &running(&old), fp);
        assert!(matches!(&changes[0], Change::Disable { name, .. } if name == "cpu"));
        assert_eq!(changes[1], Change::Remove("memory".into()));
        // A collector whose plugin failed to load has no worker: the same config tries again.
        let mut live = running(&old);
        live.remove("memory");
        let changes = plan(&old, &old, false, &live, fp);
        assert!(matches!(&changes[..], [Change::Start { name, .. }] if name == "memory"));
    }

    /// Guards the restart-only tables: reported after start-up, never at it.
    #[test]
    fn server_and_history_need_a_restart() {
        let old = config(BASE);
        let new = config(&format!("[history]\npoints = 10\n{BASE}"));
        let changes = plan(&old, &new, false, &running(&old), fp);
        assert_eq!(changes, [Change::NeedsRestart(RestartOnly::History)]);
        assert_eq!(plan(&old, &new, true, &running(&old), fp), []);
    }
}
