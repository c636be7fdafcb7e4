//! The inspect step: which listed containers need a fresh `inspect` (their cached answer is
//! kept until their state changes), the requests, and what is kept from each answer.

use std::path::PathBuf;

use bollard::models::ContainerInspectResponse;
use futures_util::{stream, StreamExt};
use hashbrown::{HashMap, HashSet};
use vitals_plugin_api::sections::ContainerState;

use crate::cgroup::{Files, Layout};
use crate::engine::{self, Daemon, RequestError};
use crate::list::Entry;
use crate::sample::Usage;

/// Inspect requests in flight at once.
const CONCURRENT_INSPECTS: usize = 32;

/// What `inspect` said about a container, kept until its state changes.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Inspected {
    /// The init process, while it runs.
    pub pid: Option<u32>,
    /// When it was last started, Unix seconds.
    pub started_at: Option<i64>,
    /// Restarts under its restart policy.
    pub restart_count: u64,
}

/// A container seen before: its inspect answer, cgroup folders and last CPU sample.
pub(crate) struct Tracked {
    /// What must stay the same for `info` to stay valid (see [`cache_key`]).
    pub key: String,
    /// The inspect answer.
    pub info: Inspected,
    /// The container's cgroup and network files, when it runs and they are readable.
    pub files: Option<Files>,
    /// (container CPU ns, system CPU ns) of the previous collect.
    pub prev_cpu: Option<(u64, u64)>,
    /// The collect that last listed it (the sampler's stamp) and its position in that list:
    /// the rows walk the tracked containers instead of looking each one up again.
    pub listed: Option<(u64, usize)>,
    /// That collect's figures from its cgroup files, taken by its row.
    pub usage: Option<Usage>,
}

/// The key under which an inspect answer stays valid. A running container read through its
/// cgroup is re-inspected when its init process is gone (checked separately), so its state
/// suffices; anything else also keys on the status text, whose "N minutes ago" part resets
/// on every start, stop and restart.
pub(crate) fn cache_key(state: &ContainerState, status_text: &str, watched_by_pid: bool) -> String {
    if watched_by_pid {
        state.as_str().to_owned()
    } else {
        format!("{state}\n{status_text}")
    }
}

/// True while process `pid` exists (signal 0 checks without sending anything).
fn process_exists(pid: u32) -> bool {
    let Ok(pid) = libc::pid_t::try_from(pid) else {
        return false;
    };
    // SAFETY: signal 0 performs only the existence and permission checks.
    let rc = unsafe { libc::kill(pid, 0) };
    rc == 0 || std::io::Error::last_os_error().raw_os_error() == Some(libc::EPERM)
}

/// True when `key` is what [`cache_key`] makes of `state` and, unless `None`, `status_text`
/// (compared in place: this runs for every container on every collect).
fn key_is(key: &str, state: &ContainerState, status_text: Option<&str>) -> bool {
    let rest = key.strip_prefix(state.as_str());
    match status_text {
        None => rest == Some(""),
        Some(text) => rest.and_then(|r| r.strip_prefix('\n')) == Some(text),
    }
}

/// True when `tracked` still describes the listed container `entry`; `check_pid` also asks
/// whether a cgroup-watched container's init process still runs.
fn fresh(tracked: &Tracked, entry: &Entry<'_>, check_pid: bool) -> bool {
    if entry.state == ContainerState::Running && tracked.files.is_some() {
        key_is(&tracked.key, &entry.state, None)
            && (!check_pid || tracked.info.pid.is_some_and(process_exists))
    } else {
        key_is(&tracked.key, &entry.state, Some(entry.status_text))
    }
}

/// The entries whose inspect answer is missing or stale; with a `relisted` list (read from the
/// daemon for this collect, not reused) also checks that each cgroup-watched container's init
/// process runs and forgets the tracked containers the list no longer has. A reused list
/// means no container event came since it was read, and a container whose cgroup went away
/// fails its next read, which drops the list, so the check waits for the next one.
pub(crate) fn stale<'e, 'a>(
    entries: &'e [Entry<'a>],
    tracked: &mut HashMap<String, Tracked>,
    relisted: bool,
) -> Vec<&'e Entry<'a>> {
    let stale = entries
        .iter()
        .filter(|e| !tracked.get(e.id).is_some_and(|t| fresh(t, e, relisted)))
        .collect();
    if relisted {
        let listed: HashSet<&str> = entries.iter().map(|e| e.id).collect();
        tracked.retain(|id, _| listed.contains(id.as_str()));
    }
    stale
}

/// Inspects `entries`, a bounded number at once; the answers come in any order.
pub(crate) async fn inspect_all<'e, 'a>(
    daemon: &Daemon<'_>,
    entries: Vec<&'e Entry<'a>>,
) -> Vec<(
    &'e Entry<'a>,
    Result<ContainerInspectResponse, RequestError>,
)> {
    stream::iter(entries)
        .map(|entry| async move {
            let answer = daemon
                .request(
                    "inspecting a container",
                    daemon.docker.inspect_container(entry.id, None),
                )
                .await;
            (entry, answer)
        })
        .buffer_unordered(CONCURRENT_INSPECTS)
        .collect()
        .await
}

/// What an inspect answer says that the section needs.
pub(crate) fn inspected(resp: &ContainerInspectResponse) -> Inspected {
    let state = resp.state.as_ref();
    Inspected {
        pid: state
            .and_then(|s| s.pid)
            .and_then(|p| u32::try_from(p).ok())
            .filter(|p| *p > 0),
        started_at: state
            .and_then(|s| s.started_at.as_deref())
            .and_then(engine::parse_timestamp),
        restart_count: resp
            .restart_count
            .and_then(|c| u64::try_from(c).ok())
            .unwrap_or(0),
    }
}

/// The cgroup and network files of a running container, found through its init process
/// (no network file in host network mode); `None` when they cannot be read.
fn cgroup_files(layout: &Layout, pid: u32, id: &str, host_network: bool) -> Option<Files> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).ok()?;
    let paths = layout.container_paths(&text, id)?;
    let net_dev = (!host_network).then(|| PathBuf::from(format!("/proc/{pid}/net/dev")));
    Some(paths.files(net_dev))
}

/// Keeps what each answer says in `tracked` (a container's last CPU sample survives a new
/// answer) and returns the ids of the containers gone since the list.
///
/// # Errors
/// The first failed request other than "no such container".
pub(crate) fn record(
    answers: Vec<(&Entry<'_>, Result<ContainerInspectResponse, RequestError>)>,
    tracked: &mut HashMap<String, Tracked>,
    layout: Option<&Layout>,
) -> Result<HashSet<String>, RequestError> {
    let mut vanished = HashSet::new();
    for (entry, answer) in answers {
        let resp = match answer {
            Ok(resp) => resp,
            Err(RequestError::Gone) => {
                vanished.insert(entry.id.to_owned());
                continue;
            }
            Err(e) => return Err(e),
        };
        let info = inspected(&resp);
        let running = resp.state.as_ref().and_then(|s| s.running) == Some(true);
        let host_network = resp
            .host_config
            .as_ref()
            .and_then(|h| h.network_mode.as_deref())
            == Some("host");
        let files = match (layout, info.pid) {
            (Some(layout), Some(pid)) if running => {
                cgroup_files(layout, pid, entry.id, host_network)
            }
            _ => None,
        };
        let prev_cpu = tracked.get(entry.id).and_then(|t| t.prev_cpu);
        let key = cache_key(&entry.state, entry.status_text, files.is_some());
        tracked.insert(
            entry.id.to_owned(),
            Tracked {
                key,
                info,
                files,
                prev_cpu,
                listed: None,
                usage: None,
            },
        );
    }
    Ok(vanished)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::list::{self, entries};

    /// An inspect fixture: what `GET /containers/{id}/json` answered.
    pub(crate) fn fixture(name: &str) -> ContainerInspectResponse {
        let path = format!("{}/tests/fixtures/{name}", env!("CARGO_MANIFEST_DIR"));
        let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
        serde_json::from_str(&text).expect("inspect json")
    }

    /// Guards the inspect cache key: a restart changes the status text, a cgroup-watched
    /// running container keys on its state alone.
    #[test]
    fn cache_keys_follow_restarts() {
        let exited = ContainerState::Exited;
        let a = cache_key(&exited, "Exited (1) 2 hours ago", false);
        let b = cache_key(&exited, "Exited (1) 1 second ago", false);
        assert_ne!(a, b);
        let running = ContainerState::Running;
        assert_eq!(
            cache_key(&running, "Up 1 second", true),
            cache_key(&running, "Up 2 hours", true)
        );
        let other = ContainerState::Other("stopping".into());
        assert_eq!(cache_key(&other, "x", true), "stopping");
        for (state, text, watched) in [
            (&exited, "Exited (1) 2 hours ago", false),
            (&running, "Up 1 second", true),
            (&other, "x", false),
        ] {
            let key = cache_key(state, text, watched);
            let with = (!watched).then_some(text);
            assert!(key_is(&key, state, with), "{key:?}");
            assert!(!key_is(&key, state, Some("Up 3 seconds")), "{key:?}");
            assert!(!key_is(&key, &ContainerState::Paused, with), "{key:?}");
            assert_eq!(key_is(&key, state, None), watched, "{key:?}");
        }
    }

    /// Guards what is kept of an answer: the init pid, start time and restart count of a
    /// running container; no pid and the last start of an exited one.
    #[test]
    fn keeps_pid_start_and_restarts_from_an_answer() {
        let running = inspected(&fixture("inspect_running.json"));
        assert!(running.pid.is_some_and(|p| p > 0), "{running:?}");
        assert!(
            running.started_at.is_some_and(|s| s > 1_600_000_000),
            "{running:?}"
        );
        assert_eq!(running.restart_count, 0);
        let exited = inspected(&fixture("inspect_exited.json"));
        assert_eq!(exited.pid, None);
        assert!(exited.started_at.is_some(), "{exited:?}");
        assert_eq!(exited.restart_count, 2);
        assert_eq!(
            inspected(&ContainerInspectResponse::default()),
            Inspected::default()
        );
    }

    /// Guards the inspect cache: everything is inspected at first sight; recorded answers are
    /// fresh until the status text changes; a gone container is reported as vanished and a
    /// container no longer listed is forgotten.
    #[test]
    fn inspects_only_what_changed() {
        let list = list::tests::fixture();
        let entries = entries(&list);
        let mut tracked = HashMap::new();
        let first = stale(&entries, &mut tracked, true);
        assert_eq!(first.len(), entries.len());
        let answers = first
            .into_iter()
            .map(|e| {
                let answer = if e.state == ContainerState::Created {
                    Err(RequestError::Gone)
                } else {
                    Ok(fixture("inspect_running.json"))
                };
                (e, answer)
            })
            .collect();
        let vanished = record(answers, &mut tracked, None).expect("recorded");
        assert_eq!(vanished.len(), 1);
        assert_eq!(tracked.len(), entries.len() - 1);
        tracked.values_mut().for_each(|t| t.prev_cpu = Some((1, 2)));

        // The created one (never recorded) is asked again; the rest are fresh.
        let again: Vec<&str> = stale(&entries, &mut tracked, false)
            .iter()
            .map(|e| e.id)
            .collect();
        assert_eq!(again, vec![entries[3].id]);

        let mut changed = list.clone();
        changed[0].status = Some("Up 1 second".into());
        changed.truncate(2);
        let changed_entries = crate::list::entries(&changed);
        let again = stale(&changed_entries, &mut tracked, true);
        assert_eq!(again.len(), 1, "only the restarted container");
        assert_eq!(again[0].id, entries[0].id);
        assert_eq!(tracked.len(), 2, "the unlisted are forgotten");
        let answers = vec![(again[0], Ok(fixture("inspect_running.json")))];
        record(answers, &mut tracked, None).expect("recorded");
        assert_eq!(
            tracked.get(entries[0].id).and_then(|t| t.prev_cpu),
            Some((1, 2)),
            "the CPU sample survives a new answer"
        );
    }

    /// Guards failure: any error but "no such container" fails the step.
    #[test]
    fn a_failed_inspect_fails_the_step() {
        let list = list::tests::fixture();
        let entries = entries(&list);
        let answers = vec![(
            &entries[0],
            Err(RequestError::Unreachable("gone away".into())),
        )];
        let err = record(answers, &mut HashMap::new(), None).err();
        assert!(matches!(err, Some(RequestError::Unreachable(_))), "{err:?}");
    }
}
