#!/usr/bin/env bash
# Install what building and running netledger needs, if it is missing:
# clang (compiles the BPF C), libelf and zlib (libbpf), pkg-config, iproute2
# and ethtool (namespaces and veths for the demo and tests). Mounts bpffs.
# Safe to run again; does nothing when all is there. Needs root for apt-get.
set -euo pipefail

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
    echo "setup: cargo not found; install Rust (https://rustup.rs) and run again" >&2
    exit 1
fi

# bpffs is not needed by watch or demo today, but mount it where it is
# missing so a later pinning step does not fail on a fresh machine.
if [ "$(id -u)" -eq 0 ] && ! mountpoint -q /sys/fs/bpf 2>/dev/null; then
    mount -t bpf bpf /sys/fs/bpf 2>/dev/null || echo "setup: could not mount bpffs at /sys/fs/bpf (not needed yet)" >&2
fi
