//! Intervals in full between processes (the service hands them to `top`
//! over its control socket): every field of the record model, as one JSON
//! object per interval. The JSON-lines records of `watch` are for people
//! and tools; this is for netledger's own processes.

use serde::{Deserialize, Serialize};

use crate::ctl;
use crate::key::{Addr, FlowKey, L4};
use crate::record::{Bucket, Buckets, Count, Direction, Interval};

/// One flow record.
#[derive(Debug, Serialize, Deserialize)]
struct WireFlow {
    #[serde(skip_serializing_if = "Option::is_none", default)]
    src: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    dst: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    proto: Option<u8>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    ports: Option<(u16, u16)>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    icmp: Option<(u8, u8)>,
    #[serde(skip_serializing_if = "std::ops::Not::not", default)]
    fragment: bool,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    vlan: Option<u16>,
    packets: u64,
    bytes: u64,
}

/// One interval, every field.
#[derive(Debug, Serialize, Deserialize)]
pub struct WireInterval {
    iface: String,
    dir: Direction,
    seq: u64,
    start_ns: u64,
    end_ns: u64,
    flows: Vec<WireFlow>,
    /// Every bucket's (packets, bytes), `seen` first.
    buckets: Vec<(String, u64, u64)>,
    reroutes: u64,
    evicted: u64,
}

fn addr(s: &str) -> Option<Addr> {
    let (ip, prefix) = match s.split_once('/') {
        Some((ip, p)) => (ip.parse().ok()?, p.parse().ok()?),
        None => {
            let ip: std::net::IpAddr = s.parse().ok()?;
            (ip, if ip.is_ipv4() { 32 } else { 128 })
        }
    };
    Some(Addr { ip, prefix })
}

impl Interval {
    /// The interval as one line of JSON, every field.
    pub fn to_wire(&self) -> String {
        let w = WireInterval {
            iface: self.iface.clone(),
            dir: self.dir,
            seq: self.seq,
            start_ns: ctl::ns(self.start),
            end_ns: ctl::ns(self.end),
            flows: self
                .flows
                .iter()
                .map(|(k, c)| WireFlow {
                    src: k.src.map(|a| a.to_string()),
                    dst: k.dst.map(|a| a.to_string()),
                    proto: k.proto,
                    ports: k.ports(),
                    icmp: k.icmp(),
                    fragment: k.fragment,
                    vlan: k.vlan,
                    packets: c.packets,
                    bytes: c.bytes,
                })
                .collect(),
            buckets: Bucket::ALL
                .iter()
                .map(|b| {
                    let c = self.buckets.get(*b);
                    (b.name().to_string(), c.packets, c.bytes)
                })
                .collect(),
            reroutes: self.buckets.reroutes,
            evicted: self.buckets.evicted,
        };
        serde_json::to_string(&w).expect("an interval serialises")
    }

    /// An interval from [`Interval::to_wire`]'s line.
    pub fn from_wire(line: &str) -> Result<Interval, String> {
        let w: WireInterval = serde_json::from_str(line).map_err(|e| e.to_string())?;
        let mut flows = Vec::with_capacity(w.flows.len());
        for f in w.flows {
            let parse = |a: Option<String>| -> Result<Option<Addr>, String> {
                a.map(|s| addr(&s).ok_or(format!("bad address {s:?}")))
                    .transpose()
            };
            let l4 = match (f.ports, f.icmp) {
                (Some((src, dst)), _) => L4::Ports { src, dst },
                (None, Some((kind, code))) => L4::Icmp { kind, code },
                _ => L4::None,
            };
            flows.push((
                FlowKey {
                    src: parse(f.src)?,
                    dst: parse(f.dst)?,
                    proto: f.proto,
                    l4,
                    fragment: f.fragment,
                    vlan: f.vlan,
                },
                Count {
                    packets: f.packets,
                    bytes: f.bytes,
                },
            ));
        }
        let mut buckets = Buckets::default();
        for (name, packets, bytes) in w.buckets {
            let b = Bucket::from_name(&name).ok_or(format!("unknown bucket {name:?}"))?;
            buckets.add_to(b, Count { packets, bytes });
        }
        buckets.reroutes = w.reroutes;
        buckets.evicted = w.evicted;
        let mut iv = Interval::new(ctl::time(w.start_ns), ctl::time(w.end_ns), flows, buckets)
            .labelled(&w.iface, w.dir);
        iv.seq = w.seq;
        Ok(iv)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, UNIX_EPOCH};

    #[test]
    fn an_interval_survives_the_wire() {
        let k = |s: &str, l4, fragment| FlowKey {
            src: addr(s),
            dst: addr("fd00::1"),
            proto: Some(17),
            l4,
            fragment,
            vlan: Some(3),
        };
        let mut b = Buckets::default();
        b.add_to(
            Bucket::Seen,
            Count {
                packets: 9,
                bytes: 900,
            },
        );
        b.add_to(
            Bucket::Counted,
            Count {
                packets: 9,
                bytes: 900,
            },
        );
        b.evicted = 2;
        let t = UNIX_EPOCH + Duration::from_nanos(1_795_640_400_123_456_789);
        let mut iv = Interval::new(
            t,
            t + Duration::from_millis(1500),
            vec![
                (
                    k("fd00::2", L4::Ports { src: 1, dst: 2 }, false),
                    Count {
                        packets: 5,
                        bytes: 500,
                    },
                ),
                (
                    k("fd00::/64", L4::None, true),
                    Count {
                        packets: 4,
                        bytes: 400,
                    },
                ),
            ],
            b,
        )
        .labelled("eth0", Direction::Out);
        iv.seq = 42;
        let back = Interval::from_wire(&iv.to_wire()).unwrap();
        assert_eq!(back.iface, "eth0");
        assert_eq!(back.dir, Direction::Out);
        assert_eq!((back.seq, back.start, back.end), (42, iv.start, iv.end));
        assert_eq!(back.flows, iv.flows);
        assert_eq!(back.buckets, iv.buckets);
    }
}
