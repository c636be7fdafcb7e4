//! The HTTP connection loop: header-read and idle timeouts, a cap on open connections (in all and per client address) that keeps descriptors in reserve for the collectors, health answering past the cap, and a bounded graceful shutdown.

use std::collections::HashMap;
use std::convert::Infallible;
use std::future::Future;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinSet;
use warp::http::{header, Request, StatusCode};
use warp::reply::Response;
use warp::Filter;

/// The peer address of a connection, put into each request's extensions.
#[derive(Debug, Clone, Copy)]
pub struct Peer(pub SocketAddr);

/// How the connection loop bounds its clients.
#[derive(Debug, Clone)]
pub struct Limits {
    /// A request head must arrive within this long, and an idle keep-alive connection closes after it.
    pub header_read_timeout: Duration,
    /// A connection with no bytes read or written for this long is closed (partial bodies, stalled readers).
    pub idle_timeout: Duration,
    /// The most connections served at once (lowered to fit the open-file limit).
    pub max_connections: usize,
    /// The most connections served at once for one client address.
    pub max_connections_per_client: usize,
    /// Descriptors kept free for the collectors: the cap is lowered so these stay unused.
    pub fd_reserve: usize,
    /// After a shutdown request, open connections get this long to finish, then are closed.
    pub shutdown_timeout: Duration,
}

/// Connections past the cap that are still read, so health can answer: a short deadline each.
const OVERFLOW_SLOTS: usize = 16;
/// How long a connection past the cap may take for its one request.
const OVERFLOW_DEADLINE: Duration = Duration::from_secs(2);
/// The largest request head read (hyper's smallest read buffer is 8 KiB).
const MAX_BUF: usize = 64 * 1024;
/// The paths served past the cap.
const HEALTH_PATHS: &[&str] = &["/admin/monitor/health"];

/// The soft open-file limit of this process.
fn open_file_limit() -> Option<usize> {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit only writes the struct it is given.
    let rc = unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) };
    (rc == 0 && lim.rlim_cur != libc::RLIM_INFINITY).then_some(lim.rlim_cur as usize)
}

/// The descriptors this process has open now.
fn open_fds() -> usize {
    std::fs::read_dir("/proc/self/fd").map_or(0, |d| d.count())
}

/// Connections admitted under the cap; the count drops when a slot is dropped.
#[derive(Default)]
struct Live(std::sync::atomic::AtomicUsize);

/// One admitted connection.
struct LiveSlot(Arc<Live>);

impl Live {
    fn try_add(self: &Arc<Self>, max: usize) -> Option<LiveSlot> {
        self.0
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < max).then_some(n + 1)
            })
            .ok()
            .map(|_| LiveSlot(self.clone()))
    }
    fn get(&self) -> usize {
        self.0.load(Ordering::Acquire)
    }
}

impl Drop for LiveSlot {
    fn drop(&mut self) {
        (self.0).0.fetch_sub(1, Ordering::AcqRel);
    }
}

/// The connections the open-file limit allows now: the limit less the reserve, the overflow
/// slots and every descriptor not held by a connection (collectors, files, the listener).
fn fd_budget(limits: &Limits, live: usize) -> usize {
    open_file_limit().map_or(usize::MAX, |lim| {
        let others = open_fds().saturating_sub(live);
        lim.saturating_sub(others + limits.fd_reserve + OVERFLOW_SLOTS)
    })
}

/// Counts connections per client address.
#[derive(Default)]
struct PerClient(Mutex<HashMap<IpAddr, usize>>);

impl PerClient {
    /// Counts one more connection of `ip`; `None` past `max`. Loopback clients share the
    /// global cap only: a local reverse proxy speaks for every remote client.
    fn try_add(self: &Arc<Self>, ip: IpAddr, max: usize) -> Option<ClientSlot> {
        if ip.is_loopback() {
            return Some(ClientSlot(self.clone(), None));
        }
        let mut m = self.0.lock().unwrap_or_else(|p| p.into_inner());
        let n = m.entry(ip).or_insert(0);
        if *n >= max {
            return None;
        }
        *n += 1;
        Some(ClientSlot(self.clone(), Some(ip)))
    }
}

/// One counted connection of a client (not counted for loopback); uncounted when dropped.
struct ClientSlot(Arc<PerClient>, Option<IpAddr>);

impl Drop for ClientSlot {
    fn drop(&mut self) {
        let Some(ip) = self.1 else { return };
        let mut m = (self.0).0.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(n) = m.get_mut(&ip) {
            *n -= 1;
            if *n == 0 {
                m.remove(&ip);
            }
        }
    }
}

/// A socket that records when it last read or wrote.
struct Tracked {
    inner: TcpStream,
    start: Instant,
    last: Arc<AtomicU64>,
}

impl Tracked {
    fn touch(&self) {
        self.last
            .store(self.start.elapsed().as_millis() as u64, Ordering::Relaxed);
    }
}

impl AsyncRead for Tracked {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let r = Pin::new(&mut self.inner).poll_read(cx, buf);
        if matches!(r, Poll::Ready(Ok(()))) && buf.filled().len() > before {
            self.touch();
        }
        r
    }
}

impl AsyncWrite for Tracked {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let r = Pin::new(&mut self.inner).poll_write(cx, buf);
        if matches!(r, Poll::Ready(Ok(n)) if n > 0) {
            self.touch();
        }
        r
    }
    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }
    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let r = Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        if matches!(r, Poll::Ready(Ok(n)) if n > 0) {
            self.touch();
        }
        r
    }
    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}

/// The answer past the cap for anything but health.
fn busy() -> Response {
    let mut resp = super::json(
        StatusCode::SERVICE_UNAVAILABLE,
        &super::ApiError {
            status: 503,
            error: "too_many_connections",
            message: "the host serves as many connections as it may; retry later".into(),
        },
    );
    resp.headers_mut()
        .insert(header::RETRY_AFTER, header::HeaderValue::from_static("1"));
    resp
}

/// Serves `routes` on `listener` until `shutdown` resolves, then gives open connections
/// [`Limits::shutdown_timeout`] to finish and closes the rest.
pub async fn serve<F>(
    listener: TcpListener,
    routes: F,
    limits: Limits,
    shutdown: impl Future<Output = ()> + Send + 'static,
) where
    F: Filter<Extract = (Response,), Error = Infallible> + Clone + Send + Sync + 'static,
{
    let live = Arc::new(Live::default());
    // The descriptor budget follows what the rest of the process holds. It is re-read when a
    // connection arrives and the last reading is older than a second: an idle host never
    // lists its descriptors (with the process collector's kept-open files that listing is
    // hundreds of entries), a flood of connections lists them at most once a second.
    let mut budget = fd_budget(&limits, 0);
    let mut budget_read = Instant::now();
    tracing::info!(
        max_connections = limits.max_connections.min(budget),
        per_client = limits.max_connections_per_client,
        "serving HTTP"
    );
    // Connections past the cap, oldest first: a new one closes the oldest, so a client that
    // sends its request at once (a health check) is read even while others hold every slot.
    let mut overflow: std::collections::VecDeque<tokio::task::AbortHandle> =
        std::collections::VecDeque::with_capacity(OVERFLOW_SLOTS);
    let clients = Arc::new(PerClient::default());
    let (stop_tx, stop_rx) = watch::channel(false);
    let mut conns = JoinSet::new();
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        let (stream, peer) = tokio::select! {
            () = &mut shutdown => break,
            Some(_) = conns.join_next(), if !conns.is_empty() => continue,
            r = listener.accept() => match r {
                Ok(pair) => pair,
                Err(e) => {
                    // Out of descriptors (or a transient error): wait for some to close.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
        };
        let _ = stream.set_nodelay(true);
        if budget_read.elapsed() >= Duration::from_secs(1) {
            budget = fd_budget(&limits, live.get());
            budget_read = Instant::now();
        }
        let cap = limits.max_connections.min(budget);
        let full = live.try_add(cap).and_then(|permit| {
            clients
                .try_add(peer.ip(), limits.max_connections_per_client)
                .map(|slot| (permit, slot))
        });
        let routes = routes.clone();
        let stop = stop_rx.clone();
        match full {
            Some(held) => {
                let limits = limits.clone();
                conns.spawn(async move {
                    let _held = held;
                    connection(stream, peer, routes, &limits, stop, false).await;
                });
            }
            None => {
                // Past the cap: read one request within a short deadline, answer health only.
                overflow.retain(|h| !h.is_finished());
                if overflow.len() >= OVERFLOW_SLOTS {
                    if let Some(oldest) = overflow.pop_front() {
                        oldest.abort();
                    }
                }
                let limits = Limits {
                    header_read_timeout: OVERFLOW_DEADLINE,
                    idle_timeout: OVERFLOW_DEADLINE,
                    ..limits.clone()
                };
                let handle = conns.spawn(async move {
                    let _ = tokio::time::timeout(
                        OVERFLOW_DEADLINE,
                        connection(stream, peer, routes, &limits, stop, true),
                    )
                    .await;
                });
                overflow.push_back(handle);
            }
        }
    }
    drop(listener);
    let _ = stop_tx.send(true);
    let open = conns.len();
    if open > 0 {
        tracing::info!(open, "waiting for open connections to finish");
    }
    let drained = tokio::time::timeout(limits.shutdown_timeout, async {
        while conns.join_next().await.is_some() {}
    })
    .await;
    if drained.is_err() {
        tracing::warn!(
            open = conns.len(),
            "closing connections still open after {:?}",
            limits.shutdown_timeout
        );
        conns.shutdown().await;
    }
}

/// Serves one connection until it ends, goes idle, or the server stops.
async fn connection<F>(
    stream: TcpStream,
    peer: SocketAddr,
    routes: F,
    limits: &Limits,
    mut stop: watch::Receiver<bool>,
    health_only: bool,
) where
    F: Filter<Extract = (Response,), Error = Infallible> + Clone + Send + Sync + 'static,
{
    let last = Arc::new(AtomicU64::new(0));
    let start = Instant::now();
    let io = Tracked {
        inner: stream,
        start,
        last: last.clone(),
    };
    let svc = warp::service(routes);
    let svc = hyper::service::service_fn(move |mut req: Request<hyper::body::Incoming>| {
        req.extensions_mut().insert(Peer(peer));
        let allowed = !health_only || HEALTH_PATHS.contains(&req.uri().path());
        let mut svc = svc.clone();
        async move {
            if allowed {
                tower_call(&mut svc, req).await
            } else {
                Ok(busy())
            }
        }
    });
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout)
        .max_buf_size(MAX_BUF)
        .keep_alive(!health_only);
    let conn = builder.serve_connection(TokioIo::new(io), svc);
    let mut conn = std::pin::pin!(conn);
    let idle = limits.idle_timeout;
    let idle_check = async {
        loop {
            let since = Duration::from_millis(last.load(Ordering::Relaxed));
            let quiet = start.elapsed().saturating_sub(since);
            if quiet >= idle {
                return;
            }
            tokio::time::sleep(idle - quiet).await;
        }
    };
    let mut idle_check = std::pin::pin!(idle_check);
    tokio::select! {
        r = conn.as_mut() => { if let Err(e) = r { tracing::debug!(%peer, error = %e, "connection ended"); } return; }
        () = &mut idle_check => { tracing::debug!(%peer, "closing an idle connection"); return; }
        _ = stop.wait_for(|s| *s) => {}
    }
    // Stopping: finish the request in progress (bounded by the caller), then close.
    conn.as_mut().graceful_shutdown();
    tokio::select! {
        _ = conn => {}
        () = idle_check => {}
    }
}

/// Calls warp's tower service for one request.
async fn tower_call<S>(
    svc: &mut S,
    req: Request<hyper::body::Incoming>,
) -> Result<S::Response, S::Error>
where
    S: tower_service::Service<Request<hyper::body::Incoming>>,
{
    std::future::poll_fn(|cx| svc.poll_ready(cx)).await?;
    svc.call(req).await
}
