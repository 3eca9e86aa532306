/*
 * fuzz_safetensors.c - Hugging Face directories (core/checkpoint.h,
 * checkpoint_safetensors.c): config.json and model.safetensors.
 *
 * The input is config.json, a NUL, then model.safetensors (without a NUL,
 * all of it is config.json); tokenizer.json is a fixed "{}".  One that
 * loads must give a consistent checkpoint whose model scores and
 * generates.
 */
#include "fuzz_checkpoint.h"

int
LLVMFuzzerInitialize(int *argc, char ***argv)
{
	model_set_threads(1);
	return 0;
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	const uint8_t *nul = memchr(data, '\0', size);
	size_t		config_len = nul ? (size_t) (nul - data) : size;
	size_t		st_len = nul ? size - config_len - 1 : 0;
	uint8_t    *config = (uint8_t *) fuzz_copy(data, config_len, false);
	uint8_t    *st = (uint8_t *) fuzz_copy(nul ? nul + 1 : data, st_len, false);
	FuzzDir		dir = {{{"config.json", config, config_len},
						{"model.safetensors", st, st_len},
						{"tokenizer.json", (const uint8_t *) "{}", 2}}, 3};

	fuzz_read(CHECKPOINT_HF, &dir);
	free(config);
	free(st);
	return 0;
}
