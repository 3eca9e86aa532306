/*
 * train_state.c - the checkpoints of background training jobs: at the end
 * of each epoch but the last, a job saves its trainer's whole state
 * (core/trainer.h: trainer_save_state()) to a file of its own,
 *
 *     $PGDATA/distill/checkpoints/<database oid>_<job id>.state
 *
 * so that a run of the same job after a crash, or a later training with
 * resume => true, goes on from there.  A file, not a table: a state holds
 * every weight and AdamW's two moments (12 to 16 bytes a parameter, 2 GB
 * for a model of 135M), which a table would write to the WAL every epoch.
 * It is written to <name>.tmp, fsync'd, and renamed into place
 * (durable_rename()), so that a crash leaves the previous checkpoint or
 * the new one, never half of one; only the server can read it.
 *
 * Before the trainer's state comes a header of this file's own (44 bytes,
 * little-endian): "DSTJ", u32 version (1), u32 database oid, u32 0, i64
 * job id, i64 the job's created_at, i64 the models.id of the base trained
 * on (0: from scratch), u32 CRC-32C of the 40 bytes before it.  The
 * created_at tells a job from another of the same id (the ids start again
 * when the extension is created again); the base id, a state of the same
 * base's previous version.
 *
 * A job's checkpoint is removed when the job succeeds; the launcher
 * sweeps the checkpoints of jobs that succeeded or no longer exist
 * (distill.job_retention purges them) and the temporary files of jobs not
 * running (state_file_sweep()).
 */
#include "postgres.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "miscadmin.h"
#include "storage/fd.h"
#include "utils/array.h"
#include "utils/builtins.h"

#include "core/crc32c.h"
#include "core/trainer.h"
#include "core/util.h"
#include "pg/glue.h"

#define STATE_PARENT "distill"
#define STATE_DIR "distill/checkpoints"
#define FILE_MAGIC "DSTJ"
#define FILE_VERSION 1
#define FILE_HEADER_BYTES 44

/* An open checkpoint file, as the core's read and write functions see it. */
typedef struct StateFile
{
	int			fd;
	char		path[MAXPGPATH];
	int			saved_errno;	/* of the call that failed */
} StateFile;

static void
state_path(char *path, int64 job, bool temporary)
{
	snprintf(path, MAXPGPATH, "%s/%u_" INT64_FORMAT ".state%s", STATE_DIR, MyDatabaseId,
			 job, temporary ? ".tmp" : "");
}

/* The directories, made when missing (and their entries made durable). */
static void
make_state_directory(void)
{
	struct stat st;

	if (stat(STATE_DIR, &st) == 0)
		return;
	if (MakePGDirectory(STATE_PARENT) != 0 && errno != EEXIST)
		ereport(ERROR,
				(errcode_for_file_access(),
				 errmsg("could not create directory \"%s\": %m", STATE_PARENT)));
	if (MakePGDirectory(STATE_DIR) != 0 && errno != EEXIST)
		ereport(ERROR,
				(errcode_for_file_access(),
				 errmsg("could not create directory \"%s\": %m", STATE_DIR)));
	fsync_fname(STATE_DIR, true);
	fsync_fname(STATE_PARENT, true);
	fsync_fname(".", true);
}

static void
encode_header(uint8 *header, const StateFileId *id)
{
	memcpy(header, FILE_MAGIC, 4);
	le_put_u32(header + 4, FILE_VERSION);
	le_put_u32(header + 8, MyDatabaseId);
	le_put_u32(header + 12, 0);
	le_put(header + 16, (uint64) id->job, 8);
	le_put(header + 24, (uint64) id->created, 8);
	le_put(header + 32, (uint64) id->base_id, 8);
	le_put_u32(header + 40, crc32c(0, header, 40));
}

static bool
write_piece(void *ctx, const void *data, size_t len, CoreError *err)
{
	StateFile  *f = ctx;

	if ((f->saved_errno = write_all(f->fd, data, len)) == 0)
		return true;
	core_error(err, CORE_ERR_INTERNAL, "could not write \"%s\": %s", f->path,
			   strerror(f->saved_errno));
	return false;
}

static int64_t
read_piece(void *ctx, void *buf, size_t len, CoreError *err)
{
	StateFile  *f = ctx;
	char	   *p = buf;
	size_t		got = 0;

	while (got < len)
	{
		ssize_t		n = read(f->fd, p + got, len - got);

		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
		{
			f->saved_errno = errno;
			core_error(err, CORE_ERR_INTERNAL, "could not read \"%s\": %s", f->path,
					   strerror(errno));
			return -1;
		}
		if (n == 0)
			break;
		got += n;
	}
	return (int64_t) got;
}

/*
 * Save the trainer's state as job id's checkpoint.  A failure (a full
 * disk) is a WARNING, and training goes on: the previous checkpoint, if
 * any, stays.  Returns whether it was saved; a cancel on the way returns
 * false for the caller's CHECK_FOR_INTERRUPTS().
 */
bool
state_file_save(const StateFileId *id, const StudentTrainer *trainer)
{
	StateFile	f = {.saved_errno = 0};
	char		final_path[MAXPGPATH];
	uint8		header[FILE_HEADER_BYTES];
	CoreError	err = {0};
	bool		ok;

	make_state_directory();
	state_path(f.path, id->job, true);
	state_path(final_path, id->job, false);
	f.fd = OpenTransientFile(f.path, O_WRONLY | O_CREAT | O_TRUNC | PG_BINARY);
	if (f.fd < 0)
	{
		ereport(WARNING,
				(errcode_for_file_access(),
				 errmsg("could not create the training checkpoint \"%s\": %m", f.path)));
		return false;
	}
	encode_header(header, id);
	ok = write_piece(&f, header, sizeof(header), &err) &&
		trainer_save_state(trainer, write_piece, &f, &err);
	if (ok && pg_fsync(f.fd) != 0)
	{
		f.saved_errno = errno;
		core_error(&err, CORE_ERR_INTERNAL, "could not fsync \"%s\": %s", f.path,
				   strerror(errno));
		ok = false;
	}
	if (CloseTransientFile(f.fd) != 0 && ok)
	{
		f.saved_errno = errno;
		core_error(&err, CORE_ERR_INTERNAL, "could not close \"%s\": %s", f.path,
				   strerror(errno));
		ok = false;
	}
	if (!ok)
	{
		unlink(f.path);
		if (err.kind != CORE_ERR_INTERRUPTED)
		{
			errno = f.saved_errno;
			ereport(WARNING,
					(errcode_for_file_access(),
					 errmsg("could not save the training checkpoint of job " INT64_FORMAT, id->job),
					 errdetail("%s", err.message),
					 errhint("Training goes on; a crash would resume from the previous checkpoint, if there is one.")));
		}
		return false;
	}
	if (durable_rename(f.path, final_path, WARNING) != 0)
	{
		unlink(f.path);
		return false;
	}
	return true;
}

/*
 * Open job id->job's checkpoint and read its header: false, with why in
 * err, when there is none, or it belongs to another job of that id or
 * another base (when check_base).
 */
static bool
open_state(const StateFileId *id, bool check_base, StateFile *f, CoreError *err)
{
	uint8		header[FILE_HEADER_BYTES];

	state_path(f->path, id->job, false);
	f->saved_errno = 0;
	f->fd = OpenTransientFile(f->path, O_RDONLY | PG_BINARY);
	if (f->fd < 0)
	{
		core_error(err, CORE_ERR_INVALID_INPUT, "job " INT64_FORMAT " left no checkpoint",
				   id->job);
		return false;
	}
	if (read_piece(f, header, sizeof(header), err) != sizeof(header) ||
		memcmp(header, FILE_MAGIC, 4) != 0 || le_get_u32(header + 4) != FILE_VERSION ||
		le_get_u32(header + 40) != crc32c(0, header, 40))
		core_error(err, CORE_ERR_CORRUPT, "the checkpoint \"%s\" is damaged", f->path);
	else if (le_get_u32(header + 8) != MyDatabaseId || (int64) le_get(header + 16, 8) != id->job ||
			 (TimestampTz) le_get(header + 24, 8) != id->created)
		core_error(err, CORE_ERR_INVALID_INPUT,
				   "the checkpoint \"%s\" is of another job " INT64_FORMAT, f->path, id->job);
	else if (check_base && (int64) le_get(header + 32, 8) != id->base_id)
		core_error(err, CORE_ERR_INVALID_INPUT,
				   "it was saved training on another version of the base model");
	else
		return true;
	CloseTransientFile(f->fd);
	return false;
}

/* Is there a checkpoint of this job (whatever its base)? */
bool
state_file_exists(const StateFileId *id)
{
	StateFile	f;
	CoreError	err;

	if (!open_state(id, false, &f, &err))
		return false;
	CloseTransientFile(f.fd);
	return true;
}

/*
 * Would trainer_restore_state() take the checkpoint?  false with why in
 * err (a stop among the reasons: CORE_ERR_INTERRUPTED).
 */
bool
state_file_check(const StateFileId *id, const StudentTrainer *trainer, CoreError *err)
{
	StateFile	f;
	bool		ok;

	if (!open_state(id, true, &f, err))
		return false;
	ok = trainer_check_state(trainer, read_piece, &f, err);
	CloseTransientFile(f.fd);
	return ok;
}

/* Restore the trainer from the checkpoint, which state_file_check() took. */
void
state_file_restore(const StateFileId *id, StudentTrainer *trainer)
{
	StateFile	f;
	CoreError	err;
	bool		ok;

	ok = open_state(id, true, &f, &err);
	if (ok)
	{
		ok = trainer_restore_state(trainer, read_piece, &f, &err);
		CloseTransientFile(f.fd);
	}
	if (!ok)
	{
		CHECK_FOR_INTERRUPTS();
		errno = f.saved_errno;
		ereport(ERROR,
				(f.saved_errno != 0 ? errcode_for_file_access() : errcode(core_error_code(&err)),
				 errmsg("could not resume from the checkpoint of job " INT64_FORMAT ": %s",
						id->job, err.message)));
	}
}

void
state_file_remove(int64 job)
{
	char		path[MAXPGPATH];

	state_path(path, job, false);
	if (unlink(path) != 0 && errno != ENOENT)
		ereport(WARNING,
				(errcode_for_file_access(),
				 errmsg("could not remove the training checkpoint \"%s\": %m", path)));
}

/* A file name of STATE_DIR as database, job and whether temporary. */
static bool
parse_state_name(const char *name, Oid *database, int64 *job, bool *temporary)
{
	char	   *end;
	unsigned long db = strtoul(name, &end, 10);
	long long	id;

	if (end == name || *end != '_')
		return false;
	id = strtoll(end + 1, &end, 10);
	*database = (Oid) db;
	*job = (int64) id;
	*temporary = strcmp(end, ".state.tmp") == 0;
	return *temporary || strcmp(end, ".state") == 0;
}

/*
 * The launcher's: remove the checkpoints of this database's jobs that
 * succeeded or no longer exist, and temporary files of jobs that are not
 * running (a worker that died while saving).  It runs before the launcher
 * claims queued jobs, so no worker starts saving in between.
 */
void
state_file_sweep(void)
{
	DIR		   *dir = AllocateDir(STATE_DIR);
	struct dirent *de;
	List	   *names = NIL;
	Datum	   *jobs;
	int			n = 0;
	ListCell   *lc;

	if (dir == NULL)
		return;					/* no training saved a checkpoint yet */
	while ((de = ReadDirExtended(dir, STATE_DIR, LOG)) != NULL)
	{
		Oid			database;
		int64		job;
		bool		temporary;

		if (parse_state_name(de->d_name, &database, &job, &temporary) &&
			database == MyDatabaseId)
			names = lappend(names, pstrdup(de->d_name));
	}
	FreeDir(dir);
	if (names == NIL)
		return;
	jobs = palloc(list_length(names) * sizeof(Datum));
	foreach(lc, names)
	{
		Oid			database;
		int64		job;
		bool		temporary;

		parse_state_name(lfirst(lc), &database, &job, &temporary);
		jobs[n++] = Int64GetDatum(job);
	}
	if (run_sql("SELECT f.job, j.status FROM unnest($1::int8[]) WITH ORDINALITY f(job, i)"
				" LEFT JOIN distill.jobs j ON j.id = f.job ORDER BY f.i",
				1, (Oid[]) {INT8ARRAYOID},
				(Datum[]) {PointerGetDatum(construct_array(jobs, n, INT8OID, 8, true, TYPALIGN_DOUBLE))},
				NULL, true, 0) != SPI_OK_SELECT)
		elog(ERROR, "could not read distill.jobs");
	n = 0;
	foreach(lc, names)
	{
		char		path[MAXPGPATH];
		char	   *status = SPI_getvalue(SPI_tuptable->vals[n], SPI_tuptable->tupdesc, 2);
		Oid			database;
		int64		job;
		bool		temporary;

		n++;
		parse_state_name(lfirst(lc), &database, &job, &temporary);
		if (status != NULL && strcmp(status, "succeeded") != 0 &&
			(!temporary || strcmp(status, "running") == 0))
			continue;
		snprintf(path, sizeof(path), "%s/%s", STATE_DIR, (char *) lfirst(lc));
		if (unlink(path) != 0 && errno != ENOENT)
			ereport(LOG,
					(errcode_for_file_access(),
					 errmsg("could not remove the training checkpoint \"%s\": %m", path)));
	}
}
