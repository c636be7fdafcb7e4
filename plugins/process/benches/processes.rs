//! Bench: the process collector's cost per cycle against `ps -eo pid,pcpu,rss,stat,args`, with thousands of sleeping processes.
//!
//! `cargo bench -p vitals-plugin-process --bench processes [-- [--no-kept-files] SIZE…]` (default sizes 2000 5000).
//! The bench forks the sleeping processes itself and kills only those; each also dies with
//! the bench (parent-death signal), so an interrupted run leaves none behind.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use nix::sys::resource::{getrusage, UsageWho};
use nix::sys::signal::{kill, Signal};
use nix::sys::wait::waitpid;
use nix::unistd::{fork, getppid, pause, ForkResult, Pid};
use vitals_plugin_api::Collector;
use vitals_plugin_process::{Config, ProcessCollector};

/// Cycles measured per tool and size.
const CYCLES: u32 = 10;

/// The sleeping processes of one size; killed and reaped when dropped.
struct Sleepers(Vec<Pid>);

impl Sleepers {
    fn spawn(n: usize) -> Sleepers {
        let parent = nix::unistd::getpid();
        let mut pids = Vec::with_capacity(n);
        for _ in 0..n {
            // SAFETY: the bench is single-threaded here, and the child only calls
            // async-signal-safe functions (prctl, getppid, pause, _exit).
            match unsafe { fork() } {
                Ok(ForkResult::Child) => {
                    let _ = nix::sys::prctl::set_pdeathsig(Signal::SIGKILL);
                    if getppid() != parent {
                        unsafe { nix::libc::_exit(0) };
                    }
                    loop {
                        pause();
                    }
                }
                Ok(ForkResult::Parent { child }) => pids.push(child),
                Err(e) => {
                    eprintln!("fork failed after {} processes: {e}", pids.len());
                    break;
                }
            }
        }
        Sleepers(pids)
    }
}

impl Drop for Sleepers {
    fn drop(&mut self) {
        for pid in &self.0 {
            let _ = kill(*pid, Signal::SIGKILL);
        }
        for pid in &self.0 {
            let _ = waitpid(*pid, None);
        }
    }
}

/// User plus system CPU time of this process or of its reaped children.
fn cpu_time(who: UsageWho) -> Duration {
    let usage = getrusage(who).expect("getrusage");
    let d =
        |t: nix::sys::time::TimeVal| Duration::new(t.tv_sec() as u64, t.tv_usec() as u32 * 1000);
    d(usage.user_time()) + d(usage.system_time())
}

/// Mean and lowest wall time, and mean CPU time, per cycle.
struct Figures {
    wall_mean: Duration,
    wall_min: Duration,
    cpu_mean: Duration,
}

fn measure(who: UsageWho, mut cycle: impl FnMut()) -> Figures {
    cycle(); // warm-up: caches, first scan
    let mut walls = Vec::new();
    let cpu0 = cpu_time(who);
    for _ in 0..CYCLES {
        let t = Instant::now();
        cycle();
        walls.push(t.elapsed());
    }
    let cpu = cpu_time(who) - cpu0;
    Figures {
        wall_mean: walls.iter().sum::<Duration>() / CYCLES,
        wall_min: walls.iter().copied().min().unwrap_or_default(),
        cpu_mean: cpu / CYCLES,
    }
}

fn ms(d: Duration) -> String {
    format!("{:8.2}", d.as_secs_f64() * 1000.0)
}

fn open_fds() -> usize {
    std::fs::read_dir("/proc/self/fd")
        .map(|d| d.count())
        .unwrap_or(0)
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let kept_files = !args.iter().any(|a| a == "--no-kept-files");
    if !kept_files {
        // The collector keeps each /proc/<pid>/stat open between collects; this measures without.
        println!("the collector keeps no files open in this run");
    }
    let sizes: Vec<usize> = args.iter().filter_map(|a| a.parse().ok()).collect();
    let sizes = if sizes.is_empty() {
        vec![2000, 5000]
    } else {
        sizes
    };
    println!(
        "{:>10} {:>10} {:>10} {:>16} {:>16} {:>16}",
        "sleepers", "processes", "tool", "wall ms (mean)", "wall ms (min)", "cpu ms (mean)"
    );
    for n in sizes {
        let sleepers = Sleepers::spawn(n);
        let mut seen = 0;
        let fds_before = open_fds();
        let mut collector = ProcessCollector::new(Config::default()).expect("collector");
        if !kept_files {
            collector.keep_files(0);
        }
        let c = measure(UsageWho::RUSAGE_SELF, || {
            seen = collector.collect().expect("collect").process_count;
        });
        let fds_held = open_fds().saturating_sub(fds_before);
        drop(collector);
        let p = measure(UsageWho::RUSAGE_CHILDREN, || {
            let out = Command::new("ps")
                .args(["-eo", "pid,pcpu,rss,stat,args"])
                .stderr(Stdio::inherit())
                .output()
                .expect("run ps");
            assert!(out.status.success(), "ps failed");
        });
        for (tool, f) in [("collector", &c), ("ps", &p)] {
            println!(
                "{:>10} {:>10} {:>10} {:>16} {:>16} {:>16}",
                sleepers.0.len(),
                seen,
                tool,
                ms(f.wall_mean),
                ms(f.wall_min),
                ms(f.cpu_mean)
            );
        }
        println!(
            "{:>10} collector/ps: wall {:.2}x, cpu {:.2}x; files the collector kept open: {fds_held}",
            "",
            c.wall_mean.as_secs_f64() / p.wall_mean.as_secs_f64(),
            c.cpu_mean.as_secs_f64() / p.cpu_mean.as_secs_f64(),
        );
        drop(sleepers);
    }
}
