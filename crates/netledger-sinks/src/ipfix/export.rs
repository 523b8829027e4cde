//! Sending IPFIX messages to collectors over UDP and TCP.
//!
//! Every collector is an independent stream with its own sequence number and
//! its own record of which templates it has been sent:
//!
//! * UDP: templates (data and options) go out before the first record that
//!   needs them and again, all of them, every
//!   [`ExporterConfig::template_refresh`], because a collector that starts
//!   late, or lost a datagram, has no other way to learn them.
//! * TCP: templates go out once per connection, first thing after every
//!   (re)connect. A collector that refuses, drops or stalls the connection
//!   is retried with exponential backoff ([`ExporterConfig::backoff_initial`]
//!   doubling up to [`ExporterConfig::backoff_max`]); the first retry after
//!   a connection is lost is immediate. Connects and writes have short
//!   timeouts, so a collector that is down or stops reading never holds an
//!   export call for long (one that reads slowly is waited for).
//!
//! Records that cannot be delivered (collector down, send error) are dropped
//! and counted per collector: export never waits for a collector and never
//! queues unboundedly. When one message of a call fails to go out, the rest
//! of that call's messages for the collector are dropped too, since they may
//! need the templates the failed message carried. Records written to a TCP
//! socket count as sent even if the connection breaks before the collector
//! reads them.

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::io::{self, Read, Write};
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, TcpStream, ToSocketAddrs, UdpSocket};
use std::ops::Range;
use std::str::FromStr;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use super::message::{
    DomainStream, MessagePacker, PackedMessage, TemplateRecord, MAX_MESSAGE_LEN,
    MESSAGE_HEADER_LEN, SET_HEADER_LEN,
};
use super::template::{
    encode_buckets, encode_flow, largest_items, BucketCount, BucketsRecord, Direction, FlowRecord,
    FlowShape, TemplateKey, TemplateRegistry, DEFAULT_ENTERPRISE_NUMBER,
};
use super::IpfixError;

/// Transport protocol towards a collector.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Transport {
    /// One message per datagram; templates refreshed periodically.
    Udp,
    /// A byte stream of messages; templates once per connection.
    Tcp,
}

/// A collector address, written `udp://HOST:PORT` or `tcp://HOST:PORT`
/// (IPv6 literals in brackets: `udp://[::1]:4739`).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct CollectorUrl {
    transport: Transport,
    host: String,
    port: u16,
}

impl CollectorUrl {
    /// Parses a collector URL.
    pub fn parse(url: &str) -> Result<Self, IpfixError> {
        let malformed = |reason| IpfixError::MalformedUrl {
            url: url.to_string(),
            reason,
        };
        let (scheme, rest) =
            url.split_once("://")
                .ok_or_else(|| IpfixError::UnsupportedScheme {
                    url: url.to_string(),
                })?;
        let transport = if scheme.eq_ignore_ascii_case("udp") {
            Transport::Udp
        } else if scheme.eq_ignore_ascii_case("tcp") {
            Transport::Tcp
        } else {
            return Err(IpfixError::UnsupportedScheme {
                url: url.to_string(),
            });
        };
        if rest.contains(['/', '?', '#', '@']) {
            return Err(malformed("only HOST:PORT may follow the scheme"));
        }
        let (host, port) = if let Some(bracketed) = rest.strip_prefix('[') {
            let (host, after) = bracketed
                .split_once(']')
                .ok_or_else(|| malformed("unclosed '[' around an IPv6 address"))?;
            let port = after
                .strip_prefix(':')
                .ok_or_else(|| malformed("missing :PORT after the address"))?;
            if host.parse::<Ipv6Addr>().is_err() {
                return Err(malformed("brackets must hold an IPv6 address"));
            }
            (host, port)
        } else {
            let (host, port) = rest
                .rsplit_once(':')
                .ok_or_else(|| malformed("missing :PORT"))?;
            if host.contains(':') {
                return Err(malformed("IPv6 addresses must be written in brackets"));
            }
            (host, port)
        };
        if host.is_empty() {
            return Err(malformed("missing host"));
        }
        let port = match port.parse::<u16>() {
            Ok(p) if p != 0 => p,
            _ => return Err(malformed("port must be a number from 1 to 65535")),
        };
        Ok(Self {
            transport,
            host: host.to_string(),
            port,
        })
    }

    /// The transport protocol.
    pub fn transport(&self) -> Transport {
        self.transport
    }

    /// The host name or address, without brackets.
    pub fn host(&self) -> &str {
        &self.host
    }

    /// The port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The first socket address the host resolves to.
    pub fn resolve(&self) -> Result<SocketAddr, IpfixError> {
        let mut addrs = (self.host.as_str(), self.port)
            .to_socket_addrs()
            .map_err(|source| IpfixError::Resolve {
                url: self.to_string(),
                source,
            })?;
        addrs.next().ok_or_else(|| IpfixError::Resolve {
            url: self.to_string(),
            source: io::Error::new(io::ErrorKind::NotFound, "no address for host"),
        })
    }
}

impl FromStr for CollectorUrl {
    type Err = IpfixError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

impl fmt::Display for CollectorUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let scheme = match self.transport {
            Transport::Udp => "udp",
            Transport::Tcp => "tcp",
        };
        if self.host.contains(':') {
            write!(f, "{scheme}://[{}]:{}", self.host, self.port)
        } else {
            write!(f, "{scheme}://{}:{}", self.host, self.port)
        }
    }
}

/// Settings of an [`Exporter`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExporterConfig {
    /// Collector URLs (`udp://HOST:PORT`, `tcp://HOST:PORT`); at least one.
    pub collectors: Vec<String>,
    /// Observation domain id in every message header.
    pub observation_domain_id: u32,
    /// Largest message in bytes, header included (the UDP payload size).
    pub mtu: usize,
    /// How often all templates are re-sent to UDP collectors.
    pub template_refresh: Duration,
    /// Private Enterprise Number of the bucket IEs.
    pub enterprise_number: u32,
    /// Longest wait for a TCP connection to be established.
    pub connect_timeout: Duration,
    /// Longest wait for one TCP write before the connection is given up.
    pub write_timeout: Duration,
    /// Wait after the first failed TCP connect; doubles with each failure.
    pub backoff_initial: Duration,
    /// Upper bound of the TCP reconnect wait.
    pub backoff_max: Duration,
}

impl Default for ExporterConfig {
    fn default() -> Self {
        Self {
            collectors: Vec::new(),
            observation_domain_id: 0,
            mtu: 1400,
            template_refresh: Duration::from_secs(60),
            enterprise_number: DEFAULT_ENTERPRISE_NUMBER,
            connect_timeout: Duration::from_millis(200),
            write_timeout: Duration::from_millis(200),
            backoff_initial: Duration::from_secs(1),
            backoff_max: Duration::from_secs(60),
        }
    }
}

/// Outcome of one [`Exporter::export_at`] call.
///
/// Record counts are per delivery: a record sent to two collectors counts
/// twice in `sent_records`.
#[derive(Debug, Default)]
pub struct ExportReport {
    /// Records handed to a collector's socket.
    pub sent_records: u64,
    /// Records not delivered to a collector (down, backing off, send error).
    pub dropped_records: u64,
    /// Invalid records, sent to no collector.
    pub rejected_records: u64,
    /// What went wrong, one entry per event.
    pub errors: Vec<IpfixError>,
}

/// Counters and state of one collector.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CollectorStats {
    /// The collector.
    pub url: CollectorUrl,
    /// Whether records can currently be sent (always true for UDP).
    pub connected: bool,
    /// Records sent since the exporter was created.
    pub sent_records: u64,
    /// Records dropped since the exporter was created.
    pub dropped_records: u64,
    /// Sequence number of the next message on the current stream.
    pub next_sequence: u32,
}

/// Exports flow and buckets records to one or more collectors for one
/// observation domain.
#[derive(Debug)]
pub struct Exporter {
    settings: Settings,
    registry: TemplateRegistry,
    /// Running `ignored*TotalCount` per buckets scope (direction, ifindex).
    ignored_totals: HashMap<(Direction, u32), BucketCount>,
    collectors: Vec<Collector>,
}

/// The parts of the configuration the collectors need.
#[derive(Debug, Clone, Copy)]
struct Settings {
    mtu: usize,
    template_refresh: Duration,
    connect_timeout: Duration,
    write_timeout: Duration,
    backoff_initial: Duration,
    backoff_max: Duration,
}

/// Encoded data records of one export call, shared by all collectors.
#[derive(Debug, Default)]
struct Batch {
    bytes: Vec<u8>,
    records: Vec<(u16, Range<usize>)>,
}

impl Exporter {
    /// An exporter for `config`: parses and resolves the collectors and
    /// opens the UDP sockets. TCP connections are opened by the first export.
    pub fn new(config: ExporterConfig) -> Result<Self, IpfixError> {
        if config.collectors.is_empty() {
            return Err(IpfixError::NoCollectors);
        }
        let (template, record) = largest_items(config.enterprise_number);
        let min = MESSAGE_HEADER_LEN + SET_HEADER_LEN + template.max(record);
        if !(min..=MAX_MESSAGE_LEN).contains(&config.mtu) {
            return Err(IpfixError::MtuOutOfRange {
                mtu: config.mtu,
                min,
                max: MAX_MESSAGE_LEN,
            });
        }
        let settings = Settings {
            mtu: config.mtu,
            template_refresh: config.template_refresh,
            // Zero timeouts are refused by the socket layer; keep them positive.
            connect_timeout: config.connect_timeout.max(Duration::from_millis(1)),
            write_timeout: config.write_timeout.max(Duration::from_millis(1)),
            backoff_initial: config.backoff_initial,
            backoff_max: config.backoff_max.max(config.backoff_initial),
        };
        let collectors = config
            .collectors
            .iter()
            .map(|u| {
                let url = CollectorUrl::parse(u)?;
                Collector::new(url, config.observation_domain_id, settings.backoff_initial)
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Self {
            settings,
            registry: TemplateRegistry::new(config.enterprise_number),
            ignored_totals: HashMap::new(),
            collectors,
        })
    }

    /// Exports `flows` then `buckets` now, by the system clocks.
    pub fn export(&mut self, flows: &[FlowRecord], buckets: &[BucketsRecord]) -> ExportReport {
        self.export_at(Instant::now(), SystemTime::now(), flows, buckets)
    }

    /// Exports `flows` then `buckets` to every collector.
    ///
    /// `now` drives template refresh and reconnect backoff; `wall` gives the
    /// messages' export time. Invalid records are refused (reported, sent to
    /// nobody); the rest go out in the order given. Never panics. A TCP
    /// collector costs at most one connect timeout when it is down, and one
    /// write timeout when it stops reading (its connection is then dropped);
    /// one that keeps reading, however slowly, is waited for.
    pub fn export_at(
        &mut self,
        now: Instant,
        wall: SystemTime,
        flows: &[FlowRecord],
        buckets: &[BucketsRecord],
    ) -> ExportReport {
        let mut report = ExportReport::default();
        let batch = self.encode(flows, buckets, &mut report);
        let export_time = unix_seconds(wall);
        for c in &mut self.collectors {
            c.deliver(
                now,
                export_time,
                &self.registry,
                &batch,
                &self.settings,
                &mut report,
            );
        }
        report
    }

    /// Records dropped for collector `index` (position in the
    /// configuration) since the exporter was created.
    pub fn dropped_total(&self, index: usize) -> Option<u64> {
        self.collectors.get(index).map(|c| c.dropped)
    }

    /// Records sent to collector `index` since the exporter was created.
    pub fn sent_total(&self, index: usize) -> Option<u64> {
        self.collectors.get(index).map(|c| c.sent)
    }

    /// State and counters of every collector, in configuration order.
    pub fn collector_stats(&self) -> Vec<CollectorStats> {
        self.collectors
            .iter()
            .map(|c| CollectorStats {
                url: c.url.clone(),
                connected: match &c.link {
                    Link::Udp { .. } => true,
                    Link::Tcp(t) => t.conn.is_some(),
                },
                sent_records: c.sent,
                dropped_records: c.dropped,
                next_sequence: c.stream.next_sequence(),
            })
            .collect()
    }

    /// The templates created so far, in id order.
    pub fn templates(&self) -> &[TemplateRecord] {
        self.registry.templates()
    }

    fn encode(
        &mut self,
        flows: &[FlowRecord],
        buckets: &[BucketsRecord],
        report: &mut ExportReport,
    ) -> Batch {
        let mut batch = Batch::default();
        for (index, f) in flows.iter().enumerate() {
            let template = FlowShape::of(f)
                .map_err(|problem| IpfixError::InvalidFlow { index, problem })
                .and_then(|shape| {
                    self.registry
                        .get_or_create(TemplateKey::Flow(shape))
                        .map(|t| t.id())
                });
            match template {
                Ok(id) => {
                    let start = batch.bytes.len();
                    encode_flow(f, &mut batch.bytes);
                    batch.records.push((id, start..batch.bytes.len()));
                }
                Err(e) => {
                    report.rejected_records += 1;
                    report.errors.push(e);
                }
            }
        }
        for (index, b) in buckets.iter().enumerate() {
            let template = b
                .validate()
                .map_err(|problem| IpfixError::InvalidBuckets { index, problem })
                .and_then(|()| {
                    self.registry
                        .get_or_create(TemplateKey::Buckets(b.direction))
                        .map(|t| t.id())
                });
            match template {
                Ok(id) => {
                    let total = self
                        .ignored_totals
                        .entry((b.direction, b.ifindex))
                        .or_default();
                    *total = total.wrapping_add(b.ignored());
                    let start = batch.bytes.len();
                    encode_buckets(b, *total, &mut batch.bytes);
                    batch.records.push((id, start..batch.bytes.len()));
                }
                Err(e) => {
                    report.rejected_records += 1;
                    report.errors.push(e);
                }
            }
        }
        batch
    }
}

/// Seconds since the Unix epoch, modulo 2^32 as the header field wraps.
fn unix_seconds(wall: SystemTime) -> u32 {
    let secs = wall
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    u32::try_from(secs % (1u64 << 32)).unwrap_or(0)
}

#[derive(Debug)]
struct Collector {
    url: CollectorUrl,
    name: String,
    addr: SocketAddr,
    link: Link,
    stream: DomainStream,
    /// Template ids sent on this stream: on UDP ever (losses are covered by
    /// the periodic refresh), on TCP on the current connection.
    announced: HashSet<u16>,
    sent: u64,
    dropped: u64,
}

#[derive(Debug)]
enum Link {
    Udp {
        socket: UdpSocket,
        last_refresh: Option<Instant>,
    },
    Tcp(TcpLink),
}

#[derive(Debug)]
struct TcpLink {
    conn: Option<TcpStream>,
    /// Time of the last failed connect and the wait it imposes; `None`
    /// allows an attempt right away. Kept as a pair rather than a deadline
    /// so that no Instant arithmetic can overflow.
    retry_after: Option<(Instant, Duration)>,
    /// Wait after the next failed attempt.
    backoff: Duration,
}

impl Collector {
    fn new(
        url: CollectorUrl,
        observation_domain_id: u32,
        backoff_initial: Duration,
    ) -> Result<Self, IpfixError> {
        let addr = url.resolve()?;
        let name = url.to_string();
        let link = match url.transport() {
            Transport::Udp => {
                // An unconnected socket: a stale ICMP error from a collector
                // that was down must not fail the send of a later datagram.
                let local: SocketAddr = if addr.is_ipv4() {
                    (Ipv4Addr::UNSPECIFIED, 0).into()
                } else {
                    (Ipv6Addr::UNSPECIFIED, 0).into()
                };
                let socket = UdpSocket::bind(local).map_err(|source| IpfixError::Socket {
                    collector: name.clone(),
                    source,
                })?;
                Link::Udp {
                    socket,
                    last_refresh: None,
                }
            }
            Transport::Tcp => Link::Tcp(TcpLink {
                conn: None,
                retry_after: None,
                backoff: backoff_initial,
            }),
        };
        Ok(Self {
            url,
            name,
            addr,
            link,
            stream: DomainStream::new(observation_domain_id),
            announced: HashSet::new(),
            sent: 0,
            dropped: 0,
        })
    }

    fn drop_records(&mut self, n: u64, report: &mut ExportReport) {
        self.dropped += n;
        report.dropped_records += n;
    }

    fn deliver(
        &mut self,
        now: Instant,
        export_time: u32,
        registry: &TemplateRegistry,
        batch: &Batch,
        settings: &Settings,
        report: &mut ExportReport,
    ) {
        let records = batch.records.len() as u64;
        let full_refresh = match &mut self.link {
            Link::Udp { last_refresh, .. } => match last_refresh {
                None => true,
                Some(t) => now.saturating_duration_since(*t) >= settings.template_refresh,
            },
            Link::Tcp(tcp) => {
                if let Some(source) = tcp.check_alive() {
                    report.errors.push(IpfixError::ConnectionLost {
                        collector: self.name.clone(),
                        source,
                    });
                }
                if tcp.conn.is_none() && tcp.due(now) {
                    match tcp.connect(self.addr, now, settings) {
                        Ok(()) => {
                            // A new connection is a new transport session.
                            self.stream.reset();
                            self.announced.clear();
                        }
                        Err((source, retry_in)) => report.errors.push(IpfixError::Connect {
                            collector: self.name.clone(),
                            retry_in,
                            source,
                        }),
                    }
                }
                if tcp.conn.is_none() {
                    self.drop_records(records, report);
                    return;
                }
                false
            }
        };

        let messages = match self.pack(registry, batch, settings.mtu, full_refresh) {
            Ok(m) => m,
            Err(e) => {
                report.errors.push(e);
                self.drop_records(records, report);
                return;
            }
        };

        let mut remaining = records;
        for m in &messages {
            let bytes = self.stream.seal(m, export_time);
            if let Err(source) = self.link.send(&bytes, self.addr) {
                if let Link::Tcp(tcp) = &mut self.link {
                    // A partly written message leaves the stream unusable.
                    tcp.conn = None;
                    tcp.retry_after = None;
                }
                report.errors.push(IpfixError::Send {
                    collector: self.name.clone(),
                    dropped: remaining,
                    source,
                });
                self.drop_records(remaining, report);
                return;
            }
            self.stream.mark_sent(m);
            self.announced.extend(m.template_ids());
            let n = u64::from(m.data_records());
            self.sent += n;
            report.sent_records += n;
            remaining -= n.min(remaining);
        }
        if full_refresh {
            if let Link::Udp { last_refresh, .. } = &mut self.link {
                *last_refresh = Some(now);
            }
        }
    }

    /// Templates this stream needs (all on a refresh), then the records.
    fn pack(
        &self,
        registry: &TemplateRegistry,
        batch: &Batch,
        mtu: usize,
        full_refresh: bool,
    ) -> Result<Vec<PackedMessage>, IpfixError> {
        let mut packer = MessagePacker::new(mtu)?;
        let needed: Vec<_> = registry
            .templates()
            .iter()
            .filter(|t| full_refresh || !self.announced.contains(&t.id()))
            .collect();
        // Data templates first, then options templates: two sets at most.
        for t in needed.iter().filter(|t| !t.is_options()) {
            packer.push_template(t)?;
        }
        for t in needed.iter().filter(|t| t.is_options()) {
            packer.push_template(t)?;
        }
        for (id, range) in &batch.records {
            let t = registry.get(*id).ok_or(IpfixError::InvalidTemplate {
                template_id: *id,
                reason: "unknown template id",
            })?;
            let record = batch.bytes.get(range.clone()).unwrap_or_default();
            packer.push_data(t, record)?;
        }
        Ok(packer.finish())
    }
}

impl Link {
    fn send(&mut self, bytes: &[u8], addr: SocketAddr) -> io::Result<()> {
        match self {
            Link::Udp { socket, .. } => {
                let n = socket.send_to(bytes, addr)?;
                if n != bytes.len() {
                    return Err(io::Error::new(
                        io::ErrorKind::WriteZero,
                        "datagram truncated by the socket",
                    ));
                }
                Ok(())
            }
            Link::Tcp(tcp) => match &mut tcp.conn {
                Some(conn) => conn.write_all(bytes),
                None => Err(io::Error::new(io::ErrorKind::NotConnected, "not connected")),
            },
        }
    }
}

impl TcpLink {
    fn due(&self, now: Instant) -> bool {
        self.retry_after
            .is_none_or(|(failed, wait)| now.saturating_duration_since(failed) >= wait)
    }

    /// Opens the connection, or schedules the next attempt and returns the
    /// error with the wait before that attempt.
    fn connect(
        &mut self,
        addr: SocketAddr,
        now: Instant,
        settings: &Settings,
    ) -> Result<(), (io::Error, Duration)> {
        let opened = TcpStream::connect_timeout(&addr, settings.connect_timeout).and_then(|s| {
            s.set_write_timeout(Some(settings.write_timeout))?;
            // Messages are complete units; send each without delay.
            s.set_nodelay(true)?;
            Ok(s)
        });
        match opened {
            Ok(s) => {
                self.conn = Some(s);
                self.retry_after = None;
                self.backoff = settings.backoff_initial;
                Ok(())
            }
            Err(e) => {
                let wait = self.backoff;
                self.retry_after = Some((now, wait));
                self.backoff = wait.saturating_mul(2).min(settings.backoff_max);
                Err((e, wait))
            }
        }
    }

    /// Closes the connection if the collector has closed or broken it, and
    /// says why. Collectors send nothing, so readable means closed; any
    /// bytes they do send are discarded.
    fn check_alive(&mut self) -> Option<io::Error> {
        let conn = self.conn.as_mut()?;
        let outcome = conn.set_nonblocking(true).and_then(|()| {
            let mut buf = [0u8; 1024];
            // Bounded, so a chatty peer cannot keep the caller here.
            for _ in 0..64 {
                match conn.read(&mut buf) {
                    Ok(0) => {
                        return Err(io::Error::new(
                            io::ErrorKind::UnexpectedEof,
                            "collector closed the connection",
                        ))
                    }
                    Ok(_) => continue,
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(()),
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                    Err(e) => return Err(e),
                }
            }
            Ok(())
        });
        let outcome = outcome.and_then(|()| conn.set_nonblocking(false));
        match outcome {
            Ok(()) => None,
            Err(e) => {
                self.conn = None;
                // Lost after working: try again right away, back off after.
                self.retry_after = None;
                Some(e)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::message::{OPTIONS_TEMPLATE_SET_ID, TEMPLATE_SET_ID};
    use super::super::template::ie;
    use super::super::testdecode::{decode_stream, uint, DecodedMessage, SetKind, StreamDecoder};
    use super::*;
    use std::net::{IpAddr, TcpListener};

    fn flow(i: u32) -> FlowRecord {
        FlowRecord {
            src: Some(IpAddr::V4(Ipv4Addr::from(0x0A00_0000 + i))),
            dst: Some(IpAddr::V4(Ipv4Addr::new(192, 0, 2, 1))),
            proto: Some(17),
            ports: Some((10_000 + i as u16, 53)),
            icmp: None,
            vlan: None,
            direction: Direction::In,
            ifindex: 2,
            start_ms: 1_000,
            end_ms: 2_000,
            packets: u64::from(i) + 1,
            ip_octets: 100,
            l2_octets: 114,
            end_reason: 2,
        }
    }

    fn flow_v6(i: u32) -> FlowRecord {
        FlowRecord {
            src: Some(IpAddr::V6(Ipv6Addr::new(
                0x2001, 0xdb8, 0, 0, 0, 0, 0, i as u16,
            ))),
            dst: Some(IpAddr::V6(Ipv6Addr::LOCALHOST)),
            direction: Direction::Out,
            ..flow(i)
        }
    }

    fn count(p: u64) -> BucketCount {
        BucketCount {
            packets: p,
            octets: p * 100,
        }
    }

    fn buckets(ifindex: u32, loss: u64) -> BucketsRecord {
        BucketsRecord {
            direction: Direction::In,
            ifindex,
            start_ms: 1_000,
            end_ms: 2_000,
            seen: count(100),
            counted: count(100 - 4 * loss),
            non_ip: count(loss),
            malformed: count(loss),
            map_full: count(loss),
            evict_race: count(loss),
        }
    }

    fn udp_receiver() -> (UdpSocket, String) {
        let s = UdpSocket::bind("127.0.0.1:0").expect("bind");
        s.set_read_timeout(Some(Duration::from_secs(2)))
            .expect("timeout");
        let url = format!("udp://127.0.0.1:{}", s.local_addr().expect("addr").port());
        (s, url)
    }

    fn config(url: &str) -> ExporterConfig {
        ExporterConfig {
            collectors: vec![url.to_string()],
            observation_domain_id: 42,
            ..ExporterConfig::default()
        }
    }

    /// Reads every datagram already queued (the exporter has sent before).
    fn drain(s: &UdpSocket) -> Vec<Vec<u8>> {
        let mut out = Vec::new();
        let mut buf = vec![0u8; 70_000];
        s.set_nonblocking(true).expect("nonblocking");
        while let Ok(n) = s.recv(&mut buf) {
            out.push(buf[..n].to_vec());
        }
        s.set_nonblocking(false).expect("blocking");
        out
    }

    fn template_sets(msgs: &[DecodedMessage]) -> Vec<Vec<u16>> {
        msgs.iter()
            .flat_map(|m| m.sets.iter())
            .filter_map(|s| match &s.kind {
                SetKind::Templates(ts) => Some(ts.iter().map(|t| t.id).collect()),
                SetKind::Data { .. } => None,
            })
            .collect()
    }

    #[test]
    fn url_parsing() {
        let u = CollectorUrl::parse("udp://127.0.0.1:4739").expect("ok");
        assert_eq!(
            (u.transport(), u.host(), u.port()),
            (Transport::Udp, "127.0.0.1", 4739)
        );
        let u = CollectorUrl::parse("TCP://[::1]:9995").expect("ok");
        assert_eq!(
            (u.transport(), u.host(), u.port()),
            (Transport::Tcp, "::1", 9995)
        );
        assert_eq!(u.to_string(), "tcp://[::1]:9995");
        let u: CollectorUrl = "tcp://collector.example:4739".parse().expect("ok");
        assert_eq!(u.host(), "collector.example");

        let scheme = |s: &str| {
            matches!(
                CollectorUrl::parse(s),
                Err(IpfixError::UnsupportedScheme { .. })
            )
        };
        assert!(scheme("127.0.0.1:4739"));
        assert!(scheme("http://127.0.0.1:4739"));
        assert!(scheme("sctp://127.0.0.1:4739"));
        for bad in [
            "udp://127.0.0.1",
            "udp://:4739",
            "udp://host:0",
            "udp://host:70000",
            "udp://host:12ab",
            "udp://host:",
            "udp://::1:4739",
            "udp://[::1]4739",
            "udp://[::1:4739",
            "udp://[host]:4739",
            "udp://host:4739/path",
            "udp://user@host:4739",
            "udp://",
        ] {
            let err = CollectorUrl::parse(bad).expect_err(bad);
            assert!(
                matches!(err, IpfixError::MalformedUrl { .. }),
                "{bad}: {err}"
            );
            assert!(err.to_string().contains(bad), "{err}");
        }
    }

    #[test]
    fn exporter_configuration_errors() {
        let none = ExporterConfig::default();
        assert!(matches!(Exporter::new(none), Err(IpfixError::NoCollectors)));
        let small = ExporterConfig {
            mtu: 150,
            ..config("udp://127.0.0.1:4739")
        };
        assert!(matches!(
            Exporter::new(small),
            Err(IpfixError::MtuOutOfRange { min: 153, .. })
        ));
        let smallest = ExporterConfig {
            mtu: 153,
            ..config("udp://127.0.0.1:4739")
        };
        assert!(Exporter::new(smallest).is_ok());
        assert!(matches!(
            Exporter::new(config("ftp://127.0.0.1:4739")),
            Err(IpfixError::UnsupportedScheme { .. })
        ));
    }

    #[test]
    fn invalid_records_are_rejected_and_the_rest_sent() {
        let (rx, url) = udp_receiver();
        let mut ex = Exporter::new(config(&url)).expect("exporter");
        let bad = FlowRecord {
            src: None,
            dst: None,
            ..flow(0)
        };
        let report = ex.export_at(
            Instant::now(),
            SystemTime::now(),
            &[flow(1), bad, flow(2)],
            &[],
        );
        assert_eq!(report.sent_records, 2);
        assert_eq!(report.rejected_records, 1);
        assert!(matches!(
            report.errors.as_slice(),
            [IpfixError::InvalidFlow { index: 1, .. }]
        ));
        let (_, recs) = decode_stream(&drain(&rx)).expect("decodes");
        assert_eq!(recs.len(), 2);
    }

    #[test]
    fn sequence_numbers_count_flow_and_options_records_across_messages() {
        let (rx, url) = udp_receiver();
        let mut ex = Exporter::new(ExporterConfig {
            mtu: 400,
            ..config(&url)
        })
        .expect("exporter");
        let t0 = Instant::now();
        let flows: Vec<_> = (0..40)
            .map(|i| if i % 4 == 0 { flow_v6(i) } else { flow(i) })
            .collect();
        let bks = [buckets(2, 1), buckets(3, 1), buckets(4, 0)];
        let wall = UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        let r1 = ex.export_at(t0, wall, &flows, &bks);
        assert_eq!((r1.sent_records, r1.dropped_records), (43, 0));
        let r2 = ex.export_at(t0 + Duration::from_secs(1), wall, &flows[..5], &bks[..1]);
        assert_eq!(r2.sent_records, 6);

        let datagrams = drain(&rx);
        assert!(datagrams.len() > 5);
        let (msgs, recs) = decode_stream(&datagrams).expect("decodes");
        let mut expected = 0u32;
        for (m, raw) in msgs.iter().zip(&datagrams) {
            assert!(raw.len() <= 400);
            assert_eq!(m.sequence, expected);
            assert_eq!(m.domain, 42);
            assert_eq!(m.export_time, 1_700_000_000);
            expected += m.data_records as u32;
        }
        assert_eq!(expected, 49);
        assert_eq!(recs.len(), 49);
        assert_eq!(ex.collector_stats()[0].next_sequence, 49);
        // Order is kept: flows first, then buckets, per call.
        let pkts: Vec<u64> = recs[..40]
            .iter()
            .map(|(_, r)| uint(r, ie::PACKET_DELTA_COUNT, None).expect("packets"))
            .collect();
        assert_eq!(pkts, (1..=40).collect::<Vec<_>>());
    }

    #[test]
    fn udp_templates_are_refreshed_on_schedule() {
        let (rx, url) = udp_receiver();
        let mut ex = Exporter::new(ExporterConfig {
            template_refresh: Duration::from_secs(60),
            ..config(&url)
        })
        .expect("exporter");
        let t0 = Instant::now();
        let wall = SystemTime::now();
        let mut dec = StreamDecoder::default();
        let mut sets_at =
            |ex: &mut Exporter, secs: u64, flows: &[FlowRecord], b: &[BucketsRecord]| {
                let r = ex.export_at(t0 + Duration::from_secs(secs), wall, flows, b);
                assert!(r.errors.is_empty(), "{:?}", r.errors);
                let (msgs, recs) = dec.feed(&drain(&rx)).expect("decodes");
                assert_eq!(recs.len(), flows.len() + b.len());
                template_sets(&msgs)
            };
        // First use: the data template and the options template, in two sets.
        assert_eq!(
            sets_at(&mut ex, 0, &[flow(1)], &[buckets(2, 0)]),
            [vec![256], vec![257]]
        );
        assert!(sets_at(&mut ex, 30, &[flow(2)], &[buckets(2, 0)]).is_empty());
        // A new shape mid-period: only its template.
        assert_eq!(sets_at(&mut ex, 40, &[flow_v6(3)], &[]), [vec![258]]);
        assert!(sets_at(&mut ex, 59, &[flow(4)], &[]).is_empty());
        // Due: everything, data templates before options templates.
        assert_eq!(
            sets_at(&mut ex, 60, &[flow(5)], &[]),
            [vec![256, 258], vec![257]]
        );
        assert!(sets_at(&mut ex, 119, &[flow(6)], &[]).is_empty());
        // Refresh goes out even without records.
        assert_eq!(sets_at(&mut ex, 120, &[], &[]), [vec![256, 258], vec![257]]);
        assert!(sets_at(&mut ex, 121, &[], &[]).is_empty());
    }

    #[test]
    fn ignored_totals_run_per_scope_and_intervals_stay_deltas() {
        let (rx, url) = udp_receiver();
        let mut ex = Exporter::new(config(&url)).expect("exporter");
        let t0 = Instant::now();
        ex.export_at(t0, SystemTime::now(), &[], &[buckets(2, 1), buckets(3, 5)]);
        ex.export_at(t0, SystemTime::now(), &[], &[buckets(2, 2)]);
        ex.export_at(t0, SystemTime::now(), &[], &[buckets(2, 0), buckets(3, 1)]);
        let (_, recs) = decode_stream(&drain(&rx)).expect("decodes");
        let got: Vec<(u64, u64, u64, u64)> = recs
            .iter()
            .map(|(_, r)| {
                (
                    uint(r, ie::INGRESS_INTERFACE, None).expect("scope"),
                    uint(r, 5, Some(DEFAULT_ENTERPRISE_NUMBER)).expect("non_ip"),
                    uint(r, ie::IGNORED_PACKET_TOTAL_COUNT, None).expect("total"),
                    uint(r, ie::IGNORED_OCTET_TOTAL_COUNT, None).expect("total"),
                )
            })
            .collect();
        assert_eq!(
            got,
            [
                (2, 1, 4, 400),
                (3, 5, 20, 2000),
                (2, 2, 12, 1200),
                (2, 0, 12, 1200),
                (3, 1, 24, 2400)
            ]
        );
    }

    /// Reads whole messages from a TCP stream until `records` data records
    /// have arrived.
    fn read_tcp(
        dec: &mut StreamDecoder,
        conn: &mut TcpStream,
        records: usize,
    ) -> (Vec<DecodedMessage>, usize) {
        conn.set_read_timeout(Some(Duration::from_secs(2)))
            .expect("timeout");
        let mut msgs = Vec::new();
        let mut got = 0;
        loop {
            let mut head = [0u8; 4];
            conn.read_exact(&mut head).expect("message header");
            let len = usize::from(u16::from_be_bytes([head[2], head[3]]));
            let mut msg = head.to_vec();
            msg.resize(len, 0);
            conn.read_exact(&mut msg[4..]).expect("message body");
            let (m, recs) = dec.feed(&[msg]).expect("decodes");
            msgs.extend(m);
            got += recs.len();
            if got >= records {
                return (msgs, got);
            }
        }
    }

    #[test]
    fn tcp_resends_templates_and_restarts_sequence_after_reconnect() {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let url = format!("tcp://{}", listener.local_addr().expect("addr"));
        let mut ex = Exporter::new(config(&url)).expect("exporter");
        let t0 = Instant::now();
        let wall = SystemTime::now();

        let r = ex.export_at(t0, wall, &[flow(1), flow(2)], &[buckets(2, 0)]);
        assert_eq!(
            (r.sent_records, r.dropped_records),
            (3, 0),
            "{:?}",
            r.errors
        );
        let (mut a, _) = listener.accept().expect("first connection");
        let mut dec = StreamDecoder::default();
        let (msgs, n) = read_tcp(&mut dec, &mut a, 3);
        assert_eq!(n, 3);
        assert_eq!(msgs[0].sequence, 0);
        assert_eq!(template_sets(&msgs), [vec![256], vec![257]]);
        assert!(matches!(
            msgs[0].sets.first().map(|s| &s.kind),
            Some(SetKind::Templates(_))
        ));

        // Same connection: no templates, sequence goes on.
        let r = ex.export_at(t0 + Duration::from_secs(100), wall, &[flow(3)], &[]);
        assert_eq!(r.sent_records, 1);
        let (msgs, _) = read_tcp(&mut dec, &mut a, 1);
        assert!(template_sets(&msgs).is_empty());
        assert_eq!(msgs[0].sequence, 3);

        // The collector goes away; the exporter notices on the next export
        // and reconnects at once.
        drop(a);
        std::thread::sleep(Duration::from_millis(50));
        let r = ex.export_at(t0 + Duration::from_secs(101), wall, &[flow(4)], &[]);
        assert_eq!(
            (r.sent_records, r.dropped_records),
            (1, 0),
            "{:?}",
            r.errors
        );
        assert!(matches!(
            r.errors.as_slice(),
            [IpfixError::ConnectionLost { .. }]
        ));
        let (mut b, _) = listener.accept().expect("second connection");
        // A fresh decoder: the new connection must carry its own templates.
        let (msgs, _) = read_tcp(&mut StreamDecoder::default(), &mut b, 1);
        assert_eq!(msgs[0].sequence, 0);
        let sets: Vec<u16> = msgs[0]
            .sets
            .iter()
            .map(|s| match &s.kind {
                SetKind::Templates(ts) if ts.iter().any(|t| t.scope_field_count > 0) => {
                    OPTIONS_TEMPLATE_SET_ID
                }
                SetKind::Templates(_) => TEMPLATE_SET_ID,
                SetKind::Data { template_id, .. } => *template_id,
            })
            .collect();
        assert_eq!(sets, [TEMPLATE_SET_ID, OPTIONS_TEMPLATE_SET_ID, 256]);
    }

    #[test]
    fn tcp_collector_down_drops_counts_and_backs_off() {
        let port = {
            let l = TcpListener::bind("127.0.0.1:0").expect("bind");
            l.local_addr().expect("addr").port()
        };
        let mut ex = Exporter::new(config(&format!("tcp://127.0.0.1:{port}"))).expect("exporter");
        let t0 = Instant::now();
        let wall = SystemTime::now();
        let started = Instant::now();
        let r = ex.export_at(t0, wall, &[flow(1), flow(2)], &[buckets(1, 0)]);
        assert!(started.elapsed() < Duration::from_secs(1));
        assert_eq!((r.sent_records, r.dropped_records), (0, 3));
        assert!(matches!(
            r.errors.as_slice(),
            [IpfixError::Connect { retry_in, .. }] if *retry_in == Duration::from_secs(1)
        ));
        // Within the backoff: no attempt, no error, records dropped.
        let r = ex.export_at(t0 + Duration::from_millis(500), wall, &[flow(3)], &[]);
        assert_eq!(r.dropped_records, 1);
        assert!(r.errors.is_empty());
        // Next attempts wait 2 s, then 4 s.
        let r = ex.export_at(t0 + Duration::from_secs(1), wall, &[flow(4)], &[]);
        assert!(matches!(
            r.errors.as_slice(),
            [IpfixError::Connect { retry_in, .. }] if *retry_in == Duration::from_secs(2)
        ));
        let r = ex.export_at(t0 + Duration::from_secs(2), wall, &[flow(5)], &[]);
        assert!(r.errors.is_empty());
        let r = ex.export_at(t0 + Duration::from_secs(3), wall, &[flow(6)], &[]);
        assert!(matches!(
            r.errors.as_slice(),
            [IpfixError::Connect { retry_in, .. }] if *retry_in == Duration::from_secs(4)
        ));
        assert_eq!(ex.dropped_total(0), Some(7));
        assert_eq!(ex.sent_total(0), Some(0));
        assert_eq!(ex.dropped_total(1), None);
        assert!(!ex.collector_stats()[0].connected);
    }

    #[test]
    fn backoff_is_capped() {
        let port = {
            let l = TcpListener::bind("127.0.0.1:0").expect("bind");
            l.local_addr().expect("addr").port()
        };
        let mut ex = Exporter::new(ExporterConfig {
            backoff_max: Duration::from_secs(5),
            ..config(&format!("tcp://127.0.0.1:{port}"))
        })
        .expect("exporter");
        let t0 = Instant::now();
        let mut waits = Vec::new();
        for s in 0..40 {
            let r = ex.export_at(t0 + Duration::from_secs(s), SystemTime::now(), &[], &[]);
            for e in r.errors {
                if let IpfixError::Connect { retry_in, .. } = e {
                    waits.push(retry_in.as_secs());
                }
            }
        }
        assert_eq!(waits[..6], [1, 2, 4, 5, 5, 5]);
    }
}
