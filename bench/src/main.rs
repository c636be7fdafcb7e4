//! `vitals-bench`: starts the release `vitals`, measures it against the performance targets (and, with `peers`, against peer monitors) and prints one table.

mod docker;
mod exposition;
mod figures;
mod history;
mod host;
mod load;
mod peers;
mod plugins;
mod procfs;
mod setup;
mod sse;
mod table;
mod target;
mod verdict;

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};

/// Measures vitals (release build) against its targets; `peers` compares it with other monitors.
#[derive(Debug, Parser)]
#[command(name = "vitals-bench", version, about)]
struct Cli {
    #[command(flatten)]
    opts: Opts,
    #[command(subcommand)]
    command: Option<Cmd>,
}

/// Options shared by both runs.
#[derive(Debug, Clone, Args)]
pub struct Opts {
    /// Shorter windows (20 s CPU windows, 5 s load runs): noisier figures in a third of the time.
    #[arg(long, global = true)]
    pub quick: bool,
    /// The CPU window in seconds (default 60, 20 with --quick).
    #[arg(long, global = true)]
    pub window: Option<u64>,
    /// The folder with the release `vitals` and plugins (default: this program's folder).
    #[arg(long, global = true)]
    pub target_dir: Option<PathBuf>,
    /// Leave out the figures with 50 containers.
    #[arg(long)]
    pub no_containers: bool,
    /// Concurrent clients of the event stream.
    #[arg(long, default_value_t = 1000)]
    pub sse_clients: usize,
    /// Also run the docker and process plugin benches (`cargo bench`) and fold their verdicts in.
    #[arg(long)]
    pub plugin_benches: bool,
    /// Run only these figures: `history` (every durable-history row), `history-5s` (the idle
    /// figure at 5 s and the history's extra CPU and RSS there) or `history-store` (disk and
    /// query times).
    #[arg(long, value_enum)]
    pub only: Option<Only>,
}

/// A subset of the figures, for `--only`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Only {
    /// Every durable-history row.
    History,
    /// The 5 s rows: idle CPU, and the history's extra CPU and RSS.
    #[value(name = "history-5s")]
    History5s,
    /// The disk and query rows (100 containers, a seeded 30-day store).
    HistoryStore,
}

#[derive(Debug, Subcommand)]
enum Cmd {
    /// Measure already running peer monitors beside vitals with the same method.
    Peers {
        /// A peer as `NAME,PID,URL` (the URL of its full-snapshot endpoint, loopback only).
        #[arg(long = "peer", required = true)]
        peers: Vec<String>,
    },
}

/// How long each kind of measurement runs.
#[derive(Debug, Clone, Copy)]
pub struct Windows {
    /// A CPU window.
    pub cpu: Duration,
    /// A latency or throughput run.
    pub load: Duration,
    /// The event-stream fan-out window.
    pub sse: Duration,
}

impl Windows {
    fn from_opts(opts: &Opts) -> Windows {
        let (cpu, load, sse) = if opts.quick {
            (20, 5, 10)
        } else {
            (60, 10, 30)
        };
        Windows {
            cpu: Duration::from_secs(opts.window.unwrap_or(cpu).clamp(1, 3600)),
            load: Duration::from_secs(load),
            sse: Duration::from_secs(sse),
        }
    }
}

/// Raises this process's open-file limit to its hard limit (1,000 streams need 2,000 sockets;
/// vitals, started by the bench, inherits it).
fn raise_file_limit() -> u64 {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: `lim` is a valid rlimit the calls read and write.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) == 0 {
            lim.rlim_cur = lim.rlim_max;
            libc::setrlimit(libc::RLIMIT_NOFILE, &lim);
            libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim);
        }
    }
    lim.rlim_cur
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let windows = Windows::from_opts(&cli.opts);
    let files = raise_file_limit();
    let target_dir = cli.opts.target_dir.clone().or_else(|| {
        std::env::current_exe()
            .ok()
            .and_then(|p| p.parent().map(PathBuf::from))
    });
    let Some(target_dir) = target_dir else {
        eprintln!("vitals-bench: cannot tell the build folder; pass --target-dir");
        return ExitCode::FAILURE;
    };
    let build = match host::Build::find(&target_dir) {
        Ok(b) => b,
        Err(e) => {
            eprintln!("vitals-bench: {e}");
            return ExitCode::FAILURE;
        }
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("vitals-bench: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    // Every host is started from this (the main) thread: see `host::Vitals::start`.
    let result = runtime.block_on(async {
        match cli.command {
            None => match cli.opts.only {
                Some(only) => history::only(&build, &cli.opts, windows, only).await,
                None => figures::run(&build, &cli.opts, windows, files).await,
            },
            Some(Cmd::Peers { peers }) => peers::run(&build, windows, &peers).await,
        }
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("vitals-bench: {e:#}");
            ExitCode::FAILURE
        }
    }
}
