/*
 * encoding.c - text between the database encoding and UTF-8, which the
 * core (tokenizer, student) and the teachers' JSON use.
 *
 * Text from a teacher is untrusted: it is checked strictly (teacher/utf8.h)
 * and, when the database cannot store it as it is, stored escaped instead
 * of raising an error.  Text for a teacher must be UTF-8, which a SQL_ASCII
 * database does not promise.
 */
#include "postgres.h"

#include "catalog/namespace.h"
#include "mb/pg_wchar.h"

#include "pg/glue.h"
#include "teacher/utf8.h"

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

static Oid
conversion_proc(int from, int to)
{
	Oid			proc = FindDefaultConversionProc(from, to);

	if (!OidIsValid(proc))
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_FUNCTION),
				 errmsg("no default conversion from %s to %s",
						pg_encoding_to_char(from), pg_encoding_to_char(to))));
	return proc;
}

/*
 * Convert as much of s[0, len) as converts, without raising over a
 * character the target encoding lacks.  Returns how many bytes of s were
 * converted; the result, NUL-terminated, is in *out.
 */
static int
convert_prefix(Oid proc, int from, int to, const char *s, int len, char **out)
{
	/* the room pg_do_encoding_conversion_buf() insists on */
	int			out_len = (len + 1) * MAX_CONVERSION_GROWTH + 1;

	*out = palloc(out_len);
	return pg_do_encoding_conversion_buf(proc, from, to, (unsigned char *) s, len,
										 (unsigned char *) *out, out_len, true);
}

/* Utf8Storable for the database encoding; arg points to the conversion. */
static bool
storable_in_database(const char *c, size_t n, void *arg)
{
	unsigned char converted[(4 + 1) * MAX_CONVERSION_GROWTH + 1];

	return pg_do_encoding_conversion_buf(*(Oid *) arg, PG_UTF8, GetDatabaseEncoding(),
										 (unsigned char *) c, (int) n,
										 converted, sizeof(converted), true) == (int) n;
}

static char *
describe_flaw(const Utf8Flaw *flaw)
{
	switch (flaw->kind)
	{
		case UTF8_FLAW_INVALID:
			return psprintf("byte 0x%02X at offset %zu is not valid UTF-8",
							flaw->byte, flaw->offset);
		case UTF8_FLAW_NUL:
			return psprintf("it holds a NUL character (\\u0000) at offset %zu", flaw->offset);
		case UTF8_FLAW_UNSTORABLE:
			return psprintf("character U+%04X at offset %zu has no equivalent in the database encoding %s",
							flaw->code_point, flaw->offset, GetDatabaseEncodingName());
		case UTF8_FLAW_NONE:
			break;
	}
	return NULL;
}

char *
from_utf8_escaped(const char *s, size_t len, char **flaw)
{
	int			db = GetDatabaseEncoding();
	bool		converts = db != PG_UTF8 && db != PG_SQL_ASCII;
	Oid			proc = converts ? conversion_proc(PG_UTF8, db) : InvalidOid;
	Utf8Storable storable = converts ? storable_in_database : NULL;
	Utf8Flaw	found = utf8_find_flaw(s, len, storable, &proc);
	char	   *text;
	char	   *escaped;

	*flaw = describe_flaw(&found);
	if (*flaw == NULL)
		text = pnstrdup(s, len);
	else
	{
		escaped = utf8_escape(s, len, storable, &proc);
		if (escaped == NULL)
			ereport(ERROR, (errcode(ERRCODE_OUT_OF_MEMORY), errmsg("out of memory")));
		text = pstrdup(escaped);
		free(escaped);
	}
	/* Checked above: this cannot fail. */
	return pg_any_to_server(text, strlen(text), PG_UTF8);
}

char *
try_to_utf8(const char *s, char **flaw)
{
	int			db = GetDatabaseEncoding();
	int			len = strlen(s);
	Utf8Flaw	found;
	char	   *converted;
	int			done;

	*flaw = NULL;
	if (db == PG_UTF8)
		return unconstify(char *, s);
	if (db == PG_SQL_ASCII)
	{
		/* SQL_ASCII text is whatever bytes were put in: check them */
		found = utf8_find_flaw(s, len, NULL, NULL);
		if (found.kind == UTF8_FLAW_NONE)
			return unconstify(char *, s);
		*flaw = psprintf("%s (the database encoding SQL_ASCII does not check text)",
						 describe_flaw(&found));
		return NULL;
	}
	done = convert_prefix(conversion_proc(db, PG_UTF8), db, PG_UTF8, s, len, &converted);
	if (done == len)
		return converted;
	*flaw = psprintf("the character at offset %d has no equivalent in UTF-8", done);
	return NULL;
}
