//! vitals' own figures against the targets: idle CPU, RSS, API latency and throughput, event-stream fan-out, isolation and fault containment.

use std::time::{Duration, Instant};

use anyhow::{bail, Context as _};
use serde_json::Value;

use crate::host::{self, Build, Vitals};
use crate::table::{Row, Verdict};
use crate::{docker, load, procfs, sse, Opts, Windows};

/// CPU-seconds per minute over a window, for one process tree and for the Docker daemons.
#[derive(Debug, Clone, Copy)]
pub struct CpuRate {
    /// The tree's CPU-s/min.
    pub tree: f64,
    /// dockerd + containerd + shims, CPU-s/min.
    pub daemon: f64,
}

/// Measures CPU over `window`: the tree under `pid` (if any) and the Docker daemons.
///
/// # Errors
/// When the process exits during the window.
pub async fn cpu_window(pid: Option<u32>, window: Duration) -> anyhow::Result<CpuRate> {
    let tree0 = pid.map(procfs::tree_cpu).unwrap_or_default();
    let daemon0 = procfs::cpu_by_name(procfs::is_docker_daemon);
    let t0 = Instant::now();
    tokio::time::sleep(window).await;
    let tree1 = pid.map(procfs::tree_cpu).unwrap_or_default();
    let daemon1 = procfs::cpu_by_name(procfs::is_docker_daemon);
    let minutes = t0.elapsed().as_secs_f64() / 60.0;
    if let Some(p) = pid {
        if !procfs::alive(p) {
            bail!("process {p} exited during the CPU window");
        }
    }
    Ok(CpuRate {
        tree: tree1.saturating_sub(tree0).as_secs_f64() / minutes,
        daemon: daemon1.saturating_sub(daemon0).as_secs_f64() / minutes,
    })
}

fn mb(bytes: u64) -> f64 {
    bytes as f64 / 1e6
}

fn le(value: f64, target: f64) -> Verdict {
    Verdict::from_bool(value.is_finite() && value <= target)
}

fn secs(d: Duration) -> u64 {
    d.as_secs()
}

/// Waits (bounded) until the docker section lists at least `n` containers.
async fn wait_for_containers(vitals: &Vitals, n: usize, limit: Duration) -> usize {
    let until = Instant::now() + limit;
    let mut seen = 0;
    while Instant::now() < until {
        if let Ok(s) = vitals.snapshot().await {
            seen = s["sections"]["docker"]["containers"]
                .as_array()
                .map_or(0, Vec::len);
            if seen >= n {
                break;
            }
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    seen
}

/// Idle CPU with 50 containers (vitals and the daemons' extra), or why it was skipped.
async fn containers_rows(
    build: &Build,
    config: &str,
    windows: Windows,
    rows: &mut Vec<Row>,
) -> anyhow::Result<()> {
    let figure = "idle CPU, 50 idle containers, every collector at 1 s";
    let daemon_figure = "dockerd extra CPU caused by vitals, 50 containers";
    if let Some(why) = docker::unavailable() {
        rows.push(Row::skipped(figure, "<= 0.4 CPU-s/min", &why));
        rows.push(Row::skipped(daemon_figure, "<= 0.1 CPU-s/min", &why));
        return Ok(());
    }
    eprintln!("starting 50 idle containers");
    let fleet = docker::Fleet::start(50)?;
    let vitals = Vitals::start(build, config)?;
    vitals.wait_settled(Duration::from_secs(30)).await?;
    let seen = wait_for_containers(&vitals, fleet.len(), Duration::from_secs(30)).await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    eprintln!(
        "CPU window with {} containers ({seen} listed by vitals): {} s",
        fleet.len(),
        secs(windows.cpu)
    );
    let with = cpu_window(Some(vitals.pid), windows.cpu).await?;
    vitals.stop();
    tokio::time::sleep(Duration::from_secs(2)).await;
    eprintln!("the same window without vitals (the daemons' own idle cost)");
    let without = cpu_window(None, windows.cpu).await?;
    drop(fleet);
    rows.push(Row::new(
        figure,
        format!(
            "as above, {seen} containers listed (plus {} not the bench's)",
            docker::foreign_running()
        ),
        format!("{:.3} CPU-s/min", with.tree),
        "<= 0.4 CPU-s/min",
        le(with.tree, 0.4),
    ));
    if procfs::count_by_name("dockerd") == 0 {
        rows.push(Row::skipped(
            daemon_figure,
            "<= 0.1 CPU-s/min",
            "dockerd is not visible in this PID namespace (the daemon runs outside it)",
        ));
        return Ok(());
    }
    let extra = with.daemon - without.daemon;
    // Other users' containers and builds move the daemons' CPU by more than vitals' share.
    let verdict = if extra < 0.0 {
        Verdict::Skipped("below the daemons' own variation on this machine".to_owned())
    } else {
        le(extra, 0.1)
    };
    rows.push(Row::new(
        daemon_figure,
        format!(
            "dockerd+containerd+shims CPU with vitals ({:.3}) minus without ({:.3}), {} s each",
            with.daemon,
            without.daemon,
            secs(windows.cpu)
        ),
        format!("{extra:.3} CPU-s/min"),
        "<= 0.1 CPU-s/min",
        verdict,
    ));
    Ok(())
}

/// The median of some values (NaN for none).
fn median(mut v: Vec<f64>) -> f64 {
    if v.is_empty() {
        return f64::NAN;
    }
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// One collector at 100 ms for `window`: median `last_duration_ms` and CPU of the tree per collect.
async fn per_collect(
    build: &Build,
    plugin: &str,
    isolation: &str,
    window: Duration,
) -> anyhow::Result<(f64, f64, u64)> {
    let lib = host::toml_str(&build.plugin(plugin).to_string_lossy());
    let config = format!(
        "[collectors.{plugin}]\nlibrary = {lib}\ninterval = \"100ms\"\nisolation = \"{isolation}\"\n"
    );
    let vitals = Vitals::start(build, &config)?;
    let snap = vitals.wait_settled(Duration::from_secs(30)).await?;
    let count = |s: &Value| {
        s["collectors"][plugin]["collects_total"]
            .as_u64()
            .unwrap_or(0)
    };
    let (n0, cpu0) = (count(&snap), procfs::tree_cpu(vitals.pid));
    let mut durations = Vec::new();
    let mut last = n0;
    let until = Instant::now() + window;
    while Instant::now() < until {
        tokio::time::sleep(Duration::from_millis(150)).await;
        let snap = vitals.snapshot().await?;
        if count(&snap) != last {
            last = count(&snap);
            if let Some(ms) = snap["collectors"][plugin]["last_duration_ms"].as_f64() {
                durations.push(ms);
            }
        }
    }
    let cpu = procfs::tree_cpu(vitals.pid).saturating_sub(cpu0);
    vitals.stop();
    let collects = last.saturating_sub(n0);
    Ok((
        median(durations),
        cpu.as_secs_f64() * 1e3 / collects.max(1) as f64,
        collects,
    ))
}

/// Process isolation: the same plugin in-process and in a child, wall and CPU per collect.
async fn isolation_row(build: &Build, windows: Windows) -> anyhow::Result<Row> {
    let window = windows.load.max(Duration::from_secs(10));
    let (wall_in, cpu_in, n_in) = per_collect(build, "memory", "in-process", window).await?;
    let (wall_iso, cpu_iso, n_iso) = per_collect(build, "memory", "process", window).await?;
    Ok(Row::new(
        "process isolation overhead per collect",
        format!(
            "memory plugin at 100 ms for {} s, in-process ({n_in} collects) then isolation = \"process\" ({n_iso}); median `last_duration_ms` {wall_in:.3} -> {wall_iso:.3} ms; host tree CPU per collect (10 ms ticks / collects)",
            window.as_secs()
        ),
        format!(
            "{:+.3} ms wall, {:+.3} ms CPU ({cpu_in:.3} -> {cpu_iso:.3} ms CPU)",
            wall_iso - wall_in,
            cpu_iso - cpu_in
        ),
        "(none)",
        Verdict::Info,
    ))
}

/// Health probes while faulty plugins panic, hang, segfault and abort.
async fn faults_row(build: &Build, windows: Windows, baseline_p99: f64) -> anyhow::Result<Row> {
    let lib = host::toml_str(&build.plugin("fault").to_string_lossy());
    let mut config = String::from("[collectors.memory]\ninterval = \"1s\"\n\n");
    for (name, behaviour, isolation) in [
        ("panics", "panic", "in-process"),
        ("hangs", "hang", "in-process"),
        ("segfaults", "segfault", "process"),
        ("aborts", "abort", "process"),
    ] {
        config.push_str(&format!(
            "[collectors.{name}]\nlibrary = {lib}\ninterval = \"100ms\"\ndeadline = \"300ms\"\nisolation = \"{isolation}\"\n[collectors.{name}.config]\nbehaviour = \"{behaviour}\"\n\n"
        ));
    }
    let vitals = Vitals::start(build, &config)?;
    vitals.wait_settled(Duration::from_secs(30)).await?;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let tally = load::run(
        &vitals.target("/admin/monitor/health"),
        1,
        windows.load,
        Some(Duration::from_millis(10)),
    )
    .await;
    let snap = vitals.snapshot().await.unwrap_or(Value::Null);
    let faults: u64 = ["panics", "hangs", "segfaults", "aborts"]
        .iter()
        .map(|n| snap["collectors"][n]["errors_total"].as_u64().unwrap_or(0))
        .sum();
    vitals.stop();
    let p99 = tally.quantile_ms(0.99);
    Ok(Row::new(
        "health probe latency while plugins panic, hang (in-process), segfault and abort (isolated)",
        format!(
            "GET /admin/monitor/health every 10 ms for {} s, 1 connection; {faults} faults during the run; {} answers, {} failed{}; p99 without faults {baseline_p99:.2} ms",
            secs(windows.load),
            tally.answered(),
            tally.failed,
            // 503 is the expected answer while collectors fail; only failures need a reason.
            if tally.failed > 0 { tally.error_note() } else { String::new() }
        ),
        format!(
            "p50 {:.2} ms, p99 {p99:.2} ms, max {:.2} ms",
            tally.quantile_ms(0.5),
            tally.max_ms()
        ),
        "every probe answered, p99 <= 2 ms",
        Verdict::from_bool(tally.failed == 0 && tally.answered() > 0 && p99 <= 2.0),
    ))
}

/// The event-stream fan-out: CPU during the window and whether every client saw every collect.
async fn sse_rows(
    vitals: &Vitals,
    clients: usize,
    windows: Windows,
    idle_core_percent: f64,
    rows: &mut Vec<Row>,
) -> anyhow::Result<()> {
    eprintln!("opening {clients} event streams");
    let fan = sse::FanOut::open(&vitals.target("/admin/monitor/stream"), clients).await;
    let ready = fan.wait_ready(Duration::from_secs(60)).await;
    if ready < clients {
        eprintln!("only {ready} of {clients} streams delivered a first snapshot within 60 s");
    }
    if ready == 0 {
        let answers = vitals.snapshot().await.is_ok();
        fan.finish().await;
        bail!(
            "no stream delivered a first snapshot within 60 s; vitals {} GET /admin/monitor/system",
            if answers {
                "still answers"
            } else {
                "no longer answers"
            }
        );
    }
    eprintln!("SSE window: {} s", secs(windows.sse));
    let t0 = Instant::now();
    let cpu0 = procfs::tree_cpu(vitals.pid);
    tokio::time::sleep(windows.sse).await;
    let cpu = procfs::tree_cpu(vitals.pid).saturating_sub(cpu0);
    let elapsed = t0.elapsed();
    let fin = vitals
        .snapshot()
        .await
        .context("the snapshot after the stream window")?;
    let fin: Vec<u64> = fin["collectors"]
        .as_object()
        .map(|m| {
            m.values()
                .map(|v| v["collects_total"].as_u64().unwrap_or(0))
                .collect()
        })
        .unwrap_or_default();
    // Events are at most 200 ms apart when something changed; give the last one time to arrive.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let reports = fan.finish().await;
    let percent = cpu.as_secs_f64() / elapsed.as_secs_f64() * 100.0;
    let extra = percent - idle_core_percent;
    let events: Vec<u64> = reports.iter().map(|r| r.events).collect();
    let missed: u64 = reports.iter().map(|r| r.missed).sum();
    let behind = reports.iter().filter(|r| !r.caught_up(&fin)).count();
    let errors: Vec<&str> = reports.iter().filter_map(|r| r.error.as_deref()).collect();
    let bytes: u64 = reports.iter().map(|r| r.bytes).sum();
    let min_events = events.iter().copied().min().unwrap_or(0);
    let mean_events = events.iter().sum::<u64>() as f64 / events.len().max(1) as f64;
    rows.push(Row::new(
        format!("SSE: {clients} clients of /admin/monitor/stream at 1 s updates, vitals CPU"),
        format!(
            "vitals' CPU over {} s with the streams open ({percent:.1} % of one core) minus idle ({idle_core_percent:.2} %); {:.1} MB/s streamed",
            secs(windows.sse),
            bytes as f64 / 1e6 / (elapsed.as_secs_f64() + 1.5 + 1.0)
        ),
        format!("{extra:.1} % of one core"),
        "<= 3 % of one core",
        le(extra, 3.0),
    ));
    let all_good = ready == clients && missed == 0 && behind == 0 && errors.is_empty();
    let mut detail = format!(
        "{ready}/{clients} streams opened; events per client min {min_events}, mean {mean_events:.1}; collects skipped between two events: {missed}; clients behind the final snapshot: {behind}; stream errors: {}",
        errors.len()
    );
    if let Some(e) = errors.first() {
        detail.push_str(&format!(" (first: {e})"));
    }
    rows.push(Row::new(
        "SSE: every client got every update",
        detail,
        if all_good { "yes" } else { "no" },
        "yes",
        Verdict::from_bool(all_good),
    ));
    Ok(())
}

/// Runs the plugin benches with cargo and folds their verdicts into rows.
fn plugin_bench_rows(rows: &mut Vec<Row>) {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned());
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let run = |args: &[&str]| -> Result<String, String> {
        eprintln!("running `cargo {}`", args.join(" "));
        let out = std::process::Command::new(&cargo)
            .args(args)
            .current_dir(&root)
            .stderr(std::process::Stdio::inherit())
            .output()
            .map_err(|e| format!("cannot run cargo: {e}"))?;
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        eprint!("{text}");
        if out.status.success() {
            Ok(text)
        } else {
            Err(format!("`cargo {}` failed", args.join(" ")))
        }
    };
    let docker_fig = "Docker: 100 containers, wall and CPU per collect";
    let docker_target = "<= 50 ms wall, <= 5 ms CPU";
    match run(&[
        "bench",
        "-p",
        "vitals-plugin-docker",
        "--bench",
        "docker",
        "--",
        "100",
    ]) {
        Ok(text) => match text
            .lines()
            .find(|l| l.starts_with("100 containers, vitals auto:"))
        {
            Some(line) => rows.push(Row::new(
                docker_fig,
                "`cargo bench -p vitals-plugin-docker --bench docker -- 100` (30 collects, median wall, mean CPU)",
                line.trim_start_matches("100 containers, vitals auto:").trim(),
                docker_target,
                Verdict::from_bool(!line.contains("MISSED")),
            )),
            None => rows.push(Row::skipped(
                docker_fig,
                docker_target,
                "the docker bench printed no verdict",
            )),
        },
        Err(e) => rows.push(Row::skipped(docker_fig, docker_target, &e)),
    }
    let proc_fig = "Processes: 5,000 processes, top-10 lists vs `ps -eo pid,pcpu,rss,stat,args`";
    let proc_target = "< 0.5 x ps's time";
    match run(&[
        "bench",
        "-p",
        "vitals-plugin-process",
        "--bench",
        "processes",
        "--",
        "5000",
    ]) {
        Ok(text) => {
            let ratio = text.lines().rev().find_map(|l| {
                let rest = l.split("collector/ps: wall ").nth(1)?;
                let wall: f64 = rest.split('x').next()?.trim().parse().ok()?;
                Some((wall, l.trim().to_owned()))
            });
            match ratio {
                Some((wall, line)) => rows.push(Row::new(
                    proc_fig,
                    "`cargo bench -p vitals-plugin-process --bench processes -- 5000` (10 cycles each)",
                    line,
                    proc_target,
                    Verdict::from_bool(wall < 0.5),
                )),
                None => rows.push(Row::skipped(
                    proc_fig,
                    proc_target,
                    "the process bench printed no ratio",
                )),
            }
        }
        Err(e) => rows.push(Row::skipped(proc_fig, proc_target, &e)),
    }
}

/// Measures every figure and prints the table.
///
/// # Errors
/// When vitals cannot be started or stops answering.
pub async fn run(build: &Build, opts: &Opts, windows: Windows, files: u64) -> anyhow::Result<()> {
    let started = Instant::now();
    let (load_start, loadavg_start) = procfs::load_average();
    docker::remove_orphans();
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    let foreign = docker::foreign_running();
    let mut rows = Vec::new();

    let config_1s = host::all_collectors_config(build, "1s");
    let vitals = Vitals::start(build, &config_1s)?;
    let snap = vitals.wait_settled(Duration::from_secs(30)).await?;
    let states = host::describe_states(&snap);
    let mut durations = String::new();
    tokio::time::sleep(Duration::from_secs(3)).await;
    eprintln!(
        "idle CPU window, every collector at 1 s: {} s",
        secs(windows.cpu)
    );
    let idle = cpu_window(Some(vitals.pid), windows.cpu).await?;
    rows.push(Row::new(
        "idle CPU, every collector at 1 s, no bench containers",
        format!(
            "utime+stime of vitals and its children (/proc/PID/stat) over {} s",
            secs(windows.cpu)
        ),
        format!("{:.3} CPU-s/min", idle.tree),
        "<= 0.2 CPU-s/min",
        le(idle.tree, 0.2),
    ));
    if let Ok(s) = vitals.snapshot().await {
        durations = host::describe_durations(&s);
    }
    let rss = procfs::rss_bytes(vitals.pid).unwrap_or(0);
    let tree_rss = procfs::tree_rss_bytes(vitals.pid);
    rows.push(Row::new(
        "RSS with all plugins loaded",
        format!(
            "VmRSS (/proc/PID/status) after the idle window; whole tree {:.1} MB",
            mb(tree_rss)
        ),
        format!("{:.1} MB", mb(rss)),
        "<= 15 MB",
        le(mb(rss), 15.0),
    ));

    eprintln!("latency: 1 connection, {} s", secs(windows.load));
    let system = vitals.target("/admin/monitor/system");
    let one = load::run(&system, 1, windows.load, None).await;
    let (p50, p99) = (one.quantile_ms(0.5), one.quantile_ms(0.99));
    rows.push(Row::new(
        "GET /admin/monitor/system latency (served from the cached serialisation)",
        format!(
            "1 keep-alive connection back to back for {} s, in-process hyper client; {} requests, {:.1} kB each, {} errors{}",
            secs(windows.load),
            one.answered(),
            one.mean_body_bytes() / 1e3,
            one.errors(),
            one.error_note()
        ),
        format!("median {p50:.3} ms, p99 {p99:.3} ms"),
        "median <= 0.3 ms, p99 <= 2 ms",
        Verdict::from_bool(p50 <= 0.3 && p99 <= 2.0 && one.errors() == 0),
    ));
    let health = load::run(
        &vitals.target("/admin/monitor/health"),
        1,
        windows.load / 2,
        None,
    )
    .await;
    eprintln!("throughput: 100 connections, {} s", secs(windows.load));
    let many = load::run(&system, 100, windows.load, None).await;
    let errors = many.errors();
    rows.push(Row::new(
        "GET /admin/monitor/system throughput at 100 connections",
        format!(
            "100 keep-alive connections back to back for {} s (client on the same {cpus} cores); p50 {:.2} ms, p99 {:.2} ms under load{}",
            secs(windows.load),
            many.quantile_ms(0.5),
            many.quantile_ms(0.99),
            many.error_note()
        ),
        format!("{:.0} req/s, {errors} errors", many.per_second()),
        ">= 20,000 req/s, 0 errors",
        Verdict::from_bool(many.per_second() >= 20_000.0 && errors == 0),
    ));

    let idle_core_percent = idle.tree / 60.0 * 100.0;
    if files < (opts.sse_clients as u64) * 2 + 256 {
        rows.push(Row::skipped(
            "SSE fan-out",
            "<= 3 % of one core",
            &format!(
                "the open-file limit ({files}) is too low for {} streams",
                opts.sse_clients
            ),
        ));
    } else {
        let fig = format!(
            "SSE: {} clients of /admin/monitor/stream at 1 s updates",
            opts.sse_clients
        );
        if let Err(e) = sse_rows(
            &vitals,
            opts.sse_clients,
            windows,
            idle_core_percent,
            &mut rows,
        )
        .await
        {
            // Keep going: the figures after this one start their own hosts.
            rows.push(Row::new(
                fig,
                "streams opened, then the snapshot read back",
                format!("failed: {e:#}"),
                "<= 3 % of one core, every client every update",
                Verdict::Missed,
            ));
        }
    }
    vitals.stop();

    if opts.no_containers {
        rows.push(Row::skipped(
            "idle CPU, 50 idle containers",
            "<= 0.4 CPU-s/min",
            "--no-containers",
        ));
    } else {
        containers_rows(build, &config_1s, windows, &mut rows).await?;
    }

    let config_5s = host::all_collectors_config(build, "5s");
    let vitals = Vitals::start(build, &config_5s)?;
    vitals.wait_settled(Duration::from_secs(30)).await?;
    tokio::time::sleep(Duration::from_secs(6)).await;
    eprintln!(
        "idle CPU window, every collector at 5 s: {} s",
        secs(windows.cpu)
    );
    let idle5 = cpu_window(Some(vitals.pid), windows.cpu).await?;
    vitals.stop();
    rows.push(Row::new(
        "idle CPU, every collector at 5 s (the default interval)",
        format!("as above, {} s", secs(windows.cpu)),
        format!("{:.3} CPU-s/min", idle5.tree),
        "<= 0.04 CPU-s/min",
        le(idle5.tree, 0.04),
    ));

    eprintln!("process isolation overhead");
    rows.push(isolation_row(build, windows).await?);
    eprintln!("health under faults: {} s", secs(windows.load));
    rows.push(faults_row(build, windows, health.quantile_ms(0.99)).await?);

    if opts.plugin_benches {
        plugin_bench_rows(&mut rows);
    } else {
        for (fig, target, cmd) in [
            (
                "Docker: 100 containers, wall and CPU per collect",
                "<= 50 ms wall, <= 5 ms CPU",
                "cargo bench -p vitals-plugin-docker --bench docker -- 100",
            ),
            (
                "Processes: 5,000 processes, top-10 lists vs ps",
                "< 0.5 x ps's time",
                "cargo bench -p vitals-plugin-process --bench processes -- 5000",
            ),
        ] {
            rows.push(Row::skipped(
                fig,
                target,
                &format!("pass --plugin-benches, or run `{cmd}`"),
            ));
        }
    }

    let (load_end, loadavg_end) = procfs::load_average();
    println!();
    println!(
        "vitals bench: {cpus} CPUs, kernel {}, {} containers on the daemon that are not the bench's; took {:.0} s",
        kernel.trim(),
        foreign,
        started.elapsed().as_secs_f64()
    );
    println!("load average at start: {loadavg_start}; at end: {loadavg_end}");
    if load_start.max(load_end) > 0.5 {
        println!(
            "note: the machine was busy (load {:.2} -> {:.2}); CPU and latency figures include that noise",
            load_start, load_end
        );
    }
    println!("collectors at 1 s: {states}");
    println!("last collect wall time at 1 s (ms): {durations}");
    println!();
    print!("{}", crate::table::render_rows(&rows));
    Ok(())
}
