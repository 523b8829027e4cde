//! What to do about an error: the library says what happened, with its
//! values; this adds the fix, in the command line's own words.

use netledger::Error;

/// The command-line flag that sets a configuration value the library names.
fn flag_of(what: &str) -> Option<&'static str> {
    Some(match what {
        "IPv4 prefix length" => "--prefix4 (1 to 32)",
        "IPv6 prefix length" => "--prefix6 (1 to 128)",
        "flow map size" => "--max-flows (at least 1)",
        "source address selector" => "--src",
        "destination address selector" => "--dst",
        "protocol or port selector" => "--proto/--sport/--dport",
        "VLAN selector" => "--vlan",
        "address selectors" => "--src/--dst",
        _ => return None,
    })
}

/// The fix for `e`, if the command line knows one.
pub fn advice(e: &Error) -> Option<String> {
    Some(match e {
        Error::MissingCapabilities { .. } | Error::PermissionDenied { .. } => {
            "netledger needs root (or CAP_BPF, CAP_NET_ADMIN and CAP_PERFMON); run it with sudo"
                .into()
        }
        Error::InterfaceNotFound { .. } => "list interfaces with `ip link`".into(),
        Error::XdpModeUnsupported { .. } => "use --xdp-mode generic (or auto)".into(),
        Error::TcxFull { .. } => "detach one of its programs, or use --tc-attach clsact".into(),
        Error::XdpBusy { iface } => {
            format!("detach it (`ip link set dev {iface} xdp off`) or pick the same --xdp-mode")
        }
        Error::NoKernelBtf { .. } => {
            "netledger needs a kernel built with CONFIG_DEBUG_INFO_BTF=y".into()
        }
        Error::InvalidConfig { what, .. } => match flag_of(what) {
            Some(flag) => format!("check {flag}"),
            None => return None,
        },
        Error::Load { .. } => {
            "run as root on a kernel >= 5.18 with BPF and BTF enabled; --verbose shows libbpf's log"
                .into()
        }
        Error::Unsupported { .. } => "start the ledger with --strategy lock".into(),
        Error::BpffsNotMounted { path, .. } => format!(
            "mount it as root with `mount -t bpf bpf {path}` (mounting needs CAP_SYS_ADMIN, which netledger does not ask for)"
        ),
        Error::Pin { source, .. } if source.kind() == std::io::ErrorKind::PermissionDenied => {
            // SAFETY: getuid and getgid cannot fail.
            let (uid, gid) = unsafe { (libc::getuid(), libc::getgid()) };
            format!(
                "as root, let this user (uid {uid}) reach bpffs and own netledger's directory there: \
                 `chmod o+x /sys/fs/bpf && install -d -o {uid} -g {gid} -m 0700 /sys/fs/bpf/netledger` \
                 (contrib/netledger.service does this before it starts), and remove pins another user left there"
            )
        }
        Error::NotRunning { iface } => {
            format!("start one with `netledger watch --iface {iface} --strategy lock`")
        }
        Error::AlreadyRunning { iface, .. } => {
            format!("stop it first, or reset its counters with `netledger reset --iface {iface}`")
        }
        Error::StalePin { path } => {
            format!("remove them with `rm -r {path}` (a new `netledger watch` also clears them)")
        }
        Error::ForeignPin { path, .. } => format!(
            "if it holds counts, take it down with `netledger down` from the version that made it; else remove it (`rm -r {path}`)"
        ),
        Error::Owned { pid, command, .. } => match *command {
            "netledger run" => format!("stop the service first (systemctl stop netledger, or kill {pid})"),
            _ => format!("stop that watch first (Ctrl-C it, or kill {pid})"),
        },
        Error::ServicePinned { iface } => format!(
            "the service's counts are there: let `netledger run` adopt them, or take them down with `netledger down --iface {iface}` (which commits them to the store)"
        ),
        Error::PinnedConfigDiffers { iface, .. } => format!(
            "start with the pinned settings, or take the pins down with `netledger down --iface {iface}` (which commits their counts) and start again"
        ),
        _ => return None,
    })
}
