/*
 * tokenizer_io.c - the tokenizer as bytes.
 *
 * Serialized layout, every integer a little-endian uint32:
 *
 *   "DSTK"                         magic, 4 bytes
 *   version                        TOK_FORMAT_VERSION
 *   pretokenizer                   TOK_PRETOKENIZER: tokenizer.h's chunking
 *   n_tokens n_merges n_special    n_tokens = 256 + n_merges + n_special
 *   byte_id[256]                   token id of each byte value
 *   n_merges x (left right result) in merge order: rank 0 first
 *   n_special x (role id name_len name[name_len])
 *                                  role 1 <pad>, 2 <bos>, 3 <eos>, 4 <sep>
 *   crc32c                         of every byte before it
 *
 * Every id is defined exactly once (by byte_id, as a merge result or as a
 * special token); a merge may only use ids defined before it.
 *
 * The tokenizers of pretrained checkpoints have a layout of their own,
 * magic "DSTP" (tokenizer_pretrained_io.c); tok_serialize() and
 * tok_deserialize() hand them on, so this layout is unchanged.
 */
#include "core/tokenizer.h"

#include <stdlib.h>
#include <string.h>

#include "core/crc32c.h"
#include "core/tokenizer_internal.h"
#include "core/tokenizer_pretrained_internal.h"
#include "core/util.h"

#define TOK_MAGIC "DSTK"
#define TOK_FORMAT_VERSION 1
#define TOK_PRETOKENIZER 1
#define TOK_HEADER_BYTES 24		/* magic .. n_special */

void *
tok_serialize(const Tokenizer *t, size_t *len_out)
{
	size_t		size = TOK_HEADER_BYTES + 4 * 256 + 12 * (size_t) t->n_merges;
	uint8_t    *buf;
	uint8_t    *p;

	if (t->pretrained != NULL)
		return pre_serialize(t->pretrained, len_out);
	for (int role = 1; role <= N_ROLES; role++)
		size += 12 + t->len[t->special_id[role]];
	size += 4;					/* checksum */
	if ((buf = malloc(size)) == NULL)
		return NULL;
	memcpy(buf, TOK_MAGIC, 4);
	p = le_put_u32(buf + 4, TOK_FORMAT_VERSION);
	p = le_put_u32(p, TOK_PRETOKENIZER);
	p = le_put_u32(p, (uint32_t) t->n_tokens);
	p = le_put_u32(p, (uint32_t) t->n_merges);
	p = le_put_u32(p, N_ROLES);
	for (int b = 0; b < 256; b++)
		p = le_put_u32(p, (uint32_t) t->byte_id[b]);
	for (int32_t r = 0; r < t->n_merges; r++)
	{
		p = le_put_u32(p, (uint32_t) t->merge_left[r]);
		p = le_put_u32(p, (uint32_t) t->merge_right[r]);
		p = le_put_u32(p, (uint32_t) t->merge_result[r]);
	}
	for (int role = 1; role <= N_ROLES; role++)
	{
		int32_t		id = t->special_id[role];

		p = le_put_u32(p, (uint32_t) role);
		p = le_put_u32(p, (uint32_t) id);
		p = le_put_u32(p, t->len[id]);
		memcpy(p, t->pool + t->off[id], t->len[id]);
		p += t->len[id];
	}
	le_put_u32(p, crc32c(0, buf, (size_t) (p - buf)));
	*len_out = size;
	return buf;
}

/*
 * Check the blob's header and size: every field must lie inside it and the
 * checksum must be its last four bytes.
 */
static bool
check_envelope(const uint8_t *b, size_t len, CoreError *err)
{
	uint32_t	n_tokens,
				n_merges,
				n_special;
	size_t		pos;
	bool		truncated;

	if (len < 4 || memcmp(b, TOK_MAGIC, 4) != 0)
	{
		if (len < 4 && (len == 0 || memcmp(b, TOK_MAGIC, len) == 0))
			core_error(err, CORE_ERR_CORRUPT, "truncated tokenizer: %zu bytes", len);
		else
			core_error(err, CORE_ERR_CORRUPT, "not a distill tokenizer (bad magic)");
		return false;
	}
	if (len < TOK_HEADER_BYTES)
	{
		core_error(err, CORE_ERR_CORRUPT, "truncated tokenizer: %zu bytes", len);
		return false;
	}
	if (le_get_u32(b + 4) != TOK_FORMAT_VERSION)
	{
		core_error(err, CORE_ERR_CORRUPT,
				   "unsupported tokenizer format version %u (this build reads %d)",
				   le_get_u32(b + 4), TOK_FORMAT_VERSION);
		return false;
	}
	if (le_get_u32(b + 8) != TOK_PRETOKENIZER)
	{
		core_error(err, CORE_ERR_CORRUPT, "unsupported pre-tokenizer %u", le_get_u32(b + 8));
		return false;
	}
	n_tokens = le_get_u32(b + 12);
	n_merges = le_get_u32(b + 16);
	n_special = le_get_u32(b + 20);
	if (n_tokens > TOK_MAX_VOCAB || n_special != N_ROLES ||
		(uint64_t) n_tokens != 256 + (uint64_t) n_merges + n_special)
	{
		core_error(err, CORE_ERR_CORRUPT,
				   "inconsistent tables: %u tokens, %u merges, %u special tokens",
				   n_tokens, n_merges, n_special);
		return false;
	}
	/* pos <= len holds after each step, so len - pos never wraps. */
	pos = TOK_HEADER_BYTES + 4 * 256 + 12 * (size_t) n_merges;
	truncated = pos > len;
	for (uint32_t i = 0; i < n_special && !truncated; i++)
	{
		truncated = len - pos < 12 || len - pos - 12 < le_get_u32(b + pos + 8);
		if (!truncated)
			pos += 12 + (size_t) le_get_u32(b + pos + 8);
	}
	if (truncated || len - pos < 4)
	{
		core_error(err, CORE_ERR_CORRUPT, "truncated tokenizer: %zu bytes", len);
		return false;
	}
	if (len - pos > 4)
	{
		core_error(err, CORE_ERR_CORRUPT, "corrupt tokenizer: %zu bytes after the end",
				   len - pos - 4);
		return false;
	}
	if (crc32c(0, b, pos) != le_get_u32(b + pos))
	{
		core_error(err, CORE_ERR_CORRUPT, "corrupt tokenizer: checksum mismatch");
		return false;
	}
	return true;
}

/* Define every token from an intact blob and check that none is missing. */
static bool
read_tables(Tokenizer *t, const uint8_t *b, CoreError *err)
{
	const uint8_t *p = b + TOK_HEADER_BYTES;
	uint32_t	n_merges = le_get_u32(b + 16);

	for (int byte = 0; byte < 256; byte++, p += 4)
		if (!define_byte(t, byte, le_get_u32(p), err))
			return false;
	for (uint32_t r = 0; r < n_merges; r++, p += 12)
		if (!define_merge(t, le_get_u32(p), le_get_u32(p + 4), le_get_u32(p + 8),
						  err))
			return false;
	for (int i = 0; i < N_ROLES; i++)
	{
		uint32_t	name_len = le_get_u32(p + 8);

		if (!define_special(t, le_get_u32(p), le_get_u32(p + 4), p + 12, name_len,
							err))
			return false;
		p += 12 + name_len;
	}
	/* With n_tokens = 256 + n_merges + n_special, no id can be left out. */
	return true;
}

Tokenizer *
tok_deserialize(const void *data, size_t len, CoreError *err)
{
	const uint8_t *b = data;
	Tokenizer  *t;

	if (b == NULL)
		len = 0;
	if (len >= 4 && memcmp(b, PRE_MAGIC, 4) == 0)
		return pre_deserialize(b, len, err);
	if (!check_envelope(b, len, err))
		return NULL;
	t = tok_alloc((int32_t) le_get_u32(b + 12), (int32_t) le_get_u32(b + 16));
	if (t == NULL)
	{
		core_error(err, CORE_ERR_NO_MEMORY, "out of memory");
		return NULL;
	}
	if (!read_tables(t, b, err))
	{
		tok_free(t);
		return NULL;
	}
	return t;
}
