//! The lab's own BPF object, `bench.bpf.c`, loaded through its skeleton.
//!
//! Every program and map the lab uses is kept as an owned descriptor (a
//! program fd, a `MapHandle`), so the skeleton and its object can go once
//! loaded. Each load verifies the whole object.

use std::mem::{size_of, MaybeUninit};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};

use anyhow::{Context, Result};
use libbpf_rs::skel::{OpenSkel, SkelBuilder};
use libbpf_rs::{MapHandle, OpenObject};
use netledger::lab::{bytes_of, from_bytes, Pod, TestRun};
use netledger::LedgerConfig;

use crate::skel::{types, BenchSkelBuilder, OpenBenchSkel};

// The object's `struct nl_config` comes from the same header as the
// library's: the same C struct, generated as two Rust types.
const _: () =
    assert!(size_of::<types::nl_config>() == size_of::<netledger::lab::types::nl_config>());
const _: () = assert!(size_of::<types::nl_naive_value>() == 24);

// The types below are `repr(C)` structs of integers and `repr(transparent)`
// integer newtypes whose padding is explicit (`__pad_*` fields): every bit
// pattern is a valid value.
// SAFETY: as said above.
unsafe impl Pod for types::nl_config {}
// SAFETY: as above (a spin lock word, its padding, two counters).
unsafe impl Pod for types::nl_naive_value {}

/// `bench.bpf.c` opened (after the kernel's preflight checks) with `cfg`'s
/// key configuration in its `nl_cfg`, for the caller to size maps and load.
pub(crate) fn open<'o>(
    storage: &'o mut MaybeUninit<OpenObject>,
    cfg: &LedgerConfig,
) -> Result<OpenBenchSkel<'o>> {
    netledger::preflight()?;
    let mut open = BenchSkelBuilder::default()
        .open(storage)
        .context("opening bench.bpf.o")?;
    let rodata = open
        .maps
        .rodata_data
        .as_deref_mut()
        .expect("bench.bpf.o has a .rodata section");
    rodata.nl_cfg = from_bytes(bytes_of(&cfg.to_raw()));
    Ok(open)
}

/// The programs of `bench.bpf.c`.
#[derive(Debug)]
pub(crate) struct Programs {
    /// `return XDP_PASS`: the baseline.
    pub empty: OwnedFd,
    /// The classic locked hash (`nl_naive_flows`).
    pub naive: OwnedFd,
}

/// The maps of `bench.bpf.c` the lab reads or fills.
#[derive(Debug)]
pub(crate) struct Maps {
    /// `nl_naive`'s locked hash.
    pub naive_flows: MapHandle,
    /// What `nl_naive` could not place (per CPU).
    pub naive_missed: MapHandle,
}

/// `bench.bpf.c`, loaded.
#[derive(Debug)]
pub(crate) struct BenchObject {
    pub progs: Programs,
    pub maps: Maps,
}

impl BenchObject {
    /// Load the object with `cfg`'s key configuration in its `nl_cfg` (the
    /// measurements load it themselves, with their maps sized:
    /// `bench::programs`).
    pub fn load(cfg: &LedgerConfig) -> Result<BenchObject> {
        cfg.validate()?;
        let mut storage = MaybeUninit::uninit();
        let skel = open(&mut storage, cfg)?
            .load()
            .context("loading bench.bpf.o")?;
        let prog = |p: &libbpf_rs::ProgramMut<'_>| -> Result<OwnedFd> {
            Ok(p.as_fd().try_clone_to_owned()?)
        };
        let p = &skel.progs;
        let progs = Programs {
            empty: prog(&p.nl_empty)?,
            naive: prog(&p.nl_naive)?,
        };
        let m = &skel.maps;
        let maps = Maps {
            naive_flows: MapHandle::try_from(&m.nl_naive_flows)?,
            naive_missed: MapHandle::try_from(&m.nl_naive_missed)?,
        };
        Ok(BenchObject { progs, maps })
    }
}

/// The empty XDP program (`return XDP_PASS`, `nl_empty` in `bench.bpf.c`):
/// the baseline of ns/packet figures.
#[derive(Debug)]
pub struct EmptyProgram {
    prog: OwnedFd,
}

impl EmptyProgram {
    /// Load it (with the rest of `bench.bpf.c`, which is then dropped).
    pub fn load() -> Result<EmptyProgram> {
        let obj = BenchObject::load(&LedgerConfig::default())?;
        Ok(EmptyProgram {
            prog: obj.progs.empty,
        })
    }

    /// The program, to attach or to run.
    pub fn fd(&self) -> BorrowedFd<'_> {
        self.prog.as_fd()
    }

    /// Run it on `frame` `repeat` times (BPF_PROG_TEST_RUN).
    pub fn test_run(&self, frame: &[u8], repeat: u32) -> Result<TestRun> {
        Ok(netledger::lab::test_run(self.prog.as_fd(), frame, repeat)?)
    }
}
