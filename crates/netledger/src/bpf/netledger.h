/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * The one definition of everything the netledger BPF programs and the Rust
 * library share: keys, counter values, conservation buckets and load-time
 * configuration. Rust sees these through the skeleton's BTF-generated types.
 */
#ifndef NETLEDGER_H
#define NETLEDGER_H

/* What a flow key is made of; chosen at load time (nl_config.key_mode). */
enum nl_key_mode {
	NL_KEY_SRC_IP = 0,
	NL_KEY_DST_IP = 1,
	NL_KEY_IP_PAIR = 2,
	NL_KEY_FIVE_TUPLE = 3,
};

/*
 * Conservation buckets. Every packet the hook sees is added to SEEN and to
 * exactly one of the others, so
 * SEEN == COUNTED + NON_IP + MALFORMED + MAP_FULL + EVICT_RACE.
 */
enum nl_bucket {
	NL_BUCKET_SEEN = 0,
	NL_BUCKET_COUNTED = 1,	 /* added to its flow key */
	NL_BUCKET_NON_IP = 2,	 /* ethertype other than IPv4/IPv6 (ARP, LLDP, 3+ VLAN tags) */
	NL_BUCKET_MALFORMED = 3, /* truncated or inconsistent headers */
	NL_BUCKET_MAP_FULL = 4,	 /* a new key found the flow map full */
	NL_BUCKET_EVICT_RACE = 5, /* met its flow while it was evicted, twice: not attributable */
	NL_NR_BUCKETS = 6,
};

/* nl_flow_key.flags */
enum nl_key_flags {
	NL_KEY_F_PORTS = 1,    /* sport/dport hold TCP/UDP/SCTP ports */
	NL_KEY_F_ICMP = 2,     /* sport holds the ICMP type, dport the code */
	NL_KEY_F_FRAGMENT = 8, /* a non-first IP fragment: no L4 header */
};

/* Fixed bounds of the data path. */
enum nl_limits {
	NL_MAX_IPV6_EXT = 8, /* IPv6 extension headers walked; a longer chain is malformed */
};

/*
 * A flow key. Fields outside the key mode stay zero. Addresses are in
 * network byte order (IPv4 in the first four bytes), ports in host order.
 */
struct nl_flow_key {
	__u8 src[16];
	__u8 dst[16];
	__u16 sport;
	__u16 dport;
	__u16 vlan;  /* outer VLAN id with vlan keys; 0 when untagged */
	__u8 family; /* 4 or 6 */
	__u8 proto;  /* IP protocol (zero in the address-only modes) */
	__u8 flags;  /* enum nl_key_flags */
	__u8 pad[3];
};

/* nl_slot.state */
enum nl_slot_state {
	NL_SLOT_FREE = 0,      /* in the free-slot queue, or waiting for a grace period */
	NL_SLOT_LIVE = 1,      /* owned by the key it holds; writers add under the lock */
	NL_SLOT_TOMBSTONE = 2, /* evicted: writers that still reach it go elsewhere */
	NL_SLOT_PENDING = 3,   /* filled, being published: writers add, the exchange waits */
};

/*
 * A flow's counters (strategy `lock`), in a slot of an array that never
 * frees memory. The data path changes packets, bytes and ip_bytes together
 * while holding lock; userspace copies them with BPF_F_LOCK, which takes the
 * same lock, so packets and bytes always come from one instant.
 *
 * `key` is written once, before the slot is published in the index, and a
 * slot is reused only after an RCU grace period, so a writer may compare it
 * without the lock: it tells whether an index entry it read still meant this
 * slot. `state` and the counters change only under the lock.
 *
 * Two cache lines, laid out for the cache (nl_slots is page-aligned, so
 * every slot starts a line): what writers change (the lock and the
 * counters, 40 bytes) fills the first, the key, which they only read, the
 * second. Writers of different flows never share a line (with 96-byte
 * slots, two CPUs counting two flows in adjacent slots ran at a third of
 * their speed), and writers of one flow contend for one line.
 */
struct nl_slot {
	struct bpf_spin_lock lock;
	enum nl_slot_state state;
	__u32 idle; /* consecutive cuts that found no packet */
	__u32 pad0;
	__u64 packets;
	__u64 bytes;
	__u64 ip_bytes; /* IP datagram bytes: no L2 header, no padding */
	__u8 pad1[24];
	struct nl_flow_key key; /* at byte 64 */
	__u8 pad2[20];
};

/* What the exchange program is asked to do; passed as its test_run data. */
struct nl_exchange_req {
	__u32 idle_cuts;   /* evict keys idle for this many cuts (0: never) */
	__u32 max_records; /* room in nl_out */
	__u32 filtered;	   /* non-zero: only keys with (key & mask) == value */
	__u32 evict_all;   /* non-zero: evict every key taken, idle or not */
	__u32 peek;	   /* non-zero: copy only (a coherent live snapshot): no zeroing */
	__u32 pad;
	__u64 seq;	   /* non-zero: the numbered cut this run takes; noted in nl_ctl */
	struct nl_flow_key value;
	struct nl_flow_key mask;
};

/* nl_record.flags */
enum nl_record_flags {
	NL_REC_NONE = 0,
	NL_REC_EVICTED = 1, /* the slot was tombstoned: free it after a grace period */
};

/* One key's counts taken by the exchange (copied and zeroed under its lock). */
struct nl_record {
	struct nl_flow_key key;
	__u32 slot;
	__u64 packets;
	__u64 bytes;
	__u64 ip_bytes;
	enum nl_record_flags flags;
	__u32 pad;
};

/* The exchange's return value: records written, and this bit if it ran out of room. */
enum nl_exchange_result {
	NL_EXCHANGE_INCOMPLETE = 0x80000000u,
};

/* A flow's counters under strategy `swap` (a per-CPU hash value: no lock). */
struct nl_swap_counter {
	__u64 packets;
	__u64 bytes;
	__u64 ip_bytes;
};

struct nl_count {
	__u64 packets;
	__u64 bytes;
};

/*
 * Per-CPU conservation counters. The data path of strategy `lock` bumps
 * `started`, adds to the buckets, then bumps `done`. The syscall copies a
 * per-CPU value forward in longs, so it reads `done` first and `started`
 * last: a copy with done == started holds no half-accounted packet.
 * Strategy `swap` reads a generation's buckets only once it is quiescent
 * and leaves both at zero.
 */
struct nl_stats {
	__u64 done;
	struct nl_count bucket[NL_NR_BUCKETS];
	__u64 reroutes; /* packets that met an evicted slot and found their key's new one */
	__u64 started;
};

/* Where a data path runs (nl_config.hook). */
enum nl_hook {
	NL_HOOK_XDP = 0,	/* ingress, XDP: every frame as the driver received it */
	NL_HOOK_TC_INGRESS = 1, /* ingress, tc: after GRO, one skb may be many frames */
	NL_HOOK_TC_EGRESS = 2,	/* egress, tc: before GSO/TSO, one skb may be many frames */
};

/* Load-time configuration, a `const volatile` global of the data path. */
struct nl_config {
	enum nl_key_mode key_mode;
	__u32 vlan;	/* non-zero: the outer VLAN id is part of the key */
	__u32 mask4;	/* IPv4 prefix mask, network byte order */
	__u32 mask6[4]; /* IPv6 prefix mask, network byte order */
	enum nl_hook hook;
};

/* nl_cut_ctl.phase */
enum nl_cut_phase {
	NL_CUT_IDLE = 0, /* the cut `seq` is finished: taken, committed, cleared */
	NL_CUT_OPEN = 1, /* the cut `seq` was taken from the kernel and is not yet cleared */
};

/*
 * Where a ledger's numbered cuts stand, in a map of its own (nl_ctl) that
 * outlives the process (it is pinned with the ledger): a process started
 * after a crash finds the cut that was open, redoes or finishes it, and
 * numbers the next one. Userspace writes it; the exchange program notes in
 * it what it staged for the open cut.
 */
struct nl_cut_ctl {
	__u64 seq;	/* the last finished cut (IDLE) or the open one (OPEN) */
	__u64 start_ns; /* wall-clock ns since the Unix epoch: the cut's interval start */
	__u64 end_ns;	/* ... and end (when the cut was taken) */
	__u32 phase;	/* enum nl_cut_phase */
	__u32 old_gen;	/* swap: the generation the open cut took */
	__u32 staged;	/* lock: the exchange staged the open cut's records in nl_out */
	__u32 totaled;	/* lock: `total` holds the buckets at the open cut */
	__u64 records;	/* lock: how many records it staged */
	struct nl_count total[NL_NR_BUCKETS]; /* lock: cumulative buckets at the open cut */
	__u64 total_reroutes;
	struct nl_count base[NL_NR_BUCKETS]; /* lock: cumulative buckets at the last finished cut */
	__u64 base_reroutes;
};

/*
 * Userspace reads every constant above from the objects' BTF (the skeletons
 * turn each enum into a Rust type with its values), so none is copied by
 * hand. An enum reaches BTF only through a typed variable or field; this
 * struct, instantiated once in .rodata by parse.h, anchors the enums no
 * shared struct uses.
 */
struct nl_btf_anchor {
	enum nl_bucket bucket;
	enum nl_key_flags key_flags;
	enum nl_limits limits;
	enum nl_exchange_result exchange_result;
	enum nl_cut_phase cut_phase;
	struct nl_cut_ctl cut_ctl;
	enum nl_hook hook;
};

#endif /* NETLEDGER_H */
