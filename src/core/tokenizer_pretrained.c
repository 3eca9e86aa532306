/*
 * tokenizer_pretrained.c - the tables of a pretrained checkpoint's
 * tokenizer and what both of its kinds share: building the tables one
 * token and one merge at a time (every loader and deserialization go
 * through these steps, which check their input), the BPE merge loop,
 * splitting added tokens out of the text, and decoding.
 *
 * The kinds' own encoders are in tokenizer_sp.c (SentencePiece-style) and
 * tokenizer_bytebpe.c (GPT-2-style byte level), the tokenizer.json reader
 * in tokenizer_hf.c, serialization in tokenizer_pretrained_io.c.
 */
#include "core/tokenizer_pretrained.h"

#include <limits.h>
#include <stdlib.h>
#include <string.h>

#include "core/tokenizer_pretrained_internal.h"

Pretrained *
pre_alloc(int kind, int32_t n_tokens)
{
	Pretrained *p = calloc(1, sizeof(Pretrained));
	size_t		n = (size_t) n_tokens;

	if (p == NULL)
		return NULL;
	p->kind = kind;
	p->n_tokens = n_tokens;
	p->bos = p->eos = p->unk = -1;
	for (int b = 0; b < 256; b++)
		p->byte_id[b] = -1;
	p->type = calloc(n, sizeof(uint8_t));
	p->off = calloc(n, sizeof(uint32_t));
	p->len = calloc(n, sizeof(uint32_t));
	p->pool_cap = 4096;
	p->pool = malloc(p->pool_cap);
	if (p->type == NULL || p->off == NULL || p->len == NULL ||
		p->pool == NULL || !pairmap_init(&p->merge_of, 1024, NULL))
	{
		pre_free(p);
		return NULL;
	}
	return p;
}

void
pre_free(Pretrained *p)
{
	if (p == NULL)
		return;
	free(p->type);
	free(p->off);
	free(p->len);
	free(p->pool);
	free(p->merge_left);
	free(p->merge_right);
	free(p->merge_result);
	free(p->merge_prio);
	pairmap_free(&p->merge_of);
	free(p->piece_id.slots);
	free(p->literal);
	pre_free_patterns(p);
	free(p);
}

size_t
pre_memory_bytes(const Pretrained *p)
{
	size_t		bytes = sizeof(Pretrained);

	bytes += (size_t) p->n_tokens * (sizeof(uint8_t) + 2 * sizeof(uint32_t));
	bytes += p->pool_cap;
	bytes += (size_t) p->merge_cap * 4 * sizeof(int32_t);
	bytes += pairmap_bytes(&p->merge_of);
	bytes += p->piece_id.slots == NULL ? 0 :
		sizeof(int32_t) * ((size_t) p->piece_id.mask + 1);
	bytes += sizeof(int32_t) * (size_t) p->n_literal;
	for (int i = 0; i < p->n_patterns; i++)
		bytes += p->pattern_len[i] + 1;
	return bytes;
}

bool
pre_set_token(Pretrained *p, int32_t id, unsigned type, const void *bytes,
			  size_t len, CoreErrorKind err_kind, CoreError *err)
{
	unsigned	base = type & TT_TYPE_MASK;

	if (id < 0 || id >= p->n_tokens)
	{
		core_error(err, err_kind, "inconsistent vocab: token id %d out of range", id);
		return false;
	}
	if (p->type[id] != TT_UNUSED || p->len[id] != 0)
	{
		core_error(err, err_kind, "inconsistent vocab: token id %d defined twice", id);
		return false;
	}
	if ((type & ~(unsigned) (TT_TYPE_MASK | TT_LITERAL)) != 0 ||
		base >= TT_N_TYPES || len > PRE_MAX_TOKEN_BYTES ||
		(base == TT_BYTE && len != 1) || ((type & TT_LITERAL) && len == 0) ||
		((type & TT_LITERAL) && base != TT_NORMAL && base != TT_SPECIAL &&
		 base != TT_ADDED))
	{
		core_error(err, err_kind,
				   "inconsistent vocab: token %d has type %u and %zu bytes", id,
				   type, len);
		return false;
	}
	if (p->pool_cap - p->pool_len < len)
	{
		size_t		cap = 2 * p->pool_cap + len;
		char	   *pool;

		if (cap > UINT32_MAX)
		{
			core_error(err, err_kind, "inconsistent vocab: tokens hold more than 4 GB");
			return false;
		}
		if ((pool = realloc(p->pool, cap)) == NULL)
		{
			core_error(err, CORE_ERR_NO_MEMORY, "out of memory for the vocabulary");
			return false;
		}
		p->pool = pool;
		p->pool_cap = cap;
	}
	if (len > 0)
		memcpy(p->pool + p->pool_len, bytes, len);
	p->type[id] = (uint8_t) type;
	p->off[id] = (uint32_t) p->pool_len;
	p->len[id] = (uint32_t) len;
	p->pool_len += len;
	return true;
}

/* FNV-1a over a then b, so that a pair is looked up without copying it. */
static uint32_t
hash_two(const void *a, size_t alen, const void *b, size_t blen)
{
	uint64_t	h = 0xCBF29CE484222325ull;

	for (size_t i = 0; i < alen; i++)
		h = (h ^ ((const uint8_t *) a)[i]) * 0x100000001B3ull;
	for (size_t i = 0; i < blen; i++)
		h = (h ^ ((const uint8_t *) b)[i]) * 0x100000001B3ull;
	return (uint32_t) (h ^ (h >> 32));
}

/* The TT_NORMAL token whose bytes are a followed by b, or -1. */
static int32_t
piece_id_two(const Pretrained *p, const void *a, size_t alen, const void *b,
			 size_t blen)
{
	const StrMap *m = &p->piece_id;
	uint32_t	i = hash_two(a, alen, b, blen) & m->mask;

	if (m->slots == NULL)
		return -1;
	for (; m->slots[i] >= 0; i = (i + 1) & m->mask)
	{
		int32_t		id = m->slots[i];
		const char *text = p->pool + p->off[id];

		if (p->len[id] == alen + blen && memcmp(text, a, alen) == 0 &&
			memcmp(text + alen, b, blen) == 0)
			return id;
	}
	return -1;
}

int32_t
pre_piece_id(const Pretrained *p, const void *bytes, size_t len)
{
	return piece_id_two(p, bytes, len, "", 0);
}

static bool
build_piece_map(Pretrained *p)
{
	uint32_t	cap = 16;
	StrMap	   *m = &p->piece_id;

	while (cap < 2 * (uint32_t) p->n_tokens)
		cap *= 2;
	if ((m->slots = malloc(sizeof(int32_t) * cap)) == NULL)
		return false;
	memset(m->slots, 0xFF, sizeof(int32_t) * cap);
	m->mask = cap - 1;
	for (int32_t id = 0; id < p->n_tokens; id++)
	{
		const char *text = p->pool + p->off[id];
		uint32_t	i;

		if ((p->type[id] & TT_TYPE_MASK) != TT_NORMAL || p->len[id] == 0 ||
			pre_piece_id(p, text, p->len[id]) >= 0)
			continue;			/* the lowest id of equal bytes wins */
		i = hash_two(text, p->len[id], "", 0) & m->mask;
		while (m->slots[i] >= 0)
			i = (i + 1) & m->mask;
		m->slots[i] = id;
	}
	return true;
}

static int
compare_u64(const void *x, const void *y)
{
	uint64_t	a = *(const uint64_t *) x;
	uint64_t	b = *(const uint64_t *) y;

	return a < b ? -1 : a > b;
}

/* Offset of the first byte that starts no valid UTF-8 character, or len. */
static size_t
invalid_utf8_at(const char *text, size_t len)
{
	size_t		i = 0;

	while (i < len)
	{
		size_t		n = utf8_char_len((const unsigned char *) text + i, len - i);

		if (n == 0)
			return i;
		i += n;
	}
	return len;
}

/*
 * Is id an added token that the text is searched for?  Only when its bytes
 * are valid UTF-8, as HF's strings are: in valid text such a token can
 * only match whole characters, so the stretches between matches are valid
 * UTF-8 too, which the encoders rely on.  One that is not (a GGUF or a
 * stored blob can hold any bytes) would cut a character in two.
 */
static bool
is_matched_literal(const Pretrained *p, int32_t id)
{
	const char *text = p->pool + p->off[id];

	return (p->type[id] & TT_LITERAL) && invalid_utf8_at(text, p->len[id]) == p->len[id];
}

/*
 * The added tokens, longest first within each first byte: the scan for
 * them at a position tries only those that begin with its byte, and the
 * first that matches is the leftmost-longest match, as HF's matcher.
 * Sorted by a key of first byte, PRE_MAX_TOKEN_BYTES - length and id
 * (8, 16 and 21 bits).
 */
static bool
build_literals(Pretrained *p)
{
	int32_t		n = 0;
	uint64_t   *keys;

	for (int32_t id = 0; id < p->n_tokens; id++)
		n += is_matched_literal(p, id);
	p->literal = malloc(sizeof(int32_t) * (size_t) (n > 0 ? n : 1));
	keys = malloc(sizeof(uint64_t) * (size_t) (n > 0 ? n : 1));
	if (p->literal == NULL || keys == NULL)
	{
		free(keys);
		return false;
	}
	n = 0;
	for (int32_t id = 0; id < p->n_tokens; id++)
		if (is_matched_literal(p, id))
			keys[n++] = (uint64_t) (uint8_t) p->pool[p->off[id]] << 40 |
				(uint64_t) (PRE_MAX_TOKEN_BYTES - p->len[id]) << 24 | (uint64_t) id;
	qsort(keys, (size_t) n, sizeof(uint64_t), compare_u64);
	for (int32_t k = 0; k < n; k++)
		p->literal[k] = (int32_t) (keys[k] & 0xFFFFFF);
	free(keys);
	p->n_literal = n;
	for (int b = 0, k = 0; b <= 256; b++)
	{
		while (k < n && (uint8_t) p->pool[p->off[p->literal[k]]] < b)
			k++;
		p->literal_start[b] = k;
	}
	return true;
}

/* The token of each byte: byte level, its one-byte token; SP, <0xNN>. */
static void
find_byte_tokens(Pretrained *p)
{
	for (int32_t id = p->n_tokens - 1; id >= 0; id--)
	{
		unsigned	base = p->type[id] & TT_TYPE_MASK;
		uint8_t		byte = (uint8_t) p->pool[p->off[id]];

		if (p->len[id] != 1)
			continue;
		if ((p->kind == TOKENIZER_SP && base == TT_BYTE) ||
			(p->kind == TOKENIZER_BYTE_BPE && base == TT_NORMAL))
			p->byte_id[byte] = id;	/* from the top: the lowest id wins */
	}
}

bool
pre_finish_vocab(Pretrained *p, CoreErrorKind err_kind, CoreError *err)
{
	if (!build_piece_map(p) || !build_literals(p))
	{
		core_error(err, CORE_ERR_NO_MEMORY, "out of memory for the vocabulary");
		return false;
	}
	find_byte_tokens(p);
	return true;
}

static bool
reserve_merges(Pretrained *p)
{
	int32_t		cap = p->merge_cap ? 2 * p->merge_cap : 1024;
	void	   *q;

	if (p->n_merges < p->merge_cap)
		return true;
	if ((q = realloc(p->merge_left, sizeof(int32_t) * (size_t) cap)) == NULL)
		return false;
	p->merge_left = q;
	if ((q = realloc(p->merge_right, sizeof(int32_t) * (size_t) cap)) == NULL)
		return false;
	p->merge_right = q;
	if ((q = realloc(p->merge_result, sizeof(int32_t) * (size_t) cap)) == NULL)
		return false;
	p->merge_result = q;
	if ((q = realloc(p->merge_prio, sizeof(uint32_t) * (size_t) cap)) == NULL)
		return false;
	p->merge_prio = q;
	p->merge_cap = cap;
	return true;
}

static bool
mergeable(const Pretrained *p, int32_t id)
{
	unsigned	base;

	if (id < 0 || id >= p->n_tokens)
		return false;
	base = p->type[id] & TT_TYPE_MASK;
	return base == TT_NORMAL || base == TT_BYTE;
}

/*
 * Append merge (left, right) -> the TT_NORMAL token of their bytes, with
 * priority prio (lower first).
 */
bool
pre_add_merge(Pretrained *p, int32_t left, int32_t right, uint32_t prio,
			  CoreErrorKind err_kind, CoreError *err)
{
	int32_t		result;
	uint64_t	key = pack_pair(left, right);

	if (!mergeable(p, left) || !mergeable(p, right))
	{
		core_error(err, err_kind,
				   "inconsistent vocab: merge %d uses a missing or special token",
				   p->n_merges);
		return false;
	}
	result = piece_id_two(p, p->pool + p->off[left], p->len[left],
						  p->pool + p->off[right], p->len[right]);
	if (result < 0)
	{
		core_error(err, err_kind,
				   "inconsistent vocab: merge %d (tokens %d and %d) makes no token",
				   p->n_merges, left, right);
		return false;
	}
	if (pairmap_get(&p->merge_of, key) >= 0)
	{
		core_error(err, err_kind, "inconsistent vocab: merge %d repeats a pair",
				   p->n_merges);
		return false;
	}
	if (p->n_merges == INT32_MAX || !reserve_merges(p) ||
		!pairmap_put(&p->merge_of, key, p->n_merges))
	{
		core_error(err, CORE_ERR_NO_MEMORY, "out of memory for the merges");
		return false;
	}
	p->merge_left[p->n_merges] = left;
	p->merge_right[p->n_merges] = right;
	p->merge_result[p->n_merges] = result;
	p->merge_prio[p->n_merges] = prio;
	p->n_merges++;
	return true;
}

/* Is id a valid special id (or -1)? */
static bool
valid_role(const Pretrained *p, int32_t id)
{
	return id >= -1 && id < p->n_tokens;
}

Tokenizer *
tok_wrap_pretrained(Pretrained *p, CoreErrorKind err_kind, CoreError *err)
{
	Tokenizer  *t;
	bool		all_bytes = true;

	for (int b = 0; b < 256; b++)
		all_bytes &= p->byte_id[b] >= 0;
	if (!valid_role(p, p->bos) || !valid_role(p, p->eos) || !valid_role(p, p->unk) ||
		(p->flags & ~(uint32_t) PRE_ALL_FLAGS) != 0 || p->sp_prefix >= SP_N_PREFIX ||
		(p->kind == TOKENIZER_SP && p->n_patterns > 0))
		core_error(err, err_kind, "inconsistent tokenizer settings");
	else if (p->kind == TOKENIZER_BYTE_BPE && !all_bytes)
		core_error(err, err_kind,
				   "inconsistent vocab: a byte-level vocabulary needs a token for each of the 256 bytes");
	else if (p->kind == TOKENIZER_SP && !all_bytes && p->unk < 0)
		core_error(err, err_kind,
				   "inconsistent vocab: neither the 256 byte tokens <0xNN> nor an unknown token");
	else if ((t = calloc(1, sizeof(Tokenizer))) == NULL)
		core_error(err, CORE_ERR_NO_MEMORY, "out of memory");
	else
	{
		t->algorithm = p->kind;
		t->pretrained = p;
		t->n_tokens = p->n_tokens;
		return t;
	}
	pre_free(p);
	return NULL;
}

bool
idlist_push(IdList *l, int32_t id)
{
	if (l->n == l->cap)
	{
		size_t		cap = l->cap ? 2 * l->cap : 64;
		int32_t    *ids = realloc(l->ids, sizeof(int32_t) * cap);

		if (ids == NULL)
			return false;
		l->ids = ids;
		l->cap = cap;
	}
	l->ids[l->n++] = id;
	return true;
}

void
bpe_scratch_free(BpeScratch *s)
{
	free(s->prev);
	free(s->next);
	free(s->heap);
}

static bool
bpe_reserve(BpeScratch *s, size_t n)
{
	size_t		cap = s->cap ? s->cap : 64;
	void	   *q;

	if (n <= s->cap)
		return true;
	while (cap < n)
		cap *= 2;
	if ((q = realloc(s->prev, sizeof(int32_t) * cap)) == NULL)
		return false;
	s->prev = q;
	if ((q = realloc(s->next, sizeof(int32_t) * cap)) == NULL)
		return false;
	s->next = q;
	if ((q = realloc(s->heap, sizeof(uint64_t) * 3 * cap)) == NULL)
		return false;
	s->heap = q;
	s->cap = cap;
	return true;
}

/* The merge of the symbols at i and next[i], or -1. */
static int32_t
merge_at(const Pretrained *p, const BpeScratch *s, const int32_t *ids, int32_t i)
{
	int32_t		j = s->next[i];

	if (j < 0)
		return -1;
	return pairmap_get(&p->merge_of, pack_pair(ids[i], ids[j]));
}

static void
push_candidate(const Pretrained *p, BpeScratch *s, const int32_t *ids, int32_t i)
{
	int32_t		m = merge_at(p, s, ids, i);

	if (m >= 0)
		u64_heap_push(s->heap, &s->heap_len, (uint64_t) p->merge_prio[m] << 32 | (uint32_t) i);
}

/*
 * Merge the n symbols ids[0 .. n) by the merge table: always the adjacent
 * pair of lowest priority, the leftmost of equals, as SentencePiece's and
 * HF's BPE do, with a heap of (priority, position) candidates: O(n log n).
 * A candidate is stale once its left symbol was merged away (id -1) or
 * its pair changed; the pair is looked up again when it is popped.  The
 * symbols left are moved to the front; returns their number, or -1 when
 * memory runs out.
 */
int64_t
bpe_merge(const Pretrained *p, BpeScratch *s, int32_t *ids, size_t n)
{
	size_t		count = 0;

	if (n < 2 || p->n_merges == 0)
		return (int64_t) n;
	if (n > INT32_MAX || !bpe_reserve(s, n))
		return -1;
	for (size_t i = 0; i < n; i++)
	{
		s->prev[i] = (int32_t) i - 1;
		s->next[i] = i + 1 < n ? (int32_t) i + 1 : -1;
	}
	s->heap_len = 0;
	for (size_t i = 0; i + 1 < n; i++)
		push_candidate(p, s, ids, (int32_t) i);
	while (s->heap_len > 0)
	{
		uint64_t	key = u64_heap_pop(s->heap, &s->heap_len);
		int32_t		i = (int32_t) (uint32_t) key;
		int32_t		j;
		int32_t		m;

		if (ids[i] < 0 || (m = merge_at(p, s, ids, i)) < 0 ||
			p->merge_prio[m] != (uint32_t) (key >> 32))
			continue;
		j = s->next[i];
		ids[i] = p->merge_result[m];
		ids[j] = -1;
		s->next[i] = s->next[j];
		if (s->next[i] >= 0)
			s->prev[s->next[i]] = i;
		if (s->prev[i] >= 0)
			push_candidate(p, s, ids, s->prev[i]);
		push_candidate(p, s, ids, i);
	}
	for (int32_t i = 0; i >= 0; i = s->next[i])
		ids[count++] = ids[i];
	return (int64_t) count;
}

/* The added token that starts at text[i] (leftmost-longest), or -1. */
static int32_t
literal_at(const Pretrained *p, const char *text, size_t len, size_t i)
{
	uint8_t		b = (uint8_t) text[i];

	for (int32_t k = p->literal_start[b]; k < p->literal_start[b + 1]; k++)
	{
		int32_t		id = p->literal[k];

		if (p->len[id] <= len - i &&
			memcmp(text + i, p->pool + p->off[id], p->len[id]) == 0)
			return id;
	}
	return -1;
}

static bool
encode_segment(const Pretrained *p, const char *text, size_t len,
			   bool at_start, BpeScratch *s, IdList *out, CoreError *err)
{
	if (p->kind == TOKENIZER_SP)
		return sp_encode_segment(p, text, len, at_start, s, out, err);
	return bbpe_encode_segment(p, text, len, s, out, err);
}

static bool
no_memory(CoreError *err, size_t len)
{
	core_error(err, CORE_ERR_NO_MEMORY, "out of memory encoding %zu bytes", len);
	return false;
}

/*
 * Added tokens are split out first; the text between them is encoded by
 * the kind's encoder.
 */
int
pre_encode(const Tokenizer *t, const char *text, size_t len, int32_t **ids_out,
		   CoreError *err)
{
	const Pretrained *p = t->pretrained;
	IdList		out = {0};
	BpeScratch	scratch = {0};
	size_t		bad;
	size_t		segment = 0;
	bool		ok = true;

	*ids_out = NULL;
	if (len > INT_MAX)
	{
		core_error(err, CORE_ERR_LIMIT, "text of %zu bytes is too long to encode", len);
		return -1;
	}
	if ((bad = invalid_utf8_at(text, len)) < len)
	{
		core_error(err, CORE_ERR_INVALID_INPUT, "invalid UTF-8 at byte %zu", bad);
		return -1;
	}
	for (size_t i = 0; i < len && ok && p->n_literal > 0;)
	{
		int32_t		id = literal_at(p, text, len, i);

		if (id < 0)
		{
			i++;
			continue;
		}
		if (segment < i)
			ok = encode_segment(p, text + segment, i - segment, segment == 0,
								&scratch, &out, err);
		if (ok && !idlist_push(&out, id))
			ok = no_memory(err, len);
		i += p->len[id];
		segment = i;
	}
	if (ok && segment < len)
		ok = encode_segment(p, text + segment, len - segment, segment == 0,
							&scratch, &out, err);
	/* an empty result still gets an array, as tok_encode() promises */
	if (ok && out.ids == NULL && (out.ids = malloc(sizeof(int32_t))) == NULL)
		ok = no_memory(err, len);
	bpe_scratch_free(&scratch);
	if (!ok)
	{
		free(out.ids);
		return -1;
	}
	*ids_out = out.ids;
	return (int) out.n;
}

/*
 * Length of text without an incomplete UTF-8 character at its very end
 * (the caller may have cut it at tok_prefix_bytes()).
 */
static size_t
without_cut_character(const char *text, size_t len)
{
	for (size_t back = 1; back <= 3 && back <= len; back++)
	{
		uint8_t		c = (uint8_t) text[len - back];
		size_t		need;

		if ((c & 0xC0) == 0x80)
			continue;
		need = c >= 0xF0 ? 4 : c >= 0xE0 ? 3 : c >= 0xC0 ? 2 : 1;
		return need > back ? len - back : len;
	}
	return len;
}

int
pre_encode_prefix(const Tokenizer *t, const char *text, size_t len,
				  int max_ids, int32_t **ids_out)
{
	int			n = pre_encode(t, text, without_cut_character(text, len), ids_out,
						   NULL);

	if (n < 0)
		return -1;
	return n < max_ids ? n : (max_ids > 0 ? max_ids : 0);
}

/* Does id decode to its bytes (rather than to nothing)? */
static bool
decodes_to_text(const Pretrained *p, int32_t id)
{
	unsigned	base;

	if (id < 0 || id >= p->n_tokens)
		return false;
	base = p->type[id] & TT_TYPE_MASK;
	return base == TT_NORMAL || base == TT_BYTE || base == TT_ADDED;
}

/*
 * Bytes of the longest prefix of s (avail > 0 bytes, not a valid
 * character) that could begin one: Unicode's "maximal subpart", which
 * becomes one U+FFFD, as Rust's from_utf8_lossy and Python do.
 */
static size_t
maximal_subpart(const uint8_t *s, size_t avail)
{
	uint8_t		lo = 0x80,
				hi = 0xBF;
	size_t		need,
				i;

	if (s[0] >= 0xC2 && s[0] <= 0xDF)
		need = 2;
	else if (s[0] >= 0xE0 && s[0] <= 0xEF)
	{
		need = 3;
		lo = s[0] == 0xE0 ? 0xA0 : lo;
		hi = s[0] == 0xED ? 0x9F : hi;
	}
	else if (s[0] >= 0xF0 && s[0] <= 0xF4)
	{
		need = 4;
		lo = s[0] == 0xF0 ? 0x90 : lo;
		hi = s[0] == 0xF4 ? 0x8F : hi;
	}
	else
		return 1;
	for (i = 1; i < need && i < avail; i++)
	{
		if (s[i] < lo || s[i] > hi)
			break;
		lo = 0x80;
		hi = 0xBF;
	}
	return i;
}

char *
pre_decode(const Pretrained *p, const int32_t *ids, size_t n, size_t *len_out)
{
	size_t		total = 0;
	char	   *raw;
	char	   *text;
	char	   *q;

	for (size_t i = 0; i < n; i++)
		if (decodes_to_text(p, ids[i]))
			total += p->len[ids[i]];
	if ((raw = malloc(total + 1)) == NULL)
		return NULL;
	q = raw;
	for (size_t i = 0; i < n; i++)
		if (decodes_to_text(p, ids[i]))
		{
			memcpy(q, p->pool + p->off[ids[i]], p->len[ids[i]]);
			q += p->len[ids[i]];
		}
	*q = '\0';
	*len_out = total;
	if (invalid_utf8_at(raw, total) == total)
		return raw;
	/* each invalid byte becomes at most one U+FFFD of 3 bytes */
	text = total < SIZE_MAX / 3 ? malloc(3 * total + 1) : NULL;
	if (text == NULL)
	{
		free(raw);
		return NULL;
	}
	q = text;
	for (size_t i = 0; i < total;)
	{
		const uint8_t *s = (const uint8_t *) raw + i;
		size_t		k = utf8_char_len(s, total - i);

		if (k > 0)
		{
			memcpy(q, s, k);
			q += k;
		}
		else
		{
			k = maximal_subpart(s, total - i);
			memcpy(q, "\xEF\xBF\xBD", 3);
			q += 3;
		}
		i += k;
	}
	free(raw);
	*q = '\0';
	*len_out = (size_t) (q - text);
	return text;
}

Tokenizer *
tok_from_source(const TokenizerSource *src, CoreError *err)
{
	if (src == NULL)
	{
		core_error(err, CORE_ERR_INVALID_INPUT, "no tokenizer source");
		return NULL;
	}
	if (src->vocab_size < 0 || src->vocab_size > TOK_MAX_VOCAB)
	{
		core_error(err, CORE_ERR_INVALID_INPUT,
				   "vocabulary size %d out of range (at most %d)", src->vocab_size,
				   TOK_MAX_VOCAB);
		return NULL;
	}
	switch (src->kind)
	{
		case TOKSRC_LLAMA2C:
			return sp_from_llama2c(src, err);
		case TOKSRC_HF:
			return hf_from_json(src, err);
		case TOKSRC_GGUF:
			if (src->vocab.model != NULL && strcmp(src->vocab.model, "llama") == 0)
				return sp_from_gguf(src, err);
			if (src->vocab.model != NULL && strcmp(src->vocab.model, "gpt2") == 0)
				return bbpe_from_gguf(src, err);
			core_error(err, CORE_ERR_INVALID_INPUT,
					   "unsupported tokenizer model \"%s\" (supported: llama, gpt2)",
					   src->vocab.model != NULL ? src->vocab.model : "");
			return NULL;
		default:
			core_error(err, CORE_ERR_INVALID_INPUT, "unknown tokenizer source kind %d",
					   (int) src->kind);
			return NULL;
	}
}

int
tok_encode_checked(const Tokenizer *t, const char *text, size_t len,
				   int32_t **ids_out, CoreError *err)
{
	int			n;

	if (t->pretrained != NULL)
		return pre_encode(t, text, len, ids_out, err);
	if ((n = tok_encode(t, text, len, ids_out)) < 0)
		core_error(err, len > INT_MAX ? CORE_ERR_LIMIT : CORE_ERR_NO_MEMORY,
				   "cannot encode %zu bytes", len);
	return n;
}

bool
tok_is_pretrained(const Tokenizer *t)
{
	return t->pretrained != NULL;
}

bool
tok_strips_leading_space(const Tokenizer *t)
{
	return t->pretrained != NULL && t->pretrained->kind == TOKENIZER_SP &&
		t->pretrained->sp_prefix != SP_PREFIX_NONE;
}

bool
tok_adds_bos(const Tokenizer *t)
{
	return t->pretrained != NULL && (t->pretrained->flags & PRE_ADDS_BOS) &&
		t->pretrained->bos >= 0;
}

int32_t
tok_newline(const Tokenizer *t)
{
	return t->pretrained != NULL ? t->pretrained->byte_id['\n'] : -1;
}
