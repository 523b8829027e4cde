//! Floods of new keys: a SYN-flood shape (random source addresses and
//! ports, every frame a new five-tuple) through a veth pair into `netledger
//! watch --format jsonl --interval 500ms --max-flows 2048` (both strategies)
//! and into `netledger run --jsonl` (both strategies), far more distinct
//! keys per interval than the flow map holds.
//!
//! Every interval must be conserved (`seen == counted + non_ip + malformed +
//! map_full + evict_race`, and `counted` the sum of its flow records); the
//! map fills and new keys land in `map_full`; a known flow is counted
//! exactly: with strategy `lock`, the flow that had its slot before the
//! flood, through it and after it; with either strategy, a flow that starts
//! after the flood (with `lock` only once eviction has freed slots, which
//! shows eviction keeps the map usable). With `swap` every cut starts an
//! empty generation, so during a flood an established flow competes for a
//! slot like a new key: its frames that find the map full are in `map_full`
//! (checked: what is missing from the flow is at most what `map_full` holds).
//! Cuts keep their period (every full interval within a bound of 500 ms) and
//! the daemon's memory stays bounded (VmRSS sampled during the flood).
//!
//! Needs root; nothing skips. Each test takes about 12 s; they run one at a
//! time. Run with `cargo test -p netledger-cli --test flood -- --nocapture`
//! for the figures.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::os::fd::{AsFd, AsRawFd};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use netledger_lab::netns::{self, Ipv6Mode, NetNs, RawSocket, Veth};

const BIN: &str = env!("CARGO_BIN_EXE_netledger");

/// Capacity of the flow map.
const MAX_FLOWS: u32 = 2048;
/// The interval, and its length in ms.
const INTERVAL: &str = "500ms";
const INTERVAL_MS: f64 = 500.0;
/// How long the flood lasts, and the frames it sends at most.
const FLOOD_FOR: Duration = Duration::from_secs(4);
const FLOOD_MAX: u64 = 2_000_000;
/// Frames per sendmmsg call; one in each batch is a frame of the known flow.
const BATCH: usize = 64;
/// Idle intervals after which `lock` evicts a key.
const EVICT_IDLE: u32 = 2;
/// The largest VmRSS the daemon may reach during the flood, and how much it
/// may grow from before the flood to its end.
const RSS_MAX_KIB: u64 = 256 << 10;
const RSS_GROWTH_MAX_KIB: u64 = 64 << 10;
/// A full interval may be at most this much longer or shorter than 500 ms.
const PERIOD_SLACK_MS: f64 = 400.0;

/// One flood at a time: they saturate a CPU and are timed.
static SERIAL: Mutex<()> = Mutex::new(());

fn serial() -> MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|e| e.into_inner())
}

// ---------------------------------------------------------------------------
// Frames

/// A small deterministic generator (splitmix64).
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
}

fn ipv4_checksum(h: &[u8]) -> u16 {
    let mut sum = 0u32;
    for (i, w) in h.chunks(2).enumerate() {
        if i != 5 {
            sum += u32::from(u16::from_be_bytes([w[0], w[1]]));
        }
    }
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

/// A TCP SYN (54 bytes) to 10.99.0.2:80 from a random address of
/// 10.128.0.0/9 and a random port: a new five-tuple almost every time.
fn syn(macs: ([u8; 6], [u8; 6]), rng: &mut Rng, out: &mut [u8; 54]) {
    let r = rng.next();
    out[0..6].copy_from_slice(&macs.1);
    out[6..12].copy_from_slice(&macs.0);
    out[12..14].copy_from_slice(&0x0800u16.to_be_bytes());
    let ip = &mut out[14..34];
    ip.copy_from_slice(&[
        0x45, 0, 0, 40, 0, 0, 0x40, 0, 64, 6, 0, 0, 10, 0, 0, 0, 10, 99, 0, 2,
    ]);
    ip[13] = 0x80 | (r as u8 & 0x7f);
    ip[14] = (r >> 8) as u8;
    ip[15] = (r >> 16) as u8;
    let c = ipv4_checksum(ip);
    ip[10..12].copy_from_slice(&c.to_be_bytes());
    let tcp = &mut out[34..54];
    tcp.fill(0);
    tcp[0..2].copy_from_slice(&((r >> 24) as u16 | 1024).to_be_bytes());
    tcp[2..4].copy_from_slice(&80u16.to_be_bytes());
    tcp[4..8].copy_from_slice(&((r >> 32) as u32).to_be_bytes());
    tcp[12] = 5 << 4;
    tcp[13] = 0x02; // SYN
    tcp[14..16].copy_from_slice(&64240u16.to_be_bytes());
}

/// A known UDP flow: 10.99.0.X:SPORT -> 10.99.0.2:SPORT+1, 100-byte frames.
#[derive(Debug, Clone, Copy)]
struct Known {
    host: u8,
    sport: u16,
}

impl Known {
    const LEN: u64 = 100;

    fn frame(self, macs: ([u8; 6], [u8; 6])) -> Vec<u8> {
        let mut f = Vec::new();
        etherparse::PacketBuilder::ethernet2(macs.0, macs.1)
            .ipv4([10, 99, 0, self.host], [10, 99, 0, 2], 64)
            .udp(self.sport, self.sport + 1)
            .write(&mut f, &[0x5a; 58])
            .expect("building a frame");
        assert_eq!(f.len() as u64, Self::LEN);
        f
    }

    fn matches(self, k: &serde_json::Value) -> bool {
        k["src"] == format!("10.99.0.{}", self.host).as_str()
            && k["proto"] == "udp"
            && k["sport"] == self.sport
    }
}

const A: Known = Known {
    host: 1,
    sport: 5555,
};
const B: Known = Known {
    host: 3,
    sport: 6666,
};

/// Sends frames through a raw socket with sendmmsg.
struct Sender {
    sock: RawSocket,
    macs: ([u8; 6], [u8; 6]),
}

impl Sender {
    /// Send every frame of `frames` (retrying what the socket did not take).
    fn send_all(&self, frames: &[&[u8]]) {
        let mut iov: Vec<libc::iovec> = frames
            .iter()
            .map(|f| libc::iovec {
                iov_base: f.as_ptr() as *mut libc::c_void,
                iov_len: f.len(),
            })
            .collect();
        let mut msgs: Vec<libc::mmsghdr> = iov
            .iter_mut()
            .map(|v| {
                // SAFETY: mmsghdr is plain data; all zeroes is a valid value.
                let mut m: libc::mmsghdr = unsafe { std::mem::zeroed() };
                m.msg_hdr.msg_iov = v;
                m.msg_hdr.msg_iovlen = 1;
                m
            })
            .collect();
        let mut at = 0;
        while at < msgs.len() {
            // SAFETY: every mmsghdr points at one iovec of a live frame; the
            // count is what remains of `msgs`.
            let n = unsafe {
                libc::sendmmsg(
                    self.sock.as_fd().as_raw_fd(),
                    msgs[at..].as_mut_ptr(),
                    (msgs.len() - at) as libc::c_uint,
                    0,
                )
            };
            if n < 0 {
                let e = std::io::Error::last_os_error();
                match e.raw_os_error() {
                    Some(libc::EINTR) => continue,
                    Some(libc::ENOBUFS) | Some(libc::EAGAIN) => {
                        std::thread::sleep(Duration::from_micros(50));
                        continue;
                    }
                    _ => panic!("sendmmsg: {e}"),
                }
            }
            at += n as usize;
        }
    }

    /// `n` frames of `flow`, as fast as they go.
    fn known(&self, flow: Known, n: u64) {
        let f = flow.frame(self.macs);
        for _ in 0..n {
            self.send_all(&[&f]);
        }
    }

    /// The flood: random SYNs, one frame of `flow` per batch, until `FLOOD_FOR`
    /// or `FLOOD_MAX` frames. Returns (flood frames, frames of `flow`).
    fn flood(&self, flow: Known, seed: u64) -> (u64, u64) {
        let mut rng = Rng(seed);
        let known = flow.frame(self.macs);
        let mut bufs = vec![[0u8; 54]; BATCH - 1];
        let (mut flood, mut sent_known) = (0u64, 0u64);
        let start = Instant::now();
        while start.elapsed() < FLOOD_FOR && flood < FLOOD_MAX {
            for b in bufs.iter_mut() {
                syn(self.macs, &mut rng, b);
            }
            let mut frames: Vec<&[u8]> = bufs.iter().map(|b| &b[..]).collect();
            frames.push(&known);
            self.send_all(&frames);
            flood += (BATCH - 1) as u64;
            sent_known += 1;
        }
        (flood, sent_known)
    }
}

// ---------------------------------------------------------------------------
// The testbed

/// Two namespaces joined by a veth pair (`nlhd0` receives); the pins of
/// the receiving end and a temporary directory are removed on drop.
struct Bed {
    veth: Option<Veth>,
    rx: NetNs,
    tx: NetNs,
    pins: PathBuf,
    dir: tempfile::TempDir,
}

const RX_IF: &str = "nlhd0";
const TX_IF: &str = "nlhd1";

impl Bed {
    fn new(tag: &str) -> Bed {
        let rx = NetNs::create(&format!("nlhd-{tag}-rx"))
            .unwrap_or_else(|e| panic!("creating a network namespace: {e}"));
        let tx = NetNs::create(&format!("nlhd-{tag}-tx"))
            .unwrap_or_else(|e| panic!("creating a network namespace: {e}"));
        let veth = netns::veth_pair(TX_IF, Some(&tx), RX_IF, Some(&rx))
            .unwrap_or_else(|e| panic!("creating veth {TX_IF} <-> {RX_IF}: {e}"));
        for end in [veth.a(), veth.b()] {
            end.prepare(Ipv6Mode::Off)
                .unwrap_or_else(|e| panic!("preparing {}: {e}", end.name()));
        }
        let pins = rx
            .run(|| netledger::pin_dir(RX_IF))
            .unwrap_or_else(|e| panic!("the pin directory of {RX_IF}: {e}"));
        // A namespace may reuse a deleted one's inode: pins there are stale.
        remove_pins(&pins);
        let dir = tempfile::Builder::new()
            .prefix(&format!("nlhd-{tag}-"))
            .tempdir()
            .unwrap_or_else(|e| panic!("creating a temporary directory: {e}"));
        Bed {
            veth: Some(veth),
            rx,
            tx,
            pins,
            dir,
        }
    }

    fn sender(&self) -> Sender {
        let veth = self.veth.as_ref().expect("the veth pair");
        let mac = |i: &netns::Iface| {
            i.mac()
                .unwrap_or_else(|e| panic!("MAC of {}: {e}", i.name()))
        };
        let macs = (mac(veth.a()), mac(veth.b()));
        let sock = RawSocket::open_in(Some(&self.tx), TX_IF)
            .unwrap_or_else(|e| panic!("opening a raw socket on {TX_IF}: {e}"));
        Sender { sock, macs }
    }

    /// Frames the sending end dropped (the receiving backlog was full):
    /// those never reached the hook.
    fn tx_dropped(&self) -> u64 {
        let out = self
            .tx
            .ip(&["-s", "-j", "link", "show", "dev", TX_IF])
            .unwrap_or_else(|e| panic!("ip -s link show {TX_IF}: {e}"));
        let v: serde_json::Value = serde_json::from_str(&out).expect("ip -j is JSON");
        v[0]["stats64"]["tx"]["dropped"].as_u64().unwrap_or(0)
    }

    fn spawn(&self, args: &[String]) -> Proc {
        Proc::spawn(&self.rx, args)
    }
}

impl Drop for Bed {
    fn drop(&mut self) {
        remove_pins(&self.pins);
        drop(self.veth.take());
    }
}

/// Remove a pin directory and its parents once empty (not bpffs itself).
fn remove_pins(dir: &std::path::Path) {
    if dir.exists() {
        if let Err(e) = std::fs::remove_dir_all(dir) {
            eprintln!("could not remove the pins {}: {e}", dir.display());
        }
    }
    let mut up = dir.parent();
    for _ in 0..2 {
        match up {
            Some(d) if std::fs::remove_dir(d).is_ok() => up = d.parent(),
            _ => break,
        }
    }
}

/// Lines of output, collected by a thread.
type Lines = Arc<Mutex<Vec<String>>>;

/// A netledger child in the receiving namespace: stdout lines and stderr
/// lines collected by threads; killed (-9) and reaped on drop.
struct Proc {
    child: Child,
    pid: u32,
    out: Lines,
    err: Lines,
    readers: Vec<JoinHandle<()>>,
    reaped: bool,
}

impl Proc {
    fn spawn(ns: &NetNs, args: &[String]) -> Proc {
        // nsenter enters the network namespace only (bpffs stays visible) and
        // execs netledger: the child's pid is netledger's.
        let mut child = Command::new("nsenter")
            .arg(format!("--net=/run/netns/{}", ns.name()))
            .arg(BIN)
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("starting netledger {args:?}: {e}"));
        let collect = |r: Box<dyn std::io::Read + Send>, into: Lines| {
            std::thread::spawn(move || {
                for line in BufReader::new(r).lines() {
                    let Ok(line) = line else { break };
                    into.lock().unwrap_or_else(|e| e.into_inner()).push(line);
                }
            })
        };
        let (out, err): (Lines, Lines) = Default::default();
        let readers = vec![
            collect(Box::new(child.stdout.take().unwrap()), Arc::clone(&out)),
            collect(Box::new(child.stderr.take().unwrap()), Arc::clone(&err)),
        ];
        Proc {
            pid: child.id(),
            child,
            out,
            err,
            readers,
            reaped: false,
        }
    }

    fn stderr(&self) -> String {
        self.err
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .join("\n")
    }

    /// Wait until stderr has a line containing `needle`.
    fn wait_for(&mut self, needle: &str) {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if self.stderr().contains(needle) {
                return;
            }
            if let Ok(Some(st)) = self.child.try_wait() {
                self.reaped = true;
                panic!(
                    "netledger exited ({st}) before saying {needle:?}: {}",
                    self.stderr()
                );
            }
            assert!(
                Instant::now() < deadline,
                "netledger did not say {needle:?} in 30 s: {}",
                self.stderr()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// VmRSS in KiB.
    fn rss_kib(&self) -> u64 {
        let s = std::fs::read_to_string(format!("/proc/{}/status", self.pid)).unwrap_or_default();
        s.lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .unwrap_or(0)
    }

    /// Send `signal`, wait for the exit (20 s at most), and return stdout.
    fn stop(&mut self, signal: i32) -> Vec<String> {
        // SAFETY: kill(2) on our own child, not yet reaped.
        unsafe { libc::kill(self.pid as i32, signal) };
        let deadline = Instant::now() + Duration::from_secs(20);
        let status = loop {
            if let Some(st) = self.child.try_wait().expect("waiting for netledger") {
                break st;
            }
            if Instant::now() > deadline {
                let _ = self.child.kill();
                let _ = self.child.wait();
                self.reaped = true;
                panic!("netledger did not stop within 20 s: {}", self.stderr());
            }
            std::thread::sleep(Duration::from_millis(10));
        };
        self.reaped = true;
        for r in self.readers.drain(..) {
            let _ = r.join();
        }
        assert!(
            status.success(),
            "netledger ended with {status}: {}",
            self.stderr()
        );
        self.out.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        if !self.reaped {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

// ---------------------------------------------------------------------------
// Intervals

#[derive(Debug, Default, Clone)]
struct Interval {
    start_ms: i64,
    end_ms: i64,
    seen: (u64, u64),
    buckets: BTreeMap<String, (u64, u64)>,
    flows: usize,
    flow_sum: (u64, u64),
    known: BTreeMap<u16, (u64, u64)>,
}

impl Interval {
    fn bucket(&self, name: &str) -> (u64, u64) {
        self.buckets.get(name).copied().unwrap_or_default()
    }
    fn len_ms(&self) -> f64 {
        (self.end_ms - self.start_ms) as f64
    }
}

/// Milliseconds since the epoch of "2026-11-25T21:00:00.000Z".
fn parse_time(s: &str) -> i64 {
    let num = |r: std::ops::Range<usize>| -> i64 {
        s.get(r)
            .and_then(|t| t.parse().ok())
            .unwrap_or_else(|| panic!("a time like 2026-01-01T00:00:00.000Z: {s:?}"))
    };
    let (y, m, d) = (num(0..4), num(5..7), num(8..10));
    let (hh, mm, ss, ms) = (num(11..13), num(14..16), num(17..19), num(20..23));
    // Days from civil (Howard Hinnant).
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    ((days * 24 + hh) * 60 + mm) * 60_000 + ss * 1000 + ms
}

fn count(v: &serde_json::Value) -> (u64, u64) {
    (
        v["packets"].as_u64().expect("packets"),
        v["bytes"].as_u64().expect("bytes"),
    )
}

/// The intervals of JSON lines: flow records, then a summary, each.
fn intervals(lines: &[String]) -> Vec<Interval> {
    let mut out = Vec::new();
    let mut cur = Interval::default();
    for line in lines {
        let v: serde_json::Value =
            serde_json::from_str(line).unwrap_or_else(|e| panic!("not a JSON line ({e}): {line}"));
        match v["type"].as_str() {
            Some("flow") => {
                let c = count(&v);
                cur.flows += 1;
                cur.flow_sum.0 += c.0;
                cur.flow_sum.1 += c.1;
                for k in [A, B] {
                    if k.matches(&v["key"]) {
                        let e = cur.known.entry(k.sport).or_default();
                        e.0 += c.0;
                        e.1 += c.1;
                    }
                }
            }
            Some("summary") => {
                cur.start_ms = parse_time(v["start"].as_str().expect("start"));
                cur.end_ms = parse_time(v["end"].as_str().expect("end"));
                cur.seen = count(&v["seen"]);
                for (name, c) in v["buckets"].as_object().expect("buckets") {
                    cur.buckets.insert(name.clone(), count(c));
                }
                out.push(std::mem::take(&mut cur));
            }
            other => panic!("unexpected line type {other:?}: {line}"),
        }
    }
    assert_eq!(cur.flows, 0, "flow records after the last summary");
    out
}

// ---------------------------------------------------------------------------
// The scenario

/// What a flood did and what the daemon reported.
struct Outcome {
    intervals: Vec<Interval>,
    flood: u64,
    flood_secs: f64,
    a_sent: u64,
    b_sent: u64,
    rss_before: u64,
    rss_max: u64,
    rss_end: u64,
    tx_dropped: u64,
}

/// Run a flood through `cmd` (watch or run, printing JSON lines on stdout).
fn flood_through(bed: &Bed, args: &[String], ready: &str, stop_signal: i32) -> Outcome {
    let mut p = bed.spawn(args);
    p.wait_for(ready);
    let sender = bed.sender();
    let seed = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(7);
    eprintln!("flood seed {seed}");
    // The known flow first: it has a slot before the map fills.
    sender.known(A, 50);
    let mut a_sent = 50;
    std::thread::sleep(Duration::from_millis(600));
    let rss_before = p.rss_kib();

    // The flood, on its own thread; the daemon's memory sampled meanwhile.
    let (tx, rx) = mpsc::channel();
    let flood_started = Instant::now();
    let ((flood, known_in_flood), rss_flood) = std::thread::scope(|s| {
        let h = s.spawn(|| {
            let r = sender.flood(A, seed);
            let _ = tx.send(());
            r
        });
        let mut rss_max = rss_before;
        while rx.recv_timeout(Duration::from_millis(100)).is_err() {
            rss_max = rss_max.max(p.rss_kib());
        }
        (h.join().expect("the flood thread"), rss_max)
    });
    let flood_secs = flood_started.elapsed().as_secs_f64();
    let rss_max = p.rss_kib().max(rss_flood);
    a_sent += known_in_flood;
    // The known flow goes on after the flood.
    sender.known(A, 200);
    a_sent += 200;
    // Idle flood keys are evicted (lock) after EVICT_IDLE cuts; a new flow
    // after that must find a slot.
    std::thread::sleep(Duration::from_millis(500 * (u64::from(EVICT_IDLE) + 2)));
    let rss_end = p.rss_kib();
    sender.known(B, 300);
    let b_sent = 300;
    std::thread::sleep(Duration::from_millis(700));
    let lines = p.stop(stop_signal);
    Outcome {
        intervals: intervals(&lines),
        flood,
        flood_secs,
        a_sent,
        b_sent,
        rss_before,
        rss_max: rss_max.max(rss_end),
        rss_end,
        tx_dropped: bed.tx_dropped(),
    }
}

/// The checks every flood must pass; `lock`: the established flow is exact.
fn check(name: &str, o: &Outcome, lock: bool) {
    let iv = &o.intervals;
    let lens: Vec<f64> = iv.iter().map(Interval::len_ms).collect();
    let mut sorted: Vec<f64> = lens[..lens.len().saturating_sub(1)].to_vec();
    sorted.sort_by(f64::total_cmp);
    let max_seen = iv.iter().map(|i| i.seen.0).max().unwrap_or(0);
    let map_full: u64 = iv.iter().map(|i| i.bucket("map_full").0).sum();
    let max_flows_iv = iv.iter().map(|i| i.flows).max().unwrap_or(0);
    let known = |k: Known| -> (u64, u64) {
        iv.iter()
            .filter_map(|i| i.known.get(&k.sport))
            .fold((0, 0), |a, c| (a.0 + c.0, a.1 + c.1))
    };
    let (a, b) = (known(A), known(B));
    eprintln!(
        "{name}: {} frames flooded in {:.2} s ({:.0} frames/s), {} intervals; \
         most frames (= new keys) in one interval {max_seen} ({:.1}x max-flows); \
         map_full {map_full} frames in all; most flow records in one interval {max_flows_iv}; \
         interval lengths (full ones) min {:.0} / median {:.0} / max {:.0} ms; \
         VmRSS before {} KiB, max during the flood {} KiB, after {} KiB; \
         known flow A sent {} counted {}; B sent {} counted {}; veth tx drops {}",
        o.flood,
        o.flood_secs,
        o.flood as f64 / o.flood_secs,
        iv.len(),
        max_seen as f64 / f64::from(MAX_FLOWS),
        sorted.first().copied().unwrap_or(0.0),
        sorted.get(sorted.len() / 2).copied().unwrap_or(0.0),
        sorted.last().copied().unwrap_or(0.0),
        o.rss_before,
        o.rss_max,
        o.rss_end,
        o.a_sent,
        a.0,
        o.b_sent,
        b.0,
        o.tx_dropped,
    );
    let (mut flows_so_far, mut counted_so_far) = ((0u64, 0u64), (0u64, 0u64));
    for (n, i) in iv.iter().enumerate() {
        let parts: u64 = ["counted", "non_ip", "malformed", "map_full", "evict_race"]
            .iter()
            .map(|b| i.bucket(b).0)
            .sum();
        let parts_bytes: u64 = ["counted", "non_ip", "malformed", "map_full", "evict_race"]
            .iter()
            .map(|b| i.bucket(b).1)
            .sum();
        assert_eq!(
            (i.seen.0, i.seen.1),
            (parts, parts_bytes),
            "{name}: interval {n} not conserved: {i:?}"
        );
        if lock {
            // A lock cut takes the flows (slot by slot) and then the
            // buckets: a frame counted in between is in this interval's
            // `counted` and in the next one's records. So the records never
            // run ahead of `counted`, and catch up at the end.
            flows_so_far.0 += i.flow_sum.0;
            flows_so_far.1 += i.flow_sum.1;
            counted_so_far.0 += i.bucket("counted").0;
            counted_so_far.1 += i.bucket("counted").1;
            assert!(
                flows_so_far.0 <= counted_so_far.0 && flows_so_far.1 <= counted_so_far.1,
                "{name}: up to interval {n}, the flow records {flows_so_far:?} exceed counted {counted_so_far:?}"
            );
        } else {
            // swap cuts flows and buckets at one instant.
            assert_eq!(
                i.flow_sum,
                i.bucket("counted"),
                "{name}: interval {n}: the flow records do not add up to counted"
            );
        }
        assert!(
            i.flows <= MAX_FLOWS as usize,
            "{name}: interval {n} has {} flows, more than the map holds",
            i.flows
        );
        assert_eq!(
            i.bucket("non_ip").0 + i.bucket("malformed").0,
            0,
            "{name}: interval {n}: only IPv4 TCP/UDP was sent"
        );
    }
    if lock {
        assert_eq!(
            flows_so_far, counted_so_far,
            "{name}: over all intervals the flow records add up to counted"
        );
    }
    assert_eq!(
        o.tx_dropped, 0,
        "{name}: the sending veth dropped frames before they reached the hook (receive backlog full): \
         the sent counts are not what the hook saw"
    );
    let total_seen: u64 = iv.iter().map(|i| i.seen.0).sum();
    assert_eq!(
        total_seen,
        o.flood + o.a_sent + o.b_sent,
        "{name}: every frame sent is in exactly one interval"
    );
    assert!(
        max_seen >= 10 * u64::from(MAX_FLOWS),
        "{name}: no interval had 10x max-flows new keys (most: {max_seen}); the flood was too slow"
    );
    assert!(map_full > 0, "{name}: the map never filled");
    // The flow that starts after the flood is exact (with lock: eviction
    // freed the slots the flood took).
    assert_eq!(
        b,
        (o.b_sent, o.b_sent * Known::LEN),
        "{name}: flow B after the flood"
    );
    if lock {
        assert_eq!(
            a,
            (o.a_sent, o.a_sent * Known::LEN),
            "{name}: the established flow A before, during and after the flood"
        );
    } else {
        assert!(a.0 <= o.a_sent, "{name}: flow A counted more than sent");
        assert!(
            o.a_sent - a.0 <= map_full,
            "{name}: flow A's frames missing from its flow ({}) must be in map_full ({map_full})",
            o.a_sent - a.0
        );
    }
    for (n, l) in lens[..lens.len() - 1].iter().enumerate().skip(1) {
        assert!(
            (l - INTERVAL_MS).abs() <= PERIOD_SLACK_MS,
            "{name}: interval {n} lasted {l} ms, not {INTERVAL_MS} +- {PERIOD_SLACK_MS}: {lens:?}"
        );
    }
    assert!(
        o.rss_max <= RSS_MAX_KIB && o.rss_end <= o.rss_before + RSS_GROWTH_MAX_KIB,
        "{name}: VmRSS before {} KiB, max {} KiB, after {} KiB: bounds {RSS_MAX_KIB} KiB and +{RSS_GROWTH_MAX_KIB} KiB",
        o.rss_before,
        o.rss_max,
        o.rss_end
    );
}

fn watch_args(strategy: &str) -> Vec<String> {
    let max_flows = MAX_FLOWS.to_string();
    let evict = EVICT_IDLE.to_string();
    [
        "watch",
        "--iface",
        RX_IF,
        "--format",
        "jsonl",
        "--interval",
        INTERVAL,
        "--max-flows",
        &max_flows,
        "--strategy",
        strategy,
        "--evict-idle",
        &evict,
    ]
    .iter()
    .map(|s| s.to_string())
    .collect()
}

fn run_args(bed: &Bed, strategy: &str) -> Vec<String> {
    let mut args = watch_args(strategy);
    args[0] = "run".into();
    // `run` has no --format: --jsonl prints the same lines.
    args.splice(3..5, ["--jsonl".to_string()]);
    args.extend([
        "--db".to_string(),
        bed.dir.path().join("n.db").display().to_string(),
        "--socket".to_string(),
        bed.dir.path().join("s.sock").display().to_string(),
    ]);
    args
}

#[test]
fn watch_lock_survives_a_flood_of_new_keys() {
    let _serial = serial();
    let bed = Bed::new("wl");
    let o = flood_through(&bed, &watch_args("lock"), "counting ingress", libc::SIGINT);
    check("watch lock", &o, true);
}

#[test]
fn watch_swap_survives_a_flood_of_new_keys() {
    let _serial = serial();
    let bed = Bed::new("ws");
    let o = flood_through(&bed, &watch_args("swap"), "counting ingress", libc::SIGINT);
    check("watch swap", &o, false);
}

#[test]
fn run_lock_survives_a_flood_of_new_keys() {
    let _serial = serial();
    let bed = Bed::new("rl");
    let args = run_args(&bed, "lock");
    let o = flood_through(&bed, &args, "attached", libc::SIGTERM);
    check("run lock", &o, true);
    down(&bed);
}

#[test]
fn run_swap_survives_a_flood_of_new_keys() {
    let _serial = serial();
    let bed = Bed::new("rs");
    let args = run_args(&bed, "swap");
    let o = flood_through(&bed, &args, "attached", libc::SIGTERM);
    check("run swap", &o, false);
    down(&bed);
}

/// `netledger down`: the service's pins go (the bed removes them anyway).
fn down(bed: &Bed) {
    let db = bed.dir.path().join("n.db").display().to_string();
    let o = Command::new("nsenter")
        .arg(format!("--net=/run/netns/{}", bed.rx.name()))
        .args([BIN, "down", "--iface", RX_IF, "--db", &db])
        .stdin(Stdio::null())
        .output()
        .expect("running netledger down");
    assert!(
        o.status.success(),
        "netledger down: {}",
        String::from_utf8_lossy(&o.stderr)
    );
}
