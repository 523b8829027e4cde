//! The service on real packets: `netledger run` counts ingress on one end
//! of a veth pair between two namespaces while the tests send known raw
//! frames (IPv4 and IPv6, UDP and TCP), kill it (-9) at random instants,
//! stop it, fill up its store, delete its interface; then `netledger down`
//! and `netledger report` must account for every frame exactly, and no cut
//! may be stored twice. Also its errors: pins of another configuration or
//! owner, garbage pins, hostile configuration files and stores, each one
//! clear line with exit code 1, and a failed start never detaches what a
//! previous run left counting. Needs root; nothing skips.

use std::collections::BTreeSet;
use std::io::{BufRead, BufReader};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::{Duration, Instant};

use libbpf_rs::{MapCore, MapFlags, MapHandle, MapType};

#[allow(dead_code)]
mod common;
use common::daemon::{
    check_count, differences, fill, flows, one_error_line, remove_pins, report, stored_cuts,
    stored_sum, total, Bed, Daemon, Rng, Tmpfs, Totals, BIN, WAIT,
};
use common::Watch;

/// The line a daemon logs when it finds the cut a killed one left open.
const FINISHING: &str = "finishing the cut a previous process left open";

/// What a daemon logs (`--verbose`) when it redoes a cut the store has.
const REDONE: &str = "already committed";

fn millis(n: u64) -> Duration {
    Duration::from_millis(n)
}

#[track_caller]
fn write(path: &Path, bytes: impl AsRef<[u8]>) {
    std::fs::write(path, bytes).unwrap_or_else(|e| panic!("writing {}: {e}", path.display()));
}

#[track_caller]
fn read(path: &Path) -> Vec<u8> {
    std::fs::read(path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()))
}

/// `a` plus `b`, per flow.
fn sum(a: &Totals, b: &Totals) -> Totals {
    let mut out = a.clone();
    for (k, (p, by)) in b {
        let e = out.entry(k.clone()).or_default();
        e.0 += p;
        e.1 += by;
    }
    out
}

/// Per-flow packets and bytes of `got` must equal `want`, exactly.
#[track_caller]
fn assert_exact(got: &Totals, want: &Totals, what: &str) {
    assert!(
        got == want,
        "{what}: the store's per-flow packets and bytes differ from what was sent:{}",
        differences(want, got)
    );
}

// ---------------------------------------------------------------------------
// Crash safety

/// When the crash harness kills.
struct Kills {
    /// At least this many, going on after the sender is done if need be.
    min: u32,
    /// Go on (up to 80 kills) until this many landed inside an open cut,
    /// and this many of those after the cut's commit (before its clear),
    /// as far as the logs of the daemons killed so far tell.
    min_in_cut: (usize, usize),
    /// Uptime before a kill, from the start (ms, uniform).
    up: (u64, u64),
    /// One kill in five within the first 80 ms instead: while the daemon
    /// starts (opens the store, adopts the pins, finishes an open cut).
    early: bool,
}

/// What a run of the crash harness left.
struct Crash {
    sent: Totals,
    stored: Totals,
    check: serde_json::Value,
    cuts: Vec<(i64, i64)>,
    /// Keys evicted (strategy lock), per the stored cuts.
    evicted: i64,
    kills: u32,
    /// Kills after which the next process found a cut open.
    in_cut: usize,
    /// Of those, kills after the open cut's commit (redone: the store had it).
    after_commit: usize,
    seed: u64,
    logs: Vec<String>,
}

/// Count on a veth pair with `strategy` while a sender paces six flows
/// (each pausing in turns) over `send_for`; meanwhile kill -9 the daemon
/// at random instants (see [`Kills`]) and restart it after a random pause
/// (0-300 ms), with every step of a cut slowed by `delay_ms` (and, with
/// `clear_first`, the wrong order: clear, then commit). Then stop it,
/// `down`, and read the store.
fn crash_run(
    tag: &str,
    strategy: &str,
    clear_first: bool,
    delay_ms: u64,
    send_for: Duration,
    k: Kills,
) -> Crash {
    let (mut rng, seed) = Rng::seeded();
    eprintln!(
        "crash run {tag}: strategy {strategy}, {}, cut delay {delay_ms} ms, seed {seed} \
         (NETLEDGER_TEST_SEED={seed} repeats the kill times)",
        if clear_first {
            "clear before commit (wrong order)"
        } else {
            "commit before clear"
        }
    );
    let bed = Bed::new(tag);
    let mut env = vec![("NETLEDGER_TEST_CUT_DELAY_MS", delay_ms.to_string())];
    if clear_first {
        env.push(("NETLEDGER_TEST_CLEAR_BEFORE_COMMIT", "1".to_string()));
    }
    // Keys idle for one interval are evicted (strategy lock): the flows
    // below pause in turns, so keys go and come back under the kills.
    let extra = ["--strategy", strategy, "--evict-idle", "1", "--verbose"];
    let flows = flows();
    let period = millis(5);
    let rounds = send_for.as_millis() as u64 / 5;
    let mut logs = Vec::new();
    let mut kills = 0u32;
    let mut daemon = bed.start(&extra, &env);
    daemon.wait_for("attached (", WAIT);
    let mut sender = bed.sender();
    let sent = std::thread::scope(|s| {
        let flows = &flows;
        let paced = s.spawn(move || {
            // Each flow sends for 0.6 s, then pauses for 0.3 s, in turns.
            sender.paced(flows, rounds, period, |r, i| {
                !(r / 60 + i as u64).is_multiple_of(3)
            });
            sender.sent
        });
        let short = |logs: &[String]| {
            let n = |what: &str| logs.iter().filter(|l| l.contains(what)).count();
            n(FINISHING) < k.min_in_cut.0 || n(REDONE) < k.min_in_cut.1
        };
        while !paced.is_finished() || kills < k.min || (short(&logs) && kills < 80) {
            let up = if k.early && rng.next_u64().is_multiple_of(5) {
                rng.millis(0, 80)
            } else {
                rng.millis(k.up.0, k.up.1)
            };
            std::thread::sleep(up);
            daemon.kill9();
            kills += 1;
            logs.extend(daemon.lines());
            // Frames go on arriving while no daemon runs.
            std::thread::sleep(rng.millis(0, 300));
            daemon = bed.start(&extra, &env);
        }
        paced
            .join()
            .unwrap_or_else(|e| std::panic::resume_unwind(e))
    });
    daemon.wait_for("adopted the pinned ledgers", WAIT);
    std::thread::sleep(millis(700));
    let st = daemon.stop();
    logs.extend(daemon.lines());
    assert!(
        st.success(),
        "the last netledger run did not stop cleanly ({st}); its log:\n{}",
        daemon.log()
    );
    bed.down();
    let r = report(&bed.db, "flow");
    let cuts = stored_cuts(&bed.db);
    let evicted = stored_sum(&bed.db, "evicted");
    let in_cut = logs.iter().filter(|l| l.contains(FINISHING)).count();
    let after_commit = logs.iter().filter(|l| l.contains(REDONE)).count();
    Crash {
        sent,
        stored: r.flows,
        check: r.check,
        cuts,
        evicted,
        kills,
        in_cut,
        after_commit,
        seed,
        logs,
    }
}

/// Kill -9 at random instants, many inside a cut: nothing is lost or
/// counted twice, per flow, packets and bytes; every cut is stored once.
fn crash_safety(tag: &str, strategy: &str) {
    let kills = Kills {
        min: 20,
        min_in_cut: (5, 2),
        up: (150, 800),
        early: true,
    };
    let c = crash_run(tag, strategy, false, 30, Duration::from_secs(16), kills);
    let (sent, stored) = (total(&c.sent), total(&c.stored));
    eprintln!(
        "{strategy}: {} kills, {} of them inside an open cut ({} after its commit); \
         {} cuts stored, {} keys evicted; sent {} frames / {} bytes, stored {} / {}",
        c.kills,
        c.in_cut,
        c.after_commit,
        c.cuts.len(),
        c.evicted,
        sent.0,
        sent.1,
        stored.0,
        stored.1
    );
    let redone = c
        .logs
        .iter()
        .filter(|l| l.contains("committed before"))
        .count();
    eprintln!(
        "{strategy}: {redone} open cuts redone with other counts than stored (kills mid-clear)"
    );
    let errors: Vec<&String> = c
        .logs
        .iter()
        .filter(|l| l.contains("failed") || l.contains("error"))
        .collect();
    assert!(
        errors.is_empty(),
        "the daemons logged errors (seed {}): {errors:#?}",
        c.seed
    );
    assert!(c.kills >= 20, "only {} kills", c.kills);
    assert!(
        c.after_commit >= 2,
        "only {} kills landed between a commit and its clear (seed {})",
        c.after_commit,
        c.seed
    );
    assert!(
        c.in_cut >= 5,
        "only {} of {} kills landed inside a cut (seed {}): too few for the test to mean much",
        c.in_cut,
        c.kills,
        c.seed
    );
    assert_exact(
        &c.stored,
        &c.sent,
        &format!("{strategy}, {} kills, seed {}", c.kills, c.seed),
    );
    assert_eq!(
        c.check["status"], "exact",
        "the report's check: {}",
        c.check
    );
    if strategy == "lock" {
        assert!(
            c.evicted > 0,
            "keys went idle and were evicted under the kills"
        );
    }
    assert_eq!(
        check_count(&c.check, "seen"),
        sent,
        "every frame seen is one sent: {}",
        c.check
    );
    let ledgers: BTreeSet<i64> = c.cuts.iter().map(|c| c.0).collect();
    assert_eq!(
        ledgers.len(),
        1,
        "one ledger throughout (adopted, never replaced): {:?}",
        c.cuts
    );
    let seqs: Vec<i64> = c.cuts.iter().map(|c| c.1).collect();
    let distinct: BTreeSet<i64> = seqs.iter().copied().collect();
    assert_eq!(distinct.len(), seqs.len(), "a cut number stored twice");
    assert_eq!(
        seqs,
        (1..=seqs.len() as i64).collect::<Vec<_>>(),
        "cuts are numbered 1..n without a gap (a gap is a cut cleared and never stored)"
    );
}

#[test]
fn crash_safety_swap() {
    crash_safety("1", "swap");
}

#[test]
fn crash_safety_lock() {
    crash_safety("2", "lock");
}

/// The same harness with the wrong order (clear, then commit) must lose
/// counts: the harness can fail. The delay is wider than above (each step
/// of a cut 60 ms instead of 30) and every kill comes after the first cut
/// could have started, so that kills land between the clear and the commit
/// reliably (about one kill in four does).
#[test]
fn clearing_before_committing_loses_counts() {
    let kills = Kills {
        min: 30,
        min_in_cut: (0, 0),
        up: (250, 650),
        early: false,
    };
    let c = crash_run("w", "swap", true, 60, Duration::from_secs(16), kills);
    let (sent, stored) = (total(&c.sent), total(&c.stored));
    eprintln!(
        "clear before commit: {} kills ({} inside an open cut): sent {} frames / {} bytes, \
         stored {} / {}: lost {} frames / {} bytes",
        c.kills,
        c.in_cut,
        sent.0,
        sent.1,
        stored.0,
        stored.1,
        sent.0 as i64 - stored.0 as i64,
        sent.1 as i64 - stored.1 as i64
    );
    assert!(
        stored.0 < sent.0 && stored.1 < sent.1,
        "clearing before committing must lose counts under {} kills (seed {}): sent {sent:?}, stored {stored:?}",
        c.kills,
        c.seed
    );
    assert!(
        c.stored
            .iter()
            .all(|(k, v)| c.sent.get(k).is_some_and(|s| v <= s)),
        "nothing is counted twice even in the wrong order:{}",
        differences(&c.sent, &c.stored)
    );
}

// ---------------------------------------------------------------------------
// Adoption

/// Stopped by SIGTERM and by kill -9, the kernel side keeps counting; the
/// next run adopts it: every frame, sent while a daemon ran or not, is in
/// the store.
#[test]
fn adoption_keeps_counting() {
    let bed = Bed::new("3");
    let extra = ["--strategy", "lock"];
    let flows = flows();
    let mut s = bed.sender();
    let mut d = bed.start(&extra, &[]);
    d.wait_for("attached (", WAIT);
    s.burst(&flows, 200);
    std::thread::sleep(millis(400));
    let st = d.stop();
    assert!(st.success(), "SIGTERM: {st}; log:\n{}", d.log());
    assert_eq!(
        d.count("stopped; the kernel side keeps counting"),
        1,
        "{}",
        d.log()
    );
    let status = bed.status();
    assert_eq!(status["running"], false, "{status}");
    assert_eq!(
        status["legs"][0]["attached"], true,
        "still attached: {status}"
    );

    // No daemon runs: the kernel counts on.
    s.burst(&flows, 150);
    d = bed.start(&extra, &[]);
    d.wait_for("adopted the pinned ledgers", WAIT);
    s.burst(&flows, 100);
    std::thread::sleep(millis(400));
    d.kill9();
    s.burst(&flows, 80);
    d = bed.start(&extra, &[]);
    d.wait_for("adopted the pinned ledgers", WAIT);
    s.burst(&flows, 60);
    std::thread::sleep(millis(400));
    assert!(d.stop().success(), "{}", d.log());
    bed.down();
    let r = report(&bed.db, "flow");
    assert_exact(&r.flows, &s.sent, "adoption after SIGTERM and kill -9");
    assert_eq!(r.check["status"], "exact", "{}", r.check);
}

// ---------------------------------------------------------------------------
// Store faults

/// The store's file system fills up mid-run: commits fail, the daemon says
/// so once, keeps running and the kernel keeps counting; once there is
/// space again it says so once and commits what waited. Then the same with
/// a kill -9 while the store fails and a restart on the full store.
/// Nothing is lost.
///
/// (A full file system rather than a read-only remount: the kernel refuses
/// `mount -o remount,ro` with EBUSY while a file on it is open for writing,
/// and the daemon holds its store open for writing throughout.)
#[test]
fn a_full_store_delays_commits_and_loses_nothing() {
    let mut bed = Bed::new("4");
    let mnt = bed.path("store");
    let tmpfs = Tmpfs::mount(&mnt, "8m");
    bed.db = mnt.join("n.db");
    let db = bed.db.display().to_string();
    let flows = flows();
    let mut s = bed.sender();
    let mut d = bed.start(&[], &[]);
    d.wait_for("attached (", WAIT);
    s.burst(&flows, 100);
    std::thread::sleep(millis(500));

    let filler = fill(&mnt);
    s.burst(&flows, 100);
    let failing = d.wait_for("store: committing cut", Duration::from_secs(15));
    for _ in 0..5 {
        s.burst(&flows, 20);
        std::thread::sleep(millis(200));
    }
    assert!(
        d.exited().is_none(),
        "the daemon must keep running while its store fails; log:\n{}",
        d.log()
    );
    std::fs::remove_file(&filler).unwrap_or_else(|e| panic!("{}: {e}", filler.display()));
    let recovered = d.wait_for("store writable again", Duration::from_secs(15));
    s.burst(&flows, 50);
    std::thread::sleep(millis(500));
    assert!(d.stop().success(), "{}", d.log());
    eprintln!("store failing: {failing}\nstore back: {recovered}");
    assert!(
        failing.contains(&db) && failing.contains("no space left") && failing.contains("retried"),
        "the failure names the store, the cause and what happens: {failing}"
    );
    assert_eq!(
        d.count("store: committing cut"),
        1,
        "one line when the store fails:\n{}",
        d.log()
    );
    assert_eq!(
        d.count("store writable again"),
        1,
        "one line when it is back:\n{}",
        d.log()
    );

    // Full again, and the daemon killed while its store fails (its cut
    // open, uncommitted): the next one starts on the full store, finishes
    // that cut once there is space, and nothing is lost either.
    d = bed.start(&[], &[]);
    d.wait_for("adopted the pinned ledgers", WAIT);
    s.burst(&flows, 40);
    let filler = fill(&mnt);
    d.wait_for("store: committing cut", Duration::from_secs(15));
    s.burst(&flows, 30);
    std::thread::sleep(millis(300));
    d.kill9();
    s.burst(&flows, 30);
    d = bed.start(&[], &[]);
    d.wait_for("adopted the pinned ledgers", WAIT);
    d.wait_for(FINISHING, WAIT);
    d.wait_for("store: committing cut", Duration::from_secs(15));
    s.burst(&flows, 30);
    std::fs::remove_file(&filler).unwrap_or_else(|e| panic!("{}: {e}", filler.display()));
    d.wait_for("store writable again", Duration::from_secs(15));
    s.burst(&flows, 30);
    std::thread::sleep(millis(500));
    assert!(d.stop().success(), "{}", d.log());
    assert_eq!(d.count("store: committing cut"), 1, "{}", d.log());

    bed.down();
    let r = report(&bed.db, "flow");
    assert_exact(&r.flows, &s.sent, "a full store");
    drop(tmpfs);
}

// ---------------------------------------------------------------------------
// Pins and ownership

/// A pinned map of `value` named `manifest` in `dir` (created): what some
/// other program might have left where netledger's manifest goes.
fn pin_garbage_manifest(dir: &Path, value: &[u8]) {
    std::fs::create_dir_all(dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
    let opts = libbpf_sys::bpf_map_create_opts {
        sz: std::mem::size_of::<libbpf_sys::bpf_map_create_opts>() as _,
        ..Default::default()
    };
    let mut map = MapHandle::create(
        MapType::Array,
        Some("garbage"),
        4,
        value.len() as u32,
        1,
        &opts,
    )
    .unwrap_or_else(|e| panic!("creating a map: {e}"));
    map.update(&0u32.to_ne_bytes(), value, MapFlags::ANY)
        .unwrap_or_else(|e| panic!("writing the map: {e}"));
    map.pin(dir.join("manifest"))
        .unwrap_or_else(|e| panic!("pinning the map: {e}"));
}

#[test]
fn pin_and_ownership_errors_are_one_clear_line() {
    let bed = Bed::new("5");
    let iface = bed.rx_if.clone();
    let db = bed.db.display().to_string();
    let sock = bed.socket().display().to_string();
    let run = |extra: &[&str]| {
        let mut args = vec!["run", "--iface", &iface, "--db", &db, "--socket", &sock];
        args.extend_from_slice(extra);
        bed.netledger(&args)
    };
    let down = || bed.netledger(&["down", "--iface", &iface, "--db", &db]);

    // Nothing pinned: nothing to take down, and no store made for it.
    let e = one_error_line(&down(), &[&iface, "no pins"]);
    assert!(
        !e.contains("netledger watch"),
        "down's fix is not to start a watch: {e}"
    );
    assert!(
        !bed.db.exists(),
        "down on nothing created {}",
        bed.db.display()
    );

    let mut d = bed.start(&[], &[]);
    d.wait_for("attached (", WAIT);
    let owner = format!("netledger run (pid {})", d.pid);
    let kill = format!("kill {}", d.pid);

    // A second daemon on the same interface (its own socket).
    let s2 = bed.path("s2.sock").display().to_string();
    let o = bed.netledger(&["run", "--iface", &iface, "--db", &db, "--socket", &s2]);
    one_error_line(&o, &[&owner, &iface, &kill]);
    // A watch on the daemon's interface.
    let o = bed.netledger(&["watch", "--iface", &iface, "--count", "1"]);
    one_error_line(&o, &[&owner, &kill]);
    // down while the daemon runs.
    one_error_line(&down(), &[&owner, &kill]);
    assert!(d.exited().is_none(), "{}", d.log());

    // Stopped, its pins stay; a start with another key is refused and
    // names the fix; the pins are left as they were.
    assert!(d.stop().success(), "{}", d.log());
    let fix = format!("netledger down --iface {iface}");
    one_error_line(&run(&["--key", "src-ip"]), &["key src-ip", &fix]);
    let st = bed.status();
    assert_eq!(st["config"]["key_mode"], "five-tuple", "{st}");
    assert_eq!(st["legs"][0]["attached"], true, "{st}");
    bed.down();
    one_error_line(&down(), &[&iface, "no pins"]);

    // A --socket path that is some other file: refused before anything is
    // attached, the file left as it was.
    let not_socket = bed.path("not-a-socket");
    std::fs::write(&not_socket, "keep me").unwrap();
    let o = bed.netledger(&[
        "run",
        "--iface",
        &iface,
        "--db",
        &db,
        "--socket",
        not_socket.to_str().unwrap(),
    ]);
    one_error_line(&o, &["is not a socket", "--socket PATH"]);
    assert_eq!(std::fs::read_to_string(&not_socket).unwrap(), "keep me");
    assert!(!bed.pinned(), "nothing attached");

    // A watch counts on the interface: run is refused, naming it.
    let mut cmd = std::process::Command::new("nsenter");
    cmd.arg(format!("--net=/run/netns/{}", bed.rx.name()))
        .args([BIN, "watch", "--iface", &iface, "--interval", "1s"])
        .args(["--format", "jsonl"]);
    let mut w = Watch::start(cmd);
    let watcher = format!("netledger watch (pid {})", w.child.id());
    one_error_line(&run(&[]), &[&watcher, &iface]);
    let (status, _, err) = w.stop();
    assert!(status.success(), "the watch failed: {err}");
    assert!(!bed.pinned(), "the watch left pins");

    // Garbage where the manifest goes: refused by run and by down, nothing
    // attached or added, the garbage left as it was.
    let garbage: Vec<u8> = (0..1024u32).map(|i| (i * 37 + 11) as u8 | 0x80).collect();
    pin_garbage_manifest(&bed.pins, &garbage);
    let path = bed.pins.display().to_string();
    for o in [run(&[]), down()] {
        one_error_line(&o, &[&path, "is not a netledger pin set", "rm -r"]);
    }
    let names: Vec<String> = std::fs::read_dir(&bed.pins)
        .unwrap_or_else(|e| panic!("{path}: {e}"))
        .map(|e| match e {
            Ok(e) => e.file_name().to_string_lossy().into_owned(),
            Err(e) => panic!("listing {path}: {e}"),
        })
        .collect();
    assert_eq!(names, ["manifest"], "nothing was added to {path}");
    let map = MapHandle::from_pinned_path(bed.pins.join("manifest"))
        .unwrap_or_else(|e| panic!("the garbage manifest is gone: {e}"));
    let value = map
        .lookup(&0u32.to_ne_bytes(), MapFlags::ANY)
        .unwrap_or_else(|e| panic!("reading the garbage manifest: {e}"));
    assert_eq!(
        value.as_deref(),
        Some(&garbage[..]),
        "the garbage was overwritten"
    );
    remove_pins(&bed.pins);
}

// ---------------------------------------------------------------------------
// Hostile configuration and stores

#[test]
fn hostile_configuration_and_stores_are_refused_before_attaching() {
    let bed = Bed::new("6");
    let iface = bed.rx_if.clone();
    let sock = bed.socket().display().to_string();
    let run = |config: Option<&Path>, db: &Path| {
        let db = db.display().to_string();
        let mut args = vec!["run".to_string()];
        match config {
            Some(c) => args.extend(["--config".to_string(), c.display().to_string()]),
            None => args.extend(["--iface".to_string(), iface.clone()]),
        }
        args.extend(["--db".to_string(), db, "--socket".to_string(), sock.clone()]);
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        bed.netledger(&args)
    };

    // Configuration files: an unknown key, a wrong type.
    for (name, text, needles) in [
        (
            "unknown.toml",
            format!("interfaces = [\"{iface}\"]\ninterval = \"200ms\"\nintreval = \"5s\"\n"),
            ["line 3", "intreval"],
        ),
        (
            "type.toml",
            format!("interfaces = [\"{iface}\"]\nmax_flows = \"many\"\n"),
            ["line 2", "max_flows"],
        ),
    ] {
        let path = bed.path(name);
        write(&path, text);
        let file = path.display().to_string();
        let mut all = vec![file.as_str()];
        all.extend(needles);
        one_error_line(&run(Some(&path), &bed.db), &all);
        assert!(!bed.pinned(), "{name}: nothing may be attached");
        assert!(!bed.db.exists(), "{name}: no store may be created");
    }

    // A file of garbage bytes as the store.
    let mut rng = Rng::seeded().0;
    let garbage: Vec<u8> = (0..8192).map(|_| rng.next_u64() as u8).collect();
    let garbage_db = bed.path("garbage.db");
    write(&garbage_db, &garbage);

    // A real store, from a run with traffic, taken down; then a corrupted,
    // a truncated and a newer-schema copy of it.
    let flows = flows();
    let mut s = bed.sender();
    let mut d = bed.start(&[], &[]);
    d.wait_for("attached (", WAIT);
    s.burst(&flows, 50);
    std::thread::sleep(millis(500));
    assert!(d.stop().success(), "{}", d.log());
    bed.down();
    assert_exact(&report(&bed.db, "flow").flows, &s.sent, "the good store");
    let good = read(&bed.db);
    assert!(good.len() > 8192, "the store has several pages");
    let mut corrupt = good.clone();
    for b in &mut corrupt[4096..] {
        *b = rng.next_u64() as u8;
    }
    let corrupt_db = bed.path("corrupt.db");
    write(&corrupt_db, &corrupt);
    let truncated_db = bed.path("truncated.db");
    write(&truncated_db, &good[..6000]);
    let newer_db = bed.path("newer.db");
    write(&newer_db, &good);
    let newer = netledger_sinks::store::SCHEMA_VERSION + 1;
    {
        let c = rusqlite::Connection::open(&newer_db).expect("opening the copy of the store");
        c.execute(
            "UPDATE meta SET value = ?1 WHERE key = 'schema_version'",
            [newer],
        )
        .expect("setting meta.schema_version");
        c.pragma_update(None, "user_version", newer)
            .expect("setting user_version");
    }
    let hostile = [
        (&garbage_db, "is not a SQLite database"),
        (&corrupt_db, "is corrupt"),
        (&truncated_db, "is corrupt"),
        (&newer_db, "newer netledger"),
    ];
    let check_refused = |pinned: bool| {
        for (path, needle) in hostile {
            let before = read(path);
            let name = path.display().to_string();
            one_error_line(&run(None, path), &[&name, needle]);
            assert!(read(path) == before, "{name} was changed by a failed start");
            assert_eq!(bed.pinned(), pinned, "{name}: the pins were changed");
        }
    };
    check_refused(false);

    // A failed start never detaches what a previous run left counting:
    // frames sent around failed starts are in the store after a good one.
    let mut bed_db = bed.db.clone();
    bed_db.set_file_name("second.db");
    let mut s = bed.sender();
    let mut d = start_with_db(&bed, &bed_db);
    d.wait_for("attached (", WAIT);
    s.burst(&flows, 40);
    std::thread::sleep(millis(400));
    assert!(d.stop().success(), "{}", d.log());
    s.burst(&flows, 30);
    check_refused(true);
    let st = bed.status();
    assert_eq!(st["legs"][0]["attached"], true, "after failed starts: {st}");
    s.burst(&flows, 20);
    d = start_with_db(&bed, &bed_db);
    d.wait_for("adopted the pinned ledgers", WAIT);
    std::thread::sleep(millis(400));
    assert!(d.stop().success(), "{}", d.log());
    let o = bed.netledger(&[
        "down",
        "--iface",
        &iface,
        "--db",
        &bed_db.display().to_string(),
    ]);
    assert!(
        o.status.success(),
        "down: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    assert_exact(
        &report(&bed_db, "flow").flows,
        &s.sent,
        "frames sent around failed starts",
    );
}

/// `netledger run` on the bed's interface with store `db`.
#[track_caller]
fn start_with_db(bed: &Bed, db: &Path) -> Daemon {
    let args = vec![
        "run".to_string(),
        "--iface".into(),
        bed.rx_if.clone(),
        "--interval".into(),
        "200ms".into(),
        "--db".into(),
        db.display().to_string(),
        "--socket".into(),
        bed.socket().display().to_string(),
    ];
    Daemon::spawn(&bed.rx, &args, &[])
}

// ---------------------------------------------------------------------------
// The interface goes and comes back

#[test]
fn interface_deleted_and_recreated_is_attached_again() {
    let mut bed = Bed::new("7");
    let flows = flows();
    let mut d = bed.start(&[], &[]);
    d.wait_for("attached (", WAIT);
    let mut s = bed.sender();
    s.burst(&flows, 100);
    let before = s.sent.clone();
    drop(s);
    std::thread::sleep(millis(400));
    bed.delete_veth();
    d.wait_for("interface gone", Duration::from_secs(10));
    bed.make_veth();
    d.wait_for("attached again", Duration::from_secs(10));
    let mut s = bed.sender();
    s.burst(&flows, 120);
    std::thread::sleep(millis(400));
    assert!(d.stop().success(), "{}", d.log());
    assert_eq!(d.count("interface gone"), 1, "{}", d.log());
    assert_eq!(d.count("attached again"), 1, "{}", d.log());
    let before = sum(&before, &s.sent);
    drop(s);

    // Deleted and re-created while no daemon runs: the next one attaches
    // again as it adopts the pins.
    bed.delete_veth();
    bed.make_veth();
    d = bed.start(&[], &[]);
    d.wait_for("adopted the pinned ledgers", WAIT);
    let st = bed.status();
    assert_eq!(
        st["legs"][0]["attached"], true,
        "attached to the new interface: {st}"
    );
    let mut s = bed.sender();
    s.burst(&flows, 70);
    std::thread::sleep(millis(400));
    assert!(d.stop().success(), "{}", d.log());
    bed.down();
    let r = report(&bed.db, "flow");
    assert_exact(&r.flows, &sum(&before, &s.sent), "before and after");
}

// ---------------------------------------------------------------------------
// status

#[test]
fn status_shows_the_service() {
    let bed = Bed::new("8");
    let db = bed.db.display().to_string();
    let mut d = bed.start(&[], &[]);
    d.wait_for("attached (", WAIT);
    let mut s = bed.sender();
    s.burst(&flows(), 30);
    std::thread::sleep(millis(600));

    let o = bed.netledger(&["status", "--db", &db]);
    let text = String::from_utf8_lossy(&o.stdout).into_owned();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let head = format!("{}: netledger run (pid {}) running", bed.rx_if, d.pid);
    let lines: Vec<&str> = text.lines().collect();
    let at = lines
        .iter()
        .position(|l| l.starts_with(&head))
        .unwrap_or_else(|| panic!("status lacks {head:?}:\n{text}"));
    let leg = lines.get(at + 1).copied().unwrap_or("");
    assert!(
        leg.contains("in via tc: attached; last cut "),
        "the next line says where it counts, attached, and the last cut: {leg}\n{text}"
    );
    assert!(text.contains(&format!("store {db}")), "{text}");

    let st = bed.status();
    assert_eq!(st["pid"], d.pid, "{st}");
    assert_eq!(st["running"], true, "{st}");
    assert_eq!(st["owner"], "netledger run", "{st}");
    assert_eq!(st["legs"][0]["attached"], true, "{st}");
    assert!(st["legs"][0]["last_seq"].as_u64() >= Some(1), "{st}");

    assert!(d.stop().success(), "{}", d.log());
    let st = bed.status();
    assert_eq!(st["running"], false, "{st}");
    assert_eq!(st["legs"][0]["attached"], true, "{st}");
    let o = bed.netledger(&["status", "--db", &db]);
    let text = String::from_utf8_lossy(&o.stdout).into_owned();
    assert!(
        text.contains(&format!("{}: netledger run not running", bed.rx_if)),
        "{text}"
    );
    bed.down();
    assert!(bed.status().is_null(), "nothing pinned after down");
}

// ---------------------------------------------------------------------------
// Reports reconcile

#[test]
fn reports_reconcile_with_what_was_sent() {
    let bed = Bed::new("9");
    let flows = flows();
    let mut d = bed.start(&[], &[]);
    d.wait_for("attached (", WAIT);
    let mut s = bed.sender();
    for _ in 0..5 {
        s.burst(&flows, 40);
        std::thread::sleep(millis(150));
    }
    std::thread::sleep(millis(300));
    assert!(d.stop().success(), "{}", d.log());
    bed.down();
    let sent = total(&s.sent);
    for by in ["day", "hour", "flow"] {
        let r = report(&bed.db, by);
        let c = &r.check;
        assert_eq!(c["status"], "exact", "report --by {by}: {c}");
        for what in ["rows", "total", "counted", "seen", "buckets"] {
            assert_eq!(
                check_count(c, what),
                sent,
                "report --by {by}: {what} against what was sent {sent:?}: {c}"
            );
        }
        if by == "flow" {
            assert_exact(&r.flows, &s.sent, "report --by flow");
        }
    }
}

// ---------------------------------------------------------------------------
// The configuration file

/// The control socket's hello line (retried until it listens).
#[track_caller]
fn hello(path: &Path) -> serde_json::Value {
    let deadline = Instant::now() + WAIT;
    let stream = loop {
        match UnixStream::connect(path) {
            Ok(s) => break s,
            Err(e) if Instant::now() > deadline => {
                panic!("nothing listens on {}: {e}", path.display())
            }
            Err(_) => std::thread::sleep(millis(20)),
        }
    };
    stream
        .set_read_timeout(Some(WAIT))
        .expect("setting a read timeout");
    let mut line = String::new();
    BufReader::new(stream)
        .read_line(&mut line)
        .unwrap_or_else(|e| panic!("reading the hello: {e}"));
    serde_json::from_str(&line).unwrap_or_else(|e| panic!("the hello is not JSON ({e}): {line}"))
}

#[test]
fn configuration_file_with_flags_over_it() {
    let bed = Bed::new("10");
    let iface = &bed.rx_if;
    let config = bed.path("netledger.toml");
    write(
        &config,
        format!(
            "interfaces = [\"{iface}\"]\ninterval = \"300ms\"\nstrategy = \"lock\"\ndb = \"{}\"\nsocket = \"{}\"\n",
            bed.db.display(),
            bed.socket().display()
        ),
    );
    let cfg = config.display().to_string();
    let flows = flows();
    let mut s = bed.sender();

    // Everything from the file.
    let mut d = Daemon::spawn(
        &bed.rx,
        &["run".into(), "--config".into(), cfg.clone()],
        &[],
    );
    let line = d.wait_for("attached (", WAIT);
    assert!(
        line.contains(iface.as_str())
            && line.contains("strategy lock")
            && line.contains(&bed.db.display().to_string()),
        "the interface, strategy and store of the file: {line}"
    );
    let h = hello(&bed.socket());
    assert_eq!(h["interval_ms"], 300, "{h}");
    assert_eq!(h["strategy"], "lock", "{h}");
    s.burst(&flows, 50);
    std::thread::sleep(millis(700));
    assert!(d.stop().success(), "{}", d.log());

    // A flag wins over the file.
    let args = ["run", "--config", &cfg, "--interval", "200ms"].map(String::from);
    d = Daemon::spawn(&bed.rx, &args, &[]);
    d.wait_for("adopted the pinned ledgers", WAIT);
    let h = hello(&bed.socket());
    assert_eq!(h["interval_ms"], 200, "the flag's interval: {h}");
    s.burst(&flows, 50);
    std::thread::sleep(millis(500));
    assert!(d.stop().success(), "{}", d.log());
    // --strategy swap over the file's lock: refused by the lock pins.
    let o = bed.netledger(&["run", "--config", &cfg, "--strategy", "swap"]);
    one_error_line(&o, &["strategy swap", "were made with strategy lock"]);

    bed.down();
    let cuts = stored_cuts(&bed.db);
    assert!(cuts.len() >= 4, "cuts every interval: {cuts:?}");
    assert_exact(&report(&bed.db, "flow").flows, &s.sent, "runs from a file");
}
