/*
 * test_lora.c - LoRA adapters over a frozen base (core/lora.h):
 *
 *   - configuration: target names, every validation error, parameter
 *     counts (SmolLM2-135M at rank 16 on every target: PEFT's 4,884,480);
 *   - attaching: PEFT's initialization (A within 1/sqrt(in), B = 0), so
 *     the adapted model starts with the base's exact loss; the base frozen:
 *     no gradient array, base weights unchanged by optimizer steps;
 *   - gradients against central differences, end to end for A and B of
 *     every target of every layer (tied and untied, GQA, qkv biases,
 *     dropout, head_dim != d_model / n_heads), and op by op for the
 *     adapted products including their input gradient;
 *   - against a PyTorch reference (test/data/lora/golden.json, made by
 *     scripts/lora/make_golden.py): loss and adapter gradients;
 *   - merging: the merged model's losses equal the adapted model's;
 *   - serialization: a bit-exact round trip, and every corrupt or foreign
 *     blob rejected with its message, the base untouched;
 *   - a LoRA step gives the same bits with 1 and 2 pool threads;
 *   - fine-tuning stories260K (a real pretrained model) with adapters on a
 *     few fixed sequences brings their loss down.
 */
#include <json-c/json.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "core/checkpoint.h"
#include "core/crc32c.h"
#include "core/lora.h"
#include "core/model.h"
#include "core/model_ops.h"
#include "core/optim.h"
#include "core/pool.h"
#include "core/util.h"
#include "stories.h"
#include "helpers.h"
#include "unit.h"

#define MODEL_TOL 1e-2
#define OP_TOL 1e-3
#define FD_EPS 1e-2f

#define GOLDEN_JSON "test/data/lora/golden.json"

/* ---------------------------------------------------------------- */
/* Helpers */

static uint64_t rng_state = 1234;

static float
uniform(float lo, float hi)
{
	return lo + (hi - lo) * (float) ((splitmix64_next(&rng_state) >> 40) * 0x1.0p-24);
}

static void
fill_random(float *x, size_t n, float scale)
{
	for (size_t i = 0; i < n; i++)
		x[i] = uniform(-scale, scale);
}

static float *
random_array(size_t n, float scale)
{
	float	   *x = malloc(n * sizeof(float));

	fill_random(x, n, scale);
	return x;
}

static float *
copy_floats(const float *x, size_t n)
{
	float	   *c = malloc(n * sizeof(float));

	memcpy(c, x, n * sizeof(float));
	return c;
}

static void
tiny_config(ModelConfig *c, bool prefix_lm, bool tied, int n_kv_heads,
			bool qkv_bias, float dropout)
{
	model_config_default(c, 11, 8, 2, 2);
	c->n_kv_heads = n_kv_heads;
	c->d_ff = 12;
	c->max_seq_len = 8;
	c->prefix_lm = prefix_lm;
	c->tied_embeddings = tied;
	c->qkv_bias = qkv_bias;
	c->dropout = dropout;
}

static LoraConfig
lora_config(int rank, float alpha, unsigned targets)
{
	LoraConfig	l = {rank, alpha, targets};

	return l;
}

static Model *
new_model(const ModelConfig *c, uint64_t seed)
{
	CoreError	err = {0};
	Model	   *m = model_create(c, &err);

	CHECKF(m != NULL, "model_create: %s", err.message);
	if (m != NULL)
		model_init_weights(m, seed);
	return m;
}

/* A model with adapters and training buffers for batches up to 3 x 7. */
static Model *
adapted_model(const ModelConfig *c, const LoraConfig *l, uint64_t seed)
{
	CoreError	err = {0};
	Model	   *m = new_model(c, seed);

	CHECKF(lora_attach(m, l, seed + 1, &err), "lora_attach: %s", err.message);
	CHECKF(model_alloc_training(m, 3, 7, &err), "alloc: %s", err.message);
	return m;
}

/* A fixed batch of 3 sequences of row length 7. */
typedef struct BatchCtx
{
	Model	   *model;
	ModelBatch	batch;
	int32_t		tokens[21];
	int32_t		lengths[3];
	int32_t		prefix[3];
	float		weights[21];
	float		token_nll[21];
} BatchCtx;

static void
fill_batch(BatchCtx *c, Model *model)
{
	static const int32_t lengths[3] = {7, 5, 6};
	static const int32_t prefix[3] = {3, 2, 4};

	c->model = model;
	memcpy(c->lengths, lengths, sizeof(lengths));
	memcpy(c->prefix, prefix, sizeof(prefix));
	for (int b = 0; b < 3; b++)
		for (int t = 0; t < 7; t++)
		{
			c->tokens[b * 7 + t] = (b * 5 + t * 3 + 1) % model->config.vocab_size;
			c->weights[b * 7 + t] = t >= c->prefix[b] && t >= 1 && t < c->lengths[b]
				? 0.25f + (b + t) % 3 * 0.25f : 0.0f;
		}
	c->batch = (ModelBatch)
	{
		3, 7, c->tokens, c->lengths, c->prefix, c->weights, c->token_nll
	};
}

static double
batch_loss(void *p)
{
	BatchCtx   *c = p;

	c->model->dropout_step = 0;	/* the same dropout masks every time */
	return model_forward(c->model, &c->batch, true);
}

/* ---------------------------------------------------------------- */
/* Configuration */

static void
expect_invalid(const LoraConfig *l, const ModelConfig *c, const char *needle)
{
	CoreError	err = {0};
	bool		ok = lora_config_validate(l, c, &err);

	CHECKF(!ok && err.kind == CORE_ERR_INVALID_INPUT && strstr(err.message, needle) != NULL,
		   "rank %d alpha %g targets 0x%x: wanted \"%s\", got \"%s\"",
		   l->rank, l->alpha, l->targets, needle, err.message);
}

static void
smollm2_config(ModelConfig *c)
{
	model_config_default(c, 49152, 576, 30, 9);
	c->n_kv_heads = 3;
	c->d_ff = 1536;
	c->max_seq_len = 2048;
	c->tied_embeddings = true;
	c->prefix_lm = false;
	c->logit_scale = 1.0f;
}

static void
test_config(void)
{
	static const char *const names[] = {"q", "k", "v", "o", "gate", "up", "down"};
	ModelConfig c,
				smol;
	LoraConfig	l;
	unsigned	all = 0;
	CoreError	err = {0};

	for (int t = 0; t < LORA_N_TARGETS; t++)
	{
		unsigned	bit = lora_target_from_name(names[t]);

		CHECKF(bit == 1u << t, "%s -> 0x%x", names[t], bit);
		CHECK(lora_target_name(bit) != NULL && strcmp(lora_target_name(bit), names[t]) == 0);
		all |= bit;
	}
	CHECK(all == LORA_ALL_TARGETS);
	CHECK(lora_target_from_name("q_proj") == 0);
	CHECK(lora_target_from_name("Q") == 0);
	CHECK(lora_target_from_name("") == 0);
	CHECK(lora_target_name(LORA_Q | LORA_V) == NULL);

	/* d_model 8, heads of 4, 1 key/value head: k and v are 4 x 8 */
	tiny_config(&c, false, true, 1, false, 0.0f);
	l = lora_config(4, 8.0f, LORA_ALL_TARGETS);
	CHECKF(lora_config_validate(&l, &c, &err), "%s", err.message);
	l.rank = 5;
	expect_invalid(&l, &c, "more than the smallest side of the k matrix (4 x 8)");
	l.targets = LORA_Q | LORA_O;
	CHECK(lora_config_validate(&l, &c, NULL));
	l = lora_config(0, 8.0f, LORA_Q);
	expect_invalid(&l, &c, "rank 0 is outside 1..256");
	l.rank = 257;
	expect_invalid(&l, &c, "rank 257 is outside 1..256");
	l = lora_config(2, 0.0f, LORA_Q);
	expect_invalid(&l, &c, "alpha 0 must be positive and finite");
	l.alpha = -1.0f;
	expect_invalid(&l, &c, "alpha -1 must be positive");
	l.alpha = INFINITY;
	expect_invalid(&l, &c, "must be positive and finite");
	l.alpha = NAN;
	expect_invalid(&l, &c, "must be positive and finite");
	l = lora_config(2, 4.0f, 0);
	expect_invalid(&l, &c, "non-empty set of q, k, v, o, gate, up, down");
	l.targets = LORA_Q | (1u << 7);
	expect_invalid(&l, &c, "non-empty set");

	/* PEFT's count for SmolLM2-135M, r = 16, every linear layer */
	smollm2_config(&smol);
	l = lora_config(16, 32.0f, LORA_ALL_TARGETS);
	CHECK(lora_config_validate(&l, &smol, NULL));
	CHECKF(lora_n_params(&smol, &l) == 4884480, "%zu", lora_n_params(&smol, &l));
	l.targets = LORA_Q | LORA_V;
	CHECKF(lora_n_params(&smol, &l) == 30 * 16 * (576 + 576 + 576 + 192),
		   "%zu", lora_n_params(&smol, &l));
	/*
	 * LoRA's memory: the adapters with their gradients, AdamW state and
	 * activations take less than the base's gradients alone would; it
	 * grows linearly with the batch
	 */
	l.targets = LORA_ALL_TARGETS;
	CHECK(lora_training_bytes(&smol, &l, 8, 256) <
		  model_activation_bytes(&smol, 8, 256) + 4 * model_count_params(&smol));
	CHECK(lora_training_bytes(&smol, &l, 2, 256) - lora_training_bytes(&smol, &l, 1, 256) ==
		  lora_training_bytes(&smol, &l, 3, 256) - lora_training_bytes(&smol, &l, 2, 256));
	CHECK(lora_training_bytes(&smol, &l, 1, 256) >
		  model_activation_bytes(&smol, 1, 256) + 4 * 4 * lora_n_params(&smol, &l));
}

/* ---------------------------------------------------------------- */
/* Attaching, freezing */

static void
test_attach(void)
{
	ModelConfig c;
	LoraConfig	l = lora_config(2, 4.0f, LORA_ALL_TARGETS);
	Model	   *base,
			   *m,
			   *again;
	BatchCtx	bc,
				ac;
	float		base_loss,
				adapted_loss;
	CoreError	err = {0};
	bool		a_in_bounds = true,
				b_zero = true;

	tiny_config(&c, true, false, 1, true, 0.0f);
	base = new_model(&c, 3);
	CHECK(model_alloc_training(base, 3, 7, &err));
	fill_batch(&bc, base);
	base_loss = batch_loss(&bc);

	/* seed 3 for the base, 4 for the adapters */
	m = new_model(&c, 3);
	CHECKF(lora_attach(m, &l, 4, &err), "%s", err.message);
	CHECK(model_alloc_training(m, 3, 7, &err));
	CHECK(m->lora != NULL && m->lora->scale == 2.0f);
	CHECK(m->lora->n_params == lora_n_params(&c, &l));
	for (int i = 0; i < m->config.n_layers * LORA_N_TARGETS; i++)
	{
		const LoraMatrix *mx = &m->lora->matrices[i];
		float		bound = 1.0f / sqrtf((float) mx->in);

		for (int j = 0; j < l.rank * mx->in; j++)
			a_in_bounds &= fabsf(mx->A[j]) <= bound && mx->A[j] != 0.0f;
		for (int j = 0; j < mx->out * l.rank; j++)
			b_zero &= mx->B[j] == 0.0f;
	}
	CHECK(a_in_bounds);
	CHECK(b_zero);
	fill_batch(&ac, m);
	adapted_loss = batch_loss(&ac);
	CHECKF(adapted_loss == base_loss, "B = 0: adapted loss %.9g, base %.9g",
		   adapted_loss, base_loss);

	/* deterministic: the same seed, the same adapters; another, others */
	again = new_model(&c, 3);
	CHECK(lora_attach(again, &l, 4, &err));
	CHECK(memcmp(again->lora->params, m->lora->params, m->lora->n_params * sizeof(float)) == 0);
	lora_detach(again);
	CHECK(again->lora == NULL && again->free_lora == NULL);
	CHECK(lora_attach(again, &l, 5, &err));
	CHECK(memcmp(again->lora->params, m->lora->params, m->lora->n_params * sizeof(float)) != 0);

	/* one set of adapters at a time */
	CHECK(!lora_attach(again, &l, 6, &err) && strstr(err.message, "already has adapters"));
	l.rank = 5;
	model_free(again);
	again = new_model(&c, 3);
	CHECK(!lora_attach(again, &l, 6, &err) && again->lora == NULL);
	model_free(again);
	model_free(m);
	model_free(base);
}

/*
 * With adapters the base has no gradients; optimizer steps on the
 * adapters' block leave every base weight as it was and move the
 * adapters.  Attaching after model_alloc_training() drops the base's
 * gradients.
 */
static void
test_frozen(void)
{
	ModelConfig c;
	LoraConfig	l = lora_config(2, 4.0f, LORA_Q | LORA_V | LORA_DOWN);
	Model	   *m;
	BatchCtx	bc;
	OptimConfig oc;
	Optimizer  *opt;
	ParamBlock	block;
	float	   *base_before,
			   *lora_before;
	float		first = 0.0f,
				last = 0.0f;
	CoreError	err = {0};

	tiny_config(&c, true, true, 2, false, 0.1f);
	m = new_model(&c, 11);
	CHECK(model_alloc_training(m, 3, 7, &err) && m->grads != NULL);
	CHECK(lora_attach(m, &l, 12, &err));
	CHECK(m->grads == NULL && m->acts == NULL);
	CHECK(model_alloc_training(m, 3, 7, &err));
	CHECK(m->grads == NULL && m->lora->grads != NULL);
	CHECK(m->g.embed == NULL && m->g.lm_head == NULL && m->g.final_norm == NULL);
	for (int i = 0; i < c.n_layers; i++)
		CHECK(m->g.layers[i].qkv == NULL && m->g.layers[i].down_proj == NULL &&
			  m->g.layers[i].attn_norm == NULL);

	base_before = copy_floats(m->params, m->n_params);
	lora_before = copy_floats(m->lora->params, m->lora->n_params);
	optim_config_default(&oc, 1e-2f, 20);
	opt = optim_create_for(m->lora->n_params, &oc, &err);
	fill_batch(&bc, m);
	for (int step = 0; step < 20; step++)
	{
		float		loss;

		model_zero_grad(m);
		loss = model_forward(m, &bc.batch, true);
		model_backward(m);
		CHECK(isfinite(optim_step_block(opt, lora_param_block(m, &block))));
		first = step == 0 ? loss : first;
		last = loss;
	}
	CHECK(block.params == m->lora->params && block.grads == m->lora->grads &&
		  block.n_params == m->lora->n_params && block.n_ranges == 1 &&
		  block.ranges[0].decay);
	CHECK(memcmp(base_before, m->params, m->n_params * sizeof(float)) == 0);
	CHECK(memcmp(lora_before, m->lora->params, m->lora->n_params * sizeof(float)) != 0);
	CHECKF(last < first, "20 LoRA steps: loss %g -> %g", first, last);
	/* detaching leaves the base as it was, without training buffers */
	lora_detach(m);
	CHECK(m->lora == NULL && m->acts == NULL && m->grads == NULL);
	CHECK(memcmp(base_before, m->params, m->n_params * sizeof(float)) == 0);
	CHECK(model_alloc_training(m, 3, 7, &err) && m->grads != NULL);
	free(base_before);
	free(lora_before);
	optim_free(opt);
	model_free(m);
}

/* ---------------------------------------------------------------- */
/* Gradients */

static const char *const target_names[LORA_N_TARGETS] = {
	"q", "k", "v", "o", "gate", "up", "down"
};

static void
check_lora_gradient(const char *what, const ModelConfig *config,
					const LoraConfig *l)
{
	Model	   *m = adapted_model(config, l, 21);
	BatchCtx	bc;
	double		worst = 0.0;
	char		worst_name[32] = "";

	/* B = 0 would leave A's gradient 0: both random */
	fill_random(m->lora->params, m->lora->n_params, 0.5f);
	fill_batch(&bc, m);
	model_zero_grad(m);
	batch_loss(&bc);
	model_backward(m);
	for (int i = 0; i < m->config.n_layers * LORA_N_TARGETS; i++)
	{
		LoraMatrix *mx = &m->lora->matrices[i];

		if (mx->in == 0)
			continue;
		for (int which = 0; which < 2; which++)
		{
			float	   *x = which == 0 ? mx->A : mx->B;
			float	   *g = which == 0 ? mx->dA : mx->dB;
			double		err = gradient_error(x, g, (size_t) l->rank * (which == 0 ? mx->in : mx->out),
											 batch_loss, &bc, FD_EPS);
			char		name[32];

			snprintf(name, sizeof(name), "layer %d %s %c", i / LORA_N_TARGETS,
					 target_names[i % LORA_N_TARGETS], which == 0 ? 'A' : 'B');
			CHECKF(err < MODEL_TOL, "%s: %s: relative error %g", what, name, err);
			if (err > worst)
			{
				worst = err;
				strcpy(worst_name, name);
			}
		}
	}
	printf("  gradient %-40s rel err %.2e (worst: %s)\n", what, worst, worst_name);
	model_free(m);
}

static void
test_model_gradients(void)
{
	ModelConfig c;
	LoraConfig	l = lora_config(2, 3.0f, LORA_ALL_TARGETS);

	tiny_config(&c, true, true, 2, false, 0.0f);
	check_lora_gradient("LoRA: prefix-LM, tied", &c, &l);
	tiny_config(&c, false, false, 1, true, 0.0f);
	check_lora_gradient("LoRA: causal, untied, GQA, bias", &c, &l);
	tiny_config(&c, true, true, 1, true, 0.2f);
	check_lora_gradient("LoRA: prefix-LM, tied, GQA, dropout 0.2", &c, &l);
	tiny_config(&c, false, false, 1, true, 0.0f);
	c.head_dim = 6;				/* q 12 x 8, k and v 6 x 8, o 8 x 12 */
	l = lora_config(3, 1.0f, LORA_ALL_TARGETS);
	check_lora_gradient("LoRA: head_dim 6, rank 3", &c, &l);
	tiny_config(&c, false, true, 1, false, 0.0f);
	l = lora_config(1, 2.0f, LORA_K | LORA_UP);
	check_lora_gradient("LoRA: rank 1 on k and up", &c, &l);
}

/*
 * One adapted product on its own, with the base product before it as
 * model_train.c runs them: y = x W^T + scale B (A x) into the columns of
 * a fused output, loss = sum(y * probe) in double; gradients of x, A, B.
 */
#define OP_N 5

typedef struct SiteCtx
{
	Model	   *model;
	int			layer;
	LoraSite	site;
	const float *W;
	int			in_dim;
	int			width;
	float	   *x;
	float	   *y;
	const float *probe;
} SiteCtx;

static double
site_loss(void *p)
{
	SiteCtx    *c = p;
	double		s = 0.0;

	linear_forward(c->y, c->x, c->W, NULL, OP_N, c->in_dim, c->width);
	lora_forward(c->model->lora, c->layer, c->site, c->x, c->y, OP_N);
	for (int i = 0; i < OP_N * c->width; i++)
		s += (double) c->y[i] * c->probe[i];
	return s;
}

static void
check_site(Model *m, LoraSite site, const float *W, int in_dim, int width,
		   const char *what)
{
	SiteCtx		c = {m, 1, site, W, in_dim, width, NULL, NULL, NULL};
	float	   *dx = malloc(OP_N * in_dim * sizeof(float));
	double		err;

	c.x = random_array((size_t) OP_N * in_dim, 1.0f);
	c.y = malloc((size_t) OP_N * width * sizeof(float));
	c.probe = random_array((size_t) OP_N * width, 1.0f);
	model_zero_grad(m);
	site_loss(&c);
	linear_backward(dx, NULL, NULL, c.probe, c.x, W, OP_N, in_dim, width);
	lora_backward(m->lora, 1, site, c.x, c.probe, dx, OP_N);
	err = gradient_error(c.x, dx, (size_t) OP_N * in_dim, site_loss, &c, FD_EPS);
	printf("  gradient %-40s rel err %.2e\n", what, err);
	CHECKF(err < OP_TOL, "%s: input: relative error %g", what, err);
	for (int t = 0; t < LORA_N_TARGETS; t++)
	{
		LoraMatrix *mx = &m->lora->matrices[LORA_N_TARGETS + t];

		if (mx->in == 0 || mx->in != in_dim || mx->width != width)
			continue;
		err = gradient_error(mx->A, mx->dA, (size_t) m->lora->config.rank * mx->in,
							 site_loss, &c, FD_EPS);
		CHECKF(err < OP_TOL, "%s: %s A: relative error %g", what, target_names[t], err);
		err = gradient_error(mx->B, mx->dB, (size_t) m->lora->config.rank * mx->out,
							 site_loss, &c, FD_EPS);
		CHECKF(err < OP_TOL, "%s: %s B: relative error %g", what, target_names[t], err);
	}
	free(c.x);
	free(c.y);
	free((float *) c.probe);
	free(dx);
}

static void
test_site_gradients(void)
{
	ModelConfig c;
	LoraConfig	l = lora_config(3, 6.0f, LORA_ALL_TARGETS);
	Model	   *m;
	CoreError	err = {0};
	int			d,
				q_dim,
				qkv_dim;

	tiny_config(&c, false, false, 1, false, 0.0f);
	c.d_model = 12;
	c.n_heads = 4;
	c.d_ff = 10;
	c.head_dim = 4;				/* q 16 x 12, k and v 4 x 12 */
	m = new_model(&c, 31);
	CHECK(lora_attach(m, &l, 32, &err));
	CHECK(model_alloc_training(m, 1, OP_N, &err));
	fill_random(m->lora->params, m->lora->n_params, 0.5f);
	d = c.d_model;
	q_dim = c.n_heads * c.head_dim;
	qkv_dim = q_dim + 2 * c.n_kv_heads * c.head_dim;
	check_site(m, LORA_SITE_QKV, m->w.layers[1].qkv, d, qkv_dim, "LoRA site qkv (GQA)");
	check_site(m, LORA_SITE_O, m->w.layers[1].o_proj, q_dim, d, "LoRA site o");
	check_site(m, LORA_SITE_GATE_UP, m->w.layers[1].gate_up, d, 2 * c.d_ff,
			   "LoRA site gate_up");
	check_site(m, LORA_SITE_DOWN, m->w.layers[1].down_proj, c.d_ff, d, "LoRA site down");
	model_free(m);
}

/* ---------------------------------------------------------------- */
/* Merging */

static void
test_merge(void)
{
	ModelConfig c;
	LoraConfig	l = lora_config(2, 5.0f, LORA_ALL_TARGETS);
	Model	   *m;
	BatchCtx	bc;
	float		adapted,
				merged,
				nll[21];
	double		max_rel = 0.0;
	double	   *want;
	float	   *base;
	const LoraMatrix *q;
	size_t		q_numel;
	CoreError	err = {0};

	tiny_config(&c, true, false, 1, true, 0.0f);
	m = adapted_model(&c, &l, 41);
	fill_random(m->lora->params, m->lora->n_params, 0.5f);
	fill_batch(&bc, m);
	adapted = batch_loss(&bc);
	memcpy(nll, bc.token_nll, sizeof(nll));

	/* layer 0's q_proj after merging, in double */
	q = &m->lora->matrices[0];
	q_numel = (size_t) q->out * q->in;
	base = copy_floats(m->w.layers[0].qkv, q_numel);
	want = malloc(q_numel * sizeof(double));
	for (int o = 0; o < q->out; o++)
		for (int i = 0; i < q->in; i++)
		{
			double		ba = 0.0;

			for (int r = 0; r < l.rank; r++)
				ba += (double) q->B[o * l.rank + r] * q->A[r * q->in + i];
			want[o * q->in + i] = base[o * q->in + i] + m->lora->scale * ba;
		}

	CHECK(lora_merge(m, &err));
	CHECK(m->lora == NULL && m->grads == NULL && m->acts == NULL);
	CHECKF(relative_error(m->w.layers[0].qkv, want, q_numel) < 1e-6,
		   "merged q_proj: relative error %g",
		   relative_error(m->w.layers[0].qkv, want, q_numel));
	CHECK(model_alloc_training(m, 3, 7, &err));
	merged = batch_loss(&bc);
	CHECKF(fabsf(merged - adapted) <= 1e-5f * fabsf(adapted),
		   "merged loss %.9g, adapted %.9g", merged, adapted);
	for (int i = 0; i < 21; i++)
		max_rel = fmax(max_rel, fabs(bc.token_nll[i] - nll[i]) / fmax(fabs(nll[i]), 1e-3));
	CHECKF(max_rel < 1e-5, "per-token losses: relative difference %g", max_rel);
	printf("  merge: loss %.7f adapted, %.7f merged; per token max rel diff %.1e\n",
		   adapted, merged, max_rel);

	/* nothing to merge; packed models must be merged before packing */
	CHECK(!lora_merge(m, &err) && strstr(err.message, "no adapters"));
	CHECK(lora_attach(m, &l, 42, &err));
	CHECK(model_pack_for_prediction(m, &err));
	CHECK(!lora_merge(m, &err) && strstr(err.message, "before packing"));
	CHECK(m->lora != NULL);
	free(base);
	free(want);
	model_free(m);
}

/* ---------------------------------------------------------------- */
/* Serialization */

#define BASE_CRC 0xC0FFEE11u

static void
put_u32(uint8_t *p, uint32_t v)
{
	le_put_u32(p, v);
}

/* Write the CRC-32C of blob[0, len - 4) into its last four bytes. */
static void
reseal(uint8_t *blob, size_t len)
{
	put_u32(blob + len - 4, crc32c(0, blob, len - 4));
}

/* Load must fail with kind and a message holding needle, base untouched. */
static void
expect_rejected(Model *base, const uint8_t *blob, size_t len, uint32_t base_crc,
				CoreErrorKind kind, const char *needle, const char *what)
{
	CoreError	err = {0};
	bool		ok = lora_load(base, blob, len, base_crc, &err);

	CHECKF(!ok && err.kind == kind && strstr(err.message, needle) != NULL,
		   "%s: wanted \"%s\", got %s \"%s\"", what, needle, ok ? "success" : "", err.message);
	CHECKF(base->lora == NULL && base->acts != NULL,
		   "%s: the base changed", what);
	if (ok)
	{
		lora_detach(base);
		model_alloc_training(base, 3, 7, &err);
	}
}

static uint8_t *
edited(const uint8_t *blob, size_t len, size_t at, uint32_t value, bool seal)
{
	uint8_t    *copy = malloc(len);

	memcpy(copy, blob, len);
	put_u32(copy + at, value);
	if (seal)
		reseal(copy, len);
	return copy;
}

static void
test_save_load(void)
{
	ModelConfig c,
				other_c;
	LoraConfig	l = lora_config(2, 7.5f, LORA_Q | LORA_K | LORA_O | LORA_UP);
	Model	   *m,
			   *base,
			   *other;
	uint8_t    *blob,
			   *again,
			   *bad;
	size_t		len,
				len2;
	size_t		data = 52;		/* header bytes */
	CoreError	err = {0};
	float		nan = NAN;
	uint32_t	nan_bits;

	tiny_config(&c, false, false, 1, true, 0.0f);
	m = adapted_model(&c, &l, 51);
	fill_random(m->lora->params, m->lora->n_params, 0.5f);
	blob = lora_save(m, BASE_CRC, &len);
	CHECK(blob != NULL && len == data + 4 * m->lora->n_params + 4);
	CHECK(memcmp(blob, "DLRA", 4) == 0 && le_get_u32(blob + 4) == 1);

	/* into a fresh copy of the base: the same adapters, bit for bit */
	base = new_model(&c, 51);
	CHECK(model_alloc_training(base, 3, 7, &err));
	CHECKF(lora_load(base, blob, len, BASE_CRC, &err), "%s", err.message);
	CHECK(base->lora != NULL && base->lora->config.rank == 2 &&
		  base->lora->config.alpha == 7.5f && base->lora->config.targets == l.targets &&
		  base->lora->scale == m->lora->scale);
	CHECK(base->lora->n_params == m->lora->n_params &&
		  memcmp(base->lora->params, m->lora->params, m->lora->n_params * sizeof(float)) == 0);
	again = lora_save(base, BASE_CRC, &len2);
	CHECK(again != NULL && len2 == len && memcmp(again, blob, len) == 0);
	free(again);
	lora_detach(base);
	CHECK(lora_save(base, BASE_CRC, &len2) == NULL && len2 == 0);
	CHECK(model_alloc_training(base, 3, 7, &err));

	/* truncated */
	expect_rejected(base, blob, len - 1, BASE_CRC, CORE_ERR_CORRUPT, "truncated", "one byte short");
	expect_rejected(base, blob, data + 3, BASE_CRC, CORE_ERR_CORRUPT, "too short", "header only");
	expect_rejected(base, blob, 0, BASE_CRC, CORE_ERR_CORRUPT, "too short", "empty");
	/* not adapters, another version */
	bad = edited(blob, len, 0, 0x4D545344, true);	/* "DSTM" */
	expect_rejected(base, bad, len, BASE_CRC, CORE_ERR_CORRUPT, "not LoRA adapters", "magic");
	free(bad);
	bad = edited(blob, len, 4, 2, true);
	expect_rejected(base, bad, len, BASE_CRC, CORE_ERR_CORRUPT, "format version 2", "version");
	free(bad);
	/* a flipped bit anywhere: the checksum */
	bad = edited(blob, len, data + 8, le_get_u32(blob + data + 8) ^ 0x100, false);
	expect_rejected(base, bad, len, BASE_CRC, CORE_ERR_CORRUPT, "checksum", "flipped data bit");
	free(bad);
	bad = edited(blob, len, len - 4, le_get_u32(blob + len - 4) ^ 1, false);
	expect_rejected(base, bad, len, BASE_CRC, CORE_ERR_CORRUPT, "checksum", "flipped CRC bit");
	free(bad);
	/* a parameter count that disagrees with the length */
	bad = edited(blob, len, 44, (uint32_t) m->lora->n_params + 1, true);
	expect_rejected(base, bad, len, BASE_CRC, CORE_ERR_CORRUPT, "header announces", "n_params");
	free(bad);
	bad = edited(blob, len, 48, 1, true);	/* n_params's high word: 2^32 more */
	expect_rejected(base, bad, len, BASE_CRC, CORE_ERR_CORRUPT, "header announces", "n_params high");
	free(bad);
	/* a configuration that is not valid, or of another size */
	bad = edited(blob, len, 12, 0, true);	/* alpha 0 */
	expect_rejected(base, bad, len, BASE_CRC, CORE_ERR_CORRUPT, "alpha 0", "alpha");
	free(bad);
	bad = edited(blob, len, 8, 0, true);	/* rank 0 */
	expect_rejected(base, bad, len, BASE_CRC, CORE_ERR_CORRUPT, "rank 0", "rank");
	free(bad);
	bad = edited(blob, len, 8, 5, true);	/* more than k's 4 rows */
	expect_rejected(base, bad, len, BASE_CRC, CORE_ERR_CORRUPT, "smallest side", "rank 5");
	free(bad);
	bad = edited(blob, len, 8, 1, true);	/* fits, but half the floats */
	expect_rejected(base, bad, len, BASE_CRC, CORE_ERR_CORRUPT, "parameters stored", "rank 1");
	free(bad);
	bad = edited(blob, len, 16, LORA_Q | LORA_K | LORA_V | LORA_O, true);
	expect_rejected(base, bad, len, BASE_CRC, CORE_ERR_CORRUPT, "parameters stored", "targets");
	free(bad);
	bad = edited(blob, len, 16, 1u << 9, true);
	expect_rejected(base, bad, len, BASE_CRC, CORE_ERR_CORRUPT, "targets", "unknown target");
	free(bad);
	/* a float that is not finite */
	memcpy(&nan_bits, &nan, 4);
	bad = edited(blob, len, data + 4 * 3, nan_bits, true);
	expect_rejected(base, bad, len, BASE_CRC, CORE_ERR_CORRUPT, "parameter 3 is not a finite", "NaN");
	free(bad);
	bad = edited(blob, len, len - 8, 0x7F800000, true);	/* the last: inf */
	expect_rejected(base, bad, len, BASE_CRC, CORE_ERR_CORRUPT, "not a finite", "inf");
	free(bad);
	/* adapters of another base: another checksum, another shape */
	expect_rejected(base, blob, len, BASE_CRC + 1, CORE_ERR_INVALID_INPUT,
					"belong to another base", "base checksum");
	other_c = c;
	other_c.d_ff = 16;
	other = new_model(&other_c, 51);
	CHECK(model_alloc_training(other, 3, 7, &err));
	expect_rejected(other, blob, len, BASE_CRC, CORE_ERR_INVALID_INPUT,
					"which is not this base", "d_ff");
	model_free(other);
	other_c = c;
	other_c.n_kv_heads = 2;
	other = new_model(&other_c, 51);
	CHECK(model_alloc_training(other, 3, 7, &err));
	expect_rejected(other, blob, len, BASE_CRC, CORE_ERR_INVALID_INPUT,
					"q/k/v widths 8/4", "n_kv_heads");
	model_free(other);
	/* a base that already has adapters */
	CHECK(lora_load(base, blob, len, BASE_CRC, &err));
	CHECK(!lora_load(base, blob, len, BASE_CRC, &err) &&
		  strstr(err.message, "already has adapters"));

	free(blob);
	model_free(base);
	model_free(m);
}

/* ---------------------------------------------------------------- */
/* Threads */

typedef struct ThreadRun
{
	int32_t		tokens[128];
	int32_t		lengths[4];
	int32_t		prefix[4];
	float		weights[128];
	Model	   *model;
	Optimizer  *opt;
	float		loss;
	float		norm;
} ThreadRun;

/*
 * Three LoRA steps (forward, backward, AdamW on the adapters) of a model
 * big enough for pool.h to share SwiGLU, cross-entropy and AdamW (its
 * 315K adapters are five chunks), with 1 and 2 pool threads.
 */
static void
lora_steps(ThreadRun *run, int threads)
{
	ModelConfig c;
	LoraConfig	l = lora_config(64, 64.0f, LORA_ALL_TARGETS);
	OptimConfig oc;
	ParamBlock	block;
	ModelBatch	batch;
	CoreError	err = {0};

	model_config_default(&c, 4096, 128, 2, 4);
	c.max_seq_len = 32;
	c.dropout = 0.1f;
	run->model = new_model(&c, 9);
	CHECK(lora_attach(run->model, &l, 10, &err));
	CHECK(model_alloc_training(run->model, 4, 32, &err));
	fill_random(run->model->lora->params, run->model->lora->n_params, 0.1f);
	for (int b = 0; b < 4; b++)
	{
		run->lengths[b] = 32 - 3 * b;
		run->prefix[b] = 8 + b;
		for (int t = 0; t < 32; t++)
		{
			run->tokens[b * 32 + t] = (b * 1009 + t * 7919) % 4096;
			run->weights[b * 32 + t] = t >= run->prefix[b] && t < run->lengths[b] ? 0.01f : 0.0f;
		}
	}
	batch = (ModelBatch)
	{
		4, 32, run->tokens, run->lengths, run->prefix, run->weights, NULL
	};
	optim_config_default(&oc, 1e-3f, 10);
	run->opt = optim_create_for(run->model->lora->n_params, &oc, &err);
	pool_set_threads(threads);
	for (int step = 0; step < 3; step++)
	{
		model_zero_grad(run->model);
		run->loss = model_forward(run->model, &batch, true);
		model_backward(run->model);
		run->norm = optim_step_block(run->opt, lora_param_block(run->model, &block));
	}
}

static void
test_threads_same_bits(void)
{
	ThreadRun	run[2];
	int			before = threads_now();
	size_t		n;

	rng_state = 77;
	lora_steps(&run[0], 1);
	rng_state = 77;
	lora_steps(&run[1], 2);
	CHECKF(threads_now() > before, "2 threads: the pool's workers did not start");
	n = run[0].model->lora->n_params;
	CHECK(n > 4 * (1 << 16));
	CHECKF(run[0].loss == run[1].loss, "loss %.9g, %.9g", run[0].loss, run[1].loss);
	CHECKF(run[0].norm == run[1].norm, "norm %.9g, %.9g", run[0].norm, run[1].norm);
	CHECK(memcmp(run[0].model->lora->params, run[1].model->lora->params, n * 4) == 0);
	CHECK(memcmp(run[0].opt->m, run[1].opt->m, n * 4) == 0);
	CHECK(memcmp(run[0].opt->v, run[1].opt->v, n * 4) == 0);
	printf("  LoRA step, 1 and 2 pool threads: the same bits (%zu adapter parameters)\n", n);
	pool_set_threads(1);
	for (int t = 0; t < 2; t++)
	{
		optim_free(run[t].opt);
		model_free(run[t].model);
	}
}

/* ---------------------------------------------------------------- */
/* Against PyTorch */

static const float *
json_floats(json_object *array, size_t want, float *out, const char *what)
{
	size_t		n = array != NULL ? json_object_array_length(array) : 0;

	CHECKF(n == want, "%s: %zu numbers, expected %zu", what, n, want);
	if (n != want)
		return NULL;
	for (size_t i = 0; i < n; i++)
		out[i] = (float) json_object_get_double(json_object_array_get_idx(array, i));
	return out;
}

static int
json_int(json_object *obj, const char *key)
{
	json_object *v = NULL;

	json_object_object_get_ex(obj, key, &v);
	return json_object_get_int(v);
}

static json_object *
json_get(json_object *obj, const char *key)
{
	json_object *v = NULL;

	json_object_object_get_ex(obj, key, &v);
	return v;
}

static void
golden_case(json_object *g)
{
	json_object *jc = json_get(g, "config");
	json_object *jl = json_get(g, "lora");
	json_object *jb = json_get(g, "batch");
	json_object *base = json_get(g, "base");
	ModelConfig c;
	LoraConfig	l = {0};
	Model	   *m;
	CoreError	err = {0};
	int			B = json_int(jb, "batch_size"),
				T = json_int(jb, "seq_len");
	int32_t    *tokens = malloc(B * T * sizeof(int32_t)),
			   *lengths = malloc(B * sizeof(int32_t));
	float	   *weights = malloc(B * T * sizeof(float));
	float	   *values;
	double	   *want;
	double		want_loss = json_object_get_double(json_get(g, "loss"));
	float		loss;
	double		worst = 0.0;
	ModelBatch	batch;
	json_object *targets = json_get(jl, "targets");

	model_config_default(&c, json_int(jc, "vocab_size"), json_int(jc, "d_model"),
						 json_int(jc, "n_layers"), json_int(jc, "n_heads"));
	c.n_kv_heads = json_int(jc, "n_kv_heads");
	c.head_dim = json_int(jc, "head_dim");
	c.d_ff = json_int(jc, "d_ff");
	c.max_seq_len = T;
	c.tied_embeddings = json_object_get_boolean(json_get(jc, "tied_embeddings"));
	c.qkv_bias = json_object_get_boolean(json_get(jc, "qkv_bias"));
	c.prefix_lm = false;
	c.rope_theta = (float) json_object_get_double(json_get(jc, "rope_theta"));
	c.norm_eps = (float) json_object_get_double(json_get(jc, "norm_eps"));
	c.logit_scale = (float) json_object_get_double(json_get(jc, "logit_scale"));
	l.rank = json_int(jl, "rank");
	l.alpha = (float) json_object_get_double(json_get(jl, "alpha"));
	for (size_t i = 0; i < json_object_array_length(targets); i++)
		l.targets |= lora_target_from_name(json_object_get_string(json_object_array_get_idx(targets, i)));

	m = model_create(&c, &err);
	CHECKF(m != NULL, "%s", err.message);
	if (m == NULL)
		return;
	for (int i = 0; i < m->n_tensors; i++)
	{
		const ModelTensor *t = &m->tensors[i];

		CHECKF(json_floats(json_get(base, t->name), t->numel, m->params + t->offset, t->name),
			   "golden base tensor %s", t->name);
	}
	values = malloc(lora_n_params(&c, &l) * sizeof(float));
	want = malloc(lora_n_params(&c, &l) * sizeof(double));
	json_floats(json_get(g, "lora_params"), lora_n_params(&c, &l), values, "lora_params");
	CHECKF(lora_attach_values(m, &l, values, &err), "%s", err.message);
	CHECK(model_alloc_training(m, B, T, &err));
	for (int i = 0; i < B * T; i++)
	{
		tokens[i] = json_object_get_int(json_object_array_get_idx(json_get(jb, "tokens"), i));
		weights[i] = (float) json_object_get_double(json_object_array_get_idx(json_get(jb, "weights"), i));
	}
	for (int b = 0; b < B; b++)
		lengths[b] = json_object_get_int(json_object_array_get_idx(json_get(jb, "lengths"), b));
	batch = (ModelBatch)
	{
		B, T, tokens, lengths, NULL, weights, NULL
	};
	model_zero_grad(m);
	loss = model_forward(m, &batch, true);
	model_backward(m);
	CHECKF(fabs(loss - want_loss) <= 1e-5 * fabs(want_loss), "%s: loss %.9g, PyTorch %.9g",
		   json_object_get_string(json_get(g, "name")), loss, want_loss);
	{
		json_object *grads = json_get(g, "lora_grads");
		size_t		offset = 0;

		for (size_t i = 0; i < m->lora->n_params; i++)
			want[i] = json_object_get_double(json_object_array_get_idx(grads, i));
		CHECK(json_object_array_length(grads) == m->lora->n_params);
		/* per matrix: A and B each against their own scale */
		for (int i = 0; i < c.n_layers * LORA_N_TARGETS; i++)
		{
			const LoraMatrix *mx = &m->lora->matrices[i];

			for (int which = 0; which < 2 && mx->in > 0; which++)
			{
				size_t		n = (size_t) l.rank * (which == 0 ? mx->in : mx->out);
				double		e = relative_error(m->lora->grads + offset, want + offset, n);

				CHECKF(e < 1e-4, "%s: layer %d %s %c: relative error %g",
					   json_object_get_string(json_get(g, "name")), i / LORA_N_TARGETS,
					   target_names[i % LORA_N_TARGETS], which == 0 ? 'A' : 'B', e);
				worst = fmax(worst, e);
				offset += n;
			}
		}
		CHECK(offset == m->lora->n_params);
	}
	printf("  PyTorch %-24s loss %.7f (theirs %.7f), adapter gradients max rel err %.1e\n",
		   json_object_get_string(json_get(g, "name")), loss, want_loss, worst);
	free(tokens);
	free(lengths);
	free(weights);
	free(values);
	free(want);
	model_free(m);
}

static void
test_golden(void)
{
	json_object *golden = json_object_from_file(GOLDEN_JSON);
	json_object *cases = json_get(golden, "cases");
	size_t		n = cases != NULL ? json_object_array_length(cases) : 0;

	CHECKF(n >= 2, "%s: %zu cases", GOLDEN_JSON, n);
	for (size_t i = 0; i < n; i++)
		golden_case(json_object_array_get_idx(cases, i));
	json_object_put(golden);
}

/* ---------------------------------------------------------------- */
/* stories260K */

/*
 * Rank 8 adapters on every target of stories260K, trained on four fixed
 * sequences of 32 tokens the model does not know (a fixed permutation of
 * its vocabulary): their mean loss must fall below a third of what it
 * was, the base staying as it was.
 */
static void
test_stories260K(void)
{
	StoriesFiles f = {0};
	CoreError	err = {0};
	Checkpoint *ckpt;
	Model	   *m;
	LoraConfig	l = lora_config(8, 16.0f, LORA_ALL_TARGETS);
	OptimConfig oc;
	Optimizer  *opt;
	ParamBlock	block;
	int32_t		tokens[4 * 32],
				lengths[4] = {32, 32, 32, 32};
	float		weights[4 * 32];
	ModelBatch	batch = {4, 32, tokens, lengths, NULL, weights, NULL};
	float	   *base_before;
	float		first = 0.0f,
				last = 0.0f;

	CHECK(stories_read(&f));
	ckpt = stories_checkpoint(&f, 64, &err);
	stories_free(&f);
	CHECKF(ckpt != NULL, "stories260K: %s", err.message);
	if (ckpt == NULL)
		return;
	m = ckpt->model;
	ckpt->model = NULL;
	checkpoint_free(ckpt);

	CHECKF(lora_attach(m, &l, 1, &err), "%s", err.message);
	CHECK(model_alloc_training(m, 4, 32, &err));
	for (int i = 0; i < 4 * 32; i++)
	{
		tokens[i] = 3 + (i * 37 + (i / 32) * 11) % 509;
		weights[i] = i % 32 == 0 ? 0.0f : 1.0f / (4 * 31);
	}
	base_before = copy_floats(m->params, m->n_params);
	optim_config_default(&oc, 1e-2f, 60);
	oc.warmup_steps = 5;
	oc.weight_decay = 0.0f;
	opt = optim_create_for(m->lora->n_params, &oc, &err);
	for (int step = 0; step < 60; step++)
	{
		float		loss;

		model_zero_grad(m);
		loss = model_forward(m, &batch, true);
		model_backward(m);
		optim_step_block(opt, lora_param_block(m, &block));
		first = step == 0 ? loss : first;
		last = loss;
	}
	printf("  stories260K, rank 8 adapters (%zu parameters), 60 steps: loss %.3f -> %.3f\n",
		   m->lora->n_params, first, last);
	CHECKF(last < first / 3, "stories260K LoRA: loss %g -> %g", first, last);
	CHECK(memcmp(base_before, m->params, m->n_params * sizeof(float)) == 0);
	free(base_before);
	optim_free(opt);
	model_free(m);
}

int
main(void)
{
	model_single_thread();
	test_config();
	test_attach();
	test_frozen();
	test_model_gradients();
	test_site_gradients();
	test_merge();
	test_save_load();
	test_threads_same_bits();
	test_golden();
	test_stories260K();
	return unit_summary("lora");
}
