//! A mounted file system on a real block device (one the kernel counts I/O for), found in util-linux's `findmnt` or made on a loop device.

use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;

/// A mounted file system whose device has I/O counters (`/sys/dev/block/MAJ:MIN`), so the
/// disk collector can give it read and write rates. One this value mounted itself is
/// unmounted (and its loop device freed) when dropped.
pub struct BlockMount {
    /// Where it is mounted.
    pub mount_point: PathBuf,
    /// The mount source as `findmnt -v` gives it, e.g. `/dev/vda` or `/dev/loop3`.
    pub device: String,
    /// The file system type, e.g. `ext4`.
    pub fs_type: String,
    made: Option<tempfile::TempDir>,
}

/// One row of `findmnt -J -l -v -o TARGET,SOURCE,FSTYPE,MAJ:MIN`.
fn mounts() -> Result<Vec<(String, String, String, String)>, String> {
    let out = Command::new("findmnt")
        .args(["-J", "-l", "-v", "-o", "TARGET,SOURCE,FSTYPE,MAJ:MIN"])
        .output()
        .map_err(|e| format!("cannot run findmnt (util-linux): {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "findmnt failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    let json: Value =
        serde_json::from_slice(&out.stdout).map_err(|e| format!("findmnt gave no JSON: {e}"))?;
    let text = |v: &Value| v.as_str().unwrap_or_default().to_owned();
    Ok(json["filesystems"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|m| {
            (
                text(&m["target"]),
                text(&m["source"]),
                text(&m["fstype"]),
                text(&m["maj:min"]),
            )
        })
        .collect())
}

/// True when `maj:min` is a block device with I/O counters.
fn is_block_device(maj_min: &str) -> bool {
    !maj_min.is_empty() && Path::new("/sys/dev/block").join(maj_min).exists()
}

impl BlockMount {
    /// `/` when it is on a block device, else another mounted folder that is, else an ext4 file
    /// system this call makes on a loop device (needs root or passwordless sudo).
    ///
    /// # Errors
    /// Why none could be found or made.
    pub fn find_or_make() -> Result<BlockMount, String> {
        if let Some(found) = Self::find()? {
            return Ok(found);
        }
        Self::make().map_err(|e| {
            format!("no mounted file system here is on a block device, and none can be made: {e}")
        })
    }

    /// `/` when it is on a block device, else the mounted folder on one with the shortest path.
    ///
    /// # Errors
    /// When `findmnt` cannot be run.
    pub fn find() -> Result<Option<BlockMount>, String> {
        let mut candidates: Vec<_> = mounts()?
            .into_iter()
            .filter(|(target, _, _, maj_min)| {
                is_block_device(maj_min) && Path::new(target).is_dir()
            })
            .collect();
        candidates.sort_by_key(|(target, ..)| (target != "/", target.len()));
        Ok(candidates
            .into_iter()
            .next()
            .map(|(target, device, fs_type, _)| BlockMount {
                mount_point: PathBuf::from(target),
                device,
                fs_type,
                made: None,
            }))
    }

    /// Makes a 64 MiB ext4 file system in a file and mounts it through a loop device on a fresh
    /// folder, as root (directly, or through `sudo -n`).
    ///
    /// # Errors
    /// Why it could not: no `mkfs.ext4`, no root, no loop device (an unprivileged container).
    pub fn make() -> Result<BlockMount, String> {
        let dir = tempfile::tempdir().map_err(|e| format!("tempdir: {e}"))?;
        let image = dir.path().join("fs.img");
        let point = dir.path().join("mnt");
        std::fs::create_dir(&point).map_err(|e| format!("mkdir: {e}"))?;
        std::fs::File::create(&image)
            .and_then(|f| f.set_len(64 << 20))
            .map_err(|e| format!("image file: {e}"))?;
        let image_arg = image.display().to_string();
        let point_arg = point.display().to_string();
        run(&["mkfs.ext4", "-q", "-F", &image_arg], false)?;
        run(&["mount", "-o", "loop", &image_arg, &point_arg], true)?;
        // From here on the value unmounts on drop, even when a check below fails.
        let mut made = BlockMount {
            mount_point: point.clone(),
            device: String::new(),
            fs_type: String::new(),
            made: Some(dir),
        };
        let row = mounts()?
            .into_iter()
            .find(|(target, ..)| Path::new(target) == point)
            .ok_or_else(|| format!("{point_arg} is not in findmnt's list after mounting it"))?;
        if !is_block_device(&row.3) {
            return Err(format!(
                "{point_arg} is mounted from {} ({}), which has no I/O counters",
                row.1, row.3
            ));
        }
        made.device = row.1;
        made.fs_type = row.2;
        Ok(made)
    }

    /// True when this value mounted the file system itself (on a loop device).
    pub fn is_made(&self) -> bool {
        self.made.is_some()
    }
}

impl Drop for BlockMount {
    fn drop(&mut self) {
        if self.made.is_some() {
            // `mount -o loop` set the loop device to detach itself on unmount.
            let _ = run(&["umount", &self.mount_point.display().to_string()], true);
        }
    }
}

/// True when this process runs as root (effective uid 0, from /proc).
fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("Uid:"))
                .and_then(|ids| ids.split_whitespace().nth(1).map(|e| e == "0"))
        })
        .unwrap_or(false)
}

/// Runs `cmd` (as root when `root`: directly when we are, else through `sudo -n`).
fn run(cmd: &[&str], root: bool) -> Result<(), String> {
    let mut c = if root && !is_root() {
        let mut c = Command::new("sudo");
        c.arg("-n").arg(cmd[0]);
        c
    } else {
        Command::new(cmd[0])
    };
    let out = c
        .args(&cmd[1..])
        .output()
        .map_err(|e| format!("cannot run {}: {e}", cmd[0]))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "`{}` failed{}: {}",
            cmd.join(" "),
            if root && !is_root() {
                " (through sudo -n)"
            } else {
                ""
            },
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Guards the loop-device fallback: the made file system is a block device the kernel
    /// counts I/O for (a `/proc/diskstats` line), and it is gone after the drop.
    #[test]
    fn a_made_file_system_is_on_a_counted_block_device_and_goes_away() {
        let made = match BlockMount::make() {
            Ok(m) => m,
            Err(why) => {
                crate::skip(&format!("cannot make a loop-device file system: {why}"));
                return;
            }
        };
        assert!(made.is_made());
        assert_eq!(made.fs_type, "ext4");
        let name = made.device.trim_start_matches("/dev/").to_owned();
        let diskstats = std::fs::read_to_string("/proc/diskstats").expect("diskstats");
        assert!(
            diskstats
                .lines()
                .any(|l| l.split_whitespace().nth(2) == Some(name.as_str())),
            "{name} has no /proc/diskstats line"
        );
        let point = made.mount_point.clone();
        drop(made);
        assert!(
            !mounts()
                .expect("findmnt")
                .iter()
                .any(|(target, ..)| Path::new(target) == point),
            "{} is still mounted",
            point.display()
        );
    }

    /// Guards the search: what it finds is a mounted folder on a block device, `/` first.
    #[test]
    fn a_found_mount_is_a_block_device() {
        let Some(found) = BlockMount::find().expect("findmnt") else {
            crate::skip("no mounted folder here is on a block device");
            return;
        };
        assert!(!found.is_made());
        let all = mounts().expect("findmnt");
        let row = all
            .iter()
            .find(|(target, ..)| Path::new(target) == found.mount_point)
            .expect("listed");
        assert!(is_block_device(&row.3), "{row:?}");
        let root_is_block = all
            .iter()
            .any(|(t, _, _, mm)| t == "/" && is_block_device(mm));
        assert_eq!(found.mount_point == Path::new("/"), root_is_block);
    }
}
