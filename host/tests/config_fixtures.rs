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

/// Guards that every shipped config in `config/` parses and finds its libraries' names valid.
#[test]
fn shipped_configs_parse() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../config");
    let mut all = files(&root);
    all.extend(files(&root.join("examples")));
    for f in all {
        if let Err(e) = config::load(&f) {
            panic!("{} should be valid:\n{e}", f.display());
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
