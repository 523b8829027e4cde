// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/* netledger, strategy `swap` (placeholder until the data path lands). */
#include "parse.h"

char LICENSE[] SEC("license") = "Dual BSD/GPL";

SEC("xdp.frags")
int nl_xdp(struct xdp_md *ctx)
{
	return XDP_PASS;
}
