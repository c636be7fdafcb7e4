//! The space of each mount from statvfs(3), asked on kept threads under one shared deadline so
//! that a mount that hangs (a dead NFS server) holds up neither the collect nor the others.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender, TryRecvError};
use std::time::{Duration, Instant};

use vitals_plugin_api::sections::StalledMount;

use crate::Mount;

/// Space figures of one file system.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Space {
    /// Size of the file system.
    pub total_bytes: u64,
    /// Free space including the root reserve.
    pub free_bytes: u64,
    /// Free space an unprivileged user can use.
    pub available_bytes: u64,
}

/// How the space of one mount point is read (statvfs; replaced in tests by one that hangs).
pub type StatFn = fn(&Path) -> Result<Space, String>;

/// Reads a mount's space with statvfs(3).
///
/// # Errors
/// The system error's text when statvfs fails.
pub fn statvfs_space(path: &Path) -> Result<Space, String> {
    let s = nix::sys::statvfs::statvfs(path).map_err(|e| e.to_string())?;
    let unit = s.fragment_size() as u64;
    Ok(Space {
        total_bytes: (s.blocks() as u64).saturating_mul(unit),
        free_bytes: (s.blocks_free() as u64).saturating_mul(unit),
        available_bytes: (s.blocks_available() as u64).saturating_mul(unit),
    })
}

/// Idle space-query threads kept for the next collect, at most.
pub const IDLE_WORKERS: usize = 32;

/// One space query: the mount point and where its answer goes.
type Job = (PathBuf, Sender<Result<Space, String>>);

/// A thread that answers space queries one at a time. A thread whose query hangs is not
/// given another until it answers; the others go on.
struct Worker {
    jobs: Sender<Job>,
}

impl Worker {
    fn spawn(stat: StatFn) -> std::io::Result<Self> {
        let (jobs, queue) = mpsc::channel::<Job>();
        std::thread::Builder::new()
            .name("vitals-disk-statfs".into())
            .spawn(move || {
                for (path, reply) in queue {
                    let _ = reply.send(stat(&path));
                }
            })?;
        Ok(Self { jobs })
    }
}

/// A space query that has not answered yet.
struct Pending {
    reply: Receiver<Result<Space, String>>,
    worker: Worker,
    since: Instant,
    device: String,
    fs_type: String,
}

/// The space queries of one collector: the threads kept between collects and the queries
/// still waiting for an answer.
pub(crate) struct SpaceQueries {
    timeout: Duration,
    stat: StatFn,
    /// Keyed by mount point: a mount in here gets no new query until the old one answers.
    pending: HashMap<String, Pending>,
    /// Threads waiting for a query, reused from one collect to the next.
    idle: Vec<Worker>,
    /// Where the mount points are reached: `/` itself, or a host root they are under.
    root: PathBuf,
}

impl SpaceQueries {
    /// Queries through `stat`, each collect waiting at most `timeout` for all of them.
    pub(crate) fn new(stat: StatFn, timeout: Duration) -> Self {
        Self {
            timeout,
            stat,
            pending: HashMap::new(),
            idle: Vec::new(),
            root: PathBuf::from("/"),
        }
    }

    /// Queries each mount point under `root` (a host root) instead of `/`.
    pub(crate) fn set_root(&mut self, root: &Path) {
        self.root = root.to_owned();
    }

    /// Threads kept for the next collect.
    #[cfg(test)]
    pub(crate) fn idle_threads(&self) -> usize {
        self.idle.len()
    }

    /// Sends `path` to an idle worker (or a new one); None when no thread can be started.
    fn ask(&mut self, path: PathBuf) -> Option<(Receiver<Result<Space, String>>, Worker)> {
        let (tx, rx) = mpsc::channel();
        let mut job = (path, tx);
        loop {
            let worker = match self.idle.pop() {
                Some(w) => w,
                None => match Worker::spawn(self.stat) {
                    Ok(w) => w,
                    Err(e) => {
                        log::warn!("cannot query {}: {e}", job.0.display());
                        return None;
                    }
                },
            };
            match worker.jobs.send(job) {
                Ok(()) => return Some((rx, worker)),
                // Its thread is gone: try another.
                Err(mpsc::SendError(back)) => job = back,
            }
        }
    }

    /// Keeps a worker whose query answered for the next collect.
    fn release(&mut self, worker: Worker) {
        if self.idle.len() < IDLE_WORKERS {
            self.idle.push(worker);
        }
    }

    /// The mount's earlier query when it still has not answered (reported as stalled); when it
    /// has answered at last, it is forgotten and the mount may be asked again.
    fn still_pending(&mut self, mount: &Mount) -> Option<StalledMount> {
        let p = self.pending.get(&mount.mount_point)?;
        match p.reply.try_recv() {
            Err(TryRecvError::Empty) => Some(StalledMount {
                device: p.device.clone(),
                mount_point: mount.mount_point.clone(),
                fs_type: p.fs_type.clone(),
                waiting_seconds: p.since.elapsed().as_secs_f64(),
            }),
            // It answered at last (or its thread is gone): ask afresh.
            answer => {
                log::info!("{} answers again", mount.mount_point);
                if let Some(p) = self.pending.remove(&mount.mount_point) {
                    if answer.is_ok() {
                        self.release(p.worker);
                    }
                }
                None
            }
        }
    }

    /// Queries the space of every mount at once, each on a thread of its own (threads are
    /// kept between collects), and waits for all of them until one shared deadline; a mount
    /// that misses it is left pending with its thread.
    pub(crate) fn query(
        &mut self,
        mounts: &[(Mount, Vec<String>)],
    ) -> (HashMap<String, Space>, Vec<StalledMount>) {
        let mut stalled = Vec::new();
        let mut asked = Vec::new();
        for (mount, _) in mounts {
            if let Some(s) = self.still_pending(mount) {
                stalled.push(s);
                continue;
            }
            let path = self.root.join(mount.mount_point.trim_start_matches('/'));
            if let Some((rx, worker)) = self.ask(path) {
                asked.push((mount, rx, worker));
            }
        }
        let deadline = Instant::now() + self.timeout;
        let mut spaces = HashMap::new();
        for (mount, rx, worker) in asked {
            match rx.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
                Ok(Ok(space)) => {
                    self.release(worker);
                    spaces.insert(mount.mount_point.clone(), space);
                }
                Ok(Err(e)) => {
                    self.release(worker);
                    log::debug!("statvfs {}: {e}", mount.mount_point);
                }
                Err(RecvTimeoutError::Disconnected) => {
                    log::warn!(
                        "the space query of {} ended without an answer",
                        mount.mount_point
                    )
                }
                Err(RecvTimeoutError::Timeout) => {
                    stalled.push(self.leave_pending(mount, rx, worker, deadline));
                }
            }
        }
        (spaces, stalled)
    }

    /// Keeps a query that missed the `deadline` (and its thread) until it answers.
    fn leave_pending(
        &mut self,
        mount: &Mount,
        reply: Receiver<Result<Space, String>>,
        worker: Worker,
        deadline: Instant,
    ) -> StalledMount {
        log::warn!(
            "{} ({}) did not answer within {:?}; skipped until it does",
            mount.mount_point,
            mount.fs_type,
            self.timeout
        );
        self.pending.insert(
            mount.mount_point.clone(),
            Pending {
                reply,
                worker,
                since: deadline - self.timeout,
                device: mount.source.clone(),
                fs_type: mount.fs_type.clone(),
            },
        );
        StalledMount {
            device: mount.source.clone(),
            mount_point: mount.mount_point.clone(),
            fs_type: mount.fs_type.clone(),
            waiting_seconds: self.timeout.as_secs_f64(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fixtures;
    use crate::{Config, DiskCollector};
    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
    use std::sync::{Condvar, Mutex};
    use vitals_plugin_api::prelude::Collector;

    fn mount(point: &str) -> (Mount, Vec<String>) {
        let m = Mount {
            major: 8,
            minor: 1,
            root: "/".into(),
            mount_point: point.into(),
            fs_type: "ext4".into(),
            source: "/dev/sda1".into(),
            read_only: false,
        };
        (m, Vec::new())
    }

    /// `/broken` fails, every other mount has the fixtures' space.
    fn failing_space(path: &Path) -> Result<Space, String> {
        if path == Path::new("/broken") {
            return Err("Input/output error".into());
        }
        fixtures::fake_space(path)
    }

    /// Guards the answers: a failed query leaves its mount out without stalling it, and
    /// its thread is kept like the others.
    #[test]
    fn a_failed_query_is_left_out_and_its_thread_kept() {
        let mut q = SpaceQueries::new(failing_space, Duration::from_secs(5));
        let (spaces, stalled) = q.query(&[mount("/a"), mount("/broken"), mount("/b")]);
        assert_eq!(spaces.len(), 2);
        assert_eq!(
            spaces.get("/a"),
            Some(&fixtures::fake_space(Path::new("/a")).expect("space"))
        );
        assert!(!spaces.contains_key("/broken"));
        assert!(stalled.is_empty());
        assert_eq!(q.idle_threads(), 3);
        q.query(&[mount("/a")]);
        assert_eq!(q.idle_threads(), 3, "reused, not a fourth thread");
    }

    /// Guards the bound on kept threads: one mount past `IDLE_WORKERS` answers as well, but
    /// only `IDLE_WORKERS` threads stay for the next collect.
    #[test]
    fn at_most_idle_workers_threads_are_kept() {
        let mounts: Vec<_> = (0..=IDLE_WORKERS)
            .map(|i| mount(&format!("/m{i}")))
            .collect();
        let mut q = SpaceQueries::new(fixtures::fake_space, Duration::from_secs(5));
        let (spaces, stalled) = q.query(&mounts);
        assert_eq!(spaces.len(), IDLE_WORKERS + 1);
        assert!(stalled.is_empty());
        assert_eq!(q.idle_threads(), IDLE_WORKERS);
    }

    static HANG: AtomicBool = AtomicBool::new(true);
    static HANG_CALLS: AtomicUsize = AtomicUsize::new(0);
    static RELEASE: (Mutex<()>, Condvar) = (Mutex::new(()), Condvar::new());

    /// Like a dead NFS server: the query of `/mnt/nfs` blocks while `HANG` is set.
    fn hanging_space(path: &Path) -> Result<Space, String> {
        if path == Path::new("/mnt/nfs") {
            HANG_CALLS.fetch_add(1, Ordering::SeqCst);
            let (lock, cv) = &RELEASE;
            let mut guard = lock.lock().map_err(|e| e.to_string())?;
            while HANG.load(Ordering::SeqCst) {
                guard = cv.wait(guard).map_err(|e| e.to_string())?;
            }
        }
        fixtures::fake_space(path)
    }

    /// Guards the bounded space query: a hanging mount does not hang the collect, is
    /// reported as not responding, is not asked again while stuck, and is back once it answers.
    #[test]
    fn a_hanging_mount_is_skipped_until_it_answers() {
        let mut c = DiskCollector::with_stat(
            Config {
                statfs_timeout: Duration::from_millis(200),
                ..fixtures::config(Path::new(fixtures::PROC))
            },
            hanging_space,
        )
        .expect("new");
        let first = c.collect().expect("collect");
        assert_eq!(first.disks.len(), 5, "every other mount is still reported");
        assert_eq!(first.not_responding.len(), 1);
        assert_eq!(first.not_responding[0].mount_point, "/mnt/nfs");
        assert_eq!(first.not_responding[0].device, "fileserver:/export/home");

        let second = c.collect().expect("collect");
        assert_eq!(second.not_responding.len(), 1);
        assert_eq!(
            HANG_CALLS.load(Ordering::SeqCst),
            1,
            "not asked again while stuck"
        );
        assert_eq!(
            c.space_threads_idle(),
            5,
            "the stuck thread is given no other query"
        );

        HANG.store(false, Ordering::SeqCst);
        RELEASE.1.notify_all();
        let start = Instant::now();
        loop {
            let s = c.collect().expect("collect");
            if s.disks.iter().any(|d| d.mount_point == "/mnt/nfs") {
                assert!(s.not_responding.is_empty());
                break;
            }
            assert!(start.elapsed() < Duration::from_secs(20), "never came back");
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}
