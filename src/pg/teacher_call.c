/*
 * teacher_call.c - the teacher seen from the backend: a pool that cannot
 * leak, prompts for a task, and replies turned into annotations.
 */
#include "postgres.h"

#include <stdlib.h>

#include "miscadmin.h"
#include "utils/memutils.h"

#include "pg/glue.h"
#include "teacher/parse.h"

/* How long one wait for replies may last before we check for interrupts. */
#define POLL_INTERVAL_MS 100

GuardedPool *
guarded_pool_create(const TeacherDef *teacher)
{
	GuardedPool *guarded = palloc0(sizeof(GuardedPool));
	char		errbuf[256];

	guarded->pool = teacher_pool_create(&teacher->config, errbuf, sizeof(errbuf));
	if (guarded->pool == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_EXTERNAL_ROUTINE_EXCEPTION),
				 errmsg("could not start the HTTP client for teacher \"%s\": %s",
						teacher->name, errbuf)));
	guarded->guard = core_guard_new(guarded->pool, (CoreRelease) teacher_pool_destroy);
	return guarded;
}

/* Abort what is in flight and free the pool now. */
void
guarded_pool_release(GuardedPool *guarded)
{
	core_guard_release(guarded->guard);
	guarded->pool = NULL;
}

/*
 * The next finished request, or NULL when none finished within the poll
 * interval.  Checks for interrupts first, so a cancel or a statement
 * timeout takes effect within the interval.
 */
const TeacherResult *
guarded_pool_next(GuardedPool *guarded)
{
	CHECK_FOR_INTERRUPTS();
	return teacher_pool_next(guarded->pool, POLL_INTERVAL_MS);
}

/*
 * The prompt for input cannot be sent (prompt_flaw says why).  When the
 * input is at fault, refuse that item; else the task's own text is, which
 * is an error.
 */
static void
refuse_unsendable(GuardedPool *guarded, const TaskDef *task, size_t tag,
				  const char *input, const char *prompt_flaw)
{
	char	   *flaw;

	if (try_to_utf8(input, &flaw) != NULL)
		ereport(ERROR,
				(errcode(ERRCODE_CHARACTER_NOT_IN_REPERTOIRE),
				 errmsg("task \"%s\" holds text that cannot be sent to a teacher",
						task->name),
				 errdetail("In the prompt built from its instruction, answer prefix and examples, %s.",
						   prompt_flaw),
				 errhint("Teachers take UTF-8 text: recreate the task with text that is valid UTF-8.")));
	if (!teacher_pool_refuse(guarded->pool, tag,
							 psprintf("the input cannot be sent to the teacher: %s", flaw)))
		ereport(ERROR, (errcode(ERRCODE_OUT_OF_MEMORY), errmsg("out of memory")));
}

/*
 * Queue the prompt for one input.  Teachers take UTF-8, whatever the
 * database encoding: an input that cannot be sent is refused, as a failed
 * item with the reason.
 */
void
submit_prompt(GuardedPool *guarded, const TaskDef *task, size_t tag, const char *input)
{
	char	   *prompt = prompt_build(task->instruction, task->examples,
									  task->n_examples, task->answer_prefix,
									  input);
	char	   *utf8;
	char	   *flaw;
	bool		queued;

	if (prompt == NULL)
		ereport(ERROR, (errcode(ERRCODE_OUT_OF_MEMORY), errmsg("out of memory")));
	utf8 = try_to_utf8(prompt, &flaw);
	queued = utf8 != NULL && teacher_pool_submit(guarded->pool, tag, utf8);
	if (utf8 != NULL && utf8 != prompt)
		pfree(utf8);
	free(prompt);
	if (utf8 == NULL)
		refuse_unsendable(guarded, task, tag, input, flaw);
	else if (!queued)
		ereport(ERROR, (errcode(ERRCODE_OUT_OF_MEMORY), errmsg("out of memory")));
}

static char *
pstrdup_free(char *s)
{
	char	   *copy = s ? pstrdup(s) : NULL;

	free(s);
	return copy;
}

/*
 * Parse a reply: split off the rationale, find the answer, and when the
 * task has a label set, map the answer onto it.  The reply's content never
 * makes this raise: what the database cannot store as it is (invalid UTF-8,
 * a NUL, a character its encoding lacks) makes the reply 'unparsed', kept
 * escaped.
 */
Annotation
read_reply(const TaskDef *task, const TeacherResult *result)
{
	Annotation	a = {0};
	char	   *flaw;
	char	   *rationale;
	char	   *answer;
	int			label;

	if (!result->ok)
	{
		a.status = ANNOTATION_FAILED;
		a.error = from_utf8_escaped(result->error, strlen(result->error), &flaw);
		return a;
	}
	a.raw = from_utf8_escaped(result->content, result->content_len, &flaw);
	if (flaw != NULL)
	{
		a.status = ANNOTATION_UNPARSED;
		a.error = psprintf("the reply cannot be stored as it is: %s; the raw reply is kept escaped",
						   flaw);
		return a;
	}
	if (!parse_teacher_reply(a.raw, task->answer_prefix, &rationale, &answer))
	{
		a.status = ANNOTATION_UNPARSED;
		a.error = psprintf("no \"%s\" in the reply", task->answer_prefix);
		return a;
	}
	a.rationale = pstrdup_free(rationale);
	answer = pstrdup_free(answer);
	if (answer_cut_off(answer))
	{
		a.status = ANNOTATION_UNPARSED;
		a.error = psprintf("answer \"%s\" was cut off: it opens a parenthesis it never closes",
						   answer);
		return a;
	}
	if (task->labels == NULL)
	{
		a.status = ANNOTATION_OK;
		a.label = answer;
		return a;
	}
	label = match_label(answer, (const char *const *) task->labels, task->n_labels);
	if (label < 0)
	{
		a.status = ANNOTATION_UNPARSED;
		a.error = psprintf("answer \"%s\" is not one of the task's labels", answer);
		return a;
	}
	a.status = ANNOTATION_OK;
	a.label = pstrdup(task->labels[label]);
	return a;
}

const char *
annotation_status_name(AnnotationStatus status)
{
	switch (status)
	{
		case ANNOTATION_OK:
			return "ok";
		case ANNOTATION_UNPARSED:
			return "unparsed";
		case ANNOTATION_FAILED:
			return "failed";
	}
	return "?";					/* keep the compiler quiet */
}
