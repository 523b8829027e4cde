//! netledger's lab: everything that measures and tests the product and is
//! not part of it. The netns/veth testbed and raw sockets ([`netns`]), the
//! conservation harness ([`harness`]), the naive baselines ([`naive`]), the
//! reference programs of `bench.bpf.c` and the benchmark ([`bench`]).

pub mod bench;
pub mod harness;
pub mod naive;
pub mod netns;

/// The skeleton of `bench.bpf.c`.
pub(crate) mod skel {
    #![allow(clippy::all, missing_docs, unused_imports, dead_code, non_camel_case_types)]
    #![allow(clippy::undocumented_unsafe_blocks, unsafe_op_in_unsafe_fn)]
    include!(concat!(env!("OUT_DIR"), "/bench.skel.rs"));
}
