//! Differential fuzzing of the data path against the reference classifier
//! (needs root).
//!
//! For each program (`nl_xdp` of strategies `swap` and `lock`, `nl_tc` at
//! tc ingress of both), a seeded stream of hostile frames
//! (`netledger_lab::fuzz::hostile`) goes through veth pairs into ledgers of
//! two key configurations (five-tuple with VLAN ids, and an address mode
//! with prefixes), each attached to the counting end of its own pair, each
//! frame sent once through each pair. Every `INTERVAL` frames every ledger
//! is cut, and each interval is compared with the reference's `Tally` of the
//! same frames under the ledger's configuration
//! (`netledger_lab::fuzz::reference`, written from the documented parsing
//! rules): `seen == sum of buckets`, every bucket and every flow key,
//! packets and bytes. Any difference is pinpointed by bisecting the
//! interval's frames through the veth until single frames differ (the
//! shortest, one per kind of reference answer), each printed as hex with
//! both answers (and, for XDP, the answer of a test run of that frame), and
//! the test fails.
//!
//! The testbed: two namespaces joined by the veth pairs, MTU 9000 (the
//! generator's largest frame, 9014 bytes, is the MTU plus the Ethernet
//! header), offloads off, IPv6 off, ARP off and no addresses on either end,
//! so the kernel has nothing of its own to send. Should it send something
//! anyway, a capture on each sending end sees it: the source MAC of every
//! generated frame is replaced by a marker (no parsing rule looks at MAC
//! addresses), and a socket filter keeps only outgoing frames without it.
//! Those are classified, added to the interval's reference tally, and
//! counted in the report; and each sending end's transmit counter must equal
//! the frames sent, ours and the kernel's.
//!
//! What the kernel delivers, and how: frames it does not deliver to the hook
//! are accounted for explicitly ([`undeliverable`]: sent like the others,
//! left out of the reference tally, counted by reason; the interval's `seen`
//! proves they did not arrive), and the reference is told how much of each
//! frame is in the first buffer the program parses ([`first_buffer`]).
//!
//! The seed is fixed (`DEFAULT_SEED`) unless `NETLEDGER_FUZZ_SEED` is set
//! (decimal or 0x-hex); `NETLEDGER_FUZZ_FRAMES` changes the number of frames
//! per program (default 1,000,000, through each configuration).

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::io;
use std::os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd};
use std::sync::mpsc::sync_channel;
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use netledger::{
    Addr, Attachment, Bucket, Count, FlowKey, Hook, Interval, KeyMode, Ledger, LedgerConfig,
    Strategy, TcMode, XdpMode, L4,
};
use netledger_lab::fuzz::hostile::{Class, Generator};
use netledger_lab::fuzz::reference::{self, Family, Outcome, Tally};
use netledger_lab::netns::{veth_pair, Ipv6Mode, NetNs, RawSocket, Veth};

/// The seed unless `NETLEDGER_FUZZ_SEED` says otherwise.
const DEFAULT_SEED: u64 = 0x6e6c_6675_7a7a_0001;
const SEED_ENV: &str = "NETLEDGER_FUZZ_SEED";
/// Frames per program (each through every configuration) unless
/// `NETLEDGER_FUZZ_FRAMES` says otherwise.
const DEFAULT_FRAMES: usize = 1_000_000;
const FRAMES_ENV: &str = "NETLEDGER_FUZZ_FRAMES";
/// Frames per interval (one cut each): few enough distinct keys for the
/// flow map, many enough that cuts cost little.
const INTERVAL: usize = 20_000;
/// Room for the generator's largest frame (9014 bytes) without a VLAN tag.
const MTU: usize = 9000;
const ETH_HLEN: usize = 14;
/// The source MAC of every frame sent: tells them from the kernel's own.
const MARK: [u8; 6] = [0x02, 0x6e, 0x6c, 0x66, 0x7a, 0x00];
/// Frames per sendmmsg call.
const BURST: usize = 64;
/// How long the frames of an interval may take to reach the hook.
const ARRIVAL: Duration = Duration::from_secs(5);
/// Differing frames to pinpoint before failing.
const MAX_FOUND: usize = 6;

/// One run at a time: each has the machine's CPUs to itself, and its rate
/// means something.
static SERIAL: Mutex<()> = Mutex::new(());

fn serial() -> MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|e| e.into_inner())
}

#[test]
fn xdp_swap_counts_as_the_reference() {
    fuzz(Program::new(Hook::Xdp, Strategy::Swap));
}

#[test]
fn xdp_lock_counts_as_the_reference() {
    fuzz(Program::new(Hook::Xdp, Strategy::Lock));
}

#[test]
fn tc_ingress_swap_counts_as_the_reference() {
    fuzz(Program::new(Hook::TcIngress, Strategy::Swap));
}

#[test]
fn tc_ingress_lock_counts_as_the_reference() {
    fuzz(Program::new(Hook::TcIngress, Strategy::Lock));
}

/// The accounting of the kernel's own frames works: an outgoing frame
/// without the marker MAC is captured, one with it is not.
#[test]
fn frames_the_kernel_sends_are_captured() {
    let _serial = serial();
    let bed = Bed::new(1);
    let link = &bed.links[0];
    let mut ours = Generator::new(DEFAULT_SEED).next().bytes;
    ours[6..12].copy_from_slice(&MARK);
    let mut other = ours.clone();
    other[6..12].copy_from_slice(&[0x02, 0, 0, 0, 0, 0x01]);
    let mut retries = 0;
    let sent = send_all(&link.sock, &[&ours, &other, &ours], &mut retries);
    assert!(sent.iter().all(Result::is_ok), "sending: {sent:?}");
    assert_eq!(link.kernel.drain(), vec![other], "what the capture saw");
    assert!(link.kernel.drain().is_empty());
}

// ---------------------------------------------------------------------------
// What runs

/// A data path program: a hook and a strategy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Program {
    hook: Hook,
    strategy: Strategy,
}

impl Program {
    fn new(hook: Hook, strategy: Strategy) -> Program {
        Program { hook, strategy }
    }

    fn name(self) -> String {
        match self.hook {
            Hook::Xdp => format!("nl_xdp ({}, native XDP)", self.strategy),
            Hook::TcIngress => format!("nl_tc ({}, tc ingress)", self.strategy),
            Hook::TcEgress => format!("nl_tc ({}, tc egress)", self.strategy),
        }
    }

    /// Two key configurations: five-tuple with VLAN ids, and an address
    /// mode with prefixes (a different one for each program).
    fn configs(self) -> [(String, LedgerConfig); 2] {
        let base = LedgerConfig {
            strategy: self.strategy,
            // Lock keeps keys until evicted: evict those idle for a cut, so
            // the map never fills (swap starts every interval empty).
            idle_cuts: 1,
            ..LedgerConfig::default()
        };
        let five = LedgerConfig {
            key_mode: KeyMode::FiveTuple,
            vlan: true,
            ..base.clone()
        };
        let (mode, vlan, p4, p6) = match (self.hook, self.strategy) {
            (Hook::Xdp, Strategy::Swap) => (KeyMode::SrcIp, false, 24, 64),
            (Hook::Xdp, Strategy::Lock) => (KeyMode::DstIp, true, 20, 56),
            (_, Strategy::Swap) => (KeyMode::IpPair, false, 16, 48),
            (_, Strategy::Lock) => (KeyMode::SrcIp, true, 28, 61),
        };
        let prefixed = LedgerConfig {
            key_mode: mode,
            vlan,
            prefix4: Some(p4),
            prefix6: Some(p6),
            ..base
        };
        [(describe(&five), five), (describe(&prefixed), prefixed)]
    }
}

fn describe(cfg: &LedgerConfig) -> String {
    let mut s = cfg.key_mode.name().to_string();
    if cfg.vlan {
        s.push_str("+vlan");
    }
    if let (Some(p4), Some(p6)) = (cfg.prefix4, cfg.prefix6) {
        write!(s, ", prefixes /{p4} /{p6}").unwrap();
    }
    s
}

/// The reference's configuration for a ledger's.
fn reference_config(cfg: &LedgerConfig) -> reference::Config {
    reference::Config {
        mode: cfg.key_mode,
        vlan: cfg.vlan,
        prefix4: cfg.prefix4,
        prefix6: cfg.prefix6,
    }
}

/// A reference key as the ledger reports keys.
fn flow_key(k: &reference::Key) -> FlowKey {
    let bits = k.family.bits();
    let prefix = k.prefix.map_or(bits, |p| p.min(bits));
    let five = k.mode == reference::KeyMode::FiveTuple;
    let src = matches!(
        k.mode,
        reference::KeyMode::SrcIp | reference::KeyMode::IpPair | reference::KeyMode::FiveTuple
    );
    let dst = matches!(
        k.mode,
        reference::KeyMode::DstIp | reference::KeyMode::IpPair | reference::KeyMode::FiveTuple
    );
    FlowKey {
        src: src.then(|| Addr {
            ip: k.src_addr(),
            prefix,
        }),
        dst: dst.then(|| Addr {
            ip: k.dst_addr(),
            prefix,
        }),
        proto: five.then_some(k.proto),
        l4: match k.l4 {
            reference::L4::None => L4::None,
            reference::L4::Ports { sport, dport } => L4::Ports {
                src: sport,
                dst: dport,
            },
            reference::L4::Icmp {
                icmp_type,
                icmp_code,
            } => L4::Icmp {
                kind: icmp_type,
                code: icmp_code,
            },
        },
        fragment: k.fragment,
        vlan: k.vlan,
    }
}

/// A key in one line, the same way for both sides.
fn show_key(k: &FlowKey) -> String {
    let mut parts = Vec::new();
    if let Some(a) = k.src {
        parts.push(format!("src {}/{}", a.ip, a.prefix));
    }
    if let Some(a) = k.dst {
        parts.push(format!("dst {}/{}", a.ip, a.prefix));
    }
    if let Some(p) = k.proto {
        parts.push(format!("proto {p}"));
    }
    match k.l4 {
        L4::None => {}
        L4::Ports { src, dst } => parts.push(format!("ports {src} > {dst}")),
        L4::Icmp { kind, code } => parts.push(format!("icmp {kind}/{code}")),
    }
    if k.fragment {
        parts.push("fragment".into());
    }
    if let Some(v) = k.vlan {
        parts.push(format!("vlan {v}"));
    }
    format!("counted [{}]", parts.join(", "))
}

fn show_outcome(o: &Outcome) -> String {
    match o {
        Outcome::Counted(k) => show_key(&flow_key(k)),
        Outcome::NonIp => "non_ip".into(),
        Outcome::Malformed => "malformed".into(),
    }
}

fn hex(frame: &[u8]) -> String {
    let mut s = String::with_capacity(frame.len() * 2);
    for b in frame {
        write!(s, "{b:02x}").unwrap();
    }
    s
}

fn count(c: Count) -> String {
    format!("{} pkts / {} B", c.packets, c.bytes)
}

fn env_u64(name: &str) -> Option<u64> {
    let v = std::env::var(name).ok()?;
    let v = v.trim().replace('_', "");
    let parsed = match v.strip_prefix("0x").or_else(|| v.strip_prefix("0X")) {
        Some(h) => u64::from_str_radix(h, 16),
        None => v.parse(),
    };
    Some(parsed.unwrap_or_else(|e| panic!("{name}={v:?} is not a number: {e}")))
}

// ---------------------------------------------------------------------------
// What the kernel delivers

/// Why the kernel does not deliver `frame` to `hook`, if it does not.
///
/// - The packet socket refuses a frame shorter than the Ethernet header
///   (`dev_validate_header`: EINVAL) or longer than MTU + 14 (EMSGSIZE; +18
///   with an 802.1Q tag). The generator makes neither (14 to 9014 bytes).
/// - Before tc ingress, `__netif_receive_skb_core` takes the outer VLAN tag
///   out of the data (`skb_vlan_untag`), which first pulls the tag and the
///   two bytes after it: a frame with a TPID at offset 12 and fewer than 6
///   bytes after the Ethernet header is freed there. XDP runs before that
///   and sees it.
fn undeliverable(frame: &[u8], hook: Hook) -> Option<Refusal> {
    if frame.len() < ETH_HLEN {
        return Some(Refusal::Short);
    }
    if frame.len() > MTU + ETH_HLEN {
        return Some(Refusal::Long);
    }
    let tpid = u16::from_be_bytes([frame[12], frame[13]]);
    if hook != Hook::Xdp && matches!(tpid, 0x8100 | 0x88a8) && frame.len() < ETH_HLEN + 6 {
        return Some(Refusal::Untag);
    }
    None
}

/// How many bytes of `frame` (as sent) are in the first buffer the
/// program parses at `hook` (the parser reads headers from it only:
/// docs/ARCHITECTURE.md, "The data path"; the reference's rule 21).
///
/// - XDP on veth: the kernel copies every frame into page-pool pages before
///   the program runs (`veth_convert_skb_to_xdp_buff`); the first holds
///   `PAGE_SIZE - XDP_PACKET_HEADROOM - skb_shared_info` = 3520 bytes, the
///   rest of a longer frame goes into fragments.
/// - tc: a frame that does not fit in a page with the 16 bytes of headroom
///   the packet socket reserves (4080 bytes or more) leaves the socket as an
///   skb with only the Ethernet header in its linear part
///   (`packet_alloc_skb`); the program pulls its first `NL_PULL` = 256 bytes
///   in. The stack took the outer VLAN tag out of the data before (the tag
///   is kept apart), so those are the first 260 bytes of a tagged frame.
///   Shorter frames are linear.
fn first_buffer(frame: &[u8], hook: Hook) -> usize {
    const XDP_FIRST_BUFFER: usize = 3520;
    const PAGE: usize = 4096;
    const SOCKET_HEADROOM: usize = 16;
    const NL_PULL: usize = 256;
    const VLAN_HLEN: usize = 4;
    let tagged = frame.len() >= ETH_HLEN
        && matches!(u16::from_be_bytes([frame[12], frame[13]]), 0x8100 | 0x88a8);
    match hook {
        Hook::Xdp => frame.len().min(XDP_FIRST_BUFFER),
        _ if frame.len() >= PAGE - SOCKET_HEADROOM => NL_PULL + if tagged { VLAN_HLEN } else { 0 },
        _ => frame.len(),
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Refusal {
    Short,
    Long,
    Untag,
}

impl Refusal {
    /// Whether the send itself fails (else the frame is dropped on the way).
    fn at_send(self) -> bool {
        matches!(self, Refusal::Short | Refusal::Long)
    }

    fn why(self) -> &'static str {
        match self {
            Refusal::Short => "shorter than an Ethernet header: the packet socket refuses it",
            Refusal::Long => "longer than the MTU allows: the packet socket refuses it",
            Refusal::Untag => {
                "VLAN TPID with fewer than 6 bytes after the Ethernet header: \
                 freed by skb_vlan_untag before tc ingress"
            }
        }
    }
}

// ---------------------------------------------------------------------------
// The testbed

/// Two namespaces joined by one veth pair per configuration: a socket that
/// sends on each pair's TX end and one that captures what else it sends.
/// Everything goes on drop: sockets first, then the pairs, then the
/// namespaces.
struct Bed {
    links: Vec<Link>,
    tx: NetNs,
    rx: NetNs,
}

/// One veth pair: `tx` sends, `rx` counts.
struct Link {
    sock: RawSocket,
    kernel: KernelFrames,
    veth: Veth,
}

impl Bed {
    /// `n` pairs: `nlfz0` (sending) and `nlfz1` (counting), `nlfz2` and
    /// `nlfz3`, ... (unique in their namespaces, which are unique).
    fn new(n: usize) -> Bed {
        let tx = NetNs::create("nlfz-tx").expect("creating the sending namespace");
        let rx = NetNs::create("nlfz-rx").expect("creating the counting namespace");
        let mut bed = Bed {
            links: Vec::new(),
            tx,
            rx,
        };
        for i in 0..n {
            let (a, b) = (format!("nlfz{}", 2 * i), format!("nlfz{}", 2 * i + 1));
            let veth = veth_pair(&a, Some(&bed.tx), &b, Some(&bed.rx))
                .unwrap_or_else(|e| panic!("creating the veth pair {a} <-> {b}: {e}"));
            for end in [veth.a(), veth.b()] {
                end.prepare(Ipv6Mode::Off)
                    .unwrap_or_else(|e| panic!("preparing {}: {e}", end.name()));
                end.ip(&["link", "set", "dev", end.name(), "mtu", &MTU.to_string()])
                    .unwrap_or_else(|e| panic!("MTU {MTU} on {}: {e}", end.name()));
                // No ARP either: nothing the kernel could answer or ask.
                end.ip(&["link", "set", "dev", end.name(), "arp", "off"])
                    .unwrap_or_else(|e| panic!("arp off on {}: {e}", end.name()));
            }
            let sock = RawSocket::open_in(Some(&bed.tx), &a)
                .unwrap_or_else(|e| panic!("opening a socket on {a}: {e}"));
            let kernel = bed
                .tx
                .run(|| KernelFrames::open(&a))
                .unwrap_or_else(|e| panic!("capturing the kernel's own frames on {a}: {e}"));
            bed.links.push(Link { sock, kernel, veth });
        }
        bed
    }

    /// Attach `ledger` to the counting end of link `i`.
    fn attach(&self, i: usize, ledger: &Ledger) -> Attachment {
        let rx = self.links[i].veth.b().name();
        let att = self
            .rx
            .run(|| ledger.attach(rx, XdpMode::Native, TcMode::Auto))
            .unwrap_or_else(|e| panic!("attaching to {rx}: {e}"));
        assert_eq!(att.hook, ledger.hook());
        att
    }

    /// Frames the TX end of link `i` has transmitted so far (its counter).
    fn tx_packets(&self, i: usize) -> u64 {
        let name = self.links[i].veth.a().name().to_string();
        self.tx
            .run(|| {
                let dev = std::fs::read_to_string("/proc/thread-self/net/dev")?;
                dev.lines()
                    .find_map(|l| {
                        let (n, rest) = l.split_once(':')?;
                        (n.trim() == name).then(|| rest.split_whitespace().nth(9)?.parse().ok())?
                    })
                    .ok_or_else(|| io::Error::other(format!("{name} not in /proc/net/dev")))
            })
            .unwrap_or_else(|e| panic!("reading {name}'s counters: {e}"))
    }
}

/// Sends frames, `BURST` at a time. Returns per frame `Ok` (handed to the
/// device) or the error of the send (the frame went nowhere). A frame the
/// device had no room for (ENOBUFS, ENETDOWN of a stopped queue) was dropped
/// before any hook: it is sent again, so every frame arrives once.
fn send_all(sock: &RawSocket, frames: &[&[u8]], retries: &mut u64) -> Vec<Result<(), i32>> {
    let fd = sock.as_fd().as_raw_fd();
    let mut out = Vec::with_capacity(frames.len());
    let mut at = 0;
    while at < frames.len() {
        let chunk = &frames[at..frames.len().min(at + BURST)];
        let mut iovs: Vec<libc::iovec> = chunk
            .iter()
            .map(|f| libc::iovec {
                iov_base: f.as_ptr() as *mut libc::c_void,
                iov_len: f.len(),
            })
            .collect();
        let mut msgs: Vec<libc::mmsghdr> = iovs
            .iter_mut()
            .map(|iov| {
                // SAFETY: mmsghdr is plain data; all zeroes is a valid value.
                let mut m: libc::mmsghdr = unsafe { std::mem::zeroed() };
                m.msg_hdr.msg_iov = iov;
                m.msg_hdr.msg_iovlen = 1;
                m
            })
            .collect();
        // SAFETY: `msgs` holds chunk.len() headers, each pointing at one
        // iovec of `iovs` that points into a frame; all outlive the call.
        let n = unsafe { libc::sendmmsg(fd, msgs.as_mut_ptr(), msgs.len() as _, 0) };
        let sent = if n > 0 { n as usize } else { 0 };
        out.extend((0..sent).map(|_| Ok(())));
        at += sent;
        if sent == chunk.len() {
            continue;
        }
        // The frame at `at` failed (sendmmsg reports only the count): send
        // it alone to learn why, until it goes or fails for good.
        let frame = frames[at];
        let give_up = Instant::now() + Duration::from_secs(10);
        loop {
            // SAFETY: the buffer is valid for its length.
            let r = unsafe { libc::send(fd, frame.as_ptr().cast(), frame.len(), 0) };
            if r >= 0 {
                out.push(Ok(()));
                break;
            }
            let errno = io::Error::last_os_error().raw_os_error().unwrap_or(0);
            match errno {
                libc::EINTR => {}
                libc::ENOBUFS | libc::EAGAIN | libc::ENETDOWN if Instant::now() < give_up => {
                    *retries += 1;
                    std::thread::sleep(Duration::from_micros(200));
                }
                _ => {
                    out.push(Err(errno));
                    break;
                }
            }
        }
        at += 1;
    }
    out
}

/// A packet socket on TX that receives the outgoing frames without the
/// marker MAC: whatever the kernel sends of its own.
struct KernelFrames {
    fd: OwnedFd,
}

impl KernelFrames {
    fn open(iface: &str) -> io::Result<KernelFrames> {
        let name = std::ffi::CString::new(iface)?;
        // SAFETY: a valid NUL-terminated string.
        let ifindex = unsafe { libc::if_nametoindex(name.as_ptr()) };
        if ifindex == 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: plain syscall; the descriptor is owned right away.
        let raw = unsafe { libc::socket(libc::AF_PACKET, libc::SOCK_RAW | libc::SOCK_CLOEXEC, 0) };
        if raw < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: `raw` is a fresh descriptor nobody else owns.
        let fd = unsafe { OwnedFd::from_raw_fd(raw) };
        let mark_hi = u32::from_be_bytes([MARK[0], MARK[1], MARK[2], MARK[3]]);
        let mark_lo = u32::from(u16::from_be_bytes([MARK[4], MARK[5]]));
        let stmt = |code: u32, k: u32| libc::sock_filter {
            code: code as u16,
            jt: 0,
            jf: 0,
            k,
        };
        let jeq = |k: u32, jt: u8, jf: u8| libc::sock_filter {
            code: (libc::BPF_JMP | libc::BPF_JEQ | libc::BPF_K) as u16,
            jt,
            jf,
            k,
        };
        let mut filter = [
            // Outgoing frames only...
            stmt(
                libc::BPF_LD | libc::BPF_W | libc::BPF_ABS,
                (libc::SKF_AD_OFF + libc::SKF_AD_PKTTYPE) as u32,
            ),
            jeq(libc::PACKET_OUTGOING as u32, 0, 5),
            // ...whose source MAC is not the marker.
            stmt(libc::BPF_LD | libc::BPF_W | libc::BPF_ABS, 6),
            jeq(mark_hi, 0, 2),
            stmt(libc::BPF_LD | libc::BPF_H | libc::BPF_ABS, 10),
            jeq(mark_lo, 1, 0),
            stmt(libc::BPF_RET | libc::BPF_K, u32::MAX),
            stmt(libc::BPF_RET | libc::BPF_K, 0),
        ];
        let prog = libc::sock_fprog {
            len: filter.len() as libc::c_ushort,
            filter: filter.as_mut_ptr(),
        };
        // SAFETY: `prog` points at `filter`, both alive for the call.
        let ret = unsafe {
            libc::setsockopt(
                fd.as_raw_fd(),
                libc::SOL_SOCKET,
                libc::SO_ATTACH_FILTER,
                (&prog as *const libc::sock_fprog).cast(),
                std::mem::size_of::<libc::sock_fprog>() as libc::socklen_t,
            )
        };
        if ret != 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: sockaddr_ll is plain data; all zeroes is a valid value.
        let mut sll: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
        sll.sll_family = libc::AF_PACKET as u16;
        sll.sll_protocol = (libc::ETH_P_ALL as u16).to_be();
        sll.sll_ifindex = ifindex as libc::c_int;
        // SAFETY: a valid sockaddr_ll of the size given.
        let ret = unsafe {
            libc::bind(
                fd.as_raw_fd(),
                (&sll as *const libc::sockaddr_ll).cast(),
                std::mem::size_of::<libc::sockaddr_ll>() as libc::socklen_t,
            )
        };
        if ret != 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(KernelFrames { fd })
    }

    /// Every frame queued so far. They are queued as they are transmitted,
    /// before the peer receives them.
    fn drain(&self) -> Vec<Vec<u8>> {
        let mut frames = Vec::new();
        let mut buf = vec![0u8; 65536];
        loop {
            // SAFETY: the buffer is valid for its length.
            let n = unsafe {
                libc::recv(
                    self.fd.as_raw_fd(),
                    buf.as_mut_ptr().cast(),
                    buf.len(),
                    libc::MSG_DONTWAIT | libc::MSG_TRUNC,
                )
            };
            if n < 0 {
                let e = io::Error::last_os_error();
                match e.raw_os_error() {
                    Some(libc::EINTR) => continue,
                    Some(libc::EAGAIN) => return frames,
                    _ => panic!("reading the capture of the kernel's own frames: {e}"),
                }
            }
            let n = n as usize;
            assert!(n <= buf.len(), "the kernel sent a {n}-byte frame");
            frames.push(buf[..n].to_vec());
        }
    }
}

// ---------------------------------------------------------------------------
// Frames and their reference answers

/// One interval's frames, made by the generator thread.
struct Batch {
    /// Frames, with the marker as source MAC.
    frames: Vec<Vec<u8>>,
    classes: Vec<Class>,
    /// Why the kernel will not deliver each frame to the hook, if it will not.
    refused: Vec<Option<Refusal>>,
    /// The reference's answer for the frames it will deliver, under each
    /// configuration.
    wants: Vec<Expected>,
}

/// What the frames of a run were, for the report.
#[derive(Default)]
struct Distribution {
    /// Per class: frames, then the reference's buckets (counted, non_ip,
    /// malformed), then frames not delivered.
    classes: BTreeMap<Class, [u64; 5]>,
    /// Per outcome of the delivered frames (finer than buckets), in
    /// [`OUTCOMES`] order.
    outcomes: [u64; OUTCOMES.len()],
    /// Frames not delivered, by reason.
    refused: BTreeMap<Refusal, u64>,
    /// Frames whose answer differs from the one for the whole frame, because
    /// a header they need lies past the first buffer.
    past_first_buffer: u64,
    frames: u64,
    bytes: u64,
}

/// The finer outcomes a frame can have (the indented ones only as far as
/// the configuration keys them).
const OUTCOMES: [&str; 13] = [
    "counted ipv4",
    "counted ipv6",
    "  tcp ports",
    "  udp ports",
    "  udp-lite ports",
    "  sctp ports",
    "  icmp type/code",
    "  icmpv6 type/code",
    "  other protocol",
    "  non-first fragment",
    "  vlan id != 0",
    "non_ip",
    "malformed",
];

/// The outcomes of one frame, as indices into [`OUTCOMES`].
fn outcome_indices(o: &Outcome) -> Vec<usize> {
    let k = match o {
        Outcome::NonIp => return vec![11],
        Outcome::Malformed => return vec![12],
        Outcome::Counted(k) => k,
    };
    let mut v = vec![match k.family {
        Family::V4 => 0,
        Family::V6 => 1,
    }];
    if k.mode == reference::KeyMode::FiveTuple {
        v.push(match (k.fragment, k.l4, k.proto) {
            (true, _, _) => 9,
            (false, reference::L4::Ports { .. }, 6) => 2,
            (false, reference::L4::Ports { .. }, 17) => 3,
            (false, reference::L4::Ports { .. }, 136) => 4,
            (false, reference::L4::Ports { .. }, _) => 5,
            (false, reference::L4::Icmp { .. }, 1) => 6,
            (false, reference::L4::Icmp { .. }, _) => 7,
            (false, reference::L4::None, _) => 8,
        });
    }
    if k.vlan.is_some_and(|v| v != 0) {
        v.push(10);
    }
    v
}

/// Generates `total` frames from `seed` in batches of INTERVAL, with the
/// reference's answers under each of `cfgs`; returns the distribution (of
/// the first configuration's outcomes) when done.
fn generate(
    seed: u64,
    total: usize,
    hook: Hook,
    cfgs: &[reference::Config],
    out: std::sync::mpsc::SyncSender<Batch>,
) -> Distribution {
    let mut g = Generator::new(seed);
    let mut dist = Distribution::default();
    let mut left = total;
    while left > 0 {
        let n = left.min(INTERVAL);
        left -= n;
        let mut frames = Vec::with_capacity(n);
        let mut classes = Vec::with_capacity(n);
        let mut refused = Vec::with_capacity(n);
        let mut tallies: Vec<Tally> = cfgs.iter().map(|c| Tally::new(*c)).collect();
        for _ in 0..n {
            let f = g.next();
            let mut bytes = f.bytes;
            bytes[6..12].copy_from_slice(&MARK);
            let refusal = undeliverable(&bytes, hook);
            let row = dist.classes.entry(f.class).or_default();
            row[0] += 1;
            dist.frames += 1;
            dist.bytes += bytes.len() as u64;
            match refusal {
                Some(r) => {
                    row[4] += 1;
                    *dist.refused.entry(r).or_default() += 1;
                }
                None => {
                    let head = first_buffer(&bytes, hook);
                    if head < bytes.len()
                        && reference::classify_in(&bytes, head, &cfgs[0])
                            != reference::classify(&bytes, &cfgs[0])
                    {
                        dist.past_first_buffer += 1;
                    }
                    for (i, t) in tallies.iter_mut().enumerate() {
                        let o = t.add_in(&bytes, head);
                        if i == 0 {
                            row[1 + o.bucket() as usize] += 1;
                            for i in outcome_indices(&o) {
                                dist.outcomes[i] += 1;
                            }
                        }
                    }
                }
            }
            frames.push(bytes);
            classes.push(f.class);
            refused.push(refusal);
        }
        let batch = Batch {
            frames,
            classes,
            refused,
            wants: tallies.into_iter().map(Expected::new).collect(),
        };
        if out.send(batch).is_err() {
            break;
        }
    }
    dist
}

// ---------------------------------------------------------------------------
// Comparing

/// What an interval must hold: the reference's tally, and its flows as the
/// ledger reports keys, sorted.
struct Expected {
    tally: Tally,
    flows: Vec<(FlowKey, Count)>,
}

impl Expected {
    fn new(tally: Tally) -> Expected {
        let mut flows: Vec<(FlowKey, Count)> = tally
            .flows
            .iter()
            .map(|(k, n)| (flow_key(k), count_of(*n)))
            .collect();
        sort_merge(&mut flows);
        Expected { tally, flows }
    }

    /// Adds a frame whose first buffer holds its first `head` bytes.
    fn add_in(&mut self, frame: &[u8], head: usize) {
        self.tally.add_in(frame, head);
        *self = Expected::new(std::mem::take(&mut self.tally));
    }
}

fn count_of(r: reference::Count) -> Count {
    Count {
        packets: r.packets,
        bytes: r.bytes,
    }
}

/// Sorts flows by key and sums the records of one key (strategy lock may
/// report a key twice in one cut: an evicted slot and its successor).
fn sort_merge(flows: &mut Vec<(FlowKey, Count)>) {
    flows.sort_unstable_by_key(|f| f.0);
    flows.dedup_by(|later, first| {
        let same = later.0 == first.0;
        if same {
            first.1.add(later.1);
        }
        same
    });
}

/// Every way an interval differs from the reference.
fn differences(iv: &Interval, want: &Expected) -> Vec<String> {
    let mut out = Vec::new();
    let b = &iv.buckets;
    if !b.conserved() {
        out.push(format!(
            "seen != sum of buckets: seen {}, counted {}, non_ip {}, malformed {}, map_full {}, evict_race {}",
            count(b.get(Bucket::Seen)),
            count(b.get(Bucket::Counted)),
            count(b.get(Bucket::NonIp)),
            count(b.get(Bucket::Malformed)),
            count(b.get(Bucket::MapFull)),
            count(b.get(Bucket::EvictRace)),
        ));
    }
    let t = &want.tally;
    let expected = [
        (Bucket::Seen, count_of(t.seen)),
        (
            Bucket::Counted,
            count_of(t.bucket(reference::Bucket::Counted)),
        ),
        (Bucket::NonIp, count_of(t.bucket(reference::Bucket::NonIp))),
        (
            Bucket::Malformed,
            count_of(t.bucket(reference::Bucket::Malformed)),
        ),
        (Bucket::MapFull, Count::default()),
        (Bucket::EvictRace, Count::default()),
    ];
    for (bucket, want) in expected {
        let got = b.get(bucket);
        if got != want {
            out.push(format!(
                "bucket {}: ledger {}, reference {}",
                bucket.name(),
                count(got),
                count(want)
            ));
        }
    }
    let mut got = iv.flows.clone();
    sort_merge(&mut got);
    let mut flows = Vec::new();
    let (mut g, mut w) = (got.iter().peekable(), want.flows.iter().peekable());
    loop {
        let (ours, theirs) = match (g.peek(), w.peek()) {
            (None, None) => break,
            (Some(a), Some(b)) if a.0 == b.0 => (g.next(), w.next()),
            (Some(a), Some(b)) if a.0 < b.0 => (g.next(), None),
            (Some(_), None) => (g.next(), None),
            _ => (None, w.next()),
        };
        let key = ours.or(theirs).map(|f| f.0).expect("one side has a flow");
        let ours = ours.map(|f| f.1);
        let theirs = theirs.map(|f| f.1);
        if ours != theirs {
            let show = |c: Option<Count>| c.map_or("none".to_string(), count);
            flows.push(format!(
                "flow {}: ledger {}, reference {}",
                show_key(&key),
                show(ours),
                show(theirs)
            ));
        }
    }
    let more = flows.len().saturating_sub(12);
    out.extend(flows.into_iter().take(12));
    if more > 0 {
        out.push(format!("... and {more} more flows"));
    }
    out
}

/// The kind of a reference answer: its bucket, and for a key its family,
/// protocol, what it has of L4 and whether it is a fragment.
fn signature(o: &Outcome) -> (reference::Bucket, Option<(Family, u8, u8, bool)>) {
    let key = o.key().map(|k| {
        let l4 = match k.l4 {
            reference::L4::None => 0,
            reference::L4::Ports { .. } => 1,
            reference::L4::Icmp { .. } => 2,
        };
        (k.family, k.proto, l4, k.fragment)
    });
    (o.bucket(), key)
}

/// What the ledger did with a lone frame: its interval's one record.
fn answer(iv: &Interval) -> String {
    let b = &iv.buckets;
    let seen = b.get(Bucket::Seen);
    if seen.packets == 0 {
        return "not seen by the hook".into();
    }
    let mut parts = Vec::new();
    for (k, c) in &iv.flows {
        parts.push(format!("{} ({} B)", show_key(k), c.bytes));
    }
    for bucket in [
        Bucket::NonIp,
        Bucket::Malformed,
        Bucket::MapFull,
        Bucket::EvictRace,
    ] {
        let c = b.get(bucket);
        if c.packets > 0 {
            parts.push(format!("{} ({} B)", bucket.name(), c.bytes));
        }
    }
    if seen.packets != 1 {
        parts.push(format!("seen {}", count(seen)));
    }
    parts.join(" + ")
}

// ---------------------------------------------------------------------------
// One run: a program, its configurations, a seed

/// A ledger of one configuration, attached to the counting end of its own
/// link, and what happened to it.
struct Leg {
    link: usize,
    name: String,
    cfg: LedgerConfig,
    ledger: Ledger,
    _att: Attachment,
    /// Sends the device had no room for, sent again.
    retries: u64,
    /// The kernel's own frames seen leaving the link's TX end.
    kernel: Vec<Vec<u8>>,
    /// Frames the TX end transmitted (ours and the kernel's).
    tx_sent: u64,
    cuts: u64,
}

/// Where the time went.
#[derive(Default)]
struct Times {
    waiting: Duration,
    sending: Duration,
    cutting: Duration,
    comparing: Duration,
}

/// A program's ledgers, one per configuration, on one bed.
struct Rig<'a> {
    bed: &'a Bed,
    program: Program,
    legs: Vec<Leg>,
    times: Times,
}

impl<'a> Rig<'a> {
    fn new(bed: &'a Bed, program: Program, cfgs: Vec<(String, LedgerConfig)>) -> Rig<'a> {
        assert!(bed.links.len() >= cfgs.len());
        let legs = cfgs
            .into_iter()
            .enumerate()
            .map(|(link, (name, cfg))| {
                let ledger = Ledger::load_at(cfg.clone(), program.hook)
                    .unwrap_or_else(|e| panic!("loading {} with {cfg:?}: {e}", program.name()));
                let att = bed.attach(link, &ledger);
                Leg {
                    link,
                    name,
                    cfg,
                    ledger,
                    _att: att,
                    retries: 0,
                    kernel: Vec::new(),
                    tx_sent: 0,
                    cuts: 0,
                }
            })
            .collect();
        Rig {
            bed,
            program,
            legs,
            times: Times::default(),
        }
    }

    fn what(&self, leg: usize) -> String {
        format!("{} / {}", self.program.name(), self.legs[leg].name)
    }

    /// `seen` packets of a leg's live buckets.
    fn seen(&self, leg: usize) -> u64 {
        self.legs[leg]
            .ledger
            .buckets()
            .unwrap_or_else(|e| panic!("{}: reading the buckets: {e}", self.what(leg)))
            .get(Bucket::Seen)
            .packets
    }

    /// Sends `frames` (whose refusals are predicted) on the links of `legs`,
    /// waits until each hook has seen every frame it is to see, and cuts
    /// each ledger. Returns per leg the interval and the reference's answer,
    /// the kernel's own frames added to it.
    fn interval(
        &mut self,
        legs: &[usize],
        frames: &[&[u8]],
        refused: &[Option<Refusal>],
        wants: Vec<Expected>,
    ) -> Vec<(Interval, Expected)> {
        let hook = self.program.hook;
        let mut arriving = vec![0u64; legs.len()];
        let bases: Vec<u64> = legs.iter().map(|&l| self.seen(l)).collect();
        let t = Instant::now();
        for (j, &l) in legs.iter().enumerate() {
            let link = &self.bed.links[self.legs[l].link];
            let results = send_all(&link.sock, frames, &mut self.legs[l].retries);
            for ((frame, result), refusal) in frames.iter().zip(&results).zip(refused) {
                match (result, refusal) {
                    (Ok(()), None) => arriving[j] += 1,
                    (Ok(()), Some(r)) if !r.at_send() => {}
                    (Err(_), Some(r)) if r.at_send() => {}
                    (result, refusal) => panic!(
                        "{}: the kernel's handling of a {}-byte frame is not what was \
                         predicted (send: {:?}, predicted: {:?}):\n  {}",
                        self.what(l),
                        frame.len(),
                        result.map_err(io::Error::from_raw_os_error),
                        refusal.map(Refusal::why),
                        hex(frame)
                    ),
                }
                if result.is_ok() {
                    self.legs[l].tx_sent += 1;
                }
            }
        }
        self.times.sending += t.elapsed();
        let mut wants = wants;
        for (j, &l) in legs.iter().enumerate() {
            let link = &self.bed.links[self.legs[l].link];
            for f in link.kernel.drain() {
                if undeliverable(&f, hook).is_none() {
                    wants[j].add_in(&f, first_buffer(&f, hook));
                    arriving[j] += 1;
                }
                self.legs[l].tx_sent += 1;
                self.legs[l].kernel.push(f);
            }
        }
        let t = Instant::now();
        let deadline = t + ARRIVAL;
        let mut out = Vec::with_capacity(legs.len());
        for ((j, &l), want) in legs.iter().enumerate().zip(wants) {
            while self.seen(l) - bases[j] < arriving[j] && Instant::now() < deadline {
                std::thread::sleep(Duration::from_micros(100));
            }
            let iv = self.legs[l]
                .ledger
                .cut()
                .unwrap_or_else(|e| panic!("{}: cut: {e}", self.what(l)));
            self.legs[l].cuts += 1;
            out.push((iv, want));
        }
        self.times.cutting += t.elapsed();
        out
    }

    /// The reference's answer for the delivered ones of `frames` under
    /// `leg`'s configuration.
    fn expected(&self, leg: usize, frames: &[&[u8]]) -> Expected {
        let hook = self.program.hook;
        let mut t = Tally::new(reference_config(&self.legs[leg].cfg));
        for f in frames {
            if undeliverable(f, hook).is_none() {
                t.add_in(f, first_buffer(f, hook));
            }
        }
        Expected::new(t)
    }

    /// Whether `frames`, sent alone to `leg`, give what the reference says.
    fn probe(&mut self, leg: usize, frames: &[&[u8]]) -> (bool, Interval) {
        let hook = self.program.hook;
        let refused: Vec<_> = frames.iter().map(|f| undeliverable(f, hook)).collect();
        let want = self.expected(leg, frames);
        let (iv, want) = self
            .interval(&[leg], frames, &refused, vec![want])
            .pop()
            .expect("one leg");
        (!differences(&iv, &want).is_empty(), iv)
    }

    /// Bisects `frames` (which differ as a whole) down to one frame that
    /// differs alone; None if no part differs alone. Tries the first half
    /// first: on frames sorted by length, finds the shortest that differs.
    fn bisect<'f>(&mut self, leg: usize, frames: &[&'f [u8]]) -> Option<(&'f [u8], Interval)> {
        let mut set: Vec<&[u8]> = frames.to_vec();
        loop {
            if set.len() == 1 {
                let (differs, iv) = self.probe(leg, &set);
                return differs.then(|| (set[0], iv));
            }
            let (a, b) = set.split_at(set.len() / 2);
            if self.probe(leg, a).0 {
                set = a.to_vec();
            } else if self.probe(leg, b).0 {
                set = b.to_vec();
            } else {
                return None;
            }
        }
    }

    /// The answer of a test run of `frame` alone on a fresh XDP ledger of
    /// `leg`'s configuration (strategy lock, whose cut needs no traffic).
    fn test_run_answer(&self, leg: usize, frame: &[u8]) -> String {
        let cfg = LedgerConfig {
            strategy: Strategy::Lock,
            ..self.legs[leg].cfg.clone()
        };
        let run = || -> netledger::Result<String> {
            let l = Ledger::load(cfg)?;
            let r = l.test_run(frame, 1)?;
            let iv = l.cut()?;
            Ok(format!("{} (retval {})", answer(&iv), r.retval))
        };
        run().unwrap_or_else(|e| format!("test run failed: {e}"))
    }

    /// Finds frames of an interval that differ alone on `leg`, and fails.
    fn pinpoint(&mut self, leg: usize, frames: &[&[u8]], classes: &[Class], what: &str) -> ! {
        let started = Instant::now();
        let hook = self.program.hook;
        let refcfg = reference_config(&self.legs[leg].cfg);
        let reference = |f: &[u8]| reference::classify_in(f, first_buffer(f, hook), &refcfg);
        let mut report = format!(
            "{what}\npinpointing the frames that differ (shortest first, one of each kind of \
             reference answer):\n"
        );
        let mut left: Vec<&[u8]> = frames.to_vec();
        left.sort_by_key(|f| f.len());
        let mut found = 0;
        while found < MAX_FOUND && started.elapsed() < Duration::from_secs(120) {
            if !self.probe(leg, &left).0 {
                if found == 0 {
                    report.push_str(
                        "  the interval's frames, sent again, give what the reference says: \
                         the difference did not come from the frames alone\n",
                    );
                }
                break;
            }
            let Some((frame, iv)) = self.bisect(leg, &left) else {
                writeln!(
                    report,
                    "  {} frames differ together but no part of them alone",
                    left.len()
                )
                .unwrap();
                break;
            };
            found += 1;
            let at = frames.iter().position(|f| *f == frame).unwrap_or(0);
            let says = match undeliverable(frame, hook) {
                Some(r) => format!("not delivered ({})", r.why()),
                None => show_outcome(&reference(frame)),
            };
            writeln!(
                report,
                "  frame {at} of the interval ({}, {} bytes):\n    {}\n    reference: {says}\n    ledger:    {}",
                classes.get(at).map_or("?", |c| c.name()),
                frame.len(),
                hex(frame),
                answer(&iv),
            )
            .unwrap();
            if hook == Hook::Xdp {
                let run = self.test_run_answer(leg, frame);
                writeln!(report, "    test run:  {run}").unwrap();
            }
            // Leave out the frames the reference answers the same way: the
            // next one found differs in another way.
            let kind = signature(&reference(frame));
            left.retain(|f| *f != frame && signature(&reference(f)) != kind);
        }
        panic!("{report}");
    }

    /// Runs `total` frames from `seed` through every leg.
    fn run(&mut self, seed: u64, total: usize) -> (Report, Distribution) {
        let hook = self.program.hook;
        let cfgs: Vec<reference::Config> =
            self.legs.iter().map(|l| reference_config(&l.cfg)).collect();
        let tx0: Vec<u64> = self
            .legs
            .iter()
            .map(|l| self.bed.tx_packets(l.link))
            .collect();
        let all: Vec<usize> = (0..self.legs.len()).collect();
        let (batches, made) = sync_channel::<Batch>(2);
        let started = Instant::now();
        let mut frames_done = 0u64;
        let dist = std::thread::scope(|s| {
            // Owned here: a panic below drops it, which stops the generator
            // (blocked on a full channel) so that the scope can end.
            let made = made;
            let cfgs = &cfgs;
            let gen = std::thread::Builder::new()
                .name("fuzz frames".into())
                .spawn_scoped(s, move || generate(seed, total, hook, cfgs, batches))
                .expect("starting the generator");
            let mut i = 0;
            loop {
                let t = Instant::now();
                let Ok(batch) = made.recv() else { break };
                self.times.waiting += t.elapsed();
                let frames: Vec<&[u8]> = batch.frames.iter().map(Vec::as_slice).collect();
                let results = self.interval(&all, &frames, &batch.refused, batch.wants);
                for (leg, (iv, want)) in results.into_iter().enumerate() {
                    let t = Instant::now();
                    let diffs = differences(&iv, &want);
                    self.times.comparing += t.elapsed();
                    if !diffs.is_empty() {
                        drop(made);
                        let what = format!(
                            "{}, seed {seed:#x}: interval {i} (frames {} to {}) differs from the \
                             reference:\n  - {}",
                            self.what(leg),
                            frames_done,
                            frames_done + frames.len() as u64 - 1,
                            diffs.join("\n  - ")
                        );
                        self.pinpoint(leg, &frames, &batch.classes, &what);
                    }
                }
                frames_done += frames.len() as u64;
                i += 1;
            }
            gen.join().unwrap_or_else(|p| std::panic::resume_unwind(p))
        });
        let elapsed = started.elapsed();
        // Nothing went out of a TX end but our frames and the kernel's own.
        for (l, tx0) in self.legs.iter().zip(tx0) {
            let tx = self.bed.tx_packets(l.link) - tx0;
            assert_eq!(
                tx,
                l.tx_sent,
                "{} / {}: the sending end transmitted {tx} frames, {} were sent (ours and the \
                 kernel's own)",
                self.program.name(),
                l.name,
                l.tx_sent
            );
        }
        (
            Report {
                frames: frames_done,
                elapsed,
                legs: self
                    .legs
                    .iter()
                    .map(|l| (l.name.clone(), l.cuts, l.retries, l.kernel.len()))
                    .collect(),
            },
            dist,
        )
    }
}

/// What a run saw.
struct Report {
    frames: u64,
    elapsed: Duration,
    /// Per configuration: name, intervals, sends retried, kernel frames.
    legs: Vec<(String, u64, u64, usize)>,
}

/// Every configuration of `program`, each on its own link, the same frames.
fn fuzz(program: Program) {
    let _serial = serial();
    let seed = env_u64(SEED_ENV).unwrap_or(DEFAULT_SEED);
    let total = env_u64(FRAMES_ENV).map_or(DEFAULT_FRAMES, |n| n as usize);
    assert!(total > 0, "{FRAMES_ENV} must be at least 1");
    // SAFETY: sysconf only reads a system constant.
    let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    assert_eq!(
        page, 4096,
        "first_buffer() knows how the kernel splits frames into 4 KiB pages; this machine's \
         pages are {page} bytes"
    );
    let cfgs = program.configs().to_vec();
    println!(
        "{}: seed {seed:#x} ({SEED_ENV} overrides), {total} frames ({FRAMES_ENV} overrides), \
         each through {} ledgers: {}",
        program.name(),
        cfgs.len(),
        cfgs.iter()
            .map(|(n, _)| n.as_str())
            .collect::<Vec<_>>()
            .join("; ")
    );
    let bed = Bed::new(cfgs.len());
    let mut rig = Rig::new(&bed, program, cfgs);
    let (report, dist) = rig.run(seed, total);
    let times = std::mem::take(&mut rig.times);
    drop(rig);
    print_report(program, seed, &report, &times, &dist);
}

fn print_report(program: Program, seed: u64, r: &Report, t: &Times, d: &Distribution) {
    let secs = r.elapsed.as_secs_f64();
    let mut s = String::new();
    writeln!(
        s,
        "{} / seed {seed:#x}: {} frames ({} bytes), 0 differences; {:.1} s, {:.0} frames/s \
         through each of {} ledgers (sending {:.1} s, cutting {:.1} s, comparing {:.1} s, \
         waiting for the generator {:.1} s)",
        program.name(),
        r.frames,
        d.bytes,
        secs,
        r.frames as f64 / secs,
        r.legs.len(),
        t.sending.as_secs_f64(),
        t.cutting.as_secs_f64(),
        t.comparing.as_secs_f64(),
        t.waiting.as_secs_f64(),
    )
    .unwrap();
    for (name, cuts, retries, kernel) in &r.legs {
        writeln!(
            s,
            "  {name}: {} frames in {cuts} intervals, each equal to the reference; {retries} \
             sends retried (device busy); {kernel} frames of the kernel's own",
            r.frames
        )
        .unwrap();
    }
    for (why, n) in &d.refused {
        writeln!(s, "  not delivered to the hook: {n} ({})", why.why()).unwrap();
    }
    writeln!(
        s,
        "  malformed because a header lies past the first buffer: {}",
        d.past_first_buffer
    )
    .unwrap();
    writeln!(
        s,
        "  {:<15} {:>8} {:>7}   {:>8} {:>8} {:>9} {:>9}",
        "class", "frames", "%", "counted", "non_ip", "malformed", "refused"
    )
    .unwrap();
    let pct = |n: u64| 100.0 * n as f64 / d.frames.max(1) as f64;
    for (class, row) in &d.classes {
        writeln!(
            s,
            "  {:<15} {:>8} {:>6.2}%   {:>8} {:>8} {:>9} {:>9}",
            class.name(),
            row[0],
            pct(row[0]),
            row[1],
            row[2],
            row[3],
            row[4]
        )
        .unwrap();
    }
    writeln!(
        s,
        "  {:<22} {:>8} {:>7}   (under {})",
        "outcome",
        "frames",
        "%",
        r.legs.first().map_or("", |l| l.0.as_str())
    )
    .unwrap();
    for (name, n) in OUTCOMES.iter().zip(d.outcomes) {
        if n > 0 {
            writeln!(s, "  {name:<22} {n:>8} {:>6.2}%", pct(n)).unwrap();
        }
    }
    print!("{s}");
}
