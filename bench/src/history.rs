//! The durable history's figures: extra CPU at 1 s with 50 containers, the file after 30 days projected over the tiers' retention, and the dashboard's query times over a 30-day store.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde_json::Value;
use vitals_history::{History, Millis, Retention, SeriesKey, Status};

use crate::figures::{self, count, idle_window, listed, wait_for_containers};
use crate::host::{self, Build, Vitals};
use crate::table::Row;
use crate::target;
use crate::verdict::Reading;
use crate::{docker, load, procfs, setup, Only, Opts, Windows};

const CPU_FIGURE: &str = "durable history: extra CPU, every collector at 1 s, 50 idle containers";
const DISK_FIGURE: &str =
    "durable history: file after 30 days, default config, 100 containers (projected)";
const DAY_FIGURE: &str = "durable history: 24 h of one series at a 1-minute step";
const VIEW_FIGURE: &str = "durable history: the dashboard's 30-day view, every chart";
const POINTS_FIGURE: &str =
    "durable history: points per chart line, every range the dashboard offers";

/// Idle containers of the extra-CPU figure.
const CPU_CONTAINERS: usize = 50;
/// Idle containers of the disk and query figures.
const DISK_CONTAINERS: usize = 100;
/// The default collect interval, at which the store is seeded for its last day.
const INTERVAL_MS: Millis = 5_000;
/// Simulated time between flushes: the recorder's default flush interval.
const FLUSH_MS: Millis = 10_000;
/// The dashboard's points per chart line (`CHART_POINTS` in web/static/live.js).
const CHART_POINTS: i64 = 600;
/// The ranges the dashboard's picker offers (`RANGES` in web/static/live.js), in seconds.
const RANGES: [(&str, i64); 5] = [
    ("1h", 3_600),
    ("6h", 6 * 3_600),
    ("24h", 24 * 3_600),
    ("7d", 7 * 86_400),
    ("30d", 30 * 86_400),
];
/// Requests of the one-series day query (the first, cold, is reported apart).
const DAY_REPEATS: usize = 21;
/// Loads of the 30-day view.
const VIEW_REPEATS: usize = 5;
const DAY_MS: Millis = 86_400_000;

/// Every row of this file, not measured for the same reason.
fn not_measured(why: &str) -> Vec<Row> {
    let mut rows = vec![Row::not_measured(
        CPU_FIGURE,
        &target::HISTORY_EXTRA_1S_CONTAINERS,
        why,
    )];
    rows.extend(store_not_measured(why));
    rows
}

/// The disk and query rows, not measured for the same reason.
fn store_not_measured(why: &str) -> Vec<Row> {
    vec![
        Row::not_measured(DISK_FIGURE, &target::HISTORY_DISK_30D, why),
        Row::not_measured(DAY_FIGURE, &target::HISTORY_QUERY_DAY, why),
        Row::not_measured(VIEW_FIGURE, &target::HISTORY_QUERY_30D, why),
        Row::not_measured(POINTS_FIGURE, &target::HISTORY_POINTS, why),
    ]
}

/// `--only`: the 5 s rows, and with `history` every row of this file; prints the table.
///
/// # Errors
/// When a host cannot be started or stops answering.
pub async fn only(build: &Build, opts: &Opts, windows: Windows, only: Only) -> anyhow::Result<()> {
    let started = Instant::now();
    let (load_start, loadavg_start) = procfs::load_average();
    docker::remove_orphans();
    let table = match only {
        Only::History => {
            let mut t = figures::five_second_rows(build, windows).await?;
            t.extend(rows(build, windows, !opts.no_containers).await?);
            t
        }
        Only::History5s => figures::five_second_rows(build, windows).await?,
        Only::HistoryStore if opts.no_containers => store_not_measured("--no-containers"),
        Only::HistoryStore => match docker::unavailable() {
            Some(why) => store_not_measured(&why),
            None => store_rows(build, windows).await?,
        },
    };
    figures::print_table(&table, started, &loadavg_start, load_start, "", "");
    Ok(())
}

/// The durable history's rows beyond the 5 s ones: extra CPU at 1 s with 50 containers, the
/// file after 30 days, and query times.
///
/// # Errors
/// When a host cannot be started or stops answering.
pub async fn rows(build: &Build, windows: Windows, containers: bool) -> anyhow::Result<Vec<Row>> {
    if !containers {
        return Ok(not_measured("--no-containers"));
    }
    if let Some(why) = docker::unavailable() {
        return Ok(not_measured(&why));
    }
    let mut rows = vec![extra_cpu_row(build, windows).await?];
    rows.extend(store_rows(build, windows).await?);
    Ok(rows)
}

/// Starts `n` idle containers on the default bridge, else (a daemon whose bridge is gone)
/// with no network; says which.
fn start_fleet(n: usize) -> Result<(docker::Fleet, String), String> {
    match docker::Fleet::start(n) {
        Ok(f) => Ok((f, "on the default bridge".to_owned())),
        Err(bridge) => {
            let first = format!("{bridge:#}");
            let first = first.chars().take(160).collect::<String>();
            eprintln!("starting containers on the bridge failed ({first}); trying --network none");
            docker::Fleet::start_on(n, Some("none"))
                .map(|f| {
                    (
                        f,
                        format!("with --network none (the daemon's bridge refused them: {first})"),
                    )
                })
                .map_err(|e| format!("starting the containers failed: {e:#}"))
        }
    }
}

/// One idle window with every collector at 1 s and the history on or off.
struct Window {
    rate: figures::CpuRate,
    collectors_ok: Result<(), String>,
    listed: [Result<usize, String>; 2],
}

async fn cpu_window(
    build: &Build,
    windows: Windows,
    fleet: &docker::Fleet,
    persist: bool,
) -> anyhow::Result<Window> {
    let config = host::all_collectors_config_with(build, "1s", persist);
    let vitals = Vitals::start(build, &config)?;
    vitals.wait_settled(Duration::from_secs(30)).await?;
    wait_for_containers(&vitals, fleet, Duration::from_secs(30)).await;
    // Past the first flush (10 s): the store is open and writing when the window starts.
    tokio::time::sleep(Duration::from_secs(12)).await;
    let before = listed(&vitals, fleet).await;
    eprintln!(
        "CPU window, every collector at 1 s, durable history {}, {} containers listed: {} s",
        if persist { "on" } else { "off" },
        count(&before),
        windows.cpu.as_secs()
    );
    let (rate, collectors_ok) = idle_window(&vitals, windows.cpu, Duration::from_secs(1)).await?;
    let after = listed(&vitals, fleet).await;
    vitals.stop();
    tokio::time::sleep(Duration::from_secs(2)).await;
    Ok(Window {
        rate,
        collectors_ok,
        listed: [before, after],
    })
}

/// The history's extra CPU at 1 s with 50 idle containers: the same window with it on and off.
async fn extra_cpu_row(build: &Build, windows: Windows) -> anyhow::Result<Row> {
    eprintln!("starting {CPU_CONTAINERS} idle containers");
    let (fleet, network) = match start_fleet(CPU_CONTAINERS) {
        Ok(f) => f,
        Err(why) => {
            return Ok(Row::not_measured(
                CPU_FIGURE,
                &target::HISTORY_EXTRA_1S_CONTAINERS,
                &why,
            ))
        }
    };
    let on = cpu_window(build, windows, &fleet, true).await?;
    let off = cpu_window(build, windows, &fleet, false).await?;
    drop(fleet);
    let extra = on.rate.tree - off.rate.tree;
    let listed: Vec<Result<usize, String>> = on.listed.iter().chain(&off.listed).cloned().collect();
    let reading = Reading::of(vec![extra])
        .require(setup::enough_containers(&listed, CPU_CONTAINERS))
        .require(on.collectors_ok)
        .require(off.collectors_ok)
        .require(setup::extra_not_negative(
            extra,
            on.rate.tree,
            off.rate.tree,
        ));
    Ok(Row::judged(
        CPU_FIGURE,
        format!(
            "idle CPU of vitals' tree with the history on ({:.3}) minus off ({:.3}), {} s windows one after the other; vitals listed {} of the bench's {CPU_CONTAINERS} containers, started {network} (on: {} at the start, {} at the end; off: {}, {})",
            on.rate.tree,
            off.rate.tree,
            windows.cpu.as_secs(),
            listed.iter().filter_map(|l| l.as_ref().ok()).min().map_or_else(|| "none".to_owned(), usize::to_string),
            count(&on.listed[0]),
            count(&on.listed[1]),
            count(&off.listed[0]),
            count(&off.listed[1]),
        ),
        &target::HISTORY_EXTRA_1S_CONTAINERS,
        &reading,
    ))
}

/// The store file and its log, in bytes (0 for a missing file).
fn file_bytes(db: &Path) -> u64 {
    let size = |p: &Path| std::fs::metadata(p).map_or(0, |m| m.len());
    let mut wal = db.as_os_str().to_owned();
    wal.push("-wal");
    size(db) + size(Path::new(&wal))
}

fn now_ms() -> Millis {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| {
        Millis::try_from(d.as_millis()).unwrap_or(Millis::MAX)
    })
}

/// `s` as a query-string value.
fn encode(s: &str) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// `GET path` on vitals as JSON, or why not.
async fn get_json(vitals: &Vitals, path: &str) -> Result<Value, String> {
    let (status, body) = load::get(&vitals.target(path))
        .await
        .map_err(|e| format!("GET {path}: {e:#}"))?;
    if status != 200 {
        return Err(format!(
            "GET {path} answered {status}: {}",
            String::from_utf8_lossy(&body[..body.len().min(300)])
        ));
    }
    serde_json::from_slice(&body).map_err(|e| format!("GET {path}: not JSON: {e}"))
}

/// The collectors whose series the dashboard charts (those with series in the live history).
async fn charted_collectors(vitals: &Vitals) -> Result<Vec<String>, String> {
    let index = get_json(vitals, "/admin/monitor/history").await?;
    let list: Vec<String> = index
        .as_object()
        .map(|m| {
            m.iter()
                .filter(|(_, v)| v.as_array().is_some_and(|a| !a.is_empty()))
                .map(|(k, _)| k.clone())
                .collect()
        })
        .unwrap_or_default();
    if list.is_empty() {
        return Err("no collector has series in the live history".to_owned());
    }
    Ok(list)
}

/// The durable history's status in health (`components.history.details.durable`), wherever it sits.
fn durable(health: &Value) -> Option<&Value> {
    match health {
        Value::Object(m) => m.get("durable").or_else(|| m.values().find_map(durable)),
        Value::Array(a) => a.iter().find_map(durable),
        _ => None,
    }
}

/// Every series the host recorded over a window, with the values it stored (the average of each
/// 5 s step), grouped by collector.
struct Trace {
    by_collector: BTreeMap<String, Vec<(SeriesKey, Vec<f64>)>>,
}

impl Trace {
    fn series(&self) -> usize {
        self.by_collector.values().map(Vec::len).sum()
    }

    fn labels(&self, collector: &str) -> usize {
        self.by_collector.get(collector).map_or(0, |list| {
            let mut l: Vec<&str> = list
                .iter()
                .filter_map(|(k, _)| k.label.as_deref())
                .collect();
            l.sort_unstable();
            l.dedup();
            l.len()
        })
    }
}

/// Reads back what the host stored over `[from, to)`, name by name (a collector's every series
/// can pass the store's 256 series per request), through its range API.
async fn capture(vitals: &Vitals, from: Millis, to: Millis) -> Result<Trace, String> {
    let index = get_json(vitals, "/admin/monitor/history").await?;
    let mut by_collector = BTreeMap::new();
    for c in charted_collectors(vitals).await? {
        let mut names: Vec<String> = index[c.as_str()]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|s| s["name"].as_str().map(str::to_owned))
            .collect();
        names.sort_unstable();
        names.dedup();
        let mut list = Vec::new();
        for name in names {
            let path = format!(
                "/admin/monitor/history?series={}.{}&from={from}&to={to}&step=5s",
                encode(&c),
                encode(&name)
            );
            let answers = match get_json(vitals, &path).await {
                Ok(a) => vec![a],
                // More labels than one request may match (the store's 256): label by label.
                Err(e) if e.contains("matches") => {
                    let mut labels: Vec<&str> = index[c.as_str()]
                        .as_array()
                        .into_iter()
                        .flatten()
                        .filter(|s| s["name"].as_str() == Some(name.as_str()))
                        .filter_map(|s| s["label"].as_str())
                        .collect();
                    labels.sort_unstable();
                    labels.dedup();
                    let mut all = Vec::new();
                    for l in labels {
                        let one = format!("{path}&label={}", encode(l));
                        all.push(get_json(vitals, &one).await?);
                    }
                    all
                }
                Err(e) => return Err(e),
            };
            let found = answers
                .iter()
                .flat_map(|a| a["series"].as_array().into_iter().flatten());
            for s in found {
                let values: Vec<f64> = s["points"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter_map(|p| p[2].as_f64())
                    .collect();
                if values.is_empty() {
                    continue;
                }
                let key = SeriesKey::new(
                    s["collector"].as_str().unwrap_or(&c),
                    s["name"].as_str().unwrap_or_default(),
                    s["label"].as_str(),
                );
                list.push((key, values));
            }
        }
        if !list.is_empty() {
            by_collector.insert(c, list);
        }
    }
    if by_collector.is_empty() {
        return Err("the host's range API answered no stored points for the window".to_owned());
    }
    Ok(Trace { by_collector })
}

/// What seeding a 30-day store did.
struct Seeded {
    /// The store after the 29 days at one sample a minute.
    before_last_day: Status,
    /// The store after the last day at 5 s.
    end: Status,
    /// The file after the store was closed.
    file_bytes: u64,
    samples: u64,
    took: Duration,
}

/// A small deterministic jitter (0–15 ms) for sample times, as a real scheduler has.
fn jitter(i: i64, salt: i64) -> Millis {
    (i.wrapping_mul(7_919)
        .wrapping_add(salt.wrapping_mul(104_729)))
    .rem_euclid(16)
}

/// Writes 30 days ending at `end` into a fresh store at `path` with the recorder's pattern
/// (one `record` per collector and collect, a flush every 10 s of data): the captured values
/// over and over, one sample a minute for the first 29 days (the minute and hour tiers'
/// shape, at a twelfth of the work) and every 5 s for the last day.
fn seed(path: &Path, trace: &Trace, end: Millis) -> Result<Seeded, String> {
    let t0 = Instant::now();
    let mut h = History::open(path, Retention::default()).map_err(|e| e.to_string())?;
    let start = end - 30 * DAY_MS;
    let last_day = end - DAY_MS;
    let mut samples = 0u64;
    let mut write =
        |h: &mut History, from: Millis, to: Millis, every: Millis| -> Result<(), String> {
            let mut i = 0i64;
            let mut ts = from;
            let mut flushed = from;
            while ts < to {
                for (n, list) in trace.by_collector.values().enumerate() {
                    let batch: Vec<(SeriesKey, f64)> = list
                        .iter()
                        .map(|(k, v)| (k.clone(), v[(i as usize) % v.len()]))
                        .collect();
                    samples += batch.len() as u64;
                    h.record(ts + jitter(i, n as i64), &batch)
                        .map_err(|e| e.to_string())?;
                }
                if ts - flushed >= FLUSH_MS - every {
                    h.flush().map_err(|e| e.to_string())?;
                    flushed = ts + every;
                }
                i += 1;
                ts += every;
            }
            h.flush().map_err(|e| e.to_string())
        };
    write(&mut h, start, last_day, 60_000)?;
    let before_last_day = h.status();
    write(&mut h, last_day, end, INTERVAL_MS)?;
    let end_status = h.status();
    drop(h);
    Ok(Seeded {
        before_last_day,
        end: end_status,
        file_bytes: file_bytes(path),
        samples,
        took: t0.elapsed(),
    })
}

/// A folder in memory when there is one (seeding writes 30 days as fast as it can), else the
/// system's temporary folder.
fn scratch() -> anyhow::Result<tempfile::TempDir> {
    let shm = Path::new("/dev/shm");
    let dir = if shm.is_dir() {
        tempfile::Builder::new()
            .prefix("vitals-bench-")
            .tempdir_in(shm)
    } else {
        tempfile::tempdir()
    };
    Ok(dir?)
}

fn mb(bytes: f64) -> f64 {
    bytes / 1e6
}

/// The disk row from a seeded store: bytes per day of each tier, projected over the retention.
fn disk_row(trace: &Trace, seeded: &Seeded, real_host: &str, listed: &Result<(), String>) -> Row {
    let b = &seeded.end;
    let a = &seeded.before_last_day;
    let raw_day = b.tier_bytes[0] as f64;
    let minute_day = b.tier_bytes[1].saturating_sub(a.tier_bytes[1]) as f64;
    let hour_days = b.segments[2] as f64 * 7.0;
    let hour_day = if hour_days > 0.0 {
        b.tier_bytes[2] as f64 / hour_days
    } else {
        f64::NAN
    };
    let encoded: u64 = b.tier_bytes.iter().sum();
    let overhead = seeded.file_bytes as f64 / encoded.max(1) as f64;
    let month = raw_day + 30.0 * minute_day + 30.0 * hour_day;
    let year = raw_day + 30.0 * minute_day + 365.0 * hour_day;
    let projected = month * overhead;
    let reading = Reading::of(vec![mb(projected)])
        .require(listed.clone())
        .require(if hour_day.is_finite() {
            Ok(())
        } else {
            Err("the seeded store made no hour segment".to_owned())
        });
    Row::judged(
        DISK_FIGURE,
        format!(
            "{} series ({} containers' of docker) read back from a real host (every collector at 5 s, {real_host}) and written into a fresh store with the recorder's pattern (a record per collector and collect, a flush per 10 s of data): 29 days at one sample a minute, then a day at 5 s ({} samples, {:.0} s). Bytes per day at 5 s: raw {:.2} MB (the raw tier at the end: a day, kept 24 h) + minute {:.3} MB (the minute tier's growth over the last day) + hour {:.4} MB (hour tier / 7 days per hour segment) = {:.2} MB/day. Projected to 30 days = raw × 1 (it stops growing after 24 h) + 30 × minute + 30 × hour = {:.1} MB encoded, × {overhead:.2} (the seeded file's {:.1} MB over its {:.1} MB of encoded segments: pages, journal, log, series) = the value; a year: {:.1} MB encoded. Budget 256 MiB (268.4 MB); target half of it",
            trace.series(),
            trace.labels("docker"),
            seeded.samples,
            seeded.took.as_secs_f64(),
            mb(raw_day),
            mb(minute_day),
            mb(hour_day),
            mb(raw_day + minute_day + hour_day),
            mb(month),
            mb(seeded.file_bytes as f64),
            mb(encoded as f64),
            mb(year),
        ),
        &target::HISTORY_DISK_30D,
        &reading,
    )
}

/// Times one GET (connect, request, whole body) on loopback.
async fn timed_get(vitals: &Vitals, path: &str) -> (Duration, Result<Value, String>) {
    let t = Instant::now();
    let got = load::get(&vitals.target(path)).await;
    let took = t.elapsed();
    let answer = match got {
        Ok((200, body)) => serde_json::from_slice(&body).map_err(|e| format!("not JSON: {e}")),
        Ok((status, body)) => Err(format!(
            "{status}: {}",
            String::from_utf8_lossy(&body[..body.len().min(300)])
        )),
        Err(e) => Err(format!("{e:#}")),
    };
    (took, answer)
}

/// The requests the dashboard makes for a range `[from, to]`: one range query per charted
/// collector at its step, and the events (web/static/app.js `showView`, `refreshLog`).
fn view_requests(collectors: &[String], from: Millis, to: Millis) -> Vec<String> {
    let step = ((to - from) / 1000 / CHART_POINTS).max(1);
    let mut paths: Vec<String> = collectors
        .iter()
        .map(|c| {
            format!(
                "/admin/monitor/history?series={}&from={from}&to={to}&step={step}s",
                encode(c)
            )
        })
        .collect();
    paths.push(format!(
        "/admin/monitor/events?from={from}&to={to}&limit=500"
    ));
    paths
}

/// Loads one view: every request at once, as the page does; the wall time until the last
/// answer, the answers' most points in one series, and the failures.
async fn load_view(vitals: &Vitals, paths: &[String]) -> (Duration, usize, Vec<String>) {
    let t = Instant::now();
    let mut set = tokio::task::JoinSet::new();
    for p in paths {
        let target = vitals.target(p);
        set.spawn(async move { (target.path.clone(), load::get(&target).await) });
    }
    let mut most = 0;
    let mut failed = Vec::new();
    while let Some(done) = set.join_next().await {
        match done {
            Ok((_, Ok((200, body)))) => {
                if let Ok(v) = serde_json::from_slice::<Value>(&body) {
                    for s in v["series"].as_array().into_iter().flatten() {
                        most = most.max(s["points"].as_array().map_or(0, Vec::len));
                    }
                }
            }
            Ok((path, Ok((status, _)))) => failed.push(format!("{path}: {status}")),
            Ok((path, Err(e))) => failed.push(format!("{path}: {e:#}")),
            Err(e) => failed.push(format!("a request task failed: {e}")),
        }
    }
    (t.elapsed(), most, failed)
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

fn quantile(mut v: Vec<f64>, q: f64) -> f64 {
    if v.is_empty() {
        return f64::NAN;
    }
    v.sort_by(f64::total_cmp);
    v[((v.len() - 1) as f64 * q).round() as usize]
}

/// The query rows: a host started on the seeded store, timed from the bench over loopback.
async fn query_rows(build: &Build, db: &Path, trace: &Trace) -> anyhow::Result<Vec<Row>> {
    let config = host::all_collectors_config_with(build, "5s", true);
    let vitals = Vitals::start_with_history(build, &config, Some(db))?;
    vitals.wait_settled(Duration::from_secs(30)).await?;
    // The store is checked (`quick_check`) when the recorder opens it; wait until it writes.
    let until = Instant::now() + Duration::from_secs(60);
    let mut state = String::new();
    while Instant::now() < until {
        if let Ok(h) = get_json(&vitals, "/admin/monitor/health").await {
            state = durable(&h)
                .and_then(|d| d["state"].as_str())
                .unwrap_or("absent")
                .to_owned();
            if state == "ok" {
                break;
            }
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let open = if state == "ok" {
        Ok(())
    } else {
        Err(format!(
            "the host's durable history did not become ok on the seeded store (state {state})"
        ))
    };
    let now = now_ms();
    // One series: the first unlabelled cpu series, else the first series at all.
    let one = trace
        .by_collector
        .get("cpu")
        .and_then(|l| l.iter().find(|(k, _)| k.label.is_none()))
        .or_else(|| trace.by_collector.values().flatten().next())
        .map(|(k, _)| k.clone());
    let mut rows = Vec::new();
    match one {
        None => rows.push(Row::not_measured(
            DAY_FIGURE,
            &target::HISTORY_QUERY_DAY,
            "no series was captured",
        )),
        Some(key) => {
            let mut path = format!(
                "/admin/monitor/history?series={}.{}&from={}&to={now}&step=1m",
                encode(&key.collector),
                encode(&key.name),
                now - DAY_MS
            );
            if let Some(l) = &key.label {
                path.push_str(&format!("&label={}", encode(l)));
            }
            let mut times = Vec::new();
            let mut errors = Vec::new();
            let mut points = 0;
            let mut tier = String::new();
            for _ in 0..DAY_REPEATS {
                let (took, answer) = timed_get(&vitals, &path).await;
                match answer {
                    Ok(v) => {
                        let s = &v["series"][0];
                        points = s["points"].as_array().map_or(0, Vec::len);
                        tier = s["tier"].as_str().unwrap_or("?").to_owned();
                        times.push(ms(took));
                    }
                    Err(e) => errors.push(e),
                }
            }
            let first = times.first().copied().unwrap_or(f64::NAN);
            let warm: Vec<f64> = times.iter().skip(1).copied().collect();
            let points_ok = if points >= 1_000 {
                Ok(())
            } else {
                Err(format!(
                    "the answer held {points} points, not a day of minutes (the seeded store should give about 1,440)"
                ))
            };
            rows.push(Row::judged(
                DAY_FIGURE,
                format!(
                    "GET /admin/monitor/history?series={}.{}{} over the last 24 h at step=1m, {} times one after the other, each on a new loopback connection, timed in the bench from connect to the last body byte (so it includes loopback transfer); {points} points from the {tier} tier; first (cold) {first:.2} ms, then median of the other {}, p90 {:.2} ms, max {:.2} ms{}",
                    key.collector,
                    key.name,
                    key.label.as_deref().map_or_else(String::new, |l| format!(" label={l}")),
                    DAY_REPEATS,
                    warm.len(),
                    quantile(warm.clone(), 0.9),
                    quantile(warm.clone(), 1.0),
                    errors.first().map_or_else(String::new, |e| format!("; first error: {e}"))
                ),
                &target::HISTORY_QUERY_DAY,
                &Reading::of(vec![quantile(warm, 0.5), errors.len() as f64])
                    .require(open.clone())
                    .require(points_ok),
            ));
        }
    }
    let collectors = match charted_collectors(&vitals).await {
        Ok(c) => c,
        Err(e) => {
            vitals.stop();
            rows.push(Row::not_measured(
                VIEW_FIGURE,
                &target::HISTORY_QUERY_30D,
                &e,
            ));
            rows.push(Row::not_measured(
                POINTS_FIGURE,
                &target::HISTORY_POINTS,
                &e,
            ));
            return Ok(rows);
        }
    };
    let month = view_requests(&collectors, now - 30 * DAY_MS, now);
    let mut times = Vec::new();
    let mut failures = Vec::new();
    let mut month_points = 0;
    for _ in 0..VIEW_REPEATS {
        let (took, most, failed) = load_view(&vitals, &month).await;
        times.push(ms(took));
        month_points = most;
        failures.extend(failed);
    }
    // Data over the whole month gives about `CHART_POINTS` points per series.
    let covered = if month_points as i64 >= CHART_POINTS * 9 / 10 {
        Ok(())
    } else {
        Err(format!(
            "the 30-day view answered at most {month_points} points in a series: the seeded month is not all there"
        ))
    };
    rows.push(Row::judged(
        VIEW_FIGURE,
        format!(
            "the page's requests for the 30-day range, all at once as it sends them: {} range queries (one per charted collector: {}) at step={}s and the events (limit=500); wall time from the first connect to the last body byte on loopback, {VIEW_REPEATS} loads: {}; the store seeded with 30 days of {} series",
            collectors.len(),
            collectors.join(", "),
            30 * 86_400 / CHART_POINTS,
            times.iter().map(|t| format!("{t:.1}")).collect::<Vec<_>>().join(", "),
            trace.series(),
        ),
        &target::HISTORY_QUERY_30D,
        &Reading::of(vec![quantile(times, 0.5), failures.len() as f64])
            .require(open.clone())
            .require(covered),
    ));
    let mut per_range = vec![format!("30d {month_points}")];
    let mut most = month_points;
    for (name, span) in RANGES.iter().filter(|(n, _)| *n != "30d") {
        let (_, m, failed) =
            load_view(&vitals, &view_requests(&collectors, now - span * 1000, now)).await;
        per_range.push(format!("{name} {m}"));
        most = most.max(m);
        failures.extend(failed);
    }
    vitals.stop();
    let first_failure = failures.first().cloned();
    rows.push(Row::judged(
        POINTS_FIGURE,
        format!(
            "the most points in one series of the answers to the page's requests (one line of a chart; the dashboard asks for a step of range / {CHART_POINTS}), per range: {}{}",
            per_range.join(", "),
            first_failure.map_or_else(String::new, |f| format!("; {} requests failed, first: {f}", failures.len()))
        ),
        &target::HISTORY_POINTS,
        &Reading::of(vec![most as f64]).require(open),
    ));
    Ok(rows)
}

/// The disk and query rows: a real host with 100 idle containers records for a window; what it
/// stored is read back and written as 30 days into a fresh store, whose tiers give the
/// projection; a host started on that store answers the dashboard's requests.
async fn store_rows(build: &Build, windows: Windows) -> anyhow::Result<Vec<Row>> {
    eprintln!("starting {DISK_CONTAINERS} idle containers");
    let (fleet, network) = match start_fleet(DISK_CONTAINERS) {
        Ok(f) => f,
        Err(why) => return Ok(store_not_measured(&why)),
    };
    let scratch = scratch()?;
    let live_db: PathBuf = scratch.path().join("live.db");
    let config = host::all_collectors_config_with(build, "5s", true);
    let vitals = Vitals::start_with_history(build, &config, Some(&live_db))?;
    vitals.wait_settled(Duration::from_secs(30)).await?;
    wait_for_containers(&vitals, &fleet, Duration::from_secs(60)).await;
    // Past the first flush: the file has its layout before the window starts.
    tokio::time::sleep(Duration::from_secs(11)).await;
    let before = listed(&vitals, &fleet).await;
    let window = (windows.cpu * 2).max(Duration::from_secs(40));
    eprintln!(
        "recording with {} containers listed, every collector at 5 s: {} s",
        count(&before),
        window.as_secs()
    );
    let (t0, bytes0) = (now_ms(), file_bytes(&live_db));
    tokio::time::sleep(window).await;
    let (t1, bytes1) = (now_ms(), file_bytes(&live_db));
    let after = listed(&vitals, &fleet).await;
    let captured = capture(&vitals, t0, t1).await;
    let dropped = get_json(&vitals, "/admin/monitor/health")
        .await
        .ok()
        .and_then(|h| durable(&h).and_then(|d| d["dropped_batches"].as_u64()));
    vitals.stop();
    drop(fleet);
    let trace = match captured {
        Ok(t) => t,
        Err(e) => return Ok(store_not_measured(&format!("reading back the window: {e}"))),
    };
    let listed = setup::enough_containers(&[before, after], DISK_CONTAINERS);
    let real_host = format!(
        "{} containers listed, started {network}; its own file and log grew {:.1} kB in {} s, mostly log pages, the data still in the journal{}",
        trace.labels("docker"),
        bytes1.saturating_sub(bytes0) as f64 / 1e3,
        (t1 - t0) / 1000,
        dropped.map_or_else(String::new, |d| format!(", {d} batches dropped"))
    );
    let seed_db = scratch.path().join("seeded.db");
    eprintln!(
        "seeding 30 days of {} series (29 days at 60 s, one at 5 s)",
        trace.series()
    );
    let end = now_ms();
    let (trace, seeded) = {
        let db = seed_db.clone();
        tokio::task::spawn_blocking(move || {
            let s = seed(&db, &trace, end);
            (trace, s)
        })
        .await?
    };
    let seeded = match seeded {
        Ok(s) => s,
        Err(e) => {
            return Ok(store_not_measured(&format!(
                "seeding the store failed: {e}"
            )))
        }
    };
    let mut rows = vec![disk_row(&trace, &seeded, &real_host, &listed)];
    eprintln!("query times on the seeded store");
    rows.extend(query_rows(build, &seed_db, &trace).await?);
    Ok(rows)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Guards the page's requests: one per charted collector at range / 600, and the events.
    #[test]
    fn view_requests_match_the_page() {
        let to = 1_800_000_000_000;
        let paths = view_requests(
            &["cpu".to_owned(), "docker".to_owned()],
            to - 30 * DAY_MS,
            to,
        );
        assert_eq!(paths.len(), 3);
        assert!(
            paths[0].contains("series=cpu&") && paths[0].ends_with("step=4320s"),
            "{}",
            paths[0]
        );
        assert!(
            paths[2].starts_with("/admin/monitor/events?"),
            "{}",
            paths[2]
        );
        assert_eq!(encode("a b/é"), "a%20b%2F%C3%A9");
    }

    /// Guards the seeding: 30 days end at `end`, the last day at 5 s, and every tier is written.
    #[test]
    fn seeding_fills_every_tier() {
        let dir = scratch().expect("dir");
        let mut by_collector = BTreeMap::new();
        by_collector.insert(
            "cpu".to_owned(),
            vec![(SeriesKey::new("cpu", "usage", None), vec![1.0, 2.0, 3.0])],
        );
        let trace = Trace { by_collector };
        let end = 1_800_000_000_000;
        let s = seed(&dir.path().join("h.db"), &trace, end).expect("seed");
        assert_eq!(s.samples, 29 * 1_440 + 17_280);
        assert!(
            s.end.tier_bytes.iter().all(|b| *b > 0),
            "{:?}",
            s.end.tier_bytes
        );
        assert!(s.end.segments[2] >= 4, "{:?}", s.end.segments);
        let h = History::open(dir.path().join("h.db"), Retention::default()).expect("reopen");
        let sel = vitals_history::Selector {
            collector: "cpu".into(),
            name: "usage".into(),
            label: None,
        };
        let day = h.query(&sel, end - DAY_MS, end, 60_000).expect("query");
        assert_eq!(day[0].points.len(), 1_440);
    }
}
