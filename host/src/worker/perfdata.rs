//! Nagios performance data (`'label'=value[UOM];warn;crit;min;max …`), parsed per the monitoring-plugins development guidelines.
//!
//! A small parser of its own: the one crate for this format (`perfdata`) refuses the units
//! `ms`, `us`, `KB`, `MB`, `TB` and labels with a doubled quote, all of which the guidelines
//! allow and real checks print. Values become JSON fields in base units whose name carries
//! the unit (`value_seconds`, `value_bytes`, `value_percent`, `value_total` for a counter),
//! so the host's history and `/metrics` read them like any other section field.

use serde_json::{Map, Value};

/// The most perfdata entries kept from one check's output; the rest are reported as dropped.
pub const MAX_ENTRIES: usize = 256;
/// The longest label kept, in bytes (longer ones are cut at a character boundary).
pub const MAX_LABEL: usize = 200;

/// What a unit of measurement means, with the factor to its base unit.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Unit {
    /// No unit: a number of things (users, processes, a load average).
    Plain,
    /// Time: `s`, `ms` or `us`, scaled to seconds.
    Seconds(f64),
    /// `%`.
    Percent,
    /// Size: `B`, `KB`, `MB`, `GB`, `TB` (binary multiples, as the monitoring plugins print
    /// them), scaled to bytes.
    Bytes(f64),
    /// `c`: a continuous counter.
    Counter,
    /// A unit outside the guidelines: the value is kept as printed.
    Other,
}

impl Unit {
    /// The meaning of a UOM as printed after a value.
    pub fn parse(uom: &str) -> Unit {
        const K: f64 = 1024.0;
        match uom {
            "" => Unit::Plain,
            "s" => Unit::Seconds(1.0),
            "ms" => Unit::Seconds(1e-3),
            "us" => Unit::Seconds(1e-6),
            "%" => Unit::Percent,
            "B" => Unit::Bytes(1.0),
            "KB" | "KiB" => Unit::Bytes(K),
            "MB" | "MiB" => Unit::Bytes(K * K),
            "GB" | "GiB" => Unit::Bytes(K * K * K),
            "TB" | "TiB" => Unit::Bytes(K * K * K * K),
            "c" => Unit::Counter,
            _ => Unit::Other,
        }
    }

    /// The suffix of the JSON field names (`value_seconds`), empty for none.
    pub fn suffix(self) -> &'static str {
        match self {
            Unit::Plain | Unit::Other => "",
            Unit::Seconds(_) => "_seconds",
            Unit::Percent => "_percent",
            Unit::Bytes(_) => "_bytes",
            Unit::Counter => "_total",
        }
    }

    /// The series unit, as the host's history names units.
    pub fn series_unit(self) -> &'static str {
        match self {
            Unit::Plain | Unit::Other => "",
            Unit::Seconds(_) => "seconds",
            Unit::Percent => "percent",
            Unit::Bytes(_) => "bytes",
            Unit::Counter => "count",
        }
    }

    fn factor(self) -> f64 {
        match self {
            Unit::Seconds(f) | Unit::Bytes(f) => f,
            _ => 1.0,
        }
    }
}

/// One `label=value…` entry.
#[derive(Debug, Clone, PartialEq)]
pub struct Perfdata {
    /// The label, unquoted (`''` inside quotes becomes `'`).
    pub label: String,
    /// The value as printed, `None` for `U` (could not be determined).
    pub value: Option<f64>,
    /// The unit of measurement as printed.
    pub uom: String,
    /// The warning range, as printed (`10`, `10:`, `~:10`, `@10:20`).
    pub warn: Option<String>,
    /// The critical range, as printed.
    pub crit: Option<String>,
    /// The minimum, in the printed unit.
    pub min: Option<f64>,
    /// The maximum, in the printed unit.
    pub max: Option<f64>,
}

impl Perfdata {
    /// The entry as a JSON object: values in base units under unit-named keys.
    pub fn to_json(&self) -> Value {
        let unit = Unit::parse(&self.uom);
        let scale = |v: f64| {
            let x = v * unit.factor();
            serde_json::Number::from_f64(x).map_or(Value::Null, Value::Number)
        };
        let suffix = unit.suffix();
        let mut m = Map::new();
        m.insert("label".into(), Value::String(self.label.clone()));
        m.insert("uom".into(), Value::String(self.uom.clone()));
        m.insert(
            format!("value{suffix}"),
            self.value.map_or(Value::Null, scale),
        );
        // A counter's bounds are plain numbers, not counters of their own.
        let bound_suffix = if unit == Unit::Counter { "" } else { suffix };
        for (key, v) in [("min", self.min), ("max", self.max)] {
            if let Some(v) = v {
                m.insert(format!("{key}{bound_suffix}"), scale(v));
            }
        }
        for (key, v) in [("warn", &self.warn), ("crit", &self.crit)] {
            if let Some(v) = v {
                m.insert(key.into(), Value::String(v.clone()));
            }
        }
        Value::Object(m)
    }
}

/// Everything found in a perfdata text: the entries, and a note per part that could not be read.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Parsed {
    /// The entries, in order.
    pub entries: Vec<Perfdata>,
    /// What was skipped and why.
    pub problems: Vec<String>,
}

/// Parses a perfdata text (entries separated by whitespace). Never fails: a malformed entry
/// is skipped with a note, and the rest are still read.
pub fn parse_perfdata(text: &str) -> Parsed {
    let mut out = Parsed::default();
    let mut rest = text;
    loop {
        rest = rest.trim_start();
        if rest.is_empty() {
            break;
        }
        let (label, after) = match take_label(rest) {
            Ok(x) => x,
            Err((problem, after)) => {
                out.problems.push(problem);
                rest = after;
                continue;
            }
        };
        let end = after.find(char::is_whitespace).unwrap_or(after.len());
        let (data, after) = after.split_at(end);
        rest = after;
        if out.entries.len() >= MAX_ENTRIES {
            out.problems.push(format!(
                "more than {MAX_ENTRIES} entries: the rest are dropped"
            ));
            break;
        }
        match parse_data(label.clone(), data) {
            Ok(p) => out.entries.push(p),
            Err(problem) => out
                .problems
                .push(format!("`{}`: {problem}", cut(&label, MAX_LABEL))),
        }
    }
    out
}

fn cut(s: &str, max: usize) -> String {
    if s.len() <= max {
        return s.to_owned();
    }
    let end = (0..=max)
        .rev()
        .find(|i| s.is_char_boundary(*i))
        .unwrap_or(0);
    s[..end].to_owned()
}

/// Reads a label up to and including its `=`; on a malformed one, a note and where to go on.
fn take_label(s: &str) -> Result<(String, &str), (String, &str)> {
    let skip_token = |s: &str| -> usize { s.find(char::is_whitespace).unwrap_or(s.len()) };
    if let Some(quoted) = s.strip_prefix('\'') {
        let mut label = String::new();
        let mut chars = quoted.char_indices();
        while let Some((i, c)) = chars.next() {
            if c != '\'' {
                label.push(c);
                continue;
            }
            if quoted[i + 1..].starts_with('\'') {
                label.push('\'');
                chars.next();
                continue;
            }
            let after = &quoted[i + 1..];
            return match after.strip_prefix('=') {
                Some(data) if !label.is_empty() => Ok((cut(&label, MAX_LABEL), data)),
                Some(data) => Err(("an empty label".to_owned(), &data[skip_token(data)..])),
                None => Err((
                    format!(
                        "`{}`: no `=` after the quoted label",
                        cut(&label, MAX_LABEL)
                    ),
                    &after[skip_token(after)..],
                )),
            };
        }
        return Err(("a quoted label without its closing quote".to_owned(), ""));
    }
    let token_end = skip_token(s);
    match s[..token_end].find('=') {
        Some(0) => Err(("an empty label".to_owned(), &s[token_end..])),
        Some(eq) => Ok((cut(&s[..eq], MAX_LABEL), &s[eq + 1..])),
        None => Err((
            format!("`{}` is not label=value", cut(&s[..token_end], MAX_LABEL)),
            &s[token_end..],
        )),
    }
}

fn parse_number(text: &str, what: &str) -> Result<Option<f64>, String> {
    if text.is_empty() {
        return Ok(None);
    }
    match text.parse::<f64>() {
        Ok(v) if v.is_finite() => Ok(Some(v)),
        _ => Err(format!("{what} `{}` is not a number", cut(text, 40))),
    }
}

fn parse_data(label: String, data: &str) -> Result<Perfdata, String> {
    let mut parts = data.split(';');
    let first = parts.next().unwrap_or_default();
    if first.is_empty() {
        return Err("no value".to_owned());
    }
    let (value, uom) = if first == "U" {
        (None, String::new())
    } else {
        let split = first
            .find(|c: char| !(c.is_ascii_digit() || matches!(c, '-' | '+' | '.')))
            .unwrap_or(first.len());
        let (number, uom) = first.split_at(split);
        if uom.chars().any(|c| c.is_ascii_digit() || c == '\'') {
            return Err(format!("value `{}` is not a number", cut(first, 40)));
        }
        let value = parse_number(number, "value")?
            .ok_or_else(|| format!("value `{}` is not a number", cut(first, 40)))?;
        (Some(value), cut(uom, 16))
    };
    // Some checks repeat the unit after a threshold or bound.
    let strip = |s: &'_ str| -> String {
        let s = if uom.is_empty() {
            s
        } else {
            s.strip_suffix(uom.as_str()).unwrap_or(s)
        };
        s.to_owned()
    };
    let range = |s: Option<&str>| s.filter(|s| !s.is_empty()).map(|s| cut(&strip(s), 64));
    let warn = range(parts.next());
    let crit = range(parts.next());
    let bound = |s: Option<&str>, what: &str| -> Result<Option<f64>, String> {
        parse_number(&strip(s.unwrap_or_default()), what)
    };
    let min = bound(parts.next(), "min")?;
    let max = bound(parts.next(), "max")?;
    Ok(Perfdata {
        label,
        value,
        uom,
        warn,
        crit,
        min,
        max,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use serde_json::json;

    fn one(text: &str) -> Perfdata {
        let p = parse_perfdata(text);
        assert!(p.problems.is_empty(), "{text}: {:?}", p.problems);
        assert_eq!(p.entries.len(), 1, "{text}: {:?}", p.entries);
        p.entries[0].clone()
    }

    /// Guards the full form and the dropped trailing parts.
    #[test]
    fn full_and_short_forms() {
        let p = one("load1=6.640;5.000;10.000;0;");
        assert_eq!(p.label, "load1");
        assert_eq!(p.value, Some(6.64));
        assert_eq!(p.warn.as_deref(), Some("5.000"));
        assert_eq!(p.crit.as_deref(), Some("10.000"));
        assert_eq!((p.min, p.max), (Some(0.0), None));
        let p = one("users=3");
        assert_eq!(
            (p.value, p.warn, p.min, p.max),
            (Some(3.0), None, None, None)
        );
    }

    /// Guards quoted labels: spaces, `=` and a doubled quote inside.
    #[test]
    fn quoted_labels() {
        let p = parse_perfdata("'with space'=1 'it''s=x'=2;;;0;10 plain=3");
        let labels: Vec<_> = p.entries.iter().map(|e| e.label.as_str()).collect();
        assert_eq!(
            labels,
            ["with space", "it's=x", "plain"],
            "{:?}",
            p.problems
        );
        assert_eq!(p.entries[1].max, Some(10.0));
    }

    /// Guards `U` (value unknown) and missing min/max.
    #[test]
    fn unknown_value_and_missing_bounds() {
        let p = one("'temp sensor'=U;80;90");
        assert_eq!(p.value, None);
        assert_eq!(p.crit.as_deref(), Some("90"));
        assert_eq!(
            p.to_json(),
            json!({"label": "temp sensor", "uom": "", "value": null, "warn": "80", "crit": "90"})
        );
    }

    /// Guards every unit of the guidelines and its base-unit field.
    #[test]
    fn units_to_base_fields() {
        let cases = [
            ("t=2s", "value_seconds", 2.0),
            ("t=250ms", "value_seconds", 0.25),
            ("t=500us", "value_seconds", 0.0005),
            ("p=42.5%", "value_percent", 42.5),
            ("b=10B", "value_bytes", 10.0),
            ("b=2KB", "value_bytes", 2048.0),
            ("b=3MB", "value_bytes", 3.0 * 1048576.0),
            ("b=1TB", "value_bytes", 1099511627776.0),
            ("c=123c", "value_total", 123.0),
            ("n=-7.5", "value", -7.5),
            ("w=3W", "value", 3.0),
        ];
        for (text, key, want) in cases {
            let v = one(text).to_json();
            let got = v[key].as_f64().unwrap_or(f64::NAN);
            assert!((got - want).abs() < 1e-9, "{text}: {v}");
        }
        let disk = one("/=26285703168B;216442024755;243497277849;0;270552530944").to_json();
        assert_eq!(disk["max_bytes"], json!(270552530944.0));
        assert_eq!(one("c=5c;;;0;100").to_json()["max"], json!(100.0));
    }

    /// Guards tolerance: malformed entries are noted and skipped, the rest are kept.
    #[test]
    fn malformed_entries_are_skipped_with_a_note() {
        let p = parse_perfdata("ok=1 junk =2 bad=abc 'open=3 good=4");
        let labels: Vec<_> = p.entries.iter().map(|e| e.label.as_str()).collect();
        assert_eq!(labels, ["ok"], "{:?}", p.problems);
        assert!(
            p.problems.iter().any(|m| m.contains("`bad`: value `abc`")),
            "{:?}",
            p.problems
        );
        let p = parse_perfdata("a=1 b=2x3 c=3");
        assert_eq!(p.entries.len(), 2, "{:?}", p);
    }

    /// Guards the entry bound: one past it is dropped with a note.
    #[test]
    fn entry_count_is_bounded() {
        let text: String = (0..=MAX_ENTRIES).map(|i| format!("l{i}=1 ")).collect();
        let p = parse_perfdata(&text);
        assert_eq!(p.entries.len(), MAX_ENTRIES);
        assert_eq!(p.problems.len(), 1, "{:?}", p.problems);
    }

    fn quote(label: &str) -> String {
        format!("'{}'", label.replace('\'', "''"))
    }

    proptest! {
        /// Guards that no input panics the parser and every entry keeps its bounds.
        #[test]
        fn never_panics(text in "\\PC{0,300}") {
            let p = parse_perfdata(&text);
            prop_assert!(p.entries.len() <= MAX_ENTRIES);
            for e in &p.entries {
                prop_assert!(e.label.len() <= MAX_LABEL);
                let _ = e.to_json();
            }
        }

        /// Guards the round trip: any label (quoted), value, unit and bounds come back as printed.
        #[test]
        fn round_trip(
            label in "[a-zA-Z/_'=][a-zA-Z0-9 ='/_.%:~@-]{0,23}",
            value in -1e9f64..1e9,
            uom in prop::sample::select(vec!["", "s", "ms", "us", "%", "B", "KB", "MB", "TB", "c"]),
            min in prop::option::of(-1e6f64..0.0),
            max in prop::option::of(0.0f64..1e6),
        ) {
            let num = |v: Option<f64>| v.map(|v| v.to_string()).unwrap_or_default();
            let text = format!("{}={value}{uom};1:2;@3:4;{};{} next=1", quote(&label), num(min), num(max));
            let p = parse_perfdata(&text);
            prop_assert!(p.problems.is_empty(), "{text}: {:?}", p.problems);
            prop_assert_eq!(p.entries.len(), 2);
            let e = &p.entries[0];
            prop_assert_eq!(&e.label, &label);
            prop_assert_eq!(e.value, Some(value));
            prop_assert_eq!(e.uom.as_str(), uom);
            prop_assert_eq!(e.warn.as_deref(), Some("1:2"));
            prop_assert_eq!(e.crit.as_deref(), Some("@3:4"));
            prop_assert_eq!((e.min, e.max), (min, max));
        }

        /// Guards that perfdata-like tokens in any order (quotes, `=`, `;`, units, numbers
        /// past f64, `U`) never panic the parser, and entries and notes stay bounded.
        #[test]
        fn hostile_tokens_never_panic(tokens in prop::collection::vec(
            "'{1,2}|=|;{1,3}|[a-z ]{1,4}|-?[0-9.e+]{1,8}|[0-9]{300,320}|U|%|[KMGT]?B|m?s|c|@|~|:|\\PC",
            0..60,
        )) {
            let p = parse_perfdata(&tokens.concat());
            prop_assert!(p.entries.len() <= MAX_ENTRIES);
            for e in &p.entries {
                prop_assert!(e.label.len() <= MAX_LABEL);
                prop_assert!(e.value.is_none_or(f64::is_finite));
                let _ = e.to_json();
            }
        }

        /// Guards the round trip of several entries: unquoted labels, `U`, any threshold
        /// range form, trailing parts left out; the entries come back in order, each with its
        /// value scaled to its base-unit field in JSON.
        #[test]
        fn entry_lists_round_trip(entries in prop::collection::vec(
            (
                "[a-zA-Z_/][a-zA-Z0-9_./:-]{0,15}",
                prop::option::of(-1e12f64..1e12),
                prop::sample::select(vec!["", "s", "ms", "us", "%", "B", "KB", "MB", "GB", "TB", "c"]),
                prop::option::of("@?(~|-?[0-9]{1,4})?:?[0-9]{0,4}"),
                prop::option::of("@?(~|-?[0-9]{1,4})?:?[0-9]{0,4}"),
                prop::option::of(-1e6f64..1e6),
                prop::option::of(-1e6f64..1e6),
                0usize..5,
            ),
            0..12,
        )) {
            let mut text = String::new();
            for (label, value, uom, warn, crit, min, max, parts) in &entries {
                let value = value.map_or("U".to_owned(), |v| format!("{v}{uom}"));
                let num = |v: &Option<f64>| v.map(|v| v.to_string()).unwrap_or_default();
                let all = [
                    value,
                    warn.clone().unwrap_or_default(),
                    crit.clone().unwrap_or_default(),
                    num(min),
                    num(max),
                ];
                text += &format!("{label}={} ", all[..=*parts].join(";"));
            }
            let p = parse_perfdata(&text);
            prop_assert!(p.problems.is_empty(), "{}: {:?}", text, p.problems);
            prop_assert_eq!(p.entries.len(), entries.len());
            for (e, (label, value, uom, warn, crit, min, max, parts)) in p.entries.iter().zip(&entries) {
                let kept = |i: usize| *parts >= i;
                let range = |r: &Option<String>, i: usize| r.clone().filter(|r| kept(i) && !r.is_empty());
                prop_assert_eq!(&e.label, label);
                prop_assert_eq!(e.value, *value);
                prop_assert_eq!(e.uom.as_str(), if value.is_some() { *uom } else { "" });
                prop_assert_eq!(&e.warn, &range(warn, 1));
                prop_assert_eq!(&e.crit, &range(crit, 2));
                prop_assert_eq!(e.min, min.filter(|_| kept(3)));
                prop_assert_eq!(e.max, max.filter(|_| kept(4)));
                if let Some(v) = value {
                    let unit = Unit::parse(&e.uom);
                    let json = e.to_json();
                    let got = json[format!("value{}", unit.suffix())].as_f64();
                    prop_assert_eq!(got, Some(v * unit.factor()), "{}", json);
                }
            }
        }
    }
}
