//! The skeletons libbpf-cargo generates from the BPF objects (build.rs), and
//! the C types and constants they carry from `src/bpf/netledger.h` into Rust.
//!
//! The header is the one definition: every struct and enum below comes from
//! the objects' BTF, and the sizes are asserted so that a drifted layout
//! fails the build.

/// Includes a generated skeleton as a module, with the lints that generated
/// code does not meet turned off for it alone.
macro_rules! skeleton {
    ($module:ident, $file:literal) => {
        mod $module {
            #![allow(
                clippy::all,
                missing_docs,
                unused_imports,
                dead_code,
                non_camel_case_types
            )]
            #![allow(clippy::undocumented_unsafe_blocks, unsafe_op_in_unsafe_fn)]
            include!(concat!(env!("OUT_DIR"), "/", $file));
        }
    };
}

skeleton!(lock_skel, "lock.skel.rs");
skeleton!(swap_skel, "swap.skel.rs");

pub(crate) use lock_skel::LockSkelBuilder;
pub(crate) use swap_skel::SwapSkelBuilder;

/// The types and constants shared with the BPF programs (`netledger.h`),
/// as the skeletons generate them from BTF. Each C enum is a transparent
/// newtype with its values as associated constants.
pub mod types {
    pub use super::lock_skel::types::{
        nl_bucket, nl_config, nl_count, nl_cut_ctl, nl_cut_phase, nl_exchange_req,
        nl_exchange_result, nl_flow_key, nl_hook, nl_key_flags, nl_key_mode, nl_record,
        nl_record_flags, nl_slot, nl_slot_state, nl_stats,
    };
    pub use super::swap_skel::types::nl_swap_counter;

    use crate::pod::Pod;

    // The C header is the one definition; these catch a Rust side that drifted.
    const _: () = assert!(std::mem::size_of::<nl_flow_key>() == 44);
    const _: () = assert!(std::mem::size_of::<nl_slot>() == 128);
    const _: () = assert!(std::mem::size_of::<nl_count>() == 16);
    const _: () = assert!(std::mem::size_of::<nl_stats>() == 8 + 16 * NR_BUCKETS + 8 + 8);
    const _: () = assert!(std::mem::size_of::<nl_exchange_req>() == 24 + 2 * 44 + 8);
    const _: () = assert!(std::mem::size_of::<nl_record>() == 80);
    const _: () = assert!(std::mem::size_of::<nl_config>() == 32);
    const _: () = assert!(std::mem::size_of::<super::swap_skel::types::nl_config>() == 32);
    const _: () = assert!(std::mem::size_of::<nl_swap_counter>() == 24);
    const _: () = assert!(std::mem::size_of::<nl_cut_ctl>() == 48 + 2 * (16 * NR_BUCKETS + 8));

    /// The number of buckets (`NL_NR_BUCKETS`), as an array length.
    pub const NR_BUCKETS: usize = nl_bucket::NL_NR_BUCKETS.0 as usize;

    // These are `repr(C)` structs of integers, integer arrays and
    // `repr(transparent)` integer newtypes, laid out by the C header without
    // implicit padding (explicit `pad` fields); every bit pattern is a valid
    // value.
    // SAFETY: as said above.
    unsafe impl Pod for nl_flow_key {}
    // SAFETY: as above.
    unsafe impl Pod for nl_slot {}
    // SAFETY: as above.
    unsafe impl Pod for nl_record {}
    // SAFETY: as above.
    unsafe impl Pod for nl_config {}
    // SAFETY: as above.
    unsafe impl Pod for nl_stats {}
    // SAFETY: as above.
    unsafe impl Pod for nl_exchange_req {}
    // SAFETY: as above.
    unsafe impl Pod for nl_swap_counter {}
    // SAFETY: as above.
    unsafe impl Pod for nl_count {}
    // SAFETY: as above.
    unsafe impl Pod for nl_cut_ctl {}

    // SAFETY: as above; the swap object's copy of `struct nl_config`.
    unsafe impl Pod for super::swap_skel::types::nl_config {}

    impl nl_config {
        /// The same configuration as the swap object's copy of the type (the
        /// two skeletons each generate it from the one header).
        pub(crate) fn for_swap(&self) -> super::swap_skel::types::nl_config {
            crate::pod::from_bytes(crate::pod::bytes_of(self))
        }
    }

    impl nl_flow_key {
        /// The key's 44 bytes, for ordering and equality of raw keys.
        pub fn to_bytes(self) -> [u8; 44] {
            let mut out = [0u8; 44];
            out.copy_from_slice(crate::pod::bytes_of(&self));
            out
        }
    }
}
