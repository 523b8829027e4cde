//! Strategy `swap`: per-CPU counters in map-in-map inner maps, cut by swapping.
//!
//! The data path keeps two generations of maps (a per-CPU flow hash and a
//! per-CPU stats array each, slots 0 and 1 of `nl_swap_flows` and
//! `nl_swap_stats`) and writes the one `nl_gen` names, with plain additions
//! to its own CPU's copies. A cut is two phases:
//!
//! 1. **take**: note the open cut in the control record, flip `nl_gen` to the
//!    other generation, wait for an RCU grace period (after which no run of
//!    the data path still writes the old one), then *read* the old
//!    generation: its flows with a plain batch lookup, its stats.
//! 2. **clear**, once the caller has kept what was read (e.g. committed it to
//!    a store): empty the old generation (delete its few keys, or swap in a
//!    fresh flow map made ahead of time when it holds many) and note the cut
//!    finished.
//!
//! A process killed anywhere in between leaves the control record saying the
//! cut is open and the old generation untouched or partly cleared; the next
//! process reads it again and lets its caller decide (commit, or skip what
//! is already committed), then clears. Nothing is cleared before it is kept.
//!
//! The cut is exact and consistent across all keys: every frame is wholly in
//! the generation it read, and each generation is read only once quiescent.

use std::mem::MaybeUninit;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::SystemTime;

use libbpf_rs::skel::{OpenSkel, SkelBuilder};
use libbpf_rs::{MapCore, MapFlags, MapHandle, MapType};

use crate::config::{Hook, LedgerConfig};
use crate::ctl::{self, Ctl};
use crate::error::{map_err, map_io_err, Error, Result};
use crate::load::{load_err, open_for_hook, own_map, own_prog};
use crate::maps::{Grace, TypedMap};
use crate::pin::PinSet;
use crate::pod;
use crate::record::{Buckets, Count};
use crate::skel::types::{nl_cut_ctl, nl_flow_key, nl_stats, nl_swap_counter};
use crate::skel::SwapSkelBuilder;
use crate::stats;
use crate::sys;

/// At most this many bytes of per-CPU values per batch syscall.
const READ_BUFFER: usize = 4 << 20;

/// Below this many keys a generation is cleared by deleting them (about a
/// microsecond each); above, by swapping in a fresh map, which costs one
/// grace period whatever its size.
const CLEAR_BY_DELETE: usize = 16 * 1024;

/// The pin names of a swap ledger's maps.
const PIN_PROG: &str = "prog";
const PIN_GEN: &str = "gen";
const PIN_FLOWS: &str = "flows";
const PIN_STATS: &str = "stats";
const PIN_CTL: &str = "ctl";
/// The inner maps of each generation are pinned too (`flows0`, `stats1`,
/// ...): reopening them by id would need CAP_SYS_ADMIN, pins need only
/// access to the files. A flow map swapped in at a clear is pinned as
/// `flowsN_new` (bpffs refuses dots in names) before it enters the outer
/// map and renamed over `flowsN` after, so whichever of the two the outer
/// map holds is pinned.
const PIN_NEW: &str = "_new";

/// What the first phase of a cut read from the old generation.
#[derive(Debug)]
pub(crate) struct SwapTaken {
    /// Each key once, summed over CPUs, with its IP-layer bytes.
    pub flows: Vec<crate::key::RawFlow>,
    pub buckets: Buckets,
    /// The generation read: the one the second phase clears.
    pub gen: u32,
}

/// The loaded programs and maps of strategy `swap`.
#[derive(Debug)]
pub(crate) struct SwapBackend {
    prog: OwnedFd,
    /// `nl_gen`: one u32, the live generation (a global variable of the
    /// data path: the one-entry map of its section).
    gen: MapHandle,
    /// The outer maps: `nl_swap_flows` and `nl_swap_stats`.
    outer_flows: MapHandle,
    outer_stats: MapHandle,
    /// `nl_ctl`, the cut control record.
    ctl: MapHandle,
    state: Mutex<Gens>,
    ncpus: usize,
    max_flows: u32,
    /// A fresh, empty flow map made ahead of time, to swap in at a clear.
    spare: Arc<Mutex<Option<MapHandle>>>,
    /// Where the maps are pinned (pinned or opened from pins), so that a
    /// flow map swapped in is pinned as well.
    pins: std::sync::OnceLock<PinSet>,
}

/// The inner maps as this process holds them (a clear may replace a flow map).
#[derive(Debug)]
struct Gens {
    live: u32,
    flows: [MapHandle; 2],
    stats: [MapHandle; 2],
}

impl SwapBackend {
    /// Load the swap object configured by `cfg`.
    pub fn load(cfg: &LedgerConfig, hook: Hook) -> Result<SwapBackend> {
        let mut storage = MaybeUninit::uninit();
        let mut open = open_for_hook!(
            SwapSkelBuilder,
            &mut storage,
            cfg.raw_at(hook).for_swap(),
            hook
        );
        for map in [&mut open.maps.nl_flows_0, &mut open.maps.nl_flows_1] {
            map.set_max_entries(cfg.max_flows).map_err(load_err)?;
        }
        let skel = open.load().map_err(load_err)?;
        // nl_gen is a global variable: the map of its section `.data.gen`.
        let gen = own_map(&skel.maps.data_gen)?;
        let live = read_gen(&gen)?;
        let gens = Gens {
            live,
            flows: [
                own_map(&skel.maps.nl_flows_0)?,
                own_map(&skel.maps.nl_flows_1)?,
            ],
            stats: [
                own_map(&skel.maps.nl_stats_0)?,
                own_map(&skel.maps.nl_stats_1)?,
            ],
        };
        Ok(SwapBackend {
            prog: if hook == Hook::Xdp {
                own_prog(&skel.progs.nl_xdp)?
            } else {
                own_prog(&skel.progs.nl_tc)?
            },
            gen,
            outer_flows: own_map(&skel.maps.nl_swap_flows)?,
            outer_stats: own_map(&skel.maps.nl_swap_stats)?,
            ctl: own_map(&skel.maps.nl_ctl)?,
            state: Mutex::new(gens),
            ncpus: libbpf_rs::num_possible_cpus().map_err(load_err)?,
            max_flows: cfg.max_flows,
            spare: Arc::default(),
            pins: std::sync::OnceLock::new(),
        })
    }

    /// Pin the program, the maps that reach every generation, and each
    /// generation's maps.
    pub fn pin(&self, pins: &PinSet) -> Result<()> {
        pins.put(PIN_PROG, self.prog.as_fd())?;
        pins.put(PIN_GEN, self.gen.as_fd())?;
        pins.put(PIN_FLOWS, self.outer_flows.as_fd())?;
        pins.put(PIN_STATS, self.outer_stats.as_fd())?;
        pins.put(PIN_CTL, self.ctl.as_fd())?;
        let st = self.lock();
        for g in 0..2 {
            pins.put(&format!("{PIN_FLOWS}{g}"), st.flows[g].as_fd())?;
            pins.put(&format!("{PIN_STATS}{g}"), st.stats[g].as_fd())?;
        }
        drop(st);
        let _ = self.pins.set(pins.clone());
        Ok(())
    }

    /// A handle of the cut control map.
    pub fn ctl(&self) -> Result<Ctl> {
        Ok(Ctl::from_map(
            MapHandle::try_from(&self.ctl).map_err(map_err("dup", "nl_ctl"))?,
        ))
    }

    /// The backend pinned in `pins` by a ledger loaded with `cfg`; the inner
    /// maps are found through the outer ones.
    pub fn open(pins: &PinSet, cfg: &LedgerConfig, hook: Hook) -> Result<SwapBackend> {
        let prog = pins.prog(PIN_PROG, crate::lock::prog_name(hook))?;
        let gen = pins.map(PIN_GEN, MapType::Array, 4, 4, 1)?;
        let outer_flows = pins.map(PIN_FLOWS, MapType::ArrayOfMaps, 4, 4, 2)?;
        let outer_stats = pins.map(PIN_STATS, MapType::ArrayOfMaps, 4, 4, 2)?;
        let ctl = pins.map(
            PIN_CTL,
            MapType::Array,
            4,
            std::mem::size_of::<nl_cut_ctl>() as u32,
            1,
        )?;
        // Generation g's map: the pinned one the outer map holds (its id
        // tells), else by id (pins of an older version; needs CAP_SYS_ADMIN).
        let inner =
            |outer: &MapHandle, g: u32, pin: &str, name: &'static str| -> Result<MapHandle> {
                let id: u32 = outer
                    .get(&g, MapFlags::ANY)
                    .map_err(map_err("lookup", name))?
                    .unwrap_or_default();
                for candidate in [format!("{pin}{g}{PIN_NEW}"), format!("{pin}{g}")] {
                    let Ok(m) = MapHandle::from_pinned_path(pins.dir().join(&candidate)) else {
                        continue;
                    };
                    if m.info().is_ok_and(|i| i.info.id == id) {
                        return Ok(m);
                    }
                }
                MapHandle::from_map_id(id).map_err(|source| {
                    if source.kind() == libbpf_rs::ErrorKind::PermissionDenied {
                        Error::PermissionDenied {
                            op: format!(
                                "opening {name}[{g}] by id (its pin {} is missing or stale; \
                             opening a map by id needs CAP_SYS_ADMIN)",
                                pins.dir().join(format!("{pin}{g}")).display()
                            ),
                        }
                    } else {
                        map_err("open by id", name)(source)
                    }
                })
            };
        let gens = Gens {
            live: read_gen(&gen)?,
            flows: [
                inner(&outer_flows, 0, PIN_FLOWS, "nl_swap_flows")?,
                inner(&outer_flows, 1, PIN_FLOWS, "nl_swap_flows")?,
            ],
            stats: [
                inner(&outer_stats, 0, PIN_STATS, "nl_swap_stats")?,
                inner(&outer_stats, 1, PIN_STATS, "nl_swap_stats")?,
            ],
        };
        Ok(SwapBackend {
            prog,
            gen,
            outer_flows,
            outer_stats,
            ctl,
            state: Mutex::new(gens),
            ncpus: libbpf_rs::num_possible_cpus().map_err(load_err)?,
            max_flows: cfg.max_flows,
            spare: Arc::default(),
            pins: std::sync::OnceLock::from(pins.clone()),
        })
    }

    fn lock(&self) -> MutexGuard<'_, Gens> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The data path.
    pub fn program(&self) -> BorrowedFd<'_> {
        self.prog.as_fd()
    }

    /// The current generation's buckets (everything since the last cut).
    /// Waits for a cut in progress. A live generation's buckets have no
    /// sequence window (cuts read a generation only once quiescent): a frame
    /// being accounted while this reads may show in `seen` before its
    /// bucket. Exact when no frame is in flight.
    pub fn buckets(&self) -> Result<Buckets> {
        let st = self.lock();
        stats::read_once(&st.stats[st.live as usize], "nl_stats")
    }

    /// The generation the data path writes now.
    pub fn live(&self) -> u32 {
        self.lock().live
    }

    /// Phase one: note cut `seq` open in `ctl` (its interval from `start`),
    /// flip generations, wait for a grace period, read the old generation.
    pub fn take(
        &self,
        ctl: &Ctl,
        grace: &Grace,
        seq: u64,
        start: SystemTime,
    ) -> Result<(SwapTaken, SystemTime)> {
        let mut st = self.lock();
        let old = st.live;
        let end = SystemTime::now();
        // Noted before the flip: a process killed right after the flip finds
        // the cut open; one killed right before finds nl_gen unchanged.
        ctl.write(&nl_cut_ctl {
            seq,
            start_ns: ctl::ns(start),
            end_ns: ctl::ns(end),
            phase: ctl::OPEN,
            old_gen: old,
            ..Default::default()
        })?;
        self.gen
            .put(&0u32, &(old ^ 1), MapFlags::ANY)
            .map_err(map_err("update", "nl_gen"))?;
        st.live = old ^ 1;
        drop(st);
        // Every run that could have read the old value has finished after this.
        grace.wait().map_err(map_err("update", "nl_grace"))?;
        Ok((self.read(old)?, end))
    }

    /// An open cut found in `ctl` by a process that adopted the ledger:
    /// `None` if its flip never happened (the cut is then closed as not
    /// taken), else the old generation read again.
    pub fn retake(&self, ctl: &Ctl, grace: &Grace, open: &nl_cut_ctl) -> Result<Option<SwapTaken>> {
        if self.live() == open.old_gen {
            // Killed between noting the cut and flipping: nothing was taken.
            ctl.write(&nl_cut_ctl {
                seq: open.seq - 1,
                end_ns: open.start_ns,
                phase: ctl::IDLE,
                ..Default::default()
            })?;
            return Ok(None);
        }
        // The flip is long done; the wait covers a runner that is not.
        grace.wait().map_err(map_err("update", "nl_grace"))?;
        self.read(open.old_gen).map(Some)
    }

    /// Read generation `g` (quiescent) without changing it.
    fn read(&self, g: u32) -> Result<SwapTaken> {
        let st = self.lock();
        let per_cpu = stats::read_quiescent(&st.stats[g as usize], "nl_stats")?;
        let stride = sys::percpu_stride::<nl_swap_counter>();
        let chunk = (READ_BUFFER / (stride * self.ncpus.max(1))).clamp(64, 8192) as u32;
        let mut flows = Vec::new();
        sys::walk_percpu(
            st.flows[g as usize].as_fd(),
            self.ncpus,
            chunk,
            |key: nl_flow_key, per_cpu: &mut dyn Iterator<Item = nl_swap_counter>| {
                let (mut c, mut ip) = (Count::default(), 0);
                for v in per_cpu {
                    c.add(Count {
                        packets: v.packets,
                        bytes: v.bytes,
                    });
                    ip += v.ip_bytes;
                }
                flows.push((key, c, ip));
            },
        )
        .map_err(map_io_err("batch lookup", "nl_flows"))?;
        Ok(SwapTaken {
            flows,
            buckets: stats::sum(&per_cpu),
            gen: g,
        })
    }

    /// Phase two: empty generation `taken.gen` and note cut `seq` finished.
    /// Safe to repeat on a partly cleared generation.
    pub fn clear(&self, ctl: &Ctl, taken: &SwapTaken, seq: u64, end: SystemTime) -> Result<()> {
        let g = taken.gen as usize;
        let mut st = self.lock();
        let zeros = vec![nl_stats::default(); self.ncpus.max(1)];
        st.stats[g]
            .put_percpu(&0, &zeros)
            .map_err(map_err("update", "nl_stats"))?;
        if taken.flows.len() < CLEAR_BY_DELETE {
            let keys: Vec<nl_flow_key> = taken.flows.iter().map(|(k, _, _)| *k).collect();
            delete_keys(&st.flows[g], &keys)?;
        } else {
            let fresh = match self.spare.lock().unwrap_or_else(|e| e.into_inner()).take() {
                Some(m) => m,
                None => new_flow_map(self.max_flows)?,
            };
            // Pinned before it enters the outer map, renamed over the old
            // pin after: the map the outer one holds is always pinned.
            let pinned = self.pins.get();
            let (name, new) = (
                format!("{PIN_FLOWS}{g}"),
                format!("{PIN_FLOWS}{g}{PIN_NEW}"),
            );
            if let Some(pins) = pinned {
                pins.unpin(&new)?;
                pins.put(&new, fresh.as_fd())?;
            }
            // Waits for a grace period; the old map goes when its last
            // reference (ours, below) does.
            let fd = fresh.as_fd().as_raw_fd() as u32;
            self.outer_flows
                .put(&(g as u32), &fd, MapFlags::ANY)
                .map_err(map_err("update", "nl_swap_flows"))?;
            if let Some(pins) = pinned {
                pins.rename(&new, &name)?;
            }
            st.flows[g] = fresh;
            self.prepare_spare();
        }
        ctl.write(&nl_cut_ctl {
            seq,
            end_ns: ctl::ns(end),
            phase: ctl::IDLE,
            ..Default::default()
        })
    }

    /// Make the next fresh flow map in the background (a large preallocated
    /// per-CPU hash takes a second or more to create).
    fn prepare_spare(&self) {
        let spare = Arc::clone(&self.spare);
        let max = self.max_flows;
        std::thread::spawn(move || {
            if let Ok(m) = new_flow_map(max) {
                *spare.lock().unwrap_or_else(|e| e.into_inner()) = Some(m);
            }
        });
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
                ..Default::default()
            };
        }
        sys::update_batch_percpu(st.flows[st.live as usize].as_fd(), keys, &vals, ncpus)
            .map_err(map_io_err("batch update", "nl_flows"))
    }
}

/// The live generation in `nl_gen`.
fn read_gen(gen: &MapHandle) -> Result<u32> {
    let g: u32 = gen
        .get(&0u32, MapFlags::ANY)
        .map_err(map_err("lookup", "nl_gen"))?
        .unwrap_or(0);
    Ok(g & 1)
}

/// Delete `keys` from a flow map (some may be gone already).
fn delete_keys(map: &MapHandle, keys: &[nl_flow_key]) -> Result<()> {
    for chunk in keys.chunks(4096) {
        let bytes = pod::bytes_of_slice(chunk);
        if map
            .delete_batch(bytes, chunk.len() as u32, MapFlags::ANY, MapFlags::ANY)
            .is_err()
        {
            // A key already deleted (a clear that was cut short) stops the
            // batch: fall back to one at a time, ignoring the missing.
            for k in chunk {
                let _ = map.delete(pod::bytes_of(k));
            }
        }
    }
    Ok(())
}

/// A fresh flow map for a generation: the same type, sizes and flags as the
/// ones the object declares (the outer map checks them).
fn new_flow_map(max_flows: u32) -> Result<MapHandle> {
    let opts = libbpf_sys::bpf_map_create_opts {
        sz: std::mem::size_of::<libbpf_sys::bpf_map_create_opts>() as _,
        ..Default::default()
    };
    MapHandle::create(
        MapType::PercpuHash,
        Some("nl_flows"),
        std::mem::size_of::<nl_flow_key>() as u32,
        std::mem::size_of::<nl_swap_counter>() as u32,
        max_flows,
        &opts,
    )
    .map_err(map_err("create", "nl_flows"))
}
