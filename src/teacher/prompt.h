/*
 * prompt.h - the few-shot chain-of-thought prompt sent to a teacher.
 *
 * Plain C; no PostgreSQL headers.
 */
#ifndef DISTILL_TEACHER_PROMPT_H
#define DISTILL_TEACHER_PROMPT_H

#include <stddef.h>

/* One demonstration: a question, its worked reasoning and its label. */
typedef struct TaskExample
{
	const char *input;
	const char *rationale;
	const char *label;
} TaskExample;

/*
 * Build the teacher prompt:
 *
 *   <instruction>\n\n                                  (unless NULL or empty)
 *   Q: <input>\nA: <rationale> <answer_prefix> <label>.\n\n   (each example)
 *   Q: <input>\nA:
 *
 * A label that already ends with a period gets no second one; an empty or
 * NULL rationale or answer_prefix is left out together with its space, and
 * any other NULL string reads as empty.  Returns a malloc'd string the
 * caller frees, or NULL when out of memory.
 */
extern char *prompt_build(const char *instruction,
						  const TaskExample *examples, size_t n_examples,
						  const char *answer_prefix, const char *input);

#endif
