/*
 * glue.h - declarations shared by the PostgreSQL glue (src/pg).
 */
#ifndef DISTILL_PG_GLUE_H
#define DISTILL_PG_GLUE_H

#include "postgres.h"

#include "utils/array.h"
#include "utils/jsonb.h"
#include "utils/timestamp.h"

#include "core/error.h"
#include "core/student.h"
#include "teacher/client.h"
#include "teacher/prompt.h"

/* A teacher row, ready to hand to the HTTP client. */
typedef struct TeacherDef
{
	char	   *name;
	TeacherConfig config;
} TeacherDef;

/* A task row: what to ask and how to read the answer. */
typedef struct TaskDef
{
	char	   *name;
	Oid			owner;			/* who owns the task, and its annotations */
	char	   *instruction;
	char	   *answer_prefix;
	char	  **labels;			/* NULL when the task has no label set */
	int			n_labels;
	TaskExample *examples;
	int			n_examples;
} TaskDef;

/* What became of one teacher reply. */
typedef enum AnnotationStatus
{
	ANNOTATION_OK,
	ANNOTATION_UNPARSED,
	ANNOTATION_FAILED
} AnnotationStatus;

typedef struct Annotation
{
	AnnotationStatus status;
	char	   *raw;			/* the reply in the server encoding; NULL if none */
	char	   *rationale;		/* NULL unless parsed */
	char	   *label;			/* canonical label; NULL unless ok */
	char	   *error;			/* why not ok; NULL when ok */
} Annotation;

/*
 * encoding.c: the core and the teachers work in UTF-8, whatever the
 * database encoding.  Both return their argument when no conversion is
 * needed.
 */
extern char *to_utf8(const char *s);
extern char *from_utf8(const char *s);

/*
 * Text for a teacher, in UTF-8; NULL with *flaw saying why when it cannot
 * be sent (bytes that are not UTF-8 in a SQL_ASCII database).
 */
extern char *try_to_utf8(const char *s, char **flaw);

/*
 * Text from a teacher, len bytes that should be UTF-8, in the database
 * encoding; never raises over the content.  When it cannot be stored as it
 * is (invalid UTF-8, a NUL, a character the database encoding lacks),
 * returns it escaped as by utf8_escape() and sets *flaw to what is wrong;
 * else sets *flaw to NULL.
 */
extern char *from_utf8_escaped(const char *s, size_t len, char **flaw);

/*
 * source.c: a user's query, run as that user with that user's search_path,
 * all at once or through a cursor.
 */
typedef struct SourceCursor
{
	char	   *name;			/* of the portal, found again after commits */
	char	   *description;	/* for error messages */
} SourceCursor;

extern void run_source_query(const char *query, const char *what);
extern SourceCursor *open_source_cursor(const char *query, const char *what);
extern uint64 fetch_source(SourceCursor *cursor, long rows);
extern void rewind_source(SourceCursor *cursor);
extern void close_source(SourceCursor *cursor);

/*
 * privileges.c: distill's own statements, with search_path pinned, as the
 * calling role or as the extension's owner (who alone writes the tables).
 * The arguments are SPI_execute_with_args's.  require_sql_version() checks
 * that the database's SQL objects are the version this library is for
 * (the default_version of distill.control).
 */
#define DISTILL_SQL_VERSION "0.4.0"
extern void require_sql_version(void);
extern int	run_sql(const char *sql, int nargs, const Oid *argtypes, const Datum *values,
					const char *nulls, bool read_only, long count);
extern int	run_sql_latest(const char *sql, int nargs, const Oid *argtypes,
						   const Datum *values, long count);
extern int	run_sql_as_owner(const char *sql, int nargs, const Oid *argtypes,
							 const Datum *values, const char *nulls, long count);
extern int	run_sql_as_owner_latest(const char *sql, int nargs, const Oid *argtypes,
									const Datum *values, long count);

/* jobs.c: one job as it runs, here or in a background worker */
typedef struct JobRun
{
	int64		id;
	bool		background;		/* in a worker: commit as it goes */
	MemoryContext memory;		/* lives as long as the job, across commits */
	TimestampTz last_progress;	/* when progress was last written */
	int64		spent_checkpoint;	/* another job's training checkpoint
									 * this one resumed from: removed, with
									 * its own, once it succeeds */
} JobRun;

extern JobRun *job_start_here(const char *kind, const char *args_json);
extern void job_progress(JobRun *run, double progress, const char *message);
extern void job_commit(JobRun *run);
extern void job_finish(JobRun *run, const char *message);
extern char *json_string(const char *s);

/* launcher.c: background jobs */
extern char *distill_database;
extern int	distill_max_workers;
extern int	distill_job_retention;
extern void launcher_register(void);
extern int64 job_submit(const char *kind, const char *args_json);

/* annotate.c, train.c: the work of a job; return a summary */
extern char *run_annotation(JobRun *run, const char *task, const char *teacher,
							const char *source);

/* The arguments of distill.train(), as its job has them. */
typedef struct TrainRequest
{
	const char *model;
	const char *task;
	const char *method;
	const char *source;			/* NULL: the task's annotations */
	double		rationale_weight;
	Jsonb	   *params;
	const char *base;			/* NULL: from scratch */
	bool		resume;			/* from the checkpoint of a failed or
								 * cancelled job with the same arguments */
} TrainRequest;

extern char *run_training(JobRun *run, const TrainRequest *request);

/*
 * train_state.c: the checkpoints of background training jobs, a file per
 * job under the data directory, identified by the job's id and created_at
 * and the base model version trained on.
 */
struct StudentTrainer;

typedef struct StateFileId
{
	int64		job;
	TimestampTz created;		/* the job's created_at */
	int64		base_id;		/* models.id of the base; 0: from scratch */
} StateFileId;

extern bool state_file_save(const StateFileId *id, const struct StudentTrainer *trainer);
extern bool state_file_exists(const StateFileId *id);
extern bool state_file_check(const StateFileId *id, const struct StudentTrainer *trainer,
							 CoreError *err);
extern void state_file_restore(const StateFileId *id, struct StudentTrainer *trainer);
extern void state_file_remove(int64 job);
extern void state_file_sweep(void);

/* distill.c: settings, the core's stop check (core/stop.h), writing a file */
extern int	distill_threads;
extern char *distill_api_key_env_prefix;
extern int	distill_model_cache_mb;
extern bool interrupt_pending(void *arg);
extern int	write_all(int fd, const void *data, size_t len);

/*
 * model_store.c: a model version's rows (distill.models, and its weights'
 * data in distill.model_chunks).  new_model_version() takes the id of a
 * version of model `name` up front, so that a training log can name it,
 * after checked_model_owner() has checked that the caller may add one.
 */
typedef struct NewVersion
{
	int64		id;
	Oid			owner;
} NewVersion;

/* The version of an imported model a student is fine-tuned from. */
typedef struct BaseVersion
{
	const char *name;
	int64		id;
	int			version;
	uint32		checksum;		/* student_weights_checksum() of its weights */
} BaseVersion;

/* The columns of distill.models besides the student's bytes. */
typedef struct ModelRow
{
	const char *task;			/* NULL for an imported model */
	const char *method;
	const char *params;			/* JSON */
	Datum		labels;			/* text[], or 0 for NULL */
	const char *metrics;		/* JSON */
	const BaseVersion *base;	/* the base of a student with adapters */
} ModelRow;

extern bytea *blob_to_bytea(void *blob, size_t len);
extern Oid	checked_model_owner(const char *name);
extern NewVersion new_model_version(const char *name);
extern int	store_model_version(const NewVersion *version, const char *name,
								const ModelRow *row, const Student *student,
								const uint8_t *dtypes);
extern Student *load_model_student(int64 id, const char *name, int version,
								   const bytea *tokenizer, const bytea *weights);
extern void report_load_failure(const char *name, int version, const CoreError *err)
			pg_attribute_noreturn();

/*
 * The deployed version of imported model name, with its plain weights for
 * training (student_load_finish_trainable()); raises when there is none
 * the caller can see.
 */
extern Student *load_base_student(const char *name, BaseVersion *base);

/*
 * shared_models.c: a model version's student whose weights are a
 * prediction image mapped from a file every backend shares
 * (distill.shared_models); as load_model_student() otherwise.
 */
extern bool distill_shared_models;
extern Student *load_shared_student(int64 id, const char *name, int version,
									const bytea *tokenizer, const bytea *weights);

/* predict.c: the backend's model cache and the student's answers */
typedef struct CachedModel CachedModel;
extern CachedModel *lookup_model(const char *name);
extern char *predict_text(const CachedModel *model, const char *input,
						  char **candidates, int n_candidates);
extern char **candidates_arg(ArrayType *array, int *n);
extern char **model_label_set(const CachedModel *model, int *n_labels);
extern int	cached_model_version(const CachedModel *model);
extern void hold_model(CachedModel *model, bool held);
extern void require_visible_model(const char *name);

/* evaluate.c: the work of an evaluation job */
extern char *run_evaluation(JobRun *run, const char *model, const char *source,
							const char *metric);

/* catalog.c: must be called inside SPI_connect(); results are palloc'd. */
extern TeacherDef *load_teacher(const char *name);
extern TaskDef *load_task(const char *name);

/*
 * guard.c: a malloc'd core object released when the memory context that
 * holds its guard is reset, so that an ERROR (a cancel, a statement
 * timeout) cannot leak it.
 */
typedef void (*CoreRelease) (void *object);

typedef struct CoreGuard
{
	void	   *object;			/* NULL once released or detached */
	CoreRelease release;
	MemoryContextCallback callback;
} CoreGuard;

extern CoreGuard *core_guard_new(void *object, CoreRelease release);
extern void core_guard_release(CoreGuard *guard);
extern void core_guard_detach(CoreGuard *guard);

/* guard.c: the SQLSTATE for a core error's kind (core/error.h) */
extern int	core_error_code(const CoreError *err);

/* A teacher pool under a guard. */
typedef struct GuardedPool
{
	TeacherPool *pool;
	CoreGuard  *guard;
} GuardedPool;

/* teacher_call.c */
extern GuardedPool *guarded_pool_create(const TeacherDef *teacher);
extern void guarded_pool_release(GuardedPool *guard);
extern const TeacherResult *guarded_pool_next(GuardedPool *guard);
extern void submit_prompt(GuardedPool *guard, const TaskDef *task,
						  size_t tag, const char *input);
extern Annotation read_reply(const TaskDef *task, const TeacherResult *result);
extern const char *annotation_status_name(AnnotationStatus status);

#endif
