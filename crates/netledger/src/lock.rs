//! Strategy `lock`: counters behind per-slot spin locks, coherent live reads
//! (BPF_F_LOCK), and lossless cuts and resets by an in-kernel exchange.

use std::mem::{size_of, MaybeUninit};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};
use std::sync::Mutex;

use libbpf_rs::skel::{OpenSkel, SkelBuilder};
use libbpf_rs::{MapCore, MapFlags, MapHandle, MapType};

use std::time::SystemTime;

use crate::config::{Hook, KeyMode, LedgerConfig};
use crate::ctl::{self, Ctl};
use crate::error::{map_err, map_io_err, Error, Result};
use crate::load::{load_err, open_for_hook, own_map, own_prog};
use crate::maps::TypedMap;
use crate::pin::PinSet;
use crate::pod;
use crate::record::{Buckets, Count};
use crate::skel::types::{
    nl_count, nl_cut_ctl, nl_exchange_req, nl_exchange_result, nl_flow_key, nl_key_flags,
    nl_record, nl_record_flags, nl_slot, nl_slot_state, nl_stats, NR_BUCKETS,
};
use crate::skel::LockSkelBuilder;
use crate::stats;
use crate::sys;

/// How flow values are copied out of the kernel.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReadMode {
    /// With BPF_F_LOCK: under each flow's spin lock, coherent.
    Locked,
    /// Without it: packets and bytes may come from different packets. Only
    /// for showing that the lock matters.
    #[cfg_attr(not(feature = "lab"), allow(dead_code))]
    Unlocked,
}

impl ReadMode {
    fn flags(self) -> MapFlags {
        match self {
            ReadMode::Locked => MapFlags::LOCK,
            ReadMode::Unlocked => MapFlags::ANY,
        }
    }
}

/// Which keys an exchange takes: those with `(key & mask) == value`.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct KeyFilter {
    value: nl_flow_key,
    mask: nl_flow_key,
}

/// What one exchange took: per-key counts and the slots it evicted.
#[derive(Debug, Default)]
pub(crate) struct Exchanged {
    pub records: Vec<nl_record>,
    pub evicted: Vec<u32>,
    /// Exchange runs it took (more than one when the output filled up).
    pub runs: u32,
}

impl Exchanged {
    /// Whether a key may appear in more than one record: only when a key
    /// was evicted and re-created, or the exchange ran more than once.
    pub fn may_repeat_keys(&self) -> bool {
        self.runs > 1 || !self.evicted.is_empty()
    }

    /// Each record's key and counts.
    pub fn flows(&self) -> impl Iterator<Item = crate::key::RawFlow> + '_ {
        self.records
            .iter()
            .map(|r| (r.key, record_count(r), r.ip_bytes))
    }
}

/// What the first phase of a numbered cut took: the staged records and the
/// cumulative buckets at the cut.
#[derive(Debug)]
pub(crate) struct LockTaken {
    pub got: Exchanged,
    pub total: Buckets,
}

/// The pin names of a lock ledger.
const PIN_XDP: &str = "prog";
const PIN_EXCHANGE: &str = "exchange";
const PIN_MAPS: [&str; 6] = ["index", "slots", "free", "stats", "out", "ctl"];

/// The loaded programs and maps of strategy `lock`.
#[derive(Debug)]
pub(crate) struct LockBackend {
    prog: OwnedFd,
    exchange: OwnedFd,
    index: MapHandle,
    slots: MapHandle,
    free: MapHandle,
    stats: MapHandle,
    out: MapHandle,
    ctl: MapHandle,
    out_map: sys::MappedArray,
    nslots: u32,
    /// Live keys at the last read: picks the cheaper way to read them next.
    live_hint: AtomicUsize,
    /// Serializes runs of the exchange in this process: they share nl_out.
    out_lock: Mutex<()>,
}

impl LockBackend {
    /// Load the lock object configured by `cfg`, every slot free.
    pub fn load(cfg: &LedgerConfig, hook: Hook) -> Result<LockBackend> {
        let mut storage = MaybeUninit::uninit();
        let mut open = open_for_hook!(LockSkelBuilder, &mut storage, cfg.raw_at(hook), hook);
        let n = cfg.max_flows;
        for map in [
            &mut open.maps.nl_index,
            &mut open.maps.nl_slots,
            &mut open.maps.nl_free,
            &mut open.maps.nl_out,
        ] {
            map.set_max_entries(n).map_err(load_err)?;
        }
        let skel = open.load().map_err(load_err)?;
        let backend = LockBackend::assemble(
            if hook == Hook::Xdp {
                own_prog(&skel.progs.nl_xdp)?
            } else {
                own_prog(&skel.progs.nl_tc)?
            },
            own_prog(&skel.progs.nl_exchange)?,
            [
                own_map(&skel.maps.nl_index)?,
                own_map(&skel.maps.nl_slots)?,
                own_map(&skel.maps.nl_free)?,
                own_map(&skel.maps.nl_stats)?,
                own_map(&skel.maps.nl_out)?,
                own_map(&skel.maps.nl_ctl)?,
            ],
        )?;
        // Every slot starts free.
        for slot in 0..n {
            backend
                .free
                .push(&slot)
                .map_err(map_err("push", "nl_free"))?;
        }
        Ok(backend)
    }

    fn assemble(prog: OwnedFd, exchange: OwnedFd, maps: [MapHandle; 6]) -> Result<LockBackend> {
        let [index, slots, free, stats, out, ctl] = maps;
        let nslots = slots.max_entries();
        Ok(LockBackend {
            out_map: sys::MappedArray::map::<nl_record>(out.as_fd(), nslots as usize)
                .map_err(map_io_err("mmap", "nl_out"))?,
            prog,
            exchange,
            index,
            slots,
            free,
            stats,
            out,
            ctl,
            nslots,
            live_hint: AtomicUsize::new(0),
            out_lock: Mutex::new(()),
        })
    }

    /// Pin the programs and maps into `pins`.
    pub fn pin(&self, pins: &PinSet) -> Result<()> {
        pins.put(PIN_XDP, self.prog.as_fd())?;
        pins.put(PIN_EXCHANGE, self.exchange.as_fd())?;
        for (name, map) in PIN_MAPS.iter().zip(self.maps()) {
            pins.put(name, map.as_fd())?;
        }
        Ok(())
    }

    /// The backend pinned in `pins` (by a ledger loaded with `cfg`): every
    /// pin must be there, of the type and sizes this version makes.
    pub fn open(pins: &PinSet, cfg: &LedgerConfig, hook: Hook) -> Result<LockBackend> {
        let prog = pins.prog(PIN_XDP, prog_name(hook))?;
        let exchange = pins.prog(PIN_EXCHANGE, "nl_exchange")?;
        let n = cfg.max_flows;
        let shapes = [
            (MapType::Hash, size_of::<nl_flow_key>(), 4, n),
            (MapType::Array, 4, size_of::<nl_slot>(), n),
            (MapType::Queue, 0, 4, n),
            (MapType::PercpuArray, 4, size_of::<nl_stats>(), 1),
            (MapType::Array, 4, size_of::<nl_record>(), n),
            (MapType::Array, 4, size_of::<nl_cut_ctl>(), 1),
        ];
        let mut maps = Vec::new();
        for (name, (ty, k, v, max)) in PIN_MAPS.iter().zip(shapes) {
            maps.push(pins.map(name, ty, k as u32, v as u32, max)?);
        }
        let maps: [MapHandle; 6] = maps.try_into().expect("six maps");
        LockBackend::assemble(prog, exchange, maps)
    }

    fn maps(&self) -> [&MapHandle; 6] {
        [
            &self.index,
            &self.slots,
            &self.free,
            &self.stats,
            &self.out,
            &self.ctl,
        ]
    }

    /// A handle of the cut control map.
    pub fn ctl(&self) -> Result<Ctl> {
        Ok(Ctl::from_map(
            MapHandle::try_from(&self.ctl).map_err(map_err("dup", "nl_ctl"))?,
        ))
    }

    /// The data path.
    pub fn program(&self) -> BorrowedFd<'_> {
        self.prog.as_fd()
    }

    /// The buckets since load, settled.
    pub fn buckets(&self) -> Result<Buckets> {
        stats::read_settled(&self.stats, "nl_stats")
    }

    /// The buckets since load, without waiting for settled CPUs.
    #[cfg(feature = "lab")]
    pub fn buckets_unsettled(&self) -> Result<Buckets> {
        let per_cpu: Vec<nl_stats> = self
            .stats
            .get_percpu(&0)
            .map_err(map_err("lookup", "nl_stats"))?
            .unwrap_or_default();
        Ok(stats::sum(&per_cpu))
    }

    /// Every live flow: the index (key -> slot) joined with the slots, each
    /// slot copied with `mode` (BPF_F_LOCK: under its lock).
    pub fn raw_flows(&self, mode: ReadMode) -> Result<Vec<(nl_flow_key, Count)>> {
        // Few live keys (as of the last read): the index, then one lookup per
        // live slot. Many: one pass over the slot array, whose slots hold
        // their key and state (a slot published moments ago, still PENDING,
        // shows from the next read on).
        if (self.live_hint.load(Relaxed) as u64) * 16 < u64::from(self.nslots) {
            let index = self.index_entries()?;
            self.live_hint.store(index.len(), Relaxed);
            if (index.len() as u64) * 16 < u64::from(self.nslots) {
                return self.read_slots(index, mode);
            }
        }
        let out: Vec<(nl_flow_key, Count)> = match mode {
            // The exchange program in peek mode: every live slot copied under
            // its lock in one in-kernel pass, read through the mmapped nl_out.
            ReadMode::Locked => self
                .run_exchange(None, 0, false, true, 0)?
                .flows()
                .map(|(k, c, _)| (k, c))
                .collect(),
            ReadMode::Unlocked => {
                let mut slots: Vec<(u32, nl_slot)> = Vec::with_capacity(self.nslots as usize);
                sys::lookup_batch(self.slots.as_fd(), 0, 4096, &mut slots)
                    .map_err(map_io_err("batch lookup", "nl_slots"))?;
                slots
                    .into_iter()
                    .filter(|(_, s)| s.state == nl_slot_state::NL_SLOT_LIVE)
                    .map(|(_, s)| (s.key, slot_count(&s)))
                    .collect()
            }
        };
        self.live_hint.store(out.len(), Relaxed);
        Ok(out)
    }

    /// The same, one syscall per key and per slot (fallback and baseline).
    #[cfg(feature = "lab")]
    pub fn raw_flows_per_element(&self, mode: ReadMode) -> Result<Vec<(nl_flow_key, Count)>> {
        let mut index = Vec::new();
        for key in self.index.keys() {
            let key: nl_flow_key = pod::from_bytes(&key);
            // A key deleted between the two calls is simply gone.
            if let Some(n) = self
                .index
                .get::<_, u32>(&key, MapFlags::ANY)
                .map_err(map_err("lookup", "nl_index"))?
            {
                index.push((key, n));
            }
        }
        self.read_slots(index, mode)
    }

    /// One key's counters, copied with `mode`; None if it has no live slot.
    #[cfg(feature = "lab")]
    pub fn lookup(&self, key: &nl_flow_key, mode: ReadMode) -> Result<Option<Count>> {
        let Some(n) = self
            .index
            .get::<_, u32>(key, MapFlags::ANY)
            .map_err(map_err("lookup", "nl_index"))?
        else {
            return Ok(None);
        };
        Ok(self
            .read_slots(vec![(*key, n)], mode)?
            .first()
            .map(|(_, c)| *c))
    }

    /// Every index entry: key -> slot number.
    fn index_entries(&self) -> Result<Vec<(nl_flow_key, u32)>> {
        let mut index = Vec::new();
        sys::lookup_batch(self.index.as_fd(), 0, 1024, &mut index)
            .map_err(map_io_err("batch lookup", "nl_index"))?;
        Ok(index)
    }

    /// Each index entry's slot, copied with `mode` (BPF_F_LOCK: under its
    /// lock), kept only if it is still that key's slot and live (or
    /// published moments ago and still PENDING).
    fn read_slots(
        &self,
        index: Vec<(nl_flow_key, u32)>,
        mode: ReadMode,
    ) -> Result<Vec<(nl_flow_key, Count)>> {
        let mut out = Vec::with_capacity(index.len());
        for (key, n) in index {
            let slot: Option<nl_slot> = self
                .slots
                .get(&n, mode.flags())
                .map_err(map_err("lookup", "nl_slots"))?;
            if let Some(s) = slot.filter(|s| {
                (s.state == nl_slot_state::NL_SLOT_LIVE
                    || s.state == nl_slot_state::NL_SLOT_PENDING)
                    && s.key.to_bytes() == key.to_bytes()
            }) {
                out.push((key, slot_count(&s)));
            }
        }
        Ok(out)
    }

    /// Run the exchange: copy and zero (under each slot's lock) every key
    /// that `filter` selects, evicting keys idle for `idle_cuts` cuts (every
    /// key taken, with `evict_all`).
    pub fn exchange(&self, filter: Option<&KeyFilter>) -> Result<Exchanged> {
        self.run_exchange(filter, 0, false, false, 0)
    }

    /// Phase one of numbered cut `seq`: note it open in `ctl` (its interval
    /// from `start`), run the exchange over every key (evicting keys idle
    /// for `idle_cuts` cuts, or every key with `evict_all`), which stages
    /// the records in nl_out and notes that in `ctl`, then read and note the
    /// cumulative buckets.
    pub fn take(
        &self,
        ctl: &Ctl,
        seq: u64,
        start: SystemTime,
        idle_cuts: u32,
        evict_all: bool,
    ) -> Result<(LockTaken, SystemTime)> {
        let prev = ctl.read()?;
        let end = SystemTime::now();
        let mut open = nl_cut_ctl {
            seq,
            start_ns: ctl::ns(start),
            end_ns: ctl::ns(end),
            phase: ctl::OPEN,
            base: prev.base,
            base_reroutes: prev.base_reroutes,
            ..Default::default()
        };
        ctl.write(&open)?;
        let got = self.run_exchange(None, idle_cuts, evict_all, false, seq)?;
        let total = self.buckets()?;
        open.staged = 1;
        open.records = got.records.len() as u64;
        open.totaled = 1;
        (open.total, open.total_reroutes) = raw_buckets(&total);
        ctl.write(&open)?;
        Ok((LockTaken { got, total }, end))
    }

    /// An open cut found in `ctl` by a process that adopted the ledger:
    /// `None` if the exchange never ran (the cut is then closed as not
    /// taken), else its staged records read again from nl_out.
    pub fn retake(&self, ctl: &Ctl, open: &nl_cut_ctl) -> Result<Option<LockTaken>> {
        if open.staged == 0 {
            ctl.write(&nl_cut_ctl {
                seq: open.seq - 1,
                end_ns: open.start_ns,
                phase: ctl::IDLE,
                base: open.base,
                base_reroutes: open.base_reroutes,
                ..Default::default()
            })?;
            return Ok(None);
        }
        let mut got = Exchanged {
            runs: 1,
            ..Default::default()
        };
        for r in self.out_map.read::<nl_record>(open.records as usize) {
            if r.flags.0 & nl_record_flags::NL_REC_EVICTED.0 != 0 {
                got.evicted.push(r.slot);
            }
            got.records.push(r);
        }
        let total = if open.totaled != 0 {
            buckets_of(&open.total, open.total_reroutes)
        } else {
            // Killed before noting them: the buckets now (they may include
            // frames of the next cut's flows; conservation holds either way).
            let total = self.buckets()?;
            let mut noted = *open;
            noted.totaled = 1;
            (noted.total, noted.total_reroutes) = raw_buckets(&total);
            ctl.write(&noted)?;
            total
        };
        Ok(Some(LockTaken { got, total }))
    }

    /// Phase two of cut `seq`: return the slots it evicted to the free
    /// queue (after a grace period, via `wait`) and note it finished, with
    /// its buckets as the next cut's base.
    pub fn finish(
        &self,
        ctl: &Ctl,
        taken: &LockTaken,
        seq: u64,
        end: SystemTime,
        wait: impl FnOnce() -> Result<()>,
    ) -> Result<()> {
        if !taken.got.evicted.is_empty() {
            // Evicted slots go back only once no writer can hold them.
            wait()?;
            self.recycle(&taken.got.evicted)?;
        }
        let (base, base_reroutes) = raw_buckets(&taken.total);
        ctl.write(&nl_cut_ctl {
            seq,
            end_ns: ctl::ns(end),
            phase: ctl::IDLE,
            base,
            base_reroutes,
            ..Default::default()
        })
    }

    /// Run the exchange program. With `peek`, it only copies (under each
    /// slot's lock): a coherent live snapshot in one pass, without zeroing.
    fn run_exchange(
        &self,
        filter: Option<&KeyFilter>,
        idle_cuts: u32,
        evict_all: bool,
        peek: bool,
        seq: u64,
    ) -> Result<Exchanged> {
        // nl_out is shared by every run: one at a time in this process (the
        // pin directory's lock covers other processes).
        let _out = self.out_lock.lock().unwrap_or_else(|e| e.into_inner());
        let req = nl_exchange_req {
            idle_cuts,
            max_records: self.nslots,
            filtered: filter.is_some() as u32,
            evict_all: evict_all as u32,
            peek: peek as u32,
            pad: 0,
            value: filter.map(|f| f.value).unwrap_or_default(),
            mask: filter.map(|f| f.mask).unwrap_or_default(),
            seq,
        };
        let incomplete = nl_exchange_result::NL_EXCHANGE_INCOMPLETE.0;
        let mut got = Exchanged::default();
        loop {
            got.runs += 1;
            let run =
                sys::test_run(self.exchange.as_fd(), pod::bytes_of(&req), 1).map_err(|source| {
                    Error::TestRun {
                        prog: "nl_exchange",
                        source,
                    }
                })?;
            let n = run.retval & !incomplete;
            for r in self.out_map.read::<nl_record>(n as usize) {
                if r.flags.0 & nl_record_flags::NL_REC_EVICTED.0 != 0 {
                    got.evicted.push(r.slot);
                }
                got.records.push(r);
            }
            if run.retval & incomplete == 0 {
                return Ok(got);
            }
        }
    }

    /// Give each key a live slot holding `count`, from userspace, as the
    /// data path would (for measurements with many keys: driving the XDP
    /// program once per key through test_run would take a grace period each).
    #[cfg(feature = "lab")]
    pub fn populate(&self, keys: &[nl_flow_key], count: Count) -> Result<()> {
        // Keys that already have a slot get their counts set in place.
        let existing: std::collections::HashMap<[u8; 44], u32> = self
            .index_entries()?
            .iter()
            .map(|(k, n)| (k.to_bytes(), *n))
            .collect();
        let (mut slots, mut values, mut new_keys, mut new_slots) =
            (Vec::new(), Vec::new(), Vec::new(), Vec::new());
        for key in keys {
            let n = match existing.get(&key.to_bytes()) {
                Some(&n) => n,
                None => {
                    let n = self
                        .free
                        .pop::<u32>()
                        .map_err(map_err("pop", "nl_free"))?
                        .ok_or(Error::InvalidConfig {
                            what: "number of keys to populate",
                            value: keys.len().to_string(),
                            expected: "at most the ledger's max flows",
                        })?;
                    new_keys.push(*key);
                    new_slots.push(n);
                    n
                }
            };
            slots.push(n);
            values.push(nl_slot {
                state: nl_slot_state::NL_SLOT_LIVE,
                key: *key,
                packets: count.packets,
                bytes: count.bytes,
                ..Default::default()
            });
        }
        update_batch(&self.slots, &slots, &values, MapFlags::LOCK, "nl_slots")?;
        update_batch(
            &self.index,
            &new_keys,
            &new_slots,
            MapFlags::ANY,
            "nl_index",
        )
    }

    /// Return evicted slots to the free queue. Only after an RCU grace
    /// period since their eviction: no writer still holds their number.
    /// A slot is marked free before it is pushed, and only a tombstoned slot
    /// is, so a recycle repeated after a crash never pushes a slot twice (a
    /// crash between the two steps loses the slot's capacity, not a count).
    fn recycle(&self, slots: &[u32]) -> Result<()> {
        for n in slots {
            let slot: Option<nl_slot> = self
                .slots
                .get(n, MapFlags::LOCK)
                .map_err(map_err("lookup", "nl_slots"))?;
            if slot.is_none_or(|s| s.state != nl_slot_state::NL_SLOT_TOMBSTONE) {
                continue;
            }
            let free = nl_slot {
                state: nl_slot_state::NL_SLOT_FREE,
                ..Default::default()
            };
            self.slots
                .put(n, &free, MapFlags::LOCK)
                .map_err(map_err("update", "nl_slots"))?;
            self.free.push(n).map_err(map_err("push", "nl_free"))?;
        }
        Ok(())
    }
}

/// The data path program's name for `hook`.
pub(crate) fn prog_name(hook: Hook) -> &'static str {
    match hook {
        Hook::Xdp => "nl_xdp",
        Hook::TcIngress | Hook::TcEgress => "nl_tc",
    }
}

/// Buckets as the control record holds them.
fn raw_buckets(b: &Buckets) -> ([nl_count; NR_BUCKETS], u64) {
    let mut out = [nl_count::default(); NR_BUCKETS];
    for (o, c) in out.iter_mut().zip(b.counts()) {
        *o = nl_count {
            packets: c.packets,
            bytes: c.bytes,
        };
    }
    (out, b.reroutes)
}

/// Buckets from the control record.
pub(crate) fn buckets_of(raw: &[nl_count; NR_BUCKETS], reroutes: u64) -> Buckets {
    let mut counts = [Count::default(); NR_BUCKETS];
    for (c, r) in counts.iter_mut().zip(raw) {
        *c = Count::from(*r);
    }
    Buckets::from_counts(counts, reroutes)
}

fn slot_count(s: &nl_slot) -> Count {
    Count {
        packets: s.packets,
        bytes: s.bytes,
    }
}

fn record_count(r: &nl_record) -> Count {
    Count {
        packets: r.packets,
        bytes: r.bytes,
    }
}

/// What to select in a targeted reset; every field given must match.
#[derive(Debug, Clone, Default)]
pub struct KeySelector {
    /// Keys with this source address (masked to the ledger's prefix).
    pub src: Option<std::net::IpAddr>,
    /// Keys with this destination address.
    pub dst: Option<std::net::IpAddr>,
    /// Keys of this IP protocol.
    pub proto: Option<u8>,
    /// Keys with this source port.
    pub sport: Option<u16>,
    /// Keys with this destination port.
    pub dport: Option<u16>,
    /// Keys with this VLAN id.
    pub vlan: Option<u16>,
}

impl KeySelector {
    /// Selects every key.
    pub fn is_empty(&self) -> bool {
        self.src.is_none()
            && self.dst.is_none()
            && self.proto.is_none()
            && self.sport.is_none()
            && self.dport.is_none()
            && self.vlan.is_none()
    }

    /// The filter over raw keys of a ledger loaded with `cfg`. Addresses are
    /// masked to the ledger's prefixes, so a host selects its prefix's key.
    pub(crate) fn filter(&self, cfg: &LedgerConfig) -> Result<KeyFilter> {
        use std::net::IpAddr;
        let invalid =
            |what: &'static str, value: String, expected: &'static str| Error::InvalidConfig {
                what,
                value,
                expected,
            };
        let mode = cfg.key_mode;
        let five = mode == KeyMode::FiveTuple;
        if self.src.is_some() && !mode.has_src() {
            return Err(invalid(
                "source address selector",
                mode.to_string(),
                "a key mode with source addresses",
            ));
        }
        if self.dst.is_some() && !mode.has_dst() {
            return Err(invalid(
                "destination address selector",
                mode.to_string(),
                "a key mode with destination addresses",
            ));
        }
        if (self.proto.is_some() || self.sport.is_some() || self.dport.is_some()) && !five {
            return Err(invalid(
                "protocol or port selector",
                mode.to_string(),
                "key mode five-tuple",
            ));
        }
        if self.vlan.is_some() && !cfg.vlan {
            return Err(invalid(
                "VLAN selector",
                "a ledger without VLAN keys".into(),
                "a ledger keyed by VLAN",
            ));
        }
        let mut f = KeyFilter::default();
        let raw = cfg.raw();
        let mut family = None;
        let mut put = |ip: IpAddr, value: &mut [u8; 16], mask: &mut [u8; 16]| -> Result<()> {
            let (fam, bytes, n): (u8, [u8; 16], usize) = match ip {
                IpAddr::V4(a) => {
                    let mut b = [0u8; 16];
                    b[..4].copy_from_slice(&a.octets());
                    (4, b, 4)
                }
                IpAddr::V6(a) => (6, a.octets(), 16),
            };
            if family.is_some_and(|f| f != fam) {
                return Err(invalid(
                    "address selectors",
                    ip.to_string(),
                    "addresses of one family",
                ));
            }
            family = Some(fam);
            let m: Vec<u8> = if fam == 4 {
                raw.mask4.to_ne_bytes().to_vec()
            } else {
                raw.mask6.iter().flat_map(|w| w.to_ne_bytes()).collect()
            };
            for i in 0..n {
                value[i] = bytes[i] & m[i];
                mask[i] = 0xff;
            }
            Ok(())
        };
        if let Some(ip) = self.src {
            put(ip, &mut f.value.src, &mut f.mask.src)?;
        }
        if let Some(ip) = self.dst {
            put(ip, &mut f.value.dst, &mut f.mask.dst)?;
        }
        if let Some(fam) = family {
            f.value.family = fam;
            f.mask.family = 0xff;
        }
        if let Some(p) = self.proto {
            f.value.proto = p;
            f.mask.proto = 0xff;
        }
        if self.sport.is_some() || self.dport.is_some() {
            let ports = nl_key_flags::NL_KEY_F_PORTS.0 as u8;
            f.value.flags = ports;
            f.mask.flags = ports;
        }
        if let Some(p) = self.sport {
            f.value.sport = p;
            f.mask.sport = 0xffff;
        }
        if let Some(p) = self.dport {
            f.value.dport = p;
            f.mask.dport = 0xffff;
        }
        if let Some(v) = self.vlan {
            f.value.vlan = v;
            f.mask.vlan = 0xffff;
        }
        Ok(f)
    }
}

/// One batch update of `keys` to `values` in `map` (named `name` in errors)
/// with `elem_flags`; nothing for no keys.
#[cfg(feature = "lab")]
fn update_batch<K: pod::Pod, V: pod::Pod>(
    map: &MapHandle,
    keys: &[K],
    values: &[V],
    elem_flags: MapFlags,
    name: &'static str,
) -> Result<()> {
    if keys.is_empty() {
        return Ok(());
    }
    map.update_batch(
        pod::bytes_of_slice(keys),
        pod::bytes_of_slice(values),
        keys.len() as u32,
        elem_flags,
        MapFlags::ANY,
    )
    .map_err(map_err("batch update", name))
}
