/*
 * predict.c - distill_predict() and friends: the student inside queries.
 *
 * Models are cached per backend, keyed by distill.models.id, so a version
 * once loaded is immutable.  Each call site (FmgrInfo) looks up the
 * deployed version of its model once per query and keeps a pointer to the cache
 * entry in fn_extra; the rows after the first cost no catalog access.  An
 * entry used by the current transaction is never evicted, so those
 * pointers stay valid for the whole query.  The cache holds at most
 * distill.model_cache_mb of models: loading one evicts the least recently
 * used others while it is over, and the end of each transaction trims it
 * down to the bound, so a query that used many models holds them only
 * until it ends.  With distill.shared_models, a model's weights are a
 * file mapping that every backend shares (shared_models.c), and the cache
 * counts only what is the backend's own: its tokenizer and small tables.
 */
#include "postgres.h"

#include "access/xact.h"
#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "funcapi.h"
#include "miscadmin.h"
#include "storage/proc.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/hsearch.h"
#include "utils/json.h"
#include "utils/jsonb.h"
#include "utils/memutils.h"

#include "core/student.h"
#include "pg/glue.h"

struct CachedModel
{
	int64		id;				/* hash key */
	Student    *student;		/* malloc'd by the core */
	MemoryContext memory;		/* name and labels */
	char	   *name;
	int			version;
	char	  **labels;			/* NULL without a label set */
	int			n_labels;
	size_t		bytes;			/* the student's (not a shared image's), and
								 * memory's */
	uint64		last_used;		/* cache_clock when last looked up */
	LocalTransactionId used_in; /* the last transaction that used it */
	bool		held;			/* by a job, across its commits */
};

/* What a call site remembers between rows. */
typedef struct CallSite
{
	char	   *model_name;
	CachedModel *model;
} CallSite;

static HTAB *model_cache = NULL;
static size_t cached_bytes = 0;
static uint64 cache_clock = 0;

static void trim_at_transaction_end(XactEvent event, void *arg);

static HTAB *
cache(void)
{
	if (model_cache == NULL)
	{
		HASHCTL		ctl = {.keysize = sizeof(int64),.entrysize = sizeof(CachedModel)};

		model_cache = hash_create("distill models", 16, &ctl, HASH_ELEM | HASH_BLOBS);
		RegisterXactCallback(trim_at_transaction_end, NULL);
	}
	return model_cache;
}

static void
forget(CachedModel *entry)
{
	student_free(entry->student);
	MemoryContextDelete(entry->memory);
	cached_bytes -= entry->bytes;
	hash_search(cache(), &entry->id, HASH_REMOVE, NULL);
}

static size_t
cache_limit(void)
{
	return (size_t) distill_model_cache_mb << 20;
}

/*
 * Evict the least recently used entries while the cache is over
 * distill.model_cache_mb; not those the current transaction uses, while
 * keep_pinned (call sites of its queries point at them).
 */
static void
trim(bool keep_pinned)
{
	while (cached_bytes > cache_limit())
	{
		HASH_SEQ_STATUS scan;
		CachedModel *entry;
		CachedModel *oldest = NULL;

		hash_seq_init(&scan, cache());
		while ((entry = hash_seq_search(&scan)) != NULL)
			if (!entry->held && (!keep_pinned || entry->used_in != MyProc->lxid) &&
				(oldest == NULL || entry->last_used < oldest->last_used))
				oldest = entry;
		if (oldest == NULL)
			break;
		forget(oldest);
	}
}

/* After an error, no job holds a model any more (see hold_model). */
static void
release_held_models(void)
{
	HASH_SEQ_STATUS scan;
	CachedModel *entry;

	hash_seq_init(&scan, cache());
	while ((entry = hash_seq_search(&scan)) != NULL)
		entry->held = false;
}

static void
trim_at_transaction_end(XactEvent event, void *arg)
{
	if (event == XACT_EVENT_ABORT || event == XACT_EVENT_PARALLEL_ABORT)
		release_held_models();
	if (event == XACT_EVENT_COMMIT || event == XACT_EVENT_ABORT ||
		event == XACT_EVENT_PARALLEL_COMMIT || event == XACT_EVENT_PARALLEL_ABORT ||
		event == XACT_EVENT_PREPARE)
		trim(false);
}

/* The id of the version of a model that is deployed (distill.deploy). */
static int64
deployed_version_id(const char *name)
{
	Oid			argtype = TEXTOID;
	Datum		value = CStringGetTextDatum(name);
	bool		isnull;

	require_sql_version();
	if (run_sql("SELECT id FROM distill.models"
				" WHERE name = $1 AND version = distill.deployed_version($1)",
				1, &argtype, &value, NULL, true, 1) != SPI_OK_SELECT)
		elog(ERROR, "could not read distill.models");
	if (SPI_processed == 0)
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_OBJECT),
				 errmsg("model \"%s\" does not exist", name),
				 errhint("Train it with distill.train(); SELECT DISTINCT name FROM distill.models lists the existing ones.")));
	return DatumGetInt64(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull));
}

/* The label set, in the current memory context. */
static void
load_labels(CachedModel *entry, Datum array)
{
	Datum	   *elems;
	bool	   *nulls;
	int			n;

	deconstruct_array(DatumGetArrayTypeP(array), TEXTOID, -1, false, TYPALIGN_INT,
					  &elems, &nulls, &n);
	entry->labels = palloc(Max(n, 1) * sizeof(char *));
	for (int i = 0; i < n; i++)
		entry->labels[i] = TextDatumGetCString(elems[i]);
	entry->n_labels = n;
}

static void
student_release(void *student)
{
	student_free(student);
}

/*
 * Read a model version and deserialize it into a new cache entry.  Until
 * the entry is in the cache, its student is under a guard and its memory
 * a child of the current context, so that an error leaks neither.
 */
static CachedModel *
load_model(const char *name, int64 id)
{
	Oid			argtype = INT8OID;
	Datum		value = Int64GetDatum(id);
	HeapTuple	row;
	TupleDesc	tupdesc;
	bool		isnull;
	bytea	   *tokenizer;
	bytea	   *weights;
	bool		labels_null;
	Datum		labels;
	bool		template_null;
	Datum		template;
	CachedModel loaded = {.id = id};
	CoreGuard  *guard;
	MemoryContext caller = CurrentMemoryContext;
	CachedModel *entry;

	if (run_sql("SELECT tokenizer, weights, labels, version, params->>'prompt_template'"
				" FROM distill.models WHERE id = $1",
				1, &argtype, &value, NULL, true, 1) != SPI_OK_SELECT ||
		SPI_processed != 1)
		elog(ERROR, "model \"%s\" vanished while being loaded", name);
	row = SPI_tuptable->vals[0];
	tupdesc = SPI_tuptable->tupdesc;
	tokenizer = DatumGetByteaPP(SPI_getbinval(row, tupdesc, 1, &isnull));
	weights = DatumGetByteaPP(SPI_getbinval(row, tupdesc, 2, &isnull));
	labels = SPI_getbinval(row, tupdesc, 3, &labels_null);
	loaded.version = DatumGetInt32(SPI_getbinval(row, tupdesc, 4, &isnull));
	template = SPI_getbinval(row, tupdesc, 5, &template_null);

	loaded.student = distill_shared_models
		? load_shared_student(id, name, loaded.version, tokenizer, weights)
		: load_model_student(id, name, loaded.version, tokenizer, weights);
	guard = core_guard_new(loaded.student, student_release);
	loaded.student->stop.should_stop = interrupt_pending;
	if (!template_null &&
		(loaded.student->prompt_template = strdup(TextDatumGetCString(template))) == NULL)
		ereport(ERROR, (errcode(ERRCODE_OUT_OF_MEMORY), errmsg("out of memory")));

	loaded.memory = AllocSetContextCreate(caller, "distill cached model",
										  ALLOCSET_SMALL_SIZES);
	MemoryContextSwitchTo(loaded.memory);
	loaded.name = pstrdup(name);
	if (!labels_null)
		load_labels(&loaded, labels);
	MemoryContextSwitchTo(caller);
	loaded.bytes = student_memory_bytes(loaded.student) +
		MemoryContextMemAllocated(loaded.memory, true);

	entry = hash_search(cache(), &id, HASH_ENTER, NULL);
	*entry = loaded;
	MemoryContextSetParent(entry->memory, TopMemoryContext);
	core_guard_detach(guard);
	cached_bytes += entry->bytes;
	return entry;
}

/* The deployed version of a model, from the cache or the table. */
CachedModel *
lookup_model(const char *name)
{
	CachedModel *entry;
	int64		id;

	SPI_connect();
	id = deployed_version_id(name);
	entry = hash_search(cache(), &id, HASH_FIND, NULL);
	if (entry == NULL)
		entry = load_model(name, id);
	SPI_finish();
	entry->used_in = MyProc->lxid;
	entry->last_used = ++cache_clock;
	trim(true);
	model_set_threads(distill_threads);
	return entry;
}

/* The model for this row: looked up on the first row of each query. */
static CachedModel *
call_site_model(FunctionCallInfo fcinfo)
{
	CallSite   *site = fcinfo->flinfo->fn_extra;
	char	   *name = text_to_cstring(PG_GETARG_TEXT_PP(0));

	if (site == NULL)
	{
		site = MemoryContextAllocZero(fcinfo->flinfo->fn_mcxt, sizeof(CallSite));
		fcinfo->flinfo->fn_extra = site;
	}
	if (site->model == NULL || strcmp(site->model_name, name) != 0)
	{
		site->model = lookup_model(name);
		if (site->model_name)
			pfree(site->model_name);
		site->model_name = MemoryContextStrdup(fcinfo->flinfo->fn_mcxt, name);
	}
	return site->model;
}

/* The core failed; when it stopped for an interrupt, that is the error. */
static void
core_failure(const char *what, const CoreError *err)
{
	CHECK_FOR_INTERRUPTS();
	ereport(ERROR,
			(errcode(core_error_code(err)),
			 errmsg("%s failed: %s", what, err->message),
			 err->kind == CORE_ERR_CORRUPT ?
			 errhint("The model's weights cannot be used; train the model again.") : 0));
}

/*
 * Drop the repeats of a candidate, keeping the first of each in order, so
 * that every distinct answer is scored once and probabilities sum to 1.
 * Quadratic, but n is at most STUDENT_MAX_CANDIDATES and scoring each
 * candidate costs a forward pass of the student.
 */
static int
distinct_candidates(char **candidates, int n)
{
	int			kept = 0;

	for (int i = 0; i < n; i++)
	{
		bool		repeat = false;

		for (int j = 0; j < kept && !repeat; j++)
			repeat = strcmp(candidates[j], candidates[i]) == 0;
		if (!repeat)
			candidates[kept++] = candidates[i];
	}
	return kept;
}

/* A text[] of candidates as distinct C strings; no NULLs, at least one. */
char **
candidates_arg(ArrayType *array, int *n)
{
	Datum	   *elems;
	bool	   *nulls;
	char	  **candidates;

	if (ARR_NDIM(array) > 1)
		ereport(ERROR,
				(errcode(ERRCODE_ARRAY_SUBSCRIPT_ERROR),
				 errmsg("candidates must be a one-dimensional array")));
	if (ArrayGetNItems(ARR_NDIM(array), ARR_DIMS(array)) > STUDENT_MAX_CANDIDATES)
		ereport(ERROR,
				(errcode(ERRCODE_PROGRAM_LIMIT_EXCEEDED),
				 errmsg("too many candidates: %d",
						ArrayGetNItems(ARR_NDIM(array), ARR_DIMS(array))),
				 errdetail("A prediction scores at most %d candidates.", STUDENT_MAX_CANDIDATES),
				 errhint("To choose among more, choose in rounds: the best of each thousand, then the best of those.")));
	deconstruct_array(array, TEXTOID, -1, false, TYPALIGN_INT, &elems, &nulls, n);
	if (*n == 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("candidates must not be empty"),
				 errhint("Pass the answers to choose among, like ARRAY['yes', 'no'].")));
	candidates = palloc(*n * sizeof(char *));
	for (int i = 0; i < *n; i++)
	{
		if (nulls[i])
			ereport(ERROR,
					(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
					 errmsg("candidates must not contain NULL")));
		candidates[i] = TextDatumGetCString(elems[i]);
	}
	*n = distinct_candidates(candidates, *n);
	return candidates;
}

/* The model's label set, or an error when it has none. */
static char **
model_labels(const CachedModel *model, const char *name, int *n)
{
	if (model->labels == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("model \"%s\" has no label set to choose from", name),
				 errhint("Pass candidates: distill_predict_proba(model, input, ARRAY[...]).")));
	*n = model->n_labels;
	return model->labels;
}

int
cached_model_version(const CachedModel *model)
{
	return model->version;
}

/*
 * A background job commits as it goes, and the end of each transaction
 * trims the cache: a model held stays, whatever the cache's bound, until
 * it is let go or a transaction aborts.
 */
void
hold_model(CachedModel *model, bool held)
{
	model->held = held;
}

/* An error unless the caller sees a model of this name. */
void
require_visible_model(const char *name)
{
	SPI_connect();
	(void) deployed_version_id(name);
	SPI_finish();
}

/* The model's label set, NULL when it has none. */
char **
model_label_set(const CachedModel *model, int *n_labels)
{
	*n_labels = model->n_labels;
	return model->labels;
}

/* Score the candidates; returns the best one's index, fills probs if given. */
static int
choose(const CachedModel *model, const char *input, char **candidates, int n,
	   double *probs)
{
	CoreError	err;
	char	  **utf8 = palloc(n * sizeof(char *));
	int			best;

	for (int i = 0; i < n; i++)
		utf8[i] = to_utf8(candidates[i]);
	best = student_choose(model->student, to_utf8(input), (const char *const *) utf8,
						  n, probs, &err);

	if (best < 0)
		core_failure("scoring the candidates", &err);
	return best;
}

static text *
generate(const CachedModel *model, const char *task, const char *input)
{
	CoreError	err;
	char	   *output = student_generate(model->student, task, to_utf8(input),
										  &err);
	text	   *result;

	if (output == NULL)
		core_failure("decoding", &err);
	PG_TRY();
	{
		result = cstring_to_text(from_utf8(output));
	}
	PG_FINALLY();
	{
		free(output);
	}
	PG_END_TRY();
	return result;
}

/* probs are finite: student_choose() fails rather than give NaN. */
static Datum
probabilities_jsonb(char **candidates, int n, const double *probs)
{
	StringInfoData json;

	initStringInfo(&json);
	appendStringInfoChar(&json, '{');
	for (int i = 0; i < n; i++)
	{
		if (i > 0)
			appendStringInfoString(&json, ", ");
		escape_json(&json, candidates[i]);
		appendStringInfo(&json, ": %.6g", probs[i]);
	}
	appendStringInfoChar(&json, '}');
	return DirectFunctionCall1(jsonb_in, CStringGetDatum(json.data));
}

/*
 * The student's answer: the best of the candidates when there are any, else
 * of the model's label set, else free text.
 */
char *
predict_text(const CachedModel *model, const char *input, char **candidates, int n)
{
	text	   *answer;

	if (candidates != NULL)
		return pstrdup(candidates[choose(model, input, candidates, n, NULL)]);
	if (model->labels != NULL)
		return pstrdup(model->labels[choose(model, input, model->labels,
											model->n_labels, NULL)]);
	answer = generate(model, "predict", input);
	return text_to_cstring(answer);
}

PG_FUNCTION_INFO_V1(distill_predict);

/* distill_predict(model, input): a label of the label set, else free text. */
Datum
distill_predict(PG_FUNCTION_ARGS)
{
	CachedModel *model = call_site_model(fcinfo);
	char	   *input = text_to_cstring(PG_GETARG_TEXT_PP(1));

	PG_RETURN_TEXT_P(cstring_to_text(predict_text(model, input, NULL, 0)));
}

PG_FUNCTION_INFO_V1(distill_predict_choice);

/* distill_predict(model, input, candidates): the most likely candidate. */
Datum
distill_predict_choice(PG_FUNCTION_ARGS)
{
	CachedModel *model = call_site_model(fcinfo);
	char	   *input = text_to_cstring(PG_GETARG_TEXT_PP(1));
	int			n;
	char	  **candidates = candidates_arg(PG_GETARG_ARRAYTYPE_P(2), &n);

	PG_RETURN_TEXT_P(cstring_to_text(predict_text(model, input, candidates, n)));
}

PG_FUNCTION_INFO_V1(distill_predict_proba);

/* distill_predict_proba(model, input): {label: probability} over the label set. */
Datum
distill_predict_proba(PG_FUNCTION_ARGS)
{
	CachedModel *model = call_site_model(fcinfo);
	char	   *input = text_to_cstring(PG_GETARG_TEXT_PP(1));
	int			n;
	char	  **labels = model_labels(model, text_to_cstring(PG_GETARG_TEXT_PP(0)), &n);
	double	   *probs = palloc(n * sizeof(double));

	choose(model, input, labels, n, probs);
	return probabilities_jsonb(labels, n, probs);
}

PG_FUNCTION_INFO_V1(distill_predict_proba_choice);

/* distill_predict_proba(model, input, candidates): {candidate: probability}. */
Datum
distill_predict_proba_choice(PG_FUNCTION_ARGS)
{
	CachedModel *model = call_site_model(fcinfo);
	char	   *input = text_to_cstring(PG_GETARG_TEXT_PP(1));
	int			n;
	char	  **candidates = candidates_arg(PG_GETARG_ARRAYTYPE_P(2), &n);
	double	   *probs = palloc(n * sizeof(double));

	choose(model, input, candidates, n, probs);
	return probabilities_jsonb(candidates, n, probs);
}

PG_FUNCTION_INFO_V1(distill_explain);

/* distill_explain(model, input): the student's own rationale. */
Datum
distill_explain(PG_FUNCTION_ARGS)
{
	CachedModel *model = call_site_model(fcinfo);

	if (model->student->zero_shot)
		ereport(ERROR,
				(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
				 errmsg("model \"%s\" is an imported base model, which was not taught to explain",
						model->name),
				 errhint("Use distill.generate(model, prompt) with a prompt that asks for an explanation.")));

	PG_RETURN_TEXT_P(generate(model, "explain", text_to_cstring(PG_GETARG_TEXT_PP(1))));
}

PG_FUNCTION_INFO_V1(distill_tokenize);

/*
 * distill.tokenize(model, input, task): the tokens the model reads for
 * input, as text; see student_token_text().
 */
Datum
distill_tokenize(PG_FUNCTION_ARGS)
{
	CachedModel *model = call_site_model(fcinfo);
	char	   *input = to_utf8(text_to_cstring(PG_GETARG_TEXT_PP(1)));
	char	   *task = text_to_cstring(PG_GETARG_TEXT_PP(2));
	CoreError	err;
	int32_t    *ids;
	int			n;
	Datum	   *tokens;

	if (strcmp(task, "predict") != 0 && strcmp(task, "explain") != 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("unknown task \"%s\"", task),
				 errhint("Use 'predict' (the prefix that answers) or 'explain' (the one that writes a rationale).")));
	n = student_prefix_tokens(model->student, task, input, &ids, &err);
	if (n < 0)
		core_failure("tokenizing", &err);
	tokens = palloc(n * sizeof(Datum));
	PG_TRY();
	{
		for (int i = 0; i < n; i++)
		{
			char	   *piece = student_token_text(model->student, ids[i]);
			char	   *copy;

			if (piece == NULL)
				ereport(ERROR, (errcode(ERRCODE_OUT_OF_MEMORY), errmsg("out of memory")));
			copy = pstrdup(piece);
			free(piece);
			tokens[i] = CStringGetTextDatum(from_utf8(copy));
		}
	}
	PG_FINALLY();
	{
		free(ids);
	}
	PG_END_TRY();
	PG_RETURN_ARRAYTYPE_P(construct_array(tokens, n, TEXTOID, -1, false, TYPALIGN_INT));
}

PG_FUNCTION_INFO_V1(distill_model_cache);

/*
 * distill.model_cache(): the models this backend holds, their memory, and
 * whether the current transaction uses them (then they stay until it ends).
 */
Datum
distill_model_cache(PG_FUNCTION_ARGS)
{
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	HASH_SEQ_STATUS scan;
	CachedModel *entry;

	InitMaterializedSRF(fcinfo, 0);
	hash_seq_init(&scan, cache());
	while ((entry = hash_seq_search(&scan)) != NULL)
	{
		Datum		values[4] = {
			CStringGetTextDatum(entry->name), Int32GetDatum(entry->version),
			Int64GetDatum((int64) entry->bytes),
			BoolGetDatum(entry->used_in == MyProc->lxid)
		};
		bool		nulls[4] = {false, false, false, false};

		tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, values, nulls);
	}
	return (Datum) 0;
}

PG_FUNCTION_INFO_V1(distill_generate);

/* distill.generate(model, prompt, max_tokens): the greedy continuation. */
Datum
distill_generate(PG_FUNCTION_ARGS)
{
	CachedModel *model = call_site_model(fcinfo);
	char	   *prompt = to_utf8(text_to_cstring(PG_GETARG_TEXT_PP(1)));
	int32		max_tokens = PG_GETARG_INT32(2);
	CoreError	err;
	char	   *output;
	text	   *result;

	if (max_tokens < 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("max_tokens must not be negative, not %d", max_tokens),
				 errhint("It is the most tokens to generate after the prompt.")));
	output = student_continue(model->student, prompt, max_tokens, &err);
	if (output == NULL)
		core_failure("generating", &err);
	PG_TRY();
	{
		result = cstring_to_text(from_utf8(output));
	}
	PG_FINALLY();
	{
		free(output);
	}
	PG_END_TRY();
	PG_RETURN_TEXT_P(result);
}

PG_FUNCTION_INFO_V1(distill_token_ids);

/* distill.token_ids(model, input): the ids of input, no special tokens. */
Datum
distill_token_ids(PG_FUNCTION_ARGS)
{
	CachedModel *model = call_site_model(fcinfo);
	char	   *input = to_utf8(text_to_cstring(PG_GETARG_TEXT_PP(1)));
	CoreError	err;
	int32_t    *ids;
	int			n = student_token_ids(model->student, input, &ids, &err);
	Datum	   *elems;

	if (n < 0)
		core_failure("tokenizing", &err);
	elems = palloc((n + 1) * sizeof(Datum));
	for (int i = 0; i < n; i++)
		elems[i] = Int32GetDatum(ids[i]);
	free(ids);
	PG_RETURN_ARRAYTYPE_P(construct_array(elems, n, INT4OID, sizeof(int32), true, TYPALIGN_INT));
}
