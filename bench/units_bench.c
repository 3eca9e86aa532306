/*
 * units_bench.c - speed figures of src/core pieces that no other benchmark
 * covers (bench/units runs it; bench/README.md):
 *
 *   - the tokenizer: training a 4096-token vocabulary on the first 5 MB of
 *     ../shared/data/cqa_train.jsonl (its lines as raw text), and encoding
 *     the whole file;
 *   - one row's prediction with a d_model 256, 4-layer model (vocabulary
 *     4096, weights packed as the extension packs them): scoring 3 labels
 *     of 2 tokens after a 64-token prefix, and decoding 16 tokens greedily,
 *     with 1 and 2 threads.
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
#include "core/tokenizer.h"

#include "bench.h"
#include "../test/unit/corpus.h"

#define CQA_PATH "../shared/data/cqa_train.jsonl"
#define TRAIN_BYTES (5 << 20)
#define MAX_REPEAT 64

static int
bench_tokenizer(int repeat)
{
	Corpus		c;
	size_t		n = 0,
				train_bytes = 0,
				tokens = 0;
	double		train_s[MAX_REPEAT],
				encode_s[MAX_REPEAT];
	Tokenizer  *t = NULL;
	CoreError	err = {0};

	if (!corpus_load_file(&c, CQA_PATH) || c.n == 0)
	{
		fprintf(stderr, "cannot read %s (run from the repository root)\n", CQA_PATH);
		return 1;
	}
	while (n < c.n && train_bytes < TRAIN_BYTES)
		train_bytes += c.lens[n++];
	for (int r = 0; r < repeat; r++)
	{
		double		t0 = now();

		tok_free(t);
		t = tok_train(c.texts, c.lens, n, 4096, SIZE_MAX, NULL, &err);
		train_s[r] = now() - t0;
		if (t == NULL)
		{
			fprintf(stderr, "tok_train: %s\n", err.message);
			return 1;
		}
	}
	for (int r = 0; r < repeat; r++)
	{
		double		t0 = now();

		tokens = 0;
		for (size_t i = 0; i < c.n; i++)
		{
			int32_t    *ids;
			int			k = tok_encode(t, c.texts[i], c.lens[i], &ids);

			tokens += k > 0 ? k : 0;
			free(ids);
		}
		encode_s[r] = now() - t0;
	}
	printf("tokenizer: train vocab 4096 on %zu bytes (%zu lines): %.2f s\n",
		   train_bytes, n, median(train_s, repeat));
	{
		double		s = median(encode_s, repeat);

		printf("tokenizer: encode %zu bytes -> %zu tokens: %.2f s, %.2f M tokens/s, %.1f MB/s\n",
			   c.bytes, tokens, s, tokens / s / 1e6, c.bytes / s / 1e6);
	}
	tok_free(t);
	corpus_free(&c);
	return 0;
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

int
main(void)
{
	const char *env = getenv("REPEAT");
	int			repeat = env ? atoi(env) : 5;

	if (repeat < 1 || repeat > MAX_REPEAT)
	{
		fprintf(stderr, "REPEAT must be 1 to %d\n", MAX_REPEAT);
		return 1;
	}
	model_single_thread();
	return bench_tokenizer(repeat) || bench_prediction(repeat, 1) ||
		bench_prediction(repeat, 2);
}
