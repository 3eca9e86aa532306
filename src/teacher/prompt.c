/*
 * prompt.c - build the few-shot chain-of-thought teacher prompt.
 *
 * The prompt is written twice by the same code: once without a buffer to
 * measure it, once into a buffer of exactly that size.
 */
#include "teacher/prompt.h"

#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

typedef struct PromptWriter
{
	char	   *buf;			/* NULL while measuring */
	size_t		len;			/* bytes written (or counted) so far */
} PromptWriter;

static bool
is_empty(const char *s)
{
	return s == NULL || *s == '\0';
}

static void
put(PromptWriter *w, const char *s)
{
	size_t		n = is_empty(s) ? 0 : strlen(s);

	if (w->buf != NULL && n > 0)
		memcpy(w->buf + w->len, s, n);
	w->len += n;
}

/* " <s>" when s is not empty, nothing otherwise. */
static void
put_word(PromptWriter *w, const char *s)
{
	if (is_empty(s))
		return;
	put(w, " ");
	put(w, s);
}

static void
put_example(PromptWriter *w, const TaskExample *ex, const char *answer_prefix)
{
	const char *label = ex->label;

	put(w, "Q: ");
	put(w, ex->input);
	put(w, "\nA:");
	put_word(w, ex->rationale);
	put_word(w, answer_prefix);
	put_word(w, label);
	if (is_empty(label) || label[strlen(label) - 1] != '.')
		put(w, ".");
	put(w, "\n\n");
}

static void
write_prompt(PromptWriter *w, const char *instruction,
			 const TaskExample *examples, size_t n_examples,
			 const char *answer_prefix, const char *input)
{
	if (!is_empty(instruction))
	{
		put(w, instruction);
		put(w, "\n\n");
	}
	for (size_t i = 0; i < n_examples; i++)
		put_example(w, &examples[i], answer_prefix);
	put(w, "Q: ");
	put(w, input);
	put(w, "\nA:");
}

char *
prompt_build(const char *instruction, const TaskExample *examples,
			 size_t n_examples, const char *answer_prefix, const char *input)
{
	PromptWriter w = {NULL, 0};

	write_prompt(&w, instruction, examples, n_examples, answer_prefix, input);
	w.buf = malloc(w.len + 1);
	if (w.buf == NULL)
		return NULL;
	w.len = 0;
	write_prompt(&w, instruction, examples, n_examples, answer_prefix, input);
	w.buf[w.len] = '\0';
	return w.buf;
}
