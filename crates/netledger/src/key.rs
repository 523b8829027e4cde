use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use crate::config::{KeyMode, LedgerConfig};
use crate::types::{nl_flow_key, NL_KEY_F_FRAGMENT, NL_KEY_F_ICMP, NL_KEY_F_PORTS};

/// An address, or an address prefix when keys are aggregated.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Addr {
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
    Ports {
        src: u16,
        dst: u16,
    },
    Icmp {
        kind: u8,
        code: u8,
    },
}

/// A flow key with only the fields of its key mode.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct FlowKey {
    pub src: Option<Addr>,
    pub dst: Option<Addr>,
    /// IP protocol number (five-tuple mode).
    pub proto: Option<u8>,
    pub l4: L4,
    /// A non-first IP fragment (five-tuple mode): no L4 fields.
    pub fragment: bool,
    /// Outer VLAN id with `--vlan`; 0 for an untagged frame.
    pub vlan: Option<u16>,
}

impl FlowKey {
    /// Decode a key of the data path under the configuration it was made with.
    pub fn from_raw(raw: &nl_flow_key, cfg: &LedgerConfig) -> Self {
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
        let l4 = if raw.flags & NL_KEY_F_PORTS != 0 {
            L4::Ports {
                src: raw.sport,
                dst: raw.dport,
            }
        } else if raw.flags & NL_KEY_F_ICMP != 0 {
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
            fragment: five && raw.flags & NL_KEY_F_FRAGMENT != 0,
            vlan: cfg.vlan.then_some(raw.vlan),
        }
    }

    /// The protocol's name for tcp, udp, icmp, icmpv6 and sctp, else its number.
    pub fn proto_name(&self) -> Option<String> {
        self.proto.map(proto_name)
    }
}

pub fn proto_name(p: u8) -> String {
    match p {
        1 => "icmp".into(),
        6 => "tcp".into(),
        17 => "udp".into(),
        58 => "icmpv6".into(),
        132 => "sctp".into(),
        n => n.to_string(),
    }
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
        if let Some(p) = self.proto_name() {
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
