//! Idle containers the bench starts through the `docker` CLI and removes itself (only its own, by label).

use std::io::Read;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _};

/// The local image `scripts/test-deps.d/20-docker.sh` imports.
pub const IMAGE: &str = "vitals-test/busybox:latest";
/// The label key on every container this program starts; the value is the bench's pid.
const LABEL_KEY: &str = "vitals-bench-run";

/// The longest one `docker` command may take: a daemon that hangs (it happens under load)
/// makes a figure "not measured" instead of stopping the bench.
const DOCKER_TIMEOUT: Duration = Duration::from_secs(180);

fn docker(args: &[&str]) -> anyhow::Result<String> {
    let mut child = Command::new("docker")
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .context("cannot run `docker`")?;
    // Read both pipes on threads so a large answer cannot block the child.
    let read = |pipe: Option<Box<dyn Read + Send>>| {
        std::thread::spawn(move || {
            let mut buf = Vec::new();
            if let Some(mut p) = pipe {
                let _ = p.read_to_end(&mut buf);
            }
            buf
        })
    };
    let stdout = read(
        child
            .stdout
            .take()
            .map(|p| Box::new(p) as Box<dyn Read + Send>),
    );
    let stderr = read(
        child
            .stderr
            .take()
            .map(|p| Box::new(p) as Box<dyn Read + Send>),
    );
    let until = Instant::now() + DOCKER_TIMEOUT;
    let status = loop {
        if let Some(status) = child.try_wait().context("waiting for `docker`")? {
            break status;
        }
        if Instant::now() >= until {
            let _ = child.kill();
            let _ = child.wait();
            bail!(
                "`docker {}` did not finish within {} s (the daemon hangs)",
                args.first().copied().unwrap_or_default(),
                DOCKER_TIMEOUT.as_secs()
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let out = std::process::Output {
        status,
        stdout: stdout.join().unwrap_or_default(),
        stderr: stderr.join().unwrap_or_default(),
    };
    if !out.status.success() {
        bail!(
            "`docker {}`: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_owned())
}

/// Why containers cannot be measured here, or `None` when a daemon and the image are there.
pub fn unavailable() -> Option<String> {
    if let Err(e) = docker(&["version", "--format", "{{.Server.Version}}"]) {
        return Some(format!("no Docker daemon answers ({e})"));
    }
    if docker(&["image", "inspect", IMAGE]).is_err() {
        return Some(format!(
            "the image {IMAGE} is missing (scripts/test-deps.sh imports it)"
        ));
    }
    None
}

/// Containers on the daemon that this run did not start (other users' containers).
pub fn foreign_running() -> usize {
    let mine = format!("label={LABEL_KEY}={}", std::process::id());
    let all = docker(&["ps", "-q"]).unwrap_or_default();
    let ours = docker(&["ps", "-q", "--filter", &mine]).unwrap_or_default();
    all.lines().count().saturating_sub(ours.lines().count())
}

/// Removes containers left by an earlier run of this bench that was killed (its pid is gone).
pub fn remove_orphans() {
    let Ok(list) = docker(&[
        "ps",
        "-a",
        "--filter",
        &format!("label={LABEL_KEY}"),
        "--format",
        &format!("{{{{.ID}}}} {{{{.Label \"{LABEL_KEY}\"}}}}"),
    ]) else {
        return;
    };
    let orphans: Vec<&str> = list
        .lines()
        .filter_map(|l| l.split_once(' '))
        .filter(|(_, pid)| {
            pid.parse::<u32>()
                .map_or(true, |p| !crate::procfs::alive(p))
        })
        .map(|(id, _)| id)
        .collect();
    if !orphans.is_empty() {
        let mut args = vec!["rm", "-f"];
        args.extend(orphans);
        let _ = docker(&args);
    }
}

/// Idle containers started by this run; removed when dropped.
pub struct Fleet {
    ids: Vec<String>,
}

impl Fleet {
    /// Creates and starts `n` idle containers (`sleep`), labelled with this run's pid.
    ///
    /// # Errors
    /// When the daemon refuses; the ones already created are removed on drop.
    pub fn start(n: usize) -> anyhow::Result<Fleet> {
        Fleet::start_on(n, None)
    }

    /// [`Fleet::start`] on a named network (`none`: no network at all), or the default bridge.
    ///
    /// # Errors
    /// As [`Fleet::start`].
    pub fn start_on(n: usize, network: Option<&str>) -> anyhow::Result<Fleet> {
        let label = format!("{LABEL_KEY}={}", std::process::id());
        let mut fleet = Fleet { ids: Vec::new() };
        let mut args = vec!["create", "--label", &label];
        if let Some(net) = network {
            args.extend(["--network", net]);
        }
        args.extend([IMAGE, "sleep", "86400"]);
        for _ in 0..n {
            fleet.ids.push(docker(&args)?);
        }
        let mut args = vec!["start"];
        args.extend(fleet.ids.iter().map(String::as_str));
        docker(&args)?;
        Ok(fleet)
    }

    /// The full ids of the fleet's containers.
    pub fn ids(&self) -> &[String] {
        &self.ids
    }

    /// How many containers this fleet holds.
    pub fn len(&self) -> usize {
        self.ids.len()
    }
}

impl Drop for Fleet {
    fn drop(&mut self) {
        if self.ids.is_empty() {
            return;
        }
        let mut args = vec!["rm", "-f"];
        args.extend(self.ids.iter().map(String::as_str));
        if let Err(e) = docker(&args) {
            eprintln!("vitals-bench: removing the bench's containers failed: {e}");
        }
    }
}
