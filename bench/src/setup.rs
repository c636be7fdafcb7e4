//! What each figure's setup must have done before its values are judged, read from the readings and from vitals' own snapshots.

use serde_json::Value;

use crate::verdict::Reading;

/// The longest collector reason quoted in a "not measured" cell.
const REASON_CHARS: usize = 120;

/// Resident memory in MB, or "RSS unreadable" (never 0 for a memory that could not be read).
pub fn rss(read: Result<u64, String>) -> Reading {
    match read {
        Ok(0) => Reading::nothing("RSS unreadable: VmRSS read as 0"),
        Ok(bytes) => Reading::of(vec![bytes as f64 / 1e6]),
        Err(why) => Reading::nothing(format!("RSS unreadable: {why}")),
    }
}

/// How many of `ids` the docker section of `snapshot` lists.
///
/// # Errors
/// When the snapshot has no docker section or no container list (the reason says the
/// collector's state).
pub fn containers_listed(snapshot: &Value, ids: &[String]) -> Result<usize, String> {
    let Some(list) = snapshot["sections"]["docker"]["containers"].as_array() else {
        return Err(format!(
            "vitals listed no containers (docker was {})",
            describe_state(&snapshot["collectors"]["docker"])
        ));
    };
    Ok(list
        .iter()
        .filter_map(|c| c["id"].as_str())
        .filter(|id| ids.iter().any(|mine| mine == id))
        .count())
}

/// The container figure's setup: vitals listed every container the bench started, at the start
/// and at the end of the window (`listed` holds both counts).
pub fn enough_containers(listed: &[Result<usize, String>], wanted: usize) -> Result<(), String> {
    let mut fewest = usize::MAX;
    for l in listed {
        fewest = fewest.min(l.clone()?);
    }
    if listed.is_empty() || fewest < wanted {
        let n = if listed.is_empty() { 0 } else { fewest };
        return Err(format!(
            "vitals listed {n} containers (of the bench's {wanted}) during the window"
        ));
    }
    Ok(())
}

/// Faults the named collectors recorded between two snapshots (the growth of `errors_total`).
///
/// # Errors
/// When a snapshot could not be read, a collector or its counter is missing, or no fault
/// fired at all: the health figure under faults then measured nothing.
pub fn faults_fired(
    before: Result<&Value, String>,
    after: Result<&Value, String>,
    names: &[&str],
) -> Result<u64, String> {
    let before = before.map_err(|e| format!("the snapshot before the run was unreadable: {e}"))?;
    let after = after.map_err(|e| format!("the snapshot after the run was unreadable: {e}"))?;
    let mut fired = 0u64;
    for name in names {
        let count = |s: &Value| {
            s["collectors"][*name]["errors_total"]
                .as_u64()
                .ok_or_else(|| format!("collector `{name}` has no errors_total in the snapshot"))
        };
        fired += count(after)?.saturating_sub(count(before)?);
    }
    if fired == 0 {
        return Err(format!(
            "no fault fired during the run ({})",
            names.join(", ")
        ));
    }
    Ok(fired)
}

/// Every collector's `collects_total` in a snapshot, in the status map's order (the order the
/// event stream sends them in), for the check that each stream client caught up.
///
/// # Errors
/// When the snapshot has no collectors or one lacks the counter: "caught up with 0" would
/// hold for any client.
pub fn collect_counters(snapshot: &Value) -> Result<Vec<u64>, String> {
    let collectors = snapshot["collectors"]
        .as_object()
        .filter(|m| !m.is_empty())
        .ok_or("the snapshot after the stream window lists no collectors")?;
    collectors
        .iter()
        .map(|(name, v)| {
            v["collects_total"].as_u64().ok_or_else(|| {
                format!("collector `{name}` has no collects_total in the snapshot after the stream window")
            })
        })
        .collect()
}

/// The process figure's setup: forking reached the target count.
pub fn forked_enough(forked: usize, wanted: usize) -> Result<(), String> {
    if forked < wanted {
        return Err(format!("forking stopped at {forked} of {wanted} processes"));
    }
    Ok(())
}

/// An "extra CPU" figure (with minus without) is judged only when not negative: below zero
/// it is the machine's noise, not a cost of vitals.
pub fn extra_not_negative(extra: f64, with: f64, without: f64) -> Result<(), String> {
    if extra.is_nan() || extra < 0.0 {
        return Err(format!(
            "less CPU with the load ({with:.3}) than without it ({without:.3}): the difference is below this machine's noise"
        ));
    }
    Ok(())
}

/// The state of one collector's status block, with its reason when it has one.
fn describe_state(status: &Value) -> String {
    let state = status["state"].as_str().unwrap_or("absent");
    match status["reason"].as_str() {
        Some(reason) if state != "ok" => {
            let short: String = reason.chars().take(REASON_CHARS).collect();
            let more = if short.len() < reason.len() {
                "…"
            } else {
                ""
            };
            format!("{state} ({short}{more})")
        }
        _ => state.to_owned(),
    }
}

/// An "every collector" figure's setup: each named collector was ok at the start and at the
/// end of the window, recorded no error in it, and collected at least `min_collects` times
/// (a collector that was unavailable for part of the window collects less).
pub fn collectors_ok_throughout(
    before: &Value,
    after: &Value,
    names: &[&str],
    min_collects: u64,
) -> Result<(), String> {
    let mut problems = Vec::new();
    for name in names {
        let (b, a) = (&before["collectors"][*name], &after["collectors"][*name]);
        if b.is_null() || a.is_null() {
            problems.push(format!("{name} was not in the snapshot"));
            continue;
        }
        for (status, when) in [(b, "start"), (a, "end")] {
            if status["state"] != "ok" {
                problems.push(format!(
                    "{name} was {} at the {when} of the window",
                    describe_state(status)
                ));
            }
        }
        let counter = |s: &Value, key: &str| s[key].as_u64();
        match (counter(b, "errors_total"), counter(a, "errors_total")) {
            (Some(e0), Some(e1)) if e1 > e0 => {
                problems.push(format!("{name} failed {} times in the window", e1 - e0));
            }
            (Some(_), Some(_)) => {}
            _ => problems.push(format!("{name} has no errors_total")),
        }
        match (counter(b, "collects_total"), counter(a, "collects_total")) {
            (Some(c0), Some(c1)) if c1.saturating_sub(c0) < min_collects => problems.push(format!(
                "{name} collected {} times in the window (at least {min_collects} expected)",
                c1.saturating_sub(c0)
            )),
            (Some(_), Some(_)) => {}
            _ => problems.push(format!("{name} has no collects_total")),
        }
    }
    if problems.is_empty() {
        Ok(())
    } else {
        Err(problems.join("; "))
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::target::{
        DOCKERD_EXTRA, HEALTH_UNDER_FAULTS, IDLE_1S, IDLE_CONTAINERS, PROCESSES_5000, RSS, SSE_CPU,
        SSE_EVERY_UPDATE,
    };
    use crate::verdict::Verdict;

    fn not_measured(v: Verdict) -> String {
        match v {
            Verdict::NotMeasured(why) => why,
            other => panic!("expected not measured, got {other:?}"),
        }
    }

    /// Guards RSS: an unreadable RSS is "not measured", never 0 MB judged as met.
    #[test]
    fn unreadable_rss_is_not_zero() {
        let why = not_measured(rss(Err("No such file or directory".to_owned())).verdict(&RSS));
        assert!(why.starts_with("RSS unreadable"), "{why}");
        assert!(not_measured(rss(Ok(0)).verdict(&RSS)).starts_with("RSS unreadable"));
        assert_eq!(rss(Ok(14_500_000)).verdict(&RSS), Verdict::Met);
        assert_eq!(rss(Ok(15_100_000)).verdict(&RSS), Verdict::Missed);
    }

    fn docker_snapshot(ids: &[&str]) -> Value {
        let containers: Vec<Value> = ids.iter().map(|id| json!({ "id": id })).collect();
        json!({
            "sections": { "docker": { "containers": containers } },
            "collectors": { "docker": { "state": "ok" } }
        })
    }

    /// Guards the 50-container figure: judged only when vitals listed the bench's 50 containers.
    #[test]
    fn container_figure_needs_the_containers_listed() {
        let fleet: Vec<String> = (0..50).map(|i| format!("{i:064x}")).collect();
        let all: Vec<&str> = fleet.iter().map(String::as_str).collect();
        let full = docker_snapshot(&all);
        let listed = containers_listed(&full, &fleet);
        assert_eq!(listed, Ok(50));
        let r = Reading::of(vec![0.3]).require(enough_containers(&[listed.clone(), listed], 50));
        assert_eq!(r.verdict(&IDLE_CONTAINERS), Verdict::Met);

        // A foreign container does not stand in for one of the bench's.
        let mut some = all[..12].to_vec();
        some.push("f00d");
        let partial = containers_listed(&docker_snapshot(&some), &fleet);
        assert_eq!(partial, Ok(12));
        let r = Reading::of(vec![0.3]).require(enough_containers(&[Ok(50), partial], 50));
        let why = not_measured(r.verdict(&IDLE_CONTAINERS));
        assert!(why.contains("vitals listed 12 containers"), "{why}");

        let none = json!({ "sections": {}, "collectors": { "docker": {
            "state": "unavailable", "reason": "no daemon" } } });
        let r = Reading::of(vec![0.3])
            .require(enough_containers(&[containers_listed(&none, &fleet)], 50));
        let why = not_measured(r.verdict(&IDLE_CONTAINERS));
        assert!(why.contains("unavailable (no daemon)"), "{why}");
        assert!(enough_containers(&[], 50).is_err());
    }

    fn faults(counts: &[(&str, u64)]) -> Value {
        let mut collectors = serde_json::Map::new();
        for (name, n) in counts {
            collectors.insert((*name).to_owned(), json!({ "errors_total": n }));
        }
        json!({ "collectors": collectors })
    }

    /// Guards the health-under-faults figure: judged only when faults fired; a failed read is not 0 faults.
    #[test]
    fn health_figure_needs_faults_that_fired() {
        let names = ["panics", "hangs"];
        let before = faults(&[("panics", 3), ("hangs", 1)]);
        let after = faults(&[("panics", 9), ("hangs", 2)]);
        assert_eq!(faults_fired(Ok(&before), Ok(&after), &names), Ok(7));
        let reading =
            |fired: Result<u64, String>| Reading::of(vec![0.0, 0.4]).require(fired.map(|_| ()));
        assert_eq!(
            reading(faults_fired(Ok(&before), Ok(&after), &names)).verdict(&HEALTH_UNDER_FAULTS),
            Verdict::Met
        );
        let why = not_measured(
            reading(faults_fired(Ok(&before), Ok(&before), &names)).verdict(&HEALTH_UNDER_FAULTS),
        );
        assert!(why.contains("no fault fired"), "{why}");
        let why = not_measured(
            reading(faults_fired(
                Ok(&before),
                Err("connection refused".to_owned()),
                &names,
            ))
            .verdict(&HEALTH_UNDER_FAULTS),
        );
        assert!(why.contains("after the run was unreadable"), "{why}");
        let why = not_measured(
            reading(faults_fired(Ok(&before), Ok(&Value::Null), &names))
                .verdict(&HEALTH_UNDER_FAULTS),
        );
        assert!(why.contains("no errors_total"), "{why}");
    }

    /// Guards the 5,000-process figure: judged only when forking reached the count.
    #[test]
    fn process_figure_needs_every_fork() {
        let r = |forked| Reading::of(vec![0.13]).require(forked_enough(forked, 5000));
        assert_eq!(r(5000).verdict(&PROCESSES_5000), Verdict::Met);
        let why = not_measured(r(3187).verdict(&PROCESSES_5000));
        assert!(why.contains("forking stopped at 3187 of 5000"), "{why}");
    }

    /// Guards every extra-CPU figure: a negative difference is "not measured", never met.
    #[test]
    fn negative_extra_cpu_is_not_measured() {
        for target in [SSE_CPU, DOCKERD_EXTRA] {
            let (with, without) = (1.2, 1.5);
            let extra = with - without;
            let r = Reading::of(vec![extra]).require(extra_not_negative(extra, with, without));
            let why = not_measured(r.verdict(&target));
            assert!(why.contains("below this machine's noise"), "{why}");
            let r = Reading::of(vec![0.05]).require(extra_not_negative(0.05, 1.0, 0.95));
            assert_eq!(r.verdict(&target), Verdict::Met);
        }
        assert!(extra_not_negative(f64::NAN, 0.0, 0.0).is_err());
        assert!(extra_not_negative(0.0, 1.0, 1.0).is_ok());
    }

    /// Guards the stream catch-up check: a snapshot without counters is no reference, not zeros.
    #[test]
    fn stream_catch_up_needs_real_counters() {
        let snap = json!({ "collectors": { "a": { "collects_total": 12 }, "b": { "collects_total": 3 } } });
        assert_eq!(collect_counters(&snap), Ok(vec![12, 3]));
        let r = |s: &Value| {
            Reading::of(vec![0.0; 4])
                .require(collect_counters(s).map(|_| ()))
                .verdict(&SSE_EVERY_UPDATE)
        };
        assert_eq!(r(&snap), Verdict::Met);
        let why = not_measured(r(&json!({ "collectors": { "a": {} } })));
        assert!(why.contains("`a` has no collects_total"), "{why}");
        let why = not_measured(r(&Value::Null));
        assert!(why.contains("lists no collectors"), "{why}");
    }

    fn status(state: &str, errors: u64, collects: u64) -> Value {
        json!({ "state": state, "errors_total": errors, "collects_total": collects,
                "reason": if state == "ok" { Value::Null } else { json!("no daemon answers") } })
    }

    /// Guards the "every collector" figures: judged only when every collector was ok all the window.
    #[test]
    fn every_collector_figure_needs_every_collector_ok() {
        let names = ["cpu", "docker"];
        let snap =
            |cpu: Value, docker: Value| json!({ "collectors": { "cpu": cpu, "docker": docker } });
        let before = snap(status("ok", 0, 10), status("ok", 0, 10));
        let after = snap(status("ok", 0, 70), status("ok", 0, 70));
        let check = |b: &Value, a: &Value| {
            Reading::of(vec![0.1])
                .require(collectors_ok_throughout(b, a, &names, 30))
                .verdict(&IDLE_1S)
        };
        assert_eq!(check(&before, &after), Verdict::Met);

        let unavailable = snap(status("ok", 0, 70), status("unavailable", 0, 10));
        let why = not_measured(check(&unavailable, &unavailable));
        assert!(
            why.contains("docker was unavailable (no daemon answers) at the start"),
            "{why}"
        );

        let failed_then_ok = snap(status("ok", 0, 70), status("ok", 2, 68));
        let why = not_measured(check(&before, &failed_then_ok));
        assert!(why.contains("docker failed 2 times in the window"), "{why}");

        let ended_failed = snap(status("ok", 0, 70), status("failed", 1, 40));
        let why = not_measured(check(&before, &ended_failed));
        assert!(why.contains("docker was failed"), "{why}");

        // Unavailable for part of the window and back: too few collects.
        let gap = snap(status("ok", 0, 70), status("ok", 0, 20));
        let why = not_measured(check(&before, &gap));
        assert!(why.contains("docker collected 10 times"), "{why}");

        let missing = json!({ "collectors": { "cpu": status("ok", 0, 70) } });
        let why = not_measured(check(&before, &missing));
        assert!(why.contains("docker was not in the snapshot"), "{why}");
    }
}
