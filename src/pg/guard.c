/*
 * guard.c - core objects (malloc'd, outside PostgreSQL's memory contexts)
 * released even when an ERROR unwinds the code that owns them.
 *
 * A guard lives in the memory context current at its creation; when that
 * context is reset or deleted, as it is after an ERROR, its callback
 * releases the object.  On the normal path the owner releases the object
 * itself, or detaches it to keep it.
 *
 * Also here: what a core failure becomes in an ERROR's SQLSTATE.
 */
#include "postgres.h"

#include "pg/glue.h"

static void
guard_callback(void *arg)
{
	CoreGuard  *guard = arg;
	void	   *object = guard->object;

	guard->object = NULL;
	if (object != NULL)
		guard->release(object);
}

CoreGuard *
core_guard_new(void *object, CoreRelease release)
{
	CoreGuard  *guard = palloc0(sizeof(CoreGuard));

	guard->object = object;
	guard->release = release;
	guard->callback.func = guard_callback;
	guard->callback.arg = guard;
	MemoryContextRegisterResetCallback(CurrentMemoryContext, &guard->callback);
	return guard;
}

void
core_guard_release(CoreGuard *guard)
{
	guard_callback(guard);
}

/* Keep the object past the guard's context: the guard no longer releases it. */
void
core_guard_detach(CoreGuard *guard)
{
	guard->object = NULL;
}

/*
 * One mapping for every core failure, so that a client can tell its own
 * bad argument from a damaged model, a limit or a server out of memory.
 */
int
core_error_code(const CoreError *err)
{
	switch (err->kind)
	{
		case CORE_ERR_INVALID_INPUT:
			return ERRCODE_INVALID_PARAMETER_VALUE;
		case CORE_ERR_CORRUPT:
			return ERRCODE_DATA_CORRUPTED;
		case CORE_ERR_NO_MEMORY:
			return ERRCODE_OUT_OF_MEMORY;
		case CORE_ERR_LIMIT:
			return ERRCODE_PROGRAM_LIMIT_EXCEEDED;
		case CORE_ERR_INTERRUPTED:
			return ERRCODE_QUERY_CANCELED;
		case CORE_OK:
		case CORE_ERR_INTERNAL:
			break;
	}
	return ERRCODE_INTERNAL_ERROR;
}
