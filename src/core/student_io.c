/*
 * student_io.c - a student's weights as bytes.
 *
 * Both formats start with the same 20-byte header (little-endian):
 *
 *   "DSTS"                  magic
 *   u32 format_version      1 or 2
 *   u32 max_input_tokens
 *   u32 max_target_tokens
 *   u32 crc32c              CRC-32C of the 16 bytes before it
 *
 * Version 1 (distill 0.1.0 and 0.2.0) follows it with a whole model blob
 * (model_serialize(), model_io.h) in one bytea.  Version 2 follows it with
 * the model's header only (model_save_header()); the parameters are a
 * separate stream of bytes, stored in chunks and fed to a StudentLoader a
 * chunk at a time, so that a model of any size loads without a second
 * copy of its weights.  Every byte is covered by a checksum.
 */
#include "core/student.h"

#include <stdlib.h>
#include <string.h>

#include "core/crc32c.h"
#include "core/model_io.h"
#include "core/student_internal.h"
#include "core/tokenizer_pretrained.h"
#include "core/util.h"

#define STUDENT_MAGIC "DSTS"
#define STUDENT_FORMAT_WHOLE 1
#define STUDENT_FORMAT_CHUNKED 2

void *
student_save_tokenizer(const Student *student, size_t *len)
{
	return tok_serialize(student->tokenizer, len);
}

void *
student_save_weights(const Student *student, size_t *len)
{
	size_t		model_len = model_serialized_size(student->model);
	uint8_t    *blob = malloc(STUDENT_HEADER_SIZE + model_len);

	if (blob == NULL)
		return NULL;
	memcpy(blob, STUDENT_MAGIC, 4);
	le_put_u32(blob + 4, STUDENT_FORMAT_WHOLE);
	le_put_u32(blob + 8, (uint32_t) student->max_input_tokens);
	le_put_u32(blob + 12, (uint32_t) student->max_target_tokens);
	le_put_u32(blob + 16, crc32c(0, blob, 16));
	model_serialize(student->model, blob + STUDENT_HEADER_SIZE);
	*len = STUDENT_HEADER_SIZE + model_len;
	return blob;
}

static void
put_header(uint8_t *blob, uint32_t version, const Student *student)
{
	memcpy(blob, STUDENT_MAGIC, 4);
	le_put_u32(blob + 4, version);
	le_put_u32(blob + 8, (uint32_t) student->max_input_tokens);
	le_put_u32(blob + 12, (uint32_t) student->max_target_tokens);
	le_put_u32(blob + 16, crc32c(0, blob, 16));
}

void *
student_save_header(const Student *student, const uint8_t *dtypes,
					uint32_t data_crc, size_t *len)
{
	size_t		model_len;
	void	   *model_header = model_save_header(student->model, dtypes, data_crc,
												 &model_len);
	uint8_t    *blob = model_header ? malloc(STUDENT_HEADER_SIZE + model_len) : NULL;

	if (blob != NULL)
	{
		put_header(blob, STUDENT_FORMAT_CHUNKED, student);
		memcpy(blob + STUDENT_HEADER_SIZE, model_header, model_len);
		*len = STUDENT_HEADER_SIZE + model_len;
	}
	free(model_header);
	return blob;
}

/*
 * Read and check the student header into s; its format version, or 0
 * with a message.
 */
static uint32_t
read_header(Student *s, const uint8_t *blob, size_t len, CoreError *err)
{
	uint32_t	version;
	uint32_t	max_input;
	uint32_t	max_target;

	if (len < 4 || memcmp(blob, STUDENT_MAGIC, 4) != 0)
	{
		core_error(err, CORE_ERR_CORRUPT, "not distill student weights (no \"%s\" header)",
				   STUDENT_MAGIC);
		return 0;
	}
	if (len < STUDENT_HEADER_SIZE)
	{
		core_error(err, CORE_ERR_CORRUPT, "truncated student weights: %zu bytes", len);
		return 0;
	}
	version = le_get_u32(blob + 4);
	if (version != STUDENT_FORMAT_WHOLE && version != STUDENT_FORMAT_CHUNKED)
	{
		core_error(err, CORE_ERR_CORRUPT,
				   "unsupported student weights format version %u (this build reads %d and %d)",
				   version, STUDENT_FORMAT_WHOLE, STUDENT_FORMAT_CHUNKED);
		return 0;
	}
	if (le_get_u32(blob + 16) != crc32c(0, blob, 16))
	{
		core_error(err, CORE_ERR_CORRUPT, "corrupt student weights: header checksum mismatch");
		return 0;
	}
	max_input = le_get_u32(blob + 8);
	max_target = le_get_u32(blob + 12);
	if (max_input < STUDENT_MIN_INPUT_TOKENS || max_input > STUDENT_MAX_INPUT_TOKENS ||
		max_target < STUDENT_MIN_TARGET_TOKENS || max_target > STUDENT_MAX_TARGET_TOKENS)
	{
		core_error(err, CORE_ERR_CORRUPT,
				   "corrupt student weights: max_input_tokens %u or max_target_tokens %u out of range",
				   max_input, max_target);
		return 0;
	}
	s->max_input_tokens = (int) max_input;
	s->max_target_tokens = (int) max_target;
	return version;
}

/*
 * Do the tokenizer and the model of s belong together?  A trained
 * student's vocabulary is its tokenizer's, and its sequences hold the
 * longest prefix and target.  A checkpoint's embedding may have rows past
 * its tokenizer's last id (Qwen2 pads it to a multiple of 128), and its
 * prompts are checked as they come (student_pretrained.c).
 */
static bool
check_consistent(const Student *s, CoreError *err)
{
	int			vocab = tok_vocab_size(s->tokenizer);
	int			needed;

	if (tok_is_pretrained(s->tokenizer) ? s->model->config.vocab_size < vocab
		: s->model->config.vocab_size != vocab)
	{
		core_error(err, CORE_ERR_CORRUPT,
				   "the weights (vocabulary of %d) do not belong to this tokenizer (%d tokens)",
				   s->model->config.vocab_size, vocab);
		return false;
	}
	if (tok_is_pretrained(s->tokenizer))
		return true;
	needed = student_sequence_limit(s->tokenizer, s->max_input_tokens,
									s->max_target_tokens);
	if (needed < 0)
	{
		core_error(err, CORE_ERR_NO_MEMORY, "out of memory checking the student");
		return false;
	}
	if (needed > s->model->config.max_seq_len)
	{
		core_error(err, CORE_ERR_CORRUPT,
				   "the weights hold sequences of %d tokens, these limits need %d",
				   s->model->config.max_seq_len, needed);
		return false;
	}
	return true;
}

/* A student with tokenizer loaded and header read; NULL with err. */
static Student *
student_begin(const void *tokenizer, size_t tokenizer_len, const void *weights,
			  size_t weights_len, uint32_t expected_version, CoreError *err)
{
	Student    *s = calloc(1, sizeof(Student));
	CoreError	why;
	uint32_t	version;

	if (s == NULL)
	{
		core_error(err, CORE_ERR_NO_MEMORY, "out of memory for a student");
		return NULL;
	}
	if (tokenizer == NULL || weights == NULL)
	{
		core_error(err, CORE_ERR_INVALID_INPUT, "loading a student needs a tokenizer and weights");
		goto fail;
	}
	s->tokenizer = tok_deserialize(tokenizer, tokenizer_len, &why);
	if (s->tokenizer == NULL)
	{
		core_error(err, why.kind, "tokenizer: %s", why.message);
		goto fail;
	}
	version = read_header(s, weights, weights_len, err);
	if (version == 0)
		goto fail;
	if (version != expected_version)
	{
		core_error(err, CORE_ERR_CORRUPT,
				   "student weights of format version %u where %u was expected",
				   version, expected_version);
		goto fail;
	}
	return s;

fail:
	student_free(s);
	return NULL;
}

/*
 * Check and pack a student whose model is in; frees it on failure.
 * prediction_only: it will never be saved or trained again, so it may
 * keep its weights once (model_pack_for_prediction_only()).
 */
static Student *
student_complete(Student *s, bool prediction_only, CoreError *err)
{
	if (check_consistent(s, err) &&
		(prediction_only ? model_pack_for_prediction_only(s->model, err)
		 : model_pack_for_prediction(s->model, err)))
		return s;
	student_free(s);
	return NULL;
}

bool
student_weights_chunked(const void *weights, size_t len)
{
	return len >= STUDENT_HEADER_SIZE && memcmp(weights, STUDENT_MAGIC, 4) == 0 &&
		le_get_u32((const uint8_t *) weights + 4) == STUDENT_FORMAT_CHUNKED;
}

Student *
student_load(const void *tokenizer, size_t tokenizer_len,
			 const void *weights, size_t weights_len,
			 CoreError *err)
{
	Student    *s = student_begin(tokenizer, tokenizer_len, weights, weights_len,
								  STUDENT_FORMAT_WHOLE, err);
	CoreError	why;

	if (s == NULL)
		return NULL;
	s->model = model_deserialize((const uint8_t *) weights + STUDENT_HEADER_SIZE,
								 weights_len - STUDENT_HEADER_SIZE, &why);
	if (s->model == NULL)
	{
		core_error(err, why.kind, "student weights: %s", why.message);
		student_free(s);
		return NULL;
	}
	return student_complete(s, false, err);
}

struct StudentLoader
{
	Student    *student;
	ModelLoader *model;
};

StudentLoader *
student_load_begin(const void *tokenizer, size_t tokenizer_len,
				   const void *header, size_t header_len, CoreError *err)
{
	StudentLoader *loader = calloc(1, sizeof(StudentLoader));
	CoreError	why;

	if (loader == NULL)
	{
		core_error(err, CORE_ERR_NO_MEMORY, "out of memory for a student loader");
		return NULL;
	}
	loader->student = student_begin(tokenizer, tokenizer_len, header, header_len,
									STUDENT_FORMAT_CHUNKED, err);
	if (loader->student == NULL)
		goto fail;
	loader->model = model_loader_begin((const uint8_t *) header + STUDENT_HEADER_SIZE,
									   header_len - STUDENT_HEADER_SIZE, &why);
	if (loader->model == NULL)
	{
		core_error(err, why.kind, "student weights: %s", why.message);
		goto fail;
	}
	return loader;

fail:
	student_loader_free(loader);
	return NULL;
}

bool
student_load_feed(StudentLoader *loader, const void *data, size_t len,
				  CoreError *err)
{
	CoreError	why;

	if (model_loader_feed(loader->model, data, len, &why))
		return true;
	core_error(err, why.kind, "student weights: %s", why.message);
	return false;
}

Student *
student_load_finish(StudentLoader *loader, CoreError *err)
{
	Student    *s = loader->student;
	CoreError	why;

	s->model = model_loader_finish(loader->model, &why);
	free(loader);
	if (s->model == NULL)
	{
		core_error(err, why.kind, "student weights: %s", why.message);
		student_free(s);
		return NULL;
	}
	return student_complete(s, true, err);
}

void
student_loader_free(StudentLoader *loader)
{
	if (loader == NULL)
		return;
	model_loader_free(loader->model);
	student_free(loader->student);
	free(loader);
}
