/*
 * student_internal.h - what student.c (prediction, save/load) and the
 * trainer (train*.c) share: how text becomes the token sequences of
 * student.h, and the token-level prediction both run, so that validation
 * during training measures exactly what student_choose() and
 * student_generate() will answer.  Not for the glue.
 */
#ifndef DISTILL_CORE_STUDENT_INTERNAL_H
#define DISTILL_CORE_STUDENT_INTERNAL_H

#include "core/student.h"

/* Ranges of student_params_validate(), also checked by student_load(). */
#define STUDENT_MIN_INPUT_TOKENS 8
#define STUDENT_MAX_INPUT_TOKENS 4096
#define STUDENT_MIN_TARGET_TOKENS 1
#define STUDENT_MAX_TARGET_TOKENS 1024

/* The weights' own header before the model's (student_io.c). */
#define STUDENT_HEADER_SIZE 20

/*
 * The text before the input, per task: a tag of the student's own
 * vocabulary (trained on it), or plain text in a pretrained base's, where
 * the input follows as text of its own (SentencePiece puts a space before
 * it).
 */
#define STUDENT_PREDICT_TAG "predict: "
#define STUDENT_EXPLAIN_TAG "explain: "
#define STUDENT_BASE_PREDICT_TAG "predict:"
#define STUDENT_BASE_EXPLAIN_TAG "explain:"

/* The tag of a task ("explain", else "predict") under tok. */
extern const char *student_tag(const Tokenizer *tok, bool explain);

/*
 * The first max_tokens tokens of text (a NUL-terminated string) in a
 * malloc'd *ids (free it even when the count is 0), reading no more of
 * text than they need.  Returns the count, or -1 when memory runs out.
 */
extern int	student_encode(const Tokenizer *tok, const char *text,
						   int max_tokens, int32_t **ids);

/* Like student_encode(), then <eos>: a target as the model learns it. */
extern int	student_encode_target(const Tokenizer *tok, const char *text,
								  int max_tokens, int32_t **ids);

/*
 * The prefix of a sequence: <bos> tag input <sep> with the student's own
 * special tokens.  A pretrained base has no <sep> and may have no <bos>
 * (Qwen2): its prefix is [<bos>] tag input "\n", <bos> when the base puts
 * one first, and its targets end in the base's <eos>.
 */
extern int	student_prefix_len(const Tokenizer *tok, int n_tag, int n_input);

/* Write the prefix to out; returns its length. */
extern int	student_write_prefix(const Tokenizer *tok,
								 const int32_t *tag, int n_tag,
								 const int32_t *input, int n_input,
								 int32_t *out);

/*
 * The token after the end of a shorter sequence of a batch, which no loss
 * reads: <pad>, or <eos> in a pretrained base's vocabulary, which has no
 * <pad>.
 */
extern int32_t student_padding(const Tokenizer *tok);

/*
 * Can tok lay out a student's sequences (student_prefix_len())?  A
 * pretrained tokenizer needs an <eos> and a token for "\n"; false with a
 * message otherwise.
 */
extern bool student_layout_possible(const Tokenizer *tok, CoreError *err);

/*
 * The model's max_seq_len for these limits: the longest prefix (with the
 * longer of the two tags under this tokenizer), the longest target and
 * <eos>.  -1 when memory runs out.
 */
extern int	student_sequence_limit(const Tokenizer *tok, int max_input_tokens,
								   int max_target_tokens);

/*
 * Drop, in place, every byte of text[0 .. len) that is not part of a
 * well-formed UTF-8 character, and NUL bytes; NUL-terminate the rest.
 */
extern void student_keep_valid_utf8(char *text, size_t len);

/*
 * More than STUDENT_MAX_CANDIDATES (what has them: "the label set")?  Then
 * true with a message.
 */
extern bool student_too_many_candidates(int n, const char *what,
										CoreError *err);

/*
 * The index of the best of n scores (log-likelihoods), and their softmax
 * in probs (may be NULL); -1 with a message when one is not finite.
 */
extern int	student_best_of_scores(const double *scores, int n, double *probs,
								   CoreError *err);

/* student_choose() and friends for an imported model (student_pretrained.c). */
extern int	pretrained_choose(const Student *student, const char *input,
							  const char *const *candidates, int n_candidates,
							  double *probs, CoreError *err);
extern char *pretrained_answer(const Student *student, const char *input,
							   CoreError *err);
extern int	pretrained_prefix_tokens(const Student *student, const char *input,
									 int32_t **ids, CoreError *err);

/*
 * student_choose() and student_generate() on token ids.  Candidates end in
 * <eos> (student_encode_target()); at most STUDENT_MAX_CANDIDATES of them.
 * stop may be NULL.
 */
extern int	student_choose_ids(const Model *model,
							   const int32_t *prefix, int prefix_len,
							   const int32_t *const *candidates,
							   const int *candidate_lens, int n_candidates,
							   double *probs, CoreError *err);
extern char *student_generate_ids(const Model *model, const Tokenizer *tok,
								  const int32_t *prefix, int prefix_len,
								  int max_new_tokens, const StopCheck *stop,
								  CoreError *err);

#endif
