//! What the store tests share: intervals from fixed numbers, the fixed
//! database of the report tests, golden files, and a dump of every table.

#![allow(dead_code)]

use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use netledger::{
    Addr, Bucket, Buckets, Count, Direction, FlowKey, Interval, KeyMode, LedgerConfig, L4,
};
use netledger_sinks::store::{
    parse_time, write_report, Access, By, Check, LedgerId, LedgerInfo, ReportQuery, Store, Zone,
    DEFAULT_FLOW_RETENTION,
};
use netledger_sinks::TextFormat;

/// A UTC time from RFC 3339.
pub fn at(s: &str) -> SystemTime {
    parse_time(s, SystemTime::UNIX_EPOCH, &Zone::Utc).unwrap()
}

/// "Now" in the report tests: during the running day 2027-03-29 (Berlin).
pub const NOW: &str = "2027-03-29T09:30:00Z";

pub fn count(packets: u64, bytes: u64) -> Count {
    Count { packets, bytes }
}

pub fn addr(s: &str, prefix: Option<u8>) -> Addr {
    let ip: IpAddr = s.parse().unwrap();
    Addr {
        ip,
        prefix: prefix.unwrap_or(if ip.is_ipv4() { 32 } else { 128 }),
    }
}

/// A source-prefix key: `s`/`p`.
pub fn src_prefix_key(s: &str, p: u8) -> FlowKey {
    FlowKey {
        src: Some(addr(s, Some(p))),
        dst: None,
        proto: None,
        l4: L4::None,
        fragment: false,
        vlan: None,
    }
}

/// A five-tuple key with ports.
pub fn ports(src: &str, sport: u16, dst: &str, dport: u16, proto: u8) -> FlowKey {
    FlowKey {
        src: Some(addr(src, None)),
        dst: Some(addr(dst, None)),
        proto: Some(proto),
        l4: L4::Ports {
            src: sport,
            dst: dport,
        },
        fragment: false,
        vlan: None,
    }
}

/// A five-tuple key without ports.
pub fn bare(src: &str, dst: &str, proto: u8, l4: L4, fragment: bool) -> FlowKey {
    FlowKey {
        src: Some(addr(src, None)),
        dst: Some(addr(dst, None)),
        proto: Some(proto),
        l4,
        fragment,
        vlan: None,
    }
}

/// The key with source and destination (and ports) swapped.
pub fn reverse(k: &FlowKey) -> FlowKey {
    FlowKey {
        src: k.dst,
        dst: k.src,
        l4: match k.l4 {
            L4::Ports { src, dst } => L4::Ports { src: dst, dst: src },
            other => other,
        },
        ..*k
    }
}

/// Buckets that add up: `counted` is the flows' sum, a few frames in the
/// other buckets depending on `i`.
pub fn buckets_for(flows: &[(FlowKey, Count)], i: u64) -> Buckets {
    let mut b = Buckets::default();
    let mut counted = Count::default();
    for (_, c) in flows {
        counted.add(*c);
    }
    b.add_to(Bucket::Counted, counted);
    let mut seen = counted;
    let others = [
        (Bucket::NonIp, count(i % 3, (i % 3) * 60)),
        (
            Bucket::Malformed,
            if i.is_multiple_of(4) {
                count(1, 64)
            } else {
                count(0, 0)
            },
        ),
        (
            Bucket::MapFull,
            if i.is_multiple_of(13) {
                count(2, 3000)
            } else {
                count(0, 0)
            },
        ),
    ];
    for (bucket, c) in others {
        b.add_to(bucket, c);
        seen.add(c);
    }
    b.add_to(Bucket::Seen, seen);
    b.reroutes = i % 2;
    b
}

/// How a fixed ledger's keys are made.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Five-tuple keys (eth0).
    Five,
    /// Source /24 and /64 prefixes (wlan0 in).
    SrcPrefix,
    /// Address pairs with VLAN ids (wlan0 out).
    PairVlan,
}

impl Kind {
    pub fn config(self) -> LedgerConfig {
        match self {
            Kind::Five => LedgerConfig::default(),
            Kind::SrcPrefix => LedgerConfig {
                key_mode: KeyMode::SrcIp,
                prefix4: Some(24),
                prefix6: Some(64),
                ..LedgerConfig::default()
            },
            Kind::PairVlan => LedgerConfig {
                key_mode: KeyMode::IpPair,
                vlan: true,
                ..LedgerConfig::default()
            },
        }
    }
}

/// The flow records of cut `i` of a ledger of `kind` counting `dir`.
pub fn flows_for(kind: Kind, dir: Direction, i: u64) -> Vec<(FlowKey, Count)> {
    let mut out = Vec::new();
    match kind {
        Kind::Five => {
            let keys: [(FlowKey, u64, u64, u64); 6] = [
                // (key as received, every n-th cut, packets, bytes)
                (
                    ports("192.0.2.10", 443, "10.0.0.1", 40000, 6),
                    1,
                    1000 * (i % 4 + 1),
                    1_400_000 * (i % 4 + 1),
                ),
                (
                    ports("10.0.0.2", 5353, "224.0.0.251", 5353, 17),
                    2,
                    10,
                    1200,
                ),
                (
                    ports("2001:db8::1", 80, "fd00::2", 40004, 6),
                    3,
                    250,
                    300_000,
                ),
                (
                    bare(
                        "192.0.2.10",
                        "10.0.0.1",
                        1,
                        L4::Icmp { kind: 0, code: 0 },
                        false,
                    ),
                    5,
                    2,
                    196,
                ),
                (
                    bare("192.0.2.99", "10.0.0.3", 17, L4::None, true),
                    7,
                    3,
                    4500,
                ),
                (
                    ports("198.51.100.7", 53, "10.0.0.1", 33000, 17),
                    1,
                    2,
                    260 + i % 3,
                ),
            ];
            for (k, every, p, b) in keys {
                if i.is_multiple_of(every) {
                    match dir {
                        Direction::In => out.push((k, count(p, b))),
                        Direction::Out => out.push((reverse(&k), count(p / 2 + 1, b / 20 + 64))),
                    }
                }
            }
        }
        Kind::SrcPrefix => {
            let k = src_prefix_key;
            out.push((
                k("192.0.2.0", 24),
                count(600 * (i % 3 + 1), 800_000 * (i % 3 + 1)),
            ));
            if i.is_multiple_of(2) {
                out.push((k("198.51.100.0", 24), count(40, 50_000)));
            }
            if i.is_multiple_of(4) {
                out.push((k("2001:db8::", 64), count(90, 120_000)));
            }
        }
        Kind::PairVlan => {
            let k = |s: &str, d: &str, vlan: u16| FlowKey {
                src: Some(addr(s, None)),
                dst: Some(addr(d, None)),
                proto: None,
                l4: L4::None,
                fragment: false,
                vlan: Some(vlan),
            };
            out.push((
                k("10.1.0.5", "192.0.2.10", 0),
                count(70 * (i % 2 + 1), 90_000 * (i % 2 + 1)),
            ));
            if i.is_multiple_of(3) {
                out.push((k("10.1.0.6", "198.51.100.7", 20), count(5, 5000)));
            }
            if i.is_multiple_of(5) {
                out.push((k("fd00:1::5", "2001:db8::1", 0), count(30, 33_000)));
            }
        }
    }
    out
}

/// An interval of `flows` labelled and numbered.
pub fn interval(
    iface: &str,
    dir: Direction,
    seq: u64,
    start: SystemTime,
    end: SystemTime,
    flows: Vec<(FlowKey, Count)>,
    i: u64,
) -> Interval {
    let b = buckets_for(&flows, i);
    let mut iv = Interval::new(start, end, flows, b).labelled(iface, dir);
    iv.seq = seq;
    iv
}

/// The cut times of the fixed database: October 2026 around the end of
/// summer time (25-hour day on the 25th in Berlin) and the month's end,
/// with hourly cuts around both; March 2027 around its start (23-hour day
/// on the 28th), up to shortly before [`NOW`].
pub fn fixed_cuts() -> Vec<(SystemTime, SystemTime)> {
    let mut out = Vec::new();
    let hourly = [
        (at("2026-10-24T18:00:00Z"), at("2026-10-25T06:00:00Z")),
        (at("2026-10-31T18:00:00Z"), at("2026-11-01T02:00:00Z")),
    ];
    let (mut t, end) = (at("2026-10-24T00:00:00Z"), at("2026-11-02T00:00:00Z"));
    while t < end {
        let step = if hourly.iter().any(|(a, b)| t >= *a && t < *b) {
            Duration::from_secs(3600)
        } else {
            Duration::from_secs(6 * 3600)
        };
        let next = (t + step).min(end);
        out.push((t, next));
        t = next;
    }
    let (mut t, end) = (at("2027-03-27T00:00:00Z"), at("2027-03-29T09:00:00Z"));
    while t < end {
        let next = t + Duration::from_secs(3 * 3600);
        out.push((t, next));
        t = next;
    }
    out
}

/// The fixed ledgers: (instance, iface, dir, kind, in October, in March).
/// eth0's daemon restarted with a new pin set between the two months.
pub const FIXED_LEDGERS: [(&str, &str, Direction, Kind, bool, bool); 6] = [
    ("a1", "eth0", Direction::In, Kind::Five, true, false),
    ("a1", "eth0", Direction::Out, Kind::Five, true, false),
    ("b2", "wlan0", Direction::In, Kind::SrcPrefix, true, true),
    ("b2", "wlan0", Direction::Out, Kind::PairVlan, true, true),
    ("c3", "eth0", Direction::In, Kind::Five, false, true),
    ("c3", "eth0", Direction::Out, Kind::Five, false, true),
];

/// Every interval of the fixed database, with its ledger's description.
pub fn fixed_intervals() -> Vec<(LedgerInfo, Interval)> {
    let march = at("2027-01-01T00:00:00Z");
    let mut out = Vec::new();
    for (n, (instance, iface, dir, kind, october, in_march)) in FIXED_LEDGERS.iter().enumerate() {
        let info = LedgerInfo::new(instance, iface, *dir, &kind.config());
        let mut seq = 0;
        for (start, end) in fixed_cuts() {
            if (start < march && !october) || (start >= march && !in_march) {
                continue;
            }
            seq += 1;
            let i = seq + n as u64;
            let flows = flows_for(*kind, *dir, i);
            out.push((
                info.clone(),
                interval(iface, *dir, seq, start, end, flows, i),
            ));
        }
    }
    out
}

/// Build the fixed database at `path`: every interval committed, then the
/// default flow retention applied at [`NOW`] (October's flow records go,
/// the last two days of March stay).
pub fn fixed_db(path: &Path) -> Store {
    let mut store = Store::open(path, Access::ReadWrite).unwrap();
    for (info, iv) in fixed_intervals() {
        let id = store.ledger(&info).unwrap();
        store.commit(id, &iv).unwrap();
    }
    store.prune(at(NOW), DEFAULT_FLOW_RETENTION, None).unwrap();
    store
}

/// The ledger ids of `store` by (instance, iface, dir).
pub fn ledger_id(store: &Store, instance: &str, iface: &str, dir: Direction) -> LedgerId {
    store
        .ledgers()
        .unwrap()
        .into_iter()
        .find(|(_, l)| l.instance == instance && l.iface == iface && l.dir == dir)
        .unwrap()
        .0
}

/// Berlin, where summer time ends on the last Sunday of October and starts
/// on the last Sunday of March.
pub fn berlin() -> Zone {
    Zone::named("Europe/Berlin").expect("tzdata: apt-get install -y tzdata")
}

/// A report of the fixed database as text, and its check.
pub fn report(
    store: &Store,
    by: By,
    format: TextFormat,
    zone: Zone,
    adjust: impl FnOnce(&mut ReportQuery),
) -> (String, Check) {
    let mut q = ReportQuery::new(at(NOW));
    q.by = by;
    q.format = format;
    q.zone = zone;
    adjust(&mut q);
    let mut out = Vec::new();
    let check = write_report(store, &q, &mut out).unwrap();
    (String::from_utf8(out).unwrap(), check)
}

/// Compare with `tests/golden/NAME` (`UPDATE_GOLDEN=1` rewrites it).
#[track_caller]
pub fn golden(name: &str, got: &str) {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/golden")
        .join(name);
    if std::env::var_os("UPDATE_GOLDEN").is_some() {
        std::fs::write(&path, got).unwrap();
    }
    let want = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("{}: {e} (UPDATE_GOLDEN=1 writes it)", path.display()));
    assert_eq!(got, want, "{name} differs from its golden file");
}

/// Every row of every table, in key order, as text: "the database is
/// exactly as before" is equality of two dumps.
pub fn dump(path: &Path) -> String {
    let conn =
        rusqlite::Connection::open_with_flags(path, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
            .unwrap();
    let mut out = String::new();
    for (table, order) in [
        ("meta", "1"),
        ("ledger", "1"),
        ("cut", "1, 2"),
        ("flow", "1, 2, 3"),
        ("hour_key", "1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11"),
        ("hour_ledger", "1, 2"),
    ] {
        let mut st = conn
            .prepare(&format!("SELECT * FROM {table} ORDER BY {order}"))
            .unwrap();
        let n = st.column_count();
        let mut rows = st.query([]).unwrap();
        while let Some(r) = rows.next().unwrap() {
            let vals: Vec<String> = (0..n)
                .map(|i| format!("{:?}", r.get_ref(i).unwrap()))
                .collect();
            out.push_str(&format!("{table}: {}\n", vals.join(" ")));
        }
    }
    out
}

/// The number of rows of `table`.
pub fn rows(path: &Path, table: &str) -> i64 {
    let conn = rusqlite::Connection::open(path).unwrap();
    conn.query_row(&format!("SELECT count(*) FROM {table}"), [], |r| r.get(0))
        .unwrap()
}
