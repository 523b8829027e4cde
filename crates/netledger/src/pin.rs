//! Making a running ledger reachable from other processes: its programs and
//! maps pinned under bpffs, one directory per interface and network
//! namespace, removed when the ledger stops.
//!
//! Layout: `/sys/fs/bpf/netledger/ns<inode>/<iface>/{xdp,exchange,index,slots,free,stats,out,rodata}`.
//! The directory doubles as the cut lock: every exchange (a watch's cut, a
//! reset) holds `flock(LOCK_EX)` on it, since they share the output map.

use std::fs::{self, File};
use std::io;
use std::os::fd::{AsFd, AsRawFd};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use crate::config::{KeyMode, LedgerConfig, Strategy};
use crate::error::{Error, Result};
use crate::ledger::{xdp_program_id, Backend, Ledger};
use crate::lock::LockBackend;
use crate::sys;
use crate::types::nl_config;

/// Where bpffs is expected.
pub const BPFFS: &str = "/sys/fs/bpf";
const BPF_FS_MAGIC: i64 = 0xcafe4a11;

/// The pin names of a lock ledger, in `LockBackend::pinnable` order.
const NAMES: [&str; 8] = [
    "xdp", "exchange", "index", "slots", "free", "stats", "out", "rodata",
];

/// The pin directory for `iface` in this thread's network namespace.
pub fn pin_dir(iface: &str) -> Result<PathBuf> {
    let ns = fs::metadata("/proc/thread-self/ns/net")
        .or_else(|_| fs::metadata("/proc/self/ns/net"))
        .map_err(|e| Error::Pin {
            path: "/proc/self/ns/net".into(),
            source: e,
        })?
        .ino();
    Ok(Path::new(BPFFS)
        .join("netledger")
        .join(format!("ns{ns}"))
        .join(iface))
}

/// bpffs must be mounted at /sys/fs/bpf; mount it if it is not.
fn ensure_bpffs() -> Result<()> {
    if is_bpffs(BPFFS) {
        return Ok(());
    }
    let ok = std::process::Command::new("mount")
        .args(["-t", "bpf", "bpf", BPFFS])
        .stderr(std::process::Stdio::null())
        .status()
        .map(|s| s.success())
        .unwrap_or(false);
    if ok && is_bpffs(BPFFS) {
        Ok(())
    } else {
        Err(Error::BpffsNotMounted)
    }
}

fn is_bpffs(path: &str) -> bool {
    let c = std::ffi::CString::new(path).expect("no NUL");
    let mut st: libc::statfs = unsafe { std::mem::zeroed() };
    unsafe { libc::statfs(c.as_ptr(), &mut st) == 0 && st.f_type as i64 == BPF_FS_MAGIC }
}

/// Exclusive hold on a ledger's exchange (the flock of its pin directory).
#[derive(Debug)]
pub(crate) struct CutLock(File);

impl CutLock {
    pub(crate) fn open(dir: &Path) -> Result<CutLock> {
        let f = File::open(dir).map_err(|e| Error::Pin {
            path: dir.display().to_string(),
            source: e,
        })?;
        Ok(CutLock(f))
    }

    /// Hold the lock until the guard drops.
    pub(crate) fn hold(&self) -> CutLockGuard<'_> {
        // Blocks until the other exchange is done; EINTR just retries.
        while unsafe { libc::flock(self.0.as_raw_fd(), libc::LOCK_EX) } != 0 {
            if io::Error::last_os_error().raw_os_error() != Some(libc::EINTR) {
                break;
            }
        }
        CutLockGuard(self)
    }
}

pub(crate) struct CutLockGuard<'a>(&'a CutLock);

impl Drop for CutLockGuard<'_> {
    fn drop(&mut self) {
        unsafe { libc::flock(self.0 .0.as_raw_fd(), libc::LOCK_UN) };
    }
}

/// The pins of a running ledger; removed on drop.
#[derive(Debug)]
pub struct Pins {
    dir: PathBuf,
}

impl Pins {
    pub fn dir(&self) -> &Path {
        &self.dir
    }
}

impl Drop for Pins {
    fn drop(&mut self) {
        remove_pins(&self.dir);
    }
}

fn remove_pins(dir: &Path) {
    for name in NAMES {
        let _ = fs::remove_file(dir.join(name));
    }
    let _ = fs::remove_dir(dir);
    // The namespace directory too, once no interface of it is pinned.
    if let Some(ns_dir) = dir.parent() {
        let _ = fs::remove_dir(ns_dir);
        if let Some(root) = ns_dir.parent() {
            let _ = fs::remove_dir(root);
        }
    }
}

fn pin_err(path: &Path) -> impl FnOnce(io::Error) -> Error + '_ {
    move |source| Error::Pin {
        path: path.display().to_string(),
        source,
    }
}

impl Ledger {
    /// Pin this ledger for `iface` so that `netledger reset` can reach it.
    /// Refuses if a live ledger is pinned there already; clears stale pins
    /// (left by a ledger that is gone). Strategy `lock` only.
    pub fn pin(&self, iface: &str) -> Result<Pins> {
        let Backend::Lock(b) = &self.backend else {
            return Err(Error::NeedsLockStrategy { what: "pinning" });
        };
        ensure_bpffs()?;
        let dir = pin_dir(iface)?;
        if dir.exists() {
            match open_lock_backend(&dir, iface) {
                Err(Error::StalePin { .. }) | Err(Error::ForeignPin { .. }) => remove_pins(&dir),
                Ok(_) => {
                    return Err(Error::AlreadyRunning {
                        iface: iface.to_string(),
                    })
                }
                Err(e) => return Err(e),
            }
        }
        fs::create_dir_all(&dir).map_err(pin_err(&dir))?;
        let pins = Pins { dir: dir.clone() };
        for (name, fd) in b.pinnable() {
            let path = dir.join(name);
            sys::obj_pin(fd, &path).map_err(pin_err(&path))?;
        }
        self.set_cut_lock(CutLock::open(&dir)?);
        Ok(pins)
    }

    /// Open the ledger a running `watch` pinned for `iface` in this network
    /// namespace (strategy `lock`).
    pub fn open_pinned(iface: &str) -> Result<Ledger> {
        crate::ledger::preflight()?;
        if !is_bpffs(BPFFS) {
            return Err(Error::NotRunning {
                iface: iface.to_string(),
            });
        }
        let dir = pin_dir(iface)?;
        if !dir.exists() {
            return Err(Error::NotRunning {
                iface: iface.to_string(),
            });
        }
        let (backend, cfg) = open_lock_backend(&dir, iface)?;
        let ledger = Ledger::from_backend(cfg, Backend::Lock(backend), Default::default())?;
        ledger.set_cut_lock(CutLock::open(&dir)?);
        Ok(ledger)
    }
}

/// Open and check every pin; a pin set whose programs are not attached to
/// `iface` any more is stale, one that is not netledger's is foreign.
fn open_lock_backend(dir: &Path, iface: &str) -> Result<(LockBackend, LedgerConfig)> {
    let foreign = |why: String| Error::ForeignPin {
        path: dir.display().to_string(),
        why,
    };
    let mut fds = Vec::new();
    for name in NAMES {
        let path = dir.join(name);
        let fd = sys::obj_get(&path).map_err(|e| foreign(format!("{name}: {e}")))?;
        fds.push(fd);
    }
    // Programs: names must match.
    for (i, want) in [(0usize, "nl_xdp"), (1, "nl_exchange")] {
        let (_, name) =
            sys::prog_info(fds[i].as_fd()).map_err(|e| foreign(format!("{}: {e}", NAMES[i])))?;
        if name != want {
            return Err(foreign(format!(
                "{} is program {name:?}, not {want}",
                NAMES[i]
            )));
        }
    }
    // Maps: types and sizes must be ours.
    let expect: [(usize, u32, u32, u32); 6] = [
        (2, libbpf_sys::BPF_MAP_TYPE_HASH, 44, 4),
        (3, libbpf_sys::BPF_MAP_TYPE_ARRAY, 4, 88),
        (4, libbpf_sys::BPF_MAP_TYPE_QUEUE, 0, 4),
        (
            5,
            libbpf_sys::BPF_MAP_TYPE_PERCPU_ARRAY,
            4,
            std::mem::size_of::<crate::types::nl_stats>() as u32,
        ),
        (6, libbpf_sys::BPF_MAP_TYPE_ARRAY, 4, 88),
        (
            7,
            libbpf_sys::BPF_MAP_TYPE_ARRAY,
            4,
            std::mem::size_of::<nl_config>() as u32,
        ),
    ];
    let mut nslots = 0;
    for (i, ty, ks, vs) in expect {
        let (t, k, v, max, _) =
            sys::map_info(fds[i].as_fd()).map_err(|e| foreign(format!("{}: {e}", NAMES[i])))?;
        if (t, k, v) != (ty, ks, vs) {
            return Err(foreign(format!(
                "{} has type {t}, key {k} B, value {v} B",
                NAMES[i]
            )));
        }
        if i == 3 {
            nslots = max;
        }
    }
    let raw: nl_config =
        sys::lookup_first(fds[7].as_fd()).map_err(|e| foreign(format!("rodata: {e}")))?;
    let cfg = config_from_raw(&raw, nslots).ok_or_else(|| foreign("unknown key mode".into()))?;

    // Live: the pinned data path is what is attached to the interface now.
    let (pinned_id, _) =
        sys::prog_info(fds[0].as_fd()).map_err(|e| foreign(format!("xdp: {e}")))?;
    let attached = xdp_program_id(iface)?;
    if attached != Some(pinned_id) {
        return Err(Error::StalePin {
            path: dir.display().to_string(),
        });
    }
    let mut it = fds.into_iter();
    let mut next = || it.next().expect("eight pins");
    let backend = LockBackend::from_fds(
        next(),
        next(),
        next(),
        next(),
        next(),
        next(),
        next(),
        next(),
        nslots,
    )?;
    Ok((backend, cfg))
}

/// The configuration a pinned ledger was loaded with.
fn config_from_raw(raw: &nl_config, max_flows: u32) -> Option<LedgerConfig> {
    let key_mode = *KeyMode::ALL.get(raw.key_mode as usize)?;
    let ones4 = u32::from_be_bytes(raw.mask4.to_ne_bytes()).count_ones() as u8;
    let ones6: u32 = raw.mask6.iter().map(|w| w.count_ones()).sum();
    Some(LedgerConfig {
        key_mode,
        vlan: raw.vlan != 0,
        prefix4: (ones4 < 32).then_some(ones4),
        prefix6: (ones6 < 128).then_some(ones6 as u8),
        max_flows,
        strategy: Strategy::Lock,
        idle_cuts: 0,
    })
}
