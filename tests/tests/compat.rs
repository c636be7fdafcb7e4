//! The plugin API compatibility policy, proven: plugins built against other API versions, loaded by the real host and `vitals plugin check`.
//!
//! Each variant is generated at test time under `target/out-of-tree/compat/<variant>/`: a copy
//! of `plugin-api/` with its version and root module patched, and the collector in
//! `tests/compat/plugin/` built against it, each in a workspace of its own (so the same
//! package name can exist at several versions). All share one target folder.

#[path = "../compat/out_of_tree.rs"]
mod out_of_tree;

use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::time::Duration;

use out_of_tree::{cargo_build, cdylib, plugin_check, repo_root, write_if_changed};
use vitals_e2e::{toml_path, Host};

/// The end of the `extension` field and of the root module, in `plugin-api/src/abi.rs`.
const ABI_ROOT_END: &str = "        extern \"C\" fn(method: RStr<'_>, payload: RStr<'_>) -> RResult<RString, PluginError>,\n}\n";
/// The `extension` field, doc comment included.
const ABI_EXTENSION_FIELD: &str = "\n    /// Generic extension point at library level: a named method with a JSON payload.\n    pub extension:\n        extern \"C\" fn(method: RStr<'_>, payload: RStr<'_>) -> RResult<RString, PluginError>,\n";
/// Where `export_collector!` fills the `extension` field, in `plugin-api/src/sdk.rs`.
const SDK_EXTENSION_INIT: &str = "                    extension: $crate::sdk::__extension,\n";

/// One edit of a copied file: the text to find (exactly once) and what replaces it.
struct Edit {
    file: &'static str,
    find: &'static str,
    replace: String,
}

/// A plugin API at another version than the host's, and the plugin built against it.
struct Variant {
    name: &'static str,
    /// `None`: the plugin is built against `plugin-api/` itself.
    version: Option<String>,
    edits: Vec<Edit>,
}

/// The host's plugin API version, from `plugin-api/Cargo.toml`.
fn host_api() -> (u64, u64, u64) {
    let manifest = std::fs::read_to_string(repo_root().join("plugin-api/Cargo.toml"))
        .expect("plugin-api/Cargo.toml");
    let version = manifest
        .lines()
        .find_map(|l| l.strip_prefix("version = \""))
        .and_then(|v| v.strip_suffix('"'))
        .expect("a version line in plugin-api/Cargo.toml");
    let mut parts = version
        .split('.')
        .map(|p| p.parse::<u64>().expect("numeric version"));
    let mut next = || parts.next().expect("three version parts");
    (next(), next(), next())
}

fn host_api_string() -> String {
    let (major, minor, patch) = host_api();
    format!("{major}.{minor}.{patch}")
}

fn variants() -> Vec<Variant> {
    let (major, minor, _) = host_api();
    vec![
        Variant {
            name: "current",
            version: None,
            edits: vec![],
        },
        // A newer minor: one more optional field after the ones this host knows.
        Variant {
            name: "newer-minor",
            version: Some(format!("{major}.{}.0", minor + 1)),
            edits: vec![
                Edit {
                    file: "src/abi.rs",
                    find: ABI_ROOT_END,
                    replace: ABI_ROOT_END.replacen(
                        "\n}\n",
                        "\n\n    /// Added in the newer minor: the plugin's optional capabilities, as JSON.\n    pub capabilities: extern \"C\" fn() -> RString,\n}\n",
                        1,
                    ),
                },
                Edit {
                    file: "src/sdk.rs",
                    find: SDK_EXTENSION_INIT,
                    replace: format!(
                        "{SDK_EXTENSION_INIT}                    capabilities: $crate::sdk::__capabilities,\n"
                    ),
                },
                Edit {
                    file: "src/sdk.rs",
                    find: "#[doc(hidden)]\npub extern \"C\" fn __extension(",
                    replace: "#[doc(hidden)]\npub extern \"C\" fn __capabilities() -> RString {\n    RString::from(\"[]\")\n}\n\n#[doc(hidden)]\npub extern \"C\" fn __extension(".to_owned(),
                },
            ],
        },
        // The 1.0 layout from before `extension` was added: only the required prefix.
        Variant {
            name: "without-extension",
            version: Some(format!("{major}.0.0")),
            edits: vec![
                Edit {
                    file: "src/abi.rs",
                    find: ABI_EXTENSION_FIELD,
                    replace: String::new(),
                },
                Edit {
                    file: "src/sdk.rs",
                    find: SDK_EXTENSION_INIT,
                    replace: String::new(),
                },
            ],
        },
        // The next major: the same layout, refused on the version alone.
        Variant {
            name: "next-major",
            version: Some(format!("{}.0.0", major + 1)),
            edits: vec![],
        },
    ]
}

/// Copies `plugin-api/` to `dest` with `version` and `edits` applied.
fn copy_api(dest: &Path, version: &str, edits: &[Edit]) {
    let src = repo_root().join("plugin-api");
    let host_version = format!("version = \"{}\"", host_api_string());
    let mut files = vec![PathBuf::from("Cargo.toml")];
    let mut dirs = vec![PathBuf::from("src")];
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(src.join(&dir)).expect("read plugin-api/src") {
            let rel = dir.join(entry.expect("dir entry").file_name());
            if src.join(&rel).is_dir() {
                dirs.push(rel);
            } else {
                files.push(rel);
            }
        }
    }
    for rel in files {
        let mut text = std::fs::read_to_string(src.join(&rel)).expect("read plugin-api file");
        if rel == Path::new("Cargo.toml") {
            text = text.replacen(&host_version, &format!("version = \"{version}\""), 1);
        }
        for edit in edits.iter().filter(|e| Path::new(e.file) == rel) {
            assert_eq!(
                text.matches(edit.find).count(),
                1,
                "plugin-api/{} no longer holds this text exactly once; update the compat patch in tests/tests/compat.rs:\n{}",
                edit.file,
                edit.find
            );
            text = text.replacen(edit.find, &edit.replace, 1);
        }
        write_if_changed(&dest.join(&rel), &text);
    }
}

/// Generates the variant's workspace and builds its plugin; returns the library.
fn build(variant: &Variant) -> PathBuf {
    let root = out_of_tree::target().join("compat").join(variant.name);
    let package = format!("vitals-compat-{}", variant.name);
    let api = match &variant.version {
        Some(version) => {
            copy_api(&root.join("plugin-api"), version, &variant.edits);
            root.join("plugin-api")
        }
        None => repo_root().join("plugin-api"),
    };
    let plugin_src = repo_root().join("tests/compat/plugin/src/lib.rs");
    write_if_changed(
        &root.join("plugin/Cargo.toml"),
        &format!(
            "[package]\nname = {package:?}\nversion = \"0.1.0\"\nedition = \"2021\"\npublish = false\n\n\
             [lib]\ncrate-type = [\"cdylib\"]\npath = {src}\n\n\
             [dependencies]\nvitals-plugin-api = {{ path = {api} }}\nserde = {{ version = \"1\", features = [\"derive\"] }}\nserde_json = \"1\"\n",
            src = toml_path(&plugin_src),
            api = toml_path(&api),
        ),
    );
    // The copy inherits edition, dependencies and lints from a workspace like the real one:
    // the root manifest from `[workspace.package]` on.
    let workspace = std::fs::read_to_string(repo_root().join("Cargo.toml")).expect("Cargo.toml");
    let inherited = &workspace[workspace
        .find("[workspace.package]")
        .expect("[workspace.package] in Cargo.toml")..];
    let members = if variant.version.is_some() {
        "\"plugin-api\", \"plugin\""
    } else {
        "\"plugin\""
    };
    write_if_changed(
        &root.join("Cargo.toml"),
        &format!("[workspace]\nresolver = \"2\"\nmembers = [{members}]\n\n{inherited}"),
    );
    // Start from the workspace's lock so the shared dependencies resolve to the same
    // versions offline; cargo trims it to what this workspace uses.
    let lock = root.join("Cargo.lock");
    if !lock.exists() {
        std::fs::copy(repo_root().join("Cargo.lock"), &lock).expect("copy Cargo.lock");
    }
    cargo_build(&root.join("Cargo.toml"));
    cdylib(&package)
}

/// Every variant's library, built once per test run.
fn libs() -> &'static Vec<(&'static str, PathBuf)> {
    static LIBS: OnceLock<Vec<(&'static str, PathBuf)>> = OnceLock::new();
    LIBS.get_or_init(|| {
        let started = std::time::Instant::now();
        let libs = variants().iter().map(|v| (v.name, build(v))).collect();
        println!(
            "built every compat variant in {:.1} s",
            started.elapsed().as_secs_f64()
        );
        libs
    })
}

fn lib(name: &str) -> &'static Path {
    libs()
        .iter()
        .find(|(n, _)| *n == name)
        .map(|(_, p)| p.as_path())
        .unwrap_or_else(|| panic!("no variant {name}"))
}

/// Starts the host with the variant's plugin as collector `compat` (plus `memory`) and
/// waits until `compat` has collected twice.
fn host_collecting(name: &str) -> (Host, serde_json::Value) {
    let host = Host::start(&format!(
        "[collectors.memory]\ninterval = \"200ms\"\n\n[collectors.compat]\nlibrary = {}\ninterval = \"200ms\"\nconfig = {{ offset = 1000 }}\n",
        toml_path(lib(name))
    ));
    let snap = host.wait_for(
        &format!("the {name} plugin to collect"),
        Duration::from_secs(20),
        |s| s["sections"]["compat"]["collects"].as_u64() >= Some(1002),
    );
    (host, snap)
}

/// Guards the base case: a plugin built against this API loads, takes its config, collects.
#[test]
fn a_plugin_built_against_the_current_api_loads_and_collects() {
    let (_host, snap) = host_collecting("current");
    assert_eq!(snap["sections"]["compat"]["api_version"], host_api_string());
    assert_eq!(snap["collectors"]["compat"]["state"], "ok");
    let (ok, out) = plugin_check(lib("current"), &[], &[]);
    assert!(ok, "{out}");
    assert!(out.contains("ABI:         compatible"), "{out}");
    assert!(out.contains("extension:   present"), "{out}");
}

/// Guards forward compatibility: a newer minor API with an extra trailing root-module field
/// loads in this host and works.
#[test]
fn a_newer_minor_api_with_an_extra_field_loads_and_works() {
    let (major, minor, _) = host_api();
    let newer = format!("{major}.{}.0", minor + 1);
    let (host, snap) = host_collecting("newer-minor");
    assert_eq!(snap["sections"]["compat"]["api_version"], newer.as_str());
    let status = &snap["collectors"]["compat"];
    assert_eq!(status["state"], "ok", "{status}");
    assert_eq!(status["plugin"]["api_version"], newer.as_str(), "{status}");
    assert_eq!(snap["collectors"]["memory"]["state"], "ok");
    drop(host);

    let (ok, out) = plugin_check(lib("newer-minor"), &[], &[]);
    assert!(ok, "{out}");
    assert!(
        out.contains(&format!(
            "plugin API:  {newer} (this host: {})",
            host_api_string()
        )),
        "{out}"
    );
    assert!(out.contains("ABI:         compatible"), "{out}");
    assert!(out.contains("result:      PASS"), "{out}");
}

/// Guards backward compatibility: a plugin from before the optional `extension` field loads,
/// collects, and the host reports the capability as absent.
///
/// abi_stable's own layout check refuses a root module with fewer fields than the host's;
/// the loader accepts it after checking the required prefix alone (`abi::minimal`).
#[test]
fn an_older_layout_without_extension_loads_with_the_capability_absent() {
    let (_host, snap) = host_collecting("without-extension");
    assert_eq!(snap["collectors"]["compat"]["state"], "ok");
    let (ok, out) = plugin_check(lib("without-extension"), &[], &[]);
    assert!(ok, "{out}");
    assert!(out.contains("extension:   absent"), "{out}");
    assert!(out.contains("collect:     ok"), "{out}");
}

/// Guards the refusal of another major version, by name of both versions, with the host
/// carrying on with its other collectors.
#[test]
fn another_major_version_is_refused_naming_both_versions() {
    let (major, _, _) = host_api();
    let plugin = format!("{}.0.0", major + 1);
    let host_version = host_api_string();
    let host = Host::start(&format!(
        "[collectors.memory]\ninterval = \"200ms\"\n\n[collectors.compat]\nlibrary = {}\n",
        toml_path(lib("next-major"))
    ));
    let snap = host.wait_for(
        "the next-major plugin to be refused and memory to collect",
        Duration::from_secs(20),
        |s| {
            s["collectors"]["compat"]["state"] == "failed"
                && s["collectors"]["memory"]["state"] == "ok"
        },
    );
    let reason = snap["collectors"]["compat"]["reason"]
        .as_str()
        .unwrap_or_default();
    assert!(
        reason.contains(&format!("vitals-plugin-api {plugin}"))
            && reason.contains(&format!("host speaks {host_version}")),
        "{reason}"
    );
    assert!(snap["sections"]["compat"].is_null(), "{snap}");

    let (ok, out) = plugin_check(lib("next-major"), &[], &[]);
    assert!(
        !ok,
        "a plugin of another major version must fail the check:\n{out}"
    );
    assert!(out.contains("ABI:      FAIL: incompatible"), "{out}");
    assert!(
        out.contains(&plugin) && out.contains(&host_version),
        "{out}"
    );
}

/// Guards `vitals plugin check` against each fault it must catch with the default config.
#[test]
fn plugin_check_fails_on_every_fault() {
    let lib = lib("current");
    let cases: [(&str, &str); 4] = [
        (
            "error",
            "collect:     FAIL: collect failed: failing, as VITALS_COMPAT_BEHAVIOUR asks",
        ),
        (
            "panic",
            "collect:     FAIL: plugin panicked: panicking, as VITALS_COMPAT_BEHAVIOUR asks",
        ),
        (
            "hang",
            "collect:     FAIL: did not return within the deadline of 500ms",
        ),
        (
            "accept-unknown-keys",
            "unknown key: FAIL: an unknown config key was accepted",
        ),
    ];
    for (behaviour, expected) in cases {
        let (ok, out) = plugin_check(
            lib,
            &["--deadline", "500ms"],
            &[("VITALS_COMPAT_BEHAVIOUR", behaviour)],
        );
        assert!(!ok, "{behaviour} must fail the check:\n{out}");
        assert!(
            out.contains(expected),
            "{behaviour}: expected `{expected}` in:\n{out}"
        );
        assert!(out.contains("result:      FAIL"), "{out}");
    }
    let (ok, out) = plugin_check(lib, &[], &[("VITALS_COMPAT_BEHAVIOUR", "unavailable")]);
    assert!(ok, "unavailable is a normal state and passes:\n{out}");
    assert!(
        out.contains("collect:     unavailable on this machine: unavailable, as asked"),
        "{out}"
    );
}

/// Guards the refusal of files that are not plugins, and of a bad deadline.
#[test]
fn plugin_check_refuses_what_is_not_a_plugin() {
    let dir = tempfile::tempdir().expect("tempdir");
    let text = dir.path().join("libtext.so");
    std::fs::write(&text, "not a library\n").expect("write");
    let (ok, out) = plugin_check(&text, &[], &[]);
    assert!(!ok, "{out}");
    assert!(
        out.contains("load:") && out.contains("cannot open") && out.contains("libtext.so"),
        "{out}"
    );

    let (ok, out) = plugin_check(&dir.path().join("libnone.so"), &[], &[]);
    assert!(!ok, "{out}");
    assert!(out.contains("plugin library not found"), "{out}");

    let (ok, out) = plugin_check(lib("current"), &["--deadline", "soon"], &[]);
    assert!(!ok, "{out}");
    assert!(out.contains("soon"), "{out}");
}
