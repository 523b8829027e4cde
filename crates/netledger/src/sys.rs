//! Thin, typed wrappers over the libbpf calls the library needs and
//! libbpf-rs does not expose with every flag (BPF_F_LOCK as elem_flags,
//! test_run's repeat and duration, XDP links with a mode).

use std::io;
use std::mem::{size_of, MaybeUninit};
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd};

/// libbpf returns `-errno`; turn that into an io::Error.
fn check(ret: i32) -> io::Result<i32> {
    if ret < 0 {
        Err(io::Error::from_raw_os_error(-ret))
    } else {
        Ok(ret)
    }
}

/// A plain-old-data type that may be filled from kernel bytes.
///
/// # Safety
/// Every bit pattern must be a valid value (no references, enums or bools).
pub unsafe trait Pod: Copy + Default {}
unsafe impl Pod for crate::types::nl_flow_key {}
unsafe impl Pod for crate::types::nl_slot {}
unsafe impl Pod for crate::types::nl_record {}
unsafe impl Pod for crate::types::nl_config {}
unsafe impl Pod for crate::types::nl_stats {}
unsafe impl Pod for u32 {}
unsafe impl Pod for u64 {}

/// Every key and value of a hash map, each value copied with `elem_flags`
/// (BPF_F_LOCK: under the element's spin lock). The batch is not a snapshot
/// across keys; each element is copied coherently on its own.
pub fn lookup_batch<K: Pod, V: Pod>(
    fd: BorrowedFd<'_>,
    elem_flags: u64,
    chunk: u32,
    out: &mut Vec<(K, V)>,
) -> io::Result<()> {
    batch_walk(
        fd,
        false,
        elem_flags,
        chunk,
        size_of::<K>(),
        size_of::<V>(),
        |keys, vals, n| {
            for i in 0..n {
                // SAFETY: the buffers hold n keys and n values of the map's sizes,
                // which are K's and V's; read_unaligned copes with the byte buffer.
                let k = unsafe {
                    std::ptr::read_unaligned(keys[i * size_of::<K>()..].as_ptr().cast::<K>())
                };
                let v = unsafe {
                    std::ptr::read_unaligned(vals[i * size_of::<V>()..].as_ptr().cast::<V>())
                };
                out.push((k, v));
            }
        },
    )
}

/// The batch loop shared by lookups and lookups-and-deletes of hash maps:
/// calls `each(keys, values, n)` per batch of raw bytes (`val_len` bytes of
/// values per key), growing the batch when a hash bucket does not fit in it.
fn batch_walk(
    fd: BorrowedFd<'_>,
    delete: bool,
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
    let call = if delete {
        libbpf_sys::bpf_map_lookup_and_delete_batch
    } else {
        libbpf_sys::bpf_map_lookup_batch
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
        let ret = unsafe {
            call(
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

/// One element, copied with `flags` (BPF_F_LOCK: under its spin lock).
pub fn lookup_elem<K: Pod, V: Pod>(
    fd: BorrowedFd<'_>,
    key: &K,
    flags: u64,
) -> io::Result<Option<V>> {
    let mut val = V::default();
    let ret = unsafe {
        libbpf_sys::bpf_map_lookup_elem_flags(
            fd.as_raw_fd(),
            (key as *const K).cast(),
            (&mut val as *mut V).cast(),
            flags,
        )
    };
    match check(ret) {
        Ok(_) => Ok(Some(val)),
        Err(e) if e.raw_os_error() == Some(libc::ENOENT) => Ok(None),
        Err(e) => Err(e),
    }
}

/// Copy one element and delete it (BPF_MAP_LOOKUP_AND_DELETE_ELEM with
/// `flags`); None if it is gone.
pub fn lookup_and_delete_elem<K: Pod, V: Pod>(
    fd: BorrowedFd<'_>,
    key: &K,
    flags: u64,
) -> io::Result<Option<V>> {
    let mut val = V::default();
    let ret = unsafe {
        libbpf_sys::bpf_map_lookup_and_delete_elem_flags(
            fd.as_raw_fd(),
            (key as *const K).cast(),
            (&mut val as *mut V).cast(),
            flags,
        )
    };
    match check(ret) {
        Ok(_) => Ok(Some(val)),
        Err(e) if e.raw_os_error() == Some(libc::ENOENT) => Ok(None),
        Err(e) => Err(e),
    }
}

/// Every key of a map, one BPF_MAP_GET_NEXT_KEY at a time.
pub fn all_keys<K: Pod>(fd: BorrowedFd<'_>) -> io::Result<Vec<K>> {
    let mut keys = Vec::new();
    while let Some(k) = next_key(fd, keys.last())? {
        keys.push(k);
    }
    Ok(keys)
}

/// The key after `key` (the first key for None); None at the end.
pub fn next_key<K: Pod>(fd: BorrowedFd<'_>, key: Option<&K>) -> io::Result<Option<K>> {
    let mut next = K::default();
    let cur = key.map_or(std::ptr::null(), |k| (k as *const K).cast());
    let ret = unsafe {
        libbpf_sys::bpf_map_get_next_key(fd.as_raw_fd(), cur, (&mut next as *mut K).cast())
    };
    match check(ret) {
        Ok(_) => Ok(Some(next)),
        Err(e) if e.raw_os_error() == Some(libc::ENOENT) => Ok(None),
        Err(e) => Err(e),
    }
}

/// The values of every possible CPU for one key of a per-CPU map.
pub fn lookup_percpu<V: Pod>(fd: BorrowedFd<'_>, key: u32, ncpus: usize) -> io::Result<Vec<V>> {
    // The kernel rounds each CPU's value up to 8 bytes.
    let stride = size_of::<V>().div_ceil(8) * 8;
    let mut buf = vec![0u8; stride * ncpus];
    let ret = unsafe {
        libbpf_sys::bpf_map_lookup_elem(
            fd.as_raw_fd(),
            (&key as *const u32).cast(),
            buf.as_mut_ptr().cast(),
        )
    };
    check(ret)?;
    Ok((0..ncpus)
        .map(|i| unsafe { std::ptr::read_unaligned(buf[i * stride..].as_ptr().cast::<V>()) })
        .collect())
}

/// Update one element with `flags` (BPF_ANY, BPF_NOEXIST, BPF_EXIST, BPF_F_LOCK).
pub fn update_elem<K: Pod, V: Pod>(
    fd: BorrowedFd<'_>,
    key: &K,
    val: &V,
    flags: u64,
) -> io::Result<()> {
    check(unsafe {
        libbpf_sys::bpf_map_update_elem(
            fd.as_raw_fd(),
            (key as *const K).cast(),
            (val as *const V).cast(),
            flags,
        )
    })
    .map(drop)
}

/// Set the values of every possible CPU for one key of a per-CPU map
/// (`values` holds one per possible CPU).
pub fn update_percpu<V: Pod>(fd: BorrowedFd<'_>, key: u32, values: &[V]) -> io::Result<()> {
    let stride = size_of::<V>().div_ceil(8) * 8;
    let mut buf = vec![0u8; stride * values.len()];
    for (i, v) in values.iter().enumerate() {
        unsafe { std::ptr::write_unaligned(buf[i * stride..].as_mut_ptr().cast::<V>(), *v) };
    }
    check(unsafe {
        libbpf_sys::bpf_map_update_elem(
            fd.as_raw_fd(),
            (&key as *const u32).cast(),
            buf.as_ptr().cast(),
            0,
        )
    })
    .map(drop)
}

/// Take every element out of a per-CPU hash map (BPF_MAP_LOOKUP_AND_DELETE_BATCH),
/// `chunk` keys per syscall: each key with its values of every possible CPU.
/// Only exact when nothing writes the map meanwhile (an element is copied,
/// then unlinked; a writer holding it would add to a deleted element).
pub fn lookup_and_delete_batch_percpu<K: Pod, V: Pod>(
    fd: BorrowedFd<'_>,
    ncpus: usize,
    chunk: u32,
    mut each: impl FnMut(K, &mut dyn Iterator<Item = V>),
) -> io::Result<()> {
    // The kernel rounds each CPU's value up to 8 bytes.
    let stride = size_of::<V>().div_ceil(8) * 8;
    let per_key = stride * ncpus;
    batch_walk(
        fd,
        true,
        0,
        chunk,
        size_of::<K>(),
        per_key,
        |keys, vals, n| {
            for i in 0..n {
                // SAFETY: as in lookup_batch; each key has ncpus values, stride apart.
                let key = unsafe {
                    std::ptr::read_unaligned(keys[i * size_of::<K>()..].as_ptr().cast::<K>())
                };
                let base = i * per_key;
                let mut per_cpu = (0..ncpus).map(|c| unsafe {
                    std::ptr::read_unaligned(vals[base + c * stride..].as_ptr().cast::<V>())
                });
                each(key, &mut per_cpu);
            }
        },
    )
}

/// Push `value` onto a BPF queue map.
pub fn queue_push(fd: BorrowedFd<'_>, value: u32) -> io::Result<()> {
    check(unsafe {
        libbpf_sys::bpf_map_update_elem(
            fd.as_raw_fd(),
            std::ptr::null(),
            (&value as *const u32).cast(),
            0,
        )
    })
    .map(drop)
}

/// Number of possible CPUs (the length of a per-CPU value).
pub fn possible_cpus() -> io::Result<usize> {
    check(unsafe { libbpf_sys::libbpf_num_possible_cpus() }).map(|n| n as usize)
}

pub struct TestRunOut {
    pub retval: u32,
    pub duration_ns: u32,
    pub data_out: Vec<u8>,
}

/// BPF_PROG_TEST_RUN: run the program `repeat` times on `data`.
pub fn test_run(
    prog: BorrowedFd<'_>,
    data: &[u8],
    ctx: Option<&[u8]>,
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
    if let Some(ctx) = ctx {
        opts.ctx_in = ctx.as_ptr().cast();
        opts.ctx_size_in = ctx.len() as u32;
    }
    check(unsafe { libbpf_sys::bpf_prog_test_run_opts(prog.as_raw_fd(), &mut opts) })?;
    out.truncate(opts.data_size_out as usize);
    Ok(TestRunOut {
        retval: opts.retval,
        duration_ns: opts.duration,
        data_out: out,
    })
}

/// Attach an XDP program through a BPF link (it detaches when the link's
/// last descriptor closes, so a crash cannot leave it behind).
pub fn xdp_link(prog: BorrowedFd<'_>, ifindex: u32, flags: u32) -> io::Result<OwnedFd> {
    let mut opts: libbpf_sys::bpf_link_create_opts = unsafe { MaybeUninit::zeroed().assume_init() };
    opts.sz = size_of::<libbpf_sys::bpf_link_create_opts>() as _;
    opts.flags = flags;
    let fd = check(unsafe {
        libbpf_sys::bpf_link_create(prog.as_raw_fd(), ifindex as i32, libbpf_sys::BPF_XDP, &opts)
    })?;
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// The id of the XDP program attached to `ifindex` in `mode` (0 if none).
pub fn xdp_query_id(ifindex: u32, mode_flags: u32) -> io::Result<u32> {
    let mut id = 0u32;
    check(unsafe { libbpf_sys::bpf_xdp_query_id(ifindex as i32, mode_flags as i32, &mut id) })?;
    Ok(id)
}

/// The interface index of `name` in this thread's network namespace.
pub fn ifindex(name: &str) -> Option<u32> {
    let c = std::ffi::CString::new(name).ok()?;
    let idx = unsafe { libc::if_nametoindex(c.as_ptr()) };
    (idx != 0).then_some(idx)
}

/// A one-slot ARRAY_OF_MAPS and an inner map for it: updating the slot from
/// the syscall returns only after an RCU grace period (maybe_wait_bpf_programs
/// in kernel/bpf/syscall.c), i.e. after every XDP/TC run that had started.
pub struct GraceMaps {
    outer: OwnedFd,
    inner: OwnedFd,
}

impl GraceMaps {
    pub fn create() -> io::Result<GraceMaps> {
        let create = |ty, name: &std::ffi::CStr, opts: &libbpf_sys::bpf_map_create_opts| {
            check(unsafe { libbpf_sys::bpf_map_create(ty, name.as_ptr(), 4, 4, 1, opts) })
                .map(|fd| unsafe { OwnedFd::from_raw_fd(fd) })
        };
        let mut opts = libbpf_sys::bpf_map_create_opts {
            sz: size_of::<libbpf_sys::bpf_map_create_opts>() as _,
            ..Default::default()
        };
        let inner = create(libbpf_sys::BPF_MAP_TYPE_ARRAY, c"nl_grace_inner", &opts)?;
        opts.inner_map_fd = inner.as_raw_fd() as u32;
        let outer = create(libbpf_sys::BPF_MAP_TYPE_ARRAY_OF_MAPS, c"nl_grace", &opts)?;
        Ok(GraceMaps { outer, inner })
    }

    /// Wait for an RCU grace period.
    pub fn wait(&self) -> io::Result<()> {
        let key = 0u32;
        let val = self.inner.as_raw_fd() as u32;
        check(unsafe {
            libbpf_sys::bpf_map_update_elem(
                self.outer.as_raw_fd(),
                (&key as *const u32).cast(),
                (&val as *const u32).cast(),
                0,
            )
        })
        .map(drop)
    }
}

impl std::fmt::Debug for GraceMaps {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("GraceMaps")
    }
}

/// Pin a BPF object (program, map) at `path` in bpffs.
pub fn obj_pin(fd: BorrowedFd<'_>, path: &std::path::Path) -> io::Result<()> {
    let c = cstring(path)?;
    check(unsafe { libbpf_sys::bpf_obj_pin(fd.as_raw_fd(), c.as_ptr()) }).map(drop)
}

/// Open the BPF object pinned at `path`.
pub fn obj_get(path: &std::path::Path) -> io::Result<OwnedFd> {
    let c = cstring(path)?;
    let fd = check(unsafe { libbpf_sys::bpf_obj_get(c.as_ptr()) })?;
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

fn cstring(path: &std::path::Path) -> io::Result<std::ffi::CString> {
    use std::os::unix::ffi::OsStrExt;
    std::ffi::CString::new(path.as_os_str().as_bytes())
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))
}

/// What the kernel says about a map: (type, key size, value size, max entries, name).
pub fn map_info(fd: BorrowedFd<'_>) -> io::Result<(u32, u32, u32, u32, String)> {
    let mut info: libbpf_sys::bpf_map_info = unsafe { MaybeUninit::zeroed().assume_init() };
    let mut len = size_of::<libbpf_sys::bpf_map_info>() as u32;
    check(unsafe { libbpf_sys::bpf_map_get_info_by_fd(fd.as_raw_fd(), &mut info, &mut len) })?;
    let name: Vec<u8> = info
        .name
        .iter()
        .take_while(|&&c| c != 0)
        .map(|&c| c as u8)
        .collect();
    Ok((
        info.type_,
        info.key_size,
        info.value_size,
        info.max_entries,
        String::from_utf8_lossy(&name).into_owned(),
    ))
}

/// The kernel id and name of a program.
pub fn prog_info(fd: BorrowedFd<'_>) -> io::Result<(u32, String)> {
    let mut info: libbpf_sys::bpf_prog_info = unsafe { MaybeUninit::zeroed().assume_init() };
    let mut len = size_of::<libbpf_sys::bpf_prog_info>() as u32;
    check(unsafe { libbpf_sys::bpf_prog_get_info_by_fd(fd.as_raw_fd(), &mut info, &mut len) })?;
    let name: Vec<u8> = info
        .name
        .iter()
        .take_while(|&&c| c != 0)
        .map(|&c| c as u8)
        .collect();
    Ok((info.id, String::from_utf8_lossy(&name).into_owned()))
}

/// One value of a single-element array map (key 0), e.g. a `.rodata`.
pub fn lookup_first<V: Pod>(fd: BorrowedFd<'_>) -> io::Result<V> {
    lookup_elem::<u32, V>(fd, &0, 0)?.ok_or_else(|| io::Error::from_raw_os_error(libc::ENOENT))
}

/// Update many elements in as few syscalls as possible (BPF_MAP_UPDATE_BATCH).
pub fn update_batch<K: Pod, V: Pod>(
    fd: BorrowedFd<'_>,
    keys: &[K],
    vals: &[V],
    elem_flags: u64,
) -> io::Result<()> {
    assert_eq!(keys.len(), vals.len());
    // SAFETY: V is plain data; the slice is viewed as its bytes.
    let bytes = unsafe {
        std::slice::from_raw_parts(vals.as_ptr().cast::<u8>(), std::mem::size_of_val(vals))
    };
    update_batch_raw(fd, keys, bytes, size_of::<V>(), elem_flags)
}

/// The update-batch loop: `vals` holds `val_len` bytes per key.
fn update_batch_raw<K: Pod>(
    fd: BorrowedFd<'_>,
    keys: &[K],
    vals: &[u8],
    val_len: usize,
    elem_flags: u64,
) -> io::Result<()> {
    let opts = libbpf_sys::bpf_map_batch_opts {
        sz: size_of::<libbpf_sys::bpf_map_batch_opts>() as _,
        elem_flags,
        flags: 0,
    };
    let mut done = 0usize;
    while done < keys.len() {
        let mut count = (keys.len() - done).min(65536) as u32;
        let ret = unsafe {
            libbpf_sys::bpf_map_update_batch(
                fd.as_raw_fd(),
                keys[done..].as_ptr().cast(),
                vals[done * val_len..].as_ptr().cast(),
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
    Ok(())
}

/// Pop a value from a BPF queue map; None when it is empty.
pub fn queue_pop(fd: BorrowedFd<'_>) -> io::Result<Option<u32>> {
    let mut v = 0u32;
    let ret = unsafe {
        libbpf_sys::bpf_map_lookup_and_delete_elem(
            fd.as_raw_fd(),
            std::ptr::null(),
            (&mut v as *mut u32).cast(),
        )
    };
    match check(ret) {
        Ok(_) => Ok(Some(v)),
        Err(e) if e.raw_os_error() == Some(libc::ENOENT) => Ok(None),
        Err(e) => Err(e),
    }
}

/// A read-only mapping of a BPF_F_MMAPABLE array map's values.
pub struct MappedArray {
    ptr: *const u8,
    len: usize,
    entries: usize,
}

// SAFETY: the mapping is read-only and lives as long as the struct.
unsafe impl Send for MappedArray {}
unsafe impl Sync for MappedArray {}

impl MappedArray {
    /// Map `entries` values of `V` (the kernel lays them out contiguously,
    /// each rounded up to 8 bytes).
    pub fn map<V: Pod>(fd: BorrowedFd<'_>, entries: usize) -> io::Result<MappedArray> {
        assert_eq!(size_of::<V>() % 8, 0, "values are 8-byte multiples");
        let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) } as usize;
        let len = (entries * size_of::<V>()).div_ceil(page) * page;
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
        })
    }

    /// Copies of the first `n` values.
    pub fn read<V: Pod>(&self, n: usize) -> Vec<V> {
        let n = n.min(self.entries);
        (0..n)
            .map(|i| unsafe {
                std::ptr::read_volatile(self.ptr.add(i * size_of::<V>()).cast::<V>())
            })
            .collect()
    }
}

impl Drop for MappedArray {
    fn drop(&mut self) {
        unsafe { libc::munmap(self.ptr as *mut libc::c_void, self.len) };
    }
}

impl std::fmt::Debug for MappedArray {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "MappedArray({} entries)", self.entries)
    }
}

/// Update many keys of a per-CPU map in as few syscalls as possible
/// (BPF_MAP_UPDATE_BATCH): `values` holds one value per possible CPU for
/// each key, key by key (`keys.len() * ncpus` values).
pub fn update_batch_percpu<K: Pod, V: Pod>(
    fd: BorrowedFd<'_>,
    keys: &[K],
    values: &[V],
    ncpus: usize,
) -> io::Result<()> {
    assert_eq!(keys.len() * ncpus, values.len());
    // The kernel rounds each CPU's value up to 8 bytes.
    let stride = size_of::<V>().div_ceil(8) * 8;
    let per_key = stride * ncpus;
    const CHUNK: usize = 16384;
    let mut buf = vec![0u8; per_key * CHUNK.min(keys.len())];
    for (c, chunk) in keys.chunks(CHUNK).enumerate() {
        let base = c * CHUNK;
        for i in 0..chunk.len() * ncpus {
            // SAFETY: i * stride + size_of::<V>() is within buf (chunk.len() <= CHUNK).
            unsafe {
                std::ptr::write_unaligned(
                    buf[i * stride..].as_mut_ptr().cast::<V>(),
                    values[base * ncpus + i],
                )
            };
        }
        update_batch_raw(fd, chunk, &buf, per_key, 0)?;
    }
    Ok(())
}

/// The ids of the maps a program uses (directly: not the inner maps of a
/// map-in-map).
pub fn prog_map_ids(fd: BorrowedFd<'_>) -> io::Result<Vec<u32>> {
    let mut info: libbpf_sys::bpf_prog_info = unsafe { MaybeUninit::zeroed().assume_init() };
    let mut len = size_of::<libbpf_sys::bpf_prog_info>() as u32;
    check(unsafe { libbpf_sys::bpf_prog_get_info_by_fd(fd.as_raw_fd(), &mut info, &mut len) })?;
    let n = info.nr_map_ids;
    let mut ids = vec![0u32; n as usize];
    let mut info: libbpf_sys::bpf_prog_info = unsafe { MaybeUninit::zeroed().assume_init() };
    info.nr_map_ids = n;
    info.map_ids = ids.as_mut_ptr() as u64;
    let mut len = size_of::<libbpf_sys::bpf_prog_info>() as u32;
    check(unsafe { libbpf_sys::bpf_prog_get_info_by_fd(fd.as_raw_fd(), &mut info, &mut len) })?;
    ids.truncate(info.nr_map_ids.min(n) as usize);
    Ok(ids)
}

/// A descriptor of the map with kernel id `id`.
pub fn map_fd_by_id(id: u32) -> io::Result<OwnedFd> {
    let fd = check(unsafe { libbpf_sys::bpf_map_get_fd_by_id(id) })?;
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}
