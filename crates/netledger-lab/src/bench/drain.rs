//! 3. Snapshot/drain throughput for 1K, 100K and 1M live keys.
//!
//! Per method, the time of one full pass over N live keys and N / that time:
//! a batch lookup of the slots with `BPF_F_LOCK` and without it
//! ([`Ledger::raw_flows`]), one lookup per key ([`Ledger::raw_flows_per_element`]),
//! an exchange cut (strategy `lock`, [`Ledger::cut`]) and a swap cut
//! (strategy `swap`). Keys are put in place from userspace, not by the data
//! path: one test run per key would wait a grace period per key.
//!
//! The `lock` ledger has exactly N slots, so its reads take the batch path
//! (`raw_flows` falls back to one lookup per key below N / 16 live keys),
//! and a batch copies every slot, live or not: N slots is its best case.
//! Before each cut every key gets a non-zero count, so every cut takes every
//! key. The methods take turns round by round.

use std::time::Instant;

use anyhow::{anyhow, Result};
use netledger::lab::types::nl_flow_key;
use netledger::lab::ReadMode;
use netledger::{Count, Ledger, LedgerConfig, Strategy};

use super::{load_ledgers, median, numbered_key, Measurement, Options};

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
    ExchangeCut,
    SwapCut,
}

impl Method {
    const ALL: [Method; 5] = [
        Method::BatchLocked,
        Method::BatchUnlocked,
        Method::PerElement,
        Method::ExchangeCut,
        Method::SwapCut,
    ];

    fn tag(self) -> &'static str {
        match self {
            Method::BatchLocked => "batch_locked",
            Method::BatchUnlocked => "batch_unlocked",
            Method::PerElement => "per_element",
            Method::ExchangeCut => "exchange_cut",
            Method::SwapCut => "swap_cut",
        }
    }

    fn name(self) -> &'static str {
        match self {
            Method::BatchLocked => "batch lookup with BPF_F_LOCK (lock)",
            Method::BatchUnlocked => "batch lookup without BPF_F_LOCK (lock)",
            Method::PerElement => "per-element lookups with BPF_F_LOCK (lock)",
            Method::ExchangeCut => "exchange cut (lock)",
            Method::SwapCut => "swap cut (swap)",
        }
    }

    fn strategy(self) -> Strategy {
        match self {
            Method::SwapCut => Strategy::Swap,
            _ => Strategy::Lock,
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

/// One full pass of `method` over `keys` live keys; seconds.
fn pass(method: Method, ledger: &Ledger, keys: &[nl_flow_key]) -> Result<f64> {
    let n = keys.len();
    let got = match method {
        Method::BatchLocked | Method::BatchUnlocked | Method::PerElement => {
            let t = Instant::now();
            let flows = match method {
                Method::BatchLocked => ledger.raw_flows(ReadMode::Locked)?,
                Method::BatchUnlocked => ledger.raw_flows(ReadMode::Unlocked)?,
                _ => ledger.raw_flows_per_element(ReadMode::Locked)?,
            };
            let took = t.elapsed().as_secs_f64();
            if flows.len() != n {
                return Err(short(method, flows.len(), n as u32));
            }
            return Ok(took);
        }
        Method::ExchangeCut | Method::SwapCut => {
            // Every key non-zero, so the cut takes every key.
            ledger.populate(keys, COUNT)?;
            let t = Instant::now();
            let interval = ledger.cut()?;
            let took = t.elapsed().as_secs_f64();
            (interval.flows.len(), took)
        }
    };
    if got.0 != n {
        return Err(short(method, got.0, n as u32));
    }
    Ok(got.1)
}

fn tags(method: Method, keys: u32, metric: &str) -> Vec<(&'static str, String)> {
    vec![
        ("method", method.tag().to_string()),
        ("strategy", method.strategy().name().to_string()),
        ("keys", keys.to_string()),
        ("metric", metric.to_string()),
    ]
}

/// Every method over `n` live keys, `rounds` rounds taking turns.
fn measure(opts: &Options<'_>, n: u32, rounds: usize) -> Result<Vec<Measurement>> {
    (opts.progress)(&format!(
        "drain: loading lock and swap ledgers of {n} flows"
    ));
    let keys: Vec<nl_flow_key> = (0..n).map(numbered_key).collect();
    let (lock, swap) = load_ledgers(&LedgerConfig {
        max_flows: n,
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
            "drain: {n} keys, round {} of {rounds}: batch, per-element, exchange and swap cuts",
            r + 1
        ));
        let mut this = [None; 5];
        for (i, m) in Method::ALL.into_iter().enumerate() {
            if m == Method::PerElement && r >= per_element_rounds {
                continue;
            }
            let ledger = if m == Method::SwapCut { &swap } else { &lock };
            let s = pass(m, ledger, &keys)?;
            secs[i].push(s);
            this[i] = Some(s);
        }
        if let (Some(b), Some(p)) = (this[0], this[2]) {
            ratios.push(p / b);
        }
    }
    drop(lock);
    drop(swap);

    let mut out = Vec::new();
    let base_s = median(&secs[0]);
    let base_name = |what: &str| format!("{}, {n} keys, {what}", Method::BatchLocked.name());
    for (i, m) in Method::ALL.into_iter().enumerate() {
        let s = &secs[i];
        let rate: Vec<f64> = s.iter().map(|t| f64::from(n) / t).collect();
        let ms: Vec<f64> = s.iter().map(|t| t * 1e3).collect();
        let is_base = m == Method::BatchLocked;
        let mut ms_tags = tags(m, n, "time");
        if n == 1_000_000 && matches!(m, Method::ExchangeCut | Method::SwapCut) {
            ms_tags.push(("target", "full_cut_1m".to_string()));
        }
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
    out.push(Measurement {
        section: SECTION,
        name: format!(
            "per-element time / batch locked time, {n} keys (batch speed-up, per-round ratios)"
        ),
        tags: ratio_tags,
        value: median(&ratios),
        unit: "x",
        ratio: None,
        baseline: None,
        samples: ratios,
    });
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
