//! The crafted frames of the parser tests: builders (etherparse where it
//! can, bytes where it cannot), the key a test expects for each ([`Want`]),
//! where its packets must end up ([`Expect`]), and the catalog of one frame
//! of every kind. The XDP tests (`parse.rs`) and the tc tests (`tc.rs`) run
//! the same frames.

use std::fmt;
use std::net::{IpAddr, Ipv6Addr};

use etherparse::{
    EtherType, IpFragOffset, IpHeaders, IpNumber, Ipv4Extensions, Ipv4Header, Ipv6Extensions,
    Ipv6FragmentHeader, Ipv6Header, Ipv6RawExtHeader, Ipv6RoutingExtensions, PacketBuilder,
    SingleVlanHeader, VlanHeader, VlanId, VlanPcp,
};
use netledger::{Bucket, FlowKey, KeyMode, L4};

pub use super::{arp, A4, A6, B4, B6};
use super::{MAC_DST, MAC_SRC};
pub use Transport::{Echo, EchoReply, Tcp, Udp};

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

pub fn mask(ip: IpAddr, len: u8) -> IpAddr {
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
    pub fn differences(&self, other: &Want) -> Vec<String> {
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

// ---------------------------------------------------------------------------
// Builders

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
            (Transport::Udp(src, dst), _) | (Transport::Tcp(src, dst), _) => L4::Ports { src, dst },
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
        IpHeaders::Ipv4(h, _) => Want::flow(h.source, h.destination, t.proto(false), t.l4(false)),
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

// ---------------------------------------------------------------------------
// Shorthands

pub const UDP: Transport = Udp(4000, 53);
pub const TCP: Transport = Tcp(40000, 443);

pub fn v4_pair() -> IpHeaders {
    ip4(v4(A4, B4))
}

pub fn v6_pair() -> IpHeaders {
    ip6(v6(A6, B6), Ipv6Extensions::default())
}

/// An IPv4 frame and its five-tuple key.
pub fn frame4(link: Link, t: Transport) -> (Vec<u8>, Want) {
    let ip = v4_pair();
    (build(link, ip.clone(), t, PAYLOAD), want(&ip, t))
}

/// An IPv6 frame (no extension headers) and its five-tuple key.
pub fn frame6(link: Link, t: Transport) -> (Vec<u8>, Want) {
    let ip = v6_pair();
    (build(link, ip.clone(), t, PAYLOAD), want(&ip, t))
}

/// An IPv6 frame with etherparse extension headers, and its five-tuple key.
pub fn frame6_with(exts: Ipv6Extensions, t: Transport) -> (Vec<u8>, Want) {
    let ip = ip6(v6(A6, B6), exts);
    (build(Link::Untagged, ip.clone(), t, PAYLOAD), want(&ip, t))
}

/// An IPv4 frame with this header (fragment fields, options) and its five-tuple key.
pub fn frame4_from(h: Ipv4Header, t: Transport) -> (Vec<u8>, Want) {
    let ip = ip4(h);
    (build(Link::Untagged, ip.clone(), t, PAYLOAD), want(&ip, t))
}

/// The key of A6 > B6 `proto` with ports (hand-built IPv6 frames).
pub fn want6(proto: u8, sport: u16, dport: u16) -> Want {
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
pub fn udp_l4() -> Vec<u8> {
    let mut l4 = udp_header(4000, 53, PAYLOAD.len());
    l4.extend_from_slice(PAYLOAD);
    l4
}

/// Cut an IPv4 packet at `l3` to `len` bytes of IP, with tot_len saying so.
pub fn cut4(frame: &[u8], l3: usize, len: usize) -> Vec<u8> {
    let mut f = frame[..l3 + len].to_vec();
    set_u16(&mut f, l3 + 2, len as u16);
    f
}

/// Cut an IPv6 packet at `l3` to `payload` bytes after the fixed header,
/// with payload_len saying so.
pub fn cut6(frame: &[u8], l3: usize, payload: usize) -> Vec<u8> {
    let mut f = frame[..l3 + IPV6_LEN + payload].to_vec();
    set_u16(&mut f, l3 + 4, payload as u16);
    f
}

/// Ethernet padding: zeros up to `len` bytes of frame.
pub fn padded(frame: &[u8], len: usize) -> Vec<u8> {
    assert!(frame.len() <= len);
    let mut f = frame.to_vec();
    f.resize(len, 0);
    f
}

pub fn octets6(s: &str) -> [u8; 16] {
    s.parse::<Ipv6Addr>().expect("an IPv6 address").octets()
}

// ---------------------------------------------------------------------------
// The catalog

/// One of every kind of frame above, with where it must end up.
pub fn catalog() -> Vec<(Vec<u8>, Expect)> {
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
