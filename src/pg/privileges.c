/*
 * privileges.c - who distill's own SQL runs as, and with which search_path.
 *
 * Users read distill's tables through row-level security and never write
 * them directly (see the install script).  Every change is made by distill
 * itself, as the extension's owner, with the calling role recorded as the
 * owner of what it makes.  Two ways lead there:
 *
 * - C code runs its statements through run_sql_as_owner();
 * - SQL functions that change tables are declared as C functions bound to
 *   distill_call_as_owner(), which calls their `_`-prefixed SECURITY
 *   DEFINER twin with the calling role as first argument.  The twin is
 *   executable by nobody else, and a role cannot make the trampoline pass
 *   another role than the one it is.
 *
 * Every statement of distill's own runs with search_path set to
 * pg_catalog, pg_temp, so that no operator or function a user creates can
 * stand in for a built-in one.  A user's own source query is the
 * exception: it runs as its user, with that user's search_path.
 */
#include "postgres.h"

#include "access/genam.h"
#include "access/htup_details.h"
#include "access/table.h"
#include "catalog/indexing.h"
#include "catalog/namespace.h"
#include "catalog/pg_extension.h"
#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "fmgr.h"
#include "miscadmin.h"
#include "parser/parse_func.h"
#include "utils/builtins.h"
#include "utils/fmgroids.h"
#include "utils/guc.h"
#include "utils/lsyscache.h"
#include "utils/rel.h"
#include "utils/snapmgr.h"

#include "pg/glue.h"

#define PINNED_SEARCH_PATH "pg_catalog, pg_temp"

/* distill's row of pg_extension: its owner and version; false without one. */
static bool
read_extension_row(Oid *owner, char **version)
{
	Relation	rel = table_open(ExtensionRelationId, AccessShareLock);
	ScanKeyData key;
	SysScanDesc scan;
	HeapTuple	tuple;
	bool		found;

	ScanKeyInit(&key, Anum_pg_extension_extname, BTEqualStrategyNumber, F_NAMEEQ,
				CStringGetDatum("distill"));
	scan = systable_beginscan(rel, ExtensionNameIndexId, true, NULL, 1, &key);
	tuple = systable_getnext(scan);
	found = HeapTupleIsValid(tuple);
	if (found)
	{
		bool		isnull;
		Datum		datum = heap_getattr(tuple, Anum_pg_extension_extversion,
										 RelationGetDescr(rel), &isnull);

		*owner = ((Form_pg_extension) GETSTRUCT(tuple))->extowner;
		*version = isnull ? "" : TextDatumGetCString(datum);
	}
	systable_endscan(scan);
	table_close(rel, AccessShareLock);
	return found;
}

static void
report_not_installed(void)
{
	ereport(ERROR,
			(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
			 errmsg("extension \"distill\" is not installed in this database"),
			 errhint("Run CREATE EXTENSION distill.")));
}

/* The role that created the extension, and owns its tables and functions. */
static Oid
extension_owner(void)
{
	Oid			owner;
	char	   *version;

	if (!read_extension_row(&owner, &version))
		report_not_installed();
	return owner;
}

/*
 * An error unless the extension's SQL objects in this database are those
 * this library was built for: after a new library is installed, until
 * ALTER EXTENSION distill UPDATE has run.  Once true, it stays true for
 * the backend (an extension is not downgraded under a running session).
 */
void
require_sql_version(void)
{
	static bool checked = false;
	Oid			owner;
	char	   *version;

	if (checked)
		return;
	if (!read_extension_row(&owner, &version))
		report_not_installed();
	if (strcmp(version, DISTILL_SQL_VERSION) != 0)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("distill's SQL objects in this database are version %s, its library is %s",
						version, DISTILL_SQL_VERSION),
				 errhint("Run ALTER EXTENSION distill UPDATE.")));
	checked = true;
}

/* What execute_pinned() runs, and how. */
typedef struct Statement
{
	const char *sql;
	int			nargs;
	const Oid  *argtypes;
	const Datum *values;
	const char *nulls;
	bool		read_only;
	bool		latest_snapshot;	/* see run_sql_latest() */
	long		count;
} Statement;

static int
execute(const Statement *s)
{
	SPIPlanPtr	plan;
	int			rc;

	if (!s->latest_snapshot)
		return SPI_execute_with_args(s->sql, s->nargs, (Oid *) s->argtypes,
									 (Datum *) s->values, s->nulls, s->read_only, s->count);
	plan = SPI_prepare(s->sql, s->nargs, (Oid *) s->argtypes);
	if (plan == NULL)
		return SPI_result;
	rc = SPI_execute_snapshot(plan, (Datum *) s->values, s->nulls, GetLatestSnapshot(),
							  InvalidSnapshot, s->read_only, false, s->count);
	SPI_freeplan(plan);
	return rc;
}

/*
 * Run a statement with search_path pinned, as role when it is valid, else
 * as the current user.  An ERROR in between is no concern: aborting the
 * (sub)transaction restores both the user and the setting.
 */
static int
execute_pinned(Oid role, const Statement *statement)
{
	Oid			saved_user;
	int			saved_context;
	int			nest_level;
	int			rc;

	GetUserIdAndSecContext(&saved_user, &saved_context);
	if (OidIsValid(role))
		SetUserIdAndSecContext(role, saved_context | SECURITY_LOCAL_USERID_CHANGE);
	nest_level = NewGUCNestLevel();
	(void) set_config_option("search_path", PINNED_SEARCH_PATH, PGC_USERSET, PGC_S_SESSION,
							 GUC_ACTION_SAVE, true, 0, false);
	rc = execute(statement);
	AtEOXact_GUC(true, nest_level);
	SetUserIdAndSecContext(saved_user, saved_context);
	return rc;
}

/* One of distill's own statements, as the calling role (reads, mostly). */
int
run_sql(const char *sql, int nargs, const Oid *argtypes, const Datum *values,
		const char *nulls, bool read_only, long count)
{
	Statement	s = {sql, nargs, argtypes, values, nulls, read_only, false, count};

	return execute_pinned(InvalidOid, &s);
}

/*
 * A read as the calling role that sees what has committed by now, even in
 * a REPEATABLE READ or SERIALIZABLE transaction, whose own snapshot would
 * never show a job ending.
 */
int
run_sql_latest(const char *sql, int nargs, const Oid *argtypes, const Datum *values,
			   long count)
{
	Statement	s = {sql, nargs, argtypes, values, NULL, true, true, count};

	return execute_pinned(InvalidOid, &s);
}

/*
 * A read as the extension's owner, who sees every role's rows, of what has
 * committed by now (as run_sql_latest()).
 */
int
run_sql_as_owner_latest(const char *sql, int nargs, const Oid *argtypes,
						const Datum *values, long count)
{
	Statement	s = {sql, nargs, argtypes, values, NULL, true, true, count};

	return execute_pinned(extension_owner(), &s);
}

/* One of distill's own statements, as the extension's owner (its writes). */
int
run_sql_as_owner(const char *sql, int nargs, const Oid *argtypes, const Datum *values,
				 const char *nulls, long count)
{
	Statement	s = {sql, nargs, argtypes, values, nulls, false, false, count};

	return execute_pinned(extension_owner(), &s);
}

/* The `_`-prefixed twin of the function being called: (regrole, its arguments). */
static Oid
twin_of(Oid function)
{
	Oid		   *argtypes;
	int			nargs;
	Oid			twin_argtypes[FUNC_MAX_ARGS];
	char	   *schema = get_namespace_name(get_func_namespace(function));
	char	   *twin = psprintf("_%s", get_func_name(function));

	get_func_signature(function, &argtypes, &nargs);
	if (nargs + 1 > FUNC_MAX_ARGS)
		elog(ERROR, "function %s has too many arguments", twin);
	twin_argtypes[0] = REGROLEOID;
	memcpy(twin_argtypes + 1, argtypes, nargs * sizeof(Oid));
	return LookupFuncName(list_make2(makeString(schema), makeString(twin)),
						  nargs + 1, twin_argtypes, false);
}

PG_FUNCTION_INFO_V1(distill_call_as_owner);

/*
 * distill.create_task(...) and the other functions that change tables:
 * call distill._create_task(current_user, ...).  The twin is SECURITY
 * DEFINER, so it runs as the extension's owner, and nobody may execute it
 * directly: called from here, through fmgr, no EXECUTE check applies, which
 * is the point.
 */
Datum
distill_call_as_owner(PG_FUNCTION_ARGS)
{
	FmgrInfo   *twin = fcinfo->flinfo->fn_extra;
	LOCAL_FCINFO(call, FUNC_MAX_ARGS);
	Datum		result;

	if (twin == NULL)
	{
		twin = MemoryContextAllocZero(fcinfo->flinfo->fn_mcxt, sizeof(FmgrInfo));
		fmgr_info_cxt(twin_of(fcinfo->flinfo->fn_oid), twin, fcinfo->flinfo->fn_mcxt);
		fcinfo->flinfo->fn_extra = twin;
	}
	InitFunctionCallInfoData(*call, twin, PG_NARGS() + 1, fcinfo->fncollation, NULL, NULL);
	call->args[0].value = ObjectIdGetDatum(GetUserId());
	call->args[0].isnull = false;
	for (int i = 0; i < PG_NARGS(); i++)
		call->args[i + 1] = fcinfo->args[i];
	result = FunctionCallInvoke(call);
	fcinfo->isnull = call->isnull;
	return result;
}
