/*
 * tokenizer_pretok.c - pre-tokenization: where the chunks of a text end
 * (rules in tokenizer.h).  Merges never cross a chunk boundary, so
 * training counts chunks and encoding works chunk by chunk.
 */
#include <string.h>

#include "core/tokenizer_internal.h"

/* Byte classes of the pre-tokenizer. */
enum
{
	CLASS_LETTER,
	CLASS_DIGIT,
	CLASS_SPACE,
	CLASS_OTHER
};

static inline int
byte_class(uint8_t c)
{
	if (c >= 0x80 || ((c | 0x20) >= 'a' && (c | 0x20) <= 'z'))
		return CLASS_LETTER;
	if (c >= '0' && c <= '9')
		return CLASS_DIGIT;
	if (c == ' ' || (c >= '\t' && c <= '\r'))
		return CLASS_SPACE;
	return CLASS_OTHER;
}

/* End of the run of class cls from s[i], looking no further than s[stop - 1]. */
static size_t
run_end(const uint8_t *s, size_t stop, size_t i, int cls)
{
	while (i < stop && byte_class(s[i]) == cls)
		i++;
	return i;
}

/* Length of the contraction starting at the apostrophe s[i], or 0. */
static size_t
contraction_len(const uint8_t *s, size_t len, size_t i)
{
	static const char *const suffixes[] = {
		"s", "t", "m", "d", "re", "ve", "ll"
	};

	for (size_t k = 0; k < sizeof(suffixes) / sizeof(suffixes[0]); k++)
	{
		size_t		n = strlen(suffixes[k]);
		size_t		j;

		if (len - i - 1 < n)
			continue;
		for (j = 0; j < n; j++)
			if ((s[i + 1 + j] | 0x20) != suffixes[k][j])
				break;
		if (j == n && (i + 1 + n == len ||
					   byte_class(s[i + 1 + n]) != CLASS_LETTER))
			return 1 + n;
	}
	return 0;
}

/*
 * End of the chunk starting at s[i] (i < len); rules in tokenizer.h.  It
 * reads no byte past s[i + TOK_MAX_CHUNK_BYTES]: a run is cut there, and
 * the one byte of lookahead after a run lies within that bound, which is
 * what lets tok_encode_prefix() stop early.
 */
size_t
chunk_end(const uint8_t *s, size_t len, size_t i)
{
	size_t		stop = len - i > TOK_MAX_CHUNK_BYTES ? i + TOK_MAX_CHUNK_BYTES : len;
	int			cls = byte_class(s[i]);
	size_t		end;

	if (s[i] == '\'')
	{
		size_t		n = contraction_len(s, len, i);

		if (n > 0)
			return i + n;
	}
	if (s[i] == ' ' && i + 1 < len)
	{
		int			next = byte_class(s[i + 1]);

		if (next == CLASS_LETTER || next == CLASS_OTHER)
			return run_end(s, stop, i + 1, next);
	}
	switch (cls)
	{
		case CLASS_DIGIT:
			return i + 1;
		case CLASS_SPACE:
			end = run_end(s, stop, i, CLASS_SPACE);
			/* a run cut at the bound gives nothing back: more space follows */
			if (end < len && end - i >= 2 && s[end - 1] == ' ' &&
				byte_class(s[end]) != CLASS_DIGIT &&
				byte_class(s[end]) != CLASS_SPACE)
				end--;
			return end;
		default:
			return run_end(s, stop, i, cls);
	}
}
