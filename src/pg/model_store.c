/*
 * model_store.c - a model version's rows.
 *
 * distill.models holds a version's tokenizer and its weights' header
 * (student_save_header()); distill.model_chunks holds the weights' data in
 * pieces of MODEL_CHUNK_BYTES, written before the row (its foreign key is
 * deferred) since the header carries their checksum.  So a model of any
 * size stays within PostgreSQL's 1 GB cap on one value, is written a
 * piece at a time from the parameters, and loads a piece at a time into
 * them: neither needs a second copy of the weights.  Versions stored by
 * distill 0.1.0 and 0.2.0 hold the whole model in models.weights and have
 * no chunks; they load as they did.
 */
#include "postgres.h"

#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "miscadmin.h"
#include "utils/acl.h"
#include "utils/builtins.h"
#include "utils/memutils.h"

#include "core/crc32c.h"
#include "core/model_io.h"
#include "pg/glue.h"

/* 8 MB: few rows for a big model, little memory per piece. */
#define MODEL_CHUNK_BYTES ((size_t) 8 << 20)

bytea *
blob_to_bytea(void *blob, size_t len)
{
	bytea	   *result;

	if (blob == NULL)
		ereport(ERROR, (errcode(ERRCODE_OUT_OF_MEMORY), errmsg("out of memory")));
	result = palloc(VARHDRSZ + len);
	SET_VARSIZE(result, VARHDRSZ + len);
	memcpy(VARDATA(result), blob, len);
	free(blob);
	return result;
}

Oid
checked_model_owner(const char *name)
{
	Oid			owner = GetUserId();
	bool		isnull;

	if (run_sql_as_owner("SELECT owner::oid FROM distill.models WHERE name = $1 LIMIT 1",
						 1, (Oid[]) {TEXTOID}, (Datum[]) {CStringGetTextDatum(name)}, NULL, 1)
		!= SPI_OK_SELECT)
		elog(ERROR, "could not read distill.models");
	if (SPI_processed > 0)
		owner = DatumGetObjectId(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull));
	if (!has_privs_of_role(GetUserId(), owner))
		ereport(ERROR,
				(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
				 errmsg("model \"%s\" belongs to another role", name),
				 errhint("Choose another model name.")));
	return owner;
}

NewVersion
new_model_version(const char *name)
{
	NewVersion	version = {.owner = checked_model_owner(name)};
	bool		isnull;

	if (run_sql_as_owner("SELECT nextval('distill.models_id_seq')", 0, NULL, NULL, NULL, 1)
		!= SPI_OK_SELECT)
		elog(ERROR, "could not allocate a model id");
	version.id = DatumGetInt64(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull));
	return version;
}

static void
insert_chunk(int64 id, int32 seq, bytea *chunk)
{
	CHECK_FOR_INTERRUPTS();
	if (run_sql_as_owner("INSERT INTO distill.model_chunks (model_id, seq, data)"
						 " VALUES ($1, $2, $3)", 3,
						 (Oid[]) {INT8OID, INT4OID, BYTEAOID},
						 (Datum[]) {Int64GetDatum(id), Int32GetDatum(seq), PointerGetDatum(chunk)},
						 NULL, 0) != SPI_OK_INSERT)
		elog(ERROR, "could not insert into distill.model_chunks");
}

/*
 * Write the weights' data as chunks of model id; returns their CRC-32C.
 * One chunk's buffer at a time.
 */
static uint32
store_chunks(int64 id, const Model *model, const uint8_t *dtypes)
{
	uint64		total = model_data_bytes(model, dtypes);
	bytea	   *chunk = palloc(VARHDRSZ + Min(total, MODEL_CHUNK_BYTES));
	uint32		crc = 0;
	int32		seq = 0;

	for (uint64 offset = 0; offset < total; offset += MODEL_CHUNK_BYTES, seq++)
	{
		size_t		len = Min(total - offset, MODEL_CHUNK_BYTES);

		model_data_read(model, dtypes, offset, VARDATA(chunk), len);
		SET_VARSIZE(chunk, VARHDRSZ + len);
		crc = crc32c(crc, VARDATA(chunk), len);
		insert_chunk(id, seq, chunk);
	}
	pfree(chunk);
	return crc;
}

/* Write data[0, len) as chunks of model id. */
static void
store_blob_chunks(int64 id, const char *data, size_t len)
{
	bytea	   *chunk = palloc(VARHDRSZ + Min(len, MODEL_CHUNK_BYTES));
	int32		seq = 0;

	for (size_t offset = 0; offset < len; offset += MODEL_CHUNK_BYTES, seq++)
	{
		size_t		n = Min(len - offset, MODEL_CHUNK_BYTES);

		memcpy(VARDATA(chunk), data + offset, n);
		SET_VARSIZE(chunk, VARHDRSZ + n);
		insert_chunk(id, seq, chunk);
	}
	pfree(chunk);
}

/*
 * The weights of a student as chunks of model id, and their header
 * (malloc'd): all of them, or its LoRA adapters alone (over base).
 */
static void *
store_weights(int64 id, const Student *student, const uint8_t *dtypes,
			  const BaseVersion *base, size_t *header_len)
{
	void	   *header = NULL;
	void	   *adapters;
	size_t		len;

	if (!student_has_adapters(student))
		return student_save_header(student, dtypes,
								   store_chunks(id, student->model, dtypes), header_len);
	adapters = student_save_adapters(student, base->checksum, &header, header_len, &len);
	if (adapters == NULL)
		ereport(ERROR, (errcode(ERRCODE_OUT_OF_MEMORY), errmsg("out of memory")));
	PG_TRY();
	{
		store_blob_chunks(id, adapters, len);
	}
	PG_CATCH();
	{
		free(adapters);
		free(header);
		PG_RE_THROW();
	}
	PG_END_TRY();
	free(adapters);
	return header;
}

/*
 * Insert the model as the next version of its name.  The advisory lock
 * serializes concurrent stores of one name, so versions stay unique and
 * gapless, and the first version's owner is the owner of all.
 */
int
store_model_version(const NewVersion *version, const char *name,
					const ModelRow *row, const Student *student,
					const uint8_t *dtypes)
{
	size_t		tokenizer_len,
				header_len;
	void	   *tokenizer;
	void	   *header;
	Oid			argtypes[12] = {INT8OID, TEXTOID, TEXTOID, TEXTOID, TEXTOID,
	TEXTARRAYOID, INT8OID, BYTEAOID, BYTEAOID, TEXTOID, REGROLEOID, INT8OID};
	Datum		values[12];
	char		nulls[12] = "            ";
	bool		isnull;

	if (run_sql("SELECT pg_advisory_xact_lock(hashtext('distill.models'), hashtext($1))",
				1, &argtypes[1], (Datum[]) {CStringGetTextDatum(name)}, NULL, false, 0)
		!= SPI_OK_SELECT)
		elog(ERROR, "could not lock model name");
	header = store_weights(version->id, student, dtypes, row->base, &header_len);
	tokenizer = student_save_tokenizer(student, &tokenizer_len);
	values[0] = Int64GetDatum(version->id);
	values[1] = CStringGetTextDatum(name);
	values[2] = row->task ? CStringGetTextDatum(row->task) : (Datum) 0;
	values[3] = CStringGetTextDatum(row->method);
	values[4] = CStringGetTextDatum(row->params);
	values[5] = row->labels;
	values[6] = Int64GetDatum((int64) student->model->n_params);
	values[7] = PointerGetDatum(blob_to_bytea(tokenizer, tokenizer_len));
	values[8] = PointerGetDatum(blob_to_bytea(header, header_len));
	values[9] = CStringGetTextDatum(row->metrics);
	values[10] = ObjectIdGetDatum(checked_model_owner(name));
	values[11] = Int64GetDatum(student_has_adapters(student) ? row->base->id : 0);
	nulls[2] = row->task ? ' ' : 'n';
	nulls[5] = row->labels ? ' ' : 'n';
	nulls[11] = student_has_adapters(student) ? ' ' : 'n';
	if (run_sql_as_owner("INSERT INTO distill.models (id, name, version, task, method,"
						 " params, labels, n_params, tokenizer, weights, metrics, owner,"
						 " base_id)"
						 " VALUES ($1, $2, (SELECT coalesce(max(version), 0) + 1"
						 " FROM distill.models WHERE name = $2), $3, $4, $5::jsonb,"
						 " $6, $7, $8, $9, $10::jsonb, $11, $12) RETURNING version",
						 12, argtypes, values, nulls, 0) != SPI_OK_INSERT_RETURNING)
		elog(ERROR, "could not insert into distill.models");
	return DatumGetInt32(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull));
}

static void
loader_release(void *loader)
{
	student_loader_free(loader);
}

/*
 * Feed the chunks of model id to loader, in order, each read (and
 * detoasted) in a memory context of its own, reset after it.
 */
static void
feed_chunks(int64 id, StudentLoader *loader, const char *name, int version)
{
	MemoryContext caller = CurrentMemoryContext;
	MemoryContext piece = AllocSetContextCreate(caller, "distill model chunk",
												ALLOCSET_DEFAULT_SIZES);
	CoreError	err;

	for (int32 seq = 0;; seq++)
	{
		bool		isnull;
		bytea	   *chunk;

		CHECK_FOR_INTERRUPTS();
		if (run_sql("SELECT data FROM distill.model_chunks WHERE model_id = $1 AND seq = $2",
					2, (Oid[]) {INT8OID, INT4OID},
					(Datum[]) {Int64GetDatum(id), Int32GetDatum(seq)}, NULL, true, 1)
			!= SPI_OK_SELECT)
			elog(ERROR, "could not read distill.model_chunks");
		if (SPI_processed == 0)
			break;
		MemoryContextSwitchTo(piece);
		chunk = DatumGetByteaPP(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull));
		MemoryContextSwitchTo(caller);
		if (!student_load_feed(loader, VARDATA_ANY(chunk), VARSIZE_ANY_EXHDR(chunk), &err))
			ereport(ERROR,
					(errcode(core_error_code(&err)),
					 errmsg("model \"%s\" version %d cannot be loaded: %s", name, version,
							err.message),
					 errhint("Its rows in distill.models and distill.model_chunks are damaged or were not written by distill.")));
		SPI_freetuptable(SPI_tuptable);
		MemoryContextReset(piece);
	}
	MemoryContextDelete(piece);
}

/*
 * The student of a chunked version, malloc'd, for prediction or (trainable)
 * with its plain weights; NULL with err when it cannot be loaded (a chunk
 * that cannot be fed raises here).
 */
static Student *
load_chunked(int64 id, const char *name, int version, const bytea *tokenizer,
			 const bytea *weights, bool trainable, CoreError *err)
{
	StudentLoader *loader;
	CoreGuard  *guard;

	loader = student_load_begin(VARDATA_ANY(tokenizer), VARSIZE_ANY_EXHDR(tokenizer),
								VARDATA_ANY(weights), VARSIZE_ANY_EXHDR(weights), err);
	if (loader == NULL)
		return NULL;
	guard = core_guard_new(loader, loader_release);
	feed_chunks(id, loader, name, version);
	core_guard_detach(guard);
	return trainable ? student_load_finish_trainable(loader, err)
		: student_load_finish(loader, err);
}

/* Raise the error of a version that cannot be loaded. */
void
report_load_failure(const char *name, int version, const CoreError *err)
{
	ereport(ERROR,
			(errcode(core_error_code(err)),
			 errmsg("model \"%s\" version %d cannot be loaded: %s", name, version,
					err->message),
			 err->kind == CORE_ERR_CORRUPT ?
			 errhint("Its rows in distill.models and distill.model_chunks are damaged or were not written by distill; train or import the model again.") : 0));
}

/*
 * The chunks of model id as one malloc'd block of *len bytes (adapters:
 * megabytes, not a model).
 */
static char *
read_blob_chunks(int64 id, size_t *len)
{
	bool		isnull;
	Datum		total;
	char	   *blob;
	size_t		filled = 0;

	if (run_sql("SELECT sum(length(data))::int8 FROM distill.model_chunks WHERE model_id = $1",
				1, (Oid[]) {INT8OID}, (Datum[]) {Int64GetDatum(id)}, NULL, true, 1)
		!= SPI_OK_SELECT)
		elog(ERROR, "could not read distill.model_chunks");
	total = SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull);
	*len = isnull ? 0 : (size_t) DatumGetInt64(total);
	if ((blob = malloc(*len > 0 ? *len : 1)) == NULL)
		ereport(ERROR, (errcode(ERRCODE_OUT_OF_MEMORY), errmsg("out of memory")));
	for (int32 seq = 0; filled < *len; seq++)
	{
		bytea	   *chunk;

		CHECK_FOR_INTERRUPTS();
		if (run_sql("SELECT data FROM distill.model_chunks WHERE model_id = $1 AND seq = $2",
					2, (Oid[]) {INT8OID, INT4OID},
					(Datum[]) {Int64GetDatum(id), Int32GetDatum(seq)}, NULL, true, 1)
			!= SPI_OK_SELECT || SPI_processed == 0 ||
			(chunk = DatumGetByteaPP(SPI_getbinval(SPI_tuptable->vals[0],
												   SPI_tuptable->tupdesc, 1, &isnull)),
			 VARSIZE_ANY_EXHDR(chunk) > *len - filled))
			break;				/* a gap: what is read does not check out */
		memcpy(blob + filled, VARDATA_ANY(chunk), VARSIZE_ANY_EXHDR(chunk));
		filled += VARSIZE_ANY_EXHDR(chunk);
	}
	*len = filled;
	return blob;
}

static void
student_release(void *student)
{
	student_free(student);
}

/*
 * A student stored as LoRA adapters: its base version loaded with its
 * plain weights, the adapters applied and merged.  NULL with err.
 */
static Student *
load_with_adapters(int64 id, const char *name, int version, const bytea *weights,
				   CoreError *err)
{
	HeapTuple	row;
	TupleDesc	tupdesc;
	bool		isnull;
	int64		base_id;
	int			base_version;
	char	   *base_name;
	bytea	   *base_weights;
	CoreGuard  *base;
	char	   *adapters;
	size_t		len;
	Student    *student;

	if (run_sql("SELECT b.id, b.version, b.name, b.tokenizer, b.weights"
				" FROM distill.models m JOIN distill.models b ON b.id = m.base_id"
				" WHERE m.id = $1", 1, (Oid[]) {INT8OID}, (Datum[]) {Int64GetDatum(id)},
				NULL, true, 1) != SPI_OK_SELECT)
		elog(ERROR, "could not read distill.models");
	if (SPI_processed == 0)
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_OBJECT),
				 errmsg("model \"%s\" version %d cannot be loaded: its base is not there", name,
						version),
				 errdetail("Its weights are LoRA adapters over the version of an imported model that models.base_id names."),
				 errhint("The base must be visible to the role that predicts: it belongs to the model's owner.")));
	row = SPI_tuptable->vals[0];
	tupdesc = SPI_tuptable->tupdesc;
	base_id = DatumGetInt64(SPI_getbinval(row, tupdesc, 1, &isnull));
	base_version = DatumGetInt32(SPI_getbinval(row, tupdesc, 2, &isnull));
	base_name = TextDatumGetCString(SPI_getbinval(row, tupdesc, 3, &isnull));
	base_weights = DatumGetByteaPP(SPI_getbinval(row, tupdesc, 5, &isnull));
	base = core_guard_new(load_chunked(base_id, base_name, base_version,
									   DatumGetByteaPP(SPI_getbinval(row, tupdesc, 4, &isnull)),
									   base_weights, true, err),
						  student_release);
	if (base->object == NULL)
		return NULL;
	adapters = read_blob_chunks(id, &len);
	student = base->object;
	core_guard_detach(base);	/* student_apply_adapters() takes it over */
	student = student_apply_adapters(student, VARDATA_ANY(weights),
									 VARSIZE_ANY_EXHDR(weights), adapters, len,
									 student_weights_checksum(VARDATA_ANY(base_weights),
															  VARSIZE_ANY_EXHDR(base_weights)),
									 err);
	free(adapters);
	return student;
}

Student *
load_model_student(int64 id, const char *name, int version,
				   const bytea *tokenizer, const bytea *weights)
{
	CoreError	err;
	Student    *student;

	if (student_weights_are_adapters(VARDATA_ANY(weights), VARSIZE_ANY_EXHDR(weights)))
		student = load_with_adapters(id, name, version, weights, &err);
	else if (student_weights_chunked(VARDATA_ANY(weights), VARSIZE_ANY_EXHDR(weights)))
		student = load_chunked(id, name, version, tokenizer, weights, false, &err);
	else
		student = student_load(VARDATA_ANY(tokenizer), VARSIZE_ANY_EXHDR(tokenizer),
							   VARDATA_ANY(weights), VARSIZE_ANY_EXHDR(weights), &err);
	if (student == NULL)
		report_load_failure(name, version, &err);
	return student;
}

Student *
load_base_student(const char *name, BaseVersion *base)
{
	HeapTuple	row;
	TupleDesc	tupdesc;
	bool		isnull;
	bytea	   *tokenizer;
	bytea	   *weights;
	char	   *method;
	CoreError	err;
	Student    *student;

	if (run_sql("SELECT id, version, method, tokenizer, weights FROM distill.models"
				" WHERE name = $1 AND version = distill.deployed_version($1)",
				1, (Oid[]) {TEXTOID}, (Datum[]) {CStringGetTextDatum(name)}, NULL, true, 1)
		!= SPI_OK_SELECT)
		elog(ERROR, "could not read distill.models");
	if (SPI_processed == 0)
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_OBJECT),
				 errmsg("base model \"%s\" does not exist", name),
				 errhint("Import it with distill.import_model(); SELECT DISTINCT name FROM distill.models lists the models you can see.")));
	row = SPI_tuptable->vals[0];
	tupdesc = SPI_tuptable->tupdesc;
	base->name = name;
	base->id = DatumGetInt64(SPI_getbinval(row, tupdesc, 1, &isnull));
	base->version = DatumGetInt32(SPI_getbinval(row, tupdesc, 2, &isnull));
	method = TextDatumGetCString(SPI_getbinval(row, tupdesc, 3, &isnull));
	tokenizer = DatumGetByteaPP(SPI_getbinval(row, tupdesc, 4, &isnull));
	weights = DatumGetByteaPP(SPI_getbinval(row, tupdesc, 5, &isnull));
	base->checksum = student_weights_checksum(VARDATA_ANY(weights), VARSIZE_ANY_EXHDR(weights));
	if (strcmp(method, "imported") != 0 ||
		!student_weights_chunked(VARDATA_ANY(weights), VARSIZE_ANY_EXHDR(weights)))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("model \"%s\" is not an imported model", name),
				 errdetail("Version %d was made by distill.train (method \"%s\").",
						   base->version, method),
				 errhint("A base is a pretrained model imported with distill.import_model().")));
	student = load_chunked(base->id, name, base->version, tokenizer, weights, true, &err);
	if (student == NULL)
		report_load_failure(name, base->version, &err);
	return student;
}
