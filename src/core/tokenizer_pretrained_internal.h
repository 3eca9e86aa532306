/*
 * tokenizer_pretrained_internal.h - what the files of the pretrained
 * tokenizers share: the Pretrained tables hanging off a Tokenizer, the
 * steps that build them (used by every loader and by deserialization, so
 * each step checks its input), and each kind's encoder.
 *
 * Every token is kept in decoded form, the bytes it stands for: a
 * SentencePiece piece with its U+2581 turned back into spaces, a
 * byte-level token turned back from GPT-2's byte-to-character map into
 * bytes, a byte-fallback token <0xNN> as its one byte.  Encoding then
 * works on the text's own bytes (no "▁" or "Ġ" rewriting), and merges are
 * pairs of ids, as in the from-scratch tokenizer.  Special tokens keep
 * their name ("<s>", "<|im_end|>").
 */
#ifndef DISTILL_CORE_TOKENIZER_PRETRAINED_INTERNAL_H
#define DISTILL_CORE_TOKENIZER_PRETRAINED_INTERNAL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/tokenizer_internal.h"
#include "core/tokenizer_pretrained.h"
#include "core/util.h"

/* Token types, in the low bits of Pretrained.type (and serialized so). */
enum
{
	TT_UNUSED = 0,				/* no token, or an unused one: decodes to
								 * nothing, never produced */
	TT_NORMAL,					/* a piece of text, produced by merges */
	TT_BYTE,					/* SentencePiece's byte fallback <0xNN> */
	TT_SPECIAL,					/* control / special: decodes to nothing */
	TT_ADDED,					/* non-special added token: decodes to its
								 * text, never produced by merges */
	TT_N_TYPES
};

#define TT_TYPE_MASK 0x0F
#define TT_LITERAL 0x80			/* split out of the text where it appears */

/* SentencePiece's dummy prefix: where a space is put before the text. */
enum
{
	SP_PREFIX_NONE = 0,
	SP_PREFIX_TEXT_START,		/* before the text (a segment at offset 0) */
	SP_PREFIX_EVERY_SEGMENT,	/* before every piece between added tokens
								 * (HF's Prepend normalizer) */
	SP_N_PREFIX
};

/* Pretrained.flags, serialized as they are. */
#define PRE_ADDS_BOS 0x01
#define PRE_NFC 0x02			/* NFC before pre-tokenization */
#define PRE_IGNORE_MERGES 0x04	/* a pre-token that is a token is taken whole */
#define PRE_SPLIT_WORDS 0x08	/* SP: split before every space (Metaspace
								 * split = true) */
#define PRE_MARK_IS_SPACE 0x10	/* SP: a U+2581 in the text is a space, as
								 * SentencePiece and HF see it (not
								 * llama2.c, whose pieces have spaces) */
#define PRE_ALL_FLAGS 0x1F

/* Longest token in bytes, and most regular expressions, that we accept. */
#define PRE_MAX_TOKEN_BYTES 65535
#define PRE_MAX_PATTERNS 16
#define PRE_MAX_PATTERN_BYTES 4096

/* Open-addressing map from a token's bytes to its id (-1 = empty slot). */
typedef struct StrMap
{
	int32_t    *slots;
	uint32_t	mask;
} StrMap;

typedef struct Pretrained
{
	int			kind;			/* TOKENIZER_SP or TOKENIZER_BYTE_BPE */
	int32_t		n_tokens;
	int32_t		bos,
				eos,
				unk;			/* -1 when none */
	uint32_t	flags;			/* PRE_* */
	uint32_t	sp_prefix;		/* SP_PREFIX_* */

	/* Per token: type | TT_LITERAL and decoded bytes pool[off .. off+len). */
	uint8_t    *type;
	uint32_t   *off;
	uint32_t   *len;
	char	   *pool;
	size_t		pool_len;
	size_t		pool_cap;

	/* Merges in the order given; lower prio merges first. */
	int32_t		n_merges;
	int32_t		merge_cap;
	int32_t    *merge_left;
	int32_t    *merge_right;
	int32_t    *merge_result;
	uint32_t   *merge_prio;
	PairMap		merge_of;		/* (left, right) -> merge index */

	/* Built by pre_finish_vocab(). */
	StrMap		piece_id;		/* decoded bytes -> TT_NORMAL id (lowest) */
	int32_t		byte_id[256];	/* byte level: the token of each byte; SP:
								 * the <0xNN> token; -1 when none */
	int32_t    *literal;		/* TT_LITERAL ids, by first byte then
								 * longest first */
	int32_t		n_literal;
	int32_t		literal_start[257]; /* literal[start[b] .. start[b+1]) begin
									 * with byte b */

	/* Byte-level pre-tokenization: regexes applied in order, each cutting
	 * the pieces of the previous one (HF Split, behaviour Isolated). */
	int			n_patterns;
	char	   *pattern[PRE_MAX_PATTERNS];
	uint32_t	pattern_len[PRE_MAX_PATTERNS];
	uint32_t	pattern_literal[PRE_MAX_PATTERNS];	/* 1: a plain string */
	void	   *regex[PRE_MAX_PATTERNS];	/* pcre2_code_8 * */
	void	   *match_context;	/* pcre2_match_context_8 *: match limits */
} Pretrained;

/* The regular expression of GPT-2 (HF ByteLevel with use_regex). */
extern const char PRE_GPT2_PATTERN[];

/*
 * Building (tokenizer_pretrained.c).  pre_alloc(): every token TT_UNUSED
 * with no bytes; then pre_set_token() once per id, pre_finish_vocab(),
 * pre_add_merge() per merge, pre_add_pattern() per regex, and
 * tok_wrap_pretrained() to hand the tables to a Tokenizer (p is freed on
 * failure).  Errors use err_kind, so that a loader reports
 * CORE_ERR_INVALID_INPUT and deserialization CORE_ERR_CORRUPT.
 */
extern Pretrained *pre_alloc(int kind, int32_t n_tokens);
extern void pre_free(Pretrained *p);
extern size_t pre_memory_bytes(const Pretrained *p);
extern bool pre_set_token(Pretrained *p, int32_t id, unsigned type,
						  const void *bytes, size_t len, CoreErrorKind err_kind,
						  CoreError *err);
extern bool pre_finish_vocab(Pretrained *p, CoreErrorKind err_kind,
							 CoreError *err);
extern bool pre_add_merge(Pretrained *p, int32_t left, int32_t right,
						  uint32_t prio, CoreErrorKind err_kind, CoreError *err);
extern bool pre_add_pattern(Pretrained *p, const char *pattern, size_t len,
							bool literal, CoreErrorKind err_kind, CoreError *err);
extern void pre_free_patterns(Pretrained *p);
extern Tokenizer *tok_wrap_pretrained(Pretrained *p, CoreErrorKind err_kind,
									  CoreError *err);

/* The id of a TT_NORMAL token of these decoded bytes, or -1. */
extern int32_t pre_piece_id(const Pretrained *p, const void *bytes, size_t len);

/*
 * SentencePiece merges from scores (tokenizer_sp.c): every split of a
 * token into two tokens merges into it, the higher the score the earlier.
 * scores[id] for every id; non-finite scores are refused.
 */
extern bool sp_merges_from_scores(Pretrained *p, const float *scores,
								  CoreErrorKind err_kind, CoreError *err);

/*
 * SentencePiece pieces (tokenizer_sp.c): sp_unescape() writes in (len
 * bytes) to out with each U+2581 turned into a space and returns the bytes
 * written (at most len); sp_byte_piece() is the byte of "<0xNN>", or -1.
 */
extern size_t sp_unescape(const char *in, size_t len, char *out);
extern int	sp_byte_piece(const char *s, size_t len);

/*
 * The vocabulary size of the tokenizer to build, from the model's (when
 * given) and the tokenizer's number of ids; -1 with err when they do not
 * fit.  gguf_check_vocab(): the arrays every GGUF loader reads are there.
 */
extern int32_t pre_vocab_size(const TokenizerSource *src, int64_t n_ids,
							  CoreError *err);
extern bool gguf_check_vocab(const TokenizerVocab *v, CoreError *err);

/* GPT-2's byte <-> character map (tokenizer_bytebpe.c). */
extern int	bytelevel_char_byte(uint32_t codepoint);	/* -1 if unmapped */

/*
 * Decode a byte-level token's text (GPT-2's characters) into bytes in out
 * (room for len bytes); false when a character is not in the map.
 */
extern bool bytelevel_decode(const char *text, size_t len, char *out,
							 size_t *out_len);

/* Loaders. */
extern Tokenizer *sp_from_llama2c(const TokenizerSource *src, CoreError *err);
extern Tokenizer *sp_from_gguf(const TokenizerSource *src, CoreError *err);
extern Tokenizer *bbpe_from_gguf(const TokenizerSource *src, CoreError *err);
extern Tokenizer *hf_from_json(const TokenizerSource *src, CoreError *err);

/*
 * Encoding.  IdList is the growing output; bpe_merge() merges n symbol ids
 * in place by the merge table and returns how many are left;
 * sp_encode_segment() and bbpe_encode_segment() encode text between added
 * tokens (at_start: it begins the text).
 */
typedef struct IdList
{
	int32_t    *ids;
	size_t		n;
	size_t		cap;
} IdList;

extern bool idlist_push(IdList *l, int32_t id);

typedef struct BpeScratch
{
	size_t		cap;
	int32_t    *prev;
	int32_t    *next;
	uint64_t   *heap;
	size_t		heap_len;
} BpeScratch;

extern void bpe_scratch_free(BpeScratch *s);
extern int64_t bpe_merge(const Pretrained *p, BpeScratch *s, int32_t *ids,
						 size_t n);
extern bool sp_encode_segment(const Pretrained *p, const char *text,
							  size_t len, bool at_start, BpeScratch *s,
							  IdList *out, CoreError *err);
extern bool bbpe_encode_segment(const Pretrained *p, const char *text,
								size_t len, BpeScratch *s, IdList *out,
								CoreError *err);

/* Dispatch from tokenizer.c, tokenizer_encode.c and tokenizer_io.c. */
extern int	pre_encode(const Tokenizer *t, const char *text, size_t len,
					   int32_t **ids_out, CoreError *err);
extern int	pre_encode_prefix(const Tokenizer *t, const char *text, size_t len,
							  int max_ids, int32_t **ids_out);
extern char *pre_decode(const Pretrained *p, const int32_t *ids, size_t n,
						size_t *len_out);
extern void *pre_serialize(const Pretrained *p, size_t *len_out);
extern Tokenizer *pre_deserialize(const void *data, size_t len, CoreError *err);

#define PRE_MAGIC "DSTP"

#endif
