//! The `vitals` command: run the host, check a config, list plugins, print completions and the man page.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context as _;
use clap::{CommandFactory as _, FromArgMatches as _, Parser, Subcommand, ValueEnum};
use vitals_host::config::{self, Config};
use vitals_host::host_root::{self, HostRoot};
use vitals_host::{exe_dir, loader};

/// Examples shown at the end of `--help` and in the man page.
const EXAMPLES: &str = "\
Examples:
  vitals                                         run with /etc/vitals/vitals.toml (or the built-in default)
  vitals --config vitals.toml --bind 127.0.0.1:0 run on a free port; the log says which
  vitals check-config /etc/vitals/vitals.toml    validate a config and find its plugins
  vitals plugins                                 list the plugin libraries found
  vitals --host-root /host                       watch the machine mounted at /host (from a container)
  vitals completions bash > /usr/share/bash-completion/completions/vitals

Exit status:
  0  success
  1  a runtime error (the server failed, an I/O error)
  2  bad command-line usage
  3  a config error: the file cannot be read or is invalid, a library it names is missing,
     or the address needs [[server.tokens]]
  4  the address cannot be bound (in use, or not permitted)
  5  a plugin failed its check, or a configured plugin cannot be loaded

Environment:
  VITALS_CONFIG      the config file (as --config)
  VITALS_LOG         the log filter (as --log)
  VITALS_LOG_FORMAT  text or json (as --log-format)
  VITALS_HOST_ROOT   the host root (as --host-root)
  NO_COLOR           set and not empty: no colour in the log";

/// A plugin-based system monitor for GPU and container hosts.
#[derive(Debug, Parser)]
#[command(name = "vitals", after_help = EXAMPLES)]
struct Cli {
    /// The config file (default: /etc/vitals/vitals.toml, else the built-in default).
    #[arg(long, short, global = true, env = "VITALS_CONFIG")]
    config: Option<PathBuf>,
    /// Listen on this address instead of the config's `server.bind` (port 0 picks one).
    #[arg(long)]
    bind: Option<SocketAddr>,
    /// Log filter, e.g. `info` or `vitals=debug` (also `VITALS_LOG`).
    #[arg(long, env = "VITALS_LOG", default_value = "info", global = true)]
    log: String,
    /// Log line format: `text` (coloured only on a terminal and without NO_COLOR) or `json`
    /// (one object per line, for log shippers).
    #[arg(long, env = "VITALS_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text, global = true)]
    log_format: LogFormat,
    /// Where the monitored machine's root file system is mounted (a container started with
    /// `-v /:/host:ro` watches its host with `/host`); overrides the config's `host_root`.
    #[arg(long, env = host_root::ENV, value_name = "DIR")]
    host_root: Option<PathBuf>,
    #[command(subcommand)]
    command: Option<Command>,
}

/// How log lines are written to stderr.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
}

/// The documented exit statuses (see `EXAMPLES`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
enum Exit {
    Runtime = 1,
    Config = 3,
    Bind = 4,
    Plugin = 5,
}

/// An error that ends the command with a given exit status.
#[derive(Debug, thiserror::Error)]
#[error("{message}")]
struct Failure {
    exit: Exit,
    message: String,
}

impl Failure {
    fn error(exit: Exit, message: impl Into<String>) -> anyhow::Error {
        Self {
            exit,
            message: message.into(),
        }
        .into()
    }
}

/// The exit status for an error: the kind of the first error in its chain that has one.
fn exit_status(e: &anyhow::Error) -> Exit {
    for cause in e.chain() {
        if let Some(f) = cause.downcast_ref::<Failure>() {
            return f.exit;
        }
        if cause.downcast_ref::<config::ConfigError>().is_some() {
            return Exit::Config;
        }
        match cause.downcast_ref::<vitals_host::HostError>() {
            Some(vitals_host::HostError::Bind { .. }) => return Exit::Bind,
            Some(vitals_host::HostError::Unauthenticated(_)) => return Exit::Config,
            _ => {}
        }
    }
    Exit::Runtime
}

/// `vitals --version`: the host's version, the plugin API it loads, and the commit.
fn long_version() -> String {
    format!(
        "{} (plugin API {}, commit {})",
        env!("CARGO_PKG_VERSION"),
        vitals_plugin_api::API_VERSION,
        env!("VITALS_GIT_COMMIT")
    )
}

/// The clap command with the long version: the one definition behind parsing, completions
/// and the man page.
fn command() -> clap::Command {
    let version: &'static str = Box::leak(long_version().into_boxed_str());
    Cli::command().version(version)
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Validate a config file (and that its plugin libraries exist) without starting.
    CheckConfig {
        /// The config file to check.
        file: PathBuf,
    },
    /// List the plugin libraries the config uses and finds, with their versions.
    Plugins,
    /// Work with one plugin library.
    Plugin {
        #[command(subcommand)]
        command: PluginCommand,
    },
    /// Print the `sha256:` hash of a token for `[[server.tokens]]` (token from stdin, or a fresh one).
    HashToken {
        /// Make a new random token and print it with its hash.
        #[arg(long)]
        generate: bool,
    },
    /// Print a shell completion script to stdout.
    Completions {
        /// The shell.
        shell: clap_complete::Shell,
    },
    /// Print the man page (roff) to stdout: `vitals man | man -l -`.
    Man,
    /// Run one collector for the host, over stdin/stdout (process isolation; not for people).
    #[command(hide = true)]
    CollectorChild {
        /// The collector's name.
        #[arg(long)]
        name: String,
        /// The plugin library.
        #[arg(long)]
        library: PathBuf,
        /// Address-space limit in bytes.
        #[arg(long)]
        memory_limit: Option<u64>,
    },
}

#[derive(Debug, Subcommand)]
enum PluginCommand {
    /// Load a library (or run a program), print its name and versions and ABI verdict, and run its contract.
    Check(vitals_host::check::CheckArgs),
}

const SYSTEM_CONFIG: &str = "/etc/vitals/vitals.toml";

fn load_config(path: Option<&Path>) -> anyhow::Result<(Config, String)> {
    match path {
        Some(p) => {
            let config = config::load(p)?;
            Ok((config, p.display().to_string()))
        }
        None if Path::new(SYSTEM_CONFIG).exists() => Ok((
            config::load(Path::new(SYSTEM_CONFIG))?,
            SYSTEM_CONFIG.to_owned(),
        )),
        None => {
            let base = exe_dir().unwrap_or_else(|| PathBuf::from("."));
            let config = config::parse(
                config::DEFAULT_CONFIG,
                Path::new("<built-in default>"),
                &base,
            )?;
            Ok((config, "the built-in default".to_owned()))
        }
    }
}

fn check_config(file: &Path) -> anyhow::Result<()> {
    let config = config::load(file)?;
    let text =
        std::fs::read_to_string(file).with_context(|| format!("reading {}", file.display()))?;
    config.check_libraries(file, &text, exe_dir().as_deref())?;
    let enabled = config.collectors.values().filter(|c| c.enabled).count();
    println!(
        "{}: ok ({} collectors, {} enabled)",
        file.display(),
        config.collectors.len(),
        enabled
    );
    Ok(())
}

fn list_plugins(config: &Config) -> bool {
    let exe = exe_dir();
    let mut seen = std::collections::BTreeSet::new();
    let mut all_ok = true;
    println!(
        "{:<12} {:<10} {:<8} {:<6} LIBRARY",
        "COLLECTOR", "PLUGIN", "VERSION", "API"
    );
    for (name, c) in &config.collectors {
        if c.command.is_some() {
            // A program collector: its program, found as the host finds it.
            match config.resolve_command(c) {
                Ok(path) => println!(
                    "{name:<12} {:<10} {:<8} {:<6} {}{}",
                    path.file_name()
                        .map_or_else(String::new, |n| n.to_string_lossy().into_owned()),
                    "-",
                    format!("exec/{}", vitals_host::worker::exec::PROTOCOL_VERSION),
                    path.display(),
                    if c.enabled { "" } else { " (disabled)" }
                ),
                Err(e) => {
                    all_ok &= !c.enabled;
                    println!("{name:<12} error: {e}");
                }
            }
            continue;
        }
        match config.resolve_library(name, c, exe.as_deref()) {
            Ok(path) => {
                seen.insert(path.canonicalize().unwrap_or_else(|_| path.clone()));
                match loader::load(&path) {
                    Ok(p) => println!(
                        "{name:<12} {:<10} {:<8} {:<6} {}{}",
                        p.info.name,
                        p.info.version,
                        p.info.api_version,
                        path.display(),
                        if c.enabled { "" } else { " (disabled)" }
                    ),
                    Err(e) => {
                        all_ok = false;
                        println!("{name:<12} error: {e}");
                    }
                }
            }
            Err(e) => {
                all_ok &= !c.enabled;
                println!("{name:<12} error: {e}");
            }
        }
    }
    for dir in config.search_dirs(exe.as_deref()) {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        let mut paths: Vec<PathBuf> = entries
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| {
                p.file_name().and_then(|n| n.to_str()).is_some_and(|n| {
                    n.starts_with("libvitals_plugin_") && n.ends_with(std::env::consts::DLL_SUFFIX)
                })
            })
            .collect();
        paths.sort();
        for path in paths {
            if !seen.insert(path.canonicalize().unwrap_or_else(|_| path.clone())) {
                continue;
            }
            match loader::load(&path) {
                Ok(p) => println!(
                    "{:<12} {:<10} {:<8} {:<6} {} (not configured)",
                    "-",
                    p.info.name,
                    p.info.version,
                    p.info.api_version,
                    path.display()
                ),
                Err(e) => println!("{:<12} error: {e}", "-"),
            }
        }
    }
    all_ok
}

/// Caps glibc's malloc at two arenas before any thread starts: by default every thread that
/// allocates (a worker per collector, the runtime's workers) gets an arena of its own, each
/// holding on to pages. Two match the runtime's two workers; collectors allocate little.
fn cap_malloc_arenas() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only sets an allocator parameter; called before any other thread runs.
    unsafe {
        libc::mallopt(libc::M_ARENA_MAX, 2);
    }
}

/// Whether log lines may be coloured: stderr is a terminal and `NO_COLOR` is unset or empty.
fn log_colour() -> bool {
    let no_color = std::env::var_os("NO_COLOR").is_some_and(|v| !v.is_empty());
    !no_color && std::io::IsTerminal::is_terminal(&std::io::stderr())
}

fn init_log(filter: &str, format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_new(filter)
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    // The log writes to a duplicate of stderr, so a plugin that closes descriptor 2 cannot
    // send log lines into whatever reuses it.
    let writer = match vitals_host::guard::log_file() {
        Some(file) => {
            tracing_subscriber::fmt::writer::BoxMakeWriter::new(std::sync::Arc::new(file))
        }
        None => tracing_subscriber::fmt::writer::BoxMakeWriter::new(std::io::stderr),
    };
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(writer);
    match format {
        LogFormat::Text => builder.with_ansi(log_colour()).init(),
        LogFormat::Json => builder
            .json()
            .flatten_event(true)
            .with_current_span(false)
            .with_ansi(false)
            .init(),
    }
}

fn main() -> ExitCode {
    cap_malloc_arenas();
    let cli = match Cli::from_arg_matches(&command().get_matches()) {
        Ok(cli) => cli,
        Err(e) => e.exit(),
    };
    init_log(&cli.log, cli.log_format);

    let result = match &cli.command {
        Some(Command::CheckConfig { file }) => check_config(file),
        Some(Command::Plugins) => load_config(cli.config.as_deref()).and_then(|(c, _)| {
            if list_plugins(&c) {
                Ok(())
            } else {
                Err(Failure::error(
                    Exit::Plugin,
                    "some plugins cannot be loaded",
                ))
            }
        }),
        Some(Command::Plugin {
            command: PluginCommand::Check(args),
        }) => {
            if vitals_host::check::run_args(args) {
                Ok(())
            } else {
                Err(Failure::error(
                    Exit::Plugin,
                    format!("{} failed the plugin check", args.target.join(" ")),
                ))
            }
        }
        Some(Command::HashToken { generate }) => hash_token(*generate),
        Some(Command::Completions { shell }) => {
            clap_complete::generate(*shell, &mut command(), "vitals", &mut std::io::stdout());
            Ok(())
        }
        Some(Command::Man) => clap_mangen::Man::new(command())
            .render(&mut std::io::stdout())
            .context("writing the man page"),
        Some(Command::CollectorChild {
            name,
            library,
            memory_limit,
        }) => vitals_host::worker::child::serve(name, library, *memory_limit).map_err(Into::into),
        None => serve(&cli),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("vitals: {e:#}");
            ExitCode::from(exit_status(&e) as u8)
        }
    }
}

fn hash_token(generate: bool) -> anyhow::Result<()> {
    use vitals_host::api::auth;
    if generate {
        let token = auth::generate_token().context("reading the OS random source")?;
        println!("token: {token}");
        println!("hash:  {}", auth::hash_token(&token));
        return Ok(());
    }
    let mut token = String::new();
    std::io::stdin()
        .read_line(&mut token)
        .context("reading the token from stdin")?;
    let token = token.trim();
    anyhow::ensure!(!token.is_empty(), "no token on stdin (or use --generate)");
    println!("{}", auth::hash_token(token));
    Ok(())
}

/// Raises the soft open-file limit to the hard one: collectors keep `/proc` and cgroup
/// files open between collects (one per process, a few per container), and streams hold sockets.
fn raise_open_file_limit() {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: `limit` is a valid, writable rlimit for the duration of each call.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) == 0 && limit.rlim_cur < limit.rlim_max
        {
            let before = limit.rlim_cur;
            limit.rlim_cur = limit.rlim_max;
            if libc::setrlimit(libc::RLIMIT_NOFILE, &limit) == 0 {
                tracing::debug!("open-file limit raised from {before} to {}", limit.rlim_max);
            }
        }
    }
}

fn serve(cli: &Cli) -> anyhow::Result<()> {
    // A plugin that calls exit() ends the host: make it a named failure, not a clean exit.
    vitals_host::guard::arm_exit_hook();
    let result = run_host(cli);
    vitals_host::guard::host_exits();
    result
}

fn run_host(cli: &Cli) -> anyhow::Result<()> {
    let (config, source) = load_config(cli.config.as_deref())?;
    host_root::set(HostRoot::resolve(
        cli.host_root.as_deref().or(config.host_root.as_deref()),
    ));
    raise_open_file_limit();
    let bind = cli.bind.unwrap_or(config.server.bind);
    let config_path = cli.config.clone().or_else(|| {
        Path::new(SYSTEM_CONFIG)
            .exists()
            .then(|| PathBuf::from(SYSTEM_CONFIG))
    });
    tracing::info!("config: {source}");
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name("vitals-rt")
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    runtime.block_on(async move {
        let (reload_tx, reload_rx) = tokio::sync::mpsc::channel(1);
        tokio::spawn(forward_sighup(reload_tx));
        let options = vitals_host::RunOptions { bind, config_path };
        vitals_host::run(config, options, shutdown_signal(), reload_rx, |addr| {
            tracing::info!("vitals listening on http://{addr}");
        })
        .await
    })?;
    Ok(())
}

async fn forward_sighup(tx: tokio::sync::mpsc::Sender<()>) {
    use tokio::signal::unix::{signal, SignalKind};
    let Ok(mut hup) = signal(SignalKind::hangup()) else {
        tracing::warn!("cannot watch SIGHUP; config reloads follow file changes only");
        return;
    };
    while hup.recv().await.is_some() {
        tracing::info!("SIGHUP received: reloading the config");
        let _ = tx.try_send(());
    }
}

async fn shutdown_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = match signal(SignalKind::terminate()) {
        Ok(s) => s,
        Err(e) => {
            tracing::error!("cannot watch SIGTERM: {e}");
            let _ = tokio::signal::ctrl_c().await;
            return;
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => tracing::info!("SIGINT received"),
        _ = term.recv() => tracing::info!("SIGTERM received"),
    }
}
