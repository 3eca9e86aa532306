/*
 * test_model_io.c - the chunked model format (model_io.h, version 2) and
 * the number conversions under it (dequant.h): round trips in every dtype
 * and chunking, and that every truncated or flipped header, a wrong data
 * checksum, too much or too little data and a non-finite weight are
 * refused with a message.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "core/crc32c.h"
#include "core/dequant.h"
#include "core/model_io.h"
#include "unit.h"

static float
f32_from_bits(uint32_t bits)
{
	float		x;

	memcpy(&x, &bits, 4);
	return x;
}

static uint32_t
bits_of(float x)
{
	uint32_t	bits;

	memcpy(&bits, &x, 4);
	return bits;
}

/* Every half and bfloat16 widens and narrows back to itself. */
static void
test_conversions(void)
{
	int			bad_half = 0,
				bad_bfloat = 0;

	for (uint32_t h = 0; h < 65536; h++)
	{
		float		x = half_to_float((uint16_t) h);
		float		y = bfloat_to_float((uint16_t) h);
		bool		half_nan = (h & 0x7C00) == 0x7C00 && (h & 0x3FF) != 0;

		if (half_nan ? !isnan(half_to_float(float_to_half(x))) : float_to_half(x) != h)
			bad_half++;
		if (isnan(y) ? !isnan(bfloat_to_float(float_to_bfloat(y))) : float_to_bfloat(y) != h)
			bad_bfloat++;
	}
	CHECKF(bad_half == 0, "%d halves do not round-trip", bad_half);
	CHECKF(bad_bfloat == 0, "%d bfloat16s do not round-trip", bad_bfloat);

	/* known values, and ties to even */
	CHECK(half_to_float(0x3C00) == 1.0f && half_to_float(0xC000) == -2.0f);
	CHECK(half_to_float(0x0001) == ldexpf(1.0f, -24));
	CHECK(half_to_float(0x7BFF) == 65504.0f && isinf(half_to_float(0x7C00)));
	CHECK(float_to_half(1.0f + ldexpf(1.0f, -11)) == 0x3C00);	/* tie, down */
	CHECK(float_to_half(1.0f + 3 * ldexpf(1.0f, -11)) == 0x3C02);	/* tie, up */
	CHECK(float_to_half(1.0f + ldexpf(1.0f, -11) + ldexpf(1.0f, -20)) == 0x3C01);
	CHECK(float_to_half(65519.0f) == 0x7BFF && float_to_half(65520.0f) == 0x7C00);
	CHECK(float_to_half(-1e9f) == 0xFC00);
	CHECK(float_to_half(ldexpf(1.0f, -25)) == 0x0000);	/* tie to 0 */
	CHECK(float_to_half(3 * ldexpf(1.0f, -25)) == 0x0002);	/* tie to 2 */
	CHECK(float_to_half(ldexpf(1.0f, -14)) == 0x0400);
	CHECK(float_to_half(ldexpf(1023.5f, -24)) == 0x0400);	/* rounds up to normal */
	CHECK(bfloat_to_float(0x3F80) == 1.0f);
	CHECK(float_to_bfloat(1.0f + ldexpf(1.0f, -8)) == 0x3F80);
	CHECK(float_to_bfloat(1.0f + 3 * ldexpf(1.0f, -8)) == 0x3F82);
	CHECK(float_to_bfloat(f32_from_bits(0x7F7FFFFF)) == 0x7F80);	/* to inf */
	CHECK(isnan(bfloat_to_float(float_to_bfloat(NAN))));
	CHECK(isnan(half_to_float(float_to_half(NAN))));
}

static Model *
test_model(void)
{
	ModelConfig c;
	CoreError	err = {0};
	Model	   *m;

	model_config_default(&c, 37, 16, 2, 4);
	c.head_dim = 6;
	c.n_kv_heads = 2;
	c.tied_embeddings = false;
	c.qkv_bias = true;
	c.prefix_lm = false;
	c.max_seq_len = 32;
	c.rope_theta = 500000.0f;
	c.rope_scaling = (ModelRopeScaling) {ROPE_SCALING_LLAMA3, 8.0f, 1.0f, 4.0f, 16};
	c.logit_scale = 1.0f;
	m = model_create(&c, &err);
	CHECKF(m != NULL, "%s", err.message);
	model_init_weights(m, 11);
	return m;
}

/* The data of model in dtypes, read in pieces of 5 bytes; its CRC. */
static uint8_t *
save_data(const Model *m, const uint8_t *dtypes, uint64_t *len, uint32_t *crc)
{
	uint8_t    *data;

	*len = model_data_bytes(m, dtypes);
	data = malloc(*len);
	for (uint64_t off = 0; off < *len; off += 5)
		model_data_read(m, dtypes, off, data + off, *len - off < 5 ? *len - off : 5);
	*crc = crc32c(0, data, *len);
	return data;
}

/* Load header and data fed chunk bytes at a time (0: all at once). */
static Model *
load(const void *header, size_t header_len, const uint8_t *data,
	 uint64_t data_len, size_t chunk, uint8_t *dtypes_out, CoreError *err)
{
	ModelLoader *loader = model_loader_begin(header, header_len, err);

	if (loader == NULL)
		return NULL;
	/* the dtypes end in a 0 byte */
	if (dtypes_out != NULL)
		memcpy(dtypes_out, model_loader_dtypes(loader),
			   strlen((const char *) model_loader_dtypes(loader)) + 1);
	for (uint64_t off = 0; off < data_len;)
	{
		size_t		n = chunk == 0 || data_len - off < chunk ? data_len - off : chunk;

		if (!model_loader_feed(loader, data + off, n, err))
		{
			model_loader_free(loader);
			return NULL;
		}
		off += n;
	}
	return model_loader_finish(loader, err);
}

static void
test_round_trip(void)
{
	Model	   *m = test_model();
	uint8_t		dtypes[4][64];
	static const size_t chunks[] = {1, 7, 4096, 0};
	int			failures = 0;

	CHECK(m->n_tensors <= 64);
	for (int i = 0; i < m->n_tensors; i++)
	{
		dtypes[0][i] = MODEL_DTYPE_F32;
		dtypes[1][i] = MODEL_DTYPE_F16;
		dtypes[2][i] = MODEL_DTYPE_BF16;
		dtypes[3][i] = 1 + i % 3;
	}
	for (int d = 0; d < 4; d++)
	{
		uint64_t	data_len;
		uint32_t	crc;
		uint8_t    *data = save_data(m, dtypes[d], &data_len, &crc);
		size_t		header_len;
		void	   *header = model_save_header(m, dtypes[d], crc, &header_len);

		for (int c = 0; c < 4; c++)
		{
			CoreError	err = {0};
			uint8_t		got_dtypes[64];
			Model	   *loaded = load(header, header_len, data, data_len, chunks[c],
									  got_dtypes, &err);
			bool		same = loaded != NULL;

			CHECKF(loaded != NULL, "dtypes %d chunk %zu: %s", d, chunks[c], err.message);
			if (loaded == NULL)
				continue;
			CHECK(memcmp(got_dtypes, dtypes[d], m->n_tensors) == 0);
			CHECK(loaded->head_dim == 6 && loaded->config.n_heads == 4 &&
				  loaded->config.rope_scaling.kind == ROPE_SCALING_LLAMA3 &&
				  loaded->config.rope_scaling.original_max_position == 16 &&
				  loaded->config.rope_theta == 500000.0f && !loaded->config.tied_embeddings);
			for (int i = 0; i < m->n_tensors && same; i++)
			{
				const ModelTensor *t = &m->tensors[i];

				for (size_t j = 0; j < t->numel && same; j++)
				{
					float		x = m->params[t->offset + j];
					float		want = dtypes[d][i] == MODEL_DTYPE_F16 ? half_to_float(float_to_half(x))
						: dtypes[d][i] == MODEL_DTYPE_BF16 ? bfloat_to_float(float_to_bfloat(x))
						: x;

					same = bits_of(loaded->params[t->offset + j]) == bits_of(want);
				}
			}
			if (!same)
				failures++;
			/* saved again in the same dtypes: the same bytes */
			if (c == 3)
			{
				uint64_t	again_len;
				uint32_t	again_crc;
				uint8_t    *again = save_data(loaded, got_dtypes, &again_len, &again_crc);
				size_t		again_header_len;
				void	   *again_header = model_save_header(loaded, got_dtypes, again_crc,
															 &again_header_len);

				CHECK(again_len == data_len && memcmp(again, data, data_len) == 0);
				CHECK(again_header_len == header_len &&
					  memcmp(again_header, header, header_len) == 0);
				free(again);
				free(again_header);
			}
			model_free(loaded);
		}
		printf("  dtypes %d: header %zu bytes, data %llu bytes\n", d, header_len,
			   (unsigned long long) data_len);
		free(header);
		free(data);
	}
	CHECKF(failures == 0, "%d loads differ from the saved parameters", failures);

	/* a range of the data equals the same range of the whole */
	{
		uint64_t	len;
		uint32_t	crc;
		uint8_t    *whole = save_data(m, dtypes[3], &len, &crc);
		uint8_t		part[300];
		bool		same = true;

		for (uint64_t off = 0; off + sizeof(part) <= len && same; off += 97)
		{
			model_data_read(m, dtypes[3], off, part, sizeof(part) - off % 3);
			same = memcmp(part, whole + off, sizeof(part) - off % 3) == 0;
		}
		CHECK(same);
		free(whole);
	}
	model_free(m);
}

static void
test_rejections(void)
{
	Model	   *m = test_model();
	uint8_t		dtypes[64];
	uint64_t	data_len;
	uint32_t	crc;
	uint8_t    *data;
	size_t		header_len;
	uint8_t    *header;
	int			accepted = 0;
	int			silent = 0;
	CoreError	err = {0};
	Model	   *loaded;

	for (int i = 0; i < m->n_tensors; i++)
		dtypes[i] = 1 + i % 3;
	data = save_data(m, dtypes, &data_len, &crc);
	header = model_save_header(m, dtypes, crc, &header_len);

	/* every truncation and every flipped bit of the header */
	for (size_t len = 0; len < header_len; len++)
	{
		ModelLoader *l = model_loader_begin(header, len, &err);

		accepted += l != NULL;
		model_loader_free(l);
	}
	for (size_t bit = 0; bit < header_len * 8; bit++)
	{
		ModelLoader *l;

		err.message[0] = '\0';
		header[bit / 8] ^= 1 << (bit % 8);
		l = model_loader_begin(header, header_len, &err);
		header[bit / 8] ^= 1 << (bit % 8);
		accepted += l != NULL;
		silent += l == NULL && err.message[0] == '\0';
		model_loader_free(l);
	}
	printf("  %zu truncated and %zu flipped headers: %d accepted\n", header_len,
		   header_len * 8, accepted);
	CHECK(accepted == 0 && silent == 0);

	/* a flipped bit in the data */
	data[data_len / 2] ^= 4;
	loaded = load(header, header_len, data, data_len, 1000, NULL, &err);
	CHECK(loaded == NULL && strstr(err.message, "checksum"));
	printf("  flipped data bit: %s\n", err.message);
	data[data_len / 2] ^= 4;

	/* too little, too much */
	loaded = load(header, header_len, data, data_len - 1, 1000, NULL, &err);
	CHECK(loaded == NULL && strstr(err.message, "truncated"));
	printf("  a byte short: %s\n", err.message);
	{
		ModelLoader *l = model_loader_begin(header, header_len, &err);

		CHECK(l != NULL && model_loader_feed(l, data, data_len, &err));
		CHECK(!model_loader_feed(l, data, 1, &err) && strstr(err.message, "more than"));
		printf("  a byte more: %s\n", err.message);
		model_loader_free(l);
	}
	CHECK(model_loader_begin(data, 100, &err) == NULL && strstr(err.message, "not a distill"));

	/* an infinity, with its checksum right */
	m->params[m->tensors[3].offset + 2] = INFINITY;
	free(data);
	free(header);
	data = save_data(m, dtypes, &data_len, &crc);
	header = model_save_header(m, dtypes, crc, &header_len);
	loaded = load(header, header_len, data, data_len, 7, NULL, &err);
	CHECK(loaded == NULL && strstr(err.message, "finite"));
	printf("  infinity: %s\n", err.message);

	/* a version 1 reader refuses version 2, and the other way round */
	CHECK(model_deserialize(header, header_len, &err) == NULL);
	m->params[m->tensors[3].offset + 2] = 0.0f;
	free(data);
	data = malloc(model_serialized_size(m));
	model_serialize(m, data);
	CHECK(model_loader_begin(data, model_serialized_size(m), &err) == NULL &&
		  strstr(err.message, "version 1"));
	free(data);
	free(header);
	model_free(m);
}

int
main(void)
{
	model_set_threads(1);
	test_conversions();
	test_round_trip();
	test_rejections();
	return unit_summary("model_io");
}
