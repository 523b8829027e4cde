// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/*
 * netledger, strategy `swap`: count every frame the hook sees, per flow,
 * exactly, with neither locks nor atomics on the data path.
 *
 * Counters live in two generations. Each generation is a per-CPU flow hash
 * (nl_flows_0 / nl_flows_1, slots of nl_swap_flows) and a per-CPU stats
 * array (nl_stats_0 / nl_stats_1, slots of nl_swap_stats). nl_gen names the
 * generation the data path writes; a frame reads it once and is accounted
 * wholly in that generation: its flow and its buckets.
 *
 * A cut (userspace) flips nl_gen, then waits for an RCU grace period: every
 * run that could have read the old value has finished, so the old
 * generation is quiescent and is read at leisure, then cleared. Buckets are
 * read only then, so they need no sequence window (account_add, not
 * account_begin/account_end as in strategy lock).
 *
 * Everything (length, key) is computed before a map is touched. The frame
 * is never modified and its fate never changed: always passed (XDP_PASS,
 * TC_ACT_UNSPEC at tc).
 */
#include "parse.h"
#include "maps.h"

char LICENSE[] SEC("license") = "Dual BSD/GPL";

/*
 * The generation the data path writes (0 or 1); only userspace changes it
 * (an update of the one-entry map that holds this section). A global
 * variable: one load, where a map lookup costs about a nanosecond more.
 */
__u32 nl_gen SEC(".data.gen") = 0;

/*
 * A generation's flows: this CPU's counters of each key, in nl_flows_0 and
 * nl_flows_1 (preallocated; the loader sets their size to the configured
 * number of flows), held by nl_swap_flows.
 */
NL_SWAP_FLOWS(nl_swap_flows, nl_flows_0, nl_flows_1, struct nl_flow_key, struct nl_swap_counter);

/* A generation's conservation buckets, per CPU. */
NL_SWAP_STATS(nl_swap_stats, nl_stats_0, nl_stats_1);

#define EEXIST_ 17

/*
 * Add a frame (a->pkts wire frames, for a GSO/GRO skb) to key's
 * counters in flows; return the bucket it ended in. Each CPU adds only to
 * its own copy of a value, so plain additions are exact: nobody else writes
 * that copy while this generation is live, and nobody reads it until a
 * grace period after it stopped being live.
 */
static __always_inline __u32 count_flow(void *flows, struct nl_flow_key *key,
					const struct nl_add *a)
{
	struct nl_swap_counter *c, first = {
		.packets = a->pkts,
		.bytes = a->bytes,
		.ip_bytes = a->ip_bytes,
	};
	long err;

	c = bpf_map_lookup_elem(flows, key);
	if (!c) {
		/* From the data path, only this CPU's copy gets the value; the others are zeroed. */
		err = bpf_map_update_elem(flows, key, &first, BPF_NOEXIST);
		if (!err)
			return NL_BUCKET_COUNTED;
		/* Full (-E2BIG), or out of memory: the key cannot be kept. */
		if (err != -EEXIST_)
			return NL_BUCKET_MAP_FULL;
		/* Another CPU inserted the key first: add to this CPU's (zeroed) copy. */
		c = bpf_map_lookup_elem(flows, key);
		/*
		 * Unreachable: nothing deletes from a live generation. Should it
		 * happen, the packet is not attributable, and is still accounted.
		 */
		if (!c)
			return NL_BUCKET_EVICT_RACE;
	}
	c->packets += a->pkts;
	c->bytes += a->bytes;
	c->ip_bytes += a->ip_bytes;
	return NL_BUCKET_COUNTED;
}

/*
 * Account one parsed frame (or GSO/GRO packet) in the live generation: its
 * flow if it has one, and its bucket. Everything was computed before; one
 * reading of the generation decides where the whole of it goes.
 */
static __always_inline void account(__u32 bucket, struct nl_flow_key *key, struct nl_add a)
{
	struct nl_stats *st;
	void *flows, *stats;
	__u32 zero = 0, gen;

	if (bucket == NL_BUCKET_COUNTED)
		shape_key(key);
	gen = *(volatile __u32 *)&nl_gen & 1;
	flows = bpf_map_lookup_elem(&nl_swap_flows, &gen);
	stats = bpf_map_lookup_elem(&nl_swap_stats, &gen);
	if (!flows || !stats)
		return;
	st = bpf_map_lookup_elem(stats, &zero);
	if (!st)
		return;

	if (bucket == NL_BUCKET_COUNTED)
		bucket = count_flow(flows, key, &a);
	/* Bounds the index for the verifier; every bucket returned is below it. */
	if (bucket >= NL_NR_BUCKETS)
		bucket = NL_BUCKET_MALFORMED;
	account_add(st, bucket, a.pkts, a.bytes);
}

/* The hooks: nl_xdp and nl_tc, over account() above. */
#include "hooks.h"
