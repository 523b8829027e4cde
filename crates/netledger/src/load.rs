//! What every backend's loading shares: the checks before it, the mapping
//! of libbpf's errors, and owned handles taken from a loaded skeleton.

use std::fs;
use std::os::fd::{AsFd, OwnedFd};
use std::path::Path;

use libbpf_rs::{MapHandle, MapImpl};

use crate::error::{Error, Result};

/// Where the kernel publishes its own BTF; the data path is verified against it.
pub const KERNEL_BTF: &str = "/sys/kernel/btf/vmlinux";

/// The capabilities loading and attaching need (with CAP_SYS_ADMIN, none of
/// the first two is needed).
const CAP_NET_ADMIN: u32 = 12;
const CAP_SYS_ADMIN: u32 = 21;
const CAP_PERFMON: u32 = 38;
const CAP_BPF: u32 = 39;

/// Fail early, with the cause, where loading would fail obscurely: a kernel
/// without BTF, or an effective capability set without CAP_BPF and
/// CAP_PERFMON (or CAP_SYS_ADMIN). `NETLEDGER_KERNEL_BTF` overrides the BTF
/// path (for tests of this check).
pub fn preflight() -> Result<()> {
    let btf = std::env::var("NETLEDGER_KERNEL_BTF").unwrap_or_else(|_| KERNEL_BTF.to_string());
    if !Path::new(&btf).exists() {
        return Err(Error::NoKernelBtf { path: btf });
    }
    let missing = missing_capabilities();
    // Test hook: let the kernel alone decide (it refuses what lacks a capability).
    let skip = std::env::var_os("NETLEDGER_TEST_SKIP_CAPABILITY_CHECK").is_some();
    if !missing.is_empty() && !skip {
        return Err(Error::MissingCapabilities { missing });
    }
    Ok(())
}

/// The capabilities netledger needs to load, attach and pin that the
/// effective set lacks: CAP_BPF and CAP_PERFMON (loading; CAP_SYS_ADMIN
/// covers both) and CAP_NET_ADMIN (attaching to interfaces).
pub fn missing_capabilities() -> Vec<&'static str> {
    let Some(eff) = effective_capabilities() else {
        return Vec::new(); // cannot tell: let the kernel decide
    };
    let has = |c: u32| eff & (1u64 << c) != 0;
    let mut missing = Vec::new();
    if !has(CAP_SYS_ADMIN) {
        if !has(CAP_BPF) {
            missing.push("CAP_BPF");
        }
        if !has(CAP_PERFMON) {
            missing.push("CAP_PERFMON");
        }
    }
    if !has(CAP_NET_ADMIN) {
        missing.push("CAP_NET_ADMIN");
    }
    missing
}

/// The effective capability set, from /proc.
fn effective_capabilities() -> Option<u64> {
    let status = fs::read_to_string("/proc/self/status").ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("CapEff:"))
        .and_then(|h| u64::from_str_radix(h.trim(), 16).ok())
}

/// libbpf's error, as ours: a refusal for lack of privilege says so.
pub(crate) fn load_err(source: libbpf_rs::Error) -> Error {
    if source.kind() == libbpf_rs::ErrorKind::PermissionDenied {
        Error::PermissionDenied {
            op: "loading the BPF programs".into(),
        }
    } else {
        Error::Load { source }
    }
}

/// An owned handle of a loaded skeleton's map (the skeleton may then go).
pub(crate) fn own_map<T: std::fmt::Debug>(map: &MapImpl<'_, T>) -> Result<MapHandle> {
    MapHandle::try_from(map).map_err(load_err)
}

/// An owned descriptor of a loaded program.
pub(crate) fn own_prog(prog: &impl AsFd) -> Result<OwnedFd> {
    prog.as_fd()
        .try_clone_to_owned()
        .map_err(|e| load_err(e.into()))
}

/// Open the skeleton `$builder` into `$storage`, write its configuration
/// (`$raw`, the object's own `nl_config`) and mark only the program of
/// `$hook` for loading (only it is verified). Evaluates to the open skeleton.
macro_rules! open_for_hook {
    ($builder:ty, $storage:expr, $raw:expr, $hook:expr) => {{
        let mut open = <$builder>::default()
            .open($storage)
            .map_err($crate::load::load_err)?;
        open.maps
            .rodata_data
            .as_deref_mut()
            .expect("the object has a .rodata section")
            .nl_cfg = $raw;
        open.progs
            .nl_xdp
            .set_autoload($hook == $crate::config::Hook::Xdp);
        open.progs
            .nl_tc
            .set_autoload($hook != $crate::config::Hook::Xdp);
        open
    }};
}
pub(crate) use open_for_hook;
