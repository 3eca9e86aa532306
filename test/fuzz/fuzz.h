/*
 * fuzz.h - what the libFuzzer targets of test/fuzz share: copies of the
 * input in the shapes the code under test takes, checksum repair, and the
 * checks of properties the headers promise.
 *
 * A failed check prints what broke and aborts, which libFuzzer reports as
 * a crash and saves the input (test/fuzz/README.md).
 */
#ifndef DISTILL_FUZZ_H
#define DISTILL_FUZZ_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/crc32c.h"

#define FUZZ_CHECK(cond, ...)                                               \
	do {                                                                    \
		if (!(cond)) {                                                      \
			fprintf(stderr, "%s:%d: fuzz check failed: %s: ", __FILE__,     \
					__LINE__, #cond);                                       \
			fprintf(stderr, __VA_ARGS__);                                   \
			fputc('\n', stderr);                                            \
			abort();                                                        \
		}                                                                   \
	} while (0)

/*
 * A malloc'd copy of exactly len bytes (so ASan catches a read one past
 * the end), plus a NUL when nul_terminate; never NULL (out of memory
 * aborts: libFuzzer's malloc limit reports it).
 */
static inline char *
fuzz_copy(const uint8_t *data, size_t len, bool nul_terminate)
{
	char	   *copy = malloc(len + (nul_terminate ? 1 : 0) + (len == 0));

	if (copy == NULL)
		abort();
	if (len > 0)
		memcpy(copy, data, len);
	if (nul_terminate)
		copy[len] = '\0';
	return copy;
}

/*
 * Cut *data at the first NUL byte: returns the part before it as a new C
 * string and moves *data and *len past the NUL.  Without a NUL, returns
 * NULL and leaves them alone.
 */
static inline char *
fuzz_take_field(const uint8_t **data, size_t *len)
{
	const uint8_t *nul = memchr(*data, '\0', *len);
	char	   *field;

	if (nul == NULL)
		return NULL;
	field = fuzz_copy(*data, (size_t) (nul - *data), true);
	*len -= (size_t) (nul - *data) + 1;
	*data = nul + 1;
	return field;
}

static inline void
fuzz_put_u32(uint8_t *p, uint32_t value)
{
	for (int i = 0; i < 4; i++)
		p[i] = (uint8_t) (value >> (8 * i));
}

/*
 * Write the CRC-32C of buf[0 .. n) little-endian at buf + n, as the
 * serialized formats do, so that a mutated blob gets past its checksum and
 * into the checks behind it.
 */
static inline void
fuzz_reseal(uint8_t *buf, size_t n)
{
	fuzz_put_u32(buf + n, crc32c(0, buf, n));
}

/*
 * Is s[0 .. len) well-formed UTF-8 (no overlongs, surrogates or code
 * points past U+10FFFF)?  Written here rather than shared with the code
 * under test, so that a mistake there is not repeated here.
 */
static inline bool
fuzz_utf8_valid(const char *text, size_t len)
{
	const unsigned char *s = (const unsigned char *) text;
	size_t		i = 0;

	while (i < len)
	{
		unsigned int c = s[i];
		size_t		n;
		unsigned int cp;

		if (c < 0x80)
		{
			i++;
			continue;
		}
		if (c >= 0xC2 && c <= 0xDF)
			n = 2, cp = c & 0x1F;
		else if (c >= 0xE0 && c <= 0xEF)
			n = 3, cp = c & 0x0F;
		else if (c >= 0xF0 && c <= 0xF4)
			n = 4, cp = c & 0x07;
		else
			return false;
		if (len - i < n)
			return false;
		for (size_t k = 1; k < n; k++)
		{
			if ((s[i + k] & 0xC0) != 0x80)
				return false;
			cp = (cp << 6) | (s[i + k] & 0x3F);
		}
		if ((n == 3 && (cp < 0x800 || (cp >= 0xD800 && cp <= 0xDFFF))) ||
			(n == 4 && (cp < 0x10000 || cp > 0x10FFFF)))
			return false;
		i += n;
	}
	return true;
}

#endif
