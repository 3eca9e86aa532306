/*
 * distill.c - module entry point and small SQL helpers.
 */
#include "postgres.h"

#include <unistd.h>

#include <curl/curl.h>

#include "fmgr.h"
#include "miscadmin.h"
#include "utils/builtins.h"
#include "utils/guc.h"
#include "utils/timestamp.h"

#include "core/model.h"
#include "pg/glue.h"

PG_MODULE_MAGIC;

void		_PG_init(void);

int			distill_threads = 1;
char	   *distill_api_key_env_prefix = NULL;
int			distill_model_cache_mb = 256;

/* The largest distill.threads accepted; the check hook also caps it at the cores. */
#define MAX_THREADS 1024

/*
 * More threads than cores only makes them wait for each other, and
 * OpenBLAS starts that many threads in the backend.
 */
static bool
check_threads(int *newval, void **extra, GucSource source)
{
	long		cores = sysconf(_SC_NPROCESSORS_ONLN);

	if (cores < 1 || *newval <= cores)
		return true;
	GUC_check_errdetail("This machine has %ld cores.", cores);
	GUC_check_errhint("Use at most as many threads as cores; one is usually best, as the backend shares them with the rest of the server.");
	return false;
}

/*
 * Runs in the postmaster when preloaded: define settings, and stop the
 * threads OpenBLAS started when it was loaded (one per core), so that the
 * postmaster forks its children from a single thread; a backend starts
 * OpenBLAS's threads again only when it asks for more than one
 * (distill.threads).  No libcurl here, since its global state must not be
 * forked.  Loaded later instead (by CREATE EXTENSION or a first call),
 * distill works in the foreground only; a postmaster-level setting can
 * then not be defined at all (PostgreSQL ends the session), and would
 * mean nothing.
 */
void
_PG_init(void)
{
	model_single_thread();
	DefineCustomIntVariable("distill.threads",
							"Threads for the model's matrix products and updates.",
							"A backend shares its cores with the rest of the server; "
							"more threads help large models only. At most the machine's cores.",
							&distill_threads,
							1, 1, MAX_THREADS,
							PGC_USERSET, 0,
							check_threads, NULL, NULL);
	DefineCustomIntVariable("distill.model_cache_mb",
							"Memory for the models a backend keeps loaded between queries.",
							"The models a transaction uses stay loaded until it ends, even beyond this.",
							&distill_model_cache_mb,
							256, 0, 1024 * 1024,
							PGC_USERSET, GUC_UNIT_MB,
							NULL, NULL, NULL);
	DefineCustomBoolVariable("distill.shared_models",
							 "Shares a model's weights among the backends that predict with it.",
							 "The first backend to need a model version writes them to a file under "
							 "the data directory, which every backend maps; off loads them into each "
							 "backend.",
							 &distill_shared_models,
							 true,
							 PGC_SUSET, 0,
							 NULL, NULL, NULL);
	if (process_shared_preload_libraries_in_progress)
		DefineCustomStringVariable("distill.database",
								   "Database whose background jobs distill runs.",
								   "The launcher serves one database, like pg_cron's cron.database_name.",
								   &distill_database,
								   "postgres",
								   PGC_POSTMASTER, 0,
								   NULL, NULL, NULL);
	DefineCustomIntVariable("distill.max_workers",
							"Background jobs that may run at once.",
							"Each job takes one background worker (see max_worker_processes).",
							&distill_max_workers,
							2, 1, 64,
							PGC_SIGHUP, 0,
							NULL, NULL, NULL);
	DefineCustomIntVariable("distill.job_retention",
							"How long finished jobs stay in distill.jobs.",
							"The launcher deletes jobs that ended longer ago, with the training log "
							"of those that left no model; -1 keeps them forever.",
							&distill_job_retention,
							30 * SECS_PER_DAY, -1, INT_MAX,
							PGC_SIGHUP, GUC_UNIT_S,
							NULL, NULL, NULL);
	DefineCustomStringVariable("distill.api_key_env_prefix",
							   "Prefix of the environment variables a teacher's api_key_env may name.",
							   "A teacher sends the value of its api_key_env to its endpoint: the prefix "
							   "keeps the server's other secrets out of reach.",
							   &distill_api_key_env_prefix,
							   "DISTILL_",
							   PGC_SUSET, 0,
							   NULL, NULL, NULL);
	MarkGUCPrefixReserved("distill");
	if (process_shared_preload_libraries_in_progress)
		launcher_register();
}

/*
 * The core's stop check (core/stop.h): a pending cancel or termination.
 * The core stops and returns, then the caller's CHECK_FOR_INTERRUPTS()
 * raises it.
 */
bool
interrupt_pending(void *arg)
{
	return QueryCancelPending || ProcDiePending;
}

/*
 * Write all len bytes to fd, again after a signal: 0, or the errno of the
 * failure (ENOSPC for a short write without one: a full disk).
 */
int
write_all(int fd, const void *data, size_t len)
{
	const char *p = data;

	while (len > 0)
	{
		ssize_t		n = write(fd, p, len);

		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			return n < 0 ? errno : ENOSPC;
		p += n;
		len -= n;
	}
	return 0;
}

/* A part of a parsed URL, or NULL when absent. */
static char *
url_part(CURLU *url, CURLUPart part)
{
	char	   *value = NULL;
	char	   *copy;

	if (curl_url_get(url, part, &value, 0) != CURLUE_OK)
		return NULL;
	copy = pstrdup(value);
	curl_free(value);
	return copy;
}

/* Why a URL cannot be a teacher's base URL, or NULL when it can. */
static const char *
endpoint_problem(const char *endpoint)
{
	CURLU	   *url = curl_url();
	CURLUcode	rc = curl_url_set(url, CURLUPART_URL, endpoint, 0);
	const char *problem = NULL;
	char	   *scheme;

	if (rc != CURLUE_OK)
		problem = curl_url_strerror(rc);
	else if ((scheme = url_part(url, CURLUPART_SCHEME)) == NULL ||
			 (strcmp(scheme, "http") != 0 && strcmp(scheme, "https") != 0))
		problem = "Only http and https URLs are supported";
	else if (url_part(url, CURLUPART_USER) != NULL)
		problem = "Credentials do not belong in the URL: name an environment variable in api_key_env instead";
	else if (url_part(url, CURLUPART_QUERY) != NULL || url_part(url, CURLUPART_FRAGMENT) != NULL)
		problem = "A base URL has no query or fragment";
	curl_url_cleanup(url);
	return problem;
}

PG_FUNCTION_INFO_V1(distill_endpoint_problem);

Datum
distill_endpoint_problem(PG_FUNCTION_ARGS)
{
	const char *problem = endpoint_problem(text_to_cstring(PG_GETARG_TEXT_PP(0)));

	if (problem == NULL)
		PG_RETURN_NULL();
	PG_RETURN_TEXT_P(cstring_to_text(problem));
}
