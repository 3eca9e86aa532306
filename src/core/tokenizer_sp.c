/*
 * tokenizer_sp.c - SentencePiece-style BPE (Llama 2, TinyLlama, llama2.c's
 * stories models): encoding, merges from scores, and the llama2.c and GGUF
 * "llama" loaders.
 *
 * SentencePiece writes spaces as U+2581 "▁" inside pieces and puts one
 * before the text (the dummy prefix); llama2.c's tokenizer.bin already has
 * real spaces.  Pieces are kept with real spaces here, so the text is
 * encoded as it is, with a space put first.  The text is split into
 * UTF-8 characters, each the token of that character or, when there is
 * none, its bytes as byte-fallback tokens <0xNN> (or the unknown token),
 * and adjacent tokens are merged by bpe_merge(): for llama2.c and GGUF,
 * every split of a token into two tokens is a merge into it, ranked by the
 * token's score (the higher the earlier, equal scores leftmost first), as
 * in llama2.c's and SentencePiece's encoders; a tokenizer.json lists its
 * merges by rank.  There is no pre-tokenization (unless a Metaspace
 * pre-tokenizer splits words), so a long text is one long merge, which
 * bpe_merge() does in O(n log n).
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/tokenizer_pretrained_internal.h"

#define SPACE_MARK "\xE2\x96\x81"	/* U+2581, SentencePiece's space */

size_t
sp_unescape(const char *in, size_t len, char *out)
{
	size_t		n = 0;

	for (size_t i = 0; i < len;)
	{
		if (len - i >= 3 && memcmp(in + i, SPACE_MARK, 3) == 0)
		{
			out[n++] = ' ';
			i += 3;
		}
		else
			out[n++] = in[i++];
	}
	return n;
}

int
sp_byte_piece(const char *s, size_t len)
{
	unsigned int byte;
	char		text[7];
	char		again[7];

	if (len != 6 || memcmp(s, "<0x", 3) != 0 || s[5] != '>')
		return -1;
	memcpy(text, s, 6);
	text[6] = '\0';
	if (sscanf(text, "<0x%2X>", &byte) != 1)
		return -1;
	snprintf(again, sizeof(again), "<0x%02X>", byte);
	return strcmp(again, text) == 0 ? (int) byte : -1;
}

/*
 * The initial symbols of one character: its token, else the tokens of its
 * bytes when the vocabulary has one for each of them, else unknown (which
 * the loader requires of a vocabulary that lacks some byte tokens).
 */
static bool
push_character(const Pretrained *p, const char *c, size_t n, IdList *out)
{
	int32_t		id = pre_piece_id(p, c, n);

	if (id >= 0)
		return idlist_push(out, id);
	for (size_t k = 0; k < n; k++)
		if (p->byte_id[(uint8_t) c[k]] < 0)
			return idlist_push(out, p->unk);
	for (size_t k = 0; k < n; k++)
		if (!idlist_push(out, p->byte_id[(uint8_t) c[k]]))
			return false;
	return true;
}

/* Encode one word (or the whole segment) of already prefixed text. */
static bool
encode_word(const Pretrained *p, const char *text, size_t len, BpeScratch *s,
			IdList *out, CoreError *err)
{
	size_t		start = out->n;
	int64_t		kept;

	for (size_t i = 0; i < len;)
	{
		size_t		n = utf8_char_len((const unsigned char *) text + i, len - i);

		if (!push_character(p, text + i, n, out))
			goto oom;
		i += n;
	}
	if ((kept = bpe_merge(p, s, out->ids + start, out->n - start)) < 0)
		goto oom;
	out->n = start + (size_t) kept;
	return true;
oom:
	core_error(err, CORE_ERR_NO_MEMORY, "out of memory encoding %zu bytes", len);
	return false;
}

bool
sp_encode_segment(const Pretrained *p, const char *text, size_t len,
				  bool at_start, BpeScratch *s, IdList *out, CoreError *err)
{
	bool		prefix = p->sp_prefix == SP_PREFIX_EVERY_SEGMENT ||
		(p->sp_prefix == SP_PREFIX_TEXT_START && at_start);
	char	   *buf = malloc(len + 1);
	size_t		n = 0;
	bool		ok = true;

	if (buf == NULL)
	{
		core_error(err, CORE_ERR_NO_MEMORY, "out of memory encoding %zu bytes", len);
		return false;
	}
	if (prefix)
		buf[n++] = ' ';
	if (p->flags & PRE_MARK_IS_SPACE)
		n += sp_unescape(text, len, buf + n);
	else
	{
		memcpy(buf + n, text, len);
		n += len;
	}
	if (!(p->flags & PRE_SPLIT_WORDS))
		ok = encode_word(p, buf, n, s, out, err);
	else
	{
		/* Metaspace split: a word starts at each space (merged with next) */
		size_t		word = 0;

		for (size_t i = 1; i <= n && ok; i++)
			if (i == n || buf[i] == ' ')
			{
				ok = encode_word(p, buf + word, i - word, s, out, err);
				word = i;
			}
	}
	free(buf);
	return ok;
}

/*
 * Tokens longer than this get no merges from their splits (each split
 * costs two lookups of up to its length, so a vocabulary of long tokens
 * would load in quadratic time).  SentencePiece's pieces are at most 16
 * characters (max_sentencepiece_length), 64 bytes: real vocabularies are
 * untouched.
 */
#define SP_MAX_SPLIT_BYTES 256

static int
compare_scores(const void *x, const void *y)
{
	float		a = *(const float *) x;
	float		b = *(const float *) y;

	return a > b ? -1 : a < b;
}

/*
 * The priority of each score: its place among the distinct scores, highest
 * first, so that equal scores tie and fall back to the leftmost pair.
 */
static uint32_t
score_rank(const float *sorted, size_t n_distinct, float score)
{
	size_t		lo = 0,
				hi = n_distinct;

	while (lo < hi)
	{
		size_t		mid = (lo + hi) / 2;

		if (sorted[mid] > score)
			lo = mid + 1;
		else
			hi = mid;
	}
	return (uint32_t) lo;
}

bool
sp_merges_from_scores(Pretrained *p, const float *scores,
					  CoreErrorKind err_kind, CoreError *err)
{
	size_t		n = (size_t) p->n_tokens;
	size_t		distinct = 0;
	float	   *sorted;
	bool		ok = true;

	for (size_t i = 0; i < n; i++)
		if (!isfinite(scores[i]))
		{
			core_error(err, err_kind, "inconsistent vocab: token %zu has score %g", i,
					   (double) scores[i]);
			return false;
		}
	if ((sorted = malloc(sizeof(float) * (n > 0 ? n : 1))) == NULL)
	{
		core_error(err, CORE_ERR_NO_MEMORY, "out of memory for the merges");
		return false;
	}
	memcpy(sorted, scores, sizeof(float) * n);
	qsort(sorted, n, sizeof(float), compare_scores);
	for (size_t i = 0; i < n; i++)
		if (distinct == 0 || sorted[distinct - 1] != sorted[i])
			sorted[distinct++] = sorted[i];
	for (int32_t id = 0; id < p->n_tokens && ok; id++)
	{
		const char *text = p->pool + p->off[id];
		uint32_t	len = p->len[id];
		uint32_t	prio = score_rank(sorted, distinct, scores[id]);

		if ((p->type[id] & TT_TYPE_MASK) != TT_NORMAL || len > SP_MAX_SPLIT_BYTES ||
			pre_piece_id(p, text, len) != id)
			continue;
		for (uint32_t k = 1; k < len && ok; k++)
		{
			int32_t		left,
						right;

			if (((uint8_t) text[k] & 0xC0) == 0x80 ||
				(left = pre_piece_id(p, text, k)) < 0 ||
				(right = pre_piece_id(p, text + k, len - k)) < 0)
				continue;
			ok = pre_add_merge(p, left, right, prio, err_kind, err);
		}
	}
	free(sorted);
	return ok;
}

/*
 * llama2.c's tokenizer.bin: int32 max_token_length, then per token a
 * float32 score, an int32 length and the bytes; vocab_size tokens, which
 * only the model knows.  Ids 0, 1, 2 are <unk>, <s>, </s>; 3 .. 258 the
 * bytes <0x00> .. <0xFF>.
 */
Tokenizer *
sp_from_llama2c(const TokenizerSource *src, CoreError *err)
{
	const uint8_t *b = src->data;
	size_t		pos = 4;
	int32_t		n = src->vocab_size;
	float	   *scores;
	Pretrained *p;

	if (n < 259)
	{
		core_error(err, CORE_ERR_INVALID_INPUT,
				   "a llama2.c tokenizer needs the model's vocabulary size (at least 259, got %d)",
				   n);
		return NULL;
	}
	if (b == NULL || src->len < 4 || src->len / 8 < (size_t) n)
	{
		core_error(err, CORE_ERR_INVALID_INPUT,
				   "tokenizer.bin of %zu bytes cannot hold %d tokens", src->len, n);
		return NULL;
	}
	p = pre_alloc(TOKENIZER_SP, n);
	scores = malloc(sizeof(float) * (size_t) n);
	if (p == NULL || scores == NULL)
	{
		core_error(err, CORE_ERR_NO_MEMORY, "out of memory for the vocabulary");
		goto fail;
	}
	for (int32_t id = 0; id < n; id++)
	{
		uint32_t	bits,
					len;
		unsigned	type = TT_NORMAL;
		const char *text;
		int			byte;
		char		one;

		if (src->len - pos < 8 || (len = le_get_u32(b + pos + 4)) > src->len - pos - 8)
		{
			core_error(err, CORE_ERR_INVALID_INPUT,
					   "tokenizer.bin is truncated at token %d (vocabulary size %d)", id, n);
			goto fail;
		}
		bits = le_get_u32(b + pos);
		memcpy(&scores[id], &bits, sizeof(float));
		text = (const char *) b + pos + 8;
		pos += 8 + (size_t) len;
		byte = sp_byte_piece(text, len);
		if (id < 3)
			type = TT_SPECIAL;
		else if (id < 259)
		{
			if (byte != id - 3)
			{
				core_error(err, CORE_ERR_INVALID_INPUT,
						   "not a llama2.c tokenizer: token %d is not <0x%02X>", id, id - 3);
				goto fail;
			}
			type = TT_BYTE;
			one = (char) byte;
			text = &one;
			len = 1;
		}
		if (!pre_set_token(p, id, type, text, len, CORE_ERR_INVALID_INPUT, err))
			goto fail;
	}
	if (pos != src->len)
	{
		core_error(err, CORE_ERR_INVALID_INPUT,
				   "tokenizer.bin holds more than the model's %d tokens", n);
		goto fail;
	}
	p->unk = 0;
	p->bos = 1;
	p->eos = 2;
	p->flags = PRE_ADDS_BOS;
	p->sp_prefix = SP_PREFIX_TEXT_START;
	if (!pre_finish_vocab(p, CORE_ERR_INVALID_INPUT, err) ||
		!sp_merges_from_scores(p, scores, CORE_ERR_INVALID_INPUT, err))
		goto fail;
	free(scores);
	return tok_wrap_pretrained(p, CORE_ERR_INVALID_INPUT, err);
fail:
	free(scores);
	pre_free(p);
	return NULL;
}

/* GGUF token types (llama.cpp's llama_token_type). */
enum
{
	GGUF_NORMAL = 1,
	GGUF_UNKNOWN,
	GGUF_CONTROL,
	GGUF_USER_DEFINED,
	GGUF_UNUSED,
	GGUF_BYTE
};

/*
 * One token of a GGUF "llama" vocabulary: a normal piece with its spaces
 * back; control and unknown tokens special, user-defined ones added (both
 * split out of the text); byte tokens their byte.
 */
static bool
set_gguf_sp_token(Pretrained *p, const TokenizerVocab *v, int32_t id,
				  char *buf, CoreError *err)
{
	const char *text = v->tokens[id];
	size_t		len = v->token_lens[id];
	int			gtype = v->token_types != NULL ? v->token_types[id] : GGUF_NORMAL;
	int			byte = sp_byte_piece(text, len);

	if (v->token_types == NULL && (id == v->bos_id || id == v->eos_id || id == v->unk_id))
		gtype = GGUF_CONTROL;
	else if (v->token_types == NULL && byte >= 0)
		gtype = GGUF_BYTE;
	switch (gtype)
	{
		case GGUF_NORMAL:
			return pre_set_token(p, id, TT_NORMAL, buf, sp_unescape(text, len, buf),
								 CORE_ERR_INVALID_INPUT, err);
		case GGUF_UNKNOWN:
		case GGUF_CONTROL:
			return pre_set_token(p, id, TT_SPECIAL | (len > 0 ? TT_LITERAL : 0), text,
								 len, CORE_ERR_INVALID_INPUT, err);
		case GGUF_USER_DEFINED:
			return pre_set_token(p, id, TT_ADDED | (len > 0 ? TT_LITERAL : 0), text,
								 len, CORE_ERR_INVALID_INPUT, err);
		case GGUF_UNUSED:
			return pre_set_token(p, id, TT_UNUSED, text, len, CORE_ERR_INVALID_INPUT,
								 err);
		case GGUF_BYTE:
			if (byte < 0)
				break;
			buf[0] = (char) byte;
			return pre_set_token(p, id, TT_BYTE, buf, 1, CORE_ERR_INVALID_INPUT, err);
	}
	core_error(err, CORE_ERR_INVALID_INPUT,
			   "unsupported GGUF token type %d (token %d)", gtype, id);
	return false;
}

/* The model's vocabulary size: at least the tokenizer's. */
int32_t
pre_vocab_size(const TokenizerSource *src, int64_t n_ids, CoreError *err)
{
	if (n_ids <= 0 || n_ids > TOK_MAX_VOCAB)
	{
		core_error(err, CORE_ERR_INVALID_INPUT,
				   "bad vocabulary size: the tokenizer has %lld ids (1 to %d allowed)",
				   (long long) n_ids, TOK_MAX_VOCAB);
		return -1;
	}
	if (src->vocab_size > 0 && src->vocab_size < n_ids)
	{
		core_error(err, CORE_ERR_INVALID_INPUT,
				   "bad vocabulary size: the model has %d tokens, its tokenizer %lld",
				   src->vocab_size, (long long) n_ids);
		return -1;
	}
	return src->vocab_size > 0 ? src->vocab_size : (int32_t) n_ids;
}

/* Check the arrays of a GGUF vocabulary that every loader reads. */
bool
gguf_check_vocab(const TokenizerVocab *v, CoreError *err)
{
	if (v->n_tokens <= 0 || v->tokens == NULL || v->token_lens == NULL)
	{
		core_error(err, CORE_ERR_INVALID_INPUT, "missing field tokenizer.ggml.tokens");
		return false;
	}
	for (int i = 0; i < v->n_tokens; i++)
		if (v->tokens[i] == NULL && v->token_lens[i] > 0)
		{
			core_error(err, CORE_ERR_INVALID_INPUT, "inconsistent vocab: token %d missing", i);
			return false;
		}
	if (v->bos_id < -1 || v->bos_id >= v->n_tokens || v->eos_id < -1 ||
		v->eos_id >= v->n_tokens || v->unk_id < -1 || v->unk_id >= v->n_tokens)
	{
		core_error(err, CORE_ERR_INVALID_INPUT,
				   "inconsistent vocab: bos %d, eos %d or unknown %d outside %d tokens",
				   v->bos_id, v->eos_id, v->unk_id, v->n_tokens);
		return false;
	}
	return true;
}

Tokenizer *
sp_from_gguf(const TokenizerSource *src, CoreError *err)
{
	const TokenizerVocab *v = &src->vocab;
	int32_t		n;
	Pretrained *p;
	float	   *scores;
	char	   *buf;

	if (!gguf_check_vocab(v, err) || (n = pre_vocab_size(src, v->n_tokens, err)) < 0)
		return NULL;
	p = pre_alloc(TOKENIZER_SP, n);
	scores = calloc((size_t) n, sizeof(float));
	buf = malloc(PRE_MAX_TOKEN_BYTES + 1);
	if (p == NULL || scores == NULL || buf == NULL)
	{
		core_error(err, CORE_ERR_NO_MEMORY, "out of memory for the vocabulary");
		goto fail;
	}
	for (int32_t id = 0; id < v->n_tokens; id++)
	{
		if (v->token_lens[id] > PRE_MAX_TOKEN_BYTES)
		{
			core_error(err, CORE_ERR_INVALID_INPUT, "token %d is %u bytes long", id,
					   v->token_lens[id]);
			goto fail;
		}
		if (!set_gguf_sp_token(p, v, id, buf, err))
			goto fail;
		if (v->scores != NULL)
			scores[id] = v->scores[id];
	}
	p->bos = v->bos_id;
	p->eos = v->eos_id;
	p->unk = v->unk_id;
	p->flags = PRE_MARK_IS_SPACE | (v->add_bos != 0 ? PRE_ADDS_BOS : 0);
	/*
	 * llama.cpp puts the space before each piece of text that starts the
	 * text or follows a token matched in it (not only before the text):
	 * "<s> is" is <s> "▁▁is", as with HF's Prepend normalizer.
	 */
	p->sp_prefix = v->add_space_prefix != 0 ? SP_PREFIX_EVERY_SEGMENT : SP_PREFIX_NONE;
	if (!pre_finish_vocab(p, CORE_ERR_INVALID_INPUT, err) ||
		!sp_merges_from_scores(p, scores, CORE_ERR_INVALID_INPUT, err))
		goto fail;
	free(scores);
	free(buf);
	return tok_wrap_pretrained(p, CORE_ERR_INVALID_INPUT, err);
fail:
	free(scores);
	free(buf);
	pre_free(p);
	return NULL;
}
