/*
 * import.c - distill.import_model(): a pretrained checkpoint as a new
 * version of a model.
 *
 * The checkpoint comes from the server's file system (a Hugging Face
 * directory, a GGUF file, a llama2.c .bin and its tokenizer), which, as
 * for COPY FROM a file, only superusers and members of
 * pg_read_server_files may read; or from bytea arguments (GGUF, llama2.c),
 * which any distill user may pass.  Files are mapped read-only, so the
 * only copy of the weights in memory is the model the core builds from
 * them; every file the core opens is hashed (SHA-256) into the version's
 * metrics, so a user can tell which file a model came from.
 */
#include "postgres.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "catalog/pg_authid.h"
#include "common/cryptohash.h"
#include "common/sha2.h"
#include "executor/spi.h"
#include "lib/stringinfo.h"
#include "miscadmin.h"
#include "storage/fd.h"
#include "utils/acl.h"
#include "utils/builtins.h"
#include "utils/json.h"
#include "utils/jsonb.h"
#include "utils/memutils.h"

#include "core/checkpoint.h"
#include "core/tokenizer_pretrained.h"
#include "pg/glue.h"

PG_FUNCTION_INFO_V1(distill_import_model);
PG_FUNCTION_INFO_V1(distill_import_model_bytes);

/* Where the checkpoint's files come from. */
typedef struct ImportSource
{
	const char *path;			/* the file or directory; NULL for bytes */
	const char *tokenizer_path; /* llama2.c's tokenizer.bin; NULL: beside */
	const bytea *data;			/* the weights file's bytes */
	const bytea *tokenizer;		/* llama2.c's tokenizer.bin's bytes */
	List	   *opened;			/* OpenedFile, each file the core asked for */
	char		problem[256];	/* why the last open failed, for the hint */
} ImportSource;

typedef struct OpenedFile
{
	char	   *name;			/* as the core asked for it */
	char	   *path;			/* NULL for bytes */
	const void *data;
	size_t		len;
	bool		mapped;
} OpenedFile;

static const char *const format_names[] = {"auto", "hf", "gguf", "llama2c"};

static CheckpointFormat
parse_format(const char *name)
{
	for (int i = 0; i < lengthof(format_names); i++)
		if (strcmp(name, format_names[i]) == 0)
			return (CheckpointFormat) i;
	ereport(ERROR,
			(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
			 errmsg("unknown checkpoint format \"%s\"", name),
			 errhint("Use 'auto' (from the path or the bytes), 'hf' (a Hugging Face directory), 'gguf' or 'llama2c'.")));
	return CHECKPOINT_AUTO;		/* not reached */
}

/* Unmap what was mapped, when the import ends or fails. */
static void
unmap_files(void *arg)
{
	ImportSource *source = arg;
	ListCell   *cell;

	foreach(cell, source->opened)
	{
		OpenedFile *file = lfirst(cell);

		if (file->mapped && file->len > 0)
			munmap((void *) file->data, file->len);
		file->mapped = false;
	}
}

/*
 * Map path read-only into *data; false with the reason in problem.  An
 * empty file has no mapping: its data is "".
 */
static bool
map_file(const char *path, const void **data, size_t *len, char *problem,
		 size_t problem_len)
{
	int			fd = open(path, O_RDONLY | O_CLOEXEC);
	struct stat st;
	void	   *map;

	if (fd < 0)
	{
		snprintf(problem, problem_len, "could not open \"%s\": %m", path);
		return false;
	}
	if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode))
	{
		snprintf(problem, problem_len, "\"%s\" is not a regular file", path);
		close(fd);
		return false;
	}
	*len = (size_t) st.st_size;
	map = *len > 0 ? mmap(NULL, *len, PROT_READ, MAP_PRIVATE, fd, 0) : (void *) "";
	close(fd);
	if (map == MAP_FAILED)
	{
		snprintf(problem, problem_len, "could not map \"%s\": %m", path);
		return false;
	}
	*data = map;
	return true;
}

/* The path of file `name` of the checkpoint, or NULL when it cannot be one. */
static char *
file_path(const ImportSource *source, const char *name)
{
	if (name[0] == '\0')
		return pstrdup(source->path);
	if (strcmp(name, "tokenizer") == 0)
	{
		char	   *dir;

		if (source->tokenizer_path)
			return pstrdup(source->tokenizer_path);
		dir = pstrdup(source->path);
		get_parent_directory(dir);
		return psprintf("%s/tokenizer.bin", dir[0] ? dir : ".");
	}
	/* a name from the checkpoint's own index must stay inside its directory */
	if (strchr(name, '/') != NULL || strcmp(name, "..") == 0 || strcmp(name, ".") == 0)
		return NULL;
	return psprintf("%s/%s", source->path, name);
}

/* The bytes of file `name` from the bytea arguments. */
static bool
bytes_of(const ImportSource *source, const char *name, const void **data, size_t *len)
{
	const bytea *value = name[0] == '\0' ? source->data
		: strcmp(name, "tokenizer") == 0 ? source->tokenizer : NULL;

	if (value == NULL)
		return false;
	*data = VARDATA_ANY(value);
	*len = VARSIZE_ANY_EXHDR(value);
	return true;
}

/*
 * CheckpointFiles.open, called by the core: it allocates only a few small
 * pieces in the import's memory context and raises nothing else, so the
 * core's own memory is never left behind by an error.
 */
static const void *
open_checkpoint_file(void *ctx, const char *name, bool required, size_t *len,
					 CoreError *err)
{
	ImportSource *source = ctx;
	OpenedFile *file = palloc0(sizeof(OpenedFile));
	struct stat st;

	file->name = pstrdup(name);
	if (source->path == NULL)
	{
		if (!bytes_of(source, name, &file->data, &file->len))
		{
			core_error(err, required ? CORE_ERR_INVALID_INPUT : CORE_OK,
					   "the checkpoint needs its %s, which was not given",
					   name[0] ? name : "weights");
			return NULL;
		}
	}
	else if ((file->path = file_path(source, name)) == NULL)
	{
		core_error(err, CORE_ERR_INVALID_INPUT,
				   "the checkpoint names a file outside its directory: \"%s\"", name);
		return NULL;
	}
	else if (!required && stat(file->path, &st) != 0)
	{
		core_error(err, CORE_OK, "no %s", name);
		return NULL;
	}
	else if (!map_file(file->path, &file->data, &file->len, source->problem,
					   sizeof(source->problem)))
	{
		core_error(err, CORE_ERR_INVALID_INPUT, "%s", source->problem);
		return NULL;
	}
	else
		file->mapped = true;
	source->opened = lappend(source->opened, file);
	*len = file->len;
	return file->data;
}

/*
 * CheckpointFiles.done_with: the pages of a mapped file that hold a
 * converted tensor leave this process (they stay in the page cache, and
 * would be read in again if touched), so that an import holds the weights
 * once: as the model it builds.
 */
static void
drop_pages(void *ctx, const void *data, size_t len)
{
	ImportSource *source = ctx;
	uintptr_t	page = (uintptr_t) sysconf(_SC_PAGESIZE);
	uintptr_t	begin = ((uintptr_t) data + page - 1) & ~(page - 1);
	uintptr_t	end = ((uintptr_t) data + len) & ~(page - 1);

	if (source->path != NULL && end > begin)
		(void) madvise((void *) begin, end - begin, MADV_DONTNEED);
}

/*
 * SHA-256 of a file as hex.  A mapped file is read in pieces rather than
 * through its mapping, which would bring it all back into this process
 * (as a transient file, which an error closes).
 */
static char *
sha256_hex(const OpenedFile *file)
{
	pg_cryptohash_ctx *ctx = pg_cryptohash_create(PG_SHA256);
	uint8		digest[PG_SHA256_DIGEST_LENGTH];
	char	   *hex = palloc(2 * PG_SHA256_DIGEST_LENGTH + 1);
	size_t		piece = (size_t) 1 << 20;
	char	   *buf = file->mapped ? palloc(piece) : NULL;
	int			fd = file->mapped ? OpenTransientFile(file->path, O_RDONLY | PG_BINARY) : -1;

	if (pg_cryptohash_init(ctx) < 0 || (file->mapped && fd < 0))
		elog(ERROR, "could not hash \"%s\": %m", file->name);
	for (size_t done = 0; done < file->len;)
	{
		const uint8 *data = (const uint8 *) file->data + done;
		ssize_t		n = Min(file->len - done, piece);

		CHECK_FOR_INTERRUPTS();
		if (file->mapped && (n = read(fd, buf, n)) <= 0)
			elog(ERROR, "could not read \"%s\": %m", file->path);
		if (pg_cryptohash_update(ctx, file->mapped ? (const uint8 *) buf : data, n) < 0)
			elog(ERROR, "could not hash: %s", pg_cryptohash_error(ctx));
		done += n;
	}
	if (fd >= 0)
		CloseTransientFile(fd);
	if (pg_cryptohash_final(ctx, digest, sizeof(digest)) < 0)
		elog(ERROR, "could not hash: %s", pg_cryptohash_error(ctx));
	pg_cryptohash_free(ctx);
	hex_encode((const char *) digest, sizeof(digest), hex);
	hex[2 * PG_SHA256_DIGEST_LENGTH] = '\0';
	return hex;
}

/* The version's metrics: what the checkpoint was and where it came from. */
static char *
checkpoint_metrics(const Checkpoint *ckpt, const Student *student,
				   const ImportSource *source)
{
	const ModelConfig *c = &student->model->config;
	StringInfoData json;
	ListCell   *cell;

	initStringInfo(&json);
	appendStringInfo(&json, "{\"format\": \"%s\", \"architecture\": \"%s\","
					 " \"source_dtype\": \"%s\", \"context_length\": %d,"
					 " \"max_seq_len\": %d, \"vocab_size\": %d, \"d_model\": %d,"
					 " \"n_layers\": %d, \"n_heads\": %d, \"n_kv_heads\": %d,"
					 " \"head_dim\": %d, \"d_ff\": %d, \"tied_embeddings\": %s,"
					 " \"rope_theta\": %.9g, \"files\": [",
					 ckpt->format, ckpt->architecture, ckpt->source_dtype,
					 ckpt->context_length, c->max_seq_len, c->vocab_size,
					 c->d_model, c->n_layers, c->n_heads, c->n_kv_heads,
					 student->model->head_dim, c->d_ff,
					 c->tied_embeddings ? "true" : "false", c->rope_theta);
	foreach(cell, source->opened)
	{
		OpenedFile *file = lfirst(cell);

		if (cell != list_head(source->opened))
			appendStringInfoString(&json, ", ");
		appendStringInfoString(&json, "{\"file\": ");
		escape_json(&json, file->path ? file->path : file->name[0] ? file->name : "data");
		appendStringInfo(&json, ", \"bytes\": %zu, \"sha256\": \"%s\"}", file->len,
						 sha256_hex(file));
	}
	appendStringInfoString(&json, "]}");
	return json.data;
}

/* What params may say, checked; *max_seq_len gets its value or the default. */
static void
check_import_params(Jsonb *params, int *max_seq_len)
{
	JsonbIterator *it = JsonbIteratorInit(&params->root);
	JsonbValue	v;
	JsonbIteratorToken token;
	char	   *key = NULL;

	*max_seq_len = MODEL_MAX_SEQ_LEN;
	if (!JB_ROOT_IS_OBJECT(params))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("params must be a JSON object")));
	while ((token = JsonbIteratorNext(&it, &v, true)) != WJB_DONE)
	{
		if (token == WJB_KEY)
			key = pnstrdup(v.val.string.val, v.val.string.len);
		else if (token != WJB_VALUE)
			continue;
		else if (strcmp(key, "prompt_template") == 0 && v.type == jbvString)
			continue;
		else if (strcmp(key, "max_seq_len") == 0 && v.type == jbvNumeric)
		{
			*max_seq_len = DatumGetInt32(DirectFunctionCall1(numeric_int4,
															 NumericGetDatum(v.val.numeric)));
			if (*max_seq_len < 16 || *max_seq_len > MODEL_MAX_SEQ_LEN)
				ereport(ERROR,
						(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
						 errmsg("max_seq_len must be between 16 and %d, not %d",
								MODEL_MAX_SEQ_LEN, *max_seq_len)));
		}
		else
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("invalid import parameter \"%s\"", key),
					 errhint("An import takes \"prompt_template\" (text with {input}) and \"max_seq_len\" (a number).")));
	}
}

static void
checkpoint_release(void *ckpt)
{
	checkpoint_free(ckpt);
}

static void
student_release(void *student)
{
	student_free(student);
}

/* Read, convert and store the checkpoint; returns the new version. */
static int
import_checkpoint(const char *name, CheckpointFormat format, ImportSource *source,
				  Jsonb *params)
{
	CheckpointFiles files = {source, open_checkpoint_file, drop_pages};
	StopCheck	stop = {interrupt_pending, NULL};
	MemoryContextCallback *unmap;
	CoreError	err;
	Checkpoint *ckpt;
	CoreGuard  *ckpt_guard;
	Tokenizer  *tokenizer;
	Student    *student;
	CoreGuard  *student_guard;
	NewVersion	version;
	ModelRow	row = {.method = "imported", .labels = (Datum) 0};
	int			max_seq_len;
	int			number;

	check_import_params(params, &max_seq_len);
	row.params = JsonbToCString(NULL, &params->root, VARSIZE(params));

	/*
	 * The files are opened, listed and unmapped within SPI's memory
	 * context, also when an error deletes it.
	 */
	SPI_connect();
	unmap = palloc0(sizeof(MemoryContextCallback));
	unmap->func = unmap_files;
	unmap->arg = source;
	MemoryContextRegisterResetCallback(CurrentMemoryContext, unmap);
	version = new_model_version(name);
	model_set_threads(distill_threads);
	ckpt = checkpoint_read(format, &files, max_seq_len, &stop, &err);
	if (ckpt == NULL)
	{
		CHECK_FOR_INTERRUPTS();
		ereport(ERROR,
				(errcode(core_error_code(&err)),
				 errmsg("cannot import the checkpoint: %s", err.message),
				 errhint("distill imports Llama and Qwen2 checkpoints: a Hugging Face directory, a GGUF file or a llama2.c .bin (docs/pretrained.md).")));
	}
	ckpt_guard = core_guard_new(ckpt, checkpoint_release);
	tokenizer = tok_from_source(&ckpt->tokenizer, &err);
	if (tokenizer == NULL)
		ereport(ERROR,
				(errcode(core_error_code(&err)),
				 errmsg("cannot import the checkpoint's tokenizer: %s", err.message)));
	student = student_from_checkpoint(tokenizer, ckpt->model, &err);
	ckpt->model = NULL;			/* the student's now, or freed */
	if (student == NULL)
		ereport(ERROR,
				(errcode(core_error_code(&err)),
				 errmsg("cannot import the checkpoint: %s", err.message)));
	student_guard = core_guard_new(student, student_release);
	row.metrics = checkpoint_metrics(ckpt, student, source);
	number = store_model_version(&version, name, &row, student, ckpt->dtypes);
	core_guard_release(student_guard);
	core_guard_release(ckpt_guard);
	unmap_files(source);
	SPI_finish();
	return number;
}

static void
require_model_name(FunctionCallInfo fcinfo)
{
	if (PG_ARGISNULL(0) || VARSIZE_ANY_EXHDR(PG_GETARG_TEXT_PP(0)) == 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("model name must not be NULL or empty")));
	if (PG_ARGISNULL(1) || PG_ARGISNULL(2) || PG_ARGISNULL(4))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("the checkpoint, its format and params must not be NULL")));
}

/* distill.import_model(name, path, format, tokenizer, params) */
Datum
distill_import_model(PG_FUNCTION_ARGS)
{
	ImportSource source = {0};
	CheckpointFormat format;
	struct stat st;

	require_sql_version();
	require_model_name(fcinfo);
	if (!has_privs_of_role(GetUserId(), ROLE_PG_READ_SERVER_FILES))
		ereport(ERROR,
				(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
				 errmsg("permission denied to import a model from a file on the server"),
				 errdetail("Only roles with privileges of the \"pg_read_server_files\" role may read server files."),
				 errhint("Pass the file's bytes instead: distill.import_model(name, data => <bytea>) takes a GGUF file or a llama2.c .bin.")));
	source.path = text_to_cstring(PG_GETARG_TEXT_PP(1));
	if (!is_absolute_path(source.path))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("checkpoint path must be absolute: \"%s\"", source.path),
				 errhint("The server reads the file: give its full path on the server's machine.")));
	if (!PG_ARGISNULL(3))
		source.tokenizer_path = text_to_cstring(PG_GETARG_TEXT_PP(3));
	if (stat(source.path, &st) != 0)
		ereport(ERROR,
				(errcode_for_file_access(),
				 errmsg("could not read checkpoint \"%s\": %m", source.path),
				 errhint("The server reads the file, with the file permissions of its operating system user.")));
	format = parse_format(text_to_cstring(PG_GETARG_TEXT_PP(2)));
	if (format == CHECKPOINT_AUTO && S_ISDIR(st.st_mode))
		format = CHECKPOINT_HF;
	if (format == CHECKPOINT_HF && !S_ISDIR(st.st_mode))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("a Hugging Face checkpoint is a directory, and \"%s\" is not one",
						source.path)));
	if (format != CHECKPOINT_HF && S_ISDIR(st.st_mode))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("\"%s\" is a directory, and a %s checkpoint is one file",
						source.path, format_names[format]),
				 errhint("A directory is read as a Hugging Face checkpoint: format 'hf' or 'auto'.")));
	PG_RETURN_INT32(import_checkpoint(text_to_cstring(PG_GETARG_TEXT_PP(0)), format,
									  &source, PG_GETARG_JSONB_P(4)));
}

/* distill.import_model(name, data, format, tokenizer, params) */
Datum
distill_import_model_bytes(PG_FUNCTION_ARGS)
{
	ImportSource source = {0};
	CheckpointFormat format;

	require_sql_version();
	require_model_name(fcinfo);
	source.data = PG_GETARG_BYTEA_PP(1);
	if (!PG_ARGISNULL(3))
		source.tokenizer = PG_GETARG_BYTEA_PP(3);
	format = parse_format(text_to_cstring(PG_GETARG_TEXT_PP(2)));
	if (format == CHECKPOINT_HF)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("a Hugging Face checkpoint is a directory, which cannot be passed as bytes"),
				 errhint("Convert it to GGUF (llama.cpp's convert_hf_to_gguf.py), or import the directory as a role with privileges of pg_read_server_files.")));
	PG_RETURN_INT32(import_checkpoint(text_to_cstring(PG_GETARG_TEXT_PP(0)), format,
									  &source, PG_GETARG_JSONB_P(4)));
}
