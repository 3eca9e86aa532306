/*
 * utf8.h - strict UTF-8 checks, and an escaped form that loses nothing.
 *
 * Teachers send UTF-8 and PostgreSQL stores only valid text without NUL in
 * the database encoding, so a reply is checked here strictly (RFC 3629: no
 * overlong forms, no surrogates, nothing above U+10FFFF; json-c lets all of
 * these through) before it goes anywhere near PostgreSQL.  A reply that
 * cannot be stored as it is gets an escaped form instead, from which the
 * reply can be recovered.  Plain C; no PostgreSQL headers.
 */
#ifndef DISTILL_TEACHER_UTF8_H
#define DISTILL_TEACHER_UTF8_H

#include <stdbool.h>
#include <stddef.h>

#include "core/util.h"			/* utf8_char_len() */

/* The code point of the character of n bytes at s, as utf8_char_len found it. */
extern unsigned int utf8_code_point(const unsigned char *s, size_t n);

/*
 * Whether the target (a database encoding) can hold the character of n bytes
 * at c.  Only asked about non-ASCII characters: every target holds ASCII.
 */
typedef bool (*Utf8Storable) (const char *c, size_t n, void *arg);

typedef enum Utf8FlawKind
{
	UTF8_FLAW_NONE,
	UTF8_FLAW_INVALID,			/* a byte that starts no valid character */
	UTF8_FLAW_NUL,				/* a NUL, which no C string or text holds */
	UTF8_FLAW_UNSTORABLE		/* a character storable refused */
} Utf8FlawKind;

typedef struct Utf8Flaw
{
	Utf8FlawKind kind;
	size_t		offset;			/* in bytes */
	unsigned char byte;			/* the byte there */
	unsigned int code_point;	/* of the character, for UTF8_FLAW_UNSTORABLE */
} Utf8Flaw;

/*
 * The first thing in s[0, len) that keeps it from being stored as it is,
 * or kind UTF8_FLAW_NONE.  storable NULL means every character is.
 */
extern Utf8Flaw utf8_find_flaw(const char *s, size_t len,
							   Utf8Storable storable, void *arg);

/*
 * s[0, len) escaped: valid UTF-8 without NUL, holding only characters that
 * storable accepts, and from which s can be recovered.  A backslash becomes
 * \\, a byte that starts no valid character \xNN (two upper-case hex digits),
 * NUL \u0000, a refused character \uXXXX (\UXXXXXXXX above U+FFFF); the rest
 * is copied.  Returns a malloc'd string, or NULL when out of memory.
 */
extern char *utf8_escape(const char *s, size_t len,
						 Utf8Storable storable, void *arg);

#endif
