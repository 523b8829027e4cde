//! Coherence under contention.
//!
//! Two writer threads, pinned one per CPU, drive the XDP data path through
//! BPF_PROG_TEST_RUN with a large `repeat` while a reader thread copies the
//! counters in a loop.
//!
//! * Flows: every copy of the one flow must satisfy `bytes == packets * S`
//!   (S is the fixed frame size). With BPF_F_LOCK (`ReadMode::Locked`) no
//!   copy may be torn. Without it (`ReadMode::Unlocked`) the copy reads
//!   `packets` and `bytes` at slightly different moments, and a writer on the
//!   other CPU may be between its two additions inside its locked region: the
//!   harness must see at least one such torn pair, which shows it can detect
//!   tearing at all.
//! * Conservation buckets: every `buckets()` reading must be conserved (and
//!   settle); `buckets_unsettled()`, which ignores the sequence counters, is
//!   expected to show a non-conserved reading.
//!
//! Both tests need root (they load BPF programs) and at least two CPUs. They
//! take one lock so that they never run at the same time (cargo runs tests of
//! one binary in parallel), and every phase has a deadline: the flow test
//! takes at most about 40 s (3 x 3 s locked, at most 30 s unlocked), the
//! bucket test at most about 34 s (3 s settled, at most 30 s unsettled).
//!
//! Run with: `cargo test -p netledger-lab --test coherence -- --nocapture`

mod common;

use std::sync::atomic::{AtomicBool, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use common::{pin_to, serial, two_cpus_or_skip};
use netledger::lab::types::nl_flow_key;
use netledger::lab::ReadMode;
use netledger::Count;
use netledger::{Bucket, Buckets, Ledger, LedgerConfig, Strategy};
use netledger_lab::harness::StopOnDrop;

/// The size of the counted frame, in bytes (no FCS).
const S: u64 = 64;
/// Runs per BPF_PROG_TEST_RUN call. Each XDP test run waits for an RCU grace
/// period, so calls must be long; this one takes a fraction of a second.
const REPEAT: u32 = 200_000;
/// How long a side that must stay coherent is read.
const LOCKED_FOR: Duration = Duration::from_secs(3);
/// How long a side that must show incoherence may take to show it.
const UNLOCKED_BUDGET: Duration = Duration::from_secs(30);
/// An unlocked side that tore keeps being read at least this long, so that
/// its counts compare with the locked side's.
const UNLOCKED_MIN: Duration = Duration::from_secs(3);

/// A 64-byte IPv4 UDP frame: one five-tuple key.
fn udp_frame() -> Vec<u8> {
    let builder = etherparse::PacketBuilder::ethernet2([2, 0, 0, 0, 0, 1], [2, 0, 0, 0, 0, 2])
        .ipv4([10, 0, 0, 1], [10, 0, 0, 2], 64)
        .udp(4000, 9000);
    let mut buf = Vec::new();
    builder.write(&mut buf, &[0u8; 22]).unwrap();
    assert_eq!(buf.len() as u64, S);
    buf
}

/// A 60-byte ARP request: counted in `non_ip`, never in a flow.
fn arp_frame() -> Vec<u8> {
    let mut f = vec![0u8; 60];
    f[0..6].copy_from_slice(&[0xff; 6]);
    f[6..12].copy_from_slice(&[2, 0, 0, 0, 0, 1]);
    f[12..14].copy_from_slice(&0x0806u16.to_be_bytes());
    let arp = &mut f[14..42];
    arp[0..2].copy_from_slice(&1u16.to_be_bytes()); // Ethernet
    arp[2..4].copy_from_slice(&0x0800u16.to_be_bytes()); // IPv4
    arp[4] = 6;
    arp[5] = 4;
    arp[6..8].copy_from_slice(&1u16.to_be_bytes()); // request
    arp[8..14].copy_from_slice(&[2, 0, 0, 0, 0, 1]);
    arp[14..18].copy_from_slice(&[10, 0, 0, 1]);
    arp[24..28].copy_from_slice(&[10, 0, 0, 2]);
    f
}

/// One writer per CPU in `cpus`, each looping test_run over `frames` in turn
/// until the reader returns. The reader runs on its own thread (pinned to
/// `reader_cpu`, so it shares that CPU with a writer). Returns the reader's
/// result and the number of runs per frame index the writers completed.
fn with_writers<R: Send>(
    ledger: &Ledger,
    cpus: [usize; 2],
    frames: &[&[u8]],
    reader_cpu: usize,
    reader: impl FnOnce(&AtomicBool) -> R + Send,
) -> (R, Vec<u64>) {
    let stop = AtomicBool::new(false);
    thread::scope(|s| {
        let writers: Vec<_> = cpus
            .iter()
            .enumerate()
            .map(|(w, &cpu)| {
                let stop = &stop;
                s.spawn(move || {
                    // A writer that dies stops the phase too.
                    let _guard = StopOnDrop(stop);
                    pin_to(cpu);
                    let mut runs = vec![0u64; frames.len()];
                    // Writers start on different frames, so with two frames
                    // both kinds are always in flight.
                    let mut i = w % frames.len();
                    while !stop.load(Ordering::Relaxed) {
                        let r = ledger.test_run(frames[i], REPEAT).expect("test_run");
                        assert_eq!(r.retval, 2, "XDP_PASS");
                        runs[i] += u64::from(REPEAT);
                        i = (i + 1) % frames.len();
                    }
                    runs
                })
            })
            .collect();
        let out = s
            .spawn(|| {
                let _guard = StopOnDrop(&stop);
                pin_to(reader_cpu);
                reader(&stop)
            })
            .join();
        // Joined in every case: the guards have set `stop` by now.
        let mut runs = vec![0u64; frames.len()];
        for w in writers {
            for (t, n) in runs.iter_mut().zip(w.join().expect("writer panicked")) {
                *t += n;
            }
        }
        match out {
            Ok(r) => (r, runs),
            Err(p) => std::panic::resume_unwind(p),
        }
    })
}

/// What a flow reader saw.
#[derive(Debug, Default)]
struct FlowReads {
    reads: u64,
    torn: u64,
    first_torn: Option<Duration>,
    /// The first torn pair: (packets, bytes).
    example: Option<(u64, u64)>,
    elapsed: Duration,
}

/// Read the one flow with `read` until `done(elapsed, torn so far)` or the
/// writers stopped, checking `bytes == packets * S` in every copy.
fn read_flows(
    stop: &AtomicBool,
    mut read: impl FnMut() -> Count,
    done: impl Fn(Duration, u64) -> bool,
) -> FlowReads {
    let mut r = FlowReads::default();
    let start = Instant::now();
    loop {
        let elapsed = start.elapsed();
        if done(elapsed, r.torn) || stop.load(Ordering::Relaxed) {
            r.elapsed = elapsed;
            return r;
        }
        let c = read();
        r.reads += 1;
        if c.bytes != c.packets * S {
            r.torn += 1;
            if r.first_torn.is_none() {
                r.first_torn = Some(start.elapsed());
                r.example = Some((c.packets, c.bytes));
            }
        }
    }
}

/// A ledger of strategy `lock`: the only one with live reads.
fn load_lock() -> Ledger {
    Ledger::load(LedgerConfig {
        strategy: Strategy::Lock,
        ..LedgerConfig::default()
    })
    .expect("load (needs root)")
}

/// The counters of the only flow in a library reading.
fn only(flows: netledger::Result<Vec<(nl_flow_key, Count)>>) -> Count {
    let flows = flows.expect("reading the flow map");
    assert_eq!(flows.len(), 1, "exactly one flow key");
    flows[0].1
}

/// The tightest reader: one key, looked up directly (its index entry, then
/// its slot with BPF_F_LOCK or without; no key walk).
fn lookup_one(ledger: &Ledger, key: &nl_flow_key, mode: ReadMode) -> Count {
    ledger
        .lookup_raw(key, mode)
        .expect("lookup of the flow key")
        .expect("the flow key is live")
}

fn report(name: &str, r: &FlowReads, runs: u64) {
    eprintln!(
        "{name}: {} reads in {:.2} s, {} torn, first torn after {}{}; writers ran {:.1} M packets",
        r.reads,
        r.elapsed.as_secs_f64(),
        r.torn,
        r.first_torn
            .map_or("never".to_string(), |d| format!("{:.3} s", d.as_secs_f64())),
        r.example.map_or(String::new(), |(p, b)| format!(
            " (packets {p}, bytes {b}, packets*{S} = {})",
            p * S
        )),
        runs as f64 / 1e6,
    );
}

/// The final, quiet reading must account for every run exactly.
fn check_final(ledger: &Ledger, runs: u64) {
    let c = only(ledger.raw_flows(ReadMode::Locked));
    assert_eq!(c.packets, runs, "every run counted once");
    assert_eq!(c.bytes, runs * S);
}

/// The three ways to read the flow, loosest (slowest) first.
#[derive(Debug, Clone, Copy)]
enum Reader {
    /// `Ledger::raw_flows`: a batch lookup (walks every hash bucket).
    Batch,
    /// `Ledger::raw_flows_per_element`: next-key walk plus one lookup per key.
    PerElement,
    /// One lookup of the known key (sys level).
    OneKey,
}

impl Reader {
    const ALL: [Reader; 3] = [Reader::Batch, Reader::PerElement, Reader::OneKey];

    fn name(self) -> &'static str {
        match self {
            Reader::Batch => "batch (raw_flows)",
            Reader::PerElement => "per element (raw_flows_per_element)",
            Reader::OneKey => "one key (lookup_elem)",
        }
    }

    fn read(self, ledger: &Ledger, key: &nl_flow_key, mode: ReadMode) -> Count {
        match self {
            Reader::Batch => only(ledger.raw_flows(mode)),
            Reader::PerElement => only(ledger.raw_flows_per_element(mode)),
            Reader::OneKey => lookup_one(ledger, key, mode),
        }
    }
}

#[test]
fn flow_counters_are_coherent_only_under_the_lock() {
    let _serial = serial();
    let Some(cpus) = two_cpus_or_skip() else {
        return;
    };
    let ledger = load_lock();
    let frame = udp_frame();
    // Create the key before the readers start.
    ledger.test_run(&frame, 1).unwrap();
    let flows = ledger.raw_flows(ReadMode::Locked).unwrap();
    assert_eq!(flows.len(), 1);
    let key = flows[0].0;
    let mut total = 1u64;
    // The reader shares the first writer's CPU; the other writer runs
    // alongside it whenever the reader runs.
    let reader_cpu = cpus[0];

    // Phase A: locked, every way of reading, LOCKED_FOR each: none may tear.
    let mut locked = Vec::new();
    for rd in Reader::ALL {
        let (r, runs) = with_writers(&ledger, cpus, &[&frame], reader_cpu, |stop| {
            read_flows(
                stop,
                || rd.read(&ledger, &key, ReadMode::Locked),
                |t, _| t >= LOCKED_FOR,
            )
        });
        total += runs[0];
        report(&format!("locked, {}", rd.name()), &r, runs[0]);
        locked.push((rd, r));
    }

    // Phase B: unlocked, within one budget: batch reads first (a sixth of
    // the budget), then per-element reads (another sixth), then one-key
    // lookups for the rest, until one tears. The slow walkers tear about
    // once in 20-60 k reads (a few per 10 s here); the one-key reader reads
    // about 100 times as often. A reader that tore keeps reading for
    // UNLOCKED_MIN so its counts compare with phase A.
    let budget_start = Instant::now();
    let mut unlocked = Vec::new();
    for (i, rd) in Reader::ALL.into_iter().enumerate() {
        let left = UNLOCKED_BUDGET.saturating_sub(budget_start.elapsed());
        let budget = if i + 1 < Reader::ALL.len() {
            left.min(UNLOCKED_BUDGET / 6)
        } else {
            left
        };
        let (r, runs) = with_writers(&ledger, cpus, &[&frame], reader_cpu, |stop| {
            read_flows(
                stop,
                || rd.read(&ledger, &key, ReadMode::Unlocked),
                |t, torn| (torn > 0 && t >= UNLOCKED_MIN) || t >= budget,
            )
        });
        total += runs[0];
        report(&format!("unlocked, {}", rd.name()), &r, runs[0]);
        let tore = r.torn > 0;
        unlocked.push((rd, r));
        if tore {
            break;
        }
    }

    let sum = |v: &[(Reader, FlowReads)], f: fn(&FlowReads) -> u64| -> u64 {
        v.iter().map(|(_, r)| f(r)).sum()
    };
    let first = unlocked
        .iter()
        .find_map(|(rd, r)| r.first_torn.map(|d| (rd, d)));
    let before: f64 = unlocked
        .iter()
        .take_while(|(_, r)| r.torn == 0)
        .map(|(_, r)| r.elapsed.as_secs_f64())
        .sum();
    eprintln!(
        "summary: locked {} reads, {} torn; unlocked {} reads, {} torn; first torn read {}",
        sum(&locked, |r| r.reads),
        sum(&locked, |r| r.torn),
        sum(&unlocked, |r| r.reads),
        sum(&unlocked, |r| r.torn),
        first.map_or("never".to_string(), |(rd, d)| format!(
            "after {:.3} s of unlocked reads ({}, {:.3} s into that reader)",
            before + d.as_secs_f64(),
            rd.name(),
            d.as_secs_f64()
        )),
    );

    check_final(&ledger, total);
    for (rd, r) in &locked {
        assert_eq!(
            r.torn,
            0,
            "{} of {} locked {} reads were torn",
            r.torn,
            r.reads,
            rd.name()
        );
    }
    assert!(
        sum(&unlocked, |r| r.torn) > 0,
        "no torn pair in {:?} of unlocked reads: the harness cannot show what the lock prevents",
        UNLOCKED_BUDGET
    );
}

/// What a bucket reader saw.
#[derive(Debug, Default)]
struct BucketReads {
    reads: u64,
    violations: u64,
    first_violation: Option<Duration>,
    example: Option<Buckets>,
    elapsed: Duration,
}

fn read_buckets(
    stop: &AtomicBool,
    read: impl Fn() -> netledger::Result<Buckets>,
    done: impl Fn(Duration, u64) -> bool,
) -> BucketReads {
    let mut r = BucketReads::default();
    let start = Instant::now();
    loop {
        let elapsed = start.elapsed();
        if done(elapsed, r.violations) || stop.load(Ordering::Relaxed) {
            r.elapsed = elapsed;
            return r;
        }
        // An error (the settled reader giving up) fails the test here.
        let b = read().expect("reading the buckets");
        r.reads += 1;
        if !b.conserved() {
            r.violations += 1;
            if r.first_violation.is_none() {
                r.first_violation = Some(start.elapsed());
                r.example = Some(b);
            }
        }
    }
}

fn report_buckets(name: &str, r: &BucketReads) {
    eprintln!(
        "{name}: {} reads in {:.2} s, {} not conserved, first after {}",
        r.reads,
        r.elapsed.as_secs_f64(),
        r.violations,
        r.first_violation
            .map_or("never".to_string(), |d| format!("{:.3} s", d.as_secs_f64())),
    );
    if let Some(b) = &r.example {
        let parts: Vec<String> = Bucket::ALL
            .iter()
            .map(|&k| format!("{} {:?}", k.name(), b.get(k)))
            .collect();
        eprintln!("  first non-conserved reading: {}", parts.join(", "));
    }
}

#[test]
fn buckets_are_conserved_only_when_settled() {
    let _serial = serial();
    let Some(cpus) = two_cpus_or_skip() else {
        return;
    };
    let ledger = load_lock();
    let udp = udp_frame();
    let arp = arp_frame();
    let frames: [&[u8]; 2] = [&udp, &arp];
    let reader_cpu = cpus[0];

    let (settled, runs_a) = with_writers(&ledger, cpus, &frames, reader_cpu, |stop| {
        read_buckets(stop, || ledger.buckets(), |t, _| t >= LOCKED_FOR)
    });
    report_buckets("settled (buckets)", &settled);

    let (unsettled, runs_b) = with_writers(&ledger, cpus, &frames, reader_cpu, |stop| {
        read_buckets(
            stop,
            || ledger.buckets_unsettled(),
            |t, v| (v > 0 && t >= UNLOCKED_MIN) || t >= UNLOCKED_BUDGET,
        )
    });
    report_buckets("unsettled (buckets_unsettled)", &unsettled);

    // Quiet now: the totals must match what the writers ran.
    let udp_runs = runs_a[0] + runs_b[0];
    let arp_runs = runs_a[1] + runs_b[1];
    let b = ledger.buckets().unwrap();
    assert!(b.conserved(), "quiet reading not conserved: {b:?}");
    assert_eq!(b.get(Bucket::Counted).packets, udp_runs);
    assert_eq!(b.get(Bucket::Counted).bytes, udp_runs * S);
    assert_eq!(b.get(Bucket::NonIp).packets, arp_runs);
    assert_eq!(b.get(Bucket::NonIp).bytes, arp_runs * arp.len() as u64);
    assert_eq!(b.get(Bucket::Seen).packets, udp_runs + arp_runs);

    assert_eq!(
        settled.violations, 0,
        "{} of {} settled readings were not conserved",
        settled.violations, settled.reads
    );
    assert!(
        unsettled.violations > 0,
        "buckets_unsettled() gave no non-conserved reading in {} reads over {:.1} s: \
         the harness cannot show what the sequence counters prevent",
        unsettled.reads,
        unsettled.elapsed.as_secs_f64()
    );
}
