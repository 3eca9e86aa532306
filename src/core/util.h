/*
 * util.h - small helpers of src/core, also used by src/teacher: random
 * numbers, message formatting, UTF-8, whitespace, little-endian integers
 * and a growable string.
 *
 * Plain C, no PostgreSQL headers, no dependency on any other file of
 * distill (the core must not reach into src/teacher; the teacher may use
 * these).
 */
#ifndef DISTILL_CORE_UTIL_H
#define DISTILL_CORE_UTIL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/*
 * SplitMix64 (Steele, Lea and Flood): splitmix64_mix() is its finalizer,
 * a good 64-bit hash on its own; splitmix64_next() the next number of the
 * stream whose state is *state.  Fixed seeds give the same numbers on every
 * machine, which the model's initialization and dropout rely on.
 */
static inline uint64_t
splitmix64_mix(uint64_t z)
{
	z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
	z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
	return z ^ (z >> 31);
}

static inline uint64_t
splitmix64_next(uint64_t *state)
{
	*state += 0x9E3779B97F4A7C15ull;
	return splitmix64_mix(*state);
}

/* printf into buf (len bytes) when buf is not NULL and len is not 0. */
extern void format_message(char *buf, size_t len, const char *fmt,...)
			__attribute__((format(printf, 3, 4)));

/*
 * Length of the well-formed UTF-8 character at s, of avail > 0 bytes, or
 * 0 when s starts with no such character (RFC 3629: no overlong forms, no
 * surrogates, nothing above U+10FFFF).  NUL is a character of length 1.
 */
extern size_t utf8_char_len(const unsigned char *s, size_t avail);

/*
 * The *len bytes at s without leading and trailing ASCII whitespace (C's
 * isspace() in the C locale, whatever the locale): returns where they
 * start and sets *len to how many are left.
 */
extern const char *trim_space(const char *s, size_t *len);

/* Little-endian unsigned integers of n_bytes (1 to 8) at p. */
static inline void
le_put(uint8_t *p, uint64_t value, int n_bytes)
{
	for (int i = 0; i < n_bytes; i++)
		p[i] = (uint8_t) (value >> (8 * i));
}

static inline uint64_t
le_get(const uint8_t *p, int n_bytes)
{
	uint64_t	value = 0;

	for (int i = 0; i < n_bytes; i++)
		value |= (uint64_t) p[i] << (8 * i);
	return value;
}

/* A u32 at p; returns the byte after it, to write field after field. */
static inline uint8_t *
le_put_u32(uint8_t *p, uint32_t value)
{
	le_put(p, value, 4);
	return p + 4;
}

static inline uint32_t
le_get_u32(const uint8_t *p)
{
	return (uint32_t) le_get(p, 4);
}

/*
 * A growable string: data holds len bytes and a NUL after them once
 * anything was appended (data is NULL before); free(data) releases it.
 */
typedef struct TextBuffer
{
	char	   *data;
	size_t		len;
	size_t		cap;
} TextBuffer;

/* Append len bytes; false, with the buffer unchanged, when out of memory. */
extern bool text_buffer_append(TextBuffer *buf, const char *data, size_t len);

/*
 * A binary min-heap of keys in heap[0, *len), for the BPE encoders' queues
 * of merges (rank or priority in the high bits, position in the low ones).
 * The caller sizes heap; u64_heap_pop() needs *len > 0.
 */
extern void u64_heap_push(uint64_t *heap, size_t *len, uint64_t key);
extern uint64_t u64_heap_pop(uint64_t *heap, size_t *len);

#endif
