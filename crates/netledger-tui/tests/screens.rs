//! Whole screens on a TestBackend for fixed intervals, against golden files
//! in tests/golden/ (`UPDATE_GOLDEN=1 cargo test -p netledger-tui` rewrites
//! them).

mod common;

use std::time::Duration;

use common::*;
use netledger::{Bucket, Direction};
use netledger_tui::Top;

/// The main fixture after 12 one-second cuts, sorted by rate.
fn sorted() -> Top {
    let mut top = fed(12);
    press(&mut top, "s");
    top
}

#[test]
fn flows_at_80x24() {
    let mut top = sorted();
    let s = screen(&mut top, 80, 24);
    golden("flows_80x24", &s);
    // Sensible at 80 columns: the key, the rate, two averages, the bytes.
    let lines: Vec<&str> = s.lines().collect();
    assert!(lines[1].starts_with("KEY"), "{}", lines[1]);
    for title in ["BIT/S▼", "10s", "40s", "BYTES"] {
        assert!(lines[1].contains(title), "{title}: {}", lines[1]);
    }
    assert!(s.lines().all(|l| l.chars().count() <= 80));
}

#[test]
fn flows_at_160x48() {
    let mut top = sorted();
    let s = screen(&mut top, 160, 48);
    golden("flows_160x48", &s);
    let lines: Vec<&str> = s.lines().collect();
    for title in [
        "BIT/S▼", "PKT/S", "2s", "10s", "40s", "PACKETS", "BYTES", "SHARE",
    ] {
        assert!(lines[1].contains(title), "{title}: {}", lines[1]);
    }
    assert!(lines[0].contains("standalone: attached by top"));
    assert!(lines[0].contains("every 1s"));
    assert!(lines[0].contains("up 12s"));
}

#[test]
fn footer_shows_the_buckets_and_the_identity() {
    let mut top = sorted();
    let s = screen(&mut top, 160, 48);
    let grid: Vec<&str> = s
        .lines()
        .skip_while(|l| !l.contains("= counted"))
        .take(3)
        .collect();
    assert_eq!(grid.len(), 3, "{s}");
    assert!(
        grid[0].contains("seen  = counted + non_ip + malformed + map_full + evict_race  identity")
    );
    // Seen = 12 × (counted flows + 2 ARP frames) + 1 malformed frame.
    let sheet = top.view().sheet();
    let b = sheet.dirs[0].buckets;
    assert_eq!(b.get(Bucket::NonIp).packets, 24);
    assert_eq!(b.get(Bucket::Malformed).packets, 1);
    assert_eq!(
        b.get(Bucket::Seen).packets,
        b.get(Bucket::Counted).packets + 24 + 1
    );
    assert!(
        grid[1].starts_with(
            "in  pkts      22,049     22,024       24           1          0            0  exact"
        ),
        "{}",
        grid[1]
    );
    assert!(
        grid[2].starts_with(
            "    bytes 28,807,246 28,805,772    1,440          34          0            0  exact"
        ),
        "{}",
        grid[2]
    );
}

#[test]
fn identity_off_and_missed_intervals_show() {
    let mut top = Top::new(header(), t0());
    top.interval(second(1));
    let mut bad = second(3); // second 2 never arrives
    bad.buckets.add_to(Bucket::Seen, count(3, 180));
    top.interval(bad);
    top.tick(at(3000));
    let s = screen(&mut top, 80, 24);
    golden("identity_off_80x24", &s);
    assert!(s.contains("off +3"), "{s}");
    assert!(s.contains("off +180"), "{s}");
    assert!(s.contains("1 missed"), "{s}");
}

#[test]
fn waiting_for_the_first_interval() {
    let mut top = Top::new(header(), t0());
    top.tick(at(400));
    let s = screen(&mut top, 80, 24);
    golden("waiting_80x24", &s);
    assert!(s.contains("waiting for the first interval (cut every 1s)…"));
    assert!(s.contains("no interval yet"));
}

#[test]
fn several_interfaces_and_directions() {
    let mut top = fed_several(5);
    press(&mut top, "s");
    let wide = screen(&mut top, 160, 48);
    golden("several_160x48", &wide);
    let narrow = screen(&mut top, 80, 24);
    golden("several_80x24", &narrow);
    for s in [&wide, &narrow] {
        assert!(s.contains("WHERE"), "{s}");
        assert!(s.contains("eth1 in"), "{s}");
        assert!(s.contains("eth0 out"), "{s}");
        assert!(s.contains("in  pkts") && s.contains("out pkts"), "{s}");
        assert!(s.contains("in all"), "{s}");
    }
    assert!(wide
        .lines()
        .next()
        .is_some_and(|l| l.contains("client of netledger run (pid 4242)")));
    assert!(wide.lines().next().is_some_and(|l| l.contains("up 3h02m")));
    assert!(narrow
        .lines()
        .next()
        .is_some_and(|l| l.contains("client pid 4242")));
    assert!(wide.contains("vlan 20 10.20.0.5:5201 > 10.20.0.9:41234 tcp"));
    assert!(wide.contains("untagged [fd20::5]:53 > [fd20::9]:33333 udp"));
}

#[test]
fn long_ipv6_keys_keep_both_ends() {
    let mut top = sorted();
    let s = screen(&mut top, 80, 24);
    let row = s
        .lines()
        .find(|l| l.starts_with("[2001:"))
        .unwrap_or_else(|| panic!("no IPv6 row:\n{s}"));
    assert!(row.contains('…'), "{row}");
    assert!(row.contains("]:40004 > [2001:"), "{row}");
    assert!(row.contains("]:443 tcp"), "{row}");
    assert!(row.contains(":5678]") && row.contains(":ffff]"), "{row}");
    // Wide enough: the whole key.
    let wide = screen(&mut top, 200, 30);
    assert!(wide.contains(&v6_long().to_string()), "{wide}");
}

#[test]
fn filter_prompt_and_result() {
    let mut top = sorted();
    press(&mut top, "/443");
    let s = screen(&mut top, 80, 24);
    golden("filter_prompt_80x24", &s);
    assert!(s.contains("filter (Enter applies, Esc cancels): /443"));
    top.key(code(crossterm::event::KeyCode::Enter));
    let s = screen(&mut top, 80, 24);
    golden("filter_applied_80x24", &s);
    assert!(s.lines().next().is_some_and(|l| l.contains("filter: 443")));
    assert!(s.contains("2 rows"), "{s}");
}

#[test]
fn paused_screen_is_frozen_and_says_so() {
    let mut top = sorted();
    let before = screen(&mut top, 80, 24);
    press(&mut top, " ");
    for n in 13..=15 {
        top.interval(second(n));
    }
    top.tick(at(15_000));
    let paused = screen(&mut top, 80, 24);
    assert!(
        paused
            .lines()
            .next()
            .is_some_and(|l| l.contains("PAUSED (3 new)")),
        "{paused}"
    );
    // Everything below the header is as it was.
    let body = |s: &str| s.lines().skip(1).map(str::to_string).collect::<Vec<_>>();
    assert_eq!(body(&before), body(&paused));
    press(&mut top, " ");
    let after = screen(&mut top, 80, 24);
    assert!(after.contains("since start: 15s, 15 intervals"), "{after}");
    assert!(!after.contains("PAUSED"));
}

#[test]
fn a_row_per_line_scrolls_below_the_page() {
    let mut top = Top::new(header(), t0());
    let flows = (1..=50u16)
        .map(|i| {
            (
                ports("10.0.1.1", 10_000 + i, "10.0.2.2", 80, 6),
                count(u64::from(i), 1000 * u64::from(i)),
            )
        })
        .collect();
    top.interval(interval(
        "eth0",
        Direction::In,
        1,
        0,
        1000,
        flows,
        count(0, 0),
    ));
    let s = screen(&mut top, 80, 24);
    assert!(s.contains("rows 1-16 of 50"), "{s}");
    assert!(s.contains("10.0.1.1:10050 > 10.0.2.2:80 tcp"));
    top.key(code(crossterm::event::KeyCode::PageDown));
    let s = screen(&mut top, 80, 24);
    assert!(s.contains("rows 16-31 of 50"), "{s}");
    assert!(s.contains("10.0.1.1:10035 > 10.0.2.2:80 tcp"));
    top.key(code(crossterm::event::KeyCode::End));
    let s = screen(&mut top, 80, 24);
    assert!(s.contains("rows 35-50 of 50"), "{s}");
    assert!(s.contains("10.0.1.1:10001 > 10.0.2.2:80 tcp"));
    top.key(code(crossterm::event::KeyCode::Down));
    assert_eq!(top.view().scroll(), 34, "no scrolling past the end");
    top.key(code(crossterm::event::KeyCode::Up));
    top.key(code(crossterm::event::KeyCode::Home));
    assert_eq!(top.view().scroll(), 0);
}

#[test]
fn tiny_and_huge_terminals_do_not_break() {
    let mut top = fed_several(3);
    for (w, h) in [(1, 1), (10, 3), (20, 5), (40, 8), (80, 10), (300, 100)] {
        let s = screen(&mut top, w, h);
        assert_eq!(s.lines().count(), usize::from(h));
    }
    // The uptime ticks without an interval.
    let mut top = fed(3);
    assert!(top.tick(at(5000) + Duration::from_millis(10)));
    assert!(!top.tick(at(5000) + Duration::from_millis(500)));
}
