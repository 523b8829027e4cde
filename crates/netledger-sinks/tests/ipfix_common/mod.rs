//! Helpers shared by the IPFIX integration tests: the collectors as the
//! lab starts them (nfcapd and nfdump, tshark, process guards, free ports),
//! sample records and a small IPFIX reader for TCP streams.

#![allow(dead_code)]

use std::io::Read;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, TcpStream};
use std::time::{SystemTime, UNIX_EPOCH};

#[allow(unused_imports)]
pub use netledger_lab::consumers::{
    free_tcp_port, free_udp_port, nfdump_json, require_tool, start_nfcapd, start_tshark, Proc,
};
use netledger_sinks::ipfix::{BucketCount, BucketsRecord, Direction, FlowRecord};

/// Whether the tests run as root (needed for packet capture).
pub fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() == 0 }
}

/// Milliseconds since the Unix epoch, now.
pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

fn v4(a: u8, b: u8, c: u8, d: u8) -> Option<IpAddr> {
    Some(IpAddr::V4(Ipv4Addr::new(a, b, c, d)))
}

fn v6(last: u16) -> Option<IpAddr> {
    Some(IpAddr::V6(Ipv6Addr::new(
        0x2001, 0xdb8, 0, 0, 0, 0, 0, last,
    )))
}

/// A template flow; tests override fields.
pub fn base_flow(start_ms: u64) -> FlowRecord {
    FlowRecord {
        src: v4(192, 0, 2, 10),
        dst: v4(198, 51, 100, 20),
        proto: Some(6),
        ports: Some((40_001, 443)),
        icmp: None,
        vlan: None,
        direction: Direction::In,
        ifindex: 2,
        start_ms,
        end_ms: start_ms + 10_000,
        packets: 11,
        ip_octets: 1_111,
        l2_octets: 1_265,
        end_reason: 2,
    }
}

/// Known flows: IPv4 and IPv6, TCP, UDP, ICMP, ICMPv6, one with a VLAN,
/// both directions. Packet counts are distinct so each flow can be found.
pub fn sample_flows(start_ms: u64) -> Vec<FlowRecord> {
    let b = base_flow(start_ms);
    vec![
        b.clone(),
        FlowRecord {
            src: v4(192, 0, 2, 11),
            dst: v4(203, 0, 113, 53),
            proto: Some(17),
            ports: Some((53_000, 53)),
            packets: 2,
            ip_octets: 150,
            l2_octets: 178,
            direction: Direction::Out,
            ifindex: 3,
            ..b.clone()
        },
        FlowRecord {
            src: v4(10, 1, 2, 3),
            dst: v4(10, 3, 2, 1),
            proto: Some(17),
            ports: Some((5_000, 6_000)),
            vlan: Some(42),
            packets: 33,
            ip_octets: 33_000,
            l2_octets: 33_594,
            end_reason: 3,
            ..b.clone()
        },
        FlowRecord {
            src: v4(192, 0, 2, 12),
            dst: v4(192, 0, 2, 1),
            proto: Some(1),
            ports: None,
            icmp: Some((8, 0)),
            packets: 4,
            ip_octets: 336,
            l2_octets: 392,
            ..b.clone()
        },
        FlowRecord {
            src: v6(1),
            dst: v6(2),
            proto: Some(6),
            ports: Some((50_123, 22)),
            packets: 55,
            ip_octets: 55_555,
            l2_octets: 56_325,
            end_reason: 4,
            ..b.clone()
        },
        FlowRecord {
            src: v6(3),
            dst: v6(4),
            proto: Some(17),
            ports: Some((546, 547)),
            packets: 6,
            ip_octets: 666,
            l2_octets: 750,
            direction: Direction::Out,
            ..b.clone()
        },
        FlowRecord {
            src: v6(5),
            dst: v6(6),
            proto: Some(58),
            ports: None,
            icmp: Some((128, 0)),
            packets: 7,
            ip_octets: 728,
            l2_octets: 826,
            ..b
        },
    ]
}

fn count(packets: u64, octets: u64) -> BucketCount {
    BucketCount { packets, octets }
}

/// A buckets record with distinct values per bucket.
pub fn sample_buckets(direction: Direction, ifindex: u32, start_ms: u64) -> BucketsRecord {
    BucketsRecord {
        direction,
        ifindex,
        start_ms,
        end_ms: start_ms + 10_000,
        seen: count(1_000, 900_000),
        counted: count(990, 899_000),
        non_ip: count(4, 400),
        malformed: count(3, 300),
        map_full: count(2, 200),
        evict_race: count(1, 100),
    }
}

/// Reads one IPFIX message (by its length field) from a TCP stream.
pub fn read_message(conn: &mut TcpStream) -> std::io::Result<Vec<u8>> {
    let mut head = [0u8; 4];
    conn.read_exact(&mut head)?;
    let len = usize::from(u16::from_be_bytes([head[2], head[3]]));
    let mut msg = head.to_vec();
    msg.resize(len.max(4), 0);
    conn.read_exact(&mut msg[4..])?;
    Ok(msg)
}

/// Header fields and set ids of a message, read independently of the
/// encoder.
#[derive(Debug)]
pub struct Outline {
    pub version: u16,
    pub sequence: u32,
    pub domain: u32,
    /// (set id, set length)
    pub sets: Vec<(u16, usize)>,
}

/// Splits a message into its sets, checking that the lengths add up.
pub fn outline(msg: &[u8]) -> Outline {
    let be16 = |at: usize| u16::from_be_bytes([msg[at], msg[at + 1]]);
    let be32 = |at: usize| u32::from_be_bytes([msg[at], msg[at + 1], msg[at + 2], msg[at + 3]]);
    assert_eq!(usize::from(be16(2)), msg.len(), "message length field");
    let mut sets = Vec::new();
    let mut at = 16;
    while at < msg.len() {
        let id = be16(at);
        let len = usize::from(be16(at + 2));
        assert!(
            len >= 4 && at + len <= msg.len(),
            "set length {len} at {at}"
        );
        sets.push((id, len));
        at += len;
    }
    Outline {
        version: be16(0),
        sequence: be32(8),
        domain: be32(12),
        sets,
    }
}

/// `ms` since the Unix epoch as `YYYY-MM-DDTHH:MM:SS.mmm` in UTC, the way
/// nfdump prints times when TZ=UTC.
pub fn iso_utc_ms(ms: u64) -> String {
    let secs = ms / 1000;
    let days = i64::try_from(secs / 86_400).expect("days fit i64");
    let rem = secs % 86_400;
    // Days since 1970-01-01 to a proleptic Gregorian date.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{:03}",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60,
        ms % 1000
    )
}
