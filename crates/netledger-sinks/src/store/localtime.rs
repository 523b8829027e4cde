//! Local time for reports: which local day or month a UTC hour belongs to,
//! where local periods begin and end, and the times the command line takes.
//!
//! The store keeps UTC. Reports cut periods in a [`Zone`]: UTC (pure
//! arithmetic), the process's local zone (`TZ`, else `/etc/localtime`), or
//! a named zone of the zone database. The last two go through the C
//! library (`localtime_r`, `mktime`), whose zone is process-wide state read
//! from the `TZ` variable: every call here holds one lock, sets `TZ` for a
//! named zone (and back for the local one) and calls `tzset` under it, so
//! reports in different zones may run on several threads at once.

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, SystemTime};

use netledger::civil_from_days;

use super::codec::time;
use super::error::{Error, Result};

/// A time zone that reports cut periods in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Zone {
    /// UTC (`--utc`).
    Utc,
    /// The process's zone: `TZ`, else `/etc/localtime`.
    Local,
    /// A zone of the zone database by name, e.g. `Europe/Berlin`.
    Named(String),
}

/// Where the zone database is: `TZDIR`, else Debian's place.
fn zone_dir() -> PathBuf {
    std::env::var_os("TZDIR").map_or_else(|| PathBuf::from("/usr/share/zoneinfo"), PathBuf::from)
}

impl Zone {
    /// The zone database's zone `name`, checked to exist (the C library
    /// would silently use UTC for an unknown name).
    pub fn named(name: &str) -> Result<Zone> {
        let dir = zone_dir();
        let name = name.strip_prefix(':').unwrap_or(name);
        let safe = !name.is_empty()
            && Path::new(name)
                .components()
                .all(|c| matches!(c, std::path::Component::Normal(_)));
        if safe && dir.join(name).is_file() {
            Ok(Zone::Named(name.to_string()))
        } else {
            Err(Error::UnknownZone {
                name: name.to_string(),
                dir,
            })
        }
    }

    /// The zone's name for people: "UTC", "Europe/Berlin", or the local
    /// zone's name as far as it can be told.
    pub fn name(&self) -> String {
        match self {
            Zone::Utc => "UTC".to_string(),
            Zone::Named(n) => n.clone(),
            Zone::Local => local_zone_name(),
        }
    }

    /// The local time at `unix` (seconds since the epoch).
    pub fn local(&self, unix: i64) -> Result<LocalTime> {
        match self {
            Zone::Utc => Ok(utc_local(unix)),
            _ => libc_local(self, unix),
        }
    }

    /// The instant of a local time. Fields out of range are carried like
    /// `mktime` does (month 13 is January of the next year, day 32 the 1st
    /// or 2nd of the next month), which is how the end of a period is
    /// found. A local time that occurs twice (the repeated hour when clocks
    /// go back) gives the first; one that does not occur gives the instant
    /// the clocks changed.
    pub fn unix(&self, year: i64, month: i64, day: i64, hour: i64, minute: i64) -> Result<i64> {
        match self {
            Zone::Utc => Ok(utc_unix(year, month, day, hour, minute)),
            _ => libc_unix(self, year, month, day, hour, minute),
        }
    }
}

/// A broken-down local time and its offset from UTC.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LocalTime {
    /// Year.
    pub year: i64,
    /// Month, 1 to 12.
    pub month: u32,
    /// Day of the month, 1 to 31.
    pub day: u32,
    /// Hour, 0 to 23.
    pub hour: u32,
    /// Minute.
    pub minute: u32,
    /// Second.
    pub second: u32,
    /// Seconds east of UTC.
    pub offset: i32,
}

impl LocalTime {
    /// RFC 3339 with the offset, to the second: `2026-10-25T02:00:00+01:00`
    /// (`Z` for a zero offset).
    pub fn rfc3339(&self) -> String {
        format!(
            "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}{}",
            self.year,
            self.month,
            self.day,
            self.hour,
            self.minute,
            self.second,
            offset_text(self.offset)
        )
    }
}

/// `Z`, or `+HH:MM` / `-HH:MM`.
pub(crate) fn offset_text(secs: i32) -> String {
    if secs == 0 {
        return "Z".to_string();
    }
    let sign = if secs < 0 { '-' } else { '+' };
    let m = secs.unsigned_abs() / 60;
    format!("{sign}{:02}:{:02}", m / 60, m % 60)
}

/// UTC broken down, without the C library.
fn utc_local(unix: i64) -> LocalTime {
    let (days, rem) = (unix.div_euclid(86_400), unix.rem_euclid(86_400));
    let (year, month, day) = civil_from_days(days);
    LocalTime {
        year,
        month,
        day,
        hour: (rem / 3600) as u32,
        minute: (rem % 3600 / 60) as u32,
        second: (rem % 60) as u32,
        offset: 0,
    }
}

/// A UTC civil time's instant, carrying fields out of range.
fn utc_unix(year: i64, month: i64, day: i64, hour: i64, minute: i64) -> i64 {
    let y = year + (month - 1).div_euclid(12);
    let m = (month - 1).rem_euclid(12) + 1;
    let days = days_from_civil(y, m as u32, 1) + day - 1;
    days * 86_400 + hour * 3600 + minute * 60
}

/// Days since 1970-01-01 of a proleptic Gregorian date (the inverse of
/// [`civil_from_days`]).
pub(crate) fn days_from_civil(year: i64, month: u32, day: u32) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y.rem_euclid(400);
    let mp = i64::from((month + 9) % 12);
    let doy = (153 * mp + 2) / 5 + i64::from(day) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// The number of days in a month.
fn days_in_month(year: i64, month: u32) -> u32 {
    match month {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        _ if (year % 4 == 0 && year % 100 != 0) || year % 400 == 0 => 29,
        _ => 28,
    }
}

extern "C" {
    /// POSIX `tzset(3)`: load the zone `TZ` names into the C library's
    /// zone state (the `libc` crate does not declare it on Linux).
    fn tzset();
}

/// The C library's zone state: the `TZ` the process started with, and the
/// one set now.
struct TzEnv {
    original: Option<OsString>,
    current: Option<OsString>,
}

/// Held around every use of the C library's zone state.
static TZ_ENV: Mutex<Option<TzEnv>> = Mutex::new(None);

/// Run `f` with the C library's zone set to `zone` (never `Utc`), holding
/// the lock.
fn with_zone<R>(zone: &Zone, f: impl FnOnce() -> R) -> R {
    let mut guard = TZ_ENV.lock().unwrap_or_else(PoisonError::into_inner);
    let env = guard.get_or_insert_with(|| {
        let original = std::env::var_os("TZ");
        TzEnv {
            current: original.clone(),
            original,
        }
    });
    let want = match zone {
        // The colon makes the C library read the zone file, never parse a rule.
        Zone::Named(n) => Some(OsString::from(format!(":{n}"))),
        _ => env.original.clone(),
    };
    if env.current != want {
        match &want {
            Some(v) => std::env::set_var("TZ", v),
            None => std::env::remove_var("TZ"),
        }
        env.current = want;
    }
    // SAFETY: tzset takes no arguments and only updates the C library's
    // zone state from TZ; every reader of that state here holds TZ_ENV.
    unsafe { tzset() };
    f()
}

/// A `struct tm` of zeros.
fn blank_tm() -> libc::tm {
    libc::tm {
        tm_sec: 0,
        tm_min: 0,
        tm_hour: 0,
        tm_mday: 0,
        tm_mon: 0,
        tm_year: 0,
        tm_wday: 0,
        tm_yday: 0,
        tm_isdst: 0,
        tm_gmtoff: 0,
        tm_zone: std::ptr::null(),
    }
}

/// `localtime_r` in `zone`.
fn libc_local(zone: &Zone, unix: i64) -> Result<LocalTime> {
    let fail = || Error::LocalTime {
        zone: zone.name(),
        what: unix.to_string(),
    };
    let t = libc::time_t::try_from(unix).map_err(|_| fail())?;
    let mut tm = blank_tm();
    let ok = with_zone(zone, || {
        // SAFETY: both pointers are to live locals for the whole call;
        // localtime_r writes only `tm`, and the zone state it reads is
        // guarded by TZ_ENV, held by with_zone.
        !unsafe { libc::localtime_r(&t, &mut tm) }.is_null()
    });
    if !ok {
        return Err(fail());
    }
    Ok(LocalTime {
        year: i64::from(tm.tm_year) + 1900,
        month: (tm.tm_mon + 1) as u32,
        day: tm.tm_mday as u32,
        hour: tm.tm_hour as u32,
        minute: tm.tm_min as u32,
        second: tm.tm_sec as u32,
        offset: i32::try_from(tm.tm_gmtoff).map_err(|_| fail())?,
    })
}

/// `mktime` in `zone`, the C library choosing summer or standard time.
fn libc_unix(zone: &Zone, year: i64, month: i64, day: i64, hour: i64, minute: i64) -> Result<i64> {
    let fail = || Error::LocalTime {
        zone: zone.name(),
        what: format!("{year:04}-{month:02}-{day:02} {hour:02}:{minute:02}"),
    };
    let field = |v: i64| libc::c_int::try_from(v).map_err(|_| fail());
    let mut tm = blank_tm();
    tm.tm_year = field(year - 1900)?;
    tm.tm_mon = field(month - 1)?;
    tm.tm_mday = field(day)?;
    tm.tm_hour = field(hour)?;
    tm.tm_min = field(minute)?;
    tm.tm_isdst = -1;
    let t = with_zone(zone, || {
        // SAFETY: `tm` is a live local for the whole call; mktime reads and
        // normalises only it, and the zone state it reads is guarded by
        // TZ_ENV, held by with_zone.
        unsafe { libc::mktime(&mut tm) }
    });
    // -1 is also 1969-12-31T23:59:59Z, which no report period starts at.
    if t == -1 {
        return Err(fail());
    }
    // time_t is 64 bits here but 32 on some targets.
    #[allow(clippy::useless_conversion)]
    Ok(i64::from(t))
}

/// The local zone's name: from `TZ` as the process started, else the link
/// `/etc/localtime`, else `/etc/timezone`.
fn local_zone_name() -> String {
    let original = {
        let guard = TZ_ENV.lock().unwrap_or_else(PoisonError::into_inner);
        match guard.as_ref() {
            Some(env) => env.original.clone(),
            None => std::env::var_os("TZ"),
        }
    };
    let from_path = |p: &str| -> String {
        match p.find("zoneinfo/") {
            Some(i) => p[i + "zoneinfo/".len()..].to_string(),
            None => p.to_string(),
        }
    };
    if let Some(tz) = original {
        let tz = tz.to_string_lossy();
        let tz = tz.strip_prefix(':').unwrap_or(&tz);
        return if tz.is_empty() {
            "UTC".to_string()
        } else {
            from_path(tz)
        };
    }
    if let Ok(target) = std::fs::read_link("/etc/localtime") {
        return from_path(&target.to_string_lossy());
    }
    match std::fs::read_to_string("/etc/timezone") {
        Ok(s) if !s.trim().is_empty() => s.trim().to_string(),
        _ => "local time".to_string(),
    }
}

/// What [`parse_time`] takes.
const TIME_FORMS: &str = "RFC 3339 such as 2026-12-01T00:00:00Z or 2026-12-01T01:00:00+01:00, \
a date such as 2026-12-01 (local midnight), now, or a time back from now such as -30m, -6h, -1d, -2w";

/// A time of the command line: RFC 3339 (`2026-12-01T00:00:00Z`, with an
/// offset, fractions of a second allowed), a date (`2026-12-01`: midnight
/// in `zone`), `now`, or a time back from `now`: `-45s`, `-30m`, `-6h`,
/// `-1d`, `-2w`.
pub fn parse_time(s: &str, now: SystemTime, zone: &Zone) -> Result<SystemTime> {
    let bad = || Error::InvalidTime {
        value: s.to_string(),
        expected: TIME_FORMS,
    };
    let t = s.trim();
    if t == "now" {
        return Ok(now);
    }
    if let Some(rel) = t.strip_prefix('-') {
        let split = rel.find(|c: char| !c.is_ascii_digit()).ok_or_else(bad)?;
        let (n, unit) = rel.split_at(split);
        let n: u64 = n.parse().map_err(|_| bad())?;
        let unit = match unit {
            "s" => 1,
            "m" => 60,
            "h" => 3600,
            "d" => 86_400,
            "w" => 7 * 86_400,
            _ => return Err(bad()),
        };
        let back = n.checked_mul(unit).ok_or_else(bad)?;
        return now.checked_sub(Duration::from_secs(back)).ok_or_else(bad);
    }
    let b = t.as_bytes();
    let digits = |r: std::ops::Range<usize>| -> Option<i64> {
        let part = b.get(r)?;
        if part.iter().all(u8::is_ascii_digit) {
            std::str::from_utf8(part).ok()?.parse().ok()
        } else {
            None
        }
    };
    let date = (|| {
        if b.get(4) != Some(&b'-') || b.get(7) != Some(&b'-') {
            return None;
        }
        let (y, m, d) = (digits(0..4)?, digits(5..7)?, digits(8..10)?);
        let m = u32::try_from(m).ok().filter(|m| (1..=12).contains(m))?;
        let d = u32::try_from(d)
            .ok()
            .filter(|d| (1..=days_in_month(y, m)).contains(d))?;
        Some((y, m, d))
    })()
    .ok_or_else(bad)?;
    let (y, m, d) = date;
    if b.len() == 10 {
        let at = zone.unix(y, i64::from(m), i64::from(d), 0, 0)?;
        return Ok(time(at.saturating_mul(1000)));
    }
    let parsed = (|| {
        if !matches!(b.get(10), Some(b'T' | b't' | b' '))
            || b.get(13) != Some(&b':')
            || b.get(16) != Some(&b':')
        {
            return None;
        }
        let (hh, mm, ss) = (digits(11..13)?, digits(14..16)?, digits(17..19)?);
        if hh > 23 || mm > 59 || ss > 60 {
            return None;
        }
        let mut i = 19;
        let mut millis = 0i64;
        if b.get(i) == Some(&b'.') {
            i += 1;
            let start = i;
            while b.get(i).is_some_and(u8::is_ascii_digit) {
                if i - start < 3 {
                    millis = millis * 10 + i64::from(b[i] - b'0');
                }
                i += 1;
            }
            if i == start {
                return None;
            }
            for _ in (i - start)..3 {
                millis *= 10;
            }
        }
        let offset = match b.get(i..)? {
            [b'Z' | b'z'] => 0,
            [sign @ (b'+' | b'-'), ..] if b.len() == i + 6 && b[i + 3] == b':' => {
                let (oh, om) = (digits(i + 1..i + 3)?, digits(i + 4..i + 6)?);
                if oh > 23 || om > 59 {
                    return None;
                }
                let off = oh * 3600 + om * 60;
                if *sign == b'-' {
                    -off
                } else {
                    off
                }
            }
            _ => return None,
        };
        let days = days_from_civil(y, m, d);
        let secs = days * 86_400 + hh * 3600 + mm * 60 + ss - offset;
        Some(secs * 1000 + millis)
    })()
    .ok_or_else(bad)?;
    Ok(time(parsed))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::codec::ms;
    use std::time::UNIX_EPOCH;

    fn at(secs: u64) -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(secs)
    }

    #[test]
    fn days_round_trip() {
        for days in [-800_000i64, -1, 0, 1, 10_957, 20_752, 2_932_896] {
            let (y, m, d) = civil_from_days(days);
            assert_eq!(days_from_civil(y, m, d), days);
        }
    }

    #[test]
    fn utc_carries_fields_out_of_range() {
        let z = Zone::Utc;
        assert_eq!(
            z.unix(2026, 13, 1, 0, 0).unwrap(),
            z.unix(2027, 1, 1, 0, 0).unwrap()
        );
        assert_eq!(
            z.unix(2026, 2, 29, 0, 0).unwrap(),
            z.unix(2026, 3, 1, 0, 0).unwrap()
        );
        assert_eq!(
            z.local(1_795_640_400).unwrap().rfc3339(),
            "2026-11-25T21:00:00Z"
        );
    }

    #[test]
    fn parses_every_form() {
        let now = at(1_795_640_400);
        let z = Zone::Utc;
        let p = |s| parse_time(s, now, &z).unwrap();
        assert_eq!(p("now"), now);
        assert_eq!(p("-1d"), at(1_795_640_400 - 86_400));
        assert_eq!(p("-2w"), at(1_795_640_400 - 14 * 86_400));
        assert_eq!(p("-30m"), at(1_795_640_400 - 1800));
        assert_eq!(p("2026-11-25T21:00:00Z"), now);
        assert_eq!(p("2026-11-25T22:00:00+01:00"), now);
        assert_eq!(p("2026-11-25 20:00:00-01:00"), now);
        assert_eq!(
            p("2026-11-25T21:00:00.25Z"),
            now + Duration::from_millis(250)
        );
        assert_eq!(p("2026-11-25"), at(1_795_640_400 - 21 * 3600));
        for bad in [
            "",
            "-1y",
            "-d",
            "2026-13-01",
            "2026-02-29",
            "2026-11-25T25:00:00Z",
            "2026-11-25T21:00:00",
            "2026-11-25T21:00:00+0100",
            "yesterday",
        ] {
            assert!(parse_time(bad, now, &z).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn named_zones_follow_their_summer_time() {
        let berlin = Zone::named("Europe/Berlin").unwrap();
        let at = |s| ms(parse_time(s, UNIX_EPOCH, &Zone::Utc).unwrap()) / 1000;
        // The last Sunday of October 2026: 25 hours from midnight to midnight.
        let start = berlin.unix(2026, 10, 25, 0, 0).unwrap();
        let end = berlin.unix(2026, 10, 26, 0, 0).unwrap();
        assert_eq!(start, at("2026-10-24T22:00:00Z"));
        assert_eq!(end - start, 25 * 3600);
        assert_eq!(
            berlin.local(at("2026-10-25T00:30:00Z")).unwrap().rfc3339(),
            "2026-10-25T02:30:00+02:00"
        );
        assert_eq!(
            berlin.local(at("2026-10-25T01:30:00Z")).unwrap().rfc3339(),
            "2026-10-25T02:30:00+01:00"
        );
        // The last Sunday of March 2027: 23 hours; December carries into January.
        let mar = berlin.unix(2027, 3, 28, 0, 0).unwrap();
        assert_eq!(berlin.unix(2027, 3, 29, 0, 0).unwrap() - mar, 23 * 3600);
        assert_eq!(
            berlin.unix(2026, 13, 1, 0, 0).unwrap(),
            at("2026-12-31T23:00:00Z")
        );
        assert_eq!(
            parse_time("2026-11-01", UNIX_EPOCH, &berlin).unwrap(),
            UNIX_EPOCH + Duration::from_secs(at("2026-10-31T23:00:00Z") as u64)
        );
        // The process's own zone still works after a named one was used.
        assert!(Zone::Local.local(0).is_ok());
        assert!(!Zone::Local.name().is_empty());
    }

    #[test]
    fn unknown_zones_are_refused() {
        assert!(Zone::named("Nowhere/Atlantis").is_err());
        assert!(Zone::named("../etc/passwd").is_err());
    }
}
