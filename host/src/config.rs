//! The TOML config: server, history and one table per collector, validated with every problem at once.

use std::collections::BTreeMap;
use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// The default config, also used when no config file exists.
pub const DEFAULT_CONFIG: &str = include_str!("../../config/vitals.toml");

/// The whole config file.
#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    /// The `[server]` table.
    pub server: ServerConfig,
    /// The `[history]` table.
    pub history: HistoryConfig,
    /// Folders searched for plugin libraries named without a path, after the config's own folder.
    pub plugin_dirs: Vec<PathBuf>,
    /// The `[collectors.NAME]` tables, by name.
    pub collectors: BTreeMap<String, CollectorConfig>,
    /// The folder of the config file; relative paths resolve against it.
    pub base_dir: PathBuf,
    /// Where the monitored machine's root file system is mounted when vitals watches it from a
    /// container (`/host` for `-v /:/host:ro`); `VITALS_HOST_ROOT` and `--host-root` override
    /// it. Collectors read `/proc`, `/sys`, `/etc` and the mounts under it. Read at start.
    pub host_root: Option<PathBuf>,
    /// The `[[alerts]]` rules and the `[alerting]` table.
    pub alerts: crate::alerts::AlertsConfig,
}

/// How the host is exposed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Mode {
    /// A machine of its own: the monitor API and page are served.
    Local,
    /// A cloud deployment: the monitor API and page are hidden.
    Cloud,
}

/// The `[server]` table.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ServerConfig {
    /// Address and port of the admin API (port 0 picks a free port).
    pub bind: SocketAddr,
    /// `local` serves the monitor; `cloud` hides it.
    pub mode: Mode,
    /// API tokens and their roles; with none, every client on the bound address is admin.
    pub tokens: Vec<TokenConfig>,
    /// Serve an API without tokens on a non-loopback address (refused unless set).
    pub allow_unauthenticated_remote: bool,
    /// The most Server-Sent-Events streams open at once; one more answers 503.
    pub max_streams: usize,
    /// How often an idle event stream gets a keep-alive comment.
    #[serde(with = "humantime_serde")]
    pub keep_alive: Duration,
    /// The most recent errors kept for `/admin/monitor/errors`: this many of the components
    /// (collectors, config, history), and as many failed requests in a list of their own.
    pub max_errors: usize,
    /// A request head must arrive within this long; an idle keep-alive connection closes after it.
    #[serde(with = "humantime_serde")]
    pub header_read_timeout: Duration,
    /// A connection that reads and writes nothing for this long is closed (a stalled body or reader).
    #[serde(with = "humantime_serde")]
    pub idle_timeout: Duration,
    /// The most connections served at once; lowered at start to keep `fd_reserve` descriptors free.
    pub max_connections: usize,
    /// The most connections served at once for one client address (loopback clients, such as
    /// a local reverse proxy, are held to `max_connections` only).
    pub max_connections_per_client: usize,
    /// Open-file descriptors kept free for the collectors, whatever the clients do.
    pub fd_reserve: usize,
    /// On shutdown, open requests get this long to finish; then every connection is closed.
    #[serde(with = "humantime_serde")]
    pub shutdown_timeout: Duration,
    /// Host names (with or without port) accepted in the `Host` header besides loopback
    /// addresses and `localhost`, when the API has no tokens (guards against DNS rebinding).
    pub allowed_hosts: Vec<String>,
    /// Proxies besides loopback whose `X-Forwarded-Proto: https` marks the session cookie `Secure`.
    pub trusted_proxies: Vec<std::net::IpAddr>,
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            bind: SocketAddr::from(([127, 0, 0, 1], 9777)),
            mode: Mode::Local,
            tokens: Vec::new(),
            allow_unauthenticated_remote: false,
            max_streams: 4096,
            keep_alive: Duration::from_secs(15),
            max_errors: 200,
            header_read_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(60),
            max_connections: 1024,
            max_connections_per_client: 256,
            fd_reserve: 128,
            shutdown_timeout: Duration::from_secs(5),
            allowed_hosts: Vec::new(),
            trusted_proxies: Vec::new(),
        }
    }
}

/// Who a token holder is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// The web front end's role: the monitor is hidden from it, as if it did not exist.
    Web,
    /// Read-only: monitor routes, streams and the dashboard.
    Viewer,
    /// Everything, including resets and collector control.
    Admin,
}

/// One `[[server.tokens]]` entry.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TokenConfig {
    /// A name for logs and the session (never the token itself).
    pub name: String,
    /// The role the token grants.
    pub role: Role,
    /// `sha256:<hex>` of the token, as printed by `vitals hash-token`.
    pub hash: String,
}

/// The `[history]` table: the live window kept in memory and the durable history on disk.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct HistoryConfig {
    /// Points kept in memory per series for the live charts (60 points at 5 s is 5 minutes).
    pub points: usize,
    /// Keep every series and event on disk (the durable history); `false` keeps only the live window.
    pub persist: bool,
    /// The store file; relative to the config file. Default: `/var/lib/vitals/history.db` for
    /// root, `$XDG_STATE_HOME/vitals/history.db` (or `~/.local/state/…`) for anyone else;
    /// the `VITALS_HISTORY_PATH` environment variable overrides the default.
    pub path: Option<PathBuf>,
    /// How long raw points (one per collect) are kept, e.g. `"24h"`.
    #[serde(with = "humantime_serde")]
    pub raw: Duration,
    /// How long 1-minute aggregates (min, avg, max, last, count) are kept, e.g. `"30d"`.
    #[serde(with = "humantime_serde")]
    pub minute: Duration,
    /// How long 1-hour aggregates are kept, e.g. `"365d"`.
    #[serde(with = "humantime_serde")]
    pub hour: Duration,
    /// The most disk the store may use, e.g. `"256MiB"`; the oldest data goes first.
    pub budget: ByteSize,
    /// How often buffered values are written; a crash loses at most this much.
    #[serde(with = "humantime_serde")]
    pub flush_interval: Duration,
}

impl Default for HistoryConfig {
    fn default() -> Self {
        Self {
            points: 60,
            persist: true,
            path: None,
            raw: Duration::from_secs(24 * 3600),
            minute: Duration::from_secs(30 * 24 * 3600),
            hour: Duration::from_secs(365 * 24 * 3600),
            budget: ByteSize(256 << 20),
            flush_interval: Duration::from_secs(10),
        }
    }
}

/// The environment variable that replaces the default path of the durable history.
pub const HISTORY_PATH_ENV: &str = "VITALS_HISTORY_PATH";

impl HistoryConfig {
    /// The store file: `path` against `base_dir`, else `VITALS_HISTORY_PATH`, else the default for this user.
    pub fn store_path(&self, base_dir: &Path) -> PathBuf {
        if let Some(p) = &self.path {
            return base_dir.join(p);
        }
        if let Some(p) = std::env::var_os(HISTORY_PATH_ENV).filter(|p| !p.is_empty()) {
            return PathBuf::from(p);
        }
        // SAFETY: geteuid has no preconditions and cannot fail.
        if unsafe { libc::geteuid() } == 0 {
            return PathBuf::from("/var/lib/vitals/history.db");
        }
        let state = std::env::var_os("XDG_STATE_HOME")
            .filter(|p| !p.is_empty())
            .map(PathBuf::from)
            .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".local/state")))
            .unwrap_or_else(std::env::temp_dir);
        state.join("vitals/history.db")
    }
}

/// One `[collectors.NAME]` table.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CollectorConfig {
    /// Whether the collector runs.
    #[serde(default = "default_true")]
    pub enabled: bool,
    /// The plugin library; default `libvitals_plugin_NAME.so`, searched next to the config,
    /// in `plugin_dirs` and next to the `vitals` binary. A path with a `/` is taken as is,
    /// relative to the config file.
    #[serde(default)]
    pub library: Option<PathBuf>,
    /// Time between collects, e.g. `"5s"` or `"500ms"`.
    #[serde(default = "default_interval", with = "humantime_serde")]
    pub interval: Duration,
    /// How long one collect may take before it counts as timed out (default: the interval,
    /// at most 10 s).
    #[serde(default, with = "humantime_serde")]
    pub deadline: Option<Duration>,
    /// `in-process` (default, fastest) or `process`: a child process of its own, so that a
    /// crash, a hang or a memory blow-up of the plugin ends only the child.
    #[serde(default)]
    pub isolation: Isolation,
    /// With `isolation = "process"` or a `command`: the child's address-space limit, e.g.
    /// `"1GiB"`. An isolated plugin (`isolation = "process"`) gets 512 MiB when none is set
    /// ([`DEFAULT_MEMORY_LIMIT`](crate::worker::child::DEFAULT_MEMORY_LIMIT)), so a leak ends
    /// in its child with a reason saying it ran out of memory; a `command` has no limit
    /// unless one is set.
    #[serde(default)]
    pub memory_limit: Option<ByteSize>,
    /// The plugin's own config table, passed to it as is (to a `command` as JSON on stdin).
    #[serde(default)]
    pub config: toml::Table,
    /// Run a program instead of loading a library: its argv, never through a shell
    /// (`["/usr/lib/nagios/plugins/check_load", "-w", "5,4,3"]`). A program named without a
    /// `/` is searched in `PATH`; a relative path is taken relative to the config file.
    #[serde(default)]
    pub command: Option<Vec<String>>,
    /// With `command`: how the program answers (`oneshot`, `daemon` or `nagios`).
    #[serde(default)]
    pub mode: Option<ExecMode>,
    /// With `command`: the user to run the program as (a name or a numeric uid); needs a host
    /// running as root, which then drops to that user and its group.
    #[serde(default)]
    pub user: Option<String>,
    /// With `command`: the program's working directory (default `/`), relative to the config file.
    #[serde(default)]
    pub working_dir: Option<PathBuf>,
    /// With `command`: the most bytes one answer on stdout may have (default `1MiB`).
    #[serde(default)]
    pub max_output: Option<ByteSize>,
    /// With `command` in `oneshot` or `nagios` mode: the CPU time one run may use, e.g. `"2s"`.
    #[serde(default, with = "humantime_serde")]
    pub cpu_limit: Option<Duration>,
    /// With `command`: chartable series of the program's section (the program may also
    /// declare them in its answer).
    #[serde(default)]
    pub series: Vec<vitals_plugin_api::Series>,
}

/// How a collector's program (`command`) is run and read.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ExecMode {
    /// One run per collect: the config as JSON on stdin, one JSON document on stdout.
    #[default]
    Oneshot,
    /// One long-running process: a request line per collect, a JSON line back.
    Daemon,
    /// A Nagios check plugin: exit code 0 to 3 is the check state, `TEXT|PERFDATA` its output.
    Nagios,
}

/// The default cap on one answer of a program.
pub const DEFAULT_MAX_OUTPUT: u64 = 1 << 20;

/// Where a collector's plugin runs.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Isolation {
    /// On a thread of the host: the cheapest; errors, panics and hangs are contained.
    #[default]
    InProcess,
    /// In a child `vitals` process: crashes, hangs and memory blow-ups are contained too.
    Process,
}

impl Isolation {
    /// The name, spelled as in the config, the API and the logs.
    pub fn as_str(self) -> &'static str {
        match self {
            Isolation::InProcess => "in-process",
            Isolation::Process => "process",
        }
    }
}

/// A size in bytes written as `"512MiB"`, `"1GiB"`, `"64MB"` or a plain number of bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ByteSize(pub u64);

impl<'de> Deserialize<'de> for ByteSize {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Number(u64),
            Text(String),
        }
        match Raw::deserialize(d)? {
            Raw::Number(n) => Ok(ByteSize(n)),
            Raw::Text(t) => parse_size(&t).map(ByteSize).ok_or_else(|| {
                serde::de::Error::custom(format!(
                    "invalid size `{t}`: use a number with KiB, MiB, GiB, KB, MB or GB"
                ))
            }),
        }
    }
}

/// Parses `"512MiB"`-style sizes into bytes.
pub fn parse_size(text: &str) -> Option<u64> {
    let t = text.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (number, unit) = t.split_at(split);
    let n: u64 = number.parse().ok()?;
    let factor: u64 = match unit.trim() {
        "" | "B" => 1,
        "KiB" => 1 << 10,
        "MiB" => 1 << 20,
        "GiB" => 1 << 30,
        "KB" | "kB" => 1_000,
        "MB" => 1_000_000,
        "GB" => 1_000_000_000,
        _ => return None,
    };
    n.checked_mul(factor)
}

impl CollectorConfig {
    /// The deadline in force: the configured one, or the interval capped at 10 s.
    pub fn effective_deadline(&self) -> Duration {
        self.deadline
            .unwrap_or_else(|| self.interval.min(Duration::from_secs(10)))
    }
}

fn default_true() -> bool {
    true
}

fn default_interval() -> Duration {
    Duration::from_secs(5)
}

/// The shortest interval a collector may have.
pub const MIN_INTERVAL: Duration = Duration::from_millis(100);
/// The longest interval a collector may have.
pub const MAX_INTERVAL: Duration = Duration::from_secs(24 * 3600);
/// The most history points per series.
pub const MAX_HISTORY_POINTS: usize = 100_000;

/// One problem in a config file, located where the TOML parser can tell.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// 1-based line, when known.
    pub line: Option<usize>,
    /// 1-based column, when known.
    pub column: Option<usize>,
    /// The dotted key path, e.g. `collectors.cpu.interval`.
    pub key: String,
    /// What is wrong.
    pub message: String,
}

/// Every problem found in one config file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    /// The file the problems are in.
    pub file: PathBuf,
    /// The problems, in file order.
    pub problems: Vec<Problem>,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let n = self.problems.len();
        write!(
            f,
            "{}: {n} problem{}",
            self.file.display(),
            if n == 1 { "" } else { "s" }
        )?;
        for p in &self.problems {
            write!(f, "\n  {}", self.file.display())?;
            if let (Some(l), Some(c)) = (p.line, p.column) {
                write!(f, ":{l}:{c}")?;
            }
            if p.key.is_empty() {
                write!(f, ": {}", p.message)?;
            } else {
                write!(f, ": `{}`: {}", p.key, p.message)?;
            }
        }
        Ok(())
    }
}

impl std::error::Error for ConfigError {}

/// Reads and validates a config file.
///
/// # Errors
/// A [`ConfigError`] listing every problem, or one problem when the file cannot be read.
pub fn load(path: &Path) -> Result<Config, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|e| ConfigError {
        file: path.to_owned(),
        problems: vec![Problem {
            line: None,
            column: None,
            key: String::new(),
            message: format!("cannot read the file: {e}"),
        }],
    })?;
    let base = path
        .parent()
        .map(Path::to_owned)
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or_else(|| PathBuf::from("."));
    parse(&text, path, &base)
}

/// Parses and validates config text; `file` names it in messages, `base_dir` anchors paths.
///
/// # Errors
/// A [`ConfigError`] listing every problem found.
pub fn parse(text: &str, file: &Path, base_dir: &Path) -> Result<Config, ConfigError> {
    let mut ctx = Ctx {
        text,
        doc: None,
        problems: Vec::new(),
    };
    let root: toml::Table = match toml::from_str(text) {
        Ok(t) => t,
        Err(e) => {
            let (line, column) = e.span().map(|s| ctx.line_col(s.start)).unzip();
            return Err(ConfigError {
                file: file.to_owned(),
                problems: vec![Problem {
                    line,
                    column,
                    key: String::new(),
                    message: e.message().trim().to_owned(),
                }],
            });
        }
    };
    ctx.doc = toml_edit::Document::parse(text.to_owned()).ok();

    let mut config = Config {
        server: ServerConfig::default(),
        history: HistoryConfig::default(),
        plugin_dirs: Vec::new(),
        collectors: BTreeMap::new(),
        base_dir: base_dir.to_owned(),
        host_root: None,
        alerts: Default::default(),
    };
    let (mut alert_rules, mut alerting) = (None, None);
    for (key, value) in root {
        match key.as_str() {
            "server" => {
                if let Some(v) = ctx.part(&["server"], value) {
                    config.server = v;
                }
            }
            "history" => {
                if let Some(v) = ctx.part(&["history"], value) {
                    config.history = v;
                }
            }
            "plugin_dirs" => {
                if let Some(v) = ctx.part(&["plugin_dirs"], value) {
                    config.plugin_dirs = v;
                }
            }
            "host_root" => {
                if let Some(v) = ctx.part::<PathBuf>(&["host_root"], value) {
                    config.host_root = Some(base_dir.join(v));
                }
            }
            "alerts" => alert_rules = Some(value),
            "alerting" => alerting = Some(value),
            "collectors" => match value {
                toml::Value::Table(t) => {
                    for (name, value) in t {
                        if let Some(c) = ctx.part::<CollectorConfig>(&["collectors", &name], value) {
                            config.collectors.insert(name, c);
                        }
                    }
                }
                other => ctx.problem(
                    &["collectors"],
                    format!("expected a table of collectors, found {}", other.type_str()),
                ),
            },
            other => ctx.problem(
                &[other],
                format!(
                    "unknown key `{other}`, expected one of `server`, `history`, `plugin_dirs`, `host_root`, `collectors`, `alerts`, `alerting`"
                ),
            ),
        }
    }
    let names: Vec<&str> = config.collectors.keys().map(String::as_str).collect();
    let (alerts, problems) = crate::alerts::rules::parse(
        alert_rules,
        alerting,
        text,
        &file.display().to_string(),
        &names,
    );
    config.alerts = alerts;
    ctx.problems.extend(problems);
    validate(&config, &mut ctx);

    if ctx.problems.is_empty() {
        Ok(config)
    } else {
        ctx.problems.sort_by_key(|p| (p.line, p.column));
        Err(ConfigError {
            file: file.to_owned(),
            problems: ctx.problems,
        })
    }
}

fn validate(config: &Config, ctx: &mut Ctx<'_>) {
    for (i, t) in config.server.tokens.iter().enumerate() {
        let digest = t.hash.strip_prefix("sha256:").unwrap_or_default();
        if digest.len() != 64 || !digest.bytes().all(|b| b.is_ascii_hexdigit()) {
            ctx.problem(
                &["server", "tokens"],
                format!(
                    "token {} (`{}`): hash must be `sha256:` and 64 hex digits, as `vitals hash-token` prints",
                    i + 1,
                    t.name
                ),
            );
        }
    }
    if config.server.max_streams == 0 {
        ctx.problem(&["server", "max_streams"], "must be at least 1".to_owned());
    }
    if config.server.keep_alive < Duration::from_secs(1) {
        ctx.problem(&["server", "keep_alive"], "must be at least 1s".to_owned());
    }
    if config.history.points == 0 || config.history.points > MAX_HISTORY_POINTS {
        ctx.problem(
            &["history", "points"],
            format!("must be between 1 and {MAX_HISTORY_POINTS}"),
        );
    }
    validate_history(&config.history, ctx);
    check_metric_names(config, ctx);
    for (name, c) in &config.collectors {
        if !valid_name(name) {
            ctx.problem(
                &["collectors", name],
                format!("collector name `{name}` may hold only a-z, 0-9, `_` and `-`"),
            );
        }
        if c.interval < MIN_INTERVAL || c.interval > MAX_INTERVAL {
            ctx.problem(
                &["collectors", name, "interval"],
                format!(
                    "interval {} is out of range: it must be between {} and {}",
                    humantime::format_duration(c.interval),
                    humantime::format_duration(MIN_INTERVAL),
                    humantime::format_duration(MAX_INTERVAL)
                ),
            );
        }
        if c.memory_limit.is_some() && c.isolation != Isolation::Process && c.command.is_none() {
            ctx.problem(
                &["collectors", name, "memory_limit"],
                "memory_limit needs isolation = \"process\" or a command".to_owned(),
            );
        }
        validate_command(name, c, ctx);
        if c.memory_limit.is_some_and(|m| m.0 < 16 << 20) {
            ctx.problem(
                &["collectors", name, "memory_limit"],
                "memory_limit must be at least 16MiB".to_owned(),
            );
        }
        if c.deadline.is_some_and(|d| d.is_zero()) {
            ctx.problem(
                &["collectors", name, "deadline"],
                "deadline must be above zero".to_owned(),
            );
        }
    }
}

fn validate_history(h: &HistoryConfig, ctx: &mut Ctx<'_>) {
    let hour = Duration::from_secs(3600);
    if h.raw < hour {
        ctx.problem(&["history", "raw"], "must be at least 1h".to_owned());
    }
    if h.minute < h.raw {
        ctx.problem(
            &["history", "minute"],
            "must be at least as long as `raw`".to_owned(),
        );
    }
    if h.hour < h.minute {
        ctx.problem(
            &["history", "hour"],
            "must be at least as long as `minute`".to_owned(),
        );
    }
    if h.budget.0 < 1 << 20 {
        ctx.problem(&["history", "budget"], "must be at least 1MiB".to_owned());
    }
    if h.flush_interval < Duration::from_secs(1) || h.flush_interval > Duration::from_secs(600) {
        ctx.problem(
            &["history", "flush_interval"],
            "must be between 1s and 10m".to_owned(),
        );
    }
}

/// Checks the keys of a collector that runs a program (`command` and the keys only it takes).
fn validate_command(name: &str, c: &CollectorConfig, ctx: &mut Ctx<'_>) {
    let Some(command) = &c.command else {
        let only_with = [
            ("mode", c.mode.is_some()),
            ("user", c.user.is_some()),
            ("working_dir", c.working_dir.is_some()),
            ("max_output", c.max_output.is_some()),
            ("cpu_limit", c.cpu_limit.is_some()),
            ("series", !c.series.is_empty()),
        ];
        for (key, set) in only_with {
            if set {
                ctx.problem(
                    &["collectors", name, key],
                    format!("`{key}` applies only to a collector with a `command`"),
                );
            }
        }
        return;
    };
    if c.library.is_some() {
        ctx.problem(
            &["collectors", name, "command"],
            "a collector has a `library` or a `command`, not both".to_owned(),
        );
    }
    if command.first().is_none_or(|p| p.trim().is_empty()) {
        ctx.problem(
            &["collectors", name, "command"],
            "`command` needs at least the program: [\"/path/to/program\", \"arg\", …]".to_owned(),
        );
    }
    if command.iter().any(|a| a.contains('\0')) {
        ctx.problem(
            &["collectors", name, "command"],
            "an argument holds a NUL byte".to_owned(),
        );
    }
    if c.mode == Some(ExecMode::Daemon) && c.cpu_limit.is_some() {
        ctx.problem(
            &["collectors", name, "cpu_limit"],
            "cpu_limit bounds one run; a daemon's CPU time is its whole life: use it with `oneshot` or `nagios`".to_owned(),
        );
    }
    if c.cpu_limit.is_some_and(|d| d < Duration::from_secs(1)) {
        ctx.problem(
            &["collectors", name, "cpu_limit"],
            "cpu_limit must be at least 1s (the kernel counts whole seconds)".to_owned(),
        );
    }
    if c.max_output.is_some_and(|m| m.0 == 0 || m.0 > 1 << 30) {
        ctx.problem(
            &["collectors", name, "max_output"],
            "max_output must be between 1 byte and 1GiB".to_owned(),
        );
    }
    if c.user
        .as_deref()
        .is_some_and(|u| u.is_empty() || u.contains('\0'))
    {
        ctx.problem(
            &["collectors", name, "user"],
            "user must be a user name or a numeric uid".to_owned(),
        );
    }
}

/// The first words of the host's own metric names (`vitals_collector_up`, `vitals_http_…`,
/// `vitals_build_info`, `vitals_alert_firing`): no collector may be named so.
pub const RESERVED_METRIC_WORDS: &[&str] = &["collector", "http", "build", "alert"];

/// The words a collector's name gives its metric names (`vitals_<words>_<field>`).
fn metric_words(name: &str) -> Vec<&str> {
    name.split(['_', '-']).filter(|w| !w.is_empty()).collect()
}

/// The built-in collectors, whose metric names no other collector may take over.
pub const BUILT_IN_COLLECTORS: &[&str] = &[
    "cpu", "memory", "system", "gpu", "disk", "network", "process", "docker",
];

/// Collector names whose Prometheus metric names would collide: the same words (`cpu-usage`
/// and `cpu_usage`), a name that extends a built-in collector's (`cpu_usage` would give
/// `vitals_cpu_usage_…`, which the `cpu` collector's `usage_percent` already gives), or a
/// name that starts with a word of the host's own metrics.
fn check_metric_names(config: &Config, ctx: &mut Ctx<'_>) {
    let names: Vec<&String> = config.collectors.keys().collect();
    for (i, a) in names.iter().enumerate() {
        let wa = metric_words(a);
        if let Some(w) = wa.first().filter(|w| RESERVED_METRIC_WORDS.contains(w)) {
            ctx.problem(
                &["collectors", a],
                format!("collector name `{a}` would give metric names of the host's own (`vitals_{w}_…`): rename it"),
            );
        }
        if let Some(b) = BUILT_IN_COLLECTORS
            .iter()
            .find(|b| **b != a.as_str() && wa.len() > 1 && wa[0] == **b)
        {
            ctx.problem(
                &["collectors", a],
                format!(
                    "collector name `{a}` would give metric names inside the built-in `{b}` collector's (`vitals_{b}_…`): rename it"
                ),
            );
        }
        for b in &names[i + 1..] {
            if metric_words(b) == wa {
                ctx.problem(
                    &["collectors", b],
                    format!(
                        "collectors `{a}` and `{b}` would give the same Prometheus metric names (`vitals_{}_…`): rename one",
                        wa.join("_")
                    ),
                );
            }
        }
    }
}

/// True for names usable in URLs, metric labels and file names.
pub fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-')
}

impl Config {
    /// Every enabled collector whose plugin library cannot be found, as config problems.
    ///
    /// # Errors
    /// A [`ConfigError`] naming each missing library with its line.
    pub fn check_libraries(
        &self,
        file: &Path,
        text: &str,
        exe_dir: Option<&Path>,
    ) -> Result<(), ConfigError> {
        let mut ctx = Ctx {
            text,
            doc: toml_edit::Document::parse(text.to_owned()).ok(),
            problems: Vec::new(),
        };
        for (name, c) in self.collectors.iter().filter(|(_, c)| c.enabled) {
            if c.command.is_some() {
                if let Err(message) = self.resolve_command(c) {
                    ctx.problem(&["collectors", name, "command"], message);
                }
                continue;
            }
            if let Err(message) = self.resolve_library(name, c, exe_dir) {
                let key: &[&str] = if c.library.is_some() {
                    &["collectors", name, "library"]
                } else {
                    &["collectors", name]
                };
                ctx.problem(key, message);
            }
        }
        if ctx.problems.is_empty() {
            Ok(())
        } else {
            Err(ConfigError {
                file: file.to_owned(),
                problems: ctx.problems,
            })
        }
    }

    /// Where collector `name`'s library is.
    ///
    /// # Errors
    /// A message listing the places searched when it is found in none.
    pub fn resolve_library(
        &self,
        name: &str,
        c: &CollectorConfig,
        exe_dir: Option<&Path>,
    ) -> Result<PathBuf, String> {
        let file = c
            .library
            .clone()
            .unwrap_or_else(|| PathBuf::from(default_library_name(name)));
        if file.components().count() > 1 || file.is_absolute() {
            let path = self.base_dir.join(&file);
            return if path.exists() {
                Ok(path)
            } else {
                Err(format!("plugin library not found: {}", path.display()))
            };
        }
        let candidates = self
            .search_dirs(exe_dir)
            .into_iter()
            .map(|d| d.join(&file))
            .collect::<Vec<_>>();
        candidates
            .iter()
            .find(|p| p.exists())
            .cloned()
            .ok_or_else(|| {
                format!(
                    "plugin library `{}` not found in {}",
                    file.display(),
                    candidates
                        .iter()
                        .filter_map(|p| p.parent())
                        .map(|p| p.display().to_string())
                        .collect::<Vec<_>>()
                        .join(", ")
                )
            })
    }

    /// The program of a collector's `command`: a name without a `/` searched in `PATH`, a
    /// relative path taken relative to the config file; it must be an executable file.
    ///
    /// # Errors
    /// A message naming the path when the program is missing or not executable.
    pub fn resolve_command(&self, c: &CollectorConfig) -> Result<PathBuf, String> {
        let program = c
            .command
            .as_ref()
            .and_then(|a| a.first())
            .ok_or_else(|| "no command".to_owned())?;
        let path = if program.contains('/') {
            self.base_dir.join(program)
        } else {
            let path = std::env::var_os("PATH").unwrap_or_else(|| DEFAULT_PATH.into());
            std::env::split_paths(&path)
                .map(|d| d.join(program))
                .find(|p| p.is_file())
                .ok_or_else(|| format!("program `{program}` not found in PATH"))?
        };
        executable(&path).map(|()| path)
    }

    /// The folders searched for libraries named without a path, in order: the config's
    /// folder, `plugin_dirs`, the binary's folder, and [`SYSTEM_PLUGIN_DIR`] when it exists.
    pub fn search_dirs(&self, exe_dir: Option<&Path>) -> Vec<PathBuf> {
        let mut dirs = vec![self.base_dir.clone()];
        dirs.extend(self.plugin_dirs.iter().map(|d| self.base_dir.join(d)));
        if let Some(e) = exe_dir {
            dirs.push(e.to_owned());
        }
        if Path::new(SYSTEM_PLUGIN_DIR).is_dir() {
            dirs.push(PathBuf::from(SYSTEM_PLUGIN_DIR));
        }
        dirs.dedup();
        dirs
    }
}

/// Where the Debian package and the container image install the plugins; searched last.
pub const SYSTEM_PLUGIN_DIR: &str = "/usr/lib/vitals/plugins";

/// The `PATH` used when the host has none (also the one programs get then).
pub const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// Ok when `path` is a regular file this process may execute.
fn executable(path: &Path) -> Result<(), String> {
    use std::os::unix::ffi::OsStrExt as _;
    let meta = std::fs::metadata(path)
        .map_err(|e| format!("program not found: {}: {e}", path.display()))?;
    if !meta.is_file() {
        return Err(format!("program is not a file: {}", path.display()));
    }
    let c_path = std::ffi::CString::new(path.as_os_str().as_bytes())
        .map_err(|_| format!("program path holds a NUL byte: {}", path.display()))?;
    // SAFETY: access reads the NUL-terminated path and nothing else.
    if unsafe { libc::access(c_path.as_ptr(), libc::X_OK) } != 0 {
        return Err(format!(
            "program is not executable: {} (chmod +x, or check the folder's permissions)",
            path.display()
        ));
    }
    Ok(())
}

/// The file name a collector's library has when none is configured.
pub fn default_library_name(collector: &str) -> String {
    format!(
        "{}vitals_plugin_{}{}",
        std::env::consts::DLL_PREFIX,
        collector.replace('-', "_"),
        std::env::consts::DLL_SUFFIX
    )
}

struct Ctx<'a> {
    text: &'a str,
    doc: Option<toml_edit::Document<String>>,
    problems: Vec<Problem>,
}

impl Ctx<'_> {
    fn line_col(&self, offset: usize) -> (usize, usize) {
        line_col(self.text, offset)
    }

    /// The span of the deepest part of `path` the document has (key first, then value).
    fn span_of(&self, path: &[&str]) -> Option<std::ops::Range<usize>> {
        deepest_span(self.doc.as_ref()?.as_table(), path, None)
    }

    fn problem(&mut self, path: &[&str], message: String) {
        let (line, column) = self.span_of(path).map(|s| self.line_col(s.start)).unzip();
        self.problems.push(Problem {
            line,
            column,
            key: path.join("."),
            message,
        });
    }

    /// Deserialises one part; on an error it records it, drops the offending key and tries
    /// again, so every bad key of a table is reported at once.
    fn part<T: serde::de::DeserializeOwned>(
        &mut self,
        path: &[&str],
        mut value: toml::Value,
    ) -> Option<T> {
        for _ in 0..64 {
            let err = match serde_path_to_error::deserialize::<_, T>(value.clone()) {
                Ok(v) => return Some(v),
                Err(e) => e,
            };
            let mut rel: Vec<String> = err
                .path()
                .iter()
                .filter_map(|seg| match seg {
                    serde_path_to_error::Segment::Map { key } => Some(key.clone()),
                    _ => None,
                })
                .collect();
            // toml appends "in `key`" on a line of its own; the key is in the path already.
            let raw = err.inner().to_string();
            let message = raw
                .split("\nin `")
                .next()
                .unwrap_or_default()
                .trim()
                .to_owned();
            if let Some(unknown) = message
                .strip_prefix("unknown field `")
                .and_then(|r| r.split('`').next())
            {
                if rel.last().map(String::as_str) != Some(unknown) {
                    rel.push(unknown.to_owned());
                }
            }
            let full: Vec<&str> = path
                .iter()
                .copied()
                .chain(rel.iter().map(String::as_str))
                .collect();
            self.problem(&full, message);
            if !remove_key(&mut value, &rel) {
                return None;
            }
        }
        None
    }
}

/// Removes the key at `path` inside `value`; false when there is nothing to remove.
fn remove_key(value: &mut toml::Value, path: &[String]) -> bool {
    let Some((last, parents)) = path.split_last() else {
        return false;
    };
    let mut cur = value;
    for p in parents {
        match cur.get_mut(p.as_str()) {
            Some(next) => cur = next,
            None => return false,
        }
    }
    cur.as_table_mut().and_then(|t| t.remove(last)).is_some()
}

/// The 1-based line and column of byte `offset` in `text`.
pub(crate) fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let before = &text[..offset.min(text.len())];
    let line = before.matches('\n').count() + 1;
    let column = before
        .rfind('\n')
        .map_or(before.len(), |i| before.len() - i - 1)
        + 1;
    (line, column)
}

/// The span of the deepest part of `path` under `table` that the document has (its key
/// first, then its value), or `best` when not even the first key is there.
pub(crate) fn deepest_span(
    mut table: &dyn toml_edit::TableLike,
    path: &[&str],
    mut best: Option<std::ops::Range<usize>>,
) -> Option<std::ops::Range<usize>> {
    for (i, key) in path.iter().enumerate() {
        let Some(item) = table.get(key) else { break };
        best = table
            .key(key)
            .and_then(|k| k.span())
            .or_else(|| item.span())
            .or(best);
        if i + 1 < path.len() {
            match item.as_table_like() {
                Some(t) => table = t,
                None => break,
            }
        }
    }
    best
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_str(text: &str) -> Result<Config, ConfigError> {
        parse(text, Path::new("test.toml"), Path::new("."))
    }

    /// Guards that the shipped default config parses.
    #[test]
    fn default_config_parses() {
        let c = parse_str(DEFAULT_CONFIG).expect("default config");
        assert!(c.collectors.contains_key("cpu"));
        assert!(c.server.bind.ip().is_loopback());
    }

    /// Guards that every problem is reported at once, each with its line and key.
    #[test]
    fn reports_every_problem_with_line_and_key() {
        let text = "[server]\nbind = \"127.0.0.1:1\"\nport = 3\n\n[collectors.cpu]\nintervall = \"5s\"\n\n[collectors.memory]\ninterval = 5\n";
        let err = parse_str(text).expect_err("two problems");
        assert_eq!(err.problems.len(), 3, "{err}");
        let rendered = err.to_string();
        assert!(
            rendered.contains("test.toml:3:1: `server.port`: unknown field `port`"),
            "{rendered}"
        );
        assert!(
            rendered.contains("test.toml:6:1: `collectors.cpu.intervall`"),
            "{rendered}"
        );
        assert!(
            rendered.contains("test.toml:9:1: `collectors.memory.interval`"),
            "{rendered}"
        );
    }

    /// Guards the default deadline: the interval, capped at 10 s.
    #[test]
    fn deadline_defaults_to_capped_interval() {
        let c = parse_str("[collectors.a]\ninterval = \"1m\"\n[collectors.b]\ninterval = \"2s\"\n")
            .expect("valid");
        assert_eq!(
            c.collectors["a"].effective_deadline(),
            Duration::from_secs(10)
        );
        assert_eq!(
            c.collectors["b"].effective_deadline(),
            Duration::from_secs(2)
        );
    }

    /// Guards the library naming rule for collectors without a `library` key.
    #[test]
    fn default_library_name_follows_the_collector() {
        assert_eq!(default_library_name("cpu"), "libvitals_plugin_cpu.so");
        assert_eq!(
            default_library_name("my-thing"),
            "libvitals_plugin_my_thing.so"
        );
    }
}

#[cfg(test)]
mod proptests {
    use super::*;
    use proptest::prelude::*;

    fn parse_str(text: &str) -> Result<Config, ConfigError> {
        parse(text, Path::new("test.toml"), Path::new("."))
    }

    /// Every problem of a refused text names a line and a column inside the text.
    fn located(text: &str, err: &ConfigError) -> Result<(), TestCaseError> {
        prop_assert!(!err.problems.is_empty());
        let lines = text.lines().count() + 1;
        for p in &err.problems {
            let (Some(line), Some(column)) = (p.line, p.column) else {
                return Err(TestCaseError::fail(format!(
                    "no line and column: {p:?}\n{text}"
                )));
            };
            prop_assert!(
                (1..=lines).contains(&line) && column >= 1,
                "{:?}\n{}",
                p,
                text
            );
        }
        Ok(())
    }

    /// A TOML value of any type, in the shapes the config's keys take and others.
    fn value() -> impl Strategy<Value = String> {
        prop_oneof![
            "\"[0-9]{1,6}(ms|s|m|h|d|w|B|KiB|MiB|GiB|KB|GB)?\"",
            "\"[a-z0-9 ._:/*?-]{0,12}\"",
            "-?[0-9]{1,20}",
            "-?[0-9]{1,3}\\.[0-9]{1,3}|inf|nan",
            "true|false",
            "\\[\\]|\\[\"[a-z]{1,5}\"(, \"[a-z/]{1,5}\"){0,2}\\]|\\[1, \"a\"\\]",
            "\\{ ?\\}|\\{ [a-z_]{1,8} = [0-9]{1,3} \\}|\\{ name = \"[a-z]{1,4}\", path = \"/[a-z]{1,4}\" \\}",
            "\"127\\.0\\.0\\.1:[0-9]{1,5}\"|\"\\[::1\\]:0\"",
            "\"(process|in-process|exec|cloud|admin|web|local|daemon|>|<|absent)\"",
            "1979-05-27T07:32:00Z",
        ]
    }

    /// A key of the config's tables, or another.
    fn key() -> impl Strategy<Value = String> {
        let known = vec![
            "bind",
            "mode",
            "tokens",
            "max_streams",
            "keep_alive",
            "max_errors",
            "points",
            "persist",
            "path",
            "raw",
            "minute",
            "hour",
            "budget",
            "flush_interval",
            "enabled",
            "library",
            "interval",
            "deadline",
            "isolation",
            "memory_limit",
            "config",
            "command",
            "user",
            "working_dir",
            "max_output",
            "cpu_limit",
            "series",
            "plugin_dirs",
            "host_root",
            "name",
            "role",
            "hash",
            "series",
            "field",
            "op",
            "threshold",
            "for",
            "severity",
            "summary",
            "labels",
            "rate",
            "window",
            "collectors",
            "server",
        ];
        prop_oneof![
            prop::sample::select(known).prop_map(str::to_owned),
            "[a-z_]{1,10}",
            "\"[a-z .]{0,6}\"",
        ]
    }

    /// A table header of the config, or another.
    fn header() -> impl Strategy<Value = String> {
        prop_oneof![
            prop::sample::select(vec![
                "",
                "[server]",
                "[history]",
                "[collectors.cpu]",
                "[collectors.my-probe]",
                "[collectors.cpu.config]",
                "[[alerts]]",
                "[alerting]",
                "[alerting.stock.cpu_high]",
                "[[server.tokens]]",
                "[[collectors]]",
                "[junk]",
                "[collectors]",
            ])
            .prop_map(str::to_owned),
            "\\[collectors\\.[a-zA-Z0-9_-]{1,12}\\]",
        ]
    }

    /// A config-shaped TOML document: tables of key = value lines.
    fn document() -> impl Strategy<Value = String> {
        prop::collection::vec(
            (header(), prop::collection::vec((key(), value()), 0..6)),
            0..6,
        )
        .prop_map(|tables| {
            let mut text = String::new();
            for (header, pairs) in tables {
                text += &format!("{header}\n");
                for (k, v) in pairs {
                    text += &format!("{k} = {v}\n");
                }
            }
            text
        })
    }

    proptest! {
        // Each case parses TOML twice (toml and toml_edit) and validates it.
        #![proptest_config(ProptestConfig::with_cases(200))]

        /// Guards that no text panics the config parser and validation, and that every
        /// problem of a refused text names its line and column.
        #[test]
        fn arbitrary_text_never_panics(text in "\\PC{0,300}") {
            if let Err(err) = parse_str(&text) {
                located(&text, &err)?;
            }
        }

        /// Guards that config-shaped documents (known and unknown tables and keys, values of
        /// every type) never panic the validation, and every problem names its line and column.
        #[test]
        fn config_shaped_documents_never_panic(text in document()) {
            if let Err(err) = parse_str(&text) {
                located(&text, &err)?;
                let _ = err.to_string();
            }
        }

        /// Guards the size parser: no text panics it, and a number with any unit it knows
        /// comes back in bytes, or as nothing when that overflows 64 bits.
        #[test]
        fn sizes_round_trip(
            text in "\\PC{0,20}",
            n in prop_oneof![0u64..1 << 20, any::<u64>()],
            (unit, factor) in prop::sample::select(vec![
                ("", 1u64), ("B", 1), ("KiB", 1 << 10), ("MiB", 1 << 20), ("GiB", 1 << 30),
                ("KB", 1_000), ("kB", 1_000), ("MB", 1_000_000), ("GB", 1_000_000_000),
            ]),
            space in any::<bool>(),
        ) {
            let _ = parse_size(&text);
            let printed = format!("{n}{}{unit}", if space { " " } else { "" });
            prop_assert_eq!(parse_size(&printed), n.checked_mul(factor));
        }

        /// Guards the round trip: a generated valid config parses without a problem to the
        /// server address, history points and each collector's settings it was written with.
        #[test]
        fn valid_configs_round_trip(
            port in 0u16..=u16::MAX,
            points in 1usize..=MAX_HISTORY_POINTS,
            collectors in prop::collection::btree_map(
                "z[a-z0-9]{0,7}",
                (any::<bool>(), 1u64..=86_400, prop::option::of(1u64..=600), prop::option::of("[a-z]{1,8}")),
                0..6,
            ),
        ) {
            let mut text = format!("[server]\nbind = \"127.0.0.1:{port}\"\n\n[history]\npoints = {points}\n");
            for (name, (enabled, interval, deadline, option)) in &collectors {
                text += &format!("\n[collectors.{name}]\nenabled = {enabled}\ninterval = \"{interval}s\"\n");
                if let Some(d) = deadline {
                    text += &format!("deadline = \"{d}ms\"\n");
                }
                if let Some(o) = option {
                    text += &format!("[collectors.{name}.config]\n{o} = \"{o}\"\n");
                }
            }
            let config = parse_str(&text).map_err(|e| TestCaseError::fail(format!("{e}\n{text}")))?;
            prop_assert_eq!(config.server.bind, SocketAddr::from(([127, 0, 0, 1], port)));
            prop_assert_eq!(config.history.points, points);
            prop_assert_eq!(config.collectors.len(), collectors.len());
            for (name, (enabled, interval, deadline, option)) in &collectors {
                let c = &config.collectors[name];
                prop_assert_eq!(c.enabled, *enabled);
                prop_assert_eq!(c.interval, Duration::from_secs(*interval));
                prop_assert_eq!(c.deadline, deadline.map(Duration::from_millis));
                let want: toml::Table = option
                    .iter()
                    .map(|o| (o.clone(), toml::Value::String(o.clone())))
                    .collect();
                prop_assert_eq!(&c.config, &want);
            }
        }
    }
}
