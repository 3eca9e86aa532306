/*
 * utf8.c - strict UTF-8 checks and the escaped form of text; see utf8.h.
 */
#include "teacher/utf8.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Most bytes an input byte escapes into: a NUL becomes \u0000. */
#define ESCAPE_GROWTH 6

size_t
utf8_char_len(const unsigned char *s, size_t avail)
{
	size_t		n;
	unsigned int cp;
	unsigned int min_cp;

	if (s[0] < 0x80)
		return 1;
	if ((s[0] & 0xE0) == 0xC0)
		n = 2, cp = s[0] & 0x1F, min_cp = 0x80;
	else if ((s[0] & 0xF0) == 0xE0)
		n = 3, cp = s[0] & 0x0F, min_cp = 0x800;
	else if ((s[0] & 0xF8) == 0xF0)
		n = 4, cp = s[0] & 0x07, min_cp = 0x10000;
	else
		return 0;
	if (avail < n)
		return 0;
	for (size_t k = 1; k < n; k++)
	{
		if ((s[k] & 0xC0) != 0x80)
			return 0;
		cp = (cp << 6) | (s[k] & 0x3F);
	}
	/* overlong forms, surrogates, beyond Unicode */
	if (cp < min_cp || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF))
		return 0;
	return n;
}

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
