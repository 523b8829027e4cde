//! Compiles the BPF programs with clang and generates their skeletons into OUT_DIR.

use std::env;
use std::path::PathBuf;

use libbpf_cargo::SkeletonBuilder;

/// The data paths of the two strategies (`src/bpf/<name>.bpf.c`).
const PROGRAMS: &[&str] = &["lock", "swap"];

fn main() {
    let out = PathBuf::from(env::var_os("OUT_DIR").expect("cargo sets OUT_DIR"));
    let arch = env::var("CARGO_CFG_TARGET_ARCH").expect("cargo sets CARGO_CFG_TARGET_ARCH");
    // The kernel UAPI headers (linux/bpf.h, ...) include <asm/types.h>, which
    // Debian keeps under the multiarch directory.
    let multiarch = format!("/usr/include/{arch}-linux-gnu");

    for name in PROGRAMS {
        let src = format!("src/bpf/{name}.bpf.c");
        SkeletonBuilder::new()
            .source(&src)
            .obj(out.join(format!("{name}.bpf.o")))
            .clang_args(["-I", "src/bpf", "-I", &multiarch, "-O2", "-g", "-Wall"])
            .build_and_generate(out.join(format!("{name}.skel.rs")))
            .unwrap_or_else(|e| panic!("building {src}: {e:#}"));
        println!("cargo:rerun-if-changed={src}");
    }
    println!("cargo:rerun-if-changed=src/bpf/netledger.h");
    println!("cargo:rerun-if-changed=src/bpf/parse.h");
    println!("cargo:rerun-if-changed=src/bpf/hooks.h");
    println!("cargo:rerun-if-changed=src/bpf/maps.h");
}
