//! Which container a process runs in, from its `/proc/PID/cgroup` (cgroup v1 and v2; Docker's cgroupfs and systemd layouts, containerd, CRI-O, Podman).

use std::io::Read;
use std::path::Path;

use vitals_plugin_api::sections::ProcessContainer;

/// A cgroup file longer than this is cut (a v1 host lists a dozen short lines).
pub const MAX_CGROUP_BYTES: u64 = 64 * 1024;
/// Container ids are 64 hex digits.
const ID_LENGTH: usize = 64;

/// The container of process `pid` under `proc_root` (normally `/proc`), if any.
pub fn container_of(proc_root: &Path, pid: u32) -> Option<ProcessContainer> {
    let file = std::fs::File::open(proc_root.join(pid.to_string()).join("cgroup")).ok()?;
    let mut text = String::new();
    file.take(MAX_CGROUP_BYTES).read_to_string(&mut text).ok()?;
    parse_cgroup(&text)
}

/// The container a `/proc/PID/cgroup` text names: the innermost 64-hex-digit id of any line's path.
pub fn parse_cgroup(text: &str) -> Option<ProcessContainer> {
    // A v2 line (`0::/…`) names the whole hierarchy; v1 lines repeat one path per controller.
    text.lines()
        .filter_map(|line| line.splitn(3, ':').nth(2))
        .find_map(parse_path)
}

/// The container in one cgroup path, innermost first.
pub fn parse_path(path: &str) -> Option<ProcessContainer> {
    let segments: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
    for (i, segment) in segments.iter().enumerate().rev() {
        let stem = segment.strip_suffix(".scope").unwrap_or(segment);
        let (runtime, id) = match stem.rsplit_once('-') {
            Some((prefix, id)) if is_id(id) => (runtime_of_prefix(prefix), id),
            _ if is_id(stem) => (runtime_of_parents(&segments[..i]), stem),
            _ => continue,
        };
        return Some(ProcessContainer {
            id: id.to_ascii_lowercase(),
            runtime: runtime.to_owned(),
        });
    }
    None
}

fn is_id(s: &str) -> bool {
    s.len() == ID_LENGTH && s.bytes().all(|b| b.is_ascii_hexdigit())
}

/// `docker-<id>.scope` (systemd driver), `cri-containerd-<id>.scope`, `crio-<id>.scope`, `libpod-<id>.scope`.
fn runtime_of_prefix(prefix: &str) -> &'static str {
    match prefix {
        "docker" => "docker",
        "cri-containerd" | "containerd" => "containerd",
        "crio" => "crio",
        "libpod" => "podman",
        _ => "unknown",
    }
}

/// `/docker/<id>` (cgroupfs driver), `/kubepods/…/<id>`, `/libpod_parent/…`.
fn runtime_of_parents(parents: &[&str]) -> &'static str {
    for p in parents.iter().rev() {
        if *p == "docker" || p.starts_with("docker") {
            return "docker";
        }
        if p.starts_with("kubepods") {
            return "kubepods";
        }
        if p.starts_with("libpod") || p.starts_with("machine.slice") {
            return "podman";
        }
        if p.starts_with("crio") {
            return "crio";
        }
    }
    "unknown"
}

#[cfg(test)]
mod tests {
    use super::*;

    const ID: &str = "3f4e8a2b9c1d0e7f6a5b4c3d2e1f0a9b8c7d6e5f4a3b2c1d0e9f8a7b6c5d4e3f";

    fn fixture(name: &str) -> String {
        let path = format!(
            "{}/../../tests/fixtures/gpu/cgroup/{name}",
            env!("CARGO_MANIFEST_DIR")
        );
        std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
    }

    fn found(text: &str) -> Option<(String, String)> {
        parse_cgroup(text).map(|c| (c.id, c.runtime))
    }

    /// Guards the layouts: cgroup v2 with Docker's systemd driver, v2 cgroupfs driver, v1 with
    /// either driver, Kubernetes with containerd, CRI-O, Podman; a host process has none.
    #[test]
    fn finds_the_container_in_every_layout() {
        let docker = Some((ID.to_owned(), "docker".to_owned()));
        assert_eq!(found(&fixture("v2-docker-systemd")), docker);
        assert_eq!(found(&fixture("v2-docker-cgroupfs")), docker);
        assert_eq!(found(&fixture("v1-docker-cgroupfs")), docker);
        assert_eq!(found(&fixture("v1-docker-systemd")), docker);
        assert_eq!(
            found(&fixture("v2-kubepods-containerd")),
            Some((ID.to_owned(), "containerd".to_owned()))
        );
        assert_eq!(
            found(&fixture("v1-kubepods-cgroupfs")),
            Some((ID.to_owned(), "kubepods".to_owned()))
        );
        assert_eq!(
            found(&format!("0::/machine.slice/libpod-{ID}.scope/container\n")),
            Some((ID.to_owned(), "podman".to_owned()))
        );
        assert_eq!(
            found(&format!("0::/system.slice/crio-{ID}.scope\n")),
            Some((ID.to_owned(), "crio".to_owned()))
        );
        assert_eq!(found(&fixture("v2-host-session")), None);
        assert_eq!(found(&fixture("v1-host")), None);
    }

    /// Guards hostile input: garbage, short ids, non-hex ids, huge lines, no colon.
    #[test]
    fn refuses_what_is_not_an_id() {
        assert_eq!(found(""), None);
        assert_eq!(found("garbage without colons"), None);
        assert_eq!(found("0::/docker/abc123\n"), None);
        assert_eq!(found(&format!("0::/docker/{}\n", "g".repeat(64))), None);
        assert_eq!(found(&format!("0::/docker/{}\n", "a".repeat(65))), None);
        let long = format!("0::/{}\n", "x/".repeat(50_000));
        assert_eq!(found(&long), None);
        // Docker in Docker: the innermost container.
        let inner = "b".repeat(64);
        assert_eq!(
            found(&format!("0::/docker/{ID}/docker/{inner}\n")).map(|c| c.0),
            Some(inner)
        );
    }

    /// Guards the bounded read of a real file, and a process that is gone.
    #[test]
    fn reads_a_real_proc_file() {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::create_dir_all(dir.path().join("42")).expect("mkdir");
        std::fs::write(dir.path().join("42/cgroup"), fixture("v2-docker-systemd")).expect("write");
        assert_eq!(
            container_of(dir.path(), 42).map(|c| c.id),
            Some(ID.to_owned())
        );
        assert_eq!(container_of(dir.path(), 43), None);
        // This test's own process is not in a container of ours (or, in CI, may be): no panic.
        let _ = container_of(Path::new("/proc"), std::process::id());
    }
}

#[cfg(test)]
mod proptests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        /// Guards that no text panics the `/proc/PID/cgroup` parser.
        #[test]
        fn arbitrary_text_never_panics(text in "\\PC{0,400}") {
            let _ = parse_cgroup(&text);
        }

        /// Guards the round trip: a container id in each runtime's layout, under cgroup v1
        /// (one line per controller) or v2, comes back lower-cased with its runtime.
        #[test]
        fn container_paths_round_trip(
            id in "[0-9a-fA-F]{64}",
            layout in 0usize..6,
            v2 in any::<bool>(),
        ) {
            let (path, runtime) = match layout {
                0 => (format!("/docker/{id}"), "docker"),
                1 => (format!("/system.slice/docker-{id}.scope"), "docker"),
                2 => (format!("/kubepods.slice/kubepods-pod1.slice/cri-containerd-{id}.scope"), "containerd"),
                3 => (format!("/kubepods/besteffort/pod1/{id}"), "kubepods"),
                4 => (format!("/machine.slice/libpod-{id}.scope/container"), "podman"),
                _ => (format!("/kubepods.slice/crio-{id}.scope"), "crio"),
            };
            let text = if v2 {
                format!("0::{path}\n")
            } else {
                format!("12:pids:{path}\n11:cpu,cpuacct:{path}\n1:name=systemd:{path}\n")
            };
            let want = ProcessContainer { id: id.to_ascii_lowercase(), runtime: runtime.to_owned() };
            prop_assert_eq!(parse_cgroup(&text), Some(want));
        }
    }
}
