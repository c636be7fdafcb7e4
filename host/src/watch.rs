//! Watches the config file (inotify on its folder, polling where that is unavailable) and reloads it on change.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use crate::control::Control;

/// How often the config file is checked when inotify cannot watch its folder.
const POLL_WITHOUT_INOTIFY: Duration = Duration::from_secs(1);
/// How often it is checked anyway with inotify (file systems that send no events, such as NFS).
const POLL_WITH_INOTIFY: Duration = Duration::from_secs(30);
/// How long after an event the file is compared, so an editor's write and rename land first.
const SETTLE: Duration = Duration::from_millis(100);

/// An inotify watch on the folder of `path` (editors and config managers replace the file by
/// a rename, which a watch on the file itself would lose).
fn watch_folder(path: &Path) -> std::io::Result<inotify::EventStream<Vec<u8>>> {
    use inotify::{Inotify, WatchMask};
    let folder = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    let inotify = Inotify::init()?;
    inotify.watches().add(
        folder,
        WatchMask::CLOSE_WRITE
            | WatchMask::MOVED_TO
            | WatchMask::CREATE
            | WatchMask::DELETE
            | WatchMask::ATTRIB,
    )?;
    inotify.into_event_stream(vec![0u8; 4096])
}

/// Watches the config file and reloads it when its modification time or size changes: on an
/// inotify event in its folder (and every 30 s), or every second where inotify is unavailable.
pub async fn watch_file(
    control: Arc<Control>,
    path: PathBuf,
    mut shutdown: tokio::sync::watch::Receiver<bool>,
) {
    use futures_util::{FutureExt, StreamExt};
    fn stamp(p: &Path) -> Option<(SystemTime, u64)> {
        let m = std::fs::metadata(p).ok()?;
        Some((m.modified().ok()?, m.len()))
    }
    let mut events = match watch_folder(&path) {
        Ok(s) => Some(s),
        Err(e) => {
            tracing::info!(
                "cannot watch the folder of {} ({e}); checking it every second",
                path.display()
            );
            None
        }
    };
    let mut last = stamp(&path);
    loop {
        let every = if events.is_some() {
            POLL_WITH_INOTIFY
        } else {
            POLL_WITHOUT_INOTIFY
        };
        let event = async {
            match events.as_mut() {
                Some(s) => s.next().await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            _ = tokio::time::sleep(every) => {}
            e = event => match e {
                Some(Ok(_)) => {
                    tokio::time::sleep(SETTLE).await;
                    // One comparison for a burst of events.
                    if let Some(s) = events.as_mut() {
                        while let Some(Some(Ok(_))) = s.next().now_or_never() {}
                    }
                }
                other => {
                    tracing::info!(
                        "the watch on the folder of {} ended ({other:?}); checking it every second",
                        path.display()
                    );
                    events = None;
                }
            },
            _ = shutdown.changed() => return,
        }
        let now = stamp(&path);
        if now != last && now.is_some() {
            last = now;
            let _ = control.reload().await;
        }
    }
}
