//! The real consumers of netledger's exports, as the tests start them on
//! loopback, in a test namespace or in the test's own: `promtool` and a
//! Prometheus server (Debian package prometheus), `nfcapd` and `nfdump`
//! (nfdump), `tshark` (tshark); with guards that stop each process by its
//! pid, temp directories that go away, free ports, a small HTTP client and a
//! reader of the Prometheus text format.
//!
//! Where a helper takes `ns`, it is a [`NetNs`] to run in, or `None` for
//! the test's own namespace.
//!
//! The tools are looked up on PATH, or at the path in the environment
//! variable of their name in capitals (`PROMTOOL`, `PROMETHEUS`, `NFCAPD`,
//! `NFDUMP`, `TSHARK`). A missing tool fails the test with what to install;
//! nothing skips.

use std::collections::BTreeMap;
use std::ffi::OsStr;
use std::fs;
use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use crate::netns::NetNs;

/// What provides the tools.
pub const INSTALL: &str = "apt-get install -y prometheus nfdump tshark";

/// `unwrap` with a message saying what failed.
pub trait Must<T> {
    fn must(self, what: &str) -> T;
}

impl<T, E: std::fmt::Display> Must<T> for Result<T, E> {
    #[track_caller]
    fn must(self, what: &str) -> T {
        self.unwrap_or_else(|e| panic!("{what}: {e}"))
    }
}

/// The program `name`: the path in its environment variable (`name` in
/// capitals) if that is set, else `name` as found on PATH. Fails the test,
/// saying what to install, when it is not there.
#[track_caller]
pub fn tool(name: &str) -> PathBuf {
    let var = name.to_ascii_uppercase();
    if let Some(path) = std::env::var_os(&var) {
        let path = PathBuf::from(path);
        assert!(
            path.is_file(),
            "{var} is set to {}, which is not a file",
            path.display()
        );
        return path;
    }
    let found = std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).any(|d| d.join(name).is_file()))
        .unwrap_or(false);
    assert!(
        found,
        "`{name}` is not installed; the tests need it: {INSTALL} (or set {var} to its path)"
    );
    PathBuf::from(name)
}

/// Fails the test, saying what to install, when `name` is missing (see
/// [`tool`]).
#[track_caller]
pub fn require_tool(name: &str) {
    tool(name);
}

/// Runs `f` in `ns`, or right here with `None`.
fn run_in<'a, T: Send>(
    ns: impl Into<Option<&'a NetNs>>,
    f: impl FnOnce() -> T + Send,
) -> io::Result<T> {
    match ns.into() {
        Some(ns) => ns.try_run(f),
        None => Ok(f()),
    }
}

/// " in NS", or nothing for the test's own namespace.
fn where_(ns: Option<&NetNs>) -> String {
    ns.map(|ns| format!(" in {}", ns.name()))
        .unwrap_or_default()
}

// ---------------------------------------------------------------------------
// Temp directories and ports

/// A directory under the system's temp dir, removed with everything in it
/// when dropped.
#[derive(Debug)]
pub struct TempDir(PathBuf);

impl TempDir {
    #[track_caller]
    pub fn new(tag: &str) -> TempDir {
        static NEXT: AtomicU32 = AtomicU32::new(0);
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let path = std::env::temp_dir().join(format!(
            "netledger-exports-{tag}-{}-{n}",
            std::process::id()
        ));
        fs::create_dir(&path).unwrap_or_else(|e| panic!("creating {}: {e}", path.display()));
        TempDir(path)
    }

    pub fn path(&self) -> &Path {
        &self.0
    }

    pub fn join(&self, name: &str) -> PathBuf {
        self.0.join(name)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

/// A loopback TCP port of `ns` that was free a moment ago.
#[track_caller]
pub fn free_tcp_port<'a>(ns: impl Into<Option<&'a NetNs>>) -> u16 {
    let ns = ns.into();
    run_in(ns, || {
        TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr())
    })
    .and_then(|r| r)
    .unwrap_or_else(|e| panic!("binding a TCP port{}: {e}", where_(ns)))
    .port()
}

/// A loopback UDP port of `ns` that was free a moment ago.
#[track_caller]
pub fn free_udp_port<'a>(ns: impl Into<Option<&'a NetNs>>) -> u16 {
    let ns = ns.into();
    run_in(ns, || {
        UdpSocket::bind("127.0.0.1:0").and_then(|s| s.local_addr())
    })
    .and_then(|r| r)
    .unwrap_or_else(|e| panic!("binding a UDP port{}: {e}", where_(ns)))
    .port()
}

// ---------------------------------------------------------------------------
// Processes

/// A child process with its stdout and stderr in files; stopped by its pid
/// (SIGTERM, SIGKILL after a grace period) when dropped, even if the test
/// panics.
#[derive(Debug)]
pub struct Proc {
    name: String,
    child: Option<Child>,
    pid: u32,
    out: PathBuf,
    err: PathBuf,
}

impl Proc {
    /// Starts `cmd`; its output goes to `dir/NAME.out` and `dir/NAME.err`.
    #[track_caller]
    pub fn spawn(name: &str, cmd: &mut Command, dir: &Path) -> Proc {
        let out = dir.join(format!("{name}.out"));
        let err = dir.join(format!("{name}.err"));
        let create = |p: &Path| {
            fs::File::create(p).unwrap_or_else(|e| panic!("creating {}: {e}", p.display()))
        };
        let child = cmd
            .stdin(Stdio::null())
            .stdout(create(&out))
            .stderr(create(&err))
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {name} ({cmd:?}): {e}; {INSTALL}"));
        Proc {
            name: name.to_string(),
            pid: child.id(),
            child: Some(child),
            out,
            err,
        }
    }

    pub fn pid(&self) -> u32 {
        self.pid
    }

    /// All it printed on stdout so far.
    pub fn stdout(&self) -> String {
        fs::read_to_string(&self.out).unwrap_or_default()
    }

    /// All it printed on stderr so far.
    pub fn stderr(&self) -> String {
        fs::read_to_string(&self.err).unwrap_or_default()
    }

    /// Both, for failure messages.
    pub fn output(&self) -> String {
        format!(
            "--- {} stdout ---\n{}--- {} stderr ---\n{}",
            self.name,
            self.stdout(),
            self.name,
            self.stderr()
        )
    }

    /// Waits until `cond` holds, failing after `timeout` or if the process
    /// exits first.
    #[track_caller]
    pub fn wait_until(&mut self, what: &str, timeout: Duration, cond: impl Fn(&Proc) -> bool) {
        let deadline = Instant::now() + timeout;
        loop {
            if cond(self) {
                return;
            }
            if let Some(c) = self.child.as_mut() {
                if let Ok(Some(status)) = c.try_wait() {
                    // It may have printed what we wait for just before exiting.
                    if cond(self) {
                        return;
                    }
                    panic!(
                        "{} exited ({status}) before {what}:\n{}",
                        self.name,
                        self.output()
                    );
                }
            }
            assert!(
                Instant::now() < deadline,
                "{} did not {what} within {timeout:?}:\n{}",
                self.name,
                self.output()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Waits until stderr or stdout contains `needle`.
    #[track_caller]
    pub fn wait_for_output(&mut self, needle: &str, timeout: Duration) {
        self.wait_until(&format!("print {needle:?}"), timeout, |p| {
            p.stderr().contains(needle) || p.stdout().contains(needle)
        });
    }

    /// Sends `signal` and waits for the exit, up to `timeout` (then SIGKILL
    /// and a failure).
    #[track_caller]
    pub fn signal_and_wait(&mut self, signal: libc::c_int, timeout: Duration) -> ExitStatus {
        let Some(mut child) = self.child.take() else {
            panic!("{} was already stopped", self.name);
        };
        if let Ok(Some(status)) = child.try_wait() {
            return status;
        }
        send_signal(&child, signal);
        let deadline = Instant::now() + timeout;
        loop {
            if let Ok(Some(status)) = child.try_wait() {
                return status;
            }
            if Instant::now() >= deadline {
                let _ = child.kill();
                let _ = child.wait();
                panic!(
                    "{} did not exit within {timeout:?} of signal {signal}:\n{}",
                    self.name,
                    self.output()
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// SIGTERM, and the exit within 10 s: how nfcapd and tshark are stopped
    /// so that they finish their files.
    #[track_caller]
    pub fn stop(&mut self) -> ExitStatus {
        self.signal_and_wait(libc::SIGTERM, Duration::from_secs(10))
    }

    /// Waits for it to exit on its own, up to `timeout`.
    #[track_caller]
    pub fn wait_exit(&mut self, timeout: Duration) -> ExitStatus {
        let deadline = Instant::now() + timeout;
        loop {
            let child = self.child.as_mut().expect("a running process");
            if let Ok(Some(status)) = child.try_wait() {
                self.child = None;
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "{} did not exit within {timeout:?}:\n{}",
                self.name,
                self.output()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

fn send_signal(child: &Child, signal: libc::c_int) {
    let Ok(pid) = libc::pid_t::try_from(child.id()) else {
        return;
    };
    // SAFETY: kill(2) on the pid of our own child, which has not been reaped
    // yet (the caller's try_wait saw it running), so the pid is still its.
    unsafe {
        libc::kill(pid, signal);
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let Some(mut child) = self.child.take() else {
            return;
        };
        if !matches!(child.try_wait(), Ok(None)) {
            return;
        }
        send_signal(&child, libc::SIGTERM);
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if !matches!(child.try_wait(), Ok(None)) {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = child.kill();
        let _ = child.wait();
    }
}

/// `ip netns exec NS program` (the program keeps the pid), or `program`
/// itself with `None`.
pub fn in_netns<'a>(ns: impl Into<Option<&'a NetNs>>, program: impl AsRef<OsStr>) -> Command {
    match ns.into() {
        Some(ns) => {
            let mut cmd = Command::new("ip");
            cmd.args(["netns", "exec", ns.name()]).arg(program);
            cmd
        }
        None => Command::new(program),
    }
}

// ---------------------------------------------------------------------------
// HTTP

/// One HTTP response.
#[derive(Debug, Clone)]
pub struct Reply {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl Reply {
    /// The first value of header `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// `METHOD target` to `addr` from `ns` (the socket is made there), with
/// extra request headers: one request per connection, read to EOF; the
/// body is taken whole or dechunked, and must be UTF-8.
pub fn http_request<'a>(
    ns: impl Into<Option<&'a NetNs>>,
    addr: SocketAddr,
    method: &str,
    target: &str,
    headers: &[(&str, &str)],
) -> io::Result<Reply> {
    let mut stream = run_in(ns, || {
        TcpStream::connect_timeout(&addr, Duration::from_secs(5))
    })??;
    stream.set_read_timeout(Some(Duration::from_secs(10)))?;
    stream.set_write_timeout(Some(Duration::from_secs(10)))?;
    let mut request =
        format!("{method} {target} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n");
    for (k, v) in headers {
        request.push_str(&format!("{k}: {v}\r\n"));
    }
    request.push_str("\r\n");
    stream.write_all(request.as_bytes())?;
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw)?;
    parse_reply(&raw, method == "HEAD")
}

/// `GET path` from `addr` in `ns`, with extra request headers.
pub fn http_get<'a>(
    ns: impl Into<Option<&'a NetNs>>,
    addr: SocketAddr,
    path: &str,
    headers: &[(&str, &str)],
) -> io::Result<Reply> {
    http_request(ns, addr, "GET", path, headers)
}

fn parse_reply(raw: &[u8], head_only: bool) -> io::Result<Reply> {
    let bad = |what: &str| io::Error::new(io::ErrorKind::InvalidData, what.to_string());
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or_else(|| bad("no end of the response head"))?;
    let head = std::str::from_utf8(&raw[..split]).map_err(|_| bad("head not UTF-8"))?;
    let mut lines = head.split("\r\n");
    let status = lines
        .next()
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| bad("no status line"))?;
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
        .collect();
    let chunked = headers.iter().any(|(k, v)| {
        k.eq_ignore_ascii_case("transfer-encoding")
            && v.split(',')
                .any(|c| c.trim().eq_ignore_ascii_case("chunked"))
    });
    let mut body = raw[split + 4..].to_vec();
    if chunked && !head_only {
        body = dechunk(&body).ok_or_else(|| bad("bad chunked body"))?;
    }
    let body = String::from_utf8(body).map_err(|_| bad("body not UTF-8"))?;
    Ok(Reply {
        status,
        headers,
        body,
    })
}

fn dechunk(mut data: &[u8]) -> Option<Vec<u8>> {
    let mut out = Vec::new();
    loop {
        let line_end = data.windows(2).position(|w| w == b"\r\n")?;
        let size_text = std::str::from_utf8(&data[..line_end]).ok()?;
        let size = usize::from_str_radix(size_text.split(';').next()?.trim(), 16).ok()?;
        data = &data[line_end + 2..];
        if size == 0 {
            return Some(out);
        }
        out.extend_from_slice(data.get(..size)?);
        data = data.get(size + 2..)?;
    }
}

/// Percent-encodes a query parameter.
pub fn url_encode(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

// ---------------------------------------------------------------------------
// The Prometheus text formats

/// One sample line: its name, labels and value.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    pub name: String,
    pub labels: BTreeMap<String, String>,
    pub value: f64,
}

/// Every sample of a scrape (text 0.0.4 or OpenMetrics), and each family's
/// `# TYPE`.
#[derive(Debug, Clone, Default)]
pub struct Scrape {
    pub samples: Vec<Sample>,
    pub types: BTreeMap<String, String>,
}

impl Scrape {
    /// Reads an exposition; panics on a line it cannot read.
    #[track_caller]
    pub fn parse(text: &str) -> Scrape {
        let mut s = Scrape::default();
        for line in text.lines() {
            if let Some(rest) = line.strip_prefix("# TYPE ") {
                let (name, kind) = rest.split_once(' ').expect("# TYPE name kind");
                s.types.insert(name.to_string(), kind.to_string());
                continue;
            }
            if line.starts_with('#') || line.is_empty() {
                continue;
            }
            s.samples.push(
                parse_sample(line).unwrap_or_else(|| panic!("unreadable sample line {line:?}")),
            );
        }
        s
    }

    /// The samples named `name` whose labels include `labels`.
    pub fn find(&self, name: &str, labels: &[(&str, &str)]) -> Vec<&Sample> {
        self.samples
            .iter()
            .filter(|s| {
                s.name == name
                    && labels
                        .iter()
                        .all(|(k, v)| s.labels.get(*k).map(String::as_str) == Some(*v))
            })
            .collect()
    }

    /// The one sample named `name` with `labels`.
    #[track_caller]
    pub fn value(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        let found = self.find(name, labels);
        assert_eq!(
            found.len(),
            1,
            "one sample {name}{labels:?} expected, found {found:?}"
        );
        found[0].value
    }

    /// The family a sample belongs to and its type (`counter`, `gauge`,
    /// `histogram`, `info`, ...).
    pub fn family_of(&self, sample: &str) -> Option<(&str, &str)> {
        let mut best: Option<(&str, &str)> = None;
        for (family, kind) in &self.types {
            if sample.starts_with(family.as_str())
                && best.is_none_or(|(b, _)| family.len() > b.len())
            {
                best = Some((family, kind));
            }
        }
        best
    }
}

fn parse_sample(line: &str) -> Option<Sample> {
    let (name, rest) = match line.find(['{', ' ']) {
        Some(i) => line.split_at(i),
        None => return None,
    };
    let mut labels = BTreeMap::new();
    let rest = if let Some(mut r) = rest.strip_prefix('{') {
        loop {
            r = r.trim_start_matches(',');
            if let Some(after) = r.strip_prefix('}') {
                break after;
            }
            let (key, after) = r.split_once("=\"")?;
            let mut value = String::new();
            let mut chars = after.char_indices();
            let end = loop {
                let (i, c) = chars.next()?;
                match c {
                    '\\' => match chars.next()?.1 {
                        'n' => value.push('\n'),
                        other => value.push(other),
                    },
                    '"' => break i,
                    c => value.push(c),
                }
            };
            labels.insert(key.trim().to_string(), value);
            r = &after[end + 1..];
        }
    } else {
        rest
    };
    let value = rest.split_whitespace().next()?;
    let value = match value {
        "+Inf" => f64::INFINITY,
        "-Inf" => f64::NEG_INFINITY,
        v => v.parse().ok()?,
    };
    Some(Sample {
        name: name.to_string(),
        labels,
        value,
    })
}

/// Runs `promtool check metrics` with `input` on stdin; returns whether it
/// succeeded and everything it printed.
#[track_caller]
pub fn promtool_check_metrics(input: &str) -> (bool, String) {
    let mut child = Command::new(tool("promtool"))
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run promtool: {e}; {INSTALL}"));
    let mut stdin = child.stdin.take().expect("stdin is piped");
    let input = input.to_owned();
    let writer = std::thread::spawn(move || stdin.write_all(input.as_bytes()));
    let output = child.wait_with_output().expect("promtool ran");
    writer
        .join()
        .expect("writer thread")
        .expect("promtool read its input");
    let printed = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    (output.status.success(), printed)
}

// ---------------------------------------------------------------------------
// Prometheus

/// A Prometheus server on loopback in `ns`, with a temp config (every
/// target scraped each second) and temp storage; stopped by pid when dropped.
pub struct Prometheus<'a> {
    ns: Option<&'a NetNs>,
    pub addr: SocketAddr,
    proc: Proc,
}

/// One instant-query result: labels and value.
pub type QueryResult = Vec<(BTreeMap<String, String>, String)>;

impl<'a> Prometheus<'a> {
    /// Starts it in `ns` scraping `targets` (job `netledger`), with its files
    /// in `dir`, and waits until it is ready.
    #[track_caller]
    pub fn start(
        ns: impl Into<Option<&'a NetNs>>,
        dir: &Path,
        targets: &[SocketAddr],
    ) -> Prometheus<'a> {
        Prometheus::start_jobs(ns, dir, &[("netledger", targets)])
    }

    /// Starts it in `ns` scraping each job's targets, with its files in
    /// `dir`, and waits until it is ready.
    #[track_caller]
    pub fn start_jobs(
        ns: impl Into<Option<&'a NetNs>>,
        dir: &Path,
        jobs: &[(&str, &[SocketAddr])],
    ) -> Prometheus<'a> {
        let ns = ns.into();
        let program = tool("prometheus");
        let config = dir.join("prometheus.yml");
        let mut text =
            String::from("global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\nscrape_configs:\n");
        for (job, targets) in jobs {
            let targets: Vec<String> = targets.iter().map(|t| format!("'{t}'")).collect();
            text.push_str(&format!(
                "  - job_name: {job}\n    static_configs:\n      - targets: [{}]\n",
                targets.join(", ")
            ));
        }
        fs::write(&config, text).expect("writing the Prometheus config");
        let addr: SocketAddr = format!("127.0.0.1:{}", free_tcp_port(ns))
            .parse()
            .expect("an address");
        let mut cmd = in_netns(ns, program);
        cmd.arg(format!("--config.file={}", config.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.join("prometheus-data").display()
            ))
            .arg(format!("--web.listen-address={addr}"))
            .arg("--log.level=warn");
        let proc = Proc::spawn("prometheus", &mut cmd, dir);
        let mut p = Prometheus { ns, addr, proc };
        p.proc
            .wait_until("become ready", Duration::from_secs(60), move |_| {
                http_get(ns, addr, "/-/ready", &[]).is_ok_and(|r| r.status == 200)
            });
        p
    }

    /// Runs an instant query; returns (labels, value) per result.
    pub fn query(&self, promql: &str) -> QueryResult {
        let target = format!("/api/v1/query?query={}", url_encode(promql));
        let Ok(reply) = http_get(self.ns, self.addr, &target, &[]) else {
            return Vec::new();
        };
        let Ok(json) = serde_json::from_str::<serde_json::Value>(&reply.body) else {
            return Vec::new();
        };
        let Some(results) = json["data"]["result"].as_array() else {
            return Vec::new();
        };
        results
            .iter()
            .map(|r| {
                let labels = r["metric"]
                    .as_object()
                    .map(|m| {
                        m.iter()
                            .map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_owned()))
                            .collect()
                    })
                    .unwrap_or_default();
                let value = r["value"][1].as_str().unwrap_or_default().to_owned();
                (labels, value)
            })
            .collect()
    }

    /// Polls `promql` until `done` accepts the result, for up to 30 s.
    #[track_caller]
    pub fn wait_for(&self, promql: &str, done: impl Fn(&QueryResult) -> bool) -> QueryResult {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let result = self.query(promql);
            if done(&result) {
                return result;
            }
            assert!(
                Instant::now() < deadline,
                "{promql} never became as expected; last result {result:?}\n--- targets ---\n{}\n{}",
                http_get(self.ns, self.addr, "/api/v1/targets", &[])
                    .map(|r| r.body)
                    .unwrap_or_default(),
                self.proc.output()
            );
            std::thread::sleep(Duration::from_millis(250));
        }
    }
}

// ---------------------------------------------------------------------------
// nfcapd and nfdump

/// nfcapd (nfdump 1.7) listening on UDP `127.0.0.1:port` in `ns`, writing
/// into `dir/flows`. Stop it with SIGTERM ([`Proc::stop`]); it then flushes
/// its file.
#[track_caller]
pub fn start_nfcapd<'a>(ns: impl Into<Option<&'a NetNs>>, dir: &Path, port: u16) -> Proc {
    let program = tool("nfcapd");
    let flows = dir.join("flows");
    fs::create_dir_all(&flows).expect("creating the flow directory");
    let mut cmd = in_netns(ns, program);
    cmd.arg("-w").arg(&flows).args([
        "-b",
        "127.0.0.1",
        "-p",
        &port.to_string(),
        "-t",
        "60",
        "-C",
        "none",
    ]);
    let mut p = Proc::spawn("nfcapd", &mut cmd, dir);
    p.wait_for_output("Startup nfcapd.", Duration::from_secs(10));
    p
}

/// Every flow record nfdump reads from `dir/flows`, as JSON objects.
#[track_caller]
pub fn nfdump_json(dir: &Path) -> Vec<serde_json::Value> {
    let out = Command::new(tool("nfdump"))
        // nfdump prints local time; pin it so times can be compared.
        .env("TZ", "UTC")
        .arg("-r")
        .arg(dir.join("flows"))
        .args(["-o", "json"])
        .output()
        .unwrap_or_else(|e| panic!("cannot run nfdump: {e}; {INSTALL}"));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "nfdump failed: {}\n{text}",
        String::from_utf8_lossy(&out.stderr)
    );
    if text.contains("No matching flows") || text.trim().is_empty() {
        return Vec::new();
    }
    match serde_json::from_str::<serde_json::Value>(&text) {
        Ok(serde_json::Value::Array(v)) => v,
        other => panic!("nfdump printed no JSON array ({other:?}):\n{text}"),
    }
}

// ---------------------------------------------------------------------------
// tshark

/// `tshark -i IFACE -f FILTER -w FILE` in `ns`; returns once it captures.
/// Stop it with SIGTERM ([`Proc::stop`]) before reading the file.
#[track_caller]
pub fn start_tshark<'a>(
    ns: impl Into<Option<&'a NetNs>>,
    dir: &Path,
    iface: &str,
    filter: &str,
    file: &Path,
) -> Proc {
    let mut cmd = in_netns(ns, tool("tshark"));
    cmd.args(["-i", iface, "-f", filter, "-w"]).arg(file);
    let mut p = Proc::spawn("tshark", &mut cmd, dir);
    p.wait_for_output("Capturing on", Duration::from_secs(30));
    // dumpcap prints before its socket sees the first frame.
    std::thread::sleep(Duration::from_millis(500));
    p
}

/// Decodes `file` with `decode_as` (e.g. `udp.port==4739,cflow`) and returns
/// tshark's JSON (`-T json`): one object per frame.
#[track_caller]
pub fn tshark_json(file: &Path, decode_as: &str) -> Vec<serde_json::Value> {
    let out = Command::new(tool("tshark"))
        .arg("-r")
        .arg(file)
        .args(["-d", decode_as, "-T", "json", "--no-duplicate-keys"])
        .output()
        .unwrap_or_else(|e| panic!("cannot run tshark: {e}; {INSTALL}"));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "tshark -r failed: {}\n{text}",
        String::from_utf8_lossy(&out.stderr)
    );
    match serde_json::from_str::<serde_json::Value>(&text) {
        Ok(serde_json::Value::Array(v)) => v,
        other => panic!("tshark printed no JSON array ({other:?}):\n{text}"),
    }
}
