//! `netledger top` in a real terminal. tmux runs it on one end of a veth
//! pair between two namespaces; raw frames of known flows, with exact
//! counts, cross the link; `tmux capture-pane` reads the screen, which must
//! show each flow's exact cumulative packets and bytes on its row and the
//! footer's buckets adding up, react to the keys (sort, filter, pause), and
//! leave nothing attached or pinned after `q`. Also at 80x24, as a client of
//! `netledger run` (where it must attach nothing and agree with the
//! service's store), and with standard output not a terminal.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::io::{self, BufRead, BufReader};
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use netledger_lab::netns::{self, Ipv6Mode, NetNs, RawSocket};

#[path = "common/tmux.rs"]
mod tmux;
use tmux::Tmux;

const BIN: &str = env!("CARGO_BIN_EXE_netledger");
/// The interface top counts on (in the receiving namespace).
const IFACE: &str = "nltp1";
/// Its peer, which the frames are sent from.
const PEER: &str = "nltp0";
/// How long the screen may take to show what is expected on a busy machine.
const PATIENCE: Duration = Duration::from_secs(30);

/// Unique names within this process (tmux servers, scratch directories).
static NEXT: AtomicU32 = AtomicU32::new(0);

fn unique(what: &str) -> String {
    format!(
        "{what}-{}-{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    )
}

// ---------------------------------------------------------------------------
// The traffic

/// One flow of the test traffic.
#[derive(Debug, Clone, Copy)]
struct Flow {
    /// The key as the screen writes it.
    key: &'static str,
    src: &'static str,
    dst: &'static str,
    tcp: bool,
    sport: u16,
    dport: u16,
    payload: usize,
    packets: u64,
}

/// The filter test's port: the destination port of two flows, in no other key.
const FILTER_PORT: &str = "7070";

/// Their packet order differs from their byte order, so a sort shows.
const FLOWS: [Flow; 5] = [
    Flow {
        key: "10.204.0.1:41001 > 10.204.0.2:5001 udp",
        src: "10.204.0.1",
        dst: "10.204.0.2",
        tcp: false,
        sport: 41001,
        dport: 5001,
        payload: 100,
        packets: 40,
    },
    Flow {
        key: "10.204.0.11:41002 > 10.204.0.2:5002 udp",
        src: "10.204.0.11",
        dst: "10.204.0.2",
        tcp: false,
        sport: 41002,
        dport: 5002,
        payload: 1000,
        packets: 25,
    },
    Flow {
        key: "10.204.0.12:41003 > 10.204.0.2:443 tcp",
        src: "10.204.0.12",
        dst: "10.204.0.2",
        tcp: true,
        sport: 41003,
        dport: 443,
        payload: 60,
        packets: 12,
    },
    Flow {
        key: "[fd00::1]:41004 > [fd00::2]:7070 udp",
        src: "fd00::1",
        dst: "fd00::2",
        tcp: false,
        sport: 41004,
        dport: 7070,
        payload: 400,
        packets: 7,
    },
    Flow {
        key: "10.204.0.13:41005 > 10.204.0.2:7070 udp",
        src: "10.204.0.13",
        dst: "10.204.0.2",
        tcp: false,
        sport: 41005,
        dport: 7070,
        payload: 1200,
        packets: 3,
    },
];

impl Flow {
    /// Frame `i` of the flow, `from` -> `to`.
    fn frame(&self, from: [u8; 6], to: [u8; 6], i: u64) -> Vec<u8> {
        let eth = etherparse::PacketBuilder::ethernet2(from, to);
        let ip = match (
            self.src.parse::<IpAddr>().unwrap(),
            self.dst.parse::<IpAddr>().unwrap(),
        ) {
            (IpAddr::V4(s), IpAddr::V4(d)) => eth.ipv4(s.octets(), d.octets(), 64),
            (IpAddr::V6(s), IpAddr::V6(d)) => eth.ipv6(s.octets(), d.octets(), 64),
            _ => panic!("{self:?}: mixed address families"),
        };
        let payload = vec![i as u8; self.payload];
        let mut f = Vec::new();
        if self.tcp {
            let seq = (i * self.payload as u64) as u32;
            ip.tcp(self.sport, self.dport, seq, 1024)
                .write(&mut f, &payload)
                .unwrap();
        } else {
            ip.udp(self.sport, self.dport)
                .write(&mut f, &payload)
                .unwrap();
        }
        f
    }
}

/// Packets and bytes.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
struct Count {
    packets: u64,
    bytes: u64,
}

/// Per key as the screen writes it.
type Counts = BTreeMap<String, Count>;

fn total(c: &Counts) -> Count {
    c.values().fold(Count::default(), |a, b| Count {
        packets: a.packets + b.packets,
        bytes: a.bytes + b.bytes,
    })
}

/// Two namespaces joined by a veth pair that sends nothing of its own
/// (IPv6 off, no addresses): only the test's frames cross it.
struct Bed {
    // Fields drop in order: the pair before its namespaces.
    veth: netns::Veth,
    tx: NetNs,
    rx: NetNs,
}

impl Bed {
    fn new(tag: &str) -> Bed {
        let tx = NetNs::create(&format!("nl-tp{tag}-tx")).unwrap();
        let rx = NetNs::create(&format!("nl-tp{tag}-rx")).unwrap();
        let veth = netns::veth_pair(PEER, Some(&tx), IFACE, Some(&rx)).unwrap();
        veth.a().prepare(Ipv6Mode::Off).unwrap();
        veth.b().prepare(Ipv6Mode::Off).unwrap();
        Bed { veth, tx, rx }
    }

    /// Send every flow's frames (interleaved) to the counted end; returns
    /// what was sent per key.
    fn send(&self) -> Counts {
        let (from, to) = (self.veth.a().mac().unwrap(), self.veth.b().mac().unwrap());
        let raw = RawSocket::open_in(Some(&self.tx), PEER).unwrap();
        let mut sent = Counts::new();
        let most = FLOWS.iter().map(|f| f.packets).max().unwrap();
        for i in 0..most {
            for flow in FLOWS.iter().filter(|f| i < f.packets) {
                let frame = flow.frame(from, to, i);
                raw.send(&frame).unwrap();
                let c = sent.entry(flow.key.to_string()).or_default();
                c.packets += 1;
                c.bytes += frame.len() as u64;
            }
        }
        sent
    }
}

// ---------------------------------------------------------------------------
// What is attached and pinned

/// `union bpf_attr` for BPF_PROG_QUERY.
#[repr(C)]
#[derive(Default)]
struct ProgQuery {
    target_ifindex: u32,
    attach_type: u32,
    query_flags: u32,
    attach_flags: u32,
    prog_ids: u64,
    prog_cnt: u32,
    _pad: u32,
    prog_attach_flags: u64,
    link_ids: u64,
    link_attach_flags: u64,
    revision: u64,
}

const BPF_PROG_QUERY: libc::c_long = 16;
const BPF_TCX_INGRESS: u32 = 46;
const BPF_TCX_EGRESS: u32 = 47;

/// The programs attached through tcx to `iface` in the calling thread's
/// namespace.
fn tcx_programs(iface: &str) -> Vec<u32> {
    let ifindex = netledger::ifindex(iface).unwrap();
    let mut out = Vec::new();
    for attach_type in [BPF_TCX_INGRESS, BPF_TCX_EGRESS] {
        let mut ids = [0u32; 64];
        let mut q = ProgQuery {
            target_ifindex: ifindex,
            attach_type,
            prog_ids: ids.as_mut_ptr() as u64,
            prog_cnt: ids.len() as u32,
            ..ProgQuery::default()
        };
        // SAFETY: bpf(2) with a valid, sized attribute whose prog_ids
        // points to `ids`, which holds prog_cnt entries and outlives the call.
        let r = unsafe {
            libc::syscall(
                libc::SYS_bpf,
                BPF_PROG_QUERY,
                &mut q as *mut ProgQuery,
                std::mem::size_of::<ProgQuery>(),
            )
        };
        assert_eq!(
            r,
            0,
            "BPF_PROG_QUERY on {iface}: {}",
            io::Error::last_os_error()
        );
        out.extend_from_slice(&ids[..q.prog_cnt as usize]);
    }
    out
}

/// The ids of the BPF programs attached to the counted interface: XDP and
/// tc as `bpftool net show` lists them, and tcx (which this bpftool may not
/// list) as the kernel answers BPF_PROG_QUERY.
fn programs(ns: &NetNs) -> BTreeSet<u32> {
    let out = ns
        .exec("bpftool", &["-j", "net", "show", "dev", IFACE])
        .unwrap();
    let v: serde_json::Value =
        serde_json::from_str(&out).unwrap_or_else(|e| panic!("bpftool said {out:?}: {e}"));
    let mut ids = BTreeSet::new();
    for section in v.as_array().into_iter().flatten() {
        for kind in ["xdp", "tc"] {
            for e in section[kind].as_array().into_iter().flatten() {
                let id = e["id"].as_u64().unwrap_or_else(|| panic!("{out}"));
                ids.insert(id as u32);
            }
        }
    }
    ids.extend(ns.run(|| tcx_programs(IFACE)));
    ids
}

/// Where netledger pins for the counted interface in `ns`.
fn pin_dir(ns: &NetNs) -> PathBuf {
    ns.run(|| netledger::pin_dir(IFACE)).unwrap()
}

/// Removes, when a test ended without doing it, the pins of the counted
/// interface (taken down with `netledger down` first where a store is
/// given).
struct Leftovers {
    ns: String,
    pins: PathBuf,
    db: Option<PathBuf>,
}

impl Leftovers {
    fn new(ns: &NetNs, pins: &Path, db: Option<&Path>) -> Leftovers {
        Leftovers {
            ns: ns.name().into(),
            pins: pins.to_path_buf(),
            db: db.map(Path::to_path_buf),
        }
    }
}

impl Drop for Leftovers {
    fn drop(&mut self) {
        if !self.pins.exists() {
            return;
        }
        if let Some(db) = &self.db {
            let _ = Command::new("nsenter")
                .arg(format!("--net=/run/netns/{}", self.ns))
                .args([BIN, "down", "--iface", IFACE, "--db"])
                .arg(db)
                .stdin(Stdio::null())
                .output();
        }
        if self.pins.exists() {
            eprintln!("removing the pins left at {}", self.pins.display());
            let _ = fs::remove_dir_all(&self.pins);
        }
        // The namespace's directory, if nothing else is in it.
        if let Some(parent) = self.pins.parent() {
            let _ = fs::remove_dir(parent);
        }
    }
}

/// A directory of this test's files, removed on drop.
struct Scratch(PathBuf);

impl Scratch {
    fn new() -> Scratch {
        let dir = std::env::temp_dir().join(unique("nl-top"));
        fs::create_dir_all(&dir).unwrap();
        Scratch(dir)
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

// ---------------------------------------------------------------------------
// The terminal

/// `netledger top` in the only pane of a private tmux server, with its
/// exit status, the terminal settings before and after, and everything it
/// wrote to the terminal kept in the scratch directory. The server is
/// killed on drop (after Ctrl-C, so top cleans up, if it still runs).
struct Pane {
    term: Tmux,
    dir: PathBuf,
}

impl Pane {
    fn start(ns: &NetNs, dir: &Path, size: (u16, u16), args: &[&str]) -> Pane {
        let d = dir.display();
        // The pane waits for `go` so that its output is logged from the
        // first byte; then it keeps the terminal (`sleep`) for inspection.
        let script = format!(
            "while [ ! -e '{d}/go' ]; do sleep 0.02; done\n\
             stty -a > '{d}/stty.before'\n\
             nsenter --net=/run/netns/{ns} '{BIN}' top {args}\n\
             status=$?\n\
             stty -a > '{d}/stty.after'\n\
             echo $status > '{d}/rc.part' && mv '{d}/rc.part' '{d}/rc'\n\
             exec sleep 600\n",
            ns = ns.name(),
            args = args.join(" "),
        );
        fs::write(dir.join("pane.sh"), script).unwrap();
        let term = Tmux::start("nl-top", size, &format!("sh '{d}/pane.sh'"));
        term.tmux(&[
            "pipe-pane",
            "-o",
            "-t",
            "top",
            &format!("cat >> '{d}/pty.log'"),
        ]);
        fs::write(dir.join("go"), "").unwrap();
        Pane {
            term,
            dir: dir.to_path_buf(),
        }
    }

    fn tmux(&self, args: &[&str]) -> String {
        self.term.tmux(args)
    }

    fn screen(&self) -> String {
        self.term.screen()
    }

    /// Type `keys` (tmux key names: "b", "Enter", "Escape", "Space").
    fn keys(&self, keys: &[&str]) {
        let mut args = vec!["send-keys", "-t", "top"];
        args.extend_from_slice(keys);
        self.tmux(&args);
    }

    /// The screen once `ok` holds for it; panics with the screen after
    /// [`PATIENCE`].
    #[track_caller]
    fn wait_for(&self, what: &str, ok: impl Fn(&str) -> bool) -> String {
        self.term.wait_for(what, PATIENCE, ok)
    }

    /// top's exit status, once it has exited.
    #[track_caller]
    fn exit_status(&self) -> i32 {
        let start = Instant::now();
        loop {
            if let Ok(s) = fs::read_to_string(self.dir.join("rc")) {
                return s.trim().parse().unwrap();
            }
            if start.elapsed() > PATIENCE {
                panic!(
                    "top did not exit within {PATIENCE:?}; the screen:\n{}",
                    self.screen()
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// The pane shows the alternate screen.
    fn alternate(&self) -> bool {
        self.tmux(&["display-message", "-p", "-t", "top", "#{alternate_on}"])
            .trim()
            == "1"
    }

    /// Everything written to the terminal so far.
    fn output(&self) -> String {
        String::from_utf8_lossy(&fs::read(self.dir.join("pty.log")).unwrap_or_default())
            .into_owned()
    }

    fn file(&self, name: &str) -> String {
        fs::read_to_string(self.dir.join(name)).unwrap()
    }
}

impl Drop for Pane {
    fn drop(&mut self) {
        if !self.dir.join("rc").exists() {
            // Ctrl-C ends top in any state (a filter prompt included) and
            // lets it detach and unpin; the server goes with `term`.
            let _ = self.term.try_tmux(&["send-keys", "-t", "top", "C-c"]);
            let start = Instant::now();
            while !self.dir.join("rc").exists() && start.elapsed() < Duration::from_secs(5) {
                std::thread::sleep(Duration::from_millis(50));
            }
        }
    }
}

// ---------------------------------------------------------------------------
// Reading the screen

/// The column titles (line 2), sort arrows removed.
fn titles(screen: &str) -> Vec<String> {
    screen
        .lines()
        .nth(1)
        .unwrap_or("")
        .split_whitespace()
        .map(|t| t.trim_end_matches(['▲', '▼']).to_string())
        .collect()
}

/// The title line (line 2).
fn title_line(screen: &str) -> &str {
    screen.lines().nth(1).unwrap_or("")
}

/// The table's lines: between the titles and the rule.
fn table(screen: &str) -> Vec<&str> {
    screen
        .lines()
        .skip(2)
        .take_while(|l| !l.starts_with("──"))
        .filter(|l| !l.trim().is_empty())
        .collect()
}

/// The row of `key`.
fn row<'a>(screen: &'a str, key: &str) -> Option<&'a str> {
    table(screen)
        .into_iter()
        .find(|l| l.strip_prefix(key).is_some_and(|r| r.starts_with(' ')))
}

/// The number in column `title` of `key`'s row.
fn cell(screen: &str, key: &str, title: &str) -> Option<u64> {
    let at = titles(screen).iter().position(|t| t == title)?;
    let rest = &row(screen, key)?[key.len()..];
    // The key is the first title; numbers follow in the titles' order.
    let text = rest.split_whitespace().nth(at - 1)?;
    text.replace(',', "").parse().ok()
}

/// Every flow's row shows its exact totals in the columns given.
fn shows(screen: &str, want: &Counts, packets: bool, bytes: bool) -> bool {
    want.iter().all(|(k, c)| {
        (!packets || cell(screen, k, "PACKETS") == Some(c.packets))
            && (!bytes || cell(screen, k, "BYTES") == Some(c.bytes))
    })
}

/// The known keys in the order the table shows them.
fn order(screen: &str, want: &Counts) -> Vec<String> {
    table(screen)
        .into_iter()
        .filter_map(|l| {
            want.keys()
                .find(|k| {
                    l.strip_prefix(k.as_str())
                        .is_some_and(|r| r.starts_with(' '))
                })
                .cloned()
        })
        .collect()
}

/// The keys sorted by `by`, highest first.
fn by(want: &Counts, f: impl Fn(&Count) -> u64) -> Vec<String> {
    let mut keys: Vec<(&String, &Count)> = want.iter().collect();
    keys.sort_by_key(|(_, c)| std::cmp::Reverse(f(c)));
    keys.into_iter().map(|(k, _)| k.clone()).collect()
}

/// The footer's identity: seen and the five buckets, packets then bytes,
/// each line ending "exact".
#[track_caller]
fn check_footer(screen: &str, sent: &Count) {
    let line = |label: &str| -> Vec<String> {
        let l = screen
            .lines()
            .find(|l| l.trim_start().starts_with(label))
            .unwrap_or_else(|| panic!("no {label:?} line in the footer:\n{screen}"));
        let l = l.trim_start().strip_prefix(label).unwrap();
        l.split_whitespace().map(str::to_string).collect()
    };
    for (label, want) in [("in  pkts", sent.packets), ("bytes", sent.bytes)] {
        let cells = line(label);
        let n: Vec<u64> = cells[..6]
            .iter()
            .map(|c| c.replace(',', "").parse().unwrap())
            .collect();
        assert_eq!(
            (n[0], n[1]),
            (want, want),
            "{label}: seen and counted must be exactly what was sent:\n{screen}"
        );
        assert_eq!(
            n[0],
            n[1..].iter().sum::<u64>(),
            "{label}: seen == sum of the buckets:\n{screen}"
        );
        assert_eq!(cells[6], "exact", "{label}:\n{screen}");
    }
}

/// What the screen says in its bottom line.
fn bottom(screen: &str) -> &str {
    screen.lines().last().unwrap_or("")
}

// ---------------------------------------------------------------------------
// Standalone

/// top attaches itself (nothing answers on the socket it is given), shows
/// the traffic exactly, obeys the keys, and leaves nothing behind.
/// `top --iface IFACE --interval 500ms` on `bed`'s receiver in a terminal
/// of `size`, with no daemon's socket where it looks (so it counts itself).
fn standalone(bed: &Bed, scratch: &Scratch, size: (u16, u16)) -> Pane {
    let nowhere = scratch.0.join("nothing.sock");
    Pane::start(
        &bed.rx,
        &scratch.0,
        size,
        &[
            "--iface",
            IFACE,
            "--interval",
            "500ms",
            "--socket",
            nowhere.to_str().unwrap(),
        ],
    )
}

#[test]
fn standalone_160x48_exact_counts_keys_and_clean_exit() {
    let bed = Bed::new("a");
    let scratch = Scratch::new();
    let pins = pin_dir(&bed.rx);
    let _leftovers = Leftovers::new(&bed.rx, &pins, None);
    assert!(programs(&bed.rx).is_empty(), "attached before top started");
    let pane = standalone(&bed, &scratch, (160, 48));
    let s = pane.wait_for("the first interval", |s| s.contains("since start:"));
    let head = s.lines().next().unwrap();
    for part in [
        "netledger top",
        "nltp1 in",
        "every 500ms",
        "standalone: attached by top",
    ] {
        assert!(head.contains(part), "header lacks {part:?}:\n{s}");
    }
    assert_eq!(programs(&bed.rx).len(), 1, "top attached one program:\n{s}");
    assert!(pins.exists(), "top pins while it counts");

    let sent = bed.send();
    let s = pane.wait_for("every flow's exact packets and bytes", |s| {
        shows(s, &sent, true, true)
    });
    check_footer(&s, &total(&sent));
    assert_eq!(table(&s).len(), FLOWS.len(), "one row per flow:\n{s}");
    assert!(bottom(&s).ends_with("5 rows"), "{s}");
    eprintln!("160x48 on the test traffic:\n{s}");

    // Sorts: the arrow moves to the column and the rows follow it.
    let bytes_desc = by(&sent, |c| c.bytes);
    let packets_desc = by(&sent, |c| c.packets);
    assert_ne!(bytes_desc, packets_desc);
    pane.keys(&["b"]);
    let s = pane.wait_for("BYTES▼", |s| title_line(s).contains("BYTES▼"));
    assert!(!title_line(&s).contains("BIT/S▼"), "one arrow:\n{s}");
    assert_eq!(order(&s, &sent), bytes_desc, "by bytes:\n{s}");
    pane.keys(&["b"]);
    let s = pane.wait_for("BYTES▲", |s| title_line(s).contains("BYTES▲"));
    let mut up = bytes_desc.clone();
    up.reverse();
    assert_eq!(order(&s, &sent), up, "b again reverses:\n{s}");
    pane.keys(&["p"]);
    let s = pane.wait_for("PACKETS▼", |s| title_line(s).contains("PACKETS▼"));
    assert!(!title_line(&s).contains("BYTES▲"), "{s}");
    assert_eq!(order(&s, &sent), packets_desc, "by packets:\n{s}");
    pane.keys(&["k"]);
    pane.wait_for("KEY▲", |s| title_line(s).starts_with("KEY▲"));
    pane.keys(&["b"]);
    pane.wait_for("BYTES▼ again", |s| title_line(s).contains("BYTES▼"));

    // The filter: typed, applied, cleared.
    pane.keys(&["/"]);
    pane.keys(&["-l", FILTER_PORT]);
    let s = pane.wait_for("the filter prompt", |s| {
        bottom(s).contains(&format!(
            "filter (Enter applies, Esc cancels): /{FILTER_PORT}"
        ))
    });
    assert_eq!(table(&s).len(), FLOWS.len(), "not applied yet:\n{s}");
    pane.keys(&["Enter"]);
    let s = pane.wait_for("the filter applied", |s| {
        s.lines()
            .next()
            .is_some_and(|h| h.contains(&format!("filter: {FILTER_PORT}")))
    });
    let matching: Vec<String> = bytes_desc
        .iter()
        .filter(|k| k.contains(&format!(":{FILTER_PORT} ")))
        .cloned()
        .collect();
    assert_eq!(matching.len(), 2);
    assert_eq!(
        table(&s).len(),
        2,
        "the matching rows and no other line:\n{s}"
    );
    assert_eq!(order(&s, &sent), matching, "filtered, by bytes:\n{s}");
    let filtered: Counts = sent
        .iter()
        .filter(|(k, _)| matching.contains(k))
        .map(|(k, c)| (k.clone(), *c))
        .collect();
    assert!(
        shows(&s, &filtered, true, true),
        "the filtered rows keep their totals:\n{s}"
    );
    assert!(bottom(&s).ends_with("2 rows"), "{s}");
    pane.keys(&["Escape"]);
    let s = pane.wait_for("the filter cleared", |s| table(s).len() == FLOWS.len());
    assert!(!s.lines().next().unwrap().contains("filter:"), "{s}");

    // Pause freezes the screen; space again goes on.
    pane.keys(&["Space"]);
    pane.wait_for("PAUSED", |s| s.lines().next().unwrap().contains("PAUSED"));
    pane.keys(&["Space"]);
    let s = pane.wait_for("PAUSED gone", |s| {
        !s.lines().next().unwrap().contains("PAUSED")
    });
    assert!(shows(&s, &sent, true, true), "{s}");

    updates_are_small(&pane);
    quit_and_check(&pane, &s);
    assert!(
        programs(&bed.rx).is_empty(),
        "nothing stays attached after q"
    );
    assert!(!pins.exists(), "no pins after q: {}", pins.display());
}

/// The intervals received, from the rule ("since start: 3s, 7 intervals").
fn intervals(screen: &str) -> Option<u64> {
    let rule = screen.lines().find(|l| l.contains(" since start: "))?;
    let (_, rest) = rule.split_once(", ")?;
    rest.split_whitespace().next()?.parse().ok()
}

/// A refresh rewrites only what changed: over a few intervals the terminal
/// gets a small part of what a full repaint of the screen would write.
#[track_caller]
fn updates_are_small(pane: &Pane) {
    // One interval first, so what the keys before redrew is written.
    let now = pane.screen();
    let n = intervals(&now).unwrap_or_else(|| panic!("no interval count:\n{now}"));
    let before = pane.wait_for("one more interval", |s| intervals(s).is_some_and(|m| m > n));
    let n0 = intervals(&before).unwrap_or_else(|| panic!("no interval count:\n{before}"));
    let l0 = pane.output().len();
    let after = pane.wait_for("six more intervals", |s| {
        intervals(s).is_some_and(|n| n >= n0 + 6)
    });
    let n1 = intervals(&after).unwrap();
    let l1 = pane.output().len();
    let per = (l1 - l0) as u64 / (n1 - n0);
    // The screen's text alone, without any styling, is larger.
    let text: usize = after.lines().map(|l| l.trim_end().len()).sum();
    eprintln!("{per} bytes per refresh; the screen holds {text} bytes of text");
    assert!(
        (per as usize) < text / 2,
        "{per} bytes written per refresh: a repaint, not an update:\n{after}"
    );
}

/// `q`: exit 0, the terminal as it was (normal screen, same settings), and
/// no full-screen clear after the first draw (redraws change only cells).
#[track_caller]
fn quit_and_check(pane: &Pane, last: &str) {
    assert!(pane.alternate(), "top runs on the alternate screen");
    pane.keys(&["q"]);
    assert_eq!(pane.exit_status(), 0, "q exits 0; last screen:\n{last}");
    // tmux reads the pane's last output on its own time.
    eventually("the normal screen back after q", || !pane.alternate());
    eventually("the alternate screen left in the output", || {
        pane.output().contains("\x1b[?1049l")
    });
    assert_eq!(
        pane.file("stty.before"),
        pane.file("stty.after"),
        "the terminal's settings are restored"
    );
    let out = pane.output();
    assert_eq!(
        out.matches("\x1b[2J").count(),
        1,
        "the screen is cleared once, at the start: updates must not flicker"
    );
    assert!(out.contains("\x1b[?1049h"));
    assert!(
        out.rfind("\x1b[?25h") > out.rfind("\x1b[?25l"),
        "the cursor is shown again"
    );
}

/// Wait until `ok` holds; panic after [`PATIENCE`].
#[track_caller]
fn eventually(what: &str, ok: impl Fn() -> bool) {
    let start = Instant::now();
    while !ok() {
        assert!(start.elapsed() < PATIENCE, "no {what} within {PATIENCE:?}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// At 80x24 the rows keep whole keys and exact bytes, `p` brings the
/// packets column with its arrow, and the footer fits.
#[test]
fn standalone_80x24_layout() {
    let bed = Bed::new("b");
    let scratch = Scratch::new();
    let pins = pin_dir(&bed.rx);
    let _leftovers = Leftovers::new(&bed.rx, &pins, None);
    let pane = standalone(&bed, &scratch, (80, 24));
    pane.wait_for("the first interval", |s| s.contains("since start:"));
    let sent = bed.send();
    let s = pane.wait_for("every flow's exact bytes", |s| shows(s, &sent, false, true));
    eprintln!("80x24 on the test traffic:\n{s}");
    assert_eq!(s.lines().count(), 24, "{s}");
    let head = s.lines().next().unwrap();
    assert!(
        head.contains("nltp1 in") && head.contains("standalone"),
        "{s}"
    );
    assert_eq!(table(&s).len(), FLOWS.len(), "{s}");
    check_footer(&s, &total(&sent));
    assert!(
        bottom(&s).contains("q quit") && bottom(&s).ends_with("5 rows"),
        "{s}"
    );

    pane.keys(&["p"]);
    let s = pane.wait_for("PACKETS▼", |s| title_line(s).contains("PACKETS▼"));
    assert!(
        shows(&s, &sent, true, true),
        "exact packets and bytes on every row:\n{s}"
    );
    eprintln!("80x24 sorted by packets:\n{s}");
    assert_eq!(order(&s, &sent), by(&sent, |c| c.packets), "{s}");
    pane.keys(&["b"]);
    let s = pane.wait_for("BYTES▼", |s| title_line(s).contains("BYTES▼"));
    assert_eq!(order(&s, &sent), by(&sent, |c| c.bytes), "{s}");
    pane.keys(&["/"]);
    pane.keys(&["-l", FILTER_PORT]);
    pane.keys(&["Enter"]);
    let s = pane.wait_for("the filter applied", |s| table(s).len() == 2);
    assert!(
        table(&s)
            .iter()
            .all(|l| l.contains(&format!(":{FILTER_PORT} udp"))),
        "{s}"
    );
    pane.keys(&["Escape"]);
    let s = pane.wait_for("the filter cleared", |s| table(s).len() == FLOWS.len());

    quit_and_check(&pane, &s);
    assert!(programs(&bed.rx).is_empty());
    assert!(!pins.exists());
}

// ---------------------------------------------------------------------------
// Client of the service

/// A `netledger run` in a namespace; stopped (SIGTERM, then SIGKILL) if the
/// test ends before it does.
struct Daemon {
    child: Child,
    stderr: Arc<Mutex<String>>,
}

impl Daemon {
    fn start(ns: &NetNs, db: &Path, socket: &Path) -> Daemon {
        let mut child = Command::new("nsenter")
            .arg(format!("--net=/run/netns/{}", ns.name()))
            .args([BIN, "run", "--iface", IFACE, "--interval", "500ms", "--db"])
            .arg(db)
            .arg("--socket")
            .arg(socket)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let stderr: Arc<Mutex<String>> = Arc::default();
        let pipe = child.stderr.take().unwrap();
        let into = Arc::clone(&stderr);
        std::thread::spawn(move || {
            for line in BufReader::new(pipe).lines().map_while(Result::ok) {
                let mut s = into.lock().unwrap_or_else(|e| e.into_inner());
                s.push_str(&line);
                s.push('\n');
            }
        });
        let mut d = Daemon { child, stderr };
        let start = Instant::now();
        while !(d.said().contains("attached (") && socket.exists()) {
            if let Some(st) = d.child.try_wait().unwrap() {
                panic!("netledger run exited ({st}): {}", d.said());
            }
            assert!(
                start.elapsed() < PATIENCE,
                "netledger run did not start: {}",
                d.said()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        d
    }

    fn said(&self) -> String {
        self.stderr
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }

    /// SIGTERM; the exit status.
    fn stop(&mut self) -> ExitStatus {
        // SAFETY: kill(2) on our own child, not yet reaped.
        unsafe { libc::kill(self.child.id() as i32, libc::SIGTERM) };
        let start = Instant::now();
        loop {
            if let Some(st) = self.child.try_wait().unwrap() {
                return st;
            }
            assert!(
                start.elapsed() < PATIENCE,
                "netledger run did not stop on SIGTERM: {}",
                self.said()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            // SAFETY: kill(2) on our own child, not yet reaped.
            unsafe { libc::kill(self.child.id() as i32, libc::SIGTERM) };
            let start = Instant::now();
            while matches!(self.child.try_wait(), Ok(None)) {
                if start.elapsed() > Duration::from_secs(10) {
                    let _ = self.child.kill();
                    let _ = self.child.wait();
                    break;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
        }
    }
}

/// The screen text of a key in `netledger report --format jsonl`.
fn key_text(k: &serde_json::Value) -> String {
    let addr = |v: &serde_json::Value| {
        let a = v.as_str().unwrap();
        if a.contains(':') {
            format!("[{a}]")
        } else {
            a.to_string()
        }
    };
    format!(
        "{}:{} > {}:{} {}",
        addr(&k["src"]),
        k["sport"],
        addr(&k["dst"]),
        k["dport"],
        k["proto"].as_str().unwrap()
    )
}

/// With `netledger run` counting on the interface, top reads its control
/// socket: it says so, attaches nothing, and shows what the service stores.
#[test]
fn client_of_the_service_attaches_nothing_and_agrees_with_the_store() {
    let bed = Bed::new("c");
    let scratch = Scratch::new();
    let db = scratch.0.join("netledger.db");
    let socket = scratch.0.join("s.sock");
    let pins = pin_dir(&bed.rx);
    let _leftovers = Leftovers::new(&bed.rx, &pins, Some(&db));
    let mut daemon = Daemon::start(&bed.rx, &db, &socket);
    let service = programs(&bed.rx);
    assert_eq!(service.len(), 1, "the service's program: {}", daemon.said());

    let pane = Pane::start(
        &bed.rx,
        &scratch.0,
        (160, 48),
        &["--iface", IFACE, "--socket", socket.to_str().unwrap()],
    );
    let s = pane.wait_for("the first interval", |s| s.contains("since start:"));
    let head = s.lines().next().unwrap();
    assert!(
        head.contains(&format!("client of netledger run (pid {})", daemon.pid())),
        "{s}"
    );
    assert!(head.contains("every 500ms"), "the service's interval:\n{s}");
    assert_eq!(
        programs(&bed.rx),
        service,
        "top attached nothing of its own:\n{s}"
    );

    let sent = bed.send();
    let s = pane.wait_for("every flow's exact packets and bytes", |s| {
        shows(s, &sent, true, true)
    });
    check_footer(&s, &total(&sent));
    assert_eq!(table(&s).len(), FLOWS.len(), "{s}");
    quit_and_check(&pane, &s);
    assert_eq!(programs(&bed.rx), service, "the service's program stays");

    let st = daemon.stop();
    assert!(st.success(), "netledger run: {st}: {}", daemon.said());
    let down = Command::new("nsenter")
        .arg(format!("--net=/run/netns/{}", bed.rx.name()))
        .args([BIN, "down", "--iface", IFACE, "--db"])
        .arg(&db)
        .output()
        .unwrap();
    assert!(
        down.status.success(),
        "netledger down: {}",
        String::from_utf8_lossy(&down.stderr)
    );
    assert!(programs(&bed.rx).is_empty(), "down detached the service");
    assert!(!pins.exists(), "down removed the pins");

    let report = Command::new(BIN)
        .args(["report", "--by", "flow", "--format", "jsonl", "--db"])
        .arg(&db)
        .output()
        .unwrap();
    let text = String::from_utf8(report.stdout).unwrap();
    assert!(
        report.status.success(),
        "{}",
        String::from_utf8_lossy(&report.stderr)
    );
    let mut stored = Counts::new();
    for line in text.lines() {
        let v: serde_json::Value =
            serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line}"));
        if v["type"] == "flow" {
            let c = stored.entry(key_text(&v["key"])).or_default();
            c.packets += v["packets"].as_u64().unwrap();
            c.bytes += v["bytes"].as_u64().unwrap();
        }
    }
    let on_screen: Counts = sent
        .keys()
        .map(|k| {
            (
                k.clone(),
                Count {
                    packets: cell(&s, k, "PACKETS").unwrap(),
                    bytes: cell(&s, k, "BYTES").unwrap(),
                },
            )
        })
        .collect();
    assert_eq!(stored, on_screen, "the store and the screen:\n{s}\n{text}");
    assert_eq!(stored, sent, "the store and what was sent");
}

// ---------------------------------------------------------------------------
// Not a terminal

/// With standard output a file, top refuses in one line that points to
/// `watch`, and attaches nothing.
#[test]
fn stdout_not_a_terminal() {
    let bed = Bed::new("d");
    let scratch = Scratch::new();
    let pins = pin_dir(&bed.rx);
    let _leftovers = Leftovers::new(&bed.rx, &pins, None);
    let file = scratch.0.join("out");
    let out = Command::new("nsenter")
        .arg(format!("--net=/run/netns/{}", bed.rx.name()))
        .args([BIN, "top", "--iface", IFACE, "--socket"])
        .arg(scratch.0.join("nothing.sock"))
        .stdin(Stdio::null())
        .stdout(fs::File::create(&file).unwrap())
        .stderr(Stdio::piped())
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "exit status {}", out.status);
    assert_eq!(err.lines().count(), 1, "one line: {err:?}");
    assert!(err.contains("netledger watch"), "{err:?}");
    assert_eq!(fs::read(&file).unwrap(), b"", "nothing on stdout");
    assert!(programs(&bed.rx).is_empty(), "nothing attached");
    assert!(!pins.exists(), "nothing pinned");
}
