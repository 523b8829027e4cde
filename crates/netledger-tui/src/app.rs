//! The whole view without a terminal: model, interaction state, header and
//! clock. The loop feeds it intervals, keys and ticks and draws it when one
//! of them says the screen changed; tests do the same with a `TestBackend`.

use std::time::SystemTime;

use crossterm::event::KeyEvent;
use netledger::Interval;
use ratatui::Frame;

use crate::format;
use crate::header::Header;
use crate::model::Model;
use crate::render::{self, Widths};
use crate::view::{Reaction, View};

/// `netledger top` as a value: everything the screen is drawn from.
#[derive(Debug)]
pub struct Top {
    header: Header,
    model: Model,
    view: View,
    now: SystemTime,
    ended: Option<String>,
    widths: Widths,
}

impl Top {
    /// A view of nothing yet at time `now`.
    pub fn new(header: Header, now: SystemTime) -> Top {
        Top {
            header,
            model: Model::new(),
            view: View::new(),
            now,
            ended: None,
            widths: Widths::default(),
        }
    }

    /// The header's facts.
    pub fn header(&self) -> &Header {
        &self.header
    }

    /// The model: every interval so far, paused or not.
    pub fn model(&self) -> &Model {
        &self.model
    }

    /// The interaction state and the sheet on screen.
    pub fn view(&self) -> &View {
        &self.view
    }

    /// The clock as last told.
    pub fn now(&self) -> SystemTime {
        self.now
    }

    /// Why the feed ended, once it has.
    pub fn ended(&self) -> Option<&str> {
        self.ended.as_deref()
    }

    /// An interval arrived. The screen always changes: new figures, or
    /// the count of intervals waiting behind a pause.
    pub fn interval(&mut self, iv: Interval) {
        self.model.push(iv);
        let model = &self.model;
        self.view.refresh(|| model.sheet());
    }

    /// A key was pressed.
    pub fn key(&mut self, key: KeyEvent) -> Reaction {
        let model = &self.model;
        self.view.key(key, || model.sheet())
    }

    /// The clock moved to `now`; true if the uptime on screen changes.
    pub fn tick(&mut self, now: SystemTime) -> bool {
        let shown =
            |t: SystemTime| format::uptime(t.duration_since(self.header.since).unwrap_or_default());
        let changed = shown(now) != shown(self.now);
        self.now = now;
        changed
    }

    /// The feed has no more intervals; the figures stay on screen.
    pub fn end(&mut self, why: impl Into<String>) {
        self.ended = Some(why.into());
    }

    /// Draw the whole screen.
    pub fn draw(&mut self, frame: &mut Frame) {
        let area = frame.area();
        // The page size first: scrolling is clamped to it before drawing.
        self.view
            .set_page(render::Layout::of(self.view.sheet(), area).table_rows());
        render::draw(
            &render::Parts {
                header: &self.header,
                view: &self.view,
                now: self.now,
                ended: self.ended.as_deref(),
            },
            &mut self.widths,
            area,
            frame.buffer_mut(),
        );
    }
}
