//! The Prometheus sink: every interval advances the counters, and the
//! endpoint serves the set as of the last cut (a scrape between cuts sees
//! that cut, so every scrape is exact and consistent).
//!
//! Metrics (names after node_exporter's and Prometheus's rules):
//! `netledger_receive_{packets,bytes}_total{interface}` and
//! `netledger_transmit_*` (every frame the ingress / egress hook saw: the
//! `seen` bucket), `netledger_bucket_{packets,bytes}_total{interface,direction,bucket}`,
//! `netledger_flows{interface,direction}` (keys with traffic in the last
//! interval), `netledger_cut_duration_seconds` (histogram),
//! `netledger_last_cut_timestamp_seconds`, `netledger_build_info{version,strategy}`,
//! per-flow `netledger_flow_{packets,bytes}_total` for the top N keys when
//! asked, `netledger_flow_series_dropped_total`, and
//! `netledger_export_dropped_total{sink}`.

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use netledger::{Bucket, Buckets, Count, Direction, FlowKey, Interval, Sink, SinkError, Strategy};

use crate::prometheus::{Family, Histogram, MetricsServer};

/// Bounds of the cut-duration histogram, in seconds.
const CUT_BUCKETS: [f64; 10] = [0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 5.0];

/// A per-flow series: which key, and its totals since it entered the top.
type Series = HashMap<(String, Direction, FlowKey), Count>;

/// Serves Prometheus metrics from the intervals it is handed.
pub struct MetricsSink {
    server: MetricsServer,
    strategy: Strategy,
    totals: BTreeMap<(String, Direction), Buckets>,
    flows: BTreeMap<(String, Direction), usize>,
    last_cut: Option<SystemTime>,
    cut_durations: Histogram,
    top_flows: usize,
    series: Series,
    series_dropped: u64,
    export_dropped: BTreeMap<String, u64>,
}

impl MetricsSink {
    /// Serve at `addr`; `top_flows` per-flow series (0: none).
    pub fn start(
        addr: SocketAddr,
        strategy: Strategy,
        top_flows: usize,
    ) -> Result<MetricsSink, crate::prometheus::Error> {
        let sink = MetricsSink {
            server: MetricsServer::start(addr)?,
            strategy,
            totals: BTreeMap::new(),
            flows: BTreeMap::new(),
            last_cut: None,
            cut_durations: Histogram::new(&CUT_BUCKETS)?,
            top_flows,
            series: HashMap::new(),
            series_dropped: 0,
            export_dropped: BTreeMap::new(),
        };
        sink.publish()?;
        Ok(sink)
    }

    /// Where it serves.
    pub fn local_addr(&self) -> SocketAddr {
        self.server.local_addr()
    }

    /// Start the counters of `iface`/`dir` from `totals` (what the store
    /// already holds), so that they never go backwards across restarts.
    pub fn seed(&mut self, iface: &str, dir: Direction, totals: Buckets) {
        self.totals.insert((iface.to_string(), dir), totals);
        let _ = self.publish();
    }

    /// One cut took `d` (published with the next interval).
    pub fn cut_took(&mut self, d: Duration) {
        self.cut_durations.observe(d.as_secs_f64());
    }

    /// The export sink `name` has dropped `total` records so far.
    pub fn export_dropped(&mut self, name: &str, total: u64) {
        self.export_dropped.insert(name.to_string(), total);
    }

    fn families(&self) -> Result<Vec<Family>, crate::prometheus::Error> {
        let mut out = Vec::new();
        for (dir, what) in [(Direction::In, "receive"), (Direction::Out, "transmit")] {
            let mut packets = Family::counter(
                &format!("netledger_{what}_packets_total"),
                &format!(
                    "Frames the {} hook saw (every bucket), as of the last cut.",
                    if dir == Direction::In {
                        "ingress"
                    } else {
                        "egress"
                    }
                ),
            )?;
            let mut bytes = Family::counter(
                &format!("netledger_{what}_bytes_total"),
                "Their L2 bytes (Ethernet header and VLAN tags included), as of the last cut.",
            )?;
            for ((iface, d), b) in &self.totals {
                if *d == dir {
                    let seen = b.get(Bucket::Seen);
                    packets.add(&[("interface", iface)], seen.packets as f64)?;
                    bytes.add(&[("interface", iface)], seen.bytes as f64)?;
                }
            }
            out.push(packets);
            out.push(bytes);
        }
        let mut bp = Family::counter(
            "netledger_bucket_packets_total",
            "Frames per conservation bucket; seen equals the sum of the others.",
        )?;
        let mut bb = Family::counter(
            "netledger_bucket_bytes_total",
            "Bytes per conservation bucket; seen equals the sum of the others.",
        )?;
        for ((iface, dir), b) in &self.totals {
            for bucket in Bucket::ALL {
                let c = b.get(bucket);
                let labels = [
                    ("interface", iface.as_str()),
                    ("direction", dir.name()),
                    ("bucket", bucket.name()),
                ];
                bp.add(&labels, c.packets as f64)?;
                bb.add(&labels, c.bytes as f64)?;
            }
        }
        out.push(bp);
        out.push(bb);
        let mut flows =
            Family::gauge("netledger_flows", "Keys with traffic in the last interval.")?;
        for ((iface, dir), n) in &self.flows {
            flows.add(
                &[("interface", iface), ("direction", dir.name())],
                *n as f64,
            )?;
        }
        out.push(flows);
        let mut hist = Family::histogram(
            "netledger_cut_duration_seconds",
            "How long a cut took: taking it from the kernel, committing and clearing (since this process started).",
        )?;
        hist.add_histogram(&[], &self.cut_durations)?;
        out.push(hist);
        let mut last = Family::gauge(
            "netledger_last_cut_timestamp_seconds",
            "When the last cut ended, in seconds since the Unix epoch.",
        )?;
        if let Some(t) = self.last_cut {
            let secs = t
                .duration_since(UNIX_EPOCH)
                .unwrap_or_default()
                .as_secs_f64();
            last.add(&[], secs)?;
        }
        out.push(last);
        let mut info = Family::info("netledger_build_info", "The running netledger.")?;
        info.add_info(&[
            ("version", env!("CARGO_PKG_VERSION")),
            ("strategy", self.strategy.name()),
        ])?;
        out.push(info);
        if self.top_flows > 0 {
            let mut fp = Family::counter(
                "netledger_flow_packets_total",
                "Frames of the top flows by bytes, since each entered the top (in this process).",
            )?;
            let mut fb = Family::counter(
                "netledger_flow_bytes_total",
                "Bytes of the top flows by bytes, since each entered the top (in this process).",
            )?;
            let mut series: Vec<_> = self.series.iter().collect();
            series.sort_by(|a, b| b.1.bytes.cmp(&a.1.bytes).then(a.0.cmp(b.0)));
            for ((iface, dir, key), c) in series {
                let mut labels: Vec<(&str, String)> = vec![
                    ("interface", iface.clone()),
                    ("direction", dir.name().into()),
                ];
                labels.extend(key_labels(key));
                let labels: Vec<(&str, &str)> =
                    labels.iter().map(|(k, v)| (*k, v.as_str())).collect();
                fp.add(&labels, c.packets as f64)?;
                fb.add(&labels, c.bytes as f64)?;
            }
            out.push(fp);
            out.push(fb);
        }
        let mut dropped = Family::counter(
            "netledger_flow_series_dropped_total",
            "Flow records of intervals that the per-flow series cap left out (since this process started).",
        )?;
        dropped.add(&[], self.series_dropped as f64)?;
        out.push(dropped);
        let mut exp = Family::counter(
            "netledger_export_dropped_total",
            "Records an export sink dropped because its collector was down or unreachable (since this process started).",
        )?;
        for (sink, n) in &self.export_dropped {
            exp.add(&[("sink", sink)], *n as f64)?;
        }
        out.push(exp);
        Ok(out)
    }

    fn publish(&self) -> Result<(), crate::prometheus::Error> {
        self.server.publish(&self.families()?)
    }

    /// Keep the top N keys of this interval, by bytes, as series.
    fn track_flows(&mut self, iv: &Interval) {
        if self.top_flows == 0 {
            self.series_dropped += iv.flows.len() as u64;
            return;
        }
        // Flows come most bytes first.
        let mut added = std::collections::HashSet::new();
        for (i, (key, c)) in iv.flows.iter().enumerate() {
            let id = (iv.iface.clone(), iv.dir, *key);
            if let Some(s) = self.series.get_mut(&id) {
                s.add(*c);
            } else if i < self.top_flows {
                self.series.insert(id.clone(), *c);
            } else {
                self.series_dropped += 1;
                continue;
            }
            added.insert(id);
        }
        // Over the cap: the series with the fewest bytes go, and with them
        // this interval's record of each, which is then left out too.
        if self.series.len() > self.top_flows {
            let mut by_bytes: Vec<_> = self
                .series
                .iter()
                .map(|(k, c)| (c.bytes, k.clone()))
                .collect();
            by_bytes.sort();
            let excess = self.series.len() - self.top_flows;
            for (_, k) in by_bytes.into_iter().take(excess) {
                self.series.remove(&k);
                if added.contains(&k) {
                    self.series_dropped += 1;
                }
            }
        }
    }
}

/// The labels of a key: only the fields of its mode.
fn key_labels(k: &FlowKey) -> Vec<(&'static str, String)> {
    let mut out = Vec::new();
    if let Some(a) = k.src {
        out.push(("src", a.to_string()));
    }
    if let Some(a) = k.dst {
        out.push(("dst", a.to_string()));
    }
    if let Some(p) = k.proto_text() {
        out.push(("proto", p));
    }
    if let Some((s, d)) = k.ports() {
        out.push(("sport", s.to_string()));
        out.push(("dport", d.to_string()));
    }
    if let Some((t, c)) = k.icmp() {
        out.push(("icmp_type", t.to_string()));
        out.push(("icmp_code", c.to_string()));
    }
    // A non-first fragment is a key of its own (no L4 fields): without this
    // label it would share the series of its protocol's whole datagrams.
    if k.fragment {
        out.push(("fragment", "true".into()));
    }
    if let Some(v) = k.vlan {
        out.push(("vlan", v.to_string()));
    }
    out
}

impl Sink for MetricsSink {
    fn interval(&mut self, iv: &Interval) -> Result<(), SinkError> {
        self.totals
            .entry((iv.iface.clone(), iv.dir))
            .or_default()
            .add(&iv.buckets);
        self.flows
            .insert((iv.iface.clone(), iv.dir), iv.flows.len());
        self.last_cut = Some(iv.end);
        self.track_flows(iv);
        self.publish()?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::net::{IpAddr, Ipv4Addr};

    use netledger::{Addr, L4};

    use super::*;

    /// A non-first fragment of a protocol without ports and that protocol's
    /// whole datagrams are two keys: two label sets, never one series.
    #[test]
    fn a_fragment_key_has_labels_of_its_own() {
        let addr = |d| Addr {
            ip: IpAddr::V4(Ipv4Addr::new(10, 0, 0, d)),
            prefix: 32,
        };
        let whole = FlowKey {
            src: Some(addr(1)),
            dst: Some(addr(2)),
            proto: Some(47),
            l4: L4::None,
            fragment: false,
            vlan: None,
        };
        let fragment = FlowKey {
            fragment: true,
            ..whole
        };
        assert_ne!(key_labels(&whole), key_labels(&fragment));
        assert!(key_labels(&fragment).contains(&("fragment", "true".to_string())));
    }
}
