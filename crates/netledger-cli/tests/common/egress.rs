//! What the egress tests (`tests/egress.rs`) stand on: a testbed of two
//! namespaces joined by a veth pair, `netledger watch` processes stopped
//! (or killed) by pid, captures of what a peer receives, the tc and
//! bpftool views of an interface, and raw BPF calls that list what tcx runs
//! and load programs of "another tool".
//!
//! Everything a test creates is removed by a drop guard, in order: the
//! watch processes (by their own pid), then the veth, then the namespaces.
//! A watch runs under `ip netns exec`, which gives it a mount namespace and
//! a bpffs of its own: its pins die with it, even after a kill -9.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::ffi::CString;
use std::io::{self, BufRead, BufReader, Read};
use std::net::IpAddr;
use std::os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd};
use std::process::{Child, ChildStderr, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use netledger_lab::netns::{self, setsockopt, Ipv6Mode, NetNs, Veth};

pub const BIN: &str = env!("CARGO_BIN_EXE_netledger");

// ---------------------------------------------------------------------------
// Tools

/// Fails (never skips) when a tool the tests drive is missing.
#[track_caller]
pub fn require_tools() {
    for (tool, arg, package) in [
        ("ip", "-V", "iproute2"),
        ("tc", "-V", "iproute2"),
        ("ethtool", "--version", "ethtool"),
        ("bpftool", "version", "bpftool"),
    ] {
        let ok = Command::new(tool)
            .arg(arg)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        assert!(
            ok,
            "`{tool}` is missing: install the Debian package {package} (apt-get install {package})"
        );
    }
}

/// Runs `program args` and returns stdout; panics with stderr on failure.
#[track_caller]
pub fn run(program: &str, args: &[&str]) -> String {
    let out = Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("cannot run {program} {args:?}: {e}"));
    assert!(
        out.status.success(),
        "{program} {args:?} failed ({}): {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

// ---------------------------------------------------------------------------
// The testbed

/// Two namespaces, `tx` and `rx`, joined by veth `a` (in tx) <-> `b` (in
/// rx), prepared for exact counting (offloads off, IPv6 quiet), with
/// addresses and static neighbours both ways. Fields drop in order: the
/// veth, then the namespaces.
pub struct Bed {
    pub veth: Veth,
    pub tx: NetNs,
    pub rx: NetNs,
    pub a: String,
    pub b: String,
    /// The addresses of `a` (several, to make several flows) and of `b`.
    pub tx4: Vec<IpAddr>,
    pub tx6: Vec<IpAddr>,
    pub rx4: IpAddr,
    pub rx6: IpAddr,
}

impl Bed {
    /// A bed whose names and addresses derive from `n` (unique per test):
    /// veths `nleg{2n}` / `nleg{2n+1}`, 10.210.n.0/24, fd00:210:n::/64.
    #[track_caller]
    pub fn new(n: u8) -> Bed {
        require_tools();
        let tx = NetNs::create("nleg-tx").expect("creating the tx namespace");
        let rx = NetNs::create("nleg-rx").expect("creating the rx namespace");
        let (a, b) = (format!("nleg{}", 2 * n), format!("nleg{}", 2 * n + 1));
        let veth = netns::veth_pair(&a, Some(&tx), &b, Some(&rx)).expect("creating the veth");
        let (ea, eb) = (veth.a(), veth.b());
        ea.prepare(Ipv6Mode::Static).expect("preparing the tx end");
        eb.prepare(Ipv6Mode::Static).expect("preparing the rx end");
        let (mac_a, mac_b) = (ea.mac().unwrap(), eb.mac().unwrap());
        let ip = |s: String| -> IpAddr { s.parse().unwrap() };
        let tx4: Vec<IpAddr> = [1, 11, 12]
            .iter()
            .map(|h| ip(format!("10.210.{n}.{h}")))
            .collect();
        let tx6: Vec<IpAddr> = [1, 0x11]
            .iter()
            .map(|h| ip(format!("fd00:210:{n}::{h:x}")))
            .collect();
        let rx4 = ip(format!("10.210.{n}.2"));
        let rx6 = ip(format!("fd00:210:{n}::2"));
        for a4 in &tx4 {
            ea.add_addr(*a4, 24).unwrap();
            eb.add_neigh(*a4, mac_a).unwrap();
        }
        for a6 in &tx6 {
            ea.add_addr(*a6, 64).unwrap();
            eb.add_neigh(*a6, mac_a).unwrap();
        }
        eb.add_addr(rx4, 24).unwrap();
        eb.add_addr(rx6, 64).unwrap();
        ea.add_neigh(rx4, mac_b).unwrap();
        ea.add_neigh(rx6, mac_b).unwrap();
        // The MLD reports of the addresses just added go out within
        // milliseconds (Ipv6Mode::Static); after this the link is silent.
        std::thread::sleep(Duration::from_millis(300));
        Bed {
            veth,
            tx,
            rx,
            a,
            b,
            tx4,
            tx6,
            rx4,
            rx6,
        }
    }

    /// `ethtool -K IF features...` on `a` (in tx) or `b` (in rx).
    #[track_caller]
    pub fn ethtool(&self, on_a: bool, features: &[&str]) {
        let (ns, iface) = if on_a {
            (&self.tx, &self.a)
        } else {
            (&self.rx, &self.b)
        };
        let mut args = vec!["-K", iface.as_str()];
        args.extend_from_slice(features);
        ns.exec("ethtool", &args)
            .unwrap_or_else(|e| panic!("ethtool {args:?}: {e}"));
    }
}

impl Bed {
    /// Frames the veth dropped, at either end, either way (a full receive
    /// ring, a full backlog): the peer's view equals the sender's only on a
    /// lossless link.
    #[track_caller]
    pub fn drops(&self) -> u64 {
        let mut n = 0;
        for (ns, iface) in [(&self.tx, &self.a), (&self.rx, &self.b)] {
            let out = run(
                "ip",
                &["-n", ns.name(), "-s", "-j", "link", "show", "dev", iface],
            );
            let v: serde_json::Value = serde_json::from_str(&out).expect("ip -j output");
            let s = &v[0]["stats64"];
            n +=
                s["tx"]["dropped"].as_u64().unwrap_or(0) + s["rx"]["dropped"].as_u64().unwrap_or(0);
        }
        n
    }

    /// A root qdisc on the sending end: with one, veth holds packets back
    /// when the peer's receive ring is full, instead of dropping them.
    #[track_caller]
    pub fn lossless(&self) {
        run(
            "tc",
            &[
                "-n",
                self.tx.name(),
                "qdisc",
                "replace",
                "dev",
                &self.a,
                "root",
                "pfifo",
                "limit",
                "100000",
            ],
        );
    }
}

// ---------------------------------------------------------------------------
// `netledger watch`

/// A running `netledger watch` in a namespace (`ip netns exec`, which execs
/// it: the child's pid is netledger's). Killed by its pid if the test ends
/// before stopping it.
pub struct Watch {
    pub child: Child,
    stderr: BufReader<ChildStderr>,
    stdout: mpsc::Receiver<String>,
    /// Its first line: "netledger: counting ...".
    pub started: String,
}

/// What a watch left behind.
pub struct Stopped {
    pub status: ExitStatus,
    pub stdout: String,
    pub stderr: String,
}

impl Watch {
    /// Start `netledger watch ARGS` in `ns` and wait until it counts.
    #[track_caller]
    pub fn start(ns: &NetNs, args: &[&str]) -> Watch {
        let mut child = Command::new("ip")
            .args(["netns", "exec", ns.name(), BIN, "watch"])
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawning ip netns exec netledger watch");
        let stderr = BufReader::new(child.stderr.take().unwrap());
        let out = child.stdout.take().unwrap();
        // Collected on a thread, so a full pipe never blocks the watch.
        let (tx, stdout) = mpsc::channel();
        std::thread::spawn(move || {
            let mut s = String::new();
            let _ = BufReader::new(out).read_to_string(&mut s);
            let _ = tx.send(s);
        });
        let mut w = Watch {
            child,
            stderr,
            stdout,
            started: String::new(),
        };
        // It says when it counts. A warning may come first (e.g. that other
        // processes cannot reach it through pins: counting is the same);
        // anything else, or an exit, fails the test once the watch is
        // stopped (never a read that waits for a running watch to end).
        let mut said = String::new();
        loop {
            let mut line = String::new();
            let n = w.stderr.read_line(&mut line).unwrap_or(0);
            if line.contains("netledger: counting ") {
                w.started = line;
                return w;
            }
            said.push_str(&line);
            if n == 0 || !line.starts_with("netledger: warning: ") {
                let s = w.kill9();
                panic!(
                    "watch {args:?} did not start ({}): {said}{}",
                    s.status, s.stderr
                );
            }
            eprintln!("watch {args:?}: {}", line.trim_end());
        }
    }

    fn pid(&self) -> i32 {
        self.child.id() as i32
    }

    /// SIGINT, then its exit status and everything it printed.
    #[track_caller]
    pub fn stop(&mut self) -> Stopped {
        // SAFETY: kill(2) on the pid of our own child, not yet reaped.
        unsafe { libc::kill(self.pid(), libc::SIGINT) };
        self.collect()
    }

    /// SIGKILL: no cleanup of its own runs.
    #[track_caller]
    pub fn kill9(&mut self) -> Stopped {
        // SAFETY: as above.
        unsafe { libc::kill(self.pid(), libc::SIGKILL) };
        self.collect()
    }

    #[track_caller]
    fn collect(&mut self) -> Stopped {
        // A watch that does not end within 30 s is killed and fails the test.
        let until = Instant::now() + Duration::from_secs(30);
        let status = loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                break status;
            }
            if Instant::now() > until {
                let _ = self.child.kill();
                let _ = self.child.wait();
                panic!("the watch did not exit within 30 s of its signal");
            }
            std::thread::sleep(Duration::from_millis(10));
        };
        let mut stderr = String::new();
        let _ = self.stderr.read_to_string(&mut stderr);
        let stdout = self
            .stdout
            .recv_timeout(Duration::from_secs(10))
            .expect("the watch's stdout closes when it exits");
        Stopped {
            status,
            stdout,
            stderr,
        }
    }
}

impl Drop for Watch {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// A flow as both the JSON records and the captures name it: protocol (a
/// name or a number), source, destination, and ports or ICMP type/code.
pub type Key = (String, String, String, u16, u16);

/// Packets and bytes.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Count {
    pub packets: u64,
    pub bytes: u64,
}

impl Count {
    pub fn add(&mut self, packets: u64, bytes: u64) {
        self.packets += packets;
        self.bytes += bytes;
    }
}

/// A watch's JSON lines, summed per direction: each flow, and the buckets.
#[derive(Debug, Default)]
pub struct Ledger {
    pub flows: BTreeMap<Key, Count>,
    pub buckets: BTreeMap<String, Count>,
    pub seen: Count,
    pub intervals: usize,
}

fn key_of_json(k: &serde_json::Value) -> Key {
    let proto = match &k["proto"] {
        serde_json::Value::String(s) => s.clone(),
        n => n.to_string(),
    };
    let port = |a: &str, b: &str| k[a].as_u64().or_else(|| k[b].as_u64()).unwrap_or(0) as u16;
    (
        proto,
        k["src"].as_str().expect("five-tuple keys").to_string(),
        k["dst"].as_str().expect("five-tuple keys").to_string(),
        port("sport", "icmp_type"),
        port("dport", "icmp_code"),
    )
}

/// Parse `--format jsonl` output into a ledger per direction ("in", "out");
/// checks `seen == sum of buckets` in every interval's summary.
#[track_caller]
pub fn ledgers(stdout: &str) -> BTreeMap<String, Ledger> {
    let mut out: BTreeMap<String, Ledger> = BTreeMap::new();
    for line in stdout.lines() {
        let v: serde_json::Value =
            serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line}"));
        let dir = v["dir"]
            .as_str()
            .unwrap_or_else(|| panic!("a record without dir: {line}"))
            .to_string();
        assert!(dir == "in" || dir == "out", "dir {dir:?}: {line}");
        let l = out.entry(dir).or_default();
        let count = |c: &serde_json::Value| Count {
            packets: c["packets"].as_u64().unwrap(),
            bytes: c["bytes"].as_u64().unwrap(),
        };
        match v["type"].as_str() {
            Some("flow") => {
                let c = count(&v);
                l.flows
                    .entry(key_of_json(&v["key"]))
                    .or_default()
                    .add(c.packets, c.bytes);
            }
            Some("summary") => {
                l.intervals += 1;
                let seen = count(&v["seen"]);
                let mut parts = Count::default();
                for b in ["counted", "non_ip", "malformed", "map_full", "evict_race"] {
                    let c = count(&v["buckets"][b]);
                    parts.add(c.packets, c.bytes);
                    l.buckets
                        .entry(b.to_string())
                        .or_default()
                        .add(c.packets, c.bytes);
                }
                assert_eq!(seen, parts, "seen == sum of the buckets: {line}");
                l.seen.add(seen.packets, seen.bytes);
            }
            other => panic!("unknown record type {other:?}: {line}"),
        }
    }
    out
}

// ---------------------------------------------------------------------------
// What a peer receives

/// One frame a capture took, as on the wire (an outer VLAN tag the kernel
/// carried beside it put back), with the GSO facts of its skb when the
/// capture asked for them (PACKET_VNET_HDR): `gso_size` 0 for a frame that
/// is one wire frame.
#[derive(Debug, Clone)]
pub struct Frame {
    pub data: Vec<u8>,
    pub gso_size: u16,
}

/// A capture of what an interface receives (PACKET_HOST, _BROADCAST,
/// _MULTICAST, _OTHERHOST: everything but what it sends), started in the
/// interface's namespace. With `vnet`, each frame comes with its skb's
/// GSO facts: a GSO/GRO packet received whole says its segment size.
pub struct PeerCapture {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<io::Result<Captured>>>,
}

/// The frames a capture took, and how many the kernel dropped.
type Captured = (Vec<Frame>, u32);

impl PeerCapture {
    #[track_caller]
    pub fn start(ns: &NetNs, iface: &str, vnet: bool) -> PeerCapture {
        let iface_c = CString::new(iface).unwrap();
        let fd = ns
            .run(move || -> io::Result<OwnedFd> {
                // SAFETY: a valid NUL-terminated name.
                let ifindex = unsafe { libc::if_nametoindex(iface_c.as_ptr()) };
                if ifindex == 0 {
                    return Err(io::Error::last_os_error());
                }
                let fd = netns::packet_socket()?;
                let buf: libc::c_int = 64 << 20;
                setsockopt(
                    fd.as_fd(),
                    libc::SOL_SOCKET,
                    libc::SO_RCVBUFFORCE,
                    &buf,
                    "SO_RCVBUFFORCE",
                )?;
                // Keep everything but outgoing frames: pkttype != OUTGOING.
                let mut filter = [
                    libc::sock_filter {
                        code: (libc::BPF_LD | libc::BPF_W | libc::BPF_ABS) as u16,
                        jt: 0,
                        jf: 0,
                        k: (libc::SKF_AD_OFF + libc::SKF_AD_PKTTYPE) as u32,
                    },
                    libc::sock_filter {
                        code: (libc::BPF_JMP | libc::BPF_JEQ | libc::BPF_K) as u16,
                        jt: 0,
                        jf: 1,
                        k: libc::PACKET_OUTGOING as u32,
                    },
                    libc::sock_filter {
                        code: (libc::BPF_RET | libc::BPF_K) as u16,
                        jt: 0,
                        jf: 0,
                        k: 0,
                    },
                    libc::sock_filter {
                        code: (libc::BPF_RET | libc::BPF_K) as u16,
                        jt: 0,
                        jf: 0,
                        k: u32::MAX,
                    },
                ];
                let prog = libc::sock_fprog {
                    len: filter.len() as u16,
                    filter: filter.as_mut_ptr(),
                };
                setsockopt(
                    fd.as_fd(),
                    libc::SOL_SOCKET,
                    libc::SO_ATTACH_FILTER,
                    &prog,
                    "SO_ATTACH_FILTER",
                )?;
                let one: libc::c_int = 1;
                setsockopt(
                    fd.as_fd(),
                    libc::SOL_PACKET,
                    libc::PACKET_AUXDATA,
                    &one,
                    "PACKET_AUXDATA",
                )?;
                if vnet {
                    setsockopt(
                        fd.as_fd(),
                        libc::SOL_PACKET,
                        libc::PACKET_VNET_HDR,
                        &one,
                        "PACKET_VNET_HDR",
                    )?;
                }
                let tv = libc::timeval {
                    tv_sec: 0,
                    tv_usec: 50_000,
                };
                setsockopt(
                    fd.as_fd(),
                    libc::SOL_SOCKET,
                    libc::SO_RCVTIMEO,
                    &tv,
                    "SO_RCVTIMEO",
                )?;
                netns::bind_packet(fd.as_fd(), ifindex, libc::ETH_P_ALL as u16, iface)?;
                Ok(fd)
            })
            .unwrap_or_else(|e| panic!("capturing on {iface}: {e}"));
        let stop = Arc::new(AtomicBool::new(false));
        let flag = Arc::clone(&stop);
        let thread = std::thread::spawn(move || capture_loop(fd, vnet, &flag));
        PeerCapture {
            stop,
            thread: Some(thread),
        }
    }

    /// Stop and return every frame; fails if the kernel dropped any.
    #[track_caller]
    pub fn stop(mut self) -> Vec<Frame> {
        self.stop.store(true, Ordering::Release);
        let (frames, drops) = self
            .thread
            .take()
            .unwrap()
            .join()
            .unwrap()
            .expect("the capture failed");
        assert_eq!(
            drops,
            0,
            "the capture lost {drops} frames (it saw {})",
            frames.len()
        );
        frames
    }
}

impl Drop for PeerCapture {
    fn drop(&mut self) {
        if let Some(t) = self.thread.take() {
            self.stop.store(true, Ordering::Release);
            let _ = t.join();
        }
    }
}

/// `struct virtio_net_hdr` (10 bytes): flags, gso_type, hdr_len, gso_size, ...
const VNET_HDR_LEN: usize = 10;

fn capture_loop(fd: OwnedFd, vnet: bool, stop: &AtomicBool) -> io::Result<Captured> {
    let mut buf = vec![0u8; 256 << 10];
    let mut frames = Vec::new();
    let mut draining: Option<Instant> = None;
    loop {
        let stopping = stop.load(Ordering::Acquire);
        if stopping {
            let until = *draining.get_or_insert_with(|| Instant::now() + Duration::from_secs(1));
            if Instant::now() > until {
                break;
            }
        }
        let flags = if stopping { libc::MSG_DONTWAIT } else { 0 };
        let got = match netns::recv_packet(fd.as_fd(), &mut buf, flags) {
            Ok(got) => got,
            Err(e) => match e.raw_os_error() {
                Some(libc::EAGAIN) if stopping => break,
                Some(libc::EAGAIN | libc::EINTR | libc::ENETDOWN) => continue,
                _ => return Err(e),
            },
        };
        let (gso_size, data) = if vnet {
            let h = &buf[..VNET_HDR_LEN];
            let gso_type = h[1] & 0x7f;
            let size = u16::from_ne_bytes([h[4], h[5]]);
            (
                if gso_type == 0 { 0 } else { size },
                &buf[VNET_HDR_LEN..got.len],
            )
        } else {
            (0, &buf[..got.len])
        };
        frames.push(Frame {
            data: netns::with_vlan_tag(data, got.vlan),
            gso_size,
        });
    }
    Ok((frames, netns::packet_drops(fd.as_fd())?))
}

/// What a frame is: its flow key (None for a frame that is not IP), and
/// the length of its headers, L2 to the end of TCP/UDP (0 for others).
pub fn parse(frame: &[u8]) -> (Option<Key>, usize) {
    let be16 = |at: usize| u16::from_be_bytes([frame[at], frame[at + 1]]);
    let mut at = 12;
    let mut ethertype = be16(at);
    let mut tags = 0;
    while (ethertype == 0x8100 || ethertype == 0x88a8) && tags < 2 {
        at += 4;
        tags += 1;
        ethertype = be16(at);
    }
    let l3 = at + 2;
    let (src, dst, mut proto, mut l4, fragment): (IpAddr, IpAddr, u8, usize, bool) = match ethertype
    {
        0x0800 => {
            let ihl = usize::from(frame[l3] & 0x0f) * 4;
            let s: [u8; 4] = frame[l3 + 12..l3 + 16].try_into().unwrap();
            let d: [u8; 4] = frame[l3 + 16..l3 + 20].try_into().unwrap();
            let frag = be16(l3 + 6) & 0x1fff != 0;
            (s.into(), d.into(), frame[l3 + 9], l3 + ihl, frag)
        }
        0x86dd => {
            let s: [u8; 16] = frame[l3 + 8..l3 + 24].try_into().unwrap();
            let d: [u8; 16] = frame[l3 + 24..l3 + 40].try_into().unwrap();
            (s.into(), d.into(), frame[l3 + 6], l3 + 40, false)
        }
        _ => return (None, 0),
    };
    let mut fragment = fragment;
    if ethertype == 0x86dd {
        // Hop-by-hop, routing, destination options, fragment.
        while [0u8, 43, 60, 44].contains(&proto) {
            let next = frame[l4];
            if proto == 44 {
                fragment = be16(l4 + 2) & 0xfff8 != 0;
                l4 += 8;
            } else {
                l4 += (usize::from(frame[l4 + 1]) + 1) * 8;
            }
            proto = next;
        }
    }
    let name = netledger::proto_text(proto);
    let (a, b, hdr) = match proto {
        _ if fragment => (0, 0, 0),
        6 => (
            be16(l4),
            be16(l4 + 2),
            l4 + usize::from(frame[l4 + 12] >> 4) * 4,
        ),
        17 => (be16(l4), be16(l4 + 2), l4 + 8),
        1 | 58 => (u16::from(frame[l4]), u16::from(frame[l4 + 1]), 0),
        _ => (0, 0, 0),
    };
    (Some((name, src.to_string(), dst.to_string(), a, b)), hdr)
}

/// The frames' counts per flow, and those of the frames that are not IP.
/// Each frame is what it stands for on the wire: a GSO/GRO packet received
/// whole (`gso_size` > 0) is ceil(payload / gso_size) segments, each with
/// the packet's headers.
pub fn tally(frames: &[Frame]) -> (BTreeMap<Key, Count>, Count) {
    let mut flows: BTreeMap<Key, Count> = BTreeMap::new();
    let mut non_ip = Count::default();
    for f in frames {
        let (key, hdr) = parse(&f.data);
        let len = f.data.len();
        let (packets, bytes) = if f.gso_size > 0 && hdr > 0 && len > hdr {
            let segs = (len - hdr).div_ceil(usize::from(f.gso_size));
            (segs as u64, (len + (segs - 1) * hdr) as u64)
        } else {
            (1, len as u64)
        };
        match key {
            Some(k) => flows.entry(k).or_default().add(packets, bytes),
            None => non_ip.add(packets, bytes),
        }
    }
    (flows, non_ip)
}

// ---------------------------------------------------------------------------
// The tc and bpftool views of an interface

/// `tc qdisc show dev IF` in `ns`.
pub fn qdiscs(ns: &NetNs, iface: &str) -> String {
    run("tc", &["-n", ns.name(), "qdisc", "show", "dev", iface])
}

/// `tc filter show dev IF ingress|egress` in `ns` (empty without clsact).
pub fn filters(ns: &NetNs, iface: &str, point: &str) -> String {
    let out = Command::new("tc")
        .args(["-n", ns.name(), "filter", "show", "dev", iface, point])
        .output()
        .expect("running tc");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// `bpftool net show dev IF` in `ns`.
pub fn bpftool_net(ns: &NetNs, iface: &str) -> String {
    run(
        "ip",
        &[
            "netns",
            "exec",
            ns.name(),
            "bpftool",
            "net",
            "show",
            "dev",
            iface,
        ],
    )
}

/// What of netledger's is attached to `iface` in `ns`, one entry each:
/// programs named nl_* that tcx runs (asked of the kernel: bpftool before
/// 7.3, Debian 12's, does not list tcx programs), clsact filters of nl_tc,
/// and what `bpftool net show` lists (XDP and clsact filters).
#[track_caller]
pub fn ours_attached(ns: &NetNs, iface: &str) -> Vec<String> {
    let mut found = Vec::new();
    for (point, at) in [
        (BPF_TCX_INGRESS, "tcx ingress"),
        (BPF_TCX_EGRESS, "tcx egress"),
    ] {
        for name in tcx_names(ns, iface, point) {
            if name.starts_with("nl_") {
                found.push(format!("{at}: {name}"));
            }
        }
    }
    for point in ["ingress", "egress"] {
        let f = filters(ns, iface, point);
        if f.contains("nl_tc") {
            found.push(format!("{point} filters: {}", f.trim()));
        }
    }
    let net = bpftool_net(ns, iface);
    for line in net.lines().filter(|l| l.contains("nl_")) {
        found.push(format!("bpftool net show: {}", line.trim()));
    }
    found
}

// ---------------------------------------------------------------------------
// Raw BPF: what tcx runs, and programs of another tool

const BPF_MAP_CREATE: i64 = 0;
const BPF_MAP_LOOKUP_ELEM: i64 = 1;
const BPF_PROG_LOAD: i64 = 5;
const BPF_PROG_ATTACH: i64 = 8;
const BPF_PROG_DETACH: i64 = 9;
const BPF_PROG_GET_FD_BY_ID: i64 = 13;
const BPF_OBJ_GET_INFO_BY_FD: i64 = 15;
const BPF_PROG_QUERY: i64 = 16;
const BPF_MAP_TYPE_ARRAY: u32 = 2;
const BPF_PROG_TYPE_SCHED_CLS: u32 = 3;
pub const BPF_TCX_INGRESS: u32 = 46;
pub const BPF_TCX_EGRESS: u32 = 47;
/// The most programs one tcx hook runs (BPF_MPROG_MAX).
pub const TCX_MAX: usize = 64;

/// bpf(2) with `attr` (a union bpf_attr prefix, zero beyond what is set).
fn bpf(cmd: i64, attr: &mut [u8]) -> io::Result<i32> {
    // SAFETY: attr is valid for its length, which is passed as the size.
    let r = unsafe { libc::syscall(libc::SYS_bpf, cmd, attr.as_mut_ptr(), attr.len()) };
    if r < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(r as i32)
}

fn put32(b: &mut [u8], at: usize, v: u32) {
    b[at..at + 4].copy_from_slice(&v.to_ne_bytes());
}

fn put64(b: &mut [u8], at: usize, v: u64) {
    b[at..at + 8].copy_from_slice(&v.to_ne_bytes());
}

/// One BPF instruction: code, dst and src registers, offset, immediate.
fn insn(code: u8, dst: u8, src: u8, off: i16, imm: i32) -> [u8; 8] {
    let mut i = [0u8; 8];
    i[0] = code;
    i[1] = (src << 4) | dst;
    i[2..4].copy_from_slice(&off.to_ne_bytes());
    i[4..8].copy_from_slice(&imm.to_ne_bytes());
    i
}

/// A tc program of "another tool": it counts the skbs it sees in an array
/// map (when it has one) and returns TCX_NEXT (-1), so the programs after
/// it run too. Attached with BPF_PROG_ATTACH (no link): it stays attached
/// until detached or until its interface goes, whoever exits.
pub struct Foreign {
    prog: OwnedFd,
    map: Option<OwnedFd>,
    pub id: u32,
}

impl Foreign {
    /// `count`: count skbs in a map; else just `return -1`.
    #[track_caller]
    pub fn load(name: &str, count: bool) -> Foreign {
        let map = count.then(|| {
            let mut a = [0u8; 48];
            put32(&mut a, 0, BPF_MAP_TYPE_ARRAY);
            put32(&mut a, 4, 4);
            put32(&mut a, 8, 8);
            put32(&mut a, 12, 1);
            let fd = bpf(BPF_MAP_CREATE, &mut a).expect("creating the foreign program's map");
            // SAFETY: bpf(2) returned a new descriptor we own.
            unsafe { OwnedFd::from_raw_fd(fd) }
        });
        let mut code: Vec<[u8; 8]> = Vec::new();
        if let Some(m) = &map {
            code.extend([
                insn(0x62, 10, 0, -4, 0),           // *(u32 *)(r10 - 4) = 0
                insn(0xbf, 2, 10, 0, 0),            // r2 = r10
                insn(0x07, 2, 0, 0, -4),            // r2 += -4
                insn(0x18, 1, 1, 0, m.as_raw_fd()), // r1 = map (ld_imm64)
                insn(0, 0, 0, 0, 0),                //   (its second half)
                insn(0x85, 0, 0, 0, 1),             // call bpf_map_lookup_elem
                insn(0x15, 0, 0, 2, 0),             // if r0 == 0 goto +2
                insn(0xb7, 1, 0, 0, 1),             // r1 = 1
                insn(0xdb, 0, 1, 0, 0),             // lock *(u64 *)(r0 + 0) += r1
            ]);
        }
        code.extend([
            insn(0xb7, 0, 0, 0, -1), // r0 = TCX_NEXT
            insn(0x95, 0, 0, 0, 0),  // exit
        ]);
        let insns: Vec<u8> = code.concat();
        let license = b"GPL\0";
        let mut log = vec![0u8; 64 << 10];
        let mut a = [0u8; 72];
        put32(&mut a, 0, BPF_PROG_TYPE_SCHED_CLS);
        put32(&mut a, 4, code.len() as u32);
        put64(&mut a, 8, insns.as_ptr() as u64);
        put64(&mut a, 16, license.as_ptr() as u64);
        put32(&mut a, 24, 1);
        put32(&mut a, 28, log.len() as u32);
        put64(&mut a, 32, log.as_mut_ptr() as u64);
        let n = name.len().min(15);
        a[48..48 + n].copy_from_slice(&name.as_bytes()[..n]);
        let fd = bpf(BPF_PROG_LOAD, &mut a).unwrap_or_else(|e| {
            let end = log.iter().position(|&b| b == 0).unwrap_or(0);
            panic!(
                "loading the foreign program: {e}\n{}",
                String::from_utf8_lossy(&log[..end])
            )
        });
        // SAFETY: bpf(2) returned a new descriptor we own.
        let prog = unsafe { OwnedFd::from_raw_fd(fd) };
        let id = prog_info(&prog).0;
        Foreign { prog, map, id }
    }

    /// Attach to tcx `point` (BPF_TCX_INGRESS/EGRESS) of `iface` in `ns`,
    /// after whatever runs there.
    pub fn attach(&self, ns: &NetNs, iface: &str, point: u32) -> io::Result<()> {
        self.at_point(BPF_PROG_ATTACH, ns, iface, point)
    }

    /// Detach it from tcx `point` of `iface` in `ns`.
    pub fn detach(&self, ns: &NetNs, iface: &str, point: u32) -> io::Result<()> {
        self.at_point(BPF_PROG_DETACH, ns, iface, point)
    }

    /// BPF_PROG_ATTACH or BPF_PROG_DETACH (`cmd`) of it at tcx `point` of
    /// `iface` in `ns`.
    fn at_point(&self, cmd: i64, ns: &NetNs, iface: &str, point: u32) -> io::Result<()> {
        let fd = self.prog.as_raw_fd() as u32;
        let ifindex = ifindex_in(ns, iface);
        ns.run(move || {
            let mut a = [0u8; 32];
            put32(&mut a, 0, ifindex);
            put32(&mut a, 4, fd);
            put32(&mut a, 8, point);
            bpf(cmd, &mut a).map(drop)
        })
    }

    /// The skbs it counted.
    #[track_caller]
    pub fn count(&self) -> u64 {
        let map = self.map.as_ref().expect("a counting program");
        let key = 0u32;
        let mut value = 0u64;
        let mut a = [0u8; 32];
        put32(&mut a, 0, map.as_raw_fd() as u32);
        put64(&mut a, 8, &key as *const u32 as u64);
        put64(&mut a, 16, &mut value as *mut u64 as u64);
        bpf(BPF_MAP_LOOKUP_ELEM, &mut a).expect("reading the foreign counter");
        value
    }
}

#[track_caller]
fn ifindex_in(ns: &NetNs, iface: &str) -> u32 {
    let name = CString::new(iface).unwrap();
    // SAFETY: a valid NUL-terminated name.
    let i = ns.run(move || unsafe { libc::if_nametoindex(name.as_ptr()) });
    assert!(i != 0, "no interface {iface} in {}", ns.name());
    i
}

/// A program's id and name.
fn prog_info(fd: &OwnedFd) -> (u32, String) {
    let mut info = [0u8; 96];
    let mut a = [0u8; 16];
    put32(&mut a, 0, fd.as_raw_fd() as u32);
    put32(&mut a, 4, info.len() as u32);
    put64(&mut a, 8, info.as_mut_ptr() as u64);
    bpf(BPF_OBJ_GET_INFO_BY_FD, &mut a).expect("BPF_OBJ_GET_INFO_BY_FD");
    let id = u32::from_ne_bytes(info[4..8].try_into().unwrap());
    let name = &info[64..80];
    let end = name.iter().position(|&b| b == 0).unwrap_or(16);
    (id, String::from_utf8_lossy(&name[..end]).into_owned())
}

/// The programs tcx runs at `point` of `iface` in `ns`, in order: (id, name).
#[track_caller]
pub fn tcx_programs(ns: &NetNs, iface: &str, point: u32) -> Vec<(u32, String)> {
    let ifindex = ifindex_in(ns, iface);
    let ids = ns
        .run(move || -> io::Result<Vec<u32>> {
            let mut ids = vec![0u32; TCX_MAX];
            let mut a = [0u8; 64];
            put32(&mut a, 0, ifindex);
            put32(&mut a, 4, point);
            put64(&mut a, 16, ids.as_mut_ptr() as u64);
            put32(&mut a, 24, ids.len() as u32);
            bpf(BPF_PROG_QUERY, &mut a)?;
            let n = u32::from_ne_bytes(a[24..28].try_into().unwrap()) as usize;
            ids.truncate(n);
            Ok(ids)
        })
        .unwrap_or_else(|e| panic!("BPF_PROG_QUERY of {iface}: {e}"));
    ids.into_iter()
        .filter_map(|id| {
            let mut a = [0u8; 16];
            put32(&mut a, 0, id);
            // Gone between the query and now: not attached any more.
            let fd = bpf(BPF_PROG_GET_FD_BY_ID, &mut a).ok()?;
            // SAFETY: bpf(2) returned a new descriptor we own.
            let fd = unsafe { OwnedFd::from_raw_fd(fd) };
            Some(prog_info(&fd))
        })
        .collect()
}

/// The names of the programs tcx runs at `point`.
#[track_caller]
pub fn tcx_names(ns: &NetNs, iface: &str, point: u32) -> Vec<String> {
    tcx_programs(ns, iface, point)
        .into_iter()
        .map(|(_, n)| n)
        .collect()
}

/// Wait (up to 5 s) until `f` holds; panic with `what` otherwise.
#[track_caller]
pub fn eventually(what: &str, mut f: impl FnMut() -> bool) {
    let until = Instant::now() + Duration::from_secs(5);
    while !f() {
        assert!(Instant::now() < until, "{what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}
