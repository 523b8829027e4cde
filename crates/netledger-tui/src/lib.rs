//! `netledger top`: the live terminal view of the top flows.
//!
//! Every number comes from exact per-flow counts: the rows show each key's
//! rate over the newest interval, its 2 s, 10 s and 40 s averages (like
//! iftop), and its exact packets and bytes since the view started; the
//! footer shows the conservation buckets since the view started and checks
//! `seen == counted + non_ip + malformed + map_full + evict_race`.
//!
//! The caller supplies a [`Header`] (what is counted, where, by whom) and a
//! [`Feed`] of [`netledger::Interval`]s and calls [`run`]. Everything else
//! is usable without a terminal: [`Top`] is the whole view as a value
//! (model, interaction state, clock) that tests draw on ratatui's
//! `TestBackend`.
//!
//! Keys: `r` rate, `b` bytes, `p` packets, `k` key (the same key again
//! reverses), `s` sorts again by the current column; `/` filter (Enter
//! applies, Esc cancels; Esc clears an applied filter); space pauses (the
//! model keeps counting, the screen freezes); Up, Down, PgUp, PgDn, Home,
//! End scroll; `q` or Ctrl-C quits.
//!
//! Rows keep their places from one interval to the next while the same
//! rows are shown; they are sorted again when the user sorts or filters and
//! when a row appears or leaves (see [`View`] for the rule).
//!
//! Module map: `model` (intervals to figures), `view` (sorting, stable
//! order, filter, pause, scrolling), `header`, `format` (numbers and
//! keys as text), `render` (drawing), `app` (all of it together), `term`
//! (raw mode, alternate screen, restoring them) and `run` (the loop).

#![warn(missing_docs)]

mod app;
pub mod format;
mod header;
mod model;
mod render;
mod run;
pub mod term;
mod view;

pub use app::Top;
pub use header::{Header, Source};
pub use model::{DirTotals, Identity, Model, Rate, Row, Sheet, Stream, StreamTotals, WINDOWS};
pub use render::KEY_MIN;
pub use run::{run, run_with, Error, Feed, FeedError, Next, Options, Outcome, POLL};
pub use view::{haystack, Exit, Reaction, Sort, SortBy, View};
