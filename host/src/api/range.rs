//! Range queries over the durable history: points per step of any series (JSON or CSV), and stored events.

use std::fmt::Write as _;
use std::time::{Duration, SystemTime};

use serde::{Deserialize, Serialize};
use vitals_history::{Millis, QueryError, Selector, SeriesPoints, Tier, MAX_POINTS_PER_SERIES};
use warp::http::{header, StatusCode};
use warp::reply::Response;

use super::{error_response, json, ApiState};
use crate::recorder::RecorderError;
use crate::store::millis;

/// The range a request asks for when it names none: the last hour.
pub const DEFAULT_RANGE: Duration = Duration::from_secs(3600);

/// The most events one request may list.
pub const MAX_EVENTS: usize = vitals_history::MAX_EVENTS_PER_QUERY;

/// `GET /history` with `series`: a range query.
#[derive(Debug, Default, Deserialize)]
pub struct RangeQuery {
    /// `COLLECTOR` (every series it declares) or `COLLECTOR.NAME`.
    pub series: Option<String>,
    /// Only items whose label matches this glob (`*`, `?`), e.g. a mount point or a GPU index.
    pub label: Option<String>,
    /// The start: RFC 3339, Unix milliseconds, or relative to now like `-6h` (default: an hour before `to`).
    pub from: Option<String>,
    /// The end: as `from`, or `now` (default).
    pub to: Option<String>,
    /// The width of one point, e.g. `1m` (default: the range over 500, at least 1 s).
    pub step: Option<String>,
    /// `json` (default) or `csv`.
    pub format: Option<String>,
    /// The in-memory history of one collector (without `series`).
    pub collector: Option<String>,
}

/// `GET /events`.
#[derive(Debug, Default, Deserialize)]
pub struct EventsQuery {
    /// The start (default: a day before `to`).
    pub from: Option<String>,
    /// The end (default: now).
    pub to: Option<String>,
    /// Only this source, e.g. `collector:gpu`, `config`, `host`.
    pub source: Option<String>,
    /// At most this many, newest first (default 200).
    pub limit: Option<usize>,
}

/// A bad parameter, with the message the 400 carries.
struct BadRequest(String);

/// A parameter given empty (`from=`) means the same as one left out.
fn given(p: Option<&str>) -> Option<&str> {
    p.map(str::trim).filter(|s| !s.is_empty())
}

/// A time parameter: RFC 3339, Unix milliseconds, `now`, or `-DURATION` before `now`.
fn parse_time(text: &str, now: Millis) -> Result<Millis, BadRequest> {
    let text = text.trim();
    if text == "now" {
        return Ok(now);
    }
    if let Some(ago) = text.strip_prefix('-') {
        let d = humantime::parse_duration(ago)
            .map_err(|e| BadRequest(format!("`{text}` is not a relative time like -6h: {e}")))?;
        return Ok(now.saturating_sub(i64::try_from(d.as_millis()).unwrap_or(i64::MAX)));
    }
    if let Ok(ms) = text.parse::<i64>() {
        return Ok(ms);
    }
    humantime::parse_rfc3339_weak(text)
        .map(millis)
        .map_err(|_| {
            BadRequest(format!(
                "`{text}` is not a time: use RFC 3339 (2026-11-28T03:12:00Z), Unix milliseconds, `now` or `-6h`"
            ))
        })
}

/// `from`, `to` and `step` in milliseconds, with the defaults filled in.
fn range(
    from: Option<&str>,
    to: Option<&str>,
    step: Option<&str>,
    default: Duration,
) -> Result<(Millis, Millis, Millis), BadRequest> {
    let (from, to, step) = (given(from), given(to), given(step));
    let now = millis(SystemTime::now());
    let to = to.map_or(Ok(now), |t| parse_time(t, now))?;
    let span = i64::try_from(default.as_millis()).unwrap_or(i64::MAX);
    let from = from.map_or(Ok(to.saturating_sub(span)), |f| parse_time(f, now))?;
    if to <= from {
        return Err(BadRequest("`to` must be after `from`".to_owned()));
    }
    let step = match step {
        Some(s) => {
            let d = humantime::parse_duration(s)
                .map_err(|e| BadRequest(format!("`step={s}` is not a duration like 1m: {e}")))?;
            i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
        }
        None => ((to - from) / 500).max(1000),
    };
    if step <= 0 {
        return Err(BadRequest("`step` must be at least 1ms".to_owned()));
    }
    Ok((from, to, step))
}

fn bad(message: String) -> Response {
    error_response(StatusCode::BAD_REQUEST, "bad_request", message)
}

fn failed(e: RecorderError) -> Response {
    match e {
        RecorderError::Query(q) => bad(format!(
            "{q} (at most {MAX_POINTS_PER_SERIES} points per series: widen `step` or narrow the range)"
        )),
        other => error_response(StatusCode::SERVICE_UNAVAILABLE, "unavailable", other.to_string()),
    }
}

#[derive(Serialize)]
struct SeriesOut {
    collector: String,
    name: String,
    label: Option<String>,
    unit: Option<String>,
    /// `raw`, `minute` or `hour`: the tier the points were read from.
    tier: &'static str,
    /// `[time, min, avg, max, count]` per step that has data, oldest first.
    points: Vec<(Millis, f64, f64, f64, u64)>,
}

fn tier_name(t: Tier) -> &'static str {
    match t {
        Tier::Raw => "raw",
        Tier::Minute => "minute",
        Tier::Hour => "hour",
    }
}

/// Answers a range query over the durable history.
pub async fn history(s: &ApiState, q: RangeQuery) -> Response {
    let Some(series) = given(q.series.as_deref()) else {
        return bad("`series` is required for a range query".to_owned());
    };
    let (from, to, step) = match range(
        q.from.as_deref(),
        q.to.as_deref(),
        q.step.as_deref(),
        DEFAULT_RANGE,
    ) {
        Ok(r) => r,
        Err(BadRequest(m)) => return bad(m),
    };
    let csv = match given(q.format.as_deref()) {
        None | Some("json") => false,
        Some("csv") => true,
        Some(other) => return bad(format!("`format={other}`: use json or csv")),
    };
    let (collector, name) = match series.split_once('.') {
        Some((c, n)) => (c, Some(n)),
        None => (series, None),
    };
    let declared = s.store.declared_series(collector);
    let names: Vec<(String, Option<String>)> = match name {
        Some(n) => vec![(
            n.to_owned(),
            declared.iter().find(|(d, _)| d == n).map(|(_, u)| u.clone()),
        )],
        None if declared.is_empty() => {
            return error_response(
                StatusCode::NOT_FOUND,
                "not_found",
                format!("no configured collector `{collector}` declares series; name one as `{collector}.NAME`"),
            )
        }
        None => declared.into_iter().map(|(n, u)| (n, Some(u))).collect(),
    };
    let Some(recorder) = s.store.recorder().cloned() else {
        return failed(RecorderError::Unavailable("it is turned off".to_owned()));
    };
    let mut out = Vec::new();
    let mut partial = Vec::new();
    for (name, unit) in names {
        let label = given(q.label.as_deref()).map(str::to_owned);
        let selector = Selector {
            collector: collector.to_owned(),
            name: name.clone(),
            label: label.clone(),
        };
        match recorder.query(selector, from, to, step).await {
            Ok(found) => out.extend(found.into_iter().map(|p| shape(p, unit.clone()))),
            // A whole collector asked for (the page's view) whose series had more items over
            // the range than a request answers (container churn): the items present now.
            Err(RecorderError::Query(QueryError::TooManySeries { matched, limit }))
                if label.is_none() =>
            {
                let live = s.store.live_labels(collector, &name);
                let answered = live.len().min(limit);
                for item in live.into_iter().take(limit) {
                    let selector = Selector {
                        collector: collector.to_owned(),
                        name: name.clone(),
                        label: Some(glob::Pattern::escape(&item)),
                    };
                    match recorder.query(selector, from, to, step).await {
                        Ok(found) => out.extend(found.into_iter().map(|p| shape(p, unit.clone()))),
                        Err(e) => return failed(e),
                    }
                }
                partial.push(serde_json::json!({
                    "series": format!("{collector}.{name}"),
                    "matched": matched,
                    "answered": answered,
                    "why": format!("over {limit} items had this series in the range: the {answered} present now are answered; name items with `label` for the others"),
                }));
            }
            Err(e) => return failed(e),
        }
    }
    if csv {
        return csv_reply(series, &out);
    }
    let mut body = serde_json::json!({ "from": from, "to": to, "step": step, "series": out });
    if !partial.is_empty() {
        body["partial"] = serde_json::Value::Array(partial);
    }
    json(StatusCode::OK, &body)
}

fn shape(p: SeriesPoints, unit: Option<String>) -> SeriesOut {
    SeriesOut {
        collector: p.key.collector,
        name: p.key.name,
        label: p.key.label,
        unit,
        tier: tier_name(p.tier),
        points: p
            .points
            .iter()
            .map(|x| (x.ts, x.min, x.avg, x.max, x.count))
            .collect(),
    }
}

fn csv_reply(series: &str, out: &[SeriesOut]) -> Response {
    let mut text = String::from("collector,name,label,time_unix_ms,min,avg,max,count\n");
    let field = |s: &str| {
        if s.contains([',', '"', '\n', '\r']) {
            format!("\"{}\"", s.replace('"', "\"\""))
        } else {
            s.to_owned()
        }
    };
    for s in out {
        let label = field(s.label.as_deref().unwrap_or(""));
        for p in &s.points {
            let _ = writeln!(
                text,
                "{},{},{label},{},{},{},{},{}",
                field(&s.collector),
                field(&s.name),
                p.0,
                p.1,
                p.2,
                p.3,
                p.4
            );
        }
    }
    let file: String = series
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '.' || c == '_' || c == '-' {
                c
            } else {
                '_'
            }
        })
        .collect();
    warp::http::Response::builder()
        .status(StatusCode::OK)
        .header(header::CONTENT_TYPE, "text/csv; charset=utf-8")
        .header(header::CACHE_CONTROL, "no-store")
        .header(
            header::CONTENT_DISPOSITION,
            format!("attachment; filename=\"vitals-{file}.csv\""),
        )
        .body(text.into())
        .unwrap_or_default()
}

/// Answers `GET /events`.
pub async fn events(s: &ApiState, q: EventsQuery) -> Response {
    let (from, to, _) = match range(
        q.from.as_deref(),
        q.to.as_deref(),
        None,
        Duration::from_secs(24 * 3600),
    ) {
        Ok(r) => r,
        Err(BadRequest(m)) => return bad(m),
    };
    let limit = q.limit.unwrap_or(200);
    if limit == 0 || limit > MAX_EVENTS {
        return bad(format!("`limit` must be between 1 and {MAX_EVENTS}"));
    }
    let Some(recorder) = s.store.recorder().cloned() else {
        return failed(RecorderError::Unavailable("it is turned off".to_owned()));
    };
    let source = given(q.source.as_deref()).map(str::to_owned);
    match recorder.events(from, to, source, limit).await {
        Ok(list) => {
            let events: Vec<serde_json::Value> = list
                .into_iter()
                .map(|e| {
                    serde_json::json!({
                        "time": crate::store::rfc3339(
                            std::time::UNIX_EPOCH + Duration::from_millis(u64::try_from(e.ts).unwrap_or(0))
                        ),
                        "time_unix_ms": e.ts,
                        "source": e.source,
                        "kind": e.kind,
                        "text": e.text,
                    })
                })
                .collect();
            json(StatusCode::OK, &serde_json::json!({ "events": events }))
        }
        Err(e) => failed(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Guards the time forms the API documents: RFC 3339, Unix milliseconds, `now`, `-6h`.
    #[test]
    fn times_parse_in_every_documented_form() {
        let now = 1_800_000_000_000;
        assert_eq!(parse_time("now", now).ok(), Some(now));
        assert_eq!(parse_time("-6h", now).ok(), Some(now - 6 * 3_600_000));
        assert_eq!(
            parse_time("1700000000000", now).ok(),
            Some(1_700_000_000_000)
        );
        assert_eq!(
            parse_time("2023-11-14T22:13:20Z", now).ok(),
            Some(1_700_000_000_000)
        );
        assert!(parse_time("yesterday", now).is_err());
        assert!(parse_time("-6 parsecs", now).is_err());
    }

    /// Guards the defaults and the refusals of a range: an hour, 500 steps, `to` after `from`.
    #[test]
    fn ranges_default_and_refuse() {
        let (from, to, step) = range(Some("-1h"), None, None, DEFAULT_RANGE)
            .ok()
            .expect("range");
        assert_eq!(to - from, 3_600_000);
        assert_eq!(step, 7_200);
        assert!(range(Some("-1h"), Some("-2h"), None, DEFAULT_RANGE).is_err());
        assert!(range(None, None, Some("0s"), DEFAULT_RANGE).is_err());
        assert!(range(None, None, Some("soon"), DEFAULT_RANGE).is_err());
    }
}
