/*
 * fuzz_equation.c - the arithmetic evaluator SVAMP answers are scored with
 * (core/equation.h).
 *
 * Input: "<expression a>\0<expression b>", or one expression compared with
 * itself.  Checks besides the sanitizers (deep nesting must fail, not
 * overflow the stack): a value is finite, a failure leaves it alone, and
 * equation_equal() is symmetric, reflexive on what evaluates and false on
 * what does not.
 */
#include "fuzz.h"

#include <math.h>

#include "core/equation.h"

#define UNTOUCHED 12345.0

static bool
check_eval(const char *expr)
{
	double		value = UNTOUCHED;
	bool		ok = equation_eval(expr, &value);

	if (ok)
		FUZZ_CHECK(isfinite(value), "\"%s\" is %g", expr, value);
	else
		FUZZ_CHECK(value == UNTOUCHED, "a failure wrote %g", value);
	FUZZ_CHECK(equation_equal(expr, expr) == ok,
			   "\"%s\" evaluates: %d, equals itself: %d", expr, ok, !ok);
	return ok;
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char	   *a = fuzz_take_field(&data, &size);
	char	   *b = fuzz_copy(data, size, true);
	bool		a_ok,
				b_ok;

	if (a == NULL)
		a = fuzz_copy(data, size, true);
	a_ok = check_eval(a);
	b_ok = check_eval(b);
	FUZZ_CHECK(equation_equal(a, b) == equation_equal(b, a), "not symmetric");
	FUZZ_CHECK(!equation_equal(a, b) || (a_ok && b_ok),
			   "equal although one does not evaluate");
	free(a);
	free(b);
	return 0;
}
