//! An in-process HTTP/1.1 load generator (tokio + hyper) for loopback endpoints: latency, throughput, probes.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _};
use bytes::Bytes;
use hdrhistogram::Histogram;
use http_body_util::{BodyExt as _, Empty};
use hyper::client::conn::http1::SendRequest;
use hyper::Request;
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

/// How long one request may take before it counts as failed.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// The most requests one connection makes, whatever the window (a bound on every loop).
const MAX_REQUESTS_PER_CONNECTION: u64 = 50_000_000;

/// Where requests go: a loopback address and a path.
#[derive(Debug, Clone)]
pub struct Target {
    /// The server's address (always loopback).
    pub addr: SocketAddr,
    /// The request path with its query.
    pub path: String,
}

impl Target {
    /// Parses `http://127.0.0.1:PORT/path`; anything but a loopback `http` URL is refused.
    ///
    /// # Errors
    /// When the URL is not `http`, has no port, or its host is not loopback.
    pub fn parse(url: &str) -> anyhow::Result<Target> {
        let uri: hyper::Uri = url.parse().with_context(|| format!("bad URL `{url}`"))?;
        if uri.scheme_str() != Some("http") {
            bail!("`{url}`: only http:// URLs are measured");
        }
        let host = uri.host().unwrap_or_default();
        let ip: std::net::IpAddr = match host {
            "localhost" => [127, 0, 0, 1].into(),
            h => h
                .trim_matches(|c| c == '[' || c == ']')
                .parse()
                .with_context(|| format!("`{url}`: the host must be a loopback IP"))?,
        };
        if !ip.is_loopback() {
            bail!("`{url}`: the bench only sends traffic to loopback addresses");
        }
        let port = uri
            .port_u16()
            .with_context(|| format!("`{url}`: no port"))?;
        let path = uri
            .path_and_query()
            .map_or_else(|| "/".to_owned(), |p| p.as_str().to_owned());
        Ok(Target {
            addr: SocketAddr::new(ip, port),
            path,
        })
    }
}

/// What a run of requests measured.
pub struct Tally {
    /// Latency of each answered request, in microseconds.
    pub hist: Histogram<u64>,
    /// Requests answered with a 2xx status.
    pub ok: u64,
    /// Requests answered with another status.
    pub non_2xx: u64,
    /// Requests that failed (connect, I/O, timeout).
    pub failed: u64,
    /// Response body bytes received.
    pub body_bytes: u64,
    /// Wall time of the run.
    pub elapsed: Duration,
    /// The first failure or unexpected status, to say what went wrong.
    pub first_error: Option<String>,
}

impl Tally {
    fn new() -> Tally {
        Tally {
            hist: new_histogram(),
            ok: 0,
            non_2xx: 0,
            failed: 0,
            body_bytes: 0,
            elapsed: Duration::ZERO,
            first_error: None,
        }
    }

    fn merge(&mut self, other: &Tally) {
        let _ = self.hist.add(&other.hist);
        self.ok += other.ok;
        self.non_2xx += other.non_2xx;
        self.failed += other.failed;
        self.body_bytes += other.body_bytes;
        if self.first_error.is_none() {
            self.first_error.clone_from(&other.first_error);
        }
    }

    /// Failed requests plus answers that were not 2xx.
    pub fn errors(&self) -> u64 {
        self.failed + self.non_2xx
    }

    /// ` (first: …)` when something failed, else nothing.
    pub fn error_note(&self) -> String {
        self.first_error
            .as_deref()
            .map_or_else(String::new, |e| format!(" (first: {e})"))
    }

    /// Answered requests (any status).
    pub fn answered(&self) -> u64 {
        self.ok + self.non_2xx
    }

    /// A latency quantile in milliseconds (NaN when nothing was answered).
    pub fn quantile_ms(&self, q: f64) -> f64 {
        if self.hist.is_empty() {
            return f64::NAN;
        }
        self.hist.value_at_quantile(q) as f64 / 1000.0
    }

    /// The largest latency in milliseconds.
    pub fn max_ms(&self) -> f64 {
        self.hist.max() as f64 / 1000.0
    }

    /// Answered requests per second over the run.
    pub fn per_second(&self) -> f64 {
        self.answered() as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }

    /// Mean body size in bytes.
    pub fn mean_body_bytes(&self) -> f64 {
        self.body_bytes as f64 / self.answered().max(1) as f64
    }
}

fn new_histogram() -> Histogram<u64> {
    // 1 µs to 60 s at three significant digits; the bounds are constants, so this cannot fail.
    Histogram::new_with_bounds(1, 60_000_000, 3).unwrap_or_else(|_| {
        Histogram::new(3).unwrap_or_else(|_| unreachable!("3 significant digits are valid"))
    })
}

async fn connect(target: &Target) -> anyhow::Result<SendRequest<Empty<Bytes>>> {
    let stream = tokio::time::timeout(REQUEST_TIMEOUT, TcpStream::connect(target.addr))
        .await
        .context("connect timed out")??;
    stream.set_nodelay(true)?;
    let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
    tokio::spawn(async move {
        let _ = conn.await;
    });
    Ok(sender)
}

async fn one_request(
    sender: &mut SendRequest<Empty<Bytes>>,
    target: &Target,
) -> anyhow::Result<(u16, Bytes)> {
    sender.ready().await?;
    let req = Request::get(target.path.as_str())
        .header(hyper::header::HOST, target.addr.to_string())
        .body(Empty::<Bytes>::new())?;
    let resp = sender.send_request(req).await?;
    let status = resp.status().as_u16();
    let body = resp.into_body().collect().await?.to_bytes();
    Ok((status, body))
}

/// One connection making requests back to back (with `pause` between) until `until`.
async fn connection_loop(target: Arc<Target>, until: Instant, pause: Option<Duration>) -> Tally {
    let mut tally = Tally::new();
    let mut sender = None;
    let mut made = 0u64;
    while Instant::now() < until && made < MAX_REQUESTS_PER_CONNECTION {
        made += 1;
        let s = match sender.as_mut() {
            Some(s) => s,
            None => match connect(&target).await {
                Ok(s) => sender.insert(s),
                Err(e) => {
                    tally.failed += 1;
                    tally
                        .first_error
                        .get_or_insert_with(|| format!("connect: {e:#}"));
                    tokio::time::sleep(Duration::from_millis(20)).await;
                    continue;
                }
            },
        };
        let t = Instant::now();
        match tokio::time::timeout(REQUEST_TIMEOUT, one_request(s, &target)).await {
            Ok(Ok((status, body))) => {
                let us = t.elapsed().as_micros().clamp(1, 60_000_000) as u64;
                let _ = tally.hist.record(us);
                tally.body_bytes += body.len() as u64;
                if (200..300).contains(&status) {
                    tally.ok += 1;
                } else {
                    tally.non_2xx += 1;
                    tally
                        .first_error
                        .get_or_insert_with(|| format!("status {status}"));
                }
            }
            Ok(Err(e)) => {
                tally.failed += 1;
                tally.first_error.get_or_insert_with(|| format!("{e:#}"));
                sender = None;
            }
            Err(_) => {
                tally.failed += 1;
                tally.first_error.get_or_insert_with(|| {
                    format!("no answer within {} s", REQUEST_TIMEOUT.as_secs())
                });
                sender = None;
            }
        }
        if let Some(p) = pause {
            tokio::time::sleep(p).await;
        }
    }
    tally
}

/// Runs `connections` connections against `target` for `window`, each back to back
/// (or with `pause` between requests), and merges what they measured.
pub async fn run(
    target: &Target,
    connections: usize,
    window: Duration,
    pause: Option<Duration>,
) -> Tally {
    let target = Arc::new(target.clone());
    let start = Instant::now();
    let until = start + window;
    let tasks: Vec<_> = (0..connections)
        .map(|_| tokio::spawn(connection_loop(target.clone(), until, pause)))
        .collect();
    let mut total = Tally::new();
    for t in tasks {
        if let Ok(tally) = t.await {
            total.merge(&tally);
        } else {
            total.failed += 1;
        }
    }
    total.elapsed = start.elapsed();
    total
}

/// One GET; the status and body, for reading JSON from a server under test.
///
/// # Errors
/// When the connection or request fails or times out.
pub async fn get(target: &Target) -> anyhow::Result<(u16, Bytes)> {
    let mut sender = connect(target).await?;
    tokio::time::timeout(REQUEST_TIMEOUT, one_request(&mut sender, target))
        .await
        .with_context(|| format!("GET {} timed out", target.path))?
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Guards the loopback-only rule and URL parsing.
    #[test]
    fn only_loopback_http_urls_are_accepted() {
        let t = Target::parse("http://127.0.0.1:9100/metrics").expect("loopback");
        assert_eq!(t.addr.port(), 9100);
        assert_eq!(t.path, "/metrics");
        assert_eq!(
            Target::parse("http://localhost:61208/api/4/all")
                .expect("localhost")
                .path,
            "/api/4/all"
        );
        let err = Target::parse("http://10.0.0.1:80/").expect_err("remote");
        assert!(err.to_string().contains("loopback"), "{err}");
        assert!(Target::parse("https://127.0.0.1:1/").is_err());
        assert!(Target::parse("http://127.0.0.1/").is_err());
        assert!(Target::parse("not a url at all").is_err());
    }

    /// Guards the counting: a real local server answers, a closed port counts as failures.
    #[tokio::test]
    async fn counts_answers_and_failures() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        tokio::spawn(async move {
            use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
            while let Ok((mut s, _)) = listener.accept().await {
                tokio::spawn(async move {
                    let mut buf = vec![0u8; 4096];
                    while let Ok(n) = s.read(&mut buf).await {
                        if n == 0 {
                            break;
                        }
                        let reply = b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok";
                        if s.write_all(reply).await.is_err() {
                            break;
                        }
                    }
                });
            }
        });
        let target = Target::parse(&format!("http://{addr}/x")).expect("url");
        let tally = run(&target, 2, Duration::from_millis(200), None).await;
        assert!(tally.ok > 0);
        assert_eq!(tally.failed, 0);
        assert_eq!(tally.body_bytes, tally.ok * 2);

        let closed = Target::parse("http://127.0.0.1:1/").expect("url");
        let tally = run(&closed, 1, Duration::from_millis(100), None).await;
        assert_eq!(tally.ok, 0);
        assert!(tally.failed > 0);
    }
}
