//! Which mounts are reported: pseudo file systems and snap images are left out, the operator's
//! glob patterns include or exclude, and a device mounted several times is reported once.

use std::collections::HashMap;

use glob::Pattern;
use vitals_plugin_api::prelude::Error;

use crate::{Config, Mount};

/// File system types that hold no storage of their own (kernel views, memory, images, layers).
pub const PSEUDO_FS_TYPES: &[&str] = &[
    "autofs",
    "binfmt_misc",
    "bpf",
    "cgroup",
    "cgroup2",
    "configfs",
    "debugfs",
    "devpts",
    "devtmpfs",
    "efivarfs",
    "fuse.gvfsd-fuse",
    "fuse.lxcfs",
    "fuse.portal",
    "fuse.snapfuse",
    "fusectl",
    "hugetlbfs",
    "mqueue",
    "nsfs",
    "overlay",
    "proc",
    "pstore",
    "ramfs",
    "rpc_pipefs",
    "securityfs",
    "selinuxfs",
    "squashfs",
    "sysfs",
    "tmpfs",
    "tracefs",
];

/// Mount point prefixes of snap packages (each snap is a squashfs image mounted there).
const SNAP_PREFIXES: &[&str] = &["/snap/", "/var/lib/snapd/"];

/// Which mounts are reported: the built-in pseudo file system filter plus the operator's patterns.
#[derive(Debug, Clone, Default)]
pub struct MountFilter {
    include_fs_types: Vec<Pattern>,
    exclude_fs_types: Vec<Pattern>,
    include_mount_points: Vec<Pattern>,
    exclude_mount_points: Vec<Pattern>,
}

fn patterns(key: &str, list: &[String]) -> Result<Vec<Pattern>, Error> {
    list.iter()
        .map(|p| {
            Pattern::new(p)
                .map_err(|e| Error::invalid_config(format!("`{key}`: bad pattern `{p}`: {e}")))
        })
        .collect()
}

impl MountFilter {
    /// The filter for a config; a malformed pattern is an invalid config naming it.
    ///
    /// # Errors
    /// [`Error::InvalidConfig`] naming the key and the bad pattern.
    pub fn from_config(config: &Config) -> Result<Self, Error> {
        Ok(Self {
            include_fs_types: patterns("include_fs_types", &config.include_fs_types)?,
            exclude_fs_types: patterns("exclude_fs_types", &config.exclude_fs_types)?,
            include_mount_points: patterns("include_mount_points", &config.include_mount_points)?,
            exclude_mount_points: patterns("exclude_mount_points", &config.exclude_mount_points)?,
        })
    }

    /// True when the mount is reported: not a pseudo file system or snap image unless
    /// included by pattern, and not excluded by pattern.
    pub fn keeps(&self, mount: &Mount) -> bool {
        let matches =
            |list: &[Pattern], value: &str| list.iter().any(|p: &Pattern| p.matches(value));
        if matches(&self.exclude_fs_types, &mount.fs_type)
            || matches(&self.exclude_mount_points, &mount.mount_point)
        {
            return false;
        }
        let built_in_drop = PSEUDO_FS_TYPES.contains(&mount.fs_type.as_str())
            || SNAP_PREFIXES
                .iter()
                .any(|p| mount.mount_point.starts_with(p));
        !built_in_drop
            || matches(&self.include_fs_types, &mount.fs_type)
            || matches(&self.include_mount_points, &mount.mount_point)
    }
}

/// The mounts to report: filtered, one per device. For a device mounted several times the
/// mount that shows the whole file system (root `/`) is kept, else the first in mount order;
/// the other mount points are returned beside it.
pub fn select_mounts(mounts: &[Mount], filter: &MountFilter) -> Vec<(Mount, Vec<String>)> {
    let mut out: Vec<(Mount, Vec<String>)> = Vec::new();
    let mut by_device: HashMap<(u32, u32), usize> = HashMap::new();
    for mount in mounts.iter().filter(|m| filter.keeps(m)) {
        match by_device.get(&(mount.major, mount.minor)) {
            Some(&i) => {
                let (kept, others) = &mut out[i];
                if kept.root != "/" && mount.root == "/" {
                    let previous = std::mem::replace(kept, mount.clone());
                    others.insert(0, previous.mount_point);
                } else {
                    others.push(mount.mount_point.clone());
                }
            }
            None => {
                by_device.insert((mount.major, mount.minor), out.len());
                out.push((mount.clone(), Vec::new()));
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fixtures;

    fn kept(config: &Config) -> Vec<(String, Vec<String>)> {
        let filter = MountFilter::from_config(config).expect("filter");
        select_mounts(&fixtures::mounts(), &filter)
            .into_iter()
            .map(|(m, others)| (m.mount_point, others))
            .collect()
    }

    fn points(config: &Config) -> Vec<String> {
        kept(config).into_iter().map(|(p, _)| p).collect()
    }

    /// Guards the built-in filter: squashfs, tmpfs, overlay, snap and kernel views are left
    /// out; a device mounted twice is listed once, at its whole-file-system mount point.
    #[test]
    fn filters_pseudo_file_systems_and_merges_double_mounts() {
        assert_eq!(
            kept(&Config::default()),
            vec![
                ("/".to_owned(), vec![]),
                ("/boot/efi".to_owned(), vec![]),
                ("/data".to_owned(), vec!["/srv/web".to_owned()]),
                ("/mnt/my disk".to_owned(), vec!["/mnt/backup".to_owned()]),
                ("/mnt/nfs".to_owned(), vec![]),
                ("/home".to_owned(), vec![]),
            ]
        );
    }

    /// Guards the operator's patterns: include re-admits a pseudo type or mount point,
    /// exclude drops, and exclusion wins.
    #[test]
    fn include_and_exclude_patterns_apply() {
        let with_tmpfs = points(&Config {
            include_fs_types: vec!["tmpfs".into()],
            ..Config::default()
        });
        assert!(with_tmpfs.contains(&"/run".to_owned()), "{with_tmpfs:?}");
        assert!(
            with_tmpfs.contains(&"/dev/shm".to_owned()),
            "{with_tmpfs:?}"
        );

        let shm_only = points(&Config {
            include_mount_points: vec!["/dev/shm".into()],
            ..Config::default()
        });
        assert!(shm_only.contains(&"/dev/shm".to_owned()), "{shm_only:?}");
        assert!(!shm_only.contains(&"/run".to_owned()), "{shm_only:?}");

        let no_mnt = points(&Config {
            exclude_mount_points: vec!["/mnt/*".into()],
            exclude_fs_types: vec!["vfat".into()],
            ..Config::default()
        });
        assert_eq!(no_mnt, vec!["/", "/data", "/home"]);

        let excluded_wins = points(&Config {
            include_fs_types: vec!["tmpfs".into()],
            exclude_mount_points: vec!["/run".into()],
            ..Config::default()
        });
        assert!(!excluded_wins.contains(&"/run".to_owned()));

        // An excluded first mount does not hide the device's other mount point.
        let backup_only = kept(&Config {
            exclude_mount_points: vec!["/mnt/my disk".into()],
            ..Config::default()
        });
        assert!(backup_only.contains(&("/mnt/backup".to_owned(), vec![])));
    }

    /// Guards the pattern check: a malformed pattern names its key and itself.
    #[test]
    fn a_bad_pattern_names_its_key() {
        let err = MountFilter::from_config(&Config {
            include_fs_types: vec!["ext[".into()],
            ..Config::default()
        })
        .expect_err("refused");
        assert!(
            matches!(&err, Error::InvalidConfig(m) if m.contains("include_fs_types") && m.contains("ext[")),
            "{err}"
        );
    }
}
