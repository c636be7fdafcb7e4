//! The fallback: runs `nvidia-smi` with a timeout (`--version` and `--help-query-gpu` once, then `--query-gpu` and `-q -d PIDS` per collect) and parses what it prints.

pub mod pids;
pub mod query;
pub mod version;

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use vitals_plugin_api::sections::{GpuSource, GpuStats};
use wait_timeout::ChildExt;

use crate::cgroup;
use crate::nvml::{MAX_CONTAINER_LOOKUPS, MIG_UTILIZATION_NOTE};
use query::{Field, ParsedGpus};
use version::Versions;

/// The output format: CSV with the header (columns are read by name), without units.
pub const FORMAT_ARG: &str = "--format=csv,nounits";
/// The per-process query: every process with its type and MIG instance, and the MIG devices.
pub const PIDS_ARGS: [&str; 3] = ["-q", "-d", "PIDS,MEMORY"];
/// At most this much of one run's output is read (a full `-q` of eight GPUs is under 100 KiB).
pub const MAX_OUTPUT_BYTES: u64 = 4 << 20;

/// Why `nvidia-smi` gave no reading.
#[derive(Debug, thiserror::Error)]
pub enum SmiError {
    /// No driver, no GPU or no `nvidia-smi`: a normal state.
    #[error("{0}")]
    Unavailable(String),
    /// It ran past the timeout and was killed.
    #[error("`{program}` did not answer within the {} timeout", humantime::format_duration(*.timeout))]
    Timeout {
        /// The command.
        program: String,
        /// The collector's `timeout`.
        timeout: Duration,
    },
    /// It could not be started for another reason than being absent.
    #[error("cannot run `{program}`: {source}")]
    Spawn {
        /// The command.
        program: String,
        /// What the OS said.
        source: std::io::Error,
    },
    /// It exited with an error.
    #[error("`{program}` failed (exit code {code}): {message}")]
    Exit {
        /// The command.
        program: String,
        /// Its exit code, or `signal` when a signal ended it.
        code: String,
        /// The first line it printed.
        message: String,
    },
    /// Its output held no line that could be read.
    #[error("`{program}` printed no readable GPU line: {warnings}")]
    Unreadable {
        /// The command.
        program: String,
        /// Why each line was refused.
        warnings: String,
    },
}

/// One reading through nvidia-smi, with the warnings to log.
#[derive(Debug)]
pub struct SmiReading {
    /// The section.
    pub stats: GpuStats,
    /// Skipped lines, unreadable values, dropped columns.
    pub warnings: Vec<String>,
}

/// Runs nvidia-smi; remembers its versions and which columns it knows, under which names.
#[derive(Debug)]
pub struct NvidiaSmi {
    program: PathBuf,
    timeout: Duration,
    proc_root: PathBuf,
    /// The columns and the name each is asked by; chosen from `--help-query-gpu` at the first read.
    columns: Option<Vec<(Field, &'static str)>>,
    /// From `--version`, read at the first read.
    versions: Option<Versions>,
    /// Column names this nvidia-smi refused.
    refused: Vec<&'static str>,
}

impl NvidiaSmi {
    /// Runs `program` with at most `timeout` per collect; containers are looked up under `proc_root`.
    pub fn new(program: PathBuf, timeout: Duration, proc_root: PathBuf) -> Self {
        Self {
            program,
            timeout,
            proc_root,
            columns: None,
            versions: None,
            refused: Vec::new(),
        }
    }

    /// The columns asked for, once chosen.
    pub fn columns(&self) -> Option<&[(Field, &'static str)]> {
        self.columns.as_deref()
    }

    /// Queries the GPUs, then their processes.
    ///
    /// # Errors
    /// [`SmiError::Unavailable`] without nvidia-smi, driver or GPU; other variants when it fails.
    pub fn read(&mut self) -> Result<SmiReading, SmiError> {
        let deadline = Instant::now() + self.timeout;
        let mut warnings = Vec::new();
        if self.versions.is_none() {
            self.versions = Some(match self.run(&["--version"], deadline) {
                Ok(text) => version::parse_version(&text),
                Err(SmiError::Unavailable(why)) => return Err(SmiError::Unavailable(why)),
                Err(e) => {
                    warnings.push(format!("versions not read: {e}"));
                    Versions::default()
                }
            });
        }
        if self.columns.is_none() {
            let known = match self.run(&["--help-query-gpu"], deadline) {
                Ok(text) => Some(query::parse_help(&text)).filter(|k| k.contains("index")),
                Err(e) => {
                    warnings.push(format!(
                        "`--help-query-gpu` not read ({e}); asking by the oldest names"
                    ));
                    None
                }
            };
            self.columns = Some(query::choose(known.as_ref()));
        }
        let text = loop {
            let arg = query::query_gpu_arg(self.columns.as_deref().unwrap_or_default());
            match self.run(&[&arg, FORMAT_ARG], deadline) {
                Ok(text) => break text,
                Err(SmiError::Exit { message, .. }) if self.refused(&message, &mut warnings) => {}
                Err(e) => return Err(e),
            }
        };
        let mut parsed = query::parse_query_gpu(&text);
        warnings.append(&mut parsed.warnings);
        if parsed.gpus.is_empty() {
            return Err(if text.lines().nth(1).is_none_or(|l| l.trim().is_empty()) {
                SmiError::Unavailable(format!("`{}` lists no GPU", self.program.display()))
            } else {
                SmiError::Unreadable {
                    program: self.program.display().to_string(),
                    warnings: warnings.join("; "),
                }
            });
        }
        self.attach_processes(&mut parsed, deadline, &mut warnings);
        for gpu in &mut parsed.gpus {
            if gpu.mig_mode.is_some_and(|m| m.enabled) && gpu.utilization_percent.is_none() {
                gpu.utilization_note = Some(MIG_UTILIZATION_NOTE.to_owned());
            }
        }
        let versions = self.versions.clone().unwrap_or_default();
        Ok(SmiReading {
            stats: GpuStats {
                source: GpuSource::NvidiaSmi,
                driver_version: parsed.driver_version.or(versions.driver),
                nvml_version: versions.nvml,
                cuda_driver_version: versions.cuda,
                gpus: parsed.gpus,
                events: Vec::new(),
            },
            warnings,
        })
    }

    fn run(&self, args: &[&str], deadline: Instant) -> Result<String, SmiError> {
        run(&self.program, args, deadline, self.timeout)
    }

    /// Reads `-q -d PIDS` and puts each process on its GPU (by PCI bus id), with its container.
    fn attach_processes(
        &self,
        parsed: &mut ParsedGpus,
        deadline: Instant,
        warnings: &mut Vec<String>,
    ) {
        let text = match self.run(&PIDS_ARGS, deadline) {
            Ok(text) => text,
            Err(e) => {
                warnings.push(format!("GPU processes not read: {e}"));
                return;
            }
        };
        let mut pids = pids::parse_pids(&text);
        warnings.append(&mut pids.warnings);
        let mut lookups = MAX_CONTAINER_LOOKUPS;
        for (bus, mut process) in pids.processes {
            let Some(gpu) = parsed.gpus.iter_mut().find(|g| {
                g.pci_bus_id
                    .as_deref()
                    .is_some_and(|b| b.eq_ignore_ascii_case(&bus))
            }) else {
                warnings.push(format!(
                    "nvidia-smi lists process {} on GPU {bus}, which it did not list",
                    process.pid
                ));
                continue;
            };
            if lookups > 0 {
                lookups -= 1;
                process.container = cgroup::container_of(&self.proc_root, process.pid);
            }
            gpu.processes.push(process);
        }
        for (bus, mut mig) in pids.mig_devices {
            if let Some(gpu) = parsed.gpus.iter_mut().find(|g| {
                g.pci_bus_id
                    .as_deref()
                    .is_some_and(|b| b.eq_ignore_ascii_case(&bus))
            }) {
                mig.id = format!(
                    "{}/{}/{}",
                    gpu.index, mig.gpu_instance_id, mig.compute_instance_id
                );
                gpu.mig_devices.push(mig);
            }
        }
        for gpu in &mut parsed.gpus {
            gpu.processes.sort_by_key(|p| p.pid);
            gpu.mig_devices
                .sort_by_key(|m| (m.gpu_instance_id, m.compute_instance_id));
        }
    }

    /// Handles an nvidia-smi that refuses a column: asks by the field's next name, else
    /// without the field; false when the refusal names no column we can change.
    fn refused(&mut self, message: &str, warnings: &mut Vec<String>) -> bool {
        let Some(name) = query::parse_invalid_field(message) else {
            return false;
        };
        let Some(columns) = self.columns.as_mut() else {
            return false;
        };
        let Some(pos) = columns
            .iter()
            .position(|(f, n)| *n == name && *f != Field::Index)
        else {
            return false;
        };
        let (field, refused_name) = columns[pos];
        self.refused.push(refused_name);
        let next = field.names().iter().find(|n| !self.refused.contains(n));
        match next {
            Some(other) => {
                columns[pos].1 = other;
                warnings.push(format!(
                    "`{}` does not know `{name}`; asking for `{other}`",
                    self.program.display()
                ));
            }
            None => {
                columns.remove(pos);
                warnings.push(format!(
                    "`{}` does not know `{name}`; reading without it",
                    self.program.display()
                ));
            }
        }
        true
    }
}

/// nvidia-smi's exit codes for "no GPU" (6), "driver not loaded" (9) and "NVML not found" (12).
const UNAVAILABLE_EXIT_CODES: [i32; 3] = [6, 9, 12];

/// Reads a pipe to its end on its own thread, so a full pipe never blocks the child.
fn drain(pipe: Option<impl Read + Send + 'static>) -> mpsc::Receiver<String> {
    let (tx, rx) = mpsc::channel();
    if let Some(pipe) = pipe {
        std::thread::spawn(move || {
            let mut buf = Vec::new();
            let mut pipe = pipe.take(MAX_OUTPUT_BYTES);
            let _ = pipe.read_to_end(&mut buf);
            // Whatever is left is read and dropped, so the child never blocks on a full pipe.
            let _ = std::io::copy(pipe.get_mut(), &mut std::io::sink());
            let _ = tx.send(String::from_utf8_lossy(&buf).into_owned());
        });
    }
    rx
}

/// Runs `program args`, killing it at `deadline` (the end of the `budget` one collect has);
/// returns its standard output.
fn run(
    program: &Path,
    args: &[&str],
    deadline: Instant,
    budget: Duration,
) -> Result<String, SmiError> {
    let shown = program.display().to_string();
    let mut child = Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|source| match source.kind() {
            std::io::ErrorKind::NotFound => {
                SmiError::Unavailable(format!("`{shown}` was not found"))
            }
            _ => SmiError::Spawn {
                program: shown.clone(),
                source,
            },
        })?;
    let stdout = drain(child.stdout.take());
    let stderr = drain(child.stderr.take());
    let status = match child.wait_timeout(deadline.saturating_duration_since(Instant::now())) {
        Ok(Some(status)) => status,
        Ok(None) => {
            let _ = child.kill();
            let _ = child.wait();
            return Err(SmiError::Timeout {
                program: shown,
                timeout: budget,
            });
        }
        Err(source) => {
            let _ = child.kill();
            let _ = child.wait();
            return Err(SmiError::Spawn {
                program: shown,
                source,
            });
        }
    };
    // A child of nvidia-smi could keep a pipe open after it exits; never wait past the deadline.
    let remaining = || deadline.saturating_duration_since(Instant::now());
    let out = stdout.recv_timeout(remaining()).unwrap_or_default();
    if status.success() {
        return Ok(out);
    }
    let err = stderr.recv_timeout(remaining()).unwrap_or_default();
    let message = out
        .lines()
        .chain(err.lines())
        .map(str::trim)
        .find(|l| !l.is_empty())
        .unwrap_or("no output")
        .to_owned();
    match status.code() {
        Some(code) if UNAVAILABLE_EXIT_CODES.contains(&code) => {
            Err(SmiError::Unavailable(format!("`{shown}`: {message}")))
        }
        code => Err(SmiError::Exit {
            program: shown,
            code: code.map_or_else(|| "signal".to_owned(), |c| c.to_string()),
            message,
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Guards running: a missing program is unavailable, a hang is killed at the timeout,
    /// and the driver's exit codes mean unavailable.
    #[test]
    fn runs_with_a_timeout_and_classifies_exits() {
        let budget = Duration::from_secs(5);
        let soon = || Instant::now() + budget;
        let missing = run(Path::new("/nonexistent/nvidia-smi"), &[], soon(), budget);
        assert!(matches!(missing, Err(SmiError::Unavailable(ref m)) if m.contains("not found")));

        let short = Duration::from_millis(200);
        let hang =
            run(Path::new("sleep"), &["30"], Instant::now() + short, short).expect_err("killed");
        assert_eq!(
            hang.to_string(),
            "`sleep` did not answer within the 200ms timeout"
        );

        let no_driver = run(
            Path::new("sh"),
            &["-c", "echo 'NVIDIA-SMI has failed because it couldn'\\''t communicate with the NVIDIA driver.'; exit 9"],
            soon(),
            budget,
        );
        assert!(
            matches!(no_driver, Err(SmiError::Unavailable(ref m)) if m.contains("couldn't communicate")),
            "{no_driver:?}"
        );

        let other = run(
            Path::new("sh"),
            &["-c", "echo oops >&2; exit 3"],
            soon(),
            budget,
        );
        assert!(
            matches!(other, Err(SmiError::Exit { ref code, ref message, .. }) if code == "3" && message == "oops"),
            "{other:?}"
        );
        assert_eq!(
            run(Path::new("echo"), &["hi"], soon(), budget).expect("echo"),
            "hi\n"
        );
    }
}

#[cfg(test)]
mod fixtures {
    use super::*;

    fn fixture(name: &str) -> String {
        let path = format!(
            "{}/../../tests/fixtures/gpu/{name}",
            env!("CARGO_MANIFEST_DIR")
        );
        std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
    }

    /// Guards the query the fake nvidia-smi checks for: what the collector asks of a 610
    /// driver (from its real `--help-query-gpu`) is what `query-gpu.args` holds.
    #[test]
    fn query_matches_the_fixture_columns() {
        let columns = query::choose(Some(&query::parse_help(&fixture(
            "smi/help-query-gpu-610.43.02.txt",
        ))));
        assert_eq!(
            fixture("query-gpu.args").trim(),
            format!("{} {FORMAT_ARG}", query::query_gpu_arg(&columns))
        );
    }

    /// Guards the retry of a refused column: by its next name, then without it; never the index.
    #[test]
    fn a_refused_column_is_asked_by_its_other_name_then_dropped() {
        let mut smi = NvidiaSmi::new("nvidia-smi".into(), Duration::from_secs(1), "/proc".into());
        smi.columns = Some(query::choose(None));
        let mut warnings = Vec::new();
        let refuse = |name: &str| format!("Field \"{name}\" is not a valid field to query.");
        // Without help the oldest name is asked; a driver that removed it refuses it: the
        // new name is asked next, and when that is refused too the column goes.
        assert!(smi.refused(&refuse("driver_version"), &mut warnings));
        let name = |smi: &NvidiaSmi, f: Field| {
            smi.columns()
                .expect("columns")
                .iter()
                .find(|(x, _)| *x == f)
                .map(|(_, n)| *n)
        };
        assert_eq!(name(&smi, Field::DriverVersion), Some("kmd_version"));
        assert!(smi.refused(&refuse("kmd_version"), &mut warnings));
        assert_eq!(name(&smi, Field::DriverVersion), None);
        assert!(smi.refused(&refuse("compute_cap"), &mut warnings));
        assert_eq!(name(&smi, Field::ComputeCap), None);
        assert!(!smi.refused(&refuse("compute_cap"), &mut warnings));
        assert!(!smi.refused(&refuse("index"), &mut warnings));
        assert!(!smi.refused("No devices were found", &mut warnings));
        assert_eq!(warnings.len(), 3, "{warnings:?}");
    }
}
