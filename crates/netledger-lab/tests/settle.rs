//! Bucket readings under load: why `Ledger::buckets` takes each CPU's
//! settled copy as it comes instead of waiting for one read in which every
//! CPU is settled.
//!
//! The data path bumps a per-CPU `started`, adds to the buckets, then bumps
//! `done`; a CPU's copy is settled when `done == started`. One writer per CPU
//! drives the (tc) data path through BPF_PROG_TEST_RUN (a UDP frame and an
//! ARP frame in turn) and a busy thread per CPU competes with it and with the
//! reader (the reader shares the first CPU). Over the same per-CPU copies
//! the test measures:
//!
//! * each CPU's settle rate (the share of copies of it that are settled),
//!   for the reader's own CPU and for the other one, with and without the
//!   busy threads;
//! * the old method as the control: read until one read has every CPU
//!   settled (giving up after as many reads as the library allows);
//! * the new method (as `stats::read_settled` does it), over raw copies so
//!   that its reads are counted, and the library's `buckets()` itself: every
//!   reading must succeed and be conserved.
//!
//! A CPU's copy taken from that CPU is always settled (the data path runs
//! with bottom halves off, so the reader never interrupts it), so on a
//! machine of two CPUs both methods wait for the same thing, the other CPU;
//! the old method's cost grows as the product of the other CPUs' settle
//! rates, the new one's as the slowest of them. From the measured rate the
//! test computes both for 64 and 256 CPUs and requires the old method to be
//! far slower there (at least 100 times as many reads at 64 CPUs). Takes
//! about 12 s; needs root and at least two CPUs (it fails saying so with
//! fewer).
//!
//! Run with: `cargo test -p netledger-lab --test settle -- --nocapture`

use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use libbpf_rs::{MapCore, MapFlags, MapHandle};
use netledger::lab::types::nl_stats;
use netledger::lab::SkbContext;
use netledger::{Bucket, Hook, Ledger, LedgerConfig, Strategy};
use netledger_lab::harness::{allowed_cpus, pin_to, StopOnDrop};

/// Reads after which `read_settled` gives up (its `TRIES`).
const TRIES: u64 = 1_000_000;
/// Runs per test_run call of a writer.
const REPEAT: u32 = 50_000;
/// How long each measurement runs.
const PHASE: Duration = Duration::from_secs(2);

fn two_cpus() -> [usize; 2] {
    let cpus = allowed_cpus().expect("sched_getaffinity");
    match cpus[..] {
        [a, b, ..] => [a, b],
        _ => panic!(
            "this test needs at least two CPUs (a reader beside a busy data path); \
             this process may use only {cpus:?}"
        ),
    }
}

#[track_caller]
fn pin(cpu: usize) {
    pin_to(cpu).unwrap_or_else(|e| panic!("sched_setaffinity(cpu {cpu}): {e}"));
}

/// A 64-byte IPv4 UDP frame (counted) and a 60-byte ARP frame (non_ip).
fn frames() -> [Vec<u8>; 2] {
    let builder = etherparse::PacketBuilder::ethernet2([2, 0, 0, 0, 0, 1], [2, 0, 0, 0, 0, 2])
        .ipv4([10, 0, 0, 1], [10, 0, 0, 2], 64)
        .udp(4000, 9000);
    let mut udp = Vec::new();
    builder.write(&mut udp, &[0u8; 22]).unwrap();
    let mut arp = vec![0u8; 60];
    arp[0..6].copy_from_slice(&[0xff; 6]);
    arp[6..12].copy_from_slice(&[2, 0, 0, 0, 0, 1]);
    arp[12..14].copy_from_slice(&0x0806u16.to_be_bytes());
    arp[14..22].copy_from_slice(&[0, 1, 8, 0, 6, 4, 0, 1]);
    [udp, arp]
}

/// The ledger's per-CPU statistics map, reached through its program's maps
/// (root may open a map by id).
fn stats_map(ledger: &Ledger) -> MapHandle {
    let mut ids = vec![0u32; 64];
    let mut info = libbpf_sys::bpf_prog_info {
        nr_map_ids: ids.len() as u32,
        map_ids: ids.as_mut_ptr() as u64,
        ..Default::default()
    };
    let mut len = std::mem::size_of::<libbpf_sys::bpf_prog_info>() as u32;
    // SAFETY: `info` is a bpf_prog_info of `len` bytes; its map_ids points at
    // `ids`, room for nr_map_ids ids, alive for the call.
    let ret = unsafe {
        libbpf_sys::bpf_prog_get_info_by_fd(ledger.program_fd().as_raw_fd(), &mut info, &mut len)
    };
    assert_eq!(ret, 0, "BPF_OBJ_GET_INFO_BY_FD of the data path");
    ids.truncate(info.nr_map_ids as usize);
    ids.into_iter()
        .map(|id| MapHandle::from_map_id(id).expect("opening a map of the data path by id"))
        .find(|m| m.name().to_str() == Some("nl_stats"))
        .expect("the data path uses nl_stats")
}

/// One read of every CPU's copy: whether each is settled, and the copies.
fn read_raw(stats: &MapHandle) -> Vec<nl_stats> {
    stats
        .lookup_percpu(&0u32.to_ne_bytes(), MapFlags::ANY)
        .expect("reading nl_stats")
        .expect("nl_stats has its one entry")
        .iter()
        .map(|b| netledger::lab::from_bytes(b))
        .collect()
}

fn settled(s: &nl_stats) -> bool {
    s.done == s.started
}

/// The old method: read until one read has every CPU settled. The number of
/// reads it took, or None if it gave up after TRIES.
fn old_method(stats: &MapHandle, deadline: Instant) -> Option<u64> {
    for n in 1..=TRIES {
        if read_raw(stats).iter().all(settled) {
            return Some(n);
        }
        if Instant::now() > deadline {
            return None;
        }
    }
    None
}

/// The new method: each CPU's first settled copy, across reads. The number
/// of reads it took, or None if it gave up after TRIES.
fn new_method(stats: &MapHandle) -> Option<u64> {
    let mut have: Vec<bool> = Vec::new();
    for n in 1..=TRIES {
        let copies = read_raw(stats);
        have.resize(copies.len(), false);
        for (h, c) in have.iter_mut().zip(&copies) {
            *h |= settled(c);
        }
        if have.iter().all(|&h| h) {
            return Some(n);
        }
    }
    None
}

/// Writers on both CPUs (and, with `hog`, a busy thread on each) while
/// `reader` runs on the first CPU.
fn under_load<R: Send>(
    ledger: &Ledger,
    cpus: [usize; 2],
    hog: bool,
    reader: impl FnOnce() -> R + Send,
) -> (R, [u64; 2]) {
    let stop = AtomicBool::new(false);
    let frames = frames();
    thread::scope(|s| {
        let mut writers = Vec::new();
        for (w, &cpu) in cpus.iter().enumerate() {
            let (stop, frames) = (&stop, &frames);
            writers.push(s.spawn(move || {
                let _guard = StopOnDrop(stop);
                pin(cpu);
                let mut runs = [0u64; 2];
                let mut i = w % 2;
                while !stop.load(Ordering::Relaxed) {
                    ledger
                        .test_run_skb(&frames[i], SkbContext::default(), REPEAT)
                        .expect("test_run");
                    runs[i] += u64::from(REPEAT);
                    i = (i + 1) % 2;
                }
                runs
            }));
            if hog {
                s.spawn(move || {
                    let _guard = StopOnDrop(stop);
                    pin(cpu);
                    let mut x = 1u64;
                    while !stop.load(Ordering::Relaxed) {
                        x = std::hint::black_box(x.wrapping_mul(6_364_136_223_846_793_005) + 1);
                    }
                });
            }
        }
        let out = s
            .spawn(|| {
                let _guard = StopOnDrop(&stop);
                pin(cpus[0]);
                reader()
            })
            .join();
        let mut runs = [0u64; 2];
        for w in writers {
            let r = w.join().expect("writer panicked");
            runs[0] += r[0];
            runs[1] += r[1];
        }
        match out {
            Ok(r) => (r, runs),
            Err(p) => std::panic::resume_unwind(p),
        }
    })
}

/// Settle rates over PHASE of reads: per CPU, and of whole reads; and per
/// CPU over the reads in which that CPU was busy in the data path (its
/// `started` moved since the previous read), the rate a CPU saturated by
/// traffic has.
#[derive(Debug, Default)]
struct Rates {
    reads: u64,
    settled: Vec<u64>,
    all: u64,
    busy_reads: Vec<u64>,
    busy_settled: Vec<u64>,
}

impl Rates {
    fn of(&self, cpu: usize) -> f64 {
        self.settled[cpu] as f64 / self.reads as f64
    }
    fn all(&self) -> f64 {
        self.all as f64 / self.reads as f64
    }
    fn busy(&self, cpu: usize) -> f64 {
        self.busy_settled[cpu] as f64 / self.busy_reads[cpu].max(1) as f64
    }
}

fn measure_rates(stats: &MapHandle) -> Rates {
    let mut r = Rates::default();
    let mut prev: Vec<u64> = Vec::new();
    let start = Instant::now();
    while start.elapsed() < PHASE {
        let copies = read_raw(stats);
        let n = copies.len();
        r.settled.resize(n, 0);
        r.busy_reads.resize(n, 0);
        r.busy_settled.resize(n, 0);
        prev.resize(n, u64::MAX);
        let mut all = true;
        for (cpu, c) in copies.iter().enumerate() {
            let ok = settled(c);
            r.settled[cpu] += u64::from(ok);
            all &= ok;
            if prev[cpu] != u64::MAX && c.started != prev[cpu] {
                r.busy_reads[cpu] += 1;
                r.busy_settled[cpu] += u64::from(ok);
            }
            prev[cpu] = c.started;
        }
        r.reads += 1;
        r.all += u64::from(all);
    }
    r
}

/// Readings taken over PHASE with `method`: reads per reading, and failures.
fn readings(mut method: impl FnMut(Instant) -> Option<u64>) -> (Vec<u64>, u64) {
    let (mut done, mut failed) = (Vec::new(), 0);
    let start = Instant::now();
    while start.elapsed() < PHASE {
        match method(start + PHASE * 5) {
            Some(n) => done.push(n),
            None => failed += 1,
        }
    }
    (done, failed)
}

fn describe(v: &[u64]) -> String {
    if v.is_empty() {
        return "none".into();
    }
    let mut v = v.to_vec();
    v.sort_unstable();
    format!(
        "{} readings, reads per reading: median {}, max {}, mean {:.2}",
        v.len(),
        v[v.len() / 2],
        v[v.len() - 1],
        v.iter().sum::<u64>() as f64 / v.len() as f64
    )
}

/// Expected reads of the old method with `n` CPUs, the reader's own always
/// settled and the others each settled with probability `s`.
fn old_expected(s: f64, n: u32) -> f64 {
    s.powi(n as i32 - 1).recip()
}

/// Probability that the old method gives up after TRIES reads.
fn old_fails(s: f64, n: u32) -> f64 {
    let p = s.powi(n as i32 - 1);
    (TRIES as f64 * (-p).ln_1p()).exp()
}

/// Expected reads of the new method: until each of the n - 1 other CPUs
/// showed one settled copy (the largest of n - 1 geometric waits).
fn new_expected(s: f64, n: u32) -> f64 {
    let mut e = 0.0;
    for k in 0..100_000 {
        let p_more = 1.0 - (1.0 - (1.0 - s).powi(k)).powi(n as i32 - 1);
        e += p_more;
        if p_more < 1e-12 {
            break;
        }
    }
    e
}

#[test]
fn settled_buckets_never_fail_under_load() {
    let cpus = two_cpus();
    // The tc data path: its test runs, unlike XDP's, do not wait for an RCU
    // grace period, so a writer is in the data path all the time it runs.
    let ledger = Ledger::load_at(
        LedgerConfig {
            strategy: Strategy::Lock,
            ..LedgerConfig::default()
        },
        Hook::TcIngress,
    )
    .expect("load (needs root)");
    let stats = stats_map(&ledger);
    let mut total = [0u64; 2];
    let mut add = |runs: [u64; 2]| {
        total[0] += runs[0];
        total[1] += runs[1];
    };

    // The busy data path alone: the worst case for a CPU's settle rate.
    let (busy, runs) = under_load(&ledger, cpus, false, || measure_rates(&stats));
    add(runs);
    // With a busy thread per CPU beside the writers.
    let (hogged, runs) = under_load(&ledger, cpus, true, || measure_rates(&stats));
    add(runs);
    let (old, runs) = under_load(&ledger, cpus, true, || {
        readings(|deadline| old_method(&stats, deadline))
    });
    add(runs);
    let (new, runs) = under_load(&ledger, cpus, true, || readings(|_| new_method(&stats)));
    add(runs);
    let (product, runs) = under_load(&ledger, cpus, true, || {
        let (mut ok, mut errors, mut broken) = (0u64, Vec::new(), 0u64);
        let start = Instant::now();
        while start.elapsed() < PHASE {
            match ledger.buckets() {
                Ok(b) if b.conserved() => ok += 1,
                Ok(_) => broken += 1,
                Err(e) => errors.push(e.to_string()),
            }
        }
        (ok, errors, broken)
    });
    add(runs);

    let (me, other) = (cpus[0], cpus[1]);
    for (name, r) in [("data path alone", &busy), ("with busy threads", &hogged)] {
        eprintln!(
            "settle rates, {name}: {} reads; reader's CPU {me}: {:.4}, other CPU {other}: {:.4} \
             ({:.4} over the {} reads in which it was busy in the data path), every CPU in one read: {:.4}",
            r.reads,
            r.of(me),
            r.of(other),
            r.busy(other),
            r.busy_reads[other],
            r.all()
        );
    }
    eprintln!(
        "old method (all CPUs in one read), with busy threads: {}; gave up: {}",
        describe(&old.0),
        old.1
    );
    eprintln!(
        "new method (each CPU as it comes), with busy threads: {}; gave up: {}",
        describe(&new.0),
        new.1
    );
    eprintln!(
        "library buckets(), with busy threads: {} conserved readings, {} not conserved, {} errors",
        product.0,
        product.2,
        product.1.len()
    );
    for (name, s) in [
        ("a CPU busy in the data path", busy.busy(other)),
        ("data path alone, all reads", busy.of(other)),
        ("with busy threads, all reads", hogged.of(other)),
    ] {
        for n in [2u32, 16, 64, 256] {
            eprintln!(
                "estimate, {name} (s = {s:.3}), {n} CPUs: old method {:.3e} reads expected, gives up after {TRIES} with probability {:.4}; new method {:.1} reads expected",
                old_expected(s, n),
                old_fails(s, n),
                new_expected(s, n)
            );
        }
    }

    // Quiet now: every run is in the buckets, exactly.
    let b = ledger.buckets().expect("a quiet reading");
    assert!(b.conserved(), "quiet reading not conserved: {b:?}");
    assert_eq!(
        b.get(Bucket::Counted).packets,
        total[0],
        "every UDP run counted"
    );
    assert_eq!(
        b.get(Bucket::NonIp).packets,
        total[1],
        "every ARP run in non_ip"
    );

    assert!(
        product.1.is_empty() && product.2 == 0 && product.0 > 0,
        "buckets() under load: {} conserved, {} not conserved, errors: {:?}",
        product.0,
        product.2,
        product.1
    );
    assert_eq!(new.1, 0, "the new method gave up under load");
    assert!(
        !new.0.is_empty(),
        "the new method took no reading in {PHASE:?}"
    );
    assert!(
        busy.of(me) > 0.999 && hogged.of(me) > 0.999,
        "the reader's own CPU is settled in every copy taken from it (rates {:.4}, {:.4})",
        busy.of(me),
        hogged.of(me)
    );
    let s = busy.busy(other);
    assert!(
        busy.busy_reads[other] > 1000 && s > 0.0 && s < 1.0,
        "the other CPU's settle rate while busy in the data path is {s} over {} reads: \
         it should be mid-update at times",
        busy.busy_reads[other]
    );
    let (old64, new64) = (old_expected(s, 64), new_expected(s, 64));
    assert!(
        old64 >= 100.0 * new64,
        "with the measured settle rate {s:.3}, at 64 CPUs the old method expects {old64:.3e} reads and the new {new64:.1}: \
         the old should be far slower"
    );
}
