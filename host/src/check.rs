//! `vitals plugin check PATH`: loads one library, reports its versions, ABI verdict and capabilities, and runs its contract under a deadline.

use std::fmt::Write as _;
use std::path::Path;
use std::time::Duration;

use abi_stable::std_types::RStr;
use serde_json::{json, Value};
use vitals_plugin_api::abi::{log_level, HostLog, LogLevel, PluginError};
use vitals_plugin_api::{InitParams, PluginModuleRef};

use crate::loader::{self, LoadError, LoadedPlugin};
use crate::worker::{Job, Outcome, Reply, ThreadWorker};

/// The outcome of checking one library: the lines to print and whether it passed.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Report {
    /// `(label, value)` pairs, in the order they were found.
    pub lines: Vec<(String, String)>,
    /// Every problem found; the check passes when there is none.
    pub problems: Vec<String>,
}

impl Report {
    fn line(&mut self, label: &str, value: impl Into<String>) {
        self.lines.push((label.to_owned(), value.into()));
    }

    fn problem(&mut self, label: &str, problem: String) {
        self.line(label, format!("FAIL: {problem}"));
        self.problems.push(problem);
    }

    /// True when no problem was found.
    pub fn passed(&self) -> bool {
        self.problems.is_empty()
    }

    /// The report as the command prints it.
    pub fn render(&self) -> String {
        let width = self.lines.iter().map(|(l, _)| l.len()).max().unwrap_or(0) + 1;
        let mut out = String::new();
        for (label, value) in &self.lines {
            let _ = writeln!(out, "{:<width$} {value}", format!("{label}:"));
        }
        let verdict = if self.passed() {
            "PASS".to_owned()
        } else {
            format!("FAIL ({} problem(s))", self.problems.len())
        };
        let _ = writeln!(out, "{:<width$} {verdict}", "result:");
        out
    }
}

/// Checks the plugin at `path`, printing a report to stdout; true when it passes.
pub fn run(path: &Path, deadline: Duration) -> bool {
    let report = check(path, deadline);
    print!("{}", report.render());
    report.passed()
}

/// Loads the library at `path` and runs its contract, each call bounded by `deadline`.
///
/// The library stays loaded; a call that overruns the deadline is left running on its thread.
pub fn check(path: &Path, deadline: Duration) -> Report {
    let mut report = Report::default();
    report.line("library", path.display().to_string());
    let plugin = match loader::load(path) {
        Ok(p) => p,
        Err(e) => {
            report.line("host API", loader::host_api_version());
            match e {
                LoadError::IncompatibleVersion { .. } | LoadError::IncompatibleLayout { .. } => {
                    report.problem("ABI", format!("incompatible: {e}"))
                }
                _ => report.problem("load", e.to_string()),
            }
            return report;
        }
    };
    describe(&plugin, &mut report);
    contract(plugin.module, deadline, &mut report);
    report
}

fn describe(plugin: &LoadedPlugin, report: &mut Report) {
    let info = &plugin.info;
    report.line("plugin", format!("{} {}", info.name, info.version));
    if !info.description.is_empty() {
        report.line("description", info.description.clone());
    }
    report.line(
        "plugin API",
        format!(
            "{} (this host: {})",
            info.api_version,
            loader::host_api_version()
        ),
    );
    report.line("ABI", "compatible");
    if info.name.trim().is_empty() {
        report.problem(
            "name",
            "the plugin describes itself without a name".to_owned(),
        );
    }
    let extension = if plugin.module.extension().is_some() {
        "present"
    } else {
        "absent"
    };
    report.line("extension", extension);
    let series = if info.series.is_empty() {
        "none".to_owned()
    } else {
        info.series
            .iter()
            .map(|s| format!("{} ({})", s.name, s.unit))
            .collect::<Vec<_>>()
            .join(", ")
    };
    report.line("series", series);
}

/// Prints a plugin's log record to stderr as `PLUGIN LEVEL: message`.
extern "C" fn print_log(level: LogLevel, plugin: RStr<'_>, message: RStr<'_>) {
    let level = log_level::to_level(level).unwrap_or(log::Level::Trace);
    eprintln!("{plugin} {level}: {message}");
}

/// The calls of the check, each bounded by `deadline`, on the same thread worker the host uses.
struct Checker {
    worker: ThreadWorker,
    deadline: Duration,
    runtime: tokio::runtime::Runtime,
}

impl Checker {
    fn new(module: PluginModuleRef, deadline: Duration) -> std::io::Result<Self> {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()?;
        let worker = ThreadWorker::spawn("check", module, HostLog { log: print_log })?;
        Ok(Self {
            worker,
            deadline,
            runtime,
        })
    }

    /// Sends one job and waits at most the deadline for its answer.
    fn ask(&mut self, job: Job) -> Result<Reply, String> {
        match self.runtime.block_on(self.worker.call(job, self.deadline)) {
            Outcome::Done(reply) => Ok(reply),
            Outcome::TimedOut => Err(format!(
                "did not return within the deadline of {}",
                humantime::format_duration(self.deadline)
            )),
            Outcome::Gone(_) => Err("the plugin's thread stopped without answering".to_owned()),
        }
    }
}

fn init_json(config: Value) -> String {
    serde_json::to_string(&InitParams::new("check", config)).unwrap_or_default()
}

fn took(d: Duration) -> String {
    format!("{:.1} ms", d.as_secs_f64() * 1000.0)
}

/// The contract, as `vitals_plugin_api::testing` checks it in-process, but through the ABI.
fn contract(module: PluginModuleRef, deadline: Duration, report: &mut Report) {
    report.line("deadline", humantime::format_duration(deadline).to_string());
    let mut worker = match Checker::new(module, deadline) {
        Ok(w) => w,
        Err(e) => {
            report.problem("contract", format!("cannot start a thread: {e}"));
            return;
        }
    };

    let unknown = init_json(json!({ "no_such_key_in_any_config": 1 }));
    match worker.ask(Job::Create(unknown)) {
        Ok((Err(PluginError::InvalidConfig(_)), _)) => {
            report.line("unknown key", "refused as invalid config");
        }
        Ok((Err(e), _)) => report.problem(
            "unknown key",
            format!("an unknown config key gave `{e}`, not invalid config"),
        ),
        Ok((Ok(_), _)) => report.problem(
            "unknown key",
            "an unknown config key was accepted (use #[serde(deny_unknown_fields)])".to_owned(),
        ),
        Err(e) => return report.problem("unknown key", format!("create {e}")),
    }

    match worker.ask(Job::Create(init_json(json!({})))) {
        Ok((Ok(_), d)) => report.line(
            "create",
            format!("ok with the default config {{}} in {}", took(d)),
        ),
        Ok((Err(PluginError::Unavailable(reason)), _)) => {
            report.line("create", format!("unavailable on this machine: {reason}"));
            return;
        }
        Ok((Err(e), _)) => {
            return report.problem("create", format!("the default config {{}} gave `{e}`"))
        }
        Err(e) => return report.problem("create", e),
    }

    match worker.ask(Job::Collect) {
        Ok((Ok(json), d)) => match check_section(json.as_deref().unwrap_or_default()) {
            Ok(fields) => report.line(
                "collect",
                format!("ok in {}: a section with {fields} field(s)", took(d)),
            ),
            Err(e) => report.problem("collect", e),
        },
        Ok((Err(PluginError::Unavailable(reason)), _)) => {
            report.line("collect", format!("unavailable on this machine: {reason}"));
        }
        Ok((Err(e), _)) => report.problem("collect", e.to_string()),
        Err(e) => report.problem("collect", e),
    }
}

/// A section must be a JSON object; returns how many top-level fields it has.
fn check_section(json: &str) -> Result<usize, String> {
    let value: Value =
        serde_json::from_str(json).map_err(|e| format!("the section is not valid JSON: {e}"))?;
    value
        .as_object()
        .map(|o| o.len())
        .ok_or_else(|| format!("the section is {value}, not a JSON object"))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Guards the section shape check shared by every collect.
    #[test]
    fn sections_must_be_json_objects() {
        assert_eq!(check_section(r#"{"a":1,"b":[2]}"#), Ok(2));
        assert!(check_section("[1]")
            .unwrap_err()
            .contains("not a JSON object"));
        assert!(check_section("{").unwrap_err().contains("not valid JSON"));
    }

    /// Guards the printed verdict: any problem turns PASS into FAIL.
    #[test]
    fn report_renders_every_line_and_the_verdict() {
        let mut r = Report::default();
        r.line("plugin", "x 1.0.0");
        assert!(r.render().ends_with("result: PASS\n"), "{}", r.render());
        r.problem("collect", "boom".to_owned());
        let text = r.render();
        assert!(text.contains("collect: FAIL: boom"), "{text}");
        assert!(text.contains("result:  FAIL (1 problem(s))"), "{text}");
        assert!(!r.passed());
    }

    /// Guards the message for a file that does not exist.
    #[test]
    fn a_missing_file_fails_with_its_path() {
        let r = check(Path::new("/nonexistent/libx.so"), Duration::from_secs(1));
        assert!(!r.passed());
        assert!(
            r.render().contains("not found: /nonexistent/libx.so"),
            "{}",
            r.render()
        );
    }
}
