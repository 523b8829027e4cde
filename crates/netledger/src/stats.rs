//! Reading the per-CPU conservation counters (`struct nl_stats`).
//!
//! The `lock` data path bumps `started`, adds to `seen` and the frame's bucket, then
//! bumps `done` (compiler barriers between; XDP and tc run with preemption
//! off, so one CPU's value has one writer at a time). The syscall copies
//! each CPU's value forward in 8-byte words, so a copy reads `done` first and
//! `started` last: a copy with `done == started` holds no half-accounted
//! packet. This relies on x86's ordering of plain loads and stores.

use libbpf_rs::MapHandle;

use crate::error::{map_err, Error, Result};
use crate::maps::TypedMap;
use crate::record::{Buckets, Count};
use crate::skel::types::{nl_stats, NR_BUCKETS};

/// Reads after which a CPU that never showed a settled copy is an error.
/// Each CPU settles between any two of its packets, so this bounds a
/// misbehaving kernel, not load.
const TRIES: u32 = 1_000_000;

/// The buckets summed over CPUs, each CPU's from a copy that holds no
/// half-accounted packet.
///
/// Each CPU's settled copy is taken as it comes, across reads: the identity
/// `seen == sum of the parts` holds for every settled copy on its own, so it
/// holds for their sum, and every copy is taken after the call began (so it
/// includes every packet an earlier flow read saw). Waiting instead for all
/// CPUs to be settled in one read would fail under load, the more so the
/// more CPUs there are.
pub(crate) fn read_settled(stats: &MapHandle, map: &'static str) -> Result<Buckets> {
    let mut settled: Vec<Option<nl_stats>> = Vec::new();
    let mut tries = 0u32;
    loop {
        let per_cpu: Vec<nl_stats> = stats
            .get_percpu(&0)
            .map_err(map_err("lookup", map))?
            .unwrap_or_default();
        settled.resize(per_cpu.len(), None);
        for (slot, copy) in settled.iter_mut().zip(&per_cpu) {
            if slot.is_none() && copy.done == copy.started {
                *slot = Some(*copy);
            }
        }
        if let Some(cpu) = settled.iter().position(Option::is_none) {
            tries += 1;
            if tries >= TRIES {
                return Err(Error::StatsUnsettled { cpu, tries });
            }
            std::hint::spin_loop();
            continue;
        }
        let all: Vec<nl_stats> = settled.into_iter().flatten().collect();
        return Ok(sum(&all));
    }
}

/// One reading, summed over CPUs without waiting for settled copies: for
/// buckets kept without the sequence window (strategy swap, whose live
/// buckets only tests and the benchmark read).
pub(crate) fn read_once(stats: &MapHandle, map: &'static str) -> Result<Buckets> {
    let per_cpu: Vec<nl_stats> = stats
        .get_percpu(&0)
        .map_err(map_err("lookup", map))?
        .unwrap_or_default();
    Ok(sum(&per_cpu))
}

/// A reading in which no CPU may be mid-update (the map is quiescent): one
/// copy, checked.
pub(crate) fn read_quiescent(stats: &MapHandle, map: &'static str) -> Result<Vec<nl_stats>> {
    let per_cpu: Vec<nl_stats> = stats
        .get_percpu(&0)
        .map_err(map_err("lookup", map))?
        .unwrap_or_default();
    if let Some(cpu) = per_cpu.iter().position(|s| s.done != s.started) {
        return Err(Error::StatsUnsettled { cpu, tries: 1 });
    }
    Ok(per_cpu)
}

/// The buckets of per-CPU values, summed without looking at their sequence
/// counters.
pub(crate) fn sum(per_cpu: &[nl_stats]) -> Buckets {
    let mut counts = [Count::default(); NR_BUCKETS];
    let mut reroutes = 0;
    for s in per_cpu {
        for (i, c) in s.bucket.iter().enumerate() {
            counts[i].add(Count::from(*c));
        }
        reroutes += s.reroutes;
    }
    Buckets::from_counts(counts, reroutes)
}
