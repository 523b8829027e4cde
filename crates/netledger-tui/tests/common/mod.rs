//! Fixed intervals, a fixed clock and a TestBackend screen for the view's
//! tests; golden files in tests/golden/ (`UPDATE_GOLDEN=1` rewrites them).

#![allow(dead_code)]

use std::net::IpAddr;
use std::path::PathBuf;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crossterm::event::{KeyCode, KeyEvent, KeyModifiers};
use netledger::{Addr, Bucket, Buckets, Count, Direction, FlowKey, Interval, Strategy, L4};
use netledger_tui::{Header, Reaction, Source, Top};
use ratatui::backend::TestBackend;
use ratatui::Terminal;

/// 2026-11-25T21:00:00Z.
pub fn t0() -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(1_795_640_400)
}

pub fn at(ms: u64) -> SystemTime {
    t0() + Duration::from_millis(ms)
}

pub fn addr(s: &str) -> Addr {
    let ip: IpAddr = s.parse().expect("address");
    Addr {
        ip,
        prefix: if ip.is_ipv4() { 32 } else { 128 },
    }
}

pub fn ports(src: &str, sport: u16, dst: &str, dport: u16, proto: u8) -> FlowKey {
    FlowKey {
        src: Some(addr(src)),
        dst: Some(addr(dst)),
        proto: Some(proto),
        l4: L4::Ports {
            src: sport,
            dst: dport,
        },
        fragment: false,
        vlan: None,
    }
}

pub fn bare(src: &str, dst: &str, proto: u8, l4: L4) -> FlowKey {
    FlowKey {
        src: Some(addr(src)),
        dst: Some(addr(dst)),
        proto: Some(proto),
        l4,
        fragment: false,
        vlan: None,
    }
}

/// The flows of the main fixture.
pub fn udp() -> FlowKey {
    ports("10.0.0.1", 40000, "10.0.0.2", 9000, 17)
}
pub fn v6_long() -> FlowKey {
    ports(
        "2001:db8:1234:5678:9abc:def0:1234:5678",
        40004,
        "2001:db8:aaaa:bbbb:cccc:dddd:eeee:ffff",
        443,
        6,
    )
}
pub fn ping() -> FlowKey {
    bare("10.0.42.2", "10.0.42.1", 1, L4::Icmp { kind: 8, code: 0 })
}
pub fn fragment() -> FlowKey {
    FlowKey {
        fragment: true,
        ..bare("10.0.0.3", "10.0.0.2", 17, L4::None)
    }
}
pub fn ping6() -> FlowKey {
    bare("fd00::2", "fd00::1", 58, L4::Icmp { kind: 128, code: 0 })
}
pub fn web() -> FlowKey {
    ports("192.168.1.10", 51234, "93.184.216.34", 443, 6)
}
pub fn gre() -> FlowKey {
    bare("10.1.1.1", "10.2.2.2", 47, L4::None)
}

pub fn count(packets: u64, bytes: u64) -> Count {
    Count { packets, bytes }
}

/// An interval of `flows` with conserving buckets plus `non_ip` frames.
pub fn interval(
    iface: &str,
    dir: Direction,
    seq: u64,
    from_ms: u64,
    to_ms: u64,
    flows: Vec<(FlowKey, Count)>,
    non_ip: Count,
) -> Interval {
    let mut b = Buckets::default();
    for (_, c) in &flows {
        b.add_to(Bucket::Seen, *c);
        b.add_to(Bucket::Counted, *c);
    }
    b.add_to(Bucket::Seen, non_ip);
    b.add_to(Bucket::NonIp, non_ip);
    let mut iv = Interval::new(at(from_ms), at(to_ms), flows, b).labelled(iface, dir);
    iv.seq = seq;
    iv
}

/// Second `n` (1-based) of the main fixture: seven flows on eth0 ingress
/// with 1 s cuts; some steady, some growing, one that stops after 5 s, a
/// fragment burst every third second; ARP beside them, and one malformed
/// frame in second 7.
pub fn second(n: u64) -> Interval {
    let mut flows = vec![
        (udp(), count(1000, 1_200_000)),
        (v6_long(), count(100 * n, 150_000 * n)),
        (ping(), count(1, 98)),
        (ping6(), count(1, 118)),
        (gre(), count(10, 7_000 + 10 * n)),
    ];
    if n <= 5 {
        flows.push((web(), count(400, 500_000)));
    }
    if n.is_multiple_of(3) {
        flows.push((fragment(), count(20, 29_600)));
    }
    let mut iv = interval(
        "eth0",
        Direction::In,
        n,
        (n - 1) * 1000,
        n * 1000,
        flows,
        count(2, 120),
    );
    if n == 7 {
        let bad = count(1, 34);
        iv.buckets.add_to(Bucket::Seen, bad);
        iv.buckets.add_to(Bucket::Malformed, bad);
    }
    iv
}

pub fn header() -> Header {
    Header {
        ifaces: vec!["eth0".into()],
        dirs: vec![Direction::In],
        hook: "xdp native".into(),
        strategy: Strategy::Swap,
        interval: Duration::from_secs(1),
        since: t0(),
        source: Source::Standalone,
    }
}

/// A view fed seconds 1..=n of the main fixture, its clock at the last cut.
pub fn fed(n: u64) -> Top {
    let mut top = Top::new(header(), t0());
    for s in 1..=n {
        top.interval(second(s));
    }
    top.tick(at(n * 1000));
    top
}

pub fn key(c: char) -> KeyEvent {
    KeyEvent::new(KeyCode::Char(c), KeyModifiers::NONE)
}

pub fn code(c: KeyCode) -> KeyEvent {
    KeyEvent::new(c, KeyModifiers::NONE)
}

pub fn press(top: &mut Top, keys: &str) -> Vec<Reaction> {
    keys.chars().map(|c| top.key(key(c))).collect()
}

/// The screen as text, one line per row, trailing spaces removed.
pub fn screen(top: &mut Top, width: u16, height: u16) -> String {
    let mut t = Terminal::new(TestBackend::new(width, height)).expect("terminal");
    t.draw(|f| top.draw(f)).expect("draw");
    let buf = t.backend().buffer();
    let mut out = String::new();
    for y in 0..height {
        let mut line = String::new();
        for x in 0..width {
            line.push_str(buf[(x, y)].symbol());
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

/// Compare `actual` with tests/golden/`name`.txt, or write it there under
/// `UPDATE_GOLDEN=1`.
pub fn golden(name: &str, actual: &str) {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/golden")
        .join(format!("{name}.txt"));
    if std::env::var_os("UPDATE_GOLDEN").is_some() {
        std::fs::write(&path, actual).expect("writing the golden file");
        return;
    }
    let expected = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("{}: {e} (UPDATE_GOLDEN=1 writes it)", path.display()));
    assert!(
        expected == actual,
        "{name} differs from {}:\n--- expected\n{expected}\n--- actual\n{actual}",
        path.display()
    );
}

/// The keys of the rows on screen order.
pub fn order(top: &Top) -> Vec<FlowKey> {
    top.view().rows().map(|r| r.key).collect()
}

/// Second `n` of a fixture with three streams: eth0 both ways (no VLAN) and
/// eth1 ingress with VLAN keys.
pub fn several(n: u64) -> Vec<Interval> {
    let from = (n - 1) * 1000;
    let to = n * 1000;
    let vlan = |k: FlowKey, v: u16| FlowKey { vlan: Some(v), ..k };
    vec![
        interval(
            "eth0",
            Direction::In,
            n,
            from,
            to,
            vec![(udp(), count(1000, 1_200_000)), (ping(), count(1, 98))],
            count(1, 60),
        ),
        interval(
            "eth0",
            Direction::Out,
            n,
            from,
            to,
            vec![
                (
                    ports("10.0.0.2", 9000, "10.0.0.1", 40000, 17),
                    count(50, 3_200),
                ),
                (
                    bare("10.0.42.1", "10.0.42.2", 1, L4::Icmp { kind: 0, code: 0 }),
                    count(1, 98),
                ),
            ],
            count(0, 0),
        ),
        interval(
            "eth1",
            Direction::In,
            n,
            from + 3,
            to + 3,
            vec![
                (
                    vlan(ports("10.20.0.5", 5201, "10.20.0.9", 41234, 6), 20),
                    count(800, 1_100_000 + n),
                ),
                (
                    vlan(ports("fd20::5", 53, "fd20::9", 33333, 17), 0),
                    count(3, 420),
                ),
                (
                    vlan(
                        bare(
                            "10.30.0.1",
                            "10.30.0.2",
                            132,
                            L4::Ports {
                                src: 2905,
                                dst: 2905,
                            },
                        ),
                        30,
                    ),
                    count(12, 2_400),
                ),
            ],
            count(4, 240),
        ),
    ]
}

pub fn several_header() -> Header {
    Header {
        ifaces: vec!["eth0".into(), "eth1".into()],
        dirs: vec![Direction::In, Direction::Out],
        hook: "tc".into(),
        strategy: Strategy::Lock,
        interval: Duration::from_secs(1),
        since: t0() - Duration::from_secs(3 * 3600 + 125),
        source: Source::Client { pid: 4242 },
    }
}

pub fn fed_several(n: u64) -> Top {
    let mut top = Top::new(several_header(), t0());
    for s in 1..=n {
        for iv in several(s) {
            top.interval(iv);
        }
    }
    top.tick(at(n * 1000 + 3));
    top
}
