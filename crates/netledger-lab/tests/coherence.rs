//! Coherence under contention.
//!
//! Two writer threads, pinned one per CPU, drive the XDP data path through
//! BPF_PROG_TEST_RUN while a reader thread copies the counters in a loop.
//!
//! * Flows: every copy of a flow must satisfy `bytes == packets * S` (all
//!   frames are S bytes). With BPF_F_LOCK (`ReadMode::Locked`) no copy may be
//!   torn. Without it (`ReadMode::Unlocked`) the copy reads `packets` and
//!   `bytes` at slightly different moments, and a writer on the other CPU may
//!   be between its two additions inside its locked region: the harness must
//!   see torn pairs, which shows it can detect tearing at all.
//! * Conservation buckets: every `buckets()` reading must be conserved (and
//!   settle); `buckets_unsettled()`, which ignores the sequence counters, is
//!   expected to show a non-conserved reading.
//!
//! How tearing is made reliably observable: how often an unlocked copy
//! tears depends on where the value sits relative to cache lines and to the
//! chunks the kernel's copy moves, i.e. on the slot a key got: slot 0, the
//! one the first key of a fresh map gets, tore 10 to 100 times less often
//! than slots 1 to 3 here (once in 4 s with a single key). So the map is
//! made exactly [`KEYS`] slots large and every slot holds a live key; the
//! writers cycle through all keys and the unlocked reader looks up every
//! key in turn, so whatever placements tear most on this CPU are always
//! among those read.
//! The unlocked side is measured as the time to the first torn copy,
//! [`TRIALS`] times; every trial must tear within [`TRIAL_BUDGET`].
//!
//! Both tests need root (they load BPF programs) and at least two CPUs (with
//! one, a reader can never overlap a writer: the test fails saying so).
//! They take one lock so that they never run at the same time (cargo runs
//! tests of one binary in parallel), and every phase has a deadline: the
//! flow test takes about 15 s (3 x 3 s locked, the trials, 2 x 1.5 s of the
//! slower unlocked readers), at most about 12 + TRIALS x TRIAL_BUDGET; the
//! bucket test at most about 34 s (3 s settled, at most 30 s unsettled).
//!
//! Run with: `cargo test -p netledger-lab --test coherence -- --nocapture`

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, MutexGuard};
use std::thread;
use std::time::{Duration, Instant};

use netledger::lab::types::nl_flow_key;
use netledger::lab::ReadMode;
use netledger::Count;
use netledger::{Bucket, Buckets, Ledger, LedgerConfig, Strategy};
use netledger_lab::harness::{allowed_cpus, pin_to, StopOnDrop};

/// The size of every counted frame, in bytes (no FCS).
const S: u64 = 64;
/// Live keys, and the size of the flow map: every slot holds one.
const KEYS: u16 = 8;
/// Runs per BPF_PROG_TEST_RUN call. Each XDP test run waits for an RCU grace
/// period, so calls must be long; a writer moves to the next key after each.
const REPEAT: u32 = 50_000;
/// How long a side that must stay coherent is read, per reader.
const LOCKED_FOR: Duration = Duration::from_secs(3);
/// Unlocked trials: each reads until its first torn copy.
const TRIALS: usize = 15;
/// How long one unlocked trial may take to tear (they take milliseconds).
const TRIAL_BUDGET: Duration = Duration::from_secs(10);
/// How long the slower unlocked readers are run, for the record only.
const SLOW_UNLOCKED_FOR: Duration = Duration::from_millis(1500);
/// The bucket test's unsettled side: at most this long to show a violation.
const UNSETTLED_BUDGET: Duration = Duration::from_secs(30);
/// ... and, once it did, read at least this long.
const UNSETTLED_MIN: Duration = Duration::from_secs(3);

/// Tests of this binary pin threads: one at a time.
static SERIAL: Mutex<()> = Mutex::new(());

fn serial() -> MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|e| e.into_inner())
}

/// The first two CPUs this process may use; fails the test with fewer.
fn two_cpus() -> [usize; 2] {
    let cpus = allowed_cpus().expect("sched_getaffinity");
    match cpus[..] {
        [a, b, ..] => [a, b],
        _ => panic!(
            "this test needs at least two CPUs (a reader must overlap a writer on another CPU); \
             this process may use only {cpus:?}"
        ),
    }
}

#[track_caller]
fn pin(cpu: usize) {
    pin_to(cpu).unwrap_or_else(|e| panic!("sched_setaffinity(cpu {cpu}): {e}"));
}

/// A 64-byte IPv4 UDP frame of key `i` (source port 4000 + i).
fn udp_frame(i: u16) -> Vec<u8> {
    let builder = etherparse::PacketBuilder::ethernet2([2, 0, 0, 0, 0, 1], [2, 0, 0, 0, 0, 2])
        .ipv4([10, 0, 0, 1], [10, 0, 0, 2], 64)
        .udp(4000 + i, 9000);
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
                    pin(cpu);
                    let mut runs = vec![0u64; frames.len()];
                    // Writers start on different frames, so with several
                    // frames two kinds are always in flight.
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
                pin(reader_cpu);
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
    /// Copies of a flow read.
    reads: u64,
    torn: u64,
    first_torn: Option<Duration>,
    /// The first torn pair: (packets, bytes).
    example: Option<(u64, u64)>,
    elapsed: Duration,
}

/// Read the flows with `read` until `done(elapsed, torn so far)` or the
/// writers stopped, checking `bytes == packets * S` in every copy.
fn read_flows(
    stop: &AtomicBool,
    mut read: impl FnMut() -> Vec<Count>,
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
        for c in read() {
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
}

/// A ledger of strategy `lock` (the only one with live reads) whose flow
/// map has `max_flows` slots.
fn load_lock(max_flows: u32) -> Ledger {
    Ledger::load(LedgerConfig {
        strategy: Strategy::Lock,
        max_flows,
        ..LedgerConfig::default()
    })
    .expect("load (needs root)")
}

/// The counts of a library reading, which must hold every key.
fn all(flows: netledger::Result<Vec<(nl_flow_key, Count)>>) -> Vec<Count> {
    let flows = flows.expect("reading the flow map");
    assert_eq!(flows.len(), KEYS as usize, "every key is live");
    flows.into_iter().map(|(_, c)| c).collect()
}

fn report(name: &str, r: &FlowReads, runs: u64) {
    eprintln!(
        "{name}: {} flow copies in {:.2} s, {} torn, first torn after {}{}; writers ran {:.1} M packets",
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

/// The three ways to read the flows, loosest (slowest) first.
#[derive(Debug, Clone, Copy)]
enum Reader {
    /// `Ledger::raw_flows`: with every slot live, one pass over the slot
    /// array (a batch lookup; locked: the exchange program in peek mode).
    Batch,
    /// `Ledger::raw_flows_per_element`: next-key walk plus one lookup per key.
    PerElement,
    /// One lookup per known key (index entry, then its slot), key after key.
    OneKey,
}

impl Reader {
    const ALL: [Reader; 3] = [Reader::Batch, Reader::PerElement, Reader::OneKey];

    fn name(self) -> &'static str {
        match self {
            Reader::Batch => "batch (raw_flows)",
            Reader::PerElement => "per element (raw_flows_per_element)",
            Reader::OneKey => "one key at a time (lookup_raw)",
        }
    }

    fn read(self, ledger: &Ledger, keys: &[nl_flow_key], mode: ReadMode) -> Vec<Count> {
        match self {
            Reader::Batch => all(ledger.raw_flows(mode)),
            Reader::PerElement => all(ledger.raw_flows_per_element(mode)),
            Reader::OneKey => keys
                .iter()
                .map(|k| {
                    ledger
                        .lookup_raw(k, mode)
                        .expect("lookup of a flow key")
                        .expect("the flow key is live")
                })
                .collect(),
        }
    }
}

fn add_runs(total: &mut [u64], runs: &[u64]) {
    for (t, r) in total.iter_mut().zip(runs) {
        *t += r;
    }
}

/// min / median / max of `v`, in milliseconds.
fn spread(v: &[Duration]) -> (f64, f64, f64) {
    let mut ms: Vec<f64> = v.iter().map(|d| d.as_secs_f64() * 1e3).collect();
    ms.sort_by(f64::total_cmp);
    (ms[0], ms[ms.len() / 2], ms[ms.len() - 1])
}

#[test]
fn flow_counters_are_coherent_only_under_the_lock() {
    let _serial = serial();
    let cpus = two_cpus();
    let ledger = load_lock(u32::from(KEYS));
    let frames: Vec<Vec<u8>> = (0..KEYS).map(udp_frame).collect();
    let frame_refs: Vec<&[u8]> = frames.iter().map(Vec::as_slice).collect();
    // Create every key (one per slot) before the readers start.
    for f in &frames {
        ledger.test_run(f, 1).unwrap();
    }
    let keys: Vec<nl_flow_key> = ledger
        .raw_flows(ReadMode::Locked)
        .unwrap()
        .into_iter()
        .map(|(k, _)| k)
        .collect();
    assert_eq!(keys.len(), KEYS as usize, "one live key per slot");
    let b = ledger.buckets().unwrap();
    assert_eq!(b.get(Bucket::MapFull).packets, 0, "every key found a slot");
    let mut total = vec![1u64; KEYS as usize];
    // The reader shares the first writer's CPU; the other writer runs
    // alongside it whenever the reader runs.
    let reader_cpu = cpus[0];

    // Phase A: locked, every way of reading, LOCKED_FOR each: none may tear.
    let mut locked = Vec::new();
    for rd in Reader::ALL {
        let (r, runs) = with_writers(&ledger, cpus, &frame_refs, reader_cpu, |stop| {
            read_flows(
                stop,
                || rd.read(&ledger, &keys, ReadMode::Locked),
                |t, _| t >= LOCKED_FOR,
            )
        });
        add_runs(&mut total, &runs);
        report(&format!("locked, {}", rd.name()), &r, runs.iter().sum());
        locked.push((rd, r));
    }

    // Phase B: unlocked, one key at a time, TRIALS times until the first
    // torn copy (each within TRIAL_BUDGET).
    let (trials, runs) = with_writers(&ledger, cpus, &frame_refs, reader_cpu, |stop| {
        (0..TRIALS)
            .map(|_| {
                read_flows(
                    stop,
                    || Reader::OneKey.read(&ledger, &keys, ReadMode::Unlocked),
                    |t, torn| torn > 0 || t >= TRIAL_BUDGET,
                )
            })
            .collect::<Vec<_>>()
    });
    add_runs(&mut total, &runs);
    let times: Vec<String> = trials
        .iter()
        .map(|r| {
            r.first_torn
                .map_or("none".into(), |d| format!("{:.1}", d.as_secs_f64() * 1e3))
        })
        .collect();
    eprintln!(
        "unlocked, {}: {TRIALS} trials, ms to the first torn copy: {}; writers ran {:.1} M packets",
        Reader::OneKey.name(),
        times.join(" "),
        runs.iter().sum::<u64>() as f64 / 1e6
    );
    if let Some(r) = trials.iter().find(|r| r.example.is_some()) {
        report(
            &format!("unlocked, {}, first trial that tore", Reader::OneKey.name()),
            r,
            0,
        );
    }

    // Phase C, for the record: the slower unlocked readers for a while each.
    let mut slow = Vec::new();
    for rd in [Reader::Batch, Reader::PerElement] {
        let (r, runs) = with_writers(&ledger, cpus, &frame_refs, reader_cpu, |stop| {
            read_flows(
                stop,
                || rd.read(&ledger, &keys, ReadMode::Unlocked),
                |t, _| t >= SLOW_UNLOCKED_FOR,
            )
        });
        add_runs(&mut total, &runs);
        report(&format!("unlocked, {}", rd.name()), &r, runs.iter().sum());
        slow.push(r);
    }

    let firsts: Vec<Duration> = trials.iter().filter_map(|r| r.first_torn).collect();
    let locked_reads: u64 = locked.iter().map(|(_, r)| r.reads).sum();
    let locked_torn: u64 = locked.iter().map(|(_, r)| r.torn).sum();
    if !firsts.is_empty() {
        let (min, med, max) = spread(&firsts);
        eprintln!(
            "summary: locked {locked_reads} copies, {locked_torn} torn; unlocked one-key: \
             {} of {TRIALS} trials tore, time to first torn copy min {min:.1} ms, \
             median {med:.1} ms, max {max:.1} ms; slower unlocked readers: {} torn in {} copies",
            firsts.len(),
            slow.iter().map(|r| r.torn).sum::<u64>(),
            slow.iter().map(|r| r.reads).sum::<u64>(),
        );
    }

    // Quiet now: every run counted once, per key.
    let quiet = ledger.raw_flows(ReadMode::Locked).unwrap();
    for (i, k) in keys.iter().enumerate() {
        let c = quiet
            .iter()
            .find(|(q, _)| q.sport == k.sport)
            .map(|(_, c)| *c)
            .expect("every key still live");
        let n = total[usize::from(k.sport - 4000)];
        assert_eq!(c.packets, n, "key {i}: every run counted once");
        assert_eq!(c.bytes, n * S, "key {i}: bytes");
    }
    for (rd, r) in &locked {
        assert_eq!(
            r.torn,
            0,
            "{} of {} locked {} copies were torn",
            r.torn,
            r.reads,
            rd.name()
        );
    }
    let missed: Vec<usize> = trials
        .iter()
        .enumerate()
        .filter(|(_, r)| r.torn == 0)
        .map(|(i, _)| i + 1)
        .collect();
    assert!(
        missed.is_empty(),
        "unlocked trials {missed:?} of {TRIALS} saw no torn pair within {TRIAL_BUDGET:?}: \
         the harness cannot reliably show what the lock prevents"
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
    let cpus = two_cpus();
    let ledger = load_lock(65536);
    let udp = udp_frame(0);
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
            |t, v| (v > 0 && t >= UNSETTLED_MIN) || t >= UNSETTLED_BUDGET,
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
