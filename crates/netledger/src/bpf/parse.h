/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * Frame parsing and key shaping, shared by the data paths of every strategy.
 * Each BPF object includes it once; it defines the object's configuration.
 */
#ifndef NETLEDGER_PARSE_H
#define NETLEDGER_PARSE_H

#include <linux/bpf.h>
#include <linux/pkt_cls.h>
#include <linux/if_ether.h>
#include <linux/in.h>
#include <linux/ip.h>
#include <linux/ipv6.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>

#include "netledger.h"

/* Written by the loader before load; the verifier prunes the other modes. */
const volatile struct nl_config nl_cfg = {};

/* The ledger's cut control record (struct nl_cut_ctl in netledger.h). */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct nl_cut_ctl);
} nl_ctl SEC(".maps");

/* Never read by the programs: carries the shared enums into BTF (netledger.h). */
const volatile struct nl_btf_anchor nl_btf_anchor = {};

#define compiler_barrier() asm volatile("" ::: "memory")

#define ETH_P_8021AD_ 0x88A8
#define IPPROTO_ICMPV6_ 58
#define IPV6_HOPOPTS 0
#define IPV6_ROUTING 43
#define IPV6_FRAGMENT 44
#define IPV6_DSTOPTS 60

struct vlan_tag {
	__be16 tci;
	__be16 proto;
};

/* What a parse learns of a frame's layout, besides its key. */
struct nl_frame {
	__u64 l3_off; /* bytes before the IP header (Ethernet and VLAN tags) */
	__u64 ip_len; /* the IP datagram's length as its header says (no padding) */
	__u64 hdr;    /* headers up to the L4 payload: what every GSO/GRO segment repeats */
};

/*
 * Fill ports or ICMP type/code from the L4 header at l4. l4_len is what the
 * IP header says follows: the L4 header must fit in it as well as in the
 * frame, or Ethernet padding would be read as its fields. fr->hdr becomes
 * the headers' length (L2 to the end of the L4 header, from l4_off).
 */
static __always_inline __u32 parse_l4(void *l4, void *end, __u64 l4_len, __u8 proto,
				      struct nl_flow_key *key, __u64 l4_off, struct nl_frame *fr)
{
	__u8 *p = l4;

	fr->hdr = l4_off;
	switch (proto) {
	case IPPROTO_TCP:
		if (l4 + 20 > end || l4_len < 20)
			return NL_BUCKET_MALFORMED;
		/* The data offset counts options, which every segment carries too. */
		fr->hdr = l4_off + ((p[12] >> 4) < 5 ? 20 : (p[12] >> 4) * 4);
		break;
	case IPPROTO_UDP:
	case IPPROTO_UDPLITE:
		if (l4 + 8 > end || l4_len < 8)
			return NL_BUCKET_MALFORMED;
		fr->hdr = l4_off + 8;
		break;
	case IPPROTO_SCTP:
		if (l4 + 12 > end || l4_len < 12)
			return NL_BUCKET_MALFORMED;
		break;
	case IPPROTO_ICMP:
	case IPPROTO_ICMPV6_:
		/* ICMP of the other family (1 in IPv6, 58 in IPv4) is just another protocol. */
		if (proto != (key->family == 4 ? IPPROTO_ICMP : IPPROTO_ICMPV6_))
			return NL_BUCKET_COUNTED;
		if (l4 + 8 > end || l4_len < 8)
			return NL_BUCKET_MALFORMED;
		key->sport = p[0];
		key->dport = p[1];
		key->flags |= NL_KEY_F_ICMP;
		return NL_BUCKET_COUNTED;
	default:
		return NL_BUCKET_COUNTED;
	}
	key->sport = ((__u16)p[0] << 8) | p[1];
	key->dport = ((__u16)p[2] << 8) | p[3];
	key->flags |= NL_KEY_F_PORTS;
	return NL_BUCKET_COUNTED;
}

static __always_inline __u32 parse_ipv4(void *pos, void *end, __u64 l3_len, struct nl_flow_key *key,
					__u64 l3_off, struct nl_frame *fr)
{
	struct iphdr *ip = pos;
	__u32 hlen;

	if ((void *)(ip + 1) > end)
		return NL_BUCKET_MALFORMED;
	if (ip->version != 4 || ip->ihl < 5)
		return NL_BUCKET_MALFORMED;
	hlen = ip->ihl * 4;
	if (pos + hlen > end)
		return NL_BUCKET_MALFORMED;
	/* Shorter than it says it is (trailing padding is fine). */
	if (bpf_ntohs(ip->tot_len) < hlen || bpf_ntohs(ip->tot_len) > l3_len)
		return NL_BUCKET_MALFORMED;

	key->family = 4;
	fr->ip_len = bpf_ntohs(ip->tot_len);
	__builtin_memcpy(key->src, &ip->saddr, 4);
	__builtin_memcpy(key->dst, &ip->daddr, 4);
	key->proto = ip->protocol;

	/* Only the first fragment carries the L4 header. */
	if (ip->frag_off & bpf_htons(0x1fff)) {
		key->flags |= NL_KEY_F_FRAGMENT;
		return NL_BUCKET_COUNTED;
	}
	return parse_l4(pos + hlen, end, bpf_ntohs(ip->tot_len) - hlen, ip->protocol, key,
			l3_off + hlen, fr);
}

static __always_inline int ipv6_is_ext(__u8 nexthdr)
{
	return nexthdr == IPV6_HOPOPTS || nexthdr == IPV6_ROUTING || nexthdr == IPV6_DSTOPTS ||
	       nexthdr == IPV6_FRAGMENT;
}

static __always_inline __u32 parse_ipv6(void *pos, void *end, __u64 l3_len, struct nl_flow_key *key,
					__u64 l3_off, struct nl_frame *fr)
{
	struct ipv6hdr *ip6 = pos;
	__u64 limit, off = 0, hlen;
	__u8 nexthdr;
	int i;

	if ((void *)(ip6 + 1) > end)
		return NL_BUCKET_MALFORMED;
	if (ip6->version != 6)
		return NL_BUCKET_MALFORMED;
	/* A zero payload length is a jumbogram; otherwise it must fit. */
	if (ip6->payload_len && sizeof(*ip6) + bpf_ntohs(ip6->payload_len) > l3_len)
		return NL_BUCKET_MALFORMED;
	/* Bytes after the fixed header: extension headers, then L4. */
	if (ip6->payload_len)
		limit = bpf_ntohs(ip6->payload_len);
	else
		limit = l3_len > sizeof(*ip6) ? l3_len - sizeof(*ip6) : 0;

	key->family = 6;
	fr->ip_len = sizeof(*ip6) + limit;
	__builtin_memcpy(key->src, &ip6->saddr, 16);
	__builtin_memcpy(key->dst, &ip6->daddr, 16);
	nexthdr = ip6->nexthdr;
	pos = ip6 + 1;

	/* Up to NL_MAX_IPV6_EXT extension headers; off counts their bytes. */
	for (i = 0; i < NL_MAX_IPV6_EXT && ipv6_is_ext(nexthdr); i++) {
		__u8 *h = pos;

		if (pos + 8 > end || off + 8 > limit)
			return NL_BUCKET_MALFORMED;
		if (nexthdr == IPV6_FRAGMENT) {
			nexthdr = h[0];
			/* Fragment offset: the upper 13 bits of bytes 2-3. */
			if ((((__u16)h[2] << 8) | h[3]) & 0xfff8) {
				key->proto = nexthdr;
				key->flags |= NL_KEY_F_FRAGMENT;
				return NL_BUCKET_COUNTED;
			}
			hlen = 8;
		} else {
			nexthdr = h[0];
			hlen = ((__u64)h[1] + 1) * 8;
		}
		pos += hlen;
		off += hlen;
	}
	/* The chain is longer than the bounded walk. */
	if (ipv6_is_ext(nexthdr))
		return NL_BUCKET_MALFORMED;
	/* The last extension header runs past the payload. */
	if (off > limit)
		return NL_BUCKET_MALFORMED;
	key->proto = nexthdr;
	return parse_l4(pos, end, limit - off, nexthdr, key, l3_off + sizeof(*ip6) + off, fr);
}

/* An skb's outer VLAN tag held apart from its data (nl_frame.outer): this flag, and the tci. */
#define NL_OUTER_TAG (1u << 16)

/*
 * Parse the frame into key; return the bucket it belongs to. fr says where
 * the IP header starts, the IP length, and the headers' length (zeros for
 * what the parse never got to). `outer` is an outer VLAN tag the kernel
 * took out of the frame and keeps beside it (tc: NL_OUTER_TAG | tci), 0
 * for none: it counts as the frame's first tag.
 */
static __always_inline __u32 parse_frame(void *data, void *end, __u64 len, struct nl_flow_key *key,
					 struct nl_frame *fr, __u32 outer)
{
	struct ethhdr *eth = data;
	void *pos = eth + 1;
	__u64 l3_off, l3_len;
	__u16 proto;
	int i, tags = 2;

	fr->l3_off = 0;
	fr->ip_len = 0;
	fr->hdr = 0;
	if (pos > end)
		return NL_BUCKET_MALFORMED;
	proto = eth->h_proto;
	if (outer & NL_OUTER_TAG) {
		tags = 1;
		if (nl_cfg.vlan)
			key->vlan = outer & 0x0fff;
	}

	for (i = 0; i < tags; i++) {
		struct vlan_tag *tag = pos;

		if (proto != bpf_htons(ETH_P_8021Q) && proto != bpf_htons(ETH_P_8021AD_))
			break;
		if ((void *)(tag + 1) > end)
			return NL_BUCKET_MALFORMED;
		if (i == 0 && tags == 2 && nl_cfg.vlan) {
			/* An untagged frame and a priority tag (id 0) share key vlan 0. */
			key->vlan = bpf_ntohs(tag->tci) & 0x0fff;
		}
		proto = tag->proto;
		pos = tag + 1;
	}

	/*
	 * Bytes from the L3 header to the end of the frame, from scalars only:
	 * the verifier refuses arithmetic that mixes a length with packet pointers.
	 */
	l3_off = sizeof(*eth) + i * sizeof(struct vlan_tag);
	l3_len = len > l3_off ? len - l3_off : 0;
	/* On the wire the tag kept apart is in the frame, before the IP header. */
	fr->l3_off = l3_off + (tags == 1 ? sizeof(struct vlan_tag) : 0);
	if (proto == bpf_htons(ETH_P_IP))
		return parse_ipv4(pos, end, l3_len, key, l3_off, fr);
	if (proto == bpf_htons(ETH_P_IPV6))
		return parse_ipv6(pos, end, l3_len, key, l3_off, fr);
	return NL_BUCKET_NON_IP;
}

/* Keep only the fields of the configured key mode, then aggregate prefixes. */
static __always_inline void shape_key(struct nl_flow_key *key)
{
	__u32 *src = (__u32 *)key->src, *dst = (__u32 *)key->dst;
	__u32 mode = nl_cfg.key_mode;

	if (mode != NL_KEY_FIVE_TUPLE) {
		key->proto = 0;
		key->sport = 0;
		key->dport = 0;
		key->flags = 0;
	}
	if (mode == NL_KEY_SRC_IP)
		__builtin_memset(key->dst, 0, sizeof(key->dst));
	if (mode == NL_KEY_DST_IP)
		__builtin_memset(key->src, 0, sizeof(key->src));

	if (key->family == 4) {
		src[0] &= nl_cfg.mask4;
		dst[0] &= nl_cfg.mask4;
	} else {
		src[0] &= nl_cfg.mask6[0];
		src[1] &= nl_cfg.mask6[1];
		src[2] &= nl_cfg.mask6[2];
		src[3] &= nl_cfg.mask6[3];
		dst[0] &= nl_cfg.mask6[0];
		dst[1] &= nl_cfg.mask6[1];
		dst[2] &= nl_cfg.mask6[2];
		dst[3] &= nl_cfg.mask6[3];
	}
}

/*
 * The frame's accounting opens before its flow is touched and closes after
 * its bucket is added, so a settled reading (done == started on every CPU)
 * taken after a flow read includes every packet that flow read saw. Only a
 * data path whose buckets are read live needs the window (strategy lock);
 * one whose buckets are read only once quiescent adds with account_add.
 */
static __always_inline void account_begin(struct nl_stats *st)
{
	*(volatile __u64 *)&st->started = st->started + 1;
	compiler_barrier();
}

/* Add a frame to `seen` and to its bucket (bucket < NL_NR_BUCKETS). */
static __always_inline void account_add(struct nl_stats *st, __u32 bucket, __u32 pkts,
					__u64 bytes)
{
	st->bucket[NL_BUCKET_SEEN].packets += pkts;
	st->bucket[NL_BUCKET_SEEN].bytes += bytes;
	st->bucket[bucket].packets += pkts;
	st->bucket[bucket].bytes += bytes;
}

static __always_inline void account_end(struct nl_stats *st, __u32 bucket, __u32 pkts,
					__u64 bytes)
{
	account_add(st, bucket, pkts, bytes);
	compiler_barrier();
	*(volatile __u64 *)&st->done = st->done + 1;
}

/* Headers a tc program wants in the linear part of an skb before parsing. */
#define NL_PULL 256

/* What one parsed frame, or GSO/GRO packet, adds to its flow and bucket. */
struct nl_add {
	__u32 pkts;	  /* wire frames */
	__u64 bytes;	  /* their L2 bytes */
	__u64 ip_bytes;	  /* their IP bytes (IPFIX octetDeltaCount): no L2 header, no padding */
};

/* One XDP frame: itself, its IP datagram without padding. */
static __always_inline struct nl_add xdp_add(__u64 len, const struct nl_frame *fr)
{
	struct nl_add a = { .pkts = 1, .bytes = len, .ip_bytes = fr->ip_len };

	return a;
}

/*
 * What a tc program's skb is on the wire: one frame, or a GSO/GRO packet of
 * gso_segs frames that each repeat the headers (fr->hdr bytes). At egress
 * the kernel has worked this out already (wire_len: the qdisc packet
 * length, each segment's headers counted; encapsulation included); at
 * ingress after GRO it has not, and it is the packet's length plus the
 * headers of every segment but the first. Each segment's IP bytes are its
 * frame less the L2 header (segments are not padded).
 */
static __always_inline struct nl_add tc_add(struct __sk_buff *skb, const struct nl_frame *fr)
{
	__u32 segs = skb->gso_segs;
	__u64 len = skb->len;
	/* A VLAN tag kept beside the data is in every frame on the wire. */
	__u64 tag = skb->vlan_present ? sizeof(struct vlan_tag) : 0;
	struct nl_add a = { .pkts = 1, .bytes = len + tag, .ip_bytes = fr->ip_len };

	/*
	 * A GSO packet the kernel has not vetted (from a tap or a packet socket:
	 * SKB_GSO_DODGY) has a segment size and no segment count until it is
	 * segmented, after this hook; count its segments as the kernel will
	 * (qdisc_pkt_len_init does the same for wire_len).
	 */
	if (!segs && skb->gso_size && fr->hdr && len > fr->hdr)
		segs = (len - fr->hdr + skb->gso_size - 1) / skb->gso_size;
	if (segs <= 1)
		return a;
	a.pkts = segs;
	if (nl_cfg.hook == NL_HOOK_TC_EGRESS && skb->wire_len >= len)
		a.bytes = skb->wire_len + segs * tag;
	else if (fr->hdr)
		a.bytes = len + (__u64)(segs - 1) * fr->hdr + segs * tag;
	a.ip_bytes = a.bytes > (__u64)segs * fr->l3_off ? a.bytes - (__u64)segs * fr->l3_off : 0;
	return a;
}

/* The outer VLAN tag an skb keeps beside its data, for parse_frame. */
static __always_inline __u32 tc_outer_tag(struct __sk_buff *skb)
{
	return skb->vlan_present ? NL_OUTER_TAG | (skb->vlan_tci & 0xffff) : 0;
}

/*
 * The linear part of a tc program's skb, with the headers pulled into it if
 * they were not (the packet's bytes stay as they are; the skb's head may be
 * copied, a clone's at egress).
 */
static __always_inline void tc_headers(struct __sk_buff *skb, void **data, void **end)
{
	__u32 want = skb->len < NL_PULL ? skb->len : NL_PULL;

	*data = (void *)(long)skb->data;
	*end = (void *)(long)skb->data_end;
	if (*data + want > *end) {
		bpf_skb_pull_data(skb, want);
		*data = (void *)(long)skb->data;
		*end = (void *)(long)skb->data_end;
	}
}

#endif /* NETLEDGER_PARSE_H */
