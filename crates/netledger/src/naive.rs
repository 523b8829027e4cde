//! The classic design, kept only as a baseline: one locked value per key in a
//! plain hash map (`nl_naive` in `bench.bpf.c`), reset from userspace.
//!
//! Both ways of resetting it from userspace lose increments while programs
//! write (KERNEL-NOTES.md, "Why read then reset loses counts"); the
//! conservation harness measures how many.

use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};

use crate::config::LedgerConfig;
use crate::error::Result;
use crate::key::FlowKey;
use crate::ledger::{load_object, map_err, test_run, TestRun};
use crate::snapshot::Count;
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

/// libbpf returns `-errno`.
fn check(ret: i32) -> io::Result<()> {
    if ret < 0 {
        Err(io::Error::from_raw_os_error(-ret))
    } else {
        Ok(())
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
        let fd = self.flows.as_raw_fd();
        let mut keys = Vec::new();
        let mut cur: Option<nl_flow_key> = None;
        loop {
            let mut next = nl_flow_key::default();
            let prev = cur
                .as_ref()
                .map_or(std::ptr::null(), |k| (k as *const nl_flow_key).cast());
            // SAFETY: both pointers are to nl_flow_key, the map's key type.
            let ret = unsafe {
                libbpf_sys::bpf_map_get_next_key(fd, prev, (&mut next as *mut nl_flow_key).cast())
            };
            match check(ret) {
                Ok(()) => {}
                Err(e) if e.raw_os_error() == Some(libc::ENOENT) => return Ok(keys),
                Err(e) => return Err(map_err("next key", "nl_naive_flows")(e)),
            }
            keys.push(next);
            cur = Some(next);
        }
    }

    /// One key's counts, copied under its lock (BPF_F_LOCK); None if absent.
    pub fn lookup(&self, key: &nl_flow_key) -> Result<Option<Count>> {
        let mut v = nl_naive_value::default();
        // SAFETY: key and value have the map's key and value types.
        let ret = unsafe {
            libbpf_sys::bpf_map_lookup_elem_flags(
                self.flows.as_raw_fd(),
                (key as *const nl_flow_key).cast(),
                (&mut v as *mut nl_naive_value).cast(),
                lock_flag(),
            )
        };
        match check(ret) {
            Ok(()) => Ok(Some(Count {
                packets: v.packets,
                bytes: v.bytes,
            })),
            Err(e) if e.raw_os_error() == Some(libc::ENOENT) => Ok(None),
            Err(e) => Err(map_err("lookup", "nl_naive_flows")(e)),
        }
    }

    /// Set one existing key's counters to zero under its lock
    /// (BPF_F_LOCK | BPF_EXIST). Returns false if the key is gone.
    fn zero(&self, key: &nl_flow_key) -> Result<bool> {
        let v = nl_naive_value::default();
        // SAFETY: as in lookup.
        let ret = unsafe {
            libbpf_sys::bpf_map_update_elem(
                self.flows.as_raw_fd(),
                (key as *const nl_flow_key).cast(),
                (&v as *const nl_naive_value).cast(),
                lock_flag() | u64::from(libbpf_sys::BPF_EXIST),
            )
        };
        match check(ret) {
            Ok(()) => Ok(true),
            Err(e) if e.raw_os_error() == Some(libc::ENOENT) => Ok(false),
            Err(e) => Err(map_err("update", "nl_naive_flows")(e)),
        }
    }

    /// Copy one key's counters and delete it (BPF_MAP_LOOKUP_AND_DELETE_ELEM
    /// with BPF_F_LOCK); None if the key is gone.
    fn take(&self, key: &nl_flow_key) -> Result<Option<Count>> {
        let mut v = nl_naive_value::default();
        // SAFETY: as in lookup.
        let ret = unsafe {
            libbpf_sys::bpf_map_lookup_and_delete_elem_flags(
                self.flows.as_raw_fd(),
                (key as *const nl_flow_key).cast(),
                (&mut v as *mut nl_naive_value).cast(),
                lock_flag(),
            )
        };
        match check(ret) {
            Ok(()) => Ok(Some(Count {
                packets: v.packets,
                bytes: v.bytes,
            })),
            Err(e) if e.raw_os_error() == Some(libc::ENOENT) => Ok(None),
            Err(e) => Err(map_err("lookup and delete", "nl_naive_flows")(e)),
        }
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
        let ncpus =
            crate::sys::possible_cpus().map_err(map_err("count CPUs", "nl_naive_missed"))?;
        let mut buf = vec![0u64; ncpus];
        let key = 0u32;
        // SAFETY: a per-CPU array of u64: one 8-byte value per possible CPU.
        let ret = unsafe {
            libbpf_sys::bpf_map_lookup_elem(
                self.missed.as_raw_fd(),
                (&key as *const u32).cast(),
                buf.as_mut_ptr().cast(),
            )
        };
        check(ret).map_err(map_err("lookup", "nl_naive_missed"))?;
        Ok(buf.iter().sum())
    }
}
