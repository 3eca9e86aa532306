/*
 * parse.h - split a teacher's chain-of-thought reply into rationale and
 * answer, and match the answer to a label set.
 *
 * The rules (docs/tasks.md, answer_prefix):
 *
 * 1. Keep the text before the first invented follow-up example, which
 *    starts with "\nQ:" (or with a "\nQ" that ends the reply: the marker
 *    cut short by the token limit).  A reply that itself begins with "Q:"
 *    (a model echoing the question) is kept.
 * 2. Split at the first occurrence of answer_prefix in that text; the
 *    rationale is the text before it, trimmed.  (First rather than last:
 *    see parse.c.)
 * 3. When the answer holds choice markers, a single ASCII letter in
 *    parentheses such as "(c)" or "(C)", keep the text after the first
 *    marker up to the next one: "(a) lake or (b) river." gives "lake or".
 *    "(2)" or "(84 / 2)" is an answer, not a marker.
 * 4. Trim whitespace, drop one final period, trim again.  An answer left
 *    empty means no answer.
 * 5. (answer_cut_off) An answer that opens a parenthesis it never closes,
 *    such as "((491 - 21", was cut short by the token limit: the caller
 *    should not take it as the answer.
 *
 * Only ASCII bytes are ever special, so a multibyte UTF-8 character is
 * never split.  Plain C; no PostgreSQL headers.
 */
#ifndef DISTILL_TEACHER_PARSE_H
#define DISTILL_TEACHER_PARSE_H

#include <stdbool.h>
#include <stddef.h>

/*
 * Parse raw with the rules above.  Returns true when an answer was found;
 * then *rationale (possibly "") and *answer are malloc'd and the caller
 * frees them.  Returns false, with both set to NULL, when raw or
 * answer_prefix is NULL or empty, the prefix does not occur before the first
 * follow-up, the answer is empty after cleanup, or memory runs out.
 */
extern bool parse_teacher_reply(const char *raw, const char *answer_prefix,
								char **rationale, char **answer);

/* Rule 5: does answer open more parentheses than it closes? */
extern bool answer_cut_off(const char *answer);

/*
 * Index of the first label equal to answer ignoring ASCII case and
 * surrounding whitespace, or -1 when none is (or answer is NULL).  NULL
 * labels never match.
 */
extern int	match_label(const char *answer, const char *const *labels,
						size_t n_labels);

#endif
