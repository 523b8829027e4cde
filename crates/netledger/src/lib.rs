//! netledger: exact per-flow packet and byte accounting with eBPF.
//!
//! The library owns every BPF program and map. [`Ledger::load`] loads the
//! data path of a [`Strategy`] with a [`LedgerConfig`];
//! [`Ledger::attach_xdp`] attaches it to an interface; [`Ledger::cut`]
//! takes an [`Interval`] out of the kernel (flow records and conservation
//! [`Buckets`]) without losing or double-counting a packet. Intervals feed
//! every output through the [`Sink`] trait.
//!
//! Module map: `skel` (the generated skeletons and the C types), `config`,
//! `key` and `record` (the record model), `sink`; `load`, `attach`, `pin`,
//! `maps`, `stats`, `sys` (loading, attaching, pinning, map access); `ctl`
//! (the cut control record); `lock` and `swap` (the strategies); `ledger`
//! (the facade over both) and `service` (the daemon's pins and links);
//! `wire` (an interval between netledger's processes). The facade
//! depends on the backends and they on the lower modules, never the reverse.

mod attach;
mod config;
mod ctl;
mod error;
mod key;
mod ledger;
mod load;
mod lock;
mod maps;
mod pin;
mod pod;
mod record;
mod service;
mod sink;
mod skel;
mod stats;
mod swap;
mod sys;
mod wire;

#[cfg(feature = "lab")]
pub mod lab;

pub use attach::{driver, ifindex, xdp_program_id, Attached, Attachment, TcMode};
pub use config::{Hook, KeyMode, LedgerConfig, Strategy, XdpMode};
pub use error::{Error, Result};
pub use key::{parse_proto, proto_name, proto_text, Addr, FlowKey, L4};
pub use ledger::{Ledger, PendingCut};
pub use load::{missing_capabilities, preflight, KERNEL_BTF};
pub use lock::KeySelector;
pub use pin::{bpffs_mounted, pin_dir, Manifest, Owner, Pins, BPFFS, LAYOUT};
pub use record::{
    civil_from_days, rfc3339, Bucket, Buckets, Count, Direction, Interval, Record, Snapshot,
};
pub use service::{
    describe, pin_status, pin_watch, pinned_interfaces, AttachOptions, Detached, Leg, LegStatus,
    LinkState, PinStatus, Service, Started,
};
pub use sink::{Sink, SinkError};

/// Silence libbpf's own diagnostics on stderr (verifier logs and warnings);
/// netledger's errors already name the cause.
pub fn quiet_libbpf() {
    libbpf_rs::set_print(None);
}
