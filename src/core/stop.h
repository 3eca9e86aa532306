/*
 * stop.h - how the caller asks long core work to stop early.
 *
 * A PostgreSQL backend cannot let an interrupt jump out of core code that
 * holds malloc'd memory, so the core asks instead: between bounded units
 * of work (a few thousand tokens of a forward pass, a merge of the
 * tokenizer's training, a group of candidates) it calls should_stop(arg),
 * and when the answer is true it frees what it holds and returns an error
 * of kind CORE_ERR_INTERRUPTED (error.h).  The check must only look, never jump out: the glue
 * passes a function that reads the backend's pending-interrupt flags, then
 * handles the interrupt itself once the core has returned.
 */
#ifndef DISTILL_CORE_STOP_H
#define DISTILL_CORE_STOP_H

#include <stdbool.h>
#include <stddef.h>

typedef struct StopCheck
{
	bool		(*should_stop) (void *arg);	/* NULL = never stop */
	void	   *arg;
} StopCheck;

/* Has the caller asked to stop?  A NULL check never asks. */
static inline bool
stop_requested(const StopCheck *stop)
{
	return stop != NULL && stop->should_stop != NULL &&
		stop->should_stop(stop->arg);
}

#endif
