use std::fs;
use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::Path;
use std::time::SystemTime;

use libbpf_rs::{MapCore, ObjectBuilder};

use crate::config::{LedgerConfig, XdpMode};
use crate::error::{Error, Result};
use crate::key::FlowKey;
use crate::snapshot::{Buckets, Count, Snapshot};
use crate::sys;
use crate::types::{nl_counter, nl_flow_key, nl_stats, rodata};

/// Where the kernel publishes its own BTF; the data path is verified against it.
pub const KERNEL_BTF: &str = "/sys/kernel/btf/vmlinux";

/// The kernel's internal "operation not supported" (not in libc).
const ENOTSUPP: i32 = 524;

/// The id of the XDP program attached to `iface` in any mode, if one is.
pub fn xdp_program_id(iface: &str) -> Result<Option<u32>> {
    let ifindex = sys::ifindex(iface).ok_or_else(|| Error::InterfaceNotFound {
        name: iface.to_string(),
    })?;
    let id = sys::xdp_query_id(ifindex, 0).map_err(|source| Error::Attach {
        iface: iface.to_string(),
        source,
    })?;
    Ok((id != 0).then_some(id))
}

/// How flow values are copied out of the kernel.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReadMode {
    /// With BPF_F_LOCK: under each flow's spin lock, coherent.
    Locked,
    /// Without it: packets and bytes may come from different packets. Only
    /// for showing that the lock matters.
    Unlocked,
}

impl ReadMode {
    fn flags(self) -> u64 {
        match self {
            ReadMode::Locked => libbpf_sys::BPF_F_LOCK as u64,
            ReadMode::Unlocked => 0,
        }
    }
}

/// A loaded data path: the XDP program and its maps.
///
/// Only descriptors are kept, so a `Ledger` is `Send + Sync` and may be read
/// from several threads while others drive it through test_run.
#[derive(Debug)]
pub struct Ledger {
    cfg: LedgerConfig,
    prog: OwnedFd,
    flows: OwnedFd,
    stats: OwnedFd,
    grace: sys::GraceMaps,
    ncpus: usize,
}

/// One BPF_PROG_TEST_RUN of the data path.
#[derive(Debug, Clone)]
pub struct TestRun {
    /// The program's return value (always XDP_PASS for netledger).
    pub retval: u32,
    /// Mean nanoseconds per run, as measured by the kernel.
    pub duration_ns: u32,
    /// The frame as the program left it.
    pub frame_out: Vec<u8>,
}

/// An XDP attachment; dropping it detaches the program.
#[derive(Debug)]
pub struct Attachment {
    pub iface: String,
    pub ifindex: u32,
    /// The mode actually used (never `Auto`).
    pub mode: XdpMode,
    _link: OwnedFd,
}

/// Fail early, with the fix, where loading would fail obscurely.
pub fn preflight() -> Result<()> {
    let btf = std::env::var("NETLEDGER_KERNEL_BTF").unwrap_or_else(|_| KERNEL_BTF.to_string());
    if !Path::new(&btf).exists() {
        return Err(Error::NoKernelBtf { path: btf });
    }
    if !has_bpf_capabilities() {
        return Err(Error::NotPrivileged);
    }
    Ok(())
}

/// CAP_SYS_ADMIN, or CAP_BPF with CAP_PERFMON, in the effective set.
fn has_bpf_capabilities() -> bool {
    const CAP_SYS_ADMIN: u32 = 21;
    const CAP_PERFMON: u32 = 38;
    const CAP_BPF: u32 = 39;
    let Ok(status) = fs::read_to_string("/proc/self/status") else {
        return true; // cannot tell: let the kernel decide
    };
    let Some(eff) = status
        .lines()
        .find_map(|l| l.strip_prefix("CapEff:"))
        .and_then(|h| u64::from_str_radix(h.trim(), 16).ok())
    else {
        return true;
    };
    let has = |c: u32| eff & (1u64 << c) != 0;
    has(CAP_SYS_ADMIN) || (has(CAP_BPF) && has(CAP_PERFMON))
}

fn map_err(op: &'static str, map: &'static str) -> impl FnOnce(io::Error) -> Error {
    move |source| Error::Map { op, map, source }
}

fn load_err(source: libbpf_rs::Error) -> Error {
    if source.kind() == libbpf_rs::ErrorKind::PermissionDenied {
        Error::NotPrivileged
    } else {
        Error::Load { source }
    }
}

impl Ledger {
    /// Load the data path with `cfg`. Nothing is attached yet.
    pub fn load(cfg: LedgerConfig) -> Result<Ledger> {
        cfg.validate()?;
        preflight()?;
        let mut open = ObjectBuilder::default()
            .name("netledger")
            .map_err(load_err)?
            .open_memory(crate::objects::NETLEDGER)
            .map_err(load_err)?;
        for mut map in open.maps_mut() {
            let name = map.name().to_string_lossy().into_owned();
            if name.ends_with(".rodata") {
                let data = map
                    .initial_value_mut()
                    .expect(".rodata has an initial value");
                assert!(data.len() >= std::mem::size_of::<rodata>());
                let ro = rodata {
                    nl_cfg: cfg.to_raw(),
                };
                // SAFETY: the section is at least as large as `rodata`, whose
                // layout is the section's (both come from the same BTF).
                unsafe { std::ptr::write_unaligned(data.as_mut_ptr().cast::<rodata>(), ro) };
            } else if name == "nl_flows" {
                map.set_max_entries(cfg.max_flows).map_err(load_err)?;
            }
        }
        let obj = open.load().map_err(load_err)?;

        let dup = |fd: BorrowedFd<'_>| {
            fd.try_clone_to_owned().map_err(|e| Error::Map {
                op: "dup",
                map: "object",
                source: e,
            })
        };
        let mut prog = None;
        for p in obj.progs() {
            if p.name() == "nl_xdp" {
                prog = Some(dup(p.as_fd())?);
            }
        }
        let (mut flows, mut stats) = (None, None);
        for m in obj.maps() {
            match m.name().to_str() {
                Some("nl_flows") => flows = Some(dup(m.as_fd())?),
                Some("nl_stats") => stats = Some(dup(m.as_fd())?),
                _ => {}
            }
        }
        // The object can go now: our descriptors keep program and maps alive.
        drop(obj);
        Ok(Ledger {
            cfg,
            prog: prog.expect("object has nl_xdp"),
            flows: flows.expect("object has nl_flows"),
            stats: stats.expect("object has nl_stats"),
            grace: sys::GraceMaps::create().map_err(map_err("create", "nl_grace"))?,
            ncpus: sys::possible_cpus().map_err(map_err("count CPUs", "nl_stats"))?,
        })
    }

    pub fn config(&self) -> &LedgerConfig {
        &self.cfg
    }

    /// The data path program, for test_run harnesses.
    pub fn program(&self) -> BorrowedFd<'_> {
        self.prog.as_fd()
    }

    /// The flow map, for harnesses that read it their own way.
    pub fn flow_map(&self) -> BorrowedFd<'_> {
        self.flows.as_fd()
    }

    /// Attach the data path to `iface` (XDP, ingress).
    pub fn attach_xdp(&self, iface: &str, mode: XdpMode) -> Result<Attachment> {
        let ifindex = sys::ifindex(iface).ok_or_else(|| Error::InterfaceNotFound {
            name: iface.to_string(),
        })?;
        let attempts: &[XdpMode] = match mode {
            XdpMode::Auto => &[XdpMode::Native, XdpMode::Generic],
            XdpMode::Native => &[XdpMode::Native],
            XdpMode::Generic => &[XdpMode::Generic],
        };
        let mut last = None;
        for &m in attempts {
            let flags = match m {
                XdpMode::Native => libbpf_sys::XDP_FLAGS_DRV_MODE,
                _ => libbpf_sys::XDP_FLAGS_SKB_MODE,
            };
            match sys::xdp_link(self.prog.as_fd(), ifindex, flags) {
                Ok(link) => {
                    return Ok(Attachment {
                        iface: iface.to_string(),
                        ifindex,
                        mode: m,
                        _link: link,
                    })
                }
                Err(e) => last = Some((m, e)),
            }
        }
        let (m, e) = last.expect("at least one attempt");
        Err(match e.raw_os_error() {
            Some(libc::EPERM) | Some(libc::EACCES) => Error::NotPrivileged,
            Some(libc::EOPNOTSUPP) | Some(ENOTSUPP) => Error::XdpModeUnsupported {
                iface: iface.to_string(),
                mode: m.name(),
            },
            Some(libc::EBUSY) | Some(libc::EEXIST) => Error::XdpBusy {
                iface: iface.to_string(),
            },
            Some(libc::ENODEV) => Error::InterfaceNotFound {
                name: iface.to_string(),
            },
            _ => Error::Attach {
                iface: iface.to_string(),
                source: e,
            },
        })
    }

    /// Return once every run of the data path that started before this call
    /// has finished (one RCU grace period, tens of milliseconds). After a
    /// detach, the counters read after this are final.
    pub fn wait_for_programs(&self) -> Result<()> {
        self.grace.wait().map_err(map_err("update", "nl_grace"))
    }

    /// Run the data path on `frame` `repeat` times (BPF_PROG_TEST_RUN).
    pub fn test_run(&self, frame: &[u8], repeat: u32) -> Result<TestRun> {
        test_run(self.prog.as_fd(), frame, repeat)
    }

    /// Every flow's raw key and counters. Batched; falls back to one
    /// lookup per key where the kernel has no batch ops for the map.
    pub fn raw_flows(&self, mode: ReadMode) -> Result<Vec<(nl_flow_key, nl_counter)>> {
        let mut out = Vec::new();
        match sys::lookup_batch(self.flows.as_fd(), mode.flags(), 1024, &mut out) {
            Ok(()) => Ok(out),
            Err(e)
                if matches!(
                    e.raw_os_error(),
                    Some(libc::EINVAL) | Some(ENOTSUPP) | Some(libc::EOPNOTSUPP)
                ) =>
            {
                self.raw_flows_per_element(mode)
            }
            Err(e) => Err(map_err("batch lookup", "nl_flows")(e)),
        }
    }

    /// Every flow, one syscall per key (the fallback, and a benchmark baseline).
    pub fn raw_flows_per_element(&self, mode: ReadMode) -> Result<Vec<(nl_flow_key, nl_counter)>> {
        let fd = self.flows.as_fd();
        let mut out = Vec::new();
        let mut cur: Option<nl_flow_key> = None;
        while let Some(key) =
            sys::next_key(fd, cur.as_ref()).map_err(map_err("next key", "nl_flows"))?
        {
            // A key deleted between the two calls is simply gone.
            if let Some(v) =
                sys::lookup_elem(fd, &key, mode.flags()).map_err(map_err("lookup", "nl_flows"))?
            {
                out.push((key, v));
            }
            cur = Some(key);
        }
        Ok(out)
    }

    /// The conservation buckets, summed over CPUs, from a reading in which no
    /// CPU was half-way through accounting a packet.
    pub fn buckets(&self) -> Result<Buckets> {
        const TRIES: u32 = 10_000;
        for _ in 0..TRIES {
            let per_cpu: Vec<nl_stats> = sys::lookup_percpu(self.stats.as_fd(), 0, self.ncpus)
                .map_err(map_err("lookup", "nl_stats"))?;
            if per_cpu.iter().all(|s| s.done == s.started) {
                let mut b = Buckets::default();
                for s in &per_cpu {
                    for (i, c) in s.bucket.iter().enumerate() {
                        b.0[i].add(Count::from(*c));
                    }
                }
                return Ok(b);
            }
            std::hint::spin_loop();
        }
        Err(Error::StatsUnsettled { tries: TRIES })
    }

    /// The buckets summed without waiting for settled CPUs (to show why the
    /// sequence counters matter).
    pub fn buckets_unsettled(&self) -> Result<Buckets> {
        let per_cpu: Vec<nl_stats> = sys::lookup_percpu(self.stats.as_fd(), 0, self.ncpus)
            .map_err(map_err("lookup", "nl_stats"))?;
        let mut b = Buckets::default();
        for s in &per_cpu {
            for (i, c) in s.bucket.iter().enumerate() {
                b.0[i].add(Count::from(*c));
            }
        }
        Ok(b)
    }

    /// A coherent snapshot: every flow copied under its lock, then the buckets.
    pub fn snapshot(&self) -> Result<Snapshot> {
        let at = SystemTime::now();
        let raw = self.raw_flows(ReadMode::Locked)?;
        let mut snap = Snapshot::empty(at);
        for (k, v) in raw {
            snap.flows
                .entry(FlowKey::from_raw(&k, &self.cfg))
                .or_default()
                .add(Count {
                    packets: v.packets,
                    bytes: v.bytes,
                });
        }
        snap.buckets = self.buckets()?;
        Ok(snap)
    }
}

impl Attachment {
    /// Detach now (dropping does the same).
    pub fn detach(self) {}
}

/// BPF_PROG_TEST_RUN of any XDP program: mean ns per run, the verdict, the frame.
pub(crate) fn test_run(prog: BorrowedFd<'_>, frame: &[u8], repeat: u32) -> Result<TestRun> {
    let out =
        sys::test_run(prog, frame, None, repeat).map_err(|source| Error::TestRun { source })?;
    Ok(TestRun {
        retval: out.retval,
        duration_ns: out.duration_ns,
        frame_out: out.data_out,
    })
}

/// The empty XDP program (`return XDP_PASS`): the baseline of ns/packet figures.
#[derive(Debug)]
pub struct EmptyProgram {
    prog: OwnedFd,
}

impl EmptyProgram {
    pub fn load() -> Result<Self> {
        preflight()?;
        let obj = ObjectBuilder::default()
            .open_memory(crate::objects::BENCH)
            .map_err(load_err)?
            .load()
            .map_err(load_err)?;
        let prog = obj
            .progs()
            .find(|p| p.name() == "nl_empty")
            .expect("bench object has nl_empty")
            .as_fd()
            .try_clone_to_owned()
            .map_err(|e| Error::Map {
                op: "dup",
                map: "object",
                source: e,
            })?;
        Ok(EmptyProgram { prog })
    }

    pub fn test_run(&self, frame: &[u8], repeat: u32) -> Result<TestRun> {
        test_run(self.prog.as_fd(), frame, repeat)
    }
}
