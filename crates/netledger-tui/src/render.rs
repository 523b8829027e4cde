//! Drawing a [`View`] into a ratatui buffer: the header line, the table of
//! rows, and the footer (buckets and their identity, rates and sparklines
//! per stream, keys or the filter prompt).
//!
//! Columns are chosen by width: the key keeps at least [`KEY_MIN`]
//! characters (or its longest text, if shorter) and the least important
//! columns are left out until it does. From the most to the least
//! important: interface/direction (only when several are shown), bit rate,
//! bytes, the 10 s, 40 s and 2 s averages (with 1 s cuts the 2 s average is
//! close to the rate), the share, packets per second, packets. The column
//! the rows are sorted by is never left out (`p` on 80 columns shows the
//! packets instead of an average).

use std::time::SystemTime;

use netledger::Bucket;
use ratatui::buffer::Buffer;
use ratatui::layout::Rect;
use ratatui::style::{Color, Modifier, Style};
use ratatui::widgets::{Sparkline, Widget};

use crate::format;
use crate::header::Header;
use crate::model::{Identity, Row, Sheet, Stream};
use crate::view::{SortBy, View};

/// The narrowest the key column gets before other columns give way: most
/// IPv4 five-tuples and ICMP keys whole.
pub const KEY_MIN: usize = 42;

/// Spaces between two columns.
const GAP: usize = 2;

/// What one drawing needs.
pub struct Parts<'a> {
    /// The header's facts.
    pub header: &'a Header,
    /// The rows and the interaction state.
    pub view: &'a View,
    /// The clock.
    pub now: SystemTime,
    /// Why the feed ended, once it has.
    pub ended: Option<&'a str>,
}

/// Column widths that only grow, so columns do not shift from one refresh
/// to the next as flows come and go.
#[derive(Debug, Default)]
pub struct Widths {
    key: usize,
    packets: usize,
    bytes: usize,
    place: usize,
}

/// Where each part of the screen goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Layout {
    header: Rect,
    table: Rect,
    rule: Option<Rect>,
    grid: Option<Rect>,
    streams: Option<Rect>,
    bottom: Option<Rect>,
}

/// One line of `area` at `y`.
fn line(area: Rect, y: u16) -> Rect {
    Rect::new(area.x, y, area.width, 1)
}

impl Layout {
    /// The layout of `sheet` on `area`: the table gets what the footer
    /// leaves, and the footer gives way (streams, then buckets, then the
    /// key line) before the table gets fewer than three rows.
    pub fn of(sheet: &Sheet, area: Rect) -> Layout {
        let h = area.height;
        let header = line(area, area.y);
        // Header, column titles and three rows come first.
        let mut spare = h.saturating_sub(5);
        let mut take = |n: u16| {
            if n > 0 && n <= spare {
                spare -= n;
                n
            } else {
                0
            }
        };
        let bottom = take(1);
        let grid = if sheet.dirs.is_empty() {
            0
        } else {
            take(2 + 2 * sheet.dirs.len() as u16)
        };
        // A sixth of the screen at most for the rate lines.
        let cap: u16 = (h / 6).max(2);
        let wanted = (stream_lines(sheet).len() as u16).min(cap);
        let mut streams = 0;
        for n in (1..=wanted).rev() {
            streams = take(n);
            if streams > 0 {
                break;
            }
        }
        // Without buckets, the rule still separates the table.
        let rule_alone = if grid == 0 { take(1) } else { 0 };
        let footer = bottom + grid + streams + rule_alone;
        let table_h = h.saturating_sub(1 + footer);
        let table = Rect::new(area.x, area.y + 1.min(h), area.width, table_h);
        let mut y = table.y + table.height;
        let mut next = |n: u16| {
            (n > 0).then(|| {
                let r = Rect::new(area.x, y, area.width, n);
                y += n;
                r
            })
        };
        let (rule, grid) = if grid > 0 {
            let rule = next(1);
            (rule, next(grid - 1))
        } else {
            (next(rule_alone), None)
        };
        Layout {
            header,
            table,
            rule,
            grid,
            streams: next(streams),
            bottom: next(bottom),
        }
    }

    /// Rows of flows the table shows (its title line excluded).
    pub fn table_rows(&self) -> usize {
        usize::from(self.table.height.saturating_sub(1))
    }
}

/// Draw everything into `buf`.
pub fn draw(p: &Parts, widths: &mut Widths, area: Rect, buf: &mut Buffer) {
    let sheet = p.view.sheet();
    let layout = Layout::of(sheet, area);
    draw_header(p, layout.header, buf);
    draw_table(p, widths, layout.table, buf);
    if let Some(r) = layout.rule {
        draw_rule(sheet, r, buf);
    }
    if let Some(r) = layout.grid {
        draw_grid(sheet, r, buf);
    }
    if let Some(r) = layout.streams {
        draw_streams(sheet, r, buf);
    }
    if let Some(r) = layout.bottom {
        draw_bottom(p, layout.table_rows(), r, buf);
    }
}

/// Write `text` at (`x`, `y`) in at most `width` cells; returns the cells
/// written.
fn put(buf: &mut Buffer, x: u16, y: u16, text: &str, width: usize, style: Style) -> usize {
    let width = width.min(usize::from(u16::MAX));
    let (end, _) = buf.set_stringn(x, y, text, width, style);
    usize::from(end.saturating_sub(x))
}

/// `text` padded to `width` on the left (right-aligned).
fn right(text: &str, width: usize) -> String {
    format!("{text:>width$}")
}

/// `text` padded to `width` on the right (left-aligned).
fn left(text: &str, width: usize) -> String {
    format!("{text:<width$}")
}

fn draw_header(p: &Parts, area: Rect, buf: &mut Buffer) {
    let bar = Style::default().add_modifier(Modifier::REVERSED);
    buf.set_style(area, bar);
    let view = p.view;
    // Status on the right, most important last so it is the one kept.
    let mut status: Vec<(String, Style)> = Vec::new();
    if !view.filter().is_empty() {
        status.push((format!("filter: {}", view.filter()), bar));
    }
    if view.paused() {
        let text = match view.pending() {
            0 => "PAUSED".to_string(),
            n => format!("PAUSED ({n} new)"),
        };
        status.push((text, bar.fg(Color::Yellow).add_modifier(Modifier::BOLD)));
    }
    if let Some(why) = p.ended {
        status.push((
            format!("ENDED: {why}"),
            bar.fg(Color::Red).add_modifier(Modifier::BOLD),
        ));
    }
    let width = usize::from(area.width);
    let mut status_w: usize = status.iter().map(|(s, _)| s.chars().count() + GAP).sum();
    // Statuses that do not fit at all go, least important first.
    while status_w + 20 > width && !status.is_empty() {
        let (s, _) = status.remove(0);
        status_w -= s.chars().count() + GAP;
    }
    let head = p.header.line(p.now, width.saturating_sub(status_w + 1));
    put(buf, area.x, area.y, &format!(" {head}"), width, bar);
    // Right-aligned, a space from the edge and two between statuses.
    let mut x = (area.x + area.width).saturating_sub(1);
    for (s, style) in status.iter().rev() {
        let w = s.chars().count() as u16;
        x = x.saturating_sub(w);
        put(buf, x, area.y, s, usize::from(w), *style);
        x = x.saturating_sub(GAP as u16);
    }
}

/// A table column other than the key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Col {
    Place,
    Rate,
    Pps,
    Avg2,
    Avg10,
    Avg40,
    Packets,
    Bytes,
    Share,
}

/// Left to right.
const DISPLAY: [Col; 9] = [
    Col::Place,
    Col::Rate,
    Col::Pps,
    Col::Avg2,
    Col::Avg10,
    Col::Avg40,
    Col::Packets,
    Col::Bytes,
    Col::Share,
];

/// Least important first: the order columns are left out in.
const DROP: [Col; 8] = [
    Col::Packets,
    Col::Pps,
    Col::Share,
    Col::Avg2,
    Col::Avg40,
    Col::Avg10,
    Col::Bytes,
    Col::Rate,
];

/// Cells of the share column: a bar and a percentage, or the percentage
/// alone when space is short.
const SHARE_WIDE: usize = 16;
const SHARE_NARROW: usize = 5;
/// Rates have at most 5 characters; 6 leaves room for a sort arrow.
const RATE_W: usize = 6;

/// "eth0 in" for a row when several streams are shown.
fn place(s: &Stream) -> String {
    if s.iface.is_empty() {
        s.dir.name().to_string()
    } else {
        format!("{} {}", s.iface, s.dir)
    }
}

/// The columns that fit `width` with their widths, and the key's width.
fn columns(
    p: &Parts,
    widths: &mut Widths,
    width: usize,
    page: usize,
) -> (Vec<(Col, usize)>, usize) {
    let sheet = p.view.sheet();
    let grow = |w: &mut usize, n: usize| *w = (*w).max(n);
    // Counts: the largest of all rows, so a column fits whatever is
    // scrolled to. Keys: the rows on screen (and before), so a draw does
    // not write out every key of a busy interface.
    let (mut packets, mut bytes) = (0, 0);
    for r in &sheet.rows {
        packets = packets.max(r.total.packets);
        bytes = bytes.max(r.total.bytes);
    }
    grow(&mut widths.packets, format::grouped(packets).len());
    grow(&mut widths.bytes, format::grouped(bytes).len());
    for r in p.view.rows().skip(p.view.scroll()).take(page) {
        grow(&mut widths.key, r.key.to_string().chars().count());
    }
    for s in &sheet.streams {
        grow(&mut widths.place, place(&s.stream).chars().count());
    }
    let several = sheet.streams.len() > 1;
    let width_of = |c: Col| match c {
        Col::Place => widths.place.max(5),
        Col::Rate | Col::Pps | Col::Avg2 | Col::Avg10 | Col::Avg40 => RATE_W,
        Col::Packets => widths.packets.max(8),
        Col::Bytes => widths.bytes.max(6),
        Col::Share => SHARE_WIDE,
    };
    let mut cols: Vec<(Col, usize)> = DISPLAY
        .iter()
        .filter(|c| **c != Col::Place || several)
        .map(|c| (*c, width_of(*c)))
        .collect();
    // Short keys (address modes) need less room; before the first row
    // the key is assumed to need all of it.
    let key_min = if widths.key == 0 {
        KEY_MIN
    } else {
        KEY_MIN.min(widths.key)
    };
    let used = |cols: &[(Col, usize)]| cols.iter().map(|(_, w)| w + GAP).sum::<usize>();
    // The column the rows are sorted by stays: it carries the sort arrow
    // and the numbers the order follows.
    let sorted = match p.view.sort().by {
        SortBy::Rate => Some(Col::Rate),
        SortBy::Bytes => Some(Col::Bytes),
        SortBy::Packets => Some(Col::Packets),
        SortBy::Key => None,
    };
    for drop in DROP {
        if width.saturating_sub(used(&cols)) >= key_min {
            break;
        }
        if Some(drop) == sorted {
            continue;
        }
        if drop == Col::Share {
            // The bar goes before the percentage does.
            if let Some(c) = cols.iter_mut().find(|c| c.0 == Col::Share) {
                c.1 = SHARE_NARROW;
                if width.saturating_sub(used(&cols)) >= key_min {
                    break;
                }
            }
        }
        cols.retain(|c| c.0 != drop);
    }
    let rest = width.saturating_sub(used(&cols));
    let key_w = rest.min(widths.key.max(key_min));
    // Space the key does not need goes to the share bar, else stays at the
    // right edge.
    if let Some(c) = cols
        .iter_mut()
        .find(|c| c.0 == Col::Share && c.1 == SHARE_WIDE)
    {
        c.1 += (rest - key_w).min(14);
    }
    (cols, key_w)
}

fn title(c: Col) -> &'static str {
    match c {
        Col::Place => "WHERE",
        Col::Rate => "BIT/S",
        Col::Pps => "PKT/S",
        Col::Avg2 => "2s",
        Col::Avg10 => "10s",
        Col::Avg40 => "40s",
        Col::Packets => "PACKETS",
        Col::Bytes => "BYTES",
        Col::Share => "SHARE",
    }
}

fn cell(c: Col, r: &Row, w: usize) -> String {
    match c {
        Col::Place => left(&place(&r.stream), w),
        Col::Rate => right(&format::si(r.last.bits), w),
        Col::Pps => right(&format::si(r.last.packets), w),
        Col::Avg2 => right(&format::si(r.avg[0].bits), w),
        Col::Avg10 => right(&format::si(r.avg[1].bits), w),
        Col::Avg40 => right(&format::si(r.avg[2].bits), w),
        Col::Packets => right(&format::grouped(r.total.packets), w),
        Col::Bytes => right(&format::grouped(r.total.bytes), w),
        Col::Share => {
            let pct = right(&format::percent(r.share), SHARE_NARROW);
            if w > SHARE_NARROW {
                format!("{}{pct}", format::bar(r.share, w - SHARE_NARROW - 1) + " ")
            } else {
                pct
            }
        }
    }
}

fn draw_table(p: &Parts, widths: &mut Widths, area: Rect, buf: &mut Buffer) {
    if area.height == 0 {
        return;
    }
    let view = p.view;
    let sheet = view.sheet();
    let width = usize::from(area.width);
    let page = usize::from(area.height.saturating_sub(1));
    let (cols, key_w) = columns(p, widths, width, page);
    let sort = view.sort();
    let arrow = |by: SortBy| {
        if sort.by != by {
            ""
        } else if sort.reversed {
            "▲"
        } else {
            "▼"
        }
    };
    let sorted_col = |c: Col| match c {
        Col::Rate => Some(SortBy::Rate),
        Col::Packets => Some(SortBy::Packets),
        Col::Bytes => Some(SortBy::Bytes),
        _ => None,
    };
    // Keys ascend naturally: the arrow points up unless reversed.
    let key_arrow = match (sort.by, sort.reversed) {
        (SortBy::Key, false) => "▲",
        (SortBy::Key, true) => "▼",
        _ => "",
    };
    let head = Style::default().add_modifier(Modifier::BOLD);
    let mark = head.fg(Color::Cyan);
    let y = area.y;
    let mut x = area.x;
    let style_for = |on: bool| if on { mark } else { head };
    x += put(
        buf,
        x,
        y,
        &left(&format!("KEY{key_arrow}"), key_w),
        key_w,
        style_for(!key_arrow.is_empty()),
    ) as u16;
    for (c, w) in &cols {
        let by = sorted_col(*c);
        let a = by.map_or("", arrow);
        let t = format!("{}{a}", title(*c));
        let text = if *c == Col::Place || *c == Col::Share {
            left(&t, *w)
        } else {
            right(&t, *w)
        };
        x += put(buf, x, y, &" ".repeat(GAP), GAP, head) as u16;
        x += put(buf, x, y, &text, *w, style_for(!a.is_empty())) as u16;
    }

    let rows_area = Rect::new(area.x, area.y + 1, area.width, area.height - 1);
    if rows_area.height == 0 {
        return;
    }
    let dim = Style::default().add_modifier(Modifier::DIM);
    // Nothing to list yet, or nothing left: one dim line says why.
    let empty = if sheet.is_waiting() {
        Some(format!(
            "waiting for the first interval (cut every {})…",
            format::interval(p.header.interval)
        ))
    } else if view.rows().len() == 0 && view.filter().is_empty() {
        Some("no traffic in the last 40 s".to_string())
    } else if view.rows().len() == 0 {
        Some(format!(
            "no flow matches \"{}\" (Esc clears the filter)",
            view.filter()
        ))
    } else {
        None
    };
    if let Some(msg) = empty {
        put(
            buf,
            rows_area.x + 1,
            rows_area.y,
            &msg,
            width.saturating_sub(1),
            dim,
        );
        return;
    }
    let bar_style = Style::default().fg(Color::Cyan);
    for (i, r) in view
        .rows()
        .skip(view.scroll())
        .take(usize::from(rows_area.height))
        .enumerate()
    {
        let y = rows_area.y + i as u16;
        let mut x = rows_area.x;
        x += put(
            buf,
            x,
            y,
            &left(&format::key(&r.key, key_w), key_w),
            key_w,
            Style::default(),
        ) as u16;
        for (c, w) in &cols {
            x += put(buf, x, y, &" ".repeat(GAP), GAP, Style::default()) as u16;
            let style = if *c == Col::Share {
                bar_style
            } else {
                Style::default()
            };
            x += put(buf, x, y, &cell(*c, r, *w), *w, style) as u16;
        }
    }
}

fn draw_rule(sheet: &Sheet, area: Rect, buf: &mut Buffer) {
    let width = usize::from(area.width);
    let label = match (sheet.since, sheet.until) {
        (Some(since), Some(until)) => format!(
            " since start: {}, {} interval{} ",
            format::span(until.duration_since(since).unwrap_or_default()),
            sheet.intervals,
            if sheet.intervals == 1 { "" } else { "s" }
        ),
        _ => " no interval yet ".to_string(),
    };
    let text = format!("──{label}{}", "─".repeat(width));
    put(
        buf,
        area.x,
        area.y,
        &text,
        width,
        Style::default().add_modifier(Modifier::DIM),
    );
}

/// The grid's column titles: the identity written out.
const GRID_TITLES: [&str; 6] = [
    "seen",
    "= counted",
    "+ non_ip",
    "+ malformed",
    "+ map_full",
    "+ evict_race",
];

fn draw_grid(sheet: &Sheet, area: Rect, buf: &mut Buffer) {
    let width = usize::from(area.width);
    // Tries from the most readable to the most compact: operators in the
    // titles and grouped digits, then without operators, then plain digits.
    for (ops, group) in [(true, true), (false, true), (false, false)] {
        let lines = grid_lines(sheet, ops, group);
        let widest = lines
            .iter()
            .map(|(t, _)| t.chars().count())
            .max()
            .unwrap_or(0);
        if widest <= width || !group {
            for (i, (text, check)) in lines.iter().enumerate() {
                let y = area.y + i as u16;
                if y >= area.y + area.height {
                    break;
                }
                let style = if i == 0 {
                    Style::default().add_modifier(Modifier::BOLD)
                } else {
                    Style::default()
                };
                let n = put(buf, area.x, y, text, width, style);
                if let Some((text, good)) = check {
                    let color = if *good { Color::Green } else { Color::Red };
                    let style = Style::default().fg(color).add_modifier(Modifier::BOLD);
                    put(
                        buf,
                        area.x + n as u16,
                        y,
                        text,
                        width.saturating_sub(n),
                        style,
                    );
                }
            }
            return;
        }
    }
}

/// The grid as lines of text, each with its identity cell (text, exact).
type GridLine = (String, Option<(String, bool)>);

fn grid_lines(sheet: &Sheet, ops: bool, group: bool) -> Vec<GridLine> {
    let num = |n: u64| {
        if group {
            format::grouped(n)
        } else {
            n.to_string()
        }
    };
    let titles: Vec<&str> = GRID_TITLES
        .iter()
        .map(|t| {
            if ops {
                t
            } else {
                t.trim_start_matches(['=', '+', ' '])
            }
        })
        .collect();
    // Rows: (label, values, identity cell).
    let mut rows: Vec<(String, Vec<String>, String, bool)> = Vec::new();
    for d in &sheet.dirs {
        let get = |f: fn(netledger::Count) -> u64| -> Vec<String> {
            Bucket::ALL
                .iter()
                .map(|b| num(f(d.buckets.get(*b))))
                .collect()
        };
        let (pk, by) = match d.identity {
            Identity::Exact => (("exact".to_string(), true), ("exact".to_string(), true)),
            Identity::Off { packets, bytes } => {
                let off = |n: i128| {
                    if n == 0 {
                        ("exact".to_string(), true)
                    } else {
                        (format!("off {}", format::signed(n)), false)
                    }
                };
                (off(packets), off(bytes))
            }
        };
        rows.push((
            format!("{:<4}pkts", d.dir.name()),
            get(|c| c.packets),
            pk.0,
            pk.1,
        ));
        rows.push(("    bytes".to_string(), get(|c| c.bytes), by.0, by.1));
    }
    let label_w = rows
        .iter()
        .map(|r| r.0.chars().count())
        .max()
        .unwrap_or(0)
        .max(8);
    let col_w: Vec<usize> = titles
        .iter()
        .enumerate()
        .map(|(i, t)| {
            rows.iter()
                .map(|r| r.1[i].len())
                .max()
                .unwrap_or(0)
                .max(t.chars().count())
        })
        .collect();
    let mut out = Vec::with_capacity(rows.len() + 1);
    let mut head = left("", label_w);
    for (t, w) in titles.iter().zip(&col_w) {
        head.push(' ');
        head.push_str(&right(t, *w));
    }
    head.push_str("  identity");
    out.push((head, None));
    for (label, values, check, good) in rows {
        let mut text = left(&label, label_w);
        for (v, w) in values.iter().zip(&col_w) {
            text.push(' ');
            text.push_str(&right(v, *w));
        }
        text.push_str("  ");
        out.push((text, Some((check, good))));
    }
    out
}

/// The footer's rate lines: one per stream, and a total per direction
/// counted on several interfaces. (text before the sparkline, history,
/// missed intervals.)
fn stream_lines(sheet: &Sheet) -> Vec<(String, Option<&[u64]>, u64)> {
    let several = sheet.streams.len() > 1;
    let place_w = sheet
        .streams
        .iter()
        .map(|s| place(&s.stream).chars().count())
        .max()
        .unwrap_or(0)
        .max(6);
    let rate = |r: crate::model::Rate| {
        format!(
            "{:>6} bit/s {:>6} pkt/s",
            format::si(r.bits),
            format::si(r.packets)
        )
    };
    let mut out = Vec::new();
    for s in &sheet.streams {
        let name = if several {
            place(&s.stream)
        } else if s.stream.iface.is_empty() {
            s.stream.dir.to_string()
        } else {
            place(&s.stream)
        };
        out.push((
            format!("{}  {}", left(&name, place_w), rate(s.rate)),
            Some(s.history.as_slice()),
            s.missed,
        ));
    }
    for d in &sheet.dirs {
        let n = sheet
            .streams
            .iter()
            .filter(|s| s.stream.dir == d.dir)
            .count();
        if n > 1 {
            out.push((
                format!(
                    "{}  {}",
                    left(&format!("{} all", d.dir), place_w),
                    rate(d.rate)
                ),
                None,
                0,
            ));
        }
    }
    out
}

fn draw_streams(sheet: &Sheet, area: Rect, buf: &mut Buffer) {
    let lines = stream_lines(sheet);
    let width = usize::from(area.width);
    let rows = usize::from(area.height);
    let cut = lines.len() > rows;
    for (i, (text, history, missed)) in lines.iter().take(rows).enumerate() {
        let y = area.y + i as u16;
        if cut && i + 1 == rows {
            let more = format!("… {} more lines", lines.len() - rows + 1);
            put(
                buf,
                area.x,
                y,
                &more,
                width,
                Style::default().add_modifier(Modifier::DIM),
            );
            break;
        }
        let mut x = area.x + put(buf, area.x, y, text, width, Style::default()) as u16;
        if *missed > 0 {
            let gap = format!("  {missed} missed");
            let style = Style::default().fg(Color::Red).add_modifier(Modifier::BOLD);
            x += put(
                buf,
                x,
                y,
                &gap,
                width.saturating_sub(usize::from(x - area.x)),
                style,
            ) as u16;
        }
        let Some(history) = history else { continue };
        let left_w = (area.x + area.width).saturating_sub(x + 2);
        if left_w == 0 {
            continue;
        }
        // The newest intervals, as many as fit, oldest on the left.
        let n = history.len().min(usize::from(left_w));
        let data = &history[history.len() - n..];
        let max = data.iter().copied().max().unwrap_or(0).max(1);
        Sparkline::default()
            .data(data)
            .max(max)
            .style(Style::default().fg(Color::Green))
            .render(Rect::new(x + 2, y, left_w, 1), buf);
    }
}

fn draw_bottom(p: &Parts, page: usize, area: Rect, buf: &mut Buffer) {
    let width = usize::from(area.width);
    let view = p.view;
    if let Some(draft) = view.draft() {
        let prompt = format!("filter (Enter applies, Esc cancels): /{draft}");
        let n = put(
            buf,
            area.x,
            area.y,
            &prompt,
            width,
            Style::default().add_modifier(Modifier::BOLD),
        );
        if n < width {
            // A block for the cursor: the terminal's own is hidden.
            put(
                buf,
                area.x + n as u16,
                area.y,
                " ",
                1,
                Style::default().add_modifier(Modifier::REVERSED),
            );
        }
        return;
    }
    let total = view.rows().len();
    let held = if view.held() {
        "order held, s sorts  "
    } else {
        ""
    };
    let count = if total > page {
        let first = view.scroll() + 1;
        let last = (view.scroll() + page).min(total);
        format!("rows {first}-{last} of {total}")
    } else if total == 1 {
        "1 row".to_string()
    } else {
        format!("{total} rows")
    };
    let scroll_hint = if total > page {
        " (↑↓ PgUp PgDn)"
    } else {
        ""
    };
    let keys = [
        "sort: r rate  b bytes  p packets  k key (again: reverse)  s sort now  / filter  space pause  q quit",
        "r/b/p/k/s sort  / filter  space pause  q quit",
        "/ filter  space pause  q quit",
    ];
    let positions = [
        format!("{held}{count}{scroll_hint}"),
        format!("{held}{count}"),
        count.clone(),
    ];
    // The richest pair that fits, keys shortened before the position.
    let len = |s: &str| s.chars().count();
    let mut pick = (
        keys[keys.len() - 1],
        positions[positions.len() - 1].as_str(),
    );
    'found: for p in &positions {
        for k in keys {
            if len(k) + GAP + len(p) <= width {
                pick = (k, p.as_str());
                break 'found;
            }
        }
    }
    let dim = Style::default().add_modifier(Modifier::DIM);
    let (k, p) = pick;
    let pw = len(p).min(width);
    put(buf, area.x, area.y, k, width.saturating_sub(pw + GAP), dim);
    put(buf, area.x + (width - pw) as u16, area.y, p, pw, dim);
}
