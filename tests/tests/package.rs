//! End to end: the Debian package (`scripts/deb.sh`, as `make deb` runs it) built from the debug build, checked with lintian, installed, upgraded and purged with dpkg.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Mutex, OnceLock};
use std::time::Duration;

use serde_json::Value;
use vitals_e2e::{skip, target_dir, tool_or_skip, Host};
use vitals_host::config::SYSTEM_PLUGIN_DIR;

/// The collectors the packaged config enables: every one that ships.
const COLLECTORS: [&str; 8] = [
    "cpu", "memory", "system", "gpu", "disk", "network", "process", "docker",
];
/// The conffile the package installs.
const CONFFILE: &str = "/etc/vitals/vitals.toml";
/// The version of the second build, installed over the first.
const NEWER: &str = "0.1.0+upgrade1";

/// Runs a command to completion: success and its stdout and stderr together.
fn run(cmd: &mut Command) -> (bool, String) {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"));
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

/// True when this process may run dpkg and the packaging tools; otherwise the test is
/// skipped loudly (a failure under CI, where `make test` runs as root with them installed).
#[track_caller]
fn can_package() -> bool {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        skip("the package tests install with dpkg, which needs root");
        return false;
    }
    ["dpkg", "dpkg-deb", "dh", "lintian"]
        .iter()
        .all(|tool| tool_or_skip(tool, "the Debian package"))
}

/// Builds the package of the debug build with `version` into a fresh folder (gzip: faster
/// than xz, and the contents are the same).
fn build_deb(version: &str, out: &Path) -> PathBuf {
    let repo = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let (ok, log) = run(Command::new("bash")
        .arg(repo.join("scripts/deb.sh"))
        .env("VITALS_BUILD_DIR", target_dir())
        .env("VITALS_DEB_DIR", out)
        .env("VITALS_DEB_VERSION", version)
        .env("VITALS_DEB_COMPRESS", "gzip"));
    assert!(ok, "scripts/deb.sh failed:\n{log}");
    let deb = out.join(format!("vitals_{version}_amd64.deb"));
    assert!(deb.exists(), "{} was not made:\n{log}", deb.display());
    deb
}

/// The package of the current build at the Cargo version, made once for every test here.
fn first_deb() -> &'static Path {
    static DEB: OnceLock<(tempfile::TempDir, PathBuf)> = OnceLock::new();
    &DEB.get_or_init(|| {
        let dir = tempfile::tempdir().expect("tempdir");
        let deb = build_deb(env!("CARGO_PKG_VERSION"), dir.path());
        (dir, deb)
    })
    .1
}

/// One dpkg at a time: the tests here share the machine's package database.
fn dpkg_lock() -> std::sync::MutexGuard<'static, ()> {
    static LOCK: Mutex<()> = Mutex::new(());
    LOCK.lock().unwrap_or_else(|p| p.into_inner())
}

/// The processes other than this one that hold a file under `dir` open (a vitals started by
/// hand as root keeps its durable history in /var/lib/vitals too).
fn foreign_users(dir: &Path) -> Vec<u32> {
    let me = std::process::id();
    let Ok(procs) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    procs
        .flatten()
        .filter_map(|p| p.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| *pid != me)
        .filter(|pid| {
            std::fs::read_dir(format!("/proc/{pid}/fd")).is_ok_and(|fds| {
                fds.flatten()
                    .any(|fd| std::fs::read_link(fd.path()).is_ok_and(|t| t.starts_with(dir)))
            })
        })
        .collect()
}

/// Every path under the folders a package can write to, less the package manager's and the
/// container runtime's own state, which other work changes.
fn file_list() -> BTreeSet<PathBuf> {
    const ROOTS: [&str; 6] = ["/etc", "/usr", "/lib", "/var/lib", "/opt", "/srv"];
    const NOISE: [&str; 5] = [
        "/var/lib/dpkg",
        "/var/lib/apt",
        "/var/lib/docker",
        "/var/lib/containerd",
        "/var/lib/ucf",
    ];
    fn walk(dir: &Path, out: &mut BTreeSet<PathBuf>) {
        let Ok(entries) = std::fs::read_dir(dir) else {
            return;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            if NOISE.iter().any(|n| path.starts_with(n)) {
                continue;
            }
            let is_dir = entry.file_type().is_ok_and(|t| t.is_dir());
            out.insert(path.clone());
            if is_dir {
                walk(&path, out);
            }
        }
    }
    let mut out = BTreeSet::new();
    for root in ROOTS {
        // /lib is a link to /usr/lib on a merged-/usr system: walked once, through /usr.
        if Path::new(root).is_symlink() {
            continue;
        }
        walk(Path::new(root), &mut out);
    }
    out
}

/// Purges the package when dropped, so a failed test leaves no package installed.
struct Installed;

impl Drop for Installed {
    fn drop(&mut self) {
        let _ = Command::new("dpkg").args(["--purge", "vitals"]).output();
    }
}

fn dpkg_install(deb: &Path) {
    let (ok, log) = run(Command::new("dpkg")
        .args(["--install", "--force-confdef"])
        .arg(deb)
        .env("DEBIAN_FRONTEND", "noninteractive"));
    assert!(ok, "dpkg --install {} failed:\n{log}", deb.display());
}

fn installed_version() -> String {
    let (ok, out) = run(Command::new("dpkg-query").args(["-W", "-f=${Version}", "vitals"]));
    assert!(ok, "dpkg-query: {out}");
    out.trim().to_owned()
}

/// Starts the installed binary with the installed config on a free port, as the unit does.
fn start_installed() -> Host {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut cmd = Command::new("/usr/bin/vitals");
    cmd.args(["--config", CONFFILE, "--bind", "127.0.0.1:0"])
        .env("VITALS_HISTORY_PATH", "/var/lib/vitals/history.db");
    Host::spawn(cmd, dir)
}

/// Guards the package's form: lintian reports no error (warnings are printed for the reader).
#[test]
fn lintian_finds_no_errors() {
    if !can_package() {
        return;
    }
    let (ok, out) = run(Command::new("lintian")
        .args(["--fail-on", "error", "--display-info"])
        .arg(first_deb()));
    assert!(ok, "lintian found errors:\n{out}");
    assert!(!out.contains("E: "), "lintian found errors:\n{out}");
    eprintln!("lintian:\n{out}");
}

/// Guards the package's life: installed, it places the binary, the plugins (found without
/// configuration), the conffile, the unit (which `systemd-analyze verify` accepts), the man
/// page, the docs and the `vitals` user (in `docker` where that group exists); the installed
/// binary with the installed config serves every collector and the page; a newer build
/// installed over it keeps an edited conffile; a purge leaves no file behind.
#[test]
fn installs_serves_upgrades_and_purges_cleanly() {
    if !can_package() {
        return;
    }
    let _one = dpkg_lock();
    // The two builds overlap: each is mostly single-threaded (strip, compression).
    let newer_dir = tempfile::tempdir().expect("tempdir");
    let (deb, newer) = std::thread::scope(|s| {
        let newer = s.spawn(|| build_deb(NEWER, newer_dir.path()));
        let deb = first_deb().to_owned();
        (deb, newer.join().expect("the newer build panicked"))
    });

    let _ = Command::new("dpkg").args(["--purge", "vitals"]).output();
    // A config of this machine's own would be taken over by the install and removed by the
    // purge: refuse rather than lose it.
    assert!(
        !Path::new("/etc/vitals").exists(),
        "/etc/vitals exists and belongs to no package: move it away before running this test"
    );
    let before = file_list();
    let guard = Installed;

    dpkg_install(&deb);
    assert_eq!(installed_version(), env!("CARGO_PKG_VERSION"));
    for path in [
        "/usr/bin/vitals",
        CONFFILE,
        "/lib/systemd/system/vitals.service",
        "/usr/share/man/man1/vitals.1.gz",
        "/usr/share/doc/vitals/copyright",
        "/usr/share/doc/vitals/README.md.gz",
        "/usr/share/bash-completion/completions/vitals",
        "/var/lib/vitals",
    ] {
        assert!(Path::new(path).exists(), "{path} is not installed");
    }
    for name in COLLECTORS {
        let lib = Path::new(SYSTEM_PLUGIN_DIR).join(format!("libvitals_plugin_{name}.so"));
        assert!(lib.exists(), "{} is not installed", lib.display());
    }
    let (ok, conffiles) = run(Command::new("dpkg-query").args(["-W", "-f=${Conffiles}", "vitals"]));
    assert!(ok && conffiles.contains(CONFFILE), "conffiles: {conffiles}");
    let (ok, user) = run(Command::new("id").arg("vitals"));
    assert!(ok, "no vitals user: {user}");
    if run(Command::new("getent").args(["group", "docker"])).0 {
        assert!(
            user.contains("(docker)"),
            "vitals is not in group docker: {user}"
        );
    }

    if tool_or_skip("systemd-analyze", "the installed unit") {
        let (ok, out) =
            run(Command::new("systemd-analyze")
                .args(["verify", "/lib/systemd/system/vitals.service"]));
        assert!(ok, "systemd-analyze verify failed:\n{out}");
        assert!(
            !out.contains("vitals.service"),
            "systemd-analyze verify warned about the unit:\n{out}"
        );
    }

    serves_every_collector();

    // A local edit of the conffile survives the upgrade.
    let edited = format!(
        "{}\n# edited on this machine\n",
        std::fs::read_to_string(CONFFILE).expect("conffile")
    );
    std::fs::write(CONFFILE, &edited).expect("edit conffile");
    dpkg_install(&newer);
    assert_eq!(installed_version(), NEWER);
    assert_eq!(
        std::fs::read_to_string(CONFFILE).expect("conffile"),
        edited,
        "the upgrade replaced the edited conffile"
    );

    let (ok, out) = run(Command::new("dpkg").args(["--purge", "vitals"]));
    assert!(ok, "dpkg --purge failed:\n{out}");
    drop(guard);
    let after = file_list();
    let mut left: Vec<&PathBuf> = after.difference(&before).collect();
    let state = Path::new("/var/lib/vitals");
    let others = foreign_users(state);
    if !others.is_empty() {
        // Their files come and go under the folder the purge removes: it cannot be judged.
        skip(&format!(
            "processes {others:?} write in {}, so what the purge leaves there is not checked",
            state.display()
        ));
        left.retain(|p| !p.starts_with(state));
    }
    assert!(left.is_empty(), "the purge left these behind: {left:#?}");
}

/// The installed binary with the installed config: every collector reports (ok, or
/// unavailable where its source is absent: no GPU, no Docker daemon), with its library
/// from the system plugin folder, and the page is served.
fn serves_every_collector() {
    let host = start_installed();
    let snapshot = host.wait_for(
        "every collector reported",
        Duration::from_secs(60),
        |s: &Value| {
            COLLECTORS.iter().all(|c| {
                s["collectors"][c]["state"]
                    .as_str()
                    .is_some_and(|st| st != "pending")
            })
        },
    );
    for name in COLLECTORS {
        let state = snapshot["collectors"][name]["state"]
            .as_str()
            .unwrap_or("?");
        assert!(
            state == "ok" || state == "unavailable",
            "{name} is {state}: {}\n{}",
            snapshot["collectors"][name],
            host.log()
        );
    }
    for name in ["cpu", "memory", "system", "disk", "network", "process"] {
        assert!(
            snapshot["sections"][name].is_object(),
            "no {name} section: {snapshot}"
        );
    }
    let log = host.log();
    for name in COLLECTORS {
        let lib = format!("{SYSTEM_PLUGIN_DIR}/libvitals_plugin_{name}.so");
        assert!(
            log.contains(&lib),
            "{name} was not loaded from {lib}:\n{log}"
        );
    }
    let page = vitals_e2e::client()
        .get(format!("{}/admin/monitor/", host.base))
        .send()
        .expect("page");
    assert_eq!(page.status().as_u16(), 200);
    assert!(page.text().expect("page text").contains("<html"));
}
