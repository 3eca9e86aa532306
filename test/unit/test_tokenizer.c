/*
 * test_tokenizer.c - unit tests of the byte-level BPE tokenizer and CRC-32C.
 *
 * Run from the repository root.  The corpus is the CommonsenseQA training
 * file (../shared/data/cqa_train.jsonl, its lines used as raw text), which
 * must be there (the CI copies ../shared next to the clone): without it the
 * run fails, and goes on with generated English-like text so that the other
 * checks still run.  `test_tokenizer serial` runs only the deserialization
 * robustness tests, quick enough for valgrind.  Speed figures are in
 * bench/units (bench/README.md), not here.
 */
#include "core/crc32c.h"
#include "core/tokenizer.h"

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "corpus.h"
#include "unit.h"

#define CQA_PATH "../shared/data/cqa_train.jsonl"
#define TRAIN_BYTES (5 << 20)	/* corpus of the trained tokenizer */

static uint64_t rng_state = 0x9E3779B97F4A7C15ull;

/* xorshift64*: fixed seed, so every run tests the same strings. */
static uint64_t
rng(void)
{
	rng_state ^= rng_state >> 12;
	rng_state ^= rng_state << 25;
	rng_state ^= rng_state >> 27;
	return rng_state * 0x2545F4914F6CDD1Dull;
}

/*
 * About `bytes` of sentences, one per line: common words, numbers and
 * made-up words of two to four syllables, so merges keep finding pairs.
 */
static void
generate_corpus(Corpus *c, size_t bytes)
{
	static const char *const words[] = {
		"the", "a", "person", "would", "likely", "go", "to", "store", "buy",
		"food", "answer", "must", "be", "something", "that", "is", "used",
		"for", "of", "above", "choices", "only", "has", "do", "with", "where",
		"what", "they", "people", "house", "water", "don't", "it's", "apples",
		"caf\xc3\xa9", "na\xc3\xafve", "\xe6\x97\xa5\xe6\x9c\xac",
	};
	static const char *const syllables[] = {
		"ba", "ce", "di", "fo", "gu", "ka", "le", "mi", "no", "pu", "ra", "se",
		"ti", "vo", "wu", "xa", "ye", "zi", "bro", "cla", "dre", "fli", "gro",
		"pla", "tra", "str", "ing", "ion", "er", "an", "en", "on",
	};
	size_t		n_words = sizeof(words) / sizeof(words[0]);
	size_t		n_syllables = sizeof(syllables) / sizeof(syllables[0]);
	size_t		len = 0;

	c->buf = malloc(bytes + 256);
	while (len < bytes)
	{
		int			n = 4 + (int) (rng() % 12);

		for (int i = 0; i < n; i++)
		{
			int			kind = (int) (rng() % 10);

			if (i > 0)
				c->buf[len++] = ' ';
			if (kind == 0)
				len += sprintf(c->buf + len, "%d", (int) (rng() % 1000));
			else if (kind < 5)
				len += sprintf(c->buf + len, "%s", words[rng() % n_words]);
			else
				for (int k = 2 + (int) (rng() % 3); k > 0; k--)
					len += sprintf(c->buf + len, "%s",
								   syllables[rng() % n_syllables]);
		}
		len += sprintf(c->buf + len, "%s\n", rng() % 2 ? "." : "?");
	}
	corpus_split_lines(c, len);
}

static void
load_corpus(Corpus *c)
{
	bool		loaded = corpus_load_file(c, CQA_PATH);

	CHECKF(loaded && c->n > 9000, "cannot read %s, or it lacks lines: the corpus of these "
		   "tests (run from the repository root, with ../shared next to the clone)",
		   CQA_PATH);
	if (loaded)
		printf("corpus: %s, %zu lines, %zu bytes\n", CQA_PATH, c->n, c->bytes);
	else
	{
		generate_corpus(c, 8 << 20);
		printf("corpus: %zu generated lines, %zu bytes\n", c->n, c->bytes);
	}
}

/* Number of leading lines of c holding at least `bytes` bytes (or all). */
static size_t
lines_for(const Corpus *c, size_t bytes)
{
	size_t		n = 0;
	size_t		total = 0;

	while (n < c->n && total < bytes)
		total += c->lens[n++];
	return n;
}

static Tokenizer *
train(const char *const *texts, const size_t *lens, size_t n, int vocab_size)
{
	CoreError	err = {0};
	Tokenizer  *t = tok_train(texts, lens, n, vocab_size, SIZE_MAX, NULL,
							  &err);

	CHECKF(t != NULL, "tok_train: %s", err.message);
	return t;
}

/*
 * Encode and decode s: decoding must give s back, and every id must be a
 * valid, non-special token.  Returns the number of tokens, -1 on failure.
 */
static int
round_trip(const Tokenizer *t, const char *s, size_t len)
{
	int32_t    *ids;
	int			n = tok_encode(t, s, len, &ids);
	bool		ok = n >= 0 && (size_t) n <= len;
	char	   *back;
	size_t		back_len = 0;

	for (int i = 0; ok && i < n; i++)
		ok = ids[i] >= 0 && ids[i] < tok_vocab_size(t) &&
			ids[i] != tok_pad(t) && ids[i] != tok_bos(t) &&
			ids[i] != tok_eos(t) && ids[i] != tok_sep(t);
	back = ok ? tok_decode(t, ids, n, &back_len) : NULL;
	ok = ok && back != NULL && back_len == len && memcmp(back, s, len) == 0;
	free(back);
	free(ids);
	return ok ? n : -1;
}

/* The encoding of s as its tokens' bytes joined by '|'. */
static char *
pieces(const Tokenizer *t, const char *s)
{
	int32_t    *ids;
	int			n = tok_encode(t, s, strlen(s), &ids);
	char	   *out = malloc(2 * strlen(s) + 1);
	char	   *p = out;

	for (int i = 0; i < n; i++)
	{
		size_t		len;
		const char *bytes = tok_token(t, ids[i], &len);

		if (i > 0)
			*p++ = '|';
		memcpy(p, bytes, len);
		p += len;
	}
	*p = '\0';
	free(ids);
	return out;
}

static void
test_crc32c(void)
{
	uint8_t		buf[1000];
	uint32_t	whole;

	CHECK(crc32c(0, "123456789", 9) == 0xE3069283u);
	CHECK(crc32c(0, "", 0) == 0);
	memset(buf, 0, 32);
	CHECK(crc32c(0, buf, 32) == 0x8A9136AAu);
	memset(buf, 0xFF, 32);
	CHECK(crc32c(0, buf, 32) == 0x62A8AB43u);
	for (size_t i = 0; i < sizeof(buf); i++)
		buf[i] = (uint8_t) rng();
	whole = crc32c(0, buf, sizeof(buf));
	for (size_t split = 0; split <= sizeof(buf); split += 37)
		CHECK(crc32c(crc32c(0, buf, split), buf + split,
					 sizeof(buf) - split) == whole);
}

/*
 * Trained on a few copies of one text with room to spare, a tokenizer
 * merges every chunk into one token, so the encoding shows the chunking.
 */
static void
test_pretokenization(void)
{
	const char *text = "Hello world, don't  stop!\n\n  x 84.0 / 2.0 = 42 "
		"caf\xc3\xa9 I'M (a) \"lake\". end\t\t\n";
	const char *expect = "Hello| world|,| don|'t| | stop|!|\n\n | x| |8|4|.|0|"
		" /| |2|.|0| =| |4|2| caf\xc3\xa9| I|'M| (|a|)| \"|lake|\".| end|\t\t\n";
	const char *texts[3] = {text, text, text};
	size_t		lens[3] = {strlen(text), strlen(text), strlen(text)};
	Tokenizer  *t = train(texts, lens, 3, 1000);
	char	   *got;

	if (t == NULL)
		return;
	got = pieces(t, text);
	CHECKF(strcmp(got, expect) == 0, "chunks: %s", got);
	free(got);

	/* Digits are spelled one by one even inside text never seen. */
	got = pieces(t, "12345");
	CHECKF(strcmp(got, "1|2|3|4|5") == 0, "%s", got);
	free(got);
	tok_free(t);
}

static bool
is_space(char c)
{
	return c == ' ' || (c >= '\t' && c <= '\r');
}

/*
 * No merged token crosses a chunk boundary: none holds a digit, and only
 * whitespace runs hold whitespace after their first byte.
 */
static void
test_vocab_respects_chunks(const Tokenizer *t)
{
	int			bad = 0;

	for (int32_t id = TOK_MIN_VOCAB; id < tok_vocab_size(t); id++)
	{
		size_t		len;
		const char *s = tok_token(t, id, &len);
		size_t		spaces = 0;
		size_t		late_spaces = 0;
		size_t		digits = 0;

		for (size_t i = 0; i < len; i++)
		{
			spaces += is_space(s[i]);
			late_spaces += i > 0 && is_space(s[i]);
			digits += s[i] >= '0' && s[i] <= '9';
		}
		if (digits > 0 || (late_spaces > 0 && spaces < len))
			bad++;
	}
	CHECKF(bad == 0, "%d tokens cross a chunk boundary", bad);
}

static void
test_corpus(const Tokenizer *t, const Corpus *c)
{
	size_t		tokens = 0;
	size_t		failures = 0;

	for (size_t i = 0; i < c->n; i++)
	{
		int			n = round_trip(t, c->texts[i], c->lens[i]);

		if (n < 0)
			failures++;
		else
			tokens += n;
	}
	CHECKF(c->n > 0 && failures == 0, "%zu of %zu lines do not round-trip", failures, c->n);
	printf("encode+decode: %zu bytes -> %zu tokens (%.3f tokens per byte)\n",
		   c->bytes, tokens, (double) tokens / c->bytes);
	CHECKF((double) tokens / c->bytes < 0.35, "%.3f tokens per byte",
		   (double) tokens / c->bytes);
}

/* Write a random test string into buf (40000 bytes); return its length. */
static size_t
random_string(char *buf, const Corpus *c)
{
	static const char alphabet[] = {0, '\xFF', '\x80', '\xC3', 'a', 'b', ' ',
	'\n', '\'', '0', '.', 's'};
	size_t		len = rng() % 300;

	switch (rng() % 5)
	{
		case 0:					/* any bytes */
			for (size_t i = 0; i < len; i++)
				buf[i] = (char) rng();
			break;
		case 1:					/* bytes that stress the chunk rules */
			for (size_t i = 0; i < len; i++)
				buf[i] = alphabet[rng() % sizeof(alphabet)];
			break;
		case 2:					/* real text, cut anywhere, bytes changed */
			{
				size_t		line = rng() % c->n;

				len = len < c->lens[line] ? len : c->lens[line];
				memcpy(buf, c->texts[line], len);
				for (size_t i = 0; len > 0 && i < 3; i++)
					buf[rng() % len] = (char) rng();
			}
			break;
		case 3:					/* UTF-8 of random code points, with spaces */
			{
				size_t		i = 0;

				while (i + 4 < len)
				{
					uint32_t	cp = (uint32_t) (rng() % 0x110000);

					if (rng() % 4 == 0)
						buf[i++] = ' ';
					else if (cp < 0x80)
						buf[i++] = (char) cp;
					else if (cp < 0x800)
					{
						buf[i++] = (char) (0xC0 | cp >> 6);
						buf[i++] = (char) (0x80 | (cp & 0x3F));
					}
					else if (cp < 0x10000)
					{
						buf[i++] = (char) (0xE0 | cp >> 12);
						buf[i++] = (char) (0x80 | ((cp >> 6) & 0x3F));
						buf[i++] = (char) (0x80 | (cp & 0x3F));
					}
					else
					{
						buf[i++] = (char) (0xF0 | cp >> 18);
						buf[i++] = (char) (0x80 | ((cp >> 12) & 0x3F));
						buf[i++] = (char) (0x80 | ((cp >> 6) & 0x3F));
						buf[i++] = (char) (0x80 | (cp & 0x3F));
					}
				}
				len = i;
			}
			break;
		default:				/* a long run of one byte */
			len = 1000 + rng() % 39000;
			memset(buf, alphabet[rng() % sizeof(alphabet)], len);
			break;
	}
	return len;
}

static void
test_random_round_trips(const Tokenizer *t, const Corpus *c, int count)
{
	char	   *buf = malloc(40000);
	int			failures = 0;

	for (int i = 0; i < count; i++)
	{
		size_t		len = random_string(buf, c);

		if (round_trip(t, buf, len) < 0)
			failures++;
	}
	CHECKF(failures == 0, "%d of %d random strings do not round-trip",
		   failures, count);
	CHECK(round_trip(t, "", 0) == 0);
	free(buf);
}

static void
test_special_tokens(const Tokenizer *t)
{
	const char *text = "<pad><bos><eos><sep> <|endoftext|>";
	int32_t		ids[4];
	size_t		len;
	char	   *s;
	const char *name;

	CHECK(tok_pad(t) == 256 && tok_bos(t) == 257 && tok_eos(t) == 258 &&
		  tok_sep(t) == 259);
	name = tok_token(t, tok_eos(t), &len);
	CHECK(name != NULL && len == 5 && memcmp(name, "<eos>", 5) == 0);
	CHECK(tok_token(t, -1, &len) == NULL);
	CHECK(tok_token(t, tok_vocab_size(t), &len) == NULL);

	/* Their names in text encode as ordinary bytes (round_trip checks). */
	CHECK(round_trip(t, text, strlen(text)) > 0);

	/* They decode to nothing, as do ids out of range. */
	ids[0] = tok_bos(t);
	ids[1] = 'h';
	ids[2] = tok_vocab_size(t) + 7;
	ids[3] = tok_eos(t);
	s = tok_decode(t, ids, 4, &len);
	CHECK(s != NULL && len == 1 && strcmp(s, "h") == 0);
	free(s);
	s = tok_decode(t, ids, 0, &len);
	CHECK(s != NULL && len == 0 && s[0] == '\0');
	free(s);
}

static void
test_vocab_size(const Corpus *c)
{
	const char *tiny[2] = {"ab", " ab"};
	size_t		tiny_lens[2] = {2, 3};
	CoreError	err = {0};
	Tokenizer  *t;

	t = train(c->texts, c->lens, lines_for(c, 1 << 20), 300);
	CHECK(t != NULL && tok_vocab_size(t) == 300);
	tok_free(t);

	/* Only "ab" occurs twice: one merge, then training stops. */
	t = train(tiny, tiny_lens, 2, 4096);
	CHECK(t != NULL && tok_vocab_size(t) == TOK_MIN_VOCAB + 1);
	tok_free(t);

	t = train(NULL, NULL, 0, 4096);
	CHECK(t != NULL && tok_vocab_size(t) == TOK_MIN_VOCAB);
	CHECK(t != NULL && round_trip(t, "any\0bytes", 9) == 9);
	tok_free(t);

	t = tok_train(tiny, tiny_lens, 2, TOK_MIN_VOCAB - 1, SIZE_MAX, NULL,
				  &err);
	CHECK(t == NULL);
	CHECKF(err.kind == CORE_ERR_INVALID_INPUT && strstr(err.message, "vocab_size") != NULL,
		   "%s", err.message);
	t = tok_train(tiny, tiny_lens, 2, TOK_MAX_VOCAB + 1, SIZE_MAX, NULL,
				  &err);
	CHECK(t == NULL);
	CHECK(tok_train(tiny, tiny_lens, 2, 0, SIZE_MAX, NULL, NULL) == NULL);
}

static bool
same_blob(const Tokenizer *a, const Tokenizer *b)
{
	size_t		la,
				lb;
	void	   *ba = tok_serialize(a, &la);
	void	   *bb = tok_serialize(b, &lb);
	bool		same = ba && bb && la == lb && memcmp(ba, bb, la) == 0;

	free(ba);
	free(bb);
	return same;
}

/* Where the tokens of s start and end: n + 1 offsets in a malloc'd array. */
static size_t *
token_offsets(const Tokenizer *t, const char *s, size_t len, int *n_out)
{
	int32_t    *ids;
	int			n = tok_encode(t, s, len, &ids);
	size_t	   *offsets = malloc((n + 1) * sizeof(size_t));

	offsets[0] = 0;
	for (int i = 0; i < n; i++)
	{
		size_t		bytes;

		tok_token(t, ids[i], &bytes);
		offsets[i + 1] = offsets[i] + bytes;
	}
	free(ids);
	*n_out = n;
	return offsets;
}

/*
 * A run longer than TOK_MAX_CHUNK_BYTES is cut into chunks of that length,
 * and only its last piece leaves a space to the next chunk: 600 spaces and
 * 301 letters are chunks of 256, 256, 87 spaces, then " " and 255
 * letters, then 46 letters.
 */
static void
test_long_runs(void)
{
	char		text[901];
	const char *texts[3] = {text, text, text};
	size_t		lens[3] = {901, 901, 901};
	static const size_t cuts[] = {256, 512, 599, 855, 901};
	Tokenizer  *t;
	size_t	   *offsets;
	int			n;
	int			found = 0;

	memset(text, ' ', 600);
	memset(text + 600, 'a', 301);
	if ((t = train(texts, lens, 3, 2000)) == NULL)
		return;
	offsets = token_offsets(t, text, sizeof(text), &n);
	for (size_t k = 0; k < sizeof(cuts) / sizeof(cuts[0]); k++)
		for (int i = 0; i <= n; i++)
			found += offsets[i] == cuts[k];
	CHECKF(found == 5, "%d of 5 chunk ends are token ends", found);
	for (int i = 0; i < n; i++)
		CHECK(offsets[i + 1] - offsets[i] <= TOK_MAX_CHUNK_BYTES);
	free(offsets);
	tok_free(t);
}

/*
 * tok_encode_prefix() gives the first max_ids ids of the whole encoding,
 * also when the text is cut at tok_prefix_bytes(max_ids): on random
 * strings (long runs among them) and on real lines, for many cuts.
 */
static void
test_encode_prefix(const Tokenizer *t, const Corpus *c)
{
	static const int max_ids[] = {0, 1, 2, 3, 7, 16, 128, 1000};
	char	   *buf = malloc(80000);
	int			bad = 0;
	int			compared = 0;

	for (int round = 0; round < 3000; round++)
	{
		size_t		len = random_string(buf, c);
		int32_t    *all;
		int			n_all;

		if (round % 2 == 1)		/* two strings end to end: runs meet text */
			len += random_string(buf + len, c);
		n_all = tok_encode(t, buf, len, &all);
		for (size_t k = 0; k < sizeof(max_ids) / sizeof(max_ids[0]); k++)
			for (int cut = 0; cut <= 1; cut++)
			{
				size_t		bound = tok_prefix_bytes(max_ids[k]);
				size_t		used = cut && bound < len ? bound : len;
				int32_t    *ids;
				int			n = tok_encode_prefix(t, buf, used, max_ids[k], &ids);
				int			want = n_all < max_ids[k] ? n_all : max_ids[k];

				if (n != want || memcmp(ids, all, want * sizeof(int32_t)) != 0)
					bad++;
				compared++;
				free(ids);
			}
		free(all);
	}
	CHECKF(bad == 0, "%d of %d prefixes differ from the whole encoding cut",
		   bad, compared);
	free(buf);
}

/*
 * The encoder's work is bounded by the ids asked for, not by the text: a
 * text that claims to go on for a gigabyte past a guard page (any read
 * there would crash the test) encodes its first 128 ids from the readable
 * pages, and they are those of the readable part alone.
 */
static void
test_prefix_reads(const Tokenizer *t, const Corpus *c)
{
	size_t		page = (size_t) sysconf(_SC_PAGESIZE);
	size_t		readable = (tok_prefix_bytes(128) + page - 1) / page * page;
	char	   *region = mmap(NULL, readable + page, PROT_READ | PROT_WRITE,
							  MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);

	CHECK(region != MAP_FAILED);
	if (region == MAP_FAILED)
		return;
	CHECK(mprotect(region + readable, page, PROT_NONE) == 0);
	for (int fill = 0; fill < 4; fill++)
	{
		int32_t    *ids;
		int32_t    *expect;
		int			n;
		int			n_expect;

		if (fill == 0)
			memset(region, ' ', readable);	/* one run of whitespace */
		else if (fill == 1)
			memset(region, 'a', readable);	/* one run of letters */
		else if (fill == 2)
			memset(region, '!', readable);	/* one run of other bytes */
		else
			for (size_t i = 0; i < readable; i++)	/* the corpus, end to end */
				region[i] = c->buf[i % c->bytes];
		n = tok_encode_prefix(t, region, readable + ((size_t) 1 << 30), 128, &ids);
		n_expect = tok_encode_prefix(t, region, readable, 128, &expect);
		CHECKF(n == 128 && n_expect == 128 &&
			   memcmp(ids, expect, 128 * sizeof(int32_t)) == 0,
			   "fill %d: %d ids", fill, n);
		free(ids);
		free(expect);
	}
	munmap(region, readable + page);
}

/* A stop check that counts its calls and says yes from the n-th on. */
typedef struct Countdown
{
	long		calls;
	long		stop_at;		/* 0 = never */
} Countdown;

static bool
count_down(void *arg)
{
	Countdown  *c = arg;

	return ++c->calls == c->stop_at || (c->stop_at > 0 && c->calls > c->stop_at);
}

/*
 * Training asks the stop check all along (at least once per 64 KiB of
 * text and once per merge), and stops when told, with nothing leaked
 * (valgrind) and "interrupted" in err.message.
 */
static void
test_train_stop(const Corpus *c)
{
	size_t		n = lines_for(c, 1 << 20);
	size_t		bytes = 0;
	Countdown	count = {0, 0};
	StopCheck	stop = {count_down, &count};
	CoreError	err = {0};
	Tokenizer  *t;

	for (size_t i = 0; i < n; i++)
		bytes += c->lens[i];
	t = tok_train(c->texts, c->lens, n, 1000, SIZE_MAX, &stop, &err);
	CHECKF(t != NULL, "%s", err.message);
	CHECKF(count.calls >= (long) (bytes >> 16) + (1000 - TOK_MIN_VOCAB),
		   "%ld stop checks for %zu bytes and %d merges", count.calls, bytes,
		   1000 - TOK_MIN_VOCAB);
	tok_free(t);

	for (long at = 1; at <= 101; at += 50)
	{
		count.calls = 0;
		count.stop_at = at;
		t = tok_train(c->texts, c->lens, n, 1000, SIZE_MAX, &stop, &err);
		CHECKF(t == NULL && err.kind == CORE_ERR_INTERRUPTED &&
			   strcmp(err.message, "interrupted") == 0 && count.calls == at,
			   "stop at %ld: %s after %ld checks", at, t ? "trained" : err.message,
			   count.calls);
		tok_free(t);
	}
}

/*
 * Training's working memory stays within max_bytes: too little is refused
 * with the figure needed (before the work, or when an allocation would
 * pass it), and any budget that suffices trains the same tokenizer.
 */
static void
test_train_budget(const Corpus *c)
{
	size_t		n = lines_for(c, 1 << 20);
	Tokenizer  *free_run = train(c->texts, c->lens, n, 1000);
	CoreError	err = {0};
	int			refused = 0;
	int			same = 0;
	int			tries = 0;

	for (size_t mb = 1; mb <= 64; mb *= 2, tries++)
	{
		Tokenizer  *t = tok_train(c->texts, c->lens, n, 1000, mb << 20, NULL,
								  &err);

		if (t == NULL)
		{
			refused++;
			CHECKF(err.kind == CORE_ERR_LIMIT &&
				   strstr(err.message, "training the tokenizer needs") != NULL &&
				   strstr(err.message, "MB allowed") != NULL, "%zu MB: %s", mb, err.message);
		}
		else
			same += free_run != NULL && same_blob(t, free_run);
		tok_free(t);
	}
	CHECKF(refused > 0 && same > 0 && refused + same == tries,
		   "%d refused, %d the same, of %d budgets", refused, same, tries);
	tok_free(free_run);
}

/* Same chunks, whatever their order: same tokenizer, to the byte. */
static void
test_determinism(const Corpus *c)
{
	size_t		n = lines_for(c, 1 << 20);
	const char **rev = malloc(n * sizeof(char *));
	size_t	   *rev_lens = malloc(n * sizeof(size_t));
	Tokenizer  *a,
			   *b,
			   *r;

	for (size_t i = 0; i < n; i++)
	{
		rev[i] = c->texts[n - 1 - i];
		rev_lens[i] = c->lens[n - 1 - i];
	}
	a = train(c->texts, c->lens, n, 2000);
	b = train(c->texts, c->lens, n, 2000);
	r = train(rev, rev_lens, n, 2000);
	CHECK(a && b && same_blob(a, b));
	CHECK(a && r && same_blob(a, r));
	tok_free(a);
	tok_free(b);
	tok_free(r);
	free(rev);
	free(rev_lens);
}

static void
test_serialization(const Tokenizer *t, const Corpus *c)
{
	size_t		len;
	void	   *blob = tok_serialize(t, &len);
	CoreError	err = {0};
	Tokenizer  *u = tok_deserialize(blob, len, &err);
	int			differ = 0;
	size_t		n = lines_for(c, 1 << 20);

	CHECKF(u != NULL, "%s", err.message);
	if (u == NULL)
	{
		free(blob);
		return;
	}
	CHECK(tok_vocab_size(u) == tok_vocab_size(t) && tok_eos(u) == tok_eos(t));
	CHECK(same_blob(t, u));
	for (size_t i = 0; i < n; i++)
	{
		int32_t    *x,
				   *y;
		int			nx = tok_encode(t, c->texts[i], c->lens[i], &x);
		int			ny = tok_encode(u, c->texts[i], c->lens[i], &y);

		if (nx != ny || memcmp(x, y, nx * sizeof(int32_t)) != 0)
			differ++;
		free(x);
		free(y);
	}
	CHECKF(differ == 0, "%d lines encode differently once reloaded", differ);
	printf("serialized tokenizer: %zu bytes\n", len);
	tok_free(u);
	free(blob);
}

/* ---------------------------------------------------------------------
 * Deserialization of damaged and hand-made blobs
 * ---------------------------------------------------------------------
 */

static void
put32(uint8_t *p, uint32_t v)
{
	p[0] = (uint8_t) v;
	p[1] = (uint8_t) (v >> 8);
	p[2] = (uint8_t) (v >> 16);
	p[3] = (uint8_t) (v >> 24);
}

/* Recompute the trailing checksum after editing a blob. */
static void
reseal(uint8_t *blob, size_t len)
{
	put32(blob + len - 4, crc32c(0, blob, len - 4));
}

/* Deserialization fails as corrupt, with a message containing `expect` if not NULL. */
static bool
rejected(const void *blob, size_t len, const char *expect)
{
	CoreError	err = {0};
	Tokenizer  *t = tok_deserialize(blob, len, &err);

	if (t != NULL)
	{
		tok_free(t);
		return false;
	}
	if (err.kind != CORE_ERR_CORRUPT || (expect && strstr(err.message, expect) == NULL))
	{
		fprintf(stderr, "unexpected message: \"%s\"\n", err.message);
		return false;
	}
	return true;
}

static void
test_damaged_blobs(const Tokenizer *t)
{
	size_t		len;
	uint8_t    *blob = tok_serialize(t, &len);
	uint8_t    *copy = malloc(len + 1);
	int			bad = 0;
	static const uint8_t flips[] = {0x01, 0x80, 0xFF};

	/* Every truncation, in a buffer of exactly that size (for valgrind). */
	for (size_t cut = 0; cut < len; cut++)
	{
		uint8_t    *part = malloc(cut ? cut : 1);

		memcpy(part, blob, cut);
		if (!rejected(part, cut, cut >= 4 ? "truncated" : NULL))
			bad++;
		free(part);
	}
	CHECKF(bad == 0, "%d truncations accepted or misreported", bad);
	CHECK(rejected(NULL, 0, "truncated"));

	/* Every single-byte corruption: CRC-32C catches all of them. */
	bad = 0;
	for (size_t i = 0; i < len; i++)
		for (size_t k = 0; k < sizeof(flips); k++)
		{
			memcpy(copy, blob, len);
			copy[i] ^= flips[k];
			if (!rejected(copy, len, NULL))
				bad++;
		}
	CHECKF(bad == 0, "%d corruptions accepted", bad);

	memcpy(copy, blob, len);
	copy[len] = 0;
	CHECK(rejected(copy, len + 1, "after the end"));
	memcpy(copy, blob, len);
	copy[len - 1] ^= 1;
	CHECK(rejected(copy, len, "checksum"));
	CHECK(rejected("PK\3\4 zip file", 13, "bad magic"));
	CHECK(rejected("DST", 3, "truncated"));
	free(copy);
	free(blob);
}

/*
 * A hand-made blob in another id layout than training's: specials at
 * 0..3, bytes at 4..259, merges after.  Fields are set from here and the
 * checksum recomputed, so the table checks are what each case exercises.
 */
#define FAKE_MERGES 10

typedef struct FakeBlob
{
	uint32_t	version;
	uint32_t	n_tokens;
	uint32_t	byte_id[256];
	uint32_t	merge[FAKE_MERGES][3];
	uint32_t	n_merges;
	uint32_t	role[4];
	uint32_t	special[4];
	uint32_t	name_len[4];
} FakeBlob;

static void
fake_init(FakeBlob *f)
{
	memset(f, 0, sizeof(*f));
	f->version = 1;
	for (int b = 0; b < 256; b++)
		f->byte_id[b] = 4 + b;
	/* "t" "h" -> "th" (260), "th" "e" -> "the" (261), " " "the" (262) */
	f->n_merges = 3;
	f->merge[0][0] = 4 + 't', f->merge[0][1] = 4 + 'h', f->merge[0][2] = 260;
	f->merge[1][0] = 260, f->merge[1][1] = 4 + 'e', f->merge[1][2] = 261;
	f->merge[2][0] = 4 + ' ', f->merge[2][1] = 261, f->merge[2][2] = 262;
	f->n_tokens = 256 + 3 + 4;
	for (int i = 0; i < 4; i++)
	{
		f->role[i] = i + 1;
		f->special[i] = i;
		f->name_len[i] = 5;
	}
}

static uint8_t *
fake_blob(const FakeBlob *f, size_t *len_out)
{
	size_t		len = 24 + 4 * 256 + 12 * f->n_merges + 4 * 12 + 4;
	uint8_t    *blob,
			   *p;

	for (int i = 0; i < 4; i++)
		len += f->name_len[i];
	blob = calloc(1, len);
	memcpy(blob, "DSTK", 4);
	put32(blob + 4, f->version);
	put32(blob + 8, 1);
	put32(blob + 12, f->n_tokens);
	put32(blob + 16, f->n_merges);
	put32(blob + 20, 4);
	p = blob + 24;
	for (int b = 0; b < 256; b++, p += 4)
		put32(p, f->byte_id[b]);
	for (uint32_t r = 0; r < f->n_merges; r++, p += 12)
		for (int k = 0; k < 3; k++)
			put32(p + 4 * k, f->merge[r][k]);
	for (int i = 0; i < 4; i++)
	{
		put32(p, f->role[i]);
		put32(p + 4, f->special[i]);
		put32(p + 8, f->name_len[i]);
		memset(p + 12, 'x', f->name_len[i]);
		p += 12 + f->name_len[i];
	}
	reseal(blob, len);
	*len_out = len;
	return blob;
}

static bool
fake_rejected(const FakeBlob *f, const char *expect)
{
	size_t		len;
	uint8_t    *blob = fake_blob(f, &len);
	bool		ok = rejected(blob, len, expect);

	free(blob);
	return ok;
}

static void
test_fake_blobs(void)
{
	FakeBlob	f;
	size_t		len;
	uint8_t    *blob;
	CoreError	err = {0};
	Tokenizer  *t;
	char	   *got;

	/* The valid one loads and encodes with its own layout. */
	fake_init(&f);
	blob = fake_blob(&f, &len);
	t = tok_deserialize(blob, len, &err);
	CHECKF(t != NULL, "%s", err.message);
	if (t != NULL)
	{
		int32_t    *ids;
		int			n = tok_encode(t, "the then", 8, &ids);

		CHECK(tok_pad(t) == 0 && tok_sep(t) == 3 && tok_vocab_size(t) == 263);
		CHECK(n == 3 && ids[0] == 261 && ids[1] == 262 && ids[2] == 4 + 'n');
		free(ids);
		got = pieces(t, "the then");
		CHECKF(strcmp(got, "the| the|n") == 0, "%s", got);
		free(got);
		CHECK(round_trip(t, "\xff the\0", 6) == 3);
		tok_free(t);
	}
	free(blob);

	fake_init(&f);
	f.version = 2;
	CHECK(fake_rejected(&f, "version 2"));

	fake_init(&f);
	f.n_tokens++;
	CHECK(fake_rejected(&f, "inconsistent"));

	fake_init(&f);
	f.byte_id[1] = f.byte_id[0];
	CHECK(fake_rejected(&f, "defined twice"));

	fake_init(&f);
	f.byte_id[7] = 9999;
	CHECK(fake_rejected(&f, "out of range"));

	fake_init(&f);
	f.merge[0][0] = 9999;
	CHECK(fake_rejected(&f, "undefined or special"));

	fake_init(&f);
	f.merge[0][0] = 0;			/* <pad> */
	CHECK(fake_rejected(&f, "undefined or special"));

	fake_init(&f);
	f.merge[0][1] = 261;		/* defined by a later merge */
	CHECK(fake_rejected(&f, "undefined or special"));

	fake_init(&f);
	f.merge[1][2] = 260;
	CHECK(fake_rejected(&f, "defined twice"));

	fake_init(&f);
	f.merge[2][0] = 260, f.merge[2][1] = 4 + 'e';
	CHECK(fake_rejected(&f, "repeats a pair"));

	fake_init(&f);
	f.role[3] = 5;
	CHECK(fake_rejected(&f, "role"));

	fake_init(&f);
	f.role[3] = 1;
	CHECK(fake_rejected(&f, "role"));

	fake_init(&f);
	f.name_len[2] = 0;
	CHECK(fake_rejected(&f, "bytes"));

	fake_init(&f);
	f.special[2] = 5;			/* a byte's id */
	CHECK(fake_rejected(&f, "defined twice"));

	/* Doubling "a" nine times makes a 512-byte token. */
	fake_init(&f);
	f.n_merges = 9;
	f.n_tokens = 256 + 9 + 4;
	for (int r = 0; r < 9; r++)
	{
		f.merge[r][0] = f.merge[r][1] = r == 0 ? 4 + 'a' : 260 + r - 1;
		f.merge[r][2] = 260 + r;
	}
	CHECK(fake_rejected(&f, "512 bytes"));
	f.n_merges = 8;
	f.n_tokens = 256 + 8 + 4;
	blob = fake_blob(&f, &len);
	t = tok_deserialize(blob, len, &err);
	CHECKF(t != NULL, "%s", err.message);
	if (t != NULL)
	{
		char		run[600];

		memset(run, 'a', sizeof(run));
		/* 600 = 256 + 256 + 64 + 16 + 8 */
		CHECK(round_trip(t, run, sizeof(run)) == 5);
		tok_free(t);
	}
	free(blob);
}

/*
 * Random edits with the checksum fixed up: whatever gets through the
 * table checks must still encode and decode correctly.
 */
static void
test_fuzz(const Tokenizer *t, int rounds)
{
	size_t		len;
	uint8_t    *blob = tok_serialize(t, &len);
	uint8_t    *copy = malloc(len);
	static const char sample[] = "The answer is (a) 42 caf\xc3\xa9\xff\0 don't";
	int			accepted = 0;
	int			broken = 0;

	for (int i = 0; i < rounds; i++)
	{
		Tokenizer  *u;
		int			edits = 1 + (int) (rng() % 4);

		memcpy(copy, blob, len);
		for (int k = 0; k < edits; k++)
		{
			size_t		pos = rng() % (len - 4);

			/* Small values hit ids and lengths that almost make sense. */
			copy[pos] = (uint8_t) (rng() % 2 ? rng() : rng() % 8);
		}
		reseal(copy, len);
		u = tok_deserialize(copy, len, NULL);
		if (u == NULL)
			continue;
		accepted++;
		if (round_trip(u, sample, sizeof(sample) - 1) < 0)
			broken++;
		tok_free(u);
	}
	CHECKF(broken == 0, "%d accepted fuzzed blobs do not round-trip", broken);
	printf("fuzz: %d of %d edited blobs accepted, all consistent\n",
		   accepted, rounds);
	free(copy);
	free(blob);
}

/* The deserialization tests on a small tokenizer; what valgrind runs. */
static void
test_deserialization(const Corpus *c)
{
	Tokenizer  *small = train(c->texts, c->lens, lines_for(c, 100000), 300);

	if (small == NULL)
		return;
	test_damaged_blobs(small);
	test_fake_blobs();
	test_fuzz(small, 20000);
	tok_free(small);
}

int
main(int argc, char **argv)
{
	Corpus		corpus;
	Tokenizer  *t;
	size_t		n;

	load_corpus(&corpus);
	test_crc32c();
	if (argc > 1 && strcmp(argv[1], "serial") == 0)
	{
		test_deserialization(&corpus);
		corpus_free(&corpus);
		return unit_summary("tokenizer (serialization)");
	}

	test_pretokenization();
	test_long_runs();

	n = lines_for(&corpus, TRAIN_BYTES);
	t = train(corpus.texts, corpus.lens, n, 4096);
	if (t != NULL)
	{
		CHECK(tok_vocab_size(t) == 4096);
		test_vocab_respects_chunks(t);
		test_corpus(t, &corpus);
		test_random_round_trips(t, &corpus, 5000);
		test_special_tokens(t);
		test_encode_prefix(t, &corpus);
		test_prefix_reads(t, &corpus);
		test_serialization(t, &corpus);
		tok_free(t);
	}
	test_vocab_size(&corpus);
	test_train_stop(&corpus);
	test_train_budget(&corpus);
	test_determinism(&corpus);
	test_deserialization(&corpus);
	corpus_free(&corpus);
	return unit_summary("tokenizer");
}
