use std::collections::HashMap;
use std::time::{Duration, SystemTime};

use serde::Serialize;

use crate::key::FlowKey;
use crate::types::{nl_count, NL_NR_BUCKETS};

/// Packets and bytes, always from the same instant.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize)]
pub struct Count {
    pub packets: u64,
    pub bytes: u64,
}

impl Count {
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
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
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
    pub const ALL: [Bucket; NL_NR_BUCKETS] = [
        Bucket::Seen,
        Bucket::Counted,
        Bucket::NonIp,
        Bucket::Malformed,
        Bucket::MapFull,
        Bucket::EvictRace,
    ];
    /// The buckets that partition `Seen`.
    pub const PARTS: [Bucket; NL_NR_BUCKETS - 1] = [
        Bucket::Counted,
        Bucket::NonIp,
        Bucket::Malformed,
        Bucket::MapFull,
        Bucket::EvictRace,
    ];

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

    fn index(self) -> usize {
        self as usize
    }
}

/// A reading of every conservation bucket, and two counters beside them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Buckets {
    pub counts: [Count; NL_NR_BUCKETS],
    /// Packets that met an evicted slot and were counted in their key's new
    /// one (already in `counted`; shows the eviction race was run).
    pub reroutes: u64,
    /// Keys evicted (cuts only).
    pub evicted: u64,
}

impl Buckets {
    pub fn get(&self, b: Bucket) -> Count {
        self.counts[b.index()]
    }

    pub fn add_to(&mut self, b: Bucket, c: Count) {
        self.counts[b.index()].add(c);
    }

    /// `seen == counted + non_ip + malformed + map_full`, packets and bytes.
    pub fn conserved(&self) -> bool {
        let mut sum = Count::default();
        for b in Bucket::PARTS {
            sum.add(self.get(b));
        }
        sum == self.get(Bucket::Seen)
    }

    pub fn since(&self, earlier: &Buckets) -> Buckets {
        let mut out = Buckets::default();
        for (i, c) in out.counts.iter_mut().enumerate() {
            *c = self.counts[i].since(earlier.counts[i]);
        }
        out.reroutes = self.reroutes.wrapping_sub(earlier.reroutes);
        out
    }
}

/// Every flow's counters and the buckets, read at one moment. Each flow is
/// coherent on its own (copied under its lock); the buckets are a settled
/// per-CPU reading.
#[derive(Debug, Clone)]
pub struct Snapshot {
    pub at: SystemTime,
    pub flows: HashMap<FlowKey, Count>,
    pub buckets: Buckets,
}

impl Snapshot {
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

/// What happened between two snapshots.
#[derive(Debug, Clone)]
pub struct Interval {
    pub start: SystemTime,
    pub end: SystemTime,
    pub flows: Vec<(FlowKey, Count)>,
    pub buckets: Buckets,
}

impl Interval {
    /// An interval of these flows (zero counts dropped, most bytes first).
    pub fn new(
        start: SystemTime,
        end: SystemTime,
        flows: Vec<(FlowKey, Count)>,
        buckets: Buckets,
    ) -> Interval {
        let mut flows: Vec<(FlowKey, Count)> =
            flows.into_iter().filter(|(_, c)| !c.is_zero()).collect();
        flows.sort_unstable_by(|a, b| {
            b.1.bytes
                .cmp(&a.1.bytes)
                .then(b.1.packets.cmp(&a.1.packets))
                .then(a.0.cmp(&b.0))
        });
        Interval {
            start,
            end,
            flows,
            buckets,
        }
    }

    /// The sum of the flow records.
    pub fn flow_total(&self) -> Count {
        let mut t = Count::default();
        for (_, c) in &self.flows {
            t.add(*c);
        }
        t
    }

    pub fn duration(&self) -> Duration {
        self.end.duration_since(self.start).unwrap_or_default()
    }
}
