//! The classic design, kept only as a baseline: one locked value per key in a
//! plain hash map (`nl_naive` in `bench.bpf.c`), reset from userspace.
//!
//! Both ways of resetting it from userspace lose increments while programs
//! write: a lookup then a zeroing update loses whatever is added between the
//! two syscalls, and a lookup-and-delete loses what a program that already
//! holds the element adds after the copy (see [`NaiveReset`]). The
//! conservation harness measures how many.

use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};

use anyhow::{Context, Result};
use libbpf_rs::{MapCore, MapFlags, MapHandle};
use netledger::lab::types::nl_flow_key;
use netledger::lab::{bytes_of, decode_key, from_bytes, TestRun};
use netledger::{Count, FlowKey, LedgerConfig};

use crate::object::BenchObject;
use crate::skel::types::nl_naive_value;

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
    flows: MapHandle,
    missed: MapHandle,
    cfg: LedgerConfig,
    /// The reset [`crate::harness::Target::cut`] uses.
    pub method: NaiveReset,
}

fn count(v: nl_naive_value) -> Count {
    Count {
        packets: v.packets,
        bytes: v.bytes,
    }
}

impl NaiveLedger {
    /// Load `nl_naive`; cuts use `method`.
    pub fn load(method: NaiveReset) -> Result<NaiveLedger> {
        let cfg = LedgerConfig::default();
        let obj = BenchObject::load(&cfg)?;
        Ok(NaiveLedger {
            prog: obj.progs.naive,
            flows: obj.maps.naive_flows,
            missed: obj.maps.naive_missed,
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
        Ok(netledger::lab::test_run(self.prog.as_fd(), frame, repeat)?)
    }

    /// Every key currently in the map (a `BPF_MAP_GET_NEXT_KEY` walk).
    pub fn keys(&self) -> Vec<nl_flow_key> {
        self.flows.keys().map(|k| from_bytes(&k)).collect()
    }

    /// One key's counts, copied under its lock (BPF_F_LOCK); None if absent.
    pub fn lookup(&self, key: &nl_flow_key) -> Result<Option<Count>> {
        let v = self
            .flows
            .lookup(bytes_of(key), MapFlags::LOCK)
            .context("lookup in nl_naive_flows")?;
        Ok(v.map(|v| count(from_bytes(&v))))
    }

    /// Set one existing key's counters to zero under its lock
    /// (BPF_F_LOCK | BPF_EXIST). Returns false if the key is gone.
    fn zero(&self, key: &nl_flow_key) -> Result<bool> {
        let zeros = nl_naive_value::default();
        match self.flows.update(
            bytes_of(key),
            bytes_of(&zeros),
            MapFlags::LOCK | MapFlags::EXIST,
        ) {
            Ok(()) => Ok(true),
            Err(e) if e.kind() == libbpf_rs::ErrorKind::NotFound => Ok(false),
            Err(e) => Err(e).context("update of nl_naive_flows"),
        }
    }

    /// Copy one key's counters and delete it (BPF_MAP_LOOKUP_AND_DELETE_ELEM
    /// with BPF_F_LOCK, which libbpf-rs does not offer); None if the key is
    /// gone.
    fn take(&self, key: &nl_flow_key) -> Result<Option<Count>> {
        let mut v = nl_naive_value::default();
        // SAFETY: the key and value point at a live nl_flow_key and
        // nl_naive_value, the map's key and value types, for the call.
        let ret = unsafe {
            libbpf_sys::bpf_map_lookup_and_delete_elem_flags(
                self.flows.as_fd().as_raw_fd(),
                (key as *const nl_flow_key).cast(),
                (&mut v as *mut nl_naive_value).cast(),
                u64::from(libbpf_sys::BPF_F_LOCK),
            )
        };
        match ret {
            0 => Ok(Some(count(v))),
            e if -e == libc::ENOENT => Ok(None),
            e => {
                Err(io::Error::from_raw_os_error(-e)).context("lookup and delete in nl_naive_flows")
            }
        }
    }

    /// Take every key's counts out of the map with `method` and return the
    /// non-zero ones (keys decoded under the default configuration).
    pub fn cut_with(&self, method: NaiveReset) -> Result<Vec<(FlowKey, Count)>> {
        let mut out = Vec::new();
        for key in self.keys() {
            let got = match method {
                NaiveReset::LookupThenZero => match self.lookup(&key)? {
                    // Whatever lands between these two syscalls is lost.
                    Some(c) => self.zero(&key)?.then_some(c),
                    None => None,
                },
                NaiveReset::LookupAndDelete => self.take(&key)?,
            };
            if let Some(c) = got.filter(|c| !c.is_zero()) {
                out.push((decode_key(&key, &self.cfg), c));
            }
        }
        Ok(out)
    }

    /// Packets `nl_naive` could not place at all (summed over CPUs): not
    /// parsed, map full, or its key deleted under it between insert and lookup.
    pub fn missed(&self) -> Result<u64> {
        let per_cpu = self
            .missed
            .lookup_percpu(&0u32.to_ne_bytes(), MapFlags::ANY)
            .context("lookup in nl_naive_missed")?
            .unwrap_or_default();
        Ok(per_cpu.iter().map(|v| from_bytes::<u64>(v)).sum())
    }
}
