/*
 * fuzz_model_header.c - the chunked model format (core/model_io.h,
 * version 2: model_loader_begin/feed/finish).
 *
 * The input is u32 header_len, a header of that many bytes, then the data.
 * The header's two checksums (of the data, then of the header) are
 * overwritten with the right ones so that mutations reach the checks
 * behind them; a header announcing more data than the input holds is
 * skipped, so that a few bytes cannot ask for gigabytes.  The data is fed
 * in chunks of 1 to 64 bytes (by its first byte).  A model that loads must
 * save to the same header and data, and is run: two candidates scored and
 * a few tokens generated.
 */
#include "fuzz.h"

#include "core/model_io.h"
#include "core/util.h"

static void
check_saved_again(const Model *model, const uint8_t *dtypes,
				  const uint8_t *header, size_t header_len,
				  const uint8_t *data, size_t data_len)
{
	size_t		len;
	uint8_t    *again = model_save_header(model, dtypes, crc32c(0, data, data_len), &len);
	uint8_t    *data_again = malloc(data_len + 1);

	if (again == NULL || data_again == NULL)
		abort();
	FUZZ_CHECK(len == header_len && memcmp(again, header, len) == 0,
			   "saved again, the header differs (%zu bytes, was %zu)", len, header_len);
	FUZZ_CHECK(model_data_bytes(model, dtypes) == data_len, "data size differs");
	model_data_read(model, dtypes, 0, data_again, data_len);
	FUZZ_CHECK(memcmp(data_again, data, data_len) == 0, "saved again, the data differs");
	free(again);
	free(data_again);
}

static void
run(const Model *model)
{
	int			vocab = model->config.vocab_size;
	int32_t		prefix[1] = {vocab - 1};
	int32_t		one[1] = {0};
	const int32_t *candidates[2] = {one, prefix};
	int			lens[2] = {1, 1};
	double		scores[2];
	int32_t		out[3];
	CoreError	err = {0};
	int			n;

	FUZZ_CHECK(model_score_candidates(model, prefix, 1, candidates, lens, 2, scores,
									  &err), "scoring failed: %s", err.message);
	n = model_generate_greedy(model, prefix, 1, 3, 0, out, NULL, &err);
	FUZZ_CHECK(n >= 0 && n <= 3, "generating failed (%d): %s", n, err.message);
}

int
LLVMFuzzerInitialize(int *argc, char ***argv)
{
	model_set_threads(1);
	return 0;
}

int
LLVMFuzzerTestOneInput(const uint8_t *input, size_t size)
{
	size_t		header_len;
	uint8_t    *header;
	const uint8_t *data;
	size_t		data_len;
	size_t		chunk;
	CoreError	err = {0};
	ModelLoader *loader;
	uint8_t    *dtypes = NULL;
	Model	   *model;

	if (size < 4 || (header_len = le_get_u32(input)) > size - 4 || header_len < 16)
		return 0;
	header = (uint8_t *) fuzz_copy(input + 4, header_len, false);
	data = input + 4 + header_len;
	data_len = size - 4 - header_len;
	if (le_get(header + header_len - 16, 8) > data_len)
	{
		free(header);
		return 0;
	}
	fuzz_put_u32(header + header_len - 8, crc32c(0, data, data_len));
	fuzz_reseal(header, header_len - 4);
	chunk = data_len > 0 ? 1 + data[0] % 64 : 1;

	loader = model_loader_begin(header, header_len, &err);
	if (loader == NULL)
	{
		FUZZ_CHECK(err.message[0] != '\0', "rejected without a reason");
		free(header);
		return 0;
	}
	dtypes = (uint8_t *) fuzz_copy(model_loader_dtypes(loader),
								   strlen((const char *) model_loader_dtypes(loader)), true);
	for (size_t off = 0; off < data_len; off += chunk)
		if (!model_loader_feed(loader, data + off, data_len - off < chunk ? data_len - off : chunk,
							   &err))
		{
			FUZZ_CHECK(err.message[0] != '\0', "feeding failed without a reason");
			model_loader_free(loader);
			loader = NULL;
			break;
		}
	model = loader != NULL ? model_loader_finish(loader, &err) : NULL;
	if (model != NULL)
	{
		FUZZ_CHECK(strlen((const char *) dtypes) == (size_t) model->n_tensors,
				   "%zu dtypes for %d tensors", strlen((const char *) dtypes), model->n_tensors);
		check_saved_again(model, dtypes, header, header_len, data, data_len);
		run(model);
		model_free(model);
	}
	else
		FUZZ_CHECK(err.message[0] != '\0', "rejected without a reason");
	free(dtypes);
	free(header);
	return 0;
}
