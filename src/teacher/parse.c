/*
 * parse.c - split a teacher's chain-of-thought reply into rationale and
 * answer (rules in parse.h).
 *
 * Why the first occurrence of the answer prefix and not the last: on the
 * real PaLM replies in ../shared/data (CommonsenseQA and SVAMP, 11,962
 * rows) the text before the first "\nQ:" never holds the prefix twice, so
 * the two give the same figures there.  They part when a reply runs on in
 * a form the cut misses (follow-ups formatted otherwise, an afterthought).
 * Parsing the CQA replies with the cut disabled, as a stand-in for that,
 * the last occurrence yields a clean one-line answer other than the
 * teacher's on 24% of rows, nearly always the answer of an invented
 * question, which a closed label set would accept as a wrong label; the
 * first occurrence does so on 0.03% and otherwise leaves a multi-line
 * answer that matches no label, so the row is stored 'unparsed' with its
 * raw text for a later re-parse.  (test/unit/test_parse.c prints these
 * figures.)  The price: a rationale that itself contains the prefix
 * verbatim is misparsed; the few-shot format makes that rare.
 *
 * All work is on spans [start, end) of the raw text; strings are copied out
 * only at the end.
 */
#include "teacher/parse.h"

#include <stdlib.h>
#include <string.h>

#include "core/util.h"

typedef struct Span
{
	const char *start;
	const char *end;			/* one past the last byte */
} Span;

static bool
is_letter(char c)
{
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
}

static char
ascii_lower(char c)
{
	return c >= 'A' && c <= 'Z' ? c - 'A' + 'a' : c;
}

static Span
trim(Span s)
{
	size_t		len = s.end - s.start;

	s.start = trim_space(s.start, &len);
	s.end = s.start + len;
	return s;
}

/* First choice marker "(x)" in s, or NULL. */
static const char *
find_marker(Span s)
{
	for (const char *p = s.start; p + 3 <= s.end; p++)
		if (p[0] == '(' && is_letter(p[1]) && p[2] == ')')
			return p;
	return NULL;
}

/* The paper's rule: the text after the first marker up to the next one. */
static Span
select_choice(Span answer)
{
	const char *marker = find_marker(answer);
	const char *next;

	if (marker == NULL)
		return answer;
	answer.start = marker + 3;
	next = find_marker(answer);
	if (next != NULL)
		answer.end = next;
	return answer;
}

static Span
clean_answer(Span answer)
{
	answer = trim(select_choice(answer));
	if (answer.end > answer.start && answer.end[-1] == '.')
		answer.end--;
	return trim(answer);
}

static Span
span_of(const char *s)
{
	return (Span) {s, s + strlen(s)};
}

static bool
equal_ignoring_case(Span a, Span b)
{
	if (a.end - a.start != b.end - b.start)
		return false;
	for (; a.start < a.end; a.start++, b.start++)
		if (ascii_lower(*a.start) != ascii_lower(*b.start))
			return false;
	return true;
}

static char *
span_dup(Span s)
{
	size_t		n = s.end - s.start;
	char	   *copy = malloc(n + 1);

	if (copy != NULL)
	{
		memcpy(copy, s.start, n);
		copy[n] = '\0';
	}
	return copy;
}

/*
 * Where the first invented follow-up starts: at "\nQ:", or at a "\nQ" that
 * ends the reply, which is that marker cut short by the token limit (one
 * SVAMP reply ends so).  The end of raw when there is none.
 */
static const char *
find_follow_up(const char *raw)
{
	const char *follow_up = strstr(raw, "\nQ:");
	size_t		len;

	if (follow_up != NULL)
		return follow_up;
	len = strlen(raw);
	if (len >= 2 && raw[len - 2] == '\n' && raw[len - 1] == 'Q')
		return raw + len - 2;
	return raw + len;
}

bool
parse_teacher_reply(const char *raw, const char *answer_prefix,
					char **rationale, char **answer)
{
	const char *end;
	const char *prefix;
	Span		answer_span;

	*rationale = NULL;
	*answer = NULL;
	if (raw == NULL || answer_prefix == NULL || *answer_prefix == '\0')
		return false;

	end = find_follow_up(raw);
	prefix = strstr(raw, answer_prefix);
	if (prefix == NULL || prefix + strlen(answer_prefix) > end)
		return false;

	answer_span.start = prefix + strlen(answer_prefix);
	answer_span.end = end;
	answer_span = clean_answer(answer_span);
	if (answer_span.start == answer_span.end)
		return false;

	*rationale = span_dup(trim((Span) {raw, prefix}));
	*answer = span_dup(answer_span);
	if (*rationale == NULL || *answer == NULL)
	{
		free(*rationale);
		free(*answer);
		*rationale = NULL;
		*answer = NULL;
		return false;
	}
	return true;
}

bool
answer_cut_off(const char *answer)
{
	int			open = 0;

	for (const char *p = answer; *p != '\0'; p++)
	{
		if (*p == '(')
			open++;
		else if (*p == ')' && open > 0)
			open--;
	}
	return open > 0;
}

int
match_label(const char *answer, const char *const *labels, size_t n_labels)
{
	if (answer == NULL)
		return -1;
	for (size_t i = 0; i < n_labels; i++)
		if (labels[i] != NULL && equal_ignoring_case(trim(span_of(answer)),
													 trim(span_of(labels[i]))))
			return (int) i;
	return -1;
}
