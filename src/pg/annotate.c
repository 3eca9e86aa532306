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

/* Rows fetched from the source at a time. */
#define SOURCE_BATCH_ROWS 1000

/* One item of the source, kept until its reply is stored. */
typedef struct SourceItem
{
	char	   *id;
	char	   *input;
} SourceItem;

/* A set of item ids, sorted. */
typedef struct IdSet
{
	char	  **ids;
	int			n;
} IdSet;

/* The source's rows, a batch at a time. */
typedef struct SourceReader
{
	SourceCursor *cursor;
	MemoryContext memory;		/* the current batch */
	char	  **ids;
	char	  **inputs;
	int			n;
	int			next;
	bool		done;
} SourceReader;

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
check_source_item(const char *id, const char *input, int64 row)
{
	if (id == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("the annotation source returned a NULL id in row " INT64_FORMAT, row),
				 errhint("Every row needs a unique, non-NULL id: re-runs use it to skip finished items.")));
	if (input == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("the annotation source returned a NULL input for item \"%s\"", id),
				 errhint("Filter NULL inputs out in the source query, e.g. WHERE body IS NOT NULL.")));
}

static int
compare_strings(const void *a, const void *b)
{
	return strcmp(*(char *const *) a, *(char *const *) b);
}

static bool
id_in(const IdSet *set, const char *id)
{
	return bsearch(&id, set->ids, set->n, sizeof(char *), compare_strings) != NULL;
}

/* Refill the reader with the next batch; false at the end of the source. */
static bool
read_batch(SourceReader *reader)
{
	MemoryContext oldctx;
	uint64		n;

	if (reader->done)
		return false;
	MemoryContextReset(reader->memory);
	n = fetch_source(reader->cursor, SOURCE_BATCH_ROWS);
	check_source_shape(SPI_tuptable->tupdesc);
	oldctx = MemoryContextSwitchTo(reader->memory);
	reader->ids = palloc(Max(n, 1) * sizeof(char *));
	reader->inputs = palloc(Max(n, 1) * sizeof(char *));
	for (uint64 i = 0; i < n; i++)
	{
		reader->ids[i] = SPI_getvalue(SPI_tuptable->vals[i], SPI_tuptable->tupdesc, 1);
		reader->inputs[i] = SPI_getvalue(SPI_tuptable->vals[i], SPI_tuptable->tupdesc, 2);
	}
	MemoryContextSwitchTo(oldctx);
	SPI_freetuptable(SPI_tuptable);
	reader->n = (int) n;
	reader->next = 0;
	reader->done = n < SOURCE_BATCH_ROWS;
	return n > 0;
}

/*
 * The first pass over the source, before any request is paid for: every
 * row has an id and an input, and no id comes twice.  Only the ids are
 * kept, and only for this.  Returns the number of rows, and in *todo how
 * many of them are not done yet.
 */
static int64
check_source(SourceReader *reader, const IdSet *done, int64 *todo)
{
	MemoryContext idctx = AllocSetContextCreate(CurrentMemoryContext, "distill source ids",
												ALLOCSET_DEFAULT_SIZES);
	IdSet		ids = {palloc(SOURCE_BATCH_ROWS * sizeof(char *)), 0};
	int			cap = SOURCE_BATCH_ROWS;

	*todo = 0;
	while (read_batch(reader))
		for (int i = 0; i < reader->n; i++)
		{
			check_source_item(reader->ids[i], reader->inputs[i], ids.n + 1);
			*todo += !id_in(done, reader->ids[i]);
			if (ids.n == cap)
				ids.ids = repalloc_huge(ids.ids, (cap *= 2) * sizeof(char *));
			ids.ids[ids.n++] = MemoryContextStrdup(idctx, reader->ids[i]);
		}
	qsort(ids.ids, ids.n, sizeof(char *), compare_strings);
	for (int i = 1; i < ids.n; i++)
		if (strcmp(ids.ids[i - 1], ids.ids[i]) == 0)
			ereport(ERROR,
					(errcode(ERRCODE_UNIQUE_VIOLATION),
					 errmsg("the annotation source returned item id \"%s\" more than once", ids.ids[i]),
					 errhint("Item ids must be unique: re-runs use them to skip finished items.")));
	MemoryContextDelete(idctx);
	pfree(ids.ids);
	rewind_source(reader->cursor);
	reader->done = false;
	reader->n = reader->next = 0;
	return ids.n;
}

/*
 * The next item of the source that is not already done, copied into
 * memory; NULL at the end.
 */
static SourceItem *
next_item(SourceReader *reader, const IdSet *done, MemoryContext memory)
{
	for (;;)
	{
		SourceItem *item;

		if (reader->next == reader->n && !read_batch(reader))
			return NULL;
		if (id_in(done, reader->ids[reader->next]))
		{
			reader->next++;
			continue;
		}
		item = MemoryContextAlloc(memory, sizeof(SourceItem));
		item->id = MemoryContextStrdup(memory, reader->ids[reader->next]);
		item->input = MemoryContextStrdup(memory, reader->inputs[reader->next]);
		reader->next++;
		return item;
	}
}

static void
free_item(SourceItem *item)
{
	pfree(item->id);
	pfree(item->input);
	pfree(item);
}

/* The ids of the items this task and teacher already have as 'ok'. */
static IdSet
load_ok_ids(const char *task, const char *teacher)
{
	IdSet		set;

	if (run_sql("SELECT item_id FROM distill.annotations"
				" WHERE task = $1 AND teacher = $2 AND status = 'ok'",
				2, (Oid[]) {TEXTOID, TEXTOID},
				(Datum[]) {CStringGetTextDatum(task), CStringGetTextDatum(teacher)},
				NULL, true, 0) != SPI_OK_SELECT)
		elog(ERROR, "could not read distill.annotations");
	set.n = (int) SPI_processed;
	set.ids = palloc(Max(set.n, 1) * sizeof(char *));
	for (int i = 0; i < set.n; i++)
		set.ids[i] = SPI_getvalue(SPI_tuptable->vals[i], SPI_tuptable->tupdesc, 1);
	SPI_freetuptable(SPI_tuptable);
	qsort(set.ids, set.n, sizeof(char *), compare_strings);
	return set;
}

#define N_STORE_ARGS 14

static const char store_sql[] =
	"INSERT INTO distill.annotations AS a"
	" (task, teacher, item_id, input, rationale, label, raw_output,"
	"  status, error, attempts, latency_ms, prompt_tokens, completion_tokens, owner)"
	" VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14)"
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
	TEXTOID, TEXTOID, INT4OID, FLOAT8OID, INT4OID, INT4OID, REGROLEOID
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
	values[13] = ObjectIdGetDatum(task->owner);
	nulls[13] = ' ';

	if (run_sql_as_owner(store_sql, N_STORE_ARGS, store_types, values, nulls, 0) != SPI_OK_INSERT)
		elog(ERROR, "could not write to distill.annotations");
}

/*
 * Send every item not yet 'ok' to the teacher and store the replies as
 * they come.  Items are read from the source as the teacher frees room, so
 * that only a few batches of them are ever in memory.  Counts the items
 * per status.
 */
static void
annotate_items(JobRun *run, const TaskDef *task, const TeacherDef *teacher,
			   SourceReader *source, const IdSet *ok, int64 todo, int64 counts[3])
{
	GuardedPool *pool = guarded_pool_create(teacher);
	MemoryContext inflight = AllocSetContextCreate(CurrentMemoryContext,
												   "distill annotate items in flight",
												   ALLOCSET_DEFAULT_SIZES);
	MemoryContext replyctx = AllocSetContextCreate(CurrentMemoryContext,
												   "distill annotate round",
												   ALLOCSET_DEFAULT_SIZES);
	MemoryContext oldctx = CurrentMemoryContext;
	size_t		window = 2 * (size_t) teacher->config.concurrency;
	int64		done = 0;
	bool		more = true;

	for (;;)
	{
		const TeacherResult *result;
		SourceItem *item;
		Annotation	a;

		/* what a round allocates, but the items, goes when it ends */
		MemoryContextSwitchTo(replyctx);
		while (more && teacher_pool_pending(pool->pool) < window)
		{
			if ((item = next_item(source, ok, inflight)) == NULL)
				more = false;
			else
				submit_prompt(pool, task, (size_t) item, item->input);
		}
		if (teacher_pool_pending(pool->pool) == 0)
			break;
		if ((result = guarded_pool_next(pool)) == NULL)
			continue;
		item = (SourceItem *) result->tag;
		/* SPI calls switch to SPI's memory: come back to the reply's each time */
		MemoryContextSwitchTo(replyctx);
		a = read_reply(task, result);
		store_annotation(task, teacher, item, result, &a);
		counts[a.status]++;
		done++;
		free_item(item);
		MemoryContextSwitchTo(replyctx);
		job_progress(run, (double) done / todo,
					 psprintf("annotate: %lld of %lld items", (long long) done, (long long) todo));
		MemoryContextSwitchTo(oldctx);
		MemoryContextReset(replyctx);
	}
	MemoryContextSwitchTo(oldctx);
	guarded_pool_release(pool);
	MemoryContextDelete(replyctx);
	MemoryContextDelete(inflight);
}

char *
run_annotation(JobRun *run, const char *task_name, const char *teacher_name,
			   const char *query)
{
	TaskDef    *task = load_task(task_name);
	TeacherDef *teacher = load_teacher(teacher_name);
	SourceReader source = {
		.cursor = open_source_cursor(query, "annotation"),
		.memory = AllocSetContextCreate(CurrentMemoryContext, "distill annotation source",
										ALLOCSET_DEFAULT_SIZES),
	};
	IdSet		ok = load_ok_ids(task->name, teacher->name);
	int64		todo;
	int64		n_items = check_source(&source, &ok, &todo);
	int64		counts[3] = {0};

	annotate_items(run, task, teacher, &source, &ok, todo, counts);
	close_source(source.cursor);
	MemoryContextDelete(source.memory);
	return psprintf("%lld items: %lld ok, %lld unparsed, %lld failed; %lld skipped (already ok)",
					(long long) n_items, (long long) counts[ANNOTATION_OK],
					(long long) counts[ANNOTATION_UNPARSED], (long long) counts[ANNOTATION_FAILED],
					(long long) (n_items - counts[0] - counts[1] - counts[2]));
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
