//! The cut control record (`struct nl_cut_ctl`): where a ledger's numbered
//! cuts stand, in a one-entry array map of its own. Pinned with the ledger,
//! it outlives the process, so a process started after a crash finds the
//! cut that was open and finishes or redoes it.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use libbpf_rs::{MapFlags, MapHandle};

use crate::error::{map_err, Result};
use crate::maps::TypedMap;
use crate::skel::types::{nl_cut_ctl, nl_cut_phase};

/// The control map of one ledger.
#[derive(Debug)]
pub(crate) struct Ctl {
    map: MapHandle,
}

impl Ctl {
    /// The control map pinned with a ledger.
    pub fn from_map(map: MapHandle) -> Ctl {
        Ctl { map }
    }

    /// The record.
    pub fn read(&self) -> Result<nl_cut_ctl> {
        Ok(self
            .map
            .get(&0u32, MapFlags::ANY)
            .map_err(map_err("lookup", "nl_cut_ctl"))?
            .unwrap_or_default())
    }

    /// Replace the record (one syscall: the kernel copies the value whole).
    pub fn write(&self, c: &nl_cut_ctl) -> Result<()> {
        self.map
            .put(&0u32, c, MapFlags::ANY)
            .map_err(map_err("update", "nl_cut_ctl"))
    }
}

/// The phase values as the record's u32 holds them.
pub(crate) const IDLE: u32 = nl_cut_phase::NL_CUT_IDLE.0;
pub(crate) const OPEN: u32 = nl_cut_phase::NL_CUT_OPEN.0;

/// Wall-clock nanoseconds since the Unix epoch.
pub(crate) fn ns(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0)
}

/// The time `ns` nanoseconds after the Unix epoch.
pub(crate) fn time(ns: u64) -> SystemTime {
    UNIX_EPOCH + Duration::from_nanos(ns)
}
