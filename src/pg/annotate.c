/*
 * annotate.c - distill.annotate(task, teacher, source): ask the teacher
 * about every row of a query and keep each reply in distill.annotations.
 *
 * Items already annotated 'ok' for this task and teacher are skipped, so a
 * re-run retries only what failed or could not be parsed.  Each reply is
 * written with its raw text, whatever its fate, so nothing paid for is lost.
 */
#include "postgres.h"

#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "miscadmin.h"
#include "utils/builtins.h"
#include "utils/memutils.h"

#include "pg/glue.h"

PG_FUNCTION_INFO_V1(distill_annotate);

typedef struct SourceItem
{
	char	   *id;
	char	   *input;
} SourceItem;

typedef struct Source
{
	SourceItem *items;
	int			n_items;
} Source;

static void
check_source_shape(TupleDesc tupdesc)
{
	if (tupdesc->natts != 2)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("the annotation source must return two columns (id, input)"),
				 errdetail("It returned %d column(s).", tupdesc->natts),
				 errhint("For example: SELECT id::text, body FROM tickets.")));
}

static void
check_source_item(const SourceItem *item, int row)
{
	if (item->id == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("the annotation source returned a NULL id in row %d", row),
				 errhint("Every row needs a unique, non-NULL id: re-runs use it to skip finished items.")));
	if (item->input == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("the annotation source returned a NULL input for item \"%s\"", item->id),
				 errhint("Filter NULL inputs out in the source query, e.g. WHERE body IS NOT NULL.")));
}

/* Run the source query; ids and inputs are converted with their types' output functions. */
static Source
load_source(const char *query)
{
	Source		source;

	run_source_query(query, "annotation");
	check_source_shape(SPI_tuptable->tupdesc);

	source.n_items = (int) SPI_processed;
	source.items = palloc(Max(source.n_items, 1) * sizeof(SourceItem));
	for (int i = 0; i < source.n_items; i++)
	{
		HeapTuple	row = SPI_tuptable->vals[i];

		source.items[i].id = SPI_getvalue(row, SPI_tuptable->tupdesc, 1);
		source.items[i].input = SPI_getvalue(row, SPI_tuptable->tupdesc, 2);
		check_source_item(&source.items[i], i + 1);
	}
	return source;
}

static int
compare_strings(const void *a, const void *b)
{
	return strcmp(*(char *const *) a, *(char *const *) b);
}

static void
reject_duplicate_ids(const Source *source)
{
	char	  **ids = palloc(Max(source->n_items, 1) * sizeof(char *));

	for (int i = 0; i < source->n_items; i++)
		ids[i] = source->items[i].id;
	qsort(ids, source->n_items, sizeof(char *), compare_strings);
	for (int i = 1; i < source->n_items; i++)
		if (strcmp(ids[i - 1], ids[i]) == 0)
			ereport(ERROR,
					(errcode(ERRCODE_UNIQUE_VIOLATION),
					 errmsg("the annotation source returned item id \"%s\" more than once", ids[i]),
					 errhint("Item ids must be unique: re-runs use them to skip finished items.")));
	pfree(ids);
}

/* Sorted ids of the items this task and teacher already have as 'ok'. */
static char **
load_ok_ids(const char *task, const char *teacher, int *n_ok)
{
	Oid			argtypes[2] = {TEXTOID, TEXTOID};
	Datum		values[2] = {CStringGetTextDatum(task), CStringGetTextDatum(teacher)};
	char	  **ids;

	if (SPI_execute_with_args("SELECT item_id FROM distill.annotations"
							  " WHERE task = $1 AND teacher = $2 AND status = 'ok'",
							  2, argtypes, values, NULL, true, 0) != SPI_OK_SELECT)
		elog(ERROR, "could not read distill.annotations");
	*n_ok = (int) SPI_processed;
	ids = palloc(Max(*n_ok, 1) * sizeof(char *));
	for (int i = 0; i < *n_ok; i++)
		ids[i] = SPI_getvalue(SPI_tuptable->vals[i], SPI_tuptable->tupdesc, 1);
	qsort(ids, *n_ok, sizeof(char *), compare_strings);
	return ids;
}

#define N_STORE_ARGS 13

static const char store_sql[] =
	"INSERT INTO distill.annotations AS a"
	" (task, teacher, item_id, input, rationale, label, raw_output,"
	"  status, error, attempts, latency_ms, prompt_tokens, completion_tokens)"
	" VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)"
	" ON CONFLICT (task, teacher, item_id) DO UPDATE SET"
	"  input = excluded.input, rationale = excluded.rationale,"
	"  label = excluded.label, raw_output = excluded.raw_output,"
	"  status = excluded.status, error = excluded.error,"
	"  attempts = a.attempts + excluded.attempts,"
	"  latency_ms = excluded.latency_ms,"
	"  prompt_tokens = excluded.prompt_tokens,"
	"  completion_tokens = excluded.completion_tokens,"
	"  created_at = now()";

static const Oid store_types[N_STORE_ARGS] = {
	TEXTOID, TEXTOID, TEXTOID, TEXTOID, TEXTOID, TEXTOID, TEXTOID,
	TEXTOID, TEXTOID, INT4OID, FLOAT8OID, INT4OID, INT4OID
};

static void
set_text(Datum *values, char *nulls, int i, const char *s)
{
	values[i] = s ? CStringGetTextDatum(s) : (Datum) 0;
	nulls[i] = s ? ' ' : 'n';
}

static void
set_int(Datum *values, char *nulls, int i, int v)
{
	values[i] = Int32GetDatum(v);
	nulls[i] = v >= 0 ? ' ' : 'n';
}

static void
store_annotation(const TaskDef *task, const TeacherDef *teacher,
				 const SourceItem *item, const TeacherResult *result,
				 const Annotation *a)
{
	Datum		values[N_STORE_ARGS];
	char		nulls[N_STORE_ARGS];

	set_text(values, nulls, 0, task->name);
	set_text(values, nulls, 1, teacher->name);
	set_text(values, nulls, 2, item->id);
	set_text(values, nulls, 3, item->input);
	set_text(values, nulls, 4, a->rationale);
	set_text(values, nulls, 5, a->label);
	set_text(values, nulls, 6, a->raw);
	set_text(values, nulls, 7, annotation_status_name(a->status));
	set_text(values, nulls, 8, a->error);
	set_int(values, nulls, 9, result->attempts);
	values[10] = Float8GetDatum(result->latency_ms);
	nulls[10] = ' ';
	set_int(values, nulls, 11, result->prompt_tokens);
	set_int(values, nulls, 12, result->completion_tokens);

	if (SPI_execute_with_args(store_sql, N_STORE_ARGS, (Oid *) store_types,
							  values, nulls, false, 0) != SPI_OK_INSERT)
		elog(ERROR, "could not write to distill.annotations");
}

/*
 * Send every item not yet 'ok' to the teacher and store the replies as
 * they come.  Counts the items per status.
 */
static void
annotate_items(JobRun *run, const TaskDef *task, const TeacherDef *teacher,
			   const Source *source, char **ok_ids, int n_ok, int counts[3])
{
	GuardedPool *pool = guarded_pool_create(teacher);
	MemoryContext itemctx = AllocSetContextCreate(CurrentMemoryContext,
												  "distill annotate item",
												  ALLOCSET_DEFAULT_SIZES);
	MemoryContext oldctx = CurrentMemoryContext;
	int			submitted = 0;
	int			done = 0;
	const TeacherResult *result;

	for (int i = 0; i < source->n_items; i++)
	{
		const char *id = source->items[i].id;

		if (bsearch(&id, ok_ids, n_ok, sizeof(char *), compare_strings) != NULL)
			continue;
		submit_prompt(pool, task, i, source->items[i].input);
		submitted++;
	}

	while (teacher_pool_pending(pool->pool) > 0)
	{
		Annotation	a;

		if ((result = guarded_pool_next(pool)) == NULL)
			continue;
		/* SPI calls switch to SPI's memory: come back to the item's each time */
		MemoryContextSwitchTo(itemctx);
		a = read_reply(task, result);
		store_annotation(task, teacher, &source->items[result->tag], result, &a);
		counts[a.status]++;
		done++;
		MemoryContextSwitchTo(itemctx);
		job_progress(run, (double) done / submitted,
					 psprintf("annotate: %d of %d items", done, submitted));
		MemoryContextSwitchTo(oldctx);
		MemoryContextReset(itemctx);
	}
	guarded_pool_release(pool);
	MemoryContextDelete(itemctx);
}

char *
run_annotation(JobRun *run, const char *task_name, const char *teacher_name,
			   const char *query)
{
	TaskDef    *task = load_task(task_name);
	TeacherDef *teacher = load_teacher(teacher_name);
	Source		source = load_source(query);
	char	  **ok_ids;
	int			n_ok;
	int			counts[3] = {0};

	reject_duplicate_ids(&source);
	ok_ids = load_ok_ids(task->name, teacher->name, &n_ok);
	annotate_items(run, task, teacher, &source, ok_ids, n_ok, counts);
	return psprintf("%d items: %d ok, %d unparsed, %d failed; %d skipped (already ok)",
					source.n_items, counts[ANNOTATION_OK],
					counts[ANNOTATION_UNPARSED], counts[ANNOTATION_FAILED],
					source.n_items - counts[0] - counts[1] - counts[2]);
}

Datum
distill_annotate(PG_FUNCTION_ARGS)
{
	char	   *task = text_to_cstring(PG_GETARG_TEXT_PP(0));
	char	   *teacher = text_to_cstring(PG_GETARG_TEXT_PP(1));
	char	   *query = text_to_cstring(PG_GETARG_TEXT_PP(2));
	char	   *args = psprintf("{\"task\": %s, \"teacher\": %s, \"source\": %s}",
								json_string(task), json_string(teacher),
								json_string(query));
	JobRun	   *run;
	char	   *summary;

	if (PG_GETARG_BOOL(3))
		PG_RETURN_INT64(job_submit("annotate", args));

	SPI_connect();
	run = job_start_here("annotate", args);
	summary = run_annotation(run, task, teacher, query);
	job_finish(run, summary);
	ereport(NOTICE, (errmsg("annotate: %s", summary)));
	SPI_finish();
	PG_RETURN_INT64(run->id);
}
