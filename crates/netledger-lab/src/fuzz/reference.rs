//! Reference classifier: what netledger's data path must do with one received frame.
//!
//! Given a whole L2 frame (Ethernet header first) and the ledger's configuration, [`classify`] says
//! whether the frame is counted under a flow key, or lands in the `non_ip` or `malformed`
//! conservation bucket, and if counted, under which key. It is written from netledger's
//! documentation (the data path's parsing and key shaping, the meaning of `--key`, `--vlan`,
//! `--prefix4`, `--prefix6` and of a JSON key) and the protocol RFCs, and shares nothing with the BPF
//! parser, so that the two can be compared frame by frame. `map_full` and `evict_race` depend on the
//! flow map's state, not on the frame, and are no outcome of this classifier.
//!
//! # The rules
//!
//! This list is the specification; each rule has tests below that fail if it is broken. "Offset"
//! means a byte offset into the frame; all multi-byte fields are big-endian (network order).
//!
//! 1. **Bytes.** Every frame is accounted with its whole length, `frame.len()` (Ethernet header,
//!    VLAN tags, IP datagram and any Ethernet padding after it), whatever its bucket.
//! 2. **Ethernet.** A frame shorter than the 14-byte Ethernet header is `malformed` (a truncated
//!    header). The MAC addresses are not looked at; the EtherType is at offset 12.
//! 3. **VLAN tags.** An EtherType of 0x8100 or 0x88A8, in either position and any combination, is a
//!    4-byte tag (TCI, then the next EtherType). Up to two tags are stripped. A tag that does not fit
//!    whole in the frame is `malformed`. The key's VLAN id is the 12-bit VID of the outer (first)
//!    tag; PCP and DEI are ignored, and VID values are taken as they are (VID 0, a priority tag,
//!    gives the same VLAN id as an untagged frame: 0; VID 4095 is 4095). No other TPID (0x9100,
//!    0x9200, ...) is a tag: such an EtherType is simply not IP (rule 5).
//! 4. **Third tag.** If the EtherType after two tags is again 0x8100 or 0x88A8, the frame is
//!    `non_ip`, whether or not that third tag is whole.
//! 5. **Network protocol.** After the tags, EtherType 0x0800 is IPv4 and 0x86DD is IPv6. Any other
//!    value (ARP, MPLS, PPPoE, LLDP, an 802.3 length below 0x0600 even with LLC/SNAP carrying IP,
//!    ...) is `non_ip`. No encapsulation is unwrapped.
//! 6. **IP version.** The version nibble must agree with the EtherType (4 for 0x0800, 6 for
//!    0x86DD); a disagreement is `malformed` (an inconsistent header).
//! 7. **IPv4 header.** At least 20 bytes must follow the L2 headers, IHL must be >= 5, and the
//!    IHL * 4 header must lie inside the frame; else `malformed`. Options are skipped unread; the
//!    header checksum, TTL, DSCP/ECN, identification and the addresses are not validated.
//! 8. **IPv4 total length.** `IHL * 4 <= total length <= frame.len() - (offset of the IP header)`,
//!    else `malformed`. Bytes after the total length are Ethernet padding and are never read.
//! 9. **IPv4 fragments.** A fragment offset (13 bits) other than 0 makes a non-first fragment: it
//!    is keyed by addresses and protocol with the fragment flag, nothing after the IP header is
//!    read or required, whatever the protocol. Offset 0 is parsed exactly like an unfragmented
//!    datagram (ports, no flag), so the first fragment of a flow shares the key of its unfragmented
//!    packets. The flag bits (reserved, DF, MF) are not looked at.
//! 10. **IPv6 header.** The 40-byte header must lie inside the frame and `40 + payload length`
//!     must not exceed `frame.len() - (offset of the IP header)`, else `malformed`. Bytes beyond
//!     are Ethernet padding and are never read. Payload length 0 declares a payload that runs to
//!     the end of the frame (a jumbogram, or a GRO packet beyond 64 KiB at tc): the datagram is
//!     then the rest of the frame, padding included. Traffic class, flow label and hop limit are
//!     ignored.
//! 11. **IPv6 extension headers.** Next Header 0 (hop-by-hop), 43 (routing), 44 (fragment) and 60
//!     (destination options) are walked; any other value ends the walk and is the protocol
//!     (including AH 51, ESP 50, Mobility 135, HIP 139, Shim6 140, 253/254 and No Next Header 59,
//!     all "other protocols", rule 16). Hop-by-hop, routing and destination options are
//!     `(byte 1 + 1) * 8` bytes long; a fragment header is 8 bytes. Each walked header must lie
//!     whole inside the declared payload, else `malformed`. Order and repetition are not checked
//!     (a hop-by-hop header may come anywhere, any header may repeat) and contents (options,
//!     routing type, segments left, reserved fields, identification) are not interpreted.
//! 12. **Chain bound.** At most 8 extension headers are walked. If the Next Header after the 8th is
//!     still one of the four, the chain is over-long and the frame `malformed`, even if that 9th
//!     header would be a non-first fragment header. 8 headers then an upper-layer protocol is fine.
//! 13. **IPv6 fragments.** A fragment header with an offset other than 0 ends the walk: the packet
//!     is a non-first fragment, keyed by addresses, the fragment header's Next Header as the
//!     protocol (whatever its value) and the fragment flag; nothing after it is read or required.
//!     Offset 0 (a first fragment, or an atomic fragment with M = 0) does not end the walk: the
//!     packet is parsed as unfragmented (ports, no flag).
//! 14. **L4 headers.** After an unfragmented or first-fragment IP header (and the IPv6 chain), TCP
//!     (6) needs 20 bytes, UDP (17) and UDP-Lite (136) 8, SCTP (132) 12: they give the source and
//!     destination ports (the first four bytes). ICMP (1) in IPv4 and ICMPv6 (58) in IPv6 need 8
//!     bytes and give type and code (bytes 0 and 1). The header must fit between its start and the
//!     end of the datagram as the IP header declares it (total length, or 40 + payload length),
//!     else `malformed`: padding is never a port. Nothing inside these headers is validated (TCP data
//!     offset and flags, UDP length, checksums, SCTP verification tag, the rest of ICMP).
//! 15. **ICMP by family.** Protocol 1 in IPv6 and protocol 58 in IPv4 are not ICMP of that family:
//!     they are "other protocols" (no type and code, no L4 bytes needed).
//! 16. **Other protocols.** Any other protocol is keyed by addresses and protocol with no L4
//!     fields and needs no byte after the IP header(s). Tunnels (IPIP 4, IPv6 41, GRE 47, ...) are
//!     not unwrapped: the outer addresses are the key.
//! 17. **Mode-independent parsing.** The bucket of a frame does not depend on the configuration:
//!     a truncated TCP header is `malformed` in `src-ip` mode too. The configuration only shapes
//!     the key (rules 18 to 20).
//! 18. **Key shaping.** `src-ip` keeps the source address, `dst-ip` the destination address,
//!     `ip-pair` both, `five-tuple` both plus protocol, ports or ICMP type and code, and the
//!     fragment flag. Every field outside the mode is zero (the fragment flag is part of the key in
//!     `five-tuple` only: in the other modes a fragment joins its flow's other packets). The family
//!     (4 or 6) is always kept, so an IPv4 key never equals an IPv6 key.
//! 19. **VLAN in the key.** With `vlan` on, the key holds the outer VLAN id (0 for an untagged frame,
//!     rule 3); with it off, no VLAN id (`None`), so frames of every VLAN share keys.
//! 20. **Prefixes.** `prefix4` keeps the leading N bits of both IPv4 addresses in the key and zeroes
//!     the rest, `prefix6` likewise for IPv6; `None` keeps the whole address; /0 zeroes it. IPv4
//!     addresses are the first four bytes of the 16-byte fields, the other twelve are zero.
//!     [`Config::validate`] refuses prefixes beyond 32 and 128 (as the command line does);
//!     [`classify`] treats such a value as the full length.
//! 21. **First buffer.** Fields are read only from the frame's first buffer: its first `head`
//!     bytes, the whole frame unless the hook gets it in pieces (an XDP multi-buffer frame, a
//!     non-linear skb at tc; [`classify_in`] takes `head`, [`classify`] reads the whole frame).
//!     Every header a field is read from must lie whole in it: the Ethernet header, each VLAN tag
//!     (rule 3), the IPv4 header with its options (rule 7), the 40-byte IPv6 header, the first 8
//!     bytes of each walked extension header (rule 11: its Next Header and length; a fragment
//!     header is 8 bytes), and the L4 bytes of rule 14. One that does not is `malformed`, like a
//!     truncated header. Lengths (rules 8, 10, 11 and 14) are still checked against the whole
//!     frame and the declared datagram, and the whole frame is accounted (rule 1).
//!
//! netledger's documentation states the skeleton of these rules (two tags of either TPID, IHL >= 5,
//! total length between header and frame, payload length inside the frame, at most 8 extension
//! headers of the four kinds, ports only from a first fragment, the L4 lengths, padding never a
//! port, `non_ip` and `malformed`, the key's fields per mode, prefixes). It leaves open what rules
//! 2, 3 (a truncated tag, VID 0, other TPIDs), 4 (an incomplete third tag), 6, 9 (the first
//! fragment's flag), 11 (AH and the other extension headers, order, the declared payload as the
//! bound), 12 (a 9th header that is a fragment header), 13 (the protocol of a non-first fragment,
//! atomic fragments), 14 (no check of L4 contents), 17 and 18 (the fragment flag outside
//! `five-tuple`, the family) settle: where netledger and this classifier disagree on such a point,
//! one of the two is to change.
//!
//! Differential fuzzing (`tests/fuzz.rs`) found three points where the two disagreed; each is now
//! settled in netledger's documentation (docs/ARCHITECTURE.md, "The data path") and followed here:
//! rule 10 (payload length 0 was read here as an empty payload; the data path reads it as a
//! jumbogram's, and the documentation now says so), rule 15 (the data path read type and code of
//! ICMP of the other family; it was fixed, and the documentation says which ICMP is whose) and rule
//! 21 (the data path reads only the first buffer of a frame; the documentation now says so).

use std::collections::BTreeMap;
use std::fmt;
use std::net::{Ipv4Addr, Ipv6Addr};

/// Length of the Ethernet header (two MAC addresses and the EtherType).
pub const ETH_HLEN: usize = 14;
/// Length of one VLAN tag (TCI and the next EtherType).
pub const VLAN_HLEN: usize = 4;
/// How many VLAN tags are stripped; one more makes the frame `non_ip` (rule 4).
pub const MAX_VLAN_TAGS: usize = 2;
/// How many IPv6 extension headers are walked (rule 12).
pub const MAX_IPV6_EXT: usize = 8;

/// EtherType of IPv4.
pub const ETH_P_IPV4: u16 = 0x0800;
/// EtherType of IPv6.
pub const ETH_P_IPV6: u16 = 0x86dd;
/// TPID of an 802.1Q tag.
pub const ETH_P_8021Q: u16 = 0x8100;
/// TPID of an 802.1ad (service) tag.
pub const ETH_P_8021AD: u16 = 0x88a8;

/// IPv6 hop-by-hop options header.
pub const IPPROTO_HOPOPTS: u8 = 0;
/// ICMP (IPv4).
pub const IPPROTO_ICMP: u8 = 1;
/// TCP.
pub const IPPROTO_TCP: u8 = 6;
/// UDP.
pub const IPPROTO_UDP: u8 = 17;
/// IPv6 routing header.
pub const IPPROTO_ROUTING: u8 = 43;
/// IPv6 fragment header.
pub const IPPROTO_FRAGMENT: u8 = 44;
/// ICMPv6.
pub const IPPROTO_ICMPV6: u8 = 58;
/// IPv6 "no next header".
pub const IPPROTO_NONE: u8 = 59;
/// IPv6 destination options header.
pub const IPPROTO_DSTOPTS: u8 = 60;
/// SCTP.
pub const IPPROTO_SCTP: u8 = 132;
/// UDP-Lite.
pub const IPPROTO_UDPLITE: u8 = 136;

/// What a flow is (`--key`): the ledger's own setting. It only selects;
/// what each mode keeps is decided here, by [`keeps_src`] and [`keeps_dst`].
pub use netledger::KeyMode;

/// Whether a key of `mode` holds the source address.
fn keeps_src(mode: KeyMode) -> bool {
    matches!(mode, KeyMode::SrcIp | KeyMode::IpPair | KeyMode::FiveTuple)
}

/// Whether a key of `mode` holds the destination address.
fn keeps_dst(mode: KeyMode) -> bool {
    matches!(mode, KeyMode::DstIp | KeyMode::IpPair | KeyMode::FiveTuple)
}

/// The parts of the ledger's configuration that decide a frame's key.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct Config {
    /// `--key`.
    pub mode: KeyMode,
    /// `--vlan`: the outer VLAN id is part of the key.
    pub vlan: bool,
    /// `--prefix4 N`: IPv4 addresses are aggregated to /N.
    pub prefix4: Option<u8>,
    /// `--prefix6 N`: IPv6 addresses are aggregated to /N.
    pub prefix6: Option<u8>,
}

impl Config {
    /// A configuration of the given mode, no VLAN, no prefixes.
    pub fn new(mode: KeyMode) -> Config {
        Config {
            mode,
            ..Config::default()
        }
    }

    /// Refuses what the command line refuses: a prefix longer than its family's addresses.
    pub fn validate(&self) -> Result<(), String> {
        if let Some(p) = self.prefix4.filter(|&p| p > 32) {
            return Err(format!("prefix4 {p} is longer than 32"));
        }
        if let Some(p) = self.prefix6.filter(|&p| p > 128) {
            return Err(format!("prefix6 {p} is longer than 128"));
        }
        Ok(())
    }
}

/// The conservation bucket a frame lands in, as far as parsing decides it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Bucket {
    /// Counted under a flow key.
    Counted,
    /// Neither IPv4 nor IPv6, or a third VLAN tag.
    NonIp,
    /// Truncated or inconsistent headers, or an over-long IPv6 extension chain.
    Malformed,
}

impl Bucket {
    /// Every bucket a parser can choose.
    pub const ALL: [Bucket; 3] = [Bucket::Counted, Bucket::NonIp, Bucket::Malformed];

    /// The bucket's name in netledger's output.
    pub fn name(self) -> &'static str {
        match self {
            Bucket::Counted => "counted",
            Bucket::NonIp => "non_ip",
            Bucket::Malformed => "malformed",
        }
    }
}

impl fmt::Display for Bucket {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// The IP version of a key.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Family {
    /// IPv4: addresses in the first four bytes of the address fields.
    V4 = 4,
    /// IPv6.
    V6 = 6,
}

impl Family {
    /// The address length in bits, the longest prefix.
    pub fn bits(self) -> u8 {
        match self {
            Family::V4 => 32,
            Family::V6 => 128,
        }
    }
}

/// What a key holds of the L4 header.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum L4 {
    /// Nothing: another protocol, a non-first fragment, or a mode without ports.
    None,
    /// TCP, UDP, UDP-Lite or SCTP ports.
    Ports {
        /// Source port.
        sport: u16,
        /// Destination port.
        dport: u16,
    },
    /// ICMP (in IPv4) or ICMPv6 (in IPv6) type and code.
    Icmp {
        /// ICMP type.
        icmp_type: u8,
        /// ICMP code.
        icmp_code: u8,
    },
}

/// A flow key, shaped to its mode: fields outside the mode are zero.
///
/// `mode` and `prefix` say how it was shaped; they are the same for every key of one ledger and are
/// carried so that [`Display`](fmt::Display) prints the key as netledger's JSON lines do.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Key {
    /// IPv4 or IPv6 (kept in every mode).
    pub family: Family,
    /// Source address, prefix-masked; IPv4 in the first four bytes; zero outside the mode.
    pub src: [u8; 16],
    /// Destination address, likewise.
    pub dst: [u8; 16],
    /// IP protocol (`five-tuple` only, else 0); for IPv6 the upper-layer protocol after the chain.
    pub proto: u8,
    /// Ports, ICMP type/code or nothing (`five-tuple` only, else `None`).
    pub l4: L4,
    /// A non-first fragment (`five-tuple` only, else false).
    pub fragment: bool,
    /// The outer VLAN id (0 when untagged) with `vlan` on; `None` with it off.
    pub vlan: Option<u16>,
    /// The mode the key was shaped to.
    pub mode: KeyMode,
    /// The prefix configured for this key's family, if any.
    pub prefix: Option<u8>,
}

impl Key {
    /// The source address (meaningful only in modes that keep it).
    pub fn src_addr(&self) -> std::net::IpAddr {
        addr(self.family, &self.src)
    }

    /// The destination address (meaningful only in modes that keep it).
    pub fn dst_addr(&self) -> std::net::IpAddr {
        addr(self.family, &self.dst)
    }
}

fn addr(family: Family, a: &[u8; 16]) -> std::net::IpAddr {
    match family {
        Family::V4 => Ipv4Addr::new(a[0], a[1], a[2], a[3]).into(),
        Family::V6 => Ipv6Addr::from(*a).into(),
    }
}

/// A protocol as netledger's JSON names it: a name for the five it knows, else the number.
pub fn proto_name(proto: u8) -> Option<&'static str> {
    match proto {
        IPPROTO_TCP => Some("tcp"),
        IPPROTO_UDP => Some("udp"),
        IPPROTO_ICMP => Some("icmp"),
        IPPROTO_ICMPV6 => Some("icmpv6"),
        IPPROTO_SCTP => Some("sctp"),
        _ => None,
    }
}

/// Prints the key like the `key` object of netledger's JSON lines: only the mode's fields, a
/// prefix as `/N`, and `"fragment":true` for a non-first fragment (so distinct keys print
/// distinctly).
impl fmt::Display for Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut sep = "{";
        let mut field = |f: &mut fmt::Formatter<'_>, name: &str, value: String| {
            let r = write!(f, "{sep}\"{name}\":{value}");
            sep = ",";
            r
        };
        let prefix = self.prefix.map(|p| format!("/{p}")).unwrap_or_default();
        if keeps_src(self.mode) {
            field(f, "src", format!("\"{}{prefix}\"", self.src_addr()))?;
        }
        if keeps_dst(self.mode) {
            field(f, "dst", format!("\"{}{prefix}\"", self.dst_addr()))?;
        }
        if self.mode == KeyMode::FiveTuple {
            let proto = match proto_name(self.proto) {
                Some(name) => format!("\"{name}\""),
                None => self.proto.to_string(),
            };
            field(f, "proto", proto)?;
            match self.l4 {
                L4::None => {}
                L4::Ports { sport, dport } => {
                    field(f, "sport", sport.to_string())?;
                    field(f, "dport", dport.to_string())?;
                }
                L4::Icmp {
                    icmp_type,
                    icmp_code,
                } => {
                    field(f, "icmp_type", icmp_type.to_string())?;
                    field(f, "icmp_code", icmp_code.to_string())?;
                }
            }
            if self.fragment {
                field(f, "fragment", "true".to_string())?;
            }
        }
        if let Some(vlan) = self.vlan {
            field(f, "vlan", vlan.to_string())?;
        }
        f.write_str("}")
    }
}

/// What happens to one frame.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Outcome {
    /// Counted under this key.
    Counted(Key),
    /// The `non_ip` bucket.
    NonIp,
    /// The `malformed` bucket.
    Malformed,
}

impl Outcome {
    /// The frame's bucket.
    pub fn bucket(&self) -> Bucket {
        match self {
            Outcome::Counted(_) => Bucket::Counted,
            Outcome::NonIp => Bucket::NonIp,
            Outcome::Malformed => Bucket::Malformed,
        }
    }

    /// The key, when counted.
    pub fn key(&self) -> Option<&Key> {
        match self {
            Outcome::Counted(key) => Some(key),
            _ => None,
        }
    }
}

/// Classifies one whole L2 frame (Ethernet header first) under `cfg`: the rules above, with the
/// whole frame in its first buffer (rule 21).
pub fn classify(frame: &[u8], cfg: &Config) -> Outcome {
    classify_in(frame, frame.len(), cfg)
}

/// Classifies one whole L2 frame of which only the first `head` bytes are in the first buffer
/// (rule 21; a `head` beyond the frame is the whole frame).
pub fn classify_in(frame: &[u8], head: usize, cfg: &Config) -> Outcome {
    match parse(frame, head.min(frame.len())) {
        Ok(flow) => Outcome::Counted(shape(&flow, cfg)),
        Err(Bucket::NonIp) => Outcome::NonIp,
        Err(_) => Outcome::Malformed,
    }
}

/// Everything a frame can contribute to a key, before shaping (rules 2 to 16).
struct Flow {
    family: Family,
    src: [u8; 16],
    dst: [u8; 16],
    proto: u8,
    l4: L4,
    fragment: bool,
    vlan: u16,
}

fn be16(b: &[u8], at: usize) -> u16 {
    u16::from_be_bytes([b[at], b[at + 1]])
}

fn is_tpid(ethertype: u16) -> bool {
    ethertype == ETH_P_8021Q || ethertype == ETH_P_8021AD
}

/// Parses L2 and dispatches to the IP parsers; the error is the bucket. Fields are read from the
/// first `head` bytes only (rule 21).
fn parse(frame: &[u8], head: usize) -> Result<Flow, Bucket> {
    if head < ETH_HLEN {
        return Err(Bucket::Malformed);
    }
    let mut ethertype = be16(frame, 12);
    let mut off = ETH_HLEN;
    let mut vlan = 0;
    let mut tags = 0;
    while is_tpid(ethertype) {
        // The third TPID is decided on sight, before its tag is needed (rule 4).
        if tags == MAX_VLAN_TAGS {
            return Err(Bucket::NonIp);
        }
        if head < off + VLAN_HLEN {
            return Err(Bucket::Malformed);
        }
        if tags == 0 {
            vlan = be16(frame, off) & 0x0fff;
        }
        ethertype = be16(frame, off + 2);
        off += VLAN_HLEN;
        tags += 1;
    }
    let ip = &frame[off..];
    let readable = head - off;
    match ethertype {
        ETH_P_IPV4 => ipv4(ip, readable, vlan),
        ETH_P_IPV6 => ipv6(ip, readable, vlan),
        _ => Err(Bucket::NonIp),
    }
}

/// Rules 6 to 9; `ip` runs from the IPv4 header to the end of the frame, of which the first
/// `readable` bytes are in the first buffer (rule 21).
fn ipv4(ip: &[u8], readable: usize, vlan: u16) -> Result<Flow, Bucket> {
    if readable < 20 || ip[0] >> 4 != 4 {
        return Err(Bucket::Malformed);
    }
    let hlen = usize::from(ip[0] & 0x0f) * 4;
    if hlen < 20 || hlen > readable {
        return Err(Bucket::Malformed);
    }
    let tot_len = usize::from(be16(ip, 2));
    if tot_len < hlen || tot_len > ip.len() {
        return Err(Bucket::Malformed);
    }
    let proto = ip[9];
    let mut flow = Flow {
        family: Family::V4,
        src: [0; 16],
        dst: [0; 16],
        proto,
        l4: L4::None,
        fragment: false,
        vlan,
    };
    flow.src[..4].copy_from_slice(&ip[12..16]);
    flow.dst[..4].copy_from_slice(&ip[16..20]);
    if be16(ip, 6) & 0x1fff != 0 {
        flow.fragment = true;
        return Ok(flow);
    }
    flow.l4 = transport(Family::V4, proto, &ip[hlen..tot_len], readable - hlen)?;
    Ok(flow)
}

/// Rules 6 and 10 to 13; `ip` runs from the IPv6 header to the end of the frame, of which the
/// first `readable` bytes are in the first buffer (rule 21).
fn ipv6(ip: &[u8], readable: usize, vlan: u16) -> Result<Flow, Bucket> {
    if readable < 40 || ip[0] >> 4 != 6 {
        return Err(Bucket::Malformed);
    }
    // Payload length 0: the payload runs to the end of the frame (rule 10).
    let end = match be16(ip, 4) {
        0 => ip.len(),
        plen => 40 + usize::from(plen),
    };
    if end > ip.len() {
        return Err(Bucket::Malformed);
    }
    // From here on only the declared datagram exists: padding is never read.
    let dgram = &ip[..end];
    let mut flow = Flow {
        family: Family::V6,
        src: ip[8..24].try_into().expect("16 bytes"),
        dst: ip[24..40].try_into().expect("16 bytes"),
        proto: 0,
        l4: L4::None,
        fragment: false,
        vlan,
    };
    let mut next = ip[6];
    let mut at = 40;
    let mut walked = 0;
    while matches!(
        next,
        IPPROTO_HOPOPTS | IPPROTO_ROUTING | IPPROTO_FRAGMENT | IPPROTO_DSTOPTS
    ) {
        if walked == MAX_IPV6_EXT {
            return Err(Bucket::Malformed);
        }
        // Every extension header is at least 8 bytes: Next Header, length, and 6 more. Those 8
        // are read, so they must be in the first buffer (rule 21).
        if dgram.len() - at < 8 || readable < at + 8 {
            return Err(Bucket::Malformed);
        }
        let this = next;
        next = dgram[at];
        walked += 1;
        if this == IPPROTO_FRAGMENT {
            let offset = be16(dgram, at + 2) >> 3;
            at += 8;
            if offset != 0 {
                flow.proto = next;
                flow.fragment = true;
                return Ok(flow);
            }
        } else {
            let len = (usize::from(dgram[at + 1]) + 1) * 8;
            if dgram.len() - at < len {
                return Err(Bucket::Malformed);
            }
            at += len;
        }
    }
    flow.proto = next;
    flow.l4 = transport(Family::V6, next, &dgram[at..], readable.saturating_sub(at))?;
    Ok(flow)
}

/// Rules 14 to 16; `l4` runs from the end of the IP headers to the declared end of the datagram,
/// of which the first `readable` bytes are in the first buffer (rule 21).
fn transport(family: Family, proto: u8, l4: &[u8], readable: usize) -> Result<L4, Bucket> {
    let need = match (proto, family) {
        (IPPROTO_TCP, _) => 20,
        (IPPROTO_UDP | IPPROTO_UDPLITE, _) => 8,
        (IPPROTO_SCTP, _) => 12,
        (IPPROTO_ICMP, Family::V4) | (IPPROTO_ICMPV6, Family::V6) => 8,
        _ => return Ok(L4::None),
    };
    if l4.len() < need || readable < need {
        return Err(Bucket::Malformed);
    }
    Ok(match proto {
        IPPROTO_ICMP | IPPROTO_ICMPV6 => L4::Icmp {
            icmp_type: l4[0],
            icmp_code: l4[1],
        },
        _ => L4::Ports {
            sport: be16(l4, 0),
            dport: be16(l4, 2),
        },
    })
}

/// Keeps the leading `bits` bits of an address.
fn mask(mut a: [u8; 16], bits: u8) -> [u8; 16] {
    for (i, byte) in a.iter_mut().enumerate() {
        let keep = usize::from(bits).saturating_sub(i * 8).min(8);
        // A shift by 8 would overflow a u8: a byte with nothing kept is cleared outright.
        *byte &= if keep == 0 { 0 } else { 0xffu8 << (8 - keep) };
    }
    a
}

/// Rules 18 to 20.
fn shape(flow: &Flow, cfg: &Config) -> Key {
    let prefix = match flow.family {
        Family::V4 => cfg.prefix4,
        Family::V6 => cfg.prefix6,
    };
    let bits = prefix.map_or(flow.family.bits(), |p| p.min(flow.family.bits()));
    let five = cfg.mode == KeyMode::FiveTuple;
    Key {
        family: flow.family,
        src: if keeps_src(cfg.mode) {
            mask(flow.src, bits)
        } else {
            [0; 16]
        },
        dst: if keeps_dst(cfg.mode) {
            mask(flow.dst, bits)
        } else {
            [0; 16]
        },
        proto: if five { flow.proto } else { 0 },
        l4: if five { flow.l4 } else { L4::None },
        fragment: five && flow.fragment,
        vlan: cfg.vlan.then_some(flow.vlan),
        mode: cfg.mode,
        prefix,
    }
}

/// Packets and bytes.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct Count {
    /// Frames.
    pub packets: u64,
    /// Their L2 lengths.
    pub bytes: u64,
}

impl Count {
    fn add(&mut self, bytes: usize) {
        self.packets += 1;
        self.bytes += bytes as u64;
    }
}

/// What a ledger should hold after a sequence of frames: per key and per bucket, plus `seen`.
///
/// This is the side of a differential comparison that the real program's counts are held against.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Tally {
    /// The configuration frames are classified under.
    pub cfg: Config,
    /// Every frame.
    pub seen: Count,
    /// Per bucket, in [`Bucket::ALL`] order.
    pub buckets: [Count; 3],
    /// Per key (the `counted` bucket, split).
    pub flows: BTreeMap<Key, Count>,
}

impl Tally {
    /// An empty tally under `cfg`.
    pub fn new(cfg: Config) -> Tally {
        Tally {
            cfg,
            ..Tally::default()
        }
    }

    /// Accounts one frame (rule 1) and returns its outcome.
    pub fn add(&mut self, frame: &[u8]) -> Outcome {
        self.add_in(frame, frame.len())
    }

    /// Accounts one frame whose first buffer holds its first `head` bytes (rule 21).
    pub fn add_in(&mut self, frame: &[u8], head: usize) -> Outcome {
        let outcome = classify_in(frame, head, &self.cfg);
        self.seen.add(frame.len());
        let bucket = outcome.bucket();
        self.buckets[bucket as usize].add(frame.len());
        if let Outcome::Counted(key) = outcome {
            self.flows.entry(key).or_default().add(frame.len());
        }
        outcome
    }

    /// One bucket's count.
    pub fn bucket(&self, bucket: Bucket) -> Count {
        self.buckets[bucket as usize]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // ---- frame building, by hand, byte by byte -------------------------------------------------

    const SRC4: [u8; 4] = [10, 1, 2, 3];
    const DST4: [u8; 4] = [192, 168, 200, 77];
    const SRC6: [u8; 16] = [
        0x20, 0x01, 0x0d, 0xb8, 0xaa, 0xbb, 0xcc, 0xdd, 0x11, 0x22, 0x33, 0x44, 0x55, 0x66, 0x77,
        0x88,
    ];
    const DST6: [u8; 16] = [
        0xfd, 0x00, 0x12, 0x34, 0x56, 0x78, 0x9a, 0xbc, 0xde, 0xf0, 0x01, 0x02, 0x03, 0x04, 0x05,
        0x06,
    ];

    /// An Ethernet header with the given tags (TPID, TCI) and final EtherType.
    fn eth(tags: &[(u16, u16)], ethertype: u16) -> Vec<u8> {
        let mut f = vec![0x02, 0, 0, 0, 0, 1, 0x02, 0, 0, 0, 0, 2];
        for &(tpid, tci) in tags {
            f.extend(tpid.to_be_bytes());
            f.extend(tci.to_be_bytes());
        }
        f.extend(ethertype.to_be_bytes());
        f
    }

    /// An IPv4 header of `ihl` words (options filled with NOPs) with an exact total length.
    fn ipv4_hdr(proto: u8, ihl: u8, frag: u16, payload_len: usize) -> Vec<u8> {
        let hlen = usize::from(ihl) * 4;
        let tot = (hlen + payload_len) as u16;
        let mut h = vec![0x40 | ihl, 0];
        h.extend(tot.to_be_bytes());
        h.extend([0x12, 0x34]);
        h.extend(frag.to_be_bytes());
        h.extend([64, proto, 0, 0]);
        h.extend(SRC4);
        h.extend(DST4);
        h.resize(hlen.max(20), 1);
        h
    }

    fn ipv6_hdr(next: u8, payload_len: usize) -> Vec<u8> {
        let mut h = vec![0x60, 0, 0, 0];
        h.extend((payload_len as u16).to_be_bytes());
        h.extend([next, 64]);
        h.extend(SRC6);
        h.extend(DST6);
        h
    }

    fn tcp(sport: u16, dport: u16) -> Vec<u8> {
        let mut h = Vec::new();
        h.extend(sport.to_be_bytes());
        h.extend(dport.to_be_bytes());
        h.extend([0, 0, 0, 1, 0, 0, 0, 0, 0x50, 0x18, 0xff, 0xff, 0, 0, 0, 0]);
        h
    }

    fn udp(sport: u16, dport: u16) -> Vec<u8> {
        let mut h = Vec::new();
        h.extend(sport.to_be_bytes());
        h.extend(dport.to_be_bytes());
        h.extend([0, 8, 0, 0]);
        h
    }

    fn sctp(sport: u16, dport: u16) -> Vec<u8> {
        let mut h = udp(sport, dport);
        h.extend([0xde, 0xad, 0xbe, 0xef]);
        h
    }

    fn icmp(ty: u8, code: u8) -> Vec<u8> {
        vec![ty, code, 0, 0, 0, 1, 0, 2]
    }

    /// A whole IPv4 frame: tags, header, L4 bytes, then `pad` bytes of Ethernet padding.
    fn v4(tags: &[(u16, u16)], proto: u8, l4: &[u8], pad: usize) -> Vec<u8> {
        v4_with(tags, proto, 5, 0, l4, pad)
    }

    fn v4_with(
        tags: &[(u16, u16)],
        proto: u8,
        ihl: u8,
        frag: u16,
        l4: &[u8],
        pad: usize,
    ) -> Vec<u8> {
        let mut f = eth(tags, ETH_P_IPV4);
        f.extend(ipv4_hdr(proto, ihl, frag, l4.len()));
        f.extend(l4);
        f.extend(std::iter::repeat_n(0xee, pad));
        f
    }

    /// A generic extension header (hop-by-hop, routing, destination options) of (len + 1) * 8 bytes.
    fn ext(next: u8, len: u8) -> Vec<u8> {
        let mut h = vec![next, len];
        h.resize((usize::from(len) + 1) * 8, 0x01);
        h
    }

    fn frag6(next: u8, offset: u16, more: bool) -> Vec<u8> {
        let mut h = vec![next, 0];
        h.extend((offset << 3 | u16::from(more)).to_be_bytes());
        h.extend([0xca, 0xfe, 0xba, 0xbe]);
        h
    }

    /// A whole IPv6 frame: `chain` is the header bytes after the fixed header (extension headers
    /// then L4), `first` the fixed header's Next Header, then `pad` bytes of padding.
    fn v6(tags: &[(u16, u16)], first: u8, chain: &[u8], pad: usize) -> Vec<u8> {
        let mut f = eth(tags, ETH_P_IPV6);
        f.extend(ipv6_hdr(first, chain.len()));
        f.extend(chain);
        f.extend(std::iter::repeat_n(0xee, pad));
        f
    }

    fn set16(f: &mut [u8], at: usize, v: u16) {
        f[at..at + 2].copy_from_slice(&v.to_be_bytes());
    }

    fn five() -> Config {
        Config::default()
    }

    fn key(frame: &[u8]) -> Key {
        key_in(frame, &five())
    }

    fn key_in(frame: &[u8], cfg: &Config) -> Key {
        match classify(frame, cfg) {
            Outcome::Counted(k) => k,
            other => panic!("expected counted, got {other:?}"),
        }
    }

    fn bucket(frame: &[u8]) -> Bucket {
        classify(frame, &five()).bucket()
    }

    fn ports(sport: u16, dport: u16) -> L4 {
        L4::Ports { sport, dport }
    }

    fn a4(a: [u8; 4]) -> [u8; 16] {
        let mut x = [0; 16];
        x[..4].copy_from_slice(&a);
        x
    }

    // ---- rule 1: bytes -------------------------------------------------------------------------

    #[test]
    fn rule01_every_frame_is_accounted_with_its_whole_length() {
        let mut t = Tally::new(five());
        let counted = v4(&[(ETH_P_8021Q, 7)], IPPROTO_UDP, &udp(1, 2), 9);
        let non_ip = eth(&[], 0x0806);
        let malformed = eth(&[], ETH_P_IPV4);
        for f in [&counted, &counted, &non_ip, &malformed] {
            t.add(f);
        }
        assert_eq!(t.seen.packets, 4);
        assert_eq!(
            t.seen.bytes,
            (2 * counted.len() + non_ip.len() + malformed.len()) as u64
        );
        let c = t.bucket(Bucket::Counted);
        assert_eq!((c.packets, c.bytes), (2, 2 * counted.len() as u64));
        assert_eq!(t.bucket(Bucket::NonIp).bytes, 14);
        assert_eq!(t.bucket(Bucket::Malformed).bytes, 14);
        assert_eq!(t.flows.len(), 1);
        let flow = t.flows.values().next().unwrap();
        // Tags and padding are bytes of the frame like any other.
        assert_eq!(flow.bytes, 2 * (14 + 4 + 20 + 8 + 9));
        let sum: u64 = t.buckets.iter().map(|c| c.bytes).sum();
        assert_eq!(sum, t.seen.bytes);
    }

    // ---- rule 2: Ethernet ----------------------------------------------------------------------

    #[test]
    fn rule02_short_ethernet_header_is_malformed() {
        let f = eth(&[], 0x0806);
        assert_eq!(bucket(&f), Bucket::NonIp);
        assert_eq!(bucket(&f[..13]), Bucket::Malformed);
        assert_eq!(bucket(&[]), Bucket::Malformed);
    }

    #[test]
    fn rule02_minimum_frames() {
        assert_eq!(bucket(&eth(&[], ETH_P_IPV4)), Bucket::Malformed);
        assert_eq!(bucket(&eth(&[], ETH_P_IPV6)), Bucket::Malformed);
        assert_eq!(bucket(&eth(&[], ETH_P_8021Q)), Bucket::Malformed);
        assert_eq!(bucket(&eth(&[], 0x1234)), Bucket::NonIp);
    }

    #[test]
    fn rule02_mac_addresses_are_not_in_the_key() {
        let a = v4(&[], IPPROTO_UDP, &udp(1, 2), 0);
        let mut b = a.clone();
        b[..12].copy_from_slice(&[0xff; 12]);
        assert_eq!(key(&a), key(&b));
    }

    // ---- rule 3: VLAN tags ---------------------------------------------------------------------

    #[test]
    fn rule03_tags_of_either_tpid_in_either_position() {
        let cfg = Config {
            vlan: true,
            ..five()
        };
        for outer in [ETH_P_8021Q, ETH_P_8021AD] {
            let f = v4(&[(outer, 100)], IPPROTO_UDP, &udp(1, 2), 0);
            assert_eq!(key_in(&f, &cfg).vlan, Some(100));
            for inner in [ETH_P_8021Q, ETH_P_8021AD] {
                let f = v4(&[(outer, 100), (inner, 200)], IPPROTO_UDP, &udp(1, 2), 0);
                let k = key_in(&f, &cfg);
                assert_eq!(k.vlan, Some(100), "the outer id is the key's");
                assert_eq!(k.l4, ports(1, 2));
            }
        }
    }

    #[test]
    fn rule03_pcp_and_dei_are_not_the_id() {
        let cfg = Config {
            vlan: true,
            ..five()
        };
        let f = v4(&[(ETH_P_8021Q, 0xf000 | 42)], IPPROTO_TCP, &tcp(1, 2), 0);
        assert_eq!(key_in(&f, &cfg).vlan, Some(42));
        let f = v4(&[(ETH_P_8021Q, 0xffff)], IPPROTO_TCP, &tcp(1, 2), 0);
        assert_eq!(key_in(&f, &cfg).vlan, Some(4095));
    }

    #[test]
    fn rule03_priority_tag_is_vlan_zero_like_untagged() {
        let cfg = Config {
            vlan: true,
            ..five()
        };
        let tagged = v4(&[(ETH_P_8021Q, 0xa000)], IPPROTO_TCP, &tcp(1, 2), 0);
        let untagged = v4(&[], IPPROTO_TCP, &tcp(1, 2), 0);
        assert_eq!(key_in(&tagged, &cfg), key_in(&untagged, &cfg));
        assert_eq!(key_in(&untagged, &cfg).vlan, Some(0));
    }

    #[test]
    fn rule03_truncated_tag_is_malformed_a_whole_one_is_not() {
        // A tag whose 4 bytes end exactly at the end of the frame, with a non-IP EtherType.
        let whole = eth(&[(ETH_P_8021Q, 5)], 0x0806);
        assert_eq!(whole.len(), 18);
        assert_eq!(bucket(&whole), Bucket::NonIp);
        for cut in 14..18 {
            assert_eq!(bucket(&whole[..cut]), Bucket::Malformed, "cut at {cut}");
        }
        let two = eth(&[(ETH_P_8021AD, 5), (ETH_P_8021Q, 6)], 0x0806);
        assert_eq!(bucket(&two), Bucket::NonIp);
        for cut in 18..22 {
            assert_eq!(bucket(&two[..cut]), Bucket::Malformed, "cut at {cut}");
        }
    }

    #[test]
    fn rule03_other_tpids_are_not_tags() {
        for tpid in [0x9100, 0x9200, 0x88e7] {
            let f = v4(&[(tpid, 5)], IPPROTO_UDP, &udp(1, 2), 0);
            assert_eq!(bucket(&f), Bucket::NonIp, "{tpid:#x}");
            let f = v4(&[(ETH_P_8021Q, 5), (tpid, 6)], IPPROTO_UDP, &udp(1, 2), 0);
            assert_eq!(bucket(&f), Bucket::NonIp, "{tpid:#x} inside");
        }
    }

    // ---- rule 4: third tag ---------------------------------------------------------------------

    #[test]
    fn rule04_third_tag_is_non_ip() {
        for third in [ETH_P_8021Q, ETH_P_8021AD] {
            let f = v4(
                &[(ETH_P_8021AD, 1), (ETH_P_8021Q, 2), (third, 3)],
                IPPROTO_UDP,
                &udp(1, 2),
                0,
            );
            assert_eq!(bucket(&f), Bucket::NonIp);
            // Frame ends right after the second tag, whose EtherType announces a third.
            assert_eq!(bucket(&f[..22]), Bucket::NonIp);
        }
        let two = v4(
            &[(ETH_P_8021AD, 1), (ETH_P_8021Q, 2)],
            IPPROTO_UDP,
            &udp(1, 2),
            0,
        );
        assert_eq!(bucket(&two), Bucket::Counted);
    }

    // ---- rule 5: network protocol --------------------------------------------------------------

    #[test]
    fn rule05_only_ipv4_and_ipv6_ethertypes_are_ip() {
        let ip = {
            let mut b = ipv4_hdr(IPPROTO_UDP, 5, 0, 8);
            b.extend(udp(1, 2));
            b
        };
        for et in [
            0x0806, 0x8847, 0x8864, 0x88cc, 0x0000, 0x05dc, 0x0600, 0xffff, 0x0801,
        ] {
            let mut f = eth(&[], et);
            f.extend(&ip);
            assert_eq!(bucket(&f), Bucket::NonIp, "{et:#x}");
        }
        // 802.3 length + LLC/SNAP carrying IPv4: not unwrapped.
        let mut f = eth(&[], 0x0030);
        f.extend([0xaa, 0xaa, 0x03, 0, 0, 0, 0x08, 0x00]);
        f.extend(&ip);
        assert_eq!(bucket(&f), Bucket::NonIp);
    }

    // ---- rule 6: version -----------------------------------------------------------------------

    #[test]
    fn rule06_version_must_match_ethertype() {
        let mut f = v4(&[], IPPROTO_UDP, &udp(1, 2), 40);
        assert_eq!(bucket(&f), Bucket::Counted);
        for version in [0u8, 5, 6, 15] {
            f[14] = version << 4 | 5;
            assert_eq!(
                bucket(&f),
                Bucket::Malformed,
                "v4 ethertype, version {version}"
            );
        }
        let mut f = v6(&[], IPPROTO_UDP, &udp(1, 2), 0);
        assert_eq!(bucket(&f), Bucket::Counted);
        for version in [0u8, 4, 7, 15] {
            f[14] = version << 4;
            assert_eq!(
                bucket(&f),
                Bucket::Malformed,
                "v6 ethertype, version {version}"
            );
        }
        // An IPv6 datagram behind the IPv4 EtherType.
        let mut f = v6(&[], IPPROTO_UDP, &udp(1, 2), 0);
        set16(&mut f, 12, ETH_P_IPV4);
        assert_eq!(bucket(&f), Bucket::Malformed);
    }

    // ---- rule 7: IPv4 header -------------------------------------------------------------------

    #[test]
    fn rule07_ihl_5_is_the_minimum() {
        let f = v4(&[], IPPROTO_UDP, &udp(1, 2), 0);
        assert_eq!(key(&f).l4, ports(1, 2));
        for ihl in 0..5 {
            let mut g = f.clone();
            g[14] = 0x40 | ihl;
            assert_eq!(bucket(&g), Bucket::Malformed, "ihl {ihl}");
        }
    }

    #[test]
    fn rule07_options_are_skipped_and_ports_follow_them() {
        for ihl in 6..=15 {
            let f = v4_with(&[], IPPROTO_TCP, ihl, 0, &tcp(1000 + u16::from(ihl), 80), 0);
            assert_eq!(key(&f).l4, ports(1000 + u16::from(ihl), 80), "ihl {ihl}");
        }
        // Garbage options (an option length running past the header) are not validated.
        let mut f = v4_with(&[], IPPROTO_UDP, 6, 0, &udp(5, 6), 0);
        f[34..38].copy_from_slice(&[0x44, 0xff, 0x00, 0x00]);
        assert_eq!(key(&f).l4, ports(5, 6));
    }

    #[test]
    fn rule07_header_must_lie_inside_the_frame() {
        // IHL 15 with other protocol and no payload: the header ends exactly at the frame's end.
        let f = v4_with(&[], 99, 15, 0, &[], 0);
        assert_eq!(f.len(), 14 + 60);
        assert_eq!(key(&f).proto, 99);
        // One byte short, with total length claiming what is there.
        let mut g = f[..f.len() - 1].to_vec();
        set16(&mut g, 16, 59);
        assert_eq!(bucket(&g), Bucket::Malformed);
        // IHL pointing past a short frame, total length = frame.
        let mut g = v4(&[], 99, &[], 0);
        g[14] = 0x46;
        assert_eq!(bucket(&g), Bucket::Malformed);
    }

    #[test]
    fn rule07_fewer_than_20_bytes_is_malformed() {
        let f = v4(&[], 99, &[], 0);
        assert_eq!(bucket(&f), Bucket::Counted);
        for cut in 14..f.len() {
            assert_eq!(bucket(&f[..cut]), Bucket::Malformed, "cut at {cut}");
        }
    }

    #[test]
    fn rule07_checksum_ttl_and_addresses_are_not_validated() {
        let mut f = v4(&[], IPPROTO_UDP, &udp(1, 2), 0);
        f[14 + 8] = 0; // TTL
        f[14 + 10..14 + 12].copy_from_slice(&[0xba, 0xad]); // checksum
        f[14 + 12..14 + 20].copy_from_slice(&[255, 255, 255, 255, 0, 0, 0, 0]);
        let k = key(&f);
        assert_eq!(k.src, a4([255; 4]));
        assert_eq!(k.dst, [0; 16]);
    }

    // ---- rule 8: IPv4 total length -------------------------------------------------------------

    #[test]
    fn rule08_total_length_equal_to_frame_vs_one_more() {
        let f = v4(&[(ETH_P_8021Q, 1)], IPPROTO_UDP, &udp(1, 2), 0);
        assert_eq!(usize::from(be16(&f, 20)), f.len() - 18);
        assert_eq!(bucket(&f), Bucket::Counted);
        let mut g = f.clone();
        set16(&mut g, 20, (f.len() - 18 + 1) as u16);
        assert_eq!(bucket(&g), Bucket::Malformed);
        set16(&mut g, 20, 0xffff);
        assert_eq!(bucket(&g), Bucket::Malformed);
    }

    #[test]
    fn rule08_total_length_below_the_header_is_malformed() {
        let f = v4_with(&[], 99, 6, 0, &[1, 2, 3, 4], 0);
        for tot in [0u16, 1, 19, 20, 23] {
            let mut g = f.clone();
            set16(&mut g, 16, tot);
            assert_eq!(bucket(&g), Bucket::Malformed, "tot_len {tot} with IHL 6");
        }
        let mut g = f.clone();
        set16(&mut g, 16, 24);
        assert_eq!(key(&g).proto, 99, "total length = header length");
    }

    #[test]
    fn rule08_padding_is_not_read() {
        // Datagram ends after 4 of the UDP header's 8 bytes; padding supplies the other 4.
        let mut f = eth(&[], ETH_P_IPV4);
        f.extend(ipv4_hdr(IPPROTO_UDP, 5, 0, 4));
        f.extend(udp(1, 2));
        f.extend([0; 20]);
        assert_eq!(bucket(&f), Bucket::Malformed);
        // A whole UDP header padded up to 60 bytes and more: ports from the header only.
        for pad in [0, 1, 6, 26, 100] {
            let f = v4(&[], IPPROTO_UDP, &udp(7, 8), pad);
            assert_eq!(key(&f).l4, ports(7, 8), "pad {pad}");
        }
        let f = v4(&[], IPPROTO_UDP, &udp(7, 8), 18);
        assert_eq!(f.len(), 60);
    }

    // ---- rule 9: IPv4 fragments ----------------------------------------------------------------

    #[test]
    fn rule09_non_first_fragment_is_keyed_without_ports() {
        for frag in [1u16, 0x2001, 0x1fff, 0x3fff, 0x9abc] {
            // No L4 bytes at all: nothing after the IP header is required.
            let f = v4_with(&[], IPPROTO_TCP, 5, frag, &[], 0);
            let k = key(&f);
            assert_eq!(
                (k.proto, k.l4, k.fragment),
                (IPPROTO_TCP, L4::None, true),
                "{frag:#x}"
            );
            // Bytes that look like ports are not read.
            let f = v4_with(&[], IPPROTO_UDP, 5, frag, &udp(1, 2), 0);
            assert_eq!(key(&f).l4, L4::None);
            let f = v4_with(&[], IPPROTO_ICMP, 5, frag, &icmp(8, 0), 0);
            assert_eq!(key(&f).l4, L4::None);
        }
    }

    #[test]
    fn rule09_first_fragment_carries_ports_and_no_flag() {
        let plain = v4(&[], IPPROTO_UDP, &udp(1, 2), 0);
        // MF, DF, the reserved bit, all with offset 0.
        for flags in [0x2000u16, 0x4000, 0x8000, 0xe000] {
            let f = v4_with(&[], IPPROTO_UDP, 5, flags, &udp(1, 2), 0);
            assert_eq!(key(&f), key(&plain), "{flags:#x}");
        }
        // A first fragment too short for its L4 header is malformed.
        let f = v4_with(&[], IPPROTO_TCP, 5, 0x2000, &tcp(1, 2)[..8], 0);
        assert_eq!(bucket(&f), Bucket::Malformed);
    }

    // ---- rule 10: IPv6 header ------------------------------------------------------------------

    #[test]
    fn rule10_header_must_lie_inside_the_frame() {
        let f = v6(&[], IPPROTO_NONE, &[], 0);
        assert_eq!(f.len(), 54);
        assert_eq!(key(&f).proto, IPPROTO_NONE);
        for cut in 14..54 {
            assert_eq!(bucket(&f[..cut]), Bucket::Malformed, "cut at {cut}");
        }
    }

    #[test]
    fn rule10_payload_length_equal_to_frame_vs_one_more() {
        let f = v6(&[(ETH_P_8021AD, 3)], IPPROTO_TCP, &tcp(1, 2), 0);
        assert_eq!(key(&f).l4, ports(1, 2));
        let mut g = f.clone();
        set16(&mut g, 18 + 4, 21);
        assert_eq!(bucket(&g), Bucket::Malformed);
        set16(&mut g, 18 + 4, 0xffff);
        assert_eq!(bucket(&g), Bucket::Malformed);
    }

    #[test]
    fn rule10_payload_length_bounds_the_datagram() {
        // Payload length smaller than what follows: the rest is padding, never read.
        let mut f = v6(&[], IPPROTO_UDP, &udp(1, 2), 0);
        for plen in 1..8u16 {
            set16(&mut f, 18, plen);
            assert_eq!(bucket(&f), Bucket::Malformed, "plen {plen}");
        }
        let f = v6(&[], IPPROTO_UDP, &udp(1, 2), 30);
        assert_eq!(key(&f).l4, ports(1, 2));
    }

    #[test]
    fn rule10_payload_length_zero_runs_to_the_end_of_the_frame() {
        let mut f = v6(&[], IPPROTO_NONE, &[], 0);
        assert_eq!(bucket(&f), Bucket::Counted);
        // Whole headers behind it in the frame are its payload.
        f.extend(tcp(1, 2));
        f[20] = IPPROTO_TCP;
        set16(&mut f, 18, 0);
        assert_eq!(key(&f).l4, ports(1, 2));
        // Padding too: bytes after a datagram that declares no length are the datagram's.
        let mut g = v6(&[], IPPROTO_UDP, &udp(7, 9), 0);
        g.truncate(54);
        set16(&mut g, 18, 0);
        assert_eq!(bucket(&g), Bucket::Malformed);
        g.extend(udp(7, 9));
        assert_eq!(key(&g).l4, ports(7, 9));
        // A hop-by-hop header with a Jumbo Payload option: walked like any other.
        let mut f = v6(&[], IPPROTO_HOPOPTS, &[], 0);
        f.extend([IPPROTO_UDP, 0, 0xc2, 4, 0, 1, 0, 0]);
        f.extend(udp(1, 2));
        assert_eq!(key(&f).l4, ports(1, 2));
        // The fixed header itself must still be whole.
        assert_eq!(bucket(&f[..53]), Bucket::Malformed);
        // Other protocols need no payload.
        let f = v6(&[], 99, &[], 0);
        assert_eq!(key(&f).proto, 99);
    }

    #[test]
    fn rule10_flow_label_and_traffic_class_are_ignored() {
        let a = v6(&[], IPPROTO_UDP, &udp(1, 2), 0);
        let mut b = a.clone();
        b[14..18].copy_from_slice(&[0x6f, 0xff, 0xff, 0xff]);
        b[21] = 0;
        assert_eq!(key(&a), key(&b));
    }

    // ---- rule 11: IPv6 extension headers -------------------------------------------------------

    #[test]
    fn rule11_the_four_extension_headers_are_walked() {
        let mut chain = ext(IPPROTO_ROUTING, 0);
        chain.extend(ext(IPPROTO_FRAGMENT, 2));
        chain.extend(frag6(IPPROTO_DSTOPTS, 0, true));
        chain.extend(ext(IPPROTO_TCP, 1));
        chain.extend(tcp(443, 50000));
        let f = v6(&[], IPPROTO_HOPOPTS, &chain, 0);
        let k = key(&f);
        assert_eq!(
            (k.proto, k.l4, k.fragment),
            (IPPROTO_TCP, ports(443, 50000), false)
        );
    }

    #[test]
    fn rule11_length_is_counted_in_8_byte_units() {
        // A header of length 2 is 24 bytes; reading it as 16 would take its bytes for ports.
        let mut h = ext(IPPROTO_UDP, 2);
        h[8..12].copy_from_slice(&[0, 9, 0, 9]);
        h[16..20].copy_from_slice(&[0, 10, 0, 10]);
        let mut chain = h;
        chain.extend(udp(1, 2));
        let f = v6(&[], IPPROTO_DSTOPTS, &chain, 0);
        assert_eq!(key(&f).l4, ports(1, 2));
    }

    #[test]
    fn rule11_other_headers_end_the_walk() {
        // AH (51), ESP (50), Mobility (135), No Next Header (59): the protocol, no ports.
        for proto in [51u8, 50, 135, 139, 140, 253, 254, IPPROTO_NONE] {
            let mut chain = ext(proto, 0);
            chain[0] = proto;
            let mut body = vec![IPPROTO_UDP, 0, 0, 0, 0, 0, 0, 0];
            body.extend(udp(1, 2));
            let f = v6(&[], IPPROTO_HOPOPTS, &[ext(proto, 0), body].concat(), 0);
            let k = key(&f);
            assert_eq!((k.proto, k.l4), (proto, L4::None), "proto {proto}");
        }
    }

    #[test]
    fn rule11_extension_header_must_lie_inside_the_payload() {
        // Exactly at the end of the declared payload, and of the frame.
        let f = v6(&[], IPPROTO_ROUTING, &ext(IPPROTO_NONE, 3), 0);
        assert_eq!(key(&f).proto, IPPROTO_NONE);
        // One unit longer than the payload.
        let mut g = f.clone();
        g[54 + 1] = 4;
        assert_eq!(bucket(&g), Bucket::Malformed);
        // Inside the frame but beyond the payload length: padding does not count.
        let mut g = v6(&[], IPPROTO_ROUTING, &ext(IPPROTO_NONE, 3), 16);
        assert_eq!(bucket(&g), Bucket::Counted);
        g[54 + 1] = 4;
        assert_eq!(bucket(&g), Bucket::Malformed);
        // Fewer than 8 bytes left for a header of any kind.
        for next in [
            IPPROTO_HOPOPTS,
            IPPROTO_ROUTING,
            IPPROTO_FRAGMENT,
            IPPROTO_DSTOPTS,
        ] {
            let f = v6(&[], next, &[IPPROTO_NONE, 0, 0, 0, 0, 0, 0], 1);
            assert_eq!(bucket(&f), Bucket::Malformed, "next {next}");
            let f = v6(&[], next, &[IPPROTO_NONE, 0, 0, 0, 0, 0, 0, 0], 0);
            assert_eq!(bucket(&f), Bucket::Counted, "next {next}");
        }
    }

    #[test]
    fn rule11_order_and_repetition_are_not_checked() {
        let mut chain = ext(IPPROTO_DSTOPTS, 0);
        chain.extend(ext(IPPROTO_HOPOPTS, 0));
        chain.extend(ext(IPPROTO_HOPOPTS, 1));
        chain.extend(frag6(IPPROTO_FRAGMENT, 0, false));
        chain.extend(frag6(IPPROTO_UDPLITE, 0, true));
        chain.extend(udp(3, 4));
        let f = v6(&[], IPPROTO_DSTOPTS, &chain, 0);
        assert_eq!(key(&f).l4, ports(3, 4));
    }

    // ---- rule 12: chain bound ------------------------------------------------------------------

    /// A chain of `n` extension headers of rotating kinds ending in `last`, then `tail`.
    fn chain_of(n: usize, last: u8, tail: &[u8]) -> (u8, Vec<u8>) {
        let kinds = [
            IPPROTO_HOPOPTS,
            IPPROTO_DSTOPTS,
            IPPROTO_ROUTING,
            IPPROTO_FRAGMENT,
        ];
        let kind = |i: usize| kinds[i % kinds.len()];
        let mut chain = Vec::new();
        for i in 0..n {
            let next = if i + 1 == n { last } else { kind(i + 1) };
            if kind(i) == IPPROTO_FRAGMENT {
                chain.extend(frag6(next, 0, true));
            } else {
                chain.extend(ext(next, (i % 3) as u8));
            }
        }
        chain.extend(tail);
        (if n == 0 { last } else { kind(0) }, chain)
    }

    #[test]
    fn rule12_eight_headers_walk_nine_are_malformed() {
        for n in 0..=8 {
            let (first, chain) = chain_of(n, IPPROTO_UDP, &udp(1, 2));
            let f = v6(&[], first, &chain, 0);
            assert_eq!(key(&f).l4, ports(1, 2), "{n} headers");
        }
        for n in 9..=12 {
            let (first, chain) = chain_of(n, IPPROTO_UDP, &udp(1, 2));
            let f = v6(&[], first, &chain, 0);
            assert_eq!(bucket(&f), Bucket::Malformed, "{n} headers");
        }
    }

    #[test]
    fn rule12_ninth_header_is_malformed_even_a_non_first_fragment() {
        let (first, mut chain) = chain_of(8, IPPROTO_FRAGMENT, &[]);
        chain.extend(frag6(IPPROTO_UDP, 100, false));
        let f = v6(&[], first, &chain, 0);
        assert_eq!(bucket(&f), Bucket::Malformed);
        // The same fragment header as the 8th is fine.
        let (first, mut chain) = chain_of(7, IPPROTO_FRAGMENT, &[]);
        chain.extend(frag6(IPPROTO_UDP, 100, false));
        let f = v6(&[], first, &chain, 0);
        assert!(key(&f).fragment);
    }

    // ---- rule 13: IPv6 fragments ---------------------------------------------------------------

    #[test]
    fn rule13_non_first_fragment_is_keyed_by_the_fragment_headers_next_header() {
        for next in [
            IPPROTO_TCP,
            IPPROTO_UDP,
            IPPROTO_ICMPV6,
            IPPROTO_DSTOPTS,
            200,
        ] {
            let f = v6(&[], IPPROTO_FRAGMENT, &frag6(next, 185, true), 0);
            let k = key(&f);
            assert_eq!(
                (k.proto, k.l4, k.fragment),
                (next, L4::None, true),
                "{next}"
            );
        }
        // Behind other headers; what follows (a truncated "header") is not read.
        let mut chain = ext(IPPROTO_FRAGMENT, 0);
        chain.extend(frag6(IPPROTO_DSTOPTS, 1, false));
        chain.extend([0, 200, 1, 2]);
        let f = v6(&[], IPPROTO_HOPOPTS, &chain, 0);
        let k = key(&f);
        assert_eq!((k.proto, k.fragment), (IPPROTO_DSTOPTS, true));
    }

    #[test]
    fn rule13_offset_zero_is_parsed_like_unfragmented() {
        let plain = v6(&[], IPPROTO_TCP, &tcp(1, 2), 0);
        for more in [true, false] {
            let f = v6(
                &[],
                IPPROTO_FRAGMENT,
                &[frag6(IPPROTO_TCP, 0, more), tcp(1, 2)].concat(),
                0,
            );
            assert_eq!(key(&f), key(&plain), "M = {more}");
        }
        let f = v6(
            &[],
            IPPROTO_FRAGMENT,
            &[frag6(IPPROTO_TCP, 0, true), tcp(1, 2)[..19].to_vec()].concat(),
            0,
        );
        assert_eq!(bucket(&f), Bucket::Malformed);
    }

    // ---- rule 14: L4 headers -------------------------------------------------------------------

    #[test]
    fn rule14_l4_header_cut_at_every_length() {
        let cases: [(u8, Vec<u8>, L4); 5] = [
            (IPPROTO_TCP, tcp(1, 2), ports(1, 2)),
            (IPPROTO_UDP, udp(3, 4), ports(3, 4)),
            (IPPROTO_UDPLITE, udp(5, 6), ports(5, 6)),
            (IPPROTO_SCTP, sctp(7, 8), ports(7, 8)),
            (
                IPPROTO_ICMP,
                icmp(8, 0),
                L4::Icmp {
                    icmp_type: 8,
                    icmp_code: 0,
                },
            ),
        ];
        for (proto, hdr, l4) in cases {
            for cut in 0..hdr.len() {
                assert_eq!(bucket(&v4(&[], proto, &hdr[..cut], 0)), Bucket::Malformed);
                let p6 = if proto == IPPROTO_ICMP {
                    IPPROTO_ICMPV6
                } else {
                    proto
                };
                assert_eq!(bucket(&v6(&[], p6, &hdr[..cut], 0)), Bucket::Malformed);
                // Padding after the cut supplies the bytes, but is not read.
                assert_eq!(bucket(&v4(&[], proto, &hdr[..cut], 40)), Bucket::Malformed);
            }
            // The whole header, ending exactly at the end of the frame.
            let f = v4(&[], proto, &hdr, 0);
            let k = key(&f);
            assert_eq!((k.proto, k.l4), (proto, l4), "proto {proto}");
        }
        let f = v6(&[], IPPROTO_ICMPV6, &icmp(135, 0), 0);
        let want = L4::Icmp {
            icmp_type: 135,
            icmp_code: 0,
        };
        assert_eq!(key(&f).l4, want);
        assert_eq!(
            bucket(&v6(&[], IPPROTO_SCTP, &sctp(1, 1)[..11], 0)),
            Bucket::Malformed
        );
    }

    #[test]
    fn rule14_header_contents_are_not_validated() {
        let mut t = tcp(1, 2);
        t[12] = 0x00; // data offset 0
        t[16..18].copy_from_slice(&[0xff, 0xff]);
        assert_eq!(key(&v4(&[], IPPROTO_TCP, &t, 0)).l4, ports(1, 2));
        let mut t = tcp(1, 2);
        t[12] = 0xf0; // data offset 15 words, far past the datagram
        assert_eq!(key(&v4(&[], IPPROTO_TCP, &t, 0)).l4, ports(1, 2));
        let mut u = udp(3, 4);
        u[4..6].copy_from_slice(&[0xff, 0xff]); // UDP length past the datagram
        assert_eq!(key(&v6(&[], IPPROTO_UDP, &u, 0)).l4, ports(3, 4));
        u[4..6].copy_from_slice(&[0, 0]);
        assert_eq!(key(&v4(&[], IPPROTO_UDP, &u, 0)).l4, ports(3, 4));
    }

    // ---- rule 15: ICMP by family ---------------------------------------------------------------

    #[test]
    fn rule15_cross_family_icmp_is_another_protocol() {
        let k = key(&v6(&[], IPPROTO_ICMP, &icmp(8, 0), 0));
        assert_eq!((k.proto, k.l4), (IPPROTO_ICMP, L4::None));
        let k = key(&v6(&[], IPPROTO_ICMP, &[], 0));
        assert_eq!((k.proto, k.l4), (IPPROTO_ICMP, L4::None));
        let k = key(&v4(&[], IPPROTO_ICMPV6, &icmp(128, 0), 0));
        assert_eq!((k.proto, k.l4), (IPPROTO_ICMPV6, L4::None));
        let k = key(&v4(&[], IPPROTO_ICMPV6, &[1, 2], 0));
        assert_eq!((k.proto, k.l4), (IPPROTO_ICMPV6, L4::None));
    }

    // ---- rule 16: other protocols --------------------------------------------------------------

    #[test]
    fn rule16_other_protocols_need_no_l4_bytes_and_are_not_unwrapped() {
        for proto in [0u8, 2, 4, 41, 47, 50, 51, 89, 255] {
            let k = key(&v4(&[], proto, &[], 0));
            assert_eq!((k.proto, k.l4, k.fragment), (proto, L4::None, false));
        }
        // IPIP: the inner header's addresses are not the key.
        let mut inner = ipv4_hdr(IPPROTO_UDP, 5, 0, 8);
        inner[12..20].copy_from_slice(&[1, 1, 1, 1, 2, 2, 2, 2]);
        inner.extend(udp(1, 2));
        let k = key(&v4(&[], 4, &inner, 0));
        assert_eq!(
            (k.src, k.dst, k.proto, k.l4),
            (a4(SRC4), a4(DST4), 4, L4::None)
        );
        // Hop-by-hop (0) in IPv4 is just a protocol number.
        let k = key(&v4(&[], 0, &ext(IPPROTO_TCP, 0), 0));
        assert_eq!((k.proto, k.l4), (0, L4::None));
    }

    // ---- rule 17: mode-independent parsing -----------------------------------------------------

    #[test]
    fn rule17_bucket_does_not_depend_on_the_mode() {
        let frames = [
            v4(&[], IPPROTO_TCP, &tcp(1, 2)[..10], 0),
            v6(&[], IPPROTO_ICMPV6, &icmp(1, 1)[..4], 0),
            v6(&[], IPPROTO_HOPOPTS, &ext(IPPROTO_TCP, 5), 0),
            v4(
                &[(ETH_P_8021Q, 1), (ETH_P_8021Q, 2), (ETH_P_8021Q, 3)],
                99,
                &[],
                0,
            ),
            v4(&[], IPPROTO_TCP, &tcp(1, 2), 0),
        ];
        let want = [
            Bucket::Malformed,
            Bucket::Malformed,
            Bucket::Malformed,
            Bucket::NonIp,
            Bucket::Counted,
        ];
        for (f, want) in frames.iter().zip(want) {
            for mode in KeyMode::ALL {
                for vlan in [false, true] {
                    let cfg = Config {
                        mode,
                        vlan,
                        prefix4: Some(8),
                        prefix6: Some(0),
                    };
                    assert_eq!(classify(f, &cfg).bucket(), want, "{mode:?}");
                }
            }
        }
    }

    // ---- rule 18: key shaping ------------------------------------------------------------------

    #[test]
    fn rule18_each_mode_keeps_its_fields_only() {
        let f4 = v4(&[(ETH_P_8021Q, 9)], IPPROTO_TCP, &tcp(1234, 80), 0);
        let f6 = v6(&[], IPPROTO_ICMPV6, &icmp(128, 3), 0);
        let icmp6 = L4::Icmp {
            icmp_type: 128,
            icmp_code: 3,
        };
        let cases = [
            (KeyMode::SrcIp, (true, false, false)),
            (KeyMode::DstIp, (false, true, false)),
            (KeyMode::IpPair, (true, true, false)),
            (KeyMode::FiveTuple, (true, true, true)),
        ];
        for (mode, (src, dst, l4)) in cases {
            let cfg = Config::new(mode);
            let k = key_in(&f4, &cfg);
            assert_eq!(k.family, Family::V4);
            assert_eq!(k.src, if src { a4(SRC4) } else { [0; 16] }, "{mode:?}");
            assert_eq!(k.dst, if dst { a4(DST4) } else { [0; 16] }, "{mode:?}");
            assert_eq!(k.proto, if l4 { IPPROTO_TCP } else { 0 });
            assert_eq!(k.l4, if l4 { ports(1234, 80) } else { L4::None });
            assert_eq!(k.vlan, None);
            assert_eq!(k.mode, mode);
            let k = key_in(&f6, &cfg);
            assert_eq!(k.family, Family::V6);
            assert_eq!(k.src, if src { SRC6 } else { [0; 16] });
            assert_eq!(k.dst, if dst { DST6 } else { [0; 16] });
            assert_eq!(k.proto, if l4 { IPPROTO_ICMPV6 } else { 0 });
            assert_eq!(k.l4, if l4 { icmp6 } else { L4::None });
        }
    }

    #[test]
    fn rule18_flows_merge_in_coarser_modes() {
        let a = v4(&[], IPPROTO_TCP, &tcp(1, 80), 0);
        let b = v4(&[], IPPROTO_UDP, &udp(2, 53), 0);
        let mut c = v4(&[], IPPROTO_TCP, &tcp(1, 80), 0);
        c[14 + 16..14 + 20].copy_from_slice(&[8, 8, 8, 8]);
        let frag = v4_with(&[], IPPROTO_TCP, 5, 100, &[], 0);
        let keys = |mode| -> usize {
            let mut t = Tally::new(Config::new(mode));
            for f in [&a, &b, &c, &frag] {
                t.add(f);
            }
            t.flows.len()
        };
        assert_eq!(keys(KeyMode::SrcIp), 1);
        assert_eq!(keys(KeyMode::DstIp), 2);
        assert_eq!(keys(KeyMode::IpPair), 2);
        assert_eq!(keys(KeyMode::FiveTuple), 4);
    }

    #[test]
    fn rule18_fragment_flag_only_in_five_tuple() {
        let frag = v4_with(&[], IPPROTO_UDP, 5, 1, &[], 0);
        let whole = v4(&[], IPPROTO_UDP, &udp(1, 2), 0);
        assert!(key(&frag).fragment);
        assert_ne!(key(&frag), key(&whole));
        for mode in [KeyMode::SrcIp, KeyMode::DstIp, KeyMode::IpPair] {
            let cfg = Config::new(mode);
            assert!(!key_in(&frag, &cfg).fragment);
            assert_eq!(key_in(&frag, &cfg), key_in(&whole, &cfg), "{mode:?}");
        }
        // A non-first fragment and an unfragmented packet of the same protocol without ports
        // differ only by the flag.
        let other_frag = v4_with(&[], 99, 5, 1, &[], 0);
        let other = v4(&[], 99, &[], 0);
        let (x, y) = (key(&other_frag), key(&other));
        assert_ne!(x, y);
        assert_eq!(
            Key {
                fragment: false,
                ..x
            },
            y
        );
    }

    #[test]
    fn rule18_family_is_always_kept() {
        let mut f4 = v4(&[], IPPROTO_UDP, &udp(1, 2), 0);
        f4[14 + 12..14 + 20].fill(0);
        let mut f6 = v6(&[], IPPROTO_UDP, &udp(1, 2), 0);
        f6[14 + 8..14 + 40].fill(0);
        for mode in KeyMode::ALL {
            let cfg = Config {
                prefix4: Some(0),
                prefix6: Some(0),
                ..Config::new(mode)
            };
            assert_ne!(key_in(&f4, &cfg), key_in(&f6, &cfg), "{mode:?}");
        }
    }

    // ---- rule 19: VLAN in the key --------------------------------------------------------------

    #[test]
    fn rule19_vlan_only_with_the_option() {
        let a = v4(&[(ETH_P_8021Q, 10)], IPPROTO_UDP, &udp(1, 2), 0);
        let b = v4(&[(ETH_P_8021Q, 20)], IPPROTO_UDP, &udp(1, 2), 0);
        let u = v4(&[], IPPROTO_UDP, &udp(1, 2), 0);
        for mode in KeyMode::ALL {
            let off = Config::new(mode);
            assert_eq!(key_in(&a, &off), key_in(&b, &off));
            assert_eq!(key_in(&a, &off), key_in(&u, &off));
            assert_eq!(key_in(&a, &off).vlan, None);
            let on = Config { vlan: true, ..off };
            assert_eq!(key_in(&a, &on).vlan, Some(10));
            assert_eq!(key_in(&b, &on).vlan, Some(20));
            assert_eq!(key_in(&u, &on).vlan, Some(0));
        }
    }

    // ---- rule 20: prefixes ---------------------------------------------------------------------

    #[test]
    fn rule20_prefix4() {
        let f = v4(&[], IPPROTO_UDP, &udp(1, 2), 0);
        let cases: [(Option<u8>, [u8; 4], [u8; 4]); 7] = [
            (None, SRC4, DST4),
            (Some(32), SRC4, DST4),
            (Some(24), [10, 1, 2, 0], [192, 168, 200, 0]),
            (Some(13), [10, 0, 0, 0], [192, 168, 0, 0]),
            (Some(17), [10, 1, 0, 0], [192, 168, 128, 0]),
            (Some(1), [0, 0, 0, 0], [128, 0, 0, 0]),
            (Some(0), [0; 4], [0; 4]),
        ];
        for (prefix4, src, dst) in cases {
            let cfg = Config {
                prefix4,
                prefix6: Some(1),
                ..five()
            };
            let k = key_in(&f, &cfg);
            assert_eq!((k.src, k.dst), (a4(src), a4(dst)), "{prefix4:?}");
            assert_eq!(k.prefix, prefix4);
            assert_eq!(k.l4, ports(1, 2), "ports are not masked");
        }
    }

    #[test]
    fn rule20_prefix6() {
        let f = v6(&[], IPPROTO_UDP, &udp(1, 2), 0);
        let masked = |bits: usize| {
            let mut s = SRC6;
            let mut d = DST6;
            for i in 0..128 {
                if i >= bits {
                    s[i / 8] &= !(0x80 >> (i % 8));
                    d[i / 8] &= !(0x80 >> (i % 8));
                }
            }
            (s, d)
        };
        for p in [0u8, 1, 7, 8, 9, 48, 56, 63, 64, 65, 100, 127, 128] {
            let cfg = Config {
                prefix6: Some(p),
                prefix4: Some(0),
                ..five()
            };
            let k = key_in(&f, &cfg);
            assert_eq!((k.src, k.dst), masked(usize::from(p)), "/{p}");
        }
        let k = key_in(&f, &Config::default());
        assert_eq!((k.src, k.dst), (SRC6, DST6));
        let k = key_in(
            &f,
            &Config {
                prefix6: Some(64),
                ..five()
            },
        );
        assert_eq!(k.src[..8], SRC6[..8]);
        assert_eq!(k.src[8..], [0; 8]);
    }

    #[test]
    fn rule20_prefix_applies_in_every_mode_and_only_to_its_family() {
        let f4 = v4(&[], IPPROTO_UDP, &udp(1, 2), 0);
        let f6 = v6(&[], IPPROTO_UDP, &udp(1, 2), 0);
        for mode in KeyMode::ALL {
            let cfg = Config {
                prefix4: Some(8),
                ..Config::new(mode)
            };
            let k = key_in(&f4, &cfg);
            if keeps_src(mode) {
                assert_eq!(k.src, a4([10, 0, 0, 0]));
            }
            if keeps_dst(mode) {
                assert_eq!(k.dst, a4([192, 0, 0, 0]));
            }
            let k = key_in(&f6, &cfg);
            assert_eq!(k.prefix, None);
            if keeps_src(mode) {
                assert_eq!(k.src, SRC6);
            }
        }
    }

    #[test]
    fn rule20_out_of_range_prefixes() {
        let bad4 = Config {
            prefix4: Some(33),
            ..five()
        };
        let bad6 = Config {
            prefix6: Some(129),
            ..five()
        };
        assert!(bad4.validate().is_err());
        assert!(bad6.validate().is_err());
        let ok = Config {
            prefix4: Some(32),
            prefix6: Some(128),
            ..five()
        };
        assert!(ok.validate().is_ok());
        let f = v4(&[], IPPROTO_UDP, &udp(1, 2), 0);
        assert_eq!(key_in(&f, &bad4).src, a4(SRC4));
        let f = v6(&[], IPPROTO_UDP, &udp(1, 2), 0);
        assert_eq!(key_in(&f, &bad6).src, SRC6);
    }

    // ---- Display, ordering ---------------------------------------------------------------------

    // ---- rule 21: the first buffer ---------------------------------------------------------------

    fn bucket_in(frame: &[u8], head: usize) -> Bucket {
        classify_in(frame, head, &five()).bucket()
    }

    #[test]
    fn rule21_every_header_read_must_lie_in_the_first_buffer() {
        // Tags, IPv4 options and the L4 header: malformed as soon as the first buffer ends before
        // the last byte read, counted from there on.
        let f = v4_with(
            &[(ETH_P_8021Q, 5), (ETH_P_8021AD, 6)],
            IPPROTO_TCP,
            7,
            0,
            &tcp(1, 2),
            40,
        );
        let last = 14 + 8 + 28 + 20;
        for head in 0..last {
            assert_eq!(bucket_in(&f, head), Bucket::Malformed, "head {head}");
        }
        for head in last..=f.len() + 1 {
            assert_eq!(bucket_in(&f, head), Bucket::Counted, "head {head}");
        }
        // Another protocol needs only the IP header.
        let f = v4(&[], 47, &[0; 64], 0);
        assert_eq!(bucket_in(&f, 33), Bucket::Malformed);
        assert_eq!(bucket_in(&f, 34), Bucket::Counted);
    }

    #[test]
    fn rule21_extension_headers_need_their_first_8_bytes_in_the_first_buffer() {
        // A 64-byte destination options header, then another protocol: its first 8 bytes only.
        let f = v6(&[], IPPROTO_DSTOPTS, &ext(IPPROTO_NONE, 7), 0);
        assert_eq!(bucket_in(&f, 54 + 7), Bucket::Malformed);
        assert_eq!(bucket_in(&f, 54 + 8), Bucket::Counted);
        // Then UDP: the UDP header too.
        let mut chain = ext(IPPROTO_UDP, 7);
        chain.extend(udp(1, 2));
        let f = v6(&[], IPPROTO_DSTOPTS, &chain, 0);
        assert_eq!(bucket_in(&f, 54 + 64 + 7), Bucket::Malformed);
        assert_eq!(
            classify_in(&f, 54 + 64 + 8, &five()).key().unwrap().l4,
            ports(1, 2)
        );
        // A non-first fragment header ends the walk: nothing after it is read.
        let mut chain = frag6(IPPROTO_TCP, 10, false);
        chain.extend([0; 100]);
        let f = v6(&[], IPPROTO_FRAGMENT, &chain, 0);
        assert_eq!(bucket_in(&f, 54 + 7), Bucket::Malformed);
        assert!(classify_in(&f, 54 + 8, &five()).key().unwrap().fragment);
    }

    #[test]
    fn rule21_lengths_are_still_those_of_the_whole_frame() {
        // A first buffer shorter than the declared datagram is no truncation; a declared length
        // beyond the frame still is.
        let f = v4(&[], IPPROTO_UDP, &udp(1, 2), 3000);
        assert_eq!(key(&f).l4, ports(1, 2));
        assert_eq!(
            classify_in(&f, 42, &five()).key(),
            classify(&f, &five()).key()
        );
        let mut g = f.clone();
        set16(&mut g, 16, (f.len() - 14 + 1) as u16);
        assert_eq!(bucket_in(&g, 42), Bucket::Malformed);
        // And the whole frame is accounted.
        let mut t = Tally::new(five());
        t.add_in(&f, 42);
        assert_eq!(t.seen.bytes, f.len() as u64);
    }

    #[test]
    fn display_prints_the_json_key() {
        let f = v4(&[(ETH_P_8021Q, 5)], IPPROTO_UDP, &udp(40000, 9000), 0);
        let k = key(&f);
        assert_eq!(
            k.to_string(),
            r#"{"src":"10.1.2.3","dst":"192.168.200.77","proto":"udp","sport":40000,"dport":9000}"#
        );
        let cfg = Config {
            mode: KeyMode::IpPair,
            vlan: true,
            prefix4: Some(24),
            prefix6: None,
        };
        assert_eq!(
            key_in(&f, &cfg).to_string(),
            r#"{"src":"10.1.2.0/24","dst":"192.168.200.0/24","vlan":5}"#
        );
        let f = v6(&[], IPPROTO_ICMPV6, &icmp(128, 0), 0);
        assert_eq!(
            key_in(&f, &Config::new(KeyMode::DstIp)).to_string(),
            r#"{"dst":"fd00:1234:5678:9abc:def0:102:304:506"}"#
        );
        assert_eq!(
            key(&f).to_string(),
            r#"{"src":"2001:db8:aabb:ccdd:1122:3344:5566:7788","dst":"fd00:1234:5678:9abc:def0:102:304:506","proto":"icmpv6","icmp_type":128,"icmp_code":0}"#
        );
        let f = v4_with(&[], IPPROTO_UDPLITE, 5, 7, &[], 0);
        assert_eq!(
            key_in(
                &f,
                &Config {
                    vlan: true,
                    ..five()
                }
            )
            .to_string(),
            r#"{"src":"10.1.2.3","dst":"192.168.200.77","proto":136,"fragment":true,"vlan":0}"#
        );
    }

    #[test]
    fn keys_order_and_hash_consistently() {
        use std::collections::HashSet;
        let frames = [
            v4(&[], IPPROTO_UDP, &udp(1, 2), 0),
            v4(&[], IPPROTO_UDP, &udp(1, 3), 0),
            v6(&[], IPPROTO_UDP, &udp(1, 2), 0),
            v4_with(&[], IPPROTO_UDP, 5, 1, &[], 0),
        ];
        let mut keys: Vec<Key> = frames.iter().map(|f| key(f)).collect();
        let set: HashSet<Key> = keys.iter().copied().collect();
        assert_eq!(set.len(), 4);
        keys.sort();
        keys.dedup();
        assert_eq!(keys.len(), 4);
        assert_eq!(keys[0].family, Family::V4);
        assert_eq!(keys[3].family, Family::V6);
    }

    // ---- frames built by an independent library ------------------------------------------------

    #[test]
    fn frames_built_by_etherparse() {
        use etherparse::PacketBuilder;
        let mut f = Vec::new();
        PacketBuilder::ethernet2([1; 6], [2; 6])
            .double_vlan(
                etherparse::VlanId::try_new(300).unwrap(),
                etherparse::VlanId::try_new(7).unwrap(),
            )
            .ipv4([172, 16, 0, 1], [172, 16, 0, 2], 64)
            .udp(5353, 53)
            .write(&mut f, &[0; 33])
            .unwrap();
        let cfg = Config {
            vlan: true,
            ..five()
        };
        let k = key_in(&f, &cfg);
        assert_eq!(
            k.to_string(),
            r#"{"src":"172.16.0.1","dst":"172.16.0.2","proto":"udp","sport":5353,"dport":53,"vlan":300}"#
        );

        let mut f = Vec::new();
        PacketBuilder::ethernet2([1; 6], [2; 6])
            .ipv6(SRC6, DST6, 64)
            .tcp(443, 61000, 1, 1000)
            .write(&mut f, &[7; 100])
            .unwrap();
        let k = key(&f);
        assert_eq!(
            (k.src, k.dst, k.proto, k.l4),
            (SRC6, DST6, 6, ports(443, 61000))
        );

        let mut f = Vec::new();
        PacketBuilder::ethernet2([1; 6], [2; 6])
            .ipv4([1, 2, 3, 4], [5, 6, 7, 8], 64)
            .icmpv4_echo_request(1, 2)
            .write(&mut f, &[])
            .unwrap();
        // Below the Ethernet minimum: NICs pad it; padding changes nothing.
        let k = key(&f);
        f.resize(60, 0);
        assert_eq!(key(&f), k);
        assert_eq!(
            k.l4,
            L4::Icmp {
                icmp_type: 8,
                icmp_code: 0,
            }
        );
    }
}
