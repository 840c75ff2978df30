/* SPDX-License-Identifier: (GPL-2.0-only OR MIT) */
/* See types.h beside this file: 64-bit Linux targets use the generic definitions. */
#ifndef PREEMPTTRACE_ASM_POSIX_TYPES_H
#define PREEMPTTRACE_ASM_POSIX_TYPES_H

#include <asm-generic/posix_types.h>

#endif
