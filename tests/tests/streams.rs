//! End to end: event streams on the wire (keep-alive comments, clients that never read) and request bodies without a length.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use serde_json::Value;
use vitals_e2e::{rss_bytes, Host, SseReader};

/// The `host:port` of a host's base URL.
fn addr(host: &Host) -> String {
    host.base.trim_start_matches("http://").to_owned()
}

/// What a raw stream reader saw, line by line.
enum Line {
    /// A comment line (`:` …): a keep-alive or a note.
    Comment,
    /// The `data:` line of an event.
    Data,
}

/// Opens `/admin/monitor/stream` and reports its comment and data lines on a channel, from a
/// thread of its own (the response body is read decoded, as a browser would).
fn raw_stream(base: &str) -> mpsc::Receiver<Line> {
    let resp = reqwest::blocking::Client::builder()
        .timeout(None)
        .build()
        .expect("client")
        .get(format!("{base}/admin/monitor/stream"))
        .header("accept", "text/event-stream")
        .send()
        .expect("open stream");
    assert_eq!(resp.status().as_u16(), 200);
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(resp).lines() {
            let Ok(line) = line else { break };
            let kind = if line.starts_with(':') {
                Line::Comment
            } else if line.starts_with("data:") {
                Line::Data
            } else {
                continue;
            };
            if tx.send(kind).is_err() {
                break;
            }
        }
    });
    rx
}

/// Guards keep-alive comments: a stream with nothing new to send gets a comment line at the
/// configured `server.keep_alive` (1 s here) and no event.
#[test]
fn an_idle_stream_gets_keep_alive_comments() {
    // One collector that collects once and then not for an hour: the stream goes idle.
    let host =
        Host::start("[server]\nkeep_alive = \"1s\"\n\n[collectors.memory]\ninterval = \"1h\"\n");
    host.wait_for("the one collect", Duration::from_secs(20), |s| {
        s["collectors"]["memory"]["state"] == "ok"
    });
    let lines = raw_stream(&host.base);
    let first = lines
        .recv_timeout(Duration::from_secs(10))
        .expect("the first event");
    assert!(matches!(first, Line::Data), "the current snapshot first");
    // Three keep-alives take 3 s at the configured 1 s; 30 s is a liveness bound, and still
    // short of the 45 s three would take at the 15 s default (a setting ignored).
    let deadline = Instant::now() + Duration::from_secs(30);
    let (mut comments, mut events) = (0, 0);
    while comments < 3 {
        let left = deadline
            .checked_duration_since(Instant::now())
            .unwrap_or_default();
        match lines.recv_timeout(left) {
            Ok(Line::Comment) => comments += 1,
            Ok(Line::Data) => events += 1,
            Err(_) => panic!(
                "{comments} keep-alive comments in 30 s on an idle stream with keep_alive = 1s\nhost log:\n{}",
                host.log()
            ),
        }
    }
    assert_eq!(events, 0, "the stream was idle: nothing changed");
}

/// Sends raw HTTP/1.1 bytes and returns the status code and the body after the headers.
fn raw_request(addr: &str, bytes: &[u8]) -> (u16, String) {
    let mut s = TcpStream::connect(addr).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    s.write_all(bytes).expect("send");
    let mut text = String::new();
    let _ = s.read_to_string(&mut text);
    let status = text
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or_else(|| panic!("no status line in {text:?}"));
    let body = text
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_owned())
        .unwrap_or_default();
    (status, body)
}

/// Guards 411: a body sent without `Content-Length` (chunked) to a route that takes a body is
/// refused with a JSON `length_required` error, counted, and the host goes on.
#[test]
fn a_body_without_a_length_gets_411() {
    let host = Host::start("[collectors.memory]\n");
    let body = "{\"token\": \"x\"}";
    let request = format!(
        "POST /admin/monitor/login HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n{:x}\r\n{body}\r\n0\r\n\r\n",
        body.len()
    );
    let (status, answer) = raw_request(&addr(&host), request.as_bytes());
    assert_eq!(status, 411, "{answer}");
    // The body may itself be chunked: the JSON sits between the chunk-size lines.
    let json = answer
        .find('{')
        .and_then(|i| answer.rfind('}').map(|j| &answer[i..=j]))
        .unwrap_or_else(|| panic!("no JSON in {answer:?}"));
    let v: Value = serde_json::from_str(json).unwrap_or_else(|e| panic!("{e}: {json}"));
    assert_eq!(v["error"], "length_required", "{v}");

    // The same body with its length is an ordinary (refused) login.
    let request = format!(
        "POST /admin/monitor/login HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    let (status, answer) = raw_request(&addr(&host), request.as_bytes());
    assert_ne!(status, 411, "{answer}");
    let m = host.get_ok("/admin/monitor/metrics");
    let login = &m["requests"]["routes"]["POST /admin/monitor/login"];
    assert!(
        login["status_classes"]["4xx"].as_u64().unwrap_or(0) >= 1,
        "the 411 is counted: {m:#}"
    );
}

/// Guards that the host never buffers for a slow client: 50 clients that open the full
/// snapshot stream and never read stay open while 300 updates of a ~50 KB snapshot go out
/// (the top 200 processes by CPU and by memory, every 200 ms); the host's memory stays
/// bounded and the clients that do read keep receiving the newest state.
///
/// What the bound separates: the kernel takes the first ~5 MB for each stuck socket (its
/// send buffer grows to 4 MB; not the host's RSS), about 90 updates' worth; after that each
/// stuck stream holds one pending event and the HTTP layer's write buffer, about 0.5 MB, so
/// 50 of them grow the RSS by ~26 MiB (measured), under the 64 MiB allowed. Queueing every
/// update per client instead grows it by 50 × ~210 × 50 KB ≈ 500 MB over the remaining
/// updates (measured with such a queue: +12 MB/s once the kernel's buffers are full).
#[test]
fn fifty_clients_that_never_read_do_not_make_the_host_buffer() {
    let host = Host::start(
        "[server]\nmax_streams = 100\n\n[collectors.memory]\ninterval = \"100ms\"\n\n[collectors.process]\ninterval = \"200ms\"\n\n[collectors.process.config]\ntop = 200\n",
    );
    host.wait_for("a few process collects", Duration::from_secs(30), |s| {
        s["collectors"]["process"]["collects_total"]
            .as_u64()
            .unwrap_or(0)
            >= 3
    });
    let snapshot_bytes = reqwest::blocking::get(format!("{}/admin/monitor/system", host.base))
        .and_then(|r| r.bytes())
        .map_or(0, |b| b.len());
    assert!(
        snapshot_bytes > 30_000,
        "the snapshot is large enough to show buffering: {snapshot_bytes} bytes"
    );
    let readers: Vec<SseReader> = (0..3)
        .map(|_| SseReader::open(&host.base, "/admin/monitor/stream", &[]))
        .collect();
    for r in &readers {
        assert!(r.next_data(Duration::from_secs(10)).is_some());
    }
    std::thread::sleep(Duration::from_secs(1));
    let rss_before = rss_bytes(host.pid());

    let request =
        "GET /admin/monitor/stream HTTP/1.1\r\nHost: 127.0.0.1\r\nAccept: text/event-stream\r\n\r\n";
    let stuck: Vec<TcpStream> = (0..50)
        .map(|_| {
            let mut s = TcpStream::connect(addr(&host)).expect("connect");
            s.write_all(request.as_bytes()).expect("send");
            s
        })
        .collect();

    // Counted in updates, not seconds: 300 updates reach the reading clients however slow
    // the machine is (the cap is liveness only).
    let mut last_ids = vec![0u64; readers.len()];
    let mut updates = 0;
    let mut peak = rss_before;
    let start = Instant::now();
    while updates < 300 {
        for (r, last) in readers.iter().zip(last_ids.iter_mut()) {
            let ev = r.next_data(Duration::from_secs(20)).unwrap_or_else(|| {
                panic!(
                    "a reading client got no update for 20 s beside 50 stuck ones\nhost log:\n{}",
                    host.log()
                )
            });
            let id: u64 = ev.id.as_deref().unwrap_or("0").parse().expect("id");
            assert!(id > *last, "ids grow: {last} then {id}");
            *last = id;
        }
        updates += 1;
        peak = peak.max(rss_bytes(host.pid()));
        assert!(
            start.elapsed() < Duration::from_secs(600),
            "only {updates} updates in 600 s"
        );
    }
    let growth = peak.saturating_sub(rss_before);
    eprintln!(
        "RSS {} -> peak {} KiB over {updates} updates of {snapshot_bytes} bytes with 50 stuck clients",
        rss_before >> 10,
        peak >> 10
    );
    assert!(
        growth < 64 << 20,
        "RSS grew by {} MiB ({} -> {} MiB) with 50 clients that never read, over {updates} updates of {snapshot_bytes} bytes",
        growth >> 20,
        rss_before >> 20,
        peak >> 20
    );
    let health = host.get_ok("/admin/monitor/health");
    assert_eq!(
        health["components"]["http"]["details"]["streams_open"], 53,
        "the stuck streams were still open, not dropped: {health}"
    );
    drop(stuck);
}
