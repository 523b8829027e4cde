//! Least privilege: netledger as an unprivileged user holding only
//! CAP_BPF, CAP_NET_ADMIN and CAP_PERFMON (inheritable and ambient, the
//! bounding set reduced to them: what `contrib/netledger.service` grants),
//! run through `setpriv` (util-linux).
//!
//! * `watch` (both strategies) counts real frames; a dropped capability is
//!   named in the error with the fix, both by netledger's own check and,
//!   with that check skipped, by the kernel's refusal.
//! * `run` (both strategies) in a mount namespace of its own whose bpffs is
//!   mounted 0700 as systemd mounts it: refused with the fix until the
//!   operator's preparation is done (`chmod o+x /sys/fs/bpf`, and
//!   `/sys/fs/bpf/netledger` made the service user's, as the unit's
//!   `ExecStartPre=+` lines do); refused naming CAP_SYS_ADMIN where bpffs is
//!   not mounted at all; then it counts, pins 0600, serves its control
//!   socket 0600, writes its store 0640 in a 0750 directory, is restarted
//!   and adopts its pins (swap after a cut that swapped in a fresh flow map),
//!   and `down` takes it down, all as that user.
//! * `top`: its error without a terminal, and its client connection to the
//!   service (in tmux) as the service's user, with no capability.
//! * `report`: as a user in the store's group with no capability, while the
//!   service runs and after; refused to a user outside the group.
//! * The unit grants exactly these three capabilities and prepares bpffs.
//!
//! The users are numeric ids with no passwd entry (nothing to remove); the
//! namespaces, mount namespace holders, tmux servers, processes and
//! temporary directories are removed on drop. Needs root, util-linux
//! (setpriv, unshare, nsenter) and tmux; nothing skips. Takes about 40 s.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use netledger_lab::netns::{self, Ipv6Mode, NetNs, RawSocket, Veth};

#[path = "common/daemon.rs"]
mod daemon;
#[path = "common/tmux.rs"]
mod tmux;
use daemon::one_error_line;
use tmux::Tmux;

const BIN: &str = env!("CARGO_BIN_EXE_netledger");

/// The capabilities the service is granted (setpriv's names), and as the
/// unit names them.
const CAPS: [&str; 3] = ["bpf", "net_admin", "perfmon"];
const UNIT_CAPS: [&str; 3] = ["CAP_BPF", "CAP_NET_ADMIN", "CAP_PERFMON"];

const RX_IF: &str = "nlhd0";
const TX_IF: &str = "nlhd1";

// ---------------------------------------------------------------------------
// Users

/// The test's users: the service's (its primary group is the store's
/// group), a reader in that group, and an outsider. Numeric ids unused on
/// this machine, so there is nothing to create or remove.
#[derive(Debug, Clone, Copy)]
struct Users {
    service: u32,
    reader: u32,
    outsider: u32,
}

impl Users {
    fn new() -> Users {
        let base = 4_240_000 + (std::process::id() % 10_000) * 4;
        let users = Users {
            service: base,
            reader: base + 1,
            outsider: base + 2,
        };
        for id in [base, base + 1, base + 2] {
            for db in ["passwd", "group"] {
                let o = Command::new("getent")
                    .args([db, &id.to_string()])
                    .output()
                    .expect("running getent");
                assert!(
                    !o.status.success(),
                    "id {id} is in use ({db}: {}); the test needs unused ids",
                    String::from_utf8_lossy(&o.stdout).trim()
                );
            }
        }
        users
    }

    /// The store's group: the service user's primary group.
    fn group(&self) -> u32 {
        self.service
    }
}

/// How a command is run: as which user, with which capabilities.
#[derive(Debug, Clone)]
struct As {
    uid: u32,
    gid: u32,
    groups: Vec<u32>,
    caps: Vec<&'static str>,
}

impl As {
    fn service(u: &Users) -> As {
        As {
            uid: u.service,
            gid: u.group(),
            groups: vec![],
            caps: CAPS.to_vec(),
        }
    }

    fn without(mut self, cap: &str) -> As {
        self.caps.retain(|c| *c != cap);
        self
    }

    fn no_caps(mut self) -> As {
        self.caps.clear();
        self
    }

    fn reader(u: &Users) -> As {
        As {
            uid: u.reader,
            gid: u.reader,
            groups: vec![u.group()],
            caps: vec![],
        }
    }

    fn outsider(u: &Users) -> As {
        As {
            uid: u.outsider,
            gid: u.outsider,
            groups: vec![],
            caps: vec![],
        }
    }

    /// setpriv and its arguments, ending where the program goes.
    fn setpriv(&self) -> Vec<String> {
        let caps: Vec<String> = self.caps.iter().map(|c| format!("+{c}")).collect();
        let list = |prefix: &str| {
            let mut v = vec![prefix.to_string()];
            v.extend(caps.iter().cloned());
            v.join(",")
        };
        let mut a = vec![
            "setpriv".to_string(),
            format!("--reuid={}", self.uid),
            format!("--regid={}", self.gid),
        ];
        if self.groups.is_empty() {
            a.push("--clear-groups".into());
        } else {
            let g: Vec<String> = self.groups.iter().map(u32::to_string).collect();
            a.push(format!("--groups={}", g.join(",")));
        }
        a.push(format!("--inh-caps={}", list("-all")));
        if !caps.is_empty() {
            a.push(format!("--ambient-caps={}", caps.join(",")));
        }
        a.push(format!("--bounding-set={}", list("-all")));
        a.push("--".into());
        a
    }
}

// ---------------------------------------------------------------------------
// Mount namespaces

/// A mount namespace of its own, held by a process: `/sys/fs/bpf` there is
/// a fresh bpffs mounted 0700 (as systemd mounts it), or, with `bpffs:
/// false`, an empty tmpfs (bpffs not mounted). Everything pinned there goes
/// with it: killing the holder (and every process inside) ends it.
struct MountNs {
    holder: Child,
}

impl MountNs {
    fn new(bpffs: bool) -> MountNs {
        let mount = if bpffs {
            "mount -t bpf -o mode=0700 bpf /sys/fs/bpf"
        } else {
            "mount -t tmpfs -o mode=0755,size=1m tmpfs /sys/fs/bpf"
        };
        let mut holder = Command::new("unshare")
            .args(["--mount", "--propagation", "private", "sh", "-c"])
            .arg(format!("{mount} && echo ready && exec sleep 600"))
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("running unshare (util-linux): {e}"));
        let mut line = String::new();
        BufReader::new(holder.stdout.take().unwrap())
            .read_line(&mut line)
            .expect("reading the mount namespace holder");
        if line.trim() != "ready" {
            let _ = holder.kill();
            let out = holder.wait_with_output().expect("the holder");
            panic!(
                "making a mount namespace ({mount}) failed: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        MountNs { holder }
    }

    fn pid(&self) -> u32 {
        self.holder.id()
    }

    /// A path as seen inside the namespace (through /proc/PID/root).
    fn path(&self, p: &str) -> PathBuf {
        PathBuf::from(format!("/proc/{}/root{p}", self.pid()))
    }

    /// `sh -c script` as root inside.
    #[track_caller]
    fn root_sh(&self, script: &str) {
        let o = Command::new("nsenter")
            .arg(format!("--mount=/proc/{}/ns/mnt", self.pid()))
            .args(["sh", "-c", script])
            .output()
            .expect("running nsenter");
        assert!(
            o.status.success(),
            "{script}: {}",
            String::from_utf8_lossy(&o.stderr)
        );
    }

    /// The operator's preparation (what the unit's ExecStartPre=+ does):
    /// bpffs searchable, and netledger's directory there the service user's.
    fn prepare_for(&self, u: &Users) {
        self.root_sh(&format!(
            "chmod o+x /sys/fs/bpf && install -d -o {} -g {} -m 0700 /sys/fs/bpf/netledger",
            u.service,
            u.group()
        ));
    }
}

impl Drop for MountNs {
    fn drop(&mut self) {
        let _ = self.holder.kill();
        let _ = self.holder.wait();
    }
}

// ---------------------------------------------------------------------------
// The testbed

/// Two namespaces joined by a veth pair (`nlhd0` receives), a directory
/// tree for the service (`lib/netledger` its state directory, `run` its
/// runtime directory, both its own and 0750), removed on drop.
struct Bed {
    veth: Option<Veth>,
    rx: NetNs,
    tx: NetNs,
    dir: tempfile::TempDir,
    users: Users,
}

impl Bed {
    fn new(tag: &str) -> Bed {
        let users = Users::new();
        let rx = NetNs::create(&format!("nlhd-{tag}-rx"))
            .unwrap_or_else(|e| panic!("creating a network namespace: {e}"));
        let tx = NetNs::create(&format!("nlhd-{tag}-tx"))
            .unwrap_or_else(|e| panic!("creating a network namespace: {e}"));
        let veth = netns::veth_pair(TX_IF, Some(&tx), RX_IF, Some(&rx))
            .unwrap_or_else(|e| panic!("creating veth {TX_IF} <-> {RX_IF}: {e}"));
        for end in [veth.a(), veth.b()] {
            end.prepare(Ipv6Mode::Off)
                .unwrap_or_else(|e| panic!("preparing {}: {e}", end.name()));
        }
        let dir = tempfile::Builder::new()
            .prefix(&format!("nlhd-{tag}-"))
            .tempdir()
            .unwrap_or_else(|e| panic!("creating a temporary directory: {e}"));
        // Everyone may pass through; the service's directories are its own.
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o711)).unwrap();
        std::fs::create_dir_all(dir.path().join("lib/netledger")).unwrap();
        std::fs::create_dir_all(dir.path().join("run")).unwrap();
        for d in ["lib/netledger", "run"] {
            let p = dir.path().join(d);
            std::os::unix::fs::chown(&p, Some(users.service), Some(users.group())).unwrap();
            std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o750)).unwrap();
        }
        Bed {
            veth: Some(veth),
            rx,
            tx,
            dir,
            users,
        }
    }

    fn db(&self) -> String {
        self.dir
            .path()
            .join("lib/netledger/netledger.db")
            .display()
            .to_string()
    }

    fn socket(&self) -> String {
        self.dir
            .path()
            .join("run/netledger.sock")
            .display()
            .to_string()
    }

    /// The command line: nsenter (network namespace, and `mnt` if given),
    /// setpriv as `who`, netledger `args`.
    fn command(&self, mnt: Option<&MountNs>, who: &As, args: &[&str]) -> Command {
        let mut c = Command::new("nsenter");
        if let Some(m) = mnt {
            c.arg(format!("--mount=/proc/{}/ns/mnt", m.pid()));
        }
        c.arg(format!("--net=/run/netns/{}", self.rx.name()))
            .args(who.setpriv())
            .arg(BIN)
            .args(args)
            .stdin(Stdio::null());
        c
    }

    #[track_caller]
    fn output(&self, mnt: Option<&MountNs>, who: &As, args: &[&str]) -> Output {
        self.command(mnt, who, args)
            .output()
            .unwrap_or_else(|e| panic!("running netledger {args:?}: {e}"))
    }

    fn spawn(&self, mnt: Option<&MountNs>, who: &As, args: &[&str]) -> Proc {
        Proc::spawn(self.command(mnt, who, args))
    }

    fn macs(&self) -> ([u8; 6], [u8; 6]) {
        let veth = self.veth.as_ref().expect("the veth pair");
        let mac = |i: &netns::Iface| {
            i.mac()
                .unwrap_or_else(|e| panic!("MAC of {}: {e}", i.name()))
        };
        (mac(veth.a()), mac(veth.b()))
    }

    /// `n` frames of the known flow 10.98.0.1:7000 -> 10.98.0.2:7001 (100
    /// bytes each), then, if `keys` > 0, one frame each of that many other
    /// flows (random sources).
    fn send(&self, n: u64, keys: u32) {
        let sock = RawSocket::open_in(Some(&self.tx), TX_IF)
            .unwrap_or_else(|e| panic!("opening a raw socket on {TX_IF}: {e}"));
        let macs = self.macs();
        let frame = |src: [u8; 4], sport: u16, payload: usize| {
            let mut f = Vec::new();
            etherparse::PacketBuilder::ethernet2(macs.0, macs.1)
                .ipv4(src, [10, 98, 0, 2], 64)
                .udp(sport, 7001)
                .write(&mut f, &vec![0x5a; payload])
                .expect("building a frame");
            f
        };
        let known = frame([10, 98, 0, 1], 7000, 58);
        assert_eq!(known.len(), 100);
        for _ in 0..n {
            sock.send(&known).expect("sending a frame");
        }
        for i in 0..keys {
            let src = [10, 200 + (i >> 16) as u8, (i >> 8) as u8, i as u8];
            sock.send(&frame(src, 9, 18)).expect("sending a frame");
        }
    }
}

impl Drop for Bed {
    fn drop(&mut self) {
        drop(self.veth.take());
    }
}

/// Lines of output, collected by a thread.
type Lines = Arc<Mutex<Vec<String>>>;

/// A netledger child: stdout and stderr lines collected by threads; killed
/// (-9) and reaped on drop.
struct Proc {
    child: Child,
    pid: u32,
    out: Lines,
    err: Lines,
    readers: Vec<JoinHandle<()>>,
    reaped: bool,
}

impl Proc {
    fn spawn(mut cmd: Command) -> Proc {
        let mut child = cmd
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("starting {cmd:?}: {e}"));
        let collect = |r: Box<dyn std::io::Read + Send>, into: Lines| {
            std::thread::spawn(move || {
                for line in BufReader::new(r).lines() {
                    let Ok(line) = line else { break };
                    into.lock().unwrap_or_else(|e| e.into_inner()).push(line);
                }
            })
        };
        let (out, err): (Lines, Lines) = Default::default();
        let readers = vec![
            collect(Box::new(child.stdout.take().unwrap()), Arc::clone(&out)),
            collect(Box::new(child.stderr.take().unwrap()), Arc::clone(&err)),
        ];
        Proc {
            pid: child.id(),
            child,
            out,
            err,
            readers,
            reaped: false,
        }
    }

    fn stderr(&self) -> String {
        self.err
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .join("\n")
    }

    /// Wait until stderr has `n` lines containing `needle`.
    #[track_caller]
    fn wait_for_nth(&mut self, needle: &str, n: usize) {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let found = self
                .err
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .iter()
                .filter(|l| l.contains(needle))
                .count();
            if found >= n {
                return;
            }
            if let Ok(Some(st)) = self.child.try_wait() {
                self.reaped = true;
                for r in self.readers.drain(..) {
                    let _ = r.join();
                }
                panic!(
                    "netledger exited ({st}) before saying {needle:?}: {}",
                    self.stderr()
                );
            }
            assert!(
                Instant::now() < deadline,
                "netledger did not say {needle:?} ({n} times) in 30 s: {}",
                self.stderr()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    #[track_caller]
    fn wait_for(&mut self, needle: &str) {
        self.wait_for_nth(needle, 1);
    }

    /// Send `signal`, wait for the exit (20 s at most; it must succeed),
    /// and return stdout.
    #[track_caller]
    fn stop(&mut self, signal: i32) -> Vec<String> {
        // SAFETY: kill(2) on our own child (nsenter execs setpriv, which
        // execs netledger: the same pid), not yet reaped.
        unsafe { libc::kill(self.pid as i32, signal) };
        let deadline = Instant::now() + Duration::from_secs(20);
        let status = loop {
            if let Some(st) = self.child.try_wait().expect("waiting for netledger") {
                break st;
            }
            if Instant::now() > deadline {
                let _ = self.child.kill();
                let _ = self.child.wait();
                self.reaped = true;
                panic!("netledger did not stop within 20 s: {}", self.stderr());
            }
            std::thread::sleep(Duration::from_millis(10));
        };
        self.reaped = true;
        for r in self.readers.drain(..) {
            let _ = r.join();
        }
        assert!(
            status.success(),
            "netledger ended with {status}: {}",
            self.stderr()
        );
        self.out.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        if !self.reaped {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

#[track_caller]
fn succeeded(o: &Output, what: &str) -> String {
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success(), "{what} failed ({}): {err}", o.status);
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// Mode and owner of a path.
fn mode_owner(p: &Path) -> (u32, u32, u32) {
    let m = std::fs::symlink_metadata(p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
    (m.mode() & 0o7777, m.uid(), m.gid())
}

/// Every file under `dir` (recursively), with its mode and owner.
fn files_under(dir: &Path) -> BTreeMap<PathBuf, (u32, u32, u32)> {
    let mut out = BTreeMap::new();
    let mut todo = vec![dir.to_path_buf()];
    while let Some(d) = todo.pop() {
        for e in std::fs::read_dir(&d).unwrap_or_else(|e| panic!("{}: {e}", d.display())) {
            let p = e.unwrap().path();
            if p.is_dir() {
                todo.push(p);
            } else {
                out.insert(p.clone(), mode_owner(&p));
            }
        }
    }
    out
}

/// Per-flow packets of the known flow in JSON lines (watch or report).
fn known_packets(lines: &str) -> u64 {
    lines
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|v| {
            v["type"] == "flow" && v["key"]["src"] == "10.98.0.1" && v["key"]["sport"] == 7000
        })
        .map(|v| v["packets"].as_u64().unwrap_or(0))
        .sum()
}

// ---------------------------------------------------------------------------
// Tests

#[test]
fn watch_counts_with_only_the_three_capabilities() {
    let bed = Bed::new("pw");
    let who = As::service(&bed.users);
    // A bpffs like systemd's, prepared as the unit prepares it: the watch's
    // pins (lock) are the user's and 0600.
    let mnt = MountNs::new(true);
    mnt.prepare_for(&bed.users);
    for strategy in ["lock", "swap"] {
        let mut w = bed.spawn(
            Some(&mnt),
            &who,
            &[
                "watch",
                "--iface",
                RX_IF,
                "--format",
                "jsonl",
                "--interval",
                "200ms",
                "--strategy",
                strategy,
            ],
        );
        w.wait_for("counting ingress");
        let pins = mnt.path("/sys/fs/bpf/netledger");
        let files = files_under(&pins);
        assert!(
            !files.is_empty(),
            "watch {strategy} pinned nothing: {}",
            w.stderr()
        );
        for (p, (mode, uid, _)) in &files {
            assert_eq!(
                (*mode, *uid),
                (0o600, bed.users.service),
                "watch {strategy}: pin {} is not 0600 and the user's",
                p.display()
            );
        }
        bed.send(25, 0);
        std::thread::sleep(Duration::from_millis(300));
        let out = w.stop(libc::SIGINT).join("\n");
        assert!(
            !w.stderr().contains("warning"),
            "watch {strategy}: {}",
            w.stderr()
        );
        assert_eq!(
            known_packets(&out),
            25,
            "watch {strategy} as the user counted: {out}"
        );
        assert!(
            files_under(&pins).is_empty(),
            "watch {strategy} left pins behind"
        );
    }
}

#[test]
fn a_missing_capability_is_named_with_the_fix() {
    let bed = Bed::new("pc");
    let fix = "CAP_BPF, CAP_NET_ADMIN and CAP_PERFMON";
    for (cap, name) in CAPS.iter().zip(UNIT_CAPS) {
        let who = As::service(&bed.users).without(cap);
        for cmd in [
            vec!["watch", "--iface", RX_IF, "--count", "1"],
            vec![
                "run",
                "--iface",
                RX_IF,
                "--db",
                &bed.db(),
                "--socket",
                &bed.socket(),
            ],
        ] {
            let o = bed.output(None, &who, &cmd);
            // Exactly that one is named missing.
            one_error_line(&o, &[&format!("missing capabilities: {name};"), fix]);
        }
        // Without netledger's own check the kernel refuses all the same:
        // each capability is needed (CAP_BPF for the maps, CAP_NET_ADMIN for
        // tc and XDP programs, CAP_PERFMON for the verifier's pointer
        // arithmetic on packet data).
        let mut c = bed.command(None, &who, &["watch", "--iface", RX_IF, "--count", "1"]);
        c.env("NETLEDGER_TEST_SKIP_CAPABILITY_CHECK", "1");
        let o = c.output().expect("running netledger");
        one_error_line(&o, &["permission denied: loading the BPF programs", fix]);
    }
    let none = As::service(&bed.users).no_caps();
    let o = bed.output(None, &none, &["watch", "--iface", RX_IF, "--count", "1"]);
    one_error_line(
        &o,
        &[
            "missing capabilities: CAP_BPF, CAP_PERFMON, CAP_NET_ADMIN",
            fix,
        ],
    );
}

#[test]
fn run_as_the_service_user_after_the_operators_preparation() {
    let bed = Bed::new("pr");
    let u = bed.users;
    let svc = As::service(&u);
    let db = bed.db();
    let socket = bed.socket();

    // bpffs not mounted: mounting it needs CAP_SYS_ADMIN, which the service
    // does not have; the error says so.
    let bare = MountNs::new(false);
    let o = bed.output(
        Some(&bare),
        &svc,
        &["run", "--iface", RX_IF, "--db", &db, "--socket", &socket],
    );
    one_error_line(
        &o,
        &[
            "bpffs is not mounted at /sys/fs/bpf",
            "CAP_SYS_ADMIN",
            "mount -t bpf bpf /sys/fs/bpf",
        ],
    );
    drop(bare);

    // bpffs as systemd mounts it (0700), not prepared: refused with the fix.
    let mnt = MountNs::new(true);
    let o = bed.output(
        Some(&mnt),
        &svc,
        &["run", "--iface", RX_IF, "--db", &db, "--socket", &socket],
    );
    one_error_line(
        &o,
        &[
            "/sys/fs/bpf/netledger",
            "Permission denied",
            "chmod o+x /sys/fs/bpf",
            &format!(
                "install -d -o {} -g {} -m 0700 /sys/fs/bpf/netledger",
                u.service,
                u.group()
            ),
        ],
    );
    mnt.prepare_for(&u);

    let args = |strategy: &'static str| -> Vec<String> {
        [
            "run",
            "--iface",
            RX_IF,
            "--interval",
            "300ms",
            "--max-flows",
            "32768",
            "--strategy",
            strategy,
            "--db",
            &db,
            "--socket",
            &socket,
            "-v",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect()
    };
    let mut sent = 0;
    for strategy in ["lock", "swap"] {
        let a = args(strategy);
        let a: Vec<&str> = a.iter().map(String::as_str).collect();
        let mut d = bed.spawn(Some(&mnt), &svc, &a);
        d.wait_for("attached");
        let before = (strategy == "swap").then(|| pinned_generations(&mnt));
        // More keys than one cut clears by deleting them (swap then swaps
        // in a fresh flow map, which must be pinned for the next start).
        bed.send(40, 40_000);
        sent += 40;
        d.wait_for_nth("committed", 4);
        if let Some(before) = before {
            let after = pinned_generations(&mnt);
            assert_ne!(
                before,
                after,
                "a cut of more than 16384 keys swapped in a fresh flow map: {}",
                d.stderr()
            );
        }

        // What it made, and who may touch it.
        let pins = mnt.path("/sys/fs/bpf/netledger");
        let files = files_under(&pins);
        assert!(files.len() >= 5, "{strategy}: the pins: {files:?}");
        for (p, (mode, uid, _)) in &files {
            assert_eq!(
                (*mode, *uid),
                (0o600, u.service),
                "{strategy}: pin {} is not 0600 and the service user's",
                p.display()
            );
            assert!(
                !p.display().to_string().ends_with("_new"),
                "{strategy}: {}",
                p.display()
            );
        }
        assert_eq!(
            mode_owner(Path::new(&socket)),
            (0o600, u.service, u.group()),
            "{strategy}: the control socket"
        );
        assert_eq!(
            mode_owner(Path::new(&db)),
            (0o640, u.service, u.group()),
            "{strategy}: the store"
        );
        assert_eq!(
            mode_owner(Path::new(&db).parent().unwrap()).0,
            0o750,
            "{strategy}: the store's directory"
        );

        // top: without a terminal, the error; in one, a client of the service.
        let o = bed.output(None, &svc.clone().no_caps(), &["top", "--socket", &socket]);
        one_error_line(&o, &["netledger top needs a terminal", "netledger watch"]);
        let screen = wait_for(
            &top_pane(&bed, &svc.clone().no_caps(), &socket),
            &format!("client of netledger run (pid {})", d.pid),
        );
        assert!(
            screen.contains(RX_IF),
            "{strategy}: top shows the interface: {screen}"
        );
        let screen = wait_for(
            &top_pane(&bed, &As::outsider(&u), &socket),
            "permission denied",
        );
        assert!(
            screen.contains("run as the service's user"),
            "{strategy}: {screen}"
        );

        // report: the store's group reads it while the service writes.
        let report = [
            "report",
            "--db",
            &db,
            "--format",
            "jsonl",
            "--by",
            "flow",
            "--since",
            "2000-01-01",
        ];
        let out = succeeded(
            &bed.output(None, &As::reader(&u), &report),
            "report as the reader",
        );
        assert!(
            known_packets(&out) > 0,
            "{strategy}: report while running: {out}"
        );
        let o = bed.output(None, &As::outsider(&u), &report);
        let line = String::from_utf8_lossy(&o.stderr).into_owned();
        assert_eq!(o.status.code(), Some(1), "report as an outsider: {line}");
        assert!(
            line.contains("ermission denied"),
            "report as an outsider: {line}"
        );
        // status as an outsider: pins it may not read are not "nothing pinned".
        let o = bed.output(Some(&mnt), &As::outsider(&u), &["status", "--db", &db]);
        let line = String::from_utf8_lossy(&o.stderr).into_owned();
        assert_eq!(o.status.code(), Some(1), "status as an outsider: {line}");
        assert!(
            line.contains("ermission denied"),
            "status as an outsider: {line}"
        );

        // Stopped and started again: the next process adopts the pins.
        d.stop(libc::SIGTERM);
        let mut d = bed.spawn(Some(&mnt), &svc, &a);
        d.wait_for("adopted the pinned ledgers");
        bed.send(10, 0);
        sent += 10;
        d.wait_for_nth("committed", 2);
        d.stop(libc::SIGTERM);

        // down, as the service user: the last counts committed, pins gone.
        succeeded(
            &bed.output(Some(&mnt), &svc, &["down", "--iface", RX_IF, "--db", &db]),
            "down as the service user",
        );
        assert!(files_under(&pins).is_empty(), "{strategy}: down left pins");
        let out = succeeded(
            &bed.output(None, &As::reader(&u), &report),
            "report as the reader",
        );
        assert_eq!(
            known_packets(&out),
            sent,
            "{strategy}: every frame of the known flow in the store"
        );
    }
}

/// The ids of the flow maps pinned for each swap generation (`flows0`,
/// `flows1`), checked against the outer map that the data path reads: the
/// pins must name the maps it holds.
fn pinned_generations(mnt: &MountNs) -> [u32; 2] {
    use libbpf_rs::{MapCore, MapFlags, MapHandle};
    let root = mnt.path("/sys/fs/bpf/netledger");
    let leg = std::fs::read_dir(&root)
        .expect("the pin root")
        .flatten()
        .flat_map(|ns| std::fs::read_dir(ns.path()).into_iter().flatten().flatten())
        .map(|iface| iface.path().join("in"))
        .next()
        .expect("one pinned interface");
    let outer = MapHandle::from_pinned_path(leg.join("flows")).expect("the outer flow map");
    let mut ids = [0u32; 2];
    for (g, id) in ids.iter_mut().enumerate() {
        let pinned = MapHandle::from_pinned_path(leg.join(format!("flows{g}")))
            .unwrap_or_else(|e| panic!("the pin flows{g}: {e}"));
        *id = pinned.info().expect("map info").info.id;
        let held: u32 = u32::from_ne_bytes(
            outer
                .lookup(&(g as u32).to_ne_bytes(), MapFlags::ANY)
                .expect("outer lookup")
                .expect("outer entry")[..4]
                .try_into()
                .unwrap(),
        );
        assert_eq!(*id, held, "the pin flows{g} is the map generation {g} uses");
    }
    ids
}

#[test]
fn the_unit_grants_exactly_these_capabilities_and_prepares_bpffs() {
    let unit = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../contrib/netledger.service"
    ))
    .expect("reading contrib/netledger.service");
    let set = |key: &str| -> Vec<String> {
        let line = unit
            .lines()
            .find_map(|l| l.strip_prefix(&format!("{key}=")))
            .unwrap_or_else(|| panic!("the unit sets {key}"));
        let mut v: Vec<String> = line.split_whitespace().map(String::from).collect();
        v.sort();
        v
    };
    let want: Vec<String> = UNIT_CAPS.iter().map(|s| s.to_string()).collect();
    assert_eq!(set("AmbientCapabilities"), want);
    assert_eq!(set("CapabilityBoundingSet"), want);
    for step in [
        "chmod o+x /sys/fs/bpf",
        "install -d -o netledger -g netledger -m 0700 /sys/fs/bpf/netledger",
    ] {
        assert!(
            unit.lines()
                .any(|l| l.starts_with("ExecStartPre=+") && l.contains(step)),
            "the unit prepares bpffs as root before it starts: {step}"
        );
    }
    assert!(unit.contains("User=netledger") && unit.contains("StateDirectoryMode=0750"));
}

/// `netledger top --socket SOCKET` in the namespace of `bed`'s receiver,
/// run as `who`, in a 120x30 terminal; the pane keeps the screen after it
/// exits.
fn top_pane(bed: &Bed, who: &As, socket: &str) -> Tmux {
    let mut cmd = vec![
        "nsenter".to_string(),
        format!("--net=/run/netns/{}", bed.rx.name()),
    ];
    cmd.extend(who.setpriv());
    cmd.extend([
        BIN.to_string(),
        "top".into(),
        "--socket".into(),
        socket.into(),
    ]);
    Tmux::start("nlhd", (120, 30), &format!("{}; sleep 600", cmd.join(" ")))
}

/// The screen of `t` once it shows `needle` (10 s at most).
#[track_caller]
fn wait_for(t: &Tmux, needle: &str) -> String {
    t.wait_for(&format!("{needle:?}"), Duration::from_secs(10), |s| {
        s.contains(needle)
    })
}
