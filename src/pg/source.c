/*
 * source.c - run a user's source query (the rows to annotate, train on or
 * evaluate), read-only, as the calling role with its own search_path, with
 * errors that say which query failed.
 */
#include "postgres.h"

#include "executor/spi.h"

#include "pg/glue.h"

static void
source_error_context(void *arg)
{
	errcontext("%s", (const char *) arg);
}

static void
reject_non_select(const char *what)
{
	ereport(ERROR,
			(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
			 errmsg("the %s source must be a single SELECT query", what),
			 errhint("For example: SELECT id::text, body FROM tickets.")));
}

static void
push_context(ErrorContextCallback *callback, const char *description)
{
	callback->previous = error_context_stack;
	callback->callback = source_error_context;
	callback->arg = (void *) description;
	error_context_stack = callback;
}

static SPIPlanPtr
prepare_source(const char *query, const char *what, int cursor_options)
{
	SPIPlanPtr	plan = SPI_prepare_cursor(query, 0, NULL, cursor_options);

	if (plan == NULL)
		elog(ERROR, "could not prepare the %s source: %s", what,
			 SPI_result_code_string(SPI_result));
	if (!SPI_is_cursor_plan(plan))
		reject_non_select(what);
	return plan;
}

/*
 * Run query under SPI; afterwards SPI_tuptable holds its rows.  `what`
 * names the source in messages ("annotation", "training", ...).
 */
void
run_source_query(const char *query, const char *what)
{
	ErrorContextCallback callback;
	SPIPlanPtr	plan;

	push_context(&callback, psprintf("%s source query: %s", what, query));
	plan = prepare_source(query, what, 0);
	if (SPI_execute_plan(plan, NULL, NULL, true, 0) != SPI_OK_SELECT)
		reject_non_select(what);
	error_context_stack = callback.previous;
}

/*
 * Open query as a cursor that can be read more than once (rewind) and that
 * survives the commits of a background job.  Its rows are kept by the
 * executor in a tuplestore, which spills to disk beyond work_mem.
 */
SourceCursor *
open_source_cursor(const char *query, const char *what)
{
	SourceCursor *cursor = palloc0(sizeof(SourceCursor));
	ErrorContextCallback callback;
	Portal		portal;

	cursor->description = psprintf("%s source query: %s", what, query);
	push_context(&callback, cursor->description);
	portal = SPI_cursor_open(NULL, prepare_source(query, what, CURSOR_OPT_SCROLL | CURSOR_OPT_HOLD),
							 NULL, NULL, true);
	error_context_stack = callback.previous;
	cursor->name = pstrdup(portal->name);
	return cursor;
}

/* The next rows, at most `rows`, into SPI_tuptable; none at the end. */
uint64
fetch_source(SourceCursor *cursor, long rows)
{
	ErrorContextCallback callback;

	push_context(&callback, cursor->description);
	SPI_cursor_fetch(SPI_cursor_find(cursor->name), true, rows);
	error_context_stack = callback.previous;
	return SPI_processed;
}

/* Back to the first row. */
void
rewind_source(SourceCursor *cursor)
{
	SPI_scroll_cursor_move(SPI_cursor_find(cursor->name), FETCH_ABSOLUTE, 0);
}

void
close_source(SourceCursor *cursor)
{
	SPI_cursor_close(SPI_cursor_find(cursor->name));
}
