/*
 * launcher.c - background jobs: the launcher, the workers, and the SQL
 * functions that submit, wait for and cancel jobs.
 *
 * The launcher is a background worker registered when the library is in
 * shared_preload_libraries.  It serves the database named by
 * distill.database: it recovers jobs left 'running' by workers that are
 * gone, fires due schedules, and starts one dynamic background worker per
 * queued job, at most distill.max_workers at once.  A worker connects as
 * the job's owner, so a job can do what its owner can and nothing more.
 *
 * Submitting backends wake the launcher through a latch in shared memory
 * when their transaction commits; otherwise it looks every second.
 */
#include "postgres.h"

#include "access/xact.h"
#include "catalog/pg_type.h"
#include "commands/dbcommands.h"
#include "executor/spi.h"
#include "miscadmin.h"
#include "pgstat.h"
#include "postmaster/bgworker.h"
#include "postmaster/interrupt.h"
#include "storage/ipc.h"
#include "storage/latch.h"
#include "storage/proc.h"
#include "storage/shmem.h"
#include "tcop/tcopprot.h"
#include "utils/portal.h"
#include "utils/resowner.h"
#include "utils/builtins.h"
#include "utils/guc.h"
#include "utils/jsonb.h"
#include "utils/memutils.h"
#include "utils/snapmgr.h"
#include "utils/timestamp.h"
#include "utils/wait_event.h"

#include "pg/glue.h"

#define LAUNCHER_NAPTIME_MS 1000
#define WAIT_POLL_MS 100
/* a wait longer than this (100,000 years) is a wait without a limit */
#define MAX_WAIT_USECS (INT64CONST(100000) * 365 * USECS_PER_DAY)

char	   *distill_database = NULL;
int			distill_max_workers = 2;
int			distill_job_retention = 30 * SECS_PER_DAY;
static bool distill_preloaded = false;

/* Shared state: where to find the launcher. */
typedef struct LauncherShared
{
	pid_t		launcher_pid;
	Latch	   *launcher_latch;
} LauncherShared;

static LauncherShared *shared = NULL;
static bool recovered_at_start = false;
static bool wake_at_commit = false;

static shmem_request_hook_type prev_shmem_request_hook = NULL;
static shmem_startup_hook_type prev_shmem_startup_hook = NULL;

PGDLLEXPORT void distill_launcher_main(Datum arg);
PGDLLEXPORT void distill_worker_main(Datum arg);

/* ---------------------------------------------------------------- */
/* Shared memory and registration (postmaster) */

static void
launcher_shmem_request(void)
{
	if (prev_shmem_request_hook)
		prev_shmem_request_hook();
	RequestAddinShmemSpace(MAXALIGN(sizeof(LauncherShared)));
}

static void
launcher_shmem_startup(void)
{
	bool		found;

	if (prev_shmem_startup_hook)
		prev_shmem_startup_hook();
	LWLockAcquire(AddinShmemInitLock, LW_EXCLUSIVE);
	shared = ShmemInitStruct("distill launcher", sizeof(LauncherShared), &found);
	if (!found)
		memset(shared, 0, sizeof(LauncherShared));
	LWLockRelease(AddinShmemInitLock);
}

/* Called from _PG_init when preloaded. */
void
launcher_register(void)
{
	BackgroundWorker worker = {0};

	distill_preloaded = true;
	prev_shmem_request_hook = shmem_request_hook;
	shmem_request_hook = launcher_shmem_request;
	prev_shmem_startup_hook = shmem_startup_hook;
	shmem_startup_hook = launcher_shmem_startup;

	worker.bgw_flags = BGWORKER_SHMEM_ACCESS | BGWORKER_BACKEND_DATABASE_CONNECTION;
	worker.bgw_start_time = BgWorkerStart_RecoveryFinished;
	worker.bgw_restart_time = 5;
	snprintf(worker.bgw_library_name, BGW_MAXLEN, "distill");
	snprintf(worker.bgw_function_name, BGW_MAXLEN, "distill_launcher_main");
	snprintf(worker.bgw_name, BGW_MAXLEN, "distill launcher");
	snprintf(worker.bgw_type, BGW_MAXLEN, "distill launcher");
	RegisterBackgroundWorker(&worker);
}

/* ---------------------------------------------------------------- */
/* Submitting (any backend) */

static void
wake_launcher_callback(XactEvent event, void *arg)
{
	if (event == XACT_EVENT_COMMIT && wake_at_commit && shared != NULL &&
		shared->launcher_latch != NULL)
		SetLatch(shared->launcher_latch);
	if (event == XACT_EVENT_COMMIT || event == XACT_EVENT_ABORT)
		wake_at_commit = false;
}

static void
require_launcher(void)
{
	char	   *here = get_database_name(MyDatabaseId);

	if (!distill_preloaded)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("background jobs need distill in shared_preload_libraries"),
				 errhint("Add distill to shared_preload_libraries in postgresql.conf and restart the server, or pass background => false.")));
	if (strcmp(here, distill_database) != 0)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("background jobs run in database \"%s\", not in \"%s\"",
						distill_database, here),
				 errhint("Set distill.database = '%s' in postgresql.conf and restart, or pass background => false.",
						 here)));
}

/*
 * Queue a job of the calling role; the launcher starts it once this
 * transaction commits.
 */
int64
job_submit(const char *kind, const char *args_json)
{
	static bool callback_registered = false;
	bool		isnull;
	int64		id;

	require_launcher();
	SPI_connect();
	if (run_sql_as_owner("SELECT distill._queue_job($1, $2, $3::jsonb)",
						 3, (Oid[]) {REGROLEOID, TEXTOID, TEXTOID},
						 (Datum[]) {ObjectIdGetDatum(GetUserId()), CStringGetTextDatum(kind),
							 CStringGetTextDatum(args_json)},
						 NULL, 1) != SPI_OK_SELECT)
		elog(ERROR, "could not insert into distill.jobs");
	id = DatumGetInt64(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull));
	SPI_finish();
	if (!callback_registered)
	{
		RegisterXactCallback(wake_launcher_callback, NULL);
		callback_registered = true;
	}
	wake_at_commit = true;
	return id;
}

/* ---------------------------------------------------------------- */
/* Waiting and cancelling (any backend) */

static const char *const terminal_states[] = {"succeeded", "failed", "cancelled"};

static bool
is_terminal(const char *status)
{
	for (int i = 0; i < lengthof(terminal_states); i++)
		if (strcmp(status, terminal_states[i]) == 0)
			return true;
	return false;
}

static void
report_no_such_job(int64 job)
{
	ereport(ERROR,
			(errcode(ERRCODE_UNDEFINED_OBJECT),
			 errmsg("job " INT64_FORMAT " does not exist", job),
			 errhint("SELECT id, kind, status FROM distill.jobs lists your jobs.")));
}

/*
 * The job's status as committed by now, whatever the isolation level, and
 * its worker's pid.  Only the jobs of roles whose privileges the caller has
 * are visible.
 */
static char *
job_status(int64 job, int *worker_pid)
{
	bool		isnull;
	Datum		pid;

	if (run_sql_latest("SELECT status, worker_pid FROM distill.jobs WHERE id = $1",
					   1, (Oid[]) {INT8OID}, (Datum[]) {Int64GetDatum(job)}, 1) != SPI_OK_SELECT)
		elog(ERROR, "could not read distill.jobs");
	if (SPI_processed == 0)
		report_no_such_job(job);
	pid = SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 2, &isnull);
	if (worker_pid)
		*worker_pid = isnull ? 0 : DatumGetInt32(pid);
	return SPI_getvalue(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1);
}

/*
 * A job queued by this very transaction (or one of its subtransactions)
 * cannot start before it commits: waiting for it would wait forever.
 */
static void
check_not_ours(int64 job)
{
	bool		isnull;
	TransactionId xmin;

	if (run_sql("SELECT xmin FROM distill.jobs WHERE id = $1", 1, (Oid[]) {INT8OID},
				(Datum[]) {Int64GetDatum(job)}, NULL, true, 1) != SPI_OK_SELECT)
		elog(ERROR, "could not read distill.jobs");
	if (SPI_processed == 0)
		report_no_such_job(job);
	xmin = DatumGetTransactionId(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc,
											   1, &isnull));
	if (TransactionIdIsCurrentTransactionId(xmin))
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("job " INT64_FORMAT " was submitted in this transaction, which must commit before it can start", job),
				 errhint("Call distill.wait() in a later transaction.")));
}

/*
 * Poll until the job ends or the deadline (0: none) passes; returns its
 * status then.  Each poll has its own SPI connection, so that a wait of
 * days holds no more memory than a wait of a second.
 */
static text *
wait_for_job(int64 job, TimestampTz deadline)
{
	MemoryContext callerctx = CurrentMemoryContext;

	for (;;)
	{
		text	   *result = NULL;
		char	   *status;

		SPI_connect();
		status = job_status(job, NULL);
		if (is_terminal(status) || (deadline != 0 && GetCurrentTimestamp() >= deadline))
		{
			MemoryContextSwitchTo(callerctx);
			result = cstring_to_text(status);
		}
		SPI_finish();
		if (result != NULL)
			return result;
		(void) WaitLatch(MyLatch, WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH,
						 WAIT_POLL_MS, PG_WAIT_EXTENSION);
		ResetLatch(MyLatch);
		CHECK_FOR_INTERRUPTS();
	}
}

/* When a wait of timeout from now ends: 0 for never. */
static TimestampTz
wait_deadline(Interval *timeout)
{
	/* in double: no overflow for any interval, and plenty of precision */
	double		usecs = timeout->time +
		((double) timeout->day + (double) timeout->month * DAYS_PER_MONTH) * USECS_PER_DAY;

	if (usecs < 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("timeout must not be negative"),
				 errhint("Pass NULL (the default) to wait until the job ends.")));
	if (usecs > (double) MAX_WAIT_USECS)
		return 0;
	return GetCurrentTimestamp() + (int64) usecs;
}

PG_FUNCTION_INFO_V1(distill_wait);

/* distill.wait(job, timeout): the job's status once it ends, or at the timeout. */
Datum
distill_wait(PG_FUNCTION_ARGS)
{
	TimestampTz deadline = PG_ARGISNULL(1) ? 0 : wait_deadline(PG_GETARG_INTERVAL_P(1));

	if (PG_ARGISNULL(0))
		PG_RETURN_NULL();
	SPI_connect();
	check_not_ours(PG_GETARG_INT64(0));
	SPI_finish();
	PG_RETURN_TEXT_P(wait_for_job(PG_GETARG_INT64(0), deadline));
}

PG_FUNCTION_INFO_V1(distill_cancel);

#define CANCEL_PATIENCE_MS 5000

/*
 * Mark a queued job cancelled.  If the launcher claimed it meanwhile, the
 * UPDATE finds it no longer queued, but has locked the row to find that
 * out; the row lock would keep the job's worker waiting until this
 * transaction ends.  So the UPDATE runs in a subtransaction, rolled back
 * when it changed nothing.
 */
static bool
cancel_if_queued(int64 job)
{
	MemoryContext context = CurrentMemoryContext;
	ResourceOwner owner = CurrentResourceOwner;
	bool		cancelled;

	BeginInternalSubTransaction(NULL);
	MemoryContextSwitchTo(context);
	cancelled = run_sql_as_owner("UPDATE distill.jobs SET status = 'cancelled',"
								 " finished_at = now(), error = 'cancelled before it started'"
								 " WHERE id = $1 AND status = 'queued'",
								 1, (Oid[]) {INT8OID}, (Datum[]) {Int64GetDatum(job)},
								 NULL, 0) == SPI_OK_UPDATE && SPI_processed == 1;
	if (cancelled)
		ReleaseCurrentSubTransaction();
	else
		RollbackAndReleaseCurrentSubTransaction();
	MemoryContextSwitchTo(context);
	CurrentResourceOwner = owner;
	return cancelled;
}

/*
 * Stop the job, wherever it is: still queued (it never starts), claimed by
 * the launcher but without a worker yet (try again in a moment), or
 * running (a cancel signal to its worker, sent as the caller, who has the
 * privileges of the worker's role).  Returns false when it should be tried
 * again.
 */
static bool
try_cancel(int64 job)
{
	int			pid;
	char	   *status = job_status(job, &pid);

	if (is_terminal(status))
		return true;
	if (strcmp(status, "queued") == 0)
		return cancel_if_queued(job);
	if (pid == 0)
		return false;
	return run_sql("SELECT pg_cancel_backend($1)", 1, (Oid[]) {INT4OID},
				   (Datum[]) {Int32GetDatum(pid)}, NULL, false, 1) == SPI_OK_SELECT &&
		DatumGetBool(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &(bool) {false}));
}

/*
 * distill.cancel(job): a queued job is cancelled at once; a running one is
 * sent a cancel, like pg_cancel_backend(), and we wait for it to stop.
 * Returns the job's status.  A role sees, and so cancels, only the jobs of
 * roles whose privileges it has.
 */
Datum
distill_cancel(PG_FUNCTION_ARGS)
{
	int64		job = PG_GETARG_INT64(0);
	TimestampTz started = GetCurrentTimestamp();

	SPI_connect();
	while (!try_cancel(job))
	{
		if (TimestampDifferenceExceeds(started, GetCurrentTimestamp(), CANCEL_PATIENCE_MS))
			ereport(ERROR,
					(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
					 errmsg("job " INT64_FORMAT " did not get a worker to cancel", job),
					 errhint("Try again; SELECT * FROM distill.jobs shows its state.")));
		(void) WaitLatch(MyLatch, WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH,
						 WAIT_POLL_MS / 2, PG_WAIT_EXTENSION);
		ResetLatch(MyLatch);
		CHECK_FOR_INTERRUPTS();
	}
	SPI_finish();
	PG_RETURN_TEXT_P(wait_for_job(job, TimestampTzPlusMilliseconds(GetCurrentTimestamp(), 10 * 1000)));
}

/* ---------------------------------------------------------------- */
/* The launcher */

/*
 * Nothing sets the statement start time in a background worker, and now()
 * is the time of the transaction's first statement: set it, or now() would
 * stay the worker's start time.
 */
static void
begin_work(void)
{
	SetCurrentStatementStartTimestamp();
	StartTransactionCommand();
	SPI_connect();
	PushActiveSnapshot(GetTransactionSnapshot());
}

static void
end_work(void)
{
	SPI_finish();
	PopActiveSnapshot();
	CommitTransactionCommand();
}

static bool
extension_installed(void)
{
	return run_sql("SELECT FROM pg_extension WHERE extname = 'distill'", 0, NULL, NULL, NULL,
				   true, 1) == SPI_OK_SELECT && SPI_processed == 1;
}

/* A job claimed by the launcher, to be started. */
typedef struct ClaimedJob
{
	int64		id;
	Oid			owner;
} ClaimedJob;

/* The workers this launcher started, to notice those that stop. */
typedef struct RunningWorker
{
	int64		job;
	BackgroundWorkerHandle *handle;
	bool		stopped;		/* and its job recovered, once that commits */
} RunningWorker;

/* Finished workers linger until the next round: room for twice the most. */
#define MAX_TRACKED_WORKERS 128

static RunningWorker *running = NULL;
static int	n_running = 0;

/*
 * Jobs whose worker stopped and left them 'running' (it was killed, or
 * died of a FATAL error): give them back to the queue, or fail them.
 */
static void
recover_stopped_workers(void)
{
	for (int i = 0; i < n_running; i++)
	{
		pid_t		pid;

		if (GetBackgroundWorkerPid(running[i].handle, &pid) != BGWH_STOPPED)
			continue;
		run_sql("SELECT distill._recover_jobs($1)", 1, (Oid[]) {INT8OID},
				(Datum[]) {Int64GetDatum(running[i].job)}, NULL, false, 0);
		running[i].stopped = true;
	}
}

/* Once their recovery has committed, stop tracking the stopped workers. */
static void
forget_stopped_workers(void)
{
	for (int i = 0; i < n_running;)
	{
		if (!running[i].stopped)
		{
			i++;
			continue;
		}
		pfree(running[i].handle);
		running[i] = running[--n_running];
	}
}

/* Forget the jobs that ended before distill.job_retention. */
static void
purge_old_jobs(void)
{
	if (distill_job_retention < 0)
		return;
	run_sql("SELECT distill._purge_jobs(make_interval(secs => $1))", 1, (Oid[]) {FLOAT8OID},
			(Datum[]) {Float8GetDatum((double) distill_job_retention)}, NULL, false, 0);
}

/*
 * Recover jobs of workers that are gone, fire due schedules, and claim
 * queued jobs for the free worker slots.  Returns the claimed jobs, in
 * memory (which must outlive the SPI connection).
 */
static ClaimedJob *
plan_work(MemoryContext memory, int *n_claimed)
{
	ClaimedJob *claimed;

	*n_claimed = 0;
	if (!extension_installed())
		return NULL;
	if (!recovered_at_start)
	{
		run_sql("SELECT distill._recover_jobs()", 0, NULL, NULL, NULL, false, 0);
		recovered_at_start = true;
	}
	recover_stopped_workers();
	purge_old_jobs();
	state_file_sweep();
	run_sql("SELECT distill._fire_schedules()", 0, NULL, NULL, NULL, false, 0);
	if (run_sql("SELECT id, owner FROM distill._claim_jobs($1)", 1,
				(Oid[]) {INT4OID}, (Datum[]) {Int32GetDatum(distill_max_workers)},
				NULL, false, 0) != SPI_OK_SELECT)
		elog(ERROR, "could not claim jobs");
	claimed = MemoryContextAlloc(memory, Max(SPI_processed, 1) * sizeof(ClaimedJob));
	for (uint64 i = 0; i < SPI_processed; i++)
	{
		bool		isnull;

		claimed[i].id = DatumGetInt64(SPI_getbinval(SPI_tuptable->vals[i], SPI_tuptable->tupdesc, 1, &isnull));
		claimed[i].owner = DatumGetObjectId(SPI_getbinval(SPI_tuptable->vals[i], SPI_tuptable->tupdesc, 2, &isnull));
	}
	*n_claimed = (int) SPI_processed;
	return claimed;
}

/*
 * Start a worker for the job: BGWH_STARTED (it runs, and is tracked),
 * BGWH_STOPPED (it ran and stopped already, maybe at once) or
 * BGWH_NOT_YET_STARTED (no free worker slot).
 */
static BgwHandleStatus
start_worker(const ClaimedJob *job)
{
	BackgroundWorker worker = {0};
	BackgroundWorkerHandle *handle;
	BgwHandleStatus status;
	pid_t		pid;

	worker.bgw_flags = BGWORKER_SHMEM_ACCESS | BGWORKER_BACKEND_DATABASE_CONNECTION;
	worker.bgw_start_time = BgWorkerStart_RecoveryFinished;
	worker.bgw_restart_time = BGW_NEVER_RESTART;
	snprintf(worker.bgw_library_name, BGW_MAXLEN, "distill");
	snprintf(worker.bgw_function_name, BGW_MAXLEN, "distill_worker_main");
	snprintf(worker.bgw_name, BGW_MAXLEN, "distill worker for job " INT64_FORMAT, job->id);
	snprintf(worker.bgw_type, BGW_MAXLEN, "distill worker");
	worker.bgw_main_arg = Int64GetDatum(job->id);
	memcpy(worker.bgw_extra, &MyDatabaseId, sizeof(Oid));
	memcpy(worker.bgw_extra + sizeof(Oid), &job->owner, sizeof(Oid));
	worker.bgw_notify_pid = MyProcPid;
	if (n_running == MAX_TRACKED_WORKERS ||
		!RegisterDynamicBackgroundWorker(&worker, &handle))
		return BGWH_NOT_YET_STARTED;
	status = WaitForBackgroundWorkerStartup(handle, &pid);
	if (status != BGWH_STARTED)
	{
		pfree(handle);
		return status;
	}
	running[n_running].job = job->id;
	running[n_running].handle = handle;
	running[n_running].stopped = false;
	n_running++;
	return BGWH_STARTED;
}

/*
 * Start the claimed jobs' workers.  A job that gets no worker slot goes
 * back to the queue as it was; one whose worker stopped before we could
 * see it run is recovered, which counts the attempt.  (A worker records its
 * own pid once it is a backend that pg_cancel_backend can reach.)
 */
static void
start_workers(const ClaimedJob *jobs, int n)
{
	for (int i = 0; i < n; i++)
	{
		BgwHandleStatus status = start_worker(&jobs[i]);
		Datum		job = Int64GetDatum(jobs[i].id);

		if (status == BGWH_STARTED)
			continue;
		begin_work();
		if (status == BGWH_STOPPED)
			run_sql("SELECT distill._recover_jobs($1)", 1, (Oid[]) {INT8OID}, &job, NULL, false, 0);
		else
			run_sql("UPDATE distill.jobs SET status = 'queued', attempts = attempts - 1,"
					" started_at = NULL, message = 'waiting for a free background worker slot'"
					" WHERE id = $1 AND status = 'running'",
					1, (Oid[]) {INT8OID}, &job, NULL, false, 0);
		end_work();
	}
}

/* One round of the launcher's work, in its own transactions. */
static void
launcher_round(void)
{
	MemoryContext roundctx = CurrentMemoryContext;
	ClaimedJob *claimed;
	int			n_claimed;

	begin_work();
	claimed = plan_work(roundctx, &n_claimed);
	end_work();
	forget_stopped_workers();
	start_workers(claimed, n_claimed);
}

/*
 * A round that failed (a bad row, a full disk) is logged and abandoned; the
 * next one starts afresh a second later.  Whatever the data, the launcher
 * keeps running.
 */
static void
abandon_round(MemoryContext launcherctx)
{
	MemoryContextSwitchTo(launcherctx);
	EmitErrorReport();
	FlushErrorState();
	AbortCurrentTransaction();
}

static void
launcher_detach(int code, Datum arg)
{
	if (shared != NULL && shared->launcher_pid == MyProcPid)
	{
		shared->launcher_latch = NULL;
		shared->launcher_pid = 0;
	}
}

void
distill_launcher_main(Datum arg)
{
	MemoryContext launcherctx;
	MemoryContext roundctx;

	pqsignal(SIGTERM, die);
	pqsignal(SIGHUP, SignalHandlerForConfigReload);
	BackgroundWorkerUnblockSignals();
	BackgroundWorkerInitializeConnection(distill_database, NULL, 0);
	pgstat_report_appname("distill launcher");

	shared->launcher_pid = MyProcPid;
	shared->launcher_latch = MyLatch;
	running = MemoryContextAlloc(TopMemoryContext, MAX_TRACKED_WORKERS * sizeof(RunningWorker));
	on_shmem_exit(launcher_detach, 0);
	launcherctx = AllocSetContextCreate(TopMemoryContext, "distill launcher", ALLOCSET_DEFAULT_SIZES);
	roundctx = AllocSetContextCreate(launcherctx, "distill launcher round", ALLOCSET_DEFAULT_SIZES);

	for (;;)
	{
		CHECK_FOR_INTERRUPTS();
		if (ConfigReloadPending)
		{
			ConfigReloadPending = false;
			ProcessConfigFile(PGC_SIGHUP);
		}
		pgstat_report_activity(STATE_RUNNING, "planning distill jobs");
		MemoryContextSwitchTo(roundctx);
		PG_TRY();
		{
			launcher_round();
		}
		PG_CATCH();
		{
			abandon_round(launcherctx);
		}
		PG_END_TRY();
		MemoryContextSwitchTo(launcherctx);
		MemoryContextReset(roundctx);
		pgstat_report_activity(STATE_IDLE, NULL);

		(void) WaitLatch(MyLatch, WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH,
						 LAUNCHER_NAPTIME_MS, PG_WAIT_EXTENSION);
		ResetLatch(MyLatch);
	}
}

/* ---------------------------------------------------------------- */
/* A worker: one job */

/*
 * A job argument, NULL only where allowed.  Jobs are queued through
 * distill._queue_job, which checks their arguments, but the row may have
 * been changed since by someone who may write the table.
 */
static char *
job_arg(const JobRun *run, int col, const char *name, bool nullable)
{
	char	   *value = SPI_getvalue(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, col);

	if (value == NULL && !nullable)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("job " INT64_FORMAT " has no \"%s\" argument", run->id, name),
				 errhint("Queue jobs with distill.annotate(), distill.train(), distill.evaluate() or distill.schedule(), which check their arguments.")));
	return value;
}

/* Run the job's kind with its arguments, read from its row. */
static char *
run_job(JobRun *run)
{
	char	   *kind;

	if (run_sql_as_owner("SELECT kind, args->>'task', args->>'teacher', args->>'source',"
						 " args->>'model', args->>'method',"
						 " (args->>'rationale_weight')::float8, args->'params', args->>'metric',"
						 " args->>'base', (args->>'resume')::boolean"
						 " FROM distill.jobs WHERE id = $1",
						 1, (Oid[]) {INT8OID}, (Datum[]) {Int64GetDatum(run->id)}, NULL, 1)
		!= SPI_OK_SELECT || SPI_processed != 1)
		elog(ERROR, "job " INT64_FORMAT " vanished", run->id);
	kind = job_arg(run, 1, "kind", false);
	if (strcmp(kind, "annotate") == 0)
	{
		char	   *task = job_arg(run, 2, "task", false);
		char	   *teacher = job_arg(run, 3, "teacher", false);
		char	   *source = job_arg(run, 4, "source", false);

		return run_annotation(run, task, teacher, source);
	}
	if (strcmp(kind, "train") == 0)
	{
		TrainRequest request = {
			.task = job_arg(run, 2, "task", false),
			.model = job_arg(run, 5, "model", false),
			.method = job_arg(run, 6, "method", false),
			.source = job_arg(run, 4, "source", true),
			.base = job_arg(run, 10, "base", true)
		};
		bool		isnull;
		Datum		resume = SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 11, &isnull);

		request.resume = !isnull && DatumGetBool(resume);
		(void) job_arg(run, 7, "rationale_weight", false);
		(void) job_arg(run, 8, "params", false);
		request.rationale_weight = DatumGetFloat8(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 7, &isnull));
		request.params = DatumGetJsonbP(SPI_datumTransfer(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 8, &isnull), false, -1));
		return run_training(run, &request);
	}
	if (strcmp(kind, "evaluate") == 0)
	{
		char	   *model = job_arg(run, 5, "model", false);
		char	   *source = job_arg(run, 4, "source", false);
		char	   *metric = job_arg(run, 9, "metric", false);

		return run_evaluation(run, model, source, metric);
	}
	ereport(ERROR,
			(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
			 errmsg("jobs of kind \"%s\" cannot run in the background", kind)));
	return NULL;				/* not reached */
}

/* After an ERROR: the job failed, or was cancelled, with the error's message. */
static void
record_failure(int64 job, ErrorData *error)
{
	bool		cancelled = error->sqlerrcode == ERRCODE_QUERY_CANCELED;

	begin_work();
	run_sql_as_owner("UPDATE distill.jobs SET status = $2, error = $3, finished_at = now()"
					 " WHERE id = $1",
					 3, (Oid[]) {INT8OID, TEXTOID, TEXTOID},
					 (Datum[]) {Int64GetDatum(job),
						 CStringGetTextDatum(cancelled ? "cancelled" : "failed"),
					 CStringGetTextDatum(cancelled ? "cancelled while running" : error->message)},
					 NULL, 0);
	end_work();
}

/*
 * The job's transactions: one SPI connection for the whole job, non-atomic
 * so that job_commit() can commit, with its memory under the job's context
 * (through PortalContext, which SPI takes as the parent of a non-atomic
 * connection's memory), so that deleting that context after an ERROR also
 * releases what the job holds: the teacher pool, the trainer.
 */
static void
begin_job(JobRun *run)
{
	SetCurrentStatementStartTimestamp();
	StartTransactionCommand();
	PortalContext = run->memory;
	SPI_connect_ext(SPI_OPT_NONATOMIC);
	PushActiveSnapshot(GetTransactionSnapshot());
}

static void
end_job(void)
{
	PopActiveSnapshot();
	SPI_finish();
	CommitTransactionCommand();
}

void
distill_worker_main(Datum arg)
{
	JobRun		run = {.id = DatumGetInt64(arg),.background = true};
	Oid			database;
	Oid			owner;

	memcpy(&database, MyBgworkerEntry->bgw_extra, sizeof(Oid));
	memcpy(&owner, MyBgworkerEntry->bgw_extra + sizeof(Oid), sizeof(Oid));
	pqsignal(SIGTERM, die);
	pqsignal(SIGINT, StatementCancelHandler);
	BackgroundWorkerUnblockSignals();
	BackgroundWorkerInitializeConnectionByOid(database, owner, 0);
	pgstat_report_appname("distill worker");
	run.memory = AllocSetContextCreate(TopMemoryContext, "distill job", ALLOCSET_DEFAULT_SIZES);

	PG_TRY();
	{
		begin_job(&run);
		run_sql_as_owner("UPDATE distill.jobs SET worker_pid = $2 WHERE id = $1",
						 2, (Oid[]) {INT8OID, INT4OID},
						 (Datum[]) {Int64GetDatum(run.id), Int32GetDatum(MyProcPid)},
						 NULL, 0);
		job_commit(&run);
		job_finish(&run, run_job(&run));
		end_job();
		/* once its success is committed, a job needs no checkpoint */
		state_file_remove(run.id);
		if (run.spent_checkpoint != 0)
			state_file_remove(run.spent_checkpoint);
	}
	PG_CATCH();
	{
		ErrorData  *error;

		HOLD_INTERRUPTS();
		MemoryContextSwitchTo(TopMemoryContext);
		EmitErrorReport();
		error = CopyErrorData();
		FlushErrorState();
		AbortCurrentTransaction();
		MemoryContextDelete(run.memory);
		QueryCancelPending = false;
		RESUME_INTERRUPTS();
		record_failure(run.id, error);
	}
	PG_END_TRY();
	proc_exit(0);
}
