/* SPDX-License-Identifier: (GPL-2.0-only OR MIT) */
/*
 * The BPF target has no multiarch include directory, so <linux/types.h> cannot find the
 * <asm/types.h> of the host. Every 64-bit Linux architecture we build for uses the generic
 * "long long" integer layout, which is all that header provides.
 */
#ifndef PREEMPTTRACE_ASM_TYPES_H
#define PREEMPTTRACE_ASM_TYPES_H

#include <asm-generic/int-ll64.h>

#endif
