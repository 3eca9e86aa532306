/*
 * student_io.c - a student's weights as bytes.
 *
 * Every format starts with the same header (little-endian):
 *
 *   "DSTS"                  magic
 *   u32 format_version      1, 2 or 3
 *   u32 max_input_tokens
 *   u32 max_target_tokens
 *   u32 flags               version 3 only: STUDENT_FLAG_*
 *   u32 crc32c              CRC-32C of the bytes before it
 *
 * Version 1 (distill 0.1.0 and 0.2.0) follows it with a whole model blob
 * (model_serialize(), model_io.h) in one bytea.  Versions 2 and 3 follow
 * it with the model's header only (model_save_header()); the parameters
 * are a separate stream of bytes, stored in chunks and fed to a
 * StudentLoader a chunk at a time, so that a model of any size loads
 * without a second copy of its weights.  Version 3 adds the flags, and is
 * written only when there is one, so that other students keep the bytes
 * of version 2.  Every byte is covered by a checksum.
 */
#include "core/student.h"

#include <stdlib.h>
#include <string.h>

#include "core/crc32c.h"
#include "core/lora.h"
#include "core/model_io.h"
#include "core/student_internal.h"
#include "core/tokenizer_pretrained.h"
#include "core/util.h"

#define STUDENT_MAGIC "DSTS"
#define STUDENT_FORMAT_WHOLE 1
#define STUDENT_FORMAT_CHUNKED 2
#define STUDENT_FORMAT_FLAGGED 3	/* chunked, with flags */

/* A student fine-tuned on a pretrained base: task tags in its vocabulary. */
#define STUDENT_FLAG_FINE_TUNED 0x1u
/* Its data are LoRA adapters (lora_save()) over its base's weights. */
#define STUDENT_FLAG_ADAPTERS 0x2u
#define STUDENT_ALL_FLAGS (STUDENT_FLAG_FINE_TUNED | STUDENT_FLAG_ADAPTERS)

/* Bytes of the header of a format version. */
static size_t
header_size(uint32_t version)
{
	return version == STUDENT_FORMAT_FLAGGED ? STUDENT_HEADER_SIZE + 4 : STUDENT_HEADER_SIZE;
}

/* Is a student's tokenizer a pretrained base's, with task tags? */
static bool
fine_tuned(const Student *student)
{
	return tok_is_pretrained(student->tokenizer) && !student->zero_shot;
}

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
put_header(uint8_t *blob, uint32_t version, const Student *student, uint32_t flags)
{
	size_t		crc_at = header_size(version) - 4;

	memcpy(blob, STUDENT_MAGIC, 4);
	le_put_u32(blob + 4, version);
	le_put_u32(blob + 8, (uint32_t) student->max_input_tokens);
	le_put_u32(blob + 12, (uint32_t) student->max_target_tokens);
	if (version == STUDENT_FORMAT_FLAGGED)
		le_put_u32(blob + 16, flags);
	le_put_u32(blob + crc_at, crc32c(0, blob, crc_at));
}

void *
student_save_header(const Student *student, const uint8_t *dtypes,
					uint32_t data_crc, size_t *len)
{
	uint32_t	version = fine_tuned(student) ? STUDENT_FORMAT_FLAGGED : STUDENT_FORMAT_CHUNKED;
	size_t		own = header_size(version);
	size_t		model_len;
	void	   *model_header = model_save_header(student->model, dtypes, data_crc,
												 &model_len);
	uint8_t    *blob = model_header ? malloc(own + model_len) : NULL;

	if (blob != NULL)
	{
		put_header(blob, version, student, STUDENT_FLAG_FINE_TUNED);
		memcpy(blob + own, model_header, model_len);
		*len = own + model_len;
	}
	free(model_header);
	return blob;
}

/*
 * Read and check the student header into s, whose tokenizer is loaded;
 * its format version, or 0 with a message.
 */
static uint32_t
read_header(Student *s, const uint8_t *blob, size_t len, CoreError *err)
{
	uint32_t	version;
	uint32_t	max_input;
	uint32_t	max_target;
	uint32_t	flags = 0;
	size_t		crc_at;

	if (len < 4 || memcmp(blob, STUDENT_MAGIC, 4) != 0)
	{
		core_error(err, CORE_ERR_CORRUPT, "not distill student weights (no \"%s\" header)",
				   STUDENT_MAGIC);
		return 0;
	}
	version = len >= 8 ? le_get_u32(blob + 4) : 0;
	if (len < STUDENT_HEADER_SIZE || len < header_size(version))
	{
		core_error(err, CORE_ERR_CORRUPT, "truncated student weights: %zu bytes", len);
		return 0;
	}
	if (version < STUDENT_FORMAT_WHOLE || version > STUDENT_FORMAT_FLAGGED)
	{
		core_error(err, CORE_ERR_CORRUPT,
				   "unsupported student weights format version %u (this build reads %d to %d)",
				   version, STUDENT_FORMAT_WHOLE, STUDENT_FORMAT_FLAGGED);
		return 0;
	}
	crc_at = header_size(version) - 4;
	if (le_get_u32(blob + crc_at) != crc32c(0, blob, crc_at))
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
	if (version == STUDENT_FORMAT_FLAGGED)
		flags = le_get_u32(blob + 16);
	if ((flags & ~STUDENT_ALL_FLAGS) != 0 ||
		((flags & STUDENT_FLAG_ADAPTERS) && !(flags & STUDENT_FLAG_FINE_TUNED)))
	{
		core_error(err, CORE_ERR_CORRUPT, "student weights with unknown flags 0x%x", flags);
		return 0;
	}
	if ((flags & STUDENT_FLAG_FINE_TUNED) && !tok_is_pretrained(s->tokenizer))
	{
		core_error(err, CORE_ERR_CORRUPT,
				   "student weights fine-tuned on a pretrained base, with a tokenizer of its own");
		return 0;
	}
	s->max_input_tokens = (int) max_input;
	s->max_target_tokens = (int) max_target;
	/* before version 3, a pretrained tokenizer meant an imported model */
	s->zero_shot = tok_is_pretrained(s->tokenizer) && !(flags & STUDENT_FLAG_FINE_TUNED);
	return version;
}

/* The flags of a header read_header() accepted. */
static uint32_t
header_flags(const uint8_t *blob)
{
	return le_get_u32(blob + 4) == STUDENT_FORMAT_FLAGGED ? le_get_u32(blob + 16) : 0;
}

/*
 * Do the tokenizer and the model of s belong together?  A trained
 * student's vocabulary is its tokenizer's, and its sequences hold the
 * longest prefix and target.  A checkpoint's embedding may have rows past
 * its tokenizer's last id (Qwen2 pads it to a multiple of 128), also
 * after fine-tuning; an imported model's prompts are checked as they come
 * (student_pretrained.c).
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
	if (s->zero_shot)
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

/*
 * A student with tokenizer loaded and header read, of expected_version (0:
 * either); NULL with err.
 */
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
	if (expected_version != 0 && (header_flags(weights) & STUDENT_FLAG_ADAPTERS))
	{
		core_error(err, CORE_ERR_INVALID_INPUT,
				   "these weights are adapters: load their base and apply them (student_apply_adapters())");
		goto fail;
	}
	if (version == STUDENT_FORMAT_FLAGGED)
		version = STUDENT_FORMAT_CHUNKED;	/* the same, with flags */
	if (expected_version != 0 && version != expected_version)
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

/* What a loaded student is for, which decides how its weights are held. */
typedef enum StudentUse
{
	USE_ANY,					/* plain and packed */
	USE_PREDICTION,				/* packed only (model_pack_for_prediction_only()) */
	USE_TRAINING				/* plain only */
} StudentUse;

/* Check and pack a student whose model is in; frees it on failure. */
static Student *
student_complete(Student *s, StudentUse use, CoreError *err)
{
	if (check_consistent(s, err) &&
		(use == USE_TRAINING ||
		 (use == USE_PREDICTION ? model_pack_for_prediction_only(s->model, err)
		  : model_pack_for_prediction(s->model, err))))
		return s;
	student_free(s);
	return NULL;
}

bool
student_weights_chunked(const void *weights, size_t len)
{
	uint32_t	version;

	if (len < STUDENT_HEADER_SIZE || memcmp(weights, STUDENT_MAGIC, 4) != 0)
		return false;
	version = le_get_u32((const uint8_t *) weights + 4);
	return version == STUDENT_FORMAT_CHUNKED || version == STUDENT_FORMAT_FLAGGED;
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
	return student_complete(s, USE_ANY, err);
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
	size_t		own;

	if (loader == NULL)
	{
		core_error(err, CORE_ERR_NO_MEMORY, "out of memory for a student loader");
		return NULL;
	}
	loader->student = student_begin(tokenizer, tokenizer_len, header, header_len,
									STUDENT_FORMAT_CHUNKED, err);
	if (loader->student == NULL)
		goto fail;
	own = header_size(le_get_u32((const uint8_t *) header + 4));
	loader->model = model_loader_begin((const uint8_t *) header + own,
									   header_len - own, &why);
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

static Student *
load_finish(StudentLoader *loader, StudentUse use, CoreError *err)
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
	return student_complete(s, use, err);
}

Student *
student_load_finish(StudentLoader *loader, CoreError *err)
{
	return load_finish(loader, USE_PREDICTION, err);
}

Student *
student_load_finish_trainable(StudentLoader *loader, CoreError *err)
{
	return load_finish(loader, USE_TRAINING, err);
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

Student *
student_load_with_model(const void *tokenizer, size_t tokenizer_len,
						const void *weights, size_t weights_len, Model *model,
						CoreError *err)
{
	Student    *s = student_begin(tokenizer, tokenizer_len, weights, weights_len, 0, err);

	if (s == NULL)
	{
		model_free(model);
		return NULL;
	}
	s->model = model;
	if (check_consistent(s, err))
		return s;
	student_free(s);
	return NULL;
}

/*
 * Every format ends in a CRC-32C: of the whole model blob (version 1), of
 * the model header, which holds the data's (versions 2 and 3).
 */
uint32_t
student_weights_checksum(const void *weights, size_t len)
{
	return len >= STUDENT_HEADER_SIZE + 4
		? le_get_u32((const uint8_t *) weights + len - 4) : 0;
}

/* ---------------------------------------------------------------- */
/* LoRA adapters over a stored base */

bool
student_has_adapters(const Student *student)
{
	return student->model->lora != NULL;
}

bool
student_weights_are_adapters(const void *weights, size_t len)
{
	return len >= header_size(STUDENT_FORMAT_FLAGGED) &&
		memcmp(weights, STUDENT_MAGIC, 4) == 0 &&
		(header_flags(weights) & STUDENT_FLAG_ADAPTERS) != 0;
}

void *
student_save_adapters(const Student *student, uint32_t base_checksum,
					  void **header, size_t *header_len, size_t *len)
{
	void	   *blob = lora_save(student->model, base_checksum, len);

	*header_len = header_size(STUDENT_FORMAT_FLAGGED);
	*header = blob ? malloc(*header_len) : NULL;
	if (*header == NULL)
	{
		free(blob);
		return NULL;
	}
	put_header(*header, STUDENT_FORMAT_FLAGGED, student,
			   STUDENT_FLAG_FINE_TUNED | STUDENT_FLAG_ADAPTERS);
	return blob;
}

Student *
student_apply_adapters(Student *base, const void *header, size_t header_len,
					   const void *adapters, size_t len, uint32_t base_checksum,
					   CoreError *err)
{
	if (read_header(base, header, header_len, err) == 0)
		goto fail;
	if (!student_weights_are_adapters(header, header_len) ||
		header_len != header_size(STUDENT_FORMAT_FLAGGED))
	{
		core_error(err, CORE_ERR_CORRUPT, "these weights are not LoRA adapters");
		goto fail;
	}
	if (base->model->plain_released || base->model->lora != NULL)
	{
		core_error(err, CORE_ERR_INVALID_INPUT,
				   "adapters apply to a base loaded with its plain weights");
		goto fail;
	}
	if (lora_load(base->model, adapters, len, base_checksum, err) &&
		lora_merge(base->model, err))
		return student_complete(base, USE_PREDICTION, err);

fail:
	student_free(base);
	return NULL;
}
