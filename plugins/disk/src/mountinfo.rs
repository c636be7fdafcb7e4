//! The mount table from `/proc/self/mountinfo`: its parser (procfs-core's, plus the kernel's
//! octal escapes) and a cache that is read again only when the kernel signals a change.

use std::path::{Path, PathBuf};

use procfs_core::process::MountInfo;
use vitals_plugin_api::prelude::Error;

use crate::filter::{select_mounts, MountFilter};

/// Collects after which the mount table is read again even when no change was signalled.
pub const REFRESH_EVERY: u64 = 60;

/// One line of `/proc/self/mountinfo`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mount {
    /// The device's major number (0 for file systems without a block device).
    pub major: u32,
    /// The device's minor number.
    pub minor: u32,
    /// The folder of the file system that is mounted (`/` for the whole file system).
    pub root: String,
    /// Where it is mounted.
    pub mount_point: String,
    /// The file system type, with the subtype for FUSE (`fuse.sshfs`).
    pub fs_type: String,
    /// The mount source, e.g. `/dev/sda1`.
    pub source: String,
    /// True when mounted read-only.
    pub read_only: bool,
}

/// Undoes the octal escapes (`\040` for a space) the kernel writes in mount table fields.
pub fn unescape_mount_field(field: &str) -> String {
    let bytes = field.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'\\' && i + 3 < bytes.len() {
            let digits = &bytes[i + 1..i + 4];
            if digits.iter().all(|b| (b'0'..=b'7').contains(b)) {
                let value = digits
                    .iter()
                    .fold(0u32, |acc, b| acc * 8 + u32::from(b - b'0'));
                if let Ok(b) = u8::try_from(value) {
                    out.push(b);
                    i += 4;
                    continue;
                }
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Parses `/proc/self/mountinfo`; malformed lines are skipped.
pub fn parse_mountinfo(text: &str) -> Vec<Mount> {
    text.lines().filter_map(parse_mountinfo_line).collect()
}

/// One line through procfs-core's parser. It splits the fields but leaves the kernel's octal
/// escapes in place and the device number as text, so both are finished here; a line it
/// refuses (and `MountInfos`, which fails the whole table on one such line, is not used for
/// that reason) is skipped.
fn parse_mountinfo_line(line: &str) -> Option<Mount> {
    let info = MountInfo::from_line(line).ok()?;
    let (major, minor) = info.majmin.split_once(':')?;
    Some(Mount {
        major: major.parse().ok()?,
        minor: minor.parse().ok()?,
        root: unescape_mount_field(&info.root),
        mount_point: unescape_mount_field(&info.mount_point.to_string_lossy()),
        fs_type: unescape_mount_field(&info.fs_type),
        source: info
            .mount_source
            .as_deref()
            .map_or_else(|| "none".to_owned(), unescape_mount_field),
        read_only: info.mount_options.contains_key("ro"),
    })
}

/// An open `mountinfo`: the kernel marks it with POLLPRI when the mount table changes.
pub(crate) struct MountWatch {
    file: std::fs::File,
}

impl MountWatch {
    /// Opens `path` for watching; `None` when it cannot be opened.
    pub(crate) fn open(path: &Path) -> Option<Self> {
        std::fs::File::open(path).ok().map(|file| Self { file })
    }

    /// True when the mount table changed since the last call (or poll fails).
    pub(crate) fn changed(&self) -> bool {
        let mut fd = libc::pollfd {
            fd: std::os::fd::AsRawFd::as_raw_fd(&self.file),
            events: libc::POLLPRI,
            revents: 0,
        };
        // SAFETY: one valid pollfd, no wait.
        let n = unsafe { libc::poll(&mut fd, 1, 0) };
        n < 0 || fd.revents & (libc::POLLPRI | libc::POLLERR) != 0
    }
}

/// The selected mounts of one `mountinfo`, kept between collects while the kernel signals
/// no change.
pub(crate) struct MountTable {
    path: PathBuf,
    watch: Option<MountWatch>,
    mounts: Option<Vec<(Mount, Vec<String>)>>,
    age: u64,
}

impl MountTable {
    /// The table of `proc_root/self/mountinfo`, not read yet.
    pub(crate) fn new(proc_root: &Path) -> Self {
        Self::of_process(proc_root, "self")
    }

    /// The table of `proc_root/<pid>/mountinfo` (pid `1` under a host root: the host's mounts).
    pub(crate) fn of_process(proc_root: &Path, pid: &str) -> Self {
        Self {
            path: proc_root.join(pid).join("mountinfo"),
            watch: None,
            mounts: None,
            age: 0,
        }
    }

    /// The mounts to report: read from `mountinfo` on a signalled change, on the first
    /// call, or every [`REFRESH_EVERY`] calls; cached in between.
    ///
    /// # Errors
    /// [`Error::Unavailable`] naming the file when it cannot be read.
    pub(crate) fn mounts(
        &mut self,
        filter: &MountFilter,
    ) -> Result<Vec<(Mount, Vec<String>)>, Error> {
        if self.watch.is_none() {
            // Opened before the read, so a change during the read is signalled next time.
            self.watch = MountWatch::open(&self.path);
            self.mounts = None;
        }
        self.age += 1;
        let changed = self.watch.as_ref().is_none_or(MountWatch::changed);
        match &self.mounts {
            Some(m) if !changed && self.age < REFRESH_EVERY => Ok(m.clone()),
            _ => {
                let text = std::fs::read_to_string(&self.path).map_err(|e| {
                    self.watch = None;
                    Error::unavailable(format!("cannot read {}: {e}", self.path.display()))
                })?;
                let mounts = select_mounts(&parse_mountinfo(&text), filter);
                self.mounts = Some(mounts.clone());
                self.age = 0;
                Ok(mounts)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fixtures;

    /// Guards the mountinfo parser: fields, octal escapes, read-only flag, malformed lines skipped.
    #[test]
    fn parses_mountinfo_fixture() {
        let mounts = fixtures::mounts();
        assert_eq!(mounts.len(), 19, "two malformed lines skipped");
        let root = mounts.iter().find(|m| m.mount_point == "/").expect("root");
        assert_eq!(
            root,
            &Mount {
                major: 8,
                minor: 2,
                root: "/".into(),
                mount_point: "/".into(),
                fs_type: "ext4".into(),
                source: "/dev/sda2".into(),
                read_only: false,
            }
        );
        let spaced = mounts
            .iter()
            .find(|m| m.mount_point == "/mnt/my disk")
            .expect("escaped space decoded");
        assert!(spaced.read_only);
        assert_eq!(unescape_mount_field(r"a\011b\134c\0"), "a\tb\\c\\0");
        assert_eq!(unescape_mount_field("é\\04"), "é\\04", "short escape kept");
        assert!(parse_mountinfo("").is_empty());
        assert!(parse_mountinfo("1 2 3 - x").is_empty());
    }

    /// Guards the fields procfs-core leaves to us: escapes in the root, type and source, a
    /// `none` source, optional fields, and `ro` among other options only as a whole word.
    #[test]
    fn finishes_what_procfs_core_leaves_raw() {
        let m = parse_mountinfo(
            "70 28 0:60 /a\\040b /mnt/x\\011y rw,errors=ro,relatime master:3 shared:7 - fuse.my\\040fs my\\134src rw\n\
             71 28 0:61 / /mnt/none ro,nosuid - tmpfs none rw\n",
        );
        assert_eq!(m.len(), 2, "{m:?}");
        assert_eq!(m[0].root, "/a b");
        assert_eq!(m[0].mount_point, "/mnt/x\ty");
        assert_eq!(m[0].fs_type, "fuse.my fs");
        assert_eq!(m[0].source, "my\\src");
        assert!(!m[0].read_only, "errors=ro is not read-only");
        assert_eq!((m[1].source.as_str(), m[1].read_only), ("none", true));
    }

    /// Guards the parser against this machine's own mount table: every line parses, the
    /// root mount among them.
    #[test]
    fn every_line_of_this_machines_table_parses() {
        let text = std::fs::read_to_string("/proc/self/mountinfo").expect("mountinfo");
        let mounts = parse_mountinfo(&text);
        assert_eq!(mounts.len(), text.lines().count(), "{text}");
        assert!(mounts.iter().any(|m| m.mount_point == "/"));
    }

    /// Guards the cache: a second call within the refresh count reuses the selection even when
    /// the file changed without a kernel signal (a plain file signals nothing), and the
    /// `REFRESH_EVERY`th call after a read reads it again.
    #[test]
    fn the_table_is_cached_until_a_change_or_the_refresh() {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::create_dir_all(dir.path().join("self")).expect("mkdir");
        let file = dir.path().join("self/mountinfo");
        std::fs::copy(format!("{}/self/mountinfo", fixtures::PROC), &file).expect("copy");
        let filter = MountFilter::default();
        let mut table = MountTable::new(dir.path());
        let first = table.mounts(&filter).expect("first read");
        assert_eq!(first.len(), 6);
        std::fs::write(&file, "28 1 8:2 / / rw - ext4 /dev/sda2 rw\n").expect("rewrite");
        for _ in 1..REFRESH_EVERY {
            assert_eq!(table.mounts(&filter).expect("cached"), first);
        }
        let fresh = table.mounts(&filter).expect("refreshed");
        assert_eq!(fresh.len(), 1, "{fresh:?}");
    }

    /// Runs `cmd` as root (directly, or through `sudo -n`); false when neither can.
    fn as_root(cmd: &[&str]) -> bool {
        // SAFETY: geteuid has no preconditions.
        let root = unsafe { libc::geteuid() } == 0;
        let mut c = if root {
            std::process::Command::new(cmd[0])
        } else {
            let mut c = std::process::Command::new("sudo");
            c.args(["-n", cmd[0]]);
            c
        };
        c.args(&cmd[1..]).output().is_ok_and(|o| o.status.success())
    }

    /// Guards the mount-table watch: quiet while nothing is mounted, signalled by a mount
    /// and by its unmount, each time once.
    #[test]
    fn a_mount_and_an_unmount_are_signalled() {
        let dir = tempfile::tempdir().expect("tempdir");
        let point = dir.path().to_string_lossy().into_owned();
        let watch = MountWatch::open(Path::new("/proc/self/mountinfo")).expect("open");
        if !as_root(&[
            "mount",
            "-t",
            "tmpfs",
            "-o",
            "size=1m",
            "vitals-test",
            &point,
        ]) {
            vitals_plugin_api::testing::skip(
                "cannot mount a tmpfs (needs root or passwordless sudo)",
            );
            return;
        }
        let mounted = watch.changed();
        let quiet = watch.changed();
        let unmounted = as_root(&["umount", &point]) && watch.changed();
        assert!(mounted, "the mount was not signalled");
        assert!(!quiet, "signalled twice for one mount");
        assert!(unmounted, "the unmount was not signalled");
    }
}

#[cfg(test)]
mod proptests {
    use super::*;
    use proptest::prelude::*;

    /// Escapes a field as the kernel writes it in mountinfo (space, tab, newline, backslash).
    fn escape(field: &str) -> String {
        let mut out = String::new();
        for c in field.chars() {
            match c {
                ' ' => out.push_str("\\040"),
                '\t' => out.push_str("\\011"),
                '\n' => out.push_str("\\012"),
                '\\' => out.push_str("\\134"),
                c => out.push(c),
            }
        }
        out
    }

    /// A path as mount points and roots look, with the characters the kernel escapes.
    fn path() -> impl Strategy<Value = String> {
        "(/[a-zA-Z0-9 \t\n\\\\._é-]{1,12}){0,4}"
            .prop_map(|p| if p.is_empty() { "/".into() } else { p })
    }

    proptest! {
        /// Guards that no text panics the mountinfo parser, and each mount comes from a line.
        #[test]
        fn arbitrary_text_never_panics(text in "\\PC{0,400}") {
            prop_assert!(parse_mountinfo(&text).len() <= text.lines().count());
        }

        /// Guards that lines made of mountinfo-like tokens in any order never panic.
        #[test]
        fn shuffled_tokens_never_panic(tokens in prop::collection::vec(
            "[0-9]{1,12}|[0-9]{1,12}:[0-9]{1,12}|-|/[a-z\\\\0-9]{0,8}|[a-z,=:]{1,12}|\\\\[0-7]{0,4}", 0..16)) {
            let _ = parse_mountinfo(&tokens.join(" "));
        }

        /// Guards that the octal unescape never panics on any text and leaves text without a
        /// backslash unchanged.
        #[test]
        fn unescape_never_panics(field in "\\PC{0,40}") {
            let out = unescape_mount_field(&field);
            if !field.contains('\\') {
                prop_assert_eq!(out, field);
            }
        }

        /// Guards the round trip: a generated line, its fields escaped as the kernel escapes
        /// them and with optional fields, parses back to the same mount.
        #[test]
        fn well_formed_lines_round_trip(
            id in 1u32..100_000,
            parent in 1u32..100_000,
            major in any::<u32>(),
            minor in any::<u32>(),
            root in path(),
            mount_point in path(),
            read_only in any::<bool>(),
            extra_options in "(,[a-z]{2,10}(=[a-z0-9]{1,6})?){0,3}",
            optional in prop::collection::vec("(shared|master|propagate_from):[0-9]{1,4}|unbindable", 0..3),
            fs_type in "[a-z0-9]{2,8}(\\.[a-z ]{1,8})?",
            source in "/dev/[a-z0-9 ]{1,10}|[a-z]{2,8}:/[a-z/ ]{0,10}|[a-z]{1,8}",
        ) {
            let options = format!("{}{extra_options}", if read_only { "ro" } else { "rw" });
            let mut fields = vec![
                id.to_string(),
                parent.to_string(),
                format!("{major}:{minor}"),
                escape(&root),
                escape(&mount_point),
                options,
            ];
            fields.extend(optional);
            fields.extend(["-".to_owned(), escape(&fs_type), escape(&source), "rw".to_owned()]);
            let line = fields.join(" ");
            let mounts = parse_mountinfo(&format!("{line}\n"));
            let want = Mount {
                major,
                minor,
                root,
                mount_point,
                fs_type,
                source,
                read_only,
            };
            prop_assert_eq!(mounts, vec![want], "{}", line);
        }
    }
}
