/*
 * tokenizer_bpe_train.c - training a byte-level BPE tokenizer (tok_train()).
 *
 * Training counts the distinct chunks of the corpus, lays their bytes end
 * to end as doubly linked symbol lists, and keeps for every adjacent pair
 * of symbols its weighted count, the positions where it occurs, and its
 * place in a max-heap.  A merge visits only the recorded positions of the
 * winning pair and adjusts the counts of the neighbouring pairs, so its
 * cost is proportional to the pair's occurrences, not to the corpus.
 * Its working memory is counted against a limit, and it asks the caller's
 * stop check between bounded units of work.
 */
#include "core/tokenizer.h"

#include <limits.h>
#include <stdlib.h>
#include <string.h>

#include "core/tokenizer_internal.h"

static const char *const role_name[N_ROLES + 1] = {
	NULL, "<pad>", "<bos>", "<eos>", "<sep>"
};

/* A distinct chunk of the corpus and how often it occurs. */
typedef struct Chunk
{
	const uint8_t *bytes;		/* in the caller's text; NULL = empty slot */
	size_t		len;
	uint64_t	hash;
	int64_t		count;
} Chunk;

typedef struct ChunkTable
{
	Chunk	   *slots;
	size_t		mask;			/* capacity - 1; capacity is a power of 2 */
	size_t		n;
	size_t		total_len;		/* bytes of all distinct chunks */
} ChunkTable;

/* An adjacent pair of symbols in the words. */
typedef struct Pair
{
	int32_t		left;
	int32_t		right;
	int64_t		count;			/* occurrences, weighted by word count */
	int32_t		heap_pos;		/* index in the heap, -1 when not in it */
	int32_t		n_occ;
	int32_t		cap_occ;
	int32_t    *occ;			/* positions of left symbols; may be stale */
} Pair;

/*
 * Training state.  The words (distinct chunks) are laid end to end in the
 * symbol arrays; a merge overwrites the left symbol, kills the right one
 * (sym = -1) and relinks, so positions never move.  Every array is counted
 * in budget.
 */
typedef struct BpeTrainer
{
	Tokenizer  *t;
	Budget		budget;
	const StopCheck *stop;
	int32_t		n_sym;
	int32_t    *sym;
	int32_t    *prev;			/* -1 at the start of a word */
	int32_t    *next;			/* -1 at the end of a word */
	int32_t    *word_of;
	int64_t    *word_count;
	int32_t		n_words;

	Pair	   *pairs;
	int32_t		n_pairs;
	int32_t		cap_pairs;
	PairMap		pair_index;		/* (left, right) -> index in pairs */

	/* Max-heap of the indexes of pairs occurring at least twice. */
	int32_t    *heap;
	int32_t		heap_len;
} BpeTrainer;

/*
 * Units of work between stop checks: bytes chunked, symbols laid out,
 * occurrences merged.  Each is well under a millisecond.
 */
#define TRAIN_CHECK_INTERVAL 65536

/*
 * Bytes of working memory per byte of distinct chunks, besides the chunk
 * table: 16 for the symbol arrays, the rest for the pairs, their index and
 * their occurrence lists.  Measured at the peak: 29 to 46 on English text,
 * random words, hex strings and random bytes with a vocabulary of 4096, 67
 * with 65536.  It sizes a corpus up front, so that one that cannot fit is
 * refused before the work starts; the budget itself is enforced allocation
 * by allocation.
 */
#define TRAIN_BYTES_PER_SYMBOL 40

static uint64_t
hash_bytes(const uint8_t *s, size_t len)
{
	uint64_t	h = 0xCBF29CE484222325ull;	/* FNV-1a */

	for (size_t i = 0; i < len; i++)
		h = (h ^ s[i]) * 0x100000001B3ull;
	return h;
}

static size_t
chunk_table_bytes(const ChunkTable *ct)
{
	return ct->slots == NULL ? 0 : sizeof(Chunk) * (ct->mask + 1);
}

/* Empty slots for capacity chunks (a power of 2), counted in b. */
static Chunk *
chunk_slots(Budget *b, size_t capacity)
{
	Chunk	   *slots = budget_realloc(b, NULL, 0, sizeof(Chunk) * capacity);

	if (slots != NULL)
		memset(slots, 0, sizeof(Chunk) * capacity);
	return slots;
}

static bool
chunk_table_grow(ChunkTable *ct, Budget *b)
{
	size_t		cap = 2 * (ct->mask + 1);
	Chunk	   *slots = chunk_slots(b, cap);

	if (slots == NULL)
		return false;
	for (size_t i = 0; i <= ct->mask; i++)
	{
		size_t		j;

		if (ct->slots[i].bytes == NULL)
			continue;
		for (j = ct->slots[i].hash & (cap - 1); slots[j].bytes != NULL;
			 j = (j + 1) & (cap - 1))
			;
		slots[j] = ct->slots[i];
	}
	budget_free(b, ct->slots, chunk_table_bytes(ct));
	ct->slots = slots;
	ct->mask = cap - 1;
	return true;
}

static bool
chunk_table_add(ChunkTable *ct, Budget *b, const uint8_t *bytes, size_t len)
{
	uint64_t	h = hash_bytes(bytes, len);
	size_t		i;

	for (i = h & ct->mask; ct->slots[i].bytes != NULL; i = (i + 1) & ct->mask)
	{
		Chunk	   *c = &ct->slots[i];

		if (c->hash == h && c->len == len && memcmp(c->bytes, bytes, len) == 0)
		{
			c->count++;
			return true;
		}
	}
	ct->slots[i].bytes = bytes;
	ct->slots[i].len = len;
	ct->slots[i].hash = h;
	ct->slots[i].count = 1;
	ct->total_len += len;
	if (2 * ++ct->n > ct->mask + 1)
		return chunk_table_grow(ct, b);
	return true;
}

/* Has the caller asked to stop?  Then say so in err. */
static bool
interrupted(const StopCheck *stop, CoreError *err)
{
	if (!stop_requested(stop))
		return false;
	core_error(err, CORE_ERR_INTERRUPTED, "interrupted");
	return true;
}

/* The message for an allocation that failed: the budget's, or no memory. */
static void
allocation_error(const Budget *b, CoreError *err)
{
	if (b->exceeded)
		core_error(err, CORE_ERR_LIMIT,
				   "training the tokenizer needs more working memory than the %zu MB allowed",
				   b->limit >> 20);
	else
		core_error(err, CORE_ERR_NO_MEMORY, "out of memory");
}

/*
 * Count the chunks of every text.  Single-byte chunks are left out: they
 * hold no pair.
 */
static bool
count_chunks(BpeTrainer *tr, ChunkTable *ct, const char *const *texts,
			 const size_t *lens, size_t n_texts, CoreError *err)
{
	size_t		since_check = 0;

	ct->mask = 1023;
	ct->n = 0;
	ct->total_len = 0;
	if ((ct->slots = chunk_slots(&tr->budget, ct->mask + 1)) == NULL)
		goto fail;
	for (size_t k = 0; k < n_texts; k++)
	{
		const uint8_t *s = (const uint8_t *) texts[k];

		for (size_t i = 0, end; i < lens[k]; i = end)
		{
			end = chunk_end(s, lens[k], i);
			if (end - i >= 2 && !chunk_table_add(ct, &tr->budget, s + i, end - i))
				goto fail;
			since_check += end - i;
			if (since_check >= TRAIN_CHECK_INTERVAL)
			{
				since_check = 0;
				if (interrupted(tr->stop, err))
					return false;
			}
		}
	}
	return true;

fail:
	allocation_error(&tr->budget, err);
	return false;
}

/*
 * Refuse up front a corpus whose distinct chunks will not fit in the
 * budget, with the figure it needs.
 */
static bool
check_estimate(const BpeTrainer *tr, const ChunkTable *ct, CoreError *err)
{
	size_t		needed = chunk_table_bytes(ct) +
		(size_t) TRAIN_BYTES_PER_SYMBOL * ct->total_len;

	if (needed <= tr->budget.limit)
		return true;
	core_error(err, CORE_ERR_LIMIT,
			   "training the tokenizer needs about %zu MB of working memory for %zu bytes of distinct chunks, more than the %zu MB allowed",
			   (needed >> 20) + 1, ct->total_len, tr->budget.limit >> 20);
	return false;
}

/* Does pair i come before pair j: more frequent, then smaller ids? */
static inline bool
pair_above(const BpeTrainer *tr, int32_t i, int32_t j)
{
	const Pair *a = &tr->pairs[i];
	const Pair *b = &tr->pairs[j];

	if (a->count != b->count)
		return a->count > b->count;
	if (a->left != b->left)
		return a->left < b->left;
	return a->right < b->right;
}

static inline void
heap_set(BpeTrainer *tr, int32_t pos, int32_t pair)
{
	tr->heap[pos] = pair;
	tr->pairs[pair].heap_pos = pos;
}

static void
heap_sift_up(BpeTrainer *tr, int32_t pos)
{
	int32_t		pair = tr->heap[pos];

	while (pos > 0 && pair_above(tr, pair, tr->heap[(pos - 1) / 2]))
	{
		heap_set(tr, pos, tr->heap[(pos - 1) / 2]);
		pos = (pos - 1) / 2;
	}
	heap_set(tr, pos, pair);
}

static void
heap_sift_down(BpeTrainer *tr, int32_t pos)
{
	int32_t		pair = tr->heap[pos];

	for (;;)
	{
		int32_t		child = 2 * pos + 1;

		if (child >= tr->heap_len)
			break;
		if (child + 1 < tr->heap_len &&
			pair_above(tr, tr->heap[child + 1], tr->heap[child]))
			child++;
		if (!pair_above(tr, tr->heap[child], pair))
			break;
		heap_set(tr, pos, tr->heap[child]);
		pos = child;
	}
	heap_set(tr, pos, pair);
}

/* Put pair in, move it within or take it out of the heap: its count changed. */
static void
heap_update(BpeTrainer *tr, int32_t pair)
{
	int32_t		pos = tr->pairs[pair].heap_pos;
	int32_t		moved;

	if (tr->pairs[pair].count >= 2)
	{
		if (pos < 0)
		{
			pos = tr->heap_len++;
			heap_set(tr, pos, pair);
		}
		moved = pair;
	}
	else
	{
		if (pos < 0)
			return;
		tr->pairs[pair].heap_pos = -1;
		moved = tr->heap[--tr->heap_len];
		if (moved == pair)
			return;
		heap_set(tr, pos, moved);
	}
	heap_sift_up(tr, pos);
	heap_sift_down(tr, tr->pairs[moved].heap_pos);
}

static int32_t
new_pair(BpeTrainer *tr, int32_t left, int32_t right)
{
	Pair	   *p;

	if (tr->n_pairs == tr->cap_pairs)
	{
		int32_t		cap = 2 * tr->cap_pairs;
		Pair	   *pairs = budget_realloc(&tr->budget, tr->pairs,
										   sizeof(Pair) * tr->cap_pairs,
										   sizeof(Pair) * cap);
		int32_t    *heap;

		if (pairs == NULL)
			return -1;
		tr->pairs = pairs;
		heap = budget_realloc(&tr->budget, tr->heap,
							  sizeof(int32_t) * tr->cap_pairs,
							  sizeof(int32_t) * cap);
		if (heap == NULL)
			return -1;			/* training ends: the counts no longer matter */
		tr->heap = heap;
		tr->cap_pairs = cap;
	}
	if (!pairmap_put(&tr->pair_index, pack_pair(left, right), tr->n_pairs))
		return -1;
	p = &tr->pairs[tr->n_pairs];
	memset(p, 0, sizeof(Pair));
	p->left = left;
	p->right = right;
	p->heap_pos = -1;
	return tr->n_pairs++;
}

static bool
add_occurrence(Budget *b, Pair *p, int32_t pos)
{
	if (p->n_occ == p->cap_occ)
	{
		int32_t		cap = p->cap_occ ? 2 * p->cap_occ : 4;
		int32_t    *occ = budget_realloc(b, p->occ, sizeof(int32_t) * p->cap_occ,
										 sizeof(int32_t) * cap);

		if (occ == NULL)
			return false;
		p->occ = occ;
		p->cap_occ = cap;
	}
	p->occ[p->n_occ++] = pos;
	return true;
}

/*
 * Add delta to the count of pair (left, right); a positive delta also
 * records pos, the position of the left symbol.  Pairs whose merge would
 * exceed TOK_MAX_TOKEN_BYTES are never counted.
 */
static bool
count_pair(BpeTrainer *tr, int32_t left, int32_t right, int64_t delta, int32_t pos)
{
	int32_t		i;

	if (tr->t->len[left] + tr->t->len[right] > TOK_MAX_TOKEN_BYTES)
		return true;
	i = pairmap_get(&tr->pair_index, pack_pair(left, right));
	if (i < 0 && (i = new_pair(tr, left, right)) < 0)
		return false;
	tr->pairs[i].count += delta;
	if (delta > 0 && !add_occurrence(&tr->budget, &tr->pairs[i], pos))
		return false;
	heap_update(tr, i);
	return true;
}

/* The trainer's arrays for n_sym symbols in n_words words. */
static bool
alloc_words(BpeTrainer *tr, size_t n_sym, size_t n_words)
{
	Budget	   *b = &tr->budget;

	tr->n_sym = (int32_t) n_sym;
	tr->n_words = (int32_t) n_words;
	tr->sym = budget_realloc(b, NULL, 0, sizeof(int32_t) * (n_sym + 1));
	tr->prev = budget_realloc(b, NULL, 0, sizeof(int32_t) * (n_sym + 1));
	tr->next = budget_realloc(b, NULL, 0, sizeof(int32_t) * (n_sym + 1));
	tr->word_of = budget_realloc(b, NULL, 0, sizeof(int32_t) * (n_sym + 1));
	tr->word_count = budget_realloc(b, NULL, 0, sizeof(int64_t) * (n_words + 1));
	tr->cap_pairs = 1024;
	tr->pairs = budget_realloc(b, NULL, 0, sizeof(Pair) * tr->cap_pairs);
	tr->heap = budget_realloc(b, NULL, 0, sizeof(int32_t) * tr->cap_pairs);
	return tr->sym != NULL && tr->prev != NULL && tr->next != NULL &&
		tr->word_of != NULL && tr->word_count != NULL && tr->pairs != NULL &&
		tr->heap != NULL && pairmap_init(&tr->pair_index, 1024, b);
}

/* Lay the chunks out as words of byte tokens and count their pairs. */
static bool
build_words(BpeTrainer *tr, const ChunkTable *ct, CoreError *err)
{
	int32_t		pos = 0;
	int32_t		w = 0;

	if (ct->total_len >= INT32_MAX)
	{
		core_error(err, CORE_ERR_INVALID_INPUT,
				   "training corpus too large: %zu bytes of distinct chunks",
				   ct->total_len);
		return false;
	}
	if (!alloc_words(tr, ct->total_len, ct->n))
		goto fail;
	for (size_t i = 0; i <= ct->mask; i++)
	{
		const Chunk *c = &ct->slots[i];

		if (c->bytes == NULL)
			continue;
		tr->word_count[w] = c->count;
		for (size_t j = 0; j < c->len; j++, pos++)
		{
			tr->sym[pos] = tr->t->byte_id[c->bytes[j]];
			tr->prev[pos] = j > 0 ? pos - 1 : -1;
			tr->next[pos] = j + 1 < c->len ? pos + 1 : -1;
			tr->word_of[pos] = w;
			if (j > 0 && !count_pair(tr, tr->sym[pos - 1], tr->sym[pos],
									 c->count, pos - 1))
				goto fail;
			if (pos % TRAIN_CHECK_INTERVAL == 0 && interrupted(tr->stop, err))
				return false;
		}
		w++;
	}
	return true;

fail:
	allocation_error(&tr->budget, err);
	return false;
}

/*
 * Merge the pair (left, right) into token id at position p if it is still
 * there, moving the counts of the pairs around it.
 */
static bool
merge_at(BpeTrainer *tr, int32_t p, int32_t left, int32_t right, int32_t id)
{
	int32_t		q = tr->next[p];
	int32_t		x = tr->prev[p];
	int32_t		y;
	int64_t		w;

	if (tr->sym[p] != left || q < 0 || tr->sym[q] != right)
		return true;
	y = tr->next[q];
	w = tr->word_count[tr->word_of[p]];
	if (x >= 0 && (!count_pair(tr, tr->sym[x], left, -w, -1) ||
				   !count_pair(tr, tr->sym[x], id, w, x)))
		return false;
	if (y >= 0 && (!count_pair(tr, right, tr->sym[y], -w, -1) ||
				   !count_pair(tr, id, tr->sym[y], w, p)))
		return false;
	if (!count_pair(tr, left, right, -w, -1))
		return false;
	tr->sym[p] = id;
	tr->sym[q] = -1;
	tr->next[p] = y;
	if (y >= 0)
		tr->prev[y] = p;
	return true;
}

static int
compare_int32(const void *a, const void *b)
{
	int32_t		x = *(const int32_t *) a;
	int32_t		y = *(const int32_t *) b;

	return (x > y) - (x < y);
}

/*
 * Merge the most frequent pair everywhere into a new token id.  Positions
 * are visited in ascending order, so overlapping occurrences ("aaa") merge
 * leftmost first, as encoding does.
 */
static bool
merge_top_pair(BpeTrainer *tr, int32_t id, CoreError *err)
{
	Pair	   *top = &tr->pairs[tr->heap[0]];
	int32_t		left = top->left;
	int32_t		right = top->right;
	int32_t    *occ = top->occ;
	int32_t		n_occ = top->n_occ;
	size_t		occ_bytes = sizeof(int32_t) * top->cap_occ;
	bool		ok = true;
	bool		stopped = false;

	if (!define_merge(tr->t, (uint32_t) left, (uint32_t) right, (uint32_t) id,
					  err))
		return false;

	/* Take the list: merging appends to other pairs' lists, not to this one. */
	top->occ = NULL;
	top->n_occ = top->cap_occ = 0;
	qsort(occ, n_occ, sizeof(int32_t), compare_int32);
	for (int32_t i = 0; i < n_occ && ok && !stopped; i++)
	{
		ok = merge_at(tr, occ[i], left, right, id);
		stopped = (i + 1) % TRAIN_CHECK_INTERVAL == 0 &&
			interrupted(tr->stop, err);
	}
	budget_free(&tr->budget, occ, occ_bytes);
	if (!ok)
		allocation_error(&tr->budget, err);
	return ok && !stopped;
}

static void
bpe_trainer_free(BpeTrainer *tr)
{
	Budget	   *b = &tr->budget;

	budget_free(b, tr->sym, sizeof(int32_t) * (tr->n_sym + 1));
	budget_free(b, tr->prev, sizeof(int32_t) * (tr->n_sym + 1));
	budget_free(b, tr->next, sizeof(int32_t) * (tr->n_sym + 1));
	budget_free(b, tr->word_of, sizeof(int32_t) * (tr->n_sym + 1));
	budget_free(b, tr->word_count, sizeof(int64_t) * (tr->n_words + 1));
	for (int32_t i = 0; i < tr->n_pairs; i++)
		budget_free(b, tr->pairs[i].occ, sizeof(int32_t) * tr->pairs[i].cap_occ);
	budget_free(b, tr->pairs, sizeof(Pair) * tr->cap_pairs);
	budget_free(b, tr->heap, sizeof(int32_t) * tr->cap_pairs);
	pairmap_free(&tr->pair_index);
}

/* A tokenizer of the 256 bytes and the special tokens, room for vocab_size. */
static Tokenizer *
base_tokenizer(int vocab_size, CoreError *err)
{
	Tokenizer  *t = tok_alloc(vocab_size, vocab_size - TOK_MIN_VOCAB);

	if (t == NULL)
	{
		core_error(err, CORE_ERR_NO_MEMORY, "out of memory");
		return NULL;
	}
	for (int b = 0; b < 256; b++)
		if (!define_byte(t, b, (uint32_t) b, err))
			goto fail;
	for (int role = 1; role <= N_ROLES; role++)
		if (!define_special(t, role, 255 + role, role_name[role],
							strlen(role_name[role]), err))
			goto fail;
	return t;

fail:
	tok_free(t);
	return NULL;
}

Tokenizer *
tok_train(const char *const *texts, const size_t *lens, size_t n_texts,
		  int vocab_size, size_t max_bytes, const StopCheck *stop,
		  CoreError *err)
{
	ChunkTable	ct = {0};
	BpeTrainer		tr = {.budget = {.limit = max_bytes},.stop = stop};
	Tokenizer  *t;
	int32_t		id;
	bool		ok;

	if (vocab_size < TOK_MIN_VOCAB || vocab_size > TOK_MAX_VOCAB)
	{
		core_error(err, CORE_ERR_INVALID_INPUT, "vocab_size must be between %d and %d, not %d",
				   TOK_MIN_VOCAB, TOK_MAX_VOCAB, vocab_size);
		return NULL;
	}
	if ((t = base_tokenizer(vocab_size, err)) == NULL)
		return NULL;
	tr.t = t;
	ok = count_chunks(&tr, &ct, texts, lens, n_texts, err) &&
		check_estimate(&tr, &ct, err) &&
		build_words(&tr, &ct, err);
	for (id = TOK_MIN_VOCAB; ok && id < vocab_size && tr.heap_len > 0; id++)
		ok = !interrupted(stop, err) && merge_top_pair(&tr, id, err);
	t->n_tokens = id;
	budget_free(&tr.budget, ct.slots, chunk_table_bytes(&ct));
	bpe_trainer_free(&tr);
	if (ok)
		return t;
	tok_free(t);
	return NULL;
}
