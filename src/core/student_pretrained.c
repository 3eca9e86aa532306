/*
 * student_pretrained.c - prediction with an imported pretrained model.
 *
 * A base language model has no task tags, no <sep> and was never taught to
 * end an answer with <eos>: it continues text.  So a prediction renders
 * the prompt template with the input in it and scores each candidate as
 * the text that follows it after a space (zero-shot, as evaluation
 * harnesses of base models do), and a free-text answer is the greedy
 * continuation of the rendered prompt.
 *
 * Tokens are those of the whole text: a candidate's tokens are what
 * encoding "<prompt> <candidate>" gives after the prompt's own tokens.
 * When a tokenizer merges across that boundary (the prompt's tokens are
 * not a prefix of the whole), the candidate is scored after the part they
 * share instead.
 */
#include "core/student.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/student_internal.h"
#include "core/tokenizer_pretrained.h"
#include "core/util.h"

#define INPUT_PLACEHOLDER "{input}"

Student *
student_from_checkpoint(Tokenizer *tokenizer, Model *model, CoreError *err)
{
	Student    *s = calloc(1, sizeof(Student));
	int			context = model->config.max_seq_len;

	if (s == NULL)
	{
		core_error(err, CORE_ERR_NO_MEMORY, "out of memory for a student");
		tok_free(tokenizer);
		model_free(model);
		return NULL;
	}
	s->tokenizer = tokenizer;
	s->model = model;
	s->zero_shot = true;
	s->max_input_tokens = context / 2;
	if (s->max_input_tokens > STUDENT_MAX_INPUT_TOKENS)
		s->max_input_tokens = STUDENT_MAX_INPUT_TOKENS;
	s->max_target_tokens = context / 4;
	if (s->max_target_tokens > STUDENT_MAX_TARGET_TOKENS)
		s->max_target_tokens = STUDENT_MAX_TARGET_TOKENS;
	if (s->max_input_tokens < STUDENT_MIN_INPUT_TOKENS ||
		s->max_target_tokens < STUDENT_MIN_TARGET_TOKENS)
	{
		core_error(err, CORE_ERR_INVALID_INPUT,
				   "a context of %d tokens is too short for prediction", context);
		student_free(s);
		return NULL;
	}
	return s;
}

int
student_token_ids(const Student *student, const char *text, int32_t **ids,
				  CoreError *err)
{
	return tok_encode_checked(student->tokenizer, text, strlen(text), ids, err);
}

/*
 * [<bos>] + the ids of text, in a malloc'd *ids; their count, or -1 with
 * err.  The sequence must leave room for min_room more tokens in the
 * model's context.
 */
static int
encode_with_bos(const Student *student, const char *text, int min_room,
				int32_t **ids, CoreError *err)
{
	const Tokenizer *tok = student->tokenizer;
	int			bos = tok_adds_bos(tok) && tok_bos(tok) >= 0 ? 1 : 0;
	int32_t    *text_ids;
	int			n = tok_encode_checked(tok, text, strlen(text), &text_ids, err);
	int			context = student->model->config.max_seq_len;

	*ids = NULL;
	if (n < 0)
		return -1;
	if (bos + n + min_room > context)
	{
		core_error(err, CORE_ERR_INVALID_INPUT,
				   "the prompt has %d tokens, more than the model's context of %d tokens leaves room for",
				   bos + n, context);
		free(text_ids);
		return -1;
	}
	*ids = malloc((bos + n + 1) * sizeof(int32_t));
	if (*ids == NULL)
	{
		core_error(err, CORE_ERR_NO_MEMORY, "out of memory encoding the prompt");
		free(text_ids);
		return -1;
	}
	if (bos)
		(*ids)[0] = tok_bos(tok);
	memcpy(*ids + bos, text_ids, n * sizeof(int32_t));
	free(text_ids);
	return bos + n;
}

/*
 * input, or the text of its first max_input_tokens tokens when it has
 * more (malloc'd); NULL with err.
 */
static char *
cut_input(const Student *student, const char *input, CoreError *err)
{
	int32_t    *ids;
	int			n = tok_encode_checked(student->tokenizer, input, strlen(input), &ids, err);
	char	   *text;
	size_t		len;

	if (n < 0)
		return NULL;
	if (n <= student->max_input_tokens)
		text = strdup(input);
	else if ((text = tok_decode(student->tokenizer, ids, student->max_input_tokens, &len)) != NULL)
	{
		/* a SentencePiece decoder gives the space it prepended back */
		if (text[0] == ' ' && input[0] != ' ')
			memmove(text, text + 1, len);
		student_keep_valid_utf8(text, strlen(text));
	}
	free(ids);
	if (text == NULL)
		core_error(err, CORE_ERR_NO_MEMORY, "out of memory cutting the input");
	return text;
}

/*
 * The prompt template with the input (cut to max_input_tokens) in place of
 * each "{input}"; malloc'd, NULL with err.
 */
static char *
render_prompt(const Student *student, const char *input, CoreError *err)
{
	const char *template = student->prompt_template ? student->prompt_template
		: INPUT_PLACEHOLDER;
	char	   *cut = cut_input(student, input, err);
	TextBuffer	out = {0};
	const char *at;
	bool		ok = true;

	if (cut == NULL)
		return NULL;
	while (ok && (at = strstr(template, INPUT_PLACEHOLDER)) != NULL)
	{
		ok = text_buffer_append(&out, template, at - template) &&
			text_buffer_append(&out, cut, strlen(cut));
		template = at + strlen(INPUT_PLACEHOLDER);
	}
	ok = ok && text_buffer_append(&out, template, strlen(template));
	free(cut);
	if (ok && out.data == NULL)
		ok = (out.data = strdup("")) != NULL;	/* nothing was appended */
	if (!ok)
	{
		free(out.data);
		core_error(err, CORE_ERR_NO_MEMORY, "out of memory rendering the prompt");
		return NULL;
	}
	return out.data;
}

int
pretrained_prefix_tokens(const Student *student, const char *input,
						 int32_t **ids, CoreError *err)
{
	char	   *prompt = render_prompt(student, input, err);
	int			n;

	*ids = NULL;
	if (prompt == NULL)
		return -1;
	n = encode_with_bos(student, prompt, 0, ids, err);
	free(prompt);
	return n;
}

/* The length of the common start of a[0, na) and b[0, nb). */
static int
common_prefix(const int32_t *a, int na, const int32_t *b, int nb)
{
	int			i = 0;

	while (i < na && i < nb && a[i] == b[i])
		i++;
	return i;
}

/*
 * log p(candidate | prompt) into *score: from the shared scorer of the
 * prompt's tokens when they start the tokens of prompt + " " + candidate,
 * else after the tokens both share.  False with err.
 */
static bool
score_candidate(const Student *student, ModelScorer *scorer,
				const int32_t *prompt_ids, int n_prompt, const char *prompt,
				const char *candidate, double *score, CoreError *err)
{
	size_t		whole_len;
	char	   *whole_text;
	int32_t    *whole = NULL;
	int			n_whole;
	int			shared;
	int			n_cand;
	const int32_t *cand;
	bool		ok = false;

	if (candidate == NULL)
	{
		core_error(err, CORE_ERR_INVALID_INPUT, "a candidate is NULL");
		return false;
	}
	whole_len = strlen(prompt) + 1 + strlen(candidate);
	if ((whole_text = malloc(whole_len + 1)) == NULL)
	{
		core_error(err, CORE_ERR_NO_MEMORY, "out of memory encoding a candidate");
		return false;
	}
	snprintf(whole_text, whole_len + 1, "%s %s", prompt, candidate);
	n_whole = encode_with_bos(student, whole_text, 0, &whole, err);
	if (n_whole < 0)
		goto done;
	shared = common_prefix(prompt_ids, n_prompt, whole, n_whole);
	if (shared == n_whole)
		shared--;				/* the candidate adds no token: score the last */
	cand = whole + shared;
	n_cand = n_whole - shared;
	if (n_cand > student->max_target_tokens)
		n_cand = student->max_target_tokens;
	if (shared == n_prompt)
		ok = model_scorer_score(scorer, &cand, &n_cand, 1, score, err);
	else
		ok = model_score_candidates(student->model, whole, shared, &cand, &n_cand,
									1, score, err);
done:
	free(whole);
	free(whole_text);
	return ok;
}

int
pretrained_choose(const Student *student, const char *input,
				  const char *const *candidates, int n_candidates,
				  double *probs, CoreError *err)
{
	char	   *prompt = render_prompt(student, input, err);
	int32_t    *prompt_ids = NULL;
	int			n_prompt = -1;
	double	   *scores = malloc(n_candidates * sizeof(double));
	ModelScorer *scorer = NULL;
	int			best = -1;
	bool		ok = true;

	if (prompt != NULL)
		n_prompt = encode_with_bos(student, prompt, student->max_target_tokens,
								   &prompt_ids, err);
	if (scores == NULL)
		core_error(err, CORE_ERR_NO_MEMORY, "out of memory for %d scores", n_candidates);
	else if (n_prompt > 0 &&
			 (scorer = model_scorer_create(student->model, prompt_ids, n_prompt,
										   student->max_target_tokens,
										   &student->stop, err)) != NULL)
	{
		for (int k = 0; ok && k < n_candidates; k++)
			ok = score_candidate(student, scorer, prompt_ids, n_prompt, prompt,
								 candidates[k], &scores[k], err);
		if (ok)
			best = student_best_of_scores(scores, n_candidates, probs, err);
	}
	model_scorer_free(scorer);
	free(scores);
	free(prompt_ids);
	free(prompt);
	return best;
}

/*
 * Greedy continuation of the tokens prefix[0, n): at most max_tokens,
 * within the context, up to <eos> or <bos>.  strip_space: drop the space a
 * SentencePiece decoder puts before the first word of a text.
 */
static char *
continue_ids(const Student *student, const int32_t *prefix, int n,
			 int max_tokens, bool strip_space, CoreError *err)
{
	const Tokenizer *tok = student->tokenizer;
	int			room = student->model->config.max_seq_len - n;
	int32_t    *out;
	int			n_out;
	char	   *text = NULL;
	size_t		len;

	if (max_tokens > room)
		max_tokens = room;
	out = malloc((max_tokens > 0 ? max_tokens : 1) * sizeof(int32_t));
	if (out == NULL)
	{
		core_error(err, CORE_ERR_NO_MEMORY, "out of memory for %d tokens", max_tokens);
		return NULL;
	}
	n_out = model_generate_greedy_until(student->model, prefix, n, max_tokens,
										(int32_t[]) {tok_eos(tok), tok_bos(tok)}, 2,
										out, &student->stop, err);
	if (n_out >= 0)
	{
		text = tok_decode(tok, out, n_out, &len);
		if (text == NULL)
			core_error(err, CORE_ERR_NO_MEMORY, "out of memory decoding %d tokens", n_out);
		else
		{
			if (strip_space && text[0] == ' ' && tok_strips_leading_space(tok))
				memmove(text, text + 1, len--);
			student_keep_valid_utf8(text, len);
		}
	}
	free(out);
	return text;
}

char *
student_continue(const Student *student, const char *prompt, int max_tokens,
				 CoreError *err)
{
	int32_t    *ids;
	int			n = encode_with_bos(student, prompt, 0, &ids, err);
	char	   *text;

	if (n < 0)
		return NULL;
	text = continue_ids(student, ids, n, max_tokens, prompt[0] == '\0', err);
	free(ids);
	return text;
}

char *
pretrained_answer(const Student *student, const char *input, CoreError *err)
{
	char	   *prompt = render_prompt(student, input, err);
	char	   *answer;

	if (prompt == NULL)
		return NULL;
	answer = student_continue(student, prompt, student->max_target_tokens, err);
	free(prompt);
	return answer;
}
