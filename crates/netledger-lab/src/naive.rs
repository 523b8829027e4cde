//! The classic design, kept only as a baseline: one locked value per key in a
//! plain hash map (`nl_naive` in `bench.bpf.c`), reset from userspace.
//!
//! Both ways of resetting it from userspace lose increments while programs
//! write (KERNEL-NOTES.md, "Why read then reset loses counts"); the
//! conservation harness measures how many.

use std::os::fd::{AsFd, BorrowedFd, OwnedFd};

use crate::config::LedgerConfig;
use crate::error::Result;
use crate::key::FlowKey;
use crate::ledger::{load_object, map_err, test_run, TestRun};
use crate::snapshot::Count;
use crate::sys;
use crate::types::nl_flow_key;

mod skel {
    #![allow(clippy::all, unused_imports, dead_code, non_camel_case_types)]
    include!(concat!(env!("OUT_DIR"), "/bench.skel.rs"));
}
use skel::types::nl_naive_value;

const _: () = assert!(std::mem::size_of::<nl_naive_value>() == 24);

/// How a naive cut takes the counts out of the map, key by key (keys found
/// with a `BPF_MAP_GET_NEXT_KEY` walk).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NaiveReset {
    /// `BPF_MAP_LOOKUP_ELEM` with `BPF_F_LOCK`, then `BPF_MAP_UPDATE_ELEM`
    /// of zeros with `BPF_F_LOCK | BPF_EXIST`: everything added between the
    /// two syscalls is lost.
    LookupThenZero,
    /// `BPF_MAP_LOOKUP_AND_DELETE_ELEM` with `BPF_F_LOCK`: a program that
    /// already holds the element adds to it after the copy, and the element
    /// is unlinked (and, preallocated, reused) with that increment in it.
    LookupAndDelete,
}

impl NaiveReset {
    pub const ALL: [NaiveReset; 2] = [NaiveReset::LookupThenZero, NaiveReset::LookupAndDelete];

    pub fn name(self) -> &'static str {
        match self {
            NaiveReset::LookupThenZero => "lookup-then-zero",
            NaiveReset::LookupAndDelete => "lookup-and-delete",
        }
    }
}

/// The naive baseline, loaded: `nl_naive` and its hash map, with the default
/// configuration (five-tuple keys, whole addresses).
#[derive(Debug)]
pub struct NaiveLedger {
    prog: OwnedFd,
    flows: OwnedFd,
    missed: OwnedFd,
    cfg: LedgerConfig,
    /// The reset [`crate::harness::Target::cut`] uses.
    pub method: NaiveReset,
}

// SAFETY: three u64s (the lock word and padding included); every bit pattern is a value.
unsafe impl sys::Pod for nl_naive_value {}

fn count(v: nl_naive_value) -> Count {
    Count {
        packets: v.packets,
        bytes: v.bytes,
    }
}

fn lock_flag() -> u64 {
    u64::from(libbpf_sys::BPF_F_LOCK)
}

impl NaiveLedger {
    /// Load `nl_naive`; cuts use `method`.
    pub fn load(method: NaiveReset) -> Result<NaiveLedger> {
        let cfg = LedgerConfig::default();
        let mut fds = load_object(
            crate::objects::BENCH,
            &cfg,
            &[],
            &["nl_naive"],
            &["nl_naive_flows", "nl_naive_missed"],
        )?;
        let mut take = |name: &str| {
            fds.remove(name)
                .unwrap_or_else(|| panic!("bench object has {name}"))
        };
        Ok(NaiveLedger {
            prog: take("nl_naive"),
            flows: take("nl_naive_flows"),
            missed: take("nl_naive_missed"),
            cfg,
            method,
        })
    }

    pub fn config(&self) -> &LedgerConfig {
        &self.cfg
    }

    /// The XDP program.
    pub fn program(&self) -> BorrowedFd<'_> {
        self.prog.as_fd()
    }

    /// Run `nl_naive` on `frame` `repeat` times (BPF_PROG_TEST_RUN).
    pub fn test_run(&self, frame: &[u8], repeat: u32) -> Result<TestRun> {
        test_run(self.prog.as_fd(), frame, repeat)
    }

    /// Every key currently in the map (a `BPF_MAP_GET_NEXT_KEY` walk).
    pub fn keys(&self) -> Result<Vec<nl_flow_key>> {
        sys::all_keys(self.flows.as_fd()).map_err(map_err("next key", "nl_naive_flows"))
    }

    /// One key's counts, copied under its lock (BPF_F_LOCK); None if absent.
    pub fn lookup(&self, key: &nl_flow_key) -> Result<Option<Count>> {
        let v: Option<nl_naive_value> = sys::lookup_elem(self.flows.as_fd(), key, lock_flag())
            .map_err(map_err("lookup", "nl_naive_flows"))?;
        Ok(v.map(count))
    }

    /// Set one existing key's counters to zero under its lock
    /// (BPF_F_LOCK | BPF_EXIST). Returns false if the key is gone.
    fn zero(&self, key: &nl_flow_key) -> Result<bool> {
        let flags = lock_flag() | u64::from(libbpf_sys::BPF_EXIST);
        match sys::update_elem(self.flows.as_fd(), key, &nl_naive_value::default(), flags) {
            Ok(()) => Ok(true),
            Err(e) if e.raw_os_error() == Some(libc::ENOENT) => Ok(false),
            Err(e) => Err(map_err("update", "nl_naive_flows")(e)),
        }
    }

    /// Copy one key's counters and delete it (BPF_MAP_LOOKUP_AND_DELETE_ELEM
    /// with BPF_F_LOCK); None if the key is gone.
    fn take(&self, key: &nl_flow_key) -> Result<Option<Count>> {
        let v: Option<nl_naive_value> =
            sys::lookup_and_delete_elem(self.flows.as_fd(), key, lock_flag())
                .map_err(map_err("lookup and delete", "nl_naive_flows"))?;
        Ok(v.map(count))
    }

    /// Take every key's counts out of the map with `method` and return the
    /// non-zero ones (keys decoded under the default configuration).
    pub fn cut_with(&self, method: NaiveReset) -> Result<Vec<(FlowKey, Count)>> {
        let mut out = Vec::new();
        for key in self.keys()? {
            let got = match method {
                NaiveReset::LookupThenZero => match self.lookup(&key)? {
                    // Whatever lands between these two syscalls is lost.
                    Some(c) => self.zero(&key)?.then_some(c),
                    None => None,
                },
                NaiveReset::LookupAndDelete => self.take(&key)?,
            };
            if let Some(c) = got.filter(|c| !c.is_zero()) {
                out.push((FlowKey::from_raw(&key, &self.cfg), c));
            }
        }
        Ok(out)
    }

    /// Packets `nl_naive` could not place at all (summed over CPUs): not
    /// parsed, map full, or its key deleted under it between insert and lookup.
    pub fn missed(&self) -> Result<u64> {
        let ncpus = sys::possible_cpus().map_err(map_err("count CPUs", "nl_naive_missed"))?;
        let per_cpu: Vec<u64> = sys::lookup_percpu(self.missed.as_fd(), 0, ncpus)
            .map_err(map_err("lookup", "nl_naive_missed"))?;
        Ok(per_cpu.iter().sum())
    }
}
