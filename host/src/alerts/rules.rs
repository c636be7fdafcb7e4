//! The `[[alerts]]` rules and `[alerting]` settings of the config, parsed and validated with line and column.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::config::Problem;

/// How bad a firing alert is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Severity {
    /// Look soon.
    Warning,
    /// Look now.
    Critical,
}

impl Severity {
    /// The name as the config and Alertmanager spell it.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Warning => "warning",
            Self::Critical => "critical",
        }
    }
}

/// The comparison of a rule.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
pub enum Condition {
    /// Fires while the value is above the threshold.
    #[serde(rename = ">")]
    Above,
    /// Fires while the value is below the threshold.
    #[serde(rename = "<")]
    Below,
    /// Fires while the series has no value (its collector fails or the item is gone).
    #[serde(rename = "absent")]
    Absent,
}

/// One `[[alerts]]` table as written.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RuleConfig {
    /// The alert's name (`alertname` in Alertmanager): a-z, 0-9, `_` and `-`.
    pub name: String,
    /// What it watches: `COLLECTOR.SERIES` as the history API spells it (every item of a
    /// per-item series, each with its label), or a field path `COLLECTOR.a.*.b` where `*`
    /// walks every element of an array.
    pub series: String,
    /// A glob over the item labels (`*`, `?`, `[..]`); none takes every item.
    #[serde(default)]
    pub label: Option<String>,
    /// `>`, `<` or `absent`.
    pub condition: Condition,
    /// The value compared with (not used by `absent`).
    #[serde(default)]
    pub threshold: Option<f64>,
    /// Compare the per-second rate of change over this window instead of the value.
    #[serde(default, with = "humantime_serde")]
    pub rate: Option<Duration>,
    /// Compare the increase over this window instead of the value (counters: restarts, errors).
    #[serde(default, with = "humantime_serde")]
    pub increase: Option<Duration>,
    /// How long the condition must hold before the alert fires.
    #[serde(default, rename = "for", with = "humantime_serde")]
    pub for_: Option<Duration>,
    /// Once firing, the value must cross back past this one to resolve (hysteresis).
    #[serde(default)]
    pub clear: Option<f64>,
    /// `warning` (the default) or `critical`.
    #[serde(default = "default_severity")]
    pub severity: Severity,
    /// One line for people; `{label}`, `{value}`, `{threshold}` and `{name}` are filled in.
    #[serde(default)]
    pub summary: Option<String>,
}

fn default_severity() -> Severity {
    Severity::Warning
}

/// Overrides of one stock rule, `[alerting.stock.NAME]`.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StockOverride {
    /// `false` turns the rule off.
    #[serde(default)]
    pub enabled: Option<bool>,
    /// A new threshold.
    #[serde(default)]
    pub threshold: Option<f64>,
    /// A new clear threshold.
    #[serde(default)]
    pub clear: Option<f64>,
    /// A new `for` duration.
    #[serde(default, rename = "for", with = "humantime_serde")]
    pub for_: Option<Duration>,
    /// A new severity.
    #[serde(default)]
    pub severity: Option<Severity>,
}

/// A command run on every alert change: the alert as JSON on stdin.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CommandNotifier {
    /// The program and its arguments; no shell is involved.
    pub argv: Vec<String>,
    /// How long it may run before it is killed.
    #[serde(default = "default_command_timeout", with = "humantime_serde")]
    pub timeout: Duration,
}

fn default_command_timeout() -> Duration {
    Duration::from_secs(10)
}

/// The `[alerting]` table.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AlertingSettings {
    /// `false` turns every rule, stock or not, off.
    #[serde(default = "yes")]
    pub enabled: bool,
    /// `false` turns every stock rule off (the `[[alerts]]` rules stay).
    #[serde(default = "yes")]
    pub stock_rules: bool,
    /// Per stock rule: switch off or re-threshold, by the rule's name.
    #[serde(default)]
    pub stock: BTreeMap<String, StockOverride>,
    /// Alertmanager base URLs (`http://host:9093`): alerts are posted to `/api/v2/alerts`.
    #[serde(default)]
    pub alertmanager: Vec<String>,
    /// URLs that get a JSON POST on every alert change.
    #[serde(default)]
    pub webhooks: Vec<String>,
    /// Commands run on every alert change.
    #[serde(default)]
    pub commands: Vec<CommandNotifier>,
    /// How often firing alerts are sent to Alertmanager again.
    #[serde(default = "default_resend", with = "humantime_serde")]
    pub resend_interval: Duration,
    /// How long resolved alerts stay listed.
    #[serde(default = "default_keep_resolved", with = "humantime_serde")]
    pub keep_resolved: Duration,
    /// Timeout of one notification request.
    #[serde(default = "default_notify_timeout", with = "humantime_serde")]
    pub notify_timeout: Duration,
}

fn yes() -> bool {
    true
}

fn default_resend() -> Duration {
    Duration::from_secs(60)
}

fn default_keep_resolved() -> Duration {
    Duration::from_secs(3600)
}

fn default_notify_timeout() -> Duration {
    Duration::from_secs(5)
}

impl Default for AlertingSettings {
    fn default() -> Self {
        Self {
            enabled: true,
            stock_rules: true,
            stock: BTreeMap::new(),
            alertmanager: Vec::new(),
            webhooks: Vec::new(),
            commands: Vec::new(),
            resend_interval: default_resend(),
            keep_resolved: default_keep_resolved(),
            notify_timeout: default_notify_timeout(),
        }
    }
}

/// A rule as written, with where it was written (for messages at run time).
#[derive(Debug, Clone, PartialEq)]
pub struct PlacedRule {
    /// The rule.
    pub rule: RuleConfig,
    /// `file:line:column` of its table.
    pub place: String,
}

/// Everything the config says about alerts.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct AlertsConfig {
    /// The `[[alerts]]` rules.
    pub rules: Vec<PlacedRule>,
    /// The `[alerting]` settings.
    pub settings: AlertingSettings,
}

/// Locates `alerts[i].key` or `alerting.a.b` in the text for messages.
struct Locator {
    doc: Option<toml_edit::Document<String>>,
    text: String,
}

impl Locator {
    fn line_col(&self, offset: usize) -> (usize, usize) {
        crate::config::line_col(&self.text, offset)
    }

    fn span(&self, index: Option<usize>, path: &[&str]) -> Option<std::ops::Range<usize>> {
        let doc = self.doc.as_ref()?;
        let (first, rest) = path.split_first()?;
        let mut best = doc.as_table().key(first).and_then(|k| k.span());
        let item = doc.as_table().get(first)?;
        let table: &dyn toml_edit::TableLike = match (index, item) {
            (Some(i), toml_edit::Item::ArrayOfTables(a)) => {
                let t = a.get(i)?;
                best = t.span().or(best);
                t
            }
            _ => item.as_table_like()?,
        };
        crate::config::deepest_span(table, rest, best)
    }

    fn problem(&self, index: Option<usize>, path: &[&str], message: String) -> Problem {
        let (line, column) = self
            .span(index, path)
            .map(|s| self.line_col(s.start))
            .unzip();
        let key = match index {
            Some(i) => format!("{}[{i}]{}", path[0], {
                let rest = path[1..].join(".");
                if rest.is_empty() {
                    rest
                } else {
                    format!(".{rest}")
                }
            }),
            None => path.join("."),
        };
        Problem {
            line,
            column,
            key,
            message,
        }
    }
}

fn deserialize<T: serde::de::DeserializeOwned>(
    value: toml::Value,
) -> Result<T, (Vec<String>, String)> {
    serde_path_to_error::deserialize::<_, T>(value).map_err(|e| {
        let path = e
            .path()
            .iter()
            .filter_map(|seg| match seg {
                serde_path_to_error::Segment::Map { key } => Some(key.clone()),
                _ => None,
            })
            .collect();
        let message = e
            .inner()
            .to_string()
            .split("\nin `")
            .next()
            .unwrap_or_default()
            .trim()
            .to_owned();
        (path, message)
    })
}

/// Splits `COLLECTOR.REST` of a selector.
pub fn split_selector(series: &str) -> Option<(&str, &str)> {
    series
        .split_once('.')
        .filter(|(c, r)| !c.is_empty() && !r.is_empty())
}

/// Parses and checks the `[[alerts]]` array and the `[alerting]` table.
///
/// `collectors` are the configured collector names: a rule naming another is an error.
/// Every problem is returned, each with line and column where the text has them.
pub fn parse(
    alerts: Option<toml::Value>,
    alerting: Option<toml::Value>,
    text: &str,
    file: &str,
    collectors: &[&str],
) -> (AlertsConfig, Vec<Problem>) {
    let loc = Locator {
        doc: toml_edit::Document::parse(text.to_owned()).ok(),
        text: text.to_owned(),
    };
    let mut problems = Vec::new();
    let mut out = AlertsConfig::default();
    if let Some(v) = alerting {
        match deserialize::<AlertingSettings>(v) {
            Ok(s) => out.settings = s,
            Err((path, message)) => {
                let mut p: Vec<&str> = vec!["alerting"];
                p.extend(path.iter().map(String::as_str));
                problems.push(loc.problem(None, &p, message));
            }
        }
    }
    let s = &out.settings;
    for name in s.stock.keys() {
        if !super::stock::NAMES.contains(&name.as_str()) {
            problems.push(loc.problem(
                None,
                &["alerting", "stock", name],
                format!(
                    "no stock rule is named `{name}`; they are {}",
                    super::stock::NAMES.join(", ")
                ),
            ));
        }
    }
    for (key, urls) in [("alertmanager", &s.alertmanager), ("webhooks", &s.webhooks)] {
        for u in urls {
            if !(u.starts_with("http://") || u.starts_with("https://")) {
                problems.push(loc.problem(
                    None,
                    &["alerting", key],
                    format!("`{u}` must be an http:// or https:// URL"),
                ));
            }
        }
    }
    for c in &s.commands {
        if c.argv.is_empty() || c.argv[0].is_empty() {
            problems.push(loc.problem(
                None,
                &["alerting", "commands"],
                "a command needs a non-empty argv".to_owned(),
            ));
        }
        if c.timeout.is_zero() {
            problems.push(loc.problem(
                None,
                &["alerting", "commands"],
                "a command's timeout must be above zero".to_owned(),
            ));
        }
    }
    if s.resend_interval < Duration::from_secs(1) {
        problems.push(loc.problem(
            None,
            &["alerting", "resend_interval"],
            "must be at least 1s".to_owned(),
        ));
    }
    let items = match alerts {
        None => Vec::new(),
        Some(toml::Value::Array(a)) => a,
        Some(other) => {
            problems.push(loc.problem(
                None,
                &["alerts"],
                format!("expected [[alerts]] tables, found {}", other.type_str()),
            ));
            Vec::new()
        }
    };
    let mut seen = std::collections::BTreeSet::new();
    for (i, item) in items.into_iter().enumerate() {
        let rule = match deserialize::<RuleConfig>(item) {
            Ok(r) => r,
            Err((path, message)) => {
                let mut p: Vec<&str> = vec!["alerts"];
                p.extend(path.iter().map(String::as_str));
                problems.push(loc.problem(Some(i), &p, message));
                continue;
            }
        };
        let mut bad = |key: &str, message: String| {
            let path: Vec<&str> = if key.is_empty() {
                vec!["alerts"]
            } else {
                vec!["alerts", key]
            };
            problems.push(loc.problem(Some(i), &path, message));
        };
        if !crate::config::valid_name(&rule.name) {
            bad(
                "name",
                format!(
                    "alert name `{}` may hold only a-z, 0-9, `_` and `-`",
                    rule.name
                ),
            );
        }
        if !seen.insert(rule.name.clone()) || super::stock::NAMES.contains(&rule.name.as_str()) {
            bad(
                "name",
                format!(
                    "alert name `{}` is used twice (stock rules are re-thresholded in [alerting.stock.NAME])",
                    rule.name
                ),
            );
        }
        match split_selector(&rule.series) {
            None => bad(
                "series",
                format!(
                    "`{}` is not `COLLECTOR.SERIES` (e.g. `gpu.temperature_celsius`)",
                    rule.series
                ),
            ),
            Some((c, _)) if !collectors.contains(&c) => bad(
                "series",
                format!(
                    "`{}` names the collector `{c}`, which is not configured; configured: {}",
                    rule.series,
                    collectors.join(", ")
                ),
            ),
            Some(_) => {}
        }
        if let Some(g) = &rule.label {
            if let Err(e) = glob::Pattern::new(g) {
                bad("label", format!("the label glob `{g}` does not parse: {e}"));
            }
        }
        match (rule.condition, rule.threshold) {
            (Condition::Absent, Some(_)) => bad(
                "threshold",
                "`absent` takes no threshold; `for` says how long".to_owned(),
            ),
            (Condition::Above | Condition::Below, None) => {
                bad("threshold", "`>` and `<` need a threshold".to_owned())
            }
            (_, Some(t)) if !t.is_finite() => bad("threshold", "must be a number".to_owned()),
            _ => {}
        }
        if rule.rate.is_some() && rule.increase.is_some() {
            bad("rate", "take `rate` or `increase`, not both".to_owned());
        }
        for (key, w) in [("rate", rule.rate), ("increase", rule.increase)] {
            if w.is_some_and(|w| w < Duration::from_secs(1) || w > Duration::from_secs(86_400)) {
                bad(key, "the window must be between 1s and 24h".to_owned());
            }
        }
        if let (Some(t), Some(c)) = (rule.threshold, rule.clear) {
            let wrong = match rule.condition {
                Condition::Above => c > t,
                Condition::Below => c < t,
                Condition::Absent => false,
            };
            if wrong {
                bad(
                    "clear",
                    format!(
                        "clear {c} is on the firing side of threshold {t}: it must be {} it",
                        if rule.condition == Condition::Above {
                            "at or below"
                        } else {
                            "at or above"
                        }
                    ),
                );
            }
        }
        if rule.condition == Condition::Absent && rule.for_.is_none_or(|d| d.is_zero()) {
            bad(
                "for",
                "`absent` needs `for`: how long without a value".to_owned(),
            );
        }
        let (line, column) = loc
            .span(Some(i), &["alerts"])
            .map(|s| loc.line_col(s.start))
            .unwrap_or((0, 0));
        out.rules.push(PlacedRule {
            rule,
            place: format!("{file}:{line}:{column}"),
        });
    }
    (out, problems)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(text: &str) -> (AlertsConfig, Vec<Problem>) {
        let root: toml::Table = toml::from_str(text).expect("toml");
        parse(
            root.get("alerts").cloned(),
            root.get("alerting").cloned(),
            text,
            "v.toml",
            &["gpu", "disk"],
        )
    }

    /// Guards rule validation: every bad rule reported at once, each with line and column.
    #[test]
    fn bad_rules_are_reported_with_line_and_column() {
        let text = "[[alerts]]\nname = \"a\"\nseries = \"nope.x\"\ncondition = \">\"\nthreshold = 1\n\n\
                    [[alerts]]\nname = \"b\"\nseries = \"gpu.temperature_celsius\"\ncondition = \">\"\n\n\
                    [[alerts]]\nname = \"c\"\nseries = \"gpu.t\"\ncondition = \">\"\nthreshold = 5\nclear = 6\n\n\
                    [alerting.stock.not_a_rule]\nenabled = false\n";
        let (_, problems) = run(text);
        let shown: Vec<String> = problems
            .iter()
            .map(|p| format!("{:?}:{:?} {} {}", p.line, p.column, p.key, p.message))
            .collect();
        assert_eq!(problems.len(), 4, "{shown:#?}");
        assert!(
            shown[0].starts_with("Some(19):Some(17) alerting.stock.not_a_rule"),
            "{shown:#?}"
        );
        assert!(
            shown[1].starts_with("Some(3):Some(1) alerts[0].series"),
            "{shown:#?}"
        );
        assert!(shown[1].contains("collector `nope`"), "{shown:#?}");
        assert!(
            shown[2].contains("alerts[1]") && shown[2].contains("need a threshold"),
            "{shown:#?}"
        );
        assert!(
            shown[3].starts_with("Some(17):Some(1) alerts[2].clear"),
            "{shown:#?}"
        );
    }

    /// Guards that a good rule parses with its fields.
    #[test]
    fn good_rule_parses() {
        let text = "[[alerts]]\nname = \"hot\"\nseries = \"gpu.temperature_celsius\"\nlabel = \"0\"\n\
                    condition = \">\"\nthreshold = 85\nclear = 80\nfor = \"1m\"\nseverity = \"critical\"\n\
                    summary = \"GPU {label} at {value}\"\n";
        let (c, problems) = run(text);
        assert!(problems.is_empty(), "{problems:?}");
        assert_eq!(c.rules[0].rule.for_, Some(Duration::from_secs(60)));
        assert_eq!(c.rules[0].rule.severity, Severity::Critical);
        assert_eq!(c.rules[0].place, "v.toml:1:1");
    }

    /// Guards that an unknown key in a rule is refused with its position.
    #[test]
    fn unknown_key_is_refused() {
        let (_, problems) =
            run("[[alerts]]\nname = \"a\"\nseries = \"gpu.x\"\ncondition = \">\"\nthreshold = 1\nbogus = 2\n");
        assert_eq!(problems.len(), 1, "{problems:?}");
        assert_eq!(problems[0].line, Some(6), "{problems:?}");
        assert!(problems[0].message.contains("bogus"), "{problems:?}");
    }
}
