/*
 * test_pretrained_tokenizer.c - the tokenizers of pretrained checkpoints
 * (core/tokenizer_pretrained.h) against reference token ids.
 *
 * The references are in test/data/tokenizers (README there: the corpus of
 * 2170 texts, the ids transformers.js, SentencePiece, tiktoken and
 * llama2.c's algorithm give for it, and the tokenizer files, gzipped: they
 * are read through `gzip -dc`).  For each tokenizer: every corpus line
 * encodes to the reference ids; decoding the reference ids of the first
 * 200 lines gives the reference text; serializing, loading and
 * serializing again gives the same bytes and the same ids.  The same
 * vocabularies are also loaded the way a GGUF file hands them over.  Then
 * what must be refused (invalid UTF-8, unsupported tokenizer.json
 * settings, corrupt blobs) and the from-scratch tokenizer's behaviour
 * through the new entry points.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <json-c/json.h>
#include <uninorm.h>

#include "core/tokenizer.h"
#include "core/tokenizer_pretrained.h"
#include "unit.h"

#define DATA "test/data/tokenizers/"
#define CORPUS_LINES 2170

typedef struct Bytes
{
	char	   *data;
	size_t		len;
} Bytes;

/* A file's bytes (a NUL after them); through gzip -dc when it ends in .gz. */
static Bytes
read_file(const char *path)
{
	Bytes		b = {0};
	size_t		cap = 1 << 16;
	bool		gz = strlen(path) > 3 && strcmp(path + strlen(path) - 3, ".gz") == 0;
	char		cmd[512];
	FILE	   *f;
	size_t		n;

	snprintf(cmd, sizeof(cmd), "gzip -dc '%s'", path);
	f = gz ? popen(cmd, "r") : fopen(path, "rb");
	if (f == NULL)
		return b;
	b.data = malloc(cap);
	while ((n = fread(b.data + b.len, 1, cap - b.len - 1, f)) > 0)
	{
		b.len += n;
		if (cap - b.len - 1 == 0)
			b.data = realloc(b.data, cap *= 2);
	}
	if (gz ? pclose(f) != 0 : fclose(f) != 0)
	{
		free(b.data);
		return (Bytes) {0};
	}
	b.data[b.len] = '\0';
	return b;
}

/* Lines of a file, each NUL-terminated in place. */
typedef struct Lines
{
	Bytes		file;
	char	  **line;
	size_t	   *len;
	size_t		n;
} Lines;

static Lines
read_lines(const char *path)
{
	Lines		l = {.file = read_file(path)};
	size_t		cap = 4096;

	l.line = malloc(cap * sizeof(char *));
	l.len = malloc(cap * sizeof(size_t));
	for (size_t i = 0; l.file.data != NULL && i < l.file.len;)
	{
		char	   *nl = memchr(l.file.data + i, '\n', l.file.len - i);
		size_t		end = nl ? (size_t) (nl - l.file.data) : l.file.len;

		if (l.n == cap)
		{
			l.line = realloc(l.line, (cap *= 2) * sizeof(char *));
			l.len = realloc(l.len, cap * sizeof(size_t));
		}
		l.file.data[end] = '\0';
		l.line[l.n] = l.file.data + i;
		l.len[l.n++] = end - i;
		i = end + 1;
	}
	return l;
}

static void
free_lines(Lines *l)
{
	free(l->file.data);
	free(l->line);
	free(l->len);
}

static int
hex_digit(char c)
{
	return c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
}

/* Undo corpus.txt's escapes in place (\\ \n \t \r \xNN); returns the length. */
static size_t
unescape(char *s, size_t len)
{
	size_t		n = 0;

	for (size_t i = 0; i < len; i++)
	{
		if (s[i] != '\\' || i + 1 >= len)
		{
			s[n++] = s[i];
			continue;
		}
		switch (s[++i])
		{
			case 'n':
				s[n++] = '\n';
				break;
			case 't':
				s[n++] = '\t';
				break;
			case 'r':
				s[n++] = '\r';
				break;
			case 'x':
				s[n++] = (char) (hex_digit(s[i + 1]) * 16 + hex_digit(s[i + 2]));
				i += 2;
				break;
			default:
				s[n++] = s[i];
		}
	}
	return n;
}

static Lines corpus;

/* Ids of one .ids line. */
static int
parse_ids(const char *line, int32_t *ids, int cap)
{
	int			n = 0;

	while (*line != '\0' && n < cap)
	{
		char	   *end;

		ids[n++] = (int32_t) strtol(line, &end, 10);
		line = *end == ' ' ? end + 1 : end;
	}
	return n;
}

static bool
same_ids(const int32_t *a, int na, const int32_t *b, int nb)
{
	return na == nb && (na == 0 || memcmp(a, b, sizeof(int32_t) * (size_t) na) == 0);
}

static void
print_ids(const char *what, const int32_t *ids, int n)
{
	fprintf(stderr, "  %s:", what);
	for (int i = 0; i < n && i < 40; i++)
		fprintf(stderr, " %d", ids[i]);
	fprintf(stderr, n > 40 ? " ...\n" : "\n");
}

/*
 * Encode every corpus line and compare with the reference; lines listed
 * in skip (1-based, 0-terminated) are not compared.  Returns the number of
 * lines that differ.
 */
static int
compare_corpus(const char *name, const Tokenizer *t, const char *ids_path,
			   const int *skip)
{
	Lines		expected = read_lines(ids_path);
	int32_t    *want = malloc(sizeof(int32_t) * 65536);
	int			bad = 0,
				compared = 0;

	CHECKF(expected.n == CORPUS_LINES && corpus.n == CORPUS_LINES,
		   "%s: %zu expected lines, %zu corpus lines", ids_path, expected.n, corpus.n);
	for (size_t k = 0; k < expected.n && k < corpus.n; k++)
	{
		int32_t    *ids;
		CoreError	err = {0};
		int			n_want = parse_ids(expected.line[k], want, 65536);
		int			n;
		bool		skipped = false;

		for (const int *s = skip; s != NULL && *s != 0; s++)
			skipped |= (size_t) *s == k + 1;
		if (skipped)
			continue;
		n = tok_encode_checked(t, corpus.line[k], corpus.len[k], &ids, &err);
		compared++;
		if (n < 0 || !same_ids(ids, n, want, n_want))
		{
			if (bad++ < 3)
			{
				fprintf(stderr, "%s: line %zu differs (%s)\n", name, k + 1, err.message);
				print_ids("expected", want, n_want);
				if (n >= 0)
					print_ids("got", ids, n);
			}
		}
		free(ids);
	}
	CHECKF(bad == 0 && compared > 2000, "%s: %d of %d lines differ", name, bad, compared);
	free(want);
	free_lines(&expected);
	return bad;
}

/*
 * Decode the reference ids of the first 200 lines and compare with the
 * reference decode.  SentencePiece kinds return the dummy prefix's space
 * (tokenizer_pretrained.h), which HF's Strip decoder removes: one leading
 * space is dropped from ours when strip_space.  The reference decodes
 * special tokens to their names, we to nothing: the lines in skip, which
 * have them, are left out.
 */
static void
compare_decode(const char *name, const Tokenizer *t, const char *ids_path,
			   const char *decode_path, bool strip_space, const int *skip)
{
	Lines		ids = read_lines(ids_path);
	Lines		dec = read_lines(decode_path);
	int32_t    *want = malloc(sizeof(int32_t) * 65536);
	int			bad = 0;

	CHECKF(dec.n == 200 && ids.n == CORPUS_LINES, "%s: %zu decode lines", name, dec.n);
	for (size_t k = 0; k < dec.n && k < ids.n; k++)
	{
		int			n = parse_ids(ids.line[k], want, 65536);
		size_t		len;
		char	   *text = tok_decode(t, want, (size_t) n, &len);
		char	   *got = text;
		size_t		want_len = unescape(dec.line[k], dec.len[k]);
		bool		skipped = false;

		for (const int *s = skip; s != NULL && *s != 0; s++)
			skipped |= (size_t) *s == k + 1;
		if (skipped)
		{
			free(text);
			continue;
		}
		if (strip_space && len > 0 && got[0] == ' ')
			got++, len--;
		if (len != want_len || memcmp(got, dec.line[k], len) != 0)
		{
			if (bad++ < 3)
				fprintf(stderr, "%s: decode of line %zu: \"%.*s\", expected \"%.*s\"\n",
						name, k + 1, (int) len, got, (int) want_len, dec.line[k]);
		}
		free(text);
	}
	CHECKF(bad == 0, "%s: %d decodes differ", name, bad);
	free(want);
	free_lines(&ids);
	free_lines(&dec);
}

/* Serialize, load, serialize: same bytes, and the same ids for a few lines. */
static void
check_round_trip(const char *name, const Tokenizer *t)
{
	size_t		len1,
				len2;
	void	   *blob1 = tok_serialize(t, &len1);
	CoreError	err = {0};
	Tokenizer  *again = blob1 ? tok_deserialize(blob1, len1, &err) : NULL;
	void	   *blob2 = again ? tok_serialize(again, &len2) : NULL;
	int			differ = 0;

	CHECKF(again != NULL, "%s: its blob does not load: %s", name, err.message);
	CHECKF(blob2 != NULL && len1 == len2 && memcmp(blob1, blob2, len1) == 0,
		   "%s: serialized again, the blob changes", name);
	for (size_t k = 0; again != NULL && k < corpus.n; k += 7)
	{
		int32_t    *a,
				   *b;
		int			na = tok_encode(t, corpus.line[k], corpus.len[k], &a);
		int			nb = tok_encode(again, corpus.line[k], corpus.len[k], &b);

		differ += !same_ids(a, na, b, nb);
		free(a);
		free(b);
	}
	CHECKF(differ == 0, "%s: the loaded copy encodes %d lines differently", name, differ);
	if (again != NULL)
	{
		CHECK(tok_vocab_size(again) == tok_vocab_size(t));
		CHECK(tok_bos(again) == tok_bos(t) && tok_eos(again) == tok_eos(t));
		CHECK(tok_adds_bos(again) == tok_adds_bos(t) && tok_is_pretrained(again));
	}
	/* a flipped byte is caught by the checksum */
	if (blob1 != NULL)
	{
		((uint8_t *) blob1)[len1 / 2] ^= 1;
		CHECK(tok_deserialize(blob1, len1, &err) == NULL && err.kind == CORE_ERR_CORRUPT);
		CHECK(tok_deserialize(blob1, len1 / 2, &err) == NULL && err.kind == CORE_ERR_CORRUPT);
	}
	tok_free(again);
	free(blob1);
	free(blob2);
}

static Tokenizer *
load_hf(const char *dir, int vocab_size)
{
	char		path[256];
	Bytes		json,
				config;
	TokenizerSource src = {.kind = TOKSRC_HF, .vocab_size = vocab_size,
	.bos_id = -1, .eos_id = -1};
	CoreError	err = {0};
	Tokenizer  *t;

	snprintf(path, sizeof(path), DATA "%s/tokenizer.json.gz", dir);
	json = read_file(path);
	snprintf(path, sizeof(path), DATA "%s/tokenizer_config.json", dir);
	config = read_file(path);
	src.data = json.data;
	src.len = json.len;
	src.config = config.data;
	src.config_len = config.len;
	t = tok_from_source(&src, &err);
	CHECKF(t != NULL, "%s: %s", dir, err.message);
	free(json.data);
	free(config.data);
	return t;
}

static Tokenizer *
load_llama2c(const char *path, int vocab_size)
{
	Bytes		bin = read_file(path);
	TokenizerSource src = {.kind = TOKSRC_LLAMA2C, .data = bin.data, .len = bin.len,
	.vocab_size = vocab_size, .bos_id = -1, .eos_id = -1};
	CoreError	err = {0};
	Tokenizer  *t = tok_from_source(&src, &err);

	CHECKF(t != NULL, "%s: %s", path, err.message);
	free(bin.data);
	return t;
}

/*
 * decode(encode(x)) == x on every corpus line (after NFC when nfc; with
 * the dummy prefix's space first when space), except the lines in skip.
 */
static void
check_decode_encode(const char *name, const Tokenizer *t, bool nfc, bool space,
					const int *skip)
{
	int			bad = 0;

	for (size_t k = 0; k < corpus.n; k++)
	{
		int32_t    *ids;
		int			n = tok_encode(t, corpus.line[k], corpus.len[k], &ids);
		size_t		len,
					want_len = corpus.len[k];
		char	   *text = tok_decode(t, ids, n > 0 ? (size_t) n : 0, &len);
		uint8_t    *want = (uint8_t *) corpus.line[k];
		uint8_t    *normal = NULL;
		bool		skipped = false;

		for (const int *s = skip; s != NULL && *s != 0; s++)
			skipped |= (size_t) *s == k + 1;
		if (nfc && want_len > 0)
			want = normal = u8_normalize(UNINORM_NFC, want, want_len, NULL, &want_len);
		if (space && len > 0 && want_len > 0 && text[0] == ' ')
			memmove(text, text + 1, len--);
		if (!skipped && (len != want_len || memcmp(text, want, len) != 0) && bad++ < 3)
			fprintf(stderr, "%s: line %zu decodes to \"%.*s\"\n", name, k + 1, (int) len, text);
		free(normal);
		free(text);
		free(ids);
	}
	CHECKF(bad == 0, "%s: %d lines do not come back", name, bad);
}

/* Lines holding added tokens or a literal U+2581 (README of the data). */
static const int sp_special_lines[] = {128, 129, 130, 131, 132, 140, 141, 0};
static const int gpt2_special_lines[] = {123, 124, 125, 126, 0};
static const int llama3_special_lines[] = {133, 134, 135, 136, 137, 0};
static const int qwen3_special_lines[] = {123, 124, 125, 126, 138, 0};

static void
test_tokenizer_json(void)
{
	struct
	{
		const char *name;
		int			vocab;
		int32_t		bos,
					eos;
		bool		adds_bos;
		bool		sp;
		const int  *special;
	}			cases[] = {
		{"gpt2", 50257, 50256, 50256, false, false, gpt2_special_lines},
		{"llama3", 128256, 128000, 128001, false, false, llama3_special_lines},
		{"qwen3", 151936, -1, 151645, false, false, qwen3_special_lines},
		{"llama2", 32000, 1, 2, true, true, sp_special_lines},
		{"mistral", 32000, 1, 2, true, true, sp_special_lines},
	};

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++)
	{
		char		ids[256],
					dec[256];
		Tokenizer  *t = load_hf(cases[i].name, cases[i].vocab);

		if (t == NULL)
			continue;
		CHECKF(tok_vocab_size(t) == cases[i].vocab && tok_bos(t) == cases[i].bos &&
			   tok_eos(t) == cases[i].eos && tok_adds_bos(t) == cases[i].adds_bos &&
			   tok_is_pretrained(t) && tok_sep(t) == -1 && tok_pad(t) == -1,
			   "%s: vocab %d bos %d eos %d adds_bos %d", cases[i].name, tok_vocab_size(t),
			   tok_bos(t), tok_eos(t), tok_adds_bos(t));
		snprintf(ids, sizeof(ids), DATA "%s.ids", cases[i].name);
		snprintf(dec, sizeof(dec), DATA "%s.decode.txt", cases[i].name);
		compare_corpus(cases[i].name, t, ids, NULL);
		compare_decode(cases[i].name, t, ids, dec, cases[i].sp, cases[i].special);
		check_decode_encode(cases[i].name, t, strcmp(cases[i].name, "qwen3") == 0,
							cases[i].sp, cases[i].special);
		check_round_trip(cases[i].name, t);
		tok_free(t);
	}
}

static void
test_llama2c(void)
{
	Tokenizer  *t = load_llama2c(DATA "llama2/tokenizer.bin.gz", 32000);
	Tokenizer  *small = load_llama2c("test/data/stories260K/tok512.bin", 512);
	int32_t    *ids;
	int			n;

	if (t != NULL)
	{
		CHECK(tok_bos(t) == 1 && tok_eos(t) == 2 && tok_adds_bos(t));
		compare_corpus("llama2 tokenizer.bin", t, DATA "llama2-bin.ids", NULL);
		check_decode_encode("llama2 tokenizer.bin", t, false, true, NULL);
		check_round_trip("llama2 tokenizer.bin", t);
		/* the check in ../shared/models/llama2-tokenizer/README.md */
		n = tok_encode(t, "Once upon a time, there was a little girl named Lily.", 53, &ids);
		CHECK(same_ids(ids, n, (const int32_t[]) {9038, 2501, 263, 931, 29892, 727, 471,
					   263, 2217, 7826, 4257, 365, 2354, 29889}, 14));
		free(ids);
	}
	if (small != NULL)
	{
		compare_corpus("tok512", small, DATA "tok512.ids", NULL);
		check_decode_encode("tok512", small, false, true, NULL);
		check_round_trip("tok512", small);
		/* the prompts of the golden texts of stories260K */
		n = tok_encode(small, "Zoo", 3, &ids);
		CHECK(same_ids(ids, n, (const int32_t[]) {410, 469, 347}, 3));
		free(ids);
	}
	tok_free(t);
	tok_free(small);
}

/* A GGUF-style vocabulary: arrays the test fills and frees. */
typedef struct GgufArrays
{
	TokenizerVocab v;
	const char **tokens;
	uint32_t   *lens;
	float	   *scores;
	int32_t    *types;
	const char **merges;
	uint32_t   *merge_lens;
	char	   *pool;			/* the bytes the pointers point into */
	json_object *json;
} GgufArrays;

static void
free_gguf(GgufArrays *g)
{
	free(g->tokens);
	free(g->lens);
	free(g->scores);
	free(g->types);
	free(g->merges);
	free(g->merge_lens);
	free(g->pool);
	json_object_put(g->json);
}

/*
 * llama2.c's tokenizer.bin as a GGUF "llama" vocabulary: pieces with
 * U+2581 for spaces, token types as llama.cpp's converter writes them.
 */
static bool
gguf_from_llama2c(GgufArrays *g, const char *path, int n)
{
	Bytes		bin = read_file(path);
	size_t		pos = 4;

	memset(g, 0, sizeof(*g));
	if (bin.data == NULL)
		return false;
	g->tokens = calloc((size_t) n, sizeof(char *));
	g->lens = calloc((size_t) n, sizeof(uint32_t));
	g->scores = calloc((size_t) n, sizeof(float));
	g->types = calloc((size_t) n, sizeof(int32_t));
	g->pool = malloc(3 * bin.len);
	for (int id = 0, used = 0; id < n; id++)
	{
		uint32_t	len;

		memcpy(&g->scores[id], bin.data + pos, 4);
		memcpy(&len, bin.data + pos + 4, 4);
		g->tokens[id] = g->pool + used;
		for (uint32_t i = 0; i < len; i++)
			if (bin.data[pos + 8 + i] == ' ' && id >= 259)
				used += sprintf(g->pool + used, "\xE2\x96\x81");
			else
				g->pool[used++] = bin.data[pos + 8 + i];
		g->lens[id] = (uint32_t) (g->pool + used - g->tokens[id]);
		g->types[id] = id == 0 ? 2 : id < 3 ? 3 : id < 259 ? 6 : 1;
		pos += 8 + len;
	}
	free(bin.data);
	g->v = (TokenizerVocab) {.model = "llama", .n_tokens = n, .tokens = g->tokens,
		.token_lens = g->lens, .scores = g->scores, .token_types = g->types,
		.bos_id = 1, .eos_id = 2, .unk_id = 0, .pad_id = -1,
	.add_bos = -1, .add_eos = -1, .add_space_prefix = -1};
	return true;
}

/*
 * A tokenizer.json as a GGUF "gpt2" vocabulary: its tokens by id (added
 * special tokens CONTROL, other added tokens USER_DEFINED) and its merges
 * as "a b" strings.
 */
static bool
gguf_from_json(GgufArrays *g, const char *dir, const char *pre)
{
	char		path[256];
	Bytes		json;
	json_object *model,
			   *vocab,
			   *merges,
			   *added;
	int			n = 0;
	size_t		used = 0;

	memset(g, 0, sizeof(*g));
	snprintf(path, sizeof(path), DATA "%s/tokenizer.json.gz", dir);
	json = read_file(path);
	g->json = json_tokener_parse(json.data);
	free(json.data);
	if (g->json == NULL)
		return false;
	model = json_object_object_get(g->json, "model");
	vocab = json_object_object_get(model, "vocab");
	merges = json_object_object_get(model, "merges");
	added = json_object_object_get(g->json, "added_tokens");
	json_object_object_foreach(vocab, key0, value0)
	{
		(void) key0;
		n = json_object_get_int(value0) >= n ? json_object_get_int(value0) + 1 : n;
	}
	for (size_t i = 0; i < json_object_array_length(added); i++)
	{
		int			id = json_object_get_int(json_object_object_get(json_object_array_get_idx(added, i), "id"));

		n = id >= n ? id + 1 : n;
	}
	g->tokens = calloc((size_t) n, sizeof(char *));
	g->lens = calloc((size_t) n, sizeof(uint32_t));
	g->types = calloc((size_t) n, sizeof(int32_t));
	json_object_object_foreach(vocab, key, value)
	{
		int			id = json_object_get_int(value);

		g->tokens[id] = key;
		g->lens[id] = (uint32_t) strlen(key);
		g->types[id] = 1;
	}
	for (size_t i = 0; i < json_object_array_length(added); i++)
	{
		json_object *a = json_object_array_get_idx(added, i);
		int			id = json_object_get_int(json_object_object_get(a, "id"));

		g->tokens[id] = json_object_get_string(json_object_object_get(a, "content"));
		g->lens[id] = (uint32_t) strlen(g->tokens[id]);
		g->types[id] = json_object_get_boolean(json_object_object_get(a, "special")) ? 3 : 4;
	}
	for (int id = 0; id < n; id++)
		if (g->types[id] == 0)
			g->types[id] = 5;	/* a gap: unused */
	g->merges = calloc(json_object_array_length(merges), sizeof(char *));
	g->merge_lens = calloc(json_object_array_length(merges), sizeof(uint32_t));
	g->pool = malloc(64 * json_object_array_length(merges) + 1);
	for (size_t i = 0; i < json_object_array_length(merges); i++)
	{
		json_object *m = json_object_array_get_idx(merges, i);

		g->merges[i] = g->pool + used;
		if (json_object_is_type(m, json_type_string))
			used += sprintf(g->pool + used, "%s", json_object_get_string(m));
		else
			used += sprintf(g->pool + used, "%s %s",
							json_object_get_string(json_object_array_get_idx(m, 0)),
							json_object_get_string(json_object_array_get_idx(m, 1)));
		g->merge_lens[i] = (uint32_t) (g->pool + used - g->merges[i]);
	}
	g->v = (TokenizerVocab) {.model = "gpt2", .pre = pre, .n_tokens = n,
		.tokens = g->tokens, .token_lens = g->lens, .token_types = g->types,
		.n_merges = (int) json_object_array_length(merges), .merges = g->merges,
		.merge_lens = g->merge_lens, .bos_id = -1, .eos_id = -1, .unk_id = -1,
	.pad_id = -1, .add_bos = -1, .add_eos = -1, .add_space_prefix = -1};
	return true;
}

static Tokenizer *
load_gguf(GgufArrays *g, int vocab_size)
{
	TokenizerSource src = {.kind = TOKSRC_GGUF, .vocab_size = vocab_size, .vocab = g->v,
	.bos_id = -1, .eos_id = -1};
	CoreError	err = {0};
	Tokenizer  *t = tok_from_source(&src, &err);

	CHECKF(t != NULL, "GGUF %s: %s", g->v.model, err.message);
	return t;
}

static void
test_gguf(void)
{
	struct
	{
		const char *dir;
		const char *pre;
		int			vocab;
		int32_t		bos;
		bool		adds_bos;
	}			cases[] = {
		{"gpt2", "gpt-2", 50257, 50256, false},
		{"llama3", "llama-bpe", 128256, 128000, true},
		{"qwen3", "qwen2", 151936, -1, false},
	};
	/* HF puts a space before each stretch between added tokens; GGUF not */
	static const int legacy_lines[] = {128, 129, 130, 131, 132, 0};
	GgufArrays	g;
	Tokenizer  *t;

	if (!gguf_from_llama2c(&g, DATA "llama2/tokenizer.bin.gz", 32000))
		CHECKF(false, "cannot read llama2/tokenizer.bin.gz");
	else if ((t = load_gguf(&g, 32000)) != NULL)
	{
		CHECK(tok_bos(t) == 1 && tok_eos(t) == 2 && tok_adds_bos(t));
		compare_corpus("GGUF llama", t, DATA "llama2.ids", legacy_lines);
		check_round_trip("GGUF llama", t);
		tok_free(t);
	}
	free_gguf(&g);
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++)
	{
		char		ids[256];
		char		name[64];

		snprintf(ids, sizeof(ids), DATA "%s.ids", cases[i].dir);
		snprintf(name, sizeof(name), "GGUF %s", cases[i].pre);
		if (!gguf_from_json(&g, cases[i].dir, cases[i].pre))
			CHECKF(false, "%s: cannot read tokenizer.json", cases[i].dir);
		else if ((g.v.bos_id = cases[i].bos, t = load_gguf(&g, cases[i].vocab)) != NULL)
		{
			CHECK(tok_adds_bos(t) == cases[i].adds_bos && tok_bos(t) == cases[i].bos);
			compare_corpus(name, t, ids, NULL);
			check_round_trip(name, t);
			tok_free(t);
		}
		free_gguf(&g);
	}
}

/*
 * A GGUF may hold an added token whose bytes are not UTF-8: it is not
 * searched for, since it would cut a character of the text in two (the
 * stretch after it began mid-character: an endless loop for SentencePiece,
 * a read past the text for byte level).  The text encodes as without it.
 */
static void
check_added_token_not_utf8(const char *name, GgufArrays *g, int32_t id,
						   const char *bytes, int vocab_size)
{
	static const char text[] = "caf\xc3\xa9 na\xc3\xafve \xe2\x82\xac" "5";
	Tokenizer  *plain = load_gguf(g, vocab_size);
	Tokenizer  *odd;
	int32_t    *want = NULL,
			   *got = NULL;
	int			n_want,
				n_got;

	g->tokens[id] = bytes;
	g->lens[id] = (uint32_t) strlen(bytes);
	if (plain == NULL || (odd = load_gguf(g, vocab_size)) == NULL)
	{
		tok_free(plain);
		return;
	}
	n_want = tok_encode(plain, text, sizeof(text) - 1, &want);
	n_got = tok_encode(odd, text, sizeof(text) - 1, &got);
	CHECKF(n_want > 0 && same_ids(want, n_want, got, n_got),
		   "%s: an added token \"\\x%02x\" changes the encoding (%d ids, %d)", name,
		   (uint8_t) bytes[0], n_want, n_got);
	free(want);
	free(got);
	tok_free(odd);
	tok_free(plain);
}

static void
test_added_token_not_utf8(void)
{
	GgufArrays	g;

	/* </s>, a control token, as a lone lead byte */
	if (!gguf_from_llama2c(&g, DATA "llama2/tokenizer.bin.gz", 32000))
		CHECKF(false, "cannot read llama2/tokenizer.bin.gz");
	else
		check_added_token_not_utf8("GGUF llama", &g, 2, "\xc3", 32000);
	free_gguf(&g);
	/* <|endoftext|>, a control token, as a lone continuation byte */
	if (!gguf_from_json(&g, "gpt2", "gpt-2"))
		CHECKF(false, "gpt2: cannot read tokenizer.json");
	else
		check_added_token_not_utf8("GGUF gpt-2", &g, 50256, "\xa9", 50257);
	free_gguf(&g);
}

/* GPT-2's byte-to-character map, written again here. */
static int
byte_char(int b)
{
	int			n = 0;

	if ((b >= '!' && b <= '~') || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE && b <= 0xFF))
		return b;
	for (int c = 0; c < b; c++)
		if (!((c >= '!' && c <= '~') || (c >= 0xA1 && c <= 0xAC) || (c >= 0xAE && c <= 0xFF)))
			n++;
	return 256 + n;
}

/* Append the JSON string of byte b's character (escaped when needed). */
static int
put_byte_char(char *out, int b)
{
	int			c = byte_char(b);

	if (c == '"' || c == '\\')
		return sprintf(out, "\\%c", c);
	return sprintf(out, "\\u%04x", c);
}

/*
 * A small byte-level tokenizer.json: the 256 bytes (ids 0..255), then
 * "he" 256, "ll" 257, "hell" 258, "hello" 259 by the merges "h e", "l l",
 * "he ll", "hell o" (the last as a pair array); model_extra, normalizer,
 * pre_tokenizer and added are spliced in as given.
 */
static char *
mini_json(const char *model_type, const char *model_extra, const char *normalizer,
		  const char *pre_tokenizer, const char *added)
{
	char	   *j = malloc(1 << 16);
	int			n = 0;

	n += sprintf(j + n, "{\"version\": \"1.0\", \"added_tokens\": [%s], "
				 "\"normalizer\": %s, \"pre_tokenizer\": %s, "
				 "\"model\": {\"type\": \"%s\", %s \"vocab\": {", added, normalizer,
				 pre_tokenizer, model_type, model_extra);
	for (int b = 0; b < 256; b++)
	{
		j[n++] = '"';
		n += put_byte_char(j + n, b);
		n += sprintf(j + n, "\": %d, ", b);
	}
	n += sprintf(j + n, "\"he\": 256, \"ll\": 257, \"hell\": 258, \"hello\": 259}, "
				 "\"merges\": [\"h e\", \"l l\", \"he ll\", [\"hell\", \"o\"]]}}");
	return j;
}

static const char BYTE_LEVEL[] =
	"{\"type\": \"ByteLevel\", \"add_prefix_space\": false, \"use_regex\": true}";

/* tok_from_source on a tokenizer.json; NULL, with the message in err. */
static Tokenizer *
from_json(const char *json, int vocab_size, CoreError *err)
{
	TokenizerSource src = {.kind = TOKSRC_HF, .data = json, .len = strlen(json),
	.vocab_size = vocab_size, .bos_id = -1, .eos_id = -1};

	memset(err, 0, sizeof(*err));
	return tok_from_source(&src, err);
}

static void
expect_refused(const char *what, char *json, int vocab_size, const char *needle)
{
	CoreError	err;
	Tokenizer  *t = from_json(json, vocab_size, &err);

	CHECKF(t == NULL && err.kind == CORE_ERR_INVALID_INPUT && strstr(err.message, needle),
		   "%s: accepted, or message \"%s\" without \"%s\"", what, err.message, needle);
	tok_free(t);
	free(json);
}

static void
test_small_and_refused(void)
{
	CoreError	err;
	char	   *json = mini_json("BPE", "", "null", BYTE_LEVEL,
								 "{\"id\": 260, \"content\": \"<|end|>\", \"special\": true},"
								 "{\"id\": 261, \"content\": \"<x>\", \"special\": false}");
	Tokenizer  *t = from_json(json, 0, &err);
	int32_t    *ids;
	int			n;
	size_t		len;
	char	   *text;

	CHECKF(t != NULL, "small tokenizer.json: %s", err.message);
	if (t != NULL)
	{
		n = tok_encode(t, "hello<|end|>hell<x>", 19, &ids);
		CHECK(same_ids(ids, n, (const int32_t[]) {259, 260, 258, 261}, 4));
		text = tok_decode(t, ids, (size_t) n, &len);
		CHECK(len == 12 && memcmp(text, "hellohell<x>", 12) == 0);
		free(text);
		free(ids);
		CHECK(tok_vocab_size(t) == 262 && tok_bos(t) == -1 && !tok_adds_bos(t));
		/* ids out of range and special tokens decode to nothing */
		text = tok_decode(t, (const int32_t[]) {-1, 262, 260, INT32_MAX}, 4, &len);
		CHECK(text != NULL && len == 0);
		free(text);
		/* an incomplete character at the end is left out by the prefix form */
		n = tok_encode_prefix(t, "he\xc3", 3, 10, &ids);
		CHECK(same_ids(ids, n, (const int32_t[]) {256}, 1));
		free(ids);
		n = tok_encode_prefix(t, "hello hello", 11, 1, &ids);
		CHECK(same_ids(ids, n, (const int32_t[]) {259}, 1));
		free(ids);
		/* a cut character decodes to U+FFFD, as the references do */
		text = tok_decode(t, (const int32_t[]) {104, 0xc3, 104}, 3, &len);
		CHECK(len == 5 && memcmp(text, "h\xEF\xBF\xBDh", 5) == 0);
		free(text);
		check_round_trip("small", t);
		tok_free(t);
	}
	free(json);

	expect_refused("Unigram", mini_json("Unigram", "", "null", BYTE_LEVEL, ""), 0, "Unigram");
	expect_refused("WordPiece", mini_json("WordPiece", "", "null", BYTE_LEVEL, ""), 0,
				   "WordPiece");
	expect_refused("NFKC", mini_json("BPE", "", "{\"type\": \"NFKC\"}", BYTE_LEVEL, ""), 0,
				   "NFKC");
	expect_refused("Lowercase", mini_json("BPE", "", "{\"type\": \"Sequence\", \"normalizers\": "
										  "[{\"type\": \"Lowercase\"}]}", BYTE_LEVEL, ""),
				   0, "Lowercase");
	expect_refused("Whitespace", mini_json("BPE", "", "null", "{\"type\": \"Whitespace\"}", ""),
				   0, "Whitespace");
	expect_refused("no pre-tokenizer", mini_json("BPE", "", "null", "null", ""), 0,
				   "pre_tokenizer");
	expect_refused("Removed", mini_json("BPE", "", "null", "{\"type\": \"Sequence\", "
										"\"pretokenizers\": [{\"type\": \"Split\", \"pattern\": "
										"{\"Regex\": \"a\"}, \"behavior\": \"Removed\"}, " "{\"type\": \"ByteLevel\", \"use_regex\": false}]}", ""),
				   0, "Removed");
	expect_refused("bad regex", mini_json("BPE", "", "null", "{\"type\": \"Sequence\", "
										  "\"pretokenizers\": [{\"type\": \"Split\", \"pattern\": "
										  "{\"Regex\": \"(a\"}, \"behavior\": \"Isolated\"}, " "{\"type\": \"ByteLevel\", \"use_regex\": false}]}", ""),
				   0, "does not compile");
	expect_refused("add_prefix_space", mini_json("BPE", "", "null",
												 "{\"type\": \"ByteLevel\", \"add_prefix_space\": true}", ""),
				   0, "add_prefix_space");
	expect_refused("lstrip", mini_json("BPE", "", "null", BYTE_LEVEL,
									   "{\"id\": 260, \"content\": \"<m>\", \"lstrip\": true}"),
				   0, "lstrip");
	expect_refused("dropout", mini_json("BPE", "\"dropout\": 0.1,", "null", BYTE_LEVEL, ""), 0,
				   "dropout");
	expect_refused("vocab_size", mini_json("BPE", "", "null", BYTE_LEVEL, ""), 100,
				   "bad vocabulary size");
	json = mini_json("BPE", "", "null", BYTE_LEVEL, "");
	memcpy(strstr(json, "\"h e\""), "\"h z\"", 5);
	expect_refused("merge of no token", json, 0, "merge 0");
	expect_refused("not JSON", strdup("{\"model\": "), 0, "JSON");
	expect_refused("no model", strdup("{\"normalizer\": null}"), 0, "missing field model");

	{
		GgufArrays	g = {0};
		TokenizerSource src = {.kind = TOKSRC_GGUF, .bos_id = -1, .eos_id = -1};

		if (gguf_from_json(&g, "gpt2", "falcon"))
		{
			src.vocab = g.v;
			CHECK(tok_from_source(&src, &err) == NULL && strstr(err.message, "\"falcon\""));
			src.vocab.model = "bert";
			CHECK(tok_from_source(&src, &err) == NULL && strstr(err.message, "\"bert\""));
		}
		free_gguf(&g);
	}
	{
		Bytes		bin = read_file("test/data/stories260K/tok512.bin");
		TokenizerSource src = {.kind = TOKSRC_LLAMA2C, .data = bin.data, .len = bin.len,
		.vocab_size = 600, .bos_id = -1, .eos_id = -1};

		CHECK(tok_from_source(&src, &err) == NULL && strstr(err.message, "truncated"));
		src.vocab_size = 500;
		CHECK(tok_from_source(&src, &err) == NULL && strstr(err.message, "more than"));
		src.vocab_size = 0;
		CHECK(tok_from_source(&src, &err) == NULL && strstr(err.message, "vocabulary size"));
		free(bin.data);
	}
}

/* The README's invalid sequences, alone and inside "abc" ... "def". */
static void
test_invalid_utf8(const Tokenizer *t)
{
	static const char *const bad[] = {
		"\x80", "\xbf\x41", "\xc3", "\xc3\x28", "\xe2\x82", "\xf0\x9f\x98", "\xc0\xaf",
		"\xc1\xbf", "\xe0\x80\xaf", "\xf0\x80\x80\xaf", "\xed\xa0\x80", "\xed\xbf\xbf",
		"\xf4\x90\x80\x80", "\xf5\x80\x80\x80", "\xf8\x88\x80\x80\x80",
		"\xfc\x84\x80\x80\x80\x80", "\xfe", "\xff",
	};

	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
	{
		char		text[32];
		int32_t    *ids = NULL;
		CoreError	err = {0};
		int			n = tok_encode_checked(t, bad[i], strlen(bad[i]), &ids, &err);

		CHECKF(n == -1 && ids == NULL && err.kind == CORE_ERR_INVALID_INPUT &&
			   strcmp(err.message, "invalid UTF-8 at byte 0") == 0,
			   "bad sequence %zu: %d ids, \"%s\"", i, n, err.message);
		snprintf(text, sizeof(text), "abc%sdef", bad[i]);
		n = tok_encode_checked(t, text, strlen(text), &ids, &err);
		CHECKF(n == -1 && strcmp(err.message, "invalid UTF-8 at byte 3") == 0,
			   "bad sequence %zu inside text: \"%s\"", i, err.message);
		CHECK(tok_encode(t, text, strlen(text), &ids) == -1);
	}
}

/*
 * Long texts: 2 MB of the corpus, whose ids must all be in range, and one
 * word of 200,000 letters, a single pre-token and so a single merge, which
 * must decode to the word (after the space that a SentencePiece dummy
 * prefix puts first).  bpe_merge() is O(n log n); a quadratic one would
 * take minutes here.  bench/units prints the speed.
 */
static void
test_long_text(const Tokenizer *t, const char *name, const char *prefix)
{
	size_t		cap = 1 << 21,
				len = 0,
				prefix_len = strlen(prefix),
				back_len = 0;
	char	   *text = malloc(cap);
	char	   *back;
	int32_t    *ids;
	int			n,
				outside = 0;

	for (size_t k = 0; len < cap - 4096; k = (k + 1) % corpus.n)
	{
		memcpy(text + len, corpus.line[k], corpus.len[k]);
		len += corpus.len[k];
		text[len++] = ' ';
	}
	n = tok_encode(t, text, len, &ids);
	for (int i = 0; i < n; i++)
		outside += ids[i] < 0 || ids[i] >= tok_vocab_size(t);
	CHECKF(n > (int) (len / 8) && outside == 0, "%s: %zu bytes gave %d ids, %d out of range", name,
		   len, n, outside);
	free(ids);
	memset(text, 'a', 200000);
	n = tok_encode(t, text, 200000, &ids);
	back = n > 0 ? tok_decode(t, ids, (size_t) n, &back_len) : NULL;
	CHECKF(back != NULL && back_len == prefix_len + 200000 &&
		   memcmp(back, prefix, prefix_len) == 0 &&
		   memcmp(back + prefix_len, text, 200000) == 0,
		   "%s: one long word gave %d ids, which decode to %zu other bytes", name, n,
		   back_len);
	free(back);
	free(ids);
	free(text);
}

/* The from-scratch tokenizer through the new entry points. */
static void
test_scratch(void)
{
	const char *texts[] = {"abab abab \xff\xfe", "ab ab"};
	size_t		lens[] = {12, 5};
	CoreError	err = {0};
	Tokenizer  *t = tok_train(texts, lens, 2, 270, SIZE_MAX, NULL, &err);
	int32_t    *ids;
	int			n;

	CHECK(t != NULL);
	if (t == NULL)
		return;
	CHECK(!tok_is_pretrained(t) && !tok_adds_bos(t));
	n = tok_encode_checked(t, texts[0], lens[0], &ids, &err);
	CHECK(n > 0);
	free(ids);
	tok_free(t);
}

int
main(void)
{
	corpus = read_lines(DATA "corpus.txt");
	for (size_t k = 0; k < corpus.n; k++)
	{
		corpus.len[k] = unescape(corpus.line[k], corpus.len[k]);
		corpus.line[k][corpus.len[k]] = '\0';
	}
	CHECKF(corpus.n == CORPUS_LINES, "corpus: %zu lines", corpus.n);
	test_llama2c();
	test_tokenizer_json();
	test_gguf();
	test_added_token_not_utf8();
	test_small_and_refused();
	test_scratch();
	{
		Tokenizer  *sp = load_llama2c(DATA "llama2/tokenizer.bin.gz", 32000);
		Tokenizer  *bl = load_hf("llama3", 0);

		if (sp != NULL && bl != NULL)
		{
			test_invalid_utf8(sp);
			test_invalid_utf8(bl);
			test_long_text(sp, "llama2 tokenizer.bin", " ");
			test_long_text(bl, "llama3", "");
		}
		tok_free(sp);
		tok_free(bl);
	}
	free_lines(&corpus);
	return unit_summary("test_pretrained_tokenizer");
}
