//! The HTTP endpoint that Prometheus scrapes.
//!
//! One background thread answers requests one at a time from the latest
//! published snapshot. A snapshot is rendered in both formats when it is
//! published, so a scrape only copies bytes out and never waits on the code
//! that gathers the numbers.

use std::io::{self, Cursor};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, TcpListener};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread::JoinHandle;
use std::time::Duration;

use tiny_http::{Header, Method, Request, Response, StatusCode};

use super::expo::{self, Family, Format};
use super::{Error, Result};

/// How long `shutdown` waits for a response still being written to a stalled
/// client before it leaves the thread behind; a daemon stopping must not hang.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(2);

/// The page served at `/`, so a person who opens the address in a browser
/// learns where the metrics are.
const INDEX_PAGE: &str = "<!DOCTYPE html>\n<html><head><title>netledger</title></head>\n\
<body><h1>netledger</h1><p>Metrics are at <a href=\"/metrics\">/metrics</a>.</p></body></html>\n";

/// Both renderings of one published set of families.
struct Snapshot {
    text: String,
    openmetrics: String,
}

/// A response body. Metrics share the snapshot instead of copying it, so a
/// large flow table costs no allocation per scrape.
enum Body {
    Metrics(Arc<Snapshot>, Format),
    Fixed(&'static str),
}

impl AsRef<[u8]> for Body {
    fn as_ref(&self) -> &[u8] {
        match self {
            Body::Metrics(snapshot, Format::Text) => snapshot.text.as_bytes(),
            Body::Metrics(snapshot, Format::OpenMetrics) => snapshot.openmetrics.as_bytes(),
            Body::Fixed(text) => text.as_bytes(),
        }
    }
}

/// State shared between the owner and the serving thread.
struct Shared {
    /// Replaced whole by `publish`; a scrape clones the `Arc` and so always
    /// sees one complete snapshot.
    snapshot: Mutex<Arc<Snapshot>>,
    scrapes: AtomicU64,
    stop: AtomicBool,
}

impl Shared {
    fn current(&self) -> Arc<Snapshot> {
        // The lock only guards an Arc swap, which cannot leave it inconsistent.
        Arc::clone(&self.snapshot.lock().unwrap_or_else(PoisonError::into_inner))
    }
}

/// An HTTP server exposing the latest published metrics at `/metrics`.
///
/// * `GET`/`HEAD /metrics`: the snapshot, as OpenMetrics 1.0 when the
///   `Accept` header asks for it, otherwise as text format 0.0.4.
/// * `GET`/`HEAD /`: a short page linking to `/metrics`.
/// * any other path: 404; any other method on these paths: 405.
///
/// Until the first [`publish`](MetricsServer::publish) the endpoint serves an
/// empty set, which Prometheus accepts as a successful scrape.
///
/// The server stops when [`shutdown`](MetricsServer::shutdown) is called or
/// the value is dropped.
pub struct MetricsServer {
    addr: SocketAddr,
    shared: Arc<Shared>,
    http: Arc<tiny_http::Server>,
    thread: Option<JoinHandle<()>>,
    /// Disconnects when the serving thread ends, so shutdown can wait for it
    /// with a deadline.
    finished: Receiver<()>,
}

impl MetricsServer {
    /// Binds `addr` and starts answering requests on a background thread.
    ///
    /// Port 0 picks a free port; [`local_addr`](MetricsServer::local_addr)
    /// tells which. Binding failures come back as [`Error::AddressInUse`],
    /// [`Error::PermissionDenied`], [`Error::AddressNotAvailable`] or
    /// [`Error::Bind`].
    pub fn start(addr: SocketAddr) -> Result<MetricsServer> {
        let listener = TcpListener::bind(addr).map_err(|source| bind_error(addr, source))?;
        let local = listener
            .local_addr()
            .map_err(|source| Error::Bind { addr, source })?;
        let http = tiny_http::Server::from_listener(listener, None).map_err(|e| Error::Http {
            addr: local,
            message: e.to_string(),
        })?;
        let http = Arc::new(http);
        let shared = Arc::new(Shared {
            snapshot: Mutex::new(Arc::new(render_snapshot(&[]))),
            scrapes: AtomicU64::new(0),
            stop: AtomicBool::new(false),
        });
        let (done, finished) = mpsc::channel::<()>();
        let thread = {
            let http = Arc::clone(&http);
            let shared = Arc::clone(&shared);
            std::thread::Builder::new()
                .name("metrics-http".to_owned())
                .spawn(move || {
                    // Dropped when this closure returns, however it returns.
                    let _done = done;
                    serve(&http, &shared);
                })
                .map_err(|source| Error::Spawn { source })?
        };
        Ok(MetricsServer {
            addr: local,
            shared,
            http,
            thread: Some(thread),
            finished,
        })
    }

    /// The address actually listened on (with the chosen port if 0 was asked).
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// Makes `families` the set served from now on.
    ///
    /// The set is checked with [`expo::validate`] and rendered in both
    /// formats first; only then is it swapped in, in one step, so a scrape
    /// sees either the previous set or this one, never a mixture. On error
    /// the previous set stays published.
    pub fn publish(&self, families: &[Family]) -> Result<()> {
        expo::validate(families)?;
        let snapshot = Arc::new(render_snapshot(families));
        let mut current = self
            .shared
            .snapshot
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        // The old snapshot is freed here or by the last scrape still sending it.
        *current = snapshot;
        Ok(())
    }

    /// Number of `GET /metrics` requests answered since the start, for the
    /// caller to report as its own metric or in its logs.
    pub fn scrapes_served(&self) -> u64 {
        self.shared.scrapes.load(Ordering::Relaxed)
    }

    /// Whether the serving thread is still running. It only ends early if the
    /// HTTP library stops accepting connections (e.g. the process ran out of
    /// file descriptors); a caller may then restart the server.
    pub fn is_running(&self) -> bool {
        self.thread.as_ref().is_some_and(|t| !t.is_finished())
    }

    /// Stops answering, releases the port and waits for the serving thread.
    ///
    /// A response still being written to a client that does not read is
    /// given a short grace period, after which the thread is left to finish
    /// on its own so that stopping never hangs.
    pub fn shutdown(mut self) {
        self.stop();
    }

    fn stop(&mut self) {
        let Some(thread) = self.thread.take() else {
            return;
        };
        self.shared.stop.store(true, Ordering::Release);
        // Wakes the thread if it waits for a request.
        self.http.unblock();
        match self.finished.recv_timeout(SHUTDOWN_GRACE) {
            Err(RecvTimeoutError::Timeout) => {} // stalled client: leave the thread
            Ok(()) | Err(RecvTimeoutError::Disconnected) => {
                // A panic in the thread has already been reported on stderr.
                let _ = thread.join();
            }
        }
    }
}

impl Drop for MetricsServer {
    fn drop(&mut self) {
        self.stop();
    }
}

impl std::fmt::Debug for MetricsServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MetricsServer")
            .field("addr", &self.addr)
            .field("scrapes_served", &self.scrapes_served())
            .finish_non_exhaustive()
    }
}

fn render_snapshot(families: &[Family]) -> Snapshot {
    Snapshot {
        text: expo::render_unchecked(families, Format::Text),
        openmetrics: expo::render_unchecked(families, Format::OpenMetrics),
    }
}

/// The serving loop: one request at a time until told to stop.
fn serve(http: &tiny_http::Server, shared: &Shared) {
    while !shared.stop.load(Ordering::Acquire) {
        match http.recv() {
            Ok(request) => respond(request, shared),
            // Either `unblock` from `stop`, or the accept loop has died, after
            // which no request can arrive any more.
            Err(_) => break,
        }
    }
}

fn respond(request: Request, shared: &Shared) {
    let path = request.url().split('?').next().unwrap_or_default();
    let readable = matches!(request.method(), Method::Get | Method::Head);
    let response = match (path, readable) {
        ("/metrics", true) => {
            if *request.method() == Method::Get {
                // Counted before writing, so a client that has read its
                // response always finds itself counted.
                shared.scrapes.fetch_add(1, Ordering::Relaxed);
            }
            let accept = join_header_values(&request, "Accept");
            let format = Format::negotiate(accept.as_deref());
            reply(
                200,
                format.content_type(),
                Body::Metrics(shared.current(), format),
            )
            .with_header(header("Vary", "Accept"))
        }
        ("/", true) => reply(200, "text/html; charset=utf-8", Body::Fixed(INDEX_PAGE)),
        ("/metrics" | "/", false) => reply(
            405,
            "text/plain; charset=utf-8",
            Body::Fixed("Method not allowed: use GET or HEAD.\n"),
        )
        .with_header(header("Allow", "GET, HEAD")),
        _ => reply(
            404,
            "text/plain; charset=utf-8",
            Body::Fixed("Not found: metrics are at /metrics.\n"),
        ),
    };
    // A client that hung up needs no answer.
    let _ = request.respond(response);
}

/// All values of a request header joined with commas, as HTTP allows a list
/// header to be split over several lines.
fn join_header_values(request: &Request, name: &'static str) -> Option<String> {
    let values: Vec<&str> = request
        .headers()
        .iter()
        .filter(|h| h.field.equiv(name))
        .map(|h| h.value.as_str())
        .collect();
    (!values.is_empty()).then(|| values.join(","))
}

fn reply(status: u16, content_type: &'static str, body: Body) -> Response<Cursor<Body>> {
    let length = body.as_ref().len();
    Response::new(
        StatusCode(status),
        vec![header("Content-Type", content_type)],
        Cursor::new(body),
        Some(length),
        None,
    )
    // The length is known, so send Content-Length rather than chunks.
    .with_chunked_threshold(usize::MAX)
}

fn header(name: &'static str, value: &'static str) -> Header {
    Header::from_bytes(name.as_bytes(), value.as_bytes())
        .expect("constant header names and values are printable ASCII")
}

/// Turns a failed bind into the error that tells the operator what to do.
pub(super) fn bind_error(addr: SocketAddr, source: io::Error) -> Error {
    match source.kind() {
        io::ErrorKind::AddrInUse => Error::AddressInUse { addr },
        io::ErrorKind::PermissionDenied => Error::PermissionDenied {
            addr,
            hint: if addr.port() < 1024 {
                "ports below 1024 need root or CAP_NET_BIND_SERVICE; pick a port of 1024 or above for --metrics"
            } else {
                "a security policy forbids it; pick another --metrics address or allow this one"
            },
        },
        io::ErrorKind::AddrNotAvailable => Error::AddressNotAvailable { addr },
        _ => Error::Bind { addr, source },
    }
}

/// Parses a listen address given by the user.
///
/// Accepted forms:
/// * `PORT`, meaning `127.0.0.1:PORT`: metrics stay on this machine unless
///   the user deliberately writes another address;
/// * `HOST:PORT` with an IPv4 address or `localhost` (`127.0.0.1`);
/// * `[V6]:PORT` with an IPv6 address in brackets.
///
/// Host names other than `localhost` are refused rather than resolved, so the
/// address listened on is exactly the one written. Port 0 is refused since a
/// scraper could not know the port.
pub fn parse_listen_addr(input: &str) -> Result<SocketAddr> {
    let invalid = |reason: String| Error::InvalidListenAddress {
        input: input.to_owned(),
        reason,
    };
    let text = input.trim();
    let parsed = if text.is_empty() {
        return Err(invalid(
            "it is empty; write a port such as 9469 or an address such as 127.0.0.1:9469".into(),
        ));
    } else if text.bytes().all(|b| b.is_ascii_digit()) {
        SocketAddr::new(
            Ipv4Addr::LOCALHOST.into(),
            parse_port(text).map_err(invalid)?,
        )
    } else if let Ok(addr) = text.parse::<SocketAddr>() {
        addr
    } else if let Ok(ip) = text.parse::<IpAddr>() {
        return Err(invalid(match ip {
            IpAddr::V4(_) => format!("the port is missing; write e.g. {text}:9469"),
            IpAddr::V6(_) => format!(
                "write an IPv6 address in brackets followed by the port, e.g. [{text}]:9469"
            ),
        }));
    } else if let Some((host, port)) = text.rsplit_once(':') {
        let bracketed = host.strip_prefix('[').and_then(|h| h.strip_suffix(']'));
        if host.eq_ignore_ascii_case("localhost") {
            SocketAddr::new(
                Ipv4Addr::LOCALHOST.into(),
                parse_port(port).map_err(invalid)?,
            )
        } else if let Some(inner) = bracketed {
            if inner.parse::<Ipv6Addr>().is_err() {
                return Err(invalid(format!(
                    "{inner:?} is not an IPv6 address; write e.g. [::1]:9469"
                )));
            }
            // The address is fine, so the port is what failed to parse.
            return Err(invalid(parse_port_message(port)));
        } else if host.parse::<Ipv4Addr>().is_ok() {
            return Err(invalid(parse_port_message(port)));
        } else {
            return Err(invalid(format!(
                "{host:?} is not an IP address; write an address such as 127.0.0.1 or 0.0.0.0 (host names other than localhost are not resolved)"
            )));
        }
    } else if text.eq_ignore_ascii_case("localhost") {
        return Err(invalid(format!(
            "the port is missing; write e.g. {text}:9469"
        )));
    } else {
        return Err(invalid(
            "write a port such as 9469, an address such as 127.0.0.1:9469, or [::1]:9469".into(),
        ));
    };
    if parsed.port() == 0 {
        return Err(invalid(
            "port 0 would pick a random port that no scraper knows; choose a port between 1 and 65535"
                .into(),
        ));
    }
    Ok(parsed)
}

fn parse_port(text: &str) -> std::result::Result<u16, String> {
    text.parse::<u16>().map_err(|_| parse_port_message(text))
}

fn parse_port_message(text: &str) -> String {
    format!("{text:?} is not a port number between 1 and 65535")
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;
    use netledger_lab::consumers::{self, Reply};
    use std::net::TcpStream;
    use std::time::Instant;

    /// A request from the test's own namespace.
    pub(crate) fn http_request(
        addr: SocketAddr,
        method: &str,
        target: &str,
        headers: &[(&str, &str)],
    ) -> io::Result<Reply> {
        consumers::http_request(None, addr, method, target, headers)
    }

    pub(crate) fn loopback_any_port() -> SocketAddr {
        SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 0)
    }

    fn sample_families() -> Vec<Family> {
        let mut bytes =
            Family::counter("netledger_receive_bytes_total", "Bytes received.").unwrap();
        bytes.add(&[("interface", "eth0")], 1234.0).unwrap();
        let mut info = Family::info("netledger_build_info", "Build.").unwrap();
        info.add_info(&[("version", "0.1.0"), ("strategy", "swap")])
            .unwrap();
        vec![bytes, info]
    }

    #[test]
    fn serves_both_formats_by_accept_header() {
        let server = MetricsServer::start(loopback_any_port()).unwrap();
        let families = sample_families();
        server.publish(&families).unwrap();
        let addr = server.local_addr();

        let plain = http_request(addr, "GET", "/metrics", &[]).unwrap();
        assert_eq!(plain.status, 200);
        assert_eq!(plain.header("content-type"), Some(TEXT));
        assert_eq!(plain.body, expo::render(&families, Format::Text).unwrap());
        assert_eq!(
            plain.header("content-length"),
            Some(plain.body.len().to_string().as_str())
        );

        let asked = [
            (
                "application/openmetrics-text; version=1.0.0",
                Format::OpenMetrics,
            ),
            (
                "application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1",
                Format::OpenMetrics,
            ),
            ("text/plain;version=0.0.4", Format::Text),
            ("*/*", Format::Text),
            (
                "application/openmetrics-text;q=0.1, text/plain;q=0.9",
                Format::Text,
            ),
        ];
        for (accept, format) in asked {
            let reply = http_request(addr, "GET", "/metrics", &[("Accept", accept)]).unwrap();
            assert_eq!(reply.status, 200, "{accept}");
            assert_eq!(
                reply.header("content-type"),
                Some(format.content_type()),
                "{accept}"
            );
            assert_eq!(
                reply.body,
                expo::render(&families, format).unwrap(),
                "{accept}"
            );
        }
        assert_eq!(server.scrapes_served(), 1 + asked.len() as u64);
        server.shutdown();
    }

    const TEXT: &str = "text/plain; version=0.0.4; charset=utf-8";

    #[test]
    fn head_index_404_405_and_query_strings() {
        let server = MetricsServer::start(loopback_any_port()).unwrap();
        server.publish(&sample_families()).unwrap();
        let addr = server.local_addr();

        let full = http_request(addr, "GET", "/metrics?x=1", &[]).unwrap();
        assert_eq!(full.status, 200);
        assert!(full
            .body
            .contains("netledger_receive_bytes_total{interface=\"eth0\"} 1234\n"));

        let head = http_request(addr, "HEAD", "/metrics", &[]).unwrap();
        assert_eq!(head.status, 200);
        assert_eq!(head.body, "");
        assert_eq!(
            head.header("content-length"),
            Some(full.body.len().to_string().as_str())
        );
        assert_eq!(head.header("content-type"), Some(TEXT));

        let index = http_request(addr, "GET", "/", &[]).unwrap();
        assert_eq!(index.status, 200);
        assert!(index.body.contains("href=\"/metrics\""));

        assert_eq!(
            http_request(addr, "GET", "/metric", &[]).unwrap().status,
            404
        );
        assert_eq!(
            http_request(addr, "GET", "/metrics/x", &[]).unwrap().status,
            404
        );
        let post = http_request(addr, "POST", "/metrics", &[("Content-Length", "0")]).unwrap();
        assert_eq!(post.status, 405);
        assert_eq!(post.header("allow"), Some("GET, HEAD"));
        assert_eq!(http_request(addr, "DELETE", "/", &[]).unwrap().status, 405);

        // Only the GET of /metrics counts; HEAD, /, 404s and 405s do not.
        assert_eq!(server.scrapes_served(), 1);
    }

    #[test]
    fn large_snapshots_are_sent_whole_with_a_length() {
        let mut flows = Family::counter("netledger_flow_bytes", "Bytes per flow.").unwrap();
        for i in 0..20_000u32 {
            let src = format!("10.{}.{}.{}", i >> 16, (i >> 8) & 255, i & 255);
            flows
                .add(&[("src", &src), ("dport", "443")], f64::from(i) * 1500.0)
                .unwrap();
        }
        let families = [flows];
        let server = MetricsServer::start(loopback_any_port()).unwrap();
        server.publish(&families).unwrap();
        for format in [Format::Text, Format::OpenMetrics] {
            let accept = [("Accept", format.content_type())];
            let reply = http_request(server.local_addr(), "GET", "/metrics", &accept).unwrap();
            let expected = expo::render(&families, format).unwrap();
            assert!(expected.len() > 1_000_000);
            assert_eq!(reply.header("transfer-encoding"), None);
            assert_eq!(
                reply.header("content-length"),
                Some(expected.len().to_string().as_str())
            );
            assert!(reply.body == expected, "{format:?} body differs");
        }
    }

    #[test]
    fn serves_an_empty_set_before_the_first_publish() {
        let server = MetricsServer::start(loopback_any_port()).unwrap();
        let addr = server.local_addr();
        let text = http_request(addr, "GET", "/metrics", &[]).unwrap();
        assert_eq!((text.status, text.body.as_str()), (200, ""));
        let om = http_request(
            addr,
            "GET",
            "/metrics",
            &[("Accept", "application/openmetrics-text")],
        )
        .unwrap();
        assert_eq!(om.body, "# EOF\n");
    }

    #[test]
    fn rejected_publish_keeps_the_previous_set() {
        let server = MetricsServer::start(loopback_any_port()).unwrap();
        server.publish(&sample_families()).unwrap();
        let a = Family::counter("clash", "h").unwrap();
        let b = Family::gauge("clash_total", "h").unwrap();
        assert!(matches!(
            server.publish(&[a, b]),
            Err(Error::NameClash { .. })
        ));
        let reply = http_request(server.local_addr(), "GET", "/metrics", &[]).unwrap();
        assert!(reply.body.contains("netledger_receive_bytes_total"));
    }

    /// Families whose every sample value is `generation`, so a mixture of two
    /// snapshots would show.
    fn generation_families(generation: u64) -> Vec<Family> {
        let g = generation as f64;
        let mut flows = Family::gauge("netledger_flows", "Flows.").unwrap();
        let mut bytes = Family::counter("netledger_receive_bytes", "Bytes.").unwrap();
        for i in 0..200 {
            let interface = format!("if{i}");
            flows.add(&[("interface", &interface)], g).unwrap();
            bytes.add(&[("interface", &interface)], g).unwrap();
        }
        vec![flows, bytes]
    }

    #[test]
    fn every_scrape_sees_one_complete_snapshot() {
        let server = MetricsServer::start(loopback_any_port()).unwrap();
        server.publish(&generation_families(0)).unwrap();
        let addr = server.local_addr();
        let stop = Arc::new(AtomicBool::new(false));
        let scraper = {
            let stop = Arc::clone(&stop);
            std::thread::spawn(move || -> std::result::Result<usize, String> {
                let mut seen = std::collections::BTreeSet::new();
                for i in 0..300 {
                    let accept = if i % 2 == 0 {
                        "text/plain"
                    } else {
                        "application/openmetrics-text"
                    };
                    let reply = http_request(addr, "GET", "/metrics", &[("Accept", accept)])
                        .map_err(|e| e.to_string())?;
                    let values: std::collections::BTreeSet<&str> = reply
                        .body
                        .lines()
                        .filter(|l| !l.starts_with('#'))
                        .filter_map(|l| l.rsplit_once(' ').map(|(_, v)| v))
                        .collect();
                    if values.len() != 1
                        || reply.body.lines().filter(|l| !l.starts_with('#')).count() != 400
                    {
                        return Err(format!("mixed or partial scrape: {values:?}"));
                    }
                    if i % 2 == 1 && !reply.body.ends_with("# EOF\n") {
                        return Err("OpenMetrics body without EOF".into());
                    }
                    seen.extend(values.into_iter().map(str::to_owned));
                }
                stop.store(true, Ordering::Relaxed);
                Ok(seen.len())
            })
        };
        let deadline = Instant::now() + Duration::from_secs(60);
        let mut generation = 0;
        while !stop.load(Ordering::Relaxed) && Instant::now() < deadline {
            generation += 1;
            server.publish(&generation_families(generation)).unwrap();
        }
        let distinct = scraper.join().unwrap().unwrap();
        assert!(generation > 1, "the publisher ran");
        assert!(distinct > 1, "scrapes saw several generations ({distinct})");
    }

    #[test]
    fn shutdown_is_prompt_and_releases_the_port() {
        let server = MetricsServer::start(loopback_any_port()).unwrap();
        let addr = server.local_addr();
        assert!(server.is_running());
        // An idle keep-alive connection must not hold shutdown up.
        let _idle = TcpStream::connect(addr).unwrap();
        let started = Instant::now();
        server.shutdown();
        assert!(
            started.elapsed() < Duration::from_secs(1),
            "{:?}",
            started.elapsed()
        );
        // The listening socket is closed by the HTTP library's accept thread
        // right after; allow it a moment.
        let deadline = Instant::now() + Duration::from_secs(5);
        let rebound = loop {
            match TcpListener::bind(addr) {
                Ok(l) => break Some(l),
                Err(_) if Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(10))
                }
                Err(_) => break None,
            }
        };
        assert!(rebound.is_some(), "port {addr} still bound after shutdown");
    }

    #[test]
    fn drop_stops_the_server() {
        let server = MetricsServer::start(loopback_any_port()).unwrap();
        let addr = server.local_addr();
        drop(server);
        let deadline = Instant::now() + Duration::from_secs(5);
        while TcpListener::bind(addr).is_err() {
            assert!(
                Instant::now() < deadline,
                "port {addr} still bound after drop"
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    #[test]
    fn address_in_use_is_a_clear_error() {
        let taken = TcpListener::bind(loopback_any_port()).unwrap();
        let addr = taken.local_addr().unwrap();
        let err = MetricsServer::start(addr).unwrap_err();
        assert!(
            matches!(err, Error::AddressInUse { addr: a } if a == addr),
            "{err}"
        );
        assert_eq!(
            err.to_string(),
            format!("{addr} is in use by another process; pick another --metrics address")
        );
        // The same when the other side is one of our own servers.
        let first = MetricsServer::start(loopback_any_port()).unwrap();
        let err = MetricsServer::start(first.local_addr()).unwrap_err();
        assert!(matches!(err, Error::AddressInUse { .. }), "{err}");
    }

    #[test]
    fn bind_errors_name_cause_and_fix() {
        let low: SocketAddr = "0.0.0.0:80".parse().unwrap();
        let high: SocketAddr = "127.0.0.1:9469".parse().unwrap();
        let denied = |addr| bind_error(addr, io::Error::from(io::ErrorKind::PermissionDenied));
        let msg = denied(low).to_string();
        assert!(
            msg.contains("0.0.0.0:80") && msg.contains("below 1024"),
            "{msg}"
        );
        assert!(msg.contains("CAP_NET_BIND_SERVICE"), "{msg}");
        assert!(!denied(high).to_string().contains("below 1024"));
        let foreign: SocketAddr = "192.0.2.7:9469".parse().unwrap();
        let msg = bind_error(foreign, io::Error::from(io::ErrorKind::AddrNotAvailable)).to_string();
        assert!(
            msg.starts_with("192.0.2.7:9469 is not an address of this machine"),
            "{msg}"
        );
        let other = bind_error(high, io::Error::other("boom"));
        assert!(matches!(other, Error::Bind { .. }));
        assert_eq!(
            other.to_string(),
            "could not listen on 127.0.0.1:9469: boom"
        );
    }

    #[test]
    fn listen_addresses() {
        let ok = |s: &str| parse_listen_addr(s).unwrap().to_string();
        assert_eq!(ok("9469"), "127.0.0.1:9469");
        assert_eq!(ok(" 9469 "), "127.0.0.1:9469");
        assert_eq!(ok("127.0.0.1:9469"), "127.0.0.1:9469");
        assert_eq!(ok("0.0.0.0:9469"), "0.0.0.0:9469");
        assert_eq!(ok("10.1.2.3:80"), "10.1.2.3:80");
        assert_eq!(ok("localhost:9469"), "127.0.0.1:9469");
        assert_eq!(ok("[::1]:9469"), "[::1]:9469");
        assert_eq!(ok("[::]:9469"), "[::]:9469");
        assert_eq!(ok("[fe80::1%2]:9469"), "[fe80::1%2]:9469");

        let err = |s: &str| parse_listen_addr(s).unwrap_err().to_string();
        assert!(err("").contains("it is empty"));
        assert!(err("0").contains("port 0"));
        assert!(err("127.0.0.1:0").contains("port 0"));
        assert!(err("70000").contains("not a port number"));
        assert!(err("127.0.0.1:70000").contains("not a port number"));
        assert!(err("127.0.0.1:http").contains("not a port number"));
        assert!(err("127.0.0.1").contains("port is missing; write e.g. 127.0.0.1:9469"));
        assert!(err("localhost").contains("port is missing"));
        assert!(err("::1").contains("in brackets"));
        assert!(err("::1:9469").contains("in brackets"));
        assert!(err("[zz]:9469").contains("not an IPv6 address"));
        assert!(err("example.com:9469").contains("not an IP address"));
        assert!(err("eth0").contains("write a port such as 9469"));
        let e = parse_listen_addr("nope:1").unwrap_err();
        assert!(matches!(e, Error::InvalidListenAddress { ref input, .. } if input == "nope:1"));
    }
}
