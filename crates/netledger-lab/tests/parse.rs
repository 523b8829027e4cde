//! The XDP parser, driven for real.
//!
//! Every test loads a fresh data path (strategy `lock`, whose live snapshots
//! the model is compared with) and runs crafted frames through it with
//! BPF_PROG_TEST_RUN (`Ledger::test_run`). After every single run the whole
//! ledger -- every flow key with its count, every conservation bucket -- is
//! compared with a model of what the frames should have produced, and the
//! run itself must have returned XDP_PASS with the frame unmodified.
//!
//! Frames are built with etherparse where it can build them, and byte by byte
//! where it cannot (bad IHL, truncation, long IPv6 extension header chains, a
//! third VLAN tag, Ethernet padding).

mod common;

use std::net::{IpAddr, Ipv6Addr};

use etherparse::{IpFragOffset, IpHeaders, Ipv4Header, Ipv6Extensions};
use netledger::{Bucket, KeyMode, LedgerConfig, Strategy, L4};

use check::{Expect, Rig, Want};
use frames::*;
use Transport::{Echo, EchoReply, Tcp, Udp};

/// Assertions on the ledger, written so a failure points at the test's line
/// and says what differed.
mod check {
    use std::collections::HashMap;
    use std::fmt;
    use std::net::IpAddr;

    use netledger::{
        Bucket, Count, FlowKey, KeyMode, Ledger, LedgerConfig, Snapshot, Strategy, L4,
    };

    /// The only verdict the data path may return.
    pub const XDP_PASS: u32 = 2;

    /// A flow key as a test expects it: the fields of `netledger::FlowKey`,
    /// with each address as a plain `(ip, prefix length)` pair. Ledger keys
    /// are compared through this mirror.
    #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
    pub struct Want {
        pub src: Option<(IpAddr, u8)>,
        pub dst: Option<(IpAddr, u8)>,
        pub proto: Option<u8>,
        pub l4: L4,
        pub fragment: bool,
        pub vlan: Option<u16>,
    }

    fn full_prefix(ip: IpAddr) -> u8 {
        if ip.is_ipv4() {
            32
        } else {
            128
        }
    }

    fn mask(ip: IpAddr, len: u8) -> IpAddr {
        match ip {
            IpAddr::V4(a) => {
                let m = u32::MAX.checked_shl(32 - u32::from(len)).unwrap_or(0);
                IpAddr::from((u32::from(a) & m).to_be_bytes())
            }
            IpAddr::V6(a) => {
                let m = u128::MAX.checked_shl(128 - u32::from(len)).unwrap_or(0);
                IpAddr::from((u128::from(a) & m).to_be_bytes())
            }
        }
    }

    impl Want {
        /// A complete five-tuple key of whole addresses, with no VLAN part.
        pub fn flow(src: impl Into<IpAddr>, dst: impl Into<IpAddr>, proto: u8, l4: L4) -> Want {
            let (src, dst) = (src.into(), dst.into());
            Want {
                src: Some((src, full_prefix(src))),
                dst: Some((dst, full_prefix(dst))),
                proto: Some(proto),
                l4,
                fragment: false,
                vlan: None,
            }
        }

        /// The key of a non-first fragment of this flow: no L4 fields.
        pub fn fragment(self) -> Want {
            Want {
                l4: L4::None,
                fragment: true,
                ..self
            }
        }

        /// With this VLAN part (`Some` exactly when the ledger keys on VLANs).
        pub fn vlan(self, vlan: Option<u16>) -> Want {
            Want { vlan, ..self }
        }

        /// Only the fields of `mode`; the rest is what a key of that mode
        /// must hold for them (None, L4::None, false).
        pub fn keyed_by(self, mode: KeyMode) -> Want {
            let none = Want {
                src: None,
                dst: None,
                proto: None,
                l4: L4::None,
                fragment: false,
                vlan: self.vlan,
            };
            match mode {
                KeyMode::SrcIp => Want {
                    src: self.src,
                    ..none
                },
                KeyMode::DstIp => Want {
                    dst: self.dst,
                    ..none
                },
                KeyMode::IpPair => Want {
                    src: self.src,
                    dst: self.dst,
                    ..none
                },
                KeyMode::FiveTuple => self,
            }
        }

        /// Addresses aggregated to `prefix4` / `prefix6`.
        pub fn prefixed(self, prefix4: u8, prefix6: u8) -> Want {
            let cut = |a: Option<(IpAddr, u8)>| {
                a.map(|(ip, _)| {
                    let len = if ip.is_ipv4() { prefix4 } else { prefix6 };
                    (mask(ip, len), len)
                })
            };
            Want {
                src: cut(self.src),
                dst: cut(self.dst),
                ..self
            }
        }

        /// The fields in which `self` and `other` differ, for messages.
        fn differences(&self, other: &Want) -> Vec<String> {
            let mut out = Vec::new();
            if self.src != other.src {
                out.push(format!("src {:?} vs {:?}", self.src, other.src));
            }
            if self.dst != other.dst {
                out.push(format!("dst {:?} vs {:?}", self.dst, other.dst));
            }
            if self.proto != other.proto {
                out.push(format!("proto {:?} vs {:?}", self.proto, other.proto));
            }
            if self.l4 != other.l4 {
                out.push(format!("l4 {:?} vs {:?}", self.l4, other.l4));
            }
            if self.fragment != other.fragment {
                out.push(format!("fragment {} vs {}", self.fragment, other.fragment));
            }
            if self.vlan != other.vlan {
                out.push(format!("vlan {:?} vs {:?}", self.vlan, other.vlan));
            }
            out
        }
    }

    impl From<&FlowKey> for Want {
        fn from(k: &FlowKey) -> Want {
            Want {
                src: k.src.map(|a| (a.ip, a.prefix)),
                dst: k.dst.map(|a| (a.ip, a.prefix)),
                proto: k.proto,
                l4: k.l4,
                fragment: k.fragment,
                vlan: k.vlan,
            }
        }
    }

    impl fmt::Display for Want {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            let mut parts = Vec::new();
            if let Some(v) = self.vlan {
                parts.push(format!("vlan={v}"));
            }
            if let Some((ip, len)) = self.src {
                parts.push(format!("src={ip}/{len}"));
            }
            if let Some((ip, len)) = self.dst {
                parts.push(format!("dst={ip}/{len}"));
            }
            if let Some(p) = self.proto {
                parts.push(format!("proto={p}"));
            }
            match self.l4 {
                L4::None => {}
                L4::Ports { src, dst } => parts.push(format!("ports={src}->{dst}")),
                L4::Icmp { kind, code } => parts.push(format!("icmp={kind}/{code}")),
            }
            if self.fragment {
                parts.push("fragment".into());
            }
            if parts.is_empty() {
                parts.push("(empty key)".into());
            }
            f.write_str(&parts.join(" "))
        }
    }

    /// Where a frame's packets must end up.
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    pub enum Expect {
        /// Counted, on this key.
        Flow(Want),
        /// In this bucket (not Counted, not Seen), on no flow.
        In(Bucket),
    }

    fn count(c: Count) -> String {
        format!("{} pkts / {} B", c.packets, c.bytes)
    }

    fn hex(frame: &[u8]) -> String {
        frame
            .chunks(2)
            .map(|c| c.iter().map(|b| format!("{b:02x}")).collect::<String>())
            .collect::<Vec<_>>()
            .join(" ")
    }

    /// A loaded data path and the model of what it must hold.
    pub struct Rig {
        ledger: Ledger,
        cfg: LedgerConfig,
        flows: HashMap<Want, Count>,
        buckets: HashMap<Bucket, Count>,
        snap: Snapshot,
        runs: usize,
    }

    impl Rig {
        #[track_caller]
        pub fn new(cfg: LedgerConfig) -> Rig {
            let ledger = match netledger::Ledger::load(cfg.clone()) {
                Ok(l) => l,
                Err(e) => panic!("loading the data path with {cfg:?}: {e}"),
            };
            let snap = match ledger.snapshot() {
                Ok(s) => s,
                Err(e) => panic!("snapshot of a fresh ledger: {e}"),
            };
            let rig = Rig {
                ledger,
                cfg,
                flows: HashMap::new(),
                buckets: HashMap::new(),
                snap,
                runs: 0,
            };
            rig.compare("a freshly loaded ledger");
            rig
        }

        /// The default key configuration: five-tuple keys, no VLAN, no prefixes.
        #[track_caller]
        pub fn five_tuple() -> Rig {
            Rig::new(LedgerConfig {
                strategy: Strategy::Lock,
                ..Default::default()
            })
        }

        #[track_caller]
        pub fn with_mode(key_mode: KeyMode, vlan: bool) -> Rig {
            Rig::new(LedgerConfig {
                key_mode,
                vlan,
                strategy: Strategy::Lock,
                ..Default::default()
            })
        }

        pub fn config(&self) -> &LedgerConfig {
            &self.cfg
        }

        /// The snapshot taken after the latest run.
        pub fn snapshot(&self) -> &Snapshot {
            &self.snap
        }

        /// Run `frame` `repeat` times; its packets must be counted on `want`.
        /// Returns the ledger's key, after checking it has the mode's shape.
        #[track_caller]
        pub fn counted(&mut self, frame: &[u8], repeat: u32, want: Want) -> FlowKey {
            self.run(frame, repeat, Expect::Flow(want));
            let key = self
                .snap
                .flows
                .keys()
                .find(|k| Want::from(*k) == want)
                .copied()
                .expect("run() checked the key is there");
            assert_shape(&key, &self.cfg);
            key
        }

        /// Run `frame` `repeat` times; its packets must land in `bucket`.
        #[track_caller]
        pub fn lands_in(&mut self, frame: &[u8], repeat: u32, bucket: Bucket) {
            self.run(frame, repeat, Expect::In(bucket));
        }

        /// test_run must refuse `frame` (and the ledger must not change).
        #[track_caller]
        pub fn refused(&mut self, frame: &[u8]) {
            if let Ok(r) = self.ledger.test_run(frame, 1) {
                panic!(
                    "test_run accepted a {}-byte frame (retval {}): {}",
                    frame.len(),
                    r.retval,
                    hex(frame)
                );
            }
            self.refresh("a refused test_run");
        }

        /// Run `frame` `repeat` times and check everything against the model:
        /// verdict, unmodified frame, conservation, every bucket, every flow.
        #[track_caller]
        pub fn run(&mut self, frame: &[u8], repeat: u32, expect: Expect) {
            self.runs += 1;
            let what = match expect {
                Expect::Flow(w) => format!("counted on [{w}]"),
                Expect::In(b) => format!("in bucket {}", b.name()),
            };
            let what = format!(
                "test_run #{} ({}-byte frame x{repeat}, expected {what})\n  frame: {}",
                self.runs,
                frame.len(),
                hex(frame)
            );
            if let Expect::In(b) = expect {
                assert!(
                    b != Bucket::Seen && b != Bucket::Counted,
                    "{what}: expect a flow with Expect::Flow, not bucket {}",
                    b.name()
                );
            }
            let r = match self.ledger.test_run(frame, repeat) {
                Ok(r) => r,
                Err(e) => panic!("{what}: test_run failed: {e}"),
            };
            if r.retval != XDP_PASS {
                panic!(
                    "{what}: retval {} instead of XDP_PASS ({XDP_PASS})",
                    r.retval
                );
            }
            if r.data_out != frame {
                let at = r
                    .data_out
                    .iter()
                    .zip(frame)
                    .position(|(a, b)| a != b)
                    .unwrap_or(frame.len().min(r.data_out.len()));
                panic!(
                    "{what}: the program changed the frame (first difference at byte {at}; \
                     {} bytes in, {} out)\n  out:   {}",
                    frame.len(),
                    r.data_out.len(),
                    hex(&r.data_out)
                );
            }

            // Every packet is the whole frame, VLAN tags and padding included.
            let add = Count {
                packets: u64::from(repeat),
                bytes: u64::from(repeat) * frame.len() as u64,
            };
            self.buckets.entry(Bucket::Seen).or_default().add(add);
            match expect {
                Expect::Flow(w) => {
                    self.buckets.entry(Bucket::Counted).or_default().add(add);
                    self.flows.entry(w).or_default().add(add);
                }
                Expect::In(b) => self.buckets.entry(b).or_default().add(add),
            }
            self.refresh(&what);
        }

        #[track_caller]
        fn refresh(&mut self, what: &str) {
            self.snap = match self.ledger.snapshot() {
                Ok(s) => s,
                Err(e) => panic!("{what}: snapshot failed: {e}"),
            };
            self.compare(what);
        }

        /// Compare the latest snapshot with the model; panic listing every
        /// difference.
        #[track_caller]
        fn compare(&self, what: &str) {
            let b = &self.snap.buckets;
            let mut problems = Vec::new();

            // The conservation identity, through the library and by hand.
            if !b.conserved() {
                problems.push("Buckets::conserved() is false".to_string());
            }
            let mut parts = Count::default();
            for p in Bucket::PARTS {
                parts.add(b.get(p));
            }
            if parts != b.get(Bucket::Seen) {
                problems.push(format!(
                    "seen ({}) != counted + non_ip + malformed + map_full ({})",
                    count(b.get(Bucket::Seen)),
                    count(parts)
                ));
            }
            for bucket in Bucket::ALL {
                let want = self.buckets.get(&bucket).copied().unwrap_or_default();
                let got = b.get(bucket);
                if got != want {
                    problems.push(format!(
                        "bucket {}: ledger has {}, expected {}",
                        bucket.name(),
                        count(got),
                        count(want)
                    ));
                }
            }

            // The flows: the counted bucket is exactly their sum, and they are
            // exactly the model's keys with the model's counts.
            let mut sum = Count::default();
            let mut got: HashMap<Want, Count> = HashMap::new();
            for (k, c) in &self.snap.flows {
                sum.add(*c);
                got.entry(Want::from(k)).or_default().add(*c);
            }
            if sum != b.get(Bucket::Counted) {
                problems.push(format!(
                    "the flows sum to {}, the counted bucket holds {}",
                    count(sum),
                    count(b.get(Bucket::Counted))
                ));
            }
            let mut missing: Vec<&Want> = Vec::new();
            for (w, c) in &self.flows {
                match got.get(w) {
                    None => missing.push(w),
                    Some(g) if g != c => problems.push(format!(
                        "flow [{w}]: ledger has {}, expected {}",
                        count(*g),
                        count(*c)
                    )),
                    Some(_) => {}
                }
            }
            let unexpected: Vec<(&Want, &Count)> = got
                .iter()
                .filter(|(w, _)| !self.flows.contains_key(*w))
                .collect();
            for w in &missing {
                problems.push(format!("flow [{w}] is missing from the ledger"));
            }
            for (w, c) in &unexpected {
                problems.push(format!("unexpected flow [{w}] with {}", count(**c)));
            }
            if let ([m], [(u, _)]) = (missing.as_slice(), unexpected.as_slice()) {
                problems.push(format!(
                    "expected vs ledger key: {}",
                    m.differences(u).join(", ")
                ));
            }

            if !problems.is_empty() {
                panic!("{what}:\n  - {}", problems.join("\n  - "));
            }
        }
    }

    /// A key holds exactly the fields of the configuration's mode.
    #[track_caller]
    pub fn assert_shape(key: &FlowKey, cfg: &LedgerConfig) {
        let mode = cfg.key_mode;
        let five = mode == KeyMode::FiveTuple;
        let mut problems = Vec::new();
        let has_src = mode != KeyMode::DstIp;
        let has_dst = mode != KeyMode::SrcIp;
        if key.src.is_some() != has_src {
            problems.push(format!("src is {:?}", key.src));
        }
        if key.dst.is_some() != has_dst {
            problems.push(format!("dst is {:?}", key.dst));
        }
        for a in key.src.iter().chain(key.dst.iter()) {
            let want = if a.ip.is_ipv4() {
                cfg.prefix4.unwrap_or(32)
            } else {
                cfg.prefix6.unwrap_or(128)
            };
            if a.prefix != want {
                problems.push(format!("address {a} has prefix {}, not {want}", a.prefix));
            }
            if mask(a.ip, a.prefix) != a.ip {
                problems.push(format!("address {a} has bits beyond its prefix"));
            }
        }
        if key.proto.is_some() != five {
            problems.push(format!("proto is {:?}", key.proto));
        }
        if !five && (key.l4 != L4::None || key.fragment) {
            problems.push(format!("l4 {:?}, fragment {}", key.l4, key.fragment));
        }
        if key.fragment && key.l4 != L4::None {
            problems.push(format!("a fragment with L4 fields {:?}", key.l4));
        }
        if key.vlan.is_some() != cfg.vlan {
            problems.push(format!(
                "vlan is {:?} with vlan keys {}",
                key.vlan, cfg.vlan
            ));
        }
        if !problems.is_empty() {
            panic!(
                "key {key:?} does not have the shape of mode {mode} (vlan {}): {}",
                cfg.vlan,
                problems.join("; ")
            );
        }
    }
}

/// Frame builders: etherparse where it can, bytes where it cannot.
mod frames {
    use etherparse::{
        EtherType, IpFragOffset, IpHeaders, IpNumber, Ipv4Extensions, Ipv4Header, Ipv6Extensions,
        Ipv6FragmentHeader, Ipv6Header, Ipv6RawExtHeader, Ipv6RoutingExtensions, PacketBuilder,
        SingleVlanHeader, VlanHeader, VlanId, VlanPcp,
    };
    use netledger::L4;

    use crate::check::Want;
    pub use crate::common::{arp, A4, A6, B4, B6};
    use crate::common::{MAC_DST, MAC_SRC};

    pub const ETH_LEN: usize = 14;
    pub const TAG_LEN: usize = 4;
    pub const IPV4_LEN: usize = 20;
    pub const IPV6_LEN: usize = 40;
    pub const ETH_P_IP: u16 = 0x0800;
    pub const ETH_P_IPV6: u16 = 0x86dd;
    pub const ETH_P_8021Q: u16 = 0x8100;
    pub const ETH_P_8021AD: u16 = 0x88a8;
    pub const PROTO_ICMP: u8 = 1;
    pub const PROTO_TCP: u8 = 6;
    pub const PROTO_UDP: u8 = 17;
    pub const PROTO_ICMPV6: u8 = 58;
    pub const NEXT_HOPOPTS: u8 = 0;
    pub const NEXT_ROUTING: u8 = 43;
    pub const NEXT_FRAGMENT: u8 = 44;
    pub const NEXT_DSTOPTS: u8 = 60;

    /// Some payload, so that frames are not all headers.
    pub const PAYLOAD: &[u8] = b"netledger test payload";

    /// The link layer in front of the IP header.
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    pub enum Link {
        Untagged,
        /// One 802.1Q tag.
        Tagged(u16),
        /// An outer 802.1ad tag, then an inner 802.1Q tag.
        QinQ(u16, u16),
    }

    impl Link {
        /// The outer VLAN id a vlan-keyed ledger must report.
        pub fn outer(self) -> u16 {
            match self {
                Link::Untagged => 0,
                Link::Tagged(v) | Link::QinQ(v, _) => v,
            }
        }
    }

    /// The L4 header after the IP header(s).
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    pub enum Transport {
        Udp(u16, u16),
        Tcp(u16, u16),
        /// ICMP echo request (IPv4) or ICMPv6 echo request (IPv6).
        Echo,
        /// ICMP echo reply (IPv4) or ICMPv6 echo reply (IPv6).
        EchoReply,
    }

    impl Transport {
        pub fn proto(self, v6: bool) -> u8 {
            match self {
                Transport::Udp(..) => PROTO_UDP,
                Transport::Tcp(..) => PROTO_TCP,
                Transport::Echo | Transport::EchoReply if v6 => PROTO_ICMPV6,
                Transport::Echo | Transport::EchoReply => PROTO_ICMP,
            }
        }

        pub fn l4(self, v6: bool) -> L4 {
            match (self, v6) {
                (Transport::Udp(src, dst), _) | (Transport::Tcp(src, dst), _) => {
                    L4::Ports { src, dst }
                }
                (Transport::Echo, false) => L4::Icmp { kind: 8, code: 0 },
                (Transport::EchoReply, false) => L4::Icmp { kind: 0, code: 0 },
                (Transport::Echo, true) => L4::Icmp { kind: 128, code: 0 },
                (Transport::EchoReply, true) => L4::Icmp { kind: 129, code: 0 },
            }
        }
    }

    /// An IPv4 header (protocol and length are filled in by the builder).
    pub fn v4(src: [u8; 4], dst: [u8; 4]) -> Ipv4Header {
        Ipv4Header::new(0, 64, IpNumber::UDP, src, dst).expect("a valid IPv4 header")
    }

    pub fn v6(src: [u8; 16], dst: [u8; 16]) -> Ipv6Header {
        Ipv6Header {
            hop_limit: 64,
            source: src,
            destination: dst,
            ..Default::default()
        }
    }

    pub fn ip4(h: Ipv4Header) -> IpHeaders {
        IpHeaders::Ipv4(h, Ipv4Extensions::default())
    }

    pub fn ip6(h: Ipv6Header, exts: Ipv6Extensions) -> IpHeaders {
        IpHeaders::Ipv6(h, exts)
    }

    /// The complete five-tuple key of a frame built from `ip` and `t`.
    pub fn want(ip: &IpHeaders, t: Transport) -> Want {
        match ip {
            IpHeaders::Ipv4(h, _) => {
                Want::flow(h.source, h.destination, t.proto(false), t.l4(false))
            }
            IpHeaders::Ipv6(h, _) => Want::flow(h.source, h.destination, t.proto(true), t.l4(true)),
        }
    }

    fn vid(v: u16) -> VlanId {
        VlanId::try_new(v).expect("a 12-bit VLAN id")
    }

    /// A frame from etherparse: link, IP headers, transport and payload.
    pub fn build(link: Link, ip: IpHeaders, t: Transport, payload: &[u8]) -> Vec<u8> {
        let is_v6 = matches!(ip, IpHeaders::Ipv6(..));
        let eth = PacketBuilder::ethernet2(MAC_SRC, MAC_DST);
        let step = match link {
            Link::Untagged => eth.ip(ip),
            Link::Tagged(v) => eth.single_vlan(vid(v)).ip(ip),
            Link::QinQ(outer, inner) => eth.double_vlan(vid(outer), vid(inner)).ip(ip),
        };
        let mut out = Vec::new();
        match (t, is_v6) {
            (Transport::Udp(s, d), _) => step.udp(s, d).write(&mut out, payload),
            (Transport::Tcp(s, d), _) => step.tcp(s, d, 1, 65535).write(&mut out, payload),
            (Transport::Echo, false) => step.icmpv4_echo_request(7, 1).write(&mut out, payload),
            (Transport::EchoReply, false) => step.icmpv4_echo_reply(7, 1).write(&mut out, payload),
            (Transport::Echo, true) => step.icmpv6_echo_request(7, 1).write(&mut out, payload),
            (Transport::EchoReply, true) => step.icmpv6_echo_reply(7, 1).write(&mut out, payload),
        }
        .expect("etherparse writes the frame");
        out
    }

    /// A frame with an 802.1Q tag whose PCP and DEI bits are set as well.
    pub fn build_tagged_with_priority(vlan: u16, ip: IpHeaders, t: Transport) -> Vec<u8> {
        let tag = VlanHeader::Single(SingleVlanHeader {
            pcp: VlanPcp::try_new(5).expect("a 3-bit PCP"),
            drop_eligible_indicator: true,
            vlan_id: vid(vlan),
            ether_type: EtherType(0),
        });
        let step = PacketBuilder::ethernet2(MAC_SRC, MAC_DST).vlan(tag).ip(ip);
        let mut out = Vec::new();
        match t {
            Transport::Udp(s, d) => step.udp(s, d).write(&mut out, PAYLOAD),
            Transport::Tcp(s, d) => step.tcp(s, d, 1, 65535).write(&mut out, PAYLOAD),
            _ => panic!("only UDP and TCP here"),
        }
        .expect("etherparse writes the frame");
        out
    }

    /// An Ethernet frame by hand.
    pub fn eth(ethertype: u16, payload: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        out.extend_from_slice(&MAC_DST);
        out.extend_from_slice(&MAC_SRC);
        out.extend_from_slice(&ethertype.to_be_bytes());
        out.extend_from_slice(payload);
        out
    }

    /// Push a VLAN tag in front of the frame's ethertype: it becomes the outermost tag.
    pub fn push_tag(frame: &[u8], tpid: u16, tci: u16) -> Vec<u8> {
        let mut out = frame[..12].to_vec();
        out.extend_from_slice(&tpid.to_be_bytes());
        out.extend_from_slice(&tci.to_be_bytes());
        out.extend_from_slice(&frame[12..]);
        out
    }

    pub fn set_u16(frame: &mut [u8], at: usize, v: u16) {
        frame[at..at + 2].copy_from_slice(&v.to_be_bytes());
    }

    /// An IPv6 extension header.
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    pub enum Ext {
        /// Hop-by-hop options of this many bytes (a multiple of 8).
        HopByHop(usize),
        /// A routing header of this many bytes.
        Routing(usize),
        /// Destination options of this many bytes.
        DstOpts(usize),
        /// A fragment header: offset in 8-byte units, more-fragments flag.
        Fragment(u16, bool),
    }

    impl Ext {
        fn code(self) -> u8 {
            match self {
                Ext::HopByHop(_) => NEXT_HOPOPTS,
                Ext::Routing(_) => NEXT_ROUTING,
                Ext::DstOpts(_) => NEXT_DSTOPTS,
                Ext::Fragment(..) => NEXT_FRAGMENT,
            }
        }

        fn bytes(self, next: u8) -> Vec<u8> {
            match self {
                Ext::HopByHop(len) | Ext::DstOpts(len) => {
                    assert!(len >= 8 && len % 8 == 0 && len <= 2048);
                    // One PadN option fills the header.
                    let mut h = vec![next, (len / 8 - 1) as u8, 1, (len - 4) as u8];
                    h.resize(len, 0);
                    h
                }
                Ext::Routing(len) => {
                    assert!(len >= 8 && len % 8 == 0 && len <= 2048);
                    // Routing type 4 (segment routing), no segments left.
                    let mut h = vec![next, (len / 8 - 1) as u8, 4, 0];
                    h.resize(len, 0);
                    h
                }
                Ext::Fragment(offset, more) => {
                    let word = (offset << 3) | u16::from(more);
                    let [hi, lo] = word.to_be_bytes();
                    vec![next, 0, hi, lo, 0, 0, 0x12, 0x34]
                }
            }
        }
    }

    pub fn udp_header(sport: u16, dport: u16, payload_len: usize) -> Vec<u8> {
        let mut h = Vec::new();
        h.extend_from_slice(&sport.to_be_bytes());
        h.extend_from_slice(&dport.to_be_bytes());
        h.extend_from_slice(&((8 + payload_len) as u16).to_be_bytes());
        h.extend_from_slice(&[0, 0]);
        h
    }

    pub fn tcp_header(sport: u16, dport: u16) -> Vec<u8> {
        let mut h = Vec::new();
        h.extend_from_slice(&sport.to_be_bytes());
        h.extend_from_slice(&dport.to_be_bytes());
        h.extend_from_slice(&[0, 0, 0, 1, 0, 0, 0, 0, 0x50, 0x10, 0xff, 0xff, 0, 0, 0, 0]);
        h
    }

    /// An untagged IPv6 frame by hand: the extension header chain, then
    /// `proto` with `l4` (header and payload) after it.
    pub fn ipv6_chain(exts: &[Ext], proto: u8, l4: &[u8]) -> Vec<u8> {
        let mut body = Vec::new();
        for (i, e) in exts.iter().enumerate() {
            let next = exts.get(i + 1).map_or(proto, |n| n.code());
            body.extend(e.bytes(next));
        }
        body.extend_from_slice(l4);
        let first = exts.first().map_or(proto, |e| e.code());
        let mut ip = vec![0x60, 0, 0, 0];
        ip.extend_from_slice(&(body.len() as u16).to_be_bytes());
        ip.push(first);
        ip.push(64);
        ip.extend_from_slice(&A6);
        ip.extend_from_slice(&B6);
        ip.extend(body);
        eth(ETH_P_IPV6, &ip)
    }

    /// etherparse extension headers: an options header of 8 bytes.
    pub fn raw_ext() -> Ipv6RawExtHeader {
        Ipv6RawExtHeader::new_raw(IpNumber::UDP, &[1, 4, 0, 0, 0, 0]).expect("8-byte header")
    }

    /// An options header of 24 bytes (header length 2).
    pub fn raw_ext_24() -> Ipv6RawExtHeader {
        let mut payload = [0u8; 22];
        payload[0] = 1; // PadN
        payload[1] = 20;
        Ipv6RawExtHeader::new_raw(IpNumber::UDP, &payload).expect("24-byte header")
    }

    pub fn routing_ext() -> Ipv6RoutingExtensions {
        Ipv6RoutingExtensions {
            routing: Ipv6RawExtHeader::new_raw(IpNumber::UDP, &[4, 0, 0, 0, 0, 0])
                .expect("8-byte header"),
            final_destination_options: None,
        }
    }

    pub fn fragment_ext(offset: u16, more: bool) -> Ipv6FragmentHeader {
        let offset = IpFragOffset::try_new(offset).expect("a 13-bit offset");
        Ipv6FragmentHeader::new(IpNumber::UDP, offset, more, 0x1234)
    }
}

// ---------------------------------------------------------------------------
// Shorthands

const UDP: Transport = Udp(4000, 53);
const TCP: Transport = Tcp(40000, 443);

fn v4_pair() -> IpHeaders {
    ip4(v4(A4, B4))
}

fn v6_pair() -> IpHeaders {
    ip6(v6(A6, B6), Ipv6Extensions::default())
}

/// An IPv4 frame and its five-tuple key.
fn frame4(link: Link, t: Transport) -> (Vec<u8>, Want) {
    let ip = v4_pair();
    (build(link, ip.clone(), t, PAYLOAD), want(&ip, t))
}

/// An IPv6 frame (no extension headers) and its five-tuple key.
fn frame6(link: Link, t: Transport) -> (Vec<u8>, Want) {
    let ip = v6_pair();
    (build(link, ip.clone(), t, PAYLOAD), want(&ip, t))
}

/// An IPv6 frame with etherparse extension headers, and its five-tuple key.
fn frame6_with(exts: Ipv6Extensions, t: Transport) -> (Vec<u8>, Want) {
    let ip = ip6(v6(A6, B6), exts);
    (build(Link::Untagged, ip.clone(), t, PAYLOAD), want(&ip, t))
}

/// An IPv4 frame with this header (fragment fields, options) and its five-tuple key.
fn frame4_from(h: Ipv4Header, t: Transport) -> (Vec<u8>, Want) {
    let ip = ip4(h);
    (build(Link::Untagged, ip.clone(), t, PAYLOAD), want(&ip, t))
}

/// The key of A6 > B6 `proto` with ports (hand-built IPv6 frames).
fn want6(proto: u8, sport: u16, dport: u16) -> Want {
    Want::flow(
        A6,
        B6,
        proto,
        L4::Ports {
            src: sport,
            dst: dport,
        },
    )
}

/// A UDP header and payload, for hand-built frames.
fn udp_l4() -> Vec<u8> {
    let mut l4 = udp_header(4000, 53, PAYLOAD.len());
    l4.extend_from_slice(PAYLOAD);
    l4
}

/// Cut an IPv4 packet at `l3` to `len` bytes of IP, with tot_len saying so.
fn cut4(frame: &[u8], l3: usize, len: usize) -> Vec<u8> {
    let mut f = frame[..l3 + len].to_vec();
    set_u16(&mut f, l3 + 2, len as u16);
    f
}

/// Cut an IPv6 packet at `l3` to `payload` bytes after the fixed header,
/// with payload_len saying so.
fn cut6(frame: &[u8], l3: usize, payload: usize) -> Vec<u8> {
    let mut f = frame[..l3 + IPV6_LEN + payload].to_vec();
    set_u16(&mut f, l3 + 4, payload as u16);
    f
}

/// Ethernet padding: zeros up to `len` bytes of frame.
fn padded(frame: &[u8], len: usize) -> Vec<u8> {
    assert!(frame.len() <= len);
    let mut f = frame.to_vec();
    f.resize(len, 0);
    f
}

fn octets6(s: &str) -> [u8; 16] {
    s.parse::<Ipv6Addr>().expect("an IPv6 address").octets()
}

// ---------------------------------------------------------------------------
// Key modes, VLAN keys, prefixes

/// The sample flows every key mode is checked on: UDP, TCP and ICMP echo over
/// IPv4 and IPv6, one address pair per family.
fn samples() -> Vec<(IpHeaders, Transport)> {
    let mut out = Vec::new();
    for ip in [v4_pair(), v6_pair()] {
        for t in [UDP, TCP, Echo] {
            out.push((ip.clone(), t));
        }
    }
    out
}

/// Every sample flow, untagged, with one tag and with two, in `mode`, with
/// and without VLAN keys. `keys` is how many keys the samples make per VLAN.
fn check_key_mode(mode: KeyMode, keys: usize) {
    let links = [Link::Untagged, Link::Tagged(100), Link::QinQ(200, 300)];
    for vlan in [false, true] {
        let mut rig = Rig::with_mode(mode, vlan);
        for (ip, t) in samples() {
            for link in links {
                let frame = build(link, ip.clone(), t, PAYLOAD);
                let expected = want(&ip, t)
                    .keyed_by(mode)
                    .vlan(vlan.then_some(link.outer()));
                let key = rig.counted(&frame, 2, expected);
                assert_eq!(
                    key.vlan,
                    vlan.then_some(link.outer()),
                    "{mode}, vlan keys {vlan}, {link:?}: the key's VLAN is the outer id"
                );
            }
        }
        let per_vlan = if vlan { links.len() } else { 1 };
        assert_eq!(
            rig.snapshot().flows.len(),
            keys * per_vlan,
            "{mode}, vlan keys {vlan}: number of keys: {:#?}",
            rig.snapshot().flows.keys().collect::<Vec<_>>()
        );
    }
}

#[test]
fn key_mode_src_ip() {
    // One key per source address: A4, A6.
    check_key_mode(KeyMode::SrcIp, 2);
}

#[test]
fn key_mode_dst_ip() {
    // One key per destination address: B4, B6.
    check_key_mode(KeyMode::DstIp, 2);
}

#[test]
fn key_mode_ip_pair() {
    // One key per address pair: A4 > B4, A6 > B6.
    check_key_mode(KeyMode::IpPair, 2);
}

#[test]
fn key_mode_five_tuple() {
    // UDP, TCP and ICMP echo in each family.
    check_key_mode(KeyMode::FiveTuple, 6);
}

#[test]
fn key_mode_fields_are_exactly_the_modes() {
    // The same UDP frame under every mode, field by field, written out.
    let (frame, _) = frame4(Link::Tagged(42), UDP);
    let src = Some((IpAddr::from(A4), 32));
    let dst = Some((IpAddr::from(B4), 32));
    let ports = L4::Ports { src: 4000, dst: 53 };
    for (mode, expected) in [
        (
            KeyMode::SrcIp,
            Want {
                src,
                dst: None,
                proto: None,
                l4: L4::None,
                fragment: false,
                vlan: Some(42),
            },
        ),
        (
            KeyMode::DstIp,
            Want {
                src: None,
                dst,
                proto: None,
                l4: L4::None,
                fragment: false,
                vlan: Some(42),
            },
        ),
        (
            KeyMode::IpPair,
            Want {
                src,
                dst,
                proto: None,
                l4: L4::None,
                fragment: false,
                vlan: Some(42),
            },
        ),
        (
            KeyMode::FiveTuple,
            Want {
                src,
                dst,
                proto: Some(PROTO_UDP),
                l4: ports,
                fragment: false,
                vlan: Some(42),
            },
        ),
    ] {
        let mut rig = Rig::with_mode(mode, true);
        rig.counted(&frame, 3, expected);
    }
}

#[test]
fn prefix_aggregation_merges_hosts_of_one_prefix() {
    let t = UDP;
    for mode in KeyMode::ALL {
        let mut rig = Rig::new(LedgerConfig {
            key_mode: mode,
            prefix4: Some(24),
            prefix6: Some(64),
            strategy: Strategy::Lock,
            ..Default::default()
        });
        let run = |rig: &mut Rig, ip: IpHeaders| {
            let frame = build(Link::Untagged, ip.clone(), t, PAYLOAD);
            let expected = want(&ip, t).keyed_by(mode).prefixed(24, 64);
            rig.counted(&frame, 3, expected)
        };

        // Two hosts of 10.1.2.0/24 talking to two hosts of 10.9.8.0/24.
        let k1 = run(&mut rig, ip4(v4([10, 1, 2, 3], [10, 9, 8, 7])));
        let k2 = run(&mut rig, ip4(v4([10, 1, 2, 250], [10, 9, 8, 1])));
        assert_eq!(k1, k2, "{mode}: hosts of one /24 share a key");
        if let Some(src) = k1.src {
            assert_eq!(src.to_string(), "10.1.2.0/24", "{mode}: src display");
        }
        if let Some(dst) = k1.dst {
            assert_eq!(dst.to_string(), "10.9.8.0/24", "{mode}: dst display");
        }
        assert_eq!(
            rig.snapshot().flows[&k1].packets,
            6,
            "{mode}: both hosts' packets on the /24 key"
        );

        // Another /24 source (same destination /24).
        let k3 = run(&mut rig, ip4(v4([10, 1, 3, 3], [10, 9, 8, 7])));
        assert_eq!(
            k3 == k1,
            mode == KeyMode::DstIp,
            "{mode}: 10.1.3.3 is in another /24 source prefix"
        );

        // Two hosts of 2001:db8:1:2::/64 to two hosts of 2001:db8:9:9::/64.
        let a = octets6("2001:db8:1:2::a");
        let b = octets6("2001:db8:1:2:ffff:ffff:ffff:fffe");
        let c = octets6("2001:db8:9:9::1");
        let d = octets6("2001:db8:9:9:8000::1");
        let k4 = run(&mut rig, v6ip(a, c));
        let k5 = run(&mut rig, v6ip(b, d));
        assert_eq!(k4, k5, "{mode}: hosts of one /64 share a key");
        if let Some(src) = k4.src {
            assert_eq!(src.to_string(), "2001:db8:1:2::/64", "{mode}: src display");
        }
        if let Some(dst) = k4.dst {
            assert_eq!(dst.to_string(), "2001:db8:9:9::/64", "{mode}: dst display");
        }

        let keys = if mode == KeyMode::DstIp { 2 } else { 3 };
        assert_eq!(rig.snapshot().flows.len(), keys, "{mode}: number of keys");
    }
}

fn v6ip(src: [u8; 16], dst: [u8; 16]) -> IpHeaders {
    ip6(v6(src, dst), Ipv6Extensions::default())
}

#[test]
fn prefix_aggregation_keeps_ports_in_five_tuple_mode() {
    let mut rig = Rig::new(LedgerConfig {
        prefix4: Some(16),
        prefix6: Some(48),
        strategy: Strategy::Lock,
        ..Default::default()
    });
    for t in [UDP, TCP] {
        for (frame, w) in [frame4(Link::Untagged, t), frame6(Link::Untagged, t)] {
            let key = rig.counted(&frame, 2, w.prefixed(16, 48));
            assert_eq!(key.l4, t.l4(false), "ports stay in the key");
            let src = key.src.expect("five-tuple keys have a source").to_string();
            let dst = key
                .dst
                .expect("five-tuple keys have a destination")
                .to_string();
            let expected = if key.src.is_some_and(|a| a.ip.is_ipv4()) {
                ("10.1.0.0/16", "192.168.0.0/16")
            } else {
                ("2001:db8:1::/48", "2001:db8:ffff::/48")
            };
            assert_eq!(
                (src.as_str(), dst.as_str()),
                expected,
                "addresses display as prefixes"
            );
        }
    }
}

// ---------------------------------------------------------------------------
// IPv4

#[test]
fn ipv4_options_are_skipped_to_the_ports() {
    let mut rig = Rig::five_tuple();
    let record_route = {
        let mut o = vec![7, 39, 4];
        o.resize(39, 0);
        o.push(0); // end of options list
        o
    };
    let options: [&[u8]; 3] = [
        &[1, 1, 1, 0],               // IHL 6: NOPs, end of list
        &[148, 4, 0, 0, 1, 1, 1, 0], // IHL 7: router alert
        &record_route,               // IHL 15: the most there can be
    ];
    for t in [UDP, TCP, Echo] {
        for opts in options {
            let mut h = v4(A4, B4);
            h.options = opts.try_into().expect("valid options length");
            let (frame, w) = frame4_from(h, t);
            let ihl = 5 + opts.len() / 4;
            assert_eq!(u16::from_be_bytes([frame[12], frame[13]]), ETH_P_IP);
            assert_eq!(usize::from(frame[ETH_LEN] & 0x0f), ihl, "the frame's IHL");
            // Same key as without options: the options are skipped, not read as ports.
            assert_eq!(w, frame4(Link::Untagged, t).1);
            rig.counted(&frame, 2, w);
        }
    }
    // And with a tag in front.
    let mut h = v4(A4, B4);
    h.options = options[1].try_into().expect("valid options length");
    let ip = ip4(h);
    let frame = build(Link::QinQ(5, 6), ip.clone(), UDP, PAYLOAD);
    rig.counted(&frame, 2, want(&ip, UDP));
}

#[test]
fn ipv4_first_fragment_has_ports() {
    let mut rig = Rig::five_tuple();
    for t in [UDP, TCP, Echo] {
        let mut h = v4(A4, B4);
        h.dont_fragment = false;
        h.more_fragments = true;
        h.fragment_offset = IpFragOffset::ZERO;
        let (frame, w) = frame4_from(h, t);
        assert_eq!(frame[ETH_LEN + 6], 0x20, "MF set, offset 0");
        assert!(!w.fragment);
        rig.counted(&frame, 3, w);
    }
}

#[test]
fn ipv4_non_first_fragment_has_no_ports() {
    let mut rig = Rig::five_tuple();
    for t in [UDP, TCP] {
        // The bytes after the IP header look like a UDP/TCP header (etherparse
        // writes one); in a non-first fragment they are payload.
        for (offset, more) in [(1, true), (185, true), (370, false), (0x1fff, false)] {
            let mut h = v4(A4, B4);
            h.dont_fragment = false;
            h.more_fragments = more;
            h.fragment_offset = IpFragOffset::try_new(offset).expect("13-bit offset");
            let (frame, w) = frame4_from(h, t);
            let key = rig.counted(&frame, 2, w.fragment());
            assert!(key.fragment, "a non-first fragment is flagged");
            assert_eq!(key.l4, L4::None, "a non-first fragment has no ports");
            assert_eq!(key.proto, Some(t.proto(false)), "but has its protocol");
        }
    }
    // A non-first fragment needs no L4 header at all: one byte of payload.
    let mut h = v4(A4, B4);
    h.dont_fragment = false;
    h.fragment_offset = IpFragOffset::try_new(3).expect("13-bit offset");
    let (frame, w) = frame4_from(h, UDP);
    let tiny = cut4(&frame, ETH_LEN, IPV4_LEN + 1);
    rig.counted(&tiny, 2, w.fragment());
}

#[test]
fn ipv4_fragments_share_the_address_key() {
    // Without L4 fields in the key, fragments and whole datagrams are one flow.
    let mut rig = Rig::with_mode(KeyMode::IpPair, false);
    let (whole, w) = frame4(Link::Untagged, UDP);
    let mut h = v4(A4, B4);
    h.dont_fragment = false;
    h.fragment_offset = IpFragOffset::try_new(185).expect("13-bit offset");
    let (fragment, _) = frame4_from(h, UDP);
    let k1 = rig.counted(&whole, 2, w.keyed_by(KeyMode::IpPair));
    let k2 = rig.counted(&fragment, 3, w.keyed_by(KeyMode::IpPair));
    assert_eq!(k1, k2);
    assert!(!k2.fragment, "fragment is a five-tuple field");
}

// ---------------------------------------------------------------------------
// IPv6 extension headers

/// Each transport after `exts` (etherparse), then after the hand-built `ext`
/// of a larger size: ports (or ICMPv6 type/code) found.
fn check_ipv6_ext_alone(exts: Ipv6Extensions, first: u8, long: Ext) {
    let mut rig = Rig::five_tuple();
    for t in [UDP, TCP, Echo] {
        let (frame, w) = frame6_with(exts.clone(), t);
        assert_eq!(frame[ETH_LEN + 6], first, "the IPv6 next header");
        assert_eq!(
            w,
            frame6(Link::Untagged, t).1,
            "same key as without the header"
        );
        rig.counted(&frame, 2, w);
    }
    let frame = ipv6_chain(&[long], PROTO_UDP, &udp_l4());
    assert_eq!(frame[ETH_LEN + 6], first, "the IPv6 next header");
    rig.counted(&frame, 2, want6(PROTO_UDP, 4000, 53));
    let mut tcp = tcp_header(40000, 443);
    tcp.extend_from_slice(PAYLOAD);
    let frame = ipv6_chain(&[long], PROTO_TCP, &tcp);
    rig.counted(&frame, 2, want6(PROTO_TCP, 40000, 443));
}

#[test]
fn ipv6_hop_by_hop_alone() {
    let exts = Ipv6Extensions {
        hop_by_hop_options: Some(raw_ext()),
        ..Default::default()
    };
    check_ipv6_ext_alone(exts, NEXT_HOPOPTS, Ext::HopByHop(24));
}

#[test]
fn ipv6_routing_alone() {
    let exts = Ipv6Extensions {
        routing: Some(routing_ext()),
        ..Default::default()
    };
    check_ipv6_ext_alone(exts, NEXT_ROUTING, Ext::Routing(40));
}

#[test]
fn ipv6_first_fragment_alone() {
    let exts = Ipv6Extensions {
        fragment: Some(fragment_ext(0, true)),
        ..Default::default()
    };
    check_ipv6_ext_alone(exts, NEXT_FRAGMENT, Ext::Fragment(0, true));
}

#[test]
fn ipv6_destination_options_alone() {
    let exts = Ipv6Extensions {
        destination_options: Some(raw_ext_24()),
        ..Default::default()
    };
    check_ipv6_ext_alone(exts, NEXT_DSTOPTS, Ext::DstOpts(2048));
}

#[test]
fn ipv6_extension_chain() {
    let mut rig = Rig::five_tuple();
    // etherparse: hop-by-hop -> destination options -> routing -> fragment
    // (offset 0) -> L4.
    let exts = Ipv6Extensions {
        hop_by_hop_options: Some(raw_ext()),
        destination_options: Some(raw_ext_24()),
        routing: Some(routing_ext()),
        fragment: Some(fragment_ext(0, true)),
        ..Default::default()
    };
    for t in [UDP, TCP, Echo, EchoReply] {
        let (frame, w) = frame6_with(exts.clone(), t);
        assert_eq!(frame[ETH_LEN + 6], NEXT_HOPOPTS);
        rig.counted(&frame, 2, w);
    }
    // By hand, with sizes that do not line up with a cache line: each header's
    // length field is honoured.
    let chain = [
        Ext::HopByHop(16),
        Ext::DstOpts(8),
        Ext::Routing(56),
        Ext::Fragment(0, false),
        Ext::DstOpts(32),
    ];
    rig.counted(
        &ipv6_chain(&chain, PROTO_UDP, &udp_l4()),
        3,
        want6(PROTO_UDP, 4000, 53),
    );
    // A chain ending in a protocol without ports.
    let frame = ipv6_chain(&chain, 59 /* no next header */, &[]);
    rig.counted(&frame, 1, Want::flow(A6, B6, 59, L4::None));
}

#[test]
fn ipv6_non_first_fragment_has_no_ports() {
    let mut rig = Rig::five_tuple();
    for t in [UDP, TCP] {
        for (offset, more) in [(1, true), (100, true), (185, false), (0x1fff, false)] {
            let exts = Ipv6Extensions {
                fragment: Some(fragment_ext(offset, more)),
                ..Default::default()
            };
            let (frame, w) = frame6_with(exts, t);
            let key = rig.counted(&frame, 2, w.fragment());
            assert!(key.fragment, "a non-first fragment is flagged");
            assert_eq!(key.l4, L4::None, "a non-first fragment has no ports");
            assert_eq!(
                key.proto,
                Some(t.proto(true)),
                "the fragment header's next header"
            );
        }
    }
    // Behind other headers, and with no L4 bytes at all after it.
    let chain = [Ext::HopByHop(8), Ext::Routing(24), Ext::Fragment(77, true)];
    let frame = ipv6_chain(&chain, PROTO_TCP, &[0xab]);
    rig.counted(&frame, 2, want6(PROTO_TCP, 0, 0).fragment());
}

#[test]
fn ipv6_chain_of_the_maximum_length_is_parsed() {
    // NL_MAX_IPV6_EXT (8) extension headers is not longer than the bound.
    let mut rig = Rig::five_tuple();
    let eight = [Ext::DstOpts(8); 8];
    rig.counted(
        &ipv6_chain(&eight, PROTO_UDP, &udp_l4()),
        2,
        want6(PROTO_UDP, 4000, 53),
    );
    let mixed = [
        Ext::HopByHop(8),
        Ext::DstOpts(16),
        Ext::Routing(24),
        Ext::DstOpts(8),
        Ext::Routing(8),
        Ext::Fragment(0, true),
        Ext::DstOpts(8),
        Ext::DstOpts(40),
    ];
    rig.counted(
        &ipv6_chain(&mixed, PROTO_UDP, &udp_l4()),
        2,
        want6(PROTO_UDP, 4000, 53),
    );
    // A non-first fragment header as the eighth.
    let mut frag_last = [Ext::DstOpts(8); 8];
    frag_last[7] = Ext::Fragment(9, false);
    rig.counted(
        &ipv6_chain(&frag_last, PROTO_UDP, &udp_l4()),
        2,
        want6(PROTO_UDP, 0, 0).fragment(),
    );
}

#[test]
fn ipv6_chain_longer_than_the_maximum_is_malformed() {
    let mut rig = Rig::five_tuple();
    for n in [9, 10, 16] {
        let chain = vec![Ext::DstOpts(8); n];
        rig.lands_in(
            &ipv6_chain(&chain, PROTO_UDP, &udp_l4()),
            2,
            Bucket::Malformed,
        );
    }
    let mut mixed = vec![Ext::HopByHop(8)];
    mixed.extend([Ext::Routing(16); 7]);
    mixed.push(Ext::Fragment(0, true));
    rig.lands_in(
        &ipv6_chain(&mixed, PROTO_UDP, &udp_l4()),
        3,
        Bucket::Malformed,
    );
    // Even when the ninth header is a non-first fragment header.
    let mut frag = vec![Ext::DstOpts(8); 8];
    frag.push(Ext::Fragment(9, false));
    rig.lands_in(
        &ipv6_chain(&frag, PROTO_UDP, &udp_l4()),
        1,
        Bucket::Malformed,
    );
}

// ---------------------------------------------------------------------------
// VLAN tags

#[test]
fn single_vlan_tag_is_parsed_through() {
    for vlan in [false, true] {
        let mut rig = Rig::with_mode(KeyMode::FiveTuple, vlan);
        for t in [UDP, TCP] {
            for (id, frame, w) in [
                (
                    100,
                    frame4(Link::Tagged(100), t).0,
                    frame4(Link::Tagged(100), t).1,
                ),
                (
                    4095,
                    frame6(Link::Tagged(4095), t).0,
                    frame6(Link::Tagged(4095), t).1,
                ),
                (
                    // PCP and DEI bits are not part of the id.
                    100,
                    build_tagged_with_priority(100, v4_pair(), t),
                    frame4(Link::Untagged, t).1,
                ),
            ] {
                assert_eq!(u16::from_be_bytes([frame[12], frame[13]]), ETH_P_8021Q);
                rig.counted(&frame, 2, w.vlan(vlan.then_some(id)));
            }
            // Untagged: vlan 0 with vlan keys.
            let (frame, w) = frame4(Link::Untagged, t);
            rig.counted(&frame, 2, w.vlan(vlan.then_some(0)));
        }
    }
}

#[test]
fn double_vlan_tags_are_parsed_through_and_the_outer_id_keys() {
    for vlan in [false, true] {
        let mut rig = Rig::with_mode(KeyMode::IpPair, vlan);
        for t in [UDP, TCP, Echo] {
            // etherparse: outer 802.1ad (0x88a8) 200, inner 802.1Q 300.
            let (frame, w) = frame4(Link::QinQ(200, 300), t);
            assert_eq!(u16::from_be_bytes([frame[12], frame[13]]), ETH_P_8021AD);
            assert_eq!(u16::from_be_bytes([frame[16], frame[17]]), ETH_P_8021Q);
            let key = rig.counted(
                &frame,
                2,
                w.keyed_by(KeyMode::IpPair).vlan(vlan.then_some(200)),
            );
            assert_eq!(key.vlan, vlan.then_some(200), "the OUTER id");

            let (frame, w) = frame6(Link::QinQ(7, 4000), t);
            rig.counted(
                &frame,
                2,
                w.keyed_by(KeyMode::IpPair).vlan(vlan.then_some(7)),
            );

            // Two 802.1Q tags (0x8100 0x8100): outer 11, inner 22.
            let (inner, w) = frame4(Link::Tagged(22), t);
            let frame = push_tag(&inner, ETH_P_8021Q, 11);
            rig.counted(
                &frame,
                2,
                w.keyed_by(KeyMode::IpPair).vlan(vlan.then_some(11)),
            );
        }
    }
}

#[test]
fn three_vlan_tags_are_non_ip() {
    for vlan in [false, true] {
        let mut rig = Rig::with_mode(KeyMode::FiveTuple, vlan);
        for (frame, _) in [
            frame4(Link::QinQ(200, 300), UDP),
            frame6(Link::QinQ(200, 300), TCP),
        ] {
            rig.lands_in(&push_tag(&frame, ETH_P_8021AD, 100), 3, Bucket::NonIp);
            rig.lands_in(&push_tag(&frame, ETH_P_8021Q, 100), 1, Bucket::NonIp);
        }
        // Two tags still count.
        let (frame, w) = frame4(Link::QinQ(200, 300), UDP);
        rig.counted(&frame, 1, w.vlan(vlan.then_some(200)));
    }
}

// ---------------------------------------------------------------------------
// ICMP

#[test]
fn icmp_echo_has_type_and_code() {
    let mut rig = Rig::five_tuple();
    let (frame, w) = frame4(Link::Untagged, Echo);
    assert_eq!(frame[ETH_LEN + IPV4_LEN], 8, "echo request");
    let key = rig.counted(&frame, 3, w);
    assert_eq!(key.proto, Some(PROTO_ICMP));
    assert_eq!(key.l4, L4::Icmp { kind: 8, code: 0 });
    let (frame, w) = frame4(Link::Tagged(3), EchoReply);
    let key = rig.counted(&frame, 2, w);
    assert_eq!(key.l4, L4::Icmp { kind: 0, code: 0 });
}

#[test]
fn icmpv6_echo_has_type_and_code() {
    let mut rig = Rig::five_tuple();
    let (frame, w) = frame6(Link::Untagged, Echo);
    assert_eq!(frame[ETH_LEN + IPV6_LEN], 128, "echo request");
    let key = rig.counted(&frame, 3, w);
    assert_eq!(key.proto, Some(PROTO_ICMPV6));
    assert_eq!(key.l4, L4::Icmp { kind: 128, code: 0 });
    let (frame, w) = frame6(Link::QinQ(1, 2), EchoReply);
    let key = rig.counted(&frame, 2, w);
    assert_eq!(key.l4, L4::Icmp { kind: 129, code: 0 });
    // Behind extension headers.
    let exts = Ipv6Extensions {
        hop_by_hop_options: Some(raw_ext()),
        fragment: Some(fragment_ext(0, true)),
        ..Default::default()
    };
    let (frame, w) = frame6_with(exts, Echo);
    rig.counted(&frame, 2, w);
}

// ---------------------------------------------------------------------------
// Not IP

#[test]
fn unknown_ethertypes_are_non_ip() {
    let mut rig = Rig::five_tuple();
    let arp = arp();
    assert_eq!(u16::from_be_bytes([arp[12], arp[13]]), 0x0806);
    rig.lands_in(&arp, 3, Bucket::NonIp);
    let lldp = eth(0x88cc, &[0x02, 0x07, 0x04, 2, 0, 0, 0, 0, 1, 0, 0]);
    rig.lands_in(&lldp, 2, Bucket::NonIp);
    // MPLS, an 802.3 length field, and ethertype 0.
    rig.lands_in(&eth(0x8847, &[0; 46]), 1, Bucket::NonIp);
    rig.lands_in(&eth(0x002e, &[0; 46]), 1, Bucket::NonIp);
    rig.lands_in(&eth(0x0000, &[0; 46]), 1, Bucket::NonIp);
    // A bare Ethernet header of an unknown type.
    rig.lands_in(&eth(0x88cc, &[]), 1, Bucket::NonIp);
    // Behind one and two tags.
    rig.lands_in(&push_tag(&arp, ETH_P_8021Q, 5), 2, Bucket::NonIp);
    let qinq_lldp = push_tag(&push_tag(&lldp, ETH_P_8021Q, 6), ETH_P_8021AD, 7);
    rig.lands_in(&qinq_lldp, 2, Bucket::NonIp);
}

// ---------------------------------------------------------------------------
// Malformed

#[test]
fn truncated_ethernet_is_malformed() {
    let mut rig = Rig::five_tuple();
    // test_run itself refuses frames shorter than an Ethernet header.
    rig.refused(&[]);
    rig.refused(&[0xff; 13]);
    let (tagged, _) = frame4(Link::Tagged(100), UDP);
    // Ends right after the TPID, inside the tag, and one byte short of it.
    for len in [14, 16, 17] {
        rig.lands_in(&tagged[..len], 2, Bucket::Malformed);
    }
    // Ends inside the second tag of two.
    let (qinq, _) = frame6(Link::QinQ(200, 300), UDP);
    for len in [18, 20, 21] {
        rig.lands_in(&qinq[..len], 2, Bucket::Malformed);
    }
}

#[test]
fn truncated_ipv4_header_is_malformed() {
    let mut rig = Rig::five_tuple();
    let (frame, _) = frame4(Link::Untagged, UDP);
    for len in [ETH_LEN, ETH_LEN + 1, ETH_LEN + IPV4_LEN - 1] {
        rig.lands_in(&frame[..len], 2, Bucket::Malformed);
    }
    let (frame, _) = frame4(Link::QinQ(1, 2), TCP);
    let l3 = ETH_LEN + 2 * TAG_LEN;
    rig.lands_in(&frame[..l3 + IPV4_LEN - 1], 2, Bucket::Malformed);
    // The frame ends inside the options (tot_len as long as the frame).
    let mut h = v4(A4, B4);
    h.options = [1u8; 40].into();
    let (frame, _) = frame4_from(h, UDP);
    rig.lands_in(&cut4(&frame, ETH_LEN, 40), 2, Bucket::Malformed);
    rig.lands_in(&frame[..ETH_LEN + 59], 1, Bucket::Malformed);
}

#[test]
fn truncated_ipv6_header_is_malformed() {
    let mut rig = Rig::five_tuple();
    let (frame, _) = frame6(Link::Untagged, UDP);
    for len in [ETH_LEN, ETH_LEN + 1, ETH_LEN + IPV6_LEN - 1] {
        rig.lands_in(&frame[..len], 2, Bucket::Malformed);
    }
    let (frame, _) = frame6(Link::Tagged(9), UDP);
    rig.lands_in(
        &frame[..ETH_LEN + TAG_LEN + IPV6_LEN - 1],
        2,
        Bucket::Malformed,
    );
}

#[test]
fn ipv4_ihl_below_5_is_malformed() {
    let mut rig = Rig::five_tuple();
    for t in [UDP, TCP] {
        let (frame, _) = frame4(Link::Untagged, t);
        for ihl in 0..5u8 {
            let mut bad = frame.clone();
            bad[ETH_LEN] = 0x40 | ihl;
            rig.lands_in(&bad, 2, Bucket::Malformed);
        }
    }
}

#[test]
fn ip_version_must_match_the_ethertype() {
    let mut rig = Rig::five_tuple();
    let (mut frame, _) = frame4(Link::Untagged, UDP);
    frame[ETH_LEN] = 0x65;
    rig.lands_in(&frame, 2, Bucket::Malformed);
    let (mut frame, _) = frame6(Link::Untagged, UDP);
    frame[ETH_LEN] = 0x45;
    rig.lands_in(&frame, 2, Bucket::Malformed);
}

#[test]
fn ip_length_beyond_the_frame_is_malformed() {
    let mut rig = Rig::five_tuple();
    let (frame, _) = frame4(Link::Untagged, UDP);
    let tot_len = (frame.len() - ETH_LEN) as u16;
    for bad_len in [tot_len + 1, 1500, 0xffff] {
        let mut bad = frame.clone();
        set_u16(&mut bad, ETH_LEN + 2, bad_len);
        rig.lands_in(&bad, 2, Bucket::Malformed);
    }
    // tot_len shorter than the header it is in.
    for bad_len in [0, 19] {
        let mut bad = frame.clone();
        set_u16(&mut bad, ETH_LEN + 2, bad_len);
        rig.lands_in(&bad, 2, Bucket::Malformed);
    }
    let mut h = v4(A4, B4);
    h.options = [1u8; 8].into();
    let (mut bad, _) = frame4_from(h, UDP);
    set_u16(&mut bad, ETH_LEN + 2, 24);
    rig.lands_in(&bad, 2, Bucket::Malformed);
    // Tagged: the tags are not IP bytes.
    let (frame, _) = frame4(Link::QinQ(1, 2), UDP);
    let l3 = ETH_LEN + 2 * TAG_LEN;
    let mut bad = frame.clone();
    set_u16(&mut bad, l3 + 2, (frame.len() - l3 + 1) as u16);
    rig.lands_in(&bad, 2, Bucket::Malformed);

    // IPv6 payload_len beyond the frame.
    let (frame, _) = frame6(Link::Tagged(4), UDP);
    let l3 = ETH_LEN + TAG_LEN;
    let payload = (frame.len() - l3 - IPV6_LEN) as u16;
    for bad_len in [payload + 1, 0xffff] {
        let mut bad = frame.clone();
        set_u16(&mut bad, l3 + 4, bad_len);
        rig.lands_in(&bad, 2, Bucket::Malformed);
    }
}

#[test]
fn truncated_l4_header_is_malformed() {
    let mut rig = Rig::five_tuple();
    // IPv4: 7 bytes of UDP, 19 of TCP, 7 of ICMP, the frame ending there.
    let (udp, _) = frame4(Link::Untagged, UDP);
    rig.lands_in(&cut4(&udp, ETH_LEN, IPV4_LEN + 7), 2, Bucket::Malformed);
    rig.lands_in(&cut4(&udp, ETH_LEN, IPV4_LEN), 2, Bucket::Malformed);
    let (tcp, _) = frame4(Link::Tagged(8), TCP);
    rig.lands_in(
        &cut4(&tcp, ETH_LEN + TAG_LEN, IPV4_LEN + 19),
        2,
        Bucket::Malformed,
    );
    let (icmp, _) = frame4(Link::Untagged, Echo);
    rig.lands_in(&cut4(&icmp, ETH_LEN, IPV4_LEN + 7), 2, Bucket::Malformed);
    // An IPv4 first fragment (MF set, offset 0) carries the L4 header.
    let mut h = v4(A4, B4);
    h.dont_fragment = false;
    h.more_fragments = true;
    for t in [UDP, TCP] {
        let (frame, _) = frame4_from(h.clone(), t);
        rig.lands_in(&cut4(&frame, ETH_LEN, IPV4_LEN + 4), 2, Bucket::Malformed);
    }

    // IPv6: 7 bytes of UDP, 19 of TCP.
    let (udp, _) = frame6(Link::Untagged, UDP);
    rig.lands_in(&cut6(&udp, ETH_LEN, 7), 2, Bucket::Malformed);
    let (tcp, _) = frame6(Link::Untagged, TCP);
    rig.lands_in(&cut6(&tcp, ETH_LEN, 19), 2, Bucket::Malformed);
    // After a first-fragment header and after a hop-by-hop header.
    let frame = ipv6_chain(&[Ext::Fragment(0, true)], PROTO_UDP, &[0x0f, 0xa0, 0, 0x35]);
    rig.lands_in(&frame, 2, Bucket::Malformed);
    let frame = ipv6_chain(&[Ext::HopByHop(8)], PROTO_TCP, &tcp_header(1, 2)[..12]);
    rig.lands_in(&frame, 2, Bucket::Malformed);
    // The extension header itself truncated, or longer than what is left.
    let chain = ipv6_chain(&[Ext::HopByHop(8)], PROTO_UDP, &udp_l4());
    rig.lands_in(&cut6(&chain, ETH_LEN, 4), 2, Bucket::Malformed);
    let chain = ipv6_chain(&[Ext::DstOpts(8), Ext::Routing(64)], PROTO_UDP, &udp_l4());
    rig.lands_in(&cut6(&chain, ETH_LEN, 8 + 8), 2, Bucket::Malformed);
    let chain = ipv6_chain(&[Ext::Fragment(0, true)], PROTO_UDP, &udp_l4());
    rig.lands_in(&cut6(&chain, ETH_LEN, 7), 2, Bucket::Malformed);
}

#[test]
fn l4_header_cut_short_by_the_ip_length_is_malformed_despite_padding() {
    // A short IP packet in a frame padded to the Ethernet minimum: the bytes
    // after tot_len / payload_len are padding, not the rest of the L4 header.
    let mut rig = Rig::five_tuple();
    let (udp, _) = frame4(Link::Untagged, UDP);
    for l4_len in [2, 4, 7] {
        let short = cut4(&udp, ETH_LEN, IPV4_LEN + l4_len);
        rig.lands_in(&padded(&short, 60), 2, Bucket::Malformed);
    }
    let (tcp, _) = frame4(Link::Untagged, TCP);
    let short = cut4(&tcp, ETH_LEN, IPV4_LEN + 12);
    rig.lands_in(&padded(&short, 64), 2, Bucket::Malformed);
    let (icmp, _) = frame4(Link::Untagged, Echo);
    let short = cut4(&icmp, ETH_LEN, IPV4_LEN + 4);
    rig.lands_in(&padded(&short, 60), 2, Bucket::Malformed);

    let (udp, _) = frame6(Link::Untagged, UDP);
    let short = cut6(&udp, ETH_LEN, 4);
    rig.lands_in(&padded(&short, 80), 2, Bucket::Malformed);
    // An extension header running past payload_len, into the padding.
    let chain = ipv6_chain(&[Ext::HopByHop(8)], PROTO_UDP, &udp_l4());
    let short = cut6(&chain, ETH_LEN, 4);
    rig.lands_in(&padded(&short, 80), 2, Bucket::Malformed);
    // The L4 header of a fragment behind a header, past payload_len.
    let chain = ipv6_chain(&[Ext::Fragment(0, true)], PROTO_UDP, &udp_l4());
    let short = cut6(&chain, ETH_LEN, 8 + 4);
    rig.lands_in(&padded(&short, 80), 2, Bucket::Malformed);
}

#[test]
fn ethernet_padding_is_counted_in_bytes() {
    // Trailing padding is fine, and a packet's bytes are the whole frame.
    let mut rig = Rig::five_tuple();
    let ip = v4_pair();
    let frame = build(Link::Untagged, ip.clone(), UDP, &[]);
    assert_eq!(frame.len(), 42);
    rig.counted(&padded(&frame, 60), 3, want(&ip, UDP));
    rig.counted(&frame, 1, want(&ip, UDP));
    let ip = v6_pair();
    let frame = build(Link::Tagged(12), ip.clone(), Echo, &[]);
    rig.counted(&padded(&frame, 90), 2, want(&ip, Echo));
}

// ---------------------------------------------------------------------------
// The frame and the verdict

/// One of every kind of frame above, with where it must end up.
fn catalog() -> Vec<(Vec<u8>, Expect)> {
    let mut out = Vec::new();
    for link in [Link::Untagged, Link::Tagged(10), Link::QinQ(20, 30)] {
        for t in [UDP, TCP, Echo, EchoReply] {
            let (f, w) = frame4(link, t);
            out.push((f, Expect::Flow(w)));
            let (f, w) = frame6(link, t);
            out.push((f, Expect::Flow(w)));
        }
    }
    let mut h = v4(A4, B4);
    h.options = [1u8; 12].into();
    let (f, w) = frame4_from(h, TCP);
    out.push((f, Expect::Flow(w)));
    let mut h = v4(A4, B4);
    h.more_fragments = true;
    h.fragment_offset = IpFragOffset::try_new(90).expect("13-bit offset");
    let (f, w) = frame4_from(h, UDP);
    out.push((f, Expect::Flow(w.fragment())));
    let chain = [Ext::HopByHop(8), Ext::DstOpts(16), Ext::Fragment(0, true)];
    out.push((
        ipv6_chain(&chain, PROTO_UDP, &udp_l4()),
        Expect::Flow(want6(PROTO_UDP, 4000, 53)),
    ));
    let (f, _) = frame4(Link::QinQ(1, 2), UDP);
    out.push((push_tag(&f, ETH_P_8021Q, 3), Expect::In(Bucket::NonIp)));
    out.push((arp(), Expect::In(Bucket::NonIp)));
    let (f, _) = frame4(Link::Tagged(1), UDP);
    out.push((f[..16].to_vec(), Expect::In(Bucket::Malformed)));
    let (mut f, _) = frame4(Link::Untagged, UDP);
    f[ETH_LEN] = 0x44;
    out.push((f, Expect::In(Bucket::Malformed)));
    out.push((
        ipv6_chain(&[Ext::DstOpts(8); 9], PROTO_UDP, &udp_l4()),
        Expect::In(Bucket::Malformed),
    ));
    out
}

#[test]
fn frames_are_never_modified_and_always_pass() {
    // Rig::run checks retval == XDP_PASS and data_out == frame on every run.
    let mut rig = Rig::five_tuple();
    for (i, (frame, expect)) in catalog().into_iter().enumerate() {
        let repeat = i as u32 % 10 + 1;
        rig.run(&frame, repeat, expect);
    }
    // The same frames again: the same keys grow.
    for (frame, expect) in catalog() {
        rig.run(&frame, 1, expect);
    }
}

// ---------------------------------------------------------------------------
// Map full

#[test]
fn map_full_sends_new_keys_to_map_full() {
    let mut rig = Rig::new(LedgerConfig {
        max_flows: 4,
        strategy: Strategy::Lock,
        ..Default::default()
    });
    let flows: Vec<(Vec<u8>, Want)> = (0..10)
        .map(|i| frame4(Link::Untagged, Udp(5000 + i, 53)))
        .collect();
    for (i, (frame, w)) in flows.iter().enumerate() {
        if i < 4 {
            rig.counted(frame, 3, *w);
        } else {
            rig.lands_in(frame, 3, Bucket::MapFull);
        }
    }
    let snap = rig.snapshot();
    assert_eq!(snap.flows.len(), 4, "exactly max_flows flows");
    let len = flows[0].0.len() as u64;
    assert!(flows.iter().all(|(f, _)| f.len() as u64 == len));
    let full = snap.buckets.get(Bucket::MapFull);
    assert_eq!(full.packets, 18, "6 keys x 3 packets in map_full");
    assert_eq!(full.bytes, 18 * len, "and their bytes");
    assert!(snap.buckets.conserved());

    // Keys already in the map still count; new ones still do not.
    rig.counted(&flows[2].0, 2, flows[2].1);
    rig.lands_in(&flows[9].0, 1, Bucket::MapFull);
    let (v6, _) = frame6(Link::Untagged, UDP);
    rig.lands_in(&v6, 1, Bucket::MapFull);
    assert_eq!(rig.config().max_flows, 4);
}
