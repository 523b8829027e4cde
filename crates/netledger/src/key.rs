//! Flow keys as the data path makes them, decoded into only the fields of
//! their key mode; and the one table of protocol names.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use serde::ser::{SerializeMap, Serializer};
use serde::Serialize;

use crate::config::{KeyMode, LedgerConfig};
use crate::record::Count;
use crate::skel::types::{nl_flow_key, nl_key_flags};

/// `enum nl_key_flags` as the key's `u8` field holds it.
const F_PORTS: u8 = nl_key_flags::NL_KEY_F_PORTS.0 as u8;
const F_ICMP: u8 = nl_key_flags::NL_KEY_F_ICMP.0 as u8;
const F_FRAGMENT: u8 = nl_key_flags::NL_KEY_F_FRAGMENT.0 as u8;

/// An address, or an address prefix when keys are aggregated.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Addr {
    /// The address (host bits zero under a prefix).
    pub ip: IpAddr,
    /// Prefix length; 32 or 128 for a whole address.
    pub prefix: u8,
}

impl fmt::Display for Addr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let full = if self.ip.is_ipv4() { 32 } else { 128 };
        if self.prefix >= full {
            write!(f, "{}", self.ip)
        } else {
            write!(f, "{}/{}", self.ip, self.prefix)
        }
    }
}

/// What a five-tuple key knows beyond addresses and protocol.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum L4 {
    /// No port fields: a protocol without ports, or a non-first fragment.
    None,
    /// TCP, UDP, UDP-Lite or SCTP ports.
    Ports {
        /// Source port.
        src: u16,
        /// Destination port.
        dst: u16,
    },
    /// ICMP or ICMPv6 type and code.
    Icmp {
        /// The type.
        kind: u8,
        /// The code.
        code: u8,
    },
}

/// A flow key with only the fields of its key mode.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct FlowKey {
    /// Source address, in modes that have it.
    pub src: Option<Addr>,
    /// Destination address, in modes that have it.
    pub dst: Option<Addr>,
    /// IP protocol number (five-tuple mode).
    pub proto: Option<u8>,
    /// Ports or ICMP type and code (five-tuple mode).
    pub l4: L4,
    /// A non-first IP fragment (five-tuple mode): no L4 fields.
    pub fragment: bool,
    /// Outer VLAN id with `--vlan`; 0 for an untagged frame.
    pub vlan: Option<u16>,
}

impl FlowKey {
    /// Decode a key of the data path under the configuration it was made with.
    pub(crate) fn from_raw(raw: &nl_flow_key, cfg: &LedgerConfig) -> Self {
        let v4 = raw.family == 4;
        let prefix = if v4 {
            cfg.prefix4.unwrap_or(32)
        } else {
            cfg.prefix6.unwrap_or(128)
        };
        let addr = |b: &[u8; 16]| {
            let ip = if v4 {
                IpAddr::V4(Ipv4Addr::new(b[0], b[1], b[2], b[3]))
            } else {
                IpAddr::V6(Ipv6Addr::from(*b))
            };
            Addr { ip, prefix }
        };
        let mode = cfg.key_mode;
        let five = mode == KeyMode::FiveTuple;
        let l4 = if raw.flags & F_PORTS != 0 {
            L4::Ports {
                src: raw.sport,
                dst: raw.dport,
            }
        } else if raw.flags & F_ICMP != 0 {
            L4::Icmp {
                kind: raw.sport as u8,
                code: raw.dport as u8,
            }
        } else {
            L4::None
        };
        FlowKey {
            src: mode.has_src().then(|| addr(&raw.src)),
            dst: mode.has_dst().then(|| addr(&raw.dst)),
            proto: five.then_some(raw.proto),
            l4: if five { l4 } else { L4::None },
            fragment: five && raw.flags & F_FRAGMENT != 0,
            vlan: cfg.vlan.then_some(raw.vlan),
        }
    }

    /// The protocol's name for tcp, udp, icmp, icmpv6 and sctp, else its number.
    pub fn proto_text(&self) -> Option<String> {
        self.proto.map(proto_text)
    }

    /// The key's port fields (sport, dport), if it has ports.
    pub fn ports(&self) -> Option<(u16, u16)> {
        match self.l4 {
            L4::Ports { src, dst } => Some((src, dst)),
            _ => None,
        }
    }

    /// The key's ICMP type and code, if it has them.
    pub fn icmp(&self) -> Option<(u8, u8)> {
        match self.l4 {
            L4::Icmp { kind, code } => Some((kind, code)),
            _ => None,
        }
    }
}

/// Protocols known by name, in records and on the command line.
const PROTOCOLS: [(u8, &str); 5] = [
    (1, "icmp"),
    (6, "tcp"),
    (17, "udp"),
    (58, "icmpv6"),
    (132, "sctp"),
];

/// The name of IP protocol `p` (tcp, udp, icmp, icmpv6, sctp), if it has one.
pub fn proto_name(p: u8) -> Option<&'static str> {
    PROTOCOLS.iter().find(|(n, _)| *n == p).map(|(_, s)| *s)
}

/// The protocol's name, or its number.
pub fn proto_text(p: u8) -> String {
    proto_name(p).map_or_else(|| p.to_string(), str::to_string)
}

/// A protocol from its name or number.
pub fn parse_proto(s: &str) -> Option<u8> {
    PROTOCOLS
        .iter()
        .find(|(_, name)| *name == s)
        .map(|(n, _)| *n)
        .or_else(|| s.parse().ok())
}

/// The `key` object of flow records: only the fields of the key mode, as
/// `{"src":"10.0.0.1","dst":...,"proto":"udp","sport":..,"dport":..}`
/// (`icmp_type`/`icmp_code` for ICMP, `vlan` with VLAN keys; a protocol
/// without a name is its number).
impl Serialize for FlowKey {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut m = s.serialize_map(None)?;
        if let Some(a) = self.src {
            m.serialize_entry("src", &a.to_string())?;
        }
        if let Some(a) = self.dst {
            m.serialize_entry("dst", &a.to_string())?;
        }
        if let Some(p) = self.proto {
            match proto_name(p) {
                Some(name) => m.serialize_entry("proto", name)?,
                None => m.serialize_entry("proto", &p)?,
            }
        }
        match self.l4 {
            L4::Ports { src, dst } => {
                m.serialize_entry("sport", &src)?;
                m.serialize_entry("dport", &dst)?;
            }
            L4::Icmp { kind, code } => {
                m.serialize_entry("icmp_type", &kind)?;
                m.serialize_entry("icmp_code", &code)?;
            }
            L4::None => {}
        }
        if let Some(v) = self.vlan {
            m.serialize_entry("vlan", &v)?;
        }
        m.end()
    }
}

/// A raw record: key, counts, IP-layer bytes.
pub(crate) type RawFlow = (nl_flow_key, Count, u64);

/// Decode raw keys under `cfg`, dropping zero counts; records of one key
/// are added up when `merge` (a key may then appear more than once).
pub(crate) fn decode_flows(
    raw: impl Iterator<Item = RawFlow>,
    cfg: &LedgerConfig,
    merge: bool,
) -> Vec<(FlowKey, Count, u64)> {
    let raw = raw.filter(|(_, c, _)| !c.is_zero());
    if !merge {
        return raw
            .map(|(k, c, ip)| (FlowKey::from_raw(&k, cfg), c, ip))
            .collect();
    }
    // Sort by the raw key bytes and merge neighbours: cheaper than hashing
    // decoded keys when a cut holds a million records.
    let mut recs: Vec<([u8; 44], RawFlow)> = raw.map(|r| (r.0.to_bytes(), r)).collect();
    recs.sort_unstable_by_key(|r| r.0);
    let mut out: Vec<(FlowKey, Count, u64)> = Vec::with_capacity(recs.len());
    let mut last: Option<[u8; 44]> = None;
    for (bytes, (k, c, ip)) in recs {
        match out.last_mut() {
            Some(prev) if last == Some(bytes) => {
                prev.1.add(c);
                prev.2 += ip;
            }
            _ => {
                out.push((FlowKey::from_raw(&k, cfg), c, ip));
                last = Some(bytes);
            }
        }
    }
    out
}

impl fmt::Display for FlowKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut parts: Vec<String> = Vec::new();
        match self.vlan {
            Some(0) => parts.push("untagged".into()),
            Some(v) => parts.push(format!("vlan {v}")),
            None => {}
        }
        let with_port = |a: &Addr, port: Option<u16>| match (a.ip, port) {
            (IpAddr::V6(_), Some(p)) => format!("[{a}]:{p}"),
            (_, Some(p)) => format!("{a}:{p}"),
            _ => a.to_string(),
        };
        let (sp, dp) = match self.l4 {
            L4::Ports { src, dst } => (Some(src), Some(dst)),
            _ => (None, None),
        };
        match (self.src, self.dst) {
            (Some(s), Some(d)) => {
                parts.push(format!("{} > {}", with_port(&s, sp), with_port(&d, dp)))
            }
            (Some(s), None) => parts.push(format!("src {}", s)),
            (None, Some(d)) => parts.push(format!("dst {}", d)),
            (None, None) => {}
        }
        if let Some(p) = self.proto_text() {
            parts.push(p);
        }
        if let L4::Icmp { kind, code } = self.l4 {
            parts.push(format!("type {kind} code {code}"));
        }
        if self.fragment {
            parts.push("fragment".into());
        }
        f.write_str(&parts.join(" "))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn raw_v4(flags: u8) -> nl_flow_key {
        let mut k = nl_flow_key {
            family: 4,
            proto: 17,
            sport: 40000,
            dport: 53,
            vlan: 7,
            flags,
            ..Default::default()
        };
        k.src[..4].copy_from_slice(&[10, 0, 0, 1]);
        k.dst[..4].copy_from_slice(&[10, 0, 0, 2]);
        k
    }

    #[test]
    fn decoding_keeps_only_the_modes_fields() {
        let raw = raw_v4(F_PORTS);
        let five = LedgerConfig {
            vlan: true,
            ..Default::default()
        };
        let k = FlowKey::from_raw(&raw, &five);
        assert_eq!(
            serde_json::to_string(&k).unwrap(),
            r#"{"src":"10.0.0.1","dst":"10.0.0.2","proto":"udp","sport":40000,"dport":53,"vlan":7}"#
        );
        assert_eq!(k.to_string(), "vlan 7 10.0.0.1:40000 > 10.0.0.2:53 udp");
        for (mode, json) in [
            (KeyMode::SrcIp, r#"{"src":"10.0.0.1"}"#),
            (KeyMode::DstIp, r#"{"dst":"10.0.0.2"}"#),
            (KeyMode::IpPair, r#"{"src":"10.0.0.1","dst":"10.0.0.2"}"#),
        ] {
            let cfg = LedgerConfig {
                key_mode: mode,
                ..Default::default()
            };
            let k = FlowKey::from_raw(&raw, &cfg);
            assert_eq!(serde_json::to_string(&k).unwrap(), json, "{mode}");
        }
    }

    #[test]
    fn icmp_fragments_prefixes_and_unnamed_protocols() {
        let mut raw = raw_v4(F_ICMP);
        raw.proto = 1;
        raw.sport = 8;
        raw.dport = 0;
        let cfg = LedgerConfig::default();
        assert_eq!(
            serde_json::to_string(&FlowKey::from_raw(&raw, &cfg)).unwrap(),
            r#"{"src":"10.0.0.1","dst":"10.0.0.2","proto":"icmp","icmp_type":8,"icmp_code":0}"#
        );
        let mut frag = raw_v4(F_FRAGMENT);
        frag.proto = 47;
        let k = FlowKey::from_raw(&frag, &cfg);
        assert!(k.fragment);
        assert_eq!(
            serde_json::to_string(&k).unwrap(),
            r#"{"src":"10.0.0.1","dst":"10.0.0.2","proto":47}"#
        );
        let pre = LedgerConfig {
            key_mode: KeyMode::SrcIp,
            prefix4: Some(24),
            ..Default::default()
        };
        let mut masked = raw_v4(0);
        masked.src[3] = 0;
        assert_eq!(
            serde_json::to_string(&FlowKey::from_raw(&masked, &pre)).unwrap(),
            r#"{"src":"10.0.0.0/24"}"#
        );
    }

    #[test]
    fn protocol_names_round_trip() {
        for p in [1u8, 6, 17, 58, 132, 47] {
            assert_eq!(parse_proto(&proto_text(p)), Some(p));
        }
        assert_eq!(parse_proto("gre"), None);
        assert_eq!(proto_name(6), Some("tcp"));
    }

    #[test]
    fn merging_adds_records_of_one_key() {
        let cfg = LedgerConfig::default();
        let a = raw_v4(F_PORTS);
        let mut b = a;
        b.sport = 1;
        let c = |p| Count {
            packets: p,
            bytes: p * 100,
        };
        let out = decode_flows(
            [
                (a, c(1), 10),
                (b, c(2), 20),
                (a, c(3), 30),
                (b, Count::default(), 0),
            ]
            .into_iter(),
            &cfg,
            true,
        );
        assert_eq!(out.len(), 2);
        let total: u64 = out.iter().map(|(_, c, _)| c.packets).sum();
        assert_eq!(total, 6);
        assert!(out
            .iter()
            .any(|(k, c, ip)| k.ports() == Some((40000, 53)) && c.packets == 4 && *ip == 40));
    }
}
