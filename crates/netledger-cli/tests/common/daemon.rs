//! The service under test: a testbed (two namespaces joined by a veth pair,
//! a temporary directory for the store and the control socket), `netledger
//! run` as a child process whose log is collected, known raw frames of
//! several flows, and what the store holds (through `report`, and read
//! directly). Everything made here is removed when it drops, also when a
//! test fails: processes (kill -9 and wait), pins, mounts, interfaces,
//! namespaces and directories.

#![allow(dead_code)]

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Write};
use std::net::IpAddr;
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use netledger_lab::netns::{self, Ipv6Mode, NetNs, RawSocket, Veth};

/// The binary under test.
pub const BIN: &str = env!("CARGO_BIN_EXE_netledger");

/// How long a daemon may take to say something expected.
pub const WAIT: Duration = Duration::from_secs(30);

/// What a flow is in a report: source, destination, protocol, ports.
pub type Key = (IpAddr, IpAddr, String, u16, u16);

/// Packets and bytes per flow.
pub type Totals = BTreeMap<Key, (u64, u64)>;

/// The packets and bytes of every flow together.
pub fn total(t: &Totals) -> (u64, u64) {
    t.values().fold((0, 0), |a, b| (a.0 + b.0, a.1 + b.1))
}

/// The differences between two sets of totals, one line per flow.
pub fn differences(want: &Totals, got: &Totals) -> String {
    let mut out = String::new();
    let keys: std::collections::BTreeSet<&Key> = want.keys().chain(got.keys()).collect();
    for k in keys {
        let (w, g) = (want.get(k), got.get(k));
        if w != g {
            out.push_str(&format!("\n  {k:?}: sent {w:?}, stored {g:?}"));
        }
    }
    out
}

// ---------------------------------------------------------------------------
// Frames

/// One flow of raw frames: UDP or TCP over IPv4 or IPv6.
#[derive(Debug, Clone, Copy)]
pub struct Flow {
    pub src: IpAddr,
    pub dst: IpAddr,
    pub tcp: bool,
    pub sport: u16,
    pub dport: u16,
    /// Payload bytes of frame 0; frame `i` has `i % 17` more.
    pub payload: usize,
}

impl Flow {
    /// The flow's key as a report names it.
    pub fn key(&self) -> Key {
        let proto = if self.tcp { "tcp" } else { "udp" };
        (self.src, self.dst, proto.into(), self.sport, self.dport)
    }

    /// Frame `i` of the flow, from `src_mac` to `dst_mac`.
    pub fn frame(&self, src_mac: [u8; 6], dst_mac: [u8; 6], i: u64) -> Vec<u8> {
        let payload = vec![(i % 251) as u8; self.payload + (i % 17) as usize];
        let eth = etherparse::PacketBuilder::ethernet2(src_mac, dst_mac);
        let ip = match (self.src, self.dst) {
            (IpAddr::V4(s), IpAddr::V4(d)) => eth.ipv4(s.octets(), d.octets(), 64),
            (IpAddr::V6(s), IpAddr::V6(d)) => eth.ipv6(s.octets(), d.octets(), 64),
            _ => panic!("a flow's addresses are of one family: {self:?}"),
        };
        let mut f = Vec::new();
        if self.tcp {
            ip.tcp(self.sport, self.dport, i as u32 * 1000, 1024)
                .write(&mut f, &payload)
        } else {
            ip.udp(self.sport, self.dport).write(&mut f, &payload)
        }
        .expect("building a frame");
        f
    }
}

/// Six flows: UDP and TCP, IPv4 and IPv6, small and large frames.
pub fn flows() -> Vec<Flow> {
    let ip = |s: &str| -> IpAddr { s.parse().expect("an address") };
    let flow = |src, dst, tcp, sport, dport, payload| Flow {
        src: ip(src),
        dst: ip(dst),
        tcp,
        sport,
        dport,
        payload,
    };
    vec![
        flow("10.77.0.2", "10.77.0.1", false, 40000, 9000, 18),
        flow("10.77.0.3", "10.77.0.1", false, 40001, 9001, 1200),
        flow("10.77.0.2", "10.77.0.1", true, 40002, 443, 400),
        flow("fd77::2", "fd77::1", false, 40003, 9000, 90),
        flow("fd77::3", "fd77::1", true, 40004, 443, 1400),
        flow("fd77::2", "fd77::1", false, 40005, 53, 1),
    ]
}

/// Sends frames of flows into the testbed's link and keeps count of them.
pub struct Sender {
    sock: RawSocket,
    src_mac: [u8; 6],
    dst_mac: [u8; 6],
    /// Frames sent so far per flow (each flow numbers its own frames).
    next: BTreeMap<Key, u64>,
    /// What was sent.
    pub sent: Totals,
}

impl Sender {
    /// Send the next frame of `flow`.
    #[track_caller]
    pub fn send(&mut self, flow: &Flow) {
        let key = flow.key();
        let i = self.next.entry(key.clone()).or_default();
        let f = flow.frame(self.src_mac, self.dst_mac, *i);
        *i += 1;
        self.sock
            .send(&f)
            .unwrap_or_else(|e| panic!("sending a frame of {key:?}: {e}"));
        let t = self.sent.entry(key).or_default();
        t.0 += 1;
        t.1 += f.len() as u64;
    }

    /// `rounds` frames of every flow, as fast as they go.
    #[track_caller]
    pub fn burst(&mut self, flows: &[Flow], rounds: u64) {
        for _ in 0..rounds {
            for f in flows {
                self.send(f);
            }
        }
    }

    /// `rounds` rounds, one every `period`, of one frame of each flow `on`
    /// picks for the round: `on(round, flow index)`.
    #[track_caller]
    pub fn paced(
        &mut self,
        flows: &[Flow],
        rounds: u64,
        period: Duration,
        on: impl Fn(u64, usize) -> bool,
    ) {
        let start = Instant::now();
        for r in 0..rounds {
            let at = start + period * r as u32;
            let now = Instant::now();
            if at > now {
                std::thread::sleep(at - now);
            }
            for (i, f) in flows.iter().enumerate() {
                if on(r, i) {
                    self.send(f);
                }
            }
        }
    }
}

// ---------------------------------------------------------------------------
// The testbed

/// Two namespaces joined by a veth pair (IPv6 off, no addresses, offloads
/// off: nothing but the test's frames crosses it), the service counting on
/// the receiving end, and a temporary directory for its store and socket.
pub struct Bed {
    veth: Option<Veth>,
    /// The pin directory of the receiving end (in its namespace).
    pub pins: PathBuf,
    pub rx: NetNs,
    pub tx: NetNs,
    /// The receiving end, where the service counts.
    pub rx_if: String,
    /// The sending end.
    pub tx_if: String,
    macs: ([u8; 6], [u8; 6]),
    /// The store the service and `down` use (`dir/n.db` unless changed).
    pub db: PathBuf,
    pub dir: tempfile::TempDir,
}

impl Bed {
    /// A testbed whose names carry `tag` (unique per test in this file).
    #[track_caller]
    pub fn new(tag: &str) -> Bed {
        let tx = NetNs::create(&format!("nl-sv{tag}tx"))
            .unwrap_or_else(|e| panic!("creating a network namespace: {e}"));
        let rx = NetNs::create(&format!("nl-sv{tag}rx"))
            .unwrap_or_else(|e| panic!("creating a network namespace: {e}"));
        let (rx_if, tx_if) = (format!("nlsv{tag}r"), format!("nlsv{tag}t"));
        let pins = rx
            .run(|| netledger::pin_dir(&rx_if))
            .unwrap_or_else(|e| panic!("the pin directory of {rx_if}: {e}"));
        // A new namespace may have the inode of one deleted before: pins
        // left under that inode with this name are stale, never ours.
        remove_pins(&pins);
        let dir = tempfile::Builder::new()
            .prefix(&format!("nl-sv{tag}-"))
            .tempdir()
            .unwrap_or_else(|e| panic!("creating a temporary directory: {e}"));
        let db = dir.path().join("n.db");
        let mut bed = Bed {
            veth: None,
            pins,
            rx,
            tx,
            rx_if,
            tx_if,
            macs: ([0; 6], [0; 6]),
            db,
            dir,
        };
        bed.make_veth();
        bed
    }

    /// Create the veth pair (again), configured for exact counting.
    #[track_caller]
    pub fn make_veth(&mut self) {
        let veth = netns::veth_pair(&self.tx_if, Some(&self.tx), &self.rx_if, Some(&self.rx))
            .unwrap_or_else(|e| panic!("creating veth {} <-> {}: {e}", self.tx_if, self.rx_if));
        for end in [veth.a(), veth.b()] {
            end.prepare(Ipv6Mode::Off)
                .unwrap_or_else(|e| panic!("preparing {}: {e}", end.name()));
        }
        let mac = |end: &netns::Iface| {
            end.mac()
                .unwrap_or_else(|e| panic!("the MAC address of {}: {e}", end.name()))
        };
        self.macs = (mac(veth.a()), mac(veth.b()));
        self.veth = Some(veth);
    }

    /// Delete the veth pair (both ends).
    pub fn delete_veth(&mut self) {
        drop(self.veth.take());
    }

    /// A sender of frames from the sending end to the receiving end.
    #[track_caller]
    pub fn sender(&self) -> Sender {
        let sock = RawSocket::open_in(Some(&self.tx), &self.tx_if)
            .unwrap_or_else(|e| panic!("opening a raw socket on {}: {e}", self.tx_if));
        Sender {
            sock,
            src_mac: self.macs.0,
            dst_mac: self.macs.1,
            next: BTreeMap::new(),
            sent: Totals::new(),
        }
    }

    /// The control socket's path.
    pub fn socket(&self) -> PathBuf {
        self.dir.path().join("s.sock")
    }

    /// A file in the temporary directory.
    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// `netledger ARGS...` in the receiving namespace. nsenter enters the
    /// network namespace only (`ip netns exec` remounts /sys, which hides
    /// the pins in bpffs).
    #[track_caller]
    pub fn netledger(&self, args: &[&str]) -> Output {
        Command::new("nsenter")
            .arg(format!("--net=/run/netns/{}", self.rx.name()))
            .arg(BIN)
            .args(args)
            .stdin(Stdio::null())
            .output()
            .unwrap_or_else(|e| panic!("running nsenter (util-linux): {e}"))
    }

    /// The arguments of `run` on the receiving end: an interval of 200 ms,
    /// the bed's store and socket, then `extra`.
    pub fn run_args(&self, extra: &[&str]) -> Vec<String> {
        let mut args: Vec<String> = ["run", "--iface", &self.rx_if, "--interval", "200ms"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        args.push("--db".into());
        args.push(self.db.display().to_string());
        args.push("--socket".into());
        args.push(self.socket().display().to_string());
        args.extend(extra.iter().map(|s| s.to_string()));
        args
    }

    /// Start `netledger run` on the receiving end (see [`Bed::run_args`])
    /// with `env` added to its environment.
    #[track_caller]
    pub fn start(&self, extra: &[&str], env: &[(&str, String)]) -> Daemon {
        Daemon::spawn(&self.rx, &self.run_args(extra), env)
    }

    /// `netledger down` on the receiving end into the bed's store; it must
    /// succeed and leave no pins.
    #[track_caller]
    pub fn down(&self) -> String {
        let db = self.db.display().to_string();
        let o = self.netledger(&["down", "--iface", &self.rx_if, "--db", &db]);
        let err = String::from_utf8_lossy(&o.stderr).into_owned();
        assert!(o.status.success(), "netledger down failed: {err}");
        assert!(!self.pins.exists(), "netledger down left pins: {err}");
        err
    }

    /// Whether anything is pinned for the receiving end.
    pub fn pinned(&self) -> bool {
        self.pins.exists()
    }

    /// `netledger status --format json`'s entry for the receiving end.
    #[track_caller]
    pub fn status(&self) -> serde_json::Value {
        let db = self.db.display().to_string();
        let o = self.netledger(&["status", "--db", &db, "--format", "json"]);
        assert!(
            o.status.success(),
            "netledger status failed: {}",
            String::from_utf8_lossy(&o.stderr)
        );
        let text = String::from_utf8_lossy(&o.stdout);
        let v: serde_json::Value = serde_json::from_str(text.trim())
            .unwrap_or_else(|e| panic!("status --format json is not JSON ({e}): {text}"));
        v["interfaces"]
            .as_array()
            .and_then(|a| a.iter().find(|i| i["iface"] == self.rx_if.as_str()))
            .cloned()
            .unwrap_or(serde_json::Value::Null)
    }
}

impl Drop for Bed {
    fn drop(&mut self) {
        // The pins first: their link and maps go with them. The interfaces
        // and namespaces then drop with the fields, the directory last.
        remove_pins(&self.pins);
        self.delete_veth();
    }
}

/// Remove a pin directory and, when empty, its namespace's directory
/// (netledger's root directory in bpffs is shared: it stays).
pub fn remove_pins(dir: &Path) {
    if dir.exists() {
        if let Err(e) = std::fs::remove_dir_all(dir) {
            eprintln!("could not remove the pins {}: {e}", dir.display());
        }
    }
    if let Some(ns) = dir.parent() {
        let _ = std::fs::remove_dir(ns);
    }
}

// ---------------------------------------------------------------------------
// The daemon

/// A `netledger run` child process; its stderr (the log) is collected by
/// a thread. Dropping it kills it (-9) and waits.
pub struct Daemon {
    child: Child,
    pub pid: u32,
    log: Arc<Mutex<Vec<String>>>,
    reader: Option<JoinHandle<()>>,
    status: Option<ExitStatus>,
}

impl Daemon {
    /// Start `netledger ARGS...` in `ns` (through nsenter, which execs it:
    /// the child's pid is netledger's).
    #[track_caller]
    pub fn spawn(ns: &NetNs, args: &[String], env: &[(&str, String)]) -> Daemon {
        let mut cmd = Command::new("nsenter");
        cmd.arg(format!("--net=/run/netns/{}", ns.name()))
            .arg(BIN)
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        for (k, v) in env {
            cmd.env(k, v);
        }
        let mut child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("starting netledger {args:?}: {e}"));
        let stderr = child.stderr.take().expect("stderr is piped");
        let log: Arc<Mutex<Vec<String>>> = Arc::default();
        let lines = Arc::clone(&log);
        let reader = std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                lines.lock().unwrap_or_else(|e| e.into_inner()).push(line);
            }
        });
        Daemon {
            pid: child.id(),
            child,
            log,
            reader: Some(reader),
            status: None,
        }
    }

    /// Every line logged so far.
    pub fn lines(&self) -> Vec<String> {
        self.log.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// The log so far, for messages.
    pub fn log(&self) -> String {
        self.lines().join("\n")
    }

    /// How many lines logged so far contain `needle`.
    pub fn count(&self, needle: &str) -> usize {
        self.lines().iter().filter(|l| l.contains(needle)).count()
    }

    /// Its exit status, if it has exited (the log is then complete).
    pub fn exited(&mut self) -> Option<ExitStatus> {
        if self.status.is_none() {
            self.status = self.child.try_wait().expect("waiting for netledger");
            if self.status.is_some() {
                self.join_reader();
            }
        }
        self.status
    }

    fn join_reader(&mut self) {
        if let Some(r) = self.reader.take() {
            let _ = r.join();
        }
    }

    /// Wait until a line containing `needle` is logged; returns the line.
    #[track_caller]
    pub fn wait_for(&mut self, needle: &str, timeout: Duration) -> String {
        self.wait_for_nth(needle, 1, timeout)
    }

    /// Wait until `n` lines containing `needle` are logged; returns the last.
    #[track_caller]
    pub fn wait_for_nth(&mut self, needle: &str, n: usize, timeout: Duration) -> String {
        let deadline = Instant::now() + timeout;
        loop {
            let exited = self.exited();
            let found: Vec<String> = self
                .lines()
                .into_iter()
                .filter(|l| l.contains(needle))
                .collect();
            if found.len() >= n {
                return found[n - 1].clone();
            }
            if let Some(st) = exited {
                panic!(
                    "netledger (pid {}) exited ({st}) before logging {needle:?} {n} time(s); its log:\n{}",
                    self.pid,
                    self.log()
                );
            }
            if Instant::now() > deadline {
                panic!(
                    "netledger (pid {}) did not log {needle:?} {n} time(s) within {timeout:?}; its log:\n{}",
                    self.pid,
                    self.log()
                );
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// kill -9 and wait; it must have been running.
    #[track_caller]
    pub fn kill9(&mut self) {
        if let Some(st) = self.exited() {
            panic!(
                "netledger (pid {}) had exited on its own ({st}) before the kill; its log:\n{}",
                self.pid,
                self.log()
            );
        }
        // SAFETY: kill(2) on our own child, which has not been reaped.
        unsafe { libc::kill(self.pid as i32, libc::SIGKILL) };
        let st = self.child.wait().expect("waiting for netledger");
        self.status = Some(st);
        self.join_reader();
        if st.signal() != Some(libc::SIGKILL) {
            panic!(
                "netledger (pid {}) ended with {st}, not by the kill; its log:\n{}",
                self.pid,
                self.log()
            );
        }
    }

    /// SIGTERM, then its exit status (within 20 s, or it is killed and the
    /// test fails).
    #[track_caller]
    pub fn stop(&mut self) -> ExitStatus {
        if let Some(st) = self.exited() {
            return st;
        }
        // SAFETY: kill(2) on our own child, which has not been reaped.
        unsafe { libc::kill(self.pid as i32, libc::SIGTERM) };
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Some(st) = self.exited() {
                return st;
            }
            if Instant::now() > deadline {
                let _ = self.child.kill();
                let _ = self.child.wait();
                panic!(
                    "netledger (pid {}) did not stop within 20 s of SIGTERM; its log:\n{}",
                    self.pid,
                    self.log()
                );
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if self.status.is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
        self.join_reader();
    }
}

/// A child process (e.g. a `netledger` that must fail) run to its end.
#[track_caller]
pub fn output_of(mut cmd: Command) -> Output {
    cmd.stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("running {cmd:?}: {e}"))
}

/// A failed command: exit code 1 and exactly one line on stderr, starting
/// `netledger: error: ` and containing every one of `needles`. Returns it.
#[track_caller]
pub fn one_error_line(o: &Output, needles: &[&str]) -> String {
    let err = String::from_utf8_lossy(&o.stderr).into_owned();
    assert_eq!(
        o.status.code(),
        Some(1),
        "exit code 1 expected; stderr: {err}"
    );
    let lines: Vec<&str> = err.lines().collect();
    assert_eq!(lines.len(), 1, "exactly one line expected on stderr: {err}");
    assert!(lines[0].starts_with("netledger: error: "), "{err}");
    for n in needles {
        assert!(
            lines[0].contains(n),
            "the error should mention {n:?}: {err}"
        );
    }
    lines[0].to_string()
}

// ---------------------------------------------------------------------------
// The store

/// What `netledger report --format jsonl` said.
pub struct Report {
    /// Per-flow sums of the flow lines.
    pub flows: Totals,
    /// The closing `check` line.
    pub check: serde_json::Value,
    /// Every line.
    pub lines: Vec<serde_json::Value>,
}

/// `netledger report --db DB --by BY --format jsonl`, over everything
/// (since 2000; until now).
#[track_caller]
pub fn report(db: &Path, by: &str) -> Report {
    let db_arg = db.display().to_string();
    let args = [
        "report",
        "--db",
        &db_arg,
        "--by",
        by,
        "--format",
        "jsonl",
        "--since",
        "2000-01-01",
    ];
    let o = output_of({
        let mut c = Command::new(BIN);
        c.args(args);
        c
    });
    let (out, err) = (
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr),
    );
    assert!(o.status.success(), "netledger {args:?} failed: {err}");
    let mut r = Report {
        flows: Totals::new(),
        check: serde_json::Value::Null,
        lines: Vec::new(),
    };
    for line in out.lines() {
        let v: serde_json::Value = serde_json::from_str(line)
            .unwrap_or_else(|e| panic!("report line is not JSON ({e}): {line}"));
        if v["type"] == "flow" {
            let k = &v["key"];
            let ip = |f: &str| -> IpAddr {
                k[f].as_str()
                    .and_then(|s| s.parse().ok())
                    .unwrap_or_else(|| panic!("flow key without {f}: {line}"))
            };
            let port = |f: &str| k[f].as_u64().unwrap_or_else(|| panic!("{f}: {line}")) as u16;
            let key = (
                ip("src"),
                ip("dst"),
                k["proto"].as_str().unwrap_or("?").to_string(),
                port("sport"),
                port("dport"),
            );
            let t = r.flows.entry(key).or_default();
            t.0 += v["packets"].as_u64().expect("packets");
            t.1 += v["bytes"].as_u64().expect("bytes");
        }
        r.lines.push(v);
    }
    let last = r.lines.last().cloned().unwrap_or_default();
    assert_eq!(last["type"], "check", "a report ends with its check: {out}");
    r.check = last;
    r
}

/// (packets, bytes) of one of the check line's counts.
pub fn check_count(check: &serde_json::Value, what: &str) -> (u64, u64) {
    (
        check[what]["packets"].as_u64().unwrap_or(u64::MAX),
        check[what]["bytes"].as_u64().unwrap_or(u64::MAX),
    )
}

/// Every committed cut in the store: (ledger, seq), read directly.
#[track_caller]
pub fn stored_cuts(db: &Path) -> Vec<(i64, i64)> {
    let conn =
        rusqlite::Connection::open_with_flags(db, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
            .unwrap_or_else(|e| panic!("opening {}: {e}", db.display()));
    let mut st = conn
        .prepare("SELECT ledger, seq FROM cut ORDER BY ledger, seq")
        .expect("querying the cuts");
    let rows = st
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
        .expect("querying the cuts");
    rows.collect::<rusqlite::Result<_>>()
        .expect("reading the cuts")
}

/// The sum of one column of the store's cut rows, read directly.
#[track_caller]
pub fn stored_sum(db: &Path, column: &str) -> i64 {
    let conn =
        rusqlite::Connection::open_with_flags(db, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
            .unwrap_or_else(|e| panic!("opening {}: {e}", db.display()));
    conn.query_row(&format!("SELECT total({column}) FROM cut"), [], |r| {
        r.get::<_, f64>(0)
    })
    .map(|v| v as i64)
    .unwrap_or_else(|e| panic!("summing cut.{column}: {e}"))
}

// ---------------------------------------------------------------------------
// Mounts, files, randomness

/// A tmpfs mounted for the test; unmounted on drop (lazily if busy).
pub struct Tmpfs {
    path: PathBuf,
}

impl Tmpfs {
    /// Mount a tmpfs of `size` (e.g. "8m") at `path` (created).
    #[track_caller]
    pub fn mount(path: &Path, size: &str) -> Tmpfs {
        std::fs::create_dir_all(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        let o = output_of({
            let mut c = Command::new("mount");
            c.args([
                "-t",
                "tmpfs",
                "-o",
                &format!("size={size},mode=0755"),
                "tmpfs",
            ])
            .arg(path);
            c
        });
        assert!(
            o.status.success(),
            "mounting a tmpfs at {}: {}",
            path.display(),
            String::from_utf8_lossy(&o.stderr)
        );
        Tmpfs {
            path: path.to_path_buf(),
        }
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let ok = Command::new("umount")
            .arg(&self.path)
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        if !ok {
            let _ = Command::new("umount").arg("-l").arg(&self.path).status();
        }
    }
}

/// Fill the file system holding `dir` with a file, until it has no space
/// left; returns the file.
#[track_caller]
pub fn fill(dir: &Path) -> PathBuf {
    let path = dir.join("filler");
    let mut f = std::fs::File::create(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let buf = vec![0x5au8; 64 << 10];
    loop {
        match f.write(&buf) {
            Ok(0) => break,
            Ok(_) => {}
            Err(e) if e.raw_os_error() == Some(libc::ENOSPC) => break,
            Err(e) => panic!("filling {}: {e}", path.display()),
        }
    }
    path
}

/// A small deterministic generator (splitmix64).
pub struct Rng(u64);

impl Rng {
    /// Seeded from NETLEDGER_TEST_SEED when set, else from the clock;
    /// returns the seed too (print it: the same seed repeats the run).
    pub fn seeded() -> (Rng, u64) {
        let seed = std::env::var("NETLEDGER_TEST_SEED")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| {
                SystemTime::now()
                    .duration_since(UNIX_EPOCH)
                    .map(|d| d.as_nanos() as u64)
                    .unwrap_or(1)
                    ^ u64::from(std::process::id()) << 32
            });
        (Rng(seed), seed)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// A duration between `lo` and `hi` milliseconds.
    pub fn millis(&mut self, lo: u64, hi: u64) -> Duration {
        Duration::from_millis(lo + self.next_u64() % (hi - lo + 1))
    }
}
