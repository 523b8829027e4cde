//! The reference programs and models of `bench.bpf.c` the data-path
//! measurements compare with, loaded with their maps sized; and
//! prepopulating the maps they and the real strategies count in.

use std::mem::MaybeUninit;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};

use anyhow::{anyhow, Context, Result};
use libbpf_rs::skel::OpenSkel;
use libbpf_rs::{MapCore, MapFlags, MapHandle};
use netledger::lab::types::nl_flow_key;
use netledger::lab::{bytes_of, from_bytes, update_batch_percpu, Pod};
use netledger::{Count, Ledger, LedgerConfig};

use crate::skel::types;

/// Keys per batch update.
const BATCH: usize = 16384;

// The bench object's own copies of the shared types are `repr(C)` structs
// of integers (and transparent integer newtypes) with explicit padding:
// every bit pattern is a valid value.
// SAFETY: as said above.
unsafe impl Pod for types::nl_flow_key {}
// SAFETY: as above.
unsafe impl Pod for types::nl_count {}
// SAFETY: as above.
unsafe impl Pod for types::nl_m_swap_counter {}
// SAFETY: as above (the spin lock is a u32 word).
unsafe impl Pod for types::nl_m_slot {}
// SAFETY: as above.
unsafe impl Pod for types::nl_m_key4 {}
// SAFETY: as above (the spin lock is a u32 word; the padding is explicit).
unsafe impl Pod for types::nl_m_slot128 {}
// SAFETY: as above.
unsafe impl Pod for types::nl_m_slot192 {}
// SAFETY: as above.
unsafe impl Pod for types::nl_m_slot192b {}
// SAFETY: as above.
unsafe impl Pod for types::nl_m_slot192c {}

/// Every program of the bench object the measurements run: (tag, label).
/// Tags are the figures' `program` tags.
pub(super) const PROGRAMS: &[(&str, &str)] = &[
    ("empty", "empty XDP_PASS"),
    ("empty_len", "empty + bpf_xdp_get_buff_len"),
    ("empty_tc", "empty tc program (returns next)"),
    (
        "naive",
        "classic locked hash (HASH of {spin lock, packets, bytes})",
    ),
    ("plain", "plain += (shared hash, racy)"),
    ("atomic", "two atomic adds (shared hash)"),
    ("percpu", "per-CPU hash, plain +="),
    (
        "bare_lock",
        "bare spin-locked counter (1 element, no parsing)",
    ),
    (
        "bare_percpu",
        "bare per-CPU counter (1 element, no parsing)",
    ),
    ("ms_all", "swap model, every part (swap before)"),
    ("ms_no_time", "swap model without first/last time"),
    ("ms_no_seq", "swap model without the started/done window"),
    ("ms_no_ipb", "swap model without ip_bytes"),
    (
        "ms_stats_gen",
        "swap model, stats in one array indexed by generation",
    ),
    ("ms_no_stats", "swap model without any bucket"),
    (
        "ms_lean",
        "swap model: stats by generation, no time, no window",
    ),
    ("ms_lean_no_ipb", "swap model: lean, without ip_bytes"),
    ("ms_lean_key4", "swap model: lean, IPv4 keys in 16 bytes"),
    (
        "ms_lean_gvar",
        "swap model: lean, generation in a global variable",
    ),
    (
        "ms_lean_fast",
        "swap model: lean, counted bucket at a constant offset",
    ),
    (
        "ms_lean_gvar_fast",
        "swap model: lean, global generation, constant offset",
    ),
    ("ms_now", "swap model as now (global generation, no time, no window)"),
    ("ms_now_no_ipb", "swap model as now, without ip_bytes"),
    ("ml_index", "lock model: parse, buckets, index lookup only"),
    (
        "ml_slot",
        "lock model: + slot lookup and adds (no check, no lock)",
    ),
    ("ml_keyeq", "lock model: + the slot's key check"),
    ("ml_all", "lock model, every part (lock before)"),
    ("ml_no_time", "lock model without first/last time"),
    ("ml_no_ipb", "lock model without ip_bytes"),
    ("ml_no_stats", "lock model without buckets"),
    (
        "ml_lean_key4",
        "lock model without time, IPv4 keys in 16 bytes",
    ),
    (
        "ml_s128",
        "lock model without time, 128-byte slots in a plain array (here lock and counters on two lines, the key on the next slot's line)",
    ),
    (
        "ml_s128_mmap",
        "lock model without time, 128-byte slots in a page-aligned (mmapable) array (lock now)",
    ),
    (
        "ml_s128_mmap_no_ipb",
        "lock model as now, without ip_bytes",
    ),
    (
        "ml_s192",
        "lock model without time, 192-byte slots in a plain array, lock and counters in one line",
    ),
    (
        "ml_s192b",
        "lock model without time, 192-byte slots, counters then lock in one line",
    ),
    (
        "ml_s192c",
        "lock model without time, 192-byte slots, lock and counters on two lines",
    ),
];

/// The label of a program tag of [`PROGRAMS`].
pub(super) fn label(tag: &str) -> &'static str {
    PROGRAMS
        .iter()
        .find(|(t, _)| *t == tag)
        .map_or("?", |(_, l)| l)
}

/// The bench object's programs and the flow maps they count in.
#[derive(Debug)]
pub(super) struct BenchPrograms {
    progs: Vec<(&'static str, OwnedFd)>,
    /// The shared hash of `nl_plain` and `nl_atomic`.
    hash: MapHandle,
    /// The per-CPU hash of `nl_percpu`.
    pcpu: MapHandle,
    /// The classic locked hash of `nl_naive`.
    naive: MapHandle,
    /// The swap models' live generation (0) of flows, and by IPv4 key.
    m_flows: MapHandle,
    m_flows4: MapHandle,
    /// The lock models' index (and by IPv4 key) and slots.
    m_index: MapHandle,
    m_index4: MapHandle,
    m_slots: MapHandle,
    m_slots128: [MapHandle; 2],
    m_slots192: MapHandle,
    m_slots192b: MapHandle,
    m_slots192c: MapHandle,
    ncpus: usize,
}

impl BenchPrograms {
    /// Load the bench object with every flow map sized to `max_flows` (the
    /// default configuration: five-tuple keys, whole addresses).
    pub fn load(max_flows: u32) -> Result<BenchPrograms> {
        let cfg = LedgerConfig {
            max_flows,
            ..LedgerConfig::default()
        };
        let mut storage = MaybeUninit::uninit();
        let mut open = crate::object::open(&mut storage, &cfg)?;
        let m = &mut open.maps;
        for map in [
            &mut m.nl_bench_hash,
            &mut m.nl_bench_pcpu,
            &mut m.nl_naive_flows,
            &mut m.nl_m_flows_0,
            &mut m.nl_m_flows_1,
            &mut m.nl_m_flows4_0,
            &mut m.nl_m_flows4_1,
            &mut m.nl_m_index,
            &mut m.nl_m_index4,
            &mut m.nl_m_slots,
            &mut m.nl_m_slots128,
            &mut m.nl_m_slots128mm,
            &mut m.nl_m_slots192,
            &mut m.nl_m_slots192b,
            &mut m.nl_m_slots192c,
        ] {
            map.set_max_entries(max_flows)
                .context("sizing the bench flow maps")?;
        }
        let skel = open.load().context("loading bench.bpf.o")?;
        let p = &skel.progs;
        let all: [(&str, &libbpf_rs::ProgramMut<'_>); 37] = [
            ("empty", &p.nl_empty),
            ("empty_len", &p.nl_empty_len),
            ("empty_tc", &p.nl_empty_tc),
            ("naive", &p.nl_naive),
            ("plain", &p.nl_plain),
            ("atomic", &p.nl_atomic),
            ("percpu", &p.nl_percpu),
            ("bare_lock", &p.nl_bare_lock),
            ("bare_percpu", &p.nl_bare_percpu),
            ("ms_all", &p.nl_ms_all),
            ("ms_no_time", &p.nl_ms_no_time),
            ("ms_no_seq", &p.nl_ms_no_seq),
            ("ms_no_ipb", &p.nl_ms_no_ipb),
            ("ms_stats_gen", &p.nl_ms_stats_gen),
            ("ms_no_stats", &p.nl_ms_no_stats),
            ("ms_lean", &p.nl_ms_lean),
            ("ms_lean_no_ipb", &p.nl_ms_lean_no_ipb),
            ("ms_lean_key4", &p.nl_ms_lean_key4),
            ("ms_lean_gvar", &p.nl_ms_lean_gvar),
            ("ms_lean_fast", &p.nl_ms_lean_fast),
            ("ms_lean_gvar_fast", &p.nl_ms_lean_gvar_fast),
            ("ms_now", &p.nl_ms_now),
            ("ms_now_no_ipb", &p.nl_ms_now_no_ipb),
            ("ml_index", &p.nl_ml_index),
            ("ml_slot", &p.nl_ml_slot),
            ("ml_keyeq", &p.nl_ml_keyeq),
            ("ml_all", &p.nl_ml_all),
            ("ml_no_time", &p.nl_ml_no_time),
            ("ml_no_ipb", &p.nl_ml_no_ipb),
            ("ml_no_stats", &p.nl_ml_no_stats),
            ("ml_lean_key4", &p.nl_ml_lean_key4),
            ("ml_s128", &p.nl_ml_s128),
            ("ml_s128_mmap", &p.nl_ml_s128_mmap),
            ("ml_s192", &p.nl_ml_s192),
            ("ml_s128_mmap_no_ipb", &p.nl_ml_s128_mmap_no_ipb),
            ("ml_s192b", &p.nl_ml_s192b),
            ("ml_s192c", &p.nl_ml_s192c),
        ];
        let mut progs = Vec::new();
        for (tag, prog) in all {
            progs.push((
                PROGRAMS
                    .iter()
                    .find(|(t, _)| *t == tag)
                    .map(|(t, _)| *t)
                    .ok_or_else(|| anyhow!("program {tag} has no label"))?,
                prog.as_fd().try_clone_to_owned()?,
            ));
        }
        let m = &skel.maps;
        Ok(BenchPrograms {
            progs,
            hash: MapHandle::try_from(&m.nl_bench_hash)?,
            pcpu: MapHandle::try_from(&m.nl_bench_pcpu)?,
            naive: MapHandle::try_from(&m.nl_naive_flows)?,
            m_flows: MapHandle::try_from(&m.nl_m_flows_0)?,
            m_flows4: MapHandle::try_from(&m.nl_m_flows4_0)?,
            m_index: MapHandle::try_from(&m.nl_m_index)?,
            m_index4: MapHandle::try_from(&m.nl_m_index4)?,
            m_slots: MapHandle::try_from(&m.nl_m_slots)?,
            m_slots128: [
                MapHandle::try_from(&m.nl_m_slots128)?,
                MapHandle::try_from(&m.nl_m_slots128mm)?,
            ],
            m_slots192: MapHandle::try_from(&m.nl_m_slots192)?,
            m_slots192b: MapHandle::try_from(&m.nl_m_slots192b)?,
            m_slots192c: MapHandle::try_from(&m.nl_m_slots192c)?,
            ncpus: libbpf_rs::num_possible_cpus().context("counting the possible CPUs")?,
        })
    }

    /// The program tagged `tag`.
    pub fn prog(&self, tag: &str) -> BorrowedFd<'_> {
        self.progs
            .iter()
            .find(|(t, _)| *t == tag)
            .unwrap_or_else(|| panic!("no bench program {tag}"))
            .1
            .as_fd()
    }

    /// Insert `keys` with zero counts into every flow map; `first` is the
    /// number of keys inserted before (the lock models' slot of `keys[i]`
    /// is `first + i`).
    pub fn populate(&self, keys: &[nl_flow_key], first: usize) -> Result<()> {
        let raw: Vec<types::nl_flow_key> = keys.iter().map(|k| from_bytes(bytes_of(k))).collect();
        let key4: Vec<types::nl_m_key4> = raw.iter().map(key4).collect();
        for (i, chunk) in raw.chunks(BATCH).enumerate() {
            let at = first + i * BATCH;
            let n = chunk.len() as u32;
            let k = netledger_bytes(chunk);
            batch(
                &self.hash,
                &k,
                &vec![types::nl_count::default(); chunk.len()],
                n,
            )
            .context("batch update of nl_bench_hash")?;
            batch(
                &self.naive,
                &k,
                &vec![types::nl_naive_value::default(); chunk.len()],
                n,
            )
            .context("batch update of nl_naive_flows")?;
            let slots: Vec<u32> = (at..at + chunk.len()).map(|s| s as u32).collect();
            batch(&self.m_index, &k, &slots, n).context("batch update of nl_m_index")?;
            let k4 = netledger_bytes(&key4[i * BATCH..i * BATCH + chunk.len()]);
            batch(&self.m_index4, &k4, &slots, n).context("batch update of nl_m_index4")?;
            let values: Vec<types::nl_m_slot> = chunk
                .iter()
                .map(|key| types::nl_m_slot {
                    state: types::nl_slot_state::NL_SLOT_LIVE,
                    key: *key,
                    ..Default::default()
                })
                .collect();
            self.m_slots
                .update_batch(
                    &netledger_bytes(&slots),
                    &netledger_bytes(&values),
                    n,
                    MapFlags::ANY,
                    MapFlags::ANY,
                )
                .context("batch update of nl_m_slots")?;
            let values: Vec<types::nl_m_slot128> = chunk
                .iter()
                .map(|key| types::nl_m_slot128 {
                    state: types::nl_slot_state::NL_SLOT_LIVE,
                    key: *key,
                    ..Default::default()
                })
                .collect();
            for map in &self.m_slots128 {
                map.update_batch(
                    &netledger_bytes(&slots),
                    &netledger_bytes(&values),
                    n,
                    MapFlags::ANY,
                    MapFlags::ANY,
                )
                .context("batch update of nl_m_slots128")?;
            }
            let values: Vec<types::nl_m_slot192> = chunk
                .iter()
                .map(|key| types::nl_m_slot192 {
                    state: types::nl_slot_state::NL_SLOT_LIVE,
                    key: *key,
                    ..Default::default()
                })
                .collect();
            self.m_slots192
                .update_batch(
                    &netledger_bytes(&slots),
                    &netledger_bytes(&values),
                    n,
                    MapFlags::ANY,
                    MapFlags::ANY,
                )
                .context("batch update of nl_m_slots192")?;
            let values: Vec<types::nl_m_slot192b> = chunk
                .iter()
                .map(|key| types::nl_m_slot192b {
                    state: types::nl_slot_state::NL_SLOT_LIVE,
                    key: *key,
                    ..Default::default()
                })
                .collect();
            self.m_slots192b
                .update_batch(
                    &netledger_bytes(&slots),
                    &netledger_bytes(&values),
                    n,
                    MapFlags::ANY,
                    MapFlags::ANY,
                )
                .context("batch update of nl_m_slots192b")?;
            let values: Vec<types::nl_m_slot192c> = chunk
                .iter()
                .map(|key| types::nl_m_slot192c {
                    state: types::nl_slot_state::NL_SLOT_LIVE,
                    key: *key,
                    ..Default::default()
                })
                .collect();
            self.m_slots192c
                .update_batch(
                    &netledger_bytes(&slots),
                    &netledger_bytes(&values),
                    n,
                    MapFlags::ANY,
                    MapFlags::ANY,
                )
                .context("batch update of nl_m_slots192c")?;
        }
        let ncpus = self.ncpus;
        update_batch_percpu(
            self.pcpu.as_fd(),
            &raw,
            &vec![types::nl_count::default(); raw.len() * ncpus],
            ncpus,
        )
        .context("batch update of nl_bench_pcpu")?;
        let zeros = vec![types::nl_m_swap_counter::default(); raw.len() * ncpus];
        update_batch_percpu(self.m_flows.as_fd(), &raw, &zeros, ncpus)
            .context("batch update of nl_m_flows_0")?;
        update_batch_percpu(self.m_flows4.as_fd(), &key4, &zeros, ncpus)
            .context("batch update of nl_m_flows4_0")
    }
}

fn netledger_bytes<T: Pod>(v: &[T]) -> Vec<u8> {
    v.iter().flat_map(|x| bytes_of(x).to_vec()).collect()
}

fn batch<V: Pod>(map: &MapHandle, keys: &[u8], values: &[V], n: u32) -> Result<()> {
    map.update_batch(
        keys,
        &netledger_bytes(values),
        n,
        MapFlags::ANY,
        MapFlags::ANY,
    )?;
    Ok(())
}

/// The 16-byte IPv4 key of `k`.
fn key4(k: &types::nl_flow_key) -> types::nl_m_key4 {
    types::nl_m_key4 {
        src: u32::from_ne_bytes(k.src[..4].try_into().expect("4 bytes")),
        dst: u32::from_ne_bytes(k.dst[..4].try_into().expect("4 bytes")),
        sport: k.sport,
        dport: k.dport,
        vlan: k.vlan,
        proto: k.proto,
        flags: k.flags,
    }
}

/// Prepopulate `keys` (zero counts) in every map the programs measured
/// count in; `first`: keys populated before.
pub(super) fn populate_all(
    bench: &BenchPrograms,
    lock: &Ledger,
    swap: &Ledger,
    keys: &[nl_flow_key],
    first: usize,
) -> Result<()> {
    bench.populate(keys, first)?;
    lock.populate(keys, Count::default())?;
    swap.populate(keys, Count::default())?;
    Ok(())
}
