/*
 * fuzz_parse.c - splitting a teacher's reply into rationale and answer,
 * and matching the answer to labels (teacher/parse.h).
 *
 * Input: "<answer prefix>\0<reply>\0<label>\n<label>...", the last part
 * optional; without any NUL the whole input is the reply, with the prefix
 * "So the answer is" and the CommonsenseQA-like labels below.
 *
 * Checks besides the sanitizers: a parsed answer is non-empty, trimmed and
 * a piece of the reply, and so is the rationale; both are valid UTF-8 when
 * the reply and the prefix are (only ASCII bytes are special); a matched
 * label equals the answer up to ASCII case and surrounding white space.
 */
#include "fuzz.h"

#include <strings.h>

#include "teacher/parse.h"

#define MAX_LABELS 16

static const char *const default_labels[] = {
	"british columbia", "body of water", "wooded area", "pay debts", "zoo",
	NULL, "(10 * 45)", ""
};

static bool
is_space(char c)
{
	return c == ' ' || c == '\t' || c == '\n' || c == '\r' ||
		c == '\f' || c == '\v';
}

/* a and b equal ignoring ASCII case and white space at either end */
static bool
same_label(const char *a, const char *b)
{
	size_t		na,
				nb;

	while (is_space(*a))
		a++;
	while (is_space(*b))
		b++;
	na = strlen(a);
	nb = strlen(b);
	while (na > 0 && is_space(a[na - 1]))
		na--;
	while (nb > 0 && is_space(b[nb - 1]))
		nb--;
	return na == nb && strncasecmp(a, b, na) == 0;
}

/* Split text at '\n' into at most MAX_LABELS labels (text is modified). */
static size_t
split_labels(char *text, const char **labels)
{
	size_t		n = 0;

	for (char *line = text; line != NULL && n < MAX_LABELS; n++)
	{
		char	   *newline = strchr(line, '\n');

		labels[n] = line;
		if (newline != NULL)
			*newline++ = '\0';
		line = newline;
	}
	return n;
}

static void
check_match(const char *answer, const char *const *labels, size_t n_labels)
{
	int			i = match_label(answer, labels, n_labels);

	FUZZ_CHECK(i >= -1 && i < (int) n_labels, "label index %d of %zu", i, n_labels);
	for (int k = 0; k < (i < 0 ? (int) n_labels : i); k++)
		FUZZ_CHECK(labels[k] == NULL || answer == NULL ||
				   !same_label(answer, labels[k]),
				   "label %d matches before the one returned (%d)", k, i);
	if (i >= 0)
		FUZZ_CHECK(answer != NULL && labels[i] != NULL &&
				   same_label(answer, labels[i]),
				   "label %d does not match", i);
}

static void
check_parse(const char *raw, const char *prefix,
			const char *const *labels, size_t n_labels)
{
	char	   *rationale;
	char	   *answer;
	bool		utf8 = fuzz_utf8_valid(raw, strlen(raw)) &&
		fuzz_utf8_valid(prefix, strlen(prefix));

	if (!parse_teacher_reply(raw, prefix, &rationale, &answer))
	{
		FUZZ_CHECK(rationale == NULL && answer == NULL, "output after a failure");
		check_match(NULL, labels, n_labels);
		return;
	}
	FUZZ_CHECK(rationale != NULL && answer != NULL, "a success without output");
	FUZZ_CHECK(answer[0] != '\0', "an empty answer");
	FUZZ_CHECK(!is_space(answer[0]) && !is_space(answer[strlen(answer) - 1]),
			   "answer not trimmed: \"%s\"", answer);
	FUZZ_CHECK(strstr(raw, answer) != NULL, "answer not in the reply: \"%s\"", answer);
	FUZZ_CHECK(strstr(raw, rationale) != NULL, "rationale not in the reply");
	if (utf8)
	{
		FUZZ_CHECK(fuzz_utf8_valid(answer, strlen(answer)), "answer: invalid UTF-8");
		FUZZ_CHECK(fuzz_utf8_valid(rationale, strlen(rationale)),
				   "rationale: invalid UTF-8");
	}
	(void) answer_cut_off(answer);
	check_match(answer, labels, n_labels);
	free(rationale);
	free(answer);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char	   *prefix = fuzz_take_field(&data, &size);
	char	   *raw = fuzz_take_field(&data, &size);
	char	   *label_text = NULL;
	const char *labels[MAX_LABELS];
	size_t		n_labels;

	if (prefix == NULL)
	{
		prefix = fuzz_copy((const uint8_t *) "So the answer is", 16, true);
		raw = fuzz_copy(data, size, true);
	}
	else if (raw == NULL)
		raw = fuzz_copy(data, size, true);
	else
		label_text = fuzz_copy(data, size, true);

	if (label_text != NULL)
		n_labels = split_labels(label_text, labels);
	else
	{
		n_labels = sizeof(default_labels) / sizeof(default_labels[0]);
		memcpy(labels, default_labels, sizeof(default_labels));
	}
	check_parse(raw, prefix, labels, n_labels);
	(void) answer_cut_off(raw);
	free(label_text);
	free(raw);
	free(prefix);
	return 0;
}
