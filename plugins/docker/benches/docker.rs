//! Docker collection cost: starts 20, 50 and 100 idle containers and prints wall and CPU time per collect for vitals (cgroup files, stats API) and for `docker stats --no-stream`.
//!
//! Run: `cargo bench -p vitals-plugin-docker --bench docker [-- SIZES…] [auto-only]`, e.g.
//! `-- 20` for the smallest size only; `auto-only` measures only vitals' default path (for
//! profiling it). Needs a running daemon and the `vitals-test/busybox:latest` image
//! (`scripts/test-deps.sh` provides both). Removes every container it started, and only those.

use std::process::Command;
use std::time::{Duration, Instant};

use vitals_plugin_api::Collector;
use vitals_plugin_docker::{Config, DockerCollector, StatsSource};

const IMAGE: &str = "vitals-test/busybox:latest";
/// Collects measured per figure (after one warm-up collect).
const ROUNDS: usize = 30;
/// Pause between collects, so the daemon is measured at a steady pace rather than flat out.
const PAUSE: Duration = Duration::from_millis(100);
/// The performance targets for 100 containers (docs/benchmarks.md).
const TARGET_WALL_MS: f64 = 50.0;
const TARGET_CPU_MS: f64 = 5.0;

fn docker(args: &[&str]) -> Result<String, String> {
    let out = Command::new("docker")
        .args(args)
        .output()
        .map_err(|e| format!("cannot run docker: {e}"))?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).trim().to_owned())
    } else {
        Err(format!(
            "`docker {}`: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

/// This process's CPU time (all threads), from the kernel's precise per-task accounting.
fn process_cpu() -> Duration {
    clock(libc::CLOCK_PROCESS_CPUTIME_ID)
}

fn clock(id: libc::clockid_t) -> Duration {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid, writable timespec for the call's duration.
    let rc = unsafe { libc::clock_gettime(id, &mut ts) };
    if rc != 0 {
        return Duration::ZERO;
    }
    Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32)
}

/// CPU time of waited-for children (the `docker` CLI runs).
fn children_cpu() -> Duration {
    // SAFETY: a zeroed rusage is a valid value; getrusage only writes into it.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: `ru` is valid and writable.
    unsafe { libc::getrusage(libc::RUSAGE_CHILDREN, &mut ru) };
    let tv = |t: libc::timeval| Duration::new(t.tv_sec as u64, t.tv_usec as u32 * 1000);
    tv(ru.ru_utime) + tv(ru.ru_stime)
}

/// CPU time of the daemon side: dockerd, containerd and the containers' shims (clock ticks).
fn daemon_cpu() -> Duration {
    let mut ticks = 0u64;
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return Duration::ZERO;
    };
    for entry in dir.flatten() {
        let Ok(stat) = std::fs::read_to_string(entry.path().join("stat")) else {
            continue;
        };
        let (Some(open), Some(close)) = (stat.find('('), stat.rfind(')')) else {
            continue;
        };
        let comm = &stat[open + 1..close];
        if !(comm == "dockerd" || comm == "containerd" || comm.starts_with("containerd-shim")) {
            continue;
        }
        let fields: Vec<&str> = stat[close + 1..].split_whitespace().collect();
        // utime and stime are fields 14 and 15 of stat, i.e. 11 and 12 after the comm.
        let utime: u64 = fields.get(11).and_then(|f| f.parse().ok()).unwrap_or(0);
        let stime: u64 = fields.get(12).and_then(|f| f.parse().ok()).unwrap_or(0);
        ticks += utime + stime;
    }
    Duration::from_millis(ticks * 10)
}

/// Containers this bench started, removed on drop.
struct Fleet {
    label: String,
    ids: Vec<String>,
}

impl Fleet {
    fn grow_to(&mut self, n: usize) -> Result<(), String> {
        let mut new = Vec::new();
        while self.ids.len() + new.len() < n {
            new.push(docker(&[
                "create",
                "--label",
                &self.label,
                IMAGE,
                "sleep",
                "86400",
            ])?);
        }
        if !new.is_empty() {
            let mut args = vec!["start"];
            args.extend(new.iter().map(String::as_str));
            docker(&args)?;
        }
        self.ids.extend(new);
        Ok(())
    }
}

impl Drop for Fleet {
    fn drop(&mut self) {
        let filter = format!("label={}", self.label);
        if let Ok(ids) = docker(&["ps", "-aq", "--filter", &filter]) {
            let ids: Vec<&str> = ids.split_whitespace().collect();
            if !ids.is_empty() {
                let mut args = vec!["rm", "-f"];
                args.extend(ids);
                let _ = docker(&args);
            }
        }
    }
}

struct Figures {
    wall_median: Duration,
    wall_p95: Duration,
    cpu: Duration,
    daemon: Duration,
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

fn summarise(mut walls: Vec<Duration>, cpu: Duration, daemon: Duration) -> Figures {
    walls.sort();
    let n = walls.len().max(1);
    Figures {
        wall_median: walls.get(n / 2).copied().unwrap_or_default(),
        wall_p95: walls
            .get((n * 95 / 100).min(n - 1))
            .copied()
            .unwrap_or_default(),
        cpu: cpu / n as u32,
        daemon: daemon / n as u32,
    }
}

fn measure_vitals(source: StatsSource) -> Result<(Duration, Figures, String), String> {
    let config = Config {
        stats_source: source,
        include_stopped: true,
        // A busy daemon answers stats slowly; the bench measures, it does not give up.
        timeout: Duration::from_secs(10),
        ..Config::default()
    };
    let mut collector = DockerCollector::new(config).map_err(|e| e.to_string())?;
    let cold = Instant::now();
    let first = collector.collect().map_err(|e| e.to_string())?;
    let cold = cold.elapsed();
    std::thread::sleep(PAUSE);
    let mut walls = Vec::new();
    let (mut cpu, mut daemon) = (Duration::ZERO, Duration::ZERO);
    let mut stats_source = first.stats_source;
    for _ in 0..ROUNDS {
        let (d0, c0, t0) = (daemon_cpu(), process_cpu(), Instant::now());
        let section = collector.collect().map_err(|e| e.to_string())?;
        // The SDK serialises every section across the plugin boundary: count it too.
        let json = serde_json::to_string(&section).map_err(|e| e.to_string())?;
        std::hint::black_box(json);
        walls.push(t0.elapsed());
        cpu += process_cpu() - c0;
        daemon += daemon_cpu() - d0;
        stats_source = section.stats_source;
        std::thread::sleep(PAUSE);
    }
    Ok((cold, summarise(walls, cpu, daemon), stats_source))
}

fn measure_docker_stats(ids: &[String], rounds: usize) -> Result<Figures, String> {
    let mut walls = Vec::new();
    let (mut cpu, mut daemon) = (Duration::ZERO, Duration::ZERO);
    let mut args = vec!["stats", "--no-stream"];
    args.extend(ids.iter().map(String::as_str));
    for _ in 0..rounds {
        let (d0, c0, t0) = (daemon_cpu(), children_cpu(), Instant::now());
        docker(&args)?;
        walls.push(t0.elapsed());
        cpu += children_cpu() - c0;
        daemon += daemon_cpu() - d0;
    }
    Ok(summarise(walls, cpu, daemon))
}

fn row(n: usize, what: &str, f: &Figures) {
    println!(
        "{n:>5}  {what:<34} {:>9.2} {:>9.2} {:>10.3} {:>12.1}",
        ms(f.wall_median),
        ms(f.wall_p95),
        ms(f.cpu),
        ms(f.daemon)
    );
}

fn run(sizes: &[usize], auto_only: bool) -> Result<(), String> {
    let version = docker(&["version", "--format", "{{.Server.Version}}"])
        .map_err(|e| format!("no Docker daemon answers ({e}); run scripts/test-deps.sh"))?;
    docker(&["image", "inspect", IMAGE])
        .map_err(|_| format!("the image {IMAGE} is missing; run scripts/test-deps.sh"))?;
    let cgroup = docker(&["info", "--format", "{{.CgroupVersion}} {{.CgroupDriver}}"])?;
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
    println!(
        "docker collection cost: daemon {version}, cgroup {cgroup}, {cpus} CPUs; {ROUNDS} collects per figure, {PAUSE:?} apart"
    );
    println!("wall = wall time per collect; CPU = the collector's (or the docker CLI's) CPU time per collect;");
    println!("daemon = dockerd + containerd + shims CPU per collect (10 ms ticks, averaged)");
    println!(
        "{:>5}  {:<34} {:>9} {:>9} {:>10} {:>12}",
        "ctrs", "method", "wall p50", "wall p95", "CPU ms", "daemon ms"
    );
    let mut fleet = Fleet {
        label: format!("vitals-docker-bench={}", std::process::id()),
        ids: Vec::new(),
    };
    let mut verdict = Vec::new();
    for &n in sizes {
        let t = Instant::now();
        fleet.grow_to(n)?;
        eprintln!(
            "({n} containers running; starting them took {:.1?})",
            t.elapsed()
        );
        let (cold, auto, source) = measure_vitals(StatsSource::Auto)?;
        row(n, &format!("vitals auto ({source})"), &auto);
        println!(
            "{n:>5}  {:<34} {:>9.2}   (first collect: inspects every container)",
            "vitals auto, first collect",
            ms(cold)
        );
        if auto_only {
            continue;
        }
        let (_, api, _) = measure_vitals(StatsSource::Api)?;
        row(n, "vitals api (one-shot stats)", &api);
        let stats = measure_docker_stats(&fleet.ids, 3)?;
        row(n, "docker stats --no-stream", &stats);
        if n == 100 {
            verdict.push(format!(
                "100 containers, vitals auto: {:.2} ms wall (target <= {TARGET_WALL_MS} ms: {}), {:.3} ms CPU (target <= {TARGET_CPU_MS} ms: {})",
                ms(auto.wall_median),
                if ms(auto.wall_median) <= TARGET_WALL_MS { "met" } else { "MISSED" },
                ms(auto.cpu),
                if ms(auto.cpu) <= TARGET_CPU_MS { "met" } else { "MISSED" },
            ));
        }
    }
    for v in verdict {
        println!("{v}");
    }
    Ok(())
}

fn main() {
    let sizes: Vec<usize> = std::env::args()
        .skip(1)
        .filter_map(|a| a.parse().ok())
        .filter(|n| *n > 0)
        .collect();
    let sizes = if sizes.is_empty() {
        vec![20, 50, 100]
    } else {
        sizes
    };
    let auto_only = std::env::args().any(|a| a == "auto-only");
    if let Err(e) = run(&sizes, auto_only) {
        eprintln!("docker bench: {e}");
        std::process::exit(1);
    }
}
