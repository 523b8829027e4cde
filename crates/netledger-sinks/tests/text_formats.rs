//! Every text format's exact output for fixed intervals, against golden
//! files in tests/golden/ (regenerate with `UPDATE_GOLDEN=1 cargo test`).

use std::net::IpAddr;
use std::time::{Duration, UNIX_EPOCH};

use netledger::{
    Addr, Bucket, Buckets, Count, Direction, FlowKey, Interval, KeyMode, LedgerConfig, L4,
};
use netledger_sinks::{text_sink, TextFormat};

mod store_common;
use store_common::{golden, src_prefix_key};

fn addr(s: &str, prefix: Option<u8>) -> Addr {
    let ip: IpAddr = s.parse().unwrap();
    Addr {
        ip,
        prefix: prefix.unwrap_or(if ip.is_ipv4() { 32 } else { 128 }),
    }
}

fn count(packets: u64, bytes: u64) -> Count {
    Count { packets, bytes }
}

/// Two intervals of five-tuple keys with VLAN: IPv4 and IPv6 ports, ICMP,
/// a fragment, an unnamed protocol; buckets that add up.
fn five_tuple() -> Vec<Interval> {
    let t0 = UNIX_EPOCH + Duration::from_millis(1_795_640_400_000);
    let key = |src: &str, dst: &str, proto: u8, l4: L4, vlan: u16| FlowKey {
        src: Some(addr(src, None)),
        dst: Some(addr(dst, None)),
        proto: Some(proto),
        l4,
        fragment: false,
        vlan: Some(vlan),
    };
    let flows = vec![
        (
            key(
                "10.0.0.1",
                "10.0.0.2",
                17,
                L4::Ports {
                    src: 40000,
                    dst: 9000,
                },
                0,
            ),
            count(12, 1536),
        ),
        (
            key(
                "fd00::2",
                "fd00::1",
                6,
                L4::Ports {
                    src: 40004,
                    dst: 80,
                },
                0,
            ),
            count(3, 2200),
        ),
        (
            key(
                "10.0.42.2",
                "10.0.42.1",
                1,
                L4::Icmp { kind: 8, code: 0 },
                42,
            ),
            count(2, 196),
        ),
        (
            FlowKey {
                fragment: true,
                ..key("10.0.0.3", "10.0.0.2", 17, L4::None, 0)
            },
            count(1, 1514),
        ),
        (key("10.0.0.4", "10.0.0.2", 47, L4::None, 0), count(1, 90)),
    ];
    let mut b = Buckets::default();
    let counted = flows.iter().fold(Count::default(), |mut t, (_, c)| {
        t.add(*c);
        t
    });
    b.add_to(Bucket::Counted, counted);
    b.add_to(Bucket::NonIp, count(3, 126));
    b.add_to(Bucket::Malformed, count(2, 40));
    let mut seen = counted;
    seen.add(count(5, 166));
    b.add_to(Bucket::Seen, seen);
    let first = Interval::new(t0, t0 + Duration::from_millis(1000), flows, b)
        .labelled("veth0", Direction::In);
    let empty = Interval::new(
        t0 + Duration::from_millis(1000),
        t0 + Duration::from_millis(2250),
        Vec::new(),
        Buckets::default(),
    )
    .labelled("veth0", Direction::In);
    vec![first, empty]
}

/// One interval of source-prefix keys.
fn src_prefix() -> Vec<Interval> {
    let t0 = UNIX_EPOCH + Duration::from_millis(1_795_640_400_000);
    let key = src_prefix_key;
    let flows = vec![
        (key("10.0.0.0", 24), count(10, 10000)),
        (key("fd00::", 64), count(4, 4000)),
    ];
    let mut b = Buckets::default();
    b.add_to(Bucket::Counted, count(14, 14000));
    b.add_to(Bucket::Seen, count(14, 14000));
    vec![Interval::new(t0, t0 + Duration::from_secs(10), flows, b).labelled("eth0", Direction::In)]
}

fn render(format: TextFormat, cfg: &LedgerConfig, ivs: &[Interval], top: Option<usize>) -> String {
    let mut out = Vec::new();
    {
        let mut sink = text_sink(format, &mut out, cfg, top);
        for iv in ivs {
            sink.interval(iv).unwrap();
        }
        sink.close().unwrap();
    }
    String::from_utf8(out).unwrap()
}

fn five_cfg() -> LedgerConfig {
    LedgerConfig {
        vlan: true,
        ..Default::default()
    }
}

fn src_cfg() -> LedgerConfig {
    LedgerConfig {
        key_mode: KeyMode::SrcIp,
        prefix4: Some(24),
        prefix6: Some(64),
        ..Default::default()
    }
}

#[test]
fn table_five_tuple() {
    golden(
        "five_tuple.table",
        &render(TextFormat::Table, &five_cfg(), &five_tuple(), None),
    );
}

#[test]
fn table_shows_the_top_and_says_how_many_more() {
    golden(
        "five_tuple_top2.table",
        &render(TextFormat::Table, &five_cfg(), &five_tuple(), Some(2)),
    );
}

#[test]
fn jsonl_five_tuple() {
    let got = render(TextFormat::Jsonl, &five_cfg(), &five_tuple(), None);
    for line in got.lines() {
        let _: serde_json::Value = serde_json::from_str(line).unwrap();
    }
    golden("five_tuple.jsonl", &got);
}

#[test]
fn csv_five_tuple() {
    let got = render(TextFormat::Csv, &five_cfg(), &five_tuple(), None);
    let cols = got.lines().next().unwrap().split(',').count();
    assert!(got.lines().all(|l| l.split(',').count() == cols));
    golden("five_tuple.csv", &got);
}

#[test]
fn every_format_for_source_prefixes() {
    for (format, name) in [
        (TextFormat::Table, "src_prefix.table"),
        (TextFormat::Jsonl, "src_prefix.jsonl"),
        (TextFormat::Csv, "src_prefix.csv"),
    ] {
        golden(name, &render(format, &src_cfg(), &src_prefix(), None));
    }
}
