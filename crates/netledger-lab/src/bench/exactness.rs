//! 2. Read-side exactness of each strategy, in one harness.
//!
//! * Torn pairs per million reads: two writers, pinned one per CPU, drive
//!   one 64-byte UDP key through BPF_PROG_TEST_RUN while a reader, sharing
//!   the first writer's CPU, copies that key's counters in a loop; a copy is
//!   torn if `bytes != packets * 64`. For `lock` the reader is a one-key
//!   lookup ([`Ledger::lookup_raw`]) without `BPF_F_LOCK` and with it, taking
//!   turns slice by slice. `swap` has no live reads: its reader cuts in a
//!   loop and checks every record of every cut.
//! * Lost packets per million under continuous cuts or resets, from the
//!   conservation harness ([`Harness`]): `lock` (exchange cuts), `swap`
//!   (swap cuts), and the naive locked hash reset by lookup-then-zero and by
//!   lookup-and-delete. The same runs give the torn records of the cuts.

use std::sync::atomic::{AtomicBool, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use anyhow::{anyhow, Context, Result};
use netledger::lab::ReadMode;
use netledger::{Count, Ledger, LedgerConfig, Strategy};

use super::{load_ledgers, Measurement, Options};
use crate::harness::{
    allowed_cpus, pin_to, FirstError, Flow, Harness, NaiveLedger, NaiveReset, StopOnDrop,
};

const SECTION: &str = "exactness";

/// Runs per test_run call of the torn-read writers: each XDP test run waits
/// for a grace period, so calls must be long.
const TORN_REPEAT: u32 = 200_000;

/// Keys of the conservation runs (each with its own frame size).
const LOST_KEYS: usize = 4;

/// Two CPUs for the writers: the first two this process may use (the same
/// one twice on a single-CPU machine, where nothing can tear).
fn writer_cpus() -> Result<[usize; 2]> {
    let cpus = allowed_cpus().context("reading the CPU affinity")?;
    Ok(match cpus[..] {
        [a, b, ..] => [a, b],
        [a] => [a, a],
        [] => [0, 0],
    })
}

/// One writer per CPU of `cpus` runs `frame` through `ledger` until the
/// reader (pinned to `cpus[0]`) returns; the reader's result.
fn with_writers<R: Send>(
    ledger: &Ledger,
    cpus: [usize; 2],
    frame: &[u8],
    reader: impl FnOnce(&AtomicBool) -> Result<R> + Send,
) -> Result<R> {
    let stop = AtomicBool::new(false);
    let failed = FirstError::default();
    let out = thread::scope(|s| {
        for &cpu in &cpus {
            let (stop, failed) = (&stop, &failed);
            s.spawn(move || {
                let _guard = StopOnDrop(stop);
                // A writer that fails stops the reader.
                let res = pin_to(cpu)
                    .with_context(|| format!("pinning a writer to CPU {cpu}"))
                    .and_then(|()| {
                        while !stop.load(Ordering::Relaxed) {
                            ledger.test_run(frame, TORN_REPEAT)?;
                        }
                        Ok(())
                    });
                if let Err(e) = res {
                    failed.set(e);
                }
            });
        }
        let reader = s.spawn(|| {
            let _guard = StopOnDrop(&stop);
            pin_to(cpus[0]).with_context(|| format!("pinning the reader to CPU {}", cpus[0]))?;
            reader(&stop)
        });
        match reader.join() {
            Ok(r) => r,
            Err(p) => std::panic::resume_unwind(p),
        }
    });
    failed.into_result()?;
    out
}

/// Reads and torn reads of one slice of time.
#[derive(Debug, Default, Clone, Copy)]
struct Slice {
    reads: u64,
    torn: u64,
}

impl Slice {
    fn check(&mut self, c: Count, size: u64) {
        self.reads += 1;
        if c.bytes != c.packets * size {
            self.torn += 1;
        }
    }

    fn per_million(&self) -> Option<f64> {
        (self.reads > 0).then(|| self.torn as f64 * 1e6 / self.reads as f64)
    }
}

/// Call `read` for `len` (or until the writers stop).
fn read_for(
    len: Duration,
    stop: &AtomicBool,
    mut read: impl FnMut(&mut Slice) -> Result<()>,
) -> Result<Slice> {
    let mut s = Slice::default();
    let start = Instant::now();
    while start.elapsed() < len && !stop.load(Ordering::Relaxed) {
        read(&mut s)?;
    }
    Ok(s)
}

/// Torn pairs per million reads over many reads. Tearing is rare (a few per
/// million reads here), so most slices see none and their median would be 0
/// with or without the lock: the figure is the rate over all slices pooled;
/// the samples are the slices' own rates.
fn pooled(torn: u64, reads: u64) -> f64 {
    if reads == 0 {
        f64::NAN
    } else {
        torn as f64 * 1e6 / reads as f64
    }
}

/// One figure from slices of reads.
fn torn_figure(strategy: Strategy, reader: &str, what: &str, slices: &[Slice]) -> Measurement {
    let samples: Vec<f64> = slices.iter().filter_map(Slice::per_million).collect();
    let reads: u64 = slices.iter().map(|s| s.reads).sum();
    let torn: u64 = slices.iter().map(|s| s.torn).sum();
    Measurement {
        section: SECTION,
        name: format!("{strategy}, {what} ({torn} torn in {reads} reads, pooled)"),
        tags: vec![
            ("strategy", strategy.name().to_string()),
            ("reader", reader.to_string()),
            ("metric", "torn".to_string()),
        ],
        value: pooled(torn, reads),
        unit: "torn/M reads",
        ratio: None,
        baseline: None,
        samples,
    }
}

/// What both exactness measurements run with: the options, the writers'
/// CPUs, the rounds, a `lock` ledger and a `swap` ledger.
#[derive(Clone, Copy)]
struct Setup<'a, 'o>(&'a Options<'o>, [usize; 2], usize, &'a Ledger, &'a Ledger);

/// Torn pairs per million reads: `lock` read without and with the lock,
/// `swap` read through its cuts.
fn torn_reads(setup: Setup<'_, '_>) -> Result<Vec<Measurement>> {
    let Setup(opts, cpus, rounds, lock, swap) = setup;
    let per_reader = opts.size(Duration::from_millis(500), Duration::from_secs(3));
    let slice = per_reader / rounds as u32;
    let flow = Flow::nth(0);
    let frame = flow.frame();
    let size = flow.len as u64;

    (opts.progress)(&format!(
        "exactness: torn reads, lock, {:.1} s unlocked + {:.1} s locked one-key lookups against 2 writers",
        per_reader.as_secs_f64(),
        per_reader.as_secs_f64()
    ));
    // The key exists before the reader starts.
    lock.test_run(&frame, 1)?;
    let key = lock
        .raw_flows(ReadMode::Locked)?
        .first()
        .map(|(k, _)| *k)
        .ok_or_else(|| anyhow!("the data path did not count the benchmark frame"))?;
    let (unlocked, locked) = with_writers(lock, cpus, &frame, |stop| {
        let (mut unlocked, mut locked) = (Vec::new(), Vec::new());
        for _ in 0..rounds {
            for (mode, into) in [
                (ReadMode::Unlocked, &mut unlocked),
                (ReadMode::Locked, &mut locked),
            ] {
                into.push(read_for(slice, stop, |s| {
                    if let Some(c) = lock.lookup_raw(&key, mode)? {
                        s.check(c, size);
                    }
                    Ok(())
                })?);
            }
        }
        Ok((unlocked, locked))
    })?;

    (opts.progress)(&format!(
        "exactness: torn reads, swap, cutting in a loop for {:.1} s against 2 writers",
        per_reader.as_secs_f64()
    ));
    let cuts = with_writers(swap, cpus, &frame, |stop| {
        let mut slices = Vec::new();
        for _ in 0..rounds {
            slices.push(read_for(slice, stop, |s| {
                for (_, c) in swap.cut()?.flows {
                    s.check(c, size);
                }
                Ok(())
            })?);
        }
        Ok(slices)
    })?;

    Ok(vec![
        torn_figure(
            Strategy::Lock,
            "lookup_unlocked",
            "one-key lookup without BPF_F_LOCK, 2 writers",
            &unlocked,
        ),
        torn_figure(
            Strategy::Lock,
            "lookup_locked",
            "one-key lookup with BPF_F_LOCK, 2 writers",
            &locked,
        ),
        torn_figure(
            Strategy::Swap,
            "cut_loop",
            "records of cuts in a loop, 2 writers",
            &cuts,
        ),
    ])
}

/// Lost packets per million (and torn cut records) under continuous cuts,
/// per target, the targets taking turns round by round.
fn lost_packets(setup: Setup<'_, '_>) -> Result<Vec<Measurement>> {
    let Setup(opts, cpus, rounds, lock, swap) = setup;
    // One naive program, reset one way or the other (its `method`): each
    // load costs a verification of the whole bench object.
    let mut naive = NaiveLedger::load(NaiveReset::LookupThenZero)?;
    let targets: [(&str, &str, Option<NaiveReset>); 4] = [
        ("lock", "lock, exchange cuts", None),
        ("swap", "swap, swap cuts", None),
        (
            "naive_lookup_then_zero",
            "naive locked hash, lookup-then-zero resets",
            Some(NaiveReset::LookupThenZero),
        ),
        (
            "naive_lookup_and_delete",
            "naive locked hash, lookup-and-delete resets",
            Some(NaiveReset::LookupAndDelete),
        ),
    ];

    let mut h = Harness::new(LOST_KEYS, &cpus, opts.size(100_000, 2_500_000));
    h.repeat = opts.size(50_000, 500_000);
    h.deadline = opts.size(Duration::from_secs(15), Duration::from_secs(60));
    let packets = h.packets_per_writer * cpus.len() as u64;

    struct Tally {
        lost: Vec<f64>,
        torn: Vec<f64>,
        sent: u64,
        lost_total: u64,
        duplicated: u64,
        records: u64,
        incoherent: u64,
        cuts: usize,
    }
    let mut tallies: Vec<Tally> = targets
        .iter()
        .map(|_| Tally {
            lost: Vec::new(),
            torn: Vec::new(),
            sent: 0,
            lost_total: 0,
            duplicated: 0,
            records: 0,
            incoherent: 0,
            cuts: 0,
        })
        .collect();
    for r in 0..rounds {
        for ((tag, name, reset), t) in targets.iter().zip(&mut tallies) {
            (opts.progress)(&format!(
                "exactness: lost packets, {name}, {packets} packets over {LOST_KEYS} keys, continuous cuts (round {} of {rounds})",
                r + 1
            ));
            let rep = match (reset, *tag) {
                (Some(m), _) => {
                    naive.method = *m;
                    h.run(&naive)?
                }
                (None, "swap") => h.run(swap)?,
                (None, _) => h.run(lock)?,
            };
            let sent = rep.sent().packets;
            if sent > 0 {
                t.lost.push(rep.lost() as f64 * 1e6 / sent as f64);
            }
            if rep.records() > 0 {
                t.torn
                    .push(rep.incoherent_records() as f64 * 1e6 / rep.records() as f64);
            }
            t.sent += sent;
            t.lost_total += rep.lost();
            t.duplicated += rep.duplicated();
            t.records += rep.records();
            t.incoherent += rep.incoherent_records();
            t.cuts += rep.cuts_during();
        }
    }

    let mut out = Vec::new();
    for ((tag, name, _), t) in targets.iter().zip(tallies) {
        let tags = |metric: &str| {
            vec![
                ("strategy", tag.to_string()),
                ("reader", "cuts".to_string()),
                ("metric", metric.to_string()),
            ]
        };
        out.push(Measurement::of(
            SECTION,
            format!(
                "{name}: lost packets ({} of {} lost, {} counted twice, {} cuts)",
                t.lost_total, t.sent, t.duplicated, t.cuts
            ),
            tags("lost"),
            "lost/M packets",
            t.lost,
        ));
        out.push(Measurement {
            section: SECTION,
            name: format!(
                "{name}: torn cut records ({} torn in {} records, pooled)",
                t.incoherent, t.records
            ),
            tags: tags("torn"),
            value: pooled(t.incoherent, t.records),
            unit: "torn/M reads",
            ratio: None,
            baseline: None,
            samples: t.torn,
        });
    }
    Ok(out)
}

pub(super) fn run(opts: &Options<'_>) -> Result<Vec<Measurement>> {
    let rounds = opts.rounds.max(1);
    let rounds = if opts.quick { rounds.min(2) } else { rounds };
    let cpus = writer_cpus()?;
    (opts.progress)("exactness: loading lock and swap ledgers");
    let (lock, swap) = load_ledgers(&LedgerConfig::default())?;
    let setup = Setup(opts, cpus, rounds, &lock, &swap);
    let mut out = torn_reads(setup)?;
    out.extend(lost_packets(setup)?);
    Ok(out)
}
