/*
 * source.c - run a user's source query (the rows to annotate, train on or
 * evaluate), read-only, with errors that say which query failed.
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

/*
 * Run query under SPI; afterwards SPI_tuptable holds its rows.  `what`
 * names the source in messages ("annotation", "training", ...).
 */
void
run_source_query(const char *query, const char *what)
{
	ErrorContextCallback errcallback = {
		.previous = error_context_stack,
		.callback = source_error_context,
		.arg = psprintf("%s source query: %s", what, query),
	};
	SPIPlanPtr	plan;

	error_context_stack = &errcallback;
	plan = SPI_prepare(query, 0, NULL);
	if (plan == NULL)
		elog(ERROR, "could not prepare the %s source: %s", what,
			 SPI_result_code_string(SPI_result));
	if (!SPI_is_cursor_plan(plan))
		reject_non_select(what);
	if (SPI_execute_plan(plan, NULL, NULL, true, 0) != SPI_OK_SELECT)
		reject_non_select(what);
	error_context_stack = errcallback.previous;
}
