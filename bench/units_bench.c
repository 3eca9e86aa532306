/*
 * units_bench.c - speed figures of src/core pieces that no other benchmark
 * covers (bench/units runs it; bench/README.md):
 *
 *   - the tokenizer: training a 4096-token vocabulary on the first 5 MB of
 *     ../shared/data/cqa_train.jsonl (its lines as raw text), and encoding
 *     the whole file; the Llama 2 tokenizer encoding the same file, and
 *     one word of 200,000 letters;
 *   - one row's prediction with a d_model 256, 4-layer model (vocabulary
 *     4096, weights packed as the extension packs them): scoring 3 labels
 *     of 2 tokens after a 64-token prefix, and decoding 16 tokens greedily,
 *     with 1 and 2 threads;
 *   - at SmolLM2-135M's shape (d_model 576, 30 layers, 9 heads, 3 key/value
 *     heads, d_ff 1536, vocabulary 49152; random weights), with 1 and 2
 *     threads: the packed matrix products of one token (decoding) and of
 *     64 (a prompt) in GFLOP/s; prompt processing (64 tokens) and greedy
 *     decoding (64 tokens) as bench/pretrained measures them inside
 *     PostgreSQL; one AdamW step over its 135M parameters; the bytes of
 *     the training activations (model_activation_bytes()) at 1 x 256,
 *     8 x 256 and 1 x 2048 tokens, one forward + backward of 8 x 256 and
 *     of 1 x 2048 tokens, and at these two shapes the attention of one
 *     layer.
 *
 * Training throughput is bench/train's, distill_predict over many rows
 * bench/predict's.  Each figure is the median of REPEAT runs (default 5).
 * Run from the repository root.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "core/model.h"
#include "core/model_ops.h"
#include "core/optim.h"
#include "core/packed.h"
#include "core/tokenizer.h"
#include "core/util.h"

#include "bench.h"
#include "bench_135m.h"
#include "../test/unit/corpus.h"
#include "../test/unit/stories.h"

#define CQA_PATH "../shared/data/cqa_train.jsonl"
#define LLAMA2_TOKENIZER "../shared/models/llama2-tokenizer/tokenizer.bin"
#define LONG_WORD 200000
#define TRAIN_BYTES (5 << 20)
#define MAX_REPEAT 64

/* Median seconds to encode every line of c with t; *tokens: how many. */
static double
encode_lines(const Tokenizer *t, const Corpus *c, int repeat, size_t *tokens)
{
	double		seconds[MAX_REPEAT];

	for (int r = 0; r < repeat; r++)
	{
		double		t0 = now();

		*tokens = 0;
		for (size_t i = 0; i < c->n; i++)
		{
			int32_t    *ids;
			int			k = tok_encode(t, c->texts[i], c->lens[i], &ids);

			*tokens += k > 0 ? k : 0;
			free(ids);
		}
		seconds[r] = now() - t0;
	}
	return median(seconds, repeat);
}

static void
print_encoding(const char *name, const Corpus *c, size_t tokens, double s)
{
	printf("tokenizer: %s: encode %zu bytes -> %zu tokens: %.2f s, %.2f M tokens/s, %.1f MB/s\n",
		   name, c->bytes, tokens, s, tokens / s / 1e6, c->bytes / s / 1e6);
}

static int
bench_trained_tokenizer(int repeat, const Corpus *c)
{
	size_t		n = 0,
				train_bytes = 0,
				tokens = 0;
	double		train_s[MAX_REPEAT];
	double		encode_s;
	Tokenizer  *t = NULL;
	CoreError	err = {0};

	while (n < c->n && train_bytes < TRAIN_BYTES)
		train_bytes += c->lens[n++];
	for (int r = 0; r < repeat; r++)
	{
		double		t0 = now();

		tok_free(t);
		t = tok_train(c->texts, c->lens, n, 4096, SIZE_MAX, NULL, &err);
		train_s[r] = now() - t0;
		if (t == NULL)
		{
			fprintf(stderr, "tok_train: %s\n", err.message);
			return 1;
		}
	}
	printf("tokenizer: train vocab 4096 on %zu bytes (%zu lines): %.2f s\n",
		   train_bytes, n, median(train_s, repeat));
	encode_s = encode_lines(t, c, repeat, &tokens);
	print_encoding("vocab 4096", c, tokens, encode_s);
	tok_free(t);
	return 0;
}

/*
 * The Llama 2 tokenizer (SentencePiece-style BPE, 32,000 tokens) on the
 * same lines, and on one word of LONG_WORD letters: a single merge of
 * that many symbols, which bpe_merge() does in O(n log n).
 */
static int
bench_llama2_tokenizer(int repeat, const Corpus *c)
{
	TokenizerSource src = {.kind = TOKSRC_LLAMA2C, .vocab_size = 32000, .bos_id = -1,
	.eos_id = -1};
	void	   *bin = stories_read_file(LLAMA2_TOKENIZER, &src.len);
	char	   *word = malloc(LONG_WORD);
	double		word_s[MAX_REPEAT];
	double		encode_s;
	size_t		tokens = 0;
	CoreError	err = {0};
	Tokenizer  *t;

	src.data = bin;
	if (bin == NULL || word == NULL || (t = tok_from_source(&src, &err)) == NULL)
	{
		fprintf(stderr, "cannot load %s: %s\n", LLAMA2_TOKENIZER, err.message);
		free(bin);
		free(word);
		return 1;
	}
	encode_s = encode_lines(t, c, repeat, &tokens);
	print_encoding("Llama 2", c, tokens, encode_s);
	memset(word, 'a', LONG_WORD);
	for (int r = 0; r < repeat; r++)
	{
		double		t0 = now();
		int32_t    *ids;

		tokens = tok_encode(t, word, LONG_WORD, &ids);
		word_s[r] = now() - t0;
		free(ids);
	}
	printf("tokenizer: Llama 2: one word of %d letters -> %zu tokens: %.3f s\n", LONG_WORD,
		   tokens, median(word_s, repeat));
	tok_free(t);
	free(word);
	free(bin);
	return 0;
}

static int
bench_tokenizer(int repeat)
{
	Corpus		c;
	int			status;

	if (!corpus_load_file(&c, CQA_PATH) || c.n == 0)
	{
		fprintf(stderr, "cannot read %s (run from the repository root)\n", CQA_PATH);
		return 1;
	}
	status = bench_trained_tokenizer(repeat, &c) || bench_llama2_tokenizer(repeat, &c);
	corpus_free(&c);
	return status;
}

static int
bench_prediction(int repeat, int threads)
{
	enum
	{
		P = 64, V = 4096, NEW = 16
	};
	ModelConfig config;
	Model	   *m;
	CoreError	err = {0};
	int32_t		prefix[P];
	int32_t		labels[3][2] = {{5, 1}, {6, 1}, {7, 1}};
	const int32_t *cands[3] = {labels[0], labels[1], labels[2]};
	int			lens[3] = {2, 2, 2};
	double		scores[3];
	int32_t		out[NEW];
	double		score_ms[MAX_REPEAT],
				decode_ms[MAX_REPEAT];

	model_config_default(&config, V, 256, 4, 4);
	if ((m = model_create(&config, &err)) == NULL)
	{
		fprintf(stderr, "model_create: %s\n", err.message);
		return 1;
	}
	model_init_weights(m, 42);
	if (!model_pack_for_prediction(m, &err))
	{
		fprintf(stderr, "model_pack_for_prediction: %s\n", err.message);
		return 1;
	}
	for (int i = 0; i < P; i++)
		prefix[i] = 8 + (i * 7919) % (V - 8);
	model_set_threads(threads);
	model_score_candidates(m, prefix, P, cands, lens, 3, scores, NULL);	/* warm up */
	for (int r = 0; r < repeat; r++)
	{
		double		t0 = now();

		model_score_candidates(m, prefix, P, cands, lens, 3, scores, NULL);
		score_ms[r] = (now() - t0) * 1000.0;
		t0 = now();
		model_generate_greedy(m, prefix, P, NEW, -1, out, NULL, NULL);
		decode_ms[r] = (now() - t0) * 1000.0;
	}
	printf("prediction, %d thread%s: d_model 256, 4 layers, %d-token prefix: "
		   "3 labels scored %.2f ms, %d tokens decoded %.2f ms\n",
		   threads, threads > 1 ? "s" : " ", P, median(score_ms, repeat), NEW,
		   median(decode_ms, repeat));
	model_set_threads(1);
	model_free(m);
	return 0;
}

/* Median GFLOP/s of packed_matmul over rows x n_in -> n_out. */
static double
packed_gflops(const PackedMatrix *m, const float *in, float *out, int rows,
			  int repeat)
{
	double		gflops[MAX_REPEAT];
	double		flops = 2.0 * rows * m->n_in * m->n_out;

	for (int r = 0; r < repeat; r++)
	{
		int			calls = 0;
		double		t0 = now(),
					t;

		do
		{
			packed_matmul(out, in, m, NULL, 1.0f, rows);
			calls++;
		} while ((t = now() - t0) < 0.05);
		gflops[r] = flops * calls / t / 1e9;
	}
	return median(gflops, repeat);
}

static int
bench_packed(int repeat)
{
	/* n_out x n_in: gate_proj (and up_proj), down_proj, q/k/v stacked, head */
	static const int shapes[][2] = {{1536, 576}, {576, 1536}, {960, 576}, {49152, 576}};
	static const int rows[] = {1, 64};

	printf("packed matmul at SmolLM2-135M's shapes, GFLOP/s, 1 thread / 2 threads:\n");
	for (int s = 0; s < 4; s++)
	{
		int			n_out = shapes[s][0],
					n_in = shapes[s][1];
		float	   *w = malloc((size_t) n_out * n_in * sizeof(float));
		float	   *in = malloc((size_t) 64 * n_in * sizeof(float));
		float	   *out = malloc((size_t) 64 * n_out * sizeof(float));
		PackedMatrix m;

		if (w == NULL || in == NULL || out == NULL)
		{
			fprintf(stderr, "out of memory\n");
			return 1;
		}
		for (size_t i = 0; i < (size_t) n_out * n_in; i++)
			w[i] = (float) ((i * 7919) % 2001) / 1000.0f - 1.0f;
		for (size_t i = 0; i < (size_t) 64 * n_in; i++)
			in[i] = (float) ((i * 104729) % 2001) / 1000.0f - 1.0f;
		if (!packed_matrix_init(&m, w, n_out, n_in))
		{
			fprintf(stderr, "out of memory\n");
			return 1;
		}
		for (int r = 0; r < 2; r++)
		{
			double		g[2];

			for (int t = 1; t <= 2; t++)
			{
				model_set_threads(t);
				g[t - 1] = packed_gflops(&m, in, out, rows[r], repeat);
			}
			printf("  %5d x %4d, %2d row%s %6.1f / %6.1f\n", n_out, n_in, rows[r],
				   rows[r] > 1 ? "s:" : ": ", g[0], g[1]);
		}
		model_set_threads(1);
		packed_matrix_free(&m);
		free(w);
		free(in);
		free(out);
	}
	return 0;
}

/*
 * Prompt tokens/s (64 tokens and the first generated one) and decoding
 * ms/token ((64 tokens - 1 token) / 63), as bench/pretrained times them.
 */
static int
bench_prediction_135m(int repeat)
{
	enum
	{
		P = 64, NEW = 64
	};
	ModelConfig config;
	CoreError	err = {0};
	Model	   *m;
	int32_t		prefix[P],
				out[NEW];

	config_135m(&config);
	if ((m = model_create(&config, &err)) == NULL)
	{
		fprintf(stderr, "model_create: %s\n", err.message);
		return 1;
	}
	model_init_weights(m, 1);
	if (!model_pack_for_prediction_only(m, &err))
	{
		fprintf(stderr, "model_pack_for_prediction_only: %s\n", err.message);
		return 1;
	}
	for (int i = 0; i < P; i++)
		prefix[i] = 100 + (i * 7919) % 40000;
	for (int threads = 1; threads <= 2; threads++)
	{
		double		prompt_tps[MAX_REPEAT],
					decode_ms[MAX_REPEAT];

		model_set_threads(threads);
		model_generate_greedy(m, prefix, P, 1, -1, out, NULL, NULL);	/* warm up */
		for (int r = 0; r < repeat; r++)
		{
			double		t0 = now(),
						one,
						all;

			model_generate_greedy(m, prefix, P, 1, -1, out, NULL, NULL);
			one = now() - t0;
			t0 = now();
			model_generate_greedy(m, prefix, P, NEW, -1, out, NULL, NULL);
			all = now() - t0;
			prompt_tps[r] = P / one;
			decode_ms[r] = (all - one) / (NEW - 1) * 1000.0;
		}
		printf("prediction at SmolLM2-135M's shape, %d thread%s: prompt %.1f tokens/s, "
			   "decoding %.1f ms/token\n", threads, threads > 1 ? "s" : " ",
			   median(prompt_tps, repeat), median(decode_ms, repeat));
	}
	model_set_threads(1);
	model_free(m);
	return 0;
}

/* One AdamW step (with clipping) over 135M parameters. */
static int
bench_adamw(int repeat)
{
	ModelConfig config;
	OptimConfig oc;
	CoreError	err = {0};
	Model	   *m;
	Optimizer  *opt;

	config_135m(&config);
	if ((m = model_create(&config, &err)) == NULL || !model_alloc_grads(m, &err))
	{
		fprintf(stderr, "model: %s\n", err.message);
		return 1;
	}
	optim_config_default(&oc, 1e-3f, 1000);
	if ((opt = optim_create(m, &oc, &err)) == NULL)
	{
		fprintf(stderr, "optim_create: %s\n", err.message);
		return 1;
	}
	for (size_t i = 0; i < m->n_params; i++)
		m->grads[i] = (float) ((i * 7919) % 2001) / 1e6f - 1e-3f;
	for (int threads = 1; threads <= 2; threads++)
	{
		double		step_s[MAX_REPEAT];

		model_set_threads(threads);
		optim_step(opt, m);		/* warm up */
		for (int r = 0; r < repeat; r++)
		{
			double		t0 = now();

			optim_step(opt, m);
			step_s[r] = now() - t0;
		}
		printf("AdamW over %zu parameters, %d thread%s: %.3f s a step\n",
			   m->n_params, threads, threads > 1 ? "s" : " ", median(step_s, repeat));
	}
	model_set_threads(1);
	optim_free(opt);
	model_free(m);
	return 0;
}

/*
 * Median seconds of one training forward + backward of B x T random
 * tokens, every next token weighted, with n_threads threads (after one
 * warm-up).
 */
static double
time_training_step(Model *m, int B, int T, int n_threads, int repeat)
{
	int32_t    *tokens = malloc((size_t) B * T * sizeof(int32_t));
	int32_t    *lengths = malloc(B * sizeof(int32_t));
	float	   *weights = malloc((size_t) B * T * sizeof(float));
	ModelBatch	batch = {B, T, tokens, lengths, NULL, weights, NULL};
	double		s[MAX_REPEAT];

	for (int i = 0; i < B * T; i++)
	{
		tokens[i] = 100 + (i * 7919) % 40000;
		weights[i] = i % T == 0 ? 0.0f : 1.0f / (B * (T - 1));
	}
	for (int b = 0; b < B; b++)
		lengths[b] = T;
	model_set_threads(n_threads);
	for (int r = -1; r < repeat; r++)
	{
		double		t0 = now();

		model_zero_grad(m);
		model_forward(m, &batch, true);
		model_backward(m);
		if (r >= 0)
			s[r] = now() - t0;
	}
	free(tokens);
	free(lengths);
	free(weights);
	return median(s, repeat);
}

/*
 * Median milliseconds of attention_forward() and attention_backward() of
 * one layer of SmolLM2-135M (9 heads over 3, head_dim 64) on B x T random
 * rows, causal, with threads threads.
 */
static void
time_attention(int B, int T, int threads, int repeat, double *forward_ms,
			   double *backward_ms)
{
	AttentionShape s = {9, 3, 64};
	size_t		n = (size_t) B * T;
	size_t		qkv_dim = (9 + 2 * 3) * 64,
				out_dim = 9 * 64;
	float	   *qkv = malloc(n * qkv_dim * sizeof(float));
	float	   *dqkv = malloc(n * qkv_dim * sizeof(float));
	float	   *out = malloc(n * out_dim * sizeof(float));
	float	   *dout = malloc(n * out_dim * sizeof(float));
	float	   *lse = malloc(n * 9 * sizeof(float));
	float	   *scratch = malloc(attention_scratch_floats(T) * sizeof(float));
	int32_t    *lengths = malloc(B * sizeof(int32_t));
	double		f[MAX_REPEAT],
				b[MAX_REPEAT];
	uint64_t	state = 1;

	for (size_t i = 0; i < n * qkv_dim; i++)
		qkv[i] = (float) (splitmix64_next(&state) >> 40) * 0x1.0p-24f - 0.5f;
	for (size_t i = 0; i < n * out_dim; i++)
		dout[i] = (float) (splitmix64_next(&state) >> 40) * 0x1.0p-24f - 0.5f;
	for (int i = 0; i < B; i++)
		lengths[i] = T;
	model_set_threads(threads);
	for (int r = -1; r < repeat; r++)
	{
		double		t0 = now(),
					t1;

		attention_forward(out, lse, scratch, qkv, lengths, NULL, B, T, s);
		t1 = now();
		attention_backward(dqkv, scratch, dout, qkv, lse, lengths, NULL, B, T, s);
		if (r >= 0)
		{
			f[r] = (t1 - t0) * 1e3;
			b[r] = (now() - t1) * 1e3;
		}
	}
	*forward_ms = median(f, repeat);
	*backward_ms = median(b, repeat);
	free(qkv);
	free(dqkv);
	free(out);
	free(dout);
	free(lse);
	free(scratch);
	free(lengths);
}

/* One layer's attention at 8 x 256 and 1 x 2048 tokens, 1 and 2 threads. */
static int
bench_attention(int repeat)
{
	static const int shapes[][2] = {{8, 256}, {1, 2048}};

	for (int i = 0; i < 2; i++)
		for (int threads = 1; threads <= 2; threads++)
		{
			double		forward_ms,
						backward_ms;

			time_attention(shapes[i][0], shapes[i][1], threads, repeat, &forward_ms,
						   &backward_ms);
			printf("attention of one layer at SmolLM2-135M's shape, %d x %d tokens, "
				   "%d thread%s: forward %.1f ms, backward %.1f ms\n", shapes[i][0],
				   shapes[i][1], threads, threads > 1 ? "s" : "", forward_ms, backward_ms);
		}
	model_set_threads(1);
	return 0;
}

/*
 * Training at SmolLM2-135M's shape: the activations' bytes at three batch
 * shapes, and forward + backward of two of them with 1 and 2 threads.
 */
static int
bench_training_135m(int repeat)
{
	static const int shapes[][2] = {{1, 256}, {8, 256}, {1, 2048}};
	static const int timed[] = {1, 2};	/* indexes into shapes */
	ModelConfig config;
	CoreError	err = {0};
	Model	   *m;

	config_135m(&config);
	printf("training activations at SmolLM2-135M's shape (model_activation_bytes):");
	for (int s = 0; s < 3; s++)
		printf("%s %d x %d: %.1f MB", s ? "," : "", shapes[s][0], shapes[s][1],
			   model_activation_bytes(&config, shapes[s][0], shapes[s][1]) / 1048576.0);
	printf("\n");
	fflush(stdout);
	if ((m = model_create(&config, &err)) == NULL)
	{
		fprintf(stderr, "model_create: %s\n", err.message);
		return 1;
	}
	model_init_weights(m, 1);
	for (int i = 0; i < 2; i++)
	{
		int			B = shapes[timed[i]][0],
					T = shapes[timed[i]][1];
		double		s[2];

		if (!model_alloc_training(m, B, T, &err))
		{
			fprintf(stderr, "model_alloc_training: %s\n", err.message);
			return 1;
		}
		for (int t = 0; t < 2; t++)
			s[t] = time_training_step(m, B, T, t + 1, repeat);
		printf("forward + backward of %d x %d tokens: 1 thread %.2f s, 2 threads %.2f s\n",
			   B, T, s[0], s[1]);
		fflush(stdout);
		model_free_training(m);
	}
	model_set_threads(1);
	model_free(m);
	return 0;
}

/* Is part asked for?  No arguments ask for all. */
static bool
wanted(int argc, char **argv, const char *part)
{
	for (int i = 1; i < argc; i++)
		if (strcmp(argv[i], part) == 0)
			return true;
	return argc == 1;
}

/*
 * Arguments pick the parts: tokenizer prediction packed 135m adamw
 * attention, and training, which runs only when named.
 */
int
main(int argc, char **argv)
{
	const char *env = getenv("REPEAT");
	int			repeat = env ? atoi(env) : 5;
	int			status = 0;

	if (repeat < 1 || repeat > MAX_REPEAT)
	{
		fprintf(stderr, "REPEAT must be 1 to %d\n", MAX_REPEAT);
		return 1;
	}
	model_single_thread();
	if (wanted(argc, argv, "tokenizer"))
		status |= bench_tokenizer(repeat);
	if (wanted(argc, argv, "prediction"))
		status |= bench_prediction(repeat, 1) || bench_prediction(repeat, 2);
	if (wanted(argc, argv, "packed"))
		status |= bench_packed(repeat);
	if (wanted(argc, argv, "135m"))
		status |= bench_prediction_135m(repeat);
	if (wanted(argc, argv, "adamw"))
		status |= bench_adamw(repeat);
	if (wanted(argc, argv, "attention"))
		status |= bench_attention(repeat);
	/* minutes rather than seconds: only when named */
	if (argc > 1 && wanted(argc, argv, "training"))
		status |= bench_training_135m(repeat);
	return status;
}
