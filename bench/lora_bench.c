/*
 * lora_bench.c - LoRA fine-tuning against full fine-tuning at
 * SmolLM2-135M's shape (d_model 576, 30 layers, 9 heads, 3 key/value
 * heads, d_ff 1536, vocabulary 49152, tied; random weights), rank 16 on
 * every target (bench/lora runs it; bench/README.md):
 *
 *   - adapter parameters, and the bytes of the adapters with AdamW's state;
 *   - training memory at micro-batches of 8 x 256 tokens, as
 *     model_training_bytes() and lora_training_bytes() plan it;
 *   - one forward + backward of 8 x 256 tokens, full and LoRA, with 1 and
 *     2 threads: the median of REPEAT runs (default 3) after one warm-up.
 *
 * Run from the repository root.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#include "core/lora.h"
#include "core/model.h"
#include "core/util.h"

#include "bench.h"

#define BATCH 8
#define SEQ 256
#define MAX_REPEAT 64

static double
mb(size_t bytes)
{
	return bytes / 1048576.0;
}

static void
smollm2_config(ModelConfig *c)
{
	model_config_default(c, 49152, 576, 30, 9);
	c->n_kv_heads = 3;
	c->d_ff = 1536;
	c->max_seq_len = SEQ;
	c->tied_embeddings = true;
	c->prefix_lm = false;
	c->logit_scale = 1.0f;
	c->norm_eps = 1e-5f;
}

/* Random tokens, every next token weighted: the loss is their mean nll. */
static void
fill_batch(ModelBatch *b, int32_t *tokens, int32_t *lengths, float *weights,
		   int vocab)
{
	uint64_t	state = 1;

	for (int i = 0; i < BATCH * SEQ; i++)
	{
		tokens[i] = (int32_t) (splitmix64_next(&state) % vocab);
		weights[i] = i % SEQ == 0 ? 0.0f : 1.0f / (BATCH * (SEQ - 1));
	}
	for (int s = 0; s < BATCH; s++)
		lengths[s] = SEQ;
	*b = (ModelBatch) {BATCH, SEQ, tokens, lengths, NULL, weights, NULL};
}

/* Median seconds of one forward + backward with n_threads threads. */
static double
time_step(Model *m, const ModelBatch *batch, int n_threads, int repeat)
{
	double		s[MAX_REPEAT];

	model_set_threads(n_threads);
	for (int r = -1; r < repeat; r++)
	{
		double		start = now();

		model_zero_grad(m);
		model_forward(m, batch, true);
		model_backward(m);
		if (r >= 0)
			s[r] = now() - start;
	}
	return median(s, repeat);
}

int
main(void)
{
	ModelConfig c;
	LoraConfig	l = {16, 32.0f, LORA_ALL_TARGETS};
	const char *repeat_env = getenv("REPEAT");
	int			repeat = repeat_env ? atoi(repeat_env) : 3;
	size_t		n_base,
				n_lora,
				full_bytes,
				lora_bytes,
				acts;
	int32_t    *tokens = malloc(BATCH * SEQ * sizeof(int32_t));
	float	   *weights = malloc(BATCH * SEQ * sizeof(float));
	int32_t		lengths[BATCH];
	ModelBatch	batch;
	double		full_s[2],
				lora_s[2];
	CoreError	err = {0};
	Model	   *m;

	repeat = repeat < 1 ? 1 : repeat > MAX_REPEAT ? MAX_REPEAT : repeat;
	smollm2_config(&c);
	n_base = model_count_params(&c);
	n_lora = lora_n_params(&c, &l);
	acts = model_activation_bytes(&c, BATCH, SEQ);
	full_bytes = model_training_bytes(&c, BATCH, SEQ) + 2 * sizeof(float) * n_base;
	lora_bytes = lora_training_bytes(&c, &l, BATCH, SEQ);

	printf("SmolLM2-135M's shape: %zu parameters (%.0f MB of float32 weights)\n",
		   n_base, mb(n_base * sizeof(float)));
	printf("LoRA rank %d, alpha %g, targets q k v o gate up down: %zu adapter parameters (%.2f%% of the base)\n",
		   l.rank, l.alpha, n_lora, 100.0 * n_lora / n_base);
	printf("  adapters + AdamW state (params, m, v): %.1f MB; with their gradients %.1f MB\n",
		   mb(3 * sizeof(float) * n_lora), mb(4 * sizeof(float) * n_lora));
	printf("training memory at %d x %d tokens, besides the base's weights (model_training_bytes + AdamW, lora_training_bytes):\n",
		   BATCH, SEQ);
	printf("  full: gradients %.0f MB + AdamW %.0f MB + activations %.0f MB = %.0f MB\n",
		   mb(sizeof(float) * n_base), mb(2 * sizeof(float) * n_base), mb(acts), mb(full_bytes));
	printf("  LoRA: adapters, gradients, AdamW %.0f MB + activations %.0f MB (adapters' %.0f MB) = %.0f MB\n",
		   mb(4 * sizeof(float) * n_lora), mb(lora_bytes - 4 * sizeof(float) * n_lora),
		   mb(lora_activation_floats(&c, &l, BATCH * SEQ) * sizeof(float)), mb(lora_bytes));
	printf("  with the weights: full %.0f MB, LoRA %.0f MB\n",
		   mb(full_bytes + n_base * sizeof(float)), mb(lora_bytes + n_base * sizeof(float)));
	fflush(stdout);

	m = model_create(&c, &err);
	if (m == NULL)
	{
		fprintf(stderr, "%s\n", err.message);
		return 1;
	}
	model_init_weights(m, 1);
	fill_batch(&batch, tokens, lengths, weights, c.vocab_size);
	if (!model_alloc_training(m, BATCH, SEQ, &err))
	{
		fprintf(stderr, "%s\n", err.message);
		return 1;
	}
	for (int t = 0; t < 2; t++)
		full_s[t] = time_step(m, &batch, t + 1, repeat);
	if (!lora_attach(m, &l, 2, &err) || !model_alloc_training(m, BATCH, SEQ, &err))
	{
		fprintf(stderr, "%s\n", err.message);
		return 1;
	}
	for (int t = 0; t < 2; t++)
		lora_s[t] = time_step(m, &batch, t + 1, repeat);

	printf("forward + backward of %d x %d tokens, median of %d:\n", BATCH, SEQ, repeat);
	printf("  threads     full     LoRA  LoRA/full\n");
	for (int t = 0; t < 2; t++)
		printf("  %7d  %6.2f s  %6.2f s  %8.2f\n", t + 1, full_s[t], lora_s[t],
			   lora_s[t] / full_s[t]);
	model_free(m);
	free(tokens);
	free(weights);
	return 0;
}
