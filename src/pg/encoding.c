/*
 * encoding.c - text between the database encoding and UTF-8, which the
 * core (tokenizer, student) and the teachers' JSON use.
 */
#include "postgres.h"

#include "mb/pg_wchar.h"

#include "pg/glue.h"

char *
to_utf8(const char *s)
{
	return pg_server_to_any(s, strlen(s), PG_UTF8);
}

char *
from_utf8(const char *s)
{
	return pg_any_to_server(s, strlen(s), PG_UTF8);
}
