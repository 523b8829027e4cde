//! 3. Live snapshots of strategy `lock` for 1K, 100K and 1M live keys.
//!
//! Per method, the time of one full pass over N live keys and N / that time:
//! the locked snapshot ([`Ledger::raw_flows`] with `ReadMode::Locked`: the
//! exchange program in peek mode, each slot copied under its lock, read
//! through the mmapped output), the same read without the locks (a batch
//! lookup of the slot array), and one locked lookup per key
//! ([`Ledger::raw_flows_per_element`]). Keys are put in place from
//! userspace, not by the data path: one test run per key would wait a
//! grace period per key. (Cuts are part 6.)
//!
//! The ledger has exactly N slots, so its reads take the batch path
//! (`raw_flows` falls back to one lookup per key below N / 16 live keys),
//! and a batch copies every slot, live or not: N slots is its best case.
//! The methods take turns round by round.

use std::time::Instant;

use anyhow::{anyhow, Result};
use netledger::lab::types::nl_flow_key;
use netledger::lab::ReadMode;
use netledger::{Count, Ledger, LedgerConfig, Strategy};

use super::{median, numbered_key, Measurement, Options};

const SECTION: &str = "drain";

/// Live keys measured (quick mode: the first only).
const SIZES: [u32; 3] = [1_000, 100_000, 1_000_000];

/// At this many keys a round takes seconds (a per-element pass alone about
/// 5 s here): at most `SLOW_ROUNDS` rounds, and one per-element pass.
const SLOW_KEYS: u32 = 1_000_000;
const SLOW_ROUNDS: usize = 3;
const SLOW_PER_ELEMENT_ROUNDS: usize = 1;

/// What every key holds before a pass or a cut.
const COUNT: Count = Count {
    packets: 1,
    bytes: 64,
};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Method {
    BatchLocked,
    BatchUnlocked,
    PerElement,
}

impl Method {
    const ALL: [Method; 3] = [
        Method::BatchLocked,
        Method::BatchUnlocked,
        Method::PerElement,
    ];

    fn tag(self) -> &'static str {
        match self {
            Method::BatchLocked => "batch_locked",
            Method::BatchUnlocked => "batch_unlocked",
            Method::PerElement => "per_element",
        }
    }

    fn name(self) -> &'static str {
        match self {
            Method::BatchLocked => "locked snapshot (exchange in peek mode, lock)",
            Method::BatchUnlocked => "batch lookup without BPF_F_LOCK (lock)",
            Method::PerElement => "per-element lookups with BPF_F_LOCK (lock)",
        }
    }
}

/// A pass or a cut that did not see every key: the figure would be wrong.
fn short(method: Method, got: usize, keys: u32) -> anyhow::Error {
    anyhow!(
        "benchmark pass: {} returned {got} flows, expected {keys}",
        method.name()
    )
}

/// One full pass of `method` over `n` live keys; seconds.
fn pass(method: Method, ledger: &Ledger, n: usize) -> Result<f64> {
    let t = Instant::now();
    let flows = match method {
        Method::BatchLocked => ledger.raw_flows(ReadMode::Locked)?,
        Method::BatchUnlocked => ledger.raw_flows(ReadMode::Unlocked)?,
        Method::PerElement => ledger.raw_flows_per_element(ReadMode::Locked)?,
    };
    let took = t.elapsed().as_secs_f64();
    if flows.len() != n {
        return Err(short(method, flows.len(), n as u32));
    }
    Ok(took)
}

fn tags(method: Method, keys: u32, metric: &str) -> Vec<(&'static str, String)> {
    vec![
        ("method", method.tag().to_string()),
        ("strategy", "lock".to_string()),
        ("keys", keys.to_string()),
        ("metric", metric.to_string()),
    ]
}

/// Every method over `n` live keys, `rounds` rounds taking turns.
fn measure(opts: &Options<'_>, n: u32, rounds: usize) -> Result<Vec<Measurement>> {
    (opts.progress)(&format!("drain: loading a lock ledger of {n} flows"));
    let keys: Vec<nl_flow_key> = (0..n).map(numbered_key).collect();
    let lock = Ledger::load(LedgerConfig {
        max_flows: n,
        strategy: Strategy::Lock,
        ..Default::default()
    })?;
    lock.populate(&keys, COUNT)?;

    let (rounds, per_element_rounds) = if n >= SLOW_KEYS {
        (rounds.min(SLOW_ROUNDS), SLOW_PER_ELEMENT_ROUNDS)
    } else {
        (rounds, rounds)
    };
    // Seconds per pass, per method (indexed like Method::ALL), per round.
    let mut secs: Vec<Vec<f64>> = vec![Vec::new(); Method::ALL.len()];
    // Per-element time / batch locked time, within one round.
    let mut ratios: Vec<f64> = Vec::new();
    for r in 0..rounds {
        (opts.progress)(&format!(
            "drain: {n} keys, round {} of {rounds}: locked, unlocked and per-element snapshots",
            r + 1
        ));
        let mut this = [None; 3];
        for (i, m) in Method::ALL.into_iter().enumerate() {
            if m == Method::PerElement && r >= per_element_rounds {
                continue;
            }
            let s = pass(m, &lock, keys.len())?;
            secs[i].push(s);
            this[i] = Some(s);
        }
        if let (Some(b), Some(p)) = (this[0], this[2]) {
            ratios.push(p / b);
        }
    }
    drop(lock);

    let mut out = Vec::new();
    let base_s = median(&secs[0]);
    let base_name = |what: &str| format!("{}, {n} keys, {what}", Method::BatchLocked.name());
    for (i, m) in Method::ALL.into_iter().enumerate() {
        let s = &secs[i];
        let rate: Vec<f64> = s.iter().map(|t| f64::from(n) / t).collect();
        let ms: Vec<f64> = s.iter().map(|t| t * 1e3).collect();
        let is_base = m == Method::BatchLocked;
        let ms_tags = tags(m, n, "time");
        out.push(Measurement {
            section: SECTION,
            name: format!("{}, {n} keys, throughput", m.name()),
            tags: tags(m, n, "throughput"),
            value: median(&rate),
            unit: "entries/s",
            ratio: (!is_base).then(|| median(&rate) / (f64::from(n) / base_s)),
            baseline: (!is_base).then(|| base_name("throughput")),
            samples: rate,
        });
        out.push(Measurement {
            section: SECTION,
            name: format!("{}, {n} keys, full pass", m.name()),
            tags: ms_tags,
            value: median(&ms),
            unit: "ms",
            ratio: (!is_base).then(|| median(&ms) / (base_s * 1e3)),
            baseline: (!is_base).then(|| base_name("full pass")),
            samples: ms,
        });
    }
    let mut ratio_tags = vec![
        ("method", "per_element_vs_batch_locked".to_string()),
        ("strategy", "lock".to_string()),
        ("keys", n.to_string()),
        ("metric", "ratio".to_string()),
    ];
    if n == 100_000 {
        ratio_tags.push(("target", "batch_vs_per_element".to_string()));
    }
    out.push(Measurement::of(
        SECTION,
        format!(
            "per-element time / batch locked time, {n} keys (batch speed-up, per-round ratios)"
        ),
        ratio_tags,
        "x",
        ratios,
    ));
    Ok(out)
}

pub(super) fn run(opts: &Options<'_>) -> Result<Vec<Measurement>> {
    let sizes: &[u32] = if opts.quick { &SIZES[..1] } else { &SIZES };
    let rounds = opts.rounds.max(1);
    let mut out = Vec::new();
    for &n in sizes {
        out.extend(measure(opts, n, rounds)?);
    }
    Ok(out)
}
