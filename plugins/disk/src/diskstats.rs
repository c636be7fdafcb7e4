//! Block device I/O counters from `/proc/diskstats`, matched to mounts by device number or
//! by the kernel name of the mount source, and turned into rates.

use std::collections::HashMap;
use std::path::Path;

/// The kernel counts `/proc/diskstats` sectors in 512-byte units whatever the device's sector size.
const DISKSTATS_SECTOR_BYTES: u64 = 512;

/// I/O counters of one block device from `/proc/diskstats`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DiskIo {
    /// The device's major number.
    pub major: u32,
    /// The device's minor number.
    pub minor: u32,
    /// The kernel's device name, e.g. `sda1`.
    pub name: String,
    /// Bytes read since boot.
    pub read_bytes: u64,
    /// Bytes written since boot.
    pub written_bytes: u64,
}

/// Parses `/proc/diskstats`; malformed lines are skipped.
// procfs-core's `DiskStat::from_line` is not used: it requires all 14 fields of the current
// format and refuses the shorter lines of older kernels (10 or 11 fields), whose read and
// written sectors we still report.
pub fn parse_diskstats(text: &str) -> Vec<DiskIo> {
    text.lines()
        .filter_map(|line| {
            let f: Vec<&str> = line.split_ascii_whitespace().collect();
            // major minor name reads merged sectors_read ms writes merged sectors_written …
            if f.len() < 10 {
                return None;
            }
            Some(DiskIo {
                major: f[0].parse().ok()?,
                minor: f[1].parse().ok()?,
                name: f[2].to_owned(),
                read_bytes: f[5]
                    .parse::<u64>()
                    .ok()?
                    .saturating_mul(DISKSTATS_SECTOR_BYTES),
                written_bytes: f[9]
                    .parse::<u64>()
                    .ok()?
                    .saturating_mul(DISKSTATS_SECTOR_BYTES),
            })
        })
        .collect()
}

/// Reads `proc_root/diskstats`, keyed by device number; empty when it cannot be read.
pub fn read_diskstats(proc_root: &Path) -> HashMap<(u32, u32), DiskIo> {
    // Without diskstats (some containers) the rates are simply absent.
    std::fs::read_to_string(proc_root.join("diskstats"))
        .map(|t| parse_diskstats(&t))
        .unwrap_or_default()
        .into_iter()
        .map(|d| ((d.major, d.minor), d))
        .collect()
}

/// The kernel name of a device path (`/dev/mapper/root` -> `dm-0`), following symlinks.
pub fn kernel_device_name(source: &str) -> Option<String> {
    if !source.starts_with("/dev/") {
        return None;
    }
    let real = std::fs::canonicalize(source).ok()?;
    real.file_name().map(|n| n.to_string_lossy().into_owned())
}

/// Bytes per second between two counter readings `seconds` apart; `None` when the counter
/// went backwards (device re-added) or no time passed.
pub fn rate(now: u64, before: u64, seconds: f64) -> Option<f64> {
    (now >= before && seconds > 0.0).then(|| (now - before) as f64 / seconds)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fixtures;

    /// Guards the diskstats parser: 512-byte sectors, old short lines, garbage skipped.
    #[test]
    fn parses_diskstats_fixture() {
        let io = parse_diskstats(
            &std::fs::read_to_string(format!("{}/diskstats", fixtures::PROC)).expect("fixture"),
        );
        assert_eq!(io.len(), 7);
        let sda2 = io.iter().find(|d| d.name == "sda2").expect("sda2");
        assert_eq!((sda2.major, sda2.minor), (8, 2));
        assert_eq!(sda2.read_bytes, 397_000 * 512);
        assert_eq!(sda2.written_bytes, 79_900 * 512);
        let sdc1 = io.iter().find(|d| d.name == "sdc1").expect("short line");
        assert_eq!(sdc1.read_bytes, 1000 * 512);
    }

    /// Guards the table read: keyed by device number, and empty (not an error) without the file.
    #[test]
    fn reads_diskstats_by_device_number() {
        let io = read_diskstats(Path::new(fixtures::PROC));
        assert_eq!(io.get(&(253, 0)).map(|d| d.name.as_str()), Some("dm-0"));
        assert!(read_diskstats(Path::new("/nonexistent/proc")).is_empty());
    }

    /// Guards device-name matching: only `/dev/` paths, resolved through symlinks.
    #[test]
    fn resolves_kernel_device_names() {
        assert_eq!(kernel_device_name("fileserver:/export"), None);
        assert_eq!(kernel_device_name("/dev/no-such-device-here"), None);
        assert_eq!(kernel_device_name("/dev/null").as_deref(), Some("null"));
    }

    /// Guards rates: bytes per second, none for a counter that went backwards or no time.
    #[test]
    fn rates_need_time_and_growing_counters() {
        assert_eq!(rate(3000, 1000, 2.0), Some(1000.0));
        assert_eq!(rate(1000, 1000, 2.0), Some(0.0));
        assert_eq!(rate(10, 1000, 2.0), None);
        assert_eq!(rate(3000, 1000, 0.0), None);
    }
}

#[cfg(test)]
mod proptests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        /// Guards that no text panics the diskstats parser.
        #[test]
        fn arbitrary_text_never_panics(text in "\\PC{0,400}") {
            let _ = parse_diskstats(&text);
        }

        /// Guards that lines of numbers and words in any count never panic and are kept only
        /// with ten fields or more.
        #[test]
        fn any_field_count_never_panics(fields in prop::collection::vec("[0-9]{1,22}|[a-z0-9]{1,8}", 0..20)) {
            let parsed = parse_diskstats(&fields.join(" "));
            prop_assert!(parsed.len() <= 1);
            prop_assert!(parsed.is_empty() || fields.len() >= 10);
        }

        /// Guards the round trip: a generated line of the current (14+ fields) or an older
        /// (10 or 11 fields) format gives back its device number, name and sectors in bytes.
        #[test]
        fn well_formed_lines_round_trip(
            major in any::<u32>(),
            minor in any::<u32>(),
            name in "[a-z]{2,4}[0-9]{0,3}|dm-[0-9]{1,3}|nvme[0-9]n[0-9]p[0-9]",
            counters in prop::collection::vec(any::<u64>(), 7..18),
            indent in "[ ]{0,4}",
        ) {
            let numbers: Vec<String> = counters.iter().map(u64::to_string).collect();
            let line = format!("{indent}{major:>4} {minor:>7} {name} {}", numbers.join(" "));
            let parsed = parse_diskstats(&format!("{line}\n"));
            prop_assert_eq!(parsed.len(), 1, "{}", line);
            let d = &parsed[0];
            prop_assert_eq!((d.major, d.minor), (major, minor));
            prop_assert_eq!(&d.name, &name);
            prop_assert_eq!(d.read_bytes, counters[2].saturating_mul(DISKSTATS_SECTOR_BYTES));
            prop_assert_eq!(d.written_bytes, counters[6].saturating_mul(DISKSTATS_SECTOR_BYTES));
        }
    }
}
