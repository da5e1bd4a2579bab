/* The version of strata, and the version of Redis whose behaviour it follows. */
#ifndef STRATA_BASE_VERSION_H
#define STRATA_BASE_VERSION_H

#define STRATA_VERSION       "0.1.0"
#define STRATA_REDIS_VERSION "7.0.0"

#endif
