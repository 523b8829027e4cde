use std::collections::HashMap;
use std::fs;
use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::Path;
use std::sync::{Mutex, OnceLock};
use std::time::SystemTime;

use libbpf_rs::{MapCore, ObjectBuilder};

use crate::config::{LedgerConfig, Strategy, XdpMode};
use crate::error::{Error, Result};
use crate::key::FlowKey;
use crate::lock::{KeyFilter, LockBackend};
use crate::pin::CutLock;
use crate::snapshot::{Buckets, Count, Interval, Snapshot};
use crate::swap::SwapBackend;
use crate::sys;
use crate::types::{nl_config, nl_flow_key, nl_stats};

/// Where the kernel publishes its own BTF; the data path is verified against it.
pub const KERNEL_BTF: &str = "/sys/kernel/btf/vmlinux";

/// The kernel's internal "operation not supported" (not in libc).
pub(crate) const ENOTSUPP: i32 = 524;

/// The id of the XDP program attached to `iface` in any mode, if one is.
pub fn xdp_program_id(iface: &str) -> Result<Option<u32>> {
    let ifindex = sys::ifindex(iface).ok_or_else(|| Error::InterfaceNotFound {
        name: iface.to_string(),
    })?;
    let id = sys::xdp_query_id(ifindex, 0).map_err(|source| Error::Attach {
        iface: iface.to_string(),
        source,
    })?;
    Ok((id != 0).then_some(id))
}

/// How flow values are copied out of the kernel.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReadMode {
    /// With BPF_F_LOCK: under each flow's spin lock, coherent.
    Locked,
    /// Without it: packets and bytes may come from different packets. Only
    /// for showing that the lock matters.
    Unlocked,
}

impl ReadMode {
    pub(crate) fn flags(self) -> u64 {
        match self {
            ReadMode::Locked => libbpf_sys::BPF_F_LOCK as u64,
            ReadMode::Unlocked => 0,
        }
    }
}

#[derive(Debug)]
pub(crate) enum Backend {
    Lock(LockBackend),
    Swap(SwapBackend),
}

/// Where the last cut left off.
#[derive(Debug)]
struct CutState {
    at: SystemTime,
    buckets: Buckets,
}

/// A loaded data path: the XDP program and its maps, for one strategy.
///
/// Only descriptors are kept, so a `Ledger` is `Send + Sync` and may be read
/// from several threads while others drive it through test_run.
#[derive(Debug)]
pub struct Ledger {
    cfg: LedgerConfig,
    pub(crate) backend: Backend,
    grace: sys::GraceMaps,
    ncpus: usize,
    cut: Mutex<CutState>,
    /// Set once pinned (or opened from pins): serializes exchanges across processes.
    cut_lock: OnceLock<CutLock>,
}

/// One BPF_PROG_TEST_RUN of the data path.
#[derive(Debug, Clone)]
pub struct TestRun {
    /// The program's return value (always XDP_PASS for netledger).
    pub retval: u32,
    /// Mean nanoseconds per run, as measured by the kernel.
    pub duration_ns: u32,
    /// The frame as the program left it.
    pub frame_out: Vec<u8>,
}

/// An XDP attachment; dropping it detaches the program.
#[derive(Debug)]
pub struct Attachment {
    pub iface: String,
    pub ifindex: u32,
    /// The mode actually used (never `Auto`).
    pub mode: XdpMode,
    _link: OwnedFd,
}

/// Fail early, with the fix, where loading would fail obscurely.
pub fn preflight() -> Result<()> {
    let btf = std::env::var("NETLEDGER_KERNEL_BTF").unwrap_or_else(|_| KERNEL_BTF.to_string());
    if !Path::new(&btf).exists() {
        return Err(Error::NoKernelBtf { path: btf });
    }
    if !has_bpf_capabilities() {
        return Err(Error::NotPrivileged);
    }
    Ok(())
}

/// CAP_SYS_ADMIN, or CAP_BPF with CAP_PERFMON, in the effective set.
fn has_bpf_capabilities() -> bool {
    const CAP_SYS_ADMIN: u32 = 21;
    const CAP_PERFMON: u32 = 38;
    const CAP_BPF: u32 = 39;
    let Ok(status) = fs::read_to_string("/proc/self/status") else {
        return true; // cannot tell: let the kernel decide
    };
    let Some(eff) = status
        .lines()
        .find_map(|l| l.strip_prefix("CapEff:"))
        .and_then(|h| u64::from_str_radix(h.trim(), 16).ok())
    else {
        return true;
    };
    let has = |c: u32| eff & (1u64 << c) != 0;
    has(CAP_SYS_ADMIN) || (has(CAP_BPF) && has(CAP_PERFMON))
}

pub(crate) fn map_err(op: &'static str, map: &'static str) -> impl FnOnce(io::Error) -> Error {
    move |source| Error::Map { op, map, source }
}

fn load_err(source: libbpf_rs::Error) -> Error {
    if source.kind() == libbpf_rs::ErrorKind::PermissionDenied {
        Error::NotPrivileged
    } else {
        Error::Load { source }
    }
}

/// Open an embedded object, write `cfg` into its `.rodata` (which holds only
/// `nl_cfg`), size its maps, load it, and return duplicated descriptors of
/// the named programs and maps (the object itself is closed).
pub(crate) fn load_object(
    bytes: &[u8],
    cfg: &LedgerConfig,
    sizes: &[(&str, u32)],
    progs: &[&str],
    maps: &[&str],
) -> Result<HashMap<String, OwnedFd>> {
    cfg.validate()?;
    preflight()?;
    let mut open = ObjectBuilder::default()
        .name("netledger")
        .map_err(load_err)?
        .open_memory(bytes)
        .map_err(load_err)?;
    for mut map in open.maps_mut() {
        let name = map.name().to_string_lossy().into_owned();
        if name.ends_with(".rodata") {
            let data = map
                .initial_value_mut()
                .expect(".rodata has an initial value");
            assert_eq!(
                data.len(),
                std::mem::size_of::<nl_config>(),
                ".rodata holds only nl_cfg"
            );
            // SAFETY: the section is exactly an nl_config (same BTF), checked above.
            unsafe {
                std::ptr::write_unaligned(data.as_mut_ptr().cast::<nl_config>(), cfg.to_raw())
            };
        } else if let Some((_, n)) = sizes.iter().find(|(m, _)| *m == name) {
            map.set_max_entries(*n).map_err(load_err)?;
        }
    }
    let obj = open.load().map_err(load_err)?;
    let dup = |fd: BorrowedFd<'_>| fd.try_clone_to_owned().map_err(map_err("dup", "object"));
    let mut out = HashMap::new();
    for p in obj.progs() {
        let name = p.name().to_string_lossy().into_owned();
        if progs.contains(&name.as_str()) {
            out.insert(name, dup(p.as_fd())?);
        }
    }
    for m in obj.maps() {
        let name = m.name().to_string_lossy().into_owned();
        let key = if name.ends_with(".rodata") {
            ".rodata".to_string()
        } else {
            name
        };
        if maps.contains(&key.as_str()) {
            out.insert(key, dup(m.as_fd())?);
        }
    }
    Ok(out)
}

/// The conservation buckets, summed over CPUs, from a reading in which no
/// CPU was half-way through accounting a packet.
pub(crate) fn read_buckets(stats: BorrowedFd<'_>, ncpus: usize) -> Result<Buckets> {
    const TRIES: u32 = 10_000;
    for _ in 0..TRIES {
        let per_cpu: Vec<nl_stats> =
            sys::lookup_percpu(stats, 0, ncpus).map_err(map_err("lookup", "nl_stats"))?;
        if per_cpu.iter().all(|s| s.done == s.started) {
            return Ok(sum_buckets(&per_cpu));
        }
        std::hint::spin_loop();
    }
    Err(Error::StatsUnsettled { tries: TRIES })
}

pub(crate) fn sum_buckets(per_cpu: &[nl_stats]) -> Buckets {
    let mut b = Buckets::default();
    for s in per_cpu {
        for (i, c) in s.bucket.iter().enumerate() {
            b.counts[i].add(Count::from(*c));
        }
        b.reroutes += s.reroutes;
    }
    b
}

impl Ledger {
    /// Load the data path with `cfg`. Nothing is attached yet.
    pub fn load(cfg: LedgerConfig) -> Result<Ledger> {
        let backend = match cfg.strategy {
            Strategy::Lock => Backend::Lock(LockBackend::load(&cfg)?),
            Strategy::Swap => Backend::Swap(SwapBackend::load(&cfg)?),
        };
        Ledger::from_backend(cfg, backend, Buckets::default())
    }

    /// A ledger around loaded (or opened) programs and maps; `buckets` is the
    /// reading the first cut's bucket deltas start from.
    pub(crate) fn from_backend(
        cfg: LedgerConfig,
        backend: Backend,
        buckets: Buckets,
    ) -> Result<Ledger> {
        Ok(Ledger {
            backend,
            grace: sys::GraceMaps::create().map_err(map_err("create", "nl_grace"))?,
            ncpus: sys::possible_cpus().map_err(map_err("count CPUs", "nl_stats"))?,
            cut: Mutex::new(CutState {
                at: SystemTime::now(),
                buckets,
            }),
            cut_lock: OnceLock::new(),
            cfg,
        })
    }

    pub(crate) fn set_cut_lock(&self, lock: CutLock) {
        let _ = self.cut_lock.set(lock);
    }

    pub fn config(&self) -> &LedgerConfig {
        &self.cfg
    }

    /// The data path program, for test_run harnesses.
    pub fn program(&self) -> BorrowedFd<'_> {
        match &self.backend {
            Backend::Lock(b) => b.prog.as_fd(),
            Backend::Swap(b) => b.program(),
        }
    }

    fn lock_backend(&self, what: &'static str) -> Result<&LockBackend> {
        match &self.backend {
            Backend::Lock(b) => Ok(b),
            Backend::Swap(_) => Err(Error::NeedsLockStrategy { what }),
        }
    }

    /// Attach the data path to `iface` (XDP, ingress).
    pub fn attach_xdp(&self, iface: &str, mode: XdpMode) -> Result<Attachment> {
        let ifindex = sys::ifindex(iface).ok_or_else(|| Error::InterfaceNotFound {
            name: iface.to_string(),
        })?;
        let attempts: &[XdpMode] = match mode {
            XdpMode::Auto => &[XdpMode::Native, XdpMode::Generic],
            XdpMode::Native => &[XdpMode::Native],
            XdpMode::Generic => &[XdpMode::Generic],
        };
        let mut last = None;
        for &m in attempts {
            let flags = match m {
                XdpMode::Native => libbpf_sys::XDP_FLAGS_DRV_MODE,
                _ => libbpf_sys::XDP_FLAGS_SKB_MODE,
            };
            match sys::xdp_link(self.program(), ifindex, flags) {
                Ok(link) => {
                    return Ok(Attachment {
                        iface: iface.to_string(),
                        ifindex,
                        mode: m,
                        _link: link,
                    })
                }
                Err(e) => last = Some((m, e)),
            }
        }
        let (m, e) = last.expect("at least one attempt");
        Err(match e.raw_os_error() {
            Some(libc::EPERM) | Some(libc::EACCES) => Error::NotPrivileged,
            Some(libc::EOPNOTSUPP) | Some(ENOTSUPP) => Error::XdpModeUnsupported {
                iface: iface.to_string(),
                mode: m.name(),
            },
            Some(libc::EBUSY) | Some(libc::EEXIST) => Error::XdpBusy {
                iface: iface.to_string(),
            },
            Some(libc::ENODEV) => Error::InterfaceNotFound {
                name: iface.to_string(),
            },
            _ => Error::Attach {
                iface: iface.to_string(),
                source: e,
            },
        })
    }

    /// Return once every run of the data path that started before this call
    /// has finished (one RCU grace period, tens of milliseconds). After a
    /// detach, the counters read after this are final.
    pub fn wait_for_programs(&self) -> Result<()> {
        self.grace.wait().map_err(map_err("update", "nl_grace"))
    }

    /// Run the data path on `frame` `repeat` times (BPF_PROG_TEST_RUN).
    pub fn test_run(&self, frame: &[u8], repeat: u32) -> Result<TestRun> {
        test_run(self.program(), frame, repeat)
    }

    /// Every live flow's raw key and counts since the last cut, each copied
    /// with `mode` (strategy `lock`).
    pub fn raw_flows(&self, mode: ReadMode) -> Result<Vec<(nl_flow_key, Count)>> {
        self.lock_backend("live flow reads")?.raw_flows(mode)
    }

    /// The same with one syscall per key (the fallback, and a baseline).
    pub fn raw_flows_per_element(&self, mode: ReadMode) -> Result<Vec<(nl_flow_key, Count)>> {
        self.lock_backend("live flow reads")?
            .raw_flows_per_element(mode)
    }

    /// One key's counts since the last cut, copied with `mode`.
    pub fn lookup_raw(&self, key: &nl_flow_key, mode: ReadMode) -> Result<Option<Count>> {
        self.lock_backend("live flow reads")?.lookup(key, mode)
    }

    /// The conservation buckets since load (strategy `lock`) or since the
    /// last cut (`swap`), from a settled reading.
    pub fn buckets(&self) -> Result<Buckets> {
        match &self.backend {
            Backend::Lock(b) => read_buckets(b.stats.as_fd(), self.ncpus),
            Backend::Swap(b) => b.buckets(self.ncpus),
        }
    }

    /// The buckets summed without waiting for settled CPUs (to show why the
    /// sequence counters matter).
    pub fn buckets_unsettled(&self) -> Result<Buckets> {
        let b = self.lock_backend("unsettled bucket reads")?;
        let per_cpu: Vec<nl_stats> = sys::lookup_percpu(b.stats.as_fd(), 0, self.ncpus)
            .map_err(map_err("lookup", "nl_stats"))?;
        Ok(sum_buckets(&per_cpu))
    }

    /// A live, coherent snapshot (strategy `lock`): every flow's counts since
    /// the last cut, each copied under its lock, then the buckets since load.
    pub fn snapshot(&self) -> Result<Snapshot> {
        let at = SystemTime::now();
        let raw = self.raw_flows(ReadMode::Locked)?;
        let mut snap = Snapshot::empty(at);
        for (k, c) in raw {
            snap.flows
                .entry(FlowKey::from_raw(&k, &self.cfg))
                .or_default()
                .add(c);
        }
        snap.buckets = self.buckets()?;
        Ok(snap)
    }

    /// Cut an interval: everything counted since the previous cut (or load),
    /// taken out of the kernel without losing or double-counting a packet.
    /// Successive cuts partition the traffic: each packet is in exactly one.
    pub fn cut(&self) -> Result<Interval> {
        self.cut_inner(false)
    }

    /// A cut that also evicts every key (strategy `lock`): each key's next
    /// packet gets a new slot. Exercises eviction against live writers; a
    /// ledger cut this way keeps no key longer than an interval.
    pub fn cut_evicting_all(&self) -> Result<Interval> {
        self.lock_backend("evicting cuts")?;
        self.cut_inner(true)
    }

    fn cut_inner(&self, evict_all: bool) -> Result<Interval> {
        let mut state = self.cut.lock().unwrap_or_else(|e| e.into_inner());
        let (flows, buckets, end) = match &self.backend {
            Backend::Lock(b) => {
                let held = self.cut_lock.get().map(CutLock::hold);
                let got = b.exchange(None, self.cfg.idle_cuts, evict_all)?;
                drop(held);
                let end = SystemTime::now();
                if !got.evicted.is_empty() {
                    // Evicted slots go back only once no writer can hold them.
                    self.wait_for_programs()?;
                    b.recycle(&got.evicted)?;
                }
                let total = read_buckets(b.stats.as_fd(), self.ncpus)?;
                let delta = total.since(&state.buckets);
                state.buckets = total;
                let mut evicted = delta;
                evicted.evicted = got.evicted.len() as u64;
                (self.group_exchanged(&got), evicted, end)
            }
            Backend::Swap(b) => {
                let (raw, buckets, unique) = b.cut(&self.grace, self.ncpus)?;
                // The interval ended at the flip, not when the drain finished.
                let end = b.flipped_at();
                let flows = if unique {
                    self.decode(raw.into_iter())
                } else {
                    self.group(raw.into_iter())
                };
                (flows, buckets, end)
            }
        };
        let interval = Interval::new(state.at, end, flows, buckets);
        state.at = end;
        Ok(interval)
    }

    /// Take the counts of the keys `filter` selects out of the ledger (all
    /// keys for None), losslessly, and return them (strategy `lock`).
    pub fn reset(&self, filter: Option<&KeyFilter>) -> Result<Vec<(FlowKey, Count)>> {
        let b = self.lock_backend("reset")?;
        let _state = self.cut.lock().unwrap_or_else(|e| e.into_inner());
        let _held = self.cut_lock.get().map(CutLock::hold);
        let got = b.exchange(filter, 0, false)?;
        Ok(self.group_exchanged(&got))
    }

    /// Give each key a live flow holding `count`, from userspace (strategy
    /// `lock`; for measurements with many keys on a fresh ledger).
    pub fn populate(&self, keys: &[nl_flow_key], count: Count) -> Result<()> {
        self.lock_backend("populating keys")?.populate(keys, count)
    }

    /// Decode raw keys and add up records of the same key.
    fn group(&self, raw: impl Iterator<Item = (nl_flow_key, Count)>) -> Vec<(FlowKey, Count)> {
        // Sort by the raw key bytes and merge neighbours: cheaper than hashing
        // decoded keys when a cut holds a million records.
        let mut recs: Vec<([u8; 44], nl_flow_key, Count)> = raw
            .filter(|(_, c)| !c.is_zero())
            .map(|(k, c)| (crate::lock::key_bytes(&k), k, c))
            .collect();
        recs.sort_unstable_by_key(|r| r.0);
        let mut out: Vec<(FlowKey, Count)> = Vec::with_capacity(recs.len());
        let mut last: Option<[u8; 44]> = None;
        for (bytes, k, c) in recs {
            if last == Some(bytes) {
                out.last_mut().expect("a previous record").1.add(c);
            } else {
                out.push((FlowKey::from_raw(&k, &self.cfg), c));
                last = Some(bytes);
            }
        }
        out
    }

    /// The records of one exchange. A key has one live slot except while it
    /// is evicted and re-created, so records need merging only when the
    /// exchange evicted something or ran more than once.
    fn group_exchanged(&self, got: &crate::lock::Exchanged) -> Vec<(FlowKey, Count)> {
        let flows = got
            .records
            .iter()
            .map(|r| (r.key, crate::lock::record_count(r)));
        if got.runs > 1 || !got.evicted.is_empty() {
            return self.group(flows);
        }
        self.decode(flows)
    }

    /// Decode records known to hold each key once.
    fn decode(&self, raw: impl Iterator<Item = (nl_flow_key, Count)>) -> Vec<(FlowKey, Count)> {
        raw.filter(|(_, c)| !c.is_zero())
            .map(|(k, c)| (FlowKey::from_raw(&k, &self.cfg), c))
            .collect()
    }
}

impl Attachment {
    /// Detach now (dropping does the same).
    pub fn detach(self) {}
}

/// BPF_PROG_TEST_RUN of any XDP program: mean ns per run, the verdict, the frame.
pub(crate) fn test_run(prog: BorrowedFd<'_>, frame: &[u8], repeat: u32) -> Result<TestRun> {
    let out =
        sys::test_run(prog, frame, None, repeat).map_err(|source| Error::TestRun { source })?;
    Ok(TestRun {
        retval: out.retval,
        duration_ns: out.duration_ns,
        frame_out: out.data_out,
    })
}

/// The empty XDP program (`return XDP_PASS`): the baseline of ns/packet figures.
#[derive(Debug)]
pub struct EmptyProgram {
    prog: OwnedFd,
}

impl EmptyProgram {
    pub fn load() -> Result<Self> {
        preflight()?;
        let obj = ObjectBuilder::default()
            .open_memory(crate::objects::BENCH)
            .map_err(load_err)?
            .load()
            .map_err(load_err)?;
        let prog = obj
            .progs()
            .find(|p| p.name() == "nl_empty")
            .expect("bench object has nl_empty")
            .as_fd()
            .try_clone_to_owned()
            .map_err(map_err("dup", "object"))?;
        Ok(EmptyProgram { prog })
    }

    pub fn test_run(&self, frame: &[u8], repeat: u32) -> Result<TestRun> {
        test_run(self.prog.as_fd(), frame, repeat)
    }
}
