//! vitals' own figures against the targets: idle CPU, RSS, API latency and throughput, event-stream fan-out, isolation and fault containment.

use std::time::{Duration, Instant};

use anyhow::{bail, Context as _};
use serde_json::Value;

use crate::host::{self, Build, Vitals, COLLECTORS};
use crate::table::Row;
use crate::target;
use crate::verdict::Reading;
use crate::{docker, load, plugins, procfs, setup, sse, Opts, Windows};

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

/// The snapshot, or why it could not be read (for a "not measured" reason).
async fn snapshot(vitals: &Vitals) -> Result<Value, String> {
    vitals.snapshot().await.map_err(|e| format!("{e:#}"))
}

/// An idle CPU window with every collector at `interval`: the CPU, and whether every collector
/// was ok throughout (snapshots read just before and just after the window, outside it).
pub(crate) async fn idle_window(
    vitals: &Vitals,
    window: Duration,
    interval: Duration,
) -> anyhow::Result<(CpuRate, Result<(), String>)> {
    let before = snapshot(vitals).await;
    let rate = cpu_window(Some(vitals.pid), window).await?;
    let after = snapshot(vitals).await;
    // A collector that is ok at both ends but was away for half the window collects too little.
    let min_collects = (window.as_secs_f64() / interval.as_secs_f64() / 2.0).floor() as u64;
    let ok = match (before, after) {
        (Ok(b), Ok(a)) => setup::collectors_ok_throughout(&b, &a, &COLLECTORS, min_collects.max(1)),
        (Err(e), _) => Err(format!(
            "the snapshot before the window was unreadable: {e}"
        )),
        (_, Err(e)) => Err(format!("the snapshot after the window was unreadable: {e}")),
    };
    Ok((rate, ok))
}

fn secs(d: Duration) -> u64 {
    d.as_secs()
}

/// How many of the fleet's containers vitals lists, or why it lists none.
pub(crate) async fn listed(vitals: &Vitals, fleet: &docker::Fleet) -> Result<usize, String> {
    let snap = snapshot(vitals).await?;
    setup::containers_listed(&snap, fleet.ids())
}

/// Waits (bounded) until the docker section lists every container of `fleet`.
pub(crate) async fn wait_for_containers(vitals: &Vitals, fleet: &docker::Fleet, limit: Duration) {
    let until = Instant::now() + limit;
    while Instant::now() < until {
        if listed(vitals, fleet).await.is_ok_and(|n| n >= fleet.len()) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

const CONTAINERS_FIGURE: &str = "idle CPU, 50 idle containers, every collector at 1 s";
const DOCKERD_FIGURE: &str = "dockerd extra CPU caused by vitals, 50 containers";
/// Idle containers the container figures need.
const CONTAINERS: usize = 50;

/// Both container rows, not measured for the same reason.
fn containers_not_measured(why: &str) -> Vec<Row> {
    vec![
        Row::not_measured(CONTAINERS_FIGURE, &target::IDLE_CONTAINERS, why),
        Row::not_measured(DOCKERD_FIGURE, &target::DOCKERD_EXTRA, why),
    ]
}

/// A container count for the log and the table, or why there is none.
pub(crate) fn count(listed: &Result<usize, String>) -> String {
    listed.as_ref().map_or_else(Clone::clone, usize::to_string)
}

/// Idle CPU with 50 containers (vitals and the daemons' extra), or why it was not measured.
async fn containers_rows(
    build: &Build,
    config: &str,
    windows: Windows,
    rows: &mut Vec<Row>,
) -> anyhow::Result<()> {
    if let Some(why) = docker::unavailable() {
        rows.extend(containers_not_measured(&why));
        return Ok(());
    }
    eprintln!("starting {CONTAINERS} idle containers");
    let fleet = match docker::Fleet::start(CONTAINERS) {
        Ok(f) => f,
        Err(e) => {
            rows.extend(containers_not_measured(&format!(
                "starting the containers failed: {e:#}"
            )));
            return Ok(());
        }
    };
    let vitals = Vitals::start(build, config)?;
    vitals.wait_settled(Duration::from_secs(30)).await?;
    wait_for_containers(&vitals, &fleet, Duration::from_secs(30)).await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    let listed_before = listed(&vitals, &fleet).await;
    eprintln!(
        "CPU window with {} containers ({} listed by vitals): {} s",
        fleet.len(),
        count(&listed_before),
        secs(windows.cpu)
    );
    let (with, collectors_ok) = idle_window(&vitals, windows.cpu, Duration::from_secs(1)).await?;
    let listed_after = listed(&vitals, &fleet).await;
    vitals.stop();
    tokio::time::sleep(Duration::from_secs(2)).await;
    eprintln!("the same window without vitals (the daemons' own idle cost)");
    let without = cpu_window(None, windows.cpu).await?;
    drop(fleet);
    let containers_ok =
        setup::enough_containers(&[listed_before.clone(), listed_after.clone()], CONTAINERS);
    rows.push(Row::judged(
        CONTAINERS_FIGURE,
        format!(
            "as above; vitals listed {} of the bench's {CONTAINERS} containers at the start of the window and {} at the end (plus {} not the bench's)",
            count(&listed_before),
            count(&listed_after),
            docker::foreign_running()
        ),
        &target::IDLE_CONTAINERS,
        &Reading::of(vec![with.tree])
            .require(containers_ok.clone())
            .require(collectors_ok),
    ));
    let extra = with.daemon - without.daemon;
    let visible = procfs::count_by_name("dockerd") > 0;
    let dockerd_visible = if visible {
        Ok(())
    } else {
        Err("dockerd is not visible in this PID namespace (the daemon runs outside it)".to_owned())
    };
    rows.push(Row::judged(
        DOCKERD_FIGURE,
        format!(
            "dockerd+containerd+shims CPU with vitals ({:.3}) minus without ({:.3}), {} s each",
            with.daemon,
            without.daemon,
            secs(windows.cpu)
        ),
        &target::DOCKERD_EXTRA,
        // Other users' containers and builds move the daemons' CPU by more than vitals' share.
        &Reading::of(if visible { vec![extra] } else { Vec::new() })
            .require(dockerd_visible)
            .require(containers_ok)
            .require(setup::extra_not_negative(
                extra,
                with.daemon,
                without.daemon,
            )),
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
    Ok(Row::info(
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
    ))
}

/// The faulty collectors of the health figure.
const FAULTY: [&str; 4] = ["panics", "hangs", "segfaults", "aborts"];

/// Health probes while faulty plugins panic, hang, segfault and abort.
async fn faults_row(build: &Build, windows: Windows, baseline_p99: f64) -> anyhow::Result<Row> {
    let lib = host::toml_str(&build.plugin("fault").to_string_lossy());
    let mut config = String::from("[collectors.memory]\ninterval = \"1s\"\n\n");
    for (name, behaviour, isolation) in FAULTY
        .into_iter()
        .zip([
            ("panic", "in-process"),
            ("hang", "in-process"),
            ("segfault", "process"),
            ("abort", "process"),
        ])
        .map(|(n, (b, i))| (n, b, i))
    {
        config.push_str(&format!(
            "[collectors.{name}]\nlibrary = {lib}\ninterval = \"100ms\"\ndeadline = \"300ms\"\nisolation = \"{isolation}\"\n[collectors.{name}.config]\nbehaviour = \"{behaviour}\"\n\n"
        ));
    }
    let vitals = Vitals::start(build, &config)?;
    vitals.wait_settled(Duration::from_secs(30)).await?;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let before = snapshot(&vitals).await;
    let tally = load::run(
        &vitals.target("/admin/monitor/health"),
        1,
        windows.load,
        Some(Duration::from_millis(10)),
    )
    .await;
    let after = snapshot(&vitals).await;
    vitals.stop();
    let fired = setup::faults_fired(
        before.as_ref().map_err(Clone::clone),
        after.as_ref().map_err(Clone::clone),
        &FAULTY,
    );
    let p99 = tally.quantile_ms(0.99);
    Ok(Row::judged(
        "health probe latency while plugins panic, hang (in-process), segfault and abort (isolated)",
        format!(
            "GET /admin/monitor/health every 10 ms for {} s, 1 connection; {} faults during the run; {} answers, {} failed{}; p50 {:.2} ms, max {:.2} ms; p99 without faults {baseline_p99:.2} ms",
            secs(windows.load),
            fired.as_ref().map_or_else(|_| "no".to_owned(), u64::to_string),
            tally.answered(),
            tally.failed,
            // 503 is the expected answer while collectors fail; only failures need a reason.
            if tally.failed > 0 { tally.error_note() } else { String::new() },
            tally.quantile_ms(0.5),
            tally.max_ms()
        ),
        &target::HEALTH_UNDER_FAULTS,
        &Reading::of(vec![tally.failed as f64, p99]).require(fired.map(|_| ())),
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
    let fin = setup::collect_counters(&fin);
    // Events are at most 200 ms apart when something changed; give the last one time to arrive.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let reports = fan.finish().await;
    let percent = cpu.as_secs_f64() / elapsed.as_secs_f64() * 100.0;
    let extra = percent - idle_core_percent;
    let events: Vec<u64> = reports.iter().map(|r| r.events).collect();
    let missed: u64 = reports.iter().map(|r| r.missed).sum();
    let behind = fin.as_ref().map_or(0, |fin| {
        reports.iter().filter(|r| !r.caught_up(fin)).count()
    });
    let errors: Vec<&str> = reports.iter().filter_map(|r| r.error.as_deref()).collect();
    let bytes: u64 = reports.iter().map(|r| r.bytes).sum();
    let min_events = events.iter().copied().min().unwrap_or(0);
    let mean_events = events.iter().sum::<u64>() as f64 / events.len().max(1) as f64;
    rows.push(Row::judged(
        format!("SSE: {clients} clients of /admin/monitor/stream at 1 s updates, vitals CPU"),
        format!(
            "vitals' CPU over {} s with the streams open ({percent:.1} % of one core) minus idle ({idle_core_percent:.2} %); {:.1} MB/s streamed",
            secs(windows.sse),
            bytes as f64 / 1e6 / (elapsed.as_secs_f64() + 1.5 + 1.0)
        ),
        &target::SSE_CPU,
        &Reading::of(vec![extra]).require(setup::extra_not_negative(
            extra,
            percent,
            idle_core_percent,
        )),
    ));
    let mut detail = format!(
        "{ready}/{clients} streams opened; events per client min {min_events}, mean {mean_events:.1}; collects skipped between two events: {missed}; clients behind the final snapshot: {behind}; stream errors: {}",
        errors.len()
    );
    if let Some(e) = errors.first() {
        detail.push_str(&format!(" (first: {e})"));
    }
    rows.push(Row::judged(
        "SSE: every client got every update",
        detail,
        &target::SSE_EVERY_UPDATE,
        &Reading::of(vec![
            clients.saturating_sub(ready) as f64,
            missed as f64,
            behind as f64,
            errors.len() as f64,
        ])
        .require(fin.map(|_| ())),
    ));
    Ok(())
}

/// Measures every figure and prints the table.
///
/// # Errors
/// When vitals cannot be started or stops answering.
/// The durable history's cost: the same 5 s window with `persist = false`, against the figures
/// with it on (`with_cpu`, `with_rss`).
async fn history_rows(
    build: &Build,
    windows: Windows,
    with_cpu: f64,
    with_ok: Result<(), String>,
    with_rss: Result<u64, String>,
) -> anyhow::Result<Vec<Row>> {
    let config = host::all_collectors_config_with(build, "5s", false);
    let vitals = Vitals::start(build, &config)?;
    vitals.wait_settled(Duration::from_secs(30)).await?;
    tokio::time::sleep(Duration::from_secs(6)).await;
    eprintln!(
        "idle CPU window, every collector at 5 s, durable history off: {} s",
        secs(windows.cpu)
    );
    let (without, without_ok) = idle_window(&vitals, windows.cpu, Duration::from_secs(5)).await?;
    let rss_without = procfs::read_rss(vitals.pid);
    vitals.stop();
    let extra = with_cpu - without.tree;
    let cpu = Reading::of(vec![extra])
        .require(with_ok)
        .require(without_ok)
        .require(setup::extra_not_negative(extra, with_cpu, without.tree));
    let rss = match (with_rss, rss_without) {
        (Ok(a), Ok(b)) if a > 0 && b > 0 => {
            let extra_mb = (a as f64 - b as f64) / 1e6;
            let noise = (extra_mb < 0.0).then(|| {
                format!(
                    "less RSS with the history ({:.1} MB) than without it ({:.1} MB): below this machine's noise",
                    a as f64 / 1e6,
                    b as f64 / 1e6
                )
            });
            Reading::of(vec![extra_mb]).require(noise.map_or(Ok(()), Err))
        }
        (Err(e), _) | (_, Err(e)) => Reading::nothing(e),
        _ => Reading::nothing("RSS read as 0"),
    };
    Ok(vec![
        Row::judged(
            "durable history: extra CPU, every collector at 5 s",
            format!(
                "idle CPU with the history on ({with_cpu:.3}) minus off ({:.3}), {} s windows",
                without.tree,
                secs(windows.cpu)
            ),
            &target::HISTORY_EXTRA_5S,
            &cpu,
        ),
        Row::judged(
            "durable history: extra RSS, every collector at 5 s",
            "VmRSS after the window with the history on minus off".to_owned(),
            &target::HISTORY_EXTRA_RSS,
            &rss,
        ),
    ])
}

pub async fn run(build: &Build, opts: &Opts, windows: Windows, files: u64) -> anyhow::Result<()> {
    let started = Instant::now();
    let (load_start, loadavg_start) = procfs::load_average();
    docker::remove_orphans();
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
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
    let (idle, collectors_ok) = idle_window(&vitals, windows.cpu, Duration::from_secs(1)).await?;
    rows.push(Row::judged(
        "idle CPU, every collector at 1 s, no bench containers",
        format!(
            "utime+stime of vitals and its children (/proc/PID/stat) over {} s",
            secs(windows.cpu)
        ),
        &target::IDLE_1S,
        &Reading::of(vec![idle.tree]).require(collectors_ok),
    ));
    if let Ok(s) = vitals.snapshot().await {
        durations = host::describe_durations(&s);
    }
    let rss = procfs::read_rss(vitals.pid);
    let tree_rss = procfs::tree_rss_bytes(vitals.pid);
    rows.push(Row::judged(
        "RSS with all plugins loaded",
        format!(
            "VmRSS (/proc/PID/status) after the idle window; whole tree {:.1} MB",
            mb(tree_rss)
        ),
        &target::RSS,
        &setup::rss(rss),
    ));

    eprintln!("latency: 1 connection, {} s", secs(windows.load));
    let system = vitals.target("/admin/monitor/system");
    let one = load::run(&system, 1, windows.load, None).await;
    let (p50, p99) = (one.quantile_ms(0.5), one.quantile_ms(0.99));
    rows.push(Row::judged(
        "GET /admin/monitor/system latency (served from the cached serialisation)",
        format!(
            "1 keep-alive connection back to back for {} s, in-process hyper client; {} requests, {:.1} kB each, {} errors{}",
            secs(windows.load),
            one.answered(),
            one.mean_body_bytes() / 1e3,
            one.errors(),
            one.error_note()
        ),
        &target::LATENCY,
        &Reading::of(vec![p50, p99, one.errors() as f64]),
    ));
    let health = load::run(
        &vitals.target("/admin/monitor/health"),
        1,
        windows.load / 2,
        None,
    )
    .await;
    rows.push(crate::exposition::cached_metrics_row(&vitals, windows).await);
    eprintln!("throughput: 100 connections, {} s", secs(windows.load));
    let many = load::run(&system, 100, windows.load, None).await;
    let errors = many.errors();
    rows.push(Row::judged(
        "GET /admin/monitor/system throughput at 100 connections",
        format!(
            "100 keep-alive connections back to back for {} s (client on the same {cpus} cores); p50 {:.2} ms, p99 {:.2} ms under load{}",
            secs(windows.load),
            many.quantile_ms(0.5),
            many.quantile_ms(0.99),
            many.error_note()
        ),
        &target::THROUGHPUT,
        &Reading::of(vec![many.per_second(), errors as f64]),
    ));

    let idle_core_percent = idle.tree / 60.0 * 100.0;
    let sse_figures = [
        (
            format!(
                "SSE: {} clients of /admin/monitor/stream at 1 s updates, vitals CPU",
                opts.sse_clients
            ),
            target::SSE_CPU,
        ),
        (
            "SSE: every client got every update".to_owned(),
            target::SSE_EVERY_UPDATE,
        ),
    ];
    if files < (opts.sse_clients as u64) * 2 + 256 {
        let why = format!(
            "the open-file limit ({files}) is too low for {} streams",
            opts.sse_clients
        );
        for (fig, target) in &sse_figures {
            rows.push(Row::not_measured(fig.as_str(), target, &why));
        }
    } else if let Err(e) = sse_rows(
        &vitals,
        opts.sse_clients,
        windows,
        idle_core_percent,
        &mut rows,
    )
    .await
    {
        // Keep going: the figures after this one start their own hosts.
        for (fig, target) in &sse_figures {
            rows.push(Row::failed(
                fig.as_str(),
                "streams opened, then the snapshot read back",
                target,
                &format!("{e:#}"),
            ));
        }
    }
    vitals.stop();

    if opts.no_containers {
        rows.extend(containers_not_measured("--no-containers"));
    } else {
        containers_rows(build, &config_1s, windows, &mut rows).await?;
    }

    rows.extend(five_second_rows(build, windows).await?);
    rows.extend(crate::history::rows(build, windows, !opts.no_containers).await?);

    eprintln!("process isolation overhead");
    rows.push(isolation_row(build, windows).await?);
    eprintln!("health under faults: {} s", secs(windows.load));
    rows.push(faults_row(build, windows, health.quantile_ms(0.99)).await?);

    rows.extend(if opts.plugin_benches {
        plugins::rows()
    } else {
        plugins::not_run()
    });
    print_table(
        &rows,
        started,
        &loadavg_start,
        load_start,
        &states,
        &durations,
    );
    Ok(())
}

/// The idle figure at 5 s (the default interval) with the durable history on, and the
/// history's extra CPU and RSS against the same window with it off.
///
/// # Errors
/// When a host cannot be started or stops answering.
pub(crate) async fn five_second_rows(build: &Build, windows: Windows) -> anyhow::Result<Vec<Row>> {
    let mut rows = Vec::new();
    let config_5s = host::all_collectors_config(build, "5s");
    let vitals = Vitals::start(build, &config_5s)?;
    vitals.wait_settled(Duration::from_secs(30)).await?;
    tokio::time::sleep(Duration::from_secs(6)).await;
    eprintln!(
        "idle CPU window, every collector at 5 s: {} s",
        secs(windows.cpu)
    );
    let (idle5, collectors_ok) = idle_window(&vitals, windows.cpu, Duration::from_secs(5)).await?;
    let rss5 = procfs::read_rss(vitals.pid);
    vitals.stop();
    rows.push(Row::judged(
        "idle CPU, every collector at 5 s (the default interval)",
        format!(
            "as above, {} s, durable history on (the default)",
            secs(windows.cpu)
        ),
        &target::IDLE_5S,
        &Reading::of(vec![idle5.tree]).require(collectors_ok.clone()),
    ));
    rows.extend(history_rows(build, windows, idle5.tree, collectors_ok, rss5).await?);
    Ok(rows)
}

/// Prints the machine, the load averages and the table.
pub(crate) fn print_table(
    rows: &[Row],
    started: Instant,
    loadavg_start: &str,
    load_start: f64,
    states: &str,
    durations: &str,
) {
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    let foreign = docker::foreign_running();
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
    if !states.is_empty() {
        println!("collectors at 1 s: {states}");
        println!("last collect wall time at 1 s (ms): {durations}");
    }
    println!();
    print!("{}", crate::table::render_rows(rows));
}
