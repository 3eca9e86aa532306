/*
 * equation.c - recursive descent evaluation of arithmetic expressions.
 *
 *   expr   := term   (('+' | '-') term)*
 *   term   := factor (('*' | '/') factor)*
 *   factor := ('+' | '-') factor | number | '(' expr ')'
 *   number := digits ['.' digits] | '.' digits
 *
 * Every nesting level (a parenthesis or a unary sign) counts against
 * EQUATION_MAX_DEPTH, so hostile input cannot overflow the C stack.
 */
#include "core/equation.h"

#include <math.h>
#include <stddef.h>

typedef struct Scanner
{
	const char *p;				/* next unread byte */
	int			depth;			/* current nesting */
} Scanner;

static bool parse_expr(Scanner *s, double *value);

static void
skip_space(Scanner *s)
{
	while (*s->p == ' ' || *s->p == '\t' || *s->p == '\n' ||
		   *s->p == '\r' || *s->p == '\f' || *s->p == '\v')
		s->p++;
}

static bool
is_digit(char c)
{
	return c >= '0' && c <= '9';
}

/*
 * Read a decimal number by hand rather than with strtod, which would also
 * accept "inf", "nan", hexadecimal and exponents, and whose decimal point
 * depends on the locale.
 */
static bool
parse_number(Scanner *s, double *value)
{
	double		result = 0.0;
	double		scale = 1.0;
	bool		any_digit = false;

	while (is_digit(*s->p))
	{
		result = result * 10.0 + (*s->p++ - '0');
		any_digit = true;
	}
	if (*s->p == '.')
	{
		s->p++;
		while (is_digit(*s->p))
		{
			scale /= 10.0;
			result += (*s->p++ - '0') * scale;
			any_digit = true;
		}
	}
	*value = result;
	return any_digit && isfinite(result);
}

static bool
parse_factor(Scanner *s, double *value)
{
	bool		ok;

	skip_space(s);
	if (*s->p != '+' && *s->p != '-' && *s->p != '(')
		return parse_number(s, value);

	if (++s->depth > EQUATION_MAX_DEPTH)
		return false;
	if (*s->p == '(')
	{
		s->p++;
		ok = parse_expr(s, value);
		skip_space(s);
		if (ok && *s->p == ')')
			s->p++;
		else
			ok = false;
	}
	else
	{
		bool		negate = *s->p++ == '-';

		ok = parse_factor(s, value);
		if (negate)
			*value = -*value;
	}
	s->depth--;
	return ok;
}

static bool
parse_term(Scanner *s, double *value)
{
	if (!parse_factor(s, value))
		return false;
	for (;;)
	{
		char		op;
		double		rhs;

		skip_space(s);
		if (*s->p != '*' && *s->p != '/')
			return true;
		op = *s->p++;
		if (!parse_factor(s, &rhs))
			return false;
		if (op == '/' && rhs == 0.0)
			return false;
		*value = op == '*' ? *value * rhs : *value / rhs;
		if (!isfinite(*value))
			return false;
	}
}

static bool
parse_expr(Scanner *s, double *value)
{
	if (!parse_term(s, value))
		return false;
	for (;;)
	{
		char		op;
		double		rhs;

		skip_space(s);
		if (*s->p != '+' && *s->p != '-')
			return true;
		op = *s->p++;
		if (!parse_term(s, &rhs))
			return false;
		*value = op == '+' ? *value + rhs : *value - rhs;
		if (!isfinite(*value))
			return false;
	}
}

bool
equation_eval(const char *expr, double *value)
{
	Scanner		s = {expr, 0};
	double		result;

	if (expr == NULL || !parse_expr(&s, &result))
		return false;
	skip_space(&s);
	if (*s.p != '\0')
		return false;
	*value = result;
	return true;
}

bool
equation_equal(const char *a, const char *b)
{
	double		x,
				y;

	if (!equation_eval(a, &x) || !equation_eval(b, &y))
		return false;
	return fabs(x - y) <= fmax(1e-9, 1e-6 * fmax(fabs(x), fabs(y)));
}
