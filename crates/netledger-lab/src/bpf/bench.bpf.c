// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/*
 * Reference programs for measurements: what counting is compared against.
 * None of them is part of the product.
 */
#include "parse.h"
#include "maps.h"

char LICENSE[] SEC("license") = "Dual BSD/GPL";

/* The cheapest possible XDP program: the baseline of every ns/packet figure. */
SEC("xdp.frags")
int nl_empty(struct xdp_md *ctx)
{
	return XDP_PASS;
}

/* The cheapest tc program: "next" (tcx), as every counting tc program returns. */
SEC("tc")
int nl_empty_tc(struct __sk_buff *skb)
{
	return TC_ACT_UNSPEC;
}

/* The empty program plus the frame-length helper every counting program calls. */
SEC("xdp.frags")
int nl_empty_len(struct xdp_md *ctx)
{
	volatile __u64 len = bpf_xdp_get_buff_len(ctx);

	(void)len;
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

/* ---------------------------------------------------------------------- */
/*
 * Models of the two data paths for taking their cost apart (bench/breakdown.rs).
 *
 * Each model is the hot path of a strategy's data path (a frame whose key
 * is in the map already: the measured case), built from the same parse and
 * shaping, with its parts switched on and off at compile time: the data
 * path with every part it has had (time stamps, sequence counters, the IP
 * byte counter, per-generation stats behind map-in-map), then one part
 * taken away at a time. A model never inserts a key: the measurements
 * prepopulate its maps. None of them is part of the product.
 */

/* The kernel's tick rate (libbpf fills it from the kernel config; 0 if unknown). */
extern unsigned int CONFIG_HZ __kconfig __weak;

/*
 * The coarse time stamp the data paths once kept per flow (first_ns,
 * last_ns): jiffies scaled by the tick length (bpf_jiffies64 is inlined).
 */
static __always_inline __u64 nl_now(void)
{
	__u64 hz = CONFIG_HZ ? CONFIG_HZ : 250;

	return bpf_jiffies64() * (1000000000ULL / hz);
}

/* The counters with the time stamps the data paths once kept. */
struct nl_m_swap_counter {
	__u64 packets;
	__u64 bytes;
	__u64 ip_bytes;
	__u64 first_ns;
	__u64 last_ns;
};

struct nl_m_slot {
	struct bpf_spin_lock lock;
	enum nl_slot_state state;
	struct nl_flow_key key;
	__u32 idle;
	__u64 packets;
	__u64 bytes;
	__u64 ip_bytes;
	__u64 first_ns;
	__u64 last_ns;
};

/*
 * Slot layouts tried (the lock models without time stamps, M_S*): what
 * they cost one writer, and two writers on one flow or on two.
 */

/* 128 bytes as now (struct nl_slot): the lock and the counters, then the key at byte 64. */
struct nl_m_slot128 {
	struct bpf_spin_lock lock;
	enum nl_slot_state state;
	__u32 idle;
	__u32 pad0;
	__u64 packets;
	__u64 bytes;
	__u64 ip_bytes;
	__u8 pad1[24];
	struct nl_flow_key key;
	__u8 pad2[20];
};

/*
 * 192 bytes for a plain (not page-aligned) array: the lock and counters
 * from byte 8, the key at 72, which puts them on lines of their own where
 * the kernel starts an array's values 56 bytes into a line (6.18).
 */
struct nl_m_slot192 {
	__u32 pad0[2];
	struct bpf_spin_lock lock;
	enum nl_slot_state state;
	__u32 idle;
	__u32 pad1;
	__u64 packets;
	__u64 bytes;
	__u64 ip_bytes;
	__u8 pad2[24];
	struct nl_flow_key key;
	__u8 pad3[76];
};

/* 192 bytes: the counters, then the lock (one line where values start 56 bytes into one). */
struct nl_m_slot192b {
	__u32 pad0[2];
	__u64 packets;
	__u64 bytes;
	__u64 ip_bytes;
	struct bpf_spin_lock lock;
	enum nl_slot_state state;
	__u32 idle;
	__u32 pad1;
	__u8 pad2[24];
	struct nl_flow_key key;
	__u8 pad3[76];
};

/* 192 bytes: the lock at the end of a line, the counters at the start of the next. */
struct nl_m_slot192c {
	struct bpf_spin_lock lock;
	enum nl_slot_state state;
	__u64 packets;
	__u64 bytes;
	__u64 ip_bytes;
	__u32 idle;
	__u32 pad1;
	__u8 pad2[32];
	struct nl_flow_key key;
	__u8 pad3[76];
};

/* An IPv4 five-tuple key in 16 bytes (the family is implied). */
struct nl_m_key4 {
	__u32 src;
	__u32 dst;
	__u16 sport;
	__u16 dport;
	__u16 vlan;
	__u8 proto;
	__u8 flags;
};

/* Parts of a model (compile-time constants: each program is specialised). */
enum nl_m_part {
	M_TIME = 1,	 /* first_ns/last_ns from jiffies */
	M_SEQ = 2,	 /* the started/done window around the buckets */
	M_IPB = 4,	 /* the third counter, ip_bytes */
	M_STATS_MIM = 8, /* swap: stats through an outer map (else one array indexed by generation) */
	M_STATS = 16,	 /* the conservation buckets at all */
	M_SLOT = 32,	 /* lock: the slot after the index (else stop at the index) */
	M_KEYEQ = 64,	 /* lock: the slot's key checked against the frame's */
	M_LOCK = 128,	 /* lock: the spin lock around the additions */
	M_KEY4 = 256,	 /* IPv4 keys looked up as struct nl_m_key4 */
	M_GVAR = 512,	 /* swap: the generation in a global variable (else a map lookup) */
	M_FAST = 1024,	 /* buckets of a counted frame at constant offsets */
	M_S128 = 2048,	 /* lock: 128-byte slots, counters and key on lines of their own */
	M_MMAP = 4096,	 /* lock: ... in a page-aligned (mmapable) array (struct nl_slot now) */
	M_S192 = 8192,	 /* lock: 192-byte slots laid out for a plain array */
	M_S192B = 16384, /* lock: 192-byte slots, counters before the lock */
	M_S192C = 32768, /* lock: 192-byte slots, lock and counters on two lines */
};

/* The swap models' generation as a global variable (M_GVAR). */
__u32 nl_m_gen_var SEC(".data.m_gen") = 0;

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u32);
} nl_m_gen SEC(".maps");

NL_SWAP_FLOWS(nl_m_swap_flows, nl_m_flows_0, nl_m_flows_1, struct nl_flow_key, struct nl_m_swap_counter);

/* The same flows keyed by struct nl_m_key4 (IPv4 frames only). */
NL_SWAP_FLOWS(nl_m_swap_flows4, nl_m_flows4_0, nl_m_flows4_1, struct nl_m_key4, struct nl_m_swap_counter);

NL_SWAP_STATS(nl_m_swap_stats, nl_m_stats_0, nl_m_stats_1);

/* Both generations' stats in one array, indexed by generation. */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 2);
	__type(key, __u32);
	__type(value, struct nl_stats);
} nl_m_stats_gen SEC(".maps");

/* The lock model's maps: index, slots, stats. */
NL_INDEX_MAP(nl_m_index, struct nl_flow_key);

NL_INDEX_MAP(nl_m_index4, struct nl_m_key4);

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 65536);
	__type(key, __u32);
	__type(value, struct nl_m_slot);
} nl_m_slots SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 65536);
	__type(key, __u32);
	__type(value, struct nl_m_slot128);
} nl_m_slots128 SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(map_flags, BPF_F_MMAPABLE);
	__uint(max_entries, 65536);
	__type(key, __u32);
	__type(value, struct nl_m_slot128);
} nl_m_slots128mm SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 65536);
	__type(key, __u32);
	__type(value, struct nl_m_slot192);
} nl_m_slots192 SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 65536);
	__type(key, __u32);
	__type(value, struct nl_m_slot192b);
} nl_m_slots192b SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 65536);
	__type(key, __u32);
	__type(value, struct nl_m_slot192c);
} nl_m_slots192c SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct nl_stats);
} nl_m_lstats SEC(".maps");

static __always_inline void m_key4(const struct nl_flow_key *k, struct nl_m_key4 *k4)
{
	__builtin_memcpy(&k4->src, k->src, 4);
	__builtin_memcpy(&k4->dst, k->dst, 4);
	k4->sport = k->sport;
	k4->dport = k->dport;
	k4->vlan = k->vlan;
	k4->proto = k->proto;
	k4->flags = k->flags;
}

static __always_inline void m_begin(struct nl_stats *st, const int parts)
{
	if (parts & M_SEQ)
		account_begin(st);
}

static __always_inline void m_end(struct nl_stats *st, __u32 bucket, const struct nl_add *a,
				  const int parts)
{
	st->bucket[NL_BUCKET_SEEN].packets += a->pkts;
	st->bucket[NL_BUCKET_SEEN].bytes += a->bytes;
	if ((parts & M_FAST) && bucket == NL_BUCKET_COUNTED) {
		st->bucket[NL_BUCKET_COUNTED].packets += a->pkts;
		st->bucket[NL_BUCKET_COUNTED].bytes += a->bytes;
	} else {
		st->bucket[bucket].packets += a->pkts;
		st->bucket[bucket].bytes += a->bytes;
	}
	if (parts & M_SEQ) {
		compiler_barrier();
		*(volatile __u64 *)&st->done = st->done + 1;
	}
}

static __always_inline __u32 m_swap_add(void *flows, void *key, const struct nl_add *a, __u64 now,
					const int parts)
{
	struct nl_m_swap_counter *c = bpf_map_lookup_elem(flows, key);

	if (!c)
		return NL_BUCKET_MAP_FULL;
	c->packets += a->pkts;
	c->bytes += a->bytes;
	if (parts & M_IPB)
		c->ip_bytes += a->ip_bytes;
	if (parts & M_TIME) {
		if (!c->first_ns)
			c->first_ns = now;
		c->last_ns = now;
	}
	return NL_BUCKET_COUNTED;
}

/* The swap data path's hot path, as swap.bpf.c's account() with `parts`. */
static __always_inline int swap_model(struct xdp_md *ctx, const int parts)
{
	void *data = (void *)(long)ctx->data;
	void *end = (void *)(long)ctx->data_end;
	__u64 len = bpf_xdp_get_buff_len(ctx);
	struct nl_flow_key key = {};
	struct nl_m_key4 k4 = {};
	struct nl_stats *st = NULL;
	struct nl_frame fr;
	struct nl_add a;
	void *flows, *stats;
	__u32 zero = 0, gen, *g, bucket;
	__u64 now = 0;

	bucket = parse_frame(data, end, len, &key, &fr, 0);
	a = xdp_add(len, &fr);
	if (parts & M_TIME)
		now = nl_now();
	if (bucket == NL_BUCKET_COUNTED)
		shape_key(&key);
	if (parts & M_GVAR) {
		gen = *(volatile __u32 *)&nl_m_gen_var & 1;
	} else {
		g = bpf_map_lookup_elem(&nl_m_gen, &zero);
		if (!g)
			return XDP_PASS;
		gen = *(volatile __u32 *)g & 1;
	}
	/*
	 * The compact-key models count IPv4 only (what they measure): one map
	 * per call site, or the verifier cannot inline the lookups.
	 */
	if (parts & M_KEY4)
		flows = bpf_map_lookup_elem(&nl_m_swap_flows4, &gen);
	else
		flows = bpf_map_lookup_elem(&nl_m_swap_flows, &gen);
	if (parts & M_STATS) {
		if (parts & M_STATS_MIM) {
			stats = bpf_map_lookup_elem(&nl_m_swap_stats, &gen);
			if (!stats)
				return XDP_PASS;
			st = bpf_map_lookup_elem(stats, &zero);
		} else {
			st = bpf_map_lookup_elem(&nl_m_stats_gen, &gen);
		}
		if (!st)
			return XDP_PASS;
	}
	if (!flows)
		return XDP_PASS;
	if (st)
		m_begin(st, parts);
	if (bucket == NL_BUCKET_COUNTED) {
		if (parts & M_KEY4) {
			m_key4(&key, &k4);
			bucket = key.family == 4 ? m_swap_add(flows, &k4, &a, now, parts)
						 : NL_BUCKET_MAP_FULL;
		} else {
			bucket = m_swap_add(flows, &key, &a, now, parts);
		}
	}
	if (bucket >= NL_NR_BUCKETS)
		bucket = NL_BUCKET_MALFORMED;
	if (st)
		m_end(st, bucket, &a, parts);
	return XDP_PASS;
}

#define SWAP_MODEL(name, parts)                                                                    \
	SEC("xdp.frags")                                                                           \
	int name(struct xdp_md *ctx)                                                               \
	{                                                                                          \
		return swap_model(ctx, parts);                                                     \
	}

#define SW_ALL (M_TIME | M_SEQ | M_IPB | M_STATS_MIM | M_STATS)
SWAP_MODEL(nl_ms_all, SW_ALL)
SWAP_MODEL(nl_ms_no_time, SW_ALL & ~M_TIME)
SWAP_MODEL(nl_ms_no_seq, SW_ALL & ~M_SEQ)
SWAP_MODEL(nl_ms_no_ipb, SW_ALL & ~M_IPB)
SWAP_MODEL(nl_ms_stats_gen, SW_ALL & ~M_STATS_MIM)
SWAP_MODEL(nl_ms_no_stats, SW_ALL & ~(M_STATS | M_SEQ | M_STATS_MIM))
SWAP_MODEL(nl_ms_lean, M_IPB | M_STATS)
SWAP_MODEL(nl_ms_lean_no_ipb, M_STATS)
SWAP_MODEL(nl_ms_lean_key4, M_IPB | M_STATS | M_KEY4)
SWAP_MODEL(nl_ms_lean_gvar, M_IPB | M_STATS | M_GVAR)
SWAP_MODEL(nl_ms_lean_fast, M_IPB | M_STATS | M_FAST)
SWAP_MODEL(nl_ms_lean_gvar_fast, M_IPB | M_STATS | M_GVAR | M_FAST)
/* swap as now: global generation, no time, no window, stats through map-in-map. */
SWAP_MODEL(nl_ms_now, M_IPB | M_STATS | M_STATS_MIM | M_GVAR)
SWAP_MODEL(nl_ms_now_no_ipb, M_STATS | M_STATS_MIM | M_GVAR)

static __always_inline int m_key_eq(const struct nl_flow_key *a, const struct nl_flow_key *b)
{
	const __u64 *x = (const __u64 *)a, *y = (const __u64 *)b;

	return x[0] == y[0] && x[1] == y[1] && x[2] == y[2] && x[3] == y[3] && x[4] == y[4] &&
	       ((const __u32 *)a)[10] == ((const __u32 *)b)[10];
}

/* The add of m_lock_add in the 128- or 192-byte slots (no time stamps). */
#define M_LOCK_ADD_WIDE(name, type, map_of)                                                        \
	static __always_inline __u32 name(struct nl_flow_key *key, const struct nl_add *a, __u32 n, \
					  const int parts)                                          \
	{                                                                                          \
		type *slot = bpf_map_lookup_elem(map_of, &n);                                      \
		int live;                                                                          \
                                                                                                   \
		if (!slot)                                                                         \
			return NL_BUCKET_EVICT_RACE;                                               \
		if ((parts & M_KEYEQ) && !m_key_eq(&slot->key, key))                               \
			return NL_BUCKET_EVICT_RACE;                                               \
		if (parts & M_LOCK)                                                                \
			bpf_spin_lock(&slot->lock);                                                \
		live = slot->state == NL_SLOT_LIVE || slot->state == NL_SLOT_PENDING;              \
		if (live) {                                                                        \
			slot->packets += a->pkts;                                                  \
			slot->bytes += a->bytes;                                                   \
			if (parts & M_IPB)                                                         \
				slot->ip_bytes += a->ip_bytes;                                     \
		}                                                                                  \
		if (parts & M_LOCK)                                                                \
			bpf_spin_unlock(&slot->lock);                                              \
		return live ? NL_BUCKET_COUNTED : NL_BUCKET_EVICT_RACE;                            \
	}

M_LOCK_ADD_WIDE(m_lock_add_s128, struct nl_m_slot128, &nl_m_slots128)
M_LOCK_ADD_WIDE(m_lock_add_s128mm, struct nl_m_slot128, &nl_m_slots128mm)
M_LOCK_ADD_WIDE(m_lock_add_s192, struct nl_m_slot192, &nl_m_slots192)
M_LOCK_ADD_WIDE(m_lock_add_s192b, struct nl_m_slot192b, &nl_m_slots192b)
M_LOCK_ADD_WIDE(m_lock_add_s192c, struct nl_m_slot192c, &nl_m_slots192c)

static __always_inline __u32 m_lock_add_wide(struct nl_flow_key *key, const struct nl_add *a,
					     __u32 n, const int parts)
{
	if (parts & M_S192B)
		return m_lock_add_s192b(key, a, n, parts);
	if (parts & M_S192C)
		return m_lock_add_s192c(key, a, n, parts);
	if (parts & M_S192)
		return m_lock_add_s192(key, a, n, parts);
	if (parts & M_MMAP)
		return m_lock_add_s128mm(key, a, n, parts);
	return m_lock_add_s128(key, a, n, parts);
}

static __always_inline __u32 m_lock_add(struct nl_flow_key *key, const struct nl_add *a, __u64 now,
					const int parts)
{
	struct nl_m_key4 k4 = {};
	struct nl_m_slot *slot;
	__u32 *idx, n;
	int live;

	if (parts & M_KEY4) {
		/* IPv4 only, one map per call site (see swap_model). */
		if (key->family != 4)
			return NL_BUCKET_MAP_FULL;
		m_key4(key, &k4);
		idx = bpf_map_lookup_elem(&nl_m_index4, &k4);
	} else {
		idx = bpf_map_lookup_elem(&nl_m_index, key);
	}
	if (!idx)
		return NL_BUCKET_MAP_FULL;
	if (!(parts & M_SLOT))
		return NL_BUCKET_COUNTED;
	n = *idx;
	if (parts & (M_S128 | M_S192 | M_S192B | M_S192C))
		return m_lock_add_wide(key, a, n, parts);
	slot = bpf_map_lookup_elem(&nl_m_slots, &n);
	if (!slot)
		return NL_BUCKET_EVICT_RACE;
	if ((parts & M_KEYEQ) && !m_key_eq(&slot->key, key))
		return NL_BUCKET_EVICT_RACE;
	if (parts & M_LOCK)
		bpf_spin_lock(&slot->lock);
	live = slot->state == NL_SLOT_LIVE || slot->state == NL_SLOT_PENDING;
	if (live) {
		slot->packets += a->pkts;
		slot->bytes += a->bytes;
		if (parts & M_IPB)
			slot->ip_bytes += a->ip_bytes;
		if (parts & M_TIME) {
			if (!slot->first_ns)
				slot->first_ns = now;
			slot->last_ns = now;
		}
	}
	if (parts & M_LOCK)
		bpf_spin_unlock(&slot->lock);
	return live ? NL_BUCKET_COUNTED : NL_BUCKET_EVICT_RACE;
}

/* The lock data path's hot path, as lock.bpf.c's account() with `parts`. */
static __always_inline int lock_model(struct xdp_md *ctx, const int parts)
{
	void *data = (void *)(long)ctx->data;
	void *end = (void *)(long)ctx->data_end;
	__u64 len = bpf_xdp_get_buff_len(ctx);
	struct nl_flow_key key = {};
	struct nl_stats *st = NULL;
	struct nl_frame fr;
	struct nl_add a;
	__u32 zero = 0, bucket;

	bucket = parse_frame(data, end, len, &key, &fr, 0);
	a = xdp_add(len, &fr);
	if (parts & M_STATS) {
		st = bpf_map_lookup_elem(&nl_m_lstats, &zero);
		if (!st)
			return XDP_PASS;
		m_begin(st, parts);
	}
	if (bucket == NL_BUCKET_COUNTED) {
		shape_key(&key);
		bucket = m_lock_add(&key, &a, (parts & M_TIME) ? nl_now() : 0, parts);
	}
	if (bucket >= NL_NR_BUCKETS)
		bucket = NL_BUCKET_MALFORMED;
	if (st)
		m_end(st, bucket, &a, parts);
	return XDP_PASS;
}

#define LOCK_MODEL(name, parts)                                                                    \
	SEC("xdp.frags")                                                                           \
	int name(struct xdp_md *ctx)                                                               \
	{                                                                                          \
		return lock_model(ctx, parts);                                                     \
	}

#define LK_ALL (M_TIME | M_SEQ | M_IPB | M_STATS | M_SLOT | M_KEYEQ | M_LOCK)
LOCK_MODEL(nl_ml_index, M_SEQ | M_STATS)
LOCK_MODEL(nl_ml_slot, M_SEQ | M_STATS | M_IPB | M_SLOT)
LOCK_MODEL(nl_ml_keyeq, M_SEQ | M_STATS | M_IPB | M_SLOT | M_KEYEQ)
LOCK_MODEL(nl_ml_all, LK_ALL)
LOCK_MODEL(nl_ml_no_time, LK_ALL & ~M_TIME)
LOCK_MODEL(nl_ml_no_ipb, LK_ALL & ~M_IPB)
LOCK_MODEL(nl_ml_no_stats, LK_ALL & ~(M_STATS | M_SEQ))
LOCK_MODEL(nl_ml_lean_key4, (LK_ALL & ~M_TIME) | M_KEY4)
LOCK_MODEL(nl_ml_s128, (LK_ALL & ~M_TIME) | M_S128)
LOCK_MODEL(nl_ml_s128_mmap, (LK_ALL & ~M_TIME) | M_S128 | M_MMAP)
LOCK_MODEL(nl_ml_s192, (LK_ALL & ~M_TIME) | M_S192)
LOCK_MODEL(nl_ml_s128_mmap_no_ipb, (LK_ALL & ~(M_TIME | M_IPB)) | M_S128 | M_MMAP)
LOCK_MODEL(nl_ml_s192b, (LK_ALL & ~M_TIME) | M_S192B)
LOCK_MODEL(nl_ml_s192c, (LK_ALL & ~M_TIME) | M_S192C)
