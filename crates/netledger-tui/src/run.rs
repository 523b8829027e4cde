//! The loop: a terminal, a feed of intervals and the keyboard.
//!
//! Three threads, none of them spinning: the feed's thread waits on the
//! feed, the input thread waits on the terminal, and the calling thread
//! waits on both through one channel and draws only when a message changed
//! something (an interval, a key, a resize) or the uptime on screen ticks.
//! ratatui redraws only the cells that differ, so nothing flickers.

use std::fmt;
use std::io::{self, IsTerminal};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender};
use std::thread;
use std::time::{Duration, SystemTime};

use crossterm::event::{self, Event};
use netledger::Interval;
use ratatui::backend::CrosstermBackend;
use ratatui::Terminal;

use crate::app::Top;
use crate::header::Header;
use crate::model::Sheet;
use crate::term::Guard;
use crate::view::{Exit, Reaction};

/// How long the feed's and the input's threads wait at most before they
/// look whether the view has ended: the bound on how long [`run`] takes to
/// return after `q` (the terminal itself is restored at once).
pub const POLL: Duration = Duration::from_millis(100);

/// What a feed has for the view.
#[derive(Debug)]
// An interval is handed over once per cut: its size does not matter.
#[allow(clippy::large_enum_variant)]
pub enum Next {
    /// One interval of one interface and direction.
    Interval(Interval),
    /// Nothing within the timeout; the view asks again.
    Idle,
    /// No interval will come again (the daemon stopped, the standalone
    /// counting ended); the reason is shown in the header and the view
    /// stays, with its figures, until the user leaves it.
    End(String),
}

/// Where intervals come from: a thread cutting a ledger (standalone) or
/// the daemon's socket (client). The view calls [`Feed::next`] on a thread
/// of its own, again and again, until it returns [`Next::End`] or an error
/// or the view ends.
pub trait Feed: Send {
    /// The next interval, waiting at most about `timeout` ([`POLL`]): a
    /// feed that waits much longer delays the return of [`run`] after the
    /// user quits by as much. An error ends the view: [`run`] returns it.
    fn next(&mut self, timeout: Duration) -> Result<Next, FeedError>;
}

/// A channel is a feed: a counting thread sends each interval it cuts, and
/// dropping the sender ends the feed.
impl Feed for Receiver<Interval> {
    fn next(&mut self, timeout: Duration) -> Result<Next, FeedError> {
        match self.recv_timeout(timeout) {
            Ok(iv) => Ok(Next::Interval(iv)),
            Err(RecvTimeoutError::Timeout) => Ok(Next::Idle),
            Err(RecvTimeoutError::Disconnected) => Ok(Next::End("counting stopped".into())),
        }
    }
}

/// A feed's failure, with its cause's message.
#[derive(Debug)]
pub struct FeedError(Box<dyn std::error::Error + Send + Sync>);

impl FeedError {
    /// An error with this message.
    pub fn msg(message: impl fmt::Display) -> FeedError {
        FeedError(message.to_string().into())
    }
}

impl fmt::Display for FeedError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// Any error converts, so a feed can use `?`.
impl<E: std::error::Error + Send + Sync + 'static> From<E> for FeedError {
    fn from(e: E) -> Self {
        FeedError(Box::new(e))
    }
}

/// Why the view could not run or stopped early.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Standard output is not a terminal.
    #[error("`netledger top` needs a terminal, and standard output is not one; for text output to a pipe or a file use `netledger watch`")]
    NotATerminal,
    /// The terminal failed (raw mode, drawing, reading keys).
    #[error("terminal: {0}")]
    Terminal(#[from] io::Error),
    /// The feed failed.
    #[error("reading intervals: {0}")]
    Feed(FeedError),
    /// The feed panicked (its message was printed after the terminal was
    /// restored).
    #[error("reading intervals: the feed panicked")]
    FeedPanicked,
}

/// How the view ended, and its last figures.
#[derive(Debug)]
pub struct Outcome {
    /// `q`, Ctrl-C or the caller's stop request: all a normal end.
    pub exit: Exit,
    /// Intervals received.
    pub intervals: u64,
    /// Why the feed ended, if it did before the user left.
    pub ended: Option<String>,
    /// The figures at the end (cumulative since the view started), for a
    /// summary on the normal screen.
    pub sheet: Sheet,
}

/// What else the loop can be told.
#[derive(Debug, Clone, Copy, Default)]
pub struct Options {
    /// Polled every [`POLL`]: true ends the view with [`Exit::Stopped`]
    /// (e.g. the flag of a SIGTERM handler the caller installed; in raw
    /// mode Ctrl-C is a key, not a signal).
    pub stop_requested: Option<fn() -> bool>,
}

/// Run the view until `q`, Ctrl-C, an error of the terminal or the feed.
/// The terminal is restored on every way out, a panic included.
pub fn run<F: Feed>(header: Header, feed: F) -> Result<Outcome, Error> {
    run_with(header, feed, Options::default())
}

/// [`run`] with [`Options`].
pub fn run_with<F: Feed>(header: Header, mut feed: F, options: Options) -> Result<Outcome, Error> {
    if !io::stdout().is_terminal() {
        return Err(Error::NotATerminal);
    }
    let guard = Guard::enter()?;
    let mut terminal = Terminal::new(CrosstermBackend::new(io::stdout()))?;
    terminal.clear()?;
    let mut top = Top::new(header, SystemTime::now());
    let stop = AtomicBool::new(false);
    let (tx, rx) = mpsc::channel::<Msg>();
    let exit = thread::scope(|s| {
        // Set however this closure is left, a panic included, so the
        // threads end and the scope can join them.
        let _stop = StopOnDrop(&stop);
        let feed_tx = tx.clone();
        let feeder = s.spawn(|| feed_thread(&mut feed, feed_tx, &stop));
        let input = s.spawn(|| input_thread(tx, &stop, options.stop_requested));
        let exit = ui_loop(&mut terminal, &mut top, &rx);
        stop.store(true, Ordering::SeqCst);
        // The shell comes back before the threads are joined.
        let restored = guard.restore();
        // Joined here so that a panicked feed (already reported by the
        // hook) does not make the scope panic again.
        let _ = feeder.join();
        let _ = input.join();
        restored.map_err(Error::Terminal).and(exit)
    });
    drop(guard);
    let exit = exit?;
    Ok(Outcome {
        exit,
        intervals: top.model().intervals(),
        ended: top.ended().map(str::to_string),
        sheet: top.model().sheet(),
    })
}

/// What the threads tell the loop.
#[allow(clippy::large_enum_variant)]
enum Msg {
    Interval(Interval),
    End(String),
    FeedFailed(FeedError),
    FeedPanicked,
    Term(Event),
    InputFailed(io::Error),
    Stop,
}

struct StopOnDrop<'a>(&'a AtomicBool);

impl Drop for StopOnDrop<'_> {
    fn drop(&mut self) {
        self.0.store(true, Ordering::SeqCst);
    }
}

/// Tells the loop when the feed's thread unwinds.
struct PanicNotice(Sender<Msg>);

impl Drop for PanicNotice {
    fn drop(&mut self) {
        if thread::panicking() {
            let _ = self.0.send(Msg::FeedPanicked);
        }
    }
}

fn feed_thread<F: Feed>(feed: &mut F, tx: Sender<Msg>, stop: &AtomicBool) {
    let _notice = PanicNotice(tx.clone());
    while !stop.load(Ordering::SeqCst) {
        let msg = match feed.next(POLL) {
            Ok(Next::Interval(iv)) => Msg::Interval(iv),
            Ok(Next::Idle) => continue,
            Ok(Next::End(why)) => {
                let _ = tx.send(Msg::End(why));
                return;
            }
            Err(e) => {
                let _ = tx.send(Msg::FeedFailed(e));
                return;
            }
        };
        if tx.send(msg).is_err() {
            return;
        }
    }
}

fn input_thread(tx: Sender<Msg>, stop: &AtomicBool, stop_requested: Option<fn() -> bool>) {
    while !stop.load(Ordering::SeqCst) {
        if stop_requested.is_some_and(|f| f()) {
            let _ = tx.send(Msg::Stop);
            return;
        }
        let msg = match event::poll(POLL) {
            Ok(false) => continue,
            Ok(true) => match event::read() {
                Ok(ev) => Msg::Term(ev),
                Err(e) => Msg::InputFailed(e),
            },
            Err(e) => Msg::InputFailed(e),
        };
        let failed = matches!(msg, Msg::InputFailed(_));
        if tx.send(msg).is_err() || failed {
            return;
        }
    }
}

/// Until the uptime on screen may change: the rest of the current second.
fn until_next_second(top: &Top) -> Duration {
    let up = top
        .now()
        .duration_since(top.header().since)
        .unwrap_or_default();
    Duration::from_secs(1) - Duration::from_nanos(u64::from(up.subsec_nanos()))
        + Duration::from_millis(1)
}

fn ui_loop<B: ratatui::backend::Backend<Error = io::Error>>(
    terminal: &mut Terminal<B>,
    top: &mut Top,
    rx: &Receiver<Msg>,
) -> Result<Exit, Error> {
    let mut dirty = true;
    loop {
        if dirty {
            terminal.draw(|f| top.draw(f))?;
            dirty = false;
        }
        let first = match rx.recv_timeout(until_next_second(top)) {
            Ok(m) => Some(m),
            Err(RecvTimeoutError::Timeout) => None,
            // Both threads are gone without a word: nothing more can come.
            Err(RecvTimeoutError::Disconnected) => return Ok(Exit::Stopped),
        };
        // Everything already waiting is taken before the next draw: the
        // intervals of several interfaces cut together make one redraw.
        for msg in first
            .into_iter()
            .chain(std::iter::from_fn(|| rx.try_recv().ok()))
        {
            match msg {
                Msg::Interval(iv) => {
                    top.interval(iv);
                    dirty = true;
                }
                Msg::End(why) => {
                    top.end(why);
                    dirty = true;
                }
                Msg::FeedFailed(e) => return Err(Error::Feed(e)),
                Msg::FeedPanicked => return Err(Error::FeedPanicked),
                Msg::Term(Event::Key(k)) => match top.key(k) {
                    Reaction::Exit(exit) => return Ok(exit),
                    Reaction::Redraw => dirty = true,
                    Reaction::Ignored => {}
                },
                // The next draw resizes to the new size.
                Msg::Term(Event::Resize(..)) => dirty = true,
                Msg::Term(_) => {}
                Msg::InputFailed(e) => return Err(Error::Terminal(e)),
                Msg::Stop => return Ok(Exit::Stopped),
            }
        }
        if top.tick(SystemTime::now()) {
            dirty = true;
        }
    }
}
