//! How record values become SQLite values and back: times in milliseconds,
//! counts as signed integers, key fields with sentinels for absent ones.

use std::fmt::Write as _;
use std::net::IpAddr;
use std::path::Path;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use netledger::{Addr, Bucket, Buckets, Count, FlowKey, L4};
use rusqlite::Row;

use super::error::{Error, Result};

/// One hour in milliseconds.
pub(crate) const HOUR_MS: i64 = 3_600_000;

/// Milliseconds since the Unix epoch (negative before it), saturating far
/// beyond any cut.
pub(crate) fn ms(t: SystemTime) -> i64 {
    match t.duration_since(UNIX_EPOCH) {
        Ok(d) => i64::try_from(d.as_millis()).unwrap_or(i64::MAX),
        Err(e) => i64::try_from(e.duration().as_millis()).map_or(i64::MIN, |m| -m),
    }
}

/// The time `ms` milliseconds after the Unix epoch.
pub(crate) fn time(ms: i64) -> SystemTime {
    let d = Duration::from_millis(ms.unsigned_abs());
    if ms >= 0 {
        UNIX_EPOCH + d
    } else {
        UNIX_EPOCH - d
    }
}

/// A duration in milliseconds, saturating.
pub(crate) fn dur_ms(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

/// The start of the UTC hour holding `ms`.
pub(crate) fn hour_of(ms: i64) -> i64 {
    ms.div_euclid(HOUR_MS) * HOUR_MS
}

/// The first hour start at or after `ms`.
pub(crate) fn hour_ceil(ms: i64) -> i64 {
    let h = hour_of(ms);
    if h == ms {
        h
    } else {
        h.saturating_add(HOUR_MS)
    }
}

/// A count as SQLite's signed integer.
pub(crate) fn int(what: &'static str, value: u64) -> Result<i64> {
    i64::try_from(value).map_err(|_| Error::TooLarge { what, value })
}

/// A stored integer as a count; a negative one cannot have been written by
/// the store.
pub(crate) fn uint(path: &Path, what: &'static str, value: i64) -> Result<u64> {
    u64::try_from(value).map_err(|_| Error::BadValue {
        path: path.to_path_buf(),
        what,
        value: value.to_string(),
    })
}

/// The bucket columns of `cut` and `hour_ledger`, in [`Bucket::ALL`] order:
/// `seen_packets, seen_bytes, counted_packets, ...`.
pub(crate) fn bucket_columns(prefix: &str) -> String {
    let mut s = String::new();
    for b in Bucket::ALL {
        if !s.is_empty() {
            s.push_str(", ");
        }
        let _ = write!(s, "{prefix}{0}_packets, {prefix}{0}_bytes", b.name());
    }
    s
}

/// `sum(c)` over every bucket column, for aggregate queries.
pub(crate) fn bucket_sums(prefix: &str) -> String {
    let mut s = String::new();
    for b in Bucket::ALL {
        if !s.is_empty() {
            s.push_str(", ");
        }
        let _ = write!(
            s,
            "coalesce(sum({prefix}{0}_packets), 0), coalesce(sum({prefix}{0}_bytes), 0)",
            b.name()
        );
    }
    s
}

/// Every bucket's packets and bytes as integers, in [`bucket_columns`] order.
pub(crate) fn bucket_values(b: &Buckets) -> Result<[i64; 2 * Bucket::ALL.len()]> {
    let mut out = [0i64; 2 * Bucket::ALL.len()];
    for (i, bucket) in Bucket::ALL.into_iter().enumerate() {
        let c = b.get(bucket);
        out[2 * i] = int("bucket packets", c.packets)?;
        out[2 * i + 1] = int("bucket bytes", c.bytes)?;
    }
    Ok(out)
}

/// Buckets from `row`'s columns `at..`, in [`bucket_columns`] order.
pub(crate) fn buckets_from(path: &Path, row: &Row<'_>, at: usize) -> Result<Buckets> {
    let mut b = Buckets::default();
    for (i, bucket) in Bucket::ALL.into_iter().enumerate() {
        let c = count_from(path, row, at + 2 * i)?;
        b.add_to(bucket, c);
    }
    Ok(b)
}

/// A count from `row`'s columns `at` (packets) and `at + 1` (bytes).
pub(crate) fn count_from(path: &Path, row: &Row<'_>, at: usize) -> Result<Count> {
    let get = |i: usize| -> Result<i64> {
        row.get(i).map_err(|source| Error::Sqlite {
            path: path.to_path_buf(),
            op: "reading a row",
            source,
        })
    };
    Ok(Count {
        packets: uint(path, "packet count", get(at)?)?,
        bytes: uint(path, "byte count", get(at + 1)?)?,
    })
}

/// A flow key's columns: src, dst, proto, sport, dport, icmp_type,
/// icmp_code, fragment, vlan. '' and -1 stand for an absent field.
#[derive(Debug, Default, Clone)]
pub(crate) struct KeyColumns {
    pub src: String,
    pub dst: String,
    pub nums: [i64; 7],
}

/// The key columns' names, in [`KeyColumns`] order.
pub(crate) const KEY_COLUMNS: &str =
    "src, dst, proto, sport, dport, icmp_type, icmp_code, fragment, vlan";

impl KeyColumns {
    /// Fill from `key`, reusing the address buffers (a commit encodes a
    /// million keys).
    pub fn set(&mut self, key: &FlowKey) {
        addr_text(&mut self.src, key.src);
        addr_text(&mut self.dst, key.dst);
        let (sport, dport) = key.ports().map_or((-1, -1), |(s, d)| (s.into(), d.into()));
        let (kind, code) = key.icmp().map_or((-1, -1), |(k, c)| (k.into(), c.into()));
        self.nums = [
            key.proto.map_or(-1, i64::from),
            sport,
            dport,
            kind,
            code,
            i64::from(key.fragment),
            key.vlan.map_or(-1, i64::from),
        ];
    }
}

/// Write `a` as text into `buf` ('' when absent).
fn addr_text(buf: &mut String, a: Option<Addr>) {
    buf.clear();
    if let Some(a) = a {
        let _ = write!(buf, "{a}");
    }
}

/// An address as stored: "10.0.0.1", "10.0.0.0/24", "fd00::/64"; '' is none.
pub(crate) fn parse_addr(s: &str) -> Option<Option<Addr>> {
    if s.is_empty() {
        return Some(None);
    }
    let (ip, prefix) = match s.split_once('/') {
        Some((ip, p)) => (ip.parse::<IpAddr>().ok()?, Some(p.parse::<u8>().ok()?)),
        None => (s.parse::<IpAddr>().ok()?, None),
    };
    let full = if ip.is_ipv4() { 32 } else { 128 };
    Some(Some(Addr {
        ip,
        prefix: prefix.unwrap_or(full),
    }))
}

/// The key in `row`'s columns `at..at + 9` ([`KEY_COLUMNS`] order).
pub(crate) fn key_from(path: &Path, row: &Row<'_>, at: usize) -> Result<FlowKey> {
    let sqlerr = |source| Error::Sqlite {
        path: path.to_path_buf(),
        op: "reading a key",
        source,
    };
    let bad = |what: &'static str, value: String| Error::BadValue {
        path: path.to_path_buf(),
        what,
        value,
    };
    let text = |i: usize| -> Result<String> { row.get::<_, String>(i).map_err(sqlerr) };
    let num = |i: usize| -> Result<i64> { row.get::<_, i64>(i).map_err(sqlerr) };
    let src = text(at)?;
    let src = parse_addr(&src).ok_or_else(|| bad("address", src.clone()))?;
    let dst = text(at + 1)?;
    let dst = parse_addr(&dst).ok_or_else(|| bad("address", dst.clone()))?;
    let mut n = [0i64; 7];
    for (i, v) in n.iter_mut().enumerate() {
        *v = num(at + 2 + i)?;
    }
    let [proto, sport, dport, kind, code, fragment, vlan] = n;
    let opt_u8 = |what, v: i64| -> Result<Option<u8>> {
        if v == -1 {
            Ok(None)
        } else {
            u8::try_from(v)
                .map(Some)
                .map_err(|_| bad(what, v.to_string()))
        }
    };
    let opt_u16 = |what, v: i64| -> Result<Option<u16>> {
        if v == -1 {
            Ok(None)
        } else {
            u16::try_from(v)
                .map(Some)
                .map_err(|_| bad(what, v.to_string()))
        }
    };
    let l4 = match (
        opt_u16("port", sport)?,
        opt_u16("port", dport)?,
        opt_u8("ICMP type", kind)?,
        opt_u8("ICMP code", code)?,
    ) {
        (Some(src), Some(dst), None, None) => L4::Ports { src, dst },
        (None, None, Some(kind), Some(code)) => L4::Icmp { kind, code },
        (None, None, None, None) => L4::None,
        _ => return Err(bad("L4 fields", format!("{sport} {dport} {kind} {code}"))),
    };
    Ok(FlowKey {
        src,
        dst,
        proto: opt_u8("protocol", proto)?,
        l4,
        fragment: fragment == 1,
        vlan: opt_u16("VLAN id", vlan)?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hours_round_both_ways() {
        assert_eq!(hour_of(7_199_999), 3_600_000);
        assert_eq!(hour_of(-1), -HOUR_MS);
        assert_eq!(hour_ceil(3_600_000), 3_600_000);
        assert_eq!(hour_ceil(3_600_001), 7_200_000);
    }

    #[test]
    fn times_round_trip_in_milliseconds() {
        for m in [0i64, 1, 1_795_640_400_123, -1500] {
            assert_eq!(ms(time(m)), m);
        }
    }

    #[test]
    fn addresses_round_trip() {
        for s in ["10.0.0.1", "10.0.0.0/24", "fd00::1", "fd00::/64"] {
            let a = parse_addr(s).unwrap().unwrap();
            assert_eq!(a.to_string(), s);
        }
        assert_eq!(parse_addr(""), Some(None));
        assert_eq!(parse_addr("10.0.0.1/x"), None);
        assert_eq!(parse_addr("nonsense"), None);
    }
}
