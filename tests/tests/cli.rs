//! End to end: the `vitals` command itself — SIGINT, where it finds its config and its plugin libraries, and `hash-token --generate`.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use serde_json::Value;
use vitals_e2e::{
    hash_token, plugin_lib, request, run_vitals, target_dir, toml_path, vitals_bin, Host, SseReader,
};

/// The path the host reads its config from when it is given none (documented in the README).
const SYSTEM_CONFIG: &str = "/etc/vitals/vitals.toml";

/// Guards SIGINT (Ctrl-C in a terminal): the host handles it and ends by itself, with exit
/// status 0, while an event stream is open (an unhandled SIGINT would end it by the signal,
/// a stream that never ends would keep it running).
#[test]
fn sigint_shuts_the_host_down_cleanly_with_an_open_stream() {
    let mut host = Host::start("[collectors.memory]\ninterval = \"200ms\"\n");
    let stream = SseReader::open(&host.base, "/admin/monitor/stream", &[]);
    assert!(
        stream.next_data(Duration::from_secs(10)).is_some(),
        "a first snapshot on the stream"
    );
    let sent = Command::new("kill")
        .args(["-INT", &host.pid().to_string()])
        .status()
        .expect("kill");
    assert!(sent.success());
    // Liveness, not speed: a clean shutdown takes milliseconds; 30 s only separates "ends"
    // from "waits forever for the open stream".
    let Some(status) = host.wait_exit(Duration::from_secs(30)) else {
        panic!("still running 30 s after SIGINT; log:\n{}", host.log());
    };
    assert!(
        status.success(),
        "{status} after SIGINT: the signal ended the process instead of a clean shutdown; log:\n{}",
        host.log()
    );
    assert!(host.log().contains("SIGINT received"), "{}", host.log());
}

/// Runs `script` with `sh` in a private mount namespace (mounts made there are invisible to
/// the rest of the machine and vanish with the process), with `args` as `$1…`; the script
/// ends by exec'ing the host, whose "listening on" line [`Host::spawn`] waits for. `None`
/// after a recorded skip when this machine does not let the test make mount namespaces.
fn host_in_private_mounts(script: &str, args: &[&Path]) -> Option<Host> {
    let dir = tempfile::tempdir().expect("tempdir");
    let probe = Command::new("unshare")
        .args(["--mount", "--propagation", "private", "sh", "-c"])
        .arg("mount -t tmpfs tmpfs \"$1\"")
        .arg("sh")
        .arg(dir.path())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .output();
    match probe {
        Ok(out) if out.status.success() => {}
        Ok(out) => {
            vitals_e2e::skip(&format!(
                "cannot mount in a private mount namespace (root and util-linux `unshare` are needed): {}",
                String::from_utf8_lossy(&out.stderr).trim()
            ));
            return None;
        }
        Err(e) => {
            vitals_e2e::skip(&format!("cannot run util-linux `unshare`: {e}"));
            return None;
        }
    }
    let mut cmd = Command::new("unshare");
    cmd.args([
        "--mount",
        "--propagation",
        "private",
        "sh",
        "-c",
        script,
        "sh",
    ])
    .args(args)
    .env_remove("VITALS_CONFIG")
    .env("VITALS_LOG", "info");
    Some(Host::spawn(cmd, dir))
}

/// The collector names a host serves, from `/admin/monitor/collectors`.
fn collector_names(host: &Host) -> Vec<String> {
    let mut names: Vec<String> = host.get_ok("/admin/monitor/collectors")["collectors"]
        .as_array()
        .expect("collectors")
        .iter()
        .filter_map(|c| c["name"].as_str().map(str::to_owned))
        .collect();
    names.sort();
    names
}

/// Guards the default config path: without `--config` the host reads
/// `/etc/vitals/vitals.toml` and serves exactly the collectors that file declares.
///
/// The file is put there in a private mount namespace (an overlay over `/etc` that only the
/// host under test sees), so the machine's own `/etc` is never written.
#[test]
fn without_config_the_host_reads_etc_vitals() {
    let config_dir = tempfile::tempdir().expect("tempdir");
    let config = config_dir.path().join("vitals.toml");
    std::fs::write(
        &config,
        format!(
            "[collectors.memory]\ninterval = \"200ms\"\n\n[collectors.from_etc]\nlibrary = {}\ninterval = \"200ms\"\n",
            toml_path(&plugin_lib("fault"))
        ),
    )
    .expect("write");
    let scratch = tempfile::tempdir().expect("tempdir");
    let script = r#"set -e
mount -t tmpfs tmpfs "$1"
mkdir -p "$1/upper/vitals" "$1/work"
cp "$2" "$1/upper/vitals/vitals.toml"
mount -t overlay overlay -o "lowerdir=/etc,upperdir=$1/upper,workdir=$1/work" /etc
exec "$3" --bind 127.0.0.1:0"#;
    let bin = vitals_bin();
    let Some(host) = host_in_private_mounts(script, &[scratch.path(), &config, &bin]) else {
        return;
    };
    assert!(
        host.log().contains(&format!("config: {SYSTEM_CONFIG}")),
        "{}",
        host.log()
    );
    assert_eq!(collector_names(&host), ["from_etc", "memory"]);
    host.wait_for("both collectors ok", Duration::from_secs(20), |s| {
        s["collectors"]["from_etc"]["state"] == "ok" && s["collectors"]["memory"]["state"] == "ok"
    });
    assert!(
        !Path::new(SYSTEM_CONFIG).exists()
            || std::fs::read_to_string(SYSTEM_CONFIG).is_ok_and(|t| !t.contains("from_etc")),
        "the machine's own {SYSTEM_CONFIG} was not touched"
    );
}

/// The collectors `vitals plugins` lists for a config (the lines of configured collectors).
fn configured_collectors(out: &str) -> Vec<String> {
    let mut names: Vec<String> = out
        .lines()
        .skip(1)
        .filter_map(|l| l.split_whitespace().next())
        .filter(|n| *n != "-")
        .map(str::to_owned)
        .collect();
    names.sort();
    names
}

/// Guards the fallback: without `--config` and without `/etc/vitals/vitals.toml` the host runs
/// the built-in default, which declares the same collectors as `config/vitals.toml`.
#[test]
fn without_config_or_etc_file_the_host_runs_the_built_in_default() {
    // In the private namespace an empty tmpfs hides whatever this machine has at /etc/vitals.
    let script = r#"set -e
if [ -e /etc/vitals ]; then mount -t tmpfs tmpfs /etc/vitals; fi
exec "$1" --bind 127.0.0.1:0"#;
    let bin = vitals_bin();
    let Some(host) = host_in_private_mounts(script, &[&bin]) else {
        return;
    };
    assert!(
        host.log().contains("config: the built-in default"),
        "{}",
        host.log()
    );
    let shipped = concat!(env!("CARGO_MANIFEST_DIR"), "/../config/vitals.toml");
    let (ok, out, err) = run_vitals(&["plugins", "--config", shipped]);
    assert!(ok, "{out}{err}");
    let want = configured_collectors(&out);
    assert!(want.len() >= 8, "{out}");
    assert_eq!(collector_names(&host), want);
    host.wait_for("memory collected", Duration::from_secs(20), |s| {
        s["collectors"]["memory"]["state"] == "ok"
    });
}

/// The library `vitals plugins --config <config>` resolves for `collector`.
fn resolved_library(config: &Path, collector: &str) -> PathBuf {
    let (ok, out, err) = run_vitals(&["plugins", "--config", config.to_str().expect("utf-8")]);
    assert!(ok, "{out}{err}");
    let line = out
        .lines()
        .find(|l| l.split_whitespace().next() == Some(collector))
        .unwrap_or_else(|| panic!("{collector} not listed:\n{out}"));
    let path = line
        .split_whitespace()
        .find(|w| w.starts_with('/'))
        .unwrap_or_else(|| panic!("no library path in `{line}`"));
    canonical(Path::new(path))
}

fn canonical(p: &Path) -> PathBuf {
    p.canonicalize()
        .unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

/// Guards the search order of a library named without a `/`: the config file's folder, then
/// each of `plugin_dirs` in the order given (relative to the config file), then the folder of
/// the `vitals` binary; and the running host loads the one `vitals plugins` names.
#[test]
fn a_library_is_searched_in_the_config_folder_then_plugin_dirs_in_order_then_beside_the_binary() {
    let dir = tempfile::tempdir().expect("tempdir");
    let conf = dir.path();
    for d in ["first", "second"] {
        std::fs::create_dir(conf.join(d)).expect("mkdir");
    }
    let config = conf.join("vitals.toml");
    std::fs::write(
        &config,
        "plugin_dirs = [\"first\", \"second\"]\n\n[collectors.memory]\ninterval = \"200ms\"\n",
    )
    .expect("write");
    let built = plugin_lib("memory");
    let name = built.file_name().expect("file name").to_owned();

    assert_eq!(
        resolved_library(&config, "memory"),
        canonical(&target_dir().join(&name)),
        "found in no folder of the config: beside the binary"
    );
    let mut expect = Vec::new();
    for folder in [conf.join("second"), conf.join("first"), conf.to_path_buf()] {
        std::fs::copy(&built, folder.join(&name)).expect("copy plugin");
        let got = resolved_library(&config, "memory");
        assert_eq!(got, canonical(&folder.join(&name)));
        expect.push(got);
    }
    assert_eq!(
        expect,
        [
            canonical(&conf.join("second").join(&name)),
            canonical(&conf.join("first").join(&name)),
            canonical(&conf.join(&name)),
        ],
        "each closer folder wins over the ones after it"
    );

    let mut cmd = Command::new(vitals_bin());
    cmd.arg("--config")
        .arg(&config)
        .args(["--bind", "127.0.0.1:0", "--log", "info"]);
    let host = Host::spawn(cmd, tempfile::tempdir().expect("tempdir"));
    let snap = host.wait_for("memory loaded", Duration::from_secs(20), |s| {
        s["collectors"]["memory"]["plugin"]["library"].is_string()
    });
    let loaded = snap["collectors"]["memory"]["plugin"]["library"]
        .as_str()
        .expect("library");
    assert_eq!(canonical(Path::new(loaded)), canonical(&conf.join(&name)));
}

/// `vitals hash-token --generate`: the printed token and hash.
fn generate() -> (String, String) {
    let (ok, out, err) = run_vitals(&["hash-token", "--generate"]);
    assert!(ok, "{out}{err}");
    let field = |key: &str| -> String {
        out.lines()
            .find_map(|l| l.strip_prefix(key))
            .map(|v| v.trim().to_owned())
            .unwrap_or_else(|| panic!("no `{key}` line in:\n{out}"))
    };
    (field("token:"), field("hash:"))
}

/// Guards `hash-token --generate`: a fresh random token each time (64 hex digits), printed
/// with its hash, which is the hash `hash-token` gives for it and which a host configured
/// with it accepts that token for.
#[test]
fn hash_token_generate_prints_a_fresh_token_and_the_hash_the_host_accepts() {
    let (token, hash) = generate();
    assert_eq!(token.len(), 64, "{token}");
    assert!(token.chars().all(|c| c.is_ascii_hexdigit()), "{token}");
    assert!(hash.starts_with("sha256:"), "{hash}");
    assert_eq!(hash_token(&token), hash, "the printed hash is the token's");
    let (other, other_hash) = generate();
    assert_ne!(token, other, "a fresh token each time");
    assert_ne!(hash, other_hash);

    let host = Host::start(&format!(
        "[[server.tokens]]\nname = \"generated\"\nrole = \"viewer\"\nhash = \"{hash}\"\n\n[collectors.memory]\n"
    ));
    let url = format!("{}/admin/monitor/system", host.base);
    let (s, _, body): (u16, _, Value) = request(
        "GET",
        &url,
        &[("authorization", &format!("Bearer {token}"))],
        None,
    );
    assert_eq!(s, 200, "{body}");
    let (s, _, _) = request(
        "GET",
        &url,
        &[("authorization", &format!("Bearer {other}"))],
        None,
    );
    assert_eq!(s, 401, "another generated token is not this hash's");
}
