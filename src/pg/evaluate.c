/*
 * evaluate.c - distill.evaluate(model, source, metric): how often the
 * student is right on a labelled query; at once, or as a job whose result
 * is a row of distill.evaluations.
 */
#include "postgres.h"

#include "access/htup_details.h"
#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "funcapi.h"
#include "miscadmin.h"
#include "utils/builtins.h"
#include "utils/json.h"
#include "utils/jsonb.h"
#include "utils/memutils.h"

#include "core/student.h"
#include "pg/glue.h"

/* Rows read from the source at a time. */
#define EVALUATE_BATCH_ROWS 1000

/* Per-label counts for precision and recall, when the model has a label set. */
typedef struct LabelCounts
{
	char	  **labels;
	int			n_labels;
	int64	   *predicted;		/* times predicted */
	int64	   *actual;			/* times it was the gold label */
	int64	   *correct;		/* both */
} LabelCounts;

static int
label_index(const LabelCounts *counts, const char *label)
{
	for (int i = 0; i < counts->n_labels; i++)
		if (strcmp(counts->labels[i], label) == 0)
			return i;
	return -1;
}

static void
count_label(LabelCounts *counts, const char *predicted, const char *gold)
{
	int			p = label_index(counts, predicted);
	int			g = label_index(counts, gold);

	if (p >= 0)
		counts->predicted[p]++;
	if (g >= 0)
		counts->actual[g]++;
	if (p >= 0 && p == g)
		counts->correct[p]++;
}

static Datum
per_label_jsonb(const LabelCounts *counts)
{
	StringInfoData json;

	initStringInfo(&json);
	appendStringInfoChar(&json, '{');
	for (int i = 0; i < counts->n_labels; i++)
	{
		if (i > 0)
			appendStringInfoString(&json, ", ");
		escape_json(&json, counts->labels[i]);
		appendStringInfo(&json, ": {\"precision\": %s, \"recall\": %s, \"support\": " INT64_FORMAT "}",
						 counts->predicted[i] ? psprintf("%.4f", (double) counts->correct[i] / counts->predicted[i]) : "null",
						 counts->actual[i] ? psprintf("%.4f", (double) counts->correct[i] / counts->actual[i]) : "null",
						 counts->actual[i]);
	}
	appendStringInfoChar(&json, '}');
	return DirectFunctionCall1(jsonb_in, CStringGetDatum(json.data));
}

/* Where the source's columns are; choices is 0 when there is none. */
typedef struct SourceColumns
{
	int			input;
	int			label;
	int			choices;
} SourceColumns;

/* Running totals. */
typedef struct Tally
{
	int64		n;
	int64		right;
	LabelCounts counts;
} Tally;

/*
 * Answer one row of the source and count it; what it allocates (its
 * values, candidates, the answer) goes in the current context, which the
 * caller resets after each row.
 */
static void
evaluate_row(const CachedModel *model, HeapTuple tuple, TupleDesc tupdesc,
			 const SourceColumns *cols, bool equation, Tally *tally)
{
	char	   *input = SPI_getvalue(tuple, tupdesc, cols->input);
	char	   *gold = SPI_getvalue(tuple, tupdesc, cols->label);
	char	  **choices = NULL;
	int			n_choices = 0;
	bool		isnull;
	char	   *predicted;

	if (input == NULL || gold == NULL)
		return;
	if (cols->choices > 0)
	{
		Datum		array = SPI_getbinval(tuple, tupdesc, cols->choices, &isnull);

		if (!isnull)
			choices = candidates_arg(DatumGetArrayTypeP(array), &n_choices);
	}
	predicted = predict_text(model, input, choices, n_choices);
	tally->n++;
	tally->right += answer_matches(equation ? METRIC_EQUATION : METRIC_EXACT, predicted, gold);
	if (tally->counts.labels != NULL)
		count_label(&tally->counts, predicted, gold);
}

static int
required_column(TupleDesc tupdesc, const char *name)
{
	int			col = SPI_fnumber(tupdesc, name);

	if (col <= 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("the evaluation source has no column \"%s\"", name),
				 errhint("The source returns input and label, and optionally choices (text[]); rename columns with AS.")));
	return col;
}

static SourceColumns
source_columns(TupleDesc tupdesc)
{
	SourceColumns cols;

	cols.input = required_column(tupdesc, "input");
	cols.label = required_column(tupdesc, "label");
	cols.choices = Max(SPI_fnumber(tupdesc, "choices"), 0);
	if (cols.choices > 0 && SPI_gettypeid(tupdesc, cols.choices) != TEXTARRAYOID)
		ereport(ERROR,
				(errcode(ERRCODE_DATATYPE_MISMATCH),
				 errmsg("the evaluation source's \"choices\" column must be text[]")));
	return cols;
}

/* The metric named; an error for any other name. */
static bool
is_equation_metric(const char *metric)
{
	if (strcmp(metric, "equation") == 0)
		return true;
	if (strcmp(metric, "exact") != 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("unknown evaluation metric \"%s\"", metric),
				 errhint("Use 'exact' (the answer equals the label) or 'equation' (arithmetic expressions of equal value).")));
	return false;
}

/* Count precision and recall per label when the answers come from the label set. */
static void
count_per_label(Tally *tally, const CachedModel *model)
{
	LabelCounts *counts = &tally->counts;

	counts->labels = model_label_set(model, &counts->n_labels);
	if (counts->labels == NULL)
		return;
	counts->predicted = palloc0(counts->n_labels * sizeof(int64));
	counts->actual = palloc0(counts->n_labels * sizeof(int64));
	counts->correct = palloc0(counts->n_labels * sizeof(int64));
}

/*
 * Answer every row of the source, a batch at a time; inside SPI.  A job
 * reports the rows done as its progress message (a source's length is not
 * known before it ends).
 */
static void
evaluate_source(const CachedModel *model, const char *query, bool equation,
				JobRun *run, Tally *tally)
{
	SourceCursor *cursor = open_source_cursor(query, "evaluation");
	MemoryContext row_memory = AllocSetContextCreate(CurrentMemoryContext, "distill.evaluate row",
													 ALLOCSET_DEFAULT_SIZES);
	uint64		n = fetch_source(cursor, EVALUATE_BATCH_ROWS);
	SourceColumns cols = source_columns(SPI_tuptable->tupdesc);

	if (cols.choices == 0 && !equation)
		count_per_label(tally, model);
	for (; n > 0; n = fetch_source(cursor, EVALUATE_BATCH_ROWS))
	{
		for (uint64 row = 0; row < SPI_processed; row++)
		{
			MemoryContext outer = MemoryContextSwitchTo(row_memory);

			CHECK_FOR_INTERRUPTS();
			evaluate_row(model, SPI_tuptable->vals[row], SPI_tuptable->tupdesc, &cols,
						 equation, tally);
			MemoryContextSwitchTo(outer);
			MemoryContextReset(row_memory);
		}
		SPI_freetuptable(SPI_tuptable);
		if (run != NULL)
		{
			char		message[64];

			snprintf(message, sizeof(message), INT64_FORMAT " rows evaluated", tally->n);
			job_progress(run, 0.0, message);
		}
	}
	close_source(cursor);
	MemoryContextDelete(row_memory);
}

/* n, accuracy (NULL over no row), per_label (NULL without a label set). */
static void
tally_values(const Tally *tally, Datum *values, bool *nulls)
{
	values[0] = Int64GetDatum(tally->n);
	values[1] = Float8GetDatum(tally->n > 0 ? (double) tally->right / tally->n : 0.0);
	nulls[0] = false;
	nulls[1] = tally->n == 0;
	nulls[2] = tally->counts.labels == NULL;
	values[2] = nulls[2] ? (Datum) 0 : per_label_jsonb(&tally->counts);
}

PG_FUNCTION_INFO_V1(distill_evaluate);

/* distill.evaluate(model, source, metric): the result at once. */
Datum
distill_evaluate(PG_FUNCTION_ARGS)
{
	char	   *model_name = text_to_cstring(PG_GETARG_TEXT_PP(0));
	char	   *query = text_to_cstring(PG_GETARG_TEXT_PP(1));
	bool		equation = is_equation_metric(text_to_cstring(PG_GETARG_TEXT_PP(2)));
	MemoryContext callerctx = CurrentMemoryContext;
	CachedModel *model = lookup_model(model_name);
	TupleDesc	tupdesc;
	Tally		tally = {0};
	Datum		values[3];
	bool		nulls[3];

	if (get_call_result_type(fcinfo, NULL, &tupdesc) != TYPEFUNC_COMPOSITE)
		elog(ERROR, "distill.evaluate must return a record");
	SPI_connect();
	evaluate_source(model, query, equation, NULL, &tally);
	MemoryContextSwitchTo(callerctx);
	tally_values(&tally, values, nulls);
	SPI_finish();
	PG_RETURN_DATUM(HeapTupleGetDatum(heap_form_tuple(BlessTupleDesc(tupdesc), values, nulls)));
}

/*
 * The work of an evaluation job: evaluate the deployed version of the
 * model and store the result in distill.evaluations, as the job's owner.
 */
char *
run_evaluation(JobRun *run, const char *model_name, const char *query, const char *metric)
{
	bool		equation = is_equation_metric(metric);
	CachedModel *model = lookup_model(model_name);
	Tally		tally = {0};
	Datum		values[9];
	bool		isnull[9] = {false};
	char		nulls[9];

	/* a background job commits as it goes; the cache must keep the model */
	hold_model(model, true);
	evaluate_source(model, query, equation, run, &tally);
	hold_model(model, false);

	values[0] = Int64GetDatum(run->id);
	values[1] = ObjectIdGetDatum(GetUserId());
	values[2] = CStringGetTextDatum(model_name);
	values[3] = Int32GetDatum(cached_model_version(model));
	values[4] = CStringGetTextDatum(query);
	values[5] = CStringGetTextDatum(metric);
	tally_values(&tally, values + 6, isnull + 6);
	for (int i = 0; i < lengthof(nulls); i++)
		nulls[i] = isnull[i] ? 'n' : ' ';
	if (run_sql_as_owner("INSERT INTO distill.evaluations (job_id, owner, model, version,"
						 " source, metric, n, accuracy, per_label)"
						 " VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
						 9, (Oid[]) {INT8OID, REGROLEOID, TEXTOID, INT4OID, TEXTOID,
							 TEXTOID, INT8OID, FLOAT8OID, JSONBOID},
						 values, nulls, 0) != SPI_OK_INSERT)
		elog(ERROR, "could not insert into distill.evaluations");
	if (tally.n == 0)
		return psprintf("model \"%s\" version %d: no row to evaluate",
						model_name, cached_model_version(model));
	return psprintf("model \"%s\" version %d: accuracy %.4f over " INT64_FORMAT " rows",
					model_name, cached_model_version(model),
					(double) tally.right / tally.n, tally.n);
}

PG_FUNCTION_INFO_V1(distill_evaluate_job);

/*
 * distill.evaluate(model, source, metric, background): the same as a job,
 * queued for a worker or run in this session; returns the job's id.
 */
Datum
distill_evaluate_job(PG_FUNCTION_ARGS)
{
	char	   *model_name = text_to_cstring(PG_GETARG_TEXT_PP(0));
	char	   *query = text_to_cstring(PG_GETARG_TEXT_PP(1));
	char	   *metric = text_to_cstring(PG_GETARG_TEXT_PP(2));
	char	   *args;
	JobRun	   *run;
	char	   *summary;

	(void) is_equation_metric(metric);
	args = psprintf("{\"model\": %s, \"source\": %s, \"metric\": %s}", json_string(model_name),
					json_string(query), json_string(metric));
	if (PG_GETARG_BOOL(3))
	{
		/* refused now rather than when the job starts */
		require_visible_model(model_name);
		PG_RETURN_INT64(job_submit("evaluate", args));
	}
	SPI_connect();
	run = job_start_here("evaluate", args);
	summary = run_evaluation(run, model_name, query, metric);
	job_finish(run, summary);
	ereport(NOTICE, (errmsg("evaluated %s", summary)));
	SPI_finish();
	PG_RETURN_INT64(run->id);
}
