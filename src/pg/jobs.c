/*
 * jobs.c - the rows of distill.jobs, and the work of one job as it runs,
 * in the calling session (background => false) or in a background worker.
 *
 * In a worker, a job commits as it goes: job_progress() writes progress
 * and commits at most once a second, job_commit() commits at once, so what
 * the job has done (annotations, training_log rows) is visible while it
 * runs and survives a cancel or a crash.  In the calling session both only
 * record progress: the statement is one transaction, as users expect.
 */
#include "postgres.h"

#include "access/xact.h"
#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "miscadmin.h"
#include "pgstat.h"
#include "utils/builtins.h"
#include "utils/json.h"
#include "utils/memutils.h"
#include "utils/snapmgr.h"
#include "utils/timestamp.h"

#include "pg/glue.h"

#define PROGRESS_COMMIT_INTERVAL_MS 1000

/* Record a job of this kind, of the calling role, as running in this backend. */
JobRun *
job_start_here(const char *kind, const char *args_json)
{
	bool		isnull;
	JobRun	   *run = palloc0(sizeof(JobRun));

	if (run_sql_as_owner("SELECT distill._queue_job($1, $2, $3::jsonb, here => true)",
						 3, (Oid[]) {REGROLEOID, TEXTOID, TEXTOID},
						 (Datum[]) {ObjectIdGetDatum(GetUserId()), CStringGetTextDatum(kind),
							 CStringGetTextDatum(args_json)},
						 NULL, 1) != SPI_OK_SELECT)
		elog(ERROR, "could not insert into distill.jobs");
	run->id = DatumGetInt64(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull));
	run->background = false;
	run->memory = CurrentMemoryContext;
	return run;
}

/* Runs once a second for hours: in memory of its own, freed at once. */
static void
update_job(int64 job, const char *sql, double progress, const char *message)
{
	MemoryContext memory = AllocSetContextCreate(CurrentMemoryContext, "distill job update",
												 ALLOCSET_SMALL_SIZES);
	MemoryContext caller = MemoryContextSwitchTo(memory);
	Oid			argtypes[3] = {INT8OID, FLOAT4OID, TEXTOID};
	Datum		values[3] = {Int64GetDatum(job), Float4GetDatum((float4) progress),
	message ? CStringGetTextDatum(message) : (Datum) 0};
	char		nulls[3] = {' ', ' ', message ? ' ' : 'n'};

	if (run_sql_as_owner(sql, 3, argtypes, values, nulls, 0) != SPI_OK_UPDATE)
		elog(ERROR, "could not update distill.jobs");
	MemoryContextSwitchTo(caller);
	MemoryContextDelete(memory);
}

/*
 * In a worker: commit what the job did so far and go on in a new
 * transaction.  The worker's SPI connection is non-atomic, so its memory
 * (and everything the job keeps there) outlives the commit.
 */
void
job_commit(JobRun *run)
{
	if (!run->background)
		return;
	PopActiveSnapshot();
	SetCurrentStatementStartTimestamp();	/* now() of the next transaction */
	SPI_commit();
	PushActiveSnapshot(GetTransactionSnapshot());
}

/* Progress (0..1) and a message for distill.jobs and pg_stat_activity. */
void
job_progress(JobRun *run, double progress, const char *message)
{
	char		activity[256];

	if (!run->background)
		return;
	/* called for every step or item: nothing allocated in the job's memory */
	snprintf(activity, sizeof(activity), "distill job " INT64_FORMAT ": %s", run->id, message);
	pgstat_report_activity(STATE_RUNNING, activity);
	if (!TimestampDifferenceExceeds(run->last_progress, GetCurrentTimestamp(),
									PROGRESS_COMMIT_INTERVAL_MS))
		return;
	update_job(run->id, "UPDATE distill.jobs SET progress = $2, message = $3 WHERE id = $1",
			   progress, message);
	job_commit(run);
	run->last_progress = GetCurrentTimestamp();
}

void
job_finish(JobRun *run, const char *message)
{
	update_job(run->id, "UPDATE distill.jobs SET status = 'succeeded', progress = $2,"
			   " message = $3, finished_at = now() WHERE id = $1", 1.0, message);
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
