/*
 * fuzz_lora.h - the base model fuzz_lora loads adapters onto, shared with
 * make_seeds.c, whose seeds are adapters of exactly this base: 2 layers,
 * d_model 8, 2 query heads over 1 key/value head (k and v are 4 x 8),
 * d_ff 12, q/k/v biases, untied head.
 */
#ifndef DISTILL_FUZZ_LORA_H
#define DISTILL_FUZZ_LORA_H

#include <stdio.h>
#include <stdlib.h>

#include "core/model.h"

/* What the seeds were saved with and fuzz_lora expects. */
#define FUZZ_LORA_BASE_CHECKSUM 0x5EEDBA5Eu

static inline Model *
fuzz_lora_base(void)
{
	ModelConfig c;
	CoreError	err = {0};
	Model	   *m;

	model_config_default(&c, 13, 8, 2, 2);
	c.n_kv_heads = 1;
	c.d_ff = 12;
	c.max_seq_len = 6;
	c.tied_embeddings = false;
	c.prefix_lm = false;
	c.qkv_bias = true;
	m = model_create(&c, &err);
	if (m == NULL)
	{
		fprintf(stderr, "fuzz_lora_base: %s\n", err.message);
		abort();
	}
	model_init_weights(m, 1);
	return m;
}

#endif
