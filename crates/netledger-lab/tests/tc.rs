//! The tc data path (`nl_tc`), driven for real at both tc hooks and with
//! both strategies.
//!
//! Every frame of the parser tests' catalog (the same crafted frames the XDP
//! tests run, from `common::frames`) goes through BPF_PROG_TEST_RUN of the
//! tc program of a ledger loaded at `Hook::TcIngress` or `Hook::TcEgress`.
//! After every single run an interval is cut, and it must hold exactly that
//! run: its flow with the frame's packets, bytes and IP bytes, or its
//! bucket; `seen == sum of the buckets`; nothing else. The run must return
//! TC_ACT_UNSPEC (let the next program decide) with the frame unmodified.
//!
//! Then GSO/GRO packets, through the skb context a test run accepts
//! (`gso_segs`, `gso_size`, `wire_len`): one skb stands for `gso_segs` wire
//! frames. At egress the kernel has already worked out their bytes (the
//! qdisc packet length, `wire_len`), and that figure is taken as it is; at
//! ingress (after GRO) it has not, and the bytes are the skb's length plus
//! the headers (L2 to the end of L4) of every segment but the first.

mod common;

use std::collections::HashMap;

use etherparse::{IpHeaders, Ipv6Extensions, TcpHeader, TcpOptionElement};
use netledger::lab::SkbContext;
use netledger::{Bucket, Buckets, Count, Hook, Interval, Ledger, LedgerConfig, Strategy};

use common::frames::*;
use common::{MAC_DST, MAC_SRC};

/// One `#[test]` per case, each calling `$check` with its arguments (the
/// hook, the strategy): `tests! { check: name(args); ... }`.
macro_rules! tests {
    ($check:ident: $($name:ident($($arg:expr),*);)+) => {
        $(
            #[test]
            fn $name() {
                $check($($arg),*);
            }
        )+
    };
}

/// What a tc program returns to let the next program (or the default
/// action) decide: TC_ACT_UNSPEC (-1), which tcx reads as "next".
const TC_ACT_UNSPEC: u32 = u32::MAX;

/// The IP datagram's length a frame carries (IPv4 total length, or the
/// IPv6 fixed header plus its payload length), behind up to two VLAN tags.
fn ip_len_of(frame: &[u8]) -> u64 {
    let mut at = 12;
    let mut ethertype = u16::from_be_bytes([frame[at], frame[at + 1]]);
    while ethertype == ETH_P_8021Q || ethertype == ETH_P_8021AD {
        at += 4;
        ethertype = u16::from_be_bytes([frame[at], frame[at + 1]]);
    }
    let l3 = at + 2;
    match ethertype {
        ETH_P_IP => u64::from(u16::from_be_bytes([frame[l3 + 2], frame[l3 + 3]])),
        ETH_P_IPV6 => 40 + u64::from(u16::from_be_bytes([frame[l3 + 4], frame[l3 + 5]])),
        other => panic!("ip_len_of: ethertype {other:#06x} is not IP"),
    }
}

fn count(c: Count) -> String {
    format!("{} pkts / {} B", c.packets, c.bytes)
}

/// One test run and what it must add: `expect` says where, `add` how much
/// (packets and L2 bytes), `ip_bytes` the IP bytes of a counted run.
struct Run<'a> {
    frame: &'a [u8],
    ctx: Option<SkbContext>,
    repeat: u32,
    expect: Expect,
    add: Count,
    ip_bytes: u64,
}

/// A ledger loaded at a tc hook, cut after every run.
struct Rig {
    ledger: Ledger,
    hook: Hook,
    strategy: Strategy,
    runs: usize,
    /// Everything expected so far, and everything the intervals held.
    want_total: Buckets,
    got_total: Buckets,
    want_flows: HashMap<Want, Count>,
    got_flows: HashMap<Want, Count>,
}

impl Rig {
    #[track_caller]
    fn new(hook: Hook, strategy: Strategy) -> Rig {
        let cfg = LedgerConfig {
            strategy,
            ..Default::default()
        };
        let ledger = Ledger::load_at(cfg, hook)
            .unwrap_or_else(|e| panic!("loading nl_tc at {hook:?} with {strategy}: {e}"));
        assert_eq!(ledger.hook(), hook);
        Rig {
            ledger,
            hook,
            strategy,
            runs: 0,
            want_total: Buckets::default(),
            got_total: Buckets::default(),
            want_flows: HashMap::new(),
            got_flows: HashMap::new(),
        }
    }

    /// A plain frame (no skb context): one wire frame per run, its whole
    /// length, its IP datagram.
    #[track_caller]
    fn frame(&mut self, frame: &[u8], repeat: u32, expect: Expect) {
        let r = u64::from(repeat);
        let ip_bytes = match expect {
            Expect::Flow(_) => r * ip_len_of(frame),
            Expect::In(_) => 0,
        };
        self.run(Run {
            frame,
            ctx: None,
            repeat,
            expect,
            add: Count {
                packets: r,
                bytes: r * frame.len() as u64,
            },
            ip_bytes,
        });
    }

    /// test_run must refuse `frame`, and the next interval must be empty.
    #[track_caller]
    fn refused(&mut self, frame: &[u8]) {
        if let Ok(r) = self.ledger.test_run(frame, 1) {
            panic!(
                "{:?}: test_run accepted a {}-byte frame (retval {})",
                self.hook,
                frame.len(),
                r.retval
            );
        }
        let iv = self.ledger.cut().expect("cut");
        assert!(
            iv.flows.is_empty() && iv.buckets == Buckets::default(),
            "{:?}: a refused run counted something: {iv:?}",
            self.hook
        );
    }

    /// Run, cut, and check that the interval holds exactly this run.
    #[track_caller]
    fn run(&mut self, run: Run<'_>) {
        self.runs += 1;
        let what = format!(
            "{:?}/{} test_run #{} ({}-byte frame x{}, ctx {:?}, expected {:?} adding {})",
            self.hook,
            self.strategy,
            self.runs,
            run.frame.len(),
            run.repeat,
            run.ctx,
            run.expect,
            count(run.add)
        );
        let r = match run.ctx {
            None => self.ledger.test_run(run.frame, run.repeat),
            Some(ctx) => self.ledger.test_run_skb(run.frame, ctx, run.repeat),
        }
        .unwrap_or_else(|e| panic!("{what}: test_run failed: {e}"));
        assert_eq!(
            r.retval, TC_ACT_UNSPEC,
            "{what}: the verdict must be TC_ACT_UNSPEC"
        );
        assert!(
            r.data_out == run.frame,
            "{what}: the program changed the frame ({} bytes in, {} out)",
            run.frame.len(),
            r.data_out.len()
        );

        let iv = self
            .ledger
            .cut()
            .unwrap_or_else(|e| panic!("{what}: cut failed: {e}"));
        self.check_interval(&iv, &run, &what);

        self.want_total.add_to(Bucket::Seen, run.add);
        match run.expect {
            Expect::Flow(w) => {
                self.want_total.add_to(Bucket::Counted, run.add);
                self.want_flows.entry(w).or_default().add(run.add);
            }
            Expect::In(b) => self.want_total.add_to(b, run.add),
        }
        self.got_total.add(&iv.buckets);
        for (k, c) in &iv.flows {
            self.got_flows.entry(Want::from(k)).or_default().add(*c);
        }
    }

    #[track_caller]
    fn check_interval(&self, iv: &Interval, run: &Run<'_>, what: &str) {
        let b = &iv.buckets;
        let mut problems = Vec::new();
        let mut parts = Count::default();
        for p in Bucket::PARTS {
            parts.add(b.get(p));
        }
        if !b.conserved() || parts != b.get(Bucket::Seen) {
            problems.push(format!(
                "not conserved: seen {}, buckets sum to {}",
                count(b.get(Bucket::Seen)),
                count(parts)
            ));
        }
        let home = match run.expect {
            Expect::Flow(_) => Bucket::Counted,
            Expect::In(bucket) => bucket,
        };
        for bucket in Bucket::ALL {
            let want = if bucket == Bucket::Seen || bucket == home {
                run.add
            } else {
                Count::default()
            };
            if b.get(bucket) != want {
                problems.push(format!(
                    "bucket {}: {} where {} was expected",
                    bucket.name(),
                    count(b.get(bucket)),
                    count(want)
                ));
            }
        }
        match run.expect {
            Expect::Flow(w) => match iv.flows.as_slice() {
                [(k, c)] => {
                    if Want::from(k) != w {
                        problems.push(format!(
                            "the flow is [{}], expected [{w}]: {}",
                            Want::from(k),
                            Want::from(k).differences(&w).join(", ")
                        ));
                    }
                    if *c != run.add {
                        problems.push(format!(
                            "the flow holds {}, expected {}",
                            count(*c),
                            count(run.add)
                        ));
                    }
                    if iv.ip_bytes.first() != Some(&run.ip_bytes) {
                        problems.push(format!(
                            "the flow's IP bytes are {:?}, expected {}",
                            iv.ip_bytes.first(),
                            run.ip_bytes
                        ));
                    }
                }
                flows => problems.push(format!("{} flow records, expected one", flows.len())),
            },
            Expect::In(_) => {
                if !iv.flows.is_empty() {
                    problems.push(format!(
                        "flow records where none was expected: {:?}",
                        iv.flows
                    ));
                }
            }
        }
        if !problems.is_empty() {
            panic!("{what}:\n  - {}", problems.join("\n  - "));
        }
    }

    /// The intervals together hold exactly everything run.
    #[track_caller]
    fn check_totals(&self) {
        assert_eq!(
            self.got_total, self.want_total,
            "{:?}/{}: the intervals' buckets sum to what was run",
            self.hook, self.strategy
        );
        assert!(self.got_total.conserved());
        assert_eq!(
            self.got_flows, self.want_flows,
            "{:?}/{}: the intervals' flows sum to what was run",
            self.hook, self.strategy
        );
    }
}

// ---------------------------------------------------------------------------
// The catalog, frame by frame

/// Every frame of the catalog twice (with repeats 1 to 10, then once
/// more), then Ethernet padding and truncations: the same expectations as
/// at XDP, now through tc.
fn check_catalog(hook: Hook, strategy: Strategy) {
    let mut rig = Rig::new(hook, strategy);
    for (i, (frame, expect)) in catalog().into_iter().enumerate() {
        rig.frame(&frame, i as u32 % 10 + 1, expect);
    }
    for (frame, expect) in catalog() {
        rig.frame(&frame, 1, expect);
    }
    // Padding is part of the frame's bytes, not of its IP bytes.
    let ip = v4_pair();
    let short = build(Link::Untagged, ip.clone(), UDP, &[]);
    rig.frame(&padded(&short, 60), 3, Expect::Flow(want(&ip, UDP)));
    let ip = v6_pair();
    let short = build(Link::Tagged(12), ip.clone(), Echo, &[]);
    rig.frame(&padded(&short, 90), 2, Expect::Flow(want(&ip, Echo)));
    // An L4 header cut short by the IP length, padding after it.
    let (udp, _) = frame4(Link::Untagged, UDP);
    let short = cut4(&udp, ETH_LEN, IPV4_LEN + 4);
    rig.frame(&padded(&short, 60), 2, Expect::In(Bucket::Malformed));
    // A bare Ethernet header (test_run's minimum for an skb).
    rig.frame(&eth(0x88cc, &[]), 1, Expect::In(Bucket::NonIp));
    // TCP and UDP headers cut short, the IP length saying so.
    let (frame, _) = frame6(Link::Untagged, TCP);
    rig.frame(&cut6(&frame, ETH_LEN, 10), 2, Expect::In(Bucket::Malformed));
    let (frame, _) = frame4(Link::Untagged, UDP);
    rig.frame(
        &cut4(&frame, ETH_LEN, IPV4_LEN + 7),
        2,
        Expect::In(Bucket::Malformed),
    );
    // An skb test run refuses an untagged IP frame shorter than the fixed
    // IP header (which the XDP tests run as malformed); nothing is counted.
    for frame in [
        &frame4(Link::Untagged, UDP).0[..ETH_LEN + IPV4_LEN - 1],
        &frame6(Link::Untagged, UDP).0[..ETH_LEN + 1],
    ] {
        rig.refused(frame);
    }
    rig.check_totals();
}

tests! {
    check_catalog:
    catalog_at_tc_ingress_lock(Hook::TcIngress, Strategy::Lock);
    catalog_at_tc_ingress_swap(Hook::TcIngress, Strategy::Swap);
    catalog_at_tc_egress_lock(Hook::TcEgress, Strategy::Lock);
    catalog_at_tc_egress_swap(Hook::TcEgress, Strategy::Swap);
}

// ---------------------------------------------------------------------------
// GSO/GRO packets

/// The largest frame an skb test run takes: it must fit one page with the
/// skb's head- and tailroom (this kernel refuses 3800 bytes), so GSO
/// packets here have small segments; gso_size is only a number to the
/// data path.
const TEST_RUN_MAX: usize = 3700;

/// A GSO/GRO TCP packet as one frame: `segs` segments of `mss` payload
/// bytes (the last one `short` bytes shorter) behind one set of headers;
/// TCP carries the timestamp option (12 bytes), as on a real connection.
/// Returns the frame and the headers' length (L2 to the end of TCP), which
/// every segment repeats on the wire.
fn gso_tcp(link: Link, ip: IpHeaders, segs: usize, mss: usize, short: usize) -> (Vec<u8>, usize) {
    let payload = vec![0x5a; segs * mss - short];
    let mut tcp = TcpHeader::new(40000, 443, 1, 65535);
    tcp.ack = true;
    tcp.set_options(&[
        TcpOptionElement::Noop,
        TcpOptionElement::Noop,
        TcpOptionElement::Timestamp(1, 2),
    ])
    .expect("12 bytes of options fit");
    let eth = etherparse::PacketBuilder::ethernet2(MAC_SRC, MAC_DST);
    let step = match link {
        Link::Untagged => eth.ip(ip),
        Link::Tagged(v) => eth.single_vlan(v.try_into().expect("a VLAN id")).ip(ip),
        Link::QinQ(o, i) => eth
            .double_vlan(
                o.try_into().expect("a VLAN id"),
                i.try_into().expect("a VLAN id"),
            )
            .ip(ip),
    };
    let mut frame = Vec::new();
    step.tcp_header(tcp)
        .write(&mut frame, &payload)
        .expect("etherparse writes the frame");
    let hdr = frame.len() - payload.len();
    (frame, hdr)
}

/// A GSO UDP packet (UDP segmentation offload): `segs` datagrams of `size`
/// payload bytes behind one UDP header.
fn gso_udp(ip: IpHeaders, segs: usize, size: usize) -> (Vec<u8>, usize) {
    let payload = vec![0xa5; segs * size];
    let mut frame = Vec::new();
    etherparse::PacketBuilder::ethernet2(MAC_SRC, MAC_DST)
        .ip(ip)
        .udp(4000, 53)
        .write(&mut frame, &payload)
        .expect("etherparse writes the frame");
    let hdr = frame.len() - payload.len();
    (frame, hdr)
}

/// Bytes before the IP header of a frame on `link`.
fn l2_len(link: Link) -> usize {
    match link {
        Link::Untagged => ETH_LEN,
        Link::Tagged(_) => ETH_LEN + TAG_LEN,
        Link::QinQ(..) => ETH_LEN + 2 * TAG_LEN,
    }
}

/// A GSO packet of the GSO tests.
struct GsoPacket {
    what: &'static str,
    frame: Vec<u8>,
    /// The headers every segment repeats: L2 to the end of TCP/UDP.
    hdr: usize,
    /// Bytes before the IP header.
    l2: usize,
    /// gso_segs and gso_size.
    segs: u32,
    size: u32,
    want: Want,
}

/// The GSO packets of the GSO tests.
fn gso_packets() -> Vec<GsoPacket> {
    let tcp4 = v4_pair();
    let tcp6 = v6_pair();
    let mut h = v4(A4, B4);
    h.options = [1u8; 8].into();
    let opts4 = IpHeaders::Ipv4(h, Default::default());
    let ext6 = ip6(
        v6(A6, B6),
        Ipv6Extensions {
            hop_by_hop_options: Some(raw_ext()),
            ..Default::default()
        },
    );
    let mut out = Vec::new();
    // (what, link, IP headers, segments, payload per segment, how much
    // shorter the last one is)
    let tcp: [(&str, Link, IpHeaders, usize, usize, usize); 6] = [
        (
            "IPv4 TCP, 10 full segments",
            Link::Untagged,
            tcp4.clone(),
            10,
            300,
            0,
        ),
        (
            "IPv4 TCP, 64 segments, the last short",
            Link::Untagged,
            tcp4,
            64,
            50,
            30,
        ),
        (
            "IPv6 TCP, 7 segments",
            Link::Untagged,
            tcp6.clone(),
            7,
            400,
            17,
        ),
        ("IPv6 TCP in a VLAN tag", Link::Tagged(7), tcp6, 3, 1000, 0),
        (
            "IPv4 TCP, IP options, two tags",
            Link::QinQ(5, 6),
            opts4,
            5,
            500,
            1,
        ),
        (
            "IPv6 TCP after hop-by-hop",
            Link::Untagged,
            ext6,
            4,
            700,
            100,
        ),
    ];
    for (what, link, ip, segs, mss, short) in tcp {
        // gso_tcp writes the ports of TCP.
        let w = want(&ip, TCP);
        let (frame, hdr) = gso_tcp(link, ip, segs, mss, short);
        out.push(GsoPacket {
            what,
            frame,
            hdr,
            l2: l2_len(link),
            segs: segs as u32,
            size: mss as u32,
            want: w,
        });
    }
    for (what, ip, segs, size) in [
        ("IPv4 UDP GSO, 8 datagrams", v4_pair(), 8usize, 300usize),
        ("IPv6 UDP GSO, 20 datagrams", v6_pair(), 20, 150),
    ] {
        let w = want(&ip, UDP);
        let (frame, hdr) = gso_udp(ip, segs, size);
        out.push(GsoPacket {
            what,
            frame,
            hdr,
            l2: ETH_LEN,
            segs: segs as u32,
            size: size as u32,
            want: w,
        });
    }
    out
}

impl GsoPacket {
    /// What the kernel puts in `wire_len` for it at egress
    /// (`qdisc_pkt_len_init`): its length plus the headers of every segment
    /// but the first.
    fn kernel_wire_len(&self) -> u32 {
        (self.frame.len() + (self.segs as usize - 1) * self.hdr) as u32
    }

    /// `repeat` test runs of it with `gso_segs` and `wire_len` in the skb
    /// context, each adding its `segs` frames and `bytes` to its flow (and
    /// those bytes less every segment's L2 header to the IP bytes).
    fn run(&self, gso_segs: u32, wire_len: u32, repeat: u32, bytes: u64) -> Run<'_> {
        let r = u64::from(repeat);
        let segs = u64::from(self.segs);
        Run {
            frame: &self.frame,
            ctx: Some(SkbContext {
                gso_segs,
                gso_size: self.size,
                wire_len,
            }),
            repeat,
            expect: Expect::Flow(self.want),
            add: Count {
                packets: r * segs,
                bytes: r * bytes,
            },
            ip_bytes: r * (bytes - segs * self.l2 as u64),
        }
    }
}

/// At egress a GSO packet is `gso_segs` frames of `wire_len` bytes in all:
/// the kernel's figure, taken as it is (here also one that differs from
/// what the parse would compute, as for headers the parse does not see).
fn check_gso_egress(strategy: Strategy) {
    let mut rig = Rig::new(Hook::TcEgress, strategy);
    for p in gso_packets() {
        let wire = p.kernel_wire_len();
        for (wire_len, repeat) in [(wire, 1u32), (wire, 3), (wire + 50 * p.segs, 2)] {
            eprintln!(
                "egress {strategy}: {}: {} B skb, wire_len {wire_len}",
                p.what,
                p.frame.len()
            );
            rig.run(p.run(p.segs, wire_len, repeat, u64::from(wire_len)));
        }
    }
    rig.check_totals();
}

/// At ingress (after GRO) a GSO/GRO packet is `gso_segs` frames: its
/// length plus the headers of every segment but the first. `wire_len` is
/// not the wire's there (the kernel sets it to the skb's length), so a
/// value in it changes nothing.
fn check_gso_ingress(strategy: Strategy) {
    let mut rig = Rig::new(Hook::TcIngress, strategy);
    for p in gso_packets() {
        let wire = p.kernel_wire_len();
        let bytes = u64::from(wire);
        // The same as segmenting the packet: each segment its headers plus
        // its share of the payload.
        let payload = (p.frame.len() - p.hdr) as u64;
        assert_eq!(
            bytes,
            u64::from(p.segs) * p.hdr as u64 + payload,
            "{}",
            p.what
        );
        let skb_len = p.frame.len() as u32;
        for (wire_len, repeat) in [(0, 1u32), (0, 2), (wire + 999, 1), (skb_len, 1)] {
            eprintln!(
                "ingress {strategy}: {}: {} B skb, wire_len {wire_len}",
                p.what,
                p.frame.len()
            );
            rig.run(p.run(p.segs, wire_len, repeat, bytes));
        }
    }
    rig.check_totals();
}

tests! {
    check_gso_egress:
    gso_at_egress_counts_segments_and_wire_len_lock(Strategy::Lock);
    gso_at_egress_counts_segments_and_wire_len_swap(Strategy::Swap);
}

tests! {
    check_gso_ingress:
    gso_at_ingress_counts_segments_and_their_headers_lock(Strategy::Lock);
    gso_at_ingress_counts_segments_and_their_headers_swap(Strategy::Swap);
}

/// One segment (gso_segs 1, or an skb that is not GSO at all) is one
/// frame of its own length, at either hook, whatever `wire_len` says; and
/// a GSO packet whose headers cannot be parsed still counts as its
/// segments, in its bucket, conserved.
#[test]
fn single_segments_and_unparsed_gso_packets() {
    for hook in [Hook::TcIngress, Hook::TcEgress] {
        let mut rig = Rig::new(hook, Strategy::Lock);
        let ip = v4_pair();
        let (frame, hdr) = gso_tcp(Link::Untagged, ip.clone(), 1, 1000, 0);
        let w = want(&ip, TCP);
        for gso_segs in [0, 1] {
            rig.run(Run {
                frame: &frame,
                ctx: Some(SkbContext {
                    gso_segs,
                    gso_size: if gso_segs == 1 { 1000 } else { 0 },
                    wire_len: 0,
                }),
                repeat: 2,
                expect: Expect::Flow(w),
                add: Count {
                    packets: 2,
                    bytes: 2 * frame.len() as u64,
                },
                ip_bytes: 2 * (frame.len() - ETH_LEN) as u64,
            });
        }
        assert_eq!(hdr, ETH_LEN + IPV4_LEN + 32);

        // Not IP: the headers are unknown, so every segment's bytes are
        // what the kernel says (egress) or the skb's length (ingress).
        let not_ip = eth(0x88b5, &[0u8; 3000]);
        let wire = not_ip.len() as u32 + 3 * 60;
        let bytes = match hook {
            Hook::TcEgress => u64::from(wire),
            _ => not_ip.len() as u64,
        };
        rig.run(Run {
            frame: &not_ip,
            ctx: Some(SkbContext {
                gso_segs: 4,
                gso_size: 750,
                wire_len: wire,
            }),
            repeat: 1,
            expect: Expect::In(Bucket::NonIp),
            add: Count { packets: 4, bytes },
            ip_bytes: 0,
        });
        rig.check_totals();
    }
}

/// A GSO packet the kernel has not vetted (from a tap or a packet socket,
/// SKB_GSO_DODGY) carries a segment size and no segment count (gso_segs 0)
/// until it is segmented, after the hook: it is still ceil(payload /
/// gso_size) wire frames, at either hook.
fn check_gso_without_a_segment_count(hook: Hook, strategy: Strategy) {
    let mut rig = Rig::new(hook, strategy);
    for p in gso_packets() {
        let wire = p.kernel_wire_len();
        eprintln!("{hook:?} {strategy}: {} without gso_segs", p.what);
        // What the kernel works out at egress; the skb's length at ingress.
        let wire_len = if hook == Hook::TcEgress { wire } else { 0 };
        rig.run(p.run(0, wire_len, 2, u64::from(wire)));
    }
    rig.check_totals();
}

tests! {
    check_gso_without_a_segment_count:
    unvetted_gso_at_egress_lock(Hook::TcEgress, Strategy::Lock);
    unvetted_gso_at_egress_swap(Hook::TcEgress, Strategy::Swap);
    unvetted_gso_at_ingress_lock(Hook::TcIngress, Strategy::Lock);
    unvetted_gso_at_ingress_swap(Hook::TcIngress, Strategy::Swap);
}

#[test]
fn gso_frames_are_built_as_intended() {
    // The GSO packets' own arithmetic, so that the tests above check what
    // they say they check.
    for GsoPacket {
        what,
        frame,
        hdr,
        l2,
        segs,
        size,
        ..
    } in gso_packets()
    {
        let payload = frame.len() - hdr;
        assert!(
            payload <= segs as usize * size as usize
                && payload > (segs as usize - 1) * size as usize,
            "{what}: {payload} payload bytes make {segs} segments of {size}"
        );
        assert!(frame.len() <= TEST_RUN_MAX, "{what}: {} B", frame.len());
        let ip_len = ip_len_of(&frame) as usize;
        assert_eq!(
            ip_len,
            frame.len() - l2,
            "{what}: the IP header covers the packet"
        );
    }
    let (f, hdr) = gso_tcp(Link::Untagged, v4_pair(), 2, 1448, 0);
    assert_eq!(hdr, 14 + 20 + 32);
    assert_eq!(f.len(), hdr + 2 * 1448);
}
