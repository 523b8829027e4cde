//! Seeded generator of hostile frames for differential tests of netledger's parser.
//!
//! [`Generator::new`] takes a seed; [`Generator::next`] returns one whole L2 frame (Ethernet header
//! first, 14 to 9014 bytes) and the [`Class`] of mutation that made it. The sequence depends on the
//! seed only: the pseudo-random source is xoshiro256** seeded through splitmix64, written here with
//! integer arithmetic alone, so a seed gives the same frames on every machine and in every build.
//!
//! Most frames start as a valid one (IPv4 or IPv6; TCP, UDP, UDP-Lite, SCTP, ICMP/ICMPv6 or another
//! protocol; 0 to 2 VLAN tags; IPv4 options or IPv6 extension headers now and then; varied addresses,
//! ports and payloads of 0 to 1400 bytes) in which exactly one thing is then made hostile: the
//! EtherType, the VLAN depth and TPIDs, the IP version, the IHL, the total or payload length, the
//! fragment fields, the protocol, the IPv6 extension chain, the L4 header's length, the padding after
//! the datagram, or the frame's end. The rest are random bytes, 14-byte frames and jumbo frames.
//! Addresses, ports and VLAN ids are drawn partly from small pools so that keys repeat (flows with
//! many packets, prefixes that aggregate several hosts) and partly at random.

/// Smallest frame: an Ethernet header alone.
pub const MIN_FRAME: usize = 14;
/// Largest frame: a 9000-byte MTU plus the Ethernet header.
pub const MAX_FRAME: usize = 9014;

const ETH_P_IPV4: u16 = 0x0800;
const ETH_P_IPV6: u16 = 0x86dd;
const ETH_P_8021Q: u16 = 0x8100;
const ETH_P_8021AD: u16 = 0x88a8;

const HOPOPTS: u8 = 0;
const ROUTING: u8 = 43;
const FRAGMENT: u8 = 44;
const DSTOPTS: u8 = 60;

/// A small, fast, seedable pseudo-random source (xoshiro256**, seeded by splitmix64).
#[derive(Clone, Debug)]
pub struct Rng {
    s: [u64; 4],
}

impl Rng {
    /// The source for `seed`; every seed (0 included) gives a usable, distinct state.
    pub fn new(seed: u64) -> Rng {
        let mut x = seed;
        let mut splitmix = || {
            x = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
            let mut z = x;
            z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
            z ^ (z >> 31)
        };
        Rng {
            s: [splitmix(), splitmix(), splitmix(), splitmix()],
        }
    }

    /// 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        let result = self.s[1].wrapping_mul(5).rotate_left(7).wrapping_mul(9);
        let t = self.s[1] << 17;
        self.s[2] ^= self.s[0];
        self.s[3] ^= self.s[1];
        self.s[1] ^= self.s[2];
        self.s[0] ^= self.s[3];
        self.s[2] ^= t;
        self.s[3] = self.s[3].rotate_left(45);
        result
    }

    /// A number in `0..n` (`n > 0`), by the multiply-high method (bias below 2^-50 for our `n`).
    pub fn below(&mut self, n: u64) -> u64 {
        ((u128::from(self.next_u64()) * u128::from(n)) >> 64) as u64
    }

    /// A number in `lo..=hi`.
    pub fn range(&mut self, lo: usize, hi: usize) -> usize {
        lo + self.below((hi - lo + 1) as u64) as usize
    }

    /// True with probability `num / den`.
    pub fn chance(&mut self, num: u64, den: u64) -> bool {
        self.below(den) < num
    }

    /// One element of a non-empty slice.
    pub fn pick<T: Copy>(&mut self, xs: &[T]) -> T {
        xs[self.below(xs.len() as u64) as usize]
    }

    /// A random byte.
    pub fn byte(&mut self) -> u8 {
        self.next_u64() as u8
    }

    /// A random 16-bit value.
    pub fn u16(&mut self) -> u16 {
        self.next_u64() as u16
    }

    /// Appends `n` random bytes.
    pub fn extend(&mut self, buf: &mut Vec<u8>, n: usize) {
        let start = buf.len();
        buf.resize(start + n, 0);
        for chunk in buf[start..].chunks_mut(8) {
            let word = self.next_u64().to_le_bytes();
            chunk.copy_from_slice(&word[..chunk.len()]);
        }
    }
}

/// The mutation that made a frame, for reporting results per kind of hostility.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Class {
    /// 14 to 200 random bytes, half of them behind an IP or VLAN EtherType (and matching version).
    RandomBytes,
    /// A 14-byte frame: an Ethernet header alone, with an IP, VLAN, ARP or random EtherType.
    Minimum,
    /// A valid frame, unchanged.
    Valid,
    /// The EtherType after the tags replaced (ARP, MPLS, LLC lengths, the other IP version, a TPID).
    EtherType,
    /// 0 to 3 VLAN tags with TPIDs 0x8100, 0x88A8 and now and then 0x9100.
    VlanDepth,
    /// The IP version nibble changed.
    IpVersion,
    /// IPv4 IHL set to 0..=15.
    Ihl,
    /// IPv4 total length: 0, below the header, exact +- 1, the frame +- 1, large; padding or not.
    TotalLength,
    /// IPv4 fragment offset and flags, or an IPv6 fragment header somewhere in the chain.
    Fragment,
    /// IPv6 payload length: 0, small, exact +- 1, the frame +- 1, large; padding or not.
    PayloadLength,
    /// 0 to 10 IPv6 extension headers of random kinds and lengths, sometimes a random Next Header
    /// inside the chain.
    ExtChain,
    /// The protocol (IPv4) or the last Next Header (IPv6) replaced.
    Protocol,
    /// A TCP, UDP, UDP-Lite, SCTP or ICMP header cut at every length from 0 to whole, the datagram
    /// ending there; sometimes the rest of the header follows as padding.
    L4Cut,
    /// A small datagram followed by Ethernet padding up to 60 bytes or beyond, zeros or random.
    Padding,
    /// A valid frame cut short anywhere after the Ethernet header.
    Truncated,
    /// A valid frame of 1515 to 9014 bytes.
    Jumbo,
}

impl Class {
    /// Every class, in report order.
    pub const ALL: [Class; 16] = [
        Class::RandomBytes,
        Class::Minimum,
        Class::Valid,
        Class::EtherType,
        Class::VlanDepth,
        Class::IpVersion,
        Class::Ihl,
        Class::TotalLength,
        Class::Fragment,
        Class::PayloadLength,
        Class::ExtChain,
        Class::Protocol,
        Class::L4Cut,
        Class::Padding,
        Class::Truncated,
        Class::Jumbo,
    ];

    /// How many frames in 1000 are of each class, in [`Class::ALL`] order.
    const WEIGHTS: [u64; 16] = [
        50, 30, 110, 50, 70, 30, 60, 70, 90, 60, 100, 60, 90, 70, 45, 15,
    ];

    /// A short name for reports.
    pub fn name(self) -> &'static str {
        match self {
            Class::RandomBytes => "random_bytes",
            Class::Minimum => "minimum",
            Class::Valid => "valid",
            Class::EtherType => "ethertype",
            Class::VlanDepth => "vlan_depth",
            Class::IpVersion => "ip_version",
            Class::Ihl => "ihl",
            Class::TotalLength => "total_length",
            Class::Fragment => "fragment",
            Class::PayloadLength => "payload_length",
            Class::ExtChain => "ext_chain",
            Class::Protocol => "protocol",
            Class::L4Cut => "l4_cut",
            Class::Padding => "padding",
            Class::Truncated => "truncated",
            Class::Jumbo => "jumbo",
        }
    }
}

impl std::fmt::Display for Class {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// One generated frame.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Frame {
    /// The whole L2 frame, Ethernet header first.
    pub bytes: Vec<u8>,
    /// The mutation that made it.
    pub class: Class,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Fam {
    V4,
    V6,
}

/// The L4 part of a valid frame.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Tcp,
    Udp,
    UdpLite,
    Sctp,
    /// ICMP in IPv4, ICMPv6 in IPv6.
    Icmp,
    /// A protocol without an L4 header the parser reads.
    Other,
}

const KINDS: [Kind; 6] = [
    Kind::Tcp,
    Kind::Udp,
    Kind::UdpLite,
    Kind::Sctp,
    Kind::Icmp,
    Kind::Other,
];

/// One IPv6 extension header.
#[derive(Clone, Copy, Debug)]
enum Ext {
    /// Hop-by-hop, routing or destination options of `(units + 1) * 8` bytes.
    Opt { kind: u8, units: u8 },
    /// A fragment header.
    Frag { offset: u16, more: bool },
}

impl Ext {
    fn kind(self) -> u8 {
        match self {
            Ext::Opt { kind, .. } => kind,
            Ext::Frag { .. } => FRAGMENT,
        }
    }
}

/// What a frame is made of, before it is written out.
#[derive(Clone, Debug)]
struct Spec {
    tags: Vec<(u16, u16)>,
    ethertype: u16,
    fam: Fam,
    src: [u8; 16],
    dst: [u8; 16],
    /// The protocol field (IPv4) or the Next Header that ends the chain (IPv6).
    proto: u8,
    /// IPv4 option words (0 to 10).
    opt_words: usize,
    /// IPv4 flags and fragment offset.
    frag4: u16,
    ext: Vec<Ext>,
    /// The L4 header bytes (possibly cut, possibly absent).
    l4: Vec<u8>,
    /// Payload bytes after the L4 header.
    payload: usize,
    /// Bytes after the datagram: Ethernet padding.
    trailer: Vec<u8>,
}

impl Spec {
    /// The bytes of the IPv6 extension headers.
    fn ext_len(&self) -> usize {
        self.ext
            .iter()
            .map(|e| match e {
                Ext::Opt { units, .. } => (usize::from(*units) + 1) * 8,
                Ext::Frag { .. } => 8,
            })
            .sum()
    }
}

/// A written frame and where its parts are.
struct Built {
    bytes: Vec<u8>,
    /// Offset of the IP header.
    l3: usize,
    /// Offsets of every Next Header byte of an IPv6 chain (fixed header first), or of the IPv4
    /// protocol byte; the last one holds the upper-layer protocol.
    next_headers: Vec<usize>,
}

/// The hostile frame generator: deterministic for a seed.
#[derive(Clone, Debug)]
pub struct Generator {
    rng: Rng,
}

const V4_POOL: [[u8; 4]; 8] = [
    [10, 0, 0, 1],
    [10, 0, 0, 2],
    [10, 0, 1, 7],
    [10, 200, 3, 4],
    [192, 168, 1, 10],
    [192, 168, 1, 11],
    [172, 16, 5, 1],
    [203, 0, 113, 9],
];

const V6_POOL: [[u16; 8]; 8] = [
    [0x2001, 0xdb8, 0, 0, 0, 0, 0, 1],
    [0x2001, 0xdb8, 0, 0, 0, 0, 0, 2],
    [0x2001, 0xdb8, 0, 1, 0, 0, 0, 1],
    [0x2001, 0xdb8, 0xffff, 0, 0x1234, 0, 0, 9],
    [0xfd00, 0, 0, 0, 0, 0, 0x12, 0x34],
    [0xfe80, 0, 0, 0, 0x0211, 0x22ff, 0xfe33, 0x4455],
    [0, 0, 0, 0, 0, 0, 0, 1],
    [0x2a00, 0x1450, 0x4001, 0x81c, 0, 0, 0, 0x200e],
];

const PORT_POOL: [u16; 10] = [53, 80, 443, 123, 8080, 5353, 40000, 1, 65535, 0];
const VID_POOL: [u16; 6] = [0, 1, 5, 100, 4094, 4095];

/// ICMP (type, code) pairs worth seeing: echo, unreachable, time exceeded, ND, MLD, and a few odd.
const ICMP_POOL: [(u8, u8); 10] = [
    (8, 0),
    (0, 0),
    (3, 1),
    (11, 0),
    (128, 0),
    (129, 0),
    (135, 0),
    (136, 0),
    (255, 255),
    (3, 13),
];

/// Protocols without an L4 header the parser reads, in either family.
const OTHER_PROTOS: [u8; 12] = [2, 4, 41, 47, 50, 51, 89, 103, 112, 115, 133, 255];

impl Generator {
    /// A generator whose whole sequence is fixed by `seed`.
    pub fn new(seed: u64) -> Generator {
        Generator {
            rng: Rng::new(seed),
        }
    }

    /// The next frame. The sequence never ends, which is why this is not `Iterator::next` (the
    /// generator is also an `Iterator` for `take` and friends).
    #[allow(clippy::should_implement_trait)]
    pub fn next(&mut self) -> Frame {
        let mut roll = self.rng.below(1000);
        let mut class = Class::Jumbo;
        for (c, w) in Class::ALL.iter().zip(Class::WEIGHTS) {
            if roll < w {
                class = *c;
                break;
            }
            roll -= w;
        }
        let mut bytes = match class {
            Class::RandomBytes => self.random_bytes(),
            Class::Minimum => self.minimum(),
            Class::Valid => {
                let fam = self.fam();
                let spec = self.valid(fam);
                self.build(&spec).bytes
            }
            Class::EtherType => self.ethertype(),
            Class::VlanDepth => self.vlan_depth(),
            Class::IpVersion => self.ip_version(),
            Class::Ihl => self.ihl(),
            Class::TotalLength => self.total_length(),
            Class::Fragment => self.fragment(),
            Class::PayloadLength => self.payload_length(),
            Class::ExtChain => self.ext_chain(),
            Class::Protocol => self.protocol(),
            Class::L4Cut => self.l4_cut(),
            Class::Padding => self.padding(),
            Class::Truncated => self.truncated(),
            Class::Jumbo => self.jumbo(),
        };
        // A long chain of long extension headers can outgrow the largest frame: it is cut there
        // (and is then a truncated datagram, which is hostile too).
        bytes.truncate(MAX_FRAME);
        debug_assert!(bytes.len() >= MIN_FRAME);
        Frame { bytes, class }
    }

    // ---- building blocks -----------------------------------------------------------------------

    fn fam(&mut self) -> Fam {
        if self.rng.chance(1, 2) {
            Fam::V4
        } else {
            Fam::V6
        }
    }

    fn addr(&mut self, fam: Fam) -> [u8; 16] {
        let mut a = [0u8; 16];
        match fam {
            Fam::V4 => {
                let v = if self.rng.chance(3, 5) {
                    let mut v = self.rng.pick(&V4_POOL);
                    // Neighbours of pooled hosts: distinct hosts that share a /24 or /16.
                    if self.rng.chance(1, 4) {
                        v[3] = self.rng.byte();
                    }
                    v
                } else {
                    (self.rng.next_u64() as u32).to_be_bytes()
                };
                a[..4].copy_from_slice(&v);
            }
            Fam::V6 => {
                if self.rng.chance(3, 5) {
                    let words = self.rng.pick(&V6_POOL);
                    for (i, w) in words.iter().enumerate() {
                        a[2 * i..2 * i + 2].copy_from_slice(&w.to_be_bytes());
                    }
                    if self.rng.chance(1, 4) {
                        let host = self.rng.next_u64().to_be_bytes();
                        a[8..].copy_from_slice(&host);
                    }
                } else {
                    a[..8].copy_from_slice(&self.rng.next_u64().to_be_bytes());
                    a[8..].copy_from_slice(&self.rng.next_u64().to_be_bytes());
                }
            }
        }
        a
    }

    fn port(&mut self) -> u16 {
        if self.rng.chance(1, 2) {
            self.rng.pick(&PORT_POOL)
        } else {
            self.rng.u16()
        }
    }

    fn tci(&mut self) -> u16 {
        let vid = if self.rng.chance(1, 2) {
            self.rng.pick(&VID_POOL)
        } else {
            self.rng.u16() & 0x0fff
        };
        // Priority and drop-eligible bits now and then.
        let pcp_dei = if self.rng.chance(1, 4) {
            self.rng.u16() & 0xf000
        } else {
            0
        };
        vid | pcp_dei
    }

    fn tags(&mut self, depth: usize, tpids: &[u16]) -> Vec<(u16, u16)> {
        (0..depth)
            .map(|_| (self.rng.pick(tpids), self.tci()))
            .collect()
    }

    /// 0 to 2 tags of the two TPIDs the parser knows.
    fn valid_tags(&mut self) -> Vec<(u16, u16)> {
        let depth = match self.rng.below(20) {
            0..=10 => 0,
            11..=16 => 1,
            _ => 2,
        };
        self.tags(depth, &[ETH_P_8021Q, ETH_P_8021AD])
    }

    fn payload_len(&mut self) -> usize {
        match self.rng.below(20) {
            0..=4 => 0,
            5..=11 => self.rng.range(1, 64),
            _ => self.rng.range(65, 1400),
        }
    }

    /// The upper-layer protocol number of `kind` in `fam`.
    fn proto(&mut self, fam: Fam, kind: Kind) -> u8 {
        match kind {
            Kind::Tcp => 6,
            Kind::Udp => 17,
            Kind::UdpLite => 136,
            Kind::Sctp => 132,
            Kind::Icmp if fam == Fam::V4 => 1,
            Kind::Icmp => 58,
            Kind::Other => match self.rng.below(10) {
                // ICMP of the other family: not ICMP to the parser.
                0 if fam == Fam::V4 => 58,
                0 => 1,
                // IPv6 "no next header"; in IPv4, protocol 0.
                1 if fam == Fam::V6 => 59,
                1 => 0,
                2 => loop {
                    let p = self.rng.byte();
                    let special = matches!(p, 0 | 1 | 6 | 17 | 43 | 44 | 58 | 60 | 132 | 136);
                    if !special {
                        break p;
                    }
                },
                _ => self.rng.pick(&OTHER_PROTOS),
            },
        }
    }

    /// A whole, valid L4 header of `kind` (empty for `Other`).
    fn l4_header(&mut self, kind: Kind, payload: usize) -> Vec<u8> {
        let mut h = Vec::with_capacity(20);
        match kind {
            Kind::Tcp | Kind::Udp | Kind::UdpLite | Kind::Sctp => {
                h.extend(self.port().to_be_bytes());
                h.extend(self.port().to_be_bytes());
            }
            Kind::Icmp => {
                let (t, c) = if self.rng.chance(1, 5) {
                    (self.rng.byte(), self.rng.byte())
                } else {
                    self.rng.pick(&ICMP_POOL)
                };
                h.extend([t, c]);
                self.rng.extend(&mut h, 6);
            }
            Kind::Other => {}
        }
        match kind {
            Kind::Tcp => {
                self.rng.extend(&mut h, 8); // sequence and acknowledgement numbers
                h.extend([0x50, self.rng.byte() & 0x3f]); // data offset 5, flags
                self.rng.extend(&mut h, 6); // window, checksum, urgent pointer
            }
            Kind::Udp => {
                h.extend(((8 + payload) as u16).to_be_bytes());
                h.extend(self.rng.u16().to_be_bytes());
            }
            Kind::UdpLite => {
                // Checksum coverage: the whole datagram (0) or the header alone (8).
                h.extend(self.rng.pick(&[0u16, 8]).to_be_bytes());
                h.extend(self.rng.u16().to_be_bytes());
            }
            Kind::Sctp => self.rng.extend(&mut h, 8), // verification tag, checksum
            Kind::Icmp | Kind::Other => {}
        }
        h
    }

    /// A valid frame of `fam` with a random kind.
    fn valid(&mut self, fam: Fam) -> Spec {
        let kind = self.rng.pick(&KINDS);
        self.valid_kind(fam, kind)
    }

    /// A valid frame: tags, addresses, options or a short chain now and then, a whole L4 header.
    fn valid_kind(&mut self, fam: Fam, kind: Kind) -> Spec {
        let tags = self.valid_tags();
        let payload = self.payload_len();
        let proto = self.proto(fam, kind);
        let l4 = self.l4_header(kind, payload);
        let mut spec = Spec {
            tags,
            ethertype: match fam {
                Fam::V4 => ETH_P_IPV4,
                Fam::V6 => ETH_P_IPV6,
            },
            fam,
            src: self.addr(fam),
            dst: self.addr(fam),
            proto,
            opt_words: 0,
            frag4: 0,
            ext: Vec::new(),
            l4,
            payload,
            trailer: Vec::new(),
        };
        match fam {
            Fam::V4 => {
                if self.rng.chance(3, 20) {
                    spec.opt_words = self.rng.range(1, 10);
                }
                // DF on most, as real stacks send.
                if self.rng.chance(3, 4) {
                    spec.frag4 = 0x4000;
                }
            }
            Fam::V6 => {
                if self.rng.chance(1, 4) {
                    spec.ext = self.valid_chain();
                }
            }
        }
        spec
    }

    /// 1 to 4 well-formed extension headers in RFC 8200 order, an atomic fragment at most.
    fn valid_chain(&mut self) -> Vec<Ext> {
        let mut chain = Vec::new();
        if self.rng.chance(1, 2) {
            chain.push(Ext::Opt {
                kind: HOPOPTS,
                units: self.rng.range(0, 2) as u8,
            });
        }
        for kind in [DSTOPTS, ROUTING, FRAGMENT, DSTOPTS] {
            if self.rng.chance(1, 3) {
                chain.push(if kind == FRAGMENT {
                    Ext::Frag {
                        offset: 0,
                        more: false,
                    }
                } else {
                    Ext::Opt {
                        kind,
                        units: self.rng.range(0, 2) as u8,
                    }
                });
            }
        }
        if chain.is_empty() {
            chain.push(Ext::Opt {
                kind: DSTOPTS,
                units: 0,
            });
        }
        chain
    }

    /// Writes a spec out; lengths and checksums as a sender would set them.
    fn build(&mut self, s: &Spec) -> Built {
        let ext_len = s.ext_len();
        let capacity =
            14 + 4 * s.tags.len() + 60 + ext_len + s.l4.len() + s.payload + s.trailer.len();
        let mut b = Vec::with_capacity(capacity);
        self.rng.extend(&mut b, 12); // MAC addresses
        for &(tpid, tci) in &s.tags {
            b.extend(tpid.to_be_bytes());
            b.extend(tci.to_be_bytes());
        }
        b.extend(s.ethertype.to_be_bytes());
        let l3 = b.len();
        let mut next_headers = Vec::with_capacity(1 + s.ext.len());
        let upper = s.l4.len() + s.payload;
        match s.fam {
            Fam::V4 => {
                let hlen = 20 + 4 * s.opt_words;
                b.extend([0x40 | (hlen / 4) as u8, self.rng.byte()]);
                b.extend(((hlen + upper) as u16).to_be_bytes());
                b.extend(self.rng.u16().to_be_bytes());
                b.extend(s.frag4.to_be_bytes());
                b.extend([self.rng.pick(&[1u8, 64, 128, 255]), s.proto, 0, 0]);
                next_headers.push(l3 + 9);
                b.extend(&s.src[..4]);
                b.extend(&s.dst[..4]);
                if s.opt_words > 0 {
                    let opts = 4 * s.opt_words;
                    if self.rng.chance(1, 2) {
                        // NOPs then end-of-list: well-formed options.
                        b.extend(std::iter::repeat_n(1u8, opts - 1));
                        b.push(0);
                    } else {
                        self.rng.extend(&mut b, opts);
                    }
                }
                let sum = checksum(&b[l3..l3 + hlen]);
                b[l3 + 10..l3 + 12].copy_from_slice(&sum.to_be_bytes());
            }
            Fam::V6 => {
                let flow = self.rng.next_u64() as u32 & 0x0fff_ffff;
                b.extend((0x6000_0000 | flow).to_be_bytes());
                b.extend(((ext_len + upper) as u16).to_be_bytes());
                let first = s.ext.first().map_or(s.proto, |e| e.kind());
                b.extend([first, self.rng.pick(&[1u8, 64, 255])]);
                next_headers.push(l3 + 6);
                b.extend(s.src);
                b.extend(s.dst);
                for (i, e) in s.ext.iter().enumerate() {
                    let next = s.ext.get(i + 1).map_or(s.proto, |n| n.kind());
                    next_headers.push(b.len());
                    match *e {
                        Ext::Opt { kind, units } => {
                            let len = (usize::from(units) + 1) * 8;
                            let start = b.len();
                            b.extend([next, units]);
                            // Options: all Pad1 (zero bytes). Routing: a type, segments left 0.
                            b.resize(start + len, 0);
                            if kind == ROUTING {
                                b[start + 2] = self.rng.pick(&[0u8, 2, 3, 4]);
                            }
                        }
                        Ext::Frag { offset, more } => {
                            b.extend([next, 0]);
                            b.extend((offset << 3 | u16::from(more)).to_be_bytes());
                            self.rng.extend(&mut b, 4);
                        }
                    }
                }
            }
        }
        b.extend(&s.l4);
        self.rng.extend(&mut b, s.payload);
        b.extend(&s.trailer);
        Built {
            bytes: b,
            l3,
            next_headers,
        }
    }

    /// Padding as NICs add it (zeros) or as a hostile sender would (random bytes).
    fn trailer(&mut self, n: usize) -> Vec<u8> {
        let mut t = Vec::with_capacity(n);
        if self.rng.chance(1, 2) {
            t.resize(n, 0);
        } else {
            self.rng.extend(&mut t, n);
        }
        t
    }

    // ---- the classes ---------------------------------------------------------------------------

    fn random_bytes(&mut self) -> Vec<u8> {
        let n = self.rng.range(MIN_FRAME, 200);
        let mut b = Vec::with_capacity(n);
        self.rng.extend(&mut b, n);
        if self.rng.chance(1, 2) {
            // Random bytes the parser has to look at: an IP or VLAN EtherType and, mostly, the
            // right version nibble.
            let et = self
                .rng
                .pick(&[ETH_P_IPV4, ETH_P_IPV6, ETH_P_8021Q, ETH_P_8021AD]);
            b[12..14].copy_from_slice(&et.to_be_bytes());
            let mut at = 14;
            if et == ETH_P_8021Q || et == ETH_P_8021AD {
                if b.len() >= 18 {
                    let inner = self.rng.pick(&[ETH_P_IPV4, ETH_P_IPV6]);
                    b[16..18].copy_from_slice(&inner.to_be_bytes());
                    at = 18;
                    if b.len() > at && self.rng.chance(4, 5) {
                        let v = if inner == ETH_P_IPV4 { 0x40 } else { 0x60 };
                        b[at] = v | (b[at] & 0x0f);
                    }
                }
            } else if b.len() > at && self.rng.chance(4, 5) {
                let v = if et == ETH_P_IPV4 { 0x40 } else { 0x60 };
                b[at] = v | (b[at] & 0x0f);
            }
        }
        b
    }

    fn minimum(&mut self) -> Vec<u8> {
        let mut b = Vec::with_capacity(MIN_FRAME);
        self.rng.extend(&mut b, 12);
        let random = self.rng.u16();
        let et = self.rng.pick(&[
            ETH_P_IPV4,
            ETH_P_IPV6,
            ETH_P_8021Q,
            ETH_P_8021AD,
            0x0806,
            random,
        ]);
        b.extend(et.to_be_bytes());
        b
    }

    fn ethertype(&mut self) -> Vec<u8> {
        let fam = self.fam();
        let spec = self.valid(fam);
        let mut built = self.build(&spec);
        let other_ip = match fam {
            Fam::V4 => ETH_P_IPV6,
            Fam::V6 => ETH_P_IPV4,
        };
        let random = self.rng.u16();
        let et = self.rng.pick(&[
            0x0806,
            0x88cc,
            0x8847,
            0x8864,
            0x9100,
            0x05dc,
            0x0000,
            0xffff,
            other_ip,
            other_ip,
            ETH_P_8021Q,
            ETH_P_8021AD,
            random,
        ]);
        let at = built.l3 - 2;
        built.bytes[at..at + 2].copy_from_slice(&et.to_be_bytes());
        built.bytes
    }

    fn vlan_depth(&mut self) -> Vec<u8> {
        let fam = self.fam();
        let mut spec = self.valid(fam);
        let depth = self.rng.range(0, 3);
        let tpids = if self.rng.chance(1, 5) {
            &[ETH_P_8021Q, ETH_P_8021AD, 0x9100][..]
        } else {
            &[ETH_P_8021Q, ETH_P_8021AD][..]
        };
        spec.tags = self.tags(depth, tpids);
        self.build(&spec).bytes
    }

    fn ip_version(&mut self) -> Vec<u8> {
        let fam = self.fam();
        let spec = self.valid(fam);
        let mut built = self.build(&spec);
        let own = match fam {
            Fam::V4 => 4,
            Fam::V6 => 6,
        };
        let version = if self.rng.chance(1, 3) {
            10 - own // the other IP version
        } else {
            loop {
                let v = self.rng.below(16) as u8;
                if v != own {
                    break v;
                }
            }
        };
        let b = &mut built.bytes[built.l3];
        *b = version << 4 | (*b & 0x0f);
        built.bytes
    }

    fn ihl(&mut self) -> Vec<u8> {
        let spec = self.valid(Fam::V4);
        let mut built = self.build(&spec);
        let b = &mut built.bytes[built.l3];
        *b = 0x40 | self.rng.below(16) as u8;
        built.bytes
    }

    /// A valid datagram of `fam` for a length field to lie about, followed half the time by a
    /// trailer (Ethernet padding) that a length reaching past the datagram would take in: its
    /// spec, and the frame.
    fn valid_maybe_trailed(&mut self, fam: Fam) -> (Spec, Built) {
        let mut spec = self.valid(fam);
        if self.rng.chance(1, 2) {
            let n = self.rng.range(1, 60);
            spec.trailer = self.trailer(n);
        }
        let built = self.build(&spec);
        (spec, built)
    }

    fn total_length(&mut self) -> Vec<u8> {
        let (spec, mut built) = self.valid_maybe_trailed(Fam::V4);
        let l3 = built.l3;
        let hlen = 20 + 4 * spec.opt_words;
        let exact = hlen + spec.l4.len() + spec.payload;
        let frame = built.bytes.len() - l3;
        let tot = match self.rng.below(10) {
            0 => 0,
            1 => self.rng.range(1, hlen - 1),
            2 => hlen,
            3 => exact - 1,
            4 => exact,
            5 => exact + 1,
            6 => frame,
            7 => frame + 1,
            8 => self.rng.range(hlen, frame),
            _ => self.rng.range(frame, 65535),
        };
        built.bytes[l3 + 2..l3 + 4].copy_from_slice(&(tot as u16).to_be_bytes());
        built.bytes
    }

    fn frag_offset(&mut self) -> u16 {
        match self.rng.below(6) {
            0 => 0,
            1 => 1,
            2 => 185,
            3 => 0x1fff,
            _ => self.rng.range(1, 0x1fff) as u16,
        }
    }

    fn fragment(&mut self) -> Vec<u8> {
        let fam = self.fam();
        let mut spec = self.valid(fam);
        let offset = self.frag_offset();
        match fam {
            Fam::V4 => {
                let flags = (self.rng.below(8) as u16) << 13;
                spec.frag4 = flags | offset;
            }
            Fam::V6 => {
                let at = self.rng.range(0, spec.ext.len());
                let more = self.rng.chance(1, 2);
                spec.ext.insert(at, Ext::Frag { offset, more });
            }
        }
        if offset != 0 && self.rng.chance(7, 10) {
            // A later fragment carries payload where the L4 header was: mostly no header at all.
            spec.l4.clear();
        } else if offset == 0 && self.rng.chance(1, 4) {
            // A first fragment too short for its L4 header (the tiny-fragment attack, RFC 1858).
            let cut = self.rng.range(0, spec.l4.len().saturating_sub(1));
            spec.l4.truncate(cut);
            spec.payload = 0;
        }
        self.build(&spec).bytes
    }

    fn payload_length(&mut self) -> Vec<u8> {
        let (spec, mut built) = self.valid_maybe_trailed(Fam::V6);
        let l3 = built.l3;
        let exact = built.bytes.len() - l3 - 40 - spec.trailer.len();
        let frame = built.bytes.len() - l3 - 40;
        let plen = match self.rng.below(9) {
            0 => 0,
            1 => self.rng.range(0, exact),
            2 => exact.saturating_sub(1),
            3 => exact,
            4 => exact + 1,
            5 => frame,
            6 => frame + 1,
            7 => self.rng.range(frame, 65535),
            _ => 65535,
        };
        built.bytes[l3 + 4..l3 + 6].copy_from_slice(&(plen as u16).to_be_bytes());
        built.bytes
    }

    fn ext_chain(&mut self) -> Vec<u8> {
        let mut spec = self.valid(Fam::V6);
        let n = self.rng.range(0, 10);
        spec.ext = (0..n)
            .map(|_| {
                let kind = self.rng.pick(&[HOPOPTS, ROUTING, FRAGMENT, DSTOPTS]);
                if kind == FRAGMENT {
                    let offset = if self.rng.chance(4, 5) {
                        0
                    } else {
                        self.frag_offset()
                    };
                    Ext::Frag {
                        offset,
                        more: self.rng.chance(1, 2),
                    }
                } else {
                    let units = match self.rng.below(20) {
                        0..=15 => self.rng.range(0, 3),
                        16..=18 => self.rng.range(4, 31),
                        _ => self.rng.range(0, 255),
                    } as u8;
                    Ext::Opt { kind, units }
                }
            })
            .collect();
        let mut built = self.build(&spec);
        if self.rng.chance(1, 4) {
            // A random Next Header somewhere in the chain: it ends early, or an upper-layer
            // header is read from extension-header bytes.
            let at = self.rng.pick(&built.next_headers);
            let random = self.rng.byte();
            built.bytes[at] = self.rng.pick(&[
                random, 59, 6, 17, 58, HOPOPTS, ROUTING, FRAGMENT, DSTOPTS, 51,
            ]);
        }
        built.bytes
    }

    fn protocol(&mut self) -> Vec<u8> {
        let fam = self.fam();
        let spec = self.valid(fam);
        let mut built = self.build(&spec);
        let at = *built.next_headers.last().expect("a protocol byte");
        let random = self.rng.byte();
        built.bytes[at] = self.rng.pick(&[
            random,
            random ^ 0x80,
            1,
            58,
            6,
            17,
            136,
            132,
            HOPOPTS,
            ROUTING,
            FRAGMENT,
            DSTOPTS,
            59,
            51,
            50,
            4,
            41,
            47,
        ]);
        built.bytes
    }

    fn l4_cut(&mut self) -> Vec<u8> {
        let fam = self.fam();
        let kind = self
            .rng
            .pick(&[Kind::Tcp, Kind::Udp, Kind::UdpLite, Kind::Sctp, Kind::Icmp]);
        let mut spec = self.valid_kind(fam, kind);
        let whole = spec.l4.clone();
        let cut = self.rng.range(0, whole.len());
        spec.l4.truncate(cut);
        spec.payload = 0;
        if self.rng.chance(7, 20) {
            // The rest of the header follows, outside the datagram: it must not be read.
            spec.trailer = whole[cut..].to_vec();
            let n = self.rng.range(0, 40);
            spec.trailer.extend(self.trailer(n));
        }
        self.build(&spec).bytes
    }

    fn padding(&mut self) -> Vec<u8> {
        let fam = self.fam();
        let mut spec = self.valid(fam);
        spec.payload = self.rng.range(0, 20);
        if let Some(len) = spec.l4.get_mut(4..6).filter(|_| spec.proto == 17) {
            // Keep UDP's own length true to the datagram.
            len.copy_from_slice(&((8 + spec.payload) as u16).to_be_bytes());
        }
        let len = 14
            + 4 * spec.tags.len()
            + match fam {
                Fam::V4 => 20 + 4 * spec.opt_words,
                Fam::V6 => 40 + spec.ext_len(),
            }
            + spec.l4.len()
            + spec.payload;
        let n = if len < 60 && self.rng.chance(1, 2) {
            60 - len
        } else {
            self.rng.range(1, 100)
        };
        spec.trailer = self.trailer(n);
        self.build(&spec).bytes
    }

    fn truncated(&mut self) -> Vec<u8> {
        let fam = self.fam();
        let spec = self.valid(fam);
        let mut b = self.build(&spec).bytes;
        let cut = self.rng.range(MIN_FRAME, b.len() - 1);
        b.truncate(cut);
        b
    }

    fn jumbo(&mut self) -> Vec<u8> {
        let fam = self.fam();
        let mut spec = self.valid(fam);
        let without_payload = self.build(&Spec {
            payload: 0,
            ..spec.clone()
        });
        let target = if self.rng.chance(1, 5) {
            MAX_FRAME
        } else {
            self.rng.range(1515, MAX_FRAME)
        };
        spec.payload = target - without_payload.bytes.len();
        if let Some(len) = spec.l4.get_mut(4..6).filter(|_| spec.proto == 17) {
            len.copy_from_slice(&((8 + spec.payload) as u16).to_be_bytes());
        }
        self.build(&spec).bytes
    }
}

impl Iterator for Generator {
    type Item = Frame;

    fn next(&mut self) -> Option<Frame> {
        Some(Generator::next(self))
    }
}

/// The Internet checksum (RFC 1071) of a header whose checksum field is zero.
fn checksum(header: &[u8]) -> u16 {
    let mut sum: u32 = header
        .chunks(2)
        .map(|c| u32::from(u16::from_be_bytes([c[0], *c.get(1).unwrap_or(&0)])))
        .sum();
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

#[cfg(test)]
mod tests {
    use super::super::reference::{classify, Bucket, Config, Family, KeyMode, Outcome, L4};
    use super::*;
    use std::collections::BTreeMap;
    use std::time::{Duration, Instant};

    #[test]
    fn rng_is_xoshiro256starstar_seeded_by_splitmix64() {
        // First outputs for seed 0, fixed so that every machine draws the same sequence.
        let mut r = Rng::new(0);
        let first: Vec<u64> = (0..3).map(|_| r.next_u64()).collect();
        let mut again = Rng::new(0);
        assert_eq!(first, (0..3).map(|_| again.next_u64()).collect::<Vec<_>>());
        // splitmix64(0) is the well-known 0xe220a8397b1dcdaf.
        assert_eq!(Rng::new(0).s[0], 0xe220_a839_7b1d_cdaf);
        for n in [1u64, 2, 3, 7, 1000] {
            assert!((0..1000).all(|_| r.below(n) < n));
        }
        assert!((0..1000).all(|_| {
            let x = r.range(14, 200);
            (14..=200).contains(&x)
        }));
    }

    /// FNV-1a over classes and bytes: a fingerprint of a sequence of frames.
    fn fingerprint(seed: u64, n: usize) -> u64 {
        let mut h: u64 = 0xcbf2_9ce4_8422_2325;
        let mut eat = |b: u8| {
            h ^= u64::from(b);
            h = h.wrapping_mul(0x0100_0000_01b3);
        };
        let mut g = Generator::new(seed);
        for _ in 0..n {
            let f = g.next();
            eat(f.class as u8);
            for &b in &f.bytes {
                eat(b);
            }
        }
        h
    }

    #[test]
    fn class_weights_add_up_to_a_thousand() {
        assert_eq!(Class::WEIGHTS.iter().sum::<u64>(), 1000);
        assert_eq!(Class::WEIGHTS.len(), Class::ALL.len());
    }

    #[test]
    fn one_seed_one_sequence() {
        let mut a = Generator::new(42);
        let mut b = Generator::new(42);
        for i in 0..10_000 {
            assert_eq!(a.next(), b.next(), "frame {i}");
        }
        let mut c = Generator::new(43);
        let mut a = Generator::new(42);
        let differ = (0..100).filter(|_| a.next() != c.next()).count();
        assert!(
            differ > 90,
            "seeds 42 and 43 share {} of 100 frames",
            100 - differ
        );
        // The Iterator face yields the same frames.
        let via_iter: Vec<Frame> = Generator::new(7).take(50).collect();
        let mut g = Generator::new(7);
        assert!(via_iter.iter().all(|f| *f == g.next()));
    }

    #[test]
    fn sequence_is_the_same_on_every_machine() {
        // Pinned: a change here means every recorded seed now names other frames.
        assert_eq!(fingerprint(1, 2000), fingerprint(1, 2000));
        assert_eq!(fingerprint(1, 2000), PINNED_FINGERPRINT);
    }

    const PINNED_FINGERPRINT: u64 = 0x83ef_58f7_eb31_3f81;

    #[test]
    fn sizes_are_within_bounds() {
        let mut g = Generator::new(5);
        let mut longest = BTreeMap::new();
        for _ in 0..200_000 {
            let f = g.next();
            let n = f.bytes.len();
            assert!((MIN_FRAME..=MAX_FRAME).contains(&n), "{} bytes", n);
            match f.class {
                Class::Minimum => assert_eq!(n, MIN_FRAME),
                Class::RandomBytes => assert!(n <= 200),
                Class::Jumbo => assert!(n >= 1515),
                _ => {}
            }
            let e = longest.entry(f.class).or_insert(0);
            *e = n.max(*e);
        }
        assert_eq!(longest[&Class::Jumbo], MAX_FRAME);
    }

    /// What a frame came to, finely enough to see that every rule is exercised.
    #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
    enum Seen {
        Counted4,
        Counted6,
        Fragment,
        Tcp,
        Udp,
        UdpLite,
        Sctp,
        Icmp,
        Icmpv6,
        Other,
        Vlan,
        NonIp,
        Malformed,
    }

    fn seen(outcome: &Outcome) -> Vec<Seen> {
        let key = match outcome {
            Outcome::NonIp => return vec![Seen::NonIp],
            Outcome::Malformed => return vec![Seen::Malformed],
            Outcome::Counted(k) => k,
        };
        let mut v = vec![match key.family {
            Family::V4 => Seen::Counted4,
            Family::V6 => Seen::Counted6,
        }];
        v.push(match (key.fragment, key.l4, key.proto) {
            (true, _, _) => Seen::Fragment,
            (false, L4::Ports { .. }, 6) => Seen::Tcp,
            (false, L4::Ports { .. }, 17) => Seen::Udp,
            (false, L4::Ports { .. }, 136) => Seen::UdpLite,
            (false, L4::Ports { .. }, _) => Seen::Sctp,
            (false, L4::Icmp { .. }, 1) => Seen::Icmp,
            (false, L4::Icmp { .. }, _) => Seen::Icmpv6,
            (false, L4::None, _) => Seen::Other,
        });
        if key.vlan.is_some_and(|v| v != 0) {
            v.push(Seen::Vlan);
        }
        v
    }

    #[test]
    fn a_million_frames_exercise_every_rule() {
        const N: usize = 1_000_000;
        let cfg = Config {
            mode: KeyMode::FiveTuple,
            vlan: true,
            prefix4: None,
            prefix6: None,
        };
        let mut g = Generator::new(0x6e65_746c_6564_6765);
        let mut classes: BTreeMap<Class, [usize; 3]> = BTreeMap::new();
        let mut outcomes: BTreeMap<Seen, usize> = BTreeMap::new();
        let mut bytes = 0usize;
        let started = Instant::now();
        for _ in 0..N {
            let f = g.next();
            let outcome = classify(&f.bytes, &cfg);
            bytes += f.bytes.len();
            classes.entry(f.class).or_default()[outcome.bucket() as usize] += 1;
            for s in seen(&outcome) {
                *outcomes.entry(s).or_default() += 1;
            }
        }
        let elapsed = started.elapsed();

        let pct = |n: usize| 100.0 * n as f64 / N as f64;
        println!("{N} frames, {bytes} bytes, generated and classified in {elapsed:.2?}");
        println!(
            "{:<15} {:>8} {:>7}   {:>8} {:>8} {:>9}",
            "class", "frames", "%", "counted", "non_ip", "malformed"
        );
        for (class, by_bucket) in &classes {
            let total: usize = by_bucket.iter().sum();
            println!(
                "{:<15} {:>8} {:>6.2}%   {:>8} {:>8} {:>9}",
                class.name(),
                total,
                pct(total),
                by_bucket[Bucket::Counted as usize],
                by_bucket[Bucket::NonIp as usize],
                by_bucket[Bucket::Malformed as usize],
            );
        }
        println!("{:<15} {:>8} {:>7}", "outcome", "frames", "%");
        for (s, n) in &outcomes {
            println!("{:<15} {:>8} {:>6.2}%", format!("{s:?}"), n, pct(*n));
        }

        for class in Class::ALL {
            let n: usize = classes.get(&class).map_or(0, |b| b.iter().sum());
            assert!(pct(n) >= 1.0, "class {class} is {:.2}%", pct(n));
        }
        for s in [
            Seen::Counted4,
            Seen::Counted6,
            Seen::Fragment,
            Seen::Tcp,
            Seen::Udp,
            Seen::UdpLite,
            Seen::Sctp,
            Seen::Icmp,
            Seen::Icmpv6,
            Seen::Other,
            Seen::Vlan,
            Seen::NonIp,
            Seen::Malformed,
        ] {
            let n = outcomes.get(&s).copied().unwrap_or(0);
            assert!(pct(n) >= 1.0, "outcome {s:?} is {:.2}%", pct(n));
        }
        // A class that mutates one field must land in more than one bucket, or it tests only one
        // side of its rules (a wrong IP version is always malformed: rule 6 has one side).
        for class in [
            Class::EtherType,
            Class::VlanDepth,
            Class::Ihl,
            Class::TotalLength,
            Class::Fragment,
            Class::PayloadLength,
            Class::ExtChain,
            Class::Protocol,
            Class::L4Cut,
        ] {
            let spread = classes[&class].iter().filter(|&&n| n > 0).count();
            assert!(spread >= 2, "class {class} lands in one bucket only");
        }
        if !cfg!(debug_assertions) {
            assert!(elapsed.as_secs_f64() < 10.0, "took {elapsed:?}");
        }
    }

    #[test]
    fn generation_and_classification_are_fast() {
        const N: usize = 1_000_000;
        const BATCH: usize = 10_000;
        let mut g = Generator::new(3);
        let modes: Vec<Config> = KeyMode::ALL
            .iter()
            .map(|&mode| Config {
                mode,
                vlan: true,
                prefix4: Some(24),
                prefix6: Some(64),
            })
            .collect();
        let (mut generating, mut classifying) = (Duration::ZERO, Duration::ZERO);
        let mut counted = 0usize;
        for _ in 0..N / BATCH {
            let t = Instant::now();
            let batch: Vec<Frame> = (0..BATCH).map(|_| g.next()).collect();
            generating += t.elapsed();
            // Each frame under one of the four modes: every shaping path is timed.
            let t = Instant::now();
            for (i, f) in batch.iter().enumerate() {
                let outcome = classify(&f.bytes, &modes[i % modes.len()]);
                counted += usize::from(outcome.bucket() == Bucket::Counted);
            }
            classifying += t.elapsed();
        }
        let per = |d: Duration| d.as_nanos() as f64 / N as f64;
        println!(
            "{N} frames: generating {generating:.2?} ({:.0} ns/frame), classifying \
             {classifying:.2?} ({:.0} ns/frame); {counted} counted",
            per(generating),
            per(classifying),
        );
        if !cfg!(debug_assertions) {
            assert!((generating + classifying).as_secs_f64() < 10.0);
        }
    }

    /// What etherparse reads of an L4 header, as a key holds it: TCP and UDP
    /// ports, ICMP and ICMPv6 type and code; None for a header a key has no
    /// fields of (IGMP).
    fn etherparse_l4(t: &etherparse::TransportSlice<'_>) -> Option<L4> {
        use etherparse::TransportSlice;
        match t {
            TransportSlice::Tcp(t) => Some(L4::Ports {
                sport: t.source_port(),
                dport: t.destination_port(),
            }),
            TransportSlice::Udp(u) => Some(L4::Ports {
                sport: u.source_port(),
                dport: u.destination_port(),
            }),
            TransportSlice::Icmpv4(i) => Some(L4::Icmp {
                icmp_type: i.type_u8(),
                icmp_code: i.code_u8(),
            }),
            TransportSlice::Icmpv6(i) => Some(L4::Icmp {
                icmp_type: i.type_u8(),
                icmp_code: i.code_u8(),
            }),
            TransportSlice::Igmp(_) => None,
        }
    }

    #[test]
    fn valid_frames_are_ones_etherparse_agrees_with() {
        use etherparse::{LinkExtSlice, NetSlice, SlicedPacket};
        let cfg = Config {
            vlan: true,
            ..Config::default()
        };
        let mut g = Generator::new(99);
        let (mut checked, mut with_ports) = (0, 0);
        while checked < 20_000 {
            let f = g.next();
            if !matches!(f.class, Class::Valid | Class::Padding | Class::Jumbo) {
                continue;
            }
            checked += 1;
            let key = match classify(&f.bytes, &cfg) {
                Outcome::Counted(k) => k,
                other => panic!("{} frame {:02x?}: {other:?}", f.class, f.bytes),
            };
            let p = match SlicedPacket::from_ethernet(&f.bytes) {
                Ok(p) => p,
                // etherparse reads more than netledger does (an authentication header, ICMP of
                // the other family): such a protocol's payload is random here and may not parse.
                Err(_) if key.l4 == L4::None => continue,
                Err(e) => panic!("{} frame {:02x?}: {e:?}", f.class, f.bytes),
            };
            let vlan = match p.link_exts.first() {
                Some(LinkExtSlice::Vlan(v)) => v.vlan_identifier().value(),
                _ => 0,
            };
            assert_eq!(key.vlan, Some(vlan));
            match p.net {
                Some(NetSlice::Ipv4(ip)) => {
                    assert_eq!(key.family, Family::V4);
                    assert_eq!(key.src[..4], ip.header().source());
                    assert_eq!(key.dst[..4], ip.header().destination());
                    assert_eq!(key.proto, ip.header().protocol().0);
                }
                Some(NetSlice::Ipv6(ip)) => {
                    assert_eq!(key.family, Family::V6);
                    assert_eq!(key.src, ip.header().source());
                    assert_eq!(key.dst, ip.header().destination());
                }
                other => panic!("not IP: {other:?}"),
            }
            match (&p.transport, key.l4) {
                // Another protocol to netledger (e.g. ICMP of the other family): not compared.
                (_, L4::None) => {}
                // etherparse does not read UDP-Lite or SCTP, and reads no ports of a first
                // fragment: nothing to compare.
                (None, _) => {}
                (Some(t), l4) => {
                    assert_eq!(etherparse_l4(t), Some(l4), "etherparse {t:?} vs {l4:?}");
                    with_ports += 1;
                }
            }
        }
        assert!(with_ports > 8_000, "only {with_ports} L4 headers compared");
    }
}
