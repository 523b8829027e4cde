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

use std::mem::MaybeUninit;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::sync::{Mutex, MutexGuard};
use std::time::SystemTime;

use libbpf_rs::skel::{OpenSkel, SkelBuilder};
use libbpf_rs::{MapFlags, MapHandle};

use crate::config::LedgerConfig;
use crate::error::{map_err, map_io_err, Result};
use crate::load::{load_err, own_map, own_prog};
use crate::maps::{Grace, TypedMap};
use crate::record::{Buckets, Count};
use crate::skel::types::{nl_flow_key, nl_stats, nl_swap_counter};
use crate::skel::SwapSkelBuilder;
use crate::stats;
use crate::sys;

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
pub(crate) struct SwapCut {
    pub flows: Vec<(nl_flow_key, Count)>,
    pub buckets: Buckets,
    pub unique: bool,
    /// When the flip happened: the end of the interval.
    pub end: SystemTime,
}

/// The loaded programs and maps of strategy `swap`.
#[derive(Debug)]
pub(crate) struct SwapBackend {
    prog: OwnedFd,
    /// `nl_gen`: one u32, the live generation.
    gen: MapHandle,
    /// Each generation's per-CPU flow hash and per-CPU stats array.
    flows: [MapHandle; 2],
    stats: [MapHandle; 2],
    ncpus: usize,
    state: Mutex<GenState>,
}

impl SwapBackend {
    /// Load the swap object configured by `cfg`.
    pub fn load(cfg: &LedgerConfig) -> Result<SwapBackend> {
        let mut storage = MaybeUninit::uninit();
        let mut open = SwapSkelBuilder::default()
            .open(&mut storage)
            .map_err(load_err)?;
        let rodata = open
            .maps
            .rodata_data
            .as_deref_mut()
            .expect("the swap object has a .rodata section");
        rodata.nl_cfg = cfg.raw().for_swap();
        for map in [&mut open.maps.nl_flows_0, &mut open.maps.nl_flows_1] {
            map.set_max_entries(cfg.max_flows).map_err(load_err)?;
        }
        let skel = open.load().map_err(load_err)?;
        let gen = own_map(&skel.maps.nl_gen)?;
        let live: u32 = gen
            .get(&0u32, MapFlags::ANY)
            .map_err(map_err("lookup", "nl_gen"))?
            .unwrap_or(0);
        Ok(SwapBackend {
            prog: own_prog(&skel.progs.nl_xdp)?,
            gen,
            flows: [
                own_map(&skel.maps.nl_flows_0)?,
                own_map(&skel.maps.nl_flows_1)?,
            ],
            stats: [
                own_map(&skel.maps.nl_stats_0)?,
                own_map(&skel.maps.nl_stats_1)?,
            ],
            ncpus: libbpf_rs::num_possible_cpus().map_err(load_err)?,
            state: Mutex::new(GenState {
                live: live & 1,
                spare_dirty: false,
                flipped_at: SystemTime::now(),
                carry_flows: Vec::new(),
                carry_stats: Vec::new(),
            }),
        })
    }

    fn lock(&self) -> MutexGuard<'_, GenState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The data path.
    pub fn program(&self) -> BorrowedFd<'_> {
        self.prog.as_fd()
    }

    /// The current generation's buckets (everything since the last cut),
    /// settled. Waits for a cut in progress.
    pub fn buckets(&self) -> Result<Buckets> {
        let st = self.lock();
        stats::read_settled(&self.stats[st.live as usize], "nl_stats")
    }

    /// Swap generations, wait a grace period, drain the old one: everything
    /// counted since the previous cut, each frame exactly once.
    pub fn cut(&self, grace: &Grace) -> Result<SwapCut> {
        let mut st = self.lock();
        // One drain of a per-CPU hash yields each key once; only a carry
        // from a failed cut, or a dirty spare, can repeat a key.
        let unique = st.carry_flows.is_empty() && !st.spare_dirty;
        let spare = st.live ^ 1;
        if st.spare_dirty {
            // A failed cut flipped away from it: once a grace period has
            // passed since (this wait), nothing writes it; take what is left.
            grace.wait().map_err(map_err("update", "nl_grace"))?;
            self.drain(&mut st, spare)?;
            st.spare_dirty = false;
        }

        // The spare is empty (drained by the cut that made it the spare).
        // From here on, runs of the data path that read nl_gen write it.
        self.gen
            .put(&0u32, &spare, MapFlags::ANY)
            .map_err(map_err("update", "nl_gen"))?;
        let old = st.live;
        st.live = spare;
        st.spare_dirty = true;
        st.flipped_at = SystemTime::now();

        // Every run that could have read the old value has finished after this.
        grace.wait().map_err(map_err("update", "nl_grace"))?;
        self.drain(&mut st, old)?;
        st.spare_dirty = false;

        Ok(SwapCut {
            flows: std::mem::take(&mut st.carry_flows),
            buckets: stats::sum(&std::mem::take(&mut st.carry_stats)),
            unique,
            end: st.flipped_at,
        })
    }

    /// Give each key `count` in CPU 0's copy (zeros in the others) in the
    /// live generation, from userspace, as the data path would: for drain
    /// benchmarks with many keys (driving the XDP program once per key
    /// through test_run would take a grace period per key). Keys already
    /// there are overwritten.
    #[cfg(feature = "lab")]
    pub fn populate(&self, keys: &[nl_flow_key], count: Count) -> Result<()> {
        let st = self.lock();
        let ncpus = self.ncpus.max(1);
        let mut vals = vec![nl_swap_counter::default(); keys.len() * ncpus];
        for v in vals.iter_mut().step_by(ncpus) {
            *v = nl_swap_counter {
                packets: count.packets,
                bytes: count.bytes,
                first_ns: 1,
                last_ns: 1,
            };
        }
        sys::update_batch_percpu(self.flows[st.live as usize].as_fd(), keys, &vals, ncpus)
            .map_err(map_io_err("batch update", "nl_flows"))
    }

    /// Take generation `g`'s stats and flows out of the kernel into the
    /// carry, leaving its maps empty. `g` must be quiescent.
    fn drain(&self, st: &mut GenState, g: u32) -> Result<()> {
        let stats = &self.stats[g as usize];
        let per_cpu = stats::read_quiescent(stats, "nl_stats")?;
        stats
            .put_percpu(&0, &vec![nl_stats::default(); per_cpu.len()])
            .map_err(map_err("update", "nl_stats"))?;
        st.carry_stats.extend(per_cpu);

        let stride = sys::percpu_stride::<nl_swap_counter>();
        let chunk = (DRAIN_BUFFER / (stride * self.ncpus.max(1))).clamp(64, 8192) as u32;
        // What was taken is kept even if the batch then fails.
        let carry = &mut st.carry_flows;
        sys::walk_percpu(
            self.flows[g as usize].as_fd(),
            true,
            self.ncpus,
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
        .map_err(map_io_err("lookup and delete batch", "nl_flows"))
    }
}
