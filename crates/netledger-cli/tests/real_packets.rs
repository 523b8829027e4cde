//! Real packets through a veth pair between two namespaces: TCP and UDP
//! from several addresses and ports, IPv4 and IPv6, one VLAN, offloads off.
//! `netledger watch --format jsonl` on the receiving end must report, per
//! flow, exactly the frames a capture saw leave the sending end.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::{IpAddr, SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::process::Command;
use std::time::Duration;

use etherparse::{NetSlice, SlicedPacket, TransportSlice};
use netledger_lab::netns::{self, Capture, Ipv6Mode, NetNs};

mod common;
use common::Watch;

const BIN: &str = env!("CARGO_BIN_EXE_netledger");

/// (vlan, src, dst, proto, sport, dport)
type Key = (u16, String, String, String, u16, u16);

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
struct Count {
    packets: u64,
    bytes: u64,
}

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

/// The five-tuple (and outer VLAN) of a frame, as netledger names it.
fn key_of(frame: &[u8]) -> Option<Key> {
    let p = SlicedPacket::from_ethernet(frame).ok()?;
    let vlan = match &p.link_exts.first() {
        Some(etherparse::LinkExtSlice::Vlan(_)) | None => match &p.vlan() {
            Some(etherparse::VlanSlice::SingleVlan(v)) => v.vlan_identifier().value(),
            Some(etherparse::VlanSlice::DoubleVlan(v)) => v.outer.vlan_identifier().value(),
            None => 0,
        },
        _ => 0,
    };
    let (src, dst) = match p.net.as_ref()? {
        NetSlice::Ipv4(v4) => (
            v4.header().source_addr().to_string(),
            v4.header().destination_addr().to_string(),
        ),
        NetSlice::Ipv6(v6) => (
            v6.header().source_addr().to_string(),
            v6.header().destination_addr().to_string(),
        ),
        _ => return None,
    };
    let (proto, sport, dport) = match p.transport.as_ref()? {
        TransportSlice::Udp(u) => ("udp", u.source_port(), u.destination_port()),
        TransportSlice::Tcp(t) => ("tcp", t.source_port(), t.destination_port()),
        _ => return None,
    };
    Some((vlan, src, dst, proto.to_string(), sport, dport))
}

fn key_of_json(v: &serde_json::Value) -> Option<Key> {
    let k = &v["key"];
    let proto = k["proto"].as_str()?.to_string();
    if proto != "udp" && proto != "tcp" {
        return None;
    }
    Some((
        k["vlan"].as_u64()? as u16,
        k["src"].as_str()?.to_string(),
        k["dst"].as_str()?.to_string(),
        proto,
        k["sport"].as_u64()? as u16,
        k["dport"].as_u64()? as u16,
    ))
}

#[test]
fn watch_reports_exactly_what_was_sent_lock() {
    watch_reports_exactly_what_was_sent("lock", "xdp");
}

#[test]
fn watch_reports_exactly_what_was_sent_swap() {
    watch_reports_exactly_what_was_sent("swap", "xdp");
}

/// The same through tc ingress (after GRO; the VLAN tag kept beside the
/// data by the stack).
#[test]
fn watch_reports_exactly_what_was_sent_lock_tc() {
    watch_reports_exactly_what_was_sent("lock", "tc");
}

#[test]
fn watch_reports_exactly_what_was_sent_swap_tc() {
    watch_reports_exactly_what_was_sent("swap", "tc");
}

fn watch_reports_exactly_what_was_sent(strategy: &str, hook: &str) {
    let tx = NetNs::create("nl-rp-tx").unwrap();
    let rx = NetNs::create("nl-rp-rx").unwrap();
    let veth = netns::veth_pair("nlrp0", Some(&tx), "nlrp1", Some(&rx)).unwrap();
    let (a, b) = (veth.a(), veth.b());
    a.prepare(Ipv6Mode::Static).unwrap();
    b.prepare(Ipv6Mode::Static).unwrap();
    let (mac_a, mac_b) = (a.mac().unwrap(), b.mac().unwrap());
    for s in ["10.201.0.1", "10.201.0.11", "10.201.0.12"] {
        a.add_addr(ip(s), 24).unwrap();
    }
    for s in ["fd00:201::1", "fd00:201::11"] {
        a.add_addr(ip(s), 64).unwrap();
    }
    b.add_addr(ip("10.201.0.2"), 24).unwrap();
    b.add_addr(ip("fd00:201::2"), 64).unwrap();
    for s in [
        "10.201.0.1",
        "10.201.0.11",
        "10.201.0.12",
        "fd00:201::1",
        "fd00:201::11",
    ] {
        b.add_neigh(ip(s), mac_a).unwrap();
    }
    a.add_neigh(ip("10.201.0.2"), mac_b).unwrap();
    a.add_neigh(ip("fd00:201::2"), mac_b).unwrap();

    // TCP servers in the receiving namespace: read everything, then close.
    let listeners: Vec<TcpListener> = rx.run(|| {
        vec![
            TcpListener::bind("10.201.0.2:7000").unwrap(),
            TcpListener::bind("[fd00:201::2]:7001").unwrap(),
        ]
    });
    let servers: Vec<_> = listeners
        .into_iter()
        .map(|l| {
            std::thread::spawn(move || {
                let (mut s, _) = l.accept().unwrap();
                let mut buf = Vec::new();
                s.read_to_end(&mut buf).unwrap();
                buf.len()
            })
        })
        .collect();

    // Start counting and wait until attached.
    let mut cmd = Command::new("ip");
    cmd.args(["netns", "exec", rx.name(), BIN, "watch", "--iface", "nlrp1"])
        .args([
            "--format",
            "jsonl",
            "--interval",
            "100ms",
            "--vlan",
            "--strategy",
            strategy,
            "--hook",
            hook,
        ]);
    let mut watch = Watch::start(cmd);

    let capture = Capture::start(Some(&tx), "nlrp0").unwrap();
    tx.run(|| {
        let udp = [
            ("10.201.0.1:41000", "10.201.0.2:9000", 50, 100),
            ("10.201.0.11:41001", "10.201.0.2:9000", 30, 1400),
            ("10.201.0.12:41002", "10.201.0.2:9001", 20, 1),
            ("[fd00:201::1]:41003", "[fd00:201::2]:9000", 40, 500),
            ("[fd00:201::11]:41004", "[fd00:201::2]:9002", 15, 1200),
        ];
        for (from, to, n, size) in udp {
            let s = UdpSocket::bind(from).unwrap();
            let to: SocketAddr = to.parse().unwrap();
            for i in 0..n {
                s.send_to(&vec![i as u8; size], to).unwrap();
            }
        }
        // This kernel may have no VLAN devices (8021q): the VLAN-tagged
        // flow is hand-built and sent as raw frames.
        let raw = netns::RawSocket::open("nlrp0").unwrap();
        for i in 0..25u16 {
            let mut f = Vec::new();
            etherparse::PacketBuilder::ethernet2(mac_a, mac_b)
                .single_vlan(77u16.try_into().unwrap())
                .ipv4([10, 201, 77, 1], [10, 201, 77, 2], 64)
                .udp(41005, 9000)
                .write(&mut f, &vec![0x77; 300 + i as usize])
                .unwrap();
            raw.send(&f).unwrap();
        }
        for to in ["10.201.0.2:7000", "[fd00:201::2]:7001"] {
            let mut s = TcpStream::connect(to).unwrap();
            s.set_nodelay(true).unwrap();
            for i in 0..40u32 {
                s.write_all(&vec![i as u8; 1000 + i as usize * 37]).unwrap();
            }
        }
    });
    let received: Vec<usize> = servers.into_iter().map(|h| h.join().unwrap()).collect();
    assert!(
        received.iter().all(|&n| n > 40_000),
        "servers got {received:?}"
    );
    // Let the last FIN/ACK exchange cross the link before the capture stops.
    std::thread::sleep(Duration::from_millis(300));
    let frames = capture.stop().unwrap().complete().unwrap();

    // Stop watch: it detaches, reads the final partial interval, exits 0.
    let (status, out, rest) = watch.stop();
    assert!(status.success(), "watch failed: {rest}");

    let mut sent: BTreeMap<Key, Count> = BTreeMap::new();
    for f in &frames {
        if let Some(k) = key_of(f) {
            let c = sent.entry(k).or_default();
            c.packets += 1;
            c.bytes += f.len() as u64;
        }
    }
    let mut counted: BTreeMap<Key, Count> = BTreeMap::new();
    let mut intervals = 0;
    for line in out.lines() {
        let v: serde_json::Value =
            serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line}"));
        match v["type"].as_str() {
            Some("summary") => {
                intervals += 1;
                let seen = &v["seen"];
                let mut parts = (0, 0);
                for b in ["counted", "non_ip", "malformed", "map_full", "evict_race"] {
                    parts.0 += v["buckets"][b]["packets"].as_u64().unwrap();
                    parts.1 += v["buckets"][b]["bytes"].as_u64().unwrap();
                }
                assert_eq!(
                    (
                        seen["packets"].as_u64().unwrap(),
                        seen["bytes"].as_u64().unwrap()
                    ),
                    parts,
                    "conservation in every interval: {line}"
                );
            }
            Some("flow") => {
                if let Some(k) = key_of_json(&v) {
                    let c = counted.entry(k).or_default();
                    c.packets += v["packets"].as_u64().unwrap();
                    c.bytes += v["bytes"].as_u64().unwrap();
                }
            }
            other => panic!("unknown record type {other:?}: {line}"),
        }
    }
    eprintln!(
        "{} frames captured, {} intervals, {} TCP/UDP flows",
        frames.len(),
        intervals,
        sent.len()
    );
    assert!(
        intervals >= 2,
        "several intervals expected, got {intervals}"
    );
    assert!(
        sent.len() >= 8,
        "the test traffic has at least 8 TCP/UDP flows: {sent:?}"
    );
    assert!(sent.keys().any(|k| k.0 == 77), "the VLAN flow was captured");
    for (k, c) in &sent {
        eprintln!("  {k:?}: sent {c:?}, counted {:?}", counted.get(k));
    }
    assert_eq!(
        counted, sent,
        "per-flow packets and bytes must equal what was sent, exactly"
    );
    drop(veth);
}
