//! The host root: where the monitored machine's file system is mounted when vitals runs in a container, checked once at start.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use serde::Serialize;

/// The environment variable that sets the host root (above the config's `host_root`).
pub const ENV: &str = "VITALS_HOST_ROOT";

/// Whose machine the sections describe.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum View {
    /// The machine mounted at the host root (`/proc`, `/sys`, `/etc` read under it).
    Host,
    /// The process's own view: `/` (inside a container, the container's).
    Own,
}

/// The host root in force, reported in `/admin/monitor/system` as `host_root`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct HostRoot {
    /// The root asked for (`--host-root`, `VITALS_HOST_ROOT` or the config's `host_root`).
    pub requested: Option<PathBuf>,
    /// The root the collectors read through; none for the own view.
    pub path: Option<PathBuf>,
    /// Whose machine the sections describe.
    pub view: View,
    /// Why a requested root is not used.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

impl HostRoot {
    /// The own view, with nothing asked for.
    pub fn own() -> Self {
        Self {
            requested: None,
            path: None,
            view: View::Own,
            reason: None,
        }
    }

    /// Checks a requested root: it is used when it holds a mounted `proc` (its `proc/1/stat`
    /// is readable); `/` is the own view; anything else falls back to the own view with the
    /// reason.
    pub fn resolve(requested: Option<&Path>) -> Self {
        let Some(root) = requested.filter(|r| !r.as_os_str().is_empty()) else {
            return Self::own();
        };
        let mut view = Self {
            requested: Some(root.to_owned()),
            ..Self::own()
        };
        if root == Path::new("/") {
            return view;
        }
        let probe = root.join("proc/1/stat");
        match std::fs::metadata(&probe) {
            Ok(_) => {
                view.path = Some(root.to_owned());
                view.view = View::Host;
            }
            Err(e) => {
                view.reason = Some(format!(
                    "{} cannot be read ({e}): the host's file system is not mounted there, \
                     so the sections show this machine's own view (a container's, inside one)",
                    probe.display()
                ));
            }
        }
        view
    }
}

static CURRENT: OnceLock<HostRoot> = OnceLock::new();

/// Sets the host root for the life of the process (the first call wins).
pub fn set(root: HostRoot) {
    if let Some(reason) = &root.reason {
        tracing::warn!("host_root: {reason}");
    } else if let Some(path) = &root.path {
        tracing::info!("host_root: reading the host through {}", path.display());
    }
    let _ = CURRENT.set(root);
}

/// The host root in force (the own view until [`set`] is called).
pub fn current() -> &'static HostRoot {
    CURRENT.get_or_init(HostRoot::own)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Guards the fallback: a root without a mounted proc is refused with the reason, and the
    /// own view is reported; a root holding `proc/1/stat` is used.
    #[test]
    fn a_root_is_used_only_when_its_proc_is_there() {
        let dir = tempfile::tempdir().expect("tempdir");
        let refused = HostRoot::resolve(Some(dir.path()));
        assert_eq!(refused.view, View::Own);
        assert_eq!(refused.path, None);
        assert_eq!(refused.requested.as_deref(), Some(dir.path()));
        assert!(
            refused
                .reason
                .as_deref()
                .is_some_and(|r| r.contains("own view")),
            "{refused:?}"
        );

        std::fs::create_dir_all(dir.path().join("proc/1")).expect("mkdir");
        std::fs::write(dir.path().join("proc/1/stat"), "1 (init) S 0").expect("write");
        let used = HostRoot::resolve(Some(dir.path()));
        assert_eq!(used.view, View::Host);
        assert_eq!(used.path.as_deref(), Some(dir.path()));
        assert_eq!(used.reason, None);

        assert_eq!(HostRoot::resolve(None), HostRoot::own());
        let slash = HostRoot::resolve(Some(Path::new("/")));
        assert_eq!((slash.view, slash.path), (View::Own, None));
    }
}
