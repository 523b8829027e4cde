//! The reference programs of `bench.bpf.c` the data-path measurements
//! compare with, loaded with their maps sized; and prepopulating the maps
//! they and the real strategies count in.

use std::os::fd::AsFd;

use anyhow::{Context, Result};
use libbpf_rs::{MapCore, MapFlags, MapHandle};
use netledger::lab::types::{nl_count, nl_flow_key};
use netledger::lab::{bytes_of, update_batch_percpu};
use netledger::{Count, Ledger, LedgerConfig};

use crate::object::{BenchObject, Programs};

/// Keys per batch update.
const BATCH: usize = 16384;

/// The reference programs and the flow maps they count in.
#[derive(Debug)]
pub(super) struct BenchPrograms {
    pub progs: Programs,
    /// The shared hash of `nl_plain` and `nl_atomic`.
    hash: MapHandle,
    /// The per-CPU hash of `nl_percpu`.
    pcpu: MapHandle,
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
        let obj = BenchObject::load(&cfg, Some(max_flows))?;
        Ok(BenchPrograms {
            progs: obj.progs,
            hash: obj.maps.bench_hash,
            pcpu: obj.maps.bench_pcpu,
            ncpus: libbpf_rs::num_possible_cpus().context("counting the possible CPUs")?,
        })
    }

    /// Insert `keys` with zero counts into both flow maps.
    pub fn populate(&self, keys: &[nl_flow_key]) -> Result<()> {
        for chunk in keys.chunks(BATCH) {
            let k: Vec<u8> = chunk.iter().flat_map(|k| bytes_of(k).to_vec()).collect();
            let zeros = vec![0u8; std::mem::size_of::<nl_count>() * chunk.len()];
            self.hash
                .update_batch(&k, &zeros, chunk.len() as u32, MapFlags::ANY, MapFlags::ANY)
                .context("batch update of nl_bench_hash")?;
        }
        let zeros = vec![nl_count::default(); keys.len() * self.ncpus];
        update_batch_percpu(self.pcpu.as_fd(), keys, &zeros, self.ncpus)
            .context("batch update of nl_bench_pcpu")
    }
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
    swap.populate(keys, Count::default())?;
    Ok(())
}
