//! `netledger bench`: every way of counting measured side by side, in one
//! run, on this machine. Each part returns [`Measurement`]s; the caller
//! ([`report::run`], or an example) prints them, checks the targets and plots.
//!
//! Timings on shared machines are noisy: every figure is a median over
//! `opts.rounds` rounds, and ratios are taken between figures measured in
//! the same run, interleaved round by round where possible.

use anyhow::Result;
use netledger::lab::types::{nl_flow_key, nl_key_flags};
use netledger::{Ledger, LedgerConfig, Strategy};
use serde::Serialize;

mod cuts;
mod datapath;
mod drain;
mod exactness;
mod programs;
mod real;
pub mod report;
mod timing;

/// One figure.
#[derive(Debug, Clone, Serialize)]
pub struct Measurement {
    /// The part of the benchmark: "datapath", "reader", "exactness", "drain", "real".
    pub section: &'static str,
    /// What was measured, e.g. "swap, 1 writer, 1 key".
    pub name: String,
    /// Stable identifiers for lookups (targets, plots): e.g.
    /// [("program","swap"),("writers","1"),("keys","1"),("same_key","true")].
    pub tags: Vec<(&'static str, String)>,
    /// The median.
    pub value: f64,
    /// "ns/packet", "torn/M reads", "lost/M packets", "entries/s", "ms", "frames/s", "x".
    pub unit: &'static str,
    /// value / baseline's value, when there is a baseline.
    pub ratio: Option<f64>,
    /// The baseline's name.
    pub baseline: Option<String>,
    /// Every sample the median was taken from.
    pub samples: Vec<f64>,
}

impl Measurement {
    /// A measurement whose value is the median of `samples`, with no
    /// baseline.
    pub fn of(
        section: &'static str,
        name: String,
        tags: Vec<(&'static str, String)>,
        unit: &'static str,
        samples: Vec<f64>,
    ) -> Measurement {
        Measurement {
            section,
            name,
            tags,
            value: median(&samples),
            unit,
            ratio: None,
            baseline: None,
            samples,
        }
    }

    /// The value of tag `key`, if the measurement has it.
    pub fn tag(&self, key: &str) -> Option<&str> {
        self.tags
            .iter()
            .find(|(k, _)| *k == key)
            .map(|(_, v)| v.as_str())
    }
}

/// How big and how long.
pub struct Options<'a> {
    /// Tiny sizes and few rounds: for tests, so the harness cannot rot.
    pub quick: bool,
    /// Rounds per figure (the median is over these).
    pub rounds: usize,
    /// Told what is being measured now (long steps).
    pub progress: &'a (dyn Fn(&str) + Sync),
}

impl Options<'_> {
    /// Pick the quick or the full size.
    pub fn size<T>(&self, quick: T, full: T) -> T {
        if self.quick {
            quick
        } else {
            full
        }
    }
}

/// The median of samples (NaN for none).
pub fn median(samples: &[f64]) -> f64 {
    if samples.is_empty() {
        return f64::NAN;
    }
    let mut v = samples.to_vec();
    v.sort_by(|a, b| a.partial_cmp(b).unwrap_or(std::cmp::Ordering::Equal));
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

/// A `lock` and a `swap` ledger, each otherwise configured by `cfg`: the
/// two strategies side by side.
pub fn load_ledgers(cfg: &LedgerConfig) -> Result<(Ledger, Ledger)> {
    let lock = Ledger::load(LedgerConfig {
        strategy: Strategy::Lock,
        ..cfg.clone()
    })?;
    let swap = Ledger::load(LedgerConfig {
        strategy: Strategy::Swap,
        ..cfg.clone()
    })?;
    Ok((lock, swap))
}

/// The `i`-th of up to 2^32 distinct five-tuple keys (10.x.y.z:port ->
/// 10.255.0.1:9000, UDP), as the data path would build them.
pub fn numbered_key(i: u32) -> nl_flow_key {
    let mut k = nl_flow_key {
        family: 4,
        proto: 17,
        flags: nl_key_flags::NL_KEY_F_PORTS.0 as u8,
        sport: (i & 0xffff) as u16,
        dport: 9000,
        ..Default::default()
    };
    k.src[..4].copy_from_slice(&(0x0a00_0000 | (i >> 16)).to_be_bytes());
    k.dst[..4].copy_from_slice(&[10, 255, 0, 1]);
    k
}

/// 1. Data-path cost, ns/packet through test_run: empty program (baseline),
///    the classic locked hash, plain `+=`, two atomic adds, per-CPU hash,
///    `lock`, `swap`, both as they were before, and the bare counters; 1
///    writer and one per CPU; same and distinct keys; 1 to 1M keys in the map.
pub fn datapath(opts: &Options<'_>) -> Result<Vec<Measurement>> {
    datapath::run(opts)
}

/// Where the data paths' nanoseconds go: models of both with one part
/// taken away at a time, next to the strategies and their references.
pub fn breakdown(opts: &Options<'_>) -> Result<Vec<Measurement>> {
    datapath::breakdown(opts)
}

/// 4. Data-path slowdown while locked snapshots run on the other CPU every
///    second, every 100 ms and back to back (10K and 100K keys), next to
///    the same reads without the locks.
pub fn reader_slowdown(opts: &Options<'_>) -> Result<Vec<Measurement>> {
    datapath::reader_slowdown(opts)
}

/// 2. Read-side exactness of each strategy: torn pairs per million reads,
///    lost packets per million under continuous resets/cuts.
pub fn exactness(opts: &Options<'_>) -> Result<Vec<Measurement>> {
    exactness::run(opts)
}

/// 3. Live snapshots of strategy `lock` for 1K, 100K and 1M live keys:
///    locked (the exchange in peek mode), unlocked, one lookup per key.
pub fn drain(opts: &Options<'_>) -> Result<Vec<Measurement>> {
    drain::run(opts)
}

/// 6. The service's cuts against the number of keys (1K to 1M), both
///    strategies: take, store commit, finish; CPU time per interval.
pub fn cuts(opts: &Options<'_>) -> Result<Vec<Measurement>> {
    cuts::run(opts)
}

/// 5. Real frames per second through a veth pair: no program, empty and
///    counting programs at XDP and at tc (tcx), and pmacctd (libpcap).
pub fn real_packets(opts: &Options<'_>) -> Result<Vec<Measurement>> {
    real::run(opts)
}
