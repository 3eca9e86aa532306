/*
 * test_parse.c - the teacher prompt and the parsing of teacher replies.
 *
 * Besides the rules one by one, this parses every real PaLM reply in
 * ../shared/data and checks the results against the paper's reference parse
 * stored with each row: teacher_label for CommonsenseQA, the gold equation's
 * value for SVAMP.  The data must be there (the CI copies it next to the
 * clone): a missing or shortened file is a failure, not a skip.  Run from
 * the repository root.
 */
#include <json-c/json.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "core/equation.h"
#include "teacher/parse.h"
#include "teacher/prompt.h"
#include "unit.h"

#define CQA_PREFIX "So the answer is"
#define SVAMP_PREFIX "The answer is"

/* ---------- prompt ---------- */

static void
test_prompt(void)
{
	TaskExample ex[] = {
		{"Is water wet?\n(a) yes\n(b) no", "Water makes things wet.", "yes"},
		{"2 + 2?", "Two and two make four.", "four."},
	};
	char	   *p;

	p = prompt_build("Answer the question.", ex, 2, "So the answer is", "Is fire hot?");
	CHECKF(p != NULL && strcmp(p,
							   "Answer the question.\n\n"
							   "Q: Is water wet?\n(a) yes\n(b) no\n"
							   "A: Water makes things wet. So the answer is yes.\n\n"
							   "Q: 2 + 2?\n"
							   "A: Two and two make four. So the answer is four.\n\n"
							   "Q: Is fire hot?\nA:") == 0, "got [%s]", p);
	free(p);

	/* no instruction paragraph when it is empty or NULL */
	p = prompt_build("", ex, 1, "So the answer is", "x");
	CHECKF(strcmp(p, "Q: Is water wet?\n(a) yes\n(b) no\n"
				  "A: Water makes things wet. So the answer is yes.\n\nQ: x\nA:") == 0,
		   "got [%s]", p);
	free(p);
	p = prompt_build(NULL, NULL, 0, "So the answer is", "x");
	CHECKF(strcmp(p, "Q: x\nA:") == 0, "got [%s]", p);
	free(p);

	/* zero-shot with an instruction */
	p = prompt_build("Classify.", NULL, 0, "So the answer is", "x");
	CHECKF(strcmp(p, "Classify.\n\nQ: x\nA:") == 0, "got [%s]", p);
	free(p);

	/* an empty rationale leaves no double space */
	{
		TaskExample bare = {"q", "", "l"};

		p = prompt_build(NULL, &bare, 1, "The answer is", "x");
		CHECKF(strcmp(p, "Q: q\nA: The answer is l.\n\nQ: x\nA:") == 0, "got [%s]", p);
		free(p);
	}

	/* UTF-8 passes through untouched */
	{
		TaskExample u = {"Où est Tromsø?", "C’est en Norvège.", "Norvège"};

		p = prompt_build(NULL, &u, 1, "Donc", "¿Qué?");
		CHECKF(strcmp(p, "Q: Où est Tromsø?\nA: C’est en Norvège. Donc Norvège.\n\n"
					  "Q: ¿Qué?\nA:") == 0, "got [%s]", p);
		free(p);
	}
}

/* ---------- parsing rules ---------- */

/* Parse raw and compare; expect_answer NULL means "no answer found". */
static void
check_parse(int line, const char *raw, const char *prefix,
			const char *expect_rationale, const char *expect_answer)
{
	char	   *rationale = (char *) 1;
	char	   *answer = (char *) 1;
	bool		found = parse_teacher_reply(raw, prefix, &rationale, &answer);

	if (expect_answer == NULL)
		CHECKF(!found && rationale == NULL && answer == NULL,
			   "line %d: expected no answer, got [%s]", line,
			   found ? answer : "(null)");
	else
		CHECKF(found && strcmp(answer, expect_answer) == 0 &&
			   strcmp(rationale, expect_rationale) == 0,
			   "line %d: expected [%s] / [%s], got [%s] / [%s]", line,
			   expect_rationale, expect_answer,
			   found ? rationale : "(null)", found ? answer : "(null)");
	if (found)
	{
		free(rationale);
		free(answer);
	}
}

#define PARSE(raw, prefix, rationale, answer) \
	check_parse(__LINE__, raw, prefix, rationale, answer)

static void
test_parse_rules(void)
{
	/* the ordinary case */
	PARSE("Birds fly. So the answer is (b) sky.", CQA_PREFIX, "Birds fly.", "sky");
	PARSE("  Birds fly.  \n So the answer is (B) Sky.  \n", CQA_PREFIX, "Birds fly.", "Sky");

	/* cut at the first invented follow-up */
	PARSE("R. So the answer is (c) garden.\n\nQ: next?\nA: S. So the answer is (a) park.",
		  CQA_PREFIX, "R.", "garden");
	PARSE("R. So the answer is (c) garden.\nQ: next? So the answer is (a) park.",
		  CQA_PREFIX, "R.", "garden");
	/* a follow-up marker cut short by the token limit */
	PARSE("R. The answer is ((15 * 19) + (62 * 19)).\n\nQ", SVAMP_PREFIX,
		  "R.", "((15 * 19) + (62 * 19))");
	PARSE("R. So the answer is (a) Q", CQA_PREFIX, "R.", "Q");
	PARSE("R. So the answer is (a) x\nQ", CQA_PREFIX, "R.", "x");
	/* "\nQ:" before the prefix: the prefix belongs to the follow-up */
	PARSE("I am not sure.\n\nQ: next?\nA: S. So the answer is (a) park.", CQA_PREFIX, NULL, NULL);
	/* "Q:" not at a line start, or at the very start, is no follow-up */
	PARSE("Q: is it red?\nA: It is. So the answer is (a) red.", CQA_PREFIX,
		  "Q: is it red?\nA: It is.", "red");
	PARSE("A Q: B. So the answer is (a) red.", CQA_PREFIX, "A Q: B.", "red");
	/* CRLF line ends */
	PARSE("R.\r\nSo the answer is (d) math problem.\r\n\r\nQ: next?\r\nA: x",
		  CQA_PREFIX, "R.", "math problem");
	PARSE("Line one.\r\nLine two. So the answer is (a) x.\r\n", CQA_PREFIX,
		  "Line one.\r\nLine two.", "x");

	/* the first occurrence of the prefix splits */
	PARSE("R. So the answer is (a) yes.\n\nQuestion: So the answer is (b) no.", CQA_PREFIX,
		  "R.", "yes.\n\nQuestion: So the answer is");
	PARSE("Is the answer is 5? The answer is (4). The answer is (5).", SVAMP_PREFIX,
		  "Is the answer is 5?", "(4). The answer is (5)");

	/* choice markers: text after the first, up to the next */
	PARSE("R. So the answer is either (a) lake or (b) river.", CQA_PREFIX, "R.", "lake or");
	PARSE("R. So the answer is (a) lake or (b) river.", CQA_PREFIX, "R.", "lake or");
	PARSE("R. So the answer is (a) closet, (b) chest, or (d) dresser.", CQA_PREFIX,
		  "R.", "closet,");
	PARSE("R. So the answer is (e)ice.", CQA_PREFIX, "R.", "ice");
	/* no marker: the whole answer */
	PARSE("R. So the answer is skyscraper.", CQA_PREFIX, "R.", "skyscraper");
	PARSE("R. So the answer is one of these four.", CQA_PREFIX, "R.", "one of these four");
	/* only a letter with no text after it: nothing to keep */
	PARSE("R. So the answer is (b).", CQA_PREFIX, NULL, NULL);

	/* numbers and expressions in parentheses are answers, not markers */
	PARSE("45 beds. The answer is (10 * 45).", SVAMP_PREFIX, "45 beds.", "(10 * 45)");
	PARSE("R. The answer is (2).", SVAMP_PREFIX, "R.", "(2)");
	PARSE("R. The answer is ( 84.0 / 2.0 ).", SVAMP_PREFIX, "R.", "( 84.0 / 2.0 )");
	PARSE("R. The answer is (12 - 2) - 7.\n", SVAMP_PREFIX, "R.", "(12 - 2) - 7");
	PARSE("R. The answer is (10 - (3 + 6)).\n\nQ: There are 15 trees. The answer is (6).",
		  SVAMP_PREFIX, "R.", "(10 - (3 + 6))");
	PARSE("R. The answer is (12).", SVAMP_PREFIX, "R.", "(12)");

	/* only one final period goes, and only a final one */
	PARSE("R. So the answer is (a) etc..", CQA_PREFIX, "R.", "etc.");
	PARSE("R. So the answer is (a) St. Louis", CQA_PREFIX, "R.", "St. Louis");
	PARSE("R. So the answer is (a) home .", CQA_PREFIX, "R.", "home");

	/* an empty rationale is fine */
	PARSE("So the answer is (a) yes.", CQA_PREFIX, "", "yes");

	/* nothing to find */
	PARSE(NULL, CQA_PREFIX, NULL, NULL);
	PARSE("", CQA_PREFIX, NULL, NULL);
	PARSE("R. So the answer is (a) yes.", "", NULL, NULL);
	PARSE("R. So the answer is (a) yes.", NULL, NULL, NULL);
	PARSE("No prefix anywhere.", CQA_PREFIX, NULL, NULL);
	PARSE("R. so the answer is (a) yes.", CQA_PREFIX, NULL, NULL);	/* case matters */
	PARSE("R. So the answer is", CQA_PREFIX, NULL, NULL);
	PARSE("R. So the answer is  .  \n", CQA_PREFIX, NULL, NULL);
	PARSE("R. So the answer is\nQ: more", CQA_PREFIX, NULL, NULL);
	/* a prefix cut in two by the follow-up does not count */
	PARSE("R. So the\nQ: answer is (a) yes", "the\nQ: answer", NULL, NULL);

	/* multibyte UTF-8 is copied whole; only ASCII bytes are special */
	PARSE("Tromsø is in Norway. So the answer is (c) tromsø.", CQA_PREFIX,
		  "Tromsø is in Norway.", "tromsø");
	PARSE("R. So the answer is (a) café「Ｑ：」 (b) x", CQA_PREFIX, "R.", "café「Ｑ：」");
	/* U+00A0 (no-break space) is not ASCII whitespace and stays */
	PARSE("R. So the answer is (a) x\xc2\xa0.", CQA_PREFIX, "R.", "x\xc2\xa0");
	PARSE("R. Donc la réponse est (a) \xc3\xa9t\xc3\xa9.", "Donc la réponse est",
		  "R.", "\xc3\xa9t\xc3\xa9");
}

/* Rule 5: an answer that opens a parenthesis it never closes was cut off. */
static void
test_answer_cut_off(void)
{
	CHECK(answer_cut_off("((491 - 21"));
	CHECK(answer_cut_off("( 3 + 4"));
	CHECK(!answer_cut_off("((491 - 21) - 7)"));
	CHECK(!answer_cut_off("84 / 2"));
	CHECK(!answer_cut_off("lake"));
	CHECK(!answer_cut_off("lake :)"));	/* a stray closer cuts nothing */
	CHECK(!answer_cut_off(""));
}

static void
test_match_label(void)
{
	const char *const labels[] = {"entailment", "Neutral", NULL, "contradiction", "neutral"};

	CHECK(match_label("entailment", labels, 5) == 0);
	CHECK(match_label("NEUTRAL", labels, 5) == 1);	/* first of equal labels */
	CHECK(match_label("  Contradiction \n", labels, 5) == 3);
	CHECK(match_label("contra", labels, 5) == -1);
	CHECK(match_label("", labels, 5) == -1);
	CHECK(match_label(NULL, labels, 5) == -1);
	CHECK(match_label("entailment", labels, 0) == -1);
	{
		const char *const padded[] = {" math problem "};
		const char *const utf8[] = {"Tromsø"};

		CHECK(match_label("Math Problem", padded, 1) == 0);
		/* only ASCII folds: "ø" and "Ø" differ */
		CHECK(match_label("TROMSø", utf8, 1) == 0);
		CHECK(match_label("TROMSØ", utf8, 1) == -1);
	}
}

/* ---------- the real teacher replies ---------- */

/* Outcomes of parsing a reply whose follow-ups the "\nQ:" cut missed. */
typedef struct RunOn
{
	int			agree;			/* answer == teacher_label */
	int			wrong;			/* another one-line answer: a wrong label */
} RunOn;

typedef struct CqaFigures
{
	int			rows;
	int			agree;			/* our answer == teacher_label */
	int			rationale_agree;	/* our rationale == teacher_rationale */
	int			in_choices;		/* our answer is one of the row's choices */
	int			correct;		/* our answer == gold label */
	RunOn		first;			/* without the "\nQ:" cut, splitting at the */
	RunOn		last;			/* first or the last prefix */
	int			shown;			/* disagreements printed so far */
} CqaFigures;

typedef struct SvampFigures
{
	int			rows;
	int			ours;			/* our answer evaluates to the gold value */
	int			reference;		/* teacher_label does */
	int			shown;
} SvampFigures;

static const char *
field(json_object *row, const char *name)
{
	json_object *v;

	if (!json_object_object_get_ex(row, name, &v))
		return NULL;
	return json_object_get_string(v);
}

static bool
same_text(const char *a, const char *b)
{
	return match_label(a, &b, 1) == 0;
}

/* Our answer, or "" when the parser finds none; the caller frees it. */
static char *
parse_answer(const char *raw, const char *prefix, char **rationale)
{
	char	   *r;
	char	   *a;

	if (!parse_teacher_reply(raw, prefix, &r, &a))
	{
		r = strdup("");
		a = strdup("");
	}
	if (rationale != NULL)
		*rationale = r;
	else
		free(r);
	return a;
}

/*
 * Parse raw as if the "\nQ:" cut had missed the follow-ups (as it would for
 * a teacher that formats them differently), splitting at the first or the
 * last occurrence of the prefix, and count the outcome.  An answer that
 * runs over several lines matches no label and is stored as 'unparsed', to
 * be re-parsed later; a one-line answer that differs from the teacher's
 * (typically the answer of an invented follow-up) would be a wrong label
 * under a closed label set, and nobody would notice.
 */
static void
count_run_on(const char *raw, bool last, const char *teacher_label, RunOn *r)
{
	char	   *copy = strdup(raw);
	char	   *from = copy;
	char	   *answer;

	for (char *q = strstr(copy, "\nQ:"); q != NULL; q = strstr(q + 1, "\nQ:"))
		q[1] = 'q';
	if (last)
		for (char *p = strstr(copy, CQA_PREFIX); p != NULL; p = strstr(p + 1, CQA_PREFIX))
			from = p;
	answer = parse_answer(from, CQA_PREFIX, NULL);
	if (same_text(answer, teacher_label))
		r->agree++;
	else if (*answer != '\0' && strchr(answer, '\n') == NULL)
		r->wrong++;
	free(answer);
	free(copy);
}

static void
check_cqa_row(json_object *row, CqaFigures *f)
{
	const char *raw = field(row, "teacher_output");
	const char *teacher_label = field(row, "teacher_label");
	const char *teacher_rationale = field(row, "teacher_rationale");
	const char *gold = field(row, "label");
	json_object *choices_json;
	const char *choices[16];
	size_t		n_choices = 0;
	char	   *rationale;
	char	   *answer;

	if (raw == NULL || teacher_label == NULL || teacher_rationale == NULL || gold == NULL ||
		!json_object_object_get_ex(row, "choices", &choices_json))
	{
		CHECKF(false, "cqa row %s lacks a field", field(row, "id"));
		return;
	}
	for (size_t i = 0; i < json_object_array_length(choices_json) && n_choices < 16; i++)
		choices[n_choices++] = json_object_get_string(json_object_array_get_idx(choices_json, i));

	answer = parse_answer(raw, CQA_PREFIX, &rationale);
	f->rows++;
	if (same_text(answer, teacher_label))
		f->agree++;
	else if (f->shown++ < 5)
		printf("  cqa %s: ours [%s], teacher_label [%s]\n",
			   field(row, "id"), answer, teacher_label);
	f->rationale_agree += strcmp(rationale, teacher_rationale) == 0;
	f->in_choices += match_label(answer, choices, n_choices) >= 0;
	f->correct += same_text(answer, gold);
	count_run_on(raw, false, teacher_label, &f->first);
	count_run_on(raw, true, teacher_label, &f->last);
	free(rationale);
	free(answer);
}

static void
check_svamp_row(json_object *row, SvampFigures *f)
{
	const char *raw = field(row, "teacher_output");
	const char *teacher_label = field(row, "teacher_label");
	const char *gold = field(row, "label");
	char	   *answer;
	bool		ours;
	bool		reference;

	if (raw == NULL || teacher_label == NULL || gold == NULL)
	{
		CHECKF(false, "svamp row %s lacks a field", field(row, "id"));
		return;
	}
	answer = parse_answer(raw, SVAMP_PREFIX, NULL);
	ours = equation_equal(answer, gold);
	reference = equation_equal(teacher_label, gold);
	f->rows++;
	f->ours += ours;
	f->reference += reference;
	if (ours != reference && f->shown++ < 20)
		printf("  svamp %s: ours [%s] %s, reference [%s] %s, gold [%s]\n",
			   field(row, "id"), answer, ours ? "right" : "wrong",
			   teacher_label, reference ? "right" : "wrong", gold);
	free(answer);
}

/* Feed each row of a JSON-lines file to check; false if it cannot be read. */
static bool
for_each_row(const char *path, void (*check) (json_object *, void *), void *figures)
{
	FILE	   *fp = fopen(path, "r");
	char	   *line = NULL;
	size_t		cap = 0;
	int			lineno = 0;

	if (fp == NULL)
		return false;
	while (getline(&line, &cap, fp) > 0)
	{
		json_object *row = json_tokener_parse(line);

		lineno++;
		CHECKF(row != NULL, "%s:%d: not JSON", path, lineno);
		if (row != NULL)
			check(row, figures);
		json_object_put(row);
	}
	free(line);
	fclose(fp);
	return true;
}

static void
cqa_check(json_object *row, void *figures)
{
	check_cqa_row(row, figures);
}

static void
svamp_check(json_object *row, void *figures)
{
	check_svamp_row(row, figures);
}

static double
pct(int n, int d)
{
	return d > 0 ? 100.0 * n / d : 0.0;
}

static void
report_cqa(const char *what, const CqaFigures *f)
{
	printf("%s: %d/%d = %.2f%% agree with teacher_label; "
		   "rationale identical %.2f%%; answer among the choices %.2f%%; "
		   "teacher accuracy %.1f%%\n",
		   what, f->agree, f->rows, pct(f->agree, f->rows),
		   pct(f->rationale_agree, f->rows), pct(f->in_choices, f->rows),
		   pct(f->correct, f->rows));
}

static void
report_run_on(const char *what, const CqaFigures *f)
{
	printf("%s without the \\nQ: cut: first prefix agrees %.2f%%, other one-line answer %.2f%%; "
		   "last prefix agrees %.2f%%, other one-line answer %.2f%%\n",
		   what, pct(f->first.agree, f->rows), pct(f->first.wrong, f->rows),
		   pct(f->last.agree, f->rows), pct(f->last.wrong, f->rows));
}

static void
report_svamp(const char *what, const SvampFigures *f)
{
	printf("%s: ours %.1f%% vs reference %.1f%% (%d vs %d of %d equal the gold value)\n",
		   what, pct(f->ours, f->rows), pct(f->reference, f->rows),
		   f->ours, f->reference, f->rows);
}

static void
add_cqa(CqaFigures *sum, const CqaFigures *f)
{
	sum->rows += f->rows;
	sum->agree += f->agree;
	sum->rationale_agree += f->rationale_agree;
	sum->in_choices += f->in_choices;
	sum->correct += f->correct;
	sum->first.agree += f->first.agree;
	sum->first.wrong += f->first.wrong;
	sum->last.agree += f->last.agree;
	sum->last.wrong += f->last.wrong;
}

/*
 * The files of ../shared/data and their row counts: every row is checked, so
 * a file that is missing or holds fewer rows fails here, by name.
 */
#define SHARED_DATA "../shared/data/"
#define CQA_TRAIN_ROWS 9741
#define CQA_TEST_ROWS 1221
#define SVAMP_TRAIN_ROWS 800
#define SVAMP_TEST_ROWS 200

static void
read_file(const char *name, void (*check) (json_object *, void *), void *figures,
		  const int *rows, int expected)
{
	char		path[256];

	snprintf(path, sizeof(path), SHARED_DATA "%s", name);
	CHECKF(for_each_row(path, check, figures),
		   "cannot read %s: the teacher replies of ../shared/data are needed "
		   "(run from the repository root, with ../shared next to the clone)", path);
	CHECKF(*rows == expected, "%s: %d rows checked, expected %d", path, *rows, expected);
}

/*
 * CQA: the answer must equal teacher_label (ignoring ASCII case and
 * surrounding whitespace) on at least 99.5% of rows.  teacher_label is the
 * reference parser's free text, not a choice ("lake or" is no choice), so
 * comparing strings tests the parser alone; matching against the choices
 * is the next step of the pipeline and is reported, not asserted.
 *
 * SVAMP: our answer must evaluate to the gold value at least as often as
 * teacher_label does, which is right on some rows of each split.
 */
static void
test_real_replies(void)
{
	CqaFigures	cqa_train = {0};
	CqaFigures	cqa_test = {0};
	CqaFigures	cqa = {0};
	SvampFigures svamp_train = {0};
	SvampFigures svamp_test = {0};

	read_file("cqa_train.jsonl", cqa_check, &cqa_train, &cqa_train.rows, CQA_TRAIN_ROWS);
	read_file("cqa_test.jsonl", cqa_check, &cqa_test, &cqa_test.rows, CQA_TEST_ROWS);
	read_file("svamp_train.jsonl", svamp_check, &svamp_train, &svamp_train.rows,
			  SVAMP_TRAIN_ROWS);
	read_file("svamp_test.jsonl", svamp_check, &svamp_test, &svamp_test.rows,
			  SVAMP_TEST_ROWS);
	add_cqa(&cqa, &cqa_train);
	add_cqa(&cqa, &cqa_test);

	report_cqa("cqa train", &cqa_train);
	report_cqa("cqa test", &cqa_test);
	report_cqa("cqa train+test", &cqa);
	report_run_on("cqa train+test", &cqa);
	report_svamp("svamp train", &svamp_train);
	report_svamp("svamp test", &svamp_test);

	CHECKF(cqa.rows > 0 && cqa.agree >= 0.995 * cqa.rows, "cqa agreement %d/%d",
		   cqa.agree, cqa.rows);
	CHECKF(svamp_test.reference > 0 && svamp_test.ours >= svamp_test.reference,
		   "svamp test: ours %d, reference %d", svamp_test.ours, svamp_test.reference);
	CHECKF(svamp_train.reference > 0 && svamp_train.ours >= svamp_train.reference,
		   "svamp train: ours %d, reference %d", svamp_train.ours, svamp_train.reference);
}

int
main(void)
{
	test_prompt();
	test_parse_rules();
	test_match_label();
	test_answer_cut_off();
	test_real_replies();
	return unit_summary("parse");
}
