//! Network namespaces for tests and the demo.
//!
//! A small testbed made of real kernel objects:
//!
//! * [`NetNs`]: a named network namespace (`ip netns add`), deleted on drop;
//! * [`veth_pair`] / [`Veth`]: a veth pair between namespaces, deleted on drop;
//! * [`Iface`]: one interface, configured for exact per-packet counting
//!   ([`Iface::prepare`]: offloads off, IPv6 quiet, up), with addresses,
//!   static neighbours, its MAC and ifindex;
//! * [`RawSocket`]: sends hand-built Ethernet frames as they are;
//! * [`Capture`]: the ground truth of every frame an interface sent;
//! * the packet socket pieces it is made of ([`packet_socket`],
//!   [`bind_packet`], [`setsockopt`], [`recv_packet`], [`with_vlan_tag`],
//!   [`packet_drops`]), for captures of other kinds.
//!
//! Configuration goes through the `ip` and `ethtool` commands (iproute2 and
//! ethtool must be installed); everything needs root.
//!
//! A socket belongs for its whole life to the namespace of the thread that
//! created it. Create sockets inside [`NetNs::run`] and use them from any
//! thread afterwards:
//!
//! ```no_run
//! # fn main() -> std::io::Result<()> {
//! let ns = netledger_lab::netns::NetNs::create("demo")?;
//! let sock = ns.run(|| std::net::UdpSocket::bind("127.0.0.1:0"))?;
//! // `sock` lives in `ns` even though it is used from this thread.
//! # Ok(()) }
//! ```
//!
//! `None` for a namespace always means the namespace of the calling thread;
//! commands started from a thread inherit that thread's namespace.
//!
//! What a quiet interface still sends: with [`Ipv6Mode::Off`] and static
//! neighbours, nothing at all. With [`Ipv6Mode::Static`], each IPv6 address
//! added joins its solicited-node multicast group and the kernel announces
//! that with unsolicited MLDv2 reports (ICMPv6 type 143 behind a hop-by-hop
//! header, sent from `::` since there is no link-local address): two per
//! address (the robustness variable), normally spread over a second, here
//! squeezed into the few milliseconds after `ip addr add` by setting the
//! unsolicited report interval to 1 ms. Nothing else follows, but a capture
//! or a ledger started right after adding addresses may still see them:
//! count them separately or filter them.

use std::ffi::CString;
use std::fmt;
use std::fs::File;
use std::io;
use std::mem::{size_of, size_of_val};
use std::net::IpAddr;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// Where `ip netns` keeps its namespaces.
const NETNS_RUN_DIR: &str = "/run/netns";

/// The longest interface name the kernel accepts (IFNAMSIZ - 1).
pub const MAX_IFNAME_LEN: usize = 15;

/// The capture socket's receive buffer (SO_RCVBUFFORCE; the kernel doubles it).
const CAPTURE_RCVBUF: libc::c_int = 64 << 20;

/// The largest frame a capture takes whole; larger ones fail the capture.
const CAPTURE_FRAME_MAX: usize = 256 << 10;

/// How long a capture's read waits before looking at its stop flag.
const CAPTURE_POLL: Duration = Duration::from_millis(50);

/// How long a stopping capture may keep draining a socket that never empties.
const CAPTURE_DRAIN_MAX: Duration = Duration::from_secs(1);

/// `ethtool -K` features turned off by [`Iface::disable_offloads`], with the
/// names `ethtool -k` reports them under.
const OFFLOADS: &[(&str, &str)] = &[
    ("gro", "generic-receive-offload"),
    ("lro", "large-receive-offload"),
    ("gso", "generic-segmentation-offload"),
    ("tso", "tcp-segmentation-offload"),
    ("tx-udp-segmentation", "tx-udp-segmentation"),
    ("tx", "tx-checksumming"),
    ("rx", "rx-checksumming"),
    ("txvlan", "tx-vlan-offload"),
    ("rxvlan", "rx-vlan-offload"),
    ("tx-vlan-stag-hw-insert", "tx-vlan-stag-hw-insert"),
    ("rx-vlan-stag-hw-parse", "rx-vlan-stag-hw-parse"),
];

// ---------------------------------------------------------------------------
// Commands

/// Runs `program args...` and returns its stdout; a failure carries the
/// command line, the exit status and stderr.
fn command(program: &str, args: &[&str]) -> io::Result<String> {
    let cmdline = || {
        let mut s = program.to_string();
        for a in args {
            s.push(' ');
            s.push_str(a);
        }
        s
    };
    let out = Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .map_err(|e| {
            io::Error::new(
                e.kind(),
                format!("cannot run `{}`: {e} (is {program} installed?)", cmdline()),
            )
        })?;
    if !out.status.success() {
        let stderr = String::from_utf8_lossy(&out.stderr);
        return Err(io::Error::other(format!(
            "`{}` failed ({}): {}",
            cmdline(),
            out.status,
            stderr.trim()
        )));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// `ip [-n ns] args...`
fn ip_in(ns: Option<&str>, args: &[&str]) -> io::Result<String> {
    match ns {
        Some(ns) => {
            let mut all = vec!["-n", ns];
            all.extend_from_slice(args);
            command("ip", &all)
        }
        None => command("ip", args),
    }
}

/// Whether a failed `ip` command failed only because its device or namespace
/// is already gone.
fn is_gone(e: &io::Error) -> bool {
    let msg = e.to_string();
    [
        "Cannot find device",
        "does not exist",
        "Cannot open network namespace",
        "No such device",
    ]
    .iter()
    .any(|m| msg.contains(m))
}

/// An io::Error for the last OS error, saying what failed.
fn os_error(what: impl fmt::Display) -> io::Error {
    let e = io::Error::last_os_error();
    io::Error::new(e.kind(), format!("{what}: {e}"))
}

fn invalid(msg: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidInput, msg)
}

/// Interface names: 1 to 15 bytes, none of `/`, `:`, whitespace or NUL.
fn check_ifname(name: &str) -> io::Result<()> {
    let bad = |c: char| c == '/' || c == ':' || c == '\0' || c.is_whitespace();
    if name.is_empty()
        || name.len() > MAX_IFNAME_LEN
        || name == "."
        || name == ".."
        || name.contains(bad)
    {
        return Err(invalid(format!(
            "invalid interface name {name:?}: use 1 to {MAX_IFNAME_LEN} bytes without '/', ':' or spaces"
        )));
    }
    Ok(())
}

/// `aa:bb:cc:dd:ee:ff`
pub fn format_mac(mac: [u8; 6]) -> String {
    let [a, b, c, d, e, f] = mac;
    format!("{a:02x}:{b:02x}:{c:02x}:{d:02x}:{e:02x}:{f:02x}")
}

// ---------------------------------------------------------------------------
// Namespaces

static NEXT_NETNS: AtomicU32 = AtomicU32::new(0);

/// `ip netns add` mounts /run/netns on first use without a lock; two of them
/// at once can stack that mount. Serialise ours.
static NETNS_ADD: Mutex<()> = Mutex::new(());

/// A network namespace this process created; deleted (`ip netns del`) on
/// drop, even while panicking.
///
/// The namespace itself lives on while anything still refers to it (a
/// socket created in it, a thread inside it); its interfaces go with it, a
/// moment after the last reference is gone.
#[derive(Debug)]
pub struct NetNs {
    name: String,
}

impl NetNs {
    /// Creates a namespace named `{prefix}-{pid}-{n}` and brings its `lo` up.
    pub fn create(prefix: &str) -> io::Result<NetNs> {
        let ok = |c: char| c.is_ascii_alphanumeric() || c == '-' || c == '_' || c == '.';
        if prefix.is_empty() || prefix.len() > 64 || !prefix.chars().all(ok) {
            return Err(invalid(format!(
                "invalid namespace prefix {prefix:?}: use 1 to 64 of [A-Za-z0-9._-]"
            )));
        }
        let pid = std::process::id();
        let mut attempts = 0;
        loop {
            let n = NEXT_NETNS.fetch_add(1, Ordering::Relaxed);
            let name = format!("{prefix}-{pid}-{n}");
            let added = {
                let _serial = NETNS_ADD.lock().unwrap_or_else(|e| e.into_inner());
                command("ip", &["netns", "add", &name])
            };
            match added {
                Ok(_) => {
                    let ns = NetNs { name };
                    ns.ip(&["link", "set", "dev", "lo", "up"])?;
                    return Ok(ns);
                }
                // Left behind by an earlier process that had our pid: not
                // ours to delete, take the next number.
                Err(e) if e.to_string().contains("File exists") && attempts < 64 => {
                    attempts += 1;
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// The name under /run/netns.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Runs `f` on a fresh thread that has entered this namespace
    /// (`setns(CLONE_NEWNET)`), waits for it and returns its value; a panic
    /// inside `f` propagates. Sockets `f` creates stay in this namespace
    /// wherever they are used later. Panics if the namespace cannot be
    /// entered; see [`NetNs::try_run`].
    ///
    /// Note that `/sys` and `/proc/self/net` still show the namespace they
    /// were mounted or opened in; use `/proc/thread-self/net` and sockets.
    pub fn run<T: Send, F: FnOnce() -> T + Send>(&self, f: F) -> T {
        match self.try_run(f) {
            Ok(v) => v,
            Err(e) => panic!("{e}"),
        }
    }

    /// [`NetNs::run`], with an error if the namespace cannot be entered.
    pub fn try_run<T: Send, F: FnOnce() -> T + Send>(&self, f: F) -> io::Result<T> {
        run_in_named(&self.name, f)
    }

    /// `ip -n NAME args...`; returns its stdout.
    pub fn ip(&self, args: &[&str]) -> io::Result<String> {
        ip_in(Some(&self.name), args)
    }

    /// Runs `program args...` inside this namespace; returns its stdout.
    pub fn exec(&self, program: &str, args: &[&str]) -> io::Result<String> {
        self.try_run(|| command(program, args))?
    }
}

impl Drop for NetNs {
    fn drop(&mut self) {
        // Pins are kept per namespace inode, and the kernel reuses a deleted
        // namespace's inode: pins a killed process left in this namespace
        // would be found by a later test's namespace. They go with it.
        let ino = std::fs::metadata(format!("{NETNS_RUN_DIR}/{}", self.name))
            .map(|m| std::os::unix::fs::MetadataExt::ino(&m))
            .ok();
        if let Err(e) = command("ip", &["netns", "del", &self.name]) {
            eprintln!(
                "netledger: could not delete network namespace {}: {e}",
                self.name
            );
        }
        if let Some(ino) = ino {
            let pins = std::path::Path::new(netledger::BPFFS)
                .join("netledger")
                .join(format!("ns{ino}"));
            if pins.exists() {
                if let Err(e) = std::fs::remove_dir_all(&pins) {
                    eprintln!("netledger: could not remove {}: {e}", pins.display());
                }
            }
        }
    }
}

/// Runs `f` on a thread inside the named namespace.
fn run_in_named<T: Send, F: FnOnce() -> T + Send>(ns: &str, f: F) -> io::Result<T> {
    let path = format!("{NETNS_RUN_DIR}/{ns}");
    let file = File::open(&path).map_err(|e| {
        io::Error::new(
            e.kind(),
            format!("cannot open network namespace {path}: {e}"),
        )
    })?;
    std::thread::scope(|s| {
        let handle = std::thread::Builder::new()
            .name(format!("netns {ns}"))
            .spawn_scoped(s, move || {
                // SAFETY: a plain syscall on a descriptor we own; it changes
                // only this thread's network namespace.
                if unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
                    return Err(os_error(format_args!("setns({path}, CLONE_NEWNET)")));
                }
                drop(file);
                Ok(f())
            })?;
        match handle.join() {
            Ok(r) => r,
            Err(panic) => std::panic::resume_unwind(panic),
        }
    })
}

/// Runs `f` in `ns`, or on the calling thread for `None`.
fn run_in<T: Send, F: FnOnce() -> T + Send>(ns: Option<&str>, f: F) -> io::Result<T> {
    match ns {
        Some(ns) => run_in_named(ns, f),
        None => Ok(f()),
    }
}

// ---------------------------------------------------------------------------
// Interfaces

/// How an interface handles IPv6 (see [`Iface::set_ipv6`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ipv6Mode {
    /// `disable_ipv6=1`: no IPv6 at all, so no link-local address, DAD,
    /// router solicitation or MLD; IPv6 addresses cannot be added.
    Off,
    /// IPv6 on, but only the addresses added by hand: `addrgenmode none` (no
    /// link-local address, hence no DAD and no router solicitation),
    /// `accept_ra=0`, `accept_dad=0`, MLD unsolicited report interval 1 ms.
    /// Each address added still makes the kernel send two MLDv2 reports for
    /// its solicited-node group, within milliseconds.
    Static,
    /// Leave the kernel's IPv6 behaviour as it is.
    Kernel,
}

/// An interface by name, in a namespace this process created or (`None`)
/// in the namespace of whichever thread uses it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Iface {
    name: String,
    netns: Option<String>,
}

impl Iface {
    /// Names interface `name` in `ns`; checks only the name.
    pub fn new(ns: Option<&NetNs>, name: &str) -> io::Result<Iface> {
        check_ifname(name)?;
        Ok(Iface {
            name: name.to_string(),
            netns: ns.map(|ns| ns.name.clone()),
        })
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// The name of its namespace; `None` for the calling thread's.
    pub fn netns(&self) -> Option<&str> {
        self.netns.as_deref()
    }

    /// `ip [-n NS] args...` in the interface's namespace; returns stdout.
    pub fn ip(&self, args: &[&str]) -> io::Result<String> {
        ip_in(self.netns.as_deref(), args)
    }

    /// Runs `f` in the interface's namespace (a new thread) or, for `None`,
    /// on the calling thread.
    pub fn run<T: Send, F: FnOnce() -> T + Send>(&self, f: F) -> io::Result<T> {
        run_in(self.netns.as_deref(), f)
    }

    /// Configures the interface for exact per-packet counting: down, IPv6
    /// per `ipv6`, every offload that merges, splits or rewrites frames off
    /// ([`Iface::disable_offloads`]), up. Call it before adding addresses.
    pub fn prepare(&self, ipv6: Ipv6Mode) -> io::Result<()> {
        self.ip(&["link", "set", "dev", &self.name, "down"])?;
        self.set_ipv6(ipv6)?;
        self.disable_offloads()?;
        self.set_up()
    }

    /// `ip link set dev IF up`
    pub fn set_up(&self) -> io::Result<()> {
        self.ip(&["link", "set", "dev", &self.name, "up"]).map(drop)
    }

    /// Sets the interface's IPv6 behaviour; takes full effect when the
    /// interface next comes up (link-local addresses already there stay).
    pub fn set_ipv6(&self, mode: Ipv6Mode) -> io::Result<()> {
        match mode {
            Ipv6Mode::Off => {
                let written = self.sysctl_ipv6("disable_ipv6", "1");
                // A kernel without IPv6 needs nothing turned off.
                let no_ipv6 = || self.run(|| !std::path::Path::new("/proc/sys/net/ipv6").exists());
                match written {
                    Err(e) if e.kind() == io::ErrorKind::NotFound && no_ipv6()? => Ok(()),
                    r => r,
                }
            }
            Ipv6Mode::Static => {
                self.sysctl_ipv6("disable_ipv6", "0")?;
                self.sysctl_ipv6("accept_ra", "0")?;
                self.sysctl_ipv6("accept_dad", "0")?;
                // Each address's MLD reports all go out right when it is
                // added, instead of being repeated over the next second.
                self.sysctl_ipv6("mldv1_unsolicited_report_interval", "1")?;
                self.sysctl_ipv6("mldv2_unsolicited_report_interval", "1")?;
                self.ip(&["link", "set", "dev", &self.name, "addrgenmode", "none"])
                    .map(drop)
            }
            Ipv6Mode::Kernel => Ok(()),
        }
    }

    /// Writes net.ipv6.conf.IF.`key` in the interface's namespace.
    fn sysctl_ipv6(&self, key: &str, value: &str) -> io::Result<()> {
        let path = format!("/proc/sys/net/ipv6/conf/{}/{key}", self.name);
        self.run(|| std::fs::write(&path, value))?
            .map_err(|e| io::Error::new(e.kind(), format!("writing {value} to {path}: {e}")))
    }

    /// Turns off, with `ethtool -K`, GRO, LRO, GSO, TSO, UDP segmentation,
    /// tx/rx checksum offload and VLAN tag insertion/stripping, so that every
    /// frame the stack hands to the device is one wire frame, with its
    /// checksums and VLAN tag in its bytes. A feature the device cannot
    /// change (`[fixed]`) or does not have is skipped; one that stays on
    /// although it could change is an error.
    pub fn disable_offloads(&self) -> io::Result<()> {
        let ethtool = |args: &[&str]| self.run(|| command("ethtool", args))?;
        let mut args = vec!["-K", self.name.as_str()];
        for (short, _) in OFFLOADS {
            args.extend([*short, "off"]);
        }
        let mut failures = Vec::new();
        if let Err(all) = ethtool(&args) {
            if all.kind() == io::ErrorKind::NotFound {
                return Err(all);
            }
            // Some feature is missing or fixed: one at a time, keeping
            // whatever each one said for the check below.
            for (short, _) in OFFLOADS {
                if let Err(e) = ethtool(&["-K", &self.name, short, "off"]) {
                    failures.push(format!("{short}: {e}"));
                }
            }
        }
        let state = ethtool(&["-k", &self.name])?;
        let still_on: Vec<&str> = OFFLOADS
            .iter()
            .filter(|(_, long)| stuck_on(&state, long))
            .map(|(short, _)| *short)
            .collect();
        if !still_on.is_empty() {
            return Err(io::Error::other(format!(
                "could not turn off {} on {}: {}",
                still_on.join(", "),
                self.name,
                failures.join("; ")
            )));
        }
        Ok(())
    }

    /// Adds `addr/prefix_len`; IPv6 addresses with `nodad`, usable at once.
    pub fn add_addr(&self, addr: IpAddr, prefix_len: u8) -> io::Result<()> {
        let cidr = format!("{addr}/{prefix_len}");
        let mut args = vec!["addr", "add", cidr.as_str(), "dev", self.name.as_str()];
        if addr.is_ipv6() {
            args.push("nodad");
        }
        self.ip(&args).map(drop)
    }

    /// A static neighbour entry (`ip neigh replace ADDR lladdr MAC nud
    /// permanent dev IF`): no ARP or neighbour solicitation for `addr`.
    pub fn add_neigh(&self, addr: IpAddr, mac: [u8; 6]) -> io::Result<()> {
        let addr = addr.to_string();
        let mac = format_mac(mac);
        self.ip(&[
            "neigh",
            "replace",
            &addr,
            "lladdr",
            &mac,
            "nud",
            "permanent",
            "dev",
            &self.name,
        ])
        .map(drop)
    }

    /// The interface's Ethernet address.
    pub fn mac(&self) -> io::Result<[u8; 6]> {
        let name = self.name.as_str();
        self.run(|| mac_here(name))?
    }

    /// The interface's index in its namespace.
    pub fn ifindex(&self) -> io::Result<u32> {
        let name = self.name.as_str();
        self.run(|| ifindex_here(name))?
    }
}

/// Whether `ethtool -k` output shows feature `long` on although it is not
/// fixed: `on` without `[fixed]` and, for a group such as tx-checksumming,
/// with some member on and not fixed.
fn stuck_on(state: &str, long: &str) -> bool {
    let on = |v: &str| v.starts_with("on") && !v.contains("[fixed]");
    let mut lines = state.lines();
    let Some(value) = lines
        .by_ref()
        .find_map(|l| l.strip_prefix(long)?.strip_prefix(':'))
    else {
        return false;
    };
    if !on(value.trim()) {
        return false;
    }
    let mut members = lines
        .take_while(|l| l.starts_with(char::is_whitespace))
        .peekable();
    members.peek().is_none()
        || members.any(|l| l.split_once(':').is_some_and(|(_, v)| on(v.trim())))
}

/// The index of `name` in the calling thread's namespace.
fn ifindex_here(name: &str) -> io::Result<u32> {
    check_ifname(name)?;
    let cname = CString::new(name)?;
    // SAFETY: a valid NUL-terminated string.
    let index = unsafe { libc::if_nametoindex(cname.as_ptr()) };
    if index == 0 {
        return Err(os_error(format_args!(
            "no interface {name:?} in this network namespace"
        )));
    }
    Ok(index)
}

/// The Ethernet address of `name` in the calling thread's namespace.
fn mac_here(name: &str) -> io::Result<[u8; 6]> {
    check_ifname(name)?;
    // Device ioctls act in the socket's namespace: this thread's.
    // SAFETY: plain syscall; the descriptor is owned right away.
    let fd = unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) };
    if fd < 0 {
        return Err(os_error("socket(AF_INET, SOCK_DGRAM)"));
    }
    // SAFETY: fd is a fresh descriptor nobody else owns.
    let sock = unsafe { OwnedFd::from_raw_fd(fd) };
    // SAFETY: ifreq is plain data; all zeroes is a valid value.
    let mut req: libc::ifreq = unsafe { std::mem::zeroed() };
    for (dst, src) in req.ifr_name.iter_mut().zip(name.bytes()) {
        *dst = src as libc::c_char;
    }
    // SAFETY: SIOCGIFHWADDR reads the name and fills ifr_hwaddr of `req`.
    if unsafe { libc::ioctl(sock.as_raw_fd(), libc::SIOCGIFHWADDR as _, &mut req) } != 0 {
        return Err(os_error(format_args!("SIOCGIFHWADDR {name:?}")));
    }
    // SAFETY: the kernel filled the hwaddr member.
    let hw = unsafe { req.ifr_ifru.ifru_hwaddr };
    if hw.sa_family != libc::ARPHRD_ETHER {
        return Err(invalid(format!(
            "{name:?} is not an Ethernet interface (ARPHRD {})",
            hw.sa_family
        )));
    }
    let mut mac = [0u8; 6];
    for (dst, src) in mac.iter_mut().zip(hw.sa_data) {
        *dst = src as u8;
    }
    Ok(mac)
}

// ---------------------------------------------------------------------------
// veth

/// A veth pair; deleting one end deletes both. Dropping it deletes it; an
/// end already gone (e.g. with its namespace) is fine.
///
/// An end made with no namespace lives in the namespace of the thread that
/// called [`veth_pair`]; it is deleted from the namespace of the thread that
/// drops the pair, when the other end's namespace cannot do it.
#[derive(Debug)]
pub struct Veth {
    a: Iface,
    b: Iface,
}

/// Creates veth `a` <-> `b`, each end made directly in its namespace (`None`:
/// the calling thread's), so names only need to be unique there. Both ends
/// start down; see [`Iface::prepare`].
pub fn veth_pair(a: &str, a_ns: Option<&NetNs>, b: &str, b_ns: Option<&NetNs>) -> io::Result<Veth> {
    let a = Iface::new(a_ns, a)?;
    let b = Iface::new(b_ns, b)?;
    let mut args = vec!["link", "add", a.name()];
    if let Some(ns) = a.netns() {
        args.extend(["netns", ns]);
    }
    args.extend(["type", "veth", "peer", "name", b.name()]);
    if let Some(ns) = b.netns() {
        args.extend(["netns", ns]);
    }
    command("ip", &args)?;
    Ok(Veth { a, b })
}

impl Veth {
    /// The first end.
    pub fn a(&self) -> &Iface {
        &self.a
    }

    /// The second end.
    pub fn b(&self) -> &Iface {
        &self.b
    }
}

impl Drop for Veth {
    fn drop(&mut self) {
        // Ends in a named namespace first: those names cannot mean anything
        // else. Either end takes the pair with it.
        let mut ends = [&self.a, &self.b];
        ends.sort_by_key(|end| end.netns.is_none());
        let mut errors = Vec::new();
        for end in ends {
            match end.ip(&["link", "del", "dev", &end.name]) {
                Ok(_) => return,
                Err(e) if is_gone(&e) => {}
                Err(e) => errors.push(e.to_string()),
            }
        }
        if !errors.is_empty() {
            eprintln!(
                "netledger: could not delete veth {} <-> {}: {}",
                self.a.name,
                self.b.name,
                errors.join("; ")
            );
        }
    }
}

// ---------------------------------------------------------------------------
// AF_PACKET

/// A new AF_PACKET SOCK_RAW socket with protocol 0: it receives nothing
/// until bound with a protocol.
pub fn packet_socket() -> io::Result<OwnedFd> {
    // SAFETY: plain syscall; the descriptor is owned right away.
    let fd = unsafe { libc::socket(libc::AF_PACKET, libc::SOCK_RAW | libc::SOCK_CLOEXEC, 0) };
    if fd < 0 {
        return Err(os_error("socket(AF_PACKET, SOCK_RAW)"));
    }
    // SAFETY: fd is a fresh descriptor nobody else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// Binds a packet socket to interface `ifindex` (named `iface` in errors)
/// for `protocol` (an ETH_P_* value; 0 for sending only).
pub fn bind_packet(fd: BorrowedFd<'_>, ifindex: u32, protocol: u16, iface: &str) -> io::Result<()> {
    // SAFETY: sockaddr_ll is plain data; all zeroes is a valid value.
    let mut sll: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
    sll.sll_family = libc::AF_PACKET as u16;
    sll.sll_protocol = protocol.to_be();
    sll.sll_ifindex = ifindex as libc::c_int;
    // SAFETY: a valid sockaddr_ll of the size given.
    let ret = unsafe {
        libc::bind(
            fd.as_raw_fd(),
            (&sll as *const libc::sockaddr_ll).cast(),
            size_of::<libc::sockaddr_ll>() as libc::socklen_t,
        )
    };
    if ret != 0 {
        return Err(os_error(format_args!(
            "binding a packet socket to {iface:?}"
        )));
    }
    Ok(())
}

/// setsockopt(2) of `value`; an error names the option (`what`).
pub fn setsockopt<T>(
    fd: BorrowedFd<'_>,
    level: libc::c_int,
    name: libc::c_int,
    value: &T,
    what: &str,
) -> io::Result<()> {
    // SAFETY: `value` is a live T and its size is passed along.
    let ret = unsafe {
        libc::setsockopt(
            fd.as_raw_fd(),
            level,
            name,
            (value as *const T).cast(),
            size_of::<T>() as libc::socklen_t,
        )
    };
    if ret != 0 {
        return Err(os_error(format_args!("setsockopt({what})")));
    }
    Ok(())
}

/// Sends hand-built Ethernet frames out of one interface, exactly as given
/// (VLAN tags included): an AF_PACKET SOCK_RAW socket bound to the interface
/// in the namespace of the thread that opened it. It receives nothing.
#[derive(Debug)]
pub struct RawSocket {
    fd: OwnedFd,
    ifindex: u32,
}

impl RawSocket {
    /// Opens a socket on `iface` in the calling thread's namespace.
    pub fn open(iface: &str) -> io::Result<RawSocket> {
        let ifindex = ifindex_here(iface)?;
        let fd = packet_socket()?;
        // Protocol 0: bound for sending only; the frame's own EtherType is used.
        bind_packet(fd.as_fd(), ifindex, 0, iface)?;
        Ok(RawSocket { fd, ifindex })
    }

    /// Opens a socket on `iface` in `ns` (`None`: the calling thread's).
    pub fn open_in(ns: Option<&NetNs>, iface: &str) -> io::Result<RawSocket> {
        run_in(ns.map(NetNs::name), || RawSocket::open(iface))?
    }

    /// Sends one whole frame (destination MAC first, no FCS).
    pub fn send(&self, frame: &[u8]) -> io::Result<()> {
        loop {
            // SAFETY: the buffer is valid for its length.
            let n =
                unsafe { libc::send(self.fd.as_raw_fd(), frame.as_ptr().cast(), frame.len(), 0) };
            if n < 0 {
                let e = io::Error::last_os_error();
                if e.kind() == io::ErrorKind::Interrupted {
                    continue;
                }
                return Err(io::Error::new(
                    e.kind(),
                    format!("sending a {} byte frame: {e}", frame.len()),
                ));
            }
            if n as usize != frame.len() {
                return Err(io::Error::other(format!(
                    "sent {n} of a {} byte frame",
                    frame.len()
                )));
            }
            return Ok(());
        }
    }

    /// The interface index it sends on.
    pub fn ifindex(&self) -> u32 {
        self.ifindex
    }
}

impl AsFd for RawSocket {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}

/// What a [`Capture`] saw.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CaptureResult {
    /// Every frame the interface sent, in order, whole: as on the wire
    /// (VLAN tag in place, no FCS, no padding the device would add).
    pub frames: Vec<Vec<u8>>,
    /// Frames the kernel dropped because the capture fell behind
    /// (PACKET_STATISTICS tp_drops); when non-zero, `frames` is incomplete.
    pub drops: u32,
}

impl CaptureResult {
    /// The frames, or an error if any frame was lost.
    pub fn complete(self) -> io::Result<Vec<Vec<u8>>> {
        if self.drops != 0 {
            return Err(io::Error::other(format!(
                "the capture lost {} frame(s) (kernel drops); it saw only {}",
                self.drops,
                self.frames.len()
            )));
        }
        Ok(self.frames)
    }
}

/// A capture of every frame an interface sends (outgoing only), for ground
/// truth. The socket is bound before [`Capture::start`] returns, so all
/// traffic after that is seen; frames reach the capture synchronously with
/// the send on veth (no qdisc), and [`Capture::stop`] drains what is queued.
///
/// A frame the kernel sent with an out-of-band (hardware-accelerated) VLAN
/// tag, e.g. from a VLAN device over an interface with `txvlan on`, comes
/// back from AF_PACKET with the tag stripped into PACKET_AUXDATA; the
/// capture puts it back in place, so frames always read as on the wire.
#[derive(Debug)]
pub struct Capture {
    iface: String,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<io::Result<CaptureResult>>>,
}

impl Capture {
    /// Starts capturing what `iface` in `ns` (`None`: the calling thread's
    /// namespace) sends.
    pub fn start(ns: Option<&NetNs>, iface: &str) -> io::Result<Capture> {
        let (fd, ifindex) = run_in(ns.map(NetNs::name), || capture_socket(iface))??;
        let stop = Arc::new(AtomicBool::new(false));
        let thread = std::thread::Builder::new()
            .name(format!("capture {iface}"))
            .spawn({
                let stop = Arc::clone(&stop);
                move || capture_loop(fd, ifindex, &stop)
            })?;
        Ok(Capture {
            iface: iface.to_string(),
            stop,
            thread: Some(thread),
        })
    }

    /// Stops (within about 50 ms) and returns every frame captured.
    pub fn stop(mut self) -> io::Result<CaptureResult> {
        self.stop.store(true, Ordering::Release);
        let thread = self.thread.take().expect("a capture is stopped once");
        match thread.join() {
            Ok(r) => {
                r.map_err(|e| io::Error::new(e.kind(), format!("capture on {}: {e}", self.iface)))
            }
            Err(panic) => std::panic::resume_unwind(panic),
        }
    }
}

impl Drop for Capture {
    fn drop(&mut self) {
        if let Some(thread) = self.thread.take() {
            self.stop.store(true, Ordering::Release);
            let _ = thread.join();
        }
    }
}

/// A packet socket on `iface` (calling thread's namespace) that receives the
/// frames it sends, with auxdata, a receive timeout and a large buffer.
fn capture_socket(iface: &str) -> io::Result<(OwnedFd, u32)> {
    let ifindex = ifindex_here(iface)?;
    let fd = packet_socket()?;
    let s = fd.as_fd();
    if setsockopt(
        s,
        libc::SOL_SOCKET,
        libc::SO_RCVBUFFORCE,
        &CAPTURE_RCVBUF,
        "SO_RCVBUFFORCE",
    )
    .is_err()
    {
        setsockopt(
            s,
            libc::SOL_SOCKET,
            libc::SO_RCVBUF,
            &CAPTURE_RCVBUF,
            "SO_RCVBUF",
        )?;
    }
    // Keep only outgoing frames in the kernel, so incoming traffic cannot
    // fill the buffer: ret pkttype == PACKET_OUTGOING ? all : 0.
    let mut filter = [
        bpf_stmt(
            libc::BPF_LD | libc::BPF_W | libc::BPF_ABS,
            (libc::SKF_AD_OFF + libc::SKF_AD_PKTTYPE) as u32,
        ),
        libc::sock_filter {
            code: (libc::BPF_JMP | libc::BPF_JEQ | libc::BPF_K) as u16,
            jt: 0,
            jf: 1,
            k: libc::PACKET_OUTGOING as u32,
        },
        bpf_stmt(libc::BPF_RET | libc::BPF_K, u32::MAX),
        bpf_stmt(libc::BPF_RET | libc::BPF_K, 0),
    ];
    let prog = libc::sock_fprog {
        len: filter.len() as libc::c_ushort,
        filter: filter.as_mut_ptr(),
    };
    setsockopt(
        s,
        libc::SOL_SOCKET,
        libc::SO_ATTACH_FILTER,
        &prog,
        "SO_ATTACH_FILTER",
    )?;
    setsockopt(
        s,
        libc::SOL_PACKET,
        libc::PACKET_AUXDATA,
        &1 as &libc::c_int,
        "PACKET_AUXDATA",
    )?;
    let timeout = libc::timeval {
        tv_sec: 0,
        tv_usec: CAPTURE_POLL.as_micros() as libc::suseconds_t,
    };
    setsockopt(
        s,
        libc::SOL_SOCKET,
        libc::SO_RCVTIMEO,
        &timeout,
        "SO_RCVTIMEO",
    )?;
    // Binding with a protocol starts the capture: only now, filter in place.
    bind_packet(s, ifindex, libc::ETH_P_ALL as u16, iface)?;
    Ok((fd, ifindex))
}

fn bpf_stmt(code: u32, k: u32) -> libc::sock_filter {
    libc::sock_filter {
        code: code as u16,
        jt: 0,
        jf: 0,
        k,
    }
}

fn capture_loop(fd: OwnedFd, ifindex: u32, stop: &AtomicBool) -> io::Result<CaptureResult> {
    let mut buf = vec![0u8; CAPTURE_FRAME_MAX];
    let mut frames = Vec::new();
    let mut drain_until: Option<Instant> = None;
    loop {
        let stopping = stop.load(Ordering::Acquire);
        let flags = if stopping {
            let until = *drain_until.get_or_insert_with(|| Instant::now() + CAPTURE_DRAIN_MAX);
            if Instant::now() > until {
                break;
            }
            libc::MSG_DONTWAIT
        } else {
            0
        };
        match recv_frame(fd.as_fd(), ifindex, &mut buf, flags) {
            Ok(Some(frame)) => frames.push(frame),
            Ok(None) => {}
            Err(e) => match e.raw_os_error() {
                Some(libc::EAGAIN) if stopping => break,
                Some(libc::EAGAIN | libc::EINTR) => {}
                // The interface went down (or was down at bind): the kernel
                // reports it once; the capture resumes when it comes up.
                Some(libc::ENETDOWN) => {}
                _ => return Err(e),
            },
        }
    }
    Ok(CaptureResult {
        frames,
        drops: packet_drops(fd.as_fd())?,
    })
}

/// The frames a packet socket dropped because its reader fell behind
/// (PACKET_STATISTICS tp_drops) since it was last asked: the kernel
/// clears the count on every read.
pub fn packet_drops(fd: BorrowedFd<'_>) -> io::Result<u32> {
    // SAFETY: tpacket_stats is plain data; all zeroes is a valid value.
    let mut stats: libc::tpacket_stats = unsafe { std::mem::zeroed() };
    let mut len = size_of::<libc::tpacket_stats>() as libc::socklen_t;
    // SAFETY: `stats` is writable for `len` bytes.
    let ret = unsafe {
        libc::getsockopt(
            fd.as_raw_fd(),
            libc::SOL_PACKET,
            libc::PACKET_STATISTICS,
            (&mut stats as *mut libc::tpacket_stats).cast(),
            &mut len,
        )
    };
    if ret != 0 {
        return Err(os_error("getsockopt(PACKET_STATISTICS)"));
    }
    Ok(stats.tp_drops)
}

/// Receives one frame; `None` for one that is not an outgoing frame of
/// `ifindex`. A VLAN tag the kernel carried out of band is put back.
fn recv_frame(
    fd: BorrowedFd<'_>,
    ifindex: u32,
    buf: &mut [u8],
    flags: libc::c_int,
) -> io::Result<Option<Vec<u8>>> {
    let got = recv_packet(fd, buf, flags)?;
    if got.pkttype != libc::PACKET_OUTGOING || got.ifindex != ifindex {
        return Ok(None);
    }
    Ok(Some(with_vlan_tag(&buf[..got.len], got.vlan)))
}

/// What [`recv_packet`] received into its buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Received {
    /// The bytes received, from the start of the buffer.
    pub len: usize,
    /// Where the frame went (PACKET_HOST, PACKET_OUTGOING, ...).
    pub pkttype: u8,
    /// The interface it was seen on.
    pub ifindex: u32,
    /// The VLAN tag (TPID, TCI) the kernel carried out of band, taken from
    /// PACKET_AUXDATA (when the socket asked for it): the frame in the
    /// buffer is without it.
    pub vlan: Option<(u16, u16)>,
}

/// Receives one frame (recvmsg(2) with `flags`, and MSG_TRUNC) on a packet
/// socket into `buf`. A frame larger than `buf` is an error.
pub fn recv_packet(fd: BorrowedFd<'_>, buf: &mut [u8], flags: libc::c_int) -> io::Result<Received> {
    // SAFETY: sockaddr_ll is plain data; all zeroes is a valid value.
    let mut addr: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
    let mut control = [0u64; 16];
    let mut iov = libc::iovec {
        iov_base: buf.as_mut_ptr().cast(),
        iov_len: buf.len(),
    };
    // SAFETY: msghdr is plain data; all zeroes is a valid value.
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_name = (&mut addr as *mut libc::sockaddr_ll).cast();
    msg.msg_namelen = size_of::<libc::sockaddr_ll>() as libc::socklen_t;
    msg.msg_iov = &mut iov;
    msg.msg_iovlen = 1;
    msg.msg_control = control.as_mut_ptr().cast();
    msg.msg_controllen = size_of_val(&control) as _;
    // SAFETY: every pointer in `msg` is valid for the lengths given.
    // MSG_TRUNC makes it return the frame's real length.
    let n = unsafe { libc::recvmsg(fd.as_raw_fd(), &mut msg, flags | libc::MSG_TRUNC) };
    if n < 0 {
        return Err(io::Error::last_os_error());
    }
    let len = n as usize;
    if len > buf.len() {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!(
                "a {len} byte frame does not fit the {} byte capture buffer (segmentation offload on?)",
                buf.len()
            ),
        ));
    }
    let mut vlan = None;
    // SAFETY: walking the control messages the kernel wrote into `msg`.
    let mut cmsg = unsafe { libc::CMSG_FIRSTHDR(&msg) };
    while !cmsg.is_null() {
        // SAFETY: non-null cmsg pointers point into `control`.
        let hdr = unsafe { &*cmsg };
        if hdr.cmsg_level == libc::SOL_PACKET && hdr.cmsg_type == libc::PACKET_AUXDATA {
            // SAFETY: PACKET_AUXDATA carries a tpacket_auxdata.
            let aux: libc::tpacket_auxdata =
                unsafe { std::ptr::read_unaligned(libc::CMSG_DATA(cmsg).cast()) };
            if aux.tp_status & libc::TP_STATUS_VLAN_VALID != 0 {
                let tpid = if aux.tp_status & libc::TP_STATUS_VLAN_TPID_VALID != 0 {
                    aux.tp_vlan_tpid
                } else {
                    libc::ETH_P_8021Q as u16
                };
                vlan = Some((tpid, aux.tp_vlan_tci));
            }
        }
        // SAFETY: as above.
        cmsg = unsafe { libc::CMSG_NXTHDR(&msg, cmsg) };
    }
    Ok(Received {
        len,
        pkttype: addr.sll_pkttype,
        ifindex: addr.sll_ifindex as u32,
        vlan,
    })
}

/// `frame` as on the wire: with `vlan` (TPID, TCI), a tag the kernel
/// carried out of band, put back after the MAC addresses.
pub fn with_vlan_tag(frame: &[u8], vlan: Option<(u16, u16)>) -> Vec<u8> {
    match vlan {
        Some((tpid, tci)) if frame.len() >= 12 => {
            let mut tagged = Vec::with_capacity(frame.len() + 4);
            tagged.extend_from_slice(&frame[..12]);
            tagged.extend_from_slice(&tpid.to_be_bytes());
            tagged.extend_from_slice(&tci.to_be_bytes());
            tagged.extend_from_slice(&frame[12..]);
            tagged
        }
        _ => frame.to_vec(),
    }
}
