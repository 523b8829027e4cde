//! Export to a real nfcapd (nfdump 1.7.1) on loopback and read the result
//! back with nfdump.
//!
//! nfcapd: `nfcapd -w DIR -b 127.0.0.1 -p PORT -t 60 -C none`, stopped with
//! SIGTERM so it flushes and renames its file; then
//! `TZ=UTC nfdump -r DIR -o json`.

#[path = "ipfix_common/mod.rs"]
mod common;

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::path::Path;
use std::thread::sleep;
use std::time::{Duration, Instant, SystemTime};

use common::*;
use netledger_sinks::ipfix::{Direction, Exporter, ExporterConfig, FlowRecord};
use serde_json::Value;

fn exporter(port: u16, mtu: usize) -> Exporter {
    Exporter::new(ExporterConfig {
        collectors: vec![format!("udp://127.0.0.1:{port}")],
        observation_domain_id: 7,
        mtu,
        ..ExporterConfig::default()
    })
    .expect("exporter")
}

/// What nfdump can show of a flow, in one comparable line.
fn expected_line(f: &FlowRecord) -> String {
    let addr = |a: Option<IpAddr>| a.map(|a| a.to_string()).unwrap_or_default();
    let (sp, dp) = f
        .ports
        .map(|(s, d)| (s.to_string(), d.to_string()))
        .unwrap_or_default();
    let icmp = f.icmp.map(|(t, c)| format!("{t}/{c}")).unwrap_or_default();
    let (in_if, out_if) = match f.direction {
        Direction::In => (f.ifindex, 0),
        Direction::Out => (0, f.ifindex),
    };
    format!(
        "src={} dst={} proto={} sport={sp} dport={dp} icmp={icmp} vlan={} dir={} in_if={in_if} \
         out_if={out_if} packets={} bytes={} first={} last={}",
        addr(f.src),
        addr(f.dst),
        f.proto.unwrap_or(0),
        f.vlan.map(|v| v.to_string()).unwrap_or_default(),
        f.direction.flow_direction(),
        f.packets,
        f.ip_octets,
        iso_utc_ms(f.start_ms),
        iso_utc_ms(f.end_ms),
    )
}

/// The same line built from one of nfdump's JSON records.
fn nfdump_line(v: &Value) -> String {
    let s = |k: &str| match v.get(k) {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Number(n)) => n.to_string(),
        _ => String::new(),
    };
    let src = [s("src4_addr"), s("src6_addr")].concat();
    let dst = [s("dst4_addr"), s("dst6_addr")].concat();
    let icmp = if v.get("icmp_type").is_some() {
        format!("{}/{}", s("icmp_type"), s("icmp_code"))
    } else {
        String::new()
    };
    format!(
        "src={src} dst={dst} proto={} sport={} dport={} icmp={icmp} vlan={} dir={} in_if={} \
         out_if={} packets={} bytes={} first={} last={}",
        s("proto"),
        s("src_port"),
        s("dst_port"),
        s("src_vlan"),
        s("direction"),
        s("input_snmp"),
        s("output_snmp"),
        s("in_packets"),
        s("in_bytes"),
        s("first"),
        s("last"),
    )
}

fn multiset(lines: impl IntoIterator<Item = String>) -> BTreeMap<String, usize> {
    let mut m = BTreeMap::new();
    for l in lines {
        *m.entry(l).or_insert(0) += 1;
    }
    m
}

/// Many flows of several shapes, with distinct packet counts.
fn many_flows(start_ms: u64, n: u32) -> Vec<FlowRecord> {
    (0..n)
        .map(|i| {
            let mut f = base_flow(start_ms);
            if i % 3 == 0 {
                f.src = Some(IpAddr::V6(Ipv6Addr::new(
                    0x2001, 0xdb8, 1, 0, 0, 0, 0, i as u16,
                )));
                f.dst = Some(IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, 2, 0, 0, 0, 0, 1)));
            } else {
                f.src = Some(IpAddr::V4(Ipv4Addr::new(10, 9, (i / 256) as u8, i as u8)));
            }
            if i % 2 == 1 {
                f.direction = Direction::Out;
                f.proto = Some(17);
            }
            f.ports = Some((20_000 + i as u16, 80));
            f.packets = 1_000 + u64::from(i);
            f.ip_octets = 64_000 + u64::from(i);
            f
        })
        .collect()
}

/// Lets the last datagrams arrive and stops nfcapd (it then flushes its
/// file); returns its output and the flows nfdump reads back, as lines.
fn collected(nfcapd: &mut Proc, dir: &Path) -> (String, BTreeMap<String, usize>) {
    sleep(Duration::from_millis(300));
    nfcapd.stop();
    let got = multiset(nfdump_json(dir).iter().map(nfdump_line));
    (nfcapd.output(), got)
}

/// The lines nfdump should show for `flows`.
fn expected(flows: &[FlowRecord]) -> BTreeMap<String, usize> {
    multiset(flows.iter().map(expected_line))
}

fn stats_line(log: &str) -> String {
    log.lines()
        .find(|l| l.contains("Sequence Errors"))
        .unwrap_or_default()
        .to_string()
}

#[test]
fn nfcapd_decodes_flows_split_over_many_messages() {
    let dir = tempfile::tempdir().expect("temp dir");
    let port = free_udp_port(None);
    let mut nfcapd = start_nfcapd(None, dir.path(), port);
    // A small MTU forces sets to be split over many messages.
    let mut ex = exporter(port, 300);
    let start = now_ms() - 60_000;
    let mut all = sample_flows(start);
    all.extend(many_flows(start, 60));
    for chunk in all.chunks(25) {
        let r = ex.export(chunk, &[]);
        assert_eq!(r.sent_records, chunk.len() as u64, "{:?}", r.errors);
        assert!(r.errors.is_empty(), "{:?}", r.errors);
    }
    let (log, got) = collected(&mut nfcapd, dir.path());
    assert_eq!(got, expected(&all), "nfcapd log:\n{log}");
    // nfcapd checks the header sequence numbers against the flows it decoded.
    assert!(
        stats_line(&log).contains(&format!("Flows: {}", all.len()))
            && stats_line(&log).contains("Sequence Errors: 0,"),
        "{log}"
    );
}

#[test]
fn nfcapd_decodes_flows_next_to_bucket_options_records() {
    let dir = tempfile::tempdir().expect("temp dir");
    let port = free_udp_port(None);
    let mut nfcapd = start_nfcapd(None, dir.path(), port);
    let mut ex = exporter(port, 1400);
    let start = now_ms() - 30_000;
    let flows = sample_flows(start);
    let r1 = ex.export(
        &flows[..3],
        &[
            sample_buckets(Direction::In, 2, start),
            sample_buckets(Direction::Out, 2, start),
        ],
    );
    let r2 = ex.export(&flows[3..], &[sample_buckets(Direction::In, 2, start)]);
    assert_eq!((r1.sent_records, r2.sent_records), (5, 5));
    let (log, got) = collected(&mut nfcapd, dir.path());
    // Every flow, and nothing made up from the options records.
    assert_eq!(got, expected(&flows), "nfcapd log:\n{log}");
    // nfcapd 1.7.1 ignores options templates it has no use for (it knows
    // sampling, interface and VRF names) and counts only flow records
    // against the sequence number, so the second message, whose sequence
    // rightly includes the two options records of the first, is reported
    // as one sequence error.
    let stats = stats_line(&log);
    assert!(
        stats.contains("Flows: 7,") && stats.contains("Sequence Errors: 1,"),
        "{log}"
    );
}

#[test]
fn nfcapd_started_late_decodes_records_after_template_refresh() {
    let dir = tempfile::tempdir().expect("temp dir");
    let port = free_udp_port(None);
    let mut ex = Exporter::new(ExporterConfig {
        collectors: vec![format!("udp://127.0.0.1:{port}")],
        template_refresh: Duration::from_secs(60),
        ..ExporterConfig::default()
    })
    .expect("exporter");
    let t0 = Instant::now();
    let start = now_ms() - 30_000;
    let phase = |first_port: u16| -> Vec<FlowRecord> {
        sample_flows(start)
            .into_iter()
            .enumerate()
            .map(|(i, mut f)| {
                // Ports tell the phases apart; ICMP flows carry none.
                if f.ports.is_some() {
                    f.ports = Some((first_port + i as u16, 9));
                }
                f.packets += u64::from(first_port);
                f
            })
            .collect()
    };
    let (before, unannounced, refreshed) = (phase(1_000), phase(2_000), phase(3_000));

    // Templates and data go out while no collector listens.
    let r = ex.export_at(t0, SystemTime::now(), &before, &[]);
    assert_eq!(r.sent_records, 7);

    let mut nfcapd = start_nfcapd(None, dir.path(), port);
    // Within the refresh interval: data only, which the late collector
    // cannot decode.
    let r = ex.export_at(
        t0 + Duration::from_secs(30),
        SystemTime::now(),
        &unannounced,
        &[],
    );
    assert_eq!(r.sent_records, 7);
    // The refresh is due: templates first, then the data.
    let r = ex.export_at(
        t0 + Duration::from_secs(60),
        SystemTime::now(),
        &refreshed,
        &[],
    );
    assert_eq!(r.sent_records, 7);
    let (log, got) = collected(&mut nfcapd, dir.path());
    assert_eq!(
        got,
        expected(&refreshed),
        "only the records after the refresh are decodable; nfcapd log:\n{log}"
    );
}
