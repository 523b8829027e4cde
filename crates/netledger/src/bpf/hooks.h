/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * The entry points of every data path, the same for both strategies: parse
 * the frame, work out what it is on the wire, and hand it to the
 * strategy's account(), which the including object defines first. Only
 * the one for the ledger's hook is loaded.
 */
#ifndef NETLEDGER_HOOKS_H
#define NETLEDGER_HOOKS_H

/* Ingress through XDP: every frame as the driver received it. */
SEC("xdp.frags")
int nl_xdp(struct xdp_md *ctx)
{
	void *data = (void *)(long)ctx->data;
	void *end = (void *)(long)ctx->data_end;
	/* The whole frame, every fragment of a multi-buffer one included. */
	__u64 len = bpf_xdp_get_buff_len(ctx);
	struct nl_flow_key key = {};
	struct nl_frame fr;
	__u32 bucket;

	bucket = parse_frame(data, end, len, &key, &fr, 0);
	account(bucket, &key, xdp_add(len, &fr));
	return XDP_PASS;
}

/*
 * Ingress or egress through tc (tcx or clsact): an skb, which may be a
 * GSO/GRO packet of many wire frames. Never changes the packet's fate: the
 * next program (or the default action) decides.
 */
SEC("tc")
int nl_tc(struct __sk_buff *skb)
{
	struct nl_flow_key key = {};
	struct nl_frame fr;
	void *data, *end;
	__u32 bucket;

	tc_headers(skb, &data, &end);
	bucket = parse_frame(data, end, skb->len, &key, &fr, tc_outer_tag(skb));
	account(bucket, &key, tc_add(skb, &fr));
	return TC_ACT_UNSPEC;
}

#endif /* NETLEDGER_HOOKS_H */
