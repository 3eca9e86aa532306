/*
 * tokenizer_pretrained_io.c - a pretrained checkpoint's tokenizer as bytes.
 *
 * Serialized layout, every integer a little-endian uint32 (-1 written as
 * 0xFFFFFFFF):
 *
 *   "DSTP"                        magic, 4 bytes
 *   version                       PRE_FORMAT_VERSION
 *   algorithm                     1 SentencePiece-style, 2 byte-level
 *   n_tokens
 *   bos eos unk                   ids, or -1
 *   flags                         PRE_* of tokenizer_pretrained_internal.h
 *   sp_prefix                     SP_PREFIX_*
 *   n_tokens x (type len bytes[len])
 *                                 type: TT_* | TT_LITERAL; bytes decoded
 *   n_merges, n_merges x (left right prio)
 *                                 in order; the result is the token of
 *                                 left's bytes followed by right's
 *   n_patterns, n_patterns x (literal len bytes[len])
 *                                 the pre-tokenizer's regexes, in order
 *   crc32c                        of every byte before it
 *
 * Loading goes through the same building steps as the loaders, so every
 * field is checked (ids, types, lengths, that each merge makes a token,
 * that the regexes compile) and the derived tables (lookups, byte tokens,
 * added tokens, compiled regexes) are rebuilt; serializing what was
 * loaded gives the same bytes.
 */
#include <stdlib.h>
#include <string.h>

#include "core/crc32c.h"
#include "core/tokenizer_pretrained_internal.h"

#define PRE_FORMAT_VERSION 1
#define PRE_HEADER_WORDS 9		/* magic .. sp_prefix, in 4-byte words */

static uint8_t *
put_id(uint8_t *q, int32_t id)
{
	return le_put_u32(q, (uint32_t) id);
}

void *
pre_serialize(const Pretrained *p, size_t *len_out)
{
	size_t		size = 4 * PRE_HEADER_WORDS + 8 * (size_t) p->n_tokens + p->pool_len +
		4 + 12 * (size_t) p->n_merges + 4 + 4;
	uint8_t    *buf;
	uint8_t    *q;

	for (int k = 0; k < p->n_patterns; k++)
		size += 8 + p->pattern_len[k];
	if ((buf = malloc(size)) == NULL)
		return NULL;
	memcpy(buf, PRE_MAGIC, 4);
	q = le_put_u32(buf + 4, PRE_FORMAT_VERSION);
	q = le_put_u32(q, (uint32_t) p->kind);
	q = le_put_u32(q, (uint32_t) p->n_tokens);
	q = put_id(q, p->bos);
	q = put_id(q, p->eos);
	q = put_id(q, p->unk);
	q = le_put_u32(q, p->flags);
	q = le_put_u32(q, p->sp_prefix);
	for (int32_t id = 0; id < p->n_tokens; id++)
	{
		q = le_put_u32(q, p->type[id]);
		q = le_put_u32(q, p->len[id]);
		memcpy(q, p->pool + p->off[id], p->len[id]);
		q += p->len[id];
	}
	q = le_put_u32(q, (uint32_t) p->n_merges);
	for (int32_t m = 0; m < p->n_merges; m++)
	{
		q = put_id(q, p->merge_left[m]);
		q = put_id(q, p->merge_right[m]);
		q = le_put_u32(q, p->merge_prio[m]);
	}
	q = le_put_u32(q, (uint32_t) p->n_patterns);
	for (int k = 0; k < p->n_patterns; k++)
	{
		q = le_put_u32(q, p->pattern_literal[k]);
		q = le_put_u32(q, p->pattern_len[k]);
		memcpy(q, p->pattern[k], p->pattern_len[k]);
		q += p->pattern_len[k];
	}
	le_put_u32(q, crc32c(0, buf, (size_t) (q - buf)));
	*len_out = size;
	return buf;
}

/* Reading the blob: every read checks that its bytes are there. */
typedef struct Reader
{
	const uint8_t *pos;
	const uint8_t *end;			/* the checksum's first byte */
} Reader;

static bool
read_u32(Reader *r, uint32_t *value)
{
	if (r->end - r->pos < 4)
		return false;
	*value = le_get_u32(r->pos);
	r->pos += 4;
	return true;
}

static bool
read_bytes(Reader *r, size_t len, const uint8_t **bytes)
{
	if ((size_t) (r->end - r->pos) < len)
		return false;
	*bytes = r->pos;
	r->pos += len;
	return true;
}

static bool
read_id(Reader *r, int32_t *id)
{
	uint32_t	v;

	if (!read_u32(r, &v))
		return false;
	*id = v == UINT32_MAX ? -1 : v > INT32_MAX ? INT32_MAX : (int32_t) v;
	return true;
}

static bool
truncated(CoreError *err, size_t len)
{
	core_error(err, CORE_ERR_CORRUPT, "truncated tokenizer: %zu bytes", len);
	return false;
}

static bool
read_tokens(Pretrained *p, Reader *r, size_t len, CoreError *err)
{
	for (int32_t id = 0; id < p->n_tokens; id++)
	{
		uint32_t	type,
					n;
		const uint8_t *bytes;

		if (!read_u32(r, &type) || !read_u32(r, &n) || !read_bytes(r, n, &bytes))
			return truncated(err, len);
		if (!pre_set_token(p, id, type, bytes, n, CORE_ERR_CORRUPT, err))
			return false;
	}
	return pre_finish_vocab(p, CORE_ERR_CORRUPT, err);
}

static bool
read_merges_and_patterns(Pretrained *p, Reader *r, size_t len, CoreError *err)
{
	uint32_t	n;

	if (!read_u32(r, &n))
		return truncated(err, len);
	if (n > (size_t) (r->end - r->pos) / 12)
		return truncated(err, len);
	for (uint32_t m = 0; m < n; m++)
	{
		int32_t		left,
					right;
		uint32_t	prio;

		if (!read_id(r, &left) || !read_id(r, &right) || !read_u32(r, &prio))
			return truncated(err, len);
		if (!pre_add_merge(p, left, right, prio, CORE_ERR_CORRUPT, err))
			return false;
	}
	if (!read_u32(r, &n))
		return truncated(err, len);
	for (uint32_t k = 0; k < n; k++)
	{
		uint32_t	literal,
					plen;
		const uint8_t *bytes;

		if (!read_u32(r, &literal) || !read_u32(r, &plen) || !read_bytes(r, plen, &bytes))
			return truncated(err, len);
		if (literal > 1)
		{
			core_error(err, CORE_ERR_CORRUPT, "corrupt tokenizer: pattern flag %u", literal);
			return false;
		}
		if (!pre_add_pattern(p, (const char *) bytes, plen, literal == 1,
							 CORE_ERR_CORRUPT, err))
			return false;
	}
	return true;
}

Tokenizer *
pre_deserialize(const void *data, size_t len, CoreError *err)
{
	const uint8_t *b = data;
	Reader		r;
	uint32_t	version,
				kind,
				n_tokens;
	Pretrained *p;

	if (len < 4 * PRE_HEADER_WORDS + 4)
	{
		truncated(err, len);
		return NULL;
	}
	if (crc32c(0, b, len - 4) != le_get_u32(b + len - 4))
	{
		core_error(err, CORE_ERR_CORRUPT, "corrupt tokenizer: checksum mismatch");
		return NULL;
	}
	version = le_get_u32(b + 4);
	kind = le_get_u32(b + 8);
	n_tokens = le_get_u32(b + 12);
	if (version != PRE_FORMAT_VERSION)
	{
		core_error(err, CORE_ERR_CORRUPT,
				   "unsupported tokenizer format version %u (this build reads %d)", version,
				   PRE_FORMAT_VERSION);
		return NULL;
	}
	if ((kind != TOKENIZER_SP && kind != TOKENIZER_BYTE_BPE) || n_tokens == 0 ||
		n_tokens > TOK_MAX_VOCAB || n_tokens > (len - 4 * PRE_HEADER_WORDS) / 8)
	{
		core_error(err, CORE_ERR_CORRUPT,
				   "inconsistent tables: algorithm %u with %u tokens in %zu bytes", kind,
				   n_tokens, len);
		return NULL;
	}
	if ((p = pre_alloc((int) kind, (int32_t) n_tokens)) == NULL)
	{
		core_error(err, CORE_ERR_NO_MEMORY, "out of memory");
		return NULL;
	}
	r.pos = b + 16;
	r.end = b + len - 4;
	read_id(&r, &p->bos);
	read_id(&r, &p->eos);
	read_id(&r, &p->unk);
	read_u32(&r, &p->flags);
	read_u32(&r, &p->sp_prefix);
	if (!read_tokens(p, &r, len, err) || !read_merges_and_patterns(p, &r, len, err))
	{
		pre_free(p);
		return NULL;
	}
	if (r.pos != r.end)
	{
		core_error(err, CORE_ERR_CORRUPT, "corrupt tokenizer: %zu bytes after the end",
				   (size_t) (r.end - r.pos));
		pre_free(p);
		return NULL;
	}
	return tok_wrap_pretrained(p, CORE_ERR_CORRUPT, err);
}
