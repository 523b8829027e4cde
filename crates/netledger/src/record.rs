//! The record model every output is written from: counts, conservation
//! buckets, and intervals of flow records; and their JSON shape.

use std::collections::HashMap;
use std::fmt;
use std::str::FromStr;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::ser::{SerializeMap, Serializer};
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::key::FlowKey;
use crate::skel::types::{nl_bucket, nl_count, NR_BUCKETS};

/// Packets and bytes, always from the same instant.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Count {
    /// Frames.
    pub packets: u64,
    /// Their L2 length (Ethernet header and VLAN tags included).
    pub bytes: u64,
}

impl Count {
    /// Add `other` to this count.
    pub fn add(&mut self, other: Count) {
        self.packets += other.packets;
        self.bytes += other.bytes;
    }

    /// `self - earlier`; counters only grow, so this never underflows for a
    /// later reading of the same counter.
    pub fn since(self, earlier: Count) -> Count {
        Count {
            packets: self.packets.wrapping_sub(earlier.packets),
            bytes: self.bytes.wrapping_sub(earlier.bytes),
        }
    }

    /// No packet and no byte.
    pub fn is_zero(&self) -> bool {
        self.packets == 0 && self.bytes == 0
    }
}

impl From<nl_count> for Count {
    fn from(c: nl_count) -> Self {
        Count {
            packets: c.packets,
            bytes: c.bytes,
        }
    }
}

/// The conservation buckets (`enum nl_bucket`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Bucket {
    /// Every frame the hook saw.
    Seen,
    /// Added to its flow.
    Counted,
    /// Not IPv4 or IPv6 (ARP, LLDP, more than two VLAN tags, ...).
    NonIp,
    /// Truncated or inconsistent headers.
    Malformed,
    /// A new flow found the flow map full.
    MapFull,
    /// Met its flow while it was being evicted, twice over: not attributable.
    EvictRace,
}

impl Bucket {
    /// Every bucket, `seen` first.
    pub const ALL: [Bucket; NR_BUCKETS] = [
        Bucket::Seen,
        Bucket::Counted,
        Bucket::NonIp,
        Bucket::Malformed,
        Bucket::MapFull,
        Bucket::EvictRace,
    ];
    /// The buckets that partition `Seen`.
    pub const PARTS: [Bucket; NR_BUCKETS - 1] = [
        Bucket::Counted,
        Bucket::NonIp,
        Bucket::Malformed,
        Bucket::MapFull,
        Bucket::EvictRace,
    ];

    /// The bucket's name in records.
    pub fn name(self) -> &'static str {
        match self {
            Bucket::Seen => "seen",
            Bucket::Counted => "counted",
            Bucket::NonIp => "non_ip",
            Bucket::Malformed => "malformed",
            Bucket::MapFull => "map_full",
            Bucket::EvictRace => "evict_race",
        }
    }

    /// The bucket with this name.
    pub fn from_name(s: &str) -> Option<Bucket> {
        Self::ALL.into_iter().find(|b| b.name() == s)
    }

    /// Its index in `nl_stats.bucket`: the value of `enum nl_bucket`.
    fn index(self) -> usize {
        let raw = match self {
            Bucket::Seen => nl_bucket::NL_BUCKET_SEEN,
            Bucket::Counted => nl_bucket::NL_BUCKET_COUNTED,
            Bucket::NonIp => nl_bucket::NL_BUCKET_NON_IP,
            Bucket::Malformed => nl_bucket::NL_BUCKET_MALFORMED,
            Bucket::MapFull => nl_bucket::NL_BUCKET_MAP_FULL,
            Bucket::EvictRace => nl_bucket::NL_BUCKET_EVICT_RACE,
        };
        raw.0 as usize
    }
}

/// A reading of every conservation bucket, and two counters beside them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Buckets {
    /// Indexed by `enum nl_bucket`.
    counts: [Count; NR_BUCKETS],
    /// Packets that met an evicted slot and were counted in their key's new
    /// one (already in `counted`; shows the eviction race was run).
    pub reroutes: u64,
    /// Keys evicted (cuts only).
    pub evicted: u64,
}

impl Buckets {
    /// One bucket's count.
    pub fn get(&self, b: Bucket) -> Count {
        self.counts[b.index()]
    }

    /// Add `c` to bucket `b`.
    pub fn add_to(&mut self, b: Bucket, c: Count) {
        self.counts[b.index()].add(c);
    }

    /// Add every bucket of `other`.
    pub fn add(&mut self, other: &Buckets) {
        for b in Bucket::ALL {
            self.add_to(b, other.get(b));
        }
        self.reroutes += other.reroutes;
        self.evicted += other.evicted;
    }

    /// `seen == counted + non_ip + malformed + map_full + evict_race`,
    /// packets and bytes.
    pub fn conserved(&self) -> bool {
        let mut sum = Count::default();
        for b in Bucket::PARTS {
            sum.add(self.get(b));
        }
        sum == self.get(Bucket::Seen)
    }

    /// The change from `earlier` to this reading.
    pub fn since(&self, earlier: &Buckets) -> Buckets {
        let mut out = Buckets::default();
        for (i, c) in out.counts.iter_mut().enumerate() {
            *c = self.counts[i].since(earlier.counts[i]);
        }
        out.reroutes = self.reroutes.wrapping_sub(earlier.reroutes);
        out
    }

    /// The counts in `enum nl_bucket` order.
    pub(crate) fn counts(&self) -> &[Count; NR_BUCKETS] {
        &self.counts
    }

    /// Buckets from raw per-bucket counts in `enum nl_bucket` order.
    pub(crate) fn from_counts(counts: [Count; NR_BUCKETS], reroutes: u64) -> Buckets {
        Buckets {
            counts,
            reroutes,
            evicted: 0,
        }
    }
}

/// Where a hook sits: frames arriving at the interface, or leaving it.
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize,
)]
#[serde(rename_all = "lowercase")]
pub enum Direction {
    /// Ingress: frames the interface receives.
    #[default]
    In,
    /// Egress: frames the interface sends.
    Out,
}

impl Direction {
    /// "in" or "out".
    pub fn name(self) -> &'static str {
        match self {
            Direction::In => "in",
            Direction::Out => "out",
        }
    }
}

impl fmt::Display for Direction {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Direction {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        match s {
            "in" => Ok(Direction::In),
            "out" => Ok(Direction::Out),
            _ => Err(Error::InvalidConfig {
                what: "direction",
                value: s.to_string(),
                expected: "in or out",
            }),
        }
    }
}

/// Every flow's counters and the buckets, read at one moment. Each flow is
/// coherent on its own (copied under its lock); the buckets are a settled
/// per-CPU reading.
#[derive(Debug, Clone)]
pub struct Snapshot {
    /// When the reading started.
    pub at: SystemTime,
    /// Counts per key.
    pub flows: HashMap<FlowKey, Count>,
    /// The buckets.
    pub buckets: Buckets,
}

impl Snapshot {
    /// A snapshot of nothing at `at`.
    pub fn empty(at: SystemTime) -> Self {
        Snapshot {
            at,
            flows: HashMap::new(),
            buckets: Buckets::default(),
        }
    }

    /// The deltas from `earlier` to `self`: flows with traffic in between,
    /// most bytes first.
    pub fn since(&self, earlier: &Snapshot) -> Interval {
        let flows: Vec<(FlowKey, Count)> = self
            .flows
            .iter()
            .map(|(k, c)| {
                (
                    *k,
                    c.since(earlier.flows.get(k).copied().unwrap_or_default()),
                )
            })
            .collect();
        Interval::new(
            earlier.at,
            self.at,
            flows,
            self.buckets.since(&earlier.buckets),
        )
    }
}

/// What one interface saw in one direction between two cuts: the flow
/// records (deltas; only keys with traffic) and the buckets. Every output
/// (text formats, the store, metrics, IPFIX) is written from this.
#[derive(Debug, Clone)]
pub struct Interval {
    /// The interface (empty for a ledger driven only by test runs).
    pub iface: String,
    /// The direction counted.
    pub dir: Direction,
    /// The cut's sequence number in its ledger's life (1, 2, ...; 0 for a
    /// cut that is not numbered, such as a reset's).
    pub seq: u64,
    /// The previous cut.
    pub start: SystemTime,
    /// This cut.
    pub end: SystemTime,
    /// Per-key deltas, most bytes first.
    pub flows: Vec<(FlowKey, Count)>,
    /// Each flow record's IP-layer bytes (the IP datagrams: no L2 header, no
    /// Ethernet padding), in the order of `flows`; empty where not counted.
    pub ip_bytes: Vec<u64>,
    /// The buckets' deltas.
    pub buckets: Buckets,
}

impl Interval {
    /// An interval of these flows (zero counts dropped, most bytes first),
    /// not yet labelled with an interface.
    pub fn new(
        start: SystemTime,
        end: SystemTime,
        flows: Vec<(FlowKey, Count)>,
        buckets: Buckets,
    ) -> Interval {
        let mut iv = Interval::with_ip_bytes(
            start,
            end,
            flows.into_iter().map(|(k, c)| (k, c, 0)).collect(),
            buckets,
        );
        iv.ip_bytes.clear();
        iv
    }

    /// The same, with each flow's IP-layer bytes.
    pub fn with_ip_bytes(
        start: SystemTime,
        end: SystemTime,
        flows: Vec<(FlowKey, Count, u64)>,
        buckets: Buckets,
    ) -> Interval {
        let mut flows: Vec<(FlowKey, Count, u64)> =
            flows.into_iter().filter(|(_, c, _)| !c.is_zero()).collect();
        flows.sort_unstable_by(|a, b| {
            b.1.bytes
                .cmp(&a.1.bytes)
                .then(b.1.packets.cmp(&a.1.packets))
                .then(a.0.cmp(&b.0))
        });
        let ip_bytes = flows.iter().map(|f| f.2).collect();
        Interval {
            iface: String::new(),
            dir: Direction::In,
            seq: 0,
            start,
            end,
            flows: flows.into_iter().map(|(k, c, _)| (k, c)).collect(),
            ip_bytes,
            buckets,
        }
    }

    /// The same interval labelled with where it was counted.
    pub fn labelled(mut self, iface: &str, dir: Direction) -> Interval {
        self.iface = iface.to_string();
        self.dir = dir;
        self
    }

    /// The sum of the flow records.
    pub fn flow_total(&self) -> Count {
        let mut t = Count::default();
        for (_, c) in &self.flows {
            t.add(*c);
        }
        t
    }

    /// How long it lasted.
    pub fn duration(&self) -> Duration {
        self.end.duration_since(self.start).unwrap_or_default()
    }

    /// The interval's records as JSON lines: the flow records, then the
    /// summary (`top` flows at most).
    pub fn records(&self, top: Option<usize>) -> impl Iterator<Item = Record<'_>> {
        let shown = self.flows.len().min(top.unwrap_or(usize::MAX));
        self.flows[..shown]
            .iter()
            .map(move |(key, count)| Record::Flow {
                iv: self,
                key,
                count: *count,
            })
            .chain(std::iter::once(Record::Summary { iv: self }))
    }
}

/// One JSON line of an interval:
/// `{"type":"flow","iface":..,"dir":"in","start":..,"end":..,"key":{..},"packets":..,"bytes":..}`
/// or `{"type":"summary",...,"seen":{..},"buckets":{"counted":{..},...}}`.
#[derive(Debug, Clone, Copy)]
pub enum Record<'a> {
    /// One key's delta.
    Flow {
        /// The interval it belongs to.
        iv: &'a Interval,
        /// The key.
        key: &'a FlowKey,
        /// Its packets and bytes in the interval.
        count: Count,
    },
    /// The interval's buckets.
    Summary {
        /// The interval.
        iv: &'a Interval,
    },
}

impl Serialize for Record<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut m = s.serialize_map(None)?;
        let iv = match self {
            Record::Flow { iv, .. } => {
                m.serialize_entry("type", "flow")?;
                iv
            }
            Record::Summary { iv } => {
                m.serialize_entry("type", "summary")?;
                iv
            }
        };
        m.serialize_entry("iface", &iv.iface)?;
        m.serialize_entry("dir", iv.dir.name())?;
        m.serialize_entry("start", &rfc3339(iv.start))?;
        m.serialize_entry("end", &rfc3339(iv.end))?;
        match self {
            Record::Flow { key, count, .. } => {
                m.serialize_entry("key", key)?;
                m.serialize_entry("packets", &count.packets)?;
                m.serialize_entry("bytes", &count.bytes)?;
            }
            Record::Summary { iv } => {
                m.serialize_entry("seen", &iv.buckets.get(Bucket::Seen))?;
                m.serialize_entry("buckets", &PartsOf(&iv.buckets))?;
            }
        }
        m.end()
    }
}

/// The buckets that partition `seen`, by name.
struct PartsOf<'a>(&'a Buckets);

impl Serialize for PartsOf<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut m = s.serialize_map(Some(Bucket::PARTS.len()))?;
        for b in Bucket::PARTS {
            m.serialize_entry(b.name(), &self.0.get(b))?;
        }
        m.end()
    }
}

/// An RFC 3339 UTC time stamp with milliseconds, e.g. 2026-11-25T21:00:00.000Z.
pub fn rfc3339(t: SystemTime) -> String {
    let d = t.duration_since(UNIX_EPOCH).unwrap_or_default();
    let secs = d.as_secs();
    let (days, rem) = (secs / 86400, secs % 86400);
    let (y, m, day) = civil_from_days(days as i64);
    format!(
        "{y:04}-{m:02}-{day:02}T{:02}:{:02}:{:02}.{:03}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60,
        d.subsec_millis()
    )
}

/// Days since 1970-01-01 to (year, month, day), proleptic Gregorian.
pub fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::key::{Addr, L4};

    #[test]
    fn formats_utc_with_millis() {
        let t = UNIX_EPOCH + Duration::from_millis(1_795_640_400_123);
        assert_eq!(rfc3339(t), "2026-11-25T21:00:00.123Z");
        assert_eq!(rfc3339(UNIX_EPOCH), "1970-01-01T00:00:00.000Z");
        let leap = UNIX_EPOCH + Duration::from_secs(951_782_400); // 2000-02-29
        assert_eq!(rfc3339(leap), "2000-02-29T00:00:00.000Z");
    }

    #[test]
    fn records_serialise_to_the_json_contract() {
        let t0 = UNIX_EPOCH + Duration::from_secs(1_795_640_400);
        let key = FlowKey {
            src: Some(Addr {
                ip: "10.0.0.1".parse().unwrap(),
                prefix: 32,
            }),
            dst: Some(Addr {
                ip: "10.0.0.2".parse().unwrap(),
                prefix: 32,
            }),
            proto: Some(17),
            l4: L4::Ports {
                src: 40000,
                dst: 9000,
            },
            fragment: false,
            vlan: None,
        };
        let c = Count {
            packets: 12,
            bytes: 1536,
        };
        let mut b = Buckets::default();
        b.add_to(
            Bucket::Seen,
            Count {
                packets: 13,
                bytes: 1578,
            },
        );
        b.add_to(Bucket::Counted, c);
        b.add_to(
            Bucket::NonIp,
            Count {
                packets: 1,
                bytes: 42,
            },
        );
        let iv = Interval::new(t0, t0 + Duration::from_secs(1), vec![(key, c)], b)
            .labelled("veth0", Direction::In);
        let lines: Vec<String> = iv
            .records(None)
            .map(|r| serde_json::to_string(&r).unwrap())
            .collect();
        assert_eq!(
            lines,
            [
                r#"{"type":"flow","iface":"veth0","dir":"in","start":"2026-11-25T21:00:00.000Z","end":"2026-11-25T21:00:01.000Z","key":{"src":"10.0.0.1","dst":"10.0.0.2","proto":"udp","sport":40000,"dport":9000},"packets":12,"bytes":1536}"#,
                r#"{"type":"summary","iface":"veth0","dir":"in","start":"2026-11-25T21:00:00.000Z","end":"2026-11-25T21:00:01.000Z","seen":{"packets":13,"bytes":1578},"buckets":{"counted":{"packets":12,"bytes":1536},"non_ip":{"packets":1,"bytes":42},"malformed":{"packets":0,"bytes":0},"map_full":{"packets":0,"bytes":0},"evict_race":{"packets":0,"bytes":0}}}"#,
            ]
        );
        assert!(iv.buckets.conserved());
        assert_eq!(iv.records(Some(0)).count(), 1);
    }
}
