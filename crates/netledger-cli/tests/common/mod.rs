//! A `netledger watch` child process for the CLI tests.

pub mod daemon;

use std::io::{BufRead, BufReader, Read};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::time::Duration;

/// How long a watch may take to say it counts.
const START: Duration = Duration::from_secs(30);

/// A running `netledger watch`; killed (its XDP link goes with it) if the
/// test ends before stopping it.
pub struct Watch {
    pub child: Child,
    /// Its stderr, line by line, read on a thread (so a watch that never
    /// starts fails the test instead of hanging it).
    stderr: mpsc::Receiver<String>,
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
        let err = BufReader::new(child.stderr.take().unwrap());
        let (tx, stderr) = mpsc::channel();
        std::thread::spawn(move || {
            for line in err.lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let out = child.stdout.take().unwrap();
        // Collect stdout on a thread, so a full pipe never blocks the watch.
        let (tx, stdout) = mpsc::channel();
        std::thread::spawn(move || {
            let mut s = String::new();
            BufReader::new(out).read_to_string(&mut s).unwrap();
            let _ = tx.send(s);
        });
        // Dropped (and killed, by pid) if it does not start.
        let w = Watch {
            child,
            stderr,
            stdout,
        };
        match w.stderr.recv_timeout(START) {
            Ok(line) => assert!(
                line.contains("counting ingress"),
                "watch did not start: {line}"
            ),
            Err(e) => panic!("watch said nothing on stderr within {START:?} ({e})"),
        }
        w
    }

    /// SIGINT, then its exit status, all it printed on stdout, and the rest of stderr.
    pub fn stop(&mut self) -> (ExitStatus, String, String) {
        // SAFETY: kill(2) on the pid of our own child, which has not been reaped.
        unsafe { libc::kill(self.child.id() as i32, libc::SIGINT) };
        let status = self.child.wait().unwrap();
        // The reader ends with the pipe: every line it read is in the channel.
        let rest: String = self.stderr.iter().map(|l| l + "\n").collect();
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
