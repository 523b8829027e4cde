//! SIGINT and SIGTERM as a stop request the long-running commands poll.

use std::io;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};

static STOP: AtomicBool = AtomicBool::new(false);

extern "C" fn on_signal(_: libc::c_int) {
    STOP.store(true, Ordering::SeqCst);
}

/// From now on SIGINT and SIGTERM request a stop instead of killing.
pub fn install_stop_handlers() -> Result<()> {
    for sig in [libc::SIGINT, libc::SIGTERM] {
        // SAFETY: an all-zero sigaction is valid; the handler only stores to
        // an atomic, which is async-signal-safe.
        let mut sa: libc::sigaction = unsafe { std::mem::zeroed() };
        sa.sa_sigaction = on_signal as *const () as usize;
        // SAFETY: installs a valid handler for a catchable signal.
        if unsafe { libc::sigaction(sig, &sa, std::ptr::null_mut()) } != 0 {
            return Err(io::Error::last_os_error()).context("installing the signal handler");
        }
    }
    Ok(())
}

/// A stop was requested.
pub fn stop_requested() -> bool {
    STOP.load(Ordering::SeqCst)
}

/// A period's deadlines: `every` apart from a start, and never in the past,
/// so that after a stall (a slow commit, a blocked client) the next one is a
/// whole period away instead of a burst of cuts catching up.
pub struct Ticker {
    next: Instant,
    every: Duration,
}

impl Ticker {
    /// The first deadline one period from now.
    pub fn new(every: Duration) -> Ticker {
        Ticker {
            next: Instant::now() + every,
            every,
        }
    }

    /// The next deadline.
    pub fn due(&self) -> Instant {
        self.next
    }

    /// On to the deadline after: a period later, or a period from now if
    /// that is later.
    pub fn advance(&mut self) {
        self.next = (self.next + self.every).max(Instant::now() + self.every);
    }

    /// Sleep until the next deadline (or a stop request), then advance.
    pub fn wait(&mut self) {
        sleep_until(self.next);
        self.advance();
    }
}

/// Sleep until `deadline` or a stop request, whichever comes first.
pub fn sleep_until(deadline: Instant) {
    while !stop_requested() {
        let now = Instant::now();
        if now >= deadline {
            return;
        }
        std::thread::sleep((deadline - now).min(Duration::from_millis(20)));
    }
}
