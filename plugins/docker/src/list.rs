//! The list step: the daemon's container list, read again only after a container event or
//! every [`LIST_EVERY`], and what it says (each container's state and the counts per state).

use std::time::{Duration, Instant};

use bollard::models::ContainerSummary;
use bollard::query_parameters::ListContainersOptionsBuilder;
use vitals_plugin_api::sections::ContainerState;

use crate::engine::{Daemon, RequestError};

/// How long a container list is reused while the daemon's event stream reports no change;
/// it refreshes the list's status text ("Up 5 minutes").
pub const LIST_EVERY: Duration = Duration::from_secs(10);

/// A container list and when it was read.
pub(crate) type Listed = (Vec<ContainerSummary>, Instant);

/// True when the list read at `at` may be used again: no event since, and younger than
/// [`LIST_EVERY`].
pub(crate) fn reusable(at: Instant, changed: bool) -> bool {
    !changed && at.elapsed() < LIST_EVERY
}

/// The list for this collect: `kept` when [`reusable`], a fresh one from the daemon otherwise.
///
/// # Errors
/// The list request's failure.
pub(crate) async fn read(
    daemon: &Daemon<'_>,
    kept: Option<Listed>,
    changed: bool,
) -> Result<Listed, RequestError> {
    match kept {
        Some((list, at)) if reusable(at, changed) => Ok((list, at)),
        _ => {
            let at = Instant::now();
            let options = ListContainersOptionsBuilder::default().all(true).build();
            let list = daemon
                .request(
                    "listing containers",
                    daemon.docker.list_containers(Some(options)),
                )
                .await?;
            Ok((list, at))
        }
    }
}

/// One listed container: its list entry with the id, state and status text taken out.
#[derive(Debug)]
pub(crate) struct Entry<'a> {
    /// The list's entry.
    pub summary: &'a ContainerSummary,
    /// The full id.
    pub id: &'a str,
    /// The state.
    pub state: ContainerState,
    /// The status text, e.g. `Up 5 minutes`.
    pub status_text: &'a str,
}

/// The state the list gives a container; a missing state is the empty spelling.
pub(crate) fn state_of(summary: &ContainerSummary) -> ContainerState {
    summary.state.map_or_else(
        || ContainerState::Other(String::new()),
        |s| s.as_ref().into(),
    )
}

/// The entries of a list that have an id, in list order.
pub(crate) fn entries(list: &[ContainerSummary]) -> Vec<Entry<'_>> {
    let mut entries = Vec::with_capacity(list.len());
    entries.extend(list.iter().filter_map(|summary| {
        Some(Entry {
            id: summary.id.as_deref()?,
            state: state_of(summary),
            status_text: summary.status.as_deref().unwrap_or(""),
            summary,
        })
    }));
    entries
}

/// Containers per state, as the section counts them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Counts {
    /// Running.
    pub running: u32,
    /// Paused.
    pub paused: u32,
    /// Any other state.
    pub stopped: u32,
}

/// Counts the entries per state.
pub(crate) fn count(entries: &[Entry<'_>]) -> Counts {
    let mut counts = Counts::default();
    for e in entries {
        match e.state {
            ContainerState::Running => counts.running += 1,
            ContainerState::Paused => counts.paused += 1,
            _ => counts.stopped += 1,
        }
    }
    counts
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// The list fixture: what `GET /containers/json?all=1` answered for six containers
    /// (running, paused, exited, created, one with a health check, one in a state this
    /// collector has no name for) and one entry without an id.
    pub(crate) fn fixture() -> Vec<ContainerSummary> {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/list.json");
        let text = std::fs::read_to_string(path).expect("list fixture");
        serde_json::from_str(&text).expect("list json")
    }

    /// Guards the entries: ids, states and status texts as listed, and an entry without an
    /// id left out.
    #[test]
    fn reads_entries_from_a_list() {
        let list = fixture();
        let entries = entries(&list);
        assert_eq!(list.len(), 7);
        assert_eq!(entries.len(), 6, "the entry without an id is left out");
        let states: Vec<&str> = entries.iter().map(|e| e.state.as_str()).collect();
        assert_eq!(
            states,
            ["running", "paused", "exited", "created", "running", "stopping"]
        );
        assert_eq!(entries[5].state, ContainerState::Other("stopping".into()));
        assert!(entries[0].status_text.starts_with("Up "), "{entries:?}");
        assert_eq!(entries[0].id.len(), 64);
    }

    /// Guards the counts: running and paused by name, every other state (an unknown one
    /// included) as stopped.
    #[test]
    fn counts_containers_per_state() {
        let list = fixture();
        assert_eq!(
            count(&entries(&list)),
            Counts {
                running: 2,
                paused: 1,
                stopped: 3
            }
        );
        let none = ContainerSummary {
            id: Some("x".into()),
            ..ContainerSummary::default()
        };
        assert_eq!(state_of(&none), ContainerState::Other(String::new()));
    }

    /// Guards the list cache rule: reused while quiet and young, read again after an event
    /// or once `LIST_EVERY` has passed.
    #[test]
    fn the_list_is_reused_only_while_quiet_and_young() {
        let now = Instant::now();
        assert!(reusable(now, false));
        assert!(!reusable(now, true), "an event");
        if let Some(old) = now.checked_sub(LIST_EVERY) {
            assert!(!reusable(old, false), "too old");
        }
    }
}
