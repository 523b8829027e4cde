//! The IPFIX wire format (RFC 7011 §3): message header, sets, field
//! specifiers, template records, and the packing of records into messages
//! that stay within an MTU.
//!
//! Only fixed-length fields are supported: netledger exports no strings or
//! lists, and fixed lengths let a template's record length be known up front.

use super::IpfixError;

/// IPFIX protocol version carried in every message header.
pub const VERSION: u16 = 10;
/// Length of the message header.
pub const MESSAGE_HEADER_LEN: usize = 16;
/// Length of a set header (set id and length).
pub const SET_HEADER_LEN: usize = 4;
/// Set id of a Template Set.
pub const TEMPLATE_SET_ID: u16 = 2;
/// Set id of an Options Template Set.
pub const OPTIONS_TEMPLATE_SET_ID: u16 = 3;
/// Smallest template id, and so smallest Data Set id.
pub const MIN_TEMPLATE_ID: u16 = 256;
/// Largest message: the header's length field is 16 bits.
pub const MAX_MESSAGE_LEN: usize = u16::MAX as usize;
/// Field length value reserved for variable-length fields, not supported here.
const VARIABLE_LENGTH: u16 = u16::MAX;
/// High bit of an IE id: an enterprise number follows the specifier.
const ENTERPRISE_BIT: u16 = 0x8000;

/// One field specifier of a template (RFC 7011 §3.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct FieldSpec {
    /// Information Element id, without the enterprise bit (below 32768).
    pub id: u16,
    /// Field length in bytes in every data record.
    pub length: u16,
    /// Private Enterprise Number for enterprise-specific IEs, `None` for
    /// IANA-registered ones.
    pub enterprise: Option<u32>,
}

impl FieldSpec {
    /// An IANA-registered Information Element of fixed length.
    pub const fn iana(id: u16, length: u16) -> Self {
        Self {
            id,
            length,
            enterprise: None,
        }
    }

    /// An enterprise-specific Information Element of fixed length.
    pub const fn enterprise(enterprise_number: u32, id: u16, length: u16) -> Self {
        Self {
            id,
            length,
            enterprise: Some(enterprise_number),
        }
    }

    /// Bytes the specifier takes in a template record.
    pub const fn encoded_len(&self) -> usize {
        match self.enterprise {
            Some(_) => 8,
            None => 4,
        }
    }

    /// Appends the specifier in wire format.
    pub fn encode(&self, out: &mut Vec<u8>) {
        match self.enterprise {
            Some(pen) => {
                out.extend_from_slice(&(self.id | ENTERPRISE_BIT).to_be_bytes());
                out.extend_from_slice(&self.length.to_be_bytes());
                out.extend_from_slice(&pen.to_be_bytes());
            }
            None => {
                out.extend_from_slice(&self.id.to_be_bytes());
                out.extend_from_slice(&self.length.to_be_bytes());
            }
        }
    }
}

/// The 16-byte header that starts every message (RFC 7011 §3.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MessageHeader {
    /// Total message length in bytes, header included.
    pub length: u16,
    /// Seconds since the Unix epoch at which the message leaves the exporter.
    pub export_time: u32,
    /// Data records sent on this stream and domain before this message.
    pub sequence: u32,
    /// Observation domain the records belong to.
    pub observation_domain_id: u32,
}

impl MessageHeader {
    /// The header in wire format.
    pub fn to_bytes(&self) -> [u8; MESSAGE_HEADER_LEN] {
        let mut b = [0u8; MESSAGE_HEADER_LEN];
        b[0..2].copy_from_slice(&VERSION.to_be_bytes());
        b[2..4].copy_from_slice(&self.length.to_be_bytes());
        b[4..8].copy_from_slice(&self.export_time.to_be_bytes());
        b[8..12].copy_from_slice(&self.sequence.to_be_bytes());
        b[12..16].copy_from_slice(&self.observation_domain_id.to_be_bytes());
        b
    }
}

/// A Template Record or an Options Template Record (RFC 7011 §3.4.1,
/// §3.4.2.2), validated on construction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TemplateRecord {
    id: u16,
    /// Zero for a plain template; the first `scope_field_count` fields of an
    /// options template are its scope.
    scope_field_count: u16,
    fields: Vec<FieldSpec>,
    record_len: usize,
}

impl TemplateRecord {
    /// A Template Record for data records made of `fields`, in order.
    pub fn new(id: u16, fields: Vec<FieldSpec>) -> Result<Self, IpfixError> {
        Self::build(id, 0, fields)
    }

    /// An Options Template Record: `scope` fields first, then `fields`.
    pub fn new_options(
        id: u16,
        scope: Vec<FieldSpec>,
        fields: Vec<FieldSpec>,
    ) -> Result<Self, IpfixError> {
        let invalid = |reason| IpfixError::InvalidTemplate {
            template_id: id,
            reason,
        };
        if scope.is_empty() {
            return Err(invalid(
                "an options template needs at least one scope field",
            ));
        }
        let scope_count = u16::try_from(scope.len()).map_err(|_| invalid("too many fields"))?;
        let mut all = scope;
        all.extend(fields);
        Self::build(id, scope_count, all)
    }

    fn build(id: u16, scope_field_count: u16, fields: Vec<FieldSpec>) -> Result<Self, IpfixError> {
        let invalid = |reason| IpfixError::InvalidTemplate {
            template_id: id,
            reason,
        };
        if id < MIN_TEMPLATE_ID {
            return Err(invalid("template ids start at 256"));
        }
        if fields.is_empty() {
            return Err(invalid("a template needs at least one field"));
        }
        if u16::try_from(fields.len()).is_err() {
            return Err(invalid("too many fields"));
        }
        let mut record_len = 0usize;
        for f in &fields {
            if f.id & ENTERPRISE_BIT != 0 {
                return Err(invalid("an IE id must be below 32768"));
            }
            if f.length == 0 {
                return Err(invalid("a field cannot be zero bytes long"));
            }
            if f.length == VARIABLE_LENGTH {
                return Err(invalid("variable-length fields are not supported"));
            }
            record_len += usize::from(f.length);
        }
        // A data record must fit a message next to the header and its set header.
        if record_len > MAX_MESSAGE_LEN - MESSAGE_HEADER_LEN - SET_HEADER_LEN {
            return Err(invalid("data records would exceed the largest message"));
        }
        Ok(Self {
            id,
            scope_field_count,
            fields,
            record_len,
        })
    }

    /// The template id, which is also the set id of its data sets.
    pub fn id(&self) -> u16 {
        self.id
    }

    /// Whether this is an Options Template Record.
    pub fn is_options(&self) -> bool {
        self.scope_field_count > 0
    }

    /// Number of scope fields (zero for a plain template).
    pub fn scope_field_count(&self) -> u16 {
        self.scope_field_count
    }

    /// All fields, scope fields first.
    pub fn fields(&self) -> &[FieldSpec] {
        &self.fields
    }

    /// Id of the set that carries this template record.
    pub fn set_id(&self) -> u16 {
        if self.is_options() {
            OPTIONS_TEMPLATE_SET_ID
        } else {
            TEMPLATE_SET_ID
        }
    }

    /// Length in bytes of each data record described by this template.
    pub fn data_record_len(&self) -> usize {
        self.record_len
    }

    /// Bytes the template record takes inside its set.
    pub fn encoded_len(&self) -> usize {
        let header = if self.is_options() { 6 } else { 4 };
        header
            + self
                .fields
                .iter()
                .map(FieldSpec::encoded_len)
                .sum::<usize>()
    }

    /// Appends the template record (without set header) in wire format.
    pub fn encode(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.id.to_be_bytes());
        // Lengths were checked in `build`, so the count fits.
        let count = u16::try_from(self.fields.len()).unwrap_or(u16::MAX);
        out.extend_from_slice(&count.to_be_bytes());
        if self.is_options() {
            out.extend_from_slice(&self.scope_field_count.to_be_bytes());
        }
        for f in &self.fields {
            f.encode(out);
        }
    }
}

/// The sets of one message, before the header is put in front.
///
/// The header is written only when the message is sent, because the
/// sequence number depends on what was sent before it on the stream.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PackedMessage {
    body: Vec<u8>,
    data_records: u32,
    template_ids: Vec<u16>,
}

impl PackedMessage {
    /// The sets, in wire format.
    pub fn body(&self) -> &[u8] {
        &self.body
    }

    /// Number of data records (flow and options data) in the message.
    pub fn data_records(&self) -> u32 {
        self.data_records
    }

    /// Ids of the template records in the message, in order.
    pub fn template_ids(&self) -> &[u16] {
        &self.template_ids
    }

    /// Length of the whole message, header included.
    pub fn len(&self) -> usize {
        MESSAGE_HEADER_LEN + self.body.len()
    }

    /// Whether the message carries no set at all.
    pub fn is_empty(&self) -> bool {
        self.body.is_empty()
    }

    /// The complete message: header followed by the sets.
    pub fn encode(&self, export_time: u32, sequence: u32, observation_domain_id: u32) -> Vec<u8> {
        let header = MessageHeader {
            // The packer never lets a message grow past MAX_MESSAGE_LEN.
            length: u16::try_from(self.len()).unwrap_or(u16::MAX),
            export_time,
            sequence,
            observation_domain_id,
        };
        let mut out = Vec::with_capacity(self.len());
        out.extend_from_slice(&header.to_bytes());
        out.extend_from_slice(&self.body);
        out
    }
}

/// Packs template and data records, in the order given, into as few
/// messages of at most `mtu` bytes as that order allows.
///
/// Consecutive records of the same set id share one set; a set that does
/// not fit is closed and continued in the next message. Because order is
/// kept, a template pushed before the data records that use it always ends
/// up in the same or an earlier message. Filling each message greedily is
/// optimal here: dropping leading records from a message never makes the
/// rest longer.
#[derive(Debug)]
pub struct MessagePacker {
    mtu: usize,
    done: Vec<PackedMessage>,
    current: PackedMessage,
    /// Set id and body offset of the set being filled, if any.
    open_set: Option<(u16, usize)>,
}

impl MessagePacker {
    /// A packer for messages of at most `mtu` bytes, header included.
    pub fn new(mtu: usize) -> Result<Self, IpfixError> {
        // The smallest useful message holds a header, a set header and a
        // 4-byte template header with one field.
        let min = MESSAGE_HEADER_LEN + SET_HEADER_LEN + 8;
        if !(min..=MAX_MESSAGE_LEN).contains(&mtu) {
            return Err(IpfixError::MtuOutOfRange {
                mtu,
                min,
                max: MAX_MESSAGE_LEN,
            });
        }
        Ok(Self {
            mtu,
            done: Vec::new(),
            current: PackedMessage::default(),
            open_set: None,
        })
    }

    /// Adds a template record (to a Template or Options Template Set).
    pub fn push_template(&mut self, template: &TemplateRecord) -> Result<(), IpfixError> {
        let mut bytes = Vec::with_capacity(template.encoded_len());
        template.encode(&mut bytes);
        self.push(template.set_id(), &bytes, "template")?;
        self.current.template_ids.push(template.id());
        Ok(())
    }

    /// Adds one data record described by `template`.
    pub fn push_data(
        &mut self,
        template: &TemplateRecord,
        record: &[u8],
    ) -> Result<(), IpfixError> {
        if record.len() != template.data_record_len() {
            return Err(IpfixError::RecordLength {
                template_id: template.id(),
                expected: template.data_record_len(),
                actual: record.len(),
            });
        }
        self.push(template.id(), record, "data record")?;
        self.current.data_records += 1;
        Ok(())
    }

    /// Closes the last message and returns all messages in order.
    pub fn finish(mut self) -> Vec<PackedMessage> {
        self.flush();
        self.done
    }

    fn push(&mut self, set_id: u16, bytes: &[u8], kind: &'static str) -> Result<(), IpfixError> {
        let alone = MESSAGE_HEADER_LEN + SET_HEADER_LEN + bytes.len();
        if alone > self.mtu {
            return Err(IpfixError::TooLarge {
                kind,
                needed: alone,
                mtu: self.mtu,
            });
        }
        let mut continues = matches!(self.open_set, Some((id, _)) if id == set_id);
        let need = bytes.len() + if continues { 0 } else { SET_HEADER_LEN };
        if MESSAGE_HEADER_LEN + self.current.body.len() + need > self.mtu {
            self.flush();
            continues = false;
        }
        if !continues {
            self.close_set();
            let offset = self.current.body.len();
            self.current.body.extend_from_slice(&set_id.to_be_bytes());
            // Placeholder length, patched when the set is closed.
            self.current.body.extend_from_slice(&[0, 0]);
            self.open_set = Some((set_id, offset));
        }
        self.current.body.extend_from_slice(bytes);
        Ok(())
    }

    fn close_set(&mut self) {
        if let Some((_, offset)) = self.open_set.take() {
            let len = self.current.body.len() - offset;
            // The MTU check keeps every set below MAX_MESSAGE_LEN.
            let len = u16::try_from(len).unwrap_or(u16::MAX);
            self.current.body[offset + 2..offset + 4].copy_from_slice(&len.to_be_bytes());
        }
    }

    fn flush(&mut self) {
        self.close_set();
        if !self.current.is_empty() {
            self.done.push(std::mem::take(&mut self.current));
        }
    }
}

/// The sequence state of one stream (one collector) for one observation
/// domain.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DomainStream {
    observation_domain_id: u32,
    next_sequence: u32,
}

impl DomainStream {
    /// A stream that has sent nothing yet.
    pub fn new(observation_domain_id: u32) -> Self {
        Self {
            observation_domain_id,
            next_sequence: 0,
        }
    }

    /// Sequence number the next message will carry.
    pub fn next_sequence(&self) -> u32 {
        self.next_sequence
    }

    /// The observation domain id of the stream.
    pub fn observation_domain_id(&self) -> u32 {
        self.observation_domain_id
    }

    /// The complete message with this stream's header.
    pub fn seal(&self, message: &PackedMessage, export_time: u32) -> Vec<u8> {
        message.encode(export_time, self.next_sequence, self.observation_domain_id)
    }

    /// Records that `message` went out, so its data records count.
    pub fn mark_sent(&mut self, message: &PackedMessage) {
        self.next_sequence = self.next_sequence.wrapping_add(message.data_records());
    }

    /// Starts over at zero, for a new transport session.
    pub fn reset(&mut self) {
        self.next_sequence = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::super::testdecode::{decode_message, SetKind};
    use super::*;

    #[test]
    fn header_bytes_match_rfc_layout() {
        let h = MessageHeader {
            length: 0x01F4,
            export_time: 0x6553_F100,
            sequence: 0x0000_0102,
            observation_domain_id: 0xA1B2_C3D4,
        };
        let expected: [u8; 16] = [
            0x00, 0x0A, // version 10
            0x01, 0xF4, // length 500
            0x65, 0x53, 0xF1, 0x00, // export time
            0x00, 0x00, 0x01, 0x02, // sequence 258
            0xA1, 0xB2, 0xC3, 0xD4, // observation domain
        ];
        assert_eq!(h.to_bytes(), expected);
    }

    #[test]
    fn field_specifier_with_enterprise_bit() {
        let mut out = Vec::new();
        FieldSpec::enterprise(32473, 5, 8).encode(&mut out);
        FieldSpec::iana(152, 8).encode(&mut out);
        assert_eq!(
            out,
            [
                0x80, 0x05, 0x00, 0x08, 0x00, 0x00, 0x7E, 0xD9, // 0x8000|5, len 8, PEN 32473
                0x00, 0x98, 0x00, 0x08, // 152, len 8
            ]
        );
    }

    #[test]
    fn template_set_and_data_set_bytes() {
        let t = TemplateRecord::new(
            256,
            vec![
                FieldSpec::iana(8, 4),
                FieldSpec::iana(4, 1),
                FieldSpec::iana(2, 8),
            ],
        )
        .expect("valid template");
        let mut p = MessagePacker::new(1400).expect("mtu");
        p.push_template(&t).expect("fits");
        let rec1 = [10, 0, 0, 1, 6, 0, 0, 0, 0, 0, 0, 0, 42];
        let rec2 = [10, 0, 0, 2, 17, 0, 0, 0, 0, 0, 0, 1, 0];
        p.push_data(&t, &rec1).expect("fits");
        p.push_data(&t, &rec2).expect("fits");
        let msgs = p.finish();
        assert_eq!(msgs.len(), 1);
        let bytes = msgs[0].encode(1_700_000_000, 5, 7);
        #[rustfmt::skip]
        let expected: Vec<u8> = vec![
            // message header: version, length 66, time, sequence 5, domain 7
            0x00, 0x0A, 0x00, 0x42, 0x65, 0x53, 0xF1, 0x00,
            0x00, 0x00, 0x00, 0x05, 0x00, 0x00, 0x00, 0x07,
            // template set: id 2, length 20
            0x00, 0x02, 0x00, 0x14,
            // template 256, 3 fields
            0x01, 0x00, 0x00, 0x03,
            0x00, 0x08, 0x00, 0x04, // sourceIPv4Address, 4
            0x00, 0x04, 0x00, 0x01, // protocolIdentifier, 1
            0x00, 0x02, 0x00, 0x08, // packetDeltaCount, 8
            // data set: id 256, length 4 + 2 * 13 = 30
            0x01, 0x00, 0x00, 0x1E,
            10, 0, 0, 1, 6, 0, 0, 0, 0, 0, 0, 0, 42,
            10, 0, 0, 2, 17, 0, 0, 0, 0, 0, 0, 1, 0,
        ];
        assert_eq!(bytes, expected);
        assert_eq!(msgs[0].data_records(), 2);
        assert_eq!(msgs[0].template_ids(), &[256]);
    }

    #[test]
    fn options_template_record_bytes() {
        let t = TemplateRecord::new_options(
            300,
            vec![FieldSpec::iana(10, 4)],
            vec![FieldSpec::enterprise(9, 1, 8), FieldSpec::iana(164, 8)],
        )
        .expect("valid");
        let mut p = MessagePacker::new(512).expect("mtu");
        p.push_template(&t).expect("fits");
        let msgs = p.finish();
        #[rustfmt::skip]
        let expected_body: Vec<u8> = vec![
            0x00, 0x03, 0x00, 0x1A,             // options template set, length 26
            0x01, 0x2C, 0x00, 0x03, 0x00, 0x01, // id 300, 3 fields, 1 scope field
            0x00, 0x0A, 0x00, 0x04,             // ingressInterface, 4
            0x80, 0x01, 0x00, 0x08, 0x00, 0x00, 0x00, 0x09, // PEN 9 IE 1, 8
            0x00, 0xA4, 0x00, 0x08,             // ignoredPacketTotalCount, 8
        ];
        assert_eq!(msgs[0].body(), expected_body.as_slice());
    }

    #[test]
    fn invalid_templates_are_refused() {
        assert!(TemplateRecord::new(255, vec![FieldSpec::iana(1, 8)]).is_err());
        assert!(TemplateRecord::new(256, vec![]).is_err());
        assert!(TemplateRecord::new(256, vec![FieldSpec::iana(1, 0xFFFF)]).is_err());
        assert!(TemplateRecord::new(256, vec![FieldSpec::iana(0x8001, 8)]).is_err());
        assert!(TemplateRecord::new_options(256, vec![], vec![FieldSpec::iana(1, 8)]).is_err());
    }

    #[test]
    fn record_length_must_match_template() {
        let t = TemplateRecord::new(256, vec![FieldSpec::iana(2, 8)]).expect("valid");
        let mut p = MessagePacker::new(100).expect("mtu");
        let err = p.push_data(&t, &[0; 7]).expect_err("wrong length");
        assert!(matches!(
            err,
            IpfixError::RecordLength {
                template_id: 256,
                expected: 8,
                actual: 7
            }
        ));
    }

    #[test]
    fn oversized_record_or_template_is_an_error() {
        let t = TemplateRecord::new(256, vec![FieldSpec::iana(27, 16); 5]).expect("valid");
        let mut p = MessagePacker::new(99).expect("mtu");
        // 16 + 4 + 80 = 100 > 99
        let err = p.push_data(&t, &[0; 80]).expect_err("too large");
        assert!(matches!(
            err,
            IpfixError::TooLarge {
                needed: 100,
                mtu: 99,
                ..
            }
        ));
        let big = TemplateRecord::new(257, vec![FieldSpec::iana(1, 8); 20]).expect("valid");
        // 16 + 4 + 4 + 80 = 104 > 99
        let err = p.push_template(&big).expect_err("too large");
        assert!(matches!(
            err,
            IpfixError::TooLarge {
                kind: "template",
                ..
            }
        ));
        assert!(p.finish().is_empty());
        assert!(MessagePacker::new(20).is_err());
        assert!(MessagePacker::new(70_000).is_err());
    }

    #[test]
    fn uses_as_few_messages_as_possible() {
        let t = TemplateRecord::new(256, vec![FieldSpec::iana(2, 8); 2]).expect("valid");
        // 16 + 4 + 5 * 16 = 100: exactly five records per message.
        let mut p = MessagePacker::new(100).expect("mtu");
        for i in 0..12u64 {
            let mut r = i.to_be_bytes().to_vec();
            r.extend_from_slice(&[0; 8]);
            p.push_data(&t, &r).expect("fits");
        }
        let msgs = p.finish();
        assert_eq!(
            msgs.iter().map(|m| m.data_records()).collect::<Vec<_>>(),
            [5, 5, 2]
        );
        assert_eq!(msgs[0].len(), 100);
    }

    #[test]
    fn mtu_splitting_keeps_every_record_once_in_order_templates_first() {
        let a = TemplateRecord::new(256, vec![FieldSpec::iana(2, 8), FieldSpec::iana(8, 4)])
            .expect("valid");
        let b = TemplateRecord::new(257, vec![FieldSpec::iana(2, 8), FieldSpec::iana(27, 16)])
            .expect("valid");
        let opt = TemplateRecord::new_options(
            258,
            vec![FieldSpec::iana(10, 4)],
            vec![FieldSpec::iana(2, 8)],
        )
        .expect("valid");
        let mtu = 150;
        let mut p = MessagePacker::new(mtu).expect("mtu");
        let mut sent = Vec::new();
        p.push_template(&a).expect("fits");
        for i in 0..500u64 {
            // Introduce the second template and the options template part way.
            if i == 100 {
                p.push_template(&b).expect("fits");
            }
            if i == 300 {
                p.push_template(&opt).expect("fits");
            }
            let (t, mut r) = match i % 3 {
                0 if i >= 100 => (&b, vec![0u8; 16]),
                2 if i >= 300 => (&opt, vec![0u8; 4]),
                _ => (&a, vec![0u8; 4]),
            };
            r.splice(0..0, i.to_be_bytes());
            p.push_data(t, &r).expect("fits");
            sent.push((t.id(), i));
        }
        let msgs = p.finish();
        assert!(msgs.len() > 1);
        let mut seen_templates = std::collections::HashMap::new();
        let mut received = Vec::new();
        let mut seq = 0u32;
        for (n, m) in msgs.iter().enumerate() {
            let bytes = m.encode(0, seq, 1);
            assert!(bytes.len() <= mtu, "message {n} is {} bytes", bytes.len());
            let decoded = decode_message(&bytes).expect("decodes");
            assert_eq!(decoded.sequence, seq);
            for set in decoded.sets {
                match set.kind {
                    SetKind::Templates(ts) => {
                        for t in ts {
                            seen_templates.insert(t.id, t);
                        }
                    }
                    SetKind::Data { template_id, body } => {
                        let t = seen_templates
                            .get(&template_id)
                            .expect("template precedes its data");
                        let len = t.record_len();
                        assert_eq!(body.len() % len, 0);
                        for r in body.chunks(len) {
                            let mut k = [0u8; 8];
                            k.copy_from_slice(&r[..8]);
                            received.push((template_id, u64::from_be_bytes(k)));
                        }
                    }
                }
            }
            seq += m.data_records();
        }
        assert_eq!(received, sent);
        assert_eq!(seq, 500);
    }

    #[test]
    fn domain_stream_counts_sent_records_modulo_2_32() {
        let t = TemplateRecord::new(256, vec![FieldSpec::iana(2, 8)]).expect("valid");
        let mut p = MessagePacker::new(100).expect("mtu");
        for _ in 0..3 {
            p.push_data(&t, &[0; 8]).expect("fits");
        }
        let msgs = p.finish();
        let mut s = DomainStream::new(9);
        s.next_sequence = u32::MAX - 1;
        let bytes = s.seal(&msgs[0], 0);
        assert_eq!(&bytes[8..12], &(u32::MAX - 1).to_be_bytes());
        assert_eq!(&bytes[12..16], &9u32.to_be_bytes());
        s.mark_sent(&msgs[0]);
        assert_eq!(s.next_sequence(), 1);
        s.reset();
        assert_eq!(s.next_sequence(), 0);
    }
}
