/*
 * util.c - small helpers shared by src/core and src/teacher; see util.h.
 */
#include "core/util.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void
format_message(char *buf, size_t len, const char *fmt,...)
{
	va_list		args;

	if (buf == NULL || len == 0)
		return;
	va_start(args, fmt);
	vsnprintf(buf, len, fmt, args);
	va_end(args);
}

/*
 * The well-formed byte sequences of the Unicode standard (table 3-7): the
 * second byte's range excludes overlong forms (after E0, F0), surrogates
 * (after ED) and code points past U+10FFFF (after F4).
 */
size_t
utf8_char_len(const unsigned char *s, size_t avail)
{
	unsigned char lo = 0x80;
	unsigned char hi = 0xBF;
	size_t		n;

	if (s[0] < 0x80)
		return 1;
	if (s[0] >= 0xC2 && s[0] <= 0xDF)
		n = 2;
	else if (s[0] >= 0xE0 && s[0] <= 0xEF)
	{
		n = 3;
		lo = s[0] == 0xE0 ? 0xA0 : lo;
		hi = s[0] == 0xED ? 0x9F : hi;
	}
	else if (s[0] >= 0xF0 && s[0] <= 0xF4)
	{
		n = 4;
		lo = s[0] == 0xF0 ? 0x90 : lo;
		hi = s[0] == 0xF4 ? 0x8F : hi;
	}
	else
		return 0;
	if (avail < n || s[1] < lo || s[1] > hi)
		return 0;
	for (size_t i = 2; i < n; i++)
		if ((s[i] & 0xC0) != 0x80)
			return 0;
	return n;
}

static bool
is_ascii_space(char c)
{
	return c == ' ' || c == '\t' || c == '\n' || c == '\v' || c == '\f' || c == '\r';
}

const char *
trim_space(const char *s, size_t *len)
{
	size_t		n = *len;

	while (n > 0 && is_ascii_space(*s))
		s++, n--;
	while (n > 0 && is_ascii_space(s[n - 1]))
		n--;
	*len = n;
	return s;
}

bool
text_buffer_append(TextBuffer *buf, const char *data, size_t len)
{
	if (buf->len + len + 1 > buf->cap)
	{
		size_t		cap = buf->cap ? buf->cap * 2 : 256;
		char	   *grown;

		while (cap < buf->len + len + 1)
			cap *= 2;
		grown = realloc(buf->data, cap);
		if (grown == NULL)
			return false;
		buf->data = grown;
		buf->cap = cap;
	}
	memcpy(buf->data + buf->len, data, len);
	buf->len += len;
	buf->data[buf->len] = '\0';
	return true;
}

void
u64_heap_push(uint64_t *heap, size_t *len, uint64_t key)
{
	size_t		i = (*len)++;

	while (i > 0 && heap[(i - 1) / 2] > key)
	{
		heap[i] = heap[(i - 1) / 2];
		i = (i - 1) / 2;
	}
	heap[i] = key;
}

uint64_t
u64_heap_pop(uint64_t *heap, size_t *len)
{
	uint64_t	top = heap[0];
	uint64_t	last = heap[--(*len)];
	size_t		i = 0;

	for (;;)
	{
		size_t		child = 2 * i + 1;

		if (child >= *len)
			break;
		if (child + 1 < *len && heap[child + 1] < heap[child])
			child++;
		if (heap[child] >= last)
			break;
		heap[i] = heap[child];
		i = child;
	}
	if (*len > 0)
		heap[i] = last;
	return top;
}
