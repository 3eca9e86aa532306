/*
 * error.h - how core functions say why they failed: a kind, which tells
 * the caller what to do about it (src/pg turns it into a SQLSTATE), and a
 * message for people.
 *
 * A failing function returns its failure value (NULL, false, -1) and fills
 * the CoreError its caller passed; NULL there means the caller does not
 * want the details.
 */
#ifndef DISTILL_CORE_ERROR_H
#define DISTILL_CORE_ERROR_H

typedef enum CoreErrorKind
{
	CORE_OK = 0,
	CORE_ERR_INVALID_INPUT,		/* the caller's input is wrong: a parameter
								 * out of range, an unknown task, a missing
								 * example, a candidate too long */
	CORE_ERR_CORRUPT,			/* stored bytes (a tokenizer, weights) fail
								 * their checks, or weights that overflow */
	CORE_ERR_NO_MEMORY,			/* an allocation failed */
	CORE_ERR_LIMIT,				/* over a limit: the working memory the
								 * caller allowed (memory_mb), the candidates
								 * a prediction scores, the size of a stored
								 * model */
	CORE_ERR_INTERRUPTED,		/* the caller's stop check said stop */
	CORE_ERR_INTERNAL			/* a call the core's own code should never
								 * make */
} CoreErrorKind;

#define CORE_ERROR_MESSAGE_LEN 256

typedef struct CoreError
{
	CoreErrorKind kind;
	char		message[CORE_ERROR_MESSAGE_LEN];
} CoreError;

/* Fill err (when it is not NULL) with kind and a printf-style message. */
extern void core_error(CoreError *err, CoreErrorKind kind, const char *fmt,...)
			__attribute__((format(printf, 3, 4)));

#endif
