/*
 * fuzz_tokenizer_hf.c - a Hugging Face tokenizer.json as a checkpoint
 * brings it (core/tokenizer_pretrained.h, tok_from_source()).
 *
 * The input is the tokenizer.json.  A tokenizer that loads is used:
 * sample texts and the input itself (when it is valid UTF-8) encode to
 * ids in range, and decode to valid UTF-8; invalid UTF-8 is refused with a
 * reason; every token has bytes; serializing, loading and serializing
 * again gives the same bytes and the copy encodes the same ids.
 */
#include "fuzz.h"

#include "core/tokenizer.h"
#include "core/tokenizer_pretrained.h"

static const char *const samples[] = {
	"Hello world, it's 2024!  caf\xc3\xa9 e\xcc\x81 \xe4\xb8\xad\xe6\x96\x87 \xf0\x9f\x98\x80",
	"  leading\n\n\ttabs <|end|> <s> </s> <x> hello hell he",
	"\xe2\x96\x81 spaces\xe2\x96\x81\xe2\x96\x81 1234567 don't",
	"",
};

/* Bytes of the input that are encoded too. */
#define INPUT_TEXT_MAX 512

static int
encode_checked(const Tokenizer *t, const char *text, size_t len, int32_t **ids)
{
	CoreError	err = {0};
	int			n = tok_encode_checked(t, text, len, ids, &err);

	FUZZ_CHECK(n >= 0 || err.message[0] != '\0', "encoding failed without a reason");
	for (int i = 0; i < n; i++)
		FUZZ_CHECK((*ids)[i] >= 0 && (*ids)[i] < tok_vocab_size(t),
				   "encoding gave id %d (vocabulary %d)", (*ids)[i], tok_vocab_size(t));
	return n;
}

static void
check_text(const Tokenizer *t, const Tokenizer *copy, const char *text, size_t len)
{
	int32_t    *ids = NULL;
	int32_t    *again = NULL;
	int			n = encode_checked(t, text, len, &ids);
	char	   *back;
	size_t		back_len;

	FUZZ_CHECK(n >= 0 || !fuzz_utf8_valid(text, len), "valid text refused");
	if (n < 0)
		return;
	back = tok_decode(t, ids, (size_t) n, &back_len);
	FUZZ_CHECK(back != NULL && fuzz_utf8_valid(back, back_len), "decoding is not UTF-8");
	free(back);
	if (copy != NULL)
	{
		int			m = encode_checked(copy, text, len, &again);

		FUZZ_CHECK(m == n && (n == 0 || memcmp(ids, again, sizeof(int32_t) * n) == 0),
				   "the loaded copy encodes differently");
		free(again);
	}
	free(ids);
}

static Tokenizer *
check_reserialize(const Tokenizer *t)
{
	size_t		len1,
				len2;
	void	   *blob1 = tok_serialize(t, &len1);
	CoreError	err = {0};
	Tokenizer  *again;
	void	   *blob2;

	FUZZ_CHECK(blob1 != NULL, "serializing failed");
	again = tok_deserialize(blob1, len1, &err);
	FUZZ_CHECK(again != NULL, "its own blob does not load: %s", err.message);
	blob2 = tok_serialize(again, &len2);
	FUZZ_CHECK(blob2 != NULL && len1 == len2 && memcmp(blob1, blob2, len1) == 0,
			   "serialized again, %zu bytes become %zu other bytes", len1, len2);
	free(blob1);
	free(blob2);
	return again;
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char	   *json = fuzz_copy(data, size, false);
	TokenizerSource src = {.kind = TOKSRC_HF, .data = json, .len = size,
	.bos_id = -1, .eos_id = -1};
	CoreError	err = {0};
	Tokenizer  *t = tok_from_source(&src, &err);
	Tokenizer  *copy;

	if (t == NULL)
		FUZZ_CHECK(err.message[0] != '\0', "rejected without a reason");
	else
	{
		for (int32_t id = 0; id < tok_vocab_size(t); id++)
		{
			size_t		len;

			FUZZ_CHECK(tok_token(t, id, &len) != NULL, "no bytes for id %d", id);
		}
		copy = check_reserialize(t);
		for (size_t i = 0; i < sizeof(samples) / sizeof(samples[0]); i++)
			check_text(t, copy, samples[i], strlen(samples[i]));
		check_text(t, copy, json, size < INPUT_TEXT_MAX ? size : INPUT_TEXT_MAX);
		check_text(t, copy, "abc\xff", 4);
		tok_free(copy);
		tok_free(t);
	}
	free(json);
	return 0;
}
