/*
 * test_equation.c - evaluation of arithmetic expressions.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "core/equation.h"
#include "unit.h"

static void
check_value(int line, const char *expr, double expect)
{
	double		value = NAN;
	bool		ok = equation_eval(expr, &value);

	CHECKF(ok && fabs(value - expect) <= 1e-12 * fmax(1.0, fabs(expect)),
		   "line %d: [%s] gave %s %.17g, expected %.17g", line, expr,
		   ok ? "ok" : "error", value, expect);
}

static void
check_error(int line, const char *expr)
{
	double		value = 12345.0;
	bool		ok = equation_eval(expr, &value);

	CHECKF(!ok && value == 12345.0, "line %d: [%s] should be an error, gave %.17g",
		   line, expr, value);
}

#define VALUE(expr, expect) check_value(__LINE__, expr, expect)
#define ERROR(expr) check_error(__LINE__, expr)

static void
test_grammar(void)
{
	VALUE("42", 42);
	VALUE("  42  ", 42);
	VALUE("2.5", 2.5);
	VALUE(".5", 0.5);
	VALUE("5.", 5);
	VALUE("007", 7);
	VALUE("( 84.0 / 2.0 )", 42);
	VALUE("(12 - 2) - 7", 3);
	VALUE("12 - 2 - 7", 3);		/* left associative */
	VALUE("12 / 2 / 3", 2);
	VALUE("-3 + 4 * (2.5 / 5)", -1);
	VALUE("2 + 3 * 4", 14);		/* precedence */
	VALUE("(2 + 3) * 4", 20);
	VALUE("-(2 + 3)", -5);
	VALUE("+4", 4);
	VALUE("--4", 4);
	VALUE("2 * -3", -6);
	VALUE("2 - -3", 5);
	VALUE("( ( 14.0 - 2.0 ) - 10.0 )", 2);
	VALUE("( 10.0 - ( 6.0 + 3.0 ) )", 1);
	VALUE("((15 * 19) + (62 * 19))", 1463);
	VALUE("\t1\n+\r2 ", 3);
	VALUE("0.1 + 0.2", 0.30000000000000004);
	VALUE("1 / 3", 1.0 / 3.0);
}

static void
test_errors(void)
{
	ERROR(NULL);
	ERROR("");
	ERROR("   ");
	ERROR("(");
	ERROR(")");
	ERROR("()");
	ERROR("(1 + 2");
	ERROR("1 + 2)");
	ERROR("1 +");
	ERROR("* 2");
	ERROR("1 2");
	ERROR("(1)(2)");
	ERROR(".");
	ERROR("1..2");
	ERROR("1.2.3");
	ERROR("(10 * 45).");		/* trailing junk */
	ERROR("(53 + 17) and (14 - 10)");
	ERROR("11,210 / 84");
	ERROR("x + 1");
	ERROR("1e5");
	ERROR("inf");
	ERROR("nan");
	ERROR("0x10");
	ERROR("$ 23");
	ERROR("2 × 3");				/* only ASCII operators */
	ERROR("1 / 0");
	ERROR("1 / (2 - 2)");
	ERROR("1 / 0.0");
	ERROR("0 / 0");
	ERROR("7 % 2");
	ERROR("2 ^ 3");
}

static char *
repeat(const char *left, const char *middle, const char *right, size_t n)
{
	size_t		ll = strlen(left),
				ml = strlen(middle),
				rl = strlen(right);
	char	   *s = malloc(n * (ll + rl) + ml + 1);
	char	   *p = s;

	for (size_t i = 0; i < n; i++, p += ll)
		memcpy(p, left, ll);
	memcpy(p, middle, ml);
	p += ml;
	for (size_t i = 0; i < n; i++, p += rl)
		memcpy(p, right, rl);
	*p = '\0';
	return s;
}

static void
test_depth(void)
{
	char	   *s;

	s = repeat("(", "1", ")", EQUATION_MAX_DEPTH);
	VALUE(s, 1);
	free(s);
	s = repeat("(", "1", ")", EQUATION_MAX_DEPTH + 1);
	ERROR(s);
	free(s);

	/* must fail cleanly, not overflow the stack */
	s = repeat("(", "1", ")", 100000);
	ERROR(s);
	free(s);
	s = repeat("(", "", "", 100000);
	ERROR(s);
	free(s);
	s = repeat("-", "1", "", 100000);
	ERROR(s);
	free(s);
	s = repeat("- (", "1", ")", 100000);
	ERROR(s);
	free(s);

	/* a long flat expression is fine: only nesting is limited */
	s = repeat("1 + ", "1", "", 100000);
	VALUE(s, 100001);
	free(s);
}

static void
test_overflow(void)
{
	char	   *s = repeat("9", "", "", 400);	/* 1e400 > DBL_MAX */

	ERROR(s);
	free(s);
	s = repeat("9", " * ", "9", 200);	/* each side fits, the product not */
	ERROR(s);
	free(s);
	VALUE("99999999999999999999", 1e20);
}

static void
test_equal(void)
{
	CHECK(equation_equal("(10 * 45)", "( 10.0 * 45.0 )"));
	CHECK(equation_equal("(12 - 2) - 7", "( ( 12.0 - 2.0 ) - 10.0 ) + 3"));
	CHECK(equation_equal("1 / 3", "0.333333333"));	/* within 1e-6 relative */
	CHECK(!equation_equal("1 / 3", "0.3333"));
	CHECK(equation_equal("1000000", "1000000.5"));
	CHECK(!equation_equal("1000000", "1000002"));
	CHECK(equation_equal("0", "0.0000000001"));	/* 1e-9 absolute near zero */
	CHECK(!equation_equal("0", "0.00000001"));
	CHECK(equation_equal("-0", "0"));
	CHECK(!equation_equal("2", "-2"));
	CHECK(!equation_equal("(10 * 45)", "(10 * 45"));
	CHECK(!equation_equal("1 / 0", "1 / 0"));
	CHECK(!equation_equal(NULL, "1"));
	CHECK(!equation_equal("1", NULL));
}

int
main(void)
{
	test_grammar();
	test_errors();
	test_depth();
	test_overflow();
	test_equal();
	return unit_summary("equation");
}
