/*
 * guard.c - core objects (malloc'd, outside PostgreSQL's memory contexts)
 * released even when an ERROR unwinds the code that owns them.
 *
 * A guard lives in the memory context current at its creation; when that
 * context is reset or deleted, as it is after an ERROR, its callback
 * releases the object.  On the normal path the owner releases the object
 * itself, or detaches it to keep it.
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

void *
core_guard_detach(CoreGuard *guard)
{
	void	   *object = guard->object;

	guard->object = NULL;
	return object;
}
