//! The reference programs of `bench.bpf.c` the data-path measurements
//! compare with, loaded with their maps sized; and prepopulating the maps
//! they and the real strategies count in.

use std::collections::HashMap;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};

use crate::config::{LedgerConfig, Strategy};
use crate::error::Result;
use crate::ledger::{load_object, map_err, Ledger};
use crate::snapshot::Count;
use crate::sys;
use crate::types::{nl_flow_key, nl_swap_counter};

/// `struct nl_count` as a value of the bench maps (packets, bytes).
#[repr(C)]
#[derive(Debug, Clone, Copy, Default)]
struct BenchCount {
    packets: u64,
    bytes: u64,
}

// SAFETY: two u64s; every bit pattern is a value.
unsafe impl sys::Pod for BenchCount {}

/// The programs of `bench.bpf.c` loaded here, by name.
pub(super) const PROGRAMS: &[&str] = &[
    "nl_empty",
    "nl_plain",
    "nl_atomic",
    "nl_percpu",
    "nl_bare_lock",
    "nl_bare_percpu",
];

/// The reference programs and the flow maps they count in.
#[derive(Debug)]
pub(super) struct BenchPrograms {
    progs: HashMap<String, OwnedFd>,
    /// The shared hash of `nl_plain` and `nl_atomic`.
    hash: OwnedFd,
    /// The per-CPU hash of `nl_percpu`.
    pcpu: OwnedFd,
    ncpus: usize,
}

impl BenchPrograms {
    /// Load the bench object with flow maps of `max_flows` entries (the
    /// default configuration: five-tuple keys, whole addresses).
    pub fn load(max_flows: u32) -> Result<BenchPrograms> {
        let cfg = LedgerConfig {
            max_flows,
            ..LedgerConfig::default()
        };
        let mut fds = load_object(
            crate::objects::BENCH,
            &cfg,
            &[("nl_bench_hash", max_flows), ("nl_bench_pcpu", max_flows)],
            PROGRAMS,
            &["nl_bench_hash", "nl_bench_pcpu"],
        )?;
        let mut take = |name: &str| {
            fds.remove(name)
                .unwrap_or_else(|| panic!("bench object has {name}"))
        };
        let hash = take("nl_bench_hash");
        let pcpu = take("nl_bench_pcpu");
        let progs = PROGRAMS.iter().map(|&p| (p.to_string(), take(p))).collect();
        Ok(BenchPrograms {
            progs,
            hash,
            pcpu,
            ncpus: sys::possible_cpus().map_err(map_err("count CPUs", "nl_bench_pcpu"))?,
        })
    }

    /// One of [`PROGRAMS`].
    pub fn prog(&self, name: &str) -> BorrowedFd<'_> {
        self.progs
            .get(name)
            .unwrap_or_else(|| panic!("no bench program {name}"))
            .as_fd()
    }

    /// Insert `keys` with zero counts into both flow maps.
    pub fn populate(&self, keys: &[nl_flow_key]) -> Result<()> {
        let zeros = vec![BenchCount::default(); keys.len()];
        sys::update_batch(self.hash.as_fd(), keys, &zeros, 0)
            .map_err(map_err("batch update", "nl_bench_hash"))?;
        let zeros = vec![BenchCount::default(); keys.len() * self.ncpus];
        sys::update_batch_percpu(self.pcpu.as_fd(), keys, &zeros, self.ncpus)
            .map_err(map_err("batch update", "nl_bench_pcpu"))?;
        Ok(())
    }
}

/// Insert `keys` with zero counts into the flow map of a ledger's live
/// generation (strategy `swap`; `lock` ledgers have [`Ledger::populate`]).
///
/// The swap backend keeps its map descriptors to itself, so they are found
/// through the program: its maps by id, the live generation in `nl_gen`,
/// and the generation's inner flow map in `nl_swap_flows`.
pub(super) fn populate_swap(ledger: &Ledger, keys: &[nl_flow_key]) -> Result<()> {
    assert_eq!(ledger.config().strategy, Strategy::Swap);
    let ids = sys::prog_map_ids(ledger.program()).map_err(map_err("prog info", "nl_xdp"))?;
    let (mut gen, mut outer) = (None, None);
    for id in ids {
        let fd = sys::map_fd_by_id(id).map_err(map_err("get fd by id", "swap maps"))?;
        let (_, _, _, _, name) = sys::map_info(fd.as_fd()).map_err(map_err("info", "swap maps"))?;
        match name.as_str() {
            "nl_gen" => gen = Some(fd),
            "nl_swap_flows" => outer = Some(fd),
            _ => {}
        }
    }
    let missing =
        |what: &'static str| map_err("find", what)(std::io::Error::from_raw_os_error(libc::ENOENT));
    let gen = gen.ok_or_else(|| missing("nl_gen"))?;
    let outer = outer.ok_or_else(|| missing("nl_swap_flows"))?;
    let live: u32 = sys::lookup_first(gen.as_fd()).map_err(map_err("lookup", "nl_gen"))?;
    // From the syscall, a map-in-map slot reads as the inner map's id.
    let inner_id: u32 = sys::lookup_elem(outer.as_fd(), &(live & 1), 0)
        .map_err(map_err("lookup", "nl_swap_flows"))?
        .ok_or_else(|| missing("nl_swap_flows slot"))?;
    let inner = sys::map_fd_by_id(inner_id).map_err(map_err("get fd by id", "nl_flows"))?;
    let ncpus = sys::possible_cpus().map_err(map_err("count CPUs", "nl_flows"))?;
    let zeros = vec![nl_swap_counter::default(); keys.len() * ncpus];
    sys::update_batch_percpu(inner.as_fd(), keys, &zeros, ncpus)
        .map_err(map_err("batch update", "nl_flows"))
}

/// Prepopulate `keys` (zero counts) in every map the programs measured count in.
pub(super) fn populate_all(
    bench: &BenchPrograms,
    lock: &Ledger,
    swap: &Ledger,
    keys: &[nl_flow_key],
) -> Result<()> {
    bench.populate(keys)?;
    lock.populate(keys, Count::default())?;
    populate_swap(swap, keys)
}
