//! [`Ledger`]: one loaded data path (either strategy) and what can be done
//! with it: attach, cut intervals, read live, reset, pin.

use std::sync::{Mutex, OnceLock};
use std::time::SystemTime;

use crate::attach::{self, Attachment};
use crate::config::{LedgerConfig, Strategy, XdpMode};
use crate::error::{map_err, Error, Result};
use crate::key::{decode_flows, FlowKey};
use crate::lock::{KeySelector, LockBackend, ReadMode};
use crate::maps::Grace;
use crate::pin::{self, CutLock, Manifest, PinSet, Pins};
use crate::record::{Buckets, Count, Direction, Interval, Snapshot};
use crate::swap::SwapBackend;

/// A strategy's programs and maps.
#[derive(Debug)]
pub(crate) enum Backend {
    Lock(LockBackend),
    Swap(SwapBackend),
}

/// Where the last cut left off.
#[derive(Debug)]
struct CutState {
    at: SystemTime,
    /// The cumulative buckets at the last cut (strategy `lock`, whose stats
    /// count from load).
    buckets: Buckets,
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
    cut: Mutex<CutState>,
    /// The interface whose traffic this ledger counts (its records' label).
    iface: OnceLock<String>,
    /// Set once pinned (or opened from pins): serializes exchanges across processes.
    cut_lock: OnceLock<CutLock>,
}

impl Ledger {
    /// Load the data path with `cfg`. Nothing is attached yet; the first
    /// interval starts now.
    pub fn load(cfg: LedgerConfig) -> Result<Ledger> {
        cfg.validate()?;
        crate::load::preflight()?;
        let backend = match cfg.strategy {
            Strategy::Lock => Backend::Lock(LockBackend::load(&cfg)?),
            Strategy::Swap => Backend::Swap(SwapBackend::load(&cfg)?),
        };
        Ledger::from_backend(cfg, backend, Buckets::default())
    }

    /// A ledger around loaded (or opened) programs and maps; `buckets` is the
    /// reading the first cut's bucket deltas start from.
    fn from_backend(cfg: LedgerConfig, backend: Backend, buckets: Buckets) -> Result<Ledger> {
        Ok(Ledger {
            backend,
            grace: Grace::create().map_err(map_err("create", "nl_grace"))?,
            cut: Mutex::new(CutState {
                at: SystemTime::now(),
                buckets,
            }),
            iface: OnceLock::new(),
            cut_lock: OnceLock::new(),
            cfg,
        })
    }

    /// The configuration the data path was loaded with.
    pub fn config(&self) -> &LedgerConfig {
        &self.cfg
    }

    /// The interface the ledger counts on ("" before it is attached).
    pub fn iface(&self) -> &str {
        self.iface.get().map_or("", String::as_str)
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

    /// Attach the data path to `iface` (XDP, ingress).
    pub fn attach_xdp(&self, iface: &str, mode: XdpMode) -> Result<Attachment> {
        let a = attach::xdp(self.program(), iface, mode)?;
        let _ = self.iface.set(iface.to_string());
        Ok(a)
    }

    /// The data path program.
    pub(crate) fn program(&self) -> std::os::fd::BorrowedFd<'_> {
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

    /// The conservation buckets since load (strategy `lock`) or since the
    /// last cut (`swap`), from a settled reading.
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
        self.cut_inner(false)
    }

    pub(crate) fn cut_inner(&self, evict_all: bool) -> Result<Interval> {
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
                let total = b.buckets()?;
                let mut delta = total.since(&state.buckets);
                delta.evicted = got.evicted.len() as u64;
                state.buckets = total;
                let flows = decode_flows(got.flows(), &self.cfg, got.may_repeat_keys());
                (flows, delta, end)
            }
            Backend::Swap(b) => {
                let cut = b.cut(&self.grace)?;
                // The interval ended at the flip, not when the drain finished.
                let flows = decode_flows(cut.flows.into_iter(), &self.cfg, !cut.unique);
                (flows, cut.buckets, cut.end)
            }
        };
        let interval =
            Interval::new(state.at, end, flows, buckets).labelled(self.iface(), Direction::In);
        state.at = end;
        Ok(interval)
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
        let _state = self.cut.lock().unwrap_or_else(|e| e.into_inner());
        let _held = self.cut_lock.get().map(CutLock::hold);
        let got = b.exchange(filter.as_ref(), 0, false)?;
        Ok(decode_flows(got.flows(), &self.cfg, got.may_repeat_keys()))
    }

    /// Pin this ledger for `iface` so that `reset` in another process can
    /// reach it (strategy `lock`). Refuses if a live ledger is pinned there
    /// already; clears stale pins (left by a ledger that is gone) and pins of
    /// another layout. The pins go when the returned [`Pins`] drops.
    pub fn pin(&self, iface: &str) -> Result<Pins> {
        let b = self.lock_backend("pinning")?;
        let set = PinSet::at(pin::pin_dir(iface)?);
        if set.dir().exists() {
            match open_lock_pins(&set, iface) {
                Err(Error::StalePin { .. }) | Err(Error::ForeignPin { .. }) => set.remove(),
                Ok(_) => {
                    return Err(Error::AlreadyRunning {
                        iface: iface.to_string(),
                        path: set.dir().display().to_string(),
                    })
                }
                Err(e) => return Err(e),
            }
        }
        set.create(&Manifest::new(iface, &self.cfg))?;
        let pins = Pins::new(set.clone());
        b.pin(&set)?;
        let _ = self.cut_lock.set(CutLock::open(set.dir())?);
        Ok(pins)
    }

    /// Open the ledger a running `watch` pinned for `iface` in this network
    /// namespace (strategy `lock`).
    pub fn open_pinned(iface: &str) -> Result<Ledger> {
        crate::load::preflight()?;
        let set = PinSet::at(pin::pin_dir(iface)?);
        if !pin::bpffs_mounted() || !set.dir().exists() {
            return Err(Error::NotRunning {
                iface: iface.to_string(),
            });
        }
        let (backend, cfg) = open_lock_pins(&set, iface)?;
        let ledger = Ledger::from_backend(cfg, Backend::Lock(backend), Buckets::default())?;
        let _ = ledger.iface.set(iface.to_string());
        let _ = ledger.cut_lock.set(CutLock::open(set.dir())?);
        Ok(ledger)
    }
}

/// Open and check a lock ledger's pins: a set whose data path is not
/// attached to `iface` any more is stale; one that is not netledger's (or
/// of another layout) is foreign.
fn open_lock_pins(set: &PinSet, iface: &str) -> Result<(LockBackend, LedgerConfig)> {
    let manifest = set.manifest()?;
    if manifest.config.strategy != Strategy::Lock {
        return Err(Error::ForeignPin {
            path: set.dir().display().to_string(),
            why: format!(
                "strategy {} where lock was expected",
                manifest.config.strategy
            ),
        });
    }
    let backend = LockBackend::open(set, &manifest.config)?;
    let (pinned, _) = crate::sys::prog_info(backend.program()).map_err(|e| Error::Pin {
        path: set.dir().display().to_string(),
        source: e,
    })?;
    if attach::xdp_program_id(iface)? != Some(pinned) {
        return Err(Error::StalePin {
            path: set.dir().display().to_string(),
        });
    }
    Ok((backend, manifest.config))
}
