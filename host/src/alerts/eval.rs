//! Rule evaluation over the store's latest sections: pending -> firing -> resolved per rule and item.

use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use hashbrown::HashMap;
use serde::Serialize;
use serde_json::Value;
use vitals_plugin_api::Series;

use super::rules::{Condition, PlacedRule, Severity};
use crate::store::State;

/// One evaluation's values of a rule: each item's label (borrowed from the sections where it
/// can be) and value.
pub type Values<'a> = crate::store::Labelled<'a>;

/// What a stock rule reads its values from.
pub type Extract = for<'a, 'b> fn(&'a Input<'b>) -> Values<'a>;

/// An item's label, looked up among a rule's tracks without a copy: it hashes as the
/// `Option<String>` key does.
#[derive(Hash)]
struct LabelRef<'a>(Option<&'a str>);

impl hashbrown::Equivalent<Option<String>> for LabelRef<'_> {
    fn equivalent(&self, key: &Option<String>) -> bool {
        self.0 == key.as_deref()
    }
}

/// Where a rule's values come from.
#[derive(Debug, Clone)]
pub enum Source {
    /// A declared series or a field path of one collector's section.
    Series {
        /// The collector.
        collector: String,
        /// The declared series name, or the field path after the collector.
        name: String,
        /// The pointer once resolved against the declared series (field paths resolve at once).
        resolved: Option<Series>,
        /// A glob over the item labels.
        label: Option<glob::Pattern>,
    },
    /// A built-in reader (stock rules).
    Stock(Extract),
}

/// What the compared value is made of.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Transform {
    /// The value itself.
    Value,
    /// The per-second rate of change over the window.
    Rate(Duration),
    /// The increase over the window.
    Increase(Duration),
}

/// A rule ready to evaluate.
#[derive(Debug, Clone)]
pub struct Rule {
    /// The alert name.
    pub name: String,
    /// Where its values come from.
    pub source: Source,
    /// `>`, `<` or absent.
    pub condition: Condition,
    /// The threshold (none for absent).
    pub threshold: Option<f64>,
    /// The value that resolves a firing alert.
    pub clear: Option<f64>,
    /// What is compared.
    pub transform: Transform,
    /// How long the condition holds before firing.
    pub for_: Duration,
    /// How bad it is.
    pub severity: Severity,
    /// The summary template.
    pub summary: String,
    /// `file:line:column` of a configured rule, `stock` for a stock one.
    pub place: String,
    /// Where the page shows what a stock rule reads (configured rules know it from their series).
    pub shown: Option<Watch>,
}

/// Where a rule's value is in its collector's section, so the page can colour it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Watch {
    /// The collector whose section holds the value.
    pub collector: String,
    /// The JSON pointer of the value; `*` stands for every element of an array.
    pub pointer: String,
    /// The field of each array element that names it (the alert's `label`), if any.
    pub label_field: Option<String>,
}

/// What a rule compares.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Compares {
    /// The value itself.
    Value,
    /// Its per-second rate of change.
    Rate,
    /// Its increase over a window.
    Increase,
}

/// One rule as the alerts API lists it: what it watches and its thresholds.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RuleInfo {
    /// The alert name.
    pub name: String,
    /// `warning` or `critical`.
    pub severity: Severity,
    /// `>`, `<` or `absent`.
    pub condition: Condition,
    /// The threshold (none for `absent`).
    pub threshold: Option<f64>,
    /// The value that resolves a firing alert.
    pub clear: Option<f64>,
    /// The value, its rate or its increase.
    pub compares: Compares,
    /// Where the value is shown, once known (a declared series is known when its collector has
    /// declared it; derived stock values such as load per core name the field they come from).
    pub watch: Option<Watch>,
}

impl Rule {
    /// A rule from its config table.
    pub fn from_config(p: &PlacedRule) -> Self {
        let r = &p.rule;
        let (collector, name) =
            super::rules::split_selector(&r.series).unwrap_or((r.series.as_str(), ""));
        let resolved = name.contains('.').then(|| field_series(name));
        Self {
            name: r.name.clone(),
            source: Source::Series {
                collector: collector.to_owned(),
                name: name.to_owned(),
                resolved,
                label: r.label.as_deref().and_then(|g| glob::Pattern::new(g).ok()),
            },
            condition: r.condition,
            threshold: r.threshold,
            clear: r.clear,
            transform: match (r.rate, r.increase) {
                (Some(w), _) => Transform::Rate(w),
                (None, Some(w)) => Transform::Increase(w),
                _ => Transform::Value,
            },
            for_: r.for_.unwrap_or_default(),
            severity: r.severity,
            summary: r
                .summary
                .clone()
                .unwrap_or_else(|| format!("{} on {{label}}: {{value}}", r.name)),
            place: p.place.clone(),
            shown: None,
        }
    }

    /// What the alerts API says of this rule.
    pub fn info(&self) -> RuleInfo {
        let watch = match &self.source {
            Source::Series {
                collector,
                resolved: Some(s),
                ..
            } => Some(Watch {
                collector: collector.clone(),
                pointer: s.pointer.clone(),
                label_field: s.label.clone(),
            }),
            Source::Series { .. } => None,
            Source::Stock(_) => self.shown.clone(),
        };
        RuleInfo {
            name: self.name.clone(),
            severity: self.severity,
            condition: self.condition,
            threshold: self.threshold,
            clear: self.clear,
            compares: match self.transform {
                Transform::Value => Compares::Value,
                Transform::Rate(_) => Compares::Rate,
                Transform::Increase(_) => Compares::Increase,
            },
            watch,
        }
    }

    /// True when `other` evaluates the same way (where it is written aside): its alerts carry on
    /// across a config reload.
    fn same_as(&self, other: &Rule) -> bool {
        let source = match (&self.source, &other.source) {
            (
                Source::Series {
                    collector: c1,
                    name: n1,
                    label: l1,
                    ..
                },
                Source::Series {
                    collector: c2,
                    name: n2,
                    label: l2,
                    ..
                },
            ) => {
                c1 == c2
                    && n1 == n2
                    && l1.as_ref().map(glob::Pattern::as_str)
                        == l2.as_ref().map(glob::Pattern::as_str)
            }
            // Stock rules of one name read the same way.
            (Source::Stock(_), Source::Stock(_)) => true,
            _ => false,
        };
        source
            && self.name == other.name
            && self.condition == other.condition
            && self.threshold == other.threshold
            && self.clear == other.clear
            && self.transform == other.transform
            && self.for_ == other.for_
            && self.severity == other.severity
            && self.summary == other.summary
    }

    fn collector(&self) -> Option<&str> {
        match &self.source {
            Source::Series { collector, .. } => Some(collector),
            Source::Stock(_) => None,
        }
    }
}

/// The label field of the elements of an array, by the array's name.
fn label_field(array: &str) -> Option<&'static str> {
    Some(match array {
        "containers" | "interfaces" => "name",
        "disks" | "not_responding" => "mount_point",
        "gpus" | "cores" => "index",
        "temperatures" => "label",
        "mig_devices" => "id",
        _ => return None,
    })
}

/// A field path `a.*.b` as a series: pointer `/a/*/b`, labelled by the array's natural key.
pub fn field_series(path: &str) -> Series {
    let segments: Vec<&str> = path.split('.').collect();
    let label = segments
        .iter()
        .position(|s| *s == "*")
        .and_then(|i| i.checked_sub(1))
        .and_then(|i| label_field(segments[i]));
    Series {
        name: path.to_owned(),
        pointer: format!("/{}", segments.join("/")),
        unit: String::new(),
        label: label.map(str::to_owned),
    }
}

/// What one evaluation reads.
pub struct Input<'a> {
    /// Every collector's latest section, parsed.
    pub sections: &'a BTreeMap<String, Arc<Value>>,
    /// Every collector's state.
    pub statuses: &'a BTreeMap<String, State>,
    /// The declared series of each collector that has them.
    pub declared: &'a BTreeMap<String, Vec<Series>>,
    /// True while the durable history does not write.
    pub history_paused: bool,
    /// Hours until each mount is full at the recent rate, from the durable history.
    pub forecasts: &'a BTreeMap<String, f64>,
    /// Now, Unix milliseconds.
    pub now_ms: u64,
}

/// The state of one alert.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum AlertState {
    /// The condition holds, not yet for `for`.
    Pending,
    /// The condition has held for `for`.
    Firing,
    /// It fired and has cleared.
    Resolved,
}

/// One alert of one rule and item, as the API shows it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Alert {
    /// The rule's name.
    pub name: String,
    /// `warning` or `critical`.
    pub severity: Severity,
    /// Pending, firing or resolved.
    pub state: AlertState,
    /// The item (a GPU's index, a mount point, a container's name), if the series has items.
    pub label: Option<String>,
    /// The labels sent to Alertmanager and `/metrics`: `alertname`, `severity`, `collector`, `item`.
    pub labels: BTreeMap<String, String>,
    /// The last value compared.
    pub value: f64,
    /// The threshold it was compared with.
    pub threshold: Option<f64>,
    /// The summary with its placeholders filled.
    pub summary: String,
    /// When the condition started to hold, Unix milliseconds.
    pub started_unix_ms: u64,
    /// When it fired.
    pub fired_unix_ms: Option<u64>,
    /// When it resolved.
    pub resolved_unix_ms: Option<u64>,
    /// Where the rule is written (`file:line:column`), or `stock`.
    pub rule: String,
}

/// A change worth telling: an alert fired or resolved.
#[derive(Debug, Clone, PartialEq)]
pub enum Transition {
    /// It fired.
    Fired(Alert),
    /// It resolved.
    Resolved(Alert),
}

/// A rule with its state: items' tracks, when it last had a value, why it is invalid.
type RuleState = (
    Rule,
    HashMap<Option<String>, Track>,
    Option<u64>,
    Option<String>,
);

/// One item's state under one rule. The alert is boxed: most items have none, and every
/// evaluation walks every track, so a track stays small.
#[derive(Default)]
struct Track {
    buf: VecDeque<(u64, f64)>,
    alert: Option<Box<Alert>>,
    seen: bool,
}

/// The evaluator: rules and the state of each (rule, item).
pub struct Engine {
    rules: Vec<Rule>,
    /// Per rule: each item's state.
    tracks: Vec<HashMap<Option<String>, Track>>,
    /// Rule index -> the last time it had any value (for `absent`).
    last_seen: Vec<Option<u64>>,
    /// Rules whose series is not declared, with the message (reported once).
    invalid: Vec<Option<String>>,
    /// Problems found at run time, not yet handed out.
    pending_problems: Vec<String>,
    /// Moves on whenever what the rules read may have changed: new rules, or a series resolved.
    generation: u64,
}

fn fill(
    template: &str,
    label: Option<&str>,
    value: f64,
    threshold: Option<f64>,
    name: &str,
) -> String {
    let shown = if value.fract() == 0.0 || value.abs() >= 100.0 {
        format!("{value:.0}")
    } else {
        format!("{value:.2}")
    };
    template
        .replace("{label}", label.unwrap_or(""))
        .replace("{value}", &shown)
        .replace(
            "{threshold}",
            &threshold.map(|t| t.to_string()).unwrap_or_default(),
        )
        .replace("{name}", name)
}

impl Engine {
    /// An evaluator for `rules`.
    pub fn new(rules: Vec<Rule>) -> Self {
        let n = rules.len();
        Self {
            rules,
            tracks: (0..n).map(|_| HashMap::new()).collect(),
            last_seen: vec![None; n],
            invalid: vec![None; n],
            pending_problems: Vec::new(),
            generation: 0,
        }
    }

    /// A number that moves on whenever what the rules read may have changed (rules replaced,
    /// a rule's series resolved against its collector's declared ones).
    pub fn generation(&self) -> u64 {
        self.generation
    }

    /// The rules.
    pub fn rules(&self) -> &[Rule] {
        &self.rules
    }

    /// Puts `rules` in force (a config reload). A rule that is unchanged keeps its alerts and
    /// their times; the firing alerts of a rule removed or changed resolve at `now_ms`, its
    /// pending ones are dropped, and a changed rule starts over.
    pub fn replace_rules(&mut self, rules: Vec<Rule>, now_ms: u64) -> Vec<Transition> {
        self.generation += 1;
        let mut old: Vec<Option<RuleState>> = std::mem::take(&mut self.rules)
            .into_iter()
            .zip(std::mem::take(&mut self.tracks))
            .zip(std::mem::take(&mut self.last_seen))
            .zip(std::mem::take(&mut self.invalid))
            .map(|(((r, t), l), i)| Some((r, t, l, i)))
            .collect();
        for rule in rules {
            let kept = old
                .iter_mut()
                .find(|o| o.as_ref().is_some_and(|(r, ..)| r.same_as(&rule)))
                .and_then(Option::take);
            let (rule, tracks, last, invalid) = match kept {
                // The old rule keeps the series it resolved; only where it is written may move.
                Some((mut r, t, l, i)) => {
                    r.place = rule.place;
                    (r, t, l, i)
                }
                None => (rule, HashMap::new(), None, None),
            };
            self.rules.push(rule);
            self.tracks.push(tracks);
            self.last_seen.push(last);
            self.invalid.push(invalid);
        }
        let mut out = Vec::new();
        for (_, tracks, _, _) in old.into_iter().flatten() {
            for t in tracks.into_values() {
                if let Some(mut a) = t
                    .alert
                    .filter(|a| a.state == AlertState::Firing)
                    .map(|a| *a)
                {
                    a.state = AlertState::Resolved;
                    a.resolved_unix_ms = Some(now_ms);
                    out.push(Transition::Resolved(a));
                }
            }
        }
        out
    }

    /// What the alerts API says of each rule.
    pub fn infos(&self) -> Vec<RuleInfo> {
        self.rules.iter().map(Rule::info).collect()
    }

    /// Problems found since the last call (a rule naming a series its collector does not declare).
    pub fn take_problems(&mut self) -> Vec<String> {
        std::mem::take(&mut self.pending_problems)
    }

    /// Every pending and firing alert.
    pub fn active(&self) -> Vec<Alert> {
        let mut out: Vec<Alert> = self
            .tracks
            .iter()
            .flat_map(HashMap::values)
            .filter_map(|t| t.alert.as_deref().cloned())
            .collect();
        out.sort_by(|a, b| (b.severity, &a.name, &a.label).cmp(&(a.severity, &b.name, &b.label)));
        out
    }

    fn values<'a>(&mut self, i: usize, input: &'a Input<'_>) -> Values<'a> {
        let rule = &mut self.rules[i];
        match &mut rule.source {
            Source::Stock(f) => f(input),
            Source::Series {
                collector,
                name,
                resolved,
                label,
            } => {
                if resolved.is_none() {
                    let Some(declared) = input.declared.get(collector.as_str()) else {
                        return Vec::new();
                    };
                    match declared.iter().find(|s| s.name == *name) {
                        Some(s) => {
                            *resolved = Some(s.clone());
                            self.generation += 1;
                        }
                        None => {
                            if self.invalid[i].is_none() {
                                let names: Vec<&str> =
                                    declared.iter().map(|s| s.name.as_str()).collect();
                                let m = format!(
                                    "{}: alert `{}`: the collector `{collector}` declares no series `{name}`; it declares {}",
                                    rule.place,
                                    rule.name,
                                    names.join(", ")
                                );
                                self.pending_problems.push(m.clone());
                                self.invalid[i] = Some(m);
                            }
                            return Vec::new();
                        }
                    }
                }
                let (Some(series), Some(section)) = (
                    resolved.as_ref(),
                    input.sections.get(collector.as_str()).map(Arc::as_ref),
                ) else {
                    return Vec::new();
                };
                let mut v = crate::store::series_values(series, section);
                if let Some(g) = label {
                    v.retain(|(l, _)| l.as_deref().is_some_and(|l| g.matches(l)));
                }
                v
            }
        }
    }

    /// Evaluates every rule once; returns what fired and what resolved.
    pub fn evaluate(&mut self, input: &Input<'_>) -> Vec<Transition> {
        let now = input.now_ms;
        let mut out = Vec::new();
        for t in self.tracks.iter_mut().flat_map(HashMap::values_mut) {
            t.seen = false;
        }
        for i in 0..self.rules.len() {
            if self.invalid[i].is_some() {
                continue;
            }
            let values = self.values(i, input);
            let rule = &self.rules[i];
            if rule.condition == Condition::Absent {
                if !values.is_empty() || self.last_seen[i].is_none() {
                    // Absent counts from the first evaluation, not from the epoch.
                    self.last_seen[i] = Some(if values.is_empty() {
                        self.last_seen[i].unwrap_or(now)
                    } else {
                        now
                    });
                }
                let missing = values.is_empty();
                let since = self.last_seen[i].unwrap_or(now);
                let track = self.tracks[i].entry(None).or_default();
                track.seen = true;
                step(
                    rule, track, None, missing, missing, 0.0, since, now, &mut out,
                );
                continue;
            }
            for (label, raw) in values {
                let tracks = &mut self.tracks[i];
                // Looked up by reference first: no label copy for the items already known.
                let key = LabelRef(label.as_deref());
                if !tracks.contains_key(&key) {
                    tracks.insert(label.as_deref().map(str::to_owned), Track::default());
                }
                let Some(track) = tracks.get_mut(&key) else {
                    continue;
                };
                track.seen = true;
                let value = windowed(&mut track.buf, rule.transform, now, raw);
                let Some(value) = value else { continue };
                let threshold = rule.threshold.unwrap_or(0.0);
                let (on, still) = match rule.condition {
                    Condition::Above => {
                        (value > threshold, value > rule.clear.unwrap_or(threshold))
                    }
                    Condition::Below => {
                        (value < threshold, value < rule.clear.unwrap_or(threshold))
                    }
                    Condition::Absent => (false, false),
                };
                let since = track.alert.as_ref().map_or(now, |a| a.started_unix_ms);
                step(
                    rule,
                    track,
                    label.as_deref(),
                    on,
                    still,
                    value,
                    since,
                    now,
                    &mut out,
                );
            }
        }
        // Items gone (a removed container, an unmounted disk): their alerts end.
        for tracks in &mut self.tracks {
            tracks.retain(|_, t| {
                if t.seen {
                    return true;
                }
                if let Some(mut a) = t.alert.take().map(|a| *a) {
                    if a.state == AlertState::Firing {
                        a.state = AlertState::Resolved;
                        a.resolved_unix_ms = Some(now);
                        out.push(Transition::Resolved(a));
                    }
                }
                false
            });
        }
        out
    }
}

/// Adds `raw` at `now` to an item's points and gives the value its rule compares: `raw`
/// itself, or its rate or increase over the window (from the oldest point in it). Points
/// older than the window leave, and at most 4,096 are kept whatever the collect interval.
///
/// For an increase only the oldest point's value counts, so the middle of a run of equal
/// values is not kept (a counter that seldom moves keeps two points, not one per collect):
/// whenever a dropped point would have been the oldest, the run's last point, of the same
/// value, is.
fn windowed(
    buf: &mut VecDeque<(u64, f64)>,
    transform: Transform,
    now: u64,
    raw: f64,
) -> Option<f64> {
    let (Transform::Rate(w) | Transform::Increase(w)) = transform else {
        return Some(raw);
    };
    let w_ms = w.as_millis() as u64;
    if matches!(transform, Transform::Increase(_)) {
        let n = buf.len();
        if n >= 2 && buf[n - 1].1 == raw && buf[n - 2].1 == raw {
            buf.pop_back();
        }
    }
    buf.push_back((now, raw));
    while buf
        .front()
        .is_some_and(|(t, _)| now.saturating_sub(*t) > w_ms)
    {
        buf.pop_front();
    }
    while buf.len() > 4096 {
        buf.pop_front();
    }
    match (buf.front(), transform) {
        (Some(&(t0, v0)), Transform::Rate(_)) if now > t0 => {
            Some((raw - v0) / ((now - t0) as f64 / 1000.0))
        }
        (Some(&(_, v0)), Transform::Increase(_)) => {
            // A counter that went down restarted: count from zero.
            Some(if raw >= v0 { raw - v0 } else { raw })
        }
        _ => None,
    }
}

/// One (rule, item) step: `on` says the firing condition holds, `still` that a firing alert
/// has not crossed its clear threshold.
#[allow(clippy::too_many_arguments)]
fn step(
    rule: &Rule,
    track: &mut Track,
    label: Option<&str>,
    on: bool,
    still: bool,
    value: f64,
    since: u64,
    now: u64,
    out: &mut Vec<Transition>,
) {
    match track.alert.as_mut() {
        Some(a) if a.state == AlertState::Firing => {
            // Formatting is the costly part of a step: only when the value moved.
            if a.value.to_bits() != value.to_bits() {
                a.value = value;
                a.summary = fill(&rule.summary, label, value, rule.threshold, &rule.name);
            }
            if !still {
                let mut a = track
                    .alert
                    .take()
                    .map_or_else(|| unreachable_alert(rule), |a| *a);
                a.state = AlertState::Resolved;
                a.resolved_unix_ms = Some(now);
                out.push(Transition::Resolved(a));
            }
        }
        Some(a) => {
            if !on {
                track.alert = None;
                return;
            }
            if a.value.to_bits() != value.to_bits() {
                a.value = value;
                a.summary = fill(&rule.summary, label, value, rule.threshold, &rule.name);
            }
            if now.saturating_sub(a.started_unix_ms) >= rule.for_.as_millis() as u64 {
                a.state = AlertState::Firing;
                a.fired_unix_ms = Some(now);
                out.push(Transition::Fired((**a).clone()));
            }
        }
        None if on => {
            let mut labels = BTreeMap::from([
                ("alertname".to_owned(), rule.name.clone()),
                ("severity".to_owned(), rule.severity.as_str().to_owned()),
            ]);
            if let Some(c) = rule.collector() {
                labels.insert("collector".to_owned(), c.to_owned());
            }
            if let Some(l) = label {
                labels.insert("item".to_owned(), l.to_owned());
            }
            let mut a = Alert {
                name: rule.name.clone(),
                severity: rule.severity,
                state: AlertState::Pending,
                label: label.map(str::to_owned),
                labels,
                value,
                threshold: rule.threshold,
                summary: fill(&rule.summary, label, value, rule.threshold, &rule.name),
                started_unix_ms: since.min(now),
                fired_unix_ms: None,
                resolved_unix_ms: None,
                rule: rule.place.clone(),
            };
            if now.saturating_sub(a.started_unix_ms) >= rule.for_.as_millis() as u64 {
                a.state = AlertState::Firing;
                a.fired_unix_ms = Some(now);
                out.push(Transition::Fired(a.clone()));
            }
            track.alert = Some(Box::new(a));
        }
        None => {}
    }
}

fn unreachable_alert(rule: &Rule) -> Alert {
    Alert {
        name: rule.name.clone(),
        severity: rule.severity,
        state: AlertState::Resolved,
        label: None,
        labels: BTreeMap::new(),
        value: 0.0,
        threshold: None,
        summary: String::new(),
        started_unix_ms: 0,
        fired_unix_ms: None,
        resolved_unix_ms: None,
        rule: rule.place.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// Guards the kept points of an increase: with the middle of each run of equal values
    /// left out, every collect gives what the oldest point of the whole window gives
    /// (restarts and a window shorter than a run included), and a steady counter keeps two.
    #[test]
    fn an_increase_keeps_the_ends_of_each_run() {
        let values = [
            0.0, 0.0, 0.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 3.0, 3.0, 0.0, 0.0, 2.0, 2.0, 2.0,
            2.0, 2.0, 2.0, 2.0, 2.0, 2.0, 5.0, 5.0, 6.0, 6.0, 6.0,
        ];
        let window = Duration::from_secs(4);
        let mut buf = VecDeque::new();
        for (i, &v) in values.iter().enumerate() {
            let now = 1_000 * i as u64;
            let got = windowed(&mut buf, Transform::Increase(window), now, v);
            // Every point of the window, oldest first.
            let oldest = (0..=i)
                .find(|&j| now - 1_000 * j as u64 <= 4_000)
                .map(|j| values[j])
                .expect("the newest point is in");
            let want = if v >= oldest { v - oldest } else { v };
            assert_eq!(got, Some(want), "collect {i}");
        }
        let mut steady = VecDeque::new();
        for i in 0..100u64 {
            windowed(
                &mut steady,
                Transform::Increase(Duration::from_secs(600)),
                i * 1_000,
                7.0,
            );
        }
        assert_eq!(steady.len(), 2);
        // A rate keeps every point: its oldest point's time counts too.
        let mut rate = VecDeque::new();
        for i in 0..10u64 {
            windowed(
                &mut rate,
                Transform::Rate(Duration::from_secs(600)),
                i * 1_000,
                7.0,
            );
        }
        assert_eq!(rate.len(), 10);
    }

    fn rule(condition: Condition, threshold: Option<f64>, clear: Option<f64>, for_s: u64) -> Rule {
        Rule {
            name: "hot".into(),
            source: Source::Series {
                collector: "gpu".into(),
                name: "temperature_celsius".into(),
                resolved: None,
                label: None,
            },
            condition,
            threshold,
            clear,
            transform: Transform::Value,
            for_: Duration::from_secs(for_s),
            severity: Severity::Critical,
            summary: "GPU {label} at {value} °C".into(),
            place: "v.toml:1:1".into(),
            shown: None,
        }
    }

    fn eval(e: &mut Engine, temps: &[f64], now_s: u64) -> Vec<Transition> {
        let gpus: Vec<Value> = temps
            .iter()
            .enumerate()
            .map(|(i, t)| json!({"index": i, "temperature_celsius": t}))
            .collect();
        let sections = BTreeMap::from([("gpu".to_owned(), Arc::new(json!({ "gpus": gpus })))]);
        let declared = BTreeMap::from([(
            "gpu".to_owned(),
            vec![Series::new(
                "temperature_celsius",
                "/gpus/*/temperature_celsius",
                "celsius",
            )
            .labelled_by("index")],
        )]);
        let statuses = BTreeMap::new();
        let forecasts = BTreeMap::new();
        e.evaluate(&Input {
            sections: &sections,
            statuses: &statuses,
            declared: &declared,
            history_paused: false,
            forecasts: &forecasts,
            now_ms: now_s * 1000,
        })
    }

    /// Guards the lookup of an item's track by a borrowed label: every evaluation finds the
    /// track the first one made, so there is one per item however many evaluations run.
    #[test]
    fn an_item_keeps_one_track_across_evaluations() {
        let mut e = Engine::new(vec![rule(Condition::Above, Some(85.0), None, 60)]);
        for now in 0..5 {
            eval(&mut e, &[90.0, 50.0, 70.0], now);
        }
        assert_eq!(e.tracks[0].len(), 3);
        assert_eq!(e.active().len(), 1);
    }

    /// Guards the state machine: pending for `for`, then firing with labels and summary,
    /// held by hysteresis above `clear`, resolved below it.
    #[test]
    fn pending_firing_hysteresis_resolved() {
        let mut e = Engine::new(vec![rule(Condition::Above, Some(85.0), Some(80.0), 60)]);
        assert!(eval(&mut e, &[90.0, 50.0], 0).is_empty());
        assert_eq!(e.active()[0].state, AlertState::Pending);
        assert!(eval(&mut e, &[91.0, 50.0], 30).is_empty());
        let t = eval(&mut e, &[92.0, 50.0], 60);
        let Transition::Fired(a) = &t[0] else {
            panic!("{t:?}")
        };
        assert_eq!(a.label.as_deref(), Some("0"));
        assert_eq!(a.summary, "GPU 0 at 92 °C");
        assert_eq!(a.labels["alertname"], "hot");
        assert_eq!(a.labels["item"], "0");
        assert_eq!(a.started_unix_ms, 0);
        // Below the threshold but above clear: still firing.
        assert!(eval(&mut e, &[82.0, 50.0], 70).is_empty());
        assert_eq!(e.active()[0].state, AlertState::Firing);
        let t = eval(&mut e, &[79.0, 50.0], 80);
        assert!(
            matches!(&t[0], Transition::Resolved(a) if a.resolved_unix_ms == Some(80_000)),
            "{t:?}"
        );
        assert!(e.active().is_empty());
    }

    /// Guards that a pending alert whose condition stops never fires.
    #[test]
    fn pending_that_clears_does_not_fire() {
        let mut e = Engine::new(vec![rule(Condition::Above, Some(85.0), None, 60)]);
        eval(&mut e, &[90.0], 0);
        eval(&mut e, &[70.0], 30);
        assert!(eval(&mut e, &[90.0], 70).is_empty());
        assert_eq!(e.active()[0].started_unix_ms, 70_000);
    }

    /// Guards that a rule naming an undeclared series is reported and never evaluated.
    #[test]
    fn undeclared_series_is_a_problem() {
        let mut r = rule(Condition::Above, Some(1.0), None, 0);
        r.source = Source::Series {
            collector: "gpu".into(),
            name: "nope".into(),
            resolved: None,
            label: None,
        };
        let mut e = Engine::new(vec![r]);
        assert!(eval(&mut e, &[90.0], 0).is_empty());
        let p = e.take_problems();
        assert!(
            p[0].contains("v.toml:1:1") && p[0].contains("no series `nope`"),
            "{p:?}"
        );
    }

    /// Guards `absent`: fires after `for` without a value, resolves when values return.
    #[test]
    fn absent_fires_and_resolves() {
        let mut e = Engine::new(vec![rule(Condition::Absent, None, None, 60)]);
        assert!(eval(&mut e, &[], 0).is_empty());
        assert!(eval(&mut e, &[], 30).is_empty());
        assert!(matches!(
            eval(&mut e, &[], 61).as_slice(),
            [Transition::Fired(_)]
        ));
        assert!(matches!(
            eval(&mut e, &[40.0], 62).as_slice(),
            [Transition::Resolved(_)]
        ));
    }

    /// Guards `increase`: a counter's growth over the window, not its value.
    #[test]
    fn increase_over_window() {
        let mut r = rule(Condition::Above, Some(3.0), None, 0);
        r.transform = Transform::Increase(Duration::from_secs(600));
        let mut e = Engine::new(vec![r]);
        assert!(eval(&mut e, &[10.0], 0).is_empty());
        assert!(eval(&mut e, &[12.0], 100).is_empty());
        assert!(
            matches!(eval(&mut e, &[14.0], 200).as_slice(), [Transition::Fired(a)] if a.value == 4.0)
        );
        // 700 s later the window holds only the last two points.
        assert!(matches!(
            eval(&mut e, &[14.0], 900).as_slice(),
            [Transition::Resolved(_)]
        ));
    }

    /// Guards that an item that disappears resolves its firing alert.
    #[test]
    fn gone_item_resolves() {
        let mut e = Engine::new(vec![rule(Condition::Above, Some(85.0), None, 0)]);
        assert_eq!(eval(&mut e, &[50.0, 90.0], 0).len(), 1);
        let t = eval(&mut e, &[50.0], 10);
        assert!(
            matches!(&t[..], [Transition::Resolved(a)] if a.label.as_deref() == Some("1")),
            "{t:?}"
        );
    }

    /// Guards a config reload: an unchanged rule keeps its firing alert (no new transition,
    /// same start), a removed rule's firing alert resolves, a re-thresholded rule starts over.
    #[test]
    fn replaced_rules_keep_or_resolve() {
        let mut warm = rule(Condition::Above, Some(70.0), None, 0);
        warm.name = "warm".into();
        let hot = rule(Condition::Above, Some(85.0), None, 0);
        let mut e = Engine::new(vec![warm.clone(), hot.clone()]);
        assert_eq!(eval(&mut e, &[90.0], 0).len(), 2);
        let mut moved = warm.clone();
        moved.place = "v.toml:9:1".into();
        let t = e.replace_rules(vec![moved], 5_000);
        assert!(
            matches!(&t[..], [Transition::Resolved(a)] if a.name == "hot" && a.resolved_unix_ms == Some(5_000)),
            "{t:?}"
        );
        assert!(eval(&mut e, &[90.0], 10).is_empty());
        let active = e.active();
        assert_eq!(active.len(), 1, "{active:?}");
        assert_eq!(
            (active[0].name.as_str(), active[0].started_unix_ms),
            ("warm", 0)
        );
        assert_eq!(e.rules()[0].place, "v.toml:9:1");
        let mut rethresholded = warm;
        rethresholded.threshold = Some(95.0);
        let t = e.replace_rules(vec![rethresholded], 20_000);
        assert!(
            matches!(&t[..], [Transition::Resolved(a)] if a.name == "warm"),
            "{t:?}"
        );
        assert!(eval(&mut e, &[90.0], 30).is_empty());
        assert!(e.active().is_empty());
    }

    /// Guards what the API tells the page of a rule: its thresholds and, once the collector
    /// declared the series, the pointer and label field of the value it watches.
    #[test]
    fn rule_info_names_the_watched_value() {
        let mut e = Engine::new(vec![rule(Condition::Above, Some(85.0), Some(80.0), 0)]);
        assert_eq!(e.infos()[0].watch, None);
        eval(&mut e, &[50.0], 0);
        let info = &e.infos()[0];
        assert_eq!(
            info.watch,
            Some(Watch {
                collector: "gpu".into(),
                pointer: "/gpus/*/temperature_celsius".into(),
                label_field: Some("index".into()),
            })
        );
        assert_eq!(
            (info.threshold, info.clear, info.compares),
            (Some(85.0), Some(80.0), Compares::Value)
        );
    }
}
