//! The IPFIX sink: every interval's flow records, and its buckets as an
//! options record, to each collector. A collector that is down never blocks
//! cutting: its records are dropped and counted.

use std::time::UNIX_EPOCH;

use netledger::{Bucket, Direction, Interval, Sink, SinkError};

use crate::ipfix::{
    BucketCount, BucketsRecord, Direction as IpfixDirection, Exporter, ExporterConfig, FlowRecord,
    IpfixError,
};

/// flowEndReason for interval cuts: the flow is still active.
const ACTIVE_TIMEOUT: u8 = 2;

/// Sends intervals to IPFIX collectors.
pub struct IpfixSink {
    exporter: Exporter,
    collectors: Vec<String>,
    /// Per collector: records dropped so far, and whether the last interval
    /// dropped some (to say so once when that changes).
    dropping: Vec<(u64, bool)>,
    /// What changed at the last interval, for the caller to log.
    changes: Vec<String>,
}

fn ms(t: std::time::SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH).unwrap_or_default().as_millis() as u64
}

impl IpfixSink {
    /// Export to every collector of `config`.
    pub fn new(config: ExporterConfig) -> Result<IpfixSink, IpfixError> {
        let collectors = config.collectors.clone();
        Ok(IpfixSink {
            exporter: Exporter::new(config)?,
            dropping: vec![(0, false); collectors.len()],
            collectors,
            changes: Vec::new(),
        })
    }

    /// Each collector's URL and the records dropped for it so far.
    pub fn dropped(&self) -> Vec<(String, u64)> {
        self.collectors
            .iter()
            .enumerate()
            .map(|(i, c)| (c.clone(), self.exporter.dropped_total(i).unwrap_or(0)))
            .collect()
    }

    /// What changed at the last interval (a collector that started or
    /// stopped dropping records), one line each, for the log.
    pub fn take_changes(&mut self) -> Vec<String> {
        std::mem::take(&mut self.changes)
    }

    /// The records of one interval.
    pub fn records(iv: &Interval) -> (Vec<FlowRecord>, BucketsRecord) {
        let direction = match iv.dir {
            Direction::In => IpfixDirection::In,
            Direction::Out => IpfixDirection::Out,
        };
        let ifindex = netledger::ifindex(&iv.iface).unwrap_or(0);
        let (start_ms, end_ms) = (ms(iv.start), ms(iv.end));
        let flows = iv
            .flows
            .iter()
            .enumerate()
            .map(|(i, (k, c))| FlowRecord {
                src: k.src.map(|a| a.ip),
                dst: k.dst.map(|a| a.ip),
                proto: k.proto,
                ports: k.ports(),
                icmp: k.icmp(),
                vlan: k.vlan,
                direction,
                ifindex,
                start_ms,
                end_ms,
                packets: c.packets,
                // The data path counts each datagram's own length; without
                // it, the frame less an untagged Ethernet header.
                ip_octets: iv
                    .ip_bytes
                    .get(i)
                    .copied()
                    .unwrap_or(c.bytes.saturating_sub(c.packets * 14)),
                l2_octets: c.bytes,
                end_reason: ACTIVE_TIMEOUT,
            })
            .collect();
        let count = |b: Bucket| {
            let c = iv.buckets.get(b);
            BucketCount {
                packets: c.packets,
                octets: c.bytes,
            }
        };
        let buckets = BucketsRecord {
            direction,
            ifindex,
            start_ms,
            end_ms,
            seen: count(Bucket::Seen),
            counted: count(Bucket::Counted),
            non_ip: count(Bucket::NonIp),
            malformed: count(Bucket::Malformed),
            map_full: count(Bucket::MapFull),
            evict_race: count(Bucket::EvictRace),
        };
        (flows, buckets)
    }
}

impl Sink for IpfixSink {
    fn interval(&mut self, iv: &Interval) -> Result<(), SinkError> {
        let (flows, buckets) = IpfixSink::records(iv);
        // A collector that is down drops and counts; it never fails the cut.
        let report = self.exporter.export(&flows, &[buckets]);
        let why = report
            .errors
            .first()
            .map_or_else(|| "send failed".to_string(), |e| e.to_string());
        for (i, url) in self.collectors.iter().enumerate() {
            let total = self.exporter.dropped_total(i).unwrap_or(0);
            let (before, was) = self.dropping[i];
            let now = total > before;
            if now && !was {
                self.changes.push(format!(
                    "{url}: dropping records until it is reachable ({why}); they are counted"
                ));
            } else if was && !now {
                self.changes.push(format!(
                    "{url}: reachable again ({total} records dropped so far)"
                ));
            }
            self.dropping[i] = (total, now);
        }
        Ok(())
    }
}
