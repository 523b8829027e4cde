//! The view on made-up traffic, without root or BPF: a feed that cuts an
//! interval of a few dozen flows every second.
//!
//! `cargo run -p netledger-tui --example synthetic [INTERVAL_MS]`
//!
//! With `NETLEDGER_TUI_PANIC_AFTER=N` the feed panics at its N-th interval
//! (to see the terminal restored before the message); with
//! `NETLEDGER_TUI_END_AFTER=N` it ends after N intervals.

use std::process::ExitCode;
use std::time::{Duration, Instant, SystemTime};

use netledger::{Addr, Bucket, Buckets, Count, Direction, FlowKey, Interval, Strategy, L4};
use netledger_tui::{Feed, FeedError, Header, Next, Source};

/// Flows that come and go, with rates that drift.
struct Synthetic {
    every: Duration,
    next_cut: Instant,
    last: SystemTime,
    seq: u64,
    state: u64,
    panic_after: Option<u64>,
    end_after: Option<u64>,
}

impl Synthetic {
    /// xorshift: reproducible noise without a dependency.
    fn noise(&mut self) -> u64 {
        self.state ^= self.state << 13;
        self.state ^= self.state >> 7;
        self.state ^= self.state << 17;
        self.state
    }

    fn cut(&mut self) -> Interval {
        let end = SystemTime::now();
        self.seq += 1;
        let secs = end
            .duration_since(self.last)
            .unwrap_or_default()
            .as_secs_f64();
        let mut flows = Vec::new();
        let v4 = |n: u8| Addr {
            ip: [10, 0, 0, n].into(),
            prefix: 32,
        };
        for i in 0..40u16 {
            // Flow i is active for a while, then idle for a while.
            let phase = (self.seq / 7 + u64::from(i)) % 5;
            if phase == 4 && i % 3 == 0 {
                continue;
            }
            let key = match i % 10 {
                0 => FlowKey {
                    src: Some(Addr {
                        ip: format!("2001:db8:1234:5678:9abc:def0:1234:{i:x}")
                            .parse()
                            .unwrap_or([0u16; 8].into()),
                        prefix: 128,
                    }),
                    dst: Some(Addr {
                        ip: "2001:db8:aaaa:bbbb:cccc:dddd:eeee:ffff"
                            .parse()
                            .unwrap_or([0u16; 8].into()),
                        prefix: 128,
                    }),
                    proto: Some(6),
                    l4: L4::Ports {
                        src: 40000 + i,
                        dst: 443,
                    },
                    fragment: false,
                    vlan: None,
                },
                5 => FlowKey {
                    src: Some(v4(i as u8)),
                    dst: Some(v4(1)),
                    proto: Some(1),
                    l4: L4::Icmp { kind: 8, code: 0 },
                    fragment: false,
                    vlan: None,
                },
                _ => FlowKey {
                    src: Some(v4(i as u8)),
                    dst: Some(v4(1)),
                    proto: Some(if i % 2 == 0 { 6 } else { 17 }),
                    l4: L4::Ports {
                        src: 30000 + i,
                        dst: 80 + i % 4,
                    },
                    fragment: false,
                    vlan: None,
                },
            };
            let weight = 1 + u64::from(40 - i) * u64::from(40 - i);
            let packets = ((weight * (50 + self.noise() % 50)) as f64 * secs / 10.0) as u64 + 1;
            flows.push((
                key,
                Count {
                    packets,
                    bytes: packets * (64 + self.noise() % 1400),
                },
            ));
        }
        let mut b = Buckets::default();
        for (_, c) in &flows {
            b.add_to(Bucket::Seen, *c);
            b.add_to(Bucket::Counted, *c);
        }
        let arp = Count {
            packets: 2,
            bytes: 120,
        };
        b.add_to(Bucket::Seen, arp);
        b.add_to(Bucket::NonIp, arp);
        let mut iv = Interval::new(self.last, end, flows, b).labelled("demo0", Direction::In);
        iv.seq = self.seq;
        self.last = end;
        iv
    }
}

impl Feed for Synthetic {
    fn next(&mut self, timeout: Duration) -> Result<Next, FeedError> {
        let now = Instant::now();
        if now < self.next_cut {
            std::thread::sleep((self.next_cut - now).min(timeout));
            return Ok(Next::Idle);
        }
        if self.end_after.is_some_and(|n| self.seq >= n) {
            return Ok(Next::End("the synthetic feed is done".into()));
        }
        self.next_cut += self.every;
        if self.panic_after.is_some_and(|n| self.seq + 1 >= n) {
            panic!(
                "synthetic feed: panicking at interval {} as asked",
                self.seq + 1
            );
        }
        Ok(Next::Interval(self.cut()))
    }
}

fn env_number(name: &str) -> Option<u64> {
    std::env::var(name).ok().and_then(|v| v.parse().ok())
}

fn main() -> ExitCode {
    let every = Duration::from_millis(
        std::env::args()
            .nth(1)
            .and_then(|a| a.parse().ok())
            .unwrap_or(1000),
    );
    let start = SystemTime::now();
    let feed = Synthetic {
        every,
        next_cut: Instant::now() + every,
        last: start,
        seq: 0,
        state: 0x9E37_79B9_7F4A_7C15,
        panic_after: env_number("NETLEDGER_TUI_PANIC_AFTER"),
        end_after: env_number("NETLEDGER_TUI_END_AFTER"),
    };
    let header = Header {
        ifaces: vec!["demo0".into()],
        dirs: vec![Direction::In],
        hook: "synthetic".into(),
        strategy: Strategy::Swap,
        interval: every,
        since: start,
        source: Source::Standalone,
    };
    match netledger_tui::run(header, feed) {
        Ok(out) => {
            let seen: u64 = out
                .sheet
                .dirs
                .iter()
                .map(|d| d.buckets.get(Bucket::Seen).packets)
                .sum();
            println!(
                "left by {:?} after {} intervals; {seen} packets seen",
                out.exit, out.intervals
            );
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("netledger: {e}");
            ExitCode::FAILURE
        }
    }
}
