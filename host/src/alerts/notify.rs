//! Notifications: Alertmanager's v2 API, JSON webhooks and commands, retried with backoff off the evaluation path.

use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use serde::Serialize;
use serde_json::json;
use tokio::sync::{mpsc, Semaphore};

use super::eval::{Alert, Transition};
use super::rules::{AlertingSettings, CommandNotifier};
use crate::store::{rfc3339, unix_ms};

/// Attempts per delivery (the first and its retries).
const ATTEMPTS: u32 = 4;
/// Deliveries in flight per notifier; beyond that a delivery is dropped and counted.
const IN_FLIGHT: usize = 8;
/// Updates queued between the evaluator and the notifiers.
const QUEUE: usize = 256;

/// How one notifier fares, shown in health and `/admin/monitor/alerts`.
#[derive(Debug, Clone, Default, Serialize)]
pub struct NotifierStatus {
    /// `alertmanager`, `webhook` or `command`.
    pub kind: &'static str,
    /// The URL or program.
    pub target: String,
    /// Deliveries that succeeded.
    pub sent: u64,
    /// Deliveries that failed after every retry (or were dropped while too many were in flight).
    pub failed: u64,
    /// Attempts that failed and were retried.
    pub retries: u64,
    /// The last failure.
    pub last_error: Option<String>,
    /// When it happened (RFC 3339).
    pub last_error_time: Option<String>,
}

#[derive(Clone)]
enum Target {
    Alertmanager(String),
    Webhook(String),
    Command(CommandNotifier),
}

struct Notifier {
    target: Target,
    status: Mutex<NotifierStatus>,
    slots: Arc<Semaphore>,
}

struct Update {
    firing: Vec<Alert>,
    transitions: Vec<Transition>,
}

/// Every configured notifier, fed by the evaluator without ever waiting on it.
pub struct Notifiers {
    tx: mpsc::Sender<Update>,
    list: Vec<Arc<Notifier>>,
    dropped: std::sync::atomic::AtomicU64,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|s| s.trim().to_owned())
        .unwrap_or_default()
}

/// One alert in Alertmanager's v2 `postableAlert` form.
pub fn alertmanager_alert(a: &Alert, ends: SystemTime, instance: &str) -> serde_json::Value {
    let mut labels = a.labels.clone();
    if !instance.is_empty() {
        labels.insert("instance".to_owned(), instance.to_owned());
    }
    json!({
        "labels": labels,
        "annotations": {
            "summary": a.summary,
            "value": a.value.to_string(),
            "rule": a.rule,
        },
        "startsAt": rfc3339(SystemTime::UNIX_EPOCH + Duration::from_millis(a.started_unix_ms)),
        "endsAt": rfc3339(ends),
    })
}

impl Notifiers {
    /// Starts the notifiers `settings` lists, or returns `None` when there are none.
    pub fn start(
        settings: &AlertingSettings,
        stop: tokio::sync::watch::Receiver<bool>,
    ) -> Option<Arc<Self>> {
        let targets: Vec<Target> = settings
            .alertmanager
            .iter()
            .map(|u| Target::Alertmanager(u.clone()))
            .chain(settings.webhooks.iter().map(|u| Target::Webhook(u.clone())))
            .chain(settings.commands.iter().map(|c| Target::Command(c.clone())))
            .collect();
        if targets.is_empty() {
            return None;
        }
        let list: Vec<Arc<Notifier>> = targets
            .into_iter()
            .map(|target| {
                let (kind, shown) = match &target {
                    Target::Alertmanager(u) => ("alertmanager", u.clone()),
                    Target::Webhook(u) => ("webhook", u.clone()),
                    Target::Command(c) => ("command", c.argv.first().cloned().unwrap_or_default()),
                };
                Arc::new(Notifier {
                    target,
                    status: Mutex::new(NotifierStatus {
                        kind,
                        target: shown,
                        ..NotifierStatus::default()
                    }),
                    slots: Arc::new(Semaphore::new(IN_FLIGHT)),
                })
            })
            .collect();
        let (tx, rx) = mpsc::channel(QUEUE);
        let me = Arc::new(Self {
            tx,
            list: list.clone(),
            dropped: std::sync::atomic::AtomicU64::new(0),
        });
        let client = reqwest::Client::builder()
            .timeout(settings.notify_timeout)
            .no_proxy()
            .build()
            .unwrap_or_default();
        tokio::spawn(run(list, rx, client, settings.resend_interval, stop));
        Some(me)
    }

    /// Hands the evaluator's result over; never waits (a full queue drops and counts).
    pub fn update(&self, firing: Vec<Alert>, transitions: Vec<Transition>) {
        if self
            .tx
            .try_send(Update {
                firing,
                transitions,
            })
            .is_err()
        {
            self.dropped
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        }
    }

    /// Each notifier's counters.
    pub fn status(&self) -> Vec<NotifierStatus> {
        self.list.iter().map(|n| lock(&n.status).clone()).collect()
    }
}

async fn run(
    list: Vec<Arc<Notifier>>,
    mut rx: mpsc::Receiver<Update>,
    client: reqwest::Client,
    resend: Duration,
    mut stop: tokio::sync::watch::Receiver<bool>,
) {
    let instance = hostname();
    let mut firing: Vec<Alert> = Vec::new();
    let mut tick = tokio::time::interval(resend);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        let transitions = tokio::select! {
            u = rx.recv() => match u {
                Some(u) => { firing = u.firing; u.transitions }
                None => return,
            },
            _ = tick.tick() => Vec::new(),
            _ = stop.changed() => return,
        };
        let resolved: Vec<&Alert> = transitions
            .iter()
            .filter_map(|t| match t {
                Transition::Resolved(a) => Some(a),
                Transition::Fired(_) => None,
            })
            .collect();
        let now = SystemTime::now();
        for n in &list {
            let body = match &n.target {
                Target::Alertmanager(_) => {
                    if firing.is_empty() && resolved.is_empty() {
                        continue;
                    }
                    // While firing, endsAt lies ahead so Alertmanager keeps it until the next
                    // resend (four missed resends resolve it there); resolved ones end now.
                    let ends = now + resend * 4;
                    let mut v: Vec<serde_json::Value> = firing
                        .iter()
                        .map(|a| alertmanager_alert(a, ends, &instance))
                        .collect();
                    v.extend(resolved.iter().map(|a| {
                        let at = SystemTime::UNIX_EPOCH
                            + Duration::from_millis(a.resolved_unix_ms.unwrap_or(unix_ms(now)));
                        alertmanager_alert(a, at, &instance)
                    }));
                    serde_json::Value::Array(v)
                }
                Target::Webhook(_) | Target::Command(_) => {
                    if transitions.is_empty() {
                        continue;
                    }
                    let alerts: Vec<serde_json::Value> = transitions
                        .iter()
                        .map(|t| match t {
                            Transition::Fired(a) => json!({"status": "firing", "alert": a}),
                            Transition::Resolved(a) => json!({"status": "resolved", "alert": a}),
                        })
                        .collect();
                    json!({ "version": 1, "instance": instance, "alerts": alerts })
                }
            };
            let Ok(permit) = n.slots.clone().try_acquire_owned() else {
                let mut s = lock(&n.status);
                s.failed += 1;
                s.last_error = Some("too many deliveries in flight; this one was dropped".into());
                s.last_error_time = Some(rfc3339(now));
                continue;
            };
            let (n, client) = (n.clone(), client.clone());
            tokio::spawn(async move {
                deliver(&n, &client, &body).await;
                drop(permit);
            });
        }
    }
}

async fn deliver(n: &Notifier, client: &reqwest::Client, body: &serde_json::Value) {
    let mut wait = Duration::from_secs(1);
    for attempt in 1..=ATTEMPTS {
        let result = match &n.target {
            Target::Alertmanager(base) => {
                post(
                    client,
                    &format!("{}/api/v2/alerts", base.trim_end_matches('/')),
                    body,
                )
                .await
            }
            Target::Webhook(url) => post(client, url, body).await,
            Target::Command(c) => command(c, body).await,
        };
        {
            let mut s = lock(&n.status);
            match result {
                Ok(()) => {
                    s.sent += 1;
                    return;
                }
                Err(e) => {
                    tracing::warn!(target = %s.target, "alert notification failed: {e}");
                    s.last_error = Some(e);
                    s.last_error_time = Some(rfc3339(SystemTime::now()));
                    if attempt == ATTEMPTS {
                        s.failed += 1;
                        return;
                    }
                    s.retries += 1;
                }
            }
        }
        tokio::time::sleep(wait).await;
        wait *= 2;
    }
}

async fn post(client: &reqwest::Client, url: &str, body: &serde_json::Value) -> Result<(), String> {
    let r = client
        .post(url)
        .json(body)
        .send()
        .await
        .map_err(|e| format!("POST {url}: {e}"))?;
    if r.status().is_success() {
        Ok(())
    } else {
        let status = r.status();
        let text: String = r
            .text()
            .await
            .unwrap_or_default()
            .chars()
            .take(300)
            .collect();
        Err(format!("POST {url}: {status} {text}"))
    }
}

async fn command(c: &CommandNotifier, body: &serde_json::Value) -> Result<(), String> {
    use tokio::io::AsyncWriteExt;
    let program = c.argv.first().ok_or("empty argv")?;
    let mut child = tokio::process::Command::new(program)
        .args(&c.argv[1..])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| format!("{program}: {e}"))?;
    let run = async {
        if let Some(mut stdin) = child.stdin.take() {
            let _ = stdin.write_all(body.to_string().as_bytes()).await;
        }
        child.wait().await
    };
    match tokio::time::timeout(c.timeout, run).await {
        Err(_) => Err(format!(
            "{program}: killed after {}",
            humantime::format_duration(c.timeout)
        )),
        Ok(Err(e)) => Err(format!("{program}: {e}")),
        Ok(Ok(s)) if s.success() => Ok(()),
        Ok(Ok(s)) => Err(format!("{program}: {s}")),
    }
}
