//! Parts 1 (data-path cost) and 4 (slowdown from a concurrent reader) of
//! the benchmark, in ns/packet through BPF_PROG_TEST_RUN.
//!
//! Every figure is the kernel's mean duration per run of one test_run call
//! of `repeat` runs; a figure's value is the median over rounds and writers.
//! Programs are interleaved: each round runs every program once, in an
//! order rotated from round to round, so drift on a shared machine hits all
//! of them alike, and ratios are taken to the empty program of the same
//! scenario.
//!
//! Scenarios: 1 writer, and one writer per allowed CPU (all running the same
//! program at the same time, each in its own pinned thread) on one key or
//! on a key each; 1, 10K and 1M keys in the map (1 and 1000 in quick mode,
//! with 1 writer only). Every map is prepopulated with the scenario's keys
//! from userspace (the measured frames' keys among them), so the measured
//! runs find their key and add to it.
//!
//! The reader part runs the `lock` data path on one CPU alone and while a
//! locked snapshot loop (`raw_flows(ReadMode::Locked)`) runs on another,
//! with two controls: the same loop without the locks, and a busy loop with
//! no syscalls (what any load on the other CPU costs on this machine).

use std::os::fd::{AsFd, BorrowedFd};
use std::sync::atomic::{AtomicU64, AtomicU8, Ordering};
use std::sync::Barrier;
use std::thread;
use std::time::{Duration, Instant};

use anyhow::{anyhow, Context, Result};
use netledger::lab::types::{nl_flow_key, nl_slot};
use netledger::lab::{test_run, ReadMode};
use netledger::{Count, Ledger, LedgerConfig, Strategy};

use super::programs::{populate_all, BenchPrograms};
use super::{load_ledgers, median, Measurement, Options};
use crate::harness::{allowed_cpus, pin_to, FirstError, Flow};

/// XDP_PASS: every program measured here returns it.
const XDP_PASS: u32 = 2;

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
/// each of `cpus`, all starting each call together), writer `w` on
/// `frames[w]`. Returns, per subject, its samples (mean ns per run of each
/// call), round by round, writers in order within a round.
fn measure(
    subjects: &[Subject<'_>],
    cpus: &[usize],
    frames: &[Vec<u8>],
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
            .map(|(&cpu, frame)| {
                let (barrier, failed) = (&barrier, &failed);
                s.spawn(move || {
                    let mut out = Vec::with_capacity(rounds * n);
                    let fail = |e: anyhow::Error| failed.set(e);
                    if let Err(e) = pin_to(cpu) {
                        fail(
                            anyhow::Error::new(e).context(format!("pinning a writer to CPU {cpu}")),
                        );
                    }
                    for round in 0..rounds {
                        for j in 0..n {
                            let idx = (j + round) % n;
                            // Every writer waits at every barrier, failed or not.
                            barrier.wait();
                            if failed.is_set() {
                                continue;
                            }
                            match test_run(subjects[idx].prog, frame, repeat) {
                                Ok(r) if r.retval == XDP_PASS => {
                                    out.push((round, idx, f64::from(r.duration_ns)))
                                }
                                Ok(r) => fail(anyhow!(
                                    "{} returned {}, not XDP_PASS",
                                    subjects[idx].tag,
                                    r.retval
                                )),
                                Err(e) => fail(e.into()),
                            }
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

/// (program - empty) / (reference - empty), from medians and round by round.
fn overhead_ratio(f: &Figures, program: &str, reference: &str, label: &str) -> Option<Measurement> {
    let (e, p, r) = (f.median("empty")?, f.median(program)?, f.median(reference)?);
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
    Some(Measurement {
        section: "datapath",
        name: format!("{label}, {}", f.scenario.describe()),
        tags,
        value: (p - e) / (r - e),
        unit: "x",
        ratio: None,
        baseline: None,
        samples: per_round,
    })
}

pub(super) fn run(opts: &Options<'_>) -> Result<Vec<Measurement>> {
    let progress = opts.progress;
    let rounds = opts.rounds.max(1);
    let repeat: u32 = opts.size(20_000, 1_000_000);
    let key_counts: Vec<usize> = opts.size(vec![1, 1000], vec![1, 10_000, 1_000_000]);
    let cpus = allowed_cpus().context("reading the CPU affinity")?;
    let max_keys = key_counts
        .iter()
        .copied()
        .max()
        .unwrap_or(1)
        .max(cpus.len());
    let max_flows = (max_keys.next_power_of_two().max(1024)) as u32;

    progress(&format!(
        "datapath: loading the programs (maps of {max_flows} flows)"
    ));
    let bench = BenchPrograms::load(max_flows)?;
    let (lock, swap) = load_ledgers(&LedgerConfig {
        max_flows,
        ..LedgerConfig::default()
    })?;
    let subjects = [
        Subject {
            tag: "empty",
            label: "empty XDP_PASS",
            prog: bench.progs.empty.as_fd(),
        },
        Subject {
            tag: "plain",
            label: "plain += (shared hash, racy)",
            prog: bench.progs.plain.as_fd(),
        },
        Subject {
            tag: "atomic",
            label: "two atomic adds (shared hash)",
            prog: bench.progs.atomic.as_fd(),
        },
        Subject {
            tag: "percpu",
            label: "per-CPU hash, plain +=",
            prog: bench.progs.percpu.as_fd(),
        },
        Subject {
            tag: "bare_lock",
            label: "bare spin-locked counter (1 element, no parsing)",
            prog: bench.progs.bare_lock.as_fd(),
        },
        Subject {
            tag: "bare_percpu",
            label: "bare per-CPU counter (1 element, no parsing)",
            prog: bench.progs.bare_percpu.as_fd(),
        },
        Subject {
            tag: "lock",
            label: "lock",
            prog: lock.program_fd(),
        },
        Subject {
            tag: "swap",
            label: "swap",
            prog: swap.program_fd(),
        },
    ];

    let mut scenarios = Vec::new();
    for &keys in &key_counts {
        scenarios.push(Scenario {
            writers: 1,
            same_key: true,
            keys,
        });
        if !opts.quick && cpus.len() > 1 {
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
    let mut populated = 0usize;
    for sc in scenarios {
        let need = sc.populated();
        if need > populated {
            progress(&format!("datapath: populating every map to {need} keys"));
            populate_all(&bench, &lock, &swap, &keys(populated..need))?;
            populated = need;
        }
        let writer_cpus: Vec<usize> = cpus.iter().copied().take(sc.writers).collect();
        let frames: Vec<Vec<u8>> = (0..sc.writers)
            .map(|w| Flow::nth(if sc.same_key { 0 } else { w }).frame())
            .collect();
        progress(&format!("datapath: {}", sc.describe()));
        let samples = measure(&subjects, &writer_cpus, &frames, rounds, repeat)?;
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
                section: "datapath",
                name: format!("{}: {}", s.label, sc.describe()),
                tags: sc.tags(s.tag),
                value: m,
                unit: "ns/packet",
                ratio: (!is_empty).then_some(m / empty),
                baseline: (!is_empty).then(|| empty_name.clone()),
                samples: v.clone(),
            });
        }
        figures.push(Figures {
            scenario: sc,
            medians,
            samples: subjects
                .iter()
                .map(|s| s.tag)
                .zip(samples)
                .collect::<Vec<_>>(),
        });
    }

    // The targets' figures: overheads over the empty program, 1 writer, 1 key.
    if let Some(f) = figures
        .iter()
        .find(|f| f.scenario.writers == 1 && f.scenario.keys == 1)
    {
        for (program, reference, label) in [
            (
                "swap",
                "bare_percpu",
                "swap overhead / bare per-CPU overhead",
            ),
            ("lock", "bare_lock", "lock overhead / bare lock overhead"),
            ("swap", "percpu", "swap overhead / per-CPU hash overhead"),
        ] {
            out.extend(overhead_ratio(f, program, reference, label));
        }
    }
    Ok(out)
}

/// What runs on the other CPU while the writer is measured.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Other {
    /// Nothing: the writer alone.
    Nothing,
    /// `raw_flows(ReadMode::Locked)` in a tight loop: the reader measured.
    Locked,
    /// `raw_flows(ReadMode::Unlocked)` in a tight loop: the same work
    /// without taking the slots' locks (control).
    Unlocked,
    /// An arithmetic busy loop, no syscalls: what a CPU-bound neighbour
    /// costs the writer on this machine (control).
    Spin,
    /// A userspace copy loop over a buffer the size of the slot array a
    /// snapshot copies, no syscalls: what a memory-bound neighbour costs
    /// (control).
    Copy,
}

impl Other {
    const ALL: [Other; 5] = [
        Other::Nothing,
        Other::Locked,
        Other::Unlocked,
        Other::Spin,
        Other::Copy,
    ];

    fn code(self) -> u8 {
        self as u8 + 1
    }

    fn tag(self) -> &'static str {
        match self {
            Other::Nothing => "off",
            Other::Locked => "on",
            Other::Unlocked => "unlocked",
            Other::Spin => "spin",
            Other::Copy => "copy",
        }
    }
}

/// The reader thread's orders besides an [`Other::code`].
const READER_IDLE: u8 = 0;
const READER_EXIT: u8 = 255;

/// What [`writer_with_others`] measured for one [`Other`].
#[derive(Debug, Default, Clone)]
struct OtherRun {
    samples: Vec<f64>,
    /// Loops (snapshots, or thousands of spins) of the other CPU per second.
    rate: f64,
}

/// ns/packet of the lock strategy's data path, pinned to `writer_cpu`, alone
/// and while each [`Other`] runs pinned to `reader_cpu`: every round runs
/// each once, in an order rotated from round to round.
fn writer_with_others(
    ledger: &Ledger,
    frame: &[u8],
    writer_cpu: usize,
    reader_cpu: usize,
    rounds: usize,
    repeat: u32,
) -> Result<Vec<OtherRun>> {
    let state = AtomicU8::new(READER_IDLE);
    let loops = AtomicU64::new(0);
    let failed = FirstError::default();
    let fail = |e: anyhow::Error| failed.set(e);
    let runs = thread::scope(|s| {
        let (state, loops, fail, failed) = (&state, &loops, &fail, &failed);
        s.spawn(move || {
            if let Err(e) = pin_to(reader_cpu) {
                fail(
                    anyhow::Error::new(e)
                        .context(format!("pinning the reader to CPU {reader_cpu}")),
                );
            }
            // The slot array of a ledger's default size, as a snapshot copies it.
            let size = LedgerConfig::default().max_flows as usize * std::mem::size_of::<nl_slot>();
            let (src, mut dst) = (vec![1u8; size], vec![0u8; size]);
            let mut x = 1u64;
            loop {
                let order = state.load(Ordering::SeqCst);
                let read = |mode| match ledger.raw_flows(mode) {
                    Ok(_) => {
                        loops.fetch_add(1, Ordering::SeqCst);
                    }
                    Err(e) => fail(e.into()),
                };
                match order {
                    READER_EXIT => return,
                    _ if failed.is_set() || order == READER_IDLE => {
                        thread::sleep(Duration::from_millis(1))
                    }
                    o if o == Other::Locked.code() => read(ReadMode::Locked),
                    o if o == Other::Unlocked.code() => read(ReadMode::Unlocked),
                    o if o == Other::Spin.code() => {
                        for i in 0..1000 {
                            x = std::hint::black_box(x.wrapping_mul(31).wrapping_add(i));
                        }
                        loops.fetch_add(1, Ordering::Relaxed);
                    }
                    o if o == Other::Copy.code() => {
                        dst.copy_from_slice(std::hint::black_box(&src));
                        std::hint::black_box(&mut dst);
                        loops.fetch_add(1, Ordering::Relaxed);
                    }
                    _ => thread::sleep(Duration::from_millis(1)),
                }
            }
        });
        let writer = s.spawn(move || {
            let mut runs = vec![OtherRun::default(); Other::ALL.len()];
            let mut busy = vec![(Duration::ZERO, 0u64); Other::ALL.len()];
            if let Err(e) = pin_to(writer_cpu) {
                fail(
                    anyhow::Error::new(e)
                        .context(format!("pinning the writer to CPU {writer_cpu}")),
                );
            }
            for round in 0..rounds {
                for j in 0..Other::ALL.len() {
                    let i = (j + round) % Other::ALL.len();
                    let other = Other::ALL[i];
                    if failed.is_set() {
                        break;
                    }
                    let mut started = None;
                    if other != Other::Nothing {
                        let before = loops.load(Ordering::SeqCst);
                        state.store(other.code(), Ordering::SeqCst);
                        // Going at full speed before the writer starts.
                        let t = Instant::now();
                        while loops.load(Ordering::SeqCst) == before
                            && !failed.is_set()
                            && t.elapsed() < Duration::from_secs(5)
                        {
                            thread::sleep(Duration::from_micros(100));
                        }
                        started = Some((Instant::now(), loops.load(Ordering::SeqCst)));
                    }
                    let r = ledger.test_run(frame, repeat);
                    if let Some((t, n)) = started {
                        busy[i].0 += t.elapsed();
                        busy[i].1 += loops.load(Ordering::SeqCst) - n;
                        state.store(READER_IDLE, Ordering::SeqCst);
                    }
                    match r {
                        Ok(r) if r.retval == XDP_PASS => {
                            runs[i].samples.push(f64::from(r.duration_ns))
                        }
                        Ok(r) => fail(anyhow!("lock returned {}, not XDP_PASS", r.retval)),
                        Err(e) => fail(e.into()),
                    }
                }
            }
            state.store(READER_EXIT, Ordering::SeqCst);
            for (run, (t, n)) in runs.iter_mut().zip(busy) {
                run.rate = n as f64 / t.as_secs_f64().max(1e-9);
            }
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
    let repeat: u32 = opts.size(20_000, 1_000_000);
    let cpus = allowed_cpus().context("reading the CPU affinity")?;
    let writer_cpu = cpus[0];
    // With a single CPU the reader can only share the writer's.
    let reader_cpu = cpus.get(1).copied().unwrap_or(writer_cpu);
    let shared = if reader_cpu == writer_cpu {
        " (the same CPU: only one allowed)"
    } else {
        ""
    };
    let many: usize = opts.size(1000, 10_000);
    let mut out = Vec::new();
    for keys_in_map in [many, 1] {
        let keys_desc = plural(keys_in_map, "key", "keys");
        progress(&format!(
            "reader: lock, {keys_desc} in the map, snapshot loop on CPU {reader_cpu}"
        ));
        let ledger = Ledger::load(LedgerConfig {
            strategy: Strategy::Lock,
            ..LedgerConfig::default()
        })?;
        ledger.populate(&keys(0..keys_in_map), Count::default())?;
        let frame = Flow::nth(0).frame();
        let runs = writer_with_others(&ledger, &frame, writer_cpu, reader_cpu, rounds, repeat)?;
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
        let mut slowdown = None;
        for (other, run) in Other::ALL.iter().zip(&runs) {
            let m = median(&run.samples);
            let with = match other {
                Other::Nothing => {
                    out.push(Measurement {
                        section: "reader",
                        name: alone_name.clone(),
                        tags: tags(other.tag()),
                        value: ma,
                        unit: "ns/packet",
                        ratio: None,
                        baseline: None,
                        samples: alone.clone(),
                    });
                    continue;
                }
                Other::Locked => format!("a locked snapshot loop ({:.0} snapshots/s)", run.rate),
                Other::Unlocked => format!(
                    "control: an unlocked snapshot loop ({:.0} snapshots/s)",
                    run.rate
                ),
                Other::Spin => "control: an arithmetic busy loop, no syscalls".to_string(),
                Other::Copy => format!(
                    "control: a userspace copy loop of a snapshot's size ({:.0} copies/s, no syscalls)",
                    run.rate
                ),
            };
            out.push(Measurement {
                section: "reader",
                name: format!(
                    "lock: 1 writer on CPU {writer_cpu} with {with} on CPU {reader_cpu}{shared}, {keys_desc} in the map"
                ),
                tags: tags(other.tag()),
                value: m,
                unit: "ns/packet",
                ratio: Some(m / ma),
                baseline: Some(alone_name.clone()),
                samples: run.samples.clone(),
            });
            if *other == Other::Locked {
                slowdown = Some(Measurement {
                    section: "reader",
                    name: format!(
                        "lock: slowdown from a concurrent locked reader, {keys_desc} in the map"
                    ),
                    tags: tags("slowdown"),
                    value: m / ma,
                    unit: "x",
                    ratio: None,
                    baseline: None,
                    samples: run.samples.iter().zip(alone).map(|(w, a)| w / a).collect(),
                });
            }
        }
        out.extend(slowdown);
    }
    Ok(out)
}
