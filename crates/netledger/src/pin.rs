//! The pin layout: where a ledger's programs and maps live in bpffs so that
//! other processes reach them, and the manifest that says what they are.
//!
//! Layout: `/sys/fs/bpf/netledger/ns<inode of the network namespace>/<iface>/`
//! holding `manifest` (a one-entry array map whose value is a JSON
//! [`Manifest`]: layout version, key configuration, owner) and one directory
//! per direction (`in/`) with the backend's programs and maps under the
//! names it chooses (and, for a service, the link). bpffs holds only BPF
//! objects, hence a map for the manifest. Pins are created 0600.
//!
//! Two locks, both `flock` on directories: the interface directory is held
//! (`LOCK_EX | LOCK_NB`) by the process that owns the ledger for as long as
//! it runs, so a second one is refused and a dead owner's lock is gone; a
//! direction's directory serializes the exchanges of a pinned `lock`
//! ledger (a cut, a reset), which share the output map.

use std::fs::{self, File};
use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use libbpf_rs::{MapCore, MapFlags, MapHandle, MapType};
use serde::{Deserialize, Serialize};

use crate::config::LedgerConfig;
use crate::error::{Error, Result};
use crate::sys;

/// Where bpffs is expected.
pub const BPFFS: &str = "/sys/fs/bpf";

/// The version of the pin layout; pins of another are refused, never reused.
/// 2: slots of 128 bytes, counters without time stamps, `gen` a global
/// variable's map.
pub const LAYOUT: u32 = 2;

/// Bytes of the manifest map's value (JSON, NUL-padded).
const MANIFEST_SIZE: u32 = 1024;
const MANIFEST: &str = "manifest";

/// Who keeps a pin set.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Owner {
    /// A `watch`: its pins go when it stops, and its link is not pinned, so
    /// a killed watch leaves nothing attached.
    Watch,
    /// The service (`run`): its link is pinned, so the kernel side keeps
    /// counting between processes; the next one adopts the pins.
    Service,
}

impl Owner {
    /// The command that keeps such pins.
    pub fn command(self) -> &'static str {
        match self {
            Owner::Watch => "netledger watch",
            Owner::Service => "netledger run",
        }
    }
}

/// What a pin set holds, written beside the pins.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Manifest {
    /// Always "netledger".
    pub magic: String,
    /// The pin layout version ([`LAYOUT`]).
    pub layout: u32,
    /// The netledger version that made the pins.
    pub version: String,
    /// The interface counted.
    pub iface: String,
    /// The configuration the data path was loaded with.
    pub config: LedgerConfig,
    /// Who keeps them.
    pub owner: Owner,
    /// The process that made or last adopted them.
    pub pid: u32,
    /// Unique to this pin set: the history store tells ledgers apart by it.
    pub instance: String,
    /// Where each of its data paths runs, one per direction (`in/`, `out/`).
    pub hooks: Vec<crate::config::Hook>,
}

impl Manifest {
    /// The manifest of a ledger of this version, made by this process.
    pub fn new(
        iface: &str,
        config: &LedgerConfig,
        owner: Owner,
        hooks: &[crate::config::Hook],
    ) -> Manifest {
        Manifest {
            magic: "netledger".into(),
            layout: LAYOUT,
            version: env!("CARGO_PKG_VERSION").into(),
            iface: iface.into(),
            config: config.clone(),
            owner,
            pid: std::process::id(),
            instance: fs::read_to_string("/proc/sys/kernel/random/uuid")
                .map(|s| s.trim().to_string())
                .unwrap_or_else(|_| {
                    format!(
                        "{}-{}",
                        std::process::id(),
                        crate::ctl::ns(std::time::SystemTime::now())
                    )
                }),
            hooks: hooks.to_vec(),
        }
    }
}

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

/// bpffs is mounted at /sys/fs/bpf.
pub fn bpffs_mounted() -> bool {
    nix::sys::statfs::statfs(BPFFS)
        .is_ok_and(|s| s.filesystem_type() == nix::sys::statfs::BPF_FS_MAGIC)
}

/// Mount bpffs at /sys/fs/bpf if it is not there.
fn ensure_bpffs() -> Result<()> {
    if bpffs_mounted() {
        return Ok(());
    }
    nix::mount::mount(
        Some("bpf"),
        BPFFS,
        Some("bpf"),
        nix::mount::MsFlags::empty(),
        None::<&str>,
    )
    .map_err(|e| Error::BpffsNotMounted {
        path: BPFFS.into(),
        source: e.into(),
    })
}

/// One pin directory.
#[derive(Debug, Clone)]
pub(crate) struct PinSet {
    dir: PathBuf,
}

impl PinSet {
    /// The pin set at `dir`.
    pub fn at(dir: PathBuf) -> PinSet {
        PinSet { dir }
    }

    /// The pin set of `iface` in this network namespace.
    pub fn of(iface: &str) -> Result<PinSet> {
        Ok(PinSet::at(pin_dir(iface)?))
    }

    /// The directory of one direction's objects.
    pub fn direction(&self, dir: crate::record::Direction) -> PinSet {
        PinSet::at(self.dir.join(dir.name()))
    }

    /// Whether anything is pinned there.
    pub fn exists(&self) -> bool {
        self.dir.exists()
    }

    /// Make the directory (bpffs mounted first).
    pub fn make(&self) -> Result<()> {
        ensure_bpffs()?;
        fs::create_dir_all(&self.dir).map_err(|e| self.err(e))
    }

    /// Its directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn err(&self, source: io::Error) -> Error {
        Error::Pin {
            path: self.dir.display().to_string(),
            source,
        }
    }

    fn foreign(&self, why: String) -> Error {
        Error::ForeignPin {
            path: self.dir.display().to_string(),
            why,
        }
    }

    /// Write (or rewrite) the manifest: pinned under another name, then
    /// renamed over the old one, so that a process killed at any instant
    /// leaves a whole manifest (never none, which no process could adopt).
    pub fn write_manifest(&self, manifest: &Manifest) -> Result<()> {
        // bpffs refuses dots in names.
        let fresh = format!("{MANIFEST}_new");
        let _ = fs::remove_file(self.dir.join(&fresh));
        let json = serde_json::to_vec(manifest).expect("a manifest serialises");
        assert!(
            json.len() < MANIFEST_SIZE as usize,
            "the manifest fits its map"
        );
        let mut value = vec![0u8; MANIFEST_SIZE as usize];
        value[..json.len()].copy_from_slice(&json);
        let opts = libbpf_sys::bpf_map_create_opts {
            sz: std::mem::size_of::<libbpf_sys::bpf_map_create_opts>() as _,
            ..Default::default()
        };
        let map = MapHandle::create(
            MapType::Array,
            Some("nl_manifest"),
            4,
            MANIFEST_SIZE,
            1,
            &opts,
        )
        .map_err(crate::error::map_err("create", "nl_manifest"))?;
        map.update(&0u32.to_ne_bytes(), &value, MapFlags::ANY)
            .map_err(crate::error::map_err("update", "nl_manifest"))?;
        self.put(&fresh, map.as_fd())?;
        fs::rename(self.dir.join(&fresh), self.dir.join(MANIFEST)).map_err(|e| self.err(e))
    }

    /// The manifest, checked: this layout, written by netledger.
    pub fn manifest(&self) -> Result<Manifest> {
        let map = MapHandle::from_pinned_path(self.dir.join(MANIFEST))
            .map_err(|e| self.foreign(format!("{MANIFEST}: {e}")))?;
        if map.value_size() != MANIFEST_SIZE {
            return Err(self.foreign(format!("{MANIFEST} is not a manifest map")));
        }
        let value = map
            .lookup(&0u32.to_ne_bytes(), MapFlags::ANY)
            .map_err(|e| self.foreign(format!("{MANIFEST}: {e}")))?
            .unwrap_or_default();
        let end = value.iter().position(|&b| b == 0).unwrap_or(value.len());
        let m: Manifest = serde_json::from_slice(&value[..end])
            .map_err(|e| self.foreign(format!("unreadable manifest: {e}")))?;
        if m.magic != "netledger" {
            return Err(self.foreign("the manifest is not netledger's".into()));
        }
        if m.layout != LAYOUT {
            return Err(self.foreign(format!(
                "pin layout {} where this version uses {LAYOUT}",
                m.layout
            )));
        }
        Ok(m)
    }

    /// Pin `fd` as `name`.
    pub fn put(&self, name: &str, fd: BorrowedFd<'_>) -> Result<()> {
        let path = self.dir.join(name);
        sys::obj_pin(fd, &path).map_err(|source| Error::Pin {
            path: path.display().to_string(),
            source,
        })
    }

    /// The program pinned as `name`, which must be named `prog_name`.
    pub fn prog(&self, name: &str, prog_name: &str) -> Result<OwnedFd> {
        let fd =
            sys::obj_get(&self.dir.join(name)).map_err(|e| self.foreign(format!("{name}: {e}")))?;
        let (_, got) = sys::prog_info(fd.as_fd())
            .map_err(|e| self.foreign(format!("{name} is not a program: {e}")))?;
        if got != prog_name {
            return Err(self.foreign(format!("{name} is program {got:?}, not {prog_name}")));
        }
        Ok(fd)
    }

    /// The map pinned as `name`, which must have this type and these sizes.
    pub fn map(
        &self,
        name: &str,
        ty: MapType,
        key: u32,
        value: u32,
        max_entries: u32,
    ) -> Result<MapHandle> {
        let map = MapHandle::from_pinned_path(self.dir.join(name))
            .map_err(|e| self.foreign(format!("{name}: {e}")))?;
        let got = (
            map.map_type(),
            map.key_size(),
            map.value_size(),
            map.max_entries(),
        );
        if got != (ty, key, value, max_entries) {
            return Err(self.foreign(format!(
                "{name} is a {:?} map of {} B keys, {} B values and {} entries",
                got.0, got.1, got.2, got.3
            )));
        }
        Ok(map)
    }

    /// Remove the pin `name` if it is there.
    pub fn unpin(&self, name: &str) -> Result<()> {
        match fs::remove_file(self.dir.join(name)) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => Err(Error::Pin {
                path: self.dir.join(name).display().to_string(),
                source: e,
            }),
            _ => Ok(()),
        }
    }

    /// Rename the pin `from` to `to`, replacing what `to` pinned.
    pub fn rename(&self, from: &str, to: &str) -> Result<()> {
        fs::rename(self.dir.join(from), self.dir.join(to)).map_err(|source| Error::Pin {
            path: self.dir.join(to).display().to_string(),
            source,
        })
    }

    /// An object pinned as `name`, if it is there.
    pub fn get(&self, name: &str) -> Option<OwnedFd> {
        sys::obj_get(&self.dir.join(name)).ok()
    }

    /// Hold this directory as its owner for as long as the lock lives;
    /// `None` if another process holds it.
    pub fn claim(&self) -> Result<Option<OwnerLock>> {
        let f = File::open(&self.dir).map_err(|e| self.err(e))?;
        // SAFETY: flock on a descriptor we own.
        if unsafe { libc::flock(f.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } == 0 {
            return Ok(Some(OwnerLock(f)));
        }
        match io::Error::last_os_error() {
            e if e.raw_os_error() == Some(libc::EWOULDBLOCK) => Ok(None),
            e => Err(self.err(e)),
        }
    }

    /// Remove every pin (subdirectories too), the directory, and the parents
    /// no other pin needs.
    pub fn remove(&self) {
        fn clear(dir: &Path) {
            if let Ok(entries) = fs::read_dir(dir) {
                for e in entries.flatten() {
                    if e.file_type().is_ok_and(|t| t.is_dir()) {
                        clear(&e.path());
                        let _ = fs::remove_dir(e.path());
                    } else {
                        let _ = fs::remove_file(e.path());
                    }
                }
            }
        }
        clear(&self.dir);
        let _ = fs::remove_dir(&self.dir);
        // The namespace directory and the root too, once empty.
        let mut up = self.dir.parent();
        while let Some(dir) = up {
            if dir == Path::new(BPFFS) || fs::remove_dir(dir).is_err() {
                break;
            }
            up = dir.parent();
        }
    }
}

/// The owner's hold on an interface's pin directory; released when dropped
/// (or when the process dies).
#[derive(Debug)]
pub(crate) struct OwnerLock(#[allow(dead_code)] File);

/// Exclusive hold on a pinned ledger's exchange (the flock of its pin directory).
#[derive(Debug)]
pub(crate) struct CutLock(File);

impl CutLock {
    pub fn open(dir: &Path) -> Result<CutLock> {
        let f = File::open(dir).map_err(|e| Error::Pin {
            path: dir.display().to_string(),
            source: e,
        })?;
        Ok(CutLock(f))
    }

    /// Hold the lock until the guard drops.
    pub fn hold(&self) -> CutLockGuard<'_> {
        // Blocks until the other exchange is done; EINTR just retries.
        loop {
            // SAFETY: flock on a descriptor this struct owns.
            if unsafe { libc::flock(self.0.as_raw_fd(), libc::LOCK_EX) } == 0 {
                break;
            }
            if io::Error::last_os_error().raw_os_error() != Some(libc::EINTR) {
                break;
            }
        }
        CutLockGuard(self)
    }
}

/// Releases the exchange lock on drop.
pub(crate) struct CutLockGuard<'a>(&'a CutLock);

impl Drop for CutLockGuard<'_> {
    fn drop(&mut self) {
        // SAFETY: flock on a descriptor the lock owns, alive for 'a.
        unsafe { libc::flock(self.0 .0.as_raw_fd(), libc::LOCK_UN) };
    }
}

/// A watch's pins; removed when dropped.
#[derive(Debug)]
pub struct Pins {
    set: PinSet,
    _owner: OwnerLock,
}

impl Pins {
    pub(crate) fn new(set: PinSet, owner: OwnerLock) -> Pins {
        Pins { set, _owner: owner }
    }

    /// The pin directory.
    pub fn dir(&self) -> &Path {
        self.set.dir()
    }
}

impl Drop for Pins {
    fn drop(&mut self) {
        self.set.remove();
    }
}
