//! Strategy `swap`, driven for real through BPF_PROG_TEST_RUN.
//!
//! * Keys: for every key mode (and VLAN keys with prefix aggregation), a
//!   `swap` ledger and a `lock` ledger fed the same crafted frames cut to
//!   the same flows and the same buckets.
//! * Buckets: ARP is `non_ip`, a truncated IPv4 header `malformed`, keys
//!   beyond `max_flows` `map_full`; every interval is conserved, and a
//!   drained generation takes new keys again.
//! * Cuts partition: feed A, cut, feed B, cut: each interval holds exactly
//!   its own frames; an empty cut is empty; intervals are contiguous.
//! * Bytes: a key's bytes are its frame length times its packets.
//! * Per-CPU values: counts of one key made on two CPUs add up.
//! * Concurrency: two writers pinned one per CPU while a third thread cuts
//!   in a loop: the intervals add up to exactly what was sent, and within
//!   each interval the flows add up to `counted` (no frame split across
//!   generations).
//! * A cut waits at least one RCU grace period (printed).
//!
//! Needs root. Run with: `cargo test -p netledger-lab --test swap -- --nocapture`

mod common;

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use common::{arp, pin_to, serial, two_writer_cpus, A4, A6, B4, B6, MAC_DST, MAC_SRC};
use etherparse::{IpHeaders, IpNumber, Ipv4Extensions, Ipv4Header, PacketBuilder, VlanId};
use netledger::lab::types::NR_BUCKETS;
use netledger::{
    Bucket, Buckets, Count, FlowKey, Interval, KeyMode, Ledger, LedgerConfig, Strategy,
};
use netledger_lab::bench::median;

/// The only verdict the data path may return.
const XDP_PASS: u32 = 2;

const C4: [u8; 4] = [10, 1, 2, 200];
/// 2001:db8:1:2::ff (same /64 as A6)
const C6: [u8; 16] = [
    0x20, 0x01, 0x0d, 0xb8, 0, 1, 0, 2, 0, 0, 0, 0, 0, 0, 0, 0xff,
];

// ---------------------------------------------------------------------------
// Frames

fn vid(v: u16) -> VlanId {
    VlanId::try_new(v).expect("a 12-bit VLAN id")
}

fn udp4(src: [u8; 4], dst: [u8; 4], sport: u16, dport: u16, payload: usize) -> Vec<u8> {
    let mut out = Vec::new();
    PacketBuilder::ethernet2(MAC_SRC, MAC_DST)
        .ipv4(src, dst, 64)
        .udp(sport, dport)
        .write(&mut out, &vec![0xab; payload])
        .expect("etherparse writes the frame");
    out
}

fn tcp4(src: [u8; 4], dst: [u8; 4], sport: u16, dport: u16) -> Vec<u8> {
    let mut out = Vec::new();
    PacketBuilder::ethernet2(MAC_SRC, MAC_DST)
        .ipv4(src, dst, 64)
        .tcp(sport, dport, 1, 65535)
        .write(&mut out, b"tcp payload")
        .expect("etherparse writes the frame");
    out
}

fn icmp4(src: [u8; 4], dst: [u8; 4]) -> Vec<u8> {
    let mut out = Vec::new();
    PacketBuilder::ethernet2(MAC_SRC, MAC_DST)
        .ipv4(src, dst, 64)
        .icmpv4_echo_request(7, 1)
        .write(&mut out, b"ping")
        .expect("etherparse writes the frame");
    out
}

fn udp6(src: [u8; 16], dst: [u8; 16], sport: u16, dport: u16) -> Vec<u8> {
    let mut out = Vec::new();
    PacketBuilder::ethernet2(MAC_SRC, MAC_DST)
        .ipv6(src, dst, 64)
        .udp(sport, dport)
        .write(&mut out, b"udp6 payload")
        .expect("etherparse writes the frame");
    out
}

fn tcp6_qinq(src: [u8; 16], dst: [u8; 16], outer: u16, inner: u16) -> Vec<u8> {
    let mut out = Vec::new();
    PacketBuilder::ethernet2(MAC_SRC, MAC_DST)
        .double_vlan(vid(outer), vid(inner))
        .ipv6(src, dst, 64)
        .tcp(443, 50000, 1, 65535)
        .write(&mut out, b"qinq")
        .expect("etherparse writes the frame");
    out
}

fn icmp6(src: [u8; 16], dst: [u8; 16]) -> Vec<u8> {
    let mut out = Vec::new();
    PacketBuilder::ethernet2(MAC_SRC, MAC_DST)
        .ipv6(src, dst, 64)
        .icmpv6_echo_request(7, 1)
        .write(&mut out, b"ping6")
        .expect("etherparse writes the frame");
    out
}

fn udp4_tagged(vlan: u16, src: [u8; 4], dst: [u8; 4]) -> Vec<u8> {
    let mut out = Vec::new();
    PacketBuilder::ethernet2(MAC_SRC, MAC_DST)
        .single_vlan(vid(vlan))
        .ipv4(src, dst, 64)
        .udp(5353, 5353)
        .write(&mut out, b"tagged")
        .expect("etherparse writes the frame");
    out
}

/// A non-first IPv4 fragment (offset 185 x 8 bytes): no ports in its key.
fn fragment4(src: [u8; 4], dst: [u8; 4]) -> Vec<u8> {
    let mut h = Ipv4Header::new(0, 64, IpNumber::UDP, src, dst).expect("a valid IPv4 header");
    h.fragment_offset = etherparse::IpFragOffset::try_new(185).expect("a 13-bit offset");
    let mut out = Vec::new();
    PacketBuilder::ethernet2(MAC_SRC, MAC_DST)
        .ip(IpHeaders::Ipv4(h, Ipv4Extensions::default()))
        .udp(1, 2)
        .write(&mut out, &[0x55; 40])
        .expect("etherparse writes the frame");
    out
}

/// An IPv4 frame cut off in the middle of its IP header.
fn truncated4() -> Vec<u8> {
    let mut f = udp4(A4, B4, 1000, 2000, 10);
    f.truncate(14 + 12);
    f
}

/// A mixed set of frames, each with how many times to run it.
fn mixed_frames() -> Vec<(Vec<u8>, u32)> {
    vec![
        (udp4(A4, B4, 4000, 9000, 22), 3),
        (udp4(A4, B4, 4001, 9000, 100), 2),
        (udp4(C4, B4, 4000, 9000, 0), 5),
        (tcp4(B4, A4, 9000, 4000), 4),
        (icmp4(A4, B4), 1),
        (udp6(A6, B6, 1111, 2222), 6),
        (udp6(C6, B6, 1111, 2222), 2),
        (icmp6(B6, A6), 3),
        (tcp6_qinq(A6, B6, 100, 200), 2),
        (udp4_tagged(42, A4, B4), 7),
        (udp4_tagged(43, A4, B4), 1),
        (fragment4(A4, B4), 2),
        (arp(), 2),
        (truncated4(), 1),
    ]
}

// ---------------------------------------------------------------------------
// Helpers

fn config(strategy: Strategy) -> LedgerConfig {
    LedgerConfig {
        strategy,
        ..LedgerConfig::default()
    }
}

fn swap_ledger(cfg: LedgerConfig) -> Ledger {
    netledger::quiet_libbpf();
    Ledger::load(LedgerConfig {
        strategy: Strategy::Swap,
        ..cfg
    })
    .expect("loading the swap data path (needs root)")
}

/// Run `frame` `repeat` times; the frame must pass unchanged.
fn feed(ledger: &Ledger, frame: &[u8], repeat: u32) {
    let run = ledger.test_run(frame, repeat).expect("test_run");
    assert_eq!(run.retval, XDP_PASS, "the data path must pass every frame");
    assert_eq!(
        run.data_out, frame,
        "the data path must not modify the frame"
    );
}

fn feed_all(ledger: &Ledger, frames: &[(Vec<u8>, u32)]) {
    for (f, n) in frames {
        feed(ledger, f, *n);
    }
}

fn flows_map(i: &Interval) -> HashMap<FlowKey, Count> {
    let mut m = HashMap::new();
    for (k, c) in &i.flows {
        assert!(
            m.insert(*k, *c).is_none(),
            "key {k:?} twice in one interval"
        );
    }
    m
}

/// The interval is conserved and its flows add up to `counted`.
fn check_interval(i: &Interval) {
    assert!(
        i.buckets.conserved(),
        "interval not conserved: {:?}",
        i.buckets
    );
    assert_eq!(
        i.flow_total(),
        i.buckets.get(Bucket::Counted),
        "flows must add up to the counted bucket"
    );
    assert_eq!(
        i.buckets.get(Bucket::EvictRace),
        Count::default(),
        "swap never evicts"
    );
}

fn count(packets: u64, bytes: u64) -> Count {
    Count { packets, bytes }
}

/// Every bucket's count, in `Bucket::ALL` order.
fn counts(b: &Buckets) -> [Count; NR_BUCKETS] {
    Bucket::ALL.map(|k| b.get(k))
}

// ---------------------------------------------------------------------------
// Tests

#[test]
fn every_key_mode_gives_the_keys_of_strategy_lock() {
    let mut configs: Vec<LedgerConfig> = KeyMode::ALL
        .into_iter()
        .map(|key_mode| LedgerConfig {
            key_mode,
            ..LedgerConfig::default()
        })
        .collect();
    configs.push(LedgerConfig {
        key_mode: KeyMode::FiveTuple,
        vlan: true,
        prefix4: Some(24),
        prefix6: Some(64),
        ..LedgerConfig::default()
    });
    configs.push(LedgerConfig {
        key_mode: KeyMode::IpPair,
        vlan: true,
        prefix4: Some(16),
        prefix6: Some(48),
        ..LedgerConfig::default()
    });
    let frames = mixed_frames();
    for cfg in configs {
        let lock = Ledger::load(LedgerConfig {
            strategy: Strategy::Lock,
            ..cfg.clone()
        })
        .expect("loading the lock data path (needs root)");
        let swap = swap_ledger(cfg.clone());
        feed_all(&lock, &frames);
        feed_all(&swap, &frames);
        let (l, s) = (lock.cut().expect("lock cut"), swap.cut().expect("swap cut"));
        check_interval(&s);
        println!(
            "{} vlan={} prefix4={:?} prefix6={:?}: {} keys, buckets {:?}",
            cfg.key_mode,
            cfg.vlan,
            cfg.prefix4,
            cfg.prefix6,
            s.flows.len(),
            counts(&s.buckets)
        );
        assert!(!s.flows.is_empty());
        assert_eq!(
            flows_map(&s),
            flows_map(&l),
            "swap and lock keys differ under {cfg:?}"
        );
        assert_eq!(
            counts(&s.buckets),
            counts(&l.buckets),
            "swap and lock buckets differ under {cfg:?}"
        );
    }
}

#[test]
fn non_ip_malformed_and_map_full_buckets() {
    let ledger = swap_ledger(LedgerConfig {
        max_flows: 4,
        ..config(Strategy::Swap)
    });
    let keys: Vec<Vec<u8>> = (0..10).map(|i| udp4(A4, B4, 1000 + i, 53, 10)).collect();
    let len = keys[0].len() as u64;
    let (arp, bad) = (arp(), truncated4());
    // Three intervals: generation 0, then 1, then 0 again (drained and reused).
    for round in 0..3 {
        feed(&ledger, &arp, 3);
        feed(&ledger, &bad, 2);
        for k in &keys {
            feed(&ledger, k, 1);
        }
        // Keys already in the map keep counting when it is full.
        feed(&ledger, &keys[0], 5);

        let live = ledger.buckets().expect("live buckets");
        let i = ledger.cut().expect("cut");
        check_interval(&i);
        assert_eq!(
            live, i.buckets,
            "round {round}: the live reading is the interval's"
        );
        let b = &i.buckets;
        assert_eq!(
            b.get(Bucket::NonIp),
            count(3, 3 * arp.len() as u64),
            "round {round}"
        );
        assert_eq!(
            b.get(Bucket::Malformed),
            count(2, 2 * bad.len() as u64),
            "round {round}"
        );
        assert_eq!(b.get(Bucket::MapFull), count(6, 6 * len), "round {round}");
        assert_eq!(b.get(Bucket::Counted), count(9, 9 * len), "round {round}");
        assert_eq!(b.get(Bucket::Seen).packets, 3 + 2 + 10 + 5, "round {round}");
        assert_eq!(
            i.flows.len(),
            4,
            "round {round}: the map holds max_flows keys"
        );
        let sports: Vec<u16> = i
            .flows
            .iter()
            .map(|(k, _)| match k.l4 {
                netledger::L4::Ports { src, .. } => src,
                other => panic!("unexpected l4 {other:?}"),
            })
            .collect();
        for p in &sports {
            assert!(
                (1000..1004).contains(p),
                "round {round}: the first four keys get in, not {p}"
            );
        }
        println!("round {round}: {:?}", counts(&i.buckets));
    }
}

#[test]
fn successive_cuts_partition_the_traffic() {
    let ledger = swap_ledger(config(Strategy::Swap));
    let (f1, f2, f3) = (
        udp4(A4, B4, 1, 2, 10),
        udp6(A6, B6, 3, 4),
        tcp4(B4, C4, 5, 6),
    );
    let (arp, bad) = (arp(), truncated4());
    let len = |f: &Vec<u8>| f.len() as u64;

    let first = ledger.cut().expect("cut on a fresh ledger");
    assert!(
        first.flows.is_empty() && first.buckets == Buckets::default(),
        "fresh ledger not empty"
    );

    // A
    feed(&ledger, &f1, 3);
    feed(&ledger, &f2, 5);
    feed(&ledger, &arp, 2);
    let a = ledger.cut().expect("cut A");
    check_interval(&a);
    let fa = flows_map(&a);
    assert_eq!(fa.len(), 2);
    assert!(fa.values().any(|c| *c == count(3, 3 * len(&f1))));
    assert!(fa.values().any(|c| *c == count(5, 5 * len(&f2))));
    assert_eq!(a.buckets.get(Bucket::Seen).packets, 10);
    assert_eq!(a.buckets.get(Bucket::NonIp), count(2, 2 * len(&arp)));

    // B: one key of A again, one new.
    feed(&ledger, &f2, 7);
    feed(&ledger, &f3, 1);
    feed(&ledger, &bad, 1);
    let b = ledger.cut().expect("cut B");
    check_interval(&b);
    let fb = flows_map(&b);
    assert_eq!(fb.len(), 2);
    assert!(fb.values().any(|c| *c == count(7, 7 * len(&f2))));
    assert!(fb.values().any(|c| *c == count(1, len(&f3))));
    assert_eq!(b.buckets.get(Bucket::Seen).packets, 9);
    assert_eq!(b.buckets.get(Bucket::NonIp), Count::default());
    assert_eq!(b.buckets.get(Bucket::Malformed), count(1, len(&bad)));
    // The key in both holds only its own interval's packets in each.
    let k2 = fa
        .iter()
        .find(|(_, c)| c.packets == 5)
        .map(|(k, _)| *k)
        .unwrap();
    assert_eq!(fb[&k2], count(7, 7 * len(&f2)));

    // Nothing since: an empty interval, and the live reading is empty too.
    assert_eq!(ledger.buckets().expect("live buckets"), Buckets::default());
    let e = ledger.cut().expect("empty cut");
    assert!(e.flows.is_empty(), "empty cut has flows: {:?}", e.flows);
    assert_eq!(e.buckets, Buckets::default());

    // Intervals are contiguous.
    assert_eq!(a.end, b.start);
    assert_eq!(b.end, e.start);
    assert!(a.start <= a.end && b.start <= b.end && e.start <= e.end);
}

#[test]
fn bytes_are_frame_length_times_packets() {
    let ledger = swap_ledger(config(Strategy::Swap));
    let frames: Vec<(Vec<u8>, u32)> = [0usize, 1, 18, 100, 1000, 1472]
        .iter()
        .enumerate()
        .map(|(i, &p)| (udp4(A4, B4, 7000 + i as u16, 80, p), 3 + 2 * i as u32))
        .chain([(icmp6(A6, B6), 11), (tcp6_qinq(A6, B6, 7, 8), 13)])
        .collect();
    feed_all(&ledger, &frames);
    let i = ledger.cut().expect("cut");
    check_interval(&i);
    assert_eq!(i.flows.len(), frames.len());
    let mut got: Vec<Count> = i.flows.iter().map(|(_, c)| *c).collect();
    let mut want: Vec<Count> = frames
        .iter()
        .map(|(f, n)| count(u64::from(*n), u64::from(*n) * f.len() as u64))
        .collect();
    got.sort_by_key(|c| (c.bytes, c.packets));
    want.sort_by_key(|c| (c.bytes, c.packets));
    assert_eq!(got, want);
    for (_, c) in &i.flows {
        assert_eq!(c.bytes % c.packets, 0);
    }
}

// ---------------------------------------------------------------------------
// CPUs

#[test]
fn per_cpu_copies_add_up() {
    let cpus = two_writer_cpus();
    let _serial = serial();
    let ledger = swap_ledger(config(Strategy::Swap));
    let f = udp4(A4, B4, 1234, 80, 30);
    // The first CPU inserts the key; the second finds it with its own copy zeroed.
    for (cpu, n) in [(cpus[0], 1000u32), (cpus[1], 24), (cpus[0], 3)] {
        thread::scope(|s| {
            s.spawn(|| {
                pin_to(cpu);
                feed(&ledger, &f, n);
            });
        });
    }
    let i = ledger.cut().expect("cut");
    check_interval(&i);
    assert_eq!(i.flows.len(), 1);
    assert_eq!(i.flows[0].1, count(1027, 1027 * f.len() as u64));
}

#[test]
fn concurrent_cuts_lose_nothing() {
    const CALLS: u32 = 20;
    const REPEAT: u32 = 100_000;
    let cpus = two_writer_cpus();
    let _serial = serial();
    let ledger = swap_ledger(config(Strategy::Swap));
    let frames = [udp4(A4, B4, 1, 2, 22), udp6(A6, B6, 3, 4)];
    let junk = arp();
    let stop = AtomicBool::new(false);
    let mut intervals = Vec::new();
    let start = Instant::now();
    thread::scope(|s| {
        let writers: Vec<_> = cpus
            .iter()
            .zip(&frames)
            .map(|(&cpu, frame)| {
                let (ledger, junk) = (&ledger, &junk);
                s.spawn(move || {
                    pin_to(cpu);
                    for _ in 0..CALLS {
                        feed(ledger, frame, REPEAT);
                        feed(ledger, junk, 1);
                    }
                })
            })
            .collect();
        s.spawn(|| {
            while !stop.load(Ordering::SeqCst) {
                intervals.push(ledger.cut().expect("cut"));
            }
        });
        for w in writers {
            w.join().expect("writer");
        }
        stop.store(true, Ordering::SeqCst);
    });
    intervals.push(ledger.cut().expect("final cut"));
    let elapsed = start.elapsed();

    let mut total = Buckets::default();
    let mut per_key: HashMap<FlowKey, Count> = HashMap::new();
    let mut busy = 0;
    for i in &intervals {
        check_interval(i);
        busy += usize::from(!i.flows.is_empty());
        for b in Bucket::ALL {
            total.add_to(b, i.buckets.get(b));
        }
        for (k, c) in &i.flows {
            per_key.entry(*k).or_default().add(*c);
        }
    }
    println!(
        "{} cuts ({busy} with traffic) during {:.2?} of 2 writers x {} packets",
        intervals.len(),
        elapsed,
        u64::from(CALLS) * u64::from(REPEAT)
    );
    let sent = u64::from(CALLS) * u64::from(REPEAT);
    assert!(busy >= 2, "the writers should span several cuts");
    assert_eq!(per_key.len(), 2);
    let mut got: Vec<Count> = per_key.values().copied().collect();
    got.sort_by_key(|c| c.bytes);
    let mut want: Vec<Count> = frames
        .iter()
        .map(|f| count(sent, sent * f.len() as u64))
        .collect();
    want.sort_by_key(|c| c.bytes);
    assert_eq!(got, want, "every packet in exactly one interval");
    assert_eq!(
        total.get(Bucket::NonIp),
        count(
            2 * u64::from(CALLS),
            2 * u64::from(CALLS) * junk.len() as u64
        )
    );
    assert_eq!(
        total.get(Bucket::Seen).packets,
        2 * sent + 2 * u64::from(CALLS)
    );
}

#[test]
fn a_cut_waits_for_a_grace_period() {
    let _serial = serial();
    let ledger = swap_ledger(config(Strategy::Swap));
    let f = udp4(A4, B4, 1, 2, 10);
    let mut graces = Vec::new();
    let mut cuts = Vec::new();
    for _ in 0..5 {
        let t = Instant::now();
        ledger.wait_for_programs().expect("grace period");
        graces.push(t.elapsed());
        feed(&ledger, &f, 10);
        let t = Instant::now();
        let i = ledger.cut().expect("cut");
        cuts.push(t.elapsed());
        assert_eq!(i.flow_total().packets, 10);
    }
    let min = |v: &[Duration]| *v.iter().min().unwrap();
    let med = |v: &[Duration]| {
        let secs: Vec<f64> = v.iter().map(Duration::as_secs_f64).collect();
        Duration::from_secs_f64(median(&secs))
    };
    println!(
        "grace period alone: {graces:.2?} (min {:.2?}, median {:.2?})",
        min(&graces),
        med(&graces)
    );
    println!(
        "swap cut:           {cuts:.2?} (min {:.2?}, median {:.2?})",
        min(&cuts),
        med(&cuts)
    );
    // A cut contains one grace period (the wait after the flip); grace
    // periods vary, so compare with the shortest one seen, with slack.
    assert!(
        min(&cuts) >= min(&graces) / 2,
        "a cut ({:?}) returned faster than half a grace period ({:?})",
        min(&cuts),
        min(&graces)
    );
}

/// A cut is finished once, and only while it is the open one: finishing it
/// again, or a stale cut after a later take, is refused and clears nothing.
#[test]
fn only_the_open_cut_is_finished() {
    let _serial = serial();
    for strategy in [Strategy::Swap, Strategy::Lock] {
        let ledger = Ledger::load(config(strategy)).expect("loading (needs root)");
        let f = udp4(A4, B4, 1234, 80, 30);
        feed(&ledger, &f, 5);
        let first = ledger.take_cut().expect("take");
        ledger.finish_cut(&first).expect("finish");
        let again = ledger.finish_cut(&first).expect_err("finished twice");
        assert!(
            matches!(again, netledger::Error::CutNotOpen { .. }),
            "{strategy}: {again}"
        );
        // A stale cut, after the next one is taken: the next one's counts stay.
        feed(&ledger, &f, 7);
        let second = ledger.take_cut().expect("take");
        assert!(ledger.finish_cut(&first).is_err(), "{strategy}: stale cut");
        let retaken = ledger.take_cut().expect("the open cut again");
        assert_eq!(retaken.interval.seq, second.interval.seq, "{strategy}");
        assert_eq!(
            retaken.interval.flows, second.interval.flows,
            "{strategy}: nothing was cleared"
        );
        ledger.finish_cut(&retaken).expect("finish");
        assert_eq!(
            second.interval.flows[0].1,
            count(7, 7 * f.len() as u64),
            "{strategy}"
        );
    }
}
