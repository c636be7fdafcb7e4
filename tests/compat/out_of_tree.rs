//! Builds crates outside the vitals workspace with cargo, as a third party would; included by the e2e tests.

// Included by several test binaries, each of which uses only part of it.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

/// The repository root.
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("the e2e crate sits in the repository")
        .to_path_buf()
}

/// The target folder every out-of-tree build shares: `target/out-of-tree`.
///
/// A folder of its own, so these builds never put libraries next to the `vitals` binary
/// (where the host looks for plugins) and never wait on the workspace's build lock; shared
/// between them, so abi_stable and serde are compiled once.
pub fn target() -> PathBuf {
    let debug = vitals_e2e::target_dir();
    debug.parent().unwrap_or(&debug).join("out-of-tree")
}

/// Runs `cargo build` on the workspace at `manifest`; panics with cargo's output on failure.
///
/// Returns how long the build took (printed too: it is the cost a plugin build adds to CI).
pub fn cargo_build(manifest: &Path) -> Duration {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned());
    let started = Instant::now();
    let out = Command::new(cargo)
        .arg("build")
        .arg("--manifest-path")
        .arg(manifest)
        .arg("--target-dir")
        .arg(target())
        .env_remove("CARGO_TARGET_DIR")
        .output()
        .expect("run cargo");
    let took = started.elapsed();
    assert!(
        out.status.success(),
        "cargo build --manifest-path {} failed:\n{}",
        manifest.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    println!(
        "built {} in {:.1} s",
        manifest.display(),
        took.as_secs_f64()
    );
    took
}

/// The cdylib of package `package` built by [`cargo_build`].
pub fn cdylib(package: &str) -> PathBuf {
    let lib = target().join("debug").join(format!(
        "lib{}{}",
        package.replace('-', "_"),
        std::env::consts::DLL_SUFFIX
    ));
    assert!(lib.exists(), "{} was not built", lib.display());
    lib
}

/// Writes `text` to `path` unless it already holds it, so cargo sees no change and skips rebuilding.
pub fn write_if_changed(path: &Path, text: &str) {
    if std::fs::read_to_string(path).is_ok_and(|old| old == text) {
        return;
    }
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).expect("create folder");
    }
    std::fs::write(path, text).unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
}

/// Runs `cmd` to completion; returns exit success and stdout followed by stderr.
pub fn run(cmd: &mut Command) -> (bool, String) {
    let out = cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

/// Runs `vitals plugin check` on `lib` with `env`; returns exit success and its output.
pub fn plugin_check(lib: &Path, args: &[&str], env: &[(&str, &str)]) -> (bool, String) {
    run(Command::new(vitals_e2e::vitals_bin())
        .args(["plugin", "check"])
        .arg(lib)
        .args(args)
        .envs(env.iter().copied())
        .env("NO_COLOR", "1"))
}
