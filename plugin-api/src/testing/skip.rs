//! Whether tests run under continuous integration, and loud, recorded skips for tests that cannot run on this machine.

use std::ffi::OsStr;
use std::io::Write as _;
use std::path::{Path, PathBuf};

/// The environment variable that names the skip log; without it the log is
/// `test-skips.txt` in the cargo target folder the test binary was built in.
pub const SKIP_LOG_VAR: &str = "VITALS_SKIP_LOG";

/// The skip log's file name inside the cargo target folder.
pub const SKIP_LOG_NAME: &str = "test-skips.txt";

/// True under continuous integration, where every test must run.
///
/// The meaning, the same in every test of the workspace (Rust and the dashboard's
/// JavaScript): the `CI` environment variable is set to a non-empty value other than `0` or
/// `false` (in any case). CI services set `CI=true`.
pub fn in_ci() -> bool {
    ci_value_means_ci(std::env::var_os("CI").as_deref())
}

/// Whether a value of the `CI` variable (`None`: unset) means "under CI".
fn ci_value_means_ci(value: Option<&OsStr>) -> bool {
    match value.map(OsStr::to_string_lossy) {
        None => false,
        Some(v) => {
            let v = v.trim();
            !(v.is_empty() || v == "0" || v.eq_ignore_ascii_case("false"))
        }
    }
}

/// Skips (the rest of) the calling test because `why`; the caller returns right after.
///
/// For a test that needs something the machine may lack (a daemon, a tool, root).
/// Outside CI it appends `<test binary> <test name>: <why> (<file>:<line>)` to the skip log
/// (see [`skip_log`]) and prints the same line to stderr, bypassing the test harness's
/// capture so `cargo test` shows it even for a passing test. A part of a test left out
/// (a "partial skip") is recorded the same way.
///
/// # Panics
/// Under CI (see [`in_ci`]): there a skip is a failure, since CI installs everything.
#[track_caller]
pub fn skip(why: &str) {
    let at = std::panic::Location::caller();
    let test = current_test();
    assert!(
        !in_ci(),
        "{test} cannot run: {why}; under CI (CI={:?}) every test must run",
        std::env::var("CI").unwrap_or_default()
    );
    let line = format!("{test}: {why} ({}:{})", at.file(), at.line());
    let recorded = match skip_log() {
        Some(log) => append_line(&log, &line)
            .map(|()| format!("recorded in {}", log.display()))
            .unwrap_or_else(|e| format!("NOT recorded in {}: {e}", log.display())),
        None => "NOT recorded: no cargo target folder above the test binary".to_owned(),
    };
    // Straight to the stream: `eprintln!` would be captured, and hidden, for a passing test.
    let _ = writeln!(
        std::io::stderr().lock(),
        "\n!!!!!!!! SKIPPED {line}\n!!!!!!!! {recorded}; `make test` fails on a skip unless ALLOW_SKIPS=1\n"
    );
}

/// The skip log: [`SKIP_LOG_VAR`] when set, else [`SKIP_LOG_NAME`] in the cargo target folder
/// (the nearest folder above the test binary holding cargo's `CACHEDIR.TAG`).
pub fn skip_log() -> Option<PathBuf> {
    if let Some(path) = std::env::var_os(SKIP_LOG_VAR).filter(|p| !p.is_empty()) {
        return Some(PathBuf::from(path));
    }
    let exe = std::env::current_exe().ok()?;
    exe.ancestors()
        .skip(1)
        .find(|dir| dir.join("CACHEDIR.TAG").is_file())
        .map(|dir| dir.join(SKIP_LOG_NAME))
}

/// `<test binary> <test name>`: the binary's name without cargo's hash, and the name the test
/// harness gave the test's thread.
fn current_test() -> String {
    let binary = std::env::current_exe()
        .ok()
        .and_then(|exe| exe.file_stem().map(|s| s.to_string_lossy().into_owned()))
        .map(|stem| strip_cargo_hash(&stem).to_owned())
        .unwrap_or_else(|| "?".to_owned());
    let thread = std::thread::current();
    format!("{binary} {}", thread.name().unwrap_or("(unnamed thread)"))
}

/// `faults-0123456789abcdef` -> `faults`.
fn strip_cargo_hash(stem: &str) -> &str {
    match stem.rsplit_once('-') {
        Some((name, hash)) if hash.len() == 16 && hash.bytes().all(|b| b.is_ascii_hexdigit()) => {
            name
        }
        _ => stem,
    }
}

/// Appends one line in a single write, so lines of tests running at once do not interleave.
fn append_line(path: &Path, line: &str) -> std::io::Result<()> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir)?;
    }
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)?;
    let one_line: String = line
        .chars()
        .map(|c| if c == '\n' { ' ' } else { c })
        .collect();
    file.write_all(format!("{one_line}\n").as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Guards the one meaning of "under CI": set, non-empty, and not `0` or `false`.
    #[test]
    fn ci_means_set_and_not_false() {
        for (value, ci) in [
            (None, false),
            (Some(""), false),
            (Some(" "), false),
            (Some("0"), false),
            (Some("false"), false),
            (Some("FALSE"), false),
            (Some("False"), false),
            (Some("true"), true),
            (Some("1"), true),
            (Some("yes"), true),
            (Some("woodpecker"), true),
        ] {
            assert_eq!(ci_value_means_ci(value.map(OsStr::new)), ci, "CI={value:?}");
        }
    }

    /// Guards the test names in the skip log: cargo's hash is dropped, other dashes are kept.
    #[test]
    fn the_cargo_hash_is_dropped_from_the_binary_name() {
        assert_eq!(strip_cargo_hash("faults-0123456789abcdef"), "faults");
        assert_eq!(
            strip_cargo_hash("vitals_plugin_disk-fedcba9876543210"),
            "vitals_plugin_disk"
        );
        assert_eq!(strip_cargo_hash("my-tests"), "my-tests");
        assert_eq!(strip_cargo_hash("x-0123"), "x-0123");
    }

    /// Guards the log format: one line per skip, appended, a newline in a reason flattened.
    #[test]
    fn skips_are_appended_one_per_line() {
        let dir = tempfile_dir();
        let log = dir.join("nested").join(SKIP_LOG_NAME);
        append_line(&log, "a t1: no daemon").expect("append");
        append_line(&log, "a t2: two\nlines").expect("append");
        let text = std::fs::read_to_string(&log).expect("read");
        assert_eq!(text, "a t1: no daemon\na t2: two lines\n");
        let _ = std::fs::remove_dir_all(dir);
    }

    fn tempfile_dir() -> PathBuf {
        let dir = std::env::temp_dir().join(format!(
            "vitals-skip-test-{}-{:?}",
            std::process::id(),
            std::thread::current().id()
        ));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("temp dir");
        dir
    }
}
