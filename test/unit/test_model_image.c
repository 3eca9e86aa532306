/*
 * test_model_image.c - prediction images (model_image.h): a model made of
 * the image of a loaded model predicts bit for bit as that model, in
 * memory and mapped from a file, for every shape option; a student made
 * of one answers as the loaded student; and every truncated image, every
 * flipped header byte, another identity, bytes appended and foreign bytes
 * are refused with a message.
 */
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/crc32c.h"
#include "core/model_image.h"
#include "core/model_io.h"
#include "core/packed.h"
#include "core/student.h"
#include "core/tokenizer.h"
#include "core/util.h"
#include "unit.h"

static const ModelImageIdentity identity = {42, 16384, 0xC0FFEEu};

/* An image in memory, aligned as a mapping is. */
typedef struct Image
{
	uint8_t    *data;
	size_t		len;
	size_t		cap;
	int			pieces;
	size_t		largest_piece;
} Image;

static bool
append(void *arg, const void *data, size_t len)
{
	Image	   *image = arg;

	if (image->len + len > image->cap)
	{
		size_t		cap = (image->len + len) * 2;
		void	   *grown;

		if (posix_memalign(&grown, 4096, cap) != 0)
			return false;
		if (image->len > 0)
			memcpy(grown, image->data, image->len);
		free(image->data);
		image->data = grown;
		image->cap = cap;
	}
	memcpy(image->data + image->len, data, len);
	image->len += len;
	image->pieces++;
	image->largest_piece = len > image->largest_piece ? len : image->largest_piece;
	return true;
}

static Image
write_image(const Model *model, const ModelImageIdentity *id)
{
	Image		image = {0};
	CoreError	err = {0};

	CHECKF(model_image_write(model, id, append, &image, &err), "%s", err.message);
	return image;
}

/* A random model of config, packed for prediction only, as a loaded one is. */
static Model *
loaded_model(const ModelConfig *config, uint64_t seed)
{
	CoreError	err = {0};
	Model	   *m = model_create(config, &err);

	CHECKF(m != NULL, "%s", err.message);
	model_init_weights(m, seed);
	CHECKF(model_pack_for_prediction_only(m, &err), "%s", err.message);
	return m;
}

/* The same scores, tokens and log-probabilities, to the bit. */
static void
check_same_predictions(const Model *a, const Model *b, const char *what)
{
	int			vocab = a->config.vocab_size;
	int32_t		prefix[7] = {1, 5, vocab - 1, 2, 7, 3, 0};
	int32_t		c1[3] = {4, 8, 2};
	int32_t		c2[1] = {vocab - 2};
	const int32_t *cands[2] = {c1, c2};
	int			lens[2] = {3, 1};
	double		sa[2],
				sb[2];
	int32_t		oa[6],
				ob[6];
	int			na,
				nb;
	float	   *la = malloc(sizeof(float) * 7 * vocab);
	float	   *lb = malloc(sizeof(float) * 7 * vocab);
	CoreError	err = {0};

	CHECKF(model_score_candidates(a, prefix, 7, cands, lens, 2, sa, &err), "%s", err.message);
	CHECKF(model_score_candidates(b, prefix, 7, cands, lens, 2, sb, &err), "%s", err.message);
	CHECKF(memcmp(sa, sb, sizeof(sa)) == 0, "%s: scores %.9g %.9g vs %.9g %.9g",
		   what, sa[0], sa[1], sb[0], sb[1]);
	na = model_generate_greedy(a, prefix, 7, 6, -1, oa, NULL, &err);
	nb = model_generate_greedy(b, prefix, 7, 6, -1, ob, NULL, &err);
	CHECKF(na == 6 && nb == 6 && memcmp(oa, ob, sizeof(oa)) == 0, "%s: generated", what);
	CHECK(model_next_logprobs(a, prefix, 7, la, &err));
	CHECK(model_next_logprobs(b, prefix, 7, lb, &err));
	CHECKF(memcmp(la, lb, sizeof(float) * 7 * vocab) == 0, "%s: log-probabilities", what);
	free(la);
	free(lb);
}

/* A model of the image predicts as the model it was written from. */
static void
check_round_trip(const ModelConfig *config, const char *what)
{
	Model	   *loaded = loaded_model(config, 5);
	Image		image = write_image(loaded, &identity);
	CoreError	err = {0};
	Model	   *from = model_from_image(image.data, image.len, &identity, &err);

	CHECKF(from != NULL, "%s: %s", what, err.message);
	if (from != NULL)
	{
		check_same_predictions(loaded, from, what);
		CHECK(from->image == image.data && from->params == NULL && from->plain_released);
		CHECK(from->n_params == loaded->n_params);
		CHECKF(model_memory_bytes(from) < 64 * 1024, "%s: %zu bytes of its own", what,
			   model_memory_bytes(from));
		CHECKF(image.largest_piece <= MODEL_IMAGE_PIECE, "%s: a piece of %zu bytes", what,
			   image.largest_piece);
		model_free(from);
	}
	model_free(loaded);
	free(image.data);
}

static ModelConfig
small_config(void)
{
	ModelConfig c;

	model_config_default(&c, 37, 16, 2, 4);
	c.max_seq_len = 24;
	return c;
}

static void
test_round_trips(void)
{
	ModelConfig c = small_config();

	check_round_trip(&c, "tied, prefix-LM");
	c.tied_embeddings = false;
	check_round_trip(&c, "untied");
	c.qkv_bias = true;
	c.n_kv_heads = 2;
	c.head_dim = 6;
	c.prefix_lm = false;
	c.logit_scale = 1.0f;
	c.rope_scaling = (ModelRopeScaling) {ROPE_SCALING_LLAMA3, 8.0f, 1.0f, 4.0f, 16};
	check_round_trip(&c, "qkv bias, grouped-query, head_dim, llama3 rope");
	/* matrices of several panels, an output that is no multiple of one */
	model_config_default(&c, 301, 96, 1, 3);
	c.d_ff = 200;
	c.max_seq_len = 20;
	check_round_trip(&c, "several panels");
}

/* The same through a file mapping, which model_free() unmaps. */
static void
test_mapped(void)
{
	ModelConfig c = small_config();
	Model	   *loaded = loaded_model(&c, 9);
	Image		image = write_image(loaded, &identity);
	char		path[] = "/tmp/distill-image-XXXXXX";
	int			fd = mkstemp(path);
	CoreError	err = {0};
	Model	   *mapped;

	CHECK(fd >= 0 && write(fd, image.data, image.len) == (ssize_t) image.len);
	mapped = model_image_map(fd, &identity, &err);
	close(fd);
	unlink(path);
	CHECKF(mapped != NULL && mapped->free_image != NULL, "%s", err.message);
	if (mapped != NULL)
	{
		check_same_predictions(loaded, mapped, "mapped");
		model_free(mapped);
	}

	/* an empty file, and one cut short */
	strcpy(path, "/tmp/distill-image-XXXXXX");
	fd = mkstemp(path);
	CHECK(model_image_map(fd, &identity, &err) == NULL && err.kind == CORE_ERR_CORRUPT &&
		  strstr(err.message, "truncated") != NULL);
	CHECK(write(fd, image.data, image.len / 2) == (ssize_t) (image.len / 2));
	CHECK(model_image_map(fd, &identity, &err) == NULL && err.kind == CORE_ERR_CORRUPT &&
		  strstr(err.message, "truncated") != NULL);
	close(fd);
	unlink(path);

	/* what is no regular file cannot be mapped, which is no damage */
	fd = open("/tmp", O_RDONLY);
	CHECK(model_image_map(fd, &identity, &err) == NULL &&
		  err.kind == CORE_ERR_INVALID_INPUT && strstr(err.message, "cannot map") != NULL);
	close(fd);
	model_free(loaded);
	free(image.data);
}

/* A copy of the image with byte i xor'ed with flip, aligned. */
static uint8_t *
altered(const Image *image, size_t len, size_t i, uint8_t flip)
{
	void	   *copy;

	if (posix_memalign(&copy, 64, len + 1) != 0)
		abort();
	memcpy(copy, image->data, len < image->len ? len : image->len);
	if (i < len)
		((uint8_t *) copy)[i] ^= flip;
	return copy;
}

/* Refused, with a message and CORE_ERR_CORRUPT. */
static bool
refused(const void *bytes, size_t len, const ModelImageIdentity *id, const char *expect)
{
	CoreError	err = {0};
	Model	   *m = model_from_image(bytes, len, id, &err);

	model_free(m);
	return m == NULL && err.kind == CORE_ERR_CORRUPT && err.message[0] != '\0' &&
		(expect == NULL || strstr(err.message, expect) != NULL);
}

static void
test_refusals(void)
{
	ModelConfig c = small_config();
	Model	   *loaded = loaded_model(&c, 3);
	Image		image = write_image(loaded, &identity);
	size_t		header_end = 48 + le_get_u32(image.data + 40) + 4;
	int			accepted_cut = 0,
				accepted_flip = 0;
	ModelImageIdentity other;
	uint8_t    *bytes;
	CoreError	err = {0};

	/* every length short of the whole */
	for (size_t len = 0; len < image.len; len += len < header_end + 8 ? 1 : 61)
	{
		bytes = altered(&image, len, len, 0);
		accepted_cut += !refused(bytes, len, &identity, NULL);
		free(bytes);
	}
	CHECKF(accepted_cut == 0, "%d truncated images accepted", accepted_cut);
	bytes = altered(&image, image.len - 1, image.len, 0);
	CHECK(refused(bytes, image.len - 1, &identity, "truncated"));
	free(bytes);
	bytes = altered(&image, image.len + 1, image.len, 0);
	CHECK(refused(bytes, image.len + 1, &identity, "corrupt"));
	free(bytes);

	/* every bit of the header region, one flip at a time */
	for (size_t i = 0; i < header_end; i++)
		for (int bit = 0; bit < 8; bit++)
		{
			bytes = altered(&image, image.len, i, (uint8_t) (1 << bit));
			accepted_flip += !refused(bytes, image.len, &identity, NULL);
			free(bytes);
		}
	CHECKF(accepted_flip == 0, "%d images with a flipped header bit accepted", accepted_flip);

	/* the identity of other weights, each field */
	other = identity;
	other.model_id++;
	CHECK(refused(image.data, image.len, &other, "other weights"));
	other = identity;
	other.scope++;
	CHECK(refused(image.data, image.len, &other, "other weights"));
	other = identity;
	other.weights_crc++;
	CHECK(refused(image.data, image.len, &other, "other weights"));

	/* foreign bytes; a model blob */
	bytes = altered(&image, image.len, 0, 0);
	memset(bytes, 'x', image.len);
	CHECK(refused(bytes, image.len, &identity, "not a distill prediction image"));
	model_serialize(loaded, bytes);
	CHECK(refused(bytes, image.len, &identity, "not a distill prediction image"));
	free(bytes);

	/* an image resealed with a version this build does not read */
	bytes = altered(&image, image.len, 4, 0x03);
	le_put_u32(bytes + header_end - 4, crc32c(0, bytes, header_end - 4));
	CHECK(refused(bytes, image.len, &identity, "version"));
	free(bytes);

	/* not at a multiple of 64 bytes */
	bytes = altered(&image, image.len + 64, image.len + 64, 0);
	memmove(bytes + 8, bytes, image.len);
	CHECK(model_from_image(bytes + 8, image.len, &identity, &err) == NULL &&
		  err.kind == CORE_ERR_INVALID_INPUT);
	free(bytes);
	model_free(loaded);
	free(image.data);
}

/* The packed kernel's image is of packed matrices: the model must be packed. */
static void
test_unpacked(void)
{
	ModelConfig c = small_config();
	CoreError	err = {0};
	Model	   *m = model_create(&c, &err);
	Image		image = {0};

	model_init_weights(m, 1);
	if (packed_supported())
		CHECK(!model_image_write(m, &identity, append, &image, &err) &&
			  err.kind == CORE_ERR_INVALID_INPUT && image.len == 0);
	else
		CHECKF(model_image_write(m, &identity, append, &image, &err), "%s", err.message);
	model_free(m);
	free(image.data);
}

static bool
fail_third(void *arg, const void *data, size_t len)
{
	return ++*(int *) arg < 3;
}

/* A sink that fails stops the writing there. */
static void
test_sink_failure(void)
{
	ModelConfig c = small_config();
	Model	   *m = loaded_model(&c, 1);
	CoreError	err = {0};
	int			calls = 0;

	CHECK(!model_image_write(m, &identity, fail_third, &calls, &err) &&
		  err.kind == CORE_ERR_INTERRUPTED && calls == 3);
	model_free(m);
}

/*
 * A student of stored bytes and the image of its loaded model answers as
 * the loaded student does; the weights' checksum names the stored model.
 */
static void
test_student(void)
{
	const char *texts[4] = {"red apple", "big dog", "fruit", "animal"};
	size_t		lens[4] = {9, 7, 5, 6};
	const char *const labels[2] = {"fruit", "animal"};
	CoreError	err = {0};
	Tokenizer  *tok = tok_train(texts, lens, 4, 270, SIZE_MAX, NULL, &err);
	ModelConfig c;
	Student		s = {0};
	size_t		tok_len,
				header_len;
	void	   *tok_blob;
	void	   *header;
	uint64_t	data_len;
	uint8_t    *data;
	StudentLoader *loader;
	Student    *loaded;
	Student    *shared;
	Model	   *from;
	Image		image;
	ModelImageIdentity id;
	double		pa[2],
				pb[2];

	CHECKF(tok != NULL, "%s", err.message);
	model_config_default(&c, tok_vocab_size(tok), 16, 1, 2);
	c.max_seq_len = 64;
	s.tokenizer = tok;
	s.model = model_create(&c, &err);
	s.max_input_tokens = 16;
	s.max_target_tokens = 8;
	model_init_weights(s.model, 2);
	data_len = model_data_bytes(s.model, NULL);
	data = malloc(data_len);
	model_data_read(s.model, NULL, 0, data, data_len);
	tok_blob = student_save_tokenizer(&s, &tok_len);
	header = student_save_header(&s, NULL, crc32c(0, data, data_len), &header_len);
	CHECK(student_weights_checksum(header, header_len) ==
		  le_get_u32((uint8_t *) header + header_len - 4));
	CHECK(student_weights_checksum(header, 3) == 0);

	loader = student_load_begin(tok_blob, tok_len, header, header_len, &err);
	CHECK(loader != NULL && student_load_feed(loader, data, data_len, &err));
	loaded = student_load_finish(loader, &err);
	CHECKF(loaded != NULL, "%s", err.message);
	id = identity;
	id.weights_crc = student_weights_checksum(header, header_len);
	image = write_image(loaded->model, &id);
	from = model_from_image(image.data, image.len, &id, &err);
	CHECKF(from != NULL, "%s", err.message);
	shared = from ? student_load_with_model(tok_blob, tok_len, header, header_len, from, &err)
		: NULL;
	CHECKF(shared != NULL, "%s", err.message);
	CHECK(student_choose(loaded, "red apple", labels, 2, pa, &err) ==
		  student_choose(shared, "red apple", labels, 2, pb, &err));
	CHECK(memcmp(pa, pb, sizeof(pa)) == 0);
	CHECK(shared->max_input_tokens == 16 && shared->max_target_tokens == 8);
	CHECK(student_memory_bytes(shared) < student_memory_bytes(loaded));
	student_free(shared);

	/* a model that is not the tokenizer's is refused, and freed */
	c.vocab_size += 1;
	CHECK(student_load_with_model(tok_blob, tok_len, header, header_len,
								  model_create(&c, &err), &err) == NULL &&
		  err.kind == CORE_ERR_CORRUPT);
	/* and so is a damaged header */
	((uint8_t *) header)[5] ^= 1;
	CHECK(student_load_with_model(tok_blob, tok_len, header, header_len,
								  model_create(&c, &err), &err) == NULL &&
		  err.kind == CORE_ERR_CORRUPT);

	student_free(loaded);
	model_free(s.model);
	tok_free(tok);
	free(tok_blob);
	free(header);
	free(data);
	free(image.data);
}

int
main(void)
{
	model_set_threads(1);
	test_round_trips();
	test_mapped();
	test_refusals();
	test_unpacked();
	test_sink_failure();
	test_student();
	return unit_summary("model_image");
}
