//! Attaching a data path to an interface through a BPF link, so that
//! nothing stays attached once the link's last descriptor (or pin) goes.

use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};

use crate::config::XdpMode;
use crate::error::{Error, Result};
use crate::sys;

/// The kernel's internal "operation not supported" (not in libc).
const ENOTSUPP: i32 = 524;

/// The index of `iface` in this thread's network namespace.
pub fn ifindex(iface: &str) -> Result<u32> {
    nix::net::if_::if_nametoindex(iface).map_err(|_| Error::InterfaceNotFound {
        iface: iface.to_string(),
    })
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

/// A data path attached to an interface; dropping it detaches the program
/// (unless its link was pinned).
#[derive(Debug)]
pub struct Attachment {
    /// The interface.
    pub iface: String,
    /// Its index when attached.
    pub ifindex: u32,
    /// The XDP mode actually used (never `Auto`).
    pub mode: XdpMode,
    link: OwnedFd,
}

impl Attachment {
    /// Detach now (dropping does the same).
    pub fn detach(self) {
        drop(self.link);
    }

    /// The link, for pinning.
    pub(crate) fn link(&self) -> BorrowedFd<'_> {
        self.link.as_fd()
    }

    /// The link itself.
    pub(crate) fn into_link(self) -> OwnedFd {
        self.link
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
                    mode: m,
                    link,
                })
            }
            Err(e) => last = Some((m, e)),
        }
    }
    let (m, e) = last.expect("at least one attempt");
    Err(attach_error(iface, m, e))
}

/// The kernel's refusal to attach, as ours.
fn attach_error(iface: &str, mode: XdpMode, e: io::Error) -> Error {
    let iface = iface.to_string();
    match e.raw_os_error() {
        Some(libc::EPERM) | Some(libc::EACCES) => Error::PermissionDenied {
            op: format!("attaching to {iface}"),
        },
        Some(libc::EOPNOTSUPP) | Some(ENOTSUPP) => Error::XdpModeUnsupported { iface, mode },
        Some(libc::EBUSY) | Some(libc::EEXIST) => Error::XdpBusy { iface },
        Some(libc::ENODEV) => Error::InterfaceNotFound { iface },
        _ => Error::Attach { iface, source: e },
    }
}
