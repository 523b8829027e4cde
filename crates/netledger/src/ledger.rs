//! [`Ledger`]: one loaded data path (either strategy) and what can be done
//! with it: attach, cut intervals (in one step, or in two around a commit),
//! read live, reset, pin.

use std::os::fd::BorrowedFd;
use std::sync::{Mutex, OnceLock};
use std::time::SystemTime;

use crate::attach::{self, Attachment, TcMode};
use crate::config::{Hook, LedgerConfig, Strategy, XdpMode};
use crate::ctl::{self, Ctl};
use crate::error::{map_err, Error, Result};
use crate::key::{decode_flows, FlowKey};
use crate::lock::{buckets_of, KeySelector, LockBackend, LockTaken, ReadMode};
use crate::maps::Grace;
use crate::pin::{CutLock, PinSet};
use crate::record::{Buckets, Count, Direction, Interval, Snapshot};
use crate::skel::types::nl_cut_ctl;
use crate::swap::{SwapBackend, SwapTaken};

/// A strategy's programs and maps.
#[derive(Debug)]
pub(crate) enum Backend {
    Lock(LockBackend),
    Swap(SwapBackend),
}

/// A loaded data path: its program and maps, for one strategy.
///
/// Only owned descriptors are kept, so a `Ledger` is `Send + Sync` and may be
/// read from several threads while others drive it.
#[derive(Debug)]
pub struct Ledger {
    cfg: LedgerConfig,
    pub(crate) backend: Backend,
    grace: Grace,
    /// Where numbered cuts stand (`nl_ctl`).
    ctl: Ctl,
    /// One take at a time.
    cutting: Mutex<()>,
    /// The interface whose traffic this ledger counts (its records' label).
    iface: OnceLock<String>,
    /// Where its program runs.
    hook: Hook,
    /// The direction it counts.
    dir: Direction,
    /// Set once pinned (or opened from pins): serializes exchanges across processes.
    cut_lock: OnceLock<CutLock>,
}

/// A cut taken out of the kernel and not yet cleared there: its interval
/// is safe to commit; [`Ledger::finish_cut`] then clears the kernel's copy.
/// Until then the kernel keeps it, so a process that dies before finishing
/// leaves it for the next one ([`Ledger::take_cut`] hands it out again).
#[derive(Debug)]
pub struct PendingCut {
    /// The cut's records, numbered (`seq`).
    pub interval: Interval,
    taken: Taken,
}

#[derive(Debug)]
enum Taken {
    Lock(LockTaken),
    Swap(SwapTaken),
}

impl Ledger {
    /// Load the ingress XDP data path with `cfg`. Nothing is attached yet;
    /// the first interval starts now.
    pub fn load(cfg: LedgerConfig) -> Result<Ledger> {
        Ledger::load_at(cfg, Hook::Xdp)
    }

    /// Load the data path for `hook` with `cfg`. Nothing is attached yet;
    /// the first interval starts now.
    pub fn load_at(cfg: LedgerConfig, hook: Hook) -> Result<Ledger> {
        cfg.validate()?;
        crate::load::preflight()?;
        let backend = match cfg.strategy {
            Strategy::Lock => Backend::Lock(LockBackend::load(&cfg, hook)?),
            Strategy::Swap => Backend::Swap(SwapBackend::load(&cfg, hook)?),
        };
        let ledger = Ledger::from_backend(cfg, backend, hook)?;
        // Cut 0 ends at load: the first interval starts here.
        ledger.ctl.write(&nl_cut_ctl {
            end_ns: ctl::ns(SystemTime::now()),
            ..Default::default()
        })?;
        Ok(ledger)
    }

    /// A ledger around loaded (or opened) programs and maps.
    pub(crate) fn from_backend(cfg: LedgerConfig, backend: Backend, hook: Hook) -> Result<Ledger> {
        let ctl = match &backend {
            Backend::Lock(b) => b.ctl()?,
            Backend::Swap(b) => b.ctl()?,
        };
        Ok(Ledger {
            backend,
            grace: Grace::create().map_err(map_err("create", "nl_grace"))?,
            ctl,
            cutting: Mutex::new(()),
            iface: OnceLock::new(),
            hook,
            dir: hook.direction(),
            cut_lock: OnceLock::new(),
            cfg,
        })
    }

    /// Open the backend pinned in `set` (loaded with `cfg`).
    pub(crate) fn open_backend(
        set: &PinSet,
        cfg: &LedgerConfig,
        iface: &str,
        hook: Hook,
    ) -> Result<Ledger> {
        let backend = match cfg.strategy {
            Strategy::Lock => Backend::Lock(LockBackend::open(set, cfg, hook)?),
            Strategy::Swap => Backend::Swap(SwapBackend::open(set, cfg, hook)?),
        };
        let ledger = Ledger::from_backend(cfg.clone(), backend, hook)?;
        let _ = ledger.iface.set(iface.to_string());
        Ok(ledger)
    }

    /// Pin the backend's programs and maps into `set`.
    pub(crate) fn pin_backend(&self, set: &PinSet) -> Result<()> {
        match &self.backend {
            Backend::Lock(b) => b.pin(set),
            Backend::Swap(b) => b.pin(set),
        }
    }

    /// Serialize this ledger's exchanges with other processes through `set`'s lock.
    pub(crate) fn set_cut_lock(&self, set: &PinSet) -> Result<()> {
        let _ = self.cut_lock.set(CutLock::open(set.dir())?);
        Ok(())
    }

    /// The configuration the data path was loaded with.
    pub fn config(&self) -> &LedgerConfig {
        &self.cfg
    }

    /// The interface the ledger counts on ("" before it is attached).
    pub fn iface(&self) -> &str {
        self.iface.get().map_or("", String::as_str)
    }

    pub(crate) fn set_iface(&self, iface: &str) {
        let _ = self.iface.set(iface.to_string());
    }

    /// The direction it counts.
    pub fn direction(&self) -> Direction {
        self.dir
    }

    fn lock_backend(&self, what: &'static str) -> Result<&LockBackend> {
        match &self.backend {
            Backend::Lock(b) => Ok(b),
            Backend::Swap(_) => Err(Error::Unsupported {
                what,
                strategy: self.cfg.strategy,
            }),
        }
    }

    /// Where the data path runs.
    pub fn hook(&self) -> Hook {
        self.hook
    }

    /// Attach the XDP data path to `iface` (see [`Ledger::attach`]).
    pub fn attach_xdp(&self, iface: &str, mode: XdpMode) -> Result<Attachment> {
        self.attach(iface, mode, TcMode::Auto)
    }

    /// Attach the data path to `iface` at its hook: XDP in `xdp_mode`, or tc
    /// in `tc_mode` (tcx, or clsact where tcx is missing).
    pub fn attach(&self, iface: &str, xdp_mode: XdpMode, tc_mode: TcMode) -> Result<Attachment> {
        let a = match self.hook {
            Hook::Xdp => attach::xdp(self.program(), iface, xdp_mode)?,
            hook => attach::tc(self.program(), iface, hook, tc_mode)?,
        };
        self.set_iface(iface);
        Ok(a)
    }

    /// The data path program.
    pub(crate) fn program(&self) -> BorrowedFd<'_> {
        match &self.backend {
            Backend::Lock(b) => b.program(),
            Backend::Swap(b) => b.program(),
        }
    }

    /// Return once every run of the data path that started before this call
    /// has finished (one RCU grace period, tens of milliseconds). After a
    /// detach, the counters read after this are final.
    pub fn wait_for_programs(&self) -> Result<()> {
        self.grace.wait().map_err(map_err("update", "nl_grace"))
    }

    /// The conservation buckets since load (strategy `lock`, from a settled
    /// reading) or since the last cut (`swap`, one plain reading: exact when
    /// no frame is in flight).
    pub fn buckets(&self) -> Result<Buckets> {
        match &self.backend {
            Backend::Lock(b) => b.buckets(),
            Backend::Swap(b) => b.buckets(),
        }
    }

    /// A live, coherent snapshot (strategy `lock`): every flow's counts since
    /// the last cut, each copied under its lock, then the buckets since load.
    pub fn snapshot(&self) -> Result<Snapshot> {
        let b = self.lock_backend("a live read")?;
        let at = SystemTime::now();
        let raw = b.raw_flows(ReadMode::Locked)?;
        let mut snap = Snapshot::empty(at);
        for (k, c) in raw {
            snap.flows
                .entry(FlowKey::from_raw(&k, &self.cfg))
                .or_default()
                .add(c);
        }
        snap.buckets = b.buckets()?;
        Ok(snap)
    }

    /// Cut an interval: everything counted since the previous cut (or load),
    /// taken out of the kernel without losing or double-counting a packet.
    /// Successive cuts partition the traffic: each packet is in exactly one.
    pub fn cut(&self) -> Result<Interval> {
        let cut = self.take_cut()?;
        self.finish_cut(&cut)?;
        Ok(cut.interval)
    }

    /// The number of the last cut finished.
    pub fn last_seq(&self) -> Result<u64> {
        let c = self.ctl.read()?;
        Ok(if c.phase == ctl::OPEN {
            c.seq - 1
        } else {
            c.seq
        })
    }

    /// Whether a cut is open: taken and not finished (by this process, or by
    /// one that died).
    pub fn has_open_cut(&self) -> Result<bool> {
        Ok(self.ctl.read()?.phase == ctl::OPEN)
    }

    /// Phase one of a cut: take the next numbered interval out of the
    /// kernel's counting without clearing it there. If a cut is open (left
    /// by a process that died, or not yet finished), that cut is handed out
    /// again, with the same number and the same records as far as the
    /// kernel kept them. Finish it with [`Ledger::finish_cut`] once its
    /// interval is kept; take no other cut before.
    pub fn take_cut(&self) -> Result<PendingCut> {
        self.take_inner(false)
    }

    pub(crate) fn take_inner(&self, evict_all: bool) -> Result<PendingCut> {
        let _one = self.cutting.lock().unwrap_or_else(|e| e.into_inner());
        let mut c = self.ctl.read()?;
        if c.phase == ctl::OPEN {
            if let Some(cut) = self.retake(&c)? {
                return Ok(cut);
            }
            c = self.ctl.read()?;
        }
        let seq = c.seq + 1;
        let start = ctl::time(c.end_ns);
        match &self.backend {
            Backend::Lock(b) => {
                let held = self.cut_lock.get().map(CutLock::hold);
                let (taken, end) = b.take(&self.ctl, seq, start, self.cfg.idle_cuts, evict_all)?;
                drop(held);
                Ok(self.lock_cut(taken, &c, seq, start, end))
            }
            Backend::Swap(b) => {
                let (taken, end) = b.take(&self.ctl, &self.grace, seq, start)?;
                Ok(self.swap_cut(taken, seq, start, end))
            }
        }
    }

    /// The open cut `open` again, or None if it was never taken.
    fn retake(&self, open: &nl_cut_ctl) -> Result<Option<PendingCut>> {
        let (start, end) = (ctl::time(open.start_ns), ctl::time(open.end_ns));
        Ok(match &self.backend {
            Backend::Lock(b) => b
                .retake(&self.ctl, open)?
                .map(|t| self.lock_cut(t, open, open.seq, start, end)),
            Backend::Swap(b) => b
                .retake(&self.ctl, &self.grace, open)?
                .map(|t| self.swap_cut(t, open.seq, start, end)),
        })
    }

    fn lock_cut(
        &self,
        taken: LockTaken,
        prev: &nl_cut_ctl,
        seq: u64,
        start: SystemTime,
        end: SystemTime,
    ) -> PendingCut {
        let base = buckets_of(&prev.base, prev.base_reroutes);
        let mut buckets = taken.total.since(&base);
        buckets.evicted = taken.got.evicted.len() as u64;
        let flows = decode_flows(taken.got.flows(), &self.cfg, taken.got.may_repeat_keys());
        self.pending(Taken::Lock(taken), flows, buckets, seq, start, end)
    }

    fn swap_cut(
        &self,
        taken: SwapTaken,
        seq: u64,
        start: SystemTime,
        end: SystemTime,
    ) -> PendingCut {
        // One read of a per-CPU hash yields each key once.
        let flows = decode_flows(taken.flows.iter().copied(), &self.cfg, false);
        let buckets = taken.buckets;
        self.pending(Taken::Swap(taken), flows, buckets, seq, start, end)
    }

    fn pending(
        &self,
        taken: Taken,
        flows: Vec<(FlowKey, Count, u64)>,
        buckets: Buckets,
        seq: u64,
        start: SystemTime,
        end: SystemTime,
    ) -> PendingCut {
        let mut interval =
            Interval::with_ip_bytes(start, end, flows, buckets).labelled(self.iface(), self.dir);
        interval.seq = seq;
        PendingCut { interval, taken }
    }

    /// Phase two of a cut: clear what `cut` took from the kernel and note it
    /// finished. Call it only once the interval is kept (committed): from
    /// here on the kernel no longer has it.
    pub fn finish_cut(&self, cut: &PendingCut) -> Result<()> {
        let _one = self.cutting.lock().unwrap_or_else(|e| e.into_inner());
        let (seq, end) = (cut.interval.seq, cut.interval.end);
        // Only the open cut: clearing a stale one would clear what a later
        // cut's take left live (swap) or overwrite its control record.
        let open = self.ctl.read()?;
        if open.phase != ctl::OPEN || open.seq != seq {
            return Err(Error::CutNotOpen { seq });
        }
        match (&self.backend, &cut.taken) {
            (Backend::Lock(b), Taken::Lock(t)) => {
                b.finish(&self.ctl, t, seq, end, || self.wait_for_programs())
            }
            (Backend::Swap(b), Taken::Swap(t)) => b.clear(&self.ctl, t, seq, end),
            _ => unreachable!("a pending cut comes from its own ledger's backend"),
        }
    }

    /// Take the counts of the keys `selector` picks out of the ledger (every
    /// key when it is empty), losslessly, and return them (strategy `lock`).
    pub fn reset(&self, selector: &KeySelector) -> Result<Vec<(FlowKey, Count)>> {
        let b = self.lock_backend("reset")?;
        let filter = if selector.is_empty() {
            None
        } else {
            Some(selector.filter(&self.cfg)?)
        };
        let _one = self.cutting.lock().unwrap_or_else(|e| e.into_inner());
        let _held = self.cut_lock.get().map(CutLock::hold);
        let got = b.exchange(filter.as_ref())?;
        Ok(decode_flows(got.flows(), &self.cfg, got.may_repeat_keys())
            .into_iter()
            .map(|(k, c, _)| (k, c))
            .collect())
    }
}
