//! The fallback: runs `nvidia-smi --query-gpu=… --format=csv,noheader,nounits` with a timeout and parses its CSV.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use vitals_plugin_api::sections::{
    GpuDevice, GpuProcess, GpuProcessKind, GpuSource, GpuStats, MigMode,
};
use wait_timeout::ChildExt;

const MIB: u64 = 1 << 20;

/// One column of `nvidia-smi --query-gpu`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Field {
    /// `index`
    Index,
    /// `name`
    Name,
    /// `uuid`
    Uuid,
    /// `driver_version`
    DriverVersion,
    /// `pci.bus_id`
    PciBusId,
    /// `compute_cap` (drivers from 510 on)
    ComputeCap,
    /// `pcie.link.gen.current`
    PcieGeneration,
    /// `pcie.link.gen.max`
    PcieMaxGeneration,
    /// `pcie.link.width.current`
    PcieLinkWidth,
    /// `pcie.link.width.max`
    PcieMaxLinkWidth,
    /// `utilization.gpu` (%)
    Utilization,
    /// `utilization.memory` (%)
    MemoryUtilization,
    /// `memory.total` (MiB)
    MemoryTotal,
    /// `memory.used` (MiB)
    MemoryUsed,
    /// `memory.free` (MiB)
    MemoryFree,
    /// `temperature.gpu` (°C)
    Temperature,
    /// `power.draw` (W)
    PowerDraw,
    /// `power.limit` (W)
    PowerLimit,
    /// `fan.speed` (%)
    FanSpeed,
    /// `clocks.gr` (MHz)
    GraphicsClock,
    /// `clocks.mem` (MHz)
    MemoryClock,
    /// `pstate`
    PerformanceState,
    /// `mig.mode.current`
    MigCurrent,
    /// `mig.mode.pending`
    MigPending,
}

impl Field {
    /// Every column, in the order the collector asks for them.
    pub const ALL: [Field; 24] = [
        Field::Index,
        Field::Name,
        Field::Uuid,
        Field::DriverVersion,
        Field::PciBusId,
        Field::ComputeCap,
        Field::PcieGeneration,
        Field::PcieMaxGeneration,
        Field::PcieLinkWidth,
        Field::PcieMaxLinkWidth,
        Field::Utilization,
        Field::MemoryUtilization,
        Field::MemoryTotal,
        Field::MemoryUsed,
        Field::MemoryFree,
        Field::Temperature,
        Field::PowerDraw,
        Field::PowerLimit,
        Field::FanSpeed,
        Field::GraphicsClock,
        Field::MemoryClock,
        Field::PerformanceState,
        Field::MigCurrent,
        Field::MigPending,
    ];

    /// The name `--query-gpu` knows it by.
    pub fn query_name(self) -> &'static str {
        match self {
            Field::Index => "index",
            Field::Name => "name",
            Field::Uuid => "uuid",
            Field::DriverVersion => "driver_version",
            Field::PciBusId => "pci.bus_id",
            Field::ComputeCap => "compute_cap",
            Field::PcieGeneration => "pcie.link.gen.current",
            Field::PcieMaxGeneration => "pcie.link.gen.max",
            Field::PcieLinkWidth => "pcie.link.width.current",
            Field::PcieMaxLinkWidth => "pcie.link.width.max",
            Field::Utilization => "utilization.gpu",
            Field::MemoryUtilization => "utilization.memory",
            Field::MemoryTotal => "memory.total",
            Field::MemoryUsed => "memory.used",
            Field::MemoryFree => "memory.free",
            Field::Temperature => "temperature.gpu",
            Field::PowerDraw => "power.draw",
            Field::PowerLimit => "power.limit",
            Field::FanSpeed => "fan.speed",
            Field::GraphicsClock => "clocks.gr",
            Field::MemoryClock => "clocks.mem",
            Field::PerformanceState => "pstate",
            Field::MigCurrent => "mig.mode.current",
            Field::MigPending => "mig.mode.pending",
        }
    }
}

/// The `--query-gpu=` argument for `fields`.
pub fn query_gpu_arg(fields: &[Field]) -> String {
    let names: Vec<&str> = fields.iter().map(|f| f.query_name()).collect();
    format!("--query-gpu={}", names.join(","))
}

/// The `--query-compute-apps=` argument; [`parse_compute_apps`] reads its columns in this order.
pub const QUERY_COMPUTE_APPS_ARG: &str =
    "--query-compute-apps=gpu_uuid,pid,process_name,used_memory";
const FORMAT_ARG: &str = "--format=csv,noheader,nounits";

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

/// What one parse of `--query-gpu` output found.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct ParsedGpus {
    /// The GPUs of the well-formed lines, in index order.
    pub gpus: Vec<GpuDevice>,
    /// The driver version the first GPU reports.
    pub driver_version: Option<String>,
    /// One sentence per skipped line or unreadable value.
    pub warnings: Vec<String>,
}

/// A value, or `None` for what nvidia-smi prints when it has none (`[N/A]`, `[Not Supported]`,
/// `N/A`, `[Unknown Error]`, an empty column).
fn present(raw: &str) -> Option<&str> {
    let v = raw.trim();
    (!v.is_empty() && !v.starts_with('[') && v != "N/A").then_some(v)
}

/// Parses one number, noting in `warnings` a value that is present but not a number.
fn number<T: std::str::FromStr>(
    raw: &str,
    column: &str,
    line: u64,
    warnings: &mut Vec<String>,
) -> Option<T> {
    let v = present(raw)?;
    match v.parse() {
        Ok(n) => Some(n),
        Err(_) => {
            warnings.push(format!(
                "nvidia-smi line {line}: `{column}` is not a number: `{v}`"
            ));
            None
        }
    }
}

/// nvidia-smi separates with `, ` and never quotes, so a `"` in a value is taken as it is.
fn csv_reader(text: &str) -> csv::Reader<&[u8]> {
    csv::ReaderBuilder::new()
        .has_headers(false)
        .quoting(false)
        .flexible(true)
        .trim(csv::Trim::All)
        .from_reader(text.as_bytes())
}

/// Parses `nvidia-smi --query-gpu=<fields> --format=csv,noheader,nounits` output.
///
/// A line with the wrong number of columns or without a numeric index is skipped with a
/// warning; a value that is absent or unreadable leaves only that field empty.
pub fn parse_query_gpu(fields: &[Field], text: &str) -> ParsedGpus {
    let mut parsed = ParsedGpus::default();
    let warnings = &mut parsed.warnings;
    for (n, record) in csv_reader(text).records().enumerate() {
        let line = n as u64 + 1;
        let record = match record {
            Ok(r) => r,
            Err(e) => {
                warnings.push(format!("nvidia-smi line {line} skipped: {e}"));
                continue;
            }
        };
        let line = record.position().map_or(line, |p| p.line());
        let shown = record.iter().collect::<Vec<_>>().join(", ");
        if record.len() != fields.len() {
            warnings.push(format!(
                "nvidia-smi line {line} skipped: {} values where {} were asked for: `{shown}`",
                record.len(),
                fields.len()
            ));
            continue;
        }
        let column = |f: Field| fields.iter().position(|x| *x == f).map(|i| &record[i]);
        let Some(index) = column(Field::Index).and_then(|v| present(v)?.parse::<u32>().ok()) else {
            warnings.push(format!(
                "nvidia-smi line {line} skipped: no GPU index: `{shown}`"
            ));
            continue;
        };
        let mut gpu = GpuDevice {
            index,
            ..GpuDevice::default()
        };
        let (mut mig_current, mut mig_pending) = (None, None);
        for (field, raw) in fields.iter().zip(record.iter()) {
            let name = field.query_name();
            let text = || present(raw).map(str::to_owned);
            match field {
                Field::Index => {}
                Field::Name => gpu.name = text(),
                Field::Uuid => gpu.uuid = text(),
                Field::DriverVersion => {
                    if parsed.driver_version.is_none() {
                        parsed.driver_version = text();
                    }
                }
                Field::PciBusId => gpu.pci_bus_id = text(),
                Field::ComputeCap => gpu.compute_capability = text(),
                Field::PcieGeneration => gpu.pcie_generation = number(raw, name, line, warnings),
                Field::PcieMaxGeneration => {
                    gpu.pcie_max_generation = number(raw, name, line, warnings)
                }
                Field::PcieLinkWidth => gpu.pcie_link_width = number(raw, name, line, warnings),
                Field::PcieMaxLinkWidth => {
                    gpu.pcie_max_link_width = number(raw, name, line, warnings)
                }
                Field::Utilization => gpu.utilization_percent = number(raw, name, line, warnings),
                Field::MemoryUtilization => {
                    gpu.memory_utilization_percent = number(raw, name, line, warnings)
                }
                Field::MemoryTotal => {
                    gpu.memory_total_bytes =
                        number::<u64>(raw, name, line, warnings).map(|m| m * MIB)
                }
                Field::MemoryUsed => {
                    gpu.memory_used_bytes =
                        number::<u64>(raw, name, line, warnings).map(|m| m * MIB)
                }
                Field::MemoryFree => {
                    gpu.memory_free_bytes =
                        number::<u64>(raw, name, line, warnings).map(|m| m * MIB)
                }
                Field::Temperature => gpu.temperature_celsius = number(raw, name, line, warnings),
                Field::PowerDraw => gpu.power_draw_watts = number(raw, name, line, warnings),
                Field::PowerLimit => gpu.power_limit_watts = number(raw, name, line, warnings),
                Field::FanSpeed => {
                    gpu.fan_speed_percent = number(raw, name, line, warnings);
                    // nvidia-smi reports the first fan only.
                    gpu.fan_speeds_percent = gpu.fan_speed_percent.into_iter().collect();
                }
                Field::GraphicsClock => gpu.graphics_clock_mhz = number(raw, name, line, warnings),
                Field::MemoryClock => gpu.memory_clock_mhz = number(raw, name, line, warnings),
                Field::PerformanceState => {
                    gpu.performance_state = text().filter(|p| p.starts_with('P'))
                }
                Field::MigCurrent => mig_current = present(raw).map(|v| v == "Enabled"),
                Field::MigPending => mig_pending = present(raw).map(|v| v == "Enabled"),
            }
        }
        gpu.mig_mode = mig_current.map(|enabled| MigMode {
            enabled,
            pending_enabled: mig_pending.unwrap_or(enabled),
        });
        gpu.memory_used_percent = match (gpu.memory_used_bytes, gpu.memory_total_bytes) {
            (Some(used), Some(total)) if total > 0 => Some(used as f64 * 100.0 / total as f64),
            _ => None,
        };
        parsed.gpus.push(gpu);
    }
    parsed.gpus.sort_by_key(|g| g.index);
    parsed
}

/// Parses `nvidia-smi --query-compute-apps=gpu_uuid,pid,process_name,used_memory` output into
/// `(GPU UUID, process)` pairs; malformed lines are skipped with a warning.
pub fn parse_compute_apps(text: &str) -> (Vec<(String, GpuProcess)>, Vec<String>) {
    let mut apps = Vec::new();
    let mut warnings = Vec::new();
    for (n, record) in csv_reader(text).records().enumerate() {
        let record = match record {
            Ok(r) => r,
            Err(e) => {
                warnings.push(format!("nvidia-smi process line {} skipped: {e}", n + 1));
                continue;
            }
        };
        let line = record.position().map_or(n as u64 + 1, |p| p.line());
        let shown = record.iter().collect::<Vec<_>>().join(", ");
        let parsed = match record.iter().collect::<Vec<_>>()[..] {
            [uuid, pid, name, memory] => present(uuid)
                .zip(present(pid).and_then(|p| p.parse::<u32>().ok()))
                .map(|(uuid, pid)| {
                    let process = GpuProcess {
                        pid,
                        name: present(name).map(str::to_owned),
                        used_memory_bytes: number::<u64>(
                            memory,
                            "used_memory",
                            line,
                            &mut warnings,
                        )
                        .map(|m| m * MIB),
                        kind: GpuProcessKind::Compute,
                    };
                    (uuid.to_owned(), process)
                }),
            _ => None,
        };
        match parsed {
            Some(app) => apps.push(app),
            None => warnings.push(format!(
                "nvidia-smi process line {line} skipped: expected `gpu_uuid, pid, process_name, used_memory`, got `{shown}`"
            )),
        }
    }
    (apps, warnings)
}

/// The field nvidia-smi refused, from `Field "compute_cap" is not a valid field to query.`
pub fn parse_invalid_field(message: &str) -> Option<&str> {
    let rest = &message[message.find("Field \"")? + "Field \"".len()..];
    let (name, tail) = rest.split_once('"')?;
    tail.trim_start()
        .starts_with("is not a valid field")
        .then_some(name)
}

/// One reading through nvidia-smi, with the warnings to log.
#[derive(Debug)]
pub struct SmiReading {
    /// The section.
    pub stats: GpuStats,
    /// Skipped lines, unreadable values, dropped columns.
    pub warnings: Vec<String>,
}

/// Runs nvidia-smi; remembers which columns this nvidia-smi knows.
#[derive(Debug)]
pub struct NvidiaSmi {
    program: PathBuf,
    timeout: Duration,
    fields: Vec<Field>,
}

impl NvidiaSmi {
    /// Runs `program` with at most `timeout` per collect.
    pub fn new(program: PathBuf, timeout: Duration) -> Self {
        Self {
            program,
            timeout,
            fields: Field::ALL.to_vec(),
        }
    }

    /// Queries the GPUs, then their compute processes.
    ///
    /// # Errors
    /// [`SmiError::Unavailable`] without nvidia-smi, driver or GPU; other variants when it fails.
    pub fn read(&mut self) -> Result<SmiReading, SmiError> {
        let deadline = Instant::now() + self.timeout;
        let mut warnings = Vec::new();
        let text = loop {
            let arg = query_gpu_arg(&self.fields);
            match run(&self.program, &[&arg, FORMAT_ARG], deadline, self.timeout) {
                Ok(text) => break text,
                Err(SmiError::Exit { message, .. })
                    if self.drop_unknown_field(&message, &mut warnings) => {}
                Err(e) => return Err(e),
            }
        };
        let mut parsed = parse_query_gpu(&self.fields, &text);
        warnings.append(&mut parsed.warnings);
        if parsed.gpus.is_empty() {
            return Err(if text.trim().is_empty() {
                SmiError::Unavailable(format!("`{}` lists no GPU", self.program.display()))
            } else {
                SmiError::Unreadable {
                    program: self.program.display().to_string(),
                    warnings: warnings.join("; "),
                }
            });
        }
        match run(
            &self.program,
            &[QUERY_COMPUTE_APPS_ARG, FORMAT_ARG],
            deadline,
            self.timeout,
        ) {
            Ok(text) => {
                let (apps, mut app_warnings) = parse_compute_apps(&text);
                warnings.append(&mut app_warnings);
                for (uuid, process) in apps {
                    match parsed
                        .gpus
                        .iter_mut()
                        .find(|g| g.uuid.as_deref() == Some(&uuid))
                    {
                        Some(gpu) => gpu.processes.push(process),
                        None => warnings.push(format!(
                            "nvidia-smi lists process {} on GPU {uuid}, which it did not list",
                            process.pid
                        )),
                    }
                }
            }
            Err(e) => warnings.push(format!("GPU processes not read: {e}")),
        }
        Ok(SmiReading {
            stats: GpuStats {
                source: GpuSource::NvidiaSmi,
                driver_version: parsed.driver_version,
                nvml_version: None,
                cuda_driver_version: None,
                gpus: parsed.gpus,
            },
            warnings,
        })
    }

    /// Drops the column an older nvidia-smi refused; false when the refusal names none we can drop.
    fn drop_unknown_field(&mut self, message: &str, warnings: &mut Vec<String>) -> bool {
        let Some(name) = parse_invalid_field(message) else {
            return false;
        };
        let Some(pos) = self
            .fields
            .iter()
            .position(|f| f.query_name() == name && *f != Field::Index)
        else {
            return false;
        };
        self.fields.remove(pos);
        warnings.push(format!(
            "`{}` does not know `{name}`; reading without it",
            self.program.display()
        ));
        true
    }
}

/// nvidia-smi's exit codes for "no GPU" (6), "driver not loaded" (9) and "NVML not found" (12).
const UNAVAILABLE_EXIT_CODES: [i32; 3] = [6, 9, 12];

/// Reads a pipe to its end on its own thread, so a full pipe never blocks the child.
fn drain(pipe: Option<impl Read + Send + 'static>) -> mpsc::Receiver<String> {
    let (tx, rx) = mpsc::channel();
    if let Some(mut pipe) = pipe {
        std::thread::spawn(move || {
            let mut buf = Vec::new();
            let _ = pipe.read_to_end(&mut buf);
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

    fn fixture(name: &str) -> String {
        let path = format!(
            "{}/../../tests/fixtures/gpu/{name}",
            env!("CARGO_MANIFEST_DIR")
        );
        std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
    }

    /// Guards the query the fake nvidia-smi checks for: the fixture's columns are ours, in order.
    #[test]
    fn query_matches_the_fixture_columns() {
        assert_eq!(
            fixture("query-gpu.args").trim(),
            format!("{} {FORMAT_ARG}", query_gpu_arg(&Field::ALL))
        );
        assert_eq!(
            fixture("query-compute-apps.args").trim(),
            format!("{QUERY_COMPUTE_APPS_ARG} {FORMAT_ARG}")
        );
    }

    /// Guards parsing of the fixture: units converted, `[N/A]` and `[Not Supported]` empty,
    /// the malformed line skipped with a warning.
    #[test]
    fn parses_the_fixture_output() {
        let parsed = parse_query_gpu(&Field::ALL, &fixture("query-gpu.csv"));
        assert_eq!(parsed.gpus.len(), 2, "{parsed:#?}");
        assert_eq!(parsed.driver_version.as_deref(), Some("535.104.05"));
        assert_eq!(parsed.warnings.len(), 1, "{:?}", parsed.warnings);
        assert!(
            parsed.warnings[0].contains("line 2 skipped"),
            "{:?}",
            parsed.warnings
        );

        let g0 = &parsed.gpus[0];
        assert_eq!(g0.index, 0);
        assert_eq!(g0.name.as_deref(), Some("NVIDIA GeForce RTX 3090"));
        assert_eq!(g0.compute_capability.as_deref(), Some("8.6"));
        assert_eq!(
            (g0.pcie_generation, g0.pcie_max_generation),
            (Some(4), Some(4))
        );
        assert_eq!(
            (g0.pcie_link_width, g0.pcie_max_link_width),
            (Some(16), Some(16))
        );
        assert_eq!(g0.memory_total_bytes, Some(24576 * MIB));
        assert_eq!(g0.memory_used_bytes, Some(10240 * MIB));
        assert_eq!(g0.memory_free_bytes, Some(13824 * MIB));
        assert_eq!(g0.power_draw_watts, Some(287.45));
        assert_eq!(g0.power_limit_watts, Some(350.0));
        assert_eq!(g0.fan_speed_percent, Some(57));
        assert_eq!(g0.fan_speeds_percent, vec![57]);
        assert_eq!(g0.performance_state.as_deref(), Some("P2"));
        assert_eq!(g0.mig_mode, None);

        let g1 = &parsed.gpus[1];
        assert_eq!(g1.index, 1);
        assert_eq!(g1.power_draw_watts, None, "[N/A]");
        assert_eq!(g1.fan_speed_percent, None, "[Not Supported]");
        assert!(g1.fan_speeds_percent.is_empty());
        assert_eq!(
            g1.mig_mode,
            Some(MigMode {
                enabled: false,
                pending_enabled: true
            })
        );
    }

    /// Guards malformed input: every kind of bad line is skipped or emptied, never a panic.
    #[test]
    fn survives_malformed_lines() {
        let fields = [
            Field::Index,
            Field::Name,
            Field::MemoryTotal,
            Field::PowerDraw,
        ];
        let text = "\
0, A, 1024, 10.5
1, B
x, C, 1, 1
2, D, lots, [Unknown Error]
3, E, 2048, N/A
4, Name, with a comma, 1, 1
\u{0}\u{ff}, \u{7f}, , 
";
        let parsed = parse_query_gpu(&fields, text);
        let indexes: Vec<u32> = parsed.gpus.iter().map(|g| g.index).collect();
        assert_eq!(indexes, vec![0, 2, 3], "{:?}", parsed.warnings);
        assert_eq!(parsed.gpus[1].memory_total_bytes, None);
        assert_eq!(parsed.gpus[1].power_draw_watts, None);
        assert_eq!(parsed.gpus[2].name.as_deref(), Some("E"));
        assert_eq!(parsed.gpus[2].memory_total_bytes, Some(2048 * MIB));
        assert_eq!(parsed.gpus[2].power_draw_watts, None);
        let w = parsed.warnings.join("\n");
        assert!(w.contains("line 2 skipped: 2 values where 4"), "{w}");
        assert!(w.contains("line 3 skipped: no GPU index"), "{w}");
        assert!(w.contains("`memory.total` is not a number: `lots`"), "{w}");
        // nvidia-smi does not quote, so a comma in a value shifts the columns: skipped.
        assert!(w.contains("line 6 skipped: 5 values where 4"), "{w}");
        assert!(w.contains("line 7 skipped"), "{w}");
        assert_eq!(parse_query_gpu(&fields, ""), ParsedGpus::default());
    }

    /// Guards the process list parse, including `[N/A]` memory and a malformed line.
    #[test]
    fn parses_compute_apps() {
        let (apps, warnings) = parse_compute_apps(&fixture("query-compute-apps.csv"));
        assert_eq!(apps.len(), 2, "{warnings:?}");
        assert_eq!(warnings.len(), 1, "{warnings:?}");
        assert_eq!(apps[0].1.pid, 4242);
        assert_eq!(apps[0].1.name.as_deref(), Some("python3"));
        assert_eq!(apps[0].1.used_memory_bytes, Some(8192 * MIB));
        assert_eq!(apps[1].1.used_memory_bytes, None);
    }

    /// Guards recognising an older nvidia-smi's refusal of a column.
    #[test]
    fn recognises_an_unknown_field() {
        assert_eq!(
            parse_invalid_field("Field \"compute_cap\" is not a valid field to query."),
            Some("compute_cap")
        );
        assert_eq!(parse_invalid_field("No devices were found"), None);
        assert_eq!(parse_invalid_field("Field \"x"), None);
    }

    /// Guards the retry without a column an older nvidia-smi does not know.
    #[test]
    fn drops_a_refused_field_but_never_the_index() {
        let mut smi = NvidiaSmi::new("nvidia-smi".into(), Duration::from_secs(1));
        let mut warnings = Vec::new();
        assert!(smi.drop_unknown_field(
            "Field \"compute_cap\" is not a valid field to query.",
            &mut warnings
        ));
        assert!(!smi.fields.contains(&Field::ComputeCap));
        assert!(!smi.drop_unknown_field(
            "Field \"compute_cap\" is not a valid field to query.",
            &mut warnings
        ));
        assert!(!smi.drop_unknown_field(
            "Field \"index\" is not a valid field to query.",
            &mut warnings
        ));
        assert_eq!(warnings.len(), 1);
    }

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
