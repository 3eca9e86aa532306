/*
 * glue.h - declarations shared by the PostgreSQL glue (src/pg).
 */
#ifndef DISTILL_PG_GLUE_H
#define DISTILL_PG_GLUE_H

#include "postgres.h"

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

/* catalog.c: must be called inside SPI_connect(); results are palloc'd. */
extern TeacherDef *load_teacher(const char *name);
extern TaskDef *load_task(const char *name);

/*
 * A TeacherPool whose release is guaranteed: if an ERROR (a cancel, a
 * statement timeout) unwinds the caller, the memory context that holds the
 * guard is reset and its callback aborts the transfers and frees the pool.
 */
typedef struct GuardedPool
{
	TeacherPool *pool;
	MemoryContextCallback callback;
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
