//! The namespace testbed against the real kernel (needs root).
//!
//! Every test uses its own namespace prefix and pid-tagged interface names,
//! so tests running at the same time (in this process or another) never
//! meet. All traffic stays between namespaces the test created.

use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, UdpSocket};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::process::Command;
use std::time::{Duration, Instant};

use netledger_lab::netns::{veth_pair, Capture, Iface, Ipv6Mode, NetNs, RawSocket, Veth};

const ETH_HLEN: usize = 14;
const VLAN_HLEN: usize = 4;
const IPV4_HLEN: usize = 20;
const IPV6_HLEN: usize = 40;
const UDP_HLEN: usize = 8;

/// `{tag}{pid}{end}`: unique on the machine, at most 11 bytes.
fn ifname(tag: &str, end: char) -> String {
    format!("{tag}{}{end}", std::process::id())
}

/// Two namespaces joined by a veth pair, both ends prepared for counting,
/// with addresses on 10.200.`net`.0/30 (and fd00:200:`net`::/64 unless IPv6
/// is off) and static neighbours both ways.
struct Bed {
    // Dropped first: the pair goes before its namespaces.
    veth: Veth,
    a: NetNs,
    b: NetNs,
    mac_a: [u8; 6],
    mac_b: [u8; 6],
    v4: (Ipv4Addr, Ipv4Addr),
    v6: Option<(Ipv6Addr, Ipv6Addr)>,
}

impl Bed {
    fn new(prefix: &str, tag: &str, net: u8, ipv6: Ipv6Mode) -> Bed {
        let a = NetNs::create(prefix).unwrap();
        let b = NetNs::create(prefix).unwrap();
        let veth = veth_pair(&ifname(tag, 'a'), Some(&a), &ifname(tag, 'b'), Some(&b)).unwrap();
        let (ea, eb) = (veth.a(), veth.b());
        ea.prepare(ipv6).unwrap();
        eb.prepare(ipv6).unwrap();
        let mac_a = ea.mac().unwrap();
        let mac_b = eb.mac().unwrap();
        let v4 = (
            Ipv4Addr::new(10, 200, net, 1),
            Ipv4Addr::new(10, 200, net, 2),
        );
        let v6 = (ipv6 != Ipv6Mode::Off).then(|| {
            let n = u16::from(net);
            (
                Ipv6Addr::new(0xfd00, 0x200, n, 0, 0, 0, 0, 1),
                Ipv6Addr::new(0xfd00, 0x200, n, 0, 0, 0, 0, 2),
            )
        });
        let link = |end: &Iface, mine: IpAddr, peer: IpAddr, len: u8, peer_mac: [u8; 6]| {
            end.add_addr(mine, len).unwrap();
            end.add_neigh(peer, peer_mac).unwrap();
        };
        link(ea, v4.0.into(), v4.1.into(), 30, mac_b);
        link(eb, v4.1.into(), v4.0.into(), 30, mac_a);
        if let Some(v6) = v6 {
            link(ea, v6.0.into(), v6.1.into(), 64, mac_b);
            link(eb, v6.1.into(), v6.0.into(), 64, mac_a);
        }
        Bed {
            veth,
            a,
            b,
            mac_a,
            mac_b,
            v4,
            v6,
        }
    }
}

/// No namespace `{prefix}-{pid}-*` and no interface tagged `{tag}{pid}` is
/// left in this (the root) namespace.
fn assert_cleaned_up(prefix: &str, tag: &str) {
    let run = |args: &[&str]| {
        let out = Command::new("ip").args(args).output().unwrap();
        assert!(out.status.success(), "ip {args:?} failed");
        String::from_utf8(out.stdout).unwrap()
    };
    let ns_prefix = format!("{prefix}-{}-", std::process::id());
    let netns = run(&["netns", "list"]);
    let left: Vec<&str> = netns
        .lines()
        .filter(|l| l.starts_with(&ns_prefix))
        .collect();
    assert!(left.is_empty(), "namespaces left behind: {left:?}");
    let links = run(&["-o", "link", "show"]);
    let tagged = format!("{tag}{}", std::process::id());
    let left: Vec<&str> = links.lines().filter(|l| l.contains(&tagged)).collect();
    assert!(left.is_empty(), "interfaces left behind: {left:?}");
}

/// A UDP datagram found in a frame.
#[derive(Debug, PartialEq, Eq)]
struct Udp<'a> {
    vlan: Option<u16>,
    v6: bool,
    dst_port: u16,
    payload: &'a [u8],
}

fn be16(b: &[u8], at: usize) -> u16 {
    u16::from_be_bytes([b[at], b[at + 1]])
}

/// Parses Ethernet [802.1Q] IPv4|IPv6 UDP; None for anything else.
fn parse_udp(frame: &[u8]) -> Option<Udp<'_>> {
    let mut at = 12;
    let mut vlan = None;
    if be16(frame, at) == 0x8100 {
        vlan = Some(be16(frame, at + 2) & 0x0fff);
        at += 4;
    }
    let ethertype = be16(frame, at);
    at += 2;
    let (v6, l4) = match ethertype {
        0x0800 if frame.get(at + 9) == Some(&17) => (false, at + usize::from(frame[at] & 0x0f) * 4),
        0x86dd if frame.get(at + 6) == Some(&17) => (true, at + IPV6_HLEN),
        _ => return None,
    };
    let udp_len = usize::from(be16(frame, l4 + 4));
    Some(Udp {
        vlan,
        v6,
        dst_port: be16(frame, l4 + 2),
        payload: &frame[l4 + UDP_HLEN..l4 + udp_len],
    })
}

/// An unsolicited MLD report (v1 or v2) behind a hop-by-hop header.
fn is_mld_report(frame: &[u8]) -> bool {
    let ip = ETH_HLEN;
    if frame.len() < ip + IPV6_HLEN + 8 || be16(frame, 12) != 0x86dd || frame[ip + 6] != 0 {
        return false;
    }
    let hbh = ip + IPV6_HLEN;
    let icmp = hbh + (usize::from(frame[hbh + 1]) + 1) * 8;
    frame[hbh] == 58 && matches!(frame.get(icmp), Some(131 | 143))
}

fn payload(i: usize) -> Vec<u8> {
    // Lengths 0..=1400: the empty datagram makes a 42-byte frame, which
    // nothing pads on a veth.
    let len = (i * 211) % 1401;
    (0..len).map(|j| (i * 7 + j) as u8).collect()
}

fn recv_all(sock: &UdpSocket, expect: &[Vec<u8>]) {
    sock.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let mut buf = [0u8; 2048];
    for (i, want) in expect.iter().enumerate() {
        let (n, _) = sock
            .recv_from(&mut buf)
            .unwrap_or_else(|e| panic!("datagram {i}: {e}"));
        assert_eq!(&buf[..n], &want[..], "datagram {i}");
    }
}

#[test]
fn udp_datagrams_are_captured_exactly() {
    const PREFIX: &str = "nlt-udp";
    const TAG: &str = "nlu";
    {
        let bed = Bed::new(PREFIX, TAG, 1, Ipv6Mode::Static);
        let (a4, b4) = bed.v4;
        let (a6, b6) = bed.v6.unwrap();
        // Bound in their namespaces, used from this thread.
        let rx4 = bed.b.run(|| UdpSocket::bind((b4, 9000))).unwrap();
        let rx6 = bed.b.run(|| UdpSocket::bind((b6, 9001))).unwrap();
        let tx4 = bed.a.run(|| UdpSocket::bind((a4, 0))).unwrap();
        let tx6 = bed.a.run(|| UdpSocket::bind((a6, 0))).unwrap();
        // A socket belongs to one namespace: b cannot bind a's address.
        assert!(bed.b.run(|| UdpSocket::bind((a4, 0))).is_err());

        let v4: Vec<Vec<u8>> = (0..25).map(payload).collect();
        let v6: Vec<Vec<u8>> = (100..109).map(payload).collect();
        let capture = Capture::start(Some(&bed.a), bed.veth.a().name()).unwrap();
        for p in &v4 {
            tx4.send_to(p, SocketAddr::from((b4, 9000))).unwrap();
        }
        for p in &v6 {
            tx6.send_to(p, SocketAddr::from((b6, 9001))).unwrap();
        }
        recv_all(&rx4, &v4);
        recv_all(&rx6, &v6);
        let result = capture.stop().unwrap();
        assert_eq!(result.drops, 0, "the capture lost frames");

        let (udp, other): (Vec<&Vec<u8>>, Vec<&Vec<u8>>) =
            result.frames.iter().partition(|f| parse_udp(f).is_some());
        assert_eq!(udp.len(), v4.len() + v6.len(), "UDP frames captured");
        for (i, (frame, p)) in udp.iter().zip(v4.iter().chain(&v6)).enumerate() {
            let v6 = i >= v4.len();
            let ip_hlen = if v6 { IPV6_HLEN } else { IPV4_HLEN };
            assert_eq!(
                frame.len(),
                ETH_HLEN + ip_hlen + UDP_HLEN + p.len(),
                "frame {i}"
            );
            assert_eq!(frame[..6], bed.mac_b, "frame {i} destination");
            assert_eq!(frame[6..12], bed.mac_a, "frame {i} source");
            let want = Udp {
                vlan: None,
                v6,
                dst_port: if v6 { 9001 } else { 9000 },
                payload: p,
            };
            assert_eq!(parse_udp(frame).unwrap(), want, "frame {i}");
        }
        // With static neighbours, IPv4 is silent; IPv6 without link-local
        // addresses only announces its solicited-node groups.
        for f in &other {
            assert!(is_mld_report(f), "unexpected frame {f:02x?}");
        }
        eprintln!("{} MLD report(s) besides the UDP frames", other.len());
    }
    assert_cleaned_up(PREFIX, TAG);
}

fn ipv4_udp(
    src_mac: [u8; 6],
    dst_mac: [u8; 6],
    vlan: Option<u16>,
    src: Ipv4Addr,
    dst: Ipv4Addr,
    payload: &[u8],
) -> Vec<u8> {
    let mut f = Vec::new();
    f.extend(dst_mac);
    f.extend(src_mac);
    if let Some(vid) = vlan {
        f.extend(0x8100u16.to_be_bytes());
        f.extend(vid.to_be_bytes());
    }
    f.extend(0x0800u16.to_be_bytes());
    let total = (IPV4_HLEN + UDP_HLEN + payload.len()) as u16;
    let mut ip = [0u8; IPV4_HLEN];
    ip[0] = 0x45;
    ip[2..4].copy_from_slice(&total.to_be_bytes());
    ip[8] = 64;
    ip[9] = 17;
    ip[12..16].copy_from_slice(&src.octets());
    ip[16..20].copy_from_slice(&dst.octets());
    let sum: u32 = ip.chunks(2).map(|w| u32::from(be16(w, 0))).sum();
    let sum = (sum & 0xffff) + (sum >> 16);
    let sum = !((sum & 0xffff) + (sum >> 16)) as u16;
    ip[10..12].copy_from_slice(&sum.to_be_bytes());
    f.extend(ip);
    f.extend(40000u16.to_be_bytes());
    f.extend(9u16.to_be_bytes());
    f.extend(((UDP_HLEN + payload.len()) as u16).to_be_bytes());
    f.extend([0, 0]);
    f.extend(payload);
    f
}

#[test]
fn raw_frames_are_sent_and_captured_unchanged() {
    const PREFIX: &str = "nlt-raw";
    const TAG: &str = "nlr";
    {
        // IPv6 off: the interface itself sends nothing, so the capture
        // must hold exactly the frames sent.
        let bed = Bed::new(PREFIX, TAG, 2, Ipv6Mode::Off);
        let (a4, b4) = bed.v4;
        let (sa, da) = (bed.mac_a, bed.mac_b);
        let mut ipv6 = Vec::new();
        ipv6.extend(da);
        ipv6.extend(sa);
        ipv6.extend(0x86ddu16.to_be_bytes());
        ipv6.extend([0x60, 0, 0, 0, 0, 12, 17, 64]);
        ipv6.extend(Ipv6Addr::new(0xfd00, 0x200, 2, 0, 0, 0, 0, 1).octets());
        ipv6.extend(Ipv6Addr::new(0xfd00, 0x200, 2, 0, 0, 0, 0, 2).octets());
        ipv6.extend([0x9c, 0x40, 0, 9, 0, 12, 0, 0, 1, 2, 3, 4]);
        let mut local = Vec::new();
        local.extend(da);
        local.extend(sa);
        local.extend(0x88b5u16.to_be_bytes()); // local experimental EtherType
        local.extend([0xab; 46]);
        let mut tiny = Vec::new();
        tiny.extend(da);
        tiny.extend(sa);
        tiny.extend(0x88b5u16.to_be_bytes());
        tiny.extend([1, 2]); // 16 bytes: below the Ethernet minimum, not padded
        let frames = vec![
            ipv4_udp(sa, da, None, a4, b4, b"plain frame"),
            ipv4_udp(sa, da, Some(42), a4, b4, b"tagged frame, VLAN 42"),
            ipv6,
            local,
            tiny,
        ];

        let raw = bed.a.run(|| RawSocket::open(bed.veth.a().name())).unwrap();
        assert_eq!(raw.ifindex(), bed.veth.a().ifindex().unwrap());
        let capture = Capture::start(Some(&bed.a), bed.veth.a().name()).unwrap();
        for f in &frames {
            raw.send(f).unwrap();
        }
        let captured = capture.stop().unwrap().complete().unwrap();
        assert_eq!(captured, frames);
        assert_eq!(parse_udp(&captured[1]).unwrap().vlan, Some(42));
    }
    assert_cleaned_up(PREFIX, TAG);
}

#[test]
fn capture_keeps_up_with_a_burst() {
    const PREFIX: &str = "nlt-burst";
    const TAG: &str = "nlb";
    const FRAMES: u32 = 20_000;
    {
        let bed = Bed::new(PREFIX, TAG, 4, Ipv6Mode::Off);
        let raw = RawSocket::open_in(Some(&bed.a), bed.veth.a().name()).unwrap();
        let capture = Capture::start(Some(&bed.a), bed.veth.a().name()).unwrap();
        let mut frame = Vec::new();
        frame.extend(bed.mac_b);
        frame.extend(bed.mac_a);
        frame.extend(0x88b5u16.to_be_bytes());
        frame.extend([0u8; 46]);
        for i in 0..FRAMES {
            frame[14..18].copy_from_slice(&i.to_be_bytes());
            raw.send(&frame).unwrap();
        }
        let result = capture.stop().unwrap();
        assert_eq!(result.drops, 0);
        assert_eq!(result.frames.len(), FRAMES as usize);
        for (i, f) in result.frames.iter().enumerate() {
            assert_eq!(
                f[14..18],
                (i as u32).to_be_bytes(),
                "frame {i} out of order"
            );
        }
    }
    assert_cleaned_up(PREFIX, TAG);
}

/// A tcx egress program on `ifindex` (in the calling thread's namespace)
/// that pushes an 802.1Q tag `vid` onto every frame with
/// bpf_skb_vlan_push, which keeps the tag out of band (skb->vlan_tci) the
/// way a VLAN device does (this kernel has no 8021q). Detached when the
/// returned link is closed.
fn push_vlan_on_egress(ifindex: u32, vid: u16) -> OwnedFd {
    #[repr(C, align(8))]
    struct Insns([[u8; 8]; 5]);
    let [v0, v1] = vid.to_le_bytes();
    let insns = Insns([
        [0xb7, 0x02, 0, 0, 0x81, 0, 0, 0], // r2 = htons(ETH_P_8021Q)
        [0xb7, 0x03, 0, 0, v0, v1, 0, 0],  // r3 = vid
        [0x85, 0, 0, 0, 18, 0, 0, 0],      // call bpf_skb_vlan_push(r1 = skb)
        [0xb7, 0, 0, 0, 0, 0, 0, 0],       // r0 = TCX_PASS
        [0x95, 0, 0, 0, 0, 0, 0, 0],       // exit
    ]);
    // SAFETY: valid strings and instructions; the returned descriptors are
    // fresh and owned right away.
    unsafe {
        let prog = libbpf_sys::bpf_prog_load(
            libbpf_sys::BPF_PROG_TYPE_SCHED_CLS,
            c"vlan_push".as_ptr(),
            c"GPL".as_ptr(),
            insns.0.as_ptr().cast(),
            insns.0.len() as _,
            std::ptr::null_mut(),
        );
        assert!(
            prog >= 0,
            "loading the VLAN push program: {}",
            io::Error::from_raw_os_error(-prog)
        );
        let prog = OwnedFd::from_raw_fd(prog);
        let link = libbpf_sys::bpf_link_create(
            prog.as_raw_fd(),
            ifindex as _,
            libbpf_sys::BPF_TCX_EGRESS,
            std::ptr::null(),
        );
        assert!(
            link >= 0,
            "attaching it to tcx egress: {}",
            io::Error::from_raw_os_error(-link)
        );
        OwnedFd::from_raw_fd(link)
    }
}

/// Frames handed to a veth with an out-of-band VLAN tag: with `txvlan off`
/// the stack writes the tag into the frame before the capture sees it; with
/// `txvlan on` AF_PACKET reports it in auxdata and the capture must put it
/// back. Either way the capture shows the same wire frames.
#[test]
fn vlan_tags_are_captured_in_place_with_and_without_txvlan() {
    const PREFIX: &str = "nlt-vlan";
    const TAG: &str = "nlv";
    const VID: u16 = 7;
    {
        let bed = Bed::new(PREFIX, TAG, 3, Ipv6Mode::Off);
        let (a4, b4) = bed.v4;
        let pa = bed.veth.a();
        let ifindex = pa.ifindex().unwrap();
        let _link = bed.a.run(|| push_vlan_on_egress(ifindex, VID));
        // Nothing receives VLAN 7 in b (no 8021q): the frames are only sent.
        let tx = bed.a.run(|| UdpSocket::bind((a4, 0))).unwrap();
        let payloads: Vec<Vec<u8>> = (0..6).map(payload).collect();

        let mut runs = Vec::new();
        for txvlan in ["off", "on"] {
            bed.a
                .exec("ethtool", &["-K", pa.name(), "txvlan", txvlan])
                .unwrap();
            let state = bed.a.exec("ethtool", &["-k", pa.name()]).unwrap();
            assert!(
                state.contains(&format!("tx-vlan-offload: {txvlan}")),
                "{state}"
            );
            let capture = Capture::start(Some(&bed.a), pa.name()).unwrap();
            for p in &payloads {
                tx.send_to(p, (b4, 9000)).unwrap();
            }
            let frames = capture.stop().unwrap().complete().unwrap();
            assert_eq!(frames.len(), payloads.len(), "txvlan {txvlan}");
            for (f, p) in frames.iter().zip(&payloads) {
                assert_eq!(
                    f.len(),
                    ETH_HLEN + VLAN_HLEN + IPV4_HLEN + UDP_HLEN + p.len()
                );
                assert_eq!(f[12..16], [0x81, 0x00, 0x00, VID as u8], "txvlan {txvlan}");
                let udp = parse_udp(f).unwrap();
                assert_eq!(
                    (udp.vlan, udp.payload),
                    (Some(VID), &p[..]),
                    "txvlan {txvlan}"
                );
            }
            runs.push(frames);
        }
        // Identical but for the IPv4 id and so the header checksum.
        for run in &mut runs {
            for f in run.iter_mut() {
                let ip = ETH_HLEN + VLAN_HLEN;
                f[ip + 4..ip + 6].fill(0);
                f[ip + 10..ip + 12].fill(0);
            }
        }
        assert!(runs[0] == runs[1], "the two runs captured different frames");
    }
    assert_cleaned_up(PREFIX, TAG);
}

#[test]
fn run_enters_the_namespace_and_propagates_panics() {
    const PREFIX: &str = "nlt-run";
    let name;
    {
        let ns = NetNs::create(PREFIX).unwrap();
        name = ns.name().to_string();
        assert!(name.starts_with(&format!("{PREFIX}-{}-", std::process::id())));
        let mine = std::fs::read_link("/proc/thread-self/ns/net").unwrap();
        let inside = ns.run(|| std::fs::read_link("/proc/thread-self/ns/net").unwrap());
        assert_ne!(mine, inside);
        // A namespace of its own, with only lo, and lo up.
        let links = ns.ip(&["-o", "link", "show"]).unwrap();
        assert_eq!(links.lines().count(), 1, "{links}");
        assert!(links.contains("lo:") && links.contains(",UP"), "{links}");
        let lo = ns.run(|| Iface::new(None, "lo").unwrap());
        assert_eq!(lo.netns(), None);
        assert_eq!(ns.run(|| lo.ifindex().unwrap()), 1);
        // lo's checksum offloads are fixed on: skipped, not an error.
        ns.run(|| lo.disable_offloads()).unwrap();
        let features = ns.exec("ethtool", &["-k", "lo"]).unwrap();
        assert!(
            features.contains("generic-segmentation-offload: off"),
            "{features}"
        );
        assert!(features.contains("tx-checksumming: on"), "{features}");

        let caught = std::panic::catch_unwind(|| ns.run(|| panic!("inside")));
        let msg = caught.unwrap_err();
        assert_eq!(msg.downcast_ref::<&str>(), Some(&"inside"));
        // Still usable afterwards; errors carry the command line and stderr.
        let err = ns.ip(&["link", "show", "dev", "nosuchdev0"]).unwrap_err();
        let text = err.to_string();
        assert!(
            text.contains("ip -n") && text.contains("nosuchdev0"),
            "{text}"
        );
        assert!(veth_pair("this-name-is-too-long", None, "x", None).is_err());
    }
    let netns = String::from_utf8(
        Command::new("ip")
            .args(["netns", "list"])
            .output()
            .unwrap()
            .stdout,
    )
    .unwrap();
    assert!(!netns
        .lines()
        .any(|l| l.split_whitespace().next() == Some(&name)));
    assert!(!std::path::Path::new("/run/netns").join(&name).exists());
}

/// Interfaces in `ns`.
fn has_link(ns: &NetNs, name: &str) -> bool {
    ns.ip(&["-o", "link", "show"])
        .unwrap()
        .lines()
        .any(|l| l.split(": ").nth(1).and_then(|n| n.split('@').next()) == Some(name))
}

#[test]
fn veth_cleanup_with_an_unnamed_end_and_namespaces_dropped_first() {
    const PREFIX: &str = "nlt-cln";
    const TAG: &str = "nlc";
    {
        let outer = NetNs::create(PREFIX).unwrap();
        let inner = NetNs::create(PREFIX).unwrap();
        let (x, y) = (ifname(TAG, 'x'), ifname(TAG, 'y'));

        // `None` is the calling thread's namespace: here `outer`.
        let veth = outer.run(|| veth_pair(&x, None, &y, Some(&inner))).unwrap();
        assert_eq!(veth.a().netns(), None);
        assert!(has_link(&outer, &x) && has_link(&inner, &y));
        // Dropped from this thread: deleted through the named end.
        drop(veth);
        assert!(!has_link(&outer, &x) && !has_link(&inner, &y));

        // The namespace of one end goes first; dropping the pair later is
        // quiet, and the kernel removes the other end with the namespace.
        let veth = outer.run(|| veth_pair(&x, None, &y, Some(&inner))).unwrap();
        drop(inner);
        drop(veth);
        let deadline = Instant::now() + Duration::from_secs(10);
        while has_link(&outer, &x) {
            assert!(
                Instant::now() < deadline,
                "{x} outlived its peer's namespace"
            );
            std::thread::sleep(Duration::from_millis(20));
        }

        // Both ends in the calling thread's namespace.
        let veth = outer.run(|| veth_pair(&x, None, &y, None)).unwrap();
        outer.run(|| drop(veth));
        assert!(!has_link(&outer, &x) && !has_link(&outer, &y));
    }
    assert_cleaned_up(PREFIX, TAG);
}
