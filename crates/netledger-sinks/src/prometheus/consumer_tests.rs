//! Tests against the real consumers of the exposition: `promtool` and a
//! Prometheus server, both from the `prometheus` package (2.42 on Debian 12).
//!
//! The binaries are looked up as `promtool` and `prometheus` on PATH, or at
//! the paths in the `PROMTOOL` and `PROMETHEUS` environment variables. The
//! tests fail, rather than skip, when a binary is missing, so that a machine
//! without them cannot pass unnoticed.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use netledger_lab::consumers::{promtool_check_metrics, tool, Prometheus, INSTALL};

use super::server::tests::loopback_any_port;
use super::{render, Family, Format, Histogram, MetricsServer};

/// A sink name that needs every kind of escaping in a label value.
const AWKWARD_SINK: &str = "file:/var/log/\"net\"\\ledger\nrotated";

const INTERFACES: [&str; 3] = ["eth0", "wlan0", "lo"];

/// The families netledger exposes, with plausible values. `scale` multiplies
/// the traffic counters so a second publication is distinguishable.
fn realistic_families(scale: f64) -> Vec<Family> {
    let mut families = Vec::new();
    for (name, help, per_interface) in [
        (
            "netledger_receive_packets_total",
            "Packets received on the interface, counted by the eBPF program.",
            [120_345.0, 5_012.0, 77.0],
        ),
        (
            "netledger_receive_bytes_total",
            "Bytes received on the interface, counted by the eBPF program.",
            [151_234_567.0, 6_400_100.0, 9_856.0],
        ),
        (
            "netledger_transmit_packets_total",
            "Packets transmitted on the interface, counted by the eBPF program.",
            [98_001.0, 4_100.0, 77.0],
        ),
        (
            "netledger_transmit_bytes_total",
            "Bytes transmitted on the interface, counted by the eBPF program.",
            [12_345_678.0, 300_400.0, 9_856.0],
        ),
    ] {
        let mut family = Family::counter(name, help).expect("valid family");
        for (interface, value) in INTERFACES.iter().zip(per_interface) {
            family
                .add(&[("interface", interface)], value * scale)
                .expect("valid sample");
        }
        families.push(family);
    }

    let mut bucket_packets = Family::counter(
        "netledger_bucket_packets_total",
        "Packets per traffic bucket, interface and direction.",
    )
    .expect("valid family");
    let mut bucket_bytes = Family::counter(
        "netledger_bucket_bytes_total",
        "Bytes per traffic bucket, interface and direction.",
    )
    .expect("valid family");
    let mut flows = Family::gauge(
        "netledger_flows",
        "Flows currently in the table, per interface and direction.",
    )
    .expect("valid family");
    for interface in ["eth0", "wlan0"] {
        for (d, direction) in ["receive", "transmit"].into_iter().enumerate() {
            for (b, bucket) in ["web", "dns", "other"].into_iter().enumerate() {
                let labels = [
                    ("interface", interface),
                    ("direction", direction),
                    ("bucket", bucket),
                ];
                let packets = (1000 * (b + 1) + 10 * d) as f64;
                bucket_packets
                    .add(&labels, packets * scale)
                    .expect("valid sample");
                bucket_bytes
                    .add(&labels, packets * 900.0 * scale)
                    .expect("valid sample");
            }
            flows
                .add(
                    &[("interface", interface), ("direction", direction)],
                    (17 + d) as f64,
                )
                .expect("valid sample");
        }
    }
    families.extend([bucket_packets, bucket_bytes, flows]);

    let mut cut = Histogram::new(&[
        0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0,
    ])
    .expect("valid buckets");
    for v in [0.0004, 0.0009, 0.003, 0.003, 0.02, 0.4, 1.5] {
        cut.observe(v);
    }
    let mut cut_family = Family::histogram(
        "netledger_cut_duration_seconds",
        "Time taken to cut the counters into a ledger entry.",
    )
    .expect("valid family");
    cut_family.add_histogram(&[], &cut).expect("valid sample");
    families.push(cut_family);

    let mut last_cut = Family::gauge(
        "netledger_last_cut_timestamp_seconds",
        "Unix time of the last completed cut.",
    )
    .expect("valid family");
    last_cut.add(&[], 1_767_225_600.25).expect("valid sample");
    families.push(last_cut);

    let mut build = Family::info(
        "netledger_build_info",
        "Version of netledger and the counter strategy it runs with.",
    )
    .expect("valid family");
    build
        .add_info(&[("version", "0.1.0"), ("strategy", "swap")])
        .expect("valid sample");
    families.push(build);

    let mut flow_packets = Family::counter(
        "netledger_flow_packets_total",
        "Packets per flow, for the flows within the series limit.",
    )
    .expect("valid family");
    let mut flow_bytes = Family::counter(
        "netledger_flow_bytes_total",
        "Bytes per flow, for the flows within the series limit.",
    )
    .expect("valid family");
    for (i, (src, dst, proto, sport, dport)) in [
        ("192.168.1.10", "93.184.216.34", "tcp", "51234", "443"),
        ("192.168.1.10", "9.9.9.9", "udp", "40000", "53"),
        ("2001:db8::10", "2001:db8::1", "tcp", "51000", "22"),
        ("10.0.0.2", "10.0.0.1", "icmp", "0", "0"),
    ]
    .into_iter()
    .enumerate()
    {
        let labels = [
            ("src", src),
            ("dst", dst),
            ("proto", proto),
            ("sport", sport),
            ("dport", dport),
        ];
        let packets = (i as f64 + 1.0) * 111.0;
        flow_packets.add(&labels, packets).expect("valid sample");
        flow_bytes
            .add(&labels, packets * 1400.0)
            .expect("valid sample");
    }
    families.extend([flow_packets, flow_bytes]);

    let mut dropped = Family::counter(
        "netledger_flow_series_dropped_total",
        "Flows left out of the flow series because of the series limit.",
    )
    .expect("valid family");
    dropped.add(&[], 3.0).expect("valid sample");
    families.push(dropped);

    let mut export_dropped = Family::counter(
        "netledger_export_dropped_total",
        "Ledger entries an export sink could not take and dropped.",
    )
    .expect("valid family");
    export_dropped
        .add(&[("sink", "stdout")], 0.0)
        .expect("valid sample");
    export_dropped
        .add(&[("sink", AWKWARD_SINK)], 2.0)
        .expect("valid sample");
    families.push(export_dropped);
    families
}

#[test]
fn promtool_check_metrics_is_clean_on_the_text_rendering() {
    let text = render(&realistic_families(1.0), Format::Text).expect("valid set");
    let (ok, printed) = promtool_check_metrics(&text);
    assert!(
        ok && printed.trim().is_empty(),
        "promtool check metrics complained:\n{printed}\n--- input ---\n{text}"
    );
}

#[test]
fn promtool_check_metrics_reports_lint_problems() {
    // Guards the test above: promtool really lints what it is given.
    let (ok, printed) =
        promtool_check_metrics("# HELP x_bytes h\n# TYPE x_bytes counter\nx_bytes 1\n");
    assert!(!ok && printed.contains("_total"), "{printed}");
}

/// `promtool check metrics` (2.42) only reads the 0.0.4 text format, so the
/// OpenMetrics rendering is checked by promtool's OpenMetrics importer
/// instead, which uses Prometheus's OpenMetrics parser. The importer wants a
/// timestamp on every sample, so the test appends one to each sample line.
#[test]
fn promtool_imports_the_openmetrics_rendering() {
    let families = realistic_families(1.0);
    let om = render(&families, Format::OpenMetrics).expect("valid set");
    let timestamp = 1_767_225_600;
    let stamped: String = om
        .lines()
        .map(|line| {
            if line.starts_with('#') {
                format!("{line}\n")
            } else {
                format!("{line} {timestamp}\n")
            }
        })
        .collect();
    let dir = tempfile::tempdir().expect("temp dir");
    let input = dir.path().join("metrics.om");
    std::fs::write(&input, &stamped).expect("write input");
    let blocks = dir.path().join("blocks");
    let output = Command::new(tool("promtool"))
        .args(["tsdb", "create-blocks-from", "openmetrics", "--quiet"])
        .arg(&input)
        .arg(&blocks)
        .output()
        .unwrap_or_else(|e| panic!("cannot run promtool: {e}; {INSTALL}"));
    assert!(
        output.status.success(),
        "promtool refused the OpenMetrics rendering:\n{}{}\n--- input ---\n{stamped}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );

    // `tsdb dump` wants the directory layout of a server; an empty WAL will do.
    std::fs::create_dir_all(blocks.join("wal")).expect("create wal dir");
    let dump = Command::new(tool("promtool"))
        .args(["tsdb", "dump"])
        .arg(&blocks)
        .output()
        .expect("promtool ran");
    assert!(dump.status.success(), "{dump:?}");
    let dump = String::from_utf8_lossy(&dump.stdout);
    let sample_lines = om.lines().filter(|l| !l.starts_with('#')).count();
    assert_eq!(
        dump.lines().count(),
        sample_lines,
        "one series per sample:\n{dump}"
    );
    for expected in [
        "{__name__=\"netledger_receive_bytes_total\", interface=\"eth0\"} 1.51234567e+08 1767225600000",
        "{__name__=\"netledger_build_info\", strategy=\"swap\", version=\"0.1.0\"} 1 1767225600000",
        "{__name__=\"netledger_cut_duration_seconds_bucket\", le=\"+Inf\"} 7 1767225600000",
        "{__name__=\"netledger_cut_duration_seconds_bucket\", le=\"1.0\"} 6 1767225600000",
        "{__name__=\"netledger_export_dropped_total\", sink=\"file:/var/log/\\\"net\\\"\\\\ledger\\nrotated\"} 2 1767225600000",
    ] {
        assert!(
            dump.lines().any(|l| l == expected),
            "missing {expected}\n{dump}"
        );
    }
}

/// A one-connection-at-a-time HTTP proxy that makes every request ask for
/// the 0.0.4 text format, because Prometheus 2.42 always prefers
/// OpenMetrics and cannot be told otherwise. It records the Content-Type of
/// each response it relays.
struct TextOnlyProxy {
    addr: SocketAddr,
    content_types: Arc<Mutex<Vec<String>>>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl TextOnlyProxy {
    fn start(upstream: SocketAddr) -> TextOnlyProxy {
        let listener = TcpListener::bind(loopback_any_port()).expect("bind proxy");
        let addr = listener.local_addr().expect("proxy addr");
        listener.set_nonblocking(true).expect("nonblocking proxy");
        let content_types = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let thread = {
            let content_types = Arc::clone(&content_types);
            let stop = Arc::clone(&stop);
            std::thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    match listener.accept() {
                        Ok((client, _)) => {
                            if let Some(ct) = relay(client, upstream) {
                                content_types.lock().expect("not poisoned").push(ct);
                            }
                        }
                        Err(_) => std::thread::sleep(Duration::from_millis(10)),
                    }
                }
            })
        };
        TextOnlyProxy {
            addr,
            content_types,
            stop,
            thread: Some(thread),
        }
    }
}

impl Drop for TextOnlyProxy {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// Relays one request with its Accept header replaced; returns the
/// response's Content-Type.
fn relay(mut client: TcpStream, upstream: SocketAddr) -> Option<String> {
    client.set_nonblocking(false).ok()?;
    client.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        if client.read(&mut byte).ok()? == 0 {
            return None;
        }
        head.push(byte[0]);
    }
    let head = String::from_utf8(head).ok()?;
    let mut rewritten = String::new();
    for line in head.trim_end().split("\r\n") {
        let name = line
            .split(':')
            .next()
            .unwrap_or_default()
            .to_ascii_lowercase();
        if name != "accept" && name != "connection" {
            rewritten.push_str(line);
            rewritten.push_str("\r\n");
        }
    }
    rewritten.push_str("Accept: text/plain;version=0.0.4\r\nConnection: close\r\n\r\n");
    let mut server = TcpStream::connect(upstream).ok()?;
    server.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    server.write_all(rewritten.as_bytes()).ok()?;
    let mut response = Vec::new();
    server.read_to_end(&mut response).ok()?;
    client.write_all(&response).ok()?;
    let text = String::from_utf8_lossy(&response);
    text.split("\r\n")
        .take_while(|l| !l.is_empty())
        .find_map(|l| {
            l.split_once(':')
                .filter(|(k, _)| k.eq_ignore_ascii_case("content-type"))
                .map(|(_, v)| v.trim().to_owned())
        })
}

fn by_job(
    result: &[(BTreeMap<String, String>, String)],
    label: &str,
) -> BTreeMap<(String, String), String> {
    result
        .iter()
        .map(|(labels, value)| {
            let job = labels.get("job").cloned().unwrap_or_default();
            let key = labels.get(label).cloned().unwrap_or_default();
            ((job, key), value.clone())
        })
        .collect()
}

const JOBS: [&str; 2] = ["netledger", "netledger_text"];

/// Expected `netledger_receive_bytes_total` per (job, interface).
fn expected_receive_bytes(scale: f64) -> BTreeMap<(String, String), String> {
    let values = [151_234_567.0, 6_400_100.0, 9_856.0];
    JOBS.iter()
        .flat_map(|job| {
            INTERFACES.iter().zip(values).map(move |(i, v)| {
                (
                    ((*job).to_owned(), (*i).to_owned()),
                    format!("{}", v * scale),
                )
            })
        })
        .collect()
}

#[test]
fn prometheus_scrapes_the_endpoint_in_both_formats() {
    let server = MetricsServer::start(loopback_any_port()).expect("start metrics server");
    server.publish(&realistic_families(1.0)).expect("publish");
    let proxy = TextOnlyProxy::start(server.local_addr());
    let dir = tempfile::tempdir().expect("temp dir");
    let prometheus = Prometheus::start_jobs(
        None,
        dir.path(),
        &[(JOBS[0], &[server.local_addr()]), (JOBS[1], &[proxy.addr])],
    );

    let expected = expected_receive_bytes(1.0);
    let got = prometheus.wait_for("netledger_receive_bytes_total", |r| {
        by_job(r, "interface") == expected
    });
    assert_eq!(got.len(), 6);

    // A new publication replaces the old one at the next scrape.
    server
        .publish(&realistic_families(2.0))
        .expect("publish again");
    let expected = expected_receive_bytes(2.0);
    prometheus.wait_for("netledger_receive_bytes_total", |r| {
        by_job(r, "interface") == expected
    });

    let up = prometheus.query("up");
    let up: BTreeMap<_, _> = by_job(&up, "job");
    for job in JOBS {
        assert_eq!(
            up.get(&(job.to_owned(), job.to_owned()))
                .map(String::as_str),
            Some("1"),
            "up for {job}: {up:?}"
        );
    }

    // The info metric is the same series from both formats.
    let build = prometheus.query("netledger_build_info");
    assert_eq!(build.len(), 2, "{build:?}");
    for (labels, value) in &build {
        assert_eq!(value, "1");
        assert_eq!(labels.get("version").map(String::as_str), Some("0.1.0"));
        assert_eq!(labels.get("strategy").map(String::as_str), Some("swap"));
    }

    // Bucket bounds are spelled alike in both formats, so `le` matches.
    for (le, count) in [("0.001", "2"), ("1.0", "6"), ("+Inf", "7")] {
        let buckets = prometheus.query(&format!(
            "netledger_cut_duration_seconds_bucket{{le=\"{le}\"}}"
        ));
        let values: Vec<&str> = buckets.iter().map(|(_, v)| v.as_str()).collect();
        assert_eq!(values, [count, count], "le={le}: {buckets:?}");
    }

    // Escaped label values arrive intact through both parsers.
    let awkward = prometheus.query("netledger_export_dropped_total");
    let sinks = by_job(&awkward, "sink");
    for job in JOBS {
        assert_eq!(
            sinks
                .get(&(job.to_owned(), AWKWARD_SINK.to_owned()))
                .map(String::as_str),
            Some("2"),
            "{sinks:?}"
        );
    }

    let flows = prometheus.query("netledger_flow_bytes_total{proto=\"udp\"}");
    assert_eq!(flows.len(), 2, "{flows:?}");
    assert_eq!(flows[0].0.get("dport").map(String::as_str), Some("53"));

    // The proxied job really was served the text format; the direct one
    // was negotiated to OpenMetrics, which Prometheus asks for first.
    let relayed = proxy.content_types.lock().expect("not poisoned").clone();
    assert!(!relayed.is_empty());
    assert!(
        relayed.iter().all(|ct| ct == super::TEXT_CONTENT_TYPE),
        "{relayed:?}"
    );
    assert!(server.scrapes_served() > relayed.len() as u64);
    drop(prometheus);
}
