// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/*
 * netledger, strategy `lock`: count every frame the hook sees, per flow,
 * exactly, with coherent live reads and lossless in-kernel resets.
 *
 * Maps: nl_index (flow key -> slot number), nl_slots (an array of counters,
 * each behind its own bpf_spin_lock), nl_free (a queue of free slot numbers,
 * refilled by userspace only after an RCU grace period), nl_stats (per-CPU
 * conservation buckets) and nl_out (the exchange's records).
 *
 * Everything (length, key) is computed before a lock is taken; locked
 * regions hold only loads, stores and additions. The frame is never modified
 * and its fate never changed: the data path always passes it (XDP_PASS at
 * XDP, TC_ACT_UNSPEC at tc).
 */
#include "parse.h"
#include "maps.h"

char LICENSE[] SEC("license") = "Dual BSD/GPL";

NL_INDEX_MAP(nl_index, struct nl_flow_key);

/*
 * Mmapable for its layout only: the kernel places an mmapable array's
 * values on a page boundary, so every two-line slot (struct nl_slot)
 * starts a cache line. (It is never mapped: the kernel refuses to map a
 * map that holds spin locks.)
 */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(map_flags, BPF_F_MMAPABLE);
	__uint(max_entries, 65536);
	__type(key, __u32);
	__type(value, struct nl_slot);
} nl_slots SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_QUEUE);
	__uint(max_entries, 65536);
	__type(value, __u32);
} nl_free SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct nl_stats);
} nl_stats SEC(".maps");

/* Read by userspace through mmap: no syscall, no copy per record. */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(map_flags, BPF_F_MMAPABLE);
	__uint(max_entries, 65536);
	__type(key, __u32);
	__type(value, struct nl_record);
} nl_out SEC(".maps");

#define EEXIST_ 17

static __always_inline int key_eq(const struct nl_flow_key *a, const struct nl_flow_key *b)
{
	const __u64 *x = (const __u64 *)a, *y = (const __u64 *)b;

	/* 44 bytes: five 8-byte words and one 4-byte word. */
	return x[0] == y[0] && x[1] == y[1] && x[2] == y[2] && x[3] == y[3] && x[4] == y[4] &&
	       ((const __u32 *)a)[10] == ((const __u32 *)b)[10];
}

/*
 * Add the frame to the slot the index names for key. Returns 1 if counted,
 * 0 if the index has no entry for key, -1 if the slot read there is not
 * key's live slot (evicted, or the entry was reused): the caller inserts a
 * new slot either way.
 */
static __always_inline int add_to_live_slot(struct nl_flow_key *key, const struct nl_add *a)
{
	struct nl_slot *slot;
	__u32 *idx, n;
	int live;

	idx = bpf_map_lookup_elem(&nl_index, key);
	if (!idx)
		return 0;
	n = *idx;
	slot = bpf_map_lookup_elem(&nl_slots, &n);
	/* A reused index entry may name another key's slot: its key differs. */
	if (!slot || !key_eq(&slot->key, key))
		return -1;

	/* No helper calls while the lock is held (verifier rule). */
	bpf_spin_lock(&slot->lock);
	live = slot->state == NL_SLOT_LIVE || slot->state == NL_SLOT_PENDING;
	if (live) {
		slot->packets += a->pkts;
		slot->bytes += a->bytes;
		slot->ip_bytes += a->ip_bytes;
	}
	bpf_spin_unlock(&slot->lock);
	return live ? 1 : -1;
}

/*
 * Give key a fresh slot holding this frame. Returns the bucket: COUNTED,
 * MAP_FULL (no free slot, or the index is full), or -EEXIST if another CPU
 * published a slot for key first (the caller adds to that one).
 */
static __always_inline long insert_slot(struct nl_flow_key *key, const struct nl_add *a)
{
	struct nl_slot *slot;
	__u32 n;
	long err;

	if (bpf_map_pop_elem(&nl_free, &n))
		return NL_BUCKET_MAP_FULL;
	slot = bpf_map_lookup_elem(&nl_slots, &n);
	if (!slot)
		return NL_BUCKET_MAP_FULL;
	/*
	 * Nobody else can reach the slot until the index names it, so it is
	 * filled without its lock; the index update publishes it.
	 */
	__builtin_memcpy(&slot->key, key, sizeof(*key));
	slot->packets = a->pkts;
	slot->bytes = a->bytes;
	slot->ip_bytes = a->ip_bytes;
	slot->idle = 0;
	/*
	 * PENDING until the index names it: the exchange, which walks the slot
	 * array, must not take a slot that may yet lose the race to publish.
	 */
	slot->state = NL_SLOT_PENDING;

	err = bpf_map_update_elem(&nl_index, key, &n, BPF_NOEXIST);
	if (!err) {
		/* Published. Other writers may already be adding: under the lock. */
		bpf_spin_lock(&slot->lock);
		if (slot->state == NL_SLOT_PENDING)
			slot->state = NL_SLOT_LIVE;
		bpf_spin_unlock(&slot->lock);
		return NL_BUCKET_COUNTED;
	}
	/* Never published: it can go straight back. */
	slot->state = NL_SLOT_FREE;
	bpf_map_push_elem(&nl_free, &n, 0);
	return err == -EEXIST_ ? -EEXIST_ : NL_BUCKET_MAP_FULL;
}

/* Add the frame to its flow; return the bucket it ended in. */
static __always_inline __u32 count_flow(struct nl_stats *st, struct nl_flow_key *key,
					const struct nl_add *a)
{
	int detour = 0, i, r;
	long ret;

	for (i = 0; i < 2; i++) {
		r = add_to_live_slot(key, a);
		if (r > 0)
			goto counted;
		detour |= r < 0;
		ret = insert_slot(key, a);
		if (ret == NL_BUCKET_COUNTED)
			goto counted;
		if (ret != -EEXIST_)
			return ret;
		/* Lost the race to insert: the winner's slot is live now... */
		r = add_to_live_slot(key, a);
		if (r > 0)
			goto counted;
		/* ... unless it was evicted in between: try once more. */
		detour = 1;
	}
	return NL_BUCKET_EVICT_RACE;
counted:
	/* Met an evicted or reused slot on the way: counted all the same. */
	if (detour)
		st->reroutes += 1;
	return NL_BUCKET_COUNTED;
}

/*
 * Account one parsed frame (or GSO/GRO packet of pkts wire frames, bytes in
 * all): its flow if it has one, and its bucket. Everything is computed
 * before a lock is taken.
 */
static __always_inline void account(__u32 bucket, struct nl_flow_key *key, struct nl_add a)
{
	struct nl_stats *st;
	__u32 zero = 0;

	st = bpf_map_lookup_elem(&nl_stats, &zero);
	if (!st)
		return;
	account_begin(st);
	if (bucket == NL_BUCKET_COUNTED) {
		shape_key(key);
		bucket = count_flow(st, key, &a);
	}
	/* Bounds the index for the verifier; every bucket returned is below it. */
	if (bucket >= NL_NR_BUCKETS)
		bucket = NL_BUCKET_MALFORMED;
	account_end(st, bucket, a.pkts, a.bytes);
}

/* The hooks: nl_xdp and nl_tc, over account() above. */
#include "hooks.h"

/* ---------------------------------------------------------------------- */
/* The exchange: copy and zero every key's counters under its lock.       */

struct exchange_ctx {
	struct nl_exchange_req req;
	__u32 written;
	__u32 incomplete;
};

static __always_inline int key_matches(const struct nl_flow_key *k, const struct nl_exchange_req *req)
{
	const __u32 *x = (const __u32 *)k, *m = (const __u32 *)&req->mask,
		    *v = (const __u32 *)&req->value;
	int i;

	for (i = 0; i < sizeof(*k) / 4; i++)
		if ((x[i] & m[i]) != v[i])
			return 0;
	return 1;
}

/*
 * One slot of the walk. Only LIVE slots are taken: FREE and TOMBSTONE ones
 * hold nothing, and a PENDING one (published moments ago, or about to lose
 * its race to publish) is taken by the next cut, once LIVE.
 */
static long exchange_one(struct bpf_map *map, __u32 *idx, struct nl_slot *slot,
			 struct exchange_ctx *ctx)
{
	struct nl_flow_key key;
	struct nl_record *rec;
	__u64 packets, bytes, ip_bytes;
	__u32 out = ctx->written;
	int evict = 0, live;

	/* A racy peek to skip empty slots fast; the decision is made under the lock. */
	if (slot->state != NL_SLOT_LIVE)
		return 0;
	/* The key is written before the slot is published and never after. */
	__builtin_memcpy(&key, &slot->key, sizeof(key));
	if (ctx->req.filtered && !key_matches(&key, &ctx->req))
		return 0;
	if (out >= ctx->req.max_records) {
		/* Out of room: what is not taken stays counted for the next run. */
		ctx->incomplete = 1;
		return 1;
	}
	rec = bpf_map_lookup_elem(&nl_out, &out);
	if (!rec)
		return 0;

	bpf_spin_lock(&slot->lock);
	live = slot->state == NL_SLOT_LIVE;
	packets = slot->packets;
	bytes = slot->bytes;
	ip_bytes = slot->ip_bytes;
	if (live && !ctx->req.peek) {
		slot->packets = 0;
		slot->bytes = 0;
		slot->ip_bytes = 0;
		if (packets)
			slot->idle = 0;
		else
			slot->idle += 1;
		if (ctx->req.evict_all || (ctx->req.idle_cuts && slot->idle >= ctx->req.idle_cuts))
			evict = 1;
	}
	bpf_spin_unlock(&slot->lock);
	if (!live)
		return 0;

	if (evict) {
		/*
		 * Unlink first: a writer that looks the key up from now on gets a
		 * new slot. One that read the index before still adds here until
		 * the tombstone, and this second take collects it; after the
		 * tombstone it goes to the new slot instead.
		 */
		bpf_map_delete_elem(&nl_index, &key);
		bpf_spin_lock(&slot->lock);
		packets += slot->packets;
		bytes += slot->bytes;
		ip_bytes += slot->ip_bytes;
		slot->packets = 0;
		slot->bytes = 0;
		slot->ip_bytes = 0;
		slot->state = NL_SLOT_TOMBSTONE;
		bpf_spin_unlock(&slot->lock);
	}

	/* A cut reports keys with traffic; a peek reports every live key. */
	if (!packets && !evict && !ctx->req.peek)
		return 0;
	__builtin_memcpy(&rec->key, &key, sizeof(key));
	rec->slot = *idx;
	rec->packets = packets;
	rec->bytes = bytes;
	rec->ip_bytes = ip_bytes;
	rec->flags = evict ? NL_REC_EVICTED : 0;
	ctx->written = out + 1;
	return 0;
}

/*
 * Run on demand through BPF_PROG_TEST_RUN with a struct nl_exchange_req as
 * its data (not an XDP program: an XDP test run waits for a grace period).
 * Walks the slot array in order (sequential memory, unlike the index's
 * buckets). Returns the number of records in nl_out, with
 * NL_EXCHANGE_INCOMPLETE set if it stopped for lack of room (run it again
 * for the rest).
 */
SEC("tc")
int nl_exchange(struct __sk_buff *skb)
{
	struct exchange_ctx ctx = {};

	struct nl_cut_ctl *cut;
	__u32 zero = 0;

	if (bpf_skb_load_bytes(skb, 0, &ctx.req, sizeof(ctx.req)))
		return 0;
	bpf_for_each_map_elem(&nl_slots, exchange_one, &ctx, 0);
	/*
	 * A numbered cut notes here, in the same run that zeroed the slots,
	 * that nl_out holds its records: a process killed as this returns
	 * leaves them findable. (A test run completes even if its caller dies.)
	 */
	cut = bpf_map_lookup_elem(&nl_ctl, &zero);
	if (ctx.req.seq && cut && cut->seq == ctx.req.seq) {
		cut->records = ctx.written;
		cut->staged = 1;
	}
	return ctx.written | (ctx.incomplete ? NL_EXCHANGE_INCOMPLETE : 0);
}
