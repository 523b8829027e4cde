//! Part 6, what the service's cuts cost: the two-phase cut (take, then
//! finish) of each strategy against the number of keys with traffic, the
//! history store's commit of the same intervals, and the daemon's CPU per
//! interval.
//!
//! For each number of keys N (1K, 10K, 100K, 1M; 1K in quick mode) and
//! each strategy, a ledger of N rounded up to a power of two flows (the
//! `lock` exchange walks every slot, so the size matters) gets every key a
//! count from userspace (one test run per key would wait a grace period
//! each), then the service's loop runs as `netledger run` runs it:
//! [`Ledger::take_cut`], [`Store::commit`] of its interval into a SQLite
//! store on disk, [`Ledger::finish_cut`]. Each phase is timed, and the
//! process's CPU time (user + system, every thread: a `swap` clear of many
//! keys makes the next fresh flow map in a thread of its own) is read with
//! getrusage around the three and after a pause that lets that thread end.
//! The populating is outside both. Rounds: 5 (3 at 1M keys).

use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use netledger::lab::types::nl_flow_key;
use netledger::{Count, Direction, Ledger, LedgerConfig, Strategy};
use netledger_sinks::store::{Access, LedgerInfo, Store};

use super::{numbered_key, Measurement, Options};

const SECTION: &str = "cuts";

/// Keys with traffic measured (quick mode: the first only).
const SIZES: [u32; 4] = [1_000, 10_000, 100_000, 1_000_000];

/// At this many keys a round takes seconds: at most `SLOW_ROUNDS` rounds.
const SLOW_KEYS: u32 = 1_000_000;
const SLOW_ROUNDS: usize = 3;

/// What every key holds at a cut.
const COUNT: Count = Count {
    packets: 10,
    bytes: 6400,
};

/// User + system CPU time of the whole process so far.
fn cpu_time() -> Duration {
    // SAFETY: getrusage fills the struct it is given.
    let ru = unsafe {
        let mut ru: libc::rusage = std::mem::zeroed();
        libc::getrusage(libc::RUSAGE_SELF, &mut ru);
        ru
    };
    let tv = |t: libc::timeval| Duration::new(t.tv_sec as u64, t.tv_usec as u32 * 1000);
    tv(ru.ru_utime) + tv(ru.ru_stime)
}

/// One interval of the service's loop.
#[derive(Debug, Default, Clone, Copy)]
struct Phases {
    take: f64,
    commit: f64,
    finish: f64,
    cpu: f64,
    rows: usize,
}

/// Populate, then take, commit and finish one cut; times in ms.
fn interval(
    ledger: &Ledger,
    store: &mut Store,
    id: netledger_sinks::store::LedgerId,
    keys: &[nl_flow_key],
    pause: Duration,
) -> Result<Phases> {
    ledger.populate(keys, COUNT)?;
    let cpu0 = cpu_time();
    let t = Instant::now();
    let cut = ledger.take_cut()?;
    let take = t.elapsed();
    let t = Instant::now();
    store
        .commit(id, &cut.interval)
        .context("committing the cut")?;
    let commit = t.elapsed();
    let t = Instant::now();
    ledger.finish_cut(&cut)?;
    let finish = t.elapsed();
    // Work a finish leaves to a thread of its own (swap: the next fresh flow map).
    std::thread::sleep(pause);
    let cpu = cpu_time() - cpu0;
    if cut.interval.flows.len() != keys.len() {
        anyhow::bail!(
            "the cut took {} flows, expected {}",
            cut.interval.flows.len(),
            keys.len()
        );
    }
    let ms = |d: Duration| d.as_secs_f64() * 1e3;
    Ok(Phases {
        take: ms(take),
        commit: ms(commit),
        finish: ms(finish),
        cpu: ms(cpu),
        rows: cut.interval.flows.len(),
    })
}

pub(super) fn run(opts: &Options<'_>) -> Result<Vec<Measurement>> {
    let sizes: &[u32] = if opts.quick { &SIZES[..1] } else { &SIZES };
    let dir = std::env::var_os("NETLEDGER_BENCH_STORE_DIR")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(std::env::temp_dir)
        .join(format!("nlbench-store-{}", std::process::id()));
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let result = measure_all(opts, sizes, &dir);
    let _ = std::fs::remove_dir_all(&dir);
    result
}

fn measure_all(
    opts: &Options<'_>,
    sizes: &[u32],
    dir: &std::path::Path,
) -> Result<Vec<Measurement>> {
    let mut out = Vec::new();
    for &n in sizes {
        let keys: Vec<nl_flow_key> = (0..n).map(numbered_key).collect();
        let max_flows = n.next_power_of_two().max(1024);
        let rounds = if n >= SLOW_KEYS {
            opts.rounds.clamp(1, SLOW_ROUNDS)
        } else {
            opts.rounds.max(1)
        };
        // A pause long enough for a fresh flow map of max_flows to be made.
        let pause = Duration::from_millis(u64::from(max_flows / 1000).clamp(50, 2000));
        for strategy in [Strategy::Lock, Strategy::Swap] {
            (opts.progress)(&format!(
                "cuts: {strategy}, {n} keys ({max_flows} flows), {rounds} rounds of populate, take, commit, finish"
            ));
            let cfg = LedgerConfig {
                strategy,
                max_flows,
                ..LedgerConfig::default()
            };
            let ledger = Ledger::load(cfg.clone())?;
            let path = dir.join(format!("{strategy}-{n}.db"));
            let mut store = Store::open(&path, Access::ReadWrite)
                .with_context(|| format!("opening the store {}", path.display()))?;
            let id = store.ledger(&LedgerInfo::new("bench", "", Direction::In, &cfg))?;
            // One interval first, unmeasured: the store's tables and the
            // ledger's spare map are then as they are in a running service.
            interval(&ledger, &mut store, id, &keys, pause)?;
            let mut phases = Vec::new();
            for _ in 0..rounds {
                phases.push(interval(&ledger, &mut store, id, &keys, pause)?);
            }
            drop(ledger);
            drop(store);
            let _ = std::fs::remove_file(&path);
            out.extend(figures(strategy, n, max_flows, &phases));
        }
    }
    Ok(out)
}

fn figures(strategy: Strategy, n: u32, max_flows: u32, phases: &[Phases]) -> Vec<Measurement> {
    let tags = |figure: &str| {
        vec![
            ("strategy", strategy.to_string()),
            ("keys", n.to_string()),
            ("max_flows", max_flows.to_string()),
            ("figure", figure.to_string()),
        ]
    };
    let col = |f: fn(&Phases) -> f64| phases.iter().map(f).collect::<Vec<f64>>();
    let what = format!("{strategy}, {n} keys with traffic ({max_flows} flows)");
    let mut out = Vec::new();
    let mut push = |figure: &str, name: String, unit: &'static str, samples: Vec<f64>| {
        out.push(Measurement::of(SECTION, name, tags(figure), unit, samples));
    };
    push(
        "take",
        format!("{what}: take (phase one)"),
        "ms",
        col(|p| p.take),
    );
    push(
        "finish",
        format!("{what}: finish (phase two)"),
        "ms",
        col(|p| p.finish),
    );
    push(
        "cut",
        format!("{what}: full cut, kernel side (take + finish)"),
        "ms",
        col(|p| p.take + p.finish),
    );
    push(
        "commit",
        format!("{what}: store commit of the interval (SQLite)"),
        "ms",
        col(|p| p.commit),
    );
    push(
        "commit_rate",
        format!("{what}: store commit rate"),
        "rows/s",
        phases
            .iter()
            .map(|p| p.rows as f64 / (p.commit / 1e3).max(1e-9))
            .collect(),
    );
    push(
        "interval",
        format!("{what}: take + commit + finish (one interval of the service)"),
        "ms",
        col(|p| p.take + p.commit + p.finish),
    );
    push(
        "cpu",
        format!("{what}: CPU time of one interval (user + system, every thread)"),
        "ms",
        col(|p| p.cpu),
    );
    out
}
