//! Timing test runs to a fraction of a nanosecond.
//!
//! `BPF_PROG_TEST_RUN` reports the mean time per run truncated to whole
//! nanoseconds: 24.0 to 24.99 ns all read 24, which is 4% of the ~25 ns a
//! keyed counter costs on a fast machine and too coarse for ratios bounded
//! at 1.1 or 1.02. Timing the call from userspace has the resolution (a
//! million runs per call: the syscall's own microsecond is a thousandth of a
//! nanosecond per run), but an XDP test run with more than one repeat
//! registers its program with the kernel's XDP dispatcher and unregisters it
//! after, each a synchronize_rcu (about 25 ms here), unless the program is
//! registered already. [`Held`] registers every program measured for as long
//! as it lives, by attaching each (generic mode) to an interface of its own
//! in a private namespace, down, with no traffic; a test run then costs its
//! runs and the syscall, and the wall time per run is the figure. The
//! dispatched call is the same one a test run makes anyway.
//!
//! A call that was disturbed (wall time per run more than [`SLACK_NS`]
//! above the kernel's, which stops its clock while it reschedules: the
//! thread was preempted, or waited for the dispatcher's mutex while another
//! process's test run updated the dispatcher) is made again.

use std::os::fd::BorrowedFd;
use std::time::Instant;

use anyhow::{anyhow, Context, Result};
use netledger::lab::{attach_xdp_fd, test_run};
use netledger::{Attachment, XdpMode};

use crate::netns::{veth_pair, NetNs, Veth};

/// XDP_PASS: every program measured returns it.
pub(super) const XDP_PASS: u32 = 2;

/// Wall ns per run above the kernel's figure beyond which a call is taken
/// to have been disturbed.
const SLACK_NS: f64 = 1.5;

/// Programs held registered with the XDP dispatcher (see the module docs).
/// Dropping it detaches them and removes the interfaces and the namespace.
pub(crate) struct Held {
    links: Vec<Attachment>,
    veths: Vec<Veth>,
    _ns: NetNs,
}

impl std::fmt::Debug for Held {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Held({} programs)", self.links.len())
    }
}

impl Held {
    /// Register `progs` (XDP programs) with the dispatcher.
    pub fn hold(progs: &[BorrowedFd<'_>]) -> Result<Held> {
        let ns = NetNs::create("nlhold").context("creating the timing namespace")?;
        let mut veths = Vec::new();
        let mut links = Vec::new();
        for (i, pair) in progs.chunks(2).enumerate() {
            let (a, b) = (format!("nlh{i}a"), format!("nlh{i}b"));
            let veth = veth_pair(&a, Some(&ns), &b, Some(&ns))
                .with_context(|| format!("creating the timing pair {a}"))?;
            for (prog, name) in pair.iter().zip([a, b]) {
                let att = ns
                    .try_run(|| attach_xdp_fd(*prog, &name, XdpMode::Generic))
                    .context("entering the timing namespace")?
                    .with_context(|| format!("holding a program on {name}"))?;
                links.push(att);
            }
            veths.push(veth);
        }
        Ok(Held {
            links,
            veths,
            _ns: ns,
        })
    }
}

impl Drop for Held {
    fn drop(&mut self) {
        // Links before interfaces, interfaces before the namespace.
        self.links.clear();
        self.veths.clear();
    }
}

/// One timed test-run call.
#[derive(Debug, Clone, Copy)]
pub(super) struct Timed {
    /// Mean ns per run (wall time per run; see the module docs).
    pub ns: f64,
}

/// Calls made for one sample at most, when calls are disturbed.
const ATTEMPTS: usize = 4;

/// Run `prog` on `frame` `repeat` times; the mean ns per run. A disturbed
/// call is made again (up to [`ATTEMPTS`] calls in all); if every call was,
/// the kernel's figure plus half a nanosecond.
pub(super) fn timed(prog: BorrowedFd<'_>, frame: &[u8], repeat: u32) -> Result<Timed> {
    let mut kernel = f64::NAN;
    for _ in 0..ATTEMPTS {
        let t = Instant::now();
        let r = test_run(prog, frame, repeat)?;
        let wall = t.elapsed().as_nanos() as f64 / f64::from(repeat.max(1));
        if r.retval != XDP_PASS {
            return Err(anyhow!("returned {}, not XDP_PASS", r.retval));
        }
        kernel = f64::from(r.duration_ns);
        if wall <= kernel + SLACK_NS {
            return Ok(Timed { ns: wall });
        }
    }
    Ok(Timed { ns: kernel + 0.5 })
}
