//! What can go wrong, said with the values involved (interface, mode, map,
//! path, errno). The command line adds the advice and the flags to use.

use std::io;

use crate::config::{Strategy, XdpMode};

/// Every failure of the library.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The effective capability set lacks what loading BPF programs needs.
    #[error("missing capabilities: {}", missing.join(", "))]
    MissingCapabilities {
        /// The capabilities that are needed and not held, e.g. `CAP_BPF`.
        missing: Vec<&'static str>,
    },
    /// The kernel refused an operation with EPERM or EACCES.
    #[error("permission denied: {op}")]
    PermissionDenied {
        /// What was refused, e.g. "loading the BPF programs".
        op: String,
    },
    /// No interface of that name in the caller's network namespace.
    #[error("interface {iface:?} does not exist in this network namespace")]
    InterfaceNotFound {
        /// The name asked for.
        iface: String,
    },
    /// The driver (or the kernel) cannot attach XDP in this mode.
    #[error("interface {iface:?} does not support {mode} XDP")]
    XdpModeUnsupported {
        /// The interface.
        iface: String,
        /// The mode tried last.
        mode: XdpMode,
    },
    /// Another XDP program holds the interface in a way a link cannot share.
    #[error(
        "interface {iface:?} already has an XDP program attached in another mode or without a link"
    )]
    XdpBusy {
        /// The interface.
        iface: String,
    },
    /// The kernel publishes no BTF, which the data path is verified against.
    #[error("the kernel has no BTF ({path} is missing)")]
    NoKernelBtf {
        /// Where it was looked for.
        path: String,
    },
    /// A configuration value out of its range.
    #[error("invalid {what}: {value} (expected {expected})")]
    InvalidConfig {
        /// Which setting.
        what: &'static str,
        /// The value given.
        value: String,
        /// What would be valid.
        expected: &'static str,
    },
    /// libbpf could not open or load an object.
    #[error("loading the BPF programs failed: {source}")]
    Load {
        /// libbpf's error.
        #[source]
        source: libbpf_rs::Error,
    },
    /// A map operation failed.
    #[error("{op} on map {map} failed: {source}")]
    Map {
        /// The operation, e.g. "batch lookup".
        op: &'static str,
        /// The map's name, e.g. "nl_index".
        map: &'static str,
        /// The kernel's or libbpf's error.
        #[source]
        source: libbpf_rs::Error,
    },
    /// Attaching a program to an interface failed for another reason.
    #[error("attaching to {iface:?} failed: {source}")]
    Attach {
        /// The interface.
        iface: String,
        /// The kernel's error.
        #[source]
        source: io::Error,
    },
    /// The interface's tcx hook already runs as many programs as the kernel
    /// allows (ERANGE).
    #[error(
        "tcx {point} of {iface:?} is full: it already runs the most programs the kernel allows"
    )]
    TcxFull {
        /// The interface.
        iface: String,
        /// "ingress" or "egress".
        point: &'static str,
    },
    /// BPF_PROG_TEST_RUN failed.
    #[error("BPF_PROG_TEST_RUN of {prog} failed: {source}")]
    TestRun {
        /// The program.
        prog: &'static str,
        /// The kernel's error.
        #[source]
        source: io::Error,
    },
    /// An operation the ledger's strategy cannot do.
    #[error("{what} is not possible with strategy {strategy}")]
    Unsupported {
        /// The operation, e.g. "reset".
        what: &'static str,
        /// The ledger's strategy.
        strategy: Strategy,
    },
    /// bpffs is needed for pins and is not mounted (and mounting it failed).
    #[error("bpffs is not mounted at {path} and mounting it failed: {source}")]
    BpffsNotMounted {
        /// The mount point.
        path: String,
        /// Why mounting failed.
        #[source]
        source: io::Error,
    },
    /// No ledger is pinned for the interface.
    #[error("no netledger is counting on {iface:?} in this network namespace (no pins for it)")]
    NotRunning {
        /// The interface.
        iface: String,
    },
    /// A live ledger is already pinned for the interface.
    #[error("another netledger is already counting on {iface:?} (pinned at {path})")]
    AlreadyRunning {
        /// The interface.
        iface: String,
        /// Its pin directory.
        path: String,
    },
    /// Another live process owns the interface's pins.
    #[error("{command} (pid {pid}) is counting on {iface:?}")]
    Owned {
        /// The interface.
        iface: String,
        /// What owns it: `netledger run` or `netledger watch`.
        command: &'static str,
        /// Its process id.
        pid: u32,
    },
    /// The service's pins are there, and the operation would destroy counts
    /// only the service (or `down`) may take.
    #[error(
        "the netledger service's pins for {iface:?} are there (its program is still counting)"
    )]
    ServicePinned {
        /// The interface.
        iface: String,
    },
    /// Pins made with another configuration than the one asked for.
    #[error("the pins for {iface:?} were made with {pinned}, not {wanted}")]
    PinnedConfigDiffers {
        /// The interface.
        iface: String,
        /// The pinned configuration, in words.
        pinned: String,
        /// The one asked for.
        wanted: String,
    },
    /// Pins whose data path is no longer attached.
    #[error("stale pins at {path}: their program is no longer attached")]
    StalePin {
        /// The pin directory.
        path: String,
    },
    /// Something at the pin path that netledger did not make (or an older layout).
    #[error("{path} is not a netledger pin set of this version ({why})")]
    ForeignPin {
        /// The pin directory.
        path: String,
        /// What did not match.
        why: String,
    },
    /// Creating, opening or removing a pin failed.
    #[error("pinning at {path} failed: {source}")]
    Pin {
        /// The path.
        path: String,
        /// The kernel's error.
        #[source]
        source: io::Error,
    },
    /// A cut finished that is not the open one (finished before, or taken
    /// before another cut was).
    #[error("cut {seq} is not the open cut (finish each cut once, right after taking it)")]
    CutNotOpen {
        /// The cut's number.
        seq: u64,
    },
    /// A CPU never showed a settled copy of its statistics.
    #[error("CPU {cpu}'s statistics never settled in {tries} reads (a CPU stayed mid-update)")]
    StatsUnsettled {
        /// The CPU.
        cpu: usize,
        /// Reads tried.
        tries: u32,
    },
}

/// The library's result.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// An error for `op` on `map`.
pub(crate) fn map_err(
    op: &'static str,
    map: &'static str,
) -> impl FnOnce(libbpf_rs::Error) -> Error {
    move |source| Error::Map { op, map, source }
}

/// The same, for an io::Error from `sys`.
pub(crate) fn map_io_err(op: &'static str, map: &'static str) -> impl FnOnce(io::Error) -> Error {
    move |source| Error::Map {
        op,
        map,
        source: source.into(),
    }
}
