/* Clocks. Wall-clock time (for expiry, which clients state in Unix time) and a
 * monotonic clock (for durations and timeouts). */
#ifndef STRATA_BASE_CLOCK_H
#define STRATA_BASE_CLOCK_H

#include <stdint.h>

/* Milliseconds since the Unix epoch (CLOCK_REALTIME). */
int64_t clock_realtime_ms(void);

/* Microseconds since the Unix epoch (CLOCK_REALTIME). */
int64_t clock_realtime_us(void);

/* Nanoseconds from an arbitrary fixed point (CLOCK_MONOTONIC). */
int64_t clock_monotonic_ns(void);

/* Milliseconds from an arbitrary fixed point (CLOCK_MONOTONIC). */
int64_t clock_monotonic_ms(void);

#endif
