/*
 * distill.c - module entry point and small SQL helpers.
 */
#include "postgres.h"

#include <curl/curl.h>

#include "fmgr.h"
#include "miscadmin.h"
#include "utils/builtins.h"
#include "utils/guc.h"
#include "utils/timestamp.h"

#include "pg/glue.h"

PG_MODULE_MAGIC;

void		_PG_init(void);

int			distill_threads = 1;
char	   *distill_api_key_env_prefix = NULL;

/*
 * Runs in the postmaster when preloaded: define settings only.  No libcurl
 * or BLAS here, since their threads and global state must not be forked.
 * Loaded later instead (by CREATE EXTENSION or a first call), distill works
 * in the foreground only; a postmaster-level setting can then not be
 * defined at all (PostgreSQL ends the session), and would mean nothing.
 */
void
_PG_init(void)
{
	DefineCustomIntVariable("distill.threads",
							"Threads for the student's matrix products (OpenBLAS).",
							"A backend shares its cores with the rest of the server; "
							"more threads help large models only.",
							&distill_threads,
							1, 1, 64,
							PGC_USERSET, 0,
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
