//! The 2 s, 10 s and 40 s averages from intervals of known lengths and
//! counts, checked numerically through the public model.

mod common;

use common::*;
use netledger::{Count, Direction};
use netledger_tui::{Model, Row, WINDOWS};

fn close(a: f64, b: f64, what: &str) {
    assert!(
        (a - b).abs() <= 1e-9 * b.abs().max(1.0),
        "{what}: {a} != {b}"
    );
}

fn the_row(m: &Model) -> Row {
    let s = m.sheet();
    assert_eq!(s.rows.len(), 1);
    s.rows[0].clone()
}

/// Push intervals of `lengths_ms` each carrying `bytes[i]` bytes and one
/// packet per 100 bytes, back to back from 0.
fn feed(m: &mut Model, lengths_ms: &[u64], bytes: &[u64]) {
    let mut t = 0;
    for (i, (len, b)) in lengths_ms.iter().zip(bytes).enumerate() {
        m.push(interval(
            "eth0",
            Direction::In,
            i as u64 + 1,
            t,
            t + len,
            vec![(
                udp(),
                Count {
                    packets: b / 100,
                    bytes: *b,
                },
            )],
            count(0, 0),
        ));
        t += len;
    }
}

#[test]
fn windows_are_2_10_and_40_seconds() {
    assert_eq!(WINDOWS.map(|w| w.as_secs()), [2, 10, 40]);
}

#[test]
fn one_second_cuts() {
    let mut m = Model::new();
    // 60 seconds: 100 B in each even second, 300 B in each odd one.
    let bytes: Vec<u64> = (1..=60)
        .map(|n: u64| if n.is_multiple_of(2) { 100 } else { 300 })
        .collect();
    feed(&mut m, &[1000; 60], &bytes);
    let r = the_row(&m);
    close(r.last.bits, 800.0, "last"); // second 60: 100 B
    close(r.last.packets, 1.0, "last pps");
    close(r.avg[0].bits, 400.0 * 8.0 / 2.0, "2 s");
    close(r.avg[1].bits, 2000.0 * 8.0 / 10.0, "10 s");
    close(r.avg[2].bits, 8000.0 * 8.0 / 40.0, "40 s");
    close(r.avg[2].packets, 80.0 / 40.0, "40 s pps");
    assert_eq!(
        r.total,
        Count {
            packets: 120,
            bytes: 12_000
        }
    );
}

#[test]
fn half_second_cuts() {
    let mut m = Model::new();
    // 100 half-second intervals, the n-th carrying n × 100 bytes.
    let bytes: Vec<u64> = (1..=100).map(|n| n * 100).collect();
    feed(&mut m, &[500; 100], &bytes);
    let r = the_row(&m);
    let last = |k: u64| (100 - k + 1..=100).map(|n| n * 100).sum::<u64>() as f64;
    close(r.last.bits, 10_000.0 * 8.0 / 0.5, "last");
    close(r.avg[0].bits, last(4) * 8.0 / 2.0, "2 s = 4 intervals");
    close(r.avg[1].bits, last(20) * 8.0 / 10.0, "10 s = 20 intervals");
    close(r.avg[2].bits, last(80) * 8.0 / 40.0, "40 s = 80 intervals");
}

#[test]
fn uneven_and_late_cuts_use_their_real_lengths() {
    let mut m = Model::new();
    // 1.2 s, 0.8 s, 3 s, 1.05 s: a late cut, an early one, a slow one.
    feed(&mut m, &[1200, 800, 3000, 1050], &[1200, 800, 6000, 2100]);
    let r = the_row(&m);
    // Newest: 2100 B in 1.05 s.
    close(r.last.bits, 2100.0 * 8.0 / 1.05, "last");
    // 2 s before the end (6.05 s) is 4.05 s: the 3 s interval's midpoint
    // (3.5 s) is earlier, so the 2 s window is the newest interval alone.
    close(r.avg[0].bits, 2100.0 * 8.0 / 1.05, "2 s");
    // 10 s: everything, 10,100 B over 6.05 s.
    close(r.avg[1].bits, 10_100.0 * 8.0 / 6.05, "10 s");
    close(r.avg[2].bits, 10_100.0 * 8.0 / 6.05, "40 s");
}

#[test]
fn two_streams_average_separately() {
    let mut m = Model::new();
    for n in 1..=10u64 {
        for (dir, b) in [(Direction::In, 1000), (Direction::Out, 250)] {
            m.push(interval(
                "eth0",
                dir,
                n,
                (n - 1) * 1000,
                n * 1000,
                vec![(
                    udp(),
                    Count {
                        packets: 1,
                        bytes: b,
                    },
                )],
                count(0, 0),
            ));
        }
    }
    let s = m.sheet();
    assert_eq!(s.rows.len(), 2);
    for r in &s.rows {
        let b = if r.stream.dir == Direction::In {
            1000.0
        } else {
            250.0
        };
        for (i, avg) in r.avg.iter().enumerate() {
            close(avg.bits, b * 8.0, &format!("{:?} window {i}", r.stream.dir));
        }
    }
}
