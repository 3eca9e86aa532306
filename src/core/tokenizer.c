/*
 * tokenizer.c - the Tokenizer's tables: building them one token at a time
 * (shared by training and deserialization, which is why every step checks
 * its input and explains what is wrong), and reading them.
 *
 * Pre-tokenization is in tokenizer_pretok.c, the pair map in
 * tokenizer_pairmap.c, training in tokenizer_bpe_train.c, encoding and
 * decoding in tokenizer_encode.c, serialization in tokenizer_io.c.
 * The tokenizers of pretrained checkpoints have their own tables
 * (tokenizer_pretrained.c); the functions here hand them on.
 */
#include "core/tokenizer.h"

#include <stdlib.h>
#include <string.h>

#include "core/tokenizer_internal.h"
#include "core/tokenizer_pretrained_internal.h"

/* A tokenizer with room for n_tokens ids and max_merges merges, all empty. */
Tokenizer *
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
			CoreError *err)
{
	if (id >= (uint32_t) t->n_tokens)
	{
		core_error(err, CORE_ERR_CORRUPT, "inconsistent tables: token id %u out of range",
				   id);
		return false;
	}
	if (t->kind[id] != KIND_UNDEFINED)
	{
		core_error(err, CORE_ERR_CORRUPT, "inconsistent tables: token id %u defined twice",
				   id);
		return false;
	}
	if (nbytes == 0 || nbytes > TOK_MAX_TOKEN_BYTES)
	{
		core_error(err, CORE_ERR_CORRUPT,
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
			core_error(err, CORE_ERR_NO_MEMORY, "out of memory");
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

bool
define_byte(Tokenizer *t, int byte, uint32_t id, CoreError *err)
{
	if (!claim_token(t, id, KIND_BYTE, 1, err))
		return false;
	t->pool[t->off[id]] = (char) byte;
	t->byte_id[byte] = (int32_t) id;
	return true;
}

/* Append merge (left, right) -> result with the next rank. */
bool
define_merge(Tokenizer *t, uint32_t left, uint32_t right, uint32_t result,
			 CoreError *err)
{
	int32_t		rank = t->n_merges;
	uint64_t	key;

	if (left >= (uint32_t) t->n_tokens || right >= (uint32_t) t->n_tokens ||
		(t->kind[left] != KIND_BYTE && t->kind[left] != KIND_MERGE) ||
		(t->kind[right] != KIND_BYTE && t->kind[right] != KIND_MERGE))
	{
		core_error(err, CORE_ERR_CORRUPT,
				   "inconsistent tables: merge %d uses an undefined or special token",
				   rank);
		return false;
	}
	key = pack_pair((int32_t) left, (int32_t) right);
	if (pairmap_get(&t->rank_of, key) >= 0)
	{
		core_error(err, CORE_ERR_CORRUPT, "inconsistent tables: merge %d repeats a pair",
				   rank);
		return false;
	}
	if (!claim_token(t, result, KIND_MERGE,
					 (size_t) t->len[left] + t->len[right], err))
		return false;
	if (!pairmap_put(&t->rank_of, key, rank))
	{
		core_error(err, CORE_ERR_NO_MEMORY, "out of memory");
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

bool
define_special(Tokenizer *t, uint32_t role, uint32_t id, const void *name,
			   size_t name_len, CoreError *err)
{
	if (role < 1 || role > N_ROLES || t->special_id[role] >= 0)
	{
		core_error(err, CORE_ERR_CORRUPT,
				   "inconsistent tables: special token role %u unknown or repeated",
				   role);
		return false;
	}
	if (!claim_token(t, id, KIND_SPECIAL, name_len, err))
		return false;
	memcpy(t->pool + t->off[id], name, name_len);
	t->special_id[role] = (int32_t) id;
	return true;
}

int
tok_vocab_size(const Tokenizer *t)
{
	return t->n_tokens;
}

int32_t
tok_pad(const Tokenizer *t)
{
	if (t->pretrained != NULL)
		return -1;
	return t->special_id[ROLE_PAD];
}

int32_t
tok_bos(const Tokenizer *t)
{
	if (t->pretrained != NULL)
		return t->pretrained->bos;
	return t->special_id[ROLE_BOS];
}

int32_t
tok_eos(const Tokenizer *t)
{
	if (t->pretrained != NULL)
		return t->pretrained->eos;
	return t->special_id[ROLE_EOS];
}

int32_t
tok_sep(const Tokenizer *t)
{
	if (t->pretrained != NULL)
		return -1;
	return t->special_id[ROLE_SEP];
}

const char *
tok_token(const Tokenizer *t, int32_t id, size_t *len_out)
{
	if (id < 0 || id >= t->n_tokens)
		return NULL;
	if (t->pretrained != NULL)
	{
		*len_out = t->pretrained->len[id];
		return t->pretrained->pool + t->pretrained->off[id];
	}
	*len_out = t->len[id];
	return t->pool + t->off[id];
}

size_t
tok_memory_bytes(const Tokenizer *t)
{
	if (t->pretrained != NULL)
		return sizeof(Tokenizer) + pre_memory_bytes(t->pretrained);
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
	pre_free(t->pretrained);
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
