/*
 * tokenizer_encode.c - encoding text into ids and decoding ids into bytes.
 *
 * Encoding merges within each chunk by rank with a min-heap of (rank,
 * position) candidates: the GPT-2 rule (lowest rank first, leftmost first)
 * in O(n log n) for a chunk of n bytes (at most TOK_MAX_CHUNK_BYTES).
 * Chunks encode independently, so encoding stops as soon as it has the
 * tokens asked for, however long the text.
 *
 * A pretrained checkpoint's tokenizer encodes and decodes in
 * tokenizer_pretrained.c: the functions here hand it on.
 */
#include "core/tokenizer.h"

#include <limits.h>
#include <stdlib.h>
#include <string.h>

#include "core/tokenizer_internal.h"
#include "core/tokenizer_pretrained_internal.h"

/*
 * Working memory of one tok_encode() call, grown to the longest chunk:
 * the chunk's symbols as a linked list and a min-heap of merge candidates
 * keyed (rank << 32) | position of the left symbol.
 */
typedef struct Scratch
{
	size_t		cap;
	int32_t    *id;				/* -1 once merged into the left neighbour */
	int32_t    *prev;
	int32_t    *next;
	uint64_t   *heap;			/* at most n - 1 initial + 2 per merge */
	size_t		heap_len;
} Scratch;

static bool
scratch_reserve(Scratch *s, size_t n)
{
	size_t		cap = s->cap ? s->cap : 64;
	void	   *p;

	if (n <= s->cap)
		return true;
	while (cap < n)
		cap *= 2;
	if ((p = realloc(s->id, sizeof(int32_t) * cap)) == NULL)
		return false;
	s->id = p;
	if ((p = realloc(s->prev, sizeof(int32_t) * cap)) == NULL)
		return false;
	s->prev = p;
	if ((p = realloc(s->next, sizeof(int32_t) * cap)) == NULL)
		return false;
	s->next = p;
	if ((p = realloc(s->heap, sizeof(uint64_t) * 3 * cap)) == NULL)
		return false;
	s->heap = p;
	s->cap = cap;
	return true;
}

/* Queue the symbols at p and next[p] for merging if they form a pair. */
static void
push_if_pair(const Tokenizer *t, Scratch *s, int32_t p)
{
	int32_t		q = s->next[p];
	int32_t		rank;

	if (q < 0)
		return;
	rank = pairmap_get(&t->rank_of, pack_pair(s->id[p], s->id[q]));
	if (rank >= 0)
		u64_heap_push(s->heap, &s->heap_len, (uint64_t) rank << 32 | (uint32_t) p);
}

/*
 * Encode the n bytes of one chunk into out; returns the number of ids.
 * A candidate is stale when its left symbol was merged away or changed, or
 * its right neighbour changed: the ids then no longer match its rank.  A
 * merge creates pairs of higher rank only (a merge's result is used only by
 * later merges), so popping in (rank, position) order merges all
 * occurrences of the lowest ranked pair left to right, then the next.
 */
static int32_t
encode_chunk(const Tokenizer *t, Scratch *s, const uint8_t *bytes, int32_t n,
			 int32_t *out)
{
	int32_t		count = 0;

	for (int32_t i = 0; i < n; i++)
	{
		s->id[i] = t->byte_id[bytes[i]];
		s->prev[i] = i - 1;
		s->next[i] = i + 1 < n ? i + 1 : -1;
	}
	s->heap_len = 0;
	for (int32_t i = 0; i + 1 < n; i++)
		push_if_pair(t, s, i);
	while (s->heap_len > 0)
	{
		uint64_t	key = u64_heap_pop(s->heap, &s->heap_len);
		int32_t		rank = (int32_t) (key >> 32);
		int32_t		p = (int32_t) (uint32_t) key;
		int32_t		q = s->next[p];

		if (s->id[p] != t->merge_left[rank] || q < 0 ||
			s->id[q] != t->merge_right[rank])
			continue;
		s->id[p] = t->merge_result[rank];
		s->id[q] = -1;
		s->next[p] = s->next[q];
		if (s->next[p] >= 0)
			s->prev[s->next[p]] = p;
		if (s->prev[p] >= 0)
			push_if_pair(t, s, s->prev[p]);
		push_if_pair(t, s, p);
	}
	for (int32_t i = 0; i >= 0; i = s->next[i])
		out[count++] = s->id[i];
	return count;
}

/*
 * Chunk by chunk until max_ids ids are out: chunks are encoded each on its
 * own, so the ids so far are final, and chunk_end() reads at most
 * TOK_MAX_CHUNK_BYTES + 1 bytes from a chunk's start.  A chunk gives at
 * least one id, so the loop starts at most max_ids chunks, all within the
 * first tok_prefix_bytes(max_ids) bytes.
 */
int
tok_encode_prefix(const Tokenizer *t, const char *text, size_t len,
				  int max_ids, int32_t **ids_out)
{
	const uint8_t *s = (const uint8_t *) text;
	Scratch		scratch = {0};
	size_t		limit = max_ids > 0 ? (size_t) max_ids : 0;
	size_t		room = len < limit + TOK_MAX_CHUNK_BYTES ? len : limit + TOK_MAX_CHUNK_BYTES;
	int32_t    *ids;
	int32_t    *shrunk;
	size_t		n = 0;

	*ids_out = NULL;
	if (t->pretrained != NULL)
		return pre_encode_prefix(t, text, len, max_ids, ids_out);
	if ((ids = malloc(sizeof(int32_t) * (room + 1))) == NULL)
		return -1;
	for (size_t i = 0, end; i < len && n < limit; i = end)
	{
		end = chunk_end(s, len, i);
		if (end - i == 1)
			ids[n++] = t->byte_id[s[i]];
		else if (scratch_reserve(&scratch, end - i))
			n += encode_chunk(t, &scratch, s + i, (int32_t) (end - i), ids + n);
		else
		{
			free(ids);
			ids = NULL;
			break;
		}
	}
	free(scratch.id);
	free(scratch.prev);
	free(scratch.next);
	free(scratch.heap);
	if (ids == NULL)
		return -1;
	n = n < limit ? n : limit;
	/* Give back the slack of long inputs; keep the array if realloc fails. */
	if (n + 1 < room / 2 &&
		(shrunk = realloc(ids, sizeof(int32_t) * (n + 1))) != NULL)
		ids = shrunk;
	*ids_out = ids;
	return (int) n;
}

int
tok_encode(const Tokenizer *t, const char *text, size_t len, int32_t **ids_out)
{
	*ids_out = NULL;
	if (len > INT_MAX)
		return -1;
	if (t->pretrained != NULL)
		return pre_encode(t, text, len, ids_out, NULL);
	return tok_encode_prefix(t, text, len, INT_MAX, ids_out);
}

size_t
tok_prefix_bytes(int max_ids)
{
	return (size_t) (max_ids > 0 ? max_ids : 0) * TOK_MAX_CHUNK_BYTES + 1;
}

static inline bool
decodes_to_bytes(const Tokenizer *t, int32_t id)
{
	return id >= 0 && id < t->n_tokens && t->kind[id] != KIND_SPECIAL;
}

char *
tok_decode(const Tokenizer *t, const int32_t *ids, size_t n, size_t *len_out)
{
	size_t		total = 0;
	char	   *buf;
	char	   *p;

	if (t->pretrained != NULL)
		return pre_decode(t->pretrained, ids, n, len_out);
	for (size_t i = 0; i < n; i++)
		if (decodes_to_bytes(t, ids[i]))
			total += t->len[ids[i]];
	if ((buf = malloc(total + 1)) == NULL)
		return NULL;
	p = buf;
	for (size_t i = 0; i < n; i++)
		if (decodes_to_bytes(t, ids[i]))
		{
			memcpy(p, t->pool + t->off[ids[i]], t->len[ids[i]]);
			p += t->len[ids[i]];
		}
	*p = '\0';
	*len_out = total;
	return buf;
}
