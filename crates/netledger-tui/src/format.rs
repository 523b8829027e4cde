//! How numbers and keys are written on screen: rates with SI prefixes (the
//! unit is in the column title), exact counts grouped by thousands, and keys
//! shortened in the middle so both ends stay readable.

use std::time::Duration;

use netledger::FlowKey;

/// The ellipsis that marks shortened text.
pub const ELLIPSIS: char = '…';

/// A rate with an SI prefix and no unit: `0`, `950`, `12.3k`, `1.05M`,
/// `2.50G`. At most 6 characters below 1000 T.
pub fn si(value: f64) -> String {
    if !value.is_finite() || value <= 0.0 {
        return "0".into();
    }
    if value < 999.5 {
        // Below 1 per second a rate still shows it is not zero.
        return if value < 1.0 {
            format!("{value:.2}")
        } else {
            format!("{value:.0}")
        };
    }
    let mut scaled = value;
    for prefix in ["k", "M", "G", "T", "P"] {
        scaled /= 1000.0;
        // 3 significant digits; the next prefix once rounding reaches 1000.
        let text = if scaled < 9.995 {
            format!("{scaled:.2}{prefix}")
        } else if scaled < 99.95 {
            format!("{scaled:.1}{prefix}")
        } else if scaled < 999.5 {
            format!("{scaled:.0}{prefix}")
        } else {
            continue;
        };
        return text;
    }
    format!("{:.0}P", value / 1e15)
}

/// An exact count with thousands separators: `98,765,432`.
pub fn grouped(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// A signed exact difference with thousands separators: `+3`, `-1,500`.
pub fn signed(n: i128) -> String {
    let sign = if n < 0 { '-' } else { '+' };
    format!(
        "{sign}{}",
        grouped(u64::try_from(n.unsigned_abs()).unwrap_or(u64::MAX))
    )
}

/// A length of time the way a clock shows it: `42s`, `3m07s`, `2h05m`,
/// `3d04h`.
pub fn uptime(d: Duration) -> String {
    let s = d.as_secs();
    match s {
        0..=59 => format!("{s}s"),
        60..=3599 => format!("{}m{:02}s", s / 60, s % 60),
        3600..=86_399 => format!("{}h{:02}m", s / 3600, s % 3600 / 60),
        _ => format!("{}d{:02}h", s / 86_400, s % 86_400 / 3600),
    }
}

/// How long the intervals received cover: like [`interval`] below a
/// minute (`900ms`, `12.5s`), like [`uptime`] above.
pub fn span(d: Duration) -> String {
    if d < Duration::from_secs(60) {
        // Tenths are enough: cuts are a few milliseconds late or early.
        interval(Duration::from_millis(
            (d.as_millis() as u64 + 50) / 100 * 100,
        ))
    } else {
        uptime(d)
    }
}

/// An interval length: `1s`, `500ms`, `2.5s`.
pub fn interval(d: Duration) -> String {
    let ms = d.as_millis();
    if ms < 1000 {
        format!("{ms}ms")
    } else if ms.is_multiple_of(1000) {
        format!("{}s", ms / 1000)
    } else {
        format!("{:.1}s", d.as_secs_f64())
    }
}

/// `text` in at most `width` characters, the middle replaced by an ellipsis.
pub fn middle(text: &str, width: usize) -> String {
    let len = text.chars().count();
    if len <= width {
        return text.to_string();
    }
    match width {
        0 => String::new(),
        1 => ELLIPSIS.to_string(),
        _ => {
            // The end carries the protocol and the destination port: it gets
            // the odd character.
            let head = (width - 1) / 2;
            let tail = width - 1 - head;
            let mut out: String = text.chars().take(head).collect();
            out.push(ELLIPSIS);
            out.extend(text.chars().skip(len - tail));
            out
        }
    }
}

/// The shortest an IPv6 address is cut to before the whole key is: enough
/// for `2001:…:1`.
const MIN_ADDR: usize = 8;

/// An address in at most `width` characters: IPv6 keeps whole groups from
/// both ends around an ellipsis (`2001:db8:…:5678`); anything else is cut
/// in the middle.
pub fn address(text: &str, width: usize) -> String {
    if text.chars().count() <= width {
        return text.to_string();
    }
    let groups: Vec<&str> = text.split(':').collect();
    if groups.len() < 3 {
        return middle(text, width);
    }
    // Groups are added from the front and the back in turn while they fit.
    let (mut head, mut tail) = (0usize, 0usize);
    let build = |h: usize, t: usize| {
        let mut out = String::new();
        for g in &groups[..h] {
            out.push_str(g);
            out.push(':');
        }
        out.push(ELLIPSIS);
        for g in &groups[groups.len() - t..] {
            out.push(':');
            out.push_str(g);
        }
        out
    };
    loop {
        let grown = if head <= tail {
            (head + 1, tail)
        } else {
            (head, tail + 1)
        };
        if grown.0 + grown.1 >= groups.len() || build(grown.0, grown.1).chars().count() > width {
            break;
        }
        (head, tail) = grown;
    }
    if head == 0 || tail == 0 {
        return middle(text, width);
    }
    build(head, tail)
}

/// A key's text in at most `width` characters. Long IPv6 addresses are
/// shortened in their middle first, so ports, protocol and both ends of each
/// address stay readable; only if that is not enough is the whole text cut
/// in the middle.
pub fn key(key: &FlowKey, width: usize) -> String {
    let full = key.to_string();
    let len = full.chars().count();
    if len <= width {
        return full;
    }
    let addrs: Vec<String> = [key.src, key.dst]
        .iter()
        .flatten()
        .map(|a| a.to_string())
        .collect();
    let mut lens: Vec<usize> = addrs.iter().map(|a| a.chars().count()).collect();
    let mut over = len - width;
    // Take one character at a time from the longest IPv6 address still
    // above the minimum, so two long addresses end up about equally long.
    while over > 0 {
        let Some((i, _)) = lens
            .iter()
            .enumerate()
            .filter(|(i, l)| **l > MIN_ADDR && addrs[*i].contains(':'))
            .max_by_key(|(i, l)| (**l, usize::MAX - i))
        else {
            break;
        };
        lens[i] -= 1;
        over -= 1;
    }
    // The source comes before the destination in the text: search each
    // after the previous one, so one address inside the other is no match.
    // Whole groups may leave an address shorter than its budget: the
    // characters left over go to the next one.
    let mut text = String::with_capacity(full.len());
    let mut rest = full.as_str();
    let mut spare = 0;
    for (a, l) in addrs.iter().zip(&lens) {
        if let Some(at) = rest.find(a.as_str()) {
            let short = address(a, l + spare);
            spare = (l + spare).saturating_sub(short.chars().count());
            text.push_str(&rest[..at]);
            text.push_str(&short);
            rest = &rest[at + a.len()..];
        }
    }
    text.push_str(rest);
    middle(&text, width)
}

/// A bar `width` cells wide filled to `share` (0 to 1) in eighths.
pub fn bar(share: f64, width: usize) -> String {
    const EIGHTHS: [char; 8] = [' ', '▏', '▎', '▍', '▌', '▋', '▊', '▉'];
    let share = if share.is_finite() {
        share.clamp(0.0, 1.0)
    } else {
        0.0
    };
    let eighths = (share * width as f64 * 8.0).round() as usize;
    let mut out = String::with_capacity(width * 3);
    for cell in 0..width {
        let filled = eighths.saturating_sub(cell * 8).min(8);
        out.push(if filled == 8 { '█' } else { EIGHTHS[filled] });
    }
    out
}

/// A share as a percentage: `42%`, `0.3%`, `<0.1%`, `0%`.
pub fn percent(share: f64) -> String {
    let p = share * 100.0;
    if !p.is_finite() || p <= 0.0 {
        "0%".into()
    } else if p < 0.05 {
        "<0.1%".into()
    } else if p < 9.95 {
        format!("{p:.1}%")
    } else if p >= 99.5 && share < 1.0 {
        // Not all of it: "100%" would claim more than the counts say.
        ">99%".into()
    } else {
        format!("{p:.0}%")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use netledger::{Addr, L4};

    #[test]
    fn rates_have_three_digits_and_a_prefix() {
        assert_eq!(si(0.0), "0");
        assert_eq!(si(0.5), "0.50");
        assert_eq!(si(950.0), "950");
        assert_eq!(si(999.4), "999");
        assert_eq!(si(999.6), "1.00k");
        assert_eq!(si(12_345.0), "12.3k");
        assert_eq!(si(99_960.0), "100k");
        assert_eq!(si(999_600.0), "1.00M");
        assert_eq!(si(1.05e6), "1.05M");
        assert_eq!(si(2.5e9), "2.50G");
        assert_eq!(si(f64::NAN), "0");
    }

    #[test]
    fn counts_are_grouped() {
        assert_eq!(grouped(0), "0");
        assert_eq!(grouped(999), "999");
        assert_eq!(grouped(1000), "1,000");
        assert_eq!(grouped(98_765_432), "98,765,432");
        assert_eq!(signed(-1500), "-1,500");
        assert_eq!(signed(3), "+3");
    }

    #[test]
    fn durations() {
        assert_eq!(uptime(Duration::from_secs(42)), "42s");
        assert_eq!(uptime(Duration::from_secs(187)), "3m07s");
        assert_eq!(uptime(Duration::from_secs(7500)), "2h05m");
        assert_eq!(uptime(Duration::from_secs(3 * 86_400 + 4 * 3600)), "3d04h");
        assert_eq!(interval(Duration::from_secs(1)), "1s");
        assert_eq!(interval(Duration::from_millis(500)), "500ms");
        assert_eq!(interval(Duration::from_millis(2500)), "2.5s");
        assert_eq!(span(Duration::from_millis(900)), "900ms");
        assert_eq!(span(Duration::from_millis(12_003)), "12s");
        assert_eq!(span(Duration::from_millis(12_460)), "12.5s");
        assert_eq!(span(Duration::from_secs(61)), "1m01s");
    }

    #[test]
    fn middle_keeps_both_ends() {
        assert_eq!(middle("abcdef", 6), "abcdef");
        assert_eq!(middle("abcdefgh", 5), "ab…gh");
        assert_eq!(middle("abcdefgh", 6), "ab…fgh");
        assert_eq!(middle("abc", 1), "…");
        assert_eq!(middle("abc", 0), "");
    }

    fn v6_key() -> FlowKey {
        let a = |s: &str| Addr {
            ip: s.parse().unwrap(),
            prefix: 128,
        };
        FlowKey {
            src: Some(a("2001:db8:1234:5678:9abc:def0:1234:5678")),
            dst: Some(a("2001:db8:aaaa:bbbb:cccc:dddd:eeee:ffff")),
            proto: Some(6),
            l4: L4::Ports {
                src: 40004,
                dst: 443,
            },
            fragment: false,
            vlan: None,
        }
    }

    #[test]
    fn ipv6_addresses_keep_whole_groups() {
        let a = "2001:db8:1234:5678:9abc:def0:1234:5678";
        assert_eq!(address(a, 40), a);
        assert_eq!(address(a, 20), "2001:db8:…:1234:5678");
        assert_eq!(address(a, 15), "2001:db8:…:5678");
        assert_eq!(address(a, 12), "2001:…:5678");
        // Too narrow for a group at each end: cut in the middle.
        assert_eq!(address(a, 8), "200…5678");
        assert_eq!(address("192.168.100.200", 9), "192.….200");
    }

    #[test]
    fn long_keys_shorten_their_addresses_first() {
        let k = v6_key();
        let full = k.to_string();
        assert_eq!(key(&k, 200), full);
        let short = key(&k, 60);
        assert!(short.chars().count() <= 60, "{short}");
        assert_eq!(
            short,
            "[2001:db8:…:5678]:40004 > [2001:db8:…:eeee:ffff]:443 tcp"
        );
        let shorter = key(&k, 44);
        assert!(shorter.chars().count() <= 44, "{shorter}");
        assert!(shorter.starts_with("[2001:"), "{shorter}");
        assert!(shorter.ends_with("]:443 tcp"), "{shorter}");
        assert!(shorter.contains("]:40004 > ["), "{shorter}");
        // Both addresses at their minimum: the whole text is cut.
        let tiny = key(&k, 20);
        assert_eq!(tiny.chars().count(), 20);
        assert!(tiny.ends_with("443 tcp"), "{tiny}");
    }

    #[test]
    fn bars_fill_in_eighths() {
        assert_eq!(bar(0.0, 4), "    ");
        assert_eq!(bar(1.0, 4), "████");
        assert_eq!(bar(0.5, 4), "██  ");
        assert_eq!(bar(0.5 + 1.0 / 32.0, 4), "██▏ ");
        assert_eq!(percent(0.42), "42%");
        assert_eq!(percent(0.003), "0.3%");
        assert_eq!(percent(0.0001), "<0.1%");
        assert_eq!(percent(0.9999), ">99%");
        assert_eq!(percent(1.0), "100%");
    }
}
