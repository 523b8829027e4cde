//! Attaching a data path to an interface: XDP through a BPF link, tc through
//! a tcx link (kernel 6.6 and later) or, where tcx is missing, a clsact
//! qdisc and a filter of our own. Links detach when their last descriptor
//! (or pin) goes, so nothing stays attached after a crash; a clsact filter
//! is removed when the attachment drops, and the qdisc too if netledger
//! created it and nothing else uses it.

use std::io;
use std::os::fd::{BorrowedFd, OwnedFd};
use std::sync::Mutex;

use libbpf_rs::{TcHookBuilder, TC_EGRESS, TC_INGRESS};

use crate::config::{Hook, XdpMode};
use crate::error::{Error, Result};
use crate::sys;

/// The kernel's internal "operation not supported" (not in libc).
const ENOTSUPP: i32 = 524;

/// The handle and priority of netledger's clsact filters (what `tc filter
/// show` lists; chosen so as not to meet filters of the usual tools).
const CLSACT_HANDLE: u32 = 0x6e6c;
const CLSACT_PRIORITY: u32 = 0x6e6c;

/// The index of `iface` in this thread's network namespace.
pub fn ifindex(iface: &str) -> Result<u32> {
    nix::net::if_::if_nametoindex(iface).map_err(|_| Error::InterfaceNotFound {
        iface: iface.to_string(),
    })
}

/// The driver of `iface` (e.g. "veth", "virtio_net"), if it says.
pub fn driver(iface: &str) -> Option<String> {
    sys::driver(iface).ok()
}

/// The id of the XDP program attached to `iface` in any mode, if one is.
pub fn xdp_program_id(iface: &str) -> Result<Option<u32>> {
    let ifindex = ifindex(iface)?;
    let id = sys::xdp_query_id(ifindex, 0).map_err(|source| Error::Attach {
        iface: iface.to_string(),
        source,
    })?;
    Ok((id != 0).then_some(id))
}

/// How tc programs are attached.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum TcMode {
    /// tcx where the kernel has it (6.6+), else clsact.
    #[default]
    Auto,
    /// A tcx link only.
    Tcx,
    /// A clsact qdisc and filter only.
    Clsact,
}

/// How an attachment was made.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Attached {
    /// An XDP link in this mode (never `Auto`).
    Xdp(XdpMode),
    /// A tcx link.
    Tcx,
    /// A clsact filter.
    Clsact,
}

impl std::fmt::Display for Attached {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Attached::Xdp(m) => write!(f, "{m} XDP"),
            Attached::Tcx => f.write_str("tcx"),
            Attached::Clsact => f.write_str("clsact"),
        }
    }
}

/// A data path attached to an interface; dropping it detaches the program
/// (unless its link was pinned).
#[derive(Debug)]
pub struct Attachment {
    /// The interface.
    pub iface: String,
    /// Its index when attached.
    pub ifindex: u32,
    /// Where the program runs.
    pub hook: Hook,
    /// How it was attached.
    pub how: Attached,
    /// The XDP mode used (`Auto` for tc attachments).
    pub mode: XdpMode,
    keep: Keep,
}

#[derive(Debug)]
enum Keep {
    Link(OwnedFd),
    /// Held for its `Drop`, which removes the filter.
    Filter {
        _filter: ClsactFilter,
    },
}

impl Attachment {
    /// Detach now (dropping does the same).
    pub fn detach(self) {}

    /// The link itself, if the attachment is a link.
    pub(crate) fn into_link(self) -> Option<OwnedFd> {
        match self.keep {
            Keep::Link(l) => Some(l),
            Keep::Filter { .. } => None,
        }
    }
}

/// Attach XDP program `prog` to `iface` in `mode` (`Auto`: native if the
/// driver can, else generic).
pub(crate) fn xdp(prog: BorrowedFd<'_>, iface: &str, mode: XdpMode) -> Result<Attachment> {
    let ifindex = ifindex(iface)?;
    let attempts: &[XdpMode] = match mode {
        XdpMode::Auto => &[XdpMode::Native, XdpMode::Generic],
        XdpMode::Native => &[XdpMode::Native],
        XdpMode::Generic => &[XdpMode::Generic],
    };
    let mut last: Option<(XdpMode, io::Error)> = None;
    for &m in attempts {
        let flags = match m {
            XdpMode::Native => libbpf_sys::XDP_FLAGS_DRV_MODE,
            _ => libbpf_sys::XDP_FLAGS_SKB_MODE,
        };
        match sys::xdp_link(prog, ifindex, flags) {
            Ok(link) => {
                return Ok(Attachment {
                    iface: iface.to_string(),
                    ifindex,
                    hook: Hook::Xdp,
                    how: Attached::Xdp(m),
                    mode: m,
                    keep: Keep::Link(link),
                })
            }
            Err(e) => last = Some((m, e)),
        }
    }
    let (m, e) = last.expect("at least one attempt");
    Err(attach_error(iface, Some(m), e))
}

/// Attach tc program `prog` to `iface` at `hook` (ingress or egress):
/// through tcx, alongside whatever else is attached there (tcx runs several
/// programs; ours returns "next"), or through clsact where tcx is missing.
pub(crate) fn tc(
    prog: BorrowedFd<'_>,
    iface: &str,
    hook: Hook,
    mode: TcMode,
) -> Result<Attachment> {
    let ifindex = ifindex(iface)?;
    let attach_type = match hook {
        Hook::TcEgress => libbpf_sys::BPF_TCX_EGRESS,
        _ => libbpf_sys::BPF_TCX_INGRESS,
    };
    let attached = |how, keep| Attachment {
        iface: iface.to_string(),
        ifindex,
        hook,
        how,
        mode: XdpMode::Auto,
        keep,
    };
    if mode != TcMode::Clsact {
        match sys::tcx_link(prog, ifindex, attach_type) {
            Ok(link) => return Ok(attached(Attached::Tcx, Keep::Link(link))),
            // A kernel without tcx refuses the attach type.
            Err(e) if mode == TcMode::Auto && e.raw_os_error() == Some(libc::EINVAL) => {}
            Err(e) if e.raw_os_error() == Some(libc::ERANGE) => {
                return Err(Error::TcxFull {
                    iface: iface.to_string(),
                    point: if hook == Hook::TcEgress {
                        "egress"
                    } else {
                        "ingress"
                    },
                })
            }
            Err(e) => return Err(attach_error(iface, None, e)),
        }
    }
    let filter =
        ClsactFilter::attach(prog, ifindex, hook).map_err(|e| attach_error(iface, None, e))?;
    Ok(attached(Attached::Clsact, Keep::Filter { _filter: filter }))
}

/// A filter of ours on a clsact qdisc; removed on drop, with the qdisc if
/// we created it and no other filter is left on it.
#[derive(Debug)]
struct ClsactFilter {
    ifindex: u32,
    point: u32,
    /// The qdisc is one this process made (see [`MadeQdiscs`]).
    made: Option<QdiscKey>,
}

/// A clsact qdisc: the network namespace (its inode) and the interface.
type QdiscKey = (u64, u32);

/// The clsact qdiscs this process made, with how many of its filters hang
/// on each: a watch of both directions makes the qdisc for the first and
/// finds it there for the second, and only the last filter to go may
/// remove it.
struct MadeQdiscs;

static MADE: Mutex<Vec<(QdiscKey, usize)>> = Mutex::new(Vec::new());

impl MadeQdiscs {
    /// The qdisc of `ifindex` in this thread's namespace.
    fn key(ifindex: u32) -> QdiscKey {
        let ns = std::fs::metadata("/proc/thread-self/ns/net")
            .or_else(|_| std::fs::metadata("/proc/self/ns/net"))
            .map_or(0, |m| std::os::unix::fs::MetadataExt::ino(&m));
        (ns, ifindex)
    }

    /// One more filter on qdisc `key`; `created`: this call made it. The
    /// key back if the qdisc is this process's.
    fn hold(key: QdiscKey, created: bool) -> Option<QdiscKey> {
        let mut made = MADE.lock().unwrap_or_else(|e| e.into_inner());
        match made.iter_mut().find(|(k, _)| *k == key) {
            Some((_, n)) => *n += 1,
            None if created => made.push((key, 1)),
            None => return None,
        }
        Some(key)
    }

    /// One filter fewer on qdisc `key`; the last one deletes the qdisc if
    /// no filter (of anyone's) is left on it.
    fn release(key: QdiscKey) {
        let mut made = MADE.lock().unwrap_or_else(|e| e.into_inner());
        let Some(i) = made.iter().position(|(k, _)| *k == key) else {
            return;
        };
        made[i].1 -= 1;
        if made[i].1 == 0 {
            made.remove(i);
            let _ = sys::destroy_clsact_if_empty(key.1);
        }
    }
}

impl ClsactFilter {
    fn attach(prog: BorrowedFd<'_>, ifindex: u32, hook: Hook) -> io::Result<ClsactFilter> {
        let point = match hook {
            Hook::TcEgress => TC_EGRESS,
            _ => TC_INGRESS,
        };
        let mut builder = TcHookBuilder::new(prog);
        builder
            .ifindex(ifindex as i32)
            .replace(false)
            .handle(CLSACT_HANDLE)
            .priority(CLSACT_PRIORITY);
        // The qdisc may be someone else's: then it is never deleted.
        let made = MadeQdiscs::hold(MadeQdiscs::key(ifindex), sys::create_clsact(ifindex)?);
        let mut h = builder.hook(point);
        let mut attached = h.attach();
        if matches!(&attached, Err(e) if e.kind() == libbpf_rs::ErrorKind::AlreadyExists)
            && stale_filter(&mut h)
        {
            // A netledger killed before it could detach left its filter
            // here (a live one holds the interface's pins, so this process
            // would not have got this far): take its place.
            attached = builder.replace(true).hook(point).attach();
        }
        match attached {
            Ok(_) => Ok(ClsactFilter {
                ifindex,
                point,
                made,
            }),
            Err(e) => {
                if let Some(key) = made {
                    MadeQdiscs::release(key);
                }
                Err(io::Error::other(e))
            }
        }
    }
}

/// Whether the filter at `h`'s handle and priority runs netledger's tc
/// data path (`nl_tc`).
fn stale_filter(h: &mut libbpf_rs::TcHook) -> bool {
    h.query()
        .ok()
        .and_then(|id| sys::prog_name_by_id(id).ok())
        .is_some_and(|name| name == "nl_tc")
}

impl Drop for ClsactFilter {
    fn drop(&mut self) {
        let _ = sys::tc_detach(self.ifindex, self.point, CLSACT_HANDLE, CLSACT_PRIORITY);
        if let Some(key) = self.made {
            MadeQdiscs::release(key);
        }
    }
}

/// The kernel's refusal to attach, as ours.
fn attach_error(iface: &str, mode: Option<XdpMode>, e: io::Error) -> Error {
    let iface = iface.to_string();
    match (e.raw_os_error(), mode) {
        (Some(libc::EPERM) | Some(libc::EACCES), _) => Error::PermissionDenied {
            op: format!("attaching to {iface}"),
        },
        (Some(libc::EOPNOTSUPP) | Some(ENOTSUPP), Some(mode)) => {
            Error::XdpModeUnsupported { iface, mode }
        }
        (Some(libc::EBUSY) | Some(libc::EEXIST), Some(_)) => Error::XdpBusy { iface },
        (Some(libc::ENODEV), _) => Error::InterfaceNotFound { iface },
        _ => Error::Attach { iface, source: e },
    }
}
