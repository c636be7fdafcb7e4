//! Alerting: rules from the config and stock rules, evaluated off the request path on every store change, with notifications.

pub mod eval;
pub mod notify;
pub mod rules;
pub mod stock;

use std::collections::{BTreeMap, VecDeque};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant, SystemTime};

use serde::Serialize;
use serde_json::Value;
use vitals_plugin_api::Series;

pub use eval::{Alert, AlertState, Engine, Input, Rule, RuleInfo, Transition, Watch};
pub use rules::{AlertingSettings, AlertsConfig, Severity};

use crate::projection::Projection;
use crate::recorder::RecorderState;
use crate::store::{unix_ms, Store};

/// The shortest time between two evaluations woken by store changes.
const MIN_GAP: Duration = Duration::from_secs(1);

/// The most resolved alerts kept listed.
const MAX_RESOLVED: usize = 500;

/// What the API shows: active and recently resolved alerts.
#[derive(Debug, Clone, Default, Serialize)]
pub struct AlertsView {
    /// Pending and firing alerts, critical first.
    pub active: Vec<Alert>,
    /// Resolved alerts, newest first.
    pub resolved: VecDeque<Alert>,
    /// How many rules are evaluated.
    pub rules: usize,
    /// Each rule: its thresholds and where the value it watches is shown.
    pub watches: Vec<RuleInfo>,
    /// Rules that cannot be evaluated, with why.
    pub problems: Vec<String>,
    /// How the notifiers fare.
    pub notifiers: Vec<notify::NotifierStatus>,
}

impl AlertsView {
    /// True when `other` shows the same alerts and rules (the notifier counters aside).
    fn same_alerts(&self, other: &AlertsView) -> bool {
        self.active == other.active
            && self.resolved == other.resolved
            && self.rules == other.rules
            && self.watches == other.watches
            && self.problems == other.problems
    }
}

/// The alerts of the running host, shared with the API.
pub struct Alerts {
    view: RwLock<AlertsView>,
    notifiers: Option<Arc<notify::Notifiers>>,
    /// Counts the changes of the view (not of the notifier counters), for the event stream.
    changes: tokio::sync::watch::Sender<u64>,
}

impl Default for Alerts {
    fn default() -> Self {
        Self {
            view: RwLock::default(),
            notifiers: None,
            changes: tokio::sync::watch::channel(0).0,
        }
    }
}

impl Alerts {
    /// No rules, no alerts (before the evaluator starts, or with alerting off).
    pub fn empty() -> Arc<Self> {
        Arc::new(Self::default())
    }

    /// The current view, with the notifiers' counters.
    pub fn view(&self) -> AlertsView {
        let mut v = self.view.read().unwrap_or_else(|p| p.into_inner()).clone();
        if let Some(n) = &self.notifiers {
            v.notifiers = n.status();
        }
        v
    }

    /// Alerts firing now.
    pub fn firing(&self) -> Vec<Alert> {
        self.view
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .active
            .iter()
            .filter(|a| a.state == AlertState::Firing)
            .cloned()
            .collect()
    }

    /// The number of the view's latest change.
    pub fn version(&self) -> u64 {
        *self.changes.borrow()
    }

    /// Hears each change of the view (latest only: a slow reader skips to the newest).
    pub fn subscribe(&self) -> tokio::sync::watch::Receiver<u64> {
        self.changes.subscribe()
    }

    /// Puts a new view in place and counts a change when it shows something new.
    fn publish(&self, new: AlertsView) {
        let mut view = self.view.write().unwrap_or_else(|p| p.into_inner());
        if view.same_alerts(&new) {
            return;
        }
        *view = new;
        drop(view);
        self.changes.send_modify(|v| *v += 1);
    }
}

/// Every rule the config puts in force: stock ones first, then `[[alerts]]`.
pub fn rules_for(config: &AlertsConfig) -> Vec<Rule> {
    if !config.settings.enabled {
        return Vec::new();
    }
    let mut rules = stock::rules(&config.settings);
    rules.extend(config.rules.iter().map(Rule::from_config));
    rules
}

/// Parsed sections, each re-parsed only when its collector changed. Only the sections some rule
/// reads are parsed whole; of the others only a Nagios check's `exit_code` and `state` are kept
/// (the process section alone is tens of kilobytes a second at 1 s).
#[derive(Default)]
struct SectionCache {
    versions: BTreeMap<String, u64>,
    sections: BTreeMap<String, Arc<Value>>,
    declared: BTreeMap<String, Vec<Series>>,
    wanted: BTreeMap<String, Projection>,
    /// The engine's generation `wanted` was made for.
    wanted_for: Option<u64>,
}

/// The two top-level fields of a Nagios-mode section that the `check_*` stock rules read.
#[derive(serde::Deserialize)]
struct CheckFields {
    exit_code: Option<i64>,
    state: Option<String>,
}

/// The collectors whose sections the rules read, with the fields they read beside the
/// collector's declared series (which the store's parse always holds): the stock readers'
/// fields, the field path a configured rule names (`rack.gpus.*.temperature_celsius`), and
/// the check `exit_code` and `state` the `check_*` stock rules read of every section.
fn wanted(rules: &[Rule]) -> BTreeMap<String, Projection> {
    let mut out: BTreeMap<String, Projection> = stock::READS
        .iter()
        .map(|(c, fields)| ((*c).to_owned(), Projection::of(fields.iter().copied())))
        .collect();
    for r in rules {
        if let eval::Source::Series {
            collector,
            resolved,
            ..
        } = &r.source
        {
            let reads = out.entry(collector.clone()).or_default();
            if let Some(series) = resolved {
                reads.add_series(series);
            }
        }
    }
    for reads in out.values_mut() {
        reads.add("/exit_code");
        reads.add("/state");
    }
    out
}

impl SectionCache {
    fn refresh(&mut self, store: &Store, names: impl Iterator<Item = String>, engine: &Engine) {
        // What the rules read changes only with the engine's generation: not made again for
        // every evaluation.
        if self.wanted_for != Some(engine.generation()) {
            self.wanted_for = Some(engine.generation());
            let wanted = wanted(engine.rules());
            if wanted != self.wanted {
                self.versions.clear();
                store.keep_parsed(&wanted);
                self.wanted = wanted;
            }
        }
        let mut keep = BTreeMap::new();
        for name in names {
            let v = store.collector_version(&name).unwrap_or(0);
            if self.versions.get(&name) != Some(&v) {
                let whole = self.wanted.contains_key(&name);
                // The store keeps a wanted section parsed: shared, not parsed again here.
                let shared = whole.then(|| store.parsed_section(&name)).flatten();
                let parsed = match shared {
                    Some((_, section)) => Some(section),
                    None => store.section(&name).and_then(|r| {
                        if whole {
                            serde_json::from_str::<Value>(r.get()).ok().map(Arc::new)
                        } else {
                            let c: CheckFields = serde_json::from_str(r.get()).ok()?;
                            Some(Arc::new(serde_json::json!({
                                "exit_code": c.exit_code?,
                                "state": c.state?
                            })))
                        }
                    }),
                };
                match parsed {
                    Some(s) => {
                        self.sections.insert(name.clone(), s);
                    }
                    None => {
                        self.sections.remove(&name);
                    }
                }
                let series = if whole {
                    store.declared(&name)
                } else {
                    Vec::new()
                };
                if series.is_empty() {
                    self.declared.remove(&name);
                } else {
                    self.declared.insert(name.clone(), series);
                }
            }
            keep.insert(name, v);
        }
        self.sections.retain(|k, _| keep.contains_key(k));
        self.declared.retain(|k, _| keep.contains_key(k));
        self.versions = keep;
    }
}

/// Tells one fired or resolved alert: the log, the store's events (and so the durable history).
fn tell(store: &Store, t: &Transition) {
    let (kind, word, a) = match t {
        Transition::Fired(a) => ("alert_firing", "firing", a),
        Transition::Resolved(a) => ("alert_resolved", "resolved", a),
    };
    tracing::info!(alert = %a.name, severity = a.severity.as_str(), "{word}: {}", a.summary);
    store.event(
        "alerts",
        kind,
        &format!(
            "{} {} ({}): {}",
            a.name,
            word,
            a.severity.as_str(),
            a.summary
        ),
    );
}

/// The notifier settings of `[alerting]`: they are read at start only.
fn notifier_settings(s: &AlertingSettings) -> impl PartialEq + '_ {
    (
        &s.alertmanager,
        &s.webhooks,
        &s.commands,
        s.resend_interval,
        s.notify_timeout,
    )
}

/// Starts the evaluator (and the notifiers) on tasks; it runs until `stop` turns true.
///
/// `config` holds the alerting part of the config in force: when it changes (a config reload)
/// the rules are replaced without a restart (see [`Engine::replace_rules`]); the notifier
/// settings stay as they were at start.
pub fn start(
    store: Arc<Store>,
    mut config: tokio::sync::watch::Receiver<AlertsConfig>,
    mut stop: tokio::sync::watch::Receiver<bool>,
) -> Arc<Alerts> {
    let first = config.borrow_and_update().clone();
    let rules = rules_for(&first);
    let notifiers = notify::Notifiers::start(&first.settings, stop.clone());
    let alerts = Arc::new(Alerts {
        view: RwLock::new(AlertsView {
            rules: rules.len(),
            watches: rules.iter().map(Rule::info).collect(),
            ..AlertsView::default()
        }),
        notifiers: notifiers.clone(),
        changes: tokio::sync::watch::channel(0).0,
    });
    let forecasts = Arc::new(RwLock::new(BTreeMap::new()));
    let shared = alerts.clone();
    tokio::spawn(async move {
        let mut settings = first.settings.clone();
        let mut forecasting = false;
        let mut engine = Engine::new(rules);
        let mut cache = SectionCache::default();
        let mut changes = store.subscribe();
        // `for` and `absent` need time to pass even when nothing changes.
        let mut tick = tokio::time::interval(Duration::from_secs(5));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut seen_version = u64::MAX;
        let mut problems = Vec::new();
        let mut resolved = VecDeque::new();
        let mut last_eval = Instant::now()
            .checked_sub(MIN_GAP)
            .unwrap_or_else(Instant::now);
        loop {
            let mut transitions = Vec::new();
            if !forecasting
                && engine
                    .rules()
                    .iter()
                    .any(|r| r.name == "disk_fill_forecast")
            {
                forecasting = true;
                tokio::spawn(forecast_loop(
                    store.clone(),
                    forecasts.clone(),
                    stop.clone(),
                ));
            }
            tokio::select! {
                r = changes.changed() => {
                    if r.is_err() { return }
                    // Collectors finish at their own moments within each interval: one
                    // evaluation a second at most takes in every section that changed in it,
                    // instead of one evaluation per collect.
                    let wait = MIN_GAP.saturating_sub(last_eval.elapsed());
                    if !wait.is_zero() {
                        tokio::select! {
                            () = tokio::time::sleep(wait) => {},
                            _ = stop.changed() => return,
                        }
                    }
                }
                r = config.changed() => {
                    if r.is_err() { return }
                    let new = config.borrow_and_update().clone();
                    if notifier_settings(&new.settings) != notifier_settings(&settings) {
                        let m = "the notifier settings of [alerting] changed: they take effect after a restart";
                        tracing::warn!("{m}");
                        store.event("alerts", "needs_restart", m);
                    }
                    settings = new.settings.clone();
                    let now = unix_ms(SystemTime::now());
                    transitions = engine.replace_rules(rules_for(&new), now);
                    problems.clear();
                    let m = format!("alert rules reloaded: {} in force", engine.rules().len());
                    tracing::info!("{m}");
                    store.event("alerts", "rules_reloaded", &m);
                }
                _ = tick.tick() => {},
                _ = stop.changed() => return,
            }
            let now = unix_ms(SystemTime::now());
            last_eval = Instant::now();
            // Marked seen whatever follows, or `changed()` would answer at once from now on.
            let version = *changes.borrow_and_update();
            if !engine.rules().is_empty() {
                let statuses = store.states();
                if version != seen_version {
                    cache.refresh(&store, statuses.keys().cloned(), &engine);
                    seen_version = version;
                }
                let history_paused = store
                    .recorder()
                    .is_some_and(|r| r.status().state == RecorderState::Paused);
                let forecasts = forecasts.read().unwrap_or_else(|p| p.into_inner()).clone();
                transitions.extend(engine.evaluate(&Input {
                    sections: &cache.sections,
                    statuses: &statuses,
                    declared: &cache.declared,
                    history_paused,
                    forecasts: &forecasts,
                    now_ms: now,
                }));
                for p in engine.take_problems() {
                    tracing::warn!("{p}");
                    store.push_error("alerts", &p);
                    problems.push(p);
                }
            }
            for t in &transitions {
                tell(&store, t);
                if let Transition::Resolved(a) = t {
                    resolved.push_front(a.clone());
                }
            }
            let keep_ms = settings.keep_resolved.as_millis() as u64;
            resolved.retain(|a: &Alert| {
                a.resolved_unix_ms
                    .is_some_and(|r| now.saturating_sub(r) <= keep_ms)
            });
            resolved.truncate(MAX_RESOLVED);
            let active = engine.active();
            let firing: Vec<Alert> = active
                .iter()
                .filter(|a| a.state == AlertState::Firing)
                .cloned()
                .collect();
            shared.publish(AlertsView {
                active,
                resolved: resolved.clone(),
                rules: engine.rules().len(),
                watches: engine.infos(),
                problems: problems.clone(),
                notifiers: Vec::new(),
            });
            if let Some(n) = &notifiers {
                n.update(firing, transitions);
            }
        }
    });
    alerts
}

/// Every 5 minutes: hours until each mount is full at the rate of the last 6 hours, from the
/// durable history's range query of `disk.used_percent`.
async fn forecast_loop(
    store: Arc<Store>,
    out: Arc<RwLock<BTreeMap<String, f64>>>,
    mut stop: tokio::sync::watch::Receiver<bool>,
) {
    let mut tick = tokio::time::interval(Duration::from_secs(300));
    loop {
        tokio::select! {
            _ = tick.tick() => {},
            _ = stop.changed() => return,
        }
        let Some(recorder) = store.recorder().cloned() else {
            return;
        };
        let now = crate::store::millis(SystemTime::now());
        let selector = vitals_history::Selector {
            collector: "disk".to_owned(),
            name: "used_percent".to_owned(),
            label: None,
        };
        let Ok(found) = recorder
            .query(selector, now - 6 * 3_600_000, now, 600_000)
            .await
        else {
            continue;
        };
        let mut hours = BTreeMap::new();
        for s in found {
            let pts: Vec<(f64, f64)> = s
                .points
                .iter()
                .map(|p| (p.ts as f64 / 3_600_000.0, p.avg))
                .collect();
            if let (Some(label), Some(h)) = (s.key.label, hours_to_full(&pts)) {
                hours.insert(label, h);
            }
        }
        *out.write().unwrap_or_else(|p| p.into_inner()) = hours;
    }
}

/// Hours until `(hour, used_percent)` points reach 100 % on their least-squares line;
/// `None` when they span under an hour or do not grow.
pub fn hours_to_full(points: &[(f64, f64)]) -> Option<f64> {
    let (first, last) = (points.first()?, points.last()?);
    if points.len() < 3 || last.0 - first.0 < 1.0 {
        return None;
    }
    let n = points.len() as f64;
    let mx = points.iter().map(|p| p.0).sum::<f64>() / n;
    let my = points.iter().map(|p| p.1).sum::<f64>() / n;
    let sxx: f64 = points.iter().map(|p| (p.0 - mx).powi(2)).sum();
    let sxy: f64 = points.iter().map(|p| (p.0 - mx) * (p.1 - my)).sum();
    let slope = sxy / sxx;
    if !slope.is_finite() || slope <= 0.0 {
        return None;
    }
    Some(((100.0 - last.1) / slope).max(0.0))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Guards what a section is parsed to for the rules: a configured rule naming a field path
    /// of a collector that declares no series keeps that path and its label field, and every
    /// section its check state; the stock readers keep theirs.
    #[test]
    fn rules_on_field_paths_keep_their_fields() {
        let mut rule = stock::rules(&rules::AlertingSettings::default())
            .into_iter()
            .next()
            .expect("a stock rule");
        rule.source = eval::Source::Series {
            collector: "rack".to_owned(),
            name: "gpus.*.temperature_celsius".to_owned(),
            resolved: Some(eval::field_series("gpus.*.temperature_celsius")),
            label: None,
        };
        let wanted = wanted(&[rule]);
        let section = serde_json::json!({
            "gpus": [{"index": 2, "temperature_celsius": 95, "fan": 40}],
            "other": 1,
            "state": "ok",
            "exit_code": 0,
        });
        let kept = wanted["rack"].parse(&section.to_string()).expect("parses");
        assert_eq!(
            kept,
            serde_json::json!({
                "gpus": [{"index": 2, "temperature_celsius": 95}],
                "state": "ok",
                "exit_code": 0,
            })
        );
        assert!(wanted.contains_key("docker") && wanted.contains_key("gpu"));
    }

    /// Guards the fill-up forecast: a disk growing 2 %/h at 60 % is full in 20 h; a flat one never.
    #[test]
    fn forecast_from_trend() {
        let growing: Vec<(f64, f64)> = (0..7)
            .map(|h| (f64::from(h), 48.0 + 2.0 * f64::from(h)))
            .collect();
        let h = hours_to_full(&growing).expect("a forecast");
        assert!((h - 20.0).abs() < 1e-9, "{h}");
        let flat: Vec<(f64, f64)> = (0..7).map(|h| (f64::from(h), 50.0)).collect();
        assert_eq!(hours_to_full(&flat), None);
    }
}
