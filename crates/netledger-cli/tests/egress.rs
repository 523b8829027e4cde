//! Egress and tc ingress with real packets: `netledger watch` on veth pairs
//! between two namespaces the tests create (and always remove).
//!
//! The oracle is what the receiving peer gets: an AF_PACKET capture there
//! sees every frame that left the watched end, since a veth loses nothing.
//! With offloads off every frame is one wire frame. With TSO/GSO on, the
//! sender hands the egress hook GSO packets of many wire frames; an XDP
//! program on the peer makes the sending stack segment them in software
//! before the wire (veth takes the peer's segmentation features away), so
//! the peer's capture sees the real segments, and the XDP program (a
//! second `netledger watch --hook xdp`) counts them too.

#[path = "common/egress.rs"]
mod bed;

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::{IpAddr, SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::os::fd::AsRawFd;
use std::process::Command;
use std::thread::JoinHandle;
use std::time::Duration;

use bed::{
    filters, ledgers, qdiscs, tally, tcx_names, Bed, Count, Foreign, Frame, Key, PeerCapture,
    Watch, BIN, BPF_TCX_EGRESS, BPF_TCX_INGRESS, TCX_MAX,
};
use netledger_lab::netns::{Capture, NetNs};

// ---------------------------------------------------------------------------
// Traffic

fn sa(ip: IpAddr, port: u16) -> SocketAddr {
    SocketAddr::new(ip, port)
}

/// A TCP server in `ns` at `at` that reads one connection to its end, then
/// closes; joins to the byte count.
fn tcp_server(ns: &NetNs, at: SocketAddr) -> JoinHandle<usize> {
    let l = ns
        .run(|| TcpListener::bind(at))
        .expect("binding a TCP server");
    std::thread::spawn(move || {
        let (mut s, _) = l.accept().unwrap();
        let mut n = 0;
        let mut buf = vec![0u8; 1 << 16];
        loop {
            match s.read(&mut buf).unwrap() {
                0 => return n,
                k => n += k,
            }
        }
    })
}

/// Connect from `ns` (bound to `from`) to `to`, write `total` bytes in
/// writes of `chunk`, close, and wait for the server.
#[track_caller]
fn tcp_send(
    ns: &NetNs,
    from: SocketAddr,
    server: JoinHandle<usize>,
    to: SocketAddr,
    total: usize,
    chunk: usize,
) {
    ns.run(|| {
        let mut s = connect_from(from, to);
        let buf = vec![0x42u8; chunk];
        let mut left = total;
        while left > 0 {
            let n = left.min(chunk);
            s.write_all(&buf[..n]).unwrap();
            left -= n;
        }
    });
    assert_eq!(server.join().unwrap(), total, "the server got everything");
}

/// A TCP connection from `from` to `to` (std cannot bind before connect).
fn connect_from(from: SocketAddr, to: SocketAddr) -> TcpStream {
    let family = if from.is_ipv4() {
        libc::AF_INET
    } else {
        libc::AF_INET6
    };
    // SAFETY: plain socket(2); the descriptor is owned right after.
    let fd = unsafe { libc::socket(family, libc::SOCK_STREAM | libc::SOCK_CLOEXEC, 0) };
    assert!(fd >= 0, "socket: {}", std::io::Error::last_os_error());
    // SAFETY: a fresh descriptor nobody else owns.
    let s: TcpStream = unsafe { std::os::fd::FromRawFd::from_raw_fd(fd) };
    let (addr, len) = sockaddr(from);
    // SAFETY: addr is a valid sockaddr of `len` bytes.
    let r = unsafe {
        libc::bind(
            s.as_raw_fd(),
            (&addr as *const libc::sockaddr_storage).cast(),
            len,
        )
    };
    assert_eq!(r, 0, "bind {from}: {}", std::io::Error::last_os_error());
    let (addr, len) = sockaddr(to);
    // SAFETY: as above.
    let r = unsafe {
        libc::connect(
            s.as_raw_fd(),
            (&addr as *const libc::sockaddr_storage).cast(),
            len,
        )
    };
    assert_eq!(r, 0, "connect {to}: {}", std::io::Error::last_os_error());
    s
}

fn sockaddr(a: SocketAddr) -> (libc::sockaddr_storage, libc::socklen_t) {
    // SAFETY: sockaddr_storage is plain data.
    let mut ss: libc::sockaddr_storage = unsafe { std::mem::zeroed() };
    match a {
        SocketAddr::V4(v4) => {
            // SAFETY: sockaddr_storage is large and aligned enough for sockaddr_in.
            let sin = unsafe {
                &mut *(&mut ss as *mut libc::sockaddr_storage).cast::<libc::sockaddr_in>()
            };
            sin.sin_family = libc::AF_INET as u16;
            sin.sin_port = v4.port().to_be();
            sin.sin_addr.s_addr = u32::from_ne_bytes(v4.ip().octets());
            (ss, size_of::<libc::sockaddr_in>() as u32)
        }
        SocketAddr::V6(v6) => {
            // SAFETY: as above, for sockaddr_in6.
            let sin6 = unsafe {
                &mut *(&mut ss as *mut libc::sockaddr_storage).cast::<libc::sockaddr_in6>()
            };
            sin6.sin6_family = libc::AF_INET6 as u16;
            sin6.sin6_port = v6.port().to_be();
            sin6.sin6_addr.s6_addr = v6.ip().octets();
            (ss, size_of::<libc::sockaddr_in6>() as u32)
        }
    }
}

/// UDP sockets bound at the destinations, so that no ICMP error answers.
fn udp_sinks(ns: &NetNs, at: &[SocketAddr]) -> Vec<UdpSocket> {
    ns.run(|| at.iter().map(|a| UdpSocket::bind(a).unwrap()).collect())
}

/// `n` datagrams of `size` bytes from `from` to `to`, sent in `ns`.
fn udp_send(ns: &NetNs, from: SocketAddr, to: SocketAddr, n: usize, size: usize) {
    ns.run(|| {
        let s = UdpSocket::bind(from).unwrap();
        for i in 0..n {
            s.send_to(&vec![i as u8; size], to).unwrap();
        }
    });
}

/// UDP GSO (UDP_SEGMENT): `n` sends of `segs` datagrams of `size` bytes
/// each, from `from` to `to`, sent in `ns`; one skb per send.
fn udp_gso_send(ns: &NetNs, from: SocketAddr, to: SocketAddr, n: usize, segs: usize, size: u16) {
    ns.run(|| {
        let s = UdpSocket::bind(from).unwrap();
        let gso = libc::c_int::from(size);
        // SAFETY: setsockopt(2) with a live int of the size given.
        let r = unsafe {
            libc::setsockopt(
                s.as_raw_fd(),
                libc::SOL_UDP,
                libc::UDP_SEGMENT,
                (&gso as *const libc::c_int).cast(),
                size_of::<libc::c_int>() as u32,
            )
        };
        assert_eq!(r, 0, "UDP_SEGMENT: {}", std::io::Error::last_os_error());
        let buf = vec![0x33u8; segs * usize::from(size)];
        for _ in 0..n {
            s.send_to(&buf, to).unwrap();
        }
    });
}

/// The mixed traffic of the exactness tests, from the tx side of `bed` to
/// its rx side: UDP over IPv4 and IPv6 from several addresses and ports,
/// and a TCP connection per family.
fn mixed_traffic(bed: &Bed) {
    let (rx4, rx6) = (bed.rx4, bed.rx6);
    let _sinks = udp_sinks(
        &bed.rx,
        &[sa(rx4, 9000), sa(rx4, 9001), sa(rx6, 9000), sa(rx6, 9002)],
    );
    for (from, to, n, size) in [
        (sa(bed.tx4[0], 41000), sa(rx4, 9000), 50, 100),
        (sa(bed.tx4[1], 41001), sa(rx4, 9000), 30, 1400),
        (sa(bed.tx4[2], 41002), sa(rx4, 9001), 20, 1),
        (sa(bed.tx6[0], 41003), sa(rx6, 9000), 40, 500),
        (sa(bed.tx6[1], 41004), sa(rx6, 9002), 15, 1200),
    ] {
        udp_send(&bed.tx, from, to, n, size);
    }
    for (from, to) in [
        (sa(bed.tx4[1], 42000), sa(rx4, 7000)),
        (sa(bed.tx6[1], 42001), sa(rx6, 7001)),
    ] {
        let server = tcp_server(&bed.rx, to);
        tcp_send(&bed.tx, from, server, to, 60_000, 1000);
    }
}

/// Let the last ACK/FIN exchange cross the link.
fn settle() {
    std::thread::sleep(Duration::from_millis(300));
}

// ---------------------------------------------------------------------------
// Checks

fn total(flows: &BTreeMap<Key, Count>) -> Count {
    let mut t = Count::default();
    for c in flows.values() {
        t.add(c.packets, c.bytes);
    }
    t
}

/// `got` (a watch's one direction) holds exactly `flows` and `non_ip`, and
/// nothing in the other buckets.
#[track_caller]
fn assert_exact(what: &str, got: &bed::Ledger, flows: &BTreeMap<Key, Count>, non_ip: Count) {
    for (k, c) in flows {
        eprintln!(
            "  {what}: {k:?}: peer {c:?}, counted {:?}",
            got.flows.get(k)
        );
    }
    assert!(
        got.intervals >= 2,
        "{what}: several intervals, got {}",
        got.intervals
    );
    assert_eq!(&got.flows, flows, "{what}: per-flow packets and bytes");
    let zero = Count::default();
    assert_eq!(got.buckets["non_ip"], non_ip, "{what}: non_ip");
    for b in ["malformed", "map_full", "evict_race"] {
        assert_eq!(got.buckets[b], zero, "{what}: {b}");
    }
    let mut all = total(flows);
    all.add(non_ip.packets, non_ip.bytes);
    assert_eq!(got.seen, all, "{what}: seen");
}

fn watch_args<'a>(iface: &'a str, more: &[&'a str]) -> Vec<&'a str> {
    let mut a = vec!["--iface", iface, "--format", "jsonl", "--interval", "100ms"];
    a.extend_from_slice(more);
    a
}

// ---------------------------------------------------------------------------
// Exactness with offloads off

/// `--direction out` on the sending end, offloads off: every flow exactly
/// what the peer received. (The egress hook still gets a few TCP GSO
/// packets: the stack builds them for any device and segments them in
/// software after the hook. They count as their wire frames.)
fn egress_is_exact(n: u8, strategy: &str) {
    let bed = Bed::new(n);
    let capture = PeerCapture::start(&bed.rx, &bed.b, false);
    let mut watch = Watch::start(
        &bed.tx,
        &watch_args(&bed.a, &["--direction", "out", "--strategy", strategy]),
    );
    assert!(
        watch.started.contains("counting egress"),
        "{}",
        watch.started
    );
    mixed_traffic(&bed);
    settle();
    assert_eq!(bed.drops(), 0, "the veth dropped frames");
    let out = watch.stop();
    assert!(out.status.success(), "watch failed: {}", out.stderr);
    let frames = capture.stop();
    let (flows, non_ip) = tally(&frames);
    let l = ledgers(&out.stdout);
    assert_eq!(l.keys().collect::<Vec<_>>(), ["out"], "only egress records");
    assert!(
        flows.len() >= 7,
        "5 UDP flows and 2 TCP connections: {flows:?}"
    );
    assert_exact(&format!("egress ({strategy})"), &l["out"], &flows, non_ip);
}

#[test]
fn egress_is_exact_with_offloads_off_swap() {
    egress_is_exact(1, "swap");
}

#[test]
fn egress_is_exact_with_offloads_off_lock() {
    egress_is_exact(2, "lock");
}

/// `--direction both` on one end, traffic both ways: each direction is
/// exactly what the peer received from it (egress) or sent to it
/// (ingress), records say which, and every interval of each is conserved.
fn both_directions(n: u8, hook: &str) {
    let bed = Bed::new(n);
    let incoming = PeerCapture::start(&bed.rx, &bed.b, false);
    let outgoing = Capture::start(Some(&bed.rx), &bed.b).expect("capturing what rx sends");
    let mut watch = Watch::start(
        &bed.tx,
        &watch_args(&bed.a, &["--direction", "both", "--hook", hook]),
    );
    assert!(
        watch.started.contains("counting ingress and egress"),
        "{}",
        watch.started
    );
    mixed_traffic(&bed);
    // And the other way: rx sends to tx.
    let _sinks = udp_sinks(&bed.tx, &[sa(bed.tx4[0], 9100), sa(bed.tx6[1], 9101)]);
    udp_send(&bed.rx, sa(bed.rx4, 43000), sa(bed.tx4[0], 9100), 25, 700);
    udp_send(&bed.rx, sa(bed.rx6, 43001), sa(bed.tx6[1], 9101), 35, 90);
    let to = sa(bed.tx4[2], 7100);
    let server = tcp_server(&bed.tx, to);
    tcp_send(&bed.rx, sa(bed.rx4, 43002), server, to, 80_000, 1400);
    settle();
    assert_eq!(bed.drops(), 0, "the veth dropped frames");
    let out = watch.stop();
    assert!(out.status.success(), "watch failed: {}", out.stderr);
    let sent_to_a: Vec<Frame> = outgoing
        .stop()
        .expect("the outgoing capture")
        .complete()
        .expect("no frame lost")
        .into_iter()
        .map(|data| Frame { data, gso_size: 0 })
        .collect();
    let from_a = incoming.stop();
    let l = ledgers(&out.stdout);
    assert_eq!(
        l.keys().collect::<Vec<_>>(),
        ["in", "out"],
        "records of both directions"
    );
    let (flows_out, non_ip_out) = tally(&from_a);
    let (flows_in, non_ip_in) = tally(&sent_to_a);
    assert!(flows_in.len() >= 5, "ACKs and rx's own flows: {flows_in:?}");
    assert_exact(
        &format!("both/{hook}: out"),
        &l["out"],
        &flows_out,
        non_ip_out,
    );
    assert_exact(&format!("both/{hook}: in"), &l["in"], &flows_in, non_ip_in);
    // Every summary and flow record says its direction (checked by
    // `ledgers`); both directions have as many intervals.
    assert_eq!(l["in"].intervals, l["out"].intervals);
}

#[test]
fn both_directions_are_exact_tc_ingress() {
    both_directions(3, "tc");
}

#[test]
fn both_directions_are_exact_xdp_ingress() {
    both_directions(4, "xdp");
}

// ---------------------------------------------------------------------------
// GSO and GRO

/// The bulk traffic of the offload tests: TCP over IPv4 (16 MB) and IPv6
/// (4 MB), and UDP GSO (UDP_SEGMENT) over both families.
fn bulk_traffic(bed: &Bed) {
    let (rx4, rx6) = (bed.rx4, bed.rx6);
    let _sinks = udp_sinks(&bed.rx, &[sa(rx4, 9500), sa(rx6, 9501)]);
    udp_gso_send(&bed.tx, sa(bed.tx4[0], 45000), sa(rx4, 9500), 40, 10, 1200);
    udp_gso_send(&bed.tx, sa(bed.tx6[0], 45001), sa(rx6, 9501), 30, 7, 1000);
    let to = sa(rx4, 7500);
    let server = tcp_server(&bed.rx, to);
    tcp_send(
        &bed.tx,
        sa(bed.tx4[1], 46000),
        server,
        to,
        16 << 20,
        256 << 10,
    );
    let to = sa(rx6, 7501);
    let server = tcp_server(&bed.rx, to);
    tcp_send(
        &bed.tx,
        sa(bed.tx6[1], 46001),
        server,
        to,
        4 << 20,
        256 << 10,
    );
}

/// The sender's segmentation offloads on (TSO, GSO, UDP GSO need transmit
/// checksums on too), and a lossless link for the bulk traffic (see
/// `Bed::lossless`).
fn offloads_on(bed: &Bed) {
    bed.lossless();
    bed.ethtool(
        true,
        &[
            "tx",
            "on",
            "sg",
            "on",
            "tso",
            "on",
            "gso",
            "on",
            "tx-udp-segmentation",
            "on",
        ],
    );
}

/// TSO/GSO on at the sender: the egress hook sees GSO packets (a foreign
/// tcx program before netledger's counts the skbs: far fewer than the
/// segments), and counts each as the wire frames it becomes.
///
/// Oracle: a capture on the peer while an XDP program (a second `netledger
/// watch --hook xdp`) is attached to the peer, GRO off there. The XDP
/// program makes veth take TSO/GSO features away from the sender, so the
/// sending stack segments each GSO packet in software after the egress
/// hook and before the wire; the capture then sees real wire frames (each
/// checked to be one: no GSO size), and the XDP program counts them as the
/// driver received them. Neither depends on the egress hook's arithmetic:
/// they count the frames the segmentation produced.
#[test]
fn egress_counts_gso_packets_as_their_wire_frames() {
    let bed = Bed::new(5);
    offloads_on(&bed);
    let probe = Foreign::load("nleg_probe", true);
    probe
        .attach(&bed.tx, &bed.a, BPF_TCX_EGRESS)
        .expect("attaching the skb counter");
    let mut xdp = Watch::start(&bed.rx, &watch_args(&bed.b, &["--hook", "xdp"]));
    assert!(xdp.started.contains("XDP"), "{}", xdp.started);
    let capture = PeerCapture::start(&bed.rx, &bed.b, true);
    let mut watch = Watch::start(&bed.tx, &watch_args(&bed.a, &["--direction", "out"]));
    let skbs_before = probe.count();
    bulk_traffic(&bed);
    settle();
    assert_eq!(bed.drops(), 0, "the veth dropped frames");
    let out = watch.stop();
    let frames = capture.stop();
    let oracle2 = xdp.stop();
    assert!(out.status.success(), "watch failed: {}", out.stderr);
    assert!(
        oracle2.status.success(),
        "xdp watch failed: {}",
        oracle2.stderr
    );
    let skbs = probe.count() - skbs_before;

    assert!(
        frames
            .iter()
            .all(|f| f.gso_size == 0 && f.data.len() <= 1514),
        "the peer received wire frames only"
    );
    let (flows, non_ip) = tally(&frames);
    let egress = &ledgers(&out.stdout)["out"];
    let at_peer = &ledgers(&oracle2.stdout)["in"];
    let seen = egress.seen;
    eprintln!(
        "GSO at egress: {skbs} skbs seen by the tcx probe; netledger counted {} frames / {} bytes; \
         the peer's capture {} frames / {} bytes; its XDP {} / {}",
        seen.packets,
        seen.bytes,
        total(&flows).packets + non_ip.packets,
        total(&flows).bytes + non_ip.bytes,
        at_peer.seen.packets,
        at_peer.seen.bytes
    );
    assert!(
        skbs > 0 && seen.packets > 5 * skbs,
        "the egress hook saw GSO packets: {skbs} skbs for {} frames",
        seen.packets
    );
    assert_exact(
        "egress under TSO vs the peer's capture",
        egress,
        &flows,
        non_ip,
    );
    assert_exact(
        "the peer's XDP count vs its capture",
        at_peer,
        &flows,
        non_ip,
    );
}

/// TSO on at the sender, GRO on at the receiver, no XDP: veth hands the
/// GSO packets over whole, and tc ingress on the receiver counts each as
/// the wire frames it stands for, equal to the sender's egress count.
/// Unvetted GSO packets (from a packet socket, see below) cross whole too,
/// without a segment count. Oracle beside the egress count (itself checked
/// against real wire frames in the tests with XDP on the peer): the peer's
/// capture with PACKET_VNET_HDR, which gives each packet's GSO segment
/// size: ceil(payload / size) segments, each with the packet's headers.
#[test]
fn tc_ingress_counts_gso_packets_received_whole() {
    let bed = Bed::new(6);
    offloads_on(&bed);
    bed.ethtool(false, &["gro", "on"]);
    let capture = PeerCapture::start(&bed.rx, &bed.b, true);
    let mut ingress = Watch::start(&bed.rx, &watch_args(&bed.b, &["--hook", "tc"]));
    let mut egress = Watch::start(&bed.tx, &watch_args(&bed.a, &["--direction", "out"]));
    bulk_traffic(&bed);
    unvetted_traffic(&bed);
    settle();
    assert_eq!(bed.drops(), 0, "the veth dropped frames");
    let out = egress.stop();
    let inn = ingress.stop();
    let frames = capture.stop();
    assert!(
        out.status.success() && inn.status.success(),
        "{} {}",
        out.stderr,
        inn.stderr
    );
    let whole = frames
        .iter()
        .filter(|f| f.gso_size > 0 && f.data.len() > 1514)
        .count();
    let (flows, non_ip) = tally(&frames);
    let (egress, ingress) = (&ledgers(&out.stdout)["out"], &ledgers(&inn.stdout)["in"]);
    eprintln!(
        "GSO received whole: {} frames captured ({whole} GSO packets); tc ingress counted {:?}, egress {:?}",
        frames.len(),
        ingress.seen,
        egress.seen
    );
    assert!(whole > 50, "GSO packets crossed the veth whole: {whole}");
    assert_exact(
        "tc ingress vs the capture's segments",
        ingress,
        &flows,
        non_ip,
    );
    assert_eq!(
        ingress.flows, egress.flows,
        "tc ingress == the sender's egress, per flow"
    );
    assert_eq!(ingress.seen, egress.seen);
}

/// GRO on at the receiver with an XDP program there: the sender segments
/// (see above), the receiver's GRO merges the segments again, and tc
/// ingress counts each merged packet as the segments it merged: equal to
/// the XDP count (before GRO) and the sender's egress count.
#[test]
fn tc_ingress_counts_gro_packets_as_the_segments_merged() {
    let bed = Bed::new(7);
    offloads_on(&bed);
    bed.ethtool(false, &["gro", "on"]);
    let mut xdp = Watch::start(&bed.rx, &watch_args(&bed.b, &["--hook", "xdp"]));
    let capture = PeerCapture::start(&bed.rx, &bed.b, true);
    let mut ingress = Watch::start(&bed.rx, &watch_args(&bed.b, &["--hook", "tc"]));
    let mut egress = Watch::start(&bed.tx, &watch_args(&bed.a, &["--direction", "out"]));
    bulk_traffic(&bed);
    settle();
    assert_eq!(bed.drops(), 0, "the veth dropped frames");
    let out = egress.stop();
    let inn = ingress.stop();
    let frames = capture.stop();
    let x = xdp.stop();
    assert!(out.status.success() && inn.status.success() && x.status.success());
    let merged = frames.iter().filter(|f| f.gso_size > 0).count();
    let (flows, non_ip) = tally(&frames);
    let (egress, ingress, at_xdp) = (
        &ledgers(&out.stdout)["out"],
        &ledgers(&inn.stdout)["in"],
        &ledgers(&x.stdout)["in"],
    );
    eprintln!(
        "GRO: {} packets after GRO ({merged} merged); XDP counted {:?}, tc ingress {:?}, egress {:?}",
        frames.len(),
        at_xdp.seen,
        ingress.seen,
        egress.seen
    );
    assert!(merged > 50, "GRO merged segments: {merged}");
    assert_exact(
        "tc ingress after GRO vs the capture's segments",
        ingress,
        &flows,
        non_ip,
    );
    assert_eq!(
        ingress.flows, at_xdp.flows,
        "tc ingress after GRO == XDP before it"
    );
    assert_eq!(ingress.flows, egress.flows, "== the sender's egress");
    assert_eq!(ingress.seen, at_xdp.seen);
}

/// A GSO TCP frame with its virtio_net header (for a packet socket with
/// PACKET_VNET_HDR): `segs` segments of `mss` bytes from `src` to `dst`,
/// ports 47000 > 7600, MACs of the bed's ends.
fn vnet_tcp_frame(
    mac: ([u8; 6], [u8; 6]),
    src: IpAddr,
    dst: IpAddr,
    segs: usize,
    mss: u16,
) -> Vec<u8> {
    let payload = vec![0x6b; segs * usize::from(mss)];
    let b = etherparse::PacketBuilder::ethernet2(mac.0, mac.1);
    let b = match (src, dst) {
        (IpAddr::V4(s), IpAddr::V4(d)) => b.ipv4(s.octets(), d.octets(), 64),
        (IpAddr::V6(s), IpAddr::V6(d)) => b.ipv6(s.octets(), d.octets(), 64),
        _ => panic!("one family"),
    };
    let mut frame = Vec::new();
    b.tcp(47000, 7600, 1, 65535)
        .ack(1)
        .write(&mut frame, &payload)
        .unwrap();
    let l4 = if src.is_ipv4() { 14 + 20 } else { 14 + 40 };
    // struct virtio_net_hdr: flags NEEDS_CSUM, gso_type TCPV4 (1) or
    // TCPV6 (4), hdr_len, gso_size, csum_start, csum_offset.
    let mut h = vec![1u8, if src.is_ipv4() { 1 } else { 4 }];
    h.extend_from_slice(&((l4 + 20) as u16).to_le_bytes());
    h.extend_from_slice(&mss.to_le_bytes());
    h.extend_from_slice(&(l4 as u16).to_le_bytes());
    h.extend_from_slice(&16u16.to_le_bytes());
    h.extend(frame);
    h
}

/// 30 GSO TCP packets over IPv4 and IPv6 (188 segments) sent from a packet
/// socket with PACKET_VNET_HDR on the tx end: the kernel marks them
/// SKB_GSO_DODGY and leaves their segment count unset until it segments
/// them.
fn unvetted_traffic(bed: &Bed) {
    let mac = (bed.veth.a().mac().unwrap(), bed.veth.b().mac().unwrap());
    let a = bed.a.clone();
    let frames: Vec<Vec<u8>> = (0..20)
        .map(|i| vnet_tcp_frame(mac, bed.tx4[0], bed.rx4, 2 + i % 9, 1000))
        .chain((0..10).map(|i| vnet_tcp_frame(mac, bed.tx6[0], bed.rx6, 3 + i, 1200)))
        .collect();
    bed.tx.run(move || {
        let raw = netledger_lab::netns::RawSocket::open(&a).unwrap();
        let one: libc::c_int = 1;
        // SAFETY: setsockopt(2) with a live int of the size given.
        let r = unsafe {
            libc::setsockopt(
                std::os::fd::AsFd::as_fd(&raw).as_raw_fd(),
                libc::SOL_PACKET,
                libc::PACKET_VNET_HDR,
                (&one as *const libc::c_int).cast(),
                size_of::<libc::c_int>() as u32,
            )
        };
        assert_eq!(r, 0, "PACKET_VNET_HDR: {}", std::io::Error::last_os_error());
        for f in &frames {
            raw.send(f).unwrap();
        }
    });
}

/// GSO packets the kernel has not vetted (a tap device, a packet socket
/// with PACKET_VNET_HDR: SKB_GSO_DODGY) reach the egress hook with a
/// segment size but no segment count: the kernel counts their segments
/// only when it segments them, after the hook. They are still as many wire
/// frames as their payload makes segments. Oracle as above: the peer's
/// capture with XDP attached there, and its XDP count.
#[test]
fn egress_counts_unvetted_gso_packets_as_their_wire_frames() {
    let bed = Bed::new(14);
    offloads_on(&bed);
    let mut xdp = Watch::start(&bed.rx, &watch_args(&bed.b, &["--hook", "xdp"]));
    let capture = PeerCapture::start(&bed.rx, &bed.b, true);
    let mut watch = Watch::start(&bed.tx, &watch_args(&bed.a, &["--direction", "out"]));
    unvetted_traffic(&bed);
    settle();
    assert_eq!(bed.drops(), 0, "the veth dropped frames");
    let out = watch.stop();
    let got = capture.stop();
    let x = xdp.stop();
    assert!(out.status.success() && x.status.success());
    assert!(
        got.iter().all(|f| f.gso_size == 0),
        "wire frames at the peer"
    );
    let (flows, non_ip) = tally(&got);
    let egress = &ledgers(&out.stdout)["out"];
    eprintln!(
        "unvetted GSO: 30 packets sent, {} wire frames / {} bytes at the peer; egress counted {:?}",
        total(&flows).packets,
        total(&flows).bytes,
        egress.seen
    );
    assert_eq!(
        total(&flows).packets,
        20 * 2 + (0..20).map(|i| i % 9).sum::<u64>() + 10 * 3 + 45
    );
    assert_exact("egress of unvetted GSO packets", egress, &flows, non_ip);
    assert_exact(
        "the peer's XDP count",
        &ledgers(&x.stdout)["in"],
        &flows,
        non_ip,
    );
}

// ---------------------------------------------------------------------------
// Cleanup and coexistence

/// How a watch ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum End {
    Sigint,
    Kill9,
}

fn end(w: &mut Watch, how: End) {
    match how {
        End::Sigint => {
            let s = w.stop();
            assert!(s.status.success(), "watch failed: {}", s.stderr);
        }
        End::Kill9 => {
            let s = w.kill9();
            assert!(!s.status.success());
        }
    }
}

fn has_clsact(bed: &Bed) -> bool {
    qdiscs(&bed.tx, &bed.a).contains("clsact")
}

/// A clsact qdisc and a filter at each point, neither netledger's (u32
/// matching everything, without an action: kernels without cls_matchall
/// and act_gact have it). Returns `tc qdisc show` and `tc filter show` of
/// each point, to compare with later.
fn foreign_clsact(bed: &Bed) -> [String; 3] {
    let n = bed.tx.name();
    bed::run("tc", &["-n", n, "qdisc", "add", "dev", &bed.a, "clsact"]);
    for point in ["ingress", "egress"] {
        bed::run(
            "tc",
            &[
                "-n", n, "filter", "add", "dev", &bed.a, point, "protocol", "all", "prio", "40000",
                "u32", "match", "u32", "0", "0",
            ],
        );
    }
    let state = clsact_state(bed);
    assert!(
        state[1].contains("u32") && state[2].contains("u32"),
        "{state:?}"
    );
    state
}

fn clsact_state(bed: &Bed) -> [String; 3] {
    [
        qdiscs(&bed.tx, &bed.a),
        filters(&bed.tx, &bed.a, "ingress"),
        filters(&bed.tx, &bed.a, "egress"),
    ]
}

/// The foreign qdisc and filters are there exactly as they were.
#[track_caller]
fn foreign_clsact_intact(bed: &Bed, before: &[String; 3], what: &str) {
    assert_eq!(
        &clsact_state(bed),
        before,
        "{what}: the qdisc and filters as they were"
    );
}

/// Nothing of netledger's attached to the watched interface, at any hook.
#[track_caller]
fn nothing_of_ours(bed: &Bed, what: &str) {
    let found = bed::ours_attached(&bed.tx, &bed.a);
    assert!(found.is_empty(), "{what}: still attached: {found:?}");
}

/// Send `n` UDP datagrams from tx to rx (for foreign counters).
fn poke(bed: &Bed, n: usize) {
    let _sink = udp_sinks(&bed.rx, &[sa(bed.rx4, 9900)]);
    udp_send(&bed.tx, sa(bed.tx4[0], 49000), sa(bed.rx4, 9900), n, 64);
}

/// Send `n` UDP datagrams from rx to tx (what tx receives).
fn poke_back(bed: &Bed, n: usize) {
    let _sink = udp_sinks(&bed.tx, &[sa(bed.tx4[0], 9901)]);
    udp_send(&bed.rx, sa(bed.rx4, 49001), sa(bed.tx4[0], 9901), n, 64);
}

/// tcx, SIGINT and kill -9: netledger's programs go; a clsact qdisc with
/// foreign filters, and foreign tcx programs at both points, stay attached
/// and keep running.
#[test]
fn tcx_leaves_nothing_and_spares_the_rest() {
    let bed = Bed::new(8);
    let clsact = foreign_clsact(&bed);
    let fin = Foreign::load("nleg_fgn_in", true);
    let fout = Foreign::load("nleg_fgn_out", true);
    fin.attach(&bed.tx, &bed.a, BPF_TCX_INGRESS).unwrap();
    fout.attach(&bed.tx, &bed.a, BPF_TCX_EGRESS).unwrap();
    for how in [End::Sigint, End::Kill9] {
        let mut w = Watch::start(
            &bed.tx,
            &watch_args(&bed.a, &["--direction", "both", "--tc-attach", "tcx"]),
        );
        assert!(w.started.contains("in tcx, out tcx"), "{}", w.started);
        // Seen while it runs: the check below can see it.
        assert_eq!(
            tcx_names(&bed.tx, &bed.a, BPF_TCX_EGRESS),
            ["nleg_fgn_out", "nl_tc"]
        );
        assert_eq!(
            tcx_names(&bed.tx, &bed.a, BPF_TCX_INGRESS),
            ["nleg_fgn_in", "nl_tc"]
        );
        poke(&bed, 10);
        end(&mut w, how);
        let what = format!("after {how:?}");
        bed::eventually(&format!("{what}: netledger's tcx links are gone"), || {
            !tcx_names(&bed.tx, &bed.a, BPF_TCX_EGRESS).contains(&"nl_tc".to_string())
                && !tcx_names(&bed.tx, &bed.a, BPF_TCX_INGRESS).contains(&"nl_tc".to_string())
        });
        nothing_of_ours(&bed, &what);
        foreign_clsact_intact(&bed, &clsact, &what);
        assert_eq!(
            tcx_names(&bed.tx, &bed.a, BPF_TCX_EGRESS),
            ["nleg_fgn_out"],
            "{what}"
        );
        assert_eq!(
            tcx_names(&bed.tx, &bed.a, BPF_TCX_INGRESS),
            ["nleg_fgn_in"],
            "{what}"
        );
        // The foreign programs still run: every datagram out, through both.
        let before = fout.count();
        poke(&bed, 7);
        assert_eq!(
            fout.count() - before,
            7,
            "{what}: the foreign egress program counts"
        );
    }
}

/// clsact on an interface that has a clsact qdisc, bare then with foreign
/// filters: netledger adds its filters beside them and, on SIGINT, removes
/// only its own; the qdisc stays, as it was. A kill -9 leaves its filters
/// (a filter, unlike a link, outlives its process); the next watch takes
/// their place and removes them when it ends.
#[test]
fn clsact_spares_a_foreign_qdisc_and_filters() {
    let bed = Bed::new(9);
    let args = watch_args(&bed.a, &["--direction", "both", "--tc-attach", "clsact"]);
    bed::run(
        "tc",
        &["-n", bed.tx.name(), "qdisc", "add", "dev", &bed.a, "clsact"],
    );
    let bare = clsact_state(&bed);
    let mut w = Watch::start(&bed.tx, &args);
    assert!(w.started.contains("in clsact, out clsact"), "{}", w.started);
    poke(&bed, 2);
    end(&mut w, End::Sigint);
    nothing_of_ours(&bed, "a bare qdisc, after SIGINT");
    foreign_clsact_intact(&bed, &bare, "a bare qdisc, after SIGINT");
    bed::run(
        "tc",
        &["-n", bed.tx.name(), "qdisc", "del", "dev", &bed.a, "clsact"],
    );

    let clsact = foreign_clsact(&bed);
    let mut w = Watch::start(&bed.tx, &args);
    for point in ["ingress", "egress"] {
        let f = filters(&bed.tx, &bed.a, point);
        assert!(f.contains("nl_tc") && f.contains("u32"), "{point}: {f}");
    }
    let net = bed::bpftool_net(&bed.tx, &bed.a);
    assert!(net.contains("nl_tc"), "bpftool net show sees it: {net}");
    end(&mut w, End::Sigint);
    nothing_of_ours(&bed, "after SIGINT");
    foreign_clsact_intact(&bed, &clsact, "after SIGINT");

    let mut w = Watch::start(&bed.tx, &args);
    end(&mut w, End::Kill9);
    for point in ["ingress", "egress"] {
        let f = filters(&bed.tx, &bed.a, point);
        assert!(
            f.contains("nl_tc"),
            "a killed watch's {point} filter stays: {f}"
        );
    }
    let mut w = Watch::start(&bed.tx, &args);
    assert!(w.started.contains("in clsact, out clsact"), "{}", w.started);
    end(&mut w, End::Sigint);
    nothing_of_ours(&bed, "after a watch that followed a kill -9");
    foreign_clsact_intact(&bed, &clsact, "after a watch that followed a kill -9");
}

/// clsact on an interface without a qdisc: the qdisc netledger made is
/// gone after it exits, for each direction and for both; unless another
/// tool hung a filter on it meanwhile: then the qdisc and that filter stay.
#[test]
fn clsact_removes_the_qdisc_it_created() {
    let bed = Bed::new(10);
    let start = |dir: &str| {
        Watch::start(
            &bed.tx,
            &watch_args(
                &bed.a,
                &["--direction", dir, "--hook", "tc", "--tc-attach", "clsact"],
            ),
        )
    };
    for dir in ["out", "in", "both"] {
        assert!(!has_clsact(&bed), "{dir}: no clsact qdisc before");
        let mut w = start(dir);
        assert!(has_clsact(&bed), "{dir}: netledger made a clsact qdisc");
        poke(&bed, 3);
        poke_back(&bed, 3);
        end(&mut w, End::Sigint);
        nothing_of_ours(&bed, dir);
        assert!(
            !has_clsact(&bed),
            "--direction {dir}: the qdisc netledger made is gone: {}",
            qdiscs(&bed.tx, &bed.a)
        );
    }
    for (dir, point) in [("in", "egress"), ("both", "ingress")] {
        let mut w = start(dir);
        bed::run(
            "tc",
            &[
                "-n",
                bed.tx.name(),
                "filter",
                "add",
                "dev",
                &bed.a,
                point,
                "protocol",
                "all",
                "prio",
                "40000",
                "u32",
                "match",
                "u32",
                "0",
                "0",
            ],
        );
        let theirs = filters(&bed.tx, &bed.a, point);
        end(&mut w, End::Sigint);
        nothing_of_ours(&bed, dir);
        assert!(
            has_clsact(&bed),
            "{dir}: the qdisc stays for the foreign {point} filter"
        );
        let left = filters(&bed.tx, &bed.a, point);
        assert!(
            left.contains("u32") && theirs.contains(left.trim_end()),
            "{dir}: the foreign {point} filter stays: {left}"
        );
        bed::run(
            "tc",
            &["-n", bed.tx.name(), "qdisc", "del", "dev", &bed.a, "clsact"],
        );
    }
}

/// Another tool's tcx egress program: netledger runs after it and counts
/// exactly, and it stays attached and working after netledger exits. UDP
/// datagrams are one skb each, so the foreign program's count of skbs is
/// the frames; TCP is not (the stack hands even a device without GSO
/// features GSO packets, segmented after the egress hook), so it counts
/// fewer skbs than netledger counts frames.
#[test]
fn coexists_with_a_foreign_tcx_program() {
    let bed = Bed::new(11);
    let f = Foreign::load("nleg_fgn_cnt", true);
    f.attach(&bed.tx, &bed.a, BPF_TCX_EGRESS).unwrap();
    let capture = PeerCapture::start(&bed.rx, &bed.b, false);
    let mut w = Watch::start(&bed.tx, &watch_args(&bed.a, &["--direction", "out"]));
    assert_eq!(
        tcx_names(&bed.tx, &bed.a, BPF_TCX_EGRESS),
        ["nleg_fgn_cnt", "nl_tc"]
    );
    let before = f.count();
    poke(&bed, 100);
    let udp_skbs = f.count() - before;
    mixed_traffic(&bed);
    settle();
    let out = w.stop();
    assert!(out.status.success(), "{}", out.stderr);
    let skbs = f.count() - before;
    let (flows, non_ip) = tally(&capture.stop());
    let l = ledgers(&out.stdout);
    assert_eq!(udp_skbs, 100, "the foreign program saw each datagram");
    assert_exact("egress beside a foreign program", &l["out"], &flows, non_ip);
    eprintln!("{skbs} skbs at egress, {} frames", l["out"].seen.packets);
    assert!(skbs <= l["out"].seen.packets, "no more skbs than frames");
    assert_eq!(tcx_names(&bed.tx, &bed.a, BPF_TCX_EGRESS), ["nleg_fgn_cnt"]);
    let before = f.count();
    poke(&bed, 5);
    assert_eq!(f.count() - before, 5, "the foreign program still counts");
}

// ---------------------------------------------------------------------------
// Errors

/// Run `netledger watch ARGS` in `ns` to its end: exit code and stderr.
fn watch_fails(ns: &NetNs, args: &[&str]) -> (Option<i32>, String) {
    let out = Command::new("ip")
        .args(["netns", "exec", ns.name(), BIN, "watch"])
        .args(args)
        .output()
        .unwrap();
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[track_caller]
fn one_error_line(stderr: &str, what: &str) -> String {
    let lines: Vec<&str> = stderr.lines().collect();
    assert_eq!(lines.len(), 1, "{what}: one line: {stderr}");
    assert!(
        lines[0].starts_with("netledger: error: "),
        "{what}: {stderr}"
    );
    lines[0].to_string()
}

#[test]
fn error_interface_missing_at_egress() {
    let bed = Bed::new(12);
    for extra in [
        &["--direction", "out"][..],
        &["--direction", "both"],
        &["--direction", "out", "--tc-attach", "clsact"],
    ] {
        let mut args = vec!["--iface", "nleg-nosuch"];
        args.extend_from_slice(extra);
        let (code, err) = watch_fails(&bed.tx, &args);
        assert_eq!(code, Some(1), "{extra:?}: {err}");
        let line = one_error_line(&err, "a missing interface");
        assert!(
            line.contains("\"nleg-nosuch\" does not exist") && line.contains("ip link"),
            "{line}"
        );
    }
}

/// A tcx hook runs a bounded number of programs (63 here): with it full,
/// `--tc-attach tcx` cannot attach. One line naming the cause, exit 1,
/// nothing left (the ingress link made before the egress one failed is
/// gone too), no clsact qdisc made.
#[test]
fn error_tcx_full() {
    let bed = Bed::new(13);
    let mut progs = Vec::new();
    loop {
        let p = Foreign::load(&format!("nleg_full{}", progs.len()), false);
        match p.attach(&bed.tx, &bed.a, BPF_TCX_EGRESS) {
            Ok(()) => progs.push(p),
            Err(e) => {
                assert_eq!(e.raw_os_error(), Some(libc::ERANGE), "a full tcx: {e}");
                break;
            }
        }
        assert!(
            progs.len() <= TCX_MAX,
            "tcx took more than {TCX_MAX} programs"
        );
    }
    let full = progs.len();
    eprintln!("tcx egress took {full} programs");
    assert!(full >= 32, "tcx took {full} programs");
    for dir in ["out", "both"] {
        let (code, err) = watch_fails(
            &bed.tx,
            &["--iface", &bed.a, "--direction", dir, "--tc-attach", "tcx"],
        );
        assert_eq!(code, Some(1), "{dir}: {err}");
        let line = one_error_line(&err, "a full tcx");
        eprintln!("{dir}: {line}");
        assert!(
            line.contains(&bed.a) && line.contains("tcx") && line.contains("full"),
            "{dir}: the line names the cause: {line}"
        );
        assert_eq!(tcx_names(&bed.tx, &bed.a, BPF_TCX_EGRESS).len(), full);
        assert!(
            tcx_names(&bed.tx, &bed.a, BPF_TCX_INGRESS).is_empty(),
            "{dir}: nothing left at ingress"
        );
        assert!(!has_clsact(&bed), "{dir}: no qdisc made");
    }
}
