//! Raw access for the lab (feature `lab`): the conservation harness, the
//! benchmarks and the kernel tests drive the data path through test runs,
//! read without the lock to show why it matters, and fill maps directly.
//! A user of the library has no need of any of it.

use std::os::fd::BorrowedFd;

use crate::error::{Error, Result};
use crate::ledger::{Backend, Ledger};
use crate::record::{Buckets, Count, Interval};
use crate::skel::types::{nl_config, nl_flow_key};
use crate::sys;

pub use crate::lock::ReadMode;
pub use crate::pod::{bytes_of, from_bytes, Pod};
pub use crate::skel::types;
pub use crate::sys::TestRunOut as TestRun;

impl crate::config::LedgerConfig {
    /// The `nl_config` the data path reads (for the lab's own programs).
    pub fn to_raw(&self) -> nl_config {
        self.raw()
    }
}

/// BPF_PROG_TEST_RUN of any program descriptor: the verdict, mean ns per
/// run, and the frame as it left.
pub fn test_run(prog: BorrowedFd<'_>, frame: &[u8], repeat: u32) -> Result<TestRun> {
    sys::test_run(prog, frame, repeat).map_err(|source| Error::TestRun {
        prog: "a lab program",
        source,
    })
}

impl Ledger {
    /// The data path program, for test runs.
    pub fn program_fd(&self) -> BorrowedFd<'_> {
        self.program()
    }

    /// Run the data path on `frame` `repeat` times (BPF_PROG_TEST_RUN).
    pub fn test_run(&self, frame: &[u8], repeat: u32) -> Result<TestRun> {
        sys::test_run(self.program(), frame, repeat).map_err(|source| Error::TestRun {
            prog: "nl_xdp",
            source,
        })
    }

    fn lab_lock(&self) -> Result<&crate::lock::LockBackend> {
        match &self.backend {
            Backend::Lock(b) => Ok(b),
            Backend::Swap(_) => Err(Error::Unsupported {
                what: "live flow reads",
                strategy: self.config().strategy,
            }),
        }
    }

    /// Every live flow's raw key and counts since the last cut, each copied
    /// with `mode` (strategy `lock`).
    pub fn raw_flows(&self, mode: ReadMode) -> Result<Vec<(nl_flow_key, Count)>> {
        self.lab_lock()?.raw_flows(mode)
    }

    /// The same with one syscall per key (the fallback, and a baseline).
    pub fn raw_flows_per_element(&self, mode: ReadMode) -> Result<Vec<(nl_flow_key, Count)>> {
        self.lab_lock()?.raw_flows_per_element(mode)
    }

    /// One key's counts since the last cut, copied with `mode`.
    pub fn lookup_raw(&self, key: &nl_flow_key, mode: ReadMode) -> Result<Option<Count>> {
        self.lab_lock()?.lookup(key, mode)
    }

    /// The buckets summed without waiting for settled CPUs (to show why the
    /// sequence counters matter; strategy `lock`).
    pub fn buckets_unsettled(&self) -> Result<Buckets> {
        self.lab_lock()?.buckets_unsettled()
    }

    /// Give each key a live flow holding `count`, from userspace (for
    /// measurements with many keys on a fresh ledger).
    pub fn populate(&self, keys: &[nl_flow_key], count: Count) -> Result<()> {
        match &self.backend {
            Backend::Lock(b) => b.populate(keys, count),
            Backend::Swap(b) => b.populate(keys, count),
        }
    }

    /// A cut that also evicts every key (strategy `lock`): each key's next
    /// packet gets a new slot. Exercises eviction against live writers.
    pub fn cut_evicting_all(&self) -> Result<Interval> {
        self.lab_lock()?;
        let cut = self.take_inner(true)?;
        self.finish_cut(&cut)?;
        Ok(cut.interval)
    }
}

/// The key a ledger loaded with `cfg` files raw key `raw` under.
pub fn decode_key(raw: &nl_flow_key, cfg: &crate::config::LedgerConfig) -> crate::key::FlowKey {
    crate::key::FlowKey::from_raw(raw, cfg)
}

/// Attach any XDP program descriptor to `iface` through a link, as a
/// ledger's data path is attached (for the lab's reference programs).
pub fn attach_xdp_fd(
    prog: BorrowedFd<'_>,
    iface: &str,
    mode: crate::config::XdpMode,
) -> Result<crate::attach::Attachment> {
    crate::attach::xdp(prog, iface, mode)
}

/// Attach any tc program descriptor to `iface` at `hook`, as a ledger's tc
/// data path is attached (tcx in `mode` Auto or Tcx; for the lab's
/// reference programs).
pub fn attach_tc_fd(
    prog: BorrowedFd<'_>,
    iface: &str,
    hook: crate::config::Hook,
    mode: crate::attach::TcMode,
) -> Result<crate::attach::Attachment> {
    crate::attach::tc(prog, iface, hook, mode)
}

/// Update many keys of a per-CPU map: `values` holds one value per possible
/// CPU for each key, key by key.
pub fn update_batch_percpu<K: Pod, V: Pod>(
    map: BorrowedFd<'_>,
    keys: &[K],
    values: &[V],
    ncpus: usize,
) -> std::io::Result<()> {
    sys::update_batch_percpu(map, keys, values, ncpus)
}

/// Every key and value of a hash map, each value copied with `elem_flags`
/// (BPF_F_LOCK: under the element's spin lock), in batches.
pub fn lookup_batch<K: Pod, V: Pod>(
    map: BorrowedFd<'_>,
    elem_flags: u64,
    out: &mut Vec<(K, V)>,
) -> std::io::Result<()> {
    sys::lookup_batch(map, elem_flags, 1024, out)
}

/// What a test run of a tc program's skb carries besides its bytes: the
/// `struct __sk_buff` fields BPF_PROG_TEST_RUN takes as `ctx_in` that make
/// an skb a GSO/GRO packet. Zero leaves a field unset (`wire_len` is then
/// the frame's length).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SkbContext {
    /// `skb_shinfo(skb)->gso_segs`: how many wire segments it stands for.
    pub gso_segs: u32,
    /// `skb_shinfo(skb)->gso_size`: the payload bytes of each segment.
    pub gso_size: u32,
    /// The qdisc packet length (`qdisc_skb_cb(skb)->pkt_len`, which a tc
    /// program reads as `wire_len`): at least the frame's length, at most
    /// 64 KiB (the kernel refuses the run otherwise).
    pub wire_len: u32,
}

impl SkbContext {
    /// `sizeof(struct __sk_buff)` (UAPI, up to `hwtstamp`) and the offsets
    /// of the fields set: UAPI layout, which never moves.
    const SIZE: usize = 192;
    const WIRE_LEN: usize = 160;
    const GSO_SEGS: usize = 164;
    const GSO_SIZE: usize = 176;

    /// The `struct __sk_buff` as bytes: every other field and every padding
    /// byte zero, as the kernel requires of a test run's context.
    fn to_bytes(self) -> Vec<u8> {
        let mut b = vec![0u8; Self::SIZE];
        for (at, v) in [
            (Self::WIRE_LEN, self.wire_len),
            (Self::GSO_SEGS, self.gso_segs),
            (Self::GSO_SIZE, self.gso_size),
        ] {
            b[at..at + 4].copy_from_slice(&v.to_ne_bytes());
        }
        b
    }
}

/// BPF_PROG_TEST_RUN of a tc program descriptor on `frame` (from its
/// Ethernet header) as an skb with `ctx`, `repeat` times.
pub fn test_run_skb(
    prog: BorrowedFd<'_>,
    frame: &[u8],
    ctx: SkbContext,
    repeat: u32,
) -> Result<TestRun> {
    sys::test_run_ctx(prog, frame, &ctx.to_bytes(), repeat).map_err(|source| Error::TestRun {
        prog: "a tc program with an skb context",
        source,
    })
}

impl Ledger {
    /// Run the tc data path (a ledger loaded at a tc hook) on `frame` as an
    /// skb with `ctx` (e.g. a GSO packet), `repeat` times.
    pub fn test_run_skb(&self, frame: &[u8], ctx: SkbContext, repeat: u32) -> Result<TestRun> {
        test_run_skb(self.program(), frame, ctx, repeat)
    }
}
