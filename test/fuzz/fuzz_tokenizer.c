/*
 * fuzz_tokenizer.c - the tokenizer blob as stored in a bytea column
 * (core/tokenizer.h, tok_deserialize()).
 *
 * The input is a serialized tokenizer; its last four bytes are overwritten
 * with the CRC-32C of the rest, so that mutations reach the table checks
 * behind the checksum.  A tokenizer that loads is then used, so that one
 * loaded but inconsistent is caught too.  Checks: every id in range;
 * decode(encode(x)) == x byte for byte; special tokens never come out of
 * encoding and decode to nothing; a token is at most TOK_MAX_TOKEN_BYTES;
 * serializing what was loaded gives a blob that loads and serializes to
 * the same bytes again.
 *
 * A pretrained checkpoint's tokenizer (magic "DSTP") is checked for what
 * it promises instead: ids in range, valid UTF-8 out of decoding, invalid
 * UTF-8 refused, every token with bytes, the same serialization again.
 */
#include "fuzz.h"

#include "core/tokenizer.h"
#include "core/tokenizer_pretrained.h"

/* Texts to encode: words, digits, contractions, UTF-8, junk, a NUL. */
static const char sample[] =
	"The answer is (a) 42.  caf\xc3\xa9 don't\t\r\n  x \xff\xfe\x80\0 ''s Q:";

/* Bytes of the input itself that are encoded too. */
#define INPUT_TEXT_MAX 512

static bool
is_special(const Tokenizer *t, int32_t id)
{
	return id == tok_pad(t) || id == tok_bos(t) || id == tok_eos(t) ||
		id == tok_sep(t);
}

static void
check_round_trip(const Tokenizer *t, const char *text, size_t len)
{
	int32_t    *ids;
	int			n = tok_encode(t, text, len, &ids);
	char	   *back;
	size_t		back_len;

	FUZZ_CHECK(n >= 0, "encoding %zu bytes failed", len);
	for (int i = 0; i < n; i++)
		FUZZ_CHECK(ids[i] >= 0 && ids[i] < tok_vocab_size(t) &&
				   !is_special(t, ids[i]),
				   "encoding gave id %d (vocabulary %d)", ids[i], tok_vocab_size(t));
	back = tok_decode(t, ids, (size_t) n, &back_len);
	FUZZ_CHECK(back != NULL, "decoding failed");
	FUZZ_CHECK(back_len == len && memcmp(back, text, len) == 0,
			   "%zu bytes decode to %zu other bytes", len, back_len);
	free(back);
	free(ids);
}

static void
check_tokens(const Tokenizer *t)
{
	int			vocab = tok_vocab_size(t);
	int32_t		outside[] = {-1, vocab, INT32_MAX, INT32_MIN};
	char	   *text;
	size_t		len;

	FUZZ_CHECK(vocab >= TOK_MIN_VOCAB && vocab <= TOK_MAX_VOCAB, "vocabulary %d", vocab);
	for (int32_t id = 0; id < vocab; id++)
	{
		size_t		token_len = 0;
		const char *token = tok_token(t, id, &token_len);

		FUZZ_CHECK(token != NULL, "no bytes for id %d", id);
		text = tok_decode(t, &id, 1, &len);
		FUZZ_CHECK(text != NULL, "decoding id %d failed", id);
		if (is_special(t, id))
			FUZZ_CHECK(len == 0, "special token %d decodes to %zu bytes", id, len);
		else
			FUZZ_CHECK(len == token_len && len >= 1 && len <= TOK_MAX_TOKEN_BYTES &&
					   memcmp(text, token, len) == 0,
					   "id %d: token of %zu bytes, decodes to %zu", id, token_len, len);
		free(text);
	}
	text = tok_decode(t, outside, sizeof(outside) / sizeof(outside[0]), &len);
	FUZZ_CHECK(text != NULL && len == 0, "ids out of range decode to %zu bytes", len);
	free(text);
}

/* Serialize t, load that, serialize again: the same bytes. */
static void
check_reserialize(const Tokenizer *t)
{
	size_t		len1,
				len2;
	void	   *blob1 = tok_serialize(t, &len1);
	Tokenizer  *again;
	void	   *blob2;
	CoreError	err = {0};

	FUZZ_CHECK(blob1 != NULL, "serializing failed");
	again = tok_deserialize(blob1, len1, &err);
	FUZZ_CHECK(again != NULL, "its own blob does not load: %s", err.message);
	blob2 = tok_serialize(again, &len2);
	FUZZ_CHECK(blob2 != NULL && len1 == len2 && memcmp(blob1, blob2, len1) == 0,
			   "serialized again, %zu bytes become %zu other bytes", len1, len2);
	free(blob2);
	tok_free(again);
	free(blob1);
}

/* Encode valid UTF-8 text: ids in range, and they decode to valid UTF-8. */
static void
check_pretrained_text(const Tokenizer *t, const char *text, size_t len)
{
	int32_t    *ids;
	CoreError	err = {0};
	int			n = tok_encode_checked(t, text, len, &ids, &err);
	char	   *back;
	size_t		back_len;

	FUZZ_CHECK(n >= 0, "encoding %zu bytes of valid UTF-8 failed: %s", len, err.message);
	for (int i = 0; i < n; i++)
		FUZZ_CHECK(ids[i] >= 0 && ids[i] < tok_vocab_size(t),
				   "encoding gave id %d (vocabulary %d)", ids[i], tok_vocab_size(t));
	back = tok_decode(t, ids, (size_t) n, &back_len);
	FUZZ_CHECK(back != NULL && fuzz_utf8_valid(back, back_len), "decoding is not UTF-8");
	free(back);
	free(ids);
}

static void
check_pretrained(const Tokenizer *t, const uint8_t *data, size_t size)
{
	int32_t    *ids = NULL;
	CoreError	err = {0};
	size_t		text_len = size < INPUT_TEXT_MAX ? size : INPUT_TEXT_MAX;

	FUZZ_CHECK(tok_vocab_size(t) >= 1 && tok_vocab_size(t) <= TOK_MAX_VOCAB,
			   "vocabulary %d", tok_vocab_size(t));
	for (int32_t id = 0; id < tok_vocab_size(t); id++)
	{
		size_t		len;

		FUZZ_CHECK(tok_token(t, id, &len) != NULL, "no bytes for id %d", id);
	}
	check_pretrained_text(t, sample, 40);
	if (fuzz_utf8_valid((const char *) data, text_len))
		check_pretrained_text(t, (const char *) data, text_len);
	FUZZ_CHECK(tok_encode_checked(t, sample, sizeof(sample) - 1, &ids, &err) == -1 &&
			   err.kind == CORE_ERR_INVALID_INPUT, "invalid UTF-8 accepted");
	check_reserialize(t);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	uint8_t    *blob = (uint8_t *) fuzz_copy(data, size, false);
	CoreError	err = {0};
	Tokenizer  *t;

	if (size >= 8)
		fuzz_reseal(blob, size - 4);
	t = tok_deserialize(blob, size, &err);
	if (t == NULL)
		FUZZ_CHECK(err.message[0] != '\0', "rejected without a reason");
	else if (tok_is_pretrained(t))
	{
		check_pretrained(t, data, size);
		tok_free(t);
	}
	else
	{
		check_tokens(t);
		check_round_trip(t, sample, sizeof(sample) - 1);
		check_round_trip(t, (const char *) data,
						 size < INPUT_TEXT_MAX ? size : INPUT_TEXT_MAX);
		check_reserialize(t);
		tok_free(t);
	}
	free(blob);
	return 0;
}
