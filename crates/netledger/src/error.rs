use std::io;

/// Everything that can go wrong, each with the cause and the fix in its message.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("permission denied: netledger needs root (or CAP_BPF, CAP_NET_ADMIN and CAP_PERFMON); run it with sudo")]
    NotPrivileged,
    #[error("interface {name:?} does not exist in this network namespace; list interfaces with `ip link`")]
    InterfaceNotFound { name: String },
    #[error("interface {iface:?} does not support {mode} XDP; use --xdp-mode generic (or auto)")]
    XdpModeUnsupported { iface: String, mode: &'static str },
    #[error("interface {iface:?} already has an XDP program attached in another mode or without a link; detach it (`ip link set dev {iface} xdp off`) or pick the same --xdp-mode")]
    XdpBusy { iface: String },
    #[error("the kernel has no BTF ({path} is missing); netledger needs a kernel built with CONFIG_DEBUG_INFO_BTF=y")]
    NoKernelBtf { path: String },
    #[error("invalid {what}: {value} (expected {expected})")]
    InvalidConfig {
        what: &'static str,
        value: String,
        expected: &'static str,
    },
    #[error("loading the BPF programs failed: {source}; run as root on a kernel >= 5.18 with BPF and BTF enabled")]
    Load {
        #[source]
        source: libbpf_rs::Error,
    },
    #[error("{op} on map {map} failed: {source}")]
    Map {
        op: &'static str,
        map: &'static str,
        #[source]
        source: io::Error,
    },
    #[error("attaching XDP to {iface:?} failed: {source}")]
    Attach {
        iface: String,
        #[source]
        source: io::Error,
    },
    #[error("BPF_PROG_TEST_RUN failed: {source}")]
    TestRun {
        #[source]
        source: io::Error,
    },
    #[error("{what} needs --strategy lock (swap keeps no per-key state between cuts)")]
    NeedsLockStrategy { what: &'static str },
    #[error("bpffs is not mounted at /sys/fs/bpf and could not be mounted; mount it with `mount -t bpf bpf /sys/fs/bpf`")]
    BpffsNotMounted,
    #[error("no netledger is counting on {iface:?} in this network namespace that reset can reach; start one with `netledger watch --iface {iface} --strategy lock`")]
    NotRunning { iface: String },
    #[error("another netledger is already counting on {iface:?}; stop it first, or reset its counters with `netledger reset --iface {iface}`")]
    AlreadyRunning { iface: String },
    #[error("stale pins at {path}: the netledger that made them is gone; remove them with `rm -r {path}`")]
    StalePin { path: String },
    #[error("{path} is not a netledger pin set ({why}); remove it or use another interface")]
    ForeignPin { path: String, why: String },
    #[error("pinning at {path} failed: {source}")]
    Pin {
        path: String,
        #[source]
        source: io::Error,
    },
    #[error("the per-CPU statistics never settled after {tries} reads (a CPU stayed mid-update)")]
    StatsUnsettled { tries: u32 },
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
