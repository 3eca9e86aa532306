/*
 * tokenizer_hf.c - a Hugging Face tokenizer.json (with its
 * tokenizer_config.json and generation_config.json) read with json-c into
 * a pretrained tokenizer.
 *
 * What is understood, as the real files of the supported checkpoints have
 * it, and refused by name otherwise:
 *
 *   model            BPE (vocab, merges as "a b" strings or ["a", "b"]
 *                    pairs, byte_fallback, ignore_merges, unk_token); no
 *                    dropout, continuing_subword_prefix or
 *                    end_of_word_suffix
 *   normalizer       null, NFC, or Sequence[Prepend "▁", Replace " " ->
 *                    "▁"] (Llama 2 / TinyLlama)
 *   pre_tokenizer    null, Metaspace, ByteLevel (without add_prefix_space),
 *                    Split (a Regex or String, behaviour Isolated, not
 *                    inverted), Digits, or a Sequence of the last three
 *   added_tokens     split out of the text wherever they appear; lstrip,
 *                    rstrip and single_word are refused; normalized is
 *                    accepted only where no normalizer would change the
 *                    text around them (none or NFC: they are matched in
 *                    the text as given)
 *   post_processor   a TemplateProcessing whose single template starts
 *                    with a special token puts BOS first
 *
 * ByteLevel anywhere in the pre-tokenizer makes a byte-level tokenizer;
 * a Prepend/Replace normalizer or a Metaspace pre-tokenizer a
 * SentencePiece-style one.  The decoder is not read: each kind decodes as
 * its decoders do.
 */
#include <json-c/json.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>

#include "core/tokenizer_pretrained_internal.h"

#define SPACE_MARK "\xE2\x96\x81"	/* U+2581 */

/* What the normalizer and pre-tokenizer ask for. */
typedef struct HfSpec
{
	int			kind;			/* TOKENIZER_SP, _BYTE_BPE or 0 = unknown */
	uint32_t	flags;
	uint32_t	sp_prefix;
	bool		sp_normalizer;	/* Prepend + Replace */
	bool		metaspace;
	bool		byte_level;
	int			n_patterns;
	const char *pattern[PRE_MAX_PATTERNS];
	size_t		pattern_len[PRE_MAX_PATTERNS];
	bool		pattern_literal[PRE_MAX_PATTERNS];
} HfSpec;

/* The tokenizer.json being read. */
typedef struct HfFile
{
	json_object *root;
	json_object *vocab;			/* model.vocab */
	json_object *added;			/* added_tokens, may be NULL */
	HfSpec		spec;
	int32_t		n_tokens;
	const char **vocab_text;	/* per id: its model.vocab string, or NULL */
	size_t	   *vocab_len;
	int32_t    *added_of;		/* per id: its index in added_tokens, or -1 */
} HfFile;

static json_object *
member(json_object *obj, const char *key)
{
	json_object *value = NULL;

	if (obj == NULL || !json_object_is_type(obj, json_type_object) ||
		!json_object_object_get_ex(obj, key, &value))
		return NULL;
	return value;
}

/* The string member key of obj, or NULL (also when it is not a string). */
static const char *
string_member(json_object *obj, const char *key)
{
	json_object *value = member(obj, key);

	return json_object_is_type(value, json_type_string) ?
		json_object_get_string(value) : NULL;
}

/* A boolean member: 1, 0, or dflt when absent or null; -2 if not a boolean. */
static int
bool_member(json_object *obj, const char *key, int dflt)
{
	json_object *value = member(obj, key);

	if (value == NULL)
		return dflt;
	if (!json_object_is_type(value, json_type_boolean))
		return -2;
	return json_object_get_boolean(value) ? 1 : 0;
}

static const char *
type_of(json_object *obj)
{
	const char *type = string_member(obj, "type");

	return type != NULL ? type : "(no type)";
}

static bool
unsupported(CoreError *err, const char *what, const char *type)
{
	core_error(err, CORE_ERR_INVALID_INPUT, "unsupported %s \"%s\" in tokenizer.json",
			   what, type);
	return false;
}

static bool
add_spec_pattern(HfSpec *spec, const char *pattern, size_t len, bool literal,
				 CoreError *err)
{
	if (spec->n_patterns >= PRE_MAX_PATTERNS)
		return unsupported(err, "pre_tokenizer", "Sequence of more than 16 splits");
	spec->pattern[spec->n_patterns] = pattern;
	spec->pattern_len[spec->n_patterns] = len;
	spec->pattern_literal[spec->n_patterns] = literal;
	spec->n_patterns++;
	return true;
}

/* Sequence[Prepend "▁", Replace " " -> "▁"], in that order. */
static bool
is_sp_normalizer(json_object *list)
{
	json_object *prepend,
			   *replace;
	const char *from,
			   *to;

	if (json_object_array_length(list) != 2)
		return false;
	prepend = json_object_array_get_idx(list, 0);
	replace = json_object_array_get_idx(list, 1);
	from = string_member(member(replace, "pattern"), "String");
	to = string_member(replace, "content");
	return strcmp(type_of(prepend), "Prepend") == 0 &&
		string_member(prepend, "prepend") != NULL &&
		strcmp(string_member(prepend, "prepend"), SPACE_MARK) == 0 &&
		strcmp(type_of(replace), "Replace") == 0 && from != NULL &&
		strcmp(from, " ") == 0 && to != NULL && strcmp(to, SPACE_MARK) == 0;
}

static bool
read_normalizer(json_object *n, HfSpec *spec, CoreError *err)
{
	json_object *list = member(n, "normalizers");

	if (n == NULL)
		return true;
	if (strcmp(type_of(n), "NFC") == 0)
	{
		spec->flags |= PRE_NFC;
		return true;
	}
	if (strcmp(type_of(n), "Sequence") == 0 &&
		json_object_is_type(list, json_type_array))
	{
		if (json_object_array_length(list) == 1 &&
			strcmp(type_of(json_object_array_get_idx(list, 0)), "NFC") == 0)
		{
			spec->flags |= PRE_NFC;
			return true;
		}
		if (is_sp_normalizer(list))
		{
			spec->sp_normalizer = true;
			spec->sp_prefix = SP_PREFIX_EVERY_SEGMENT;
			return true;
		}
		for (size_t i = 0; i < json_object_array_length(list); i++)
		{
			const char *type = type_of(json_object_array_get_idx(list, i));

			if (strcmp(type, "NFC") != 0 && strcmp(type, "Prepend") != 0 &&
				strcmp(type, "Replace") != 0)
				return unsupported(err, "normalizer", type);
		}
		return unsupported(err, "normalizer", "Sequence (other than [Prepend, Replace] or [NFC])");
	}
	return unsupported(err, "normalizer", type_of(n));
}

static bool
read_metaspace(json_object *m, HfSpec *spec, CoreError *err)
{
	const char *replacement = string_member(m, "replacement");
	const char *scheme = string_member(m, "prepend_scheme");
	int			old_prefix = bool_member(m, "add_prefix_space", 1);
	int			split = bool_member(m, "split", 1);

	if (replacement == NULL || strcmp(replacement, SPACE_MARK) != 0)
		return unsupported(err, "pre_tokenizer", "Metaspace with a replacement other than U+2581");
	if (split < 0 || old_prefix < 0)
		return unsupported(err, "pre_tokenizer", "Metaspace with a non-boolean setting");
	if (scheme == NULL)
		spec->sp_prefix = old_prefix ? SP_PREFIX_EVERY_SEGMENT : SP_PREFIX_NONE;
	else if (strcmp(scheme, "first") == 0)
		spec->sp_prefix = SP_PREFIX_TEXT_START;
	else if (strcmp(scheme, "always") == 0)
		spec->sp_prefix = SP_PREFIX_EVERY_SEGMENT;
	else if (strcmp(scheme, "never") == 0)
		spec->sp_prefix = SP_PREFIX_NONE;
	else
		return unsupported(err, "Metaspace prepend_scheme", scheme);
	if (split)
		spec->flags |= PRE_SPLIT_WORDS;
	spec->metaspace = true;
	return true;
}

/* One member of a byte-level pre-tokenizer: Split, Digits or ByteLevel. */
static bool
read_split_step(json_object *s, HfSpec *spec, CoreError *err)
{
	const char *type = type_of(s);

	if (strcmp(type, "ByteLevel") == 0)
	{
		if (bool_member(s, "add_prefix_space", 0) != 0)
			return unsupported(err, "pre_tokenizer", "ByteLevel with add_prefix_space");
		spec->byte_level = true;
		if (bool_member(s, "use_regex", 1) == 1)
			return add_spec_pattern(spec, PRE_GPT2_PATTERN, strlen(PRE_GPT2_PATTERN),
									false, err);
		return bool_member(s, "use_regex", 1) == 0 ||
			unsupported(err, "pre_tokenizer", "ByteLevel with a non-boolean use_regex");
	}
	if (strcmp(type, "Digits") == 0)
	{
		int			individual = bool_member(s, "individual_digits", 0);

		if (individual < 0)
			return unsupported(err, "pre_tokenizer", "Digits with a non-boolean setting");
		return add_spec_pattern(spec, individual ? "\\p{N}" : "\\p{N}+",
								individual ? 5 : 6, false, err);
	}
	if (strcmp(type, "Split") == 0)
	{
		json_object *pattern = member(s, "pattern");
		json_object *regex = member(pattern, "Regex");
		json_object *string = member(pattern, "String");
		const char *behavior = string_member(s, "behavior");
		json_object *text = regex != NULL ? regex : string;

		if (behavior == NULL || strcmp(behavior, "Isolated") != 0)
			return unsupported(err, "Split behavior", behavior ? behavior : "(none)");
		if (bool_member(s, "invert", 0) != 0)
			return unsupported(err, "pre_tokenizer", "Split with invert");
		if (!json_object_is_type(text, json_type_string))
			return unsupported(err, "pre_tokenizer", "Split without a Regex or String pattern");
		return add_spec_pattern(spec, json_object_get_string(text),
								(size_t) json_object_get_string_len(text), regex == NULL,
								err);
	}
	return unsupported(err, "pre_tokenizer", type);
}

static bool
read_pre_tokenizer(json_object *pt, HfSpec *spec, CoreError *err)
{
	json_object *list = member(pt, "pretokenizers");

	if (pt == NULL)
		return true;
	if (strcmp(type_of(pt), "Metaspace") == 0)
		return read_metaspace(pt, spec, err);
	if (strcmp(type_of(pt), "Sequence") == 0)
	{
		if (!json_object_is_type(list, json_type_array))
			return unsupported(err, "pre_tokenizer", "Sequence without pretokenizers");
		for (size_t i = 0; i < json_object_array_length(list); i++)
			if (!read_split_step(json_object_array_get_idx(list, i), spec, err))
				return false;
		return true;
	}
	return read_split_step(pt, spec, err);
}

/* Which kind the normalizer and pre-tokenizer make, checking they agree. */
static bool
decide_kind(HfSpec *spec, json_object *model, CoreError *err)
{
	int			byte_fallback = bool_member(model, "byte_fallback", 0);

	if (spec->byte_level)
	{
		if (spec->sp_normalizer || byte_fallback == 1)
			return unsupported(err, "combination", "ByteLevel with SentencePiece settings");
		spec->kind = TOKENIZER_BYTE_BPE;
		return true;
	}
	if (spec->sp_normalizer || spec->metaspace)
	{
		if (spec->n_patterns > 0 || (spec->flags & PRE_NFC) ||
			(spec->sp_normalizer && spec->metaspace))
			return unsupported(err, "combination",
							   "Metaspace or Prepend with other normalizers or splits");
		spec->kind = TOKENIZER_SP;
		spec->flags |= PRE_MARK_IS_SPACE;
		return true;
	}
	return unsupported(err, "pre_tokenizer",
					   "(neither ByteLevel nor Metaspace nor a Prepend normalizer)");
}

static bool
check_model(json_object *model, CoreError *err)
{
	const char *prefix = string_member(model, "continuing_subword_prefix");
	const char *suffix = string_member(model, "end_of_word_suffix");
	json_object *dropout = member(model, "dropout");

	if (model == NULL)
	{
		core_error(err, CORE_ERR_INVALID_INPUT, "missing field model in tokenizer.json");
		return false;
	}
	if (strcmp(type_of(model), "BPE") != 0)
		return unsupported(err, "model type", type_of(model));
	if (dropout != NULL && !json_object_is_type(dropout, json_type_null))
		return unsupported(err, "BPE setting", "dropout");
	if ((prefix != NULL && prefix[0] != '\0') || (suffix != NULL && suffix[0] != '\0'))
		return unsupported(err, "BPE setting", "continuing_subword_prefix/end_of_word_suffix");
	if (bool_member(model, "byte_fallback", 0) < 0 ||
		bool_member(model, "ignore_merges", 0) < 0)
		return unsupported(err, "BPE setting", "non-boolean byte_fallback/ignore_merges");
	if (!json_object_is_type(member(model, "vocab"), json_type_object) ||
		!json_object_is_type(member(model, "merges"), json_type_array))
	{
		core_error(err, CORE_ERR_INVALID_INPUT, "missing field model.vocab or model.merges");
		return false;
	}
	return true;
}

/* An id of a JSON value: an integer in [0, TOK_MAX_VOCAB), or -1. */
static int32_t
json_id(json_object *value)
{
	int64_t		id;

	if (!json_object_is_type(value, json_type_int))
		return -1;
	id = json_object_get_int64(value);
	return id >= 0 && id < TOK_MAX_VOCAB ? (int32_t) id : -1;
}

/*
 * The largest id of model.vocab and added_tokens (-1 for none), checking
 * each entry; -2 with err when one is wrong.
 */
static int64_t
largest_id(HfFile *f, CoreError *err)
{
	int64_t		largest = -1;

	json_object_object_foreach(f->vocab, key, value)
	{
		int32_t		id = json_id(value);

		(void) key;
		if (id < 0)
		{
			core_error(err, CORE_ERR_INVALID_INPUT,
					   "inconsistent vocab: model.vocab has an id that is not in [0, %d)",
					   TOK_MAX_VOCAB);
			return -2;
		}
		largest = id > largest ? id : largest;
	}
	for (size_t i = 0; f->added != NULL && i < json_object_array_length(f->added); i++)
	{
		json_object *a = json_object_array_get_idx(f->added, i);
		int32_t		id = json_id(member(a, "id"));

		if (id < 0 || string_member(a, "content") == NULL)
		{
			core_error(err, CORE_ERR_INVALID_INPUT,
					   "inconsistent vocab: added token %zu has no id or content", i);
			return -2;
		}
		largest = id > largest ? id : largest;
	}
	return largest;
}

/* model.vocab by id (its ids were checked by largest_id()). */
static bool
index_vocab(HfFile *f, CoreError *err)
{
	json_object_object_foreach(f->vocab, key, value)
	{
		int32_t		id = json_id(value);

		if (f->vocab_text[id] != NULL)
		{
			core_error(err, CORE_ERR_INVALID_INPUT,
					   "inconsistent vocab: id %d appears twice in model.vocab", id);
			return false;
		}
		f->vocab_text[id] = key;
		f->vocab_len[id] = strlen(key);
	}
	return true;
}

/* Index both lists by id. */
static bool
index_ids(HfFile *f, CoreError *err)
{
	size_t		n = (size_t) f->n_tokens;

	f->vocab_text = calloc(n, sizeof(char *));
	f->vocab_len = calloc(n, sizeof(size_t));
	f->added_of = malloc(n * sizeof(int32_t));
	if (f->vocab_text == NULL || f->vocab_len == NULL || f->added_of == NULL)
	{
		core_error(err, CORE_ERR_NO_MEMORY, "out of memory reading tokenizer.json");
		return false;
	}
	memset(f->added_of, 0xFF, n * sizeof(int32_t));
	if (!index_vocab(f, err))
		return false;
	for (size_t i = 0; f->added != NULL && i < json_object_array_length(f->added); i++)
	{
		json_object *a = json_object_array_get_idx(f->added, i);
		int32_t		id = json_id(member(a, "id"));

		if (f->added_of[id] >= 0)
		{
			core_error(err, CORE_ERR_INVALID_INPUT,
					   "inconsistent vocab: id %d appears twice in added_tokens", id);
			return false;
		}
		f->added_of[id] = (int32_t) i;
	}
	return true;
}

/* An added token's flags: refuse what is not implemented. */
static bool
check_added(const HfFile *f, json_object *a, CoreError *err)
{
	const char *content = string_member(a, "content");
	int			normalized = bool_member(a, "normalized", 1);

	if (bool_member(a, "lstrip", 0) != 0 || bool_member(a, "rstrip", 0) != 0 ||
		bool_member(a, "single_word", 0) != 0)
	{
		core_error(err, CORE_ERR_INVALID_INPUT,
				   "unsupported added token \"%.40s\": lstrip, rstrip and single_word are not implemented",
				   content);
		return false;
	}
	if (normalized < 0 || bool_member(a, "special", 0) < 0 ||
		(normalized == 1 && f->spec.kind == TOKENIZER_SP))
	{
		core_error(err, CORE_ERR_INVALID_INPUT,
				   "unsupported added token \"%.40s\": normalized with a SentencePiece normalizer",
				   content);
		return false;
	}
	if (json_object_get_string_len(member(a, "content")) == 0 ||
		(size_t) json_object_get_string_len(member(a, "content")) != strlen(content))
	{
		core_error(err, CORE_ERR_INVALID_INPUT, "unsupported added token: empty or with a NUL");
		return false;
	}
	return true;
}

/*
 * A model.vocab entry in decoded form: byte-level characters back to
 * bytes (a token that is not byte-level, as some special ones, keeps its
 * text), SentencePiece's U+2581 back to spaces, <0xNN> to its byte.
 */
static bool
set_vocab_token(Pretrained *p, const HfFile *f, int32_t id, unsigned extra,
				char *buf, CoreError *err)
{
	const char *text = f->vocab_text[id];
	size_t		len = f->vocab_len[id];
	size_t		n;
	int			byte;

	if (len > PRE_MAX_TOKEN_BYTES)
	{
		core_error(err, CORE_ERR_INVALID_INPUT, "token %d is %zu bytes long", id, len);
		return false;
	}
	if (f->spec.kind == TOKENIZER_BYTE_BPE)
	{
		if (!bytelevel_decode(text, len, buf, &n))
			return pre_set_token(p, id, TT_NORMAL | extra, text, len,
								 CORE_ERR_INVALID_INPUT, err);
		return pre_set_token(p, id, TT_NORMAL | extra, buf, n, CORE_ERR_INVALID_INPUT, err);
	}
	if ((byte = sp_byte_piece(text, len)) >= 0 &&
		bool_member(member(f->root, "model"), "byte_fallback", 0) == 1)
	{
		buf[0] = (char) byte;
		return pre_set_token(p, id, TT_BYTE | extra, buf, 1, CORE_ERR_INVALID_INPUT, err);
	}
	return pre_set_token(p, id, TT_NORMAL | extra, buf, sp_unescape(text, len, buf),
						 CORE_ERR_INVALID_INPUT, err);
}

/*
 * One id: an added token (special: its name, decoding to nothing; not
 * special: its text, unless it is the model's token of the same text), a
 * model.vocab token, or nothing.
 */
static bool
set_token(Pretrained *p, const HfFile *f, int32_t id, char *buf, CoreError *err)
{
	json_object *a;
	const char *content;
	size_t		len;

	if (f->added_of[id] < 0)
		return f->vocab_text[id] == NULL || set_vocab_token(p, f, id, 0, buf, err);
	a = json_object_array_get_idx(f->added, (size_t) f->added_of[id]);
	if (!check_added(f, a, err))
		return false;
	content = string_member(a, "content");
	len = strlen(content);
	if (len > PRE_MAX_TOKEN_BYTES)
	{
		core_error(err, CORE_ERR_INVALID_INPUT, "token %d is %zu bytes long", id, len);
		return false;
	}
	if (bool_member(a, "special", 0) == 1)
		return pre_set_token(p, id, TT_SPECIAL | TT_LITERAL, content, len,
							 CORE_ERR_INVALID_INPUT, err);
	if (f->vocab_text[id] != NULL && f->spec.kind == TOKENIZER_BYTE_BPE &&
		bytelevel_decode(f->vocab_text[id], f->vocab_len[id], buf, &len) &&
		len == strlen(content) && memcmp(buf, content, len) == 0)
		return set_vocab_token(p, f, id, TT_LITERAL, buf, err);
	return pre_set_token(p, id, TT_ADDED | TT_LITERAL, content, strlen(content),
						 CORE_ERR_INVALID_INPUT, err);
}

/* The id of a token by its tokenizer.json text: added tokens first. */
static int32_t
token_id(const HfFile *f, const char *text)
{
	for (size_t i = 0; f->added != NULL && i < json_object_array_length(f->added); i++)
	{
		json_object *a = json_object_array_get_idx(f->added, i);
		const char *content = string_member(a, "content");

		if (content != NULL && strcmp(content, text) == 0)
			return json_id(member(a, "id"));
	}
	return json_id(member(f->vocab, text));
}

/* The vocabulary id of merge part text[0 .. len), or -1. */
static int32_t
part_id(const HfFile *f, const char *text, size_t len, char *buf)
{
	if (len > PRE_MAX_TOKEN_BYTES)
		return -1;
	memcpy(buf, text, len);
	buf[len] = '\0';
	return json_id(member(f->vocab, buf));
}

/* model.merges: "a b" strings or ["a", "b"] pairs, by rank. */
static bool
read_merges(Pretrained *p, const HfFile *f, char *buf, CoreError *err)
{
	json_object *merges = member(member(f->root, "model"), "merges");
	size_t		n = json_object_array_length(merges);

	if (n > INT32_MAX)
		return unsupported(err, "merges", "list longer than 2^31");
	for (size_t i = 0; i < n; i++)
	{
		json_object *m = json_object_array_get_idx(merges, i);
		int32_t		a = -1,
					b = -1;

		if (json_object_is_type(m, json_type_string))
		{
			const char *s = json_object_get_string(m);
			size_t		len = (size_t) json_object_get_string_len(m);
			const char *space = len > 1 ? memchr(s + 1, ' ', len - 1) : NULL;

			if (space != NULL)
			{
				a = part_id(f, s, (size_t) (space - s), buf);
				b = part_id(f, space + 1, len - (size_t) (space - s) - 1, buf);
			}
		}
		else if (json_object_is_type(m, json_type_array) &&
				 json_object_array_length(m) == 2)
		{
			json_object *x = json_object_array_get_idx(m, 0);
			json_object *y = json_object_array_get_idx(m, 1);

			if (json_object_is_type(x, json_type_string) &&
				json_object_is_type(y, json_type_string))
			{
				a = json_id(member(f->vocab, json_object_get_string(x)));
				b = json_id(member(f->vocab, json_object_get_string(y)));
			}
		}
		if (a < 0 || b < 0)
		{
			core_error(err, CORE_ERR_INVALID_INPUT,
					   "merge %zu is not a pair of tokens of model.vocab", i);
			return false;
		}
		if (pairmap_get(&p->merge_of, pack_pair(a, b)) >= 0)
			continue;			/* a repeated merge: the first rank counts */
		if (!pre_add_merge(p, a, b, (uint32_t) i, CORE_ERR_INVALID_INPUT, err))
			return false;
	}
	return true;
}

/* A token named in a config file: "<s>", or {"content": "<s>", ...}. */
static int32_t
named_token(const HfFile *f, json_object *value)
{
	const char *name = json_object_is_type(value, json_type_string) ?
		json_object_get_string(value) : string_member(value, "content");

	return name != NULL ? token_id(f, name) : -1;
}

/* An id in generation_config.json: an integer, or the first of a list. */
static int32_t
config_id(json_object *value)
{
	if (json_object_is_type(value, json_type_array) &&
		json_object_array_length(value) > 0)
		value = json_object_array_get_idx(value, 0);
	return json_id(value);
}

/* The first special token of a TemplateProcessing's single template. */
static int32_t
template_bos(const HfFile *f, json_object *pp)
{
	json_object *list = member(pp, "processors");
	json_object *first;
	const char *name;
	json_object *ids;

	if (strcmp(type_of(pp), "Sequence") == 0 && json_object_is_type(list, json_type_array))
	{
		for (size_t i = 0; i < json_object_array_length(list); i++)
		{
			int32_t		id = template_bos(f, json_object_array_get_idx(list, i));

			if (id >= 0)
				return id;
		}
		return -1;
	}
	if (strcmp(type_of(pp), "TemplateProcessing") != 0 ||
		!json_object_is_type(member(pp, "single"), json_type_array) ||
		json_object_array_length(member(pp, "single")) == 0)
		return -1;
	first = json_object_array_get_idx(member(pp, "single"), 0);
	if ((name = string_member(member(first, "SpecialToken"), "id")) == NULL)
		return -1;
	ids = member(member(member(pp, "special_tokens"), name), "ids");
	if (json_object_is_type(ids, json_type_array) && json_object_array_length(ids) == 1)
		return json_id(json_object_array_get_idx(ids, 0));
	return token_id(f, name);
}

static json_object *
parse_json(const void *data, size_t len, const char *what, CoreError *err)
{
	json_tokener *tok;
	json_object *obj;

	if (data == NULL || len == 0)
		return NULL;
	if (len > INT_MAX || (tok = json_tokener_new()) == NULL)
	{
		core_error(err, CORE_ERR_INVALID_INPUT, "%s: too large (%zu bytes)", what, len);
		return NULL;
	}
	obj = json_tokener_parse_ex(tok, data, (int) len);
	if (json_tokener_get_error(tok) != json_tokener_success ||
		json_tokener_get_parse_end(tok) != len || !json_object_is_type(obj, json_type_object))
	{
		core_error(err, CORE_ERR_INVALID_INPUT, "%s is not a JSON object: %s", what,
				   json_tokener_error_desc(json_tokener_get_error(tok)));
		json_object_put(obj);
		obj = NULL;
	}
	json_tokener_free(tok);
	return obj;
}

/* BOS, EOS and whether BOS goes first; precedence in tokenizer_pretrained.h. */
static bool
read_roles(Pretrained *p, const HfFile *f, const TokenizerSource *src,
		   CoreError *err)
{
	json_object *config = NULL;
	json_object *generation = NULL;
	int32_t		first = template_bos(f, member(f->root, "post_processor"));

	if ((src->config != NULL && src->config_len > 0 &&
		 (config = parse_json(src->config, src->config_len, "tokenizer_config.json", err)) == NULL) ||
		(src->generation_config != NULL && src->generation_config_len > 0 &&
		 (generation = parse_json(src->generation_config, src->generation_config_len,
								  "generation_config.json", err)) == NULL))
	{
		json_object_put(config);
		return false;
	}
	p->bos = first >= 0 ? first : src->bos_id >= 0 ? src->bos_id : -1;
	if (p->bos < 0)
		p->bos = config_id(member(generation, "bos_token_id"));
	if (p->bos < 0)
		p->bos = named_token(f, member(config, "bos_token"));
	p->eos = src->eos_id >= 0 ? src->eos_id : config_id(member(generation, "eos_token_id"));
	if (p->eos < 0)
		p->eos = named_token(f, member(config, "eos_token"));
	if (first >= 0 || bool_member(config, "add_bos_token", 0) == 1)
		p->flags |= PRE_ADDS_BOS;
	json_object_put(config);
	json_object_put(generation);
	if (p->bos >= p->n_tokens || p->eos >= p->n_tokens)
	{
		core_error(err, CORE_ERR_INVALID_INPUT,
				   "bad size: BOS %d or EOS %d outside the %d tokens", p->bos, p->eos,
				   p->n_tokens);
		return false;
	}
	return true;
}

/* Everything after the spec: tokens, merges, patterns, roles. */
static Tokenizer *
build(HfFile *f, const TokenizerSource *src, CoreError *err)
{
	Pretrained *p = pre_alloc(f->spec.kind, f->n_tokens);
	char	   *buf = malloc(PRE_MAX_TOKEN_BYTES + 1);
	const char *unk = string_member(member(f->root, "model"), "unk_token");

	if (p == NULL || buf == NULL)
	{
		core_error(err, CORE_ERR_NO_MEMORY, "out of memory for the vocabulary");
		goto fail;
	}
	for (int32_t id = 0; id < f->n_tokens; id++)
		if (!set_token(p, f, id, buf, err))
			goto fail;
	if (!pre_finish_vocab(p, CORE_ERR_INVALID_INPUT, err) || !read_merges(p, f, buf, err))
		goto fail;
	for (int k = 0; k < f->spec.n_patterns; k++)
		if (!pre_add_pattern(p, f->spec.pattern[k], f->spec.pattern_len[k],
							 f->spec.pattern_literal[k], CORE_ERR_INVALID_INPUT, err))
			goto fail;
	p->flags |= f->spec.flags;
	if (bool_member(member(f->root, "model"), "ignore_merges", 0) == 1)
		p->flags |= PRE_IGNORE_MERGES;
	p->sp_prefix = f->spec.sp_prefix;
	p->unk = unk != NULL ? token_id(f, unk) : -1;
	if (!read_roles(p, f, src, err))
		goto fail;
	free(buf);
	return tok_wrap_pretrained(p, CORE_ERR_INVALID_INPUT, err);
fail:
	free(buf);
	pre_free(p);
	return NULL;
}

Tokenizer *
hf_from_json(const TokenizerSource *src, CoreError *err)
{
	HfFile		f = {0};
	json_object *model;
	Tokenizer  *t = NULL;
	int64_t		largest;

	if (src->data == NULL || src->len == 0)
	{
		core_error(err, CORE_ERR_INVALID_INPUT, "missing tokenizer.json");
		return NULL;
	}
	if ((f.root = parse_json(src->data, src->len, "tokenizer.json", err)) == NULL)
		return NULL;
	model = member(f.root, "model");
	f.vocab = member(model, "vocab");
	f.added = member(f.root, "added_tokens");
	if (f.added != NULL && !json_object_is_type(f.added, json_type_array))
		f.added = NULL;
	if (check_model(model, err) &&
		read_normalizer(member(f.root, "normalizer"), &f.spec, err) &&
		read_pre_tokenizer(member(f.root, "pre_tokenizer"), &f.spec, err) &&
		decide_kind(&f.spec, model, err) &&
		(largest = largest_id(&f, err)) >= -1 &&
		(f.n_tokens = pre_vocab_size(src, largest + 1, err)) > 0 &&
		index_ids(&f, err))
		t = build(&f, src, err);
	free(f.vocab_text);
	free(f.vocab_len);
	free(f.added_of);
	json_object_put(f.root);
	return t;
}
