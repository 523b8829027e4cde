//! Strategy `swap`: per-CPU counters in map-in-map inner maps, cut by swapping.

use std::os::fd::{AsFd, BorrowedFd, OwnedFd};

use crate::config::LedgerConfig;
use crate::error::{Error, Result};
use crate::ledger::load_object;
use crate::snapshot::{Buckets, Count};
use crate::sys::GraceMaps;
use crate::types::nl_flow_key;

#[derive(Debug)]
pub(crate) struct SwapBackend {
    prog: OwnedFd,
}

impl SwapBackend {
    pub fn load(cfg: &LedgerConfig) -> Result<SwapBackend> {
        let mut fds = load_object(crate::objects::SWAP, cfg, &[], &["nl_xdp"], &[])?;
        Ok(SwapBackend {
            prog: fds.remove("nl_xdp").expect("swap object has nl_xdp"),
        })
    }

    pub fn program(&self) -> BorrowedFd<'_> {
        self.prog.as_fd()
    }

    /// The current generation's buckets, settled.
    pub fn buckets(&self, _ncpus: usize) -> Result<Buckets> {
        Err(Error::NeedsLockStrategy { what: "swap buckets" })
    }

    /// Swap generations, wait a grace period, drain the old one.
    pub fn cut(&self, _grace: &GraceMaps, _ncpus: usize) -> Result<(Vec<(nl_flow_key, Count)>, Buckets)> {
        Err(Error::NeedsLockStrategy { what: "swap cuts" })
    }
}
