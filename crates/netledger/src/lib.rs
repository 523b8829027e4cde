//! netledger: exact per-flow packet and byte accounting with eBPF.
//!
//! The library owns every BPF program and map. [`Ledger`] loads the data
//! path with a [`LedgerConfig`], attaches it to an interface
//! ([`Ledger::attach_xdp`]), and reads coherent [`Snapshot`]s: every flow's
//! packets and bytes copied under the flow's own lock, and the conservation
//! buckets read without a half-accounted packet. Two snapshots give an
//! [`Interval`] of deltas.

mod config;
mod error;
mod key;
mod ledger;
mod lock;
mod naive;
mod pin;
mod snapshot;
mod swap;
mod sys;

pub mod bench;
pub mod harness;
pub mod netns;

pub use config::{KeyMode, LedgerConfig, Strategy, XdpMode};
pub use error::{Error, Result};
pub use key::{Addr, FlowKey, L4};
pub use ledger::{
    preflight, xdp_program_id, Attachment, EmptyProgram, Ledger, ReadMode, TestRun, KERNEL_BTF,
};
pub use lock::{KeyFilter, KeySelector};
pub use pin::{pin_dir, Pins, BPFFS};
pub use snapshot::{Bucket, Buckets, Count, Interval, Snapshot};

/// The types shared with the BPF programs, generated from `src/bpf/netledger.h`.
pub mod types {
    mod skel {
        #![allow(clippy::all, unused_imports, dead_code, non_camel_case_types)]
        include!(concat!(env!("OUT_DIR"), "/lock.skel.rs"));
    }
    pub use skel::types::{
        nl_config, nl_count, nl_exchange_req, nl_flow_key, nl_record, nl_slot, nl_stats,
    };

    // Types only the `swap` object uses come from its own skeleton.
    mod swap_skel {
        #![allow(clippy::all, unused_imports, dead_code, non_camel_case_types)]
        include!(concat!(env!("OUT_DIR"), "/swap.skel.rs"));
    }
    pub use swap_skel::types::nl_swap_counter;

    // The C header is the one definition; these catch a Rust side that drifted.
    const _: () = assert!(std::mem::size_of::<nl_flow_key>() == 44);
    const _: () = assert!(std::mem::size_of::<nl_slot>() == 88);
    const _: () = assert!(std::mem::size_of::<nl_count>() == 16);
    const _: () = assert!(std::mem::size_of::<nl_stats>() == 8 + 16 * NL_NR_BUCKETS + 8 + 8);
    const _: () = assert!(std::mem::size_of::<nl_exchange_req>() == 24 + 2 * 44);
    const _: () = assert!(std::mem::size_of::<nl_record>() == 88);
    const _: () = assert!(std::mem::size_of::<nl_config>() == 28);
    const _: () = assert!(std::mem::size_of::<nl_swap_counter>() == 32);

    /// Bucket indices (`enum nl_bucket`).
    pub const NL_BUCKET_SEEN: usize = 0;
    pub const NL_BUCKET_COUNTED: usize = 1;
    pub const NL_BUCKET_NON_IP: usize = 2;
    pub const NL_BUCKET_MALFORMED: usize = 3;
    pub const NL_BUCKET_MAP_FULL: usize = 4;
    pub const NL_BUCKET_EVICT_RACE: usize = 5;
    pub const NL_NR_BUCKETS: usize = 6;

    /// `enum nl_slot_state`.
    pub const NL_SLOT_FREE: u32 = 0;
    pub const NL_SLOT_LIVE: u32 = 1;
    pub const NL_SLOT_TOMBSTONE: u32 = 2;
    pub const NL_SLOT_PENDING: u32 = 3;

    /// `enum nl_key_flags`.
    pub const NL_KEY_F_PORTS: u8 = 1;
    pub const NL_KEY_F_ICMP: u8 = 2;
    pub const NL_KEY_F_FRAGMENT: u8 = 8;
}

/// The compiled BPF objects, embedded in the binary.
pub(crate) mod objects {
    pub const LOCK: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/lock.bpf.o"));
    pub const SWAP: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/swap.bpf.o"));
    pub const BENCH: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/bench.bpf.o"));
}

/// Silence libbpf's own diagnostics on stderr (verifier logs and warnings);
/// netledger's errors already name the cause and the fix.
pub fn quiet_libbpf() {
    libbpf_rs::set_print(None);
}
