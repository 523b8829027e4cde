/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * Map shapes more than one object declares.
 */
#ifndef NETLEDGER_MAPS_H
#define NETLEDGER_MAPS_H

/*
 * The lock strategy's index, `name`: a flow key of type `key_type` to its
 * slot number. Elements are allocated as keys come (BPF_F_NO_PREALLOC), so
 * an element deleted from userspace is freed only after an RCU grace
 * period and never reused under a program that still holds it.
 */
#define NL_INDEX_MAP(name, key_type)                                           \
	struct {                                                               \
		__uint(type, BPF_MAP_TYPE_HASH);                               \
		__uint(map_flags, BPF_F_NO_PREALLOC);                          \
		__uint(max_entries, 65536);                                    \
		__type(key, key_type);                                         \
		__type(value, __u32);                                          \
	} name SEC(".maps")

/*
 * A map type (a struct named `tname`, for instances and templates): a
 * per-CPU hash of `max` entries from `key_type` to `value_type`, each CPU
 * adding to its own copy of a value.
 */
#define NL_PERCPU_HASH_TYPE(tname, key_type, value_type, max)                 \
	struct tname {                                                         \
		__uint(type, BPF_MAP_TYPE_PERCPU_HASH);                        \
		__uint(max_entries, max);                                      \
		__type(key, key_type);                                         \
		__type(value, value_type);                                     \
	}

/*
 * Strategy swap's generations: `outer`, an array of two maps of type
 * `struct inner` (its template), holding `g0` and `g1`.
 */
#define NL_GENERATIONS(outer, inner, g0, g1)                                   \
	struct {                                                               \
		__uint(type, BPF_MAP_TYPE_ARRAY_OF_MAPS);                      \
		__uint(max_entries, 2);                                        \
		__type(key, __u32);                                            \
		__array(values, struct inner);                                 \
	} outer SEC(".maps") = {                                               \
		.values = { [0] = &g0, [1] = &g1 },                            \
	}

/*
 * Strategy swap's flows: `outer` holding two per-CPU hashes `g0` and `g1`
 * of `key_type` to `value_type` (type `outer`_map; the loader sets their
 * size), with a one-entry template (`outer`_tmpl): libbpf creates the
 * template only to create the outer map and closes it right after, and a
 * hash's size is not among what the kernel checks when a slot is set.
 */
#define NL_SWAP_FLOWS(outer, g0, g1, key_type, value_type)                     \
	NL_PERCPU_HASH_TYPE(outer##_map, key_type, value_type, 65536);         \
	struct outer##_map g0 SEC(".maps");                                    \
	struct outer##_map g1 SEC(".maps");                                    \
	NL_PERCPU_HASH_TYPE(outer##_tmpl, key_type, value_type, 1);            \
	NL_GENERATIONS(outer, outer##_tmpl, g0, g1)

/* Strategy swap's buckets: `outer` holding two per-CPU struct nl_stats, `g0` and `g1`. */
#define NL_SWAP_STATS(outer, g0, g1)                                           \
	struct outer##_map {                                                   \
		__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);                       \
		__uint(max_entries, 1);                                        \
		__type(key, __u32);                                            \
		__type(value, struct nl_stats);                                \
	};                                                                     \
	struct outer##_map g0 SEC(".maps");                                    \
	struct outer##_map g1 SEC(".maps");                                    \
	NL_GENERATIONS(outer, outer##_map, g0, g1)

#endif /* NETLEDGER_MAPS_H */
