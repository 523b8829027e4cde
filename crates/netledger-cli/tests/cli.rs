//! The `netledger` binary as a user meets it: help, errors, demo, watch.
//! Needs root (it loads BPF programs and creates namespaces); nothing skips.

use std::process::{Command, Output};

use netledger_lab::netns::{self, Ipv6Mode, NetNs};

#[path = "common/egress.rs"]
mod bed;
mod common;

const BIN: &str = env!("CARGO_BIN_EXE_netledger");

fn netledger(args: &[&str]) -> Output {
    Command::new(BIN)
        .args(args)
        .output()
        .expect("running netledger")
}

/// `ip netns exec NS`, the program and its arguments to follow.
fn in_netns(ns: &NetNs) -> Command {
    let mut c = Command::new("ip");
    c.args(["netns", "exec", ns.name()]);
    c
}

/// Run netledger inside a namespace.
fn netledger_in(ns: &NetNs, args: &[&str]) -> Output {
    in_netns(ns)
        .arg(BIN)
        .args(args)
        .output()
        .expect("running netledger in a namespace")
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// A failed run: exit code 1 and exactly one error line naming `needle`.
#[track_caller]
fn assert_one_line_error(o: &Output, needle: &str) {
    let err = stderr(o);
    assert_eq!(o.status.code(), Some(1), "exit code; stderr: {err}");
    let lines: Vec<&str> = err.lines().collect();
    assert_eq!(lines.len(), 1, "one line of error, got: {err}");
    assert!(lines[0].starts_with("netledger: error: "), "{err}");
    assert!(
        lines[0].contains(needle),
        "error should mention {needle:?}: {err}"
    );
}

/// What of netledger's is attached to `iface` in `ns`, at any hook (XDP,
/// tcx, clsact): empty when nothing is.
#[track_caller]
fn attached(ns: &NetNs, iface: &str) -> Vec<String> {
    bed::ours_attached(ns, iface)
}

/// A namespace with a veth pair whose end "nlc0" is where netledger attaches.
struct Bed {
    ns: NetNs,
    _peer_ns: NetNs,
    _veth: netns::Veth,
}

fn bed() -> Bed {
    let ns = NetNs::create("nl-cli").unwrap();
    let peer_ns = NetNs::create("nl-clipeer").unwrap();
    let veth = netns::veth_pair("nlc0", Some(&ns), "nlc1", Some(&peer_ns)).unwrap();
    veth.a().prepare(Ipv6Mode::Off).unwrap();
    veth.b().prepare(Ipv6Mode::Off).unwrap();
    Bed {
        ns,
        _peer_ns: peer_ns,
        _veth: veth,
    }
}

#[test]
fn help_works_for_every_command() {
    for args in [
        &["--help"][..],
        &["watch", "--help"],
        &["demo", "--help"],
        &["--version"],
    ] {
        let o = netledger(args);
        assert!(o.status.success(), "{args:?}: {}", stderr(&o));
        assert!(!stdout(&o).is_empty(), "{args:?} printed nothing");
    }
    let o = netledger(&["watch", "--help"]);
    for flag in [
        "--iface",
        "--key",
        "--vlan",
        "--prefix4",
        "--prefix6",
        "--interval",
        "--count",
        "--top",
        "--format",
        "--xdp-mode",
    ] {
        assert!(stdout(&o).contains(flag), "watch --help lacks {flag}");
    }
}

#[test]
fn missing_interface_is_one_clear_line() {
    let o = netledger(&["watch", "--iface", "nl-missing0"]);
    assert_one_line_error(&o, "does not exist");
    assert!(stderr(&o).contains("ip link"), "names the fix");
}

#[test]
fn invalid_flags_are_refused_before_anything_is_attached() {
    let b = bed();
    let o = netledger_in(&b.ns, &["watch", "--iface", "nlc0", "--prefix4", "40"]);
    assert_one_line_error(&o, "--prefix4");
    let o = netledger_in(&b.ns, &["watch", "--iface", "nlc0", "--prefix6", "129"]);
    assert_one_line_error(&o, "--prefix6");
    // Argument syntax errors come from the parser: usage error, exit 2.
    for args in [
        &["watch", "--iface", "nlc0", "--key", "bogus"][..],
        &["watch", "--iface", "nlc0", "--interval", "5x"],
        &["watch", "--iface", "nlc0", "--format", "xml"],
        &["watch", "--iface", "nlc0", "--xdp-mode", "hw"],
        &["watch"],
    ] {
        let o = netledger_in(&b.ns, args);
        assert_eq!(o.status.code(), Some(2), "{args:?}: {}", stderr(&o));
        assert!(stderr(&o).contains("error"), "{args:?}: {}", stderr(&o));
    }
    let found = attached(&b.ns, "nlc0");
    assert!(found.is_empty(), "nothing may stay attached: {found:?}");
    // A benchmark part that does not exist is named, with the parts there are.
    let o = netledger(&["bench", "--only", "datapath,service"]);
    assert_one_line_error(
        &o,
        "no benchmark part \"service\"; the parts are datapath, breakdown",
    );
}

#[test]
fn unsupported_xdp_mode_is_one_clear_line() {
    // Loopback has no native XDP.
    let ns = NetNs::create("nl-clilo").unwrap();
    let o = netledger_in(
        &ns,
        &[
            "watch",
            "--iface",
            "lo",
            "--xdp-mode",
            "native",
            "--count",
            "1",
        ],
    );
    assert_one_line_error(&o, "does not support native XDP");
    assert!(stderr(&o).contains("--xdp-mode generic"), "names the fix");
    assert_eq!(attached(&ns, "lo"), Vec::<String>::new());
}

#[test]
fn not_root_is_one_clear_line() {
    let b = bed();
    let o = in_netns(&b.ns)
        .args([
            "setpriv",
            "--reuid=65534",
            "--regid=65534",
            "--clear-groups",
        ])
        .args(["--inh-caps=-all", "--bounding-set=-all", BIN])
        .args(["watch", "--iface", "nlc0"])
        .output()
        .unwrap();
    assert_one_line_error(&o, "needs root");
    assert_eq!(attached(&b.ns, "nlc0"), Vec::<String>::new());
}

#[test]
fn kernel_without_btf_is_one_clear_line() {
    let b = bed();
    let o = in_netns(&b.ns)
        .args([BIN, "watch", "--iface", "nlc0"])
        .env("NETLEDGER_KERNEL_BTF", "/nonexistent/vmlinux")
        .output()
        .unwrap();
    assert_one_line_error(&o, "no BTF");
    assert!(
        stderr(&o).contains("CONFIG_DEBUG_INFO_BTF"),
        "names the fix"
    );
    assert_eq!(attached(&b.ns, "nlc0"), Vec::<String>::new());
}

#[test]
fn demo_counts_exactly_and_leaves_nothing() {
    let before = netns_list();
    let o = netledger(&["demo"]);
    assert!(
        o.status.success(),
        "demo failed: {}\n{}",
        stdout(&o),
        stderr(&o)
    );
    let out = stdout(&o);
    assert!(out.contains("verification: EXACT"), "{out}");
    assert!(!out.contains("MISMATCH"), "{out}");
    assert_eq!(netns_list(), before, "demo must remove its namespaces");

    // JSON lines: the ledger is machine-readable, the verification on stderr.
    let o = netledger(&["demo", "--format", "jsonl", "--packets", "10"]);
    assert!(o.status.success(), "{}", stderr(&o));
    for line in stdout(&o).lines() {
        let v: serde_json::Value =
            serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line}"));
        assert!(v["type"] == "flow" || v["type"] == "summary", "{line}");
    }
    assert!(stderr(&o).contains("verification: EXACT"), "{}", stderr(&o));
}

/// Our own namespaces (other tests may be creating theirs concurrently).
fn netns_list() -> Vec<String> {
    let out = Command::new("ip").args(["netns", "list"]).output().unwrap();
    let mut v: Vec<String> = stdout(&out)
        .lines()
        .filter(|l| l.starts_with("nl-demo"))
        .map(|l| l.split_whitespace().next().unwrap().to_string())
        .collect();
    v.sort();
    v
}

#[test]
fn watch_stops_after_count_and_detaches() {
    let b = bed();
    for format in ["jsonl", "csv", "table"] {
        let o = netledger_in(
            &b.ns,
            &[
                "watch",
                "--iface",
                "nlc0",
                "--interval",
                "100ms",
                "--count",
                "3",
                "--format",
                format,
            ],
        );
        assert!(o.status.success(), "{format}: {}", stderr(&o));
        let out = stdout(&o);
        match format {
            "jsonl" => {
                let summaries = out
                    .lines()
                    .filter(|l| l.contains(r#""type":"summary""#))
                    .count();
                assert_eq!(summaries, 3, "{out}");
                for line in out.lines() {
                    let v: serde_json::Value = serde_json::from_str(line).unwrap();
                    if v["type"] == "summary" {
                        for field in ["iface", "start", "end", "seen", "buckets"] {
                            assert!(!v[field].is_null(), "summary lacks {field}: {line}");
                        }
                        for bucket in ["counted", "non_ip", "malformed", "map_full"] {
                            assert!(v["buckets"][bucket]["packets"].is_u64(), "{line}");
                        }
                    }
                }
            }
            "csv" => {
                let mut lines = out.lines();
                let header = lines.next().unwrap();
                assert!(
                    header.starts_with("type,iface,dir,start,end,bucket,src,dst,proto,sport,dport"),
                    "{header}"
                );
                let cols = header.split(',').count();
                for l in lines {
                    assert_eq!(l.split(',').count(), cols, "{l}");
                }
                assert_eq!(
                    out.lines()
                        .filter(|l| l.starts_with("summary,") && l.contains(",seen,"))
                        .count(),
                    3
                );
            }
            _ => assert!(out.contains("PACKETS") && out.contains("seen "), "{out}"),
        }
        let found = attached(&b.ns, "nlc0");
        assert!(
            found.is_empty(),
            "{format}: detached after --count: {found:?}"
        );
    }
    // The control: while a watch runs, its program is found.
    let mut cmd = in_netns(&b.ns);
    cmd.args([BIN, "watch", "--iface", "nlc0", "--interval", "100ms"]);
    let mut w = common::Watch::start(cmd);
    let found = attached(&b.ns, "nlc0");
    assert!(!found.is_empty(), "a running watch is found attached");
    let (status, _, err) = w.stop();
    assert!(status.success(), "{err}");
    let found = attached(&b.ns, "nlc0");
    assert!(found.is_empty(), "detached after SIGINT: {found:?}");
}

#[test]
fn bench_quick_runs_end_to_end() {
    // Removed when the test ends, passed or not.
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let (json, svg) = (dir.join("bench.json"), dir.join("bench.svg"));
    let o = netledger(&[
        "bench",
        "--quick",
        "--json",
        json.to_str().unwrap(),
        "--plot",
        svg.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "bench --quick failed: {}", stderr(&o));
    let out = stdout(&o);
    for section in [
        "Data-path cost",
        "Read-side exactness",
        "Snapshot and drain",
        "concurrent reader",
        "Real packets",
        "Targets",
    ] {
        assert!(
            out.contains(section),
            "bench output lacks {section:?}:\n{out}"
        );
    }
    let v: serde_json::Value = serde_json::from_slice(&std::fs::read(&json).unwrap()).unwrap();
    assert!(
        v["measurements"].is_array() && v["targets"].is_array(),
        "{v}"
    );
    assert!(
        !v["measurements"].as_array().unwrap().is_empty(),
        "bench measured nothing"
    );
    let svg_text = std::fs::read_to_string(&svg).unwrap();
    assert!(svg_text.contains("<svg"), "the plot is an SVG");
}
