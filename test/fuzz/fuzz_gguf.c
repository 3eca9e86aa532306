/*
 * fuzz_gguf.c - GGUF files (core/checkpoint.h, checkpoint_gguf.c).
 *
 * The input is the file.  One that loads must give a consistent
 * checkpoint (dtypes, tokenizer strings inside the file) whose model
 * scores and generates.
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
	uint8_t    *file = (uint8_t *) fuzz_copy(data, size, false);
	FuzzDir		dir = {{{"", file, size}}, 1};

	fuzz_read(CHECKPOINT_GGUF, &dir);
	free(file);
	return 0;
}
