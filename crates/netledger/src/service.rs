//! Ledgers that other processes reach through pins: a `watch`'s (removed
//! when it stops; `reset` opens them) and the service's, whose links are
//! pinned too, so the kernel side keeps counting while no process runs and
//! the next process adopts it. One interface has one pin set, holding one
//! ledger per direction counted (`in/`, `out/`).

use std::os::fd::{AsFd, OwnedFd};

use crate::attach::{self, TcMode};
use crate::config::{Hook, LedgerConfig, Strategy, XdpMode};
use crate::error::{Error, Result};
use crate::ledger::Ledger;
use crate::pin::{Manifest, Owner, OwnerLock, PinSet, Pins};
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
    (
        a.key_mode,
        a.vlan,
        a.prefix4,
        a.prefix6,
        a.max_flows,
        a.strategy,
    ) == (
        b.key_mode,
        b.vlan,
        b.prefix4,
        b.prefix6,
        b.max_flows,
        b.strategy,
    )
}

/// A configuration and its hooks in words, for errors.
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

fn describe_hooks(hooks: &[Hook]) -> String {
    let parts: Vec<String> = hooks
        .iter()
        .map(|h| format!("{} via {}", h.direction(), h.name()))
        .collect();
    parts.join(" and ")
}

impl Ledger {
    /// Claim `iface` for this watch and pin what other processes need:
    /// for strategy `lock` the programs and maps, so that `reset` reaches
    /// the ledger; for `swap` only the manifest, so that the service and
    /// other watches see the interface is taken. Refuses an interface a live
    /// process counts on, and the service's pins; clears pins left by a
    /// watch that died. Everything goes when the returned [`Pins`] drops.
    pub fn pin(&self, iface: &str) -> Result<Pins> {
        pin_watch(iface, &[self])
    }

    /// Open the ledger a running `watch --strategy lock` pinned for `iface`
    /// in this network namespace (its ingress ledger).
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
        let hook = *m.hooks.first().ok_or_else(not_running)?;
        let set = top.direction(hook.direction());
        let ledger = Ledger::open_backend(&set, &m.config, iface, hook)?;
        ledger.set_cut_lock(&set)?;
        Ok(ledger)
    }
}

/// Claim `iface` for a watch counting with `ledgers` (one per direction)
/// and pin what others need (see [`Ledger::pin`]).
pub fn pin_watch(iface: &str, ledgers: &[&Ledger]) -> Result<Pins> {
    let top = PinSet::of(iface)?;
    match look(&top) {
        Ok(Found::Held(m)) => return Err(owned(iface, &m)),
        Ok(Found::Free(m, _)) if m.owner == Owner::Service => {
            return Err(Error::ServicePinned {
                iface: iface.to_string(),
            })
        }
        // A dead watch's pins, or something that is not a pin set of this
        // version: nothing in them counts any more.
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
    let first = ledgers.first().expect("at least one ledger");
    let hooks: Vec<Hook> = ledgers.iter().map(|l| l.hook()).collect();
    top.write_manifest(&Manifest::new(iface, first.config(), Owner::Watch, &hooks))?;
    for l in ledgers {
        if l.config().strategy == Strategy::Lock {
            let set = top.direction(l.direction());
            set.make()?;
            l.pin_backend(&set)?;
            l.set_cut_lock(&set)?;
        }
    }
    Ok(pins)
}

/// What [`Service::start`] found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Started {
    /// Nothing was pinned: loaded, attached and pinned anew.
    Fresh,
    /// A previous process's pins, adopted; its programs never stopped counting.
    Adopted,
}

/// What a check of an attachment found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LinkState {
    /// Attached to the interface as it is.
    Attached,
    /// The interface is gone (the kernel detached the program with it).
    Gone,
    /// The interface came back (or was re-created): attached again.
    Reattached,
}

/// How the service attaches.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct AttachOptions {
    /// XDP mode for an XDP hook.
    pub xdp: XdpMode,
    /// tcx or clsact for a tc hook (the service pins links: tcx).
    pub tc: TcMode,
}

/// One direction of a service: its ledger, pin directory and link.
#[derive(Debug)]
pub struct Leg {
    ledger: Ledger,
    set: PinSet,
    link: Option<OwnedFd>,
}

impl Leg {
    /// The ledger.
    pub fn ledger(&self) -> &Ledger {
        &self.ledger
    }
}

/// A ledger per direction of one interface, kept as a service: its pins
/// (links included) outlive the process.
#[derive(Debug)]
pub struct Service {
    legs: Vec<Leg>,
    top: PinSet,
    manifest: Manifest,
    opts: AttachOptions,
    _owner: OwnerLock,
}

impl Service {
    /// Count on `iface` at each of `hooks` (at most one per direction) with
    /// `cfg`, adopting the pins a previous service left there (their
    /// programs never stopped counting), or loading, attaching and pinning
    /// anew. Refuses pins of another layout, configuration or set of hooks
    /// (they are never replaced silently), and an interface a live process
    /// counts on. Pins a dead watch left are cleared.
    pub fn start(
        iface: &str,
        cfg: &LedgerConfig,
        hooks: &[Hook],
        opts: AttachOptions,
    ) -> Result<(Service, Started)> {
        cfg.validate()?;
        crate::load::preflight()?;
        let top = PinSet::of(iface)?;
        match look(&top)? {
            Found::Held(m) => Err(owned(iface, &m)),
            Found::Free(m, owner) if m.owner == Owner::Service => {
                if !same_data_path(&m.config, cfg) || m.hooks != hooks {
                    return Err(Error::PinnedConfigDiffers {
                        iface: iface.to_string(),
                        pinned: format!("{}, {}", describe(&m.config), describe_hooks(&m.hooks)),
                        wanted: format!("{}, {}", describe(cfg), describe_hooks(hooks)),
                    });
                }
                let s = Service::adopt(top, m, owner, cfg, opts)?;
                Ok((s, Started::Adopted))
            }
            Found::Free(..) => {
                top.remove();
                Ok((
                    Service::fresh(iface, top, cfg, hooks, opts)?,
                    Started::Fresh,
                ))
            }
            Found::Nothing => Ok((
                Service::fresh(iface, top, cfg, hooks, opts)?,
                Started::Fresh,
            )),
        }
    }

    fn fresh(
        iface: &str,
        top: PinSet,
        cfg: &LedgerConfig,
        hooks: &[Hook],
        opts: AttachOptions,
    ) -> Result<Service> {
        attach::ifindex(iface)?;
        // Loaded (the first interval starts) before attaching: nothing is missed.
        let ledgers = hooks
            .iter()
            .map(|&h| Ledger::load_at(cfg.clone(), h))
            .collect::<Result<Vec<_>>>()?;
        top.make()?;
        let owner = top.claim()?.ok_or_else(|| Error::AlreadyRunning {
            iface: iface.to_string(),
            path: top.dir().display().to_string(),
        })?;
        let manifest = Manifest::new(iface, cfg, Owner::Service, hooks);
        let made = (|| {
            top.write_manifest(&manifest)?;
            let mut legs = Vec::new();
            for ledger in ledgers {
                let set = top.direction(ledger.direction());
                set.make()?;
                ledger.pin_backend(&set)?;
                // The service pins its links: tc through tcx only.
                let a = ledger.attach(iface, opts.xdp, TcMode::Tcx)?;
                let link = a.into_link().expect("XDP and tcx attachments are links");
                set.put(PIN_LINK, link.as_fd())?;
                legs.push(Leg {
                    ledger,
                    set,
                    link: Some(link),
                });
            }
            Ok::<Vec<Leg>, Error>(legs)
        })();
        let legs = match made {
            Ok(legs) => legs,
            Err(e) => {
                // Leave nothing half made (unpinned links detach as they drop).
                top.remove();
                return Err(e);
            }
        };
        Ok(Service {
            legs,
            top,
            manifest,
            opts,
            _owner: owner,
        })
    }

    fn open_legs(top: &PinSet, manifest: &Manifest, config: &LedgerConfig) -> Result<Vec<Leg>> {
        manifest
            .hooks
            .iter()
            .map(|&hook| {
                let set = top.direction(hook.direction());
                let ledger = Ledger::open_backend(&set, config, &manifest.iface, hook)?;
                let link = set.get(PIN_LINK);
                Ok(Leg { ledger, set, link })
            })
            .collect()
    }

    fn adopt(
        top: PinSet,
        mut manifest: Manifest,
        owner: OwnerLock,
        cfg: &LedgerConfig,
        opts: AttachOptions,
    ) -> Result<Service> {
        // Keep the pinned configuration, with this process's cut settings.
        let mut config = manifest.config.clone();
        config.idle_cuts = cfg.idle_cuts;
        let legs = Service::open_legs(&top, &manifest, &config)?;
        manifest.pid = std::process::id();
        top.write_manifest(&manifest)?;
        let mut s = Service {
            legs,
            top,
            manifest,
            opts,
            _owner: owner,
        };
        s.check_links()?;
        Ok(s)
    }

    /// The ledgers, one per direction.
    pub fn legs(&self) -> &[Leg] {
        &self.legs
    }

    /// The manifest (its `instance` tells this pin set's history apart).
    pub fn manifest(&self) -> &Manifest {
        &self.manifest
    }

    /// Whether the programs are attached to the interface as it is now;
    /// attach them again if the interface came back (by name) after it was
    /// gone. The counts are in the pinned maps throughout.
    pub fn check_links(&mut self) -> Result<LinkState> {
        let iface = self.manifest.iface.clone();
        let Ok(now) = attach::ifindex(&iface) else {
            return Ok(LinkState::Gone);
        };
        let mut state = LinkState::Attached;
        for leg in &mut self.legs {
            let on = leg
                .link
                .as_ref()
                .and_then(|l| sys::link_info(l.as_fd()).ok())
                .map(|(_, ifindex)| ifindex);
            if on == Some(now) {
                continue;
            }
            let a = leg.ledger.attach(&iface, self.opts.xdp, TcMode::Tcx)?;
            let link = a.into_link().expect("XDP and tcx attachments are links");
            leg.set.unpin(PIN_LINK)?;
            leg.set.put(PIN_LINK, link.as_fd())?;
            leg.link = Some(link);
            state = LinkState::Reattached;
        }
        Ok(state)
    }

    /// Stop counting: detach (unpin the links), wait until no run of the
    /// programs is left, and hand back the ledgers and the pins so that the
    /// caller takes and commits the last cuts, then removes the pins with
    /// [`Detached::remove`].
    pub fn detach(mut self) -> Result<Detached> {
        for leg in &mut self.legs {
            leg.set.unpin(PIN_LINK)?;
            drop(leg.link.take());
        }
        for leg in &self.legs {
            leg.ledger.wait_for_programs()?;
        }
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
                let legs = Service::open_legs(&top, &m, &m.config)?;
                Ok(Service {
                    legs,
                    top,
                    manifest: m,
                    opts: AttachOptions::default(),
                    _owner: owner,
                })
            }
        }
    }
}

/// A service whose programs are detached; its maps still hold what was counted.
#[derive(Debug)]
pub struct Detached {
    service: Service,
}

impl Detached {
    /// The ledgers, to take their last cuts.
    pub fn legs(&self) -> &[Leg] {
        &self.service.legs
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

/// Every interface with netledger pins in this network namespace (none when
/// netledger never pinned here). A directory this process may not read is
/// an error, not "nothing pinned".
pub fn pinned_interfaces() -> Result<Vec<String>> {
    let Ok(dir) = crate::pin::pin_dir("x") else {
        return Ok(Vec::new());
    };
    let Some(ns) = dir.parent() else {
        return Ok(Vec::new());
    };
    let rd = match std::fs::read_dir(ns) {
        Ok(rd) => rd,
        Err(e) if e.kind() == std::io::ErrorKind::PermissionDenied => {
            return Err(Error::PermissionDenied {
                op: format!("listing the pins under {}", ns.display()),
            })
        }
        Err(_) => return Ok(Vec::new()),
    };
    let mut out: Vec<String> = rd
        .flatten()
        .filter_map(|e| e.file_name().into_string().ok())
        .collect();
    out.sort();
    Ok(out)
}

/// What one direction's pins say of themselves, for `status`.
#[derive(Debug, Clone)]
pub struct LegStatus {
    /// Where its program runs.
    pub hook: Hook,
    /// The program is attached to the interface.
    pub attached: bool,
    /// The last cut finished.
    pub last_seq: u64,
    /// A cut was taken and not finished (a process died mid-cut).
    pub open_cut: bool,
    /// When the last cut ended.
    pub last_cut_end: std::time::SystemTime,
}

/// What a pin set says of itself, for `status`.
#[derive(Debug, Clone)]
pub struct PinStatus {
    /// The manifest.
    pub manifest: Manifest,
    /// A live process holds the pins.
    pub owner_alive: bool,
    /// One per direction.
    pub legs: Vec<LegStatus>,
}

/// The status of `iface`'s pins, without touching them.
pub fn pin_status(iface: &str) -> Result<PinStatus> {
    let top = PinSet::of(iface)?;
    let manifest = top.manifest()?;
    let owner_alive = top.claim()?.is_none();
    let mut legs = Vec::new();
    for &hook in &manifest.hooks {
        let set = top.direction(hook.direction());
        let linked = set
            .get(PIN_LINK)
            .and_then(|l| sys::link_info(l.as_fd()).ok())
            .is_some_and(|(_, ifindex)| {
                ifindex != 0 && attach::ifindex(iface).ok() == Some(ifindex)
            });
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
        legs.push(LegStatus {
            hook,
            // A watch's link is not pinned: its program lives as long as the watch.
            attached: match manifest.owner {
                Owner::Watch => owner_alive,
                Owner::Service => linked,
            },
            last_seq: if open_cut { ctl.seq - 1 } else { ctl.seq },
            open_cut,
            last_cut_end: crate::ctl::time(if open_cut { ctl.start_ns } else { ctl.end_ns }),
        });
    }
    Ok(PinStatus {
        manifest,
        owner_alive,
        legs,
    })
}
