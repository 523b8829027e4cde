//! Capture the export on `lo` with tshark and decode it with Wireshark's
//! IPFIX dissector (`cflow`): no malformed frames, no expert warnings, and
//! the decoded fields carry the exported values.
//!
//! Capture: `tshark -i lo -f "udp port P or udp port Q" -w FILE`, stopped
//! with SIGTERM. Decode: `tshark -r FILE -d udp.port==P,cflow
//! -d udp.port==Q,cflow -T fields -E occurrence=a -E aggregator=, -e ...`.

#[path = "ipfix_common/mod.rs"]
mod common;

use std::net::{IpAddr, UdpSocket};
use std::process::Command;
use std::thread::sleep;
use std::time::{Duration, Instant, SystemTime};

use common::*;
use netledger_sinks::ipfix::{BucketsRecord, Direction, Exporter, ExporterConfig, FlowRecord};

const FIELDS: [&str; 18] = [
    "frame.number",
    "udp.dstport",
    "cflow.sequence",
    "cflow.srcaddr",
    "cflow.srcaddrv6",
    "cflow.dstaddr",
    "cflow.dstaddrv6",
    "cflow.srcport",
    "cflow.protocol",
    "cflow.packets",
    "cflow.octets",
    "cflow.layer2_octet_delta_count",
    "cflow.vlanid",
    "cflow.ignore_packets",
    "cflow.direction",
    "cflow.flow_end_reason",
    "_ws.expert.severity",
    "_ws.malformed",
];

fn col(name: &str) -> usize {
    FIELDS
        .iter()
        .position(|f| *f == name)
        .unwrap_or_else(|| panic!("no column {name}"))
}

fn split(cell: &str) -> Vec<String> {
    cell.split(',')
        .filter(|s| !s.is_empty())
        .map(str::to_string)
        .collect()
}

#[test]
fn tshark_decodes_the_export_without_errors() {
    require_tool("tshark");
    assert!(is_root(), "capturing on lo needs root");
    let dir = tempfile::tempdir().expect("temp dir");
    let pcap = dir.path().join("export.pcapng");
    // The collector port gets a socket so no ICMP unreachables are sent; the
    // control port receives one deliberately malformed message.
    let sink = UdpSocket::bind("127.0.0.1:0").expect("bind sink");
    let port = sink.local_addr().expect("addr").port();
    let control = UdpSocket::bind("127.0.0.1:0").expect("bind control");
    let control_port = control.local_addr().expect("addr").port();

    let filter = format!("udp port {port} or udp port {control_port}");
    let mut tshark = start_tshark(None, dir.path(), "lo", &filter, &pcap);

    let mut ex = Exporter::new(ExporterConfig {
        collectors: vec![format!("udp://127.0.0.1:{port}")],
        mtu: 400,
        ..ExporterConfig::default()
    })
    .expect("exporter");
    let start = now_ms() - 30_000;
    let flows = sample_flows(start);
    let buckets = [
        sample_buckets(Direction::In, 2, start),
        sample_buckets(Direction::Out, 3, start),
    ];
    let t0 = Instant::now();
    let mut exported: Vec<(Vec<FlowRecord>, Vec<BucketsRecord>)> = Vec::new();
    // Two calls within the refresh interval, then one after it, so the
    // capture also holds a template refresh.
    for (secs, f, b) in [
        (0, &flows[..4], &buckets[..1]),
        (1, &flows[4..], &buckets[1..]),
        (61, &flows[..], &buckets[..]),
    ] {
        let r = ex.export_at(t0 + Duration::from_secs(secs), SystemTime::now(), f, b);
        assert!(r.errors.is_empty(), "{:?}", r.errors);
        exported.push((f.to_vec(), b.to_vec()));
    }
    // A template set whose field count runs past the set: tshark must flag it.
    let malformed = [
        0u8, 10, 0, 28, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2, 0, 12, 1, 0, 0, 3, 0, 8, 0, 4,
    ];
    control
        .send_to(&malformed, ("127.0.0.1", control_port))
        .expect("send control");
    sleep(Duration::from_millis(500));
    tshark.stop();

    let out = Command::new("tshark")
        .arg("-r")
        .arg(&pcap)
        .args(["-d", &format!("udp.port=={port},cflow")])
        .args(["-d", &format!("udp.port=={control_port},cflow")])
        .args(["-T", "fields", "-E", "occurrence=a", "-E", "aggregator=,"])
        .args(FIELDS.iter().flat_map(|f| ["-e", f]))
        .output()
        .expect("run tshark -r");
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let rows: Vec<Vec<&str>> = text
        .lines()
        .map(|l| l.split('\t').collect())
        .filter(|r: &Vec<&str>| r.len() == FIELDS.len())
        .collect();
    let (export_rows, control_rows): (Vec<_>, Vec<_>) = rows
        .into_iter()
        .partition(|r| r[col("udp.dstport")] == port.to_string());

    // The check can fail: the control message is flagged as malformed.
    assert_eq!(control_rows.len(), 1, "{text}");
    assert!(!control_rows[0][col("_ws.malformed")].is_empty(), "{text}");

    assert!(export_rows.len() >= 4, "expected several frames:\n{text}");
    let mut seq = 0u64;
    let mut got = std::collections::HashMap::<&str, Vec<String>>::new();
    for r in &export_rows {
        assert!(
            r[col("_ws.expert.severity")].is_empty() && r[col("_ws.malformed")].is_empty(),
            "frame {} has expert info: {text}",
            r[col("frame.number")]
        );
        assert_eq!(r[col("cflow.sequence")], seq.to_string(), "{text}");
        let records =
            split(r[col("cflow.packets")]).len() + split(r[col("cflow.ignore_packets")]).len();
        seq += records as u64;
        for name in FIELDS {
            got.entry(name).or_default().extend(split(r[col(name)]));
        }
    }

    let all_flows: Vec<&FlowRecord> = exported.iter().flat_map(|(f, _)| f).collect();
    let v4 = |a: Option<IpAddr>| a.filter(IpAddr::is_ipv4).map(|a| a.to_string());
    let v6 = |a: Option<IpAddr>| a.filter(IpAddr::is_ipv6).map(|a| a.to_string());
    let expect = |name: &str, values: Vec<String>| {
        assert_eq!(
            got.get(name).cloned().unwrap_or_default(),
            values,
            "{name}:\n{text}"
        );
    };
    expect(
        "cflow.srcaddr",
        all_flows.iter().filter_map(|f| v4(f.src)).collect(),
    );
    expect(
        "cflow.dstaddr",
        all_flows.iter().filter_map(|f| v4(f.dst)).collect(),
    );
    expect(
        "cflow.srcaddrv6",
        all_flows.iter().filter_map(|f| v6(f.src)).collect(),
    );
    expect(
        "cflow.dstaddrv6",
        all_flows.iter().filter_map(|f| v6(f.dst)).collect(),
    );
    expect(
        "cflow.srcport",
        all_flows
            .iter()
            .filter_map(|f| f.ports.map(|p| p.0.to_string()))
            .collect(),
    );
    expect(
        "cflow.protocol",
        all_flows
            .iter()
            .filter_map(|f| f.proto.map(|p| p.to_string()))
            .collect(),
    );
    expect(
        "cflow.packets",
        all_flows.iter().map(|f| f.packets.to_string()).collect(),
    );
    expect(
        "cflow.octets",
        all_flows.iter().map(|f| f.ip_octets.to_string()).collect(),
    );
    expect(
        "cflow.layer2_octet_delta_count",
        all_flows.iter().map(|f| f.l2_octets.to_string()).collect(),
    );
    expect(
        "cflow.vlanid",
        all_flows
            .iter()
            .filter_map(|f| f.vlan.map(|v| v.to_string()))
            .collect(),
    );
    expect(
        "cflow.flow_end_reason",
        all_flows.iter().map(|f| f.end_reason.to_string()).collect(),
    );
    // flowDirection: each call's flows, then its buckets records (scope).
    expect(
        "cflow.direction",
        exported
            .iter()
            .flat_map(|(f, b)| {
                f.iter()
                    .map(|f| f.direction)
                    .chain(b.iter().map(|b| b.direction))
            })
            .map(|d| d.flow_direction().to_string())
            .collect(),
    );
    // ignoredPacketTotalCount: running totals per (direction, interface);
    // each sample record ignores 4 + 3 + 2 + 1 = 10 packets.
    expect(
        "cflow.ignore_packets",
        ["10", "10", "20", "20"].map(String::from).to_vec(),
    );
    let total_records: usize = exported.iter().map(|(f, b)| f.len() + b.len()).sum();
    assert_eq!(seq, total_records as u64);
}
