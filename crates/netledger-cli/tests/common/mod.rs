//! A `netledger watch` child process for the CLI tests.

pub mod daemon;

use std::io::{BufRead, BufReader, Read};
use std::process::{Child, ChildStderr, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::time::Duration;

/// A running `netledger watch`; killed (its XDP link goes with it) if the
/// test ends before stopping it.
pub struct Watch {
    pub child: Child,
    stderr: BufReader<ChildStderr>,
    stdout: mpsc::Receiver<String>,
}

impl Watch {
    /// Spawn `cmd` (a `netledger watch`) and wait until it says it counts.
    #[track_caller]
    pub fn start(mut cmd: Command) -> Watch {
        let mut child = cmd
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let stderr = BufReader::new(child.stderr.take().unwrap());
        let out = child.stdout.take().unwrap();
        // Collect stdout on a thread, so a full pipe never blocks the watch.
        let (tx, stdout) = mpsc::channel();
        std::thread::spawn(move || {
            let mut s = String::new();
            BufReader::new(out).read_to_string(&mut s).unwrap();
            let _ = tx.send(s);
        });
        let watch = Watch {
            child,
            stderr,
            stdout,
        };
        let mut line = String::new();
        let mut w = watch;
        w.stderr.read_line(&mut line).unwrap();
        assert!(
            line.contains("counting ingress"),
            "watch did not start: {line}"
        );
        w
    }

    /// SIGINT, then its exit status, all it printed on stdout, and the rest of stderr.
    pub fn stop(&mut self) -> (ExitStatus, String, String) {
        // SAFETY: kill(2) on the pid of our own child, which has not been reaped.
        unsafe { libc::kill(self.child.id() as i32, libc::SIGINT) };
        let status = self.child.wait().unwrap();
        let mut rest = String::new();
        self.stderr.read_to_string(&mut rest).unwrap();
        let out = self.stdout.recv_timeout(Duration::from_secs(10)).unwrap();
        (status, out, rest)
    }
}

impl Drop for Watch {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}
