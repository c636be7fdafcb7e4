//! Many concurrent clients of the snapshot event stream, each checking that it saw every collect of every collector.
//!
//! A snapshot event carries each collector's `collects_total`. Events are coalesced (at
//! most one per 200 ms per stream) but a collector at a 1 s interval collects at most once
//! between two events, so a counter that jumps by more than one between two events a
//! client received is an update that client missed.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use http_body_util::{BodyExt as _, Empty};
use hyper::Request;
use hyper_util::rt::TokioIo;
use memchr::memmem;
use tokio::net::TcpStream;
use tokio::sync::watch;

use crate::load::Target;

/// The most bytes one client keeps of a partial event (a snapshot is tens of kB).
const MAX_EVENT_BYTES: usize = 16 << 20;

/// What one client saw.
#[derive(Debug, Default, Clone)]
pub struct ClientReport {
    /// Snapshot events received.
    pub events: u64,
    /// Collects skipped between two consecutive events (summed over collectors).
    pub missed: u64,
    /// The counters of the last event.
    pub last: Vec<u64>,
    /// Bytes received.
    pub bytes: u64,
    /// Why the stream ended early, if it did.
    pub error: Option<String>,
}

/// The `collects_total` of every collector, in the snapshot's (alphabetical) order.
///
/// The status map is the last top-level key of the snapshot, after every section, so the
/// search starts at its last `"collectors":{`.
pub fn parse_counters(event: &[u8]) -> Option<Vec<u64>> {
    let start = memmem::rfind(event, b"\"collectors\":{")?;
    let tail = &event[start..];
    let key = b"\"collects_total\":";
    let counters: Vec<u64> = memmem::find_iter(tail, key)
        .map(|i| {
            tail[i + key.len()..]
                .iter()
                .take_while(|b| b.is_ascii_digit())
                .fold(0u64, |n, b| {
                    n.saturating_mul(10).saturating_add(u64::from(b - b'0'))
                })
        })
        .collect();
    (!counters.is_empty()).then_some(counters)
}

impl ClientReport {
    fn see(&mut self, counters: Vec<u64>) {
        self.events += 1;
        if self.last.len() == counters.len() {
            for (prev, now) in self.last.iter().zip(&counters) {
                self.missed += now.saturating_sub(*prev).saturating_sub(1);
            }
        }
        self.last = counters;
    }

    /// True when this client's last event shows at least `fin` for every collector.
    pub fn caught_up(&self, fin: &[u64]) -> bool {
        self.last.len() == fin.len() && self.last.iter().zip(fin).all(|(a, b)| a >= b)
    }
}

async fn client(
    target: Arc<Target>,
    ready: Arc<AtomicUsize>,
    mut stop: watch::Receiver<bool>,
) -> ClientReport {
    let mut report = ClientReport::default();
    let result = async {
        let stream = TcpStream::connect(target.addr).await?;
        let (mut sender, conn) =
            hyper::client::conn::http1::handshake::<_, Empty<Bytes>>(TokioIo::new(stream)).await?;
        tokio::spawn(async move {
            let _ = conn.await;
        });
        let req = Request::get(target.path.as_str())
            .header(hyper::header::HOST, target.addr.to_string())
            .header(hyper::header::ACCEPT, "text/event-stream")
            .body(Empty::new())?;
        let resp = sender.send_request(req).await?;
        if resp.status() != 200 {
            anyhow::bail!("the stream answered {}", resp.status());
        }
        let mut body = resp.into_body();
        let mut buf = BytesMut::new();
        let mut searched = 0;
        loop {
            let frame = tokio::select! {
                f = body.frame() => f,
                _ = stop.changed() => return Ok(()),
            };
            let Some(frame) = frame else {
                anyhow::bail!("the server ended the stream");
            };
            let Ok(data) = frame?.into_data() else {
                continue;
            };
            report.bytes += data.len() as u64;
            buf.extend_from_slice(&data);
            while let Some(pos) = memmem::find(&buf[searched..], b"\n\n") {
                let event = buf.split_to(searched + pos + 2);
                searched = 0;
                if let Some(counters) = parse_counters(&event) {
                    if report.events == 0 {
                        ready.fetch_add(1, Ordering::AcqRel);
                    }
                    report.see(counters);
                }
            }
            searched = buf.len().saturating_sub(1);
            if buf.len() > MAX_EVENT_BYTES {
                anyhow::bail!("an event larger than {MAX_EVENT_BYTES} bytes");
            }
        }
    }
    .await;
    if let Err(e) = result {
        report.error = Some(e.to_string());
    }
    report
}

/// Clients connected to a stream; ended with [`FanOut::finish`].
pub struct FanOut {
    stop: watch::Sender<bool>,
    ready: Arc<AtomicUsize>,
    tasks: Vec<tokio::task::JoinHandle<ClientReport>>,
}

impl FanOut {
    /// Opens `n` streams of `target`, a few at a time so the listener's backlog keeps up.
    pub async fn open(target: &Target, n: usize) -> FanOut {
        let (stop, stop_rx) = watch::channel(false);
        let ready = Arc::new(AtomicUsize::new(0));
        let target = Arc::new(target.clone());
        let mut tasks = Vec::with_capacity(n);
        for i in 0..n {
            tasks.push(tokio::spawn(client(
                target.clone(),
                ready.clone(),
                stop_rx.clone(),
            )));
            if i % 50 == 49 {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
        FanOut { stop, ready, tasks }
    }

    /// Clients that have received their first snapshot.
    pub fn ready(&self) -> usize {
        self.ready.load(Ordering::Acquire)
    }

    /// Clients whose task already ended (an error: streams do not end by themselves).
    pub fn ended(&self) -> usize {
        self.tasks.iter().filter(|t| t.is_finished()).count()
    }

    /// Waits until every client has its first snapshot, at most `limit`; returns how many do.
    pub async fn wait_ready(&self, limit: Duration) -> usize {
        let until = tokio::time::Instant::now() + limit;
        while self.ready() + self.ended() < self.tasks.len() && tokio::time::Instant::now() < until
        {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        self.ready()
    }

    /// Stops every client and returns what each saw.
    pub async fn finish(self) -> Vec<ClientReport> {
        let _ = self.stop.send(true);
        let mut out = Vec::with_capacity(self.tasks.len());
        for t in self.tasks {
            out.push(t.await.unwrap_or_else(|e| ClientReport {
                error: Some(format!("client task failed: {e}")),
                ..ClientReport::default()
            }));
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Guards the counter extraction: only the status map counts, in order.
    #[test]
    fn counters_come_from_the_status_map() {
        let ev = br#"id: 7
event: snapshot
data: {"sections":{"x":{"collectors":{"collects_total":99}}},"collectors":{"a":{"state":"ok","collects_total":12,"errors_total":0},"b":{"collects_total":3}}}

"#;
        assert_eq!(parse_counters(ev), Some(vec![12, 3]));
        assert_eq!(parse_counters(b": keep-alive\n\n"), None);
        assert_eq!(parse_counters(b"data: {\"collectors\":{}}"), None);
    }

    /// Guards the miss count: a jump of more than one is a missed update, one is not.
    #[test]
    fn jumps_are_counted_as_missed_updates() {
        let mut r = ClientReport::default();
        r.see(vec![1, 10]);
        r.see(vec![2, 10]);
        r.see(vec![2, 11]);
        assert_eq!(r.missed, 0);
        r.see(vec![5, 12]);
        assert_eq!(r.missed, 2);
        assert_eq!(r.events, 4);
        assert!(r.caught_up(&[5, 12]));
        assert!(!r.caught_up(&[6, 12]));
    }
}
