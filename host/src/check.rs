//! `vitals plugin check`: loads one library (or runs one program), reports its versions, ABI verdict and capabilities, and runs its contract under a deadline.

use std::fmt::Write as _;
use std::path::Path;
use std::time::Duration;

use abi_stable::std_types::RStr;
use serde_json::{json, Value};
use vitals_plugin_api::abi::{log_level, HostLog, LogLevel, PluginError};
use vitals_plugin_api::{InitParams, PluginModuleRef};

use crate::config::{self, ExecMode};
use crate::loader::{self, LoadError, LoadedPlugin};
use crate::worker::exec::{self, ExecSpec};
use crate::worker::{ExecWorker, Job, Outcome, Reply, ThreadWorker};

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

/// The arguments of `vitals plugin check`.
#[derive(Debug, Clone, clap::Args)]
pub struct CheckArgs {
    /// A plugin library (`….so`), or a program and its arguments (put them after `--`:
    /// `vitals plugin check --mode nagios -- check_load -w 5,4,3 -c 10,8,6`).
    #[arg(required = true, num_args = 1.., value_name = "LIBRARY | PROGRAM [ARG]...")]
    pub target: Vec<String>,
    /// Check a program in this mode: `oneshot` (the default for a program), `daemon` or `nagios`.
    #[arg(long, value_parser = parse_mode)]
    pub mode: Option<ExecMode>,
    /// The plugin's own config table (what goes under `[collectors.NAME.config]`), as a TOML
    /// file or inline TOML (`--plugin-config 'resources = ["cpu"]'`); default `{}`. Not the
    /// host's config file, which the global `--config` names.
    #[arg(long, value_name = "FILE | TOML")]
    pub plugin_config: Option<String>,
    /// How long one call into the plugin (one run of a program) may take.
    #[arg(long, default_value = "10s", value_parser = humantime::parse_duration)]
    pub deadline: Duration,
}

fn parse_mode(text: &str) -> Result<ExecMode, String> {
    serde_json::from_value(Value::String(text.to_owned()))
        .map_err(|_| format!("`{text}`: expected oneshot, daemon or nagios"))
}

impl CheckArgs {
    /// True when the target is a plugin library rather than a program.
    pub fn is_library(&self) -> bool {
        self.mode.is_none()
            && self.target.len() == 1
            && self.target[0].ends_with(std::env::consts::DLL_SUFFIX)
    }
}

/// The plugin's own table from a file or inline TOML.
///
/// # Errors
/// A message when the file cannot be read or the text is not a TOML table.
pub fn read_plugin_config(source: &str) -> Result<Value, String> {
    let (text, what) = if Path::new(source).is_file() {
        (
            std::fs::read_to_string(source).map_err(|e| format!("{source}: {e}"))?,
            source.to_owned(),
        )
    } else {
        (source.to_owned(), "the inline TOML".to_owned())
    };
    let table: toml::Table = toml::from_str(&text)
        .map_err(|e| format!("{what} is not a TOML table: {}", e.message().trim()))?;
    Ok(crate::table_to_json(&table))
}

/// Runs `vitals plugin check` on a library or a program, printing the report; true when it passes.
pub fn run_args(args: &CheckArgs) -> bool {
    let report = match args.plugin_config.as_deref().map(read_plugin_config) {
        Some(Err(e)) => {
            let mut r = Report::default();
            r.problem("plugin config", e);
            r
        }
        config => {
            let config = config.and_then(Result::ok);
            if args.is_library() {
                check_with(Path::new(&args.target[0]), args.deadline, config)
            } else {
                check_program(args, config.unwrap_or_else(|| json!({})))
            }
        }
    };
    print!("{}", report.render());
    report.passed()
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
    check_with(path, deadline, None)
}

/// [`check`] with the plugin's own table (`None`: the default `{}`).
pub fn check_with(path: &Path, deadline: Duration, config: Option<Value>) -> Report {
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
    contract(plugin.module, deadline, config, &mut report);
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
        let worker = ThreadWorker::new("check", module, HostLog { log: print_log });
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
fn contract(
    module: PluginModuleRef,
    deadline: Duration,
    config: Option<Value>,
    report: &mut Report,
) {
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

    let what = match &config {
        Some(c) => format!("the given config {c}"),
        None => "the default config {}".to_owned(),
    };
    match worker.ask(Job::Create(init_json(config.unwrap_or_else(|| json!({}))))) {
        Ok((Ok(_), d)) => report.line("create", format!("ok with {what} in {}", took(d))),
        Ok((Err(PluginError::Unavailable(reason)), _)) => {
            report.line("create", format!("unavailable on this machine: {reason}"));
            return;
        }
        Ok((Err(e), _)) => return report.problem("create", format!("{what} gave `{e}`")),
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

/// Runs a program as the host would (for a daemon, one process answering both collects),
/// each run or answer bounded by the deadline, and checks its answers.
fn check_program(args: &CheckArgs, config: Value) -> Report {
    let mut report = Report::default();
    let mode = args.mode.unwrap_or_default();
    report.line("command", args.target.join(" "));
    let mode_name = serde_json::to_value(mode)
        .ok()
        .and_then(|v| v.as_str().map(str::to_owned))
        .unwrap_or_default();
    report.line("mode", mode_name.clone());
    report.line("protocol", format!("exec/{}", exec::PROTOCOL_VERSION));
    let cwd = std::env::current_dir().unwrap_or_else(|_| ".".into());
    let spec = config::parse("", Path::new("<check>"), &cwd)
        .map_err(|e| e.to_string())
        .and_then(|host| {
            let mut table = toml::Table::new();
            table.insert(
                "command".into(),
                toml::Value::Array(
                    args.target
                        .iter()
                        .cloned()
                        .map(toml::Value::String)
                        .collect(),
                ),
            );
            table.insert("mode".into(), toml::Value::String(mode_name));
            let c: config::CollectorConfig = toml::Value::Table(table)
                .try_into()
                .map_err(|e: toml::de::Error| e.to_string())?;
            ExecSpec::from_config(&host, &c)
        });
    let spec = match spec {
        Ok(s) => s,
        Err(e) => {
            report.problem("program", e);
            return report;
        }
    };
    report.line("program", spec.program.display().to_string());
    if mode != ExecMode::Nagios {
        report.line("config", config.to_string());
    }
    let deadline = args.deadline;
    report.line("deadline", humantime::format_duration(deadline).to_string());
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            report.problem("contract", format!("cannot start a runtime: {e}"));
            return report;
        }
    };
    let mut worker = ExecWorker::new("check", spec, &config, deadline);
    runtime.block_on(async {
        match worker.call(Job::Create(String::new()), deadline).await {
            Outcome::Done((Ok(_), _)) => {}
            Outcome::Done((Err(e), _)) => return report.problem("start", e.to_string()),
            Outcome::TimedOut => return report.problem("start", "did not start in time".into()),
            Outcome::Gone(why) => return report.problem("start", why),
        }
        for label in ["collect", "collect again"] {
            match worker.call(Job::Collect, deadline).await {
                Outcome::Done((Ok(Some(json)), d)) => match section_summary(mode, &json) {
                    Ok(summary) => report.line(label, format!("ok in {}: {summary}", took(d))),
                    Err(e) => report.problem(label, e),
                },
                Outcome::Done((Ok(None), _)) => report.problem(label, "no section".into()),
                Outcome::Done((Err(PluginError::Unavailable(reason)), _)) => {
                    report.line(label, format!("unavailable on this machine: {reason}"));
                    break;
                }
                Outcome::Done((Err(e), _)) => return report.problem(label, e.to_string()),
                Outcome::TimedOut => {
                    return report.problem(
                        label,
                        format!(
                            "did not answer within the deadline of {}",
                            humantime::format_duration(deadline)
                        ),
                    )
                }
                Outcome::Gone(why) => return report.problem(label, why),
            }
        }
        worker.take_series();
        worker.kill().await;
    });
    let series = worker.series();
    let series = if series.is_empty() {
        "none".to_owned()
    } else {
        series
            .iter()
            .map(|s| {
                format!(
                    "{} ({})",
                    s.name,
                    if s.unit.is_empty() { "-" } else { &s.unit }
                )
            })
            .collect::<Vec<_>>()
            .join(", ")
    };
    report.line("series", series);
    report
}

/// What one answer holds: fields, or for a check its state and perfdata.
fn section_summary(mode: ExecMode, json: &str) -> Result<String, String> {
    let fields = check_section(json)?;
    if mode != ExecMode::Nagios {
        return Ok(format!("a section with {fields} field(s)"));
    }
    let v: Value = serde_json::from_str(json).map_err(|e| e.to_string())?;
    let perf = v["perfdata"].as_array().map_or(0, Vec::len);
    let mut text = format!(
        "state {} (exit {}), {perf} perfdata value(s)",
        v["state"].as_str().unwrap_or("?"),
        v["exit_code"]
    );
    if let Some(p) = v["perfdata_problems"].as_array() {
        text.push_str(&format!(", {} unreadable", p.len()));
    }
    Ok(text)
}

/// A section must be a JSON object within the host's bounds (size, depth); returns how many
/// top-level fields it has.
fn check_section(json: &str) -> Result<usize, String> {
    let raw = crate::worker::take_section(json.to_owned()).map_err(|e| {
        e.replace(
            "the plugin returned invalid JSON",
            "the section is not valid JSON",
        )
    })?;
    let value: Value = serde_json::from_str(raw.get())
        .map_err(|e| format!("the section is not valid JSON: {e}"))?;
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

    /// Guards the plugin's own table: from a file, inline, and a clear error for bad TOML.
    #[test]
    fn plugin_config_from_a_file_or_inline() {
        assert_eq!(
            read_plugin_config("resources = [\"cpu\"]\nlimit = 3"),
            Ok(json!({"resources": ["cpu"], "limit": 3}))
        );
        let dir = std::env::temp_dir().join(format!("vitals-check-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("dir");
        let file = dir.join("table.toml");
        std::fs::write(&file, "a = 1\n").expect("write");
        assert_eq!(
            read_plugin_config(&file.display().to_string()),
            Ok(json!({"a": 1}))
        );
        let _ = std::fs::remove_dir_all(&dir);
        assert!(read_plugin_config("a = ")
            .unwrap_err()
            .starts_with("the inline TOML is not a TOML table"));
    }

    /// Guards what counts as a library: one `.so` argument and no mode.
    #[test]
    fn a_library_is_one_so_without_a_mode() {
        let args = |target: &[&str], mode: Option<ExecMode>| CheckArgs {
            target: target.iter().map(|s| (*s).to_owned()).collect(),
            mode,
            plugin_config: None,
            deadline: Duration::from_secs(1),
        };
        assert!(args(&["libx.so"], None).is_library());
        assert!(!args(&["libx.so"], Some(ExecMode::Oneshot)).is_library());
        assert!(!args(&["./collect.py"], None).is_library());
        assert!(!args(&["prog", "x.so"], None).is_library());
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
