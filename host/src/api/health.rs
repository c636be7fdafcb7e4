//! The health document: the host's components (HTTP, history, each collector) and the verdict behind 200 or 503.

use std::collections::BTreeMap;

use serde::Serialize;
use warp::http::StatusCode;

use crate::recorder::RecorderState;
use crate::store::{State, Store};

/// The verdict of the health document.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum HealthStatus {
    /// Every enabled collector works or is normally unavailable: HTTP 200.
    Ok,
    /// An enabled collector has failed: HTTP 503.
    Failed,
}

impl HealthStatus {
    /// The HTTP status the health route answers with.
    pub fn http_status(self) -> StatusCode {
        match self {
            Self::Ok => StatusCode::OK,
            Self::Failed => StatusCode::SERVICE_UNAVAILABLE,
        }
    }
}

/// The health document.
#[derive(Debug, Serialize)]
pub struct Health {
    /// The verdict.
    pub status: HealthStatus,
    /// Why the status is `failed`.
    pub problems: Vec<String>,
    /// What an operator should know that is not a failure (history writing paused, a corrupt
    /// store moved aside); health stays 200.
    pub warnings: Vec<String>,
    /// Each component: `http`, `history`, and `collector:NAME`.
    pub components: BTreeMap<String, ComponentHealth>,
    /// Alerts firing now: listed, never a host failure (the status stays as the components say).
    pub alerts: Vec<crate::alerts::Alert>,
    /// How each alert notifier fares (sent, failed, retried, last error).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub notifiers: Vec<crate::alerts::notify::NotifierStatus>,
}

impl Health {
    /// Adds the firing alerts and the notifiers' state; a failing notifier is a warning.
    pub fn with_alerts(mut self, view: &crate::alerts::AlertsView) -> Self {
        self.alerts = view
            .active
            .iter()
            .filter(|a| a.state == crate::alerts::AlertState::Firing)
            .cloned()
            .collect();
        for n in &view.notifiers {
            if let (true, Some(e)) = (n.failed > 0, &n.last_error) {
                self.warnings.push(format!(
                    "alert notifier {} failed {} times: {e}",
                    n.target, n.failed
                ));
            }
        }
        self.warnings.extend(view.problems.iter().cloned());
        self.notifiers.clone_from(&view.notifiers);
        self
    }
}

/// The health of one component.
#[derive(Debug, Serialize)]
pub struct ComponentHealth {
    /// `ok`, `pending`, `unavailable`, `failed` or `disabled`.
    pub state: State,
    /// True when data is kept from before a failure.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub stale: bool,
    /// Why it is not ok.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// Extra figures (history size, open streams, …).
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub details: BTreeMap<&'static str, serde_json::Value>,
}

impl ComponentHealth {
    pub(crate) fn ok(details: BTreeMap<&'static str, serde_json::Value>) -> Self {
        Self {
            state: State::Ok,
            stale: false,
            reason: None,
            details,
        }
    }
}

/// Builds the health document from the store.
pub fn health(store: &Store, streams_open: usize) -> Health {
    let mut components = BTreeMap::new();
    let mut problems = Vec::new();
    components.insert(
        "http".to_owned(),
        ComponentHealth::ok(BTreeMap::from([("streams_open", streams_open.into())])),
    );
    let (series, points) = store.history_size();
    let mut history = ComponentHealth::ok(BTreeMap::from([
        ("series", series.into()),
        ("points", points.into()),
    ]));
    let mut warnings = Vec::new();
    if let Some(r) = store.recorder() {
        let durable = r.status();
        if let Some(recovered) = &durable.recovered {
            warnings.push(recovered.clone());
        }
        if matches!(
            durable.state,
            RecorderState::Paused | RecorderState::Unavailable
        ) {
            // Live monitoring goes on: a warning, not a failure of the host.
            history.state = State::Unavailable;
            history.reason = durable.reason.clone();
            warnings.push(
                durable
                    .reason
                    .clone()
                    .unwrap_or_else(|| "the durable history is not writing".to_owned()),
            );
        }
        history.details.insert(
            "durable",
            serde_json::to_value(&durable).unwrap_or_default(),
        );
    }
    components.insert("history".to_owned(), history);
    for (name, s) in store.statuses() {
        if s.state == State::Failed {
            problems.push(format!(
                "collector `{name}` failed: {}",
                s.reason.as_deref().unwrap_or("unknown error")
            ));
        }
        components.insert(
            format!("collector:{name}"),
            ComponentHealth {
                state: s.state,
                stale: s.stale,
                reason: s.reason,
                details: BTreeMap::new(),
            },
        );
    }
    Health {
        status: if problems.is_empty() {
            HealthStatus::Ok
        } else {
            HealthStatus::Failed
        },
        problems,
        warnings,
        components,
        alerts: Vec::new(),
        notifiers: Vec::new(),
    }
}
