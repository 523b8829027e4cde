//! A minimal IPFIX decoder for the unit tests, written from RFC 7011's
//! layouts independently of the encoder so the two check each other.

use std::collections::HashMap;

/// A field specifier as read back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DecodedField {
    pub id: u16,
    pub length: u16,
    pub enterprise: Option<u32>,
}

/// A template or options template as read back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DecodedTemplate {
    pub id: u16,
    pub scope_field_count: u16,
    pub fields: Vec<DecodedField>,
}

impl DecodedTemplate {
    pub fn record_len(&self) -> usize {
        self.fields.iter().map(|f| usize::from(f.length)).sum()
    }
}

#[derive(Debug, Clone)]
pub enum SetKind {
    Templates(Vec<DecodedTemplate>),
    Data { template_id: u16, body: Vec<u8> },
}

#[derive(Debug, Clone)]
pub struct DecodedSet {
    pub kind: SetKind,
}

#[derive(Debug, Clone)]
pub struct DecodedMessage {
    pub export_time: u32,
    pub sequence: u32,
    pub domain: u32,
    pub sets: Vec<DecodedSet>,
    /// Data records in the message; filled in by [`decode_stream`].
    pub data_records: usize,
}

fn be16(b: &[u8], at: usize) -> Result<u16, String> {
    b.get(at..at + 2)
        .map(|s| u16::from_be_bytes([s[0], s[1]]))
        .ok_or_else(|| format!("short read at {at}"))
}

fn be32(b: &[u8], at: usize) -> Result<u32, String> {
    b.get(at..at + 4)
        .map(|s| u32::from_be_bytes([s[0], s[1], s[2], s[3]]))
        .ok_or_else(|| format!("short read at {at}"))
}

/// Decodes one message, checking the header and every set length.
pub fn decode_message(b: &[u8]) -> Result<DecodedMessage, String> {
    if be16(b, 0)? != 10 {
        return Err("version is not 10".into());
    }
    let length = be16(b, 2)?;
    if usize::from(length) != b.len() {
        return Err(format!("length {length} but {} bytes", b.len()));
    }
    let mut sets = Vec::new();
    let mut at = 16;
    while at < b.len() {
        let id = be16(b, at)?;
        let len = usize::from(be16(b, at + 2)?);
        if len < 4 || at + len > b.len() {
            return Err(format!("bad set length {len} at {at}"));
        }
        let body = &b[at + 4..at + len];
        let kind = match id {
            2 | 3 => SetKind::Templates(decode_templates(body, id == 3)?),
            256.. => SetKind::Data {
                template_id: id,
                body: body.to_vec(),
            },
            _ => return Err(format!("reserved set id {id}")),
        };
        sets.push(DecodedSet { kind });
        at += len;
    }
    Ok(DecodedMessage {
        export_time: be32(b, 4)?,
        sequence: be32(b, 8)?,
        domain: be32(b, 12)?,
        sets,
        data_records: 0,
    })
}

fn decode_templates(body: &[u8], options: bool) -> Result<Vec<DecodedTemplate>, String> {
    let mut out = Vec::new();
    let mut at = 0;
    while at + 4 <= body.len() {
        let id = be16(body, at)?;
        let count = be16(body, at + 2)?;
        at += 4;
        let scope_field_count = if options {
            let s = be16(body, at)?;
            at += 2;
            s
        } else {
            0
        };
        let mut fields = Vec::new();
        for _ in 0..count {
            let raw = be16(body, at)?;
            let length = be16(body, at + 2)?;
            at += 4;
            let enterprise = if raw & 0x8000 != 0 {
                let pen = be32(body, at)?;
                at += 4;
                Some(pen)
            } else {
                None
            };
            fields.push(DecodedField {
                id: raw & 0x7FFF,
                length,
                enterprise,
            });
        }
        out.push(DecodedTemplate {
            id,
            scope_field_count,
            fields,
        });
    }
    if at != body.len() {
        return Err("trailing bytes in template set".into());
    }
    Ok(out)
}

/// One data record as (IE id, enterprise, value bytes) per field.
pub type DecodedRecord = Vec<(u16, Option<u32>, Vec<u8>)>;

/// Decoded messages and their data records (template id, fields).
pub type Decoded = (Vec<DecodedMessage>, Vec<(u16, DecodedRecord)>);

/// Decodes the messages of one stream, remembering templates across calls
/// as a collector would.
#[derive(Debug, Default)]
pub struct StreamDecoder {
    templates: HashMap<u16, DecodedTemplate>,
}

impl StreamDecoder {
    /// Decodes `messages` in order; fails when a data set arrives before its
    /// template.
    pub fn feed(&mut self, messages: &[Vec<u8>]) -> Result<Decoded, String> {
        let mut records = Vec::new();
        let mut decoded = Vec::new();
        for m in messages {
            let mut msg = decode_message(m)?;
            for set in &msg.sets {
                match &set.kind {
                    SetKind::Templates(ts) => {
                        for t in ts {
                            self.templates.insert(t.id, t.clone());
                        }
                    }
                    SetKind::Data { template_id, body } => {
                        let t = self
                            .templates
                            .get(template_id)
                            .ok_or_else(|| format!("data set {template_id} before its template"))?;
                        let len = t.record_len();
                        if body.len() % len != 0 {
                            return Err("data set is not a whole number of records".into());
                        }
                        for r in body.chunks(len) {
                            let mut at = 0;
                            let mut rec = Vec::new();
                            for f in &t.fields {
                                let l = usize::from(f.length);
                                rec.push((f.id, f.enterprise, r[at..at + l].to_vec()));
                                at += l;
                            }
                            records.push((*template_id, rec));
                            msg.data_records += 1;
                        }
                    }
                }
            }
            decoded.push(msg);
        }
        Ok((decoded, records))
    }
}

/// Decodes a whole stream from its first message.
pub fn decode_stream(messages: &[Vec<u8>]) -> Result<Decoded, String> {
    StreamDecoder::default().feed(messages)
}

/// Value of a field as an unsigned big-endian integer.
pub fn uint(rec: &DecodedRecord, id: u16, enterprise: Option<u32>) -> Option<u64> {
    rec.iter()
        .find(|(i, e, _)| *i == id && *e == enterprise)
        .map(|(_, _, v)| v.iter().fold(0u64, |acc, b| (acc << 8) | u64::from(*b)))
}
