//! The service's control socket: `top` (and anything else) connects, gets a
//! hello line saying what the service counts, then every interval as it is
//! committed (one JSON line each, every field: `Interval::to_wire`).
//! The socket is 0600: its owner (root, or the service's user) alone.

use std::io::{BufRead, BufReader, ErrorKind, Write};
use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{bail, Context, Result};
use netledger::Interval;
use serde::{Deserialize, Serialize};

/// What the service says first.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Hello {
    #[serde(rename = "type")]
    pub kind: String,
    pub pid: u32,
    pub version: String,
    /// When the service started (ns since the Unix epoch).
    pub since_ns: u64,
    pub interval_ms: u64,
    pub strategy: String,
    /// One per interface and direction: (iface, dir, hook).
    pub ledgers: Vec<(String, String, String)>,
}

/// The listening end, in the service.
pub struct Server {
    path: PathBuf,
    clients: Arc<Mutex<Vec<UnixStream>>>,
}

/// Make way for a control socket at `path`: nothing there, or a stale
/// socket (nobody listens) removed. Another kind of file, a socket in use,
/// or one this process may not connect to are refused, untouched.
pub fn clear_stale(path: &Path) -> Result<()> {
    if let Ok(meta) = std::fs::symlink_metadata(path) {
        // Only a socket nobody listens on is replaced: never another
        // kind of file, nor a socket this process may not connect to.
        if !meta.file_type().is_socket() {
            bail!(
                "{} exists and is not a socket; pass --socket PATH",
                path.display()
            );
        }
        match UnixStream::connect(path) {
            Ok(_) => bail!(
                "another netledger run is serving the control socket {}; pass --socket PATH",
                path.display()
            ),
            Err(e) if e.kind() == ErrorKind::ConnectionRefused => std::fs::remove_file(path)
                .with_context(|| format!("removing the stale socket {}", path.display()))?,
            Err(e) => bail!(
                "cannot tell whether the control socket {} is in use ({e}); pass --socket PATH",
                path.display()
            ),
        }
    }
    Ok(())
}

impl Server {
    /// Listen at `path` (its directory made 0750 if missing; a stale socket
    /// replaced; a live one refused).
    pub fn start(path: &Path, hello: Hello) -> Result<Server> {
        if let Some(dir) = path.parent() {
            if !dir.exists() {
                std::fs::create_dir_all(dir)
                    .with_context(|| format!("creating {}", dir.display()))?;
                let _ = std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o750));
            }
        }
        clear_stale(path)?;
        let listener =
            UnixListener::bind(path).with_context(|| format!("listening on {}", path.display()))?;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))
            .with_context(|| format!("setting the mode of {}", path.display()))?;
        let clients: Arc<Mutex<Vec<UnixStream>>> = Arc::default();
        let list = Arc::clone(&clients);
        let hello = serde_json::to_string(&hello).expect("a hello serialises");
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                let Ok(mut s) = conn else { continue };
                let _ = s.set_write_timeout(Some(Duration::from_millis(200)));
                if writeln!(s, "{hello}").is_ok() {
                    list.lock().unwrap_or_else(|e| e.into_inner()).push(s);
                }
            }
        });
        Ok(Server {
            path: path.to_path_buf(),
            clients,
        })
    }

    /// Send `iv` to every client; one that does not keep up is dropped.
    pub fn publish(&self, iv: &Interval) {
        let mut clients = self.clients.lock().unwrap_or_else(|e| e.into_inner());
        if clients.is_empty() {
            return;
        }
        let line = iv.to_wire();
        clients.retain_mut(|c| writeln!(c, "{line}").is_ok());
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

/// A connection to the service.
pub struct Client {
    reader: BufReader<UnixStream>,
    /// A line read in part when a wait ran out.
    partial: String,
    pub hello: Hello,
}

impl Client {
    /// Connect to the service at `path`; `None` if none listens there.
    pub fn connect(path: &Path) -> Result<Option<Client>> {
        let stream = match UnixStream::connect(path) {
            Ok(s) => s,
            Err(e) if matches!(e.kind(), ErrorKind::NotFound | ErrorKind::ConnectionRefused) => {
                return Ok(None)
            }
            Err(e) if e.kind() == ErrorKind::PermissionDenied => {
                bail!(
                    "cannot connect to {}: permission denied; run as the service's user (or root)",
                    path.display()
                )
            }
            Err(e) => return Err(e).with_context(|| format!("connecting to {}", path.display())),
        };
        stream.set_read_timeout(Some(Duration::from_secs(5)))?;
        let mut reader = BufReader::new(stream);
        let mut line = String::new();
        reader.read_line(&mut line)?;
        let hello: Hello = serde_json::from_str(&line)
            .with_context(|| format!("{} did not say hello: {line:?}", path.display()))?;
        Ok(Some(Client {
            reader,
            partial: String::new(),
            hello,
        }))
    }

    /// The next interval, waiting at most `timeout` (None when none came;
    /// an error when the service went away).
    pub fn next(&mut self, timeout: Duration) -> Result<Option<Interval>> {
        self.reader
            .get_ref()
            .set_read_timeout(Some(timeout.max(Duration::from_millis(1))))?;
        match self.reader.read_line(&mut self.partial) {
            Ok(0) => bail!("the service closed the connection"),
            Ok(_) if self.partial.ends_with('\n') => {
                let line = std::mem::take(&mut self.partial);
                Interval::from_wire(line.trim_end())
                    .map(Some)
                    .map_err(|e| anyhow::anyhow!("a bad interval from the service: {e}"))
            }
            // What was read so far stays in `partial` for the next call.
            Ok(_) => Ok(None),
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => Ok(None),
            Err(e) => Err(e.into()),
        }
    }
}

/// Nanoseconds since the Unix epoch.
pub fn ns(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0)
}
