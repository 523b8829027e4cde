#!/usr/bin/env bash
# Install what building and running netledger needs, if it is missing:
# clang (compiles the BPF C), libelf and zlib (libbpf), pkg-config, iproute2
# and ethtool (namespaces and veths for the demo and tests). With --tests,
# also what the tests start as real consumers and tools: Prometheus and
# promtool, nfdump's nfcapd, tshark, tmux, iperf3, bpftool, pmacct, sqlite3,
# tzdata. Mounts bpffs. Safe to run again; does nothing when all is there.
# Needs root for apt-get.
set -euo pipefail

tests=0
[ "${1:-}" = "--tests" ] && tests=1

need=()
command -v clang >/dev/null || need+=(clang)
command -v pkg-config >/dev/null || need+=(pkg-config)
command -v ip >/dev/null || need+=(iproute2)
command -v ethtool >/dev/null || need+=(ethtool)
command -v make >/dev/null || need+=(make)
command -v cc >/dev/null || need+=(gcc)
[ -e /usr/include/gelf.h ] || need+=(libelf-dev)
[ -e /usr/include/zlib.h ] || need+=(zlib1g-dev)
# The kernel UAPI headers (linux/bpf.h) and <asm/types.h> for the BPF programs.
[ -e /usr/include/linux/bpf.h ] || need+=(linux-libc-dev)
if [ $tests -eq 1 ]; then
    command -v promtool >/dev/null || need+=(prometheus)
    command -v nfcapd >/dev/null || need+=(nfdump)
    command -v tshark >/dev/null || need+=(tshark)
    command -v tmux >/dev/null || need+=(tmux)
    command -v iperf3 >/dev/null || need+=(iperf3)
    command -v bpftool >/dev/null || need+=(bpftool)
    command -v pmacctd >/dev/null || need+=(pmacct)
    command -v sqlite3 >/dev/null || need+=(sqlite3)
    command -v setpriv >/dev/null || need+=(util-linux)
    command -v nsenter >/dev/null || need+=(util-linux)
    command -v tc >/dev/null || need+=(iproute2)
    [ -e /usr/share/zoneinfo/Europe/Berlin ] || need+=(tzdata)
fi

if [ ${#need[@]} -gt 0 ]; then
    echo "setup: installing ${need[*]}" >&2
    if [ "$(id -u)" -ne 0 ]; then
        echo "setup: need root to install packages; run with sudo" >&2
        exit 1
    fi
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi

if ! command -v cargo >/dev/null; then
    echo "setup: cargo not found; install Rust 1.89 or later (https://rustup.rs) and run again" >&2
    exit 1
fi

# bpffs holds the pins of `watch --strategy lock` and of the service; mount
# it where it is missing (netledger also mounts it when it needs it).
if [ "$(id -u)" -eq 0 ] && ! mountpoint -q /sys/fs/bpf 2>/dev/null; then
    mount -t bpf bpf /sys/fs/bpf 2>/dev/null || echo "setup: could not mount bpffs at /sys/fs/bpf" >&2
fi
