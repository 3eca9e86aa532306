/*
 * test_pretrained_reference.c - imported checkpoints against implementations
 * nobody on this project wrote: PyTorch, llama.cpp and tokenizers.js.
 *
 * The golden files and how they were made are in test/data/pretrained/
 * (README there).  The checkpoints they describe are not committed: the
 * Makefile regenerates them with scripts/pretrained/convert.py (into
 * build/pretrained) and make_random_hf.py (into build/random_hf) and
 * fails unless every file's sha256 equals the committed sums, before this
 * test is built.  A missing checkpoint or golden entry fails here too.
 *
 *   1. Hugging Face directories (four random checkpoints covering GQA,
 *      llama3 RoPE scaling, Qwen2 biases, BF16, shards; stories260K in F32,
 *      BF16 and sharded): next-token log-probabilities at every position of
 *      the golden's ids within 1e-4 of PyTorch's float64 forward.
 *   2. GGUF stories260K in F32, F16 and Q8_0, three prompts: our prompt ids
 *      equal llama.cpp's; our greedy continuation equals llama.cpp's on
 *      F32.  On F16 and Q8_0 we are compared with a float64 forward on the
 *      same dequantized weights instead (llama.cpp rounds the activations
 *      to F16 / Q8_0 before its dot products, so its ids are not what a
 *      float32 forward on dequantized weights gives; README "Where F16 /
 *      Q8_0 depart").  Rule: where our ids first depart from float64's, the
 *      float64 top-2 logit gap must be at most NEAR_TIE: below it the two
 *      best tokens are a near-tie that float32 rounding (1e-5 on these
 *      gaps, measured below) may settle either way; above it, a departure
 *      is a real disagreement.  Only the first departure counts: after it the two
 *      continue from different texts.  Up to there, on every file, our
 *      top-2 gap at each token is float64's within 1e-4.
 *   3. 24 strings through the tokenizer of hf/ (and hf-sharded/, whose
 *      merges are written as pairs) equal tokenizers.js's ids, through the
 *      GGUF's vocabulary llama.cpp's ids, except on a literal "<s>" in the
 *      text (see check_tokenizer).  Decoding our ids gives the references'
 *      texts.
 *
 * It prints one line per checkpoint, prompt and tokenizer, for quoting.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <json-c/json.h>

#include "core/checkpoint.h"
#include "core/model.h"
#include "core/tokenizer.h"
#include "core/tokenizer_pretrained.h"
#include "unit.h"

#define GOLDEN "test/data/pretrained/"
#define CONVERTED "build/pretrained/"
#define RANDOM_HF "build/random_hf/"
#define LOGPROB_TOLERANCE 1e-4
#define NEAR_TIE 0.01
#define MAX_FILES 16

/* ---------------------------------------------------------------- */
/* Checkpoint files read from disk */

typedef struct DiskFiles
{
	const char *path;			/* a HF directory, or a GGUF file */
	bool		is_dir;
	bool		stand_in_tokenizer; /* hand over "{}" for a missing
									 * tokenizer.json */
	void	   *data[MAX_FILES];
	int			n;
} DiskFiles;

/* A file's bytes with a NUL after them, or NULL. */
static void *
read_file(const char *path, size_t *len)
{
	FILE	   *f = fopen(path, "rb");
	char	   *data = NULL;
	long		size = -1;

	*len = 0;
	if (f == NULL)
		return NULL;
	if (fseek(f, 0, SEEK_END) == 0 && (size = ftell(f)) >= 0 &&
		fseek(f, 0, SEEK_SET) == 0 && (data = malloc(size + 1)) != NULL &&
		fread(data, 1, size, f) != (size_t) size)
	{
		free(data);
		data = NULL;
	}
	fclose(f);
	if (data != NULL)
	{
		data[size] = '\0';
		*len = size;
	}
	return data;
}

static const void *
disk_open(void *ctx, const char *name, bool required, size_t *len,
		  CoreError *err)
{
	DiskFiles  *files = ctx;
	char		path[512];
	void	   *data;

	snprintf(path, sizeof(path), "%s%s%s", files->path, files->is_dir ? "/" : "", name);
	data = files->n < MAX_FILES ? read_file(path, len) : NULL;
	if (data == NULL && files->stand_in_tokenizer && strcmp(name, "tokenizer.json") == 0)
		*len = strlen(data = strdup("{}"));
	if (data == NULL)
	{
		if (required)
			core_error(err, CORE_ERR_INVALID_INPUT, "cannot read \"%s\"", path);
		return NULL;
	}
	files->data[files->n++] = data;
	return data;
}

static void
disk_files_free(DiskFiles *files)
{
	for (int i = 0; i < files->n; i++)
		free(files->data[i]);
	files->n = 0;
}

/*
 * Read a checkpoint and, when tok is not NULL, build its tokenizer (before
 * the files, which the tokenizer source points into, go away).  The random
 * checkpoints have no tokenizer (the golden gives ids), which the reader
 * requires but does not parse: with tok NULL it gets a stand-in.
 */
static Model *
load(const char *path, CheckpointFormat format, Tokenizer **tok)
{
	DiskFiles	files = {.path = path, .is_dir = format == CHECKPOINT_HF,
	.stand_in_tokenizer = tok == NULL};
	CheckpointFiles cf = {&files, disk_open, NULL};
	CoreError	err = {0};
	Checkpoint *ckpt = checkpoint_read(format, &cf, 0, NULL, &err);
	Model	   *model = NULL;

	CHECKF(ckpt != NULL, "%s: %s (run `make pretrained-fixtures`)", path, err.message);
	if (ckpt != NULL && tok != NULL)
	{
		*tok = tok_from_source(&ckpt->tokenizer, &err);
		CHECKF(*tok != NULL, "%s: tokenizer: %s", path, err.message);
	}
	if (ckpt != NULL)
	{
		model = ckpt->model;
		ckpt->model = NULL;
	}
	checkpoint_free(ckpt);
	disk_files_free(&files);
	return model;
}

/* ---------------------------------------------------------------- */
/* 1. log-probabilities against PyTorch */

typedef struct TorchBlock
{
	char		name[64];
	int			n;
	int			vocab;
	int32_t    *ids;			/* [n] */
	double	   *logprobs;		/* [n, vocab] */
} TorchBlock;

/* The block named name of torch_logprobs.txt (format in the README). */
static bool
find_torch_block(const char *text, const char *name, TorchBlock *b)
{
	const char *p = text;

	while (*p != '\0')
	{
		int			used = 0;
		char	   *end;

		if (sscanf(p, "%63s %d %d%n", b->name, &b->n, &b->vocab, &used) != 3 ||
			b->n < 1 || b->n > 4096 || b->vocab < 1 || b->vocab > 1 << 20)
			return false;
		p += used;
		if (strcmp(b->name, name) != 0)
		{
			/* skip the ids line and the n lines of values */
			for (int lines = 0; lines < b->n + 2 && *p != '\0'; p++)
				lines += *p == '\n';
			continue;
		}
		b->ids = malloc(b->n * sizeof(int32_t));
		b->logprobs = malloc((size_t) b->n * b->vocab * sizeof(double));
		for (int i = 0; i < b->n; i++, p = end)
			if ((b->ids[i] = strtol(p, &end, 10)), end == p)
				return false;
		for (size_t i = 0; i < (size_t) b->n * b->vocab; i++, p = end)
			if ((b->logprobs[i] = strtod(p, &end)), end == p)
				return false;
		return true;
	}
	return false;
}

static void
check_logprobs(const char *golden_text, const char *block_name, const char *dir)
{
	TorchBlock	b = {.ids = NULL};
	Model	   *model;
	float	   *ours;
	CoreError	err = {0};
	double		max_diff = 0.0;
	int			worst = 0;

	CHECKF(find_torch_block(golden_text, block_name, &b), "no block %s in torch_logprobs.txt",
		   block_name);
	model = load(dir, CHECKPOINT_HF, NULL);
	if (b.ids == NULL || model == NULL)
		goto done;
	CHECKF(model->config.vocab_size == b.vocab, "%s: vocab %d, golden %d", dir,
		   model->config.vocab_size, b.vocab);
	if (model->config.vocab_size != b.vocab)
		goto done;
	ours = malloc((size_t) b.n * b.vocab * sizeof(float));
	CHECKF(model_next_logprobs(model, b.ids, b.n, ours, &err), "%s: %s", dir, err.message);
	for (size_t i = 0; err.kind == CORE_OK && i < (size_t) b.n * b.vocab; i++)
	{
		double		diff = fabs(ours[i] - b.logprobs[i]);

		if (!(diff <= max_diff))	/* NaN counts as the worst */
		{
			max_diff = isnan(diff) ? INFINITY : diff;
			worst = i / b.vocab;
		}
	}
	printf("torch   %-20s %-26s %2d positions x %3d: max |dlogprob| %.2e (at position %d)\n",
		   block_name, strchr(dir, '/') + 1, b.n, b.vocab, max_diff, worst);
	CHECKF(err.kind == CORE_OK && max_diff <= LOGPROB_TOLERANCE,
		   "%s: max |dlogprob| %.3g > %g", dir, max_diff, LOGPROB_TOLERANCE);
	free(ours);
done:
	model_free(model);
	free(b.ids);
	free(b.logprobs);
}

/* ---------------------------------------------------------------- */
/* JSON helpers */

static json_object *
get(json_object *obj, const char *key)
{
	json_object *v = NULL;

	if (obj != NULL)
		json_object_object_get_ex(obj, key, &v);
	return v;
}

/* The ints of a JSON array, malloc'd (at least one element); -1 if absent. */
static int
json_ids(json_object *arr, int32_t **out)
{
	int			n = json_object_is_type(arr, json_type_array) ? (int) json_object_array_length(arr) : -1;

	*out = malloc((n > 0 ? n : 1) * sizeof(int32_t));
	for (int i = 0; i < n; i++)
		(*out)[i] = json_object_get_int(json_object_array_get_idx(arr, i));
	return n;
}

static double
json_at(json_object *arr, int i)
{
	return json_object_get_double(json_object_array_get_idx(arr, i));
}

static bool
same_ids(const int32_t *a, int na, const int32_t *b, int nb)
{
	return na == nb && (na <= 0 || memcmp(a, b, na * sizeof(int32_t)) == 0);
}

/* BOS (when the tokenizer adds it) + the text's ids; -1 on error. */
static int
encode(const Tokenizer *tok, const char *text, int32_t **out)
{
	int32_t    *ids;
	CoreError	err = {0};
	int			n = tok_encode_checked(tok, text, strlen(text), &ids, &err);
	int			bos = tok_adds_bos(tok) ? 1 : 0;

	CHECKF(n >= 0, "encoding \"%s\": %s", text, err.message);
	if (n < 0)
	{
		*out = NULL;
		return -1;
	}
	*out = malloc((n + 1) * sizeof(int32_t));
	(*out)[0] = tok_bos(tok);	/* overwritten without a BOS */
	memcpy(*out + bos, ids, n * sizeof(int32_t));
	free(ids);
	return n + bos;
}

/*
 * Does decoding ids give text?  Our decoder keeps the space SentencePiece
 * puts before a text; the references drop it, and so does distill's
 * caller (student_pretrained.c) when tok_strips_leading_space().
 */
static bool
decodes_to(const Tokenizer *tok, const int32_t *ids, int n, const char *text)
{
	size_t		len;
	char	   *ours = tok_decode(tok, ids, n, &len);
	char	   *start = ours;
	bool		same;

	if (ours != NULL && len > 0 && ours[0] == ' ' && tok_strips_leading_space(tok))
	{
		start++;
		len--;
	}
	same = ours != NULL && len == strlen(text) && memcmp(start, text, len) == 0;
	free(ours);
	return same;
}

/* ---------------------------------------------------------------- */
/* 2. greedy decoding against llama.cpp and float64 */

/* First index where a and b differ (the shorter one's end counts); -1: none. */
static int
first_departure(const int32_t *a, int na, const int32_t *b, int nb)
{
	int			n = na < nb ? na : nb;

	for (int i = 0; i < n; i++)
		if (a[i] != b[i])
			return i;
	return na == nb ? -1 : n;
}

/*
 * Our top-2 logit gap at each generated token: the log-probabilities of
 * prompt + generated ids, row prompt_len - 1 + i predicting generated[i].
 */
static double *
our_margins(const Model *model, const int32_t *prompt, int prompt_len,
			const int32_t *gen, int n_gen)
{
	int			n = prompt_len + n_gen - 1;
	int			vocab = model->config.vocab_size;
	int32_t    *seq = malloc((prompt_len + n_gen) * sizeof(int32_t));
	float	   *lp = malloc((size_t) n * vocab * sizeof(float));
	double	   *margins = calloc(n_gen > 0 ? n_gen : 1, sizeof(double));
	CoreError	err = {0};

	memcpy(seq, prompt, prompt_len * sizeof(int32_t));
	memcpy(seq + prompt_len, gen, n_gen * sizeof(int32_t));
	CHECKF(n_gen == 0 || model_next_logprobs(model, seq, n, lp, &err), "%s", err.message);
	for (int i = 0; err.kind == CORE_OK && i < n_gen; i++)
	{
		const float *row = lp + (size_t) (prompt_len - 1 + i) * vocab;
		float		best = -INFINITY,
					second = -INFINITY;

		for (int v = 0; v < vocab; v++)
			if (row[v] > best)
			{
				second = best;
				best = row[v];
			}
			else if (row[v] > second)
				second = row[v];
		margins[i] = best - second;
	}
	free(seq);
	free(lp);
	return margins;
}

/*
 * A departure at generated index at: "same", "length A vs B" or "#i (pos
 * p) <our id> vs <their id>, gap ours X theirs Y".
 */
static void
describe_departure(char *buf, size_t size, int at, int prompt_len,
				   const int32_t *ours, int n_ours, const double *our_margin,
				   const int32_t *theirs, int n_theirs, json_object *their_margins)
{
	if (at < 0)
		snprintf(buf, size, "same");
	else if (at >= n_ours || at >= n_theirs)
		snprintf(buf, size, "length %d vs %d", n_ours, n_theirs);
	else
		snprintf(buf, size, "#%d (pos %d) %d vs %d, gap ours %.4f theirs %.4f", at,
				 prompt_len + at, ours[at], theirs[at], our_margin[at],
				 json_at(their_margins, at));
}

static void
check_generation(const Model *model, const Tokenizer *tok, const char *file,
				 const char *prompt_name, json_object *cpp, json_object *f64)
{
	const char *prompt = json_object_get_string(get(cpp, "prompt"));
	int			steps = json_object_get_int(get(cpp, "steps"));
	int32_t    *cpp_prompt,
			   *f64_prompt,
			   *cpp_ids,
			   *f64_ids,
			   *prompt_ids;
	int			n_cpp_prompt = json_ids(get(cpp, "prompt_ids"), &cpp_prompt);
	int			n_f64_prompt = json_ids(get(f64, "prompt_ids"), &f64_prompt);
	int			n_cpp = json_ids(get(cpp, "generated_ids"), &cpp_ids);
	int			n_f64 = json_ids(get(f64, "generated_ids"), &f64_ids);
	json_object *cpp_margins = get(cpp, "top2_margins");
	json_object *f64_margins = get(f64, "top2_logit_margins");
	int			n_prompt = encode(tok, prompt ? prompt : "", &prompt_ids);
	int			max_new = steps - (n_prompt - 1);
	int32_t    *ours = malloc((max_new > 0 ? max_new : 1) * sizeof(int32_t));
	int32_t		end_ids[2] = {tok_bos(tok), tok_eos(tok)};
	CoreError	err = {0};
	int			n_ours;
	int			vs_cpp,
				vs_f64,
				closest = 0,
				agreed;
	double		gap_diff = 0.0;
	double	   *margins;
	char		cpp_text[160],
				f64_text[160];

	CHECKF(prompt != NULL && steps > 0 && n_cpp > 0 && n_f64 > 0 && n_cpp_prompt > 0 &&
		   json_object_array_length(cpp_margins) == (size_t) n_cpp &&
		   json_object_array_length(f64_margins) == (size_t) n_f64,
		   "%s %s: incomplete golden entry", file, prompt_name);
	CHECKF(same_ids(prompt_ids, n_prompt, cpp_prompt, n_cpp_prompt) &&
		   same_ids(prompt_ids, n_prompt, f64_prompt, n_f64_prompt),
		   "%s %s: our prompt ids differ from llama.cpp's", file, prompt_name);
	if (n_prompt < 1 || max_new < 1 || n_cpp < 1 || n_f64 < 1)
		goto done;

	/* llama.cpp's loop stops at BOS or EOS too (none comes here) */
	n_ours = model_generate_greedy_until(model, prompt_ids, n_prompt, max_new, end_ids, 2,
										 ours, NULL, &err);
	CHECKF(n_ours >= 0, "%s %s: %s", file, prompt_name, err.message);
	if (n_ours < 0)
		goto done;
	margins = our_margins(model, prompt_ids, n_prompt, ours, n_ours);
	vs_cpp = first_departure(ours, n_ours, cpp_ids, n_cpp);
	vs_f64 = first_departure(ours, n_ours, f64_ids, n_f64);
	describe_departure(cpp_text, sizeof(cpp_text), vs_cpp, n_prompt, ours, n_ours, margins,
					   cpp_ids, n_cpp, cpp_margins);
	describe_departure(f64_text, sizeof(f64_text), vs_f64, n_prompt, ours, n_ours, margins,
					   f64_ids, n_f64, f64_margins);
	for (int i = 1; i < n_ours; i++)
		closest = margins[i] < margins[closest] ? i : closest;
	/* where the texts still agree, our gaps are float64's up to float32 rounding */
	agreed = vs_f64 < 0 ? n_ours : vs_f64;
	for (int i = 0; i < agreed; i++)
		gap_diff = fmax(gap_diff, fabs(margins[i] - json_at(f64_margins, i)));
	printf("gguf    %-5s %-10s %3d tokens; vs llama.cpp: %s; vs float64: %s, max |dgap| %.1e; closest call #%d gap %.4f\n",
		   file, prompt_name, n_ours, cpp_text, f64_text, gap_diff, closest,
		   n_ours > 0 ? margins[closest] : NAN);

	CHECKF(gap_diff <= LOGPROB_TOLERANCE, "%s %s: our top-2 gaps are %.3g off float64's",
		   file, prompt_name, gap_diff);
	if (strcmp(file, "f32") == 0)
		CHECKF(vs_cpp < 0, "%s %s: ours departs from llama.cpp's at #%d", file, prompt_name,
			   vs_cpp);
	CHECKF(vs_f64 < 0 || (vs_f64 < n_f64 && json_at(f64_margins, vs_f64) <= NEAR_TIE),
		   "%s %s: ours departs from float64's at #%d, where its top-2 gap is %.4f > %g",
		   file, prompt_name, vs_f64, vs_f64 < n_f64 ? json_at(f64_margins, vs_f64) : NAN,
		   NEAR_TIE);
	/* the same ids decode to llama.cpp's text (the prompt, then ours) */
	if (vs_cpp < 0)
	{
		int32_t    *all = malloc((n_prompt + n_ours) * sizeof(int32_t));

		memcpy(all, prompt_ids, n_prompt * sizeof(int32_t));
		memcpy(all + n_prompt, ours, n_ours * sizeof(int32_t));
		CHECKF(decodes_to(tok, all, n_prompt + n_ours,
						  json_object_get_string(get(cpp, "text"))),
			   "%s %s: our decoding differs from llama.cpp's text", file, prompt_name);
		free(all);
	}
	free(margins);
done:
	free(ours);
	free(prompt_ids);
	free(cpp_prompt);
	free(f64_prompt);
	free(cpp_ids);
	free(f64_ids);
}

static void
check_gguf(const char *file, json_object *cpp_results, json_object *f64_results)
{
	static const char *const prompts[] = {"bos_200", "zoo_60", "prompt_120"};
	char		path[256],
				key[64];
	Tokenizer  *tok = NULL;
	Model	   *model;

	snprintf(key, sizeof(key), "stories260K-%s.gguf", file);
	snprintf(path, sizeof(path), CONVERTED "%s", key);
	model = load(path, CHECKPOINT_GGUF, &tok);
	for (int i = 0; model != NULL && tok != NULL && i < 3; i++)
	{
		json_object *cpp = get(get(cpp_results, key), prompts[i]);
		json_object *f64 = get(get(f64_results, key), prompts[i]);

		CHECKF(cpp != NULL && f64 != NULL, "no golden entry for %s %s", key, prompts[i]);
		if (cpp != NULL && f64 != NULL)
			check_generation(model, tok, file, prompts[i], cpp, f64);
	}
	tok_free(tok);
	model_free(model);
}

/* ---------------------------------------------------------------- */
/* 3. tokenizers against tokenizers.js and llama.cpp */

/*
 * The strings of tokenizer_stories260K.json through the tokenizer of path:
 * ids and decodings equal the reference's (keys "hf" or "llamacpp").
 * Where the references disagree (a literal "<s>" in the text) the GGUF
 * tokenizer follows tokenizers.js: ours matches added tokens in any text
 * (tokenizer_pretrained.h), as llama.cpp does only when asked to parse
 * special tokens (its llama-cli and server do for prompts; the golden's
 * node-llama-cpp tokenize(text, false) does not).  With special-token
 * parsing on, node-llama-cpp 3.21.1 gives tokenizers.js's ids on that
 * string too (checked by hand: 1, 410, 410, 293, ... after the BOS: the
 * text after a matched token gets a dummy-prefix space of its own).
 */
static void
check_tokenizer(const char *path, CheckpointFormat format, json_object *cases,
				const char *reference)
{
	Tokenizer  *tok = NULL;
	Model	   *model = load(path, format, &tok);
	int			n_cases = json_object_is_type(cases, json_type_array)
		? (int) json_object_array_length(cases) : 0;
	int			ids_equal = 0,
				decodings_equal = 0,
				other = 0;

	CHECKF(n_cases == 24, "tokenizer_stories260K.json: %d cases, expected 24", n_cases);
	for (int i = 0; tok != NULL && i < n_cases; i++)
	{
		json_object *c = json_object_array_get_idx(cases, i);
		const char *text = json_object_get_string(get(c, "text"));
		bool		agree = json_object_get_boolean(get(c, "agree"));
		const char *ref_name = agree ? reference : "hf";
		char		ids_key[32],
					decoded_key[32];
		int32_t    *ref,
				   *ours;
		int			n_ref,
					n_ours;
		const char *decoded;
		bool		same,
					same_text;

		snprintf(ids_key, sizeof(ids_key), "%s_ids", ref_name);
		snprintf(decoded_key, sizeof(decoded_key), "%s_decoded", ref_name);
		n_ref = json_ids(get(c, ids_key), &ref);
		n_ours = encode(tok, text ? text : "", &ours);
		decoded = json_object_get_string(get(c, decoded_key));
		same = n_ref > 0 && same_ids(ours, n_ours, ref, n_ref);
		same_text = n_ours > 0 && decoded != NULL && decodes_to(tok, ours, n_ours, decoded);
		CHECKF(same, "%s: \"%s\": our ids differ from %s's", path, text, ref_name);
		CHECKF(same_text, "%s: \"%s\": our decoding differs from %s's", path, text, ref_name);
		ids_equal += same;
		decodings_equal += same_text;
		other += !agree;
		free(ref);
		free(ours);
	}
	printf("tokens  %-32s %2d/%d ids, %2d/%d decodings = %s's%s\n",
		   strchr(path, '/') + 1, ids_equal, n_cases, decodings_equal, n_cases,
		   strcmp(reference, "hf") == 0 ? "tokenizers.js" : "llama.cpp",
		   strcmp(reference, "hf") == 0 || other == 0 ? ""
		   : " (\"<s>\" in text: tokenizers.js's)");
	tok_free(tok);
	model_free(model);
}

int
main(void)
{
	static const char *const torch_blocks[][2] = {
		{"llama3_gqa", RANDOM_HF "llama3_gqa"},
		{"qwen2", RANDOM_HF "qwen2"},
		{"llama_bf16", RANDOM_HF "llama_bf16"},
		{"llama_sharded", RANDOM_HF "llama_sharded"},
		{"stories260K_hf", CONVERTED "hf"},
		{"stories260K_hf", CONVERTED "hf-sharded"},	/* the same weights */
		{"stories260K_hf_bf16", CONVERTED "hf-bf16"},
	};
	size_t		len;
	char	   *torch_text = read_file(GOLDEN "torch_logprobs.txt", &len);
	json_object *cpp = json_object_from_file(GOLDEN "llamacpp_stories260K.json");
	json_object *f64 = json_object_from_file(GOLDEN "dequant_stories260K.json");
	json_object *tokens = json_object_from_file(GOLDEN "tokenizer_stories260K.json");

	model_single_thread();
	CHECK(torch_text != NULL && cpp != NULL && f64 != NULL && tokens != NULL);
	for (size_t i = 0; torch_text != NULL && i < sizeof(torch_blocks) / sizeof(torch_blocks[0]); i++)
		check_logprobs(torch_text, torch_blocks[i][0], torch_blocks[i][1]);

	check_gguf("f32", get(cpp, "results"), get(f64, "results"));
	check_gguf("f16", get(cpp, "results"), get(f64, "results"));
	check_gguf("q8_0", get(cpp, "results"), get(f64, "results"));

	check_tokenizer(CONVERTED "hf", CHECKPOINT_HF, get(tokens, "cases"), "hf");
	check_tokenizer(CONVERTED "hf-sharded", CHECKPOINT_HF, get(tokens, "cases"), "hf");
	check_tokenizer(CONVERTED "stories260K-f32.gguf", CHECKPOINT_GGUF, get(tokens, "cases"),
					"llamacpp");

	free(torch_text);
	json_object_put(cpp);
	json_object_put(f64);
	json_object_put(tokens);
	return unit_summary("pretrained_reference");
}
