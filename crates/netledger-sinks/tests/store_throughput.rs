//! What a commit of 10,000 flow records writes, and how fast (rows per
//! second, printed; a figure, not a bound). The benchmark's service part
//! measures the same at 1,000,000 flows (`netledger bench --only cuts`).
//! Each size commits three cuts: the first into a new hour (the per-key
//! rollup rows are inserted), the second into the same hour with the same
//! keys (they are updated), the third into the next hour.

mod store_common;

use std::time::{Duration, Instant};

use netledger::{Count, Direction, FlowKey, Interval};
use netledger_sinks::store::{Access, Committed, LedgerInfo, Store};
use store_common::*;

/// `n` distinct five-tuple keys, IPv4 and IPv6 mixed, with counts.
fn flows(n: u32, salt: u64) -> Vec<(FlowKey, Count)> {
    (0..n)
        .map(|i| {
            let k = if i % 4 == 3 {
                ports(
                    &format!("fd00::{:x}:{:x}", i >> 16, i & 0xffff),
                    (i % 50_000) as u16 + 10_000,
                    "2001:db8::1",
                    443,
                    6,
                )
            } else {
                ports(
                    &format!("10.{}.{}.{}", (i >> 16) & 255, (i >> 8) & 255, i & 255),
                    (i % 50_000) as u16 + 10_000,
                    "192.0.2.1",
                    443,
                    if i % 2 == 0 { 6 } else { 17 },
                )
            };
            let p = u64::from(i % 13) + salt + 1;
            (k, count(p, p * 700))
        })
        .collect()
}

fn measure(n: u32) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("h.db");
    let mut store = Store::open(&path, Access::ReadWrite).unwrap();
    let id = store
        .ledger(&LedgerInfo::new(
            "bench",
            "eth0",
            Direction::In,
            &Default::default(),
        ))
        .unwrap();
    let t0 = at("2026-12-01T12:00:00Z");
    let minute = Duration::from_secs(60);
    let cuts = [
        ("new hour", t0),
        ("same hour, same keys", t0 + minute),
        ("next hour", t0 + 60 * minute),
    ];
    for (seq, (what, start)) in cuts.into_iter().enumerate() {
        let f = flows(n, seq as u64);
        let b = buckets_for(&f, 1);
        let mut iv = Interval::new(start, start + minute, f, b).labelled("eth0", Direction::In);
        iv.seq = seq as u64 + 1;
        let t = Instant::now();
        let done = store.commit(id, &iv).unwrap();
        let dt = t.elapsed();
        assert_eq!(done, Committed::Inserted { flows: n as usize });
        println!(
            "commit of {n} flows ({what}): {:.3} s, {:.0} rows/s",
            dt.as_secs_f64(),
            f64::from(n) / dt.as_secs_f64()
        );
    }
    assert_eq!(rows(&path, "flow"), 3 * i64::from(n));
    assert_eq!(rows(&path, "hour_key"), 2 * i64::from(n));
    println!(
        "database file: {:.1} MiB",
        std::fs::metadata(&path).unwrap().len() as f64 / (1 << 20) as f64
    );
}

#[test]
fn store_throughput_10k() {
    measure(10_000);
}
