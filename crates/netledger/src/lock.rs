//! Strategy `lock`: counters behind per-slot spin locks, coherent live reads
//! (BPF_F_LOCK), and lossless cuts and resets by an in-kernel exchange.

use std::os::fd::{AsFd, BorrowedFd, OwnedFd};

use crate::config::LedgerConfig;
use crate::error::{Error, Result};
use crate::ledger::{load_object, map_err, ReadMode};
use crate::snapshot::Count;
use crate::sys;
use crate::types::{
    nl_exchange_req, nl_flow_key, nl_record, nl_slot, NL_SLOT_LIVE, NL_SLOT_PENDING,
};

/// `NL_EXCHANGE_INCOMPLETE` in netledger.h.
const EXCHANGE_INCOMPLETE: u32 = 1 << 31;
/// `NL_REC_EVICTED` in netledger.h.
const REC_EVICTED: u32 = 1;

/// Which keys an exchange takes: those with `(key & mask) == value`.
#[derive(Debug, Clone, Copy, Default)]
pub struct KeyFilter {
    pub value: nl_flow_key,
    pub mask: nl_flow_key,
}

/// What one exchange took: per-key counts and the slots it evicted.
#[derive(Debug, Default)]
pub(crate) struct Exchanged {
    pub records: Vec<nl_record>,
    pub evicted: Vec<u32>,
    /// Exchange runs it took (more than one when the output filled up).
    pub runs: u32,
}

#[derive(Debug)]
pub(crate) struct LockBackend {
    pub prog: OwnedFd,
    exchange: OwnedFd,
    pub index: OwnedFd,
    pub slots: OwnedFd,
    free: OwnedFd,
    pub stats: OwnedFd,
    out: OwnedFd,
    pub rodata: OwnedFd,
    out_map: sys::MappedArray,
    nslots: u32,
    /// Live keys at the last read: picks the cheaper way to read them next.
    live_hint: std::sync::atomic::AtomicUsize,
    /// Serializes runs of the exchange, which share nl_out.
    out_lock: std::sync::Mutex<()>,
}

impl LockBackend {
    pub fn load(cfg: &LedgerConfig) -> Result<LockBackend> {
        let n = cfg.max_flows;
        let mut fds = load_object(
            crate::objects::LOCK,
            cfg,
            &[
                ("nl_index", n),
                ("nl_slots", n),
                ("nl_free", n),
                ("nl_out", n),
            ],
            &["nl_xdp", "nl_exchange"],
            &[
                "nl_index", "nl_slots", "nl_free", "nl_stats", "nl_out", ".rodata",
            ],
        )?;
        let mut take = |name: &str| {
            fds.remove(name)
                .unwrap_or_else(|| panic!("lock object has {name}"))
        };
        let out = take("nl_out");
        let backend = LockBackend {
            prog: take("nl_xdp"),
            exchange: take("nl_exchange"),
            index: take("nl_index"),
            slots: take("nl_slots"),
            free: take("nl_free"),
            stats: take("nl_stats"),
            out_map: sys::MappedArray::map::<nl_record>(out.as_fd(), n as usize)
                .map_err(map_err("mmap", "nl_out"))?,
            out,
            rodata: take(".rodata"),
            nslots: n,
            live_hint: Default::default(),
            out_lock: Default::default(),
        };
        // Every slot starts free.
        for slot in 0..n {
            sys::queue_push(backend.free.as_fd(), slot).map_err(map_err("push", "nl_free"))?;
        }
        Ok(backend)
    }

    /// Reassemble from descriptors of a running ledger (pinned maps).
    #[allow(clippy::too_many_arguments)]
    pub fn from_fds(
        prog: OwnedFd,
        exchange: OwnedFd,
        index: OwnedFd,
        slots: OwnedFd,
        free: OwnedFd,
        stats: OwnedFd,
        out: OwnedFd,
        rodata: OwnedFd,
        nslots: u32,
    ) -> Result<LockBackend> {
        Ok(LockBackend {
            prog,
            exchange,
            index,
            slots,
            free,
            stats,
            out_map: sys::MappedArray::map::<nl_record>(out.as_fd(), nslots as usize)
                .map_err(map_err("mmap", "nl_out"))?,
            out,
            rodata,
            nslots,
            live_hint: Default::default(),
            out_lock: Default::default(),
        })
    }

    /// The descriptors to pin, by name.
    pub fn pinnable(&self) -> [(&'static str, BorrowedFd<'_>); 8] {
        [
            ("xdp", self.prog.as_fd()),
            ("exchange", self.exchange.as_fd()),
            ("index", self.index.as_fd()),
            ("slots", self.slots.as_fd()),
            ("free", self.free.as_fd()),
            ("stats", self.stats.as_fd()),
            ("out", self.out.as_fd()),
            ("rodata", self.rodata.as_fd()),
        ]
    }

    /// Every live flow: the index (key -> slot) joined with the slots, each
    /// slot copied with `mode` (BPF_F_LOCK: under its lock).
    pub fn raw_flows(&self, mode: ReadMode) -> Result<Vec<(nl_flow_key, Count)>> {
        use std::sync::atomic::Ordering::Relaxed;
        // Few live keys (as of the last read): the index, then one lookup per
        // live slot. Many: one batch over the slot array, whose slots hold
        // their key and state (a slot published moments ago, still PENDING,
        // shows from the next read on).
        if (self.live_hint.load(Relaxed) as u64) * 16 < u64::from(self.nslots) {
            let mut index: Vec<(nl_flow_key, u32)> = Vec::new();
            sys::lookup_batch(self.index.as_fd(), 0, 1024, &mut index)
                .map_err(map_err("batch lookup", "nl_index"))?;
            self.live_hint.store(index.len(), Relaxed);
            if (index.len() as u64) * 16 < u64::from(self.nslots) {
                return self.read_slots(index, mode);
            }
        }
        let out: Vec<(nl_flow_key, Count)> = if mode == ReadMode::Locked {
            // The exchange program in peek mode: every live slot copied under
            // its lock in one in-kernel pass, read through the mmapped nl_out.
            self.run_exchange(None, 0, false, true)?
                .records
                .iter()
                .map(|r| (r.key, record_count(r)))
                .collect()
        } else {
            let mut slots: Vec<(u32, nl_slot)> = Vec::with_capacity(self.nslots as usize);
            sys::lookup_batch(self.slots.as_fd(), mode.flags(), 4096, &mut slots)
                .map_err(map_err("batch lookup", "nl_slots"))?;
            slots
                .into_iter()
                .filter(|(_, s)| s.state == NL_SLOT_LIVE)
                .map(|(_, s)| (s.key, slot_count(&s)))
                .collect()
        };
        self.live_hint.store(out.len(), Relaxed);
        Ok(out)
    }

    /// The same, one syscall per key and per slot (fallback and baseline).
    pub fn raw_flows_per_element(&self, mode: ReadMode) -> Result<Vec<(nl_flow_key, Count)>> {
        let fd = self.index.as_fd();
        let mut index = Vec::new();
        for key in sys::all_keys::<nl_flow_key>(fd).map_err(map_err("next key", "nl_index"))? {
            // A key deleted between the two calls is simply gone.
            if let Some(n) =
                sys::lookup_elem::<_, u32>(fd, &key, 0).map_err(map_err("lookup", "nl_index"))?
            {
                index.push((key, n));
            }
        }
        self.read_slots(index, mode)
    }

    /// One key's counters, copied with `mode`; None if it has no live slot.
    pub fn lookup(&self, key: &nl_flow_key, mode: ReadMode) -> Result<Option<Count>> {
        let Some(n) = sys::lookup_elem::<_, u32>(self.index.as_fd(), key, 0)
            .map_err(map_err("lookup", "nl_index"))?
        else {
            return Ok(None);
        };
        Ok(self
            .read_slots(vec![(*key, n)], mode)?
            .first()
            .map(|(_, c)| *c))
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
            let slot: Option<nl_slot> = sys::lookup_elem(self.slots.as_fd(), &n, mode.flags())
                .map_err(map_err("lookup", "nl_slots"))?;
            if let Some(s) = slot.filter(|s| {
                (s.state == NL_SLOT_LIVE || s.state == NL_SLOT_PENDING)
                    && key_bytes(&s.key) == key_bytes(&key)
            }) {
                out.push((key, slot_count(&s)));
            }
        }
        Ok(out)
    }

    /// Run the exchange: copy and zero (under each slot's lock) every key
    /// that `filter` selects, evicting keys idle for `idle_cuts` cuts (every
    /// key taken, with `evict_all`).
    pub fn exchange(
        &self,
        filter: Option<&KeyFilter>,
        idle_cuts: u32,
        evict_all: bool,
    ) -> Result<Exchanged> {
        self.run_exchange(filter, idle_cuts, evict_all, false)
    }

    /// Run the exchange program. With `peek`, it only copies (under each
    /// slot's lock): a coherent live snapshot in one pass, without zeroing.
    fn run_exchange(
        &self,
        filter: Option<&KeyFilter>,
        idle_cuts: u32,
        evict_all: bool,
        peek: bool,
    ) -> Result<Exchanged> {
        // nl_out is shared by every run: one at a time in this process (the
        // pin directory's flock covers other processes).
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
        };
        // SAFETY: nl_exchange_req is plain old data with no padding holes
        // that matter (all fields initialised above).
        let bytes = unsafe {
            std::slice::from_raw_parts(
                (&req as *const nl_exchange_req).cast::<u8>(),
                std::mem::size_of_val(&req),
            )
        };
        let mut got = Exchanged::default();
        loop {
            got.runs += 1;
            let run = sys::test_run(self.exchange.as_fd(), bytes, None, 1)
                .map_err(|source| Error::TestRun { source })?;
            let n = run.retval & !EXCHANGE_INCOMPLETE;
            let records: Vec<nl_record> = self.out_map.read(n as usize);
            for r in records {
                if r.flags & REC_EVICTED != 0 {
                    got.evicted.push(r.slot);
                }
                got.records.push(r);
            }
            if run.retval & EXCHANGE_INCOMPLETE == 0 {
                return Ok(got);
            }
        }
    }

    /// Give each key a live slot holding `count`, from userspace, as the
    /// data path would (for measurements with many keys: driving the XDP
    /// program once per key through test_run would take a grace period each).
    pub fn populate(&self, keys: &[nl_flow_key], count: Count) -> Result<()> {
        // Keys that already have a slot get their counts set in place.
        let mut index: Vec<(nl_flow_key, u32)> = Vec::new();
        sys::lookup_batch(self.index.as_fd(), 0, 1024, &mut index)
            .map_err(map_err("batch lookup", "nl_index"))?;
        let existing: std::collections::HashMap<[u8; 44], u32> =
            index.iter().map(|(k, n)| (key_bytes(k), *n)).collect();
        let (mut slots, mut values, mut new_keys, mut new_slots) =
            (Vec::new(), Vec::new(), Vec::new(), Vec::new());
        for key in keys {
            let n = match existing.get(&key_bytes(key)) {
                Some(&n) => n,
                None => {
                    let n = sys::queue_pop(self.free.as_fd())
                        .map_err(map_err("pop", "nl_free"))?
                        .ok_or(Error::InvalidConfig {
                            what: "number of keys to populate",
                            value: keys.len().to_string(),
                            expected: "at most --max-flows",
                        })?;
                    new_keys.push(*key);
                    new_slots.push(n);
                    n
                }
            };
            slots.push(n);
            values.push(nl_slot {
                state: NL_SLOT_LIVE,
                key: *key,
                packets: count.packets,
                bytes: count.bytes,
                ..Default::default()
            });
        }
        sys::update_batch(
            self.slots.as_fd(),
            &slots,
            &values,
            libbpf_sys::BPF_F_LOCK as u64,
        )
        .map_err(map_err("batch update", "nl_slots"))?;
        sys::update_batch(self.index.as_fd(), &new_keys, &new_slots, 0)
            .map_err(map_err("batch update", "nl_index"))?;
        Ok(())
    }

    /// Return evicted slots to the free queue. Only after an RCU grace
    /// period since their eviction: no writer still holds their number.
    pub fn recycle(&self, slots: &[u32]) -> Result<()> {
        for &n in slots {
            sys::queue_push(self.free.as_fd(), n).map_err(map_err("push", "nl_free"))?;
        }
        Ok(())
    }
}

fn slot_count(s: &nl_slot) -> Count {
    Count {
        packets: s.packets,
        bytes: s.bytes,
    }
}

pub(crate) fn record_count(r: &nl_record) -> Count {
    Count {
        packets: r.packets,
        bytes: r.bytes,
    }
}

pub(crate) fn key_bytes(k: &nl_flow_key) -> [u8; 44] {
    // SAFETY: nl_flow_key is 44 bytes of plain data (asserted in lib.rs).
    unsafe { std::mem::transmute_copy(k) }
}

/// What to select in a targeted reset; every field given must match.
#[derive(Debug, Clone, Default)]
pub struct KeySelector {
    pub src: Option<std::net::IpAddr>,
    pub dst: Option<std::net::IpAddr>,
    pub proto: Option<u8>,
    pub sport: Option<u16>,
    pub dport: Option<u16>,
    pub vlan: Option<u16>,
}

impl KeySelector {
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
    pub fn filter(&self, cfg: &LedgerConfig) -> Result<KeyFilter> {
        use crate::config::KeyMode;
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
                "--src",
                mode.to_string(),
                "a key mode with source addresses",
            ));
        }
        if self.dst.is_some() && !mode.has_dst() {
            return Err(invalid(
                "--dst",
                mode.to_string(),
                "a key mode with destination addresses",
            ));
        }
        if (self.proto.is_some() || self.sport.is_some() || self.dport.is_some()) && !five {
            return Err(invalid(
                "--proto/--sport/--dport",
                mode.to_string(),
                "key mode five-tuple",
            ));
        }
        if self.vlan.is_some() && !cfg.vlan {
            return Err(invalid(
                "--vlan",
                "a ledger without VLAN keys".into(),
                "a ledger started with --vlan",
            ));
        }
        let mut f = KeyFilter::default();
        let raw = cfg.to_raw();
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
                    "--src/--dst",
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
            f.value.flags = crate::types::NL_KEY_F_PORTS;
            f.mask.flags = crate::types::NL_KEY_F_PORTS;
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
