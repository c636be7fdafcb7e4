//! The in-process worker: a thread of its own per collector, so a plugin that hangs holds one thread at most.

use std::sync::mpsc;
use std::time::Duration;

use tokio::sync::oneshot;
use vitals_plugin_api::abi::{CollectorBox, HostLog};
use vitals_plugin_api::PluginModuleRef;

use super::{run_job, Job, Outcome, Reply};

/// The host's side of one in-process collector.
pub struct ThreadWorker {
    sender: mpsc::Sender<(Job, oneshot::Sender<Reply>)>,
    /// The reply of a call that overran its deadline and has not come back yet.
    pending: Option<oneshot::Receiver<Reply>>,
}

impl ThreadWorker {
    /// Starts the thread `collector-{name}` that runs calls into `module`, logging through `log`.
    ///
    /// # Errors
    /// When the thread cannot be started.
    pub fn spawn(name: &str, module: PluginModuleRef, log: HostLog) -> std::io::Result<Self> {
        let (sender, rx) = mpsc::channel::<(Job, oneshot::Sender<Reply>)>();
        std::thread::Builder::new()
            .name(format!("collector-{name}"))
            .spawn(move || {
                let mut collector: Option<CollectorBox> = None;
                while let Ok((job, reply)) = rx.recv() {
                    let _ = reply.send(run_job(module, log, &mut collector, job));
                }
            })?;
        Ok(Self {
            sender,
            pending: None,
        })
    }

    /// Sends `job` and waits at most `deadline`; a call that overruns is left to finish on
    /// the thread, and [`ThreadWorker::stuck`] says when it has.
    pub async fn call(&mut self, job: Job, deadline: Duration) -> Outcome {
        const GONE: &str = "the collector thread ended";
        let (tx, mut rx) = oneshot::channel();
        if self.sender.send((job, tx)).is_err() {
            return Outcome::Gone(GONE.to_owned());
        }
        match tokio::time::timeout(deadline, &mut rx).await {
            Ok(Ok(reply)) => Outcome::Done(reply),
            Ok(Err(_)) => Outcome::Gone(GONE.to_owned()),
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
