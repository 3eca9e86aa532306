/*
 * tokenizer_internal.h - what the tokenizer's files share: the Tokenizer
 * struct, the pair map, the memory budget of training, pre-tokenization
 * and the steps that build a tokenizer's tables.  Not for other modules:
 * they use tokenizer.h.
 */
#ifndef DISTILL_CORE_TOKENIZER_INTERNAL_H
#define DISTILL_CORE_TOKENIZER_INTERNAL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/tokenizer.h"
#include "core/util.h"

/* Special token roles, numbered as in the serialized form. */
enum
{
	ROLE_PAD = 1,
	ROLE_BOS,
	ROLE_EOS,
	ROLE_SEP,
	N_ROLES = ROLE_SEP
};

/* How a token id was defined; UNDEFINED only while a tokenizer is built. */
enum
{
	KIND_UNDEFINED = 0,
	KIND_BYTE,
	KIND_MERGE,
	KIND_SPECIAL
};

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

/*
 * Open-addressing hash map from a pair of ids, packed as (left << 32) |
 * right, to an int32.  Ids are below 2^20, so the all-ones key is free to
 * mark an empty slot.
 */
#define MAP_EMPTY UINT64_MAX

typedef struct PairMap
{
	uint64_t   *keys;
	int32_t    *values;
	uint32_t	mask;			/* capacity - 1; capacity is a power of 2 */
	uint32_t	count;
	Budget	   *budget;			/* counts the arrays; NULL = not counted */
} PairMap;

struct Pretrained;

/* Tokenizer.algorithm */
enum
{
	TOKENIZER_SCRATCH = 0,		/* trained by tok_train() */
	TOKENIZER_SP,				/* SentencePiece-style BPE */
	TOKENIZER_BYTE_BPE			/* GPT-2-style byte-level BPE */
};

/*
 * A tokenizer is either trained here (algorithm TOKENIZER_SCRATCH, pretrained
 * NULL: the fields below) or a pretrained checkpoint's (another kind, its
 * tables in pretrained, tokenizer_pretrained_internal.h; of the fields
 * below only n_tokens is set).
 */
struct Tokenizer
{
	int			algorithm;		/* TOKENIZER_SCRATCH, _SP, _BYTE_BPE */
	struct Pretrained *pretrained;
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

/* Allocation counted in a budget (tokenizer_pairmap.c); b NULL = not counted. */
extern void *budget_realloc(Budget *b, void *p, size_t old_size, size_t new_size);
extern void budget_free(Budget *b, void *p, size_t size);

/*
 * The pair map (tokenizer_pairmap.c).  pairmap_init() makes an empty map
 * with room for `expected` entries before it grows, its arrays counted in
 * budget (may be NULL); pairmap_put() stores a key that is not in the map
 * yet, doubling it at half load.  The lookups are here, inline: encoding
 * makes one per candidate merge.
 */
extern bool pairmap_init(PairMap *m, size_t expected, Budget *budget);
extern void pairmap_free(PairMap *m);
extern size_t pairmap_bytes(const PairMap *m);
extern bool pairmap_put(PairMap *m, uint64_t key, int32_t value);

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

/* The slot holding key, or the empty slot where it would go. */
static inline uint32_t
pairmap_slot(const PairMap *m, uint64_t key)
{
	uint32_t	i = hash_pair(key) & m->mask;

	while (m->keys[i] != key && m->keys[i] != MAP_EMPTY)
		i = (i + 1) & m->mask;
	return i;
}

/* The value stored under key, or -1. */
static inline int32_t
pairmap_get(const PairMap *m, uint64_t key)
{
	uint32_t	i = pairmap_slot(m, key);

	return m->keys[i] == key ? m->values[i] : -1;
}

/*
 * End of the chunk starting at s[i] (i < len); rules in tokenizer.h
 * (tokenizer_pretok.c).  It reads no byte past s[i + TOK_MAX_CHUNK_BYTES].
 */
extern size_t chunk_end(const uint8_t *s, size_t len, size_t i);

/*
 * Building the tables (tokenizer.c): a tokenizer with room for n_tokens
 * ids and max_merges merges, all undefined; then each id defined once, as
 * a byte, a merge of two defined tokens (with the next rank) or a special
 * token.  The define_* steps check their input and return false with a
 * message in err.
 */
extern Tokenizer *tok_alloc(int32_t n_tokens, int32_t max_merges);
extern bool define_byte(Tokenizer *t, int byte, uint32_t id,
						CoreError *err);
extern bool define_merge(Tokenizer *t, uint32_t left, uint32_t right,
						 uint32_t result, CoreError *err);
extern bool define_special(Tokenizer *t, uint32_t role, uint32_t id,
						   const void *name, size_t name_len,
						   CoreError *err);

#endif
