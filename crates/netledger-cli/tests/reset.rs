//! `netledger reset` against a running `watch`: lossless under live traffic,
//! targeted by key fields, and clear errors for missing, stale and foreign pins.

use std::collections::BTreeMap;
use std::process::{Command, Output};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use netledger_lab::netns::{self, Ipv6Mode, NetNs, RawSocket};

mod common;
use common::Watch;

const BIN: &str = env!("CARGO_BIN_EXE_netledger");

/// (src, dst, sport, dport) -> (packets, bytes)
type Totals = BTreeMap<(String, String, u64, u64), (u64, u64)>;

struct Bed {
    tx: NetNs,
    rx: NetNs,
    _veth: netns::Veth,
}

fn bed(tag: &str) -> Bed {
    let tx = NetNs::create(&format!("nl-rs{tag}tx")).unwrap();
    let rx = NetNs::create(&format!("nl-rs{tag}rx")).unwrap();
    let veth = netns::veth_pair("nlrs0", Some(&tx), "nlrs1", Some(&rx)).unwrap();
    veth.a().prepare(Ipv6Mode::Off).unwrap();
    veth.b().prepare(Ipv6Mode::Off).unwrap();
    Bed {
        tx,
        rx,
        _veth: veth,
    }
}

/// Start `watch` (strategy lock) in `ns` and wait until it is attached (and pinned).
fn start_watch(ns: &NetNs, extra: &[&str]) -> Watch {
    let mut cmd = Command::new("nsenter");
    cmd.args(&nsenter(ns)[1..])
        .args([
            BIN,
            "watch",
            "--iface",
            "nlrs1",
            "--format",
            "jsonl",
            "--strategy",
            "lock",
        ])
        .args(extra);
    Watch::start(cmd)
}

/// Enter only the network namespace (unlike `ip netns exec`, which remounts
/// /sys and so hides the bpffs at /sys/fs/bpf where the pins live).
fn nsenter(ns: &NetNs) -> Vec<String> {
    vec!["nsenter".into(), format!("--net=/run/netns/{}", ns.name())]
}

fn reset(ns: &NetNs, extra: &[&str]) -> Output {
    Command::new("nsenter")
        .args(&nsenter(ns)[1..])
        .args([BIN, "reset", "--iface", "nlrs1"])
        .args(extra)
        .output()
        .unwrap()
}

fn frame(sport: u16, dport: u16, payload: usize) -> Vec<u8> {
    let mut f = Vec::new();
    etherparse::PacketBuilder::ethernet2([2, 0, 0, 0, 0, 2], [2, 0, 0, 0, 0, 1])
        .ipv4([10, 202, 0, 2], [10, 202, 0, 1], 64)
        .udp(sport, dport)
        .write(&mut f, &vec![0u8; payload])
        .unwrap();
    f
}

fn add_json(into: &mut Totals, line: &str) {
    let v: serde_json::Value = serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line}"));
    if v["type"] != "flow" && v["type"] != "reset" {
        return;
    }
    let k = &v["key"];
    let key = (
        k["src"].as_str().unwrap().to_string(),
        k["dst"].as_str().unwrap().to_string(),
        k["sport"].as_u64().unwrap(),
        k["dport"].as_u64().unwrap(),
    );
    let e = into.entry(key).or_default();
    e.0 += v["packets"].as_u64().unwrap();
    e.1 += v["bytes"].as_u64().unwrap();
}

#[test]
fn reset_under_traffic_loses_nothing() {
    let b = bed("a");
    let mut watch = start_watch(&b.rx, &["--interval", "200ms"]);

    // Two flows sent continuously (both to the end, so that every targeted
    // reset has its key to take) while resets run against the live ledger.
    let flows = [
        (41000u16, 9000u16, 100usize, 30_000u64),
        (41001, 9001, 700, 30_000),
    ];
    let mut sent = Totals::new();
    for (sport, dport, payload, n) in flows {
        let len = frame(sport, dport, payload).len() as u64;
        sent.insert(
            (
                "10.202.0.2".into(),
                "10.202.0.1".into(),
                sport.into(),
                dport.into(),
            ),
            (n, n * len),
        );
    }
    let done = AtomicBool::new(false);
    let mut taken = Totals::new();
    let mut resets = 0;
    let mut targeted_flows = 0;
    std::thread::scope(|s| {
        s.spawn(|| {
            b.tx.run(|| {
                let sock = RawSocket::open("nlrs0").unwrap();
                let frames: Vec<(Vec<u8>, u64)> = flows
                    .iter()
                    .map(|&(sp, dp, pl, n)| (frame(sp, dp, pl), n))
                    .collect();
                let max = frames.iter().map(|f| f.1).max().unwrap();
                for i in 0..max {
                    for (f, n) in &frames {
                        if i < *n {
                            sock.send(f).unwrap();
                        }
                    }
                }
            });
            done.store(true, Ordering::SeqCst);
        });
        while !done.load(Ordering::SeqCst) {
            // Alternate whole resets and a targeted one.
            let args: &[&str] = if resets % 2 == 0 {
                &["--format", "jsonl"]
            } else {
                &["--format", "jsonl", "--dport", "9001", "--proto", "udp"]
            };
            let o = reset(&b.rx, args);
            assert!(
                o.status.success(),
                "reset failed: {}",
                String::from_utf8_lossy(&o.stderr)
            );
            for line in String::from_utf8_lossy(&o.stdout).lines() {
                // Every key a targeted reset took is the one selected (its
                // summary line carries no key).
                if resets % 2 == 1 && line.contains(r#""type":"flow""#) {
                    targeted_flows += 1;
                    assert!(
                        line.contains(r#""dport":9001"#),
                        "targeted reset took another key: {line}"
                    );
                }
                add_json(&mut taken, line);
            }
            resets += 1;
        }
    });
    std::thread::sleep(Duration::from_millis(200));
    let (status, out, rest) = watch.stop();
    assert!(status.success(), "watch failed: {rest}");
    let mut counted = Totals::new();
    for line in out.lines() {
        add_json(&mut counted, line);
    }
    eprintln!(
        "{resets} resets while sending; taken by reset: {taken:?}; reported by watch: {counted:?}"
    );
    assert!(
        resets >= 3,
        "the resets must overlap the traffic (only {resets})"
    );
    assert!(!taken.is_empty(), "some counts were taken by reset");
    assert!(
        targeted_flows > 0,
        "a targeted reset took its key at least once"
    );
    let mut both = counted.clone();
    for (k, (p, by)) in &taken {
        let e = both.entry(k.clone()).or_default();
        e.0 += p;
        e.1 += by;
    }
    assert_eq!(
        both, sent,
        "watch + reset must account for every frame sent, exactly"
    );
}

#[test]
fn reset_errors_are_one_clear_line() {
    let b = bed("b");
    // Nothing running.
    let o = reset(&b.rx, &[]);
    assert_eq!(o.status.code(), Some(1));
    let e = String::from_utf8_lossy(&o.stderr);
    assert!(
        e.contains("no netledger is counting on") && e.contains("netledger watch"),
        "{e}"
    );

    // A watch killed without cleanup leaves stale pins: reset says so.
    let mut watch = start_watch(&b.rx, &["--interval", "1s"]);
    watch.child.kill().unwrap();
    watch.child.wait().unwrap();
    let o = reset(&b.rx, &[]);
    assert_eq!(o.status.code(), Some(1));
    let e = String::from_utf8_lossy(&o.stderr);
    assert!(e.contains("stale pins") && e.contains("rm -r"), "{e}");
    // A new watch clears them and works; a second one is refused.
    let mut watch = start_watch(&b.rx, &["--interval", "1s"]);
    let o = reset(&b.rx, &["--format", "jsonl"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let second = Command::new("nsenter")
        .args(&nsenter(&b.rx)[1..])
        .args([
            BIN,
            "watch",
            "--iface",
            "nlrs1",
            "--count",
            "1",
            "--strategy",
            "lock",
        ])
        .output()
        .unwrap();
    assert_eq!(
        second.status.code(),
        Some(1),
        "{}",
        String::from_utf8_lossy(&second.stderr)
    );
    // Selecting a field the key mode lacks is refused.
    let o = reset(&b.rx, &["--vlan", "5"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&o.stderr).contains("--vlan"));
    assert!(watch.stop().0.success());
    // Clean exit removed the pins.
    let o = reset(&b.rx, &[]);
    assert!(String::from_utf8_lossy(&o.stderr).contains("no netledger is counting on"));

    // Something else where the pins would be: not ours, and said so.
    let dir = b.rx.run(|| netledger::pin_dir("nlrs1")).unwrap();
    std::fs::create_dir_all(dir.join("xdp")).unwrap();
    let o = reset(&b.rx, &[]);
    let _ = std::fs::remove_dir(dir.join("xdp"));
    let _ = std::fs::remove_dir(&dir);
    let _ = std::fs::remove_dir(dir.parent().unwrap());
    let _ = std::fs::remove_dir(dir.parent().unwrap().parent().unwrap());
    assert_eq!(o.status.code(), Some(1));
    let e = String::from_utf8_lossy(&o.stderr);
    assert!(e.contains("is not a netledger pin set"), "{e}");
}
