//! The few BPF calls libbpf-rs 0.27 does not offer on a bare descriptor:
//! batch walks of (per-CPU) hash maps that grow their batch on `ENOSPC` and
//! yield typed values, test runs and pins of program descriptors (libbpf-rs
//! runs and pins only programs still tied to their object), XDP links with a
//! mode flag, link and program information, and read-only mmap of an array.
//! Everything else goes through libbpf-rs (`MapHandle`, see `maps.rs`).

use std::ffi::CString;
use std::io;
use std::mem::size_of;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use crate::pod::{self, Pod};

/// libbpf returns `-errno`; turn that into an io::Error.
fn check(ret: i32) -> io::Result<i32> {
    if ret < 0 {
        Err(io::Error::from_raw_os_error(-ret))
    } else {
        Ok(ret)
    }
}

/// A descriptor libbpf just returned, owned.
fn owned(fd: i32) -> io::Result<OwnedFd> {
    let fd = check(fd)?;
    // SAFETY: libbpf returned a fresh descriptor that nothing else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

fn cstring(path: &Path) -> io::Result<CString> {
    CString::new(path.as_os_str().as_bytes())
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))
}

/// How many bytes the kernel gives each CPU's copy of a `V` in a per-CPU map.
pub fn percpu_stride<V>() -> usize {
    size_of::<V>().div_ceil(8) * 8
}

/// Every key and value of a hash map, each value copied with `elem_flags`
/// (BPF_F_LOCK: under the element's spin lock), `chunk` keys per syscall.
/// The batch is not a snapshot across keys; each element is copied
/// coherently on its own.
pub fn lookup_batch<K: Pod, V: Pod>(
    fd: BorrowedFd<'_>,
    elem_flags: u64,
    chunk: u32,
    out: &mut Vec<(K, V)>,
) -> io::Result<()> {
    let (ks, vs) = (size_of::<K>(), size_of::<V>());
    batch_walk(fd, elem_flags, chunk, ks, vs, |keys, vals, n| {
        for i in 0..n {
            out.push((
                pod::from_bytes(&keys[i * ks..]),
                pod::from_bytes(&vals[i * vs..]),
            ));
        }
    })
}

/// Every key of a per-CPU hash map with its values of every possible CPU,
/// `chunk` keys per syscall. Only exact while nothing writes the map: a
/// copy and a writer's addition are not ordered.
pub fn walk_percpu<K: Pod, V: Pod>(
    fd: BorrowedFd<'_>,
    ncpus: usize,
    chunk: u32,
    mut each: impl FnMut(K, &mut dyn Iterator<Item = V>),
) -> io::Result<()> {
    let stride = percpu_stride::<V>();
    let per_key = stride * ncpus;
    let ks = size_of::<K>();
    batch_walk(fd, 0, chunk, ks, per_key, |keys, vals, n| {
        for i in 0..n {
            let base = i * per_key;
            let mut per_cpu = (0..ncpus).map(|c| pod::from_bytes::<V>(&vals[base + c * stride..]));
            each(pod::from_bytes(&keys[i * ks..]), &mut per_cpu);
        }
    })
}

/// The batch loop of hash maps: calls `each(keys, values, n)` per batch of
/// raw bytes (`val_len` bytes of values per key), growing the batch when a
/// hash bucket does not fit in it (`ENOSPC`).
fn batch_walk(
    fd: BorrowedFd<'_>,
    elem_flags: u64,
    chunk: u32,
    key_len: usize,
    val_len: usize,
    mut each: impl FnMut(&[u8], &[u8], usize),
) -> io::Result<()> {
    let mut chunk = chunk.max(1);
    let mut keys: Vec<u8> = Vec::new();
    let mut vals: Vec<u8> = Vec::new();
    // The hash map's batch token is a bucket index (u32); give it room for more.
    let mut token_in = [0u64; 2];
    let mut token_out = [0u64; 2];
    let mut first = true;
    let opts = libbpf_sys::bpf_map_batch_opts {
        sz: size_of::<libbpf_sys::bpf_map_batch_opts>() as _,
        elem_flags,
        flags: 0,
    };
    loop {
        keys.resize(chunk as usize * key_len, 0);
        vals.resize(chunk as usize * val_len, 0);
        let mut count = chunk;
        let in_ptr = if first {
            std::ptr::null_mut()
        } else {
            token_in.as_mut_ptr().cast()
        };
        // SAFETY: the key and value buffers hold `count` keys and values of
        // the sizes the map was created with; the tokens have room for the
        // kernel's u32 bucket index; opts is a valid bpf_map_batch_opts.
        let ret = unsafe {
            libbpf_sys::bpf_map_lookup_batch(
                fd.as_raw_fd(),
                in_ptr,
                token_out.as_mut_ptr().cast(),
                keys.as_mut_ptr().cast(),
                vals.as_mut_ptr().cast(),
                &mut count,
                &opts,
            )
        };
        let done = match check(ret) {
            Ok(_) => false,
            Err(e) if e.raw_os_error() == Some(libc::ENOENT) => true,
            // A hash bucket holds more elements than fit: retry with more room.
            Err(e) if e.raw_os_error() == Some(libc::ENOSPC) && count == 0 => {
                chunk = chunk.saturating_mul(2);
                continue;
            }
            Err(e) if e.raw_os_error() == Some(libc::EINTR) && count == 0 => continue,
            Err(e) => return Err(e),
        };
        each(&keys, &vals, count as usize);
        if done {
            return Ok(());
        }
        token_in = token_out;
        first = false;
    }
}

/// Update many keys of a per-CPU map in as few syscalls as possible
/// (BPF_MAP_UPDATE_BATCH): `values` holds one value per possible CPU for
/// each key, key by key (`keys.len() * ncpus` values). libbpf-rs's batch
/// update sizes values as one CPU's.
#[cfg(feature = "lab")]
pub fn update_batch_percpu<K: Pod, V: Pod>(
    fd: BorrowedFd<'_>,
    keys: &[K],
    values: &[V],
    ncpus: usize,
) -> io::Result<()> {
    assert_eq!(
        keys.len() * ncpus,
        values.len(),
        "one value per key and CPU"
    );
    let stride = percpu_stride::<V>();
    let per_key = stride * ncpus;
    let opts = libbpf_sys::bpf_map_batch_opts {
        sz: size_of::<libbpf_sys::bpf_map_batch_opts>() as _,
        elem_flags: 0,
        flags: 0,
    };
    const CHUNK: usize = 16384;
    let mut buf = vec![0u8; per_key * CHUNK.min(keys.len())];
    for (c, chunk) in keys.chunks(CHUNK).enumerate() {
        let base = c * CHUNK * ncpus;
        for (i, v) in values[base..base + chunk.len() * ncpus].iter().enumerate() {
            buf[i * stride..i * stride + size_of::<V>()].copy_from_slice(pod::bytes_of(v));
        }
        let mut done = 0usize;
        while done < chunk.len() {
            let mut count = (chunk.len() - done) as u32;
            // SAFETY: keys[done..] holds `count` keys and buf[done * per_key..]
            // `count` per-CPU values laid out as the kernel expects.
            let ret = unsafe {
                libbpf_sys::bpf_map_update_batch(
                    fd.as_raw_fd(),
                    chunk[done..].as_ptr().cast(),
                    buf[done * per_key..].as_ptr().cast(),
                    &mut count,
                    &opts,
                )
            };
            match check(ret) {
                // On EINTR the kernel reports how many it did.
                Ok(_) => done += count as usize,
                Err(e) if e.raw_os_error() == Some(libc::EINTR) => done += count as usize,
                Err(e) => return Err(e),
            }
        }
    }
    Ok(())
}

/// What one BPF_PROG_TEST_RUN returned.
#[derive(Debug, Clone)]
#[cfg_attr(not(feature = "lab"), allow(dead_code))]
pub struct TestRunOut {
    /// The program's return value.
    pub retval: u32,
    /// Mean nanoseconds per run, as the kernel measured it.
    pub duration_ns: u32,
    /// The packet data as the program left it.
    pub data_out: Vec<u8>,
}

/// BPF_PROG_TEST_RUN: run the program `repeat` times on `data`.
pub fn test_run(prog: BorrowedFd<'_>, data: &[u8], repeat: u32) -> io::Result<TestRunOut> {
    test_run_ctx(prog, data, &[], repeat)
}

/// BPF_PROG_TEST_RUN with a context (`ctx`, e.g. a `__sk_buff`; empty for
/// none): run the program `repeat` times on `data`.
pub fn test_run_ctx(
    prog: BorrowedFd<'_>,
    data: &[u8],
    ctx: &[u8],
    repeat: u32,
) -> io::Result<TestRunOut> {
    let mut out = vec![0u8; data.len() + 256];
    let mut opts = libbpf_sys::bpf_test_run_opts {
        sz: size_of::<libbpf_sys::bpf_test_run_opts>() as _,
        data_in: data.as_ptr().cast(),
        data_size_in: data.len() as u32,
        data_out: out.as_mut_ptr().cast(),
        data_size_out: out.len() as u32,
        repeat: repeat as i32,
        ..Default::default()
    };
    if !ctx.is_empty() {
        opts.ctx_in = ctx.as_ptr().cast();
        opts.ctx_size_in = ctx.len() as u32;
    }
    // SAFETY: opts points at `data` and `ctx` (read) and `out` (written up
    // to its stated size), all alive for the call.
    check(unsafe { libbpf_sys::bpf_prog_test_run_opts(prog.as_raw_fd(), &mut opts) })?;
    out.truncate(opts.data_size_out as usize);
    Ok(TestRunOut {
        retval: opts.retval,
        duration_ns: opts.duration,
        data_out: out,
    })
}

/// Attach an XDP program through a BPF link with `flags` (the mode): it
/// detaches when the link's last descriptor closes (or its pin goes).
pub fn xdp_link(prog: BorrowedFd<'_>, ifindex: u32, flags: u32) -> io::Result<OwnedFd> {
    let opts = libbpf_sys::bpf_link_create_opts {
        sz: size_of::<libbpf_sys::bpf_link_create_opts>() as _,
        flags,
        ..Default::default()
    };
    // SAFETY: plain syscall wrapper; opts is a valid, sized bpf_link_create_opts.
    owned(unsafe {
        libbpf_sys::bpf_link_create(prog.as_raw_fd(), ifindex as i32, libbpf_sys::BPF_XDP, &opts)
    })
}

/// The driver of network interface `name` (ETHTOOL_GDRVINFO), e.g. "veth".
pub fn driver(name: &str) -> io::Result<String> {
    const ETHTOOL_GDRVINFO: u32 = 0x3;
    // struct ethtool_drvinfo: cmd, driver[32], version[32], fw_version[32],
    // bus_info[32], erom_version[32], reserved2[12], and five u32 counts.
    let mut info = [0u8; 196];
    info[0..4].copy_from_slice(&ETHTOOL_GDRVINFO.to_ne_bytes());
    // SAFETY: an all-zero ifreq is valid.
    let mut ifr: libc::ifreq = unsafe { std::mem::zeroed() };
    if name.len() >= ifr.ifr_name.len() {
        return Err(io::Error::from_raw_os_error(libc::ENODEV));
    }
    for (d, s) in ifr.ifr_name.iter_mut().zip(name.bytes()) {
        *d = s as libc::c_char;
    }
    ifr.ifr_ifru.ifru_data = info.as_mut_ptr().cast();
    // SAFETY: a plain socket(2) call; the descriptor is owned right after.
    let fd = unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: fd was just returned by socket(2) and nothing else owns it.
    let sock = unsafe { OwnedFd::from_raw_fd(fd) };
    // SAFETY: ifr names the interface and points at `info`, which is large
    // enough for the kernel's struct ethtool_drvinfo and outlives the call.
    if unsafe { libc::ioctl(sock.as_raw_fd(), libc::SIOCETHTOOL, &mut ifr) } < 0 {
        return Err(io::Error::last_os_error());
    }
    let driver = &info[4..36];
    let end = driver.iter().position(|&b| b == 0).unwrap_or(driver.len());
    Ok(String::from_utf8_lossy(&driver[..end]).into_owned())
}

/// Attach a tc program through a tcx link (`BPF_TCX_INGRESS` or
/// `BPF_TCX_EGRESS`), after whatever is attached there already; it detaches
/// when the link's last descriptor (or pin) goes. Kernels before 6.6 say
/// EINVAL.
pub fn tcx_link(prog: BorrowedFd<'_>, ifindex: u32, attach_type: u32) -> io::Result<OwnedFd> {
    let opts = libbpf_sys::bpf_link_create_opts {
        sz: size_of::<libbpf_sys::bpf_link_create_opts>() as _,
        ..Default::default()
    };
    // SAFETY: plain syscall wrapper; opts is a valid, sized bpf_link_create_opts.
    owned(unsafe {
        libbpf_sys::bpf_link_create(prog.as_raw_fd(), ifindex as i32, attach_type, &opts)
    })
}

/// Remove the tc filter `handle`/`priority` at `point` (BPF_TC_INGRESS or
/// BPF_TC_EGRESS) of `ifindex`'s clsact qdisc.
pub fn tc_detach(ifindex: u32, point: u32, handle: u32, priority: u32) -> io::Result<()> {
    let hook = libbpf_sys::bpf_tc_hook {
        sz: size_of::<libbpf_sys::bpf_tc_hook>() as _,
        ifindex: ifindex as i32,
        attach_point: point,
        ..Default::default()
    };
    let opts = libbpf_sys::bpf_tc_opts {
        sz: size_of::<libbpf_sys::bpf_tc_opts>() as _,
        handle,
        priority,
        ..Default::default()
    };
    // SAFETY: both structs are valid and sized; libbpf only reads them.
    check(unsafe { libbpf_sys::bpf_tc_detach(&hook, &opts) }).map(drop)
}

/// Create the clsact qdisc of `ifindex`: true if this call made it, false
/// if one was there already (libbpf-rs's `TcHook::create` says Ok for both).
pub fn create_clsact(ifindex: u32) -> io::Result<bool> {
    let mut hook = libbpf_sys::bpf_tc_hook {
        sz: size_of::<libbpf_sys::bpf_tc_hook>() as _,
        ifindex: ifindex as i32,
        attach_point: libbpf_sys::BPF_TC_INGRESS,
        ..Default::default()
    };
    // SAFETY: hook is a valid, sized bpf_tc_hook; libbpf only reads it.
    match check(unsafe { libbpf_sys::bpf_tc_hook_create(&mut hook) }) {
        Ok(_) => Ok(true),
        Err(e) if e.raw_os_error() == Some(libc::EEXIST) => Ok(false),
        Err(e) => Err(e),
    }
}

/// The name of the program with kernel id `id`.
pub fn prog_name_by_id(id: u32) -> io::Result<String> {
    // SAFETY: plain syscall wrapper; the descriptor is owned right after.
    let fd = owned(unsafe { libbpf_sys::bpf_prog_get_fd_by_id(id) })?;
    Ok(prog_info(fd.as_fd())?.1)
}

/// Delete the clsact qdisc of `ifindex` if no filter is left on it (at
/// ingress or egress); keep it otherwise.
pub fn destroy_clsact_if_empty(ifindex: u32) -> io::Result<bool> {
    // TC_H_MAKE(TC_H_CLSACT, TC_H_MIN_INGRESS / TC_H_MIN_EGRESS).
    for parent in [0xFFFF_FFF2u32, 0xFFFF_FFF3] {
        if tc_filters(ifindex, parent)? > 0 {
            return Ok(false);
        }
    }
    let hook = libbpf_sys::bpf_tc_hook {
        sz: size_of::<libbpf_sys::bpf_tc_hook>() as _,
        ifindex: ifindex as i32,
        attach_point: libbpf_sys::BPF_TC_INGRESS | libbpf_sys::BPF_TC_EGRESS,
        ..Default::default()
    };
    // SAFETY: hook is a valid, sized bpf_tc_hook; libbpf only reads it.
    check(unsafe { libbpf_sys::bpf_tc_hook_destroy(&hook as *const _ as *mut _) })?;
    Ok(true)
}

/// How many tc filters hang at `parent` of `ifindex` (an RTM_GETTFILTER dump
/// over rtnetlink).
fn tc_filters(ifindex: u32, parent: u32) -> io::Result<usize> {
    const RTM_NEWTFILTER: u16 = 44;
    const RTM_GETTFILTER: u16 = 46;
    const NLMSG_ERROR: u16 = 2;
    const NLMSG_DONE: u16 = 3;
    // nlmsghdr (16 bytes) then tcmsg (20 bytes).
    let mut req = [0u8; 36];
    req[0..4].copy_from_slice(&36u32.to_ne_bytes());
    req[4..6].copy_from_slice(&RTM_GETTFILTER.to_ne_bytes());
    let flags = (libc::NLM_F_REQUEST | libc::NLM_F_DUMP) as u16;
    req[6..8].copy_from_slice(&flags.to_ne_bytes());
    req[8..12].copy_from_slice(&1u32.to_ne_bytes());
    req[16] = libc::AF_UNSPEC as u8;
    req[20..24].copy_from_slice(&(ifindex as i32).to_ne_bytes());
    req[28..32].copy_from_slice(&parent.to_ne_bytes());
    // SAFETY: a plain socket(2) call; the descriptor is owned right after.
    let fd = unsafe {
        libc::socket(
            libc::AF_NETLINK,
            libc::SOCK_RAW | libc::SOCK_CLOEXEC,
            libc::NETLINK_ROUTE,
        )
    };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: fd was just returned by socket(2) and nothing else owns it.
    let sock = unsafe { OwnedFd::from_raw_fd(fd) };
    // SAFETY: req is a valid buffer of its length; the kernel fills in the
    // destination (pid 0) from a zeroed sockaddr_nl.
    let sent = unsafe {
        let mut addr: libc::sockaddr_nl = std::mem::zeroed();
        addr.nl_family = libc::AF_NETLINK as u16;
        libc::sendto(
            sock.as_raw_fd(),
            req.as_ptr().cast(),
            req.len(),
            0,
            (&addr as *const libc::sockaddr_nl).cast(),
            size_of::<libc::sockaddr_nl>() as u32,
        )
    };
    if sent < 0 {
        return Err(io::Error::last_os_error());
    }
    let mut buf = vec![0u8; 32 * 1024];
    let mut count = 0;
    loop {
        // SAFETY: buf is writable for its whole length.
        let n = unsafe { libc::recv(sock.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len(), 0) };
        if n < 0 {
            return Err(io::Error::last_os_error());
        }
        let mut off = 0usize;
        let n = n as usize;
        while off + 16 <= n {
            let len = u32::from_ne_bytes(buf[off..off + 4].try_into().expect("4 bytes")) as usize;
            let ty = u16::from_ne_bytes(buf[off + 4..off + 6].try_into().expect("2 bytes"));
            match ty {
                NLMSG_DONE => return Ok(count),
                NLMSG_ERROR => {
                    let errno =
                        i32::from_ne_bytes(buf[off + 16..off + 20].try_into().expect("4 bytes"));
                    if errno == 0 {
                        return Ok(count);
                    }
                    // No clsact qdisc at all: no filters either.
                    if -errno == libc::EINVAL || -errno == libc::ENOENT {
                        return Ok(0);
                    }
                    return Err(io::Error::from_raw_os_error(-errno));
                }
                RTM_NEWTFILTER => count += 1,
                _ => {}
            }
            if len < 16 {
                break;
            }
            off += len.div_ceil(4) * 4;
        }
    }
}

/// The id of the XDP program attached to `ifindex` in `mode_flags` (0: any
/// mode), if one is.
pub fn xdp_query_id(ifindex: u32, mode_flags: u32) -> io::Result<u32> {
    let mut id = 0u32;
    // SAFETY: `id` is a valid place for the kernel to write a u32.
    check(unsafe { libbpf_sys::bpf_xdp_query_id(ifindex as i32, mode_flags as i32, &mut id) })?;
    Ok(id)
}

/// Pin a BPF object (program, map, link) at `path` in bpffs.
pub fn obj_pin(fd: BorrowedFd<'_>, path: &Path) -> io::Result<()> {
    let c = cstring(path)?;
    // SAFETY: c is a NUL-terminated path alive for the call.
    check(unsafe { libbpf_sys::bpf_obj_pin(fd.as_raw_fd(), c.as_ptr()) }).map(drop)
}

/// Open the BPF object pinned at `path`.
pub fn obj_get(path: &Path) -> io::Result<OwnedFd> {
    let c = cstring(path)?;
    // SAFETY: c is a NUL-terminated path alive for the call.
    owned(unsafe { libbpf_sys::bpf_obj_get(c.as_ptr()) })
}

/// A program's kernel id and name.
pub fn prog_info(fd: BorrowedFd<'_>) -> io::Result<(u32, String)> {
    let mut info = libbpf_sys::bpf_prog_info::default();
    let mut len = size_of::<libbpf_sys::bpf_prog_info>() as u32;
    // SAFETY: info is a bpf_prog_info of `len` bytes; no out-pointers are set in it.
    check(unsafe { libbpf_sys::bpf_prog_get_info_by_fd(fd.as_raw_fd(), &mut info, &mut len) })?;
    let name: Vec<u8> = info
        .name
        .iter()
        .take_while(|&&c| c != 0)
        .map(|&c| c as u8)
        .collect();
    Ok((info.id, String::from_utf8_lossy(&name).into_owned()))
}

/// What the kernel says of a link: its program's id and, for XDP and tcx
/// links, the interface it is attached to (0 once the interface is gone).
pub fn link_info(fd: BorrowedFd<'_>) -> io::Result<(u32, u32)> {
    let mut info = libbpf_sys::bpf_link_info::default();
    let mut len = size_of::<libbpf_sys::bpf_link_info>() as u32;
    // SAFETY: info is a bpf_link_info of `len` bytes; no out-pointers are set in it.
    check(unsafe { libbpf_sys::bpf_link_get_info_by_fd(fd.as_raw_fd(), &mut info, &mut len) })?;
    let ifindex = match info.type_ {
        libbpf_sys::BPF_LINK_TYPE_XDP => {
            // SAFETY: the kernel filled the xdp member for an XDP link.
            unsafe { info.__bindgen_anon_1.xdp.ifindex }
        }
        libbpf_sys::BPF_LINK_TYPE_TCX => {
            // SAFETY: the kernel filled the tcx member for a tcx link.
            unsafe { info.__bindgen_anon_1.tcx.ifindex }
        }
        _ => 0,
    };
    Ok((info.prog_id, ifindex))
}

/// A read-only mapping of a BPF_F_MMAPABLE array map's values.
pub struct MappedArray {
    ptr: *const u8,
    len: usize,
    entries: usize,
    value_size: usize,
}

// SAFETY: the mapping is read-only, owned by this struct, and lives until
// it drops; reads of it from several threads are plain loads.
unsafe impl Send for MappedArray {}
// SAFETY: as above.
unsafe impl Sync for MappedArray {}

impl MappedArray {
    /// Map `entries` values of `V` (the kernel lays them out contiguously,
    /// each rounded up to 8 bytes).
    pub fn map<V: Pod>(fd: BorrowedFd<'_>, entries: usize) -> io::Result<MappedArray> {
        assert_eq!(size_of::<V>() % 8, 0, "values are 8-byte multiples");
        // SAFETY: sysconf has no preconditions.
        let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) } as usize;
        let len = (entries * size_of::<V>()).div_ceil(page) * page;
        // SAFETY: a fresh shared read-only mapping of the map's fd; the
        // kernel checks the length against the map.
        let ptr = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ,
                libc::MAP_SHARED,
                fd.as_raw_fd(),
                0,
            )
        };
        if ptr == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        Ok(MappedArray {
            ptr: ptr as *const u8,
            len,
            entries,
            value_size: size_of::<V>(),
        })
    }

    /// Copies of the first `n` values.
    pub fn read<V: Pod>(&self, n: usize) -> Vec<V> {
        assert_eq!(size_of::<V>(), self.value_size, "the mapped value type");
        let n = n.min(self.entries);
        (0..n)
            .map(|i| {
                // SAFETY: i < entries, so the value lies inside the mapping;
                // values are 8-byte aligned (page-aligned base, 8-byte
                // multiples); any bit pattern is a V (Pod). Volatile: the
                // kernel writes these between our reads.
                unsafe { std::ptr::read_volatile(self.ptr.add(i * size_of::<V>()).cast::<V>()) }
            })
            .collect()
    }
}

impl Drop for MappedArray {
    fn drop(&mut self) {
        // SAFETY: ptr/len are exactly what mmap returned; nothing borrows
        // the mapping past this point (read() returns copies).
        unsafe { libc::munmap(self.ptr as *mut libc::c_void, self.len) };
    }
}

impl std::fmt::Debug for MappedArray {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "MappedArray({} entries)", self.entries)
    }
}
