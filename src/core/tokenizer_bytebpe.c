/*
 * tokenizer_bytebpe.c - byte-level BPE as GPT-2, Llama 3, Qwen2/Qwen3 and
 * SmolLM2 have it: GPT-2's byte-to-character map, pre-tokenization by
 * regular expressions (PCRE2, with Unicode properties), NFC
 * (libunistring), encoding, and the GGUF "gpt2" loader.
 *
 * A byte-level vocabulary writes each byte as a printable character
 * ("Ġ" for a space) so that its tokens are text; they are kept here as the
 * bytes they stand for, and merges as pairs of ids, so a pre-token is
 * merged straight from its bytes.
 *
 * Pre-tokenization follows Hugging Face's Split with behaviour Isolated:
 * every match of a regex is a pre-token and so is every stretch between
 * matches; with several regexes (a Sequence, or llama.cpp's lists), each
 * cuts the pieces of the one before, seeing only its piece (so a
 * lookahead stops at the piece's end).
 */
#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>
#include <stdlib.h>
#include <string.h>
#include <uninorm.h>

#include "core/tokenizer_pretrained_internal.h"

const char	PRE_GPT2_PATTERN[] =
	"'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)|\\s+";

/* Bounds on one regex match, against patterns that backtrack for ever. */
#define MATCH_LIMIT 10000000
#define DEPTH_LIMIT 100000

/*
 * GPT-2's map: the bytes of printable Latin-1 ('!'..'~', 0xA1..0xAC,
 * 0xAE..0xFF) stand for themselves; the other 68, in order, for U+0100 on.
 */
int
bytelevel_char_byte(uint32_t cp)
{
	uint32_t	n;

	if ((cp >= 0x21 && cp <= 0x7E) || (cp >= 0xA1 && cp <= 0xAC) ||
		(cp >= 0xAE && cp <= 0xFF))
		return (int) cp;
	if (cp < 0x100 || cp >= 0x100 + 68)
		return -1;
	n = cp - 0x100;
	if (n < 33)
		return (int) n;			/* 0x00 .. 0x20 */
	if (n < 33 + 34)
		return (int) (0x7F + n - 33);	/* 0x7F .. 0xA0 */
	return 0xAD;
}

static uint32_t
decode_codepoint(const uint8_t *s, size_t n)
{
	uint32_t	cp;

	if (n == 1)
		return s[0];
	cp = s[0] & (0xFF >> (n + 1));
	for (size_t i = 1; i < n; i++)
		cp = cp << 6 | (s[i] & 0x3F);
	return cp;
}

bool
bytelevel_decode(const char *text, size_t len, char *out, size_t *out_len)
{
	const uint8_t *s = (const uint8_t *) text;
	size_t		n = 0;

	for (size_t i = 0; i < len;)
	{
		size_t		k = utf8_char_len(s + i, len - i);
		int			byte;

		if (k == 0 || (byte = bytelevel_char_byte(decode_codepoint(s + i, k))) < 0)
			return false;
		out[n++] = (char) byte;
		i += k;
	}
	*out_len = n;
	return true;
}

bool
pre_add_pattern(Pretrained *p, const char *pattern, size_t len, bool literal,
				CoreErrorKind err_kind, CoreError *err)
{
	int			code;
	PCRE2_SIZE	offset;
	pcre2_code *re;
	char	   *copy;

	if (p->n_patterns >= PRE_MAX_PATTERNS || len > PRE_MAX_PATTERN_BYTES)
	{
		core_error(err, err_kind,
				   "unsupported pre-tokenizer: more than %d regexes or one over %d bytes",
				   PRE_MAX_PATTERNS, PRE_MAX_PATTERN_BYTES);
		return false;
	}
	if (p->match_context == NULL)
	{
		pcre2_match_context *mc = pcre2_match_context_create(NULL);

		if (mc == NULL)
			goto oom;
		pcre2_set_match_limit(mc, MATCH_LIMIT);
		pcre2_set_depth_limit(mc, DEPTH_LIMIT);
		p->match_context = mc;
	}
	re = pcre2_compile((PCRE2_SPTR) pattern, len,
					   PCRE2_UTF | PCRE2_UCP | PCRE2_NEVER_BACKSLASH_C |
					   (literal ? PCRE2_LITERAL : 0), &code, &offset, NULL);
	if (re == NULL)
	{
		PCRE2_UCHAR message[120];

		pcre2_get_error_message(code, message, sizeof(message));
		core_error(err, err_kind,
				   "unsupported pre-tokenizer: regex \"%.*s\" does not compile: %s at offset %zu",
				   (int) (len < 60 ? len : 60), pattern, (const char *) message,
				   (size_t) offset);
		return false;
	}
	/* JIT where the platform has it; the interpreter gives the same matches */
	(void) pcre2_jit_compile(re, PCRE2_JIT_COMPLETE);
	if ((copy = malloc(len + 1)) == NULL)
	{
		pcre2_code_free(re);
		goto oom;
	}
	memcpy(copy, pattern, len);
	copy[len] = '\0';
	p->pattern[p->n_patterns] = copy;
	p->pattern_len[p->n_patterns] = (uint32_t) len;
	p->pattern_literal[p->n_patterns] = literal;
	p->regex[p->n_patterns] = re;
	p->n_patterns++;
	return true;
oom:
	core_error(err, CORE_ERR_NO_MEMORY, "out of memory for the pre-tokenizer");
	return false;
}

void
pre_free_patterns(Pretrained *p)
{
	for (int i = 0; i < p->n_patterns; i++)
	{
		pcre2_code_free(p->regex[i]);
		free(p->pattern[i]);
	}
	p->n_patterns = 0;
	pcre2_match_context_free(p->match_context);
	p->match_context = NULL;
}

/* Pieces of a segment: [start, end) byte ranges, in order. */
typedef struct Pieces
{
	size_t	   *bounds;			/* 2 per piece */
	size_t		n;
	size_t		cap;
} Pieces;

static bool
pieces_push(Pieces *ps, size_t start, size_t end)
{
	if (start == end)
		return true;
	if (ps->n == ps->cap)
	{
		size_t		cap = ps->cap ? 2 * ps->cap : 64;
		size_t	   *b = realloc(ps->bounds, sizeof(size_t) * 2 * cap);

		if (b == NULL)
			return false;
		ps->bounds = b;
		ps->cap = cap;
	}
	ps->bounds[2 * ps->n] = start;
	ps->bounds[2 * ps->n + 1] = end;
	ps->n++;
	return true;
}

/* Run one regex over s[start, end) and push matches and gaps. */
static bool
split_piece(const Pretrained *p, int k, pcre2_match_data *md, const char *s,
			size_t start, size_t end, Pieces *out, CoreError *err)
{
	size_t		at = start;		/* where the next match is looked for */
	size_t		done = start;	/* bytes before this are pushed */

	while (at < end)
	{
		PCRE2_SIZE *ov;
		int			rc = pcre2_match(p->regex[k], (PCRE2_SPTR) s + start, end - start,
									 at - start, PCRE2_NO_UTF_CHECK, md, p->match_context);

		if (rc == PCRE2_ERROR_JIT_STACKLIMIT)
			rc = pcre2_match(p->regex[k], (PCRE2_SPTR) s + start, end - start,
							 at - start, PCRE2_NO_UTF_CHECK | PCRE2_NO_JIT, md,
							 p->match_context);
		if (rc == PCRE2_ERROR_NOMATCH)
			break;
		if (rc < 0)
		{
			PCRE2_UCHAR message[120];

			pcre2_get_error_message(rc, message, sizeof(message));
			core_error(err, CORE_ERR_LIMIT, "pre-tokenizer regex failed: %s",
					   (const char *) message);
			return false;
		}
		ov = pcre2_get_ovector_pointer(md);
		if (ov[1] == ov[0])
		{
			/* an empty match cuts nothing: look again one character on */
			at = start + ov[0] + utf8_char_len((const unsigned char *) s + start + ov[0],
											   end - start - ov[0]);
			continue;
		}
		if (!pieces_push(out, done, start + ov[0]) ||
			!pieces_push(out, start + ov[0], start + ov[1]))
			goto oom;
		done = at = start + ov[1];
	}
	if (pieces_push(out, done, end))
		return true;
oom:
	core_error(err, CORE_ERR_NO_MEMORY, "out of memory pre-tokenizing");
	return false;
}

/* The pre-tokens of s[0, len): each regex in turn cuts every piece. */
static bool
pre_tokenize(const Pretrained *p, const char *s, size_t len, Pieces *result,
			 CoreError *err)
{
	Pieces		cur = {0};
	bool		ok = pieces_push(&cur, 0, len);

	if (!ok)
		core_error(err, CORE_ERR_NO_MEMORY, "out of memory pre-tokenizing");
	for (int k = 0; k < p->n_patterns && ok; k++)
	{
		Pieces		next = {0};
		pcre2_match_data *md = pcre2_match_data_create_from_pattern(p->regex[k], NULL);

		if (md == NULL)
		{
			core_error(err, CORE_ERR_NO_MEMORY, "out of memory pre-tokenizing");
			ok = false;
		}
		for (size_t i = 0; i < cur.n && ok; i++)
			ok = split_piece(p, k, md, s, cur.bounds[2 * i], cur.bounds[2 * i + 1],
							 &next, err);
		pcre2_match_data_free(md);
		free(cur.bounds);
		cur = next;
	}
	if (!ok)
	{
		free(cur.bounds);
		return false;
	}
	*result = cur;
	return true;
}

/* One pre-token: whole when it is a token and merges are ignored, else BPE. */
static bool
encode_pretoken(const Pretrained *p, const char *s, size_t len, BpeScratch *sc,
				IdList *out)
{
	size_t		start = out->n;
	int32_t		whole;
	int64_t		kept;

	if ((p->flags & PRE_IGNORE_MERGES) && (whole = pre_piece_id(p, s, len)) >= 0)
		return idlist_push(out, whole);
	for (size_t i = 0; i < len; i++)
		if (!idlist_push(out, p->byte_id[(uint8_t) s[i]]))
			return false;
	if ((kept = bpe_merge(p, sc, out->ids + start, len)) < 0)
		return false;
	out->n = start + (size_t) kept;
	return true;
}

bool
bbpe_encode_segment(const Pretrained *p, const char *text, size_t len,
					BpeScratch *s, IdList *out, CoreError *err)
{
	uint8_t    *normal = NULL;
	const char *src = text;
	Pieces		pieces = {0};
	bool		ok;

	if (p->flags & PRE_NFC)
	{
		size_t		normal_len = 0;

		normal = u8_normalize(UNINORM_NFC, (const uint8_t *) text, len, NULL, &normal_len);
		if (normal == NULL)
		{
			core_error(err, CORE_ERR_NO_MEMORY, "out of memory normalizing %zu bytes", len);
			return false;
		}
		src = (const char *) normal;
		len = normal_len;
	}
	ok = pre_tokenize(p, src, len, &pieces, err);
	for (size_t i = 0; i < pieces.n && ok; i++)
		if (!encode_pretoken(p, src + pieces.bounds[2 * i],
							 pieces.bounds[2 * i + 1] - pieces.bounds[2 * i], s, out))
		{
			core_error(err, CORE_ERR_NO_MEMORY, "out of memory encoding %zu bytes", len);
			ok = false;
		}
	free(pieces.bounds);
	free(normal);
	return ok;
}

/* llama.cpp's GPT-2 regex (its lists leave out the final \s+). */
#define LLAMACPP_GPT2 \
	"'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)"
#define LLAMA3_PATTERN \
	"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+"
#define QWEN2_PATTERN \
	"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+"

/*
 * The pre-tokenizers of llama.cpp's tokenizer.ggml.pre names that we know:
 * its regexes, and whether merges are ignored and text normalized (Qwen2's
 * tokenizer.json asks for NFC, which llama.cpp skips; we follow the
 * tokenizer.json).  An absent name is llama.cpp's "default".
 */
typedef struct GgufPre
{
	const char *name;
	uint32_t	flags;
	const char *patterns[4];
} GgufPre;

static const GgufPre gguf_pres[] = {
	{"llama-bpe", PRE_IGNORE_MERGES | PRE_ADDS_BOS, {LLAMA3_PATTERN}},
	{"llama3", PRE_IGNORE_MERGES | PRE_ADDS_BOS, {LLAMA3_PATTERN}},
	{"qwen2", PRE_NFC, {QWEN2_PATTERN}},
	{"smollm", 0, {"\\p{N}", LLAMACPP_GPT2}},
	{"gpt-2", 0, {LLAMACPP_GPT2}},
	{"default", 0, {"[\\p{P}\\$\\+<=>\\^~\\|]+", LLAMACPP_GPT2, "\\p{N}+",
	"[0-9][0-9][0-9]"}},
};

static const GgufPre *
find_gguf_pre(const char *name)
{
	if (name == NULL || name[0] == '\0')
		name = "default";
	for (size_t i = 0; i < sizeof(gguf_pres) / sizeof(gguf_pres[0]); i++)
		if (strcmp(gguf_pres[i].name, name) == 0)
			return &gguf_pres[i];
	return NULL;
}

/* One token of a GGUF "gpt2" vocabulary (types as llama.cpp's). */
static bool
set_gguf_bpe_token(Pretrained *p, const TokenizerVocab *v, int32_t id,
				   char *buf, CoreError *err)
{
	const char *text = v->tokens[id];
	size_t		len = v->token_lens[id];
	int			gtype = v->token_types != NULL ? v->token_types[id] : 1;
	size_t		n;

	if (v->token_types == NULL && (id == v->bos_id || id == v->eos_id))
		gtype = 3;
	switch (gtype)
	{
		case 1:					/* normal: its bytes, or its text when it
								 * is not byte-level */
			if (!bytelevel_decode(text, len, buf, &n))
				return pre_set_token(p, id, TT_NORMAL, text, len, CORE_ERR_INVALID_INPUT,
									 err);
			return pre_set_token(p, id, TT_NORMAL, buf, n, CORE_ERR_INVALID_INPUT, err);
		case 2:					/* unknown */
		case 3:					/* control */
			return pre_set_token(p, id, TT_SPECIAL | (len > 0 ? TT_LITERAL : 0), text,
								 len, CORE_ERR_INVALID_INPUT, err);
		case 4:					/* user-defined */
			return pre_set_token(p, id, TT_ADDED | (len > 0 ? TT_LITERAL : 0), text,
								 len, CORE_ERR_INVALID_INPUT, err);
		case 5:					/* unused */
			return pre_set_token(p, id, TT_UNUSED, text, len, CORE_ERR_INVALID_INPUT, err);
	}
	core_error(err, CORE_ERR_INVALID_INPUT,
			   "unsupported GGUF token type %d (token %d) in a gpt2 vocabulary", gtype, id);
	return false;
}

/* Merge "a b" of a GGUF vocabulary: split at the first space after a. */
static bool
add_gguf_merge(Pretrained *p, const char *m, size_t len, uint32_t rank,
			   char *buf, CoreError *err)
{
	const char *space = len > 1 ? memchr(m + 1, ' ', len - 1) : NULL;
	size_t		alen,
				blen;
	int32_t		a,
				b;

	if (space == NULL || len > PRE_MAX_TOKEN_BYTES)
	{
		core_error(err, CORE_ERR_INVALID_INPUT, "merge %u is not \"a b\"", rank);
		return false;
	}
	if (!bytelevel_decode(m, (size_t) (space - m), buf, &alen) ||
		(a = pre_piece_id(p, buf, alen)) < 0 ||
		!bytelevel_decode(space + 1, len - (size_t) (space - m) - 1, buf, &blen) ||
		(b = pre_piece_id(p, buf, blen)) < 0)
	{
		core_error(err, CORE_ERR_INVALID_INPUT, "merge %u uses a token not in the vocabulary",
				   rank);
		return false;
	}
	if (pairmap_get(&p->merge_of, pack_pair(a, b)) >= 0)
		return true;			/* a repeated merge: the first rank counts */
	return pre_add_merge(p, a, b, rank, CORE_ERR_INVALID_INPUT, err);
}

Tokenizer *
bbpe_from_gguf(const TokenizerSource *src, CoreError *err)
{
	const TokenizerVocab *v = &src->vocab;
	const GgufPre *pre = find_gguf_pre(v->pre);
	int32_t		n;
	Pretrained *p;
	char	   *buf;

	if (pre == NULL)
	{
		core_error(err, CORE_ERR_INVALID_INPUT,
				   "unsupported pre-tokenizer \"%s\" (tokenizer.ggml.pre; known: llama-bpe, llama3, qwen2, smollm, gpt-2, default)",
				   v->pre);
		return NULL;
	}
	if (!gguf_check_vocab(v, err) || (n = pre_vocab_size(src, v->n_tokens, err)) < 0)
		return NULL;
	if (v->n_merges <= 0 || v->merges == NULL || v->merge_lens == NULL)
	{
		core_error(err, CORE_ERR_INVALID_INPUT, "missing field tokenizer.ggml.merges");
		return NULL;
	}
	p = pre_alloc(TOKENIZER_BYTE_BPE, n);
	buf = malloc(PRE_MAX_TOKEN_BYTES + 1);
	if (p == NULL || buf == NULL)
	{
		core_error(err, CORE_ERR_NO_MEMORY, "out of memory for the vocabulary");
		goto fail;
	}
	for (int32_t id = 0; id < v->n_tokens; id++)
		if (v->token_lens[id] > PRE_MAX_TOKEN_BYTES)
		{
			core_error(err, CORE_ERR_INVALID_INPUT, "token %d is %u bytes long", id,
					   v->token_lens[id]);
			goto fail;
		}
		else if (!set_gguf_bpe_token(p, v, id, buf, err))
			goto fail;
	if (!pre_finish_vocab(p, CORE_ERR_INVALID_INPUT, err))
		goto fail;
	for (int i = 0; i < v->n_merges; i++)
		if (v->merges[i] == NULL ||
			!add_gguf_merge(p, v->merges[i], v->merge_lens[i], (uint32_t) i, buf, err))
		{
			if (v->merges[i] == NULL)
				core_error(err, CORE_ERR_INVALID_INPUT, "merge %d missing", i);
			goto fail;
		}
	for (int k = 0; k < 4 && pre->patterns[k] != NULL; k++)
		if (!pre_add_pattern(p, pre->patterns[k], strlen(pre->patterns[k]), false,
							 CORE_ERR_INVALID_INPUT, err))
			goto fail;
	p->bos = v->bos_id;
	p->eos = v->eos_id;
	p->unk = v->unk_id;
	p->flags = pre->flags & ~(uint32_t) PRE_ADDS_BOS;
	if (v->add_bos == 1 || (v->add_bos < 0 && (pre->flags & PRE_ADDS_BOS)))
		p->flags |= PRE_ADDS_BOS;
	free(buf);
	return tok_wrap_pretrained(p, CORE_ERR_INVALID_INPUT, err);
fail:
	free(buf);
	pre_free(p);
	return NULL;
}
