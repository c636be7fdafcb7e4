//! The in-process worker: a thread of its own per collector, so a plugin that hangs holds one thread at most.

use std::collections::BTreeMap;
use std::sync::{mpsc, Mutex};
use std::time::Duration;

use tokio::sync::oneshot;
use vitals_plugin_api::abi::{CollectorBox, HostLog};
use vitals_plugin_api::PluginModuleRef;

use super::{run_job, Job, Outcome, Reply};

/// The most threads of one collector that may still be stuck in its plugin from earlier runs
/// (a collector restarted while a call hung leaves that call's thread behind): past it, no
/// new thread is started for the collector until one of them returns.
pub const MAX_ABANDONED_THREADS: usize = 3;

/// Threads alive per collector name, the current one and those left behind.
static LIVE: Mutex<BTreeMap<String, usize>> = Mutex::new(BTreeMap::new());

fn live() -> std::sync::MutexGuard<'static, BTreeMap<String, usize>> {
    LIVE.lock().unwrap_or_else(|p| p.into_inner())
}

/// Counts one live thread of a collector until dropped (when the thread ends).
struct Alive(String);

impl Alive {
    /// Counts a new thread for `name`, unless the threads left behind reach the bound.
    fn claim(name: &str) -> Result<Self, usize> {
        let mut live = live();
        let n = live.entry(name.to_owned()).or_insert(0);
        if *n > MAX_ABANDONED_THREADS {
            return Err(*n);
        }
        *n += 1;
        Ok(Self(name.to_owned()))
    }
}

impl Drop for Alive {
    fn drop(&mut self) {
        let mut live = live();
        if let Some(n) = live.get_mut(&self.0) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                live.remove(&self.0);
            }
        }
    }
}

/// Threads alive for collector `name`: its current one, if started, and any still stuck in
/// the plugin from earlier runs.
pub fn live_threads(name: &str) -> usize {
    live().get(name).copied().unwrap_or(0)
}

type Sender = mpsc::Sender<(Job, oneshot::Sender<Reply>)>;

/// The host's side of one in-process collector; its thread starts with the first call.
pub struct ThreadWorker {
    name: String,
    module: PluginModuleRef,
    log: HostLog,
    sender: Option<Sender>,
    /// The reply of a call that overran its deadline and has not come back yet.
    pending: Option<oneshot::Receiver<Reply>>,
}

impl ThreadWorker {
    /// A worker whose thread `collector-{name}` runs calls into `module`, logging through
    /// `log`; the thread starts with the first call (a thread that cannot start, or one too
    /// many left stuck by earlier runs, makes that call's outcome [`Outcome::Gone`]).
    pub fn new(name: &str, module: PluginModuleRef, log: HostLog) -> Self {
        Self {
            name: name.to_owned(),
            module,
            log,
            sender: None,
            pending: None,
        }
    }

    fn start(&mut self) -> Result<&Sender, String> {
        if self.sender.is_none() {
            let alive = Alive::claim(&self.name).map_err(|n| {
                format!(
                    "stuck: {n} threads of this collector are still stuck in the plugin from \
                     earlier runs (a call that never returned), and no more than \
                     {MAX_ABANDONED_THREADS} are left behind (MAX_ABANDONED_THREADS); none is \
                     started until one returns. Set isolation = \"process\" so that a hung \
                     call is killed instead"
                )
            })?;
            let (sender, rx) = mpsc::channel::<(Job, oneshot::Sender<Reply>)>();
            let (module, log) = (self.module, self.log);
            std::thread::Builder::new()
                .name(format!("collector-{}", self.name))
                .spawn(move || {
                    let _alive = alive;
                    let mut collector: Option<CollectorBox> = None;
                    while let Ok((job, reply)) = rx.recv() {
                        let _ = reply.send(run_job(module, log, &mut collector, job));
                    }
                })
                .map_err(|e| format!("cannot start the collector thread: {e}"))?;
            self.sender = Some(sender);
        }
        self.sender
            .as_ref()
            .ok_or_else(|| "the collector thread is not running".to_owned())
    }

    /// Sends `job` and waits at most `deadline`; a call that overruns is left to finish on
    /// the thread, and [`ThreadWorker::stuck`] says when it has.
    pub async fn call(&mut self, job: Job, deadline: Duration) -> Outcome {
        const GONE: &str = "the collector thread ended";
        let (tx, mut rx) = oneshot::channel();
        let sender = match self.start() {
            Ok(s) => s,
            Err(why) => return Outcome::Gone(why),
        };
        if sender.send((job, tx)).is_err() {
            self.sender = None;
            return Outcome::Gone(GONE.to_owned());
        }
        match tokio::time::timeout(deadline, &mut rx).await {
            Ok(Ok(reply)) => Outcome::Done(reply),
            Ok(Err(_)) => {
                self.sender = None;
                Outcome::Gone(GONE.to_owned())
            }
            Err(_) => {
                self.pending = Some(rx);
                Outcome::TimedOut
            }
        }
    }

    /// True while a call that overran its deadline is still running (its late reply, once
    /// it comes, is out of date and dropped).
    pub fn stuck(&mut self) -> bool {
        match self.pending.as_mut().map(oneshot::Receiver::try_recv) {
            Some(Err(oneshot::error::TryRecvError::Empty)) => true,
            _ => {
                self.pending = None;
                false
            }
        }
    }
}
