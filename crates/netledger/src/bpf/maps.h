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

#endif /* NETLEDGER_MAPS_H */
