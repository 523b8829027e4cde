//! IPFIX (RFC 7011 / RFC 7012) encoding and export of netledger's flow
//! records and per-interval conservation buckets.
//!
//! The module has three layers:
//!
//! * [`message`]: the wire format. Message header, template and options
//!   template records, field specifiers (with the enterprise bit) and the
//!   packing of records into messages no larger than a configured MTU.
//! * [`template`]: netledger's records ([`FlowRecord`], [`BucketsRecord`]),
//!   the templates that describe them and their encoding.
//! * [`export`]: the [`Exporter`], which sends the messages to one or more
//!   collectors over UDP or TCP, keeps a sequence number per collector stream,
//!   re-sends templates (periodically on UDP, once per connection on TCP)
//!   and drops and counts records while a collector is unreachable.
//!
//! # Flow templates
//!
//! One template exists per distinct *shape* of flow record: address family,
//! which of source address, destination address, protocol, ports, ICMP
//! type/code and VLAN are present, and direction. Templates get ids from 256
//! up in the order the shapes are first seen and keep them for the life of
//! the exporter. Fields appear in this order, each only when the record has
//! it:
//!
//! | IE (IANA)                  | id  | bytes | present when                      |
//! |----------------------------|-----|-------|-----------------------------------|
//! | `sourceIPv4Address`        | 8   | 4     | IPv4, source address in the key   |
//! | `destinationIPv4Address`   | 12  | 4     | IPv4, destination in the key      |
//! | `sourceIPv6Address`        | 27  | 16    | IPv6, source address in the key   |
//! | `destinationIPv6Address`   | 28  | 16    | IPv6, destination in the key      |
//! | `protocolIdentifier`       | 4   | 1     | five-tuple keys                   |
//! | `sourceTransportPort`      | 7   | 2     | TCP/UDP/SCTP first fragments      |
//! | `destinationTransportPort` | 11  | 2     | TCP/UDP/SCTP first fragments      |
//! | `icmpTypeCodeIPv4`         | 32  | 2     | ICMP over IPv4 (type << 8 \| code)|
//! | `icmpTypeCodeIPv6`         | 139 | 2     | ICMPv6 (type << 8 \| code)        |
//! | `vlanId`                   | 58  | 2     | keys with a VLAN                  |
//! | `flowDirection`            | 61  | 1     | always (0 ingress, 1 egress)      |
//! | `ingressInterface`         | 10  | 4     | direction In                      |
//! | `egressInterface`          | 14  | 4     | direction Out                     |
//! | `flowStartMilliseconds`    | 152 | 8     | always                            |
//! | `flowEndMilliseconds`      | 153 | 8     | always                            |
//! | `packetDeltaCount`         | 2   | 8     | always                            |
//! | `octetDeltaCount`          | 1   | 8     | always (IP-layer bytes)           |
//! | `layer2OctetDeltaCount`    | 352 | 8     | always (frame bytes)              |
//! | `flowEndReason`            | 136 | 1     | always                            |
//!
//! # Conservation buckets (options template)
//!
//! Each [`BucketsRecord`] is exported as an Options Data Record (RFC 7011
//! §3.4.2.2). There is one options template per direction, because the scope
//! names the interface with the IE matching the direction:
//!
//! | IE                          | id  | PEN        | bytes | meaning                        |
//! |-----------------------------|-----|------------|-------|--------------------------------|
//! | `ingressInterface` (scope)  | 10  | -          | 4     | direction In                   |
//! | `egressInterface` (scope)   | 14  | -          | 4     | direction Out                  |
//! | `flowDirection` (scope)     | 61  | -          | 1     | 0 ingress, 1 egress            |
//! | `flowStartMilliseconds`     | 152 | -          | 8     | interval start                 |
//! | `flowEndMilliseconds`       | 153 | -          | 8     | interval end                   |
//! | `seenPackets`               | 1   | configured | 8     | packets seen in the interval   |
//! | `seenOctets`                | 2   | configured | 8     | bytes seen in the interval     |
//! | `countedPackets`            | 3   | configured | 8     | packets counted into flows     |
//! | `countedOctets`             | 4   | configured | 8     | bytes counted into flows       |
//! | `nonIpPackets`              | 5   | configured | 8     | non-IP packets                 |
//! | `nonIpOctets`               | 6   | configured | 8     | non-IP bytes                   |
//! | `malformedPackets`          | 7   | configured | 8     | malformed packets              |
//! | `malformedOctets`           | 8   | configured | 8     | malformed bytes                |
//! | `mapFullPackets`            | 9   | configured | 8     | packets lost to a full map     |
//! | `mapFullOctets`             | 10  | configured | 8     | bytes lost to a full map       |
//! | `evictRacePackets`          | 11  | configured | 8     | packets lost to eviction races |
//! | `evictRaceOctets`           | 12  | configured | 8     | bytes lost to eviction races   |
//! | `ignoredPacketTotalCount`   | 164 | -          | 8     | running total, see below       |
//! | `ignoredOctetTotalCount`    | 165 | -          | 8     | running total, see below       |
//!
//! The enterprise-specific IEs (ids 1 to 12, enterprise bit set on the wire)
//! are delta counters for the interval and live under the Private Enterprise
//! Number given in [`ExporterConfig::enterprise_number`] (default 32473, the
//! number RFC 5612 reserves for documentation; set the operator's own).
//!
//! `ignoredPacketTotalCount` and `ignoredOctetTotalCount` are *total*
//! counters (RFC 7012 `totalCounter` semantics): they carry the sum of
//! `non_ip + malformed + map_full + evict_race` over every buckets record the
//! exporter has been given since it was created, for the record's scope
//! (interface and direction), including the record itself. They are kept once
//! per exporter, so every collector sees the same totals, whether or not it
//! received the earlier records.
//!
//! # Sequence numbers
//!
//! Each collector is its own stream. The sequence number in a message header
//! is the number of Data Records (flow records and options data records) sent
//! on that stream from the observation domain before the message, modulo
//! 2^32. Records of a message that could not be sent are not counted. A new
//! TCP connection is a new transport session and starts again at zero.

pub mod export;
pub mod message;
pub mod template;

#[cfg(test)]
mod testdecode;

use std::io;
use std::time::Duration;

pub use self::export::{
    CollectorStats, CollectorUrl, ExportReport, Exporter, ExporterConfig, Transport,
};
pub use self::message::{FieldSpec, MessageHeader, MessagePacker, PackedMessage, TemplateRecord};
pub use self::template::{
    BucketCount, BucketsRecord, Direction, FlowRecord, FlowShape, TemplateKey, TemplateRegistry,
};

/// Why a flow or buckets record was refused before encoding.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum RecordProblem {
    /// Neither a source nor a destination address is present, so the family
    /// (and the template) cannot be chosen.
    #[error("neither source nor destination address is present")]
    NoAddress,
    /// Source and destination are of different address families.
    #[error("source and destination addresses are of different families")]
    MixedFamilies,
    /// Transport ports and ICMP type/code describe different protocols.
    #[error("both transport ports and ICMP type/code are present")]
    PortsAndIcmp,
    /// A VLAN id is 12 bits wide.
    #[error("VLAN id {vlan} is larger than 4095")]
    VlanOutOfRange {
        /// The offending VLAN id.
        vlan: u16,
    },
    /// The interval ends before it starts.
    #[error("interval ends ({end_ms} ms) before it starts ({start_ms} ms)")]
    EndBeforeStart {
        /// Interval start, ms since the Unix epoch.
        start_ms: u64,
        /// Interval end, ms since the Unix epoch.
        end_ms: u64,
    },
}

/// Errors of the IPFIX encoder and exporter.
#[derive(Debug, thiserror::Error)]
pub enum IpfixError {
    /// A collector URL does not start with `udp://` or `tcp://`.
    #[error("collector URL {url:?} has an unsupported scheme (expected udp://HOST:PORT or tcp://HOST:PORT)")]
    UnsupportedScheme {
        /// The URL as given.
        url: String,
    },
    /// A collector URL has the right scheme but a malformed `HOST:PORT`.
    #[error("collector URL {url:?} is malformed: {reason}")]
    MalformedUrl {
        /// The URL as given.
        url: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// The collector's host name could not be resolved.
    #[error("collector {url:?}: cannot resolve host: {source}")]
    Resolve {
        /// The URL as given.
        url: String,
        /// The resolver's error.
        source: io::Error,
    },
    /// The exporter was configured without any collector.
    #[error("no collector configured")]
    NoCollectors,
    /// The MTU is outside what a message can be.
    #[error("MTU of {mtu} bytes is outside {min}..={max} bytes")]
    MtuOutOfRange {
        /// The configured MTU.
        mtu: usize,
        /// Smallest MTU that holds netledger's largest template or record.
        min: usize,
        /// Largest IPFIX message (the length field is 16 bits).
        max: usize,
    },
    /// A template or record does not fit in one message, even alone.
    #[error("{kind} needs a message of {needed} bytes, more than the MTU of {mtu} bytes")]
    TooLarge {
        /// "template" or "data record".
        kind: &'static str,
        /// Message length that carrying it alone would take.
        needed: usize,
        /// The MTU.
        mtu: usize,
    },
    /// A template record is not valid per RFC 7011 §3.4.
    #[error("template {template_id} is invalid: {reason}")]
    InvalidTemplate {
        /// The template id.
        template_id: u16,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// A data record's length differs from its template's record length.
    #[error(
        "data record of {actual} bytes does not match template {template_id} ({expected} bytes)"
    )]
    RecordLength {
        /// The template id.
        template_id: u16,
        /// The template's record length.
        expected: usize,
        /// The record's length.
        actual: usize,
    },
    /// All template ids from 256 to 65535 are in use.
    #[error("no template id left (256..=65535 are all in use)")]
    TemplateIdsExhausted,
    /// A flow record was refused.
    #[error("flow record #{index} refused: {problem}")]
    InvalidFlow {
        /// Position in the slice given to the exporter.
        index: usize,
        /// Why it was refused.
        problem: RecordProblem,
    },
    /// A buckets record was refused.
    #[error("buckets record #{index} refused: {problem}")]
    InvalidBuckets {
        /// Position in the slice given to the exporter.
        index: usize,
        /// Why it was refused.
        problem: RecordProblem,
    },
    /// The local UDP socket for a collector could not be opened.
    #[error("collector {collector}: cannot open UDP socket: {source}")]
    Socket {
        /// The collector URL.
        collector: String,
        /// The socket error.
        source: io::Error,
    },
    /// Sending a message to a collector failed.
    #[error("collector {collector}: send failed, {dropped} records dropped: {source}")]
    Send {
        /// The collector URL.
        collector: String,
        /// Records dropped because of the failure.
        dropped: u64,
        /// The socket error.
        source: io::Error,
    },
    /// A TCP connection attempt failed; the next one waits `retry_in`.
    #[error("collector {collector}: connect failed, next attempt in {retry_in:?}: {source}")]
    Connect {
        /// The collector URL.
        collector: String,
        /// Time until the next attempt.
        retry_in: Duration,
        /// The socket error.
        source: io::Error,
    },
    /// An established TCP connection was found closed or broken.
    #[error("collector {collector}: connection lost: {source}")]
    ConnectionLost {
        /// The collector URL.
        collector: String,
        /// What showed the connection to be gone.
        source: io::Error,
    },
}
