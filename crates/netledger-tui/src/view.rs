//! The interaction state machine: sorting, the stable row order, the
//! filter, pause and scrolling. Pure: keys and sheets in, an ordered list
//! of rows out; no terminal involved.
//!
//! Order rule: the rows are sorted (by the current column, ties in their
//! previous order, then by key) when the user picks a sort (`r`, `b`, `p`,
//! `k`) or asks to sort again (`s`), when the filter changes, and when the
//! set of rows shown changes (a key appears, or leaves the 40 s window). A
//! refresh that brings the same rows keeps every row where it was, whatever
//! its numbers did: nothing jumps under the reader's eyes while the traffic
//! is steady, and a new flow still lands in its place. When the order held
//! is no longer the sorted one, [`View::held`] says so (the screen shows
//! "order held, s sorts").

use std::collections::HashMap;

use crossterm::event::{KeyCode, KeyEvent, KeyEventKind, KeyModifiers};
use netledger::FlowKey;

use crate::model::{Row, Sheet};

/// The column rows are sorted by.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SortBy {
    /// The newest interval's bit rate (`r`), highest first.
    #[default]
    Rate,
    /// Bytes since the view started (`b`), most first.
    Bytes,
    /// Packets since the view started (`p`), most first.
    Packets,
    /// The key (`k`): addresses in numeric order, then protocol and ports.
    Key,
}

/// A sort: a column and whether its natural direction is reversed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Sort {
    /// The column.
    pub by: SortBy,
    /// Reversed: lowest rate/bytes/packets first, or keys descending.
    pub reversed: bool,
}

/// How the view was left.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exit {
    /// `q`.
    Quit,
    /// Ctrl-C (a key in raw mode, not a signal).
    Interrupt,
    /// The caller's stop request (a SIGINT or SIGTERM it caught).
    Stopped,
}

/// What a key did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reaction {
    /// Nothing visible changed: no redraw.
    Ignored,
    /// The screen must be redrawn.
    Redraw,
    /// Leave the view.
    Exit(Exit),
}

/// The view's state between refreshes: sort, filter, pause, scrolling, and
/// the rows on screen in their order.
///
/// Order rule: the rows are sorted (by the current column, ties in their
/// previous order, then by key) when the user picks a sort (`r`, `b`, `p`,
/// `k`; the current one again reverses it) or asks to sort again (`s`),
/// when the filter changes, and when the set of rows shown changes (a key
/// appears, or leaves the 40 s window). A refresh that brings the same rows
/// keeps every row where it was, whatever its numbers did. [`View::held`]
/// tells when the order held is no longer the sorted one.
#[derive(Debug, Default)]
pub struct View {
    sort: Sort,
    filter: String,
    /// The filter being typed after `/`, until Enter or Esc.
    draft: Option<String>,
    paused: bool,
    /// Intervals that arrived while paused.
    pending: u64,
    /// The sheet on screen (frozen while paused).
    sheet: Sheet,
    /// Indices into `sheet.rows` of the rows shown, in screen order.
    order: Vec<usize>,
    /// The first row on screen.
    scroll: usize,
    /// How many rows the table shows, as last drawn.
    page: usize,
}

impl View {
    /// A view sorted by rate with nothing to show yet.
    pub fn new() -> View {
        View {
            page: 1,
            ..View::default()
        }
    }

    /// The current sort.
    pub fn sort(&self) -> Sort {
        self.sort
    }

    /// The filter applied ("" for none).
    pub fn filter(&self) -> &str {
        &self.filter
    }

    /// The filter being typed, if the prompt is open.
    pub fn draft(&self) -> Option<&str> {
        self.draft.as_deref()
    }

    /// The view is frozen.
    pub fn paused(&self) -> bool {
        self.paused
    }

    /// Intervals received since the view was paused.
    pub fn pending(&self) -> u64 {
        self.pending
    }

    /// The sheet on screen.
    pub fn sheet(&self) -> &Sheet {
        &self.sheet
    }

    /// The rows shown, in screen order (all of them, not only the page).
    pub fn rows(&self) -> impl ExactSizeIterator<Item = &Row> {
        self.order.iter().map(|&i| &self.sheet.rows[i])
    }

    /// The rows are held in an order that is no longer the sorted one
    /// (their numbers changed since the last sort); `s` sorts them.
    pub fn held(&self) -> bool {
        let rows = &self.sheet.rows;
        self.order.windows(2).any(|w| {
            let o = compare(self.sort.by, &rows[w[0]], &rows[w[1]]);
            let o = if self.sort.reversed { o.reverse() } else { o };
            o == std::cmp::Ordering::Greater
        })
    }

    /// The index of the first row on screen.
    pub fn scroll(&self) -> usize {
        self.scroll
    }

    /// Tell the view how many rows fit on screen (the renderer does).
    pub fn set_page(&mut self, rows: usize) {
        self.page = rows.max(1);
        self.clamp_scroll();
    }

    /// An interval arrived; `latest` gives the model's new state (not
    /// asked for while paused: the screen keeps the old sheet and only
    /// counts the intervals waiting).
    pub fn refresh(&mut self, latest: impl FnOnce() -> Sheet) {
        if self.paused {
            self.pending += 1;
        } else {
            self.show(Some(latest()), false);
        }
    }

    /// Put `sheet` (or the same sheet again) on screen; re-sort if
    /// `resort` or the set of rows changed.
    fn show(&mut self, sheet: Option<Sheet>, resort: bool) {
        let before: HashMap<u64, usize> = self
            .order
            .iter()
            .enumerate()
            .map(|(pos, &i)| (self.sheet.rows[i].id, pos))
            .collect();
        let shown_before = self.order.len();
        if let Some(sheet) = sheet {
            self.sheet = sheet;
        }
        let rows = &self.sheet.rows;
        let needle = self.filter.to_lowercase();
        let shown: Vec<usize> = (0..rows.len())
            .filter(|&i| matches(&rows[i], &needle))
            .collect();
        // Indexed like `rows`; rows not shown before come after the others.
        let position: Vec<usize> = rows
            .iter()
            .map(|r| before.get(&r.id).copied().unwrap_or(usize::MAX))
            .collect();
        let same = !resort
            && shown.len() == shown_before
            && shown.iter().all(|&i| position[i] != usize::MAX);
        let mut order = shown;
        if same {
            // Same rows: every row keeps its place.
            order.sort_by_key(|&i| position[i]);
        } else {
            let sort = self.sort;
            order.sort_by(|&a, &b| {
                let (ra, rb) = (&rows[a], &rows[b]);
                let primary = compare(sort.by, ra, rb);
                let primary = if sort.reversed {
                    primary.reverse()
                } else {
                    primary
                };
                primary
                    .then_with(|| position[a].cmp(&position[b]))
                    .then_with(|| ra.key.cmp(&rb.key))
                    .then_with(|| ra.stream.cmp(&rb.stream))
            });
        }
        self.order = order;
        self.clamp_scroll();
    }

    /// Sort again by the current column (a sort key, a filter change).
    fn resort(&mut self) {
        self.show(None, true);
    }

    fn clamp_scroll(&mut self) {
        let max = self.order.len().saturating_sub(self.page);
        self.scroll = self.scroll.min(max);
    }

    /// React to a key. `latest` gives the model's sheet when unpausing.
    pub fn key(&mut self, key: KeyEvent, latest: impl FnOnce() -> Sheet) -> Reaction {
        if key.kind == KeyEventKind::Release {
            return Reaction::Ignored;
        }
        let ctrl = key.modifiers.contains(KeyModifiers::CONTROL);
        if ctrl && matches!(key.code, KeyCode::Char('c') | KeyCode::Char('C')) {
            return Reaction::Exit(Exit::Interrupt);
        }
        if let Some(draft) = &mut self.draft {
            match key.code {
                KeyCode::Enter => {
                    self.filter = draft.trim().to_string();
                    self.draft = None;
                    self.scroll = 0;
                    self.resort();
                }
                KeyCode::Esc => self.draft = None,
                KeyCode::Backspace => {
                    draft.pop();
                }
                KeyCode::Char('u') if ctrl => draft.clear(),
                KeyCode::Char(c) if !ctrl => draft.push(c),
                _ => return Reaction::Ignored,
            }
            return Reaction::Redraw;
        }
        let by = match key.code {
            KeyCode::Char('q') | KeyCode::Char('Q') => return Reaction::Exit(Exit::Quit),
            KeyCode::Char('s') => {
                self.resort();
                return Reaction::Redraw;
            }
            KeyCode::Char('r') => Some(SortBy::Rate),
            KeyCode::Char('b') => Some(SortBy::Bytes),
            KeyCode::Char('p') => Some(SortBy::Packets),
            KeyCode::Char('k') => Some(SortBy::Key),
            _ => None,
        };
        if let Some(by) = by {
            self.sort = Sort {
                by,
                reversed: self.sort.by == by && !self.sort.reversed,
            };
            self.resort();
            return Reaction::Redraw;
        }
        let last = self.order.len().saturating_sub(self.page);
        let page = self.page.saturating_sub(1).max(1);
        match key.code {
            KeyCode::Char('/') => self.draft = Some(self.filter.clone()),
            KeyCode::Esc if !self.filter.is_empty() => {
                self.filter.clear();
                self.resort();
            }
            KeyCode::Char(' ') => {
                self.paused = !self.paused;
                if !self.paused {
                    self.pending = 0;
                    self.show(Some(latest()), false);
                }
            }
            KeyCode::Up => self.scroll = self.scroll.saturating_sub(1),
            KeyCode::Down => self.scroll = (self.scroll + 1).min(last),
            KeyCode::PageUp => self.scroll = self.scroll.saturating_sub(page),
            KeyCode::PageDown => self.scroll = (self.scroll + page).min(last),
            KeyCode::Home => self.scroll = 0,
            KeyCode::End => self.scroll = last,
            _ => return Reaction::Ignored,
        }
        Reaction::Redraw
    }
}

/// Two rows in the natural direction of a column: highest first for
/// numbers, ascending for keys.
fn compare(by: SortBy, a: &Row, b: &Row) -> std::cmp::Ordering {
    match by {
        SortBy::Rate => b.last.bits.total_cmp(&a.last.bits),
        SortBy::Bytes => b.total.bytes.cmp(&a.total.bytes),
        SortBy::Packets => b.total.packets.cmp(&a.total.packets),
        SortBy::Key => a.key.cmp(&b.key),
    }
}

/// The text a filter is matched against: the key as shown and its protocol
/// number, lower case.
pub fn haystack(key: &FlowKey) -> String {
    let mut text = key.to_string().to_lowercase();
    if let Some(p) = key.proto {
        text.push_str(&format!(" {p}"));
    }
    text
}

/// `row` passes the filter `needle` (lower case; empty passes everything).
fn matches(row: &Row, needle: &str) -> bool {
    needle.is_empty() || haystack(&row.key).contains(needle)
}
