/*
 * catalog.c - read teachers and tasks from the distill schema, as the
 * calling role: a task another role owns is one that does not exist.
 */
#include "postgres.h"

#include <stdlib.h>

#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "utils/builtins.h"

#include "pg/glue.h"

/* Run a one-parameter read-only query; returns the number of rows. */
static uint64
query_by_name(const char *sql, const char *name)
{
	Oid			argtypes[1] = {TEXTOID};
	Datum		values[1] = {CStringGetTextDatum(name)};
	int			rc;

	rc = run_sql(sql, 1, argtypes, values, NULL, true, 0);
	if (rc != SPI_OK_SELECT)
		elog(ERROR, "distill catalog query failed: %s", SPI_result_code_string(rc));
	return SPI_processed;
}

/* Column `col` (1-based) of row `row` of the last SPI result, or NULL. */
static char *
cell(uint64 row, int col)
{
	return SPI_getvalue(SPI_tuptable->vals[row], SPI_tuptable->tupdesc, col);
}

static int
cell_int(uint64 row, int col)
{
	return pg_strtoint32(cell(row, col));
}

/*
 * The API key, read from the server's environment each time it is needed
 * so that it is never stored anywhere PostgreSQL could show it.  Only
 * variables named with distill.api_key_env_prefix may be read, whenever the
 * teacher was made.
 */
static const char *
teacher_api_key(const char *teacher, const char *env_name)
{
	const char *key;

	if (env_name == NULL)
		return NULL;
	if (strncmp(env_name, distill_api_key_env_prefix, strlen(distill_api_key_env_prefix)) != 0)
		ereport(ERROR,
				(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
				 errmsg("api_key_env \"%s\" of teacher \"%s\" does not start with \"%s\"",
						env_name, teacher, distill_api_key_env_prefix),
				 errdetail("Teachers may only read server environment variables whose names start with distill.api_key_env_prefix."),
				 errhint("Recreate the teacher with a variable named like %s%s.",
						 distill_api_key_env_prefix, env_name)));
	key = getenv(env_name);
	if (key == NULL || key[0] == '\0')
		ereport(ERROR,
				(errcode(ERRCODE_CONFIG_FILE_ERROR),
				 errmsg("environment variable \"%s\" of teacher \"%s\" is not set in the server",
						env_name, teacher),
				 errdetail("The API key is read from the environment of the PostgreSQL server process."),
				 errhint("Set %s where the server is started (systemd unit, pg_ctl environment) and restart it.",
						 env_name)));
	return key;
}

TeacherDef *
load_teacher(const char *name)
{
	TeacherDef *teacher;
	TeacherConfig *config;

	if (query_by_name("SELECT endpoint, model, api, api_key_env,"
					  " (options->>'temperature')::float8, options->>'max_tokens',"
					  " options->>'timeout_ms', options->>'concurrency',"
					  " options->>'max_retries', options->>'retry_base_ms'"
					  " FROM distill.teachers WHERE name = $1", name) == 0)
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_OBJECT),
				 errmsg("teacher \"%s\" does not exist", name),
				 errhint("Create it with distill.create_teacher(); SELECT name FROM distill.teachers lists the existing ones.")));

	teacher = palloc0(sizeof(TeacherDef));
	teacher->name = pstrdup(name);
	config = &teacher->config;
	config->endpoint = cell(0, 1);
	config->model = cell(0, 2);
	config->api = strcmp(cell(0, 3), "ollama") == 0 ? TEACHER_API_OLLAMA : TEACHER_API_OPENAI;
	config->api_key = teacher_api_key(name, cell(0, 4));
	config->temperature = strtod(cell(0, 5), NULL);
	config->max_tokens = cell_int(0, 6);
	config->timeout_ms = cell_int(0, 7);
	config->concurrency = cell_int(0, 8);
	config->max_retries = cell_int(0, 9);
	config->retry_base_ms = cell_int(0, 10);
	return teacher;
}

static void
load_task_labels(TaskDef *task)
{
	uint64		n = query_by_name("SELECT l FROM distill.tasks, unnest(labels) l"
								  " WHERE name = $1", task->name);

	task->n_labels = (int) n;
	task->labels = n > 0 ? palloc(n * sizeof(char *)) : NULL;
	for (uint64 i = 0; i < n; i++)
		task->labels[i] = cell(i, 1);
}

static void
load_task_examples(TaskDef *task)
{
	uint64		n = query_by_name("SELECT e->>'input', e->>'rationale', e->>'label'"
								  " FROM distill.tasks,"
								  " jsonb_array_elements(examples) WITH ORDINALITY AS x(e, i)"
								  " WHERE name = $1 ORDER BY i", task->name);

	task->n_examples = (int) n;
	task->examples = palloc0(Max(n, 1) * sizeof(TaskExample));
	for (uint64 i = 0; i < n; i++)
	{
		task->examples[i].input = cell(i, 1);
		task->examples[i].rationale = cell(i, 2);
		task->examples[i].label = cell(i, 3);
	}
}

TaskDef *
load_task(const char *name)
{
	TaskDef    *task;

	if (query_by_name("SELECT instruction, answer_prefix, owner::oid FROM distill.tasks"
					  " WHERE name = $1", name) == 0)
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_OBJECT),
				 errmsg("task \"%s\" does not exist", name),
				 errhint("Create it with distill.create_task(); SELECT name FROM distill.tasks lists the existing ones.")));

	task = palloc0(sizeof(TaskDef));
	task->name = pstrdup(name);
	task->instruction = cell(0, 1);
	task->answer_prefix = cell(0, 2);
	task->owner = DatumGetObjectId(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc,
												 3, &(bool) {false}));
	load_task_labels(task);
	load_task_examples(task);
	return task;
}
