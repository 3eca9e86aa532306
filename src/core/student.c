/*
 * student.c - the student's hyperparameters, its sequences and prediction.
 * Training is in train*.c (trainer.h), the weights as bytes in
 * student_io.c, prediction with an imported model in student_pretrained.c.
 */
#include "core/student.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/equation.h"
#include "core/lora.h"
#include "core/model_io.h"
#include "core/student_internal.h"
#include "core/tokenizer_pretrained.h"
#include "core/util.h"

/* ---------------------------------------------------------------- */
/* Hyperparameters */

void
student_params_default(StudentParams *params)
{
	memset(params, 0, sizeof(*params));
	params->d_model = 256;
	params->n_layers = 4;
	params->n_heads = 4;
	params->d_ff = 0;
	params->vocab_size = 4096;
	params->epochs = 10;
	params->batch_size = 32;
	params->max_input_tokens = 128;
	params->max_target_tokens = 64;
	params->lr = 1e-3;
	params->weight_decay = 0.01;
	params->warmup_fraction = 0.05;
	params->grad_clip = 1.0;
	params->dropout = 0.1;
	params->validation_fraction = 0.1;
	params->rationale_weight = 1.0;
	params->validation_metric = METRIC_EXACT;
	params->prefix_lm = true;
	params->tied_embeddings = true;
	params->seed = 1;
	params->log_every = 10;
	params->lora_targets = LORA_ALL_TARGETS;
	params->memory_mb = 0;
	params->work_mem_mb = 256;
}

void
student_params_default_for_base(StudentParams *params)
{
	student_params_default(params);
	params->lr = 1e-4;
	params->epochs = 3;
	params->batch_size = 8;
	params->dropout = 0.0;
	params->prefix_lm = false;
}

static bool
check_int(const char *name, int value, int min, int max,
		  CoreError *err)
{
	if (value >= min && value <= max)
		return true;
	core_error(err, CORE_ERR_INVALID_INPUT, "%s must be between %d and %d (got %d)",
			   name, min, max, value);
	return false;
}

/* value in the interval written as range, e.g. "(0, 1]"; finite. */
static bool
check_real(const char *name, double value, double min, bool min_open,
		   double max, const char *range, CoreError *err)
{
	bool		above_min = min_open ? value > min : value >= min;

	if (!isfinite(value))
	{
		core_error(err, CORE_ERR_INVALID_INPUT, "%s must be a finite number in %s (got %g)",
				   name, range, value);
		return false;
	}
	if (above_min && value <= max)
		return true;
	core_error(err, CORE_ERR_INVALID_INPUT, "%s must be in %s (got %g)",
			   name, range, value);
	return false;
}

/*
 * Would the weights fit in a stored model?  With the vocabulary asked for,
 * the most a trained tokenizer can have; max_seq_len holds no weights.
 */
static bool
check_weights_size(const StudentParams *p, CoreError *err)
{
	ModelConfig config;
	size_t		bytes;

	model_config_default(&config, p->vocab_size, p->d_model, p->n_layers, p->n_heads);
	if (p->d_ff > 0)
		config.d_ff = p->d_ff;
	config.tied_embeddings = p->tied_embeddings;
	bytes = STUDENT_HEADER_SIZE + model_serialized_size_bound(&config);
	if (bytes <= STUDENT_MAX_WEIGHTS_BYTES)
		return true;
	core_error(err, CORE_ERR_LIMIT,
			   "a model of %zu parameters takes %zu MB of weights, more than the %zu MB a stored model holds (a bytea stops at 1 GB): use a smaller d_model, layers, d_ff or vocab_size",
			   model_count_params(&config), (bytes + (1 << 20) - 1) >> 20,
			   STUDENT_MAX_WEIGHTS_BYTES >> 20);
	return false;
}

static bool
check_lora_targets(const StudentParams *p, CoreError *err)
{
	if (p->lora_targets != 0 && (p->lora_targets & ~LORA_ALL_TARGETS) == 0)
		return true;
	core_error(err, CORE_ERR_INVALID_INPUT,
			   "lora_targets must name at least one of q, k, v, o, gate, up, down");
	return false;
}

bool
student_params_validate(const StudentParams *p, CoreError *err)
{
	if (!check_int("heads", p->n_heads, 1, 64, err) ||
		!check_int("layers", p->n_layers, 1, 64, err))
		return false;
	if (p->d_model < 16 || p->d_model > 4096 || p->d_model % p->n_heads != 0)
	{
		core_error(err, CORE_ERR_INVALID_INPUT,
				   "d_model must be between 16 and 4096 and a multiple of heads (got d_model %d, heads %d)",
				   p->d_model, p->n_heads);
		return false;
	}
	if ((p->d_model / p->n_heads) % 2 != 0)
	{
		core_error(err, CORE_ERR_INVALID_INPUT,
				   "d_model / heads must be even, for rotary positions (got d_model %d, heads %d)",
				   p->d_model, p->n_heads);
		return false;
	}
	if (p->d_ff != 0 && !check_int("d_ff (0 = automatic)", p->d_ff, 16, 65536, err))
		return false;
	return check_int("vocab_size", p->vocab_size, TOK_MIN_VOCAB, 65536, err) &&
		check_int("epochs", p->epochs, 1, 1000, err) &&
		check_int("batch_size", p->batch_size, 1, 4096, err) &&
		check_int("max_input_tokens", p->max_input_tokens,
				  STUDENT_MIN_INPUT_TOKENS, STUDENT_MAX_INPUT_TOKENS, err) &&
		check_int("max_target_tokens", p->max_target_tokens,
				  STUDENT_MIN_TARGET_TOKENS, STUDENT_MAX_TARGET_TOKENS, err) &&
		check_int("log_every", p->log_every, 1, 1000000, err) &&
		(p->memory_mb == 0 || check_int("memory_mb", p->memory_mb, 16, 1048576, err)) &&
		check_int("work_mem_mb", p->work_mem_mb, 16, 1048576, err) &&
		check_real("lr", p->lr, 0.0, true, 1.0, "(0, 1]", err) &&
		check_real("weight_decay", p->weight_decay, 0.0, false, 1.0, "[0, 1]", err) &&
		check_real("warmup_fraction", p->warmup_fraction, 0.0, false, 1.0, "[0, 1]", err) &&
		check_real("grad_clip", p->grad_clip, 0.0, false, 1e6, "[0, 1e6] (0 = no clipping)", err) &&
		check_real("dropout", p->dropout, 0.0, false, 0.9, "[0, 0.9]", err) &&
		check_real("validation_fraction", p->validation_fraction, 0.0, false, 0.5, "[0, 0.5]", err) &&
		check_real("rationale_weight", p->rationale_weight, 0.0, false, 100.0, "[0, 100]", err) &&
		check_int("lora_rank", p->lora_rank, 0, LORA_MAX_RANK, err) &&
		check_real("lora_alpha", p->lora_alpha, 0.0, false, 1e6, "[0, 1e6] (0 = 2 * lora_rank)", err) &&
		check_lora_targets(p, err) &&
		check_weights_size(p, err);
}

/* ---------------------------------------------------------------- */
/* Sequences */

/*
 * Only the bytes the first max_tokens tokens depend on are looked at, even
 * by strnlen(): the text may be megabytes long.
 */
int
student_encode(const Tokenizer *tok, const char *text, int max_tokens,
			   int32_t **ids)
{
	size_t		len = strnlen(text, tok_prefix_bytes(max_tokens));

	return tok_encode_prefix(tok, text, len, max_tokens, ids);
}

int
student_encode_target(const Tokenizer *tok, const char *text, int max_tokens,
					  int32_t **ids)
{
	int32_t    *grown;
	int			n = student_encode(tok, text, max_tokens, ids);

	if (n < 0)
		return -1;
	grown = realloc(*ids, (n + 1) * sizeof(int32_t));
	if (grown == NULL)
	{
		free(*ids);
		*ids = NULL;
		return -1;
	}
	grown[n] = tok_eos(tok);
	*ids = grown;
	return n + 1;
}

const char *
student_tag(const Tokenizer *tok, bool explain)
{
	if (tok_is_pretrained(tok))
		return explain ? STUDENT_BASE_EXPLAIN_TAG : STUDENT_BASE_PREDICT_TAG;
	return explain ? STUDENT_EXPLAIN_TAG : STUDENT_PREDICT_TAG;
}

/* Does the prefix start with <bos>? */
static bool
prefix_has_bos(const Tokenizer *tok)
{
	return !tok_is_pretrained(tok) || tok_adds_bos(tok);
}

/* The token that ends the prefix. */
static int32_t
prefix_end(const Tokenizer *tok)
{
	return tok_is_pretrained(tok) ? tok_newline(tok) : tok_sep(tok);
}

int32_t
student_padding(const Tokenizer *tok)
{
	return tok_is_pretrained(tok) ? tok_eos(tok) : tok_pad(tok);
}

bool
student_layout_possible(const Tokenizer *tok, CoreError *err)
{
	if (tok_eos(tok) >= 0 && prefix_end(tok) >= 0)
		return true;
	core_error(err, CORE_ERR_INVALID_INPUT,
			   tok_eos(tok) < 0
			   ? "the base's tokenizer has no end-of-sequence token to end a target with"
			   : "the base's tokenizer has no token for a newline to end the input with");
	return false;
}

int
student_prefix_len(const Tokenizer *tok, int n_tag, int n_input)
{
	return prefix_has_bos(tok) + n_tag + n_input + 1;
}

int
student_write_prefix(const Tokenizer *tok, const int32_t *tag, int n_tag,
					 const int32_t *input, int n_input, int32_t *out)
{
	int			n = 0;

	if (prefix_has_bos(tok))
		out[n++] = tok_bos(tok);
	memcpy(out + n, tag, n_tag * sizeof(int32_t));
	n += n_tag;
	memcpy(out + n, input, n_input * sizeof(int32_t));
	n += n_input;
	out[n++] = prefix_end(tok);
	return n;
}

int
student_sequence_limit(const Tokenizer *tok, int max_input_tokens,
					   int max_target_tokens)
{
	int32_t    *ids;
	int			n_predict = student_encode(tok, student_tag(tok, false), INT32_MAX, &ids);
	int			n_explain;

	free(ids);
	n_explain = student_encode(tok, student_tag(tok, true), INT32_MAX, &ids);
	free(ids);
	if (n_predict < 0 || n_explain < 0)
		return -1;
	return student_prefix_len(tok, n_predict > n_explain ? n_predict : n_explain,
							  max_input_tokens) + max_target_tokens + 1;
}

/*
 * The prefix of the task (student_write_prefix()) for a student, in a
 * malloc'd *prefix; returns its length, or -1 when memory runs out.
 */
static int
encode_prefix(const Student *student, bool explain, const char *input,
			  int32_t **prefix)
{
	int32_t    *tag_ids = NULL;
	int32_t    *input_ids = NULL;
	int			n_tag = student_encode(student->tokenizer,
									   student_tag(student->tokenizer, explain),
									   INT32_MAX, &tag_ids);
	int			n_input = student_encode(student->tokenizer, input,
										 student->max_input_tokens, &input_ids);
	int			len = -1;

	*prefix = NULL;
	if (n_tag >= 0 && n_input >= 0)
		*prefix = malloc(student_prefix_len(student->tokenizer, n_tag, n_input) *
						 sizeof(int32_t));
	if (*prefix != NULL)
		len = student_write_prefix(student->tokenizer, tag_ids, n_tag,
								   input_ids, n_input, *prefix);
	free(tag_ids);
	free(input_ids);
	return len;
}

/* ---------------------------------------------------------------- */
/* Prediction */

/*
 * The index of the best of n finite scores, and their softmax in probs
 * (may be NULL); -1 with a message when a score is not finite: weights
 * that are finite can still overflow float arithmetic.
 */
int
student_best_of_scores(const double *scores, int n, double *probs,
					   CoreError *err)
{
	int			best = 0;
	double		sum = 0.0;

	for (int k = 0; k < n; k++)
	{
		if (!isfinite(scores[k]))
		{
			core_error(err, CORE_ERR_CORRUPT,
					   "the score of candidate %d is not a finite number: the model's weights overflow",
					   k + 1);
			return -1;
		}
		if (scores[k] > scores[best])
			best = k;
	}
	if (probs != NULL)
	{
		/* softmax of the sequence log-likelihoods; the max keeps exp() finite */
		for (int k = 0; k < n; k++)
		{
			probs[k] = exp(scores[k] - scores[best]);
			sum += probs[k];
		}
		for (int k = 0; k < n; k++)
			probs[k] /= sum;
	}
	return best;
}

bool
student_too_many_candidates(int n, const char *what, CoreError *err)
{
	if (n <= STUDENT_MAX_CANDIDATES)
		return false;
	core_error(err, CORE_ERR_LIMIT, "%s has %d candidates, more than the %d a prediction scores",
			   what, n, STUDENT_MAX_CANDIDATES);
	return true;
}

int
student_choose_ids(const Model *model, const int32_t *prefix, int prefix_len,
				   const int32_t *const *candidates, const int *candidate_lens,
				   int n_candidates, double *probs, CoreError *err)
{
	double	   *scores;
	int			best = -1;

	if (student_too_many_candidates(n_candidates, "the prediction", err))
		return -1;
	scores = malloc((n_candidates > 0 ? n_candidates : 1) * sizeof(double));
	if (scores == NULL)
	{
		core_error(err, CORE_ERR_NO_MEMORY, "out of memory for %d candidate scores",
				   n_candidates);
		return -1;
	}
	if (model_score_candidates(model, prefix, prefix_len, candidates,
							   candidate_lens, n_candidates, scores,
							   err))
		best = student_best_of_scores(scores, n_candidates, probs, err);
	free(scores);
	return best;
}

/* Candidates encoded at a time by student_choose(). */
#define CHOOSE_GROUP 64

/*
 * Encode candidates[first .. first + n) as targets into ids and lens; n
 * when done, else the index (from 0) of the one that failed: NULL, or no
 * memory (*oom).
 */
static int
encode_candidates(const Student *student, const char *const *candidates,
				  int first, int n, int32_t **ids, int *lens, bool *oom)
{
	for (int k = 0; k < n; k++)
	{
		*oom = false;
		if (candidates[first + k] == NULL)
			return k;
		lens[k] = student_encode_target(student->tokenizer, candidates[first + k],
										student->max_target_tokens, &ids[k]);
		if (lens[k] < 0)
		{
			*oom = true;
			return k;
		}
	}
	return n;
}

/*
 * Score the candidates CHOOSE_GROUP at a time into scores: memory for one
 * group's tokens, whatever their number.  False with a message.
 */
static bool
score_texts(const Student *student, ModelScorer *scorer,
			const char *const *candidates, int n_candidates, double *scores,
			CoreError *err)
{
	int32_t    *ids[CHOOSE_GROUP];
	int			lens[CHOOSE_GROUP];
	bool		ok = true;

	for (int first = 0; ok && first < n_candidates; first += CHOOSE_GROUP)
	{
		int			n = n_candidates - first < CHOOSE_GROUP ? n_candidates - first : CHOOSE_GROUP;
		bool		oom;
		int			encoded = encode_candidates(student, candidates, first, n,
												ids, lens, &oom);

		if (encoded < n)
		{
			core_error(err, oom ? CORE_ERR_NO_MEMORY : CORE_ERR_INVALID_INPUT,
					   oom ? "out of memory encoding candidate %d"
					   : "candidate %d is NULL", first + encoded + 1);
			ok = false;
		}
		else
			ok = model_scorer_score(scorer, (const int32_t *const *) ids, lens, n,
									scores + first, err);
		for (int k = 0; k < encoded; k++)
			free(ids[k]);
	}
	return ok;
}

int
student_choose(const Student *student, const char *input,
			   const char *const *candidates, int n_candidates,
			   double *probs, CoreError *err)
{
	int32_t    *prefix = NULL;
	int			prefix_len;
	double	   *scores = NULL;
	ModelScorer *scorer = NULL;
	int			best = -1;

	if (input == NULL || candidates == NULL || n_candidates < 1)
	{
		core_error(err, CORE_ERR_INVALID_INPUT, "student_choose needs an input and at least one candidate");
		return -1;
	}
	if (student->zero_shot)
		return pretrained_choose(student, input, candidates, n_candidates, probs, err);
	if (student_too_many_candidates(n_candidates, "the prediction", err))
		return -1;
	prefix_len = encode_prefix(student, false, input, &prefix);
	scores = malloc(n_candidates * sizeof(double));
	if (prefix_len < 0 || scores == NULL)
		core_error(err, CORE_ERR_NO_MEMORY, "out of memory encoding the input");
	else if ((scorer = model_scorer_create(student->model, prefix, prefix_len,
										   student->max_target_tokens + 1,
										   &student->stop, err)) != NULL &&
			 score_texts(student, scorer, candidates, n_candidates, scores,
						 err))
		best = student_best_of_scores(scores, n_candidates, probs, err);
	model_scorer_free(scorer);
	free(scores);
	free(prefix);
	return best;
}

/*
 * Length of the character at s, of avail bytes, that PostgreSQL text can
 * hold: well-formed UTF-8 and not NUL; 0 when there is none.
 */
static size_t
text_char_len(const uint8_t *s, size_t avail)
{
	return s[0] == '\0' ? 0 : utf8_char_len(s, avail);
}

/* Is s[0, len) whole, valid UTF-8 characters, none of them NUL? */
static bool
utf8_valid(const uint8_t *s, size_t len)
{
	for (size_t i = 0; i < len;)
	{
		size_t		n = text_char_len(s + i, len - i);

		if (n == 0)
			return false;
		i += n;
	}
	return true;
}

/*
 * A byte-level model may emit any byte and may stop in the middle of a
 * character, while PostgreSQL text must be valid and free of NUL.
 */
void
student_keep_valid_utf8(char *text, size_t len)
{
	uint8_t    *s = (uint8_t *) text;
	size_t		in = 0;
	size_t		out = 0;

	while (in < len)
	{
		size_t		n = text_char_len(s + in, len - in);

		if (n == 0)
		{
			in++;
			continue;
		}
		memmove(s + out, s + in, n);
		in += n;
		out += n;
	}
	s[out] = '\0';
}

char *
student_generate_ids(const Model *model, const Tokenizer *tok,
					 const int32_t *prefix, int prefix_len, int max_new_tokens,
					 const StopCheck *stop, CoreError *err)
{
	int32_t    *out = malloc((max_new_tokens > 0 ? max_new_tokens : 1) * sizeof(int32_t));
	char	   *text = NULL;
	size_t		len;
	int			n;

	if (out == NULL)
	{
		core_error(err, CORE_ERR_NO_MEMORY, "out of memory for %d generated tokens",
				   max_new_tokens);
		return NULL;
	}
	n = model_generate_greedy(model, prefix, prefix_len, max_new_tokens,
							  tok_eos(tok), out, stop, err);
	if (n >= 0)
	{
		text = tok_decode(tok, out, n, &len);
		if (text == NULL)
			core_error(err, CORE_ERR_NO_MEMORY, "out of memory decoding %d tokens", n);
		else
		{
			/* the space SentencePiece puts before a text: the answer's own */
			if (text[0] == ' ' && tok_strips_leading_space(tok))
				memmove(text, text + 1, len--);
			student_keep_valid_utf8(text, len);
		}
	}
	free(out);
	return text;
}

/* Task "explain" (1) or "predict" (0); -1 with a message otherwise. */
static int
task_is_explain(const char *task, CoreError *err)
{
	if (task != NULL && strcmp(task, "predict") == 0)
		return 0;
	if (task != NULL && strcmp(task, "explain") == 0)
		return 1;
	core_error(err, CORE_ERR_INVALID_INPUT, "task must be \"predict\" or \"explain\"");
	return -1;
}

int
student_prefix_tokens(const Student *student, const char *task,
					  const char *input, int32_t **ids, CoreError *err)
{
	int			explain = task_is_explain(task, err);
	int			len;

	*ids = NULL;
	if (explain < 0)
		return -1;
	if (student->zero_shot)
		return pretrained_prefix_tokens(student, input, ids, err);
	len = encode_prefix(student, explain, input, ids);
	if (len < 0)
		core_error(err, CORE_ERR_NO_MEMORY, "out of memory encoding the input");
	return len;
}

char *
student_token_text(const Student *student, int32_t id)
{
	const Tokenizer *tok = student->tokenizer;
	static const char *const names[] = {"<pad>", "<bos>", "<eos>", "<sep>"};
	const int32_t special[] = {tok_pad(tok), tok_bos(tok), tok_eos(tok), tok_sep(tok)};
	size_t		len = 0;
	const uint8_t *bytes;
	char	   *text;

	for (int i = 0; i < 4; i++)
		if (id == special[i])
			return strdup(names[i]);
	bytes = (const uint8_t *) tok_token(tok, id, &len);
	if (bytes == NULL)
		return strdup("<?>");
	if (utf8_valid(bytes, len))
	{
		if ((text = malloc(len + 1)) != NULL)
		{
			memcpy(text, bytes, len);
			text[len] = '\0';
		}
		return text;
	}
	/* a piece of a multibyte character: its bytes by number */
	if ((text = malloc(6 * len + 1)) != NULL)
		for (size_t i = 0; i < len; i++)
			snprintf(text + 6 * i, 7, "<0x%02X>", bytes[i]);
	return text;
}

char *
student_generate(const Student *student, const char *task, const char *input,
				 CoreError *err)
{
	int			explain = task_is_explain(task, err);
	int32_t    *prefix;
	int			prefix_len;
	char	   *text;

	if (explain < 0)
		return NULL;
	if (input == NULL)
	{
		core_error(err, CORE_ERR_INVALID_INPUT, "student_generate needs an input");
		return NULL;
	}
	if (student->zero_shot)
		return pretrained_answer(student, input, err);
	prefix_len = encode_prefix(student, explain, input, &prefix);
	if (prefix_len < 0)
	{
		core_error(err, CORE_ERR_NO_MEMORY, "out of memory encoding the input");
		return NULL;
	}
	text = student_generate_ids(student->model, student->tokenizer, prefix,
								prefix_len, student->max_target_tokens,
								&student->stop, err);
	free(prefix);
	return text;
}

size_t
student_memory_bytes(const Student *student)
{
	return sizeof(Student) + tok_memory_bytes(student->tokenizer) +
		model_memory_bytes(student->model);
}

void
student_free(Student *student)
{
	if (student == NULL)
		return;
	tok_free(student->tokenizer);
	model_free(student->model);
	free(student->prompt_template);
	free(student);
}

bool
answer_matches(AnswerMetric metric, const char *answer, const char *label)
{
	if (metric == METRIC_EQUATION)
		return equation_equal(answer, label);
	return strcmp(answer, label) == 0;
}
