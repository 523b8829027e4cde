//! Ledgers that other processes reach through pins: a `watch`'s (removed
//! when it stops; `reset` opens them) and the service's, whose link is
//! pinned too, so the kernel side keeps counting while no process runs and
//! the next process adopts it.

use std::os::fd::{AsFd, OwnedFd};

use crate::attach::{self, Attachment};
use crate::config::{LedgerConfig, Strategy, XdpMode};
use crate::error::{Error, Result};
use crate::ledger::Ledger;
use crate::pin::{Manifest, Owner, OwnerLock, PinSet, Pins};
use crate::record::Direction;
use crate::sys;

/// The pin name of a service's link.
const PIN_LINK: &str = "link";

/// What the pins of `iface` say before anything is made there: nothing,
/// pins nobody holds (their owner died), or pins a live process holds.
enum Found {
    Nothing,
    Free(Manifest, OwnerLock),
    Held(Manifest),
}

fn look(set: &PinSet) -> Result<Found> {
    if !crate::pin::bpffs_mounted() || !set.exists() {
        return Ok(Found::Nothing);
    }
    let manifest = set.manifest()?;
    Ok(match set.claim()? {
        Some(lock) => Found::Free(manifest, lock),
        None => Found::Held(manifest),
    })
}

fn owned(iface: &str, m: &Manifest) -> Error {
    Error::Owned {
        iface: iface.to_string(),
        command: m.owner.command(),
        pid: m.pid,
    }
}

/// The data-path part of a configuration: what pins must match to be adopted.
fn same_data_path(a: &LedgerConfig, b: &LedgerConfig) -> bool {
    (a.key_mode, a.vlan, a.prefix4, a.prefix6, a.max_flows, a.strategy)
        == (b.key_mode, b.vlan, b.prefix4, b.prefix6, b.max_flows, b.strategy)
}

/// A configuration in words, for errors.
pub fn describe(c: &LedgerConfig) -> String {
    let mut s = format!(
        "strategy {}, key {}, max-flows {}",
        c.strategy, c.key_mode, c.max_flows
    );
    if c.vlan {
        s.push_str(", vlan");
    }
    if let Some(p) = c.prefix4 {
        s.push_str(&format!(", prefix4 {p}"));
    }
    if let Some(p) = c.prefix6 {
        s.push_str(&format!(", prefix6 {p}"));
    }
    s
}

impl Ledger {
    /// Claim `iface` for this watch and pin what other processes need:
    /// for strategy `lock` the programs and maps, so that `reset` reaches
    /// the ledger; for `swap` only the manifest, so that the service and
    /// other watches see the interface is taken. Refuses an interface a live
    /// process counts on, and the service's pins; clears pins left by a
    /// watch that died. Everything goes when the returned [`Pins`] drops.
    pub fn pin(&self, iface: &str) -> Result<Pins> {
        let top = PinSet::of(iface)?;
        match look(&top) {
            Ok(Found::Held(m)) => return Err(owned(iface, &m)),
            Ok(Found::Free(m, _)) if m.owner == Owner::Service => {
                return Err(Error::ServicePinned {
                    iface: iface.to_string(),
                })
            }
            // A dead watch's pins, or something that is not a pin set of
            // this version: nothing in them counts any more.
            Ok(Found::Free(..)) | Err(Error::ForeignPin { .. }) => top.remove(),
            Ok(Found::Nothing) => {}
            Err(e) => return Err(e),
        }
        top.make()?;
        let owner = top.claim()?.ok_or_else(|| Error::AlreadyRunning {
            iface: iface.to_string(),
            path: top.dir().display().to_string(),
        })?;
        let pins = Pins::new(top.clone(), owner);
        top.write_manifest(&Manifest::new(iface, self.config(), Owner::Watch))?;
        if self.config().strategy == Strategy::Lock {
            let set = top.direction(Direction::In);
            set.make()?;
            self.pin_backend(&set)?;
            self.set_cut_lock(&set)?;
        }
        Ok(pins)
    }

    /// Open the ledger a running `watch --strategy lock` pinned for `iface`
    /// in this network namespace.
    pub fn open_pinned(iface: &str) -> Result<Ledger> {
        crate::load::preflight()?;
        let top = PinSet::of(iface)?;
        let not_running = || Error::NotRunning {
            iface: iface.to_string(),
        };
        let m = match look(&top)? {
            Found::Nothing => return Err(not_running()),
            Found::Free(m, _) if m.owner == Owner::Watch => {
                return Err(Error::StalePin {
                    path: top.dir().display().to_string(),
                })
            }
            Found::Free(..) => {
                return Err(Error::ServicePinned {
                    iface: iface.to_string(),
                })
            }
            Found::Held(m) if m.owner == Owner::Service => return Err(owned(iface, &m)),
            Found::Held(m) => m,
        };
        if m.config.strategy != Strategy::Lock {
            return Err(Error::Unsupported {
                what: "reset",
                strategy: m.config.strategy,
            });
        }
        let set = top.direction(Direction::In);
        let ledger = Ledger::open_backend(&set, &m.config, iface, Direction::In)?;
        ledger.set_cut_lock(&set)?;
        Ok(ledger)
    }
}

/// What [`Service::start`] found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Started {
    /// Nothing was pinned: loaded, attached and pinned anew.
    Fresh,
    /// A previous process's pins, adopted; its program never stopped counting.
    Adopted,
}

/// What a check of the attachment found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LinkState {
    /// Attached to the interface as it is.
    Attached,
    /// The interface is gone (the kernel detached the program with it).
    Gone,
    /// The interface came back (or was re-created): attached again.
    Reattached,
}

/// A ledger kept as a service: its pins (link included) outlive the process.
#[derive(Debug)]
pub struct Service {
    ledger: Ledger,
    top: PinSet,
    set: PinSet,
    manifest: Manifest,
    mode: XdpMode,
    link: Option<OwnedFd>,
    _owner: OwnerLock,
}

impl Service {
    /// Count on `iface` with `cfg`, adopting the pins a previous service left
    /// there (their program never stopped counting), or loading, attaching
    /// and pinning anew. Refuses pins of another layout or configuration
    /// (they are never replaced silently), and an interface a live process
    /// counts on. Pins a dead watch left are cleared.
    pub fn start(iface: &str, cfg: &LedgerConfig, mode: XdpMode) -> Result<(Service, Started)> {
        cfg.validate()?;
        crate::load::preflight()?;
        let top = PinSet::of(iface)?;
        match look(&top)? {
            Found::Held(m) => Err(owned(iface, &m)),
            Found::Free(m, owner) if m.owner == Owner::Service => {
                if !same_data_path(&m.config, cfg) {
                    return Err(Error::PinnedConfigDiffers {
                        iface: iface.to_string(),
                        pinned: describe(&m.config),
                        wanted: describe(cfg),
                    });
                }
                let s = Service::adopt(top, m, owner, cfg, mode)?;
                Ok((s, Started::Adopted))
            }
            Found::Free(..) => {
                top.remove();
                Ok((Service::fresh(iface, top, cfg, mode)?, Started::Fresh))
            }
            Found::Nothing => Ok((Service::fresh(iface, top, cfg, mode)?, Started::Fresh)),
        }
    }

    fn fresh(iface: &str, top: PinSet, cfg: &LedgerConfig, mode: XdpMode) -> Result<Service> {
        attach::ifindex(iface)?;
        // Loaded (the first interval starts) before attaching: nothing is missed.
        let ledger = Ledger::load(cfg.clone())?;
        top.make()?;
        let owner = top.claim()?.ok_or_else(|| Error::AlreadyRunning {
            iface: iface.to_string(),
            path: top.dir().display().to_string(),
        })?;
        let manifest = Manifest::new(iface, cfg, Owner::Service);
        let set = top.direction(Direction::In);
        let pinned = (|| {
            top.write_manifest(&manifest)?;
            set.make()?;
            ledger.pin_backend(&set)?;
            let a = ledger.attach_xdp(iface, mode)?;
            set.put(PIN_LINK, a.link())?;
            Ok::<Attachment, Error>(a)
        })();
        let a = match pinned {
            Ok(a) => a,
            Err(e) => {
                // Leave nothing half made.
                top.remove();
                return Err(e);
            }
        };
        Ok(Service {
            ledger,
            top,
            set,
            manifest,
            mode,
            link: Some(a.into_link()),
            _owner: owner,
        })
    }

    fn adopt(
        top: PinSet,
        mut manifest: Manifest,
        owner: OwnerLock,
        cfg: &LedgerConfig,
        mode: XdpMode,
    ) -> Result<Service> {
        let set = top.direction(Direction::In);
        // Keep the pinned configuration, with this process's cut settings.
        let mut config = manifest.config.clone();
        config.idle_cuts = cfg.idle_cuts;
        let ledger = Ledger::open_backend(&set, &config, &manifest.iface, Direction::In)?;
        manifest.pid = std::process::id();
        top.write_manifest(&manifest)?;
        let link = set.get(PIN_LINK);
        let mut s = Service {
            ledger,
            top,
            set,
            manifest,
            mode,
            link,
            _owner: owner,
        };
        s.check_link()?;
        Ok(s)
    }

    /// The ledger.
    pub fn ledger(&self) -> &Ledger {
        &self.ledger
    }

    /// The manifest (its `instance` tells this pin set's history apart).
    pub fn manifest(&self) -> &Manifest {
        &self.manifest
    }

    /// Whether the program is attached to the interface as it is now;
    /// attach it again if the interface came back (by name) after it was
    /// gone. The counts are in the pinned maps throughout.
    pub fn check_link(&mut self) -> Result<LinkState> {
        let iface = self.manifest.iface.clone();
        let Ok(now) = attach::ifindex(&iface) else {
            return Ok(LinkState::Gone);
        };
        let on = self
            .link
            .as_ref()
            .and_then(|l| sys::link_info(l.as_fd()).ok())
            .map(|(_, ifindex)| ifindex);
        if on == Some(now) {
            return Ok(LinkState::Attached);
        }
        let a = self.ledger.attach_xdp(&iface, self.mode)?;
        self.set.unpin(PIN_LINK)?;
        self.set.put(PIN_LINK, a.link())?;
        self.link = Some(a.into_link());
        Ok(LinkState::Reattached)
    }

    /// Stop counting: detach (unpin the link), wait until no run of the
    /// program is left, and hand back the ledger and its pins so that the
    /// caller takes and commits the last cuts, then removes the pins with
    /// [`Detached::remove`].
    pub fn detach(mut self) -> Result<Detached> {
        self.set.unpin(PIN_LINK)?;
        drop(self.link.take());
        self.ledger.wait_for_programs()?;
        Ok(Detached { service: self })
    }

    /// The service's pins for `iface`, to take down (`netledger down`):
    /// refused while a live process owns them.
    pub fn open_for_down(iface: &str) -> Result<Service> {
        crate::load::preflight()?;
        let top = PinSet::of(iface)?;
        match look(&top)? {
            Found::Nothing => Err(Error::NotRunning {
                iface: iface.to_string(),
            }),
            Found::Held(m) => Err(owned(iface, &m)),
            Found::Free(m, _) if m.owner == Owner::Watch => {
                top.remove();
                Err(Error::StalePin {
                    path: top.dir().display().to_string(),
                })
            }
            Found::Free(m, owner) => {
                let cfg = m.config.clone();
                let set = top.direction(Direction::In);
                let ledger = Ledger::open_backend(&set, &cfg, iface, Direction::In)?;
                let link = set.get(PIN_LINK);
                Ok(Service {
                    ledger,
                    top,
                    set,
                    manifest: m,
                    mode: XdpMode::Auto,
                    link,
                    _owner: owner,
                })
            }
        }
    }
}

/// A service whose program is detached; its maps still hold what was counted.
#[derive(Debug)]
pub struct Detached {
    service: Service,
}

impl Detached {
    /// The ledger, to take its last cuts.
    pub fn ledger(&self) -> &Ledger {
        &self.service.ledger
    }

    /// The manifest.
    pub fn manifest(&self) -> &Manifest {
        &self.service.manifest
    }

    /// Remove the pins (and with them the maps).
    pub fn remove(self) {
        self.service.top.remove();
    }
}

/// Every interface with netledger pins in this network namespace.
pub fn pinned_interfaces() -> Vec<String> {
    let Ok(dir) = crate::pin::pin_dir("x") else {
        return Vec::new();
    };
    let Some(ns) = dir.parent() else {
        return Vec::new();
    };
    let mut out: Vec<String> = std::fs::read_dir(ns)
        .map(|rd| {
            rd.flatten()
                .filter_map(|e| e.file_name().into_string().ok())
                .collect()
        })
        .unwrap_or_default();
    out.sort();
    out
}

/// What a pin set says of itself, for `status`: its manifest, whether its
/// owner is alive, whether its program is attached, and its last cut.
#[derive(Debug, Clone)]
pub struct PinStatus {
    /// The manifest.
    pub manifest: Manifest,
    /// A live process holds the pins.
    pub owner_alive: bool,
    /// The program is attached to the interface (its link is pinned and live).
    pub attached: bool,
    /// The last cut finished, and whether one is open.
    pub last_seq: u64,
    /// A cut was taken and not finished (a process died mid-cut).
    pub open_cut: bool,
    /// When the last cut ended.
    pub last_cut_end: std::time::SystemTime,
}

/// The status of `iface`'s pins, without touching them.
pub fn pin_status(iface: &str) -> Result<PinStatus> {
    let top = PinSet::of(iface)?;
    let manifest = top.manifest()?;
    let owner_alive = top.claim()?.is_none();
    let set = top.direction(Direction::In);
    let attached = set
        .get(PIN_LINK)
        .and_then(|l| sys::link_info(l.as_fd()).ok())
        .is_some_and(|(_, ifindex)| ifindex != 0 && attach::ifindex(iface).ok() == Some(ifindex));
    let ctl = set
        .map(
            "ctl",
            libbpf_rs::MapType::Array,
            4,
            std::mem::size_of::<crate::skel::types::nl_cut_ctl>() as u32,
            1,
        )
        .ok()
        .map(crate::ctl::Ctl::from_map)
        .and_then(|c| c.read().ok())
        .unwrap_or_default();
    let open_cut = ctl.phase == crate::ctl::OPEN;
    // A watch's link is not pinned: its program lives as long as the watch.
    let attached = match manifest.owner {
        Owner::Watch => owner_alive,
        Owner::Service => attached,
    };
    Ok(PinStatus {
        manifest,
        owner_alive,
        attached,
        last_seq: if open_cut { ctl.seq - 1 } else { ctl.seq },
        open_cut,
        last_cut_end: crate::ctl::time(if open_cut { ctl.start_ns } else { ctl.end_ns }),
    })
}
