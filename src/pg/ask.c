/*
 * ask.c - distill.ask(teacher, task, input): one synchronous call.
 */
#include "postgres.h"

#include "access/htup_details.h"
#include "executor/spi.h"
#include "funcapi.h"
#include "utils/builtins.h"

#include "pg/glue.h"

PG_FUNCTION_INFO_V1(distill_ask);

/* A hint for the most common reasons a teacher fails. */
static const char *
failure_hint(const TeacherResult *result)
{
	if (result->http_status == 401 || result->http_status == 403)
		return "Check the API key in the environment variable named by the teacher's api_key_env.";
	if (result->http_status == 0)
		return "Check that the teacher's endpoint is up and reachable, or raise its timeout_ms option.";
	return "Check the teacher's endpoint, model and options; distill.teachers shows them.";
}

/* a->error is the reason, in the database encoding. */
static void
report_failure(const TeacherDef *teacher, const TeacherResult *result,
			   const Annotation *a)
{
	/* Refused before sending: the input is no text a teacher takes. */
	if (result->attempts == 0)
		ereport(ERROR,
				(errcode(ERRCODE_CHARACTER_NOT_IN_REPERTOIRE),
				 errmsg("%s", a->error),
				 errdetail("Nothing was sent to teacher \"%s\".", teacher->name),
				 errhint("Teachers take UTF-8 text.")));
	ereport(ERROR,
			(errcode(ERRCODE_EXTERNAL_ROUTINE_EXCEPTION),
			 errmsg("teacher \"%s\" failed: %s", teacher->name, a->error),
			 errdetail("%d attempt(s) were made.", result->attempts),
			 errhint("%s", failure_hint(result))));
}

static Datum
ask_result(FunctionCallInfo fcinfo, MemoryContext callerctx, const Annotation *a)
{
	TupleDesc	tupdesc;
	Datum		values[3];
	bool		nulls[3] = {a->rationale == NULL, a->label == NULL, a->raw == NULL};
	MemoryContext spictx = MemoryContextSwitchTo(callerctx);
	HeapTuple	tuple;

	if (get_call_result_type(fcinfo, NULL, &tupdesc) != TYPEFUNC_COMPOSITE)
		elog(ERROR, "distill.ask must return a record");
	values[0] = a->rationale ? CStringGetTextDatum(a->rationale) : (Datum) 0;
	values[1] = a->label ? CStringGetTextDatum(a->label) : (Datum) 0;
	values[2] = a->raw ? CStringGetTextDatum(a->raw) : (Datum) 0;
	tuple = heap_form_tuple(BlessTupleDesc(tupdesc), values, nulls);
	MemoryContextSwitchTo(spictx);
	return HeapTupleGetDatum(tuple);
}

Datum
distill_ask(PG_FUNCTION_ARGS)
{
	char	   *teacher_name = text_to_cstring(PG_GETARG_TEXT_PP(0));
	char	   *task_name = text_to_cstring(PG_GETARG_TEXT_PP(1));
	char	   *input = text_to_cstring(PG_GETARG_TEXT_PP(2));
	MemoryContext callerctx = CurrentMemoryContext;
	TeacherDef *teacher;
	TaskDef    *task;
	GuardedPool *pool;
	const TeacherResult *result;
	Annotation	a;
	Datum		datum;

	SPI_connect();
	teacher = load_teacher(teacher_name);
	task = load_task(task_name);

	pool = guarded_pool_create(teacher);
	submit_prompt(pool, task, 0, input);
	while ((result = guarded_pool_next(pool)) == NULL)
		;
	a = read_reply(task, result);
	if (a.status == ANNOTATION_FAILED)
		report_failure(teacher, result, &a);
	if (a.status == ANNOTATION_UNPARSED)
		ereport(NOTICE,
				(errmsg("the teacher's reply could not be parsed: %s", a.error),
				 errhint("The raw reply is in the \"raw\" column.")));
	datum = ask_result(fcinfo, callerctx, &a);
	guarded_pool_release(pool);
	SPI_finish();
	PG_RETURN_DATUM(datum);
}
