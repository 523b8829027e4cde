//! Compiles the lab's reference programs (`src/bpf/bench.bpf.c`, against the
//! product's headers) and generates their skeleton into OUT_DIR.

use std::env;
use std::path::PathBuf;

use libbpf_cargo::SkeletonBuilder;

fn main() {
    let out = PathBuf::from(env::var_os("OUT_DIR").expect("cargo sets OUT_DIR"));
    let arch = env::var("CARGO_CFG_TARGET_ARCH").expect("cargo sets CARGO_CFG_TARGET_ARCH");
    let multiarch = format!("/usr/include/{arch}-linux-gnu");
    // netledger.h and parse.h: the one definition of keys and parsing;
    // maps.h: the map shapes it shares with the product.
    let product = "../netledger/src/bpf";
    let src = "src/bpf/bench.bpf.c";
    SkeletonBuilder::new()
        .source(src)
        .obj(out.join("bench.bpf.o"))
        .clang_args(["-I", product, "-I", &multiarch, "-O2", "-g", "-Wall"])
        .build_and_generate(out.join("bench.skel.rs"))
        .unwrap_or_else(|e| panic!("building {src}: {e:#}"));
    println!("cargo:rerun-if-changed={src}");
    println!("cargo:rerun-if-changed={product}/netledger.h");
    println!("cargo:rerun-if-changed={product}/parse.h");
    println!("cargo:rerun-if-changed={product}/maps.h");
}
