/* SPDX-License-Identifier: (GPL-2.0-only OR MIT) */
/* See types.h beside this file: 64-bit Linux targets use the generic definitions. */
#ifndef PREEMPTTRACE_ASM_BITSPERLONG_H
#define PREEMPTTRACE_ASM_BITSPERLONG_H

#include <asm-generic/bitsperlong.h>

#endif
