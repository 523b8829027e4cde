// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/*
 * Reference programs for measurements: what counting is compared against.
 * None of them is part of the product.
 */
#include "parse.h"

char LICENSE[] SEC("license") = "Dual BSD/GPL";

/* The cheapest possible XDP program: the baseline of every ns/packet figure. */
SEC("xdp.frags")
int nl_empty(struct xdp_md *ctx)
{
	return XDP_PASS;
}

/* ---------------------------------------------------------------------- */
/* The classic design: one locked value per key in a plain hash map.        */

/* A naive flow value: packets and bytes behind the element's own lock. */
struct nl_naive_value {
	struct bpf_spin_lock lock;
	__u64 packets;
	__u64 bytes;
};

/*
 * Preallocated, as a plain `BPF_MAP_TYPE_HASH` is by default: an element
 * deleted from userspace goes straight back to the free list and may be
 * reused for another key while a program still holds a pointer to it.
 */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 65536);
	__type(key, struct nl_flow_key);
	__type(value, struct nl_naive_value);
} nl_naive_flows SEC(".maps");

/*
 * Packets the naive program itself could not place: not parsed into a key,
 * the map full, or its key deleted between a failed insert and the lookup
 * that followed. Only slow paths touch it.
 */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u64);
} nl_naive_missed SEC(".maps");

static __always_inline void naive_missed(void)
{
	__u32 zero = 0;
	__u64 *m = bpf_map_lookup_elem(&nl_naive_missed, &zero);

	if (m)
		*m += 1;
}

/*
 * Parse like the data path, then add to the key's value under its lock,
 * inserting the key first if it is missing. Userspace resets by reading and
 * zeroing (BPF_F_LOCK), or by lookup-and-delete (BPF_F_LOCK): both lose
 * increments under concurrent writers, which is what this program is for.
 */
SEC("xdp.frags")
int nl_naive(struct xdp_md *ctx)
{
	void *data = (void *)(long)ctx->data;
	void *end = (void *)(long)ctx->data_end;
	__u64 len = bpf_xdp_get_buff_len(ctx);
	struct nl_flow_key key = {};
	struct nl_naive_value *v;
	struct nl_frame fr;

	if (parse_frame(data, end, len, &key, &fr, 0) != NL_BUCKET_COUNTED) {
		naive_missed();
		return XDP_PASS;
	}
	shape_key(&key);

	v = bpf_map_lookup_elem(&nl_naive_flows, &key);
	if (!v) {
		struct nl_naive_value init = {};

		init.packets = 1;
		init.bytes = len;
		if (!bpf_map_update_elem(&nl_naive_flows, &key, &init, BPF_NOEXIST))
			return XDP_PASS;
		/* Another CPU inserted it first: add to that one. */
		v = bpf_map_lookup_elem(&nl_naive_flows, &key);
		if (!v) {
			naive_missed();
			return XDP_PASS;
		}
	}
	bpf_spin_lock(&v->lock);
	v->packets += 1;
	v->bytes += len;
	bpf_spin_unlock(&v->lock);
	return XDP_PASS;
}

/* ---------------------------------------------------------------------- */
/* Data-path cost: every way of counting, side by side (bench/datapath.rs). */

/*
 * A flow's packets and bytes in a shared hash: one value for all CPUs.
 * Preallocated (the default); the loader sets max_entries to the number of
 * keys measured. nl_plain and nl_atomic share it.
 */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 65536);
	__type(key, struct nl_flow_key);
	__type(value, struct nl_count);
} nl_bench_hash SEC(".maps");

/* The same per CPU: each CPU adds to its own copy. */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_HASH);
	__uint(max_entries, 65536);
	__type(key, struct nl_flow_key);
	__type(value, struct nl_count);
} nl_bench_pcpu SEC(".maps");

/* The bare counters: one element, no key, no parsing. */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct nl_naive_value);
} nl_bare_lock_map SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct nl_count);
} nl_bare_pcpu_map SEC(".maps");

/* Parse and shape the key exactly as the data paths do; 0 if not counted. */
static __always_inline int bench_key(struct xdp_md *ctx, struct nl_flow_key *key, __u64 *len)
{
	void *data = (void *)(long)ctx->data;
	void *end = (void *)(long)ctx->data_end;
	struct nl_frame fr;

	*len = bpf_xdp_get_buff_len(ctx);
	if (parse_frame(data, end, *len, key, &fr, 0) != NL_BUCKET_COUNTED)
		return 0;
	shape_key(key);
	return 1;
}

/*
 * The key's value in map, inserted with this frame if it is missing (then
 * NULL: the frame is counted by the insert). Keys are prepopulated for
 * measurements, so the insert is the slow path.
 */
static __always_inline struct nl_count *bench_value(void *map, struct nl_flow_key *key, __u64 len)
{
	struct nl_count *v = bpf_map_lookup_elem(map, key);

	if (!v) {
		struct nl_count init = { .packets = 1, .bytes = len };

		if (!bpf_map_update_elem(map, key, &init, BPF_NOEXIST))
			return NULL;
		v = bpf_map_lookup_elem(map, key);
	}
	return v;
}

/*
 * The frame's flow value in map, and the frame's length in *len; NULL when
 * there is nothing to add to (the frame is not counted, or its key was just
 * inserted with it).
 */
static __always_inline struct nl_count *bench_flow(struct xdp_md *ctx, void *map, __u64 *len)
{
	struct nl_flow_key key = {};

	if (!bench_key(ctx, &key, len))
		return NULL;
	return bench_value(map, &key, *len);
}

/* Plain `+=` on the frame's flow value in map. */
static __always_inline int bench_add_plain(struct xdp_md *ctx, void *map)
{
	__u64 len;
	struct nl_count *v = bench_flow(ctx, map, &len);

	if (v) {
		v->packets += 1;
		v->bytes += len;
	}
	return XDP_PASS;
}

/* Plain `+=` on a shared value: fast, and wrong under concurrency (lost and torn updates). */
SEC("xdp.frags")
int nl_plain(struct xdp_md *ctx)
{
	return bench_add_plain(ctx, &nl_bench_hash);
}

/* Two atomic adds: no lost updates, but packets and bytes may be read apart. */
SEC("xdp.frags")
int nl_atomic(struct xdp_md *ctx)
{
	__u64 len;
	struct nl_count *v = bench_flow(ctx, &nl_bench_hash, &len);

	if (v) {
		__sync_fetch_and_add(&v->packets, 1);
		__sync_fetch_and_add(&v->bytes, len);
	}
	return XDP_PASS;
}

/* A per-CPU hash with plain adds: exact per CPU, summed by the reader. */
SEC("xdp.frags")
int nl_percpu(struct xdp_md *ctx)
{
	return bench_add_plain(ctx, &nl_bench_pcpu);
}

/* The one element of a bare counter map, and the frame's linear length in *len. */
static __always_inline void *bare_value(struct xdp_md *ctx, void *map, __u64 *len)
{
	void *data = (void *)(long)ctx->data;
	void *end = (void *)(long)ctx->data_end;
	__u32 zero = 0;

	*len = end - data;
	return bpf_map_lookup_elem(map, &zero);
}

/* The cheapest spin-locked counter: one element, no parsing, no key. */
SEC("xdp.frags")
int nl_bare_lock(struct xdp_md *ctx)
{
	__u64 len;
	struct nl_naive_value *v = bare_value(ctx, &nl_bare_lock_map, &len);

	if (!v)
		return XDP_PASS;
	bpf_spin_lock(&v->lock);
	v->packets += 1;
	v->bytes += len;
	bpf_spin_unlock(&v->lock);
	return XDP_PASS;
}

/* The cheapest per-CPU counter: one element, no parsing, no key. */
SEC("xdp.frags")
int nl_bare_percpu(struct xdp_md *ctx)
{
	__u64 len;
	struct nl_count *v = bare_value(ctx, &nl_bare_pcpu_map, &len);

	if (!v)
		return XDP_PASS;
	v->packets += 1;
	v->bytes += len;
	return XDP_PASS;
}
