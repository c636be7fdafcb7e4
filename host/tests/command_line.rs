//! The `vitals` command's conventions: `--version`, completions, the man page, `--help` examples, exit statuses and log formats, run on the built binary.

use std::process::{Command, Output};

fn vitals(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_vitals"))
        .args(args)
        .env_remove("VITALS_CONFIG")
        .env_remove("VITALS_LOG_FORMAT")
        .env_remove("VITALS_HOST_ROOT")
        .output()
        .expect("run vitals")
}

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// Guards `--version`: the host's version, the plugin API version it loads, and a commit.
#[test]
fn version_names_the_plugin_api_and_the_commit() {
    let out = vitals(&["--version"]);
    assert!(out.status.success());
    let text = stdout(&out);
    let expected = format!(
        "vitals {} (plugin API {}, commit ",
        env!("CARGO_PKG_VERSION"),
        vitals_plugin_api::API_VERSION
    );
    assert!(text.starts_with(&expected), "{text}");
    let commit = text.trim().trim_end_matches(')').rsplit(' ').next();
    assert!(
        commit.is_some_and(|c| c.len() >= 7 && c.bytes().all(|b| b.is_ascii_hexdigit())),
        "no commit in {text}"
    );
}

/// Guards the completions: each shell gets a script that knows the subcommands.
#[test]
fn completions_for_bash_zsh_and_fish() {
    for shell in ["bash", "zsh", "fish"] {
        let out = vitals(&["completions", shell]);
        assert!(out.status.success(), "{shell}: {}", stderr(&out));
        let text = stdout(&out);
        for word in ["check-config", "hash-token", "completions"] {
            assert!(text.contains(word), "{shell} completions lack {word}");
        }
    }
    assert_eq!(vitals(&["completions", "tcsh"]).status.code(), Some(2));
}

/// Guards the man page and `--help`: both come from the one definition, with the examples,
/// the exit statuses and the environment.
#[test]
fn man_page_and_help_carry_examples_and_exit_statuses() {
    let man = vitals(&["man"]);
    assert!(man.status.success());
    let man = stdout(&man);
    assert!(man.contains(".TH vitals 1"), "{man}");
    let help = stdout(&vitals(&["--help"]));
    for text in [&man, &help] {
        for needed in ["Examples:", "Exit status:", "VITALS_HOST_ROOT", "NO_COLOR"] {
            assert!(text.contains(needed), "{needed} missing from:\n{text}");
        }
    }
    assert!(man.contains("completions") && man.contains("check\\-config"));
}

/// Guards the documented exit statuses: usage 2, config 3, bind 4, plugin 5.
#[test]
fn exit_statuses_follow_the_documented_table() {
    assert_eq!(vitals(&["--no-such-flag"]).status.code(), Some(2));

    let dir = tempfile::tempdir().expect("tempdir");
    let missing = dir.path().join("missing.toml");
    let out = vitals(&["check-config", missing.to_str().expect("utf-8")]);
    assert_eq!(out.status.code(), Some(3), "{}", stderr(&out));
    let bad = dir.path().join("bad.toml");
    std::fs::write(&bad, "[server]\nbind = \"nowhere\"\n").expect("write");
    let out = vitals(&["--config", bad.to_str().expect("utf-8")]);
    assert_eq!(out.status.code(), Some(3), "{}", stderr(&out));

    let taken = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = taken.local_addr().expect("addr").to_string();
    let empty = dir.path().join("empty.toml");
    std::fs::write(&empty, "").expect("write");
    let out = vitals(&["--config", empty.to_str().expect("utf-8"), "--bind", &addr]);
    assert_eq!(out.status.code(), Some(4), "{}", stderr(&out));

    let not_a_plugin = dir.path().join("libvitals_plugin_nothing.so");
    std::fs::write(&not_a_plugin, "not a library").expect("write");
    let out = vitals(&["plugin", "check", not_a_plugin.to_str().expect("utf-8")]);
    assert_eq!(out.status.code(), Some(5), "{}", stderr(&out));
}

/// Guards the log formats: `--log-format json` writes one JSON object per line; text logs
/// to a pipe (not a terminal) carry no colour codes.
#[test]
fn json_logs_for_shippers_and_plain_text_off_a_terminal() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = taken.local_addr().expect("addr").to_string();
    let dir = tempfile::tempdir().expect("tempdir");
    let empty = dir.path().join("empty.toml");
    std::fs::write(&empty, "").expect("write");
    let config = empty.to_str().expect("utf-8");

    let out = vitals(&["--config", config, "--bind", &addr, "--log-format", "json"]);
    let log = stderr(&out);
    let lines: Vec<&str> = log.lines().filter(|l| l.starts_with('{')).collect();
    assert!(!lines.is_empty(), "no JSON log line in:\n{log}");
    for line in lines {
        let v: serde_json::Value = serde_json::from_str(line).expect("a JSON object per line");
        assert!(v["level"].is_string() && v["message"].is_string(), "{line}");
    }

    let out = vitals(&["--config", config, "--bind", &addr]);
    let log = stderr(&out);
    assert!(log.contains("INFO"), "{log}");
    assert!(!log.contains('\u{1b}'), "colour codes on a pipe:\n{log}");
}

/// Guards `NO_COLOR` on a terminal: through a pseudo-terminal (script(1)) the text log is
/// coloured, and with `NO_COLOR=1` it is not.
#[test]
fn no_color_turns_colour_off_on_a_terminal() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = taken.local_addr().expect("addr").to_string();
    let dir = tempfile::tempdir().expect("tempdir");
    let empty = dir.path().join("empty.toml");
    std::fs::write(&empty, "").expect("write");
    let line = format!(
        "{} --config {} --bind {addr}",
        env!("CARGO_BIN_EXE_vitals"),
        empty.display()
    );
    let on_terminal = |no_color: Option<&str>| {
        let mut cmd = Command::new("script");
        cmd.args(["-qec", &line, "/dev/null"])
            .env_remove("NO_COLOR");
        if let Some(v) = no_color {
            cmd.env("NO_COLOR", v);
        }
        let out = cmd.output().expect("run script(1) (bsdutils)");
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let coloured = on_terminal(None);
    assert!(coloured.contains("INFO"), "{coloured}");
    assert!(
        coloured.contains('\u{1b}'),
        "no colour on a terminal:\n{coloured}"
    );
    let plain = on_terminal(Some("1"));
    assert!(plain.contains("INFO"), "{plain}");
    assert!(
        !plain.contains('\u{1b}'),
        "colour despite NO_COLOR:\n{plain}"
    );
}
