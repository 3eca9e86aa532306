/*
 * test_utf8.c - the strict UTF-8 check and the escaped form of replies.
 */
#include <stdlib.h>
#include <string.h>

#include "teacher/utf8.h"
#include "unit.h"

/* Byte strings with their length, NULs allowed. */
#define BYTES(s) s, sizeof(s) - 1

static void
test_char_len(void)
{
	static const struct
	{
		const char *bytes;
		size_t		avail;
		size_t		len;
	}			cases[] = {
		{"a", 1, 1},
		{"\0", 1, 1},					/* NUL is a character */
		{"\xC3\xA9", 2, 2},
		{"\xE2\x80\x99", 3, 3},
		{"\xF0\x9F\x98\x80", 4, 4},
		{"\xF4\x8F\xBF\xBF", 4, 4},		/* U+10FFFF, the last one */
		{"\xEF\xBF\xBD", 3, 3},			/* U+FFFD */
		{"\xC3\xA9", 1, 0},				/* cut short */
		{"\xC3(", 2, 0},				/* no continuation byte */
		{"\x80", 1, 0},					/* a lone continuation byte */
		{"\xFF", 1, 0},
		{"\xFE", 1, 0},
		{"\xC0\x80", 2, 0},				/* overlong NUL */
		{"\xC1\xBF", 2, 0},				/* overlong */
		{"\xE0\x80\xAF", 3, 0},			/* overlong '/' */
		{"\xF0\x80\x80\xAF", 4, 0},		/* overlong '/' */
		{"\xED\xA0\x80", 3, 0},			/* U+D800, a surrogate */
		{"\xED\xBF\xBF", 3, 0},			/* U+DFFF */
		{"\xF4\x90\x80\x80", 4, 0},		/* U+110000 */
		{"\xF5\x80\x80\x80", 4, 0},
		{"\xF8\x88\x80\x80\x80", 5, 0}, /* old 5-byte forms */
	};

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++)
		CHECKF(utf8_char_len((const unsigned char *) cases[i].bytes, cases[i].avail) ==
			   cases[i].len, "case %zu", i);
	CHECK(utf8_code_point((const unsigned char *) "\xE2\x80\x99", 3) == 0x2019);
	CHECK(utf8_code_point((const unsigned char *) "\xF0\x9F\x98\x80", 4) == 0x1F600);
	CHECK(utf8_code_point((const unsigned char *) "\xC3\xA9", 2) == 0xE9);
	CHECK(utf8_code_point((const unsigned char *) "z", 1) == 'z');
}

/* A stand-in for LATIN1: only code points below U+0100. */
static bool
latin1_storable(const char *c, size_t n, void *arg)
{
	int		   *calls = arg;

	(*calls)++;
	return utf8_code_point((const unsigned char *) c, n) < 0x100;
}

static void
test_find_flaw(void)
{
	Utf8Flaw	flaw;
	int			calls = 0;

	flaw = utf8_find_flaw(BYTES("plain caf\xC3\xA9 \xE2\x80\x99"), NULL, NULL);
	CHECK(flaw.kind == UTF8_FLAW_NONE && flaw.offset == 15);

	flaw = utf8_find_flaw(BYTES("ab\xED\xA0\x80z"), NULL, NULL);
	CHECK(flaw.kind == UTF8_FLAW_INVALID && flaw.offset == 2 && flaw.byte == 0xED);

	flaw = utf8_find_flaw(BYTES("ab\0c\xFF"), NULL, NULL);
	CHECK(flaw.kind == UTF8_FLAW_NUL && flaw.offset == 2);

	flaw = utf8_find_flaw(BYTES("caf\xC3\xA9 it\xE2\x80\x99s \xFF"), latin1_storable, &calls);
	CHECK(flaw.kind == UTF8_FLAW_UNSTORABLE && flaw.offset == 8 &&
		  flaw.code_point == 0x2019);
	CHECKF(calls == 2, "asked about non-ASCII characters only: %d calls", calls);

	flaw = utf8_find_flaw("", 0, NULL, NULL);
	CHECK(flaw.kind == UTF8_FLAW_NONE && flaw.offset == 0);
}

/* Undo utf8_escape (for the round trip); returns the length. */
static size_t
unescape(const char *s, char *out)
{
	size_t		n = 0;

	while (*s)
	{
		unsigned int cp;

		if (*s != '\\')
		{
			out[n++] = *s++;
			continue;
		}
		switch (s[1])
		{
			case '\\':
				out[n++] = '\\';
				s += 2;
				break;
			case 'x':
				sscanf(s + 2, "%2x", &cp);
				out[n++] = (char) cp;
				s += 4;
				break;
			default:			/* u or U: write the code point as UTF-8 */
				sscanf(s + 2, s[1] == 'u' ? "%4x" : "%8x", &cp);
				s += s[1] == 'u' ? 6 : 10;
				if (cp < 0x80)
					out[n++] = (char) cp;
				else if (cp < 0x800)
				{
					out[n++] = (char) (0xC0 | cp >> 6);
					out[n++] = (char) (0x80 | (cp & 0x3F));
				}
				else if (cp < 0x10000)
				{
					out[n++] = (char) (0xE0 | cp >> 12);
					out[n++] = (char) (0x80 | (cp >> 6 & 0x3F));
					out[n++] = (char) (0x80 | (cp & 0x3F));
				}
				else
				{
					out[n++] = (char) (0xF0 | cp >> 18);
					out[n++] = (char) (0x80 | (cp >> 12 & 0x3F));
					out[n++] = (char) (0x80 | (cp >> 6 & 0x3F));
					out[n++] = (char) (0x80 | (cp & 0x3F));
				}
		}
	}
	return n;
}

static void
check_escape(const char *s, size_t len, Utf8Storable storable, const char *expected)
{
	int			calls = 0;
	char	   *escaped = utf8_escape(s, len, storable, &calls);
	char		back[256];

	if (escaped == NULL)
	{
		CHECKF(false, "out of memory escaping '%s'", expected);
		return;
	}
	CHECKF(strcmp(escaped, expected) == 0, "got '%s', want '%s'", escaped, expected);
	/* Valid, NUL-free (a C string), storable: nothing left to escape. */
	CHECKF(utf8_find_flaw(escaped, strlen(escaped), storable, &calls).kind == UTF8_FLAW_NONE,
		   "'%s' is clean", escaped);
	/* Nothing is lost. */
	CHECKF(unescape(escaped, back) == len && memcmp(back, s, len) == 0,
		   "'%s' gives the original back", escaped);
	free(escaped);
}

static void
test_escape(void)
{
	check_escape(BYTES("plain text"), NULL, "plain text");
	check_escape(BYTES("a\\b"), NULL, "a\\\\b");
	check_escape(BYTES("sur\xED\xA0\x80rogate"), NULL, "sur\\xED\\xA0\\x80rogate");
	check_escape(BYTES("over\xC0\x80long"), NULL, "over\\xC0\\x80long");
	check_escape(BYTES("big\xF4\x90\x80\x80"), NULL, "big\\xF4\\x90\\x80\\x80");
	check_escape(BYTES("\xFF\xFE"), NULL, "\\xFF\\xFE");
	check_escape(BYTES("cut \xC3"), NULL, "cut \\xC3");
	check_escape(BYTES("nul \0 here"), NULL, "nul \\u0000 here");
	check_escape(BYTES("kept: caf\xC3\xA9 \xE2\x80\x99 \xF0\x9F\x98\x80"), NULL,
				 "kept: caf\xC3\xA9 \xE2\x80\x99 \xF0\x9F\x98\x80");
	check_escape(BYTES("caf\xC3\xA9 it\xE2\x80\x99s \xF0\x9F\x98\x80 \\u2019"), latin1_storable,
				 "caf\xC3\xA9 it\\u2019s \\U0001F600 \\\\u2019");
	check_escape("", 0, NULL, "");
}

int
main(void)
{
	test_char_len();
	test_find_flaw();
	test_escape();
	return unit_summary("utf8");
}
