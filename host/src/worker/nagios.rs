//! Nagios check plugins: an exit code and `TEXT|PERFDATA` output mapped to a section with a check state and chartable perfdata.

use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use vitals_plugin_api::Series;

use super::perfdata::{self, Unit};

/// The state a check reports through its exit code.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CheckState {
    /// Exit code 0.
    Ok,
    /// Exit code 1.
    Warning,
    /// Exit code 2.
    Critical,
    /// Exit code 3: the check could not decide (bad arguments, no access).
    Unknown,
}

impl CheckState {
    /// The state of exit code `code`; `None` for codes outside 0 to 3.
    pub fn from_exit_code(code: i32) -> Option<CheckState> {
        match code {
            0 => Some(Self::Ok),
            1 => Some(Self::Warning),
            2 => Some(Self::Critical),
            3 => Some(Self::Unknown),
            _ => None,
        }
    }
}

/// The text of a check's output, split as the guidelines lay it out.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CheckOutput<'a> {
    /// The first line's text (before its `|`).
    pub message: &'a str,
    /// The lines after the first, up to a `|` (the "long text").
    pub long_output: String,
    /// Every perfdata part: after the first line's `|`, and after the `|` of the long text
    /// with all the lines that follow it.
    pub perfdata: String,
}

/// Splits `TEXT|PERF` on the first line and `LONG TEXT|PERF\nPERF…` after it.
pub fn parse_check_output(stdout: &str) -> CheckOutput<'_> {
    let mut lines = stdout.lines();
    let first = lines.next().unwrap_or_default();
    let (message, mut perf) = match first.split_once('|') {
        Some((m, p)) => (m, p.to_owned()),
        None => (first, String::new()),
    };
    let mut long = Vec::new();
    let mut in_perf = false;
    for line in lines {
        if in_perf {
            perf.push(' ');
            perf.push_str(line);
        } else if let Some((text, p)) = line.split_once('|') {
            long.push(text);
            perf.push(' ');
            perf.push_str(p);
            in_perf = true;
        } else {
            long.push(line);
        }
    }
    let long_output = long.join("\n").trim_end().to_owned();
    CheckOutput {
        message: message.trim(),
        long_output,
        perfdata: perf,
    }
}

/// The section of one check run: `state`, `exit_code`, `message`, `long_output`, `perfdata`
/// (one object per entry, values in base units) and `perfdata_problems` when some could not
/// be read.
pub fn section(state: CheckState, exit_code: i32, stdout: &str) -> Value {
    let out = parse_check_output(stdout);
    let parsed = perfdata::parse_perfdata(&out.perfdata);
    let mut section = json!({
        "state": state,
        "exit_code": exit_code,
        "message": out.message,
        "perfdata": parsed.entries.iter().map(perfdata::Perfdata::to_json).collect::<Vec<_>>(),
    });
    if !out.long_output.is_empty() {
        section["long_output"] = Value::String(out.long_output);
    }
    if !parsed.problems.is_empty() {
        section["perfdata_problems"] = json!(parsed.problems);
    }
    section
}

/// The series every Nagios collector has: the exit code, and one per unit of perfdata, each
/// labelled by the perfdata label (`check_load` fills `perfdata`, `check_disk` `perfdata_bytes`).
pub fn series() -> Vec<Series> {
    let mut all = vec![Series::new("exit_code", "/exit_code", "")];
    for unit in [
        Unit::Plain,
        Unit::Seconds(1.0),
        Unit::Percent,
        Unit::Bytes(1.0),
        Unit::Counter,
    ] {
        let suffix = unit.suffix();
        all.push(
            Series::new(
                &format!("perfdata{suffix}"),
                &format!("/perfdata/*/value{suffix}"),
                unit.series_unit(),
            )
            .labelled_by("label"),
        );
    }
    all
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Guards the exit-code mapping: 0 to 3 are states, anything else is not a check answer.
    #[test]
    fn exit_codes_map_to_states() {
        assert_eq!(CheckState::from_exit_code(0), Some(CheckState::Ok));
        assert_eq!(CheckState::from_exit_code(1), Some(CheckState::Warning));
        assert_eq!(CheckState::from_exit_code(2), Some(CheckState::Critical));
        assert_eq!(CheckState::from_exit_code(3), Some(CheckState::Unknown));
        assert_eq!(CheckState::from_exit_code(4), None);
        assert_eq!(CheckState::from_exit_code(137), None);
    }

    /// Guards the guidelines' multi-line layout: long text, and perfdata after a later `|`.
    #[test]
    fn multi_line_output() {
        let text = "DISK OK - free space: / 3326 MB (56%); | /=2643MB;5948;5958;0;5968\n/ 15272 MB (77%);\n/boot 68 MB (69%);\n/home 69357 MB (27%);\n/var/log 819 MB (84%); | /boot=68MB;88;93;0;98\n/home=69357MB;253404;253409;0;253414 \n/var/log=818MB;970;975;0;980\n";
        let out = parse_check_output(text);
        assert_eq!(out.message, "DISK OK - free space: / 3326 MB (56%);");
        assert_eq!(
            out.long_output,
            "/ 15272 MB (77%);\n/boot 68 MB (69%);\n/home 69357 MB (27%);\n/var/log 819 MB (84%); "
                .trim_end()
        );
        let s = section(CheckState::Ok, 0, text);
        let labels: Vec<_> = s["perfdata"]
            .as_array()
            .map(|a| a.iter().filter_map(|e| e["label"].as_str()).collect())
            .unwrap_or_default();
        assert_eq!(labels, ["/", "/boot", "/home", "/var/log"]);
        assert_eq!(s["perfdata"][1]["value_bytes"], json!(68.0 * 1048576.0));
    }

    /// Guards the section of a real check_load line, and the series that pick its values.
    #[test]
    fn check_load_section_and_series() {
        let text = "LOAD WARNING - total load average: 6.64, 7.00, 4.47|load1=6.640;5.000;10.000;0; load5=7.000;4.000;8.000;0; load15=4.470;3.000;6.000;0; \n";
        let s = section(CheckState::Warning, 1, text);
        assert_eq!(s["state"], "warning");
        assert_eq!(s["exit_code"], 1);
        assert_eq!(
            s["message"],
            "LOAD WARNING - total load average: 6.64, 7.00, 4.47"
        );
        assert!(s.get("long_output").is_none(), "{s}");
        let plain = series()
            .into_iter()
            .find(|x| x.name == "perfdata")
            .expect("plain series");
        let values = crate::store::series_values(&plain, &s);
        assert_eq!(
            values,
            [
                (Some("load1".into()), 6.64),
                (Some("load5".into()), 7.0),
                (Some("load15".into()), 4.47)
            ]
        );
    }

    /// Guards output without perfdata or text at all.
    #[test]
    fn bare_outputs() {
        let s = section(CheckState::Critical, 2, "CRITICAL: down\n");
        assert_eq!(s["perfdata"], json!([]));
        assert_eq!(s["message"], "CRITICAL: down");
        let s = section(CheckState::Unknown, 3, "");
        assert_eq!(s["message"], "");
    }
}
