/*
 * utf8.c - strict UTF-8 checks and the escaped form of text; see utf8.h.
 */
#include "teacher/utf8.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Most bytes an input byte escapes into: a NUL becomes \u0000. */
#define ESCAPE_GROWTH 6

unsigned int
utf8_code_point(const unsigned char *s, size_t n)
{
	static const unsigned char lead_mask[5] = {0, 0x7F, 0x1F, 0x0F, 0x07};
	unsigned int cp = s[0] & lead_mask[n];

	for (size_t k = 1; k < n; k++)
		cp = (cp << 6) | (s[k] & 0x3F);
	return cp;
}

/*
 * What the character (or stray byte) at s is: fills *flaw when it keeps the
 * text from being stored as it is, and returns how many bytes it spans.
 */
static size_t
classify(const unsigned char *s, size_t avail, Utf8Storable storable,
		 void *arg, Utf8Flaw *flaw)
{
	size_t		n = utf8_char_len(s, avail);

	flaw->kind = UTF8_FLAW_NONE;
	flaw->byte = s[0];
	if (n == 0)
	{
		flaw->kind = UTF8_FLAW_INVALID;
		return 1;
	}
	if (s[0] == '\0')
		flaw->kind = UTF8_FLAW_NUL;
	else if (n > 1 && storable != NULL && !storable((const char *) s, n, arg))
	{
		flaw->kind = UTF8_FLAW_UNSTORABLE;
		flaw->code_point = utf8_code_point(s, n);
	}
	return n;
}

Utf8Flaw
utf8_find_flaw(const char *s, size_t len, Utf8Storable storable, void *arg)
{
	const unsigned char *u = (const unsigned char *) s;
	Utf8Flaw	flaw = {UTF8_FLAW_NONE, len, 0, 0};

	for (size_t i = 0; i < len;)
	{
		size_t		n = classify(u + i, len - i, storable, arg, &flaw);

		if (flaw.kind != UTF8_FLAW_NONE)
		{
			flaw.offset = i;
			return flaw;
		}
		i += n;
	}
	flaw.offset = len;
	return flaw;
}

/* Write the escape for a flaw, or for a backslash; returns its length. */
static size_t
write_escape(char *out, const Utf8Flaw *flaw)
{
	switch (flaw->kind)
	{
		case UTF8_FLAW_INVALID:
			return (size_t) sprintf(out, "\\x%02X", flaw->byte);
		case UTF8_FLAW_NUL:
			return (size_t) sprintf(out, "\\u0000");
		case UTF8_FLAW_UNSTORABLE:
			return (size_t) sprintf(out, flaw->code_point > 0xFFFF ? "\\U%08X" : "\\u%04X",
									flaw->code_point);
		case UTF8_FLAW_NONE:
			break;
	}
	return (size_t) sprintf(out, "\\\\");
}

char *
utf8_escape(const char *s, size_t len, Utf8Storable storable, void *arg)
{
	const unsigned char *u = (const unsigned char *) s;
	char	   *out = malloc(len * ESCAPE_GROWTH + 1);
	size_t		used = 0;

	if (out == NULL)
		return NULL;
	for (size_t i = 0; i < len;)
	{
		Utf8Flaw	flaw;
		size_t		n = classify(u + i, len - i, storable, arg, &flaw);

		if (flaw.kind != UTF8_FLAW_NONE || s[i] == '\\')
			used += write_escape(out + used, &flaw);
		else
		{
			memcpy(out + used, s + i, n);
			used += n;
		}
		i += n;
	}
	out[used] = '\0';
	return out;
}
