//! Config fixtures: every valid file parses, every invalid one fails with the expected messages.

use std::path::{Path, PathBuf};

use vitals_host::config;

fn files(dir: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "toml"))
        .collect();
    v.sort();
    assert!(!v.is_empty(), "no fixtures in {}", dir.display());
    v
}

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/config")
}

/// Guards that valid fixtures parse (library existence is not checked for them).
#[test]
fn valid_fixtures_parse() {
    for f in files(&fixtures().join("valid")) {
        if let Err(e) = config::load(&f) {
            panic!("{} should be valid:\n{e}", f.display());
        }
    }
}

/// The cargo target folder holding the built plugins (`target/debug`; the test binary lives
/// in its `deps`), where the host looks last for a library named without a `/`.
fn target_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("VITALS_TARGET_DIR") {
        return PathBuf::from(dir);
    }
    let exe = std::env::current_exe().expect("current exe");
    exe.parent()
        .and_then(Path::parent)
        .expect("target dir")
        .to_path_buf()
}

/// Guards that every shipped config in `config/` parses and that every library it names is
/// found (beside the built binary, as `make run` has it), as `vitals check-config` checks.
#[test]
fn shipped_configs_parse_and_find_their_libraries() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../config");
    let mut all = files(&root);
    all.extend(files(&root.join("examples")));
    let target = target_dir();
    let libraries_built = target.join("libvitals_plugin_cpu.so").exists();
    if !libraries_built {
        vitals_plugin_api::testing::skip(&format!(
            "the plugins are not built in {} (`cargo build --workspace`), so the shipped configs' libraries are not looked for",
            target.display()
        ));
    }
    for f in all {
        let config =
            config::load(&f).unwrap_or_else(|e| panic!("{} should be valid:\n{e}", f.display()));
        if libraries_built {
            let text = std::fs::read_to_string(&f).expect("read config");
            if let Err(e) = config.check_libraries(&f, &text, Some(&target)) {
                panic!("{} names a library that is not found:\n{e}", f.display());
            }
        }
    }
}

/// Guards the error messages: each invalid fixture's `# expect:` lines appear in its error.
#[test]
fn invalid_fixtures_fail_with_file_line_and_key() {
    for f in files(&fixtures().join("invalid")) {
        let text = std::fs::read_to_string(&f).expect("read fixture");
        let expects: Vec<&str> = text
            .lines()
            .filter_map(|l| l.strip_prefix("# expect: "))
            .collect();
        assert!(
            !expects.is_empty(),
            "{} has no `# expect:` line",
            f.display()
        );
        let rendered = match config::load(&f) {
            Err(e) => e.to_string(),
            Ok(c) => match c.check_libraries(&f, &text, None) {
                Err(e) => e.to_string(),
                Ok(()) => panic!("{} should be invalid", f.display()),
            },
        };
        for expect in expects {
            assert!(
                rendered.contains(expect),
                "{}: expected `{expect}` in:\n{rendered}",
                f.display()
            );
        }
    }
}
