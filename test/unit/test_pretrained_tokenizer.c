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
	free_lines(&corpus);
	return unit_summary("test_pretrained_tokenizer");
}
