/*
 * evaluate.c - distill.evaluate(model, source, metric): how often the
 * student is right on a labelled query.
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

PG_FUNCTION_INFO_V1(distill_evaluate);

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

Datum
distill_evaluate(PG_FUNCTION_ARGS)
{
	char	   *model_name = text_to_cstring(PG_GETARG_TEXT_PP(0));
	char	   *query = text_to_cstring(PG_GETARG_TEXT_PP(1));
	char	   *metric = text_to_cstring(PG_GETARG_TEXT_PP(2));
	bool		equation = strcmp(metric, "equation") == 0;
	MemoryContext callerctx = CurrentMemoryContext;
	MemoryContext row_memory;
	CachedModel *model;
	TupleDesc	tupdesc;
	SourceColumns cols;
	Tally		tally = {0};
	LabelCounts *counts = &tally.counts;
	Datum		values[3];
	bool		nulls[3] = {false, false, true};

	if (!equation && strcmp(metric, "exact") != 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("unknown evaluation metric \"%s\"", metric),
				 errhint("Use 'exact' (the answer equals the label) or 'equation' (arithmetic expressions of equal value).")));
	model = lookup_model(model_name);

	SPI_connect();
	run_source_query(query, "evaluation");
	tupdesc = SPI_tuptable->tupdesc;
	cols.input = required_column(tupdesc, "input");
	cols.label = required_column(tupdesc, "label");
	cols.choices = Max(SPI_fnumber(tupdesc, "choices"), 0);
	if (cols.choices > 0 && SPI_gettypeid(tupdesc, cols.choices) != TEXTARRAYOID)
		ereport(ERROR,
				(errcode(ERRCODE_DATATYPE_MISMATCH),
				 errmsg("the evaluation source's \"choices\" column must be text[]")));
	if (cols.choices == 0 && !equation)
		counts->labels = model_label_set(model, &counts->n_labels);
	if (counts->labels != NULL)
	{
		counts->predicted = palloc0(counts->n_labels * sizeof(int64));
		counts->actual = palloc0(counts->n_labels * sizeof(int64));
		counts->correct = palloc0(counts->n_labels * sizeof(int64));
	}

	row_memory = AllocSetContextCreate(CurrentMemoryContext, "distill.evaluate row",
									   ALLOCSET_DEFAULT_SIZES);
	for (uint64 row = 0; row < SPI_processed; row++)
	{
		MemoryContext outer = MemoryContextSwitchTo(row_memory);

		CHECK_FOR_INTERRUPTS();
		evaluate_row(model, SPI_tuptable->vals[row], tupdesc, &cols, equation, &tally);
		MemoryContextSwitchTo(outer);
		MemoryContextReset(row_memory);
	}

	values[0] = Int64GetDatum(tally.n);
	values[1] = Float8GetDatum(tally.n > 0 ? (double) tally.right / tally.n : 0.0);
	nulls[1] = tally.n == 0;
	if (counts->labels != NULL)
	{
		MemoryContext spictx = MemoryContextSwitchTo(callerctx);

		values[2] = per_label_jsonb(counts);
		nulls[2] = false;
		MemoryContextSwitchTo(spictx);
	}
	SPI_finish();
	if (get_call_result_type(fcinfo, NULL, &tupdesc) != TYPEFUNC_COMPOSITE)
		elog(ERROR, "distill.evaluate must return a record");
	PG_RETURN_DATUM(HeapTupleGetDatum(heap_form_tuple(BlessTupleDesc(tupdesc), values, nulls)));
}
