/*
 * fuzz_llama2c.c - llama2.c checkpoints (core/checkpoint.h,
 * checkpoint_llama2c.c).
 *
 * The input is the .bin file; the tokenizer file is a fixed few bytes
 * (it is passed on unread).  One that loads must give a consistent
 * checkpoint whose model scores and generates.
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
	static const uint8_t tokenizer[4] = {0};
	uint8_t    *file = (uint8_t *) fuzz_copy(data, size, false);
	FuzzDir		dir = {{{"", file, size}, {"tokenizer", tokenizer, sizeof(tokenizer)}}, 2};

	fuzz_read(CHECKPOINT_LLAMA2C, &dir);
	free(file);
	return 0;
}
