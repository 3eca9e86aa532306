/*
 * jobs.c - the distill.jobs rows of work run in the calling session.
 */
#include "postgres.h"

#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "utils/builtins.h"
#include "utils/json.h"

#include "pg/glue.h"

/* Record a job of this kind as running in this backend; returns its id. */
int64
job_start(const char *kind, const char *args_json)
{
	Oid			argtypes[2] = {TEXTOID, TEXTOID};
	Datum		values[2] = {CStringGetTextDatum(kind), CStringGetTextDatum(args_json)};
	bool		isnull;

	if (SPI_execute_with_args("INSERT INTO distill.jobs"
							  " (kind, args, status, started_at, worker_pid, attempts)"
							  " VALUES ($1, $2::jsonb, 'running', now(), pg_backend_pid(), 1)"
							  " RETURNING id",
							  2, argtypes, values, NULL, false, 1) != SPI_OK_INSERT_RETURNING)
		elog(ERROR, "could not insert into distill.jobs");
	return DatumGetInt64(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull));
}

void
job_finish(int64 job, const char *message)
{
	Oid			argtypes[2] = {INT8OID, TEXTOID};
	Datum		values[2] = {Int64GetDatum(job), CStringGetTextDatum(message)};

	if (SPI_execute_with_args("UPDATE distill.jobs SET status = 'succeeded', progress = 1,"
							  " message = $2, finished_at = now() WHERE id = $1",
							  2, argtypes, values, NULL, false, 0) != SPI_OK_UPDATE)
		elog(ERROR, "could not update distill.jobs");
}

/* s as a JSON string literal. */
char *
json_string(const char *s)
{
	StringInfoData out;

	initStringInfo(&out);
	escape_json(&out, s);
	return out.data;
}
