/*
 * train.c - distill.train(): train a student in this session and store it
 * as a new version in distill.models.
 */
#include "postgres.h"

#include <math.h>

#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "miscadmin.h"
#include "utils/acl.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/jsonb.h"
#include "utils/lsyscache.h"

#include "core/lora.h"
#include "core/trainer.h"
#include "teacher/parse.h"
#include "pg/glue.h"

PG_FUNCTION_INFO_V1(distill_train);

typedef enum TrainMethod
{
	METHOD_STEP_BY_STEP,
	METHOD_DISTILL,
	METHOD_FINETUNE
} TrainMethod;

static const char *const method_names[] = {"step_by_step", "distill", "finetune"};

/* The rows to learn from, as the core wants them. */
typedef struct TrainingSet
{
	StudentExample *examples;
	int			n_examples;
	int			n_rationales;	/* examples with a rationale */
} TrainingSet;

static TrainMethod
parse_method(const char *name)
{
	for (int i = 0; i < lengthof(method_names); i++)
		if (strcmp(name, method_names[i]) == 0)
			return (TrainMethod) i;
	ereport(ERROR,
			(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
			 errmsg("unknown training method \"%s\"", name),
			 errhint("Use 'step_by_step' (labels and rationales), 'distill' (teacher labels only) or 'finetune' (gold labels only).")));
	return METHOD_STEP_BY_STEP;	/* not reached */
}

/*
 * The query the examples come from.  By default, the task's 'ok'
 * annotations: teacher labels and rationales.
 */
static char *
training_query(const char *task, TrainMethod method, const char *source)
{
	if (source != NULL)
		return pstrdup(source);
	if (method == METHOD_FINETUNE)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("method 'finetune' needs a source query with gold labels"),
				 errhint("For example: source => 'SELECT body AS input, gold AS label FROM tickets'.")));
	return psprintf("SELECT input, label, rationale FROM distill.annotations"
					" WHERE task = %s AND status = 'ok' ORDER BY teacher, item_id",
					quote_literal_cstr(task));
}

static int
source_column(TupleDesc tupdesc, const char *name, bool required)
{
	int			col = SPI_fnumber(tupdesc, name);

	if (col <= 0 && required)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("the training source has no column \"%s\"", name),
				 errhint("The source returns input, label and, for step_by_step, rationale; rename columns with AS.")));
	return col > 0 ? col : 0;
}

/* The label as spelled in the task's label set; an error when it is not in it. */
static const char *
canonical_label(const TaskDef *task, const char *label, int row)
{
	int			i = match_label(label, (const char *const *) task->labels, task->n_labels);

	if (i < 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("training row %d has label \"%s\", which is not in the label set of task \"%s\"",
						row, label, task->name),
				 errhint("Filter the source to the task's labels, or create a task with labels => NULL.")));
	return task->labels[i];
}

/*
 * Is the example's label one of its choices (ignoring case, as for a
 * label set)?  Then it takes the choice's spelling.  Rows without choices
 * pass.
 */
static bool
label_among_choices(StudentExample *example)
{
	int			i;

	if (example->choices == NULL)
		return true;
	i = match_label(example->label, example->choices, example->n_choices);
	if (i < 0)
		return false;
	example->label = example->choices[i];
	return true;
}

static void
read_choices(StudentExample *example, HeapTuple tuple, TupleDesc tupdesc, int col)
{
	bool		isnull;
	Datum		datum = SPI_getbinval(tuple, tupdesc, col, &isnull);
	Datum	   *elems;
	bool	   *nulls;
	int			n;
	char	  **choices;

	if (isnull)
		return;
	deconstruct_array(DatumGetArrayTypeP(datum), TEXTOID, -1, false, TYPALIGN_INT,
					  &elems, &nulls, &n);
	choices = palloc(Max(n, 1) * sizeof(char *));
	for (int i = 0; i < n; i++)
		choices[i] = nulls[i] ? "" : to_utf8(TextDatumGetCString(elems[i]));
	example->choices = (const char *const *) choices;
	example->n_choices = n;
}

static TrainingSet
load_training_set(const char *query, const TaskDef *task, TrainMethod method)
{
	TrainingSet set = {0};
	TupleDesc	tupdesc;
	int			input_col,
				label_col,
				rationale_col,
				choices_col;
	int			not_a_choice = 0;

	run_source_query(query, "training");
	tupdesc = SPI_tuptable->tupdesc;
	input_col = source_column(tupdesc, "input", true);
	label_col = source_column(tupdesc, "label", true);
	rationale_col = source_column(tupdesc, "rationale", method == METHOD_STEP_BY_STEP);
	choices_col = source_column(tupdesc, "choices", false);
	if (choices_col > 0 && SPI_gettypeid(tupdesc, choices_col) != TEXTARRAYOID)
		ereport(ERROR,
				(errcode(ERRCODE_DATATYPE_MISMATCH),
				 errmsg("the training source's \"choices\" column must be text[]")));

	set.examples = palloc0(Max(SPI_processed, 1) * sizeof(StudentExample));
	for (uint64 i = 0; i < SPI_processed; i++)
	{
		HeapTuple	tuple = SPI_tuptable->vals[i];
		StudentExample *example = &set.examples[set.n_examples];

		/* the slot may hold a row skipped below */
		memset(example, 0, sizeof(*example));
		example->input = SPI_getvalue(tuple, tupdesc, input_col);
		example->label = SPI_getvalue(tuple, tupdesc, label_col);
		if (example->input == NULL || example->label == NULL)
			continue;			/* nothing to learn from; counted below */
		if (task->labels != NULL)
			example->label = canonical_label(task, example->label, (int) i + 1);
		example->input = to_utf8(example->input);
		example->label = to_utf8(example->label);
		if (choices_col > 0)
		{
			read_choices(example, tuple, tupdesc, choices_col);
			if (!label_among_choices(example))
			{
				not_a_choice++;
				continue;
			}
		}
		if (rationale_col > 0 && method == METHOD_STEP_BY_STEP)
			example->rationale = SPI_getvalue(tuple, tupdesc, rationale_col);
		if (example->rationale != NULL)
		{
			example->rationale = to_utf8(example->rationale);
			set.n_rationales++;
		}
		set.n_examples++;
	}
	if (set.n_examples + not_a_choice < (int) SPI_processed)
		ereport(NOTICE,
				(errmsg("skipped %d training rows with a NULL input or label",
						(int) SPI_processed - set.n_examples - not_a_choice)));
	if (not_a_choice > 0)
		ereport(NOTICE,
				(errmsg("skipped %d training rows whose label is not one of their choices",
						not_a_choice),
				 errdetail("A teacher's answer can name no choice, or more than one."),
				 errhint("Filter them out of the source to silence this, or leave out the choices column to train on them as free text.")));
	if (method == METHOD_STEP_BY_STEP && set.n_rationales == 0 && set.n_examples > 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("method 'step_by_step' needs rationales, and the training source has none"),
				 errhint("Annotate with a teacher first, or use method => 'distill' or 'finetune' to train on labels only.")));
	return set;
}

/* Hyperparameters accepted in params, by their JSON names. */
typedef enum ParamType
{
	PARAM_INT,
	PARAM_FLOAT,
	PARAM_BOOL,
	PARAM_SEED,
	PARAM_METRIC,				/* an AnswerMetric, by name */
	PARAM_TARGETS				/* LoRA targets: an array of their names */
} ParamType;

/* AnswerMetric names, as distill.evaluate spells them. */
static const char *const metric_names[] = {"exact", "equation"};

StaticAssertDecl(lengthof(metric_names) == METRIC_EQUATION + 1,
				 "one name per AnswerMetric");

typedef struct ParamSpec
{
	const char *key;
	ParamType	type;
	size_t		offset;			/* in StudentParams */
	char		applies;		/* 'a' always, 's' from scratch only (a base
								 * has its own architecture), 'b' on a base
								 * only */
} ParamSpec;

#define PARAM(key, type, field) {key, type, offsetof(StudentParams, field), 'a'}
#define SHAPE(key, type, field) {key, type, offsetof(StudentParams, field), 's'}
#define ON_BASE(key, type, field) {key, type, offsetof(StudentParams, field), 'b'}

static const ParamSpec param_specs[] = {
	SHAPE("d_model", PARAM_INT, d_model),
	SHAPE("layers", PARAM_INT, n_layers),
	SHAPE("heads", PARAM_INT, n_heads),
	SHAPE("d_ff", PARAM_INT, d_ff),
	SHAPE("vocab_size", PARAM_INT, vocab_size),
	PARAM("epochs", PARAM_INT, epochs),
	PARAM("batch_size", PARAM_INT, batch_size),
	PARAM("max_input_tokens", PARAM_INT, max_input_tokens),
	PARAM("max_target_tokens", PARAM_INT, max_target_tokens),
	PARAM("lr", PARAM_FLOAT, lr),
	PARAM("weight_decay", PARAM_FLOAT, weight_decay),
	PARAM("warmup_fraction", PARAM_FLOAT, warmup_fraction),
	PARAM("grad_clip", PARAM_FLOAT, grad_clip),
	PARAM("dropout", PARAM_FLOAT, dropout),
	PARAM("validation_fraction", PARAM_FLOAT, validation_fraction),
	PARAM("prefix_lm", PARAM_BOOL, prefix_lm),
	SHAPE("tied_embeddings", PARAM_BOOL, tied_embeddings),
	PARAM("seed", PARAM_SEED, seed),
	PARAM("log_every", PARAM_INT, log_every),
	PARAM("memory_mb", PARAM_INT, memory_mb),
	PARAM("validation_metric", PARAM_METRIC, validation_metric),
	ON_BASE("lora_rank", PARAM_INT, lora_rank),
	ON_BASE("lora_alpha", PARAM_FLOAT, lora_alpha),
	ON_BASE("lora_targets", PARAM_TARGETS, lora_targets),
};

static const ParamSpec *
find_param(const char *key, bool on_base)
{
	for (int i = 0; i < lengthof(param_specs); i++)
		if (strcmp(param_specs[i].key, key) == 0)
		{
			if (on_base && param_specs[i].applies == 's')
				ereport(ERROR,
						(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
						 errmsg("training parameter \"%s\" does not apply to a student fine-tuned on a base", key),
						 errhint("The student keeps the base's architecture and tokenizer; leave out d_model, layers, heads, d_ff, vocab_size and tied_embeddings.")));
			if (!on_base && param_specs[i].applies == 'b')
				ereport(ERROR,
						(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
						 errmsg("training parameter \"%s\" needs a base", key),
						 errhint("LoRA adapters fine-tune an imported model: pass its name as base.")));
			return &param_specs[i];
		}
	ereport(ERROR,
			(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
			 errmsg("unknown training parameter \"%s\"", key),
			 errhint("See the list of parameters in the documentation of distill.train.")));
	return NULL;				/* not reached */
}

static void
param_type_error(const ParamSpec *spec, const char *expected)
{
	ereport(ERROR,
			(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
			 errmsg("training parameter \"%s\" must be %s", spec->key, expected),
			 errhint("docs/training.md lists every parameter with its type and range.")));
}

/* A JSON array of LoRA target names as their bits (lora.h). */
static void
set_targets_param(const ParamSpec *spec, unsigned *field, const JsonbValue *value)
{
	JsonbIterator *it;
	JsonbValue	elem;
	JsonbIteratorToken token;
	unsigned	targets = 0;

	if (value->type != jbvBinary || !JsonContainerIsArray(value->val.binary.data))
		param_type_error(spec, "an array of \"q\", \"k\", \"v\", \"o\", \"gate\", \"up\", \"down\"");
	it = JsonbIteratorInit(value->val.binary.data);
	while ((token = JsonbIteratorNext(&it, &elem, true)) != WJB_DONE)
	{
		unsigned	bit;

		if (token != WJB_ELEM)
			continue;
		bit = elem.type == jbvString
			? lora_target_from_name(pnstrdup(elem.val.string.val, elem.val.string.len)) : 0;
		if (bit == 0)
			param_type_error(spec, "an array of \"q\", \"k\", \"v\", \"o\", \"gate\", \"up\", \"down\"");
		targets |= bit;
	}
	*field = targets;
}

static void
set_metric_param(const ParamSpec *spec, AnswerMetric *field, const JsonbValue *value)
{
	if (value->type == jbvString)
		for (int i = 0; i < lengthof(metric_names); i++)
			if (strlen(metric_names[i]) == value->val.string.len &&
				memcmp(metric_names[i], value->val.string.val, value->val.string.len) == 0)
			{
				*field = (AnswerMetric) i;
				return;
			}
	param_type_error(spec, "\"exact\" or \"equation\"");
}

/* Store one JSON value into its field; ranges are the core's to check. */
static void
set_param(StudentParams *params, const ParamSpec *spec, const JsonbValue *value)
{
	char	   *field = (char *) params + spec->offset;
	double		number;

	if (spec->type == PARAM_BOOL)
	{
		if (value->type != jbvBool)
			param_type_error(spec, "true or false");
		*(bool *) field = value->val.boolean;
		return;
	}
	if (spec->type == PARAM_METRIC)
	{
		set_metric_param(spec, (AnswerMetric *) field, value);
		return;
	}
	if (spec->type == PARAM_TARGETS)
	{
		set_targets_param(spec, (unsigned *) field, value);
		return;
	}
	if (value->type != jbvNumeric)
		param_type_error(spec, "a number");
	number = DatumGetFloat8(DirectFunctionCall1(numeric_float8,
												NumericGetDatum(value->val.numeric)));
	if (spec->type == PARAM_FLOAT)
		*(double *) field = number;
	else if (number != floor(number) || number < (spec->type == PARAM_SEED ? 0 : INT_MIN) ||
			 number > (spec->type == PARAM_SEED ? 9007199254740992.0 : INT_MAX))
		param_type_error(spec, spec->type == PARAM_SEED ? "a non-negative integer" : "an integer");
	else if (spec->type == PARAM_SEED)
		*(uint64_t *) field = (uint64_t) number;
	else
		*(int *) field = (int) number;
}

static StudentParams
parse_params(Jsonb *json, bool on_base)
{
	StudentParams params;
	JsonbIterator *it;
	JsonbValue	value;
	JsonbIteratorToken token;
	bool		lr_given = false;

	if (on_base)
		student_params_default_for_base(&params);
	else
		student_params_default(&params);
	/*
	 * Unless memory_mb is given: the model's state and, beside it, the
	 * maintenance memory of an index build.
	 */
	params.memory_mb = 0;
	params.work_mem_mb = Max(16, maintenance_work_mem / 1024);
	if (!JB_ROOT_IS_OBJECT(json) || JB_ROOT_IS_SCALAR(json))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("training params must be a JSON object"),
				 errhint("For example: {\"d_model\": 128, \"epochs\": 5}.")));
	it = JsonbIteratorInit(&json->root);
	while ((token = JsonbIteratorNext(&it, &value, true)) != WJB_DONE)
	{
		const ParamSpec *spec;

		if (token != WJB_KEY)
			continue;
		spec = find_param(pnstrdup(value.val.string.val, value.val.string.len), on_base);
		JsonbIteratorNext(&it, &value, true);
		set_param(&params, spec, &value);
		lr_given |= spec->offset == offsetof(StudentParams, lr);
	}
	/* adapters learn from scratch, at a rate of their own */
	if (params.lora_rank > 0 && !lr_given)
		params.lr = 1e-3;
	if (params.lora_rank > 0 && params.lora_alpha == 0.0)
		params.lora_alpha = 2.0 * params.lora_rank;
	return params;
}

/* LoRA target bits as a JSON array of their names. */
static void
append_targets(StringInfo out, unsigned targets)
{
	const char *sep = "";

	appendStringInfoChar(out, '[');
	for (int t = 0; t < LORA_N_TARGETS; t++)
		if (targets & (1u << t))
		{
			appendStringInfo(out, "%s\"%s\"", sep, lora_target_name(1u << t));
			sep = ", ";
		}
	appendStringInfoChar(out, ']');
}

/*
 * Every hyperparameter in force, as JSON, for distill.models.params; on a
 * base, which version, and no architecture.
 */
static char *
params_json_text(const StudentParams *params, double rationale_weight,
				 const BaseVersion *base)
{
	StringInfoData out;

	initStringInfo(&out);
	appendStringInfo(&out, "{\"rationale_weight\": %.17g", rationale_weight);
	if (base != NULL)
		appendStringInfo(&out, ", \"base\": %s, \"base_version\": %d",
						 json_string(base->name), base->version);
	for (int i = 0; i < lengthof(param_specs); i++)
	{
		const ParamSpec *spec = &param_specs[i];
		const char *field = (const char *) params + spec->offset;

		if (spec->applies == (base != NULL ? 's' : 'b') ||
			(spec->applies == 'b' && params->lora_rank == 0 &&
			 spec->offset != offsetof(StudentParams, lora_rank)))
			continue;

		appendStringInfo(&out, ", \"%s\": ", spec->key);
		switch (spec->type)
		{
			case PARAM_INT:
				appendStringInfo(&out, "%d", *(const int *) field);
				break;
			case PARAM_FLOAT:
				appendStringInfo(&out, "%.17g", *(const double *) field);
				break;
			case PARAM_BOOL:
				appendStringInfoString(&out, *(const bool *) field ? "true" : "false");
				break;
			case PARAM_SEED:
				appendStringInfo(&out, UINT64_FORMAT, (uint64) *(const uint64_t *) field);
				break;
			case PARAM_METRIC:
				appendStringInfo(&out, "\"%s\"", metric_names[*(const AnswerMetric *) field]);
				break;
			case PARAM_TARGETS:
				append_targets(&out, *(const unsigned *) field);
				break;
		}
	}
	appendStringInfoChar(&out, '}');
	return out.data;
}

static void
log_progress(const JobRun *run, const NewVersion *version, const TrainProgress *p)
{
	Oid			argtypes[10] = {INT8OID, INT8OID, REGROLEOID, INT4OID, INT4OID,
	FLOAT8OID, FLOAT8OID, FLOAT8OID, FLOAT8OID, FLOAT8OID};
	Datum		values[10] = {
		Int64GetDatum(version->id), Int64GetDatum(run->id), ObjectIdGetDatum(version->owner),
		Int32GetDatum(p->step), Int32GetDatum(p->epoch),
		Float8GetDatum(p->label_loss), Float8GetDatum(p->rationale_loss),
		Float8GetDatum(p->lr), Float8GetDatum(p->val_accuracy),
		Float8GetDatum(p->tokens_per_second)
	};
	char		nulls[10] = "          ";

	/* NaN means "not measured": store NULL, which reads better in SQL. */
	for (int i = 5; i < 10; i++)
		if (isnan(DatumGetFloat8(values[i])))
			nulls[i] = 'n';
	if (run_sql_as_owner("INSERT INTO distill.training_log (model_id, job_id, owner, step, epoch,"
						 " label_loss, rationale_loss, lr, val_accuracy, tokens_per_second)"
						 " VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
						 10, argtypes, values, nulls, 0) != SPI_OK_INSERT)
		elog(ERROR, "could not insert into distill.training_log");
}

static char **
utf8_labels(const TaskDef *task)
{
	char	  **labels;

	if (task->labels == NULL)
		return NULL;
	labels = palloc(task->n_labels * sizeof(char *));
	for (int i = 0; i < task->n_labels; i++)
		labels[i] = to_utf8(task->labels[i]);
	return labels;
}

static void
trainer_release(void *trainer)
{
	trainer_free(trainer);
}

static void
student_release(void *student)
{
	student_free(student);
}

/* A training's checkpoints: where it saves them, what it resumes from. */
typedef struct Checkpoints
{
	StateFileId own;			/* this job's */
	bool		save;			/* at the end of each epoch but the last:
								 * background jobs only, whose rows
								 * outlive a failure */
	StateFileId from;			/* the checkpoint to resume from; job 0:
								 * none */
	bool		asked;			/* resume => true: one that does not fit is
								 * an error */
	bool		resumed;
	int			resumed_after;	/* epochs done then */
} Checkpoints;

/* The created_at and the arguments (as JSON text) of job. */
static TimestampTz
job_identity(int64 job, char **args)
{
	bool		isnull;
	TimestampTz created;

	if (run_sql_as_owner("SELECT created_at, args::text FROM distill.jobs WHERE id = $1",
						 1, (Oid[]) {INT8OID}, (Datum[]) {Int64GetDatum(job)}, NULL, 1)
		!= SPI_OK_SELECT || SPI_processed != 1)
		elog(ERROR, "job " INT64_FORMAT " vanished", job);
	created = DatumGetTimestampTz(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc,
												1, &isnull));
	*args = SPI_getvalue(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 2);
	return created;
}

/*
 * The checkpoint that resume => true goes on from: that of the newest
 * failed or cancelled training job of the calling role with the same
 * arguments (args, as distill.train builds them; resume aside) that left
 * one.  Raises when there is none.
 */
static StateFileId
resume_source(const char *args, const char *model)
{
	StateFileId found = {0};

	if (run_sql_as_owner("SELECT id, created_at FROM distill.jobs"
						 " WHERE kind = 'train' AND owner = $1 AND status IN ('failed', 'cancelled')"
						 "   AND args - 'resume' = distill._job_args('train', $2::jsonb) - 'resume'"
						 " ORDER BY id DESC",
						 2, (Oid[]) {REGROLEOID, TEXTOID},
						 (Datum[]) {ObjectIdGetDatum(GetUserId()), CStringGetTextDatum(args)},
						 NULL, 0) != SPI_OK_SELECT)
		elog(ERROR, "could not read distill.jobs");
	for (uint64 i = 0; i < SPI_processed; i++)
	{
		HeapTuple	tuple = SPI_tuptable->vals[i];
		bool		isnull;

		found.job = DatumGetInt64(SPI_getbinval(tuple, SPI_tuptable->tupdesc, 1, &isnull));
		found.created = DatumGetTimestampTz(SPI_getbinval(tuple, SPI_tuptable->tupdesc, 2, &isnull));
		if (state_file_exists(&found))
			return found;
	}
	ereport(ERROR,
			(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
			 errmsg("there is no checkpoint to resume the training of model \"%s\" from", model),
			 errdetail("No failed or cancelled training job of role %s with these arguments left one. A background training job saves one at the end of each epoch but the last, and removes it when it succeeds.",
					   GetUserNameFromId(GetUserId(), false)),
			 errhint("Run distill.train without resume => true to train from the beginning.")));
	return found;				/* not reached */
}

/*
 * Where this training saves its checkpoints, and which it resumes from: a
 * background job run again after its worker died goes on from its own;
 * resume => true, from the newest one of its arguments.
 */
static Checkpoints
plan_checkpoints(const JobRun *run, const TrainRequest *request)
{
	Checkpoints cp = {.save = run->background, .asked = request->resume};
	char	   *args;

	cp.own.job = run->id;
	cp.own.created = job_identity(run->id, &args);
	if (run->background && state_file_exists(&cp.own))
		cp.from = cp.own;
	else if (request->resume)
		cp.from = resume_source(args, request->model);
	return cp;
}

/*
 * Restore the trainer from cp->from.  A job's own checkpoint that does not
 * fit (the source returns other rows now) is dropped, with a warning, and
 * training starts over, unless resume => true asked for it.
 */
static void
resume_training(JobRun *run, Checkpoints *cp, StudentTrainer *trainer)
{
	CoreError	err;
	bool		own = cp->from.job == cp->own.job;

	if (!state_file_check(&cp->from, trainer, &err))
	{
		CHECK_FOR_INTERRUPTS();
		if (own && !cp->asked)
		{
			ereport(WARNING,
					(errmsg("training job " INT64_FORMAT " starts from the beginning", run->id),
					 errdetail("Its checkpoint cannot be resumed: %s.", err.message)));
			state_file_remove(cp->own.job);
			return;
		}
		ereport(ERROR,
				(errcode(core_error_code(&err)),
				 errmsg("cannot resume from the checkpoint of job " INT64_FORMAT ": %s",
						cp->from.job, err.message),
				 err.kind == CORE_ERR_INVALID_INPUT ?
				 errdetail("A resumed training must read the same rows, in the same order, with the same parameters and base as the one it goes on from.") : 0,
				 errhint("Run distill.train without resume => true to train from the beginning.")));
	}
	state_file_restore(&cp->from, trainer);
	cp->resumed = true;
	cp->resumed_after = trainer_epochs_done(trainer);
	if (!own && run->background)
		run->spent_checkpoint = cp->from.job;
	ereport(run->background ? LOG : NOTICE,
			(errmsg("resuming training after epoch %d from the checkpoint of job " INT64_FORMAT,
					cp->resumed_after, cp->from.job)));
}

/*
 * At the end of an epoch with more to come, save the checkpoint; the one
 * this training resumed from, if another job's, is then behind it.
 */
static void
save_checkpoint(JobRun *run, const Checkpoints *cp, const StudentTrainer *trainer)
{
	if (state_file_save(&cp->own, trainer) && run->spent_checkpoint != 0)
	{
		state_file_remove(run->spent_checkpoint);
		run->spent_checkpoint = 0;
	}
	CHECK_FOR_INTERRUPTS();
}

/*
 * How fast training goes, for the job's message.  The rate is measured
 * from the first unit of training work of this run, after the set-up
 * (loading, the tokenizer's training, tokenizing, a restore), over the
 * steps this run made, so validation and logging count as they come.
 */
typedef struct Pace
{
	TimestampTz started;		/* when this run began, set-up included */
	TimestampTz first_work;		/* when training work began */
	int			first_step;		/* steps done by then (a resumed run's) */
	int			epochs;
	double		label_loss;		/* of the last logged steps; NaN before */
	double		tokens_per_second;
} Pace;

/* Steps this run makes before it estimates the time left. */
#define ESTIMATE_MIN_STEPS 3

/* "45 s", "3 min 15 s", "2 h 5 min" */
static void
format_duration(char *buf, size_t len, double seconds)
{
	long		s = seconds > 0.0 ? (long) (seconds + 0.5) : 0;

	if (s < 60)
		snprintf(buf, len, "%ld s", s);
	else if (s < 3600)
		snprintf(buf, len, "%ld min %ld s", s / 60, s % 60);
	else
		snprintf(buf, len, "%ld h %ld min", s / 3600, s % 3600 / 60);
}

static double
seconds_since(TimestampTz from, TimestampTz now)
{
	return (double) (now - from) / USECS_PER_SEC;
}

/*
 * The job's message after a unit of work: where training stands, its loss
 * and speed, the time it took and the time left.  Called for every step:
 * everything is on the stack.
 */
static void
report_pace(JobRun *run, Pace *pace, TrainEvent event, const TrainProgress *p)
{
	TimestampTz now = GetCurrentTimestamp();
	int			steps = p->step - pace->first_step;
	char		loss[64] = "";
	char		elapsed[32];
	char		left[48];
	char		message[256];

	if (event == TRAIN_STEP)
	{
		pace->label_loss = p->label_loss;
		pace->tokens_per_second = p->tokens_per_second;
	}
	if (!isnan(pace->label_loss))
		snprintf(loss, sizeof(loss), ", label loss %.4f, %.0f tokens/s",
				 pace->label_loss, pace->tokens_per_second);
	format_duration(elapsed, sizeof(elapsed), seconds_since(pace->started, now));
	if (p->step >= p->total_steps)
		snprintf(left, sizeof(left), "finishing");
	else if (steps < ESTIMATE_MIN_STEPS)
		snprintf(left, sizeof(left), "estimating the time left");
	else
	{
		char		duration[32];

		format_duration(duration, sizeof(duration),
						seconds_since(pace->first_work, now) / steps * (p->total_steps - p->step));
		snprintf(left, sizeof(left), "about %s left", duration);
	}
	snprintf(message, sizeof(message), "train: epoch %d of %d%s, step %d of %d%s, %s elapsed, %s",
			 p->epoch, pace->epochs, p->validating ? ", validating" : "", p->step,
			 p->total_steps, loss, elapsed, left);
	job_progress(run, (double) p->step / Max(p->total_steps, 1), message);
}

/*
 * Train to the end, checking for interrupts between bounded units of work
 * (the core asks interrupt_pending() within them, from the tokenizer's
 * training on); returns the best student, under a guard in the current
 * memory context.
 */
static CoreGuard *
train_student(JobRun *run, const NewVersion *version, StudentParams *params,
			  CoreGuard *base, const TrainingSet *set, const TaskDef *task,
			  Checkpoints *cp, Pace *pace, const char **metrics)
{
	CoreError	err;
	const CoreError *failure;
	StopCheck	stop = {interrupt_pending, NULL};
	StudentTrainer *trainer;
	CoreGuard  *trainer_guard;
	CoreGuard  *student_guard;
	Student    *student;
	TrainProgress progress;
	TrainEvent	event;
	const ModelConfig *config;

	char	  **labels = utf8_labels(task);

	model_set_threads(distill_threads);
	if (base != NULL)
	{
		Student    *base_student = base->object;

		/* the trainer takes the base over, also when it fails */
		core_guard_detach(base);
		trainer = trainer_create_on_base(params, base_student, set->examples,
										 set->n_examples, (const char *const *) labels,
										 task->n_labels, &stop, &err);
	}
	else
		trainer = trainer_create(params, set->examples, set->n_examples,
								 (const char *const *) labels, task->n_labels,
								 &stop, &err);
	if (trainer == NULL)
	{
		CHECK_FOR_INTERRUPTS();
		ereport(ERROR,
				(errcode(core_error_code(&err)),
				 errmsg("cannot train: %s", err.message),
				 err.kind == CORE_ERR_LIMIT ?
				 errhint("Raise memory_mb in params (or maintenance_work_mem, when memory_mb is not given), or train a smaller model, or LoRA adapters on a base.") : 0));
	}
	trainer_guard = core_guard_new(trainer, trainer_release);
	if (cp->from.job != 0)
		resume_training(run, cp, trainer);

	pace->first_work = GetCurrentTimestamp();
	pace->first_step = trainer_steps_done(trainer);
	while ((event = trainer_advance(trainer, &progress)) != TRAIN_DONE)
	{
		CHECK_FOR_INTERRUPTS();
		/* saved before the epoch's row is logged: a logged epoch is saved */
		if (event == TRAIN_EPOCH && cp->save && progress.epoch < params->epochs)
			save_checkpoint(run, cp, trainer);
		if (event == TRAIN_STEP || event == TRAIN_EPOCH)
		{
			log_progress(run, version, &progress);
			job_commit(run);
		}
		/* a long training must not allocate per step: see report_pace() */
		report_pace(run, pace, event, &progress);
	}
	CHECK_FOR_INTERRUPTS();
	if ((failure = trainer_error(trainer)) != NULL)
		ereport(ERROR,
				(errcode(core_error_code(failure)),
				 errmsg("training stopped early: %s", failure->message),
				 failure->kind == CORE_ERR_NO_MEMORY || failure->kind == CORE_ERR_LIMIT ?
				 errhint("Give training more memory (params memory_mb, or maintenance_work_mem), a smaller model, or LoRA adapters on a base.") : 0));
	config = &trainer_model(trainer)->config;
	params->memory_mb = trainer_memory_mb(trainer);	/* the budget in force */
	*metrics = psprintf("{\"val_accuracy\": %s, \"best_epoch\": %d, \"steps\": %d,"
						" \"train_examples\": %d, \"validation_examples\": %d,"
						" \"rationale_examples\": %d, \"vocab_size\": %d, \"d_ff\": %d,"
						" \"micro_batch\": %d%s}",
						isnan(trainer_best_accuracy(trainer)) ? "null" :
						psprintf("%.6f", trainer_best_accuracy(trainer)),
						trainer_best_epoch(trainer), progress.step,
						trainer_train_examples(trainer),
						trainer_validation_examples(trainer),
						trainer_rationale_examples(trainer),
						config->vocab_size, config->d_ff,
						trainer_micro_batch_size(trainer),
						trainer_model(trainer)->lora == NULL ? "" :
						psprintf(", \"lora_params\": %zu",
								 trainer_model(trainer)->lora->n_params));
	/* NULL only when the Student struct cannot be allocated */
	student = trainer_take_best(trainer);
	if (student == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_OUT_OF_MEMORY),
				 errmsg("out of memory"),
				 errdetail("The trained student could not be handed over.")));
	student_guard = core_guard_new(student, student_release);
	core_guard_release(trainer_guard);
	return student_guard;
}

static Datum
labels_array(const TaskDef *task)
{
	Datum	   *elems = palloc(task->n_labels * sizeof(Datum));

	for (int i = 0; i < task->n_labels; i++)
		elems[i] = CStringGetTextDatum(task->labels[i]);
	return PointerGetDatum(construct_array(elems, task->n_labels, TEXTOID, -1, false, TYPALIGN_INT));
}

static void
require_argument(FunctionCallInfo fcinfo, int arg, const char *name)
{
	if (PG_ARGISNULL(arg))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("argument \"%s\" of distill.train must not be NULL", name)));
}

/* Check what can be checked before any work, so that a job fails early. */
static StudentParams
checked_params(const TrainRequest *request)
{
	StudentParams params;
	CoreError	err;
	TrainMethod method = parse_method(request->method);

	if (request->model[0] == '\0')
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("model name must not be empty")));
	if (request->base != NULL && request->base[0] == '\0')
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("base model name must not be empty"),
				 errhint("Pass NULL to train a student from scratch.")));
	/* whatever the method: it is written into the job's arguments as JSON */
	if (!isfinite(request->rationale_weight))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("rationale_weight must be a finite number, not %g",
						request->rationale_weight),
				 errhint("It is the weight of the rationale loss, between 0 and 100.")));
	params = parse_params(request->params, request->base != NULL);
	params.rationale_weight = method == METHOD_STEP_BY_STEP ? request->rationale_weight : 0.0;
	if (!student_params_validate(&params, &err))
		ereport(ERROR,
				(errcode(core_error_code(&err)),
				 errmsg("invalid training parameters: %s", err.message)));
	return params;
}

static void
base_release(void *student)
{
	student_free(student);
}

char *
run_training(JobRun *run, const TrainRequest *request)
{
	Pace		pace = {.started = GetCurrentTimestamp(), .label_loss = NAN};
	TrainMethod method = parse_method(request->method);
	StudentParams params = checked_params(request);
	TaskDef    *task = load_task(request->task);
	Checkpoints cp = plan_checkpoints(run, request);
	NewVersion	version = new_model_version(request->model);
	TrainingSet set = load_training_set(training_query(task->name, method, request->source),
										task, method);
	BaseVersion base = {0};
	CoreGuard  *base_guard = NULL;
	CoreGuard  *student_guard;
	ModelRow	row = {
		.task = task->name, .method = method_names[method],
		.labels = task->labels ? labels_array(task) : (Datum) 0
	};
	int			number;
	char	   *resumed = "";

	if (request->base != NULL)
		base_guard = core_guard_new(load_base_student(request->base, &base), base_release);
	row.base = request->base ? &base : NULL;
	cp.own.base_id = cp.from.base_id = base.id;
	pace.epochs = params.epochs;
	student_guard = train_student(run, &version, &params, base_guard, &set, task, &cp,
								  &pace, &row.metrics);
	row.params = params_json_text(&params, params.rationale_weight, row.base);
	number = store_model_version(&version, request->model, &row, student_guard->object,
								 NULL);
	core_guard_release(student_guard);
	if (cp.resumed && cp.from.job == run->id)
		resumed = psprintf(" (resumed after epoch %d)", cp.resumed_after);
	else if (cp.resumed)
		resumed = psprintf(" (resumed after epoch %d of job " INT64_FORMAT ")",
						   cp.resumed_after, cp.from.job);
	return psprintf("model \"%s\" version %d%s: %s", request->model, number, resumed,
					row.metrics);
}

Datum
distill_train(PG_FUNCTION_ARGS)
{
	static const char *const arg_names[] = {"model", "task", "method", NULL,
	"rationale_weight", "params", "background", NULL, "resume"};
	TrainRequest request;
	char	   *args;
	JobRun	   *run;
	char	   *summary;

	for (int i = 0; i < lengthof(arg_names); i++)
		if (arg_names[i] != NULL)
			require_argument(fcinfo, i, arg_names[i]);
	request.model = text_to_cstring(PG_GETARG_TEXT_PP(0));
	request.task = text_to_cstring(PG_GETARG_TEXT_PP(1));
	request.method = text_to_cstring(PG_GETARG_TEXT_PP(2));
	request.source = PG_ARGISNULL(3) ? NULL : text_to_cstring(PG_GETARG_TEXT_PP(3));
	request.rationale_weight = PG_GETARG_FLOAT8(4);
	request.params = PG_GETARG_JSONB_P(5);
	request.base = PG_ARGISNULL(7) ? NULL : text_to_cstring(PG_GETARG_TEXT_PP(7));
	request.resume = PG_GETARG_BOOL(8);
	checked_params(&request);
	args = psprintf("{\"model\": %s, \"task\": %s, \"method\": %s, \"source\": %s,"
					" \"rationale_weight\": %.17g, \"params\": %s, \"base\": %s,"
					" \"resume\": %s}",
					json_string(request.model), json_string(request.task),
					json_string(request.method),
					request.source ? json_string(request.source) : "null",
					request.rationale_weight,
					JsonbToCString(NULL, &request.params->root, VARSIZE(request.params)),
					request.base ? json_string(request.base) : "null",
					request.resume ? "true" : "false");
	if (PG_GETARG_BOOL(6))
	{
		/* refused now rather than when the job starts */
		SPI_connect();
		checked_model_owner(request.model);
		if (request.resume)
			(void) resume_source(args, request.model);
		SPI_finish();
		PG_RETURN_INT64(job_submit("train", args));
	}

	SPI_connect();
	run = job_start_here("train", args);
	summary = run_training(run, &request);
	job_finish(run, summary);
	ereport(NOTICE, (errmsg("trained %s", summary)));
	SPI_finish();
	PG_RETURN_INT64(run->id);
}
