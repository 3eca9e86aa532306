/*
 * fuzz_lora.c - LoRA adapters as bytes (core/lora.h, lora_load()).
 *
 * The input is a saved set of adapters; its last four bytes are
 * overwritten with the CRC-32C of the rest, so that mutations reach the
 * checks behind the checksum.  They are loaded onto the base of
 * fuzz_lora.h.  A rejected blob must say why and leave the base as it
 * was.  Adapters that load must save back to the input bytes, then run a
 * training step (forward and backward) and merge into the base, whose
 * weights are restored for the next input.
 */
#include "fuzz.h"
#include "fuzz_lora.h"

#include "core/lora.h"

#define TOKENS 4

static Model *base;
static float *base_params;

static void
check_resave(const Model *model, const uint8_t *blob, size_t size)
{
	size_t		len;
	uint8_t    *again = lora_save(model, FUZZ_LORA_BASE_CHECKSUM, &len);

	FUZZ_CHECK(again != NULL, "saving failed");
	FUZZ_CHECK(len == size, "%zu bytes save to %zu", size, len);
	FUZZ_CHECK(memcmp(again, blob, len) == 0, "saved again, the bytes differ");
	free(again);
}

/* One forward and backward of a sequence of TOKENS tokens. */
static void
train_step(Model *model)
{
	int32_t		tokens[TOKENS] = {1, 12, 0, 5};
	int32_t		length = TOKENS;
	float		weights[TOKENS] = {0.0f, 0.5f, 0.25f, 0.25f};
	ModelBatch	batch = {1, TOKENS, tokens, &length, NULL, weights, NULL};
	CoreError	err = {0};

	FUZZ_CHECK(model_alloc_training(model, 1, TOKENS, &err),
			   "training buffers: %s", err.message);
	FUZZ_CHECK(model->grads == NULL && model->lora->grads != NULL,
			   "the base is not frozen");
	model_zero_grad(model);
	model_forward(model, &batch, true);
	model_backward(model);
}

int
LLVMFuzzerInitialize(int *argc, char ***argv)
{
	model_set_threads(1);		/* the fuzzer runs one input at a time */
	base = fuzz_lora_base();
	base_params = malloc(base->n_params * sizeof(float));
	if (base_params == NULL)
		abort();
	memcpy(base_params, base->params, base->n_params * sizeof(float));
	return 0;
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	uint8_t    *blob = (uint8_t *) fuzz_copy(data, size, false);
	CoreError	err = {0};

	if (size >= 8)
		fuzz_reseal(blob, size - 4);
	if (!lora_load(base, blob, size, FUZZ_LORA_BASE_CHECKSUM, &err))
	{
		FUZZ_CHECK(err.message[0] != '\0', "rejected without a reason");
		FUZZ_CHECK(base->lora == NULL, "rejected, yet adapters attached");
	}
	else
	{
		FUZZ_CHECK(base->lora != NULL, "loaded, no adapters attached");
		check_resave(base, blob, size);
		train_step(base);
		FUZZ_CHECK(lora_merge(base, &err), "merging failed: %s", err.message);
		FUZZ_CHECK(base->lora == NULL && base->acts == NULL, "merged, adapters left");
		memcpy(base->params, base_params, base->n_params * sizeof(float));
	}
	free(blob);
	return 0;
}
