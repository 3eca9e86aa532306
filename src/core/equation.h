/*
 * equation.h - evaluate small arithmetic expressions.
 *
 * Math word problem tasks (SVAMP) label each row with an equation such as
 * "( 84.0 / 2.0 )"; a teacher's or student's answer counts as correct when
 * it evaluates to the same value.  The grammar is numbers (integers and
 * decimals), unary + and -, binary + - * /, parentheses and ASCII
 * whitespace; nothing else (no exponents, no thousands separators).  Plain
 * C; no PostgreSQL headers.
 */
#ifndef DISTILL_CORE_EQUATION_H
#define DISTILL_CORE_EQUATION_H

#include <stdbool.h>

/*
 * Evaluate expr into *value.  Returns false, leaving *value alone, when expr
 * is NULL, does not follow the grammar (including trailing junk), nests more
 * deeply than EQUATION_MAX_DEPTH, divides by zero or overflows.
 */
extern bool equation_eval(const char *expr, double *value);

/*
 * True when both expressions evaluate and their values agree within a
 * relative tolerance of 1e-6 (an absolute one of 1e-9 near zero).
 */
extern bool equation_equal(const char *a, const char *b);

/* Deepest nesting of parentheses and unary signs accepted. */
#define EQUATION_MAX_DEPTH 200

#endif
