//! The docker and process plugin benches (`cargo bench`), run and folded into the table: their figures are parsed from what they print and judged here.

use crate::setup;
use crate::table::Row;
use crate::target::{DOCKER_100, PROCESSES_5000};
use crate::verdict::Reading;

/// The docker figure's row.
pub const DOCKER_FIGURE: &str = "Docker: 100 containers, wall and CPU per collect";
/// The command behind the docker figure.
pub const DOCKER_COMMAND: &str = "cargo bench -p vitals-plugin-docker --bench docker -- 100";
/// The process figure's row.
pub const PROCESS_FIGURE: &str =
    "Processes: 5,000 processes, top-10 lists vs `ps -eo pid,pcpu,rss,stat,args`";
/// The command behind the process figure.
pub const PROCESS_COMMAND: &str = "cargo bench -p vitals-plugin-process --bench processes -- 5000";
/// How many sleeping processes the process figure needs.
const PROCESSES: usize = 5000;

/// Wall and CPU milliseconds per collect from the docker bench's `100 containers, vitals auto:` line.
///
/// # Errors
/// When the line is missing or its numbers do not parse.
pub fn parse_docker_bench(text: &str) -> Result<(f64, f64), String> {
    let line = text
        .lines()
        .find_map(|l| l.strip_prefix("100 containers, vitals auto:"))
        .ok_or("the docker bench printed no figure for 100 containers")?;
    // `4.49 ms wall (target <= 50 ms: met), 2.670 ms CPU (target <= 5 ms: met)`
    let before = |unit: &str| -> Result<f64, String> {
        let head = line
            .split(unit)
            .next()
            .filter(|h| h.len() < line.len())
            .ok_or_else(|| format!("no `{unit}` in `{line}`"))?;
        head.rsplit(|c: char| c == ',' || c == ':' || c.is_whitespace())
            .find(|w| !w.is_empty())
            .and_then(|w| w.parse().ok())
            .ok_or_else(|| format!("no number before `{unit}` in `{line}`"))
    };
    Ok((before(" ms wall")?, before(" ms CPU")?))
}

/// The processes forked and the collector/ps wall ratio from the process bench's output.
///
/// # Errors
/// When the collector's row or the ratio line is missing.
pub fn parse_process_bench(text: &str) -> Result<(usize, f64), String> {
    // `      5000       5123  collector  …`: sleepers forked, processes seen, tool.
    let forked = text
        .lines()
        .rev()
        .find_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            (f.get(2) == Some(&"collector")).then(|| f.first()?.parse::<usize>().ok())?
        })
        .ok_or("the process bench printed no collector row")?;
    let ratio = text
        .lines()
        .rev()
        .find_map(|l| {
            let rest = l.split("collector/ps: wall ").nth(1)?;
            rest.split('x').next()?.trim().parse::<f64>().ok()
        })
        .ok_or("the process bench printed no ratio")?;
    Ok((forked, ratio))
}

/// The docker figure's row from the bench's output (or why it did not run).
pub fn docker_row(output: Result<String, String>) -> Row {
    let reading = match output.and_then(|t| parse_docker_bench(&t)) {
        Ok((wall, cpu)) => Reading::of(vec![wall, cpu]),
        Err(why) => Reading::nothing(why),
    };
    Row::judged(
        DOCKER_FIGURE,
        format!("`{DOCKER_COMMAND}` (30 collects, median wall, mean CPU)"),
        &DOCKER_100,
        &reading,
    )
}

/// The process figure's row from the bench's output (or why it did not run).
pub fn process_row(output: Result<String, String>) -> Row {
    let (how, reading) = match output.and_then(|t| parse_process_bench(&t)) {
        Ok((forked, ratio)) => (
            format!("`{PROCESS_COMMAND}` (10 cycles each), {forked} sleeping processes forked"),
            Reading::of(vec![ratio]).require(setup::forked_enough(forked, PROCESSES)),
        ),
        Err(why) => (format!("`{PROCESS_COMMAND}`"), Reading::nothing(why)),
    };
    Row::judged(PROCESS_FIGURE, how, &PROCESSES_5000, &reading)
}

/// Runs `cargo ARGS` in the workspace; its standard output, echoed to stderr.
fn cargo(args: &str) -> Result<String, String> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned());
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    eprintln!("running `{args}`");
    let out = std::process::Command::new(&cargo)
        .args(args.split_whitespace().skip(1))
        .current_dir(&root)
        .stderr(std::process::Stdio::inherit())
        .output()
        .map_err(|e| format!("cannot run cargo: {e}"))?;
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    eprint!("{text}");
    if out.status.success() {
        Ok(text)
    } else {
        Err(format!("`{args}` failed ({})", out.status))
    }
}

/// Runs both plugin benches and returns their rows.
pub fn rows() -> Vec<Row> {
    vec![
        docker_row(cargo(DOCKER_COMMAND)),
        process_row(cargo(PROCESS_COMMAND)),
    ]
}

/// The rows when the plugin benches were not asked for.
pub fn not_run() -> Vec<Row> {
    [
        (DOCKER_FIGURE, DOCKER_100, DOCKER_COMMAND),
        (PROCESS_FIGURE, PROCESSES_5000, PROCESS_COMMAND),
    ]
    .into_iter()
    .map(|(fig, target, cmd)| {
        Row::not_measured(
            fig,
            &target,
            &format!("pass --plugin-benches, or run `{cmd}`"),
        )
    })
    .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::verdict::Verdict;

    const PROCESS_OUTPUT: &str = "  sleepers  processes       tool   wall ms (mean)
      5000       5123  collector            9.10            8.80            8.00
      5000       5123         ps           70.00           68.00           60.00
           collector/ps: wall 0.13x, cpu 0.13x; files the collector kept open: 5123
";

    /// Guards the process figure: the forked count and ratio come from the bench's output,
    /// and a short fork is "not measured".
    #[test]
    fn process_row_needs_every_fork() {
        assert_eq!(parse_process_bench(PROCESS_OUTPUT), Ok((5000, 0.13)));
        let row = process_row(Ok(PROCESS_OUTPUT.to_owned()));
        assert_eq!(row.verdict, Verdict::Met);
        assert_eq!(row.value, "0.13 x ps's time");
        let short = PROCESS_OUTPUT.replace(
            "      5000       5123  collector",
            "      3187       3310  collector",
        );
        let row = process_row(Ok(short));
        assert_eq!(
            row.verdict,
            Verdict::NotMeasured("forking stopped at 3187 of 5000 processes".to_owned())
        );
        let row = process_row(Ok("nothing useful".to_owned()));
        assert!(matches!(row.verdict, Verdict::NotMeasured(_)));
    }

    /// Guards the docker figure: both numbers are parsed and judged against the table's own target.
    #[test]
    fn docker_row_is_judged_from_its_numbers() {
        let line = "100 containers, vitals auto: 4.49 ms wall (target <= 50 ms: met), 2.670 ms CPU (target <= 5 ms: met)\n";
        assert_eq!(parse_docker_bench(line), Ok((4.49, 2.67)));
        let row = docker_row(Ok(line.to_owned()));
        assert_eq!(row.verdict, Verdict::Met);
        assert_eq!(row.value, "wall 4.490 ms, CPU 2.670 ms");
        let slow = line.replace("2.670 ms CPU", "5.100 ms CPU");
        assert_eq!(docker_row(Ok(slow)).verdict, Verdict::Missed);
        let row = docker_row(Err("`cargo bench` failed".to_owned()));
        assert_eq!(row.verdict.text(), "not measured: `cargo bench` failed");
    }
}
