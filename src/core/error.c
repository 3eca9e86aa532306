/*
 * error.c - filling a CoreError; see error.h.
 */
#include "core/error.h"

#include <stdarg.h>
#include <stdio.h>

void
core_error(CoreError *err, CoreErrorKind kind, const char *fmt,...)
{
	va_list		args;

	if (err == NULL)
		return;
	err->kind = kind;
	va_start(args, fmt);
	vsnprintf(err->message, sizeof(err->message), fmt, args);
	va_end(args);
}
