/*
 * shared_models.c - one copy of a model's weights per server.
 *
 * A loaded model holds its packed weights, embedding and tables: over
 * 600 MB for a model of 135M parameters.  Loaded by each backend and each
 * parallel worker that predicts with it, that memory grows with the
 * connections.  So the first backend that needs a model version writes its
 * prediction image (core/model_image.h) to a file, and every backend maps
 * that file read-only and predicts from it: the kernel keeps its pages
 * once, in the page cache, shared by all, and being clean they can be
 * dropped under memory pressure and read again.  Only the tokenizer and
 * small tables are each backend's own.
 *
 * The files are $PGDATA/pg_dynshmem/distill/<database OID>/<model id>.image.
 * pg_dynshmem is PostgreSQL's directory of files of dynamic shared memory;
 * base backups and pg_rewind skip what it holds, which suits files that are
 * rebuilt on demand.  A model row's id is never reused, so a new version
 * is a new file.  An image names its weights (row id, database, the stored
 * weights' checksum) and is checked when mapped, so a file of other
 * weights, or a damaged or truncated one, is not used but written again.
 *
 * Writing: under an advisory lock of the model's id, so that backends that
 * need the same model at once wait for one writer instead of each loading
 * it (the leader and workers of a parallel query share their locks, and
 * may each write one), the writer loads the model from its rows as before,
 * writes the image to <id>.image.<pid>.tmp and renames it into place with
 * durable_rename(): the data is flushed before the rename, as the server's
 * fsync setting asks, so that a power loss cannot leave a file in place
 * whose pages were never written.  A file in place never changes; a new
 * one replaces it by rename, and backends that map the old one keep it
 * until they let it go.  Should the file system refuse (a full disk), the
 * backend keeps the model it loaded, in its own memory, with a WARNING.
 *
 * Sweeping: the images of versions no longer deployed (a newer one, a
 * rollback) and of models dropped, and the temporary files of writers that
 * died, go in a sweep of the database's directory: when a backend first
 * looks for an image there, and after it writes one; the latter also
 * removes the directories of databases that no longer exist.
 *
 * distill.shared_models = off loads models into each backend, as before.
 */
#include "postgres.h"

#include <ctype.h>
#include <unistd.h>

#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "miscadmin.h"
#include "storage/dsm_impl.h"
#include "storage/fd.h"
#include "storage/lock.h"
#include "utils/array.h"
#include "utils/syscache.h"

#include "core/model_image.h"
#include "pg/glue.h"

#define IMAGE_DIR PG_DYNSHMEM_DIR "/distill"
#define IMAGE_SUFFIX ".image"
#define TEMP_SUFFIX ".tmp"
/* the advisory lock of a model's image: (database, this, id, 2) */
#define IMAGE_LOCK_KEY 0x44535449	/* "DSTI" */

bool		distill_shared_models = true;

/* Has this backend swept its database's directory yet? */
static bool swept = false;

static char *
database_dir(Oid database)
{
	return psprintf(IMAGE_DIR "/%u", database);
}

static char *
image_path(int64 id)
{
	return psprintf(IMAGE_DIR "/%u/" INT64_FORMAT IMAGE_SUFFIX, MyDatabaseId, id);
}

static void
image_lock_tag(LOCKTAG *tag, int64 id)
{
	SET_LOCKTAG_ADVISORY(*tag, MyDatabaseId, IMAGE_LOCK_KEY, (uint32) id, 2);
}

static void
student_release(void *student)
{
	student_free(student);
}

/* The directories of this database's images; false with a WARNING. */
static bool
make_directories(void)
{
	const char *dirs[2] = {IMAGE_DIR, database_dir(MyDatabaseId)};

	for (int i = 0; i < 2; i++)
		if (MakePGDirectory(dirs[i]) != 0 && errno != EEXIST)
		{
			ereport(WARNING,
					(errcode_for_file_access(),
					 errmsg("could not create directory \"%s\": %m", dirs[i]),
					 errdetail("The model is loaded into this backend alone."),
					 errhint("Let the server create it (permissions, free space), or set distill.shared_models to off.")));
			return false;
		}
	return true;
}

/* ---------------------------------------------------------------- */
/* Sweeping */

/*
 * "<id>.image" (an image) or "<id>.image.<anything>.tmp" (a writer's
 * temporary file); false for any other name, which a sweep leaves alone.
 */
static bool
parse_file_name(const char *name, int64 *id, bool *temporary)
{
	char	   *end;
	size_t		rest;

	if (!isdigit((unsigned char) name[0]))
		return false;
	errno = 0;
	*id = strtoll(name, &end, 10);
	if (errno != 0 || strncmp(end, IMAGE_SUFFIX, strlen(IMAGE_SUFFIX)) != 0)
		return false;
	end += strlen(IMAGE_SUFFIX);
	rest = strlen(end);
	*temporary = rest > 0;
	return rest == 0 ||
		(end[0] == '.' && rest > strlen(TEMP_SUFFIX) &&
		 strcmp(end + rest - strlen(TEMP_SUFFIX), TEMP_SUFFIX) == 0);
}

/* Of ids, those of deployed versions, seen as their owners see them now. */
static bool *
deployed(const int64 *ids, int n)
{
	Datum	   *elems = palloc(n * sizeof(Datum));
	bool	   *result = palloc0(n * sizeof(bool));
	Datum		array;

	for (int i = 0; i < n; i++)
		elems[i] = Int64GetDatum(ids[i]);
	array = PointerGetDatum(construct_array(elems, n, INT8OID, sizeof(int64), true,
											TYPALIGN_DOUBLE));
	if (run_sql_as_owner_latest("SELECT m.id FROM distill.models m WHERE m.id = ANY($1)"
								" AND m.version = distill.deployed_version(m.name)",
								1, (Oid[]) {INT8ARRAYOID}, &array, 0) != SPI_OK_SELECT)
		elog(ERROR, "could not read distill.models");
	for (uint64 r = 0; r < SPI_processed; r++)
	{
		bool		isnull;
		int64		id = DatumGetInt64(SPI_getbinval(SPI_tuptable->vals[r],
													 SPI_tuptable->tupdesc, 1, &isnull));

		for (int i = 0; i < n; i++)
			result[i] |= ids[i] == id;
	}
	SPI_freetuptable(SPI_tuptable);
	return result;
}

static void
remove_file(const char *path)
{
	if (unlink(path) != 0 && errno != ENOENT)
		ereport(LOG,
				(errcode_for_file_access(),
				 errmsg("could not remove file \"%s\": %m", path)));
}

/*
 * A temporary file goes unless its model's writer is at work: one holds
 * the model's lock from before it creates the file until it is renamed or
 * removed, so a free lock means a writer that died.
 */
static void
remove_if_abandoned(const char *path, int64 id)
{
	LOCKTAG		tag;

	image_lock_tag(&tag, id);
	if (LockAcquire(&tag, ExclusiveLock, false, true) == LOCKACQUIRE_NOT_AVAIL)
		return;
	remove_file(path);
	LockRelease(&tag, ExclusiveLock, false);
}

/*
 * Remove this database's images of versions not deployed and abandoned
 * temporary files.  The directory is listed before the query, whose
 * snapshot is taken after: an image written meanwhile is of a version
 * committed before it, which the query sees.
 */
static void
sweep_database(void)
{
	char	   *dir = database_dir(MyDatabaseId);
	DIR		   *d = AllocateDir(dir);
	struct dirent *de;
	int			n = 0;
	int			room = 16;
	char	  **names = palloc(room * sizeof(char *));
	int64	   *ids = palloc(room * sizeof(int64));
	bool	   *temporary = palloc(room * sizeof(bool));
	bool	   *keep;

	while ((de = ReadDirExtended(d, dir, LOG)) != NULL)
	{
		if (n == room)
		{
			room *= 2;
			names = repalloc(names, room * sizeof(char *));
			ids = repalloc(ids, room * sizeof(int64));
			temporary = repalloc(temporary, room * sizeof(bool));
		}
		if (parse_file_name(de->d_name, &ids[n], &temporary[n]))
			names[n++] = psprintf("%s/%s", dir, de->d_name);
	}
	if (d != NULL)
		FreeDir(d);
	if (n == 0)
		return;
	keep = deployed(ids, n);
	for (int i = 0; i < n; i++)
		if (temporary[i])
			remove_if_abandoned(names[i], ids[i]);
		else if (!keep[i])
			remove_file(names[i]);
}

/* Remove the directories of databases that were dropped. */
static void
sweep_dropped_databases(void)
{
	DIR		   *d = AllocateDir(IMAGE_DIR);
	struct dirent *de;

	while ((de = ReadDirExtended(d, IMAGE_DIR, LOG)) != NULL)
	{
		char	   *end;
		unsigned long oid;

		if (!isdigit((unsigned char) de->d_name[0]))
			continue;
		oid = strtoul(de->d_name, &end, 10);
		if (*end == '\0' && oid <= PG_UINT32_MAX &&
			!SearchSysCacheExists1(DATABASEOID, ObjectIdGetDatum((Oid) oid)))
			(void) rmtree(psprintf("%s/%s", IMAGE_DIR, de->d_name), true);
	}
	if (d != NULL)
		FreeDir(d);
}

/*
 * Sweep, when this backend has not swept yet or after writing.  Not in
 * parallel mode, which cannot take the fresh snapshot the sweep needs: a
 * sweep comes again soon enough.
 */
static void
sweep(bool wrote)
{
	if (IsInParallelMode() || (swept && !wrote))
		return;
	sweep_database();
	if (wrote)
		sweep_dropped_databases();
	swept = true;
}

/* ---------------------------------------------------------------- */
/* Mapping and writing */

/*
 * The model of the image at path when there is one of these weights;
 * else NULL, logging why a file there is not used when asked to.  A file
 * that cannot be mapped (out of memory) is an error: writing it again
 * would not help.
 */
static Model *
map_image(const char *path, const ModelImageIdentity *identity,
		  const char *name, int version, bool log_why)
{
	int			fd = OpenTransientFile(path, O_RDONLY | PG_BINARY);
	CoreError	err;
	Model	   *model;

	if (fd < 0)
	{
		if (errno != ENOENT && log_why)
			ereport(LOG,
					(errcode_for_file_access(),
					 errmsg("could not open file \"%s\": %m", path)));
		return NULL;
	}
	model = model_image_map(fd, identity, &err);
	CloseTransientFile(fd);
	if (model == NULL && err.kind != CORE_ERR_CORRUPT)
		ereport(ERROR,
				(errcode(err.kind == CORE_ERR_NO_MEMORY ? ERRCODE_OUT_OF_MEMORY : ERRCODE_IO_ERROR),
				 errmsg("model \"%s\" version %d cannot be mapped from \"%s\": %s",
						name, version, path, err.message),
				 errhint("Remove what is there, or set distill.shared_models to off.")));
	if (model == NULL && log_why)
		ereport(LOG,
				(errmsg("the prediction image \"%s\" of model \"%s\" version %d is written again: %s",
						path, name, version, err.message)));
	return model;
}

/* Where model_image_write() writes. */
typedef struct ImageFile
{
	int			fd;
	int			write_errno;	/* why a write failed */
	bool		interrupted;
} ImageFile;

static bool
write_piece(void *arg, const void *data, size_t len)
{
	ImageFile  *file = arg;

	if (interrupt_pending(NULL))
	{
		file->interrupted = true;
		return false;
	}
	file->write_errno = write_all(file->fd, data, len);
	return file->write_errno == 0;
}

static void
image_write_context(void *arg)
{
	errcontext("writing the prediction image of model %s", (const char *) arg);
}

/*
 * Write the image of student's model to a temporary file, then rename it
 * to path; false, with a WARNING, when the file system refuses.
 */
static bool
write_image_file(const Student *student, const ModelImageIdentity *identity,
				 const char *path, const char *what)
{
	char	   *temp = psprintf("%s.%d" TEMP_SUFFIX, path, MyProcPid);
	ImageFile	file = {.fd = -1};
	ErrorContextCallback context = {error_context_stack, image_write_context, (void *) what};
	CoreError	err;
	bool		ok;

	error_context_stack = &context;
	file.fd = OpenTransientFile(temp, O_WRONLY | O_CREAT | O_TRUNC | PG_BINARY);
	if (file.fd < 0)
		file.write_errno = errno;
	PG_TRY();
	{
		ok = file.fd >= 0 && model_image_write(student->model, identity, write_piece,
											   &file, &err);
		if (file.interrupted)
			CHECK_FOR_INTERRUPTS();
	}
	PG_CATCH();
	{
		remove_file(temp);
		PG_RE_THROW();
	}
	PG_END_TRY();
	if (file.fd >= 0 && CloseTransientFile(file.fd) != 0 && ok)
	{
		file.write_errno = errno;
		ok = false;
	}
	if (!ok)
	{
		errno = file.write_errno;
		ereport(WARNING,
				(errcode_for_file_access(),
				 errmsg("could not write file \"%s\": %m", temp),
				 errdetail("The model is loaded into this backend alone."),
				 errhint("Free space for it under the data directory, or set distill.shared_models to off.")));
		remove_file(temp);
	}
	else if (durable_rename(temp, path, WARNING) != 0)
	{
		remove_file(temp);
		ok = false;
	}
	error_context_stack = context.previous;
	return ok;
}

/*
 * The model of the image of model version id, written by this backend
 * unless another one writes it meanwhile; then a sweep.  NULL when the
 * image cannot be written: then *unshared is the student this backend
 * loaded.
 */
static Model *
write_and_map_image(int64 id, const char *name, int version, const bytea *tokenizer,
					const bytea *weights, const ModelImageIdentity *identity,
					const char *path, Student **unshared)
{
	LOCKTAG		tag;
	Model	   *model;
	CoreGuard  *guard = NULL;

	image_lock_tag(&tag, id);
	(void) LockAcquire(&tag, ExclusiveLock, false, false);
	/* written meanwhile?  If not, this says why a file there is not used */
	model = map_image(path, identity, name, version, true);
	if (model == NULL)
	{
		Student    *student = load_model_student(id, name, version, tokenizer, weights);

		guard = core_guard_new(student, student_release);
		if (write_image_file(student, identity, path,
							 psprintf("\"%s\" version %d", name, version)))
		{
			core_guard_release(guard);
			guard = NULL;
			model = map_image(path, identity, name, version, true);
			if (model == NULL)
				elog(ERROR, "the prediction image \"%s\" just written cannot be used", path);
		}
	}
	LockRelease(&tag, ExclusiveLock, false);
	sweep(true);
	if (guard != NULL)
	{
		*unshared = guard->object;
		core_guard_detach(guard);
	}
	return model;
}

Student *
load_shared_student(int64 id, const char *name, int version, const bytea *tokenizer,
					const bytea *weights)
{
	ModelImageIdentity identity = {
		.model_id = (uint64) id,
		.scope = MyDatabaseId,
		.weights_crc = student_weights_checksum(VARDATA_ANY(weights), VARSIZE_ANY_EXHDR(weights))
	};
	char	   *path = image_path(id);
	Student    *student = NULL;
	Model	   *model;
	CoreError	err;

	if (!make_directories())
		return load_model_student(id, name, version, tokenizer, weights);
	sweep(false);
	model = map_image(path, &identity, name, version, false);
	if (model == NULL)
	{
		model = write_and_map_image(id, name, version, tokenizer, weights, &identity, path,
									&student);
		if (model == NULL)
			return student;
	}
	student = student_load_with_model(VARDATA_ANY(tokenizer), VARSIZE_ANY_EXHDR(tokenizer),
									  VARDATA_ANY(weights), VARSIZE_ANY_EXHDR(weights),
									  model, &err);
	if (student == NULL)
		report_load_failure(name, version, &err);
	return student;
}
