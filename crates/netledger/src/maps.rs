//! Typed access to maps through libbpf-rs's owned `MapHandle`: keys and
//! values are the `Pod` types of `netledger.h`, never raw byte slices.

use libbpf_rs::{MapCore, MapFlags, MapHandle, MapType};

use crate::pod::{self, Pod};

/// Lookups and updates of typed keys and values.
pub(crate) trait TypedMap {
    /// The value of `key`, copied with `flags` (LOCK: under its spin lock).
    fn get<K: Pod, V: Pod>(&self, key: &K, flags: MapFlags) -> libbpf_rs::Result<Option<V>>;
    /// Set `key` to `val` with `flags` (ANY, NO_EXIST, EXIST, LOCK).
    fn put<K: Pod, V: Pod>(&self, key: &K, val: &V, flags: MapFlags) -> libbpf_rs::Result<()>;
    /// Push onto a queue map.
    fn push<V: Pod>(&self, val: &V) -> libbpf_rs::Result<()>;
    /// Pop from a queue map; None when it is empty.
    #[cfg_attr(not(feature = "lab"), allow(dead_code))]
    fn pop<V: Pod>(&self) -> libbpf_rs::Result<Option<V>>;
    /// The values of every possible CPU for `key` of a per-CPU map.
    fn get_percpu<V: Pod>(&self, key: &u32) -> libbpf_rs::Result<Option<Vec<V>>>;
    /// Set the values of every possible CPU for `key` of a per-CPU map.
    fn put_percpu<V: Pod>(&self, key: &u32, vals: &[V]) -> libbpf_rs::Result<()>;
}

impl TypedMap for MapHandle {
    fn get<K: Pod, V: Pod>(&self, key: &K, flags: MapFlags) -> libbpf_rs::Result<Option<V>> {
        Ok(self
            .lookup(pod::bytes_of(key), flags)?
            .map(|v| pod::from_bytes(&v)))
    }

    fn put<K: Pod, V: Pod>(&self, key: &K, val: &V, flags: MapFlags) -> libbpf_rs::Result<()> {
        self.update(pod::bytes_of(key), pod::bytes_of(val), flags)
    }

    fn push<V: Pod>(&self, val: &V) -> libbpf_rs::Result<()> {
        self.update(&[], pod::bytes_of(val), MapFlags::ANY)
    }

    fn pop<V: Pod>(&self) -> libbpf_rs::Result<Option<V>> {
        Ok(self.lookup_and_delete(&[])?.map(|v| pod::from_bytes(&v)))
    }

    fn get_percpu<V: Pod>(&self, key: &u32) -> libbpf_rs::Result<Option<Vec<V>>> {
        Ok(self
            .lookup_percpu(pod::bytes_of(key), MapFlags::ANY)?
            .map(|cpus| cpus.iter().map(|v| pod::from_bytes(v)).collect()))
    }

    fn put_percpu<V: Pod>(&self, key: &u32, vals: &[V]) -> libbpf_rs::Result<()> {
        let vals: Vec<Vec<u8>> = vals.iter().map(|v| pod::bytes_of(v).to_vec()).collect();
        self.update_percpu(pod::bytes_of(key), &vals, MapFlags::ANY)
    }
}

/// A one-slot ARRAY_OF_MAPS and an inner map for it: updating the slot from
/// the syscall returns only after an RCU grace period (`maybe_wait_bpf_programs`
/// in kernel/bpf/syscall.c), i.e. after every XDP/TC run that had started.
#[derive(Debug)]
pub(crate) struct Grace {
    outer: MapHandle,
    inner: MapHandle,
}

impl Grace {
    pub fn create() -> libbpf_rs::Result<Grace> {
        let mut opts = libbpf_sys::bpf_map_create_opts {
            sz: std::mem::size_of::<libbpf_sys::bpf_map_create_opts>() as _,
            ..Default::default()
        };
        let inner = MapHandle::create(MapType::Array, Some("nl_grace_inner"), 4, 4, 1, &opts)?;
        opts.inner_map_fd =
            std::os::fd::AsRawFd::as_raw_fd(&std::os::fd::AsFd::as_fd(&inner)) as u32;
        let outer = MapHandle::create(MapType::ArrayOfMaps, Some("nl_grace"), 4, 4, 1, &opts)?;
        Ok(Grace { outer, inner })
    }

    /// Return once every BPF program run that started before this call has
    /// finished (one RCU grace period).
    pub fn wait(&self) -> libbpf_rs::Result<()> {
        let fd = std::os::fd::AsRawFd::as_raw_fd(&std::os::fd::AsFd::as_fd(&self.inner)) as u32;
        self.outer.put(&0u32, &fd, MapFlags::ANY)
    }
}
