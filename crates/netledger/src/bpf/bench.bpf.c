// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/* Reference programs for measurements: what counting is compared against. */
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

char LICENSE[] SEC("license") = "Dual BSD/GPL";

/* The cheapest possible XDP program: the baseline of every ns/packet figure. */
SEC("xdp.frags")
int nl_empty(struct xdp_md *ctx)
{
	return XDP_PASS;
}
