/*
 * unit.h - the smallest test harness that does the job.
 *
 * Each test program includes this header, calls CHECK() for each assertion
 * and ends main() with `return unit_summary("name");`, which prints
 * "name: N passed, N failed" and returns the exit status.
 */
#ifndef DISTILL_UNIT_H
#define DISTILL_UNIT_H

#include <stdio.h>

static int unit_passed, unit_failed;

#define CHECK(cond)                                                         \
	do {                                                                    \
		if (cond)                                                           \
			unit_passed++;                                                  \
		else {                                                              \
			unit_failed++;                                                  \
			fprintf(stderr, "%s:%d: check failed: %s\n", __FILE__, __LINE__, \
					#cond);                                                 \
		}                                                                   \
	} while (0)

/* CHECK with a printf-style explanation printed on failure. */
#define CHECKF(cond, ...)                                                   \
	do {                                                                    \
		if (cond)                                                           \
			unit_passed++;                                                  \
		else {                                                              \
			unit_failed++;                                                  \
			fprintf(stderr, "%s:%d: check failed: %s: ", __FILE__, __LINE__, \
					#cond);                                                 \
			fprintf(stderr, __VA_ARGS__);                                   \
			fputc('\n', stderr);                                            \
		}                                                                   \
	} while (0)

static inline int
unit_summary(const char *name)
{
	printf("%s: %d passed, %d failed\n", name, unit_passed, unit_failed);
	return unit_failed == 0 ? 0 : 1;
}

#endif
