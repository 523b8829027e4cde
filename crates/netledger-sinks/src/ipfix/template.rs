//! netledger's records, the templates describing them and their encoding.
//!
//! The field tables are in the module documentation of [`super`].

use std::collections::HashMap;
use std::net::IpAddr;

use super::message::{FieldSpec, TemplateRecord, MIN_TEMPLATE_ID};
use super::{IpfixError, RecordProblem};

/// IANA Information Element ids used by netledger (RFC 7012 and the IANA
/// IPFIX registry).
pub mod ie {
    /// `octetDeltaCount`: IP-layer bytes in the interval.
    pub const OCTET_DELTA_COUNT: u16 = 1;
    /// `packetDeltaCount`.
    pub const PACKET_DELTA_COUNT: u16 = 2;
    /// `protocolIdentifier`.
    pub const PROTOCOL_IDENTIFIER: u16 = 4;
    /// `sourceTransportPort`.
    pub const SOURCE_TRANSPORT_PORT: u16 = 7;
    /// `sourceIPv4Address`.
    pub const SOURCE_IPV4_ADDRESS: u16 = 8;
    /// `ingressInterface`.
    pub const INGRESS_INTERFACE: u16 = 10;
    /// `destinationTransportPort`.
    pub const DESTINATION_TRANSPORT_PORT: u16 = 11;
    /// `destinationIPv4Address`.
    pub const DESTINATION_IPV4_ADDRESS: u16 = 12;
    /// `egressInterface`.
    pub const EGRESS_INTERFACE: u16 = 14;
    /// `sourceIPv6Address`.
    pub const SOURCE_IPV6_ADDRESS: u16 = 27;
    /// `destinationIPv6Address`.
    pub const DESTINATION_IPV6_ADDRESS: u16 = 28;
    /// `icmpTypeCodeIPv4`: type in the high byte, code in the low byte.
    pub const ICMP_TYPE_CODE_IPV4: u16 = 32;
    /// `vlanId`.
    pub const VLAN_ID: u16 = 58;
    /// `flowDirection`: 0 ingress, 1 egress.
    pub const FLOW_DIRECTION: u16 = 61;
    /// `flowEndReason`.
    pub const FLOW_END_REASON: u16 = 136;
    /// `icmpTypeCodeIPv6`: type in the high byte, code in the low byte.
    pub const ICMP_TYPE_CODE_IPV6: u16 = 139;
    /// `flowStartMilliseconds`.
    pub const FLOW_START_MILLISECONDS: u16 = 152;
    /// `flowEndMilliseconds`.
    pub const FLOW_END_MILLISECONDS: u16 = 153;
    /// `ignoredPacketTotalCount` (total counter).
    pub const IGNORED_PACKET_TOTAL_COUNT: u16 = 164;
    /// `ignoredOctetTotalCount` (total counter).
    pub const IGNORED_OCTET_TOTAL_COUNT: u16 = 165;
    /// `layer2OctetDeltaCount`: frame bytes in the interval.
    pub const LAYER2_OCTET_DELTA_COUNT: u16 = 352;
}

/// netledger's enterprise-specific IE ids for the conservation buckets, used
/// under the configured Private Enterprise Number.
pub mod bucket_ie {
    /// Packets seen in the interval.
    pub const SEEN_PACKETS: u16 = 1;
    /// Bytes seen in the interval.
    pub const SEEN_OCTETS: u16 = 2;
    /// Packets counted into flows.
    pub const COUNTED_PACKETS: u16 = 3;
    /// Bytes counted into flows.
    pub const COUNTED_OCTETS: u16 = 4;
    /// Non-IP packets.
    pub const NON_IP_PACKETS: u16 = 5;
    /// Non-IP bytes.
    pub const NON_IP_OCTETS: u16 = 6;
    /// Malformed packets.
    pub const MALFORMED_PACKETS: u16 = 7;
    /// Malformed bytes.
    pub const MALFORMED_OCTETS: u16 = 8;
    /// Packets not counted because the flow map was full.
    pub const MAP_FULL_PACKETS: u16 = 9;
    /// Bytes not counted because the flow map was full.
    pub const MAP_FULL_OCTETS: u16 = 10;
    /// Packets lost to a race with eviction.
    pub const EVICT_RACE_PACKETS: u16 = 11;
    /// Bytes lost to a race with eviction.
    pub const EVICT_RACE_OCTETS: u16 = 12;
}

/// Default Private Enterprise Number for the bucket IEs: 32473 is reserved
/// for documentation by RFC 5612, so deployments should set their own.
pub const DEFAULT_ENTERPRISE_NUMBER: u32 = 32473;

/// Which way a flow or a bucket's packets crossed the interface.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Direction {
    /// Received on the interface (`flowDirection` 0, `ingressInterface`).
    In,
    /// Sent from the interface (`flowDirection` 1, `egressInterface`).
    Out,
}

impl Direction {
    /// The `flowDirection` value.
    pub fn flow_direction(self) -> u8 {
        match self {
            Direction::In => 0,
            Direction::Out => 1,
        }
    }

    /// The IE naming the interface for this direction.
    pub fn interface_ie(self) -> u16 {
        match self {
            Direction::In => ie::INGRESS_INTERFACE,
            Direction::Out => ie::EGRESS_INTERFACE,
        }
    }
}

/// One flow's counters over one export interval.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FlowRecord {
    /// Source address, `None` when the key mode omits it. At least one of
    /// `src` and `dst` is present; when both are, they share a family.
    pub src: Option<IpAddr>,
    /// Destination address, `None` when the key mode omits it.
    pub dst: Option<IpAddr>,
    /// IP protocol number, present for five-tuple keys only.
    pub proto: Option<u8>,
    /// Source and destination ports (TCP, UDP, SCTP first fragments).
    pub ports: Option<(u16, u16)>,
    /// ICMP or ICMPv6 type and code.
    pub icmp: Option<(u8, u8)>,
    /// VLAN id (0..=4095), present when the key has a VLAN.
    pub vlan: Option<u16>,
    /// Direction on the interface.
    pub direction: Direction,
    /// Interface index.
    pub ifindex: u32,
    /// Interval start, ms since the Unix epoch.
    pub start_ms: u64,
    /// Interval end, ms since the Unix epoch.
    pub end_ms: u64,
    /// Packets in the interval.
    pub packets: u64,
    /// IP-layer bytes in the interval.
    pub ip_octets: u64,
    /// Frame bytes in the interval.
    pub l2_octets: u64,
    /// `flowEndReason`: 2 (active timeout) for interval cuts, otherwise what
    /// the caller determined (3 end of flow detected, 4 forced end).
    pub end_reason: u8,
}

/// Packets and bytes of one conservation bucket.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct BucketCount {
    /// Packets.
    pub packets: u64,
    /// Bytes.
    pub octets: u64,
}

impl BucketCount {
    /// Component-wise wrapping sum, as counters wrap on the wire.
    pub fn wrapping_add(self, other: BucketCount) -> BucketCount {
        BucketCount {
            packets: self.packets.wrapping_add(other.packets),
            octets: self.octets.wrapping_add(other.octets),
        }
    }
}

/// Where every packet of one interval on one interface and direction went.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BucketsRecord {
    /// Direction on the interface.
    pub direction: Direction,
    /// Interface index.
    pub ifindex: u32,
    /// Interval start, ms since the Unix epoch.
    pub start_ms: u64,
    /// Interval end, ms since the Unix epoch.
    pub end_ms: u64,
    /// Everything the probe saw.
    pub seen: BucketCount,
    /// What was counted into flows.
    pub counted: BucketCount,
    /// Non-IP frames.
    pub non_ip: BucketCount,
    /// IP packets too malformed to key.
    pub malformed: BucketCount,
    /// Packets of new flows refused by a full map.
    pub map_full: BucketCount,
    /// Packets lost to a race between update and eviction.
    pub evict_race: BucketCount,
}

impl BucketsRecord {
    /// The part of the traffic that was not counted into flows:
    /// `non_ip + malformed + map_full + evict_race`.
    pub fn ignored(&self) -> BucketCount {
        self.non_ip
            .wrapping_add(self.malformed)
            .wrapping_add(self.map_full)
            .wrapping_add(self.evict_race)
    }

    /// Checks what the encoding relies on.
    pub fn validate(&self) -> Result<(), RecordProblem> {
        check_interval(self.start_ms, self.end_ms)
    }
}

fn check_interval(start_ms: u64, end_ms: u64) -> Result<(), RecordProblem> {
    if end_ms < start_ms {
        return Err(RecordProblem::EndBeforeStart { start_ms, end_ms });
    }
    Ok(())
}

/// Address family of a flow.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Family {
    /// IPv4.
    V4,
    /// IPv6.
    V6,
}

fn family(a: IpAddr) -> Family {
    match a {
        IpAddr::V4(_) => Family::V4,
        IpAddr::V6(_) => Family::V6,
    }
}

/// The set of fields a flow record carries; one template per shape.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct FlowShape {
    /// Address family.
    pub family: Family,
    /// Source address present.
    pub src: bool,
    /// Destination address present.
    pub dst: bool,
    /// Protocol present.
    pub proto: bool,
    /// Ports present.
    pub ports: bool,
    /// ICMP type/code present.
    pub icmp: bool,
    /// VLAN present.
    pub vlan: bool,
    /// Direction, which picks the interface IE.
    pub direction: Direction,
}

impl FlowShape {
    /// The shape of `rec`, or why it cannot be encoded.
    pub fn of(rec: &FlowRecord) -> Result<Self, RecordProblem> {
        let family = match (rec.src, rec.dst) {
            (None, None) => return Err(RecordProblem::NoAddress),
            (Some(s), Some(d)) if family(s) != family(d) => {
                return Err(RecordProblem::MixedFamilies)
            }
            (Some(a), _) | (None, Some(a)) => family(a),
        };
        if rec.ports.is_some() && rec.icmp.is_some() {
            return Err(RecordProblem::PortsAndIcmp);
        }
        if let Some(vlan) = rec.vlan {
            if vlan > 4095 {
                return Err(RecordProblem::VlanOutOfRange { vlan });
            }
        }
        check_interval(rec.start_ms, rec.end_ms)?;
        Ok(Self {
            family,
            src: rec.src.is_some(),
            dst: rec.dst.is_some(),
            proto: rec.proto.is_some(),
            ports: rec.ports.is_some(),
            icmp: rec.icmp.is_some(),
            vlan: rec.vlan.is_some(),
            direction: rec.direction,
        })
    }

    /// The template fields, in wire order.
    pub fn fields(&self) -> Vec<FieldSpec> {
        let v6 = self.family == Family::V6;
        let addr_len = if v6 { 16 } else { 4 };
        let mut f = Vec::with_capacity(19);
        if self.src {
            let id = if v6 {
                ie::SOURCE_IPV6_ADDRESS
            } else {
                ie::SOURCE_IPV4_ADDRESS
            };
            f.push(FieldSpec::iana(id, addr_len));
        }
        if self.dst {
            let id = if v6 {
                ie::DESTINATION_IPV6_ADDRESS
            } else {
                ie::DESTINATION_IPV4_ADDRESS
            };
            f.push(FieldSpec::iana(id, addr_len));
        }
        if self.proto {
            f.push(FieldSpec::iana(ie::PROTOCOL_IDENTIFIER, 1));
        }
        if self.ports {
            f.push(FieldSpec::iana(ie::SOURCE_TRANSPORT_PORT, 2));
            f.push(FieldSpec::iana(ie::DESTINATION_TRANSPORT_PORT, 2));
        }
        if self.icmp {
            let id = if v6 {
                ie::ICMP_TYPE_CODE_IPV6
            } else {
                ie::ICMP_TYPE_CODE_IPV4
            };
            f.push(FieldSpec::iana(id, 2));
        }
        if self.vlan {
            f.push(FieldSpec::iana(ie::VLAN_ID, 2));
        }
        f.push(FieldSpec::iana(ie::FLOW_DIRECTION, 1));
        f.push(FieldSpec::iana(self.direction.interface_ie(), 4));
        f.push(FieldSpec::iana(ie::FLOW_START_MILLISECONDS, 8));
        f.push(FieldSpec::iana(ie::FLOW_END_MILLISECONDS, 8));
        f.push(FieldSpec::iana(ie::PACKET_DELTA_COUNT, 8));
        f.push(FieldSpec::iana(ie::OCTET_DELTA_COUNT, 8));
        f.push(FieldSpec::iana(ie::LAYER2_OCTET_DELTA_COUNT, 8));
        f.push(FieldSpec::iana(ie::FLOW_END_REASON, 1));
        f
    }
}

fn push_addr(out: &mut Vec<u8>, a: IpAddr) {
    match a {
        IpAddr::V4(a) => out.extend_from_slice(&a.octets()),
        IpAddr::V6(a) => out.extend_from_slice(&a.octets()),
    }
}

/// Appends `rec` as a data record of the template for its shape, which the
/// caller obtained from [`FlowShape::of`] on the same record.
pub fn encode_flow(rec: &FlowRecord, out: &mut Vec<u8>) {
    if let Some(a) = rec.src {
        push_addr(out, a);
    }
    if let Some(a) = rec.dst {
        push_addr(out, a);
    }
    if let Some(p) = rec.proto {
        out.push(p);
    }
    if let Some((s, d)) = rec.ports {
        out.extend_from_slice(&s.to_be_bytes());
        out.extend_from_slice(&d.to_be_bytes());
    }
    if let Some((t, c)) = rec.icmp {
        out.extend_from_slice(&[t, c]);
    }
    if let Some(v) = rec.vlan {
        out.extend_from_slice(&v.to_be_bytes());
    }
    out.push(rec.direction.flow_direction());
    out.extend_from_slice(&rec.ifindex.to_be_bytes());
    out.extend_from_slice(&rec.start_ms.to_be_bytes());
    out.extend_from_slice(&rec.end_ms.to_be_bytes());
    out.extend_from_slice(&rec.packets.to_be_bytes());
    out.extend_from_slice(&rec.ip_octets.to_be_bytes());
    out.extend_from_slice(&rec.l2_octets.to_be_bytes());
    out.push(rec.end_reason);
}

/// Scope and non-scope fields of the buckets options template for
/// `direction`, with the bucket IEs under `enterprise_number`.
pub fn buckets_fields(
    direction: Direction,
    enterprise_number: u32,
) -> (Vec<FieldSpec>, Vec<FieldSpec>) {
    let scope = vec![
        FieldSpec::iana(direction.interface_ie(), 4),
        FieldSpec::iana(ie::FLOW_DIRECTION, 1),
    ];
    let pen = |id| FieldSpec::enterprise(enterprise_number, id, 8);
    let fields = vec![
        FieldSpec::iana(ie::FLOW_START_MILLISECONDS, 8),
        FieldSpec::iana(ie::FLOW_END_MILLISECONDS, 8),
        pen(bucket_ie::SEEN_PACKETS),
        pen(bucket_ie::SEEN_OCTETS),
        pen(bucket_ie::COUNTED_PACKETS),
        pen(bucket_ie::COUNTED_OCTETS),
        pen(bucket_ie::NON_IP_PACKETS),
        pen(bucket_ie::NON_IP_OCTETS),
        pen(bucket_ie::MALFORMED_PACKETS),
        pen(bucket_ie::MALFORMED_OCTETS),
        pen(bucket_ie::MAP_FULL_PACKETS),
        pen(bucket_ie::MAP_FULL_OCTETS),
        pen(bucket_ie::EVICT_RACE_PACKETS),
        pen(bucket_ie::EVICT_RACE_OCTETS),
        FieldSpec::iana(ie::IGNORED_PACKET_TOTAL_COUNT, 8),
        FieldSpec::iana(ie::IGNORED_OCTET_TOTAL_COUNT, 8),
    ];
    (scope, fields)
}

/// Appends `rec` as an options data record; `ignored_total` is the running
/// total of ignored traffic for the record's scope, this record included.
pub fn encode_buckets(rec: &BucketsRecord, ignored_total: BucketCount, out: &mut Vec<u8>) {
    out.extend_from_slice(&rec.ifindex.to_be_bytes());
    out.push(rec.direction.flow_direction());
    out.extend_from_slice(&rec.start_ms.to_be_bytes());
    out.extend_from_slice(&rec.end_ms.to_be_bytes());
    for b in [
        rec.seen,
        rec.counted,
        rec.non_ip,
        rec.malformed,
        rec.map_full,
        rec.evict_race,
    ] {
        out.extend_from_slice(&b.packets.to_be_bytes());
        out.extend_from_slice(&b.octets.to_be_bytes());
    }
    out.extend_from_slice(&ignored_total.packets.to_be_bytes());
    out.extend_from_slice(&ignored_total.octets.to_be_bytes());
}

/// What a template describes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TemplateKey {
    /// Flow records of one shape.
    Flow(FlowShape),
    /// Buckets options records of one direction.
    Buckets(Direction),
}

/// The exporter's templates: one per [`TemplateKey`], created on first use
/// with ids from 256 up, never changed or reused afterwards.
#[derive(Debug, Clone)]
pub struct TemplateRegistry {
    enterprise_number: u32,
    by_key: HashMap<TemplateKey, u16>,
    /// Index `i` holds template id `256 + i`.
    templates: Vec<TemplateRecord>,
}

impl TemplateRegistry {
    /// An empty registry whose bucket IEs use `enterprise_number`.
    pub fn new(enterprise_number: u32) -> Self {
        Self {
            enterprise_number,
            by_key: HashMap::new(),
            templates: Vec::new(),
        }
    }

    /// The template for `key`, created if this is its first use.
    pub fn get_or_create(&mut self, key: TemplateKey) -> Result<&TemplateRecord, IpfixError> {
        if let Some(&id) = self.by_key.get(&key) {
            return self.get(id).ok_or(IpfixError::TemplateIdsExhausted);
        }
        let id = u16::try_from(usize::from(MIN_TEMPLATE_ID) + self.templates.len())
            .map_err(|_| IpfixError::TemplateIdsExhausted)?;
        let template = match key {
            TemplateKey::Flow(shape) => TemplateRecord::new(id, shape.fields())?,
            TemplateKey::Buckets(direction) => {
                let (scope, fields) = buckets_fields(direction, self.enterprise_number);
                TemplateRecord::new_options(id, scope, fields)?
            }
        };
        self.by_key.insert(key, id);
        self.templates.push(template);
        self.get(id).ok_or(IpfixError::TemplateIdsExhausted)
    }

    /// The template with id `id`, if created.
    pub fn get(&self, id: u16) -> Option<&TemplateRecord> {
        let index = usize::from(id.checked_sub(MIN_TEMPLATE_ID)?);
        self.templates.get(index)
    }

    /// All templates in id order.
    pub fn templates(&self) -> &[TemplateRecord] {
        &self.templates
    }

    /// The enterprise number of the bucket IEs.
    pub fn enterprise_number(&self) -> u32 {
        self.enterprise_number
    }
}

/// Largest template record and data record netledger can produce, in
/// bytes, used to check that an MTU can carry everything.
pub fn largest_items(enterprise_number: u32) -> (usize, usize) {
    let widest_flow = FlowShape {
        family: Family::V6,
        src: true,
        dst: true,
        proto: true,
        ports: true,
        icmp: true,
        vlan: true,
        direction: Direction::In,
    };
    let mut largest_template = 0;
    let mut largest_record = 0;
    if let Ok(t) = TemplateRecord::new(MIN_TEMPLATE_ID, widest_flow.fields()) {
        largest_template = largest_template.max(t.encoded_len());
        largest_record = largest_record.max(t.data_record_len());
    }
    let (scope, fields) = buckets_fields(Direction::In, enterprise_number);
    if let Ok(t) = TemplateRecord::new_options(MIN_TEMPLATE_ID, scope, fields) {
        largest_template = largest_template.max(t.encoded_len());
        largest_record = largest_record.max(t.data_record_len());
    }
    (largest_template, largest_record)
}

#[cfg(test)]
mod tests {
    use super::super::message::MessagePacker;
    use super::*;
    use std::net::{Ipv4Addr, Ipv6Addr};

    fn tcp_v4() -> FlowRecord {
        FlowRecord {
            src: Some(IpAddr::V4(Ipv4Addr::new(192, 0, 2, 1))),
            dst: Some(IpAddr::V4(Ipv4Addr::new(198, 51, 100, 7))),
            proto: Some(6),
            ports: Some((40000, 443)),
            icmp: None,
            vlan: None,
            direction: Direction::In,
            ifindex: 3,
            start_ms: 1_700_000_000_000,
            end_ms: 1_700_000_010_000,
            packets: 10,
            ip_octets: 1500,
            l2_octets: 1640,
            end_reason: 2,
        }
    }

    fn buckets() -> BucketsRecord {
        BucketsRecord {
            direction: Direction::Out,
            ifindex: 2,
            start_ms: 0x0102_0304_0506_0708,
            end_ms: 0x0102_0304_0506_0709,
            seen: BucketCount {
                packets: 0x11,
                octets: 0x12,
            },
            counted: BucketCount {
                packets: 0x21,
                octets: 0x22,
            },
            non_ip: BucketCount {
                packets: 0x31,
                octets: 0x32,
            },
            malformed: BucketCount {
                packets: 0x41,
                octets: 0x42,
            },
            map_full: BucketCount {
                packets: 0x51,
                octets: 0x52,
            },
            evict_race: BucketCount {
                packets: 0x61,
                octets: 0x62,
            },
        }
    }

    fn u64be(v: u64) -> [u8; 8] {
        v.to_be_bytes()
    }

    #[test]
    fn flow_template_set_bytes_ipv4_tcp_ingress() {
        let mut reg = TemplateRegistry::new(DEFAULT_ENTERPRISE_NUMBER);
        let shape = FlowShape::of(&tcp_v4()).expect("valid");
        let t = reg
            .get_or_create(TemplateKey::Flow(shape))
            .expect("created")
            .clone();
        let mut p = MessagePacker::new(1400).expect("mtu");
        p.push_template(&t).expect("fits");
        let body = p.finish().remove(0).body().to_vec();
        #[rustfmt::skip]
        let expected: Vec<u8> = vec![
            0x00, 0x02, 0x00, 0x3C,  // template set, length 4 + 4 + 13 * 4 = 60
            0x01, 0x00, 0x00, 0x0D,  // template 256, 13 fields
            0x00, 0x08, 0x00, 0x04,  // sourceIPv4Address
            0x00, 0x0C, 0x00, 0x04,  // destinationIPv4Address
            0x00, 0x04, 0x00, 0x01,  // protocolIdentifier
            0x00, 0x07, 0x00, 0x02,  // sourceTransportPort
            0x00, 0x0B, 0x00, 0x02,  // destinationTransportPort
            0x00, 0x3D, 0x00, 0x01,  // flowDirection
            0x00, 0x0A, 0x00, 0x04,  // ingressInterface
            0x00, 0x98, 0x00, 0x08,  // flowStartMilliseconds
            0x00, 0x99, 0x00, 0x08,  // flowEndMilliseconds
            0x00, 0x02, 0x00, 0x08,  // packetDeltaCount
            0x00, 0x01, 0x00, 0x08,  // octetDeltaCount
            0x01, 0x60, 0x00, 0x08,  // layer2OctetDeltaCount (352)
            0x00, 0x88, 0x00, 0x01,  // flowEndReason
        ];
        assert_eq!(body, expected);
    }

    #[test]
    fn flow_data_set_bytes_ipv4_tcp_ingress() {
        let rec = tcp_v4();
        let t = TemplateRecord::new(256, FlowShape::of(&rec).expect("valid").fields()).expect("ok");
        let mut r = Vec::new();
        encode_flow(&rec, &mut r);
        let mut p = MessagePacker::new(1400).expect("mtu");
        p.push_data(&t, &r).expect("fits");
        let body = p.finish().remove(0).body().to_vec();
        let mut expected: Vec<u8> = vec![
            0x01, 0x00, 0x00, 0x3F, // data set 256, length 4 + 59
            192, 0, 2, 1, // src
            198, 51, 100, 7, // dst
            6, // TCP
            0x9C, 0x40, // 40000
            0x01, 0xBB, // 443
            0x00, // ingress
            0x00, 0x00, 0x00, 0x03, // ifindex 3
        ];
        expected.extend_from_slice(&[0x00, 0x00, 0x01, 0x8B, 0xCF, 0xE5, 0x68, 0x00]); // 1700000000000
        expected.extend_from_slice(&[0x00, 0x00, 0x01, 0x8B, 0xCF, 0xE5, 0x8F, 0x10]); // +10000
        expected.extend_from_slice(&[0, 0, 0, 0, 0, 0, 0, 10]);
        expected.extend_from_slice(&[0, 0, 0, 0, 0, 0, 0x05, 0xDC]);
        expected.extend_from_slice(&[0, 0, 0, 0, 0, 0, 0x06, 0x68]);
        expected.push(2);
        assert_eq!(body, expected);
    }

    #[test]
    fn flow_fields_ipv6_icmp_vlan_egress_dst_only() {
        let rec = FlowRecord {
            src: None,
            dst: Some(IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 1))),
            proto: Some(58),
            ports: None,
            icmp: Some((128, 0)),
            vlan: Some(100),
            direction: Direction::Out,
            ..tcp_v4()
        };
        let shape = FlowShape::of(&rec).expect("valid");
        let ids: Vec<u16> = shape.fields().iter().map(|f| f.id).collect();
        assert_eq!(ids, [28, 4, 139, 58, 61, 14, 152, 153, 2, 1, 352, 136]);
        let mut r = Vec::new();
        encode_flow(&rec, &mut r);
        let t = TemplateRecord::new(256, shape.fields()).expect("ok");
        assert_eq!(r.len(), t.data_record_len());
        // ICMP echo request: type 128 high byte, code 0 low byte; then VLAN 100, egress.
        assert_eq!(&r[16..23], &[58, 128, 0, 0x00, 0x64, 0x01, 0x00]);
    }

    #[test]
    fn options_template_set_bytes() {
        let mut reg = TemplateRegistry::new(32473);
        let t = reg
            .get_or_create(TemplateKey::Buckets(Direction::Out))
            .expect("created")
            .clone();
        let mut p = MessagePacker::new(1400).expect("mtu");
        p.push_template(&t).expect("fits");
        let body = p.finish().remove(0).body().to_vec();
        let mut expected: Vec<u8> = vec![
            0x00, 0x03, 0x00,
            0x82, // options template set, length 4 + 6 + 6 * 4 + 12 * 8 = 130
            0x01, 0x00, 0x00, 0x12, 0x00, 0x02, // id 256, 18 fields, 2 scope fields
            0x00, 0x0E, 0x00, 0x04, // scope: egressInterface
            0x00, 0x3D, 0x00, 0x01, // scope: flowDirection
            0x00, 0x98, 0x00, 0x08, // flowStartMilliseconds
            0x00, 0x99, 0x00, 0x08, // flowEndMilliseconds
        ];
        for id in 1u8..=12 {
            // enterprise bit + id, length 8, PEN 32473 = 0x7ED9
            expected.extend_from_slice(&[0x80, id, 0x00, 0x08, 0x00, 0x00, 0x7E, 0xD9]);
        }
        expected.extend_from_slice(&[0x00, 0xA4, 0x00, 0x08, 0x00, 0xA5, 0x00, 0x08]);
        assert_eq!(body, expected);
    }

    #[test]
    fn options_data_record_bytes() {
        let rec = buckets();
        let total = BucketCount {
            packets: 0x1234,
            octets: 0x5678,
        };
        let mut r = Vec::new();
        encode_buckets(&rec, total, &mut r);
        let mut expected: Vec<u8> = vec![0, 0, 0, 2, 1];
        expected.extend_from_slice(&[1, 2, 3, 4, 5, 6, 7, 8]);
        expected.extend_from_slice(&[1, 2, 3, 4, 5, 6, 7, 9]);
        for v in [
            0x11u64, 0x12, 0x21, 0x22, 0x31, 0x32, 0x41, 0x42, 0x51, 0x52, 0x61, 0x62,
        ] {
            expected.extend_from_slice(&u64be(v));
        }
        expected.extend_from_slice(&u64be(0x1234));
        expected.extend_from_slice(&u64be(0x5678));
        assert_eq!(r, expected);
        let (scope, fields) = buckets_fields(Direction::Out, 1);
        let t = TemplateRecord::new_options(256, scope, fields).expect("ok");
        assert_eq!(t.data_record_len(), r.len());
        assert_eq!(r.len(), 133);
    }

    #[test]
    fn ignored_sums_the_four_loss_buckets() {
        let b = buckets().ignored();
        assert_eq!(b.packets, 0x31 + 0x41 + 0x51 + 0x61);
        assert_eq!(b.octets, 0x32 + 0x42 + 0x52 + 0x62);
    }

    #[test]
    fn registry_ids_start_at_256_and_are_stable() {
        let mut reg = TemplateRegistry::new(1);
        let a = FlowShape::of(&tcp_v4()).expect("valid");
        let b = FlowShape::of(&FlowRecord {
            direction: Direction::Out,
            ..tcp_v4()
        })
        .expect("valid");
        let id_a = reg.get_or_create(TemplateKey::Flow(a)).expect("ok").id();
        let id_o = reg
            .get_or_create(TemplateKey::Buckets(Direction::In))
            .expect("ok")
            .id();
        let id_b = reg.get_or_create(TemplateKey::Flow(b)).expect("ok").id();
        assert_eq!((id_a, id_o, id_b), (256, 257, 258));
        assert_eq!(
            reg.get_or_create(TemplateKey::Flow(a)).expect("ok").id(),
            256
        );
        assert_eq!(reg.templates().len(), 3);
        assert!(reg.get(257).expect("exists").is_options());
        assert!(reg.get(255).is_none());
    }

    #[test]
    fn invalid_flows_are_refused_with_the_reason() {
        let none = FlowRecord {
            src: None,
            dst: None,
            ..tcp_v4()
        };
        assert_eq!(FlowShape::of(&none), Err(RecordProblem::NoAddress));
        let mixed = FlowRecord {
            dst: Some(IpAddr::V6(Ipv6Addr::LOCALHOST)),
            ..tcp_v4()
        };
        assert_eq!(FlowShape::of(&mixed), Err(RecordProblem::MixedFamilies));
        let both = FlowRecord {
            icmp: Some((8, 0)),
            ..tcp_v4()
        };
        assert_eq!(FlowShape::of(&both), Err(RecordProblem::PortsAndIcmp));
        let vlan = FlowRecord {
            vlan: Some(4096),
            ..tcp_v4()
        };
        assert_eq!(
            FlowShape::of(&vlan),
            Err(RecordProblem::VlanOutOfRange { vlan: 4096 })
        );
        let back = FlowRecord {
            end_ms: 1,
            ..tcp_v4()
        };
        assert!(matches!(
            FlowShape::of(&back),
            Err(RecordProblem::EndBeforeStart { .. })
        ));
    }

    #[test]
    fn largest_items_fit_the_default_mtu() {
        let (t, r) = largest_items(1);
        // Options template: 6 + 6 * 4 + 12 * 8; record 133 bytes.
        assert_eq!(t, 126);
        assert_eq!(r, 133);
    }
}
