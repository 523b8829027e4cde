//! The exports of `netledger watch` and `netledger run` against their real
//! consumers, on real packets sent through a veth pair between two network
//! namespaces the tests create (and always remove). Each consumer runs on
//! loopback inside the counting namespace, where netledger runs:
//!
//! * `--metrics`: `promtool check metrics` on a scrape, a Prometheus server
//!   (temp config and storage, 1 s scrapes) queried through its HTTP API,
//!   the top-N flow series and their drop counter, OpenMetrics on `Accept`;
//!   the service's counters across a restart (seeded from its store).
//! * `--ipfix`: nfcapd (UDP, and a TCP collector relaying each message to
//!   nfcapd) read back with nfdump, and a capture of the export decoded by
//!   tshark; per-flow packets and IP-layer bytes (no Ethernet padding, no
//!   VLAN tags) must equal what was sent. A collector started late decodes
//!   from the next template refresh on; a collector that is down costs
//!   nothing but counted drops.
//!
//! Ground truth is a capture of every frame leaving the sending end, read
//! byte by byte here, and the watch's own JSON lines.

mod consumers;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::io::{ErrorKind, Read, Write};
use std::net::{IpAddr, SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::os::unix::fs::MetadataExt;
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use consumers::*;
use netledger_lab::netns::{self, Capture, Ipv6Mode, NetNs, RawSocket, Veth};
use serde_json::Value;

const BIN: &str = env!("CARGO_BIN_EXE_netledger");

// ---------------------------------------------------------------------------
// The testbed

const TX4: &str = "10.77.0.1";
const TX4B: &str = "10.77.0.11";
const RX4: &str = "10.77.0.2";
const TX6: &str = "fd00:77::1";
const RX6: &str = "fd00:77::2";

/// Two namespaces joined by a veth pair: frames leave `tx` on `tx_if` and
/// are counted arriving on `rx_if` in `rx`. Fields drop in order: the pair,
/// then the namespaces.
struct Bed {
    veth: Veth,
    tx: NetNs,
    rx: NetNs,
    tx_if: String,
    rx_if: String,
    tx_mac: [u8; 6],
    rx_mac: [u8; 6],
}

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap_or_else(|e| panic!("{s}: {e}"))
}

impl Bed {
    /// A quiet pair (offloads off, static addresses and neighbours, no
    /// IPv6 link-local traffic) named after `tag`.
    #[track_caller]
    fn new(tag: &str) -> Bed {
        let tx = NetNs::create(&format!("nlex-{tag}-tx")).must("creating a namespace");
        let rx = NetNs::create(&format!("nlex-{tag}-rx")).must("creating a namespace");
        let (tx_if, rx_if) = (format!("nlex{tag}0"), format!("nlex{tag}1"));
        let veth =
            netns::veth_pair(&tx_if, Some(&tx), &rx_if, Some(&rx)).must("creating a veth pair");
        let (a, b) = (veth.a(), veth.b());
        a.prepare(Ipv6Mode::Static)
            .must("preparing the sending end");
        b.prepare(Ipv6Mode::Static)
            .must("preparing the counting end");
        let (tx_mac, rx_mac) = (a.mac().must("tx mac"), b.mac().must("rx mac"));
        for (end, addrs) in [(a, &[TX4, TX4B, TX6][..]), (b, &[RX4, RX6][..])] {
            for s in addrs {
                let len = if s.contains(':') { 64 } else { 24 };
                end.add_addr(ip(s), len).must("adding an address");
            }
        }
        for s in [TX4, TX4B, TX6] {
            b.add_neigh(ip(s), tx_mac).must("adding a neighbour");
        }
        for s in [RX4, RX6] {
            a.add_neigh(ip(s), rx_mac).must("adding a neighbour");
        }
        // The MLD reports of the IPv6 addresses go out as they are added;
        // let them pass before anything counts.
        std::thread::sleep(Duration::from_millis(300));
        Bed {
            veth,
            tx,
            rx,
            tx_if,
            rx_if,
            tx_mac,
            rx_mac,
        }
    }

    /// The counting end's interface index (in its namespace).
    fn rx_ifindex(&self) -> u64 {
        u64::from(self.veth.b().ifindex().must("rx ifindex"))
    }

    /// The directory `netledger run` pins the counting end's ledgers in.
    fn pin_dir(&self) -> PathBuf {
        let ino = std::fs::metadata(format!("/run/netns/{}", self.rx.name()))
            .must("the counting namespace")
            .ino();
        PathBuf::from(format!("/sys/fs/bpf/netledger/ns{ino}/{}", self.rx_if))
    }

    /// Starts capturing every frame the sending end sends.
    fn capture(&self) -> Capture {
        Capture::start(Some(&self.tx), &self.tx_if).must("starting the capture")
    }

    /// UDP datagrams from `from` to `to`, one per payload size, from a socket
    /// in the sending namespace.
    fn send_udp(&self, from: &str, to: &str, sizes: &[usize]) {
        let to: SocketAddr = to.parse().must("an address");
        self.tx.run(|| {
            let s = UdpSocket::bind(from).must("binding a sender");
            for &size in sizes {
                s.send_to(&vec![0x5a; size], to).must("sending a datagram");
            }
        });
    }

    /// One TCP connection (from the sending end's first address) to `to`,
    /// carrying `writes`, to a server in the counting namespace that reads
    /// it all.
    fn send_tcp(&self, to: &str, writes: &[usize]) {
        let to: SocketAddr = to.parse().must("an address");
        let listener = self
            .rx
            .run(|| TcpListener::bind(to))
            .must("binding a TCP server");
        let server = std::thread::spawn(move || {
            let (mut s, _) = listener.accept().must("accepting");
            let mut buf = Vec::new();
            s.read_to_end(&mut buf).must("reading");
            buf.len()
        });
        let total: usize = writes.iter().sum();
        self.tx.run(|| {
            let mut s = TcpStream::connect(to).must("connecting");
            s.set_nodelay(true).must("TCP_NODELAY");
            for &n in writes {
                s.write_all(&vec![0x33; n]).must("writing");
            }
        });
        assert_eq!(server.join().expect("the TCP server"), total);
    }

    /// Hand-built frames, sent as they are through a raw socket.
    fn send_raw(&self, frames: &[Vec<u8>]) {
        let raw = RawSocket::open_in(Some(&self.tx), &self.tx_if).must("opening a raw socket");
        for f in frames {
            raw.send(f).must("sending a raw frame");
        }
    }

    /// An Ethernet frame from the sending end to the counting end with an
    /// IPv4 UDP datagram of `payload` bytes behind `tags` ((TPID, VLAN id),
    /// outermost first), zero-padded to at least `min_len` bytes.
    fn udp4_frame(
        &self,
        tags: &[(u16, u16)],
        (src, sport): ([u8; 4], u16),
        (dst, dport): ([u8; 4], u16),
        payload: usize,
        min_len: usize,
    ) -> Vec<u8> {
        let mut f = Vec::new();
        f.extend_from_slice(&self.rx_mac);
        f.extend_from_slice(&self.tx_mac);
        for (tpid, id) in tags {
            f.extend_from_slice(&tpid.to_be_bytes());
            f.extend_from_slice(&id.to_be_bytes());
        }
        f.extend_from_slice(&0x0800u16.to_be_bytes());
        let total = 28 + payload;
        let mut iph = vec![0x45, 0];
        iph.extend_from_slice(&(total as u16).to_be_bytes());
        iph.extend_from_slice(&[0, 0, 0x40, 0, 64, 17, 0, 0]);
        iph.extend_from_slice(&src);
        iph.extend_from_slice(&dst);
        let sum = !iph
            .chunks(2)
            .map(|w| u32::from(u16::from_be_bytes([w[0], w[1]])))
            .fold(0u32, |a, w| {
                let s = a + w;
                (s & 0xffff) + (s >> 16)
            }) as u16;
        iph[10..12].copy_from_slice(&sum.to_be_bytes());
        f.extend_from_slice(&iph);
        f.extend_from_slice(&sport.to_be_bytes());
        f.extend_from_slice(&dport.to_be_bytes());
        f.extend_from_slice(&((8 + payload) as u16).to_be_bytes());
        f.extend_from_slice(&[0, 0]);
        f.extend(std::iter::repeat_n(0xa5, payload));
        if f.len() < min_len {
            f.resize(min_len, 0);
        }
        f
    }
}

// ---------------------------------------------------------------------------
// Keys, ground truth and the watch's JSON lines

/// A five-tuple key as netledger makes it: `a`/`b` are the ports, or the
/// ICMP type and code; `vlan` is the outer VLAN id (0 when not keyed).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
struct Key {
    vlan: u16,
    src: IpAddr,
    dst: IpAddr,
    proto: u8,
    a: u16,
    b: u16,
}

/// Frames, their bytes on the wire, and the bytes of their IP datagrams.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
struct Tally {
    packets: u64,
    bytes: u64,
    ip_bytes: u64,
}

fn be16(f: &[u8], at: usize) -> u16 {
    u16::from_be_bytes([f[at], f[at + 1]])
}

/// The key of a frame (outer VLAN id in it when `vlan`) and its IP
/// datagram's length (IPv4 total length; IPv6 40 + payload length), read
/// from the bytes.
fn frame_key(f: &[u8], vlan: bool) -> Option<(Key, u64)> {
    let mut at = 12;
    let mut et = be16(f, at);
    let mut outer = None;
    while et == 0x8100 || et == 0x88a8 {
        outer.get_or_insert(be16(f, at + 2) & 0x0fff);
        at += 4;
        et = be16(f, at);
    }
    let l3 = at + 2;
    let (src, dst, mut proto, mut l4, ip_len) = match et {
        0x0800 => {
            let four = |at: usize| IpAddr::from(<[u8; 4]>::try_from(&f[at..at + 4]).unwrap());
            let ihl = usize::from(f[l3] & 0x0f) * 4;
            let len = u64::from(be16(f, l3 + 2));
            (four(l3 + 12), four(l3 + 16), f[l3 + 9], l3 + ihl, len)
        }
        0x86dd => {
            let six = |at: usize| IpAddr::from(<[u8; 16]>::try_from(&f[at..at + 16]).unwrap());
            let len = 40 + u64::from(be16(f, l3 + 4));
            (six(l3 + 8), six(l3 + 24), f[l3 + 6], l3 + 40, len)
        }
        _ => return None,
    };
    if et == 0x86dd {
        // Hop-by-hop, routing and destination options headers.
        while matches!(proto, 0 | 43 | 60) {
            proto = f[l4];
            l4 += (usize::from(f[l4 + 1]) + 1) * 8;
        }
    }
    let (a, b) = match proto {
        6 | 17 => (be16(f, l4), be16(f, l4 + 2)),
        1 | 58 => (u16::from(f[l4]), u16::from(f[l4 + 1])),
        _ => (0, 0),
    };
    let vlan = if vlan { outer.unwrap_or(0) } else { 0 };
    Some((
        Key {
            vlan,
            src,
            dst,
            proto,
            a,
            b,
        },
        ip_len,
    ))
}

/// Per key, what the captured frames add up to; every frame must be IP.
#[track_caller]
fn tally(frames: &[Vec<u8>], vlan: bool) -> BTreeMap<Key, Tally> {
    let mut out: BTreeMap<Key, Tally> = BTreeMap::new();
    for f in frames {
        let (k, ip_len) =
            frame_key(f, vlan).unwrap_or_else(|| panic!("the bed sent a non-IP frame: {f:02x?}"));
        let t = out.entry(k).or_default();
        t.packets += 1;
        t.bytes += f.len() as u64;
        t.ip_bytes += ip_len;
    }
    out
}

fn total(sent: &BTreeMap<Key, Tally>) -> Tally {
    sent.values().fold(Tally::default(), |a, t| Tally {
        packets: a.packets + t.packets,
        bytes: a.bytes + t.bytes,
        ip_bytes: a.ip_bytes + t.ip_bytes,
    })
}

/// One flow line of the JSON-lines output.
#[derive(Debug, Clone)]
struct FlowLine {
    key: Key,
    start_ms: u64,
    end_ms: u64,
    packets: u64,
    bytes: u64,
}

/// One summary line: the interval and its buckets (packets, bytes) in the
/// order seen, counted, non_ip, malformed, map_full, evict_race.
#[derive(Debug, Clone)]
struct SummaryLine {
    start_ms: u64,
    end_ms: u64,
    buckets: [(u64, u64); 6],
}

#[derive(Debug, Default)]
struct Jsonl {
    flows: Vec<FlowLine>,
    summaries: Vec<SummaryLine>,
}

const BUCKETS: [&str; 6] = [
    "seen",
    "counted",
    "non_ip",
    "malformed",
    "map_full",
    "evict_race",
];

impl Jsonl {
    /// Reads the complete lines of `text`.
    #[track_caller]
    fn parse(text: &str) -> Jsonl {
        let mut out = Jsonl::default();
        let complete = &text[..text.rfind('\n').map_or(0, |i| i + 1)];
        for line in complete.lines() {
            let v: Value = serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line}"));
            let (start_ms, end_ms) = (iso_ms(str_of(&v["start"])), iso_ms(str_of(&v["end"])));
            match v["type"].as_str() {
                Some("flow") => out.flows.push(FlowLine {
                    key: key_of_json(&v["key"]),
                    start_ms,
                    end_ms,
                    packets: num(&v["packets"]),
                    bytes: num(&v["bytes"]),
                }),
                Some("summary") => {
                    let mut buckets = [(0, 0); 6];
                    for (i, b) in BUCKETS.iter().enumerate() {
                        let c = if i == 0 { &v["seen"] } else { &v["buckets"][b] };
                        buckets[i] = (num(&c["packets"]), num(&c["bytes"]));
                    }
                    let parts = buckets[1..]
                        .iter()
                        .fold((0, 0), |a, b| (a.0 + b.0, a.1 + b.1));
                    assert_eq!(buckets[0], parts, "conservation: {line}");
                    out.summaries.push(SummaryLine {
                        start_ms,
                        end_ms,
                        buckets,
                    });
                }
                other => panic!("unknown record type {other:?}: {line}"),
            }
        }
        out
    }

    /// `seen` over every interval: (packets, bytes).
    fn seen(&self) -> (u64, u64) {
        self.summaries
            .iter()
            .fold((0, 0), |a, s| (a.0 + s.buckets[0].0, a.1 + s.buckets[0].1))
    }

    /// Per key, the flow lines added up.
    fn per_key(&self) -> BTreeMap<Key, (u64, u64)> {
        let mut out: BTreeMap<Key, (u64, u64)> = BTreeMap::new();
        for f in &self.flows {
            let e = out.entry(f.key).or_default();
            e.0 += f.packets;
            e.1 += f.bytes;
        }
        out
    }
}

#[track_caller]
fn str_of(v: &Value) -> &str {
    v.as_str().unwrap_or_else(|| panic!("not a string: {v}"))
}

#[track_caller]
fn num(v: &Value) -> u64 {
    match v {
        Value::Number(n) => n.as_u64(),
        Value::String(s) => s.parse().ok(),
        _ => None,
    }
    .unwrap_or_else(|| panic!("not a count: {v}"))
}

#[track_caller]
fn key_of_json(k: &Value) -> Key {
    let proto = match &k["proto"] {
        Value::String(s) => match s.as_str() {
            "tcp" => 6,
            "udp" => 17,
            "icmp" => 1,
            "icmpv6" => 58,
            "sctp" => 132,
            other => panic!("unknown protocol name {other}"),
        },
        other => num(other) as u8,
    };
    let (a, b) = if k.get("sport").is_some() {
        (num(&k["sport"]) as u16, num(&k["dport"]) as u16)
    } else if k.get("icmp_type").is_some() {
        (num(&k["icmp_type"]) as u16, num(&k["icmp_code"]) as u16)
    } else {
        (0, 0)
    };
    Key {
        vlan: k.get("vlan").map_or(0, |v| num(v) as u16),
        src: ip(str_of(&k["src"])),
        dst: ip(str_of(&k["dst"])),
        proto,
        a,
        b,
    }
}

// ---------------------------------------------------------------------------
// Times

fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = if m > 2 { m - 3 } else { m + 9 };
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// ms since the epoch of a UTC date and a `HH:MM:SS[.fraction]` time.
#[track_caller]
fn utc_ms(y: i64, m: i64, d: i64, time: &str) -> u64 {
    let (hms, frac) = time.split_once('.').unwrap_or((time, "0"));
    let t: Vec<i64> = hms
        .split(':')
        .map(|x| x.parse().unwrap_or_else(|_| panic!("time {time}")))
        .collect();
    let ms: i64 = format!("{frac:0<3}")[..3]
        .parse()
        .unwrap_or_else(|_| panic!("time {time}"));
    let secs = days_from_civil(y, m, d) * 86_400 + t[0] * 3600 + t[1] * 60 + t[2];
    (secs * 1000 + ms) as u64
}

/// `2026-12-01T15:57:54.219Z` (JSON lines; nfdump, with TZ=UTC, without the Z).
#[track_caller]
fn iso_ms(t: &str) -> u64 {
    let t = t.trim_end_matches('Z');
    let (date, time) = t.split_once('T').unwrap_or_else(|| panic!("time {t}"));
    let d: Vec<i64> = date
        .split('-')
        .map(|x| x.parse().unwrap_or_else(|_| panic!("date {t}")))
        .collect();
    utc_ms(d[0], d[1], d[2], time)
}

/// tshark's `Dec  1, 2026 15:57:54.219000000 UTC`.
#[track_caller]
fn tshark_ms(t: &str) -> u64 {
    let p: Vec<&str> = t.split_whitespace().collect();
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let m = MONTHS
        .iter()
        .position(|x| *x == p[0])
        .unwrap_or_else(|| panic!("time {t}")) as i64
        + 1;
    let d = p[1].trim_end_matches(',').parse().expect("day");
    let y = p[2].parse().expect("year");
    utc_ms(y, m, d, p[3])
}

// ---------------------------------------------------------------------------
// netledger

/// `netledger watch --iface RX --format jsonl ARGS` in the counting
/// namespace, started once it counts.
#[track_caller]
fn start_watch(bed: &Bed, dir: &Path, name: &str, args: &[&str]) -> Proc {
    let mut cmd = in_netns(&bed.rx, BIN);
    cmd.args(["watch", "--iface", &bed.rx_if, "--format", "jsonl"])
        .args(args);
    let mut p = Proc::spawn(name, &mut cmd, dir);
    p.wait_for_output("counting ingress", Duration::from_secs(30));
    p
}

/// `netledger ARGS` in the counting namespace through nsenter, which (unlike
/// `ip netns exec`) leaves /sys, and so the pins on bpffs, as they are.
fn nsenter(bed: &Bed) -> Command {
    let mut cmd = Command::new("nsenter");
    cmd.arg(format!("--net=/run/netns/{}", bed.rx.name()))
        .arg(BIN);
    cmd
}

fn summaries(p: &Proc) -> usize {
    p.stdout().matches("\"type\":\"summary\"").count()
}

/// Waits until the JSON lines hold `n` summaries.
#[track_caller]
fn wait_summaries(p: &mut Proc, n: usize) {
    p.wait_until(
        &format!("print {n} interval summaries"),
        Duration::from_secs(30),
        |p| summaries(p) >= n,
    );
}

/// SIGINT (or SIGTERM), then a clean exit: status 0 and no panic.
#[track_caller]
fn stop_clean(p: &mut Proc, signal: libc::c_int) {
    let status = p.signal_and_wait(signal, Duration::from_secs(30));
    assert!(status.success(), "exit {status}:\n{}", p.output());
    assert!(!p.stderr().contains("panicked"), "{}", p.output());
}

/// A scrape of `/metrics` in the counting namespace: the reply and its samples.
#[track_caller]
fn scrape(bed: &Bed, addr: SocketAddr, accept: Option<&str>) -> (Reply, Scrape) {
    let headers: Vec<(&str, &str)> = accept.map(|a| ("Accept", a)).into_iter().collect();
    let reply = http_get(&bed.rx, addr, "/metrics", &headers).must("scraping /metrics");
    assert_eq!(reply.status, 200, "{reply:?}");
    let samples = Scrape::parse(&reply.body);
    (reply, samples)
}

// ---------------------------------------------------------------------------
// 1. Prometheus

/// `watch --metrics --metrics-flows 2` on known traffic: promtool finds
/// nothing to lint on a scrape; a real Prometheus scrapes the endpoint and
/// its query of `netledger_receive_bytes_total` equals the ledger's total
/// (the JSON lines' `seen`) and the bytes sent; the top two keys have
/// per-flow series with their key labels and exact totals, and
/// `netledger_flow_series_dropped_total` counts every flow record left out,
/// including a small flow's record that entered the top of its interval and
/// was cut again; OpenMetrics is served when asked for.
#[test]
fn metrics_prometheus_scrapes_the_ledger_totals_and_top_flows() {
    require_tool("promtool");
    require_tool("prometheus");
    let bed = Bed::new("p");
    let dir = TempDir::new("metrics");
    let addr = SocketAddr::from(([127, 0, 0, 1], free_tcp_port(&bed.rx)));
    let mut watch = start_watch(
        &bed,
        dir.path(),
        "watch",
        &[
            "--interval",
            "1s",
            "--metrics",
            &addr.to_string(),
            "--metrics-flows",
            "2",
        ],
    );
    assert!(
        watch.stderr().contains(&format!(
            "serving Prometheus metrics at http://{addr}/metrics"
        )),
        "{}",
        watch.output()
    );
    let prometheus = Prometheus::start(&bed.rx, dir.path(), &[addr]);

    let capture = bed.capture();
    // Five flows round-robin, 40 rounds: the first two have the most bytes
    // (a cut in the middle of a round may put others in the top two of the
    // short stretch it ends, and then take them out again).
    let sizes = [1200usize, 800, 300, 100, 20];
    let to: SocketAddr = format!("{RX4}:9000").parse().must("an address");
    bed.tx.run(|| {
        let socks: Vec<UdpSocket> = (0..sizes.len())
            .map(|i| UdpSocket::bind(format!("{TX4}:{}", 41000 + i)).must("binding a sender"))
            .collect();
        for _ in 0..40 {
            for (s, size) in socks.iter().zip(sizes) {
                s.send_to(&vec![0x11; size], to).must("sending");
            }
        }
    });
    let n = summaries(&watch);
    wait_summaries(&mut watch, n + 2);
    // Alone in its interval, a small flow enters that interval's top two
    // and loses its place to the bigger series at once.
    bed.send_udp(
        &format!("{TX4}:41009"),
        &format!("{RX4}:9009"),
        &[10, 10, 10],
    );
    let n = summaries(&watch);
    wait_summaries(&mut watch, n + 2);
    let frames = capture.stop().must("capture").complete().must("capture");
    let sent = tally(&frames, false);
    let jsonl = Jsonl::parse(&watch.stdout());
    let all = total(&sent);
    assert_eq!(
        jsonl.seen(),
        (all.packets, all.bytes),
        "the ledger is exact: {sent:?}"
    );
    let per_key = jsonl.per_key();
    assert_eq!(per_key.len(), 6, "{per_key:?}");
    for (k, t) in &sent {
        assert_eq!(per_key.get(k), Some(&(t.packets, t.bytes)), "{k:?}");
    }

    // The text format, linted by promtool.
    let (text, samples) = scrape(&bed, addr, None);
    assert_eq!(
        text.header("Content-Type"),
        Some("text/plain; version=0.0.4; charset=utf-8")
    );
    let (ok, printed) = promtool_check_metrics(&text.body);
    assert!(
        ok && printed.trim().is_empty(),
        "promtool check metrics complained:\n{printed}\n--- scrape ---\n{}",
        text.body
    );
    eprintln!("--- scrape (text 0.0.4) ---\n{}", text.body);
    let iface = [("interface", bed.rx_if.as_str())];
    assert_eq!(
        samples.value("netledger_receive_bytes_total", &iface),
        all.bytes as f64
    );
    assert_eq!(
        samples.value("netledger_receive_packets_total", &iface),
        all.packets as f64
    );
    for (bucket, value) in [("seen", all.bytes), ("counted", all.bytes), ("non_ip", 0)] {
        let labels = [
            ("interface", bed.rx_if.as_str()),
            ("direction", "in"),
            ("bucket", bucket),
        ];
        assert_eq!(
            samples.value("netledger_bucket_bytes_total", &labels),
            value as f64,
            "{bucket}"
        );
    }

    // The top two keys by bytes, with their key labels and totals.
    let mut by_bytes: Vec<(&Key, &(u64, u64))> = per_key.iter().collect();
    by_bytes.sort_by_key(|(_, c)| std::cmp::Reverse(c.1));
    let top: Vec<Key> = by_bytes[..2].iter().map(|(k, _)| **k).collect();
    assert_eq!(
        top.iter().map(|k| k.a).collect::<Vec<_>>(),
        [41000, 41001],
        "{by_bytes:?}"
    );
    for family in ["netledger_flow_bytes_total", "netledger_flow_packets_total"] {
        let series = samples.find(family, &[]);
        assert_eq!(series.len(), 2, "{family}: {series:?}");
        for k in &top {
            let sport = k.a.to_string();
            let found = samples.find(family, &[("sport", sport.as_str())]);
            assert_eq!(found.len(), 1, "{family} {k:?}: {series:?}");
            let want: BTreeMap<String, String> = [
                ("interface", bed.rx_if.clone()),
                ("direction", "in".into()),
                ("src", k.src.to_string()),
                ("dst", k.dst.to_string()),
                ("proto", "udp".into()),
                ("sport", sport.clone()),
                ("dport", k.b.to_string()),
            ]
            .into_iter()
            .map(|(a, b)| (a.to_string(), b))
            .collect();
            assert_eq!(found[0].labels, want, "{family}");
            let (p, b) = per_key[k];
            let value = if family.contains("bytes") { b } else { p };
            assert_eq!(found[0].value, value as f64, "{family} {k:?}");
        }
    }
    let left_out = jsonl.flows.iter().filter(|f| !top.contains(&f.key)).count();
    assert_eq!(
        samples.value("netledger_flow_series_dropped_total", &[]),
        left_out as f64,
        "every flow record the cap left out is counted: {:#?}",
        jsonl.flows
    );

    // OpenMetrics when the scraper asks for it, with the same numbers.
    let (om, om_samples) = scrape(
        &bed,
        addr,
        Some("application/openmetrics-text;version=1.0.0;q=0.9,text/plain;version=0.0.4;q=0.5"),
    );
    assert_eq!(
        om.header("Content-Type"),
        Some("application/openmetrics-text; version=1.0.0; charset=utf-8")
    );
    assert!(om.body.ends_with("# EOF\n"), "{}", om.body);
    assert_eq!(
        om_samples
            .types
            .get("netledger_receive_bytes")
            .map(String::as_str),
        Some("counter"),
        "{}",
        om.body
    );
    for s in &samples.samples {
        if s.name == "netledger_last_cut_timestamp_seconds" || s.name.contains("cut_duration") {
            continue;
        }
        let labels: Vec<(&str, &str)> = s
            .labels
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        let found = om_samples.find(&s.name, &labels);
        assert!(
            found.len() == 1 && found[0].value == s.value,
            "{s:?} in OpenMetrics: {found:?}\n{}",
            om.body
        );
    }

    // Prometheus scraped it (it asks for OpenMetrics first) and has the
    // ledger's numbers.
    let promql = format!(
        "netledger_receive_bytes_total{{interface=\"{}\"}}",
        bed.rx_if
    );
    let got = prometheus.wait_for(&promql, |r| {
        r.len() == 1 && r[0].1.parse::<f64>().ok() == Some(all.bytes as f64)
    });
    assert_eq!(got[0].0.get("job").map(String::as_str), Some("netledger"));
    let promql = format!(
        "netledger_receive_packets_total{{interface=\"{}\"}}",
        bed.rx_if
    );
    prometheus.wait_for(&promql, |r| {
        r.len() == 1 && r[0].1.parse::<f64>().ok() == Some(all.packets as f64)
    });
    let flows = prometheus.wait_for("netledger_flow_bytes_total", |r| r.len() == 2);
    for (labels, value) in &flows {
        let k = top
            .iter()
            .find(|k| labels.get("sport") == Some(&k.a.to_string()))
            .unwrap_or_else(|| panic!("an unexpected series {labels:?}"));
        assert_eq!(value.parse::<f64>().ok(), Some(per_key[k].1 as f64));
    }
    let up = prometheus.query("up");
    assert!(up.len() == 1 && up[0].1 == "1", "the target is up: {up:?}");
    drop(prometheus);
    stop_clean(&mut watch, libc::SIGINT);
}

// ---------------------------------------------------------------------------
// 2. The service's counters across a restart

/// `netledger run` on the counting end with its own configuration (empty),
/// store, control socket and metrics address, in a temp dir. Dropped, it
/// takes the service down (`netledger down`) if its pins are still there
/// and removes what is left by hand, so a failing test leaves nothing on
/// bpffs.
struct Service<'a> {
    bed: &'a Bed,
    dir: &'a TempDir,
    db: PathBuf,
    config: PathBuf,
    addr: SocketAddr,
}

impl<'a> Service<'a> {
    #[track_caller]
    fn new(bed: &'a Bed, dir: &'a TempDir) -> Service<'a> {
        let config = dir.join("netledger.toml");
        std::fs::write(&config, "").must("writing an empty configuration");
        Service {
            bed,
            dir,
            db: dir.join("netledger.db"),
            config,
            addr: SocketAddr::from(([127, 0, 0, 1], free_tcp_port(&bed.rx))),
        }
    }

    /// Starts `run --interval 500ms --metrics ADDR --metrics-flows 2
    /// --jsonl` (and `-v`, and the environment `env`).
    fn start(&self, name: &str, env: &[(&str, &str)], verbose: bool) -> Proc {
        let mut cmd = nsenter(self.bed);
        cmd.args(["run", "--config"])
            .arg(&self.config)
            .args(["--iface", &self.bed.rx_if, "--interval", "500ms", "--db"])
            .arg(&self.db)
            .arg("--socket")
            .arg(self.dir.join("netledger.sock"))
            .args(["--metrics", &self.addr.to_string()])
            .args(["--metrics-flows", "2", "--jsonl"])
            .envs(env.iter().copied());
        if verbose {
            cmd.arg("-v");
        }
        Proc::spawn(name, &mut cmd, self.dir.path())
    }

    /// `netledger down` for the counting end.
    fn down(&self) -> std::process::Output {
        nsenter(self.bed)
            .args(["down", "--iface", &self.bed.rx_if, "--db"])
            .arg(&self.db)
            .output()
            .must("running netledger down")
    }
}

impl Drop for Service<'_> {
    fn drop(&mut self) {
        let pins = self.bed.pin_dir();
        if !pins.exists() {
            return;
        }
        let _ = self.down();
        if pins.exists() {
            let _ = std::fs::remove_dir_all(&pins);
        }
    }
}

/// Families the service seeds from its store at start.
const SEEDED: [&str; 6] = [
    "netledger_receive_packets_total",
    "netledger_receive_bytes_total",
    "netledger_transmit_packets_total",
    "netledger_transmit_bytes_total",
    "netledger_bucket_packets_total",
    "netledger_bucket_bytes_total",
];

/// `netledger run --metrics` with its own store and socket: scrape, SIGTERM,
/// traffic while it is down (the kernel keeps counting), start again (it
/// adopts the pinned ledgers), scrape: every counter the store holds is at
/// least what it was, at once and after more cuts, and in the end equals
/// everything sent; then `netledger down` removes the pins.
#[test]
fn run_counters_never_go_backwards_across_a_restart() {
    let bed = Bed::new("r");
    let dir = TempDir::new("run");
    let svc = Service::new(&bed, &dir);
    let addr = svc.addr;
    let capture = bed.capture();
    let mut first = svc.start("run1", &[], false);
    first.wait_for_output("attached (", Duration::from_secs(30));
    bed.send_udp(&format!("{TX4}:44000"), &format!("{RX4}:9000"), &[100; 30]);
    bed.send_udp(&format!("{TX4B}:44001"), &format!("{RX4}:9001"), &[900; 12]);
    bed.send_udp(
        &format!("[{TX6}]:44002"),
        &format!("[{RX6}]:9002"),
        &[300; 20],
    );
    let n = summaries(&first);
    wait_summaries(&mut first, n + 2);
    let (_, before) = scrape(&bed, addr, None);
    stop_clean(&mut first, libc::SIGTERM);
    assert!(
        first
            .stderr()
            .contains("stopped; the kernel side keeps counting"),
        "{}",
        first.output()
    );
    let first_seen = Jsonl::parse(&first.stdout()).seen();

    // Counted by the pinned programs while no process runs.
    bed.send_udp(&format!("{TX4}:44000"), &format!("{RX4}:9000"), &[100; 7]);
    bed.send_udp(&format!("{TX4}:44003"), &format!("{RX4}:9003"), &[1400; 5]);

    let mut second = svc.start("run2", &[], false);
    second.wait_for_output("adopted the pinned ledgers", Duration::from_secs(30));
    let (_, at_start) = scrape(&bed, addr, None);
    wait_summaries(&mut second, 2);
    let (_, after) = scrape(&bed, addr, None);
    stop_clean(&mut second, libc::SIGTERM);
    let frames = capture.stop().must("capture").complete().must("capture");
    let sent = total(&tally(&frames, false));
    let second_seen = Jsonl::parse(&second.stdout()).seen();

    let iface = [("interface", bed.rx_if.as_str())];
    assert_eq!(
        before.value("netledger_receive_bytes_total", &iface),
        first_seen.1 as f64
    );
    // At once: the store's totals, which are what the first process cut.
    assert_eq!(
        at_start.value("netledger_receive_bytes_total", &iface),
        first_seen.1 as f64
    );
    // Then everything, the traffic of the downtime included.
    assert_eq!(
        (first_seen.0 + second_seen.0, first_seen.1 + second_seen.1),
        (sent.packets, sent.bytes)
    );
    assert_eq!(
        after.value("netledger_receive_bytes_total", &iface),
        sent.bytes as f64
    );
    assert_eq!(
        after.value("netledger_receive_packets_total", &iface),
        sent.packets as f64
    );
    let mut reset = Vec::new();
    for s in &before.samples {
        let Some((family, kind)) = before.family_of(&s.name) else {
            continue;
        };
        if kind != "counter" && kind != "histogram" {
            continue;
        }
        let labels: Vec<(&str, &str)> = s
            .labels
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        for (when, scrape) in [("at the restart", &at_start), ("after it", &after)] {
            let now = scrape.find(&s.name, &labels);
            let now = now.first().map(|x| x.value);
            if SEEDED.contains(&family) {
                assert!(
                    now.is_some_and(|v| v >= s.value),
                    "{} {:?} went from {} to {now:?} {when}",
                    s.name,
                    s.labels,
                    s.value
                );
            } else if now.is_none_or(|v| v < s.value) {
                reset.push(format!(
                    "{}{:?}: {} -> {now:?} {when}",
                    s.name, s.labels, s.value
                ));
            }
        }
    }
    // Counters of the process itself (cut durations, the flow series and
    // their drops) are not in the store: they start again, which Prometheus
    // reads as a counter reset.
    eprintln!(
        "process counters that started again:\n  {}",
        reset.join("\n  ")
    );

    let out = svc.down();
    assert!(
        out.status.success(),
        "netledger down: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(!bed.pin_dir().exists(), "down removed the pins");
}

/// Whether `-v`'s log shows a cut committed with traffic in it.
fn committed_with_traffic(log: &str) -> bool {
    log.lines().any(|l| {
        l.contains(" committed: ")
            && l.strip_suffix(" packets")
                .and_then(|l| l.rsplit(' ').next())
                .and_then(|n| n.parse::<u64>().ok())
                .is_some_and(|n| n > 0)
    })
}

/// `run` killed (SIGKILL) after a cut is committed to the store and before
/// the kernel's copy is cleared: the next `run` finishes that cut (the store
/// already has it, and so do the counters it seeds) and its counters equal
/// what was sent, not that cut counted twice.
#[test]
fn run_counters_stay_exact_after_a_kill_between_commit_and_clear() {
    let bed = Bed::new("k");
    let dir = TempDir::new("run-kill");
    let svc = Service::new(&bed, &dir);
    let capture = bed.capture();
    // Each step of a cut takes 1.5 s: the kill lands after the commit.
    let mut first = svc.start("run1", &[("NETLEDGER_TEST_CUT_DELAY_MS", "1500")], true);
    first.wait_for_output("attached (", Duration::from_secs(30));
    bed.send_udp(&format!("{TX4}:46000"), &format!("{RX4}:9000"), &[200; 25]);
    bed.send_udp(
        &format!("[{TX6}]:46001"),
        &format!("[{RX6}]:9001"),
        &[600; 10],
    );
    first.wait_until("commit a cut with traffic", Duration::from_secs(30), |p| {
        committed_with_traffic(&p.stderr())
    });
    let status = first.signal_and_wait(libc::SIGKILL, Duration::from_secs(10));
    assert_eq!(
        status.signal(),
        Some(libc::SIGKILL),
        "run1 was still running when killed\n{}",
        first.output()
    );

    let mut second = svc.start("run2", &[], true);
    second.wait_for_output(
        "finishing the cut a previous process left open",
        Duration::from_secs(30),
    );
    // The kill came between the commit and the clear: the store has it.
    second.wait_for_output("already committed", Duration::from_secs(30));
    wait_summaries(&mut second, 3);
    let (_, after) = scrape(&bed, svc.addr, None);
    stop_clean(&mut second, libc::SIGTERM);
    let frames = capture.stop().must("capture").complete().must("capture");
    let sent = total(&tally(&frames, false));
    let iface = [("interface", bed.rx_if.as_str())];
    assert_eq!(
        (
            after.value("netledger_receive_packets_total", &iface),
            after.value("netledger_receive_bytes_total", &iface)
        ),
        (sent.packets as f64, sent.bytes as f64),
        "the counters equal what was sent\n{}\n{}",
        first.output(),
        second.output()
    );
    let out = svc.down();
    assert!(
        out.status.success(),
        "netledger down: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

// ---------------------------------------------------------------------------
// 3. IPFIX to nfdump and tshark

/// One flow record as a collector decoded it.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
struct Decoded {
    key: Key,
    start_ms: u64,
    end_ms: u64,
    packets: u64,
    ip_bytes: u64,
    /// layer2OctetDeltaCount, where the collector shows it.
    l2_bytes: Option<u64>,
    ifindex: u64,
    direction: u64,
}

/// The flow records nfdump read.
#[track_caller]
fn nfdump_flows(records: &[Value]) -> Vec<Decoded> {
    records
        .iter()
        .map(|v| {
            let addr = |four: &str, six: &str| {
                ip(v.get(four).or_else(|| v.get(six)).map_or("", |a| str_of(a)))
            };
            let opt = |k: &str| v.get(k).map_or(0, num);
            Decoded {
                key: Key {
                    vlan: opt("src_vlan") as u16,
                    src: addr("src4_addr", "src6_addr"),
                    dst: addr("dst4_addr", "dst6_addr"),
                    proto: num(&v["proto"]) as u8,
                    a: opt("src_port") as u16,
                    b: opt("dst_port") as u16,
                },
                start_ms: iso_ms(str_of(&v["first"])),
                end_ms: iso_ms(str_of(&v["last"])),
                packets: num(&v["in_packets"]),
                ip_bytes: num(&v["in_bytes"]),
                l2_bytes: None,
                ifindex: num(&v["input_snmp"]),
                direction: num(&v["direction"]),
            }
        })
        .collect()
}

/// What tshark decoded of an export.
#[derive(Debug, Default)]
struct TsharkDecode {
    flows: Vec<Decoded>,
    /// Per buckets record: interval and the 12 enterprise counters.
    buckets: Vec<(u64, u64, Vec<u64>)>,
    /// Per message: its sequence number, data records and domain.
    messages: Vec<(u64, u64, u64)>,
    /// Expert info and malformed marks, with their frame.
    problems: Vec<String>,
    /// Each template (and options template) as tshark names its fields.
    templates: BTreeMap<u64, Vec<String>>,
}

fn walk<'a>(v: &'a Value, f: &mut impl FnMut(&'a str, &'a Value)) {
    match v {
        Value::Object(m) => {
            for (k, x) in m {
                f(k, x);
                walk(x, f);
            }
        }
        Value::Array(a) => {
            for x in a {
                walk(x, f);
            }
        }
        _ => {}
    }
}

#[track_caller]
fn tshark_decode(frames: &[Value]) -> TsharkDecode {
    let mut out = TsharkDecode::default();
    for frame in frames {
        let layers = &frame["_source"]["layers"];
        let number = layers["frame"]["frame.number"].as_str().unwrap_or("?");
        // Any expert info in the IPFIX dissection; elsewhere (TCP's
        // connection chat and notes) from warnings up; malformed anywhere.
        walk(layers, &mut |k, v| {
            let warning = v["_ws.expert.severity"]
                .as_str()
                .and_then(|x| x.parse::<u64>().ok())
                .is_some_and(|x| x >= 0x0060_0000);
            if k.starts_with("_ws.malformed") || (k == "_ws.expert" && warning) {
                out.problems.push(format!("frame {number}: {k}: {v}"));
            }
        });
        walk(&layers["cflow"], &mut |k, v| {
            if k.starts_with("_ws.expert") {
                out.problems.push(format!("frame {number}: {k}: {v}"));
            }
        });
        let messages = match &layers["cflow"] {
            Value::Array(a) => a.iter().collect(),
            v @ Value::Object(_) => vec![v],
            _ => Vec::new(),
        };
        walk(&layers["cflow"], &mut |_, v| {
            let Some(id) = v.get("cflow.template_id") else {
                return;
            };
            let mut fields: Vec<(u64, String)> = v
                .as_object()
                .into_iter()
                .flatten()
                .filter_map(|(k, _)| {
                    // "Field (3/14): PROTOCOL", "Field (1/2) [Scope]: ..."
                    let (pos, name) = k.strip_prefix("Field (")?.split_once(')')?;
                    let n: u64 = pos.split('/').next()?.parse().ok()?;
                    let scope = if name.contains("[Scope]") { 0 } else { 1000 };
                    Some((scope + n, name.split_once(": ")?.1.trim().to_string()))
                })
                .collect();
            fields.sort();
            out.templates
                .insert(num(id), fields.into_iter().map(|f| f.1).collect());
        });
        for msg in messages {
            let mut records = 0;
            walk(msg, &mut |_, v| {
                let Some(rec) = v.as_object() else {
                    return;
                };
                let times = &v["cflow.timedelta_tree"];
                let interval = || {
                    (
                        tshark_ms(str_of(&times["cflow.abstimestart"])),
                        tshark_ms(str_of(&times["cflow.abstimeend"])),
                    )
                };
                if rec.contains_key("cflow.packets") {
                    records += 1;
                    let addr = |four: &str, six: &str| {
                        ip(str_of(
                            rec.get(four)
                                .or_else(|| rec.get(six))
                                .unwrap_or(&Value::Null),
                        ))
                    };
                    let opt = |k: &str| rec.get(k).map_or(0, num);
                    let (start_ms, end_ms) = interval();
                    out.flows.push(Decoded {
                        key: Key {
                            vlan: opt("cflow.vlanid") as u16,
                            src: addr("cflow.srcaddr", "cflow.srcaddrv6"),
                            dst: addr("cflow.dstaddr", "cflow.dstaddrv6"),
                            proto: num(&v["cflow.protocol"]) as u8,
                            a: opt("cflow.srcport") as u16,
                            b: opt("cflow.dstport") as u16,
                        },
                        start_ms,
                        end_ms,
                        packets: num(&v["cflow.packets"]),
                        ip_bytes: num(&v["cflow.octets"]),
                        l2_bytes: Some(num(&v["cflow.layer2_octet_delta_count"])),
                        ifindex: num(&v["cflow.inputint"]),
                        direction: num(&v["cflow.direction"]),
                    });
                } else if rec.contains_key("cflow.ignore_packets") {
                    records += 1;
                    let counters = v["cflow.enterprise_private_entry"]
                        .as_array()
                        .map(|a| {
                            a.iter()
                                .map(|x| {
                                    u64::from_str_radix(&str_of(x).replace(':', ""), 16)
                                        .expect("a hex counter")
                                })
                                .collect()
                        })
                        .unwrap_or_default();
                    let (start_ms, end_ms) = interval();
                    out.buckets.push((start_ms, end_ms, counters));
                }
            });
            out.messages.push((
                num(&msg["cflow.sequence"]),
                records,
                num(&msg["cflow.od_id"]),
            ));
        }
    }
    out
}

/// `got` holds every flow record of every interval exactly once (per
/// interval: key, packets, and frame bytes where the collector shows them),
/// and per key the packets and IP-layer bytes sent.
#[track_caller]
fn check_flow_records(
    who: &str,
    got: &[Decoded],
    jsonl: &Jsonl,
    sent: &BTreeMap<Key, Tally>,
    ifindex: u64,
) {
    let with_l2 = !got.is_empty() && got.iter().all(|d| d.l2_bytes.is_some());
    let mut want = BTreeMap::new();
    for f in &jsonl.flows {
        let l2 = with_l2.then_some(f.bytes);
        *want
            .entry((f.key, f.start_ms, f.end_ms, f.packets, l2))
            .or_insert(0) += 1;
    }
    let mut have = BTreeMap::new();
    for d in got {
        *have
            .entry((d.key, d.start_ms, d.end_ms, d.packets, d.l2_bytes))
            .or_insert(0) += 1;
        assert_eq!(
            (d.ifindex, d.direction),
            (ifindex, 0),
            "{who}: ingress on the counting end: {d:?}"
        );
    }
    assert_eq!(
        have, want,
        "{who}: every interval's flow records, exactly once"
    );
    let mut per_key: BTreeMap<Key, (u64, u64)> = BTreeMap::new();
    for d in got {
        let e = per_key.entry(d.key).or_default();
        e.0 += d.packets;
        e.1 += d.ip_bytes;
    }
    let want: BTreeMap<Key, (u64, u64)> = sent
        .iter()
        .map(|(k, t)| (*k, (t.packets, t.ip_bytes)))
        .collect();
    for (k, t) in sent {
        eprintln!(
            "  {who} {k:?}: sent {} frames, {} bytes, {} IP bytes; decoded {:?}",
            t.packets,
            t.bytes,
            t.ip_bytes,
            per_key.get(k)
        );
    }
    assert_eq!(
        per_key, want,
        "{who}: per flow, packets and IP-layer bytes equal what was sent"
    );
}

/// The checks of a tshark decode: no expert info or malformed frame, one
/// domain, sequence numbers counting data records, one buckets record per
/// interval with the summary's counts, and the flow records.
#[track_caller]
fn check_tshark(
    d: &TsharkDecode,
    jsonl: &Jsonl,
    sent: &BTreeMap<Key, Tally>,
    ifindex: u64,
    domain: u64,
) {
    assert!(d.problems.is_empty(), "tshark: {:#?}", d.problems);
    let mut next = 0;
    for (seq, records, od) in &d.messages {
        assert_eq!((*seq, *od), (next, domain), "tshark: {:?}", d.messages);
        next += records;
    }
    let want: Vec<(u64, u64, Vec<u64>)> = jsonl
        .summaries
        .iter()
        .map(|s| {
            let counters = s.buckets.iter().flat_map(|(p, b)| [*p, *b]).collect();
            (s.start_ms, s.end_ms, counters)
        })
        .collect();
    let mut got = d.buckets.clone();
    got.sort();
    assert_eq!(got, want, "tshark: a buckets record per interval");
    check_flow_records("tshark", &d.flows, jsonl, sent, ifindex);
}

/// Known traffic of every kind the IPFIX tests need: UDP over IPv4 and
/// IPv6 from sockets, a TCP connection, and hand-built frames through a raw
/// socket: a VLAN-tagged flow (some of it padded), an untagged flow of
/// 60-byte frames carrying 28 to 37-byte IP packets, a double-tagged flow
/// (802.1ad outside 802.1Q; some of it padded).
fn send_mixed(bed: &Bed) {
    bed.send_udp(&format!("{TX4}:42000"), &format!("{RX4}:9000"), &[100; 20]);
    bed.send_udp(
        &format!("{TX4B}:42001"),
        &format!("{RX4}:9001"),
        &[1400; 10],
    );
    bed.send_udp(
        &format!("[{TX6}]:42002"),
        &format!("[{RX6}]:9002"),
        &[700; 15],
    );
    let writes: Vec<usize> = (0..20).map(|i| 1000 + i * 37).collect();
    bed.send_tcp(&format!("{RX4}:7000"), &writes);
    let mut frames = Vec::new();
    for p in (0..8).map(|i| 300 + i).chain(0..4) {
        frames.push(bed.udp4_frame(
            &[(0x8100, 77)],
            ([10, 77, 77, 1], 42100),
            ([10, 77, 77, 2], 9100),
            p,
            60,
        ));
    }
    for p in 0..10 {
        frames.push(bed.udp4_frame(&[], ([10, 77, 0, 1], 42101), ([10, 77, 0, 2], 9101), p, 60));
    }
    for p in [500, 501, 502, 0, 1, 2, 3] {
        frames.push(bed.udp4_frame(
            &[(0x88a8, 100), (0x8100, 200)],
            ([10, 77, 100, 1], 42102),
            ([10, 77, 100, 2], 9102),
            p,
            60,
        ));
    }
    bed.send_raw(&frames);
}

/// The mixed traffic really has padding and double tags: the IP bytes are
/// less than the frames less their untagged Ethernet header.
#[track_caller]
fn check_traffic_has_padding_and_tags(sent: &BTreeMap<Key, Tally>) {
    let by_port = |p: u16| {
        sent.iter()
            .find(|(k, _)| k.a == p)
            .unwrap_or_else(|| panic!("flow from port {p} sent: {sent:?}"))
    };
    let (k, padded) = by_port(42101);
    assert_eq!(k.vlan, 0);
    assert_eq!(padded.bytes, 60 * padded.packets);
    // Ten frames a round, of IP packets of 28 to 37 bytes.
    assert_eq!(padded.ip_bytes * 10, (28..38).sum::<u64>() * padded.packets);
    let (k, tagged) = by_port(42100);
    assert_eq!(k.vlan, 77);
    assert!(
        tagged.ip_bytes < tagged.bytes - 18 * tagged.packets,
        "{tagged:?}"
    );
    let (k, double) = by_port(42102);
    assert_eq!(k.vlan, 100, "the outer tag keys the flow");
    assert!(
        double.ip_bytes < double.bytes - 22 * double.packets,
        "{double:?}"
    );
    assert!(sent.keys().any(|k| k.src.is_ipv6()));
    assert!(sent.keys().any(|k| k.proto == 6));
}

/// `watch --vlan --ipfix udp://...` to nfcapd on known traffic in two
/// rounds (so flows span intervals): nfdump's records, per interval and per
/// flow, equal the watch's, and per flow the packets and IP-layer bytes
/// sent; a capture of the export decodes in tshark without errors, with the
/// same records and frame bytes, the sequence numbers and the buckets.
#[test]
fn ipfix_udp_to_nfcapd_and_tshark_per_flow_ip_bytes() {
    require_tool("nfcapd");
    require_tool("nfdump");
    require_tool("tshark");
    let bed = Bed::new("u");
    let dir = TempDir::new("ipfix-udp");
    let port = free_udp_port(&bed.rx);
    let pcap = dir.join("export.pcapng");
    let mut tshark = start_tshark(
        &bed.rx,
        dir.path(),
        "lo",
        &format!("udp port {port}"),
        &pcap,
    );
    let mut nfcapd = start_nfcapd(&bed.rx, dir.path(), port);
    let url = format!("udp://127.0.0.1:{port}");
    let mut watch = start_watch(
        &bed,
        dir.path(),
        "watch",
        &[
            "--interval",
            "500ms",
            "--vlan",
            "--ipfix",
            &url,
            "--ipfix-domain",
            "7",
            "--ipfix-mtu",
            "512",
        ],
    );
    let capture = bed.capture();
    send_mixed(&bed);
    let n = summaries(&watch);
    wait_summaries(&mut watch, n + 1);
    send_mixed(&bed);
    let frames = capture.stop().must("capture").complete().must("capture");
    stop_clean(&mut watch, libc::SIGINT);
    std::thread::sleep(Duration::from_millis(300));
    let status = nfcapd.signal_and_wait(libc::SIGTERM, Duration::from_secs(15));
    assert!(status.success(), "{}", nfcapd.output());
    tshark.signal_and_wait(libc::SIGTERM, Duration::from_secs(15));

    let sent = tally(&frames, true);
    check_traffic_has_padding_and_tags(&sent);
    let jsonl = Jsonl::parse(&watch.stdout());
    let per_key = jsonl.per_key();
    for (k, t) in &sent {
        assert_eq!(per_key.get(k), Some(&(t.packets, t.bytes)), "{k:?}");
    }
    assert_eq!(per_key.len(), sent.len(), "{per_key:?}");
    let ifindex = bed.rx_ifindex();
    let nf = nfdump_json(dir.path());
    check_flow_records("nfdump", &nfdump_flows(&nf), &jsonl, &sent, ifindex);
    let decoded = tshark_decode(&tshark_json(&pcap, &format!("udp.port=={port},cflow")));
    check_tshark(&decoded, &jsonl, &sent, ifindex, 7);
    for (id, fields) in &decoded.templates {
        eprintln!("template {id}: {}", fields.join(", "));
    }
    assert!(
        decoded.messages.len() > jsonl.summaries.len(),
        "an MTU of 512 splits the bigger intervals"
    );
}

/// A TCP collector in `ns`: reads IPFIX messages (by their length field)
/// from each connection in turn and hands each, as one datagram, to nfcapd
/// on `127.0.0.1:forward`.
struct TcpCollector {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<usize>>,
}

impl TcpCollector {
    #[track_caller]
    fn start(ns: &NetNs, port: u16, forward: u16) -> TcpCollector {
        let (listener, out) = ns.run(|| {
            (
                TcpListener::bind(("127.0.0.1", port)).must("binding the collector"),
                UdpSocket::bind("127.0.0.1:0").must("binding the relay"),
            )
        });
        listener.set_nonblocking(true).must("nonblocking");
        let stop = Arc::new(AtomicBool::new(false));
        let thread = std::thread::spawn({
            let stop = Arc::clone(&stop);
            move || {
                let mut messages = 0;
                while !stop.load(Ordering::Acquire) {
                    let Ok((conn, _)) = listener.accept() else {
                        std::thread::sleep(Duration::from_millis(10));
                        continue;
                    };
                    messages += relay(conn, &out, forward, &stop);
                }
                messages
            }
        });
        TcpCollector {
            stop,
            thread: Some(thread),
        }
    }

    /// Stops after the connection in hand ends; returns the messages relayed.
    fn stop(mut self) -> usize {
        self.stop.store(true, Ordering::Release);
        self.thread
            .take()
            .map(|t| t.join().expect("the TCP collector"))
            .unwrap_or(0)
    }
}

impl Drop for TcpCollector {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Release);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn relay(mut conn: TcpStream, out: &UdpSocket, forward: u16, stop: &AtomicBool) -> usize {
    let _ = conn.set_nonblocking(false);
    let _ = conn.set_read_timeout(Some(Duration::from_millis(50)));
    let mut buf = Vec::new();
    let mut chunk = [0u8; 65536];
    let mut messages = 0;
    loop {
        match conn.read(&mut chunk) {
            Ok(0) => return messages,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                if stop.load(Ordering::Acquire) {
                    return messages;
                }
            }
            Err(_) => return messages,
        }
        while buf.len() >= 4 {
            let len = usize::from(be16(&buf, 2));
            if len < 16 || buf.len() < len {
                break;
            }
            let msg: Vec<u8> = buf.drain(..len).collect();
            let _ = out.send_to(&msg, ("127.0.0.1", forward));
            messages += 1;
        }
    }
}

/// The same over `--ipfix tcp://`, counting at XDP this time (the VLAN
/// tags in the frame's data): a TCP collector (relaying each message to
/// nfcapd) gets every record, nfdump reads them back, and tshark decodes
/// the TCP stream.
#[test]
fn ipfix_tcp_collector_gets_every_record() {
    require_tool("nfcapd");
    require_tool("nfdump");
    require_tool("tshark");
    let bed = Bed::new("c");
    let dir = TempDir::new("ipfix-tcp");
    let port = free_tcp_port(&bed.rx);
    let nf_port = free_udp_port(&bed.rx);
    let pcap = dir.join("export.pcapng");
    let mut tshark = start_tshark(
        &bed.rx,
        dir.path(),
        "lo",
        &format!("tcp port {port}"),
        &pcap,
    );
    let mut nfcapd = start_nfcapd(&bed.rx, dir.path(), nf_port);
    let collector = TcpCollector::start(&bed.rx, port, nf_port);
    let url = format!("tcp://127.0.0.1:{port}");
    let mut watch = start_watch(
        &bed,
        dir.path(),
        "watch",
        &[
            "--interval",
            "500ms",
            "--vlan",
            "--hook",
            "xdp",
            "--ipfix",
            &url,
            "--ipfix-domain",
            "9",
        ],
    );
    let capture = bed.capture();
    send_mixed(&bed);
    let n = summaries(&watch);
    wait_summaries(&mut watch, n + 1);
    send_mixed(&bed);
    let frames = capture.stop().must("capture").complete().must("capture");
    stop_clean(&mut watch, libc::SIGINT);
    let relayed = collector.stop();
    std::thread::sleep(Duration::from_millis(300));
    let status = nfcapd.signal_and_wait(libc::SIGTERM, Duration::from_secs(15));
    assert!(status.success(), "{}", nfcapd.output());
    tshark.signal_and_wait(libc::SIGTERM, Duration::from_secs(15));

    let sent = tally(&frames, true);
    check_traffic_has_padding_and_tags(&sent);
    let jsonl = Jsonl::parse(&watch.stdout());
    assert!(relayed >= jsonl.summaries.len(), "{relayed} messages");
    let ifindex = bed.rx_ifindex();
    let nf = nfdump_json(dir.path());
    check_flow_records("nfdump via TCP", &nfdump_flows(&nf), &jsonl, &sent, ifindex);
    let decoded = tshark_decode(&tshark_json(&pcap, &format!("tcp.port=={port},cflow")));
    check_tshark(&decoded, &jsonl, &sent, ifindex, 9);
}

// ---------------------------------------------------------------------------
// 4. Template refresh

/// A minimal IPFIX reader (RFC 7011) for the fixed-length records netledger
/// sends: it learns templates and options templates and splits data sets
/// into records.
#[derive(Default)]
struct IpfixReader {
    /// Template id -> fields (enterprise number or 0, IE id, length).
    templates: HashMap<u16, Vec<(u32, u16, usize)>>,
}

/// A data record's fields by (enterprise number or 0, IE id).
type Fields = BTreeMap<(u32, u16), Vec<u8>>;

/// One message: the templates it carries and its data records.
#[derive(Debug, Default)]
struct ReadMessage {
    templates: Vec<u16>,
    /// (template id, its fields).
    records: Vec<(u16, Fields)>,
}

impl IpfixReader {
    #[track_caller]
    fn read(&mut self, msg: &[u8]) -> ReadMessage {
        assert!(msg.len() >= 16 && be16(msg, 0) == 10, "IPFIX: {msg:02x?}");
        assert_eq!(usize::from(be16(msg, 2)), msg.len(), "message length");
        let be32 = |at: usize| u32::from_be_bytes([msg[at], msg[at + 1], msg[at + 2], msg[at + 3]]);
        let mut out = ReadMessage::default();
        let mut at = 16;
        while at + 4 <= msg.len() {
            let (id, len) = (be16(msg, at), usize::from(be16(msg, at + 2)));
            let end = at + len;
            assert!(len >= 4 && end <= msg.len(), "set length {len} at {at}");
            let mut p = at + 4;
            if id == 2 || id == 3 {
                while p + 4 <= end {
                    let (tid, count) = (be16(msg, p), be16(msg, p + 2));
                    p += if id == 3 { 6 } else { 4 };
                    let mut fields = Vec::new();
                    for _ in 0..count {
                        let (ie, flen) = (be16(msg, p), usize::from(be16(msg, p + 2)));
                        p += 4;
                        if ie & 0x8000 != 0 {
                            fields.push((be32(p), ie & 0x7fff, flen));
                            p += 4;
                        } else {
                            fields.push((0, ie, flen));
                        }
                    }
                    self.templates.insert(tid, fields);
                    out.templates.push(tid);
                }
            } else if let Some(fields) = self.templates.get(&id) {
                let rlen: usize = fields.iter().map(|f| f.2).sum();
                while p + rlen <= end {
                    let mut rec = BTreeMap::new();
                    for (pen, ie, flen) in fields {
                        rec.insert((*pen, *ie), msg[p..p + flen].to_vec());
                        p += flen;
                    }
                    out.records.push((id, rec));
                }
            } else {
                panic!("data set {id} before its template");
            }
            at = end;
        }
        out
    }
}

/// A data record of a flow template as a decoded flow record; None for an
/// options record.
fn reader_flow(rec: &Fields) -> Option<Decoded> {
    let uint = |ie: u16| {
        rec.get(&(0, ie))
            .map(|b| b.iter().fold(0u64, |a, x| a << 8 | u64::from(*x)))
    };
    let addr = |four: u16, six: u16| {
        if let Some(b) = rec.get(&(0, four)) {
            <[u8; 4]>::try_from(&b[..]).ok().map(IpAddr::from)
        } else {
            <[u8; 16]>::try_from(&rec.get(&(0, six))?[..])
                .ok()
                .map(IpAddr::from)
        }
    };
    Some(Decoded {
        key: Key {
            vlan: uint(58).unwrap_or(0) as u16,
            src: addr(8, 27)?,
            dst: addr(12, 28)?,
            proto: uint(4)? as u8,
            a: uint(7).unwrap_or(0) as u16,
            b: uint(11).unwrap_or(0) as u16,
        },
        start_ms: uint(152)?,
        end_ms: uint(153)?,
        packets: uint(2)?,
        ip_bytes: uint(1)?,
        l2_bytes: None,
        ifindex: uint(10)?,
        direction: uint(61)?,
    })
}

/// What a UDP tap on the exporter's collector port saw: each datagram,
/// when, and whether it was passed on to the collector behind it.
type Tapped = Vec<(Instant, Vec<u8>, bool)>;

/// A UDP socket on the collector port that records every datagram and,
/// once `forward` is set, passes them to nfcapd: the collector sees the
/// stream from that moment on, as if it had started then.
struct Tap {
    forward: Arc<AtomicBool>,
    stop: Arc<AtomicBool>,
    seen: Arc<Mutex<Tapped>>,
    thread: Option<JoinHandle<()>>,
}

impl Tap {
    #[track_caller]
    fn start(ns: &NetNs, port: u16, to: u16) -> Tap {
        let sock = ns.run(|| UdpSocket::bind(("127.0.0.1", port)).must("binding the tap"));
        sock.set_read_timeout(Some(Duration::from_millis(20)))
            .must("timeout");
        let forward = Arc::new(AtomicBool::new(false));
        let stop = Arc::new(AtomicBool::new(false));
        let seen = Arc::new(Mutex::new(Vec::new()));
        let thread = std::thread::spawn({
            let (forward, stop, seen) = (forward.clone(), stop.clone(), seen.clone());
            move || {
                let mut buf = vec![0u8; 65536];
                while !stop.load(Ordering::Acquire) {
                    let Ok(n) = sock.recv(&mut buf) else {
                        continue;
                    };
                    let on = forward.load(Ordering::Acquire);
                    if on {
                        let _ = sock.send_to(&buf[..n], ("127.0.0.1", to));
                    }
                    seen.lock()
                        .expect("tap")
                        .push((Instant::now(), buf[..n].to_vec(), on));
                }
            }
        });
        Tap {
            forward,
            stop,
            seen,
            thread: Some(thread),
        }
    }

    fn seen(&self) -> Tapped {
        self.seen.lock().expect("tap").clone()
    }

    fn stop(mut self) -> Tapped {
        self.stop.store(true, Ordering::Release);
        if let Some(t) = self.thread.take() {
            t.join().expect("the tap");
        }
        self.seen()
    }
}

impl Drop for Tap {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Release);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Sends one datagram every 20 ms from the sending namespace until dropped.
struct Trickle {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Trickle {
    fn start(bed: &Bed, from: &str, to: &str, size: usize) -> Trickle {
        let sock = bed
            .tx
            .run(|| UdpSocket::bind(from).must("binding a sender"));
        let to: SocketAddr = to.parse().must("an address");
        let stop = Arc::new(AtomicBool::new(false));
        let thread = std::thread::spawn({
            let stop = stop.clone();
            move || {
                while !stop.load(Ordering::Acquire) {
                    let _ = sock.send_to(&vec![0x42; size], to);
                    std::thread::sleep(Duration::from_millis(20));
                }
            }
        });
        Trickle {
            stop,
            thread: Some(thread),
        }
    }
}

impl Drop for Trickle {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Release);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// `--ipfix-template-refresh 2s` over UDP: a collector that starts after
/// the first templates went out decodes every record from the next refresh
/// on, and none of the data it received before it; refreshes come every
/// 2 s.
#[test]
fn ipfix_late_collector_decodes_from_the_next_template_refresh() {
    require_tool("nfcapd");
    require_tool("nfdump");
    let bed = Bed::new("t");
    let dir = TempDir::new("ipfix-refresh");
    let port = free_udp_port(&bed.rx);
    let nf_port = free_udp_port(&bed.rx);
    let tap = Tap::start(&bed.rx, port, nf_port);
    let url = format!("udp://127.0.0.1:{port}");
    let mut watch = start_watch(
        &bed,
        dir.path(),
        "watch",
        &[
            "--interval",
            "250ms",
            "--ipfix",
            &url,
            "--ipfix-template-refresh",
            "2s",
        ],
    );
    let trickle = Trickle::start(&bed, &format!("{TX4}:43000"), &format!("{RX4}:9000"), 200);
    // The first templates are out: now the collector starts.
    watch.wait_until("export", Duration::from_secs(10), |_| {
        !tap.seen().is_empty()
    });
    let mut nfcapd = start_nfcapd(&bed.rx, dir.path(), nf_port);
    tap.forward.store(true, Ordering::Release);
    // Two refreshes after it, then a few more intervals.
    let with_templates = |t: &Tapped| {
        t.iter()
            .filter(|(_, m, _)| m.len() > 20 && be16(m, 16) == 2)
            .count()
    };
    watch.wait_until(
        "refresh its templates twice",
        Duration::from_secs(15),
        |_| with_templates(&tap.seen()) >= 3,
    );
    let n = summaries(&watch);
    wait_summaries(&mut watch, n + 3);
    drop(trickle);
    stop_clean(&mut watch, libc::SIGINT);
    std::thread::sleep(Duration::from_millis(300));
    let tapped = tap.stop();
    let status = nfcapd.signal_and_wait(libc::SIGTERM, Duration::from_secs(15));
    assert!(status.success(), "{}", nfcapd.output());

    // The exporter's stream as a whole, read from the start; and what the
    // collector could decode: records whose template reached it first.
    let mut reader = IpfixReader::default();
    let mut collector_knows = BTreeSet::new();
    let (mut decodable, mut undecodable) = (Vec::new(), Vec::new());
    let mut refreshes = Vec::new();
    for (at, msg, forwarded) in &tapped {
        let m = reader.read(msg);
        if !m.templates.is_empty() {
            refreshes.push(*at);
        }
        if !forwarded {
            continue;
        }
        collector_knows.extend(m.templates.iter().copied());
        for (tid, rec) in &m.records {
            if let Some(flow) = reader_flow(rec) {
                if collector_knows.contains(tid) {
                    decodable.push(flow);
                } else {
                    undecodable.push(flow);
                }
            }
        }
    }
    assert!(
        !undecodable.is_empty(),
        "the collector got data before the refresh (else nothing was tested)"
    );
    assert!(decodable.len() >= 3, "{decodable:?}");
    let gaps: Vec<Duration> = refreshes.windows(2).map(|w| w[1] - w[0]).collect();
    assert!(
        gaps.len() >= 2
            && gaps
                .iter()
                .all(|g| *g >= Duration::from_millis(1900) && *g <= Duration::from_millis(3000)),
        "templates every 2 s (at the first cut after it): {gaps:?}"
    );
    eprintln!(
        "{} datagrams, {} passed on; {} flow records reached the collector before \
         their template, {} after; templates every {gaps:?}",
        tapped.len(),
        tapped.iter().filter(|t| t.2).count(),
        undecodable.len(),
        decodable.len()
    );
    let multiset = |v: &[Decoded]| {
        let mut m = BTreeMap::new();
        for d in v {
            *m.entry(d.clone()).or_insert(0) += 1;
        }
        m
    };
    let got = nfdump_flows(&nfdump_json(dir.path()));
    assert_eq!(
        multiset(&got),
        multiset(&decodable),
        "nfdump has exactly the records after the refresh; not before: {undecodable:?}\n{}",
        nfcapd.output()
    );
    // And those are the watch's records of those intervals.
    let jsonl = Jsonl::parse(&watch.stdout());
    for d in &got {
        assert!(
            jsonl.flows.iter().any(|f| f.key == d.key
                && (f.start_ms, f.end_ms, f.packets) == (d.start_ms, d.end_ms, d.packets)),
            "{d:?}"
        );
    }
}

// ---------------------------------------------------------------------------
// 5. Collector down

/// `--ipfix tcp://` to a closed port and `udp://` to a port nothing listens
/// on, with `--metrics`: cuts stay on time, the TCP sink's
/// `netledger_export_dropped_total` rises and equals every record of every
/// interval cut so far; the UDP sink's series is there (a datagram to a
/// closed port leaves the socket as sent, so it counts no drop); the watch
/// ends by itself (`--count`) with status 0 and no panic.
#[test]
fn ipfix_collector_down_keeps_cutting_and_counts_drops() {
    let bed = Bed::new("d");
    let dir = TempDir::new("ipfix-down");
    let tcp = format!("tcp://127.0.0.1:{}", free_tcp_port(&bed.rx));
    let udp = format!("udp://127.0.0.1:{}", free_udp_port(&bed.rx));
    let addr = SocketAddr::from(([127, 0, 0, 1], free_tcp_port(&bed.rx)));
    let count = 12;
    let started = Instant::now();
    let mut watch = start_watch(
        &bed,
        dir.path(),
        "watch",
        &[
            "--interval",
            "500ms",
            "--count",
            &count.to_string(),
            "--ipfix",
            &tcp,
            "--ipfix",
            &udp,
            "--metrics",
            &addr.to_string(),
        ],
    );
    let trickle = Trickle::start(&bed, &format!("{TX4}:45000"), &format!("{RX4}:9000"), 64);
    let mut scrapes = Vec::new();
    for n in [3, 8] {
        wait_summaries(&mut watch, n);
        let (_, s) = scrape(&bed, addr, None);
        let jsonl = Jsonl::parse(&watch.stdout());
        scrapes.push((s, jsonl));
    }
    let status = watch.wait_exit(Duration::from_secs(20));
    drop(trickle);
    assert!(status.success(), "exit {status}:\n{}", watch.output());
    assert!(!watch.stderr().contains("panicked"), "{}", watch.output());
    // One log line when the TCP collector starts dropping, not one per cut.
    let said = format!("netledger: ipfix: {tcp}: dropping records until it is reachable");
    assert_eq!(
        watch.stderr().matches(&said).count(),
        1,
        "{}",
        watch.output()
    );
    let took = started.elapsed();

    let mut dropped = Vec::new();
    for (s, jsonl) in &scrapes {
        // The scrape shows the state as of the last cut: which one it was.
        let last = s.value("netledger_last_cut_timestamp_seconds", &[]);
        let k = jsonl
            .summaries
            .iter()
            .position(|x| ((last * 1000.0).floor() as u64).abs_diff(x.end_ms) <= 1)
            .unwrap_or_else(|| panic!("no interval ends at {last}: {:?}", jsonl.summaries));
        let records: usize = jsonl.summaries[..=k]
            .iter()
            .map(|x| {
                1 + jsonl
                    .flows
                    .iter()
                    .filter(|f| (f.start_ms, f.end_ms) == (x.start_ms, x.end_ms))
                    .count()
            })
            .sum();
        let d = s.value("netledger_export_dropped_total", &[("sink", tcp.as_str())]);
        assert_eq!(d, records as f64, "every record of intervals 1..={}", k + 1);
        assert_eq!(
            s.value("netledger_export_dropped_total", &[("sink", udp.as_str())]),
            0.0
        );
        dropped.push(d);
    }
    assert!(dropped[1] > dropped[0], "{dropped:?}");
    eprintln!("netledger_export_dropped_total{{sink={tcp:?}}}: {dropped:?}");

    // On time: every interval but the first (which starts at load) lasts
    // the interval, and the cuts keep to the schedule.
    let jsonl = Jsonl::parse(&watch.stdout());
    assert_eq!(jsonl.summaries.len(), count);
    assert!(jsonl.flows.len() >= count - 2, "traffic in the intervals");
    for w in jsonl.summaries.windows(2) {
        assert_eq!(w[0].end_ms, w[1].start_ms, "contiguous");
    }
    for s in &jsonl.summaries[1..] {
        let len = s.end_ms - s.start_ms;
        assert!((400..=900).contains(&len), "interval of {len} ms");
    }
    let (first, last) = (&jsonl.summaries[0], &jsonl.summaries[count - 1]);
    let span = last.end_ms - first.end_ms;
    let want = 500 * (count as u64 - 1);
    assert!(
        span.abs_diff(want) <= 400,
        "{span} ms from the first cut to the last, {want} ms expected"
    );
    assert!(took < Duration::from_secs(15), "{took:?}");
}
