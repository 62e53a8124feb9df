// CCyphonicMallocCounter: test support only. Interposes malloc & co. in the process it
// is linked into and counts calls per thread, so tests can prove that a hot path makes
// no heap allocation. Never linked into a program.
#ifndef CCYPHONIC_MALLOC_COUNTER_H
#define CCYPHONIC_MALLOC_COUNTER_H
#include <stdint.h>

/// Allocations (malloc, calloc, realloc, aligned variants) made by the calling thread so far.
uint64_t ccy_thread_allocations(void);

#endif
