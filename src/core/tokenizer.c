/*
 * tokenizer.c - byte-level BPE: pre-tokenization, training, encoding,
 * decoding and serialization.
 *
 * Training counts the distinct chunks of the corpus, lays their bytes end
 * to end as doubly linked symbol lists, and keeps for every adjacent pair
 * of symbols its weighted count, the positions where it occurs, and its
 * place in a max-heap.  A merge visits only the recorded positions of the
 * winning pair and adjusts the counts of the neighbouring pairs, so its
 * cost is proportional to the pair's occurrences, not to the corpus.
 * Its working memory is counted against a limit, and it asks the caller's
 * stop check between bounded units of work.
 *
 * Encoding merges within each chunk by rank with a min-heap of (rank,
 * position) candidates: the GPT-2 rule (lowest rank first, leftmost first)
 * in O(n log n) for a chunk of n bytes (at most TOK_MAX_CHUNK_BYTES).
 * Chunks encode independently, so encoding stops as soon as it has the
 * tokens asked for, however long the text.
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
 * special token); a merge may only use ids defined before it.  A pretrained
 * GPT-2-style vocabulary fits the same tables whatever its id layout; it
 * would only need its own pretokenizer number.
 */
#include "core/tokenizer.h"

#include <limits.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/crc32c.h"

#define TOK_MAGIC "DSTK"
#define TOK_FORMAT_VERSION 1
#define TOK_PRETOKENIZER 1
#define TOK_HEADER_BYTES 24		/* magic .. n_special */

/* Special token roles, numbered as in the serialized form. */
enum
{
	ROLE_PAD = 1,
	ROLE_BOS,
	ROLE_EOS,
	ROLE_SEP,
	N_ROLES = ROLE_SEP
};

static const char *const role_name[N_ROLES + 1] = {
	NULL, "<pad>", "<bos>", "<eos>", "<sep>"
};

/* How a token id was defined; UNDEFINED only while a tokenizer is built. */
enum
{
	KIND_UNDEFINED = 0,
	KIND_BYTE,
	KIND_MERGE,
	KIND_SPECIAL
};

/* Byte classes of the pre-tokenizer. */
enum
{
	CLASS_LETTER,
	CLASS_DIGIT,
	CLASS_SPACE,
	CLASS_OTHER
};

/*
 * Open-addressing hash map from a pair of ids, packed as (left << 32) |
 * right, to an int32.  Ids are below 2^20, so the all-ones key is free to
 * mark an empty slot.
 */
#define MAP_EMPTY UINT64_MAX

/*
 * Memory counted against a limit: training's working memory
 * (tok_train()'s max_bytes).
 */
typedef struct Budget
{
	size_t		used;
	size_t		limit;
	bool		exceeded;		/* an allocation would have passed limit */
} Budget;

typedef struct PairMap
{
	uint64_t   *keys;
	int32_t    *values;
	uint32_t	mask;			/* capacity - 1; capacity is a power of 2 */
	uint32_t	count;
	Budget	   *budget;			/* counts the arrays; NULL = not counted */
} PairMap;

struct Tokenizer
{
	int32_t		n_tokens;
	int32_t		n_merges;
	int32_t		token_cap;		/* room in the per-token arrays */
	int32_t		merge_cap;		/* room in the per-merge arrays */
	int32_t		byte_id[256];
	int32_t		special_id[N_ROLES + 1];	/* indexed by role */

	/* Per token: kind and bytes (pool[off .. off + len)). */
	uint8_t    *kind;
	uint32_t   *off;
	uint16_t   *len;
	char	   *pool;
	size_t		pool_len;
	size_t		pool_cap;

	/* Per merge, by rank. */
	int32_t    *merge_left;
	int32_t    *merge_right;
	int32_t    *merge_result;
	PairMap		rank_of;		/* (left, right) -> rank */
};

static void set_error(char *err, size_t errlen, const char *fmt,...)
			__attribute__((format(printf, 3, 4)));

static void
set_error(char *err, size_t errlen, const char *fmt,...)
{
	va_list		ap;

	if (err == NULL || errlen == 0)
		return;
	va_start(ap, fmt);
	vsnprintf(err, errlen, fmt, ap);
	va_end(ap);
}

/*
 * realloc() for memory counted in b (NULL = not counted): p held old_size
 * bytes.  NULL, with p untouched, when memory runs out or the new size
 * would pass the limit (then b->exceeded says so).
 */
static void *
budget_realloc(Budget *b, void *p, size_t old_size, size_t new_size)
{
	void	   *q;

	if (b != NULL && new_size > old_size &&
		new_size - old_size > b->limit - b->used)
	{
		b->exceeded = true;
		return NULL;
	}
	if ((q = realloc(p, new_size)) == NULL)
		return NULL;
	if (b != NULL)
		b->used = b->used - old_size + new_size;
	return q;
}

static void
budget_free(Budget *b, void *p, size_t size)
{
	free(p);
	if (b != NULL && p != NULL)
		b->used -= size;
}

/* ---------------------------------------------------------------------
 * Pre-tokenization
 * ---------------------------------------------------------------------
 */

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
static size_t
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

/* ---------------------------------------------------------------------
 * Pair map
 * ---------------------------------------------------------------------
 */

static inline uint64_t
pack_pair(int32_t left, int32_t right)
{
	return (uint64_t) (uint32_t) left << 32 | (uint32_t) right;
}

static inline uint32_t
hash_pair(uint64_t key)
{
	return (uint32_t) ((key * 0x9E3779B97F4A7C15ull) >> 32);
}

/* Arrays for capacity entries, all empty; m->budget is kept. */
static bool
pairmap_alloc(PairMap *m, uint32_t capacity)
{
	m->keys = budget_realloc(m->budget, NULL, 0, sizeof(uint64_t) * capacity);
	m->values = m->keys == NULL ? NULL :
		budget_realloc(m->budget, NULL, 0, sizeof(int32_t) * capacity);
	if (m->values == NULL)
	{
		budget_free(m->budget, m->keys, sizeof(uint64_t) * capacity);
		m->keys = NULL;
		return false;
	}
	for (uint32_t i = 0; i < capacity; i++)
		m->keys[i] = MAP_EMPTY;
	m->mask = capacity - 1;
	m->count = 0;
	return true;
}

/*
 * An empty map with room for `expected` entries before it grows, its
 * arrays counted in budget (may be NULL).
 */
static bool
pairmap_init(PairMap *m, size_t expected, Budget *budget)
{
	uint32_t	capacity = 16;

	while (capacity < 2 * expected)
		capacity *= 2;
	m->budget = budget;
	return pairmap_alloc(m, capacity);
}

static void
pairmap_free(PairMap *m)
{
	if (m->keys == NULL)
		return;
	budget_free(m->budget, m->keys, sizeof(uint64_t) * (m->mask + 1));
	budget_free(m->budget, m->values, sizeof(int32_t) * (m->mask + 1));
	m->keys = NULL;
	m->values = NULL;
}

static size_t
pairmap_bytes(const PairMap *m)
{
	return m->keys == NULL ? 0 : (sizeof(uint64_t) + sizeof(int32_t)) * (m->mask + 1);
}

/* The slot holding key, or the empty slot where it would go. */
static uint32_t
pairmap_slot(const PairMap *m, uint64_t key)
{
	uint32_t	i = hash_pair(key) & m->mask;

	while (m->keys[i] != key && m->keys[i] != MAP_EMPTY)
		i = (i + 1) & m->mask;
	return i;
}

/* The value stored under key, or -1. */
static int32_t
pairmap_get(const PairMap *m, uint64_t key)
{
	uint32_t	i = pairmap_slot(m, key);

	return m->keys[i] == key ? m->values[i] : -1;
}

/* Store a key that is not in the map yet, doubling it at half load. */
static bool
pairmap_put(PairMap *m, uint64_t key, int32_t value)
{
	uint32_t	i;

	if (2 * (m->count + 1) > m->mask + 1)
	{
		PairMap		bigger = {.budget = m->budget};

		if (!pairmap_alloc(&bigger, 2 * (m->mask + 1)))
			return false;
		for (uint32_t j = 0; j <= m->mask; j++)
			if (m->keys[j] != MAP_EMPTY)
			{
				i = pairmap_slot(&bigger, m->keys[j]);
				bigger.keys[i] = m->keys[j];
				bigger.values[i] = m->values[j];
			}
		bigger.count = m->count;
		pairmap_free(m);
		*m = bigger;
	}
	i = pairmap_slot(m, key);
	m->keys[i] = key;
	m->values[i] = value;
	m->count++;
	return true;
}

/* ---------------------------------------------------------------------
 * Building a tokenizer: shared by training and deserialization, which is
 * why every step checks its input and explains what is wrong.
 * ---------------------------------------------------------------------
 */

/* A tokenizer with room for n_tokens ids and max_merges merges, all empty. */
static Tokenizer *
tok_alloc(int32_t n_tokens, int32_t max_merges)
{
	Tokenizer  *t = calloc(1, sizeof(Tokenizer));
	size_t		nt = (size_t) n_tokens;
	size_t		nm = (size_t) max_merges + 1;

	if (t == NULL)
		return NULL;
	t->n_tokens = n_tokens;
	t->token_cap = n_tokens;
	t->merge_cap = max_merges + 1;
	for (int role = 1; role <= N_ROLES; role++)
		t->special_id[role] = -1;
	t->kind = calloc(nt, sizeof(uint8_t));
	t->off = malloc(nt * sizeof(uint32_t));
	t->len = malloc(nt * sizeof(uint16_t));
	t->pool_cap = 1024;
	t->pool = malloc(t->pool_cap);
	t->merge_left = malloc(nm * sizeof(int32_t));
	t->merge_right = malloc(nm * sizeof(int32_t));
	t->merge_result = malloc(nm * sizeof(int32_t));
	if (t->kind == NULL || t->off == NULL || t->len == NULL ||
		t->pool == NULL || t->merge_left == NULL || t->merge_right == NULL ||
		t->merge_result == NULL || !pairmap_init(&t->rank_of, nm, NULL))
	{
		tok_free(t);
		return NULL;
	}
	return t;
}

/*
 * Claim the undefined id for a token of nbytes bytes, reserving them at the
 * end of the pool; the caller copies them in.
 */
static bool
claim_token(Tokenizer *t, uint32_t id, uint8_t kind, size_t nbytes,
			char *err, size_t errlen)
{
	if (id >= (uint32_t) t->n_tokens)
	{
		set_error(err, errlen, "inconsistent tables: token id %u out of range",
				  id);
		return false;
	}
	if (t->kind[id] != KIND_UNDEFINED)
	{
		set_error(err, errlen, "inconsistent tables: token id %u defined twice",
				  id);
		return false;
	}
	if (nbytes == 0 || nbytes > TOK_MAX_TOKEN_BYTES)
	{
		set_error(err, errlen,
				  "inconsistent tables: token %u would have %zu bytes (1 to %d allowed)",
				  id, nbytes, TOK_MAX_TOKEN_BYTES);
		return false;
	}
	if (t->pool_len + nbytes > t->pool_cap)
	{
		size_t		cap = 2 * t->pool_cap + nbytes;
		char	   *pool = realloc(t->pool, cap);

		if (pool == NULL)
		{
			set_error(err, errlen, "out of memory");
			return false;
		}
		t->pool = pool;
		t->pool_cap = cap;
	}
	t->kind[id] = kind;
	t->off[id] = (uint32_t) t->pool_len;
	t->len[id] = (uint16_t) nbytes;
	t->pool_len += nbytes;
	return true;
}

static bool
define_byte(Tokenizer *t, int byte, uint32_t id, char *err, size_t errlen)
{
	if (!claim_token(t, id, KIND_BYTE, 1, err, errlen))
		return false;
	t->pool[t->off[id]] = (char) byte;
	t->byte_id[byte] = (int32_t) id;
	return true;
}

/* Append merge (left, right) -> result with the next rank. */
static bool
define_merge(Tokenizer *t, uint32_t left, uint32_t right, uint32_t result,
			 char *err, size_t errlen)
{
	int32_t		rank = t->n_merges;
	uint64_t	key;

	if (left >= (uint32_t) t->n_tokens || right >= (uint32_t) t->n_tokens ||
		(t->kind[left] != KIND_BYTE && t->kind[left] != KIND_MERGE) ||
		(t->kind[right] != KIND_BYTE && t->kind[right] != KIND_MERGE))
	{
		set_error(err, errlen,
				  "inconsistent tables: merge %d uses an undefined or special token",
				  rank);
		return false;
	}
	key = pack_pair((int32_t) left, (int32_t) right);
	if (pairmap_get(&t->rank_of, key) >= 0)
	{
		set_error(err, errlen, "inconsistent tables: merge %d repeats a pair",
				  rank);
		return false;
	}
	if (!claim_token(t, result, KIND_MERGE,
					 (size_t) t->len[left] + t->len[right], err, errlen))
		return false;
	if (!pairmap_put(&t->rank_of, key, rank))
	{
		set_error(err, errlen, "out of memory");
		return false;
	}
	memcpy(t->pool + t->off[result], t->pool + t->off[left], t->len[left]);
	memcpy(t->pool + t->off[result] + t->len[left], t->pool + t->off[right],
		   t->len[right]);
	t->merge_left[rank] = (int32_t) left;
	t->merge_right[rank] = (int32_t) right;
	t->merge_result[rank] = (int32_t) result;
	t->n_merges++;
	return true;
}

static bool
define_special(Tokenizer *t, uint32_t role, uint32_t id, const void *name,
			   size_t name_len, char *err, size_t errlen)
{
	if (role < 1 || role > N_ROLES || t->special_id[role] >= 0)
	{
		set_error(err, errlen,
				  "inconsistent tables: special token role %u unknown or repeated",
				  role);
		return false;
	}
	if (!claim_token(t, id, KIND_SPECIAL, name_len, err, errlen))
		return false;
	memcpy(t->pool + t->off[id], name, name_len);
	t->special_id[role] = (int32_t) id;
	return true;
}

/* ---------------------------------------------------------------------
 * Training
 * ---------------------------------------------------------------------
 */

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
typedef struct Trainer
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
} Trainer;

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
interrupted(const StopCheck *stop, char *err, size_t errlen)
{
	if (!stop_requested(stop))
		return false;
	set_error(err, errlen, "interrupted");
	return true;
}

/* The message for an allocation that failed: the budget's, or no memory. */
static void
allocation_error(const Budget *b, char *err, size_t errlen)
{
	if (b->exceeded)
		set_error(err, errlen,
				  "training the tokenizer needs more working memory than the %zu MB allowed",
				  b->limit >> 20);
	else
		set_error(err, errlen, "out of memory");
}

/*
 * Count the chunks of every text.  Single-byte chunks are left out: they
 * hold no pair.
 */
static bool
count_chunks(Trainer *tr, ChunkTable *ct, const char *const *texts,
			 const size_t *lens, size_t n_texts, char *err, size_t errlen)
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
				if (interrupted(tr->stop, err, errlen))
					return false;
			}
		}
	}
	return true;

fail:
	allocation_error(&tr->budget, err, errlen);
	return false;
}

/*
 * Refuse up front a corpus whose distinct chunks will not fit in the
 * budget, with the figure it needs.
 */
static bool
check_estimate(const Trainer *tr, const ChunkTable *ct, char *err, size_t errlen)
{
	size_t		needed = chunk_table_bytes(ct) +
		(size_t) TRAIN_BYTES_PER_SYMBOL * ct->total_len;

	if (needed <= tr->budget.limit)
		return true;
	set_error(err, errlen,
			  "training the tokenizer needs about %zu MB of working memory for %zu bytes of distinct chunks, more than the %zu MB allowed",
			  (needed >> 20) + 1, ct->total_len, tr->budget.limit >> 20);
	return false;
}

/* Does pair i come before pair j: more frequent, then smaller ids? */
static inline bool
pair_above(const Trainer *tr, int32_t i, int32_t j)
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
heap_set(Trainer *tr, int32_t pos, int32_t pair)
{
	tr->heap[pos] = pair;
	tr->pairs[pair].heap_pos = pos;
}

static void
heap_sift_up(Trainer *tr, int32_t pos)
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
heap_sift_down(Trainer *tr, int32_t pos)
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
heap_update(Trainer *tr, int32_t pair)
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
new_pair(Trainer *tr, int32_t left, int32_t right)
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
count_pair(Trainer *tr, int32_t left, int32_t right, int64_t delta, int32_t pos)
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
alloc_words(Trainer *tr, size_t n_sym, size_t n_words)
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
build_words(Trainer *tr, const ChunkTable *ct, char *err, size_t errlen)
{
	int32_t		pos = 0;
	int32_t		w = 0;

	if (ct->total_len >= INT32_MAX)
	{
		set_error(err, errlen,
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
			if (pos % TRAIN_CHECK_INTERVAL == 0 && interrupted(tr->stop, err, errlen))
				return false;
		}
		w++;
	}
	return true;

fail:
	allocation_error(&tr->budget, err, errlen);
	return false;
}

/*
 * Merge the pair (left, right) into token id at position p if it is still
 * there, moving the counts of the pairs around it.
 */
static bool
merge_at(Trainer *tr, int32_t p, int32_t left, int32_t right, int32_t id)
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
merge_top_pair(Trainer *tr, int32_t id, char *err, size_t errlen)
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
					  err, errlen))
		return false;

	/* Take the list: merging appends to other pairs' lists, not to this one. */
	top->occ = NULL;
	top->n_occ = top->cap_occ = 0;
	qsort(occ, n_occ, sizeof(int32_t), compare_int32);
	for (int32_t i = 0; i < n_occ && ok && !stopped; i++)
	{
		ok = merge_at(tr, occ[i], left, right, id);
		stopped = (i + 1) % TRAIN_CHECK_INTERVAL == 0 &&
			interrupted(tr->stop, err, errlen);
	}
	budget_free(&tr->budget, occ, occ_bytes);
	if (!ok)
		allocation_error(&tr->budget, err, errlen);
	return ok && !stopped;
}

static void
trainer_free(Trainer *tr)
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
base_tokenizer(int vocab_size, char *err, size_t errlen)
{
	Tokenizer  *t = tok_alloc(vocab_size, vocab_size - TOK_MIN_VOCAB);

	if (t == NULL)
	{
		set_error(err, errlen, "out of memory");
		return NULL;
	}
	for (int b = 0; b < 256; b++)
		if (!define_byte(t, b, (uint32_t) b, err, errlen))
			goto fail;
	for (int role = 1; role <= N_ROLES; role++)
		if (!define_special(t, role, 255 + role, role_name[role],
							strlen(role_name[role]), err, errlen))
			goto fail;
	return t;

fail:
	tok_free(t);
	return NULL;
}

Tokenizer *
tok_train(const char *const *texts, const size_t *lens, size_t n_texts,
		  int vocab_size, size_t max_bytes, const StopCheck *stop,
		  char *err, size_t errlen)
{
	ChunkTable	ct = {0};
	Trainer		tr = {.budget = {.limit = max_bytes},.stop = stop};
	Tokenizer  *t;
	int32_t		id;
	bool		ok;

	if (vocab_size < TOK_MIN_VOCAB || vocab_size > TOK_MAX_VOCAB)
	{
		set_error(err, errlen, "vocab_size must be between %d and %d, not %d",
				  TOK_MIN_VOCAB, TOK_MAX_VOCAB, vocab_size);
		return NULL;
	}
	if ((t = base_tokenizer(vocab_size, err, errlen)) == NULL)
		return NULL;
	tr.t = t;
	ok = count_chunks(&tr, &ct, texts, lens, n_texts, err, errlen) &&
		check_estimate(&tr, &ct, err, errlen) &&
		build_words(&tr, &ct, err, errlen);
	for (id = TOK_MIN_VOCAB; ok && id < vocab_size && tr.heap_len > 0; id++)
		ok = !interrupted(stop, err, errlen) && merge_top_pair(&tr, id, err, errlen);
	t->n_tokens = id;
	budget_free(&tr.budget, ct.slots, chunk_table_bytes(&ct));
	trainer_free(&tr);
	if (ok)
		return t;
	tok_free(t);
	return NULL;
}

/* ---------------------------------------------------------------------
 * Encoding and decoding
 * ---------------------------------------------------------------------
 */

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

static void
candidate_push(Scratch *s, uint64_t key)
{
	size_t		i = s->heap_len++;

	while (i > 0 && s->heap[(i - 1) / 2] > key)
	{
		s->heap[i] = s->heap[(i - 1) / 2];
		i = (i - 1) / 2;
	}
	s->heap[i] = key;
}

static uint64_t
candidate_pop(Scratch *s)
{
	uint64_t	top = s->heap[0];
	uint64_t	last = s->heap[--s->heap_len];
	size_t		i = 0;

	for (;;)
	{
		size_t		child = 2 * i + 1;

		if (child >= s->heap_len)
			break;
		if (child + 1 < s->heap_len && s->heap[child + 1] < s->heap[child])
			child++;
		if (s->heap[child] >= last)
			break;
		s->heap[i] = s->heap[child];
		i = child;
	}
	if (s->heap_len > 0)
		s->heap[i] = last;
	return top;
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
		candidate_push(s, (uint64_t) rank << 32 | (uint32_t) p);
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
		uint64_t	key = candidate_pop(s);
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

int
tok_vocab_size(const Tokenizer *t)
{
	return t->n_tokens;
}

int32_t
tok_pad(const Tokenizer *t)
{
	return t->special_id[ROLE_PAD];
}

int32_t
tok_bos(const Tokenizer *t)
{
	return t->special_id[ROLE_BOS];
}

int32_t
tok_eos(const Tokenizer *t)
{
	return t->special_id[ROLE_EOS];
}

int32_t
tok_sep(const Tokenizer *t)
{
	return t->special_id[ROLE_SEP];
}

const char *
tok_token(const Tokenizer *t, int32_t id, size_t *len_out)
{
	if (id < 0 || id >= t->n_tokens)
		return NULL;
	*len_out = t->len[id];
	return t->pool + t->off[id];
}

size_t
tok_memory_bytes(const Tokenizer *t)
{
	return sizeof(Tokenizer) +
		(size_t) t->token_cap * (sizeof(uint8_t) + sizeof(uint32_t) + sizeof(uint16_t)) +
		t->pool_cap + (size_t) t->merge_cap * 3 * sizeof(int32_t) +
		pairmap_bytes(&t->rank_of);
}

void
tok_free(Tokenizer *t)
{
	if (t == NULL)
		return;
	free(t->kind);
	free(t->off);
	free(t->len);
	free(t->pool);
	free(t->merge_left);
	free(t->merge_right);
	free(t->merge_result);
	pairmap_free(&t->rank_of);
	free(t);
}

/* ---------------------------------------------------------------------
 * Serialization
 * ---------------------------------------------------------------------
 */

static uint8_t *
put_u32(uint8_t *p, uint32_t v)
{
	p[0] = (uint8_t) v;
	p[1] = (uint8_t) (v >> 8);
	p[2] = (uint8_t) (v >> 16);
	p[3] = (uint8_t) (v >> 24);
	return p + 4;
}

static uint32_t
get_u32(const uint8_t *p)
{
	return (uint32_t) p[0] | (uint32_t) p[1] << 8 |
		(uint32_t) p[2] << 16 | (uint32_t) p[3] << 24;
}

void *
tok_serialize(const Tokenizer *t, size_t *len_out)
{
	size_t		size = TOK_HEADER_BYTES + 4 * 256 + 12 * (size_t) t->n_merges;
	uint8_t    *buf;
	uint8_t    *p;

	for (int role = 1; role <= N_ROLES; role++)
		size += 12 + t->len[t->special_id[role]];
	size += 4;					/* checksum */
	if ((buf = malloc(size)) == NULL)
		return NULL;
	memcpy(buf, TOK_MAGIC, 4);
	p = put_u32(buf + 4, TOK_FORMAT_VERSION);
	p = put_u32(p, TOK_PRETOKENIZER);
	p = put_u32(p, (uint32_t) t->n_tokens);
	p = put_u32(p, (uint32_t) t->n_merges);
	p = put_u32(p, N_ROLES);
	for (int b = 0; b < 256; b++)
		p = put_u32(p, (uint32_t) t->byte_id[b]);
	for (int32_t r = 0; r < t->n_merges; r++)
	{
		p = put_u32(p, (uint32_t) t->merge_left[r]);
		p = put_u32(p, (uint32_t) t->merge_right[r]);
		p = put_u32(p, (uint32_t) t->merge_result[r]);
	}
	for (int role = 1; role <= N_ROLES; role++)
	{
		int32_t		id = t->special_id[role];

		p = put_u32(p, (uint32_t) role);
		p = put_u32(p, (uint32_t) id);
		p = put_u32(p, t->len[id]);
		memcpy(p, t->pool + t->off[id], t->len[id]);
		p += t->len[id];
	}
	put_u32(p, crc32c(0, buf, (size_t) (p - buf)));
	*len_out = size;
	return buf;
}

/*
 * Check the blob's header and size: every field must lie inside it and the
 * checksum must be its last four bytes.
 */
static bool
check_envelope(const uint8_t *b, size_t len, char *err, size_t errlen)
{
	uint32_t	n_tokens,
				n_merges,
				n_special;
	size_t		pos;
	bool		truncated;

	if (len < 4 || memcmp(b, TOK_MAGIC, 4) != 0)
	{
		if (len < 4 && (len == 0 || memcmp(b, TOK_MAGIC, len) == 0))
			set_error(err, errlen, "truncated tokenizer: %zu bytes", len);
		else
			set_error(err, errlen, "not a distill tokenizer (bad magic)");
		return false;
	}
	if (len < TOK_HEADER_BYTES)
	{
		set_error(err, errlen, "truncated tokenizer: %zu bytes", len);
		return false;
	}
	if (get_u32(b + 4) != TOK_FORMAT_VERSION)
	{
		set_error(err, errlen,
				  "unsupported tokenizer format version %u (this build reads %d)",
				  get_u32(b + 4), TOK_FORMAT_VERSION);
		return false;
	}
	if (get_u32(b + 8) != TOK_PRETOKENIZER)
	{
		set_error(err, errlen, "unsupported pre-tokenizer %u", get_u32(b + 8));
		return false;
	}
	n_tokens = get_u32(b + 12);
	n_merges = get_u32(b + 16);
	n_special = get_u32(b + 20);
	if (n_tokens > TOK_MAX_VOCAB || n_special != N_ROLES ||
		(uint64_t) n_tokens != 256 + (uint64_t) n_merges + n_special)
	{
		set_error(err, errlen,
				  "inconsistent tables: %u tokens, %u merges, %u special tokens",
				  n_tokens, n_merges, n_special);
		return false;
	}
	/* pos <= len holds after each step, so len - pos never wraps. */
	pos = TOK_HEADER_BYTES + 4 * 256 + 12 * (size_t) n_merges;
	truncated = pos > len;
	for (uint32_t i = 0; i < n_special && !truncated; i++)
	{
		truncated = len - pos < 12 || len - pos - 12 < get_u32(b + pos + 8);
		if (!truncated)
			pos += 12 + (size_t) get_u32(b + pos + 8);
	}
	if (truncated || len - pos < 4)
	{
		set_error(err, errlen, "truncated tokenizer: %zu bytes", len);
		return false;
	}
	if (len - pos > 4)
	{
		set_error(err, errlen, "corrupt tokenizer: %zu bytes after the end",
				  len - pos - 4);
		return false;
	}
	if (crc32c(0, b, pos) != get_u32(b + pos))
	{
		set_error(err, errlen, "corrupt tokenizer: checksum mismatch");
		return false;
	}
	return true;
}

/* Define every token from an intact blob and check that none is missing. */
static bool
read_tables(Tokenizer *t, const uint8_t *b, char *err, size_t errlen)
{
	const uint8_t *p = b + TOK_HEADER_BYTES;
	uint32_t	n_merges = get_u32(b + 16);

	for (int byte = 0; byte < 256; byte++, p += 4)
		if (!define_byte(t, byte, get_u32(p), err, errlen))
			return false;
	for (uint32_t r = 0; r < n_merges; r++, p += 12)
		if (!define_merge(t, get_u32(p), get_u32(p + 4), get_u32(p + 8),
						  err, errlen))
			return false;
	for (int i = 0; i < N_ROLES; i++)
	{
		uint32_t	name_len = get_u32(p + 8);

		if (!define_special(t, get_u32(p), get_u32(p + 4), p + 12, name_len,
							err, errlen))
			return false;
		p += 12 + name_len;
	}
	/* With n_tokens = 256 + n_merges + n_special, no id can be left out. */
	return true;
}

Tokenizer *
tok_deserialize(const void *data, size_t len, char *err, size_t errlen)
{
	const uint8_t *b = data;
	Tokenizer  *t;

	if (b == NULL)
		len = 0;
	if (!check_envelope(b, len, err, errlen))
		return NULL;
	t = tok_alloc((int32_t) get_u32(b + 12), (int32_t) get_u32(b + 16));
	if (t == NULL)
	{
		set_error(err, errlen, "out of memory");
		return NULL;
	}
	if (!read_tables(t, b, err, errlen))
	{
		tok_free(t);
		return NULL;
	}
	return t;
}
