//! Raw mode and the alternate screen, and putting the terminal back on
//! every way out: a normal return, an error, a dropped guard, and a panic
//! (a hook restores the terminal first, then the panic message is printed
//! on the normal screen where it stays readable).
//!
//! What was changed is tracked in one process-wide place, so restoring
//! twice does nothing the second time and the panic hook knows whether
//! there is anything to restore.

use std::io::{self, Write};
use std::sync::{Mutex, MutexGuard, Once, TryLockError};

use crossterm::cursor::{Hide, Show};
use crossterm::execute;
use crossterm::terminal::{EnterAlternateScreen, LeaveAlternateScreen};

/// Switches raw mode on or off.
type RawSwitch = fn() -> io::Result<()>;

/// What the view changed in the terminal, to be undone.
struct Changed {
    /// Where the escape sequences go (standard output).
    out: Box<dyn Write + Send>,
    /// Raw mode is on and this turns it off.
    raw_off: Option<RawSwitch>,
    /// The alternate screen is shown and the cursor hidden.
    alternate: bool,
}

static CHANGED: Mutex<Option<Changed>> = Mutex::new(None);
static HOOK: Once = Once::new();

fn changed() -> MutexGuard<'static, Option<Changed>> {
    // A panic while the lock was held leaves the state as it was: still
    // the truth about the terminal.
    CHANGED.lock().unwrap_or_else(|e| e.into_inner())
}

/// Owns the terminal's raw mode and alternate screen; restores them when
/// dropped.
#[derive(Debug)]
pub struct Guard {
    _private: (),
}

impl Guard {
    /// Raw mode, the alternate screen and a hidden cursor on standard
    /// output; the panic hook is installed first.
    pub fn enter() -> io::Result<Guard> {
        Guard::enter_with(
            Box::new(io::stdout()),
            crossterm::terminal::enable_raw_mode,
            crossterm::terminal::disable_raw_mode,
        )
    }

    /// The same on `out` with these raw mode switches (tests pass a buffer
    /// and switches that only record).
    pub(crate) fn enter_with(
        out: Box<dyn Write + Send>,
        raw_on: RawSwitch,
        raw_off: RawSwitch,
    ) -> io::Result<Guard> {
        install_panic_hook();
        // Whatever a previous view left behind is put back first.
        restore()?;
        // Each step is recorded as soon as it is done, so a failure half
        // way is undone by the guard's restore. (The guard is declared
        // before the lock is taken: on an early return the lock is released
        // first and the guard's restore can take it.)
        let guard = Guard { _private: () };
        let mut state = changed();
        let c = state.insert(Changed {
            out,
            raw_off: None,
            alternate: false,
        });
        raw_on()?;
        c.raw_off = Some(raw_off);
        execute!(c.out, EnterAlternateScreen, Hide)?;
        c.alternate = true;
        drop(state);
        Ok(guard)
    }

    /// Put the terminal back now (also done on drop).
    pub fn restore(&self) -> io::Result<()> {
        restore().map(|_| ())
    }
}

impl Drop for Guard {
    fn drop(&mut self) {
        // Nothing to report to: the terminal is as good as it gets.
        let _ = restore();
    }
}

/// The terminal is in raw mode or on the alternate screen because of the
/// view.
pub fn is_changed() -> bool {
    changed().is_some()
}

/// Undo what the view changed: leave the alternate screen, show the
/// cursor, leave raw mode. Returns whether there was anything to undo.
/// Every step is tried even if one fails; the first error is returned.
pub fn restore() -> io::Result<bool> {
    let taken = changed().take();
    undo(taken)
}

fn undo(taken: Option<Changed>) -> io::Result<bool> {
    let Some(mut c) = taken else {
        return Ok(false);
    };
    let mut result = Ok(true);
    if c.alternate {
        if let Err(e) = execute!(c.out, Show, LeaveAlternateScreen) {
            result = Err(e);
        }
    }
    if let Some(off) = c.raw_off {
        if let Err(e) = off() {
            if result.is_ok() {
                result = Err(e);
            }
        }
    }
    result
}

/// Once per process: a panic hook that restores the terminal, then runs the
/// hook that was there before (which prints the message).
fn install_panic_hook() {
    HOOK.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            // try_lock: a panic inside restore itself must not deadlock.
            let taken = match CHANGED.try_lock() {
                Ok(mut s) => s.take(),
                Err(TryLockError::Poisoned(e)) => e.into_inner().take(),
                Err(TryLockError::WouldBlock) => None,
            };
            let _ = undo(taken);
            previous(info);
        }));
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
    use std::sync::Arc;

    use ratatui::backend::TestBackend;
    use ratatui::Terminal;

    /// A writer tests can read back.
    #[derive(Clone, Default)]
    struct Shared(Arc<Mutex<Vec<u8>>>);

    impl Write for Shared {
        fn write(&mut self, b: &[u8]) -> io::Result<usize> {
            self.0
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .extend_from_slice(b);
            Ok(b.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    impl Shared {
        fn text(&self) -> String {
            String::from_utf8_lossy(&self.0.lock().unwrap_or_else(|e| e.into_inner())).into_owned()
        }
    }

    static RAW: AtomicBool = AtomicBool::new(false);
    static RAW_OFFS: AtomicUsize = AtomicUsize::new(0);
    static PRINTED: AtomicUsize = AtomicUsize::new(0);
    static CHANGED_WHEN_PRINTED: AtomicBool = AtomicBool::new(true);

    fn raw_on() -> io::Result<()> {
        RAW.store(true, Ordering::SeqCst);
        Ok(())
    }

    fn raw_off() -> io::Result<()> {
        RAW.store(false, Ordering::SeqCst);
        RAW_OFFS.fetch_add(1, Ordering::SeqCst);
        Ok(())
    }

    /// One test: the panic hook is process-wide and installed once.
    #[test]
    fn a_panic_in_the_draw_restores_the_terminal_before_the_message() {
        // Stands for the default hook that prints the message: it records
        // whether the terminal was still changed when it ran.
        let default = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            CHANGED_WHEN_PRINTED
                .store(is_changed() || RAW.load(Ordering::SeqCst), Ordering::SeqCst);
            PRINTED.fetch_add(1, Ordering::SeqCst);
            default(info);
        }));

        let out = Shared::default();
        let guard = Guard::enter_with(Box::new(out.clone()), raw_on, raw_off).expect("enter");
        assert!(is_changed());
        assert!(RAW.load(Ordering::SeqCst));
        assert!(
            out.text().contains("\x1b[?1049h"),
            "alternate screen entered"
        );
        assert!(out.text().contains("\x1b[?25l"), "cursor hidden");

        let caught = std::panic::catch_unwind(|| {
            let mut t = Terminal::new(TestBackend::new(80, 24)).expect("terminal");
            let _ = t.draw(|_| panic!("boom inside the draw"));
        });
        assert!(caught.is_err());
        assert_eq!(PRINTED.load(Ordering::SeqCst), 1);
        assert!(
            !CHANGED_WHEN_PRINTED.load(Ordering::SeqCst),
            "restored before the message is printed"
        );
        assert!(!is_changed());
        assert!(!RAW.load(Ordering::SeqCst));
        assert!(out.text().contains("\x1b[?1049l"), "alternate screen left");
        assert!(out.text().contains("\x1b[?25h"), "cursor shown");

        // The guard's own restore finds nothing left to do.
        assert!(!restore().expect("restore"));
        drop(guard);
        assert_eq!(RAW_OFFS.load(Ordering::SeqCst), 1);

        // A normal exit through the guard restores once.
        let guard = Guard::enter_with(Box::new(out.clone()), raw_on, raw_off).expect("enter");
        assert!(is_changed());
        drop(guard);
        assert!(!is_changed());
        assert!(!RAW.load(Ordering::SeqCst));
        assert_eq!(RAW_OFFS.load(Ordering::SeqCst), 2);
    }
}
