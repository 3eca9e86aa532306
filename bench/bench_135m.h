/*
 * bench_135m.h - SmolLM2-135M's configuration, the shape the benchmarks of
 * pretrained models use with random weights (bench/README.md).
 */
#ifndef DISTILL_BENCH_135M_H
#define DISTILL_BENCH_135M_H

#include "core/model.h"

/*
 * Vocabulary 49152, d_model 576, 30 layers, 9 heads over 3 key/value heads
 * of 64, SwiGLU of 1536, tied embeddings, rope_theta 100000, RMSNorm eps
 * 1e-5, logits unscaled, causal, no dropout, context 2048.
 */
static inline void
config_135m(ModelConfig *config)
{
	model_config_default(config, 49152, 576, 30, 9);
	config->n_kv_heads = 3;
	config->d_ff = 1536;
	config->max_seq_len = 2048;
	config->prefix_lm = false;
	config->rope_theta = 100000.0f;
	config->norm_eps = 1e-5f;
	config->logit_scale = 1.0f;
}

#endif
