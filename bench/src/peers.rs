//! Peer monitors (already started by `scripts/bench-peers.sh`) measured beside vitals with the same method, with vitals/peer ratios.

use std::time::{Duration, Instant};

use anyhow::{bail, Context as _};

use crate::host::{self, Build, Vitals};
use crate::load::{self, Target};
use crate::table::render;
use crate::{procfs, Windows};

/// One monitor under measurement.
#[derive(Debug, Clone)]
struct Subject {
    name: String,
    pid: u32,
    target: Target,
}

/// Parses `NAME,PID,URL`.
fn parse_peer(spec: &str) -> anyhow::Result<Subject> {
    let mut parts = spec.splitn(3, ',');
    let (Some(name), Some(pid), Some(url)) = (parts.next(), parts.next(), parts.next()) else {
        bail!("`{spec}`: a peer is NAME,PID,URL");
    };
    let pid: u32 = pid
        .trim()
        .parse()
        .with_context(|| format!("`{spec}`: `{pid}` is not a process id"))?;
    if !procfs::alive(pid) {
        bail!("`{spec}`: no process {pid} is running");
    }
    Ok(Subject {
        name: name.trim().to_owned(),
        pid,
        target: Target::parse(url.trim())?,
    })
}

/// What was measured for one monitor.
struct Measured {
    cpu_per_min: f64,
    rss_mb: f64,
    p50_ms: f64,
    p99_ms: f64,
    body_kb: f64,
    cpu_ms_per_request: f64,
    rps: f64,
    errors: u64,
    error_note: String,
}

fn ratio(a: f64, b: f64) -> String {
    if b > 0.0 && a.is_finite() && b.is_finite() {
        format!("{:.2}x", a / b)
    } else {
        "-".to_owned()
    }
}

/// Measures vitals and every peer, and prints the side-by-side table and the ratios.
///
/// # Errors
/// When a peer spec is malformed or vitals cannot start.
pub async fn run(build: &Build, windows: Windows, specs: &[String]) -> anyhow::Result<()> {
    let mut subjects = specs
        .iter()
        .map(|s| parse_peer(s))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let (_, loadavg_start) = procfs::load_average();
    let vitals = Vitals::start(build, &host::all_collectors_config(build, "1s"))?;
    vitals.wait_settled(Duration::from_secs(30)).await?;
    subjects.insert(
        0,
        Subject {
            name: "vitals".to_owned(),
            pid: vitals.pid,
            target: vitals.target("/admin/monitor/system"),
        },
    );
    tokio::time::sleep(Duration::from_secs(3)).await;

    // One window for all: each is charged only its own process tree.
    eprintln!(
        "CPU window for {} monitors at once: {} s",
        subjects.len(),
        windows.cpu.as_secs()
    );
    let before: Vec<Duration> = subjects.iter().map(|s| procfs::tree_cpu(s.pid)).collect();
    let t0 = Instant::now();
    // Each is read once a second, as a dashboard or a 1 s scrape would (Glances and
    // node_exporter collect only when asked).
    let pollers: Vec<_> = subjects
        .iter()
        .map(|s| {
            let target = s.target.clone();
            let until = t0 + windows.cpu;
            tokio::spawn(async move {
                let mut tick = tokio::time::interval(Duration::from_secs(1));
                while Instant::now() < until {
                    tick.tick().await;
                    let _ = load::get(&target).await;
                }
            })
        })
        .collect();
    tokio::time::sleep(windows.cpu).await;
    for p in pollers {
        p.abort();
    }
    let minutes = t0.elapsed().as_secs_f64() / 60.0;
    let mut measured = Vec::new();
    for (s, b) in subjects.iter().zip(&before) {
        let cpu = procfs::tree_cpu(s.pid).saturating_sub(*b).as_secs_f64() / minutes;
        let rss = procfs::tree_rss_bytes(s.pid) as f64 / 1e6;
        measured.push((cpu, rss));
    }
    let mut results = Vec::new();
    for (s, (cpu, rss)) in subjects.iter().zip(measured) {
        eprintln!("{}: latency and throughput of {}", s.name, s.target.path);
        let c0 = procfs::tree_cpu(s.pid);
        let one = load::run(&s.target, 1, windows.load, None).await;
        let serve_cpu = procfs::tree_cpu(s.pid).saturating_sub(c0);
        let many = load::run(&s.target, 100, windows.load, None).await;
        results.push(Measured {
            cpu_per_min: cpu,
            rss_mb: rss,
            p50_ms: one.quantile_ms(0.5),
            p99_ms: one.quantile_ms(0.99),
            body_kb: one.mean_body_bytes() / 1e3,
            cpu_ms_per_request: serve_cpu.as_secs_f64() * 1e3 / one.answered().max(1) as f64,
            rps: many.per_second(),
            errors: many.errors() + one.errors(),
            error_note: format!("{}{}", one.error_note(), many.error_note()),
        });
    }
    vitals.stop();
    let (_, loadavg_end) = procfs::load_average();

    println!();
    println!(
        "vitals and peers, every one collecting at 1 s and read once a second; CPU window {} s (all at once), load runs {} s each",
        windows.cpu.as_secs(),
        windows.load.as_secs()
    );
    println!("load average at start: {loadavg_start}; at end: {loadavg_end}");
    println!();
    let rows: Vec<Vec<String>> = subjects
        .iter()
        .zip(&results)
        .map(|(s, m)| {
            vec![
                s.name.clone(),
                s.target.path.clone(),
                format!("{:.3}", m.cpu_per_min),
                format!("{:.1}", m.rss_mb),
                format!("{:.3} / {:.3}", m.p50_ms, m.p99_ms),
                format!("{:.1}", m.body_kb),
                format!("{:.3}", m.cpu_ms_per_request),
                format!("{:.0}", m.rps),
                m.errors.to_string(),
            ]
        })
        .collect();
    print!(
        "{}",
        render(
            &[
                "monitor",
                "endpoint",
                "CPU-s/min",
                "RSS MB (tree)",
                "median / p99 ms (1 conn)",
                "body kB",
                "CPU ms per request",
                "req/s (100 conns)",
                "errors",
            ],
            &rows
        )
    );
    for (s, m) in subjects.iter().zip(&results) {
        if !m.error_note.is_empty() {
            println!("{} errors:{}", s.name, m.error_note);
        }
    }
    println!();
    let Some(v) = results.first() else {
        return Ok(());
    };
    let ratios: Vec<Vec<String>> = subjects
        .iter()
        .zip(&results)
        .skip(1)
        .map(|(s, m)| {
            vec![
                format!("vitals / {}", s.name),
                ratio(v.cpu_per_min, m.cpu_per_min),
                ratio(v.rss_mb, m.rss_mb),
                ratio(v.p50_ms, m.p50_ms),
                ratio(v.p99_ms, m.p99_ms),
                ratio(v.rps, m.rps),
            ]
        })
        .collect();
    print!(
        "{}",
        render(
            &[
                "ratio (below 1 is vitals cheaper/faster; req/s above 1 is vitals faster)",
                "CPU",
                "RSS",
                "median",
                "p99",
                "req/s",
            ],
            &ratios
        )
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Guards peer specs: malformed ones are refused with the reason.
    #[test]
    fn peer_specs_are_checked() {
        let me = std::process::id();
        let ok = parse_peer(&format!("collectd,{me},http://127.0.0.1:9103/metrics")).expect("ok");
        assert_eq!(ok.name, "collectd");
        assert_eq!(ok.target.path, "/metrics");
        let e = parse_peer("collectd,abc,http://127.0.0.1:1/").expect_err("pid");
        assert!(e.to_string().contains("not a process id"), "{e}");
        let e = parse_peer("collectd").expect_err("short");
        assert!(e.to_string().contains("NAME,PID,URL"), "{e}");
        let e = parse_peer(&format!("x,{me},http://192.0.2.1:80/")).expect_err("remote");
        assert!(e.to_string().contains("loopback"), "{e}");
    }
}
