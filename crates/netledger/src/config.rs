//! What is fixed when a ledger is loaded: key mode, prefixes, capacity,
//! strategy; and how its data path is attached.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::skel::types::{nl_config, nl_key_mode};

/// `ALL`, `name()`, `Display` and `FromStr` for an enum whose values have
/// names (on the command line, in the settings file and the manifest).
macro_rules! named {
    ($ty:ident, $what:literal, $expected:literal, { $($v:ident => $n:literal),+ $(,)? }) => {
        impl $ty {
            /// Every value.
            pub const ALL: [$ty; [$($n),+].len()] = [$($ty::$v),+];

            /// The value's name.
            pub fn name(self) -> &'static str {
                match self {
                    $($ty::$v => $n),+
                }
            }
        }

        impl fmt::Display for $ty {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.name())
            }
        }

        impl FromStr for $ty {
            type Err = Error;
            fn from_str(s: &str) -> Result<Self> {
                Self::ALL
                    .into_iter()
                    .find(|m| m.name() == s)
                    .ok_or_else(|| Error::InvalidConfig {
                        what: $what,
                        value: s.to_string(),
                        expected: $expected,
                    })
            }
        }
    };
}

/// What a flow key is made of.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default, Serialize, Deserialize,
)]
#[serde(rename_all = "kebab-case")]
pub enum KeyMode {
    /// The source address (or prefix).
    SrcIp,
    /// The destination address (or prefix).
    DstIp,
    /// Both addresses.
    IpPair,
    /// Addresses, protocol, and ports (TCP, UDP, UDP-Lite, SCTP) or ICMP type and code.
    #[default]
    FiveTuple,
}

named!(KeyMode, "key mode", "src-ip, dst-ip, ip-pair or five-tuple", {
    SrcIp => "src-ip",
    DstIp => "dst-ip",
    IpPair => "ip-pair",
    FiveTuple => "five-tuple",
});

impl KeyMode {
    /// The value of `enum nl_key_mode`.
    pub(crate) fn raw(self) -> nl_key_mode {
        match self {
            Self::SrcIp => nl_key_mode::NL_KEY_SRC_IP,
            Self::DstIp => nl_key_mode::NL_KEY_DST_IP,
            Self::IpPair => nl_key_mode::NL_KEY_IP_PAIR,
            Self::FiveTuple => nl_key_mode::NL_KEY_FIVE_TUPLE,
        }
    }

    /// Keys of this mode hold a source address.
    pub fn has_src(self) -> bool {
        self != Self::DstIp
    }

    /// Keys of this mode hold a destination address.
    pub fn has_dst(self) -> bool {
        self != Self::SrcIp
    }
}

/// How counters are kept, read and cut.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Strategy {
    /// One counter per flow behind a spin lock: coherent live reads, cuts
    /// and resets by an in-kernel exchange, idle keys evicted.
    Lock,
    /// Per-CPU counters without locks or atomics in map-in-map inner maps;
    /// a cut swaps in the spare maps and reads the old ones after an RCU
    /// grace period. No live reads; a cut takes at least one grace period.
    /// The default: the cheapest data path (see docs/benchmarks.md).
    #[default]
    Swap,
}

named!(Strategy, "strategy", "lock or swap", {
    Lock => "lock",
    Swap => "swap",
});

/// Where a data path runs: ingress through XDP or tc, or egress through tc.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Hook {
    /// Ingress, XDP: every frame as the driver received it.
    #[default]
    Xdp,
    /// Ingress, tc (tcx): after GRO; a GRO packet counts as the frames it merged.
    TcIngress,
    /// Egress, tc (tcx): before GSO/TSO; a GSO packet counts as the frames
    /// it becomes on the wire.
    TcEgress,
}

impl Hook {
    /// The direction the hook counts.
    pub fn direction(self) -> crate::record::Direction {
        match self {
            Hook::Xdp | Hook::TcIngress => crate::record::Direction::In,
            Hook::TcEgress => crate::record::Direction::Out,
        }
    }

    /// "xdp" or "tc".
    pub fn name(self) -> &'static str {
        match self {
            Hook::Xdp => "xdp",
            Hook::TcIngress | Hook::TcEgress => "tc",
        }
    }

    /// The value of `enum nl_hook`.
    pub(crate) fn raw(self) -> crate::skel::types::nl_hook {
        use crate::skel::types::nl_hook;
        match self {
            Hook::Xdp => nl_hook::NL_HOOK_XDP,
            Hook::TcIngress => nl_hook::NL_HOOK_TC_INGRESS,
            Hook::TcEgress => nl_hook::NL_HOOK_TC_EGRESS,
        }
    }
}

impl fmt::Display for Hook {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// How the XDP program is attached.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum XdpMode {
    /// Native if the driver supports it, generic otherwise.
    #[default]
    Auto,
    /// In the driver; fails if the driver has no XDP support.
    Native,
    /// On the generic (skb) path; works on every interface, slower.
    Generic,
}

named!(XdpMode, "XDP mode", "auto, native or generic", {
    Auto => "auto",
    Native => "native",
    Generic => "generic",
});

/// Everything fixed at load time.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LedgerConfig {
    /// What a flow key is made of.
    pub key_mode: KeyMode,
    /// Make the outer VLAN id part of the key.
    pub vlan: bool,
    /// Aggregate IPv4 addresses to this prefix length (1..=32).
    pub prefix4: Option<u8>,
    /// Aggregate IPv6 addresses to this prefix length (1..=128).
    pub prefix6: Option<u8>,
    /// Capacity of the flow map; packets of new keys beyond it land in `map_full`.
    pub max_flows: u32,
    /// How counters are kept and cut.
    pub strategy: Strategy,
    /// Evict a key after this many consecutive cuts without traffic (0:
    /// never). Strategy `lock`; `swap` starts every interval empty anyway.
    pub idle_cuts: u32,
}

impl Default for LedgerConfig {
    fn default() -> Self {
        Self {
            key_mode: KeyMode::FiveTuple,
            vlan: false,
            prefix4: None,
            prefix6: None,
            max_flows: 65536,
            strategy: Strategy::default(),
            idle_cuts: 0,
        }
    }
}

impl LedgerConfig {
    /// Check every value is in its range.
    pub fn validate(&self) -> Result<()> {
        check_prefix(
            self.prefix4,
            32,
            "IPv4 prefix length",
            "a prefix length from 1 to 32",
        )?;
        check_prefix(
            self.prefix6,
            128,
            "IPv6 prefix length",
            "a prefix length from 1 to 128",
        )?;
        if self.max_flows == 0 {
            return Err(Error::InvalidConfig {
                what: "flow map size",
                value: "0".into(),
                expected: "at least 1",
            });
        }
        Ok(())
    }

    /// The `nl_config` of a data path at `hook`; masks in network byte order.
    pub(crate) fn raw_at(&self, hook: Hook) -> nl_config {
        nl_config {
            hook: hook.raw(),
            ..self.raw()
        }
    }

    /// The `nl_config` the data path reads; masks in network byte order.
    pub(crate) fn raw(&self) -> nl_config {
        let mask6 = prefix_mask(self.prefix6.unwrap_or(128), 128).to_be_bytes();
        let word = |i: usize| u32::from_ne_bytes(mask6[i * 4..i * 4 + 4].try_into().unwrap());
        nl_config {
            key_mode: self.key_mode.raw(),
            vlan: self.vlan as u32,
            mask4: u32::from_ne_bytes(
                (prefix_mask(self.prefix4.unwrap_or(32), 32) as u32).to_be_bytes(),
            ),
            mask6: [word(0), word(1), word(2), word(3)],
            hook: Hook::Xdp.raw(),
        }
    }
}

/// The mask of a `len`-bit prefix in a `bits`-bit address, as a number.
fn prefix_mask(len: u8, bits: u32) -> u128 {
    let len = u32::from(len).min(bits);
    let all = if bits == 128 {
        u128::MAX
    } else {
        (1u128 << bits) - 1
    };
    if len == 0 {
        0
    } else {
        (all << (bits - len)) & all
    }
}

/// A prefix length, when given, from 1 to `max`.
fn check_prefix(
    prefix: Option<u8>,
    max: u8,
    what: &'static str,
    expected: &'static str,
) -> Result<()> {
    match prefix {
        Some(p) if !(1..=max).contains(&p) => Err(Error::InvalidConfig {
            what,
            value: p.to_string(),
            expected,
        }),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn masks_are_network_order() {
        let cfg = LedgerConfig {
            prefix4: Some(24),
            prefix6: Some(64),
            ..Default::default()
        };
        let raw = cfg.raw();
        assert_eq!(raw.mask4.to_ne_bytes(), [255, 255, 255, 0]);
        assert_eq!(raw.mask6[0].to_ne_bytes(), [255; 4]);
        assert_eq!(raw.mask6[1].to_ne_bytes(), [255; 4]);
        assert_eq!(raw.mask6[2], 0);
        assert_eq!(raw.mask6[3], 0);
        let full = LedgerConfig::default().raw();
        assert_eq!(full.mask4, u32::MAX);
        assert_eq!(full.mask6, [u32::MAX; 4]);
    }

    #[test]
    fn bad_prefixes_are_refused() {
        for (p4, p6) in [
            (Some(0), None),
            (Some(33), None),
            (None, Some(129)),
            (None, Some(0)),
        ] {
            let cfg = LedgerConfig {
                prefix4: p4,
                prefix6: p6,
                ..Default::default()
            };
            assert!(cfg.validate().is_err(), "{p4:?} {p6:?}");
        }
    }
}
