//! Damaged store files are moved aside; a full or read-only file system pauses writing until it recovers.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use vitals_history::{History, Options, Retention, Selector, SeriesKey, WriteError};

const T0: i64 = 1_800_000_000_000;

fn options() -> Options {
    Options {
        flush_interval: Duration::from_secs(3600),
        seal_samples: 2_000,
        ..Options::default()
    }
}

fn cpu() -> Selector {
    Selector {
        collector: "cpu".into(),
        name: "usage".into(),
        label: None,
    }
}

fn fill(path: &Path, from: i64, n: i64) -> History {
    let mut h = History::open_with(path, Retention::default(), options()).expect("open");
    let key = SeriesKey::new("cpu", "usage", None);
    for i in from..from + n {
        let many: Vec<_> = (0..50)
            .map(|s| {
                (
                    SeriesKey::new("disk", "free", Some(&s.to_string())),
                    i as f64,
                )
            })
            .chain([(key.clone(), i as f64)])
            .collect();
        h.record(T0 + i * 5_000, &many).expect("record");
        if i % 10 == 0 {
            h.flush().expect("flush");
        }
    }
    h.flush().expect("flush");
    h
}

fn count(h: &History, from: i64, to: i64) -> u64 {
    let step = ((to - from) * 5_000 / 1_000 + 1).max(5_000);
    let r = h
        .query(&cpu(), T0 + from * 5_000, T0 + to * 5_000, step)
        .expect("query");
    r.first()
        .map_or(0, |s| s.points.iter().map(|p| p.count).sum())
}

/// Guards recovery from damage: a truncated file, a file with a scribbled page and a file that
/// is not a store at all are each renamed aside with the reason, and a fresh store works.
#[test]
fn damaged_files_are_moved_aside_and_a_fresh_store_starts() {
    type Damage = fn(&Path);
    let damages: [(&str, Damage); 3] = [
        ("truncated", |p| {
            let len = std::fs::metadata(p).unwrap().len();
            let f = std::fs::OpenOptions::new().write(true).open(p).unwrap();
            f.set_len(len / 2).unwrap();
        }),
        ("scribbled", |p| {
            let mut bytes = std::fs::read(p).unwrap();
            let len = bytes.len();
            // A quarter of the file from its first third on: pages in use, not only free ones.
            for b in &mut bytes[len / 3..len / 3 + len / 4] {
                *b ^= 0xa5;
            }
            std::fs::write(p, bytes).unwrap();
        }),
        ("not a store", |p| {
            std::fs::write(p, "plugin_dirs = []\n").unwrap()
        }),
    ];
    for (what, damage) in damages {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("h.sqlite");
        drop(fill(&path, 0, 300));
        damage(&path);
        let mut h = History::open_with(&path, Retention::default(), options())
            .unwrap_or_else(|e| panic!("{what}: {e}"));
        let moved = h
            .recovered()
            .unwrap_or_else(|| panic!("{what}: not detected"))
            .clone();
        eprintln!("{what}: {moved}");
        assert!(moved.moved_to.exists(), "{what}: {moved}");
        assert!(
            moved
                .moved_to
                .to_string_lossy()
                .contains("h.sqlite.corrupt-"),
            "{what}: {moved}"
        );
        assert!(!moved.reason.is_empty());
        h.record(T0, &[(SeriesKey::new("cpu", "usage", None), 1.0)])
            .unwrap();
        h.flush().unwrap();
        assert_eq!(count(&h, 0, 10), 1, "{what}: the fresh store works");
        drop(h);
        let h = History::open_with(&path, Retention::default(), options()).unwrap();
        assert!(
            h.recovered().is_none(),
            "{what}: the fresh store reopens clean"
        );
    }
}

fn sh(args: &[&str]) -> bool {
    Command::new(args[0])
        .args(&args[1..])
        .status()
        .is_ok_and(|s| s.success())
}

/// Guards writing on a full and on a read-only file system (a 3 MiB tmpfs): flushes fail with
/// a pause, nothing panics, the samples stay in memory, and once space or write access returns
/// the next flush writes them all.
#[test]
fn full_and_read_only_file_systems_pause_and_resume() {
    let dir = tempfile::tempdir().unwrap();
    let mnt = dir.path().join("mnt");
    std::fs::create_dir(&mnt).unwrap();
    let m = mnt.to_str().unwrap();
    if !sh(&["mount", "-t", "tmpfs", "-o", "size=3m", "tmpfs", m]) {
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "CI must run this test: it needs root to mount a tmpfs"
        );
        eprintln!(
            "SKIPPED full_and_read_only_file_systems_pause_and_resume: mounting a tmpfs needs root"
        );
        return;
    }
    struct Unmount(String);
    impl Drop for Unmount {
        fn drop(&mut self) {
            sh(&["umount", "-l", &self.0]);
        }
    }
    let _guard = Unmount(m.to_owned());
    let path = mnt.join("h.sqlite");
    let mut h = fill(&path, 0, 100);
    // Fill the file system up.
    let filler = mnt.join("filler");
    let _ = std::fs::write(&filler, vec![0u8; 4 * 1024 * 1024]);
    let key = SeriesKey::new("cpu", "usage", None);
    let mut paused = None;
    for i in 100..2_100 {
        let many: Vec<_> = (0..50)
            .map(|s| {
                (
                    SeriesKey::new("disk", "free", Some(&s.to_string())),
                    i as f64,
                )
            })
            .chain([(key.clone(), i as f64)])
            .collect();
        h.record(T0 + i * 5_000, &many).unwrap();
        if let Err(e) = h.flush() {
            paused = Some(e);
        }
    }
    let Some(WriteError::Unavailable { reason, .. }) = paused else {
        panic!("a full file system never paused writing");
    };
    assert!(h.status().paused.is_some(), "{reason}");
    // Space returns: everything recorded meanwhile (within the bound) is written.
    std::fs::remove_file(&filler).unwrap();
    h.flush().unwrap();
    assert!(h.status().paused.is_none());
    assert_eq!(h.status().pending_samples, 0);
    assert_eq!(count(&h, 0, 2_100), 2_100);
    // Read-only (the store opened on it): the same pause and resume.
    drop(h);
    assert!(sh(&["mount", "-o", "remount,ro", m]));
    let mut h = History::open_with(&path, Retention::default(), options()).unwrap();
    assert!(
        h.status().paused.is_some(),
        "a read-only file system did not pause writing"
    );
    h.record(T0 + 2_100 * 5_000, &[(key.clone(), 1.0)]).unwrap();
    assert!(h.flush().is_err());
    assert!(sh(&["mount", "-o", "remount,rw", m]));
    h.flush().unwrap();
    assert!(h.status().paused.is_none());
    assert_eq!(count(&h, 0, 2_101), 2_101);
    drop(h);
    let h = History::open_with(&path, Retention::default(), options()).unwrap();
    assert!(h.recovered().is_none());
    assert_eq!(count(&h, 0, 2_101), 2_101);
}
