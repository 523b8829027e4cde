//! Strategy `swap`: per-CPU counters in map-in-map inner maps, cut by swapping.
//!
//! The data path keeps two generations of maps (a per-CPU flow hash and a
//! per-CPU stats array each, slots 0 and 1 of `nl_swap_flows` and
//! `nl_swap_stats`) and writes the one `nl_gen` names, with plain additions
//! to its own CPU's copies. A cut flips `nl_gen` to the spare generation,
//! waits for an RCU grace period (after which no run of the data path still
//! writes the old one) and drains the old generation at leisure: its flows
//! by lookup-and-delete, its stats read and zeroed. It is then the spare.
//!
//! The cut is exact and consistent across all keys: every frame is wholly in
//! the generation it read, and each generation is read only once quiescent.

use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::sync::{Mutex, MutexGuard};
use std::time::SystemTime;

use crate::config::LedgerConfig;
use crate::error::{Error, Result};
use crate::ledger::{load_object, map_err, read_buckets, sum_buckets};
use crate::snapshot::{Buckets, Count};
use crate::sys::{self, GraceMaps};
use crate::types::{nl_flow_key, nl_stats, nl_swap_counter};

// SAFETY: four u64s; every bit pattern is a value.
unsafe impl sys::Pod for nl_swap_counter {}

/// At most this many bytes of per-CPU values per batch syscall.
const DRAIN_BUFFER: usize = 4 << 20;

/// Where the generations stand, and what a cut took but could not return.
#[derive(Debug)]
struct GenState {
    /// The generation the data path writes (the value in `nl_gen`).
    live: u32,
    /// The spare generation may hold counts: a cut flipped away from it but
    /// failed before draining it all. The next cut drains it first.
    spare_dirty: bool,
    /// When the last flip happened: the end of the interval it closed.
    flipped_at: SystemTime,
    /// Taken out of the kernel by a cut that then failed: handed to the next.
    /// (A key may appear more than once; the ledger adds them up.)
    carry_flows: Vec<(nl_flow_key, Count)>,
    carry_stats: Vec<nl_stats>,
}

/// What a swap cut took: the flows, the buckets, and whether each key
/// appears once.
pub(crate) type SwapCut = (Vec<(nl_flow_key, Count)>, Buckets, bool);

#[derive(Debug)]
pub(crate) struct SwapBackend {
    prog: OwnedFd,
    /// `nl_gen`: one u32, the live generation.
    gen: OwnedFd,
    /// Each generation's per-CPU flow hash and per-CPU stats array.
    flows: [OwnedFd; 2],
    stats: [OwnedFd; 2],
    /// The outer maps (`nl_swap_flows`, `nl_swap_stats`); kept for pinning.
    #[allow(dead_code)]
    outer: [OwnedFd; 2],
    state: Mutex<GenState>,
}

impl SwapBackend {
    pub fn load(cfg: &LedgerConfig) -> Result<SwapBackend> {
        let n = cfg.max_flows;
        let mut fds = load_object(
            crate::objects::SWAP,
            cfg,
            &[("nl_flows_0", n), ("nl_flows_1", n)],
            &["nl_xdp"],
            &[
                "nl_gen",
                "nl_flows_0",
                "nl_flows_1",
                "nl_stats_0",
                "nl_stats_1",
                "nl_swap_flows",
                "nl_swap_stats",
            ],
        )?;
        let mut take = |name: &str| {
            fds.remove(name)
                .unwrap_or_else(|| panic!("swap object has {name}"))
        };
        let backend = SwapBackend {
            prog: take("nl_xdp"),
            gen: take("nl_gen"),
            flows: [take("nl_flows_0"), take("nl_flows_1")],
            stats: [take("nl_stats_0"), take("nl_stats_1")],
            outer: [take("nl_swap_flows"), take("nl_swap_stats")],
            state: Mutex::new(GenState {
                live: 0,
                spare_dirty: false,
                flipped_at: SystemTime::now(),
                carry_flows: Vec::new(),
                carry_stats: Vec::new(),
            }),
        };
        let live: u32 =
            sys::lookup_first(backend.gen.as_fd()).map_err(map_err("lookup", "nl_gen"))?;
        backend.lock().live = live & 1;
        Ok(backend)
    }

    fn lock(&self) -> MutexGuard<'_, GenState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn program(&self) -> BorrowedFd<'_> {
        self.prog.as_fd()
    }

    /// When the last cut flipped generations (load time before the first):
    /// the instant its interval ended.
    pub fn flipped_at(&self) -> SystemTime {
        self.lock().flipped_at
    }

    /// The current generation's buckets (everything since the last cut),
    /// settled. Waits for a cut in progress.
    pub fn buckets(&self, ncpus: usize) -> Result<Buckets> {
        let st = self.lock();
        read_buckets(self.stats[st.live as usize].as_fd(), ncpus)
    }

    /// Swap generations, wait a grace period, drain the old one: everything
    /// counted since the previous cut, each frame exactly once; and whether
    /// each key appears once.
    pub fn cut(&self, grace: &GraceMaps, ncpus: usize) -> Result<SwapCut> {
        let mut st = self.lock();
        // One drain of a per-CPU hash yields each key once; only a carry
        // from a failed cut, or a dirty spare, can repeat a key.
        let unique = st.carry_flows.is_empty() && !st.spare_dirty;
        let spare = st.live ^ 1;
        if st.spare_dirty {
            // A failed cut flipped away from it: once a grace period has
            // passed since (this wait), nothing writes it; take what is left.
            grace.wait().map_err(map_err("update", "nl_grace"))?;
            self.drain(&mut st, spare, ncpus)?;
            st.spare_dirty = false;
        }

        // The spare is empty (drained by the cut that made it the spare).
        // From here on, runs of the data path that read nl_gen write it.
        sys::update_elem(self.gen.as_fd(), &0u32, &spare, 0)
            .map_err(map_err("update", "nl_gen"))?;
        let old = st.live;
        st.live = spare;
        st.spare_dirty = true;
        st.flipped_at = SystemTime::now();

        // Every run that could have read the old value has finished after this.
        grace.wait().map_err(map_err("update", "nl_grace"))?;
        self.drain(&mut st, old, ncpus)?;
        st.spare_dirty = false;

        let flows = std::mem::take(&mut st.carry_flows);
        let stats = std::mem::take(&mut st.carry_stats);
        Ok((flows, sum_buckets(&stats), unique))
    }

    /// Give each key `count` in CPU 0's copy (zeros in the others) in the
    /// live generation, from userspace, as the data path would: for drain
    /// benchmarks with many keys (driving the XDP program once per key
    /// through test_run would take a grace period per key). Keys already
    /// there are overwritten.
    pub(crate) fn populate(&self, keys: &[nl_flow_key], count: Count, ncpus: usize) -> Result<()> {
        let st = self.lock();
        let mut vals = vec![nl_swap_counter::default(); keys.len() * ncpus];
        for v in vals.iter_mut().step_by(ncpus.max(1)) {
            *v = nl_swap_counter {
                packets: count.packets,
                bytes: count.bytes,
                first_ns: 1,
                last_ns: 1,
            };
        }
        sys::update_batch_percpu(self.flows[st.live as usize].as_fd(), keys, &vals, ncpus)
            .map_err(map_err("batch update", "nl_flows"))
    }

    /// Take generation `g`'s stats and flows out of the kernel into the
    /// carry, leaving its maps empty. `g` must be quiescent.
    fn drain(&self, st: &mut GenState, g: u32, ncpus: usize) -> Result<()> {
        let stats = self.stats[g as usize].as_fd();
        let per_cpu: Vec<nl_stats> =
            sys::lookup_percpu(stats, 0, ncpus).map_err(map_err("lookup", "nl_stats"))?;
        // Quiescent, so settled at the first reading; anything else is a bug.
        if per_cpu.iter().any(|s| s.done != s.started) {
            return Err(Error::StatsUnsettled { tries: 1 });
        }
        sys::update_percpu(stats, 0, &vec![nl_stats::default(); ncpus])
            .map_err(map_err("update", "nl_stats"))?;
        st.carry_stats.extend(per_cpu);

        let stride = std::mem::size_of::<nl_swap_counter>().div_ceil(8) * 8;
        let chunk = (DRAIN_BUFFER / (stride * ncpus.max(1))).clamp(64, 8192) as u32;
        // What was taken is kept even if the batch then fails.
        let carry = &mut st.carry_flows;
        sys::lookup_and_delete_batch_percpu(
            self.flows[g as usize].as_fd(),
            ncpus,
            chunk,
            |key: nl_flow_key, per_cpu: &mut dyn Iterator<Item = nl_swap_counter>| {
                let mut c = Count::default();
                for v in per_cpu {
                    c.add(Count {
                        packets: v.packets,
                        bytes: v.bytes,
                    });
                }
                carry.push((key, c));
            },
        )
        .map_err(map_err("lookup and delete batch", "nl_flows"))
    }
}
