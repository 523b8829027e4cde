//! The data path's cost per frame against the empty XDP program.
//!
//! Loads `EmptyProgram` (`return XDP_PASS`) and the netledger data path of
//! both strategies with the default key configuration (five-tuple keys), then
//! alternates BPF_PROG_TEST_RUN of each, `REPEAT` runs per call, on the same
//! 64-byte (no FCS) IPv4 UDP frame (`Flow::nth(0)`): one five-tuple key, so every run after
//! the first finds the key and adds to it: under the flow's spin lock
//! (`lock`), or to this CPU's copy of a per-CPU value with plain additions
//! through the map-in-map generation (`swap`).
//! The kernel's mean ns per run of each call is one sample; the medians of
//! `ROUNDS` interleaved samples are printed with their ratios and differences.
//!
//! Needs root. Run with:
//! `cargo run --release -p netledger-lab --example datapath_cost`

use netledger::LedgerConfig;
use netledger_lab::bench::{load_ledgers, median};
use netledger_lab::harness::Flow;
use netledger_lab::EmptyProgram;

const REPEAT: u32 = 1_000_000;
const ROUNDS: usize = 11;

fn main() -> anyhow::Result<()> {
    let frame = Flow::nth(0).frame();
    assert_eq!(frame.len(), 64);
    let empty = EmptyProgram::load()?;
    let (nl, sw) = load_ledgers(&LedgerConfig::default())?;

    // Warm up all three (and create the flow key) outside the samples.
    empty.test_run(&frame, REPEAT)?;
    nl.test_run(&frame, REPEAT)?;
    sw.test_run(&frame, REPEAT)?;

    let mut e = Vec::with_capacity(ROUNDS);
    let mut n = Vec::with_capacity(ROUNDS);
    let mut w = Vec::with_capacity(ROUNDS);
    for round in 0..ROUNDS {
        let re = empty.test_run(&frame, REPEAT)?;
        let rn = nl.test_run(&frame, REPEAT)?;
        let rw = sw.test_run(&frame, REPEAT)?;
        assert_eq!(re.retval, 2, "XDP_PASS");
        assert_eq!(rn.retval, 2, "XDP_PASS");
        assert_eq!(rw.retval, 2, "XDP_PASS");
        println!(
            "round {round:2}: empty {:4} ns/run, lock {:4} ns/run, swap {:4} ns/run",
            re.duration_ns, rn.duration_ns, rw.duration_ns
        );
        e.push(f64::from(re.duration_ns));
        n.push(f64::from(rn.duration_ns));
        w.push(f64::from(rw.duration_ns));
    }

    let (me, mn, mw) = (median(&e), median(&n), median(&w));
    let range = |v: &[f64]| {
        v.iter()
            .fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), &s| {
                (lo.min(s), hi.max(s))
            })
    };
    let (elo, ehi) = range(&e);
    let (nlo, nhi) = range(&n);
    let (wlo, whi) = range(&w);
    println!(
        "frame {} bytes, repeat {REPEAT}, {ROUNDS} interleaved rounds",
        frame.len()
    );
    println!("empty XDP_PASS: median {me:.0} ns/run (range {elo}-{ehi})");
    println!("lock:           median {mn:.0} ns/run (range {nlo}-{nhi})");
    println!("swap:           median {mw:.0} ns/run (range {wlo}-{whi})");
    println!(
        "ratio lock/empty: {:.2}, swap/empty: {:.2}, swap/lock: {:.2}",
        mn / me,
        mw / me,
        mw / mn
    );
    println!(
        "overhead over empty: lock {:.0} ns/run, swap {:.0} ns/run",
        mn - me,
        mw - me
    );

    // Every counted run is in the one flow.
    let expected = u64::from(REPEAT) * (ROUNDS as u64 + 1);
    let snap = nl.snapshot()?;
    let total: u64 = snap.flows.values().map(|c| c.packets).sum();
    println!(
        "lock: flows {}, packets counted {total} (expected {expected})",
        snap.flows.len()
    );
    let cut = sw.cut()?;
    println!(
        "swap: flows {}, packets counted {} (expected {expected})",
        cut.flows.len(),
        cut.flow_total().packets
    );
    Ok(())
}
