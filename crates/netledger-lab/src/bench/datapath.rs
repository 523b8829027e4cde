//! Parts 1 (data-path cost), 1b (where the ns go) and 4 (slowdown from a
//! concurrent reader) of the benchmark, in ns/packet through
//! BPF_PROG_TEST_RUN.
//!
//! Every sample is the mean time per run of one test_run call of `repeat`
//! runs, timed to a fraction of a nanosecond (see `timing.rs`); a figure's
//! value is the median over rounds and writers. Programs are interleaved:
//! each round runs every program once, in an order rotated from round to
//! round, so drift on a shared machine hits all of them alike; ratios are
//! taken round by round within a scenario.
//!
//! Scenarios: 1 writer, and one writer per allowed CPU (all running the same
//! program at the same time, each in its own pinned thread) on one key or
//! on a key each; 1, 10K and 1M keys in the map (and 100 and 100K with 1
//! writer, for the plot; 1 and 1000 in quick mode, with 1 writer only).
//! Every map is prepopulated with the scenario's keys from userspace (the
//! measured frames' keys among them), so the measured runs find their key
//! and add to it. The references: the empty program (the floor of every
//! figure), the classic locked hash (`nl_naive`: the same parse and key, a
//! HASH of `{bpf_spin_lock, packets, bytes}`: what `lock` is measured
//! against), the per-CPU hash with the same parse (what `swap` is measured
//! against), the racy and atomic shared hashes, the bare counters (one
//! element, no parse: the physical floor), and models of both strategies as
//! they were before the changes measured here (`ml_all`, `ms_all`).
//!
//! The breakdown runs models of both data paths (bench.bpf.c) with one part
//! taken away at a time, next to the strategies, with 1 writer on 1 key and
//! on 1M keys; each part's cost is a difference of two programs within a
//! round.
//!
//! The reader part runs the `lock` data path on one CPU alone and while
//! locked snapshots (`raw_flows(ReadMode::Locked)`: the exchange in peek
//! mode) run on the other every second, every 100 ms and back to back, with
//! the same reads without the locks as the control; 10K and 100K keys.

use std::os::fd::BorrowedFd;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicU8, Ordering};
use std::sync::Barrier;
use std::thread;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use netledger::lab::types::nl_flow_key;
use netledger::lab::ReadMode;
use netledger::{Count, Ledger, LedgerConfig, Strategy};

use super::programs::{label, populate_all, BenchPrograms};
use super::timing::{timed, Held};
use super::{load_ledgers, median, Measurement, Options};
use crate::harness::{allowed_cpus, pin_to, FirstError, Flow};

/// The `i`-th key of a map: [`Flow::nth`]'s key for `i < 65536` (the
/// measured frames use those), then the same with the source address's
/// second byte counting the 65536s, so up to 2^24 keys are distinct.
fn key(i: usize) -> nl_flow_key {
    let mut k = Flow::nth(i & 0xffff).raw_key();
    k.src[1] = (i >> 16) as u8;
    k
}

fn keys(range: std::ops::Range<usize>) -> Vec<nl_flow_key> {
    range.map(key).collect()
}

/// A program measured: its tag, its label in names, its descriptor.
struct Subject<'a> {
    tag: &'static str,
    label: &'static str,
    prog: BorrowedFd<'a>,
}

fn plural(n: usize, one: &str, many: &str) -> String {
    format!("{n} {}", if n == 1 { one } else { many })
}

/// Run every subject once per round from each writer (one thread pinned to
/// each of `cpus`, all starting each subject together), writer `w` in round
/// `r` on the frames `frames[w][r]` (`repeat` runs split evenly over them).
/// Returns, per subject, its samples (mean ns per run over the round's
/// calls), round by round, writers in order within a round.
fn measure(
    subjects: &[Subject<'_>],
    cpus: &[usize],
    frames: &[Vec<Vec<Vec<u8>>>],
    rounds: usize,
    repeat: u32,
) -> Result<Vec<Vec<f64>>> {
    let n = subjects.len();
    let barrier = Barrier::new(cpus.len());
    let failed = FirstError::default();
    // Per writer: (round, subject, ns).
    let results: Vec<Vec<(usize, usize, f64)>> = thread::scope(|s| {
        let handles: Vec<_> = cpus
            .iter()
            .zip(frames)
            .map(|(&cpu, frames)| {
                let (barrier, failed) = (&barrier, &failed);
                s.spawn(move || {
                    let mut out = Vec::with_capacity(rounds * n);
                    let fail = |e: anyhow::Error| failed.set(e);
                    if let Err(e) = pin_to(cpu) {
                        fail(
                            anyhow::Error::new(e).context(format!("pinning a writer to CPU {cpu}")),
                        );
                    }
                    for (round, these) in frames.iter().enumerate().take(rounds) {
                        for j in 0..n {
                            let idx = (j + round) % n;
                            // Every writer waits at every barrier, failed or not.
                            barrier.wait();
                            if failed.is_set() {
                                continue;
                            }
                            let each = (repeat / these.len().max(1) as u32).max(1);
                            let mut sum = 0.0;
                            for frame in these {
                                match timed(subjects[idx].prog, frame, each) {
                                    Ok(t) => sum += t.ns,
                                    Err(e) => fail(e.context(subjects[idx].tag)),
                                }
                            }
                            out.push((round, idx, sum / these.len().max(1) as f64));
                        }
                    }
                    out
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("writer thread panicked"))
            .collect()
    });
    failed.into_result()?;
    let mut samples = vec![Vec::with_capacity(rounds * cpus.len()); n];
    for round in 0..rounds {
        for w in &results {
            for &(r, idx, ns) in w {
                if r == round {
                    samples[idx].push(ns);
                }
            }
        }
    }
    Ok(samples)
}

/// The frame of key `i` of a map ([`key`]): a 64-byte UDP frame of
/// [`Flow::nth`]`(i & 0xffff)` with the source address's second byte
/// counting the 65536s.
fn frame_of(i: usize) -> Vec<u8> {
    let mut f = Flow {
        len: 64,
        ..Flow::nth(i & 0xffff)
    }
    .frame();
    // Ethernet (14) + the IPv4 source address's offset (12) + its second byte.
    f[14 + 12 + 1] = (i >> 16) as u8;
    f
}

/// Calls per sample of one writer: measuring each program on several keys
/// of a large map averages out where each key happens to sit (its hash
/// bucket's chain, its cache lines), which differs from map to map. Two
/// writers make one call each, on keys they share or not as the scenario
/// says.
const KEYS_PER_SAMPLE: usize = 8;

/// The frames of each writer in each round (see [`KEYS_PER_SAMPLE`]): keys
/// spread over the map, different from round to round; writer `w` of a
/// distinct-keys scenario only on keys `w` modulo the number of writers.
fn scenario_frames(sc: &Scenario, rounds: usize) -> Vec<Vec<Vec<Vec<u8>>>> {
    let per = if sc.writers > 1 { 1 } else { KEYS_PER_SAMPLE };
    let w_count = if sc.same_key { 1 } else { sc.writers };
    let pool = (sc.populated() / w_count).max(1) as u64;
    (0..sc.writers)
        .map(|w| {
            let w = if sc.same_key { 0 } else { w };
            (0..rounds)
                .map(|r| {
                    (0..per)
                        .map(|k| {
                            let x = (r * per + k) as u64;
                            // A multiplicative hash spreads the picks over the pool.
                            let i = x.wrapping_mul(2_654_435_761).wrapping_add(x >> 3) % pool;
                            frame_of(i as usize * w_count + w)
                        })
                        .collect()
                })
                .collect()
        })
        .collect()
}

/// One scenario of the matrix.
struct Scenario {
    writers: usize,
    same_key: bool,
    /// Keys in the map, nominally (distinct keys need at least one per writer).
    keys: usize,
}

impl Scenario {
    /// Keys actually in the map.
    fn populated(&self) -> usize {
        if self.same_key {
            self.keys
        } else {
            self.keys.max(self.writers)
        }
    }

    fn describe(&self) -> String {
        let mut s = plural(self.writers, "writer", "writers");
        if self.writers > 1 {
            s += if self.same_key {
                ", same key"
            } else {
                ", distinct keys"
            };
        }
        s += &format!(", {} in the map", plural(self.keys, "key", "keys"));
        if self.populated() != self.keys {
            s += &format!(" ({} populated: one per writer)", self.populated());
        }
        s
    }

    fn tags(&self, program: &str) -> Vec<(&'static str, String)> {
        vec![
            ("program", program.to_string()),
            ("writers", self.writers.to_string()),
            ("keys", self.keys.to_string()),
            // One writer has one key: it is the same-key case.
            ("same_key", self.same_key.to_string()),
        ]
    }
}

/// Medians of one scenario, by program tag.
struct Figures {
    scenario: Scenario,
    medians: Vec<(&'static str, f64)>,
    samples: Vec<(&'static str, Vec<f64>)>,
}

impl Figures {
    fn median(&self, tag: &str) -> Option<f64> {
        self.medians.iter().find(|(t, _)| *t == tag).map(|p| p.1)
    }

    fn samples(&self, tag: &str) -> &[f64] {
        self.samples
            .iter()
            .find(|(t, _)| *t == tag)
            .map_or(&[], |p| &p.1)
    }
}

/// (program - empty) / (reference - empty) round by round (and writer by
/// writer); the figure is their median (robust to a round where the host
/// moved the vCPUs).
fn overhead_ratio(f: &Figures, program: &str, reference: &str, label: &str) -> Option<Measurement> {
    f.median("empty")?;
    f.median(program)?;
    f.median(reference)?;
    let per_round: Vec<f64> = f
        .samples("empty")
        .iter()
        .zip(f.samples(program))
        .zip(f.samples(reference))
        .map(|((e, p), r)| (p - e) / (r - e))
        // A round where the reference cost nothing over empty has no ratio.
        .filter(|r| r.is_finite())
        .collect();
    let mut tags = f.scenario.tags(program);
    tags.push(("reference", reference.to_string()));
    tags.push(("figure", "overhead ratio".to_string()));
    Some(Measurement::of(
        "datapath",
        format!("{label}, {}", f.scenario.describe()),
        tags,
        "x",
        per_round,
    ))
}

/// The strategies' tags and labels in figures.
const LOCK: (&str, &str) = ("lock", "lock");
const SWAP: (&str, &str) = ("swap", "swap");

/// The programs of the matrix, in the order a round runs them (rotated
/// from round to round): each counter next to its reference, so that a
/// ratio's two figures are taken moments apart.
const MATRIX: [&str; 12] = [
    "empty",
    "naive",
    "lock",
    "percpu",
    "swap",
    "ml_all",
    "ms_all",
    "ml_s192c",
    "plain",
    "atomic",
    "bare_lock",
    "bare_percpu",
];

/// The programs of the breakdown.
const BREAKDOWN: [&str; 34] = [
    "empty",
    "empty_len",
    "percpu",
    "swap",
    "ms_all",
    "ms_no_time",
    "ms_no_seq",
    "ms_no_ipb",
    "ms_stats_gen",
    "ms_no_stats",
    "ms_lean",
    "ms_lean_no_ipb",
    "ms_lean_key4",
    "ms_lean_gvar",
    "ms_lean_fast",
    "ms_lean_gvar_fast",
    "ms_now",
    "ms_now_no_ipb",
    "naive",
    "lock",
    "ml_index",
    "ml_slot",
    "ml_keyeq",
    "ml_all",
    "ml_no_time",
    "ml_no_ipb",
    "ml_no_stats",
    "ml_lean_key4",
    "ml_s128",
    "ml_s128_mmap",
    "ml_s128_mmap_no_ipb",
    "ml_s192",
    "ml_s192b",
    "ml_s192c",
];

/// Everything a part of the data-path measurements runs: the bench object,
/// both strategies' ledgers, every program held by the dispatcher.
struct Rig {
    bench: BenchPrograms,
    lock: Ledger,
    swap: Ledger,
    populated: usize,
    _held: Option<Held>,
}

impl Rig {
    fn load(opts: &Options<'_>, max_flows: u32, tags: &[&str]) -> Result<Rig> {
        (opts.progress)(&format!(
            "datapath: loading the programs (maps of {max_flows} flows)"
        ));
        let bench = BenchPrograms::load(max_flows)?;
        let (lock, swap) = load_ledgers(&LedgerConfig {
            max_flows,
            ..LedgerConfig::default()
        })?;
        let fds: Vec<BorrowedFd<'_>> = tags
            .iter()
            .map(|&t| match t {
                "lock" => lock.program_fd(),
                "swap" => swap.program_fd(),
                t => bench.prog(t),
            })
            .collect();
        let held = match Held::hold(&fds) {
            Ok(h) => Some(h),
            Err(e) => {
                (opts.progress)(&format!(
                    "datapath: could not hold the programs ({e:#}); whole-ns kernel figures instead"
                ));
                None
            }
        };
        drop(fds);
        Ok(Rig {
            bench,
            lock,
            swap,
            populated: 0,
            _held: held,
        })
    }

    /// The subjects `tags` (`lock` and `swap` are the strategies' ledgers).
    fn subjects<'a>(&'a self, tags: &[&'static str]) -> Vec<Subject<'a>> {
        tags.iter()
            .map(|&t| match t {
                "lock" => Subject {
                    tag: LOCK.0,
                    label: LOCK.1,
                    prog: self.lock.program_fd(),
                },
                "swap" => Subject {
                    tag: SWAP.0,
                    label: SWAP.1,
                    prog: self.swap.program_fd(),
                },
                t => Subject {
                    tag: t,
                    label: label(t),
                    prog: self.bench.prog(t),
                },
            })
            .collect()
    }

    /// Every map holds keys `0..n` at least.
    fn populate(&mut self, opts: &Options<'_>, n: usize) -> Result<()> {
        if n > self.populated {
            (opts.progress)(&format!("datapath: populating every map to {n} keys"));
            populate_all(
                &self.bench,
                &self.lock,
                &self.swap,
                &keys(self.populated..n),
                self.populated,
            )?;
            self.populated = n;
        }
        Ok(())
    }
}

/// Measure `subjects` in scenario `sc`: one figure per subject (ratio to
/// the empty program, the first subject), and the scenario's figures.
fn scenario(
    section: &'static str,
    subjects: &[Subject<'_>],
    sc: Scenario,
    cpus: &[usize],
    rounds: usize,
    repeat: u32,
    out: &mut Vec<Measurement>,
) -> Result<Figures> {
    // Contended scenarios swing with where the host runs the two vCPUs
    // (the same core or not): shorter calls and three times the rounds, so
    // each round's figures are taken close together.
    let (rounds, repeat) = if sc.writers > 1 {
        (rounds * 3, repeat / 5)
    } else {
        (rounds, repeat)
    };
    let writer_cpus: Vec<usize> = cpus.iter().copied().take(sc.writers).collect();
    let frames = scenario_frames(&sc, rounds);
    let samples = measure(subjects, &writer_cpus, &frames, rounds, repeat)?;
    let medians: Vec<(&'static str, f64)> = subjects
        .iter()
        .zip(&samples)
        .map(|(s, v)| (s.tag, median(v)))
        .collect();
    let empty_name = format!("{}: {}", subjects[0].label, sc.describe());
    let empty = medians[0].1;
    for ((s, v), &(_, m)) in subjects.iter().zip(&samples).zip(&medians) {
        let is_empty = s.tag == "empty";
        out.push(Measurement {
            section,
            name: format!("{}: {}", s.label, sc.describe()),
            tags: sc.tags(s.tag),
            value: m,
            unit: "ns/packet",
            ratio: (!is_empty).then_some(m / empty),
            baseline: (!is_empty).then(|| empty_name.clone()),
            samples: v.clone(),
        });
    }
    Ok(Figures {
        scenario: sc,
        medians,
        samples: subjects.iter().map(|s| s.tag).zip(samples).collect(),
    })
}

pub(super) fn run(opts: &Options<'_>) -> Result<Vec<Measurement>> {
    let progress = opts.progress;
    let rounds = opts.rounds.max(1);
    let repeat: u32 = opts.size(20_000, 1_000_000);
    // 1, 10K and 1M for every scenario; 100 and 100K (1 writer) for the plot.
    let key_counts: Vec<usize> = opts.size(vec![1, 1000], vec![1, 100, 10_000, 100_000, 1_000_000]);
    let full_keys = [1, 10_000, 1_000_000];
    let cpus = allowed_cpus().context("reading the CPU affinity")?;
    let max_keys = key_counts
        .iter()
        .copied()
        .max()
        .unwrap_or(1)
        .max(cpus.len());
    let max_flows = (max_keys.next_power_of_two().max(1024)) as u32;
    let mut rig = Rig::load(opts, max_flows, &MATRIX)?;

    let mut scenarios = Vec::new();
    for &keys in &key_counts {
        scenarios.push(Scenario {
            writers: 1,
            same_key: true,
            keys,
        });
        if !opts.quick && cpus.len() > 1 && full_keys.contains(&keys) {
            for same_key in [true, false] {
                scenarios.push(Scenario {
                    writers: cpus.len(),
                    same_key,
                    keys,
                });
            }
        }
    }

    let mut out = Vec::new();
    let mut figures: Vec<Figures> = Vec::new();
    for sc in scenarios {
        rig.populate(opts, sc.populated())?;
        progress(&format!("datapath: {}", sc.describe()));
        let subjects = rig.subjects(&MATRIX);
        figures.push(scenario(
            "datapath", &subjects, sc, &cpus, rounds, repeat, &mut out,
        )?);
    }

    // Overheads over the empty program, relative: the targets' figures
    // (lock to the classic locked hash in every scenario; swap to the
    // per-CPU hash), the physical floors, and before/after.
    for f in &figures {
        let full = full_keys.contains(&f.scenario.keys);
        let mut pairs = vec![
            (
                "lock",
                "naive",
                "lock overhead / classic locked hash overhead",
            ),
            ("swap", "percpu", "swap overhead / per-CPU hash overhead"),
        ];
        if f.scenario.writers == 1 && f.scenario.keys == 1 {
            pairs.extend([
                (
                    "lock",
                    "bare_lock",
                    "lock overhead / bare lock overhead (physical floor, not a target)",
                ),
                (
                    "swap",
                    "bare_percpu",
                    "swap overhead / bare per-CPU overhead (physical floor, not a target)",
                ),
            ]);
        }
        pairs.extend([
            ("lock", "ml_all", "lock overhead / lock-before overhead"),
            ("swap", "ms_all", "swap overhead / swap-before overhead"),
        ]);
        for (program, reference, label) in pairs {
            if !full && reference != "naive" && reference != "percpu" {
                continue;
            }
            out.extend(overhead_ratio(f, program, reference, label));
        }
    }
    Ok(out)
}

/// The breakdown: the models of `bench.bpf.c` with one part taken away at
/// a time, next to the strategies and their references; 1 writer, 1 key
/// and 1M keys (1000 in quick mode).
pub(super) fn breakdown(opts: &Options<'_>) -> Result<Vec<Measurement>> {
    let progress = opts.progress;
    let rounds = opts.rounds.max(1);
    let repeat: u32 = opts.size(20_000, 1_000_000);
    let key_counts: Vec<usize> = opts.size(vec![1, 1000], vec![1, 1_000_000]);
    let cpus = allowed_cpus().context("reading the CPU affinity")?;
    let max_flows = (key_counts.iter().copied().max().unwrap_or(1))
        .next_power_of_two()
        .max(1024) as u32;
    let mut rig = Rig::load(opts, max_flows, &BREAKDOWN)?;
    let mut out = Vec::new();
    for keys in key_counts {
        let sc = Scenario {
            writers: 1,
            same_key: true,
            keys,
        };
        rig.populate(opts, sc.populated())?;
        progress(&format!("breakdown: {}", sc.describe()));
        let subjects = rig.subjects(&BREAKDOWN);
        let f = scenario("breakdown", &subjects, sc, &cpus, rounds, repeat, &mut out)?;
        // What each part costs: the difference to the model without it.
        for (with, without, what) in [
            ("ms_all", "ms_no_time", "swap: first/last time (jiffies)"),
            ("ms_all", "ms_no_seq", "swap: the started/done window"),
            ("ms_all", "ms_no_ipb", "swap: ip_bytes (before)"),
            ("ms_lean", "ms_lean_no_ipb", "swap: ip_bytes (lean)"),
            (
                "ms_all",
                "ms_stats_gen",
                "swap: stats through map-in-map vs one array by generation",
            ),
            ("ms_all", "ms_no_stats", "swap: the buckets"),
            ("ms_all", "ms_lean", "swap: all the parts cut"),
            (
                "ms_lean",
                "ms_lean_key4",
                "swap: 44-byte vs 16-byte IPv4 key",
            ),
            (
                "ms_lean",
                "ms_lean_gvar",
                "swap: generation by map lookup vs global",
            ),
            (
                "ms_lean",
                "ms_lean_fast",
                "swap: counted bucket by index vs constant",
            ),
            ("ms_lean", "ms_lean_gvar_fast", "swap: both"),
            (
                "empty_len",
                "empty",
                "the frame-length helper (every counter)",
            ),
            ("ml_index", "empty", "lock: parse, buckets and index lookup"),
            ("ml_slot", "ml_index", "lock: slot lookup and adds"),
            ("ml_keyeq", "ml_slot", "lock: the slot's key check"),
            ("ml_no_time", "ml_keyeq", "lock: the spin lock"),
            ("ml_all", "ml_no_time", "lock: first/last time (jiffies)"),
            ("ml_all", "ml_no_ipb", "lock: ip_bytes"),
            ("ml_all", "ml_no_stats", "lock: the buckets"),
            (
                "ml_no_time",
                "ml_lean_key4",
                "lock: 44-byte vs 16-byte IPv4 key",
            ),
            (
                "ml_s128_mmap",
                "ml_no_time",
                "lock: 128-byte page-aligned slots (lock and counters in one line) vs 96-byte ones",
            ),
            (
                "ml_s192",
                "ml_s192c",
                "lock: lock and counters in one line vs on two (192-byte slots)",
            ),
            (
                "ml_s128_mmap",
                "ml_s128",
                "lock: 128-byte slots page-aligned vs in a plain array",
            ),
            ("lock", "ml_s128_mmap", "lock now - its model"),
            (
                "ml_s128_mmap",
                "ml_s128_mmap_no_ipb",
                "lock: ip_bytes (now)",
            ),
            ("swap", "ms_now", "swap now - its model"),
            ("ms_now", "ms_now_no_ipb", "swap: ip_bytes (now)"),
            ("swap", "percpu", "swap over the per-CPU hash"),
            ("lock", "naive", "lock over the classic locked hash"),
            ("ms_all", "swap", "swap before - swap now"),
            ("ml_all", "lock", "lock before - lock now"),
        ] {
            out.extend(difference(&f, with, without, what));
        }
    }
    Ok(out)
}

/// (with - without), from medians and round by round: what a part costs.
fn difference(f: &Figures, with: &str, without: &str, what: &str) -> Option<Measurement> {
    f.median(with)?;
    f.median(without)?;
    let per_round: Vec<f64> = f
        .samples(with)
        .iter()
        .zip(f.samples(without))
        .map(|(a, b)| a - b)
        .collect();
    let mut tags = f.scenario.tags(with);
    tags.push(("without", without.to_string()));
    tags.push(("figure", "difference".to_string()));
    Some(Measurement::of(
        "breakdown",
        format!("{what} ({with} - {without}), {}", f.scenario.describe()),
        tags,
        "ns/packet",
        per_round,
    ))
}

/// What runs on the other CPU while the writer is measured.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Other {
    /// Nothing: the writer alone.
    Nothing,
    /// A locked snapshot (`raw_flows(ReadMode::Locked)`: the exchange in
    /// peek mode) every `period`, or back to back (None).
    Locked(Option<Duration>),
    /// The same read without the slots' locks (control).
    Unlocked(Option<Duration>),
}

impl Other {
    fn tag(self) -> String {
        let every = |p: Option<Duration>| match p {
            Some(p) => format!("{}ms", p.as_millis()),
            None => "b2b".to_string(),
        };
        match self {
            Other::Nothing => "off".to_string(),
            Other::Locked(p) => format!("locked_{}", every(p)),
            Other::Unlocked(p) => format!("unlocked_{}", every(p)),
        }
    }

    fn describe(self) -> String {
        let every = |p: Option<Duration>| match p {
            Some(p) if p >= Duration::from_secs(1) => format!("every {} s", p.as_secs()),
            Some(p) => format!("every {} ms", p.as_millis()),
            None => "back to back".to_string(),
        };
        match self {
            Other::Nothing => "alone".to_string(),
            Other::Locked(p) => format!("a locked snapshot {}", every(p)),
            Other::Unlocked(p) => format!("control: an unlocked snapshot {}", every(p)),
        }
    }

    fn period(self) -> Option<Duration> {
        match self {
            Other::Nothing => None,
            Other::Locked(p) | Other::Unlocked(p) => p,
        }
    }
}

/// What one [`Other`] gave over the rounds.
#[derive(Debug, Default, Clone)]
struct OtherRun {
    /// Mean ns per run over each round's window.
    samples: Vec<f64>,
    /// Snapshots taken, and the time they took.
    snapshots: u64,
    busy: Duration,
}

/// The reader's orders: what to do now.
const READER_IDLE: u8 = 0;
const READER_EXIT: u8 = 255;

/// ns/packet of the lock strategy's data path pinned to `writer_cpu`, over
/// windows of `window`, alone and while each of `others` runs pinned to
/// `reader_cpu`; every round runs each once, in an order rotated from round
/// to round. A window's figure is the mean over all its runs (a reader
/// every second touches a few of a window's calls: a median of calls would
/// hide it).
fn writer_with_others(
    ledger: &Ledger,
    frame: &[u8],
    cpus: (usize, usize),
    others: &[Other],
    rounds: usize,
    repeat: u32,
    window: Duration,
) -> Result<Vec<OtherRun>> {
    let (writer_cpu, reader_cpu) = cpus;
    let state = AtomicU8::new(READER_IDLE);
    let snapshots = AtomicU64::new(0);
    let busy_ns = AtomicU64::new(0);
    let reading = AtomicBool::new(false);
    let failed = FirstError::default();
    let fail = |e: anyhow::Error| failed.set(e);
    let runs = thread::scope(|s| {
        let (state, snapshots, busy_ns, reading, fail, failed) =
            (&state, &snapshots, &busy_ns, &reading, &fail, &failed);
        s.spawn(move || {
            if let Err(e) = pin_to(reader_cpu) {
                fail(
                    anyhow::Error::new(e)
                        .context(format!("pinning the reader to CPU {reader_cpu}")),
                );
            }
            loop {
                // Busy first, then the order: the writer, which sets the
                // order first and then waits for not busy, never misses a
                // snapshot that would run into its next window.
                reading.store(true, Ordering::SeqCst);
                let order = state.load(Ordering::SeqCst);
                if order == READER_EXIT {
                    reading.store(false, Ordering::SeqCst);
                    return;
                }
                if failed.is_set() || order == READER_IDLE {
                    reading.store(false, Ordering::SeqCst);
                    thread::sleep(Duration::from_micros(200));
                    continue;
                }
                let other = others[usize::from(order - 1)];
                let mode = match other {
                    Other::Locked(_) => ReadMode::Locked,
                    _ => ReadMode::Unlocked,
                };
                let t = Instant::now();
                match ledger.raw_flows(mode) {
                    Ok(_) => {
                        snapshots.fetch_add(1, Ordering::SeqCst);
                        busy_ns.fetch_add(t.elapsed().as_nanos() as u64, Ordering::SeqCst);
                    }
                    Err(e) => fail(e.into()),
                }
                reading.store(false, Ordering::SeqCst);
                if let Some(p) = other.period() {
                    // Sleep out the period, watching for a new order.
                    while t.elapsed() < p && state.load(Ordering::SeqCst) == order {
                        thread::sleep(Duration::from_micros(500).min(p));
                    }
                }
            }
        });
        let writer = s.spawn(move || {
            let mut runs = vec![OtherRun::default(); others.len()];
            if let Err(e) = pin_to(writer_cpu) {
                fail(
                    anyhow::Error::new(e)
                        .context(format!("pinning the writer to CPU {writer_cpu}")),
                );
            }
            for round in 0..rounds {
                for j in 0..others.len() {
                    let i = (j + round) % others.len();
                    if failed.is_set() {
                        break;
                    }
                    let (n0, b0) = (
                        snapshots.load(Ordering::SeqCst),
                        busy_ns.load(Ordering::SeqCst),
                    );
                    if others[i] != Other::Nothing {
                        state.store(i as u8 + 1, Ordering::SeqCst);
                    }
                    let t = Instant::now();
                    let (mut ns, mut n) = (0f64, 0u64);
                    while t.elapsed() < window && !failed.is_set() {
                        match timed(ledger.program_fd(), frame, repeat) {
                            Ok(r) => {
                                ns += r.ns * f64::from(repeat);
                                n += u64::from(repeat);
                            }
                            Err(e) => fail(e.context("lock")),
                        }
                    }
                    state.store(READER_IDLE, Ordering::SeqCst);
                    // A snapshot in flight finishes before the next window.
                    while reading.load(Ordering::SeqCst) && !failed.is_set() {
                        thread::sleep(Duration::from_micros(200));
                    }
                    let run = &mut runs[i];
                    run.samples.push(ns / n.max(1) as f64);
                    run.snapshots += snapshots.load(Ordering::SeqCst) - n0;
                    run.busy += Duration::from_nanos(busy_ns.load(Ordering::SeqCst) - b0);
                }
            }
            state.store(READER_EXIT, Ordering::SeqCst);
            runs
        });
        writer.join().expect("writer thread panicked")
    });
    failed.into_result()?;
    Ok(runs)
}

pub(super) fn reader_slowdown(opts: &Options<'_>) -> Result<Vec<Measurement>> {
    let progress = opts.progress;
    let rounds = opts.rounds.max(1);
    let repeat: u32 = opts.size(20_000, 250_000);
    let window = opts.size(Duration::from_millis(250), Duration::from_secs(3));
    let cpus = allowed_cpus().context("reading the CPU affinity")?;
    let writer_cpu = cpus[0];
    // With a single CPU the reader can only share the writer's.
    let reader_cpu = cpus.get(1).copied().unwrap_or(writer_cpu);
    let shared = if reader_cpu == writer_cpu {
        " (the same CPU: only one allowed)"
    } else {
        ""
    };
    let sizes: Vec<usize> = opts.size(vec![1000], vec![10_000, 100_000]);
    let (s1, ms100) = (Duration::from_secs(1), Duration::from_millis(100));
    let others = [
        Other::Nothing,
        Other::Locked(Some(s1)),
        Other::Locked(Some(ms100)),
        Other::Locked(None),
        Other::Unlocked(Some(ms100)),
        Other::Unlocked(None),
    ];
    let mut out = Vec::new();
    for keys_in_map in sizes {
        let keys_desc = plural(keys_in_map, "key", "keys");
        let max_flows = (keys_in_map.next_power_of_two().max(1024)) as u32;
        progress(&format!(
            "reader: lock, {keys_desc} in the map ({max_flows} slots), snapshots on CPU {reader_cpu}"
        ));
        let ledger = Ledger::load(LedgerConfig {
            strategy: Strategy::Lock,
            max_flows,
            ..LedgerConfig::default()
        })?;
        ledger.populate(&keys(0..keys_in_map), Count::default())?;
        let held = Held::hold(&[ledger.program_fd()]).ok();
        let frame = Flow::nth(0).frame();
        let runs = writer_with_others(
            &ledger,
            &frame,
            (writer_cpu, reader_cpu),
            &others,
            rounds,
            repeat,
            window,
        )?;
        drop(held);
        let tags = |reader: &str| {
            vec![
                ("program", "lock".to_string()),
                ("writers", "1".to_string()),
                ("keys", keys_in_map.to_string()),
                ("reader", reader.to_string()),
            ]
        };
        let alone_name =
            format!("lock: 1 writer on CPU {writer_cpu} alone, {keys_desc} in the map");
        let alone = &runs[0].samples;
        let ma = median(alone);
        for (other, run) in others.iter().zip(&runs) {
            let m = median(&run.samples);
            if *other == Other::Nothing {
                out.push(Measurement {
                    section: "reader",
                    name: alone_name.clone(),
                    tags: tags(&other.tag()),
                    value: ma,
                    unit: "ns/packet",
                    ratio: None,
                    baseline: None,
                    samples: alone.clone(),
                });
                continue;
            }
            let per = if run.snapshots > 0 {
                format!(
                    "{} snapshots, {:.1} ms each",
                    run.snapshots,
                    run.busy.as_secs_f64() * 1e3 / run.snapshots as f64
                )
            } else {
                "no snapshot".to_string()
            };
            out.push(Measurement {
                section: "reader",
                name: format!(
                    "lock: 1 writer on CPU {writer_cpu} with {} on CPU {reader_cpu}{shared} ({per}), {keys_desc} in the map",
                    other.describe()
                ),
                tags: tags(&other.tag()),
                value: m,
                unit: "ns/packet",
                ratio: Some(m / ma),
                baseline: Some(alone_name.clone()),
                samples: run.samples.clone(),
            });
            let ratios: Vec<f64> = run.samples.iter().zip(alone).map(|(w, a)| w / a).collect();
            let mut t = tags(&other.tag());
            t.push(("figure", "slowdown".to_string()));
            out.push(Measurement::of(
                "reader",
                format!(
                    "lock: writer slowdown with {}, {keys_desc} in the map (per-round ratios)",
                    other.describe()
                ),
                t,
                "x",
                ratios,
            ));
        }
    }
    Ok(out)
}
