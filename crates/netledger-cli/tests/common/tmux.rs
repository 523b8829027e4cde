//! A real terminal for the `top` tests: a private tmux server (Debian
//! package tmux) with one session, `top`, whose only pane runs a shell
//! command at a given size. The server is killed, and its socket removed,
//! on drop; the pane's processes get SIGHUP with it.
#![allow(dead_code)]

use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

pub struct Tmux {
    server: String,
    /// The server's socket (kill-server leaves it behind).
    socket: PathBuf,
}

impl Tmux {
    /// A server named `prefix-PID-N` whose pane runs `command` (with `sh
    /// -c`) in a `w` x `h` terminal.
    pub fn start(prefix: &str, (w, h): (u16, u16), command: &str) -> Tmux {
        static N: AtomicU32 = AtomicU32::new(0);
        let server = format!(
            "{prefix}-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        );
        let mut t = Tmux {
            server,
            socket: PathBuf::new(),
        };
        t.tmux(&[
            "-f",
            "/dev/null",
            "new-session",
            "-d",
            "-s",
            "top",
            "-x",
            &w.to_string(),
            "-y",
            &h.to_string(),
            command,
        ]);
        t.socket = t
            .tmux(&["display-message", "-p", "#{socket_path}"])
            .trim()
            .into();
        t
    }

    /// `tmux -L SERVER args...`; its stdout. Panics when tmux fails.
    #[track_caller]
    pub fn tmux(&self, args: &[&str]) -> String {
        let out = self.try_tmux(args);
        assert!(
            out.status.success(),
            "tmux {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// `tmux -L SERVER args...`, whatever comes of it.
    pub fn try_tmux(&self, args: &[&str]) -> std::process::Output {
        Command::new("tmux")
            .env_remove("TMUX")
            .args(["-L", &self.server])
            .args(args)
            .stdin(Stdio::null())
            .output()
            .unwrap_or_else(|e| panic!("running tmux: {e}"))
    }

    /// The pane's screen as text.
    pub fn screen(&self) -> String {
        self.tmux(&["capture-pane", "-p", "-t", "top"])
    }

    /// The screen once `ok` holds for it; panics with the screen, naming
    /// `what`, after `patience`.
    #[track_caller]
    pub fn wait_for(&self, what: &str, patience: Duration, ok: impl Fn(&str) -> bool) -> String {
        let start = Instant::now();
        loop {
            let s = self.screen();
            if ok(&s) {
                return s;
            }
            if start.elapsed() > patience {
                panic!("the screen did not show {what} within {patience:?}:\n{s}");
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Tmux {
    fn drop(&mut self) {
        let _ = self.try_tmux(&["kill-server"]);
        let _ = std::fs::remove_file(&self.socket);
    }
}
